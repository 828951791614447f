//! Shared test fixtures: machine records, a store in a temp dir, a real `rackbox serve`
//! started on a free loopback port, and the QEMU command line of the tests that boot machines
//! ([`qemu`]).
#![allow(dead_code)]

pub mod browser;
pub mod maas;
pub mod qemu;

use std::collections::BTreeSet;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use rackbox::model::{Disk, Interface, Machine, PowerSettings, PowerStatus, Status};

pub const ADMIN_PASSWORD: &str = "admin-password-for-tests";

/// A machine record with the given id, status and size.
pub fn machine(id: &str, status: Status, cpu: u32, mem: u64) -> Machine {
    Machine {
        system_id: id.to_string(),
        hostname: format!("host-{id}"),
        domain: "maas".into(),
        status,
        status_message: String::new(),
        previous_status: None,
        generation: 1,
        owner: None,
        owner_data: Default::default(),
        locked: false,
        architecture: "amd64/generic".into(),
        cpu_count: cpu,
        memory_mib: mem,
        disks: vec![Disk {
            name: "vda".into(),
            size_bytes: 100_000_000_000,
            model: String::new(),
            serial: String::new(),
            block_size: 512,
            rotational: false,
            tags: vec!["ssd".into()],
        }],
        interfaces: vec![Interface {
            name: "eth0".into(),
            mac: mac_for(id),
            boot: true,
            network: None,
        }],
        inventory: None,
        commissioned: status != Status::New,
        tags: BTreeSet::new(),
        zone: "default".into(),
        pool: "default".into(),
        description: String::new(),
        power: PowerSettings::default(),
        power_state: PowerStatus::default(),
        discovered_bmc: None,
        deploy: None,
        erase: None,
        test_after_commission: false,
        status_deadline_ms: None,
        boot_session: None,
        deploy_written: false,
        owed_effect: None,
        progress: None,
        created_ms: 1,
        updated_ms: 1,
    }
}

/// A MAC derived from an id, unique per id.
pub fn mac_for(id: &str) -> String {
    let mut h: u64 = 1469598103934665603;
    for b in id.bytes() {
        h = (h ^ u64::from(b)).wrapping_mul(1099511628211);
    }
    let b = h.to_be_bytes();
    format!("52:54:{:02x}:{:02x}:{:02x}:{:02x}", b[0], b[1], b[2], b[3])
}

pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free loopback port")
}

/// Polls `probe` every 100 ms until it answers `Ok`, at most for `limit`; then fails saying
/// `what` was never seen, with the last `Err` it answered (what it saw instead).
pub async fn eventually<T, Seen: std::fmt::Debug>(
    what: &str,
    limit: Duration,
    mut probe: impl AsyncFnMut() -> Result<T, Seen>,
) -> T {
    let deadline = Instant::now() + limit;
    loop {
        match probe().await {
            Ok(value) => return value,
            Err(seen) => assert!(
                Instant::now() < deadline,
                "never saw {what} in {limit:?}; last: {seen:?}"
            ),
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// A service over `store`, with an empty image cache in `images_dir`.
pub async fn service_over(
    store: rackbox::store::Store,
    images_dir: &Path,
) -> (rackbox::service::Service, rackbox::service::ConductorWakes) {
    let images = rackbox::images::ImageCache::open(
        store.clone(),
        rackbox::images::CacheOptions::new(images_dir.to_path_buf()),
    )
    .await
    .expect("open the image cache");
    rackbox::service::Service::new(store, images, Default::default()).expect("the service")
}

/// Writes machine records into the store of `state_dir` (before a daemon opens it).
pub fn seed(state_dir: &Path, machines: Vec<Machine>) {
    let state_dir = state_dir.to_path_buf();
    // On a thread of its own: callers may be inside an async runtime already.
    std::thread::spawn(move || seed_now(&state_dir, machines))
        .join()
        .unwrap();
}

fn seed_now(state_dir: &Path, machines: Vec<Machine>) {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        let store =
            rackbox::store::Store::open(&state_dir.join("rackbox.redb"), Default::default())
                .unwrap();
        let writer = store.take_writer();
        let images = tempfile::tempdir().unwrap();
        let (service, _effects) = service_over(store, images.path()).await;
        for m in machines {
            service.insert_machine_record(m).await.unwrap();
        }
        drop(service);
        if let Some(w) = writer {
            w.join().unwrap();
        }
    });
}

/// A `rackbox serve` child process on a free port; killed when dropped.
pub struct Daemon {
    pub child: Child,
    pub url: String,
    pub state_dir: PathBuf,
    pub config_path: PathBuf,
    pub log_path: PathBuf,
    _dir: Option<tempfile::TempDir>,
}

pub fn rackbox_bin() -> &'static str {
    env!("CARGO_BIN_EXE_rackbox")
}

impl Daemon {
    /// Starts a daemon in a fresh temp dir.
    pub fn start() -> Daemon {
        let dir = tempfile::tempdir().unwrap();
        let state = dir.path().join("state");
        std::fs::create_dir_all(&state).unwrap();
        let mut d = Daemon::start_in(&state, "");
        d._dir = Some(dir);
        d
    }

    /// Starts a daemon over `state_dir` with extra TOML appended to its config.
    pub fn start_in(state_dir: &Path, extra_toml: &str) -> Daemon {
        Daemon::start_with(state_dir, "", "", extra_toml)
    }

    /// Starts a daemon in a fresh temp dir with extra keys in its `[http]` and `[auth]` tables
    /// (those tables are the fixture's own, so they cannot come in `extra_toml`).
    pub fn start_configured(http_toml: &str, auth_toml: &str, extra_toml: &str) -> Daemon {
        let dir = tempfile::tempdir().unwrap();
        let state = dir.path().join("state");
        std::fs::create_dir_all(&state).unwrap();
        let mut d = Daemon::start_with(&state, http_toml, auth_toml, extra_toml);
        d._dir = Some(dir);
        d
    }

    /// Starts a daemon over `state_dir` with extra keys in `[http]` and `[auth]`, and extra TOML
    /// appended.
    pub fn start_with(
        state_dir: &Path,
        http_toml: &str,
        auth_toml: &str,
        extra_toml: &str,
    ) -> Daemon {
        let port = free_port();
        let pw = state_dir.join("admin-password");
        std::fs::write(&pw, ADMIN_PASSWORD).unwrap();
        let config_path = state_dir.join("rackbox.toml");
        let log_path = state_dir.join("rackbox.log");
        std::fs::write(
            &config_path,
            format!(
                "state_dir = {:?}\n[http]\nlisten = \"127.0.0.1:{port}\"\n{http_toml}\n[auth]\nadmin_password_file = {:?}\n{auth_toml}\n[log]\ntarget = \"stderr\"\nlevel = \"info\"\n{extra_toml}",
                state_dir, pw
            ),
        )
        .unwrap();
        let log = std::fs::File::create(&log_path).unwrap();
        let child = Command::new(rackbox_bin())
            .args(["serve", "--config"])
            .arg(&config_path)
            .env_remove("RUST_LOG")
            .env_remove("NOTIFY_SOCKET")
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("rackbox starts");
        let mut d = Daemon {
            child,
            url: format!("http://127.0.0.1:{port}"),
            state_dir: state_dir.to_path_buf(),
            config_path,
            log_path,
            _dir: None,
        };
        d.wait_healthy();
        d
    }

    /// Waits until this daemon serves: its log says it bound its port ("rackbox is serving")
    /// and /healthz answers. Both, because another test's daemon may have taken the port
    /// `free_port` found between its check and this daemon's bind; ours then exits, and a test
    /// must not go on talking to the other one.
    fn wait_healthy(&mut self) {
        let deadline = Instant::now() + Duration::from_secs(30);
        let addr = self.url.trim_start_matches("http://").to_string();
        while Instant::now() < deadline {
            if let Ok(Some(status)) = self.child.try_wait() {
                panic!(
                    "rackbox exited ({status}) before serving; log:\n{}",
                    self.log()
                );
            }
            if self.log().contains("rackbox is serving")
                && let Ok(mut s) = std::net::TcpStream::connect(&addr)
            {
                use std::io::{Read, Write};
                let _ = s.write_all(b"GET /healthz HTTP/1.0\r\n\r\n");
                let mut buf = String::new();
                let _ = s.read_to_string(&mut buf);
                if buf.starts_with("HTTP/1.0 200") || buf.starts_with("HTTP/1.1 200") {
                    return;
                }
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        panic!("rackbox did not become healthy; log:\n{}", self.log());
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log_path).unwrap_or_default()
    }

    /// Sends SIGTERM and waits (bounded) for a clean exit; returns the exit status.
    pub fn terminate(&mut self) -> std::process::ExitStatus {
        let pid = self.child.id() as i32;
        unsafe_kill(pid, 15);
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Ok(Some(status)) = self.child.try_wait() {
                return status;
            }
            if Instant::now() > deadline {
                let _ = self.child.kill();
                panic!("rackbox did not stop after SIGTERM; log:\n{}", self.log());
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

/// kill(2) through the kill command, so tests need no libc binding.
pub fn unsafe_kill(pid: i32, signal: i32) {
    let _ = Command::new("kill")
        .arg(format!("-{signal}"))
        .arg(pid.to_string())
        .status();
}

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A small async client for the native API.
pub struct Api {
    pub http: reqwest::Client,
    pub url: String,
}

impl Api {
    pub fn new(url: &str) -> Api {
        let _ = rustls::crypto::ring::default_provider().install_default();
        Api {
            http: reqwest::Client::new(),
            url: url.to_string(),
        }
    }

    /// Logs in and returns a bearer token.
    pub async fn login(&self, username: &str, password: &str) -> String {
        let r = self
            .http
            .post(format!("{}/api/v1/auth/login", self.url))
            .json(&serde_json::json!({"username": username, "password": password}))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200, "login as {username}");
        let v: serde_json::Value = r.json().await.unwrap();
        v["token"].as_str().unwrap().to_string()
    }

    pub async fn call(
        &self,
        method: reqwest::Method,
        path: &str,
        token: Option<&str>,
        body: Option<serde_json::Value>,
    ) -> (u16, serde_json::Value) {
        let mut req = self.http.request(method, format!("{}{path}", self.url));
        if let Some(t) = token {
            req = req.bearer_auth(t);
        }
        if let Some(b) = body {
            req = req.json(&b);
        }
        let r = req.send().await.unwrap();
        let status = r.status().as_u16();
        let text = r.text().await.unwrap();
        let v = serde_json::from_str(&text).unwrap_or(serde_json::Value::String(text));
        (status, v)
    }

    /// Makes a user (as the admin `bearer`).
    pub async fn add_user(&self, bearer: &str, username: &str, password: &str) {
        let (s, v) = self
            .call(
                reqwest::Method::POST,
                "/api/v1/users",
                Some(bearer),
                Some(serde_json::json!({"username": username, "password": password})),
            )
            .await;
        assert_eq!(s, 201, "add user {username}: {v}");
    }

    /// Uploads a small amd64 image named `release`, of `os` and `release`: what deploys and the
    /// MAAS face's default OS and series find.
    pub async fn upload_image(&self, bearer: &str, os: &str, release: &str) {
        let r = self
            .http
            .post(format!(
                "{}/api/v1/images?name={release}&os={os}&release={release}&arch=amd64",
                self.url
            ))
            .bearer_auth(bearer)
            .body(vec![7u8; 4096])
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 201, "upload {os}/{release}");
    }

    /// The per-boot token of the machine's iPXE script, as its firmware fetches it.
    pub async fn boot_token(&self, mac: &str) -> String {
        let script = self
            .http
            .get(format!("{}/boot/{mac}.ipxe", self.url))
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        script
            .split_whitespace()
            .find_map(|w| w.strip_prefix("rackbox.token="))
            .unwrap_or_else(|| panic!("no boot token in {script}"))
            .to_string()
    }
}

/// A MAAS API key made the way an operator makes one: `rackbox token create --maas`.
pub fn cli_maas_key(url: &str, bearer: &str, user: &str) -> String {
    let out = Command::new(rackbox_bin())
        .args([
            "token",
            "create",
            "--maas",
            "--name",
            "maas-client",
            "--user",
            user,
        ])
        .args(["--url", url, "--token", bearer])
        .output()
        .expect("rackbox token create runs");
    assert!(
        out.status.success(),
        "rackbox token create --maas failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let key = String::from_utf8_lossy(&out.stdout)
        .lines()
        .next()
        .unwrap_or_default()
        .trim()
        .to_string();
    assert_eq!(
        key.split(':').count(),
        3,
        "a MAAS key is consumer:token:secret, got {key:?}"
    );
    key
}

/// A tmpfs of a fixed size the test mounts itself, unmounted when dropped: a small file
/// system to fill. Needs root (CI runs as root); without it the test fails saying so.
pub struct Tmpfs {
    pub path: PathBuf,
    _dir: tempfile::TempDir,
}

impl Tmpfs {
    pub fn mount(size: &str) -> Tmpfs {
        let uid = Command::new("id").arg("-u").output().expect("id runs");
        assert_eq!(
            String::from_utf8_lossy(&uid.stdout).trim(),
            "0",
            "this test mounts a small tmpfs and needs root (CI runs as root; run it with sudo -E)"
        );
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("fs");
        std::fs::create_dir(&path).unwrap();
        let status = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(&path)
            .status()
            .expect("mount runs");
        assert!(status.success(), "mount -t tmpfs failed");
        Tmpfs { path, _dir: dir }
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg(&self.path).status();
    }
}
