//! The life cycle drives real BMCs: commissioning switches the machine on with a one-time network
//! boot through IPMI (ipmi_sim, checked with ipmitool), abort and release switch it off, and a BMC
//! that fails leaves the machine in its failed status with the BMC's error.

mod common;
mod power_support;

use std::time::Duration;

use common::{ADMIN_PASSWORD, Api, Daemon};
use power_support::{IpmiSim, PASSWORD, SimMode};
use rackbox::model::{PowerType, Status};
use reqwest::Method;
use serde_json::{Value, json};

/// Polls a machine until `done` holds (bounded), returning it.
async fn wait_for(
    api: &Api,
    token: &str,
    id: &str,
    what: &str,
    done: impl Fn(&Value) -> bool,
) -> Value {
    let path = format!("/api/v1/machines/{id}");
    common::eventually(what, Duration::from_secs(60), async || {
        let (_, m) = api.call(Method::GET, &path, Some(token), None).await;
        if done(&m) { Ok(m) } else { Err(m) }
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn commissioning_powers_on_with_network_boot_and_abort_powers_off() {
    let sim = IpmiSim::start(SimMode::BootFlagsKept);
    let daemon = Daemon::start();
    let api = Api::new(&daemon.url);
    let admin = api.login("admin", ADMIN_PASSWORD).await;
    let (s, m) = api
        .call(
            Method::POST,
            "/api/v1/machines",
            Some(&admin),
            Some(json!({"mac_addresses": ["52:54:00:77:00:01"], "power_type": "ipmi", "power_parameters": sim.params()})),
        )
        .await;
    assert_eq!(s, 201, "{m}");
    assert_eq!(
        m["status"], "commissioning",
        "a machine added with a power driver commissions at once"
    );
    let id = m["system_id"].as_str().unwrap().to_string();
    let m = wait_for(&api, &admin, &id, "power on", |m| {
        m["power_state"]["state"] == "on"
    })
    .await;
    assert_eq!(
        m["status"], "commissioning",
        "still waiting for the machine to report: {m}"
    );
    let status = sim.ipmitool(&["chassis", "power", "status"]).unwrap();
    assert!(status.contains("is on"), "ipmitool: {status}");
    let boot = sim.ipmitool(&["chassis", "bootparam", "get", "5"]).unwrap();
    assert!(boot.contains("Force PXE"), "ipmitool: {boot}");

    let (s, m) = api
        .call(
            Method::POST,
            &format!("/api/v1/machines/{id}/actions/abort"),
            Some(&admin),
            Some(json!({})),
        )
        .await;
    assert_eq!(s, 200, "{m}");
    assert_eq!(m["status"], "new");
    wait_for(&api, &admin, &id, "power off", |m| {
        m["power_state"]["state"] == "off"
    })
    .await;
    let status = sim.ipmitool(&["chassis", "power", "status"]).unwrap();
    assert!(status.contains("is off"), "ipmitool: {status}");
    assert!(
        !daemon.log().contains(PASSWORD),
        "the BMC password never reaches the log"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn release_powers_off_and_returns_to_ready() {
    let sim = IpmiSim::start(SimMode::BootFlagsKept);
    let dir = tempfile::tempdir().unwrap();
    let mut m = common::machine("rel222", Status::Allocated, 4, 4096);
    m.owner = Some("admin".into());
    m.power.power_type = Some(PowerType::Ipmi);
    m.power.parameters = sim.params();
    common::seed(dir.path(), vec![m]);
    let daemon = Daemon::start_in(dir.path(), "");
    let api = Api::new(&daemon.url);
    let admin = api.login("admin", ADMIN_PASSWORD).await;
    sim.ipmitool(&["chassis", "power", "on"]).unwrap();
    let (s, m) = api
        .call(
            Method::POST,
            "/api/v1/machines/rel222/actions/release",
            Some(&admin),
            Some(json!({})),
        )
        .await;
    assert_eq!(s, 200, "{m}");
    assert_eq!(m["status"], "releasing");
    let m = wait_for(&api, &admin, "rel222", "Ready", |m| m["status"] == "ready").await;
    assert_eq!(m["power_state"]["state"], "off");
    assert_eq!(m["owner"], Value::Null);
    assert!(
        sim.ipmitool(&["chassis", "power", "status"])
            .unwrap()
            .contains("is off")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dead_bmc_fails_commissioning_with_the_reason_and_spares_the_others() {
    let sim = IpmiSim::start(SimMode::BootFlagsKept);
    let daemon = Daemon::start();
    let api = Api::new(&daemon.url);
    let admin = api.login("admin", ADMIN_PASSWORD).await;
    let dead_port = power_support::free_udp_port();
    let (s, dead) = api
        .call(
            Method::POST,
            "/api/v1/machines",
            Some(&admin),
            Some(json!({"mac_addresses": ["52:54:00:77:00:02"], "power_type": "ipmi",
                        "power_parameters": {"power_address": "127.0.0.1", "power_port": dead_port, "power_user": "admin", "power_pass": "whatever-pw"}})),
        )
        .await;
    assert_eq!(s, 201);
    let (s, live) = api
        .call(
            Method::POST,
            "/api/v1/machines",
            Some(&admin),
            Some(json!({"mac_addresses": ["52:54:00:77:00:03"], "power_type": "ipmi", "power_parameters": sim.params()})),
        )
        .await;
    assert_eq!(s, 201);
    let dead_id = dead["system_id"].as_str().unwrap();
    let live_id = live["system_id"].as_str().unwrap();
    let m = wait_for(&api, &admin, dead_id, "Failed commissioning", |m| {
        m["status"] == "failed_commissioning"
    })
    .await;
    let message = m["status_message"].as_str().unwrap();
    assert!(message.contains("power driver could not"), "{message}");
    assert_eq!(m["power_state"]["state"], "error");
    wait_for(&api, &admin, live_id, "power on", |m| {
        m["power_state"]["state"] == "on"
    })
    .await;
    // The daemon is still serving.
    let (s, _) = api.call(Method::GET, "/healthz", None, None).await;
    assert_eq!(s, 200);
}

#[tokio::test]
async fn manual_power_waits_for_an_operator() {
    let dir = tempfile::tempdir().unwrap();
    common::seed(
        dir.path(),
        vec![common::machine("man222", Status::Ready, 2, 2048)],
    );
    let daemon = Daemon::start_in(dir.path(), "");
    let api = Api::new(&daemon.url);
    let admin = api.login("admin", ADMIN_PASSWORD).await;
    let (s, _) = api
        .call(
            Method::PATCH,
            "/api/v1/machines/man222",
            Some(&admin),
            Some(json!({"power_type": "manual", "power_parameters": {}})),
        )
        .await;
    assert_eq!(s, 200);
    let (s, _) = api
        .call(
            Method::POST,
            "/api/v1/machines/man222/actions/commission",
            Some(&admin),
            Some(json!({})),
        )
        .await;
    assert_eq!(s, 200);
    let m = wait_for(&api, &admin, "man222", "the operator message", |m| {
        m["status_message"]
            .as_str()
            .unwrap_or("")
            .contains("switch the machine on by hand")
    })
    .await;
    assert_eq!(m["status"], "commissioning", "nothing claims it booted");
}

/// The command driver's parameters for a machine whose every power operation appends a line to
/// `log` (the power-on slowly), with its state in `state`.
fn logging_commands(log: &std::path::Path, state: &std::path::Path, on_delay_secs: u32) -> Value {
    let (log, state) = (log.display(), state.display());
    json!({
        "power_on_command": format!("sleep {on_delay_secs}; echo on >> {log}; echo on > {state}"),
        "power_off_command": format!("echo off >> {log}; echo off > {state}"),
        "power_query_command": format!("cat {state} 2>/dev/null || echo off"),
        "power_netboot_command": format!("echo netboot >> {log}"),
    })
}

/// The lines of the power log, once it has `n` of them (bounded).
async fn log_lines(log: &std::path::Path, n: usize) -> Vec<String> {
    let what = format!("{n} lines in the power log");
    common::eventually(&what, Duration::from_secs(60), async || {
        let text = std::fs::read_to_string(log).unwrap_or_default();
        let lines: Vec<String> = text.lines().map(str::to_string).collect();
        if lines.len() >= n {
            Ok(lines)
        } else {
            Err(lines)
        }
    })
    .await
}

/// One machine's power work runs in the order it was asked for: an abort while commissioning's
/// power-on is under way switches the machine off after it is on, never before (which would
/// leave it running the commissioning environment with nobody waiting for it).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn abort_powers_off_after_the_power_on_under_way() {
    let dir = tempfile::tempdir().unwrap();
    let (log, state) = (dir.path().join("power.log"), dir.path().join("power.state"));
    let daemon = Daemon::start();
    let api = Api::new(&daemon.url);
    let admin = api.login("admin", ADMIN_PASSWORD).await;
    let (s, m) = api
        .call(
            Method::POST,
            "/api/v1/machines",
            Some(&admin),
            Some(
                json!({"mac_addresses": ["52:54:00:77:00:21"], "power_type": "command",
                        "power_parameters": logging_commands(&log, &state, 2)}),
            ),
        )
        .await;
    assert_eq!(s, 201, "{m}");
    assert_eq!(m["status"], "commissioning");
    let id = m["system_id"].as_str().unwrap().to_string();
    // The power-on has started (the one-time network boot is set); abort now.
    assert_eq!(log_lines(&log, 1).await, vec!["netboot"]);
    let (s, m) = api
        .call(
            Method::POST,
            &format!("/api/v1/machines/{id}/actions/abort"),
            Some(&admin),
            Some(json!({})),
        )
        .await;
    assert_eq!(s, 200, "{m}");
    assert_eq!(log_lines(&log, 3).await, vec!["netboot", "on", "off"]);
    let m = wait_for(&api, &admin, &id, "power off", |m| {
        m["power_state"]["state"] == "off"
    })
    .await;
    assert_eq!(m["status"], "new", "{m}");
}

/// Power work owed when rackbox stopped is done when it starts again: a machine stored in
/// Commissioning that is owed its power-on (rackbox was killed between the commit and the BMC
/// call) is switched on with a network boot by the next daemon.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn power_work_owed_at_a_restart_is_carried_out() {
    use rackbox::model::lifecycle::OwedEffect;
    let dir = tempfile::tempdir().unwrap();
    let (log, state) = (dir.path().join("power.log"), dir.path().join("power.state"));
    let mut m = common::machine("owe222", Status::Commissioning, 2, 2048);
    m.power.power_type = Some(PowerType::Command);
    m.power.parameters = logging_commands(&log, &state, 0)
        .as_object()
        .cloned()
        .unwrap();
    m.owed_effect = Some(OwedEffect {
        effect: rackbox::model::Effect::PowerOnNetboot,
        generation: m.generation,
    });
    let state_dir = dir.path().join("state");
    common::seed(&state_dir, vec![m]);
    let daemon = Daemon::start_in(&state_dir, "");
    let api = Api::new(&daemon.url);
    let admin = api.login("admin", ADMIN_PASSWORD).await;
    assert_eq!(log_lines(&log, 2).await, vec!["netboot", "on"]);
    let m = wait_for(&api, &admin, "owe222", "power on", |m| {
        m["power_state"]["state"] == "on"
    })
    .await;
    assert_eq!(m["status"], "commissioning", "{m}");
}
