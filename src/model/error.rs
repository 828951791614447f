//! What kind of failure an error is, in the terms both API faces answer with: each kind is one
//! HTTP status, whichever face (native or MAAS) and whichever room (service, image cache, store)
//! the error came from.

/// The kind of a failure, for the caller.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ErrorKind {
    /// 400: the request is malformed or a value is invalid.
    Invalid,
    /// 401: no valid credentials.
    Unauthorized,
    /// 403: the role or ownership does not allow it.
    Forbidden,
    /// 404: the thing asked for does not exist.
    NotFound,
    /// 409: the request conflicts with the current state (a status, a generation, a name).
    Conflict,
    /// 429: the caller asked too often.
    RateLimited,
    /// 502: something rackbox speaks to on the caller's behalf failed (a BMC, a download).
    Upstream,
    /// 503: a bound on work done at once is reached; try again.
    Busy,
    /// 503: the daemon is shutting down.
    ShuttingDown,
    /// 503: the store cannot write right now (an I/O error; it reopens the database).
    Unavailable,
    /// 507: a bound on what may be created is reached.
    Full,
    /// 507: the state disk (or the image cache's file system) is full.
    DiskFull,
    /// 500: a fault of rackbox's own.
    Internal,
}

impl ErrorKind {
    /// The HTTP status code that both API faces answer this kind with.
    pub fn http_status(self) -> u16 {
        match self {
            ErrorKind::Invalid => 400,
            ErrorKind::Unauthorized => 401,
            ErrorKind::Forbidden => 403,
            ErrorKind::NotFound => 404,
            ErrorKind::Conflict => 409,
            ErrorKind::RateLimited => 429,
            ErrorKind::Internal => 500,
            ErrorKind::Upstream => 502,
            ErrorKind::Busy | ErrorKind::ShuttingDown | ErrorKind::Unavailable => 503,
            ErrorKind::Full | ErrorKind::DiskFull => 507,
        }
    }
}

/// An error and its causes in one line, outermost first: an HTTP client's own message alone
/// ("error sending request") does not say what went wrong; its sources do.
pub(crate) fn error_chain(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        text.push_str(": ");
        text.push_str(&s.to_string());
        source = s.source();
    }
    text
}
