//! Downloads over http(s) (rustls; never OpenSSL) that survive interruptions.
//!
//! The bytes received so far stay in the import's temp file and its running hash; after a
//! dropped connection or a stalled read the download asks for the rest with
//! `Range: bytes=<received>-` (and `If-Range` with the first answer's validator, so a file that
//! changed upstream is fetched whole again instead of spliced). A server that ignores Range and
//! answers 200 makes the import start over from an empty file. Only attempts that gain nothing
//! count against the limit, so a long download over a flaky link keeps going while it moves.

use std::sync::atomic::Ordering;
use std::time::Duration;

use futures_util::StreamExt;
use reqwest::StatusCode;
use reqwest::header::{CONTENT_RANGE, ETAG, IF_RANGE, LAST_MODIFIED, RANGE};

use super::blob::Ingest;
use super::import::ImportTask;
use super::{ImageCache, ImageError};
use crate::model::agent_wire::content_range;
use crate::model::error::error_chain;

/// Why a download stopped early.
pub(super) enum Stop {
    /// The writer refused more bytes (disk full, too long): its outcome says why.
    Writer,
    Failed(ImageError),
}

pub(super) async fn download(
    cache: &ImageCache,
    url: &reqwest::Url,
    ingest: &Ingest,
    task: &ImportTask,
) -> Result<(), Stop> {
    let max_failures = cache.options.fetch_attempts.max(1);
    let mut received: u64 = 0;
    let mut validator: Option<String> = None;
    let mut total: Option<u64> = None;
    let mut failures = 0u32;
    let mut last_error = String::new();
    let mut attempt = 0u32;
    while failures < max_failures {
        if attempt > 0 {
            // Back off a little more after each fruitless attempt.
            let wait = Duration::from_millis(200u64 << failures.min(5));
            tokio::time::sleep(wait.min(Duration::from_secs(5))).await;
        }
        attempt += 1;
        task.attempts.store(attempt, Ordering::Relaxed);
        let mut req = cache.http.get(url.clone());
        if received > 0 {
            req = req.header(RANGE, format!("bytes={received}-"));
            if let Some(v) = &validator {
                req = req.header(IF_RANGE, v.as_str());
            }
        }
        let resp = match req.send().await {
            Ok(r) => r,
            Err(e) => {
                last_error = error_chain(&e);
                failures += 1;
                continue;
            }
        };
        let status = resp.status();
        match status {
            StatusCode::PARTIAL_CONTENT if received > 0 => {
                let range = resp
                    .headers()
                    .get(CONTENT_RANGE)
                    .and_then(|v| v.to_str().ok())
                    .and_then(content_range);
                match range {
                    Some((start, t)) if start == received => {
                        if t.is_some() {
                            total = t;
                        }
                    }
                    _ => {
                        return Err(Stop::Failed(ImageError::Fetch(format!(
                            "{url} answered a range that does not start at byte {received}"
                        ))));
                    }
                }
            }
            StatusCode::OK => {
                if received > 0 {
                    tracing::info!(%url, received, "server sent the whole file again; starting over");
                    if ingest.restart().await.is_err() {
                        return Err(Stop::Writer);
                    }
                    received = 0;
                }
                total = resp.content_length();
                validator = resp
                    .headers()
                    .get(ETAG)
                    .filter(|v| !v.as_bytes().starts_with(b"W/"))
                    .or_else(|| resp.headers().get(LAST_MODIFIED))
                    .and_then(|v| v.to_str().ok())
                    .map(str::to_string);
                if let Some(size) = total {
                    // Refuse before writing when it cannot fit.
                    let free = cache.blobs.available().map_err(Stop::Failed)?;
                    if size > free {
                        return Err(Stop::Failed(ImageError::DiskFull {
                            dir: cache.blobs.root().to_path_buf(),
                            needed: size,
                            free,
                            reserve: cache.options.reserve_bytes,
                        }));
                    }
                }
            }
            StatusCode::RANGE_NOT_SATISFIABLE if received > 0 && total == Some(received) => {
                return Ok(());
            }
            s if s.is_server_error()
                || s == StatusCode::REQUEST_TIMEOUT
                || s == StatusCode::TOO_MANY_REQUESTS =>
            {
                last_error = format!("{url} answered {s}");
                failures += 1;
                continue;
            }
            s => {
                return Err(Stop::Failed(ImageError::Fetch(format!(
                    "{url} answered {s}"
                ))));
            }
        }
        task.set_total(total);
        let before = received;
        let mut body = resp.bytes_stream();
        let mut broken = None;
        while let Some(chunk) = body.next().await {
            match chunk {
                Ok(bytes) => {
                    received += bytes.len() as u64;
                    if ingest.write(bytes).await.is_err() {
                        return Err(Stop::Writer);
                    }
                }
                Err(e) => {
                    broken = Some(error_chain(&e));
                    break;
                }
            }
        }
        match broken {
            None if total.is_none_or(|t| t == received) => return Ok(()),
            None => last_error = format!("the body ended at byte {received} of {total:?}"),
            Some(e) => last_error = e,
        }
        tracing::info!(%url, received, error = %last_error, "download interrupted; resuming");
        if received > before {
            failures = 0;
        } else {
            failures += 1;
        }
    }
    Err(Stop::Failed(ImageError::Fetch(format!(
        "{url}: gave up after {attempt} attempts: {last_error}"
    ))))
}

/// Fetches a small document (a manifest), at most `limit` bytes.
pub(super) async fn fetch_small(
    cache: &ImageCache,
    url: &reqwest::Url,
    limit: usize,
) -> Result<Vec<u8>, ImageError> {
    let resp = cache
        .http
        .get(url.clone())
        .timeout(Duration::from_secs(60))
        .send()
        .await
        .map_err(|e| ImageError::Fetch(format!("{url}: {}", error_chain(&e))))?;
    if !resp.status().is_success() {
        return Err(ImageError::Fetch(format!(
            "{url} answered {}",
            resp.status()
        )));
    }
    let mut out = Vec::new();
    let mut body = resp.bytes_stream();
    while let Some(chunk) = body.next().await {
        let chunk = chunk.map_err(|e| ImageError::Fetch(format!("{url}: {}", error_chain(&e))))?;
        if out.len() + chunk.len() > limit {
            return Err(ImageError::Fetch(format!(
                "{url} is larger than {limit} bytes; is it a manifest?"
            )));
        }
        out.extend_from_slice(&chunk);
    }
    Ok(out)
}
