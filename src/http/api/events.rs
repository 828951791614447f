//! The event log: one machine's history, and every machine's.

use axum::Json;
use axum::extract::Path;
use schemars::JsonSchema;
use serde::Deserialize;

use crate::http::error::ApiResult;
use crate::http::extract::Caller;
use crate::http::extract::QueryArgs;
use crate::model::Event;

#[derive(Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct EventQuery {
    /// Only events older than this sequence number (paging backwards).
    pub before: Option<u64>,
    /// At most this many (default 100, at most 10000).
    pub limit: Option<usize>,
}

pub(super) fn event_limit(q: &EventQuery) -> usize {
    q.limit.unwrap_or(100).clamp(1, 10_000)
}

pub(super) async fn of_machine(
    Caller(s, p): Caller,
    Path(id): Path<String>,
    QueryArgs(q): QueryArgs<EventQuery>,
) -> ApiResult<Json<Vec<Event>>> {
    Ok(Json(s.service.machine_events(
        &p,
        &id,
        q.before,
        event_limit(&q),
    )?))
}

pub(super) async fn all(
    Caller(s, p): Caller,
    QueryArgs(q): QueryArgs<EventQuery>,
) -> ApiResult<Json<Vec<Event>>> {
    Ok(Json(s.service.recent_events(
        &p,
        q.before,
        event_limit(&q),
    )?))
}
