//! python-libmaas 0.6.8, the MAAS client many tools are built on, against a real `rackbox serve`:
//! API-key connect, password login, whoami, list, create, allocate by constraints, no-match,
//! deploy with user_data, release with quick erase, power state, nodes and the controllers,
//! devices, SSH keys, events, tagging, settings, machine details, the network objects, and a
//! wrong key; then python-libmaas's own `maas` CLI (nodes, controllers, devices, tags). The client
//! runs tests/maas/libmaas_flow.py in the virtualenv scripts/deps.d/maas.sh makes.

mod common;

use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::{ADMIN_PASSWORD, Api, Daemon, machine};
use rackbox::model::Status;
use reqwest::Method;
use serde_json::json;

const USER: &str = "alice";
const USER_PASSWORD: &str = "alice-password-1";

fn venv_python() -> PathBuf {
    let tools = std::env::var("RACKBOX_TOOLS").unwrap_or_else(|_| "/opt/rackbox-tools".into());
    PathBuf::from(tools).join("venv-libmaas/bin/python")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn python_libmaas_drives_the_maas_face() {
    let python = venv_python();
    assert!(
        python.exists(),
        "python-libmaas is not installed: {} is missing. Install it as root with \
         `source scripts/deps.d/maas.sh` (set RACKBOX_TOOLS to use another directory).",
        python.display()
    );

    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("state");
    std::fs::create_dir_all(&state).unwrap();
    let mut mid = machine("mid001", Status::Ready, 4, 8192);
    mid.tags.insert("gpu".into());
    let mut big = machine("big001", Status::Ready, 8, 16384);
    big.tags.insert("gpu".into());
    big.zone = "rack2".into();
    common::seed(
        &state,
        vec![machine("small1", Status::Ready, 2, 4096), mid, big],
    );
    let daemon = Daemon::start_in(&state, "");

    let api = Api::new(&daemon.url);
    let admin = api.login("admin", ADMIN_PASSWORD).await;
    api.add_user(&admin, USER, USER_PASSWORD).await;
    let (s, v) = api
        .call(
            Method::POST,
            "/api/v1/zones",
            Some(&admin),
            Some(json!({"name": "rack2"})),
        )
        .await;
    assert_eq!(s, 201, "{v}");
    // One image, so the default OS and series come from the image cache.
    api.upload_image(&admin, "debian", "bookworm").await;
    let admin_key = common::cli_maas_key(&daemon.url, &admin, "admin");
    let user_key = common::cli_maas_key(&daemon.url, &admin, USER);

    let script = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/maas/libmaas_flow.py");
    let mut child = Command::new(&python)
        .arg(&script)
        .env("RACKBOX_MAAS_URL", format!("{}/MAAS/", daemon.url))
        .env("RACKBOX_ADMIN_KEY", &admin_key)
        .env("RACKBOX_USER_KEY", &user_key)
        .env("RACKBOX_USER", USER)
        .env("RACKBOX_USER_PASSWORD", USER_PASSWORD)
        .env("PYTHONDONTWRITEBYTECODE", "1")
        .env("RACKBOX_LIBMAAS_CLI", python.with_file_name("maas"))
        .env("RACKBOX_LIBMAAS_HOME", dir.path().join("home"))
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("the venv's python starts");
    let deadline = Instant::now() + Duration::from_secs(180);
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let out = child.wait_with_output().unwrap();
            panic!(
                "python-libmaas did not finish in time\nstdout:\n{}\nstderr:\n{}\nrackbox log:\n{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr),
                daemon.log()
            );
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    let out = child.wait_with_output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    print!("{stdout}");
    assert!(
        status.success(),
        "python-libmaas flow failed ({status})\nstdout:\n{stdout}\nstderr:\n{stderr}\nrackbox log:\n{}",
        daemon.log()
    );
    assert!(
        stdout.contains("all python-libmaas steps passed"),
        "{stdout}"
    );
}
