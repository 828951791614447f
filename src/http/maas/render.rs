//! MAAS's JSON shapes. Go clients decode strictly (gomaasapi's schema checker fails a whole list
//! on one missing key or one wrong type), so every object here always carries every key, with
//! `[]`, `{}`, `""` or `null` when rackbox has nothing to say, and numbers as JSON integers.

use std::collections::BTreeMap;

use serde_json::{Map, Value, json};

use super::PREFIX;
use crate::model::catalog::NamedThing;
use crate::model::{Disk, Interface, Machine};

/// The MTU rackbox reports until the boot network room knows the real one.
const DEFAULT_MTU: u64 = 1500;

/// Owner-data keys rackbox keeps for itself (MAAS's agent_name, which Juju filters on); they are
/// stored with the owner data so the life cycle forgets them when the machine leaves its owner,
/// and are never shown as owner data.
pub(crate) const AGENT_NAME_KEY: &str = "rackbox.agent_name";

/// A stable integer id for a named thing. MAAS's objects have integer ids that Go clients
/// require; rackbox names zones and pools. The defaults get MAAS's own ids (zone 1, pool 0);
/// others a 31-bit FNV-1a hash of the name, the same on every call and every restart.
pub(crate) fn named_id(kind: &str, name: &str) -> i64 {
    match (kind, name) {
        ("zone", "default") => return 1,
        ("pool", "default") => return 0,
        ("domain", "maas") => return 0,
        _ => {}
    }
    let mut h: u32 = 0x811c_9dc5;
    for b in name.bytes() {
        h = (h ^ u32::from(b)).wrapping_mul(0x0100_0193);
    }
    // Keep clear of the small ids the defaults use.
    i64::from((h & 0x7fff_ffff).max(16))
}

/// Descriptions of zones and pools, and the boot network's VLAN, read once per request for
/// rendering many machines.
pub struct Catalog {
    pub zones: BTreeMap<String, String>,
    pub pools: BTreeMap<String, String>,
    /// The VLAN every machine interface is on (see [`vlan`]).
    pub vlan: Value,
    /// The boot subnets as MAAS shows them, by CIDR, for interface links.
    pub subnets: BTreeMap<String, Value>,
}

impl Catalog {
    pub fn new(
        zones: &[NamedThing],
        pools: &[NamedThing],
        vlan: Value,
        subnets: BTreeMap<String, Value>,
    ) -> Catalog {
        Catalog {
            zones: zones
                .iter()
                .map(|z| (z.name.clone(), z.description.clone()))
                .collect(),
            pools: pools
                .iter()
                .map(|p| (p.name.clone(), p.description.clone()))
                .collect(),
            vlan,
            subnets,
        }
    }
}

pub fn zone(name: &str, description: &str) -> Value {
    json!({
        "id": named_id("zone", name),
        "name": name,
        "description": description,
        "resource_uri": format!("{PREFIX}zones/{name}/"),
    })
}

pub fn pool(name: &str, description: &str) -> Value {
    let id = named_id("pool", name);
    json!({
        "id": id,
        "name": name,
        "description": description,
        "resource_uri": format!("{PREFIX}resourcepool/{id}/"),
    })
}

pub fn domain(name: &str, machines: usize) -> Value {
    let id = named_id("domain", name);
    json!({
        "id": id,
        "name": name,
        "authoritative": true,
        "ttl": null,
        "is_default": name == "maas",
        "resource_record_count": machines,
        "resource_uri": format!("{PREFIX}domains/{id}/"),
    })
}

pub fn tag(t: &NamedThing) -> Value {
    json!({
        "name": t.name,
        "comment": t.description,
        "definition": "",
        "kernel_opts": "",
        "resource_uri": format!("{PREFIX}tags/{}/", t.name),
    })
}

/// How rackbox serves DHCP on the boot network's VLAN, as MAAS's VLAN object says it.
#[derive(Clone, Debug, Default)]
pub struct VlanDhcp {
    /// rackbox gives addresses (managed mode): MAAS's `dhcp_on`.
    pub managed: bool,
    /// The controller serving the VLAN (rackbox's system_id) when it serves it at all.
    pub primary_rack: Option<String>,
    /// Another DHCP server rackbox knows gives the addresses (proxy mode), by its address.
    pub external_dhcp: Option<String>,
}

/// The one VLAN rackbox knows of: the untagged VLAN of the default fabric, which holds the boot
/// network.
pub(crate) fn vlan(dhcp: &VlanDhcp) -> Value {
    json!({
        "id": 5001,
        "name": "untagged",
        "vid": 0,
        "mtu": DEFAULT_MTU,
        "fabric": "fabric-0",
        "fabric_id": 0,
        "dhcp_on": dhcp.managed,
        "external_dhcp": dhcp.external_dhcp,
        "primary_rack": dhcp.primary_rack,
        "secondary_rack": null,
        "relay_vlan": null,
        "space": "undefined",
        "resource_uri": format!("{PREFIX}vlans/5001/"),
    })
}

pub(crate) fn fabric(vlan: Value) -> Value {
    json!({
        "id": 0,
        "name": "fabric-0",
        "class_type": null,
        "vlans": [vlan],
        "resource_uri": format!("{PREFIX}fabrics/0/"),
    })
}

/// Interface ids are 1-based positions in the machine's interface list: stable for a machine
/// whose interfaces do not change, and all Go clients need is an integer unique per machine.
/// The machine's interfaces, as its object and `interfaces/` show them.
pub fn interfaces(m: &Machine, catalog: &Catalog) -> Vec<Value> {
    numbered(&m.interfaces, |i, x| interface(&m.system_id, i, x, catalog))
}

/// The machine's block devices, as its object and `blockdevices/` show them.
pub(crate) fn block_devices(m: &Machine) -> Vec<Value> {
    numbered(&m.disks, |i, d| block_device(&m.system_id, i, d))
}

/// Each item rendered with its index: MAAS's ids of a machine's interfaces and disks.
fn numbered<T>(items: &[T], render: impl Fn(usize, &T) -> Value) -> Vec<Value> {
    items
        .iter()
        .enumerate()
        .map(|(i, x)| render(i, x))
        .collect()
}

/// An interface's links as MAAS shows them: its one link (id = the interface's id), with the
/// subnet object and, when it holds one, the address. gomaasapi refuses a null `subnet` or
/// `ip_address`, so they are left out when there is none.
fn links(id: usize, i: &Interface, catalog: &Catalog) -> Value {
    let Some(link) = &i.network else {
        return json!([]);
    };
    let mut l = Map::new();
    l.insert("id".into(), json!(id));
    l.insert("mode".into(), json!(link.mode.as_str()));
    if let Some(subnet) = link.subnet.as_ref().and_then(|c| catalog.subnets.get(c)) {
        l.insert("subnet".into(), subnet.clone());
    }
    if let Some(ip) = link.ip {
        l.insert("ip_address".into(), json!(ip.to_string()));
    }
    json!([Value::Object(l)])
}

pub fn interface(system_id: &str, index: usize, i: &Interface, catalog: &Catalog) -> Value {
    let id = index + 1;
    let vlan = &catalog.vlan;
    json!({
        "id": id,
        "name": i.name,
        "type": "physical",
        "enabled": true,
        "mac_address": i.mac,
        "links": links(id, i, catalog),
        "vlan": vlan,
        "effective_mtu": DEFAULT_MTU,
        "parents": [],
        "children": [],
        "tags": [],
        "params": {},
        "discovered": [],
        "system_id": system_id,
        "product": null,
        "vendor": null,
        "firmware_version": null,
        "link_connected": true,
        "interface_speed": 0,
        "link_speed": 0,
        "resource_uri": format!("{PREFIX}nodes/{system_id}/interfaces/{id}/"),
    })
}

/// An interface of a node that is not a machine (a device, the controller): no links, the
/// boot network's VLAN.
pub(crate) fn plain_interface(
    system_id: &str,
    index: usize,
    name: &str,
    mac: &str,
    vlan: &Value,
    params: Value,
) -> Value {
    let id = index + 1;
    json!({
        "id": id,
        "name": name,
        "type": "physical",
        "enabled": true,
        "mac_address": mac,
        "links": [],
        "vlan": vlan,
        "effective_mtu": DEFAULT_MTU,
        "parents": [],
        "children": [],
        "tags": [],
        "params": params,
        "discovered": [],
        "system_id": system_id,
        "link_connected": true,
        "resource_uri": format!("{PREFIX}nodes/{system_id}/interfaces/{id}/"),
    })
}

/// Block device ids are 1-based positions in the machine's disk list (see [`interface`]).
pub(crate) fn block_device(system_id: &str, index: usize, d: &Disk) -> Value {
    let id = index + 1;
    json!({
        "id": id,
        "system_id": system_id,
        "name": d.name,
        "path": format!("/dev/disk/by-dname/{}", d.name),
        "id_path": null,
        "uuid": null,
        "model": d.model,
        "serial": d.serial,
        "size": d.size_bytes,
        "block_size": d.block_size,
        "used_size": 0,
        "available_size": d.size_bytes,
        "used_for": "Unused",
        "tags": d.tags,
        "type": "physical",
        "filesystem": null,
        "partitions": [],
        "partition_table_type": null,
        "storage_pool": null,
        "numa_node": 0,
        "resource_uri": format!("{PREFIX}nodes/{system_id}/blockdevices/{id}/"),
    })
}

/// The machine as MAAS shows it. Every key the reference lists is always present.
pub fn machine(m: &Machine, catalog: &Catalog) -> Value {
    let id = &m.system_id;
    let interfaces = interfaces(m, catalog);
    let boot_interface = m
        .interfaces
        .iter()
        .position(|i| i.boot)
        .or(if m.interfaces.is_empty() {
            None
        } else {
            Some(0)
        })
        .and_then(|i| interfaces.get(i).cloned())
        .unwrap_or(Value::Null);
    let disks = block_devices(m);
    let boot_disk = disks.first().cloned().unwrap_or(Value::Null);
    let owner_data: Map<String, Value> = m
        .owner_data
        .iter()
        .filter(|(k, _)| k.as_str() != AGENT_NAME_KEY)
        .map(|(k, v)| (k.clone(), Value::String(v.clone())))
        .collect();
    let (osystem, distro_series) = match &m.deploy {
        Some(d) => (d.osystem.clone(), d.distro_series.clone()),
        None => (String::new(), String::new()),
    };
    let zone_desc = catalog.zones.get(&m.zone).cloned().unwrap_or_default();
    let pool_desc = catalog.pools.get(&m.pool).cloned().unwrap_or_default();
    let storage_mb = m.storage_bytes() as f64 / 1_000_000.0;
    let identity = json!({
        "resource_uri": format!("{PREFIX}machines/{id}/"),
        "system_id": id,
        "hostname": m.hostname,
        "fqdn": m.fqdn(),
        "domain": domain(&m.domain, 0),
        "description": m.description,
        "status": m.status.code(),
        "status_name": m.status.name(),
        "status_message": m.status_message,
        "status_action": "",
        "owner": m.owner,
        "owner_data": owner_data,
        "node_type": 0,
        "node_type_name": "Machine",
        "netboot": m.status != crate::model::Status::Deployed,
        "locked": m.locked,
        "zone": zone(&m.zone, &zone_desc),
        "pool": pool(&m.pool, &pool_desc),
        "tag_names": m.tags.iter().collect::<Vec<_>>(),
        "pod": null,
    });
    let hardware = json!({
        "cpu_count": m.cpu_count,
        "memory": m.memory_mib,
        "storage": storage_mb,
        "swap_size": null,
        "architecture": m.architecture,
        "power_state": m.power_state.state.as_str(),
        "power_type": m.power.type_name(),
        "hardware_info": {
            "system_vendor": "Unknown",
            "system_product": "Unknown",
            "system_version": "Unknown",
            "system_serial": "Unknown",
            "cpu_model": "Unknown",
            "mainboard_vendor": "Unknown",
            "mainboard_product": "Unknown",
        },
        "osystem": osystem,
        "distro_series": distro_series,
        "hwe_kernel": null,
        "min_hwe_kernel": "",
    });
    let addresses: Vec<String> = m
        .interfaces
        .iter()
        .filter_map(|i| i.address())
        .map(|ip| ip.to_string())
        .collect();
    let devices = json!({
        "ip_addresses": addresses,
        "interface_set": interfaces,
        "boot_interface": boot_interface,
        "boot_disk": boot_disk,
        "physicalblockdevice_set": disks.clone(),
        "blockdevice_set": disks,
        "virtualblockdevice_set": [],
        "iscsiblockdevice_set": [],
        "special_filesystems": [],
        "disable_ipv4": false,
        "address_ttl": null,
        "raids": [],
        "volume_groups": [],
        "bcaches": [],
        "cache_sets": [],
        "default_gateways": {
            "ipv4": {"gateway_ip": null, "link_id": null},
            "ipv6": {"gateway_ip": null, "link_id": null},
        },
    });
    let mut all = Map::new();
    for part in [identity, hardware, devices] {
        if let Value::Object(map) = part {
            all.extend(map);
        }
    }
    Value::Object(all)
}

/// A user as MAAS shows it.
pub fn user(username: &str, email: &str, is_superuser: bool) -> Value {
    json!({
        "username": username,
        "email": email,
        "is_superuser": is_superuser,
        "is_local": true,
        "resource_uri": format!("{PREFIX}users/{username}/"),
    })
}
