//! Users and their SSH keys.

use axum::Json;
use axum::extract::Path;
use axum::http::StatusCode;

use super::Created;
use crate::http::error::{ApiError, ApiResult};
use crate::http::extract::Caller;
use crate::http::extract::JsonBody;
use crate::model::api::SshKeyRequest;
use crate::service::{NewUser, UserEdit, UserView};

pub(super) async fn list(Caller(s, p): Caller) -> ApiResult<Json<Vec<UserView>>> {
    Ok(Json(s.service.list_users(&p)?))
}

pub(super) async fn create(
    Caller(s, p): Caller,
    JsonBody(u): JsonBody<NewUser>,
) -> ApiResult<Created<UserView>> {
    Ok(Created(s.service.create_user(&p, u).await?))
}

pub(super) async fn show(
    Caller(s, p): Caller,
    Path(name): Path<String>,
) -> ApiResult<Json<UserView>> {
    Ok(Json(s.service.user(&p, &name)?))
}

pub(super) async fn edit(
    Caller(s, p): Caller,
    Path(name): Path<String>,
    JsonBody(e): JsonBody<UserEdit>,
) -> ApiResult<Json<UserView>> {
    Ok(Json(s.service.edit_user(&p, &name, e).await?))
}

pub(super) async fn delete(
    Caller(s, p): Caller,
    Path(name): Path<String>,
) -> ApiResult<StatusCode> {
    s.service.delete_user(&p, &name).await?;
    Ok(StatusCode::NO_CONTENT)
}

pub(super) async fn ssh_keys(
    Caller(s, p): Caller,
    Path(name): Path<String>,
) -> ApiResult<Json<Vec<crate::model::SshKey>>> {
    Ok(Json(s.service.user(&p, &name)?.ssh_keys))
}

pub(super) async fn add_ssh_key(
    Caller(s, p): Caller,
    Path(name): Path<String>,
    JsonBody(k): JsonBody<SshKeyRequest>,
) -> ApiResult<Created<crate::model::SshKey>> {
    Ok(Created(s.service.add_ssh_key(&p, &name, &k.key).await?))
}

pub(super) async fn delete_ssh_key(
    Caller(s, p): Caller,
    Path((name, id)): Path<(String, String)>,
) -> ApiResult<StatusCode> {
    // Key ids are numbers: any other id names no key (404, as the document says).
    let id: u32 = id
        .parse()
        .map_err(|_| ApiError::not_found(format!("no ssh key {id:?} (key ids are numbers)")))?;
    s.service.delete_ssh_key(&p, &name, id).await?;
    Ok(StatusCode::NO_CONTENT)
}
