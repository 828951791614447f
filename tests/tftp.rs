//! The TFTP server against real clients (tftp-hpa, curl) and hand-made packets, each
//! test on its own server bound to 127.0.0.1 on a free port with a temporary root.
//!
//! Every wait is bounded; nothing asserts on elapsed time. The real clients are
//! installed by scripts/deps.d/tftp.sh; a missing one fails the test with that advice.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Output;
use std::sync::Arc;
use std::sync::atomic::AtomicU64;
use std::time::Duration;

use rackbox::tftp::client::{ClientError, ReadOptions, read_file};
use rackbox::tftp::packet::{ErrorCode, Mode, Packet, Request, TftpOption};
use rackbox::tftp::{TftpConfig, TftpError, TftpServer, TftpStats};
use tokio::net::UdpSocket;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

/// Upper bound of any single wait: a packet, a client run, a counter to move.
const WAIT: Duration = Duration::from_secs(60);

/// A server running on 127.0.0.1, stopped when dropped.
struct TestServer {
    addr: SocketAddr,
    stats: Arc<TftpStats>,
    root: tempfile::TempDir,
    stop: Option<oneshot::Sender<()>>,
    task: Option<JoinHandle<Result<(), TftpError>>>,
}

impl TestServer {
    async fn start(configure: impl FnOnce(&mut TftpConfig)) -> Self {
        let root = tempfile::tempdir().expect("temporary root");
        let mut config = TftpConfig {
            listen: "127.0.0.1:0".parse().expect("address"),
            root: root.path().to_path_buf(),
            ..TftpConfig::default()
        };
        configure(&mut config);
        let stats = Arc::new(TftpStats::default());
        let server = TftpServer::bind(config, Arc::clone(&stats))
            .await
            .expect("bind the TFTP server");
        let addr = server.local_addr();
        let (stop, stopped) = oneshot::channel::<()>();
        let task = tokio::spawn(server.run(async {
            let _ = stopped.await;
        }));
        Self {
            addr,
            stats,
            root,
            stop: Some(stop),
            task: Some(task),
        }
    }

    fn port(&self) -> u16 {
        self.addr.port()
    }

    /// Writes a file under the root and returns its content.
    fn add_file(&self, name: &str, content: Vec<u8>) -> Vec<u8> {
        let path = self.root.path().join(name);
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent).expect("create directories");
        }
        std::fs::write(&path, &content).expect("write test file");
        content
    }

    /// Waits (bounded) until `counter` reaches `value`, then checks it did not pass it.
    async fn wait_for(&self, what: &str, counter: impl Fn(&TftpStats) -> &AtomicU64, value: u64) {
        let reached = tokio::time::timeout(WAIT, async {
            while TftpStats::get(counter(&self.stats)) < value {
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        })
        .await;
        let now = TftpStats::get(counter(&self.stats));
        assert!(reached.is_ok(), "{what} stayed at {now}, expected {value}");
        assert_eq!(now, value, "{what}");
    }

    async fn stop(mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(task) = self.task.take() {
            let result = tokio::time::timeout(WAIT, task)
                .await
                .expect("server stops when told to")
                .expect("server task does not panic");
            result.expect("server ends without error");
        }
    }
}

impl Drop for TestServer {
    fn drop(&mut self) {
        if let Some(task) = self.task.take() {
            task.abort();
        }
    }
}

/// Deterministic pseudo-random bytes, so a misplaced block never compares equal.
fn pattern(len: usize, seed: u64) -> Vec<u8> {
    let mut state = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    (0..len)
        .map(|_| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            (state >> 24) as u8
        })
        .collect()
}

/// Fails the test, with the fix, when a client program is not installed.
fn require_tool(tool: &str, package: &str) {
    let found = std::process::Command::new("sh")
        .arg("-c")
        .arg(format!("command -v {tool}"))
        .output()
        .map(|out| out.status.success())
        .unwrap_or(false);
    assert!(
        found,
        "`{tool}` is not installed: these tests need Debian's {package} \
         (run `source scripts/deps.d/tftp.sh` as root)"
    );
}

/// Runs a client program, bounded by WAIT.
async fn run(program: &str, args: &[&str]) -> Output {
    let child = tokio::process::Command::new(program)
        .args(args)
        .kill_on_drop(true)
        .output();
    tokio::time::timeout(WAIT, child)
        .await
        .unwrap_or_else(|_| panic!("{program} {args:?} did not finish in {WAIT:?}"))
        .unwrap_or_else(|error| panic!("cannot run {program}: {error}"))
}

fn text(output: &Output) -> String {
    format!(
        "status {:?}\nstdout: {}\nstderr: {}",
        output.status,
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    )
}

/// Downloads with tftp-hpa in binary mode into `dir`; returns the program's output.
async fn tftp_hpa_get(server: &TestServer, remote: &str, local: &Path, verbose: bool) -> Output {
    let port = server.port().to_string();
    let local = local.to_str().expect("UTF-8 temp path");
    let mut args = vec!["-m", "binary"];
    if verbose {
        args.push("-v");
    }
    args.extend(["127.0.0.1", port.as_str(), "-c", "get", remote, local]);
    run("tftp", &args).await
}

/// Downloads with curl; returns the program's output.
async fn curl_get(server: &TestServer, remote: &str, local: &Path, blksize: Option<u16>) -> Output {
    let url = format!("tftp://127.0.0.1:{}/{remote}", server.port());
    let local = local.to_str().expect("UTF-8 temp path");
    let blksize = blksize.map(|b| b.to_string());
    let mut args = vec![
        "-v",
        "--silent",
        "--show-error",
        "--max-time",
        "60",
        "-o",
        local,
    ];
    if let Some(blksize) = &blksize {
        args.extend(["--tftp-blksize", blksize.as_str()]);
    }
    args.push(url.as_str());
    run("curl", &args).await
}

/// A UDP socket on 127.0.0.1 for hand-made packets.
async fn raw_socket() -> UdpSocket {
    UdpSocket::bind("127.0.0.1:0")
        .await
        .expect("bind raw socket")
}

/// Receives one packet, bounded; returns its bytes and sender.
async fn receive(socket: &UdpSocket) -> (Vec<u8>, SocketAddr) {
    let mut buffer = vec![0u8; 70_000];
    let (len, from) = tokio::time::timeout(WAIT, socket.recv_from(&mut buffer))
        .await
        .expect("no packet from the server")
        .expect("receive");
    buffer.truncate(len);
    (buffer, from)
}

fn read_request(name: &[u8], mode: Mode, options: &[(&str, &str)]) -> Vec<u8> {
    Packet::ReadRequest(Request {
        filename: name.to_vec(),
        mode,
        options: options
            .iter()
            .map(|(n, v)| TftpOption::new(n, *v))
            .collect(),
    })
    .to_bytes()
}

fn ack(block: u16) -> Vec<u8> {
    Packet::Ack { block }.to_bytes()
}

/// Expects an ERROR packet and returns its code and message.
fn expect_error(bytes: &[u8]) -> (ErrorCode, String) {
    match Packet::parse(bytes) {
        Ok(Packet::Error { code, message }) => (code, message),
        other => panic!("expected an ERROR, got {other:?}"),
    }
}

/// Expects a DATA packet and returns its block number and payload length.
fn expect_data(bytes: &[u8]) -> (u16, usize) {
    match Packet::parse(bytes) {
        Ok(Packet::Data { block, payload }) => (block, payload.len()),
        other => panic!("expected DATA, got {other:?}"),
    }
}

fn download_dir() -> tempfile::TempDir {
    tempfile::tempdir().expect("download directory")
}

fn read_back(path: &PathBuf) -> Vec<u8> {
    std::fs::read(path).unwrap_or_else(|error| panic!("no download at {}: {error}", path.display()))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tftp_hpa_downloads_files_byte_identically() {
    require_tool("tftp", "tftp-hpa");
    let server = TestServer::start(|_| {}).await;
    let files = [
        ("small.bin", server.add_file("small.bin", pattern(1000, 1))),
        (
            "exact.bin",
            server.add_file("exact.bin", pattern(512 * 8, 2)),
        ),
        ("empty.bin", server.add_file("empty.bin", Vec::new())),
        (
            "large.bin",
            server.add_file("large.bin", pattern(3 * 1024 * 1024 + 17, 3)),
        ),
        (
            "/efi/x64/snponly.efi",
            server.add_file("efi/x64/snponly.efi", pattern(70_001, 4)),
        ),
    ];
    let downloads = download_dir();
    for (index, (remote, content)) in files.iter().enumerate() {
        let local = downloads.path().join(format!("{index}.out"));
        let output = tftp_hpa_get(&server, remote, &local, index == 0).await;
        assert!(output.status.success(), "{remote}: {}", text(&output));
        assert!(
            read_back(&local) == *content,
            "{remote} differs: {}",
            text(&output)
        );
        if index == 0 {
            let stdout = String::from_utf8_lossy(&output.stdout);
            assert!(stdout.contains("Received 1000 bytes"), "{}", text(&output));
        }
    }
    server
        .wait_for("completed transfers", |s| &s.transfers_completed, 5)
        .await;
    assert_eq!(TftpStats::get(&server.stats.transfers_failed), 0);
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tftp_hpa_rolls_block_numbers_over_past_65535() {
    require_tool("tftp", "tftp-hpa");
    let server = TestServer::start(|_| {}).await;
    // tftp-hpa sends no options, so blocks are 512 bytes: 33 MiB is 67585 blocks.
    let content = server.add_file("big.img", pattern(33 * 1024 * 1024 + 100, 5));
    let downloads = download_dir();
    let local = downloads.path().join("big.img");
    let output = tftp_hpa_get(&server, "big.img", &local, false).await;
    assert!(output.status.success(), "{}", text(&output));
    let received = read_back(&local);
    assert_eq!(received.len(), content.len());
    assert!(received == content, "content differs after rollover");
    server
        .wait_for("completed transfers", |s| &s.transfers_completed, 1)
        .await;
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn curl_negotiates_blksize_and_tsize() {
    require_tool("curl", "curl");
    let server = TestServer::start(|_| {}).await;
    let small = server.add_file("small.bin", pattern(10_000, 6));
    let multi = server.add_file("multi.bin", pattern(2 * 1024 * 1024 + 3, 7));
    let exact = server.add_file("exact.bin", pattern(1468 * 100, 8));
    let empty = server.add_file("empty.bin", Vec::new());
    let downloads = download_dir();
    // (file, content, blksize asked, blksize the server must answer)
    let cases: [(&str, &Vec<u8>, Option<u16>, u16); 6] = [
        ("small.bin", &small, Some(8), 8),
        ("multi.bin", &multi, None, 512),
        ("multi.bin", &multi, Some(1468), 1468),
        ("multi.bin", &multi, Some(65464), 1468),
        ("exact.bin", &exact, Some(1468), 1468),
        ("empty.bin", &empty, Some(1024), 1024),
    ];
    for (index, (remote, content, asked, answered)) in cases.into_iter().enumerate() {
        let local = downloads.path().join(format!("{index}.out"));
        let output = curl_get(&server, remote, &local, asked).await;
        let log = text(&output);
        assert!(output.status.success(), "{remote} blksize {asked:?}: {log}");
        assert!(read_back(&local) == *content, "{remote} differs: {log}");
        // curl always asks for tsize and logs each OACK option it gets. An empty file
        // gets none: curl takes "tsize 0" for an invalid answer.
        if content.is_empty() {
            assert!(!log.contains("got option=(tsize)"), "{log}");
        } else {
            let tsize = format!("got option=(tsize) value=({})", content.len());
            assert!(log.contains(&tsize), "no tsize in OACK: {log}");
        }
        if asked.is_some() {
            let blksize = format!("got option=(blksize) value=({answered})");
            assert!(
                log.contains(&blksize),
                "blksize {answered} not negotiated: {log}"
            );
        }
    }
    server
        .wait_for("completed transfers", |s| &s.transfers_completed, 6)
        .await;
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn windowsize_is_negotiated_and_transfers_are_correct() {
    let server = TestServer::start(|_| {}).await;
    let content = server.add_file("ipxe.efi", pattern(5 * 1024 * 1024 + 1, 9));
    // Ends exactly at a window boundary: the empty last block opens a window of its own.
    let boundary = server.add_file("boundary.bin", pattern(1468 * 64 * 3, 10));
    // (file, content, windowsize asked, windowsize the server must answer)
    let cases: [(&str, &Vec<u8>, u16, u16); 5] = [
        ("ipxe.efi", &content, 1, 1),
        ("ipxe.efi", &content, 8, 8),
        ("ipxe.efi", &content, 64, 64),
        ("ipxe.efi", &content, 1000, 64),
        ("boundary.bin", &boundary, 64, 64),
    ];
    for (remote, expected, asked, answered) in cases {
        let options = ReadOptions {
            block_size: Some(1468),
            window_size: Some(asked),
            ..ReadOptions::default()
        };
        let mut received = Vec::new();
        let summary = tokio::time::timeout(
            WAIT,
            read_file(server.addr, remote, &options, &mut received),
        )
        .await
        .expect("read finishes")
        .unwrap_or_else(|error| panic!("windowsize {asked}: {error}"));
        assert_eq!(summary.window_size, answered, "windowsize {asked}");
        assert_eq!(summary.block_size, 1468);
        assert_eq!(summary.transfer_size, Some(expected.len() as u64));
        assert!(received == *expected, "windowsize {asked}: content differs");
    }
    server
        .wait_for("completed transfers", |s| &s.transfers_completed, 5)
        .await;
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn windowsize_above_the_configured_maximum_is_clamped() {
    let server = TestServer::start(|config| config.max_windowsize = 16).await;
    let content = server.add_file("f", pattern(300_000, 11));
    let options = ReadOptions {
        window_size: Some(64),
        ..ReadOptions::default()
    };
    let mut received = Vec::new();
    let summary = tokio::time::timeout(WAIT, read_file(server.addr, "f", &options, &mut received))
        .await
        .expect("read finishes")
        .expect("read succeeds");
    assert_eq!(summary.window_size, 16);
    assert_eq!(summary.block_size, 512);
    assert!(received == content);
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_gap_in_a_window_is_resent_from_the_first_missing_block() {
    let server = TestServer::start(|_| {}).await;
    server.add_file("f", pattern(10 * 512 + 5, 12));
    let socket = raw_socket().await;
    socket
        .send_to(
            &read_request(b"f", Mode::Octet, &[("windowsize", "4")]),
            server.addr,
        )
        .await
        .expect("send RRQ");
    let (oack, peer) = receive(&socket).await;
    assert_eq!(
        Packet::parse(&oack),
        Ok(Packet::OptionAck {
            options: vec![TftpOption::new("windowsize", "4")]
        })
    );
    socket.send_to(&ack(0), peer).await.expect("send ACK 0");
    for expected in 1..=4 {
        assert_eq!(expect_data(&receive(&socket).await.0), (expected, 512));
    }
    // Pretend block 3 was lost: acknowledge 2, the last block received in order.
    socket.send_to(&ack(2), peer).await.expect("send ACK 2");
    for expected in 3..=6 {
        assert_eq!(expect_data(&receive(&socket).await.0), (expected, 512));
    }
    socket.send_to(&ack(6), peer).await.expect("send ACK 6");
    for expected in 7..=10 {
        assert_eq!(expect_data(&receive(&socket).await.0), (expected, 512));
    }
    socket.send_to(&ack(10), peer).await.expect("send ACK 10");
    assert_eq!(expect_data(&receive(&socket).await.0), (11, 5));
    socket.send_to(&ack(11), peer).await.expect("send ACK 11");
    server
        .wait_for("completed transfers", |s| &s.transfers_completed, 1)
        .await;
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn silence_gets_retransmissions_then_the_transfer_is_abandoned() {
    let server = TestServer::start(|config| {
        config.timeout = Duration::from_millis(200);
        config.retries = 2;
    })
    .await;
    server.add_file("f", pattern(2000, 13));
    let socket = raw_socket().await;
    socket
        .send_to(&read_request(b"f", Mode::Octet, &[]), server.addr)
        .await
        .expect("send RRQ");
    let (first, peer) = receive(&socket).await;
    assert_eq!(expect_data(&first), (1, 512));
    // Not acknowledged: the same block comes again.
    assert_eq!(expect_data(&receive(&socket).await.0), (1, 512));
    socket.send_to(&ack(1), peer).await.expect("send ACK 1");
    // From here on the client is silent: block 2, two retransmissions, then ERROR.
    for _ in 0..3 {
        let (packet, from) = receive(&socket).await;
        assert_eq!(from, peer);
        assert_eq!(expect_data(&packet), (2, 512));
    }
    let (code, message) = expect_error(&receive(&socket).await.0);
    assert_eq!(code, ErrorCode::NOT_DEFINED, "{message}");
    server
        .wait_for("failed transfers", |s| &s.transfers_failed, 1)
        .await;
    assert!(TftpStats::get(&server.stats.retransmissions) >= 3);
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn error_8_after_a_tsize_probe_frees_the_transfer_slot_at_once() {
    // One slot, and a timeout long enough that only an immediate release can free it.
    let server = TestServer::start(|config| {
        config.max_transfers = 1;
        config.timeout = Duration::from_secs(3600);
        config.stall_limit = Duration::from_secs(7200);
        config.retries = 5;
    })
    .await;
    let content = server.add_file("undionly.kpxe", pattern(70_000, 14));

    // Firmware's probe: RRQ with tsize, read the size from the OACK...
    let firmware = raw_socket().await;
    firmware
        .send_to(
            &read_request(b"undionly.kpxe", Mode::Octet, &[("tsize", "0")]),
            server.addr,
        )
        .await
        .expect("send probe");
    let (oack, transfer_port) = receive(&firmware).await;
    assert_eq!(
        Packet::parse(&oack),
        Ok(Packet::OptionAck {
            options: vec![TftpOption::new("tsize", "70000")]
        })
    );

    // ...while the probe holds the only slot, another request is turned away...
    let other = raw_socket().await;
    other
        .send_to(
            &read_request(b"undionly.kpxe", Mode::Octet, &[]),
            server.addr,
        )
        .await
        .expect("send second RRQ");
    let (code, message) = expect_error(&receive(&other).await.0);
    assert_eq!(
        (code, message.as_str()),
        (ErrorCode::NOT_DEFINED, "server busy, retry later")
    );
    assert_eq!(TftpStats::get(&server.stats.busy_refusals), 1);

    // ...then the firmware aborts with ERROR 8 and the slot is free again.
    let abort = Packet::Error {
        code: ErrorCode::OPTION_REFUSED,
        message: "tsize probe".into(),
    };
    firmware
        .send_to(&abort.to_bytes(), transfer_port)
        .await
        .expect("send ERROR 8");
    server
        .wait_for("client aborts", |s| &s.client_aborts, 1)
        .await;

    let mut received = Vec::new();
    let summary = tokio::time::timeout(
        WAIT,
        read_file(
            server.addr,
            "undionly.kpxe",
            &ReadOptions::default(),
            &mut received,
        ),
    )
    .await
    .expect("read finishes")
    .expect("the request after the abort is served, not refused as busy");
    assert_eq!(summary.transfer_size, Some(70_000));
    assert!(received == content);
    assert_eq!(TftpStats::get(&server.stats.busy_refusals), 1);
    assert_eq!(TftpStats::get(&server.stats.transfers_failed), 0);
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn firmware_asking_again_from_the_same_port_after_error_8_is_served() {
    let server = TestServer::start(|config| {
        config.timeout = Duration::from_secs(3600);
        config.stall_limit = Duration::from_secs(7200);
    })
    .await;
    let content = server.add_file("undionly.kpxe", pattern(700, 21));
    let firmware = raw_socket().await;
    let probe = read_request(b"undionly.kpxe", Mode::Octet, &[("tsize", "0")]);
    firmware
        .send_to(&probe, server.addr)
        .await
        .expect("send probe");
    let (oack, probe_port) = receive(&firmware).await;
    assert!(matches!(Packet::parse(&oack), Ok(Packet::OptionAck { .. })));
    let abort = Packet::Error {
        code: ErrorCode::OPTION_REFUSED,
        message: String::new(),
    };
    firmware
        .send_to(&abort.to_bytes(), probe_port)
        .await
        .expect("send ERROR 8");
    // Straight away, same source port, same request.
    firmware
        .send_to(&probe, server.addr)
        .await
        .expect("send RRQ again");
    let (oack, transfer_port) = receive(&firmware).await;
    assert_ne!(transfer_port, probe_port, "a new transfer answers");
    assert_eq!(
        Packet::parse(&oack),
        Ok(Packet::OptionAck {
            options: vec![TftpOption::new("tsize", "700")]
        })
    );
    firmware
        .send_to(&ack(0), transfer_port)
        .await
        .expect("send ACK 0");
    let mut received = Vec::new();
    for block in 1..=2u16 {
        let (packet, from) = receive(&firmware).await;
        assert_eq!(
            from, transfer_port,
            "nothing comes from the aborted transfer"
        );
        let Ok(Packet::Data {
            block: got,
            payload,
        }) = Packet::parse(&packet)
        else {
            panic!("expected DATA {block}, got {:?}", Packet::parse(&packet));
        };
        assert_eq!(got, block);
        received.extend_from_slice(payload);
        firmware
            .send_to(&ack(block), transfer_port)
            .await
            .expect("send ACK");
    }
    assert!(received == content);
    server
        .wait_for("client aborts", |s| &s.client_aborts, 1)
        .await;
    server
        .wait_for("completed transfers", |s| &s.transfers_completed, 1)
        .await;
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn path_traversal_is_refused_and_counted() {
    require_tool("tftp", "tftp-hpa");
    let server = TestServer::start(|_| {}).await;
    server.add_file("ok.bin", pattern(100, 15));
    std::fs::create_dir_all(server.root.path().join("sub")).expect("sub directory");
    let outside = tempfile::tempdir().expect("outside directory");
    std::fs::write(outside.path().join("secret"), b"secret").expect("secret file");
    std::os::unix::fs::symlink(
        outside.path().join("secret"),
        server.root.path().join("escape"),
    )
    .expect("symlink to a file outside");
    std::os::unix::fs::symlink(outside.path(), server.root.path().join("outdir"))
        .expect("symlink to a directory outside");

    let attempts: [&[u8]; 8] = [
        b"../etc/passwd",
        b"/../../etc/passwd",
        b"//etc/passwd",
        b"..\\..\\etc\\passwd",
        b"sub/../../etc/passwd",
        b"escape",
        b"outdir/secret",
        b"\\..\\escape",
    ];
    for name in attempts {
        let socket = raw_socket().await;
        socket
            .send_to(
                &read_request(name, Mode::Octet, &[("tsize", "0")]),
                server.addr,
            )
            .await
            .expect("send RRQ");
        let (code, _) = expect_error(&receive(&socket).await.0);
        assert_eq!(
            code,
            ErrorCode::ACCESS_VIOLATION,
            "{}",
            String::from_utf8_lossy(name)
        );
    }
    server
        .wait_for("refused paths", |s| &s.refused_paths, 8)
        .await;

    // A real client gets the refusal too, and writes nothing of the secret.
    let downloads = download_dir();
    let local = downloads.path().join("out");
    let output = tftp_hpa_get(&server, "escape", &local, false).await;
    let log = text(&output);
    assert!(log.to_lowercase().contains("access violation"), "{log}");
    assert!(
        std::fs::read(&local)
            .map(|bytes| bytes != b"secret")
            .unwrap_or(true)
    );
    server
        .wait_for("refused paths", |s| &s.refused_paths, 9)
        .await;

    // The legitimate file next to them is still served.
    let output = tftp_hpa_get(&server, "/ok.bin", &local, false).await;
    assert!(output.status.success(), "{}", text(&output));
    assert_eq!(read_back(&local), pattern(100, 15));
    assert_eq!(TftpStats::get(&server.stats.transfers_started), 1);
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_packets_are_counted_while_real_clients_are_served() {
    require_tool("curl", "curl");
    let server = TestServer::start(|_| {}).await;
    let content = server.add_file("snponly.efi", pattern(4 * 1024 * 1024 + 9, 16));

    // A real download runs while the request port is fed garbage.
    let downloads = download_dir();
    let during = downloads.path().join("during");
    let download = {
        let url = format!("tftp://127.0.0.1:{}/snponly.efi", server.port());
        let local = during.to_str().expect("UTF-8 path").to_owned();
        tokio::spawn(async move {
            run(
                "curl",
                &[
                    "--silent",
                    "--show-error",
                    "--max-time",
                    "60",
                    "--tftp-blksize",
                    "512",
                    "-o",
                    &local,
                    &url,
                ],
            )
            .await
        })
    };

    // Datagrams that are dropped without an answer (never worth one: amplification).
    let silent: [&[u8]; 5] = [
        b"",
        b"\x00",
        b"\x00\x09junk",
        b"\x00\x04\x00\x01",
        b"\x00\x05\x00\x08oops\x00",
    ];
    // Datagrams that claim to be requests and get ERROR 4.
    let answered: [&[u8]; 5] = [
        b"\x00\x01",
        b"\x00\x01snponly.efi",
        b"\x00\x01snponly.efi\x00octet",
        b"\x00\x01snponly.efi\x00octet\x00blksize\x00",
        b"\x00\x02x\x00octet\x00\x00\x001\x00",
    ];
    let socket = raw_socket().await;
    let rounds = 20;
    for _ in 0..rounds {
        for datagram in silent {
            socket
                .send_to(datagram, server.addr)
                .await
                .expect("send garbage");
        }
        for datagram in answered {
            socket
                .send_to(datagram, server.addr)
                .await
                .expect("send garbage");
            // The answer also proves the listener is past everything sent before.
            let (code, message) = expect_error(&receive(&socket).await.0);
            assert_eq!(code, ErrorCode::ILLEGAL_OPERATION, "{message}");
        }
    }
    let expected = (rounds * (silent.len() + answered.len())) as u64;
    assert_eq!(TftpStats::get(&server.stats.malformed_packets), expected);

    let output = tokio::time::timeout(WAIT, download)
        .await
        .expect("download during the garbage finishes")
        .expect("download task");
    assert!(output.status.success(), "{}", text(&output));
    assert!(
        read_back(&during) == content,
        "download during garbage differs"
    );

    let after = downloads.path().join("after");
    let output = curl_get(&server, "snponly.efi", &after, Some(1468)).await;
    assert!(output.status.success(), "{}", text(&output));
    assert!(
        read_back(&after) == content,
        "download after garbage differs"
    );
    server
        .wait_for("completed transfers", |s| &s.transfers_completed, 2)
        .await;
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn write_requests_are_refused() {
    require_tool("tftp", "tftp-hpa");
    let server = TestServer::start(|_| {}).await;
    let socket = raw_socket().await;
    let write = Packet::WriteRequest(Request {
        filename: b"new.bin".to_vec(),
        mode: Mode::Octet,
        options: vec![TftpOption::new("tsize", "100")],
    });
    socket
        .send_to(&write.to_bytes(), server.addr)
        .await
        .expect("send WRQ");
    let (code, _) = expect_error(&receive(&socket).await.0);
    assert_eq!(code, ErrorCode::ACCESS_VIOLATION);

    let uploads = download_dir();
    let local = uploads.path().join("upload.bin");
    std::fs::write(&local, pattern(3000, 17)).expect("file to upload");
    let port = server.port().to_string();
    let local_arg = local.to_str().expect("UTF-8 path");
    let output = run(
        "tftp",
        &[
            "-m",
            "binary",
            "127.0.0.1",
            &port,
            "-c",
            "put",
            local_arg,
            "upload.bin",
        ],
    )
    .await;
    let log = text(&output).to_lowercase();
    assert!(log.contains("read-only"), "{log}");
    server
        .wait_for("refused writes", |s| &s.write_refusals, 2)
        .await;
    let entries = std::fs::read_dir(server.root.path())
        .expect("read root")
        .count();
    assert_eq!(entries, 0, "a write request created a file");
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn missing_files_directories_and_netascii_are_refused() {
    let server = TestServer::start(|_| {}).await;
    server.add_file("dir/file", pattern(10, 18));
    let cases: [(&[u8], Mode, ErrorCode); 4] = [
        (b"nope.efi", Mode::Octet, ErrorCode::FILE_NOT_FOUND),
        (b"dir", Mode::Octet, ErrorCode::FILE_NOT_FOUND),
        (b"", Mode::Octet, ErrorCode::FILE_NOT_FOUND),
        (b"dir/file", Mode::NetAscii, ErrorCode::NOT_DEFINED),
    ];
    for (name, mode, expected) in cases {
        let socket = raw_socket().await;
        socket
            .send_to(&read_request(name, mode, &[]), server.addr)
            .await
            .expect("send RRQ");
        let (code, message) = expect_error(&receive(&socket).await.0);
        assert_eq!(
            code,
            expected,
            "{}: {message}",
            String::from_utf8_lossy(name)
        );
    }
    assert_eq!(TftpStats::get(&server.stats.mode_refusals), 1);
    server
        .wait_for("missing files", |s| &s.files_not_found, 3)
        .await;
    assert_eq!(TftpStats::get(&server.stats.transfers_started), 0);
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stranger_gets_error_5_and_the_transfer_goes_on() {
    let server = TestServer::start(|_| {}).await;
    server.add_file("f", pattern(700, 19));
    let client = raw_socket().await;
    client
        .send_to(&read_request(b"f", Mode::Octet, &[]), server.addr)
        .await
        .expect("send RRQ");
    let (first, peer) = receive(&client).await;
    assert_eq!(expect_data(&first), (1, 512));

    let stranger = raw_socket().await;
    stranger
        .send_to(&ack(1), peer)
        .await
        .expect("send stranger ACK");
    let (code, _) = expect_error(&receive(&stranger).await.0);
    assert_eq!(code, ErrorCode::UNKNOWN_TRANSFER_ID);

    client.send_to(&ack(1), peer).await.expect("send ACK 1");
    assert_eq!(expect_data(&receive(&client).await.0), (2, 188));
    client.send_to(&ack(2), peer).await.expect("send ACK 2");
    server
        .wait_for("completed transfers", |s| &s.transfers_completed, 1)
        .await;
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_transfers_are_all_served() {
    let server = TestServer::start(|config| config.max_transfers = 32).await;
    let content = Arc::new(server.add_file("ipxe.efi", pattern(1024 * 1024 + 5, 20)));
    let mut readers = tokio::task::JoinSet::new();
    for index in 0..24u16 {
        let addr = server.addr;
        let content = Arc::clone(&content);
        readers.spawn(async move {
            let options = ReadOptions {
                block_size: Some(1468),
                window_size: Some(1 + index % 16),
                ..ReadOptions::default()
            };
            let mut received = Vec::new();
            let result =
                tokio::time::timeout(WAIT, read_file(addr, "ipxe.efi", &options, &mut received))
                    .await
                    .map_err(|_| "read did not finish".to_owned())
                    .and_then(|result| result.map_err(|error: ClientError| error.to_string()));
            (result.map(|_| received == *content), index)
        });
    }
    while let Some(joined) = readers.join_next().await {
        let (result, index) = joined.expect("reader task");
        assert_eq!(result, Ok(true), "reader {index}");
    }
    server
        .wait_for("completed transfers", |s| &s.transfers_completed, 24)
        .await;
    let mut metrics = String::new();
    server.stats.render_prometheus(&mut metrics);
    assert!(
        metrics.contains("rackbox_tftp_transfers_total{outcome=\"completed\"} 24"),
        "{metrics}"
    );
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bind_refuses_a_missing_root_and_bad_limits() {
    let missing = TftpConfig {
        listen: "127.0.0.1:0".parse().expect("address"),
        root: PathBuf::from("/nonexistent/rackbox-tftp-root"),
        ..TftpConfig::default()
    };
    let stats = Arc::new(TftpStats::default());
    assert!(matches!(
        TftpServer::bind(missing, Arc::clone(&stats)).await,
        Err(TftpError::Root { .. })
    ));
    let root = tempfile::tempdir().expect("root");
    let bad_blksize = TftpConfig {
        listen: "127.0.0.1:0".parse().expect("address"),
        root: root.path().to_path_buf(),
        max_blksize: 4,
        ..TftpConfig::default()
    };
    assert!(matches!(
        TftpServer::bind(bad_blksize, stats).await,
        Err(TftpError::Config(_))
    ));
}

/// The lock-out a probe found: requests that ask `timeout=255` and are never
/// acknowledged (spoofable UDP) held every transfer slot for about 25 minutes.
/// Now the long timeout is not honoured (not acknowledged), and a transfer that
/// makes no progress is abandoned after the stall limit, so a real client is
/// served soon after the flood stops.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unacknowledged_requests_asking_long_timeouts_cannot_lock_the_server_out() {
    require_tool("tftp", "tftp-hpa");
    let server = TestServer::start(|config| {
        config.max_transfers = 4;
        config.timeout = Duration::from_millis(500);
        // Retries alone would keep a silent transfer for 50 s: the stall limit ends it.
        config.retries = 100;
        config.stall_limit = Duration::from_secs(3);
    })
    .await;
    let content = server.add_file("undionly.kpxe", pattern(5000, 21));
    let flood = raw_socket().await;
    for _ in 0..4 {
        flood
            .send_to(
                &read_request(
                    b"undionly.kpxe",
                    Mode::Octet,
                    &[("timeout", "255"), ("blksize", "1024")],
                ),
                server.addr,
            )
            .await
            .expect("send RRQ");
        let (answer, _) = receive(&flood).await;
        // Only blksize is acknowledged: 255 s is more than the server honours.
        assert_eq!(
            Packet::parse(&answer),
            Ok(Packet::OptionAck {
                options: vec![TftpOption::new("blksize", "1024")]
            })
        );
    }
    // Every slot is held now...
    flood
        .send_to(
            &read_request(b"undionly.kpxe", Mode::Octet, &[]),
            server.addr,
        )
        .await
        .expect("send RRQ");
    server
        .wait_for("busy refusals", |s| &s.busy_refusals, 1)
        .await;
    // ...and freed by the stall limit: the four are abandoned, a real client is served.
    server
        .wait_for("failed transfers", |s| &s.transfers_failed, 4)
        .await;
    let dir = download_dir();
    let local = dir.path().join("undionly.kpxe");
    let output = tftp_hpa_get(&server, "undionly.kpxe", &local, false).await;
    assert!(output.status.success(), "{}", text(&output));
    assert_eq!(read_back(&local), content);
    server.stop().await;
}
