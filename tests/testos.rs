//! A whole deploy, seen from the deployed machine: scripts/build-test-os.sh builds the test OS
//! (Debian kernel, busybox, GRUB for BIOS and UEFI), the agent's own deploy code writes it to a
//! 3 GiB disk file with a cloud-init seed (hostname, two SSH keys, user data, and the report URL
//! and token), and QEMU boots that disk under TCG, once with SeaBIOS and once with OVMF. The OS
//! must print the hostname and both keys from the seed on its serial console and report in to
//! the fake appliance (tests/agent_support) with the right bearer token.
//!
//! The VM's one NIC is QEMU user networking with `restrict=on`: the guest reaches nothing but
//! 10.0.2.100:80, which a `guestfwd` leads (one socat per connection) to the fake appliance on
//! the host's 127.0.0.1.
//!
//! The first run downloads five Debian packages (about 80 MB) into the build cache; later runs
//! reuse the image. A missing tool fails the test with the package that provides it
//! (scripts/deps.d/testos.sh installs them all). No root is needed.

mod agent_support;
mod common;

use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use agent_support::{Shared, appliance, calls_of, fast_policy, lock, run_tool, serve};
use common::qemu::{OVMF_CODE, OVMF_VARS, Qemu, appliance_nic};
use rackbox::agent::Client;
use rackbox::agent::client::{DeployTask, ImageFormat, Progress};
use serde_json::json;

/// The bearer token the seed carries and the fake appliance accepts.
const REPORT_TOKEN: &str = "rbt_testos_Zq8wK3";
const HOSTNAME: &str = "testos-node7";
const KEYS: [&str; 2] = [
    "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIHx alice@laptop",
    "ssh-rsa AAAAB3NzaC1yc2EAAAADAQABAAABAQC7 bob@desk",
];
/// Where the guest reaches the fake appliance (the guestfwd address).
const GUEST_APPLIANCE: &str = "http://10.0.2.100";

/// Fails with the package to install when a tool is missing: a test that cannot run must not
/// pass by skipping.
fn require_tools() {
    for (tool, package) in [
        ("qemu-system-x86_64", "qemu-system-x86"),
        ("socat", "socat"),
        ("sgdisk", "gdisk"),
        ("mformat", "mtools"),
        ("cpio", "cpio"),
        ("apt-get", "apt"),
    ] {
        let found = Command::new("sh")
            .arg("-c")
            .arg(format!("command -v {tool}"))
            .stdout(Stdio::null())
            .status()
            .is_ok_and(|s| s.success());
        assert!(
            found,
            "{tool} is missing: install {package} (scripts/deps.d/testos.sh installs every tool)"
        );
    }
    for f in [OVMF_CODE, OVMF_VARS] {
        assert!(
            Path::new(f).exists(),
            "{f} is missing: install ovmf (scripts/deps.d/testos.sh)"
        );
    }
}

/// The build's output directory: shared by test runs so that its cache works.
fn test_os_dir() -> PathBuf {
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("target"));
    target.join("test-os")
}

/// Builds the test OS once per test run (the tests of this file would otherwise build into the
/// same directory at once). Returns the directory holding testos.raw.gz.
fn build_test_os() -> PathBuf {
    static BUILT: std::sync::OnceLock<PathBuf> = std::sync::OnceLock::new();
    BUILT
        .get_or_init(|| {
            require_tools();
            let dir = test_os_dir();
            let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("scripts/build-test-os.sh");
            let mut child = Command::new("bash")
                .arg(&script)
                .arg(&dir)
                .stdout(Stdio::piped())
                .stderr(Stdio::piped())
                .spawn()
                .unwrap_or_else(|e| panic!("cannot start {}: {e}", script.display()));
            let console = Console::capture(&mut child);
            // Package downloads and a 70 MB kernel unpack on two busy cores: minutes at worst.
            let status = wait_bounded(&mut child, Duration::from_secs(20 * 60));
            assert!(
                status == Some(true),
                "scripts/build-test-os.sh failed or timed out:\n{}",
                console.text()
            );
            dir
        })
        .clone()
}

/// Waits for `child` until `limit`, killing it then. Some(success) when it exited.
fn wait_bounded(child: &mut Child, limit: Duration) -> Option<bool> {
    let deadline = Instant::now() + limit;
    loop {
        match child.try_wait() {
            Ok(Some(status)) => return Some(status.success()),
            Ok(None) if Instant::now() < deadline => std::thread::sleep(Duration::from_millis(200)),
            _ => {
                let _ = child.kill();
                let _ = child.wait();
                return None;
            }
        }
    }
}

/// Everything a child writes to stdout and stderr, readable while it runs.
#[derive(Clone, Default)]
struct Console(Arc<Mutex<Vec<u8>>>);

impl Console {
    fn capture(child: &mut Child) -> Console {
        let console = Console::default();
        let streams: [Option<Box<dyn Read + Send>>; 2] = [
            child
                .stdout
                .take()
                .map(|s| Box::new(s) as Box<dyn Read + Send>),
            child
                .stderr
                .take()
                .map(|s| Box::new(s) as Box<dyn Read + Send>),
        ];
        for mut stream in streams.into_iter().flatten() {
            let sink = console.0.clone();
            std::thread::spawn(move || {
                let mut buf = [0u8; 4096];
                while let Ok(n) = stream.read(&mut buf) {
                    if n == 0 {
                        break;
                    }
                    sink.lock()
                        .unwrap_or_else(|p| p.into_inner())
                        .extend_from_slice(&buf[..n]);
                }
            });
        }
        console
    }

    /// The text so far, without carriage returns.
    fn text(&self) -> String {
        let bytes = self.0.lock().unwrap_or_else(|p| p.into_inner()).clone();
        String::from_utf8_lossy(&bytes).replace('\r', "")
    }
}

/// The firmware a VM boots with.
#[derive(Clone, Copy, Debug, PartialEq)]
enum Firmware {
    SeaBios,
    Ovmf,
}

/// Writes the test OS to a fresh 3 GiB disk file with the agent's deploy code, downloading it
/// from the fake appliance as a real deploy does. Returns the disk's path.
async fn deploy_test_os(dir: &Path, image_dir: &Path, s: &Shared, url: &str) -> PathBuf {
    let gz = std::fs::read(image_dir.join("testos.raw.gz")).expect("read testos.raw.gz");
    let sha_line = std::fs::read_to_string(image_dir.join("testos.raw.gz.sha256"))
        .expect("read testos.raw.gz.sha256");
    let sha256 = sha_line
        .split_whitespace()
        .next()
        .expect("a digest in testos.raw.gz.sha256")
        .to_string();
    assert_eq!(
        sha256,
        agent_support::sha256_hex(&gz),
        "the published digest"
    );
    let size = gz.len() as u64;
    lock(s).images.insert("testos.raw.gz".into(), gz);

    let disk = dir.join("disk.raw");
    std::fs::File::create(&disk)
        .and_then(|f| f.set_len(3 * 1024 * 1024 * 1024))
        .expect("disk file");
    let task = DeployTask {
        image_url: "/images/testos.raw.gz".into(),
        image_sha256: sha256,
        image_format: ImageFormat::RawGz,
        image_size: Some(size),
        target_disk: None,
        hostname: HOSTNAME.into(),
        ssh_keys: KEYS.iter().map(|k| k.to_string()).collect(),
        user_data: "#cloud-config\npackages:\n  - nginx\n".into(),
        instance_id: "i-testos-1".into(),
        report_url: Some(format!("{GUEST_APPLIANCE}/api/agent/v1/deployed")),
        report_token: Some(REPORT_TOKEN.into()),
        network_config: None,
    };
    let client = Client::new(url, Some(REPORT_TOKEN.into()), fast_policy()).expect("client");
    let (progress, _watch) = tokio::sync::watch::channel(Progress::default());
    let deployed = tokio::time::timeout(
        Duration::from_secs(300),
        rackbox::agent::deploy::deploy(&client, &task, &disk, &progress),
    )
    .await
    .expect("the deploy ends within 5 minutes")
    .expect("the agent deploys the test OS");
    // The seed went after the image's two partitions, and the table is whole.
    assert_eq!(deployed.seed_partition, 3);
    let verify = run_tool(Command::new("sgdisk").arg("--verify").arg(&disk));
    assert!(verify.contains("No problems found"), "sgdisk: {verify}");
    disk
}

/// Boots `disk` in QEMU until the OS has reported (or said it gave up), bounded. Returns the
/// serial console's text.
fn boot(disk: &Path, firmware: Firmware, port: u16, work: &Path) -> String {
    // One TCG VM at a time: two cores are shared with other work.
    static ONE_VM: Mutex<()> = Mutex::new(());
    let _one = ONE_VM.lock().unwrap_or_else(|p| p.into_inner());

    let mut vm = Qemu::tcg().nographic().no_reboot().memory(512);
    if firmware == Firmware::Ovmf {
        let vars = work.join("OVMF_VARS_4M.fd");
        std::fs::copy(OVMF_VARS, &vars).expect("copy the OVMF variable store");
        vm = vm.ovmf(&vars);
    }
    // restrict=on: no route anywhere; the one guestfwd leads to the fake appliance.
    let mut cmd = vm
        .nic(&appliance_nic("52:54:00:7e:57:05", port))
        .raw_drive(disk, "d0")
        .device("virtio-blk-pci,drive=d0,bootindex=0")
        .command();
    cmd.stdout(Stdio::piped()).stderr(Stdio::piped());
    let mut child = cmd
        .spawn()
        .unwrap_or_else(|e| panic!("cannot start qemu-system-x86_64: {e}"));
    let console = Console::capture(&mut child);
    // Firmware, GRUB, kernel and DHCP under TCG on a busy machine: about a minute, often less.
    let deadline = Instant::now() + Duration::from_secs(8 * 60);
    loop {
        let text = console.text();
        if text.contains("RACKBOX-TESTOS reported") || text.contains("RACKBOX-TESTOS up;") {
            break;
        }
        if Instant::now() > deadline || matches!(child.try_wait(), Ok(Some(_)) | Err(_)) {
            break;
        }
        std::thread::sleep(Duration::from_millis(250));
    }
    // The test OS stays up once it has reported: switch it off.
    let _ = child.kill();
    let _ = child.wait();
    console.text()
}

/// Deploys the test OS and boots it with `firmware`; checks the console and the report.
async fn deploy_and_boot(firmware: Firmware) {
    let image_dir = tokio::task::spawn_blocking(build_test_os)
        .await
        .expect("build");
    let dir = tempfile::tempdir().expect("tempdir");
    let s = appliance(Vec::new());
    lock(&s).token = REPORT_TOKEN.into();
    let url = serve(s.clone(), 0).await;
    let port: u16 = url
        .rsplit(':')
        .next()
        .and_then(|p| p.parse().ok())
        .expect("the fake appliance's port");
    let disk = deploy_test_os(dir.path(), &image_dir, &s, &url).await;

    let work = dir.path().to_path_buf();
    let console = tokio::task::spawn_blocking(move || boot(&disk, firmware, port, &work))
        .await
        .expect("qemu");
    let lines: Vec<&str> = console
        .lines()
        .filter_map(|l| l.find("RACKBOX-TESTOS ").map(|at| l[at..].trim_end()))
        .collect();
    let tail = {
        let all: Vec<&str> = console.lines().collect();
        all[all.len().saturating_sub(60)..].join("\n")
    };
    eprintln!("{firmware:?}: the test OS said\n{}", lines.join("\n"));
    let firmware_line = match firmware {
        Firmware::SeaBios => "RACKBOX-TESTOS firmware=bios",
        Firmware::Ovmf => "RACKBOX-TESTOS firmware=uefi",
    };
    // The kernel may still print while the test OS speaks, on the same console line: a line
    // said is one the console line starts with.
    let said = |want: &str| lines.iter().any(|l| l.starts_with(want));
    assert!(
        said(firmware_line),
        "{firmware_line} on the console; its end:\n{tail}"
    );
    let hostname_line = format!("RACKBOX-TESTOS hostname={HOSTNAME}");
    assert!(
        said(&hostname_line),
        "{hostname_line} on the console; its end:\n{tail}"
    );
    let keys: Vec<&str> = lines
        .iter()
        .filter_map(|l| l.strip_prefix("RACKBOX-TESTOS ssh-key="))
        .collect();
    assert_eq!(keys, KEYS, "each key once, in order; console end:\n{tail}");
    assert!(
        said("RACKBOX-TESTOS reported"),
        "the test OS reported; console end:\n{tail}"
    );

    // The fake appliance got exactly the report, with the seed's token (a wrong token is
    // answered 401 and counted).
    assert_eq!(
        calls_of(&s, "deployed"),
        vec![json!({"message": format!("testos booted as {HOSTNAME}")})],
        "console end:\n{tail}"
    );
    assert_eq!(lock(&s).unauthorized, 0, "every call carried the token");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_test_os_boots_with_seabios_reads_its_seed_and_reports_in() {
    deploy_and_boot(Firmware::SeaBios).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_test_os_boots_with_ovmf_reads_its_seed_and_reports_in() {
    deploy_and_boot(Firmware::Ovmf).await;
}
