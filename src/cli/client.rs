//! The HTTP client of the native API, and where the CLI finds its URL and token.

use std::path::PathBuf;

use reqwest::Method;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::model::error::error_chain;

/// One line a person reads; the CLI prints it and exits non-zero.
#[derive(Debug, thiserror::Error)]
pub enum CliError {
    #[error("{0}")]
    Usage(String),
    #[error("cannot reach rackbox at {url}: {reason}")]
    Connect { url: String, reason: String },
    #[error("{message} (HTTP {status})")]
    Api { status: u16, message: String },
    #[error("{0}")]
    Local(String),
}

/// `~/.config/rackbox/cli.toml`: where `rackbox login` saves the URL and token.
#[derive(Debug, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CliConfig {
    #[serde(default)]
    pub url: Option<String>,
    #[serde(default)]
    pub token: Option<String>,
}

impl CliConfig {
    pub fn path() -> Option<PathBuf> {
        if let Some(dir) = std::env::var_os("XDG_CONFIG_HOME") {
            return Some(PathBuf::from(dir).join("rackbox/cli.toml"));
        }
        std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".config/rackbox/cli.toml"))
    }

    pub fn load() -> Result<CliConfig, CliError> {
        let Some(path) = CliConfig::path() else {
            return Ok(CliConfig::default());
        };
        match std::fs::read_to_string(&path) {
            Ok(text) => toml::from_str(&text).map_err(|e| {
                CliError::Local(format!("{}: {}", path.display(), e.to_string().trim()))
            }),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(CliConfig::default()),
            Err(e) => Err(CliError::Local(format!(
                "cannot read {}: {e}",
                path.display()
            ))),
        }
    }

    pub fn save(&self) -> Result<PathBuf, CliError> {
        use std::io::Write;
        use std::os::unix::fs::OpenOptionsExt;
        let path = CliConfig::path().ok_or_else(|| CliError::Local("HOME is not set".into()))?;
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir)
                .map_err(|e| CliError::Local(format!("cannot create {}: {e}", dir.display())))?;
        }
        let text = toml::to_string(self).map_err(|e| CliError::Local(e.to_string()))?;
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o600)
            .open(&path)
            .map_err(|e| CliError::Local(format!("cannot write {}: {e}", path.display())))?;
        f.write_all(text.as_bytes())
            .map_err(|e| CliError::Local(format!("cannot write {}: {e}", path.display())))?;
        Ok(path)
    }
}

pub struct Client {
    http: reqwest::Client,
    pub url: String,
    token: Option<String>,
}

impl Client {
    pub fn new(url: String, token: Option<String>) -> Result<Client, CliError> {
        let _ = rustls::crypto::ring::default_provider().install_default();
        let http = reqwest::Client::builder()
            .timeout(std::time::Duration::from_secs(60))
            .build()
            .map_err(|e| CliError::Local(format!("cannot build the HTTP client: {e}")))?;
        Ok(Client {
            http,
            url: url.trim_end_matches('/').to_string(),
            token,
        })
    }

    /// Sends a request and returns the JSON answer (Null for an empty one).
    pub async fn call(
        &self,
        method: Method,
        path: &str,
        query: &[(&str, String)],
        body: Option<&Value>,
    ) -> Result<Value, CliError> {
        let mut req = self
            .http
            .request(method, format!("{}{path}", self.url))
            .query(query);
        if let Some(b) = body {
            req = req.json(b);
        }
        let (status, text) = self.exchange(req).await?;
        if !(200..300).contains(&status) {
            let message = message_of(&serde_json::from_str(&text).unwrap_or(Value::Null))
                .unwrap_or_else(|| text.trim().to_string());
            let hint = if status == 401 && self.token.is_none() {
                "; log in with `rackbox login` or pass --token / RACKBOX_TOKEN"
            } else {
                ""
            };
            return Err(CliError::Api {
                status,
                message: format!("{message}{hint}"),
            });
        }
        if text.trim().is_empty() {
            return Ok(Value::Null);
        }
        if text.trim_start().starts_with(['{', '[']) {
            serde_json::from_str(&text)
                .map_err(|e| CliError::Local(format!("rackbox answered malformed JSON: {e}")))
        } else {
            Ok(Value::String(text))
        }
    }

    /// GET `path`.
    pub async fn get(&self, path: &str) -> Result<Value, CliError> {
        self.call(Method::GET, path, &[], None).await
    }

    /// GET `path` with a query string.
    pub async fn get_query(&self, path: &str, query: &[(&str, String)]) -> Result<Value, CliError> {
        self.call(Method::GET, path, query, None).await
    }

    /// DELETE `path`; the API answers a deletion with no body.
    pub async fn delete(&self, path: &str) -> Result<(), CliError> {
        self.call(Method::DELETE, path, &[], None).await.map(drop)
    }

    /// POST `path` without a body: an operation that takes no parameters.
    pub async fn post(&self, path: &str) -> Result<Value, CliError> {
        self.call(Method::POST, path, &[], None).await
    }

    /// Sends `request` (one of `model::api`'s request types) as the JSON body, without its
    /// null and empty-list fields, so the API's own defaults apply to what the user left out.
    pub async fn send(
        &self,
        method: Method,
        path: &str,
        request: &impl Serialize,
    ) -> Result<Value, CliError> {
        let body = serde_json::to_value(request)
            .map(compact)
            .map_err(|e| CliError::Local(format!("cannot encode the request: {e}")))?;
        self.call(method, path, &[], Some(&body)).await
    }

    /// Sends a streamed body (an image upload) with `Content-Length` when it is known. No
    /// overall time limit, unlike [`Client::call`]: an upload takes as long as it takes; only
    /// connecting is bounded.
    pub async fn upload(
        &self,
        path: &str,
        query: &[(&str, String)],
        body: reqwest::Body,
        length: Option<u64>,
    ) -> Result<Value, CliError> {
        let http = reqwest::Client::builder()
            .connect_timeout(std::time::Duration::from_secs(30))
            .build()
            .map_err(|e| CliError::Local(format!("cannot build the HTTP client: {e}")))?;
        let mut req = http
            .post(format!("{}{path}", self.url))
            .query(query)
            .header(reqwest::header::CONTENT_TYPE, "application/octet-stream")
            .body(body);
        if let Some(len) = length {
            req = req.header(reqwest::header::CONTENT_LENGTH, len);
        }
        let (status, text) = self.exchange(req).await?;
        let value = serde_json::from_str::<Value>(&text).unwrap_or(Value::String(text));
        if !(200..300).contains(&status) {
            let message = message_of(&value).unwrap_or_else(|| value.to_string());
            return Err(CliError::Api { status, message });
        }
        Ok(value)
    }

    /// Sends `req` with the caller's token and reads the whole answer: its status and text.
    async fn exchange(&self, req: reqwest::RequestBuilder) -> Result<(u16, String), CliError> {
        let req = match &self.token {
            Some(token) => req.bearer_auth(token),
            None => req,
        };
        let unreachable = |e: reqwest::Error| CliError::Connect {
            url: self.url.clone(),
            reason: error_chain(&e),
        };
        let resp = req.send().await.map_err(unreachable)?;
        let status = resp.status().as_u16();
        let text = resp.text().await.map_err(unreachable)?;
        Ok((status, text))
    }
}

/// The `message` of an API error answer, when it has one.
fn message_of(answer: &Value) -> Option<String> {
    answer
        .get("message")
        .and_then(Value::as_str)
        .map(str::to_string)
}

/// A request body without its absent (null) and empty-list fields.
fn compact(v: Value) -> Value {
    match v {
        Value::Object(map) => Value::Object(
            map.into_iter()
                .filter(|(_, v)| !v.is_null() && !matches!(v, Value::Array(a) if a.is_empty()))
                .collect(),
        ),
        other => other,
    }
}
