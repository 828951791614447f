//! Machines: the list, adding and allocating, one machine, its actions, power and test results.

use std::sync::Arc;

use axum::Json;
use axum::extract::{Extension, Path, State};
use axum::http::StatusCode;
use schemars::JsonSchema;
use serde::Serialize;

use super::P;
use crate::http::AppState;
use crate::http::error::{ApiError, ApiResult};
use crate::http::extract::{JsonBody, QueryArgs};
use crate::model::{Constraints, Machine, TestResults};
use crate::service::{
    ActionRequest, MachineEdit, MachineFilter, NewMachine, PowerRequest, Principal, mask_power,
};

/// A machine as the API shows it: the record, MAAS's status number and name, and power secrets
/// masked for anyone but admins.
#[derive(Serialize, JsonSchema)]
pub struct MachineView {
    #[serde(flatten)]
    pub machine: Arc<Machine>,
    pub status_code: u8,
    pub status_name: &'static str,
}

impl MachineView {
    pub fn new(p: &Principal, machine: Arc<Machine>) -> MachineView {
        let machine = if p.is_admin() || machine.power.parameters.is_empty() {
            machine
        } else {
            let mut m = (*machine).clone();
            m.power = mask_power(&m.power);
            Arc::new(m)
        };
        MachineView {
            status_code: machine.status.code(),
            status_name: machine.status.name(),
            machine,
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
    State(s): State<AppState>,
    Extension(p): P,
    QueryArgs(f): QueryArgs<MachineFilter>,
) -> ApiResult<Json<MachinePage>> {
    let page = s.service.list_machines(&p, &f)?;
    Ok(Json(MachinePage {
        items: page
            .items
            .into_iter()
            .map(|m| MachineView::new(&p, m))
            .collect(),
        total: page.total,
        next: page.next,
    }))
}

pub(super) async fn add(
    State(s): State<AppState>,
    Extension(p): P,
    JsonBody(new): JsonBody<NewMachine>,
) -> ApiResult<(StatusCode, Json<MachineView>)> {
    let m = s.service.add_machine(&p, new).await?;
    Ok((StatusCode::CREATED, Json(MachineView::new(&p, Arc::new(m)))))
}

pub(super) async fn allocate(
    State(s): State<AppState>,
    Extension(p): P,
    JsonBody(c): JsonBody<Constraints>,
) -> ApiResult<Json<MachineView>> {
    let comment = c.comment.clone();
    let m = s.service.allocate(&p, c, comment).await?;
    Ok(Json(MachineView::new(&p, Arc::new(m))))
}

pub(super) async fn show(
    State(s): State<AppState>,
    Extension(p): P,
    Path(id): Path<String>,
) -> ApiResult<Json<MachineView>> {
    Ok(Json(MachineView::new(&p, s.service.machine(&p, &id)?)))
}

pub(super) async fn edit(
    State(s): State<AppState>,
    Extension(p): P,
    Path(id): Path<String>,
    JsonBody(e): JsonBody<MachineEdit>,
) -> ApiResult<Json<MachineView>> {
    let m = s.service.edit_machine(&p, &id, e).await?;
    Ok(Json(MachineView::new(&p, Arc::new(m))))
}

pub(super) async fn delete(
    State(s): State<AppState>,
    Extension(p): P,
    Path(id): Path<String>,
) -> ApiResult<StatusCode> {
    s.service.delete_machine(&p, &id).await?;
    Ok(StatusCode::NO_CONTENT)
}

pub(super) async fn act(
    State(s): State<AppState>,
    Extension(p): P,
    Path((id, action)): Path<(String, String)>,
    JsonBody(req): JsonBody<ActionRequest>,
) -> ApiResult<Json<MachineView>> {
    let m = s.service.act(&p, &id, &action, req).await?;
    Ok(Json(MachineView::new(&p, Arc::new(m))))
}

pub(super) async fn power_query(
    State(s): State<AppState>,
    Extension(p): P,
    Path(id): Path<String>,
) -> ApiResult<Json<PowerAnswer>> {
    let state = s.service.power_query(&p, &id).await?;
    Ok(Json(PowerAnswer {
        state: state.as_str(),
    }))
}

pub(super) async fn power_switch(
    State(s): State<AppState>,
    Extension(p): P,
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
    Ok(Json(MachineView::new(&p, Arc::new(m))))
}

pub(super) async fn test_results(
    State(s): State<AppState>,
    Extension(p): P,
    Path(id): Path<String>,
) -> ApiResult<Json<TestResults>> {
    Ok(Json(s.service.test_results(&p, &id)?))
}
