//! The BMC password never reaches a log line or an error message: failing and
//! succeeding calls of each driver against real peers, with every tracing
//! event (and every `log` record of ipmi-rs, bridged) captured at TRACE level.
//!
//! One test in its own binary: the capturing subscriber is process-global so
//! that the events of ipmi-rs's blocking threads are captured too.

mod power_support;

use std::io::Write;
use std::sync::{Arc, Mutex};

use rackbox::power::{PowerError, PowerType, driver_for};
use serde_json::json;

use power_support::{IpmiSim, PASSWORD, SimMode, Sushy, map};

/// A tracing writer appending to a shared buffer.
#[derive(Clone, Default)]
struct Captured(Arc<Mutex<Vec<u8>>>);

impl Write for Captured {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        if let Ok(mut v) = self.0.lock() {
            v.extend_from_slice(buf);
        }
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl Captured {
    fn text(&self) -> String {
        self.0
            .lock()
            .map(|v| String::from_utf8_lossy(&v).into_owned())
            .unwrap_or_default()
    }
}

fn check(what: &str, err: &PowerError) {
    let text = format!("{err} / {err:?}");
    assert!(
        !text.contains(PASSWORD),
        "{what}: the password leaked: {text}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_password_is_in_no_log_and_no_error() {
    let captured = Captured::default();
    let writer = captured.clone();
    tracing_subscriber::fmt()
        .with_max_level(tracing::Level::TRACE)
        .with_ansi(false)
        .with_writer(move || writer.clone())
        .try_init()
        .expect("the only subscriber of this test binary");

    let sim = IpmiSim::start(SimMode::Qemu);
    let sushy = Sushy::start(false);

    // IPMI: a failing and a succeeding call.
    let mut wrong = sim.params();
    wrong.insert("power_pass".into(), json!(format!("{PASSWORD}x")));
    let err = driver_for(PowerType::Ipmi, &wrong)
        .expect("driver")
        .query()
        .await
        .expect_err("wrong password");
    check("ipmi wrong password", &err);
    let ipmi = driver_for(PowerType::Ipmi, &sim.params()).expect("driver");
    ipmi.power_on().await.expect("ipmi power on");
    ipmi.query().await.expect("ipmi query");
    assert!(!format!("{ipmi:?}").contains(PASSWORD));

    // Redfish: a failing and a succeeding call.
    let mut wrong = sushy.params();
    wrong.insert("power_pass".into(), json!("wrong"));
    let err = driver_for(PowerType::Redfish, &wrong)
        .expect("driver")
        .query()
        .await
        .expect_err("wrong password");
    check("redfish wrong password", &err);
    let redfish = driver_for(PowerType::Redfish, &sushy.params()).expect("driver");
    redfish.query().await.expect("redfish query");
    redfish
        .set_boot_network_once(true)
        .await
        .expect("redfish boot override");
    assert!(!format!("{redfish:?}").contains(PASSWORD));

    // A command that echoes the password on stderr: scrubbed.
    let params = map(json!({
        "power_on_command": format!("echo 'login failed for {PASSWORD}' >&2; exit 3"),
        "power_off_command": "true",
        "power_pass": PASSWORD,
    }));
    let err = driver_for(PowerType::Command, &params)
        .expect("driver")
        .power_on()
        .await
        .expect_err("failing command");
    assert!(matches!(err, PowerError::CommandFailed { .. }), "{err:?}");
    assert!(
        err.to_string().contains("login failed for ********"),
        "{err}"
    );
    check("command stderr", &err);

    let log = captured.text();
    assert!(
        !log.contains(PASSWORD),
        "the password is in the log:\n{log}"
    );
    // The capture really saw the drivers and ipmi-rs at work.
    assert!(log.contains("IPMI session opened"), "{log}");
    assert!(
        log.contains("RMCP+"),
        "ipmi-rs's own log records are missing:\n{log}"
    );
    assert!(log.contains("Redfish operation failed"), "{log}");
    assert!(log.contains("boot override read back"), "{log}");
}
