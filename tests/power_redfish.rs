//! The redfish driver against sushy-tools' emulator (fake driver, with HTTP
//! basic auth, plain and with a self-signed certificate), plus small real
//! HTTP servers for the faults sushy cannot show (a BMC that drops the boot
//! override, one that never answers). Everything on 127.0.0.1.

mod power_support;

use std::net::TcpListener as StdTcpListener;
use std::time::Duration;

use axum::routing::get;
use axum::{Json, Router};
use rackbox::power::{
    PowerError, PowerState, PowerType, driver_for, driver_with_timeout, query_many,
};
use serde_json::{Value, json};

use power_support::{PASSWORD, Sushy, USER, map, wait_until_async};

const POLL: Duration = Duration::from_millis(500);
/// sushy's fake driver applies a power change 1 to 11 s after the request.
const TRIES: u32 = 60;

fn assert_no_password(text: &str) {
    assert!(!text.contains(PASSWORD), "the password leaked: {text}");
}

/// GETs a path of the emulator directly, as a second opinion.
async fn raw_get(sushy: &Sushy, path: &str) -> Value {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let client = reqwest::Client::builder()
        .no_proxy()
        .build()
        .expect("client");
    client
        .get(format!("{}{path}", sushy.url()))
        .basic_auth(USER, Some(PASSWORD))
        .send()
        .await
        .expect("GET")
        .json()
        .await
        .expect("JSON")
}

async fn the_system_path(sushy: &Sushy) -> String {
    let systems = raw_get(sushy, "/redfish/v1/Systems").await;
    systems["Members"][0]["@odata.id"]
        .as_str()
        .expect("a member")
        .to_owned()
}

#[tokio::test]
async fn power_on_off_and_cycle_against_sushy() {
    let sushy = Sushy::start(false);
    let driver = driver_for(PowerType::Redfish, &sushy.params()).expect("driver");
    let state_is = |want: PowerState| {
        let driver = &driver;
        async move {
            wait_until_async(TRIES, POLL, || async {
                driver.query().await.ok() == Some(want)
            })
            .await
        }
    };

    assert_eq!(driver.query().await.expect("query"), PowerState::Off);
    driver.power_on().await.expect("power on");
    assert!(state_is(PowerState::On).await, "never on: {}", sushy.log());
    let path = the_system_path(&sushy).await;
    assert_eq!(raw_get(&sushy, &path).await["PowerState"], "On");

    driver.power_off(false).await.expect("power off (ForceOff)");
    assert!(
        state_is(PowerState::Off).await,
        "never off: {}",
        sushy.log()
    );
    driver
        .power_off(true)
        .await
        .expect("soft off when off is a no-op");

    driver
        .power_cycle()
        .await
        .expect("cycle from off switches on");
    assert!(state_is(PowerState::On).await, "cycle did not switch on");
    driver.power_off(true).await.expect("GracefulShutdown");
    assert!(
        state_is(PowerState::Off).await,
        "graceful shutdown not done"
    );
}

#[tokio::test]
async fn boot_override_read_back_is_reported_honestly() {
    let sushy = Sushy::start(false);
    let driver = driver_for(PowerType::Redfish, &sushy.params()).expect("driver");
    let boot = driver
        .set_boot_network_once(true)
        .await
        .expect("one-time PXE");
    assert!(boot.confirmed);

    // What the emulator really holds, asked directly.
    let path = the_system_path(&sushy).await;
    let system = raw_get(&sushy, &path).await;
    let held = &system["Boot"];
    assert_eq!(held["BootSourceOverrideTarget"], "Pxe");
    let enabled = held["BootSourceOverrideEnabled"].as_str().expect("enabled");
    assert!(
        boot.read_back
            .contains(&format!("BootSourceOverrideEnabled {enabled}")),
        "rackbox reports {boot:?}, the emulator holds {held}"
    );
    // sushy's fake driver keeps Once as Continuous: the quirk is reported.
    assert_eq!(boot.persistent, Some(enabled == "Continuous"));
    if enabled == "Continuous" {
        assert!(
            boot.warnings.iter().any(|w| w.contains("Continuous")),
            "{boot:?}"
        );
    }
    assert_eq!(boot.efi, Some(held["BootSourceOverrideMode"] == "UEFI"));
}

#[tokio::test]
async fn node_id_selects_the_system_or_names_the_problem() {
    let sushy = Sushy::start(false);
    let path = the_system_path(&sushy).await;
    let id = path.rsplit('/').next().expect("id").to_owned();

    let mut params = sushy.params();
    params.insert("node_id".into(), json!(id));
    let driver = driver_for(PowerType::Redfish, &params).expect("driver");
    assert_eq!(driver.query().await.expect("query"), PowerState::Off);

    params.insert("node_id".into(), json!("no-such-system"));
    let driver = driver_for(PowerType::Redfish, &params).expect("driver");
    let err = driver.query().await.expect_err("unknown node");
    let text = err.to_string();
    assert!(matches!(err, PowerError::Params(_)), "{err:?}");
    assert!(text.contains("node_id") && text.contains(&id), "{text}");
}

#[tokio::test]
async fn wrong_password_is_an_authentication_error() {
    let sushy = Sushy::start(false);
    let mut params = sushy.params();
    params.insert("power_pass".into(), json!("not-the-password"));
    let driver = driver_for(PowerType::Redfish, &params).expect("driver");
    let err = driver.power_on().await.expect_err("wrong password");
    assert!(
        matches!(err, PowerError::AuthenticationFailed { .. }),
        "{err:?}"
    );
    let text = format!("{err} / {err:?} / {driver:?}");
    assert!(text.contains("401"), "{text}");
    assert!(!text.contains("not-the-password"), "{text}");
    assert_no_password(&text);
}

#[tokio::test]
async fn self_signed_certificate_needs_insecure_skip_verify() {
    let sushy = Sushy::start(true);
    let driver = driver_for(PowerType::Redfish, &sushy.params()).expect("driver");
    let err = driver.query().await.expect_err("untrusted certificate");
    assert!(matches!(err, PowerError::Tls { .. }), "{err:?}");
    let text = err.to_string();
    assert!(text.contains("certificate"), "{text}");
    assert!(text.contains("insecure_skip_verify"), "{text}");
    assert_no_password(&format!("{err:?}"));

    let mut params = sushy.params();
    params.insert("insecure_skip_verify".into(), json!(true));
    let driver = driver_for(PowerType::Redfish, &params).expect("driver");
    assert_eq!(
        driver.query().await.expect("query over TLS"),
        PowerState::Off
    );
}

#[tokio::test]
async fn pinned_certificate_is_trusted_without_insecure_skip_verify() {
    let sushy = Sushy::start(true);
    let pin = sushy.cert_sha256();
    let mut params = sushy.params();
    params.insert("certificate_sha256".into(), json!(pin));
    let driver = driver_for(PowerType::Redfish, &params).expect("driver");
    assert_eq!(
        driver
            .query()
            .await
            .expect("query with the pinned certificate"),
        PowerState::Off
    );
    driver.power_on().await.expect("power on over pinned TLS");
    let on = wait_until_async(TRIES, POLL, || async {
        driver.query().await.ok() == Some(PowerState::On)
    })
    .await;
    assert!(on, "never on: {}", sushy.log());
    driver
        .power_off(false)
        .await
        .expect("power off over pinned TLS");
    let off = wait_until_async(TRIES, POLL, || async {
        driver.query().await.ok() == Some(PowerState::Off)
    })
    .await;
    assert!(off, "never off: {}", sushy.log());
}

#[tokio::test]
async fn a_wrong_pin_is_a_tls_error_naming_both_fingerprints() {
    let sushy = Sushy::start(true);
    let real = sushy.cert_sha256();
    // The real fingerprint with its first byte changed.
    let first = u8::from_str_radix(&real[..2], 16).expect("hex");
    let wrong = format!("{:02x}{}", first ^ 0xff, &real[2..]);
    let mut params = sushy.params();
    params.insert("certificate_sha256".into(), json!(wrong));
    // The pin wins over insecure_skip_verify: a wrong pin is refused even so.
    for skip in [false, true] {
        params.insert("insecure_skip_verify".into(), json!(skip));
        let driver = driver_for(PowerType::Redfish, &params).expect("driver");
        let err = driver
            .query()
            .await
            .expect_err("a certificate that is not the pinned one");
        assert!(
            matches!(err, PowerError::Tls { pinned: true, .. }),
            "{err:?}"
        );
        let text = err.to_string();
        assert!(
            text.contains(&real),
            "the presented fingerprint is missing: {text}"
        );
        assert!(
            text.contains(&wrong),
            "the pinned fingerprint is missing: {text}"
        );
        assert!(
            text.contains("the BMC presented a certificate with SHA-256"),
            "{text}"
        );
        assert!(
            !text.contains("insecure_skip_verify=true"),
            "a pinned machine is not told to switch checks off: {text}"
        );
        assert_no_password(&format!("{err} / {err:?} / {driver:?}"));
    }
}

#[tokio::test]
async fn openssl_fingerprint_form_is_accepted() {
    let sushy = Sushy::start(true);
    let openssl = sushy.cert_fingerprint_openssl();
    // openssl prints uppercase colon-separated pairs: the same digest.
    assert_eq!(
        openssl.replace(':', "").to_ascii_lowercase(),
        sushy.cert_sha256()
    );
    assert!(openssl.contains(':'), "{openssl}");
    let mut params = sushy.params();
    params.insert("certificate_sha256".into(), json!(openssl));
    let driver = driver_for(PowerType::Redfish, &params).expect("driver");
    assert_eq!(
        driver
            .query()
            .await
            .expect("query with openssl's form of the pin"),
        PowerState::Off
    );
}

/// A Redfish service that accepts the boot override PATCH and forgets it.
async fn forgetful_service() -> String {
    async fn systems() -> Json<Value> {
        Json(json!({"Members": [{"@odata.id": "/redfish/v1/Systems/1"}]}))
    }
    async fn system() -> Json<Value> {
        Json(json!({
            "Id": "1",
            "PowerState": "On",
            "Boot": {
                "BootSourceOverrideTarget": "Hdd",
                "BootSourceOverrideEnabled": "Disabled",
                "BootSourceOverrideMode": "UEFI"
            },
            "Actions": {"#ComputerSystem.Reset": {
                "target": "/redfish/v1/Systems/1/Actions/ComputerSystem.Reset"}}
        }))
    }
    async fn accepted() -> axum::http::StatusCode {
        axum::http::StatusCode::NO_CONTENT
    }
    let app = Router::new()
        .route("/redfish/v1/Systems", get(systems))
        .route("/redfish/v1/Systems/1", get(system).patch(accepted));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    format!("http://{addr}")
}

#[tokio::test]
async fn a_service_that_drops_the_boot_override_is_an_error() {
    let url = forgetful_service().await;
    let params = map(json!({"power_address": url, "power_user": USER, "power_pass": PASSWORD}));
    let driver = driver_for(PowerType::Redfish, &params).expect("driver");
    let err = driver
        .set_boot_network_once(true)
        .await
        .expect_err("dropped override");
    assert!(
        matches!(err, PowerError::BootOverrideNotKept { .. }),
        "{err:?}"
    );
    let text = err.to_string();
    assert!(
        text.contains(
            "accepted the one-time PXE boot override but reads back BootSourceOverrideTarget Hdd"
        ),
        "{text}"
    );
}

/// A TCP port that accepts connections and never answers.
fn mute_service() -> (StdTcpListener, String) {
    let listener = StdTcpListener::bind("127.0.0.1:0").expect("bind");
    let url = format!("http://{}", listener.local_addr().expect("addr"));
    (listener, url)
}

#[tokio::test]
async fn a_service_that_never_answers_times_out_and_nobody_is_unreachable() {
    // The kernel completes the handshake (backlog); nobody ever reads.
    let (_mute, url) = mute_service();
    let params = map(json!({"power_address": url, "power_user": USER, "power_pass": PASSWORD}));
    let driver =
        driver_with_timeout(PowerType::Redfish, &params, Duration::from_secs(2)).expect("driver");
    let err = driver.query().await.expect_err("mute service");
    assert!(matches!(err, PowerError::Timeout { .. }), "{err:?}");
    assert!(err.is_transient());

    let port = power_support::free_tcp_port();
    let params = map(json!({"power_address": format!("http://127.0.0.1:{port}"),
        "power_user": USER, "power_pass": PASSWORD}));
    let driver =
        driver_with_timeout(PowerType::Redfish, &params, Duration::from_secs(2)).expect("driver");
    let err = driver.power_on().await.expect_err("nobody there");
    assert!(matches!(err, PowerError::Unreachable { .. }), "{err:?}");
    assert!(
        err.to_string().contains(&format!("127.0.0.1:{port}")),
        "{err}"
    );
}

#[tokio::test]
async fn a_dead_service_does_not_hold_up_the_others() {
    let sushy = Sushy::start(false);
    let (_mute, mute_url) = mute_service();
    let refused = format!("http://127.0.0.1:{}", power_support::free_tcp_port());
    let dead =
        |url: &str| map(json!({"power_address": url, "power_user": USER, "power_pass": PASSWORD}));
    let machines = vec![
        ("mute", PowerType::Redfish, dead(&mute_url)),
        ("refused", PowerType::Redfish, dead(&refused)),
        ("sushy", PowerType::Redfish, sushy.params()),
    ];
    let results = query_many(machines, 2, Duration::from_secs(3)).await;
    assert!(
        matches!(results[0].1, Err(PowerError::Timeout { .. })),
        "{:?}",
        results[0]
    );
    assert!(
        matches!(results[1].1, Err(PowerError::Unreachable { .. })),
        "{:?}",
        results[1]
    );
    assert_eq!(
        results[2].1.as_ref().ok(),
        Some(&PowerState::Off),
        "{:?}",
        results[2]
    );
}
