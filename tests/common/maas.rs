//! A MAAS API client speaking as the Go clients (gomaasapi, gomaasclient) do, for the tests of
//! the MAAS face.

use reqwest::Method;
use serde_json::{Value, json};

use super::Api;

/// A MAAS client speaking like gomaasapi: OAuth PLAINTEXT with realm "MAAS+API" and
/// query-escaped values, urlencoded bodies.
pub struct Maas {
    pub http: reqwest::Client,
    pub base: String,
    key: Option<(String, String, String)>,
}

impl Maas {
    pub fn new(url: &str, key: Option<&str>) -> Maas {
        let _ = rustls::crypto::ring::default_provider().install_default();
        let key = key.map(|k| {
            let mut p = k.split(':');
            (
                p.next().unwrap().to_string(),
                p.next().unwrap().to_string(),
                p.next().unwrap().to_string(),
            )
        });
        Maas {
            http: reqwest::Client::new(),
            base: format!("{url}/MAAS/api/2.0/"),
            key,
        }
    }

    pub fn auth(&self, req: reqwest::RequestBuilder) -> reqwest::RequestBuilder {
        match &self.key {
            None => req,
            Some((ck, tk, ts)) => req.header(
                "Authorization",
                format!(
                    "OAuth realm=\"MAAS+API\", oauth_consumer_key=\"{ck}\", oauth_token=\"{tk}\", oauth_signature_method=\"PLAINTEXT\", oauth_signature=\"%26{ts}\", oauth_nonce=\"abc\", oauth_timestamp=\"1700000000\", oauth_version=\"1.0\""
                ),
            ),
        }
    }

    /// Sends a request; answers status, content type and body (JSON when it parses).
    pub async fn send(
        &self,
        method: Method,
        path: &str,
        query: &[(&str, &str)],
        form: &[(&str, &str)],
    ) -> (u16, String, Value, reqwest::header::HeaderMap) {
        let mut req = self
            .http
            .request(method.clone(), format!("{}{path}", self.base))
            .query(query);
        if method != Method::GET && method != Method::DELETE {
            req = req.form(form);
        }
        let r = self.auth(req).send().await.unwrap();
        let status = r.status().as_u16();
        let headers = r.headers().clone();
        let ct = headers
            .get("content-type")
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .to_string();
        let text = r.text().await.unwrap();
        let v = serde_json::from_str(&text).unwrap_or(Value::String(text));
        (status, ct, v, headers)
    }

    pub async fn get(&self, path: &str, query: &[(&str, &str)]) -> (u16, Value) {
        let (s, _, v, _) = self.send(Method::GET, path, query, &[]).await;
        (s, v)
    }

    /// POST with `?op=` always in the query, empty for a plain create, as gomaasapi sends it.
    pub async fn post(&self, path: &str, op: &str, form: &[(&str, &str)]) -> (u16, Value) {
        let (s, _, v, _) = self.send(Method::POST, path, &[("op", op)], form).await;
        (s, v)
    }

    pub async fn put(&self, path: &str, form: &[(&str, &str)]) -> (u16, Value) {
        let (s, _, v, _) = self.send(Method::PUT, path, &[], form).await;
        (s, v)
    }

    pub async fn delete(&self, path: &str) -> u16 {
        self.send(Method::DELETE, path, &[], &[]).await.0
    }
}

/// A MAAS API key for `user`, made through the native API.
pub async fn maas_key(api: &Api, bearer: &str, user: &str) -> String {
    let (s, v) = api
        .call(
            Method::POST,
            "/api/v1/tokens",
            Some(bearer),
            Some(json!({"kind": "maas", "username": user, "name": "test"})),
        )
        .await;
    assert_eq!(s, 201, "{v}");
    v["token"].as_str().unwrap().to_string()
}
