//! The DHCP server of the boot network: managed DHCP (addresses and boot information) or
//! proxyDHCP (boot information beside the site's DHCP server), per boot interface.
//!
//! - [`message`]: checks and decodes requests (dhcproto), encodes replies. Never panics on input.
//! - [`pxe`]: which loader or URL a client gets, from option 93 / 60 / 77 / 175.
//! - [`engine`]: the decisions: pure, bytes and a clock in, a reply and a lease to persist out.
//! - [`lease`]: the `dhcp_leases` table.
//! - [`server`]: the thin loop around a packet socket: decide, persist through the store's writer
//!   (group commit), and only then send the ACK.

pub mod engine;
pub(crate) mod lease;
pub mod message;
pub mod probe;
pub mod pxe;
pub(crate) mod server;

use std::fmt::Write;
use std::sync::atomic::{AtomicU64, Ordering};

pub(crate) use server::bind_all;

/// What can stop a boot interface's server from starting.
#[derive(Debug, thiserror::Error)]
pub enum DhcpError {
    #[error(transparent)]
    Interface(#[from] crate::net::InterfaceError),
    #[error(
        "boot interface {name:?} has no IPv4 address: give it one (the server identifier and next-server) with `ip addr add`"
    )]
    NoAddress { name: String },
    #[error(
        "cannot open a raw packet socket on {name:?}: {source} (rackbox needs CAP_NET_RAW for network boot)"
    )]
    Socket {
        name: String,
        #[source]
        source: std::io::Error,
    },
    #[error(
        "cannot bind UDP port {port} on {name:?}: {source} (CAP_NET_BIND_SERVICE is needed; is another DHCP server bound to this interface?)"
    )]
    Port {
        name: String,
        port: u16,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot load the DHCP leases: {0}")]
    Leases(#[from] crate::service::ServiceError),
}

/// Counters of the DHCP servers (all interfaces together), for /metrics.
#[derive(Debug, Default)]
pub struct DhcpStats {
    /// Frames the filter let through (UDP to port 67 or 4011).
    pub(crate) packets_in: AtomicU64,
    /// Frames or messages dropped as malformed (bad lengths, bogus options, not DHCP).
    pub(crate) malformed: AtomicU64,
    /// Well-formed requests not answered (other server chosen, not a boot client in proxy mode...).
    pub(crate) ignored: AtomicU64,
    pub(crate) offers: AtomicU64,
    pub(crate) acks: AtomicU64,
    pub(crate) naks: AtomicU64,
    pub(crate) declines: AtomicU64,
    pub(crate) releases: AtomicU64,
    /// DISCOVERs that found no free address.
    pub(crate) pool_exhausted: AtomicU64,
    /// Lease writes that failed (the reply was not sent).
    pub(crate) persist_failures: AtomicU64,
    /// Replies that could not be sent.
    pub(crate) send_failures: AtomicU64,
    /// Leases held right now (a gauge).
    pub active_leases: AtomicU64,
}

impl DhcpStats {
    /// Appends the counters in Prometheus text format.
    pub(crate) fn render_prometheus(&self, out: &mut String) {
        let counters: [(&str, &str, &AtomicU64); 11] = [
            (
                "packets_in",
                "UDP frames to port 67/4011 received on boot interfaces.",
                &self.packets_in,
            ),
            (
                "malformed",
                "Frames or DHCP messages dropped as malformed.",
                &self.malformed,
            ),
            (
                "ignored",
                "Well-formed requests not answered.",
                &self.ignored,
            ),
            ("offers", "DHCPOFFERs sent.", &self.offers),
            (
                "acks",
                "DHCPACKs sent (each after its lease was durable).",
                &self.acks,
            ),
            ("naks", "DHCPNAKs sent.", &self.naks),
            (
                "declines",
                "DHCPDECLINEs recorded (address quarantined).",
                &self.declines,
            ),
            ("releases", "DHCPRELEASEs recorded.", &self.releases),
            (
                "pool_exhausted",
                "DISCOVERs that found no free address.",
                &self.pool_exhausted,
            ),
            (
                "persist_failures",
                "Lease writes that failed; the reply was withheld.",
                &self.persist_failures,
            ),
            (
                "send_failures",
                "Replies that could not be sent.",
                &self.send_failures,
            ),
        ];
        for (name, help, value) in counters {
            let _ = writeln!(
                out,
                "# HELP rackbox_dhcp_{name}_total {help}\n# TYPE rackbox_dhcp_{name}_total counter\nrackbox_dhcp_{name}_total {}",
                value.load(Ordering::Relaxed)
            );
        }
        let _ = writeln!(
            out,
            "# HELP rackbox_dhcp_active_leases Leases held by clients now.\n# TYPE rackbox_dhcp_active_leases gauge\nrackbox_dhcp_active_leases {}",
            self.active_leases.load(Ordering::Relaxed)
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_every_counter() {
        let s = DhcpStats::default();
        s.naks.fetch_add(3, Ordering::Relaxed);
        let mut out = String::new();
        s.render_prometheus(&mut out);
        assert!(out.contains("rackbox_dhcp_naks_total 3\n"), "{out}");
        assert!(out.contains("rackbox_dhcp_active_leases 0\n"), "{out}");
        assert_eq!(out.matches("# TYPE").count(), 12);
    }
}
