//! SMBIOS (DMI) records the BMC publishes: type 38 (IPMI device information) and type 42
//! (management controller host interface, for Redfish).
//!
//! Pure functions over a record's raw bytes (`/sys/firmware/dmi/entries/<type>-<n>/raw`);
//! reading them is [`super::inventory`]'s. A short or malformed record gives None, never a
//! panic.

use std::net::{Ipv4Addr, Ipv6Addr};

use crate::model::inventory::{HostInterfaceDevice, RedfishHostInterface, SmbiosIpmi};

/// Parses an SMBIOS type 38 (IPMI Device Information) raw record.
///
/// Layout (SMBIOS 3.x, 7.39): 0 type, 1 length, 2-3 handle, 4 interface type, 5 spec revision
/// (BCD nibbles), 6 I2C target address, 7 NV storage address, 8-15 base address (bit 0 set:
/// I/O space).
pub fn parse_type38(raw: &[u8]) -> Option<SmbiosIpmi> {
    if raw.len() < 16 || raw[0] != 38 || usize::from(raw[1]) < 16 {
        return None;
    }
    let interface_type = match raw[4] {
        1 => "KCS",
        2 => "SMIC",
        3 => "BT",
        4 => "SSIF",
        _ => "unknown",
    }
    .to_string();
    let mut base = [0u8; 8];
    base.copy_from_slice(&raw[8..16]);
    let base = u64::from_le_bytes(base);
    Some(SmbiosIpmi {
        interface_type,
        spec_version: format!("{}.{}", raw[5] >> 4, raw[5] & 0x0f),
        i2c_address: raw[6],
        base_address: base & !1,
        io_space: base & 1 == 1,
    })
}

/// Parses an SMBIOS type 42 (Management Controller Host Interface) raw record and returns its
/// first "Redfish over IP" protocol record.
///
/// Layout (SMBIOS 3.x, 7.43; DSP0270): 0 type, 1 length, 2-3 handle, 4 interface type (0x40:
/// network host interface), 5 length n of the interface-specific data, 6.. that data (device
/// type, then its descriptor: see [`parse_host_interface_device`]), then at 6+n the number of
/// protocol records, each: protocol type (4: Redfish over IP), length, data.
/// Redfish over IP data: 0 service UUID (16), 16 host IP assignment type, 17 host address format,
/// 18 host address (16), 34 host mask (16), 50 service IP discovery type, 51 service address
/// format (1: IPv4, 2: IPv6), 52 service address (16), 68 service mask (16), 84 service port
/// (LE u16), 86 VLAN id (LE u32), 90 hostname length, 91 hostname.
pub fn parse_type42(raw: &[u8]) -> Option<RedfishHostInterface> {
    let len = usize::from(*raw.get(1)?);
    if *raw.first()? != 42 || len < 7 || raw.len() < len {
        return None;
    }
    let formatted = &raw[..len];
    let specific = usize::from(formatted[5]);
    let device = formatted
        .get(6..6 + specific)
        .and_then(parse_host_interface_device);
    let mut at = 6 + specific;
    let records = *formatted.get(at)?;
    at += 1;
    for _ in 0..records {
        let kind = *formatted.get(at)?;
        let size = usize::from(*formatted.get(at + 1)?);
        let data = formatted.get(at + 2..at + 2 + size)?;
        at += 2 + size;
        if kind != 4 || data.len() < 91 {
            continue;
        }
        let name_len = usize::from(data[90]);
        let service_hostname = data
            .get(91..91 + name_len)
            .map(|n| {
                let end = n.iter().position(|b| *b == 0).unwrap_or(n.len());
                String::from_utf8_lossy(&n[..end]).into_owned()
            })
            .unwrap_or_default();
        return Some(RedfishHostInterface {
            service_address: smbios_address(data[51], &data[52..68]),
            service_port: u16::from_le_bytes([data[84], data[85]]),
            service_hostname,
            ip_discovery: assignment_name(data[50]),
            vlan: u32::from_le_bytes([data[86], data[87], data[88], data[89]]),
            service_mask: smbios_address(data[51], &data[68..84]),
            host_ip_assignment: assignment_name(data[16]),
            host_address: smbios_address(data[17], &data[18..34]),
            host_mask: smbios_address(data[17], &data[34..50]),
            device: device.clone(),
        });
    }
    None
}

/// DSP0270's address assignment / discovery types.
fn assignment_name(code: u8) -> String {
    match code {
        1 => "static",
        2 => "dhcp",
        3 => "auto",
        4 => "host",
        _ => "unknown",
    }
    .to_string()
}

/// A 16-byte SMBIOS address field in `format` (1: IPv4 in the first 4 bytes, 2: IPv6); empty
/// for an unknown format.
fn smbios_address(format: u8, field: &[u8]) -> String {
    match (format, field.len()) {
        (1, 4..) => Ipv4Addr::new(field[0], field[1], field[2], field[3]).to_string(),
        (2, 16..) => {
            let mut b = [0u8; 16];
            b.copy_from_slice(&field[..16]);
            Ipv6Addr::from(b).to_string()
        }
        _ => String::new(),
    }
}

/// The device type and descriptor that start a network host interface's interface-specific
/// data (DSP0270 table 3): 02h USB (idVendor, idProduct, serial descriptor), 03h PCI (vendor,
/// device, subsystem vendor, subsystem), 04h USB v2 (length, idVendor, idProduct, serial
/// string number, MAC, ...), 05h PCI v2 (length, vendor, device, subsystem vendor, subsystem,
/// MAC, ...). Ids are little-endian. OEM types (80h-FFh) and short descriptors give None.
pub fn parse_host_interface_device(data: &[u8]) -> Option<HostInterfaceDevice> {
    let (&kind, rest) = data.split_first()?;
    let word = |b: &[u8], at: usize| -> Option<String> {
        let w = b.get(at..at + 2)?;
        Some(format!("{:04x}", u16::from_le_bytes([w[0], w[1]])))
    };
    let mac = |b: &[u8], at: usize| -> Option<String> {
        let m = b.get(at..at + 6)?;
        (m.iter().any(|x| *x != 0)).then(|| {
            m.iter()
                .map(|x| format!("{x:02x}"))
                .collect::<Vec<_>>()
                .join(":")
        })
    };
    let (bus, vendor, product, mac) = match kind {
        0x02 => ("usb", word(rest, 0)?, word(rest, 2)?, None),
        0x03 => ("pci", word(rest, 0)?, word(rest, 2)?, None),
        0x04 => ("usb", word(rest, 1)?, word(rest, 3)?, mac(rest, 6)),
        0x05 => ("pci", word(rest, 1)?, word(rest, 3)?, mac(rest, 9)),
        _ => return None,
    };
    Some(HostInterfaceDevice {
        bus: bus.to_string(),
        vendor,
        product,
        mac,
    })
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    #[test]
    fn smbios_type38_kcs() {
        // Type 38, length 18, handle 0x0026, KCS, IPMI 2.0, I2C 0x20, NV 0xff, base 0xca2|1.
        let raw = [
            38, 18, 0x26, 0, 1, 0x20, 0x20, 0xff, 0xa3, 0x0c, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
        ];
        let ipmi = parse_type38(&raw).expect("a valid record");
        assert_eq!(ipmi.interface_type, "KCS");
        assert_eq!(ipmi.spec_version, "2.0");
        assert_eq!(ipmi.i2c_address, 0x20);
        assert_eq!(ipmi.base_address, 0xca2);
        assert!(ipmi.io_space);
        assert_eq!(parse_type38(&raw[..10]), None);
        let mut other = raw;
        other[0] = 17;
        assert_eq!(parse_type38(&other), None);
    }

    /// A type 42 record as a BMC with a USB host interface would publish it: a Redfish service
    /// at 169.254.0.1:443 (static), VLAN 0, hostname "bmc.local".
    pub(crate) fn type42_fixture() -> Vec<u8> {
        let mut redfish = vec![0u8; 91];
        redfish[..16].copy_from_slice(&[0x11; 16]); // service UUID
        redfish[16] = 1; // host IP: static
        redfish[17] = 1; // IPv4
        redfish[18..22].copy_from_slice(&[169, 254, 0, 2]);
        redfish[34..38].copy_from_slice(&[255, 255, 0, 0]);
        redfish[50] = 1; // service IP: static
        redfish[51] = 1; // IPv4
        redfish[52..56].copy_from_slice(&[169, 254, 0, 1]);
        redfish[68..72].copy_from_slice(&[255, 255, 0, 0]);
        redfish[84..86].copy_from_slice(&443u16.to_le_bytes());
        redfish[90] = 9;
        redfish.extend_from_slice(b"bmc.local");
        // Interface-specific data: USB network interface v2 (0x04) and its descriptor: length
        // (with the type byte), idVendor 046b, idProduct ffb0, serial string 0, MAC, two more
        // words (characteristics, credential bootstrapping handle).
        let specific = [
            0x04, 0x10, 0x6b, 0x04, 0xb0, 0xff, 0x00, 0x02, 0x11, 0x22, 0x33, 0x44, 0x55, 0x00,
            0x00, 0xff, 0xff,
        ];
        let mut raw = vec![42, 0, 0x2a, 0x00, 0x40, specific.len() as u8];
        raw.extend_from_slice(&specific);
        raw.push(2); // two protocol records: an OEM one first, then Redfish over IP
        raw.extend_from_slice(&[0xf0, 3, 1, 2, 3]);
        raw.push(4);
        raw.push(redfish.len() as u8);
        raw.extend_from_slice(&redfish);
        raw[1] = raw.len() as u8;
        raw.extend_from_slice(&[0, 0]); // no strings
        raw
    }

    #[test]
    fn host_interface_devices_of_every_type() {
        let dev =
            |d: &[u8]| parse_host_interface_device(d).map(|x| (x.bus, x.vendor, x.product, x.mac));
        let some = |bus: &str, v: &str, p: &str, mac: Option<&str>| {
            Some((bus.into(), v.into(), p.into(), mac.map(str::to_owned)))
        };
        // 02h USB: idVendor, idProduct, then the serial descriptor.
        assert_eq!(
            dev(&[0x02, 0x25, 0x05, 0xa2, 0xa4, 0x04, 0x03, b'1', 0]),
            some("usb", "0525", "a4a2", None)
        );
        // 03h PCI: vendor, device, subsystem vendor, subsystem.
        assert_eq!(
            dev(&[0x03, 0x86, 0x80, 0x3c, 0x15, 0, 0, 0, 0]),
            some("pci", "8086", "153c", None)
        );
        // 05h PCI v2: length, ids, subsystem ids, MAC.
        let mut pci2 = vec![0x05, 0x1a, 0x86, 0x80, 0x3c, 0x15, 0, 0, 0, 0];
        pci2.extend_from_slice(&[0x02, 0, 0, 0, 0, 0x09]);
        assert_eq!(
            dev(&pci2),
            some("pci", "8086", "153c", Some("02:00:00:00:00:09"))
        );
        // A v2 record with an all-zero MAC has none; OEM types and short data are unknown.
        assert_eq!(
            dev(&[0x04, 0x0d, 0x25, 0x05, 0xa2, 0xa4, 0, 0, 0, 0, 0, 0, 0]),
            some("usb", "0525", "a4a2", None)
        );
        assert_eq!(dev(&[0x80, 1, 2, 3, 4]), None);
        assert_eq!(dev(&[0x02, 0x25]), None);
        assert_eq!(dev(&[]), None);
    }

    #[test]
    fn smbios_type42_redfish_over_ip() {
        let raw = type42_fixture();
        let hi = parse_type42(&raw).expect("a Redfish host interface");
        assert_eq!(hi.service_address, "169.254.0.1");
        assert_eq!(hi.service_port, 443);
        assert_eq!(hi.service_hostname, "bmc.local");
        assert_eq!(hi.ip_discovery, "static");
        assert_eq!(hi.vlan, 0);

        // IPv6 service address, DHCP.
        let mut v6 = raw.clone();
        assert_eq!(
            (hi.host_ip_assignment.as_str(), hi.host_address.as_str()),
            ("static", "169.254.0.2")
        );
        assert_eq!(
            (hi.host_mask.as_str(), hi.service_mask.as_str()),
            ("255.255.0.0", "255.255.0.0")
        );
        let dev = hi.device.expect("a USB v2 device");
        assert_eq!(
            (dev.bus.as_str(), dev.vendor.as_str(), dev.product.as_str()),
            ("usb", "046b", "ffb0")
        );
        assert_eq!(dev.mac.as_deref(), Some("02:11:22:33:44:55"));

        let data = 6 + 17 + 1 + 5 + 2; // start of the Redfish record's data
        v6[data + 50] = 2;
        v6[data + 51] = 2;
        v6[data + 52..data + 68]
            .copy_from_slice(&"fe80::1".parse::<Ipv6Addr>().expect("v6").octets());
        let hi = parse_type42(&v6).expect("v6");
        assert_eq!(
            (hi.service_address.as_str(), hi.ip_discovery.as_str()),
            ("fe80::1", "dhcp")
        );

        // Truncated, other types, no Redfish record: nothing, and no panic at any length.
        for cut in 0..raw.len() - 2 {
            let mut short = raw[..cut].to_vec();
            if short.len() > 1 {
                short[1] = short.len() as u8;
            }
            assert_eq!(parse_type42(&short), None, "cut at {cut}");
        }
        let mut other = raw.clone();
        other[0] = 38;
        assert_eq!(parse_type42(&other), None);
        let mut oem_only = raw;
        oem_only[6 + 17] = 1;
        assert_eq!(parse_type42(&oem_only), None);
    }
}
