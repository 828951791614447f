//! Users and their SSH keys.

use axum::Json;
use axum::extract::{Extension, Path, State};
use axum::http::StatusCode;

use super::P;
use crate::http::AppState;
use crate::http::error::{ApiError, ApiResult};
use crate::http::extract::JsonBody;
use crate::model::api::SshKeyRequest;
use crate::service::{NewUser, UserEdit, UserView};

pub(super) async fn list(
    State(s): State<AppState>,
    Extension(p): P,
) -> ApiResult<Json<Vec<UserView>>> {
    Ok(Json(s.service.list_users(&p)?))
}

pub(super) async fn create(
    State(s): State<AppState>,
    Extension(p): P,
    JsonBody(u): JsonBody<NewUser>,
) -> ApiResult<(StatusCode, Json<UserView>)> {
    Ok((
        StatusCode::CREATED,
        Json(s.service.create_user(&p, u).await?),
    ))
}

pub(super) async fn show(
    State(s): State<AppState>,
    Extension(p): P,
    Path(name): Path<String>,
) -> ApiResult<Json<UserView>> {
    Ok(Json(s.service.user(&p, &name)?))
}

pub(super) async fn edit(
    State(s): State<AppState>,
    Extension(p): P,
    Path(name): Path<String>,
    JsonBody(e): JsonBody<UserEdit>,
) -> ApiResult<Json<UserView>> {
    Ok(Json(s.service.edit_user(&p, &name, e).await?))
}

pub(super) async fn delete(
    State(s): State<AppState>,
    Extension(p): P,
    Path(name): Path<String>,
) -> ApiResult<StatusCode> {
    s.service.delete_user(&p, &name).await?;
    Ok(StatusCode::NO_CONTENT)
}

pub(super) async fn ssh_keys(
    State(s): State<AppState>,
    Extension(p): P,
    Path(name): Path<String>,
) -> ApiResult<Json<Vec<crate::model::SshKey>>> {
    Ok(Json(s.service.user(&p, &name)?.ssh_keys))
}

pub(super) async fn add_ssh_key(
    State(s): State<AppState>,
    Extension(p): P,
    Path(name): Path<String>,
    JsonBody(k): JsonBody<SshKeyRequest>,
) -> ApiResult<(StatusCode, Json<crate::model::SshKey>)> {
    Ok((
        StatusCode::CREATED,
        Json(s.service.add_ssh_key(&p, &name, &k.key).await?),
    ))
}

pub(super) async fn delete_ssh_key(
    State(s): State<AppState>,
    Extension(p): P,
    Path((name, id)): Path<(String, String)>,
) -> ApiResult<StatusCode> {
    // Key ids are numbers: any other id names no key (404, as the document says).
    let id: u32 = id
        .parse()
        .map_err(|_| ApiError::not_found(format!("no ssh key {id:?} (key ids are numbers)")))?;
    s.service.delete_ssh_key(&p, &name, id).await?;
    Ok(StatusCode::NO_CONTENT)
}
