//! The ipmi driver against a real IPMI BMC simulator (ipmi_sim) that powers a
//! real QEMU machine, with ipmitool as an independent second opinion.
//! Everything on 127.0.0.1; every wait is bounded in count and time.

mod power_support;

use std::net::UdpSocket;
use std::time::Duration;

use rackbox::power::{
    PowerError, PowerState, PowerType, driver_for, driver_with_timeout, query_many,
};
use serde_json::{Value, json};

use power_support::{
    Fault, FaultyRelay, IpmiSim, PASSWORD, SimMode, map, wait_until, wait_until_async,
};

const POLL: Duration = Duration::from_millis(500);

fn assert_no_password(text: &str) {
    assert!(!text.contains(PASSWORD), "the password leaked: {text}");
}

/// What `ipmitool chassis power status` says: "on" or "off".
fn ipmitool_power(sim: &IpmiSim) -> String {
    let out = sim
        .ipmitool(&["chassis", "power", "status"])
        .expect("ipmitool chassis power status");
    if out.contains("is on") {
        "on".into()
    } else if out.contains("is off") {
        "off".into()
    } else {
        panic!("unexpected ipmitool output: {out}")
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn power_on_starts_qemu_and_power_off_stops_it() {
    let sim = IpmiSim::start(SimMode::Qemu);
    let driver = driver_for(PowerType::Ipmi, &sim.params()).expect("driver");

    assert_eq!(driver.query().await.expect("query"), PowerState::Off);
    assert_eq!(ipmitool_power(&sim), "off");
    assert_eq!(sim.qemu_pid(), None);

    driver.power_on().await.expect("power on");
    assert!(
        wait_until(40, POLL, || sim.qemu_pid().is_some()),
        "no QEMU process after power on: {}",
        sim.log()
    );
    assert_eq!(driver.query().await.expect("query"), PowerState::On);
    assert_eq!(ipmitool_power(&sim), "on");
    // Idempotent: switching on a machine that is on succeeds and changes nothing.
    let pid = sim.qemu_pid();
    driver.power_on().await.expect("second power on");
    assert_eq!(sim.qemu_pid(), pid);

    driver.power_off(false).await.expect("power off");
    assert!(
        wait_until(40, POLL, || sim.qemu_pid().is_none()),
        "QEMU still runs after power off: {}",
        sim.log()
    );
    let off = wait_until_async(20, POLL, || async {
        driver.query().await.ok() == Some(PowerState::Off)
    })
    .await;
    assert!(off, "rackbox does not report off");
    assert_eq!(ipmitool_power(&sim), "off");
    driver.power_off(false).await.expect("power off when off");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn power_cycle_restarts_qemu_and_switches_on_an_off_machine() {
    let sim = IpmiSim::start(SimMode::Qemu);
    let driver = driver_for(PowerType::Ipmi, &sim.params()).expect("driver");

    // Off: a cycle switches it on.
    driver.power_cycle().await.expect("cycle from off");
    assert!(
        wait_until(40, POLL, || sim.qemu_pid().is_some()),
        "{}",
        sim.log()
    );
    let first = sim.qemu_pid();

    driver.power_cycle().await.expect("cycle from on");
    let restarted = wait_until(60, POLL, || {
        sim.qemu_pid().is_some_and(|pid| Some(pid) != first)
    });
    assert!(
        restarted,
        "no new QEMU process after a power cycle: {}",
        sim.log()
    );
    assert_eq!(driver.query().await.expect("query"), PowerState::On);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ipmi_1_5_session_works_with_straight_password_auth() {
    let sim = IpmiSim::start_with_auths(SimMode::Qemu, "straight");
    let mut params = sim.params();
    params.insert("power_driver".into(), json!("LAN"));
    let driver = driver_for(PowerType::Ipmi, &params).expect("driver");
    assert_eq!(
        driver.query().await.expect("query over IPMI 1.5"),
        PowerState::Off
    );
    driver.power_on().await.expect("power on over IPMI 1.5");
    assert!(
        wait_until(40, POLL, || sim.qemu_pid().is_some()),
        "{}",
        sim.log()
    );
    assert_eq!(ipmitool_power(&sim), "on");

    params.insert("power_pass".into(), json!("not-the-password"));
    let driver =
        driver_with_timeout(PowerType::Ipmi, &params, Duration::from_secs(4)).expect("driver");
    let err = driver
        .query()
        .await
        .expect_err("wrong password over IPMI 1.5");
    let text = format!("{err} / {err:?}");
    assert_no_password(&text);
    assert!(
        matches!(err, PowerError::AuthenticationFailed { .. })
            || (matches!(err, PowerError::Timeout { .. }) && text.contains("wrong password")),
        "{err:?}"
    );
}

/// ipmi-rs 0.6 hashes the length byte into its check of MD5/MD2-signed IPMI
/// 1.5 answers, so it rejects every signed answer: reported as a limit, not
/// as a wrong password.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ipmi_1_5_md5_limit_is_reported_as_such() {
    let sim = IpmiSim::start_with_auths(SimMode::Qemu, "md5");
    let mut params = sim.params();
    params.insert("power_driver".into(), json!("LAN"));
    let driver =
        driver_with_timeout(PowerType::Ipmi, &params, Duration::from_secs(4)).expect("driver");
    let err = driver.query().await.expect_err("MD5-signed answers");
    assert!(matches!(err, PowerError::Unsupported(_)), "{err:?}");
    let text = err.to_string();
    assert!(
        text.contains("password is right") && text.contains("LAN_2_0"),
        "{text}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_time_pxe_boot_is_set_and_ipmitool_agrees() {
    let sim = IpmiSim::start(SimMode::BootFlagsKept);
    let driver = driver_for(PowerType::Ipmi, &sim.params()).expect("driver");

    let boot = driver
        .set_boot_network_once(false)
        .await
        .expect("one-time PXE boot");
    assert!(boot.confirmed);
    assert!(boot.read_back.starts_with("force PXE"), "{boot:?}");

    let ipmitool = sim
        .ipmitool(&["chassis", "bootparam", "get", "5"])
        .expect("ipmitool bootparam get 5");
    assert!(ipmitool.contains("Force PXE"), "ipmitool says: {ipmitool}");
    // Whatever rackbox reports about the flags, ipmitool sees the same.
    let ipmitool_valid = !ipmitool.contains("Boot Flag Invalid");
    let rackbox_valid = boot.read_back.contains("flags valid");
    assert_eq!(
        rackbox_valid, ipmitool_valid,
        "rackbox: {boot:?}\nipmitool: {ipmitool}"
    );
    let ipmitool_efi = ipmitool.contains("BIOS EFI boot");
    assert_eq!(
        boot.efi,
        Some(ipmitool_efi),
        "rackbox: {boot:?}\nipmitool: {ipmitool}"
    );
    let ipmitool_once = ipmitool.contains("Options apply to only next boot");
    assert_eq!(boot.persistent, Some(!ipmitool_once));
    // ipmi_sim keeps only the device: the missing valid bit is reported.
    if !ipmitool_valid {
        assert!(
            boot.warnings.iter().any(|w| w.contains("not valid")),
            "{boot:?}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bmc_that_drops_the_boot_override_is_an_error() {
    let sim = IpmiSim::start(SimMode::BootFlagsDropped);
    let driver = driver_for(PowerType::Ipmi, &sim.params()).expect("driver");
    let err = driver
        .set_boot_network_once(true)
        .await
        .expect_err("the BMC forgot the override");
    assert!(
        matches!(err, PowerError::BootOverrideNotKept { .. }),
        "{err:?}"
    );
    let text = err.to_string();
    assert!(
        text.contains("accepted the one-time PXE boot override but reads back no override"),
        "{text}"
    );
    let ipmitool = sim
        .ipmitool(&["chassis", "bootparam", "get", "5"])
        .expect("ipmitool bootparam get 5");
    assert!(!ipmitool.contains("Force PXE"), "ipmitool says: {ipmitool}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn power_through_an_external_chassis_control_program() {
    // The same BMC kind as the boot tests: on and off go through its program.
    let sim = IpmiSim::start(SimMode::BootFlagsKept);
    let driver = driver_for(PowerType::Ipmi, &sim.params()).expect("driver");
    driver.power_on().await.expect("power on");
    assert_eq!(driver.query().await.expect("query"), PowerState::On);
    assert_eq!(ipmitool_power(&sim), "on");
    driver.power_off(false).await.expect("power off");
    assert_eq!(driver.query().await.expect("query"), PowerState::Off);
    assert_eq!(ipmitool_power(&sim), "off");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wrong_password_is_an_authentication_error() {
    let sim = IpmiSim::start(SimMode::Qemu);
    let mut params = sim.params();
    params.insert("power_pass".into(), json!("not-the-password"));
    let driver =
        driver_with_timeout(PowerType::Ipmi, &params, Duration::from_secs(4)).expect("driver");
    let err = driver.query().await.expect_err("wrong password");
    let text = format!("{err} / {err:?}");
    assert_no_password(&text);
    assert!(!text.contains("not-the-password"), "{text}");
    assert!(
        matches!(err, PowerError::AuthenticationFailed { .. }),
        "{err:?}"
    );
    assert!(text.contains("wrong password"), "{text}");
    let mut params = sim.params();
    params.insert("power_user".into(), json!("nobody"));
    let driver =
        driver_with_timeout(PowerType::Ipmi, &params, Duration::from_secs(4)).expect("driver");
    let err = driver.query().await.expect_err("unknown user");
    assert!(
        matches!(err, PowerError::AuthenticationFailed { .. }),
        "{err:?}"
    );
    assert!(err.to_string().contains("nobody"), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nobody_on_the_port_is_unreachable() {
    // A port with nothing bound: the kernel answers ICMP port unreachable.
    let port = power_support::free_udp_port();
    let params = map(json!({"power_address": "127.0.0.1", "power_port": port,
        "power_user": "admin", "power_pass": PASSWORD}));
    let driver =
        driver_with_timeout(PowerType::Ipmi, &params, Duration::from_secs(3)).expect("driver");
    let err = driver.power_on().await.expect_err("nobody there");
    assert!(matches!(err, PowerError::Unreachable { .. }), "{err:?}");
    assert!(
        err.to_string().contains(&format!("127.0.0.1:{port}")),
        "{err}"
    );
    assert!(err.is_transient());
    assert_no_password(&format!("{err} {err:?}"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_silent_bmc_times_out() {
    // A socket that receives and never answers: a BMC that hangs.
    let silent = UdpSocket::bind("127.0.0.1:0").expect("bind");
    let port = silent.local_addr().expect("addr").port();
    let params = map(json!({"power_address": "127.0.0.1", "power_port": port,
        "power_user": "admin", "power_pass": PASSWORD}));
    let driver =
        driver_with_timeout(PowerType::Ipmi, &params, Duration::from_secs(2)).expect("driver");
    let err = driver.query().await.expect_err("silent BMC");
    assert!(matches!(err, PowerError::Timeout { .. }), "{err:?}");
    assert!(err.to_string().contains("opening an IPMI session"), "{err}");
    // The BMC was asked again after each lost packet.
    let mut buf = [0u8; 512];
    silent.set_nonblocking(true).expect("nonblocking");
    let mut pings = 0;
    while silent.recv(&mut buf).is_ok() {
        pings += 1;
    }
    assert!(pings >= 2, "only {pings} packet(s) reached the silent BMC");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cipher_suite_17_is_refused_with_the_reason() {
    let sim = IpmiSim::start(SimMode::Qemu);
    let mut params = sim.params();
    params.insert("cipher_suite_id".into(), json!("17"));
    rackbox::power::validate(PowerType::Ipmi, &params).expect("17 is a valid MAAS value");
    let err = driver_for(PowerType::Ipmi, &params).expect_err("suite 17");
    assert!(matches!(err, PowerError::Unsupported(_)), "{err:?}");
    let text = err.to_string();
    assert!(
        text.contains("cipher suite 17") && text.contains("ipmi-rs"),
        "{text}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn one_dead_bmc_does_not_hold_up_the_others() {
    let live_a = IpmiSim::start(SimMode::Qemu);
    let live_b = IpmiSim::start(SimMode::BootFlagsKept);
    let silent = UdpSocket::bind("127.0.0.1:0").expect("bind");
    let silent_port = silent.local_addr().expect("addr").port();
    let refused_port = power_support::free_udp_port();
    let dead = |port: u16| {
        map(json!({"power_address": "127.0.0.1", "power_port": port,
            "power_user": "admin", "power_pass": PASSWORD}))
    };
    let machines: Vec<(&str, PowerType, serde_json::Map<String, Value>)> = vec![
        ("silent", PowerType::Ipmi, dead(silent_port)),
        ("live-a", PowerType::Ipmi, live_a.params()),
        ("refused", PowerType::Ipmi, dead(refused_port)),
        ("live-b", PowerType::Ipmi, live_b.params()),
        ("manual", PowerType::Manual, serde_json::Map::new()),
    ];
    let results = query_many(machines, 3, Duration::from_secs(3)).await;
    let names: Vec<&str> = results.iter().map(|(id, _)| *id).collect();
    assert_eq!(names, ["silent", "live-a", "refused", "live-b", "manual"]);
    assert!(
        matches!(results[0].1, Err(PowerError::Timeout { .. })),
        "{:?}",
        results[0]
    );
    assert_eq!(
        results[1].1.as_ref().ok(),
        Some(&PowerState::Off),
        "{:?}",
        results[1]
    );
    assert!(
        matches!(results[2].1, Err(PowerError::Unreachable { .. })),
        "{:?}",
        results[2]
    );
    assert_eq!(
        results[3].1.as_ref().ok(),
        Some(&PowerState::Off),
        "{:?}",
        results[3]
    );
    assert_eq!(results[4].1.as_ref().ok(), Some(&PowerState::Unknown));
}

/// Every operation closes its session: ipmi_sim has 63 session slots, so a
/// leak would make the 64th operation fail ("insufficient resources").
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sessions_are_closed_after_each_operation() {
    let sim = IpmiSim::start(SimMode::Qemu);
    let driver = driver_for(PowerType::Ipmi, &sim.params()).expect("driver");
    for round in 0..80 {
        let state = driver.query().await;
        assert!(state.is_ok(), "round {round}: {state:?}\n{}", sim.log());
    }
}

/// A BMC that answers a chassis control later than the driver's packet timeout
/// (ipmi_sim answers only when its chassis program has made the change, as a
/// slow real BMC does): each change is waited for, confirmed, and made once; a
/// power cycle is one power down and one power up.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_bmc_is_waited_for_and_each_power_change_is_made_once() {
    let sim = IpmiSim::start(SimMode::SlowChassis);
    let driver = driver_for(PowerType::Ipmi, &sim.params()).expect("driver");
    driver
        .power_on()
        .await
        .expect("power on through a slow BMC");
    assert_eq!(sim.power_changes(), ["1"], "{}", sim.log());
    driver
        .power_cycle()
        .await
        .expect("power cycle through a slow BMC");
    assert_eq!(sim.power_changes(), ["1", "0", "1"], "{}", sim.log());
    assert_eq!(driver.query().await.expect("query"), PowerState::On);
    driver.power_off(false).await.expect("power off");
    assert_eq!(sim.power_changes(), ["1", "0", "1", "0"]);
    assert_eq!(ipmitool_power(&sim), "off");
}

/// The BMC makes the change but its answer is lost: the driver does not send
/// the command again, it reads the power state and finds the change made.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lost_answer_to_a_chassis_control_is_confirmed_by_the_power_state() {
    let sim = IpmiSim::start(SimMode::BootFlagsKept);
    let relay = FaultyRelay::start(&sim, Fault::AnswerToEachPowerChange);
    let driver = driver_for(PowerType::Ipmi, &relay.params(&sim)).expect("driver");
    driver
        .power_on()
        .await
        .expect("power on with its answer lost");
    assert_eq!(relay.lost(), 1, "the relay lost no answer");
    assert_eq!(sim.power_changes(), ["1"]);
    driver
        .power_cycle()
        .await
        .expect("power cycle with both answers lost");
    assert_eq!(relay.lost(), 3);
    assert_eq!(sim.power_changes(), ["1", "0", "1"]);
    assert_eq!(ipmitool_power(&sim), "on");
}

/// The power up request itself is lost: the BMC answers the driver's
/// power-state reads and shows no change, so the power up (which does the same
/// when sent twice) is sent again, and made once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lost_power_up_request_is_sent_again() {
    let sim = IpmiSim::start(SimMode::BootFlagsKept);
    let relay = FaultyRelay::start(&sim, Fault::FirstControlRequest);
    let driver = driver_for(PowerType::Ipmi, &relay.params(&sim)).expect("driver");
    driver
        .power_on()
        .await
        .expect("power on with its request lost");
    assert_eq!(relay.lost(), 1, "the relay lost no request");
    assert_eq!(sim.power_changes(), ["1"]);
    assert_eq!(ipmitool_power(&sim), "on");
}

/// The BMC goes silent after the power-state read: the failure says what was
/// sent and that nothing could be confirmed, and it comes by the deadline.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bmc_that_goes_silent_mid_operation_fails_saying_what_was_confirmed() {
    let sim = IpmiSim::start(SimMode::BootFlagsKept);
    let relay = FaultyRelay::start(&sim, Fault::AllAfterFirstRead);
    let driver = driver_with_timeout(PowerType::Ipmi, &relay.params(&sim), Duration::from_secs(8))
        .expect("driver");
    let err = driver.power_on().await.expect_err("nothing gets through");
    assert!(matches!(err, PowerError::NotConfirmed { .. }), "{err:?}");
    let text = err.to_string();
    assert!(
        text.contains("power on was not confirmed")
            && text.contains("chassis power up was sent")
            && text.contains("never answered"),
        "{text}"
    );
    assert!(err.is_transient());
    assert_no_password(&format!("{err} {err:?}"));
    assert!(sim.power_changes().is_empty(), "{:?}", sim.power_changes());
}

/// A forged (or old BMC's) answer saying "IPMI 1.5, straight password only":
/// with the default power_driver LAN_2_0 rackbox refuses, saying why, and the
/// password never goes on the wire. Only power_driver=LAN accepts 1.5.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lan_2_0_never_falls_back_to_ipmi_1_5_on_a_forged_answer() {
    let sim = IpmiSim::start(SimMode::BootFlagsKept);
    let relay = FaultyRelay::start(&sim, Fault::ForgeIpmi15StraightOnly);
    let driver = driver_with_timeout(PowerType::Ipmi, &relay.params(&sim), Duration::from_secs(6))
        .expect("driver");
    let err = driver.query().await.expect_err("a downgrade is refused");
    assert!(relay.lost() >= 1, "the relay forged no answer");
    assert!(
        !relay.saw_password(),
        "the password went on the wire in clear"
    );
    assert!(matches!(err, PowerError::Unsupported(_)), "{err:?}");
    let text = err.to_string();
    assert!(
        text.contains("offers only IPMI 1.5") && text.contains("power_driver=LAN"),
        "{text}"
    );
    assert!(!err.is_transient(), "a downgrade needs a person: {err:?}");
}
