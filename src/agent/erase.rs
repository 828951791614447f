//! Wiping a disk on release: quick, full or secure.
//!
//! Everything is done with plain reads, writes and block-device ioctls, no external tools, so it
//! works the same on a regular file (tests) and on a disk or loop device. This is blocking I/O:
//! call it from a blocking thread.
//!
//! - quick: what `wipefs` plus a zeroed head and tail achieve: the first and last MiB of the disk
//!   (MBR, primary GPT, backup GPT) and of every partition the table lists (filesystem, LVM, RAID
//!   and swap signatures live at a partition's start or end) are zeroed.
//! - full: every byte is zeroed, with progress.
//! - secure: the drive erases itself, in MAAS's order: NVMe Format NVM with Secure Erase Settings
//!   (cryptographic erase where the controller has it, else user data erase), ATA SECURITY ERASE
//!   UNIT (with a temporary password; not on a frozen drive), then `BLKSECDISCARD` over the whole
//!   device; where none is possible (loop devices, files, virtual disks) every byte is zeroed.
//!   The report names the method used and why each better one was not possible
//!   ([`super::secure_erase`]).

use std::fs::{File, OpenOptions};
use std::io::{Seek, SeekFrom, Write};
use std::os::fd::AsRawFd;
use std::os::unix::fs::FileTypeExt;
use std::path::Path;

use crate::model::EraseMode;

use super::partition::{self, MIB};
use super::secure_erase;

/// Zeroing writes this much at a time: large enough for full throughput, small enough for
/// frequent progress.
const CHUNK: usize = 4 * 1024 * 1024;

// Block-device ioctls from <linux/fs.h> (_IO(0x12, n) and _IOR(0x12, 114, size_t)).
const BLKRRPART: libc::c_ulong = 0x125f;
const BLKSSZGET: libc::c_ulong = 0x1268;
const BLKSECDISCARD: libc::c_ulong = 0x127d;

#[derive(Debug, thiserror::Error)]
pub enum EraseError {
    #[error("cannot open {path} for erasing: {source}")]
    Open {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("erasing {path} failed at byte {offset}: {source}")]
    Write {
        path: String,
        offset: u64,
        #[source]
        source: std::io::Error,
    },
    #[error("erase mode \"none\" asks for no erasing")]
    NoneMode,
}

/// What was done to one disk.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub(crate) struct EraseReport {
    pub path: String,
    /// "quick", "full", "nvme-format-crypto", "nvme-format-user-data", "ata-security-erase",
    /// "ata-security-erase-enhanced", "secure-discard", or "full" after a secure erase was not
    /// possible.
    pub(crate) method: String,
    pub(crate) bytes_zeroed: u64,
    /// Why a secure erase fell back to a full one, for the operator.
    pub(crate) note: String,
}

/// An open disk or file with what erasing needs to know about it.
pub(crate) struct Target {
    file: File,
    path: String,
    size: u64,
    sector: u64,
    is_block: bool,
}

impl Target {
    /// Opens a disk (or a file standing in for one) for writing.
    pub(crate) fn open(path: &Path) -> Result<Target, EraseError> {
        let shown = path.display().to_string();
        let open_err = |source| EraseError::Open {
            path: shown.clone(),
            source,
        };
        let mut file = OpenOptions::new()
            .read(true)
            .write(true)
            .open(path)
            .map_err(open_err)?;
        let is_block = file
            .metadata()
            .map_err(open_err)?
            .file_type()
            .is_block_device();
        // Seeking to the end gives the size of block devices and files alike.
        let size = file.seek(SeekFrom::End(0)).map_err(open_err)?;
        let sector = if is_block {
            logical_sector_size(&file)
        } else {
            512
        };
        Ok(Target {
            file,
            path: shown,
            size,
            sector,
            is_block,
        })
    }

    pub fn size(&self) -> u64 {
        self.size
    }

    pub(crate) fn sector(&self) -> u64 {
        self.sector
    }

    pub(crate) fn file(&mut self) -> &mut File {
        &mut self.file
    }

    pub fn path(&self) -> &str {
        &self.path
    }

    /// Writes zeros over `[start, end)`, calling `progress(bytes done in this call)` after each
    /// chunk.
    pub(crate) fn zero_range(
        &mut self,
        start: u64,
        end: u64,
        progress: &mut dyn FnMut(u64),
    ) -> Result<u64, EraseError> {
        let end = end.min(self.size);
        if start >= end {
            return Ok(0);
        }
        let zeros = vec![0u8; CHUNK];
        let write_err = |offset, source| EraseError::Write {
            path: self.path.clone(),
            offset,
            source,
        };
        self.file
            .seek(SeekFrom::Start(start))
            .map_err(|e| write_err(start, e))?;
        let mut at = start;
        while at < end {
            let n = usize::try_from(end - at).map_or(CHUNK, |r| r.min(CHUNK));
            self.file
                .write_all(&zeros[..n])
                .map_err(|e| write_err(at, e))?;
            at += n as u64;
            progress(at - start);
        }
        Ok(end - start)
    }

    /// Flushes to stable storage and, for a block device, asks the kernel to re-read the
    /// (now absent or new) partition table so that no stale partition devices linger.
    pub fn sync(&mut self) -> Result<(), EraseError> {
        self.file.sync_all().map_err(|source| EraseError::Write {
            path: self.path.clone(),
            offset: self.size,
            source,
        })?;
        if self.is_block {
            // SAFETY: BLKRRPART takes no argument; the fd is open and owned by self.file.
            // Failure (EBUSY when a partition is in use, EINVAL for a loop device without
            // partition scanning) only means the kernel keeps its view; the disk is written.
            let _ = unsafe { libc::ioctl(self.file.as_raw_fd(), BLKRRPART) };
        }
        Ok(())
    }
}

/// The device's logical sector size (BLKSSZGET), 512 when it cannot be asked.
fn logical_sector_size(file: &File) -> u64 {
    let mut size: libc::c_int = 0;
    // SAFETY: BLKSSZGET writes one int through the pointer, which points at a live c_int.
    let rc = unsafe { libc::ioctl(file.as_raw_fd(), BLKSSZGET, &mut size as *mut libc::c_int) };
    if rc == 0 && size >= 512 {
        u64::try_from(size).unwrap_or(512)
    } else {
        512
    }
}

/// The byte ranges a quick erase zeroes: the first and last MiB of the disk and of each
/// partition in `extents` (start, length), clamped to the disk and merged.
pub(crate) fn quick_ranges(size: u64, extents: &[(u64, u64)]) -> Vec<(u64, u64)> {
    let mut ranges = vec![(0, MIB.min(size)), (size.saturating_sub(MIB), size)];
    for &(start, len) in extents {
        let end = start.saturating_add(len).min(size);
        if start >= end {
            continue;
        }
        ranges.push((start, start.saturating_add(MIB).min(end)));
        ranges.push((end.saturating_sub(MIB).max(start), end));
    }
    ranges.sort_unstable();
    let mut merged: Vec<(u64, u64)> = Vec::new();
    for (s, e) in ranges {
        match merged.last_mut() {
            Some(last) if s <= last.1 => last.1 = last.1.max(e),
            _ if s < e => merged.push((s, e)),
            _ => {}
        }
    }
    merged
}

/// Erases one disk. `progress(done, total)` is called as bytes are zeroed.
pub(crate) fn erase(
    path: &Path,
    mode: EraseMode,
    progress: &mut dyn FnMut(u64, u64),
) -> Result<EraseReport, EraseError> {
    let mut t = Target::open(path)?;
    match mode {
        EraseMode::None => Err(EraseError::NoneMode),
        EraseMode::Quick => quick(&mut t, progress),
        EraseMode::Full => full(&mut t, "full", String::new(), progress),
        EraseMode::Secure => secure(&mut t, progress),
    }
}

/// Secure erase in MAAS's order: NVMe Format NVM with secure erase, ATA SECURITY ERASE UNIT,
/// BLKSECDISCARD, and at last zeroing every byte; the report says why each better way was not
/// taken.
fn secure(t: &mut Target, progress: &mut dyn FnMut(u64, u64)) -> Result<EraseReport, EraseError> {
    let mut not_possible: Vec<String> = Vec::new();
    let mut done = |t: &mut Target, method: String, note: String, not_possible: &[String]| {
        t.sync()?;
        progress(t.size, t.size);
        let note = if not_possible.is_empty() {
            note
        } else {
            format!("{note} (not possible: {})", not_possible.join("; "))
        };
        Ok(EraseReport {
            path: t.path.clone(),
            method,
            bytes_zeroed: 0,
            note,
        })
    };
    if t.is_block {
        match secure_erase::nvme_format(&t.file) {
            Ok(e) => return done(t, e.method, e.note, &not_possible),
            Err(why) => not_possible.push(format!("NVMe format: {why}")),
        }
        match secure_erase::ata_security_erase(&t.file) {
            Ok(e) => return done(t, e.method, e.note, &not_possible),
            Err(why) => not_possible.push(format!("ATA security erase: {why}")),
        }
    }
    match secure_discard(t) {
        Ok(()) => done(
            t,
            "secure-discard".into(),
            "the device erased every block (BLKSECDISCARD)".into(),
            &not_possible,
        ),
        Err(why) => {
            not_possible.push(why);
            let why = not_possible.join("; ");
            tracing::warn!(disk = %t.path, %why, "secure erase not possible; zeroing every byte");
            let note = format!("secure erase not possible ({why}); zeroed every byte instead");
            full(t, "full", note, progress)
        }
    }
}

fn quick(t: &mut Target, progress: &mut dyn FnMut(u64, u64)) -> Result<EraseReport, EraseError> {
    let extents = partition::extents_bytes(&mut t.file, t.sector);
    let ranges = quick_ranges(t.size, &extents);
    let total: u64 = ranges.iter().map(|(s, e)| e - s).sum();
    let mut done = 0;
    for (s, e) in ranges {
        let before = done;
        done += t.zero_range(s, e, &mut |n| progress(before + n, total))?;
    }
    t.sync()?;
    Ok(EraseReport {
        path: t.path.clone(),
        method: "quick".into(),
        bytes_zeroed: done,
        note: format!(
            "zeroed the first and last MiB of the disk and of {} partition(s)",
            extents.len()
        ),
    })
}

fn full(
    t: &mut Target,
    method: &str,
    note: String,
    progress: &mut dyn FnMut(u64, u64),
) -> Result<EraseReport, EraseError> {
    let size = t.size;
    let done = t.zero_range(0, size, &mut |n| progress(n, size))?;
    t.sync()?;
    Ok(EraseReport {
        path: t.path.clone(),
        method: method.into(),
        bytes_zeroed: done,
        note,
    })
}

/// Asks a block device to securely discard every block. Err says why it could not.
fn secure_discard(t: &Target) -> Result<(), String> {
    if !t.is_block {
        return Err(format!("{} is not a block device", t.path));
    }
    let range: [u64; 2] = [0, t.size];
    // SAFETY: BLKSECDISCARD reads two u64 (start, length) through the pointer, which points at
    // a live [u64; 2]; the fd is open for writing.
    let rc = unsafe { libc::ioctl(t.file.as_raw_fd(), BLKSECDISCARD, range.as_ptr()) };
    if rc == 0 {
        Ok(())
    } else {
        Err(format!(
            "BLKSECDISCARD: {}",
            std::io::Error::last_os_error()
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quick_ranges_cover_disk_and_partition_ends() {
        let size = 100 * MIB;
        let r = quick_ranges(size, &[(MIB, 10 * MIB), (20 * MIB, 79 * MIB)]);
        assert_eq!(
            r,
            vec![
                (0, 2 * MIB),          // disk head + partition 1 head
                (10 * MIB, 11 * MIB),  // partition 1 tail
                (20 * MIB, 21 * MIB),  // partition 2 head
                (98 * MIB, 100 * MIB), // partition 2 tail + disk tail
            ]
        );
    }

    #[test]
    fn quick_ranges_on_tiny_disks_and_odd_extents() {
        assert_eq!(quick_ranges(1000, &[]), vec![(0, 1000)]);
        // A partition past the disk's end (a table from a bigger disk) is clamped away.
        assert_eq!(
            quick_ranges(4 * MIB, &[(8 * MIB, MIB)]),
            vec![(0, MIB), (3 * MIB, 4 * MIB)]
        );
        assert_eq!(quick_ranges(0, &[]), Vec::<(u64, u64)>::new());
    }
}
