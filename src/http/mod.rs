//! The HTTP room: the native API under /api/v1 (and, as they arrive, boot files, agent endpoints,
//! the control page) and the MAAS 2.0 face under /MAAS/api/2.0 (`maas`). Handlers are thin: they parse, call the service, and
//! render. Which role a route needs is declared once, in the route table (`api::ROUTES`), and
//! enforced by one middleware; the same table generates the OpenAPI document.

pub mod api;
pub mod boot;
pub mod error;
pub mod extract;
pub mod images;
pub mod maas;
pub mod metrics;
pub mod openapi;
pub mod page;
pub mod serve;

use std::sync::Arc;

use axum::Router;
use axum::extract::{MatchedPath, Request, State};
use axum::http::{HeaderMap, Method};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};

use crate::service::{Principal, Service};
use error::ApiError;

/// Everything a handler may reach.
#[derive(Clone)]
pub struct AppState {
    pub service: Arc<Service>,
    pub metrics: Arc<metrics::Metrics>,
    /// The image cache: image and boot-file API, downloads, space in /metrics.
    pub images: Arc<crate::images::ImageCache>,
    /// Base URL of this appliance as clients reach it.
    pub public_url: Arc<str>,
    /// Counters of the boot network's DHCP servers, shown on /metrics.
    pub dhcp: Arc<crate::dhcp::DhcpStats>,
    /// The boot network's configuration (the MAAS face lists its subnets).
    pub boot: Arc<crate::config::BootConfig>,
    /// Counters of the TFTP server (zero while it is off), shown on /metrics.
    pub tftp: Arc<crate::tftp::TftpStats>,
    /// Whether the config file or the first-boot setup gave the boot network, and why the
    /// setup's could not start.
    pub boot_state: Arc<BootNetworkState>,
    /// Restarts the daemon in-process (the setup, after it saved a new boot network).
    pub restarter: Arc<Restarter>,
    /// Turns true when the daemon begins to stop: long-lived answers (live streams) end.
    pub closing: Arc<tokio::sync::watch::Sender<bool>>,
}

/// The boot network as the daemon runs it, for the setup and network pages: whether the config
/// file names it, and why the setup's choice could not start (the daemon keeps serving then,
/// so the page can change it).
#[derive(Clone, Debug, Default)]
pub struct BootNetworkState {
    /// The config file names the boot interfaces; the setup does not ask for them.
    pub from_file: bool,
    /// The setup's boot network failed to start, and why.
    pub failed: Option<String>,
}

/// Restarts the daemon in-process when asked (the first-boot setup, after it saved a new boot
/// network): the HTTP server drains as on SIGTERM, every room stops, and `daemon::serve` returns
/// `Stopped::Restart` for `main` to serve again.
#[derive(Debug, Default)]
pub struct Restarter {
    asked: std::sync::atomic::AtomicBool,
    /// Woken by [`Restarter::restart`]; the daemon's HTTP shutdown waits on it.
    pub wake: tokio::sync::Notify,
}

impl Restarter {
    /// Asks for a restart once the requests in flight are answered.
    pub fn restart(&self) {
        self.asked.store(true, std::sync::atomic::Ordering::SeqCst);
        self.wake.notify_one();
    }

    /// Whether a restart was asked for (the daemon reads it once the HTTP server stopped).
    pub fn asked(&self) -> bool {
        self.asked.load(std::sync::atomic::Ordering::SeqCst)
    }
}

/// Who may call a route.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Access {
    /// No token needed (/healthz, login).
    Anonymous,
    /// Any valid token; the service then checks ownership.
    User,
    /// An admin's token.
    Admin,
}

/// The whole HTTP surface.
pub fn router(state: AppState) -> Router {
    // The MAAS face authenticates on its own (OAuth), so it joins after the native middleware.
    api::router()
        .route_layer(middleware::from_fn_with_state(state.clone(), authorize))
        .merge(maas::router())
        .merge(boot::router())
        .merge(page::guarded(page::router(), state.clone()))
        .layer(middleware::from_fn_with_state(
            state.clone(),
            metrics::count_requests,
        ))
        .with_state(state)
}

/// The route a request matched, as its table names it: the matched path, and the method, HEAD
/// counted as GET (axum answers HEAD with the GET handler, so it has GET's access).
fn route_key(req: &Request) -> (String, Method) {
    let path = req
        .extensions()
        .get::<MatchedPath>()
        .map(|p| p.as_str().to_string())
        .unwrap_or_default();
    let method = if req.method() == Method::HEAD {
        Method::GET
    } else {
        req.method().clone()
    };
    (path, method)
}

/// Finds the matched route in the table and checks the caller's token against its access level.
/// The principal is handed to the handler as a request extension.
async fn authorize(State(state): State<AppState>, mut req: Request, next: Next) -> Response {
    let (path, method) = route_key(&req);
    let Some(access) = api::ROUTES
        .iter()
        .find(|r| r.path == path && r.method == method)
        .map(|r| r.access)
    else {
        // A method the path does not have: the method router answers 405 with Allow, and no
        // handler runs, so there is nothing to authorize (a 401 would say the method exists).
        return next.run(req).await;
    };
    if access == Access::Anonymous {
        return next.run(req).await;
    }
    let principal = match principal_from_headers(&state, req.headers()) {
        Ok(p) => p,
        Err(e) => return e.into_response(),
    };
    if access == Access::Admin && !principal.is_admin() {
        return ApiError::forbidden(format!(
            "{} {} needs an admin; {} is a user",
            req.method(),
            path,
            principal.username
        ))
        .into_response();
    }
    req.extensions_mut().insert(principal);
    next.run(req).await
}

/// Reads `Authorization: Bearer <token>`.
fn principal_from_headers(state: &AppState, headers: &HeaderMap) -> Result<Principal, ApiError> {
    let value = headers
        .get(axum::http::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .ok_or_else(|| {
            ApiError::unauthorized("an API token is required (Authorization: Bearer <token>)")
        })?;
    let token = value
        .strip_prefix("Bearer ")
        .or_else(|| value.strip_prefix("bearer "))
        .ok_or_else(|| {
            ApiError::unauthorized("the Authorization header must be 'Bearer <token>'")
        })?;
    Ok(state.service.authenticate_bearer(token.trim())?)
}
