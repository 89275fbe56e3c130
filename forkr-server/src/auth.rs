//! Bearer-token authentication on every route but `/v1/openapi.json` and `/healthz`.
//!
//! The token lives in `<data>/token` (0600), created with 32 random bytes on first start. The
//! comparison is constant-time so response timing does not leak how much of a guess was right.
//! Project tokens (`forkr-server token create --project P`) are looked up by their SHA-256 in the
//! metadata database and limited to their project by [`crate::guard`].

use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;
use std::sync::Arc;

use axum::extract::{Request, State};
use axum::middleware::Next;
use axum::response::Response;
use forkr_engine::{Error, ErrorKind};

use crate::AppState;
use crate::error::ApiError;
use crate::guard::Scope;

/// Reads the token file, creating it (0600) with a fresh random token if missing.
pub fn load_or_create_token(path: &Path) -> anyhow::Result<String> {
    if let Ok(t) = std::fs::read_to_string(path) {
        let t = t.trim().to_owned();
        if !t.is_empty() {
            return Ok(t);
        }
    }
    let token = forkr_engine::engine::random_hex(32)?;
    let tmp = path.with_extension("tmp");
    let mut f = std::fs::OpenOptions::new().write(true).create(true).truncate(true).mode(0o600).open(&tmp)?;
    writeln!(f, "{token}")?;
    f.sync_all()?;
    std::fs::rename(&tmp, path)?;
    Ok(token)
}

/// Accepts the admin token (full access) or a project token (that project only, enforced by
/// [`crate::guard::edge`]), and records which in a [`Scope`] request extension.
pub async fn require_token(
    State(state): State<Arc<AppState>>,
    mut req: Request,
    next: Next,
) -> Result<Response, ApiError> {
    let given = req
        .headers()
        .get(axum::http::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .map(str::trim)
        .map(str::to_owned);
    match given {
        Some(t) if constant_time_eq::constant_time_eq(t.as_bytes(), state.token.as_bytes()) => {
            req.extensions_mut().insert(Scope::Admin);
            Ok(next.run(req).await)
        }
        Some(t) => match state.engine.token_project(&t)? {
            Some(project) => {
                req.extensions_mut().insert(Scope::Project(project));
                Ok(next.run(req).await)
            }
            None => Err(Error::new(ErrorKind::Unauthorized, "unauthorized", "invalid token").into()),
        },
        None => Err(Error::new(
            ErrorKind::Unauthorized,
            "unauthorized",
            "missing bearer token: send `Authorization: Bearer <token>` (set FORKR_TOKEN for 4kr)",
        )
        .into()),
    }
}
