//! The agent's Redfish host-interface query (src/agent/redfish_host.rs) against sushy-tools'
//! emulator with authentication, TLS and the manager network resource that
//! tests/power_support/sushy_bmc.py adds: it picks this machine's system by UUID among several,
//! reports the manager and its management address and the certificate's fingerprint, and with
//! a wrong password stops with an error that says the service refused it, keeping what it had
//! learnt. The NIC is found in a fixture sysfs (configuring a real one is the QEMU test's part,
//! tests/agent_ephemeral.rs).

mod power_support;

use std::path::Path;

use rackbox::agent::inventory::{BmcCredentials, HostInterfaceDevice, RedfishHostInterface};
use rackbox::agent::redfish_host::discover;

use power_support::{PASSWORD, Sushy, SushyOptions, USER};

const MACHINE: &str = "6b1c47a0-31f5-4f57-9b1e-2d0c7c1f0002";

fn write(root: &Path, rel: &str, text: &str) {
    let p = root.join(rel);
    std::fs::create_dir_all(p.parent().expect("parent")).expect("mkdir");
    std::fs::write(p, text).expect("write");
}

/// A sysfs with the BMC's USB NIC (04b3:4010, as on Lenovo XCC) beside a virtio one.
fn fixture_root() -> tempfile::TempDir {
    let dir = tempfile::tempdir().expect("tempdir");
    let r = dir.path();
    write(r, "sys/class/net/eth0/address", "52:54:00:00:00:01\n");
    write(r, "sys/class/net/eth0/device/vendor", "0x1af4\n");
    write(r, "sys/class/net/eth0/device/device", "0x1041\n");
    write(r, "sys/class/net/usb0/address", "0a:94:ef:00:00:01\n");
    write(r, "sys/class/net/usb0/idVendor", "04b3\n");
    write(r, "sys/class/net/usb0/idProduct", "4010\n");
    std::fs::create_dir_all(r.join("sys/class/net/usb0/device")).expect("mkdir");
    dir
}

fn host_interface(sushy: &Sushy) -> RedfishHostInterface {
    RedfishHostInterface {
        service_address: "127.0.0.1".into(),
        service_port: sushy.port,
        ip_discovery: "static".into(),
        host_ip_assignment: "static".into(),
        host_address: "169.254.95.120".into(),
        host_mask: "255.255.0.0".into(),
        device: Some(HostInterfaceDevice {
            bus: "usb".into(),
            vendor: "04b3".into(),
            product: "4010".into(),
            mac: None,
        }),
        ..Default::default()
    }
}

#[tokio::test]
async fn the_service_names_this_machines_system_manager_and_address() {
    let sushy = Sushy::start_with(SushyOptions {
        tls: true,
        auth: true,
        systems: vec![
            "6b1c47a0-31f5-4f57-9b1e-2d0c7c1f0001".into(),
            MACHINE.into(),
            "6b1c47a0-31f5-4f57-9b1e-2d0c7c1f0003".into(),
        ],
        manager_nics: vec![("hostif", "169.254.95.118"), ("eth1", "192.0.2.47")],
        ..Default::default()
    });
    let root = fixture_root();
    let right = BmcCredentials {
        username: USER.into(),
        password: PASSWORD.into(),
    };
    let found = discover(root.path(), &host_interface(&sushy), Some(&right), MACHINE).await;
    assert_eq!(found.error, None, "{found:?}\n{}", sushy.log());
    assert_eq!(found.host_nic, "usb0");
    assert_eq!(
        found.service_url,
        format!("https://127.0.0.1:{}", sushy.port)
    );
    assert_eq!(found.system_id, MACHINE);
    assert_eq!(found.manager_id, MACHINE);
    assert_eq!(found.address, "192.0.2.47");
    assert_eq!(found.certificate_sha256, sushy.cert_sha256());

    // A wrong password: the service root (public) is read, then the refusal is reported.
    let wrong = BmcCredentials {
        username: USER.into(),
        password: "not-it".into(),
    };
    let found = discover(root.path(), &host_interface(&sushy), Some(&wrong), MACHINE).await;
    let error = found.error.clone().expect("an error");
    assert!(error.contains("401"), "{error}");
    assert!(
        !error.contains("not-it"),
        "the password is in the error: {error}"
    );
    assert_eq!(found.certificate_sha256, sushy.cert_sha256());
    assert_eq!(found.address, "");

    // No system with this machine's UUID among several: said so, nothing guessed.
    let found = discover(
        root.path(),
        &host_interface(&sushy),
        Some(&right),
        "00000000-0000-0000-0000-000000000000",
    )
    .await;
    let error = found.error.expect("an error");
    assert!(error.contains("none of its 3 systems"), "{error}");

    // The record's USB NIC is not in this machine: said so.
    let mut hi = host_interface(&sushy);
    if let Some(d) = hi.device.as_mut() {
        d.product = "ffff".into();
    }
    let none = tempfile::tempdir().expect("tempdir");
    write(
        none.path(),
        "sys/class/net/lo/address",
        "00:00:00:00:00:00\n",
    );
    let found = discover(none.path(), &hi, Some(&right), MACHINE).await;
    assert!(
        found
            .error
            .as_deref()
            .is_some_and(|e| e.contains("04b3:ffff")),
        "{found:?}"
    );
}

/// A manager that reports only its host-interface side (link-local) has no address the
/// appliance could use: an error that says so, with the manager and system it did find.
#[tokio::test]
async fn a_manager_without_a_management_address_is_an_error() {
    let sushy = Sushy::start_with(SushyOptions {
        tls: true,
        auth: true,
        systems: vec![MACHINE.into()],
        manager_nics: vec![("hostif", "169.254.95.118")],
        ..Default::default()
    });
    let root = fixture_root();
    let creds = BmcCredentials {
        username: USER.into(),
        password: PASSWORD.into(),
    };
    let found = discover(root.path(), &host_interface(&sushy), Some(&creds), MACHINE).await;
    let error = found.error.clone().expect("an error");
    assert!(
        error.contains("no IPv4 address on the management network"),
        "{error}"
    );
    assert_eq!(
        (found.system_id.as_str(), found.manager_id.as_str()),
        (MACHINE, MACHINE)
    );
}
