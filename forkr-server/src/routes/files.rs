//! File transfer for `cp`/`get`/`put`: raw bytes, the permission bits in a header or query.

use std::sync::Arc;

use axum::extract::State;
use axum::http::HeaderValue;
use axum::response::{IntoResponse, Response};
use forkr_engine::api::{FileWritten, MODE_HEADER};
use forkr_engine::name::{NameKind, validate};
use serde::Deserialize;

use crate::AppState;
use crate::error::{ApiBytes, ApiError, ApiJson, ApiPath, ApiQuery, ApiResult};

/// Largest file `cp` moves in one request.
pub const FILE_LIMIT: usize = 512 << 20;

#[derive(Debug, Deserialize, utoipa::IntoParams)]
pub struct FileQuery {
    /// Absolute path inside the box.
    pub path: String,
    /// Octal permission bits for uploads (default 0644).
    pub mode: Option<String>,
    /// Create missing parent directories (uploads).
    #[serde(default)]
    pub mkdirs: bool,
}

fn check(project: &str, name: &str, path: &str) -> ApiResult<()> {
    validate(NameKind::Project, project)?;
    validate(NameKind::Box, name)?;
    if !path.starts_with('/') {
        return Err(ApiError::new(
            forkr_engine::ErrorKind::BadRequest,
            "invalid_path",
            format!("path {path:?} must be absolute"),
        ));
    }
    Ok(())
}

#[utoipa::path(get, path = "/v1/projects/{project}/boxes/{name}/files", tag = "files",
    params(("project" = String, Path), ("name" = String, Path), FileQuery),
    responses((status = 200, description = "file bytes; mode in x-forkr-mode", content_type = "application/octet-stream"),
        (status = 400, body = forkr_engine::api::ErrorBody), (status = 404, body = forkr_engine::api::ErrorBody),
        (status = 413, body = forkr_engine::api::ErrorBody)))]
pub async fn get(
    State(s): State<Arc<AppState>>,
    ApiPath((project, name)): ApiPath<(String, String)>,
    ApiQuery(q): ApiQuery<FileQuery>,
) -> ApiResult<Response> {
    check(&project, &name, &q.path)?;
    let (data, mode) = s.engine.read_box_file(&project, &name, &q.path, FILE_LIMIT as u64).await?;
    let mut resp = data.into_response();
    let headers = resp.headers_mut();
    headers.insert(axum::http::header::CONTENT_TYPE, HeaderValue::from_static("application/octet-stream"));
    if let Ok(v) = HeaderValue::from_str(&format!("{mode:o}")) {
        headers.insert(MODE_HEADER, v);
    }
    Ok(resp)
}

#[utoipa::path(put, path = "/v1/projects/{project}/boxes/{name}/files", tag = "files",
    params(("project" = String, Path), ("name" = String, Path), FileQuery),
    request_body(content = Vec<u8>, content_type = "application/octet-stream"),
    responses((status = 200, body = FileWritten), (status = 400, body = forkr_engine::api::ErrorBody),
        (status = 404, body = forkr_engine::api::ErrorBody), (status = 413, body = forkr_engine::api::ErrorBody)))]
pub async fn put(
    State(s): State<Arc<AppState>>,
    ApiPath((project, name)): ApiPath<(String, String)>,
    ApiQuery(q): ApiQuery<FileQuery>,
    ApiBytes(body): ApiBytes,
) -> ApiResult<ApiJson<FileWritten>> {
    check(&project, &name, &q.path)?;
    let mode = match q.mode.as_deref() {
        None => 0o644,
        Some(m) => u32::from_str_radix(m.trim_start_matches("0o"), 8)
            .ok()
            .filter(|m| *m <= 0o7777)
            .ok_or_else(|| {
                ApiError::new(
                    forkr_engine::ErrorKind::BadRequest,
                    "invalid_mode",
                    format!("invalid mode {m:?}: give octal permission bits such as 0644"),
                )
            })?,
    };
    let size = body.len() as u64;
    // Into a Vec without a copy: the body is not shared.
    s.engine.write_box_file(&project, &name, &q.path, Vec::from(body), mode, q.mkdirs).await?;
    Ok(ApiJson(FileWritten { path: q.path, size, mode }))
}

#[utoipa::path(delete, path = "/v1/projects/{project}/boxes/{name}/files", tag = "files",
    params(("project" = String, Path), ("name" = String, Path), FileQuery),
    responses((status = 204), (status = 400, body = forkr_engine::api::ErrorBody)))]
pub async fn delete(
    State(s): State<Arc<AppState>>,
    ApiPath((project, name)): ApiPath<(String, String)>,
    ApiQuery(q): ApiQuery<FileQuery>,
) -> ApiResult<axum::http::StatusCode> {
    check(&project, &name, &q.path)?;
    s.engine.delete_box_file(&project, &name, &q.path).await?;
    Ok(axum::http::StatusCode::NO_CONTENT)
}
