//! The DHCP server against real clients (busybox udhcpc, ISC dhclient), a real relay (dhcrelay)
//! and a real site DHCP server (dnsmasq), each in network namespaces these tests create and
//! delete. Needs root and the tools of scripts/deps.d/dhcp.sh; a missing tool fails the test.

mod netns;

use std::collections::HashMap;
use std::net::{Ipv4Addr, SocketAddrV4, UdpSocket};
use std::sync::Mutex;
use std::time::Duration;

use dhcproto::v4::{DhcpOption, Message, MessageType, Opcode, OptionCode};
use dhcproto::{Decodable, Decoder, Encodable, Encoder};
use netns::{Lab, Rackbox, bound_ips, events, ok, require_tools};
use nix::sys::signal::Signal;

/// One lab at a time: they are heavy for a 2-core machine and their timings are kinder alone.
static SERIAL: Mutex<()> = Mutex::new(());

const TOOLS: &[(&str, &str)] = &[
    ("ip", "iproute2"),
    ("udhcpc", "udhcpc"),
    ("dhclient", "isc-dhcp-client"),
    ("dhcrelay", "isc-dhcp-relay"),
    ("dnsmasq", "dnsmasq-base"),
    ("curl", "curl"),
];

fn managed_toml(iface: &str, subnets: &[(&str, &str, &str, u32)]) -> String {
    let mut t = format!("[[boot.interfaces]]\nname = \"{iface}\"\nmode = \"managed\"\n");
    for (cidr, start, end, lease) in subnets {
        t += &format!(
            "[[boot.interfaces.subnets]]\ncidr = \"{cidr}\"\ndns_servers = [\"192.0.2.53\"]\ndomain = \"maas\"\ndynamic_ranges = [{{ start = \"{start}\", end = \"{end}\" }}]\nlease_time_secs = {lease}\n"
        );
    }
    t
}

/// A lab with a switch, a server namespace at 192.0.2.1/24 and `clients` client namespaces.
fn lan(lab: &mut Lab, clients: usize) -> (String, String, Vec<String>) {
    let sw = lab.switch("sw");
    let srv = lab.netns("srv");
    lab.plug(&sw, &srv, "eth0", Some("02:00:00:00:00:01"));
    lab.addr(&srv, "eth0", "192.0.2.1/24");
    let mut cs = Vec::new();
    for i in 0..clients {
        let c = lab.netns(&format!("c{i}"));
        lab.plug(
            &sw,
            &c,
            "eth0",
            Some(&format!("52:54:00:00:01:{:02x}", i + 1)),
        );
        cs.push(c);
    }
    (sw, srv, cs)
}

/// udhcpc in `ns` on eth0, in the foreground, logging events to `out`.
fn udhcpc(lab: &Lab, ns: &str, out: &str, script: &str, extra: &[&str]) -> std::process::Command {
    let mut c = lab.cmd(ns, "udhcpc");
    c.args(["-f", "-i", "eth0", "-s", script])
        .args(extra)
        .env("UDHCPC_OUT", lab.path(out));
    c
}

fn in_range(ip: &str, lo: u8, hi: u8) -> bool {
    ip.parse::<Ipv4Addr>()
        .is_ok_and(|a| a.octets()[..3] == [192, 0, 2] && (lo..=hi).contains(&a.octets()[3]))
}

#[test]
fn udhcpc_and_dhclient_get_renew_release_and_keep_their_address() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    require_tools(TOOLS);
    let mut lab = Lab::new();
    let (_sw, srv, cs) = lan(&mut lab, 2);
    let rb = Rackbox::start(
        &mut lab,
        &srv,
        "rb",
        &managed_toml(
            "eth0",
            &[("192.0.2.0/24", "192.0.2.100", "192.0.2.119", 600)],
        ),
    );
    let script = netns::write_udhcpc_script(&lab);

    // udhcpc: bound, then renew (SIGUSR1), then release (SIGUSR2).
    let cmd = udhcpc(&lab, &cs[0], "u1.out", &script, &["-t", "5", "-T", "2"]);
    let u = lab.spawn_cmd(cmd, "u1.log");
    lab.wait_for(Duration::from_secs(30), "udhcpc to bind", || {
        !bound_ips(&lab.read("u1.out")).is_empty()
    });
    let first = bound_ips(&lab.read("u1.out"))[0].clone();
    assert!(
        in_range(&first, 100, 119),
        "address {first} outside the dynamic range"
    );
    let ev = events(&lab.read("u1.out"));
    let bound = &ev.iter().find(|(e, _)| e == "bound").expect("bound").1;
    assert_eq!(bound["serverid"], "192.0.2.1");
    assert_eq!(bound["dns"], "192.0.2.53");
    assert_eq!(bound["domain"], "maas");
    assert_eq!(bound["lease"], "600");
    assert_eq!(bound["mask"], "24");

    lab.signal(u, Signal::SIGUSR1);
    lab.wait_for(Duration::from_secs(20), "udhcpc to renew", || {
        events(&lab.read("u1.out"))
            .iter()
            .any(|(e, f)| e == "renew" && f.get("ip") == Some(&first))
    });
    let releases_before = rb.metric(&lab, "rackbox_dhcp_releases_total");
    lab.signal(u, Signal::SIGUSR2);
    lab.wait_for(
        Duration::from_secs(20),
        "the server to record the release",
        || rb.metric(&lab, "rackbox_dhcp_releases_total") > releases_before,
    );
    lab.signal(u, Signal::SIGTERM);
    assert!(
        lab.wait(u, Duration::from_secs(10)).is_some(),
        "udhcpc did not stop"
    );

    // The same MAC gets the same address back.
    let out = netns::run(&mut udhcpc(
        &lab,
        &cs[0],
        "u2.out",
        &script,
        &["-q", "-n", "-t", "5", "-T", "2"],
    ));
    assert!(
        out.status.success(),
        "udhcpc again: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(bound_ips(&lab.read("u2.out")), vec![first.clone()]);

    // dhclient: lease, release, and the same address again.
    let dscript = netns::write_dhclient_script(&lab);
    std::fs::write(
        lab.path("dhclient.conf"),
        "timeout 30; retry 5; initial-interval 1;\n",
    )
    .unwrap();
    let dhclient = |lab: &Lab, extra: &[&str]| {
        let mut c = lab.cmd(&cs[1], "dhclient");
        c.args(extra)
            .args(["-v", "-cf"])
            .arg(lab.path("dhclient.conf"))
            .arg("-lf")
            .arg(lab.path("dhclient.leases"))
            .arg("-pf")
            .arg(lab.path("dhclient.pid"))
            .arg("-sf")
            .arg(&dscript)
            .arg("eth0");
        c
    };
    ok(&mut dhclient(&lab, &["-1"]));
    let dh_ip = |lab: &Lab| {
        events(&lab.read("dhclient.out"))
            .into_iter()
            .filter(|(e, _)| e == "BOUND")
            .filter_map(|(_, f)| f.get("ip").cloned())
            .collect::<Vec<_>>()
    };
    let d1 = dh_ip(&lab);
    assert_eq!(d1.len(), 1, "{}", lab.read("dhclient.out"));
    assert!(in_range(&d1[0], 100, 119));
    assert_ne!(d1[0], first, "two clients got the same address");
    ok(&mut dhclient(&lab, &["-r"]));
    assert!(lab.read("dhclient.out").contains("RELEASE"));
    std::fs::remove_file(lab.path("dhclient.leases")).ok();
    ok(&mut dhclient(&lab, &["-1"]));
    let d2 = dh_ip(&lab);
    assert_eq!(d2.len(), 2, "{}", lab.read("dhclient.out"));
    assert_eq!(d2[1], d1[0], "dhclient got a different address back");
    ok(&mut dhclient(&lab, &["-x"]));

    assert!(rb.metric(&lab, "rackbox_dhcp_acks_total") >= 4);
    assert!(rb.metric(&lab, "rackbox_dhcp_offers_total") >= 3);
    assert_eq!(rb.metric(&lab, "rackbox_dhcp_malformed_total"), 0);
}
