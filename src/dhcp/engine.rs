//! The DHCP server's decisions, without sockets or disks: a request (bytes and the addresses it
//! came from) goes in, a [`Decision`] comes out — a reply and where to send it, and the lease
//! record that must be durable before that reply may leave.
//!
//! The engine keeps every lease of its interface's subnets in memory (loaded from the store at
//! start) and changes them as it decides; the caller writes each [`Commit`] through the store and
//! calls [`Engine::revert`] if that write fails. Offers are held in memory only: an offer promises
//! nothing until the REQUEST is ACKed, so it need not survive a restart.

use std::collections::{BTreeMap, HashMap};
use std::net::{Ipv4Addr, SocketAddrV4};

use dhcproto::v4::{DhcpOption, MessageType};

use super::lease::{ClientMac, Lease, LeaseState};
use super::message::{self, Malformed, ReplyFields, Request};
use super::pxe::{BootClient, BootFile, BootFiles};
use crate::config::{BootMode, BootSubnet};
use crate::net::Mac;
use crate::net::socket::{DHCP_CLIENT_PORT, DHCP_SERVER_PORT, PXE_PORT};

/// What the engine is configured with for one interface.
#[derive(Debug, Clone)]
pub struct EngineConfig {
    pub mode: BootMode,
    pub subnets: Vec<BootSubnet>,
    pub files: BootFiles,
    /// The interface's IPv4 addresses; the first one in a subnet is that subnet's server
    /// identifier, and the first of all is used for relayed subnets and proxy mode.
    pub server_addrs: Vec<Ipv4Addr>,
    pub quarantine_ms: u64,
    pub offer_hold_ms: u64,
}

/// A UDP datagram as it arrived.
#[derive(Debug, Clone, Copy)]
pub struct Incoming<'a> {
    pub payload: &'a [u8],
    pub src_ip: Ipv4Addr,
    pub dst_ip: Ipv4Addr,
    pub src_port: u16,
    pub dst_port: u16,
}

/// Where a reply goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Destination {
    /// To a relay agent's giaddr, port 67, through the kernel (it may be behind a router).
    Relay(Ipv4Addr),
    /// To a client that has an address, through the kernel.
    Unicast(SocketAddrV4),
    /// A frame built by hand: broadcast, or layer-2 unicast to a client with no address yet.
    Frame { mac: Mac, ip: Ipv4Addr, port: u16 },
}

/// A reply ready to send.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reply {
    pub kind: MessageType,
    pub payload: Vec<u8>,
    pub(crate) to: Destination,
    /// Our address to send from (the subnet's server identifier).
    pub from: Ipv4Addr,
    /// Our port to send from (67, or 4011 for boot-server answers).
    pub(crate) from_port: u16,
    /// What the request said of its client and what the reply gave it, for the boot timeline.
    pub seen: Seen,
}

/// What one exchange tells of a client's boot: the facts the request carried and what the reply
/// gave. The engine decides them (it classified the client); the socket loop hands them to the
/// service's boot timeline once the reply is sent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Seen {
    pub mac: Mac,
    pub request: MessageType,
    /// Option 93, or the arch in a PXEClient vendor class.
    pub arch: Option<u16>,
    /// Option 60.
    pub vendor_class: Option<Vec<u8>>,
    /// The client runs iPXE already.
    pub ipxe: bool,
    /// The client network-boots at all (an OS's DHCP client is no boot step).
    pub boot_client: bool,
    /// A firmware's DISCOVER (not iPXE's): the start of a new boot.
    pub starts_boot: bool,
    /// The address the reply hands out (unspecified in proxy mode).
    pub yiaddr: Ipv4Addr,
    /// The address the client already has (ciaddr), e.g. on the boot-server port.
    pub ciaddr: Ipv4Addr,
    /// The boot file or URL the reply names.
    pub file: Option<String>,
}

/// A lease change to make durable, and what it replaced (to undo it in memory if the write fails).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Commit {
    pub lease: Lease,
    pub(crate) previous: Option<Lease>,
}

/// Why a request got no answer (beyond being malformed).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ignored {
    Off,
    NotBootClient,
    NoLoader,
    NoSubnet,
    OtherServer,
    NotOurs,
    UnexpectedType,
}

/// What to do with one request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    Malformed(Malformed),
    Ignore(Ignored),
    /// No address is free for this DISCOVER: nothing is sent.
    Exhausted,
    /// Send `reply`, after `commit` (if any) is durable.
    Reply {
        reply: Reply,
        commit: Option<Commit>,
    },
    /// Make `commit` durable; nothing is sent (RELEASE, DECLINE).
    Record(Commit),
}

/// An address promised in an OFFER.
#[derive(Debug, Clone, Copy)]
struct Held {
    mac: Mac,
    until_ms: u64,
}

/// The server state of one boot interface.
pub struct Engine {
    cfg: EngineConfig,
    leases: BTreeMap<Ipv4Addr, Lease>,
    /// Each client's most recent address (lease records keep it after expiry or release).
    by_mac: HashMap<Mac, Ipv4Addr>,
    offers: HashMap<Ipv4Addr, Held>,
}

/// Tells whether a MAC belongs to a machine rackbox knows (its addresses are sticky).
pub trait KnownMacs {
    fn is_known(&self, mac: Mac) -> bool;
}

impl<F: Fn(Mac) -> bool> KnownMacs for F {
    fn is_known(&self, mac: Mac) -> bool {
        self(mac)
    }
}

impl Engine {
    /// Builds the engine over the leases loaded from the store.
    pub fn new(cfg: EngineConfig, leases: Vec<Lease>) -> Engine {
        let mut engine = Engine {
            cfg,
            leases: BTreeMap::new(),
            by_mac: HashMap::new(),
            offers: HashMap::new(),
        };
        let mut sorted = leases;
        sorted.sort_by_key(|l| l.updated_ms);
        for lease in sorted {
            if let Some(mac) = lease.mac() {
                engine.by_mac.insert(mac, lease.ip);
            }
            engine.leases.insert(lease.ip, lease);
        }
        engine
    }

    /// Takes new subnet settings (IP ranges added or removed through the API) without losing a
    /// lease or a held offer: an address that left the pool stays leased until it expires and is
    /// not offered again.
    pub fn set_subnets(&mut self, subnets: Vec<BootSubnet>) {
        self.cfg.subnets = subnets;
    }

    /// Leases held by clients right now.
    pub fn active_leases(&self, now_ms: u64) -> u64 {
        self.leases.values().filter(|l| l.is_active(now_ms)).count() as u64
    }

    /// The lease record of an address (tests and tools).
    pub fn lease(&self, ip: Ipv4Addr) -> Option<&Lease> {
        self.leases.get(&ip)
    }

    /// Forgets offers that were never requested.
    pub fn expire_offers(&mut self, now_ms: u64) {
        self.offers.retain(|_, h| h.until_ms > now_ms);
    }

    /// Undoes a commit whose write failed, unless a later decision already replaced it.
    pub fn revert(&mut self, commit: &Commit) {
        let ip = commit.lease.ip;
        if self.leases.get(&ip) != Some(&commit.lease) {
            return;
        }
        match &commit.previous {
            Some(prev) => {
                self.leases.insert(ip, prev.clone());
            }
            None => {
                self.leases.remove(&ip);
            }
        }
        if let Some(mac) = commit.lease.mac()
            && self.by_mac.get(&mac) == Some(&ip)
            && commit.previous.as_ref().and_then(|p| p.mac()) != Some(mac)
        {
            self.by_mac.remove(&mac);
        }
    }

    /// Decides what to do with one datagram.
    pub fn handle(&mut self, inc: &Incoming<'_>, now_ms: u64, known: &dyn KnownMacs) -> Decision {
        let req = match message::decode(inc.payload) {
            Ok(r) => r,
            Err(e) => return Decision::Malformed(e),
        };
        if self.cfg.mode == BootMode::Off {
            return Decision::Ignore(Ignored::Off);
        }
        if inc.dst_port == PXE_PORT {
            return self.boot_server(&req, inc);
        }
        match self.cfg.mode {
            BootMode::Off => Decision::Ignore(Ignored::Off),
            BootMode::Proxy => self.proxy(&req),
            BootMode::Managed => self.managed(&req, now_ms, known),
        }
    }

    fn primary_addr(&self) -> Ipv4Addr {
        self.cfg
            .server_addrs
            .first()
            .copied()
            .unwrap_or(Ipv4Addr::UNSPECIFIED)
    }

    fn is_ours(&self, ip: Ipv4Addr) -> bool {
        self.cfg.server_addrs.contains(&ip)
    }

    /// Our address on a subnet: the interface's address inside it, else the primary one
    /// (the subnet is behind a relay).
    fn server_ip_for(&self, subnet: &BootSubnet) -> Ipv4Addr {
        self.cfg
            .server_addrs
            .iter()
            .copied()
            .find(|a| subnet.cidr.contains(*a))
            .unwrap_or_else(|| self.primary_addr())
    }

    /// siaddr, file and options for a boot client; None when it gets no boot information.
    fn boot_info(
        &self,
        client: BootClient,
        mac: Mac,
        server_ip: Ipv4Addr,
    ) -> Option<(Ipv4Addr, String, Vec<DhcpOption>)> {
        let file = self.cfg.files.choose(client, mac)?;
        let mut options = vec![
            DhcpOption::TFTPServerName(server_ip.to_string().into_bytes()),
            DhcpOption::BootfileName(file.as_str().as_bytes().to_vec()),
        ];
        let pxe_rom = matches!(
            client,
            BootClient::BiosPxe | BootClient::UefiPxe | BootClient::Arm64Pxe
        );
        if client.is_http() {
            options.push(DhcpOption::ClassIdentifier(b"HTTPClient".to_vec()));
        } else if pxe_rom || self.cfg.mode == BootMode::Proxy {
            options.push(DhcpOption::ClassIdentifier(b"PXEClient".to_vec()));
            // PXE discovery control (sub-option 6) = 8: boot the file named here, no boot-server
            // discovery or menu.
            options.push(DhcpOption::VendorExtensions(vec![6, 1, 8, 255]));
        }
        let name = match file {
            BootFile::Tftp(name) | BootFile::Url(name) => name,
        };
        Some((server_ip, name, options))
    }

    /// Where a reply to `req` goes (RFC 2131 4.1), for one sent from port 67.
    fn destination(req: &Request, kind: MessageType, yiaddr: Ipv4Addr) -> Destination {
        let broadcast = Destination::Frame {
            mac: Mac::BROADCAST,
            ip: Ipv4Addr::BROADCAST,
            port: DHCP_CLIENT_PORT,
        };
        if !req.giaddr().is_unspecified() {
            Destination::Relay(req.giaddr())
        } else if kind == MessageType::Nak {
            broadcast
        } else if !req.ciaddr().is_unspecified() {
            Destination::Unicast(SocketAddrV4::new(req.ciaddr(), DHCP_CLIENT_PORT))
        } else if req.broadcast() {
            broadcast
        } else if yiaddr.is_unspecified() {
            // A proxy offer: the client has no address; reach it at layer 2.
            Destination::Frame {
                mac: req.mac,
                ip: Ipv4Addr::BROADCAST,
                port: DHCP_CLIENT_PORT,
            }
        } else {
            Destination::Frame {
                mac: req.mac,
                ip: yiaddr,
                port: DHCP_CLIENT_PORT,
            }
        }
    }

    fn reply(
        req: &Request,
        fields: ReplyFields,
        to: Destination,
        from: Ipv4Addr,
        from_port: u16,
        commit: Option<Commit>,
    ) -> Decision {
        let kind = fields.kind;
        let client = BootClient::of(req);
        let seen = Seen {
            mac: req.mac,
            request: req.kind,
            arch: req.arch,
            vendor_class: req.vendor_class.clone(),
            ipxe: req.is_ipxe,
            boot_client: client.is_boot_client(),
            starts_boot: req.kind == MessageType::Discover
                && client.is_boot_client()
                && client != BootClient::Ipxe,
            yiaddr: fields.yiaddr,
            ciaddr: req.ciaddr(),
            file: fields.file.clone(),
        };
        match message::encode_reply(req, fields) {
            Some(payload) => Decision::Reply {
                reply: Reply {
                    kind,
                    payload,
                    to,
                    from,
                    from_port,
                    seen,
                },
                commit,
            },
            // Only an absurd configuration (huge option lists) gets here; the config caps sizes.
            None => Decision::Ignore(Ignored::UnexpectedType),
        }
    }

    /// proxyDHCP on port 67: boot information only, to boot clients only.
    fn proxy(&mut self, req: &Request) -> Decision {
        let client = BootClient::of(req);
        if !client.is_boot_client() {
            return Decision::Ignore(Ignored::NotBootClient);
        }
        // Only DISCOVERs are answered on port 67. A REQUEST there is for the site's server (a
        // client that took our address-less offer by mistake would otherwise bind 0.0.0.0); the
        // PXE client asks us on port 4011, see `boot_server`.
        let kind = match req.kind {
            MessageType::Discover => MessageType::Offer,
            MessageType::Request => return Decision::Ignore(Ignored::OtherServer),
            _ => return Decision::Ignore(Ignored::UnexpectedType),
        };
        let server_ip = self.primary_addr();
        let Some((siaddr, file, mut options)) = self.boot_info(client, req.mac, server_ip) else {
            return Decision::Ignore(Ignored::NoLoader);
        };
        options.push(DhcpOption::ServerIdentifier(server_ip));
        let fields = ReplyFields {
            kind,
            yiaddr: Ipv4Addr::UNSPECIFIED,
            siaddr,
            file: Some(file),
            options,
        };
        let to = Self::destination(req, kind, Ipv4Addr::UNSPECIFIED);
        Self::reply(req, fields, to, server_ip, DHCP_SERVER_PORT, None)
    }

    /// The PXE boot server on port 4011: a client that has its address asks for its boot file.
    fn boot_server(&mut self, req: &Request, inc: &Incoming<'_>) -> Decision {
        if !matches!(req.kind, MessageType::Request | MessageType::Inform) {
            return Decision::Ignore(Ignored::UnexpectedType);
        }
        let client = BootClient::of(req);
        if !client.is_boot_client() {
            return Decision::Ignore(Ignored::NotBootClient);
        }
        let server_ip = if self.is_ours(inc.dst_ip) {
            inc.dst_ip
        } else {
            self.primary_addr()
        };
        let Some((siaddr, file, mut options)) = self.boot_info(client, req.mac, server_ip) else {
            return Decision::Ignore(Ignored::NoLoader);
        };
        options.push(DhcpOption::ServerIdentifier(server_ip));
        let fields = ReplyFields {
            kind: MessageType::Ack,
            yiaddr: Ipv4Addr::UNSPECIFIED,
            siaddr,
            file: Some(file),
            options,
        };
        let client_ip = if !req.ciaddr().is_unspecified() {
            req.ciaddr()
        } else {
            inc.src_ip
        };
        let to = if !req.giaddr().is_unspecified() {
            Destination::Relay(req.giaddr())
        } else if !client_ip.is_unspecified() {
            Destination::Unicast(SocketAddrV4::new(client_ip, inc.src_port))
        } else {
            Destination::Frame {
                mac: req.mac,
                ip: Ipv4Addr::BROADCAST,
                port: inc.src_port,
            }
        };
        Self::reply(req, fields, to, server_ip, PXE_PORT, None)
    }

    fn subnet_for(&self, req: &Request) -> Option<usize> {
        let subnets = &self.cfg.subnets;
        if !req.giaddr().is_unspecified() {
            return subnets.iter().position(|s| s.cidr.contains(req.giaddr()));
        }
        if !req.ciaddr().is_unspecified()
            && let Some(i) = subnets.iter().position(|s| s.cidr.contains(req.ciaddr()))
        {
            return Some(i);
        }
        subnets
            .iter()
            .position(|s| self.cfg.server_addrs.iter().any(|a| s.cidr.contains(*a)))
    }

    fn managed(&mut self, req: &Request, now_ms: u64, known: &dyn KnownMacs) -> Decision {
        let Some(si) = self.subnet_for(req) else {
            return Decision::Ignore(Ignored::NoSubnet);
        };
        match req.kind {
            MessageType::Discover => self.discover(req, si, now_ms, known),
            MessageType::Request => self.request(req, si, now_ms, known),
            MessageType::Decline => self.decline(req, now_ms),
            MessageType::Release => self.release(req, now_ms),
            MessageType::Inform => self.inform(req, si),
            _ => Decision::Ignore(Ignored::UnexpectedType),
        }
    }

    /// In the subnet's dynamic pool, not reserved, not ours, not the gateway.
    fn in_pool(&self, subnet: &BootSubnet, ip: Ipv4Addr) -> bool {
        subnet.cidr.contains(ip)
            && subnet.dynamic_ranges.iter().any(|r| r.contains(ip))
            && !subnet.reserved_ranges.iter().any(|r| r.contains(ip))
            && subnet.gateway != Some(ip)
            && !self.is_ours(ip)
    }

    /// Whether `mac` may have `ip` right now.
    fn available_for(
        &self,
        subnet: &BootSubnet,
        ip: Ipv4Addr,
        mac: Mac,
        now_ms: u64,
        known: &dyn KnownMacs,
    ) -> bool {
        if !self.in_pool(subnet, ip) {
            return false;
        }
        if let Some(held) = self.offers.get(&ip)
            && held.mac != mac
            && held.until_ms > now_ms
        {
            return false;
        }
        match self.leases.get(&ip) {
            None => true,
            Some(lease) if lease.is_quarantined(now_ms) => false,
            Some(lease) => match lease.mac() {
                Some(owner) if owner == mac => true,
                Some(owner) => {
                    !lease.is_active(now_ms)
                        && lease.state != LeaseState::Declined
                        && !known.is_known(owner)
                }
                None => true,
            },
        }
    }

    /// Picks an address for `mac`: its own previous one, the one it asks for, a never-used one,
    /// or the free one that has been free the longest.
    fn choose(
        &self,
        subnet: &BootSubnet,
        mac: Mac,
        requested: Option<Ipv4Addr>,
        now_ms: u64,
        known: &dyn KnownMacs,
    ) -> Option<Ipv4Addr> {
        if let Some(&ip) = self.by_mac.get(&mac)
            && self.available_for(subnet, ip, mac, now_ms, known)
        {
            return Some(ip);
        }
        if let Some(ip) = requested
            && self.available_for(subnet, ip, mac, now_ms, known)
        {
            return Some(ip);
        }
        let offer_free = |ip: &Ipv4Addr| {
            self.offers
                .get(ip)
                .is_none_or(|h| h.mac == mac || h.until_ms <= now_ms)
        };
        for range in &subnet.dynamic_ranges {
            if let Some(ip) = range.iter().find(|ip| {
                !self.leases.contains_key(ip) && offer_free(ip) && self.in_pool(subnet, *ip)
            }) {
                return Some(ip);
            }
        }
        let mut reusable: Vec<&Lease> = self
            .leases
            .values()
            .filter(|l| !l.is_active(now_ms) && !l.is_quarantined(now_ms))
            .filter(|l| self.in_pool(subnet, l.ip))
            .collect();
        reusable.sort_by_key(|l| l.expires_ms);
        reusable
            .into_iter()
            .map(|l| l.ip)
            .find(|ip| self.available_for(subnet, *ip, mac, now_ms, known))
    }

    /// Options every reply on a subnet carries.
    fn subnet_options(subnet: &BootSubnet, server_ip: Ipv4Addr) -> Vec<DhcpOption> {
        let mut options = vec![
            DhcpOption::ServerIdentifier(server_ip),
            DhcpOption::SubnetMask(subnet.cidr.mask()),
            DhcpOption::BroadcastAddr(subnet.cidr.broadcast()),
        ];
        if let Some(gw) = subnet.gateway {
            options.push(DhcpOption::Router(vec![gw]));
        }
        if !subnet.dns_servers.is_empty() {
            options.push(DhcpOption::DomainNameServer(subnet.dns_servers.clone()));
        }
        if let Some(domain) = &subnet.domain {
            options.push(DhcpOption::DomainName(domain.clone()));
        }
        if !subnet.ntp_servers.is_empty() {
            options.push(DhcpOption::NtpServers(subnet.ntp_servers.clone()));
        }
        options
    }

    /// The fields of an OFFER or ACK that hands out `ip`.
    fn lease_fields(
        &self,
        req: &Request,
        si: usize,
        kind: MessageType,
        ip: Ipv4Addr,
    ) -> (ReplyFields, Ipv4Addr) {
        let subnet = &self.cfg.subnets[si];
        let server_ip = self.server_ip_for(subnet);
        let secs = subnet.lease_time_secs;
        let mut options = Self::subnet_options(subnet, server_ip);
        options.push(DhcpOption::AddressLeaseTime(secs));
        options.push(DhcpOption::Renewal(secs / 2));
        options.push(DhcpOption::Rebinding(secs / 8 * 7));
        let (siaddr, file) = match self.boot_info(BootClient::of(req), req.mac, server_ip) {
            Some((siaddr, file, boot)) => {
                options.extend(boot);
                (siaddr, Some(file))
            }
            None => (Ipv4Addr::UNSPECIFIED, None),
        };
        (
            ReplyFields {
                kind,
                yiaddr: ip,
                siaddr,
                file,
                options,
            },
            server_ip,
        )
    }

    fn discover(
        &mut self,
        req: &Request,
        si: usize,
        now_ms: u64,
        known: &dyn KnownMacs,
    ) -> Decision {
        let subnet = &self.cfg.subnets[si];
        let Some(ip) = self.choose(subnet, req.mac, req.requested_ip, now_ms, known) else {
            return Decision::Exhausted;
        };
        self.offers.insert(
            ip,
            Held {
                mac: req.mac,
                until_ms: now_ms + self.cfg.offer_hold_ms,
            },
        );
        let (fields, server_ip) = self.lease_fields(req, si, MessageType::Offer, ip);
        let to = Self::destination(req, MessageType::Offer, ip);
        Self::reply(req, fields, to, server_ip, DHCP_SERVER_PORT, None)
    }

    fn nak(&self, req: &Request, si: usize, why: &str) -> Decision {
        let server_ip = self.server_ip_for(&self.cfg.subnets[si]);
        let fields = ReplyFields {
            kind: MessageType::Nak,
            yiaddr: Ipv4Addr::UNSPECIFIED,
            siaddr: Ipv4Addr::UNSPECIFIED,
            file: None,
            options: vec![
                DhcpOption::ServerIdentifier(server_ip),
                DhcpOption::Message(why.to_string()),
            ],
        };
        let to = Self::destination(req, MessageType::Nak, Ipv4Addr::UNSPECIFIED);
        Self::reply(req, fields, to, server_ip, DHCP_SERVER_PORT, None)
    }

    fn request(
        &mut self,
        req: &Request,
        si: usize,
        now_ms: u64,
        known: &dyn KnownMacs,
    ) -> Decision {
        if let Some(server_id) = req.server_id
            && !self.is_ours(server_id)
        {
            // The client chose another server's offer: give ours back to the pool.
            self.offers.retain(|_, h| h.mac != req.mac);
            return Decision::Ignore(Ignored::OtherServer);
        }
        let ip = match req.requested_ip {
            Some(ip) => ip,
            None if !req.ciaddr().is_unspecified() => req.ciaddr(),
            None => return Decision::Malformed(Malformed::Undecodable),
        };
        let subnet = &self.cfg.subnets[si];
        if !subnet.cidr.contains(ip) {
            return self.nak(req, si, "address is not on this network");
        }
        if !self.available_for(subnet, ip, req.mac, now_ms, known) {
            return self.nak(req, si, "address is not available");
        }
        let lease = Lease {
            ip,
            mac: Some(req.mac.to_string()),
            state: LeaseState::Active,
            expires_ms: now_ms + u64::from(subnet.lease_time_secs) * 1000,
            hostname: req.hostname.clone(),
            updated_ms: now_ms,
        };
        let previous = self.leases.insert(ip, lease.clone());
        self.by_mac.insert(req.mac, ip);
        self.offers.remove(&ip);
        let (fields, server_ip) = self.lease_fields(req, si, MessageType::Ack, ip);
        let to = Self::destination(req, MessageType::Ack, ip);
        Self::reply(
            req,
            fields,
            to,
            server_ip,
            DHCP_SERVER_PORT,
            Some(Commit { lease, previous }),
        )
    }

    fn decline(&mut self, req: &Request, now_ms: u64) -> Decision {
        if req.server_id.is_some_and(|s| !self.is_ours(s)) {
            return Decision::Ignore(Ignored::OtherServer);
        }
        let Some(ip) = req.requested_ip else {
            return Decision::Ignore(Ignored::NotOurs);
        };
        let owned = self.leases.get(&ip).and_then(|l| l.mac()) == Some(req.mac)
            || self.offers.get(&ip).is_some_and(|h| h.mac == req.mac);
        if !owned {
            return Decision::Ignore(Ignored::NotOurs);
        }
        let lease = Lease {
            ip,
            mac: None,
            state: LeaseState::Declined,
            expires_ms: now_ms + self.cfg.quarantine_ms,
            hostname: None,
            updated_ms: now_ms,
        };
        let previous = self.leases.insert(ip, lease.clone());
        if self.by_mac.get(&req.mac) == Some(&ip) {
            self.by_mac.remove(&req.mac);
        }
        self.offers.remove(&ip);
        Decision::Record(Commit { lease, previous })
    }

    fn release(&mut self, req: &Request, now_ms: u64) -> Decision {
        let ip = req.ciaddr();
        let Some(current) = self.leases.get(&ip) else {
            return Decision::Ignore(Ignored::NotOurs);
        };
        if current.mac() != Some(req.mac) || current.state != LeaseState::Active {
            return Decision::Ignore(Ignored::NotOurs);
        }
        let lease = Lease {
            state: LeaseState::Released,
            expires_ms: now_ms,
            updated_ms: now_ms,
            ..current.clone()
        };
        let previous = self.leases.insert(ip, lease.clone());
        Decision::Record(Commit { lease, previous })
    }

    fn inform(&mut self, req: &Request, si: usize) -> Decision {
        if req.ciaddr().is_unspecified() {
            return Decision::Ignore(Ignored::UnexpectedType);
        }
        let subnet = &self.cfg.subnets[si];
        let server_ip = self.server_ip_for(subnet);
        let mut options = Self::subnet_options(subnet, server_ip);
        let (siaddr, file) = match self.boot_info(BootClient::of(req), req.mac, server_ip) {
            Some((siaddr, file, boot)) => {
                options.extend(boot);
                (siaddr, Some(file))
            }
            None => (Ipv4Addr::UNSPECIFIED, None),
        };
        let fields = ReplyFields {
            kind: MessageType::Ack,
            yiaddr: Ipv4Addr::UNSPECIFIED,
            siaddr,
            file,
            options,
        };
        let to = Self::destination(req, MessageType::Ack, Ipv4Addr::UNSPECIFIED);
        Self::reply(req, fields, to, server_ip, DHCP_SERVER_PORT, None)
    }
}

#[cfg(test)]
mod tests;
