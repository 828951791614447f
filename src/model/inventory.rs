//! The hardware inventory: the document the agent writes (`agent::inventory` collects it from
//! /proc, /sys and SMBIOS), sends to `/api/agent/v1/inventory` and `/enlist`, and the appliance
//! reads and stores as `Machine::inventory`. One set of types for both ends: a field renamed
//! here is renamed for both, at compile time.
//!
//! # Reading documents of other versions
//!
//! - Missing fields take their defaults (an older agent's document reads; so does a stored
//!   record from before a field existed). Only what the appliance cannot do without is
//!   required: a disk's `name` and `size_bytes`, an interface's `name` and `mac`, and the BMC
//!   LAN channel's `ip_address`.
//! - Unknown fields are ignored (serde's default, kept deliberately: an older appliance takes a
//!   newer agent's inventory, and stores what it knows of it).
//! - `bmc.credentials` that do not have the expected shape are dropped, not refused: a serde
//!   error would echo their text back.
//!
//! # The JSON shape (stable; the appliance stores it as `Machine::inventory`)
//!
//! ```text
//! {
//!   "schema": 1,
//!   "architecture": "amd64/generic",          // MAAS architecture string
//!   "cpu_count": 8,                           // logical CPUs (threads)
//!   "memory_mib": 16384,                      // installed memory in MiB
//!   "firmware": "bios" | "uefi",
//!   "cpu": { "model", "sockets", "cores", "threads", "flags": [..] },
//!   "system": { "vendor", "product", "serial", "uuid", "board_vendor", "board_name",
//!               "bios_vendor", "bios_version", "bios_date", "chassis_type" },
//!   "bmc": { "present", "ipmi_device", "smbios_ipmi": null | { "interface_type",
//!            "spec_version", "i2c_address", "base_address", "io_space" },
//!            "ipmi": null | { "device_id", "firmware_revision", "ipmi_version",
//!                             "manufacturer_id", "product_id" },      // in-band, /dev/ipmi0
//!            "lan": null | { "channel", "ip_address", "ip_source", "netmask", "gateway",
//!                            "mac", "vlan" },                          // the BMC's LAN channel
//!            "redfish_host_interface": null | { "service_address", "service_port",
//!                            "service_hostname", "ip_discovery", "vlan", "service_mask",
//!                            "host_ip_assignment", "host_address", "host_mask",
//!                            "device": null | { "bus": "usb"|"pci", "vendor", "product",
//!                                               "mac" } },            // SMBIOS type 42
//!            "redfish": null | { "host_nic", "service_url", "manager_id", "system_id",
//!                            "address", "certificate_sha256", "error" },
//!                            // the Redfish service asked through the host interface
//!            "credentials": { "username", "password" } },  // only towards the appliance:
//!                            // the user commissioning created; the appliance never stores it here
//!   "disks": [ { "name", "size_bytes", "model", "serial", "block_size", "rotational",
//!                "tags": ["ssd"|"rotary"], "physical_block_size" } ],
//!   "interfaces": [ { "name", "mac", "boot", "driver", "speed_mbps", "link" } ],
//!   "pci": [ { "address", "vendor", "device", "class", "driver" } ],
//!   "usb": [ { "bus_path", "vendor", "product", "manufacturer", "product_name" } ]
//! }
//! ```
//!
//! `disks` and `interfaces` deserialize as rackbox's `model::Disk` and `model::Interface` (the
//! extra fields are ignored there); numbers are plain JSON numbers, ids lower-case hex strings.

use schemars::JsonSchema;
use serde::{Deserialize, Deserializer, Serialize};

use super::machine::Disk;

/// Version of the JSON shape; bumped only when a field changes meaning or is removed.
pub const SCHEMA: u32 = 1;

/// The machine as the agent sees it. See the module documentation for the JSON shape.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(default)]
pub struct Inventory {
    /// Version of the shape the agent wrote ([`SCHEMA`]); 0 when absent (a document from before the
    /// field).
    pub schema: u32,
    /// MAAS architecture string, e.g. "amd64/generic".
    pub architecture: String,
    /// Logical CPUs (hardware threads); the machine's `cpu_count`.
    pub cpu_count: u32,
    /// Installed memory in MiB; the machine's `memory_mib`.
    pub memory_mib: u64,
    /// How the firmware booted the ramdisk; BIOS when absent.
    pub firmware: Firmware,
    /// Processor model and topology.
    pub cpu: Cpu,
    /// SMBIOS identity of the system, board and BIOS.
    pub system: SystemInfo,
    /// The BMC as seen from inside the machine (IPMI, Redfish host interface).
    pub bmc: Bmc,
    /// Block devices; stored as the machine's `disks` ([`Inventory::model_disks`]).
    pub disks: Vec<DiskInfo>,
    /// Physical network interfaces; stored as the machine's `interfaces`.
    pub interfaces: Vec<NicInfo>,
    /// PCI devices, for the operator; rackbox does not act on them.
    pub pci: Vec<PciDevice>,
    /// USB devices, for the operator; rackbox does not act on them.
    pub usb: Vec<UsbDevice>,
}

impl Inventory {
    /// The disks as rackbox's model stores them.
    pub fn model_disks(&self) -> Vec<Disk> {
        self.disks
            .iter()
            .map(|d| Disk {
                name: d.name.clone(),
                size_bytes: d.size_bytes,
                model: d.model.clone(),
                serial: d.serial.clone(),
                block_size: d.block_size,
                rotational: d.rotational,
                tags: d.tags.clone(),
            })
            .collect()
    }
}

/// How the machine's firmware booted the ramdisk.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum Firmware {
    /// Legacy BIOS boot (also when the agent does not say).
    #[default]
    Bios,
    /// UEFI boot.
    Uefi,
}

/// The processors, from /proc/cpuinfo.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(default)]
pub struct Cpu {
    /// Model name as /proc/cpuinfo gives it; empty when unknown.
    pub model: String,
    /// Physical packages.
    pub sockets: u32,
    /// Physical cores over all sockets.
    pub cores: u32,
    /// Logical CPUs (hardware threads) over all sockets.
    pub threads: u32,
    /// Feature flags from /proc/cpuinfo (`vmx`, `avx2`, ...).
    pub flags: Vec<String>,
}

/// SMBIOS system, board and BIOS strings (`/sys/class/dmi/id`); empty when absent.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(default)]
pub struct SystemInfo {
    /// System manufacturer (`sys_vendor`).
    pub vendor: String,
    /// System product name (`product_name`).
    pub product: String,
    /// System serial number.
    pub serial: String,
    /// SMBIOS system UUID.
    pub uuid: String,
    /// Board manufacturer.
    pub board_vendor: String,
    /// Board product name.
    pub board_name: String,
    /// BIOS vendor.
    pub bios_vendor: String,
    /// BIOS version string.
    pub bios_version: String,
    /// BIOS release date, as the firmware writes it.
    pub bios_date: String,
    /// SMBIOS chassis type number (`chassis_type`, e.g. "23" for a rack mount chassis).
    pub chassis_type: String,
}

/// Whether the machine has a BMC the appliance could drive with IPMI.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(default)]
pub struct Bmc {
    /// Either an IPMI device node or an SMBIOS type 38 record was found.
    pub present: bool,
    /// `/dev/ipmi0` or an entry of `/sys/class/ipmi` exists (the ipmi_si driver bound).
    pub ipmi_device: bool,
    /// The SMBIOS "IPMI Device Information" (type 38) record, when the firmware has one.
    pub smbios_ipmi: Option<SmbiosIpmi>,
    /// The BMC's identity, read in-band (Get Device ID).
    pub ipmi: Option<IpmiDeviceInfo>,
    /// The BMC's LAN channel and its address configuration, read in-band.
    pub lan: Option<BmcLan>,
    /// The Redfish service the SMBIOS Management Controller Host Interface (type 42) names.
    pub redfish_host_interface: Option<RedfishHostInterface>,
    /// What the Redfish service said when asked through that host interface (commissioning).
    pub redfish: Option<RedfishBmc>,
    /// The BMC user commissioning created for the appliance. Sent to the appliance only (the
    /// agent API, with the per-boot token); never printed, and not kept in the stored inventory.
    /// Malformed credentials read as none (see the module documentation).
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "lenient"
    )]
    #[schemars(skip)]
    pub credentials: Option<BmcCredentials>,
}

/// Get Device ID: who made the BMC and what it runs.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(default)]
pub struct IpmiDeviceInfo {
    /// Device ID byte of Get Device ID.
    pub device_id: u8,
    /// e.g. "9.08".
    pub firmware_revision: String,
    /// e.g. "2.0".
    pub ipmi_version: String,
    /// IANA enterprise number of the manufacturer.
    pub manufacturer_id: u32,
    /// Product ID, the manufacturer's own numbering.
    pub product_id: u16,
}

/// A LAN channel of the BMC as its LAN configuration parameters describe it.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct BmcLan {
    /// IPMI channel number of the LAN channel; 0 when absent.
    #[serde(default)]
    pub channel: u8,
    /// Dotted IPv4; "0.0.0.0" when the BMC has none.
    pub ip_address: String,
    /// "static", "dhcp", "bios", "other", "unspecified" or "unknown".
    #[serde(default)]
    pub ip_source: String,
    /// Dotted IPv4 netmask; empty when not read.
    #[serde(default)]
    pub netmask: String,
    /// Dotted IPv4 default gateway; empty when not read.
    #[serde(default)]
    pub gateway: String,
    /// Lower-case colon-separated MAC of the BMC's port.
    #[serde(default)]
    pub mac: String,
    /// 802.1q VLAN id, when tagging is on.
    #[serde(default)]
    pub vlan: Option<u16>,
}

/// A BMC account. Its `Debug` hides the password.
#[derive(Clone, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(default)]
pub struct BmcCredentials {
    /// Login name on the BMC.
    pub username: String,
    /// Its password, only ever sent to the appliance; `Debug` hides it.
    pub password: String,
}

impl std::fmt::Debug for BmcCredentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BmcCredentials")
            .field("username", &self.username)
            .field("password", &"********")
            .finish()
    }
}

/// SMBIOS type 42 with a "Redfish over IP" protocol record (DMTF DSP0270): where the host
/// reaches its BMC's Redfish service. Usually a link-local address on a USB or PCI NIC that only
/// the host itself can reach.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(default)]
pub struct RedfishHostInterface {
    /// IPv4 or IPv6 address of the Redfish service; empty when it is discovered otherwise.
    pub service_address: String,
    /// TCP port of the service (usually 443); 0 when the record gives none.
    pub service_port: u16,
    /// Host name of the service, when the record names one; empty otherwise.
    pub service_hostname: String,
    /// How the service address is assigned: "unknown", "static", "dhcp", "auto", "host".
    pub ip_discovery: String,
    /// 0 when untagged.
    pub vlan: u32,
    /// The service's netmask (IPv4 dotted or IPv6), empty when unknown.
    #[serde(default)]
    pub service_mask: String,
    /// How the host side of the link gets its address: "unknown", "static", "dhcp", "auto",
    /// "host".
    #[serde(default)]
    pub host_ip_assignment: String,
    /// The host side's address and mask when assigned statically.
    #[serde(default)]
    pub host_address: String,
    /// The host side's mask when assigned statically.
    #[serde(default)]
    pub host_mask: String,
    /// The host-side NIC the interface is carried on, as the record describes it.
    #[serde(default)]
    pub device: Option<HostInterfaceDevice>,
}

/// The device of a Redfish host interface (DSP0270 device descriptors 02h-05h): how the host
/// finds the NIC that leads to its BMC.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(default)]
pub struct HostInterfaceDevice {
    /// "usb" or "pci".
    pub bus: String,
    /// Lower-case 4-digit hex ids: USB idVendor/idProduct, or PCI vendor/device.
    pub vendor: String,
    /// Lower-case 4-digit hex product id (USB idProduct or PCI device).
    pub product: String,
    /// The NIC's MAC (v2 descriptors only), lower-case colon-separated.
    #[serde(default)]
    pub mac: Option<String>,
}

/// SMBIOS type 38: how the host reaches its BMC.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(default)]
pub struct SmbiosIpmi {
    /// "KCS", "SMIC", "BT", "SSIF" or "unknown".
    pub interface_type: String,
    /// IPMI specification revision, e.g. "2.0".
    pub spec_version: String,
    /// I2C slave address of the BMC (for SSIF); 0 otherwise.
    pub i2c_address: u8,
    /// Base address of the interface's registers (I/O port or memory).
    pub base_address: u64,
    /// The base address is in I/O space (else memory-mapped).
    pub io_space: bool,
}

/// What the Redfish service behind the SMBIOS host interface said when the agent asked it
/// (`agent::redfish_host`).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(default)]
pub struct RedfishBmc {
    /// The host-side NIC the interface was found on.
    pub host_nic: String,
    /// The service as the host reached it, e.g. `https://169.254.95.118:443`.
    pub service_url: String,
    /// The Manager (the BMC) and the ComputerSystem (this machine) ids.
    pub manager_id: String,
    /// The ComputerSystem (this machine) id; `manager_id` is the Manager's.
    pub system_id: String,
    /// The manager's IPv4 address on the management network; empty when it reports none.
    pub address: String,
    /// SHA-256 (lower-case hex) of the service's TLS certificate (DER), empty over plain HTTP.
    pub certificate_sha256: String,
    /// Why discovery stopped short; what was learnt before is kept.
    pub error: Option<String>,
}

/// A block device; the first seven fields are rackbox's [`Disk`], with the same defaults.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct DiskInfo {
    /// Kernel name, e.g. "sda", "nvme0n1", "vda".
    pub name: String,
    /// Capacity in bytes.
    pub size_bytes: u64,
    /// Vendor model string as the kernel reports it; empty when unknown.
    #[serde(default)]
    pub model: String,
    /// Serial number as the kernel reports it; empty when unknown.
    #[serde(default)]
    pub serial: String,
    /// Logical sector size in bytes (512 when not said).
    #[serde(default = "default_block_size")]
    pub block_size: u32,
    /// Spinning disk (the kernel's rotational flag); false when absent.
    #[serde(default)]
    pub rotational: bool,
    /// "ssd" or "rotary", for storage constraints.
    #[serde(default)]
    pub tags: Vec<String>,
    /// Physical sector size in bytes; 0 when not said.
    #[serde(default)]
    pub physical_block_size: u32,
}

/// A physical network interface; the first three fields are rackbox's
/// [`super::machine::Interface`].
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct NicInfo {
    /// Kernel name, e.g. "eno1", "enp1s0".
    pub name: String,
    /// Lower-case colon-separated MAC address (as the agent read it; the appliance normalizes).
    pub mac: String,
    /// The firmware booted from this interface (BOOTIF), or it carries the default route.
    #[serde(default)]
    pub boot: bool,
    /// Bound kernel driver, e.g. "virtio_net"; empty when unknown.
    #[serde(default)]
    pub driver: String,
    /// Link speed in Mbit/s, when the link is up and the driver says.
    #[serde(default)]
    pub speed_mbps: Option<u32>,
    /// Carrier detected.
    #[serde(default)]
    pub link: bool,
}

/// A PCI function as `/sys/bus/pci/devices` lists it.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(default)]
pub struct PciDevice {
    /// Domain:bus:device.function, e.g. "0000:00:1f.2".
    pub address: String,
    /// Vendor id, 4 hex digits.
    pub vendor: String,
    /// Device id, 4 hex digits.
    pub device: String,
    /// Class code, 6 hex digits (class, subclass, programming interface).
    pub class: String,
    /// Bound kernel driver, empty when none.
    pub driver: String,
}

/// A USB device as `/sys/bus/usb/devices` lists it.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(default)]
pub struct UsbDevice {
    /// Kernel path name, e.g. "1-1.2".
    pub bus_path: String,
    /// Vendor id (idVendor), 4 hex digits.
    pub vendor: String,
    /// Product id (idProduct), 4 hex digits.
    pub product: String,
    /// Manufacturer string the device reports; empty when none.
    pub manufacturer: String,
    /// Product string the device reports; empty when none.
    pub product_name: String,
}

fn default_block_size() -> u32 {
    512
}

/// A value that does not have `T`'s shape reads as none instead of failing the document
/// (`bmc.credentials`, and `Machine::inventory` in a stored record).
pub(super) fn lenient<'de, D, T>(d: D) -> Result<Option<T>, D::Error>
where
    D: Deserializer<'de>,
    T: serde::de::DeserializeOwned,
{
    let raw = Option::<serde_json::Value>::deserialize(d)?;
    Ok(raw.and_then(|v| serde_json::from_value(v).ok()))
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::model::Machine;

    /// A machine record as stored before the inventory was typed, with `inventory` holding
    /// whatever the agent sent.
    fn record(inventory: serde_json::Value) -> serde_json::Value {
        crate::model::machine::tests::stored_record(json!({"inventory": inventory}))
    }

    #[test]
    fn an_old_record_with_an_older_agents_inventory_still_loads() {
        // An older agent: no in-band BMC, no PCI or USB lists, no schema number.
        let old = record(json!({
            "cpu_count": 2, "memory_mib": 2048, "architecture": "amd64/generic",
            "firmware": "uefi",
            "bmc": {"present": true, "ipmi_device": true, "smbios_ipmi": null},
            "disks": [{"name": "vda", "size_bytes": 8_589_934_592u64}],
            "interfaces": [{"name": "ens3", "mac": "52:54:00:aa:bb:01"}],
        }));
        let m: Machine = serde_json::from_value(old).expect("the record loads");
        let inv = m.inventory.expect("its inventory reads");
        assert_eq!((inv.cpu_count, inv.firmware), (2, Firmware::Uefi));
        assert_eq!(inv.bmc.lan, None);
        assert_eq!(
            inv.disks[0].block_size, 512,
            "the model's default block size"
        );
        assert_eq!(inv.model_disks()[0].block_size, 512);
        assert!(!inv.interfaces[0].boot);
        let m: Machine = serde_json::from_value(record(json!(null))).expect("no inventory");
        assert_eq!(m.inventory, None);
    }

    #[test]
    fn a_stored_inventory_of_another_shape_does_not_make_the_machine_unreadable() {
        let odd = record(json!({"cpu_count": "two", "disks": "many"}));
        let m: Machine = serde_json::from_value(odd).expect("the record loads");
        assert_eq!(m.inventory, None);
        assert_eq!(m.system_id, "abc123");
    }

    #[test]
    fn a_newer_agents_fields_are_ignored_and_bad_credentials_dropped() {
        let inv: Inventory = serde_json::from_value(json!({
            "schema": 1, "cpu_count": 4, "a_field_of_tomorrow": {"x": 1},
            "bmc": {"present": false, "credentials": {"username": 7, "password": ["secret"]}},
            "interfaces": [{"name": "eth0", "mac": "52:54:00:aa:bb:02", "pcie_gen": 4}],
        }))
        .expect("a newer document reads");
        assert_eq!(inv.cpu_count, 4);
        assert_eq!(inv.bmc.credentials, None);
        let stored = serde_json::to_value(&inv).expect("json");
        assert!(stored.get("a_field_of_tomorrow").is_none());
        assert!(stored["bmc"].get("credentials").is_none());
        // What the appliance cannot do without is still required.
        assert!(
            serde_json::from_value::<Inventory>(json!({"interfaces": [{"name": "eth0"}]})).is_err()
        );
        assert!(serde_json::from_value::<Inventory>(json!({"disks": [{"name": "sda"}]})).is_err());
    }
}
