//! files/: per-user file storage (Juju's tools and bootstrap state), through the service's own
//! table.

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::IntoResponse;
use serde_json::{Value, json};

use super::{Ctx, MaasError, PREFIX, Reply, json};
use crate::service::{ServiceError, StoredFile};

fn file_json(f: &StoredFile, with_content: bool) -> Value {
    let mut v = json!({
        "filename": f.filename,
        "owner": f.owner,
        "resource_uri": format!("{PREFIX}files/{}/", f.filename),
        "anon_resource_uri": format!("{PREFIX}files/?op=get_by_key&key={}", f.key),
    });
    if with_content && let Value::Object(map) = &mut v {
        map.insert(
            "content".into(),
            Value::String(f.content_base64().to_string()),
        );
    }
    v
}

fn raw(f: &StoredFile) -> Reply {
    let mut r = f.content().map_err(ServiceError::from)?.into_response();
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/octet-stream"),
    );
    Ok(r)
}

/// GET files/ (optional `prefix`).
pub async fn list(c: Ctx) -> Reply {
    let p = c.principal()?;
    let prefix = c.params.nonempty("prefix")?;
    let files = c.state.service.list_files(p, prefix.as_deref())?;
    json(Value::Array(
        files.iter().map(|f| file_json(f, false)).collect(),
    ))
}

/// POST files/ or files/?op=add: `filename` and the content in a `file` part.
pub async fn add(c: Ctx) -> Reply {
    let p = c.principal()?;
    let filename = c.params.required("filename")?;
    let content = c.params.bytes("file").ok_or_else(|| {
        MaasError::bad_request("file: the file content is required (a multipart part named file)")
    })?;
    let f = c
        .state
        .service
        .put_file(p, &filename, &content.value)
        .await?;
    let mut r = axum::Json(file_json(&f, false)).into_response();
    *r.status_mut() = StatusCode::CREATED;
    Ok(r)
}

/// GET files/?op=get&filename=...: the raw content.
pub async fn get(c: Ctx) -> Reply {
    let p = c.principal()?;
    let filename = c.params.required("filename")?;
    raw(&c.state.service.file(p, &filename)?)
}

/// GET files/?op=get_by_key&key=... (anonymous): the raw content.
pub async fn get_by_key(c: Ctx) -> Reply {
    let key = c.params.required("key")?;
    raw(&c.state.service.file_by_key(&key)?)
}

/// GET files/{filename}/: the file with its content in base64.
pub async fn read(c: Ctx) -> Reply {
    let p = c.principal()?;
    json(file_json(
        &c.state.service.file(p, c.arg("filename"))?,
        true,
    ))
}

/// DELETE files/{filename}/
pub async fn delete(c: Ctx) -> Reply {
    let p = c.principal()?;
    c.state.service.delete_file(p, c.arg("filename")).await?;
    super::no_content()
}

/// POST files/?op=delete&filename=... (the older form of delete).
pub(crate) async fn delete_by_param(c: Ctx) -> Reply {
    let p = c.principal()?;
    let filename = c.params.required("filename")?;
    c.state.service.delete_file(p, &filename).await?;
    super::no_content()
}
