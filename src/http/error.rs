//! API errors: one JSON shape, `{"error": code, "message": text}`, and one HTTP status per kind.

use axum::Json;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde::Serialize;

use crate::model::ErrorKind;
use crate::service::ServiceError;

/// An error as the native API answers it.
#[derive(Debug)]
pub struct ApiError {
    pub status: StatusCode,
    pub code: &'static str,
    pub message: String,
    /// For 409s about a machine: its current status key.
    pub machine_status: Option<&'static str>,
    /// Seconds for a Retry-After header (429 and 503 that will pass).
    pub retry_after: Option<u64>,
}

#[derive(Serialize)]
struct Body<'a> {
    error: &'a str,
    message: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    status: Option<&'a str>,
}

impl ApiError {
    pub fn bad_request(message: impl Into<String>) -> ApiError {
        ApiError {
            status: StatusCode::BAD_REQUEST,
            code: "bad_request",
            message: message.into(),
            machine_status: None,
            retry_after: None,
        }
    }

    pub fn not_found(message: impl Into<String>) -> ApiError {
        ApiError {
            status: StatusCode::NOT_FOUND,
            code: "not_found",
            message: message.into(),
            machine_status: None,
            retry_after: None,
        }
    }

    pub fn unauthorized(message: impl Into<String>) -> ApiError {
        ApiError {
            status: StatusCode::UNAUTHORIZED,
            code: "unauthorized",
            message: message.into(),
            machine_status: None,
            retry_after: None,
        }
    }

    pub fn payload_too_large(message: impl Into<String>) -> ApiError {
        ApiError {
            status: StatusCode::PAYLOAD_TOO_LARGE,
            code: "too_large",
            message: message.into(),
            machine_status: None,
            retry_after: None,
        }
    }

    pub fn forbidden(message: impl Into<String>) -> ApiError {
        ApiError {
            status: StatusCode::FORBIDDEN,
            code: "forbidden",
            message: message.into(),
            machine_status: None,
            retry_after: None,
        }
    }
}

/// The HTTP status of a kind of failure: the one mapping both faces answer by.
pub(crate) fn status_of(kind: ErrorKind) -> StatusCode {
    StatusCode::from_u16(kind.http_status()).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR)
}

/// The native API's `error` code of a kind of failure (errors with a more precise code say it).
pub(super) fn kind_code(kind: ErrorKind) -> &'static str {
    match kind {
        ErrorKind::Invalid => "bad_request",
        ErrorKind::Unauthorized => "unauthorized",
        ErrorKind::Forbidden => "forbidden",
        ErrorKind::NotFound => "not_found",
        ErrorKind::Conflict => "conflict",
        ErrorKind::RateLimited => "rate_limited",
        ErrorKind::Upstream => "upstream_failed",
        ErrorKind::Busy => "busy",
        ErrorKind::ShuttingDown => "shutting_down",
        ErrorKind::Unavailable => "store_unavailable",
        ErrorKind::Full => "full",
        ErrorKind::DiskFull => "disk_full",
        ErrorKind::Internal => "internal",
    }
}

impl From<ServiceError> for ApiError {
    fn from(e: ServiceError) -> Self {
        let message = e.to_string();
        let (code, machine_status) = match &e {
            ServiceError::Transition(t) => ("invalid_transition", Some(t.status().key())),
            ServiceError::Stale { status, .. } => ("stale_generation", Some(status.key())),
            ServiceError::AgentCall { status, .. } => ("wrong_status", Some(status.key())),
            ServiceError::NoMatch(_) => ("no_match", None),
            ServiceError::PowerFailed(_) => ("power_failed", None),
            _ => (kind_code(e.kind()), None),
        };
        let status = status_of(e.kind());
        let retry_after = match &e {
            ServiceError::RateLimited {
                retry_after_secs, ..
            }
            | ServiceError::Busy {
                retry_after_secs, ..
            } => Some(*retry_after_secs),
            _ => None,
        };
        // Full is said in the service's log once; Busy is a bound doing its work.
        if status.is_server_error()
            && !matches!(e, ServiceError::Full(_) | ServiceError::Busy { .. })
        {
            tracing::error!(error = %e, "request failed");
        }
        ApiError {
            status,
            code,
            message,
            machine_status,
            retry_after,
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = Body {
            error: self.code,
            message: &self.message,
            status: self.machine_status,
        };
        let mut response = (self.status, Json(body)).into_response();
        if let Some(secs) = self.retry_after {
            response
                .headers_mut()
                .insert(axum::http::header::RETRY_AFTER, secs.into());
        }
        response
    }
}

pub(crate) type ApiResult<T> = Result<T, ApiError>;
