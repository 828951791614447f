//! The rest of what Juju, Terraform and python-libmaas read: version, login, users, zones,
//! resource pools, tags, domains, the network model (fabrics, VLANs, spaces, subnets), boot
//! resources and a few settings.

use std::collections::BTreeMap;

use axum::extract::{Request, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};

use super::params::Params;
use super::render::{self, Catalog, named_id};
use super::{Ctx, MaasError, MaasResult, Reply, json};
use crate::http::AppState;
use crate::http::api::catalogs::{self, Pools, Tags, Zones};
use crate::model::Role;
use crate::model::catalog::NamedThing;
use crate::service::{CatalogKind, MachineFilter, NewUser, TokenCreated, TokenKind};

/// The MAAS API level rackbox speaks; clients compare it, not rackbox's own version.
const MAAS_API_VERSION: &str = "2.9.2";

/// What this server can do, in MAAS's capability names. Only what is true: password login for
/// API clients (`authenticate-api`, which python-libmaas's login() requires).
const CAPABILITIES: &[&str] = &["authenticate-api"];

pub async fn version(_c: Ctx) -> Reply {
    json(json!({
        "version": MAAS_API_VERSION,
        "subversion": format!("rackbox {}", env!("CARGO_PKG_VERSION")),
        "capabilities": CAPABILITIES,
    }))
}

/// A MAAS API key as MAAS's account endpoints answer it.
fn api_key_json(t: &TokenCreated) -> MaasResult<Value> {
    let mut parts = t.token.splitn(3, ':');
    match (parts.next(), parts.next(), parts.next()) {
        (Some(ck), Some(tk), Some(ts)) => Ok(json!({
            "consumer_key": ck,
            "token_key": tk,
            "token_secret": ts,
            "name": t.name,
        })),
        _ => Err(MaasError::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "the service made an API key that is not consumer:token:secret",
        )),
    }
}

/// POST /MAAS/accounts/authenticate/ (anonymous): username and password in, a new API key out.
pub async fn authenticate(State(state): State<AppState>, req: Request) -> Response {
    match authenticate_inner(state, req).await {
        Ok(r) => r,
        Err(e) => e.into_response(),
    }
}

async fn authenticate_inner(state: AppState, req: Request) -> Reply {
    let source = req
        .extensions()
        .get::<axum::extract::ConnectInfo<std::net::SocketAddr>>()
        .map(|c| c.0.ip());
    let (parts, body) = req.into_parts();
    let bytes = super::read_body(&parts.headers, body, super::MAX_ANONYMOUS_BODY).await?;
    let content_type = parts
        .headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok());
    let params = Params::parse(parts.uri.query(), content_type, &bytes)?;
    let username = params.required("username")?;
    let password = params
        .text("password")?
        .ok_or_else(|| MaasError::bad_request("password: this field is required"))?;
    let consumer = params
        .nonempty("consumer")?
        .unwrap_or_else(|| "MAAS API client".into());
    let token = state
        .service
        .login(&username, &password, &consumer, TokenKind::Maas, source)
        .await
        .map_err(|e| match e {
            crate::service::ServiceError::Unauthorized(_) => {
                MaasError::unauthorized("Username or password incorrect.")
            }
            other => other.into(),
        })?;
    json(api_key_json(&token)?)
}

pub(crate) async fn create_authorisation_token(c: Ctx) -> Reply {
    let p = c.principal()?;
    let name = c
        .params
        .nonempty("name")?
        .unwrap_or_else(|| "MAAS API client".into());
    let token = c
        .state
        .service
        .create_token(p, &p.username, &name, TokenKind::Maas)
        .await?;
    json(api_key_json(&token)?)
}

pub(crate) async fn list_authorisation_tokens(c: Ctx) -> Reply {
    let p = c.principal()?;
    let tokens = c.state.service.list_tokens(p)?;
    json(Value::Array(
        tokens
            .into_iter()
            .filter(|t| t.kind == "maas" && t.username == p.username)
            .map(|t| json!({"name": t.name, "token": t.id}))
            .collect(),
    ))
}

pub async fn users(c: Ctx) -> Reply {
    let p = c.principal()?;
    let users = c.state.service.list_users(p)?;
    json(Value::Array(
        users
            .iter()
            .map(|u| render::user(&u.username, &u.email, u.role == Role::Admin))
            .collect(),
    ))
}

pub async fn whoami(c: Ctx) -> Reply {
    let p = c.principal()?;
    let u = c.state.service.user(p, &p.username)?;
    json(render::user(&u.username, &u.email, u.role == Role::Admin))
}

pub async fn user(c: Ctx) -> Reply {
    let p = c.principal()?;
    let u = c.state.service.user(p, c.arg("username"))?;
    json(render::user(&u.username, &u.email, u.role == Role::Admin))
}

pub(crate) async fn create_user(c: Ctx) -> Reply {
    let p = c.principal()?;
    let admin = c.params.boolean("is_superuser")?.unwrap_or(false);
    let new = NewUser {
        username: c.params.required("username")?,
        password: c.params.text("password")?.unwrap_or_default(),
        email: c.params.nonempty("email")?.unwrap_or_default(),
        role: Some(if admin { "admin" } else { "user" }.into()),
    };
    let u = c.state.service.create_user(p, new).await?;
    json(render::user(&u.username, &u.email, u.role == Role::Admin))
}

pub(crate) async fn delete_user(c: Ctx) -> Reply {
    let p = c.principal()?;
    c.state.service.delete_user(p, c.arg("username")).await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

/// How the face shows a catalog (zones, resource pools, tags): one set of handlers serves the
/// three, instantiated per catalog in the table (`catalog_list::<Zones>`).
pub(crate) trait FaceCatalog: catalogs::Catalog {
    /// The parameter that carries an entry's description (a tag's is its comment).
    const TEXT: &'static str;

    /// An entry in MAAS's JSON.
    fn render(entry: &NamedThing) -> Value;

    /// The entry the path names (zones and tags by name in `{name}`).
    fn entry(c: &Ctx) -> MaasResult<String> {
        Ok(c.arg("name").to_string())
    }

    /// Refuses parameters of a new entry the catalog cannot honour.
    fn check(_params: &Params) -> MaasResult<()> {
        Ok(())
    }
}

impl FaceCatalog for Zones {
    const TEXT: &'static str = "description";

    fn render(z: &NamedThing) -> Value {
        render::zone(&z.name, &z.description)
    }
}

impl FaceCatalog for Pools {
    const TEXT: &'static str = "description";

    fn render(x: &NamedThing) -> Value {
        render::pool(&x.name, &x.description)
    }

    /// A pool's name from its MAAS id in `{id}` (or its name: MAAS's CLI accepts both).
    fn entry(c: &Ctx) -> MaasResult<String> {
        let id = c.arg("id");
        let pools = c.state.service.list_catalog(CatalogKind::Pool)?;
        pools
            .iter()
            .find(|x| named_id("pool", &x.name).to_string() == id || x.name == id)
            .map(|x| x.name.clone())
            .ok_or_else(|| MaasError::not_found(format!("resource pool {id} does not exist")))
    }
}

impl FaceCatalog for Tags {
    const TEXT: &'static str = "comment";

    fn render(t: &NamedThing) -> Value {
        render::tag(t)
    }

    fn check(params: &Params) -> MaasResult<()> {
        if params.nonempty("definition")?.is_some() {
            return Err(MaasError::bad_request(
                "definition: rackbox tags are given to machines by hand; XPath definitions are not supported",
            ));
        }
        Ok(())
    }
}

pub(crate) async fn catalog_list<C: FaceCatalog>(c: Ctx) -> Reply {
    let entries = c.state.service.list_catalog(C::KIND)?;
    json(Value::Array(entries.iter().map(C::render).collect()))
}

pub(crate) async fn catalog_create<C: FaceCatalog>(c: Ctx) -> Reply {
    let p = c.principal()?;
    let name = c.params.required("name")?;
    C::check(&c.params)?;
    let description = c.params.text(C::TEXT)?.unwrap_or_default();
    let entry = c
        .state
        .service
        .create_catalog(p, C::KIND, &name, &description)
        .await?;
    json(C::render(&entry))
}

pub(crate) async fn catalog_read<C: FaceCatalog>(c: Ctx) -> Reply {
    let name = C::entry(&c)?;
    json(C::render(&c.state.service.catalog_entry(C::KIND, &name)?))
}

pub(crate) async fn catalog_delete<C: FaceCatalog>(c: Ctx) -> Reply {
    let p = c.principal()?;
    let name = C::entry(&c)?;
    c.state.service.delete_catalog(p, C::KIND, &name).await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

pub(crate) async fn tag_machines(c: Ctx) -> Reply {
    let p = c.principal()?;
    let name = c.arg("name").to_string();
    c.state.service.catalog_entry(CatalogKind::Tag, &name)?;
    let page = c.state.service.list_machines(
        p,
        &MachineFilter {
            tag: Some(name),
            limit: Some(0),
            ..Default::default()
        },
    )?;
    let zones = c.state.service.list_catalog(CatalogKind::Zone)?;
    let pools = c.state.service.list_catalog(CatalogKind::Pool)?;
    let catalog = Catalog::new(&zones, &pools);
    json(Value::Array(
        page.items
            .iter()
            .map(|m| render::machine(m, &catalog))
            .collect(),
    ))
}

/// Domains: "maas" and every domain a machine the caller sees is in, with machine counts.
fn domain_counts(c: &Ctx) -> MaasResult<BTreeMap<String, usize>> {
    let p = c.principal()?;
    let page = c.state.service.list_machines(
        p,
        &MachineFilter {
            limit: Some(0),
            ..Default::default()
        },
    )?;
    let mut counts = BTreeMap::from([("maas".to_string(), 0usize)]);
    for m in &page.items {
        *counts.entry(m.domain.clone()).or_insert(0) += 1;
    }
    Ok(counts)
}

pub async fn domains(c: Ctx) -> Reply {
    let counts = domain_counts(&c)?;
    json(Value::Array(
        counts
            .iter()
            .map(|(name, n)| render::domain(name, *n))
            .collect(),
    ))
}

pub async fn domain(c: Ctx) -> Reply {
    let counts = domain_counts(&c)?;
    let id = c.arg("id");
    counts
        .iter()
        .find(|(name, _)| named_id("domain", name).to_string() == id || name.as_str() == id)
        .map(|(name, n)| render::domain(name, *n))
        .map_or_else(
            || Err(MaasError::not_found(format!("domain {id} does not exist"))),
            json,
        )
}

/// One default fabric with its untagged VLAN, as a fresh MAAS has; the boot network's subnets
/// sit on it. rackbox models no spaces.
pub async fn fabrics(_c: Ctx) -> Reply {
    json(json!([render::default_fabric()]))
}

pub async fn fabric(c: Ctx) -> Reply {
    match c.arg("id") {
        "0" | "fabric-0" => json(render::default_fabric()),
        other => Err(MaasError::not_found(format!(
            "fabric {other} does not exist"
        ))),
    }
}

pub async fn vlans(c: Ctx) -> Reply {
    match c.arg("fabric_id") {
        "0" | "fabric-0" => json(json!([render::default_vlan()])),
        other => Err(MaasError::not_found(format!(
            "fabric {other} does not exist"
        ))),
    }
}

pub async fn spaces(_c: Ctx) -> Reply {
    json(json!([]))
}

/// The subnets of the boot network's interfaces (managed and proxy), numbered in config order,
/// all on the default fabric's untagged VLAN.
pub async fn subnets(c: Ctx) -> Reply {
    let mut out = Vec::new();
    for iface in &c.state.boot.interfaces {
        if iface.mode == crate::config::BootMode::Off {
            continue;
        }
        for subnet in &iface.subnets {
            let id = out.len() + 1;
            out.push(json!({
                "id": id,
                "name": subnet.cidr.to_string(),
                "cidr": subnet.cidr.to_string(),
                "vlan": render::default_vlan(),
                "space": "undefined",
                "gateway_ip": subnet.gateway.map(|g| g.to_string()),
                "dns_servers": subnet.dns_servers.iter().map(|d| d.to_string()).collect::<Vec<_>>(),
                "managed": iface.mode == crate::config::BootMode::Managed,
                "allow_dns": true,
                "allow_proxy": false,
                "active_discovery": false,
                "rdns_mode": 2,
                "description": format!("boot network on {}", iface.name),
                "resource_uri": format!("{}subnets/{id}/", super::PREFIX),
            }));
        }
    }
    json(Value::Array(out))
}

/// Deployable images from the image cache, as MAAS lists its boot resources.
pub async fn boot_resources(c: Ctx) -> Reply {
    let list = c
        .state
        .images
        .list_images()
        .map_err(|e| MaasError::unavailable(format!("image cache: {e}")))?;
    let out: Vec<Value> = list
        .images
        .iter()
        .enumerate()
        .map(|(i, v)| {
            let image = &v.image;
            let name = if image.release.is_empty() {
                format!("{}/{}", image.os, image.name)
            } else {
                format!("{}/{}", image.os, image.release)
            };
            json!({
                "id": i + 1,
                "type": "Uploaded",
                "name": name,
                "architecture": format!("{}/generic", image.arch),
                "subarches": "generic",
                "title": image.title,
                "rackbox_image": image.name,
                "resource_uri": format!("{}boot-resources/{}/", super::PREFIX, i + 1),
            })
        })
        .collect();
    json(Value::Array(out))
}

/// GET maas/?op=get_config&name=...: the settings rackbox has; null for the others.
pub(crate) async fn get_config(c: Ctx) -> Reply {
    let name = c.params.required("name")?;
    let value = match name.as_str() {
        "maas_name" => json!("rackbox"),
        "default_osystem" => json!("ubuntu"),
        "enable_disk_erasing_on_release" => json!(false),
        _ => Value::Null,
    };
    json(value)
}
