//! `publish` / `unpublish`: a hostname that the server's reverse proxy routes to a box's `PORT`.
//!
//! Host resolution is document 002's: `--host` wins; otherwise `{subdomain}.{domain}`, where the
//! domain defaults to the server's publish domain (`FORKR_DOMAIN`) and subdomain `@` is the apex.
//! A host has one owner (the `publishes` primary key): publishing a taken host is a 409 unless
//! `force` moves it; unpublishing another box's host is a 403. Hosts go with their box on delete.

use std::sync::Arc;

use super::{Engine, key, now};
use crate::api::{PublishRequest, Published, UnpublishRequest};
use crate::{Error, Result};

/// The longest DNS name.
const HOST_MAX: usize = 253;

/// Checks a hostname (after lower-casing): dot-separated DNS labels of `a-z`, `0-9` and `-`, each
/// 1–63 characters, not starting or ending with `-`.
pub fn validate_host(host: &str) -> Result<()> {
    let bad = |why: &str| {
        Error::bad_request(
            "invalid_host",
            format!(
                "invalid host {host:?}: {why} (use DNS labels of a-z, 0-9 and '-', e.g. web.example.com)"
            ),
        )
    };
    if host.is_empty() || host.len() > HOST_MAX {
        return Err(bad("it must be 1 to 253 characters"));
    }
    for label in host.split('.') {
        if label.is_empty() || label.len() > 63 {
            return Err(bad("every dot-separated part must be 1 to 63 characters"));
        }
        if !label.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-') {
            return Err(bad("only a-z, 0-9, '-' and '.' are allowed"));
        }
        if label.starts_with('-') || label.ends_with('-') {
            return Err(bad("a part may not start or end with '-'"));
        }
    }
    Ok(())
}

/// Resolves the host of a publish or unpublish (document 002).
pub fn resolve_host(
    subdomain: Option<&str>,
    host: Option<&str>,
    domain: Option<&str>,
    default_domain: &str,
) -> Result<String> {
    let clean = |s: &str| s.trim().trim_end_matches('.').to_ascii_lowercase();
    let resolved = match (host, subdomain) {
        (Some(_), Some(_)) => {
            return Err(Error::bad_request("host_conflict", "--host cannot be used with a subdomain"));
        }
        (Some(_), None) if domain.is_some() => {
            return Err(Error::bad_request("host_conflict", "--host cannot be used with --domain"));
        }
        (Some(h), None) => clean(h),
        (None, None) => {
            return Err(Error::bad_request(
                "missing_host",
                "give a subdomain (`@` for the bare domain) or --host <HOST>",
            ));
        }
        (None, Some(sub)) => {
            let domain = clean(domain.unwrap_or(default_domain));
            match sub.trim() {
                "@" => domain,
                sub => format!("{}.{domain}", clean(sub)),
            }
        }
    };
    validate_host(&resolved)?;
    Ok(resolved)
}

impl Engine {
    /// `POST …/publish`.
    pub async fn publish(
        self: &Arc<Self>,
        project: &str,
        name: &str,
        req: PublishRequest,
    ) -> Result<Published> {
        let host = resolve_host(
            req.subdomain.as_deref(),
            req.host.as_deref(),
            req.domain.as_deref(),
            &self.config.domain,
        )?;
        let _g = self.lock_box(project, name).await;
        let row = self.require_box(project, name)?;
        let moved = self.store.publish(&host, project, name, req.force, &now())?;
        self.refresh_routes()?;
        self.runtime.expose(&key(project, name), &self.exposure(&row)).await?;
        if let Some((p, b)) = moved {
            tracing::info!(%host, from = %format!("{p}:{b}"), to = %format!("{project}:{name}"), "host taken over");
            // The previous owner's routing loses the host (a different box: its lock is not ours
            // to wait for, and `expose` only rewrites its routing objects).
            if let Some(prev) = self.store.get_box(&p, &b)? {
                self.runtime.expose(&key(&p, &b), &self.exposure(&prev)).await?;
            }
        }
        Ok(Published { host })
    }

    /// `POST …/unpublish`.
    pub async fn unpublish(
        self: &Arc<Self>,
        project: &str,
        name: &str,
        req: UnpublishRequest,
    ) -> Result<Published> {
        let host = resolve_host(
            req.subdomain.as_deref(),
            req.host.as_deref(),
            req.domain.as_deref(),
            &self.config.domain,
        )?;
        let _g = self.lock_box(project, name).await;
        let row = self.require_box(project, name)?;
        self.store.unpublish(&host, project, name)?;
        self.refresh_routes()?;
        self.runtime.expose(&key(project, name), &self.exposure(&row)).await?;
        Ok(Published { host })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hosts_resolve_as_document_002_says() {
        let r = |sub: Option<&str>, host: Option<&str>, domain: Option<&str>| {
            resolve_host(sub, host, domain, "forkr.example.com")
        };
        assert_eq!(r(Some("api"), None, None).unwrap(), "api.forkr.example.com");
        assert_eq!(r(Some("@"), None, None).unwrap(), "forkr.example.com");
        assert_eq!(r(Some("api"), None, Some("Other.dev")).unwrap(), "api.other.dev");
        assert_eq!(r(Some("@"), None, Some("other.dev")).unwrap(), "other.dev");
        assert_eq!(r(Some("v2.api"), None, None).unwrap(), "v2.api.forkr.example.com");
        assert_eq!(r(None, Some("WWW.Shop.Example."), None).unwrap(), "www.shop.example");
        assert_eq!(r(Some("a"), Some("b.c"), None).unwrap_err().code(), "host_conflict");
        assert_eq!(r(None, Some("b.c"), Some("d")).unwrap_err().code(), "host_conflict");
        assert_eq!(r(None, None, None).unwrap_err().code(), "missing_host");
        for bad in [Some("-x"), Some("a_b"), Some("a..b"), Some(&*"x".repeat(64))] {
            assert_eq!(r(bad, None, None).unwrap_err().code(), "invalid_host", "{bad:?}");
        }
        assert_eq!(
            r(None, Some(&format!("{}.com", "a.".repeat(130))), None).unwrap_err().code(),
            "invalid_host"
        );
    }
}
