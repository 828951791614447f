//! Logging in, and who the caller is.

use axum::Json;
use axum::extract::{ConnectInfo, Extension, State};
use schemars::JsonSchema;
use serde::Serialize;

use crate::http::AppState;
use crate::http::error::ApiResult;
use crate::http::extract::JsonBody;
use crate::model::api::LoginRequest;
use crate::service::{Principal, TokenCreated, TokenKind};

#[derive(Serialize, JsonSchema)]
pub(crate) struct WhoAmI {
    pub username: String,
    pub role: String,
}

pub(super) async fn login(
    State(s): State<AppState>,
    source: Option<Extension<ConnectInfo<std::net::SocketAddr>>>,
    JsonBody(req): JsonBody<LoginRequest>,
) -> ApiResult<Json<TokenCreated>> {
    let name = req.token_name.unwrap_or_else(|| "login".into());
    let source = source.map(|Extension(ConnectInfo(addr))| addr.ip());
    Ok(Json(
        s.service
            .login(
                &req.username,
                &req.password,
                &name,
                TokenKind::Native,
                source,
            )
            .await?,
    ))
}

pub(super) async fn whoami(Extension(p): Extension<Principal>) -> Json<WhoAmI> {
    Json(WhoAmI {
        role: p.role.as_str().into(),
        username: p.username,
    })
}
