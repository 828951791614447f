//! The TFTP root as the daemon keeps it: a directory holding exactly the files of an
//! allow-list (the boot loaders of the image cache), under the names firmware asks for.
//!
//! Why a directory at all, rather than serving blobs straight from the cache: the server
//! stays a plain "files under one root" server whose path checks are easy to trust, and the
//! root can be looked at with `ls` to see what firmware can fetch. Entries are hard links to
//! the cache's blobs (no copy, no extra space; blobs are never modified in place, so a link
//! can never show a half-written file), or copies where a link is impossible (another file
//! system). Each entry is replaced by a rename, so a transfer never sees a half-made file,
//! and one already running keeps reading the file it opened. Whatever is in the root and not
//! on the list is removed: nothing else is ever reachable by TFTP.

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::io;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use super::path::relative_path;

/// What one [`materialize`] did.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub(crate) struct RootReport {
    /// Entries made as hard links to their source.
    pub(crate) linked: usize,
    /// Entries made as copies (the source is on another file system).
    pub(crate) copied: usize,
    /// Entries that already were what the list asks for.
    pub(crate) unchanged: usize,
    /// Files, links and directories removed because the list does not name them.
    pub(crate) removed: usize,
    /// Names of the list that cannot be a path under the root (never expected from the
    /// image cache, whose names are checked words): skipped, not served.
    pub(crate) refused: Vec<String>,
}

/// Why the root could not be brought in line with the list.
#[derive(Debug, thiserror::Error)]
#[error("TFTP root {path}: {source}")]
pub struct RootError {
    /// The file or directory the failing operation was about.
    pub path: PathBuf,
    /// What the file system said.
    #[source]
    pub(crate) source: io::Error,
}

fn at(path: &Path) -> impl FnOnce(io::Error) -> RootError + '_ {
    move |source| RootError {
        path: path.to_path_buf(),
        source,
    }
}

/// Makes `root` hold exactly `files` (name as firmware asks for it, e.g. `undionly.kpxe` or
/// `amd64/undionly.kpxe` -> the file to serve), creating `root` if needed.
///
/// Blocking file system calls: run it on a blocking thread.
pub(crate) fn materialize(
    root: &Path,
    files: &BTreeMap<String, PathBuf>,
) -> Result<RootReport, RootError> {
    fs::create_dir_all(root).map_err(at(root))?;
    let mut report = RootReport::default();
    // Relative paths wanted, and every directory that leads to one of them.
    let mut wanted: BTreeSet<PathBuf> = BTreeSet::new();
    let mut dirs: BTreeSet<PathBuf> = BTreeSet::new();
    for (name, source) in files {
        let Ok(relative) = relative_path(name.as_bytes()) else {
            report.refused.push(name.clone());
            continue;
        };
        let target = root.join(&relative);
        if let Some(parent) = relative.parent() {
            for ancestor in parent.ancestors().filter(|a| !a.as_os_str().is_empty()) {
                dirs.insert(ancestor.to_path_buf());
            }
        }
        place(root, &target, source, &mut report)?;
        wanted.insert(relative);
    }
    prune(root, Path::new(""), &wanted, &dirs, &mut report)?;
    Ok(report)
}

/// Puts `source` at `target` (a link, else a copy) unless it already is there.
fn place(
    root: &Path,
    target: &Path,
    source: &Path,
    report: &mut RootReport,
) -> Result<(), RootError> {
    let source_meta = fs::metadata(source).map_err(at(source))?;
    if let Some(parent) = target.parent() {
        make_dirs(root, parent)?;
    }
    match fs::symlink_metadata(target) {
        Ok(meta) if meta.is_file() => {
            if meta.dev() == source_meta.dev() && meta.ino() == source_meta.ino() {
                report.unchanged += 1;
                return Ok(());
            }
            if meta.len() == source_meta.len() && same_content(target, source)? {
                report.unchanged += 1;
                return Ok(());
            }
        }
        Ok(meta) if meta.is_dir() => fs::remove_dir_all(target).map_err(at(target))?,
        Ok(_) => {}
        Err(e) if e.kind() == io::ErrorKind::NotFound => {}
        Err(e) => return Err(at(target)(e)),
    }
    let file_name = target
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let staging = target.with_file_name(format!(".{file_name}.rackbox-new"));
    match fs::remove_file(&staging) {
        Ok(()) => {}
        Err(e) if e.kind() == io::ErrorKind::NotFound => {}
        Err(e) => return Err(at(&staging)(e)),
    }
    match fs::hard_link(source, &staging) {
        Ok(()) => report.linked += 1,
        // EXDEV (another file system), or a file system without hard links: copy.
        Err(_) => {
            fs::copy(source, &staging).map_err(at(&staging))?;
            report.copied += 1;
        }
    }
    fs::rename(&staging, target).map_err(at(target))
}

/// Creates the directories from `root` down to `dir`, replacing any non-directory in the way
/// (a symlink there could otherwise lead a link or copy outside the root).
fn make_dirs(root: &Path, dir: &Path) -> Result<(), RootError> {
    let Ok(relative) = dir.strip_prefix(root) else {
        return Ok(());
    };
    let mut current = root.to_path_buf();
    for component in relative.components() {
        current.push(component);
        match fs::symlink_metadata(&current) {
            Ok(meta) if meta.is_dir() => continue,
            Ok(_) => fs::remove_file(&current).map_err(at(&current))?,
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => return Err(at(&current)(e)),
        }
        fs::create_dir(&current).map_err(at(&current))?;
    }
    Ok(())
}

/// Whether two files hold the same bytes (boot loaders are small: read both).
fn same_content(a: &Path, b: &Path) -> Result<bool, RootError> {
    let left = fs::read(a).map_err(at(a))?;
    let right = fs::read(b).map_err(at(b))?;
    Ok(left == right)
}

/// Removes, under `root/relative`, everything that is neither a wanted file nor a directory
/// leading to one. Symlinks are removed, never followed.
fn prune(
    root: &Path,
    relative: &Path,
    wanted: &BTreeSet<PathBuf>,
    dirs: &BTreeSet<PathBuf>,
    report: &mut RootReport,
) -> Result<(), RootError> {
    let dir = root.join(relative);
    let entries = fs::read_dir(&dir).map_err(at(&dir))?;
    for entry in entries {
        let entry = entry.map_err(at(&dir))?;
        let rel = relative.join(entry.file_name());
        let path = entry.path();
        let meta = fs::symlink_metadata(&path).map_err(at(&path))?;
        if meta.is_dir() {
            if dirs.contains(&rel) {
                prune(root, &rel, wanted, dirs, report)?;
            } else {
                fs::remove_dir_all(&path).map_err(at(&path))?;
                report.removed += 1;
            }
        } else if !(meta.is_file() && wanted.contains(&rel)) {
            fs::remove_file(&path).map_err(at(&path))?;
            report.removed += 1;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn list(root: &Path) -> Vec<String> {
        let mut out = Vec::new();
        let mut stack = vec![root.to_path_buf()];
        while let Some(dir) = stack.pop() {
            for e in fs::read_dir(&dir).unwrap() {
                let p = e.unwrap().path();
                let rel = p.strip_prefix(root).unwrap().to_string_lossy().into_owned();
                if fs::symlink_metadata(&p).unwrap().is_dir() {
                    out.push(format!("{rel}/"));
                    stack.push(p);
                } else {
                    out.push(rel);
                }
            }
        }
        out.sort();
        out
    }

    #[test]
    fn root_holds_exactly_the_list_as_hard_links() {
        let dir = tempfile::tempdir().unwrap();
        let blobs = dir.path().join("blobs");
        fs::create_dir(&blobs).unwrap();
        fs::write(blobs.join("a"), b"undionly").unwrap();
        fs::write(blobs.join("b"), b"snponly").unwrap();
        let root = dir.path().join("tftp");
        // Left-overs and traps: a stray file, a stray directory, a symlink to outside.
        fs::create_dir_all(root.join("old/deep")).unwrap();
        fs::write(root.join("stray.txt"), b"x").unwrap();
        std::os::unix::fs::symlink("/etc", root.join("amd64")).unwrap();
        let files = BTreeMap::from([
            ("undionly.kpxe".to_string(), blobs.join("a")),
            ("amd64/undionly.kpxe".to_string(), blobs.join("a")),
            ("snponly.efi".to_string(), blobs.join("b")),
        ]);
        let report = materialize(&root, &files).unwrap();
        assert_eq!(report.linked, 3);
        assert_eq!(
            list(&root),
            [
                "amd64/",
                "amd64/undionly.kpxe",
                "snponly.efi",
                "undionly.kpxe"
            ]
        );
        assert_eq!(fs::read(root.join("snponly.efi")).unwrap(), b"snponly");
        let ino = |p: &Path| fs::metadata(p).unwrap().ino();
        assert_eq!(ino(&root.join("undionly.kpxe")), ino(&blobs.join("a")));
        assert!(
            fs::symlink_metadata("/etc").unwrap().is_dir(),
            "never followed"
        );

        // Again: nothing to do.
        let again = materialize(&root, &files).unwrap();
        assert_eq!(again.unchanged, 3);
        assert_eq!(again.linked + again.copied + again.removed, 0);

        // A loader replaced by new content, one deleted.
        fs::write(blobs.join("c"), b"undionly v2").unwrap();
        let files = BTreeMap::from([("undionly.kpxe".to_string(), blobs.join("c"))]);
        let report = materialize(&root, &files).unwrap();
        assert_eq!(report.linked, 1);
        assert_eq!(list(&root), ["undionly.kpxe"]);
        assert_eq!(
            fs::read(root.join("undionly.kpxe")).unwrap(),
            b"undionly v2"
        );
        assert_eq!(
            fs::read(blobs.join("a")).unwrap(),
            b"undionly",
            "source untouched"
        );
    }

    #[test]
    fn names_that_escape_the_root_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let blob = dir.path().join("blob");
        fs::write(&blob, b"x").unwrap();
        let root = dir.path().join("tftp");
        let files = BTreeMap::from([
            ("../outside".to_string(), blob.clone()),
            ("ok.efi".to_string(), blob.clone()),
        ]);
        let report = materialize(&root, &files).unwrap();
        assert_eq!(report.refused, ["../outside"]);
        assert!(!dir.path().join("outside").exists());
        assert_eq!(list(&root), ["ok.efi"]);
    }
}
