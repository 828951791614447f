//! The agent's side of the agent protocol: JSON over HTTP to `<url>/api/agent/v1/...` with the
//! per-boot bearer token, every call retried with bounded exponential backoff.
//!
//! A machine in a ramdisk has nobody to ask for help, so transient trouble (the appliance
//! restarting, a switch port coming up, a 5xx) is waited out; but never forever: after the
//! retry budget the call fails and the task loop reports or gives up. A 4xx is the appliance's
//! considered answer (bad token, wrong state) and is final at once.

use std::time::Duration;

use serde::Serialize;
use serde_json::Value;

use crate::model::agent_wire::path;
use crate::model::error::error_chain;

use super::inventory::Inventory;

// The protocol's messages are the model's, shared with the appliance.
pub use crate::model::agent_wire::{
    Complete, DeployTask, Enlisted, Fail, ImageFormat, PREFIX, Progress, Task,
};

#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error("the appliance refused {call}: HTTP {status}: {body}")]
    Refused {
        call: String,
        status: u16,
        body: String,
    },
    #[error("gave up on {call} after {attempts} attempts: {last}")]
    GaveUp {
        call: String,
        attempts: u32,
        last: String,
    },
    #[error("the appliance's answer to {call} is not what the protocol says: {reason}")]
    BadAnswer { call: String, reason: String },
    #[error("cannot set up the HTTP client: {0}")]
    Setup(String),
}

/// How long and how often to retry. The delays double from `initial` up to `max_delay`; no new
/// attempt starts after `budget` has passed since the first.
#[derive(Clone, Copy, Debug)]
pub struct RetryPolicy {
    pub initial: Duration,
    pub max_delay: Duration,
    pub budget: Duration,
    /// Deadline of one request (connect + answer; for an image download, connect + headers).
    pub request_timeout: Duration,
}

impl Default for RetryPolicy {
    /// About five minutes of retrying: long enough for the appliance to restart.
    fn default() -> Self {
        RetryPolicy {
            initial: Duration::from_secs(1),
            max_delay: Duration::from_secs(30),
            budget: Duration::from_secs(300),
            request_timeout: Duration::from_secs(60),
        }
    }
}

impl RetryPolicy {
    /// The delay before attempt `n + 1` (n counted from 1).
    pub(crate) fn delay(&self, attempt: u32) -> Duration {
        let factor = 1u32
            .checked_shl(attempt.saturating_sub(1))
            .unwrap_or(u32::MAX);
        self.initial.saturating_mul(factor).min(self.max_delay)
    }
}

/// A secret an enlisting agent makes once per boot and sends with each `/enlist` (see
/// [`Client::enlist`]). Its `Debug` hides it.
#[derive(Clone, PartialEq, Eq)]
pub(crate) struct EnlistKey(String);

impl EnlistKey {
    pub(crate) fn random() -> EnlistKey {
        EnlistKey(crate::model::ids::random_token(32))
    }
}

impl std::fmt::Debug for EnlistKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("EnlistKey(<hidden>)")
    }
}

/// Talks to one appliance.
#[derive(Clone)]
pub struct Client {
    http: reqwest::Client,
    base: String,
    token: Option<String>,
    policy: RetryPolicy,
}

/// Whether an attempt's failure is worth another try.
enum Attempt {
    Retry(String),
    /// Retry, and not before the time the appliance asked for (429 with `Retry-After`).
    Later(String, Option<Duration>),
    Final(ClientError),
}

impl Client {
    /// `base` is the appliance URL without the API prefix, e.g. `http://192.0.2.1:5240`.
    pub fn new(
        base: &str,
        token: Option<String>,
        policy: RetryPolicy,
    ) -> Result<Client, ClientError> {
        // reqwest is built with rustls without a default provider; install ring once (an
        // https appliance URL works, plain http needs none).
        let _ = rustls::crypto::ring::default_provider().install_default();
        let builder = || {
            reqwest::Client::builder()
                .connect_timeout(policy.request_timeout.min(Duration::from_secs(30)))
                // Bounds each read of a body, so a stalled image download fails instead of
                // hanging.
                .read_timeout(policy.request_timeout)
                .user_agent(concat!("rackbox-agent/", env!("CARGO_PKG_VERSION")))
                // The ramdisk has no DNS configuration and no proxy: talk straight to the
                // appliance.
                .no_proxy()
        };
        // The platform verifier needs the system's CA certificates, which the ramdisk does not
        // have; the appliance is reached over plain HTTP on the boot network. Without them,
        // build a client with no trusted roots: http works, an https URL fails verification
        // (and says so) rather than being trusted blindly.
        let http = match builder().build() {
            Ok(c) => c,
            Err(e) => {
                tracing::info!(
                    reason = %error_chain(&e),
                    "no system CA certificates: https URLs cannot be verified"
                );
                builder()
                    .tls_certs_only(Vec::new())
                    .build()
                    .map_err(|e| ClientError::Setup(error_chain(&e)))?
            }
        };
        Ok(Client {
            http,
            base: base.trim_end_matches('/').to_string(),
            token,
            policy,
        })
    }

    pub(crate) fn set_token(&mut self, token: String) {
        self.token = Some(token);
    }

    /// Resolves an image URL the appliance gave: absolute, or a path on the appliance.
    pub(crate) fn resolve(&self, url: &str) -> String {
        if url.contains("://") {
            url.to_string()
        } else {
            format!("{}/{}", self.base, url.trim_start_matches('/'))
        }
    }

    /// The token goes only to the appliance itself, never to another host an image URL names.
    fn authorize(&self, req: reqwest::RequestBuilder, url: &str) -> reqwest::RequestBuilder {
        match &self.token {
            Some(t) if url.starts_with(&self.base) => req.bearer_auth(t),
            _ => req,
        }
    }

    /// Runs `make` until it gives a 2xx answer, a 4xx, or the retry budget is spent.
    async fn send_with_retry(
        &self,
        call: &str,
        url: &str,
        make: impl Fn() -> reqwest::RequestBuilder,
    ) -> Result<reqwest::Response, ClientError> {
        let start = tokio::time::Instant::now();
        let mut attempts = 0u32;
        loop {
            attempts += 1;
            let result = self.authorize(make(), url).send().await;
            let outcome = match result {
                Ok(resp) if resp.status().is_success() => return Ok(resp),
                Ok(resp) if resp.status() == reqwest::StatusCode::TOO_MANY_REQUESTS => {
                    // Rate-limited (enlistment): wait as long as the appliance asks.
                    let wait = resp
                        .headers()
                        .get(reqwest::header::RETRY_AFTER)
                        .and_then(|v| v.to_str().ok())
                        .and_then(|v| v.trim().parse::<u64>().ok())
                        .map(Duration::from_secs);
                    Attempt::Later("HTTP 429".into(), wait)
                }
                Ok(resp) if resp.status().is_client_error() => {
                    let status = resp.status().as_u16();
                    let body = resp.text().await.unwrap_or_default();
                    Attempt::Final(ClientError::Refused {
                        call: call.to_string(),
                        status,
                        body: body.chars().take(500).collect(),
                    })
                }
                Ok(resp) => Attempt::Retry(format!("HTTP {}", resp.status().as_u16())),
                Err(e) => Attempt::Retry(error_chain(&e)),
            };
            let (last, asked) = match outcome {
                Attempt::Final(e) => return Err(e),
                Attempt::Retry(last) => (last, None),
                Attempt::Later(last, wait) => (last, wait),
            };
            let delay = asked.map_or(self.policy.delay(attempts), |w| {
                w.max(self.policy.delay(attempts))
            });
            if start.elapsed() + delay > self.policy.budget {
                return Err(ClientError::GaveUp {
                    call: call.to_string(),
                    attempts,
                    last,
                });
            }
            tracing::warn!(call, attempt = attempts, error = %last, ?delay, "retrying");
            tokio::time::sleep(delay).await;
        }
    }

    async fn get_json(&self, path: &str) -> Result<Value, ClientError> {
        let url = format!("{}{PREFIX}{path}", self.base);
        let call = format!("GET {path}");
        let resp = self
            .send_with_retry(&call, &url, || {
                self.http.get(&url).timeout(self.policy.request_timeout)
            })
            .await?;
        resp.json().await.map_err(|e| ClientError::BadAnswer {
            call,
            reason: e.to_string(),
        })
    }

    async fn post_json(&self, path: &str, body: &impl Serialize) -> Result<Value, ClientError> {
        self.post_json_with(path, body, None).await
    }

    /// POSTs JSON, with one extra header when given; every attempt sends the same bytes.
    async fn post_json_with(
        &self,
        path: &str,
        body: &impl Serialize,
        extra: Option<(&str, &str)>,
    ) -> Result<Value, ClientError> {
        let url = format!("{}{PREFIX}{path}", self.base);
        let call = format!("POST {path}");
        let body = serde_json::to_vec(body).map_err(|e| ClientError::BadAnswer {
            call: call.clone(),
            reason: format!("cannot encode the request: {e}"),
        })?;
        let resp = self
            .send_with_retry(&call, &url, || {
                let req = self
                    .http
                    .post(&url)
                    .timeout(self.policy.request_timeout)
                    .header(reqwest::header::CONTENT_TYPE, "application/json")
                    .body(body.clone());
                match extra {
                    Some((name, value)) => req.header(name, value),
                    None => req,
                }
            })
            .await?;
        // Bodies of acknowledgements are optional; an empty one is fine.
        let bytes = resp.bytes().await.unwrap_or_default();
        Ok(serde_json::from_slice(&bytes).unwrap_or(Value::Null))
    }

    /// `GET /task`: the raw JSON, so that an unknown task can be reported rather than crash.
    pub(crate) async fn task(&self) -> Result<Value, ClientError> {
        self.get_json(path::TASK).await
    }

    pub(crate) async fn inventory(&self, inv: &Inventory) -> Result<(), ClientError> {
        self.post_json(path::INVENTORY, inv).await.map(drop)
    }

    pub(crate) async fn progress(&self, p: &Progress) -> Result<(), ClientError> {
        self.post_json(path::PROGRESS, p).await.map(drop)
    }

    pub(crate) async fn complete(
        &self,
        message: &str,
        results: Option<Value>,
    ) -> Result<(), ClientError> {
        let body = Complete {
            message: message.to_string(),
            results,
        };
        self.post_json(path::COMPLETE, &body).await.map(drop)
    }

    /// `POST /fail` with the reason and, when the task has them (test results), its findings.
    pub(crate) async fn fail(
        &self,
        reason: &str,
        results: Option<Value>,
    ) -> Result<(), ClientError> {
        let body = Fail {
            reason: reason.to_string(),
            results,
        };
        self.post_json(path::FAIL, &body).await.map(drop)
    }

    /// `POST /enlist` with no token: the appliance answers with the new machine's id and token.
    /// `key` is this boot's enlistment key, the same on every attempt: when an answer is lost
    /// and the call is repeated, it is what tells the appliance that the machine it made is
    /// this agent's (a known MAC without it is refused with 409).
    pub(crate) async fn enlist(
        &self,
        inv: &Inventory,
        key: &EnlistKey,
    ) -> Result<Enlisted, ClientError> {
        let v = self
            .post_json_with(
                path::ENLIST,
                inv,
                Some((crate::model::ENLIST_KEY_HEADER, key.0.as_str())),
            )
            .await?;
        serde_json::from_value(v).map_err(|e| ClientError::BadAnswer {
            call: format!("POST {}", path::ENLIST),
            reason: e.to_string(),
        })
    }

    /// Starts downloading `url` (absolute or on the appliance), retrying until the headers of a
    /// 2xx answer arrive. The body is read by the caller, with no overall timeout: an image may
    /// take an hour on a slow link, and a stalled body is caught by the stream's read timeout.
    pub(crate) async fn download(&self, url: &str) -> Result<reqwest::Response, ClientError> {
        let url = self.resolve(url);
        let call = format!("GET {url}");
        self.send_with_retry(&call, &url, || self.http.get(&url))
            .await
    }

    /// The rest of a download that broke off: bytes `offset..` of `url`, asked for with a
    /// `Range` header and retried like every call. Only a 206 that starts at `offset` is
    /// accepted: anything else cannot be spliced onto the bytes already written.
    pub(crate) async fn download_from(
        &self,
        url: &str,
        offset: u64,
    ) -> Result<reqwest::Response, ClientError> {
        let url = self.resolve(url);
        let call = format!("GET {url} from byte {offset}");
        let resp = self
            .send_with_retry(&call, &url, || {
                self.http
                    .get(&url)
                    .header(reqwest::header::RANGE, format!("bytes={offset}-"))
            })
            .await?;
        let starts_at_offset = resp
            .headers()
            .get(reqwest::header::CONTENT_RANGE)
            .and_then(|v| v.to_str().ok())
            .and_then(crate::model::agent_wire::content_range)
            .is_some_and(|(first, _)| first == offset);
        if resp.status() != reqwest::StatusCode::PARTIAL_CONTENT || !starts_at_offset {
            return Err(ClientError::BadAnswer {
                call,
                reason: format!(
                    "the server did not resume at byte {offset} (HTTP {}, Content-Range {:?})",
                    resp.status().as_u16(),
                    resp.headers().get(reqwest::header::CONTENT_RANGE)
                ),
            });
        }
        Ok(resp)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_and_is_capped() {
        let p = RetryPolicy {
            initial: Duration::from_millis(100),
            max_delay: Duration::from_millis(1000),
            budget: Duration::from_secs(5),
            request_timeout: Duration::from_secs(1),
        };
        let d: Vec<u128> = (1..=6).map(|n| p.delay(n).as_millis()).collect();
        assert_eq!(d, vec![100, 200, 400, 800, 1000, 1000]);
        assert_eq!(p.delay(100), Duration::from_millis(1000));
    }

    #[test]
    fn image_urls_resolve_against_the_appliance() {
        let c =
            Client::new("http://192.0.2.1:5240/", None, RetryPolicy::default()).expect("client");
        assert_eq!(
            c.resolve("/images/a.raw"),
            "http://192.0.2.1:5240/images/a.raw"
        );
        assert_eq!(
            c.resolve("images/a.raw"),
            "http://192.0.2.1:5240/images/a.raw"
        );
        assert_eq!(c.resolve("http://mirror/a.raw"), "http://mirror/a.raw");
    }
}
