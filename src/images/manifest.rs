//! Mirrors: a site keeps its cache in step with a manifest published next to the files.
//!
//! The manifest is JSON:
//!
//! ```json
//! {
//!   "format": "rackbox-images/1",
//!   "images": [
//!     {"name": "ubuntu-24.04", "url": "ubuntu-24.04-amd64.raw.zst", "sha256": "<64 hex>",
//!      "size": 123456, "os": "ubuntu", "release": "noble", "arch": "amd64",
//!      "format": "raw.zst", "title": "Ubuntu 24.04 LTS", "default": true}
//!   ],
//!   "boot_resources": [
//!     {"arch": "amd64", "name": "ipxe.efi", "kind": "bootloader", "url": "boot/ipxe.efi",
//!      "sha256": "<64 hex>", "size": 1024}
//!   ]
//! }
//! ```
//!
//! `sha256` and `size` are required: a mirror is trusted for what it lists, and every byte is
//! checked against it. URLs may be relative to the manifest's own URL. A sync imports what is
//! missing or has a different digest (replacing it), and reports what is unchanged and what the
//! site has that the manifest does not (kept: a sync never deletes).

use std::collections::BTreeSet;
use std::sync::Arc;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::{BootRequest, ImageCache, ImageError, ImageRequest, ImportView, parse_url, records};

/// The format word a manifest may carry; others are refused.
pub(crate) const MANIFEST_FORMAT: &str = "rackbox-images/1";
/// A manifest larger than this is not a manifest.
const MAX_MANIFEST: usize = 16 << 20;

#[derive(Clone, Debug, Default, Serialize, Deserialize, JsonSchema)]
pub struct Manifest {
    #[serde(default)]
    pub format: Option<String>,
    #[serde(default)]
    pub images: Vec<ManifestImage>,
    #[serde(default)]
    pub boot_resources: Vec<ManifestBoot>,
}

#[derive(Clone, Debug, Serialize, Deserialize, JsonSchema)]
pub struct ManifestImage {
    pub name: String,
    pub url: String,
    pub sha256: String,
    pub size: u64,
    #[serde(default)]
    pub os: Option<String>,
    #[serde(default)]
    pub release: Option<String>,
    #[serde(default)]
    pub arch: Option<String>,
    #[serde(default)]
    pub format: Option<String>,
    #[serde(default)]
    pub title: Option<String>,
    #[serde(default)]
    pub default: bool,
}

#[derive(Clone, Debug, Serialize, Deserialize, JsonSchema)]
pub struct ManifestBoot {
    pub arch: String,
    pub name: String,
    pub kind: String,
    pub url: String,
    pub sha256: String,
    pub size: u64,
}

/// A sync: a manifest's URL (the appliance fetches it) or the manifest itself.
#[derive(Clone, Debug, Default, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct SyncRequest {
    #[serde(default)]
    pub url: Option<String>,
    #[serde(default)]
    pub manifest: Option<Manifest>,
}

/// What a sync found and started.
#[derive(Clone, Debug, Default, Serialize, Deserialize, JsonSchema)]
pub struct SyncReport {
    /// Where the manifest came from ("inline" when it was sent).
    pub source: String,
    /// New here: being imported.
    pub added: Vec<String>,
    /// Different content upstream: being imported to replace the local one.
    pub updated: Vec<String>,
    /// Same digest here already.
    pub unchanged: Vec<String>,
    /// Here but not in the manifest (kept).
    pub local_only: Vec<String>,
    /// Entries that could not be started, with why.
    pub failed: Vec<SyncFailure>,
    /// The imports started; follow them at /api/v1/images/imports.
    pub imports: Vec<ImportView>,
}

impl SyncReport {
    /// Files what became of one entry of the manifest: nothing to do (`None`), an import
    /// started (`true` when it replaces what is here), or why it could not start.
    fn file(&mut self, name: String, started: Result<Option<(ImportView, bool)>, ImageError>) {
        match started {
            Ok(None) => self.unchanged.push(name),
            Ok(Some((view, replacing))) => {
                self.imports.push(view);
                if replacing {
                    self.updated.push(name);
                } else {
                    self.added.push(name);
                }
            }
            Err(e) => self.failed.push(SyncFailure {
                name,
                error: e.to_string(),
            }),
        }
    }
}

#[derive(Clone, Debug, Serialize, Deserialize, JsonSchema)]
pub struct SyncFailure {
    pub name: String,
    pub error: String,
}

fn resolve(base: Option<&reqwest::Url>, url: &str) -> Result<reqwest::Url, ImageError> {
    match base {
        Some(base) => {
            let joined = base
                .join(url)
                .map_err(|e| ImageError::Invalid(format!("URL {url:?}: {e}")))?;
            parse_url(joined.as_str())
        }
        None => parse_url(url).map_err(|_| {
            ImageError::Invalid(format!(
                "URL {url:?} must be absolute http(s) in a manifest sent inline (relative URLs need the manifest's own URL)"
            ))
        }),
    }
}

pub(super) async fn sync(
    cache: &Arc<ImageCache>,
    req: SyncRequest,
) -> Result<SyncReport, ImageError> {
    let (manifest, base, source) = match (req.url, req.manifest) {
        (Some(url), None) => {
            let url = parse_url(&url)?;
            let bytes = super::fetch::fetch_small(cache, &url, MAX_MANIFEST).await?;
            let manifest: Manifest = serde_json::from_slice(&bytes)
                .map_err(|e| ImageError::Invalid(format!("manifest {url}: {e}")))?;
            (manifest, Some(url.clone()), url.to_string())
        }
        (None, Some(m)) => (m, None, "inline".to_string()),
        _ => {
            return Err(ImageError::Invalid(
                "give exactly one of url or manifest".into(),
            ));
        }
    };
    if let Some(f) = &manifest.format
        && f != MANIFEST_FORMAT
    {
        return Err(ImageError::Invalid(format!(
            "manifest format {f:?} is not {MANIFEST_FORMAT:?}"
        )));
    }
    let mut report = SyncReport {
        source,
        ..SyncReport::default()
    };
    let rx = cache.store.read()?;
    let mut listed = BTreeSet::new();
    for entry in manifest.images {
        listed.insert(entry.name.clone());
        let name = entry.name.clone();
        let planned = (|| {
            let url = resolve(base.as_ref(), &entry.url)?;
            let sha = records::check_sha256(&entry.sha256)?;
            let existing = records::image(&rx, &entry.name)?;
            if existing.as_ref().is_some_and(|i| i.sha256 == sha) {
                return Ok(None);
            }
            let req = ImageRequest {
                name: entry.name,
                url: Some(url.to_string()),
                os: entry.os,
                release: entry.release,
                arch: entry.arch,
                format: entry.format,
                title: entry.title,
                sha256: Some(sha),
                size: Some(entry.size),
                default: entry.default,
                replace: true,
            };
            Ok::<_, ImageError>(Some((req, existing.is_some())))
        })();
        let started = planned.and_then(|p| {
            p.map(|(req, replacing)| Ok((cache.start_fetch_image(req)?, replacing)))
                .transpose()
        });
        report.file(name, started);
    }
    for entry in manifest.boot_resources {
        let name = records::boot_key(&entry.arch, &entry.name);
        listed.insert(format!("boot:{name}"));
        let planned = (|| {
            let url = resolve(base.as_ref(), &entry.url)?;
            let sha = records::check_sha256(&entry.sha256)?;
            let existing = records::boot_resource(&rx, &entry.arch, &entry.name)?;
            if existing.as_ref().is_some_and(|b| b.sha256 == sha) {
                return Ok(None);
            }
            let req = BootRequest {
                arch: entry.arch,
                name: entry.name,
                kind: entry.kind,
                url: Some(url.to_string()),
                sha256: Some(sha),
                size: Some(entry.size),
                replace: true,
            };
            Ok::<_, ImageError>(Some((req, existing.is_some())))
        })();
        let shown = format!("boot:{name}");
        let started = planned.and_then(|p| {
            p.map(|(req, replacing)| Ok((cache.start_fetch_boot(req)?, replacing)))
                .transpose()
        });
        report.file(shown, started);
    }
    for image in records::all_images(&rx)? {
        if !listed.contains(&image.name) {
            report.local_only.push(image.name);
        }
    }
    for boot in records::all_boot_resources(&rx)? {
        let shown = format!("boot:{}", boot.key());
        if !listed.contains(&shown) {
            report.local_only.push(shown);
        }
    }
    // A manifest fetched from a URL is a mirror the cache follows (MAAS's boot sources).
    if let Some(url) = base {
        let url = url.to_string();
        let now = crate::model::ids::now_ms();
        cache
            .store
            .write(move |tx| records::record_mirror_in(tx, &url, now))
            .await?;
    }
    Ok(report)
}
