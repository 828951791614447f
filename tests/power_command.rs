//! The command driver: real shell commands keeping a machine's state in a
//! file, and a real HTTP webhook (basic auth) on 127.0.0.1.

mod power_support;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::routing::{get, post};
use axum::{Json, Router};
use rackbox::power::{PowerError, PowerState, PowerType, driver_for, driver_with_timeout};
use serde_json::{Value, json};

use power_support::{PASSWORD, USER, map};

#[tokio::test]
async fn shell_commands_switch_query_and_netboot() {
    let dir = tempfile::tempdir().expect("tempdir");
    let state = dir.path().join("state");
    let boot = dir.path().join("boot");
    let s = state.display();
    let params = map(json!({
        "power_on_command": format!("echo on > {s}"),
        "power_off_command": format!("echo off > {s}"),
        "power_query_command": format!("cat {s} 2>/dev/null || echo off"),
        "power_netboot_command": format!("echo \"$RACKBOX_POWER_OP efi=$RACKBOX_BOOT_EFI\" > {}", boot.display()),
    }));
    rackbox::power::validate(PowerType::Command, &params).expect("valid");
    let driver = driver_for(PowerType::Command, &params).expect("driver");
    assert_eq!(driver.query().await.expect("query"), PowerState::Off);
    driver.power_on().await.expect("on");
    assert_eq!(driver.query().await.expect("query"), PowerState::On);
    driver.power_off(false).await.expect("off");
    assert_eq!(driver.query().await.expect("query"), PowerState::Off);
    driver.power_cycle().await.expect("cycle");
    assert_eq!(driver.query().await.expect("query"), PowerState::On);

    let over = driver.set_boot_network_once(true).await.expect("netboot");
    assert!(!over.confirmed, "a command cannot be read back: {over:?}");
    let written = std::fs::read_to_string(&boot).expect("netboot ran");
    assert_eq!(written.trim(), "netboot efi=1");
}

#[tokio::test]
async fn failing_slow_and_confused_commands_are_clear_errors() {
    let params = map(json!({
        "power_on_command": "echo 'PDU outlet 7: permission denied' >&2; exit 4",
        "power_off_command": "sleep 30",
        "power_query_command": "echo maybe",
    }));
    let driver =
        driver_with_timeout(PowerType::Command, &params, Duration::from_secs(1)).expect("driver");
    let err = driver.power_on().await.expect_err("failing command");
    let text = err.to_string();
    assert!(matches!(err, PowerError::CommandFailed { .. }), "{err:?}");
    assert!(
        text.contains("power_on_command") && text.contains("permission denied"),
        "{text}"
    );
    assert!(text.contains("exit status: 4"), "{text}");

    let err = driver.power_off(false).await.expect_err("slow command");
    assert!(matches!(err, PowerError::Timeout { .. }), "{err:?}");
    assert!(err.to_string().contains("power_off_command"), "{err}");
    // What the command started was killed with it: the command's process group (which the
    // shell records first, field 5 of its /proc stat, with builtins only) empties, and the child
    // it left in the background never gets to touch its marker.
    let dir = tempfile::tempdir().expect("tempdir");
    let marker = dir.path().join("still-running");
    let group_file = dir.path().join("pgid");
    let params = map(json!({
        "power_on_command": format!(
            "read -r _ _ _ _ g _ < /proc/$$/stat; echo $g > {}; (sleep 3; touch {}) & wait",
            group_file.display(),
            marker.display()
        ),
        "power_off_command": "true",
    }));
    let spawner = driver_with_timeout(PowerType::Command, &params, Duration::from_millis(300))
        .expect("driver");
    assert!(spawner.power_on().await.is_err());
    let group: i32 = std::fs::read_to_string(&group_file)
        .expect("the command wrote its process group")
        .trim()
        .parse()
        .expect("a process group id");
    wait_until_group_is_gone(group, Duration::from_secs(10)).await;
    assert!(
        !marker.exists(),
        "a child of the timed-out command lived on"
    );

    let err = driver.query().await.expect_err("unparsable query");
    assert!(err.to_string().contains("printed 'maybe'"), "{err}");

    // No query configured: the state is unknown, not guessed.
    let params = map(json!({"power_on_command": "true", "power_off_command": "true"}));
    let driver = driver_for(PowerType::Command, &params).expect("driver");
    assert_eq!(driver.query().await.expect("query"), PowerState::Unknown);
}

/// Waits until no live process is left in process group `group` (zombies, dead and waiting to
/// be reaped by whoever inherited them, do not count), bounded by `limit`; fails naming the
/// processes that lived on.
async fn wait_until_group_is_gone(group: i32, limit: Duration) {
    let deadline = std::time::Instant::now() + limit;
    loop {
        let alive = live_members(group);
        if alive.is_empty() {
            return;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "a child of the timed-out command lived on: process group {group} still holds {alive:?} after {limit:?}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// The processes of group `group` that are not zombies, as (pid, command name), from /proc.
fn live_members(group: i32) -> Vec<(i32, String)> {
    let Ok(entries) = std::fs::read_dir("/proc") else {
        panic!("cannot read /proc to look for the command's processes");
    };
    let mut alive = Vec::new();
    for entry in entries.flatten() {
        let Some(pid) = entry
            .file_name()
            .to_str()
            .and_then(|n| n.parse::<i32>().ok())
        else {
            continue;
        };
        // A process may end between read_dir and this read: then it is not alive.
        let Ok(stat) = std::fs::read_to_string(entry.path().join("stat")) else {
            continue;
        };
        // "pid (comm) state ppid pgrp ...": comm may hold spaces, so split after its ')'.
        let Some((head, rest)) = stat.rsplit_once(')') else {
            continue;
        };
        let fields: Vec<&str> = rest.split_whitespace().collect();
        let (state, pgrp) = (fields.first().copied(), fields.get(2).copied());
        if pgrp == Some(group.to_string().as_str()) && state != Some("Z") {
            let comm = head.split_once('(').map_or("", |(_, c)| c);
            alive.push((pid, comm.to_string()));
        }
    }
    alive
}

/// A power webhook: POST /on, POST /off, GET /state, with basic auth.
async fn webhook() -> (String, Arc<Mutex<String>>) {
    type Shared = Arc<Mutex<String>>;
    fn authorized(headers: &HeaderMap) -> bool {
        use base64_like::encode;
        let expected = format!("Basic {}", encode(&format!("{USER}:{PASSWORD}")));
        headers
            .get("authorization")
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v == expected)
    }
    async fn set(state: Shared, headers: HeaderMap, to: &str) -> StatusCode {
        if !authorized(&headers) {
            return StatusCode::UNAUTHORIZED;
        }
        if let Ok(mut s) = state.lock() {
            *s = to.to_owned();
        }
        StatusCode::OK
    }
    let power = Arc::new(Mutex::new("off".to_owned()));
    let app = Router::new()
        .route(
            "/on",
            post(|State(s): State<Shared>, h: HeaderMap| async move { set(s, h, "on").await }),
        )
        .route(
            "/off",
            post(|State(s): State<Shared>, h: HeaderMap| async move { set(s, h, "off").await }),
        )
        .route(
            "/state",
            get(|State(s): State<Shared>, h: HeaderMap| async move {
                if !authorized(&h) {
                    return Err(StatusCode::UNAUTHORIZED);
                }
                let state = s.lock().map(|v| v.clone()).unwrap_or_default();
                Ok(Json(json!({ "state": state })))
            }),
        )
        .with_state(Arc::clone(&power));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    (format!("http://{addr}"), power)
}

/// Base64 for the test's expected Authorization header (no extra crate).
mod base64_like {
    pub fn encode(input: &str) -> String {
        const T: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
        let bytes = input.as_bytes();
        let mut out = String::new();
        for chunk in bytes.chunks(3) {
            let b = [
                chunk[0],
                *chunk.get(1).unwrap_or(&0),
                *chunk.get(2).unwrap_or(&0),
            ];
            let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
            for i in 0..4 {
                if i <= chunk.len() {
                    out.push(T[((n >> (18 - 6 * i)) & 63) as usize] as char);
                } else {
                    out.push('=');
                }
            }
        }
        out
    }
}

#[tokio::test]
async fn webhook_urls_with_basic_auth() {
    let (url, power) = webhook().await;
    let params = map(json!({
        "power_on_uri": format!("{url}/on"),
        "power_off_uri": format!("{url}/off"),
        "power_query_uri": format!("{url}/state"),
        "power_user": USER,
        "power_pass": PASSWORD,
    }));
    let driver = driver_for(PowerType::Command, &params).expect("driver");
    assert_eq!(driver.query().await.expect("query"), PowerState::Off);
    driver.power_on().await.expect("on");
    assert_eq!(power.lock().map(|s| s.clone()).unwrap_or_default(), "on");
    assert_eq!(driver.query().await.expect("query"), PowerState::On);
    driver.power_off(false).await.expect("off");
    assert_eq!(driver.query().await.expect("query"), PowerState::Off);

    let mut wrong = params.clone();
    wrong.insert("power_pass".into(), Value::String("nope".into()));
    let driver = driver_for(PowerType::Command, &wrong).expect("driver");
    let err = driver.power_on().await.expect_err("wrong password");
    assert!(
        matches!(err, PowerError::AuthenticationFailed { .. }),
        "{err:?}"
    );
    assert!(!format!("{err} {err:?}").contains(PASSWORD));
}
