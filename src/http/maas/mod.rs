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
mod error;
mod files;
mod machines;
pub mod oauth;
pub mod params;
pub mod render;
mod resources;

use axum::Router;
use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{HeaderMap, Method, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{any, post};
use futures_util::future::BoxFuture;

use super::api::catalogs::{Pools, Tags, Zones};
use super::{Access, AppState};
use crate::service::Principal;
pub use error::{MaasError, MaasResult};
use params::Params;

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
/// An action's code. A plain fn pointer so the table is a constant.
pub type Run = fn(Ctx) -> BoxFuture<'static, Reply>;

/// One action of a MAAS handler: RESTful (no op: GET read, POST create, PUT update, DELETE
/// delete) or named by its op.
pub struct Action {
    pub method: Method,
    pub op: Option<&'static str>,
    pub access: Access,
    pub doc: &'static str,
    pub run: Run,
}

impl Action {
    /// The name describe/ gives the action (python-libmaas makes it a method name).
    pub fn name(&self) -> &'static str {
        match self.op {
            Some(op) => op,
            None => match self.method {
                Method::GET => "read",
                Method::POST => "create",
                Method::PUT => "update",
                Method::DELETE => "delete",
                _ => "call",
            },
        }
    }
}

/// One MAAS handler: a path under [`PREFIX`] (placeholders in braces) and its actions.
pub(crate) struct Resource {
    /// MAAS's handler class name; python-libmaas binds by it (MachinesHandler -> Machines).
    pub name: &'static str,
    pub path: &'static str,
    pub doc: &'static str,
    pub actions: &'static [Action],
}

macro_rules! act {
    ($method:ident, $op:expr, $access:ident, $doc:expr, $f:expr) => {
        Action {
            method: Method::$method,
            op: $op,
            access: Access::$access,
            doc: $doc,
            run: |c| Box::pin($f(c)),
        }
    };
}

/// The face's route table. Access levels say only who may *call* an action, as the native API's
/// table does (adding, editing and deleting machines need an admin); whether a user may act on a
/// particular machine is the service's decision, so life-cycle actions are open to users here.
pub(crate) static RESOURCES: &[Resource] = &[
    Resource {
        name: "DescribeHandler",
        path: "describe/",
        doc: "This API's description, generated from its route table.",
        actions: &[act!(
            GET,
            None,
            Anonymous,
            "Describe the API.",
            describe::describe
        )],
    },
    Resource {
        name: "VersionHandler",
        path: "version/",
        doc: "Version and capabilities of this server.",
        actions: &[act!(
            GET,
            None,
            Anonymous,
            "Read the version and capabilities.",
            resources::version
        )],
    },
    Resource {
        name: "MachinesHandler",
        path: "machines/",
        doc: "Manage the collection of all the machines.",
        actions: &[
            act!(
                GET,
                None,
                User,
                "List machines (filters: hostname, id, mac_address, agent_name, domain, zone, pool, tags).",
                machines::list
            ),
            act!(
                POST,
                None,
                Admin,
                "Add a machine (architecture, mac_addresses, power_type, power_parameters, hostname, domain, zone, pool, description, commission).",
                machines::create
            ),
            act!(
                POST,
                Some("allocate"),
                User,
                "Allocate a Ready machine matching the constraints.",
                machines::allocate
            ),
            act!(
                POST,
                Some("release"),
                User,
                "Release several machines (machines=<system_id> repeated).",
                machines::release_many
            ),
            act!(
                GET,
                Some("power_parameters"),
                Admin,
                "Power parameters of machines (id=<system_id> repeated).",
                machines::power_parameters_many
            ),
            act!(
                GET,
                Some("list_allocated"),
                User,
                "Machines allocated to the caller.",
                machines::list_allocated
            ),
            act!(
                GET,
                Some("is_registered"),
                User,
                "Whether a MAC address belongs to a machine.",
                machines::is_registered
            ),
        ],
    },
    Resource {
        name: "MachineHandler",
        path: "machines/{system_id}/",
        doc: "Manage an individual machine.",
        actions: &[
            act!(GET, None, User, "Read a machine.", machines::read),
            act!(PUT, None, Admin, "Update a machine.", machines::update),
            act!(DELETE, None, Admin, "Delete a machine.", machines::delete),
            act!(
                POST,
                Some("deploy"),
                User,
                "Deploy an OS (distro_series, user_data base64, hwe_kernel, comment).",
                machines::deploy
            ),
            act!(
                POST,
                Some("release"),
                User,
                "Release the machine (erase, secure_erase, quick_erase, comment).",
                machines::release
            ),
            act!(
                POST,
                Some("commission"),
                Admin,
                "Commission the machine.",
                machines::commission
            ),
            act!(
                POST,
                Some("abort"),
                User,
                "Abort the machine's current action.",
                machines::abort
            ),
            act!(
                POST,
                Some("mark_broken"),
                User,
                "Mark the machine broken.",
                machines::mark_broken
            ),
            act!(
                POST,
                Some("mark_fixed"),
                Admin,
                "Mark a broken machine fixed.",
                machines::mark_fixed
            ),
            act!(
                POST,
                Some("lock"),
                User,
                "Lock the machine against changes.",
                machines::lock
            ),
            act!(
                POST,
                Some("unlock"),
                User,
                "Unlock the machine.",
                machines::unlock
            ),
            act!(
                POST,
                Some("rescue_mode"),
                User,
                "Boot the rescue environment.",
                machines::rescue_mode
            ),
            act!(
                POST,
                Some("exit_rescue_mode"),
                User,
                "Leave rescue mode.",
                machines::exit_rescue_mode
            ),
            act!(
                POST,
                Some("power_on"),
                User,
                "Power the machine on.",
                machines::power_on
            ),
            act!(
                POST,
                Some("power_off"),
                User,
                "Power the machine off (stop_mode soft or hard).",
                machines::power_off
            ),
            act!(
                GET,
                Some("query_power_state"),
                User,
                "The machine's power state.",
                machines::query_power_state
            ),
            act!(
                GET,
                Some("power_parameters"),
                Admin,
                "The machine's power parameters.",
                machines::power_parameters
            ),
            act!(
                POST,
                Some("set_owner_data"),
                User,
                "Set owner data (key=value; an empty value deletes the key).",
                machines::set_owner_data
            ),
        ],
    },
    Resource {
        name: "InterfacesHandler",
        path: "nodes/{system_id}/interfaces/",
        doc: "A machine's network interfaces.",
        actions: &[act!(
            GET,
            None,
            User,
            "List the interfaces.",
            machines::interfaces
        )],
    },
    Resource {
        name: "InterfaceHandler",
        path: "nodes/{system_id}/interfaces/{id}/",
        doc: "One network interface.",
        actions: &[act!(
            GET,
            None,
            User,
            "Read the interface.",
            machines::interface
        )],
    },
    Resource {
        name: "BlockDevicesHandler",
        path: "nodes/{system_id}/blockdevices/",
        doc: "A machine's block devices.",
        actions: &[act!(
            GET,
            None,
            User,
            "List the block devices.",
            machines::block_devices
        )],
    },
    Resource {
        name: "BlockDeviceHandler",
        path: "nodes/{system_id}/blockdevices/{id}/",
        doc: "One block device.",
        actions: &[act!(
            GET,
            None,
            User,
            "Read the block device.",
            machines::block_device
        )],
    },
    Resource {
        name: "UsersHandler",
        path: "users/",
        doc: "Manage the user accounts.",
        actions: &[
            act!(
                GET,
                None,
                User,
                "List users (admins see all).",
                resources::users
            ),
            act!(
                POST,
                None,
                Admin,
                "Create a user (username, email, password, is_superuser).",
                resources::create_user
            ),
            act!(
                GET,
                Some("whoami"),
                User,
                "The logged-in user.",
                resources::whoami
            ),
        ],
    },
    Resource {
        name: "UserHandler",
        path: "users/{username}/",
        doc: "Manage one user account.",
        actions: &[
            act!(GET, None, User, "Read a user.", resources::user),
            act!(
                DELETE,
                None,
                Admin,
                "Delete a user.",
                resources::delete_user
            ),
        ],
    },
    Resource {
        name: "AccountHandler",
        path: "account/",
        doc: "The caller's API keys.",
        actions: &[
            act!(
                POST,
                Some("create_authorisation_token"),
                User,
                "Make a new API key.",
                resources::create_authorisation_token
            ),
            act!(
                GET,
                Some("list_authorisation_tokens"),
                User,
                "List the caller's API keys.",
                resources::list_authorisation_tokens
            ),
        ],
    },
    Resource {
        name: "ZonesHandler",
        path: "zones/",
        doc: "Manage availability zones.",
        actions: &[
            act!(
                GET,
                None,
                User,
                "List zones.",
                resources::catalog_list::<Zones>
            ),
            act!(
                POST,
                None,
                Admin,
                "Create a zone (name, description).",
                resources::catalog_create::<Zones>
            ),
        ],
    },
    Resource {
        name: "ZoneHandler",
        path: "zones/{name}/",
        doc: "Manage one availability zone.",
        actions: &[
            act!(
                GET,
                None,
                User,
                "Read a zone.",
                resources::catalog_read::<Zones>
            ),
            act!(
                DELETE,
                None,
                Admin,
                "Delete a zone no machine is in.",
                resources::catalog_delete::<Zones>
            ),
        ],
    },
    Resource {
        name: "ResourcePoolsHandler",
        path: "resourcepools/",
        doc: "Manage resource pools.",
        actions: &[
            act!(
                GET,
                None,
                User,
                "List resource pools.",
                resources::catalog_list::<Pools>
            ),
            act!(
                POST,
                None,
                Admin,
                "Create a resource pool (name, description).",
                resources::catalog_create::<Pools>
            ),
        ],
    },
    Resource {
        name: "ResourcePoolHandler",
        path: "resourcepools/{id}/",
        doc: "Manage one resource pool.",
        actions: &[
            act!(
                GET,
                None,
                User,
                "Read a resource pool.",
                resources::catalog_read::<Pools>
            ),
            act!(
                DELETE,
                None,
                Admin,
                "Delete a resource pool no machine is in.",
                resources::catalog_delete::<Pools>
            ),
        ],
    },
    Resource {
        name: "TagsHandler",
        path: "tags/",
        doc: "Manage tags.",
        actions: &[
            act!(
                GET,
                None,
                User,
                "List tags.",
                resources::catalog_list::<Tags>
            ),
            act!(
                POST,
                None,
                Admin,
                "Create a tag (name, comment).",
                resources::catalog_create::<Tags>
            ),
        ],
    },
    Resource {
        name: "TagHandler",
        path: "tags/{name}/",
        doc: "Manage one tag.",
        actions: &[
            act!(
                GET,
                None,
                User,
                "Read a tag.",
                resources::catalog_read::<Tags>
            ),
            act!(
                DELETE,
                None,
                Admin,
                "Delete a tag no machine carries.",
                resources::catalog_delete::<Tags>
            ),
            act!(
                GET,
                Some("machines"),
                User,
                "Machines carrying the tag.",
                resources::tag_machines
            ),
        ],
    },
    Resource {
        name: "DomainsHandler",
        path: "domains/",
        doc: "DNS domains of the machines.",
        actions: &[act!(GET, None, User, "List domains.", resources::domains)],
    },
    Resource {
        name: "DomainHandler",
        path: "domains/{id}/",
        doc: "One DNS domain.",
        actions: &[act!(GET, None, User, "Read a domain.", resources::domain)],
    },
    Resource {
        name: "FabricsHandler",
        path: "fabrics/",
        doc: "Fabrics (rackbox has the one default fabric until the boot network is configured).",
        actions: &[act!(GET, None, User, "List fabrics.", resources::fabrics)],
    },
    Resource {
        name: "FabricHandler",
        path: "fabrics/{id}/",
        doc: "One fabric.",
        actions: &[act!(GET, None, User, "Read a fabric.", resources::fabric)],
    },
    Resource {
        name: "VlansHandler",
        path: "fabrics/{fabric_id}/vlans/",
        doc: "VLANs of a fabric.",
        actions: &[act!(GET, None, User, "List VLANs.", resources::vlans)],
    },
    Resource {
        name: "SpacesHandler",
        path: "spaces/",
        doc: "Network spaces (none until the boot network is configured).",
        actions: &[act!(GET, None, User, "List spaces.", resources::spaces)],
    },
    Resource {
        name: "SubnetsHandler",
        path: "subnets/",
        doc: "Subnets (none until the boot network is configured).",
        actions: &[act!(GET, None, User, "List subnets.", resources::subnets)],
    },
    Resource {
        name: "BootResourcesHandler",
        path: "boot-resources/",
        doc: "Boot images (from the image cache; empty until the image cache exists).",
        actions: &[act!(
            GET,
            None,
            User,
            "List boot resources.",
            resources::boot_resources
        )],
    },
    Resource {
        name: "FilesHandler",
        path: "files/",
        doc: "Files stored for the caller (Juju keeps its tools and state here).",
        actions: &[
            act!(GET, None, User, "List files (prefix filter).", files::list),
            act!(POST, None, User, "Add a file (filename, file).", files::add),
            act!(
                POST,
                Some("add"),
                User,
                "Add a file (filename, file).",
                files::add
            ),
            act!(
                GET,
                Some("get"),
                User,
                "Read a file's content (filename).",
                files::get
            ),
            act!(
                GET,
                Some("get_by_key"),
                Anonymous,
                "Read a file's content by its key, without credentials.",
                files::get_by_key
            ),
            act!(
                POST,
                Some("delete"),
                User,
                "Delete a file (filename).",
                files::delete_by_param
            ),
        ],
    },
    Resource {
        name: "FileHandler",
        path: "files/{filename}/",
        doc: "One stored file.",
        actions: &[
            act!(
                GET,
                None,
                User,
                "Read a file (content base64).",
                files::read
            ),
            act!(DELETE, None, User, "Delete a file.", files::delete),
        ],
    },
    Resource {
        name: "MaasHandler",
        path: "maas/",
        doc: "Server-wide settings.",
        actions: &[act!(
            GET,
            Some("get_config"),
            User,
            "Read a setting (name).",
            resources::get_config
        )],
    },
];

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
