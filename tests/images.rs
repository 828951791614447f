//! The image cache against a real `rackbox serve`: imports (upload, stdin through the CLI, URL
//! with a resumed download), checksums, dedup, downloads with Range while another import runs,
//! path safety, delete refused during a deploy, mirror sync, metrics.

mod common;
mod images_support;

use std::process::Stdio;
use std::sync::Arc;

use common::{ADMIN_PASSWORD, Api, Daemon};
use images_support::{
    Entry, FileServer, data, names_in, sha256_hex, upload, wait_import, wait_progress,
};
use rackbox::model::{DeployTarget, Status};
use reqwest::Method;
use serde_json::json;
use tokio::sync::Notify;

/// A daemon with no space reserve (the test machine's disk may be small), and an admin token.
async fn start() -> (tempfile::TempDir, Daemon, Api, String) {
    let dir = tempfile::tempdir().unwrap();
    let d = Daemon::start_in(dir.path(), "[images]\nreserve_mib = 0\n");
    let api = Api::new(&d.url);
    let token = api.login("admin", ADMIN_PASSWORD).await;
    (dir, d, api, token)
}

fn blobs(d: &Daemon) -> Vec<String> {
    names_in(&d.state_dir.join("images/blobs/sha256"))
}

fn temps(d: &Daemon) -> Vec<String> {
    names_in(&d.state_dir.join("images/tmp"))
}

async fn download(
    api: &Api,
    path: &str,
    range: Option<&str>,
) -> (u16, reqwest::header::HeaderMap, Vec<u8>) {
    let mut req = api.http.get(format!("{}{path}", api.url));
    if let Some(r) = range {
        req = req.header("range", r);
    }
    let r = req.send().await.unwrap();
    let status = r.status().as_u16();
    let headers = r.headers().clone();
    (status, headers, r.bytes().await.unwrap().to_vec())
}

#[tokio::test]
async fn upload_with_the_right_checksum_is_stored_once_and_served() {
    let (_dir, d, api, admin) = start().await;
    let bytes = data(300_000, 1);
    let sha = sha256_hex(&bytes);
    let (s, v) = upload(
        &api.http,
        &api.url,
        &admin,
        &format!("name=disk1&os=ubuntu&release=noble&arch=amd64&title=Disk%20one&sha256={sha}"),
        bytes.clone(),
    )
    .await;
    assert_eq!(s, 201, "{v}");
    assert_eq!(v["sha256"], sha);
    assert_eq!(v["size"], 300_000);
    assert_eq!(v["format"], "raw");
    assert_eq!(
        v["default"], true,
        "the first ubuntu/amd64 image is the default"
    );
    assert_eq!(v["download_path"], "/images/disk1");

    let (s, headers, body) = download(&api, "/images/disk1", None).await;
    assert_eq!(s, 200);
    assert_eq!(body, bytes);
    assert_eq!(headers["etag"], format!("\"{sha}\""));
    assert_eq!(headers["accept-ranges"], "bytes");

    // The same content under another name is stored once.
    let (s, v) = upload(
        &api.http,
        &api.url,
        &admin,
        "name=disk1-copy",
        bytes.clone(),
    )
    .await;
    assert_eq!(s, 201, "{v}");
    assert_eq!(blobs(&d), vec![sha.clone()]);
    assert!(temps(&d).is_empty());

    // A name that is taken is refused unless replace is given.
    let (s, v) = upload(&api.http, &api.url, &admin, "name=disk1", data(10, 2)).await;
    assert_eq!(s, 409, "{v}");
    assert!(
        v["message"].as_str().unwrap().contains("already exists"),
        "{v}"
    );

    // Listing shows both, and the cache's space.
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
    assert_eq!(names, vec!["disk1", "disk1-copy"]);
    assert!(v["space"]["used_bytes"].as_u64().unwrap() >= 300_000);
    assert!(v["space"]["free_bytes"].as_u64().unwrap() > 0);

    // Deleting one keeps the shared blob; deleting the other frees it.
    let (s, _) = api
        .call(Method::DELETE, "/api/v1/images/disk1", Some(&admin), None)
        .await;
    assert_eq!(s, 204);
    assert_eq!(blobs(&d), vec![sha.clone()]);
    let (s, _) = api
        .call(
            Method::DELETE,
            "/api/v1/images/disk1-copy",
            Some(&admin),
            None,
        )
        .await;
    assert_eq!(s, 204);
    assert!(blobs(&d).is_empty());
    let (s, _, _) = download(&api, "/images/disk1", None).await;
    assert_eq!(s, 404);
}

#[tokio::test]
async fn wrong_checksum_is_refused_and_nothing_is_kept() {
    let (_dir, d, api, admin) = start().await;
    let bytes = data(200_000, 3);
    let wrong = sha256_hex(b"something else");
    let (s, v) = upload(
        &api.http,
        &api.url,
        &admin,
        &format!("name=bad&sha256={wrong}"),
        bytes,
    )
    .await;
    assert_eq!(s, 400, "{v}");
    assert_eq!(v["error"], "checksum_mismatch");
    assert!(
        v["message"].as_str().unwrap().contains("nothing was kept"),
        "{v}"
    );
    assert!(blobs(&d).is_empty());
    assert!(temps(&d).is_empty());
    let (s, _) = api
        .call(Method::GET, "/api/v1/images/bad", Some(&admin), None)
        .await;
    assert_eq!(s, 404);

    // A declared format the content does not have is refused too.
    let (s, v) = upload(
        &api.http,
        &api.url,
        &admin,
        "name=notgz&format=raw.gz",
        data(1000, 4),
    )
    .await;
    assert_eq!(s, 400, "{v}");
    assert_eq!(v["error"], "wrong_format");
    assert!(blobs(&d).is_empty());
    // The same for a URL import whose server sends other bytes: the import fails, nothing kept.
    let server = FileServer::start().await;
    server.put(
        "/x.raw",
        Entry {
            data: Arc::new(data(50_000, 5)),
            honour_range: true,
            ..Entry::default()
        },
    );
    let (s, v) = api
        .call(
            Method::POST,
            "/api/v1/images/fetch",
            Some(&admin),
            Some(
                json!({"name": "fromurl", "url": format!("{}/x.raw", server.url), "sha256": wrong}),
            ),
        )
        .await;
    assert_eq!(s, 202, "{v}");
    let done = wait_import(&api.http, &api.url, &admin, v["id"].as_str().unwrap()).await;
    assert_eq!(done["state"], "failed", "{done}");
    assert!(
        done["error"].as_str().unwrap().contains("sha256 mismatch"),
        "{done}"
    );
    assert!(blobs(&d).is_empty());
    assert!(temps(&d).is_empty());
}

#[tokio::test]
async fn url_import_resumes_after_the_connection_drops() {
    let (_dir, d, api, admin) = start().await;
    let bytes = data(3 << 20, 6);
    let sha = sha256_hex(&bytes);
    let server = FileServer::start().await;
    let cut = 1_234_567;
    server.put(
        "/images/big.raw.zst",
        Entry {
            // zstd magic so the suffix's format fits the content.
            data: Arc::new([&[0x28, 0xb5, 0x2f, 0xfd][..], &bytes[4..]].concat()),
            drop_first_at: Some(cut),
            honour_range: true,
            ..Entry::default()
        },
    );
    let expected: Vec<u8> = [&[0x28, 0xb5, 0x2f, 0xfd][..], &bytes[4..]].concat();
    let sha_expected = sha256_hex(&expected);
    assert_ne!(sha, sha_expected);
    let (s, v) = api
        .call(
            Method::POST,
            "/api/v1/images/fetch",
            Some(&admin),
            Some(json!({
                "name": "big",
                "url": format!("{}/images/big.raw.zst", server.url),
                "sha256": sha_expected,
                "os": "debian",
                "arch": "arm64",
            })),
        )
        .await;
    assert_eq!(s, 202, "{v}");
    assert_eq!(v["state"], "running");
    let done = wait_import(&api.http, &api.url, &admin, v["id"].as_str().unwrap()).await;
    assert_eq!(done["state"], "done", "{done}");
    assert_eq!(done["bytes_done"], expected.len() as u64);
    assert!(done["attempts"].as_u64().unwrap() >= 2, "{done}");
    // The second request asked only for the rest.
    let ranges = server.ranges("/images/big.raw.zst");
    assert_eq!(ranges.len(), 2, "{ranges:?}");
    assert_eq!(ranges[0], None);
    let resumed_at: u64 = ranges[1]
        .as_deref()
        .and_then(|r| r.strip_prefix("bytes="))
        .and_then(|r| r.strip_suffix('-'))
        .and_then(|r| r.parse().ok())
        .unwrap_or_else(|| panic!("second request had no Range: {ranges:?}"));
    assert!(resumed_at > 0 && resumed_at <= cut as u64, "{resumed_at}");

    let (s, v) = api
        .call(Method::GET, "/api/v1/images/big", Some(&admin), None)
        .await;
    assert_eq!(s, 200);
    assert_eq!(v["format"], "raw.zst");
    assert_eq!(v["sha256"], sha_expected);
    let (s, _, body) = download(&api, "/images/big", None).await;
    assert_eq!(s, 200);
    assert_eq!(body, expected);
    assert_eq!(blobs(&d), vec![sha_expected.clone()]);
    assert!(temps(&d).is_empty());

    // Fetching content already held (same digest) transfers nothing.
    let hits = server.hits("/images/big.raw.zst");
    let (s, v) = api
        .call(
            Method::POST,
            "/api/v1/images/fetch",
            Some(&admin),
            Some(json!({
                "name": "big-again",
                "url": format!("{}/images/big.raw.zst", server.url),
                "sha256": sha_expected,
            })),
        )
        .await;
    assert_eq!(s, 202, "{v}");
    let done = wait_import(&api.http, &api.url, &admin, v["id"].as_str().unwrap()).await;
    assert_eq!(done["state"], "done", "{done}");
    assert_eq!(server.hits("/images/big.raw.zst"), hits);

    // A server that answers 404 fails the import with a message naming the URL.
    let (_, v) = api
        .call(
            Method::POST,
            "/api/v1/images/fetch",
            Some(&admin),
            Some(json!({"name": "missing", "url": format!("{}/nope.raw", server.url)})),
        )
        .await;
    let done = wait_import(&api.http, &api.url, &admin, v["id"].as_str().unwrap()).await;
    assert_eq!(done["state"], "failed");
    assert!(done["error"].as_str().unwrap().contains("404"), "{done}");
}

#[tokio::test]
async fn stdin_import_through_the_cli_with_progress_and_listing() {
    let (_dir, d, api, admin) = start().await;
    let bytes = data(1 << 20, 7);
    let sha = sha256_hex(&bytes);
    let cli = |args: &[&str]| {
        let mut c = std::process::Command::new(common::rackbox_bin());
        c.args(args)
            .env("RACKBOX_URL", &d.url)
            .env("RACKBOX_TOKEN", &admin)
            .env("XDG_CONFIG_HOME", d.state_dir.join("cli-config"))
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        c
    };
    let mut child = cli(&[
        "image",
        "import",
        "fromstdin",
        "-",
        "--sha256",
        &sha,
        "--os",
        "ubuntu",
        "--release",
        "noble",
        "--title",
        "From stdin",
    ])
    .stdin(Stdio::piped())
    .spawn()
    .unwrap();
    {
        use std::io::Write;
        let mut stdin = child.stdin.take().unwrap();
        // An early exit of the CLI shows in its output below.
        let _ = stdin.write_all(&bytes);
    }
    let out = child.wait_with_output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.contains(&sha), "{stdout}");

    let (s, v) = api
        .call(Method::GET, "/api/v1/images/fromstdin", Some(&admin), None)
        .await;
    assert_eq!(s, 200);
    assert_eq!(v["size"], 1 << 20);
    assert_eq!(v["title"], "From stdin");
    assert_eq!(v["source"], "upload");

    // A wrong checksum through stdin: the CLI fails with the API's message.
    let mut child = cli(&["image", "import", "other", "-", "--sha256", &"0".repeat(64)])
        .stdin(Stdio::piped())
        .spawn()
        .unwrap();
    {
        use std::io::Write;
        let mut stdin = child.stdin.take().unwrap();
        let _ = stdin.write_all(&data(5000, 8));
    }
    let out = child.wait_with_output().unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("sha256 mismatch"), "{stderr}");

    // The list shows the image and the space used and free.
    let out = cli(&["image", "list"]).output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{stdout}");
    assert!(
        stdout.contains("fromstdin") && stdout.contains("noble"),
        "{stdout}"
    );
    assert!(
        stdout.contains("space:") && stdout.contains("free"),
        "{stdout}"
    );
    assert_eq!(blobs(&d), vec![sha]);
    assert!(temps(&d).is_empty());

    // /metrics has the cache's figures.
    let (s, v) = api.call(Method::GET, "/metrics", Some(&admin), None).await;
    assert_eq!(s, 200);
    let text = v.as_str().unwrap();
    assert!(text.contains("rackbox_images_bytes_free "), "{text}");
    assert!(
        text.contains("rackbox_images_imports_in_progress 0"),
        "{text}"
    );
    let used: u64 = text
        .lines()
        .find_map(|l| l.strip_prefix("rackbox_images_bytes_used "))
        .and_then(|v| v.trim().parse().ok())
        .unwrap();
    assert_eq!(used, 1 << 20);
}

#[tokio::test]
async fn range_requests_and_concurrent_downloads_while_another_image_imports() {
    let (_dir, _d, api, admin) = start().await;
    let a = data(2 << 20, 9);
    let (s, v) = upload(&api.http, &api.url, &admin, "name=served", a.clone()).await;
    assert_eq!(s, 201, "{v}");

    // Another image imports from a server that pauses half-way until told to go on.
    let b = data(4 << 20, 10);
    let go_on = Arc::new(Notify::new());
    let server = FileServer::start().await;
    server.put(
        "/b.raw",
        Entry {
            data: Arc::new(b.clone()),
            pause_at: Some((2 << 20, go_on.clone())),
            honour_range: true,
            ..Entry::default()
        },
    );
    let (s, v) = api
        .call(
            Method::POST,
            "/api/v1/images/fetch",
            Some(&admin),
            Some(json!({"name": "importing", "url": format!("{}/b.raw", server.url), "sha256": sha256_hex(&b)})),
        )
        .await;
    assert_eq!(s, 202, "{v}");
    let id = v["id"].as_str().unwrap().to_string();
    wait_progress(&api.http, &api.url, &admin, &id, 1 << 20).await;

    // Eight whole downloads and a set of ranges at once.
    let mut tasks = Vec::new();
    for _ in 0..8 {
        let api = Api::new(&api.url);
        tasks.push(tokio::spawn(async move {
            download(&api, "/images/served", None).await
        }));
    }
    let ranges: Vec<(&str, u16, Vec<u8>, Option<String>)> = vec![
        (
            "bytes=0-9",
            206,
            a[0..10].to_vec(),
            Some(format!("bytes 0-9/{}", a.len())),
        ),
        (
            "bytes=1000000-1000099",
            206,
            a[1_000_000..1_000_100].to_vec(),
            Some(format!("bytes 1000000-1000099/{}", a.len())),
        ),
        ("bytes=-16", 206, a[a.len() - 16..].to_vec(), None),
        ("bytes=2000000-", 206, a[2_000_000..].to_vec(), None),
        (
            "bytes=99999999-",
            416,
            Vec::new(),
            Some(format!("bytes */{}", a.len())),
        ),
    ];
    for (range, status, want, content_range) in &ranges {
        let (s, headers, body) = download(&api, "/images/served", Some(range)).await;
        assert_eq!(s, *status, "{range}");
        if *status == 206 {
            assert_eq!(&body, want, "{range}");
            assert_eq!(headers["content-length"], want.len().to_string());
        }
        if let Some(cr) = content_range {
            assert_eq!(headers["content-range"], cr.as_str(), "{range}");
        }
    }
    // If-Range with a stale validator gets the whole file.
    let r = api
        .http
        .get(format!("{}/images/served", api.url))
        .header("range", "bytes=0-9")
        .header("if-range", "\"stale\"")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.bytes().await.unwrap().len(), a.len());
    for t in tasks {
        let (s, _, body) = t.await.unwrap();
        assert_eq!(s, 200);
        assert!(body == a, "a concurrent download got other bytes");
    }
    // The other import was still under way the whole time; the half-imported image is not
    // served.
    let (s, v) = api
        .call(
            Method::GET,
            &format!("/api/v1/images/imports/{id}"),
            Some(&admin),
            None,
        )
        .await;
    assert_eq!(s, 200);
    assert_eq!(v["state"], "running", "{v}");
    assert_eq!(v["bytes_total"], 4 << 20);
    let (s, _, _) = download(&api, "/images/importing", None).await;
    assert_eq!(s, 404);
    let (s, v) = api
        .call(Method::GET, "/api/v1/images/imports", Some(&admin), None)
        .await;
    assert_eq!(s, 200);
    assert!(v.as_array().unwrap().iter().any(|i| i["id"] == id.as_str()));
    // A second import of the same name meanwhile is refused.
    let (s, v) = upload(&api.http, &api.url, &admin, "name=importing", vec![1, 2, 3]).await;
    assert_eq!(s, 409, "{v}");

    go_on.notify_one();
    let done = wait_import(&api.http, &api.url, &admin, &id).await;
    assert_eq!(done["state"], "done", "{done}");
    let (s, _, body) = download(&api, "/images/importing", None).await;
    assert_eq!(s, 200);
    assert!(body == b);
}

#[tokio::test]
async fn no_name_or_url_reaches_outside_the_cache() {
    let (dir, d, api, admin) = start().await;
    let before_outside = names_in(dir.path());
    for name in [
        "..",
        "../escape",
        ".hidden",
        "a%2Fb",
        "..%2F..%2Fescape",
        "imports",
        "x%00y",
    ] {
        let (s, v) = upload(
            &api.http,
            &api.url,
            &admin,
            &format!("name={name}"),
            vec![1; 10],
        )
        .await;
        assert_eq!(s, 400, "name {name}: {v}");
    }
    for (arch, name) in [
        ("..%2F..", "x"),
        ("amd64", "..%2Fescape"),
        ("AMD64", "x"),
        ("amd64", "."),
    ] {
        let r = api
            .http
            .post(format!(
                "{}/api/v1/boot-resources?arch={arch}&name={name}&kind=kernel",
                api.url
            ))
            .bearer_auth(&admin)
            .body(vec![1u8; 10])
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 400, "boot {arch}/{name}");
    }
    for url in [
        "file:///etc/passwd",
        "ftp://127.0.0.1/x.raw",
        "/etc/passwd",
        "../../etc/passwd",
        "data:text/plain,hello",
    ] {
        let (s, v) = api
            .call(
                Method::POST,
                "/api/v1/images/fetch",
                Some(&admin),
                Some(json!({"name": "evil", "url": url})),
            )
            .await;
        assert_eq!(s, 400, "{url}: {v}");
    }
    // A manifest cannot smuggle one in either.
    let (s, v) = api
        .call(
            Method::POST,
            "/api/v1/images/sync",
            Some(&admin),
            Some(json!({"manifest": {"images": [
                {"name": "evil", "url": "file:///etc/passwd", "sha256": "0".repeat(64), "size": 1},
                {"name": "../evil", "url": "http://127.0.0.1:9/x", "sha256": "0".repeat(64), "size": 1}
            ]}})),
        )
        .await;
    assert_eq!(s, 202, "{v}");
    assert_eq!(v["failed"].as_array().unwrap().len(), 2, "{v}");
    assert!(v["imports"].as_array().unwrap().is_empty());
    // Downloads by crafted names find nothing.
    for path in [
        "/images/..%2F..%2Frackbox.redb",
        "/images/%2E%2E",
        "/images/..%2Frackbox.toml",
        "/boot-resources/..%2F..%2F/rackbox.toml",
        "/boot-resources/amd64/..%2F..%2F..%2Frackbox.redb",
    ] {
        let (s, _, body) = download(&api, path, None).await;
        // The client resolves `/images/%2E%2E` to `/`, the control page, which sends a caller
        // without a session to its login form: that form, never a file of the state directory.
        let login_form = String::from_utf8_lossy(&body).contains("Log in to rackbox");
        assert!(
            s == 404 || s == 400 || (s == 200 && login_form),
            "{path}: {s}"
        );
        assert!(
            login_form || body.len() < 1000,
            "{path} served {} bytes",
            body.len()
        );
    }
    // The cache holds its own layout only, and nothing appeared beside the state directory.
    assert_eq!(names_in(&d.state_dir.join("images")), vec!["blobs", "tmp"]);
    assert!(blobs(&d).is_empty());
    assert_eq!(names_in(dir.path()), before_outside);
}

#[tokio::test]
async fn delete_is_refused_while_a_machine_deploys_the_image() {
    let dir = tempfile::tempdir().unwrap();
    let mut named = common::machine("dep001", Status::Deploying, 4, 4096);
    named.deploy = Some(DeployTarget {
        image: "busy".into(),
        osystem: String::new(),
        distro_series: String::new(),
        user_data: String::new(),
        ssh_keys: Vec::new(),
    });
    let mut by_default = common::machine("dep002", Status::Deploying, 4, 4096);
    by_default.architecture = "arm64/generic".into();
    by_default.deploy = Some(DeployTarget {
        image: String::new(),
        osystem: "debian".into(),
        distro_series: String::new(),
        user_data: String::new(),
        ssh_keys: Vec::new(),
    });
    let mut done = common::machine("dep003", Status::Deployed, 4, 4096);
    done.deploy = Some(DeployTarget {
        image: "idle".into(),
        osystem: String::new(),
        distro_series: String::new(),
        user_data: String::new(),
        ssh_keys: Vec::new(),
    });
    common::seed(dir.path(), vec![named, by_default, done]);
    let d = Daemon::start_in(dir.path(), "[images]\nreserve_mib = 0\n");
    let api = Api::new(&d.url);
    let admin = api.login("admin", ADMIN_PASSWORD).await;
    for (q, seed) in [
        ("name=busy", 11),
        ("name=idle", 12),
        ("name=deb-arm&os=debian&arch=arm64", 13),
        ("name=deb-arm-2&os=debian&arch=arm64", 14),
    ] {
        let (s, v) = upload(&api.http, &api.url, &admin, q, data(1000, seed)).await;
        assert_eq!(s, 201, "{v}");
    }
    let (s, v) = api
        .call(Method::DELETE, "/api/v1/images/busy", Some(&admin), None)
        .await;
    assert_eq!(s, 409, "{v}");
    assert!(v["message"].as_str().unwrap().contains("dep001"), "{v}");
    // deb-arm is the debian/arm64 default, which dep002 deploys by naming no image.
    let (s, v) = api
        .call(Method::DELETE, "/api/v1/images/deb-arm", Some(&admin), None)
        .await;
    assert_eq!(s, 409, "{v}");
    assert!(v["message"].as_str().unwrap().contains("dep002"), "{v}");
    let (s, _) = api
        .call(
            Method::DELETE,
            "/api/v1/images/deb-arm-2",
            Some(&admin),
            None,
        )
        .await;
    assert_eq!(s, 204);
    // A deployed machine does not hold its image.
    let (s, _) = api
        .call(Method::DELETE, "/api/v1/images/idle", Some(&admin), None)
        .await;
    assert_eq!(s, 204);
    // Still there, still served.
    let (s, _, body) = download(&api, "/images/busy", None).await;
    assert_eq!(s, 200);
    assert_eq!(body, data(1000, 11));
    // A user may read but not delete.
    let (s, _) = api
        .call(
            Method::POST,
            "/api/v1/users",
            Some(&admin),
            Some(json!({"username": "bob", "password": "bob-password"})),
        )
        .await;
    assert_eq!(s, 201);
    let bob = api.login("bob", "bob-password").await;
    let (s, _) = api
        .call(Method::GET, "/api/v1/images/busy", Some(&bob), None)
        .await;
    assert_eq!(s, 200);
    let (s, _) = api
        .call(Method::DELETE, "/api/v1/images/busy", Some(&bob), None)
        .await;
    assert_eq!(s, 403);
}

#[tokio::test]
async fn sync_from_a_mirror_imports_what_is_missing_and_reports_changes() {
    let (_dir, d, api, admin) = start().await;
    let server = FileServer::start().await;
    let one = data(100_000, 20);
    let two = data(150_000, 21);
    let loader = data(5_000, 22);
    for (path, bytes) in [
        ("/mirror/one.raw", &one),
        ("/mirror/two.raw", &two),
        ("/mirror/boot/ipxe.efi", &loader),
    ] {
        server.put(
            path,
            Entry {
                data: Arc::new(bytes.clone()),
                honour_range: true,
                ..Entry::default()
            },
        );
    }
    let manifest = |two_bytes: &Vec<u8>| {
        json!({
            "format": "rackbox-images/1",
            "images": [
                {"name": "one", "url": "one.raw", "sha256": sha256_hex(&one), "size": one.len(),
                 "os": "ubuntu", "release": "noble", "arch": "amd64", "title": "One"},
                {"name": "two", "url": format!("{}/mirror/two.raw", server.url), "sha256": sha256_hex(two_bytes),
                 "size": two_bytes.len(), "os": "ubuntu", "arch": "amd64", "default": true}
            ],
            "boot_resources": [
                {"arch": "amd64", "name": "ipxe.efi", "kind": "bootloader", "url": "boot/ipxe.efi",
                 "sha256": sha256_hex(&loader), "size": loader.len()}
            ]
        })
    };
    server.put(
        "/mirror/manifest.json",
        Entry {
            data: Arc::new(serde_json::to_vec(&manifest(&two)).unwrap()),
            ..Entry::default()
        },
    );
    // A local image the mirror does not list is kept and reported.
    let (s, _) = upload(&api.http, &api.url, &admin, "name=local", data(100, 23)).await;
    assert_eq!(s, 201);

    // Through the CLI: it follows the imports and prints what changed.
    let manifest_url = format!("{}/mirror/manifest.json", server.url);
    // tokio's Command: the file server runs on this test's runtime and must keep serving.
    let out = tokio::process::Command::new(common::rackbox_bin())
        .args(["image", "sync", &manifest_url])
        .env("RACKBOX_URL", &d.url)
        .env("RACKBOX_TOKEN", &admin)
        .env("XDG_CONFIG_HOME", d.state_dir.join("cli-config"))
        .output()
        .await
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout).to_string();
    assert!(
        out.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        stdout.contains("added: boot:amd64/ipxe.efi,one,two")
            || stdout.contains("added: one,two,boot:amd64/ipxe.efi"),
        "{stdout}"
    );
    assert!(stdout.contains("only here (kept): local"), "{stdout}");
    let (_, _, body) = download(&api, "/images/one", None).await;
    assert_eq!(body, one);
    let (_, v) = api
        .call(Method::GET, "/api/v1/images/two", Some(&admin), None)
        .await;
    assert_eq!(v["default"], true, "{v}");
    let (s, _, body) = download(&api, "/boot-resources/amd64/ipxe.efi", None).await;
    assert_eq!(s, 200);
    assert_eq!(body, loader);

    // Again: nothing to do.
    let (s, v) = api
        .call(
            Method::POST,
            "/api/v1/images/sync",
            Some(&admin),
            Some(json!({"url": manifest_url})),
        )
        .await;
    assert_eq!(s, 202, "{v}");
    assert_eq!(v["added"], json!([]));
    assert_eq!(v["updated"], json!([]));
    assert_eq!(v["unchanged"].as_array().unwrap().len(), 3, "{v}");

    // The mirror changes "two": it is updated, and its old blob goes.
    let two_new = data(120_000, 24);
    server.put(
        "/mirror/two.raw",
        Entry {
            data: Arc::new(two_new.clone()),
            honour_range: true,
            ..Entry::default()
        },
    );
    server.put(
        "/mirror/manifest.json",
        Entry {
            data: Arc::new(serde_json::to_vec(&manifest(&two_new)).unwrap()),
            ..Entry::default()
        },
    );
    let (s, v) = api
        .call(
            Method::POST,
            "/api/v1/images/sync",
            Some(&admin),
            Some(json!({"url": manifest_url})),
        )
        .await;
    assert_eq!(s, 202, "{v}");
    assert_eq!(v["updated"], json!(["two"]), "{v}");
    let id = v["imports"][0]["id"].as_str().unwrap().to_string();
    let done = wait_import(&api.http, &api.url, &admin, &id).await;
    assert_eq!(done["state"], "done", "{done}");
    let (_, _, body) = download(&api, "/images/two", None).await;
    assert!(body == two_new);
    assert!(!blobs(&d).contains(&sha256_hex(&two)));
    assert!(blobs(&d).contains(&sha256_hex(&two_new)));

    // gc finds nothing to remove: every blob is referenced.
    let (s, v) = api
        .call(Method::POST, "/api/v1/images/gc", Some(&admin), None)
        .await;
    assert_eq!(s, 200, "{v}");
    assert_eq!(v["removed"], json!([]));
    assert_eq!(blobs(&d).len(), 4);
}

/// The library face other rooms use: the TFTP allow-list and the deploy's image choice.
#[tokio::test]
async fn tftp_sees_only_boot_loaders_and_deploys_find_the_default_image() {
    use rackbox::images::{BootRequest, CacheOptions, ImageCache, ImageRequest, Source};
    let dir = tempfile::tempdir().unwrap();
    let store =
        rackbox::store::Store::open(&dir.path().join("rackbox.redb"), Default::default()).unwrap();
    let cache = ImageCache::open(store, CacheOptions::new(dir.path().join("images")))
        .await
        .unwrap();
    let body = |text: String| {
        let chunk = Ok::<_, String>(bytes::Bytes::from(text));
        Source::Stream(Box::pin(futures_util::stream::iter(vec![chunk])))
    };
    for (arch, name, kind) in [
        ("amd64", "ipxe.efi", "bootloader"),
        ("arm64", "ipxe.efi", "bootloader"),
        ("amd64", "undionly.kpxe", "bootloader"),
        ("amd64", "linux", "kernel"),
        ("amd64", "initrd", "initrd"),
    ] {
        let req = BootRequest {
            arch: arch.into(),
            name: name.into(),
            kind: kind.into(),
            ..BootRequest::default()
        };
        cache
            .import_boot(req, body(format!("{arch}/{name}")))
            .await
            .unwrap();
    }
    let files = cache.tftp_files().unwrap();
    let names: Vec<&str> = files.keys().map(String::as_str).collect();
    assert_eq!(
        names,
        vec![
            "amd64/ipxe.efi",
            "amd64/undionly.kpxe",
            "arm64/ipxe.efi",
            "undionly.kpxe"
        ]
    );
    let path = cache.tftp_file("/undionly.kpxe").unwrap();
    assert_eq!(std::fs::read(path).unwrap(), b"amd64/undionly.kpxe");
    for refused in [
        "amd64/linux",
        "initrd",
        "ipxe.efi",
        "../rackbox.redb",
        "/etc/passwd",
    ] {
        assert!(cache.tftp_file(refused).is_none(), "{refused}");
    }

    for (name, os, arch, default) in [
        ("noble", "ubuntu", "amd64", false),
        ("jammy", "ubuntu", "amd64", false),
        ("noble-arm", "ubuntu", "arm64", false),
        ("bookworm", "debian", "amd64", true),
    ] {
        let req = ImageRequest {
            name: name.into(),
            os: Some(os.into()),
            arch: Some(arch.into()),
            default,
            ..ImageRequest::default()
        };
        cache.import_image(req, body(name.into())).await.unwrap();
    }
    let pick =
        |name: &str, os: &str, arch: &str| cache.deploy_image(name, os, arch).map(|i| i.name);
    assert_eq!(pick("", "ubuntu", "amd64/generic").unwrap(), "noble");
    assert_eq!(pick("", "ubuntu", "arm64/generic").unwrap(), "noble-arm");
    assert_eq!(pick("", "debian", "amd64").unwrap(), "bookworm");
    assert_eq!(pick("jammy", "", "amd64").unwrap(), "jammy");
    assert!(pick("", "centos", "amd64").is_err());
    assert!(pick("nosuch", "", "amd64").is_err());
    // Deleting a default hands the role to another image of its os/arch.
    cache
        .delete_image_unless("noble", |_, _, _| Vec::new())
        .await
        .unwrap();
    assert_eq!(pick("", "ubuntu", "amd64").unwrap(), "jammy");
    cache
        .delete_image_unless("jammy", |_, _, _| Vec::new())
        .await
        .unwrap();
    assert!(pick("", "ubuntu", "amd64").is_err());
}
