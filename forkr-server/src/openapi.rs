//! The OpenAPI document served at `/v1/openapi.json`, generated from the handlers' annotations.

use axum::Json;
use utoipa::OpenApi;
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};

use crate::routes::{bases, boxes, exec, files, publish, snapshots, users, volumes, workspace};

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
        users::list, users::create, users::show, users::update, users::delete,
    ),
    components(schemas(forkr_engine::api::ErrorBody, forkr_engine::api::ErrorDetail, forkr_engine::api::BgStarted)),
    modifiers(&Security, &Edge),
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

/// Documents what the edge of the API does on every route, so that the document matches the
/// server exactly (schemathesis checks every answer against it, `scripts/schemathesis.sh`):
///
/// - every path parameter that is a name carries the pattern [`crate::guard`] enforces, so
///   clients and generators know a bad name is refused before anything else happens;
/// - the answers the edge itself gives are listed on every operation they can come from: 401 (no
///   or a wrong token), 400 (a bad name, query or body), 404 (an object that does not exist, or
///   another project for a project token), 403 (a project token changing a global object), 413 (a
///   body over its limit) and 507 (the box storage is full, for every operation that writes);
/// - raw request bodies (file uploads, base tarballs) are binary strings.
struct Edge;

impl Edge {
    fn error(description: &str) -> utoipa::openapi::RefOr<utoipa::openapi::Response> {
        use utoipa::openapi::{ContentBuilder, Ref, ResponseBuilder};
        ResponseBuilder::new()
            .description(description)
            .content(
                "application/json",
                ContentBuilder::new().schema(Some(Ref::from_schema_name("ErrorBody"))).build(),
            )
            .build()
            .into()
    }

    fn operation(path: &str, method: &str, op: &mut utoipa::openapi::path::Operation) {
        use utoipa::openapi::path::ParameterIn;
        use utoipa::openapi::schema::{KnownFormat, Object, Schema, SchemaFormat, SchemaType, Type};
        use utoipa::openapi::{RefOr, Required};

        let mut has_path_params = false;
        for p in op.parameters.iter_mut().flatten() {
            if p.parameter_in != ParameterIn::Path {
                continue;
            }
            has_path_params = true;
            p.required = Required::True;
            if let Some(kind) = crate::guard::kind_of(path, &p.name) {
                let mut schema = Object::with_type(SchemaType::Type(Type::String));
                schema.pattern = Some(kind.pattern().to_owned());
                schema.min_length = Some(1);
                schema.max_length = Some(max_len(kind));
                p.schema = Some(RefOr::T(Schema::Object(schema)));
            }
        }
        // Raw bodies (a file, a tarball) are bytes, not the array of integers `Vec<u8>` becomes.
        for (media, content) in op.request_body.iter_mut().flat_map(|b| b.content.iter_mut()) {
            if !media.contains("json") {
                let mut bytes = Object::with_type(SchemaType::Type(Type::String));
                bytes.format = Some(SchemaFormat::KnownFormat(KnownFormat::Binary));
                content.schema = Some(RefOr::T(Schema::Object(bytes)));
            }
        }
        let has_input =
            has_path_params || op.request_body.is_some() || !op.parameters.as_ref().is_none_or(Vec::is_empty);
        let global = !path.starts_with("/v1/projects/");
        let writes = method != "get";
        let mut add = |status: &str, description: &str| {
            op.responses.responses.entry(status.to_owned()).or_insert_with(|| Self::error(description));
        };
        add("401", "no bearer token, or a wrong one");
        if has_input {
            add("400", "a name, query parameter or body is invalid");
        }
        if has_path_params {
            add("404", "the object does not exist (or belongs to a project this token cannot reach)");
        }
        if global && writes {
            add("403", "a project token cannot change global objects");
        }
        if op.request_body.is_some() {
            add("413", "the request body is over its limit");
        }
        if writes {
            add("507", "the box storage is full");
        }
    }
}

/// The longest name of `kind` that [`forkr_engine::name::validate`] accepts.
fn max_len(kind: forkr_engine::name::NameKind) -> usize {
    use forkr_engine::name::NameKind;
    match kind {
        NameKind::Box | NameKind::Project | NameKind::Volume => 63,
        NameKind::Snapshot | NameKind::Base => 128,
        NameKind::User => 32,
    }
}

impl utoipa::Modify for Edge {
    fn modify(&self, api: &mut utoipa::openapi::OpenApi) {
        for (path, item) in api.paths.paths.iter_mut() {
            for (method, op) in [
                ("get", &mut item.get),
                ("put", &mut item.put),
                ("post", &mut item.post),
                ("delete", &mut item.delete),
                ("patch", &mut item.patch),
                ("head", &mut item.head),
                ("options", &mut item.options),
                ("trace", &mut item.trace),
            ] {
                if let Some(op) = op {
                    Self::operation(path, method, op);
                }
            }
        }
    }
}

pub async fn serve() -> Json<utoipa::openapi::OpenApi> {
    Json(ApiDoc::openapi())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every operation documents the edge's own answers, and every name in a path carries the
    /// pattern the edge checks.
    #[test]
    fn every_operation_documents_the_edge() {
        let doc = serde_json::to_value(ApiDoc::openapi()).unwrap_or_default();
        let paths = doc["paths"].as_object().cloned().unwrap_or_default();
        assert!(paths.len() > 30, "{} paths", paths.len());
        for (path, item) in &paths {
            for (method, op) in item.as_object().into_iter().flatten() {
                let responses = &op["responses"];
                assert!(responses.get("401").is_some(), "{method} {path}: no 401");
                if path.contains('{') {
                    assert!(responses.get("404").is_some(), "{method} {path}: no 404");
                    assert!(responses.get("400").is_some(), "{method} {path}: no 400");
                }
                for p in op["parameters"].as_array().into_iter().flatten() {
                    if p["in"] == "path"
                        && ["project", "name", "volume", "snapshot", "backup"]
                            .contains(&p["name"].as_str().unwrap_or_default())
                    {
                        assert!(p["schema"]["pattern"].is_string(), "{method} {path}: {p}");
                    }
                }
            }
        }
        let box_param =
            &doc["paths"]["/v1/projects/{project}/boxes/{name}"]["get"]["parameters"][1]["schema"];
        assert_eq!(box_param["pattern"], forkr_engine::name::NameKind::Box.pattern(), "{box_param}");
        let base_param = &doc["paths"]["/v1/bases/{name}"]["get"]["parameters"][0]["schema"];
        assert_eq!(base_param["pattern"], forkr_engine::name::NameKind::Base.pattern(), "{base_param}");
        let upload =
            &doc["paths"]["/v1/projects/{project}/boxes/{name}/files"]["put"]["requestBody"]["content"];
        assert_eq!(
            upload["application/octet-stream"]["schema"],
            serde_json::json!({"type": "string", "format": "binary"})
        );
    }
}
