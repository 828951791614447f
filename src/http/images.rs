//! Image cache handlers: the /api/v1/images and /api/v1/boot-resources API, and the downloads
//! machines make (`/images/<name>`, `/boot-resources/<arch>/<name>`).
//!
//! Downloads are streamed from the blob file (never read whole into memory) and honour a single
//! `Range` (with `If-Range`), so the agent can resume a large image and several machines can
//! read at once while imports run. They are anonymous for now: a machine in the ephemeral
//! environment has no user token, and images hold no secrets (user data and keys travel
//! separately). A per-boot token will guard them later.

use std::io::SeekFrom;
use std::net::SocketAddr;
use std::path::Path as FsPath;

use axum::Json;
use axum::body::Body;
use axum::extract::{ConnectInfo, Extension, Path, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use futures_util::TryStreamExt;
use tokio::io::{AsyncReadExt, AsyncSeekExt};

use super::AppState;
use super::api::Created;
use super::error::{ApiError, ApiResult, kind_code, status_of};
use super::extract::{Caller, JsonBody, QueryArgs};
use crate::images::BootKind;
use crate::images::{
    BootRequest, BootView, GcReport, ImageEdit, ImageError, ImageList, ImageRequest, ImageView,
    ImportView, Source, SyncReport, SyncRequest,
};
use crate::model::timeline::{FileKind, Step};

impl From<ImageError> for ApiError {
    fn from(e: ImageError) -> Self {
        let code = match &e {
            ImageError::ChecksumMismatch { .. } => "checksum_mismatch",
            ImageError::SizeMismatch { .. } => "size_mismatch",
            ImageError::WrongFormat { .. } => "wrong_format",
            ImageError::Aborted => "interrupted",
            ImageError::Fetch(_) => "download_failed",
            _ => kind_code(e.kind()),
        };
        let status = status_of(e.kind());
        if status.is_server_error() {
            tracing::error!(error = %e, "image request failed");
        }
        ApiError {
            status,
            code,
            message: e.to_string(),
            machine_status: None,
            retry_after: None,
        }
    }
}

/// An upload's body as its import's source. Its Content-Length, when sent, is the size the
/// upload must have unless the query says one (checked against free space first, and against
/// the bytes that arrive). An upload names no URL: downloading one is `fetch_path`'s work.
fn upload_source(
    url: Option<&str>,
    size: &mut Option<u64>,
    fetch_path: &str,
    headers: &HeaderMap,
    body: Body,
) -> ApiResult<Source> {
    if url.is_some() {
        return Err(ApiError::bad_request(format!(
            "an upload carries its bytes in the body; to download from a URL use POST {fetch_path}"
        )));
    }
    let length = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse().ok());
    *size = size.or(length);
    let stream = body.into_data_stream().map_err(|e| e.to_string());
    Ok(Source::Stream(Box::pin(stream)))
}

pub(crate) async fn list_images(State(s): State<AppState>) -> ApiResult<Json<ImageList>> {
    Ok(Json(s.images.list_images()?))
}

pub(crate) async fn upload_image(
    State(s): State<AppState>,
    QueryArgs(mut req): QueryArgs<ImageRequest>,
    headers: HeaderMap,
    body: Body,
) -> ApiResult<Created<ImageView>> {
    let fetch = "/api/v1/images/fetch";
    let source = upload_source(req.url.as_deref(), &mut req.size, fetch, &headers, body)?;
    Ok(Created(s.images.import_image(req, source).await?))
}

pub(crate) async fn fetch_image(
    State(s): State<AppState>,
    JsonBody(req): JsonBody<ImageRequest>,
) -> ApiResult<(StatusCode, Json<ImportView>)> {
    Ok((StatusCode::ACCEPTED, Json(s.images.start_fetch_image(req)?)))
}

pub(crate) async fn show_image(
    State(s): State<AppState>,
    Path(name): Path<String>,
) -> ApiResult<Json<ImageView>> {
    Ok(Json(s.images.image(&name)?))
}

pub(crate) async fn edit_image(
    State(s): State<AppState>,
    Path(name): Path<String>,
    JsonBody(edit): JsonBody<ImageEdit>,
) -> ApiResult<Json<ImageView>> {
    Ok(Json(s.images.edit_image(&name, edit).await?))
}

/// Refused while a machine deploys the image (the service's rule).
pub(crate) async fn delete_image(
    Caller(s, p): Caller,
    Path(name): Path<String>,
) -> ApiResult<StatusCode> {
    s.service.delete_image(&p, &name).await?;
    Ok(StatusCode::NO_CONTENT)
}

pub(crate) async fn list_imports(State(s): State<AppState>) -> Json<Vec<ImportView>> {
    Json(s.images.imports())
}

pub(crate) async fn show_import(
    State(s): State<AppState>,
    Path(id): Path<String>,
) -> ApiResult<Json<ImportView>> {
    Ok(Json(s.images.import_status(&id)?))
}

pub async fn sync(
    Caller(s, p): Caller,
    JsonBody(req): JsonBody<SyncRequest>,
) -> ApiResult<(StatusCode, Json<SyncReport>)> {
    let report = s.images.sync(req).await?;
    tracing::info!(
        by = %p.username,
        source = %report.source,
        added = report.added.len(),
        updated = report.updated.len(),
        unchanged = report.unchanged.len(),
        failed = report.failed.len(),
        "image sync started"
    );
    Ok((StatusCode::ACCEPTED, Json(report)))
}

pub async fn gc(State(s): State<AppState>) -> ApiResult<Json<GcReport>> {
    Ok(Json(s.images.gc().await?))
}

pub(crate) async fn list_boot(State(s): State<AppState>) -> ApiResult<Json<Vec<BootView>>> {
    Ok(Json(s.images.list_boot()?))
}

pub(crate) async fn upload_boot(
    State(s): State<AppState>,
    QueryArgs(mut req): QueryArgs<BootRequest>,
    headers: HeaderMap,
    body: Body,
) -> ApiResult<Created<BootView>> {
    let fetch = "/api/v1/boot-resources/fetch";
    let source = upload_source(req.url.as_deref(), &mut req.size, fetch, &headers, body)?;
    Ok(Created(s.images.import_boot(req, source).await?))
}

pub(crate) async fn fetch_boot(
    State(s): State<AppState>,
    JsonBody(req): JsonBody<BootRequest>,
) -> ApiResult<(StatusCode, Json<ImportView>)> {
    Ok((StatusCode::ACCEPTED, Json(s.images.start_fetch_boot(req)?)))
}

pub(crate) async fn delete_boot(
    State(s): State<AppState>,
    Path((arch, name)): Path<(String, String)>,
) -> ApiResult<StatusCode> {
    s.images.delete_boot(&arch, &name).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// The client's address, when the server recorded it (the boot timeline files downloads by it).
pub(crate) type Peer = Option<Extension<ConnectInfo<SocketAddr>>>;

/// What a finished download does for the boot timeline: files it under the machine at `peer`.
fn timeline_of(s: &AppState, peer: Peer, file: FileKind, name: &str) -> Option<OnEnd> {
    let Extension(ConnectInfo(peer)) = peer?;
    let service = s.service.clone();
    let name = name.to_string();
    Some(Box::new(move |bytes, of, ms| {
        let step = Step::HttpFile {
            file,
            name,
            bytes,
            of,
            ms,
        };
        service.boot_step_from(peer.ip(), ms, step);
    }))
}

/// GET /images/{name}: a deployable image's bytes.
pub(crate) async fn download_image(
    State(s): State<AppState>,
    Path(name): Path<String>,
    peer: Peer,
    headers: HeaderMap,
) -> Response {
    match s.images.image_file(&name) {
        Ok((image, path)) => {
            let on_end = timeline_of(&s, peer, FileKind::Image, &image.name);
            serve_blob(
                &path,
                &image.name,
                image.size,
                &image.sha256,
                &headers,
                on_end,
            )
            .await
        }
        Err(e) => ApiError::from(e).into_response(),
    }
}

/// GET /boot-resources/{arch}/{name}: a kernel, initrd or boot loader.
pub(crate) async fn download_boot(
    State(s): State<AppState>,
    Path((arch, name)): Path<(String, String)>,
    peer: Peer,
    headers: HeaderMap,
) -> Response {
    match s.images.boot_file(&arch, &name) {
        Ok((boot, path)) => {
            let kind = match boot.kind {
                BootKind::Kernel => FileKind::Kernel,
                BootKind::Initrd => FileKind::Initrd,
                BootKind::Bootloader => FileKind::Loader,
            };
            let on_end = timeline_of(&s, peer, kind, &name);
            serve_blob(&path, &name, boot.size, &boot.sha256, &headers, on_end).await
        }
        Err(e) => ApiError::from(e).into_response(),
    }
}

/// Called once a download's body ends, with the bytes sent, the bytes it was to send and the
/// milliseconds it took.
type OnEnd = Box<dyn FnOnce(u64, u64, u64) + Send>;

/// One download, logged when its body is dropped: complete, or broken off by the client. Boot
/// files and images are few and large, so each gets a line (the boot timeline in the log), and
/// a step in the machine's boot timeline (`on_end`).
struct DownloadLog {
    what: String,
    start: u64,
    len: u64,
    sent: u64,
    began: std::time::Instant,
    on_end: Option<OnEnd>,
}

impl Drop for DownloadLog {
    fn drop(&mut self) {
        let ms = self.began.elapsed().as_millis() as u64;
        if self.sent == self.len {
            tracing::info!(file = %self.what, from = self.start, bytes = self.sent, ms, "download served");
        } else {
            tracing::info!(file = %self.what, from = self.start, bytes = self.sent, of = self.len, ms, "download broke off");
        }
        if let Some(on_end) = self.on_end.take() {
            on_end(self.sent, self.len, ms);
        }
    }
}

/// The byte range a `Range` header asks for, inclusive; Err when it cannot be satisfied;
/// Ok(None) to send the whole file (no header, a form we do not serve such as several ranges,
/// or a unit other than bytes: all allowed by RFC 9110 §14.2).
fn requested_range(value: &str, size: u64) -> Result<Option<(u64, u64)>, ()> {
    let Some(spec) = value.trim().strip_prefix("bytes=") else {
        return Ok(None);
    };
    if spec.contains(',') {
        return Ok(None);
    }
    let Some((first, last)) = spec.trim().split_once('-') else {
        return Ok(None);
    };
    let (first, last) = (first.trim(), last.trim());
    let range = if first.is_empty() {
        // The last N bytes.
        let n: u64 = last.parse().map_err(|_| ())?;
        if n == 0 || size == 0 {
            return Err(());
        }
        (size.saturating_sub(n), size - 1)
    } else {
        let start: u64 = first.parse().map_err(|_| ())?;
        let end = if last.is_empty() {
            size.saturating_sub(1)
        } else {
            last.parse::<u64>()
                .map_err(|_| ())?
                .min(size.saturating_sub(1))
        };
        if start >= size || end < start {
            return Err(());
        }
        (start, end)
    };
    Ok(Some(range))
}

/// Streams a blob with ETag (its digest), single-range support and no whole-file buffering.
async fn serve_blob(
    path: &FsPath,
    what: &str,
    size: u64,
    sha256: &str,
    headers: &HeaderMap,
    on_end: Option<OnEnd>,
) -> Response {
    let etag = format!("\"{sha256}\"");
    let header_str = |name| {
        headers
            .get(name)
            .and_then(|v: &HeaderValue| v.to_str().ok())
    };
    if header_str(header::IF_NONE_MATCH).is_some_and(|v| v.split(',').any(|t| t.trim() == etag)) {
        return (StatusCode::NOT_MODIFIED, [(header::ETAG, etag)]).into_response();
    }
    // If-Range with another validator: the client's partial copy is stale; send it all.
    let range_applies = header_str(header::IF_RANGE).is_none_or(|v| v.trim() == etag);
    let range = match header_str(header::RANGE).filter(|_| range_applies) {
        Some(value) => match requested_range(value, size) {
            Ok(r) => r,
            Err(()) => {
                return (
                    StatusCode::RANGE_NOT_SATISFIABLE,
                    [
                        (header::CONTENT_RANGE, format!("bytes */{size}")),
                        (header::ACCEPT_RANGES, "bytes".into()),
                    ],
                )
                    .into_response();
            }
        },
        None => None,
    };
    let mut file = match tokio::fs::File::open(path).await {
        Ok(f) => f,
        Err(e) => {
            return ApiError::from(ImageError::io(path, e)).into_response();
        }
    };
    let (status, start, len) = match range {
        Some((start, end)) => (StatusCode::PARTIAL_CONTENT, start, end - start + 1),
        None => (StatusCode::OK, 0, size),
    };
    if start > 0
        && let Err(e) = file.seek(SeekFrom::Start(start)).await
    {
        return ApiError::from(ImageError::io(path, e)).into_response();
    }
    let mut log = DownloadLog {
        what: what.to_string(),
        start,
        len,
        sent: 0,
        began: std::time::Instant::now(),
        on_end,
    };
    let stream = tokio_util::io::ReaderStream::with_capacity(file.take(len), 256 * 1024).map_ok(
        move |chunk| {
            // Borrowing the whole record moves all of it into the closure (a field alone would
            // be copied), so it is dropped, and logs, with the body.
            let log = &mut log;
            log.sent += chunk.len() as u64;
            chunk
        },
    );
    let mut response = Response::new(Body::from_stream(stream));
    *response.status_mut() = status;
    let h = response.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/octet-stream"),
    );
    h.insert(header::ACCEPT_RANGES, HeaderValue::from_static("bytes"));
    h.insert(header::CONTENT_LENGTH, HeaderValue::from(len));
    if let Ok(v) = HeaderValue::from_str(&etag) {
        h.insert(header::ETAG, v);
    }
    if status == StatusCode::PARTIAL_CONTENT
        && let Ok(v) = HeaderValue::from_str(&format!("bytes {start}-{}/{size}", start + len - 1))
    {
        h.insert(header::CONTENT_RANGE, v);
    }
    response
}

#[cfg(test)]
mod tests {
    use super::requested_range;

    #[test]
    fn ranges() {
        assert_eq!(requested_range("bytes=0-9", 100), Ok(Some((0, 9))));
        assert_eq!(requested_range("bytes=90-", 100), Ok(Some((90, 99))));
        assert_eq!(requested_range("bytes=-10", 100), Ok(Some((90, 99))));
        assert_eq!(requested_range("bytes=50-500", 100), Ok(Some((50, 99))));
        assert_eq!(requested_range("bytes=100-", 100), Err(()));
        assert_eq!(requested_range("bytes=5-1", 100), Err(()));
        assert_eq!(requested_range("bytes=0-1,5-6", 100), Ok(None));
        assert_eq!(requested_range("items=0-1", 100), Ok(None));
        assert_eq!(requested_range("bytes=x-", 100), Err(()));
    }
}
