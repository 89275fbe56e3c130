//! Declarative apply support: a project's observed state in one call and the expiring apply lock.

use std::sync::Arc;

use axum::extract::State;
use axum::http::StatusCode;
use forkr_engine::api::{ErrorBody, LockInfo, LockRequest};
use forkr_engine::name::{NameKind, validate};
use serde::Deserialize;

use crate::AppState;
use crate::error::{ApiJson, ApiPath, ApiQuery, ApiResult};

#[utoipa::path(get, path = "/v1/projects/{project}/state", tag = "workspace",
    params(("project" = String, Path)),
    responses((status = 200, body = Object, description = "the project's observed state (boxes, bases, volumes, snapshots, publishes)")))]
pub async fn state(
    State(s): State<Arc<AppState>>,
    ApiPath(project): ApiPath<String>,
) -> ApiResult<ApiJson<forkr_engine::plan::Observed>> {
    validate(NameKind::Project, &project)?;
    Ok(ApiJson(s.engine.observed(&project)?))
}

#[utoipa::path(post, path = "/v1/projects/{project}/lock", tag = "workspace",
    params(("project" = String, Path)), request_body = LockRequest,
    responses((status = 200, body = LockInfo), (status = 409, body = ErrorBody, description = "locked, or stale_plan")))]
pub async fn lock(
    State(s): State<Arc<AppState>>,
    ApiPath(project): ApiPath<String>,
    ApiJson(req): ApiJson<LockRequest>,
) -> ApiResult<ApiJson<LockInfo>> {
    Ok(ApiJson(s.engine.take_lock(&project, &req)?))
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
pub struct RefreshQuery {
    /// New time to live in seconds (default 60).
    pub ttl_seconds: Option<u64>,
}

#[utoipa::path(post, path = "/v1/projects/{project}/lock/{id}/refresh", tag = "workspace",
    params(("project" = String, Path), ("id" = String, Path), RefreshQuery),
    responses((status = 200, body = LockInfo), (status = 409, body = ErrorBody, description = "lock_lost")))]
pub async fn refresh(
    State(s): State<Arc<AppState>>,
    ApiPath((project, id)): ApiPath<(String, String)>,
    ApiQuery(q): ApiQuery<RefreshQuery>,
) -> ApiResult<ApiJson<LockInfo>> {
    validate(NameKind::Project, &project)?;
    Ok(ApiJson(s.engine.refresh_lock(&project, &id, q.ttl_seconds.unwrap_or(60))?))
}

#[utoipa::path(delete, path = "/v1/projects/{project}/lock/{id}", tag = "workspace",
    params(("project" = String, Path), ("id" = String, Path)), responses((status = 204)))]
pub async fn release(
    State(s): State<Arc<AppState>>,
    ApiPath((project, id)): ApiPath<(String, String)>,
) -> ApiResult<StatusCode> {
    validate(NameKind::Project, &project)?;
    s.engine.release_lock(&project, &id)?;
    Ok(StatusCode::NO_CONTENT)
}
