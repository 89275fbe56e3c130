//! Root snapshots and diffs against them.

use std::sync::Arc;

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::IntoResponse;
use forkr_engine::api::{BoxInfo, CreateSnapshot, DiffStatus, ErrorBody, FileDiff, SnapshotInfo};
use forkr_engine::name::{NameKind, validate};
use serde::Deserialize;

use crate::AppState;
use crate::error::{ApiJson, ApiPath, ApiQuery, ApiResult};

fn check(project: &str, name: &str) -> ApiResult<()> {
    validate(NameKind::Project, project)?;
    validate(NameKind::Box, name)?;
    Ok(())
}

#[utoipa::path(get, path = "/v1/projects/{project}/boxes/{name}/snapshots", tag = "snapshots",
    params(("project" = String, Path), ("name" = String, Path)),
    responses((status = 200, body = [SnapshotInfo]), (status = 404, body = ErrorBody)))]
pub async fn list(
    State(s): State<Arc<AppState>>,
    ApiPath((project, name)): ApiPath<(String, String)>,
) -> ApiResult<ApiJson<Vec<SnapshotInfo>>> {
    check(&project, &name)?;
    Ok(ApiJson(s.engine.list_snapshots(&project, &name)?))
}

#[utoipa::path(post, path = "/v1/projects/{project}/boxes/{name}/snapshots", tag = "snapshots",
    params(("project" = String, Path), ("name" = String, Path)), request_body = CreateSnapshot,
    responses((status = 201, body = SnapshotInfo), (status = 409, body = ErrorBody, description = "a snapshot with that name exists")))]
pub async fn create(
    State(s): State<Arc<AppState>>,
    ApiPath((project, name)): ApiPath<(String, String)>,
    ApiJson(req): ApiJson<CreateSnapshot>,
) -> ApiResult<impl IntoResponse> {
    check(&project, &name)?;
    Ok((StatusCode::CREATED, ApiJson(s.engine.create_snapshot(&project, &name, req).await?)))
}

#[utoipa::path(post, path = "/v1/projects/{project}/boxes/{name}/snapshots/{snapshot}/restore", tag = "snapshots",
    params(("project" = String, Path), ("name" = String, Path), ("snapshot" = String, Path)),
    responses((status = 200, body = BoxInfo), (status = 404, body = ErrorBody)))]
pub async fn restore(
    State(s): State<Arc<AppState>>,
    ApiPath((project, name, snapshot)): ApiPath<(String, String, String)>,
) -> ApiResult<ApiJson<BoxInfo>> {
    check(&project, &name)?;
    Ok(ApiJson(s.engine.restore_snapshot(&project, &name, &snapshot).await?))
}

#[utoipa::path(delete, path = "/v1/projects/{project}/boxes/{name}/snapshots/{snapshot}", tag = "snapshots",
    params(("project" = String, Path), ("name" = String, Path), ("snapshot" = String, Path)),
    responses((status = 204), (status = 404, body = ErrorBody)))]
pub async fn delete(
    State(s): State<Arc<AppState>>,
    ApiPath((project, name, snapshot)): ApiPath<(String, String, String)>,
) -> ApiResult<StatusCode> {
    check(&project, &name)?;
    s.engine.delete_snapshot(&project, &name, &snapshot).await?;
    Ok(StatusCode::NO_CONTENT)
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
pub struct DiffQuery {
    /// Snapshot to compare against (default: the newest).
    pub against: Option<String>,
    /// Absolute path (file diff only).
    pub path: Option<String>,
}

#[utoipa::path(get, path = "/v1/projects/{project}/boxes/{name}/diff/status", tag = "snapshots",
    params(("project" = String, Path), ("name" = String, Path), DiffQuery),
    responses((status = 200, body = DiffStatus), (status = 400, body = ErrorBody)))]
pub async fn diff_status(
    State(s): State<Arc<AppState>>,
    ApiPath((project, name)): ApiPath<(String, String)>,
    ApiQuery(q): ApiQuery<DiffQuery>,
) -> ApiResult<ApiJson<DiffStatus>> {
    check(&project, &name)?;
    Ok(ApiJson(s.engine.diff_status(&project, &name, q.against.as_deref()).await?))
}

#[utoipa::path(get, path = "/v1/projects/{project}/boxes/{name}/diff/file", tag = "snapshots",
    params(("project" = String, Path), ("name" = String, Path), DiffQuery),
    responses((status = 200, body = FileDiff), (status = 400, body = ErrorBody), (status = 413, body = ErrorBody)))]
pub async fn diff_file(
    State(s): State<Arc<AppState>>,
    ApiPath((project, name)): ApiPath<(String, String)>,
    ApiQuery(q): ApiQuery<DiffQuery>,
) -> ApiResult<ApiJson<FileDiff>> {
    check(&project, &name)?;
    let path = q.path.unwrap_or_default();
    Ok(ApiJson(s.engine.diff_file(&project, &name, &path, q.against.as_deref()).await?))
}
