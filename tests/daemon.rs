//! The daemon's own life: configuration errors, first start, graceful shutdown, timeouts.

mod common;

use std::process::Command;
use std::time::{Duration, Instant};

use common::{ADMIN_PASSWORD, Api, Daemon};
use rackbox::model::Status;
use reqwest::Method;
use serde_json::json;

#[test]
fn a_bad_config_refuses_to_start_naming_the_key() {
    let dir = tempfile::tempdir().unwrap();
    for (text, key) in [
        ("[http]\nlisten = \"nowhere\"\n", "listen"),
        ("[http]\nlisen = \"127.0.0.1:1\"\n", "lisen"),
        (
            "[lifecycle]\ncommissioning_timeout_secs = 0\n",
            "lifecycle.commissioning_timeout_secs",
        ),
        ("[log]\ntarget = \"syslog\"\n", "log.target"),
    ] {
        let path = dir.path().join("bad.toml");
        std::fs::write(&path, text).unwrap();
        let out = Command::new(common::rackbox_bin())
            .args(["serve", "--config"])
            .arg(&path)
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(2), "{text}");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(
            err.contains(key),
            "error for {text:?} should name {key}: {err}"
        );
    }
    let out = Command::new(common::rackbox_bin())
        .args(["serve", "--config", "/nonexistent/rackbox.toml"])
        .output()
        .unwrap();
    assert!(String::from_utf8_lossy(&out.stderr).contains("/nonexistent/rackbox.toml"));
}

#[test]
fn first_start_without_a_password_file_generates_one() {
    let dir = tempfile::tempdir().unwrap();
    let port = common::free_port();
    let config = dir.path().join("rackbox.toml");
    std::fs::write(
        &config,
        format!(
            "state_dir = {:?}\n[http]\nlisten = \"127.0.0.1:{port}\"\n",
            dir.path().join("state")
        ),
    )
    .unwrap();
    let log = std::fs::File::create(dir.path().join("log")).unwrap();
    let mut child = Command::new(common::rackbox_bin())
        .args(["serve", "--config"])
        .arg(&config)
        .stderr(log)
        .spawn()
        .unwrap();
    // The daemon writes the file, then prints the password: wait for both (bounded), since the
    // file may be seen before the line reaches the log.
    let file = dir.path().join("state/initial-admin-password");
    let deadline = Instant::now() + Duration::from_secs(20);
    let password = loop {
        let password = std::fs::read_to_string(&file)
            .unwrap_or_default()
            .trim()
            .to_string();
        let printed = std::fs::read_to_string(dir.path().join("log")).unwrap_or_default();
        if !password.is_empty() && printed.contains(&password) {
            break password;
        }
        assert!(
            Instant::now() < deadline,
            "no password file with its password printed on the console within 20 s \
             (file: {password:?}); log:\n{printed}"
        );
        std::thread::sleep(Duration::from_millis(20));
    };
    use std::os::unix::fs::PermissionsExt;
    assert_eq!(
        std::fs::metadata(&file).unwrap().permissions().mode() & 0o777,
        0o600
    );
    let printed = std::fs::read_to_string(dir.path().join("log")).unwrap();
    assert_eq!(printed.matches(&password).count(), 1, "printed only once");
    let _ = child.kill();
    let _ = child.wait();
}

#[tokio::test]
async fn sigterm_stops_cleanly_and_loses_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let mut daemon = Daemon::start_in(dir.path(), "");
    let api = Api::new(&daemon.url);
    let admin = api.login("admin", ADMIN_PASSWORD).await;
    // A burst of writes, each acknowledged before SIGTERM.
    let mut created = Vec::new();
    for i in 0..20 {
        let (s, m) = api
            .call(
                Method::POST,
                "/api/v1/machines",
                Some(&admin),
                Some(json!({"mac_addresses": [format!("52:54:00:00:10:{i:02x}")]})),
            )
            .await;
        assert_eq!(s, 201);
        created.push(m["system_id"].as_str().unwrap().to_string());
    }
    let status = daemon.terminate();
    assert!(
        status.success(),
        "exit status {status}; log:\n{}",
        daemon.log()
    );
    assert!(daemon.log().contains("every acknowledged write is on disk"));
    // Restart over the same state: everything is there.
    let daemon2 = Daemon::start_in(dir.path(), "");
    let api = Api::new(&daemon2.url);
    let admin = api.login("admin", ADMIN_PASSWORD).await;
    let (_, page) = api
        .call(Method::GET, "/api/v1/machines?limit=0", Some(&admin), None)
        .await;
    let ids: Vec<&str> = page["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["system_id"].as_str().unwrap())
        .collect();
    for id in &created {
        assert!(ids.contains(&id.as_str()), "{id} lost across restart");
    }
}

#[tokio::test]
async fn an_in_progress_status_times_out_to_its_failed_status() {
    let dir = tempfile::tempdir().unwrap();
    common::seed(
        dir.path(),
        vec![common::machine("tmo222", Status::Ready, 2, 2048)],
    );
    let daemon = Daemon::start_in(
        dir.path(),
        "[lifecycle]\ncommissioning_timeout_secs = 1\nreconcile_interval_secs = 1\n",
    );
    let api = Api::new(&daemon.url);
    let admin = api.login("admin", ADMIN_PASSWORD).await;
    let (s, m) = api
        .call(
            Method::POST,
            "/api/v1/machines/tmo222/actions/commission",
            Some(&admin),
            Some(json!({})),
        )
        .await;
    assert_eq!(s, 200, "{m}");
    assert_eq!(m["status"], "commissioning");
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let (_, m) = api
            .call(Method::GET, "/api/v1/machines/tmo222", Some(&admin), None)
            .await;
        if m["status"] == "failed_commissioning" {
            assert!(
                m["status_message"].as_str().unwrap().contains("timed out"),
                "{m}"
            );
            break;
        }
        assert!(Instant::now() < deadline, "never timed out: {m}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let (_, events) = api
        .call(
            Method::GET,
            "/api/v1/machines/tmo222/events",
            Some(&admin),
            None,
        )
        .await;
    assert_eq!(events[0]["action"], "time_out");
    assert_eq!(events[0]["actor"], "rackbox");
}

#[tokio::test]
async fn metrics_and_health() {
    let daemon = Daemon::start();
    let api = Api::new(&daemon.url);
    let (s, h) = api.call(Method::GET, "/healthz", None, None).await;
    assert_eq!(s, 200);
    assert_eq!(h["status"], "ok");
    let admin = api.login("admin", ADMIN_PASSWORD).await;
    let (s, text) = api.call(Method::GET, "/metrics", Some(&admin), None).await;
    assert_eq!(s, 200);
    let text = text.as_str().unwrap();
    assert!(
        text.contains("rackbox_machines{status=\"ready\"} 0"),
        "{text}"
    );
    assert!(text.contains("rackbox_store_commits_total"), "{text}");
}
