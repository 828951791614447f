//! machines/ and machines/{system_id}/: MAAS's parameters in, the service's calls, MAAS's JSON
//! out. Every status change goes through `Service::act` or `Service::allocate`.

use std::collections::BTreeMap;
use std::sync::Arc;

use base64::Engine;
use serde_json::{Map, Value, json};

use super::params::{ParamError, Params};

use super::render::{self, AGENT_NAME_KEY, Catalog};
use super::settings;
use super::{Ctx, MaasError, MaasResult, Reply, json};
use crate::model::constraints::parse_storage;
use crate::model::network::LinkMode;
use crate::model::settings::Settings;
use crate::model::{Constraints, Machine, PowerType, ids};
use crate::service::{
    ActionRequest, CatalogKind, MachineEdit, MachineFilter, NewMachine, PowerRequest, Principal,
    ServiceError,
};

pub(crate) fn catalog(c: &Ctx) -> MaasResult<Catalog> {
    let zones = c.state.service.list_catalog(CatalogKind::Zone)?;
    let pools = c.state.service.list_catalog(CatalogKind::Pool)?;
    Ok(Catalog::new(
        &zones,
        &pools,
        super::resources::boot_vlan(c)?,
        super::resources::subnets_by_cidr(c)?,
    ))
}

fn machine_reply(c: &Ctx, m: &Machine) -> Reply {
    json(render::machine(m, &catalog(c)?))
}

fn visible(c: &Ctx) -> MaasResult<(Principal, Arc<Machine>)> {
    let p = c.principal()?.clone();
    let m = c.state.service.machine(&p, c.arg("system_id"))?;
    Ok((p, m))
}

/// The power type, when one is given (MAAS clients send "" for none).
fn power_type(params: &Params) -> Result<Option<PowerType>, ParamError> {
    params
        .nonempty("power_type")?
        .map(|t| {
            t.parse()
                .map_err(|e: String| ParamError::invalid("power_type", e))
        })
        .transpose()
}

/// "amd64" means "amd64/generic" in MAAS; a separate subarchitecture may complete it.
fn architecture(params: &Params) -> Result<Option<String>, ParamError> {
    let Some(arch) = params.nonempty("architecture")? else {
        return Ok(None);
    };
    if arch.contains('/') {
        return Ok(Some(arch));
    }
    let sub = params
        .nonempty("subarchitecture")?
        .unwrap_or_else(|| "generic".into());
    Ok(Some(format!("{arch}/{sub}")))
}

/// Power parameters in both forms clients send: one JSON object in `power_parameters`
/// (python-libmaas), or one `power_parameters_<key>=value` per key (the MAAS CLI, gomaasapi).
fn parse_power_parameters(params: &Params) -> Result<Option<Map<String, Value>>, ParamError> {
    let mut out: Option<Map<String, Value>> = None;
    if let Some(text) = params.nonempty("power_parameters")? {
        let v: Value = serde_json::from_str(&text).map_err(|e| {
            ParamError::invalid("power_parameters", format!("not a JSON object: {e}"))
        })?;
        match v {
            Value::Object(map) => out = Some(map),
            _ => {
                return Err(ParamError::invalid(
                    "power_parameters",
                    "must be a JSON object",
                ));
            }
        }
    }
    for p in params.iter() {
        if let Some(key) = p.name.strip_prefix("power_parameters_") {
            if key.is_empty() || key == "skip_check" {
                continue;
            }
            let value = String::from_utf8(p.value.clone())
                .map_err(|_| ParamError::invalid(&p.name, "the value is not UTF-8 text"))?;
            out.get_or_insert_with(Map::new)
                .insert(key.to_string(), Value::String(value));
        }
    }
    Ok(out)
}

/// Every machine the caller may see.
pub(crate) fn all_visible(c: &Ctx) -> MaasResult<Vec<Arc<Machine>>> {
    let p = c.principal()?;
    let filter = MachineFilter {
        limit: Some(0),
        ..Default::default()
    };
    Ok(c.state.service.list_machines(p, &filter)?.items)
}

/// The machines the caller may see, filtered as MAAS filters machines/, nodes/ and events
/// (repeated keys of one filter match any of their values; different filters must all match).
pub(crate) fn filtered(c: &Ctx) -> MaasResult<Vec<Arc<Machine>>> {
    let p = c.principal()?;
    let filter = MachineFilter {
        zone: c.params.nonempty("zone")?,
        pool: c.params.nonempty("pool")?,
        limit: Some(0),
        ..Default::default()
    };
    let page = c.state.service.list_machines(p, &filter)?;
    let hostnames: Vec<String> = c
        .params
        .all("hostname")?
        .into_iter()
        .map(|h| h.split('.').next().unwrap_or_default().to_string())
        .collect();
    let ids = c.params.all("id")?;
    let macs = c
        .params
        .all("mac_address")?
        .iter()
        .map(|m| {
            ids::normalize_mac(m).map_err(|e| MaasError::bad_request(format!("mac_address: {e}")))
        })
        .collect::<MaasResult<Vec<String>>>()?;
    let tags = c.params.list("tags")?;
    let agent = c.params.nonempty("agent_name")?;
    let domains = c.params.all("domain")?;
    Ok(page
        .items
        .into_iter()
        .filter(|m| hostnames.is_empty() || hostnames.contains(&m.hostname))
        .filter(|m| ids.is_empty() || ids.contains(&m.system_id))
        .filter(|m| macs.is_empty() || m.interfaces.iter().any(|i| macs.contains(&i.mac)))
        .filter(|m| tags.iter().all(|t| m.tags.contains(t)))
        .filter(|m| domains.is_empty() || domains.contains(&m.domain))
        .filter(|m| {
            agent
                .as_ref()
                .is_none_or(|a| m.owner_data.get(AGENT_NAME_KEY) == Some(a))
        })
        .collect())
}

/// GET machines/: the machines the caller may see, filtered (see [`filtered`]).
pub async fn list(c: Ctx) -> Reply {
    let catalog = catalog(&c)?;
    let items: Vec<Value> = filtered(&c)?
        .iter()
        .map(|m| render::machine(m, &catalog))
        .collect();
    json(Value::Array(items))
}

/// GET machines/?op=list_allocated: the caller's machines.
pub(crate) async fn list_allocated(c: Ctx) -> Reply {
    let p = c.principal()?;
    let filter = MachineFilter {
        owner: Some(p.username.clone()),
        limit: Some(0),
        ..Default::default()
    };
    let page = c.state.service.list_machines(p, &filter)?;
    let catalog = catalog(&c)?;
    json(Value::Array(
        page.items
            .iter()
            .map(|m| render::machine(m, &catalog))
            .collect(),
    ))
}

/// GET machines/?op=is_registered&mac_address=...
pub(crate) async fn is_registered(c: Ctx) -> Reply {
    let mac = c.params.required("mac_address")?;
    let mac = ids::normalize_mac(&mac)
        .map_err(|e| MaasError::bad_request(format!("mac_address: {e}")))?;
    json(Value::Bool(c.state.service.machine_by_mac(&mac)?.is_some()))
}

/// POST machines/: add a machine.
pub async fn create(c: Ctx) -> Reply {
    let p = c.principal()?;
    let new = NewMachine {
        hostname: c.params.nonempty("hostname")?,
        domain: c.params.nonempty("domain")?,
        architecture: architecture(&c.params)?,
        mac_addresses: c.params.all("mac_addresses")?,
        power_type: power_type(&c.params)?,
        power_parameters: parse_power_parameters(&c.params)?,
        zone: c.params.nonempty("zone")?,
        pool: c.params.nonempty("pool")?,
        tags: Vec::new(),
        description: c.params.nonempty("description")?,
        commission: c.params.boolean("commission")?,
    };
    let m = c.state.service.add_machine(p, new).await?;
    machine_reply(&c, &m)
}

/// GET machines/{system_id}/
pub async fn read(c: Ctx) -> Reply {
    let (_, m) = visible(&c)?;
    machine_reply(&c, &m)
}

/// PUT machines/{system_id}/: change what MAAS lets an update change.
pub async fn update(c: Ctx) -> Reply {
    let edit = MachineEdit {
        hostname: c.params.nonempty("hostname")?,
        domain: c.params.nonempty("domain")?,
        description: c.params.text("description")?,
        architecture: architecture(&c.params)?,
        zone: c.params.nonempty("zone")?,
        pool: c.params.nonempty("pool")?,
        power_type: power_type(&c.params)?,
        power_parameters: parse_power_parameters(&c.params)?,
        ..Default::default()
    };
    edit_reply(&c, edit).await
}

/// DELETE machines/{system_id}/
pub async fn delete(c: Ctx) -> Reply {
    let p = c.principal()?;
    c.state
        .service
        .delete_machine(p, c.arg("system_id"))
        .await?;
    super::no_content()
}

/// Runs one life-cycle action through the service and answers the machine.
async fn act(c: &Ctx, action: &str, req: ActionRequest) -> MaasResult<Machine> {
    let p = c.principal()?;
    Ok(c.state
        .service
        .act(p, c.arg("system_id"), action, req)
        .await?)
}

/// Runs one life-cycle action and answers the machine as MAAS renders it.
async fn act_reply(c: &Ctx, action: &str, req: ActionRequest) -> Reply {
    let m = act(c, action, req).await?;
    machine_reply(c, &m)
}

/// Edits the machine of the path and answers it as MAAS renders it.
async fn edit_reply(c: &Ctx, edit: MachineEdit) -> Reply {
    let p = c.principal()?;
    let m = c
        .state
        .service
        .edit_machine(p, c.arg("system_id"), edit)
        .await?;
    machine_reply(c, &m)
}

/// An action that takes only a comment.
async fn simple(c: Ctx, action: &str) -> Reply {
    let req = ActionRequest {
        comment: c.params.nonempty("comment")?,
        ..Default::default()
    };
    act_reply(&c, action, req).await
}

/// The image a MAAS deploy request names: `osystem/distro_series`, or the default image of the
/// OS when no series is given (`""`). One place, so the image cache's naming plugs in here.
pub(crate) fn image_for(osystem: &str, distro_series: Option<&str>) -> String {
    match distro_series {
        None => String::new(),
        Some(series) if series.contains('/') => series.to_string(),
        Some(series) => format!("{osystem}/{series}"),
    }
}

/// The most user data a deploy takes once decompressed (cloud-init's own seed limits are far
/// below this; a bigger one is a mistake or an attack).
const MAX_USER_DATA: u64 = 1024 * 1024;

/// Decodes MAAS's base64 user_data (clients may wrap lines and end with a newline). Juju sends
/// gzip-compressed cloud-config, which cloud-init reads as is; rackbox keeps user data as text,
/// so it is decompressed here (at most [`MAX_USER_DATA`] bytes).
pub(crate) fn decode_user_data(text: &str) -> Result<String, ParamError> {
    let compact: String = text.chars().filter(|c| !c.is_ascii_whitespace()).collect();
    let mut bytes = base64::engine::general_purpose::STANDARD
        .decode(compact.as_bytes())
        .map_err(|e| ParamError::invalid("user_data", format!("not valid base64: {e}")))?;
    if bytes.starts_with(&[0x1f, 0x8b]) {
        use std::io::Read;
        let mut plain = Vec::new();
        flate2::read::GzDecoder::new(bytes.as_slice())
            .take(MAX_USER_DATA + 1)
            .read_to_end(&mut plain)
            .map_err(|e| ParamError::invalid("user_data", format!("not valid gzip: {e}")))?;
        if plain.len() as u64 > MAX_USER_DATA {
            return Err(ParamError::invalid(
                "user_data",
                format!("decompresses to more than {MAX_USER_DATA} bytes"),
            ));
        }
        bytes = plain;
    }
    String::from_utf8(bytes).map_err(|_| {
        ParamError::invalid(
            "user_data",
            "decodes to binary data; rackbox takes text user data (cloud-config or a script, \
             plain or gzip-compressed)",
        )
    })
}

/// Records the agent name Juju gives (allocate, deploy) so `machines/?agent_name=` finds the
/// machine. Kept in owner data, which the life cycle clears when the machine is released.
async fn remember_agent(c: &Ctx, m: Machine) -> MaasResult<Machine> {
    let Some(agent) = c.params.nonempty("agent_name")? else {
        return Ok(m);
    };
    if m.owner_data.get(AGENT_NAME_KEY) == Some(&agent) {
        return Ok(m);
    }
    let p = c.principal()?;
    let edit = MachineEdit {
        owner_data: Some(BTreeMap::from([(AGENT_NAME_KEY.to_string(), agent)])),
        ..Default::default()
    };
    Ok(c.state.service.edit_machine(p, &m.system_id, edit).await?)
}

/// POST machines/{system_id}/?op=deploy
pub async fn deploy(c: Ctx) -> Reply {
    let osystem = c.params.nonempty("osystem")?;
    let series = c.params.nonempty("distro_series")?;
    let user_data = match c.params.nonempty("user_data")? {
        Some(t) => Some(decode_user_data(&t)?),
        None => None,
    };
    // A deploy that names no OS gets the appliance's default OS (get_config default_osystem).
    let osystem = match osystem {
        Some(os) => os,
        None => {
            let images = c
                .state
                .images
                .list_images()
                .map_err(|e| MaasError::unavailable(format!("image cache: {e}")))?
                .images;
            settings::default_osystem(&c.state.service.settings()?, &images)
        }
    };
    let req = ActionRequest {
        image: Some(image_for(&osystem, series.as_deref())),
        osystem: Some(osystem),
        distro_series: series,
        user_data,
        comment: c.params.nonempty("comment")?,
        ..Default::default()
    };
    let m = act(&c, "deploy", req).await?;
    let m = remember_agent(&c, m).await?;
    machine_reply(&c, &m)
}

/// How a release wipes the disks: secure_erase, else quick_erase, else erase. A quick or secure
/// erase asked for without `erase=true` still erases (python-libmaas sends them alone). A
/// release that names none of them gets the appliance's settings (MAAS's
/// enable_disk_erasing_on_release and its two ways), as MAAS does.
fn erase_mode(params: &Params, settings: &Settings) -> Result<&'static str, ParamError> {
    let erase = params.boolean("erase")?;
    let secure = params.boolean("secure_erase")?;
    let quick = params.boolean("quick_erase")?;
    let (erase, secure, quick) = if erase.is_none() && secure.is_none() && quick.is_none() {
        (
            settings.erase_on_release,
            settings.erase_on_release && settings.erase_secure,
            settings.erase_on_release && settings.erase_quick,
        )
    } else {
        (
            erase.unwrap_or(false),
            secure.unwrap_or(false),
            quick.unwrap_or(false),
        )
    };
    Ok(if secure {
        "secure"
    } else if quick {
        "quick"
    } else if erase {
        "full"
    } else {
        "none"
    })
}

fn release_request(c: &Ctx) -> MaasResult<ActionRequest> {
    // `force` is accepted and has nothing to force: the life cycle decides.
    c.params.boolean("force")?;
    let settings = c.state.service.settings()?;
    Ok(ActionRequest {
        erase: Some(erase_mode(&c.params, &settings)?.to_string()),
        comment: c.params.nonempty("comment")?,
        ..Default::default()
    })
}

/// POST machines/{system_id}/?op=release
pub async fn release(c: Ctx) -> Reply {
    let req = release_request(&c)?;
    act_reply(&c, "release", req).await
}

/// POST machines/?op=release with `machines=<id>` repeated: releases each; answers the list of
/// released system ids. Unknown ids are refused before anything is released.
pub(crate) async fn release_many(c: Ctx) -> Reply {
    let p = c.principal()?;
    let ids = c.params.all("machines")?;
    if ids.is_empty() {
        return Err(MaasError::bad_request(
            "machines: at least one system_id is required",
        ));
    }
    let missing: Vec<&String> = ids
        .iter()
        .filter(|id| c.state.service.machine(p, id).is_err())
        .collect();
    if !missing.is_empty() {
        return Err(MaasError::bad_request(format!(
            "Unknown machine(s): {}",
            missing
                .iter()
                .map(|s| s.as_str())
                .collect::<Vec<_>>()
                .join(", ")
        )));
    }
    let req = release_request(&c)?;
    let mut released = Vec::new();
    let mut failed = Vec::new();
    for id in &ids {
        match c.state.service.act(p, id, "release", req.clone()).await {
            Ok(_) => released.push(Value::String(id.clone())),
            Err(e) => failed.push(e),
        }
    }
    if let Some(first) = failed.into_iter().next() {
        let mut e = MaasError::from(first);
        if !released.is_empty() {
            e.message = format!(
                "{} (released: {})",
                e.message,
                released
                    .iter()
                    .filter_map(|v| v.as_str())
                    .collect::<Vec<_>>()
                    .join(", ")
            );
        }
        return Err(e);
    }
    json(Value::Array(released))
}

/// POST machines/{system_id}/?op=commission. Tests run after commissioning when
/// `testing_scripts` names any (not "none").
pub async fn commission(c: Ctx) -> Reply {
    for flag in [
        "enable_ssh",
        "skip_networking",
        "skip_storage",
        "skip_bmc_config",
    ] {
        c.params.boolean(flag)?;
    }
    let run_tests = c
        .params
        .nonempty("testing_scripts")?
        .is_some_and(|s| s != "none");
    let req = ActionRequest {
        run_tests,
        comment: c.params.nonempty("comment")?,
        ..Default::default()
    };
    act_reply(&c, "commission", req).await
}

pub async fn abort(c: Ctx) -> Reply {
    simple(c, "abort").await
}

pub(crate) async fn mark_broken(c: Ctx) -> Reply {
    let reason = match c.params.nonempty("error_description")? {
        Some(r) => Some(r),
        None => c.params.nonempty("comment")?,
    };
    let req = ActionRequest {
        reason: reason.clone(),
        comment: reason,
        ..Default::default()
    };
    act_reply(&c, "mark_broken", req).await
}

pub(crate) async fn mark_fixed(c: Ctx) -> Reply {
    simple(c, "mark_fixed").await
}

pub async fn lock(c: Ctx) -> Reply {
    simple(c, "lock").await
}

pub(crate) async fn unlock(c: Ctx) -> Reply {
    simple(c, "unlock").await
}

pub async fn rescue_mode(c: Ctx) -> Reply {
    simple(c, "rescue_mode").await
}

pub async fn exit_rescue_mode(c: Ctx) -> Reply {
    simple(c, "exit_rescue_mode").await
}

/// Power changes go through the service (owner or admin; the BMC's answer is recorded).
async fn switch(c: Ctx, how: PowerRequest) -> Reply {
    let (p, m) = visible(&c)?;
    let m = c.state.service.power_switch(&p, &m.system_id, how).await?;
    machine_reply(&c, &m)
}

pub async fn power_on(c: Ctx) -> Reply {
    switch(c, PowerRequest::On).await
}

pub async fn power_off(c: Ctx) -> Reply {
    let soft = match c.params.nonempty("stop_mode")?.as_deref() {
        None | Some("hard") => false,
        Some("soft") => true,
        Some(other) => {
            return Err(MaasError::bad_request(format!(
                "stop_mode: {other:?} must be soft or hard"
            )));
        }
    };
    switch(c, PowerRequest::Off { soft }).await
}

/// GET machines/{system_id}/?op=query_power_state
pub async fn query_power_state(c: Ctx) -> Reply {
    let (p, m) = visible(&c)?;
    // A BMC that fails answers "error", as MAAS does; the reason is recorded on the machine.
    let state = match c.state.service.power_query(&p, &m.system_id).await {
        Ok(state) => state.as_str(),
        Err(ServiceError::PowerFailed(_)) => "error",
        Err(e) => return Err(e.into()),
    };
    json(json!({"state": state}))
}

/// GET machines/{system_id}/?op=power_parameters (secrets shown to admins only).
pub async fn power_parameters(c: Ctx) -> Reply {
    let (p, m) = visible(&c)?;
    let power = if p.is_admin() {
        m.power.clone()
    } else {
        crate::service::mask_power(&m.power)
    };
    json(Value::Object(power.parameters))
}

/// GET machines/?op=power_parameters&id=... : {system_id: parameters}; every machine when no id
/// is given.
pub(crate) async fn power_parameters_many(c: Ctx) -> Reply {
    let p = c.principal()?;
    let ids = c.params.all("id")?;
    let mut out = Map::new();
    if ids.is_empty() {
        let all = c.state.service.list_machines(
            p,
            &MachineFilter {
                limit: Some(0),
                ..Default::default()
            },
        )?;
        for m in all.items {
            out.insert(
                m.system_id.clone(),
                Value::Object(m.power.parameters.clone()),
            );
        }
    } else {
        for id in ids {
            let m = c.state.service.machine(p, &id)?;
            out.insert(id, Value::Object(m.power.parameters.clone()));
        }
    }
    json(Value::Object(out))
}

/// POST machines/{system_id}/?op=set_owner_data: every parameter is a key; an empty value
/// deletes it.
pub async fn set_owner_data(c: Ctx) -> Reply {
    let mut data = BTreeMap::new();
    for param in c.params.iter() {
        if matches!(param.name.as_str(), "op" | "system_id") {
            continue;
        }
        if param.name == AGENT_NAME_KEY {
            return Err(MaasError::bad_request(format!(
                "{AGENT_NAME_KEY} is kept by rackbox; set agent_name when allocating"
            )));
        }
        let value = String::from_utf8(param.value.clone()).map_err(|_| {
            MaasError::bad_request(format!("{}: the value is not UTF-8 text", param.name))
        })?;
        data.insert(param.name.clone(), value);
    }
    let edit = MachineEdit {
        owner_data: Some(data),
        ..Default::default()
    };
    edit_reply(&c, edit).await
}

/// Constraints from MAAS's allocate parameters. Network constraints rackbox cannot satisfy yet
/// (no spaces, subnets, fabrics or pods are configured) are refused as no match; their negations
/// hold for every machine and are accepted.
fn constraints(params: &Params) -> MaasResult<Constraints> {
    let archs = params.all("arch")?;
    let arch = match archs.as_slice() {
        [] => None,
        [one] => Some(one.clone()),
        [first, rest @ ..] if rest.iter().all(|a| a == first) => Some(first.clone()),
        _ => {
            return Err(MaasError::bad_request(
                "arch: rackbox matches one architecture per allocation",
            ));
        }
    };
    let cpu_count = match params.number("cpu_count")? {
        Some(n) => Some(
            u32::try_from(n)
                .map_err(|_| MaasError::bad_request(format!("cpu_count: {n} is too large")))?,
        ),
        None => None,
    };
    let mut not_in_zone = params.list("not_in_zone")?;
    not_in_zone.extend(params.list("not_in_zones")?);
    for unsupported in [
        "interfaces",
        "subnets",
        "fabrics",
        "fabric_classes",
        "pod",
        "pod_type",
    ] {
        if let Some(v) = params.nonempty(unsupported)? {
            return Err(MaasError::conflict(format!(
                "no machine matches the constraints: {unsupported}={v} (rackbox has no spaces, subnets, fabrics or pods configured)"
            )));
        }
    }
    Ok(Constraints {
        name: params.nonempty("name")?,
        system_id: params.nonempty("system_id")?,
        arch,
        cpu_count,
        mem: params.number("mem")?,
        tags: params.list("tags")?,
        not_tags: params.list("not_tags")?,
        zone: params.nonempty("zone")?,
        not_in_zone,
        pool: params.nonempty("pool")?,
        not_in_pool: params.list("not_in_pool")?,
        storage: params.nonempty("storage")?,
        dry_run: params.boolean("dry_run")?.unwrap_or(false),
        comment: params.nonempty("comment")?,
    })
}

/// Which block device ids answer each labelled storage wish (gomaasapi reads them from
/// constraints_by_type.storage).
fn storage_matches(m: &Machine, storage: Option<&str>) -> Value {
    let Some(text) = storage else {
        return json!({});
    };
    let Ok(wishes) = parse_storage(text) else {
        return json!({});
    };
    let Some(chosen) = crate::model::constraints::disk_assignment(&m.disks, &wishes) else {
        return json!({});
    };
    let mut storage = Map::new();
    for (wish, disk) in wishes.iter().zip(chosen) {
        storage.insert(wish.label.clone(), json!([disk + 1]));
    }
    json!({"storage": storage})
}

/// POST machines/?op=allocate: the smallest Ready machine that matches; 409 text/plain when
/// none does.
pub async fn allocate(c: Ctx) -> Reply {
    let p = c.principal()?;
    let cons = constraints(&c.params)?;
    let storage = cons.storage.clone();
    let dry_run = cons.dry_run;
    let comment = cons.comment.clone();
    let m = c.state.service.allocate(p, cons, comment).await?;
    let m = if dry_run {
        m
    } else {
        remember_agent(&c, m).await?
    };
    let mut v = render::machine(&m, &catalog(&c)?);
    if let Value::Object(map) = &mut v {
        map.insert(
            "constraints_by_type".into(),
            storage_matches(&m, storage.as_deref()),
        );
    }
    json(v)
}

pub async fn interfaces(c: Ctx) -> Reply {
    let (_, m) = visible(&c)?;
    json(Value::Array(render::interfaces(&m, &catalog(&c)?)))
}

fn index_arg(c: &Ctx, len: usize, kind: &str) -> MaasResult<usize> {
    let id = c.arg("id");
    match id.parse::<usize>() {
        Ok(n) if n >= 1 && n <= len => Ok(n - 1),
        _ => Err(MaasError::not_found(format!(
            "{kind} {id} does not exist on machine {}",
            c.arg("system_id")
        ))),
    }
}

pub async fn interface(c: Ctx) -> Reply {
    let (_, m) = visible(&c)?;
    let i = index_arg(&c, m.interfaces.len(), "interface")?;
    json(render::interface(
        &m.system_id,
        i,
        &m.interfaces[i],
        &catalog(&c)?,
    ))
}

pub(crate) async fn block_devices(c: Ctx) -> Reply {
    let (_, m) = visible(&c)?;
    json(Value::Array(render::block_devices(&m)))
}

pub(crate) async fn block_device(c: Ctx) -> Reply {
    let (_, m) = visible(&c)?;
    let i = index_arg(&c, m.disks.len(), "block device")?;
    json(render::block_device(&m.system_id, i, &m.disks[i]))
}

/// The subnet a link names: a boot subnet by its MAAS id or its CIDR.
fn link_subnet_cidr(c: &Ctx, named: &str) -> MaasResult<String> {
    let subnets = super::resources::subnets_by_cidr(c)?;
    subnets
        .iter()
        .find(|(cidr, v)| {
            *cidr == named || v["id"].as_u64().is_some_and(|n| n.to_string() == named)
        })
        .map(|(cidr, _)| cidr.clone())
        .ok_or_else(|| {
            MaasError::bad_request(format!(
                "subnet: {named} is not a subnet of the boot network"
            ))
        })
}

/// Sets the link of the interface the path names and answers the interface.
async fn set_link_reply(c: &Ctx, link: Option<crate::service::LinkRequest>) -> Reply {
    let (p, m) = visible(c)?;
    let i = index_arg(c, m.interfaces.len(), "interface")?;
    let name = m.interfaces[i].name.clone();
    let m = c
        .state
        .service
        .set_link(&p, &m.system_id, &name, link)
        .await?;
    json(render::interface(
        &m.system_id,
        i,
        &m.interfaces[i],
        &catalog(c)?,
    ))
}

/// POST nodes/{system_id}/interfaces/{id}/?op=link_subnet: mode AUTO, STATIC (with
/// ip_address), DHCP or LINK_UP, on a boot subnet (id or CIDR). An interface has one link: this
/// one replaces any other. `default_gateway` is accepted; the default route goes on the first
/// addressed interface whose subnet has a gateway.
pub(crate) async fn link_subnet(c: Ctx) -> Reply {
    let mode_text = c.params.required("mode")?;
    let mode = LinkMode::parse(&mode_text).ok_or_else(|| {
        MaasError::bad_request(format!(
            "mode: {mode_text:?} is not AUTO, STATIC, DHCP or LINK_UP"
        ))
    })?;
    c.params.boolean("default_gateway")?;
    let subnet = match c.params.nonempty("subnet")? {
        Some(s) => Some(link_subnet_cidr(&c, &s)?),
        None => None,
    };
    let ip = match c.params.nonempty("ip_address")? {
        Some(a) => Some(a.parse::<std::net::Ipv4Addr>().map_err(|_| {
            MaasError::bad_request(format!("ip_address: {a:?} is not an IPv4 address"))
        })?),
        None => None,
    };
    let link = crate::service::LinkRequest { mode, subnet, ip };
    set_link_reply(&c, Some(link)).await
}

/// POST nodes/{system_id}/interfaces/{id}/?op=unlink_subnet (id: the link's) and
/// op=disconnect: the interface is left to the deployed OS again.
pub(crate) async fn unlink_subnet(c: Ctx) -> Reply {
    let (_, m) = visible(&c)?;
    let i = index_arg(&c, m.interfaces.len(), "interface")?;
    if let Some(id) = c.params.nonempty("id")?
        && id != (i + 1).to_string()
    {
        return Err(MaasError::not_found(format!(
            "link {id} does not exist on interface {}",
            i + 1
        )));
    }
    set_link_reply(&c, None).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn user_data_is_base64_with_newlines() {
        assert_eq!(
            decode_user_data("I2Nsb3VkLWNvbmZp\nZwo=\n").unwrap(),
            "#cloud-config\n"
        );
        assert!(decode_user_data("not base64!").is_err());
        assert!(decode_user_data("//79").is_err());
    }

    #[test]
    fn gzip_user_data_is_read_as_cloud_init_reads_it() {
        use std::io::Write;
        let config = "#cloud-config\nruncmd: [echo juju]\n";
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
        gz.write_all(config.as_bytes()).unwrap();
        let b64 = base64::engine::general_purpose::STANDARD.encode(gz.finish().unwrap());
        assert_eq!(decode_user_data(&b64).unwrap(), config);
        let plain = base64::engine::general_purpose::STANDARD.encode(config);
        assert_eq!(decode_user_data(&format!("{plain}\n")).unwrap(), config);
        let broken = base64::engine::general_purpose::STANDARD.encode([0x1f, 0x8b, 1, 2, 3]);
        assert!(decode_user_data(&broken).is_err());
    }

    #[test]
    fn series_map_to_images() {
        assert_eq!(image_for("ubuntu", Some("jammy")), "ubuntu/jammy");
        assert_eq!(image_for("centos", Some("8")), "centos/8");
        assert_eq!(image_for("debian", Some("ubuntu/noble")), "ubuntu/noble");
        assert_eq!(image_for("debian", None), "");
    }

    #[test]
    fn erase_flags() {
        let fresh = Settings::default();
        let mode = |pairs: &[(&str, &str)]| {
            erase_mode(&Params::from_pairs(pairs.iter().copied()), &fresh).unwrap()
        };
        assert_eq!(mode(&[]), "none");
        assert_eq!(mode(&[("erase", "true")]), "full");
        assert_eq!(mode(&[("quick_erase", "true")]), "quick");
        assert_eq!(
            mode(&[("erase", "1"), ("secure_erase", "1"), ("quick_erase", "1")]),
            "secure"
        );
        assert_eq!(
            mode(&[("erase", "false"), ("quick_erase", "false")]),
            "none"
        );
        // A release that says nothing gets the appliance's settings; one that says anything
        // gets what it said.
        let quick_by_default = Settings {
            erase_on_release: true,
            erase_quick: true,
            ..Settings::default()
        };
        let with = |pairs: &[(&str, &str)]| {
            erase_mode(
                &Params::from_pairs(pairs.iter().copied()),
                &quick_by_default,
            )
            .unwrap()
        };
        assert_eq!(with(&[]), "quick");
        assert_eq!(with(&[("erase", "false")]), "none");
        assert_eq!(with(&[("secure_erase", "true")]), "secure");
    }

    #[test]
    fn power_parameters_both_forms() {
        let p = Params::from_pairs([
            (
                "power_parameters",
                r#"{"power_address": "10.0.0.5", "power_user": "a"}"#,
            ),
            ("power_parameters_power_pass", "secret"),
            ("power_parameters_skip_check", "true"),
        ]);
        let m = parse_power_parameters(&p).unwrap().unwrap();
        assert_eq!(m["power_address"], "10.0.0.5");
        assert_eq!(m["power_pass"], "secret");
        assert!(!m.contains_key("skip_check"));
        assert!(
            parse_power_parameters(&Params::from_pairs([("power_parameters", "[1]")])).is_err()
        );
        assert_eq!(parse_power_parameters(&Params::default()).unwrap(), None);
    }

    #[test]
    fn allocate_parameters_become_constraints() {
        let p = Params::from_pairs([
            ("cpu_count", "2"),
            ("mem", "4096.0"),
            ("tags", "gpu,fast"),
            ("tags", "ssd"),
            ("not_in_zones", "z2"),
            ("zone", "z1"),
            ("arch", "amd64"),
            ("dry_run", "true"),
            ("not_subnets", "space:x"),
        ]);
        let c = constraints(&p).unwrap();
        assert_eq!(c.cpu_count, Some(2));
        assert_eq!(c.mem, Some(4096));
        assert_eq!(c.tags, vec!["gpu", "fast", "ssd"]);
        assert_eq!(c.not_in_zone, vec!["z2"]);
        assert_eq!(c.zone.as_deref(), Some("z1"));
        assert_eq!(c.arch.as_deref(), Some("amd64"));
        assert!(c.dry_run);
        let e = constraints(&Params::from_pairs([("interfaces", "eth0:space=db")])).unwrap_err();
        assert_eq!(e.status, axum::http::StatusCode::CONFLICT);
        assert!(constraints(&Params::from_pairs([("cpu_count", "lots")])).is_err());
    }
}
