//! Data volumes: create, list, show, update, delete; snapshots and restore; backups and restore.
//!
//! Names are validated here at the edge so a bad one is a 400 before the engine looks anything up;
//! the engine checks them again (it is also driven by the declarative apply).

use std::sync::Arc;

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::IntoResponse;
use forkr_engine::api::{
    CreateSnapshot, CreateVolume, CreateVolumeBackup, ErrorBody, UpdateVolume, VolumeBackupInfo,
    VolumeDeleted, VolumeInfo, VolumeSnapshotInfo,
};
use forkr_engine::name::{NameKind, validate};
use serde::Deserialize;

use crate::AppState;
use crate::error::{ApiJson, ApiPath, ApiQuery, ApiResult};

fn check(project: &str, volume: Option<&str>) -> ApiResult<()> {
    validate(NameKind::Project, project)?;
    if let Some(v) = volume {
        validate(NameKind::Volume, v)?;
    }
    Ok(())
}

#[utoipa::path(get, path = "/v1/projects/{project}/volumes", tag = "volumes",
    params(("project" = String, Path)),
    responses((status = 200, body = [VolumeInfo]), (status = 400, body = ErrorBody)))]
pub async fn list(
    State(s): State<Arc<AppState>>,
    ApiPath(project): ApiPath<String>,
) -> ApiResult<ApiJson<Vec<VolumeInfo>>> {
    check(&project, None)?;
    Ok(ApiJson(s.engine.list_volumes(&project)?))
}

#[utoipa::path(post, path = "/v1/projects/{project}/volumes", tag = "volumes",
    params(("project" = String, Path)), request_body = CreateVolume,
    responses((status = 201, body = VolumeInfo), (status = 400, body = ErrorBody),
        (status = 409, body = ErrorBody, description = "a volume with that name exists in the project")))]
pub async fn create(
    State(s): State<Arc<AppState>>,
    ApiPath(project): ApiPath<String>,
    ApiJson(req): ApiJson<CreateVolume>,
) -> ApiResult<impl IntoResponse> {
    check(&project, Some(&req.name))?;
    Ok((StatusCode::CREATED, ApiJson(s.engine.create_volume(&project, req).await?)))
}

#[utoipa::path(get, path = "/v1/projects/{project}/volumes/{volume}", tag = "volumes",
    params(("project" = String, Path), ("volume" = String, Path)),
    responses((status = 200, body = VolumeInfo), (status = 404, body = ErrorBody)))]
pub async fn show(
    State(s): State<Arc<AppState>>,
    ApiPath((project, volume)): ApiPath<(String, String)>,
) -> ApiResult<ApiJson<VolumeInfo>> {
    check(&project, Some(&volume))?;
    Ok(ApiJson(s.engine.get_volume(&project, &volume).await?))
}

#[utoipa::path(patch, path = "/v1/projects/{project}/volumes/{volume}", tag = "volumes",
    params(("project" = String, Path), ("volume" = String, Path)), request_body = UpdateVolume,
    responses((status = 200, body = VolumeInfo), (status = 400, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub async fn update(
    State(s): State<Arc<AppState>>,
    ApiPath((project, volume)): ApiPath<(String, String)>,
    ApiJson(req): ApiJson<UpdateVolume>,
) -> ApiResult<ApiJson<VolumeInfo>> {
    check(&project, Some(&volume))?;
    Ok(ApiJson(s.engine.update_volume(&project, &volume, req).await?))
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
pub struct DeleteQuery {
    /// Delete even while boxes mount it; the mount is removed from those boxes.
    #[serde(default)]
    pub force: bool,
}

#[utoipa::path(delete, path = "/v1/projects/{project}/volumes/{volume}", tag = "volumes",
    params(("project" = String, Path), ("volume" = String, Path), DeleteQuery),
    responses((status = 200, body = VolumeDeleted),
        (status = 409, body = ErrorBody, description = "`volume_in_use`: a box mounts it and `force` is not set")))]
pub async fn delete(
    State(s): State<Arc<AppState>>,
    ApiPath((project, volume)): ApiPath<(String, String)>,
    ApiQuery(q): ApiQuery<DeleteQuery>,
) -> ApiResult<ApiJson<VolumeDeleted>> {
    check(&project, Some(&volume))?;
    Ok(ApiJson(s.engine.delete_volume(&project, &volume, q.force).await?))
}

#[utoipa::path(get, path = "/v1/projects/{project}/volumes/{volume}/snapshots", tag = "volumes",
    params(("project" = String, Path), ("volume" = String, Path)),
    responses((status = 200, body = [VolumeSnapshotInfo]), (status = 404, body = ErrorBody)))]
pub async fn list_snapshots(
    State(s): State<Arc<AppState>>,
    ApiPath((project, volume)): ApiPath<(String, String)>,
) -> ApiResult<ApiJson<Vec<VolumeSnapshotInfo>>> {
    check(&project, Some(&volume))?;
    Ok(ApiJson(s.engine.list_volume_snapshots(&project, &volume)?))
}

#[utoipa::path(post, path = "/v1/projects/{project}/volumes/{volume}/snapshots", tag = "volumes",
    params(("project" = String, Path), ("volume" = String, Path)), request_body = CreateSnapshot,
    responses((status = 201, body = VolumeSnapshotInfo), (status = 404, body = ErrorBody),
        (status = 409, body = ErrorBody, description = "a snapshot with that name exists on the volume")))]
pub async fn create_snapshot(
    State(s): State<Arc<AppState>>,
    ApiPath((project, volume)): ApiPath<(String, String)>,
    ApiJson(req): ApiJson<CreateSnapshot>,
) -> ApiResult<impl IntoResponse> {
    check(&project, Some(&volume))?;
    Ok((StatusCode::CREATED, ApiJson(s.engine.create_volume_snapshot(&project, &volume, req).await?)))
}

#[utoipa::path(delete, path = "/v1/projects/{project}/volumes/{volume}/snapshots/{snapshot}", tag = "volumes",
    params(("project" = String, Path), ("volume" = String, Path), ("snapshot" = String, Path)),
    responses((status = 204), (status = 404, body = ErrorBody)))]
pub async fn delete_snapshot(
    State(s): State<Arc<AppState>>,
    ApiPath((project, volume, snapshot)): ApiPath<(String, String, String)>,
) -> ApiResult<StatusCode> {
    check(&project, Some(&volume))?;
    s.engine.delete_volume_snapshot(&project, &volume, &snapshot).await?;
    Ok(StatusCode::NO_CONTENT)
}

#[utoipa::path(post, path = "/v1/projects/{project}/volumes/{volume}/snapshots/{snapshot}/restore", tag = "volumes",
    params(("project" = String, Path), ("volume" = String, Path), ("snapshot" = String, Path)),
    responses((status = 200, body = VolumeInfo), (status = 404, body = ErrorBody),
        (status = 409, body = ErrorBody, description = "`volume_in_use`: a running box mounts the volume")))]
pub async fn restore_snapshot(
    State(s): State<Arc<AppState>>,
    ApiPath((project, volume, snapshot)): ApiPath<(String, String, String)>,
) -> ApiResult<ApiJson<VolumeInfo>> {
    check(&project, Some(&volume))?;
    Ok(ApiJson(s.engine.restore_volume_snapshot(&project, &volume, &snapshot).await?))
}

#[utoipa::path(get, path = "/v1/projects/{project}/volumes/{volume}/backups", tag = "volumes",
    params(("project" = String, Path), ("volume" = String, Path)),
    responses((status = 200, body = [VolumeBackupInfo], description = "also for a deleted volume whose backups remain"),
        (status = 404, body = ErrorBody)))]
pub async fn list_backups(
    State(s): State<Arc<AppState>>,
    ApiPath((project, volume)): ApiPath<(String, String)>,
) -> ApiResult<ApiJson<Vec<VolumeBackupInfo>>> {
    check(&project, Some(&volume))?;
    Ok(ApiJson(s.engine.list_volume_backups(&project, &volume).await?))
}

#[utoipa::path(post, path = "/v1/projects/{project}/volumes/{volume}/backups", tag = "volumes",
    params(("project" = String, Path), ("volume" = String, Path)), request_body = CreateVolumeBackup,
    responses((status = 201, body = VolumeBackupInfo), (status = 404, body = ErrorBody),
        (status = 409, body = ErrorBody, description = "a backup with that name exists")))]
pub async fn create_backup(
    State(s): State<Arc<AppState>>,
    ApiPath((project, volume)): ApiPath<(String, String)>,
    ApiJson(req): ApiJson<CreateVolumeBackup>,
) -> ApiResult<impl IntoResponse> {
    check(&project, Some(&volume))?;
    Ok((StatusCode::CREATED, ApiJson(s.engine.create_volume_backup(&project, &volume, req).await?)))
}

#[utoipa::path(delete, path = "/v1/projects/{project}/volumes/{volume}/backups/{backup}", tag = "volumes",
    params(("project" = String, Path), ("volume" = String, Path), ("backup" = String, Path)),
    responses((status = 204), (status = 404, body = ErrorBody)))]
pub async fn delete_backup(
    State(s): State<Arc<AppState>>,
    ApiPath((project, volume, backup)): ApiPath<(String, String, String)>,
) -> ApiResult<StatusCode> {
    check(&project, Some(&volume))?;
    s.engine.delete_volume_backup(&project, &volume, &backup).await?;
    Ok(StatusCode::NO_CONTENT)
}

#[utoipa::path(post, path = "/v1/projects/{project}/volumes/{volume}/backups/{backup}/restore", tag = "volumes",
    params(("project" = String, Path), ("volume" = String, Path), ("backup" = String, Path)),
    responses((status = 200, body = VolumeInfo, description = "the volume, recreated if it had been deleted"),
        (status = 400, body = ErrorBody), (status = 404, body = ErrorBody),
        (status = 409, body = ErrorBody, description = "`volume_in_use`: a running box mounts the volume")))]
pub async fn restore_backup(
    State(s): State<Arc<AppState>>,
    ApiPath((project, volume, backup)): ApiPath<(String, String, String)>,
) -> ApiResult<ApiJson<VolumeInfo>> {
    check(&project, Some(&volume))?;
    Ok(ApiJson(s.engine.restore_volume_backup(&project, &volume, &backup).await?))
}

#[cfg(test)]
mod tests {
    use utoipa::OpenApi as _;

    #[test]
    fn every_volume_route_is_in_the_openapi_document() {
        let doc = serde_json::to_value(crate::openapi::ApiDoc::openapi()).unwrap();
        let base = "/v1/projects/{project}/volumes";
        for (path, methods) in [
            (base.to_owned(), &["get", "post"][..]),
            (format!("{base}/{{volume}}"), &["get", "patch", "delete"][..]),
            (format!("{base}/{{volume}}/snapshots"), &["get", "post"][..]),
            (format!("{base}/{{volume}}/snapshots/{{snapshot}}"), &["delete"][..]),
            (format!("{base}/{{volume}}/snapshots/{{snapshot}}/restore"), &["post"][..]),
            (format!("{base}/{{volume}}/backups"), &["get", "post"][..]),
            (format!("{base}/{{volume}}/backups/{{backup}}"), &["delete"][..]),
            (format!("{base}/{{volume}}/backups/{{backup}}/restore"), &["post"][..]),
        ] {
            for m in methods {
                assert!(doc["paths"][&path][m].is_object(), "{m} {path} missing from the OpenAPI document");
            }
        }
        for schema in [
            "VolumeInfo",
            "CreateVolume",
            "UpdateVolume",
            "VolumeDeleted",
            "VolumeSnapshotInfo",
            "VolumeBackupInfo",
        ] {
            assert!(doc["components"]["schemas"][schema].is_object(), "schema {schema} missing");
        }
    }
}
