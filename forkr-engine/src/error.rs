//! The engine's one error type.
//!
//! Every error carries a [`ErrorKind`] (which the server maps to an HTTP status), a stable machine
//! `code` (the documented ones such as `fork_running` or `no_updates`) and a human message. I/O and
//! database failures keep their source for logs but surface as `internal` errors.

use std::borrow::Cow;

/// What class of failure this is. The server maps each to one HTTP status.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ErrorKind {
    /// 400: the request is malformed or a value is invalid.
    BadRequest,
    /// 401: no or a wrong bearer token.
    Unauthorized,
    /// 403: the caller may not touch this object.
    Forbidden,
    /// 404: the object does not exist.
    NotFound,
    /// 409: the request conflicts with the current state.
    Conflict,
    /// 413: a body, upload or buffer is over its limit.
    TooLarge,
    /// 500: something failed on the host.
    Internal,
    /// 501: the runtime or host cannot do this.
    Unsupported,
    /// 507: the storage is full.
    NoSpace,
}

impl ErrorKind {
    /// The HTTP status code for this kind.
    pub fn http_status(self) -> u16 {
        match self {
            ErrorKind::BadRequest => 400,
            ErrorKind::Unauthorized => 401,
            ErrorKind::Forbidden => 403,
            ErrorKind::NotFound => 404,
            ErrorKind::Conflict => 409,
            ErrorKind::TooLarge => 413,
            ErrorKind::Internal => 500,
            ErrorKind::Unsupported => 501,
            ErrorKind::NoSpace => 507,
        }
    }

    /// The kind for an HTTP status (used by the CLI to classify server answers).
    pub fn from_http_status(status: u16) -> ErrorKind {
        match status {
            400 | 422 => ErrorKind::BadRequest,
            401 => ErrorKind::Unauthorized,
            403 => ErrorKind::Forbidden,
            404 => ErrorKind::NotFound,
            409 => ErrorKind::Conflict,
            413 => ErrorKind::TooLarge,
            501 => ErrorKind::Unsupported,
            507 => ErrorKind::NoSpace,
            _ => ErrorKind::Internal,
        }
    }
}

/// An engine error: a kind, a stable code and a message, with an optional source.
#[derive(Debug, thiserror::Error)]
#[error("{message}")]
pub struct Error {
    kind: ErrorKind,
    code: Cow<'static, str>,
    message: String,
    #[source]
    source: Option<Box<dyn std::error::Error + Send + Sync + 'static>>,
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    pub fn new(kind: ErrorKind, code: impl Into<Cow<'static, str>>, message: impl Into<String>) -> Self {
        Error { kind, code: code.into(), message: message.into(), source: None }
    }

    pub fn bad_request(code: impl Into<Cow<'static, str>>, message: impl Into<String>) -> Self {
        Self::new(ErrorKind::BadRequest, code, message)
    }

    pub fn not_found(what: &str, name: &str) -> Self {
        Self::new(ErrorKind::NotFound, "not_found", format!("{what} {name:?} not found"))
    }

    pub fn conflict(code: impl Into<Cow<'static, str>>, message: impl Into<String>) -> Self {
        Self::new(ErrorKind::Conflict, code, message)
    }

    pub fn forbidden(code: impl Into<Cow<'static, str>>, message: impl Into<String>) -> Self {
        Self::new(ErrorKind::Forbidden, code, message)
    }

    pub fn internal(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::Internal, "internal", message)
    }

    pub fn unsupported(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::Unsupported, "unsupported", message)
    }

    /// Wraps an I/O error with what was being done. ENOSPC becomes a `no_space` error.
    pub fn io(context: impl Into<String>, source: std::io::Error) -> Self {
        let context = context.into();
        if source.raw_os_error() == Some(28) {
            return Error {
                kind: ErrorKind::NoSpace,
                code: "no_space".into(),
                message: format!(
                    "{context}: no space left on the box storage; free space by deleting boxes, snapshots, \
                     volumes or bases you no longer need"
                ),
                source: Some(Box::new(source)),
            };
        }
        Error {
            kind: ErrorKind::Internal,
            code: "internal".into(),
            message: format!("{context}: {source}"),
            source: Some(Box::new(source)),
        }
    }

    /// Attaches a source error for logs.
    pub fn with_source(mut self, source: impl std::error::Error + Send + Sync + 'static) -> Self {
        self.source = Some(Box::new(source));
        self
    }

    pub fn kind(&self) -> ErrorKind {
        self.kind
    }

    pub fn code(&self) -> &str {
        &self.code
    }

    pub fn message(&self) -> &str {
        &self.message
    }
}

#[cfg(feature = "host")]
impl From<rusqlite::Error> for Error {
    fn from(e: rusqlite::Error) -> Self {
        Error::internal(format!("metadata database: {e}")).with_source(e)
    }
}

#[cfg(feature = "host")]
impl From<nix::Error> for Error {
    fn from(e: nix::Error) -> Self {
        Error::io("system call failed", std::io::Error::from(e))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn enospc_is_no_space() {
        let e = Error::io("snapshot", std::io::Error::from_raw_os_error(28));
        assert_eq!(e.kind(), ErrorKind::NoSpace);
        assert_eq!(e.kind().http_status(), 507);
        assert!(e.message().starts_with("snapshot: "));
    }

    #[test]
    fn status_round_trip() {
        for k in [
            ErrorKind::BadRequest,
            ErrorKind::Unauthorized,
            ErrorKind::Forbidden,
            ErrorKind::NotFound,
            ErrorKind::Conflict,
            ErrorKind::TooLarge,
            ErrorKind::Unsupported,
            ErrorKind::NoSpace,
        ] {
            assert_eq!(ErrorKind::from_http_status(k.http_status()), k);
        }
    }
}
