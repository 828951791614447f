//! The content-addressed blob directory and the one way bytes get into it.
//!
//! Layout under the cache directory:
//! - `blobs/sha256/<64 hex>`: verified content, named by its digest, never modified in place;
//! - `tmp/<random>.part`: imports in progress; emptied at every start.
//!
//! A blob path is only ever built from a digest that passed [`is_digest`], so no name, URL or
//! request can reach a file outside `blobs/`. Bytes arrive in a [`TempBlob`] (hashing as they
//! are written, checking free space as it goes), which is fsync'd and verified before
//! [`BlobDir::commit`] renames it into place and fsyncs the directory: the cache never holds a
//! half-written or unverified blob under a digest name.

use std::fs::{File, OpenOptions};
use std::io::{Seek, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use bytes::Bytes;
use sha2::{Digest, Sha256};
use tokio::sync::mpsc;

use super::ImageError;

/// How many leading bytes are kept to check or detect the format.
const HEAD_LEN: usize = 512;
/// Free space is re-checked after this many bytes, or before every write once it runs low.
const CHECK_EVERY: u64 = 4 << 20;
const LOW_WATER: u64 = 64 << 20;

/// Whether `text` is a digest as the cache names blobs: 64 lower-case hex digits.
pub(crate) fn is_digest(text: &str) -> bool {
    text.len() == 64 && text.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
}

fn hex(bytes: &[u8]) -> String {
    use std::fmt::Write;
    let mut s = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        let _ = write!(s, "{b:02x}");
    }
    s
}

/// Space on the cache's file system, and how much of it the cache's blobs take.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize, schemars::JsonSchema)]
pub struct Space {
    /// Bytes of every blob and partial import in the cache.
    pub used_bytes: u64,
    /// Bytes an import may still use (the file system's available space less the reserve).
    pub free_bytes: u64,
    /// Size of the file system holding the cache.
    pub total_bytes: u64,
    /// Kept free on the file system; imports stop before eating into it.
    pub reserve_bytes: u64,
}

/// The cache directory.
#[derive(Debug)]
pub(crate) struct BlobDir {
    root: PathBuf,
    blobs: PathBuf,
    tmp: PathBuf,
    /// Bytes left free on the file system: an import that would eat into them fails.
    reserve: u64,
}

impl BlobDir {
    /// Creates the layout under `root` if needed.
    pub fn open(root: &Path, reserve: u64) -> Result<BlobDir, ImageError> {
        let blobs = root.join("blobs").join("sha256");
        let tmp = root.join("tmp");
        for dir in [&blobs, &tmp] {
            std::fs::create_dir_all(dir).map_err(|e| ImageError::io(dir, e))?;
        }
        Ok(BlobDir {
            root: root.to_path_buf(),
            blobs,
            tmp,
            reserve,
        })
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    /// Where the blob of `digest` lives; None for anything that is not a digest.
    pub fn path_of(&self, digest: &str) -> Option<PathBuf> {
        is_digest(digest).then(|| self.blobs.join(digest))
    }

    pub fn has(&self, digest: &str) -> bool {
        self.path_of(digest).is_some_and(|p| p.is_file())
    }

    /// Removes every partial import (they belong to a previous run). Returns how many.
    pub fn clean_tmp(&self) -> Result<usize, ImageError> {
        let mut n = 0;
        let entries = std::fs::read_dir(&self.tmp).map_err(|e| ImageError::io(&self.tmp, e))?;
        for entry in entries {
            let entry = entry.map_err(|e| ImageError::io(&self.tmp, e))?;
            let path = entry.path();
            let removed = if path.is_dir() {
                std::fs::remove_dir_all(&path)
            } else {
                std::fs::remove_file(&path)
            };
            removed.map_err(|e| ImageError::io(&path, e))?;
            n += 1;
        }
        Ok(n)
    }

    /// Every blob: (digest, size). Files in `blobs/` whose names are not digests are reported
    /// as they are (gc removes them: nothing can reference them).
    pub fn list(&self) -> Result<Vec<(String, u64)>, ImageError> {
        let mut out = Vec::new();
        let entries = std::fs::read_dir(&self.blobs).map_err(|e| ImageError::io(&self.blobs, e))?;
        for entry in entries {
            let entry = entry.map_err(|e| ImageError::io(&self.blobs, e))?;
            let size = entry.metadata().map(|m| m.len()).unwrap_or(0);
            out.push((entry.file_name().to_string_lossy().into_owned(), size));
        }
        out.sort();
        Ok(out)
    }

    /// Removes one blob by the name [`BlobDir::list`] gave; answers the bytes freed.
    pub fn remove(&self, name: &str) -> Result<u64, ImageError> {
        // A listed name is a single path component (read_dir gives no separators), but check
        // anyway: removal must never leave blobs/.
        if name.is_empty() || name.contains('/') || name == "." || name == ".." {
            return Err(ImageError::Invalid(format!("{name:?} is not a blob name")));
        }
        let path = self.blobs.join(name);
        let size = std::fs::metadata(&path).map(|m| m.len()).unwrap_or(0);
        match std::fs::remove_file(&path) {
            Ok(()) => Ok(size),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(0),
            Err(e) => Err(ImageError::io(&path, e)),
        }
    }

    /// Bytes available to imports right now (after the reserve).
    pub fn available(&self) -> Result<u64, ImageError> {
        let s = rustix::fs::statvfs(&self.root)
            .map_err(|e| ImageError::io(&self.root, std::io::Error::from(e)))?;
        Ok(s.f_bavail
            .saturating_mul(s.f_frsize)
            .saturating_sub(self.reserve))
    }

    pub fn space(&self) -> Result<Space, ImageError> {
        let s = rustix::fs::statvfs(&self.root)
            .map_err(|e| ImageError::io(&self.root, std::io::Error::from(e)))?;
        let mut used = self.list()?.iter().map(|(_, size)| size).sum::<u64>();
        if let Ok(entries) = std::fs::read_dir(&self.tmp) {
            used += entries
                .filter_map(|e| e.ok()?.metadata().ok())
                .map(|m| m.len())
                .sum::<u64>();
        }
        Ok(Space {
            used_bytes: used,
            free_bytes: s
                .f_bavail
                .saturating_mul(s.f_frsize)
                .saturating_sub(self.reserve),
            total_bytes: s.f_blocks.saturating_mul(s.f_frsize),
            reserve_bytes: self.reserve,
        })
    }

    fn disk_full(&self, needed: u64, free: u64) -> ImageError {
        ImageError::DiskFull {
            dir: self.root.clone(),
            needed,
            free,
            reserve: self.reserve,
        }
    }

    /// Starts a temp file for an import. When the size is known, refuses at once if it cannot
    /// fit.
    pub fn create_temp(
        self: &Arc<Self>,
        expected_size: Option<u64>,
        progress: Arc<AtomicU64>,
    ) -> Result<TempBlob, ImageError> {
        if let Some(size) = expected_size {
            let free = self.available()?;
            if size > free {
                return Err(self.disk_full(size, free));
            }
        }
        let mut attempt = 0;
        loop {
            let name = format!("{}.part", crate::model::ids::random_token(20));
            let path = self.tmp.join(name);
            match OpenOptions::new()
                .write(true)
                .create_new(true)
                .mode(0o644)
                .open(&path)
            {
                Ok(file) => {
                    progress.store(0, Ordering::Relaxed);
                    return Ok(TempBlob {
                        file,
                        path,
                        dir: self.clone(),
                        hasher: Sha256::new(),
                        written: 0,
                        head: Vec::with_capacity(HEAD_LEN),
                        expected_size,
                        unchecked: CHECK_EVERY,
                        progress,
                    });
                }
                Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists && attempt < 5 => {
                    attempt += 1;
                }
                Err(e) => return Err(self.write_error(&path, e, 0)),
            }
        }
    }

    /// ENOSPC (or EDQUOT) becomes the disk-full error; anything else names the file.
    fn write_error(&self, path: &Path, e: std::io::Error, needed: u64) -> ImageError {
        match e.raw_os_error() {
            Some(code)
                if code == rustix::io::Errno::NOSPC.raw_os_error()
                    || code == rustix::io::Errno::DQUOT.raw_os_error() =>
            {
                self.disk_full(needed.max(1), self.available().unwrap_or(0))
            }
            _ => ImageError::io(path, e),
        }
    }

    /// Puts a verified temp file in place under its digest, durably. When the blob is already
    /// there (identical content), the temp file is simply dropped: content is stored once.
    pub fn commit(&self, mut staged: Staged) -> Result<(), ImageError> {
        let Some(target) = self.path_of(&staged.sha256) else {
            return Err(ImageError::Invalid("not a digest".into()));
        };
        if target.is_file() {
            return Ok(()); // staged's Drop removes the temp file
        }
        std::fs::rename(&staged.path, &target).map_err(|e| ImageError::io(&target, e))?;
        staged.placed = true;
        // The rename is durable only once the directory is: fsync it before any record may
        // point at the blob.
        File::open(&self.blobs)
            .and_then(|d| d.sync_all())
            .map_err(|e| ImageError::io(&self.blobs, e))?;
        Ok(())
    }
}

/// An import being written: hashes every byte, keeps the head for the format check, checks
/// free space as it goes. Dropping it deletes the file.
pub(crate) struct TempBlob {
    file: File,
    path: PathBuf,
    dir: Arc<BlobDir>,
    hasher: Sha256,
    written: u64,
    head: Vec<u8>,
    expected_size: Option<u64>,
    /// Bytes written since free space was last checked.
    unchecked: u64,
    /// Bytes written so far, for the progress of the import.
    progress: Arc<AtomicU64>,
}

impl TempBlob {
    pub fn write(&mut self, data: &[u8]) -> Result<(), ImageError> {
        if data.is_empty() {
            return Ok(());
        }
        let len = data.len() as u64;
        if let Some(size) = self.expected_size
            && self.written + len > size
        {
            return Err(ImageError::SizeMismatch {
                expected: size,
                actual: self.written + len,
            });
        }
        self.unchecked += len;
        if self.unchecked >= CHECK_EVERY {
            let free = self.dir.available()?;
            let needed = match self.expected_size {
                Some(size) => size - self.written,
                None => len,
            };
            if needed > free {
                return Err(self.dir.disk_full(needed, free));
            }
            // Once space runs low, check before every write.
            self.unchecked = if free < LOW_WATER { CHECK_EVERY } else { 0 };
        }
        self.file
            .write_all(data)
            .map_err(|e| self.dir.write_error(&self.path, e, len))?;
        if self.head.len() < HEAD_LEN {
            let take = (HEAD_LEN - self.head.len()).min(data.len());
            self.head.extend_from_slice(&data[..take]);
        }
        self.hasher.update(data);
        self.written += len;
        self.progress.store(self.written, Ordering::Relaxed);
        Ok(())
    }

    /// Throws away what was written and starts again (a server that ignored a Range request).
    pub fn restart(&mut self) -> Result<(), ImageError> {
        self.file
            .set_len(0)
            .and_then(|()| self.file.rewind())
            .map_err(|e| ImageError::io(&self.path, e))?;
        self.hasher = Sha256::new();
        self.written = 0;
        self.head.clear();
        self.unchecked = CHECK_EVERY;
        self.progress.store(0, Ordering::Relaxed);
        Ok(())
    }

    /// Flushes to disk and verifies size and digest. Nothing is kept on any failure.
    pub fn finish(mut self, expected_sha: Option<&str>) -> Result<Staged, ImageError> {
        if let Some(size) = self.expected_size
            && size != self.written
        {
            return Err(ImageError::SizeMismatch {
                expected: size,
                actual: self.written,
            });
        }
        self.file
            .sync_all()
            .map_err(|e| self.dir.write_error(&self.path, e, 0))?;
        let digest = hex(&std::mem::take(&mut self.hasher).finalize());
        if let Some(expected) = expected_sha
            && expected != digest
        {
            return Err(ImageError::ChecksumMismatch {
                expected: expected.to_string(),
                actual: digest,
            });
        }
        Ok(Staged {
            path: std::mem::take(&mut self.path),
            sha256: digest,
            size: self.written,
            head: std::mem::take(&mut self.head),
            placed: false,
        })
    }
}

impl Drop for TempBlob {
    fn drop(&mut self) {
        if !self.path.as_os_str().is_empty() {
            let _ = std::fs::remove_file(&self.path);
        }
    }
}

/// A verified temp file waiting for [`BlobDir::commit`]. Dropping it before then deletes it.
pub(crate) struct Staged {
    path: PathBuf,
    pub sha256: String,
    pub size: u64,
    /// The first bytes, for the format check.
    pub head: Vec<u8>,
    placed: bool,
}

impl Drop for Staged {
    fn drop(&mut self) {
        if !self.placed {
            let _ = std::fs::remove_file(&self.path);
        }
    }
}

enum Msg {
    Data(Bytes),
    Restart,
    Finish,
}

/// The async face of a [`TempBlob`]: chunks go over a channel to a blocking thread that hashes
/// and writes them, so disk I/O and sha256 never run on a runtime worker. Nothing is kept unless
/// [`Ingest::finish`] is called: a dropped Ingest (a client that went away, a cancelled task)
/// discards its file.
pub(crate) struct Ingest {
    tx: mpsc::Sender<Msg>,
    task: tokio::task::JoinHandle<Result<Staged, ImageError>>,
}

impl Ingest {
    pub fn start(temp: TempBlob, expected_sha: Option<String>) -> Ingest {
        // A few chunks in flight keep the network and the disk busy at once.
        let (tx, mut rx) = mpsc::channel::<Msg>(8);
        let task = tokio::task::spawn_blocking(move || {
            let mut temp = temp;
            while let Some(msg) = rx.blocking_recv() {
                match msg {
                    Msg::Data(b) => temp.write(&b)?,
                    Msg::Restart => temp.restart()?,
                    Msg::Finish => return temp.finish(expected_sha.as_deref()),
                }
            }
            Err(ImageError::Aborted)
        });
        Ingest { tx, task }
    }

    /// Queues a chunk. An error means the writer stopped (disk full, too many bytes): call
    /// [`Ingest::finish`] to learn why.
    pub async fn write(&self, data: Bytes) -> Result<(), ()> {
        self.tx.send(Msg::Data(data)).await.map_err(|_| ())
    }

    pub async fn restart(&self) -> Result<(), ()> {
        self.tx.send(Msg::Restart).await.map_err(|_| ())
    }

    /// Ends the input and answers the verified file, or why there is none.
    pub async fn finish(self) -> Result<Staged, ImageError> {
        let _ = self.tx.send(Msg::Finish).await;
        self.outcome().await
    }

    /// The writer's result when it stopped on its own (after a failed [`Ingest::write`]).
    pub async fn outcome(self) -> Result<Staged, ImageError> {
        drop(self.tx);
        match self.task.await {
            Ok(r) => r,
            Err(e) => Err(ImageError::Internal(format!(
                "the import writer failed: {e}"
            ))),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn digest_names_only() {
        assert!(is_digest(&"a".repeat(64)));
        assert!(!is_digest(&"A".repeat(64)));
        assert!(!is_digest("../../etc/passwd"));
        let dir = tempfile::tempdir().unwrap();
        let blobs = BlobDir::open(dir.path(), 0).unwrap();
        assert!(blobs.path_of("..").is_none());
        assert!(blobs.remove("..").is_err());
        assert!(blobs.remove("a/b").is_err());
    }

    #[test]
    fn temp_verifies_and_commits_once() {
        let dir = tempfile::tempdir().unwrap();
        let blobs = Arc::new(BlobDir::open(dir.path(), 0).unwrap());
        let progress = Arc::new(AtomicU64::new(0));
        let mut t = blobs.create_temp(Some(5), progress.clone()).unwrap();
        t.write(b"hello").unwrap();
        assert_eq!(progress.load(Ordering::Relaxed), 5);
        let staged = t.finish(None).unwrap();
        let digest = staged.sha256.clone();
        assert_eq!(
            digest,
            "2cf24dba5fb0a30e26e83b2ac5b9e29e1b161e5c1fa7425e73043362938b9824"
        );
        blobs.commit(staged).unwrap();
        assert!(blobs.has(&digest));
        // Same content again: stored once, the temp file goes away.
        let mut t = blobs.create_temp(None, progress.clone()).unwrap();
        t.write(b"hello").unwrap();
        blobs.commit(t.finish(Some(&digest)).unwrap()).unwrap();
        assert_eq!(blobs.list().unwrap().len(), 1);
        assert_eq!(
            std::fs::read_dir(dir.path().join("tmp")).unwrap().count(),
            0
        );
        // Wrong digest: refused, nothing left behind.
        let mut t = blobs.create_temp(None, progress).unwrap();
        t.write(b"other").unwrap();
        assert!(matches!(
            t.finish(Some(&digest)),
            Err(ImageError::ChecksumMismatch { .. })
        ));
        assert_eq!(
            std::fs::read_dir(dir.path().join("tmp")).unwrap().count(),
            0
        );
    }
}
