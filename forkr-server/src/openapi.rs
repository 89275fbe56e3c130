//! The OpenAPI document served at `/v1/openapi.json`, generated from the handlers' annotations.

use axum::Json;
use utoipa::OpenApi;
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};

use crate::routes::{bases, boxes, exec, files, publish, snapshots, volumes, workspace};

#[derive(OpenApi)]
#[openapi(
    info(title = "forkr-api", description = "Forkr: instant, persistent Linux sandboxes (boxes)."),
    paths(
        boxes::list, boxes::create, boxes::show, boxes::update, boxes::delete, boxes::stop, boxes::resume, boxes::recreate,
        exec::exec, exec::ps, exec::logs, files::get, files::put, files::delete, bases::list, bases::show, bases::import,
        bases::save, bases::build, bases::delete, snapshots::list, snapshots::create, snapshots::restore,
        snapshots::delete, snapshots::diff_status, snapshots::diff_file, workspace::state, workspace::lock,
        workspace::refresh, workspace::release,
        volumes::list, volumes::create, volumes::show, volumes::update, volumes::delete, volumes::list_snapshots,
        volumes::create_snapshot, volumes::delete_snapshot, volumes::restore_snapshot, volumes::list_backups,
        volumes::create_backup, volumes::delete_backup, volumes::restore_backup,
        publish::publish, publish::unpublish, publish::ports, publish::wait,
    ),
    components(schemas(forkr_engine::api::ErrorBody, forkr_engine::api::ErrorDetail, forkr_engine::api::BgStarted)),
    modifiers(&Security),
    security(("bearer" = [])),
)]
pub struct ApiDoc;

struct Security;

impl utoipa::Modify for Security {
    fn modify(&self, api: &mut utoipa::openapi::OpenApi) {
        let components = api.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(HttpBuilder::new().scheme(HttpAuthScheme::Bearer).build()),
        );
    }
}

pub async fn serve() -> Json<utoipa::openapi::OpenApi> {
    Json(ApiDoc::openapi())
}
