//! The server's one error type: an engine error rendered as the documented JSON body
//! `{"error":{"code":"...","message":"..."}}` with the status its kind maps to.

use axum::Json;
use axum::extract::rejection::{JsonRejection, PathRejection, QueryRejection};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use forkr_engine::api::{ErrorBody, ErrorDetail};
use forkr_engine::{Error, ErrorKind};

#[derive(Debug)]
pub struct ApiError(pub Error);

/// The server's data dir as it may appear in engine messages (given and canonical form).
static DATA_DIR: std::sync::OnceLock<Vec<String>> = std::sync::OnceLock::new();

/// Makes every error body name paths under `data_dir` relative to it, so that a client (which
/// may hold only a project token) never learns where the server keeps its data. The server's
/// log keeps the full message.
pub fn hide_server_paths(data_dir: &std::path::Path) {
    let mut forms = vec![data_dir.display().to_string()];
    if let Ok(c) = std::fs::canonicalize(data_dir) {
        forms.push(c.display().to_string());
    }
    // Longest first, so that a form which is a prefix of another does not leave a fragment.
    forms.sort_by_key(|f| std::cmp::Reverse(f.len()));
    forms.retain(|f| f.len() > 1);
    let _ = DATA_DIR.set(forms);
}

fn scrub(message: &str) -> String {
    let mut m = message.to_owned();
    for dir in DATA_DIR.get().into_iter().flatten() {
        m = m.replace(&format!("{dir}/"), "").replace(dir.as_str(), "the data dir");
    }
    m
}

impl From<Error> for ApiError {
    fn from(e: Error) -> Self {
        ApiError(e)
    }
}

impl ApiError {
    pub fn new(kind: ErrorKind, code: &'static str, message: impl Into<String>) -> Self {
        ApiError(Error::new(kind, code, message))
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let e = self.0;
        let status =
            StatusCode::from_u16(e.kind().http_status()).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        if status.is_server_error() {
            tracing::error!(code = e.code(), error = %e, source = ?std::error::Error::source(&e), "request failed");
        }
        let body =
            ErrorBody { error: ErrorDetail { code: e.code().to_owned(), message: scrub(e.message()) } };
        (status, Json(body)).into_response()
    }
}

impl From<JsonRejection> for ApiError {
    fn from(r: JsonRejection) -> Self {
        let kind = if r.status() == StatusCode::PAYLOAD_TOO_LARGE {
            ErrorKind::TooLarge
        } else {
            ErrorKind::BadRequest
        };
        let code = if kind == ErrorKind::TooLarge { "too_large" } else { "invalid_json" };
        ApiError::new(kind, code, r.body_text())
    }
}

impl From<QueryRejection> for ApiError {
    fn from(r: QueryRejection) -> Self {
        ApiError::new(ErrorKind::BadRequest, "invalid_query", r.body_text())
    }
}

impl From<PathRejection> for ApiError {
    fn from(r: PathRejection) -> Self {
        ApiError::new(ErrorKind::BadRequest, "invalid_path", r.body_text())
    }
}

/// `Json` whose rejection is an [`ApiError`].
#[derive(axum::extract::FromRequest)]
#[from_request(via(axum::Json), rejection(ApiError))]
pub struct ApiJson<T>(pub T);

impl<T: serde::Serialize> IntoResponse for ApiJson<T> {
    fn into_response(self) -> Response {
        Json(self.0).into_response()
    }
}

/// A raw request body whose rejection (over the route's body limit, or a broken upload) is an
/// [`ApiError`]: a 413 `too_large` in the documented JSON shape instead of axum's plain text.
pub struct ApiBytes(pub axum::body::Bytes);

impl<S: Send + Sync> axum::extract::FromRequest<S> for ApiBytes {
    type Rejection = ApiError;

    async fn from_request(req: axum::extract::Request, state: &S) -> Result<Self, ApiError> {
        match axum::body::Bytes::from_request(req, state).await {
            Ok(b) => Ok(ApiBytes(b)),
            Err(r) if r.status() == StatusCode::PAYLOAD_TOO_LARGE => Err(ApiError::new(
                ErrorKind::TooLarge,
                "too_large",
                "the upload is over the size limit of this route (files: 512 MiB)",
            )),
            Err(r) => Err(ApiError::new(ErrorKind::BadRequest, "invalid_body", r.body_text())),
        }
    }
}

/// `Query` whose rejection is an [`ApiError`].
#[derive(axum::extract::FromRequestParts)]
#[from_request(via(axum::extract::Query), rejection(ApiError))]
pub struct ApiQuery<T>(pub T);

/// `Path` whose rejection is an [`ApiError`].
#[derive(axum::extract::FromRequestParts)]
#[from_request(via(axum::extract::Path), rejection(ApiError))]
pub struct ApiPath<T>(pub T);

pub type ApiResult<T> = Result<T, ApiError>;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_name_server_paths_relative_to_the_data_dir() {
        let dir = tempfile::tempdir().unwrap();
        hide_server_paths(dir.path());
        let d = dir.path().display();
        let e = ApiError::new(
            ErrorKind::NoSpace,
            "no_space",
            format!("snapshotting {d}/fs/roots/p/b to {d}/fs/tmp/x: no space left in {d}"),
        );
        assert_eq!(
            scrub(e.0.message()),
            "snapshotting fs/roots/p/b to fs/tmp/x: no space left in the data dir"
        );
        assert_eq!(scrub("box \"web\" not found"), "box \"web\" not found");
    }
}
