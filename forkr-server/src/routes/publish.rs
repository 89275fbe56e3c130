//! Publishing a box on a hostname, and the TCP ports listening inside it.

use std::sync::Arc;
use std::time::Duration;

use axum::extract::State;
use forkr_engine::api::{ListeningPort, PortWait, PublishRequest, Published, UnpublishRequest};
use forkr_engine::name::{NameKind, validate};
use serde::Deserialize;

use crate::AppState;
use crate::error::{ApiJson, ApiPath, ApiQuery, ApiResult};

fn check(project: &str, name: &str) -> ApiResult<()> {
    validate(NameKind::Project, project)?;
    validate(NameKind::Box, name)?;
    Ok(())
}

#[utoipa::path(post, path = "/v1/projects/{project}/boxes/{name}/publish", tag = "publish",
    params(("project" = String, Path), ("name" = String, Path)), request_body = PublishRequest,
    responses((status = 200, body = Published), (status = 400, body = forkr_engine::api::ErrorBody),
        (status = 404, body = forkr_engine::api::ErrorBody),
        (status = 409, body = forkr_engine::api::ErrorBody, description = "host_taken: published by another box; pass force")))]
pub async fn publish(
    State(s): State<Arc<AppState>>,
    ApiPath((project, name)): ApiPath<(String, String)>,
    ApiJson(req): ApiJson<PublishRequest>,
) -> ApiResult<ApiJson<Published>> {
    check(&project, &name)?;
    Ok(ApiJson(s.engine.publish(&project, &name, req).await?))
}

#[utoipa::path(post, path = "/v1/projects/{project}/boxes/{name}/unpublish", tag = "publish",
    params(("project" = String, Path), ("name" = String, Path)), request_body = UnpublishRequest,
    responses((status = 200, body = Published), (status = 400, body = forkr_engine::api::ErrorBody),
        (status = 403, body = forkr_engine::api::ErrorBody, description = "host_not_owned: another box publishes it"),
        (status = 404, body = forkr_engine::api::ErrorBody, description = "not_found (box) or not_published (host)")))]
pub async fn unpublish(
    State(s): State<Arc<AppState>>,
    ApiPath((project, name)): ApiPath<(String, String)>,
    ApiJson(req): ApiJson<UnpublishRequest>,
) -> ApiResult<ApiJson<Published>> {
    check(&project, &name)?;
    Ok(ApiJson(s.engine.unpublish(&project, &name, req).await?))
}

#[utoipa::path(get, path = "/v1/projects/{project}/boxes/{name}/ports", tag = "publish",
    params(("project" = String, Path), ("name" = String, Path)),
    responses((status = 200, body = [ListeningPort]), (status = 404, body = forkr_engine::api::ErrorBody),
        (status = 409, body = forkr_engine::api::ErrorBody, description = "box_not_running")))]
pub async fn ports(
    State(s): State<Arc<AppState>>,
    ApiPath((project, name)): ApiPath<(String, String)>,
) -> ApiResult<ApiJson<Vec<ListeningPort>>> {
    check(&project, &name)?;
    Ok(ApiJson(s.engine.listening_ports(&project, &name).await?))
}

/// The longest `port wait` the server holds a request open for.
pub const MAX_WAIT_MS: u64 = 3_600_000;

#[derive(Debug, Deserialize, utoipa::IntoParams)]
pub struct WaitQuery {
    /// Milliseconds to wait at most (default 30000, at most 3600000).
    pub timeout_ms: Option<u64>,
}

#[utoipa::path(get, path = "/v1/projects/{project}/boxes/{name}/ports/{port}/wait", tag = "publish",
    params(("project" = String, Path), ("name" = String, Path), ("port" = u16, Path), WaitQuery),
    responses((status = 200, body = PortWait, description = "`listening: false` when the timeout passed first"),
        (status = 404, body = forkr_engine::api::ErrorBody),
        (status = 409, body = forkr_engine::api::ErrorBody, description = "box_not_running")))]
pub async fn wait(
    State(s): State<Arc<AppState>>,
    ApiPath((project, name, port)): ApiPath<(String, String, u16)>,
    ApiQuery(q): ApiQuery<WaitQuery>,
) -> ApiResult<ApiJson<PortWait>> {
    check(&project, &name)?;
    if port == 0 {
        Err(forkr_engine::Error::bad_request(
            "invalid_port",
            "port 0 cannot listen; give a port from 1 to 65535",
        ))?;
    }
    let timeout = Duration::from_millis(q.timeout_ms.unwrap_or(30_000).min(MAX_WAIT_MS));
    Ok(ApiJson(s.engine.wait_port(&project, &name, port, timeout).await?))
}
