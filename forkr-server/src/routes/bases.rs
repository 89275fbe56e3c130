//! Bases: list, show, import from a tarball.

use std::sync::Arc;

use axum::body::Body;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::IntoResponse;
use forkr_engine::api::{BaseInfo, BaseVersion};
use forkr_engine::engine::BaseImport;
use forkr_engine::name::{NameKind, validate};
use forkr_engine::{Error, ErrorKind};
use futures_util::StreamExt;
use serde::Deserialize;
use tokio::io::AsyncWriteExt;

use crate::AppState;
use crate::error::{ApiJson, ApiPath, ApiQuery, ApiResult};

/// Largest tarball an import accepts.
pub const TARBALL_LIMIT: u64 = 8 << 30;

#[utoipa::path(get, path = "/v1/bases", tag = "bases", responses((status = 200, body = [BaseInfo])))]
pub async fn list(State(s): State<Arc<AppState>>) -> ApiResult<ApiJson<Vec<BaseInfo>>> {
    Ok(ApiJson(s.engine.list_bases()?))
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
pub struct ShowQuery {
    /// Only versions built from a script with this sha256.
    pub tag: Option<String>,
}

#[utoipa::path(get, path = "/v1/bases/{name}", tag = "bases", params(("name" = String, Path), ShowQuery),
    responses((status = 200, body = BaseInfo), (status = 404, body = forkr_engine::api::ErrorBody)))]
pub async fn show(
    State(s): State<Arc<AppState>>,
    ApiPath(name): ApiPath<String>,
    ApiQuery(q): ApiQuery<ShowQuery>,
) -> ApiResult<ApiJson<BaseInfo>> {
    validate(NameKind::Base, &name)?;
    Ok(ApiJson(s.engine.show_base(&name, q.tag.as_deref())?))
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
pub struct ImportQuery {
    /// Base to layer the tarball on.
    pub parent: Option<String>,
    /// An ownership tag for the new version.
    pub tag: Option<String>,
    /// The sha256 of what the tarball was built from, recorded as the version's TAG.
    pub build_tag: Option<String>,
}

#[utoipa::path(post, path = "/v1/bases/{name}/import", tag = "bases", params(("name" = String, Path), ImportQuery),
    request_body(content = Vec<u8>, content_type = "application/gzip"),
    responses((status = 201, body = BaseVersion), (status = 400, body = forkr_engine::api::ErrorBody),
        (status = 413, body = forkr_engine::api::ErrorBody)))]
pub async fn import(
    State(s): State<Arc<AppState>>,
    ApiPath(name): ApiPath<String>,
    ApiQuery(q): ApiQuery<ImportQuery>,
    body: Body,
) -> ApiResult<impl IntoResponse> {
    validate(NameKind::Base, &name)?;
    // Spool the upload to a file beside the data so a multi-GB tarball never sits in memory.
    let spool =
        s.engine.layout().data_dir().join(format!("upload-{}-{}.tar.gz", std::process::id(), nanos()));
    let _cleanup = RemoveOnDrop(spool.clone());
    let mut f = tokio::fs::File::create(&spool).await.map_err(|e| Error::io("spooling upload", e))?;
    let mut stream = body.into_data_stream();
    let mut total = 0u64;
    while let Some(chunk) = stream.next().await {
        let chunk = chunk.map_err(|e| Error::bad_request("invalid_body", format!("upload failed: {e}")))?;
        total += chunk.len() as u64;
        if total > TARBALL_LIMIT {
            return Err(Error::new(
                ErrorKind::TooLarge,
                "too_large",
                format!("tarball is over the limit of {TARBALL_LIMIT} bytes"),
            )
            .into());
        }
        f.write_all(&chunk).await.map_err(|e| Error::io("spooling upload", e))?;
    }
    f.flush().await.map_err(|e| Error::io("spooling upload", e))?;
    drop(f);
    let v = s
        .engine
        .import_base(BaseImport {
            name,
            parent: q.parent,
            tarball: spool.clone(),
            tags: q.tag.into_iter().collect(),
            build_tag: q.build_tag,
        })
        .await?;
    Ok((StatusCode::CREATED, ApiJson(v)))
}

struct RemoveOnDrop(std::path::PathBuf);
impl Drop for RemoveOnDrop {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

fn nanos() -> u128 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_nanos()).unwrap_or(0)
}

#[utoipa::path(post, path = "/v1/bases/{name}/save", tag = "bases", params(("name" = String, Path)),
    request_body = forkr_engine::api::SaveBase,
    responses((status = 201, body = BaseVersion), (status = 404, body = forkr_engine::api::ErrorBody)))]
pub async fn save(
    State(s): State<Arc<AppState>>,
    ApiPath(name): ApiPath<String>,
    ApiJson(req): ApiJson<forkr_engine::api::SaveBase>,
) -> ApiResult<impl IntoResponse> {
    Ok((StatusCode::CREATED, ApiJson(s.engine.save_base(&name, &req.project, &req.r#box, req.tags).await?)))
}

#[utoipa::path(post, path = "/v1/bases/{name}/build", tag = "bases", params(("name" = String, Path)),
    request_body = forkr_engine::api::BuildBase,
    responses((status = 200, body = forkr_engine::api::BuildResult), (status = 400, body = forkr_engine::api::ErrorBody)))]
pub async fn build(
    State(s): State<Arc<AppState>>,
    ApiPath(name): ApiPath<String>,
    ApiJson(req): ApiJson<forkr_engine::api::BuildBase>,
) -> ApiResult<ApiJson<forkr_engine::api::BuildResult>> {
    Ok(ApiJson(s.engine.build_base(&name, req).await?))
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
pub struct DeleteQuery {
    /// Delete even while boxes use it (their roots are independent copies) or children exist.
    #[serde(default)]
    pub force: bool,
    /// Also delete every base built on it.
    #[serde(default)]
    pub cascade: bool,
}

#[utoipa::path(delete, path = "/v1/bases/{name}", tag = "bases", params(("name" = String, Path), DeleteQuery),
    responses((status = 200, body = forkr_engine::api::BasesDeleted), (status = 409, body = forkr_engine::api::ErrorBody)))]
pub async fn delete(
    State(s): State<Arc<AppState>>,
    ApiPath(name): ApiPath<String>,
    ApiQuery(q): ApiQuery<DeleteQuery>,
) -> ApiResult<ApiJson<forkr_engine::api::BasesDeleted>> {
    Ok(ApiJson(s.engine.delete_base(&name, q.force, q.cascade).await?))
}
