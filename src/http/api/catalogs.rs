//! Zones, resource pools and tags: three catalogs of one shape (list, create, show, delete),
//! served by one set of handlers, each instantiated per catalog (`list::<Zones>`).

use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;

use super::Created;
use crate::http::AppState;
use crate::http::error::ApiResult;
use crate::http::extract::Caller;
use crate::http::extract::JsonBody;
use crate::model::api::NamedRequest;
use crate::model::catalog::NamedThing;
use crate::service::CatalogKind;

/// A catalog, as a type, so that one handler serves each (the route table names
/// `list::<Zones>`); the MAAS face's catalog handlers take the same types.
pub trait Catalog {
    const KIND: CatalogKind;
}

/// Availability zones.
pub(crate) struct Zones;
/// Resource pools.
pub(crate) struct Pools;
/// Tags.
pub(crate) struct Tags;

impl Catalog for Zones {
    const KIND: CatalogKind = CatalogKind::Zone;
}
impl Catalog for Pools {
    const KIND: CatalogKind = CatalogKind::Pool;
}
impl Catalog for Tags {
    const KIND: CatalogKind = CatalogKind::Tag;
}

pub(super) async fn list<C: Catalog>(
    State(s): State<AppState>,
) -> ApiResult<Json<Vec<NamedThing>>> {
    Ok(Json(s.service.list_catalog(C::KIND)?))
}

pub(super) async fn show<C: Catalog>(
    State(s): State<AppState>,
    Path(name): Path<String>,
) -> ApiResult<Json<NamedThing>> {
    Ok(Json(s.service.catalog_entry(C::KIND, &name)?))
}

pub(super) async fn create<C: Catalog>(
    Caller(s, p): Caller,
    JsonBody(req): JsonBody<NamedRequest>,
) -> ApiResult<Created<NamedThing>> {
    Ok(Created(
        s.service
            .create_catalog(&p, C::KIND, &req.name, &req.description)
            .await?,
    ))
}

pub(super) async fn delete<C: Catalog>(
    Caller(s, p): Caller,
    Path(name): Path<String>,
) -> ApiResult<StatusCode> {
    s.service.delete_catalog(&p, C::KIND, &name).await?;
    Ok(StatusCode::NO_CONTENT)
}
