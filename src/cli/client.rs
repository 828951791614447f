//! The HTTP client of the native API, and where the CLI finds its URL and token.

use std::path::PathBuf;

use reqwest::Method;
use serde::{Deserialize, Serialize};
use serde_json::Value;

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
        let url = format!("{}{path}", self.url);
        let mut req = self.http.request(method, &url).query(query);
        if let Some(t) = &self.token {
            req = req.bearer_auth(t);
        }
        if let Some(b) = body {
            req = req.json(b);
        }
        let resp = req.send().await.map_err(|e| CliError::Connect {
            url: self.url.clone(),
            reason: error_chain(&e),
        })?;
        let status = resp.status().as_u16();
        let text = resp.text().await.map_err(|e| CliError::Connect {
            url: self.url.clone(),
            reason: error_chain(&e),
        })?;
        if !(200..300).contains(&status) {
            let message = serde_json::from_str::<Value>(&text)
                .ok()
                .and_then(|v| {
                    v.get("message")
                        .and_then(|m| m.as_str())
                        .map(str::to_string)
                })
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
}

impl Client {
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
        if let Some(t) = &self.token {
            req = req.bearer_auth(t);
        }
        let resp = req.send().await.map_err(|e| CliError::Connect {
            url: self.url.clone(),
            reason: error_chain(&e),
        })?;
        let status = resp.status().as_u16();
        let text = resp.text().await.map_err(|e| CliError::Connect {
            url: self.url.clone(),
            reason: error_chain(&e),
        })?;
        let value = serde_json::from_str::<Value>(&text).unwrap_or(Value::String(text));
        if !(200..300).contains(&status) {
            let message = value
                .get("message")
                .and_then(|m| m.as_str())
                .map(str::to_string)
                .unwrap_or_else(|| value.to_string());
            return Err(CliError::Api { status, message });
        }
        Ok(value)
    }
}

fn error_chain(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        text.push_str(": ");
        text.push_str(&s.to_string());
        source = s.source();
    }
    text
}
