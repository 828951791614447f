//! Helpers for the image cache tests: a tiny HTTP file server on loopback that can drop a
//! connection mid-body, pause mid-body until told to go on, and honour Range; upload and
//! import-polling helpers against a real `rackbox serve`.
#![allow(dead_code)]

use std::collections::HashMap;
use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::Value;
use sha2::{Digest, Sha256};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;
use tokio::sync::Notify;

pub fn sha256_hex(data: &[u8]) -> String {
    Sha256::digest(data)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// Deterministic, incompressible-looking bytes.
pub fn data(len: usize, seed: u64) -> Vec<u8> {
    let mut x = seed
        .wrapping_mul(6364136223846793005)
        .wrapping_add(1442695040888963407)
        | 1;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            (x >> 24) as u8
        })
        .collect()
}

/// One file the server offers.
#[derive(Clone, Default)]
pub struct Entry {
    pub data: Arc<Vec<u8>>,
    /// The first request gets the headers and this many body bytes, then the connection closes.
    pub drop_first_at: Option<usize>,
    /// Every full (non-Range) request sends this many bytes, then waits for the Notify.
    pub pause_at: Option<(usize, Arc<Notify>)>,
    /// Answer Range requests with 206 (else always the whole file with 200).
    pub honour_range: bool,
    /// Send no Content-Length: the body ends when the connection closes, so the client cannot
    /// know the size in advance.
    pub no_length: bool,
}

#[derive(Default)]
pub struct Seen {
    /// Requests per path.
    pub hits: HashMap<String, usize>,
    /// The Range header of each request, in order, per path.
    pub ranges: HashMap<String, Vec<Option<String>>>,
}

/// A loopback HTTP/1.1 server, one request per connection.
pub struct FileServer {
    pub url: String,
    pub files: Arc<Mutex<HashMap<String, Entry>>>,
    pub seen: Arc<Mutex<Seen>>,
    served: Arc<AtomicUsize>,
}

impl FileServer {
    pub async fn start() -> FileServer {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let files: Arc<Mutex<HashMap<String, Entry>>> = Arc::default();
        let seen: Arc<Mutex<Seen>> = Arc::default();
        let served = Arc::new(AtomicUsize::new(0));
        let (f, s, n) = (files.clone(), seen.clone(), served.clone());
        tokio::spawn(async move {
            while let Ok((socket, _)) = listener.accept().await {
                let (f, s, n) = (f.clone(), s.clone(), n.clone());
                tokio::spawn(async move {
                    let _ = handle(socket, f, s, n).await;
                });
            }
        });
        FileServer {
            url,
            files,
            seen,
            served,
        }
    }

    pub fn put(&self, path: &str, entry: Entry) {
        self.files.lock().unwrap().insert(path.to_string(), entry);
    }

    pub fn hits(&self, path: &str) -> usize {
        self.seen
            .lock()
            .unwrap()
            .hits
            .get(path)
            .copied()
            .unwrap_or(0)
    }

    pub fn ranges(&self, path: &str) -> Vec<Option<String>> {
        self.seen
            .lock()
            .unwrap()
            .ranges
            .get(path)
            .cloned()
            .unwrap_or_default()
    }
}

async fn handle(
    mut socket: tokio::net::TcpStream,
    files: Arc<Mutex<HashMap<String, Entry>>>,
    seen: Arc<Mutex<Seen>>,
    served: Arc<AtomicUsize>,
) -> std::io::Result<()> {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    while !buf.windows(4).any(|w| w == b"\r\n\r\n") {
        let n = socket.read(&mut chunk).await?;
        if n == 0 || buf.len() > 65536 {
            return Ok(());
        }
        buf.extend_from_slice(&chunk[..n]);
    }
    let text = String::from_utf8_lossy(&buf).to_string();
    let mut lines = text.split("\r\n");
    let request_line = lines.next().unwrap_or_default();
    let path = request_line.split(' ').nth(1).unwrap_or("/").to_string();
    let mut range = None;
    for line in lines {
        if let Some((k, v)) = line.split_once(':')
            && k.trim().eq_ignore_ascii_case("range")
        {
            range = Some(v.trim().to_string());
        }
    }
    let hit = {
        let mut s = seen.lock().unwrap();
        let hit = *s.hits.entry(path.clone()).or_default();
        *s.hits.get_mut(&path).unwrap() += 1;
        s.ranges
            .entry(path.clone())
            .or_default()
            .push(range.clone());
        hit
    };
    served.fetch_add(1, Ordering::Relaxed);
    let entry = files.lock().unwrap().get(&path).cloned();
    let Some(entry) = entry else {
        socket
            .write_all(b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")
            .await?;
        return Ok(());
    };
    let len = entry.data.len();
    let start = range
        .as_deref()
        .filter(|_| entry.honour_range)
        .and_then(|r| r.strip_prefix("bytes="))
        .and_then(|r| r.strip_suffix('-'))
        .and_then(|r| r.parse::<usize>().ok());
    let head = match start {
        Some(s) => format!(
            "HTTP/1.1 206 Partial Content\r\nContent-Length: {}\r\nContent-Range: bytes {s}-{}/{len}\r\nETag: \"v1\"\r\nAccept-Ranges: bytes\r\nConnection: close\r\n\r\n",
            len - s,
            len - 1
        ),
        None if entry.no_length => "HTTP/1.1 200 OK\r\nConnection: close\r\n\r\n".to_string(),
        None => format!(
            "HTTP/1.1 200 OK\r\nContent-Length: {len}\r\nETag: \"v1\"\r\nAccept-Ranges: bytes\r\nConnection: close\r\n\r\n"
        ),
    };
    socket.write_all(head.as_bytes()).await?;
    let body = &entry.data[start.unwrap_or(0)..];
    if hit == 0
        && let Some(at) = entry.drop_first_at
    {
        socket.write_all(&body[..at.min(body.len())]).await?;
        socket.flush().await?;
        // Drop the connection mid-body.
        return Ok(());
    }
    if start.is_none()
        && let Some((at, go_on)) = &entry.pause_at
    {
        let at = (*at).min(body.len());
        socket.write_all(&body[..at]).await?;
        socket.flush().await?;
        go_on.notified().await;
        socket.write_all(&body[at..]).await?;
    } else {
        socket.write_all(body).await?;
    }
    socket.flush().await?;
    Ok(())
}

/// Uploads bytes as an image (query: `query`). Answers (status, JSON).
pub async fn upload(
    http: &reqwest::Client,
    base: &str,
    token: &str,
    query: &str,
    bytes: Vec<u8>,
) -> (u16, Value) {
    let r = http
        .post(format!("{base}/api/v1/images?{query}"))
        .bearer_auth(token)
        .header("content-type", "application/octet-stream")
        .body(bytes)
        .send()
        .await
        .unwrap();
    let status = r.status().as_u16();
    let text = r.text().await.unwrap();
    (
        status,
        serde_json::from_str(&text).unwrap_or(Value::String(text)),
    )
}

/// Polls an import until it is no longer running (bounded: 60 s).
pub async fn wait_import(http: &reqwest::Client, base: &str, token: &str, id: &str) -> Value {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let v: Value = http
            .get(format!("{base}/api/v1/images/imports/{id}"))
            .bearer_auth(token)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        if v["state"] != "running" {
            return v;
        }
        assert!(Instant::now() < deadline, "import {id} still running: {v}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Polls an import until it has received at least `bytes` (bounded: 60 s).
pub async fn wait_progress(
    http: &reqwest::Client,
    base: &str,
    token: &str,
    id: &str,
    bytes: u64,
) -> Value {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let v: Value = http
            .get(format!("{base}/api/v1/images/imports/{id}"))
            .bearer_auth(token)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        if v["bytes_done"].as_u64().unwrap_or(0) >= bytes {
            return v;
        }
        assert_eq!(v["state"], "running", "import {id} stopped early: {v}");
        assert!(
            Instant::now() < deadline,
            "import {id} made no progress: {v}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// File names in a directory (empty when it does not exist).
pub fn names_in(dir: &Path) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(dir)
        .map(|it| {
            it.filter_map(|e| e.ok())
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default();
    v.sort();
    v
}
