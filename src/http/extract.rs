//! Request extractors: the caller of an authenticated route ([`Caller`]), and bodies and query
//! strings whose failures are the API's own 400s with a message that says what is wrong
//! (unknown field, wrong type, bad JSON), instead of axum's plain-text rejections.

use axum::extract::{Extension, FromRequest, FromRequestParts, Request};
use axum::http::request::Parts;
use serde::de::DeserializeOwned;

use super::AppState;
use super::error::ApiError;
use crate::service::Principal;

/// The caller of a route that needs one: the state its handler asks, and the principal the
/// authorization middleware put on the request. Every such handler needs both; without the
/// principal the rejection is `Extension`'s own.
pub struct Caller(pub AppState, pub Principal);

impl FromRequestParts<AppState> for Caller {
    type Rejection = <Extension<Principal> as FromRequestParts<AppState>>::Rejection;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &AppState,
    ) -> Result<Self, Self::Rejection> {
        let Extension(principal) = Extension::from_request_parts(parts, state).await?;
        Ok(Caller(state.clone(), principal))
    }
}

/// A JSON body. An empty body is read as `{}` so actions without parameters need none.
pub struct JsonBody<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned> FromRequest<S> for JsonBody<T> {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        let content_type = req
            .headers()
            .get(axum::http::header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .to_string();
        let bytes = axum::body::Bytes::from_request(req, state)
            .await
            .map_err(|e| ApiError::bad_request(format!("cannot read the request body: {e}")))?;
        parse_json(&content_type, &bytes).map(JsonBody)
    }
}

/// How much more of an oversized body is read (and dropped) before the 413 is sent, and for how
/// long: a client still sending its body then reads the answer, where closing at once would
/// reset the connection under it. A larger body is cut off.
const DRAIN_MAX: usize = 8 << 20;
const DRAIN_TIME: std::time::Duration = std::time::Duration::from_secs(10);

/// A JSON body of at most `limit` bytes; a larger one is a 413 that says `too_large()` (what it
/// is and which setting bounds it). At most `limit` bytes are kept in memory.
pub(crate) async fn limited_json<T: DeserializeOwned>(
    req: Request,
    limit: usize,
    too_large: impl FnOnce() -> String,
) -> Result<T, ApiError> {
    use futures_util::StreamExt;
    // Read before the first await: a borrow of the request would make the future not Send.
    let (content_type, declared) = {
        let header = |name| {
            req.headers()
                .get(name)
                .and_then(|v| v.to_str().ok())
                .unwrap_or("")
                .to_string()
        };
        (
            header(axum::http::header::CONTENT_TYPE),
            header(axum::http::header::CONTENT_LENGTH)
                .parse::<usize>()
                .ok(),
        )
    };
    let mut stream = req.into_body().into_data_stream();
    let mut body = Vec::new();
    let mut over = declared.is_some_and(|n| n > limit);
    while !over && let Some(chunk) = stream.next().await {
        let chunk = chunk
            .map_err(|e| ApiError::bad_request(format!("cannot read the request body: {e}")))?;
        if body.len() + chunk.len() > limit {
            over = true;
        } else {
            body.extend_from_slice(&chunk);
        }
    }
    if over {
        if declared.is_none_or(|n| n <= limit.saturating_add(DRAIN_MAX)) {
            let drain = async {
                let mut drained = 0usize;
                while let Some(Ok(chunk)) = stream.next().await {
                    drained += chunk.len();
                    if drained > DRAIN_MAX {
                        break;
                    }
                }
            };
            let _ = tokio::time::timeout(DRAIN_TIME, drain).await;
        }
        return Err(ApiError::payload_too_large(too_large()));
    }
    parse_json(&content_type, &body)
}

/// Parses a JSON body; an empty one is `{}`.
fn parse_json<T: DeserializeOwned>(content_type: &str, bytes: &[u8]) -> Result<T, ApiError> {
    let text: &[u8] = if bytes.iter().all(|b| b.is_ascii_whitespace()) {
        b"{}"
    } else {
        if !content_type.is_empty() && !content_type.starts_with("application/json") {
            return Err(ApiError::bad_request(format!(
                "the body must be JSON (Content-Type: application/json), not {content_type}"
            )));
        }
        // Every body is an object: serde would also read a struct from an array of its
        // fields in order (`[null, null]`), which the document does not allow.
        if bytes.iter().find(|b| !b.is_ascii_whitespace()) == Some(&b'[') {
            return Err(ApiError::bad_request(
                "the body must be a JSON object, not an array",
            ));
        }
        bytes
    };
    let mut value: serde_json::Value = serde_json::from_slice(text)
        .map_err(|e| ApiError::bad_request(format!("invalid JSON body: {e}")))?;
    integral_floats_to_integers(&mut value);
    serde_json::from_value(value)
        .map_err(|e| ApiError::bad_request(format!("invalid JSON body: {e}")))
}

/// JSON has one number type: `2815.0` is the integer 2815 to JSON Schema (and so to the
/// OpenAPI document), to JavaScript and to Python's json, but serde reads it as a float that
/// no integer field takes. Numbers with no fraction that fit an integer become integers.
fn integral_floats_to_integers(v: &mut serde_json::Value) {
    use serde_json::Value;
    match v {
        Value::Number(n) if n.is_f64() => {
            if let Some(f) = n.as_f64()
                && f.fract() == 0.0
            {
                // Exactly representable range only: beyond 2^53 a float names no one integer.
                const EXACT: f64 = 9_007_199_254_740_992.0;
                if (0.0..=EXACT).contains(&f) {
                    *v = Value::from(f as u64);
                } else if (-EXACT..0.0).contains(&f) {
                    *v = Value::from(f as i64);
                }
            }
        }
        Value::Array(items) => items.iter_mut().for_each(integral_floats_to_integers),
        Value::Object(map) => map.values_mut().for_each(integral_floats_to_integers),
        _ => {}
    }
}

/// Query-string parameters.
pub(crate) struct QueryArgs<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned> FromRequestParts<S> for QueryArgs<T> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, Self::Rejection> {
        let query = parts.uri.query().unwrap_or("");
        serde_urlencoded_from(query)
            .map(QueryArgs)
            .map_err(|e| ApiError::bad_request(format!("invalid query string: {e}")))
    }
}

fn serde_urlencoded_from<T: DeserializeOwned>(query: &str) -> Result<T, String> {
    axum::extract::Query::<T>::try_from_uri(
        &format!("/?{query}")
            .parse()
            .map_err(|e: axum::http::uri::InvalidUri| e.to_string())?,
    )
    .map(|q| q.0)
    .map_err(|e| e.body_text())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(serde::Deserialize, Debug)]
    #[allow(dead_code)]
    struct Edit {
        #[serde(default)]
        a: Option<String>,
        #[serde(default)]
        b: Option<String>,
    }

    #[test]
    fn a_body_is_an_object_or_empty() {
        assert!(parse_json::<Edit>("application/json", b"{\"a\": \"x\"}").is_ok());
        assert!(parse_json::<Edit>("", b"  ").is_ok());
        // Found by schemathesis: serde reads a struct from an array of its fields.
        assert!(parse_json::<Edit>("application/json", b" [null, null]").is_err());
    }

    #[derive(serde::Deserialize, Debug)]
    struct Count {
        n: u32,
        f: f64,
    }

    #[test]
    fn an_integral_float_is_an_integer() {
        // Found by schemathesis: `2815.0` is a valid integer to the document.
        let c: Count = parse_json("application/json", br#"{"n": 2815.0, "f": 2.0}"#).unwrap();
        assert_eq!(c.n, 2815);
        assert_eq!(c.f, 2.0);
        assert!(parse_json::<Count>("application/json", br#"{"n": 2.5, "f": 1}"#).is_err());
    }
}
