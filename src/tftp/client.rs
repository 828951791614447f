//! A minimal TFTP read client with RFC 7440 windows.
//!
//! The server's tests and benchmark need a client that negotiates windowsize, which
//! tftp-hpa and curl do not; an operator's self-check ("can this appliance serve its
//! boot loader?") needs the same. It reads one file into any `Write` and reports what
//! was negotiated.

use std::io::Write;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::time::Duration;

use tokio::net::UdpSocket;

use super::packet::{ErrorCode, Mode, Packet, Request, TftpOption};
use super::transfer::wire_block_number;

/// What the client asks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReadOptions {
    /// Block size to ask for (RFC 2348); None sends no blksize option.
    pub block_size: Option<u16>,
    /// Window size to ask for (RFC 7440); None sends no windowsize option.
    pub window_size: Option<u16>,
    /// Whether to ask for the transfer size (RFC 2349).
    pub transfer_size: bool,
    /// How long to wait for the server before sending again.
    pub timeout: Duration,
    /// How many times to send again before giving up.
    pub retries: u32,
}

impl Default for ReadOptions {
    fn default() -> Self {
        Self {
            block_size: None,
            window_size: None,
            transfer_size: true,
            timeout: Duration::from_secs(1),
            retries: 5,
        }
    }
}

/// What a completed read negotiated and moved.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReadSummary {
    /// Bytes written to the sink.
    pub bytes: u64,
    /// DATA blocks received in order.
    pub(crate) blocks: u64,
    /// Options the server acknowledged (empty: no OACK, RFC 1350 defaults).
    pub(crate) option_ack: Vec<TftpOption>,
    /// Block size in use.
    pub block_size: u16,
    /// Window size in use.
    pub window_size: u16,
    /// File size the server announced with tsize, if it did.
    pub transfer_size: Option<u64>,
}

/// Why a read failed.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// A socket or sink operation failed.
    #[error("I/O error: {0}")]
    Io(#[from] std::io::Error),
    /// The server stayed silent through every retry.
    #[error("no answer from the server after {0} retries")]
    TimedOut(u32),
    /// The server sent an ERROR.
    #[error("server error {code}: {message}")]
    Server {
        /// Error code from the server.
        code: ErrorCode,
        /// Message from the server.
        message: String,
    },
    /// The server broke the protocol (bad OACK, wrong packet).
    #[error("protocol error: {0}")]
    Protocol(String),
}

/// Reads `filename` from the server at `server` into `sink`.
pub async fn read_file(
    server: SocketAddr,
    filename: &str,
    options: &ReadOptions,
    sink: &mut impl Write,
) -> Result<ReadSummary, ClientError> {
    let local_ip = match server.ip() {
        IpAddr::V4(ip) if ip.is_loopback() => IpAddr::V4(Ipv4Addr::LOCALHOST),
        IpAddr::V4(_) => IpAddr::V4(Ipv4Addr::UNSPECIFIED),
        IpAddr::V6(ip) if ip.is_loopback() => IpAddr::V6(Ipv6Addr::LOCALHOST),
        IpAddr::V6(_) => IpAddr::V6(Ipv6Addr::UNSPECIFIED),
    };
    let socket = UdpSocket::bind(SocketAddr::new(local_ip, 0)).await?;
    let mut requested = Vec::new();
    if let Some(block_size) = options.block_size {
        requested.push(TftpOption::new("blksize", block_size.to_string()));
    }
    if let Some(window_size) = options.window_size {
        requested.push(TftpOption::new("windowsize", window_size.to_string()));
    }
    if options.transfer_size {
        requested.push(TftpOption::new("tsize", "0"));
    }
    let request = Packet::ReadRequest(Request {
        filename: filename.as_bytes().to_vec(),
        mode: Mode::Octet,
        options: requested,
    })
    .to_bytes();

    let mut summary = ReadSummary {
        bytes: 0,
        blocks: 0,
        option_ack: Vec::new(),
        block_size: 512,
        window_size: 1,
        transfer_size: None,
    };
    let mut buffer = vec![0u8; usize::from(u16::MAX)];
    // What to send when the server is silent: the request until the server answers,
    // then the last ACK.
    let mut last_sent = request;
    socket.send_to(&last_sent, server).await?;
    let mut server_tid: Option<SocketAddr> = None;
    // Highest block index received in order, and the one acknowledged last.
    let mut received_through = 0u64;
    let mut acknowledged_through = 0u64;
    let mut silent_rounds = 0u32;
    loop {
        let (len, from) =
            match tokio::time::timeout(options.timeout, socket.recv_from(&mut buffer)).await {
                Ok(received) => received?,
                Err(_elapsed) => {
                    silent_rounds += 1;
                    if silent_rounds > options.retries {
                        return Err(ClientError::TimedOut(options.retries));
                    }
                    socket
                        .send_to(&last_sent, server_tid.unwrap_or(server))
                        .await?;
                    continue;
                }
            };
        let peer = *server_tid.get_or_insert(from);
        if from != peer {
            let error = Packet::Error {
                code: ErrorCode::UNKNOWN_TRANSFER_ID,
                message: "unknown transfer ID".into(),
            };
            socket.send_to(&error.to_bytes(), from).await?;
            continue;
        }
        silent_rounds = 0;
        match Packet::parse(&buffer[..len]) {
            Ok(Packet::OptionAck { options: accepted }) if received_through == 0 => {
                apply_option_ack(&mut summary, accepted)?;
                last_sent = Packet::Ack { block: 0 }.to_bytes();
                socket.send_to(&last_sent, peer).await?;
            }
            Ok(Packet::Data { block, payload }) => {
                let expected = received_through + 1;
                if block != wire_block_number(expected) {
                    // Out of order or a duplicate: tell the server where the client is
                    // (RFC 7440), so it resends from the first missing block.
                    last_sent = Packet::Ack {
                        block: wire_block_number(received_through),
                    }
                    .to_bytes();
                    socket.send_to(&last_sent, peer).await?;
                    acknowledged_through = received_through;
                    continue;
                }
                if payload.len() > usize::from(summary.block_size) {
                    return Err(ClientError::Protocol(format!(
                        "block {expected} carries {} bytes, more than the block size {}",
                        payload.len(),
                        summary.block_size
                    )));
                }
                sink.write_all(payload)?;
                summary.bytes += payload.len() as u64;
                summary.blocks = expected;
                received_through = expected;
                let last_block = payload.len() < usize::from(summary.block_size);
                let window_full =
                    received_through - acknowledged_through >= u64::from(summary.window_size);
                if last_block || window_full {
                    last_sent = Packet::Ack {
                        block: wire_block_number(received_through),
                    }
                    .to_bytes();
                    socket.send_to(&last_sent, peer).await?;
                    acknowledged_through = received_through;
                }
                if last_block {
                    return Ok(summary);
                }
            }
            Ok(Packet::Error { code, message }) => {
                return Err(ClientError::Server { code, message });
            }
            Ok(other) => {
                return Err(ClientError::Protocol(format!(
                    "unexpected packet {other:?}"
                )));
            }
            Err(error) => return Err(ClientError::Protocol(error.to_string())),
        }
    }
}

/// Takes the server's OACK values into the summary, refusing values a server may not
/// answer (larger than asked or out of range).
fn apply_option_ack(
    summary: &mut ReadSummary,
    accepted: Vec<TftpOption>,
) -> Result<(), ClientError> {
    for option in &accepted {
        let bad =
            || ClientError::Protocol(format!("bad OACK value {}={}", option.name, option.value));
        match option.name.as_str() {
            "blksize" => summary.block_size = option.value.parse().map_err(|_| bad())?,
            "windowsize" => summary.window_size = option.value.parse().map_err(|_| bad())?,
            "tsize" => summary.transfer_size = Some(option.value.parse().map_err(|_| bad())?),
            _ => {}
        }
    }
    if summary.block_size < 8 || summary.window_size == 0 {
        return Err(ClientError::Protocol(format!("unusable OACK {accepted:?}")));
    }
    summary.option_ack = accepted;
    Ok(())
}
