//! The BMC's Redfish service seen from inside, through the Redfish host interface (DMTF
//! DSP0270), as MAAS's commissioning does it: the SMBIOS type 42 record names a host-side NIC
//! (usually a USB NIC the BMC presents) and the service's address on that private link. The
//! agent finds that NIC, gives it the record's address, and asks the service which
//! ComputerSystem this machine is, which manager drives it, and at which address the manager
//! sits on the management network: that address (never the link-local one, which only this
//! host can reach) is what the appliance can use for `redfish` power.
//!
//! The service is asked with the BMC user commissioning created in-band over IPMI (a BMC's
//! IPMI users and Redfish accounts are one user database), with HTTP basic authentication.
//! Its certificate is not checked on this in-box link (it is the BMC's own, and usually
//! self-signed); instead its SHA-256 is reported so that the appliance can pin it when it talks
//! to the same service over the network.
//!
//! The sysfs lookup and the reading of Redfish documents are pure functions (tested below);
//! configuring the NIC runs busybox's `ip` or `udhcpc`, as the ramdisk's /init does.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use serde_json::Value;
use sha2::{Digest, Sha256};

use super::inventory::{BmcCredentials, HostInterfaceDevice, RedfishBmc, RedfishHostInterface};
use crate::model::error::error_chain;

/// How long the host-side NIC may take to appear (USB enumeration runs after /init's module
/// loading, and a BMC's virtual USB hub can be slow).
pub(crate) const NIC_WAIT: Duration = Duration::from_secs(20);
/// Each request to the service.
pub(crate) const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);
/// Members read from one collection at most (a BMC with more NICs or systems than this is not
/// one machine's BMC).
const MAX_MEMBERS: usize = 32;
/// The udhcpc script of the ramdisk for the host interface: sets the address, never a route,
/// and leaves the DHCP server's address in `/run/hostif-<nic>.server`.
pub(crate) const DHCP_SCRIPT: &str = "/etc/udhcpc-hostif.script";

#[derive(Debug, thiserror::Error)]
pub(crate) enum HostInterfaceError {
    #[error("the host interface record names no USB or PCI device to look for")]
    NoDevice,
    #[error("no NIC with {bus} id {vendor}:{product} appeared within {wait:?}")]
    NoNic {
        bus: String,
        vendor: String,
        product: String,
        wait: Duration,
    },
    #[error("the host side of the interface is assigned by {0:?}, which rackbox cannot configure")]
    Assignment(String),
    #[error("cannot configure {nic}: {detail}")]
    Configure { nic: String, detail: String },
    #[error("no usable Redfish service address: {0}")]
    NoService(String),
    #[error("the Redfish service at {url}: {detail}")]
    Service { url: String, detail: String },
}

/// Finds the host-side NIC the record describes under `<root>/sys/class/net`: by MAC when the
/// (v2) record gives one, else by the USB device's idVendor/idProduct (in the USB device's
/// directory, the parent of the network interface's) or the PCI vendor/device.
pub(crate) fn find_nic(root: &Path, dev: &HostInterfaceDevice) -> Option<String> {
    let net = root.join("sys/class/net");
    let mut names: Vec<String> = std::fs::read_dir(&net)
        .ok()?
        .filter_map(|e| e.ok())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    let read = |p: std::path::PathBuf| {
        std::fs::read_to_string(p)
            .map(|s| s.trim().trim_start_matches("0x").to_ascii_lowercase())
            .unwrap_or_default()
    };
    if let Some(mac) = &dev.mac
        && let Some(n) = names
            .iter()
            .find(|n| read(net.join(n).join("address")) == *mac)
    {
        return Some(n.clone());
    }
    names.into_iter().find(|n| {
        let device = net.join(n).join("device");
        match dev.bus.as_str() {
            "usb" => [device.join("../idVendor"), device.join("idVendor")]
                .into_iter()
                .any(|v| {
                    read(v.clone()) == dev.vendor
                        && read(v.with_file_name("idProduct")) == dev.product
                }),
            "pci" => {
                read(device.join("vendor")) == dev.vendor
                    && read(device.join("device")) == dev.product
            }
            _ => false,
        }
    })
}

/// The prefix length of a dotted IPv4 netmask (contiguous ones only).
pub(crate) fn prefix_len(mask: &str) -> Option<u8> {
    let bits = u32::from(mask.parse::<Ipv4Addr>().ok()?);
    let ones = bits.leading_ones();
    (bits.checked_shl(ones).unwrap_or(0) == 0).then_some(ones as u8)
}

/// Where the service is: the record's address (or, when the service address is handed out by
/// DHCP, the DHCP server's) and port (443 when the record says 0).
pub(crate) fn service_address(
    hi: &RedfishHostInterface,
    dhcp_server: Option<&str>,
) -> Result<SocketAddr, HostInterfaceError> {
    let recorded = hi
        .service_address
        .parse::<IpAddr>()
        .ok()
        .filter(|a| !a.is_unspecified());
    let address = match (recorded, dhcp_server.and_then(|s| s.parse::<IpAddr>().ok())) {
        (Some(a), _) | (None, Some(a)) => a,
        (None, None) => {
            return Err(HostInterfaceError::NoService(format!(
                "the record gives {:?} ({} discovery)",
                hi.service_address, hi.ip_discovery
            )));
        }
    };
    // A link-local IPv6 service needs the NIC as its scope, which URLs cannot carry.
    if let IpAddr::V6(a) = address
        && a.segments()[0] & 0xffc0 == 0xfe80
    {
        return Err(HostInterfaceError::NoService(format!(
            "link-local IPv6 service address {a} is not supported"
        )));
    }
    let port = if hi.service_port == 0 {
        443
    } else {
        hi.service_port
    };
    Ok(SocketAddr::new(address, port))
}

/// The service's base URL: HTTPS, as DSP0270 requires.
pub(crate) fn service_url(at: SocketAddr) -> String {
    format!("https://{at}")
}

/// The `@odata.id`s of a collection's members (at most [`MAX_MEMBERS`]).
pub(crate) fn member_paths(collection: &Value) -> Vec<String> {
    collection["Members"]
        .as_array()
        .map(|m| {
            m.iter()
                .filter_map(|x| x["@odata.id"].as_str())
                .take(MAX_MEMBERS)
                .map(str::to_owned)
                .collect()
        })
        .unwrap_or_default()
}

/// The last segment of an `@odata.id`: the resource's id.
pub(crate) fn id_of(path: &str) -> String {
    path.trim_end_matches('/')
        .rsplit('/')
        .next()
        .unwrap_or_default()
        .to_string()
}

/// Which of the systems is this machine: the one whose UUID is the machine's SMBIOS UUID, else
/// the only one.
pub(crate) fn pick_system<'a>(
    systems: &'a [(String, Value)],
    uuid: &str,
) -> Option<&'a (String, Value)> {
    let uuid = uuid.trim().to_ascii_lowercase();
    systems
        .iter()
        .find(|(_, s)| {
            !uuid.is_empty()
                && s["UUID"]
                    .as_str()
                    .is_some_and(|u| u.trim().to_ascii_lowercase() == uuid)
        })
        .or_else(|| (systems.len() == 1).then(|| &systems[0]))
}

/// The manager's address on the management network from its EthernetInterfaces: the first
/// enabled interface's first IPv4 address that is not unspecified, link-local (the host
/// interface's own side) or the service address this host used.
pub(crate) fn external_ipv4(interfaces: &[Value], service_address: &str) -> Option<String> {
    interfaces
        .iter()
        .filter(|i| i["InterfaceEnabled"].as_bool() != Some(false))
        .flat_map(|i| {
            i["IPv4Addresses"]
                .as_array()
                .cloned()
                .unwrap_or_default()
                .into_iter()
        })
        .filter_map(|a| {
            a["Address"]
                .as_str()
                .and_then(|s| s.parse::<Ipv4Addr>().ok())
        })
        .find(|a| {
            !a.is_unspecified()
                && !a.is_link_local()
                && !a.is_broadcast()
                && a.to_string() != service_address
        })
        .map(|a| a.to_string())
}

/// Gives `nic` its host-side address as the record says (static, or DHCP from the BMC) and
/// brings it up. Returns the DHCP server's address when DHCP was used.
fn configure(nic: &str, hi: &RedfishHostInterface) -> Result<Option<String>, HostInterfaceError> {
    let fail = |detail: String| HostInterfaceError::Configure {
        nic: nic.to_string(),
        detail,
    };
    let run = |args: &[&str]| -> Result<(), HostInterfaceError> {
        let out = Command::new(args[0])
            .args(&args[1..])
            .output()
            .map_err(|e| fail(format!("{}: {e}", args[0])))?;
        let err = String::from_utf8_lossy(&out.stderr);
        // Commissioning may run twice in one boot: an address already there is fine.
        if out.status.success() || err.contains("File exists") {
            Ok(())
        } else {
            Err(fail(format!("{} said: {}", args.join(" "), err.trim())))
        }
    };
    run(&["ip", "link", "set", nic, "up"])?;
    match hi.host_ip_assignment.as_str() {
        "static" => {
            let prefix = prefix_len(&hi.host_mask).ok_or_else(|| {
                fail(format!(
                    "the record's host mask {:?} is not a netmask",
                    hi.host_mask
                ))
            })?;
            if hi.host_address.parse::<Ipv4Addr>().is_err() {
                return Err(fail(format!(
                    "the record's host address {:?} is not IPv4",
                    hi.host_address
                )));
            }
            run(&[
                "ip",
                "addr",
                "add",
                &format!("{}/{prefix}", hi.host_address),
                "dev",
                nic,
            ])?;
            Ok(None)
        }
        "dhcp" => {
            run(&[
                "udhcpc",
                "-i",
                nic,
                "-n",
                "-q",
                "-t",
                "4",
                "-T",
                "2",
                "-s",
                DHCP_SCRIPT,
            ])?;
            Ok(std::fs::read_to_string(format!("/run/hostif-{nic}.server"))
                .ok()
                .map(|s| s.trim().to_string())
                .filter(|s| !s.is_empty()))
        }
        other => Err(HostInterfaceError::Assignment(other.to_string())),
    }
}

/// Asks the Redfish service through the host interface. On a real machine (`root` is `/`) the
/// host-side NIC is configured first; the answer carries whatever was learnt, and an error
/// says where it stopped.
pub async fn discover(
    root: &Path,
    hi: &RedfishHostInterface,
    credentials: Option<&BmcCredentials>,
    system_uuid: &str,
) -> RedfishBmc {
    let mut found = RedfishBmc::default();
    if let Err(e) = discover_into(&mut found, root, hi, credentials, system_uuid).await {
        tracing::warn!(error = %e, "Redfish host interface: discovery stopped");
        found.error = Some(e.to_string());
    }
    found
}

async fn discover_into(
    found: &mut RedfishBmc,
    root: &Path,
    hi: &RedfishHostInterface,
    credentials: Option<&BmcCredentials>,
    system_uuid: &str,
) -> Result<(), HostInterfaceError> {
    let dev = hi.device.clone().ok_or(HostInterfaceError::NoDevice)?;
    let root_owned = root.to_path_buf();
    let wait_dev = dev.clone();
    let nic = tokio::task::spawn_blocking(move || {
        let start = Instant::now();
        loop {
            if let Some(n) = find_nic(&root_owned, &wait_dev) {
                return Some(n);
            }
            if start.elapsed() >= NIC_WAIT {
                return None;
            }
            std::thread::sleep(Duration::from_millis(500));
        }
    })
    .await
    .ok()
    .flatten()
    .ok_or_else(|| HostInterfaceError::NoNic {
        bus: dev.bus.clone(),
        vendor: dev.vendor.clone(),
        product: dev.product.clone(),
        wait: NIC_WAIT,
    })?;
    found.host_nic = nic.clone();
    let dhcp_server = if root == Path::new("/") {
        let hi = hi.clone();
        let nic = nic.clone();
        tokio::task::spawn_blocking(move || configure(&nic, &hi))
            .await
            .map_err(|e| HostInterfaceError::Configure {
                nic: found.host_nic.clone(),
                detail: e.to_string(),
            })??
    } else {
        None
    };
    let at = service_address(hi, dhcp_server.as_deref())?;
    let base = service_url(at);
    found.service_url = base.clone();
    tracing::info!(nic = %nic, service = %base, "Redfish host interface up");
    let service = Service::new(&base, credentials)?;

    // The service root needs no credentials; it also shows the certificate.
    let (root_doc, cert) = service.get_with_certificate("/redfish/v1/").await?;
    found.certificate_sha256 = cert
        .map(|der| hex_lower(&Sha256::digest(der)))
        .unwrap_or_default();
    let systems_path = root_doc["Systems"]["@odata.id"]
        .as_str()
        .unwrap_or("/redfish/v1/Systems")
        .to_string();
    let mut systems = Vec::new();
    for path in member_paths(&service.get(&systems_path).await?) {
        let doc = service.get(&path).await?;
        systems.push((path, doc));
    }
    let (system_path, system) = pick_system(&systems, system_uuid).ok_or_else(|| {
        service.error(format!(
            "none of its {} systems has this machine's UUID {system_uuid:?}",
            systems.len()
        ))
    })?;
    found.system_id = id_of(system_path);

    // The manager that manages this system, else the service's first one.
    let manager_path = match system["Links"]["ManagedBy"][0]["@odata.id"].as_str() {
        Some(p) => p.to_string(),
        None => {
            let managers_path = root_doc["Managers"]["@odata.id"]
                .as_str()
                .unwrap_or("/redfish/v1/Managers");
            member_paths(&service.get(managers_path).await?)
                .into_iter()
                .next()
                .ok_or_else(|| service.error("it lists no managers".into()))?
        }
    };
    found.manager_id = id_of(&manager_path);
    let manager = service.get(&manager_path).await?;
    let nics_path = manager["EthernetInterfaces"]["@odata.id"]
        .as_str()
        .map(str::to_owned)
        .unwrap_or_else(|| format!("{}/EthernetInterfaces", manager_path.trim_end_matches('/')));
    let mut interfaces = Vec::new();
    for path in member_paths(&service.get(&nics_path).await?) {
        interfaces.push(service.get(&path).await?);
    }
    found.address = external_ipv4(&interfaces, &at.ip().to_string()).ok_or_else(|| {
        service.error(format!(
            "manager {} reports no IPv4 address on the management network ({} interfaces)",
            found.manager_id,
            interfaces.len()
        ))
    })?;
    tracing::info!(
        address = %found.address,
        manager = %found.manager_id,
        system = %found.system_id,
        "Redfish BMC discovered through the host interface"
    );
    Ok(())
}

/// Lower-case hex of `bytes`.
fn hex_lower(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// The service on the host interface: basic authentication with the BMC user when there is
/// one, certificates not checked (reported instead), no proxies.
struct Service {
    base: String,
    client: reqwest::Client,
    credentials: Option<BmcCredentials>,
}

impl Service {
    fn new(
        base: &str,
        credentials: Option<&BmcCredentials>,
    ) -> Result<Service, HostInterfaceError> {
        let _ = rustls::crypto::ring::default_provider().install_default();
        let client = reqwest::Client::builder()
            .timeout(REQUEST_TIMEOUT)
            .no_proxy()
            .tls_danger_accept_invalid_certs(true)
            .tls_danger_accept_invalid_hostnames(true)
            .tls_info(true)
            .build()
            .map_err(|e| HostInterfaceError::Service {
                url: base.to_string(),
                detail: format!("cannot build the HTTPS client: {e}"),
            })?;
        Ok(Service {
            base: base.to_string(),
            client,
            credentials: credentials.cloned(),
        })
    }

    fn error(&self, detail: String) -> HostInterfaceError {
        HostInterfaceError::Service {
            url: self.base.clone(),
            detail,
        }
    }

    async fn get(&self, path: &str) -> Result<Value, HostInterfaceError> {
        self.get_with_certificate(path).await.map(|(v, _)| v)
    }

    /// GETs `path` (an `@odata.id`) as JSON; also returns the peer certificate (DER).
    async fn get_with_certificate(
        &self,
        path: &str,
    ) -> Result<(Value, Option<Vec<u8>>), HostInterfaceError> {
        if !path.starts_with('/') {
            return Err(self.error(format!("a link that is not a path: {path:?}")));
        }
        let mut req = self
            .client
            .get(format!("{}{path}", self.base))
            .header("Accept", "application/json")
            .header("OData-Version", "4.0");
        if let Some(c) = &self.credentials {
            req = req.basic_auth(&c.username, Some(&c.password));
        }
        let resp = req
            .send()
            .await
            .map_err(|e| self.error(format!("GET {path}: {}", error_chain(&e))))?;
        let cert = resp
            .extensions()
            .get::<reqwest::tls::TlsInfo>()
            .and_then(|t| t.peer_certificate())
            .map(<[u8]>::to_vec);
        let status = resp.status();
        if !status.is_success() {
            return Err(self.error(format!("GET {path} answered {status}")));
        }
        let body = resp
            .bytes()
            .await
            .map_err(|e| self.error(format!("GET {path}: {e}")))?;
        let doc = serde_json::from_slice(&body)
            .map_err(|e| self.error(format!("GET {path}: not JSON ({e})")))?;
        Ok((doc, cert))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn write(root: &Path, rel: &str, text: &str) {
        let p = root.join(rel);
        std::fs::create_dir_all(p.parent().expect("parent")).expect("mkdir");
        std::fs::write(p, text).expect("write");
    }

    fn usb(vendor: &str, product: &str, mac: Option<&str>) -> HostInterfaceDevice {
        HostInterfaceDevice {
            bus: "usb".into(),
            vendor: vendor.into(),
            product: product.into(),
            mac: mac.map(str::to_owned),
        }
    }

    #[test]
    fn the_nic_is_found_by_usb_ids_pci_ids_or_mac() {
        let dir = tempfile::tempdir().expect("tempdir");
        let r = dir.path();
        // eth0: virtio (PCI 1af4:1000); usb0: a USB NIC 0525:a4a2 whose net device sits on the
        // USB interface directory, one below the device's ids.
        write(r, "sys/class/net/eth0/address", "52:54:00:aa:bb:cc\n");
        write(r, "sys/class/net/eth0/device/vendor", "0x1af4\n");
        write(r, "sys/class/net/eth0/device/device", "0x1000\n");
        write(r, "sys/class/net/usb0/address", "02:11:22:33:44:55\n");
        write(r, "sys/class/net/usb0/idVendor", "0525\n");
        write(r, "sys/class/net/usb0/idProduct", "a4a2\n");
        std::fs::create_dir_all(r.join("sys/class/net/usb0/device")).expect("mkdir");
        write(r, "sys/class/net/lo/address", "00:00:00:00:00:00\n");

        assert_eq!(
            find_nic(r, &usb("0525", "a4a2", None)).as_deref(),
            Some("usb0")
        );
        assert_eq!(find_nic(r, &usb("0525", "ffff", None)), None);
        let pci = HostInterfaceDevice {
            bus: "pci".into(),
            vendor: "1af4".into(),
            product: "1000".into(),
            mac: None,
        };
        assert_eq!(find_nic(r, &pci).as_deref(), Some("eth0"));
        // A v2 record's MAC decides even when the ids would not match.
        assert_eq!(
            find_nic(r, &usb("ffff", "ffff", Some("02:11:22:33:44:55"))).as_deref(),
            Some("usb0")
        );
        assert_eq!(find_nic(&r.join("nowhere"), &pci), None);
    }

    #[test]
    fn netmasks_and_service_urls() {
        assert_eq!(prefix_len("255.255.0.0"), Some(16));
        assert_eq!(prefix_len("255.255.255.252"), Some(30));
        assert_eq!(prefix_len("0.0.0.0"), Some(0));
        assert_eq!(prefix_len("255.0.255.0"), None);
        assert_eq!(prefix_len("not a mask"), None);

        let mut hi = RedfishHostInterface {
            service_address: "169.254.95.118".into(),
            service_port: 443,
            ip_discovery: "static".into(),
            ..Default::default()
        };
        assert_eq!(
            service_address(&hi, None).map(service_url).expect("url"),
            "https://169.254.95.118:443"
        );
        hi.service_port = 0;
        assert_eq!(
            service_address(&hi, None).map(service_url).expect("url"),
            "https://169.254.95.118:443"
        );
        // DHCP-discovered service: the DHCP server's address.
        hi.service_address = "0.0.0.0".into();
        hi.ip_discovery = "dhcp".into();
        assert_eq!(
            service_address(&hi, Some("169.254.1.1"))
                .map(service_url)
                .expect("url"),
            "https://169.254.1.1:443"
        );
        let e = service_address(&hi, None).expect_err("no address");
        assert!(e.to_string().contains("dhcp discovery"), "{e}");
        hi.service_address = "fe80::1".into();
        assert!(service_address(&hi, None).is_err());
        hi.service_address = "2001:db8::5".into();
        assert_eq!(
            service_address(&hi, None).map(service_url).expect("url"),
            "https://[2001:db8::5]:443"
        );
    }

    #[test]
    fn the_system_is_the_one_with_this_machines_uuid() {
        let systems = vec![
            ("/redfish/v1/Systems/a".to_string(), json!({"UUID": "1111"})),
            (
                "/redfish/v1/Systems/b".to_string(),
                json!({"UUID": "ABCD-EF"}),
            ),
        ];
        assert_eq!(
            pick_system(&systems, "abcd-ef").map(|s| id_of(&s.0)),
            Some("b".to_string())
        );
        assert_eq!(pick_system(&systems, "9999"), None);
        assert_eq!(
            pick_system(&systems[..1], "9999").map(|s| s.0.as_str()),
            Some("/redfish/v1/Systems/a")
        );
        assert_eq!(id_of("/redfish/v1/Managers/BMC/"), "BMC");
    }

    #[test]
    fn the_external_address_skips_link_local_disabled_and_the_service() {
        let interfaces = vec![
            json!({"Id": "hostif", "IPv4Addresses": [{"Address": "169.254.95.118"}]}),
            json!({"Id": "off", "InterfaceEnabled": false,
                   "IPv4Addresses": [{"Address": "192.0.2.9"}]}),
            json!({"Id": "usb", "IPv4Addresses": [{"Address": "10.0.0.1"}]}),
            json!({"Id": "mgmt", "IPv4Addresses": [{"Address": "0.0.0.0"},
                                                     {"Address": "192.0.2.31"}]}),
        ];
        assert_eq!(
            external_ipv4(&interfaces, "10.0.0.1").as_deref(),
            Some("192.0.2.31")
        );
        assert_eq!(external_ipv4(&interfaces[..2], "x"), None);
        assert_eq!(
            external_ipv4(&[json!({"IPv4Addresses": "junk"})], "x"),
            None
        );
        assert_eq!(
            member_paths(&json!({"Members": [{"@odata.id": "/a"}, {"x": 1}, {"@odata.id": "/b"}]})),
            vec!["/a", "/b"]
        );
        assert!(member_paths(&json!({"Members": 7})).is_empty());
    }
}
