//! The image cache: the OS images machines deploy and the boot resources they network-boot,
//! the cache's space, imports under way with their progress (the list reads itself again every
//! two seconds while one runs), fetching an image from a URL, and deleting one (refused, with the
//! reason, while a machine deploys it).

use askama::Template;
use axum::Form;
use axum::extract::{Extension, Path, State};

use axum::response::{IntoResponse, Response};
use serde::Deserialize;

use super::Viewer;
use super::view::{self, Layout, Notice, Refusal, after_form, render};
use crate::http::AppState;
use crate::model::api::ImageRequest;

/// An image as the page prints it.
pub(super) struct ImageRow {
    name: String,
    title: String,
    os: String,
    format: &'static str,
    size: String,
    default: bool,
    added: String,
}

/// A boot resource as the page prints it.
pub(super) struct BootRow {
    arch: String,
    name: String,
    size: String,
}

/// An import as the page prints it.
pub(super) struct ImportRow {
    name: String,
    source: String,
    state: String,
    percent: Option<u8>,
    text: String,
    error: String,
}

#[derive(Template)]
#[template(path = "page/images.html")]
struct ImagesPage {
    layout: Option<Layout>,
    images: Vec<ImageRow>,
    boot: Vec<BootRow>,
    imports: Vec<ImportRow>,
    /// Whether an import runs: the page then reads itself again.
    importing: bool,
    space: String,
    notice: Option<Notice>,
}

fn images_page(
    s: &AppState,
    viewer: &Viewer,
    notice: Option<Notice>,
) -> Result<ImagesPage, Refusal> {
    let list = s
        .images
        .list_images()
        .map_err(crate::service::ServiceError::from)?;
    let boot = s
        .images
        .list_boot()
        .map_err(crate::service::ServiceError::from)?;
    let mut imports: Vec<_> = s.images.imports();
    imports.sort_by_key(|i| std::cmp::Reverse(i.started_ms));
    let importing = imports.iter().any(|i| i.finished_ms.is_none());
    Ok(ImagesPage {
        layout: Some(Layout::new(viewer, "images")),
        space: format!(
            "{} used, {} free of {} ({} kept free)",
            view::bytes(list.space.used_bytes),
            view::bytes(list.space.free_bytes),
            view::bytes(list.space.total_bytes),
            view::bytes(list.space.reserve_bytes)
        ),
        images: list
            .images
            .into_iter()
            .map(|v| ImageRow {
                os: format!("{} {} {}", v.image.os, v.image.release, v.image.arch),
                format: v.image.format.as_str(),
                size: view::bytes(v.image.size),
                default: v.default,
                added: view::time(v.image.created_ms),
                title: v.image.title,
                name: v.image.name,
            })
            .collect(),
        boot: boot
            .into_iter()
            .map(|b| BootRow {
                arch: b.boot.arch,
                name: b.boot.name,
                size: view::bytes(b.boot.size),
            })
            .collect(),
        imports: imports
            .into_iter()
            .take(20)
            .map(|i| {
                let percent = i
                    .bytes_total
                    .filter(|t| *t > 0)
                    .map(|t| (i.bytes_done.min(t) * 100 / t) as u8);
                ImportRow {
                    text: match i.bytes_total {
                        Some(t) => format!("{} of {}", view::bytes(i.bytes_done), view::bytes(t)),
                        None => view::bytes(i.bytes_done),
                    },
                    name: format!("{} {}", i.kind, i.name),
                    source: i.source,
                    state: i.state,
                    percent,
                    error: i.error.unwrap_or_default(),
                }
            })
            .collect(),
        importing,
        notice,
    })
}

pub(super) async fn show(
    State(s): State<AppState>,
    Extension(viewer): Extension<Viewer>,
) -> Result<Response, Refusal> {
    Ok(render(&images_page(&s, &viewer, None)?))
}

#[derive(Deserialize)]
pub(super) struct FetchForm {
    name: String,
    url: String,
    #[serde(default)]
    os: String,
    #[serde(default)]
    release: String,
    #[serde(default)]
    default: Option<String>,
}

pub(super) async fn fetch(
    State(s): State<AppState>,
    Extension(viewer): Extension<Viewer>,
    Form(f): Form<FetchForm>,
) -> Result<Response, Refusal> {
    let given = |v: &str| (!v.trim().is_empty()).then(|| v.trim().to_string());
    let req = ImageRequest {
        name: f.name.trim().to_string(),
        url: given(&f.url),
        os: given(&f.os),
        release: given(&f.release),
        default: f.default.is_some(),
        ..ImageRequest::default()
    };
    let outcome = s
        .images
        .start_fetch_image(req)
        .map(drop)
        .map_err(|e| crate::service::ServiceError::from(e).into());
    after_form(outcome, "/images", "The import was not started", |n| {
        images_page(&s, &viewer, Some(n))
    })
}

pub(super) async fn delete(
    State(s): State<AppState>,
    Extension(viewer): Extension<Viewer>,
    Path(name): Path<String>,
) -> Result<Response, Refusal> {
    let outcome = s.service.delete_image(viewer.principal(), &name).await;
    let title = format!("{name} was not deleted");
    after_form(outcome.map_err(Refusal::from), "/images", &title, |n| {
        images_page(&s, &viewer, Some(n))
    })
}

#[derive(Deserialize)]
pub(super) struct SyncForm {
    url: String,
}

/// Syncs from a mirror's manifest: the new and changed images start importing (their progress
/// shows on this page), and the page says what the mirror had.
pub(super) async fn sync(
    State(s): State<AppState>,
    Extension(viewer): Extension<Viewer>,
    Form(f): Form<SyncForm>,
) -> Result<Response, Refusal> {
    let req = crate::images::SyncRequest {
        url: Some(f.url.trim().to_string()),
        manifest: None,
    };
    let notice = match s.images.sync(req).await {
        Ok(r) => {
            let list = |what: &str, names: &[String]| {
                (!names.is_empty()).then(|| format!("{what}: {}", names.join(", ")))
            };
            let mut lines: Vec<String> = [
                list("new, importing", &r.added),
                list("changed upstream, importing", &r.updated),
                list("unchanged", &r.unchanged),
                list("here but not on the mirror (kept)", &r.local_only),
            ]
            .into_iter()
            .flatten()
            .collect();
            lines.extend(
                r.failed
                    .iter()
                    .map(|f| format!("{} failed: {}", f.name, f.error)),
            );
            Notice {
                error: !r.failed.is_empty(),
                title: format!("Synced from {}", r.source),
                lines,
            }
        }
        Err(e) => {
            let refusal = Refusal::from(crate::service::ServiceError::from(e));
            let page = images_page(
                &s,
                &viewer,
                Some(Notice::error(
                    "The mirror was not synced",
                    vec![refusal.message.clone()],
                )),
            )?;
            return Ok((refusal.status, render(&page)).into_response());
        }
    };
    Ok(render(&images_page(&s, &viewer, Some(notice))?))
}

/// A browser's image upload: `multipart/form-data` with the image's name and OS fields first and
/// the file last (the template orders them so), the file streamed into the image cache as it
/// arrives: never held whole. The CSRF token comes in the action URL (see `page::FILE_ROUTES`).
pub(super) async fn upload(
    State(s): State<AppState>,
    Extension(viewer): Extension<Viewer>,
    headers: axum::http::HeaderMap,
    body: axum::body::Body,
) -> Result<Response, Refusal> {
    let title = "The image was not uploaded";
    let again = |e: Refusal| -> Result<Response, Refusal> {
        let page = images_page(
            &s,
            &viewer,
            Some(Notice::error(title, vec![e.message.clone()])),
        )?;
        Ok((e.status, render(&page)).into_response())
    };
    let bad = |message: String| Refusal {
        status: axum::http::StatusCode::BAD_REQUEST,
        message,
    };
    let boundary = headers
        .get(axum::http::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|ct| multer::parse_boundary(ct).ok());
    let Some(boundary) = boundary else {
        return again(bad("the upload must be a multipart/form-data form".into()));
    };
    let mut parts = multer::Multipart::new(body.into_data_stream(), boundary);
    let mut req = ImageRequest::default();
    loop {
        let field = match parts.next_field().await {
            Ok(Some(field)) => field,
            Ok(None) => return again(bad("the form had no file".into())),
            Err(e) => return again(bad(format!("the upload is not a valid form: {e}"))),
        };
        let name = field.name().unwrap_or_default().to_string();
        if name == "file" {
            if req.name.trim().is_empty() {
                // The file's own name, without its extension, when the form named none.
                req.name = field
                    .file_name()
                    .and_then(|f| f.split('.').next())
                    .unwrap_or_default()
                    .to_string();
            }
            let stream = futures_util::TryStreamExt::map_err(field, |e| e.to_string());
            let source = crate::images::Source::Stream(Box::pin(stream));
            return match s.images.import_image(req, source).await {
                Ok(_) => Ok(axum::response::Redirect::to("/images").into_response()),
                Err(e) => again(crate::service::ServiceError::from(e).into()),
            };
        }
        // A text field before the file: at most a line's worth.
        let text = match field.text().await {
            Ok(t) if t.len() <= 256 => t.trim().to_string(),
            Ok(_) => return again(bad(format!("the field {name} is too long"))),
            Err(e) => return again(bad(format!("the upload is not a valid form: {e}"))),
        };
        let given = (!text.is_empty()).then_some(text.clone());
        match name.as_str() {
            "name" => req.name = text,
            "os" => req.os = given,
            "release" => req.release = given,
            "default" => req.default = true,
            _ => {}
        }
    }
}
