//! Mapping a requested file name to a file under the TFTP root, and nothing else.
//!
//! Path escapes are a whole class of TFTP server CVEs, so this is done in two layers:
//! a lexical check of the name as sent (no `..`, no absolute path, no NUL, `\` read as
//! `/`), then, on the real file system, the canonical path must still be under the
//! canonical root (a symlink inside the root may not lead outside it), and the file is
//! opened without following a symlink in its last component and must be a regular file.

use std::ffi::OsStr;
use std::fs::File;
use std::io;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

/// Why a requested name is not served.
#[derive(Debug, thiserror::Error)]
pub enum PathRefusal {
    /// The name tries to leave the root: `..`, an absolute path, a NUL byte, or a
    /// symlink resolving outside the root. Answered with ERROR 2 (access violation).
    #[error("path escapes the TFTP root: {0}")]
    Escapes(&'static str),
    /// The name is empty or names a directory, a device or another non-file.
    #[error("not a regular file")]
    NotAFile,
    /// No such file under the root. Answered with ERROR 1.
    #[error("file not found")]
    NotFound,
    /// The file exists but cannot be read (permissions, I/O error).
    #[error("cannot open file: {0}")]
    Unreadable(io::Error),
}

/// Turns the requested name into a path relative to the root, lexically.
///
/// Firmware commonly sends `/undionly.kpxe`: one leading `/` is stripped and the rest is
/// taken as relative, as `in.tftpd -s` does. `\` counts as a separator (Windows-style
/// clients), `.` and empty components are skipped, `..` anywhere is refused rather than
/// resolved, so there is nothing to get wrong about where it would lead.
pub fn relative_path(requested: &[u8]) -> Result<PathBuf, PathRefusal> {
    if requested.contains(&0) {
        return Err(PathRefusal::Escapes("NUL byte in file name"));
    }
    let normalized: Vec<u8> = requested
        .iter()
        .map(|&b| if b == b'\\' { b'/' } else { b })
        .collect();
    let without_slash = normalized.strip_prefix(b"/").unwrap_or(&normalized);
    if without_slash.starts_with(b"/") {
        return Err(PathRefusal::Escapes("absolute path"));
    }
    let mut relative = PathBuf::new();
    for component in without_slash.split(|&b| b == b'/') {
        match component {
            b"" | b"." => {}
            b".." => return Err(PathRefusal::Escapes("'..' component")),
            name => relative.push(OsStr::from_bytes(name)),
        }
    }
    if relative.as_os_str().is_empty() {
        return Err(PathRefusal::NotAFile);
    }
    Ok(relative)
}

/// Opens the requested file under `canonical_root` (which must already be canonical).
///
/// Blocking file system calls: run it on a blocking thread. Returns the open file and
/// its size, taken from the open descriptor so it describes what will be streamed.
pub(crate) fn open_under_root(
    canonical_root: &Path,
    requested: &[u8],
) -> Result<(File, u64), PathRefusal> {
    let relative = relative_path(requested)?;
    let canonical = std::fs::canonicalize(canonical_root.join(&relative)).map_err(|error| {
        match error.kind() {
            io::ErrorKind::NotFound | io::ErrorKind::NotADirectory => PathRefusal::NotFound,
            _ => PathRefusal::Unreadable(error),
        }
    })?;
    if !canonical.starts_with(canonical_root) {
        return Err(PathRefusal::Escapes("symlink leads outside the root"));
    }
    // O_NOFOLLOW: should the last component be swapped for a symlink between the check
    // above and this open, the open fails instead of following it. O_NONBLOCK: opening
    // a FIFO put in the root must not hang the transfer; it has no effect on files.
    let file = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK)
        .open(&canonical)
        .map_err(|error| match error.raw_os_error() {
            Some(libc::ELOOP) => PathRefusal::Escapes("symlink appeared at open"),
            _ if error.kind() == io::ErrorKind::NotFound => PathRefusal::NotFound,
            _ => PathRefusal::Unreadable(error),
        })?;
    let metadata = file.metadata().map_err(PathRefusal::Unreadable)?;
    if !metadata.is_file() {
        return Err(PathRefusal::NotAFile);
    }
    Ok((file, metadata.len()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Read;

    #[test]
    fn plain_and_nested_names_are_relative() {
        assert_eq!(
            relative_path(b"undionly.kpxe").ok(),
            Some(PathBuf::from("undionly.kpxe"))
        );
        assert_eq!(
            relative_path(b"efi/x64/snponly.efi").ok(),
            Some(PathBuf::from("efi/x64/snponly.efi"))
        );
        assert_eq!(
            relative_path(b"./a//b/./c").ok(),
            Some(PathBuf::from("a/b/c"))
        );
    }

    #[test]
    fn one_leading_slash_is_stripped() {
        assert_eq!(
            relative_path(b"/undionly.kpxe").ok(),
            Some(PathBuf::from("undionly.kpxe"))
        );
        assert!(matches!(
            relative_path(b"//etc/passwd"),
            Err(PathRefusal::Escapes(_))
        ));
    }

    #[test]
    fn backslashes_are_separators() {
        assert_eq!(
            relative_path(b"\\efi\\boot\\bootx64.efi").ok(),
            Some(PathBuf::from("efi/boot/bootx64.efi"))
        );
        assert!(matches!(
            relative_path(b"..\\..\\etc\\passwd"),
            Err(PathRefusal::Escapes(_))
        ));
        assert!(matches!(
            relative_path(b"\\\\server\\share"),
            Err(PathRefusal::Escapes(_))
        ));
    }

    #[test]
    fn dot_dot_anywhere_is_refused() {
        for name in [
            &b"../etc/passwd"[..],
            b"/../../etc/passwd",
            b"a/../b",
            b"a/..",
            b"..",
        ] {
            assert!(
                matches!(relative_path(name), Err(PathRefusal::Escapes(_))),
                "{name:?} accepted"
            );
        }
        // Names that merely contain dots are files like any other.
        assert_eq!(
            relative_path(b"a..b/...").ok(),
            Some(PathBuf::from("a..b/..."))
        );
    }

    #[test]
    fn nul_and_empty_names_are_refused() {
        assert!(matches!(
            relative_path(b"a\0b"),
            Err(PathRefusal::Escapes(_))
        ));
        for name in [&b""[..], b"/", b".", b"./"] {
            assert!(
                matches!(relative_path(name), Err(PathRefusal::NotAFile)),
                "{name:?}"
            );
        }
    }

    fn root_with_files() -> (tempfile::TempDir, PathBuf) {
        let outside = tempfile::tempdir().unwrap();
        let root = outside.path().join("root");
        std::fs::create_dir_all(root.join("sub")).unwrap();
        std::fs::write(root.join("boot.bin"), b"boot").unwrap();
        std::fs::write(root.join("sub/inner.bin"), b"inner").unwrap();
        std::fs::write(outside.path().join("secret"), b"secret").unwrap();
        std::os::unix::fs::symlink(outside.path().join("secret"), root.join("escape")).unwrap();
        std::os::unix::fs::symlink("sub/inner.bin", root.join("alias")).unwrap();
        std::os::unix::fs::symlink(outside.path(), root.join("outdir")).unwrap();
        let canonical = std::fs::canonicalize(&root).unwrap();
        (outside, canonical)
    }

    fn read(root: &Path, name: &[u8]) -> Result<Vec<u8>, PathRefusal> {
        let (mut file, size) = open_under_root(root, name)?;
        let mut content = Vec::new();
        file.read_to_end(&mut content).unwrap();
        assert_eq!(content.len() as u64, size);
        Ok(content)
    }

    #[test]
    fn serves_files_and_symlinks_that_stay_inside() {
        let (_dir, root) = root_with_files();
        assert_eq!(read(&root, b"/boot.bin").unwrap(), b"boot");
        assert_eq!(read(&root, b"sub\\inner.bin").unwrap(), b"inner");
        assert_eq!(read(&root, b"alias").unwrap(), b"inner");
    }

    #[test]
    fn refuses_symlinks_out_of_the_root() {
        let (_dir, root) = root_with_files();
        assert!(matches!(
            read(&root, b"escape"),
            Err(PathRefusal::Escapes(_))
        ));
        assert!(matches!(
            read(&root, b"outdir/secret"),
            Err(PathRefusal::Escapes(_))
        ));
    }

    #[test]
    fn missing_files_and_directories_are_not_served() {
        let (_dir, root) = root_with_files();
        assert!(matches!(read(&root, b"nope"), Err(PathRefusal::NotFound)));
        assert!(matches!(
            read(&root, b"boot.bin/x"),
            Err(PathRefusal::NotFound)
        ));
        assert!(matches!(read(&root, b"sub"), Err(PathRefusal::NotAFile)));
    }
}
