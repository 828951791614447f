//! The rest of what Juju, Terraform and python-libmaas read: version, login, users, zones,
//! resource pools, tags, domains, the network model (fabrics, VLANs, spaces, subnets), boot
//! resources and a few settings.

use std::collections::BTreeMap;

use axum::extract::{Request, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};

use super::params::Params;
use super::render::{self, named_id};
use super::{Ctx, MaasError, MaasResult, Reply, json};
use crate::config::BootMode;
use crate::http::AppState;
use crate::http::api::catalogs::{self, Pools, Tags, Zones};
use crate::model::Role;
use crate::model::catalog::NamedThing;
use crate::model::iprange::RangeKind;
use crate::service::{
    CatalogKind, IpRangeEdit, MachineFilter, NewIpRange, NewUser, TokenCreated, TokenKind,
};

/// The MAAS API level rackbox speaks; clients compare it, not rackbox's own version.
const MAAS_API_VERSION: &str = "2.9.2";

/// What this server can do, in MAAS's capability names. Only what is true: password login for
/// API clients (`authenticate-api`, which python-libmaas's login() requires) and deployed
/// machines' networks configured from their interface links (`network-deployment-ubuntu`,
/// which Juju checks; the name is MAAS's, the OS need not be Ubuntu).
const CAPABILITIES: &[&str] = &["authenticate-api", "network-deployment-ubuntu"];

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
    super::no_content()
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
        if params.nonempty("kernel_opts")?.is_some() {
            return Err(MaasError::bad_request(
                "kernel_opts: rackbox tags carry no kernel options",
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

/// PUT zones/{name}/, resourcepool/{id}/, tags/{name}/: a new description (a tag's comment).
/// rackbox names zones, pools and tags once (machines refer to them by name): a different
/// `name` is refused with what to do instead.
pub(crate) async fn catalog_update<C: FaceCatalog>(c: Ctx) -> Reply {
    let p = c.principal()?;
    let name = C::entry(&c)?;
    if let Some(new) = c.params.nonempty("name")?
        && new != name
    {
        return Err(MaasError::bad_request(format!(
            "name: rackbox does not rename {name}; create {new} and move the machines to it"
        )));
    }
    C::check(&c.params)?;
    let entry = c.state.service.catalog_entry(C::KIND, &name)?;
    let description = c.params.text(C::TEXT)?.unwrap_or(entry.description);
    let entry = c
        .state
        .service
        .describe_catalog(p, C::KIND, &name, &description)
        .await?;
    json(C::render(&entry))
}

pub(crate) async fn catalog_delete<C: FaceCatalog>(c: Ctx) -> Reply {
    let p = c.principal()?;
    let name = C::entry(&c)?;
    c.state.service.delete_catalog(p, C::KIND, &name).await?;
    super::no_content()
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
    let catalog = super::machines::catalog(&c)?;
    json(Value::Array(
        page.items
            .iter()
            .map(|m| render::machine(m, &catalog))
            .collect(),
    ))
}

/// DELETE tags/{name}/: as MAAS does it, a tag that machines carry is taken from them first
/// (Terraform destroys a maas_tag while its machines still carry it). The native API and the
/// page refuse that instead, so that one click never untags a rack.
pub(crate) async fn tag_delete(c: Ctx) -> Reply {
    let p = c.principal()?;
    let name = c.arg("name").to_string();
    c.state.service.catalog_entry(CatalogKind::Tag, &name)?;
    let carrying = c.state.service.list_machines(
        p,
        &MachineFilter {
            tag: Some(name.clone()),
            limit: Some(0),
            ..Default::default()
        },
    )?;
    for m in carrying.items {
        let mut tags = m.tags.clone();
        tags.remove(&name);
        let edit = crate::model::api::MachineEdit {
            tags: Some(tags.into_iter().collect()),
            ..Default::default()
        };
        c.state.service.edit_machine(p, &m.system_id, edit).await?;
    }
    c.state
        .service
        .delete_catalog(p, CatalogKind::Tag, &name)
        .await?;
    super::no_content()
}

/// POST tags/{name}/?op=update_nodes: gives the tag to the machines in `add` and takes it from
/// those in `remove`; answers MAAS's counts. Every machine is checked before any changes.
pub(crate) async fn tag_update_nodes(c: Ctx) -> Reply {
    let p = c.principal()?;
    let name = c.arg("name").to_string();
    c.state.service.catalog_entry(CatalogKind::Tag, &name)?;
    let add = c.params.all("add")?;
    let remove = c.params.all("remove")?;
    for id in add.iter().chain(&remove) {
        c.state.service.machine(p, id)?;
    }
    let (mut added, mut removed) = (0, 0);
    for (ids, adding) in [(&add, true), (&remove, false)] {
        for id in ids {
            let m = c.state.service.machine(p, id)?;
            if m.tags.contains(&name) == adding {
                continue;
            }
            let mut tags = m.tags.clone();
            if adding {
                tags.insert(name.clone());
                added += 1;
            } else {
                tags.remove(&name);
                removed += 1;
            }
            let edit = crate::model::api::MachineEdit {
                tags: Some(tags.into_iter().collect()),
                ..Default::default()
            };
            c.state.service.edit_machine(p, id, edit).await?;
        }
    }
    json(json!({"added": added, "removed": removed}))
}

/// An SSH key as MAAS shows it.
fn ssh_key_json(username: &str, k: &crate::model::SshKey) -> Value {
    json!({
        "id": k.id,
        "key": k.key,
        "keysource": null,
        "user": username,
        "resource_uri": format!("{}account/prefs/sshkeys/{}/", super::PREFIX, k.id),
    })
}

fn key_id(c: &Ctx) -> MaasResult<u32> {
    let id = c.arg("id");
    id.parse()
        .map_err(|_| MaasError::not_found(format!("SSH key {id} does not exist")))
}

/// GET account/prefs/sshkeys/: the caller's keys, the same the native API lists.
pub(crate) async fn ssh_keys(c: Ctx) -> Reply {
    let p = c.principal()?;
    let u = c.state.service.user(p, &p.username)?;
    json(Value::Array(
        u.ssh_keys
            .iter()
            .map(|k| ssh_key_json(&u.username, k))
            .collect(),
    ))
}

pub(crate) async fn add_ssh_key(c: Ctx) -> Reply {
    let p = c.principal()?;
    let key = c.params.required("key")?;
    let k = c.state.service.add_ssh_key(p, &p.username, &key).await?;
    json(ssh_key_json(&p.username, &k))
}

pub(crate) async fn ssh_key(c: Ctx) -> Reply {
    let p = c.principal()?;
    let id = key_id(&c)?;
    let u = c.state.service.user(p, &p.username)?;
    u.ssh_keys
        .iter()
        .find(|k| k.id == id)
        .map(|k| ssh_key_json(&u.username, k))
        .map_or_else(
            || Err(MaasError::not_found(format!("SSH key {id} does not exist"))),
            json,
        )
}

pub(crate) async fn delete_ssh_key(c: Ctx) -> Reply {
    let p = c.principal()?;
    let id = key_id(&c)?;
    c.state.service.delete_ssh_key(p, &p.username, id).await?;
    super::no_content()
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

/// How rackbox serves DHCP on the boot network: managed on some interface (dhcp_on, this
/// controller the primary rack), or proxy beside the site's server (the one the setup's probe
/// found, when it found one).
pub(crate) fn vlan_dhcp(c: &Ctx) -> MaasResult<render::VlanDhcp> {
    let modes: Vec<BootMode> = c
        .state
        .boot
        .interfaces
        .iter()
        .map(|i| i.mode)
        .filter(|m| *m != BootMode::Off)
        .collect();
    let managed = modes.contains(&BootMode::Managed);
    let external_dhcp = if !managed && modes.contains(&BootMode::Proxy) {
        c.state
            .service
            .setup_record()?
            .probe_found
            .first()
            .and_then(|line| line.split_whitespace().next())
            .and_then(|a| a.parse::<std::net::IpAddr>().ok())
            .map(|a| a.to_string())
    } else {
        None
    };
    Ok(render::VlanDhcp {
        managed,
        primary_rack: (!modes.is_empty()).then(super::nodes::controller_id),
        external_dhcp,
    })
}

/// The boot network's VLAN as MAAS shows it.
pub(crate) fn boot_vlan(c: &Ctx) -> MaasResult<Value> {
    Ok(render::vlan(&vlan_dhcp(c)?))
}

/// One default fabric with its untagged VLAN, as a fresh MAAS has; the boot network's subnets
/// sit on it. rackbox models no spaces.
pub async fn fabrics(c: Ctx) -> Reply {
    json(json!([render::fabric(boot_vlan(&c)?)]))
}

pub async fn fabric(c: Ctx) -> Reply {
    match c.arg("id") {
        "0" | "fabric-0" => json(render::fabric(boot_vlan(&c)?)),
        other => Err(MaasError::not_found(format!(
            "fabric {other} does not exist"
        ))),
    }
}

pub async fn vlans(c: Ctx) -> Reply {
    match c.arg("fabric_id") {
        "0" | "fabric-0" => json(json!([boot_vlan(&c)?])),
        other => Err(MaasError::not_found(format!(
            "fabric {other} does not exist"
        ))),
    }
}

pub async fn spaces(_c: Ctx) -> Reply {
    json(json!([]))
}

/// A served boot subnet: (its MAAS id, numbered from 1 in config order; its interface's mode;
/// the subnet; the interface's name).
type Served<'a> = (usize, BootMode, &'a crate::config::BootSubnet, String);

/// The boot network's served subnets (see [`Served`]).
fn served_subnets(c: &Ctx) -> Vec<Served<'_>> {
    let mut out = Vec::new();
    for iface in &c.state.boot.interfaces {
        if iface.mode == BootMode::Off {
            continue;
        }
        for subnet in &iface.subnets {
            out.push((out.len() + 1, iface.mode, subnet, iface.name.clone()));
        }
    }
    out
}

/// The served subnets as MAAS shows them, by CIDR (interface links name their subnet by it).
pub(crate) fn subnets_by_cidr(c: &Ctx) -> MaasResult<BTreeMap<String, Value>> {
    let vlan = boot_vlan(c)?;
    Ok(served_subnets(c)
        .into_iter()
        .map(|(id, mode, subnet, iface)| {
            (
                subnet.cidr.to_string(),
                subnet_json(id, mode, subnet, &iface, &vlan),
            )
        })
        .collect())
}

/// The subnets of the boot network's interfaces (managed and proxy), numbered in config order,
/// all on the default fabric's untagged VLAN.
pub async fn subnets(c: Ctx) -> Reply {
    let vlan = boot_vlan(&c)?;
    let out: Vec<Value> = served_subnets(&c)
        .into_iter()
        .map(|(id, mode, subnet, iface)| subnet_json(id, mode, subnet, &iface, &vlan))
        .collect();
    json(Value::Array(out))
}

fn subnet_json(
    id: usize,
    mode: BootMode,
    subnet: &crate::config::BootSubnet,
    iface: &str,
    vlan: &Value,
) -> Value {
    json!({
        "id": id,
        "name": subnet.cidr.to_string(),
        "cidr": subnet.cidr.to_string(),
        "vlan": vlan,
        "space": "undefined",
        "gateway_ip": subnet.gateway.map(|g| g.to_string()),
        "dns_servers": subnet.dns_servers.iter().map(|d| d.to_string()).collect::<Vec<_>>(),
        "managed": mode == BootMode::Managed,
        "allow_dns": true,
        "allow_proxy": false,
        "active_discovery": false,
        "rdns_mode": 2,
        "description": format!("boot network on {iface}"),
        "resource_uri": format!("{}subnets/{id}/", super::PREFIX),
    })
}

/// MAAS ids of the ranges the config file sets start here (the API's own ranges count from 1),
/// so both kinds keep their ids when the other changes.
const CONFIG_RANGE_IDS: u64 = 1_000_000;

/// One IP range as MAAS shows it.
fn range_json(
    id: u64,
    kind: &str,
    start: impl std::fmt::Display,
    end: impl std::fmt::Display,
    subnet: &Value,
    comment: &str,
    user: Option<&str>,
) -> Value {
    json!({
        "id": id,
        "type": kind,
        "start_ip": start.to_string(),
        "end_ip": end.to_string(),
        "subnet": subnet,
        "comment": comment,
        "user": user.map(|u| render::user(u, "", false)),
        "resource_uri": format!("{}ipranges/{id}/", super::PREFIX),
    })
}

/// Every range of the boot subnets as MAAS's IP ranges: those the config file sets (dynamic:
/// the DHCP pool of a managed subnet; reserved) and those added through the API.
fn ranges(c: &Ctx) -> MaasResult<Vec<Value>> {
    let vlan = boot_vlan(c)?;
    let stored = c.state.service.ip_ranges()?;
    let mut out = Vec::new();
    let mut n = 0;
    for (subnet_id, mode, subnet, iface) in served_subnets(c) {
        let subnet_value = subnet_json(subnet_id, mode, subnet, &iface, &vlan);
        let kinds = [
            ("dynamic", &subnet.dynamic_ranges, "DHCP pool"),
            ("reserved", &subnet.reserved_ranges, "never given out"),
        ];
        for (kind, list, what) in kinds {
            for r in list {
                n += 1;
                let comment = format!("{what} on {iface} (set by the configuration file)");
                out.push(range_json(
                    CONFIG_RANGE_IDS + n,
                    kind,
                    r.start,
                    r.end,
                    &subnet_value,
                    &comment,
                    None,
                ));
            }
        }
        let cidr = subnet.cidr.to_string();
        for r in stored.iter().filter(|r| r.subnet == cidr) {
            out.push(range_json(
                u64::from(r.id),
                r.kind.as_str(),
                r.start,
                r.end,
                &subnet_value,
                &r.comment,
                Some(&r.owner),
            ));
        }
    }
    Ok(out)
}

pub(crate) async fn ip_ranges(c: Ctx) -> Reply {
    json(Value::Array(ranges(&c)?))
}

pub(crate) async fn ip_range(c: Ctx) -> Reply {
    let id = c.arg("id").to_string();
    ranges(&c)?
        .into_iter()
        .find(|r| r["id"].as_u64().is_some_and(|n| n.to_string() == id))
        .map_or_else(
            || {
                Err(MaasError::not_found(format!(
                    "IP range {id} does not exist"
                )))
            },
            json,
        )
}

fn address(c: &Ctx, name: &str) -> MaasResult<Option<std::net::Ipv4Addr>> {
    c.params
        .nonempty(name)?
        .map(|a| {
            a.parse().map_err(|_| {
                MaasError::bad_request(format!("{name}: {a:?} is not an IPv4 address"))
            })
        })
        .transpose()
}

/// The served subnet a new range goes in: the one `subnet` names (id or CIDR), else the one
/// holding start_ip; both ends must lie in it.
fn range_subnet(
    c: &Ctx,
    start: std::net::Ipv4Addr,
    end: std::net::Ipv4Addr,
) -> MaasResult<(BootMode, &crate::config::BootSubnet)> {
    let served = served_subnets(c);
    let named = c.params.nonempty("subnet")?;
    let found = served.into_iter().find(|(id, _, s, _)| match &named {
        Some(n) => id.to_string() == *n || s.cidr.to_string() == *n,
        None => s.cidr.contains(start),
    });
    let Some((_, mode, subnet, _)) = found else {
        return Err(MaasError::bad_request(match named {
            Some(n) => format!("subnet: {n} is not a subnet of the boot network"),
            None => format!("start_ip: {start} is in no subnet of the boot network"),
        }));
    };
    if !subnet.cidr.contains(start) || !subnet.cidr.contains(end) {
        return Err(MaasError::bad_request(format!(
            "{start}-{end} is not inside subnet {}",
            subnet.cidr
        )));
    }
    Ok((mode, subnet))
}

/// The ranges the config file sets on a subnet, which no API range may overlap.
fn fixed_ranges(
    subnet: &crate::config::BootSubnet,
) -> Vec<(std::net::Ipv4Addr, std::net::Ipv4Addr)> {
    subnet
        .dynamic_ranges
        .iter()
        .chain(&subnet.reserved_ranges)
        .map(|r| (r.start, r.end))
        .collect()
}

/// POST ipranges/: a dynamic range widens a managed subnet's DHCP pool at once; a reserved one
/// keeps addresses out of what rackbox hands out. Refused (409) when it overlaps any range.
pub(crate) async fn create_ip_range(c: Ctx) -> Reply {
    let p = c.principal()?;
    let kind_text = c.params.required("type")?;
    let kind = RangeKind::parse(&kind_text).ok_or_else(|| {
        MaasError::bad_request(format!("type: {kind_text:?} is not dynamic or reserved"))
    })?;
    let (Some(start), Some(end)) = (address(&c, "start_ip")?, address(&c, "end_ip")?) else {
        return Err(MaasError::bad_request("start_ip and end_ip are required"));
    };
    let (mode, subnet) = range_subnet(&c, start, end)?;
    if kind == RangeKind::Dynamic && mode != BootMode::Managed {
        return Err(MaasError::bad_request(format!(
            "subnet {} is served in proxy mode: another DHCP server gives its addresses",
            subnet.cidr
        )));
    }
    let new = NewIpRange {
        kind,
        start,
        end,
        subnet: subnet.cidr.to_string(),
        comment: c.params.text("comment")?.unwrap_or_default(),
    };
    let fixed = fixed_ranges(subnet);
    let r = c.state.service.create_ip_range(p, new, fixed).await?;
    ip_range_reply(&c, r.id)
}

fn ip_range_reply(c: &Ctx, id: u32) -> Reply {
    ranges(c)?
        .into_iter()
        .find(|r| r["id"] == u64::from(id))
        .map_or_else(
            || {
                Err(MaasError::not_found(format!(
                    "IP range {id} does not exist"
                )))
            },
            json,
        )
}

/// The API range the path names; the config file's ranges are refused with where to change them.
fn api_range_id(c: &Ctx) -> MaasResult<u32> {
    let id = c.arg("id");
    match id.parse::<u64>() {
        Ok(n) if n > CONFIG_RANGE_IDS => Err(MaasError::conflict(format!(
            "IP range {id} is set by the configuration file ([[boot.interfaces.subnets]]); change it there"
        ))),
        Ok(n) => u32::try_from(n)
            .map_err(|_| MaasError::not_found(format!("IP range {id} does not exist"))),
        Err(_) => Err(MaasError::not_found(format!(
            "IP range {id} does not exist"
        ))),
    }
}

/// PUT ipranges/{id}/: new start_ip, end_ip or comment.
pub(crate) async fn update_ip_range(c: Ctx) -> Reply {
    let p = c.principal()?;
    let id = api_range_id(&c)?;
    let current = c
        .state
        .service
        .ip_ranges()?
        .into_iter()
        .find(|r| r.id == id)
        .ok_or_else(|| MaasError::not_found(format!("IP range {id} does not exist")))?;
    let start = address(&c, "start_ip")?;
    let end = address(&c, "end_ip")?;
    let fixed = served_subnets(&c)
        .into_iter()
        .find(|(_, _, s, _)| s.cidr.to_string() == current.subnet)
        .map(|(_, _, s, _)| {
            let (new_start, new_end) = (start.unwrap_or(current.start), end.unwrap_or(current.end));
            if s.cidr.contains(new_start) && s.cidr.contains(new_end) {
                Ok(fixed_ranges(s))
            } else {
                Err(MaasError::bad_request(format!(
                    "{new_start}-{new_end} is not inside subnet {}",
                    s.cidr
                )))
            }
        })
        .transpose()?
        .unwrap_or_default();
    let edit = IpRangeEdit {
        start,
        end,
        comment: c.params.text("comment")?,
    };
    c.state.service.edit_ip_range(p, id, edit, fixed).await?;
    ip_range_reply(&c, id)
}

/// DELETE ipranges/{id}/
pub(crate) async fn delete_ip_range(c: Ctx) -> Reply {
    let p = c.principal()?;
    let id = api_range_id(&c)?;
    c.state.service.delete_ip_range(p, id).await?;
    super::no_content()
}

/// rackbox configures no static routes on the boot network: an empty list, in MAAS's shape.
/// A network a static route names as MAAS shows subnets: the boot subnet of that CIDR, or, for
/// a network outside the boot network (rackbox models no other subnets), one with id 0.
fn route_subnet(c: &Ctx, cidr: &str, subnets: &BTreeMap<String, Value>) -> MaasResult<Value> {
    if let Some(s) = subnets.get(cidr) {
        return Ok(s.clone());
    }
    Ok(json!({
        "id": 0,
        "name": cidr,
        "cidr": cidr,
        "vlan": boot_vlan(c)?,
        "space": "undefined",
        "gateway_ip": null,
        "dns_servers": [],
        "managed": false,
        "description": "outside the boot network",
        "resource_uri": format!("{}subnets/{cidr}/", super::PREFIX),
    }))
}

fn static_route_json(
    c: &Ctx,
    r: &crate::model::network::StaticRoute,
    subnets: &BTreeMap<String, Value>,
) -> MaasResult<Value> {
    Ok(json!({
        "id": r.id,
        "source": route_subnet(c, &r.source, subnets)?,
        "destination": route_subnet(c, &r.destination, subnets)?,
        "gateway_ip": r.gateway.to_string(),
        "metric": r.metric,
        "resource_uri": format!("{}static-routes/{}/", super::PREFIX, r.id),
    }))
}

pub(crate) async fn static_routes(c: Ctx) -> Reply {
    let subnets = subnets_by_cidr(&c)?;
    let routes = c.state.service.static_routes()?;
    json(Value::Array(
        routes
            .iter()
            .map(|r| static_route_json(&c, r, &subnets))
            .collect::<MaasResult<_>>()?,
    ))
}

fn route_id(c: &Ctx) -> MaasResult<u32> {
    let id = c.arg("id");
    id.parse()
        .map_err(|_| MaasError::not_found(format!("static route {id} does not exist")))
}

pub(crate) async fn static_route(c: Ctx) -> Reply {
    let id = route_id(&c)?;
    let subnets = subnets_by_cidr(&c)?;
    let r = c
        .state
        .service
        .static_routes()?
        .into_iter()
        .find(|r| r.id == id)
        .ok_or_else(|| MaasError::not_found(format!("static route {id} does not exist")))?;
    json(static_route_json(&c, &r, &subnets)?)
}

/// A boot subnet named by its id or CIDR, or (`any_network`) any CIDR.
fn named_network(c: &Ctx, name: &str, any_network: bool) -> MaasResult<String> {
    let subnets = subnets_by_cidr(c)?;
    if let Some((cidr, _)) = subnets
        .iter()
        .find(|(cidr, v)| *cidr == name || v["id"].as_u64().is_some_and(|n| n.to_string() == name))
    {
        return Ok(cidr.clone());
    }
    if any_network {
        let cidr: crate::net::Cidr = name
            .parse()
            .map_err(|e| MaasError::bad_request(format!("destination: {name:?}: {e}")))?;
        return Ok(cidr.to_string());
    }
    Err(MaasError::bad_request(format!(
        "source: {name} is not a subnet of the boot network"
    )))
}

pub(crate) async fn create_static_route(c: Ctx) -> Reply {
    let p = c.principal()?;
    let source = named_network(&c, &c.params.required("source")?, false)?;
    let destination = named_network(&c, &c.params.required("destination")?, true)?;
    let gateway_text = c.params.required("gateway_ip")?;
    let gateway = gateway_text.parse().map_err(|_| {
        MaasError::bad_request(format!(
            "gateway_ip: {gateway_text:?} is not an IPv4 address"
        ))
    })?;
    let metric = match c.params.number("metric")? {
        None => 0,
        Some(n) => u32::try_from(n)
            .map_err(|_| MaasError::bad_request(format!("metric: {n} is too large")))?,
    };
    let r = c
        .state
        .service
        .create_static_route(p, source, destination, gateway, metric)
        .await?;
    json(static_route_json(&c, &r, &subnets_by_cidr(&c)?)?)
}

pub(crate) async fn delete_static_route(c: Ctx) -> Reply {
    let p = c.principal()?;
    let id = route_id(&c)?;
    c.state.service.delete_static_route(p, id).await?;
    super::no_content()
}

/// rackbox serves no DNS records yet: an empty list, whatever the filters.
pub(crate) async fn dns_resources(c: Ctx) -> Reply {
    for name in ["domain", "name", "rrtype"] {
        c.params.text(name)?;
    }
    json(json!([]))
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

/// GET boot-sources/: the mirror manifests the image cache synced from, as MAAS's boot sources
/// (rackbox checks each file's sha256 from the manifest; there is no keyring).
pub(crate) async fn boot_sources(c: Ctx) -> Reply {
    json(Value::Array(boot_source_list(&c)?))
}

pub(crate) async fn boot_source(c: Ctx) -> Reply {
    let id = c.arg("id").to_string();
    boot_source_list(&c)?
        .into_iter()
        .find(|s| s["id"].as_u64().is_some_and(|n| n.to_string() == id))
        .map_or_else(
            || {
                Err(MaasError::not_found(format!(
                    "boot source {id} does not exist"
                )))
            },
            json,
        )
}

fn boot_source_list(c: &Ctx) -> MaasResult<Vec<Value>> {
    let mirrors = c
        .state
        .images
        .mirrors()
        .map_err(|e| MaasError::unavailable(format!("image cache: {e}")))?;
    Ok(mirrors
        .iter()
        .enumerate()
        .map(|(i, m)| {
            json!({
                "id": i + 1,
                "url": m.url,
                "keyring_filename": "",
                "keyring_data": "",
                "created": super::nodes::timestamp(m.first_synced_ms),
                "updated": super::nodes::timestamp(m.last_synced_ms),
                "resource_uri": format!("{}boot-sources/{}/", super::PREFIX, i + 1),
            })
        })
        .collect())
}
