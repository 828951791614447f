//! The rooms of src/ and what each may use (ARCHITECTURE.md, "Rooms of src/"), checked: every
//! `crate::<room>` path in a room's files (code, not comments) must name a room it may use, or
//! one of the few items it may borrow from a room it otherwise may not. A new import across a
//! wall fails here with the file and line, instead of the house decaying one `use` at a time.
//! And the service, which may use the store, reaches it only through its typed operations: no
//! redb, no table definitions, no escape hatch.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// room -> (rooms it may use, single items of other rooms it may use, by path prefix).
fn rules() -> BTreeMap<&'static str, (&'static [&'static str], &'static [&'static str])> {
    BTreeMap::from([
        ("model", (&[][..], &[][..])),
        ("net", (&[][..], &[][..])),
        ("tftp", (&[][..], &[][..])),
        ("telemetry", (&[][..], &[][..])),
        ("power", (&["model"][..], &[][..])),
        ("store", (&["model"][..], &[][..])),
        ("images", (&["model", "store"][..], &[][..])),
        (
            "service",
            (&["model", "store", "power", "images"][..], &[][..]),
        ),
        // The DHCP server is configured with the boot network (config's Boot* types) and asks
        // the service which MACs are machines and to record its leases.
        (
            "dhcp",
            (
                &["model", "net", "service"][..],
                &["config::Boot", "config::Config"][..],
            ),
        ),
        // Data only through the service; the image cache for uploads and downloads; the boot
        // network's description (the MAAS face shows it as subnets); the DHCP and TFTP
        // servers' counters for /metrics.
        (
            "http",
            (
                &["model", "service", "images"][..],
                &[
                    "config::Boot",
                    "dhcp::DhcpStats",
                    "tftp::TftpStats",
                    // The first-boot setup checks its boot network with the file's own parser,
                    // and runs the foreign-DHCP probe (also an admin API route).
                    "config::Config",
                    "dhcp::probe",
                    // The MAAS face reads a static route's destination network as the boot
                    // network's subnets are written.
                    "net::Cidr",
                ][..],
            ),
        ),
        ("cli", (&["model"][..], &[][..])),
        // The agent runs on the machine: it shares only the wire's types with the appliance.
        ("agent", (&["model", "telemetry"][..], &[][..])),
        // The configuration builds each room's options from the TOML file.
        (
            "config",
            (
                &["model", "net", "tftp", "store", "images", "service", "http"][..],
                &[][..],
            ),
        ),
        // The composition root: it wires every room.
        (
            "daemon",
            (
                &[
                    "model",
                    "net",
                    "tftp",
                    "store",
                    "images",
                    "service",
                    "http",
                    "dhcp",
                    "power",
                    "config",
                    "telemetry",
                ][..],
                &[][..],
            ),
        ),
        ("lib", (&[][..], &[][..])),
        (
            "main",
            (
                &["cli", "agent", "daemon", "config", "telemetry"][..],
                &[][..],
            ),
        ),
    ])
}

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).expect("read src/") {
        let path = entry.expect("dir entry").path();
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

/// The room a file of src/ belongs to: its first directory, or its own name at the top.
fn room_of(src: &Path, file: &Path) -> String {
    let rel = file.strip_prefix(src).expect("under src/");
    let first = rel.components().next().expect("a component");
    let name = first.as_os_str().to_string_lossy();
    name.strip_suffix(".rs").unwrap_or(&name).to_string()
}

/// The code of each line of `text` (a line comment left out), with its number from 1.
fn code_lines(text: &str) -> impl Iterator<Item = (usize, &str)> {
    text.lines().enumerate().map(|(n, line)| {
        let code = match line.find("//") {
            Some(i) => &line[..i],
            None => line,
        };
        (n + 1, code)
    })
}

/// Every `crate::a::b...` path in the code of `text` (line comments left out), with its line.
fn crate_paths(text: &str) -> Vec<(usize, String)> {
    let mut out = Vec::new();
    for (n, code) in code_lines(text) {
        let mut rest = code;
        while let Some(i) = rest.find("crate::") {
            let before = rest[..i].chars().last();
            let tail = &rest[i + "crate::".len()..];
            let end = tail
                .find(|c: char| !(c.is_alphanumeric() || c == '_' || c == ':'))
                .unwrap_or(tail.len());
            let path = tail[..end].trim_end_matches(':');
            // `$crate::` and `rackbox_crate::` are not this crate's paths.
            if !before.is_some_and(|c| c.is_alphanumeric() || c == '_' || c == '$') {
                match group(&tail[end..]) {
                    // `crate::config::{BootMode, BootSubnet}`: each item is a path of its own.
                    Some(items) => {
                        out.extend(items.iter().map(|item| (n, format!("{path}::{item}"))))
                    }
                    None => out.push((n, path.to_string())),
                }
            }
            rest = &tail[end..];
        }
    }
    out
}

/// The first names of the items of a `{a, b::c, d as e}` group at the start of `text`, when
/// the group closes on the same line.
fn group(text: &str) -> Option<Vec<String>> {
    let inner = text.strip_prefix('{')?;
    let mut depth = 0;
    let mut items = Vec::new();
    let mut item = String::new();
    for c in inner.chars() {
        match c {
            '{' => depth += 1,
            '}' if depth == 0 => {
                items.push(item);
                return Some(
                    items
                        .iter()
                        .map(|i| i.trim().split([' ', '{']).next().unwrap_or_default())
                        .map(|i| i.trim_end_matches(':').to_string())
                        .filter(|i| !i.is_empty())
                        .collect(),
                );
            }
            '}' => depth -= 1,
            ',' if depth == 0 => {
                items.push(std::mem::take(&mut item));
                continue;
            }
            _ => {}
        }
        item.push(c);
    }
    None
}

#[test]
fn every_room_uses_only_what_it_may() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let rules = rules();
    let mut files = Vec::new();
    rust_files(&src, &mut files);
    files.sort();
    assert!(files.len() > 50, "src/ has only {} Rust files", files.len());
    let mut wrong = Vec::new();
    let mut checked = 0;
    for file in &files {
        let room = room_of(&src, file);
        let Some((rooms, items)) = rules.get(room.as_str()) else {
            wrong.push(format!(
                "{}: room {room:?} is not in tests/architecture.rs's rules (add it, and to ARCHITECTURE.md)",
                file.display()
            ));
            continue;
        };
        let text = std::fs::read_to_string(file).expect("read a source file");
        for (line, path) in crate_paths(&text) {
            checked += 1;
            let target = path.split("::").next().unwrap_or_default();
            if target == room || rooms.contains(&target) {
                continue;
            }
            if items.iter().any(|item| path.starts_with(item)) {
                continue;
            }
            wrong.push(format!(
                "{}:{line}: {room} uses crate::{path}, but may use only {rooms:?} (and {items:?})",
                file.strip_prefix(&src).unwrap_or(file).display()
            ));
        }
    }
    assert!(
        checked > 100,
        "only {checked} crate:: paths found: the scan is broken"
    );
    assert!(
        wrong.is_empty(),
        "rooms reach past their walls:\n{}",
        wrong.join("\n")
    );
}

#[test]
fn the_scan_finds_paths_and_skips_comments_and_macros() {
    let text = "use crate::store::tables;\n// crate::http in a comment\nlet x = $crate::y; f(crate::service::Service::new)\nuse crate::config::{BootMode, BootSubnet};\n";
    assert_eq!(
        crate_paths(text),
        vec![
            (1, "store::tables".to_string()),
            (3, "service::Service::new".to_string()),
            (4, "config::BootMode".to_string()),
            (4, "config::BootSubnet".to_string()),
        ]
    );
}

/// The words that would reach past the store's typed operations (store::Tx, store::Snapshot)
/// into redb, in the code of `text` (line comments left out), with their lines.
fn past_the_store(text: &str) -> Vec<(usize, String)> {
    let mut out = Vec::new();
    for (n, code) in code_lines(text) {
        for word in ["redb::", "use redb", ".raw()", "open_table"] {
            if code.contains(word) {
                out.push((n, word.to_string()));
            }
        }
    }
    for (line, path) in crate_paths(text) {
        if path.starts_with("store::tables") {
            out.push((line, format!("crate::{path}")));
        }
    }
    out.sort();
    out
}

/// The service speaks to the store in domain operations (get, list, put with its events, leases),
/// never in redb transactions or tables: the seam a second store backend would fill stays sealed.
/// (The image cache alone keeps tables of its own, through `Tx::raw` and `Snapshot::raw`.)
#[test]
fn the_service_reaches_the_store_only_through_its_typed_operations() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("src/service");
    let mut files = Vec::new();
    rust_files(&dir, &mut files);
    files.sort();
    assert!(
        files.len() > 5,
        "src/service has only {} files",
        files.len()
    );
    let mut wrong = Vec::new();
    for file in &files {
        let text = std::fs::read_to_string(file).expect("read a source file");
        for (line, word) in past_the_store(&text) {
            wrong.push(format!(
                "service/{}:{line}: names {word}; use the store's typed operations (store::Tx, store::Snapshot) or add one",
                file.strip_prefix(&dir).unwrap_or(file).display()
            ));
        }
    }
    assert!(
        wrong.is_empty(),
        "the service reaches past the store's operations:\n{}",
        wrong.join("\n")
    );
}

#[test]
fn the_store_seal_finds_redb_tables_and_the_escape_hatch() {
    let text = "use redb::ReadableTable;\n// redb:: in a comment\nlet t = tx.raw().open_table(X);\nuse crate::store::{Tx, tables};\nf(crate::store::tables::MACHINES)\n";
    assert_eq!(
        past_the_store(text),
        vec![
            (1, "redb::".to_string()),
            (1, "use redb".to_string()),
            (3, ".raw()".to_string()),
            (3, "open_table".to_string()),
            (4, "crate::store::tables".to_string()),
            (5, "crate::store::tables::MACHINES".to_string()),
        ]
    );
}
