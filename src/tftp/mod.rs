//! Read-only TFTP server that hands iPXE boot loaders to PXE firmware.
//!
//! Firmware can only fetch its first stage over TFTP (RFC 1350 with the options of
//! RFC 2347/2348/2349/7440), so this serves the few small iPXE binaries and nothing
//! else; kernels and images go over HTTP. It is written on tokio rather than taken from
//! async-tftp because that crate runs its own executor and ignores client ERROR
//! packets, so firmware's "tsize probe, then ERROR 8" would hold a transfer slot until
//! it timed out.
//!
//! Layout, pure code first:
//! - [`packet`]: the wire format, parsing that never panics.
//! - [`options`]: option negotiation against the configured limits.
//! - [`transfer`]: one transfer's state machine (windows, wraparound, retransmission).
//! - [`path`]: mapping a requested name to a file under the root, refusing escapes.
//! - [`stats`]: counters for the metrics endpoint.
//! - [`root`]: keeping the served directory equal to an allow-list (the daemon's boot loaders).
//! - `server`: the thin tokio socket loops around all of the above.
//! - [`client`]: a small read client with windowsize, for tests, benchmarks and checks.

pub mod client;
pub mod options;
pub mod packet;
pub mod path;
pub(crate) mod root;
mod server;
pub(crate) mod stats;
pub(crate) mod transfer;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use serde::{Deserialize, Deserializer};

pub use server::{TftpServer, TransferEnd, TransferObserver, TransferReport};
pub use stats::TftpStats;

/// Configuration of the TFTP server (the `[tftp]` table of the daemon's config).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct TftpConfig {
    /// Address of the request socket. Bind the boot interface's own address on a
    /// multi-homed host: transfer sockets bind the same IP, so replies leave from the
    /// address the firmware asked (RFC 1350 transfer IDs).
    pub listen: SocketAddr,
    /// Directory served; nothing outside it is ever read.
    pub root: PathBuf,
    /// Transfers at once; requests beyond get ERROR 0 "server busy" and firmware retries.
    pub max_transfers: usize,
    /// Largest block size granted (RFC 2348). 1468 fills a 1500-byte MTU frame.
    pub max_blksize: u16,
    /// Largest window granted (RFC 7440).
    pub max_windowsize: u16,
    /// Retransmission timeout when the client does not ask for one (RFC 2349), in
    /// seconds in the config file.
    #[serde(deserialize_with = "deserialize_seconds")]
    pub timeout: Duration,
    /// Retransmissions in a row without progress before a transfer is abandoned.
    pub retries: u32,
    /// Largest retransmission timeout a client may ask for (RFC 2349), in seconds in
    /// the config file: a larger one is not acknowledged (the RFC allows only the
    /// same value or none) and the server's own timeout applies. Unbounded, 128
    /// never-acknowledged requests asking 255 s held every transfer slot for 25 minutes.
    #[serde(deserialize_with = "deserialize_seconds")]
    pub max_client_timeout: Duration,
    /// A transfer without progress (no new block acknowledged) for this long is
    /// abandoned whatever its timeouts and retries, so that requests nobody
    /// acknowledges (spoofed ones) free their slots soon. Seconds in the config file.
    #[serde(deserialize_with = "deserialize_seconds")]
    pub stall_limit: Duration,
}

impl Default for TftpConfig {
    fn default() -> Self {
        Self {
            listen: SocketAddr::from(([0, 0, 0, 0], 69)),
            root: PathBuf::from("/var/lib/rackbox/tftp"),
            max_transfers: 128,
            max_blksize: 1468,
            max_windowsize: 64,
            timeout: Duration::from_secs(2),
            retries: 5,
            max_client_timeout: Duration::from_secs(5),
            stall_limit: Duration::from_secs(15),
        }
    }
}

/// Reads a duration written as a number of seconds (integer or fractional).
fn deserialize_seconds<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Duration, D::Error> {
    let seconds = f64::deserialize(deserializer)?;
    Duration::try_from_secs_f64(seconds).map_err(serde::de::Error::custom)
}

/// Why the TFTP server cannot start or keep running.
#[derive(Debug, thiserror::Error)]
pub enum TftpError {
    /// A configuration value is out of range; the message names it and the range.
    #[error("invalid TFTP configuration: {0}")]
    Config(String),
    /// The root directory is missing or unreadable: create it or fix `tftp.root`.
    #[error("TFTP root {path} is not a usable directory: {source}")]
    Root {
        /// The configured root.
        path: PathBuf,
        /// What the file system said.
        source: std::io::Error,
    },
    /// The request socket cannot be bound: another TFTP server (tftpd-hpa, dnsmasq)
    /// may hold the port, or the address is not on this host.
    #[error("cannot bind the TFTP socket on {addr}: {source}")]
    Bind {
        /// The configured listen address.
        addr: SocketAddr,
        /// What the socket layer said.
        source: std::io::Error,
    },
    /// The request socket keeps failing: the server stops so the supervisor restarts it.
    #[error("TFTP request socket failed: {0}")]
    Socket(std::io::Error),
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn config_reads_seconds_and_fills_defaults() {
        let config: TftpConfig =
            toml::from_str("listen = \"127.0.0.1:6969\"\nroot = \"/srv/tftp\"\ntimeout = 1.5\n")
                .unwrap();
        assert_eq!(config.listen, SocketAddr::from(([127, 0, 0, 1], 6969)));
        assert_eq!(config.root, PathBuf::from("/srv/tftp"));
        assert_eq!(config.timeout, Duration::from_millis(1500));
        assert_eq!(config.max_blksize, 1468);
        assert_eq!(config.max_windowsize, 64);
    }

    #[test]
    fn config_refuses_unknown_fields_and_negative_timeouts() {
        assert!(toml::from_str::<TftpConfig>("blocksize = 1468").is_err());
        assert!(toml::from_str::<TftpConfig>("timeout = -1").is_err());
    }
}
