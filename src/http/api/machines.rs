//! Machines: the list, adding and allocating, one machine, its actions, power and test results.

use std::collections::{BTreeMap, BTreeSet};

use axum::Json;
use axum::extract::Path;
use axum::http::StatusCode;
use schemars::JsonSchema;
use serde::Serialize;

use super::Created;
use crate::http::error::{ApiError, ApiResult};
use crate::http::extract::Caller;
use crate::http::extract::{JsonBody, QueryArgs};
use crate::model::{
    Constraints, DeployTarget, DiscoveredBmc, Disk, EraseMode, Interface, Inventory, Machine,
    PowerSettings, PowerStatus, Status, TestResults,
};
use crate::service::{
    ActionRequest, MachineEdit, MachineFilter, NewMachine, PowerRequest, Principal, mask_power,
};

/// A machine as the API shows it: what its users need to know, not the stored record (no boot
/// token hash, deadline or bookkeeping of the deploy), with MAAS's status number and name, and
/// power secrets masked for anyone but admins. List items are this; one machine
/// (`GET /machines/{system_id}`) adds its hardware inventory.
#[derive(Serialize, JsonSchema)]
pub struct MachineView {
    /// MAAS-style short id.
    pub system_id: String,
    /// Short host name, unique on the appliance.
    pub hostname: String,
    /// DNS domain the host name lives in.
    pub domain: String,
    /// Where the machine is in its life cycle.
    pub status: Status,
    /// MAAS's number for the status.
    pub status_code: u8,
    /// MAAS's name for the status ("Ready", "Failed deployment").
    pub status_name: &'static str,
    /// What the machine is doing or waiting for, in words, or why it failed.
    pub status_message: String,
    /// The status an abort, or leaving rescue mode, returns to.
    pub previous_status: Option<Status>,
    /// Bumped on every change; give it back with an edit or action to refuse it if the machine
    /// changed meanwhile.
    pub generation: u64,
    /// The user the machine is allocated to.
    pub owner: Option<String>,
    /// Free-form key/value data of the owner.
    pub owner_data: BTreeMap<String, String>,
    /// A locked machine refuses every action that would change it.
    pub locked: bool,
    /// MAAS architecture string, e.g. "amd64/generic".
    pub architecture: String,
    /// CPU cores; 0 before commissioning.
    pub cpu_count: u32,
    /// Memory in MiB.
    pub memory_mib: u64,
    /// Block devices, from commissioning.
    pub disks: Vec<Disk>,
    /// Network interfaces and their MAC addresses.
    pub interfaces: Vec<Interface>,
    /// Commissioning has completed at least once.
    pub commissioned: bool,
    /// Labels set by admins; allocation matches them.
    pub tags: BTreeSet<String>,
    /// Availability zone.
    pub zone: String,
    /// Resource pool.
    pub pool: String,
    /// Free-form note by an admin.
    pub description: String,
    /// The power driver and its parameters (secrets masked for anyone but admins).
    pub power: PowerSettings,
    /// The last power state rackbox observed.
    pub power_state: PowerStatus,
    /// The BMC commissioning found in the machine, if any.
    pub discovered_bmc: Option<DiscoveredBmc>,
    /// What the deploy action asked for.
    pub deploy: Option<DeployTarget>,
    /// How the disks are wiped on release, as the release action asked.
    pub erase: Option<EraseMode>,
    /// Hardware tests run after the commissioning under way.
    pub test_after_commission: bool,
    /// The machine's last network boot of the ephemeral environment; none before the first.
    pub boot: Option<BootSummary>,
    /// Deploying: the image is on the disk; the machine boots it next, and the deployed OS
    /// must report in. False in every other status.
    pub image_written: bool,
    /// When the machine was added, milliseconds since the Unix epoch.
    pub created_ms: u64,
    /// When it last changed, milliseconds since the Unix epoch.
    pub updated_ms: u64,
}

/// A machine's last network boot of the ephemeral environment, as a user may see it: what it
/// was for and whether it is over, never its token or the token's hash.
#[derive(Serialize, JsonSchema)]
pub struct BootSummary {
    /// The status the boot was handed out for (new for an enlistment).
    pub issued_for: Status,
    /// The machine has left that work; the boot's agent is told only to power off.
    pub over: bool,
}

impl MachineView {
    pub fn new(p: &Principal, m: &Machine) -> MachineView {
        let power = if p.is_admin() {
            m.power.clone()
        } else {
            mask_power(&m.power)
        };
        MachineView {
            system_id: m.system_id.clone(),
            hostname: m.hostname.clone(),
            domain: m.domain.clone(),
            status: m.status,
            status_code: m.status.code(),
            status_name: m.status.name(),
            status_message: m.status_message.clone(),
            previous_status: m.previous_status,
            generation: m.generation,
            owner: m.owner.clone(),
            owner_data: m.owner_data.clone(),
            locked: m.locked,
            architecture: m.architecture.clone(),
            cpu_count: m.cpu_count,
            memory_mib: m.memory_mib,
            disks: m.disks.clone(),
            interfaces: m.interfaces.clone(),
            commissioned: m.commissioned,
            tags: m.tags.clone(),
            zone: m.zone.clone(),
            pool: m.pool.clone(),
            description: m.description.clone(),
            power,
            power_state: m.power_state.clone(),
            discovered_bmc: m.discovered_bmc.clone(),
            deploy: m.deploy.clone(),
            erase: m.erase,
            test_after_commission: m.test_after_commission,
            boot: m.boot_session.as_ref().map(|b| BootSummary {
                issued_for: b.issued_for,
                over: b.over,
            }),
            image_written: m.status == Status::Deploying && m.deploy_written,
            created_ms: m.created_ms,
            updated_ms: m.updated_ms,
        }
    }
}

/// One machine as `GET /machines/{system_id}` shows it: the list's view and the hardware
/// inventory.
#[derive(Serialize, JsonSchema)]
pub struct MachineDetail {
    #[serde(flatten)]
    pub machine: MachineView,
    /// The hardware inventory the last commissioning reported (without BMC credentials); none
    /// before the first.
    pub inventory: Option<Inventory>,
}

impl MachineDetail {
    pub fn new(p: &Principal, m: &Machine) -> MachineDetail {
        MachineDetail {
            machine: MachineView::new(p, m),
            inventory: m.inventory.clone(),
        }
    }
}

#[derive(Serialize, JsonSchema)]
pub struct MachinePage {
    pub items: Vec<MachineView>,
    pub total: usize,
    pub next: Option<String>,
}

#[derive(Serialize, JsonSchema)]
pub struct PowerAnswer {
    /// on, off, unknown (manual or no driver).
    pub state: &'static str,
}

pub(super) async fn list(
    Caller(s, p): Caller,
    QueryArgs(f): QueryArgs<MachineFilter>,
) -> ApiResult<Json<MachinePage>> {
    let page = s.service.list_machines(&p, &f)?;
    Ok(Json(MachinePage {
        items: page
            .items
            .into_iter()
            .map(|m| MachineView::new(&p, &m))
            .collect(),
        total: page.total,
        next: page.next,
    }))
}

pub(super) async fn add(
    Caller(s, p): Caller,
    JsonBody(new): JsonBody<NewMachine>,
) -> ApiResult<Created<MachineView>> {
    let m = s.service.add_machine(&p, new).await?;
    Ok(Created(MachineView::new(&p, &m)))
}

pub(super) async fn allocate(
    Caller(s, p): Caller,
    JsonBody(c): JsonBody<Constraints>,
) -> ApiResult<Json<MachineView>> {
    let comment = c.comment.clone();
    let m = s.service.allocate(&p, c, comment).await?;
    Ok(Json(MachineView::new(&p, &m)))
}

pub(super) async fn show(
    Caller(s, p): Caller,
    Path(id): Path<String>,
) -> ApiResult<Json<MachineDetail>> {
    let m = s.service.machine(&p, &id)?;
    Ok(Json(MachineDetail::new(&p, &m)))
}

pub(super) async fn edit(
    Caller(s, p): Caller,
    Path(id): Path<String>,
    JsonBody(e): JsonBody<MachineEdit>,
) -> ApiResult<Json<MachineView>> {
    let m = s.service.edit_machine(&p, &id, e).await?;
    Ok(Json(MachineView::new(&p, &m)))
}

/// PUT /api/v1/machines/{system_id}/interfaces/{name}/link
pub(super) async fn set_link(
    Caller(s, p): Caller,
    Path((id, name)): Path<(String, String)>,
    JsonBody(link): JsonBody<crate::model::network::Link>,
) -> ApiResult<Json<MachineView>> {
    let m = s.service.set_link(&p, &id, &name, Some(link)).await?;
    Ok(Json(MachineView::new(&p, &m)))
}

/// DELETE /api/v1/machines/{system_id}/interfaces/{name}/link
pub(super) async fn clear_link(
    Caller(s, p): Caller,
    Path((id, name)): Path<(String, String)>,
) -> ApiResult<Json<MachineView>> {
    let m = s.service.set_link(&p, &id, &name, None).await?;
    Ok(Json(MachineView::new(&p, &m)))
}

pub(super) async fn delete(Caller(s, p): Caller, Path(id): Path<String>) -> ApiResult<StatusCode> {
    s.service.delete_machine(&p, &id).await?;
    Ok(StatusCode::NO_CONTENT)
}

pub(super) async fn act(
    Caller(s, p): Caller,
    Path((id, action)): Path<(String, String)>,
    JsonBody(req): JsonBody<ActionRequest>,
) -> ApiResult<Json<MachineView>> {
    let m = s.service.act(&p, &id, &action, req).await?;
    Ok(Json(MachineView::new(&p, &m)))
}

pub(super) async fn power_query(
    Caller(s, p): Caller,
    Path(id): Path<String>,
) -> ApiResult<Json<PowerAnswer>> {
    let state = s.service.power_query(&p, &id).await?;
    Ok(Json(PowerAnswer {
        state: state.as_str(),
    }))
}

pub(super) async fn power_switch(
    Caller(s, p): Caller,
    Path((id, op)): Path<(String, String)>,
) -> ApiResult<Json<MachineView>> {
    let request = match op.as_str() {
        "on" => PowerRequest::On,
        "off" => PowerRequest::Off { soft: false },
        "soft_off" => PowerRequest::Off { soft: true },
        "cycle" => PowerRequest::Cycle,
        other => {
            return Err(ApiError::bad_request(format!(
                "power operation {other:?} must be on, off, soft_off or cycle"
            )));
        }
    };
    let m = s.service.power_switch(&p, &id, request).await?;
    Ok(Json(MachineView::new(&p, &m)))
}

pub(super) async fn test_results(
    Caller(s, p): Caller,
    Path(id): Path<String>,
) -> ApiResult<Json<TestResults>> {
    Ok(Json(s.service.test_results(&p, &id)?))
}

/// `GET /machines/{id}/boot-timeline`: what the appliance saw of the machine's current and
/// previous network boot since the daemon started.
pub(super) async fn boot_timeline(
    Caller(s, p): Caller,
    Path(id): Path<String>,
) -> ApiResult<Json<crate::model::timeline::MachineTimeline>> {
    Ok(Json(s.service.boot_timeline(&p, &id)?))
}
