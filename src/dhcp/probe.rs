//! The foreign-DHCP probe: does some other DHCP server already answer on an interface?
//!
//! Two DHCP servers on one network hand out conflicting addresses and boot files, and the
//! machines follow whichever answers first: the classic way to take down a site's network by
//! plugging in a provisioning box. So before rackbox becomes the managed DHCP server of an
//! interface (the first-boot setup asks), it broadcasts a DHCPDISCOVER there, as a client would,
//! and listens for offers. Any offer means "use proxy mode, or switch the other server off".
//!
//! The discover goes out from the interface's own MAC with the broadcast flag, twice (a server
//! may drop the first while it pings the address it offers); the probe never requests, so no
//! server commits a lease to it. Frames are read on a packet socket filtered to port 68, so a
//! DHCP client or rackbox's own server on the same box are not disturbed, and rackbox's own
//! answers are not counted (the filter drops frames this host sends).

use std::net::Ipv4Addr;
use std::time::Duration;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::message::{self, Offer};
use crate::net::frame::{self, Outbound};
use crate::net::socket::{DHCP_CLIENT_PORT, DHCP_SERVER_PORT, Listen, PacketSocket};
use crate::net::{InterfaceError, Mac, interface_info};

/// How long the probe listens by default. Servers that ping an address before offering it
/// (dnsmasq waits up to 3 s for an echo) answer late; five seconds leave room for them.
pub const DEFAULT_WAIT: Duration = Duration::from_secs(5);

/// The longest a probe may be asked to listen.
pub const MAX_WAIT_SECS: u64 = 30;

/// A request to probe an interface (`POST /api/v1/network/dhcp-probe`).
#[derive(Clone, Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ProbeRequest {
    /// The interface to probe, e.g. "eth1".
    pub interface: String,
    /// How long to listen for offers, 1 to 30 s (default 5).
    #[serde(default)]
    #[schemars(range(min = 1, max = 30))]
    pub wait_secs: Option<u64>,
}

impl ProbeRequest {
    /// The wait asked for, or why it cannot be.
    pub fn wait(&self) -> Result<Duration, String> {
        match self.wait_secs {
            None => Ok(DEFAULT_WAIT),
            Some(s) if (1..=MAX_WAIT_SECS).contains(&s) => Ok(Duration::from_secs(s)),
            Some(s) => Err(format!("wait_secs {s} must be 1 to {MAX_WAIT_SECS}")),
        }
    }
}

/// A DHCP server that answered the probe.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, JsonSchema)]
pub struct ForeignServer {
    /// Its server identifier (option 54), or the address it sent from when it gave none.
    pub server: Ipv4Addr,
    /// The MAC its offer came from (the server, or the relay in front of it).
    pub mac: String,
    /// The address it offered the probe.
    pub offered: Ipv4Addr,
}

/// What a probe found on one interface.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, JsonSchema)]
pub struct ProbeReport {
    pub interface: String,
    /// Every server that offered, once each.
    pub servers: Vec<ForeignServer>,
    /// Malformed or unrelated DHCP frames seen meanwhile (counted, not trusted).
    pub ignored: u32,
    pub waited_ms: u64,
    /// Whether managed DHCP would be safe on the interface: no server answered.
    pub clear: bool,
}

/// Why a probe could not run.
#[derive(Debug, thiserror::Error)]
pub enum ProbeError {
    #[error(transparent)]
    Interface(#[from] InterfaceError),
    #[error("cannot open a packet socket on {name}: {source} (the probe needs CAP_NET_RAW)")]
    Socket {
        name: String,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot send the probe's discover on {name}: {source}")]
    Send {
        name: String,
        #[source]
        source: std::io::Error,
    },
}

impl From<ProbeError> for crate::service::ServiceError {
    fn from(e: ProbeError) -> Self {
        use crate::service::ServiceError;
        match e {
            ProbeError::Interface(InterfaceError::NotFound { name, .. }) => {
                ServiceError::not_found("interface", &name)
            }
            other => ServiceError::Invalid(other.to_string()),
        }
    }
}

/// An interface a boot network could use (one with a MAC and an IPv4 address), with a pool
/// suggested for managed DHCP on its first address's subnet.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BootCandidate {
    pub name: String,
    pub mac: String,
    pub addresses: Vec<(Ipv4Addr, u8)>,
    /// The subnet, and the pool's first and last address.
    pub pool: (crate::net::Cidr, Ipv4Addr, Ipv4Addr),
}

/// Every interface the first-boot setup may offer for the boot network.
pub fn boot_candidates() -> Result<Vec<BootCandidate>, InterfaceError> {
    Ok(crate::net::ipv4_interfaces()?
        .into_iter()
        .filter_map(|info| {
            let (own, prefix) = *info.addresses.first()?;
            Some(BootCandidate {
                pool: suggested_pool(own, prefix)?,
                mac: info.mac.to_string(),
                name: info.name,
                addresses: info.addresses,
            })
        })
        .collect())
}

/// The subnet of `own`/`prefix` and the upper half of its hosts as a pool, leaving out `own`
/// (so the appliance never hands out its own address). None for subnets too small to share.
pub fn suggested_pool(own: Ipv4Addr, prefix: u8) -> Option<(crate::net::Cidr, Ipv4Addr, Ipv4Addr)> {
    if !(8..=29).contains(&prefix) {
        return None;
    }
    let mask = u32::MAX << (32 - prefix);
    let network = u32::from(own) & mask;
    let broadcast = network | !mask;
    let (mut start, mut end) = (network + (broadcast - network) / 2 + 1, broadcast - 1);
    let own = u32::from(own);
    if own == end {
        end -= 1;
    } else if own == start {
        start += 1;
    } else if own > start && own < end {
        // The appliance sits inside the upper half: hand out what lies above it.
        start = own + 1;
    }
    let cidr = crate::net::Cidr::new(Ipv4Addr::from(network), prefix).ok()?;
    (start <= end).then(|| (cidr, Ipv4Addr::from(start), Ipv4Addr::from(end)))
}

/// Checks a managed pool the setup was given against the interface it is for: the appliance
/// must have an address in the subnet, and none of its addresses may be in the pool.
pub fn check_managed_pool(
    interface: &str,
    cidr: &str,
    first: &str,
    last: &str,
) -> Result<(), String> {
    let info = interface_info(interface).map_err(|e| e.to_string())?;
    let cidr: crate::net::Cidr = cidr
        .trim()
        .parse()
        .map_err(|e| format!("subnet {cidr:?}: {e}"))?;
    if !info.addresses.iter().any(|(a, _)| cidr.contains(*a)) {
        return Err(format!(
            "{interface} has no address in {cidr}: the appliance must be on the subnet it serves"
        ));
    }
    let (first, last): (Ipv4Addr, Ipv4Addr) = match (first.trim().parse(), last.trim().parse()) {
        (Ok(a), Ok(b)) => (a, b),
        _ => return Err("the pool's first and last addresses must be IPv4 addresses".into()),
    };
    if let Some((own, _)) = info
        .addresses
        .iter()
        .find(|(a, _)| (first..=last).contains(a))
    {
        return Err(format!(
            "the pool {first}-{last} holds the appliance's own address {own}"
        ));
    }
    Ok(())
}

/// Takes in one received frame: the offer it carries for this probe, if it is one.
pub fn offer_in(frame_bytes: &[u8], mac: Mac, xid: u32) -> Result<ForeignServer, Ignored> {
    let datagram = frame::parse(frame_bytes).map_err(|_| Ignored)?;
    if datagram.src_port != DHCP_SERVER_PORT || datagram.dst_port != DHCP_CLIENT_PORT {
        return Err(Ignored);
    }
    let Offer {
        xid: got_xid,
        mac: for_mac,
        offered,
        server_id,
    } = message::decode_offer(datagram.payload).map_err(|_| Ignored)?;
    if got_xid != xid || for_mac != mac {
        return Err(Ignored);
    }
    Ok(ForeignServer {
        server: server_id.unwrap_or(datagram.src_ip),
        mac: datagram.src_mac.to_string(),
        offered,
    })
}

/// A frame that is not an offer for this probe.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Ignored;

/// Broadcasts a discover on `interface` and collects the offers that arrive within `wait`.
pub async fn probe(interface: &str, wait: Duration) -> Result<ProbeReport, ProbeError> {
    let info = interface_info(interface)?;
    let socket =
        PacketSocket::open(info.index, Listen::Client).map_err(|source| ProbeError::Socket {
            name: interface.to_string(),
            source,
        })?;
    let xid: u32 = rand::random();
    let payload = message::encode_discover(info.mac, xid).unwrap_or_default();
    let discover = frame::build(&Outbound {
        src_mac: info.mac,
        dst_mac: Mac([0xff; 6]),
        src_ip: Ipv4Addr::UNSPECIFIED,
        dst_ip: Ipv4Addr::BROADCAST,
        src_port: DHCP_CLIENT_PORT,
        dst_port: DHCP_SERVER_PORT,
        payload: &payload,
    })
    .unwrap_or_default();
    let send = |why: std::io::Error| ProbeError::Send {
        name: interface.to_string(),
        source: why,
    };
    socket.send(&discover).await.map_err(send)?;
    let started = tokio::time::Instant::now();
    let deadline = started + wait;
    let resend_at = started + wait / 3;
    let mut resent = false;
    let mut servers: Vec<ForeignServer> = Vec::new();
    let mut ignored = 0;
    let mut buf = vec![0u8; 2048];
    loop {
        let until = if resent { deadline } else { resend_at };
        match tokio::time::timeout_at(until, socket.recv(&mut buf)).await {
            Ok(Ok(n)) => match offer_in(&buf[..n], info.mac, xid) {
                Ok(server) if !servers.iter().any(|s| s.server == server.server) => {
                    tracing::warn!(interface, server = %server.server, offered = %server.offered, "a DHCP server already answers on this interface");
                    servers.push(server);
                }
                Ok(_) => {}
                Err(Ignored) => ignored += 1,
            },
            Ok(Err(error)) => {
                tracing::warn!(interface, %error, "the DHCP probe could not read a frame");
            }
            Err(_elapsed) if !resent => {
                socket.send(&discover).await.map_err(send)?;
                resent = true;
            }
            Err(_elapsed) => break,
        }
    }
    Ok(ProbeReport {
        interface: interface.to_string(),
        clear: servers.is_empty(),
        servers,
        ignored,
        waited_ms: u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use dhcproto::v4::{DhcpOption, Message, MessageType, Opcode};
    use dhcproto::{Encodable, Encoder};

    const MAC: Mac = Mac([2, 0, 0, 0, 0, 9]);

    fn offer(xid: u32, kind: MessageType, server: Option<Ipv4Addr>) -> Vec<u8> {
        let mut msg = Message::default();
        msg.set_opcode(Opcode::BootReply)
            .set_xid(xid)
            .set_yiaddr(Ipv4Addr::new(192, 0, 2, 50))
            .set_chaddr(&MAC.0);
        msg.opts_mut().insert(DhcpOption::MessageType(kind));
        if let Some(ip) = server {
            msg.opts_mut().insert(DhcpOption::ServerIdentifier(ip));
        }
        let mut payload = Vec::new();
        msg.encode(&mut Encoder::new(&mut payload))
            .expect("encodes");
        frame::build(&Outbound {
            src_mac: Mac([2, 0, 0, 0, 0, 1]),
            dst_mac: Mac([0xff; 6]),
            src_ip: Ipv4Addr::new(192, 0, 2, 1),
            dst_ip: Ipv4Addr::BROADCAST,
            src_port: DHCP_SERVER_PORT,
            dst_port: DHCP_CLIENT_PORT,
            payload: &payload,
        })
        .expect("fits")
    }

    #[test]
    fn an_offer_for_the_probe_names_its_server() {
        let server = Some(Ipv4Addr::new(192, 0, 2, 254));
        let found = offer_in(&offer(7, MessageType::Offer, server), MAC, 7).expect("an offer");
        assert_eq!(found.server, Ipv4Addr::new(192, 0, 2, 254));
        assert_eq!(found.offered, Ipv4Addr::new(192, 0, 2, 50));
        assert_eq!(found.mac, "02:00:00:00:00:01");
        // Without option 54, the address it came from.
        let found = offer_in(&offer(7, MessageType::Offer, None), MAC, 7).expect("an offer");
        assert_eq!(found.server, Ipv4Addr::new(192, 0, 2, 1));
    }

    #[test]
    fn other_transactions_acks_and_garbage_are_ignored() {
        assert_eq!(
            offer_in(&offer(8, MessageType::Offer, None), MAC, 7),
            Err(Ignored)
        );
        assert_eq!(
            offer_in(&offer(7, MessageType::Ack, None), MAC, 7),
            Err(Ignored)
        );
        let mut cut = offer(7, MessageType::Offer, None);
        cut.truncate(100);
        assert_eq!(offer_in(&cut, MAC, 7), Err(Ignored));
        assert_eq!(offer_in(&[0u8; 3], MAC, 7), Err(Ignored));
    }

    #[test]
    fn the_suggested_pool_is_the_upper_half_without_the_appliance() {
        let ip = |s: &str| s.parse::<Ipv4Addr>().expect("an address");
        let (cidr, start, end) = suggested_pool(ip("192.0.2.1"), 24).expect("a pool");
        assert_eq!(
            (cidr.to_string(), start, end),
            ("192.0.2.0/24".into(), ip("192.0.2.128"), ip("192.0.2.254"))
        );
        let (_, start, end) = suggested_pool(ip("192.0.2.254"), 24).expect("a pool");
        assert_eq!((start, end), (ip("192.0.2.128"), ip("192.0.2.253")));
        let (_, start, _) = suggested_pool(ip("192.0.2.200"), 24).expect("a pool");
        assert_eq!(start, ip("192.0.2.201"));
        assert!(suggested_pool(ip("192.0.2.1"), 31).is_none());
    }

    #[test]
    fn the_discover_is_a_broadcast_request_the_server_side_decodes() {
        let bytes = message::encode_discover(MAC, 42).expect("encodes");
        let request = message::decode(&bytes).expect("a request");
        assert_eq!(request.kind, MessageType::Discover);
        assert_eq!(request.mac, MAC);
        assert_eq!(request.xid(), 42);
        assert!(request.broadcast());
    }
}
