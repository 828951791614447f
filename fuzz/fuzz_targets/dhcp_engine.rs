//! The DHCP engine (`dhcp::engine::Engine::handle`), fed a sequence of datagrams as one boot
//! interface would see them (local and relayed, to ports 67 and 4011, from any source, with
//! the clock moving and some lease writes failing): never panics, never answers with a reply
//! larger than one packet, and every lease it commits is in a dynamic range it was given.
//!
//! Input: a mode byte, then records of [port, source, clock step (u16), write fails, length
//! (u16), payload].
#![no_main]

#[path = "common.rs"]
mod common;

use std::net::Ipv4Addr;

use libfuzzer_sys::fuzz_target;
use rackbox::config::{BootMode, BootSubnet};
use rackbox::dhcp::engine::{Decision, Engine, EngineConfig, Incoming};
use rackbox::dhcp::message::MAX_LEN;
use rackbox::dhcp::pxe::BootFiles;
use rackbox::net::{Ipv4Range, Mac};

const SERVER: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 1);
const RELAY: Ipv4Addr = Ipv4Addr::new(198, 51, 100, 1);

fn subnet(cidr: &str, base: [u8; 3], first: u8, last: u8) -> BootSubnet {
    let [a, b, c] = base;
    BootSubnet {
        cidr: cidr.parse().expect("cidr"),
        gateway: Some(Ipv4Addr::new(a, b, c, 254)),
        dns_servers: vec![Ipv4Addr::new(a, b, c, 53)],
        ntp_servers: vec![],
        domain: Some("maas".into()),
        dynamic_ranges: vec![Ipv4Range {
            start: Ipv4Addr::new(a, b, c, first),
            end: Ipv4Addr::new(a, b, c, last),
        }],
        reserved_ranges: vec![Ipv4Range {
            start: Ipv4Addr::new(a, b, c, first + 1),
            end: Ipv4Addr::new(a, b, c, first + 1),
        }],
        lease_time_secs: 600,
    }
}

fuzz_target!(|data: &[u8]| {
    let mut input = common::Cursor(data);
    let mode = match input.u8() % 3 {
        0 => BootMode::Managed,
        1 => BootMode::Proxy,
        _ => BootMode::Off,
    };
    // Small ranges, so that a few requests exhaust them.
    let subnets = vec![
        subnet("192.0.2.0/24", [192, 0, 2], 10, 14),
        subnet("198.51.100.0/24", [198, 51, 100], 100, 102),
    ];
    let cfg = EngineConfig {
        mode,
        subnets: subnets.clone(),
        files: BootFiles {
            bios_loader: "undionly.kpxe".into(),
            uefi_loader: "snponly.efi".into(),
            arm64_loader: Some("grubaa64.efi".into()),
            http_loader_base: "http://192.0.2.1:5240/boot".into(),
            public_url: "http://192.0.2.1:5240".into(),
        },
        server_addrs: vec![SERVER],
        quarantine_ms: 300_000,
        offer_hold_ms: 60_000,
    };
    let mut engine = Engine::new(cfg, vec![]);
    let known = |mac: Mac| mac.0[5] & 1 == 1;
    let mut now: u64 = 1_700_000_000_000;
    for _ in 0..16 {
        if input.0.is_empty() {
            break;
        }
        let dst_port = match input.u8() % 3 {
            0 => 67,
            1 => 4011,
            _ => 68,
        };
        let src_ip = match input.u8() % 4 {
            0 => Ipv4Addr::UNSPECIFIED,
            1 => RELAY,
            2 => Ipv4Addr::new(192, 0, 2, 12),
            _ => Ipv4Addr::new(203, 0, 113, 7),
        };
        now += u64::from(input.u16()) * 1000;
        let write_fails = input.u8() & 1 == 1;
        let len = usize::from(input.u16()).min(input.0.len());
        let (payload, rest) = input.0.split_at(len);
        input.0 = rest;
        let inc = Incoming {
            payload,
            src_ip,
            dst_ip: Ipv4Addr::BROADCAST,
            src_port: if src_ip == RELAY { 67 } else { 68 },
            dst_port,
        };
        let decision = engine.handle(&inc, now, &known);
        let commit = match &decision {
            Decision::Reply { reply, commit } => {
                assert!(reply.payload.len() <= MAX_LEN, "reply larger than a packet");
                commit.clone()
            }
            Decision::Record(commit) => Some(commit.clone()),
            _ => None,
        };
        if let Some(commit) = commit {
            let ip = commit.lease.ip;
            assert!(
                subnets
                    .iter()
                    .any(|s| s.dynamic_ranges.iter().any(|r| r.contains(ip))),
                "lease {ip} outside every dynamic range"
            );
            if write_fails {
                engine.revert(&commit);
            }
        }
        engine.expire_offers(now);
        assert!(engine.active_leases(now) <= 8);
    }
});
