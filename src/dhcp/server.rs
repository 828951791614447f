//! The socket loop of one boot interface. Thin on purpose: every decision is the engine's.
//!
//! A request is decided at once (the engine is in memory); a decision that changes a lease is
//! handed to a task that writes it through the store's writer and sends the ACK only once the
//! write is durable. Many such tasks run at once, so during a storm their writes share commits
//! (group commit) instead of waiting for one fsync each. A semaphore bounds them: when it is
//! exhausted the loop stops reading and the kernel's socket buffer absorbs (or drops) the flood.

use std::net::{IpAddr, Ipv4Addr, SocketAddrV4};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use dhcproto::v4::MessageType;
use tokio::sync::Semaphore;

use super::engine::{Commit, Decision, Destination, Engine, EngineConfig, Incoming, Reply};
use super::lease::LeaseState;
use super::pxe::BootFiles;
use super::{DhcpError, DhcpStats};
use crate::config::{BootInterface, BootMode, BootSubnet, Config};
use crate::model::iprange::{IpRange, RangeKind};
use crate::model::timeline::Step;
use crate::net::frame::{self, Outbound};
use crate::net::socket::{DHCP_SERVER_PORT, Listen, PXE_PORT, PacketSocket, PortHolder};
use crate::net::{InterfaceInfo, Ipv4Range, Mac, interface_info};
use crate::service::Service;

/// At most this many lease writes (and their replies) in flight per interface.
const MAX_IN_FLIGHT: u32 = 1024;
/// How often expired offers are dropped and the active-lease gauge refreshed.
const HOUSEKEEPING: Duration = Duration::from_secs(5);

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

/// What the loop and its persist tasks share.
struct Shared {
    info: InterfaceInfo,
    engine: Mutex<Engine>,
    socket: PacketSocket,
    /// Holds port 67 on the interface and sends what the kernel must route (relays, renewals).
    port67: PortHolder,
    /// Holds port 4011 so PXE boot-server requests are not refused by the kernel.
    port4011: Option<PortHolder>,
    service: Arc<Service>,
    stats: Arc<DhcpStats>,
    /// This interface's share of the active-lease gauge.
    active: AtomicU64,
}

/// A bound boot interface, ready to [`InterfaceServer::run`].
pub(crate) struct InterfaceServer {
    shared: Arc<Shared>,
    in_flight: Arc<Semaphore>,
    /// The interface's subnets as the configuration sets them, before the API's ranges.
    configured: Vec<BootSubnet>,
}

/// The subnets with the IP ranges added through the API: dynamic ones join the subnet's pool,
/// reserved ones its reserved list.
pub(crate) fn with_api_ranges(configured: &[BootSubnet], ranges: &[IpRange]) -> Vec<BootSubnet> {
    let mut subnets = configured.to_vec();
    for subnet in &mut subnets {
        let cidr = subnet.cidr.to_string();
        for r in ranges.iter().filter(|r| r.subnet == cidr) {
            let range = Ipv4Range {
                start: r.start,
                end: r.end,
            };
            match r.kind {
                RangeKind::Dynamic => subnet.dynamic_ranges.push(range),
                RangeKind::Reserved => subnet.reserved_ranges.push(range),
            }
        }
    }
    subnets
}

/// Opens every boot interface that is not `off`. Fails (and the daemon does not start) when an
/// interface is missing, has no IPv4 address, or its sockets cannot be opened.
pub(crate) fn bind_all(
    config: &Config,
    service: &Arc<Service>,
    stats: &Arc<DhcpStats>,
) -> Result<Vec<InterfaceServer>, DhcpError> {
    let public_url = config.public_url();
    let boot = &config.boot;
    let files = BootFiles {
        bios_loader: boot.bios_loader.clone(),
        uefi_loader: boot.uefi_loader.clone(),
        arm64_loader: boot.arm64_loader.clone(),
        http_loader_base: format!("{public_url}/{}", boot.http_loader_dir.trim_matches('/'))
            .trim_end_matches('/')
            .to_string(),
        public_url,
    };
    let mut servers = Vec::new();
    for iface in boot.interfaces.iter().filter(|i| i.mode != BootMode::Off) {
        servers.push(InterfaceServer::bind(
            iface,
            files.clone(),
            boot.decline_quarantine_secs * 1000,
            boot.offer_hold_secs * 1000,
            service,
            stats,
        )?);
    }
    Ok(servers)
}

impl InterfaceServer {
    fn bind(
        iface: &BootInterface,
        files: BootFiles,
        quarantine_ms: u64,
        offer_hold_ms: u64,
        service: &Arc<Service>,
        stats: &Arc<DhcpStats>,
    ) -> Result<InterfaceServer, DhcpError> {
        let name = iface.name.clone();
        let info = interface_info(&name)?;
        if info.addresses.is_empty() {
            return Err(DhcpError::NoAddress { name });
        }
        // The subnet's own address first, so it is the server identifier there.
        let mut server_addrs: Vec<Ipv4Addr> = info
            .addresses
            .iter()
            .map(|(a, _)| *a)
            .filter(|a| iface.subnets.iter().any(|s| s.cidr.contains(*a)))
            .collect();
        for (a, _) in &info.addresses {
            if !server_addrs.contains(a) {
                server_addrs.push(*a);
            }
        }
        let cidrs: Vec<_> = iface.subnets.iter().map(|s| s.cidr).collect();
        let leases = service.leases_where(|ip| cidrs.iter().any(|c| c.contains(ip)))?;
        let engine = Engine::new(
            EngineConfig {
                mode: iface.mode,
                subnets: with_api_ranges(&iface.subnets, &service.ip_ranges()?),
                files,
                server_addrs,
                quarantine_ms,
                offer_hold_ms,
            },
            leases,
        );
        let socket =
            PacketSocket::open(info.index, Listen::Server).map_err(|source| DhcpError::Socket {
                name: name.clone(),
                source,
            })?;
        let port67 = match PortHolder::bind(&name, DHCP_SERVER_PORT) {
            Ok(p) => p,
            Err(error) => {
                tracing::warn!(interface = %name, %error, "cannot hold UDP port 67; replies to relays go from an ephemeral port");
                PortHolder::bind(&name, 0).map_err(|source| DhcpError::Port {
                    name: name.clone(),
                    port: DHCP_SERVER_PORT,
                    source,
                })?
            }
        };
        let port4011 = match PortHolder::bind(&name, PXE_PORT) {
            Ok(p) => Some(p),
            Err(error) => {
                tracing::warn!(interface = %name, %error, "cannot hold UDP port 4011; PXE boot-server requests may be refused by the kernel");
                None
            }
        };
        let active = engine.active_leases(now_ms());
        stats.active_leases.fetch_add(active, Ordering::Relaxed);
        tracing::info!(
            interface = %name,
            mode = ?iface.mode,
            addresses = ?info.addresses,
            leases = active,
            "DHCP server bound"
        );
        Ok(InterfaceServer {
            shared: Arc::new(Shared {
                info,
                engine: Mutex::new(engine),
                socket,
                port67,
                port4011,
                service: service.clone(),
                stats: stats.clone(),
                active: AtomicU64::new(active),
            }),
            in_flight: Arc::new(Semaphore::new(MAX_IN_FLIGHT as usize)),
            configured: iface.subnets.clone(),
        })
    }

    /// Takes the IP ranges as the API left them.
    fn reload_ranges(&self) {
        let ranges = match self.shared.service.ip_ranges() {
            Ok(r) => r,
            Err(error) => {
                tracing::warn!(interface = %self.shared.info.name, %error, "cannot read the IP ranges; keeping the pool as it was");
                return;
            }
        };
        let subnets = with_api_ranges(&self.configured, &ranges);
        match self.shared.engine.lock() {
            Ok(mut engine) => engine.set_subnets(subnets),
            Err(poisoned) => poisoned.into_inner().set_subnets(subnets),
        }
        tracing::info!(interface = %self.shared.info.name, ranges = ranges.len(), "DHCP pool follows the API's IP ranges");
    }

    /// Serves until `shutdown` completes, then waits for lease writes in flight (their clients
    /// get their ACKs) before returning.
    pub(crate) async fn run(self, shutdown: impl std::future::Future<Output = ()>) {
        tokio::pin!(shutdown);
        let mut buf = vec![0u8; 2048];
        let mut tick = tokio::time::interval(HOUSEKEEPING);
        let mut ranges = self.shared.service.watch_ip_ranges();
        loop {
            tokio::select! {
                _ = &mut shutdown => break,
                _ = tick.tick() => self.shared.housekeeping(),
                Ok(()) = ranges.changed() => self.reload_ranges(),
                received = self.shared.socket.recv(&mut buf) => match received {
                    Ok(n) => self.on_frame(&buf[..n.min(buf.len())]).await,
                    Err(error) => {
                        tracing::warn!(interface = %self.shared.info.name, %error, "receive failed");
                        tokio::time::sleep(Duration::from_millis(100)).await;
                    }
                },
            }
        }
        let _ = self.in_flight.acquire_many(MAX_IN_FLIGHT).await;
        tracing::info!(interface = %self.shared.info.name, "DHCP server stopped");
    }

    async fn on_frame(&self, bytes: &[u8]) {
        let shared = &self.shared;
        let stats = &shared.stats;
        stats.packets_in.fetch_add(1, Ordering::Relaxed);
        let datagram = match frame::parse(bytes) {
            Ok(d) => d,
            Err(error) => {
                stats.malformed.fetch_add(1, Ordering::Relaxed);
                tracing::debug!(interface = %shared.info.name, %error, "dropped a malformed frame");
                return;
            }
        };
        let incoming = Incoming {
            payload: datagram.payload,
            src_ip: datagram.src_ip,
            dst_ip: datagram.dst_ip,
            src_port: datagram.src_port,
            dst_port: datagram.dst_port,
        };
        let service = shared.service.clone();
        let known = move |mac: Mac| {
            service
                .machine_by_mac(&mac.to_string())
                .ok()
                .flatten()
                .is_some()
        };
        let decision = match shared.engine.lock() {
            Ok(mut engine) => engine.handle(&incoming, now_ms(), &known),
            Err(poisoned) => poisoned.into_inner().handle(&incoming, now_ms(), &known),
        };
        match decision {
            Decision::Malformed(error) => {
                stats.malformed.fetch_add(1, Ordering::Relaxed);
                tracing::debug!(interface = %shared.info.name, %error, src = %datagram.src_mac, "dropped a malformed DHCP message");
            }
            Decision::Ignore(why) => {
                stats.ignored.fetch_add(1, Ordering::Relaxed);
                tracing::trace!(interface = %shared.info.name, ?why, src = %datagram.src_mac, "request not answered");
            }
            Decision::Exhausted => {
                stats.pool_exhausted.fetch_add(1, Ordering::Relaxed);
                tracing::warn!(interface = %shared.info.name, client = %datagram.src_mac, "no free address for a DISCOVER: the dynamic range is exhausted");
            }
            Decision::Reply {
                reply,
                commit: None,
            } => shared.send(&reply).await,
            Decision::Reply {
                reply,
                commit: Some(commit),
            } => self.persist_then(commit, Some(reply)).await,
            Decision::Record(commit) => self.persist_then(commit, None).await,
        }
    }

    /// Writes `commit` in a task and sends `reply` once it is durable.
    async fn persist_then(&self, commit: Commit, reply: Option<Reply>) {
        let Ok(permit) = self.in_flight.clone().acquire_owned().await else {
            return;
        };
        let shared = self.shared.clone();
        tokio::spawn(async move {
            let _permit = permit;
            let written = shared.service.record_lease(commit.lease.clone()).await;
            match written {
                Ok(()) => {
                    match commit.lease.state {
                        LeaseState::Declined => {
                            shared.stats.declines.fetch_add(1, Ordering::Relaxed);
                            tracing::warn!(interface = %shared.info.name, ip = %commit.lease.ip, "address declined by a client (in use by something else); quarantined");
                        }
                        LeaseState::Released => {
                            shared.stats.releases.fetch_add(1, Ordering::Relaxed);
                        }
                        LeaseState::Active => {}
                    }
                    if let Some(reply) = reply {
                        shared.send(&reply).await;
                    }
                }
                Err(error) => {
                    shared
                        .stats
                        .persist_failures
                        .fetch_add(1, Ordering::Relaxed);
                    tracing::error!(interface = %shared.info.name, ip = %commit.lease.ip, %error, "lease write failed; no ACK sent");
                    match shared.engine.lock() {
                        Ok(mut engine) => engine.revert(&commit),
                        Err(poisoned) => poisoned.into_inner().revert(&commit),
                    }
                }
            }
            shared.refresh_gauge();
        });
    }
}

impl Shared {
    fn housekeeping(&self) {
        if let Ok(mut engine) = self.engine.lock() {
            engine.expire_offers(now_ms());
        }
        self.refresh_gauge();
    }

    /// Moves the global active-lease gauge by this interface's change.
    fn refresh_gauge(&self) {
        let now = match self.engine.lock() {
            Ok(engine) => engine.active_leases(now_ms()),
            Err(_) => return,
        };
        let before = self.active.swap(now, Ordering::Relaxed);
        if now >= before {
            self.stats
                .active_leases
                .fetch_add(now - before, Ordering::Relaxed);
        } else {
            self.stats
                .active_leases
                .fetch_sub(before - now, Ordering::Relaxed);
        }
    }

    async fn send(&self, reply: &Reply) {
        let result = match reply.to {
            Destination::Frame { mac, ip, port } => {
                let out = Outbound {
                    src_mac: self.info.mac,
                    dst_mac: mac,
                    src_ip: reply.from,
                    dst_ip: ip,
                    src_port: reply.from_port,
                    dst_port: port,
                    payload: &reply.payload,
                };
                match frame::build(&out) {
                    Some(frame) => self.socket.send(&frame).await.map(|_| ()),
                    None => Err(std::io::Error::other("reply too large for one frame")),
                }
            }
            Destination::Relay(giaddr) => self
                .port67
                .send_to(&reply.payload, SocketAddrV4::new(giaddr, DHCP_SERVER_PORT))
                .await
                .map(|_| ()),
            Destination::Unicast(to) => {
                let holder = match (&self.port4011, reply.from_port) {
                    (Some(p), PXE_PORT) => p,
                    _ => &self.port67,
                };
                holder.send_to(&reply.payload, to).await.map(|_| ())
            }
        };
        match result {
            Ok(()) => {
                tracing::debug!(interface = %self.info.name, kind = ?reply.kind, client = %chaddr(&reply.payload), to = ?reply.to, "DHCP reply sent");
                self.boot_step(reply);
                let counter = match reply.kind {
                    MessageType::Offer => &self.stats.offers,
                    MessageType::Ack => &self.stats.acks,
                    MessageType::Nak => &self.stats.naks,
                    _ => return,
                };
                counter.fetch_add(1, Ordering::Relaxed);
            }
            Err(error) => {
                self.stats.send_failures.fetch_add(1, Ordering::Relaxed);
                tracing::warn!(interface = %self.info.name, to = ?reply.to, %error, "cannot send a DHCP reply");
            }
        }
    }
}

impl Shared {
    /// Tells the boot timeline of a reply sent to a network-booting client (an OS's own DHCP
    /// client is no boot step). A push under a short lock: the loop does not wait on it.
    fn boot_step(&self, reply: &Reply) {
        if let Some((mac, step, starts_boot, bound)) = timeline_step(reply) {
            self.service.boot_step_dhcp(&mac, step, starts_boot, bound);
        }
    }
}

/// The boot timeline's step for a sent reply: the client's MAC, the step, whether it starts a
/// new boot, and the address an ACK leaves the client with. None for a client that does not
/// network-boot.
fn timeline_step(reply: &Reply) -> Option<(String, Step, bool, Option<IpAddr>)> {
    let seen = &reply.seen;
    if !seen.boot_client {
        return None;
    }
    let lower = |t: MessageType| format!("{t:?}").to_lowercase();
    let yiaddr = (!seen.yiaddr.is_unspecified()).then_some(seen.yiaddr);
    let bound = match reply.kind {
        MessageType::Ack => yiaddr.or((!seen.ciaddr.is_unspecified()).then_some(seen.ciaddr)),
        _ => None,
    };
    let step = Step::Dhcp {
        request: lower(seen.request),
        reply: lower(reply.kind),
        arch: seen.arch,
        vendor_class: seen
            .vendor_class
            .as_deref()
            .map(|v| String::from_utf8_lossy(v).into_owned()),
        ipxe: seen.ipxe,
        address: yiaddr,
        boot_file: seen.file.clone(),
    };
    Some((
        seen.mac.to_string(),
        step,
        seen.starts_boot,
        bound.map(IpAddr::V4),
    ))
}

/// The client's hardware address (chaddr, bytes 28..34 of a BOOTP message) as text, for logs.
fn chaddr(payload: &[u8]) -> String {
    payload
        .get(28..34)
        .map(|b| {
            b.iter()
                .map(|x| format!("{x:02x}"))
                .collect::<Vec<_>>()
                .join(":")
        })
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dhcp::engine::Seen;

    fn reply(kind: MessageType, boot_client: bool) -> Reply {
        Reply {
            kind,
            payload: Vec::new(),
            to: Destination::Relay(Ipv4Addr::new(192, 0, 2, 254)),
            from: Ipv4Addr::new(192, 0, 2, 1),
            from_port: DHCP_SERVER_PORT,
            seen: Seen {
                mac: Mac([0x52, 0x54, 0, 0, 0, 1]),
                request: MessageType::Request,
                arch: Some(0),
                vendor_class: Some(b"PXEClient:Arch:00000:UNDI:002001".to_vec()),
                ipxe: false,
                boot_client,
                starts_boot: false,
                yiaddr: Ipv4Addr::new(192, 0, 2, 10),
                ciaddr: Ipv4Addr::UNSPECIFIED,
                file: Some("undionly.kpxe".into()),
            },
        }
    }

    #[test]
    fn an_ack_to_a_boot_client_is_a_step_that_binds_its_address() {
        let (mac, step, starts, bound) =
            timeline_step(&reply(MessageType::Ack, true)).expect("a step");
        assert_eq!(mac, "52:54:00:00:00:01");
        assert!(!starts);
        assert_eq!(bound, Some(IpAddr::V4(Ipv4Addr::new(192, 0, 2, 10))));
        assert_eq!(
            step,
            Step::Dhcp {
                request: "request".into(),
                reply: "ack".into(),
                arch: Some(0),
                vendor_class: Some("PXEClient:Arch:00000:UNDI:002001".into()),
                ipxe: false,
                address: Some(Ipv4Addr::new(192, 0, 2, 10)),
                boot_file: Some("undionly.kpxe".into()),
            }
        );
        // An offer binds nothing yet; an OS's DHCP client is no boot step.
        let (_, _, _, bound) = timeline_step(&reply(MessageType::Offer, true)).expect("a step");
        assert_eq!(bound, None);
        assert!(timeline_step(&reply(MessageType::Ack, false)).is_none());
    }
}
