//! The appliance side of network boot and the agent, driven as firmware and the agent drive it:
//! the per-machine iPXE script by status, per-boot tokens, commissioning with an inventory,
//! a deploy that is Deployed only once the deployed OS reports in, failures, and enlistment.

mod common;
mod power_support;

use common::{ADMIN_PASSWORD, Api, Daemon};
use rackbox::model::Status;
use reqwest::Method;
use serde_json::{Value, json};

struct Agent<'a> {
    api: &'a Api,
    token: String,
}

impl Agent<'_> {
    async fn call(&self, method: Method, path: &str, body: Option<Value>) -> (u16, Value) {
        self.api
            .call(
                method,
                &format!("/api/agent/v1/{path}"),
                Some(&self.token),
                body,
            )
            .await
    }
}

async fn script(api: &Api, mac: &str) -> String {
    let r = api
        .http
        .get(format!("{}/boot/{mac}.ipxe", api.url))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let text = r.text().await.unwrap();
    assert!(text.starts_with("#!ipxe\n"), "{text}");
    text
}

fn token_of(script: &str) -> String {
    script
        .split_whitespace()
        .find_map(|w| w.strip_prefix("rackbox.token="))
        .unwrap_or_else(|| panic!("no token in {script}"))
        .to_string()
}

fn inventory(mac: &str) -> Value {
    json!({
        "cpu_count": 2, "memory_mib": 2048, "architecture": "amd64/generic", "firmware": "bios",
        "disks": [{"name": "vda", "size_bytes": 8_589_934_592u64, "model": "QEMU HARDDISK", "serial": "d1",
                   "block_size": 512, "rotational": false, "tags": ["ssd"]}],
        "interfaces": [{"name": "ens3", "mac": mac}]
    })
}

#[tokio::test]
async fn commissioning_through_the_agent_endpoints() {
    let dir = tempfile::tempdir().unwrap();
    let mut m = common::machine("com222", Status::New, 0, 0);
    m.interfaces[0].mac = "52:54:00:aa:bb:01".into();
    common::seed(dir.path(), vec![m]);
    let daemon = Daemon::start_in(dir.path(), "");
    let api = Api::new(&daemon.url);
    let admin = api.login("admin", ADMIN_PASSWORD).await;

    // Before any work, the machine boots its disk.
    assert!(
        script(&api, "52:54:00:aa:bb:01")
            .await
            .contains("sanboot --no-describe --drive 0x80")
    );
    let (s, _) = api
        .call(
            Method::POST,
            "/api/v1/machines/com222/actions/commission",
            Some(&admin),
            Some(json!({})),
        )
        .await;
    assert_eq!(s, 200);

    let first = script(&api, "52-54-00-AA-BB-01").await;
    assert!(
        first.contains("/boot-resources/amd64/vmlinuz") && first.contains("initrd=initrd.img"),
        "{first}"
    );
    assert!(first.contains("rackbox.system_id=com222"), "{first}");
    let old = Agent {
        api: &api,
        token: token_of(&first),
    };
    // Each boot has its own token: the previous one stops working.
    let agent = Agent {
        api: &api,
        token: token_of(&script(&api, "52:54:00:aa:bb:01").await),
    };
    assert_ne!(old.token, agent.token);
    let (s, _) = old.call(Method::GET, "task", None).await;
    assert_eq!(s, 401, "an old boot's token is refused");
    let (s, _) = Agent {
        api: &api,
        token: "rbt_com222_forged".into(),
    }
    .call(Method::GET, "task", None)
    .await;
    assert_eq!(s, 401);

    let (s, task) = agent.call(Method::GET, "task", None).await;
    assert_eq!(s, 200);
    assert_eq!(task["task"], "commission");
    let (s, _) = agent
        .call(
            Method::POST,
            "progress",
            Some(json!({"message": "reading /sys", "percent": 50.0})),
        )
        .await;
    assert_eq!(s, 204);
    let (s, _) = agent
        .call(
            Method::POST,
            "inventory",
            Some(inventory("52:54:00:aa:bb:01")),
        )
        .await;
    assert_eq!(s, 204);
    let (s, v) = agent
        .call(
            Method::POST,
            "complete",
            Some(json!({"message": "commissioned"})),
        )
        .await;
    assert_eq!(s, 200, "{v}");
    assert_eq!(v["status"], "ready");
    let (_, m) = api
        .call(Method::GET, "/api/v1/machines/com222", Some(&admin), None)
        .await;
    assert_eq!(m["status"], "ready");
    assert_eq!(m["cpu_count"], 2);
    assert_eq!(m["memory_mib"], 2048);
    assert_eq!(m["disks"][0]["size_bytes"], 8_589_934_592u64);
    assert_eq!(m["inventory"]["firmware"], "bios");
    // The API shows the boot as what it was handed out for, never its token's hash, and none
    // of the record's bookkeeping; list items leave the inventory out.
    assert_eq!(
        m["boot"],
        json!({"issued_for": "commissioning", "over": true}),
        "{m}"
    );
    let (_, page) = api
        .call(Method::GET, "/api/v1/machines", Some(&admin), None)
        .await;
    let item = &page["items"][0];
    assert_eq!(item["system_id"], "com222", "{page}");
    assert!(item.get("inventory").is_none(), "{item}");
    assert_eq!(item["boot"], m["boot"]);
    let hash = {
        use sha2::Digest;
        format!("{:x}", sha2::Sha256::digest(agent.token.as_bytes()))
    };
    for shown in [&m, item] {
        let text = shown.to_string();
        for internal in [
            "boot_session",
            "token_sha256",
            "status_deadline_ms",
            "deploy_written",
            &hash,
        ] {
            assert!(!text.contains(internal), "{internal} shown: {text}");
        }
    }
    // Its agent asks what next: a Ready machine powers off. A report about work that is over
    // is refused with the machine's status.
    let (s, task) = agent.call(Method::GET, "task", None).await;
    assert_eq!(s, 200);
    assert_eq!(task["task"], "poweroff");
    let (s, _) = agent.call(Method::POST, "complete", Some(json!({}))).await;
    assert_eq!(s, 409);
    let (s, _) = agent
        .call(
            Method::POST,
            "inventory",
            Some(inventory("52:54:00:aa:bb:01")),
        )
        .await;
    assert_eq!(s, 409, "no inventory outside commissioning");
}

#[tokio::test]
async fn deploy_is_done_only_when_the_deployed_os_reports_in() {
    let dir = tempfile::tempdir().unwrap();
    let mut m = common::machine("dep222", Status::Ready, 2, 2048);
    m.interfaces[0].mac = "52:54:00:aa:bb:02".into();
    let mut nothing = common::machine("noi222", Status::Ready, 2, 2048);
    nothing.interfaces[0].mac = "52:54:00:aa:bb:03".into();
    nothing.architecture = "arm64/generic".into();
    common::seed(dir.path(), vec![m, nothing]);
    let daemon = Daemon::start_in(dir.path(), "");
    let api = Api::new(&daemon.url);
    let admin = api.login("admin", ADMIN_PASSWORD).await;
    let image = vec![7u8; 100_000];
    let r = api
        .http
        .post(format!(
            "{}/api/v1/images?name=testos&os=debian&release=bookworm&arch=amd64",
            api.url
        ))
        .bearer_auth(&admin)
        .body(image.clone())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201);
    let key = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIdeployedkey000000 admin@x";
    let (s, _) = api
        .call(
            Method::POST,
            "/api/v1/users/admin/sshkeys",
            Some(&admin),
            Some(json!({"key": key})),
        )
        .await;
    assert_eq!(s, 201);
    let (s, _) = api
        .call(
            Method::POST,
            "/api/v1/machines/dep222/actions/deploy",
            Some(&admin),
            Some(json!({"user_data": "#cloud-config\n"})),
        )
        .await;
    assert_eq!(s, 200);
    let agent = Agent {
        api: &api,
        token: token_of(&script(&api, "52:54:00:aa:bb:02").await),
    };
    let (_, task) = agent.call(Method::GET, "task", None).await;
    assert_eq!(task["task"], "deploy", "{task}");
    assert_eq!(task["image_format"], "raw");
    assert_eq!(task["hostname"], "host-dep222");
    assert_eq!(task["ssh_keys"][0], key);
    assert_eq!(task["user_data"], "#cloud-config\n");
    let got = api
        .http
        .get(task["image_url"].as_str().unwrap())
        .send()
        .await
        .unwrap()
        .bytes()
        .await
        .unwrap();
    assert_eq!(
        got.as_ref(),
        image.as_slice(),
        "the image URL serves the image"
    );
    let (_, v) = agent
        .call(
            Method::POST,
            "complete",
            Some(json!({"message": "image written"})),
        )
        .await;
    assert_eq!(
        v["status"], "deploying",
        "writing the image is not the end of a deploy"
    );
    // The deployed OS has not reported: the machine boots its disk now and stays Deploying.
    assert!(script(&api, "52:54:00:aa:bb:02").await.contains("sanboot"));
    let (_, m) = api
        .call(Method::GET, "/api/v1/machines/dep222", Some(&admin), None)
        .await;
    assert_eq!(m["status"], "deploying");
    let reporter = Agent {
        api: &api,
        token: task["report_token"].as_str().unwrap().to_string(),
    };
    let (s, v) = reporter
        .call(
            Method::POST,
            "deployed",
            Some(json!({"message": "booted testos"})),
        )
        .await;
    assert_eq!(s, 200, "{v}");
    assert_eq!(v["status"], "deployed");

    // A deploy with no image for the machine's architecture fails with the reason.
    let (s, _) = api
        .call(
            Method::POST,
            "/api/v1/machines/noi222/actions/deploy",
            Some(&admin),
            Some(json!({})),
        )
        .await;
    assert_eq!(s, 200);
    let agent = Agent {
        api: &api,
        token: token_of(&script(&api, "52:54:00:aa:bb:03").await),
    };
    let (s, _) = agent.call(Method::GET, "task", None).await;
    assert_eq!(s, 409);
    let (_, m) = api
        .call(Method::GET, "/api/v1/machines/noi222", Some(&admin), None)
        .await;
    assert_eq!(m["status"], "failed_deployment");
    assert!(
        m["status_message"].as_str().unwrap().contains("no image"),
        "{m}"
    );
}

#[tokio::test]
async fn an_agent_failure_fails_the_machine_with_the_reason() {
    let dir = tempfile::tempdir().unwrap();
    let mut m = common::machine("era222", Status::Allocated, 2, 2048);
    m.owner = Some("admin".into());
    m.interfaces[0].mac = "52:54:00:aa:bb:04".into();
    common::seed(dir.path(), vec![m]);
    let daemon = Daemon::start_in(dir.path(), "");
    let api = Api::new(&daemon.url);
    let admin = api.login("admin", ADMIN_PASSWORD).await;
    let (s, _) = api
        .call(
            Method::POST,
            "/api/v1/machines/era222/actions/release",
            Some(&admin),
            Some(json!({"erase": "full"})),
        )
        .await;
    assert_eq!(s, 200);
    let agent = Agent {
        api: &api,
        token: token_of(&script(&api, "52:54:00:aa:bb:04").await),
    };
    let (_, task) = agent.call(Method::GET, "task", None).await;
    assert_eq!(task, json!({"task": "erase", "mode": "full"}));
    let (s, v) = agent
        .call(
            Method::POST,
            "fail",
            Some(json!({"reason": "write error on /dev/vda at 4096: EIO"})),
        )
        .await;
    assert_eq!(s, 200, "{v}");
    let (_, m) = api
        .call(Method::GET, "/api/v1/machines/era222", Some(&admin), None)
        .await;
    assert_eq!(m["status"], "failed_disk_erasing");
    assert!(m["status_message"].as_str().unwrap().contains("EIO"));
}

#[tokio::test]
async fn an_unknown_machine_is_enlisted() {
    let daemon = Daemon::start();
    let api = Api::new(&daemon.url);
    let admin = api.login("admin", ADMIN_PASSWORD).await;
    // UEFI HTTP boot clients fetch their loader from /boot/<loader>.
    let loader = b"MZ-not-really-snponly".to_vec();
    let r = api
        .http
        .post(format!(
            "{}/api/v1/boot-resources?arch=amd64&name=snponly.efi&kind=bootloader",
            api.url
        ))
        .bearer_auth(&admin)
        .body(loader.clone())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201, "{}", r.text().await.unwrap());
    let got = api
        .http
        .get(format!("{}/boot/snponly.efi", api.url))
        .send()
        .await
        .unwrap();
    assert_eq!(got.status(), 200);
    assert_eq!(got.bytes().await.unwrap().as_ref(), loader.as_slice());
    assert_eq!(
        api.http
            .get(format!("{}/boot/nosuch.efi", api.url))
            .send()
            .await
            .unwrap()
            .status(),
        404
    );
    let s = script(&api, "52:54:00:aa:bb:05").await;
    assert!(
        s.contains("rackbox.enlist=1") && !s.contains("rackbox.token"),
        "{s}"
    );
    // The agent enlists with a key of its own (what `rackbox agent` sends once per boot).
    let enlist = |key: Option<&'static str>| {
        let mut req = api
            .http
            .post(format!("{}/api/agent/v1/enlist", api.url))
            .json(&inventory("52:54:00:aa:bb:05"));
        if let Some(k) = key {
            req = req.header(rackbox::model::ENLIST_KEY_HEADER, k);
        }
        async move {
            let r = req.send().await.unwrap();
            let status = r.status().as_u16();
            (status, r.json::<Value>().await.unwrap_or(Value::Null))
        }
    };
    let key = "enlistment-key-of-this-boot-0001";
    let (st, v) = enlist(Some(key)).await;
    assert_eq!(st, 200, "{v}");
    let id = v["system_id"].as_str().unwrap().to_string();
    let (_, m) = api
        .call(
            Method::GET,
            &format!("/api/v1/machines/{id}"),
            Some(&admin),
            None,
        )
        .await;
    assert_eq!(m["status"], "new");
    assert_eq!(m["interfaces"][0]["mac"], "52:54:00:aa:bb:05");
    assert_eq!(m["cpu_count"], 2);
    // Anyone else naming that MAC is refused: it is a known machine now.
    let (st, other) = enlist(None).await;
    assert_eq!(st, 409, "{other}");
    assert!(other.get("token").is_none(), "{other}");
    // The same agent repeating the call (it lost the answer) is the same machine, with a new
    // boot token: the first one is gone, the new one works.
    let (st, again) = enlist(Some(key)).await;
    assert_eq!(st, 200, "{again}");
    assert_eq!(again["system_id"], id.as_str());
    let stale = Agent {
        api: &api,
        token: v["token"].as_str().unwrap().to_string(),
    };
    assert_eq!(stale.call(Method::GET, "task", None).await.0, 401);
    // Its agent has nothing to do: power off.
    let agent = Agent {
        api: &api,
        token: again["token"].as_str().unwrap().to_string(),
    };
    let (_, task) = agent.call(Method::GET, "task", None).await;
    assert_eq!(task["task"], "poweroff");
}

#[tokio::test]
async fn rescue_mode_gives_the_owner_keys_and_exit_returns_to_the_previous_status() {
    let dir = tempfile::tempdir().unwrap();
    let mut m = common::machine("res222", Status::Deployed, 2, 2048);
    m.owner = Some("admin".into());
    m.interfaces[0].mac = "52:54:00:aa:bb:07".into();
    common::seed(dir.path(), vec![m]);
    let daemon = Daemon::start_in(dir.path(), "");
    let api = Api::new(&daemon.url);
    let admin = api.login("admin", ADMIN_PASSWORD).await;
    let key = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIGdXlq1d7hVsKX4xP5fF3b8CwJ7K9R1m2n3o4p5q6r7s owner@desk";
    let (s, v) = api
        .call(
            Method::POST,
            "/api/v1/users/admin/sshkeys",
            Some(&admin),
            Some(json!({"key": key})),
        )
        .await;
    assert_eq!(s, 201, "{v}");
    let (s, v) = api
        .call(
            Method::POST,
            "/api/v1/machines/res222/actions/rescue_mode",
            Some(&admin),
            Some(json!({})),
        )
        .await;
    assert_eq!(s, 200, "{v}");
    assert_eq!(v["status"], "entering_rescue_mode");
    let agent = Agent {
        api: &api,
        token: token_of(&script(&api, "52:54:00:aa:bb:07").await),
    };
    let (_, task) = agent.call(Method::GET, "task", None).await;
    assert_eq!(task, json!({"task": "rescue", "ssh_keys": [key]}));
    // The agent reports once its SSH server listens: the machine is in rescue mode.
    let (s, v) = agent
        .call(
            Method::POST,
            "complete",
            Some(json!({"message": "rescue mode: SSH as root on port 22", "results": {"ssh_port": 22}})),
        )
        .await;
    assert_eq!(s, 200, "{v}");
    assert_eq!(v["status"], "rescue_mode");
    // It keeps asking; the task stays rescue, and an agent that started again (the machine
    // rebooted in rescue mode) may report again without moving the machine.
    let (_, task) = agent.call(Method::GET, "task", None).await;
    assert_eq!(task["task"], "rescue");
    let (s, v) = agent
        .call(Method::POST, "complete", Some(json!({"message": "again"})))
        .await;
    assert_eq!((s, v["status"].as_str()), (200, Some("rescue_mode")));

    // Leaving rescue mode: the machine is powered off (by hand here: no power driver) and goes
    // back to Deployed; its agent is told to power off.
    let (s, v) = api
        .call(
            Method::POST,
            "/api/v1/machines/res222/actions/exit_rescue_mode",
            Some(&admin),
            Some(json!({})),
        )
        .await;
    assert_eq!(s, 200, "{v}");
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    let m = loop {
        let (_, m) = api
            .call(Method::GET, "/api/v1/machines/res222", Some(&admin), None)
            .await;
        // The conductor's note (manual power) follows the move to Deployed: wait for both.
        let noted = m["status_message"]
            .as_str()
            .unwrap_or("")
            .contains("switch the machine on by hand");
        if (m["status"] == "deployed" && noted) || std::time::Instant::now() > deadline {
            break m;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    };
    assert_eq!(m["status"], "deployed", "{m}");
    // Back in Deployed its OS is to be started again: with manual power, by hand.
    assert!(
        m["status_message"]
            .as_str()
            .unwrap_or("")
            .contains("switch the machine on by hand"),
        "{m}"
    );
    let (_, task) = agent.call(Method::GET, "task", None).await;
    assert_eq!(task["task"], "poweroff");
    let (s, _) = agent.call(Method::POST, "complete", Some(json!({}))).await;
    assert_eq!(s, 409, "a rescue report after rescue mode is refused");
}

#[tokio::test]
async fn test_results_are_kept_per_machine_and_a_failure_can_be_overridden() {
    let dir = tempfile::tempdir().unwrap();
    let mut m = common::machine("tst222", Status::Ready, 2, 2048);
    m.interfaces[0].mac = "52:54:00:aa:bb:08".into();
    common::seed(dir.path(), vec![m]);
    let daemon = Daemon::start_in(dir.path(), "");
    let api = Api::new(&daemon.url);
    let admin = api.login("admin", ADMIN_PASSWORD).await;
    let results_url = "/api/v1/machines/tst222/test-results";
    let (s, none) = api.call(Method::GET, results_url, Some(&admin), None).await;
    assert_eq!(s, 200);
    assert_eq!(
        none,
        json!({"system_id": "tst222", "recorded_ms": null, "status": null, "results": []}),
        "no run yet"
    );

    let test = || async {
        let (s, v) = api
            .call(
                Method::POST,
                "/api/v1/machines/tst222/actions/test",
                Some(&admin),
                Some(json!({})),
            )
            .await;
        assert_eq!(s, 200, "{v}");
        let agent = Agent {
            api: &api,
            token: token_of(&script(&api, "52:54:00:aa:bb:08").await),
        };
        let (_, task) = agent.call(Method::GET, "task", None).await;
        assert_eq!(task["task"], "test");
        agent
    };
    let memory = json!({"name": "memory", "status": "passed", "started_ms": 10, "finished_ms": 20,
                        "summary": "wrote and read back two patterns over 256 MiB", "bytes": 268435456u64});
    let disk = |status: &str, summary: &str| {
        json!({"name": "disk-read", "status": status, "started_ms": 20, "finished_ms": 90,
               "summary": summary, "disk": "vda", "bytes": 8_589_934_592u64, "throughput_mib_s": 117.2})
    };

    // A failing run: Failed testing with the reason, and every result kept.
    let agent = test().await;
    let (s, v) = agent
        .call(
            Method::POST,
            "fail",
            Some(json!({
                "reason": "test failed: disk-read on vda: /dev/vda: read error at byte 4096: EIO",
                "results": {"tests": [disk("failed", "/dev/vda: read error at byte 4096: EIO"), memory]}
            })),
        )
        .await;
    assert_eq!(s, 200, "{v}");
    assert_eq!(v["status"], "failed_testing");
    let (_, m) = api
        .call(Method::GET, "/api/v1/machines/tst222", Some(&admin), None)
        .await;
    assert!(
        m["status_message"].as_str().unwrap_or("").contains("EIO"),
        "{m}"
    );
    let (s, run) = api.call(Method::GET, results_url, Some(&admin), None).await;
    assert_eq!(s, 200, "{run}");
    assert_eq!(run["system_id"], "tst222");
    assert_eq!(run["status"], "failed");
    assert_eq!(run["results"][0]["disk"], "vda");
    assert_eq!(run["results"][0]["status"], "failed");
    assert_eq!(run["results"][0]["throughput_mib_s"], 117.2);
    assert_eq!(run["results"][1]["name"], "memory");
    assert_eq!(run["results"][1]["status"], "passed");

    // Override, as MAAS does: the machine is Ready again; its results stay.
    let (s, v) = api
        .call(
            Method::POST,
            "/api/v1/machines/tst222/actions/override_failed_testing",
            Some(&admin),
            Some(json!({})),
        )
        .await;
    assert_eq!(s, 200, "{v}");
    assert_eq!(v["status"], "ready");
    let (_, run) = api.call(Method::GET, results_url, Some(&admin), None).await;
    assert_eq!(run["status"], "failed");

    // A "complete" whose results hold a failure is a failure all the same.
    let agent = test().await;
    let (s, v) = agent
        .call(
            Method::POST,
            "complete",
            Some(json!({"message": "2 test(s) passed",
                        "results": {"tests": [disk("failed", "short read"), memory]}})),
        )
        .await;
    assert_eq!(s, 200, "{v}");
    assert_eq!(v["status"], "failed_testing");
    let (_, m) = api
        .call(Method::GET, "/api/v1/machines/tst222", Some(&admin), None)
        .await;
    assert_eq!(
        m["status_message"], "test failed: disk-read on vda: short read",
        "{m}"
    );

    // A passing run replaces the last one and clears Failed testing.
    let agent = test().await;
    let (s, v) = agent
        .call(
            Method::POST,
            "complete",
            Some(json!({"message": "2 test(s) passed",
                        "results": {"tests": [disk("passed", "read all bytes"), memory]}})),
        )
        .await;
    assert_eq!(s, 200, "{v}");
    assert_eq!(v["status"], "ready");
    let (_, run) = api.call(Method::GET, results_url, Some(&admin), None).await;
    assert_eq!(run["status"], "passed");
    assert_eq!(run["results"][0]["status"], "passed");

    // Results of a bad shape are refused and change nothing.
    let agent = test().await;
    let (s, _) = agent
        .call(
            Method::POST,
            "complete",
            Some(json!({"results": {"tests": [{"name": "memory", "status": "great"}]}})),
        )
        .await;
    assert_eq!(s, 400);
    let (_, m) = api
        .call(Method::GET, "/api/v1/machines/tst222", Some(&admin), None)
        .await;
    assert_eq!(m["status"], "testing");
}

/// A deploy whose image blob went bad in the cache (bit rot, a disk error): the real agent,
/// talking to the real daemon, writes it, finds the sha256 wrong and fails; the machine is
/// Failed deployment with the digests in its message and was never called Deployed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_corrupted_image_blob_fails_the_deploy_with_the_reason() {
    let dir = tempfile::tempdir().unwrap();
    let mut m = common::machine("bad222", Status::Allocated, 2, 2048);
    m.owner = Some("admin".into());
    m.interfaces[0].mac = "52:54:00:aa:bb:05".into();
    common::seed(dir.path(), vec![m]);
    let daemon = Daemon::start_in(dir.path(), "");
    let api = Api::new(&daemon.url);
    let admin = api.login("admin", ADMIN_PASSWORD).await;
    let image: Vec<u8> = (0..4 * 1024 * 1024u32).map(|i| (i % 251) as u8).collect();
    let r = api
        .http
        .post(format!(
            "{}/api/v1/images?name=rotten&os=debian&release=bookworm&arch=amd64",
            api.url
        ))
        .bearer_auth(&admin)
        .body(image.clone())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201);
    let sha: String = {
        use sha2::Digest;
        sha2::Sha256::digest(&image)
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect()
    };
    // The cache keeps blobs by digest: flip bytes in the middle of it.
    let blob = find_file(dir.path(), &sha).expect("the image's blob in the cache");
    let mut rotten = std::fs::read(&blob).unwrap();
    for b in &mut rotten[2_000_000..2_000_100] {
        *b ^= 0xff;
    }
    std::fs::write(&blob, &rotten).unwrap();

    let (s, v) = api
        .call(
            Method::POST,
            "/api/v1/machines/bad222/actions/deploy",
            Some(&admin),
            Some(json!({"image": "rotten"})),
        )
        .await;
    assert_eq!(s, 200, "{v}");
    let token = token_of(&script(&api, "52:54:00:aa:bb:05").await);
    let disk = dir.path().join("disk.raw");
    std::fs::File::create(&disk)
        .unwrap()
        .set_len(64 * 1024 * 1024)
        .unwrap();
    let mut cfg = rackbox::agent::AgentConfig::new(daemon.url.clone(), Some(token));
    cfg.devices = vec![disk.clone()];
    cfg.policy.budget = std::time::Duration::from_secs(30);
    // After the failure the machine is Failed deployment: its next task is to power off.
    let outcome = rackbox::agent::run(cfg)
        .await
        .expect("the agent runs to its end");
    assert_eq!(outcome, rackbox::agent::Outcome::PowerOff);

    let (_, m) = api
        .call(Method::GET, "/api/v1/machines/bad222", Some(&admin), None)
        .await;
    assert_eq!(m["status"], "failed_deployment", "{m}");
    let message = m["status_message"].as_str().unwrap_or_default();
    assert!(
        message.contains(&sha),
        "the message names the expected digest: {message}"
    );
    let (_, events) = api
        .call(
            Method::GET,
            "/api/v1/machines/bad222/events",
            Some(&admin),
            None,
        )
        .await;
    let events = events.as_array().cloned().unwrap_or_default();
    assert!(!events.is_empty());
    assert!(
        events.iter().all(|e| e["to"] != "deployed"),
        "never Deployed: {events:?}"
    );
    // The damaged image cannot boot: its partition table area was wiped.
    let written = std::fs::read(&disk).unwrap();
    assert!(written[..1024 * 1024].iter().all(|b| *b == 0));
}

fn find_file(dir: &std::path::Path, name: &str) -> Option<std::path::PathBuf> {
    for entry in std::fs::read_dir(dir).ok()?.flatten() {
        let path = entry.path();
        if path.is_dir() {
            if let Some(found) = find_file(&path, name) {
                return Some(found);
            }
        } else if path.file_name().is_some_and(|n| n == name) {
            return Some(path);
        }
    }
    None
}

/// Boots `mac` for its current work and returns its agent.
async fn agent_of<'a>(api: &'a Api, mac: &str) -> Agent<'a> {
    Agent {
        api,
        token: token_of(&script(api, mac).await),
    }
}

/// Starts commissioning each machine, as an admin would.
async fn commission(api: &Api, admin: &str, ids: &[&str]) {
    for id in ids {
        let (s, v) = api
            .call(
                Method::POST,
                &format!("/api/v1/machines/{id}/actions/commission"),
                Some(admin),
                Some(json!({})),
            )
            .await;
        assert_eq!(s, 200, "{v}");
    }
}

async fn events_text(api: &Api, token: &str, id: &str) -> (Vec<String>, String) {
    let (s, events) = api
        .call(
            Method::GET,
            &format!("/api/v1/machines/{id}/events"),
            Some(token),
            None,
        )
        .await;
    assert_eq!(s, 200, "{events}");
    let actions = events
        .as_array()
        .expect("a list")
        .iter()
        .filter_map(|e| e["action"].as_str().map(str::to_string))
        .collect();
    (actions, events.to_string())
}

/// Commissioning with a BMC: a machine without power settings gets IPMI power settings from the
/// BMC address and the BMC user the agent reports; one with settings keeps them and the
/// discovered BMC is recorded beside them; 0.0.0.0 is no address. The BMC password reaches the
/// power parameters only: not the stored inventory, not the events, and non-admins see it masked.
#[tokio::test]
async fn commissioning_takes_power_settings_from_the_discovered_bmc() {
    const BMC_PASS: &str = "Gen3rated-BMC-pw";
    let dir = tempfile::tempdir().unwrap();
    let mut bare = common::machine("bmc221", Status::New, 0, 0);
    bare.interfaces[0].mac = "52:54:00:bb:00:01".into();
    let mut owned = common::machine("bmc222", Status::New, 0, 0);
    owned.interfaces[0].mac = "52:54:00:bb:00:02".into();
    owned.power = rackbox::model::PowerSettings {
        power_type: Some(rackbox::model::PowerType::Command),
        parameters: json!({"power_on_command": "true", "power_off_command": "true"})
            .as_object()
            .cloned()
            .unwrap(),
    };
    let mut dark = common::machine("bmc223", Status::New, 0, 0);
    dark.interfaces[0].mac = "52:54:00:bb:00:03".into();
    common::seed(dir.path(), vec![bare, owned, dark]);
    let daemon = Daemon::start_in(dir.path(), "");
    let api = Api::new(&daemon.url);
    let admin = api.login("admin", ADMIN_PASSWORD).await;
    let (s, _) = api
        .call(
            Method::POST,
            "/api/v1/users",
            Some(&admin),
            Some(json!({"username": "carol", "password": "password123"})),
        )
        .await;
    assert_eq!(s, 201);
    let carol = api.login("carol", "password123").await;
    commission(&api, &admin, &["bmc221", "bmc222", "bmc223"]).await;
    // The BMC address is loopback: the power sync that follows speaks to nothing outside.
    let with_bmc = |mac: &str, ip: &str, credentials: bool| {
        let mut inv = inventory(mac);
        inv["bmc"] = json!({
            "present": true, "ipmi_device": true, "smbios_ipmi": null,
            "lan": {"channel": 1, "ip_address": ip, "ip_source": "static", "netmask": "255.0.0.0",
                    "gateway": "0.0.0.0", "mac": "52:54:00:bb:10:01", "vlan": null},
        });
        if credentials {
            inv["bmc"]["credentials"] = json!({"username": "maas", "password": BMC_PASS});
        }
        inv
    };

    // No power settings: the agent is asked for a BMC user, and its BMC becomes the power.
    let agent = agent_of(&api, "52:54:00:bb:00:01").await;
    let (_, task) = agent.call(Method::GET, "task", None).await;
    assert_eq!(task, json!({"task": "commission", "create_bmc_user": true}));
    let (s, v) = agent
        .call(
            Method::POST,
            "inventory",
            Some(with_bmc("52:54:00:bb:00:01", "127.0.0.1", true)),
        )
        .await;
    assert_eq!(s, 204, "{v}");
    let (_, m) = api
        .call(Method::GET, "/api/v1/machines/bmc221", Some(&admin), None)
        .await;
    assert_eq!(m["power"]["power_type"], "ipmi", "{m}");
    let p = &m["power"]["parameters"];
    assert_eq!(p["power_address"], "127.0.0.1");
    assert_eq!(p["power_user"], "maas");
    assert_eq!(p["power_pass"], BMC_PASS, "admins see it");
    assert_eq!(m["discovered_bmc"]["address"], "127.0.0.1");
    assert_eq!(m["discovered_bmc"]["user"], "maas");
    assert_eq!(m["discovered_bmc"]["applied"], true);
    assert_eq!(m["inventory"]["bmc"]["lan"]["ip_address"], "127.0.0.1");
    assert!(
        m["inventory"]["bmc"].get("credentials").is_none(),
        "the stored inventory keeps no credentials: {}",
        m["inventory"]["bmc"]
    );
    let (_, seen) = api
        .call(Method::GET, "/api/v1/machines/bmc221", Some(&carol), None)
        .await;
    assert_eq!(seen["power"]["parameters"]["power_pass"], "********");
    assert!(!seen.to_string().contains(BMC_PASS), "{seen}");
    let (actions, text) = events_text(&api, &admin, "bmc221").await;
    assert!(actions.iter().any(|a| a == "bmc_discovered"), "{actions:?}");
    assert!(
        text.contains("BMC discovered at 127.0.0.1") && text.contains("BMC user maas"),
        "{text}"
    );
    assert!(
        !text.contains(BMC_PASS),
        "the password is in an event: {text}"
    );

    // Power settings of its own: no BMC user asked for; the discovered BMC is recorded and the
    // settings are kept (even if an agent sends credentials anyway).
    let agent = agent_of(&api, "52:54:00:bb:00:02").await;
    let (_, task) = agent.call(Method::GET, "task", None).await;
    assert_eq!(
        task,
        json!({"task": "commission", "create_bmc_user": false})
    );
    let (s, _) = agent
        .call(
            Method::POST,
            "inventory",
            Some(with_bmc("52:54:00:bb:00:02", "127.0.0.2", true)),
        )
        .await;
    assert_eq!(s, 204);
    let (_, m) = api
        .call(Method::GET, "/api/v1/machines/bmc222", Some(&admin), None)
        .await;
    assert_eq!(m["power"]["power_type"], "command", "{m}");
    assert_eq!(m["power"]["parameters"]["power_on_command"], "true");
    assert!(m["power"]["parameters"].get("power_pass").is_none());
    assert_eq!(m["discovered_bmc"]["address"], "127.0.0.2");
    assert_eq!(m["discovered_bmc"]["applied"], false);
    assert!(!m.to_string().contains(BMC_PASS), "{m}");
    let (_, text) = events_text(&api, &admin, "bmc222").await;
    assert!(
        text.contains("BMC discovered at 127.0.0.2") && text.contains("are kept"),
        "{text}"
    );

    // A BMC whose LAN has no address: nothing to take, nothing recorded.
    let agent = agent_of(&api, "52:54:00:bb:00:03").await;
    let (s, _) = agent
        .call(
            Method::POST,
            "inventory",
            Some(with_bmc("52:54:00:bb:00:03", "0.0.0.0", false)),
        )
        .await;
    assert_eq!(s, 204);
    let (_, m) = api
        .call(Method::GET, "/api/v1/machines/bmc223", Some(&admin), None)
        .await;
    assert_eq!(m["power"]["power_type"], "", "{m}");
    assert!(m["discovered_bmc"].is_null(), "{m}");
    let (actions, _) = events_text(&api, &admin, "bmc223").await;
    assert!(
        !actions.iter().any(|a| a == "bmc_discovered"),
        "{actions:?}"
    );
}

/// Commissioning finds a Redfish BMC through the host interface (and an IPMI LAN channel as
/// well): Redfish power comes first, as in MAAS, with the system the service named and its
/// certificate pinned. Asking the BMC through those settings then works against sushy-tools'
/// emulator, which listens with a self-signed certificate on port 443 of a loopback address of
/// its own, as a BMC does on its management address. A host-interface error with only an IPMI
/// LAN channel leaves IPMI power and says what went wrong.
#[tokio::test]
async fn commissioning_prefers_the_redfish_bmc_and_pins_its_certificate() {
    const SYSTEM: &str = "7d3e8f10-5a2b-4c6d-8e9f-0a1b2c3d4e5f";
    let address = format!("127.88.{}.1", std::process::id() % 250);
    let sushy = power_support::Sushy::start_with(power_support::SushyOptions {
        tls: true,
        auth: true,
        listen: Some((address.clone(), 443)),
        systems: vec!["7d3e8f10-5a2b-4c6d-8e9f-000000000001".into(), SYSTEM.into()],
        ..Default::default()
    });
    let dir = tempfile::tempdir().unwrap();
    let mut found = common::machine("bmc231", Status::New, 0, 0);
    found.interfaces[0].mac = "52:54:00:bb:00:31".into();
    let mut ipmi_only = common::machine("bmc232", Status::New, 0, 0);
    ipmi_only.interfaces[0].mac = "52:54:00:bb:00:32".into();
    common::seed(dir.path(), vec![found, ipmi_only]);
    let daemon = Daemon::start_in(dir.path(), "");
    let api = Api::new(&daemon.url);
    let admin = api.login("admin", ADMIN_PASSWORD).await;
    commission(&api, &admin, &["bmc231", "bmc232"]).await;
    let with_bmc = |mac: &str, redfish: Value| {
        let mut inv = inventory(mac);
        inv["bmc"] = json!({
            "present": true, "ipmi_device": true, "smbios_ipmi": null,
            "lan": {"channel": 1, "ip_address": "127.0.0.1", "ip_source": "static",
                    "netmask": "255.0.0.0", "gateway": "0.0.0.0", "mac": "52:54:00:bb:10:31",
                    "vlan": null},
            "redfish_host_interface": {"service_address": "169.254.95.118", "service_port": 443,
                    "service_hostname": "", "ip_discovery": "static", "vlan": 0},
            "redfish": redfish,
            "credentials": {"username": power_support::USER, "password": power_support::PASSWORD},
        });
        inv
    };

    let agent = agent_of(&api, "52:54:00:bb:00:31").await;
    let (s, v) = agent
        .call(
            Method::POST,
            "inventory",
            Some(with_bmc(
                "52:54:00:bb:00:31",
                json!({"host_nic": "usb0", "service_url": "https://169.254.95.118:443",
                       "manager_id": SYSTEM, "system_id": SYSTEM, "address": address,
                       "certificate_sha256": sushy.cert_sha256(), "error": null}),
            )),
        )
        .await;
    assert_eq!(s, 204, "{v}");
    let (_, m) = api
        .call(Method::GET, "/api/v1/machines/bmc231", Some(&admin), None)
        .await;
    assert_eq!(m["power"]["power_type"], "redfish", "{m}");
    let p = &m["power"]["parameters"];
    assert_eq!(p["power_address"], address.as_str());
    assert_eq!(p["node_id"], SYSTEM);
    assert_eq!(p["certificate_sha256"], sushy.cert_sha256());
    assert_eq!(p["power_user"], power_support::USER);
    assert!(p.get("insecure_skip_verify").is_none(), "{p}");
    assert_eq!(m["discovered_bmc"]["power_type"], "redfish");
    assert_eq!(m["discovered_bmc"]["address"], address.as_str());
    assert_eq!(m["discovered_bmc"]["applied"], true);
    let (_, text) = events_text(&api, &admin, "bmc231").await;
    assert!(
        text.contains(&format!("Redfish BMC discovered at {address}"))
            && text.contains("power set to redfish"),
        "{text}"
    );
    assert!(!text.contains(power_support::PASSWORD), "{text}");
    // The settings work: the BMC is asked, through the pinned certificate, for this system.
    let (s, v) = api
        .call(
            Method::GET,
            "/api/v1/machines/bmc231/power",
            Some(&admin),
            None,
        )
        .await;
    assert_eq!(s, 200, "{v}\n{}", sushy.log());
    assert_eq!(v["state"], "off", "{v}");

    // The host interface failed; the IPMI LAN channel is used, and the event says why.
    let agent = agent_of(&api, "52:54:00:bb:00:32").await;
    let (s, v) = agent
        .call(
            Method::POST,
            "inventory",
            Some(with_bmc(
                "52:54:00:bb:00:32",
                json!({"host_nic": "usb0", "service_url": "https://169.254.95.118:443",
                       "manager_id": "", "system_id": "", "address": "",
                       "certificate_sha256": "",
                       "error": "the Redfish service at https://169.254.95.118:443: GET /redfish/v1/Systems answered 401 Unauthorized"}),
            )),
        )
        .await;
    assert_eq!(s, 204, "{v}");
    let (_, m) = api
        .call(Method::GET, "/api/v1/machines/bmc232", Some(&admin), None)
        .await;
    assert_eq!(m["power"]["power_type"], "ipmi", "{m}");
    assert_eq!(m["discovered_bmc"]["power_type"], "ipmi");
    let (_, text) = events_text(&api, &admin, "bmc232").await;
    assert!(
        text.contains("BMC discovered at 127.0.0.1") && text.contains("answered 401"),
        "{text}"
    );
}
