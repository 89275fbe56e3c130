//! Box lifecycle: create, list, show, update, delete, stop, resume.

use std::sync::Arc;

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::IntoResponse;
use forkr_engine::api::{BoxInfo, CreateBox, Deleted, UpdateBox};
use forkr_engine::name::{NameKind, validate};
use serde::Deserialize;

use crate::AppState;
use crate::error::{ApiJson, ApiPath, ApiQuery, ApiResult};

fn check(project: &str, name: Option<&str>) -> ApiResult<()> {
    validate(NameKind::Project, project)?;
    if let Some(n) = name {
        validate(NameKind::Box, n)?;
    }
    Ok(())
}

#[utoipa::path(get, path = "/v1/projects/{project}/boxes", tag = "boxes",
    params(("project" = String, Path)),
    responses((status = 200, body = [BoxInfo]), (status = 400, body = forkr_engine::api::ErrorBody)))]
pub async fn list(
    State(s): State<Arc<AppState>>,
    ApiPath(project): ApiPath<String>,
) -> ApiResult<ApiJson<Vec<BoxInfo>>> {
    check(&project, None)?;
    Ok(ApiJson(s.engine.list_boxes(&project)?))
}

#[utoipa::path(post, path = "/v1/projects/{project}/boxes", tag = "boxes",
    params(("project" = String, Path)), request_body = CreateBox,
    responses((status = 201, body = BoxInfo), (status = 400, body = forkr_engine::api::ErrorBody),
        (status = 404, body = forkr_engine::api::ErrorBody), (status = 409, body = forkr_engine::api::ErrorBody)))]
pub async fn create(
    State(s): State<Arc<AppState>>,
    ApiPath(project): ApiPath<String>,
    ApiJson(req): ApiJson<CreateBox>,
) -> ApiResult<impl IntoResponse> {
    check(&project, None)?;
    let info = s.engine.create_box(&project, req).await?;
    Ok((StatusCode::CREATED, ApiJson(info)))
}

#[utoipa::path(get, path = "/v1/projects/{project}/boxes/{name}", tag = "boxes",
    params(("project" = String, Path), ("name" = String, Path)),
    responses((status = 200, body = BoxInfo), (status = 404, body = forkr_engine::api::ErrorBody)))]
pub async fn show(
    State(s): State<Arc<AppState>>,
    ApiPath((project, name)): ApiPath<(String, String)>,
) -> ApiResult<ApiJson<BoxInfo>> {
    check(&project, Some(&name))?;
    Ok(ApiJson(s.engine.get_box(&project, &name)?))
}

#[utoipa::path(patch, path = "/v1/projects/{project}/boxes/{name}", tag = "boxes",
    params(("project" = String, Path), ("name" = String, Path)), request_body = UpdateBox,
    responses((status = 200, body = BoxInfo), (status = 400, body = forkr_engine::api::ErrorBody),
        (status = 404, body = forkr_engine::api::ErrorBody)))]
pub async fn update(
    State(s): State<Arc<AppState>>,
    ApiPath((project, name)): ApiPath<(String, String)>,
    ApiJson(req): ApiJson<UpdateBox>,
) -> ApiResult<ApiJson<BoxInfo>> {
    check(&project, Some(&name))?;
    Ok(ApiJson(s.engine.update_box(&project, &name, req).await?))
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
pub struct DeleteQuery {
    /// Delete even if the box is running.
    #[serde(default)]
    pub force: bool,
}

#[utoipa::path(delete, path = "/v1/projects/{project}/boxes/{name}", tag = "boxes",
    params(("project" = String, Path), ("name" = String, Path), DeleteQuery),
    responses((status = 200, body = Deleted), (status = 202, body = Deleted, description = "deleted; leftover files are removed in the background"),
        (status = 409, body = forkr_engine::api::ErrorBody, description = "fork_running: box is running")))]
pub async fn delete(
    State(s): State<Arc<AppState>>,
    ApiPath((project, name)): ApiPath<(String, String)>,
    ApiQuery(q): ApiQuery<DeleteQuery>,
) -> ApiResult<impl IntoResponse> {
    check(&project, Some(&name))?;
    let d = s.engine.delete_box(&project, &name, q.force).await?;
    let status = if d.cleanup_pending { StatusCode::ACCEPTED } else { StatusCode::OK };
    Ok((status, ApiJson(d)))
}

#[utoipa::path(post, path = "/v1/projects/{project}/boxes/{name}/stop", tag = "boxes",
    params(("project" = String, Path), ("name" = String, Path)),
    responses((status = 200, body = BoxInfo), (status = 404, body = forkr_engine::api::ErrorBody)))]
pub async fn stop(
    State(s): State<Arc<AppState>>,
    ApiPath((project, name)): ApiPath<(String, String)>,
) -> ApiResult<ApiJson<BoxInfo>> {
    check(&project, Some(&name))?;
    Ok(ApiJson(s.engine.stop_box(&project, &name).await?))
}

#[utoipa::path(post, path = "/v1/projects/{project}/boxes/{name}/resume", tag = "boxes",
    params(("project" = String, Path), ("name" = String, Path)),
    responses((status = 200, body = BoxInfo), (status = 404, body = forkr_engine::api::ErrorBody)))]
pub async fn resume(
    State(s): State<Arc<AppState>>,
    ApiPath((project, name)): ApiPath<(String, String)>,
) -> ApiResult<ApiJson<BoxInfo>> {
    check(&project, Some(&name))?;
    Ok(ApiJson(s.engine.resume_box(&project, &name).await?))
}

#[utoipa::path(post, path = "/v1/projects/{project}/boxes/{name}/recreate", tag = "boxes",
    params(("project" = String, Path), ("name" = String, Path)), request_body = CreateBox,
    responses((status = 200, body = BoxInfo, description = "restarted with the new settings on the same root"),
        (status = 400, body = forkr_engine::api::ErrorBody), (status = 404, body = forkr_engine::api::ErrorBody)))]
pub async fn recreate(
    State(s): State<Arc<AppState>>,
    ApiPath((project, name)): ApiPath<(String, String)>,
    ApiJson(req): ApiJson<CreateBox>,
) -> ApiResult<ApiJson<BoxInfo>> {
    check(&project, Some(&name))?;
    Ok(ApiJson(s.engine.recreate_box(&project, &name, req).await?))
}
