//! forkr-api: the HTTP/WebSocket API over the Forkr engine.
//!
//! Handlers are thin (parse, validate names at the edge, call one engine method, render); all errors
//! go through [`error::ApiError`], which renders the documented JSON body. Every route but
//! `/v1/openapi.json` and `/healthz` needs the bearer token.

use std::sync::Arc;

use axum::Router;
use axum::extract::DefaultBodyLimit;
use axum::routing::{get, post};
use forkr_engine::engine::Engine;

pub mod auth;
pub mod error;
pub mod guard;
pub mod openapi;
pub mod proxy;
pub mod routes;
pub mod sealed;
pub mod setup;
pub mod tokens;

/// Shared state of all handlers.
pub struct AppState {
    pub engine: Arc<Engine>,
    pub token: String,
}

/// Largest JSON body a route accepts.
pub const JSON_LIMIT: usize = 1 << 20;

/// The full API router.
pub fn router(state: Arc<AppState>) -> Router {
    use routes::{bases, boxes, exec, files, publish, snapshots, users, volumes, workspace};
    let box_path = "/v1/projects/{project}/boxes/{name}";
    let vol_path = "/v1/projects/{project}/volumes/{volume}";
    let api = Router::new()
        .route("/v1/projects/{project}/boxes", get(boxes::list).post(boxes::create))
        .route(box_path, get(boxes::show).patch(boxes::update).delete(boxes::delete))
        .route(&format!("{box_path}/stop"), post(boxes::stop))
        .route(&format!("{box_path}/resume"), post(boxes::resume))
        .route(&format!("{box_path}/recreate"), post(boxes::recreate))
        .route(&format!("{box_path}/exec"), post(exec::exec))
        .route(&format!("{box_path}/exec/ws"), get(exec::exec_ws))
        .route(&format!("{box_path}/console"), get(exec::console))
        .route(&format!("{box_path}/ps"), post(exec::ps))
        .route(&format!("{box_path}/logs"), get(exec::logs))
        .route(
            &format!("{box_path}/files"),
            get(files::get)
                .put(files::put)
                .delete(files::delete)
                .layer(DefaultBodyLimit::max(files::FILE_LIMIT)),
        )
        .route(&format!("{box_path}/snapshots"), get(snapshots::list).post(snapshots::create))
        .route(&format!("{box_path}/snapshots/{{snapshot}}"), axum::routing::delete(snapshots::delete))
        .route(&format!("{box_path}/snapshots/{{snapshot}}/restore"), post(snapshots::restore))
        .route(&format!("{box_path}/diff/status"), get(snapshots::diff_status))
        .route(&format!("{box_path}/diff/file"), get(snapshots::diff_file))
        .route(&format!("{box_path}/publish"), post(publish::publish))
        .route(&format!("{box_path}/unpublish"), post(publish::unpublish))
        .route(&format!("{box_path}/ports"), get(publish::ports))
        .route(&format!("{box_path}/ports/{{port}}/wait"), get(publish::wait))
        .route("/v1/projects/{project}/state", get(workspace::state))
        .route("/v1/projects/{project}/lock", post(workspace::lock))
        .route("/v1/projects/{project}/lock/{id}/refresh", post(workspace::refresh))
        .route("/v1/projects/{project}/lock/{id}", axum::routing::delete(workspace::release))
        .route("/v1/projects/{project}/volumes", get(volumes::list).post(volumes::create))
        .route(vol_path, get(volumes::show).patch(volumes::update).delete(volumes::delete))
        .route(&format!("{vol_path}/snapshots"), get(volumes::list_snapshots).post(volumes::create_snapshot))
        .route(&format!("{vol_path}/snapshots/{{snapshot}}"), axum::routing::delete(volumes::delete_snapshot))
        .route(&format!("{vol_path}/snapshots/{{snapshot}}/restore"), post(volumes::restore_snapshot))
        .route(&format!("{vol_path}/backups"), get(volumes::list_backups).post(volumes::create_backup))
        .route(&format!("{vol_path}/backups/{{backup}}"), axum::routing::delete(volumes::delete_backup))
        .route(&format!("{vol_path}/backups/{{backup}}/restore"), post(volumes::restore_backup))
        .route("/v1/projects/{project}/users", get(users::list).post(users::create))
        .route(
            "/v1/projects/{project}/users/{user}",
            get(users::show).patch(users::update).delete(users::delete),
        )
        .route("/v1/bases", get(bases::list))
        .route("/v1/bases/{name}", get(bases::show).delete(bases::delete))
        .route("/v1/bases/{name}/save", post(bases::save))
        .route("/v1/bases/{name}/build", post(bases::build))
        .route("/v1/bases/{name}/import", post(bases::import).layer(DefaultBodyLimit::disable()))
        .layer(DefaultBodyLimit::max(JSON_LIMIT))
        // Route layers run last-added first: authentication, then names and the token's scope.
        .route_layer(axum::middleware::from_fn(guard::edge))
        .route_layer(axum::middleware::from_fn_with_state(state.clone(), auth::require_token));
    Router::new()
        .route("/v1/openapi.json", get(openapi::serve))
        .route("/healthz", get(|| async { "ok" }))
        .merge(api)
        // The documented error body for a known path with the wrong method, too.
        .method_not_allowed_fallback(|| async {
            let body = forkr_engine::api::ErrorBody {
                error: forkr_engine::api::ErrorDetail {
                    code: "method_not_allowed".into(),
                    message: "this route does not support this HTTP method; see /v1/openapi.json".into(),
                },
            };
            (axum::http::StatusCode::METHOD_NOT_ALLOWED, axum::Json(body))
        })
        .fallback(|| async {
            error::ApiError::new(
                forkr_engine::ErrorKind::NotFound,
                "not_found",
                "no such route; see /v1/openapi.json",
            )
        })
        .with_state(state)
}
