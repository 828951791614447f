//! The first-boot setup on the control page, against real daemons: the redirect of `/`, the
//! steps that cannot be skipped, a BMC added and power-tested against ipmi_sim, an API key shown
//! once; and in network namespaces, managed DHCP refused while dnsmasq answers, then chosen,
//! applied by the daemon's restart and answering a real DHCP client.

mod common;
mod netns;
mod power_support;

use std::time::Duration;

use common::browser::Browser;
use common::{ADMIN_PASSWORD, Api, Daemon};
use netns::{Lab, Rackbox, bound_ips, require_tools};
use nix::sys::signal::Signal;
use power_support::{IpmiSim, SimMode};
use reqwest::Method;
use serde_json::json;

#[tokio::test]
async fn the_setup_leads_an_admin_and_adds_and_tests_the_first_bmc() {
    let daemon = Daemon::start();
    let api = Api::new(&daemon.url);
    let admin = api.login("admin", ADMIN_PASSWORD).await;
    let (s, v) = api
        .call(
            Method::POST,
            "/api/v1/users",
            Some(&admin),
            Some(json!({"username": "alice", "password": "alice-password"})),
        )
        .await;
    assert_eq!(s, 201, "{v}");
    let page = Browser::login(&daemon.url, "admin", ADMIN_PASSWORD).await;
    let csrf = page.csrf().await;

    // Until the setup is finished, `/` leads the admin to it; a user sees the overview.
    let r = page
        .http
        .get(format!("{}/", daemon.url))
        .header("cookie", &page.cookie)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 303);
    assert_eq!(r.headers()["location"], "/setup");
    let alice = Browser::login(&daemon.url, "alice", "alice-password").await;
    let (s, _) = alice.get("/").await;
    assert_eq!(s, 200);
    let (s, _) = alice.get("/setup").await;
    assert_eq!(s, 403, "the setup is for admins");
    let (s, html) = page.get("/setup").await;
    assert_eq!(s, 200);
    assert!(html.contains("1. The boot network"), "{html}");

    // It cannot be finished before the boot network is decided.
    let (s, _, body) = page
        .post("/setup/finish", "same-origin", &[("csrf", &csrf)])
        .await;
    assert_eq!(s, 409, "{body}");
    assert!(
        body.contains("the boot network is not decided yet"),
        "{body}"
    );

    // A BMC that answers: added, and its power state read at once.
    let sim = IpmiSim::start(SimMode::BootFlagsKept);
    let address = format!("127.0.0.1:{}", sim.port);
    let user = sim.params()["power_user"].as_str().unwrap().to_string();
    let password = sim.params()["power_pass"].as_str().unwrap().to_string();
    let (s, _, body) = page
        .post(
            "/setup/bmc",
            "same-origin",
            &[
                ("csrf", &csrf),
                ("hostname", "first-1"),
                ("mac", "52:54:00:5e:70:01"),
                ("power_type", "ipmi"),
                ("address", &address),
                ("user", &user),
                ("password", &password),
            ],
        )
        .await;
    assert_eq!(s, 200, "{body}");
    assert!(
        body.contains("first-1: the BMC answers, power is off"),
        "{body}"
    );
    assert!(
        body.contains("3. The first BMC <span class=\"status ok\">done"),
        "{body}"
    );
    // One that does not: added, with the BMC's failure said.
    let (s, _, body) = page
        .post(
            "/setup/bmc",
            "same-origin",
            &[
                ("csrf", &csrf),
                ("hostname", "second-1"),
                ("mac", "52:54:00:5e:70:02"),
                ("power_type", "ipmi"),
                (
                    "address",
                    &format!("127.0.0.1:{}", power_support::free_udp_port()),
                ),
                ("user", "admin"),
                ("password", "wrong"),
            ],
        )
        .await;
    assert_eq!(s, 502, "{body}");
    assert!(
        body.contains("second-1: added, but the BMC did not answer"),
        "{body}"
    );
    assert!(body.contains("power control failed"), "{body}");

    // An API key, shown this once.
    let (s, _, body) = page
        .post(
            "/setup/token",
            "same-origin",
            &[("csrf", &csrf), ("name", "juju"), ("kind", "native")],
        )
        .await;
    assert_eq!(s, 201, "{body}");
    let at = body.find("readonly value=\"").expect("the key is shown") + 16;
    let token = &body[at..body[at..].find('"').unwrap() + at];
    let (s, who) = api
        .call(Method::GET, "/api/v1/whoami", Some(token), None)
        .await;
    assert_eq!((s, who["username"].as_str()), (200, Some("admin")));
    let (_, html) = page.get("/setup").await;
    assert!(!html.contains(token), "a key is shown once");

    // No network boot for now, then finished: `/` is the overview.
    page.finish_setup_without_network_boot().await;
    let (s, html) = page.get("/").await;
    assert_eq!(s, 200);
    assert!(
        html.contains("second-1") && html.contains("is unreachable"),
        "the overview shows the BMC that failed: {html}"
    );
}

/// A request to the page of the daemon inside `ns` (HTTP on that namespace's loopback).
struct NsPage {
    ns: String,
    cookie: String,
}

impl NsPage {
    fn client() -> reqwest::Client {
        let _ = rustls::crypto::ring::default_provider().install_default();
        reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .unwrap()
    }

    fn login(lab: &Lab, ns: &str) -> NsPage {
        let cookie = lab.in_netns(ns, || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            rt.block_on(async {
                let r = NsPage::client()
                    .post("http://127.0.0.1:5240/login")
                    .header("sec-fetch-site", "same-origin")
                    .form(&[("username", "admin"), ("password", netns::PASSWORD)])
                    .send()
                    .await
                    .unwrap();
                assert_eq!(r.status(), 303);
                let set = r.headers()["set-cookie"].to_str().unwrap();
                set.split(';').next().unwrap().to_string()
            })
        });
        NsPage {
            ns: ns.to_string(),
            cookie,
        }
    }

    /// GET (no form) or POST (a form, the CSRF token added): status and body.
    fn call(&self, lab: &Lab, path: &str, form: Option<Vec<(&str, &str)>>) -> (u16, String) {
        let cookie = self.cookie.clone();
        let path = path.to_string();
        let form: Option<Vec<(String, String)>> = form.map(|f| {
            f.iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect()
        });
        lab.in_netns(&self.ns, move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            rt.block_on(async move {
                let http = NsPage::client();
                let url = format!("http://127.0.0.1:5240{path}");
                let r = match form {
                    None => http.get(&url).header("cookie", &cookie).send().await,
                    Some(mut form) => {
                        let html = http
                            .get("http://127.0.0.1:5240/setup")
                            .header("cookie", &cookie)
                            .send()
                            .await
                            .unwrap()
                            .text()
                            .await
                            .unwrap();
                        let at = html.find("name=\"csrf\" value=\"").expect("a CSRF field") + 19;
                        form.push(("csrf".into(), html[at..at + 32].to_string()));
                        http.post(&url)
                            .header("cookie", &cookie)
                            .header("sec-fetch-site", "same-origin")
                            .form(&form)
                            .send()
                            .await
                    }
                };
                match r {
                    Ok(r) => (r.status().as_u16(), r.text().await.unwrap_or_default()),
                    Err(e) => (0, e.to_string()),
                }
            })
        })
    }
}

#[test]
fn managed_dhcp_is_refused_beside_another_server_and_then_chosen_applied_and_answering() {
    require_tools(&[
        ("ip", "iproute2"),
        ("udhcpc", "udhcpc"),
        ("dnsmasq", "dnsmasq-base"),
        ("curl", "curl"),
    ]);
    let mut lab = Lab::new();
    let sw = lab.switch("sw");
    let srv = lab.netns("srv");
    lab.plug(&sw, &srv, "eth0", Some("02:00:00:00:00:01"));
    lab.addr(&srv, "eth0", "192.0.2.1/24");
    let site = lab.netns("site");
    lab.plug(&sw, &site, "eth0", Some("02:00:00:00:00:02"));
    lab.addr(&site, "eth0", "192.0.2.2/24");
    let client = lab.netns("c0");
    lab.plug(&sw, &client, "eth0", Some("52:54:00:00:01:01"));
    let (dnsmasq, _) = lab.dnsmasq(&site, "192.0.2.50", "192.0.2.60");
    // A fresh appliance: the config names no boot interface.
    let mut rb = Rackbox::start(&mut lab, &srv, "rb", "");
    let page = NsPage::login(&lab, &srv);
    let (s, html) = page.call(&lab, "/setup", None);
    assert_eq!(s, 200, "{html}");
    assert!(
        html.contains("02:00:00:00:00:01, 192.0.2.1/24"),
        "eth0 is offered: {html}"
    );
    assert!(
        html.contains("value=\"192.0.2.128\""),
        "a pool is suggested: {html}"
    );
    let managed = vec![
        ("interface", "eth0"),
        ("mode", "managed"),
        ("cidr", "192.0.2.0/24"),
        ("range_start", "192.0.2.100"),
        ("range_end", "192.0.2.110"),
    ];

    // dnsmasq answers on eth0: managed DHCP is refused, naming it.
    let (s, body) = page.call(&lab, "/setup/boot", Some(managed.clone()));
    assert_eq!(s, 409, "{body}");
    assert!(
        body.contains("another DHCP server answers on eth0: 192.0.2.2"),
        "{body}"
    );
    assert!(body.contains("choose proxy mode"), "{body}");
    // A pool holding the appliance's own address is refused before any probe.
    let mut own = managed.clone();
    own[3] = ("range_start", "192.0.2.1");
    let (s, body) = page.call(&lab, "/setup/boot", Some(own));
    assert_eq!(s, 400, "{body}");
    assert!(body.contains("own address 192.0.2.1"), "{body}");

    // dnsmasq switched off: managed is chosen, the daemon restarts with it.
    lab.signal(dnsmasq, Signal::SIGTERM);
    lab.wait(dnsmasq, Duration::from_secs(10));
    let (s, body) = page.call(&lab, "/setup/boot", Some(managed));
    assert_eq!(s, 200, "{body}");
    assert!(
        body.contains("Starting the boot network on eth0 (managed)"),
        "{body}"
    );
    lab.wait_for(Duration::from_secs(30), "the daemon to serve again", || {
        lab.read(&rb.log).matches("rackbox is serving").count() >= 2
    });
    // The session outlived the restart; the step is done.
    let mut html = String::new();
    lab.wait_for(
        Duration::from_secs(10),
        "the setup page after the restart",
        || {
            let (s, h) = page.call(&lab, "/setup", None);
            html = h;
            s == 200
        },
    );
    assert!(html.contains("<strong>eth0</strong> (managed)"), "{html}");

    // A real DHCP client gets an address from the pool the setup chose.
    let script = netns::write_udhcpc_script(&lab);
    let out = lab.path("c0.out");
    let _ = netns::run(
        lab.cmd(&client, "udhcpc")
            .args([
                "-f", "-q", "-n", "-t", "5", "-T", "1", "-i", "eth0", "-s", &script,
            ])
            .env("UDHCPC_OUT", &out),
    );
    let log = std::fs::read_to_string(&out).unwrap_or_default();
    let ips = bound_ips(&log);
    assert!(
        ips.iter()
            .any(|ip| ip.starts_with("192.0.2.1") && ip.len() == 11),
        "udhcpc got {ips:?}\n{log}\n{}",
        lab.read(&rb.log)
    );

    // Finished: `/` is the overview; after another restart, the network comes back from the
    // store.
    let (s, _) = page.call(&lab, "/setup/finish", Some(Vec::new()));
    assert_eq!(s, 303);
    let (s, _) = page.call(&lab, "/", None);
    assert_eq!(s, 200);
    lab.signal(rb.index, Signal::SIGTERM);
    assert_eq!(lab.wait(rb.index, Duration::from_secs(30)), Some(true));
    rb.restart(&mut lab);
    let (s, html) = page.call(&lab, "/network", None);
    assert_eq!(s, 200);
    assert!(html.contains("eth0") && html.contains("managed"), "{html}");
    let (s, _) = page.call(&lab, "/", None);
    assert_eq!(s, 200, "the setup stays finished");
}
