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

pub(crate) mod blob;
mod error;
pub(crate) mod fetch;
mod import;
pub mod manifest;
pub mod records;
mod views;

use std::collections::{BTreeMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use blob::BlobDir;
pub use blob::Space;
pub use error::ImageError;
use import::Registry;
pub use import::{Source, parse_url};
pub use manifest::{Manifest, SyncReport, SyncRequest};
pub use records::{BootKind, BootResource, Image, ImageFormat, Mirror};
pub use views::{BootView, GcReport, ImageList, ImageView, ImportView};

use crate::model::Machine;
use crate::store::Store;

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

pub use crate::model::api::{BootRequest, ImageEdit, ImageRequest};

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
        let arch = records::base_arch(arch);
        if !name.is_empty() {
            if let Some(image) = records::image(&rx, name)? {
                return Ok(image);
            }
            // MAAS names images "os/release" (a deploy's osystem/distro_series): the image of
            // that OS and release for the machine's architecture, the default one first.
            if let Some((os, release)) = name.split_once('/') {
                let default = records::default_for(&rx, os, arch)?;
                let mut matching: Vec<Image> = records::all_images(&rx)?
                    .into_iter()
                    .filter(|i| i.os == os && i.release == release && i.arch == arch)
                    .collect();
                matching
                    .sort_by_key(|i| (default.as_deref() != Some(i.name.as_str()), i.created_ms));
                if let Some(image) = matching.into_iter().next() {
                    return Ok(image);
                }
            }
            return Err(ImageError::not_found("image", name));
        }
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

    /// Deletes an image unless `users` names machines that use it. `users` runs inside the
    /// delete's own transaction, over the machines as they are at that moment (the image, whether
    /// it is its OS and architecture's default, every machine): no deploy can start between the
    /// check and the delete.
    pub async fn delete_image_unless<F>(&self, name: &str, users: F) -> Result<(), ImageError>
    where
        F: FnOnce(&Image, bool, &[Machine]) -> Vec<String> + Send + 'static,
    {
        let key = name.to_string();
        let sha = self
            .store
            .write_essential(move |tx| {
                let image = records::get_image_in(tx, &key)?
                    .ok_or_else(|| ImageError::not_found("image", key.clone()))?;
                let is_default =
                    records::default_for_in(tx, &image.os, &image.arch)?.as_deref() == Some(&*key);
                let machines = tx.machines()?;
                let users = users(&image, is_default, &machines);
                if !users.is_empty() {
                    return Err(ImageError::Conflict(format!(
                        "image {key} is being deployed by {}; delete it when the deploy is over",
                        users.join(", ")
                    )));
                }
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

    /// The mirror manifests the cache synced from, by URL.
    pub fn mirrors(&self) -> Result<Vec<records::Mirror>, ImageError> {
        Ok(records::all_mirrors(&self.store.read()?)?)
    }

    /// Syncs from a mirror's manifest: see [`manifest`].
    pub async fn sync(self: &Arc<Self>, req: SyncRequest) -> Result<SyncReport, ImageError> {
        manifest::sync(self, req).await
    }
}
