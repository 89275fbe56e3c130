//! Project users (document 004): create, list, show, update (the shell), delete.
//!
//! Path names are validated by [`crate::guard`] before a handler runs; the body's `name` is
//! validated here, so a reserved or malformed name is a 400 before the engine is asked.

use std::sync::Arc;

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::IntoResponse;
use forkr_engine::api::{CreateUser, ErrorBody, UpdateUser, UserDeleted, UserInfo};
use forkr_engine::name::{NameKind, validate};

use crate::AppState;
use crate::error::{ApiJson, ApiPath, ApiResult};

#[utoipa::path(get, path = "/v1/projects/{project}/users", tag = "users",
    params(("project" = String, Path)),
    responses((status = 200, body = [UserInfo]), (status = 400, body = ErrorBody)))]
pub async fn list(
    State(s): State<Arc<AppState>>,
    ApiPath(project): ApiPath<String>,
) -> ApiResult<ApiJson<Vec<UserInfo>>> {
    Ok(ApiJson(s.engine.list_users(&project)?))
}

#[utoipa::path(post, path = "/v1/projects/{project}/users", tag = "users",
    params(("project" = String, Path)), request_body = CreateUser,
    responses((status = 201, body = UserInfo),
        (status = 400, body = ErrorBody, description = "`invalid_name` (pattern or a reserved system name) or `invalid_shell`"),
        (status = 409, body = ErrorBody, description = "a user with that name exists in the project")))]
pub async fn create(
    State(s): State<Arc<AppState>>,
    ApiPath(project): ApiPath<String>,
    ApiJson(req): ApiJson<CreateUser>,
) -> ApiResult<impl IntoResponse> {
    validate(NameKind::User, &req.name)?;
    Ok((StatusCode::CREATED, ApiJson(s.engine.create_user(&project, req).await?)))
}

#[utoipa::path(get, path = "/v1/projects/{project}/users/{user}", tag = "users",
    params(("project" = String, Path), ("user" = String, Path)),
    responses((status = 200, body = UserInfo), (status = 404, body = ErrorBody)))]
pub async fn show(
    State(s): State<Arc<AppState>>,
    ApiPath((project, user)): ApiPath<(String, String)>,
) -> ApiResult<ApiJson<UserInfo>> {
    Ok(ApiJson(s.engine.get_user(&project, &user)?))
}

#[utoipa::path(patch, path = "/v1/projects/{project}/users/{user}", tag = "users",
    params(("project" = String, Path), ("user" = String, Path)), request_body = UpdateUser,
    responses((status = 200, body = UserInfo),
        (status = 400, body = ErrorBody, description = "`no_updates` or `invalid_shell`"),
        (status = 404, body = ErrorBody)))]
pub async fn update(
    State(s): State<Arc<AppState>>,
    ApiPath((project, user)): ApiPath<(String, String)>,
    ApiJson(req): ApiJson<UpdateUser>,
) -> ApiResult<ApiJson<UserInfo>> {
    Ok(ApiJson(s.engine.update_user(&project, &user, req)?))
}

#[utoipa::path(delete, path = "/v1/projects/{project}/users/{user}", tag = "users",
    params(("project" = String, Path), ("user" = String, Path)),
    responses((status = 200, body = UserDeleted, description = "idempotent: `deleted` is false when the user was already gone")))]
pub async fn delete(
    State(s): State<Arc<AppState>>,
    ApiPath((project, user)): ApiPath<(String, String)>,
) -> ApiResult<ApiJson<UserDeleted>> {
    Ok(ApiJson(s.engine.delete_user(&project, &user)?))
}
