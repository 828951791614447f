//! The one error of the image cache; each variant maps to one HTTP status in the API.

use std::path::{Path, PathBuf};

use crate::model::ErrorKind;
use crate::store::StoreError;

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
    /// What the caller is told (one HTTP status per kind, in every face).
    pub fn kind(&self) -> ErrorKind {
        match self {
            ImageError::Invalid(_)
            | ImageError::ChecksumMismatch { .. }
            | ImageError::SizeMismatch { .. }
            | ImageError::WrongFormat { .. }
            | ImageError::Aborted => ErrorKind::Invalid,
            ImageError::NotFound { .. } => ErrorKind::NotFound,
            ImageError::Conflict(_) => ErrorKind::Conflict,
            ImageError::DiskFull { .. } => ErrorKind::DiskFull,
            ImageError::Fetch(_) => ErrorKind::Upstream,
            ImageError::Io { .. } | ImageError::Internal(_) => ErrorKind::Internal,
            ImageError::Store(e) => e.kind(),
        }
    }

    pub fn io(path: &Path, source: std::io::Error) -> ImageError {
        ImageError::Io {
            path: path.to_path_buf(),
            source,
        }
    }

    pub(super) fn not_found(kind: &'static str, id: impl Into<String>) -> ImageError {
        ImageError::NotFound {
            kind,
            id: id.into(),
        }
    }
}
