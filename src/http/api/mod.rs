//! The native REST API, /api/v1: the route table, whose every row carries its own handler, and
//! the handlers, one module per resource (the image cache's are in `http::images`).

mod appliance;
pub mod catalogs;
mod events;
mod machines;
mod session;
mod tokens;
mod users;

use axum::Json;
use axum::http::Method;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::MethodRouter;

use super::openapi::{self, schema};
use super::{Access, AppState, images};
use crate::images::{
    BootRequest, BootView, GcReport, ImageEdit, ImageList, ImageRequest, ImageView, ImportView,
    SyncReport, SyncRequest,
};
use crate::model::api::{LoginRequest, NamedRequest, SshKeyRequest, TokenRequest};
use crate::model::catalog::NamedThing;
use crate::model::{Constraints, Event, TestResults};
use crate::service::{
    ActionRequest, MachineEdit, MachineFilter, NewMachine, NewUser, TokenCreated, TokenView,
    UserEdit, UserView,
};
use appliance::Health;
use catalogs::{Pools, Tags, Zones};
use events::EventQuery;
pub use machines::{MachineDetail, MachinePage, MachineView, PowerAnswer};
use session::WhoAmI;

/// A route of the table: one method on one path, who may call it, what the document says of it,
/// and the handler that answers it.
pub struct Route {
    pub method: Method,
    pub path: &'static str,
    pub access: Access,
    pub summary: &'static str,
    /// The axum method router of this method alone, running this row's handler; the router
    /// adds every row, so rows of one path merge.
    pub handler: fn() -> MethodRouter<AppState>,
    pub query: Option<openapi::SchemaFn>,
    pub request: Option<openapi::SchemaFn>,
    pub response: Option<openapi::SchemaFn>,
    /// The status a successful call answers.
    pub success: u16,
}

/// One row of [`ROUTES`]: `route!(METHOD "path", Access, success, handler, "summary",
/// query: T, request: T, response: T)`, the three schemas each optional, in that order. The
/// handler is mounted for the row's method only.
macro_rules! route {
    (@schema) => {
        None
    };
    (@schema $t:ty) => {
        Some(schema::<$t>)
    };
    ($method:ident $path:literal, $access:ident, $success:literal, $handler:expr, $summary:literal
        $(, query: $query:ty)? $(, request: $request:ty)? $(, response: $response:ty)? $(,)?) => {
        Route {
            method: Method::$method,
            path: $path,
            access: Access::$access,
            summary: $summary,
            handler: || axum::routing::on(axum::routing::MethodFilter::$method, $handler),
            query: route!(@schema $($query)?),
            request: route!(@schema $($request)?),
            response: route!(@schema $($response)?),
            success: $success,
        }
    };
}

/// The route table: every route of the native API. The router, the authorization middleware,
/// the OpenAPI document and the auth-matrix test all read this one list.
pub const ROUTES: &[Route] = &[
    route!(GET "/healthz", Anonymous, 200, appliance::healthz,
        "Liveness: the daemon answers and its store is readable", response: Health),
    route!(GET "/metrics", User, 200, appliance::metrics, "Metrics in Prometheus text format"),
    route!(POST "/api/v1/auth/login", Anonymous, 200, session::login,
        "Log in with a username and password; answers a new API token",
        request: LoginRequest, response: TokenCreated),
    route!(GET "/api/v1/openapi.json", User, 200, appliance::openapi_document,
        "This API's OpenAPI document, generated from the route table"),
    route!(GET "/api/v1/whoami", User, 200, session::whoami,
        "The caller's username and role", response: WhoAmI),
    route!(GET "/api/v1/machines", User, 200, machines::list,
        "List machines (filters, paging by cursor)", query: MachineFilter, response: MachinePage),
    route!(POST "/api/v1/machines", Admin, 201, machines::add,
        "Add a machine (commissions at once when it has a power driver)",
        request: NewMachine, response: MachineView),
    route!(POST "/api/v1/machines/allocate", User, 200, machines::allocate,
        "Allocate the smallest Ready machine that satisfies the constraints",
        request: Constraints, response: MachineView),
    route!(GET "/api/v1/machines/{system_id}", User, 200, machines::show,
        "Show a machine, with its hardware inventory", response: MachineDetail),
    route!(PATCH "/api/v1/machines/{system_id}", User, 200, machines::edit,
        "Edit a machine (admins; owners may change owner_data)",
        request: MachineEdit, response: MachineView),
    route!(DELETE "/api/v1/machines/{system_id}", Admin, 204, machines::delete,
        "Delete a machine and its history"),
    route!(PUT "/api/v1/machines/{system_id}/interfaces/{name}/link", User, 200, machines::set_link,
        "Set how an interface comes up in the deployed OS: auto (an address picked at deploy from the subnet, outside the DHCP pool), static (ip), dhcp or link_up (admins, or the owner of an allocated machine)",
        request: crate::model::network::Link, response: MachineView),
    route!(DELETE "/api/v1/machines/{system_id}/interfaces/{name}/link", User, 200, machines::clear_link,
        "Leave an interface to the deployed OS again (no network-config entry)",
        response: MachineView),
    route!(POST "/api/v1/machines/{system_id}/actions/{action}", User, 200, machines::act,
        "Apply an action: commission, test, deploy, release, abort, mark_broken, mark_fixed, override_failed_testing, rescue_mode, exit_rescue_mode, lock, unlock",
        request: ActionRequest, response: MachineView),
    route!(GET "/api/v1/machines/{system_id}/power", User, 200, machines::power_query,
        "Ask the machine's BMC for its power state now (recorded on the machine)",
        response: PowerAnswer),
    route!(POST "/api/v1/machines/{system_id}/power/{op}", User, 200, machines::power_switch,
        "Switch the machine's power through its BMC: on, off, soft_off, cycle (owners and admins)",
        response: MachineView),
    route!(GET "/api/v1/machines/{system_id}/events", User, 200, events::of_machine,
        "A machine's history, newest first", query: EventQuery, response: Vec<Event>),
    route!(GET "/api/v1/machines/{system_id}/test-results", User, 200, machines::test_results,
        "The machine's latest hardware test run: each test's status, times, summary, and for disk tests the disk and read throughput (no results before the first run)",
        response: TestResults),
    route!(GET "/api/v1/machines/{system_id}/boot-timeline", User, 200, machines::boot_timeline,
        "What the appliance saw of the machine's current and previous network boot since it started (DHCP, TFTP, the iPXE script, downloads with sizes and times, the agent's reports, power, the deployed OS reporting in); kept in memory only",
        response: crate::model::timeline::MachineTimeline),
    route!(GET "/api/v1/events", Admin, 200, events::all,
        "Every machine's history, newest first", query: EventQuery, response: Vec<Event>),
    route!(GET "/api/v1/leases", Admin, 200, appliance::leases,
        "DHCP leases of the boot network, by address", response: Vec<crate::model::lease::Lease>),
    route!(POST "/api/v1/network/dhcp-probe", Admin, 200, appliance::dhcp_probe,
        "Broadcast a DHCPDISCOVER on one of the appliance's interfaces and list the DHCP servers that offer (before managed DHCP goes on there)",
        request: crate::dhcp::probe::ProbeRequest, response: crate::dhcp::probe::ProbeReport),
    route!(GET "/api/v1/users", Admin, 200, users::list, "List users", response: Vec<UserView>),
    route!(POST "/api/v1/users", Admin, 201, users::create,
        "Create a user", request: NewUser, response: UserView),
    route!(GET "/api/v1/users/{username}", User, 200, users::show,
        "Show a user (admins, or the user themselves)", response: UserView),
    route!(PATCH "/api/v1/users/{username}", User, 200, users::edit,
        "Change a user's password, email or role (role: admins only)",
        request: UserEdit, response: UserView),
    route!(DELETE "/api/v1/users/{username}", Admin, 204, users::delete,
        "Delete a user and their tokens"),
    route!(GET "/api/v1/users/{username}/sshkeys", User, 200, users::ssh_keys,
        "A user's SSH public keys", response: Vec<crate::model::SshKey>),
    route!(POST "/api/v1/users/{username}/sshkeys", User, 201, users::add_ssh_key,
        "Add an SSH public key (installed on the machines the user deploys)",
        request: SshKeyRequest, response: crate::model::SshKey),
    route!(DELETE "/api/v1/users/{username}/sshkeys/{id}", User, 204, users::delete_ssh_key,
        "Remove an SSH public key"),
    route!(GET "/api/v1/tokens", User, 200, tokens::list,
        "List API tokens (the caller's; admins see all)", response: Vec<TokenView>),
    route!(POST "/api/v1/tokens", User, 201, tokens::create,
        "Create an API token (native, or a MAAS API key); the secret is shown once",
        request: TokenRequest, response: TokenCreated),
    route!(DELETE "/api/v1/tokens/{id}", User, 204, tokens::revoke, "Revoke an API token"),
    route!(GET "/api/v1/zones", User, 200, catalogs::list::<Zones>,
        "List zones", response: Vec<NamedThing>),
    route!(POST "/api/v1/zones", Admin, 201, catalogs::create::<Zones>,
        "Create a zone", request: NamedRequest, response: NamedThing),
    route!(GET "/api/v1/zones/{name}", User, 200, catalogs::show::<Zones>,
        "Show a zone", response: NamedThing),
    route!(DELETE "/api/v1/zones/{name}", Admin, 204, catalogs::delete::<Zones>,
        "Delete a zone no machine uses"),
    route!(GET "/api/v1/pools", User, 200, catalogs::list::<Pools>,
        "List resource pools", response: Vec<NamedThing>),
    route!(POST "/api/v1/pools", Admin, 201, catalogs::create::<Pools>,
        "Create a resource pool", request: NamedRequest, response: NamedThing),
    route!(GET "/api/v1/pools/{name}", User, 200, catalogs::show::<Pools>,
        "Show a resource pool", response: NamedThing),
    route!(DELETE "/api/v1/pools/{name}", Admin, 204, catalogs::delete::<Pools>,
        "Delete a resource pool no machine uses"),
    route!(GET "/api/v1/tags", User, 200, catalogs::list::<Tags>,
        "List tags", response: Vec<NamedThing>),
    route!(POST "/api/v1/tags", Admin, 201, catalogs::create::<Tags>,
        "Create a tag", request: NamedRequest, response: NamedThing),
    route!(GET "/api/v1/tags/{name}", User, 200, catalogs::show::<Tags>,
        "Show a tag", response: NamedThing),
    route!(DELETE "/api/v1/tags/{name}", Admin, 204, catalogs::delete::<Tags>,
        "Delete a tag no machine carries"),
    // --- the image cache (handlers in images.rs) ---
    route!(GET "/api/v1/images", User, 200, images::list_images,
        "List deployable images, with the cache's space used and free", response: ImageList),
    route!(POST "/api/v1/images", Admin, 201, images::upload_image,
        "Upload an image: the body is its bytes (application/octet-stream), the query string its metadata; answers once it is verified and stored",
        query: ImageRequest, response: ImageView),
    route!(POST "/api/v1/images/fetch", Admin, 202, images::fetch_image,
        "Download an image from an http(s) URL in the background (resumes after interruptions); follow it at /api/v1/images/imports/{id}",
        request: ImageRequest, response: ImportView),
    route!(GET "/api/v1/images/imports", User, 200, images::list_imports,
        "Running and recently finished imports, with their progress", response: Vec<ImportView>),
    route!(GET "/api/v1/images/imports/{id}", User, 200, images::show_import,
        "One import and its progress", response: ImportView),
    route!(POST "/api/v1/images/sync", Admin, 202, images::sync,
        "Sync from a mirror's manifest (by URL, or inline): imports what is missing or changed, reports the rest",
        request: SyncRequest, response: SyncReport),
    route!(POST "/api/v1/images/gc", Admin, 200, images::gc,
        "Remove blobs no image or boot resource references", response: GcReport),
    route!(GET "/api/v1/images/{name}", User, 200, images::show_image,
        "Show an image", response: ImageView),
    route!(PATCH "/api/v1/images/{name}", Admin, 200, images::edit_image,
        "Change an image's title, or make it (or stop it being) the default of its os/arch",
        request: ImageEdit, response: ImageView),
    route!(DELETE "/api/v1/images/{name}", Admin, 204, images::delete_image,
        "Delete an image (refused while a machine deploys it); its blob goes when nothing else uses it"),
    route!(GET "/api/v1/boot-resources", User, 200, images::list_boot,
        "List boot resources (kernels, initrds, boot loaders) per architecture",
        response: Vec<BootView>),
    route!(POST "/api/v1/boot-resources", Admin, 201, images::upload_boot,
        "Upload a boot resource: the body is its bytes, the query string arch, name and kind",
        query: BootRequest, response: BootView),
    route!(POST "/api/v1/boot-resources/fetch", Admin, 202, images::fetch_boot,
        "Download a boot resource from an http(s) URL in the background",
        request: BootRequest, response: ImportView),
    route!(DELETE "/api/v1/boot-resources/{arch}/{name}", Admin, 204, images::delete_boot,
        "Delete a boot resource"),
    // Machines download these without a user token (see images.rs); a per-boot token comes later.
    route!(GET "/images/{name}", Anonymous, 200, images::download_image,
        "Download a deployable image (Range supported; ETag is its sha256)"),
    route!(GET "/boot-resources/{arch}/{name}", Anonymous, 200, images::download_boot,
        "Download a kernel, initrd or boot loader (Range supported)"),
];

/// A 201 answer: what the call made, as its JSON body.
pub(crate) struct Created<T>(pub T);

impl<T: serde::Serialize> IntoResponse for Created<T> {
    fn into_response(self) -> Response {
        (StatusCode::CREATED, Json(self.0)).into_response()
    }
}

/// The native API's routes, each row's handler on its own path and method (rows of one path
/// merge; two rows of one method and path panic here, at start-up).
pub fn router() -> axum::Router<AppState> {
    ROUTES.iter().fold(axum::Router::new(), |router, route| {
        router.route(route.path, (route.handler)())
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every row is mounted: building the router would panic on a method and path given twice,
    /// and each row is one method and path.
    #[test]
    fn every_row_is_one_method_on_one_path() {
        for (i, a) in ROUTES.iter().enumerate() {
            assert!(
                !ROUTES[..i]
                    .iter()
                    .any(|b| b.method == a.method && b.path == a.path),
                "{} {} is in the table twice",
                a.method,
                a.path
            );
        }
        let _ = router();
    }
}
