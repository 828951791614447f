//! The control page in a real browser: Debian's Chromium driven by playwright-core
//! (tests/page/browser.mjs) against a real daemon. Logs in, finds a machine by search, deploys it
//! and watches its progress bar and status move without a reload (the agent played through the
//! real boot and agent endpoints), releases it with quick erase, sees an invalid action refused
//! with the reason, works a dialog by keyboard, does one action with JavaScript off, checks
//! every page with axe-core and writes screenshots in light and dark mode to
//! target/ui-screenshots/.

mod common;

use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::{ADMIN_PASSWORD, Daemon, mac_for, machine};
use rackbox::model::Status;

fn page_tools() -> PathBuf {
    let tools = std::env::var("RACKBOX_TOOLS").unwrap_or_else(|_| "/opt/rackbox-tools".into());
    PathBuf::from(tools).join("page-node")
}

#[test]
fn the_page_runs_the_life_cycle_in_chromium() {
    let tools = page_tools();
    assert!(
        tools.join("node_modules/playwright-core").exists()
            && std::path::Path::new("/usr/bin/chromium").exists(),
        "the browser test's tools are missing ({} or /usr/bin/chromium): run \
         `source scripts/lib/apt.sh; source scripts/deps.d/page.sh` as root",
        tools.display()
    );
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("state");
    std::fs::create_dir_all(&state).unwrap();
    let ids = ["web001", "web002", "db001"];
    common::seed(
        &state,
        ids.iter()
            .map(|id| machine(id, Status::Ready, 4, 8192))
            .collect(),
    );
    let daemon = Daemon::start_in(&state, "");
    let macs: serde_json::Map<String, serde_json::Value> = ids
        .iter()
        .map(|id| (id.to_string(), mac_for(id).into()))
        .collect();
    let shots = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("target/ui-screenshots");
    std::fs::create_dir_all(&shots).unwrap();
    let script = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/page/browser.mjs");
    let mut child = Command::new("node")
        .arg(&script)
        .env("RACKBOX_URL", &daemon.url)
        .env("RACKBOX_ADMIN_PASSWORD", ADMIN_PASSWORD)
        .env(
            "RACKBOX_MACHINES",
            serde_json::Value::Object(macs).to_string(),
        )
        .env("PAGE_TOOLS", &tools)
        .env("SCREENSHOTS", &shots)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("node starts");
    let deadline = Instant::now() + Duration::from_secs(240);
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            break child.wait().unwrap();
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    let out = child.wait_with_output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    print!("{stdout}");
    assert!(
        status.success(),
        "the browser flow failed ({status})\nstdout:\n{stdout}\nstderr:\n{}\nrackbox log:\n{}",
        String::from_utf8_lossy(&out.stderr),
        daemon.log()
    );
    for name in ["machines", "machine", "overview", "login", "confirm"] {
        for scheme in ["light", "dark"] {
            let file = shots.join(format!("{name}-{scheme}.png"));
            assert!(file.exists(), "{} was not written", file.display());
        }
    }
}
