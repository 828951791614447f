//! Administration: the appliance's users and their roles, and the zones, pools and tags that
//! group machines. Admins only (the route table says so); the service checks again.

use std::collections::BTreeMap;

use askama::Template;
use axum::Form;
use axum::extract::{Extension, Path, State};
use axum::http::StatusCode;
use axum::response::Response;
use serde::Deserialize;

use super::Viewer;
use super::view::{self, Layout, Notice, Refusal, after_form, render};
use crate::http::AppState;
use crate::model::catalog::CatalogKind;
use crate::service::{MachineFilter, NewUser, ServiceError, UserEdit};

/// A user as the admin page lists them.
pub(super) struct UserRow {
    username: String,
    email: String,
    role: &'static str,
    keys: usize,
    owns: usize,
    made: String,
    /// The admin looking at the page (who may not delete or demote themselves here).
    me: bool,
}

/// One zone, pool or tag, with how many machines it holds.
pub(super) struct CatalogRow {
    name: String,
    /// The name percent-encoded, for links and form actions.
    encoded: String,
    description: String,
    machines: usize,
    /// The default zone or pool, which stays.
    fixed: bool,
}

/// One of the three catalogs, as a section of the page.
pub(super) struct CatalogSection {
    /// The path segment and form value: "zones", "pools" or "tags".
    key: &'static str,
    title: &'static str,
    /// The kind's name in one ("zone").
    one: &'static str,
    explain: &'static str,
    rows: Vec<CatalogRow>,
}

/// The catalogs in the order the page shows them, with their path segments.
const CATALOGS: [(CatalogKind, &str, &str, &str); 3] = [
    (
        CatalogKind::Zone,
        "zones",
        "Zones",
        "Where machines are: allocation asks for a zone by name.",
    ),
    (
        CatalogKind::Pool,
        "pools",
        "Resource pools",
        "Machines kept for one team or purpose: allocation asks for a pool by name.",
    ),
    (
        CatalogKind::Tag,
        "tags",
        "Tags",
        "Free labels on machines: allocation asks for tags, the machines list filters by them.",
    ),
];

fn catalog_kind(key: &str) -> Result<CatalogKind, Refusal> {
    CATALOGS
        .iter()
        .find(|(_, k, _, _)| *k == key)
        .map(|(kind, _, _, _)| *kind)
        .ok_or_else(|| Refusal {
            status: StatusCode::NOT_FOUND,
            message: format!("there is no catalog {key:?}: zones, pools or tags"),
        })
}

#[derive(Template)]
#[template(path = "page/admin.html")]
struct AdminPage {
    layout: Option<Layout>,
    /// The session's CSRF token, for the page's many forms.
    csrf: String,
    users: Vec<UserRow>,
    catalogs: Vec<CatalogSection>,
    notice: Option<Notice>,
}

fn admin_page(s: &AppState, viewer: &Viewer, notice: Option<Notice>) -> Result<AdminPage, Refusal> {
    let p = viewer.principal();
    let machines = s.service.list_machines(
        p,
        &MachineFilter {
            limit: Some(0),
            ..MachineFilter::default()
        },
    )?;
    let mut owned: BTreeMap<&str, usize> = BTreeMap::new();
    for m in &machines.items {
        if let Some(owner) = &m.owner {
            *owned.entry(owner.as_str()).or_default() += 1;
        }
    }
    let users = s
        .service
        .list_users(p)?
        .into_iter()
        .map(|u| UserRow {
            owns: owned.get(u.username.as_str()).copied().unwrap_or(0),
            me: u.username == p.username,
            keys: u.ssh_keys.len(),
            made: view::time(u.created_ms),
            role: u.role.as_str(),
            email: u.email,
            username: u.username,
        })
        .collect();
    let mut catalogs = Vec::new();
    for (kind, key, title, explain) in CATALOGS {
        let rows = s
            .service
            .list_catalog(kind)?
            .into_iter()
            .map(|t| CatalogRow {
                machines: machines
                    .items
                    .iter()
                    .filter(|m| kind.used_by(m, &t.name))
                    .count(),
                fixed: t.name == "default" && kind != CatalogKind::Tag,
                encoded: view::url_encode(&t.name),
                name: t.name,
                description: t.description,
            })
            .collect();
        catalogs.push(CatalogSection {
            key,
            title,
            one: kind.name(),
            explain,
            rows,
        });
    }
    Ok(AdminPage {
        layout: Some(Layout::new(viewer, "admin")),
        csrf: viewer.session.csrf_token.clone(),
        users,
        catalogs,
        notice,
    })
}

/// Back to the admin page, or the page again saying why the change was refused.
fn done(
    s: &AppState,
    viewer: &Viewer,
    outcome: Result<(), ServiceError>,
    title: &str,
) -> Result<Response, Refusal> {
    after_form(outcome.map_err(Refusal::from), "/admin", title, |n| {
        admin_page(s, viewer, Some(n))
    })
}

pub(super) async fn show(
    State(s): State<AppState>,
    Extension(viewer): Extension<Viewer>,
) -> Result<Response, Refusal> {
    Ok(render(&admin_page(&s, &viewer, None)?))
}

#[derive(Deserialize)]
pub(super) struct UserForm {
    username: String,
    password: String,
    #[serde(default)]
    email: String,
    #[serde(default)]
    role: String,
}

pub(super) async fn add_user(
    State(s): State<AppState>,
    Extension(viewer): Extension<Viewer>,
    Form(f): Form<UserForm>,
) -> Result<Response, Refusal> {
    let new = NewUser {
        username: f.username.trim().to_string(),
        password: f.password,
        email: f.email.trim().to_string(),
        role: (!f.role.is_empty()).then_some(f.role),
    };
    let outcome = s.service.create_user(viewer.principal(), new).await;
    done(&s, &viewer, outcome.map(drop), "The user was not added")
}

#[derive(Deserialize)]
pub(super) struct RoleForm {
    role: String,
}

pub(super) async fn set_role(
    State(s): State<AppState>,
    Extension(viewer): Extension<Viewer>,
    Path(username): Path<String>,
    Form(f): Form<RoleForm>,
) -> Result<Response, Refusal> {
    let edit = UserEdit {
        role: Some(f.role),
        ..UserEdit::default()
    };
    let outcome = s
        .service
        .edit_user(viewer.principal(), &username, edit)
        .await;
    let title = format!("The role of {username} was not changed");
    done(&s, &viewer, outcome.map(drop), &title)
}

#[derive(Deserialize)]
pub(super) struct PasswordForm {
    password: String,
}

/// Sets a user's password (a forgotten one): their tokens and sessions end with the old one.
pub(super) async fn set_password(
    State(s): State<AppState>,
    Extension(viewer): Extension<Viewer>,
    Path(username): Path<String>,
    Form(f): Form<PasswordForm>,
) -> Result<Response, Refusal> {
    let edit = UserEdit {
        password: Some(f.password),
        ..UserEdit::default()
    };
    let outcome = s
        .service
        .edit_user(viewer.principal(), &username, edit)
        .await;
    let title = format!("The password of {username} was not set");
    done(&s, &viewer, outcome.map(drop), &title)
}

pub(super) async fn delete_user(
    State(s): State<AppState>,
    Extension(viewer): Extension<Viewer>,
    Path(username): Path<String>,
) -> Result<Response, Refusal> {
    let outcome = s.service.delete_user(viewer.principal(), &username).await;
    done(&s, &viewer, outcome, &format!("{username} was not deleted"))
}

#[derive(Deserialize)]
pub(super) struct CatalogForm {
    name: String,
    #[serde(default)]
    description: String,
}

pub(super) async fn add_catalog(
    State(s): State<AppState>,
    Extension(viewer): Extension<Viewer>,
    Path(key): Path<String>,
    Form(f): Form<CatalogForm>,
) -> Result<Response, Refusal> {
    let kind = catalog_kind(&key)?;
    let outcome = s
        .service
        .create_catalog(
            viewer.principal(),
            kind,
            f.name.trim(),
            f.description.trim(),
        )
        .await;
    let title = format!("The {} was not added", kind.name());
    done(&s, &viewer, outcome.map(drop), &title)
}

pub(super) async fn delete_catalog(
    State(s): State<AppState>,
    Extension(viewer): Extension<Viewer>,
    Path((key, name)): Path<(String, String)>,
) -> Result<Response, Refusal> {
    let kind = catalog_kind(&key)?;
    let outcome = s
        .service
        .delete_catalog(viewer.principal(), kind, &name)
        .await;
    let title = format!("The {} {name} was not deleted", kind.name());
    done(&s, &viewer, outcome, &title)
}
