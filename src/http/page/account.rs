//! The viewer's own account: SSH keys (installed on the machines they deploy), API tokens
//! (native and MAAS keys, shown once when made) and browser sessions, each revocable.

use askama::Template;
use axum::Form;
use axum::extract::{Extension, Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde::Deserialize;

use super::Viewer;
use super::view::{self, Layout, Notice, Refusal, after_form, render};
use crate::http::AppState;
use crate::service::{ServiceError, TokenKind, UserView};

/// A token as the page lists it (never its secret).
pub(super) struct TokenRow {
    id: String,
    name: String,
    kind: String,
    made: String,
    /// The session this page is open in (revoking it is logging out).
    current: bool,
}

/// A token just made: its one showing.
pub(super) struct NewToken {
    pub(super) name: String,
    pub(super) kind: &'static str,
    pub(super) token: String,
}

#[derive(Template)]
#[template(path = "page/account.html")]
struct AccountPage {
    layout: Option<Layout>,
    user: UserView,
    tokens: Vec<TokenRow>,
    new_token: Option<NewToken>,
    notice: Option<Notice>,
}

fn account_page(
    s: &AppState,
    viewer: &Viewer,
    new_token: Option<NewToken>,
    notice: Option<Notice>,
) -> Result<AccountPage, Refusal> {
    let p = viewer.principal();
    let user = s.service.user(p, &p.username)?;
    let tokens = s
        .service
        .list_tokens(p)?
        .into_iter()
        .filter(|t| t.username == p.username)
        .map(|t| TokenRow {
            current: t.id == viewer.session.id,
            made: view::time(t.created_ms),
            id: t.id,
            name: t.name,
            kind: t.kind,
        })
        .collect();
    Ok(AccountPage {
        layout: Some(Layout::new(viewer, "account")),
        user,
        tokens,
        new_token,
        notice,
    })
}

/// Back to the account page, or the page again saying why the change was refused.
fn done(
    s: &AppState,
    viewer: &Viewer,
    outcome: Result<(), ServiceError>,
    title: &str,
) -> Result<Response, Refusal> {
    after_form(outcome.map_err(Refusal::from), "/account", title, |n| {
        account_page(s, viewer, None, Some(n))
    })
}

pub(super) async fn show(
    State(s): State<AppState>,
    Extension(viewer): Extension<Viewer>,
) -> Result<Response, Refusal> {
    Ok(render(&account_page(&s, &viewer, None, None)?))
}

#[derive(Deserialize)]
pub(super) struct KeyForm {
    key: String,
}

pub(super) async fn add_key(
    State(s): State<AppState>,
    Extension(viewer): Extension<Viewer>,
    Form(f): Form<KeyForm>,
) -> Result<Response, Refusal> {
    let p = viewer.principal();
    let outcome = s.service.add_ssh_key(p, &p.username, &f.key).await;
    done(&s, &viewer, outcome.map(drop), "The key was not added")
}

pub(super) async fn delete_key(
    State(s): State<AppState>,
    Extension(viewer): Extension<Viewer>,
    Path(id): Path<u32>,
) -> Result<Response, Refusal> {
    let p = viewer.principal();
    let outcome = s.service.delete_ssh_key(p, &p.username, id).await;
    done(&s, &viewer, outcome, "The key was not deleted")
}

/// The form that makes a token (here and in the first-boot setup).
#[derive(Deserialize)]
pub(super) struct TokenForm {
    name: String,
    kind: String,
}

impl TokenForm {
    /// Makes the viewer's token: the one showing of it, and what kind it is in words.
    pub(super) async fn make(
        &self,
        s: &AppState,
        viewer: &Viewer,
    ) -> Result<NewToken, ServiceError> {
        let p = viewer.principal();
        let (kind, label) = match self.kind.as_str() {
            "maas" => (TokenKind::Maas, "MAAS API key"),
            _ => (TokenKind::Native, "API token"),
        };
        let made = s
            .service
            .create_token(p, &p.username, self.name.trim(), kind)
            .await?;
        Ok(NewToken {
            name: made.name,
            kind: label,
            token: made.token,
        })
    }
}

pub(super) async fn make_token(
    State(s): State<AppState>,
    Extension(viewer): Extension<Viewer>,
    Form(f): Form<TokenForm>,
) -> Result<Response, Refusal> {
    match f.make(&s, &viewer).await {
        Ok(made) => {
            let page = account_page(&s, &viewer, Some(made), None)?;
            Ok((StatusCode::CREATED, render(&page)).into_response())
        }
        Err(e) => done(&s, &viewer, Err(e), "No token was made"),
    }
}

pub(super) async fn revoke_token(
    State(s): State<AppState>,
    Extension(viewer): Extension<Viewer>,
    Path(id): Path<String>,
) -> Result<Response, Refusal> {
    let outcome = s.service.revoke_token(viewer.principal(), &id).await;
    done(&s, &viewer, outcome, "The token was not revoked")
}
