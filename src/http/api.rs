//! The native REST API, /api/v1: the route table and its handlers.

use std::sync::Arc;

use axum::Json;
use axum::extract::{ConnectInfo, Extension, Path, State};
use axum::http::{Method, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{MethodRouter, delete, get, post};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::error::{ApiError, ApiResult};
use super::extract::{JsonBody, QueryArgs};
use super::openapi::schema;
use super::{Access, AppState, Route, images};
use crate::images::{
    BootRequest, BootView, GcReport, ImageEdit, ImageList, ImageRequest, ImageView, ImportView,
    SyncReport, SyncRequest,
};
use crate::model::api::{LoginRequest, NamedRequest, SshKeyRequest, TokenRequest};
use crate::model::{Constraints, Event, Machine, TestResults};
use crate::service::{
    ActionRequest, CatalogKind, MachineEdit, MachineFilter, NewMachine, NewUser, PowerRequest,
    Principal, TokenCreated, TokenKind, TokenView, UserEdit, UserView, mask_power,
};
use crate::store::tables::NamedThing;

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

#[derive(Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct EventQuery {
    /// Only events older than this sequence number (paging backwards).
    pub before: Option<u64>,
    /// At most this many (default 100, at most 10000).
    pub limit: Option<usize>,
}

#[derive(Serialize, JsonSchema)]
pub struct WhoAmI {
    pub username: String,
    pub role: String,
}

#[derive(Serialize, JsonSchema)]
pub struct PowerAnswer {
    /// on, off, unknown (manual or no driver).
    pub state: &'static str,
}

#[derive(Serialize, JsonSchema)]
pub struct Health {
    /// ok; disk_full (only logins, deletes and the appliance's own records are written: free
    /// space on the state disk); store_failed (the database could not be reopened after an I/O
    /// error). Anything but ok is answered with 503.
    pub status: &'static str,
    pub version: &'static str,
    /// What is wrong, when something is.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub detail: Option<String>,
}

const PATH_MACHINES: &str = "/api/v1/machines";

/// The route table: every route of the native API, its access level, summary and schemas.
/// The router, the authorization middleware, the OpenAPI document and the auth-matrix test all
/// read this one list.
pub const ROUTES: &[Route] = &[
    Route {
        method: Method::GET,
        path: "/healthz",
        access: Access::Anonymous,
        summary: "Liveness: the daemon answers and its store is readable",
        handler: || get(healthz),
        query: None,
        request: None,
        response: Some(schema::<Health>),
        success: 200,
    },
    Route {
        method: Method::GET,
        path: "/metrics",
        access: Access::User,
        summary: "Metrics in Prometheus text format",
        handler: || get(metrics),
        query: None,
        request: None,
        response: None,
        success: 200,
    },
    Route {
        method: Method::POST,
        path: "/api/v1/auth/login",
        access: Access::Anonymous,
        summary: "Log in with a username and password; answers a new API token",
        handler: || post(login),
        query: None,
        request: Some(schema::<LoginRequest>),
        response: Some(schema::<TokenCreated>),
        success: 200,
    },
    Route {
        method: Method::GET,
        path: "/api/v1/openapi.json",
        access: Access::User,
        summary: "This API's OpenAPI document, generated from the route table",
        handler: || get(openapi_document),
        query: None,
        request: None,
        response: None,
        success: 200,
    },
    Route {
        method: Method::GET,
        path: "/api/v1/whoami",
        access: Access::User,
        summary: "The caller's username and role",
        handler: || get(whoami),
        query: None,
        request: None,
        response: Some(schema::<WhoAmI>),
        success: 200,
    },
    Route {
        method: Method::GET,
        path: PATH_MACHINES,
        access: Access::User,
        summary: "List machines (filters, paging by cursor)",
        handler: || get(list_machines).post(add_machine),
        query: Some(schema::<MachineFilter>),
        request: None,
        response: Some(schema::<MachinePage>),
        success: 200,
    },
    Route {
        method: Method::POST,
        path: PATH_MACHINES,
        access: Access::Admin,
        summary: "Add a machine (commissions at once when it has a power driver)",
        handler: || get(list_machines).post(add_machine),
        query: None,
        request: Some(schema::<NewMachine>),
        response: Some(schema::<MachineView>),
        success: 201,
    },
    Route {
        method: Method::POST,
        path: "/api/v1/machines/allocate",
        access: Access::User,
        summary: "Allocate the smallest Ready machine that satisfies the constraints",
        handler: || post(allocate),
        query: None,
        request: Some(schema::<Constraints>),
        response: Some(schema::<MachineView>),
        success: 200,
    },
    Route {
        method: Method::GET,
        path: "/api/v1/machines/{system_id}",
        access: Access::User,
        summary: "Show a machine",
        handler: || get(show_machine).patch(edit_machine).delete(delete_machine),
        query: None,
        request: None,
        response: Some(schema::<MachineView>),
        success: 200,
    },
    Route {
        method: Method::PATCH,
        path: "/api/v1/machines/{system_id}",
        access: Access::User,
        summary: "Edit a machine (admins; owners may change owner_data)",
        handler: || get(show_machine).patch(edit_machine).delete(delete_machine),
        query: None,
        request: Some(schema::<MachineEdit>),
        response: Some(schema::<MachineView>),
        success: 200,
    },
    Route {
        method: Method::DELETE,
        path: "/api/v1/machines/{system_id}",
        access: Access::Admin,
        summary: "Delete a machine and its history",
        handler: || get(show_machine).patch(edit_machine).delete(delete_machine),
        query: None,
        request: None,
        response: None,
        success: 204,
    },
    Route {
        method: Method::POST,
        path: "/api/v1/machines/{system_id}/actions/{action}",
        access: Access::User,
        summary: "Apply an action: commission, test, deploy, release, abort, mark_broken, mark_fixed, override_failed_testing, rescue_mode, exit_rescue_mode, lock, unlock",
        handler: || post(act),
        query: None,
        request: Some(schema::<ActionRequest>),
        response: Some(schema::<MachineView>),
        success: 200,
    },
    Route {
        method: Method::GET,
        path: "/api/v1/machines/{system_id}/power",
        access: Access::User,
        summary: "Ask the machine's BMC for its power state now (recorded on the machine)",
        handler: || get(power_query),
        query: None,
        request: None,
        response: Some(schema::<PowerAnswer>),
        success: 200,
    },
    Route {
        method: Method::POST,
        path: "/api/v1/machines/{system_id}/power/{op}",
        access: Access::User,
        summary: "Switch the machine's power through its BMC: on, off, soft_off, cycle (owners and admins)",
        handler: || post(power_switch),
        query: None,
        request: None,
        response: Some(schema::<MachineView>),
        success: 200,
    },
    Route {
        method: Method::GET,
        path: "/api/v1/machines/{system_id}/events",
        access: Access::User,
        summary: "A machine's history, newest first",
        handler: || get(machine_events),
        query: Some(schema::<EventQuery>),
        request: None,
        response: Some(schema::<Vec<Event>>),
        success: 200,
    },
    Route {
        method: Method::GET,
        path: "/api/v1/machines/{system_id}/test-results",
        access: Access::User,
        summary: "The machine's latest hardware test run: each test's status, times, summary, and for disk tests the disk and read throughput (no results before the first run)",
        handler: || get(machine_test_results),
        query: None,
        request: None,
        response: Some(schema::<TestResults>),
        success: 200,
    },
    Route {
        method: Method::GET,
        path: "/api/v1/events",
        access: Access::Admin,
        summary: "Every machine's history, newest first",
        handler: || get(all_events),
        query: Some(schema::<EventQuery>),
        request: None,
        response: Some(schema::<Vec<Event>>),
        success: 200,
    },
    Route {
        method: Method::GET,
        path: "/api/v1/leases",
        access: Access::Admin,
        summary: "DHCP leases of the boot network, by address",
        handler: || get(list_leases),
        query: None,
        request: None,
        response: Some(schema::<Vec<crate::dhcp::lease::Lease>>),
        success: 200,
    },
    Route {
        method: Method::GET,
        path: "/api/v1/users",
        access: Access::Admin,
        summary: "List users",
        handler: || get(list_users).post(create_user),
        query: None,
        request: None,
        response: Some(schema::<Vec<UserView>>),
        success: 200,
    },
    Route {
        method: Method::POST,
        path: "/api/v1/users",
        access: Access::Admin,
        summary: "Create a user",
        handler: || get(list_users).post(create_user),
        query: None,
        request: Some(schema::<NewUser>),
        response: Some(schema::<UserView>),
        success: 201,
    },
    Route {
        method: Method::GET,
        path: "/api/v1/users/{username}",
        access: Access::User,
        summary: "Show a user (admins, or the user themselves)",
        handler: || get(show_user).patch(edit_user).delete(delete_user),
        query: None,
        request: None,
        response: Some(schema::<UserView>),
        success: 200,
    },
    Route {
        method: Method::PATCH,
        path: "/api/v1/users/{username}",
        access: Access::User,
        summary: "Change a user's password, email or role (role: admins only)",
        handler: || get(show_user).patch(edit_user).delete(delete_user),
        query: None,
        request: Some(schema::<UserEdit>),
        response: Some(schema::<UserView>),
        success: 200,
    },
    Route {
        method: Method::DELETE,
        path: "/api/v1/users/{username}",
        access: Access::Admin,
        summary: "Delete a user and their tokens",
        handler: || get(show_user).patch(edit_user).delete(delete_user),
        query: None,
        request: None,
        response: None,
        success: 204,
    },
    Route {
        method: Method::GET,
        path: "/api/v1/users/{username}/sshkeys",
        access: Access::User,
        summary: "A user's SSH public keys",
        handler: || get(list_ssh_keys).post(add_ssh_key),
        query: None,
        request: None,
        response: Some(schema::<Vec<crate::model::SshKey>>),
        success: 200,
    },
    Route {
        method: Method::POST,
        path: "/api/v1/users/{username}/sshkeys",
        access: Access::User,
        summary: "Add an SSH public key (installed on the machines the user deploys)",
        handler: || get(list_ssh_keys).post(add_ssh_key),
        query: None,
        request: Some(schema::<SshKeyRequest>),
        response: Some(schema::<crate::model::SshKey>),
        success: 201,
    },
    Route {
        method: Method::DELETE,
        path: "/api/v1/users/{username}/sshkeys/{id}",
        access: Access::User,
        summary: "Remove an SSH public key",
        handler: || delete(delete_ssh_key),
        query: None,
        request: None,
        response: None,
        success: 204,
    },
    Route {
        method: Method::GET,
        path: "/api/v1/tokens",
        access: Access::User,
        summary: "List API tokens (the caller's; admins see all)",
        handler: || get(list_tokens).post(create_token),
        query: None,
        request: None,
        response: Some(schema::<Vec<TokenView>>),
        success: 200,
    },
    Route {
        method: Method::POST,
        path: "/api/v1/tokens",
        access: Access::User,
        summary: "Create an API token (native, or a MAAS API key); the secret is shown once",
        handler: || get(list_tokens).post(create_token),
        query: None,
        request: Some(schema::<TokenRequest>),
        response: Some(schema::<TokenCreated>),
        success: 201,
    },
    Route {
        method: Method::DELETE,
        path: "/api/v1/tokens/{id}",
        access: Access::User,
        summary: "Revoke an API token",
        handler: || delete(revoke_token),
        query: None,
        request: None,
        response: None,
        success: 204,
    },
    Route {
        method: Method::GET,
        path: "/api/v1/zones",
        access: Access::User,
        summary: "List zones",
        handler: zones_handler,
        query: None,
        request: None,
        response: Some(schema::<Vec<NamedThing>>),
        success: 200,
    },
    Route {
        method: Method::POST,
        path: "/api/v1/zones",
        access: Access::Admin,
        summary: "Create a zone",
        handler: zones_handler,
        query: None,
        request: Some(schema::<NamedRequest>),
        response: Some(schema::<NamedThing>),
        success: 201,
    },
    Route {
        method: Method::GET,
        path: "/api/v1/zones/{name}",
        access: Access::User,
        summary: "Show a zone",
        handler: zone_handler,
        query: None,
        request: None,
        response: Some(schema::<NamedThing>),
        success: 200,
    },
    Route {
        method: Method::DELETE,
        path: "/api/v1/zones/{name}",
        access: Access::Admin,
        summary: "Delete a zone no machine uses",
        handler: zone_handler,
        query: None,
        request: None,
        response: None,
        success: 204,
    },
    Route {
        method: Method::GET,
        path: "/api/v1/pools",
        access: Access::User,
        summary: "List resource pools",
        handler: pools_handler,
        query: None,
        request: None,
        response: Some(schema::<Vec<NamedThing>>),
        success: 200,
    },
    Route {
        method: Method::POST,
        path: "/api/v1/pools",
        access: Access::Admin,
        summary: "Create a resource pool",
        handler: pools_handler,
        query: None,
        request: Some(schema::<NamedRequest>),
        response: Some(schema::<NamedThing>),
        success: 201,
    },
    Route {
        method: Method::GET,
        path: "/api/v1/pools/{name}",
        access: Access::User,
        summary: "Show a resource pool",
        handler: pool_handler,
        query: None,
        request: None,
        response: Some(schema::<NamedThing>),
        success: 200,
    },
    Route {
        method: Method::DELETE,
        path: "/api/v1/pools/{name}",
        access: Access::Admin,
        summary: "Delete a resource pool no machine uses",
        handler: pool_handler,
        query: None,
        request: None,
        response: None,
        success: 204,
    },
    Route {
        method: Method::GET,
        path: "/api/v1/tags",
        access: Access::User,
        summary: "List tags",
        handler: tags_handler,
        query: None,
        request: None,
        response: Some(schema::<Vec<NamedThing>>),
        success: 200,
    },
    Route {
        method: Method::POST,
        path: "/api/v1/tags",
        access: Access::Admin,
        summary: "Create a tag",
        handler: tags_handler,
        query: None,
        request: Some(schema::<NamedRequest>),
        response: Some(schema::<NamedThing>),
        success: 201,
    },
    Route {
        method: Method::GET,
        path: "/api/v1/tags/{name}",
        access: Access::User,
        summary: "Show a tag",
        handler: tag_handler,
        query: None,
        request: None,
        response: Some(schema::<NamedThing>),
        success: 200,
    },
    Route {
        method: Method::DELETE,
        path: "/api/v1/tags/{name}",
        access: Access::Admin,
        summary: "Delete a tag no machine carries",
        handler: tag_handler,
        query: None,
        request: None,
        response: None,
        success: 204,
    },
    // --- the image cache (handlers in images.rs) ---
    Route {
        method: Method::GET,
        path: "/api/v1/images",
        access: Access::User,
        summary: "List deployable images, with the cache's space used and free",
        handler: || get(images::list_images).post(images::upload_image),
        query: None,
        request: None,
        response: Some(schema::<ImageList>),
        success: 200,
    },
    Route {
        method: Method::POST,
        path: "/api/v1/images",
        access: Access::Admin,
        summary: "Upload an image: the body is its bytes (application/octet-stream), the query string its metadata; answers once it is verified and stored",
        handler: || get(images::list_images).post(images::upload_image),
        query: Some(schema::<ImageRequest>),
        request: None,
        response: Some(schema::<ImageView>),
        success: 201,
    },
    Route {
        method: Method::POST,
        path: "/api/v1/images/fetch",
        access: Access::Admin,
        summary: "Download an image from an http(s) URL in the background (resumes after interruptions); follow it at /api/v1/images/imports/{id}",
        handler: || post(images::fetch_image),
        query: None,
        request: Some(schema::<ImageRequest>),
        response: Some(schema::<ImportView>),
        success: 202,
    },
    Route {
        method: Method::GET,
        path: "/api/v1/images/imports",
        access: Access::User,
        summary: "Running and recently finished imports, with their progress",
        handler: || get(images::list_imports),
        query: None,
        request: None,
        response: Some(schema::<Vec<ImportView>>),
        success: 200,
    },
    Route {
        method: Method::GET,
        path: "/api/v1/images/imports/{id}",
        access: Access::User,
        summary: "One import and its progress",
        handler: || get(images::show_import),
        query: None,
        request: None,
        response: Some(schema::<ImportView>),
        success: 200,
    },
    Route {
        method: Method::POST,
        path: "/api/v1/images/sync",
        access: Access::Admin,
        summary: "Sync from a mirror's manifest (by URL, or inline): imports what is missing or changed, reports the rest",
        handler: || post(images::sync),
        query: None,
        request: Some(schema::<SyncRequest>),
        response: Some(schema::<SyncReport>),
        success: 202,
    },
    Route {
        method: Method::POST,
        path: "/api/v1/images/gc",
        access: Access::Admin,
        summary: "Remove blobs no image or boot resource references",
        handler: || post(images::gc),
        query: None,
        request: None,
        response: Some(schema::<GcReport>),
        success: 200,
    },
    Route {
        method: Method::GET,
        path: "/api/v1/images/{name}",
        access: Access::User,
        summary: "Show an image",
        handler: || {
            get(images::show_image)
                .patch(images::edit_image)
                .delete(images::delete_image)
        },
        query: None,
        request: None,
        response: Some(schema::<ImageView>),
        success: 200,
    },
    Route {
        method: Method::PATCH,
        path: "/api/v1/images/{name}",
        access: Access::Admin,
        summary: "Change an image's title, or make it (or stop it being) the default of its os/arch",
        handler: || {
            get(images::show_image)
                .patch(images::edit_image)
                .delete(images::delete_image)
        },
        query: None,
        request: Some(schema::<ImageEdit>),
        response: Some(schema::<ImageView>),
        success: 200,
    },
    Route {
        method: Method::DELETE,
        path: "/api/v1/images/{name}",
        access: Access::Admin,
        summary: "Delete an image (refused while a machine deploys it); its blob goes when nothing else uses it",
        handler: || {
            get(images::show_image)
                .patch(images::edit_image)
                .delete(images::delete_image)
        },
        query: None,
        request: None,
        response: None,
        success: 204,
    },
    Route {
        method: Method::GET,
        path: "/api/v1/boot-resources",
        access: Access::User,
        summary: "List boot resources (kernels, initrds, boot loaders) per architecture",
        handler: || get(images::list_boot).post(images::upload_boot),
        query: None,
        request: None,
        response: Some(schema::<Vec<BootView>>),
        success: 200,
    },
    Route {
        method: Method::POST,
        path: "/api/v1/boot-resources",
        access: Access::Admin,
        summary: "Upload a boot resource: the body is its bytes, the query string arch, name and kind",
        handler: || get(images::list_boot).post(images::upload_boot),
        query: Some(schema::<BootRequest>),
        request: None,
        response: Some(schema::<BootView>),
        success: 201,
    },
    Route {
        method: Method::POST,
        path: "/api/v1/boot-resources/fetch",
        access: Access::Admin,
        summary: "Download a boot resource from an http(s) URL in the background",
        handler: || post(images::fetch_boot),
        query: None,
        request: Some(schema::<BootRequest>),
        response: Some(schema::<ImportView>),
        success: 202,
    },
    Route {
        method: Method::DELETE,
        path: "/api/v1/boot-resources/{arch}/{name}",
        access: Access::Admin,
        summary: "Delete a boot resource",
        handler: || delete(images::delete_boot),
        query: None,
        request: None,
        response: None,
        success: 204,
    },
    // Machines download these without a user token (see images.rs); a per-boot token comes later.
    Route {
        method: Method::GET,
        path: "/images/{name}",
        access: Access::Anonymous,
        summary: "Download a deployable image (Range supported; ETag is its sha256)",
        handler: || get(images::download_image),
        query: None,
        request: None,
        response: None,
        success: 200,
    },
    Route {
        method: Method::GET,
        path: "/boot-resources/{arch}/{name}",
        access: Access::Anonymous,
        summary: "Download a kernel, initrd or boot loader (Range supported)",
        handler: || get(images::download_boot),
        query: None,
        request: None,
        response: None,
        success: 200,
    },
];

type P = Extension<Principal>;

async fn healthz(State(s): State<AppState>) -> ApiResult<(StatusCode, Json<Health>)> {
    use crate::store::StoreState;
    let store = s.service.store();
    let (status, detail) = match store.state() {
        StoreState::Ok => ("ok", None),
        StoreState::DiskFull { detail } => ("disk_full", Some(detail)),
        StoreState::Failed { detail } => ("store_failed", Some(detail)),
    };
    // The database answers reads, whatever the writer's state.
    let (status, detail) = match store.read() {
        Ok(_) => (status, detail),
        Err(e) => ("store_failed", Some(e.to_string())),
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

async fn metrics(State(s): State<AppState>) -> Response {
    (
        [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
        super::metrics::render(&s),
    )
        .into_response()
}

async fn login(
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

async fn openapi_document(State(s): State<AppState>) -> Json<serde_json::Value> {
    Json(super::openapi::document(&s.public_url))
}

async fn whoami(Extension(p): P) -> Json<WhoAmI> {
    Json(WhoAmI {
        role: p.role.as_str().into(),
        username: p.username,
    })
}

async fn list_machines(
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

async fn add_machine(
    State(s): State<AppState>,
    Extension(p): P,
    JsonBody(new): JsonBody<NewMachine>,
) -> ApiResult<(StatusCode, Json<MachineView>)> {
    let m = s.service.add_machine(&p, new).await?;
    Ok((StatusCode::CREATED, Json(MachineView::new(&p, Arc::new(m)))))
}

async fn allocate(
    State(s): State<AppState>,
    Extension(p): P,
    JsonBody(c): JsonBody<Constraints>,
) -> ApiResult<Json<MachineView>> {
    let comment = c.comment.clone();
    let m = s.service.allocate(&p, c, comment).await?;
    Ok(Json(MachineView::new(&p, Arc::new(m))))
}

async fn show_machine(
    State(s): State<AppState>,
    Extension(p): P,
    Path(id): Path<String>,
) -> ApiResult<Json<MachineView>> {
    Ok(Json(MachineView::new(&p, s.service.machine(&p, &id)?)))
}

async fn edit_machine(
    State(s): State<AppState>,
    Extension(p): P,
    Path(id): Path<String>,
    JsonBody(e): JsonBody<MachineEdit>,
) -> ApiResult<Json<MachineView>> {
    let m = s.service.edit_machine(&p, &id, e).await?;
    Ok(Json(MachineView::new(&p, Arc::new(m))))
}

async fn delete_machine(
    State(s): State<AppState>,
    Extension(p): P,
    Path(id): Path<String>,
) -> ApiResult<StatusCode> {
    s.service.delete_machine(&p, &id).await?;
    Ok(StatusCode::NO_CONTENT)
}

async fn act(
    State(s): State<AppState>,
    Extension(p): P,
    Path((id, action)): Path<(String, String)>,
    JsonBody(req): JsonBody<ActionRequest>,
) -> ApiResult<Json<MachineView>> {
    let m = s.service.act(&p, &id, &action, req).await?;
    Ok(Json(MachineView::new(&p, Arc::new(m))))
}

async fn power_query(
    State(s): State<AppState>,
    Extension(p): P,
    Path(id): Path<String>,
) -> ApiResult<Json<PowerAnswer>> {
    let state = s.service.power_query(&p, &id).await?;
    Ok(Json(PowerAnswer {
        state: state.as_str(),
    }))
}

async fn power_switch(
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

fn event_limit(q: &EventQuery) -> usize {
    q.limit.unwrap_or(100).clamp(1, 10_000)
}

async fn machine_events(
    State(s): State<AppState>,
    Extension(p): P,
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

async fn machine_test_results(
    State(s): State<AppState>,
    Extension(p): P,
    Path(id): Path<String>,
) -> ApiResult<Json<TestResults>> {
    Ok(Json(s.service.test_results(&p, &id)?))
}

async fn all_events(
    State(s): State<AppState>,
    Extension(p): P,
    QueryArgs(q): QueryArgs<EventQuery>,
) -> ApiResult<Json<Vec<Event>>> {
    Ok(Json(s.service.recent_events(
        &p,
        q.before,
        event_limit(&q),
    )?))
}

async fn list_leases(
    State(s): State<AppState>,
    Extension(p): P,
) -> ApiResult<Json<Vec<crate::dhcp::lease::Lease>>> {
    Ok(Json(s.service.list_leases(&p)?))
}

async fn list_users(State(s): State<AppState>, Extension(p): P) -> ApiResult<Json<Vec<UserView>>> {
    Ok(Json(s.service.list_users(&p)?))
}

async fn create_user(
    State(s): State<AppState>,
    Extension(p): P,
    JsonBody(u): JsonBody<NewUser>,
) -> ApiResult<(StatusCode, Json<UserView>)> {
    Ok((
        StatusCode::CREATED,
        Json(s.service.create_user(&p, u).await?),
    ))
}

async fn show_user(
    State(s): State<AppState>,
    Extension(p): P,
    Path(name): Path<String>,
) -> ApiResult<Json<UserView>> {
    Ok(Json(s.service.user(&p, &name)?))
}

async fn edit_user(
    State(s): State<AppState>,
    Extension(p): P,
    Path(name): Path<String>,
    JsonBody(e): JsonBody<UserEdit>,
) -> ApiResult<Json<UserView>> {
    Ok(Json(s.service.edit_user(&p, &name, e).await?))
}

async fn delete_user(
    State(s): State<AppState>,
    Extension(p): P,
    Path(name): Path<String>,
) -> ApiResult<StatusCode> {
    s.service.delete_user(&p, &name).await?;
    Ok(StatusCode::NO_CONTENT)
}

async fn list_ssh_keys(
    State(s): State<AppState>,
    Extension(p): P,
    Path(name): Path<String>,
) -> ApiResult<Json<Vec<crate::model::SshKey>>> {
    Ok(Json(s.service.user(&p, &name)?.ssh_keys))
}

async fn add_ssh_key(
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

async fn delete_ssh_key(
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

async fn list_tokens(
    State(s): State<AppState>,
    Extension(p): P,
) -> ApiResult<Json<Vec<TokenView>>> {
    Ok(Json(s.service.list_tokens(&p)?))
}

async fn create_token(
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

async fn revoke_token(
    State(s): State<AppState>,
    Extension(p): P,
    Path(id): Path<String>,
) -> ApiResult<StatusCode> {
    s.service.revoke_token(&p, &id).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// The handlers of a catalog's collection (list, create) and of one entry (show, delete): one
/// shape for zones, pools and tags.
fn named_collection(kind: CatalogKind) -> MethodRouter<AppState> {
    get(move |s: State<AppState>| list_named(s, kind)).post(
        move |s: State<AppState>, p: Extension<Principal>, b: JsonBody<NamedRequest>| {
            create_named(s, p, b, kind)
        },
    )
}

fn named_item(kind: CatalogKind) -> MethodRouter<AppState> {
    get(move |s: State<AppState>, n: Path<String>| show_named(s, n, kind)).delete(
        move |s: State<AppState>, p: Extension<Principal>, n: Path<String>| {
            delete_named(s, p, n, kind)
        },
    )
}

fn zones_handler() -> MethodRouter<AppState> {
    named_collection(CatalogKind::Zone)
}

fn zone_handler() -> MethodRouter<AppState> {
    named_item(CatalogKind::Zone)
}

fn pools_handler() -> MethodRouter<AppState> {
    named_collection(CatalogKind::Pool)
}

fn pool_handler() -> MethodRouter<AppState> {
    named_item(CatalogKind::Pool)
}

fn tags_handler() -> MethodRouter<AppState> {
    named_collection(CatalogKind::Tag)
}

fn tag_handler() -> MethodRouter<AppState> {
    named_item(CatalogKind::Tag)
}

async fn list_named(
    State(s): State<AppState>,
    kind: CatalogKind,
) -> ApiResult<Json<Vec<NamedThing>>> {
    Ok(Json(s.service.list_catalog(kind)?))
}

async fn show_named(
    State(s): State<AppState>,
    Path(name): Path<String>,
    kind: CatalogKind,
) -> ApiResult<Json<NamedThing>> {
    Ok(Json(s.service.catalog_entry(kind, &name)?))
}

async fn create_named(
    State(s): State<AppState>,
    Extension(p): P,
    JsonBody(req): JsonBody<NamedRequest>,
    kind: CatalogKind,
) -> ApiResult<(StatusCode, Json<NamedThing>)> {
    Ok((
        StatusCode::CREATED,
        Json(
            s.service
                .create_catalog(&p, kind, &req.name, &req.description)
                .await?,
        ),
    ))
}

async fn delete_named(
    State(s): State<AppState>,
    Extension(p): P,
    Path(name): Path<String>,
    kind: CatalogKind,
) -> ApiResult<StatusCode> {
    s.service.delete_catalog(&p, kind, &name).await?;
    Ok(StatusCode::NO_CONTENT)
}
