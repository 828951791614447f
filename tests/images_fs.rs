//! The image cache when the disk misbehaves: a cache on a tiny file system that fills during an
//! import, and a daemon killed with SIGKILL in the middle of one.
//!
//! The small file system is a 4 MiB tmpfs the test mounts and unmounts itself; that needs root
//! (CI runs as root); without root the test fails saying so.

mod common;
mod images_support;

use std::path::Path;
use std::sync::Arc;

use common::{ADMIN_PASSWORD, Api, Daemon, Tmpfs};
use images_support::{
    Entry, FileServer, data, names_in, sha256_hex, upload, wait_import, wait_progress,
};
use reqwest::Method;
use serde_json::json;
use tokio::sync::Notify;

fn blobs_in(cache: &Path) -> Vec<String> {
    names_in(&cache.join("blobs/sha256"))
}

fn temps_in(cache: &Path) -> Vec<String> {
    names_in(&cache.join("tmp"))
}

#[tokio::test]
async fn a_cache_that_fills_during_an_import_keeps_nothing_and_recovers() {
    let fs = Tmpfs::mount("4m");
    let state = tempfile::tempdir().unwrap();
    let d = Daemon::start_in(
        state.path(),
        &format!("[images]\ndir = {:?}\nreserve_mib = 0\n", fs.path),
    );
    let api = Api::new(&d.url);
    let admin = api.login("admin", ADMIN_PASSWORD).await;

    let first = data(1 << 20, 30);
    let (s, v) = upload(&api.http, &api.url, &admin, "name=first", first.clone()).await;
    assert_eq!(s, 201, "{v}");

    // Known size that cannot fit: refused before a byte is written.
    let (s, v) = upload(
        &api.http,
        &api.url,
        &admin,
        "name=toobig",
        data(6 << 20, 31),
    )
    .await;
    assert_eq!(s, 507, "{v}");
    assert_eq!(v["error"], "disk_full");
    let message = v["message"].as_str().unwrap();
    assert!(
        message.contains("is full") && message.contains("nothing was kept"),
        "{message}"
    );

    // Unknown size (the server sends no Content-Length): the disk fills while writing.
    let server = FileServer::start().await;
    server.put(
        "/huge.raw",
        Entry {
            data: Arc::new(data(6 << 20, 32)),
            no_length: true,
            ..Entry::default()
        },
    );
    let (s, v) = api
        .call(
            Method::POST,
            "/api/v1/images/fetch",
            Some(&admin),
            Some(json!({"name": "huge", "url": format!("{}/huge.raw", server.url)})),
        )
        .await;
    assert_eq!(s, 202, "{v}");
    let done = wait_import(&api.http, &api.url, &admin, v["id"].as_str().unwrap()).await;
    assert_eq!(done["state"], "failed", "{done}");
    let error = done["error"].as_str().unwrap();
    assert!(
        error.contains("is full") && error.contains("nothing was kept"),
        "{error}"
    );

    // No partial file; the store and the cache agree; the first image is intact.
    assert!(temps_in(&fs.path).is_empty(), "{:?}", temps_in(&fs.path));
    assert_eq!(blobs_in(&fs.path), vec![sha256_hex(&first)]);
    let (s, v) = api
        .call(Method::GET, "/api/v1/images", Some(&admin), None)
        .await;
    assert_eq!(s, 200);
    let names: Vec<&str> = v["images"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, vec!["first"]);
    assert!(v["space"]["free_bytes"].as_u64().unwrap() >= 2 << 20, "{v}");
    let body = api
        .http
        .get(format!("{}/images/first", api.url))
        .send()
        .await
        .unwrap()
        .bytes()
        .await
        .unwrap();
    assert!(body.as_ref() == first.as_slice());

    // Later imports work.
    let second = data(2 << 20, 33);
    let (s, v) = upload(&api.http, &api.url, &admin, "name=second", second.clone()).await;
    assert_eq!(s, 201, "{v}");
    assert_eq!(blobs_in(&fs.path).len(), 2);

    // The CLI asks before sending a file that cannot fit, and says so.
    let big = state.path().join("big.raw");
    std::fs::write(&big, data(3 << 20, 34)).unwrap();
    let out = tokio::process::Command::new(common::rackbox_bin())
        .args(["image", "import", "big"])
        .arg(&big)
        .env("RACKBOX_URL", &d.url)
        .env("RACKBOX_TOKEN", &admin)
        .env("XDG_CONFIG_HOME", state.path().join("cli-config"))
        .output()
        .await
        .unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("free") && stderr.contains("big.raw"),
        "{stderr}"
    );
    assert!(temps_in(&fs.path).is_empty());
    drop(d);
}

#[tokio::test]
async fn a_daemon_killed_mid_import_restarts_with_a_consistent_cache() {
    let state = tempfile::tempdir().unwrap();
    let cache = state.path().join("images");
    let mut d = Daemon::start_in(state.path(), "[images]\nreserve_mib = 0\n");
    let api = Api::new(&d.url);
    let admin = api.login("admin", ADMIN_PASSWORD).await;
    let kept = data(500_000, 40);
    let (s, v) = upload(&api.http, &api.url, &admin, "name=kept", kept.clone()).await;
    assert_eq!(s, 201, "{v}");

    // An import that stalls half-way (the server never goes on).
    let server = FileServer::start().await;
    let never = Arc::new(Notify::new());
    let wanted = data(4 << 20, 41);
    server.put(
        "/stalls.raw",
        Entry {
            data: Arc::new(wanted.clone()),
            pause_at: Some((2 << 20, never.clone())),
            honour_range: true,
            ..Entry::default()
        },
    );
    let (s, v) = api
        .call(
            Method::POST,
            "/api/v1/images/fetch",
            Some(&admin),
            Some(json!({"name": "stalls", "url": format!("{}/stalls.raw", server.url)})),
        )
        .await;
    assert_eq!(s, 202, "{v}");
    wait_progress(
        &api.http,
        &api.url,
        &admin,
        v["id"].as_str().unwrap(),
        1 << 20,
    )
    .await;
    assert_eq!(temps_in(&cache).len(), 1, "the partial import is on disk");
    // What a kill between a blob's rename and its record's commit would leave.
    let orphan = data(1000, 42);
    std::fs::write(
        cache.join("blobs/sha256").join(sha256_hex(&orphan)),
        &orphan,
    )
    .unwrap();

    d.child.kill().unwrap(); // SIGKILL
    d.child.wait().unwrap();
    drop(d);

    let d = Daemon::start_in(state.path(), "[images]\nreserve_mib = 0\n");
    let api = Api::new(&d.url);
    let admin = api.login("admin", ADMIN_PASSWORD).await;
    assert!(temps_in(&cache).is_empty(), "{:?}", temps_in(&cache));
    assert_eq!(blobs_in(&cache), vec![sha256_hex(&kept)]);
    let (s, v) = api
        .call(Method::GET, "/api/v1/images", Some(&admin), None)
        .await;
    assert_eq!(s, 200);
    assert_eq!(v["images"].as_array().unwrap().len(), 1, "{v}");
    assert_eq!(v["images"][0]["name"], "kept");
    let body = api
        .http
        .get(format!("{}/images/kept", api.url))
        .send()
        .await
        .unwrap()
        .bytes()
        .await
        .unwrap();
    assert!(body.as_ref() == kept.as_slice());
    let (s, v) = api
        .call(Method::GET, "/api/v1/images/stalls", Some(&admin), None)
        .await;
    assert_eq!(s, 404, "{v}");

    // The interrupted import can simply be run again.
    server.put(
        "/stalls.raw",
        Entry {
            data: Arc::new(wanted.clone()),
            honour_range: true,
            ..Entry::default()
        },
    );
    let (s, v) = api
        .call(
            Method::POST,
            "/api/v1/images/fetch",
            Some(&admin),
            Some(json!({"name": "stalls", "url": format!("{}/stalls.raw", server.url), "sha256": sha256_hex(&wanted)})),
        )
        .await;
    assert_eq!(s, 202, "{v}");
    let done = wait_import(&api.http, &api.url, &admin, v["id"].as_str().unwrap()).await;
    assert_eq!(done["state"], "done", "{done}");
    assert!(
        d.log().contains("removed blobs no record references"),
        "{}",
        d.log()
    );
}

// Multi-threaded: terminate() blocks while the file server must keep its connection open.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_upload_cut_off_by_its_client_and_a_stop_during_a_download_leave_nothing() {
    let state = tempfile::tempdir().unwrap();
    let cache = state.path().join("images");
    let mut d = Daemon::start_in(state.path(), "[images]\nreserve_mib = 0\n");
    let api = Api::new(&d.url);
    let admin = api.login("admin", ADMIN_PASSWORD).await;

    // A client promises 1 MiB, sends 100 KiB and hangs up.
    {
        use tokio::io::AsyncWriteExt;
        let addr = d.url.trim_start_matches("http://").to_string();
        let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
        let head = format!(
            "POST /api/v1/images?name=cut HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {admin}\r\nContent-Type: application/octet-stream\r\nContent-Length: {}\r\n\r\n",
            1 << 20
        );
        s.write_all(head.as_bytes()).await.unwrap();
        s.write_all(&data(100 << 10, 50)).await.unwrap();
        s.flush().await.unwrap();
    }
    // The import ends as failed, with nothing left (bounded wait).
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    loop {
        let (_, v) = api
            .call(Method::GET, "/api/v1/images/imports", Some(&admin), None)
            .await;
        let done = v
            .as_array()
            .unwrap()
            .iter()
            .any(|i| i["name"] == "cut" && i["state"] == "failed");
        if done && temps_in(&cache).is_empty() {
            break;
        }
        assert!(std::time::Instant::now() < deadline, "{v}");
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    assert!(blobs_in(&cache).is_empty());
    let (s, _) = api
        .call(Method::GET, "/api/v1/images/cut", Some(&admin), None)
        .await;
    assert_eq!(s, 404);

    // SIGTERM while a download stalls: the daemon stops cleanly and promptly (bounded by
    // terminate()), discarding the partial file.
    let server = FileServer::start().await;
    let never = Arc::new(Notify::new());
    server.put(
        "/stalls.raw",
        Entry {
            data: Arc::new(data(2 << 20, 51)),
            pause_at: Some((1 << 20, never.clone())),
            ..Entry::default()
        },
    );
    let (s, v) = api
        .call(
            Method::POST,
            "/api/v1/images/fetch",
            Some(&admin),
            Some(json!({"name": "stalls", "url": format!("{}/stalls.raw", server.url)})),
        )
        .await;
    assert_eq!(s, 202, "{v}");
    wait_progress(
        &api.http,
        &api.url,
        &admin,
        v["id"].as_str().unwrap(),
        512 << 10,
    )
    .await;
    let status = tokio::task::block_in_place(|| d.terminate());
    assert!(status.success(), "{status:?}\n{}", d.log());
    assert!(temps_in(&cache).is_empty(), "{:?}", temps_in(&cache));
}
