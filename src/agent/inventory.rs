//! Hardware inventory from /proc, /sys and SMBIOS (DMI), as commissioning reports it.
//!
//! Every parser here (and those of the SMBIOS records, in [`super::smbios`]) is a pure function
//! over a file's contents, so each is tested with fixtures; [`collect`] is the thin part that
//! reads files under a root directory (`/` on a real machine, a fixture tree in tests) and never
//! fails on a missing or unreadable file: hardware varies, and an inventory with a gap is more
//! useful than none.
//!
//! The document's types and its JSON shape are [`crate::model::inventory`]'s, shared with the
//! appliance that reads it.

use std::collections::BTreeSet;
use std::fs;
use std::path::{Path, PathBuf};

use super::smbios;

// The data types are the wire contract, shared with the appliance: they live in the model.
pub use crate::model::inventory::{
    Bmc, BmcCredentials, BmcLan, Cpu, DiskInfo, Firmware, HostInterfaceDevice, Inventory,
    IpmiDeviceInfo, NicInfo, PciDevice, RedfishBmc, RedfishHostInterface, SCHEMA, SmbiosIpmi,
    SystemInfo, UsbDevice,
};

/// MAAS architecture string for the CPU this binary runs on.
pub(crate) fn architecture() -> String {
    match std::env::consts::ARCH {
        "x86_64" => "amd64/generic".into(),
        "aarch64" => "arm64/generic".into(),
        "powerpc64" => "ppc64el/generic".into(),
        "s390x" => "s390x/generic".into(),
        other => format!("{other}/generic"),
    }
}

/// Parses `/proc/cpuinfo` (x86 layout; other architectures give at least the thread count).
pub fn parse_cpuinfo(text: &str) -> Cpu {
    let mut threads = 0u32;
    let mut model = String::new();
    let mut flags: Vec<String> = Vec::new();
    // (physical id, core id) pairs name physical cores; "physical id" alone names sockets.
    let mut sockets = BTreeSet::new();
    let mut cores = BTreeSet::new();
    let mut physical_id: Option<String> = None;
    let mut core_id: Option<String> = None;
    let mut finish = |pid: &mut Option<String>, cid: &mut Option<String>| {
        if let Some(p) = pid.take() {
            sockets.insert(p.clone());
            if let Some(c) = cid.take() {
                cores.insert((p, c));
            }
        }
        *cid = None;
    };
    for line in text.lines() {
        let Some((key, value)) = line.split_once(':') else {
            continue;
        };
        let (key, value) = (key.trim(), value.trim());
        match key {
            "processor" => {
                finish(&mut physical_id, &mut core_id);
                threads += 1;
            }
            "model name" if model.is_empty() => model = value.to_string(),
            "flags" if flags.is_empty() => {
                flags = value.split_whitespace().map(str::to_string).collect();
            }
            "physical id" => physical_id = Some(value.to_string()),
            "core id" => core_id = Some(value.to_string()),
            _ => {}
        }
    }
    finish(&mut physical_id, &mut core_id);
    let sockets_n = u32::try_from(sockets.len()).unwrap_or(u32::MAX).max(1);
    let cores_n = if cores.is_empty() {
        threads
    } else {
        u32::try_from(cores.len()).unwrap_or(u32::MAX)
    };
    Cpu {
        model,
        sockets: if threads == 0 { 0 } else { sockets_n },
        cores: cores_n,
        threads,
        flags,
    }
}

/// MemTotal of `/proc/meminfo` in MiB: what the kernel manages, a little under what is installed.
pub fn parse_meminfo_mib(text: &str) -> Option<u64> {
    text.lines().find_map(|l| {
        let rest = l.strip_prefix("MemTotal:")?;
        let kib: u64 = rest.trim().trim_end_matches("kB").trim().parse().ok()?;
        Some(kib / 1024)
    })
}

/// Installed memory in MiB from the memory-hotplug view: `block_size_bytes` (hex) times the
/// number of memory blocks. Unlike MemTotal this counts what the kernel reserved for itself,
/// so it matches the DIMMs (or QEMU's `-m`).
pub fn memory_blocks_mib(block_size_hex: &str, blocks: usize) -> Option<u64> {
    let size = u64::from_str_radix(block_size_hex.trim().trim_start_matches("0x"), 16).ok()?;
    let total = size.checked_mul(u64::try_from(blocks).ok()?)?;
    (total > 0).then_some(total / (1024 * 1024))
}

/// Block devices that are not disks a machine could be deployed on.
pub(crate) fn is_ignored_block_device(name: &str) -> bool {
    ["loop", "ram", "zram", "sr", "fd", "nbd", "dm-", "md"]
        .iter()
        .any(|p| name.starts_with(p))
}

/// Parses a sysfs number (decimal), tolerating whitespace.
pub fn parse_u64(text: &str) -> Option<u64> {
    text.trim().parse().ok()
}

/// Parses a sysfs hex id such as `0x8086` into 4 (or more) lower-case hex digits.
pub fn parse_hex_id(text: &str) -> String {
    text.trim().trim_start_matches("0x").to_ascii_lowercase()
}

/// The interface that carries the default route in `/proc/net/route`, if any.
pub fn default_route_interface(route: &str) -> Option<String> {
    route.lines().skip(1).find_map(|l| {
        let cols: Vec<&str> = l.split_whitespace().collect();
        (cols.len() > 2 && cols[1] == "00000000").then(|| cols[0].to_string())
    })
}

/// Reads the system under `root` (`/` on a machine). `boot_mac` is BOOTIF from the kernel
/// command line, when the boot loader gave it.
pub fn collect(root: &Path, boot_mac: Option<&str>) -> Inventory {
    let cpu = read(root, "proc/cpuinfo")
        .map(|t| parse_cpuinfo(&t))
        .unwrap_or_default();
    let memory_mib = read_memory_blocks(root)
        .or_else(|| read(root, "proc/meminfo").and_then(|t| parse_meminfo_mib(&t)))
        .unwrap_or(0);
    let firmware = if root.join("sys/firmware/efi").exists() {
        Firmware::Uefi
    } else {
        Firmware::Bios
    };
    Inventory {
        schema: SCHEMA,
        architecture: architecture(),
        cpu_count: cpu.threads,
        memory_mib,
        firmware,
        system: read_system(root),
        bmc: read_bmc(root),
        disks: read_disks(root),
        interfaces: read_nics(root, boot_mac),
        pci: read_pci(root),
        usb: read_usb(root),
        cpu,
    }
}

/// Reads a file under `root` as text; None when missing or unreadable.
fn read(root: &Path, rel: impl AsRef<Path>) -> Option<String> {
    fs::read_to_string(root.join(rel)).ok()
}

/// Reads a one-line sysfs attribute, trimmed; "" when missing.
fn attr(dir: &Path, name: &str) -> String {
    fs::read_to_string(dir.join(name))
        .map(|s| s.trim().to_string())
        .unwrap_or_default()
}

/// The entries of a directory, sorted by name (sysfs order is not stable).
fn entries(dir: &Path) -> Vec<(String, PathBuf)> {
    let mut out: Vec<(String, PathBuf)> = fs::read_dir(dir)
        .map(|rd| {
            rd.filter_map(Result::ok)
                .map(|e| (e.file_name().to_string_lossy().into_owned(), e.path()))
                .collect()
        })
        .unwrap_or_default();
    out.sort();
    out
}

/// The last component of a symlink's target (a driver's name from `.../driver`).
fn link_name(path: &Path) -> String {
    fs::read_link(path)
        .ok()
        .and_then(|t| t.file_name().map(|n| n.to_string_lossy().into_owned()))
        .unwrap_or_default()
}

fn read_memory_blocks(root: &Path) -> Option<u64> {
    let dir = root.join("sys/devices/system/memory");
    let block = fs::read_to_string(dir.join("block_size_bytes")).ok()?;
    let blocks = entries(&dir)
        .iter()
        .filter(|(n, _)| {
            n.strip_prefix("memory")
                .is_some_and(|d| !d.is_empty() && d.bytes().all(|b| b.is_ascii_digit()))
        })
        .count();
    memory_blocks_mib(&block, blocks)
}

fn read_system(root: &Path) -> SystemInfo {
    let d = root.join("sys/class/dmi/id");
    SystemInfo {
        vendor: attr(&d, "sys_vendor"),
        product: attr(&d, "product_name"),
        serial: attr(&d, "product_serial"),
        uuid: attr(&d, "product_uuid"),
        board_vendor: attr(&d, "board_vendor"),
        board_name: attr(&d, "board_name"),
        bios_vendor: attr(&d, "bios_vendor"),
        bios_version: attr(&d, "bios_version"),
        bios_date: attr(&d, "bios_date"),
        chassis_type: attr(&d, "chassis_type"),
    }
}

fn read_bmc(root: &Path) -> Bmc {
    let ipmi_device =
        root.join("dev/ipmi0").exists() || !entries(&root.join("sys/class/ipmi")).is_empty();
    let smbios_ipmi = entries(&root.join("sys/firmware/dmi/entries"))
        .into_iter()
        .filter(|(n, _)| n.starts_with("38-"))
        .find_map(|(_, p)| fs::read(p.join("raw")).ok())
        .and_then(|raw| smbios::parse_type38(&raw));
    let redfish_host_interface = entries(&root.join("sys/firmware/dmi/entries"))
        .into_iter()
        .filter(|(n, _)| n.starts_with("42-"))
        .filter_map(|(_, p)| fs::read(p.join("raw")).ok())
        .find_map(|raw| smbios::parse_type42(&raw));
    Bmc {
        present: ipmi_device || smbios_ipmi.is_some() || redfish_host_interface.is_some(),
        ipmi_device,
        smbios_ipmi,
        redfish_host_interface,
        ..Default::default()
    }
}

fn read_disks(root: &Path) -> Vec<DiskInfo> {
    entries(&root.join("sys/block"))
        .into_iter()
        .filter(|(name, _)| !is_ignored_block_device(name))
        .filter_map(|(name, dir)| {
            // `size` is always in 512-byte units, whatever the sector size.
            let size_bytes = parse_u64(&attr(&dir, "size"))?.checked_mul(512)?;
            if size_bytes == 0 {
                return None;
            }
            let rotational = attr(&dir, "queue/rotational") == "1";
            let serial = [attr(&dir, "device/serial"), attr(&dir, "serial")]
                .into_iter()
                .find(|s| !s.is_empty())
                .unwrap_or_default();
            Some(DiskInfo {
                model: attr(&dir, "device/model"),
                serial,
                size_bytes,
                block_size: parse_u64(&attr(&dir, "queue/logical_block_size"))
                    .and_then(|v| u32::try_from(v).ok())
                    .unwrap_or(512),
                physical_block_size: parse_u64(&attr(&dir, "queue/physical_block_size"))
                    .and_then(|v| u32::try_from(v).ok())
                    .unwrap_or(512),
                rotational,
                tags: vec![if rotational { "rotary" } else { "ssd" }.to_string()],
                name,
            })
        })
        .collect()
}

fn read_nics(root: &Path, boot_mac: Option<&str>) -> Vec<NicInfo> {
    let default_if = read(root, "proc/net/route").and_then(|t| default_route_interface(&t));
    let mut nics: Vec<NicInfo> = entries(&root.join("sys/class/net"))
        .into_iter()
        // Only interfaces backed by a device: no lo, bridges, bonds, veths or tunnels.
        .filter(|(_, dir)| dir.join("device").exists())
        .map(|(name, dir)| NicInfo {
            mac: attr(&dir, "address").to_ascii_lowercase(),
            driver: link_name(&dir.join("device/driver")),
            // Reading speed or carrier of a down interface fails with EINVAL: no link.
            speed_mbps: attr(&dir, "speed")
                .parse::<i64>()
                .ok()
                .filter(|s| *s > 0)
                .and_then(|s| u32::try_from(s).ok()),
            link: attr(&dir, "carrier") == "1",
            boot: false,
            name,
        })
        .collect();
    let boot = nics
        .iter()
        .position(|n| boot_mac.is_some_and(|m| m.eq_ignore_ascii_case(&n.mac)))
        .or_else(|| {
            nics.iter()
                .position(|n| default_if.as_deref() == Some(&n.name))
        });
    if let Some(i) = boot {
        nics[i].boot = true;
    }
    nics
}

fn read_pci(root: &Path) -> Vec<PciDevice> {
    entries(&root.join("sys/bus/pci/devices"))
        .into_iter()
        .map(|(address, dir)| PciDevice {
            vendor: parse_hex_id(&attr(&dir, "vendor")),
            device: parse_hex_id(&attr(&dir, "device")),
            class: parse_hex_id(&attr(&dir, "class")),
            driver: link_name(&dir.join("driver")),
            address,
        })
        .collect()
}

fn read_usb(root: &Path) -> Vec<UsbDevice> {
    entries(&root.join("sys/bus/usb/devices"))
        .into_iter()
        // Devices have idVendor; their interfaces ("1-1:1.0") do not.
        .filter(|(_, dir)| dir.join("idVendor").exists())
        .map(|(bus_path, dir)| UsbDevice {
            vendor: parse_hex_id(&attr(&dir, "idVendor")),
            product: parse_hex_id(&attr(&dir, "idProduct")),
            manufacturer: attr(&dir, "manufacturer"),
            product_name: attr(&dir, "product"),
            bus_path,
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model;

    /// /proc/cpuinfo of two sockets of two cores of two threads, cut to what the parser reads:
    /// the first two processors with their model and flags, the other six by socket and core.
    fn cpuinfo_2s_4c_8t() -> String {
        let mut text = String::from(
            "processor\t: 0
vendor_id\t: GenuineIntel
model name\t: Intel(R) Xeon(R) CPU E5-2620 v4 @ 2.10GHz
physical id\t: 0
core id\t\t: 0
flags\t\t: fpu vme sse sse2 ht vmx

processor\t: 1
model name\t: Intel(R) Xeon(R) CPU E5-2620 v4 @ 2.10GHz
physical id\t: 0
core id\t\t: 1
flags\t\t: fpu vme sse sse2 ht vmx
",
        );
        for (processor, socket, core) in [
            (2, 1, 0),
            (3, 1, 1),
            (4, 0, 0),
            (5, 0, 1),
            (6, 1, 0),
            (7, 1, 1),
        ] {
            text.push_str(&format!(
                "\nprocessor\t: {processor}\nphysical id\t: {socket}\ncore id\t\t: {core}\n"
            ));
        }
        text
    }

    #[test]
    fn cpuinfo_counts_sockets_cores_threads() {
        let cpu = parse_cpuinfo(&cpuinfo_2s_4c_8t());
        assert_eq!(cpu.threads, 8);
        assert_eq!(cpu.sockets, 2);
        assert_eq!(cpu.cores, 4);
        assert_eq!(cpu.model, "Intel(R) Xeon(R) CPU E5-2620 v4 @ 2.10GHz");
        assert_eq!(cpu.flags, vec!["fpu", "vme", "sse", "sse2", "ht", "vmx"]);
    }

    #[test]
    fn cpuinfo_without_topology_counts_threads() {
        let cpu = parse_cpuinfo("processor : 0\nprocessor : 1\nprocessor : 2\n");
        assert_eq!((cpu.threads, cpu.cores, cpu.sockets), (3, 3, 1));
        assert_eq!(parse_cpuinfo("").threads, 0);
    }

    #[test]
    fn memory_from_meminfo_and_blocks() {
        assert_eq!(
            parse_meminfo_mib("MemTotal:        8056004 kB\nMemFree: 1 kB\n"),
            Some(7867)
        );
        assert_eq!(parse_meminfo_mib("MemFree: 1 kB\n"), None);
        assert_eq!(memory_blocks_mib("8000000\n", 4), Some(512));
        assert_eq!(memory_blocks_mib("zz", 4), None);
        assert_eq!(memory_blocks_mib("8000000", 0), None);
    }

    #[test]
    fn default_route() {
        let route = "Iface\tDestination\tGateway\tFlags\n\
                     eno1\t0002000C0\t00000000\t0001\n\
                     eno2\t00000000\t010200C0\t0003\n";
        assert_eq!(default_route_interface(route).as_deref(), Some("eno2"));
        assert_eq!(default_route_interface("Iface\tDestination\n"), None);
    }

    #[test]
    fn ignored_block_devices() {
        for n in [
            "loop0", "ram1", "zram0", "sr0", "fd0", "nbd3", "dm-0", "md127",
        ] {
            assert!(is_ignored_block_device(n), "{n}");
        }
        for n in ["sda", "vda", "nvme0n1", "xvda", "mmcblk0"] {
            assert!(!is_ignored_block_device(n), "{n}");
        }
    }

    fn write(root: &Path, rel: &str, text: &str) {
        let p = root.join(rel);
        fs::create_dir_all(p.parent().expect("fixture paths have a parent")).expect("mkdir");
        fs::write(p, text).expect("write fixture");
    }

    /// A small fake /proc + /sys tree exercises the reading side end to end.
    #[test]
    fn collect_from_a_fixture_tree() {
        let dir = tempfile::tempdir().expect("tempdir");
        let r = dir.path();
        write(r, "proc/cpuinfo", &cpuinfo_2s_4c_8t());
        write(r, "proc/meminfo", "MemTotal: 1000000 kB\n");
        write(r, "sys/devices/system/memory/block_size_bytes", "8000000\n");
        for i in 0..8 {
            write(
                r,
                &format!("sys/devices/system/memory/memory{i}/online"),
                "1\n",
            );
        }
        write(r, "sys/class/dmi/id/sys_vendor", "QEMU\n");
        write(
            r,
            "sys/class/dmi/id/product_name",
            "Standard PC (i440FX + PIIX, 1996)\n",
        );
        write(r, "sys/block/vda/size", "4194304\n");
        write(r, "sys/block/vda/queue/rotational", "0\n");
        write(r, "sys/block/vda/queue/logical_block_size", "512\n");
        write(r, "sys/block/vda/queue/physical_block_size", "4096\n");
        write(r, "sys/block/vda/serial", "disk-1\n");
        write(r, "sys/block/loop0/size", "100\n");
        write(r, "sys/block/sr0/size", "100\n");
        write(r, "sys/class/net/eth0/address", "52:54:00:AA:BB:CC\n");
        write(r, "sys/class/net/eth0/device/vendor", "0x1af4\n");
        write(r, "sys/class/net/eth0/carrier", "1\n");
        write(r, "sys/class/net/eth0/speed", "-1\n");
        write(r, "sys/class/net/lo/address", "00:00:00:00:00:00\n");
        write(r, "sys/bus/pci/devices/0000:00:03.0/vendor", "0x1AF4\n");
        write(r, "sys/bus/pci/devices/0000:00:03.0/device", "0x1000\n");
        write(r, "sys/bus/pci/devices/0000:00:03.0/class", "0x020000\n");
        write(r, "sys/bus/usb/devices/1-1/idVendor", "0627\n");
        write(r, "sys/bus/usb/devices/1-1/idProduct", "0001\n");
        write(r, "sys/bus/usb/devices/1-1:1.0/bInterfaceClass", "03\n");
        write(r, "dev/ipmi0", "");
        let t42 = r.join("sys/firmware/dmi/entries/42-0/raw");
        fs::create_dir_all(t42.parent().expect("parent")).expect("mkdir");
        fs::write(&t42, smbios::tests::type42_fixture()).expect("type 42");

        let inv = collect(r, Some("52:54:00:aa:bb:cc"));
        assert_eq!(inv.schema, SCHEMA);
        assert_eq!(inv.cpu_count, 8);
        assert_eq!(inv.memory_mib, 1024);
        assert_eq!(inv.firmware, Firmware::Bios);
        assert_eq!(inv.system.vendor, "QEMU");
        assert_eq!(inv.disks.len(), 1);
        let d = &inv.disks[0];
        assert_eq!(
            (d.name.as_str(), d.size_bytes, d.serial.as_str()),
            ("vda", 2 << 30, "disk-1")
        );
        assert_eq!((d.block_size, d.physical_block_size), (512, 4096));
        assert_eq!(d.tags, vec!["ssd"]);
        assert_eq!(inv.interfaces.len(), 1);
        let n = &inv.interfaces[0];
        assert_eq!(
            (n.name.as_str(), n.mac.as_str()),
            ("eth0", "52:54:00:aa:bb:cc")
        );
        assert!(n.boot && n.link);
        assert_eq!(n.speed_mbps, None);
        assert_eq!(inv.pci.len(), 1);
        assert_eq!(
            (inv.pci[0].vendor.as_str(), inv.pci[0].class.as_str()),
            ("1af4", "020000")
        );
        assert_eq!(inv.usb.len(), 1);
        assert_eq!(inv.usb[0].vendor, "0627");
        assert!(inv.bmc.present && inv.bmc.ipmi_device);
        let hi = inv
            .bmc
            .redfish_host_interface
            .as_ref()
            .expect("type 42 read");
        assert_eq!(hi.service_address, "169.254.0.1");
        assert_eq!(inv.bmc.lan, None, "in-band IPMI is not part of collect()");

        write(r, "sys/firmware/efi/systab", "");
        assert_eq!(collect(r, None).firmware, Firmware::Uefi);
    }

    /// The appliance reads `disks` and `interfaces` as its model types: the shapes must agree.
    #[test]
    fn json_matches_the_model() {
        let inv = Inventory {
            schema: SCHEMA,
            architecture: architecture(),
            cpu_count: 2,
            memory_mib: 512,
            disks: vec![DiskInfo {
                name: "sda".into(),
                size_bytes: 1 << 30,
                block_size: 4096,
                physical_block_size: 4096,
                rotational: true,
                tags: vec!["rotary".into()],
                ..Default::default()
            }],
            interfaces: vec![NicInfo {
                name: "eno1".into(),
                mac: "52:54:00:00:00:01".into(),
                boot: true,
                ..Default::default()
            }],
            ..Default::default()
        };
        let json = serde_json::to_value(&inv).expect("serialize");
        assert_eq!(json["firmware"], "bios");
        let disks: Vec<model::Disk> =
            serde_json::from_value(json["disks"].clone()).expect("model::Disk");
        assert_eq!(disks, inv.model_disks());
        let nics: Vec<model::Interface> =
            serde_json::from_value(json["interfaces"].clone()).expect("model::Interface");
        assert!(nics[0].boot);
        assert_eq!(nics[0].mac, "52:54:00:00:00:01");
        let back: Inventory = serde_json::from_value(json).expect("round trip");
        assert_eq!(back, inv);
        assert!(
            !serde_json::to_string(&inv)
                .expect("json")
                .contains("credentials"),
            "no credentials, no key"
        );
        // An inventory of an older agent (no in-band BMC fields) still reads.
        let old = serde_json::json!({"present": true, "ipmi_device": true, "smbios_ipmi": null});
        let bmc: Bmc = serde_json::from_value(old).expect("old bmc");
        assert_eq!(bmc.lan, None);
    }

    #[test]
    fn credentials_debug_hides_the_password() {
        let c = BmcCredentials {
            username: "maas".into(),
            password: "hunter2-secret".into(),
        };
        let text = format!(
            "{c:?} {:?}",
            Bmc {
                credentials: Some(c.clone()),
                ..Default::default()
            }
        );
        assert!(text.contains("maas") && !text.contains("hunter2"), "{text}");
    }
}
