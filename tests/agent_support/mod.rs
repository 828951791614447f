//! The fake appliance and disk-image helpers the agent tests share: a small axum server on
//! 127.0.0.1 that speaks the agent protocol, hands out tasks, serves images and records every
//! report; images made with sfdisk and compressed with the real gzip/xz/zstd; checks that read
//! a deployed disk back with sfdisk, sgdisk, blkid and mtools.
#![allow(dead_code)] // each test file uses a part

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
use rackbox::agent::{AgentConfig, AgentError, Outcome, RetryPolicy};
use serde_json::{Value, json};
use sha2::{Digest, Sha256};

pub const MIB: u64 = 1024 * 1024;

/// What the fake appliance knows and saw.
#[derive(Default)]
pub struct Appliance {
    pub tasks: VecDeque<Value>,
    /// (endpoint, body) of every POST, in arrival order.
    pub calls: Vec<(String, Value)>,
    /// The bearer token every call but /enlist must carry.
    pub token: String,
    /// Answer 503 to this many GET /task before answering.
    pub task_503s: u32,
    pub task_gets: u32,
    pub unauthorized: u32,
    pub images: HashMap<String, Vec<u8>>,
    /// Break off this many image downloads: each sends `break_after` bytes, then the body fails
    /// (what the agent sees when the appliance is killed mid-download).
    pub image_breaks: u32,
    pub break_after: usize,
    /// The `Range` header of every image GET, in order ("" for none).
    pub image_ranges: Vec<String>,
}

pub type Shared = Arc<Mutex<Appliance>>;

pub fn lock(s: &Shared) -> std::sync::MutexGuard<'_, Appliance> {
    s.lock().unwrap_or_else(|p| p.into_inner())
}

pub fn authorized(s: &Shared, headers: &HeaderMap) -> bool {
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

pub async fn task(State(s): State<Shared>, headers: HeaderMap) -> Response {
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

pub async fn report(
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

/// An image, whole or from `Range: bytes=N-` (206); the first `image_breaks` downloads break
/// off after `break_after` bytes.
pub async fn image(
    State(s): State<Shared>,
    UrlPath(name): UrlPath<String>,
    headers: HeaderMap,
) -> Response {
    let mut a = lock(&s);
    let range = headers
        .get("range")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_string();
    a.image_ranges.push(range.clone());
    let Some(whole) = a.images.get(&name).cloned() else {
        return StatusCode::NOT_FOUND.into_response();
    };
    let from: usize = range
        .strip_prefix("bytes=")
        .and_then(|r| r.strip_suffix('-'))
        .and_then(|n| n.parse().ok())
        .unwrap_or(0);
    let body = whole[from.min(whole.len())..].to_vec();
    let status = if range.is_empty() {
        StatusCode::OK
    } else {
        StatusCode::PARTIAL_CONTENT
    };
    let content_range = format!(
        "bytes {from}-{}/{}",
        whole.len().saturating_sub(1),
        whole.len()
    );
    if a.image_breaks > 0 {
        a.image_breaks -= 1;
        let cut = a.break_after.min(body.len());
        let head = Bytes::copy_from_slice(&body[..cut]);
        // The error comes a moment after the head, so that the answer's headers and first bytes
        // reach the agent before the connection breaks.
        let stream = futures_util::StreamExt::chain(
            futures_util::stream::iter(vec![Ok::<Bytes, std::io::Error>(head)]),
            futures_util::stream::once(async {
                tokio::time::sleep(Duration::from_millis(300)).await;
                Err(std::io::Error::other("the appliance went away"))
            }),
        );
        return (
            status,
            [("content-range", content_range)],
            axum::body::Body::from_stream(stream),
        )
            .into_response();
    }
    (status, [("content-range", content_range)], body).into_response()
}

pub fn router(s: Shared) -> Router {
    Router::new()
        .route("/api/agent/v1/task", get(task))
        .route("/api/agent/v1/{kind}", post(report))
        .route("/images/{name}", get(image))
        .with_state(s)
}

/// Starts the fake appliance on 127.0.0.1:`port` (0: any).
pub async fn serve(s: Shared, port: u16) -> String {
    let listener = tokio::net::TcpListener::bind(("127.0.0.1", port))
        .await
        .expect("bind 127.0.0.1");
    let addr = listener.local_addr().expect("local addr");
    tokio::spawn(async move {
        let _ = axum::serve(listener, router(s)).await;
    });
    format!("http://{addr}")
}

pub fn appliance(tasks: Vec<Value>) -> Shared {
    Arc::new(Mutex::new(Appliance {
        tasks: tasks.into(),
        token: "tok-1".into(),
        ..Default::default()
    }))
}

pub fn fast_policy() -> RetryPolicy {
    RetryPolicy {
        initial: Duration::from_millis(20),
        max_delay: Duration::from_millis(200),
        budget: Duration::from_secs(30),
        request_timeout: Duration::from_secs(20),
    }
}

pub fn config(url: &str, devices: Vec<PathBuf>) -> AgentConfig {
    let mut cfg = AgentConfig::new(url, Some("tok-1".into()));
    cfg.devices = devices;
    cfg.policy = fast_policy();
    cfg.max_wait = Duration::from_millis(50);
    cfg.memory_test_mib = 4;
    cfg
}

/// Runs the agent loop to its end, bounded.
pub async fn run_agent(cfg: AgentConfig) -> Result<Outcome, AgentError> {
    tokio::time::timeout(Duration::from_secs(300), rackbox::agent::run(cfg))
        .await
        .expect("the agent loop ends within 5 minutes")
}

pub fn calls_of(s: &Shared, kind: &str) -> Vec<Value> {
    lock(s)
        .calls
        .iter()
        .filter(|(k, _)| k == kind)
        .map(|(_, v)| v.clone())
        .collect()
}

pub fn sha256_hex(b: &[u8]) -> String {
    Sha256::digest(b)
        .iter()
        .map(|x| format!("{x:02x}"))
        .collect()
}

pub fn run_tool(cmd: &mut Command) -> String {
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
pub fn make_image(dir: &Path, label: &str, size: u64) -> Vec<u8> {
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

pub fn compress(tool: &str, data: &[u8]) -> Vec<u8> {
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

pub fn disk_file(dir: &Path, size: u64) -> PathBuf {
    let path = dir.join("disk.raw");
    let f = std::fs::File::create(&path).expect("create disk");
    f.set_len(size).expect("size disk");
    path
}

pub fn deploy_task(name: &str, image: &[u8], format: &str, user_data: &str) -> Value {
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
pub fn mcopy(disk: &Path, offset: u64, name: &str) -> String {
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
pub fn check_deployed(disk: &Path, image: &[u8], label: &str, seed_offset: u64) {
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

pub fn only_complete(s: &Shared) -> Value {
    assert_eq!(
        calls_of(s, "fail"),
        Vec::<Value>::new(),
        "no failure reported"
    );
    let done = calls_of(s, "complete");
    assert_eq!(done.len(), 1, "one completion");
    done[0].clone()
}
