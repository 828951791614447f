//! The agent API against someone who is not the agent (issue 13): the attacks of the issue,
//! each against a real `rackbox serve` over HTTP, and the real agent's enlistment beside them.
//!
//! - Enlisting a known MAC gets no token, whatever the machine's status, and the real agent's
//!   token still works; the enlisting agent itself, repeating the call after a lost answer,
//!   is recognised by its enlistment key (and only while its boot lasts).
//! - A boot token serves the work it was handed out for: reports in Ready or Deployed, or from
//!   a finished boot in a later phase, are 409 with the machine's status, and a finished boot
//!   reads no later task (no user data, no keys, no report token).
//! - Anonymous enlistment is bounded: inventory size (413), rate per source (429), New
//!   machines (507).

mod common;

use std::net::IpAddr;
use std::path::Path;
use std::time::Duration;

use common::{ADMIN_PASSWORD, Api, Daemon};
use rackbox::model::{ENLIST_KEY_HEADER, Status};
use reqwest::Method;
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

fn inventory(mac: &str) -> Value {
    json!({
        "cpu_count": 2, "memory_mib": 2048, "architecture": "amd64/generic", "firmware": "bios",
        "disks": [{"name": "vda", "size_bytes": 8_589_934_592u64, "model": "QEMU HARDDISK", "serial": "d1",
                   "block_size": 512, "rotational": false, "tags": ["ssd"]}],
        "interfaces": [{"name": "eth0", "mac": mac}]
    })
}

/// An API client whose connections come from `source` (any 127/8 address is this host's).
fn api_from(url: &str, source: &str) -> Api {
    let mut api = Api::new(url);
    api.http = reqwest::Client::builder()
        .local_address(source.parse::<IpAddr>().ok())
        .build()
        .expect("client");
    api
}

/// `POST /api/agent/v1/enlist`, anonymous, with an enlistment key when given. Answers the
/// status, the Retry-After header and the body.
async fn enlist(api: &Api, body: &Value, key: Option<&str>) -> (u16, Option<String>, Value) {
    let mut req = api
        .http
        .post(format!("{}/api/agent/v1/enlist", api.url))
        .json(body);
    if let Some(k) = key {
        req = req.header(ENLIST_KEY_HEADER, k);
    }
    let r = req.send().await.expect("enlist answered");
    let status = r.status().as_u16();
    let retry_after = r
        .headers()
        .get("retry-after")
        .and_then(|v| v.to_str().ok())
        .map(str::to_string);
    let text = r.text().await.unwrap_or_default();
    let v = serde_json::from_str(&text).unwrap_or(Value::String(text));
    (status, retry_after, v)
}

/// A call of the agent API with a boot token.
async fn agent(
    api: &Api,
    token: &str,
    method: Method,
    path: &str,
    body: Option<Value>,
) -> (u16, Value) {
    api.call(method, &format!("/api/agent/v1/{path}"), Some(token), body)
        .await
}

/// The token of the boot the iPXE script of `mac` hands out (what the real agent boots with).
async fn boot(api: &Api, mac: &str) -> String {
    let text = api
        .http
        .get(format!("{}/boot/{mac}.ipxe", api.url))
        .send()
        .await
        .expect("script")
        .text()
        .await
        .expect("text");
    text.split_whitespace()
        .find_map(|w| w.strip_prefix("rackbox.token="))
        .unwrap_or_else(|| panic!("no token in {text}"))
        .to_string()
}

async fn machine(api: &Api, admin: &str, id: &str) -> Value {
    let (s, m) = api
        .call(
            Method::GET,
            &format!("/api/v1/machines/{id}"),
            Some(admin),
            None,
        )
        .await;
    assert_eq!(s, 200, "{m}");
    m
}

async fn action(api: &Api, admin: &str, id: &str, action: &str, body: Value) -> Value {
    let (s, v) = api
        .call(
            Method::POST,
            &format!("/api/v1/machines/{id}/actions/{action}"),
            Some(admin),
            Some(body),
        )
        .await;
    assert_eq!(s, 200, "{action} {id}: {v}");
    v
}

/// Waits (bounded) until the machine's status message says `what`.
async fn wait_for_message(api: &Api, admin: &str, id: &str, what: &str) {
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    loop {
        let m = machine(api, admin, id).await;
        if m["status_message"]
            .as_str()
            .unwrap_or_default()
            .contains(what)
        {
            return;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "{id} never said {what:?}: {m}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn machine_count(api: &Api, admin: &str) -> u64 {
    let (_, page) = api
        .call(Method::GET, "/api/v1/machines?limit=0", Some(admin), None)
        .await;
    page["total"].as_u64().expect("total")
}

/// Asserts a 409 that names the machine's status.
fn refused_with_status(got: (u16, Value), status: &str, what: &str) {
    assert_eq!(got.0, 409, "{what}: {}", got.1);
    assert_eq!(got.1["status"], status, "{what}: {}", got.1);
}

/// The first attack: enlisting a known MAC, in New, Commissioning (with its real agent
/// booted), Ready and Deployed. Each is refused with no token, and nothing changes: the real
/// agent's token still works and reads its task, the records are as they were.
#[tokio::test]
async fn enlisting_a_known_mac_gets_no_token_and_the_real_agent_keeps_its_own() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut fresh = common::machine("new301", Status::New, 0, 0);
    fresh.interfaces[0].mac = "52:54:00:cc:00:01".into();
    let mut busy = common::machine("com301", Status::New, 0, 0);
    busy.interfaces[0].mac = "52:54:00:cc:00:02".into();
    let mut ready = common::machine("rdy301", Status::Ready, 4, 8192);
    ready.interfaces[0].mac = "52:54:00:cc:00:03".into();
    let mut deployed = common::machine("dep301", Status::Deployed, 4, 8192);
    deployed.owner = Some("admin".into());
    deployed.interfaces[0].mac = "52:54:00:cc:00:04".into();
    common::seed(dir.path(), vec![fresh, busy, ready, deployed]);
    let daemon = Daemon::start_in(dir.path(), "");
    let api = Api::new(&daemon.url);
    let admin = api.login("admin", ADMIN_PASSWORD).await;
    action(&api, &admin, "com301", "commission", json!({})).await;
    let real = boot(&api, "52:54:00:cc:00:02").await;
    // The conductor's note for manual power ("switch the machine on by hand") comes first.
    wait_for_message(&api, &admin, "com301", "by hand").await;
    let before = machines(&api, &admin, &["new301", "com301", "rdy301", "dep301"]).await;

    // From four sources (one bucket each: the rate limit is not what refuses them).
    for (i, mac) in [
        "52:54:00:cc:00:01",
        "52:54:00:cc:00:02",
        "52:54:00:cc:00:03",
        "52:54:00:cc:00:04",
    ]
    .into_iter()
    .enumerate()
    {
        let probe = api_from(&daemon.url, &format!("127.0.0.{}", 10 + i));
        // As in the issue: a minimal inventory naming the MAC, upper-case or not, with or
        // without a key of the caller's own.
        let body = json!({"architecture": "amd64/generic",
                          "interfaces": [{"name": "eth0", "mac": mac.to_uppercase()}]});
        for key in [None, Some("a-key-of-the-probes-own-0001")] {
            let (s, _, v) = enlist(&probe, &body, key).await;
            assert_eq!(s, 409, "{mac}: {v}");
            assert!(
                v.get("token").is_none(),
                "{mac}: a token was handed out: {v}"
            );
            let message = v["message"].as_str().unwrap_or_default();
            assert!(message.contains("known to rackbox already"), "{message}");
            assert!(!v.to_string().contains("rbt_"), "{v}");
        }
    }

    // The real agent of the commissioning machine goes on with its own token.
    let (s, task) = agent(&api, &real, Method::GET, "task", None).await;
    assert_eq!(
        (s, task["task"].as_str()),
        (200, Some("commission")),
        "{task}"
    );
    let after = machines(&api, &admin, &["new301", "com301", "rdy301", "dep301"]).await;
    for (b, a) in before.iter().zip(&after) {
        assert_eq!(b, a, "the machine changed");
    }
    let (s, _) = agent(
        &api,
        &real,
        Method::POST,
        "inventory",
        Some(inventory("52:54:00:cc:00:02")),
    )
    .await;
    assert_eq!(s, 204);
    let (s, v) = agent(
        &api,
        &real,
        Method::POST,
        "complete",
        Some(json!({"message": "done"})),
    )
    .await;
    assert_eq!((s, v["status"].as_str()), (200, Some("ready")), "{v}");
}

/// What an attack must not change: the machines' status and message, their hardware and
/// power, and their boots (background work such as the conductor's status message for manual
/// power may still bump a generation meanwhile). A boot shows as what it was handed out for
/// and whether it is over (the API never shows its token's hash); a boot replaced by another
/// for the same status would also stop the old token, which each attack test still uses
/// afterwards and finds answered.
async fn machines(api: &Api, admin: &str, ids: &[&str]) -> Vec<Value> {
    let mut all = Vec::new();
    for id in ids {
        all.push(essentials(&machine(api, admin, id).await));
    }
    all
}

fn essentials(m: &Value) -> Value {
    json!({
        "status": m["status"], "status_message": m["status_message"],
        "cpu_count": m["cpu_count"], "memory_mib": m["memory_mib"], "disks": m["disks"],
        "interfaces": m["interfaces"], "inventory": m["inventory"], "power": m["power"],
        "discovered_bmc": m["discovered_bmc"], "boot": m["boot"],
    })
}

/// The enlisting agent repeats `/enlist` because it lost the answer: with its key it gets its
/// machine again and a fresh token (the lost one stops working). Without the key, with another
/// key, or once the boot it enlisted from is over, it is refused like anyone else.
#[tokio::test]
async fn a_repeated_enlistment_needs_the_first_callers_key_and_its_boot() {
    let dir = tempfile::tempdir().expect("tempdir");
    let daemon = Daemon::start_in(dir.path(), "[lifecycle]\nenlist_burst = 50\n");
    let api = Api::new(&daemon.url);
    let admin = api.login("admin", ADMIN_PASSWORD).await;
    let key = "Q2VsbG8tdGhpcy1pcy1hLWtleQ-0001";
    let body = inventory("52:54:00:cc:01:01");
    let (s, _, first) = enlist(&api, &body, Some(key)).await;
    assert_eq!(s, 200, "{first}");
    let id = first["system_id"].as_str().expect("id").to_string();
    let lost = first["token"].as_str().expect("token").to_string();

    let (s, _, again) = enlist(&api, &body, Some(key)).await;
    assert_eq!(s, 200, "{again}");
    assert_eq!(again["system_id"], id.as_str(), "the same machine");
    let token = again["token"].as_str().expect("token").to_string();
    assert_ne!(token, lost);
    assert_eq!(agent(&api, &lost, Method::GET, "task", None).await.0, 401);
    let (s, task) = agent(&api, &token, Method::GET, "task", None).await;
    assert_eq!((s, task["task"].as_str()), (200, Some("poweroff")));
    assert_eq!(machine_count(&api, &admin).await, 1);

    for other in [None, Some("another-key-entirely-0000001")] {
        let (s, _, v) = enlist(&api, &body, other).await;
        assert_eq!(s, 409, "{other:?}: {v}");
        assert!(v.get("token").is_none(), "{v}");
    }
    assert_eq!(agent(&api, &token, Method::GET, "task", None).await.0, 200);

    // The admin commissions it: the enlistment boot is over, and so is its key.
    action(&api, &admin, &id, "commission", json!({})).await;
    let (s, _, v) = enlist(&api, &body, Some(key)).await;
    assert_eq!(s, 409, "{v}");
    let (s, task) = agent(&api, &token, Method::GET, "task", None).await;
    assert_eq!(
        (s, task["task"].as_str()),
        (200, Some("poweroff")),
        "the enlistment boot does not commission: its network boot does"
    );
    refused_with_status(
        agent(&api, &token, Method::POST, "inventory", Some(body.clone())).await,
        "commissioning",
        "inventory from the enlistment boot",
    );
    assert_eq!(machine(&api, &admin, &id).await["status"], "commissioning");
}

/// `commission_enlisted`: the enlistment boot goes on to commission (with manual power nobody
/// else would boot the machine): its agent's next task is the commissioning, and it reports.
#[tokio::test]
async fn with_commission_enlisted_the_enlistment_boot_commissions() {
    let dir = tempfile::tempdir().expect("tempdir");
    let daemon = Daemon::start_in(dir.path(), "[lifecycle]\ncommission_enlisted = true\n");
    let api = Api::new(&daemon.url);
    let admin = api.login("admin", ADMIN_PASSWORD).await;
    let mac = "52:54:00:cc:01:02";
    let (s, _, v) = enlist(&api, &inventory(mac), Some("commission-enlisted-key-01")).await;
    assert_eq!(s, 200, "{v}");
    let token = v["token"].as_str().expect("token").to_string();
    let id = v["system_id"].as_str().expect("id").to_string();
    assert_eq!(machine(&api, &admin, &id).await["status"], "commissioning");
    let (_, task) = agent(&api, &token, Method::GET, "task", None).await;
    assert_eq!(task["task"], "commission", "{task}");
    let (s, _) = agent(
        &api,
        &token,
        Method::POST,
        "inventory",
        Some(inventory(mac)),
    )
    .await;
    assert_eq!(s, 204);
    let (s, v) = agent(&api, &token, Method::POST, "complete", Some(json!({}))).await;
    assert_eq!((s, v["status"].as_str()), (200, Some("ready")), "{v}");
}

/// The other attacks, with tokens that were real once: reports about work that is over
/// are refused with the machine's status and change nothing, and a finished boot reads no
/// later task.
#[tokio::test]
async fn agent_calls_outside_their_statuses_are_refused_with_the_status() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut m = common::machine("sta301", Status::New, 0, 0);
    m.interfaces[0].mac = "52:54:00:cc:02:01".into();
    let mut d = common::machine("dpl301", Status::Ready, 2, 2048);
    d.interfaces[0].mac = "52:54:00:cc:02:02".into();
    common::seed(dir.path(), vec![m, d]);
    let daemon = Daemon::start_in(dir.path(), "");
    let api = Api::new(&daemon.url);
    let admin = api.login("admin", ADMIN_PASSWORD).await;
    let mac = "52:54:00:cc:02:01";

    // Commissioning, through the agent, to Ready.
    action(&api, &admin, "sta301", "commission", json!({})).await;
    let token = boot(&api, mac).await;
    // Inside its boot, a call that belongs to another status is refused too.
    refused_with_status(
        agent(&api, &token, Method::POST, "deployed", Some(json!({}))).await,
        "commissioning",
        "deployed while commissioning",
    );
    let (s, _) = agent(
        &api,
        &token,
        Method::POST,
        "inventory",
        Some(inventory(mac)),
    )
    .await;
    assert_eq!(s, 204);
    let (s, v) = agent(&api, &token, Method::POST, "complete", Some(json!({}))).await;
    assert_eq!((s, v["status"].as_str()), (200, Some("ready")), "{v}");
    let ready = essentials(&machine(&api, &admin, "sta301").await);
    for (call, body) in [
        ("progress", json!({"message": "owned", "percent": 99.0})),
        ("complete", json!({"message": "commissioned again"})),
        ("fail", json!({"reason": "no"})),
        (
            "inventory",
            json!({"cpu_count": 64, "interfaces": [{"name": "eth0", "mac": mac}],
                             "bmc": {"lan": {"channel": 1, "ip_address": "127.0.0.9"},
                                     "credentials": {"username": "evil", "password": "evil-pw"}}}),
        ),
        ("deployed", json!({"message": "sure"})),
    ] {
        refused_with_status(
            agent(&api, &token, Method::POST, call, Some(body)).await,
            "ready",
            call,
        );
    }
    let (_, task) = agent(&api, &token, Method::GET, "task", None).await;
    assert_eq!(task["task"], "poweroff");
    assert_eq!(
        essentials(&machine(&api, &admin, "sta301").await),
        ready,
        "nothing changed"
    );

    // The machine is allocated and deployed; before its network boot, the commissioning
    // boot's token reads no deploy task and reports nothing, though the machine is Deploying.
    let image = vec![7u8; 4096];
    let r = api
        .http
        .post(format!(
            "{}/api/v1/images?name=testos&os=debian&release=bookworm&arch=amd64",
            api.url
        ))
        .bearer_auth(&admin)
        .body(image)
        .send()
        .await
        .expect("upload");
    assert_eq!(r.status(), 201);
    let (s, v) = api
        .call(
            Method::POST,
            "/api/v1/machines/dpl301/actions/deploy",
            Some(&admin),
            Some(json!({"user_data": "#cloud-config\npassword: secret-user-data\n"})),
        )
        .await;
    assert_eq!(s, 200, "{v}");
    action(
        &api,
        &admin,
        "sta301",
        "deploy",
        json!({"user_data": "#cloud-config\nsecret: 1\n"}),
    )
    .await;
    let (s, task) = agent(&api, &token, Method::GET, "task", None).await;
    assert_eq!(s, 200);
    assert_eq!(
        task,
        json!({"task": "poweroff"}),
        "an old boot reads no deploy task"
    );
    for call in ["progress", "complete", "fail"] {
        refused_with_status(
            agent(
                &api,
                &token,
                Method::POST,
                call,
                Some(json!({"message": "x", "reason": "x"})),
            )
            .await,
            "deploying",
            call,
        );
    }

    // The deploy's own boot: the image is written and the deployed OS reports in.
    let deploy = boot(&api, "52:54:00:cc:02:02").await;
    let (_, task) = agent(&api, &deploy, Method::GET, "task", None).await;
    assert_eq!(task["task"], "deploy", "{task}");
    refused_with_status(
        agent(&api, &deploy, Method::POST, "deployed", Some(json!({}))).await,
        "deploying",
        "deployed before the image is written",
    );
    refused_with_status(
        agent(
            &api,
            &deploy,
            Method::POST,
            "inventory",
            Some(inventory("52:54:00:cc:02:02")),
        )
        .await,
        "deploying",
        "inventory while deploying",
    );
    let (s, v) = agent(
        &api,
        &deploy,
        Method::POST,
        "complete",
        Some(json!({"message": "written"})),
    )
    .await;
    assert_eq!((s, v["status"].as_str()), (200, Some("deploying")), "{v}");
    let m = machine(&api, &admin, "dpl301").await;
    assert_eq!(m["image_written"], true, "{m}");
    // A repeated complete (a lost answer) is taken and changes nothing; progress is over.
    let (s, _) = agent(&api, &deploy, Method::POST, "complete", Some(json!({}))).await;
    assert_eq!(s, 200);
    refused_with_status(
        agent(
            &api,
            &deploy,
            Method::POST,
            "progress",
            Some(json!({"message": "late"})),
        )
        .await,
        "deploying",
        "progress after the image is written",
    );
    let report = task["report_token"]
        .as_str()
        .expect("report token")
        .to_string();
    let (s, v) = agent(
        &api,
        &report,
        Method::POST,
        "deployed",
        Some(json!({"message": "booted"})),
    )
    .await;
    assert_eq!((s, v["status"].as_str()), (200, Some("deployed")), "{v}");
    let m = machine(&api, &admin, "dpl301").await;
    assert_eq!(m["image_written"], false, "only while deploying: {m}");
    let deployed = essentials(&m);

    // Deployed: the deployed OS still holds the token (it is in its seed); it moves nothing
    // and rewrites no status message.
    for (call, body) in [
        ("progress", json!({"message": "pwned", "percent": 1.0})),
        ("deployed", json!({"message": "again"})),
        ("complete", json!({"message": "again"})),
        ("fail", json!({"reason": "made up"})),
    ] {
        refused_with_status(
            agent(&api, &report, Method::POST, call, Some(body)).await,
            "deployed",
            call,
        );
    }
    let (_, task) = agent(&api, &report, Method::GET, "task", None).await;
    assert_eq!(task, json!({"task": "poweroff"}));
    assert_eq!(
        essentials(&machine(&api, &admin, "dpl301").await),
        deployed,
        "nothing changed, not even the status message"
    );
}

/// 1.5 MB inventories (the flood) are refused with 413 and a message, before a machine
/// is made; so is one sent to `/inventory` by a real commissioning agent. An inventory of a
/// large server (hundreds of PCI devices and disks) is far below the limit and is taken.
#[tokio::test]
async fn an_oversized_inventory_is_413_with_a_message() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut m = common::machine("big301", Status::New, 0, 0);
    m.interfaces[0].mac = "52:54:00:cc:03:01".into();
    common::seed(dir.path(), vec![m]);
    let daemon = Daemon::start_in(dir.path(), "");
    let api = Api::new(&daemon.url);
    let admin = api.login("admin", ADMIN_PASSWORD).await;
    let mut huge = inventory("52:54:00:cc:03:02");
    huge["padding"] = json!("x".repeat(1_500_000));
    let (s, _, v) = enlist(&api, &huge, None).await;
    assert_eq!(s, 413, "{v}");
    let message = v["message"].as_str().unwrap_or_default();
    assert!(
        message.contains("256 KiB") && message.contains("lifecycle.enlist_max_inventory_kib"),
        "{message}"
    );
    assert_eq!(machine_count(&api, &admin).await, 1, "no machine was made");

    action(&api, &admin, "big301", "commission", json!({})).await;
    let token = boot(&api, "52:54:00:cc:03:01").await;
    let mut huge = inventory("52:54:00:cc:03:01");
    huge["padding"] = json!("x".repeat(300 * 1024));
    let (s, v) = agent(&api, &token, Method::POST, "inventory", Some(huge)).await;
    assert_eq!(s, 413, "{v}");

    // A large server: 64 NICs, 96 disks, 512 PCI devices, every CPU flag.
    let mut big = inventory("52:54:00:cc:03:03");
    big["interfaces"] = (0..64)
        .map(|i| {
            json!({"name": format!("enp{i}s0f0"), "mac": format!("52:54:00:cc:04:{i:02x}"),
                        "boot": i == 0, "driver": "mlx5_core", "speed_mbps": 100000, "link": true})
        })
        .collect();
    big["disks"] = (0..96)
        .map(|i| {
            json!({"name": format!("sd{i}"), "size_bytes": 16_000_000_000_000u64,
                        "model": "ST16000NM001G-2KK103", "serial": format!("ZL2{i:05}"),
                        "block_size": 512, "rotational": true, "tags": ["rotary"],
                        "physical_block_size": 4096})
        })
        .collect();
    big["pci"] = (0..512)
        .map(|i| json!({"address": format!("0000:{:02x}:{:02x}.{}", i / 32, i % 32, i % 8),
                        "vendor": "15b3", "device": "1017", "class": "020000", "driver": "mlx5_core"}))
        .collect();
    big["cpu"] = json!({"model": "AMD EPYC 9654 96-Core Processor", "sockets": 2, "cores": 192,
                        "threads": 384, "flags": vec!["avx512_vpopcntdq"; 200]});
    let size = serde_json::to_vec(&big).expect("json").len();
    assert!(
        size < 128 * 1024,
        "a large server's inventory is {size} bytes"
    );
    let (s, _, v) = enlist(&api, &big, Some("large-server-enlist-key-01")).await;
    assert_eq!(s, 200, "{v}");
    let m = machine(&api, &admin, v["system_id"].as_str().expect("id")).await;
    assert_eq!(m["disks"].as_array().map(Vec::len), Some(96));
}

/// A burst of enlistments from one source: the burst goes through, the next is 429 with
/// Retry-After and a message that names the settings; another source is not held up.
#[tokio::test]
async fn a_burst_of_enlistments_from_one_source_is_rate_limited() {
    let dir = tempfile::tempdir().expect("tempdir");
    let daemon = Daemon::start_in(
        dir.path(),
        "[lifecycle]\nenlist_burst = 3\nenlist_interval_secs = 3600\n",
    );
    let api = Api::new(&daemon.url);
    let admin = api.login("admin", ADMIN_PASSWORD).await;
    let probe = api_from(&daemon.url, "127.0.0.21");
    for i in 0..3 {
        let (s, _, v) = enlist(&probe, &inventory(&format!("52:54:00:cc:05:{i:02x}")), None).await;
        assert_eq!(s, 200, "{i}: {v}");
    }
    for i in 3..10 {
        let (s, retry_after, v) =
            enlist(&probe, &inventory(&format!("52:54:00:cc:05:{i:02x}")), None).await;
        assert_eq!(s, 429, "{i}: {v}");
        let secs: u64 = retry_after
            .and_then(|r| r.parse().ok())
            .expect("Retry-After");
        assert!((1..=3600).contains(&secs), "{secs}");
        let message = v["message"].as_str().unwrap_or_default();
        assert!(
            message.contains("127.0.0.21") && message.contains("lifecycle.enlist_burst"),
            "{message}"
        );
    }
    // Refused ones did not count either: they were refused before their body was read.
    assert_eq!(machine_count(&api, &admin).await, 3);
    let other = api_from(&daemon.url, "127.0.0.22");
    let (s, _, v) = enlist(&other, &inventory("52:54:00:cc:05:ff"), None).await;
    assert_eq!(s, 200, "{v}");
    assert_eq!(machine_count(&api, &admin).await, 4);
}

/// The New-machine cap: once `enlist_max_new` machines are New, enlistment says so (507) and
/// makes nothing; when one is no longer New, the next machine enlists.
#[tokio::test]
async fn enlistment_stops_at_the_cap_of_new_machines() {
    let dir = tempfile::tempdir().expect("tempdir");
    let daemon = Daemon::start_in(dir.path(), "[lifecycle]\nenlist_max_new = 2\n");
    let api = Api::new(&daemon.url);
    let admin = api.login("admin", ADMIN_PASSWORD).await;
    let mut ids = Vec::new();
    for (i, source) in ["127.0.0.31", "127.0.0.32"].into_iter().enumerate() {
        let (s, _, v) = enlist(
            &api_from(&daemon.url, source),
            &inventory(&format!("52:54:00:cc:06:{i:02x}")),
            None,
        )
        .await;
        assert_eq!(s, 200, "{v}");
        ids.push(v["system_id"].as_str().expect("id").to_string());
    }
    let late = api_from(&daemon.url, "127.0.0.33");
    let (s, _, v) = enlist(&late, &inventory("52:54:00:cc:06:09"), None).await;
    assert_eq!(s, 507, "{v}");
    let message = v["message"].as_str().unwrap_or_default();
    assert!(
        message.contains("2 machines are New") && message.contains("lifecycle.enlist_max_new"),
        "{message}"
    );
    assert_eq!(machine_count(&api, &admin).await, 2);
    let (s, _) = api
        .call(
            Method::DELETE,
            &format!("/api/v1/machines/{}", ids[0]),
            Some(&admin),
            None,
        )
        .await;
    assert!((200..300).contains(&s), "{s}");
    let (s, _, v) = enlist(&late, &inventory("52:54:00:cc:06:09"), None).await;
    assert_eq!(s, 200, "{v}");
}

/// A fake machine root for the real agent: one NIC with `mac`, CPUs and memory.
fn fake_root(root: &Path, mac: &str) {
    let write = |rel: &str, text: &str| {
        let p = root.join(rel);
        std::fs::create_dir_all(p.parent().expect("parent")).expect("mkdir");
        std::fs::write(p, text).expect("write");
    };
    write("sys/class/net/eth0/address", &format!("{mac}\n"));
    std::fs::create_dir_all(root.join("sys/class/net/eth0/device")).expect("mkdir");
    write(
        "proc/cpuinfo",
        "processor\t: 0\nmodel name\t: Test CPU\nphysical id\t: 0\ncore id\t: 0\n\n",
    );
    write("proc/meminfo", "MemTotal:        2097152 kB\n");
}

/// A TCP proxy in front of the daemon that loses the answer of the first request: it passes
/// the request on, waits for the daemon's answer to begin (so the daemon has done the work),
/// and closes the connection without passing the answer back. Later connections are spliced.
async fn lossy_proxy(daemon: &str) -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    let upstream = daemon.trim_start_matches("http://").to_string();
    tokio::spawn(async move {
        let mut first = true;
        while let Ok((mut client, _)) = listener.accept().await {
            let upstream = upstream.clone();
            let lose = std::mem::take(&mut first);
            tokio::spawn(async move {
                let Ok(mut server) = tokio::net::TcpStream::connect(&upstream).await else {
                    return;
                };
                if !lose {
                    let _ = tokio::io::copy_bidirectional(&mut client, &mut server).await;
                    return;
                }
                let (mut from_client, _to_client) = client.split();
                let (mut from_server, mut to_server) = server.split();
                let forward = tokio::io::copy(&mut from_client, &mut to_server);
                let mut answer = [0u8; 1];
                tokio::select! {
                    _ = forward => {}
                    _ = from_server.read(&mut answer) => {}
                }
                let _ = to_server.shutdown().await;
                // Dropping both ends: the client sees its connection closed, no answer.
            });
        }
    });
    format!("http://{addr}")
}

/// The real agent (`rackbox agent` with `rackbox.enlist=1`) enlists through a network that
/// loses the answer to its first `/enlist`: it repeats the call with its enlistment key, gets
/// its machine and a token, and goes on (a New machine is told to power off). The machine was
/// made once, with the agent's inventory.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_real_agent_enlists_through_a_lost_answer() {
    let daemon = Daemon::start();
    let api = Api::new(&daemon.url);
    let admin = api.login("admin", ADMIN_PASSWORD).await;
    let root = tempfile::tempdir().expect("tempdir");
    fake_root(root.path(), "52:54:00:cc:07:01");
    let url = lossy_proxy(&daemon.url).await;
    let mut cfg = rackbox::agent::AgentConfig::new(url, None);
    cfg.enlist = true;
    cfg.root = root.path().to_path_buf();
    cfg.policy.initial = Duration::from_millis(50);
    cfg.policy.budget = Duration::from_secs(60);
    cfg.policy.request_timeout = Duration::from_secs(20);
    let outcome = tokio::time::timeout(Duration::from_secs(120), rackbox::agent::run(cfg))
        .await
        .expect("the agent ends")
        .expect("the agent enlists");
    assert_eq!(outcome, rackbox::agent::Outcome::PowerOff);
    let (_, page) = api
        .call(
            Method::GET,
            "/api/v1/machines?mac=52:54:00:cc:07:01",
            Some(&admin),
            None,
        )
        .await;
    assert_eq!(page["total"], 1, "{page}");
    let m = &page["items"][0];
    assert_eq!(m["status"], "new");
    assert_eq!(m["memory_mib"], 2048, "{m}");
    assert!(
        daemon
            .log()
            .contains("enlistment repeated by the same agent"),
        "{}",
        daemon.log()
    );
}

/// The real agent booted to enlist a machine rackbox knows (added by an admin between its
/// iPXE script and its `/enlist`): it is refused, powers off, and the machine is untouched.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_real_agent_of_a_known_machine_powers_off() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut m = common::machine("kno301", Status::Ready, 4, 8192);
    m.interfaces[0].mac = "52:54:00:cc:08:01".into();
    common::seed(dir.path(), vec![m]);
    let daemon = Daemon::start_in(dir.path(), "");
    let api = Api::new(&daemon.url);
    let admin = api.login("admin", ADMIN_PASSWORD).await;
    let before = essentials(&machine(&api, &admin, "kno301").await);
    let root = tempfile::tempdir().expect("tempdir");
    fake_root(root.path(), "52:54:00:cc:08:01");
    let mut cfg = rackbox::agent::AgentConfig::new(daemon.url.clone(), None);
    cfg.enlist = true;
    cfg.root = root.path().to_path_buf();
    let outcome = tokio::time::timeout(Duration::from_secs(60), rackbox::agent::run(cfg))
        .await
        .expect("the agent ends")
        .expect("the agent stops cleanly");
    assert_eq!(outcome, rackbox::agent::Outcome::PowerOff);
    assert_eq!(essentials(&machine(&api, &admin, "kno301").await), before);
    let (_, events) = api
        .call(
            Method::GET,
            "/api/v1/machines/kno301/events",
            Some(&admin),
            None,
        )
        .await;
    assert_eq!(events.as_array().map(Vec::len), Some(0), "{events}");
}
