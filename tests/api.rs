//! The native API against a real `rackbox serve`: an auth matrix over every route of the route
//! table, malformed requests, refused transitions and stale generations.

mod common;

use common::{ADMIN_PASSWORD, Api, Daemon};
use rackbox::http::Access;
use rackbox::model::{PowerType, Status};
use reqwest::Method;
use serde_json::{Value, json};

struct Fixture {
    api: Api,
    admin: String,
    alice: String,
    next_machine: std::cell::Cell<usize>,
    counter: std::cell::Cell<usize>,
}

impl Fixture {
    fn unique(&self) -> usize {
        let n = self.counter.get() + 1;
        self.counter.set(n);
        n
    }

    /// A Ready machine (seeded), allocated to alice through the API.
    async fn alices_machine(&self) -> String {
        let i = self.next_machine.get();
        self.next_machine.set(i + 1);
        let (s, v) = self
            .api
            .call(
                Method::POST,
                "/api/v1/machines/allocate",
                Some(&self.alice),
                Some(json!({"system_id": format!("rdy{i:03}")})),
            )
            .await;
        assert_eq!(s, 200, "{v}");
        v["system_id"].as_str().unwrap().to_string()
    }

    /// An image (or a boot resource) to show, edit, download or delete.
    async fn upload(&self, collection_and_query: &str) {
        let r = self
            .api
            .http
            .post(format!("{}{collection_and_query}", self.api.url))
            .bearer_auth(&self.admin)
            .body(format!("bytes for {collection_and_query}"))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 201, "{}", r.text().await.unwrap_or_default());
    }

    /// The image cache's routes: real images, boot resources and imports to act on.
    async fn prepare_images(
        &self,
        method: &Method,
        path: &str,
        token: String,
        n: usize,
    ) -> (String, Option<Value>, String) {
        let (concrete, body) = match (method.as_str(), path) {
            ("POST", "/api/v1/images") => (
                format!("/api/v1/images?name=upload{n}"),
                Some(json!({"bytes": n})),
            ),
            ("POST", "/api/v1/images/fetch") => (
                path.to_string(),
                // Nothing listens there: the import is accepted, then fails in the background.
                Some(json!({"name": format!("fetch{n}"), "url": "http://127.0.0.1:9/x.raw"})),
            ),
            ("POST", "/api/v1/images/sync") => {
                (path.to_string(), Some(json!({"manifest": {"images": []}})))
            }
            ("POST", "/api/v1/images/gc") => (path.to_string(), Some(json!({}))),
            ("POST", "/api/v1/boot-resources") => (
                format!("/api/v1/boot-resources?arch=amd64&name=upload{n}&kind=kernel"),
                Some(json!({"bytes": n})),
            ),
            ("POST", "/api/v1/boot-resources/fetch") => (
                path.to_string(),
                Some(
                    json!({"arch": "amd64", "name": format!("fetch{n}"), "kind": "kernel", "url": "http://127.0.0.1:9/k"}),
                ),
            ),
            (_, "/api/v1/images/imports/{id}") => {
                let (s, v) = self
                    .api
                    .call(
                        Method::POST,
                        "/api/v1/images/fetch",
                        Some(&self.admin),
                        Some(
                            json!({"name": format!("fetch{n}"), "url": "http://127.0.0.1:9/x.raw"}),
                        ),
                    )
                    .await;
                assert_eq!(s, 202, "{v}");
                (path.replace("{id}", v["id"].as_str().unwrap()), None)
            }
            (m, "/api/v1/images/{name}" | "/images/{name}") => {
                let name = format!("image{n}");
                self.upload(&format!("/api/v1/images?name={name}")).await;
                let body = (m == "PATCH").then(|| json!({"title": "A title"}));
                (path.replace("{name}", &name), body)
            }
            (_, "/api/v1/boot-resources/{arch}/{name}" | "/boot-resources/{arch}/{name}") => {
                let name = format!("boot{n}");
                self.upload(&format!(
                    "/api/v1/boot-resources?arch=amd64&name={name}&kind=bootloader"
                ))
                .await;
                (
                    path.replace("{arch}", "amd64").replace("{name}", &name),
                    None,
                )
            }
            _ => (path.to_string(), None),
        };
        (concrete, body, token)
    }

    /// The concrete path, body and the token of the role the route needs, for one call.
    async fn prepare(
        &self,
        method: &Method,
        path: &str,
        access: Access,
    ) -> (String, Option<Value>, String) {
        let token = match access {
            Access::Admin => self.admin.clone(),
            _ => self.alice.clone(),
        };
        let n = self.unique();
        let mut concrete = path.to_string();
        let mut body = None;
        if path.starts_with("/api/v1/images")
            || path.starts_with("/images/")
            || path.contains("/boot-resources")
        {
            return self.prepare_images(method, path, token, n).await;
        }
        if path.contains("{system_id}") {
            let id = self.alices_machine().await;
            concrete = concrete.replace("{system_id}", &id);
        }
        if path.contains("{op}") {
            concrete = concrete.replace("{op}", "on");
        }
        if path.contains("{action}") {
            concrete = concrete.replace("{action}", "release");
            body = Some(json!({}));
        }
        if path.contains("{username}") {
            if *method == Method::DELETE && path == "/api/v1/users/{username}" {
                let name = format!("victim{n}");
                let (s, _) = self
                    .api
                    .call(
                        Method::POST,
                        "/api/v1/users",
                        Some(&self.admin),
                        Some(json!({"username": name, "password": "password123"})),
                    )
                    .await;
                assert_eq!(s, 201);
                concrete = concrete.replace("{username}", &name);
            } else {
                concrete = concrete.replace("{username}", "alice");
            }
        }
        if path.ends_with("/sshkeys/{id}") {
            let (s, v) = self
                .api
                .call(Method::POST, "/api/v1/users/alice/sshkeys", Some(&self.alice), Some(json!({"key": format!("ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAI{n:020} alice@test")})))
                .await;
            assert_eq!(s, 201, "{v}");
            concrete = concrete.replace("{id}", &v["id"].to_string());
        }
        if path == "/api/v1/tokens/{id}" {
            let (s, v) = self
                .api
                .call(
                    Method::POST,
                    "/api/v1/tokens",
                    Some(&self.alice),
                    Some(json!({"name": "scratch"})),
                )
                .await;
            assert_eq!(s, 201);
            concrete = concrete.replace("{id}", v["id"].as_str().unwrap());
        }
        if path.contains("/interfaces/{name}") {
            // The seeded machines' one interface.
            concrete = concrete.replace("{name}", "eth0");
        } else if path.contains("{name}") {
            let collection = &path[..path.rfind('/').unwrap()];
            let name = if *method == Method::DELETE {
                let name = format!("thing{n}");
                let (s, _) = self
                    .api
                    .call(
                        Method::POST,
                        collection,
                        Some(&self.admin),
                        Some(json!({"name": name})),
                    )
                    .await;
                assert_eq!(s, 201);
                name
            } else if collection.ends_with("tags") {
                let name = format!("tag{n}");
                let (s, _) = self
                    .api
                    .call(
                        Method::POST,
                        collection,
                        Some(&self.admin),
                        Some(json!({"name": name})),
                    )
                    .await;
                assert_eq!(s, 201);
                name
            } else {
                "default".to_string()
            };
            concrete = concrete.replace("{name}", &name);
        }
        if (*method == Method::POST || *method == Method::PATCH || *method == Method::PUT)
            && !path.ends_with("/power/{op}")
        {
            body = body.or_else(|| Some(match path {
                "/api/v1/auth/login" => json!({"username": "admin", "password": ADMIN_PASSWORD}),
                "/api/v1/machines" => json!({"mac_addresses": [format!("52:54:00:aa:00:{:02x}", n % 250)], "hostname": format!("added{n}")}),
                "/api/v1/machines/allocate" => json!({"tags": ["spare"]}),
                "/api/v1/machines/{system_id}" => json!({"owner_data": {"juju": "model1"}}),
                "/api/v1/users" => json!({"username": format!("newuser{n}"), "password": "password123"}),
                "/api/v1/users/{username}" => json!({"email": "alice@example.org"}),
                "/api/v1/users/{username}/sshkeys" => json!({"key": format!("ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAI{n:020} a@b")}),
                "/api/v1/tokens" => json!({"name": "t"}),
                "/api/v1/machines/{system_id}/interfaces/{name}/link" => json!({"mode": "link_up"}),
                // Loopback only: a test sends nothing onto the host's networks.
                "/api/v1/network/dhcp-probe" => json!({"interface": "lo", "wait_secs": 1}),
                p if p.ends_with("zones") || p.ends_with("pools") || p.ends_with("tags") => json!({"name": format!("made{n}")}),
                other => panic!("no body for {method} {other}"),
            }));
        }
        (concrete, body, token)
    }
}

async fn fixture() -> (Daemon, Fixture) {
    let dir = tempfile::tempdir().unwrap().keep();
    // rdy000-069 are taken one by one by system_id; rdy070-079 are "spare" for allocate-by-tag.
    let machines = (0..80)
        .map(|i| {
            let mut m = common::machine(&format!("rdy{i:03}"), Status::Ready, 4, 4096);
            // The command power driver, with commands that succeed: power routes can be walked.
            m.power.power_type = Some(PowerType::Command);
            m.power.parameters = serde_json::from_value(json!({
                "power_on_command": "true", "power_off_command": "true", "power_query_command": "echo on"
            }))
            .unwrap();
            if i >= 70 {
                m.tags.insert("spare".into());
            }
            m
        })
        .collect();
    common::seed(&dir, machines);
    let daemon = Daemon::start_in(&dir, "");
    let api = Api::new(&daemon.url);
    let admin = api.login("admin", ADMIN_PASSWORD).await;
    let (s, _) = api
        .call(
            Method::POST,
            "/api/v1/users",
            Some(&admin),
            Some(json!({"username": "alice", "password": "alice-password"})),
        )
        .await;
    assert_eq!(s, 201);
    let alice = api.login("alice", "alice-password").await;
    (
        daemon,
        Fixture {
            api,
            admin,
            alice,
            next_machine: Default::default(),
            counter: Default::default(),
        },
    )
}

#[tokio::test]
async fn auth_matrix_over_every_route() {
    let (_daemon, f) = fixture().await;
    let mut checked = 0;
    for route in rackbox::http::api::ROUTES {
        let method = Method::from_bytes(route.method.as_str().as_bytes()).unwrap();
        // No token: 401 for every route but the anonymous ones.
        if route.access != Access::Anonymous {
            let (path, body, _) = f.prepare(&method, route.path, route.access).await;
            let (s, v) = f.api.call(method.clone(), &path, None, body.clone()).await;
            assert_eq!(
                s, 401,
                "{} {} without a token: {v}",
                route.method, route.path
            );
            assert_eq!(v["error"], "unauthorized");
            let (s, _) = f
                .api
                .call(method.clone(), &path, Some("rbx_nosuch_token"), body)
                .await;
            assert_eq!(s, 401, "{} {} with a bad token", route.method, route.path);
        }
        // Wrong role: a user on an admin route gets 403.
        if route.access == Access::Admin {
            let (path, body, _) = f.prepare(&method, route.path, route.access).await;
            let (s, v) = f
                .api
                .call(method.clone(), &path, Some(&f.alice), body)
                .await;
            assert_eq!(s, 403, "{} {} as a user: {v}", route.method, route.path);
            assert_eq!(v["error"], "forbidden");
        }
        // Right role: success, with the status the table promises.
        let (path, body, token) = f.prepare(&method, route.path, route.access).await;
        let (s, v) = f.api.call(method.clone(), &path, Some(&token), body).await;
        assert_eq!(
            s, route.success,
            "{} {} ({path}) with the right role: {v}",
            route.method, route.path
        );
        checked += 1;
    }
    assert_eq!(checked, rackbox::http::api::ROUTES.len());
    // A method a path does not have is 405 with or without a token: a 401 would say it exists.
    for path in ["/healthz", "/api/v1/auth/login", "/api/v1/machines"] {
        for token in [None, Some(f.admin.as_str())] {
            let (s, v) = f.api.call(Method::TRACE, path, token, None).await;
            assert_eq!(s, 405, "TRACE {path} (token: {}): {v}", token.is_some());
        }
    }
}

#[tokio::test]
async fn bad_requests_get_400_with_a_message() {
    let (daemon, f) = fixture().await;
    let http = reqwest::Client::new();
    let post = |path: &str, body: &'static str| {
        http.post(format!("{}{path}", daemon.url))
            .bearer_auth(&f.admin)
            .header("content-type", "application/json")
            .body(body)
            .send()
    };
    for (path, body, needle) in [
        ("/api/v1/machines", "{not json", "invalid JSON"),
        (
            "/api/v1/machines",
            r#"{"mac_addresses": ["52:54:00:00:00:01"], "colour": "red"}"#,
            "unknown field `colour`",
        ),
        (
            "/api/v1/machines",
            r#"{"mac_addresses": "52:54:00:00:00:01"}"#,
            "invalid type",
        ),
        (
            "/api/v1/machines",
            r#"{"mac_addresses": ["nope"]}"#,
            "not a MAC address",
        ),
        (
            "/api/v1/machines",
            r#"{"mac_addresses": []}"#,
            "at least one MAC",
        ),
        (
            "/api/v1/machines",
            r#"{"mac_addresses": ["52:54:00:00:00:09"], "hostname": "bad_name!"}"#,
            "hostname",
        ),
        (
            "/api/v1/machines",
            r#"{"mac_addresses": ["52:54:00:00:00:09"], "power_type": "ipmi"}"#,
            "power_address",
        ),
        (
            "/api/v1/machines",
            r#"{"mac_addresses": ["52:54:00:00:00:09"], "power_type": "wol"}"#,
            "unknown variant `wol`, expected one of `ipmi`, `redfish`, `manual`, `command`",
        ),
        (
            "/api/v1/machines/allocate",
            r#"{"cpu_count": "many"}"#,
            "invalid type",
        ),
        (
            "/api/v1/machines/allocate",
            r#"{"storage": "root:abc"}"#,
            "storage",
        ),
        (
            "/api/v1/machines/rdy000/actions/fly",
            "{}",
            "unknown action",
        ),
        (
            "/api/v1/machines/rdy000/actions/release",
            r#"{"erase": "shred"}"#,
            "erase",
        ),
        (
            "/api/v1/users",
            r#"{"username": "bob", "password": "short"}"#,
            "at least 8",
        ),
        (
            "/api/v1/users/admin/sshkeys",
            r#"{"key": "not a key"}"#,
            "SSH public key",
        ),
    ] {
        let r = post(path, body).await.unwrap();
        let status = r.status().as_u16();
        let v: Value = r.json().await.unwrap();
        assert!(
            status == 400 || (status == 409 && path.contains("release")),
            "{path} {body}: {status} {v}"
        );
        let message = v["message"].as_str().unwrap_or_default();
        assert!(
            message.contains(needle),
            "{path} {body}: message {message:?} should mention {needle:?}"
        );
    }
    let (s, v) = f
        .api
        .call(
            Method::GET,
            "/api/v1/machines?limit=ten",
            Some(&f.admin),
            None,
        )
        .await;
    assert_eq!(s, 400, "{v}");
    let (s, v) = f
        .api
        .call(
            Method::GET,
            "/api/v1/machines?status=sleeping",
            Some(&f.admin),
            None,
        )
        .await;
    assert_eq!(s, 400, "{v}");
}

#[tokio::test]
async fn invalid_transitions_get_409_naming_the_status() {
    let (_daemon, f) = fixture().await;
    // A Ready machine cannot be released, and the answer says it is Ready.
    let (s, v) = f
        .api
        .call(
            Method::POST,
            "/api/v1/machines/rdy001/actions/release",
            Some(&f.admin),
            Some(json!({})),
        )
        .await;
    assert_eq!(s, 409, "{v}");
    assert_eq!(v["error"], "invalid_transition");
    assert_eq!(v["status"], "ready");
    assert!(v["message"].as_str().unwrap().contains("Ready"), "{v}");
    // Stale generation.
    let (_, m) = f
        .api
        .call(Method::GET, "/api/v1/machines/rdy002", Some(&f.admin), None)
        .await;
    let generation = m["generation"].as_u64().unwrap();
    let (s, _) = f
        .api
        .call(
            Method::PATCH,
            "/api/v1/machines/rdy002",
            Some(&f.admin),
            Some(json!({"description": "first", "generation": generation})),
        )
        .await;
    assert_eq!(s, 200);
    let (s, v) = f
        .api
        .call(
            Method::PATCH,
            "/api/v1/machines/rdy002",
            Some(&f.admin),
            Some(json!({"description": "second", "generation": generation})),
        )
        .await;
    assert_eq!(s, 409, "{v}");
    assert_eq!(v["error"], "stale_generation");
    // Nothing was lost or half-applied.
    let (_, m) = f
        .api
        .call(Method::GET, "/api/v1/machines/rdy002", Some(&f.admin), None)
        .await;
    assert_eq!(m["description"], "first");
    // No match on allocate is a 409 that names the constraint.
    let (s, v) = f
        .api
        .call(
            Method::POST,
            "/api/v1/machines/allocate",
            Some(&f.alice),
            Some(json!({"cpu_count": 999})),
        )
        .await;
    assert_eq!(s, 409);
    assert!(
        v["message"].as_str().unwrap().contains("cpu_count>=999"),
        "{v}"
    );
}

#[tokio::test]
async fn users_see_the_pool_and_act_only_on_their_own() {
    let (_daemon, f) = fixture().await;
    let (s, _) = f
        .api
        .call(
            Method::POST,
            "/api/v1/users",
            Some(&f.admin),
            Some(json!({"username": "bob", "password": "bob-password"})),
        )
        .await;
    assert_eq!(s, 201);
    let bob = f.api.login("bob", "bob-password").await;
    let mine = f.alices_machine().await;
    // Bob does not see alice's machine, and cannot act on it.
    let (s, _) = f
        .api
        .call(
            Method::GET,
            &format!("/api/v1/machines/{mine}"),
            Some(&bob),
            None,
        )
        .await;
    assert_eq!(s, 404);
    let (s, _) = f
        .api
        .call(
            Method::POST,
            &format!("/api/v1/machines/{mine}/actions/release"),
            Some(&bob),
            Some(json!({})),
        )
        .await;
    assert_eq!(s, 404);
    let (_, page) = f
        .api
        .call(Method::GET, "/api/v1/machines?limit=0", Some(&bob), None)
        .await;
    assert!(
        page["items"]
            .as_array()
            .unwrap()
            .iter()
            .all(|m| m["system_id"] != mine.as_str())
    );
    // A user may not commission, even a free machine.
    let (s, v) = f
        .api
        .call(
            Method::POST,
            "/api/v1/machines/rdy070/actions/commission",
            Some(&bob),
            Some(json!({})),
        )
        .await;
    assert_eq!(s, 403, "{v}");
    // Deploying carries the owner's SSH keys; the machine waits for its boot.
    let key = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIdeploykey0000000000 alice@laptop";
    let (s, _) = f
        .api
        .call(
            Method::POST,
            "/api/v1/users/alice/sshkeys",
            Some(&f.alice),
            Some(json!({"key": key})),
        )
        .await;
    assert_eq!(s, 201);
    let (s, m) = f
        .api
        .call(
            Method::POST,
            &format!("/api/v1/machines/{mine}/actions/deploy"),
            Some(&f.alice),
            Some(json!({"user_data": "#cloud-config\n"})),
        )
        .await;
    assert_eq!(s, 200, "{m}");
    assert_eq!(m["status"], "deploying");
    assert_eq!(m["status_code"], 9);
    assert_eq!(m["deploy"]["ssh_keys"][0], key);
    assert!(
        m["status_message"].as_str().unwrap().contains("waiting"),
        "{m}"
    );
    // The history shows both steps.
    let (_, events) = f
        .api
        .call(
            Method::GET,
            &format!("/api/v1/machines/{mine}/events"),
            Some(&f.alice),
            None,
        )
        .await;
    let actions: Vec<&str> = events
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["action"].as_str().unwrap())
        .filter(|a| !matches!(*a, "note" | "power_state"))
        .collect();
    assert_eq!(actions, vec!["deploy", "allocate"]);
    // Its power driver (the command driver here) switched it on to network-boot.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    loop {
        let (_, m) = f
            .api
            .call(
                Method::GET,
                &format!("/api/v1/machines/{mine}"),
                Some(&f.alice),
                None,
            )
            .await;
        if m["power_state"]["state"] == "on" {
            assert_eq!(m["status"], "deploying");
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "never powered on: {m}"
        );
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
}

#[tokio::test]
async fn power_secrets_are_shown_only_to_admins() {
    let (daemon, f) = fixture().await;
    let (s, m) = f
        .api
        .call(
            Method::POST,
            "/api/v1/machines",
            Some(&f.admin),
            Some(json!({"mac_addresses": ["52:54:00:12:34:56"], "power_type": "ipmi", "power_parameters": {"power_address": "127.0.0.1", "power_user": "root", "power_pass": "hunter2-secret"}, "commission": false})),
        )
        .await;
    assert_eq!(s, 201, "{m}");
    assert_eq!(
        m["power"]["parameters"]["power_pass"], "hunter2-secret",
        "admins see it"
    );
    let id = m["system_id"].as_str().unwrap();
    let (_, seen) = f
        .api
        .call(
            Method::GET,
            &format!("/api/v1/machines/{id}"),
            Some(&f.alice),
            None,
        )
        .await;
    assert_eq!(seen["power"]["parameters"]["power_pass"], "********");
    assert_eq!(seen["power"]["parameters"]["power_user"], "root");
    let (_, page) = f
        .api
        .call(
            Method::GET,
            "/api/v1/machines?limit=0",
            Some(&f.alice),
            None,
        )
        .await;
    assert!(!page.to_string().contains("hunter2-secret"));
    assert!(
        !daemon.log().contains("hunter2-secret"),
        "the log never holds a power password"
    );
}

/// The command driver's commands and URLs hold credentials (`-u user:pass`,
/// `https://user:pass@...`, `?password=`): non-admins see none of them, and what
/// a failing query printed reaches the machine's events and power state, which
/// non-admins read, with those credentials scrubbed.
#[tokio::test]
async fn command_power_secrets_are_shown_only_to_admins() {
    let (daemon, f) = fixture().await;
    let query = "false -u pdu:cmd-S3cret-a 'https://admin:url-S3cret-b@127.0.0.1/?password=qs-S3cret-c' \
                 || echo 'denied: cmd-S3cret-a url-S3cret-b qs-S3cret-c'";
    let (s, m) = f
        .api
        .call(
            Method::POST,
            "/api/v1/machines",
            Some(&f.admin),
            Some(
                json!({"mac_addresses": ["52:54:00:12:34:57"], "power_type": "command",
                "power_parameters": {"power_on_command": "true", "power_off_command": "true",
                    "power_query_command": query,
                    "power_on_uri": null},
                "commission": false}),
            ),
        )
        .await;
    assert_eq!(s, 201, "{m}");
    assert_eq!(
        m["power"]["parameters"]["power_query_command"], query,
        "admins see it"
    );
    let id = m["system_id"].as_str().unwrap();
    // A query: the command prints something that is not a power state.
    let (s, answer) = f
        .api
        .call(
            Method::GET,
            &format!("/api/v1/machines/{id}/power"),
            Some(&f.admin),
            None,
        )
        .await;
    assert!(answer.to_string().contains("denied"), "{s} {answer}");
    for (what, path) in [
        ("machine", format!("/api/v1/machines/{id}")),
        ("events", format!("/api/v1/machines/{id}/events")),
        ("list", "/api/v1/machines?limit=0".to_owned()),
    ] {
        let (_, seen) = f.api.call(Method::GET, &path, Some(&f.alice), None).await;
        let text = seen.to_string();
        for secret in ["cmd-S3cret-a", "url-S3cret-b", "qs-S3cret-c"] {
            assert!(
                !text.contains(secret),
                "{what} shows {secret} to a non-admin: {text}"
            );
        }
        if what == "machine" {
            assert_eq!(
                seen["power"]["parameters"]["power_query_command"],
                "********"
            );
            assert_eq!(seen["power"]["parameters"]["power_on_command"], "********");
        }
    }
    let (_, events) = f
        .api
        .call(
            Method::GET,
            &format!("/api/v1/machines/{id}/events"),
            Some(&f.admin),
            None,
        )
        .await;
    for secret in ["cmd-S3cret-a", "url-S3cret-b", "qs-S3cret-c"] {
        assert!(
            !events.to_string().contains(secret),
            "events keep {secret}: {events}"
        );
        assert!(!daemon.log().contains(secret), "the log holds {secret}");
    }
}

/// A password change shuts out whoever had the old one: the user's tokens made
/// before it stop working; logging in with the new password works.
#[tokio::test]
async fn a_password_change_revokes_the_users_tokens() {
    let (_daemon, f) = fixture().await;
    let (s, _) = f
        .api
        .call(
            Method::GET,
            "/api/v1/machines?limit=1",
            Some(&f.alice),
            None,
        )
        .await;
    assert_eq!(s, 200);
    let (s, m) = f
        .api
        .call(
            Method::PATCH,
            "/api/v1/users/alice",
            Some(&f.alice),
            Some(json!({"password": "alice-new-password"})),
        )
        .await;
    assert_eq!(s, 200, "{m}");
    let (s, m) = f
        .api
        .call(
            Method::GET,
            "/api/v1/machines?limit=1",
            Some(&f.alice),
            None,
        )
        .await;
    assert_eq!(s, 401, "the old token still works: {m}");
    let fresh = f.api.login("alice", "alice-new-password").await;
    let (s, _) = f
        .api
        .call(Method::GET, "/api/v1/machines?limit=1", Some(&fresh), None)
        .await;
    assert_eq!(s, 200);
    // Another user's tokens are untouched.
    let (s, _) = f
        .api
        .call(
            Method::GET,
            "/api/v1/machines?limit=1",
            Some(&f.admin),
            None,
        )
        .await;
    assert_eq!(s, 200);
}

#[tokio::test]
async fn openapi_lists_every_route() {
    let (_daemon, f) = fixture().await;
    let (s, doc) = f
        .api
        .call(Method::GET, "/api/v1/openapi.json", Some(&f.alice), None)
        .await;
    assert_eq!(s, 200);
    assert_eq!(doc["openapi"], "3.1.0");
    for route in rackbox::http::api::ROUTES {
        let op = &doc["paths"][route.path][route.method.as_str().to_lowercase()];
        assert!(
            op.is_object(),
            "{} {} missing from OpenAPI",
            route.method,
            route.path
        );
    }
    let machine = &doc["components"]["schemas"]["MachineView"];
    assert!(
        machine["properties"]["system_id"].is_object(),
        "Machine schema has system_id"
    );
}
