//! The image cache: deployable OS images and boot resources, content-addressed by sha256 in a
//! directory of their own (on the appliance, a partition mounted at /var/lib/rackbox/images).
//!
//! Two promises hold at every instant, including a SIGKILL at any point:
//! - the cache never holds a half-written or unverified blob under a digest name: bytes go to
//!   `tmp/`, are hashed as they arrive, fsync'd, verified, then renamed (see [`blob`]);
//! - the store never points at a blob that is not there: a record is committed only after its
//!   blob's rename is durable, and a blob is removed only when no record references it, under
//!   the `gate` that orders these two against each other.
//!
//! What a crash can leave is harmless and removed at the next start: partial files in `tmp/`,
//! and a blob whose record was never committed.
//!
//! Metadata lives in this room's own redb tables ([`records`]), written through the store's
//! writer like everything else.

pub mod blob;
pub mod fetch;
pub mod manifest;
pub mod records;

use std::collections::{BTreeMap, HashSet, VecDeque};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use futures_util::StreamExt;
use futures_util::stream::BoxStream;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

pub use blob::Space;
use blob::{BlobDir, Ingest, Staged};
pub use manifest::{Manifest, SyncReport, SyncRequest};
pub use records::{BootKind, BootResource, Image, ImageFormat};

use crate::model::ids::now_ms;
use crate::store::{Store, StoreError};

/// Why an image operation failed. Each maps to one HTTP status in the API.
#[derive(Debug, thiserror::Error)]
pub enum ImageError {
    /// 400: a name, URL or parameter is not acceptable.
    #[error("{0}")]
    Invalid(String),
    /// 404.
    #[error("{kind} {id} does not exist")]
    NotFound { kind: &'static str, id: String },
    /// 409: the name is taken, an import of it is running, or a machine deploys it.
    #[error("{0}")]
    Conflict(String),
    /// 400: the content is not what the caller said it is.
    #[error("sha256 mismatch: expected {expected}, got {actual}; nothing was kept")]
    ChecksumMismatch { expected: String, actual: String },
    /// 400.
    #[error("size mismatch: expected {expected} bytes, got {actual}; nothing was kept")]
    SizeMismatch { expected: u64, actual: u64 },
    /// 400: the first bytes do not match the declared format.
    #[error("the content is not {format} (its first bytes say otherwise); nothing was kept")]
    WrongFormat { format: &'static str },
    /// 507.
    #[error(
        "the image cache at {} is full: {needed} more bytes needed, {free} available (keeping {reserve} free); nothing was kept. Delete images (`rackbox image delete`, `rackbox image gc`) or grow the cache's file system",
        dir.display()
    )]
    DiskFull {
        dir: PathBuf,
        needed: u64,
        free: u64,
        reserve: u64,
    },
    /// 502: the remote server failed or answered something unusable.
    #[error("download failed: {0}")]
    Fetch(String),
    /// 400: the upload ended before it was complete.
    #[error("the upload was interrupted before it finished; nothing was kept")]
    Aborted,
    /// 500.
    #[error("{}: {source}", path.display())]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// 500.
    #[error("{0}")]
    Internal(String),
    /// 500/503.
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl ImageError {
    pub fn io(path: &Path, source: std::io::Error) -> ImageError {
        ImageError::Io {
            path: path.to_path_buf(),
            source,
        }
    }

    fn not_found(kind: &'static str, id: impl Into<String>) -> ImageError {
        ImageError::NotFound {
            kind,
            id: id.into(),
        }
    }
}

/// How the cache behaves; from `[images]` in the config.
#[derive(Clone, Debug)]
pub struct CacheOptions {
    pub dir: PathBuf,
    /// Bytes always left free on the cache's file system.
    pub reserve_bytes: u64,
    /// Consecutive failed attempts (no byte gained) before a download gives up.
    pub fetch_attempts: u32,
    /// A download that receives nothing for this long is cut and resumed.
    pub read_timeout: Duration,
}

impl CacheOptions {
    pub fn new(dir: PathBuf) -> CacheOptions {
        CacheOptions {
            dir,
            reserve_bytes: 0,
            fetch_attempts: 5,
            read_timeout: Duration::from_secs(60),
        }
    }
}

/// What an import of a deployable image says about it: the query string of an upload, or the
pub use crate::model::api::{BootRequest, ImageEdit, ImageRequest};

/// An image as the API shows it.
#[derive(Clone, Debug, Serialize, JsonSchema)]
pub struct ImageView {
    #[serde(flatten)]
    pub image: Image,
    /// Whether deploys of its os/arch that name no image get this one.
    pub default: bool,
    /// Where machines download it (relative to the appliance's URL).
    pub download_path: String,
}

/// A boot resource as the API shows it.
#[derive(Clone, Debug, Serialize, JsonSchema)]
pub struct BootView {
    #[serde(flatten)]
    pub boot: BootResource,
    pub download_path: String,
}

/// Images and the cache's space.
#[derive(Clone, Debug, Serialize, JsonSchema)]
pub struct ImageList {
    pub images: Vec<ImageView>,
    pub space: Space,
    /// Imports still running.
    pub imports_running: usize,
}

/// What gc removed.
#[derive(Clone, Debug, Default, Serialize, JsonSchema)]
pub struct GcReport {
    /// Digests (file names) of the removed blobs.
    pub removed: Vec<String>,
    pub freed_bytes: u64,
    pub space: Space,
}

/// A machine deploying right now, as the delete check needs it (read through the service).
#[derive(Clone, Debug)]
pub struct DeployUse {
    pub system_id: String,
    /// The machine's architecture, e.g. "amd64/generic".
    pub arch: String,
    /// The image its deploy names ("" for the default one).
    pub image: String,
    pub osystem: String,
}

/// The state of one import, as /api/v1/images/imports shows it.
#[derive(Clone, Debug, Serialize, Deserialize, JsonSchema)]
pub struct ImportView {
    pub id: String,
    /// "image" or "boot_resource".
    pub kind: String,
    /// Image name, or arch/name of a boot resource.
    pub name: String,
    /// The URL, or "upload".
    pub source: String,
    /// running, done or failed.
    pub state: String,
    pub bytes_done: u64,
    /// Known from the request, Content-Length or Content-Range.
    pub bytes_total: Option<u64>,
    /// Download attempts so far (a resumed download counts each).
    pub attempts: u32,
    pub started_ms: u64,
    pub finished_ms: Option<u64>,
    pub sha256: Option<String>,
    pub error: Option<String>,
}

/// One import, shared between the task doing it and the registry that shows it.
struct ImportTask {
    id: String,
    kind: &'static str,
    name: String,
    source: String,
    started_ms: u64,
    bytes: Arc<AtomicU64>,
    /// u64::MAX while unknown.
    total: AtomicU64,
    attempts: AtomicU32,
    outcome: Mutex<Option<Outcome>>,
}

#[derive(Clone)]
enum Outcome {
    Done { sha256: String, at: u64 },
    Failed { error: String, at: u64 },
}

impl ImportTask {
    fn set_total(&self, total: Option<u64>) {
        self.total
            .store(total.unwrap_or(u64::MAX), Ordering::Relaxed);
    }

    fn is_running(&self) -> bool {
        self.outcome.lock().map(|o| o.is_none()).unwrap_or(false)
    }

    fn view(&self) -> ImportView {
        let outcome = self.outcome.lock().ok().and_then(|o| o.clone());
        let total = self.total.load(Ordering::Relaxed);
        let (state, finished_ms, sha256, error) = match outcome {
            None => ("running", None, None, None),
            Some(Outcome::Done { sha256, at }) => ("done", Some(at), Some(sha256), None),
            Some(Outcome::Failed { error, at }) => ("failed", Some(at), None, Some(error)),
        };
        ImportView {
            id: self.id.clone(),
            kind: self.kind.to_string(),
            name: self.name.clone(),
            source: self.source.clone(),
            state: state.to_string(),
            bytes_done: self.bytes.load(Ordering::Relaxed),
            bytes_total: (total != u64::MAX).then_some(total),
            attempts: self.attempts.load(Ordering::Relaxed),
            started_ms: self.started_ms,
            finished_ms,
            sha256,
            error,
        }
    }
}

/// Running imports and the recently finished ones.
#[derive(Default)]
struct Registry {
    tasks: VecDeque<Arc<ImportTask>>,
    /// Targets ("image/<name>", "boot/<arch>/<name>") with an import running: one at a time.
    busy: HashSet<String>,
    /// Background downloads, so shutdown can stop them (their temp files are then discarded).
    background: Vec<tokio::task::AbortHandle>,
}

/// Finished imports kept for the progress list.
const KEEP_FINISHED: usize = 100;

/// Releases an import's target and records how it ended, even when the future doing the
/// import is dropped (an uploading client that went away).
struct ImportGuard {
    cache: Arc<ImageCache>,
    task: Arc<ImportTask>,
    key: String,
}

impl ImportGuard {
    fn finish(self, outcome: &Result<String, ImageError>) {
        if let Ok(mut o) = self.task.outcome.lock() {
            *o = Some(match outcome {
                Ok(sha256) => Outcome::Done {
                    sha256: sha256.clone(),
                    at: now_ms(),
                },
                Err(e) => Outcome::Failed {
                    error: e.to_string(),
                    at: now_ms(),
                },
            });
        }
    }
}

impl Drop for ImportGuard {
    fn drop(&mut self) {
        if let Ok(mut o) = self.task.outcome.lock()
            && o.is_none()
        {
            *o = Some(Outcome::Failed {
                error: ImageError::Aborted.to_string(),
                at: now_ms(),
            });
        }
        if let Ok(mut r) = self.cache.imports.lock() {
            r.busy.remove(&self.key);
        }
    }
}

/// Where an import's bytes come from.
pub enum Source {
    /// A request body (an upload from the CLI, possibly of its standard input).
    Stream(BoxStream<'static, Result<Bytes, String>>),
    /// An http(s) URL the appliance downloads, resuming with Range after an interruption.
    Url(reqwest::Url),
}

/// What an import makes, once its bytes are verified.
#[derive(Clone, Debug)]
enum Target {
    Image(ImageSpec),
    Boot(BootSpec),
}

#[derive(Clone, Debug)]
struct ImageSpec {
    name: String,
    os: String,
    release: String,
    arch: String,
    /// As declared; None means detect.
    format: Option<ImageFormat>,
    /// From the URL's suffix, used when nothing is declared.
    format_hint: Option<ImageFormat>,
    title: String,
    sha256: Option<String>,
    size: Option<u64>,
    make_default: bool,
    replace: bool,
    source: String,
}

#[derive(Clone, Debug)]
struct BootSpec {
    arch: String,
    name: String,
    kind: BootKind,
    sha256: Option<String>,
    size: Option<u64>,
    replace: bool,
    source: String,
}

impl Target {
    fn key(&self) -> String {
        match self {
            Target::Image(s) => format!("image/{}", s.name),
            Target::Boot(s) => format!("boot/{}/{}", s.arch, s.name),
        }
    }
    fn sha256(&self) -> Option<&str> {
        match self {
            Target::Image(s) => s.sha256.as_deref(),
            Target::Boot(s) => s.sha256.as_deref(),
        }
    }
    fn size(&self) -> Option<u64> {
        match self {
            Target::Image(s) => s.size,
            Target::Boot(s) => s.size,
        }
    }
}

/// A checked http(s) URL. Any other scheme (file:, ftp:, data:) is refused: the daemon reads
/// nothing local on anyone's say-so.
pub fn parse_url(text: &str) -> Result<reqwest::Url, ImageError> {
    let url = reqwest::Url::parse(text.trim())
        .map_err(|e| ImageError::Invalid(format!("URL {text:?} is not valid: {e}")))?;
    if !matches!(url.scheme(), "http" | "https") || url.host_str().is_none() {
        return Err(ImageError::Invalid(format!(
            "URL {text:?} must be http:// or https:// with a host"
        )));
    }
    Ok(url)
}

/// The image cache. Share it as `Arc<ImageCache>`.
pub struct ImageCache {
    store: Store,
    blobs: Arc<BlobDir>,
    /// Orders blob removal against record commits: an import holds it shared from the moment
    /// its blob is in place (or found present) until its record is committed; gc and blob
    /// removal hold it exclusively. So gc never removes a blob a record is about to name.
    gate: tokio::sync::RwLock<()>,
    imports: Mutex<Registry>,
    http: reqwest::Client,
    options: CacheOptions,
    /// Bumped after every committed change to the boot resources (import, replace, delete,
    /// records dropped at open), so what mirrors them (the TFTP root) follows whichever path
    /// the change took: an upload, a background fetch, a sync or a deletion.
    boot_changes: tokio::sync::watch::Sender<u64>,
}

impl ImageCache {
    /// Opens the cache directory, removes what an interrupted run left (partial imports,
    /// unreferenced blobs) and drops records whose blob has gone missing (logged loudly).
    pub async fn open(store: Store, options: CacheOptions) -> Result<Arc<ImageCache>, ImageError> {
        let _ = rustls::crypto::ring::default_provider().install_default();
        let blobs = Arc::new(BlobDir::open(&options.dir, options.reserve_bytes)?);
        let http = reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(15))
            .read_timeout(options.read_timeout)
            .user_agent(concat!("rackbox/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| ImageError::Internal(format!("cannot build the HTTP client: {e}")))?;
        let cache = Arc::new(ImageCache {
            store,
            blobs,
            gate: tokio::sync::RwLock::new(()),
            imports: Mutex::new(Registry::default()),
            http,
            options,
            boot_changes: tokio::sync::watch::Sender::new(0),
        });
        cache.recover().await?;
        Ok(cache)
    }

    async fn recover(&self) -> Result<(), ImageError> {
        let blobs = self.blobs.clone();
        let cleaned = tokio::task::spawn_blocking(move || blobs.clean_tmp())
            .await
            .map_err(|e| ImageError::Internal(e.to_string()))??;
        if cleaned > 0 {
            tracing::info!(
                files = cleaned,
                "removed partial imports left by a previous run"
            );
        }
        // Records whose blob is gone (someone removed files by hand): the record is useless
        // and would break the promise that the store only points at blobs that exist.
        let rx = self.store.read()?;
        let missing_images: Vec<Image> = records::all_images(&rx)?
            .into_iter()
            .filter(|i| !self.blobs.has(&i.sha256))
            .collect();
        let missing_boot: Vec<BootResource> = records::all_boot_resources(&rx)?
            .into_iter()
            .filter(|b| !self.blobs.has(&b.sha256))
            .collect();
        drop(rx);
        for i in &missing_images {
            tracing::error!(image = %i.name, sha256 = %i.sha256, "image's blob is missing from the cache; removing its record (import it again)");
        }
        for b in &missing_boot {
            tracing::error!(arch = %b.arch, name = %b.name, sha256 = %b.sha256, "boot resource's blob is missing from the cache; removing its record (import it again)");
        }
        if !missing_images.is_empty() || !missing_boot.is_empty() {
            self.store
                .write(move |tx| {
                    for i in &missing_images {
                        records::remove_image_in(tx, i)?;
                    }
                    for b in &missing_boot {
                        records::remove_boot_in(tx, &b.arch, &b.name)?;
                    }
                    Ok::<(), ImageError>(())
                })
                .await?;
            self.boot_changed();
        }
        let report = self.gc().await?;
        if !report.removed.is_empty() {
            tracing::info!(
                blobs = report.removed.len(),
                bytes = report.freed_bytes,
                "removed blobs no record references (an import interrupted before its commit)"
            );
        }
        Ok(())
    }

    /// Stops background downloads (daemon shutdown): each one's temp file is discarded and its
    /// import shows as failed. They hold store handles, so the store's writer can only finish
    /// once they are gone.
    pub fn shutdown(&self) {
        if let Ok(mut r) = self.imports.lock() {
            for h in r.background.drain(..) {
                h.abort();
            }
        }
    }

    /// A receiver that sees a new value after every committed change to the boot resources.
    /// Its first value is marked seen: wait with `changed()`.
    pub fn watch_boot(&self) -> tokio::sync::watch::Receiver<u64> {
        self.boot_changes.subscribe()
    }

    fn boot_changed(&self) {
        self.boot_changes.send_modify(|generation| *generation += 1);
    }

    pub fn dir(&self) -> &Path {
        self.blobs.root()
    }

    pub fn space(&self) -> Result<Space, ImageError> {
        self.blobs.space()
    }

    // --- reading ------------------------------------------------------------------------

    pub fn list_images(&self) -> Result<ImageList, ImageError> {
        let rx = self.store.read()?;
        let defaults: HashSet<String> = records::all_defaults(&rx)?
            .into_iter()
            .map(|(_, name)| name)
            .collect();
        let images = records::all_images(&rx)?
            .into_iter()
            .map(|image| ImageView {
                default: defaults.contains(&image.name),
                download_path: format!("/images/{}", image.name),
                image,
            })
            .collect();
        Ok(ImageList {
            images,
            space: self.space()?,
            imports_running: self.imports_running(),
        })
    }

    pub fn image(&self, name: &str) -> Result<ImageView, ImageError> {
        let rx = self.store.read()?;
        let image =
            records::image(&rx, name)?.ok_or_else(|| ImageError::not_found("image", name))?;
        let default = records::default_for(&rx, &image.os, &image.arch)?.as_deref() == Some(name);
        Ok(ImageView {
            default,
            download_path: format!("/images/{}", image.name),
            image,
        })
    }

    /// The image a deploy gets: the named one, or the default of os/arch when it names none.
    pub fn deploy_image(&self, name: &str, os: &str, arch: &str) -> Result<Image, ImageError> {
        let rx = self.store.read()?;
        if !name.is_empty() {
            return records::image(&rx, name)?.ok_or_else(|| ImageError::not_found("image", name));
        }
        let arch = records::base_arch(arch);
        let os_list: Vec<String> = if os.is_empty() {
            records::all_defaults(&rx)?
                .into_iter()
                .filter_map(|(k, _)| k.strip_suffix(&format!("/{arch}")).map(str::to_string))
                .collect()
        } else {
            vec![os.to_string()]
        };
        for os in os_list {
            if let Some(default) = records::default_for(&rx, &os, arch)?
                && let Some(image) = records::image(&rx, &default)?
            {
                return Ok(image);
            }
        }
        Err(ImageError::not_found(
            "default image for",
            format!("{}/{arch}", if os.is_empty() { "*" } else { os }),
        ))
    }

    /// The file of an image, for serving. The path is built from the record's digest only.
    pub fn image_file(&self, name: &str) -> Result<(Image, PathBuf), ImageError> {
        let rx = self.store.read()?;
        let image =
            records::image(&rx, name)?.ok_or_else(|| ImageError::not_found("image", name))?;
        let path = self
            .blobs
            .path_of(&image.sha256)
            .ok_or_else(|| ImageError::Internal(format!("image {name} has a bad digest")))?;
        Ok((image, path))
    }

    pub fn list_boot(&self) -> Result<Vec<BootView>, ImageError> {
        let rx = self.store.read()?;
        Ok(records::all_boot_resources(&rx)?
            .into_iter()
            .map(|boot| BootView {
                download_path: format!("/boot-resources/{}/{}", boot.arch, boot.name),
                boot,
            })
            .collect())
    }

    pub fn boot_file(&self, arch: &str, name: &str) -> Result<(BootResource, PathBuf), ImageError> {
        let rx = self.store.read()?;
        let boot = records::boot_resource(&rx, arch, name)?
            .ok_or_else(|| ImageError::not_found("boot resource", format!("{arch}/{name}")))?;
        let path = self.blobs.path_of(&boot.sha256).ok_or_else(|| {
            ImageError::Internal(format!("boot resource {arch}/{name} has a bad digest"))
        })?;
        Ok((boot, path))
    }

    /// The TFTP server's allow-list: boot loader files only, by the names TFTP clients ask
    /// for, each mapped to its blob. Every boot loader is listed as "<arch>/<name>", and also
    /// as plain "<name>" when no other architecture has a boot loader of that name. Kernels,
    /// initrds and images are never in it (they go over HTTP).
    pub fn tftp_files(&self) -> Result<BTreeMap<String, PathBuf>, ImageError> {
        let rx = self.store.read()?;
        let loaders: Vec<BootResource> = records::all_boot_resources(&rx)?
            .into_iter()
            .filter(|b| b.kind == BootKind::Bootloader)
            .collect();
        let mut count: BTreeMap<&str, usize> = BTreeMap::new();
        for b in &loaders {
            *count.entry(b.name.as_str()).or_default() += 1;
        }
        let mut out = BTreeMap::new();
        for b in &loaders {
            let Some(path) = self.blobs.path_of(&b.sha256) else {
                continue;
            };
            if count.get(b.name.as_str()) == Some(&1) {
                out.insert(b.name.clone(), path.clone());
            }
            out.insert(b.key(), path);
        }
        Ok(out)
    }

    /// One TFTP request's file: the request path (leading '/' ignored) looked up in
    /// [`ImageCache::tftp_files`]; None for anything not on the list.
    pub fn tftp_file(&self, request: &str) -> Option<PathBuf> {
        let wanted = request.trim_start_matches('/');
        self.tftp_files().ok()?.remove(wanted)
    }

    pub fn imports(&self) -> Vec<ImportView> {
        match self.imports.lock() {
            Ok(r) => r.tasks.iter().map(|t| t.view()).collect(),
            Err(_) => Vec::new(),
        }
    }

    pub fn import_status(&self, id: &str) -> Result<ImportView, ImageError> {
        self.imports
            .lock()
            .ok()
            .and_then(|r| r.tasks.iter().find(|t| t.id == id).map(|t| t.view()))
            .ok_or_else(|| ImageError::not_found("import", id))
    }

    pub fn imports_running(&self) -> usize {
        match self.imports.lock() {
            Ok(r) => r.tasks.iter().filter(|t| t.is_running()).count(),
            Err(_) => 0,
        }
    }

    // --- importing ----------------------------------------------------------------------

    fn image_spec(&self, req: ImageRequest, source: String) -> Result<ImageSpec, ImageError> {
        records::check_image_name(&req.name)?;
        let os = req.os.unwrap_or_else(|| "custom".into());
        records::check_word("os", &os)?;
        let arch = req.arch.unwrap_or_else(|| "amd64".into());
        records::check_word("arch", &arch)?;
        let release = req.release.unwrap_or_default();
        if !release.is_empty() {
            records::check_word("release", &release)?;
        }
        let format = req.format.as_deref().map(ImageFormat::parse).transpose()?;
        let title = req.title.unwrap_or_default();
        if title.len() > 256 || title.chars().any(char::is_control) {
            return Err(ImageError::Invalid(
                "title must be at most 256 printable characters".into(),
            ));
        }
        let sha256 = req
            .sha256
            .as_deref()
            .map(records::check_sha256)
            .transpose()?;
        Ok(ImageSpec {
            format_hint: req.url.as_deref().and_then(ImageFormat::from_suffix),
            name: req.name,
            os,
            release,
            arch,
            format,
            title,
            sha256,
            size: req.size,
            make_default: req.default,
            replace: req.replace,
            source,
        })
    }

    fn boot_spec(&self, req: BootRequest, source: String) -> Result<BootSpec, ImageError> {
        records::check_word("arch", &req.arch)?;
        records::check_boot_name(&req.name)?;
        Ok(BootSpec {
            kind: BootKind::parse(&req.kind)?,
            sha256: req
                .sha256
                .as_deref()
                .map(records::check_sha256)
                .transpose()?,
            arch: req.arch,
            name: req.name,
            size: req.size,
            replace: req.replace,
            source,
        })
    }

    /// Refuses a target that exists (without replace) or is being imported, and registers the
    /// import.
    fn begin(self: &Arc<Self>, target: &Target) -> Result<ImportGuard, ImageError> {
        let rx = self.store.read()?;
        let (kind, name, replace, exists) = match target {
            Target::Image(s) => (
                "image",
                s.name.clone(),
                s.replace,
                records::image(&rx, &s.name)?.is_some(),
            ),
            Target::Boot(s) => (
                "boot_resource",
                format!("{}/{}", s.arch, s.name),
                s.replace,
                records::boot_resource(&rx, &s.arch, &s.name)?.is_some(),
            ),
        };
        drop(rx);
        if exists && !replace {
            return Err(ImageError::Conflict(format!(
                "{} {name} already exists (give replace to overwrite it)",
                kind.replace('_', " ")
            )));
        }
        let key = target.key();
        let source = match target {
            Target::Image(s) => s.source.clone(),
            Target::Boot(s) => s.source.clone(),
        };
        let task = Arc::new(ImportTask {
            id: format!("imp-{}", crate::model::ids::random_token(10).to_lowercase()),
            kind,
            name: name.clone(),
            source,
            started_ms: now_ms(),
            bytes: Arc::new(AtomicU64::new(0)),
            total: AtomicU64::new(target.size().unwrap_or(u64::MAX)),
            attempts: AtomicU32::new(0),
            outcome: Mutex::new(None),
        });
        let mut r = self
            .imports
            .lock()
            .map_err(|_| ImageError::Internal("import registry poisoned".into()))?;
        if !r.busy.insert(key.clone()) {
            let running = r
                .tasks
                .iter()
                .find(|t| t.is_running() && t.name == name && t.kind == kind)
                .map(|t| t.id.clone())
                .unwrap_or_default();
            return Err(ImageError::Conflict(format!(
                "an import of {} {name} is already running ({running})",
                kind.replace('_', " ")
            )));
        }
        r.tasks.push_back(task.clone());
        while r.tasks.len() > KEEP_FINISHED
            && let Some(pos) = r.tasks.iter().position(|t| !t.is_running())
        {
            r.tasks.remove(pos);
        }
        drop(r);
        Ok(ImportGuard {
            cache: self.clone(),
            task,
            key,
        })
    }

    /// Imports a deployable image from `source` and answers it once it is in the cache.
    pub async fn import_image(
        self: &Arc<Self>,
        req: ImageRequest,
        mut source: Source,
    ) -> Result<ImageView, ImageError> {
        let result = async {
            let spec = self.image_spec(req, source_desc(&source))?;
            let name = spec.name.clone();
            let guard = self.begin(&Target::Image(spec.clone()))?;
            let result = self
                .run(&guard.task, Target::Image(spec), &mut source)
                .await;
            guard.finish(&result);
            result?;
            self.image(&name)
        }
        .await;
        if result.is_err() {
            drain(&mut source).await;
        }
        result
    }

    /// Starts downloading an image from `req.url` in the background; answers its import.
    pub fn start_fetch_image(
        self: &Arc<Self>,
        req: ImageRequest,
    ) -> Result<ImportView, ImageError> {
        let url = parse_url(
            req.url
                .as_deref()
                .ok_or_else(|| ImageError::Invalid("url is required to fetch an image".into()))?,
        )?;
        let spec = self.image_spec(req, url.to_string())?;
        self.spawn(Target::Image(spec), url)
    }

    /// Imports a boot resource from `source` and answers it once it is in the cache.
    pub async fn import_boot(
        self: &Arc<Self>,
        req: BootRequest,
        mut source: Source,
    ) -> Result<BootView, ImageError> {
        let result = async {
            let spec = self.boot_spec(req, source_desc(&source))?;
            let (arch, name) = (spec.arch.clone(), spec.name.clone());
            let guard = self.begin(&Target::Boot(spec.clone()))?;
            let result = self.run(&guard.task, Target::Boot(spec), &mut source).await;
            guard.finish(&result);
            result?;
            let (boot, _) = self.boot_file(&arch, &name)?;
            Ok(BootView {
                download_path: format!("/boot-resources/{arch}/{name}"),
                boot,
            })
        }
        .await;
        if result.is_err() {
            drain(&mut source).await;
        }
        result
    }

    pub fn start_fetch_boot(self: &Arc<Self>, req: BootRequest) -> Result<ImportView, ImageError> {
        let url = parse_url(req.url.as_deref().ok_or_else(|| {
            ImageError::Invalid("url is required to fetch a boot resource".into())
        })?)?;
        let spec = self.boot_spec(req, url.to_string())?;
        self.spawn(Target::Boot(spec), url)
    }

    fn spawn(
        self: &Arc<Self>,
        target: Target,
        url: reqwest::Url,
    ) -> Result<ImportView, ImageError> {
        let guard = self.begin(&target)?;
        let view = guard.task.view();
        let cache = self.clone();
        let handle = tokio::spawn(async move {
            let result = cache.run(&guard.task, target, &mut Source::Url(url)).await;
            if let Err(e) = &result {
                tracing::warn!(import = %guard.task.id, name = %guard.task.name, error = %e, "import failed");
            } else {
                tracing::info!(import = %guard.task.id, name = %guard.task.name, "import done");
            }
            guard.finish(&result);
        });
        if let Ok(mut r) = self.imports.lock() {
            r.background.retain(|h| !h.is_finished());
            r.background.push(handle.abort_handle());
        }
        Ok(view)
    }

    /// The import itself: bytes into a verified blob, blob into place, record committed.
    /// Answers the digest.
    async fn run(
        self: &Arc<Self>,
        task: &ImportTask,
        target: Target,
        source: &mut Source,
    ) -> Result<String, ImageError> {
        // Content we already hold (by the digest the caller promised) is not transferred again.
        let known = target
            .sha256()
            .filter(|sha| self.blobs.has(sha))
            .map(str::to_string);
        let staged = match (known, source) {
            (Some(sha), Source::Url(_)) => Held::Present(sha),
            (_, source) => Held::Staged(self.transfer(task, &target, source).await?),
        };
        let (sha256, size, head) = match &staged {
            Held::Staged(s) => (s.sha256.clone(), s.size, s.head.clone()),
            Held::Present(sha) => {
                let path = self.blobs.path_of(sha).unwrap_or_default();
                let size = tokio::fs::metadata(&path)
                    .await
                    .map_err(|e| ImageError::io(&path, e))?
                    .len();
                if let Some(expected) = target.size()
                    && expected != size
                {
                    return Err(ImageError::SizeMismatch {
                        expected,
                        actual: size,
                    });
                }
                task.bytes.store(size, Ordering::Relaxed);
                task.set_total(Some(size));
                (sha.clone(), size, read_head(&path).await)
            }
        };
        let record = match &target {
            Target::Image(spec) => {
                let format = match spec.format {
                    Some(f) if !f.matches_head(&head) => {
                        return Err(ImageError::WrongFormat { format: f.as_str() });
                    }
                    Some(f) => f,
                    None => detect_format(spec.format_hint, &head),
                };
                Record::Image(Image {
                    name: spec.name.clone(),
                    os: spec.os.clone(),
                    release: spec.release.clone(),
                    arch: spec.arch.clone(),
                    format,
                    sha256: sha256.clone(),
                    size,
                    title: spec.title.clone(),
                    source: spec.source.clone(),
                    created_ms: now_ms(),
                })
            }
            Target::Boot(spec) => Record::Boot(BootResource {
                arch: spec.arch.clone(),
                name: spec.name.clone(),
                kind: spec.kind,
                sha256: sha256.clone(),
                size,
                source: spec.source.clone(),
                created_ms: now_ms(),
            }),
        };
        let gate = self.gate.read().await;
        match staged {
            Held::Staged(s) => {
                let blobs = self.blobs.clone();
                tokio::task::spawn_blocking(move || blobs.commit(s))
                    .await
                    .map_err(|e| ImageError::Internal(e.to_string()))??;
            }
            Held::Present(sha) => {
                if !self.blobs.has(&sha) {
                    return Err(ImageError::Internal(format!(
                        "blob {sha} vanished during the import; try again"
                    )));
                }
            }
        }
        let (make_default, replace) = match &target {
            Target::Image(s) => (s.make_default, s.replace),
            Target::Boot(s) => (false, s.replace),
        };
        let is_boot = matches!(record, Record::Boot(_));
        let replaced = self
            .store
            .write(move |tx| commit_record(tx, record, make_default, replace))
            .await?;
        drop(gate);
        if is_boot {
            self.boot_changed();
        }
        if let Some(old) = replaced
            && old != sha256
        {
            self.release_blob(&old).await?;
        }
        Ok(sha256)
    }

    /// Moves bytes from `source` into a verified temp file.
    async fn transfer(
        &self,
        task: &ImportTask,
        target: &Target,
        source: &mut Source,
    ) -> Result<Staged, ImageError> {
        let temp = self.blobs.create_temp(target.size(), task.bytes.clone())?;
        let ingest = Ingest::start(temp, target.sha256().map(str::to_string));
        match source {
            Source::Stream(stream) => {
                task.attempts.store(1, Ordering::Relaxed);
                while let Some(chunk) = stream.next().await {
                    match chunk {
                        Ok(bytes) => {
                            if ingest.write(bytes).await.is_err() {
                                return ingest.outcome().await;
                            }
                        }
                        Err(e) => {
                            tracing::info!(error = %e, import = %task.id, "upload interrupted");
                            return Err(ImageError::Aborted);
                        }
                    }
                }
                ingest.finish().await
            }
            Source::Url(url) => match fetch::download(self, url, &ingest, task).await {
                Ok(()) => ingest.finish().await,
                Err(fetch::Stop::Writer) => ingest.outcome().await,
                Err(fetch::Stop::Failed(e)) => Err(e),
            },
        }
    }

    // --- changing and removing ---------------------------------------------------------

    pub async fn edit_image(&self, name: &str, edit: ImageEdit) -> Result<ImageView, ImageError> {
        if let Some(t) = &edit.title
            && (t.len() > 256 || t.chars().any(char::is_control))
        {
            return Err(ImageError::Invalid(
                "title must be at most 256 printable characters".into(),
            ));
        }
        let key = name.to_string();
        self.store
            .write(move |tx| {
                let mut image = records::get_image_in(tx, &key)?
                    .ok_or_else(|| ImageError::not_found("image", key.clone()))?;
                if let Some(t) = edit.title {
                    image.title = t;
                    records::put_image_in(tx, &image)?;
                }
                match edit.default {
                    Some(true) => records::set_default_in(tx, &image)?,
                    Some(false) => {
                        records::clear_default_in(tx, &image.os, &image.arch, &image.name)?
                    }
                    None => {}
                }
                Ok::<(), ImageError>(())
            })
            .await?;
        self.image(name)
    }

    /// Deletes an image's record (and its blob when nothing else uses it), unless a machine
    /// is deploying it: by name, or as the default of its os/arch for a deploy naming none.
    pub async fn delete_image(
        &self,
        name: &str,
        deploying: &[DeployUse],
    ) -> Result<(), ImageError> {
        let rx = self.store.read()?;
        let image =
            records::image(&rx, name)?.ok_or_else(|| ImageError::not_found("image", name))?;
        let is_default =
            records::default_for(&rx, &image.os, &image.arch)?.as_deref() == Some(name);
        drop(rx);
        let users: Vec<&str> = deploying
            .iter()
            .filter(|d| {
                d.image == name
                    || (d.image.is_empty()
                        && is_default
                        && records::base_arch(&d.arch) == image.arch
                        && (d.osystem.is_empty() || d.osystem == image.os))
            })
            .map(|d| d.system_id.as_str())
            .collect();
        if !users.is_empty() {
            return Err(ImageError::Conflict(format!(
                "image {name} is being deployed by {}; delete it when the deploy is over",
                users.join(", ")
            )));
        }
        let key = name.to_string();
        let sha = self
            .store
            .write_essential(move |tx| {
                let image = records::get_image_in(tx, &key)?
                    .ok_or_else(|| ImageError::not_found("image", key.clone()))?;
                records::remove_image_in(tx, &image)?;
                Ok::<String, ImageError>(image.sha256)
            })
            .await?;
        self.release_blob(&sha).await
    }

    pub async fn delete_boot(&self, arch: &str, name: &str) -> Result<(), ImageError> {
        let (a, n) = (arch.to_string(), name.to_string());
        let sha = self
            .store
            .write_essential(move |tx| {
                let boot = records::get_boot_in(tx, &a, &n)?
                    .ok_or_else(|| ImageError::not_found("boot resource", format!("{a}/{n}")))?;
                records::remove_boot_in(tx, &a, &n)?;
                Ok::<String, ImageError>(boot.sha256)
            })
            .await?;
        self.boot_changed();
        self.release_blob(&sha).await
    }

    /// Removes one blob if no record references it any more.
    async fn release_blob(&self, digest: &str) -> Result<(), ImageError> {
        let _gate = self.gate.write().await;
        let rx = self.store.read()?;
        if records::referenced_digests(&rx)?.contains(digest) {
            return Ok(());
        }
        drop(rx);
        let blobs = self.blobs.clone();
        let d = digest.to_string();
        tokio::task::spawn_blocking(move || blobs.remove(&d))
            .await
            .map_err(|e| ImageError::Internal(e.to_string()))??;
        Ok(())
    }

    /// Removes every blob no record references.
    pub async fn gc(&self) -> Result<GcReport, ImageError> {
        let _gate = self.gate.write().await;
        let rx = self.store.read()?;
        let keep = records::referenced_digests(&rx)?;
        drop(rx);
        let blobs = self.blobs.clone();
        let (removed, freed_bytes) = tokio::task::spawn_blocking(move || {
            let mut removed = Vec::new();
            let mut freed = 0;
            for (name, _) in blobs.list()? {
                if !keep.contains(&name) {
                    freed += blobs.remove(&name)?;
                    removed.push(name);
                }
            }
            Ok::<_, ImageError>((removed, freed))
        })
        .await
        .map_err(|e| ImageError::Internal(e.to_string()))??;
        Ok(GcReport {
            removed,
            freed_bytes,
            space: self.space()?,
        })
    }

    /// Syncs from a mirror's manifest: see [`manifest`].
    pub async fn sync(self: &Arc<Self>, req: SyncRequest) -> Result<SyncReport, ImageError> {
        manifest::sync(self, req).await
    }
}

enum Held {
    Staged(Staged),
    Present(String),
}

enum Record {
    Image(Image),
    Boot(BootResource),
}

/// Writes an import's record; answers the digest of the record it replaced. Checks before it
/// writes (the store's rule): a record that appeared meanwhile without `replace` is refused.
fn commit_record(
    tx: &redb::WriteTransaction,
    record: Record,
    make_default: bool,
    replace: bool,
) -> Result<Option<String>, ImageError> {
    match record {
        Record::Image(image) => {
            let old = records::get_image_in(tx, &image.name)?;
            if old.is_some() && !replace {
                return Err(ImageError::Conflict(format!(
                    "image {} already exists (give replace to overwrite it)",
                    image.name
                )));
            }
            records::put_image_in(tx, &image)?;
            if let Some(old) = &old
                && (old.os != image.os || old.arch != image.arch)
            {
                records::clear_default_in(tx, &old.os, &old.arch, &old.name)?;
            }
            if make_default || records::default_for_in(tx, &image.os, &image.arch)?.is_none() {
                records::set_default_in(tx, &image)?;
            }
            Ok(old.map(|o| o.sha256))
        }
        Record::Boot(boot) => {
            let old = records::get_boot_in(tx, &boot.arch, &boot.name)?;
            if old.is_some() && !replace {
                return Err(ImageError::Conflict(format!(
                    "boot resource {} already exists (give replace to overwrite it)",
                    boot.key()
                )));
            }
            records::put_boot_in(tx, &boot)?;
            Ok(old.map(|o| o.sha256))
        }
    }
}

fn source_desc(source: &Source) -> String {
    match source {
        Source::Stream(_) => "upload".into(),
        Source::Url(u) => u.to_string(),
    }
}

/// The format of undeclared content: the URL's suffix if it has one that fits, else what the
/// first bytes say (compressed means a compressed raw disk), else raw.
fn detect_format(hint: Option<ImageFormat>, head: &[u8]) -> ImageFormat {
    if let Some(f) = hint
        && f.matches_head(head)
    {
        return f;
    }
    [
        ImageFormat::RawGz,
        ImageFormat::RawXz,
        ImageFormat::RawZst,
        ImageFormat::Tar,
    ]
    .into_iter()
    .find(|f| f.matches_head(head))
    .unwrap_or(ImageFormat::Raw)
}

/// Reads and discards what is left of a refused upload (at most 256 MiB, for at most a minute),
/// so the client, still sending, gets to read the answer that says why instead of a broken pipe.
async fn drain(source: &mut Source) {
    const LIMIT: usize = 256 << 20;
    if let Source::Stream(stream) = source {
        let _ = tokio::time::timeout(Duration::from_secs(60), async {
            let mut seen = 0;
            while let Some(Ok(chunk)) = stream.next().await {
                seen += chunk.len();
                if seen > LIMIT {
                    break;
                }
            }
        })
        .await;
    }
}

async fn read_head(path: &Path) -> Vec<u8> {
    use tokio::io::AsyncReadExt;
    let mut head = vec![0u8; 512];
    let Ok(file) = tokio::fs::File::open(path).await else {
        return Vec::new();
    };
    let mut n = 0;
    let mut file = file.take(512);
    while let Ok(k) = file.read(&mut head[n..]).await {
        if k == 0 {
            break;
        }
        n += k;
    }
    head.truncate(n);
    head
}
