//! Errors as MAAS answers them: a status code and a text/plain body (MAAS clients show the body
//! to their users; gomaasapi keeps it as `BodyMessage`). Never a Retry-After header: gomaasapi
//! retries a request that carries one, and a 409 from allocate means "no such machine", not
//! "try again".

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};

use super::params::ParamError;
use crate::service::ServiceError;

/// An error answer of the MAAS face.
#[derive(Debug)]
pub struct MaasError {
    pub status: StatusCode,
    pub message: String,
}

pub type MaasResult<T> = Result<T, MaasError>;

impl MaasError {
    pub fn new(status: StatusCode, message: impl Into<String>) -> MaasError {
        MaasError {
            status,
            message: message.into(),
        }
    }

    pub fn bad_request(message: impl Into<String>) -> MaasError {
        MaasError::new(StatusCode::BAD_REQUEST, message)
    }

    pub fn unauthorized(message: impl Into<String>) -> MaasError {
        MaasError::new(StatusCode::UNAUTHORIZED, message)
    }

    pub fn forbidden(message: impl Into<String>) -> MaasError {
        MaasError::new(StatusCode::FORBIDDEN, message)
    }

    pub fn not_found(message: impl Into<String>) -> MaasError {
        MaasError::new(StatusCode::NOT_FOUND, message)
    }

    pub fn conflict(message: impl Into<String>) -> MaasError {
        MaasError::new(StatusCode::CONFLICT, message)
    }

    pub fn unavailable(message: impl Into<String>) -> MaasError {
        MaasError::new(StatusCode::SERVICE_UNAVAILABLE, message)
    }
}

impl From<ServiceError> for MaasError {
    fn from(e: ServiceError) -> Self {
        let status = crate::http::error::status_of(e.kind());
        if status.is_server_error() {
            tracing::error!(error = %e, "MAAS API request failed");
        }
        MaasError::new(status, e.to_string())
    }
}

impl From<ParamError> for MaasError {
    fn from(e: ParamError) -> Self {
        MaasError::bad_request(e.to_string())
    }
}

impl IntoResponse for MaasError {
    fn into_response(self) -> Response {
        let mut r = (self.status, self.message).into_response();
        r.headers_mut().insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("text/plain; charset=utf-8"),
        );
        r
    }
}
