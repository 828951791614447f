//! A loopback relay between ipmi-rs and a BMC that refuses a downgrade from
//! IPMI 2.0 to IPMI 1.5.
//!
//! Why it exists: ipmi-rs 0.6 opens every session by asking the BMC which LAN
//! versions it has (Get Channel Authentication Capabilities) and, when the
//! answer lacks IPMI 2.0, quietly opens an IPMI 1.5 session instead, whose
//! "straight password" authentication puts the password on the wire in clear.
//! A forged answer is enough to make it do so, and nothing in ipmi-rs lets a
//! caller forbid it. So with `power_driver=LAN_2_0` the driver's datagrams
//! pass through this relay, which reads every session-less capabilities
//! answer before ipmi-rs does and drops the ones that do not offer IPMI 2.0.
//! ipmi-rs then waits in vain, and the driver reports the downgrade it refused
//! ([`DowngradeGuard::refused`]); an honest answer that follows a forged one
//! still gets through. Every other datagram passes untouched, both ways.

use std::io;
use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr, UdpSocket};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

use super::ipmi_wire;

/// How often each relay thread looks up from its socket to see if it should stop.
const STOP_CHECK: Duration = Duration::from_millis(50);

/// The largest datagram relayed: IPMI LAN packets are far smaller.
const MAX_DATAGRAM: usize = 2048;

/// A running relay; dropping it stops its two threads.
pub(crate) struct DowngradeGuard {
    /// Where ipmi-rs is pointed instead of the BMC.
    local: SocketAddr,
    /// Set when a capabilities answer without IPMI 2.0 was dropped.
    refused: Arc<AtomicBool>,
    /// What the BMC's side of the socket reported that ipmi-rs would have seen itself: an
    /// ICMP "port unreachable" (nobody there) and the like.
    failure: Arc<Mutex<Option<(io::ErrorKind, String)>>>,
    stop: Arc<AtomicBool>,
    threads: Vec<JoinHandle<()>>,
}

impl DowngradeGuard {
    /// Starts a relay to `bmc` on a loopback port of its own.
    pub(crate) fn start(bmc: SocketAddr) -> io::Result<DowngradeGuard> {
        let front = UdpSocket::bind((Ipv4Addr::LOCALHOST, 0))?;
        let back = match bmc {
            SocketAddr::V4(_) => UdpSocket::bind((Ipv4Addr::UNSPECIFIED, 0))?,
            SocketAddr::V6(_) => UdpSocket::bind((Ipv6Addr::UNSPECIFIED, 0))?,
        };
        back.connect(bmc)?;
        front.set_read_timeout(Some(STOP_CHECK))?;
        back.set_read_timeout(Some(STOP_CHECK))?;
        let local = front.local_addr()?;
        let refused = Arc::new(AtomicBool::new(false));
        let failure: Arc<Mutex<Option<(io::ErrorKind, String)>>> = Arc::new(Mutex::new(None));
        let note = {
            let failure = Arc::clone(&failure);
            move |e: &io::Error| {
                if matches!(
                    e.kind(),
                    io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                ) {
                    return;
                }
                if let Ok(mut f) = failure.lock() {
                    *f = Some((e.kind(), e.to_string()));
                }
            }
        };
        let stop = Arc::new(AtomicBool::new(false));
        // ipmi-rs's own socket, learnt from its first datagram.
        let client: Arc<Mutex<Option<SocketAddr>>> = Arc::new(Mutex::new(None));

        let to_bmc = {
            let (front, back) = (front.try_clone()?, back.try_clone()?);
            let (client, stop, note) = (Arc::clone(&client), Arc::clone(&stop), note.clone());
            std::thread::Builder::new()
                .name("ipmi-guard-out".into())
                .spawn(move || {
                    let mut buf = [0u8; MAX_DATAGRAM];
                    while !stop.load(Ordering::Relaxed) {
                        let Ok((n, from)) = front.recv_from(&mut buf) else {
                            continue;
                        };
                        // Only ipmi-rs, on this machine's loopback, talks to the front.
                        if !from.ip().is_loopback() {
                            continue;
                        }
                        if let Ok(mut c) = client.lock() {
                            *c = Some(from);
                        }
                        if let Err(e) = back.send(&buf[..n]) {
                            note(&e);
                        }
                    }
                })?
        };
        let from_bmc = {
            let (refused, stop) = (Arc::clone(&refused), Arc::clone(&stop));
            std::thread::Builder::new()
                .name("ipmi-guard-in".into())
                .spawn(move || {
                    let mut buf = [0u8; MAX_DATAGRAM];
                    while !stop.load(Ordering::Relaxed) {
                        let n = match back.recv(&mut buf) {
                            Ok(n) => n,
                            Err(e) => {
                                note(&e);
                                continue;
                            }
                        };
                        if ipmi_wire::auth_caps_offer_ipmi2(&buf[..n]) == Some(false) {
                            refused.store(true, Ordering::SeqCst);
                            continue;
                        }
                        let to = client.lock().ok().and_then(|c| *c);
                        if let Some(to) = to {
                            let _ = front.send_to(&buf[..n], to);
                        }
                    }
                })?
        };
        Ok(DowngradeGuard {
            local,
            refused,
            failure,
            stop,
            threads: vec![to_bmc, from_bmc],
        })
    }

    /// The address ipmi-rs talks to.
    pub(crate) fn local_addr(&self) -> SocketAddr {
        self.local
    }

    /// The error the BMC's side of the relay met (ICMP port unreachable...), as ipmi-rs would
    /// have met it on its own socket.
    pub(crate) fn failure(&self) -> Option<io::Error> {
        let f = self.failure.lock().ok()?.clone()?;
        Some(io::Error::new(f.0, f.1))
    }

    /// Whether the BMC (or something answering for it) offered only IPMI 1.5.
    pub(crate) fn refused(&self) -> bool {
        self.refused.load(Ordering::SeqCst)
    }
}

impl Drop for DowngradeGuard {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        for t in self.threads.drain(..) {
            let _ = t.join();
        }
    }
}
