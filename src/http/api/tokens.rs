//! API tokens: the caller's (an admin's: everyone's), a new one, revoking one.

use axum::Json;
use axum::extract::{Extension, Path, State};
use axum::http::StatusCode;

use super::P;
use crate::http::AppState;
use crate::http::error::{ApiError, ApiResult};
use crate::http::extract::JsonBody;
use crate::model::api::TokenRequest;
use crate::service::{TokenCreated, TokenKind, TokenView};

pub(super) async fn list(
    State(s): State<AppState>,
    Extension(p): P,
) -> ApiResult<Json<Vec<TokenView>>> {
    Ok(Json(s.service.list_tokens(&p)?))
}

pub(super) async fn create(
    State(s): State<AppState>,
    Extension(p): P,
    JsonBody(req): JsonBody<TokenRequest>,
) -> ApiResult<(StatusCode, Json<TokenCreated>)> {
    let kind = match req.kind.as_deref() {
        None | Some("native") => TokenKind::Native,
        Some("maas") => TokenKind::Maas,
        Some(other) => {
            return Err(ApiError::bad_request(format!(
                "token kind {other:?} must be native or maas"
            )));
        }
    };
    let username = req.username.unwrap_or_else(|| p.username.clone());
    Ok((
        StatusCode::CREATED,
        Json(
            s.service
                .create_token(&p, &username, &req.name, kind)
                .await?,
        ),
    ))
}

pub(super) async fn revoke(
    State(s): State<AppState>,
    Extension(p): P,
    Path(id): Path<String>,
) -> ApiResult<StatusCode> {
    s.service.revoke_token(&p, &id).await?;
    Ok(StatusCode::NO_CONTENT)
}
