//! API tokens: the caller's (an admin's: everyone's), a new one, revoking one.

use axum::Json;
use axum::extract::Path;
use axum::http::StatusCode;

use super::Created;
use crate::http::error::{ApiError, ApiResult};
use crate::http::extract::Caller;
use crate::http::extract::JsonBody;
use crate::model::api::TokenRequest;
use crate::service::{TokenCreated, TokenKind, TokenView};

pub(super) async fn list(Caller(s, p): Caller) -> ApiResult<Json<Vec<TokenView>>> {
    Ok(Json(s.service.list_tokens(&p)?))
}

pub(super) async fn create(
    Caller(s, p): Caller,
    JsonBody(req): JsonBody<TokenRequest>,
) -> ApiResult<Created<TokenCreated>> {
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
    Ok(Created(
        s.service
            .create_token(&p, &username, &req.name, kind)
            .await?,
    ))
}

pub(super) async fn revoke(Caller(s, p): Caller, Path(id): Path<String>) -> ApiResult<StatusCode> {
    s.service.revoke_token(&p, &id).await?;
    Ok(StatusCode::NO_CONTENT)
}
