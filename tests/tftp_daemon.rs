//! TFTP inside `rackbox serve`: it serves the boot loaders imported as boot resources, under the
//! names firmware asks for, follows imports and deletions through the API, never serves a
//! kernel, an initrd or anything else, and counts on /metrics. On 127.0.0.1 only.

mod common;

use std::net::SocketAddr;
use std::time::Duration;

use common::{ADMIN_PASSWORD, Api, Daemon};
use rackbox::tftp::client::{ClientError, ReadOptions, read_file};
use reqwest::Method;

fn free_udp_port() -> u16 {
    std::net::UdpSocket::bind("127.0.0.1:0")
        .and_then(|s| s.local_addr())
        .map(|a| a.port())
        .expect("a free UDP port on 127.0.0.1")
}

async fn tftp_get(server: SocketAddr, name: &str) -> Result<Vec<u8>, ClientError> {
    let mut out = Vec::new();
    let options = ReadOptions {
        block_size: Some(1468),
        window_size: Some(8),
        ..ReadOptions::default()
    };
    read_file(server, name, &options, &mut out).await?;
    Ok(out)
}

async fn upload(api: &Api, token: &str, arch: &str, name: &str, kind: &str, body: Vec<u8>) {
    let r = api
        .http
        .post(format!(
            "{}/api/v1/boot-resources?arch={arch}&name={name}&kind={kind}&replace=true",
            api.url
        ))
        .bearer_auth(token)
        .body(body)
        .send()
        .await
        .expect("upload");
    assert_eq!(
        r.status(),
        201,
        "upload {arch}/{name}: {:?}",
        r.text().await
    );
}

/// Polls (bounded) until a TFTP read of `name` gives `expected` (Some) or is refused (None).
async fn wait_tftp(server: SocketAddr, name: &str, expected: Option<&[u8]>) {
    let mut last = String::new();
    for _ in 0..100 {
        match (tftp_get(server, name).await, expected) {
            (Ok(got), Some(want)) if got == want => return,
            (Err(ClientError::Server { .. }), None) => return,
            (other, _) => last = format!("{:?}", other.map(|b| b.len())),
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!(
        "TFTP {name}: wanted {:?} bytes, last got {last}",
        expected.map(<[u8]>::len)
    );
}

#[tokio::test]
async fn the_daemon_serves_exactly_the_boot_loaders_over_tftp() {
    let dir = tempfile::tempdir().unwrap();
    let port = free_udp_port();
    let daemon = Daemon::start_in(
        dir.path(),
        &format!("[tftp]\nenabled = true\nlisten = \"127.0.0.1:{port}\"\n"),
    );
    let server: SocketAddr = ([127, 0, 0, 1], port).into();
    let api = Api::new(&daemon.url);
    let admin = api.login("admin", ADMIN_PASSWORD).await;

    // Nothing imported: nothing served.
    wait_tftp(server, "undionly.kpxe", None).await;

    let undionly = b"undionly.kpxe bytes".repeat(500);
    let snponly = b"snponly.efi bytes".repeat(3000);
    upload(
        &api,
        &admin,
        "amd64",
        "undionly.kpxe",
        "bootloader",
        undionly.clone(),
    )
    .await;
    upload(
        &api,
        &admin,
        "amd64",
        "snponly.efi",
        "bootloader",
        snponly.clone(),
    )
    .await;
    upload(&api, &admin, "amd64", "vmlinuz", "kernel", vec![1u8; 5000]).await;
    upload(
        &api,
        &admin,
        "amd64",
        "initrd.img",
        "initrd",
        vec![2u8; 5000],
    )
    .await;

    // Loaders by the plain name firmware asks for, with or without a leading '/', and by arch.
    wait_tftp(server, "undionly.kpxe", Some(&undionly)).await;
    wait_tftp(server, "/snponly.efi", Some(&snponly)).await;
    wait_tftp(server, "amd64/snponly.efi", Some(&snponly)).await;
    // Kernels, initrds, the cache's own files and the state are not reachable.
    for name in [
        "vmlinuz",
        "amd64/vmlinuz",
        "initrd.img",
        "amd64/initrd.img",
        "../rackbox.redb",
        "/etc/passwd",
        "../blobs",
    ] {
        match tftp_get(server, name).await {
            Err(ClientError::Server { .. }) => {}
            other => panic!("TFTP served {name}: {:?}", other.map(|b| b.len())),
        }
    }

    // A replaced loader is served with its new content; a deleted one is gone.
    let undionly2 = b"undionly.kpxe version 2".repeat(700);
    upload(
        &api,
        &admin,
        "amd64",
        "undionly.kpxe",
        "bootloader",
        undionly2.clone(),
    )
    .await;
    wait_tftp(server, "undionly.kpxe", Some(&undionly2)).await;
    let (s, v) = api
        .call(
            Method::DELETE,
            "/api/v1/boot-resources/amd64/snponly.efi",
            Some(&admin),
            None,
        )
        .await;
    assert!(s == 200 || s == 204, "delete: {s} {v}");
    wait_tftp(server, "snponly.efi", None).await;

    // The counters are on /metrics.
    let r = api
        .http
        .get(format!("{}/metrics", api.url))
        .bearer_auth(&admin)
        .send()
        .await
        .unwrap();
    let text = r.text().await.unwrap();
    let completed = text
        .lines()
        .find_map(|l| l.strip_prefix("rackbox_tftp_transfers_total{outcome=\"completed\"} "))
        .and_then(|v| v.parse::<u64>().ok())
        .unwrap_or_else(|| panic!("no TFTP counters on /metrics:\n{text}"));
    assert!(completed >= 4, "{completed} completed transfers:\n{text}");
    assert!(text.contains("rackbox_tftp_requests_refused_total{reason=\"not_found\"}"));
}

#[tokio::test]
async fn a_daemon_restarted_serves_the_loaders_it_had_and_tftp_off_binds_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let port = free_udp_port();
    let tftp = format!("[tftp]\nenabled = true\nlisten = \"127.0.0.1:{port}\"\n");
    let server: SocketAddr = ([127, 0, 0, 1], port).into();
    let loader = b"ipxe.efi bytes".repeat(100);
    {
        let daemon = Daemon::start_in(dir.path(), &tftp);
        let api = Api::new(&daemon.url);
        let admin = api.login("admin", ADMIN_PASSWORD).await;
        upload(
            &api,
            &admin,
            "amd64",
            "ipxe.efi",
            "bootloader",
            loader.clone(),
        )
        .await;
        wait_tftp(server, "ipxe.efi", Some(&loader)).await;
    }
    // Someone drops a file into the root by hand: the next start removes it.
    let root = dir.path().join("images").join("tftp");
    std::fs::write(root.join("secret.txt"), b"not a boot loader").unwrap();
    {
        let _daemon = Daemon::start_in(dir.path(), &tftp);
        wait_tftp(server, "ipxe.efi", Some(&loader)).await;
        wait_tftp(server, "secret.txt", None).await;
        assert!(!root.join("secret.txt").exists());
    }
    // Off: the port stays free.
    let _daemon = Daemon::start_in(
        dir.path(),
        &format!("[tftp]\nenabled = false\nlisten = \"127.0.0.1:{port}\"\n"),
    );
    std::net::UdpSocket::bind(server).expect("TFTP off leaves its port free");
}

#[tokio::test]
async fn a_loader_read_over_tftp_is_a_step_of_the_boot_of_the_machine_at_that_address() {
    let dir = tempfile::tempdir().unwrap();
    let port = free_udp_port();
    let daemon = Daemon::start_in(
        dir.path(),
        &format!("[tftp]\nenabled = true\nlisten = \"127.0.0.1:{port}\"\n"),
    );
    let server: SocketAddr = ([127, 0, 0, 1], port).into();
    let api = Api::new(&daemon.url);
    let admin = api.login("admin", ADMIN_PASSWORD).await;
    let mac = "52:54:00:20:00:01";
    let (s, m) = api
        .call(
            Method::POST,
            "/api/v1/machines",
            Some(&admin),
            Some(serde_json::json!({"hostname": "tftp-1", "mac_addresses": [mac], "commission": false})),
        )
        .await;
    assert_eq!(s, 201, "{m}");
    let id = m["system_id"].as_str().unwrap().to_string();
    let loader = b"undionly.kpxe bytes".repeat(500);
    upload(
        &api,
        &admin,
        "amd64",
        "undionly.kpxe",
        "bootloader",
        loader.clone(),
    )
    .await;
    wait_tftp(server, "undionly.kpxe", Some(&loader)).await;

    // No DHCP here, so nothing says yet which machine 127.0.0.1 is: the transfer waits until
    // the iPXE script asked for from that address names it, then reads before the script.
    let r = api
        .http
        .get(format!("{}/boot/{mac}.ipxe", daemon.url))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let timeline = common::eventually(
        "the TFTP transfer in the timeline",
        Duration::from_secs(10),
        async || {
            let (s, t) = api
                .call(
                    Method::GET,
                    &format!("/api/v1/machines/{id}/boot-timeline"),
                    Some(&admin),
                    None,
                )
                .await;
            assert_eq!(s, 200, "{t}");
            let steps = t["current"]["steps"]
                .as_array()
                .cloned()
                .unwrap_or_default();
            let done = steps
                .iter()
                .position(|s| s["step"]["kind"] == "tftp" && s["step"]["outcome"] == "completed");
            let script = steps
                .iter()
                .position(|s| s["step"]["kind"] == "ipxe_script");
            match (done, script) {
                (Some(d), Some(s)) if d < s => Ok(steps[d].clone()),
                _ => Err(t),
            }
        },
    )
    .await;
    assert_eq!(timeline["step"]["file"], "undionly.kpxe");
    assert_eq!(timeline["step"]["bytes"], loader.len());
    assert_eq!(timeline["step"]["size"], loader.len());
}
