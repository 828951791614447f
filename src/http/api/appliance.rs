//! The appliance itself: liveness, metrics, this API's document, the boot network's leases.

use axum::Json;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use schemars::JsonSchema;
use serde::Serialize;

use crate::http::AppState;
use crate::http::error::ApiResult;
use crate::http::extract::{Caller, JsonBody};

#[derive(Serialize, JsonSchema)]
pub(crate) struct Health {
    /// ok; disk_full (only logins, deletes and the appliance's own records are written: free
    /// space on the state disk); store_failed (the database could not be reopened after an I/O
    /// error). Anything but ok is answered with 503.
    pub status: &'static str,
    pub version: &'static str,
    /// What is wrong, when something is.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub detail: Option<String>,
}

pub(super) async fn healthz(State(s): State<AppState>) -> ApiResult<(StatusCode, Json<Health>)> {
    use crate::service::StoreState;
    let (status, detail) = match s.service.store_health() {
        StoreState::Ok => ("ok", None),
        StoreState::DiskFull { detail } => ("disk_full", Some(detail)),
        StoreState::Failed { detail } => ("store_failed", Some(detail)),
    };
    let code = if status == "ok" {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    Ok((
        code,
        Json(Health {
            status,
            version: env!("CARGO_PKG_VERSION"),
            detail,
        }),
    ))
}

pub(super) async fn metrics(State(s): State<AppState>) -> Response {
    (
        [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
        crate::http::metrics::render(&s),
    )
        .into_response()
}

pub(super) async fn openapi_document(State(s): State<AppState>) -> Json<serde_json::Value> {
    Json(crate::http::openapi::document(&s.public_url))
}

pub(super) async fn leases(
    Caller(s, p): Caller,
) -> ApiResult<Json<Vec<crate::model::lease::Lease>>> {
    Ok(Json(s.service.list_leases(&p)?))
}

/// Looks for other DHCP servers on an interface of the appliance (before managed DHCP is
/// switched on there).
pub(super) async fn dhcp_probe(
    Caller(_, _): Caller,
    JsonBody(req): JsonBody<crate::dhcp::probe::ProbeRequest>,
) -> ApiResult<Json<crate::dhcp::probe::ProbeReport>> {
    let wait = req
        .wait()
        .map_err(crate::http::error::ApiError::bad_request)?;
    let report = crate::dhcp::probe::probe(&req.interface, wait)
        .await
        .map_err(crate::service::ServiceError::from)?;
    Ok(Json(report))
}
