//! Nodes of every type, the controller, results and events: what MAAS clients read beside the
//! machines. rackbox is one appliance, so it lists itself as the one region and rack controller
//! (MAAS's node type 4), with the boot interfaces it serves and the state of its services.

use std::sync::Arc;

use serde_json::{Value, json};

use super::render;
use super::{Ctx, MaasError, MaasResult, PREFIX, Reply, json, machines};
use crate::config::BootMode;
use crate::model::{Event, Machine, Status, TestStatus, ids};

/// MAAS's node type of a controller that is both region and rack.
const REGION_AND_RACK: u8 = 4;

/// The appliance's system_id: six characters from /etc/machine-id (stable for the box's life,
/// whatever its hostname), else from its hostname.
pub(crate) fn controller_id() -> String {
    let seed = std::fs::read_to_string("/etc/machine-id")
        .ok()
        .map(|s| s.trim().to_string())
        .filter(|s| !s.is_empty())
        .unwrap_or_else(controller_hostname);
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in seed.bytes() {
        h = (h ^ u64::from(b)).wrapping_mul(0x0000_0100_0000_01b3);
    }
    const ALPHABET: &[u8] = b"abcdefghjkmnpqrstwxy3456789";
    let mut id = String::from("rb");
    for _ in 0..4 {
        id.push(char::from(ALPHABET[(h % ALPHABET.len() as u64) as usize]));
        h /= ALPHABET.len() as u64;
    }
    id
}

/// The appliance's hostname (also its maas_name until one is set).
pub(crate) fn controller_hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_string())
        .ok()
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "rackbox".into())
}

/// The MAC address of one of this host's interfaces, as the kernel shows it.
fn host_mac(name: &str) -> Option<String> {
    if name.contains('/') || name.starts_with('.') {
        return None;
    }
    std::fs::read_to_string(format!("/sys/class/net/{name}/address"))
        .ok()
        .map(|s| s.trim().to_string())
}

/// Logical CPUs and memory (MiB) of the appliance.
fn host_size() -> (usize, u64) {
    let cpus = std::thread::available_parallelism().map_or(1, |n| n.get());
    let memory = std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|m| {
            m.lines()
                .find_map(|l| l.strip_prefix("MemTotal:"))
                .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        })
        .map_or(0, |kib| kib / 1024);
    (cpus, memory)
}

/// The appliance as MAAS shows a region-and-rack controller.
pub(crate) fn controller(c: &Ctx) -> MaasResult<Value> {
    let vlan = super::resources::boot_vlan(c)?;
    let id = controller_id();
    let hostname = controller_hostname();
    let serving: Vec<_> = c
        .state
        .boot
        .interfaces
        .iter()
        .filter(|i| i.mode != BootMode::Off)
        .collect();
    let interfaces: Vec<Value> = serving
        .iter()
        .enumerate()
        .map(|(i, iface)| {
            let mode = match iface.mode {
                BootMode::Managed => "managed",
                BootMode::Proxy => "proxy",
                BootMode::Off => "off",
            };
            render::plain_interface(
                &id,
                i,
                &iface.name,
                &host_mac(&iface.name).unwrap_or_default(),
                &vlan,
                json!({"mode": mode}),
            )
        })
        .collect();
    let managed = serving.iter().any(|i| i.mode == BootMode::Managed);
    let state = |on: bool| if on { "running" } else { "off" };
    let services = json!([
        {"name": "regiond", "status": "running", "status_info": ""},
        {"name": "rackd", "status": "running", "status_info": ""},
        {"name": "http", "status": "running", "status_info": ""},
        {"name": "dhcpd", "status": state(managed),
         "status_info": if managed { "" } else { "rackbox gives no addresses on any boot interface" }},
        {"name": "proxy_dhcp", "status": state(serving.iter().any(|i| i.mode == BootMode::Proxy)), "status_info": ""},
        {"name": "tftp", "status": state(!serving.is_empty()), "status_info": ""},
    ]);
    let (cpus, memory) = host_size();
    Ok(json!({
        "system_id": id,
        "hostname": hostname,
        "fqdn": format!("{hostname}.maas"),
        "domain": render::domain("maas", 0),
        "description": "rackbox appliance",
        "node_type": REGION_AND_RACK,
        "node_type_name": "Region and rack controller",
        "version": env!("CARGO_PKG_VERSION"),
        "architecture": format!("{}/generic", std::env::consts::ARCH.replace("x86_64", "amd64").replace("aarch64", "arm64")),
        "cpu_count": cpus,
        "memory": memory,
        "osystem": "",
        "distro_series": "",
        "power_type": "",
        "power_state": "unknown",
        "owner": null,
        "owner_data": {},
        "zone": render::zone("default", ""),
        "pool": null,
        "tag_names": [],
        "ip_addresses": [],
        "interface_set": interfaces,
        "service_set": services,
        "locked": false,
        "resource_uri": format!("{PREFIX}rackcontrollers/{id}/"),
    }))
}

/// GET rackcontrollers/ and regioncontrollers/: the appliance.
pub(crate) async fn controllers(c: Ctx) -> Reply {
    json(json!([controller(&c)?]))
}

/// GET rackcontrollers/{system_id}/ and regioncontrollers/{system_id}/.
pub(crate) async fn controller_read(c: Ctx) -> Reply {
    let id = c.arg("system_id");
    if id != controller_id() {
        return Err(MaasError::not_found(format!(
            "No controller matches the given query: {id}"
        )));
    }
    json(controller(&c)?)
}

/// GET nodes/: the machines the caller may see (machines/'s filters), then the controller when
/// the filters allow it.
pub(crate) async fn list(c: Ctx) -> Reply {
    let machines = machines::filtered(&c)?;
    let catalog = machines::catalog(&c)?;
    let mut out: Vec<Value> = machines
        .iter()
        .map(|m| render::machine(m, &catalog))
        .collect();
    // Devices answer the filters devices/ takes; machine-only filters leave them out.
    let machine_only = ["pool", "tags", "agent_name"]
        .iter()
        .any(|n| c.params.has(n));
    if !machine_only {
        out.extend(super::devices::filtered(&c)?);
    }
    let controller = controller(&c)?;
    let only = |name: &str| c.params.all(name);
    let hostnames = only("hostname")?;
    let ids = only("id")?;
    let narrowed = [
        "mac_address",
        "domain",
        "zone",
        "pool",
        "tags",
        "agent_name",
    ]
    .iter()
    .any(|n| c.params.has(n));
    let matches = (hostnames.is_empty() || hostnames.iter().any(|h| controller["hostname"] == *h))
        && (ids.is_empty() || ids.iter().any(|i| controller["system_id"] == *i))
        && !narrowed;
    if matches {
        out.push(controller);
    }
    json(Value::Array(out))
}

/// GET nodes/{system_id}/: a machine, a device, or the controller.
pub(crate) async fn read(c: Ctx) -> Reply {
    if c.arg("system_id") == controller_id() {
        return json(controller(&c)?);
    }
    let p = c.principal()?;
    if let Ok(d) = c.state.service.device(p, c.arg("system_id")) {
        return json(super::devices::render(&c, &d)?);
    }
    let m = c.state.service.machine(p, c.arg("system_id"))?;
    json(render::machine(&m, &machines::catalog(&c)?))
}

/// GET machines/{system_id}/?op=details: MAAS's probed details, BSON-encoded as MAAS answers
/// them (`{"lshw": bytes|null, "lldp": bytes|null}`). rackbox's ramdisk runs neither lshw nor
/// lldpd, so those two are null; its own inventory (JSON) is under "rackbox-inventory".
pub(crate) async fn details(c: Ctx) -> Reply {
    let p = c.principal()?;
    let m = c.state.service.machine(p, c.arg("system_id"))?;
    let mut doc = bson::Document::new();
    doc.insert("lshw", bson::Bson::Null);
    doc.insert("lldp", bson::Bson::Null);
    let inventory = match &m.inventory {
        Some(inv) => bson::Bson::Binary(bson::Binary {
            subtype: bson::spec::BinarySubtype::Generic,
            bytes: serde_json::to_vec(inv).map_err(|e| {
                MaasError::new(
                    axum::http::StatusCode::INTERNAL_SERVER_ERROR,
                    format!("the inventory does not encode: {e}"),
                )
            })?,
        }),
        None => bson::Bson::Null,
    };
    doc.insert("rackbox-inventory", inventory);
    let mut bytes = Vec::new();
    doc.to_writer(&mut bytes).map_err(|e| {
        MaasError::new(
            axum::http::StatusCode::INTERNAL_SERVER_ERROR,
            format!("the details do not encode as BSON: {e}"),
        )
    })?;
    Ok(axum::response::IntoResponse::into_response((
        [(axum::http::header::CONTENT_TYPE, "application/bson")],
        bytes,
    )))
}

/// MAAS's result types.
const COMMISSIONING: u8 = 0;
const TESTING: u8 = 2;

/// MAAS's script result statuses.
fn script_status(s: TestStatus) -> (u8, &'static str) {
    match s {
        TestStatus::Passed => (2, "Passed"),
        TestStatus::Failed => (3, "Failed"),
        TestStatus::Skipped => (9, "Skipped"),
    }
}

fn encode(bytes: &[u8]) -> String {
    use base64::Engine;
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

/// One machine's results as MAAS's node-results list shows them: the commissioning inventory
/// (rackbox's one commissioning script) and each test of the latest testing run.
fn machine_results(c: &Ctx, m: &Machine) -> MaasResult<Vec<Value>> {
    let node = json!({"system_id": m.system_id, "hostname": m.hostname});
    let mut out = Vec::new();
    if let Some(inv) = &m.inventory {
        let data = serde_json::to_vec_pretty(inv).unwrap_or_default();
        out.push(json!({
            "id": out.len() + 1,
            "name": "rackbox-inventory",
            "result_type": COMMISSIONING,
            "script_result": 0,
            "status_name": "Passed",
            "data": encode(&data),
            "created": null,
            "updated": null,
            "node": node,
            "resource_uri": format!("{PREFIX}installation-results/"),
        }));
    }
    let p = c.principal()?;
    let tests = c.state.service.test_results(p, &m.system_id)?;
    for r in &tests.results {
        let (code, name) = script_status(r.status);
        let name_of = match &r.disk {
            Some(d) => format!("{} ({d})", r.name),
            None => r.name.clone(),
        };
        out.push(json!({
            "id": out.len() + 1,
            "name": name_of,
            "result_type": TESTING,
            "script_result": code,
            "status_name": name,
            "data": encode(r.summary.as_bytes()),
            "created": r.started_ms,
            "updated": r.finished_ms,
            "node": node,
            "resource_uri": format!("{PREFIX}installation-results/"),
        }));
    }
    Ok(out)
}

/// GET installation-results/: results of the machines the caller may see, filtered by
/// system_id, script name and result type.
pub(crate) async fn results(c: Ctx) -> Reply {
    let ids = c.params.all("system_id")?;
    let names = c.params.all("name")?;
    let kind = match c.params.number("result_type")? {
        None => None,
        Some(n) if n == u64::from(COMMISSIONING) || n == u64::from(TESTING) => Some(n),
        Some(n) => {
            return Err(MaasError::bad_request(format!(
                "result_type: {n} is not 0 (commissioning) or 2 (testing); rackbox keeps no installation logs"
            )));
        }
    };
    let p = c.principal()?.clone();
    let machines: Vec<Arc<Machine>> = if ids.is_empty() {
        machines::all_visible(&c)?
    } else {
        ids.iter()
            .map(|id| c.state.service.machine(&p, id))
            .collect::<Result<_, _>>()?
    };
    let mut out = Vec::new();
    for m in &machines {
        for r in machine_results(&c, m)? {
            let name_ok = names.is_empty() || names.iter().any(|n| r["name"] == *n);
            let kind_ok = kind.is_none_or(|k| r["result_type"] == k);
            if name_ok && kind_ok {
                out.push(r);
            }
        }
    }
    json(Value::Array(out))
}

/// MAAS's level of an event: failures are errors, the rest information.
fn level(e: &Event) -> &'static str {
    let failed = e.to != e.from && e.from.failure() == Some(e.to);
    if failed || matches!(e.to, Status::Broken) && e.from != Status::Broken {
        "ERROR"
    } else {
        "INFO"
    }
}

fn level_rank(level: &str) -> Option<u8> {
    match level.to_ascii_uppercase().as_str() {
        "DEBUG" => Some(10),
        "INFO" => Some(20),
        "AUDIT" => Some(0),
        "WARNING" => Some(30),
        "ERROR" => Some(40),
        "CRITICAL" => Some(50),
        _ => None,
    }
}

/// MAAS's timestamp form for events ("Thu, 03 Dec. 2026 12:00:00", UTC), which
/// python-libmaas parses with exactly that format.
pub(crate) fn created(at_ms: u64) -> String {
    const WEEKDAYS: [&str; 7] = ["Thu", "Fri", "Sat", "Sun", "Mon", "Tue", "Wed"];
    const MONTHS: [&str; 12] = [
        "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
    ];
    let (year, month, day, secs) = ids::utc_date(at_ms);
    let weekday = (at_ms / 86_400_000 % 7) as usize;
    let month = MONTHS[usize::try_from(month - 1).unwrap_or(0)];
    format!(
        "{}, {day:02} {month}. {year} {:02}:{:02}:{:02}",
        WEEKDAYS[weekday],
        secs / 3600,
        secs % 3600 / 60,
        secs % 60
    )
}

/// MAAS's timestamp form for most objects ("2026-12-03T12:00:00.000", UTC, no zone).
pub(crate) fn timestamp(at_ms: u64) -> String {
    // RFC 3339 without its zone letter.
    ids::rfc3339(at_ms).trim_end_matches('Z').to_string()
}

/// The most events one query answers, and the most it reads to find them.
const MAX_EVENTS: usize = 1000;
const MAX_SCANNED: usize = 20_000;

/// GET events/?op=query: events of the machines the caller may see, newest first, with MAAS's
/// filters and its paging links (`prev_uri` older, `next_uri` newer).
pub(crate) async fn events(c: Ctx) -> Reply {
    let p = c.principal()?.clone();
    let limit = match c.params.number("limit")? {
        None => 100,
        Some(n) => usize::try_from(n)
            .unwrap_or(MAX_EVENTS)
            .clamp(1, MAX_EVENTS),
    };
    let before = c.params.number("before")?;
    let after = c.params.number("after")?;
    let min_level = match c.params.nonempty("level")? {
        None => 20,
        Some(l) => level_rank(&l).ok_or_else(|| {
            MaasError::bad_request(format!(
                "level: {l:?} is not DEBUG, INFO, WARNING, ERROR or CRITICAL"
            ))
        })?,
    };
    // The machines whose events may be shown: visible to the caller and matching the filters.
    let machines = machines::filtered(&c)?;
    let owners = c.params.all("owner")?;
    let shown: std::collections::HashMap<&str, &Machine> = machines
        .iter()
        .filter(|m| owners.is_empty() || m.owner.as_ref().is_some_and(|o| owners.contains(o)))
        .map(|m| (m.system_id.as_str(), m.as_ref()))
        .collect();
    let mut found = Vec::new();
    let mut cursor = before;
    let mut scanned = 0;
    'scan: while found.len() < limit && scanned < MAX_SCANNED {
        let batch = if p.is_admin() {
            c.state.service.recent_events(&p, cursor, 500)?
        } else {
            // A user reads each visible machine's own history.
            let mut all = Vec::new();
            for id in shown.keys() {
                all.extend(c.state.service.machine_events(&p, id, cursor, 500)?);
            }
            all.sort_by_key(|e| std::cmp::Reverse(e.seq));
            all.truncate(500);
            all
        };
        if batch.is_empty() {
            break;
        }
        scanned += batch.len();
        for e in &batch {
            if after.is_some_and(|a| e.seq <= a) {
                break 'scan;
            }
            cursor = Some(e.seq);
            let Some(m) = shown.get(e.system_id.as_str()) else {
                continue;
            };
            let lvl = level(e);
            if level_rank(lvl).unwrap_or(20) < min_level {
                continue;
            }
            found.push(json!({
                "id": e.seq,
                "node": e.system_id,
                "hostname": m.hostname,
                "username": e.actor,
                "level": lvl,
                "created": created(e.at_ms),
                "type": e.action,
                "description": if e.message.is_empty() {
                    format!("{} -> {}", e.from.name(), e.to.name())
                } else {
                    e.message.clone()
                },
            }));
            if found.len() == limit {
                break 'scan;
            }
        }
        if batch.len() < 500 {
            break;
        }
    }
    // Paging links keep the caller's filters and move the window.
    let mut kept: Vec<(String, String)> = c
        .params
        .iter()
        .filter(|x| !matches!(x.name.as_str(), "op" | "before" | "after"))
        .map(|x| {
            (
                x.name.clone(),
                String::from_utf8_lossy(&x.value).into_owned(),
            )
        })
        .collect();
    kept.retain(|(n, _)| n != "limit");
    kept.push(("limit".into(), limit.to_string()));
    let link = |key: &str, id: Option<u64>| -> Value {
        let mut q = form_urlencoded::Serializer::new(String::new());
        q.append_pair("op", "query");
        for (n, v) in &kept {
            q.append_pair(n, v);
        }
        if let Some(id) = id {
            q.append_pair(key, &id.to_string());
        }
        Value::String(format!("{}{PREFIX}events/?{}", c.origin, q.finish()))
    };
    let oldest = found.last().and_then(|e| e["id"].as_u64());
    let newest = found.first().and_then(|e| e["id"].as_u64());
    json(json!({
        "count": found.len(),
        "events": found,
        "prev_uri": link("before", oldest.or(before)),
        "next_uri": link("after", newest.or(after).or(Some(0))),
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn event_times_read_as_maas_writes_them() {
        assert_eq!(created(0), "Thu, 01 Jan. 1970 00:00:00");
        // 2026-12-07 23:12:46 UTC, a Monday.
        assert_eq!(created(1_796_685_166_000), "Mon, 07 Dec. 2026 23:12:46");
        assert_eq!(created(951_782_400_000), "Tue, 29 Feb. 2000 00:00:00");
        assert_eq!(timestamp(1_796_685_166_042), "2026-12-07T23:12:46.042");
    }

    #[test]
    fn the_controller_id_is_stable_and_short() {
        let a = controller_id();
        assert_eq!(a, controller_id());
        assert_eq!(a.len(), 6);
        assert!(a.starts_with("rb"));
    }
}
