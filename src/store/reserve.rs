//! The state disk's reserve: a file of allocated space beside the database, deleted when the
//! disk fills up so that the writes that must go through (logins, deletes, the appliance's own
//! records) find room, and made anew once the disk has room for it again.
//!
//! Why a file and not a check of free space: redb's commits need pages the file system may not
//! have, and "free space" is only known when a write fails. Space held in a file is space that
//! can be given back at that moment.

use std::io;
use std::path::{Path, PathBuf};

/// The default reserve: room for thousands of small records, little on any real disk.
pub(crate) const DEFAULT_BYTES: u64 = 8 << 20;

/// The reserve file of one database.
#[derive(Debug)]
pub(crate) struct Reserve {
    path: PathBuf,
    bytes: u64,
}

impl Reserve {
    /// The reserve of the database at `db_path`: `<db_path>.reserve`, `bytes` long.
    pub fn new(db_path: &Path, bytes: u64) -> Reserve {
        let mut name = db_path.as_os_str().to_owned();
        name.push(".reserve");
        Reserve {
            path: PathBuf::from(name),
            bytes,
        }
    }

    /// "8 MiB at /var/lib/rackbox/rackbox.redb.reserve", for messages.
    pub fn describe(&self) -> String {
        format!(
            "{} MiB reserve at {}",
            self.bytes >> 20,
            self.path.display()
        )
    }

    /// Makes the reserve when it is missing or short, if the file system has room for it and
    /// as much again (so that making it does not fill the disk at once). Ok when it is there.
    pub fn ensure(&self) -> io::Result<()> {
        if self.bytes == 0 {
            return Ok(());
        }
        if std::fs::metadata(&self.path).is_ok_and(|m| m.len() >= self.bytes) {
            return Ok(());
        }
        let dir = self.path.parent().unwrap_or(Path::new("."));
        let fs = rustix::fs::statvfs(dir).map_err(io::Error::from)?;
        let free = fs.f_bavail.saturating_mul(fs.f_frsize);
        if free < self.bytes.saturating_mul(2) {
            return Err(io::Error::new(
                io::ErrorKind::StorageFull,
                format!(
                    "{} MiB free, {} MiB needed",
                    free >> 20,
                    self.bytes.saturating_mul(2) >> 20
                ),
            ));
        }
        let file = std::fs::OpenOptions::new()
            .create(true)
            .write(true)
            .truncate(false)
            .open(&self.path)?;
        // Allocated, not sparse: a hole would give nothing back when deleted.
        let allocated =
            rustix::fs::fallocate(&file, rustix::fs::FallocateFlags::empty(), 0, self.bytes)
                .map_err(io::Error::from);
        if let Err(e) = allocated {
            drop(file);
            let _ = std::fs::remove_file(&self.path);
            return Err(e);
        }
        file.sync_all()
    }

    /// Deletes the reserve; returns how many bytes that gave back (0 when there was none).
    pub fn release(&self) -> io::Result<u64> {
        let size = match std::fs::metadata(&self.path) {
            Ok(m) => m.len(),
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(0),
            Err(e) => return Err(e),
        };
        std::fs::remove_file(&self.path)?;
        Ok(size)
    }
}
