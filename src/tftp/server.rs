//! The tokio socket loops: a listener on the request port and one task per transfer.
//!
//! Thin on purpose: decisions live in the pure modules (packet, options, transfer,
//! path); this file moves bytes between them and the sockets, and counts.

use std::fs::File;
use std::future::Future;
use std::io;
use std::net::{IpAddr, SocketAddr};
use std::os::unix::fs::FileExt;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::UdpSocket;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio::task::JoinSet;
use tokio::time::Instant;
use tracing::{Instrument, debug, info, info_span, warn};

use super::options::{MAX_BLOCK_SIZE, MIN_BLOCK_SIZE, NegotiationLimits, negotiate};
use super::packet::{ErrorCode, Mode, Packet, PacketError, Request, data_header};
use super::path::{PathRefusal, open_under_root};
use super::stats::TftpStats;
use super::transfer::{ReadTransfer, Step, wire_block_number};
use super::{TftpConfig, TftpError};

/// Receive buffer of the request socket: requests with options fit easily; anything
/// longer is truncated by the kernel and then fails to parse, as it should.
const REQUEST_BUFFER_LEN: usize = 4096;
/// Receive buffer of a transfer socket: ACKs are 4 bytes, ERROR messages are short.
const TRANSFER_BUFFER_LEN: usize = 2048;
/// Bytes of file read from disk in one go per transfer: big enough to feed a whole
/// window from one blocking read, small enough that max_transfers of them stay modest.
const READ_AHEAD_BYTES: u64 = 128 * 1024;
/// Request-socket receive failures in a row after which the server gives up: a single
/// failure is a stray ICMP report, an endless run is a broken socket.
const MAX_CONSECUTIVE_SOCKET_ERRORS: u32 = 100;

/// What every transfer task needs to know, shared read-only.
#[derive(Debug)]
struct TransferSettings {
    /// Canonical root directory: path checks compare canonical paths against it.
    root: PathBuf,
    /// IP the listener is bound to; transfer sockets bind it too.
    local_ip: IpAddr,
    /// Limits for option negotiation.
    limits: NegotiationLimits,
    /// Retransmission timeout unless the client negotiates one.
    timeout: Duration,
    /// Retransmissions in a row before a transfer is abandoned.
    retries: u32,
    /// Time without progress after which a transfer is abandoned.
    stall_limit: Duration,
    /// Told of every transfer's end (the daemon's boot timeline), if set.
    observer: Option<Observer>,
}

/// A bound TFTP server, not yet serving. Splitting `bind` from `run` lets the caller
/// learn the bound address (port 0 in tests) before requests flow.
#[derive(Debug)]
pub struct TftpServer {
    /// Socket on the well-known port that receives RRQ/WRQ.
    listener: UdpSocket,
    /// Where `listener` is bound, port resolved.
    local_addr: SocketAddr,
    /// Settings handed to every transfer.
    settings: Arc<TransferSettings>,
    /// Counters shared with the daemon.
    stats: Arc<TftpStats>,
    /// One permit per running transfer: bounds sockets, file handles and memory.
    transfer_slots: Arc<Semaphore>,
}

impl TftpServer {
    /// Checks the configuration, resolves the root and binds the request socket.
    pub async fn bind(config: TftpConfig, stats: Arc<TftpStats>) -> Result<Self, TftpError> {
        validate(&config)?;
        let root = tokio::fs::canonicalize(&config.root)
            .await
            .map_err(|source| TftpError::Root {
                path: config.root.clone(),
                source,
            })?;
        let root_metadata = tokio::fs::metadata(&root)
            .await
            .map_err(|source| TftpError::Root {
                path: config.root.clone(),
                source,
            })?;
        if !root_metadata.is_dir() {
            return Err(TftpError::Root {
                path: config.root.clone(),
                source: io::Error::new(io::ErrorKind::NotADirectory, "not a directory"),
            });
        }
        let listener = UdpSocket::bind(config.listen)
            .await
            .map_err(|source| TftpError::Bind {
                addr: config.listen,
                source,
            })?;
        let local_addr = listener.local_addr().map_err(|source| TftpError::Bind {
            addr: config.listen,
            source,
        })?;
        info!(%local_addr, root = %root.display(), "TFTP server bound");
        Ok(Self {
            listener,
            local_addr,
            settings: Arc::new(TransferSettings {
                root,
                local_ip: local_addr.ip(),
                limits: NegotiationLimits {
                    max_block_size: config.max_blksize,
                    max_window_size: config.max_windowsize,
                    max_timeout_secs: config.max_client_timeout.as_secs().min(255) as u8,
                },
                timeout: config.timeout,
                retries: config.retries,
                stall_limit: config.stall_limit,
                observer: None,
            }),
            stats,
            transfer_slots: Arc::new(Semaphore::new(config.max_transfers)),
        })
    }

    /// Tells `observer` of every transfer's end (before `run`): what the daemon files in each
    /// machine's boot timeline. The server itself stays unaware of machines.
    pub fn with_observer(mut self, observer: TransferObserver) -> Self {
        if let Some(settings) = Arc::get_mut(&mut self.settings) {
            settings.observer = Some(Observer(observer));
        }
        self
    }

    /// The address the request socket is bound to.
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// Serves requests until `shutdown` completes, then aborts running transfers
    /// (firmware simply asks again once a server is back) and returns.
    pub async fn run(self, shutdown: impl Future<Output = ()>) -> Result<(), TftpError> {
        let mut transfers = JoinSet::new();
        let mut buffer = vec![0u8; REQUEST_BUFFER_LEN];
        let mut consecutive_errors = 0u32;
        tokio::pin!(shutdown);
        let result = loop {
            tokio::select! {
                () = &mut shutdown => break Ok(()),
                Some(joined) = transfers.join_next(), if !transfers.is_empty() => {
                    if let Err(error) = joined {
                        warn!(%error, "TFTP transfer task ended abnormally");
                    }
                }
                received = self.listener.recv_from(&mut buffer) => match received {
                    Ok((len, peer)) => {
                        consecutive_errors = 0;
                        self.handle_datagram(&buffer[..len], peer, &mut transfers).await;
                    }
                    Err(error) => {
                        consecutive_errors += 1;
                        warn!(%error, "TFTP request socket receive failed");
                        if consecutive_errors >= MAX_CONSECUTIVE_SOCKET_ERRORS {
                            break Err(TftpError::Socket(error));
                        }
                    }
                },
            }
        };
        transfers.shutdown().await;
        info!(local_addr = %self.local_addr, "TFTP server stopped");
        result
    }

    /// Handles one datagram that arrived on the request port.
    async fn handle_datagram(&self, bytes: &[u8], peer: SocketAddr, transfers: &mut JoinSet<()>) {
        match Packet::parse(bytes) {
            Ok(Packet::ReadRequest(request)) => self.start_read(request, peer, transfers).await,
            Ok(Packet::WriteRequest(request)) => {
                TftpStats::bump(&self.stats.write_refusals);
                info!(%peer, file = %request.filename_lossy(), "TFTP write request refused");
                self.reply_error(
                    peer,
                    ErrorCode::ACCESS_VIOLATION,
                    "read-only server: writes are refused",
                )
                .await;
            }
            Ok(other) => {
                // DATA, ACK, ERROR or OACK on the request port belong to no transfer.
                // They are never answered: answering an ERROR could start an error
                // ping-pong with another server.
                TftpStats::bump(&self.stats.malformed_packets);
                debug!(%peer, packet = ?other, "TFTP non-request packet on the request port dropped");
            }
            Err(error) => {
                TftpStats::bump(&self.stats.malformed_packets);
                debug!(%peer, %error, "malformed TFTP packet on the request port");
                // Only something that claimed to be a request gets an answer: a reply to
                // arbitrary short garbage would make this port a UDP amplifier.
                if PacketError::is_request_opcode(bytes) {
                    self.reply_error(peer, ErrorCode::ILLEGAL_OPERATION, &error.to_string())
                        .await;
                }
            }
        }
    }

    /// Takes a transfer slot for a read request and spawns its task.
    ///
    /// A repeated request from a client whose transfer is running is not suppressed:
    /// firmware that aborts a tsize probe with ERROR 8 may ask again from the same port
    /// at once, and must be served then, whichever of the two packets is handled first.
    /// A true duplicate (an RRQ resent because the first answer was lost) costs one
    /// extra transfer that the client ends with ERROR 5 or lets time out.
    async fn start_read(&self, request: Request, peer: SocketAddr, transfers: &mut JoinSet<()>) {
        if request.mode != Mode::Octet {
            TftpStats::bump(&self.stats.mode_refusals);
            self.reply_error(
                peer,
                ErrorCode::NOT_DEFINED,
                "only octet (binary) mode is served",
            )
            .await;
            return;
        }
        let Ok(slot) = Arc::clone(&self.transfer_slots).try_acquire_owned() else {
            TftpStats::bump(&self.stats.busy_refusals);
            debug!(%peer, "TFTP request refused: every transfer slot is taken");
            self.reply_error(peer, ErrorCode::NOT_DEFINED, "server busy, retry later")
                .await;
            return;
        };
        let span = info_span!("tftp_read", %peer, file = %request.filename_lossy());
        let settings = Arc::clone(&self.settings);
        let stats = Arc::clone(&self.stats);
        transfers.spawn(serve_read(settings, stats, request, peer, slot).instrument(span));
    }

    /// Sends an ERROR from the request socket.
    async fn reply_error(&self, peer: SocketAddr, code: ErrorCode, message: &str) {
        send_error(&self.listener, &self.stats, peer, code, message).await;
    }
}

/// How a transfer ended, for a [`TransferObserver`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TransferEnd {
    /// The last block was acknowledged.
    Completed,
    /// The client sent an ERROR (firmware's size probe ends so).
    AbortedByClient,
    /// The client stopped acknowledging.
    TimedOut,
    /// The file is missing or may not be read.
    Refused,
    /// A protocol or read error.
    Failed,
}

/// A finished transfer, as a [`TransferObserver`] is told of it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TransferReport {
    /// The client's address and port.
    pub peer: SocketAddr,
    /// The file name it asked for, as text.
    pub file: String,
    /// The file's size (0 when refused).
    pub size: u64,
    /// Bytes the client acknowledged.
    pub bytes: u64,
    /// From the request to the end.
    pub duration: Duration,
    /// How it ended.
    pub end: TransferEnd,
}

/// Told of each transfer's end, on the transfer's task: it must not block (a push is fine).
pub type TransferObserver = Arc<dyn Fn(TransferReport) + Send + Sync>;

/// A [`TransferObserver`] in the settings (which are `Debug`; a closure is not).
struct Observer(TransferObserver);

impl std::fmt::Debug for Observer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("TransferObserver")
    }
}

impl TransferSettings {
    /// Tells the observer, if any, how a transfer ended.
    fn report(
        &self,
        request: &Request,
        peer: SocketAddr,
        size: u64,
        bytes: u64,
        began: Instant,
        end: TransferEnd,
    ) {
        if let Some(Observer(observer)) = &self.observer {
            observer(TransferReport {
                peer,
                file: request.filename_lossy(),
                size,
                bytes,
                duration: began.elapsed(),
                end,
            });
        }
    }
}

/// Refuses configurations that would break the protocol rather than failing later.
fn validate(config: &TftpConfig) -> Result<(), TftpError> {
    if config.max_transfers == 0 {
        return Err(TftpError::Config("max_transfers must be at least 1".into()));
    }
    if !(MIN_BLOCK_SIZE..=MAX_BLOCK_SIZE).contains(&config.max_blksize) {
        return Err(TftpError::Config(format!(
            "max_blksize {} is outside {MIN_BLOCK_SIZE}..={MAX_BLOCK_SIZE} (RFC 2348)",
            config.max_blksize
        )));
    }
    if config.max_windowsize == 0 {
        return Err(TftpError::Config(
            "max_windowsize must be at least 1 (RFC 7440)".into(),
        ));
    }
    if config.timeout.is_zero() {
        return Err(TftpError::Config("timeout must be more than 0".into()));
    }
    if config.max_client_timeout < Duration::from_secs(1) {
        return Err(TftpError::Config(
            "max_client_timeout must be at least 1 second (RFC 2349 timeouts are whole seconds)"
                .into(),
        ));
    }
    if config.stall_limit <= config.timeout {
        return Err(TftpError::Config(format!(
            "stall_limit ({:?}) must be longer than timeout ({:?}), or no retransmission happens",
            config.stall_limit, config.timeout
        )));
    }
    Ok(())
}

/// Sends an ERROR packet and counts it. A failed send is only logged: the peer learns
/// nothing either way, and nothing else depends on it.
async fn send_error(
    socket: &UdpSocket,
    stats: &TftpStats,
    peer: SocketAddr,
    code: ErrorCode,
    message: &str,
) {
    let packet = Packet::Error {
        code,
        message: message.to_owned(),
    }
    .to_bytes();
    match socket.send_to(&packet, peer).await {
        Ok(_) => TftpStats::bump(&stats.errors_sent),
        Err(error) => debug!(%peer, %error, "could not send TFTP ERROR"),
    }
}

/// How a transfer that got a file ended.
#[derive(Debug)]
enum Outcome {
    /// The last block was acknowledged.
    Completed,
    /// The client sent an ERROR.
    ClientAborted { code: ErrorCode, message: String },
    /// The retry budget ran out without an ACK.
    TimedOut,
    /// The client broke the protocol or the file could not be read.
    Failed(String),
}

/// One read transfer from request to its end: its own socket (a new transfer ID),
/// path checks, negotiation, then the transfer loop. The slot is released when the
/// transfer ends, before it is counted, so whoever sees the count also sees the slot.
async fn serve_read(
    settings: Arc<TransferSettings>,
    stats: Arc<TftpStats>,
    request: Request,
    client: SocketAddr,
    slot: OwnedSemaphorePermit,
) {
    let socket = match UdpSocket::bind(SocketAddr::new(settings.local_ip, 0)).await {
        Ok(socket) => socket,
        Err(error) => {
            warn!(%error, "cannot bind a TFTP transfer socket");
            return;
        }
    };
    let began = Instant::now();
    let root = settings.root.clone();
    let filename = request.filename.clone();
    let opened = tokio::task::spawn_blocking(move || open_under_root(&root, &filename)).await;
    let (file, file_size) = match opened {
        Ok(Ok(opened)) => opened,
        Ok(Err(refusal)) => {
            drop(slot);
            refuse(&socket, &stats, client, &refusal).await;
            settings.report(&request, client, 0, 0, began, TransferEnd::Refused);
            return;
        }
        Err(error) => {
            drop(slot);
            warn!(%error, "TFTP file open task failed");
            send_error(
                &socket,
                &stats,
                client,
                ErrorCode::NOT_DEFINED,
                "internal error",
            )
            .await;
            return;
        }
    };
    TftpStats::bump(&stats.transfers_started);
    let negotiated = negotiate(&request.options, file_size, settings.limits);
    let option_ack = (!negotiated.acknowledged.is_empty()).then(|| {
        Packet::OptionAck {
            options: negotiated.acknowledged.clone(),
        }
        .to_bytes()
    });
    let mut driver = TransferDriver {
        socket,
        client,
        stats: Arc::clone(&stats),
        state: ReadTransfer::new(
            file_size,
            negotiated.block_size,
            negotiated.window_size,
            option_ack.is_some(),
            settings.retries,
        ),
        blocks: BlockReader::new(file, file_size, negotiated.block_size),
        option_ack,
        timeout: negotiated.timeout.unwrap_or(settings.timeout),
        stall_limit: settings.stall_limit,
        highest_sent: 0,
        option_ack_sent: false,
        last_client_error: None,
    };
    debug!(
        file_size,
        block_size = negotiated.block_size,
        window_size = negotiated.window_size,
        "TFTP transfer starting"
    );
    let outcome = driver.run().await;
    let acknowledged = match outcome {
        Outcome::Completed => file_size,
        _ => driver
            .state
            .progress()
            .unwrap_or(0)
            .saturating_mul(u64::from(negotiated.block_size))
            .min(file_size),
    };
    drop(driver);
    drop(slot);
    let end = match &outcome {
        Outcome::Completed => TransferEnd::Completed,
        Outcome::ClientAborted { .. } => TransferEnd::AbortedByClient,
        Outcome::TimedOut => TransferEnd::TimedOut,
        Outcome::Failed(_) => TransferEnd::Failed,
    };
    settings.report(&request, client, file_size, acknowledged, began, end);
    match outcome {
        Outcome::Completed => {
            TftpStats::bump(&stats.transfers_completed);
            info!(file_size, "TFTP transfer completed");
        }
        Outcome::ClientAborted { code, message } => {
            TftpStats::bump(&stats.client_aborts);
            // Routine for firmware's tsize probe (code 8), hence not a warning.
            info!(%code, %message, "TFTP transfer ended by the client");
        }
        Outcome::TimedOut => {
            TftpStats::bump(&stats.transfers_failed);
            warn!("TFTP transfer abandoned: no acknowledgement after all retries");
        }
        Outcome::Failed(reason) => {
            TftpStats::bump(&stats.transfers_failed);
            warn!(%reason, "TFTP transfer failed");
        }
    }
}

/// Answers a refused request from the transfer socket and counts it.
async fn refuse(socket: &UdpSocket, stats: &TftpStats, client: SocketAddr, refusal: &PathRefusal) {
    let (code, message) = match refusal {
        PathRefusal::Escapes(_) => {
            TftpStats::bump(&stats.refused_paths);
            warn!(%refusal, "TFTP request refused");
            (ErrorCode::ACCESS_VIOLATION, "access violation")
        }
        PathRefusal::NotFound | PathRefusal::NotAFile => {
            TftpStats::bump(&stats.files_not_found);
            info!(%refusal, "TFTP request refused");
            (ErrorCode::FILE_NOT_FOUND, "file not found")
        }
        PathRefusal::Unreadable(_) => {
            TftpStats::bump(&stats.files_not_found);
            warn!(%refusal, "TFTP request refused");
            (ErrorCode::ACCESS_VIOLATION, "file not readable")
        }
    };
    send_error(socket, stats, client, code, message).await;
}

/// Runs one transfer's state machine against its socket, file and clock.
struct TransferDriver {
    /// This transfer's own socket: its port is the server's transfer ID.
    socket: UdpSocket,
    /// The client's address and port (its transfer ID).
    client: SocketAddr,
    /// Counters.
    stats: Arc<TftpStats>,
    /// What to send next.
    state: ReadTransfer,
    /// Where block payloads come from.
    blocks: BlockReader,
    /// Encoded OACK, if any option was accepted.
    option_ack: Option<Vec<u8>>,
    /// Retransmission timeout for this transfer.
    timeout: Duration,
    /// Time without progress after which the transfer is abandoned.
    stall_limit: Duration,
    /// Highest block index ever sent: anything at or below it sent again is a
    /// retransmission.
    highest_sent: u64,
    /// Whether the OACK went out once already.
    option_ack_sent: bool,
    /// The client's ERROR, kept for the log.
    last_client_error: Option<(ErrorCode, String)>,
}

impl TransferDriver {
    async fn run(&mut self) -> Outcome {
        let mut buffer = vec![0u8; TRANSFER_BUFFER_LEN];
        let mut packet = Vec::new();
        // `deadline` moves forward with every send; the timer does not follow it each
        // time (re-arming a timer per block costs more than the block in lock-step on a
        // fast link). It fires at an older deadline at worst, then re-arms to the current
        // one, so a retransmission still happens exactly one timeout after the last send.
        let mut deadline = Instant::now() + self.timeout;
        let timer = tokio::time::sleep_until(deadline);
        tokio::pin!(timer);
        let mut step = self.state.start();
        // When the client last came further; the stall limit counts from here.
        let mut progress = self.state.progress();
        let mut progressed_at = Instant::now();
        loop {
            match step {
                Step::SendOptionAck => {
                    if let Some(option_ack) = &self.option_ack {
                        if self.option_ack_sent {
                            TftpStats::bump(&self.stats.retransmissions);
                        }
                        self.option_ack_sent = true;
                        self.send(option_ack).await;
                    }
                    deadline = Instant::now() + self.timeout;
                }
                Step::SendData { first, last } => {
                    if let Err(error) = self.send_blocks(first, last, &mut packet).await {
                        send_error(
                            &self.socket,
                            &self.stats,
                            self.client,
                            ErrorCode::NOT_DEFINED,
                            "file read error",
                        )
                        .await;
                        return Outcome::Failed(format!("reading the file: {error}"));
                    }
                    deadline = Instant::now() + self.timeout;
                }
                Step::KeepWaiting => {}
                Step::Complete => return Outcome::Completed,
                Step::GiveUp => {
                    send_error(
                        &self.socket,
                        &self.stats,
                        self.client,
                        ErrorCode::NOT_DEFINED,
                        "timed out waiting for ACK",
                    )
                    .await;
                    return Outcome::TimedOut;
                }
                Step::ClientAborted => {
                    let (code, message) = self
                        .last_client_error
                        .take()
                        .unwrap_or((ErrorCode::NOT_DEFINED, String::new()));
                    return Outcome::ClientAborted { code, message };
                }
            }
            step = tokio::select! {
                received = self.socket.recv_from(&mut buffer) => match received {
                    Ok((len, from)) => match self.on_datagram(&buffer[..len], from).await {
                        Ok(step) => step,
                        Err(outcome) => return outcome,
                    },
                    // Stray ICMP reports and the like: the timeout handles a lost peer.
                    Err(error) => {
                        debug!(%error, "TFTP transfer socket receive failed");
                        Step::KeepWaiting
                    }
                },
                () = &mut timer => {
                    let now = Instant::now();
                    if self.state.progress() != progress {
                        progress = self.state.progress();
                        progressed_at = now;
                    }
                    if now.duration_since(progressed_at) >= self.stall_limit {
                        debug!(stall_limit = ?self.stall_limit, "TFTP transfer without progress");
                        Step::GiveUp
                    } else if now < deadline {
                        timer.as_mut().reset(deadline);
                        Step::KeepWaiting
                    } else {
                        timer.as_mut().reset(now + self.timeout);
                        self.state.on_timeout()
                    }
                }
            };
        }
    }

    /// Feeds one received datagram to the state machine.
    async fn on_datagram(&mut self, bytes: &[u8], from: SocketAddr) -> Result<Step, Outcome> {
        if from != self.client {
            // RFC 1350: a packet from another port is answered, the transfer goes on.
            TftpStats::bump(&self.stats.malformed_packets);
            send_error(
                &self.socket,
                &self.stats,
                from,
                ErrorCode::UNKNOWN_TRANSFER_ID,
                "unknown transfer ID",
            )
            .await;
            return Ok(Step::KeepWaiting);
        }
        match Packet::parse(bytes) {
            Ok(Packet::Ack { block }) => Ok(self.state.on_ack(block)),
            Ok(Packet::Error { code, message }) => {
                self.last_client_error = Some((code, message));
                Ok(self.state.on_client_error())
            }
            Ok(other) => {
                TftpStats::bump(&self.stats.malformed_packets);
                send_error(
                    &self.socket,
                    &self.stats,
                    self.client,
                    ErrorCode::ILLEGAL_OPERATION,
                    "expected ACK",
                )
                .await;
                Err(Outcome::Failed(format!(
                    "client sent {other:?} instead of an ACK"
                )))
            }
            Err(error) => {
                // Garbage is dropped; the retransmission timer still runs, so it can
                // neither stall nor prolong the transfer.
                TftpStats::bump(&self.stats.malformed_packets);
                debug!(%error, "malformed packet on a TFTP transfer socket ignored");
                Ok(Step::KeepWaiting)
            }
        }
    }

    /// Sends DATA blocks `first..=last`.
    async fn send_blocks(&mut self, first: u64, last: u64, packet: &mut Vec<u8>) -> io::Result<()> {
        for index in first..=last {
            let payload = self.blocks.payload(index).await?;
            packet.clear();
            packet.extend_from_slice(&data_header(wire_block_number(index)));
            packet.extend_from_slice(payload);
            let payload_len = payload.len() as u64;
            if index <= self.highest_sent {
                TftpStats::bump(&self.stats.retransmissions);
            }
            self.highest_sent = self.highest_sent.max(index);
            TftpStats::add(&self.stats.bytes_sent, payload_len);
            self.send(packet).await;
        }
        Ok(())
    }

    /// Sends one datagram to the client. A failure (a full socket buffer) is left to
    /// the retransmission timer, like a packet lost on the wire.
    async fn send(&self, packet: &[u8]) {
        if let Err(error) = self.socket.send_to(packet, self.client).await {
            debug!(%error, "TFTP send failed; the retransmission timer will retry");
        }
    }
}

/// Reads block payloads from the file a chunk at a time on a blocking thread, so the
/// file is streamed (never read whole) and the runtime never waits on the disk.
struct BlockReader {
    /// The open file, shared with the blocking reads.
    file: Arc<File>,
    /// Size at open time: the size announced in tsize and used to count blocks.
    file_size: u64,
    /// Negotiated block size in bytes.
    block_size: u64,
    /// Bytes of the file from `chunk_start` on.
    chunk: Vec<u8>,
    /// File offset of `chunk[0]`.
    chunk_start: u64,
    /// Bytes read per chunk: whole blocks, about READ_AHEAD_BYTES.
    chunk_len: u64,
}

impl BlockReader {
    fn new(file: File, file_size: u64, block_size: u16) -> Self {
        let block_size = u64::from(block_size.max(1));
        Self {
            file: Arc::new(file),
            file_size,
            block_size,
            chunk: Vec::new(),
            chunk_start: 0,
            chunk_len: (READ_AHEAD_BYTES / block_size).max(1) * block_size,
        }
    }

    /// The payload of 1-based block `index`: a full block, or the short last one.
    async fn payload(&mut self, index: u64) -> io::Result<&[u8]> {
        let start = index.saturating_sub(1).saturating_mul(self.block_size);
        if start > self.file_size {
            return Err(io::Error::other(format!(
                "block {index} is past the end of the file"
            )));
        }
        let end = start.saturating_add(self.block_size).min(self.file_size);
        let chunk_end = self.chunk_start + self.chunk.len() as u64;
        if start < self.chunk_start || end > chunk_end {
            self.load_chunk(start).await?;
        }
        let from = usize::try_from(start - self.chunk_start).map_err(io::Error::other)?;
        let to = usize::try_from(end - self.chunk_start).map_err(io::Error::other)?;
        self.chunk
            .get(from..to)
            .ok_or_else(|| io::Error::other("block outside the chunk just read"))
    }

    /// Reads the chunk that starts at byte `start`.
    async fn load_chunk(&mut self, start: u64) -> io::Result<()> {
        let len = self.chunk_len.min(self.file_size - start);
        let len = usize::try_from(len).map_err(io::Error::other)?;
        let file = Arc::clone(&self.file);
        let mut buffer = std::mem::take(&mut self.chunk);
        let buffer = tokio::task::spawn_blocking(move || {
            buffer.resize(len, 0);
            // A file that shrank since open fails here with UnexpectedEof: the transfer
            // ends with an ERROR instead of sending a size it cannot deliver.
            file.read_exact_at(&mut buffer, start).map(|()| buffer)
        })
        .await
        .map_err(io::Error::other)??;
        self.chunk = buffer;
        self.chunk_start = start;
        Ok(())
    }
}
