//! The control page: the appliance's web UI, a third face of the service beside the native API
//! and the MAAS face. Server-rendered HTML from askama templates (templates/page/, checked when
//! rackbox compiles, every value escaped), enhanced by one vendored htmx file and page.js, live by
//! one Server-Sent Events stream per tab. Every action is a plain `<form method=post>`, so the page
//! works with JavaScript off; handlers call the same `Service` methods as the API.
//!
//! Who may open what is declared once, in [`ROUTES`] (the same [`Access`] levels as
//! `api::ROUTES`), and enforced by one middleware ([`guard`]): a cookie session resolves to the
//! same `Principal` as a token; every POST must come from this origin (`Sec-Fetch-Site`/`Origin`)
//! and carry the session's CSRF token; every answer carries a strict Content-Security-Policy.

mod account;
mod admin;
mod assets;
mod images;
mod login;
mod machines;
mod network;
mod overview;
mod setup;
mod stream;
mod view;

use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::{Request, State};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::MethodRouter;

use super::{Access, AppState};
use crate::service::{Principal, Session};

/// The session cookie's name.
pub const SESSION_COOKIE: &str = "rackbox_session";
/// The form field (and `X-CSRF-Token` header, for htmx) that carries the session's CSRF token.
pub const CSRF_FIELD: &str = "csrf";
/// The largest form a page posts (deploy user data is the big one).
const FORM_LIMIT: usize = 1024 * 1024;

/// Routes whose body is a file (an image upload, gigabytes): the guard does not buffer it to
/// find the CSRF token, which comes in the form's action URL (`?csrf=`) or the header instead.
const FILE_ROUTES: &[&str] = &["/images/upload"];

/// The page's Content-Security-Policy: only this origin's files, no inline script or style, no
/// framing, forms only to this origin.
const CSP: &str = "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; \
    connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'; object-src 'none'";

/// A route of the page: one method on one path, who may open it, and its handler.
pub struct PageRoute {
    pub method: Method,
    pub path: &'static str,
    pub access: Access,
    pub handler: fn() -> MethodRouter<AppState>,
}

macro_rules! page {
    ($method:ident $path:literal, $access:ident, $handler:expr) => {
        PageRoute {
            method: Method::$method,
            path: $path,
            access: Access::$access,
            handler: || axum::routing::on(axum::routing::MethodFilter::$method, $handler),
        }
    };
}

/// Every route of the control page. The router and [`guard`] read this one list.
pub const ROUTES: &[PageRoute] = &[
    page!(GET "/", User, overview::show),
    page!(GET "/login", Anonymous, login::form),
    page!(POST "/login", Anonymous, login::submit),
    page!(POST "/logout", User, login::logout),
    page!(GET "/machines", User, machines::list),
    page!(POST "/machines/bulk", User, machines::bulk),
    page!(GET "/machines/{system_id}", User, machines::detail),
    page!(GET "/machines/{system_id}/confirm/{action}", User, machines::confirm),
    page!(POST "/machines/{system_id}/act/{action}", User, machines::act),
    page!(GET "/images", User, images::show),
    page!(POST "/images/fetch", Admin, images::fetch),
    page!(POST "/images/sync", Admin, images::sync),
    page!(POST "/images/upload", Admin, images::upload),
    page!(POST "/images/{name}/delete", Admin, images::delete),
    page!(GET "/network", Admin, network::show),
    page!(GET "/account", User, account::show),
    page!(POST "/account/ssh-keys", User, account::add_key),
    page!(POST "/account/ssh-keys/{id}/delete", User, account::delete_key),
    page!(POST "/account/tokens", User, account::make_token),
    page!(POST "/account/tokens/{id}/revoke", User, account::revoke_token),
    page!(GET "/admin", Admin, admin::show),
    page!(POST "/admin/users", Admin, admin::add_user),
    page!(POST "/admin/users/{username}/role", Admin, admin::set_role),
    page!(POST "/admin/users/{username}/password", Admin, admin::set_password),
    page!(POST "/admin/users/{username}/delete", Admin, admin::delete_user),
    page!(POST "/admin/{catalog}", Admin, admin::add_catalog),
    page!(POST "/admin/{catalog}/{name}/delete", Admin, admin::delete_catalog),
    page!(GET "/setup", Admin, setup::show),
    page!(POST "/setup/probe", Admin, setup::probe),
    page!(POST "/setup/boot", Admin, setup::choose_boot),
    page!(POST "/setup/bmc", Admin, setup::add_bmc),
    page!(POST "/setup/token", Admin, setup::make_token),
    page!(POST "/setup/finish", Admin, setup::finish),
    page!(GET "/ui/stream", User, stream::stream),
    page!(GET "/ui/assets/{file}", Anonymous, assets::serve),
];

/// The page's router: every row of [`ROUTES`], behind [`guard`].
pub fn router() -> Router<AppState> {
    let mut router = Router::new();
    for route in ROUTES {
        router = router.route(route.path, (route.handler)());
    }
    router
}

/// Adds the guard as a route layer (it needs the matched path).
pub fn guarded(router: Router<AppState>, state: AppState) -> Router<AppState> {
    router.route_layer(middleware::from_fn_with_state(state, guard))
}

/// Who is looking at a page: the session's principal and the token its forms carry.
#[derive(Clone, Debug)]
pub struct Viewer {
    pub session: Session,
    /// The newest event sequence number when the request came: a page rendered now shows the
    /// machines as of it, and its live stream catches up from there.
    pub event_seq: u64,
}

impl Viewer {
    pub fn principal(&self) -> &Principal {
        &self.session.principal
    }
}

/// Finds the route in [`ROUTES`], resolves the session cookie, checks the access level and, on
/// every POST, that it comes from this origin with the session's CSRF token. A GET without a
/// session is sent to the login form; a refused POST is a 403 page, never a redirect that could
/// lose the form.
async fn guard(State(state): State<AppState>, req: Request, next: Next) -> Response {
    let (path, method) = super::route_key(&req);
    let Some(access) = ROUTES
        .iter()
        .find(|r| r.path == path && r.method == method)
        .map(|r| r.access)
    else {
        return with_security_headers(next.run(req).await);
    };
    if method == Method::POST
        && let Err(why) = same_origin(req.headers())
    {
        return with_security_headers(view::refusal(StatusCode::FORBIDDEN, &why));
    }
    let session = session_cookie(req.headers()).and_then(|c| state.service.session(c).ok());
    let req = match (access, session) {
        (Access::Anonymous, _) => req,
        (_, None) if method == Method::GET => {
            let target = req
                .uri()
                .path_and_query()
                .map(|p| p.as_str().to_string())
                .unwrap_or_else(|| "/".into());
            let location = format!("/login?next={}", view::url_encode(&target));
            return with_security_headers(Redirect::to(&location).into_response());
        }
        (_, None) => {
            return with_security_headers(view::refusal(
                StatusCode::UNAUTHORIZED,
                "you are not logged in, or your session has ended: log in again",
            ));
        }
        (access, Some(session)) => {
            if access == Access::Admin && !session.principal.is_admin() {
                return with_security_headers(view::refusal(
                    StatusCode::FORBIDDEN,
                    "this page is for admins",
                ));
            }
            let req = if method == Method::POST {
                let file = FILE_ROUTES.contains(&path.as_str());
                match checked_csrf(req, &session.csrf_token, file).await {
                    Ok(req) => req,
                    Err(response) => return with_security_headers(response),
                }
            } else {
                req
            };
            let mut req = req;
            let event_seq = state.service.last_event_seq().unwrap_or(0);
            req.extensions_mut().insert(Viewer { session, event_seq });
            req
        }
    };
    with_security_headers(next.run(req).await)
}

/// The session cookie's value, if the request has one.
fn session_cookie(headers: &HeaderMap) -> Option<&str> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(name, _)| *name == SESSION_COOKIE)
        .map(|(_, value)| value)
}

/// A POST must come from a page of this origin: browsers say so in `Sec-Fetch-Site`, older ones
/// by `Origin` (compared with `Host`). A request with neither is a tool, not a browser tricked by
/// another site; it still needs the CSRF token.
fn same_origin(headers: &HeaderMap) -> Result<(), String> {
    let header = |name: &str| headers.get(name).and_then(|v| v.to_str().ok());
    if let Some(site) = header("sec-fetch-site") {
        return match site {
            "same-origin" | "none" => Ok(()),
            other => Err(format!(
                "the form was sent from another site (Sec-Fetch-Site: {other}); use the page itself"
            )),
        };
    }
    match (header("origin"), header("host")) {
        (None, _) => Ok(()),
        (Some(origin), Some(host))
            if origin
                .split_once("://")
                .is_some_and(|(_, authority)| authority == host) =>
        {
            Ok(())
        }
        (Some(origin), _) => Err(format!(
            "the form was sent from another origin ({origin}); use the page itself"
        )),
    }
}

/// Checks the CSRF token of a POST: the `X-CSRF-Token` header (htmx sends it) or the form's
/// `csrf` field. The form is read here (bounded) and handed on whole.
async fn checked_csrf(req: Request, expected: &str, file: bool) -> Result<Request, Response> {
    let refused = || {
        view::refusal(
            StatusCode::FORBIDDEN,
            "the form has no valid CSRF token (it is older than your session): reload the page and try again",
        )
    };
    let matches =
        |given: &str| crate::service::constant_time_eq(given.as_bytes(), expected.as_bytes());
    if let Some(given) = req
        .headers()
        .get("x-csrf-token")
        .and_then(|v| v.to_str().ok())
    {
        return if matches(given) {
            Ok(req)
        } else {
            Err(refused())
        };
    }
    if file {
        let given = req
            .uri()
            .query()
            .and_then(|q| form_urlencoded::parse(q.as_bytes()).find(|(k, _)| k == CSRF_FIELD))
            .map(|(_, v)| v.into_owned());
        return match given {
            Some(given) if matches(&given) => Ok(req),
            _ => Err(refused()),
        };
    }
    let (parts, body) = req.into_parts();
    let bytes: Bytes = match axum::body::to_bytes(body, FORM_LIMIT).await {
        Ok(b) => b,
        Err(_) => {
            return Err(view::refusal(
                StatusCode::PAYLOAD_TOO_LARGE,
                "the form is larger than 1 MiB",
            ));
        }
    };
    let found = form_urlencoded::parse(&bytes).any(|(k, v)| k == CSRF_FIELD && matches(&v));
    if !found {
        return Err(refused());
    }
    Ok(Request::from_parts(parts, Body::from(bytes)))
}

/// The headers every page answer carries.
fn with_security_headers(mut response: Response) -> Response {
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(CSP),
    );
    headers.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    headers.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("same-origin"),
    );
    headers.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    if !headers.contains_key(header::CACHE_CONTROL) {
        headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    }
    response
}

impl IntoResponse for view::Refusal {
    fn into_response(self) -> Response {
        view::refusal(self.status, &self.message)
    }
}
