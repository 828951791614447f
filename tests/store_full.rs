//! A full state disk, against the real daemon: the probe's "one ENOSPC stops every write until
//! restart, and /healthz still says ok". The state directory is a small tmpfs the test mounts
//! and unmounts itself (root is needed: CI runs as root; without it the test fails saying so).

mod common;

use std::io::Write;
use std::path::PathBuf;

use common::{ADMIN_PASSWORD, Api, Daemon, Tmpfs};
use reqwest::Method;
use serde_json::json;

/// Fills the file system of `dir` with one file, to the last byte it takes.
fn fill(dir: &std::path::Path) -> PathBuf {
    let path = dir.join("filler");
    let mut f = std::fs::File::create(&path).unwrap();
    let chunk = vec![0xA5u8; 64 * 1024];
    // Bounded: the tmpfs is a few MiB.
    for _ in 0..10_000 {
        if f.write_all(&chunk).is_err() {
            break;
        }
    }
    let small = [0u8; 512];
    for _ in 0..1000 {
        if f.write_all(&small).is_err() {
            break;
        }
    }
    let _ = f.sync_all();
    path
}

async fn add(api: &Api, token: &str, i: u32) -> (u16, serde_json::Value) {
    api.call(
        Method::POST,
        "/api/v1/machines",
        Some(token),
        Some(
            json!({"mac_addresses": [format!("52:54:00:aa:{:02x}:{:02x}", i / 256, i % 256)],
            "hostname": format!("full{i}"), "description": "x".repeat(2000), "commission": false}),
        ),
    )
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_state_disk_refuses_writes_clearly_lets_logins_and_deletes_through_and_recovers() {
    let fs = Tmpfs::mount("24m");
    let daemon = Daemon::start_in(&fs.path, "[store]\nreserve_mib = 2\n");
    let api = Api::new(&daemon.url);
    let admin = api.login("admin", ADMIN_PASSWORD).await;
    let (s, first) = add(&api, &admin, 0).await;
    assert_eq!(s, 201, "{first}");
    let first_id = first["system_id"].as_str().unwrap().to_owned();
    assert!(
        fs.path.join("rackbox.redb.reserve").exists(),
        "the reserve is made beside the store"
    );

    // The disk fills up (another program, a log): writes start failing.
    let filler = fill(&fs.path);
    let mut refused = None;
    for i in 1..200 {
        let (s, body) = add(&api, &admin, i).await;
        assert!(
            s == 201 || s == 507,
            "a full disk is a 507, not {s}: {body}"
        );
        if s == 507 {
            refused = Some(body);
            break;
        }
    }
    let refused = refused.expect("the full disk was never noticed");
    assert!(
        refused.to_string().contains("state disk is full"),
        "{refused}"
    );
    let (s, health) = api.call(Method::GET, "/healthz", None, None).await;
    assert_eq!(s, 503, "/healthz says what is wrong: {health}");
    assert_eq!(health["status"], "disk_full", "{health}");

    // Still full: ordinary writes are refused at once, logins and deletes go through.
    let (s, body) = add(&api, &admin, 500).await;
    assert_eq!(s, 507, "{body}");
    let again = api.login("admin", ADMIN_PASSWORD).await;
    let (s, body) = api
        .call(
            Method::DELETE,
            &format!("/api/v1/machines/{first_id}"),
            Some(&again),
            None,
        )
        .await;
    assert!(s == 200 || s == 204, "a delete frees space: {s} {body}");

    // Space is freed: writes work again without a restart, and nothing was lost.
    std::fs::remove_file(filler).unwrap();
    let (s, body) = add(&api, &again, 600).await;
    assert_eq!(s, 201, "after freeing space: {body}");
    let (s, health) = api.call(Method::GET, "/healthz", None, None).await;
    assert_eq!(s, 200, "{health}");
    assert_eq!(health["status"], "ok");
    let (s, page) = api
        .call(Method::GET, "/api/v1/machines?limit=0", Some(&again), None)
        .await;
    assert_eq!(s, 200);
    let text = page.to_string();
    assert!(text.contains("full600"), "{text}");
    assert!(!text.contains(&first_id), "the deleted machine is gone");
    assert!(
        fs.path.join("rackbox.redb.reserve").exists(),
        "the reserve is made anew"
    );
    drop(daemon);
}
