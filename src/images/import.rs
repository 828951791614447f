//! The import pipeline: a request checked into a spec, registered (one import per target at
//! a time), its bytes moved from an upload or a URL into a verified blob, the blob put in
//! place and the record committed under the cache's gate. Progress is kept in a registry the
//! API reads.

use std::collections::{HashSet, VecDeque};
use std::path::Path;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use futures_util::StreamExt;
use futures_util::stream::BoxStream;

use super::blob::{Ingest, Staged};
use super::records::{self, BootKind, BootResource, Image, ImageFormat};
use super::{
    BootRequest, BootView, ImageCache, ImageError, ImageRequest, ImageView, ImportView, fetch,
};
use crate::model::ids::now_ms;

/// One import, shared between the task doing it and the registry that shows it.
pub(super) struct ImportTask {
    id: String,
    kind: &'static str,
    name: String,
    source: String,
    started_ms: u64,
    bytes: Arc<AtomicU64>,
    /// u64::MAX while unknown.
    total: AtomicU64,
    pub(super) attempts: AtomicU32,
    outcome: Mutex<Option<Outcome>>,
}

#[derive(Clone)]
enum Outcome {
    Done { sha256: String, at: u64 },
    Failed { error: String, at: u64 },
}

impl ImportTask {
    pub(super) fn set_total(&self, total: Option<u64>) {
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
pub(super) struct Registry {
    tasks: VecDeque<Arc<ImportTask>>,
    /// Targets ("image/<name>", "boot/<arch>/<name>") with an import running: one at a time.
    busy: HashSet<String>,
    /// Background downloads, so shutdown can stop them (their temp files are then discarded).
    pub(super) background: Vec<tokio::task::AbortHandle>,
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

impl ImageCache {
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

    /// Runs one import of `target` from `source` now (an upload: the caller waits), listed
    /// among the imports while it runs; answers the content's sha256.
    async fn import_now(
        self: &Arc<Self>,
        target: Target,
        source: &mut Source,
    ) -> Result<String, ImageError> {
        let guard = self.begin(&target)?;
        let result = self.run(&guard.task, target, source).await;
        guard.finish(&result);
        result
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
            self.import_now(Target::Image(spec), &mut source).await?;
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
            self.import_now(Target::Boot(spec), &mut source).await?;
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
    tx: &crate::store::Tx<'_>,
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
