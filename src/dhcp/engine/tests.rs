//! The engine's behaviour, exchange by exchange, with no sockets and a clock we move by hand.

use std::collections::HashSet;
use std::net::{Ipv4Addr, SocketAddrV4};

use dhcproto::v4::{
    Architecture, DhcpOption, Flags, Message, MessageType, Opcode, OptionCode,
    relay::{RelayAgentInformation, RelayInfo},
};
use dhcproto::{Decodable, Decoder, Encodable, Encoder};
use proptest::prelude::*;

use super::*;
use crate::net::{Cidr, Ipv4Range};

const SERVER: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 1);

fn ip(last: u8) -> Ipv4Addr {
    Ipv4Addr::new(192, 0, 2, last)
}

fn mac(n: u8) -> Mac {
    Mac([0x52, 0x54, 0, 0, 0, n])
}

fn subnet(cidr: &str, first: u8, last: u8) -> BootSubnet {
    let cidr: Cidr = cidr.parse().unwrap();
    let base = u32::from(cidr.network());
    BootSubnet {
        cidr,
        gateway: Some(Ipv4Addr::from(base + 254)),
        dns_servers: vec![Ipv4Addr::from(base + 53)],
        ntp_servers: vec![Ipv4Addr::from(base + 123)],
        domain: Some("maas".into()),
        dynamic_ranges: vec![Ipv4Range {
            start: Ipv4Addr::from(base + u32::from(first)),
            end: Ipv4Addr::from(base + u32::from(last)),
        }],
        reserved_ranges: vec![],
        lease_time_secs: 600,
    }
}

fn config(mode: BootMode, subnets: Vec<BootSubnet>) -> EngineConfig {
    EngineConfig {
        mode,
        subnets,
        files: BootFiles {
            bios_loader: "undionly.kpxe".into(),
            uefi_loader: "snponly.efi".into(),
            arm64_loader: None,
            http_loader_base: "http://192.0.2.1:5240/boot".into(),
            public_url: "http://192.0.2.1:5240".into(),
        },
        server_addrs: vec![SERVER],
        quarantine_ms: 300_000,
        offer_hold_ms: 60_000,
    }
}

fn managed(first: u8, last: u8) -> Engine {
    Engine::new(
        config(BootMode::Managed, vec![subnet("192.0.2.0/24", first, last)]),
        vec![],
    )
}

/// Builds a client message.
struct Msg(Message);

impl Msg {
    fn new(kind: MessageType, m: Mac) -> Msg {
        let mut msg = Message::default();
        msg.set_opcode(Opcode::BootRequest)
            .set_xid(u32::from(m.0[5]) + 1000)
            .set_chaddr(&m.0);
        msg.opts_mut().insert(DhcpOption::MessageType(kind));
        Msg(msg)
    }
    fn opt(mut self, o: DhcpOption) -> Msg {
        self.0.opts_mut().insert(o);
        self
    }
    fn ciaddr(mut self, a: Ipv4Addr) -> Msg {
        self.0.set_ciaddr(a);
        self
    }
    fn giaddr(mut self, a: Ipv4Addr) -> Msg {
        self.0.set_giaddr(a);
        self
    }
    fn broadcast(mut self) -> Msg {
        self.0.set_flags(Flags::default().set_broadcast());
        self
    }
    fn bytes(&self) -> Vec<u8> {
        let mut buf = Vec::new();
        self.0.encode(&mut Encoder::new(&mut buf)).unwrap();
        buf
    }
}

fn nobody_known(_: Mac) -> bool {
    false
}

fn send(e: &mut Engine, m: &Msg, now: u64) -> Decision {
    send_port(e, m, now, 67, &nobody_known)
}

fn send_port(e: &mut Engine, m: &Msg, now: u64, port: u16, known: &dyn KnownMacs) -> Decision {
    let bytes = m.bytes();
    let src = if m.0.ciaddr().is_unspecified() {
        Ipv4Addr::UNSPECIFIED
    } else {
        m.0.ciaddr()
    };
    e.handle(
        &Incoming {
            payload: &bytes,
            src_ip: src,
            dst_ip: Ipv4Addr::BROADCAST,
            src_port: 68,
            dst_port: port,
        },
        now,
        known,
    )
}

fn reply_of(d: &Decision) -> (Message, Destination, Option<Commit>) {
    match d {
        Decision::Reply { reply, commit } => (
            Message::decode(&mut Decoder::new(&reply.payload)).unwrap(),
            reply.to,
            commit.clone(),
        ),
        other => panic!("expected a reply, got {other:?}"),
    }
}

/// The BOOTP file field without its NUL padding (dhcproto's decoder keeps the first NUL).
fn file(m: &Message) -> Option<&[u8]> {
    m.fname()
        .map(|f| f.split(|b| *b == 0).next().unwrap_or(f))
        .filter(|f| !f.is_empty())
}

/// Where a reply to a client goes when it is sent as a raw frame: `mac`, `ip`, the client port.
fn to_client(mac: Mac, ip: Ipv4Addr) -> Destination {
    Destination::Frame { mac, ip, port: 68 }
}

/// Asserts that the options `$options` carry `$name($value)`: the option's code is its name.
macro_rules! assert_option {
    ($options:expr, $name:ident($($value:tt)*)) => {
        assert_eq!(
            $options.get(OptionCode::$name),
            Some(&DhcpOption::$name($($value)*))
        )
    };
}

/// Asserts that `m` answers as a PXE boot server: it names itself "PXEClient" and carries the
/// PXE vendor options (discovery control 8: take the boot file from this answer).
fn assert_pxe_answer(m: &Message) {
    let o = m.opts();
    assert_option!(o, ClassIdentifier(b"PXEClient".to_vec()));
    assert_option!(o, VendorExtensions(vec![6, 1, 8, 255]));
}

fn kind(m: &Message) -> MessageType {
    m.opts().msg_type().unwrap()
}

/// DISCOVER + REQUEST; returns the ACKed address.
fn lease(e: &mut Engine, m: Mac, now: u64) -> Ipv4Addr {
    let (offer, _, _) = reply_of(&send(e, &Msg::new(MessageType::Discover, m), now));
    assert_eq!(kind(&offer), MessageType::Offer);
    let req = Msg::new(MessageType::Request, m)
        .opt(DhcpOption::ServerIdentifier(SERVER))
        .opt(DhcpOption::RequestedIpAddress(offer.yiaddr()));
    let (ack, _, commit) = reply_of(&send(e, &req, now));
    assert_eq!(kind(&ack), MessageType::Ack);
    assert!(
        commit.is_some(),
        "an ACK must carry the lease to persist first"
    );
    ack.yiaddr()
}

#[test]
fn offer_carries_the_subnet_options() {
    let mut e = managed(10, 20);
    let (offer, to, commit) = reply_of(&send(&mut e, &Msg::new(MessageType::Discover, mac(1)), 0));
    assert!(commit.is_none(), "offers are not persisted");
    assert_eq!(offer.opcode(), Opcode::BootReply);
    assert_eq!(offer.yiaddr(), ip(10));
    assert_eq!(to, to_client(mac(1), ip(10)));
    let o = offer.opts();
    assert_option!(o, SubnetMask(Ipv4Addr::new(255, 255, 255, 0)));
    assert_option!(o, Router(vec![ip(254)]));
    assert_option!(o, DomainNameServer(vec![ip(53)]));
    assert_option!(o, DomainName("maas".into()));
    assert_option!(o, BroadcastAddr(ip(255)));
    assert_option!(o, NtpServers(vec![ip(123)]));
    assert_option!(o, AddressLeaseTime(600));
    assert_option!(o, Renewal(300));
    assert_option!(o, Rebinding(525));
    assert_option!(o, ServerIdentifier(SERVER));
    // A plain client gets no boot information, and nothing it did not send is echoed.
    assert!(o.get(OptionCode::BootfileName).is_none());
    assert!(o.get(OptionCode::ClientMachineIdentifier).is_none());
    assert!(o.get(OptionCode::RelayAgentInformation).is_none());
}

#[test]
fn broadcast_flag_is_honoured() {
    let mut e = managed(10, 20);
    let (_, to, _) = reply_of(&send(
        &mut e,
        &Msg::new(MessageType::Discover, mac(1)).broadcast(),
        0,
    ));
    assert_eq!(to, to_client(Mac::BROADCAST, Ipv4Addr::BROADCAST));
}

#[test]
fn same_mac_same_address_after_release_and_expiry() {
    let mut e = managed(10, 20);
    let a = lease(&mut e, mac(1), 0);
    let b = lease(&mut e, mac(2), 0);
    assert_ne!(a, b);
    assert_eq!(
        lease(&mut e, mac(1), 1_000),
        a,
        "renewing from INIT keeps the address"
    );
    let rel = Msg::new(MessageType::Release, mac(1))
        .ciaddr(a)
        .opt(DhcpOption::ServerIdentifier(SERVER));
    match send(&mut e, &rel, 2_000) {
        Decision::Record(c) => assert_eq!(c.lease.state, LeaseState::Released),
        other => panic!("{other:?}"),
    }
    assert_eq!(e.active_leases(2_000), 1);
    assert_eq!(
        lease(&mut e, mac(1), 3_000),
        a,
        "a released client gets its address back"
    );
    assert_eq!(lease(&mut e, mac(1), 10_000_000), a, "and after expiry too");
}

#[test]
fn renew_and_rebind_extend_and_unicast() {
    let mut e = managed(10, 20);
    let a = lease(&mut e, mac(1), 0);
    let renew = Msg::new(MessageType::Request, mac(1)).ciaddr(a);
    let (ack, to, commit) = reply_of(&send(&mut e, &renew, 300_000));
    assert_eq!(kind(&ack), MessageType::Ack);
    assert_eq!(ack.ciaddr(), a);
    assert_eq!(to, Destination::Unicast(SocketAddrV4::new(a, 68)));
    assert_eq!(commit.unwrap().lease.expires_ms, 900_000);
    let rebind = Msg::new(MessageType::Request, mac(1)).ciaddr(a).broadcast();
    let (ack, _, _) = reply_of(&send(&mut e, &rebind, 500_000));
    assert_eq!(kind(&ack), MessageType::Ack);
}

#[test]
fn init_reboot_wrong_network_or_taken_is_naked() {
    let mut e = managed(10, 20);
    let a = lease(&mut e, mac(1), 0);
    let wrong = Msg::new(MessageType::Request, mac(2)).opt(DhcpOption::RequestedIpAddress(
        Ipv4Addr::new(198, 51, 100, 7),
    ));
    let (nak, to, commit) = reply_of(&send(&mut e, &wrong, 1));
    assert_eq!(kind(&nak), MessageType::Nak);
    assert!(commit.is_none());
    assert_eq!(to, to_client(Mac::BROADCAST, Ipv4Addr::BROADCAST));
    let taken = Msg::new(MessageType::Request, mac(2)).opt(DhcpOption::RequestedIpAddress(a));
    let (nak, _, _) = reply_of(&send(&mut e, &taken, 1));
    assert_eq!(kind(&nak), MessageType::Nak);
}

#[test]
fn request_for_another_server_drops_our_offer() {
    let mut e = managed(10, 10);
    let (offer, _, _) = reply_of(&send(&mut e, &Msg::new(MessageType::Discover, mac(1)), 0));
    let other = Msg::new(MessageType::Request, mac(1))
        .opt(DhcpOption::ServerIdentifier(ip(99)))
        .opt(DhcpOption::RequestedIpAddress(offer.yiaddr()));
    assert_eq!(
        send(&mut e, &other, 1),
        Decision::Ignore(Ignored::OtherServer)
    );
    // The only address is free again for someone else at once.
    let (offer2, _, _) = reply_of(&send(&mut e, &Msg::new(MessageType::Discover, mac(2)), 2));
    assert_eq!(offer2.yiaddr(), offer.yiaddr());
}

#[test]
fn pool_exhausts_and_recovers_on_expiry() {
    let mut e = managed(10, 11);
    lease(&mut e, mac(1), 0);
    lease(&mut e, mac(2), 0);
    assert_eq!(
        send(&mut e, &Msg::new(MessageType::Discover, mac(3)), 1),
        Decision::Exhausted
    );
    let ask = Msg::new(MessageType::Request, mac(3)).opt(DhcpOption::RequestedIpAddress(ip(10)));
    let (nak, _, _) = reply_of(&send(&mut e, &ask, 1));
    assert_eq!(kind(&nak), MessageType::Nak);
    // 600 s later both leases are over: the pool serves again, oldest-expired first.
    let got = lease(&mut e, mac(3), 601_000);
    assert!(got == ip(10) || got == ip(11));
}

#[test]
fn offers_hold_addresses_for_a_while() {
    let mut e = managed(10, 10);
    reply_of(&send(&mut e, &Msg::new(MessageType::Discover, mac(1)), 0));
    assert_eq!(
        send(&mut e, &Msg::new(MessageType::Discover, mac(2)), 1),
        Decision::Exhausted
    );
    e.expire_offers(60_001);
    reply_of(&send(
        &mut e,
        &Msg::new(MessageType::Discover, mac(2)),
        60_001,
    ));
}

#[test]
fn known_machines_keep_their_address() {
    let known = |m: Mac| m == mac(1);
    let mut e = managed(10, 10);
    let (offer, _, _) = reply_of(&send_port(
        &mut e,
        &Msg::new(MessageType::Discover, mac(1)),
        0,
        67,
        &known,
    ));
    let req =
        Msg::new(MessageType::Request, mac(1)).opt(DhcpOption::RequestedIpAddress(offer.yiaddr()));
    reply_of(&send_port(&mut e, &req, 0, 67, &known));
    // Long after the lease ended, a stranger still cannot take a known machine's address...
    let d = send_port(
        &mut e,
        &Msg::new(MessageType::Discover, mac(2)),
        10_000_000,
        67,
        &known,
    );
    assert_eq!(d, Decision::Exhausted);
    // ...while the machine gets it back.
    let (again, _, _) = reply_of(&send_port(
        &mut e,
        &Msg::new(MessageType::Discover, mac(1)),
        10_000_000,
        67,
        &known,
    ));
    assert_eq!(again.yiaddr(), offer.yiaddr());
}

#[test]
fn decline_quarantines_the_address() {
    let mut e = managed(10, 11);
    let a = lease(&mut e, mac(1), 0);
    let decline = Msg::new(MessageType::Decline, mac(1))
        .opt(DhcpOption::ServerIdentifier(SERVER))
        .opt(DhcpOption::RequestedIpAddress(a));
    match send(&mut e, &decline, 1) {
        Decision::Record(c) => {
            assert_eq!(c.lease.state, LeaseState::Declined);
            assert_eq!(c.lease.mac, None);
        }
        other => panic!("{other:?}"),
    }
    // Neither the decliner nor anyone else gets it during the quarantine.
    let b = lease(&mut e, mac(1), 2);
    assert_ne!(a, b);
    assert_eq!(
        send(&mut e, &Msg::new(MessageType::Discover, mac(2)), 3),
        Decision::Exhausted
    );
    // After it, the address is back in the pool.
    let (offer, _, _) = reply_of(&send(
        &mut e,
        &Msg::new(MessageType::Discover, mac(2)),
        300_002,
    ));
    assert_eq!(offer.yiaddr(), a);
}

#[test]
fn a_stranger_cannot_release_or_decline_someone_elses_lease() {
    let mut e = managed(10, 11);
    let a = lease(&mut e, mac(1), 0);
    let rel = Msg::new(MessageType::Release, mac(2)).ciaddr(a);
    assert_eq!(send(&mut e, &rel, 1), Decision::Ignore(Ignored::NotOurs));
    let dec = Msg::new(MessageType::Decline, mac(2)).opt(DhcpOption::RequestedIpAddress(a));
    assert_eq!(send(&mut e, &dec, 1), Decision::Ignore(Ignored::NotOurs));
    assert!(e.lease(a).unwrap().is_active(1));
}

#[test]
fn inform_gets_options_without_a_lease() {
    let mut e = managed(10, 11);
    let inform = Msg::new(MessageType::Inform, mac(5)).ciaddr(ip(77));
    let (ack, to, commit) = reply_of(&send(&mut e, &inform, 0));
    assert_eq!(kind(&ack), MessageType::Ack);
    assert!(commit.is_none());
    assert_eq!(ack.yiaddr(), Ipv4Addr::UNSPECIFIED);
    assert!(ack.opts().get(OptionCode::AddressLeaseTime).is_none());
    assert_eq!(to, Destination::Unicast(SocketAddrV4::new(ip(77), 68)));
}

#[test]
fn relayed_requests_use_the_relays_subnet_and_go_back_to_it() {
    let relay_gw = Ipv4Addr::new(198, 51, 100, 254);
    let mut e = Engine::new(
        config(
            BootMode::Managed,
            vec![
                subnet("192.0.2.0/24", 10, 20),
                subnet("198.51.100.0/24", 50, 60),
            ],
        ),
        vec![],
    );
    let mut info = RelayAgentInformation::default();
    info.insert(RelayInfo::AgentCircuitId(b"port7".to_vec()));
    let d = Msg::new(MessageType::Discover, mac(9))
        .giaddr(relay_gw)
        .opt(DhcpOption::RelayAgentInformation(info.clone()));
    let (offer, to, _) = reply_of(&send(&mut e, &d, 0));
    assert_eq!(offer.yiaddr(), Ipv4Addr::new(198, 51, 100, 50));
    assert_eq!(offer.giaddr(), relay_gw);
    assert_eq!(to, Destination::Relay(relay_gw));
    assert_option!(offer.opts(), RelayAgentInformation(info));
    assert_option!(offer.opts(), ServerIdentifier(SERVER));
    // A relay for a subnet we do not serve gets nothing.
    let d = Msg::new(MessageType::Discover, mac(9)).giaddr(Ipv4Addr::new(203, 0, 113, 1));
    assert_eq!(send(&mut e, &d, 0), Decision::Ignore(Ignored::NoSubnet));
}

#[test]
fn pxe_clients_get_their_loader_by_architecture() {
    let mut e = managed(10, 20);
    let bios = Msg::new(MessageType::Discover, mac(1))
        .opt(DhcpOption::ClassIdentifier(
            b"PXEClient:Arch:00000:UNDI:002001".to_vec(),
        ))
        .opt(DhcpOption::ClientSystemArchitecture(Architecture(0)))
        .opt(DhcpOption::ClientMachineIdentifier(vec![0, 1, 2, 3]));
    let (offer, _, _) = reply_of(&send(&mut e, &bios, 0));
    assert_eq!(offer.siaddr(), SERVER);
    assert_eq!(file(&offer), Some(&b"undionly.kpxe"[..]));
    let o = offer.opts();
    assert_option!(o, BootfileName(b"undionly.kpxe".to_vec()));
    assert_option!(o, TFTPServerName(b"192.0.2.1".to_vec()));
    assert_pxe_answer(&offer);
    assert_option!(o, ClientMachineIdentifier(vec![0, 1, 2, 3]));

    let uefi = Msg::new(MessageType::Discover, mac(2))
        .opt(DhcpOption::ClientSystemArchitecture(Architecture(9)));
    let (offer, _, _) = reply_of(&send(&mut e, &uefi, 0));
    assert_eq!(file(&offer), Some(&b"snponly.efi"[..]));

    let http = Msg::new(MessageType::Discover, mac(3))
        .opt(DhcpOption::ClassIdentifier(
            b"HTTPClient:Arch:00016:UNDI:003001".to_vec(),
        ))
        .opt(DhcpOption::ClientSystemArchitecture(Architecture(16)));
    let (offer, _, _) = reply_of(&send(&mut e, &http, 0));
    assert_eq!(
        file(&offer),
        Some(&b"http://192.0.2.1:5240/boot/snponly.efi"[..])
    );
    assert_option!(offer.opts(), ClassIdentifier(b"HTTPClient".to_vec()));

    let ipxe = Msg::new(MessageType::Discover, mac(4))
        .opt(DhcpOption::ClientSystemArchitecture(Architecture(7)))
        .opt(DhcpOption::UserClass(b"iPXE".to_vec()));
    let (offer, _, _) = reply_of(&send(&mut e, &ipxe, 0));
    assert_eq!(
        file(&offer),
        Some(&b"http://192.0.2.1:5240/boot/52:54:00:00:00:04.ipxe"[..])
    );

    let arm = Msg::new(MessageType::Discover, mac(5))
        .opt(DhcpOption::ClientSystemArchitecture(Architecture(11)));
    let (offer, _, _) = reply_of(&send(&mut e, &arm, 0));
    assert!(
        file(&offer).is_none(),
        "no arm64 loader configured: address only"
    );
    assert_ne!(offer.yiaddr(), Ipv4Addr::UNSPECIFIED);
}

#[test]
fn proxy_mode_answers_boot_clients_only_and_gives_no_address() {
    let mut e = Engine::new(config(BootMode::Proxy, vec![]), vec![]);
    assert_eq!(
        send(&mut e, &Msg::new(MessageType::Discover, mac(1)), 0),
        Decision::Ignore(Ignored::NotBootClient)
    );
    let pxe = Msg::new(MessageType::Discover, mac(2)).opt(DhcpOption::ClassIdentifier(
        b"PXEClient:Arch:00000:UNDI:002001".to_vec(),
    ));
    let (offer, to, commit) = reply_of(&send(&mut e, &pxe, 0));
    assert!(commit.is_none());
    assert_eq!(kind(&offer), MessageType::Offer);
    assert_eq!(offer.yiaddr(), Ipv4Addr::UNSPECIFIED);
    assert_eq!(file(&offer), Some(&b"undionly.kpxe"[..]));
    let o = offer.opts();
    assert_pxe_answer(&offer);
    assert!(o.get(OptionCode::AddressLeaseTime).is_none());
    assert!(o.get(OptionCode::SubnetMask).is_none());
    assert_eq!(to, to_client(mac(2), Ipv4Addr::BROADCAST));
    // The REQUEST for the site server's address is not ours.
    let req = Msg::new(MessageType::Request, mac(2))
        .opt(DhcpOption::ClassIdentifier(
            b"PXEClient:Arch:00000:UNDI:002001".to_vec(),
        ))
        .opt(DhcpOption::ServerIdentifier(ip(250)))
        .opt(DhcpOption::RequestedIpAddress(ip(100)));
    assert_eq!(
        send(&mut e, &req, 0),
        Decision::Ignore(Ignored::OtherServer)
    );
    // Port 4011: the boot-server request from a client that has its address.
    let req = Msg::new(MessageType::Request, mac(2))
        .ciaddr(ip(100))
        .opt(DhcpOption::ClassIdentifier(
            b"PXEClient:Arch:00007:UNDI:003016".to_vec(),
        ))
        .opt(DhcpOption::ClientSystemArchitecture(Architecture(7)));
    let (ack, to, _) = reply_of(&send_port(&mut e, &req, 0, 4011, &nobody_known));
    assert_eq!(kind(&ack), MessageType::Ack);
    assert_eq!(file(&ack), Some(&b"snponly.efi"[..]));
    assert_eq!(to, Destination::Unicast(SocketAddrV4::new(ip(100), 68)));
}

#[test]
fn off_mode_and_malformed() {
    let mut e = Engine::new(config(BootMode::Off, vec![]), vec![]);
    assert_eq!(
        send(&mut e, &Msg::new(MessageType::Discover, mac(1)), 0),
        Decision::Ignore(Ignored::Off)
    );
    let d = e.handle(
        &Incoming {
            payload: &[1, 2, 3],
            src_ip: Ipv4Addr::UNSPECIFIED,
            dst_ip: Ipv4Addr::BROADCAST,
            src_port: 68,
            dst_port: 67,
        },
        0,
        &nobody_known,
    );
    assert!(matches!(d, Decision::Malformed(_)));
}

#[test]
fn revert_undoes_a_failed_commit() {
    let mut e = managed(10, 10);
    let (offer, _, _) = reply_of(&send(&mut e, &Msg::new(MessageType::Discover, mac(1)), 0));
    let req =
        Msg::new(MessageType::Request, mac(1)).opt(DhcpOption::RequestedIpAddress(offer.yiaddr()));
    let (_, _, commit) = reply_of(&send(&mut e, &req, 0));
    e.revert(&commit.unwrap());
    assert!(e.lease(offer.yiaddr()).is_none());
    assert_eq!(e.active_leases(0), 0);
    // The address is free for anyone.
    reply_of(&send(&mut e, &Msg::new(MessageType::Discover, mac(2)), 0));
}

#[test]
fn leases_loaded_from_the_store_are_honoured() {
    let stored = Lease {
        ip: ip(10),
        mac: Some(mac(1).to_string()),
        state: LeaseState::Active,
        expires_ms: 1_000_000,
        hostname: None,
        updated_ms: 0,
    };
    let mut e = Engine::new(
        config(BootMode::Managed, vec![subnet("192.0.2.0/24", 10, 10)]),
        vec![stored],
    );
    assert_eq!(e.active_leases(0), 1);
    assert_eq!(
        send(&mut e, &Msg::new(MessageType::Discover, mac(2)), 0),
        Decision::Exhausted
    );
    assert_eq!(lease(&mut e, mac(1), 0), ip(10));
}

proptest! {
    #[test]
    fn random_datagrams_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..700), port in prop_oneof![Just(67u16), Just(4011u16)]) {
        for mode in [BootMode::Managed, BootMode::Proxy] {
            let mut e = Engine::new(config(mode, vec![subnet("192.0.2.0/24", 10, 12)]), vec![]);
            let _ = e.handle(
                &Incoming { payload: &bytes, src_ip: Ipv4Addr::UNSPECIFIED, dst_ip: Ipv4Addr::BROADCAST, src_port: 68, dst_port: port },
                0,
                &nobody_known,
            );
        }
    }

    #[test]
    fn an_address_is_never_acked_to_two_clients(ops in proptest::collection::vec((0u8..6, 0u8..5, 0u64..2000), 1..60)) {
        let mut e = managed(10, 13);
        let mut holder: std::collections::HashMap<Ipv4Addr, (Mac, u64)> = Default::default();
        let mut now = 0u64;
        for (client, op, dt) in ops {
            now += dt * 1000;
            let m = mac(client);
            let msg = match op {
                0 => Msg::new(MessageType::Discover, m),
                1 => Msg::new(MessageType::Request, m).opt(DhcpOption::RequestedIpAddress(ip(10 + client % 4))),
                2 => Msg::new(MessageType::Release, m).ciaddr(ip(10 + client % 4)),
                3 => Msg::new(MessageType::Decline, m).opt(DhcpOption::RequestedIpAddress(ip(10 + client % 4))),
                _ => Msg::new(MessageType::Request, m).ciaddr(ip(10 + client % 4)),
            };
            if let Decision::Reply { reply, commit: Some(c) } = send(&mut e, &msg, now) {
                prop_assert_eq!(reply.kind, MessageType::Ack);
                if let Some((other, until)) = holder.get(&c.lease.ip) {
                    prop_assert!(*other == m || *until <= now, "{} given to {} while {} holds it", c.lease.ip, m, other);
                }
                holder.insert(c.lease.ip, (m, c.lease.expires_ms));
            }
            if let Decision::Record(c) = send(&mut e, &Msg::new(MessageType::Discover, m), now) {
                prop_assert!(false, "a DISCOVER never writes: {:?}", c);
            }
            if op == 2 || op == 3 {
                // released or declined addresses leave the holder map only if the engine agrees
                if let Some(l) = e.lease(ip(10 + client % 4))
                    && !l.is_active(now)
                {
                    holder.remove(&l.ip);
                }
            }
        }
        let _ = HashSet::<u8>::new();
    }
}

#[test]
fn a_reply_tells_the_boot_timeline_who_the_client_is_and_what_it_got() {
    let mut e = managed(10, 20);
    let firmware = Msg::new(MessageType::Discover, mac(1))
        .opt(DhcpOption::ClassIdentifier(
            b"PXEClient:Arch:00007:UNDI:003016".to_vec(),
        ))
        .opt(DhcpOption::ClientSystemArchitecture(Architecture(7)));
    let Decision::Reply { reply, .. } = send(&mut e, &firmware, 0) else {
        panic!("no offer");
    };
    let seen = &reply.seen;
    assert_eq!(seen.mac, mac(1));
    assert_eq!(seen.request, MessageType::Discover);
    assert_eq!(seen.arch, Some(7));
    assert_eq!(
        seen.vendor_class.as_deref(),
        Some(&b"PXEClient:Arch:00007:UNDI:003016"[..])
    );
    assert!(seen.boot_client && seen.starts_boot && !seen.ipxe);
    assert_eq!(seen.file.as_deref(), Some("snponly.efi"));
    assert_ne!(seen.yiaddr, Ipv4Addr::UNSPECIFIED);

    // iPXE's own DISCOVER is the same boot going on; an OS's DHCP client is no boot at all.
    let ipxe = Msg::new(MessageType::Discover, mac(1))
        .opt(DhcpOption::ClientSystemArchitecture(Architecture(7)))
        .opt(DhcpOption::UserClass(b"iPXE".to_vec()));
    let Decision::Reply { reply, .. } = send(&mut e, &ipxe, 0) else {
        panic!("no offer");
    };
    assert!(reply.seen.ipxe && reply.seen.boot_client && !reply.seen.starts_boot);
    let plain = Msg::new(MessageType::Discover, mac(2));
    let Decision::Reply { reply, .. } = send(&mut e, &plain, 0) else {
        panic!("no offer");
    };
    assert!(!reply.seen.boot_client && !reply.seen.starts_boot);
}
