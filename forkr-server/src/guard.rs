//! The edge of the API, run on every matched route after authentication and before any handler:
//!
//! - every path parameter is checked against its name pattern, so a bad name is a 400
//!   `invalid_name` whatever the route, before a handler or the engine sees it (and before a body
//!   is read);
//! - a project token (see [`Scope`]) reaches only its own project: any other project's routes
//!   answer 404, exactly as for a project that does not exist, so a token learns nothing about
//!   other projects; global mutations (base import, build, save, delete) answer 403; global reads
//!   (base list and show) are allowed, since boxes are created from bases.

use axum::extract::{FromRequestParts, MatchedPath, RawPathParams, Request};
use axum::http::Method;
use axum::middleware::Next;
use axum::response::Response;
use forkr_engine::name::{NameKind, validate};
use forkr_engine::{Error, ErrorKind};

use crate::error::ApiError;

/// What the bearer token of a request may touch; set by [`crate::auth::require_token`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Scope {
    /// The token in the data dir's `token` file: everything.
    Admin,
    /// A token from `forkr-server token create --project P`: project `P` only.
    Project(String),
}

/// The name kind of path parameter `key` on the route `matched`, if it is a name.
pub(crate) fn kind_of(matched: &str, key: &str) -> Option<NameKind> {
    match key {
        "project" => Some(NameKind::Project),
        "name" if matched.starts_with("/v1/bases/") => Some(NameKind::Base),
        "name" => Some(NameKind::Box),
        "volume" => Some(NameKind::Volume),
        "user" => Some(NameKind::User),
        // Backups follow the snapshot pattern (and may not start with '.', checked by the engine).
        "snapshot" | "backup" => Some(NameKind::Snapshot),
        _ => None,
    }
}

/// Decides whether `scope` may make a request with `method` to a route whose `project`
/// parameter is `project` (`None`: a global route).
pub fn authorize(scope: &Scope, method: &Method, project: Option<&str>) -> Result<(), Error> {
    let Scope::Project(allowed) = scope else { return Ok(()) };
    match project {
        Some(p) if p == allowed => Ok(()),
        Some(p) => Err(Error::not_found("project", p)),
        None if method == Method::GET || method == Method::HEAD => Ok(()),
        None => Err(Error::forbidden(
            "forbidden",
            format!(
                "this token is limited to project {allowed:?}; changing bases (import, build, save, delete) \
                 needs the admin token from the server's data dir"
            ),
        )),
    }
}

/// The middleware: validates names, then applies the token's scope.
pub async fn edge(req: Request, next: Next) -> Result<Response, ApiError> {
    let (mut parts, body) = req.into_parts();
    let matched = parts.extensions.get::<MatchedPath>().map(|m| m.as_str().to_owned()).unwrap_or_default();
    let params = RawPathParams::from_request_parts(&mut parts, &())
        .await
        .map_err(|r| ApiError::new(ErrorKind::BadRequest, "invalid_path", r.body_text()))?;
    let mut project = None;
    for (key, value) in &params {
        if let Some(kind) = kind_of(&matched, key) {
            validate(kind, value)?;
        }
        if key == "project" {
            project = Some(value.to_owned());
        }
    }
    let scope = parts.extensions.get::<Scope>().cloned().ok_or_else(|| {
        ApiError::new(ErrorKind::Unauthorized, "unauthorized", "the request was not authenticated")
    })?;
    authorize(&scope, &parts.method, project.as_deref())?;
    Ok(next.run(Request::from_parts(parts, body)).await)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn project_tokens_reach_their_project_and_read_bases_only() {
        let a = Scope::Project("alpha".into());
        assert!(authorize(&a, &Method::POST, Some("alpha")).is_ok());
        assert!(authorize(&a, &Method::DELETE, Some("alpha")).is_ok());
        let e = authorize(&a, &Method::GET, Some("beta")).unwrap_err();
        assert_eq!((e.kind(), e.message()), (ErrorKind::NotFound, "project \"beta\" not found"));
        assert!(authorize(&a, &Method::GET, None).is_ok());
        for m in [Method::POST, Method::PUT, Method::PATCH, Method::DELETE] {
            assert_eq!(authorize(&a, &m, None).unwrap_err().kind(), ErrorKind::Forbidden, "{m}");
        }
        for m in [Method::GET, Method::POST, Method::DELETE] {
            assert!(authorize(&Scope::Admin, &m, None).is_ok());
            assert!(authorize(&Scope::Admin, &m, Some("beta")).is_ok());
        }
    }

    #[test]
    fn parameters_map_to_their_name_kinds() {
        assert_eq!(kind_of("/v1/bases/{name}/import", "name"), Some(NameKind::Base));
        assert_eq!(kind_of("/v1/projects/{project}/boxes/{name}", "name"), Some(NameKind::Box));
        assert_eq!(kind_of("/v1/projects/{project}/boxes/{name}", "project"), Some(NameKind::Project));
        assert_eq!(
            kind_of("/v1/projects/{project}/volumes/{volume}/backups/{backup}", "backup"),
            Some(NameKind::Snapshot)
        );
        assert_eq!(kind_of("/v1/projects/{project}/users/{user}", "user"), Some(NameKind::User));
        assert_eq!(kind_of("/v1/projects/{project}/lock/{id}", "id"), None);
    }
}
