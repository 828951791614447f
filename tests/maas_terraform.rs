//! The Terraform MAAS provider (canonical/terraform-provider-maas 2.4, through gomaasclient 0.7)
//! against a real `rackbox serve`: the calls of `maas_machine` (create with commission, wait for
//! Ready, the PUT that follows, read, import, delete), `maas_tag`, `maas_resource_pool`,
//! `maas_user` and `maas_instance` (allocate, deploy, wait for Deployed, read, release, wait for
//! Ready), replayed in its order with its parameters and encodings (urlencoded bodies, `?op=` on
//! every POST, flattened `power_parameters_*`, `is_superuser=0|1`). Every answer is checked the
//! way Go's encoding/json decodes it into gomaasclient's entities: a missing key or null is a
//! zero value, a wrong JSON type fails the apply. The statuses are the ones its
//! `waitForMachineStatus` accepts (anything else fails at once). The machine's agent is played
//! through rackbox's own endpoints. `maas_subnet_ip_range` needs a boot network: it is replayed in
//! tests/dhcp_netns.rs, where a real DHCP client sees the pool change.

mod common;

use common::maas::{Maas, maas_key};
use common::{ADMIN_PASSWORD, Api, Daemon};
use reqwest::Method;
use serde_json::{Value, json};

/// A JSON type as Go's encoding/json decodes it into gomaasclient's entity structs.
#[derive(Clone, Debug)]
enum Go {
    Int,
    Float,
    Str,
    Bool,
    /// A string that parses as an IP address (`net.IP`); "" is the zero value.
    Ip,
    /// A JSON object, checked no further.
    Obj,
    /// map[string]string.
    StrMap,
    List(Box<Go>),
    /// A nested entity, checked with its own fields.
    Entity(fn() -> Vec<(&'static str, Go)>),
    ListOf(fn() -> Vec<(&'static str, Go)>),
    /// `MAASTime`: "YYYY-MM-DDTHH:MM:SS[.fff]" without a zone.
    Time,
}

fn list(t: Go) -> Go {
    Go::List(Box::new(t))
}

/// Whether `v` decodes into `t` (null always does: it is the zero value).
fn decodes(what: &str, v: &Value, t: &Go) -> Result<(), String> {
    if v.is_null() {
        return Ok(());
    }
    let fits = match t {
        Go::Int => v.is_i64() || v.is_u64(),
        Go::Float => v.is_number(),
        Go::Str => v.is_string(),
        Go::Bool => v.is_boolean(),
        Go::Ip => v
            .as_str()
            .is_some_and(|s| s.is_empty() || s.parse::<std::net::IpAddr>().is_ok()),
        Go::Obj => v.is_object(),
        Go::StrMap => v
            .as_object()
            .is_some_and(|m| m.values().all(|x| x.is_string())),
        Go::List(inner) => match v.as_array() {
            Some(items) => {
                for (i, x) in items.iter().enumerate() {
                    decodes(&format!("{what}[{i}]"), x, inner)?;
                }
                true
            }
            None => false,
        },
        Go::Entity(fields) => {
            entity(what, v, &fields())?;
            true
        }
        Go::ListOf(fields) => match v.as_array() {
            Some(items) => {
                for (i, x) in items.iter().enumerate() {
                    entity(&format!("{what}[{i}]"), x, &fields())?;
                }
                true
            }
            None => false,
        },
        Go::Time => v.as_str().is_some_and(|s| {
            s.len() >= 19
                && s.as_bytes()[10] == b'T'
                && !s.ends_with('Z')
                && !s.contains('+')
                && s[..10].split('-').count() == 3
        }),
    };
    if fits {
        Ok(())
    } else {
        Err(format!("{what} is {v}, which does not decode into {t:?}"))
    }
}

fn entity(what: &str, v: &Value, fields: &[(&str, Go)]) -> Result<(), String> {
    let map = v
        .as_object()
        .ok_or_else(|| format!("{what} is {v}, not an object"))?;
    for (key, t) in fields {
        if let Some(x) = map.get(*key) {
            decodes(&format!("{what}.{key}"), x, t)?;
        }
    }
    Ok(())
}

/// Asserts that `v` decodes into the entity.
fn go(what: &str, v: &Value, fields: fn() -> Vec<(&'static str, Go)>) {
    if let Err(e) = entity(what, v, &fields()) {
        panic!("{e}\nin {v}");
    }
}

fn zone() -> Vec<(&'static str, Go)> {
    vec![
        ("id", Go::Int),
        ("name", Go::Str),
        ("description", Go::Str),
        ("resource_uri", Go::Str),
    ]
}

fn domain() -> Vec<(&'static str, Go)> {
    vec![
        ("id", Go::Int),
        ("name", Go::Str),
        ("ttl", Go::Int),
        ("resource_record_count", Go::Int),
        ("authoritative", Go::Bool),
        ("is_default", Go::Bool),
    ]
}

fn vlan() -> Vec<(&'static str, Go)> {
    vec![
        ("id", Go::Int),
        ("vid", Go::Int),
        ("mtu", Go::Int),
        ("fabric_id", Go::Int),
        ("name", Go::Str),
        ("fabric", Go::Str),
        ("space", Go::Str),
        ("external_dhcp", Go::Str),
        ("primary_rack", Go::Str),
        ("secondary_rack", Go::Str),
        ("dhcp_on", Go::Bool),
        // An object or null; an integer fails gomaasclient's VLAN.
        ("relay_vlan", Go::Obj),
    ]
}

fn subnet() -> Vec<(&'static str, Go)> {
    vec![
        ("id", Go::Int),
        ("rdns_mode", Go::Int),
        ("cidr", Go::Str),
        ("name", Go::Str),
        ("space", Go::Str),
        ("gateway_ip", Go::Ip),
        ("dns_servers", list(Go::Ip)),
        ("vlan", Go::Entity(vlan)),
        ("managed", Go::Bool),
        ("allow_dns", Go::Bool),
        ("allow_proxy", Go::Bool),
        ("active_discovery", Go::Bool),
    ]
}

fn link() -> Vec<(&'static str, Go)> {
    vec![
        ("id", Go::Int),
        ("mode", Go::Str),
        ("ip_address", Go::Ip),
        ("subnet", Go::Entity(subnet)),
    ]
}

fn interface() -> Vec<(&'static str, Go)> {
    vec![
        ("id", Go::Int),
        ("numa_node", Go::Int),
        ("link_speed", Go::Int),
        ("interface_speed", Go::Int),
        ("effective_mtu", Go::Int),
        ("enabled", Go::Bool),
        ("link_connected", Go::Bool),
        ("name", Go::Str),
        ("type", Go::Str),
        ("mac_address", Go::Str),
        ("vendor", Go::Str),
        ("product", Go::Str),
        ("firmware_version", Go::Str),
        ("system_id", Go::Str),
        ("resource_uri", Go::Str),
        ("parents", list(Go::Str)),
        ("children", list(Go::Str)),
        ("tags", list(Go::Str)),
        ("vlan", Go::Entity(vlan)),
        ("links", Go::ListOf(link)),
    ]
}

fn block_device() -> Vec<(&'static str, Go)> {
    vec![
        ("id", Go::Int),
        ("block_size", Go::Int),
        ("numa_node", Go::Int),
        ("size", Go::Int),
        ("used_size", Go::Int),
        ("available_size", Go::Int),
        ("name", Go::Str),
        ("path", Go::Str),
        ("model", Go::Str),
        ("serial", Go::Str),
        ("used_for", Go::Str),
        ("tags", list(Go::Str)),
        ("filesystem", Go::Obj),
        ("partitions", list(Go::Obj)),
    ]
}

fn machine() -> Vec<(&'static str, Go)> {
    let mut f = vec![
        ("status", Go::Int),
        ("memory", Go::Int),
        ("swap_size", Go::Int),
        ("cpu_count", Go::Int),
        ("cpu_speed", Go::Int),
        ("node_type", Go::Int),
        ("address_ttl", Go::Int),
        ("storage", Go::Float),
        ("locked", Go::Bool),
        ("netboot", Go::Bool),
        ("disable_ipv4", Go::Bool),
        ("enable_hw_sync", Go::Bool),
        ("ephemeral_deploy", Go::Bool),
        ("ip_addresses", list(Go::Ip)),
        ("tag_names", list(Go::Str)),
        ("interface_set", Go::ListOf(interface)),
        ("blockdevice_set", Go::ListOf(block_device)),
        ("physicalblockdevice_set", Go::ListOf(block_device)),
        ("virtualblockdevice_set", Go::ListOf(block_device)),
        ("iscsiblockdevice_set", Go::ListOf(block_device)),
        ("special_filesystems", list(Go::Obj)),
        ("service_set", list(Go::Obj)),
        ("raids", list(Go::Obj)),
        ("bcaches", list(Go::Obj)),
        ("volume_groups", list(Go::Obj)),
        ("cache_sets", list(Go::Obj)),
        ("pool", Go::Entity(zone)),
        ("zone", Go::Entity(zone)),
        ("domain", Go::Entity(domain)),
        ("boot_interface", Go::Entity(interface)),
        ("boot_disk", Go::Entity(block_device)),
        ("pod", Go::Obj),
        ("default_gateways", Go::Obj),
        ("hardware_info", Go::StrMap),
        ("workload_annotations", Go::StrMap),
        ("next_sync", Go::Time),
        ("last_sync", Go::Time),
    ];
    for s in [
        "system_id",
        "hostname",
        "fqdn",
        "status_name",
        "status_message",
        "architecture",
        "power_type",
        "power_state",
        "osystem",
        "distro_series",
        "min_hwe_kernel",
        "hwe_kernel",
        "owner",
        "description",
        "node_type_name",
        "hardware_uuid",
        "bios_boot_method",
        "version",
    ] {
        f.push((s, Go::Str));
    }
    f
}

fn tag() -> Vec<(&'static str, Go)> {
    vec![
        ("name", Go::Str),
        ("definition", Go::Str),
        ("comment", Go::Str),
        ("kernel_opts", Go::Str),
        ("resource_uri", Go::Str),
    ]
}

fn user() -> Vec<(&'static str, Go)> {
    vec![
        ("username", Go::Str),
        ("email", Go::Str),
        ("resource_uri", Go::Str),
        ("is_superuser", Go::Bool),
        ("is_local", Go::Bool),
    ]
}

/// What gomaasclient's MAASObject.Update needs of every PUT answer.
fn has_resource_uri(what: &str, v: &Value) {
    assert!(
        v["resource_uri"].is_string(),
        "{what}: a PUT answer without resource_uri fails gomaasclient ({v})"
    );
}

/// The machine's status_name, as Terraform's waitForMachineStatus reads it.
async fn status(tf: &Maas, id: &str) -> String {
    let (s, m) = tf.get(&format!("machines/{id}/"), &[]).await;
    assert_eq!(s, 200, "{m}");
    go("machine", &m, machine);
    m["status_name"].as_str().unwrap().to_string()
}

/// Terraform's StateChangeConf: polls until a target status, failing at once on any status
/// that is neither pending nor a target. Bounded by count; no time is asserted.
async fn wait_for(tf: &Maas, id: &str, pending: &[&str], target: &[&str]) -> String {
    for _ in 0..600 {
        let now = status(tf, id).await;
        if target.contains(&now.as_str()) {
            return now;
        }
        assert!(
            pending.contains(&now.as_str()),
            "Terraform fails on status {now:?} (pending {pending:?}, target {target:?})"
        );
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    panic!("machine {id} never reached {target:?}");
}

/// The machine's agent, through rackbox's endpoints: boot, take the task, report.
struct Agent<'a> {
    api: &'a Api,
    token: String,
}

impl<'a> Agent<'a> {
    async fn boot(api: &'a Api, mac: &str) -> Agent<'a> {
        let token = api.boot_token(mac).await;
        Agent { api, token }
    }

    async fn call(&self, method: Method, path: &str, body: Option<Value>) -> Value {
        let (s, v) = self
            .api
            .call(
                method,
                &format!("/api/agent/v1/{path}"),
                Some(&self.token),
                body,
            )
            .await;
        assert!((200..300).contains(&s), "agent {path}: {s} {v}");
        v
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn terraform_applies_and_destroys_machines_tags_pools_users_and_instances() {
    let dir = tempfile::tempdir().unwrap();
    let daemon = Daemon::start_in(dir.path(), "");
    let api = Api::new(&daemon.url);
    let bearer = api.login("admin", ADMIN_PASSWORD).await;
    api.upload_image(&bearer, "debian", "bookworm").await;
    let tf = Maas::new(&daemon.url, Some(&maas_key(&api, &bearer, "admin").await));

    // maas_machine: create (commission=true), then wait Commissioning/Testing -> Ready.
    let mac = "52:54:00:7f:00:01";
    let create: &[(&str, &str)] = &[
        ("commission", "true"),
        ("power_type", "manual"),
        ("mac_addresses", mac),
        ("architecture", "amd64/generic"),
        ("hostname", "tf-machine"),
        ("zone", "default"),
        ("pool", "default"),
    ];
    let (s, m) = tf.post("machines/", "", create).await;
    assert_eq!(s, 200, "{m}");
    go("machine", &m, machine);
    let id = m["system_id"].as_str().unwrap().to_string();
    assert_eq!(
        status(&tf, &id).await,
        "Commissioning",
        "Terraform's first poll must see Commissioning"
    );
    let agent = Agent::boot(&api, mac).await;
    assert_eq!(
        agent.call(Method::GET, "task", None).await["task"],
        "commission"
    );
    agent
        .call(
            Method::POST,
            "inventory",
            Some(json!({
                "cpu_count": 4, "memory_mib": 8192, "architecture": "amd64/generic",
                "firmware": "uefi",
                "disks": [{"name": "nvme0n1", "size_bytes": 960_197_124_096u64, "model": "PM9A3",
                           "serial": "S64", "block_size": 4096, "rotational": false, "tags": ["ssd"]}],
                "interfaces": [{"name": "eno1", "mac": mac}]
            })),
        )
        .await;
    agent
        .call(
            Method::POST,
            "complete",
            Some(json!({"message": "commissioned"})),
        )
        .await;
    wait_for(&tf, &id, &["Commissioning", "Testing"], &["Ready"]).await;
    // ... then Update: the same parameters again with PUT, which must not commission again.
    let (s, m) = tf.put(&format!("machines/{id}/"), create).await;
    assert_eq!(s, 200, "{m}");
    has_resource_uri("machine", &m);
    assert_eq!(status(&tf, &id).await, "Ready", "a PUT does not commission");
    // Read: what the provider puts in its state.
    let (_, m) = tf.get(&format!("machines/{id}/"), &[]).await;
    assert_eq!(m["architecture"], "amd64/generic");
    assert_eq!(m["hostname"], "tf-machine");
    assert_eq!(m["domain"]["name"], "maas");
    assert_eq!(m["zone"]["name"], "default");
    assert_eq!(m["pool"]["name"], "default");
    assert!(
        m["interface_set"]
            .as_array()
            .unwrap()
            .iter()
            .any(|i| i["mac_address"] == mac),
        "{m}"
    );
    // Import: every machine, matched by its boot interface's MAC, and its power parameters.
    let (_, all) = tf.get("machines/", &[]).await;
    let found = all
        .as_array()
        .unwrap()
        .iter()
        .find(|x| x["boot_interface"]["mac_address"] == mac)
        .expect("import finds the machine by its MAC");
    go("machine", found, machine);
    let (s, power) = tf
        .get(&format!("machines/{id}/"), &[("op", "power_parameters")])
        .await;
    assert!(s == 200 && power.is_object(), "{s} {power}");

    // maas_tag: list, create, PUT, tag the machine, read its machines, untag another.
    let (s, tags) = tf.get("tags/", &[]).await;
    assert_eq!(s, 200);
    assert!(
        tags.as_array()
            .unwrap()
            .iter()
            .all(|t| entity("tag", t, &tag()).is_ok())
    );
    let (s, t) = tf
        .post(
            "tags/",
            "",
            &[("name", "tf-tag"), ("comment", "made by terraform")],
        )
        .await;
    assert_eq!(s, 200, "{t}");
    go("tag", &t, tag);
    let (s, t) = tf
        .put(
            "tags/tf-tag/",
            &[("name", "tf-tag"), ("comment", "changed by terraform")],
        )
        .await;
    assert_eq!(s, 200, "{t}");
    has_resource_uri("tag", &t);
    assert_eq!(t["comment"], "changed by terraform");
    let (s, v) = tf
        .post("tags/tf-tag/", "update_nodes", &[("add", &id)])
        .await;
    assert_eq!(s, 200, "{v}");
    let (s, tagged) = tf.get("tags/tf-tag/", &[("op", "machines")]).await;
    assert_eq!(s, 200);
    let tagged = tagged.as_array().unwrap();
    assert_eq!(tagged.len(), 1);
    go("machine", &tagged[0], machine);
    assert!(
        tagged[0]["tag_names"]
            .as_array()
            .unwrap()
            .contains(&json!("tf-tag"))
    );

    // maas_resource_pool: create, list, PUT on the singular path.
    let (s, pool) = tf
        .post(
            "resourcepools/",
            "",
            &[("name", "tf-pool"), ("description", "terraform's")],
        )
        .await;
    assert_eq!(s, 200, "{pool}");
    go("pool", &pool, zone);
    let pool_id = pool["id"].to_string();
    let (_, pools) = tf.get("resourcepools/", &[]).await;
    assert!(
        pools
            .as_array()
            .unwrap()
            .iter()
            .any(|p| p["id"] == pool["id"])
    );
    let (s, pool) = tf
        .put(
            &format!("resourcepool/{pool_id}/"),
            &[("name", "tf-pool"), ("description", "still terraform's")],
        )
        .await;
    assert_eq!(s, 200, "{pool}");
    has_resource_uri("pool", &pool);
    assert!(pool["id"].is_i64() || pool["id"].is_u64());
    assert_eq!(pool["description"], "still terraform's");

    // maas_user: create with is_superuser as 0/1, read, delete.
    let (s, u) = tf
        .post(
            "users/",
            "",
            &[
                ("username", "tfuser"),
                ("password", "tf-password-1"),
                ("email", "tf@example.com"),
                ("is_superuser", "0"),
            ],
        )
        .await;
    assert_eq!(s, 200, "{u}");
    go("user", &u, user);
    assert_eq!(u["is_superuser"], false);
    let (s, u) = tf.get("users/tfuser/", &[]).await;
    assert_eq!(s, 200);
    go("user", &u, user);
    assert_eq!(tf.delete("users/tfuser/").await, 204);

    // maas_instance: allocate by cpu, memory, zone, pool and tag; deploy; wait for Deployed.
    let (s, m) = tf
        .post(
            "machines/",
            "allocate",
            &[
                ("cpu_count", "2"),
                ("mem", "4096"),
                ("zone", "default"),
                ("pool", "default"),
                ("tags", "tf-tag"),
            ],
        )
        .await;
    assert_eq!(s, 200, "{m}");
    assert_eq!(m["system_id"], id.as_str());
    let user_data = base64_encode(b"#cloud-config\nruncmd: [touch /tf]\n");
    let (s, m) = tf
        .post(
            &format!("machines/{id}/"),
            "deploy",
            &[
                ("distro_series", "bookworm"),
                ("hwe_kernel", "ga-22.04"),
                ("user_data", &user_data),
            ],
        )
        .await;
    assert_eq!(s, 200, "{m}");
    assert_eq!(
        m["system_id"],
        id.as_str(),
        "the wait polls the deploy answer's system_id"
    );
    assert_eq!(
        status(&tf, &id).await,
        "Deploying",
        "Terraform's first poll must see Deploying"
    );
    let agent = Agent::boot(&api, mac).await;
    let task = agent.call(Method::GET, "task", None).await;
    assert_eq!(task["task"], "deploy", "{task}");
    assert!(task["user_data"].as_str().unwrap().contains("touch /tf"));
    agent
        .call(
            Method::POST,
            "complete",
            Some(json!({"message": "image written"})),
        )
        .await;
    Agent {
        api: &api,
        token: task["report_token"].as_str().unwrap().to_string(),
    }
    .call(Method::POST, "deployed", Some(json!({"message": "booted"})))
    .await;
    wait_for(&tf, &id, &["Deploying"], &["Deployed"]).await;
    let (_, m) = tf.get(&format!("machines/{id}/"), &[]).await;
    assert_eq!(m["fqdn"], "tf-machine.maas");
    assert_eq!(m["cpu_count"], 4);
    assert_eq!(m["memory"], 8192);

    // Destroy: release through the collection, wait Releasing -> Ready (never Disk erasing).
    let (s, v) = tf
        .post(
            "machines/",
            "release",
            &[("machines", &id), ("comment", "Released by Terraform")],
        )
        .await;
    assert_eq!(s, 200, "{v}");
    wait_for(&tf, &id, &["Releasing"], &["Ready"]).await;
    assert_eq!(tf.delete("tags/tf-tag/").await, 204);
    assert_eq!(tf.delete(&format!("resourcepool/{pool_id}/")).await, 204);
    assert_eq!(tf.delete(&format!("machines/{id}/")).await, 204);
    let (s, _) = tf.get(&format!("machines/{id}/"), &[]).await;
    assert_eq!(s, 404);
}

fn base64_encode(bytes: &[u8]) -> String {
    use base64::Engine;
    base64::engine::general_purpose::STANDARD.encode(bytes)
}
