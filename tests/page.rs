//! The control page over HTTP, against a real daemon: sessions, CSRF, escaping, secrets, actions
//! with and without their refusals, and the live stream. (tests/page_browser.rs drives the same
//! page in Chromium.)

mod common;
mod images_support;

use std::time::Duration;

use common::browser::Browser;
use common::{ADMIN_PASSWORD, Api, Daemon};
use reqwest::Method;
use reqwest::redirect::Policy;
use serde_json::json;

/// Makes the user alice (password "alice-password").
async fn add_alice(api: &Api, admin: &str) {
    let (s, v) = api
        .call(
            Method::POST,
            "/api/v1/users",
            Some(admin),
            Some(json!({"username": "alice", "password": "alice-password"})),
        )
        .await;
    assert_eq!(s, 201, "{v}");
}

/// A daemon over a store seeded with Ready machines of these ids (the temp dir must outlive it).
fn with_ready_machines(ids: &[&str]) -> (tempfile::TempDir, Daemon) {
    let dir = tempfile::tempdir().unwrap();
    let ready = |id: &&str| common::machine(id, rackbox::model::Status::Ready, 2, 2048);
    common::seed(dir.path(), ids.iter().map(ready).collect());
    let daemon = Daemon::start_in(dir.path(), "");
    (dir, daemon)
}

async fn add_machine(api: &Api, admin: &str, body: serde_json::Value) -> String {
    let (s, m) = api
        .call(Method::POST, "/api/v1/machines", Some(admin), Some(body))
        .await;
    assert_eq!(s, 201, "{m}");
    m["system_id"].as_str().unwrap().to_string()
}

#[tokio::test]
async fn a_session_logs_in_acts_with_its_csrf_token_and_logs_out() {
    let daemon = Daemon::start();
    let api = Api::new(&daemon.url);
    let admin = api.login("admin", ADMIN_PASSWORD).await;
    let id = add_machine(
        &api,
        &admin,
        json!({"hostname": "web-1", "mac_addresses": ["52:54:00:10:00:01"], "commission": false}),
    )
    .await;
    add_machine(
        &api,
        &admin,
        json!({"hostname": "db-1", "mac_addresses": ["52:54:00:10:00:02"], "commission": false}),
    )
    .await;

    // Without a session: the login form, remembering where to go.
    let anonymous = reqwest::Client::builder()
        .redirect(Policy::none())
        .build()
        .unwrap();
    let r = anonymous
        .get(format!("{}/machines?q=web", daemon.url))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 303);
    assert_eq!(r.headers()["location"], "/login?next=%2Fmachines%3Fq%3Dweb");
    let r = anonymous
        .post(format!("{}/login", daemon.url))
        .form(&[("username", "admin"), ("password", "wrong-password")])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
    assert!(
        r.text()
            .await
            .unwrap()
            .contains("wrong username or password")
    );

    let page = Browser::login(&daemon.url, "admin", ADMIN_PASSWORD).await;
    let (s, html) = page.get("/machines?q=web").await;
    assert_eq!(s, 200);
    assert!(html.contains("web-1") && !html.contains("db-1"), "{html}");
    assert!(
        html.contains("<strong>1</strong> of 2 machines match"),
        "{html}"
    );

    let csrf = page.csrf().await;
    // No token, a wrong one, or another site: refused, and the machine is unchanged.
    let act = format!("/machines/{id}/act/mark_broken");
    let (s, _, body) = page
        .post(&act, "same-origin", &[("reason", "fan died")])
        .await;
    assert_eq!(s, 403, "{body}");
    assert!(body.contains("CSRF"), "{body}");
    let (s, _, _) = page
        .post(
            &act,
            "same-origin",
            &[
                ("csrf", "00000000000000000000000000000000"),
                ("reason", "fan died"),
            ],
        )
        .await;
    assert_eq!(s, 403);
    let (s, _, body) = page
        .post(
            &act,
            "cross-site",
            &[("csrf", &csrf), ("reason", "fan died")],
        )
        .await;
    assert_eq!(s, 403);
    assert!(body.contains("another site"), "{body}");
    let (_, m) = api
        .call(
            Method::GET,
            &format!("/api/v1/machines/{id}"),
            Some(&admin),
            None,
        )
        .await;
    assert_eq!(m["status"], "new");

    // With it: done, and the machine's page follows.
    let (s, location, _) = page
        .post(
            &act,
            "same-origin",
            &[("csrf", &csrf), ("reason", "fan died")],
        )
        .await;
    assert_eq!(
        (s, location.as_deref()),
        (303, Some(&*format!("/machines/{id}")))
    );
    let (_, m) = api
        .call(
            Method::GET,
            &format!("/api/v1/machines/{id}"),
            Some(&admin),
            None,
        )
        .await;
    assert_eq!(m["status"], "broken");
    let (_, html) = page.get(&format!("/machines/{id}")).await;
    assert!(
        html.contains("Mark fixed…"),
        "a broken machine offers mark fixed"
    );
    assert!(!html.contains("Deploy…"), "nor deploy");
    assert!(
        html.contains("<th scope=\"col\">Deployed</th>") && html.contains("OS default"),
        "an interface without a link says who configures it"
    );

    // An action the status does not allow: 409 with the reason, on the machine's page.
    let (s, _, body) = page
        .post(
            &format!("/machines/{id}/act/deploy"),
            "same-origin",
            &[("csrf", &csrf)],
        )
        .await;
    assert_eq!(s, 409, "{body}");
    assert!(body.contains("Deploy was refused"), "{body}");
    assert!(
        body.contains("Broken"),
        "the refusal names the status: {body}"
    );

    // Logout ends the session: the old cookie leads to the login form again.
    let (s, location, _) = page
        .post("/logout", "same-origin", &[("csrf", &csrf)])
        .await;
    assert_eq!((s, location.as_deref()), (303, Some("/login")));
    let r = page
        .http
        .get(format!("{}/machines", daemon.url))
        .header("cookie", &page.cookie)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 303);
    // A session is not an API token.
    let session_value = page.cookie.split_once('=').unwrap().1;
    let (s, _) = api
        .call(Method::GET, "/api/v1/whoami", Some(session_value), None)
        .await;
    assert_eq!(s, 401);
}

#[tokio::test]
async fn user_text_is_escaped_and_power_secrets_reach_only_admins() {
    let daemon = Daemon::start();
    let api = Api::new(&daemon.url);
    let admin = api.login("admin", ADMIN_PASSWORD).await;
    add_alice(&api, &admin).await;
    let id = add_machine(
        &api,
        &admin,
        json!({"hostname": "node-1", "mac_addresses": ["52:54:00:10:00:03"], "commission": false,
               "power_type": "ipmi",
               "power_parameters": {"power_address": "127.0.0.1", "power_user": "root", "power_pass": "hunter2-secret"}}),
    )
    .await;
    let evil = "<script>alert(1)</script>";
    let (s, m) = api
        .call(
            Method::PATCH,
            &format!("/api/v1/machines/{id}"),
            Some(&admin),
            Some(json!({"description": evil, "tags": [evil]})),
        )
        .await;
    assert!(s == 200 || s == 400, "{m}");
    if s == 400 {
        // Tags are names; the description alone carries the script then.
        let (s, m) = api
            .call(
                Method::PATCH,
                &format!("/api/v1/machines/{id}"),
                Some(&admin),
                Some(json!({"description": evil})),
            )
            .await;
        assert_eq!(s, 200, "{m}");
    }
    let (s, _) = api
        .call(
            Method::POST,
            &format!("/api/v1/machines/{id}/actions/mark_broken"),
            Some(&admin),
            Some(json!({"reason": evil})),
        )
        .await;
    assert_eq!(s, 200);

    let admin_page = Browser::login(&daemon.url, "admin", ADMIN_PASSWORD).await;
    admin_page.finish_setup_without_network_boot().await;
    for path in ["/", "/machines", &format!("/machines/{id}")] {
        let (s, html) = admin_page.get(path).await;
        assert_eq!(s, 200, "{path}");
        assert!(!html.contains(evil), "{path} shows the script unescaped");
    }
    let (_, html) = admin_page.get(&format!("/machines/{id}")).await;
    assert!(
        html.contains("&#60;script&#62;") || html.contains("&lt;script&gt;"),
        "{html}"
    );
    assert!(
        html.contains("hunter2-secret"),
        "admins see the BMC password"
    );

    // alice may see the machine (it has no owner) but not its BMC password.
    let alice_page = Browser::login(&daemon.url, "alice", "alice-password").await;
    let (s, html) = alice_page.get(&format!("/machines/{id}")).await;
    assert_eq!(s, 200);
    assert!(html.contains("node-1"));
    assert!(!html.contains("hunter2-secret"), "{html}");
    assert!(html.contains("********"));
}

/// Reads the stream until an event named `name` arrives, and returns its data.
async fn next_event(stream: &mut reqwest::Response, name: &str) -> String {
    let (_, data) = next_event_with_id(stream, name).await;
    data
}

/// Reads the stream until an event named `name` arrives: its id and its data.
async fn next_event_with_id(stream: &mut reqwest::Response, name: &str) -> (String, String) {
    let mut buffer = String::new();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    loop {
        let chunk = tokio::time::timeout_at(deadline, stream.chunk())
            .await
            .unwrap_or_else(|_| panic!("no {name} event; read: {buffer}"))
            .unwrap()
            .expect("the stream stays open");
        buffer.push_str(&String::from_utf8_lossy(&chunk));
        for block in buffer.split("\n\n") {
            if block.lines().any(|l| l == format!("event: {name}")) {
                let field = |key: &str| {
                    block
                        .lines()
                        .filter_map(|l| {
                            l.strip_prefix(&format!("{key}: "))
                                .or(l.strip_prefix(&format!("{key}:")))
                        })
                        .collect::<Vec<_>>()
                        .join("\n")
                };
                return (field("id"), field("data"));
            }
        }
    }
}

#[tokio::test]
async fn the_stream_sends_a_watched_row_when_it_changes_and_a_reconnect_catches_up_from_its_event_id()
 {
    let daemon = Daemon::start();
    let api = Api::new(&daemon.url);
    let admin = api.login("admin", ADMIN_PASSWORD).await;
    let id = add_machine(
        &api,
        &admin,
        json!({"hostname": "live-1", "mac_addresses": ["52:54:00:10:00:04"], "commission": false}),
    )
    .await;
    let page = Browser::login(&daemon.url, "admin", ADMIN_PASSWORD).await;
    let mut stream = page
        .http
        .get(format!(
            "{}/ui/stream?watch=row:{id},detail:{id}",
            daemon.url
        ))
        .header("cookie", &page.cookie)
        .send()
        .await
        .unwrap();
    assert_eq!(stream.status(), 200);
    assert!(
        stream.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/event-stream")
    );
    // The stream subscribed to changes before it answered: the change below cannot be missed.
    let (s, _) = api
        .call(
            Method::POST,
            &format!("/api/v1/machines/{id}/actions/mark_broken"),
            Some(&admin),
            Some(json!({"reason": "fan died"})),
        )
        .await;
    assert_eq!(s, 200);
    let (seen, fragment) = next_event_with_id(&mut stream, "fragment").await;
    assert!(fragment.contains(&format!("id=\"m-{id}\"")), "{fragment}");
    assert!(
        fragment.contains(&format!("id=\"summary-{id}\"")),
        "{fragment}"
    );
    assert!(fragment.contains("Broken"), "{fragment}");
    drop(stream);

    // The event id is rackbox's event sequence number: a reconnect naming it catches up on
    // what changed while it was away, without reading everything again.
    assert!(
        seen.parse::<u64>().is_ok_and(|n| n > 0),
        "event id {seen:?}"
    );
    let (s, _) = api
        .call(
            Method::POST,
            &format!("/api/v1/machines/{id}/actions/mark_fixed"),
            Some(&admin),
            Some(json!({})),
        )
        .await;
    assert_eq!(s, 200);
    let reconnect = |last: String| {
        let page = &page;
        let url = format!("{}/ui/stream?watch=row:{id}", daemon.url);
        async move {
            page.http
                .get(url)
                .header("cookie", &page.cookie)
                .header("last-event-id", last)
                .send()
                .await
                .unwrap()
        }
    };
    let mut again = reconnect(seen.clone()).await;
    let (_, caught_up) = next_event_with_id(&mut again, "fragment").await;
    assert!(
        caught_up.contains(&format!("id=\"m-{id}\"")) && !caught_up.contains("Broken"),
        "the change made while away: {caught_up}"
    );
    drop(again);
    // An id from another store (beyond the newest event) or not an id at all: a resync.
    for last in ["999999".to_string(), "junk".to_string()] {
        let mut again = reconnect(last).await;
        next_event(&mut again, "resync").await;
    }
}

#[tokio::test]
async fn the_account_page_adds_keys_and_shows_a_new_token_once() {
    let daemon = Daemon::start();
    let api = Api::new(&daemon.url);
    let admin = api.login("admin", ADMIN_PASSWORD).await;
    add_alice(&api, &admin).await;
    let page = Browser::login(&daemon.url, "alice", "alice-password").await;
    let csrf = page.csrf().await;
    let key = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOa7kXz0x alice@laptop";
    let (s, location, _) = page
        .post(
            "/account/ssh-keys",
            "same-origin",
            &[("csrf", &csrf), ("key", key)],
        )
        .await;
    assert_eq!((s, location.as_deref()), (303, Some("/account")));
    let (s, _, body) = page
        .post(
            "/account/ssh-keys",
            "same-origin",
            &[("csrf", &csrf), ("key", "not a key")],
        )
        .await;
    assert_eq!(s, 400);
    assert!(body.contains("not an SSH public key"), "{body}");
    let (_, html) = page.get("/account").await;
    assert!(html.contains("alice@laptop"), "{html}");

    let (s, _, html) = page
        .post(
            "/account/tokens",
            "same-origin",
            &[("csrf", &csrf), ("name", "ci"), ("kind", "native")],
        )
        .await;
    assert_eq!(s, 201, "{html}");
    let at = html.find("readonly value=\"").expect("the token is shown") + 16;
    let token = &html[at..html[at..].find('"').unwrap() + at];
    let (s, who) = api
        .call(Method::GET, "/api/v1/whoami", Some(token), None)
        .await;
    assert_eq!((s, who["username"].as_str()), (200, Some("alice")));
    let (_, html) = page.get("/account").await;
    assert!(!html.contains(token), "a token is shown once");

    // The network page is for admins.
    let (s, _) = page.get("/network").await;
    assert_eq!(s, 403);
    let admin_page = Browser::login(&daemon.url, "admin", ADMIN_PASSWORD).await;
    let (s, html) = admin_page.get("/network").await;
    assert_eq!(s, 200);
    assert!(html.contains("DHCP leases"), "{html}");
}

#[tokio::test]
async fn the_images_page_lists_images_and_refuses_to_delete_one_a_machine_deploys() {
    let (_dir, daemon) = with_ready_machines(&["dep333"]);
    let api = Api::new(&daemon.url);
    let admin = api.login("admin", ADMIN_PASSWORD).await;
    for name in ["testos", "spare"] {
        let r = api
            .http
            .post(format!(
                "{}/api/v1/images?name={name}&os=debian&release=bookworm&arch=amd64",
                api.url
            ))
            .bearer_auth(&admin)
            .body(vec![7u8; 100_000])
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 201);
    }
    let page = Browser::login(&daemon.url, "admin", ADMIN_PASSWORD).await;
    let csrf = page.csrf().await;
    let (s, location, _) = page
        .post(
            "/machines/dep333/act/deploy",
            "same-origin",
            &[("csrf", &csrf), ("image", "testos")],
        )
        .await;
    assert_eq!((s, location.as_deref()), (303, Some("/machines/dep333")));
    let (s, html) = page.get("/images").await;
    assert_eq!(s, 200);
    assert!(html.contains("testos") && html.contains("spare"), "{html}");
    assert!(html.contains("97.7 KiB"), "sizes are shown: {html}");

    let (s, _, body) = page
        .post("/images/testos/delete", "same-origin", &[("csrf", &csrf)])
        .await;
    assert_eq!(s, 409, "{body}");
    assert!(body.contains("testos was not deleted"), "{body}");
    assert!(
        body.contains("dep333"),
        "the refusal names the machine: {body}"
    );
    let (s, location, _) = page
        .post("/images/spare/delete", "same-origin", &[("csrf", &csrf)])
        .await;
    assert_eq!((s, location.as_deref()), (303, Some("/images")));
    let (_, html) = page.get("/images").await;
    assert!(!html.contains("Delete spare"), "{html}");
}

#[tokio::test]
async fn a_deploy_from_the_page_installs_only_the_ticked_ssh_keys() {
    let (_dir, daemon) = with_ready_machines(&["key111", "key222"]);
    let page = Browser::login(&daemon.url, "admin", ADMIN_PASSWORD).await;
    let csrf = page.csrf().await;
    for key in [
        "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOa7kXz0x admin@laptop",
        "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOa7kXz0y admin@desk",
    ] {
        let (s, _, body) = page
            .post(
                "/account/ssh-keys",
                "same-origin",
                &[("csrf", &csrf), ("key", key)],
            )
            .await;
        assert_eq!(s, 303, "{body}");
    }
    let (_, html) = page.get("/machines/key111/confirm/deploy").await;
    for id in ["1", "2"] {
        assert!(
            html.contains(&format!("name=\"ssh_key\" value=\"{id}\" checked")),
            "every key is offered, ticked: {html}"
        );
    }
    let api = Api::new(&daemon.url);
    let admin = api.login("admin", ADMIN_PASSWORD).await;
    let deployed_keys = |id: &'static str| {
        let (api, admin) = (&api, &admin);
        async move {
            let (_, m) = api
                .call(
                    Method::GET,
                    &format!("/api/v1/machines/{id}"),
                    Some(admin),
                    None,
                )
                .await;
            m["deploy"]["ssh_keys"].clone()
        }
    };

    // Only the desk key ticked: the machine gets that one.
    let (s, location, body) = page
        .post(
            "/machines/key111/act/deploy",
            "same-origin",
            &[("csrf", &csrf), ("ssh_keys_chosen", "1"), ("ssh_key", "2")],
        )
        .await;
    assert_eq!(
        (s, location.as_deref()),
        (303, Some("/machines/key111")),
        "{body}"
    );
    assert_eq!(
        deployed_keys("key111").await,
        json!(["ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOa7kXz0y admin@desk"])
    );

    // Every key unticked means none, and a key the owner lacks is refused with the reason.
    let (s, _, body) = page
        .post(
            "/machines/key222/act/deploy",
            "same-origin",
            &[("csrf", &csrf), ("ssh_keys_chosen", "1"), ("ssh_key", "9")],
        )
        .await;
    assert_eq!(s, 400, "{body}");
    assert!(body.contains("admin has no SSH key 9"), "{body}");
    let (s, _, _) = page
        .post(
            "/machines/key222/act/deploy",
            "same-origin",
            &[("csrf", &csrf), ("ssh_keys_chosen", "1")],
        )
        .await;
    assert_eq!(s, 303);
    assert_eq!(deployed_keys("key222").await, json!([]));
}

#[tokio::test]
async fn admins_manage_users_zones_pools_and_tags_and_edit_many_machines_at_once() {
    let daemon = Daemon::start();
    let api = Api::new(&daemon.url);
    let admin = api.login("admin", ADMIN_PASSWORD).await;
    let web = add_machine(
        &api,
        &admin,
        json!({"hostname": "web-1", "mac_addresses": ["52:54:00:10:00:21"], "commission": false}),
    )
    .await;
    let db = add_machine(
        &api,
        &admin,
        json!({"hostname": "db-1", "mac_addresses": ["52:54:00:10:00:22"], "commission": false}),
    )
    .await;
    let page = Browser::login(&daemon.url, "admin", ADMIN_PASSWORD).await;
    let csrf = page.csrf().await;
    let post = |path: &'static str, form: Vec<(&'static str, String)>| {
        let (page, csrf) = (&page, &csrf);
        async move {
            let mut fields: Vec<(&str, &str)> = vec![("csrf", csrf.as_str())];
            fields.extend(form.iter().map(|(k, v)| (*k, v.as_str())));
            page.post(path, "same-origin", &fields).await
        }
    };
    let field = |k: &'static str, v: &str| (k, v.to_string());

    // Users: add, refuse a taken name, change the role, keep the last admin.
    let bob = vec![
        field("username", "bob"),
        field("password", "bob-password"),
        field("role", "user"),
    ];
    let (s, location, _) = post("/admin/users", bob.clone()).await;
    assert_eq!((s, location.as_deref()), (303, Some("/admin")));
    let (s, _, body) = post("/admin/users", bob).await;
    assert_eq!(s, 409, "{body}");
    assert!(body.contains("user bob exists"), "{body}");
    let (s, _, _) = post("/admin/users/bob/role", vec![field("role", "admin")]).await;
    assert_eq!(s, 303);
    let (_, u) = api
        .call(Method::GET, "/api/v1/users/bob", Some(&admin), None)
        .await;
    assert_eq!(u["role"], "admin");
    post("/admin/users/bob/role", vec![field("role", "user")]).await;
    let (s, _, body) = post("/admin/users/admin/role", vec![field("role", "user")]).await;
    assert_eq!(s, 409, "{body}");
    assert!(body.contains("the last admin cannot be demoted"), "{body}");
    let (s, _, _) = post(
        "/admin/users/bob/password",
        vec![field("password", "bob-new-password")],
    )
    .await;
    assert_eq!(s, 303);
    let bob_page = Browser::login(&daemon.url, "bob", "bob-new-password").await;
    let (s, _) = bob_page.get("/admin").await;
    assert_eq!(s, 403, "the admin page is for admins");

    // Zones, pools and tags.
    for (path, name) in [
        ("/admin/zones", "rack-2"),
        ("/admin/pools", "gpu"),
        ("/admin/tags", "fast"),
    ] {
        let (s, location, body) = post(path, vec![field("name", name)]).await;
        assert_eq!((s, location.as_deref()), (303, Some("/admin")), "{body}");
    }
    let (s, _, body) = post("/admin/zones", vec![field("name", "bad name!")]).await;
    assert_eq!(s, 400, "{body}");

    // The list's bulk form moves and tags both machines.
    for (action, value) in [("zone", "rack-2"), ("pool", "gpu"), ("add_tag", "fast")] {
        let (s, _, html) = post(
            "/machines/bulk",
            vec![
                field("action", action),
                field("value", value),
                field("machine", &web),
                field("machine", &db),
                field("back", "/machines"),
            ],
        )
        .await;
        assert_eq!(s, 200);
        assert!(
            html.contains(&format!("{value}: 2 done, 0 refused")),
            "{html}"
        );
    }
    for id in [&web, &db] {
        let (_, m) = api
            .call(
                Method::GET,
                &format!("/api/v1/machines/{id}"),
                Some(&admin),
                None,
            )
            .await;
        assert_eq!(
            (m["zone"].as_str(), m["pool"].as_str()),
            (Some("rack-2"), Some("gpu"))
        );
        assert_eq!(m["tags"], json!(["fast"]));
    }
    let (_, html) = page.get("/machines?tag=fast").await;
    assert!(
        html.contains("<strong>2</strong> of 2 machines match"),
        "{html}"
    );
    let (_, _, html) = post(
        "/machines/bulk",
        vec![
            field("action", "add_tag"),
            field("machine", &web),
            field("back", "/machines"),
        ],
    )
    .await;
    assert!(html.contains("Add the tag: say which one"), "{html}");
    // Power on a machine with manual power: refused, with the reason, per machine.
    let (_, _, html) = post(
        "/machines/bulk",
        vec![
            field("action", "power_on"),
            field("machine", &web),
            field("back", "/machines"),
        ],
    )
    .await;
    assert!(html.contains("Power on: 0 done, 1 refused"), "{html}");
    assert!(html.contains("web-1: refused:"), "{html}");

    // The admin page counts them, and a zone in use stays.
    let (s, html) = page.get("/admin").await;
    assert_eq!(s, 200);
    assert!(
        html.contains("bob") && html.contains("rack-2") && html.contains("gpu"),
        "{html}"
    );
    let (s, _, body) = post("/admin/zones/rack-2/delete", Vec::new()).await;
    assert_eq!(s, 409, "{body}");
    assert!(body.contains("zone rack-2 is used by machine"), "{body}");
    let (s, _, _) = post("/admin/tags/fast/delete", Vec::new()).await;
    assert_eq!(s, 409, "a tag in use stays too");
    let (s, _, body) = post("/admin/default-things/x/delete", Vec::new()).await;
    assert_eq!(s, 404, "{body}");
    let (s, location, _) = post("/admin/users/bob/delete", Vec::new()).await;
    assert_eq!((s, location.as_deref()), (303, Some("/admin")));
    let (s, _) = api
        .call(Method::GET, "/api/v1/users/bob", Some(&admin), None)
        .await;
    assert_eq!(s, 404);
}

/// Reads the stream until a `fragment` event's data contains `needle`; returns that data.
async fn fragment_with(stream: &mut reqwest::Response, needle: &str) -> String {
    let mut buffer = String::new();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    loop {
        for block in buffer.split("\n\n") {
            if block.lines().any(|l| l == "event: fragment") {
                let data = block
                    .lines()
                    .filter_map(|l| l.strip_prefix("data: ").or(l.strip_prefix("data:")))
                    .collect::<Vec<_>>()
                    .join("\n");
                if data.contains(needle) {
                    return data;
                }
            }
        }
        let chunk = tokio::time::timeout_at(deadline, stream.chunk())
            .await
            .unwrap_or_else(|_| panic!("no fragment with {needle:?}; read: {buffer}"))
            .unwrap()
            .expect("the stream stays open");
        buffer.push_str(&String::from_utf8_lossy(&chunk));
    }
}

/// Uploads a boot resource of `len` bytes.
async fn upload_boot(api: &Api, admin: &str, name: &str, kind: &str, len: usize) {
    let r = api
        .http
        .post(format!(
            "{}/api/v1/boot-resources?arch=amd64&name={name}&kind={kind}",
            api.url
        ))
        .bearer_auth(admin)
        .body(vec![0x5a; len])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201, "upload {name}");
}

/// The URL after `word` on the script line that starts with it (`kernel URL ...`,
/// `initrd --name initrd.img URL ...`).
fn url_after(script: &str, word: &str) -> String {
    let line = script
        .lines()
        .find(|l| l.starts_with(word))
        .unwrap_or_else(|| panic!("no {word} line in {script}"));
    line.split_whitespace()
        .find(|w| w.starts_with("http://"))
        .unwrap_or_else(|| panic!("no URL on {line}"))
        .to_string()
}

#[tokio::test]
async fn a_commissioning_boot_shows_its_steps_with_sizes_on_the_page_and_in_the_api() {
    const KERNEL: usize = 300_000;
    const INITRD: usize = 1_200_000;
    let mac = "52:54:00:10:00:07";
    let daemon = Daemon::start();
    let api = Api::new(&daemon.url);
    let admin = api.login("admin", ADMIN_PASSWORD).await;
    upload_boot(&api, &admin, "vmlinuz", "kernel", KERNEL).await;
    upload_boot(&api, &admin, "initrd.img", "initrd", INITRD).await;
    let id = add_machine(
        &api,
        &admin,
        json!({"hostname": "boot-1", "mac_addresses": [mac], "commission": false}),
    )
    .await;
    let page = Browser::login(&daemon.url, "admin", ADMIN_PASSWORD).await;
    let (_, html) = page.get(&format!("/machines/{id}")).await;
    assert!(html.contains("Boot timeline"), "{html}");
    assert!(
        html.contains("No network boot of this machine was seen since rackbox started"),
        "{html}"
    );
    let (s, _) = api
        .call(
            Method::POST,
            &format!("/api/v1/machines/{id}/actions/commission"),
            Some(&admin),
            Some(json!({})),
        )
        .await;
    assert_eq!(s, 200);

    // Firmware's part: the script for this MAC, then the kernel and initrd it names.
    let script = api
        .http
        .get(format!("{}/boot/{mac}.ipxe", daemon.url))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let kernel = url_after(&script, "kernel ");
    let initrd = url_after(&script, "initrd ");
    for (url, len) in [(&kernel, KERNEL), (&initrd, INITRD)] {
        let body = api
            .http
            .get(url)
            .send()
            .await
            .unwrap()
            .bytes()
            .await
            .unwrap();
        assert_eq!(body.len(), len, "{url}");
    }
    let token = script
        .split_whitespace()
        .find_map(|w| w.strip_prefix("rackbox.token="))
        .expect("a boot token")
        .to_string();

    // The agent's part, with the page's stream watching the timeline.
    let mut stream = page
        .http
        .get(format!("{}/ui/stream?watch=timeline:{id}", daemon.url))
        .header("cookie", &page.cookie)
        .send()
        .await
        .unwrap();
    assert_eq!(stream.status(), 200);
    let agent = |path: &str| format!("/api/agent/v1/{path}");
    let (s, task) = api
        .call(Method::GET, &agent("task"), Some(&token), None)
        .await;
    assert_eq!((s, task["task"].as_str()), (200, Some("commission")));
    let inventory = json!({
        "cpu_count": 2, "memory_mib": 2048, "architecture": "amd64/generic", "firmware": "bios",
        "disks": [], "interfaces": [{"name": "ens3", "mac": mac}]
    });
    let (s, _) = api
        .call(
            Method::POST,
            &agent("inventory"),
            Some(&token),
            Some(inventory),
        )
        .await;
    assert_eq!(s, 204);
    let fragment = fragment_with(&mut stream, "Inventory sent").await;
    assert!(
        fragment.contains(&format!("id=\"timeline-{id}\"")),
        "{fragment}"
    );
    let (s, v) = api
        .call(
            Method::POST,
            &agent("complete"),
            Some(&token),
            Some(json!({"message": "commissioned"})),
        )
        .await;
    assert_eq!(s, 200, "{v}");
    drop(stream);

    // The API: every step, in order, the downloads with their sizes (a download's step is
    // recorded when its body ends, which may come just after the client has read it all).
    let timeline = common::eventually(
        "the boot's six steps",
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
            match t["current"]["steps"].as_array() {
                Some(steps) if steps.len() == 6 => Ok(t),
                _ => Err(t),
            }
        },
    )
    .await;
    let steps = timeline["current"]["steps"].as_array().unwrap();
    let kinds: Vec<&str> = steps
        .iter()
        .map(|s| s["step"]["kind"].as_str().unwrap())
        .collect();
    assert_eq!(
        kinds,
        [
            "ipxe_script",
            "http_file",
            "http_file",
            "agent_task",
            "inventory",
            "agent_complete"
        ],
        "{timeline}"
    );
    assert_eq!(timeline["current"]["mac"], mac);
    assert_eq!(steps[0]["step"]["plan"], "ephemeral");
    assert_eq!(steps[1]["step"]["file"], "kernel");
    assert_eq!(steps[1]["step"]["bytes"], KERNEL);
    assert_eq!(steps[2]["step"]["file"], "initrd");
    assert_eq!(steps[2]["step"]["bytes"], INITRD);
    assert_eq!(steps[3]["step"]["task"], "commission");
    assert_eq!(steps[5]["step"]["status"], "Commissioning");
    assert!(timeline["previous"].is_null(), "{timeline}");

    // The page: the same steps, in the same order, sizes as people read them.
    let (_, html) = page.get(&format!("/machines/{id}")).await;
    let at = |needle: &str| {
        html.find(needle)
            .unwrap_or_else(|| panic!("{needle:?} is not on the page: {html}"))
    };
    let order = [
        at("iPXE script"),
        at("Kernel over HTTP"),
        at("Initrd over HTTP"),
        at("Agent asked for its task"),
        at("Inventory sent"),
        at("Agent reported done"),
    ];
    assert!(order.is_sorted(), "the steps are in order: {order:?}");
    at(&format!(
        "vmlinuz: {} in",
        rackbox::model::units::human_bytes(KERNEL as u64)
    ));
    at(&format!(
        "initrd.img: {} in",
        rackbox::model::units::human_bytes(INITRD as u64)
    ));
    at("boot the ephemeral environment");
    at("told: commission");
    at(&format!("Interface {mac}"));
    at("+0.0 s");
    assert!(!html.contains("No network boot of this machine"), "{html}");

    // A machine that does not exist has no timeline.
    let (s, _) = api
        .call(
            Method::GET,
            "/api/v1/machines/nosuch/boot-timeline",
            Some(&admin),
            None,
        )
        .await;
    assert_eq!(s, 404);
}

#[tokio::test]
async fn the_images_page_syncs_from_a_mirror_and_says_what_it_found() {
    use images_support::{Entry, FileServer, data, sha256_hex};
    let daemon = Daemon::start();
    let server = FileServer::start().await;
    let one = data(50_000, 31);
    server.put(
        "/mirror/one.raw",
        Entry {
            data: std::sync::Arc::new(one.clone()),
            honour_range: true,
            ..Entry::default()
        },
    );
    let manifest = json!({
        "format": "rackbox-images/1",
        "images": [{"name": "one", "url": "one.raw", "sha256": sha256_hex(&one),
                    "size": one.len(), "os": "debian", "arch": "amd64"}]
    });
    server.put(
        "/mirror/manifest.json",
        Entry {
            data: std::sync::Arc::new(serde_json::to_vec(&manifest).unwrap()),
            ..Entry::default()
        },
    );
    let page = Browser::login(&daemon.url, "admin", ADMIN_PASSWORD).await;
    let csrf = page.csrf().await;
    let url = format!("{}/mirror/manifest.json", server.url);
    let (s, _, html) = page
        .post(
            "/images/sync",
            "same-origin",
            &[("csrf", &csrf), ("url", &url)],
        )
        .await;
    assert_eq!(s, 200, "{html}");
    assert!(html.contains("Synced from"), "{html}");
    assert!(html.contains("new, importing: one"), "{html}");
    // The import finishes; the page lists the image.
    common::eventually(
        "the synced image listed",
        Duration::from_secs(20),
        async || {
            let (_, html) = page.get("/images").await;
            if html.contains("Delete one") {
                Ok(())
            } else {
                Err(html)
            }
        },
    )
    .await;
    // A mirror that is not there: refused with the reason.
    let missing = format!("{}/mirror/nothing.json", server.url);
    let (s, _, html) = page
        .post(
            "/images/sync",
            "same-origin",
            &[("csrf", &csrf), ("url", &missing)],
        )
        .await;
    assert!(s >= 400, "{s}: {html}");
    assert!(html.contains("The mirror was not synced"), "{html}");
}

/// A `multipart/form-data` body as a browser sends a form with a file: `fields` then the file.
fn multipart(boundary: &str, fields: &[(&str, &str)], file: Option<(&str, &[u8])>) -> Vec<u8> {
    let mut body = Vec::new();
    for (name, value) in fields {
        body.extend_from_slice(
            format!(
                "--{boundary}\r\nContent-Disposition: form-data; name=\"{name}\"\r\n\r\n{value}\r\n"
            )
            .as_bytes(),
        );
    }
    if let Some((filename, bytes)) = file {
        body.extend_from_slice(
            format!(
                "--{boundary}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"{filename}\"\r\nContent-Type: application/octet-stream\r\n\r\n"
            )
            .as_bytes(),
        );
        body.extend_from_slice(bytes);
        body.extend_from_slice(b"\r\n");
    }
    body.extend_from_slice(format!("--{boundary}--\r\n").as_bytes());
    body
}

#[tokio::test]
async fn the_images_page_uploads_a_file_streamed_and_refuses_one_without_the_token() {
    let daemon = Daemon::start();
    let page = Browser::login(&daemon.url, "admin", ADMIN_PASSWORD).await;
    let csrf = page.csrf().await;
    let image: Vec<u8> = (0..3_000_000u32).map(|i| (i * 7 % 251) as u8).collect();
    let boundary = "----rackboxTestBoundary7";
    let send = |query: String, body: Vec<u8>| {
        let page = &page;
        async move {
            let r = page
                .http
                .post(format!("{}/images/upload{query}", page.url))
                .header("cookie", &page.cookie)
                .header("sec-fetch-site", "same-origin")
                // A refusal is answered before the body is read, and the connection closed.
                .header("connection", "close")
                .header(
                    "content-type",
                    format!("multipart/form-data; boundary={boundary}"),
                )
                .body(body)
                .send()
                .await
                .unwrap();
            let location = r
                .headers()
                .get("location")
                .map(|l| l.to_str().unwrap().to_string());
            (r.status().as_u16(), location, r.text().await.unwrap())
        }
    };
    let form = multipart(
        boundary,
        &[("name", ""), ("os", "debian"), ("release", "bookworm")],
        Some(("debian-12.raw", &image)),
    );
    // Without the token in the action URL: refused, nothing kept.
    let (s, _, body) = send(String::new(), form.clone()).await;
    assert_eq!(s, 403, "{body}");
    let (s, location, body) = send(format!("?csrf={csrf}"), form).await;
    assert_eq!((s, location.as_deref()), (303, Some("/images")), "{body}");
    let api = Api::new(&daemon.url);
    let admin = api.login("admin", ADMIN_PASSWORD).await;
    let (s, v) = api
        .call(Method::GET, "/api/v1/images/debian-12", Some(&admin), None)
        .await;
    assert_eq!(s, 200, "named after the file: {v}");
    assert_eq!(v["size"], image.len(), "{v}");
    assert_eq!(v["os"], "debian", "{v}");
    let sha = {
        use sha2::Digest;
        format!("{:x}", sha2::Sha256::digest(&image))
    };
    assert_eq!(v["sha256"], sha, "{v}");
    let (_, html) = page.get("/images").await;
    assert!(html.contains("Delete debian-12"), "{html}");
    // A form with no file: a 400 with the reason, on the page.
    let (s, _, body) = send(
        format!("?csrf={csrf}"),
        multipart(boundary, &[("name", "empty")], None),
    )
    .await;
    assert_eq!(s, 400, "{body}");
    assert!(body.contains("the form had no file"), "{body}");
}

#[tokio::test]
async fn the_machine_page_shows_its_hardware_tests_with_the_agents_words_escaped() {
    let (_dir, daemon) = with_ready_machines(&["hwt111"]);
    let api = Api::new(&daemon.url);
    let admin = api.login("admin", ADMIN_PASSWORD).await;
    let page = Browser::login(&daemon.url, "admin", ADMIN_PASSWORD).await;
    let (_, html) = page.get("/machines/hwt111").await;
    assert!(html.contains("No test run yet"), "{html}");
    let (s, v) = api
        .call(
            Method::POST,
            "/api/v1/machines/hwt111/actions/test",
            Some(&admin),
            Some(json!({})),
        )
        .await;
    assert_eq!(s, 200, "{v}");
    let mac = common::mac_for("hwt111");
    let token = api.boot_token(&mac).await;
    let evil = "<script>alert(1)</script>";
    let (s, v) = api
        .call(
            Method::POST,
            "/api/agent/v1/fail",
            Some(&token),
            Some(json!({
                "reason": format!("test failed: disk-read on vda: {evil}"),
                "results": {"tests": [
                    {"name": "disk-read", "status": "failed", "started_ms": 1_000, "finished_ms": 71_000,
                     "summary": format!("read error {evil}"), "disk": "vda", "bytes": 8_589_934_592u64,
                     "throughput_mib_s": 117.2},
                    {"name": "memory", "status": "passed", "started_ms": 0, "finished_ms": 1_000,
                     "summary": "two patterns over 256 MiB"}
                ]}
            })),
        )
        .await;
    assert_eq!(s, 200, "{v}");
    let (_, html) = page.get("/machines/hwt111").await;
    assert!(
        !html.contains(evil),
        "the agent's words are escaped: {html}"
    );
    let tests = &html[html.find("Hardware tests").expect("the section")..];
    for text in [
        "disk-read",
        "failed",
        "vda: read error",
        "117 MiB/s",
        "memory",
        "passed",
    ] {
        assert!(tests.contains(text), "{text}: {tests}");
    }
}
