//! Counters of the TFTP server, shared with the daemon's metrics endpoint.
//!
//! Plain atomics rather than a metrics crate: the daemon renders them in the Prometheus
//! text format itself, and relaxed increments cost nothing on the data path.

use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, Ordering};

/// Counters since the server started. Every field only grows.
#[derive(Debug, Default)]
pub struct TftpStats {
    /// Read transfers that got a slot and a socket.
    pub transfers_started: AtomicU64,
    /// Transfers whose last block was acknowledged.
    pub transfers_completed: AtomicU64,
    /// Transfers that ended on a timeout, an I/O error or a protocol error by the peer.
    pub transfers_failed: AtomicU64,
    /// Transfers the client ended with an ERROR packet (firmware tsize probes included).
    pub client_aborts: AtomicU64,
    /// Payload bytes of DATA packets sent, retransmissions included.
    pub(crate) bytes_sent: AtomicU64,
    /// DATA or OACK packets sent again after a timeout or a client's gap report.
    pub retransmissions: AtomicU64,
    /// ERROR packets the server sent.
    pub(crate) errors_sent: AtomicU64,
    /// Requests refused because the path escapes the root (`..`, absolute, symlink out).
    pub refused_paths: AtomicU64,
    /// Requests for files that do not exist, are not regular files or cannot be read.
    pub files_not_found: AtomicU64,
    /// Requests refused because every transfer slot was taken.
    pub busy_refusals: AtomicU64,
    /// Write requests, always refused: the server is read-only.
    pub write_refusals: AtomicU64,
    /// Requests in a mode other than octet (netascii, mail), refused.
    pub mode_refusals: AtomicU64,
    /// Datagrams that are not valid TFTP, or not valid at that point of a transfer.
    pub malformed_packets: AtomicU64,
}

impl TftpStats {
    /// Adds one to a counter.
    pub(crate) fn bump(counter: &AtomicU64) {
        counter.fetch_add(1, Ordering::Relaxed);
    }

    /// Adds `amount` to a counter.
    pub(crate) fn add(counter: &AtomicU64, amount: u64) {
        counter.fetch_add(amount, Ordering::Relaxed);
    }

    /// Reads a counter (for tests and the metrics endpoint).
    pub fn get(counter: &AtomicU64) -> u64 {
        counter.load(Ordering::Relaxed)
    }

    /// Appends the counters in the Prometheus text exposition format.
    pub fn render_prometheus(&self, out: &mut String) {
        let get = |counter: &AtomicU64| counter.load(Ordering::Relaxed);
        let mut family = |name: &str, help: &str, kind: &str, samples: &[(&str, u64)]| {
            // Writing to a String cannot fail.
            let _ = writeln!(out, "# HELP {name} {help}");
            let _ = writeln!(out, "# TYPE {name} {kind}");
            for (labels, value) in samples {
                let _ = writeln!(out, "{name}{labels} {value}");
            }
        };
        family(
            "rackbox_tftp_transfers_started_total",
            "TFTP read transfers started.",
            "counter",
            &[("", get(&self.transfers_started))],
        );
        family(
            "rackbox_tftp_transfers_total",
            "TFTP read transfers ended, by outcome.",
            "counter",
            &[
                ("{outcome=\"completed\"}", get(&self.transfers_completed)),
                ("{outcome=\"failed\"}", get(&self.transfers_failed)),
                ("{outcome=\"client_abort\"}", get(&self.client_aborts)),
            ],
        );
        family(
            "rackbox_tftp_bytes_sent_total",
            "TFTP DATA payload bytes sent, retransmissions included.",
            "counter",
            &[("", get(&self.bytes_sent))],
        );
        family(
            "rackbox_tftp_retransmissions_total",
            "TFTP DATA and OACK packets sent again.",
            "counter",
            &[("", get(&self.retransmissions))],
        );
        family(
            "rackbox_tftp_errors_sent_total",
            "TFTP ERROR packets sent to clients.",
            "counter",
            &[("", get(&self.errors_sent))],
        );
        family(
            "rackbox_tftp_requests_refused_total",
            "TFTP requests refused, by reason.",
            "counter",
            &[
                ("{reason=\"path\"}", get(&self.refused_paths)),
                ("{reason=\"not_found\"}", get(&self.files_not_found)),
                ("{reason=\"busy\"}", get(&self.busy_refusals)),
                ("{reason=\"write\"}", get(&self.write_refusals)),
                ("{reason=\"mode\"}", get(&self.mode_refusals)),
            ],
        );
        family(
            "rackbox_tftp_malformed_packets_total",
            "Datagrams that were not valid TFTP where they arrived.",
            "counter",
            &[("", get(&self.malformed_packets))],
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_every_counter_in_prometheus_text_format() {
        let stats = TftpStats::default();
        TftpStats::bump(&stats.transfers_started);
        TftpStats::add(&stats.bytes_sent, 1468);
        TftpStats::bump(&stats.refused_paths);
        let mut out = String::new();
        stats.render_prometheus(&mut out);
        assert!(out.contains("# TYPE rackbox_tftp_transfers_total counter\n"));
        assert!(out.contains("rackbox_tftp_transfers_started_total 1\n"));
        assert!(out.contains("rackbox_tftp_transfers_total{outcome=\"completed\"} 0\n"));
        assert!(out.contains("rackbox_tftp_bytes_sent_total 1468\n"));
        assert!(out.contains("rackbox_tftp_requests_refused_total{reason=\"path\"} 1\n"));
        assert!(out.contains("rackbox_tftp_malformed_packets_total 0\n"));
        // Every sample line is "name[{labels}] value".
        for line in out.lines().filter(|l| !l.starts_with('#')) {
            let (name, value) = line.rsplit_once(' ').unwrap();
            assert!(name.starts_with("rackbox_tftp_"), "{line}");
            value.parse::<u64>().unwrap();
        }
    }
}
