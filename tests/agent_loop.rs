//! The agent's task loop against a fake appliance: a small axum server on 127.0.0.1 that speaks
//! the agent protocol, hands out tasks, serves images and records every report. Disks are files
//! (and, as root, loop devices); partition tables and the cloud-init seed are read back with
//! independent tools (sfdisk, sgdisk, blkid, mtools).

use std::collections::{HashMap, VecDeque};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path as UrlPath, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use rackbox::agent::{AgentConfig, AgentError, ClientError, Outcome, RetryPolicy};
use serde_json::{Value, json};
use sha2::{Digest, Sha256};

const MIB: u64 = 1024 * 1024;

/// What the fake appliance knows and saw.
#[derive(Default)]
struct Appliance {
    tasks: VecDeque<Value>,
    /// (endpoint, body) of every POST, in arrival order.
    calls: Vec<(String, Value)>,
    /// The bearer token every call but /enlist must carry.
    token: String,
    /// Answer 503 to this many GET /task before answering.
    task_503s: u32,
    task_gets: u32,
    unauthorized: u32,
    images: HashMap<String, Vec<u8>>,
}

type Shared = Arc<Mutex<Appliance>>;

fn lock(s: &Shared) -> std::sync::MutexGuard<'_, Appliance> {
    s.lock().unwrap_or_else(|p| p.into_inner())
}

fn authorized(s: &Shared, headers: &HeaderMap) -> bool {
    let want = format!("Bearer {}", lock(s).token);
    let ok = headers
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v == want);
    if !ok {
        lock(s).unauthorized += 1;
    }
    ok
}

async fn task(State(s): State<Shared>, headers: HeaderMap) -> Response {
    if !authorized(&s, &headers) {
        return StatusCode::UNAUTHORIZED.into_response();
    }
    let mut a = lock(&s);
    a.task_gets += 1;
    if a.task_503s > 0 {
        a.task_503s -= 1;
        return (StatusCode::SERVICE_UNAVAILABLE, "starting up").into_response();
    }
    let t = a
        .tasks
        .pop_front()
        .unwrap_or_else(|| json!({"task": "poweroff"}));
    axum::Json(t).into_response()
}

async fn report(
    State(s): State<Shared>,
    UrlPath(kind): UrlPath<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    if kind != "enlist" && !authorized(&s, &headers) {
        return StatusCode::UNAUTHORIZED.into_response();
    }
    let Ok(v) = serde_json::from_slice::<Value>(&body) else {
        return (StatusCode::BAD_REQUEST, "not JSON").into_response();
    };
    let mut a = lock(&s);
    a.calls.push((kind.clone(), v));
    if kind == "enlist" {
        a.token = "enlisted-token".into();
        return axum::Json(json!({"system_id": "abc123", "token": "enlisted-token"}))
            .into_response();
    }
    axum::Json(json!({"ok": true})).into_response()
}

async fn image(State(s): State<Shared>, UrlPath(name): UrlPath<String>) -> Response {
    match lock(&s).images.get(&name) {
        Some(b) => b.clone().into_response(),
        None => StatusCode::NOT_FOUND.into_response(),
    }
}

fn router(s: Shared) -> Router {
    Router::new()
        .route("/api/agent/v1/task", get(task))
        .route("/api/agent/v1/{kind}", post(report))
        .route("/images/{name}", get(image))
        .with_state(s)
}

/// Starts the fake appliance on 127.0.0.1:`port` (0: any).
async fn serve(s: Shared, port: u16) -> String {
    let listener = tokio::net::TcpListener::bind(("127.0.0.1", port))
        .await
        .expect("bind 127.0.0.1");
    let addr = listener.local_addr().expect("local addr");
    tokio::spawn(async move {
        let _ = axum::serve(listener, router(s)).await;
    });
    format!("http://{addr}")
}

fn appliance(tasks: Vec<Value>) -> Shared {
    Arc::new(Mutex::new(Appliance {
        tasks: tasks.into(),
        token: "tok-1".into(),
        ..Default::default()
    }))
}

fn fast_policy() -> RetryPolicy {
    RetryPolicy {
        initial: Duration::from_millis(20),
        max_delay: Duration::from_millis(200),
        budget: Duration::from_secs(30),
        request_timeout: Duration::from_secs(20),
    }
}

fn config(url: &str, devices: Vec<PathBuf>) -> AgentConfig {
    let mut cfg = AgentConfig::new(url, Some("tok-1".into()));
    cfg.devices = devices;
    cfg.policy = fast_policy();
    cfg.max_wait = Duration::from_millis(50);
    cfg.memory_test_mib = 4;
    cfg
}

/// Runs the agent loop to its end, bounded.
async fn run_agent(cfg: AgentConfig) -> Result<Outcome, AgentError> {
    tokio::time::timeout(Duration::from_secs(300), rackbox::agent::run(cfg))
        .await
        .expect("the agent loop ends within 5 minutes")
}

fn calls_of(s: &Shared, kind: &str) -> Vec<Value> {
    lock(s)
        .calls
        .iter()
        .filter(|(k, _)| k == kind)
        .map(|(_, v)| v.clone())
        .collect()
}

fn sha256_hex(b: &[u8]) -> String {
    Sha256::digest(b)
        .iter()
        .map(|x| format!("{x:02x}"))
        .collect()
}

fn run_tool(cmd: &mut Command) -> String {
    let out = cmd.output().unwrap_or_else(|e| {
        panic!("cannot run {cmd:?}: {e} (scripts/deps.d/agent.sh installs it)")
    });
    assert!(
        out.status.success(),
        "{cmd:?} failed: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// A disk image made by sfdisk (`label` gpt or dos) with one 16 MiB Linux partition at 1 MiB
/// filled with a recognizable pattern; the image is `size` bytes.
fn make_image(dir: &Path, label: &str, size: u64) -> Vec<u8> {
    let path = dir.join(format!("image-{label}.raw"));
    let f = std::fs::File::create(&path).expect("create image");
    f.set_len(size).expect("size image");
    drop(f);
    let mut child = Command::new("sfdisk")
        .arg("--quiet")
        .arg(&path)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::null())
        .spawn()
        .expect("sfdisk (scripts/deps.d/agent.sh installs fdisk)");
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(format!("label: {label}\nstart=2048, size=32768, type=L\n").as_bytes())
        .expect("sfdisk script");
    assert!(child.wait().expect("sfdisk").success());
    let mut image = std::fs::read(&path).expect("read image");
    for (i, b) in image[MIB as usize..17 * MIB as usize]
        .iter_mut()
        .enumerate()
    {
        *b = (i % 251) as u8 ^ 0x5a;
    }
    image
}

fn compress(tool: &str, data: &[u8]) -> Vec<u8> {
    let mut child = Command::new(tool)
        .args(["-c", "-q"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("{tool}: {e} (scripts/deps.d/agent.sh installs it)"));
    let mut stdin = child.stdin.take().expect("stdin");
    let data = data.to_vec();
    let feeder = std::thread::spawn(move || stdin.write_all(&data));
    let out = child.wait_with_output().expect("compress");
    feeder.join().expect("feeder").expect("write to compressor");
    assert!(out.status.success(), "{tool} failed");
    out.stdout
}

fn disk_file(dir: &Path, size: u64) -> PathBuf {
    let path = dir.join("disk.raw");
    let f = std::fs::File::create(&path).expect("create disk");
    f.set_len(size).expect("size disk");
    path
}

fn deploy_task(name: &str, image: &[u8], format: &str, user_data: &str) -> Value {
    json!({
        "task": "deploy",
        "image_url": format!("/images/{name}"),
        "image_sha256": sha256_hex(image),
        "image_format": format,
        "image_size": image.len(),
        "hostname": "node1",
        "ssh_keys": ["ssh-ed25519 AAAAC3Nza alice@laptop"],
        "user_data": user_data,
        "instance_id": "i-abc123-1",
    })
}

/// Reads a file from the CIDATA filesystem at `offset` of `disk` with mtools.
fn mcopy(disk: &Path, offset: u64, name: &str) -> String {
    run_tool(
        Command::new("mcopy")
            .env("MTOOLS_SKIP_CHECK", "1")
            .arg("-n")
            .arg("-i")
            .arg(format!("{}@@{offset}", disk.display()))
            .arg(format!("::{name}"))
            .arg("-"),
    )
}

/// Checks what a deploy left on `disk`: the image's partition content, a table with the seed
/// as its second partition at `seed_offset`, and the seed's label and files.
fn check_deployed(disk: &Path, image: &[u8], label: &str, seed_offset: u64) {
    let written = std::fs::read(disk).expect("read disk");
    let part = MIB as usize..17 * MIB as usize;
    assert!(
        written[part.clone()] == image[part],
        "partition 1 holds the image's bytes"
    );

    let table: Value =
        serde_json::from_str(&run_tool(Command::new("sfdisk").arg("--json").arg(disk)))
            .expect("sfdisk --json");
    let t = &table["partitiontable"];
    assert_eq!(t["label"], label);
    let parts = t["partitions"].as_array().expect("partitions");
    assert_eq!(parts.len(), 2, "{table}");
    assert_eq!(parts[0]["start"], 2048);
    assert_eq!(
        parts[1]["start"].as_u64().map(|s| s * 512),
        Some(seed_offset)
    );
    assert_eq!(parts[1]["size"].as_u64(), Some(8 * MIB / 512));
    // The seed is the last whole MiB of the disk (before GPT's backup).
    let disk_len = written.len() as u64;
    assert!(seed_offset + 8 * MIB <= disk_len && disk_len - (seed_offset + 8 * MIB) <= MIB);
    if label == "gpt" {
        let verify = run_tool(Command::new("sgdisk").arg("-v").arg(disk));
        assert!(verify.contains("No problems found"), "sgdisk -v: {verify}");
    }

    let probe = run_tool(
        Command::new("blkid")
            .args(["-p", "-o", "export", "-O"])
            .arg(seed_offset.to_string())
            .arg(disk),
    );
    assert!(probe.contains("LABEL=CIDATA"), "blkid: {probe}");
    assert!(probe.contains("TYPE=vfat"), "blkid: {probe}");

    let meta = mcopy(disk, seed_offset, "meta-data");
    assert!(meta.contains("instance-id: \"i-abc123-1\""), "{meta}");
    assert!(meta.contains("local-hostname: \"node1\""), "{meta}");
    assert!(
        meta.contains("ssh-ed25519 AAAAC3Nza alice@laptop"),
        "{meta}"
    );
}

fn only_complete(s: &Shared) -> Value {
    assert_eq!(
        calls_of(s, "fail"),
        Vec::<Value>::new(),
        "no failure reported"
    );
    let done = calls_of(s, "complete");
    assert_eq!(done.len(), 1, "one completion");
    done[0].clone()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deploy_gpt_raw_gz_writes_the_image_and_the_seed() {
    let dir = tempfile::tempdir().expect("tempdir");
    let image = make_image(dir.path(), "gpt", 20 * MIB);
    let gz = compress("gzip", &image);
    let s = appliance(vec![deploy_task("img.raw.gz", &gz, "raw.gz", "")]);
    lock(&s).images.insert("img.raw.gz".into(), gz);
    let url = serve(s.clone(), 0).await;
    let disk = disk_file(dir.path(), 64 * MIB);

    let outcome = run_agent(config(&url, vec![disk.clone()]))
        .await
        .expect("agent");
    assert_eq!(outcome, Outcome::PowerOff);

    let done = only_complete(&s);
    let results = &done["results"];
    assert_eq!(results["written_bytes"], 20 * MIB);
    let seed_offset = results["seed_offset"].as_u64().expect("seed_offset");
    check_deployed(&disk, &image, "gpt", seed_offset);
    assert_eq!(
        mcopy(&disk, seed_offset, "user-data"),
        "#cloud-config\nssh_authorized_keys:\n  - \"ssh-ed25519 AAAAC3Nza alice@laptop\"\n"
    );

    // Progress came before the completion and reached 100%.
    let calls = lock(&s).calls.clone();
    let complete_at = calls
        .iter()
        .position(|(k, _)| k == "complete")
        .expect("complete");
    let progress: Vec<&Value> = calls
        .iter()
        .filter(|(k, _)| k == "progress")
        .map(|(_, v)| v)
        .collect();
    assert!(!progress.is_empty());
    assert!(calls[complete_at..].iter().all(|(k, _)| k != "progress"));
    assert!(
        progress
            .iter()
            .any(|p| p["percent"].as_f64() == Some(100.0))
    );
    assert_eq!(lock(&s).unauthorized, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deploy_mbr_raw_zst_merges_keys_into_cloud_config() {
    let dir = tempfile::tempdir().expect("tempdir");
    let image = make_image(dir.path(), "dos", 20 * MIB);
    let zst = compress("zstd", &image);
    let user_data = "#cloud-config\npackages:\n  - nginx\n";
    let s = appliance(vec![deploy_task("img.raw.zst", &zst, "raw.zst", user_data)]);
    lock(&s).images.insert("img.raw.zst".into(), zst);
    let url = serve(s.clone(), 0).await;
    // A disk that is not a whole number of MiB.
    let disk = disk_file(dir.path(), 48 * MIB + 4096);

    run_agent(config(&url, vec![disk.clone()]))
        .await
        .expect("agent");
    let done = only_complete(&s);
    let seed_offset = done["results"]["seed_offset"]
        .as_u64()
        .expect("seed_offset");
    check_deployed(&disk, &image, "dos", seed_offset);
    assert_eq!(
        mcopy(&disk, seed_offset, "user-data"),
        "#cloud-config\npackages:\n  - nginx\nssh_authorized_keys:\n  - \"ssh-ed25519 AAAAC3Nza alice@laptop\"\n"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deploy_raw_xz_and_raw_to_named_disks() {
    let dir = tempfile::tempdir().expect("tempdir");
    let image = make_image(dir.path(), "gpt", 20 * MIB);
    let xz = compress("xz", &image);
    let mut second = deploy_task("img.raw", &image, "raw", "#!/bin/sh\necho hi\n");
    second["target_disk"] = json!("b.raw");
    let mut first = deploy_task("img.raw.xz", &xz, "raw.xz", "");
    first["target_disk"] = json!("a.raw");
    let s = appliance(vec![first, second]);
    lock(&s).images.insert("img.raw.xz".into(), xz);
    lock(&s).images.insert("img.raw".into(), image.clone());
    let url = serve(s.clone(), 0).await;
    let a = dir.path().join("a.raw");
    let b = dir.path().join("b.raw");
    for p in [&a, &b] {
        std::fs::File::create(p)
            .and_then(|f| f.set_len(40 * MIB))
            .expect("disk");
    }
    run_agent(config(&url, vec![a.clone(), b.clone()]))
        .await
        .expect("agent");
    assert_eq!(calls_of(&s, "fail"), Vec::<Value>::new());
    let done = calls_of(&s, "complete");
    assert_eq!(done.len(), 2);
    let off_a = done[0]["results"]["seed_offset"].as_u64().expect("offset");
    let off_b = done[1]["results"]["seed_offset"].as_u64().expect("offset");
    check_deployed(&a, &image, "gpt", off_a);
    check_deployed(&b, &image, "gpt", off_b);
    assert_eq!(mcopy(&b, off_b, "user-data"), "#!/bin/sh\necho hi\n");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn corrupted_image_fails_with_the_checksum_and_wipes_the_table() {
    let dir = tempfile::tempdir().expect("tempdir");
    let image = make_image(dir.path(), "gpt", 20 * MIB);
    let gz = compress("gzip", &image);
    let task = deploy_task("img.raw.gz", &gz, "raw.gz", "");
    let mut damaged = gz.clone();
    let mid = damaged.len() / 2;
    damaged[mid] ^= 0x55;
    let s = appliance(vec![task]);
    lock(&s).images.insert("img.raw.gz".into(), damaged);
    let url = serve(s.clone(), 0).await;
    let disk = disk_file(dir.path(), 64 * MIB);
    std::fs::write(&disk, vec![0xeeu8; 64 * MIB as usize]).expect("fill disk");

    let outcome = run_agent(config(&url, vec![disk.clone()]))
        .await
        .expect("agent");
    assert_eq!(outcome, Outcome::PowerOff);
    assert_eq!(
        calls_of(&s, "complete"),
        Vec::<Value>::new(),
        "nothing claims success"
    );
    let fails = calls_of(&s, "fail");
    assert_eq!(fails.len(), 1);
    let reason = fails[0]["reason"].as_str().expect("reason");
    assert!(reason.contains("checksum mismatch"), "{reason}");
    assert!(
        reason.contains(&sha256_hex(&gz)),
        "names the expected digest: {reason}"
    );
    let written = std::fs::read(&disk).expect("read disk");
    assert!(
        written[..MIB as usize].iter().all(|b| *b == 0),
        "head wiped"
    );
    assert!(
        written[written.len() - MIB as usize..]
            .iter()
            .all(|b| *b == 0),
        "tail wiped"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wrong_size_and_too_small_disk_fail() {
    let dir = tempfile::tempdir().expect("tempdir");
    let image = make_image(dir.path(), "dos", 20 * MIB);
    // The image alone fills the disk: no room for the seed partition.
    let s = appliance(vec![deploy_task("img.raw", &image, "raw", "")]);
    lock(&s).images.insert("img.raw".into(), image.clone());
    let url = serve(s.clone(), 0).await;
    let disk = disk_file(dir.path(), 20 * MIB);
    run_agent(config(&url, vec![disk.clone()]))
        .await
        .expect("agent");
    let fails = calls_of(&s, "fail");
    assert_eq!(fails.len(), 1);
    let reason = fails[0]["reason"].as_str().expect("reason");
    assert!(reason.contains("no room"), "{reason}");

    // An image larger than the disk stops at the disk's end instead of growing the file.
    let s = appliance(vec![deploy_task("img.raw", &image, "raw", "")]);
    lock(&s).images.insert("img.raw".into(), image);
    let url = serve(s.clone(), 0).await;
    let disk = disk_file(dir.path(), 10 * MIB);
    run_agent(config(&url, vec![disk.clone()]))
        .await
        .expect("agent");
    let fails = calls_of(&s, "fail");
    assert_eq!(fails.len(), 1);
    let reason = fails[0]["reason"].as_str().expect("reason");
    assert!(reason.contains("larger than the"), "{reason}");
    assert_eq!(std::fs::metadata(&disk).expect("disk").len(), 10 * MIB);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_agent_waits_out_a_refusing_then_failing_appliance() {
    // Nothing listens on the port at first: connections are refused.
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        l.local_addr().expect("addr").port()
    };
    let url = format!("http://127.0.0.1:{port}");
    let s = appliance(vec![json!({"task": "commission"})]);
    lock(&s).task_503s = 3;
    let agent = tokio::spawn(run_agent(config(&url, vec![])));
    // Let the agent meet a few refusals (its first delays are 20, 40, 80 ms).
    tokio::time::sleep(Duration::from_millis(400)).await;
    assert!(!agent.is_finished(), "the agent keeps retrying");
    serve(s.clone(), port).await;
    let outcome = agent.await.expect("join").expect("agent");
    assert_eq!(outcome, Outcome::PowerOff);
    // Three 503s, the commission task, then poweroff.
    assert_eq!(lock(&s).task_gets, 5);
    let inv = calls_of(&s, "inventory");
    assert_eq!(inv.len(), 1);
    assert!(inv[0]["cpu_count"].as_u64().unwrap_or(0) >= 1);
    assert!(inv[0]["memory_mib"].as_u64().unwrap_or(0) > 0);
    assert_eq!(inv[0]["architecture"], "amd64/generic");
    let done = only_complete(&s);
    assert!(
        done["message"]
            .as_str()
            .unwrap_or("")
            .starts_with("commissioned")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_4xx_is_final_and_the_budget_is_bounded() {
    let s = appliance(vec![]);
    let url = serve(s.clone(), 0).await;
    let mut cfg = config(&url, vec![]);
    cfg.token = Some("wrong".into());
    match run_agent(cfg).await {
        Err(AgentError::Client(ClientError::Refused { status, .. })) => assert_eq!(status, 401),
        other => panic!("expected a 401 refusal, got {other:?}"),
    }
    assert_eq!(lock(&s).unauthorized, 1, "a 4xx is not retried");

    // Nobody ever listens: the agent gives up after its budget.
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        l.local_addr().expect("addr").port()
    };
    let mut cfg = config(&format!("http://127.0.0.1:{port}"), vec![]);
    cfg.policy.budget = Duration::from_millis(300);
    match run_agent(cfg).await {
        Err(AgentError::Client(ClientError::GaveUp { attempts, .. })) => assert!(attempts >= 2),
        other => panic!("expected to give up, got {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn enlist_then_tasks_with_the_new_token() {
    let s = appliance(vec![
        json!({"task": "wait", "seconds": 1}),
        json!({"task": "test", "tests": ["memory"]}),
        json!({"task": "dance"}),
        json!({"task": "reboot"}),
    ]);
    let url = serve(s.clone(), 0).await;
    let mut cfg = config(&url, vec![]);
    cfg.token = None;
    cfg.enlist = true;
    let outcome = run_agent(cfg).await.expect("agent");
    assert_eq!(outcome, Outcome::Reboot);
    let enlist = calls_of(&s, "enlist");
    assert_eq!(enlist.len(), 1);
    assert!(enlist[0]["disks"].is_array());
    assert_eq!(
        lock(&s).unauthorized,
        0,
        "every later call carried the enlisted token"
    );
    let done = calls_of(&s, "complete");
    assert_eq!(done.len(), 1);
    assert_eq!(done[0]["results"]["memory"]["ok"], true);
    let fails = calls_of(&s, "fail");
    assert_eq!(fails.len(), 1, "the unknown task is reported");
    assert!(fails[0]["reason"].as_str().unwrap_or("").contains("dance"));
}

fn disk_with_pattern(dir: &Path, name: &str, size: u64) -> PathBuf {
    let p = dir.join(name);
    std::fs::write(&p, vec![0xabu8; size as usize]).expect("disk");
    p
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn erase_quick_full_and_secure_on_files() {
    let dir = tempfile::tempdir().expect("tempdir");
    // Quick: a disk with an MBR partition at 1..17 MiB; the heads and tails of disk and
    // partition are zeroed, the rest is left.
    let image = make_image(dir.path(), "dos", 32 * MIB);
    let quick = dir.path().join("quick.raw");
    std::fs::write(&quick, &image).expect("quick disk");
    let full = disk_with_pattern(dir.path(), "full.raw", 8 * MIB + 512);
    let secure = disk_with_pattern(dir.path(), "secure.raw", 4 * MIB);

    // An erase task erases every device the agent has: one agent run per disk, each ended by
    // the poweroff queued after its task.
    let s = appliance(vec![
        json!({"task": "erase", "mode": "quick"}),
        json!({"task": "poweroff"}),
        json!({"task": "erase", "mode": "full"}),
        json!({"task": "poweroff"}),
        json!({"task": "erase", "mode": "secure"}),
    ]);
    let url = serve(s.clone(), 0).await;
    for disk in [&quick, &full, &secure] {
        let outcome = run_agent(config(&url, vec![disk.clone()]))
            .await
            .expect("agent");
        assert_eq!(outcome, Outcome::PowerOff);
    }
    let q = std::fs::read(&quick).expect("read");
    let m = MIB as usize;
    assert!(
        q[..m].iter().all(|b| *b == 0),
        "disk head and partition table zeroed"
    );
    assert!(q[q.len() - m..].iter().all(|b| *b == 0), "disk tail zeroed");
    // Partition 1 is 1..17 MiB: its head (1..2 MiB) and tail (16..17 MiB) are zeroed.
    assert!(q[m..2 * m].iter().all(|b| *b == 0));
    assert!(q[16 * m..17 * m].iter().all(|b| *b == 0));
    assert!(
        q[2 * m..16 * m] == image[2 * m..16 * m],
        "the middle is left"
    );
    assert!(std::fs::read(&full).expect("read").iter().all(|b| *b == 0));
    assert!(
        std::fs::read(&secure)
            .expect("read")
            .iter()
            .all(|b| *b == 0)
    );
    let done = calls_of(&s, "complete");
    assert_eq!(done.len(), 3);
    let secure_msg = done[2]["message"].as_str().unwrap_or("");
    assert!(
        secure_msg.contains("secure erase not supported"),
        "{secure_msg}"
    );
    assert!(calls_of(&s, "fail").is_empty());
}

struct Loop(String);

impl Drop for Loop {
    fn drop(&mut self) {
        let _ = Command::new("losetup").arg("-d").arg(&self.0).status();
    }
}

fn is_root() -> bool {
    // SAFETY: geteuid has no preconditions.
    unsafe { libc::geteuid() == 0 }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn loop_device_deploy_then_secure_erase() {
    if !is_root() {
        eprintln!("skipped: loop devices need root (CI runs as root)");
        return;
    }
    let dir = tempfile::tempdir().expect("tempdir");
    let image = make_image(dir.path(), "gpt", 20 * MIB);
    let zst = compress("zstd", &image);
    let backing = disk_file(dir.path(), 64 * MIB);
    let dev = run_tool(Command::new("losetup").args(["-f", "--show"]).arg(&backing))
        .trim()
        .to_string();
    let _guard = Loop(dev.clone());

    let s = appliance(vec![
        deploy_task("img.raw.zst", &zst, "raw.zst", ""),
        json!({"task": "poweroff"}),
        json!({"task": "erase", "mode": "secure"}),
    ]);
    lock(&s).images.insert("img.raw.zst".into(), zst);
    let url = serve(s.clone(), 0).await;
    let dev_path = PathBuf::from(&dev);
    run_agent(config(&url, vec![dev_path.clone()]))
        .await
        .expect("deploy");
    let done = only_complete(&s);
    let seed_offset = done["results"]["seed_offset"]
        .as_u64()
        .expect("seed_offset");
    check_deployed(&dev_path, &image, "gpt", seed_offset);

    run_agent(config(&url, vec![dev_path.clone()]))
        .await
        .expect("erase");
    let done = calls_of(&s, "complete");
    assert_eq!(done.len(), 2);
    let msg = done[1]["message"].as_str().unwrap_or("");
    let disks = done[1]["results"]["disks"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    assert_eq!(disks.len(), 1);
    if disks[0]["method"] == "secure-discard" {
        // The loop device passed the discard on: its backing file reads back as zeros.
        assert!(
            disks[0]["note"]
                .as_str()
                .unwrap_or("")
                .contains("BLKSECDISCARD")
        );
    } else {
        assert!(msg.contains("secure erase not supported"), "{msg}");
        assert!(
            std::fs::read(&dev_path)
                .expect("read")
                .iter()
                .all(|b| *b == 0)
        );
    }
    assert!(calls_of(&s, "fail").is_empty());
}
