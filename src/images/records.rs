//! What the cache knows about its contents: deployable images and boot resources, their redb
//! tables, and the checks on every name that reaches them from outside.
//!
//! Names never become file paths: blobs are found by their sha256 digest alone (see `blob`), so a
//! name is only a key in a table. The checks here still refuse anything path-like, so a name is
//! safe to show in a URL, a log line or a TFTP request.

use redb::{ReadableTable, TableDefinition};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::ImageError;
use crate::store::{Snapshot, StoreError, Tx, tables};

/// image name -> [`Image`] (JSON).
pub(crate) const IMAGES: TableDefinition<&str, &[u8]> = TableDefinition::new("images");
/// "os/arch" -> image name: the image deployed when a deploy names none.
pub(crate) const IMAGE_DEFAULTS: TableDefinition<&str, &str> =
    TableDefinition::new("image_defaults");
/// "arch/name" -> [`BootResource`] (JSON).
pub(crate) const BOOT_RESOURCES: TableDefinition<&str, &[u8]> =
    TableDefinition::new("boot_resources");
/// The mirror manifests the cache synced from, by URL.
pub(crate) const MIRRORS: TableDefinition<&str, &[u8]> = TableDefinition::new("image_mirrors");

/// Path segments under /api/v1/images that are routes, not images: no image may take these names.
pub(crate) const RESERVED_NAMES: &[&str] = &["imports", "sync", "fetch", "gc"];

/// How a deployable image is packed. The agent picks its decompressor from this.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub enum ImageFormat {
    #[serde(rename = "raw")]
    Raw,
    #[serde(rename = "raw.gz")]
    RawGz,
    #[serde(rename = "raw.xz")]
    RawXz,
    #[serde(rename = "raw.zst")]
    RawZst,
    /// A root file system as a tar archive, unpacked onto a partition the agent makes.
    #[serde(rename = "tar")]
    Tar,
    #[serde(rename = "tar.gz")]
    TarGz,
    #[serde(rename = "tar.xz")]
    TarXz,
    #[serde(rename = "tar.zst")]
    TarZst,
}

impl ImageFormat {
    pub const ALL: [ImageFormat; 8] = [
        ImageFormat::Raw,
        ImageFormat::RawGz,
        ImageFormat::RawXz,
        ImageFormat::RawZst,
        ImageFormat::Tar,
        ImageFormat::TarGz,
        ImageFormat::TarXz,
        ImageFormat::TarZst,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            ImageFormat::Raw => "raw",
            ImageFormat::RawGz => "raw.gz",
            ImageFormat::RawXz => "raw.xz",
            ImageFormat::RawZst => "raw.zst",
            ImageFormat::Tar => "tar",
            ImageFormat::TarGz => "tar.gz",
            ImageFormat::TarXz => "tar.xz",
            ImageFormat::TarZst => "tar.zst",
        }
    }

    pub fn parse(text: &str) -> Result<ImageFormat, ImageError> {
        ImageFormat::ALL
            .into_iter()
            .find(|f| f.as_str() == text)
            .ok_or_else(|| {
                ImageError::Invalid(format!(
                    "format {text:?} is not one of {}",
                    ImageFormat::ALL.map(|f| f.as_str()).join(", ")
                ))
            })
    }

    /// The format a file name or URL ends in (".img" counts as raw), if any.
    pub fn from_suffix(name: &str) -> Option<ImageFormat> {
        let name = name.split(['?', '#']).next().unwrap_or(name);
        let name = name.to_ascii_lowercase();
        let by_len = |f: &ImageFormat| std::cmp::Reverse(f.as_str().len());
        let mut all = ImageFormat::ALL;
        all.sort_by_key(by_len);
        if let Some(f) = all
            .into_iter()
            .find(|f| name.ends_with(&format!(".{}", f.as_str())))
        {
            return Some(f);
        }
        for (suffix, f) in [
            (".img.gz", ImageFormat::RawGz),
            (".img.xz", ImageFormat::RawXz),
            (".img.zst", ImageFormat::RawZst),
            (".tgz", ImageFormat::TarGz),
            (".img", ImageFormat::Raw),
        ] {
            if name.ends_with(suffix) {
                return Some(f);
            }
        }
        None
    }

    /// Whether the first bytes of the content look like this format. Compressed formats have
    /// magic numbers; a plain tar has "ustar" at offset 257; raw disks can start with anything.
    /// This catches the common mistake of a mislabelled file before it is kept.
    pub fn matches_head(self, head: &[u8]) -> bool {
        const GZ: &[u8] = &[0x1f, 0x8b];
        const XZ: &[u8] = &[0xfd, b'7', b'z', b'X', b'Z', 0x00];
        const ZST: &[u8] = &[0x28, 0xb5, 0x2f, 0xfd];
        match self {
            ImageFormat::Raw => true,
            ImageFormat::RawGz | ImageFormat::TarGz => head.starts_with(GZ),
            ImageFormat::RawXz | ImageFormat::TarXz => head.starts_with(XZ),
            ImageFormat::RawZst | ImageFormat::TarZst => head.starts_with(ZST),
            ImageFormat::Tar => head.get(257..262) == Some(b"ustar".as_slice()),
        }
    }
}

/// A deployable OS image.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct Image {
    /// Unique; how deploys and downloads name it (`/images/<name>`).
    pub name: String,
    /// e.g. "ubuntu", "debian", "custom".
    pub os: String,
    /// e.g. "noble", "bookworm".
    #[serde(default)]
    pub release: String,
    /// e.g. "amd64", "arm64".
    pub arch: String,
    pub format: ImageFormat,
    /// Lower-case hex sha256 of the stored bytes: also the blob's name in the cache.
    pub sha256: String,
    pub size: u64,
    #[serde(default)]
    pub title: String,
    /// Where it came from: a URL, "upload", or "sync:<manifest>".
    #[serde(default)]
    pub source: String,
    pub created_ms: u64,
}

/// A mirror manifest the cache synced from (MAAS's boot source).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct Mirror {
    /// The manifest's URL.
    pub url: String,
    /// When it was first synced from, milliseconds since the Unix epoch.
    pub first_synced_ms: u64,
    /// When it was last synced from.
    pub last_synced_ms: u64,
}

/// What a boot resource is for.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum BootKind {
    /// The ephemeral environment's kernel (served over HTTP).
    Kernel,
    /// The ephemeral environment's initramfs (served over HTTP).
    Initrd,
    /// A firmware boot loader (iPXE and the like): the only files TFTP serves.
    Bootloader,
}

impl BootKind {
    pub fn parse(text: &str) -> Result<BootKind, ImageError> {
        match text {
            "kernel" => Ok(BootKind::Kernel),
            "initrd" => Ok(BootKind::Initrd),
            "bootloader" => Ok(BootKind::Bootloader),
            other => Err(ImageError::Invalid(format!(
                "boot resource kind {other:?} is not one of kernel, initrd, bootloader"
            ))),
        }
    }
}

/// A file the boot chain needs, per architecture.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct BootResource {
    /// e.g. "amd64", "arm64".
    pub arch: String,
    /// The file name as machines ask for it, e.g. "linux", "initrd", "ipxe.efi", "undionly.kpxe".
    pub name: String,
    pub kind: BootKind,
    pub sha256: String,
    pub size: u64,
    #[serde(default)]
    pub source: String,
    pub created_ms: u64,
}

impl BootResource {
    pub fn key(&self) -> String {
        boot_key(&self.arch, &self.name)
    }
}

pub(crate) fn boot_key(arch: &str, name: &str) -> String {
    format!("{arch}/{name}")
}

fn default_key(os: &str, arch: &str) -> String {
    format!("{os}/{arch}")
}

/// 1-64 of letters, digits, '-', '_', '.'; not starting with '.'; not a reserved route word.
/// No '/', no "..", no NUL: safe as a URL segment, a table key and a log field.
pub fn check_image_name(name: &str) -> Result<(), ImageError> {
    crate::model::ids::check_name("image", name).map_err(ImageError::Invalid)?;
    if RESERVED_NAMES.contains(&name) {
        return Err(ImageError::Invalid(format!(
            "image name {name:?} is reserved (it is a route of the API)"
        )));
    }
    Ok(())
}

/// A boot file name: the same rule as image names (TFTP and HTTP ask for it verbatim).
pub fn check_boot_name(name: &str) -> Result<(), ImageError> {
    crate::model::ids::check_name("boot resource", name).map_err(ImageError::Invalid)
}

/// An architecture or OS word: 1-32 lower-case letters, digits, '-', '_'.
pub fn check_word(kind: &str, word: &str) -> Result<(), ImageError> {
    let ok = !word.is_empty()
        && word.len() <= 32
        && word
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || matches!(c, '-' | '_'));
    if ok {
        Ok(())
    } else {
        Err(ImageError::Invalid(format!(
            "{kind} {word:?} must be 1-32 lower-case letters, digits, '-' or '_'"
        )))
    }
}

/// A sha256 as given by a user or a manifest: 64 hex digits, any case; answered in lower case.
pub fn check_sha256(text: &str) -> Result<String, ImageError> {
    let t = text.trim();
    if t.len() == 64 && t.chars().all(|c| c.is_ascii_hexdigit()) {
        Ok(t.to_ascii_lowercase())
    } else {
        Err(ImageError::Invalid(format!(
            "sha256 {text:?} must be 64 hexadecimal digits"
        )))
    }
}

/// The base architecture of a machine's "amd64/generic".
pub(crate) fn base_arch(machine_arch: &str) -> &str {
    machine_arch.split('/').next().unwrap_or(machine_arch)
}

// --- reads from a snapshot -------------------------------------------------------------------
//
// These tables are the image cache's own (their records are this room's types), so it reaches
// them through the store's escape hatch, `Snapshot::raw` and `Tx::raw`, here alone.

pub fn image(rx: &Snapshot, name: &str) -> Result<Option<Image>, StoreError> {
    tables::get(rx.raw(), IMAGES, name)
}

pub(crate) fn all_images(rx: &Snapshot) -> Result<Vec<Image>, StoreError> {
    tables::all(rx.raw(), IMAGES)
}

pub(crate) fn boot_resource(
    rx: &Snapshot,
    arch: &str,
    name: &str,
) -> Result<Option<BootResource>, StoreError> {
    tables::get(rx.raw(), BOOT_RESOURCES, &boot_key(arch, name))
}

pub(crate) fn all_boot_resources(rx: &Snapshot) -> Result<Vec<BootResource>, StoreError> {
    tables::all(rx.raw(), BOOT_RESOURCES)
}

pub(crate) fn all_mirrors(rx: &Snapshot) -> Result<Vec<Mirror>, StoreError> {
    tables::all(rx.raw(), MIRRORS)
}

/// Every (os/arch, image name) default.
pub(crate) fn all_defaults(rx: &Snapshot) -> Result<Vec<(String, String)>, StoreError> {
    let t = match rx.raw().open_table(IMAGE_DEFAULTS) {
        Ok(t) => t,
        Err(redb::TableError::TableDoesNotExist(_)) => return Ok(Vec::new()),
        Err(e) => return Err(e.into()),
    };
    let mut out = Vec::new();
    for item in t.iter()? {
        let (k, v) = item?;
        out.push((k.value().to_string(), v.value().to_string()));
    }
    Ok(out)
}

pub(crate) fn default_for(
    rx: &Snapshot,
    os: &str,
    arch: &str,
) -> Result<Option<String>, StoreError> {
    let t = match rx.raw().open_table(IMAGE_DEFAULTS) {
        Ok(t) => t,
        Err(redb::TableError::TableDoesNotExist(_)) => return Ok(None),
        Err(e) => return Err(e.into()),
    };
    Ok(t.get(default_key(os, arch).as_str())?
        .map(|v| v.value().to_string()))
}

/// Every digest a record points at: what gc must keep.
pub(crate) fn referenced_digests(
    rx: &Snapshot,
) -> Result<std::collections::BTreeSet<String>, StoreError> {
    let mut set: std::collections::BTreeSet<String> =
        all_images(rx)?.into_iter().map(|i| i.sha256).collect();
    set.extend(all_boot_resources(rx)?.into_iter().map(|b| b.sha256));
    Ok(set)
}

// --- writes inside a transaction (validate before calling: these change tables) -------------

pub(crate) fn get_image_in(tx: &Tx<'_>, name: &str) -> Result<Option<Image>, StoreError> {
    tables::get_in(tx.raw(), IMAGES, name)
}

/// Records a sync from the manifest at `url`, keeping when it was first synced.
pub(crate) fn record_mirror_in(tx: &Tx<'_>, url: &str, now_ms: u64) -> Result<(), StoreError> {
    let first =
        tables::get_in::<Mirror>(tx.raw(), MIRRORS, url)?.map_or(now_ms, |m| m.first_synced_ms);
    let mirror = Mirror {
        url: url.to_string(),
        first_synced_ms: first,
        last_synced_ms: now_ms,
    };
    tables::put_in(tx.raw(), MIRRORS, url, &mirror)
}

pub(crate) fn put_image_in(tx: &Tx<'_>, image: &Image) -> Result<(), StoreError> {
    tables::put_in(tx.raw(), IMAGES, &image.name, image)
}

/// Removes an image. When it was the default of its os/arch, another image of that os/arch
/// (the first by name) becomes the default, so deploys naming none keep working while any fits.
pub(crate) fn remove_image_in(tx: &Tx<'_>, image: &Image) -> Result<(), StoreError> {
    let key = default_key(&image.os, &image.arch);
    let names_it = tx
        .raw()
        .open_table(IMAGE_DEFAULTS)?
        .get(key.as_str())?
        .is_some_and(|v| v.value() == image.name);
    tables::remove_in(tx.raw(), IMAGES, &image.name)?;
    if names_it {
        let successor = {
            let t = tx.raw().open_table(IMAGES)?;
            let mut found = None;
            for item in t.iter()? {
                let (k, v) = item?;
                let other: Image = tables::decode(&format!("images/{}", k.value()), v.value())?;
                if other.os == image.os && other.arch == image.arch {
                    found = Some(other.name);
                    break;
                }
            }
            found
        };
        let mut defaults = tx.raw().open_table(IMAGE_DEFAULTS)?;
        match successor {
            Some(name) => defaults.insert(key.as_str(), name.as_str())?,
            None => defaults.remove(key.as_str())?,
        };
    }
    Ok(())
}

pub(crate) fn default_for_in(
    tx: &Tx<'_>,
    os: &str,
    arch: &str,
) -> Result<Option<String>, StoreError> {
    let t = tx.raw().open_table(IMAGE_DEFAULTS)?;
    let v = t.get(default_key(os, arch).as_str())?;
    Ok(v.map(|v| v.value().to_string()))
}

pub(crate) fn set_default_in(tx: &Tx<'_>, image: &Image) -> Result<(), StoreError> {
    tx.raw().open_table(IMAGE_DEFAULTS)?.insert(
        default_key(&image.os, &image.arch).as_str(),
        image.name.as_str(),
    )?;
    Ok(())
}

/// Drops the default for os/arch when it names `name` (an image moving to another os/arch).
pub(crate) fn clear_default_in(
    tx: &Tx<'_>,
    os: &str,
    arch: &str,
    name: &str,
) -> Result<(), StoreError> {
    let key = default_key(os, arch);
    let mut t = tx.raw().open_table(IMAGE_DEFAULTS)?;
    let names_it = t.get(key.as_str())?.is_some_and(|v| v.value() == name);
    if names_it {
        t.remove(key.as_str())?;
    }
    Ok(())
}

pub(crate) fn put_boot_in(tx: &Tx<'_>, boot: &BootResource) -> Result<(), StoreError> {
    tables::put_in(tx.raw(), BOOT_RESOURCES, &boot.key(), boot)
}

pub(crate) fn get_boot_in(
    tx: &Tx<'_>,
    arch: &str,
    name: &str,
) -> Result<Option<BootResource>, StoreError> {
    tables::get_in(tx.raw(), BOOT_RESOURCES, &boot_key(arch, name))
}

pub(crate) fn remove_boot_in(tx: &Tx<'_>, arch: &str, name: &str) -> Result<bool, StoreError> {
    tables::remove_in(tx.raw(), BOOT_RESOURCES, &boot_key(arch, name))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_that_could_be_paths_are_refused() {
        for bad in [
            "", ".", "..", "../etc", "a/b", "a\\b", ".hidden", "a\0b", "imports", "sync", "gc",
            "fetch",
        ] {
            assert!(check_image_name(bad).is_err(), "{bad:?}");
        }
        for good in ["ubuntu-24.04", "debian_12.amd64", "x"] {
            assert!(check_image_name(good).is_ok(), "{good:?}");
        }
        assert!(check_word("arch", "amd64").is_ok());
        assert!(check_word("arch", "../x").is_err());
        assert!(check_word("arch", "AMD64").is_err());
    }

    #[test]
    fn formats_from_suffixes_and_magic() {
        assert_eq!(
            ImageFormat::from_suffix("http://x/noble.img.zst?x=1"),
            Some(ImageFormat::RawZst)
        );
        assert_eq!(
            ImageFormat::from_suffix("root.tar.xz"),
            Some(ImageFormat::TarXz)
        );
        assert_eq!(
            ImageFormat::from_suffix("disk.raw.gz"),
            Some(ImageFormat::RawGz)
        );
        assert_eq!(ImageFormat::from_suffix("disk.raw"), Some(ImageFormat::Raw));
        assert_eq!(ImageFormat::from_suffix("disk.qcow2"), None);
        assert!(ImageFormat::RawGz.matches_head(&[0x1f, 0x8b, 8, 0]));
        assert!(!ImageFormat::RawXz.matches_head(b"plain text"));
        assert!(ImageFormat::Raw.matches_head(b""));
        let mut tar = vec![0u8; 512];
        tar[257..262].copy_from_slice(b"ustar");
        assert!(ImageFormat::Tar.matches_head(&tar));
        assert!(check_sha256(&"A".repeat(64)).is_ok());
        assert!(check_sha256("abc").is_err());
    }
}
