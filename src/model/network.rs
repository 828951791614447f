//! How a deployed machine's interfaces come up, as MAAS configures them: each interface has a
//! link mode — `auto` (a static address rackbox picks from the boot subnet when the machine is
//! deployed, outside the DHCP pool and the reserved ranges, kept while it is deployed and given
//! back on release), `static` (the user's address), `dhcp`, or `link_up` (up, no address). An
//! interface without a link is left to the deployed OS (cloud-init's fallback: DHCP on the boot
//! interface). The deployed OS learns its links from the `network-config` file of the cloud-init
//! seed, cloud-init's network configuration version 2 (netplan's format), which
//! [`network_config`] writes.

use std::net::Ipv4Addr;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use super::machine::Interface;

/// MAAS's link modes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum LinkMode {
    /// A static address picked by rackbox at deploy time.
    Auto,
    /// The user's static address.
    Static,
    /// DHCP in the deployed OS.
    Dhcp,
    /// Up, without an address.
    LinkUp,
}

impl LinkMode {
    /// The wire name (MAAS's, lower case).
    pub fn as_str(self) -> &'static str {
        match self {
            LinkMode::Auto => "auto",
            LinkMode::Static => "static",
            LinkMode::Dhcp => "dhcp",
            LinkMode::LinkUp => "link_up",
        }
    }

    /// Reads a mode as clients write it (MAAS's CLI and Terraform send upper case).
    pub fn parse(text: &str) -> Option<LinkMode> {
        match text.to_ascii_lowercase().as_str() {
            "auto" => Some(LinkMode::Auto),
            "static" => Some(LinkMode::Static),
            "dhcp" => Some(LinkMode::Dhcp),
            "link_up" | "link-up" => Some(LinkMode::LinkUp),
            _ => None,
        }
    }
}

/// An interface's link.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Link {
    /// How the interface comes up.
    pub mode: LinkMode,
    /// The boot subnet it is on (CIDR text); None for `link_up`.
    #[serde(default)]
    pub subnet: Option<String>,
    /// The address: the user's for `static`; for `auto` the one picked at deploy, None while
    /// the machine is not deployed.
    #[serde(default)]
    #[schemars(schema_with = "super::schema::ipv4_or_null")]
    pub ip: Option<Ipv4Addr>,
}

/// A static route users add (MAAS's static-routes): machines on `source` reach `destination`
/// through `gateway`, written into the network-config of every deployed interface on `source`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct StaticRoute {
    /// Its number, from 1, never reused.
    pub id: u32,
    /// The boot subnet whose machines get the route (CIDR text).
    pub source: String,
    /// The boot subnet the route leads to (CIDR text).
    pub destination: String,
    /// The next hop, an address of `source`.
    pub gateway: Ipv4Addr,
    /// The route's metric.
    pub metric: u32,
}

/// What rackbox knows of one boot subnet, for choosing and writing addresses.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SubnetPlan {
    /// CIDR text ("192.0.2.0/24"), the subnet's name in links.
    pub cidr: String,
    /// The network address.
    pub network: Ipv4Addr,
    /// Prefix length.
    pub prefix: u8,
    /// The default router.
    pub gateway: Option<Ipv4Addr>,
    /// DNS servers.
    pub dns: Vec<Ipv4Addr>,
    /// DNS search domain.
    pub domain: Option<String>,
    /// Addresses never picked for `auto` nor accepted for `static`: the DHCP pool, the
    /// reserved ranges and rackbox's own addresses, as (first, last).
    pub unavailable: Vec<(Ipv4Addr, Ipv4Addr)>,
}

impl SubnetPlan {
    fn mask(&self) -> u32 {
        if self.prefix == 0 {
            0
        } else {
            u32::MAX << (32 - u32::from(self.prefix.min(32)))
        }
    }

    /// The address is a host address of the subnet (not its network or broadcast address).
    pub fn holds(&self, ip: Ipv4Addr) -> bool {
        let (ip, net, mask) = (u32::from(ip), u32::from(self.network), self.mask());
        ip & mask == net & mask && ip != net & mask && ip != (net & mask) | !mask
    }

    /// Why `ip` may not be a machine's static address here, if it may not.
    pub fn refuses(&self, ip: Ipv4Addr) -> Option<String> {
        if !self.holds(ip) {
            return Some(format!("{ip} is not a host address of {}", self.cidr));
        }
        if self.gateway == Some(ip) {
            return Some(format!("{ip} is the gateway of {}", self.cidr));
        }
        self.unavailable
            .iter()
            .find(|(a, b)| *a <= ip && ip <= *b)
            .map(|(a, b)| format!("{ip} is in {a}-{b}, which DHCP or a reservation holds"))
    }

    /// The lowest address that is neither refused nor `taken`.
    pub fn pick(&self, mut taken: impl FnMut(Ipv4Addr) -> bool) -> Option<Ipv4Addr> {
        let mask = self.mask();
        let first = (u32::from(self.network) & mask).checked_add(1)?;
        let last = ((u32::from(self.network) & mask) | !mask).checked_sub(1)?;
        (first..=last)
            .map(Ipv4Addr::from)
            .find(|ip| self.refuses(*ip).is_none() && !taken(*ip))
    }
}

/// The `network-config` of a deployed machine (cloud-init v2, as JSON, which is YAML too), or
/// None when no interface has a link (cloud-init then brings up its fallback). Interfaces are
/// matched by MAC and given their names. The default route goes on the first addressed
/// interface whose subnet has a gateway, written `0.0.0.0/0` (cloud-init 22.4 refuses
/// `default`); the static routes of an addressed interface's subnet follow it. `dns` replaces
/// the subnets' DNS servers when not empty.
pub fn network_config(
    interfaces: &[Interface],
    plans: &[SubnetPlan],
    dns: &[Ipv4Addr],
    routes: &[StaticRoute],
) -> Option<Value> {
    let mut ethernets = serde_json::Map::new();
    let mut routed = false;
    for iface in interfaces {
        let Some(link) = &iface.network else {
            continue;
        };
        let mut e = serde_json::Map::new();
        e.insert("match".into(), json!({"macaddress": iface.mac}));
        e.insert("set-name".into(), json!(iface.name));
        let plan = link
            .subnet
            .as_ref()
            .and_then(|c| plans.iter().find(|p| &p.cidr == c));
        match (link.mode, link.ip, plan) {
            (LinkMode::Auto | LinkMode::Static, Some(ip), Some(plan)) => {
                e.insert("dhcp4".into(), json!(false));
                e.insert("addresses".into(), json!([format!("{ip}/{}", plan.prefix)]));
                let mut to: Vec<Value> = Vec::new();
                if let Some(gw) = plan.gateway
                    && !routed
                {
                    to.push(json!({"to": "0.0.0.0/0", "via": gw.to_string()}));
                    routed = true;
                }
                for r in routes.iter().filter(|r| r.source == plan.cidr) {
                    to.push(json!({
                        "to": r.destination,
                        "via": r.gateway.to_string(),
                        "metric": r.metric,
                    }));
                }
                if !to.is_empty() {
                    e.insert("routes".into(), Value::Array(to));
                }
                let servers: Vec<String> = if dns.is_empty() { &plan.dns } else { dns }
                    .iter()
                    .map(Ipv4Addr::to_string)
                    .collect();
                let mut ns = serde_json::Map::new();
                if !servers.is_empty() {
                    ns.insert("addresses".into(), json!(servers));
                }
                if let Some(d) = &plan.domain {
                    ns.insert("search".into(), json!([d]));
                }
                if !ns.is_empty() {
                    e.insert("nameservers".into(), Value::Object(ns));
                }
            }
            (LinkMode::Dhcp, _, _) => {
                e.insert("dhcp4".into(), json!(true));
            }
            // link_up, or an address that is not known (yet): up, no address.
            _ => {
                e.insert("dhcp4".into(), json!(false));
            }
        }
        ethernets.insert(iface.name.clone(), Value::Object(e));
    }
    (!ethernets.is_empty()).then(|| json!({"version": 2, "ethernets": ethernets}))
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;

    use super::*;

    fn plan() -> SubnetPlan {
        SubnetPlan {
            cidr: "192.0.2.0/24".into(),
            network: Ipv4Addr::new(192, 0, 2, 0),
            prefix: 24,
            gateway: Some(Ipv4Addr::new(192, 0, 2, 1)),
            dns: vec![Ipv4Addr::new(192, 0, 2, 53)],
            domain: Some("maas".into()),
            unavailable: vec![
                (Ipv4Addr::new(192, 0, 2, 2), Ipv4Addr::new(192, 0, 2, 2)),
                (Ipv4Addr::new(192, 0, 2, 100), Ipv4Addr::new(192, 0, 2, 200)),
            ],
        }
    }

    fn iface(name: &str, mac: &str, link: Option<Link>) -> Interface {
        Interface {
            name: name.into(),
            mac: mac.into(),
            boot: false,
            network: link,
        }
    }

    #[test]
    fn auto_addresses_skip_the_gateway_the_pool_and_the_taken() {
        let p = plan();
        let mut taken = BTreeSet::new();
        assert_eq!(
            p.pick(|ip| taken.contains(&ip)),
            Some(Ipv4Addr::new(192, 0, 2, 3))
        );
        taken.insert(Ipv4Addr::new(192, 0, 2, 3));
        assert_eq!(
            p.pick(|ip| taken.contains(&ip)),
            Some(Ipv4Addr::new(192, 0, 2, 4))
        );
        assert!(p.refuses(Ipv4Addr::new(192, 0, 2, 150)).is_some());
        assert!(p.refuses(Ipv4Addr::new(192, 0, 2, 1)).is_some());
        assert!(p.refuses(Ipv4Addr::new(192, 0, 2, 255)).is_some());
        assert!(p.refuses(Ipv4Addr::new(198, 51, 100, 7)).is_some());
        assert_eq!(p.refuses(Ipv4Addr::new(192, 0, 2, 201)), None);
        let tiny = SubnetPlan {
            cidr: "192.0.2.0/30".into(),
            prefix: 30,
            unavailable: vec![],
            ..p
        };
        let all: BTreeSet<_> = [Ipv4Addr::new(192, 0, 2, 2)].into();
        assert_eq!(
            tiny.pick(|ip| all.contains(&ip)),
            None,
            "the gateway and one taken fill a /30"
        );
    }

    #[test]
    fn network_config_matches_by_mac_and_routes_once() {
        let ifaces = vec![
            iface(
                "eno1",
                "52:54:00:00:00:01",
                Some(Link {
                    mode: LinkMode::Auto,
                    subnet: Some("192.0.2.0/24".into()),
                    ip: Some(Ipv4Addr::new(192, 0, 2, 3)),
                }),
            ),
            iface(
                "eno2",
                "52:54:00:00:00:02",
                Some(Link {
                    mode: LinkMode::Dhcp,
                    subnet: None,
                    ip: None,
                }),
            ),
            iface("eno3", "52:54:00:00:00:03", None),
        ];
        let route = StaticRoute {
            id: 1,
            source: "192.0.2.0/24".into(),
            destination: "198.51.100.0/24".into(),
            gateway: Ipv4Addr::new(192, 0, 2, 250),
            metric: 10,
        };
        let v = network_config(&ifaces, &[plan()], &[], std::slice::from_ref(&route)).unwrap();
        assert_eq!(v["version"], 2);
        let e1 = &v["ethernets"]["eno1"];
        assert_eq!(e1["match"]["macaddress"], "52:54:00:00:00:01");
        assert_eq!(e1["set-name"], "eno1");
        assert_eq!(e1["addresses"], json!(["192.0.2.3/24"]));
        assert_eq!(
            e1["routes"],
            json!([
                {"to": "0.0.0.0/0", "via": "192.0.2.1"},
                {"to": "198.51.100.0/24", "via": "192.0.2.250", "metric": 10}
            ])
        );
        assert_eq!(e1["nameservers"]["addresses"], json!(["192.0.2.53"]));
        assert_eq!(e1["nameservers"]["search"], json!(["maas"]));
        assert_eq!(v["ethernets"]["eno2"]["dhcp4"], true);
        assert!(v["ethernets"].get("eno3").is_none());
        let upstream =
            network_config(&ifaces, &[plan()], &[Ipv4Addr::new(198, 51, 100, 53)], &[]).unwrap();
        assert_eq!(
            upstream["ethernets"]["eno1"]["nameservers"]["addresses"],
            json!(["198.51.100.53"])
        );
        assert_eq!(network_config(&ifaces[2..], &[plan()], &[], &[]), None);
    }
}
