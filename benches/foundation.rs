//! Foundation benchmarks (print figures; nothing is asserted). Run: `cargo bench --bench foundation`.
//!
//! - list machines with 10,000 in the store: a page of 100 and the full list, over HTTP
//! - allocate with constraints over 10,000 machines, over HTTP
//! - 1,000 concurrent state-changing requests: group commit vs one commit per request
//! - RSS of `rackbox serve` idle and with 10,000 machines
//!
//! Everything runs on 127.0.0.1 against the release binary, in a temp dir.

use std::collections::BTreeSet;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use rackbox::model::{Disk, Interface, Machine, PowerSettings, PowerStatus, Status};

const PASSWORD: &str = "benchmark-password";
const MACHINES: usize = 10_000;

fn machine(i: usize) -> Machine {
    let tags: BTreeSet<String> = match i % 10 {
        0 => ["gpu".to_string()].into(),
        1 | 2 => ["ssd".to_string()].into(),
        _ => BTreeSet::new(),
    };
    Machine {
        system_id: format!("b{i:05}"),
        hostname: format!("node{i:05}"),
        domain: "maas".into(),
        status: Status::Ready,
        status_message: String::new(),
        previous_status: None,
        generation: 1,
        owner: None,
        owner_data: Default::default(),
        locked: false,
        architecture: "amd64/generic".into(),
        cpu_count: [4, 8, 16, 32, 64][i % 5],
        memory_mib: [8192, 16384, 32768, 65536, 262144][(i / 5) % 5],
        disks: vec![Disk {
            name: "sda".into(),
            size_bytes: [240u64, 480, 960, 1920][i % 4] * 1_000_000_000,
            model: "BENCH SSD".into(),
            serial: format!("S{i:08}"),
            block_size: 512,
            rotational: false,
            tags: vec!["ssd".into()],
        }],
        interfaces: vec![Interface {
            name: "eth0".into(),
            mac: format!(
                "52:54:01:{:02x}:{:02x}:{:02x}",
                (i >> 16) & 0xff,
                (i >> 8) & 0xff,
                i & 0xff
            ),
            boot: true,
            network: None,
        }],
        inventory: None,
        commissioned: true,
        tags,
        zone: if i.is_multiple_of(3) {
            "zone-a".into()
        } else {
            "default".into()
        },
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

fn seed(state: &Path, n: usize) {
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let store =
            rackbox::store::Store::open(&state.join("rackbox.redb"), Default::default()).unwrap();
        let writer = store.take_writer();
        let images = rackbox::images::ImageCache::open(
            store.clone(),
            rackbox::images::CacheOptions::new(state.join("images")),
        )
        .await
        .unwrap();
        let (service, _) =
            rackbox::service::Service::new(store, images, Default::default()).unwrap();
        let service = Arc::new(service);
        let p = rackbox::service::Principal::system();
        service
            .create_catalog(&p, rackbox::service::CatalogKind::Zone, "zone-a", "")
            .await
            .ok();
        let mut set = tokio::task::JoinSet::new();
        for i in 0..n {
            let s = service.clone();
            set.spawn(async move { s.insert_machine_record(machine(i)).await.unwrap() });
            if set.len() >= 256 {
                set.join_next().await;
            }
        }
        while set.join_next().await.is_some() {}
        drop(service);
        if let Some(w) = writer {
            w.join().unwrap();
        }
    });
}

struct Daemon {
    child: Child,
    url: String,
}

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn start(state: &Path, extra: &str) -> Daemon {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    std::fs::write(state.join("pw"), PASSWORD).unwrap();
    let config = state.join("rackbox.toml");
    std::fs::write(
        &config,
        format!(
            "state_dir = {:?}\n[http]\nlisten = \"127.0.0.1:{port}\"\n[auth]\nadmin_password_file = {:?}\n[log]\nlevel = \"warn\"\ntarget = \"stderr\"\n{extra}",
            state,
            state.join("pw")
        ),
    )
    .unwrap();
    let child = Command::new(env!("CARGO_BIN_EXE_rackbox"))
        .args(["serve", "--config"])
        .arg(&config)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let url = format!("http://127.0.0.1:{port}");
    let deadline = Instant::now() + Duration::from_secs(60);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(Instant::now() < deadline, "daemon did not start");
        std::thread::sleep(Duration::from_millis(20));
    }
    Daemon { child, url }
}

fn rss_kib(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap_or_default()
        .lines()
        .find_map(|l| {
            l.strip_prefix("VmRSS:")
                .map(|v| v.trim().trim_end_matches(" kB").trim().parse().unwrap_or(0))
        })
        .unwrap_or(0)
}

fn percentile(samples: &mut [Duration], p: f64) -> Duration {
    samples.sort();
    samples[((samples.len() as f64 - 1.0) * p).round() as usize]
}

fn ms(d: Duration) -> String {
    format!("{:.2} ms", d.as_secs_f64() * 1000.0)
}

async fn login(http: &reqwest::Client, url: &str) -> String {
    let v: serde_json::Value = http
        .post(format!("{url}/api/v1/auth/login"))
        .json(&serde_json::json!({"username": "admin", "password": PASSWORD}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    v["token"].as_str().unwrap().to_string()
}

async fn timed_get(http: &reqwest::Client, url: &str, token: &str, runs: usize) -> Vec<Duration> {
    let mut samples = Vec::with_capacity(runs);
    for _ in 0..runs {
        let t = Instant::now();
        let body = http
            .get(url)
            .bearer_auth(token)
            .send()
            .await
            .unwrap()
            .bytes()
            .await
            .unwrap();
        samples.push(t.elapsed());
        assert!(body.len() > 2);
    }
    samples
}

/// Logs in to the control page; returns its session cookie.
async fn page_session(url: &str) -> String {
    let http = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    let r = http
        .post(format!("{url}/login"))
        .form(&[("username", "admin"), ("password", PASSWORD)])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 303, "page login");
    let set = r.headers()["set-cookie"].to_str().unwrap();
    let cookie = set.split(';').next().unwrap().to_string();
    // The daemon names no boot interface, so `/` leads to the first-boot setup until it is
    // finished: finish it (no network boot) so the overview is what is timed.
    let html = http
        .get(format!("{url}/setup"))
        .header("cookie", &cookie)
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let at = html.find("name=\"csrf\" value=\"").expect("a CSRF field") + 19;
    let csrf = html[at..at + 32].to_string();
    for (path, form) in [
        (
            "/setup/boot",
            vec![("csrf", csrf.as_str()), ("mode", "off"), ("interface", "")],
        ),
        ("/setup/finish", vec![("csrf", csrf.as_str())]),
    ] {
        let r = http
            .post(format!("{url}{path}"))
            .header("cookie", &cookie)
            .form(&form)
            .send()
            .await
            .unwrap();
        assert!(
            r.status().is_success() || r.status().is_redirection(),
            "{path}: {}",
            r.status()
        );
    }
    cookie
}

/// Times `runs` page loads with the session cookie (the whole HTML answer, rendered by the
/// daemon).
async fn timed_page(http: &reqwest::Client, url: &str, cookie: &str, runs: usize) -> Vec<Duration> {
    let mut samples = Vec::with_capacity(runs);
    for _ in 0..runs {
        let t = Instant::now();
        let r = http.get(url).header("cookie", cookie).send().await.unwrap();
        assert_eq!(r.status(), 200, "{url}");
        let body = r.bytes().await.unwrap();
        samples.push(t.elapsed());
        assert!(body.len() > 100);
    }
    samples
}

async fn commits(http: &reqwest::Client, url: &str, token: &str) -> u64 {
    let text = http
        .get(format!("{url}/metrics"))
        .bearer_auth(token)
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    text.lines()
        .find_map(|l| l.strip_prefix("rackbox_store_commits_total "))
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

/// 1,000 concurrent PATCHes (owner data edits) on distinct machines; returns (seconds, commits).
async fn write_burst(http: &reqwest::Client, url: &str, token: &str) -> (f64, u64) {
    let before = commits(http, url, token).await;
    let t = Instant::now();
    let mut set = tokio::task::JoinSet::new();
    for i in 0..1000 {
        let http = http.clone();
        let u = format!("{url}/api/v1/machines/b{i:05}");
        let token = token.to_string();
        set.spawn(async move {
            let r = http
                .patch(u)
                .bearer_auth(token)
                .json(&serde_json::json!({"description": format!("burst {i}")}))
                .send()
                .await
                .unwrap();
            assert_eq!(r.status(), 200);
        });
    }
    while set.join_next().await.is_some() {}
    let secs = t.elapsed().as_secs_f64();
    (secs, commits(http, url, token).await - before)
}

fn main() {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let rt = tokio::runtime::Runtime::new().unwrap();
    let http = reqwest::Client::builder()
        .pool_max_idle_per_host(1100)
        .build()
        .unwrap();
    println!(
        "rackbox foundation benchmarks ({} cores)",
        std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(0)
    );

    // Idle RSS.
    let idle_dir = tempfile::tempdir().unwrap();
    let idle = start(idle_dir.path(), "");
    std::thread::sleep(Duration::from_millis(500));
    println!(
        "RSS idle (empty store)                       {:>8} KiB",
        rss_kib(idle.child.id())
    );
    drop(idle);

    let dir = tempfile::tempdir().unwrap();
    let t = Instant::now();
    seed(dir.path(), MACHINES);
    println!(
        "seeded {MACHINES} machines in {:.2} s",
        t.elapsed().as_secs_f64()
    );

    for (label, max_batch) in [
        ("group commit (max_batch 512)", 512usize),
        ("one commit per request (max_batch 1)", 1),
    ] {
        let daemon = start(dir.path(), &format!("[store]\nmax_batch = {max_batch}\n"));
        rt.block_on(async {
            let token = login(&http, &daemon.url).await;
            if max_batch == 512 {
                println!("RSS with {MACHINES} machines                  {:>8} KiB", rss_kib(daemon.child.id()));
                let mut page = timed_get(&http, &format!("{}/api/v1/machines?limit=100", daemon.url), &token, 200).await;
                println!("list, page of 100             p50 {:>10}  p99 {:>10}", ms(percentile(&mut page, 0.5)), ms(percentile(&mut page, 0.99)));
                let mut full = timed_get(&http, &format!("{}/api/v1/machines?limit=0", daemon.url), &token, 30).await;
                println!("list, all {MACHINES}             p50 {:>10}  p99 {:>10}", ms(percentile(&mut full, 0.5)), ms(percentile(&mut full, 0.99)));
                let mut alloc = Vec::new();
                for i in 0..200 {
                    let body = match i % 3 {
                        0 => serde_json::json!({"cpu_count": 16, "mem": 32768}),
                        1 => serde_json::json!({"tags": ["gpu"], "zone": "zone-a", "storage": "root:400"}),
                        _ => serde_json::json!({"cpu_count": 8, "not_in_zone": ["zone-a"], "not_tags": ["gpu"]}),
                    };
                    let t = Instant::now();
                    let r = http.post(format!("{}/api/v1/machines/allocate", daemon.url)).bearer_auth(&token).json(&body).send().await.unwrap();
                    assert_eq!(r.status(), 200);
                    let _ = r.bytes().await;
                    alloc.push(t.elapsed());
                }
                println!("allocate with constraints     p50 {:>10}  p99 {:>10}", ms(percentile(&mut alloc, 0.5)), ms(percentile(&mut alloc, 0.99)));
                let cookie = page_session(&daemon.url).await;
                for (label, path) in [
                    ("page: machines (50 rows)    ", "/machines".to_string()),
                    ("page: machines by status    ", "/machines?group=status&sort=status".to_string()),
                    ("page: machines, search      ", "/machines?q=b0999".to_string()),
                    ("page: one machine           ", "/machines/b05000".to_string()),
                    ("page: overview              ", "/".to_string()),
                ] {
                    let mut samples = timed_page(&http, &format!("{}{path}", daemon.url), &cookie, 100).await;
                    println!("{label}  p50 {:>10}  p99 {:>10}", ms(percentile(&mut samples, 0.5)), ms(percentile(&mut samples, 0.99)));
                }
            }
            let (secs, n) = write_burst(&http, &daemon.url, &token).await;
            println!("1000 concurrent edits, {label}: {:.2} s, {:.0} requests/s, {n} commits", secs, 1000.0 / secs);
        });
    }
}
