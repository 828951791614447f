//! Logging in and out of the page: a password login through the service's login gate (failed
//! logins slowed per user and per source, as for the API) makes a session whose cookie is
//! HttpOnly and SameSite=Strict.

use askama::Template;
use axum::Form;
use axum::extract::{ConnectInfo, Extension, Query, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Redirect, Response};
use serde::Deserialize;

use super::view::{Layout, render};
use super::{SESSION_COOKIE, Viewer};
use crate::http::AppState;

#[derive(Template)]
#[template(path = "page/login.html")]
struct LoginPage {
    layout: Option<Layout>,
    next: String,
    username: String,
    error: String,
}

#[derive(Deserialize)]
pub(super) struct NextQuery {
    next: Option<String>,
}

#[derive(Deserialize)]
pub(super) struct LoginForm {
    username: String,
    password: String,
    next: Option<String>,
}

/// Where a login may lead: a path of this page, never another site (`//host` or a scheme).
fn safe_next(next: Option<&str>) -> String {
    match next {
        Some(n) if n.starts_with('/') && !n.starts_with("//") && !n.contains('\\') => n.into(),
        _ => "/".into(),
    }
}

pub(super) async fn form(Query(q): Query<NextQuery>) -> Response {
    render(&LoginPage {
        layout: None,
        next: safe_next(q.next.as_deref()),
        username: String::new(),
        error: String::new(),
    })
}

pub(super) async fn submit(
    State(s): State<AppState>,
    source: Option<Extension<ConnectInfo<std::net::SocketAddr>>>,
    Form(f): Form<LoginForm>,
) -> Response {
    let source = source.map(|Extension(ConnectInfo(addr))| addr.ip());
    let next = safe_next(f.next.as_deref());
    match s
        .service
        .login_session(&f.username, &f.password, source)
        .await
    {
        Ok(session) => {
            let cookie = format!(
                "{SESSION_COOKIE}={}; Path=/; HttpOnly; SameSite=Strict; Max-Age={}",
                session.cookie,
                session.lifetime.as_secs()
            );
            let mut response = Redirect::to(&next).into_response();
            if let Ok(value) = HeaderValue::from_str(&cookie) {
                response.headers_mut().insert(header::SET_COOKIE, value);
            }
            response
        }
        Err(e) => {
            let status =
                StatusCode::from_u16(e.kind().http_status()).unwrap_or(StatusCode::UNAUTHORIZED);
            let page = LoginPage {
                layout: None,
                next,
                username: f.username,
                error: e.to_string(),
            };
            (status, render(&page)).into_response()
        }
    }
}

pub(super) async fn logout(
    State(s): State<AppState>,
    Extension(viewer): Extension<Viewer>,
) -> Response {
    if let Err(error) = s.service.end_session(&viewer.session).await {
        return super::view::refusal(
            StatusCode::SERVICE_UNAVAILABLE,
            &format!("the session could not be ended: {error}"),
        );
    }
    let mut response = Redirect::to("/login").into_response();
    response.headers_mut().insert(
        header::SET_COOKIE,
        HeaderValue::from_static("rackbox_session=; Path=/; HttpOnly; SameSite=Strict; Max-Age=0"),
    );
    response
}

#[cfg(test)]
mod tests {
    use super::safe_next;

    #[test]
    fn a_login_leads_only_to_a_page_of_this_site() {
        assert_eq!(safe_next(Some("/machines?q=a")), "/machines?q=a");
        assert_eq!(safe_next(Some("//evil.example/")), "/");
        assert_eq!(safe_next(Some("https://evil.example/")), "/");
        assert_eq!(safe_next(Some("/\\evil.example")), "/");
        assert_eq!(safe_next(None), "/");
    }
}
