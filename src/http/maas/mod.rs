//! The MAAS REST API 2.0 face, under /MAAS/api/2.0/: what Juju (gomaasapi), Terraform and
//! python-libmaas speak. A thin translation: every handler parses MAAS's parameters, calls the
//! same [`Service`](crate::service::Service) the native API calls, and renders MAAS's JSON. No
//! life-cycle or allocation rule lives here.
//!
//! MAAS routes by path *and* by the `op` parameter (`POST machines/?op=allocate`), so the face
//! keeps its own route table ([`RESOURCES`]): one entry per MAAS handler, each with its actions.
//! One axum route catches everything under the prefix and [`dispatch`] finds the action; the same
//! table generates `describe/`, which python-libmaas binds its classes from.

mod describe;
mod devices;
mod error;
mod files;
mod machines;
mod nodes;
pub mod oauth;
pub mod params;
pub mod render;
mod resources;
mod settings;
mod table;

use super::{Access, AppState};
use crate::service::Principal;
use axum::Router;
use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{HeaderMap, Method, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{any, post};
pub use error::{MaasError, MaasResult};
use params::Params;
pub(crate) use table::{Action, RESOURCES, Resource};

/// Where the face lives.
pub const PREFIX: &str = "/MAAS/api/2.0/";

/// The largest request body the face reads from an authenticated caller (file uploads are the
/// big ones: Juju's tools).
const MAX_BODY: usize = 64 * 1024 * 1024;

/// The largest request body the face reads from a caller without valid credentials (parameters
/// of anonymous actions, a login's form).
pub(crate) const MAX_ANONYMOUS_BODY: usize = 64 * 1024;

/// What one action gets: the state, who asks, the parameters and the path's placeholders.
pub struct Ctx {
    pub state: AppState,
    /// None for anonymous actions called without credentials.
    pub principal: Option<Principal>,
    pub params: Params,
    /// Placeholder values of the path, e.g. ("system_id", "4y3h7n").
    pub args: Vec<(String, String)>,
    /// `scheme://host` as the client reached us, for absolute URIs.
    pub origin: String,
}

impl Ctx {
    /// A path placeholder's value ("" if the route has none of that name: a table bug, which
    /// the describe test would show).
    pub fn arg(&self, name: &str) -> &str {
        self.args
            .iter()
            .find(|(n, _)| *n == name)
            .map(|(_, v)| v.as_str())
            .unwrap_or("")
    }

    /// The authenticated caller (dispatch guarantees one for non-anonymous actions).
    pub fn principal(&self) -> MaasResult<&Principal> {
        self.principal
            .as_ref()
            .ok_or_else(|| MaasError::unauthorized("Authorization Error: credentials are required"))
    }
}

/// What an action answers.
pub type Reply = MaasResult<Response>;

/// The face's routes, to merge into the appliance's router.
pub fn router() -> Router<AppState> {
    Router::new()
        .route("/MAAS/api/2.0/{*rest}", any(dispatch))
        .route("/MAAS/api/2.0/", any(dispatch))
        .route("/MAAS/api/2.0", any(dispatch))
        .route(
            "/MAAS/accounts/authenticate/",
            post(resources::authenticate),
        )
        .route("/MAAS/accounts/authenticate", post(resources::authenticate))
}

/// Matches a request path (under the prefix, with trailing slash) against a table path.
fn match_path(template: &str, path: &str) -> Option<Vec<(String, String)>> {
    let t: Vec<&str> = template.trim_end_matches('/').split('/').collect();
    let p: Vec<&str> = path.trim_end_matches('/').split('/').collect();
    if t.len() != p.len() {
        return None;
    }
    let mut args = Vec::new();
    for (ts, ps) in t.iter().zip(&p) {
        if let Some(name) = ts.strip_prefix('{').and_then(|n| n.strip_suffix('}')) {
            let value = percent_encoding::percent_decode_str(ps)
                .decode_utf8()
                .ok()?
                .into_owned();
            if value.is_empty() {
                return None;
            }
            args.push((name.to_string(), value));
        } else if ts != ps {
            return None;
        }
    }
    Some(args)
}

/// `scheme://host` of the request, for the absolute URIs describe/ and resource_uri use.
pub(crate) fn request_origin(headers: &HeaderMap, public_url: &str) -> String {
    let scheme = headers
        .get("x-forwarded-proto")
        .and_then(|v| v.to_str().ok())
        .filter(|s| *s == "https" || *s == "http")
        .unwrap_or(if public_url.starts_with("https:") {
            "https"
        } else {
            "http"
        });
    match headers.get(header::HOST).and_then(|h| h.to_str().ok()) {
        Some(host) if !host.is_empty() && !host.contains(['/', ' ']) => {
            format!("{scheme}://{host}")
        }
        _ => public_url.trim_end_matches('/').to_string(),
    }
}

/// Authenticates an `Authorization: OAuth ...` header, if there is one.
fn principal(state: &AppState, headers: &HeaderMap) -> MaasResult<Option<Principal>> {
    let Some(value) = headers.get(header::AUTHORIZATION) else {
        return Ok(None);
    };
    let value = value
        .to_str()
        .map_err(|_| MaasError::unauthorized("Authorization Error: the header is not text"))?;
    let creds = oauth::parse_authorization(value)
        .map_err(|e| MaasError::unauthorized(format!("Authorization Error: {e}")))?;
    Ok(Some(state.service.authenticate_maas(
        &creds.consumer_key,
        &creds.token_key,
        &creds.token_secret,
    )?))
}

/// What MAAS answers when no action of the resource takes the method and op.
fn no_action(method: &Method, op: Option<&str>, full: &str) -> MaasError {
    match op {
        Some(op) => {
            MaasError::bad_request(format!("Unrecognised signature: method={method} op={op}"))
        }
        None => MaasError::new(
            StatusCode::METHOD_NOT_ALLOWED,
            format!("Method {method} is not allowed on {full}"),
        ),
    }
}

/// Reads a request body of at most `limit` bytes: a larger Content-Length is refused before
/// anything is read, a body that grows past it as soon as it does (413 both).
pub(crate) async fn read_body(
    headers: &HeaderMap,
    body: Body,
    limit: usize,
) -> MaasResult<bytes::Bytes> {
    let too_large = || {
        MaasError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            format!("the request body is larger than {limit} bytes"),
        )
    };
    let declared = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<u64>().ok());
    if declared.is_some_and(|n| n > limit as u64) {
        return Err(too_large());
    }
    let mut stream = body.into_data_stream();
    let mut bytes = Vec::new();
    while let Some(chunk) = futures_util::StreamExt::next(&mut stream).await {
        let chunk = chunk
            .map_err(|e| MaasError::bad_request(format!("cannot read the request body: {e}")))?;
        if bytes.len() + chunk.len() > limit {
            return Err(too_large());
        }
        bytes.extend_from_slice(&chunk);
    }
    Ok(bytes.into())
}

fn no_key() -> MaasError {
    MaasError::unauthorized("Authorization Error: this call needs a MAAS API key (OAuth PLAINTEXT)")
}

/// Finds the resource and action for a request, checks credentials, reads the parameters and
/// runs the action.
async fn dispatch(State(state): State<AppState>, req: Request) -> Response {
    match dispatch_inner(state, req).await {
        Ok(r) => r,
        Err(e) => e.into_response(),
    }
}

async fn dispatch_inner(state: AppState, req: Request) -> Reply {
    let (parts, body) = req.into_parts();
    let full = parts.uri.path();
    let rel = full
        .strip_prefix(PREFIX)
        .or_else(|| full.strip_prefix("/MAAS/api/2.0"))
        .unwrap_or("");
    let rel = format!("{}/", rel.trim_matches('/'));
    let found = RESOURCES
        .iter()
        .find_map(|r| match_path(r.path, &rel).map(|args| (r, args)));
    let Some((resource, args)) = found else {
        return Err(MaasError::not_found(format!(
            "Unknown API endpoint: {full}"
        )));
    };
    // The action is decided, and credentials checked, before a byte of the body is read: a
    // caller without credentials cannot make the appliance buffer a body for an action it may
    // not call. MAAS takes `op` from the query first (python-libmaas and gomaasapi put it there);
    // only when the query has none may the body's form name it.
    let query_op = Params::parse(parts.uri.query(), None, &[])?.op();
    let candidates: Vec<&Action> = resource
        .actions
        .iter()
        .filter(|a| a.method == parts.method)
        .filter(|a| query_op.is_none() || a.op == query_op.as_deref())
        .collect();
    if candidates.is_empty() {
        return Err(no_action(&parts.method, query_op.as_deref(), full));
    }
    let open = candidates.iter().any(|a| a.access == Access::Anonymous);
    let credentials = if open {
        principal(&state, &parts.headers)
    } else {
        Ok(Some(principal(&state, &parts.headers)?.ok_or_else(no_key)?))
    };
    // Anonymous callers send parameters, never files: they get a small body.
    let limit = match &credentials {
        Ok(Some(_)) => MAX_BODY,
        _ => MAX_ANONYMOUS_BODY,
    };
    let bytes = read_body(&parts.headers, body, limit).await?;
    let content_type = parts
        .headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok());
    let params = Params::parse(parts.uri.query(), content_type, &bytes)?;
    let op = params.op();
    let action = candidates.into_iter().find(|a| a.op == op.as_deref());
    let Some(action) = action else {
        return Err(no_action(&parts.method, op.as_deref(), full));
    };
    let principal = match action.access {
        // Credentials on an anonymous action are ignored, as MAAS does for version/.
        Access::Anonymous => credentials.ok().flatten(),
        Access::User | Access::Admin => {
            let p = credentials?.ok_or_else(no_key)?;
            if action.access == Access::Admin && !p.is_admin() {
                return Err(MaasError::forbidden(format!(
                    "{} {}{} needs an admin; {} is a user",
                    parts.method,
                    full,
                    op.as_deref()
                        .map(|o| format!("?op={o}"))
                        .unwrap_or_default(),
                    p.username
                )));
            }
            Some(p)
        }
    };
    let origin = request_origin(&parts.headers, &state.public_url);
    let ctx = Ctx {
        state,
        principal,
        params,
        args,
        origin,
    };
    (action.run)(ctx).await
}

/// What a delete answers: 204, with a content type as MAAS's (Django's) has one; the MAAS CLI
/// reads the content type of every answer and fails on one without.
pub fn no_content() -> Reply {
    Ok((
        StatusCode::NO_CONTENT,
        [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
    )
        .into_response())
}

/// A JSON answer with MAAS's content type (exactly `application/json`: python-libmaas checks).
pub fn json(value: serde_json::Value) -> Reply {
    Ok(axum::Json(value).into_response())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_match_with_placeholders() {
        assert_eq!(match_path("machines/", "machines/"), Some(vec![]));
        assert_eq!(
            match_path("machines/{system_id}/", "machines/abc/"),
            Some(vec![("system_id".to_string(), "abc".to_string())])
        );
        assert_eq!(match_path("machines/{system_id}/", "machines/"), None);
        assert_eq!(
            match_path("files/{filename}/", "files/a%20b/"),
            Some(vec![("filename".to_string(), "a b".to_string())])
        );
    }

    #[test]
    fn origin_comes_from_the_host_header() {
        let mut h = HeaderMap::new();
        assert_eq!(
            request_origin(&h, "http://10.0.0.1:5240/"),
            "http://10.0.0.1:5240"
        );
        h.insert(header::HOST, "maas.example:5240".parse().unwrap());
        assert_eq!(
            request_origin(&h, "http://10.0.0.1:5240"),
            "http://maas.example:5240"
        );
        h.insert("x-forwarded-proto", "https".parse().unwrap());
        assert_eq!(
            request_origin(&h, "http://10.0.0.1:5240"),
            "https://maas.example:5240"
        );
        h.insert(header::HOST, "evil/path".parse().unwrap());
        assert_eq!(
            request_origin(&h, "http://10.0.0.1:5240"),
            "http://10.0.0.1:5240"
        );
    }

    #[test]
    fn every_action_is_unique_per_path() {
        for r in RESOURCES {
            for (i, a) in r.actions.iter().enumerate() {
                assert!(
                    !r.actions[..i]
                        .iter()
                        .any(|b| b.method == a.method && b.op == a.op),
                    "{} has two actions for {} {:?}",
                    r.name,
                    a.method,
                    a.op
                );
            }
        }
    }
}
