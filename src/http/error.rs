//! API errors: one JSON shape, `{"error": code, "message": text}`, and one HTTP status per kind.

use axum::Json;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde::Serialize;

use crate::service::ServiceError;

/// An error as the native API answers it.
#[derive(Debug)]
pub struct ApiError {
    pub status: StatusCode,
    pub code: &'static str,
    pub message: String,
    /// For 409s about a machine: its current status key.
    pub machine_status: Option<&'static str>,
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
        }
    }

    pub fn not_found(message: impl Into<String>) -> ApiError {
        ApiError {
            status: StatusCode::NOT_FOUND,
            code: "not_found",
            message: message.into(),
            machine_status: None,
        }
    }

    pub fn unauthorized(message: impl Into<String>) -> ApiError {
        ApiError {
            status: StatusCode::UNAUTHORIZED,
            code: "unauthorized",
            message: message.into(),
            machine_status: None,
        }
    }

    pub fn payload_too_large(message: impl Into<String>) -> ApiError {
        ApiError {
            status: StatusCode::PAYLOAD_TOO_LARGE,
            code: "too_large",
            message: message.into(),
            machine_status: None,
        }
    }

    pub fn forbidden(message: impl Into<String>) -> ApiError {
        ApiError {
            status: StatusCode::FORBIDDEN,
            code: "forbidden",
            message: message.into(),
            machine_status: None,
        }
    }
}

impl From<ServiceError> for ApiError {
    fn from(e: ServiceError) -> Self {
        let message = e.to_string();
        let (status, code, machine_status) = match &e {
            ServiceError::Unauthorized(_) => (StatusCode::UNAUTHORIZED, "unauthorized", None),
            ServiceError::Forbidden(_) => (StatusCode::FORBIDDEN, "forbidden", None),
            ServiceError::NotFound { .. } => (StatusCode::NOT_FOUND, "not_found", None),
            ServiceError::Invalid(_) => (StatusCode::BAD_REQUEST, "bad_request", None),
            ServiceError::Transition(t) => (
                StatusCode::CONFLICT,
                "invalid_transition",
                Some(t.status().key()),
            ),
            ServiceError::Stale { status, .. } => {
                (StatusCode::CONFLICT, "stale_generation", Some(status.key()))
            }
            ServiceError::Conflict(_) => (StatusCode::CONFLICT, "conflict", None),
            ServiceError::AgentCall { status, .. } => {
                (StatusCode::CONFLICT, "wrong_status", Some(status.key()))
            }
            ServiceError::RateLimited { .. } => {
                (StatusCode::TOO_MANY_REQUESTS, "rate_limited", None)
            }
            // Said in the service's log once; not an error of rackbox's.
            ServiceError::Full(_) => (StatusCode::INSUFFICIENT_STORAGE, "full", None),
            ServiceError::NoMatch(_) => (StatusCode::CONFLICT, "no_match", None),
            ServiceError::PowerFailed(_) => (StatusCode::BAD_GATEWAY, "power_failed", None),
            ServiceError::Store(crate::store::StoreError::WriterGone) => {
                (StatusCode::SERVICE_UNAVAILABLE, "shutting_down", None)
            }
            ServiceError::Store(crate::store::StoreError::DiskFull { .. }) => {
                (StatusCode::INSUFFICIENT_STORAGE, "disk_full", None)
            }
            ServiceError::Store(crate::store::StoreError::Unavailable { .. }) => {
                (StatusCode::SERVICE_UNAVAILABLE, "store_unavailable", None)
            }
            ServiceError::Store(_) => (StatusCode::INTERNAL_SERVER_ERROR, "internal", None),
        };
        if status.is_server_error() && status != StatusCode::INSUFFICIENT_STORAGE {
            tracing::error!(error = %e, "request failed");
        }
        ApiError {
            status,
            code,
            message,
            machine_status,
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
        (self.status, Json(body)).into_response()
    }
}

pub type ApiResult<T> = Result<T, ApiError>;
