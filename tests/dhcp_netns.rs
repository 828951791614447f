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
    // The lease shows in the API (what `rackbox lease list` prints).
    let token = rb.login(&lab);
    let leases = ok(lab.cmd(&rb.ns, "curl").args([
        "-sf",
        "-H",
        &format!("Authorization: Bearer {token}"),
        "http://127.0.0.1:5240/api/v1/leases",
    ]));
    let leases: serde_json::Value = serde_json::from_str(&leases).expect("leases JSON");
    assert!(
        leases.as_array().is_some_and(|l| l
            .iter()
            .any(|x| x["ip"] == first.as_str() && x["state"] == "active")),
        "{first} active in /api/v1/leases: {leases}"
    );

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

#[test]
fn pool_exhausts_cleanly_and_recovers_when_leases_expire() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    require_tools(TOOLS);
    let mut lab = Lab::new();
    let (_sw, srv, cs) = lan(&mut lab, 3);
    // Two addresses, ten-second leases.
    let rb = Rackbox::start(
        &mut lab,
        &srv,
        "rb",
        &managed_toml(
            "eth0",
            &[("192.0.2.0/24", "192.0.2.100", "192.0.2.101", 10)],
        ),
    );
    let script = netns::write_udhcpc_script(&lab);
    for (i, c) in cs.iter().take(2).enumerate() {
        let out = format!("full{i}.out");
        let r = netns::run(&mut udhcpc(
            &lab,
            c,
            &out,
            &script,
            &["-q", "-n", "-t", "5", "-T", "1"],
        ));
        assert!(
            r.status.success(),
            "client {i}: {}",
            String::from_utf8_lossy(&r.stderr)
        );
    }
    // The third client gets no offer...
    let r = netns::run(&mut udhcpc(
        &lab,
        &cs[2],
        "late.out",
        &script,
        &["-q", "-n", "-t", "3", "-T", "1"],
    ));
    assert!(
        !r.status.success(),
        "a third client got an address from a pool of two"
    );
    assert!(bound_ips(&lab.read("late.out")).is_empty());
    assert!(rb.metric(&lab, "rackbox_dhcp_pool_exhausted_total") >= 1);
    assert_eq!(rb.metric(&lab, "rackbox_dhcp_active_leases"), 2);

    // ...and a REQUEST for a taken address (dhclient rebooting with a stale lease) is NAKed.
    let dscript = netns::write_dhclient_script(&lab);
    std::fs::write(
        lab.path("dhclient.conf"),
        "timeout 4; retry 1; initial-interval 1;\n",
    )
    .unwrap();
    std::fs::write(
        lab.path("dhclient.leases"),
        "lease {\n  interface \"eth0\";\n  fixed-address 192.0.2.100;\n  option subnet-mask 255.255.255.0;\n  option dhcp-server-identifier 192.0.2.1;\n  renew 4 2037/01/01 00:00:00;\n  rebind 4 2037/01/01 00:00:00;\n  expire 4 2037/01/01 00:00:00;\n}\n",
    )
    .unwrap();
    let _ = netns::run(
        lab.cmd(&cs[2], "dhclient")
            .args(["-1", "-d", "-v", "-cf"])
            .arg(lab.path("dhclient.conf"))
            .arg("-lf")
            .arg(lab.path("dhclient.leases"))
            .arg("-pf")
            .arg(lab.path("dhclient.pid"))
            .arg("-sf")
            .arg(&dscript)
            .arg("eth0"),
    );
    assert!(
        rb.metric(&lab, "rackbox_dhcp_naks_total") >= 1,
        "{}",
        lab.read(&rb.log)
    );

    // Once the first two leases run out, the pool serves again (bounded wait, no timing asserted).
    let mut got = None;
    for attempt in 0..30 {
        let out = format!("retry{attempt}.out");
        let _ = netns::run(&mut udhcpc(
            &lab,
            &cs[2],
            &out,
            &script,
            &["-q", "-n", "-t", "2", "-T", "1"],
        ));
        if let Some(ip) = bound_ips(&lab.read(&out)).into_iter().next() {
            got = Some(ip);
            break;
        }
    }
    let ip = got.expect("the pool never recovered after the leases expired");
    assert!(in_range(&ip, 100, 101), "{ip}");
}

#[test]
fn relayed_requests_are_served_through_dhcrelay() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    require_tools(TOOLS);
    let mut lab = Lab::new();
    // Segment A: the server and the relay's upstream side. Segment B: the relay and a client.
    let sw_a = lab.switch("swa");
    let sw_b = lab.switch("swb");
    let srv = lab.netns("srv");
    let relay = lab.netns("relay");
    let client = lab.netns("cli");
    lab.plug(&sw_a, &srv, "eth0", Some("02:00:00:00:00:01"));
    lab.plug(&sw_a, &relay, "eth0", Some("02:00:00:00:00:02"));
    lab.plug(&sw_b, &relay, "eth1", Some("02:00:00:00:00:03"));
    lab.plug(&sw_b, &client, "eth0", Some("52:54:00:00:03:01"));
    lab.addr(&srv, "eth0", "192.0.2.1/25");
    lab.addr(&relay, "eth0", "192.0.2.2/25");
    lab.addr(&relay, "eth1", "192.0.2.129/25");
    ok(netns::ip().args([
        "-n",
        &srv,
        "route",
        "add",
        "192.0.2.128/25",
        "via",
        "192.0.2.2",
    ]));
    let rb = Rackbox::start(
        &mut lab,
        &srv,
        "rb",
        &managed_toml(
            "eth0",
            &[
                ("192.0.2.0/25", "192.0.2.10", "192.0.2.20", 600),
                ("192.0.2.128/25", "192.0.2.150", "192.0.2.160", 600),
            ],
        ),
    );
    let pid = lab.path("dhcrelay.pid").to_string_lossy().into_owned();
    lab.spawn(
        &relay,
        "dhcrelay",
        &[
            "-d",
            "-4",
            "-pf",
            &pid,
            "-id",
            "eth1",
            "-iu",
            "eth0",
            "192.0.2.1",
        ],
        "dhcrelay.log",
    );
    let script = netns::write_udhcpc_script(&lab);
    let mut bound = Vec::new();
    // dhcrelay needs a moment to open its sockets; udhcpc retries inside a bounded budget.
    for attempt in 0..5 {
        let out = format!("relayed{attempt}.out");
        let _ = netns::run(&mut udhcpc(
            &lab,
            &client,
            &out,
            &script,
            &["-q", "-n", "-t", "4", "-T", "1"],
        ));
        bound = events(&lab.read(&out))
            .into_iter()
            .filter(|(e, _)| e == "bound")
            .collect();
        if !bound.is_empty() {
            break;
        }
    }
    let (_, f) = bound.first().unwrap_or_else(|| {
        panic!(
            "the relayed client got no lease\nrelay:\n{}\nrackbox:\n{}",
            lab.read("dhcrelay.log"),
            lab.read(&rb.log)
        )
    });
    assert!(
        in_range(&f["ip"], 150, 160),
        "relayed client got {} (not the relay's subnet)",
        f["ip"]
    );
    assert_eq!(f["mask"], "25");
    assert_eq!(f["serverid"], "192.0.2.1");
    assert!(rb.metric(&lab, "rackbox_dhcp_acks_total") >= 1);
}

/// Listens in `ns` for DHCP replies (UDP to port 68) until `stop` is set or 60 s pass.
fn capture_replies(
    ns: String,
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
) -> std::thread::JoinHandle<Vec<Vec<u8>>> {
    std::thread::spawn(move || {
        let file = std::fs::File::open(format!("/run/netns/{ns}")).expect("netns");
        nix::sched::setns(&file, nix::sched::CloneFlags::CLONE_NEWNET).expect("setns");
        let socket = packet_socket("eth0");
        socket
            .set_read_timeout(Some(Duration::from_millis(200)))
            .expect("timeout");
        let mut out = Vec::new();
        let deadline = std::time::Instant::now() + Duration::from_secs(60);
        let mut buf = [std::mem::MaybeUninit::<u8>::uninit(); 2048];
        while !stop.load(std::sync::atomic::Ordering::Relaxed)
            && std::time::Instant::now() < deadline
        {
            if let Ok(n) = socket.recv(&mut buf) {
                // SAFETY: recv initialised the first n bytes.
                let bytes: Vec<u8> = buf[..n]
                    .iter()
                    .map(|b| unsafe { b.assume_init() })
                    .collect();
                if let Ok(d) = rackbox::net::frame::parse(&bytes)
                    && d.dst_port == 68
                    && d.src_port == 67
                {
                    out.push(d.payload.to_vec());
                }
            }
        }
        out
    })
}

/// An AF_PACKET socket on `ifname` of the current thread's namespace, all protocols.
fn packet_socket(ifname: &str) -> socket2::Socket {
    let index = nix::net::if_::if_nametoindex(ifname).expect("interface");
    let socket = socket2::Socket::new(
        socket2::Domain::PACKET,
        socket2::Type::RAW,
        Some(socket2::Protocol::from(i32::from(
            (libc::ETH_P_ALL as u16).to_be(),
        ))),
    )
    .expect("packet socket");
    let mut storage = socket2::SockAddrStorage::zeroed();
    // SAFETY: sockaddr_ll fits in the zeroed storage; we fill it field by field.
    let ll = unsafe { storage.view_as::<libc::sockaddr_ll>() };
    ll.sll_family = libc::AF_PACKET as u16;
    ll.sll_protocol = (libc::ETH_P_ALL as u16).to_be();
    ll.sll_ifindex = index as i32;
    let len = std::mem::size_of::<libc::sockaddr_ll>() as libc::socklen_t;
    // SAFETY: the storage holds an initialised sockaddr_ll of `len` bytes.
    let addr = unsafe { socket2::SockAddr::new(storage, len) };
    socket.bind(&addr).expect("bind packet socket");
    socket
}

#[test]
fn proxy_mode_beside_dnsmasq_gives_the_boot_file_but_no_address() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    require_tools(TOOLS);
    let mut lab = Lab::new();
    let (sw, srv, cs) = lan(&mut lab, 1);
    let site = lab.netns("site");
    lab.plug(&sw, &site, "eth0", Some("02:00:00:00:00:02"));
    lab.addr(&site, "eth0", "192.0.2.2/24");
    lab.dnsmasq(&site, "192.0.2.50", "192.0.2.60");
    let rb = Rackbox::start(
        &mut lab,
        &srv,
        "rb",
        "[[boot.interfaces]]\nname = \"eth0\"\nmode = \"proxy\"\n",
    );
    // The client is a machine rackbox knows, so its boot timeline can be read.
    let token = rb.login(&lab);
    let added = ok(lab.cmd(&rb.ns, "curl").args([
        "-sf",
        "-H",
        &format!("Authorization: Bearer {token}"),
        "-H",
        "content-type: application/json",
        "-d",
        r#"{"hostname": "pxe-1", "mac_addresses": ["52:54:00:00:01:01"], "commission": false}"#,
        "http://127.0.0.1:5240/api/v1/machines",
    ]));
    let added: serde_json::Value = serde_json::from_str(&added).expect("machine JSON");
    let id = added["system_id"]
        .as_str()
        .expect("a system_id")
        .to_string();
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let capture = capture_replies(cs[0].clone(), stop.clone());
    std::thread::sleep(Duration::from_millis(300));
    let script = netns::write_udhcpc_script(&lab);
    // udhcpc is not PXE-aware: it takes the first offer, and when that is rackbox's address-less
    // proxy offer its REQUEST goes unanswered and it gives up. A few bounded attempts let it
    // take dnsmasq's, as a PXE ROM (which waits for all offers) always would.
    let mut bound = None;
    for attempt in 0..8 {
        let out = format!("pxe{attempt}.out");
        let _ = netns::run(&mut udhcpc(
            &lab,
            &cs[0],
            &out,
            &script,
            &[
                "-q",
                "-n",
                "-t",
                "2",
                "-T",
                "1",
                "-V",
                "PXEClient:Arch:00000:UNDI:002001",
                "-x",
                "0x5d:0000",
            ],
        ));
        if let Some((_, f)) = events(&lab.read(&out))
            .into_iter()
            .find(|(e, _)| e == "bound")
        {
            bound = Some(f);
            break;
        }
    }
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let replies = capture.join().expect("capture");
    let f = bound.unwrap_or_else(|| panic!("no lease from dnsmasq\n{}", lab.read("dnsmasq.log")));
    assert!(
        in_range(&f["ip"], 50, 60),
        "the address {} is not dnsmasq's",
        f["ip"]
    );
    assert_eq!(f["serverid"], "192.0.2.2");

    // rackbox's proxy offer: no address, the boot file, PXEClient, discovery control 8.
    let offers: Vec<Message> = replies
        .iter()
        .filter_map(|p| Message::decode(&mut Decoder::new(p)).ok())
        .filter(|m| {
            m.opts().get(OptionCode::ServerIdentifier)
                == Some(&DhcpOption::ServerIdentifier(Ipv4Addr::new(192, 0, 2, 1)))
        })
        .collect();
    let offer = offers.first().unwrap_or_else(|| {
        panic!(
            "no proxy offer captured; rackbox log:\n{}",
            lab.read(&rb.log)
        )
    });
    assert_eq!(offer.opts().msg_type(), Some(MessageType::Offer));
    assert_eq!(offer.yiaddr(), Ipv4Addr::UNSPECIFIED);
    assert_eq!(offer.siaddr(), Ipv4Addr::new(192, 0, 2, 1));
    assert_eq!(
        offer.opts().get(OptionCode::BootfileName),
        Some(&DhcpOption::BootfileName(b"undionly.kpxe".to_vec()))
    );
    assert_eq!(
        offer.opts().get(OptionCode::ClassIdentifier),
        Some(&DhcpOption::ClassIdentifier(b"PXEClient".to_vec()))
    );
    assert_eq!(
        offer.opts().get(OptionCode::VendorExtensions),
        Some(&DhcpOption::VendorExtensions(vec![6, 1, 8, 255]))
    );
    assert!(offer.opts().get(OptionCode::AddressLeaseTime).is_none());
    assert!(
        offers.iter().all(|m| m.yiaddr().is_unspecified()),
        "rackbox handed out an address in proxy mode"
    );

    // The PXE boot-server step: the client, now holding dnsmasq's address, asks on port 4011.
    let client_ip: Ipv4Addr = f["ip"].parse().expect("ip");
    let ack = lab.in_netns(&cs[0], move || boot_server_request(client_ip));
    let ack = ack.expect("no answer on port 4011");
    assert_eq!(ack.opts().msg_type(), Some(MessageType::Ack));
    assert_eq!(ack.yiaddr(), Ipv4Addr::UNSPECIFIED);
    assert_eq!(
        ack.opts().get(OptionCode::BootfileName),
        Some(&DhcpOption::BootfileName(b"snponly.efi".to_vec()))
    );

    // Both exchanges are in the machine's boot timeline, with what the client said it is.
    let mut steps = Vec::new();
    lab.wait_for(
        Duration::from_secs(5),
        "the ACK in the boot timeline",
        || {
            let t = ok(lab.cmd(&rb.ns, "curl").args([
                "-sf",
                "-H",
                &format!("Authorization: Bearer {token}"),
                &format!("http://127.0.0.1:5240/api/v1/machines/{id}/boot-timeline"),
            ]));
            let t: serde_json::Value = serde_json::from_str(&t).expect("timeline JSON");
            steps = t["current"]["steps"]
                .as_array()
                .cloned()
                .unwrap_or_default();
            steps.iter().any(|s| s["step"]["reply"] == "ack")
        },
    );
    let offer = &steps.first().expect("a DHCP step")["step"];
    assert_eq!(offer["kind"], "dhcp", "{steps:?}");
    assert_eq!(offer["request"], "discover");
    assert_eq!(offer["reply"], "offer");
    assert_eq!(offer["arch"], 0);
    assert_eq!(offer["vendor_class"], "PXEClient:Arch:00000:UNDI:002001");
    assert_eq!(offer["boot_file"], "undionly.kpxe");
    assert!(
        offer["address"].is_null(),
        "proxy mode hands out no address"
    );
    let ack = steps
        .iter()
        .map(|s| &s["step"])
        .find(|s| s["reply"] == "ack")
        .unwrap_or_else(|| panic!("no boot-server ACK in {steps:?}"));
    assert_eq!(ack["request"], "request");
    assert_eq!(ack["arch"], 7);
    assert_eq!(ack["boot_file"], "snponly.efi");
}

/// Sends a UEFI PXE boot-server REQUEST to 192.0.2.1:4011 and waits (bounded) for the ACK.
fn boot_server_request(client_ip: Ipv4Addr) -> Option<Message> {
    let socket = UdpSocket::bind(SocketAddrV4::new(client_ip, 4011)).ok()?;
    socket.set_read_timeout(Some(Duration::from_secs(1))).ok()?;
    let mut msg = Message::default();
    msg.set_opcode(Opcode::BootRequest)
        .set_xid(0x4011)
        .set_ciaddr(client_ip)
        .set_chaddr(&[0x52, 0x54, 0, 0, 1, 1]);
    msg.opts_mut()
        .insert(DhcpOption::MessageType(MessageType::Request));
    msg.opts_mut().insert(DhcpOption::ClassIdentifier(
        b"PXEClient:Arch:00007:UNDI:003016".to_vec(),
    ));
    msg.opts_mut().insert(DhcpOption::ClientSystemArchitecture(
        dhcproto::v4::Architecture(7),
    ));
    let mut buf = Vec::new();
    msg.encode(&mut Encoder::new(&mut buf)).ok()?;
    for _ in 0..5 {
        socket.send_to(&buf, "192.0.2.1:4011").ok()?;
        let mut answer = [0u8; 1500];
        if let Ok((n, _)) = socket.recv_from(&mut answer)
            && let Ok(m) = Message::decode(&mut Decoder::new(&answer[..n]))
            && m.xid() == 0x4011
        {
            return Some(m);
        }
    }
    None
}

/// Frames that reach the server's filter (IPv4/UDP to port 67) but are broken in some way.
fn malformed_frames() -> Vec<Vec<u8>> {
    use rackbox::net::Mac;
    use rackbox::net::frame::{Outbound, build};
    let mut dhcp = Message::default();
    dhcp.set_opcode(Opcode::BootRequest)
        .set_xid(7)
        .set_chaddr(&[2, 0, 0, 0, 0, 0x66]);
    dhcp.opts_mut()
        .insert(DhcpOption::MessageType(MessageType::Discover));
    let mut good = Vec::new();
    dhcp.encode(&mut Encoder::new(&mut good)).unwrap();
    let frame = |payload: &[u8]| {
        build(&Outbound {
            src_mac: Mac([2, 0, 0, 0, 0, 0x66]),
            dst_mac: Mac::BROADCAST,
            src_ip: Ipv4Addr::UNSPECIFIED,
            dst_ip: Ipv4Addr::BROADCAST,
            src_port: 68,
            dst_port: 67,
            payload,
        })
        .unwrap()
    };
    let fix_ip_checksum = |f: &mut Vec<u8>| {
        f[24] = 0;
        f[25] = 0;
        let mut sum = 0u32;
        for pair in f[14..34].chunks(2) {
            sum += u32::from(u16::from_be_bytes([pair[0], pair[1]]));
        }
        while sum > 0xffff {
            sum = (sum & 0xffff) + (sum >> 16);
        }
        let c = !(sum as u16);
        f[24..26].copy_from_slice(&c.to_be_bytes());
    };
    let mut out = Vec::new();
    out.push(frame(&good[..120])); // truncated DHCP message
    let mut b = good.clone();
    b[2] = 200; // hlen past the chaddr field
    out.push(frame(&b));
    let mut b = good[..240].to_vec();
    b.extend_from_slice(&[53, 1, 1, 94, 1, 0, 255]); // option 94 must be 3 bytes
    out.push(frame(&b));
    let mut b = good[..240].to_vec();
    b.extend_from_slice(&[53, 1, 1, 12, 200, b'x', b'y']); // option runs past the end
    out.push(frame(&b));
    let mut b = good.clone();
    b[236..240].copy_from_slice(b"XXXX"); // no magic cookie
    out.push(frame(&b));
    let mut b = good[..240].to_vec();
    b.extend(std::iter::repeat_n(0xfe_u8, 1472 - 240)); // oversized run of bogus options
    out.push(frame(&b));
    let mut f = frame(&good);
    let total = u16::from_be_bytes([f[16], f[17]]) + 400; // IPv4 length past the frame
    f[16..18].copy_from_slice(&total.to_be_bytes());
    fix_ip_checksum(&mut f);
    out.push(f);
    let mut f = frame(&good);
    f[38..40].copy_from_slice(&0xffff_u16.to_be_bytes()); // UDP length past the packet
    out.push(f);
    let mut f = frame(&good);
    f[24] ^= 0x55; // IPv4 header checksum wrong
    out.push(f);
    out
}

#[test]
fn malformed_frames_are_dropped_and_counted_while_a_real_client_is_served() {
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
    let frames = malformed_frames();
    let per_round = frames.len() as u64;
    const ROUNDS: u64 = 20;
    let attacker = cs[1].clone();
    let flood = std::thread::spawn(move || {
        let file = std::fs::File::open(format!("/run/netns/{attacker}")).expect("netns");
        nix::sched::setns(&file, nix::sched::CloneFlags::CLONE_NEWNET).expect("setns");
        let socket = packet_socket("eth0");
        for _ in 0..ROUNDS {
            for f in &frames {
                socket.send(f).expect("send a malformed frame");
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    });
    // A real client during the flood...
    let script = netns::write_udhcpc_script(&lab);
    let r = netns::run(&mut udhcpc(
        &lab,
        &cs[0],
        "during.out",
        &script,
        &["-q", "-n", "-t", "5", "-T", "1"],
    ));
    assert!(
        r.status.success(),
        "no lease during the flood: {}",
        String::from_utf8_lossy(&r.stderr)
    );
    flood.join().expect("flood thread");
    // ...and after it.
    ok(netns::ip().args(["-n", &cs[0], "addr", "flush", "dev", "eth0"]));
    let r = netns::run(&mut udhcpc(
        &lab,
        &cs[0],
        "after.out",
        &script,
        &["-q", "-n", "-t", "5", "-T", "1"],
    ));
    assert!(r.status.success(), "no lease after the flood");
    assert_eq!(
        bound_ips(&lab.read("during.out")),
        bound_ips(&lab.read("after.out"))
    );
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    let mut malformed = 0;
    while std::time::Instant::now() < deadline {
        malformed = rb.metric(&lab, "rackbox_dhcp_malformed_total");
        if malformed >= per_round * ROUNDS {
            break;
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    assert!(
        malformed >= per_round * ROUNDS,
        "{malformed} of {} malformed frames counted\n{}",
        per_round * ROUNDS,
        lab.read(&rb.log)
            .lines()
            .filter(|l| l.contains("malformed"))
            .take(40)
            .collect::<Vec<_>>()
            .join("\n")
    );
    assert!(rb.metric(&lab, "rackbox_dhcp_acks_total") >= 2);
    // The daemon is still alive.
    assert!(
        lab.wait(rb.index, Duration::from_millis(10)).is_none(),
        "rackbox died:\n{}",
        lab.read(&rb.log)
    );
}

#[test]
fn sigkill_during_a_lease_storm_loses_no_acked_lease() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    require_tools(TOOLS);
    const CLIENTS: usize = 40;
    let mut lab = Lab::new();
    let (sw, srv, _) = lan(&mut lab, 0);
    let storm = lab.netns("storm");
    let mut macs = Vec::new();
    for i in 0..CLIENTS {
        let mac = format!("52:54:00:02:00:{:02x}", i + 1);
        lab.plug(&sw, &storm, &format!("e{i}"), Some(&mac));
        macs.push(mac);
    }
    let mut rb = Rackbox::start(
        &mut lab,
        &srv,
        "rb",
        &managed_toml(
            "eth0",
            &[("192.0.2.0/24", "192.0.2.10", "192.0.2.250", 600)],
        ),
    );
    let script = netns::write_udhcpc_script(&lab);
    let mut clients = Vec::new();
    for i in 0..CLIENTS {
        let mut c = lab.cmd(&storm, "udhcpc");
        let ifname = format!("e{i}");
        c.args([
            "-f", "-q", "-n", "-t", "20", "-T", "1", "-i", &ifname, "-s", &script,
        ])
        .env("UDHCPC_OUT", lab.path(&format!("storm{i}.out")));
        clients.push(lab.spawn_cmd(c, &format!("storm{i}.log")));
    }
    let bound_count = |lab: &Lab| {
        (0..CLIENTS)
            .filter(|i| !bound_ips(&lab.read(&format!("storm{i}.out"))).is_empty())
            .count()
    };
    lab.wait_for(
        Duration::from_secs(60),
        "the first ACKs of the storm",
        || bound_count(&lab) >= 5,
    );
    lab.signal(rb.index, Signal::SIGKILL);
    assert!(
        lab.wait(rb.index, Duration::from_secs(10)).is_some(),
        "rackbox survived SIGKILL"
    );
    let acked_before_kill = bound_count(&lab);
    rb.restart(&mut lab);
    for c in &clients {
        assert!(
            lab.wait(*c, Duration::from_secs(90)).is_some(),
            "a storm client never finished"
        );
    }
    // Every client ends up bound (those cut off by the kill retried against the new daemon).
    let mut seen: HashMap<String, String> = HashMap::new();
    for (i, mac) in macs.iter().enumerate() {
        let ips = bound_ips(&lab.read(&format!("storm{i}.out")));
        assert_eq!(
            ips.len(),
            1,
            "client {mac}: {ips:?}\n{}",
            lab.read(&format!("storm{i}.log"))
        );
        if let Some(other) = seen.insert(ips[0].clone(), mac.clone()) {
            panic!("{} was ACKed to both {other} and {mac}", ips[0]);
        }
    }
    assert_eq!(
        rb.metric(&lab, "rackbox_dhcp_active_leases"),
        CLIENTS as u64
    );
    lab.signal(rb.index, Signal::SIGTERM);
    assert!(
        lab.wait(rb.index, Duration::from_secs(30)).is_some(),
        "rackbox did not stop"
    );

    // The store has each ACKed address leased to the MAC that saw the ACK.
    let store = rackbox::store::Store::open(
        &rb.state_dir.join("rackbox.redb"),
        rackbox::store::StoreOptions::default(),
    )
    .expect("open the store");
    let rx = store.read().expect("read");
    for (ip, mac) in &seen {
        let lease = rx
            .lease(ip.parse().expect("ip"))
            .expect("read lease")
            .unwrap_or_else(|| panic!("the lease of {ip} ({mac}) is gone"));
        assert_eq!(lease.mac.as_deref(), Some(mac.as_str()), "{ip}");
        assert_eq!(
            lease.state,
            rackbox::model::lease::LeaseState::Active,
            "{ip}"
        );
    }
    eprintln!("storm: {acked_before_kill} of {CLIENTS} clients were ACKed before the SIGKILL");
}

/// `rackbox dhcp-probe` in `ns` (listening `secs`): its exit code and its JSON report.
fn probe(lab: &Lab, ns: &str, secs: &str) -> (Option<i32>, serde_json::Value) {
    let out = netns::run(lab.cmd(ns, env!("CARGO_BIN_EXE_rackbox")).args([
        "--json",
        "dhcp-probe",
        "eth0",
        "--wait-secs",
        secs,
    ]));
    let text = String::from_utf8_lossy(&out.stdout);
    let report = serde_json::from_str(&text).unwrap_or_else(|e| {
        panic!(
            "the probe's report is not JSON ({e}): {text}\n{}",
            String::from_utf8_lossy(&out.stderr)
        )
    });
    (out.status.code(), report)
}

#[test]
fn the_foreign_dhcp_probe_finds_a_site_server_and_not_rackbox_itself() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    require_tools(TOOLS);
    let mut lab = Lab::new();
    let (sw, srv, cs) = lan(&mut lab, 1);
    let site = lab.netns("site");
    lab.plug(&sw, &site, "eth0", Some("02:00:00:00:00:02"));
    lab.addr(&site, "eth0", "192.0.2.2/24");

    // Nobody serves yet: clear, exit 0.
    let (code, report) = probe(&lab, &srv, "1");
    assert_eq!(code, Some(0), "{report}");
    assert_eq!(report["clear"], true);
    assert_eq!(report["servers"], serde_json::json!([]));

    // A site DHCP server (dnsmasq): found, with what it offered; exit 3.
    let (site_server, leases) = lab.dnsmasq(&site, "192.0.2.50", "192.0.2.60");
    // dnsmasq pings an address for up to 3 s before it offers it: the default wait.
    let (code, report) = probe(&lab, &srv, "5");
    assert_eq!(code, Some(3), "{report}\n{}", lab.read("dnsmasq.log"));
    assert_eq!(report["clear"], false);
    let servers = report["servers"].as_array().expect("servers");
    assert_eq!(servers.len(), 1, "{report}");
    assert_eq!(servers[0]["server"], "192.0.2.2");
    assert_eq!(servers[0]["mac"], "02:00:00:00:00:02");
    let offered = servers[0]["offered"].as_str().unwrap_or_default();
    assert!(in_range(offered, 50, 60), "{report}");
    // It only asked: dnsmasq committed no lease to the probe.
    let committed = std::fs::read_to_string(&leases).unwrap_or_default();
    assert!(committed.trim().is_empty(), "{committed}");
    lab.signal(site_server, Signal::SIGTERM);
    lab.wait(site_server, Duration::from_secs(10));

    // rackbox as the managed server: a probe on its own box does not count it, one from
    // another box on the network does; and the API answers the same report.
    let rb = Rackbox::start(
        &mut lab,
        &srv,
        "rb",
        &managed_toml(
            "eth0",
            &[("192.0.2.0/24", "192.0.2.100", "192.0.2.110", 600)],
        ),
    );
    let (code, report) = probe(&lab, &srv, "2");
    assert_eq!(
        (code, &report["clear"]),
        (Some(0), &serde_json::json!(true)),
        "{report}"
    );
    let (code, report) = probe(&lab, &cs[0], "2");
    assert_eq!(code, Some(3), "{report}");
    assert_eq!(report["servers"][0]["server"], "192.0.2.1");
    let token = rb.login(&lab);
    let api = ok(lab.cmd(&srv, "curl").args([
        "-s",
        "-H",
        &format!("Authorization: Bearer {token}"),
        "-H",
        "content-type: application/json",
        "-d",
        r#"{"interface":"eth0","wait_secs":1}"#,
        "http://127.0.0.1:5240/api/v1/network/dhcp-probe",
    ]));
    let answer: serde_json::Value = serde_json::from_str(&api).expect("JSON");
    assert_eq!(answer["clear"], true, "{answer}");
    let missing = ok(lab.cmd(&srv, "curl").args([
        "-s",
        "-H",
        &format!("Authorization: Bearer {token}"),
        "-H",
        "content-type: application/json",
        "-d",
        r#"{"interface":"eth9"}"#,
        "http://127.0.0.1:5240/api/v1/network/dhcp-probe",
    ]));
    assert!(
        missing.contains("interface eth9 does not exist"),
        "{missing}"
    );
}

/// A MAAS API key of the admin, made through the native API inside the server's namespace.
fn maas_key(lab: &Lab, rb: &Rackbox) -> String {
    let token = rb.login(lab);
    let made = ok(lab.cmd(&rb.ns, "curl").args([
        "-sf",
        "-H",
        &format!("Authorization: Bearer {token}"),
        "-H",
        "content-type: application/json",
        "-d",
        r#"{"kind":"maas","name":"maas-client"}"#,
        "http://127.0.0.1:5240/api/v1/tokens",
    ]));
    serde_json::from_str::<serde_json::Value>(&made).expect("token JSON")["token"]
        .as_str()
        .expect("a MAAS key")
        .to_string()
}

/// A MAAS-face call made with curl inside the server's namespace, as gomaasclient makes it
/// (OAuth PLAINTEXT, urlencoded body, `?op=` on every POST); answers (status, JSON or text).
fn maas_call(
    lab: &Lab,
    ns: &str,
    key: &str,
    method: &str,
    path: &str,
    form: &[(&str, &str)],
) -> (u16, serde_json::Value) {
    let mut parts = key.split(':');
    let (ck, tk, ts) = (
        parts.next().unwrap_or_default(),
        parts.next().unwrap_or_default(),
        parts.next().unwrap_or_default(),
    );
    let auth = format!(
        "Authorization: OAuth oauth_consumer_key=\"{ck}\", oauth_token=\"{tk}\", oauth_signature_method=\"PLAINTEXT\", oauth_signature=\"%26{ts}\", oauth_nonce=\"n\", oauth_timestamp=\"1\", oauth_version=\"1.0\""
    );
    let mut cmd = lab.cmd(ns, "curl");
    cmd.args([
        "-s",
        "-o",
        "-",
        "-w",
        "\n%{http_code}",
        "-X",
        method,
        "-H",
        &auth,
    ]);
    for (k, v) in form {
        cmd.arg("--data-urlencode").arg(format!("{k}={v}"));
    }
    cmd.arg(format!("http://127.0.0.1:5240/MAAS/api/2.0/{path}"));
    let out = netns::run(&mut cmd);
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let (body, code) = text.rsplit_once('\n').unwrap_or(("", "0"));
    let value = serde_json::from_str(body).unwrap_or(serde_json::Value::String(body.into()));
    (code.trim().parse().unwrap_or(0), value)
}

/// An IP range added through the MAAS face (as Terraform's maas_subnet_ip_range adds it) widens
/// the DHCP pool at once, for a real client; one that overlaps is refused; removing the range
/// takes it out of the pool again; the VLAN and the rack controller say that rackbox serves
/// managed DHCP there.
#[test]
fn an_ip_range_added_through_the_maas_face_changes_the_pool_at_once() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    require_tools(TOOLS);
    let mut lab = Lab::new();
    let (_sw, srv, cs) = lan(&mut lab, 3);
    // One address in the configured pool.
    let rb = Rackbox::start(
        &mut lab,
        &srv,
        "rb",
        &managed_toml(
            "eth0",
            &[("192.0.2.0/24", "192.0.2.100", "192.0.2.100", 600)],
        ),
    );
    let key = maas_key(&lab, &rb);
    let maas = |method: &str, path: &str, form: &[(&str, &str)]| {
        maas_call(&lab, &srv, &key, method, path, form)
    };
    let script = netns::write_udhcpc_script(&lab);
    let once = |c: &str, out: &str| {
        let _ = netns::run(&mut udhcpc(
            &lab,
            c,
            out,
            &script,
            &["-q", "-n", "-t", "3", "-T", "1"],
        ));
        bound_ips(&lab.read(out)).into_iter().next()
    };
    assert_eq!(once(&cs[0], "a.out").as_deref(), Some("192.0.2.100"));
    assert_eq!(once(&cs[1], "b.out"), None, "the pool of one is taken");

    // The VLAN and the controller tell the truth about DHCP here.
    let (s, vlans) = maas("GET", "fabrics/0/vlans/", &[]);
    assert_eq!(s, 200, "{vlans}");
    assert_eq!(vlans[0]["dhcp_on"], true, "{vlans}");
    let (_, racks) = maas("GET", "rackcontrollers/", &[]);
    assert_eq!(vlans[0]["primary_rack"], racks[0]["system_id"], "{racks}");
    let iface = &racks[0]["interface_set"][0];
    assert_eq!(iface["name"], "eth0", "{racks}");
    assert_eq!(iface["mac_address"], "02:00:00:00:00:01", "{racks}");

    // Terraform's create: GET subnets/, POST ipranges/?op= with the subnet's id.
    let (_, subnets) = maas("GET", "subnets/", &[]);
    let subnet = subnets[0]["id"].to_string();
    let range = [
        ("type", "dynamic"),
        ("subnet", subnet.as_str()),
        ("start_ip", "192.0.2.150"),
        ("end_ip", "192.0.2.151"),
        ("comment", "more room"),
    ];
    let (s, r) = maas("POST", "ipranges/?op=", &range);
    assert_eq!(s, 200, "{r}");
    assert_eq!(
        r["subnet"]["cidr"], "192.0.2.0/24",
        "the subnet is an object: {r}"
    );
    let id = r["id"].to_string();
    let got = once(&cs[1], "b2.out").expect("the widened pool serves the second client");
    assert!(in_range(&got, 150, 151), "{got}");

    // Overlaps are refused: with the API's range and with the configuration's.
    let (s, body) = maas(
        "POST",
        "ipranges/?op=",
        &[
            ("type", "reserved"),
            ("start_ip", "192.0.2.151"),
            ("end_ip", "192.0.2.160"),
        ],
    );
    assert_eq!(s, 409, "{body}");
    let (s, body) = maas(
        "POST",
        "ipranges/?op=",
        &[
            ("type", "dynamic"),
            ("start_ip", "192.0.2.90"),
            ("end_ip", "192.0.2.100"),
        ],
    );
    assert_eq!(s, 409, "{body}");
    assert!(body.to_string().contains("configuration"), "{body}");
    let (s, body) = maas(
        "POST",
        "ipranges/?op=",
        &[
            ("type", "dynamic"),
            ("start_ip", "198.51.100.1"),
            ("end_ip", "198.51.100.9"),
        ],
    );
    assert_eq!(s, 400, "outside every boot subnet: {body}");

    // Terraform's update and read: PUT the same parameters with a new comment, GET it back.
    let mut changed = range;
    changed[4] = ("comment", "even more room");
    let (s, r) = maas("PUT", &format!("ipranges/{id}/"), &changed);
    assert_eq!(s, 200, "{r}");
    assert!(r["resource_uri"].is_string(), "{r}");
    let (_, r) = maas("GET", &format!("ipranges/{id}/"), &[]);
    assert_eq!(r["comment"], "even more room");
    let (_, all) = maas("GET", "ipranges/", &[]);
    let config = all
        .as_array()
        .unwrap()
        .iter()
        .find(|x| x["start_ip"] == "192.0.2.100")
        .expect("the configuration's range is listed")
        .clone();
    let (s, body) = maas("DELETE", &format!("ipranges/{}/", config["id"]), &[]);
    assert_eq!(
        s, 409,
        "the configuration's range is changed in the file: {body}"
    );

    // A reserved range inside the API's pool: that address is never handed out.
    let (s, r) = maas(
        "PUT",
        &format!("ipranges/{id}/"),
        &[("end_ip", "192.0.2.152")],
    );
    assert_eq!(s, 200, "{r}");
    let (s, reserved) = maas(
        "POST",
        "ipranges/?op=",
        &[
            ("type", "reserved"),
            ("start_ip", "192.0.2.170"),
            ("end_ip", "192.0.2.170"),
        ],
    );
    assert_eq!(s, 200, "{reserved}");
    let third = once(&cs[2], "c.out").expect("the third client gets the range's new address");
    assert!(in_range(&third, 150, 152) && third != got, "{third}");

    // Terraform's destroy: DELETE; the range's addresses leave the pool for new clients.
    assert_eq!(maas("DELETE", &format!("ipranges/{id}/"), &[]).0, 204);
    assert_eq!(
        maas("DELETE", &format!("ipranges/{}/", reserved["id"]), &[]).0,
        204
    );
    let _ = netns::run(lab.cmd(&cs[1], "ip").args(["addr", "flush", "dev", "eth0"]));
    let (_, leases) = maas("GET", "ipranges/", &[]);
    assert_eq!(leases.as_array().map(Vec::len), Some(1), "{leases}");
    drop(rb);
}

/// Interface links through the MAAS face on a rackbox with a boot network (as Terraform's
/// maas_instance network_interfaces and the MAAS CLI set them): link_subnet STATIC shows the
/// address with its subnet object and in the machine's ip_addresses; an address in the DHCP
/// pool is refused; AUTO has no address until a deploy; unlink_subnet clears it. Static routes
/// from the boot subnet are added, checked and removed.
#[test]
fn interface_links_through_the_maas_face() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    require_tools(TOOLS);
    let mut lab = Lab::new();
    let (_sw, srv, _cs) = lan(&mut lab, 0);
    let rb = Rackbox::start(
        &mut lab,
        &srv,
        "rb",
        &managed_toml(
            "eth0",
            &[("192.0.2.0/24", "192.0.2.100", "192.0.2.150", 600)],
        ),
    );
    let key = maas_key(&lab, &rb);
    let maas = |method: &str, path: &str, form: &[(&str, &str)]| {
        maas_call(&lab, &srv, &key, method, path, form)
    };
    let (s, m) = maas(
        "POST",
        "machines/?op=",
        &[
            ("architecture", "amd64/generic"),
            ("mac_addresses", "52:54:00:00:02:01"),
            ("power_type", "manual"),
            ("commission", "false"),
        ],
    );
    assert_eq!(s, 200, "{m}");
    let id = m["system_id"].as_str().unwrap().to_string();
    let iface = format!("nodes/{id}/interfaces/1/");
    let (_, subnets) = maas("GET", "subnets/", &[]);
    let subnet = subnets[0]["id"].to_string();

    let (s, body) = maas(
        "POST",
        &format!("{iface}?op=link_subnet"),
        &[
            ("mode", "STATIC"),
            ("subnet", &subnet),
            ("ip_address", "192.0.2.120"),
        ],
    );
    assert_eq!(s, 400, "an address in the DHCP pool: {body}");
    let (s, i) = maas(
        "POST",
        &format!("{iface}?op=link_subnet"),
        &[
            ("mode", "STATIC"),
            ("subnet", &subnet),
            ("ip_address", "192.0.2.20"),
            ("default_gateway", "false"),
        ],
    );
    assert_eq!(s, 200, "{i}");
    let link = &i["links"][0];
    assert_eq!(link["mode"], "static");
    assert_eq!(link["ip_address"], "192.0.2.20");
    assert_eq!(link["subnet"]["cidr"], "192.0.2.0/24");
    let (_, m) = maas("GET", &format!("machines/{id}/"), &[]);
    assert_eq!(m["ip_addresses"], serde_json::json!(["192.0.2.20"]), "{m}");

    let (s, i) = maas(
        "POST",
        &format!("{iface}?op=link_subnet"),
        &[("mode", "AUTO"), ("subnet", "192.0.2.0/24")],
    );
    assert_eq!(s, 200, "{i}");
    assert_eq!(i["links"][0]["mode"], "auto");
    assert!(
        i["links"][0].get("ip_address").is_none(),
        "an auto link has no address before a deploy (gomaasapi refuses a null one): {i}"
    );
    let (s, i) = maas("POST", &format!("{iface}?op=unlink_subnet"), &[("id", "1")]);
    assert_eq!(s, 200, "{i}");
    assert_eq!(i["links"], serde_json::json!([]));
    // Static routes: from a boot subnet to another network through a gateway on it.
    let route = [
        ("source", subnet.as_str()),
        ("destination", "198.51.100.0/24"),
        ("gateway_ip", "192.0.2.250"),
        ("metric", "10"),
    ];
    let (s, r) = maas("POST", "static-routes/?op=", &route);
    assert_eq!(s, 200, "{r}");
    assert_eq!(r["source"]["cidr"], "192.0.2.0/24", "{r}");
    assert_eq!(r["destination"]["cidr"], "198.51.100.0/24", "{r}");
    assert_eq!(r["gateway_ip"], "192.0.2.250");
    let (s, body) = maas("POST", "static-routes/?op=", &route);
    assert_eq!(s, 409, "the same route twice: {body}");
    let (s, body) = maas(
        "POST",
        "static-routes/?op=",
        &[
            ("source", subnet.as_str()),
            ("destination", "203.0.113.0/24"),
            ("gateway_ip", "198.51.100.1"),
        ],
    );
    assert_eq!(s, 400, "a gateway outside the source subnet: {body}");
    let (_, routes) = maas("GET", "static-routes/", &[]);
    assert_eq!(routes.as_array().map(Vec::len), Some(1), "{routes}");
    assert_eq!(
        maas("DELETE", &format!("static-routes/{}/", r["id"]), &[]).0,
        204
    );
    let (_, routes) = maas("GET", "static-routes/", &[]);
    assert_eq!(routes, serde_json::json!([]));

    let (_, v) = maas("GET", "version/", &[]);
    assert!(
        v["capabilities"]
            .as_array()
            .is_some_and(|c| c.contains(&serde_json::json!("network-deployment-ubuntu"))),
        "{v}"
    );
}
