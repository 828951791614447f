//! The agent's task loop against a fake appliance (tests/agent_support): disks are files and
//! loop devices; partition tables and the cloud-init seed are read back with independent tools
//! (sfdisk, sgdisk, blkid, mtools). The loop device needs root (CI runs as root); without it
//! that test fails saying so.

mod agent_support;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use agent_support::*;
use rackbox::agent::{AgentError, ClientError, Outcome};
use serde_json::{Value, json};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deploy_gpt_raw_gz_writes_the_image_and_the_seed() {
    let dir = tempfile::tempdir().expect("tempdir");
    let image = make_image(dir.path(), "gpt", 20 * MIB);
    let gz = compress("gzip", &image);
    let s = appliance(vec![deploy_task("img.raw.gz", &gz, "raw.gz", "")]);
    lock(&s).images.insert("img.raw.gz".into(), gz);
    let url = serve(s.clone(), 0).await;
    let disk = disk_file(dir.path(), 64 * MIB);

    let outcome = run_agent(config(&url, vec![disk.clone()]))
        .await
        .expect("agent");
    assert_eq!(outcome, Outcome::PowerOff);

    let done = only_complete(&s);
    let results = &done["results"];
    assert_eq!(results["written_bytes"], 20 * MIB);
    let seed_offset = results["seed_offset"].as_u64().expect("seed_offset");
    check_deployed(&disk, &image, "gpt", seed_offset);
    assert_eq!(
        mcopy(&disk, seed_offset, "user-data"),
        "#cloud-config\nssh_authorized_keys:\n  - \"ssh-ed25519 AAAAC3Nza alice@laptop\"\n"
    );

    // Progress came before the completion and reached 100%.
    let calls = lock(&s).calls.clone();
    let complete_at = calls
        .iter()
        .position(|(k, _)| k == "complete")
        .expect("complete");
    let progress: Vec<&Value> = calls
        .iter()
        .filter(|(k, _)| k == "progress")
        .map(|(_, v)| v)
        .collect();
    assert!(!progress.is_empty());
    assert!(calls[complete_at..].iter().all(|(k, _)| k != "progress"));
    assert!(
        progress
            .iter()
            .any(|p| p["percent"].as_f64() == Some(100.0))
    );
    assert_eq!(lock(&s).unauthorized, 0);
}

/// The appliance goes away twice mid-download (killed and restarted): the agent asks for the
/// rest with a Range request each time and the image on the disk is whole.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_download_that_breaks_off_is_resumed_where_it_stopped() {
    let dir = tempfile::tempdir().expect("tempdir");
    let image = make_image(dir.path(), "gpt", 20 * MIB);
    let gz = compress("gzip", &image);
    let s = appliance(vec![deploy_task("img.raw.gz", &gz, "raw.gz", "")]);
    {
        let mut a = lock(&s);
        a.images.insert("img.raw.gz".into(), gz.clone());
        a.image_breaks = 2;
        a.break_after = gz.len() / 3;
    }
    let url = serve(s.clone(), 0).await;
    let disk = disk_file(dir.path(), 64 * MIB);

    let outcome = run_agent(config(&url, vec![disk.clone()]))
        .await
        .expect("agent");
    assert_eq!(outcome, Outcome::PowerOff);
    let done = only_complete(&s);
    check_deployed(
        &disk,
        &image,
        "gpt",
        done["results"]["seed_offset"]
            .as_u64()
            .expect("seed_offset"),
    );
    let third = gz.len() / 3;
    assert_eq!(
        lock(&s).image_ranges,
        vec![
            String::new(),
            format!("bytes={third}-"),
            format!("bytes={}-", 2 * third)
        ],
        "the whole image once, then the rest from where each download stopped"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deploy_mbr_raw_zst_merges_keys_into_cloud_config() {
    let dir = tempfile::tempdir().expect("tempdir");
    let image = make_image(dir.path(), "dos", 20 * MIB);
    let zst = compress("zstd", &image);
    let user_data = "#cloud-config\npackages:\n  - nginx\n";
    let s = appliance(vec![deploy_task("img.raw.zst", &zst, "raw.zst", user_data)]);
    lock(&s).images.insert("img.raw.zst".into(), zst);
    let url = serve(s.clone(), 0).await;
    // A disk that is not a whole number of MiB.
    let disk = disk_file(dir.path(), 48 * MIB + 4096);

    run_agent(config(&url, vec![disk.clone()]))
        .await
        .expect("agent");
    let done = only_complete(&s);
    let seed_offset = done["results"]["seed_offset"]
        .as_u64()
        .expect("seed_offset");
    check_deployed(&disk, &image, "dos", seed_offset);
    assert_eq!(
        mcopy(&disk, seed_offset, "user-data"),
        "#cloud-config\npackages:\n  - nginx\nssh_authorized_keys:\n  - \"ssh-ed25519 AAAAC3Nza alice@laptop\"\n"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deploy_raw_xz_and_raw_to_named_disks() {
    let dir = tempfile::tempdir().expect("tempdir");
    let image = make_image(dir.path(), "gpt", 20 * MIB);
    let xz = compress("xz", &image);
    let mut second = deploy_task("img.raw", &image, "raw", "#!/bin/sh\necho hi\n");
    second["target_disk"] = json!("b.raw");
    let mut first = deploy_task("img.raw.xz", &xz, "raw.xz", "");
    first["target_disk"] = json!("a.raw");
    let s = appliance(vec![first, second]);
    lock(&s).images.insert("img.raw.xz".into(), xz);
    lock(&s).images.insert("img.raw".into(), image.clone());
    let url = serve(s.clone(), 0).await;
    let a = dir.path().join("a.raw");
    let b = dir.path().join("b.raw");
    for p in [&a, &b] {
        std::fs::File::create(p)
            .and_then(|f| f.set_len(40 * MIB))
            .expect("disk");
    }
    run_agent(config(&url, vec![a.clone(), b.clone()]))
        .await
        .expect("agent");
    assert_eq!(calls_of(&s, "fail"), Vec::<Value>::new());
    let done = calls_of(&s, "complete");
    assert_eq!(done.len(), 2);
    let off_a = done[0]["results"]["seed_offset"].as_u64().expect("offset");
    let off_b = done[1]["results"]["seed_offset"].as_u64().expect("offset");
    check_deployed(&a, &image, "gpt", off_a);
    check_deployed(&b, &image, "gpt", off_b);
    assert_eq!(mcopy(&b, off_b, "user-data"), "#!/bin/sh\necho hi\n");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn corrupted_image_fails_with_the_checksum_and_wipes_the_table() {
    let dir = tempfile::tempdir().expect("tempdir");
    let image = make_image(dir.path(), "gpt", 20 * MIB);
    let gz = compress("gzip", &image);
    let task = deploy_task("img.raw.gz", &gz, "raw.gz", "");
    let mut damaged = gz.clone();
    let mid = damaged.len() / 2;
    damaged[mid] ^= 0x55;
    let s = appliance(vec![task]);
    lock(&s).images.insert("img.raw.gz".into(), damaged);
    let url = serve(s.clone(), 0).await;
    let disk = disk_file(dir.path(), 64 * MIB);
    std::fs::write(&disk, vec![0xeeu8; 64 * MIB as usize]).expect("fill disk");

    let outcome = run_agent(config(&url, vec![disk.clone()]))
        .await
        .expect("agent");
    assert_eq!(outcome, Outcome::PowerOff);
    assert_eq!(
        calls_of(&s, "complete"),
        Vec::<Value>::new(),
        "nothing claims success"
    );
    let fails = calls_of(&s, "fail");
    assert_eq!(fails.len(), 1);
    let reason = fails[0]["reason"].as_str().expect("reason");
    assert!(reason.contains("checksum mismatch"), "{reason}");
    assert!(
        reason.contains(&sha256_hex(&gz)),
        "names the expected digest: {reason}"
    );
    let written = std::fs::read(&disk).expect("read disk");
    assert!(
        written[..MIB as usize].iter().all(|b| *b == 0),
        "head wiped"
    );
    assert!(
        written[written.len() - MIB as usize..]
            .iter()
            .all(|b| *b == 0),
        "tail wiped"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wrong_size_and_too_small_disk_fail() {
    let dir = tempfile::tempdir().expect("tempdir");
    let image = make_image(dir.path(), "dos", 20 * MIB);
    // The image alone fills the disk: no room for the seed partition.
    let s = appliance(vec![deploy_task("img.raw", &image, "raw", "")]);
    lock(&s).images.insert("img.raw".into(), image.clone());
    let url = serve(s.clone(), 0).await;
    let disk = disk_file(dir.path(), 20 * MIB);
    run_agent(config(&url, vec![disk.clone()]))
        .await
        .expect("agent");
    let fails = calls_of(&s, "fail");
    assert_eq!(fails.len(), 1);
    let reason = fails[0]["reason"].as_str().expect("reason");
    assert!(reason.contains("no room"), "{reason}");

    // An image larger than the disk stops at the disk's end instead of growing the file.
    let s = appliance(vec![deploy_task("img.raw", &image, "raw", "")]);
    lock(&s).images.insert("img.raw".into(), image);
    let url = serve(s.clone(), 0).await;
    let disk = disk_file(dir.path(), 10 * MIB);
    run_agent(config(&url, vec![disk.clone()]))
        .await
        .expect("agent");
    let fails = calls_of(&s, "fail");
    assert_eq!(fails.len(), 1);
    let reason = fails[0]["reason"].as_str().expect("reason");
    assert!(reason.contains("larger than the"), "{reason}");
    assert_eq!(std::fs::metadata(&disk).expect("disk").len(), 10 * MIB);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_agent_waits_out_a_refusing_then_failing_appliance() {
    // Nothing listens on the port at first: connections are refused.
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        l.local_addr().expect("addr").port()
    };
    let url = format!("http://127.0.0.1:{port}");
    let s = appliance(vec![json!({"task": "commission"})]);
    lock(&s).task_503s = 3;
    let agent = tokio::spawn(run_agent(config(&url, vec![])));
    // Let the agent meet a few refusals (its first delays are 20, 40, 80 ms).
    tokio::time::sleep(Duration::from_millis(400)).await;
    assert!(!agent.is_finished(), "the agent keeps retrying");
    serve(s.clone(), port).await;
    let outcome = agent.await.expect("join").expect("agent");
    assert_eq!(outcome, Outcome::PowerOff);
    // Three 503s, the commission task, then poweroff.
    assert_eq!(lock(&s).task_gets, 5);
    let inv = calls_of(&s, "inventory");
    assert_eq!(inv.len(), 1);
    assert!(inv[0]["cpu_count"].as_u64().unwrap_or(0) >= 1);
    assert!(inv[0]["memory_mib"].as_u64().unwrap_or(0) > 0);
    assert_eq!(inv[0]["architecture"], "amd64/generic");
    let done = only_complete(&s);
    assert!(
        done["message"]
            .as_str()
            .unwrap_or("")
            .starts_with("commissioned")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_4xx_is_final_and_the_budget_is_bounded() {
    let s = appliance(vec![]);
    let url = serve(s.clone(), 0).await;
    let mut cfg = config(&url, vec![]);
    cfg.token = Some("wrong".into());
    match run_agent(cfg).await {
        Err(AgentError::Client(ClientError::Refused { status, .. })) => assert_eq!(status, 401),
        other => panic!("expected a 401 refusal, got {other:?}"),
    }
    assert_eq!(lock(&s).unauthorized, 1, "a 4xx is not retried");

    // Nobody ever listens: the agent gives up after its budget.
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        l.local_addr().expect("addr").port()
    };
    let mut cfg = config(&format!("http://127.0.0.1:{port}"), vec![]);
    cfg.policy.budget = Duration::from_millis(300);
    match run_agent(cfg).await {
        Err(AgentError::Client(ClientError::GaveUp { attempts, .. })) => assert!(attempts >= 2),
        other => panic!("expected to give up, got {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn enlist_then_tasks_with_the_new_token() {
    let s = appliance(vec![
        json!({"task": "wait", "seconds": 1}),
        json!({"task": "test", "tests": ["memory"]}),
        json!({"task": "dance"}),
        json!({"task": "reboot"}),
    ]);
    let url = serve(s.clone(), 0).await;
    let mut cfg = config(&url, vec![]);
    cfg.token = None;
    cfg.enlist = true;
    let outcome = run_agent(cfg).await.expect("agent");
    assert_eq!(outcome, Outcome::Reboot);
    let enlist = calls_of(&s, "enlist");
    assert_eq!(enlist.len(), 1);
    assert!(enlist[0]["disks"].is_array());
    assert_eq!(
        lock(&s).unauthorized,
        0,
        "every later call carried the enlisted token"
    );
    let done = calls_of(&s, "complete");
    assert_eq!(done.len(), 1);
    assert_eq!(done[0]["results"]["tests"][0]["name"], "memory");
    assert_eq!(done[0]["results"]["tests"][0]["status"], "passed");
    let fails = calls_of(&s, "fail");
    assert_eq!(fails.len(), 1, "the unknown task is reported");
    assert!(fails[0]["reason"].as_str().unwrap_or("").contains("dance"));
}

fn disk_with_pattern(dir: &Path, name: &str, size: u64) -> PathBuf {
    let p = dir.join(name);
    std::fs::write(&p, vec![0xabu8; size as usize]).expect("disk");
    p
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn erase_quick_full_and_secure_on_files() {
    let dir = tempfile::tempdir().expect("tempdir");
    // Quick: a disk with an MBR partition at 1..17 MiB; the heads and tails of disk and
    // partition are zeroed, the rest is left.
    let image = make_image(dir.path(), "dos", 32 * MIB);
    let quick = dir.path().join("quick.raw");
    std::fs::write(&quick, &image).expect("quick disk");
    let full = disk_with_pattern(dir.path(), "full.raw", 8 * MIB + 512);
    let secure = disk_with_pattern(dir.path(), "secure.raw", 4 * MIB);

    // An erase task erases every device the agent has: one agent run per disk, each ended by
    // the poweroff queued after its task.
    let s = appliance(vec![
        json!({"task": "erase", "mode": "quick"}),
        json!({"task": "poweroff"}),
        json!({"task": "erase", "mode": "full"}),
        json!({"task": "poweroff"}),
        json!({"task": "erase", "mode": "secure"}),
    ]);
    let url = serve(s.clone(), 0).await;
    for disk in [&quick, &full, &secure] {
        let outcome = run_agent(config(&url, vec![disk.clone()]))
            .await
            .expect("agent");
        assert_eq!(outcome, Outcome::PowerOff);
    }
    let q = std::fs::read(&quick).expect("read");
    let m = MIB as usize;
    assert!(
        q[..m].iter().all(|b| *b == 0),
        "disk head and partition table zeroed"
    );
    assert!(q[q.len() - m..].iter().all(|b| *b == 0), "disk tail zeroed");
    // Partition 1 is 1..17 MiB: its head (1..2 MiB) and tail (16..17 MiB) are zeroed.
    assert!(q[m..2 * m].iter().all(|b| *b == 0));
    assert!(q[16 * m..17 * m].iter().all(|b| *b == 0));
    assert!(
        q[2 * m..16 * m] == image[2 * m..16 * m],
        "the middle is left"
    );
    assert!(std::fs::read(&full).expect("read").iter().all(|b| *b == 0));
    assert!(
        std::fs::read(&secure)
            .expect("read")
            .iter()
            .all(|b| *b == 0)
    );
    let done = calls_of(&s, "complete");
    assert_eq!(done.len(), 3);
    let secure_msg = done[2]["message"].as_str().unwrap_or("");
    assert!(
        secure_msg.contains("secure erase not supported"),
        "{secure_msg}"
    );
    assert!(calls_of(&s, "fail").is_empty());
}

struct Loop(String);

impl Drop for Loop {
    fn drop(&mut self) {
        let _ = Command::new("losetup").arg("-d").arg(&self.0).status();
    }
}

fn is_root() -> bool {
    // SAFETY: geteuid has no preconditions.
    unsafe { libc::geteuid() == 0 }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn loop_device_deploy_then_secure_erase() {
    assert!(
        is_root(),
        "this test attaches a loop device and needs root (CI runs as root; run it with sudo -E)"
    );
    let dir = tempfile::tempdir().expect("tempdir");
    let image = make_image(dir.path(), "gpt", 20 * MIB);
    let zst = compress("zstd", &image);
    let backing = disk_file(dir.path(), 64 * MIB);
    let dev = run_tool(Command::new("losetup").args(["-f", "--show"]).arg(&backing))
        .trim()
        .to_string();
    let _guard = Loop(dev.clone());

    let s = appliance(vec![
        deploy_task("img.raw.zst", &zst, "raw.zst", ""),
        json!({"task": "poweroff"}),
        json!({"task": "erase", "mode": "secure"}),
    ]);
    lock(&s).images.insert("img.raw.zst".into(), zst);
    let url = serve(s.clone(), 0).await;
    let dev_path = PathBuf::from(&dev);
    run_agent(config(&url, vec![dev_path.clone()]))
        .await
        .expect("deploy");
    let done = only_complete(&s);
    let seed_offset = done["results"]["seed_offset"]
        .as_u64()
        .expect("seed_offset");
    check_deployed(&dev_path, &image, "gpt", seed_offset);

    run_agent(config(&url, vec![dev_path.clone()]))
        .await
        .expect("erase");
    let done = calls_of(&s, "complete");
    assert_eq!(done.len(), 2);
    let msg = done[1]["message"].as_str().unwrap_or("");
    let disks = done[1]["results"]["disks"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    assert_eq!(disks.len(), 1);
    // A loop device is neither an NVMe namespace nor an ATA drive: the report says so before
    // it says what was done instead.
    let note = disks[0]["note"].as_str().unwrap_or("");
    assert!(
        note.contains("NVMe format: not an NVMe namespace"),
        "{note}"
    );
    assert!(
        note.contains("ATA security erase: IDENTIFY DEVICE"),
        "{note}"
    );
    assert!(msg.contains(" by "), "the method per disk: {msg}");
    if disks[0]["method"] == "secure-discard" {
        // The loop device passed the discard on: its backing file reads back as zeros.
        assert!(
            disks[0]["note"]
                .as_str()
                .unwrap_or("")
                .contains("BLKSECDISCARD")
        );
    } else {
        assert!(msg.contains("secure erase not supported"), "{msg}");
        assert!(
            std::fs::read(&dev_path)
                .expect("read")
                .iter()
                .all(|b| *b == 0)
        );
    }
    assert!(calls_of(&s, "fail").is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hardware_tests_report_each_result_and_a_bad_disk_fails_the_run() {
    let dir = tempfile::tempdir().expect("tempdir");
    let good = disk_file(dir.path(), 8 * MIB);
    let missing = dir.path().join("gone.raw");
    let s = appliance(vec![
        json!({"task": "test", "tests": ["disk-read", "memory"]}),
        json!({"task": "poweroff"}),
    ]);
    let url = serve(s.clone(), 0).await;
    let outcome = run_agent(config(&url, vec![good.clone(), missing.clone()]))
        .await
        .expect("agent");
    assert_eq!(outcome, Outcome::PowerOff);
    assert!(calls_of(&s, "complete").is_empty());
    let fails = calls_of(&s, "fail");
    assert_eq!(fails.len(), 1);
    let reason = fails[0]["reason"].as_str().unwrap_or_default();
    assert!(reason.contains("disk-read on gone.raw"), "{reason}");
    let tests = fails[0]["results"]["tests"].as_array().expect("tests");
    assert_eq!(tests.len(), 3, "one result per disk, and memory: {tests:?}");
    assert_eq!(tests[0]["disk"], "disk.raw");
    assert_eq!(tests[0]["status"], "passed");
    assert_eq!(tests[0]["bytes"], 8 * MIB);
    assert!(
        tests[0]["throughput_mib_s"].as_f64().is_some(),
        "{}",
        tests[0]
    );
    assert_eq!(tests[1]["disk"], "gone.raw");
    assert_eq!(tests[1]["status"], "failed");
    // The memory test still ran after the disk failed.
    assert_eq!(tests[2]["name"], "memory");
    assert_eq!(tests[2]["status"], "passed");
    assert!(tests[2]["finished_ms"].as_u64() >= tests[2]["started_ms"].as_u64());
}
