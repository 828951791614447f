//! The MAAS CLI itself (canonical/maas's src/maascli, run from its source) against a real
//! `rackbox serve`: a day of commands with `key=value` arguments as an operator types them —
//! create, filtered read, update, commission, tag, allocate, deploy with user data, release with
//! erase, events, settings, nodes and controllers, devices, results, details — with the
//! machines' firmware and agent played through rackbox's own endpoints (tests/maas/maascli_day.py).
//!
//! No package registry carries maascli, and nothing of it may be committed here, so this test
//! needs a copy of canonical/maas's `src/` named by RACKBOX_MAASCLI_SRC and is ignored otherwise:
//! run it with `RACKBOX_MAASCLI_SRC=/path/to/maas/src cargo test --test maas_cli -- --ignored`.
//! Its PyPI dependencies come from scripts/deps.d/maas.sh (venv-maascli). In the default run the
//! MAAS CLI's contract with describe/ is checked by the face's unit tests instead.

mod common;

use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::{ADMIN_PASSWORD, Api, Daemon};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs canonical/maas's source (no registry carries maascli): set RACKBOX_MAASCLI_SRC and run with --ignored"]
async fn the_maas_cli_runs_a_day_of_commands() {
    let src = std::env::var("RACKBOX_MAASCLI_SRC").expect(
        "RACKBOX_MAASCLI_SRC names a copy of canonical/maas's src/ (with maascli/ and apiclient/)",
    );
    assert!(
        PathBuf::from(&src).join("maascli/__main__.py").exists(),
        "{src} holds no maascli/__main__.py"
    );
    let tools = std::env::var("RACKBOX_TOOLS").unwrap_or_else(|_| "/opt/rackbox-tools".into());
    let python = PathBuf::from(tools).join("venv-maascli/bin/python");
    assert!(
        python.exists(),
        "{} is missing: run `source scripts/deps.d/maas.sh` as root",
        python.display()
    );

    let dir = tempfile::tempdir().unwrap();
    let daemon = Daemon::start_in(dir.path(), "");
    let api = Api::new(&daemon.url);
    let admin = api.login("admin", ADMIN_PASSWORD).await;
    api.add_user(&admin, "alice", "alice-password-1").await;
    api.upload_image(&admin, "debian", "bookworm").await;
    let admin_key = common::cli_maas_key(&daemon.url, &admin, "admin");
    let user_key = common::cli_maas_key(&daemon.url, &admin, "alice");

    let script = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/maas/maascli_day.py");
    let mut child = Command::new(&python)
        .arg(&script)
        .env("RACKBOX_MAASCLI_SRC", &src)
        .env("RACKBOX_MAAS_URL", format!("{}/MAAS/", daemon.url))
        .env("RACKBOX_ADMIN_KEY", &admin_key)
        .env("RACKBOX_USER_KEY", &user_key)
        .env("RACKBOX_CLI_HOME", dir.path().join("home"))
        .env("PYTHONDONTWRITEBYTECODE", "1")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("the venv's python starts");
    let deadline = Instant::now() + Duration::from_secs(300);
    while child.try_wait().unwrap().is_none() {
        if Instant::now() > deadline {
            let _ = child.kill();
            break;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let out = child.wait_with_output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    print!("{stdout}");
    assert!(
        out.status.success() && stdout.contains("all MAAS CLI steps passed"),
        "the MAAS CLI day failed ({})\nstdout:\n{stdout}\nstderr:\n{stderr}\nrackbox log:\n{}",
        out.status,
        daemon.log()
    );
}
