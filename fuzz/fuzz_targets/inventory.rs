//! The agent's hardware inventory parsers, fed what the machine's firmware and kernel say:
//! SMBIOS type 38 and 42 records (`agent::smbios`), the BMC's answers to IPMI requests
//! (`agent::bmc::parse_*`), /proc/cpuinfo and /proc/meminfo, /proc/net/route and the kernel
//! command line (`agent::cmdline`). Never panics.
//!
//! Input: a selector byte, then the bytes for that parser.
#![no_main]

#[path = "common.rs"]
mod common;

use libfuzzer_sys::fuzz_target;
use rackbox::agent::{bmc, cmdline, inventory, smbios};

fuzz_target!(|data: &[u8]| {
    let mut input = common::Cursor(data);
    let which = input.u8();
    let raw = input.rest();
    let text = String::from_utf8_lossy(raw);
    match which % 8 {
        0 => {
            let _ = smbios::parse_type38(raw);
        }
        1 => {
            if let Some(hi) = smbios::parse_type42(raw) {
                let _ = serde_json::to_string(&hi);
            }
        }
        2 => {
            let _ = smbios::parse_host_interface_device(raw);
        }
        3 => {
            let _ = bmc::parse_device_id(raw);
            let _ = bmc::parse_channel_medium(raw);
            let _ = bmc::parse_lan_ipv4(raw);
            let _ = bmc::parse_lan_mac(raw);
            let _ = bmc::parse_lan_ip_source(raw);
            let _ = bmc::parse_lan_vlan(raw);
            let _ = bmc::parse_max_users(raw);
            let _ = bmc::parse_user_name(raw);
            let _ = bmc::password_from_bytes(raw, usize::from(which));
        }
        4 => {
            let _ = inventory::parse_cpuinfo(&text);
            let _ = inventory::parse_meminfo_mib(&text);
        }
        5 => {
            let _ = inventory::default_route_interface(&text);
            let _ = inventory::memory_blocks_mib(&text, usize::from(which));
            let _ = inventory::parse_u64(&text);
            let _ = inventory::parse_hex_id(&text);
        }
        _ => {
            let _ = cmdline::split_words(&text);
            let _ = cmdline::parse_pairs(&text);
            let _ = cmdline::parse(&text);
        }
    }
});
