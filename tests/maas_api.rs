//! The MAAS 2.0 face over HTTP, the way gomaasapi (Juju, Terraform) speaks it: urlencoded bodies,
//! `?op=`, OAuth with realm "MAAS+API". And the schema test: every machine, zone, pool, domain,
//! interface, block device, VLAN, fabric and file object carries the keys with the JSON types
//! gomaasapi's strict decoder requires (juju/gomaasapi machine_2_0, interface_2_0,
//! blockdevice_2_0, vlan_2_0, zone_2_0, pool_2_0, domain_, file_2_0, fabric_2_0).

mod common;

use common::maas::{Maas, maas_key};
use common::{ADMIN_PASSWORD, Api, Daemon, machine};
use rackbox::model::{DeployTarget, Disk, Interface, Status};
use reqwest::Method;
use serde_json::{Value, json};

/// A JSON type as gomaasapi's schema package checks it.
#[derive(Clone, Debug)]
enum Ty {
    Str,
    Int,
    Bool,
    /// A JSON object (`schema.StringMap(schema.Any())`).
    Map,
    /// A JSON object whose values are strings.
    StrMap,
    List(Box<Ty>),
    NullOr(Box<Ty>),
    Any,
}

fn list(t: Ty) -> Ty {
    Ty::List(Box::new(t))
}

fn null_or(t: Ty) -> Ty {
    Ty::NullOr(Box::new(t))
}

fn matches(v: &Value, t: &Ty) -> bool {
    match t {
        Ty::Str => v.is_string(),
        Ty::Int => v.is_i64() || v.is_u64(),
        Ty::Bool => v.is_boolean(),
        Ty::Map => v.is_object(),
        Ty::StrMap => v
            .as_object()
            .is_some_and(|m| m.values().all(Value::is_string)),
        Ty::List(inner) => v
            .as_array()
            .is_some_and(|a| a.iter().all(|x| matches(x, inner))),
        Ty::NullOr(inner) => v.is_null() || matches(v, inner),
        Ty::Any => true,
    }
}

/// Asserts that `obj` has every key of `fields` with the given type.
fn check(what: &str, obj: &Value, fields: &[(&str, Ty)]) {
    let map = obj
        .as_object()
        .unwrap_or_else(|| panic!("{what} is not an object: {obj}"));
    for (key, ty) in fields {
        let v = map
            .get(*key)
            .unwrap_or_else(|| panic!("{what} has no key {key:?}: {obj}"));
        assert!(matches(v, ty), "{what}.{key} is {v}, expected {ty:?}");
    }
}

fn machine_fields() -> Vec<(&'static str, Ty)> {
    use Ty::*;
    vec![
        ("resource_uri", Str),
        ("system_id", Str),
        ("hostname", Str),
        ("fqdn", Str),
        ("domain", Map),
        ("owner", null_or(Str)),
        ("tag_names", list(Str)),
        ("owner_data", StrMap),
        ("osystem", Str),
        ("distro_series", Str),
        ("hwe_kernel", null_or(Str)),
        ("min_hwe_kernel", null_or(Str)),
        ("architecture", null_or(Str)),
        ("memory", Int),
        ("cpu_count", Int),
        ("ip_addresses", list(Str)),
        ("power_state", Str),
        ("power_type", Str),
        ("status", Int),
        ("status_name", Str),
        ("status_message", null_or(Str)),
        ("status_action", null_or(Str)),
        ("boot_interface", null_or(Map)),
        ("boot_disk", null_or(Map)),
        ("interface_set", list(Map)),
        ("zone", Map),
        ("pool", null_or(Map)),
        ("physicalblockdevice_set", list(Map)),
        ("blockdevice_set", list(Map)),
        ("volume_groups", list(Map)),
        ("raids", list(Map)),
        ("bcaches", list(Map)),
        ("cache_sets", list(Map)),
        ("node_type", Int),
        ("netboot", Bool),
        ("locked", Bool),
        ("disable_ipv4", Bool),
        ("hardware_info", StrMap),
    ]
}

fn interface_fields() -> Vec<(&'static str, Ty)> {
    use Ty::*;
    vec![
        ("resource_uri", Str),
        ("id", Int),
        ("name", Str),
        ("type", Str),
        ("enabled", Bool),
        ("tags", null_or(list(Str))),
        ("vlan", null_or(Map)),
        ("links", list(Map)),
        ("mac_address", null_or(Str)),
        ("effective_mtu", Int),
        ("parents", list(Str)),
        ("children", list(Str)),
        ("params", Any),
    ]
}

fn vlan_fields() -> Vec<(&'static str, Ty)> {
    use Ty::*;
    vec![
        ("id", Int),
        ("resource_uri", Str),
        ("name", null_or(Str)),
        ("fabric", Str),
        ("vid", Int),
        ("mtu", Int),
        ("dhcp_on", Bool),
        ("primary_rack", null_or(Str)),
        ("secondary_rack", null_or(Str)),
    ]
}

fn block_device_fields() -> Vec<(&'static str, Ty)> {
    use Ty::*;
    vec![
        ("resource_uri", Str),
        ("id", Int),
        ("uuid", null_or(Str)),
        ("name", Str),
        ("model", null_or(Str)),
        ("id_path", null_or(Str)),
        ("path", Str),
        ("used_for", Str),
        ("tags", list(Str)),
        ("block_size", Int),
        ("used_size", Int),
        ("size", Int),
        ("filesystem", null_or(Map)),
        ("partitions", list(Map)),
    ]
}

fn named_fields() -> Vec<(&'static str, Ty)> {
    use Ty::*;
    vec![
        ("id", Int),
        ("name", Str),
        ("description", Str),
        ("resource_uri", Str),
    ]
}

fn domain_fields() -> Vec<(&'static str, Ty)> {
    use Ty::*;
    vec![
        ("authoritative", Bool),
        ("resource_record_count", Int),
        ("ttl", null_or(Int)),
        ("resource_uri", Str),
        ("id", Int),
        ("name", Str),
    ]
}

fn check_interface(what: &str, i: &Value) {
    check(what, i, &interface_fields());
    if !i["vlan"].is_null() {
        check(&format!("{what}.vlan"), &i["vlan"], &vlan_fields());
    }
}

fn check_machine(m: &Value) {
    let id = m["system_id"].as_str().unwrap_or("?").to_string();
    check(&format!("machine {id}"), m, &machine_fields());
    check(&format!("machine {id} zone"), &m["zone"], &named_fields());
    check(&format!("machine {id} pool"), &m["pool"], &named_fields());
    check(
        &format!("machine {id} domain"),
        &m["domain"],
        &domain_fields(),
    );
    for (n, i) in m["interface_set"].as_array().unwrap().iter().enumerate() {
        check_interface(&format!("machine {id} interface {n}"), i);
    }
    if !m["boot_interface"].is_null() {
        check_interface(
            &format!("machine {id} boot_interface"),
            &m["boot_interface"],
        );
    }
    for set in ["physicalblockdevice_set", "blockdevice_set"] {
        for (n, d) in m[set].as_array().unwrap().iter().enumerate() {
            check(
                &format!("machine {id} {set} {n}"),
                d,
                &block_device_fields(),
            );
        }
    }
    if !m["boot_disk"].is_null() {
        check(
            &format!("machine {id} boot_disk"),
            &m["boot_disk"],
            &block_device_fields(),
        );
    }
}

struct Setup {
    daemon: Daemon,
    admin: Maas,
    user: Maas,
    _dir: tempfile::TempDir,
}

async fn setup() -> Setup {
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("state");
    std::fs::create_dir_all(&state).unwrap();
    let mut rich = machine("rich01", Status::Deployed, 16, 65536);
    rich.owner = Some("bob".into());
    rich.owner_data.insert("juju-model".into(), "m1".into());
    rich.deploy = Some(DeployTarget {
        image: "ubuntu/jammy".into(),
        osystem: "ubuntu".into(),
        distro_series: "jammy".into(),
        user_data: String::new(),
        ssh_keys: vec![],
    });
    rich.disks.push(Disk {
        name: "sdb".into(),
        size_bytes: 2_000_000_000_000,
        model: "BIG".into(),
        serial: "S1".into(),
        block_size: 4096,
        rotational: true,
        tags: vec!["rotary".into()],
    });
    rich.interfaces.push(Interface {
        name: "eth1".into(),
        mac: "52:54:00:12:34:56".into(),
        boot: false,
        network: None,
    });
    let mut bare = machine("bare01", Status::New, 0, 0);
    bare.disks.clear();
    bare.interfaces.clear();
    let mut ready = machine("rdy001", Status::Ready, 4, 8192);
    ready.tags.insert("db".into());
    ready.disks.push(Disk {
        name: "vdb".into(),
        size_bytes: 500_000_000_000,
        model: String::new(),
        serial: String::new(),
        block_size: 512,
        rotational: false,
        tags: vec!["ssd".into()],
    });
    common::seed(
        &state,
        vec![rich, bare, ready, machine("rdy002", Status::Ready, 2, 2048)],
    );
    let daemon = Daemon::start_in(&state, "");
    let api = Api::new(&daemon.url);
    let bearer = api.login("admin", ADMIN_PASSWORD).await;
    let (s, v) = api
        .call(
            Method::POST,
            "/api/v1/users",
            Some(&bearer),
            Some(json!({"username": "bob", "password": "bob-password-1"})),
        )
        .await;
    assert_eq!(s, 201, "{v}");
    let admin_key = maas_key(&api, &bearer, "admin").await;
    let user_key = maas_key(&api, &bearer, "bob").await;
    Setup {
        admin: Maas::new(&daemon.url, Some(&admin_key)),
        user: Maas::new(&daemon.url, Some(&user_key)),
        daemon,
        _dir: dir,
    }
}

#[tokio::test]
async fn every_object_has_the_keys_and_types_gomaasapi_requires() {
    let s = setup().await;
    let (st, machines) = s.admin.get("machines/", &[]).await;
    assert_eq!(st, 200, "{machines}");
    let machines = machines.as_array().unwrap().clone();
    assert_eq!(machines.len(), 4);
    for m in &machines {
        check_machine(m);
    }
    let rich = machines
        .iter()
        .find(|m| m["system_id"] == "rich01")
        .unwrap();
    assert_eq!(rich["status"], 6);
    assert_eq!(rich["status_name"], "Deployed");
    assert_eq!(rich["owner"], "bob");
    assert_eq!(rich["owner_data"], json!({"juju-model": "m1"}));
    assert_eq!(rich["distro_series"], "jammy");
    assert_eq!(rich["interface_set"].as_array().unwrap().len(), 2);
    assert_eq!(rich["blockdevice_set"].as_array().unwrap().len(), 2);
    assert_eq!(rich["memory"], 65536);
    assert_eq!(rich["resource_uri"], "/MAAS/api/2.0/machines/rich01/");
    let bare = machines
        .iter()
        .find(|m| m["system_id"] == "bare01")
        .unwrap();
    assert!(bare["boot_interface"].is_null() && bare["boot_disk"].is_null());
    assert!(bare["owner"].is_null());

    // The sub-resources answer the same objects.
    let (st, ifaces) = s.admin.get("nodes/rich01/interfaces/", &[]).await;
    assert_eq!(st, 200);
    for i in ifaces.as_array().unwrap() {
        check_interface("interface", i);
    }
    let (st, one) = s.admin.get("nodes/rich01/interfaces/2/", &[]).await;
    assert_eq!(st, 200);
    assert_eq!(one["mac_address"], "52:54:00:12:34:56");
    let (st, disks) = s.admin.get("nodes/rich01/blockdevices/", &[]).await;
    assert_eq!(st, 200);
    for d in disks.as_array().unwrap() {
        check("block device", d, &block_device_fields());
    }
    assert_eq!(
        s.admin.get("nodes/rich01/blockdevices/9/", &[]).await.0,
        404
    );

    let (st, zones) = s.user.get("zones/", &[]).await;
    assert_eq!(st, 200);
    for z in zones.as_array().unwrap() {
        check("zone", z, &named_fields());
    }
    let (st, pools) = s.user.get("resourcepools/", &[]).await;
    assert_eq!(st, 200);
    for p in pools.as_array().unwrap() {
        check("pool", p, &named_fields());
    }
    let pool_id = pools[0]["id"].to_string();
    assert_eq!(
        s.user.get(&format!("resourcepool/{pool_id}/"), &[]).await.0,
        200
    );
    let (st, domains) = s.user.get("domains/", &[]).await;
    assert_eq!(st, 200);
    for d in domains.as_array().unwrap() {
        check("domain", d, &domain_fields());
    }
    let (st, fabrics) = s.user.get("fabrics/", &[]).await;
    assert_eq!(st, 200);
    for f in fabrics.as_array().unwrap() {
        check(
            "fabric",
            f,
            &[
                ("resource_uri", Ty::Str),
                ("id", Ty::Int),
                ("name", Ty::Str),
                ("class_type", null_or(Ty::Str)),
                ("vlans", list(Ty::Map)),
            ],
        );
        for v in f["vlans"].as_array().unwrap() {
            check("vlan", v, &vlan_fields());
        }
    }
    assert_eq!(s.user.get("spaces/", &[]).await, (200, json!([])));
    assert_eq!(s.user.get("subnets/", &[]).await, (200, json!([])));
    assert_eq!(s.user.get("boot-resources/", &[]).await, (200, json!([])));
    // An image in the cache is a boot resource to MAAS clients (Juju picks series from these).
    let api = Api::new(&s.daemon.url);
    let bearer = api.login("admin", ADMIN_PASSWORD).await;
    let r = api
        .http
        .post(format!(
            "{}/api/v1/images?name=jammy-img&os=ubuntu&release=jammy&arch=amd64",
            api.url
        ))
        .bearer_auth(&bearer)
        .body(vec![1u8; 4096])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201);
    let (st, v) = s.user.get("boot-resources/", &[]).await;
    assert_eq!(st, 200);
    assert_eq!(v[0]["name"], "ubuntu/jammy");
    assert_eq!(v[0]["architecture"], "amd64/generic");
    assert!(
        v[0]["resource_uri"]
            .as_str()
            .unwrap()
            .starts_with("/MAAS/api/2.0/boot-resources/")
    );
    drop(s.daemon);
}

#[tokio::test]
async fn gomaasapi_style_requests() {
    let s = setup().await;
    let anon = Maas::new(&s.daemon.url, None);

    // describe/ and version/ are anonymous; describe's URIs come from the request's Host.
    let (st, ct, d, _) = anon.send(Method::GET, "describe/", &[], &[]).await;
    assert_eq!((st, ct.as_str()), (200, "application/json"));
    let host = s.daemon.url.clone();
    let machines_handler = d["resources"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["name"] == "MachinesHandler")
        .unwrap();
    assert_eq!(
        machines_handler["auth"]["uri"],
        format!("{host}/MAAS/api/2.0/machines/")
    );
    let (st, v) = anon.get("version/", &[]).await;
    assert_eq!(st, 200);
    assert!(
        v["capabilities"]
            .as_array()
            .unwrap()
            .contains(&json!("authenticate-api"))
    );

    // Credentials: none, wrong, right.
    let (st, ct, _, _) = anon.send(Method::GET, "machines/", &[], &[]).await;
    assert_eq!(st, 401);
    assert!(ct.starts_with("text/plain"), "{ct}");
    let wrong = Maas::new(
        &host,
        Some("AAAAAAAAAAAAAAAAAA:BBBBBBBBBBBBBBBBBB:CCCCCCCCCCCCCCCCCCCCCCCCCCCCCCCC"),
    );
    assert_eq!(wrong.get("users/", &[("op", "whoami")]).await.0, 401);
    let (st, me) = s.user.get("users/", &[("op", "whoami")]).await;
    assert_eq!(st, 200);
    assert_eq!(me["username"], "bob");
    assert_eq!(me["is_superuser"], false);

    // Admins create users; the new user is who the API says.
    let (st, u) = s
        .admin
        .post(
            "users/",
            "",
            &[
                ("username", "carol"),
                ("email", "c@example.com"),
                ("password", "carol-password"),
                ("is_superuser", "0"),
            ],
        )
        .await;
    assert_eq!(st, 200, "{u}");
    assert_eq!(u["is_superuser"], false);
    assert_eq!(
        s.user
            .post(
                "users/",
                "",
                &[("username", "eve"), ("password", "eve-password")]
            )
            .await
            .0,
        403
    );
    let (_, users) = s.admin.get("users/", &[]).await;
    assert_eq!(users.as_array().unwrap().len(), 3);

    // Unknown op and unknown endpoint.
    let (st, v) = s.user.post("machines/", "frobnicate", &[]).await;
    assert_eq!(st, 400, "{v}");
    assert!(v.as_str().unwrap().contains("op=frobnicate"), "{v}");
    assert_eq!(s.user.get("nonsense/", &[]).await.0, 404);

    // Create with `?op=` (empty op: RESTful create), power_parameters_<key>, repeated MACs.
    let (st, m) = s
        .admin
        .post(
            "machines/",
            "",
            &[
                ("architecture", "amd64/generic"),
                ("mac_addresses", "52:54:00:00:aa:01"),
                ("mac_addresses", "52:54:00:00:aa:02"),
                ("power_type", "ipmi"),
                ("power_parameters_power_address", "10.0.0.9"),
                ("power_parameters_power_pass", "secret"),
                ("hostname", "gonode"),
                ("commission", "false"),
            ],
        )
        .await;
    assert_eq!(st, 200, "{m}");
    check_machine(&m);
    let new_id = m["system_id"].as_str().unwrap().to_string();
    assert_eq!(m["power_type"], "ipmi");
    assert_eq!(m["status_name"], "New");
    let (st, pp) = s
        .admin
        .get(
            &format!("machines/{new_id}/"),
            &[("op", "power_parameters")],
        )
        .await;
    assert_eq!(st, 200);
    assert_eq!(pp["power_address"], "10.0.0.9");
    assert_eq!(
        s.user
            .get(
                &format!("machines/{new_id}/"),
                &[("op", "power_parameters")]
            )
            .await
            .0,
        403
    );
    let (st, v) = s
        .admin
        .post(
            "machines/",
            "",
            &[("mac_addresses", "nonsense"), ("architecture", "amd64")],
        )
        .await;
    assert_eq!(st, 400, "{v}");

    // Filters: repeated id, hostname, mac_address.
    let (_, v) = s
        .user
        .get("machines/", &[("id", "rdy001"), ("id", "rdy002")])
        .await;
    assert_eq!(v.as_array().unwrap().len(), 2);
    let (_, v) = s.admin.get("machines/", &[("hostname", "gonode")]).await;
    assert_eq!(v[0]["system_id"], new_id.as_str());
    let (_, v) = s
        .admin
        .get("machines/", &[("mac_address", "52-54-00-00-AA-02")])
        .await;
    assert_eq!(v[0]["system_id"], new_id.as_str());

    // Allocate: 409 text/plain without Retry-After when nothing matches.
    let (st, ct, v, headers) = s
        .user
        .send(
            Method::POST,
            "machines/",
            &[("op", "allocate")],
            &[("mem", "999999")],
        )
        .await;
    assert_eq!(st, 409, "{v}");
    assert!(ct.starts_with("text/plain"));
    assert!(headers.get("retry-after").is_none());

    // dry_run names the machine without taking it.
    let (st, m) = s
        .user
        .post(
            "machines/",
            "allocate",
            &[("tags", "db"), ("dry_run", "true")],
        )
        .await;
    assert_eq!(st, 200, "{m}");
    assert_eq!(
        (m["system_id"].as_str(), m["status_name"].as_str()),
        (Some("rdy001"), Some("Ready"))
    );

    // Allocate with storage and agent_name: constraints_by_type names the disk ids.
    let (st, m) = s
        .user
        .post(
            "machines/",
            "allocate",
            &[
                ("tags", "db"),
                ("storage", "root:50,data:400(ssd)"),
                ("agent_name", "model-uuid-1"),
                ("not_subnets", "space:nope"),
            ],
        )
        .await;
    assert_eq!(st, 200, "{m}");
    assert_eq!(m["system_id"], "rdy001");
    assert_eq!(m["status_name"], "Allocated");
    assert_eq!(
        m["constraints_by_type"],
        json!({"storage": {"root": [1], "data": [2]}})
    );
    let (_, v) = s
        .user
        .get("machines/", &[("agent_name", "model-uuid-1")])
        .await;
    let ids: Vec<&str> = v
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["system_id"].as_str().unwrap())
        .collect();
    assert_eq!(ids, vec!["rdy001"]);
    assert!(v[0]["owner_data"].as_object().unwrap().is_empty());

    // Owner data: set, then delete with an empty value.
    let (st, m) = s
        .user
        .post(
            "machines/rdy001/",
            "set_owner_data",
            &[("juju", "yes"), ("other", "1")],
        )
        .await;
    assert_eq!(st, 200, "{m}");
    assert_eq!(m["owner_data"], json!({"juju": "yes", "other": "1"}));
    let (_, m) = s
        .user
        .post("machines/rdy001/", "set_owner_data", &[("other", "")])
        .await;
    assert_eq!(m["owner_data"], json!({"juju": "yes"}));

    // Deploy: base64 user_data with a trailing newline; bad base64 is a 400.
    let (st, v) = s
        .user
        .post(
            "machines/rdy001/",
            "deploy",
            &[("user_data", "!!notbase64")],
        )
        .await;
    assert_eq!(st, 400, "{v}");
    let (st, m) = s
        .user
        .post(
            "machines/rdy001/",
            "deploy",
            &[
                ("user_data", "I2Nsb3VkLWNvbmZpZwo=\n"),
                ("distro_series", "jammy"),
            ],
        )
        .await;
    assert_eq!(st, 200, "{m}");
    assert_eq!(m["status"], 9);
    // A conflicting action is 409 naming the status.
    let (st, v) = s.user.post("machines/rdy001/", "deploy", &[]).await;
    assert_eq!(st, 409, "{v}");
    assert!(v.as_str().unwrap().contains("Deploying"), "{v}");

    // Power: a machine with no power driver configured cannot be switched, and says so.
    let (st, ct, v, _) = s
        .user
        .send(
            Method::POST,
            "machines/rdy001/",
            &[("op", "power_off")],
            &[],
        )
        .await;
    assert_eq!(st, 409, "{v}");
    assert!(ct.starts_with("text/plain"));
    assert!(
        v.as_str().unwrap().contains("no power driver configured"),
        "{v}"
    );
    let (st, v) = s
        .user
        .get("machines/rdy001/", &[("op", "query_power_state")])
        .await;
    assert_eq!((st, v), (200, json!({"state": "unknown"})));

    // Bulk release, with the erase flags as gomaasapi sends them.
    let (st, v) = s.user.post("machines/rdy001/", "abort", &[]).await;
    assert_eq!(st, 200, "{v}");
    let (st, v) = s
        .user
        .post("machines/", "allocate", &[("system_id", "rdy002")])
        .await;
    assert_eq!(st, 200, "{v}");
    let (st, v) = s
        .user
        .post(
            "machines/",
            "release",
            &[
                ("machines", "rdy001"),
                ("machines", "rdy002"),
                ("erase", "true"),
                ("secure_erase", "false"),
                ("quick_erase", "true"),
            ],
        )
        .await;
    assert_eq!((st, v), (200, json!(["rdy001", "rdy002"])));
    let (_, m) = s.user.get("machines/rdy002/", &[]).await;
    assert_eq!(m["status_name"], "Disk erasing");
    let (st, v) = s
        .user
        .post("machines/", "release", &[("machines", "nosuch")])
        .await;
    assert_eq!(st, 400, "{v}");

    // Files: upload (multipart), list, read with content, raw get, anonymous get_by_key, delete.
    let boundary = "XyZ";
    let body = format!(
        "--{boundary}\r\nContent-Disposition: form-data; name=\"filename\"\r\n\r\ntools.tgz\r\n--{boundary}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"file\"\r\nContent-Type: application/octet-stream\r\n\r\nhello tools\r\n--{boundary}--\r\n"
    );
    let r = s
        .user
        .auth(
            s.user
                .http
                .post(format!("{}files/", s.user.base))
                .query(&[("op", "")])
                .header(
                    "Content-Type",
                    format!("multipart/form-data; boundary={boundary}"),
                )
                .body(body),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 201);
    // An authenticated caller keeps the large body limit (the anonymous one is 64 KiB).
    let big = "x".repeat(1024 * 1024);
    let r = s
        .user
        .auth(
            s.user
                .http
                .post(format!("{}files/", s.user.base))
                .header(
                    "Content-Type",
                    format!("multipart/form-data; boundary={boundary}"),
                )
                .body(format!(
                    "--{boundary}\r\nContent-Disposition: form-data; name=\"filename\"\r\n\r\nbig.bin\r\n--{boundary}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"file\"\r\nContent-Type: application/octet-stream\r\n\r\n{big}\r\n--{boundary}--\r\n"
                )),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 201);
    let (st, files) = s.user.get("files/", &[("prefix", "tools")]).await;
    assert_eq!(st, 200);
    assert_eq!(files.as_array().unwrap().len(), 1);
    let (st, f) = s.user.get("files/tools.tgz/", &[]).await;
    assert_eq!(st, 200);
    check(
        "file",
        &f,
        &[
            ("resource_uri", Ty::Str),
            ("filename", Ty::Str),
            ("anon_resource_uri", Ty::Str),
            ("content", Ty::Str),
        ],
    );
    assert_eq!(f["content"], "aGVsbG8gdG9vbHM=");
    let (st, raw) = s
        .user
        .get("files/", &[("op", "get"), ("filename", "tools.tgz")])
        .await;
    assert_eq!((st, raw), (200, json!("hello tools")));
    let anon_uri = f["anon_resource_uri"].as_str().unwrap();
    assert!(anon_uri.starts_with("/MAAS/api/2.0/files/?op=get_by_key&key="));
    let r = reqwest::get(format!("{host}{anon_uri}")).await.unwrap();
    assert_eq!(r.status().as_u16(), 200);
    assert_eq!(r.text().await.unwrap(), "hello tools");
    // Another user does not see it.
    assert_eq!(s.admin.get("files/tools.tgz/", &[]).await.0, 404);
    let (st, _, _, _) = s
        .user
        .send(Method::DELETE, "files/tools.tgz/", &[], &[])
        .await;
    assert_eq!(st, 204);
    assert_eq!(s.user.get("files/tools.tgz/", &[]).await.0, 404);

    // PUT updates, DELETE deletes.
    let (st, m) = {
        let (s2, _, v, _) = s
            .admin
            .send(
                Method::PUT,
                &format!("machines/{new_id}/"),
                &[],
                &[("hostname", "renamed"), ("description", "moved")],
            )
            .await;
        (s2, v)
    };
    assert_eq!(st, 200, "{m}");
    assert_eq!(m["hostname"], "renamed");
    let (st, _, _, _) = s
        .admin
        .send(Method::DELETE, &format!("machines/{new_id}/"), &[], &[])
        .await;
    assert_eq!(st, 204);
    assert_eq!(
        s.admin.get(&format!("machines/{new_id}/"), &[]).await.0,
        404
    );

    // Password login through accounts/authenticate gives a working key.
    let r = reqwest::Client::new()
        .post(format!("{host}/MAAS/accounts/authenticate/"))
        .form(&[
            ("username", "bob"),
            ("password", "bob-password-1"),
            ("consumer", "t@h"),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 200);
    let k: Value = r.json().await.unwrap();
    let key = format!(
        "{}:{}:{}",
        k["consumer_key"].as_str().unwrap(),
        k["token_key"].as_str().unwrap(),
        k["token_secret"].as_str().unwrap()
    );
    let via_login = Maas::new(&host, Some(&key));
    assert_eq!(
        via_login.get("users/", &[("op", "whoami")]).await.1["username"],
        "bob"
    );
    let r = reqwest::Client::new()
        .post(format!("{host}/MAAS/accounts/authenticate/"))
        .form(&[("username", "bob"), ("password", "wrong-password")])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 401);
}
