//! The server calls of the declarative commands: the project state, the apply lock, and what the
//! executor needs beyond the imperative commands' calls in `client.rs` (volumes, recreate, files
//! with `mkdirs`, file deletion, publishing).
//!
//! They live beside the commands that use them so `client.rs` stays the imperative commands' client;
//! every call goes through its `request`/`json`/`send`, so errors look the same everywhere.

use forkr_engine::api::{
    BaseVersion, BoxInfo, CreateBox, CreateVolume, LockInfo, LockRequest, PublishRequest, Published,
    UnpublishRequest, UpdateVolume, VolumeDeleted, VolumeInfo,
};
use forkr_engine::plan::Observed;
use forkr_engine::{Error, ErrorKind};
use reqwest::Method;

use crate::client::Client;
use crate::ctx::BoxId;
use crate::error::{CliError, Result};

/// Query values must be escaped; names are validated, but a host or a file path is not.
fn seg(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

fn box_path(id: &BoxId, tail: &str) -> String {
    format!("/projects/{}/boxes/{}{tail}", seg(&id.project), seg(&id.name))
}

/// `GET /v1/projects/{p}/state`: everything a plan is made against.
pub async fn state(c: &Client, project: &str) -> Result<Observed> {
    c.json(c.request(Method::GET, &c.api_url(&format!("/projects/{}/state", seg(project))))?).await
}

/// `POST /v1/projects/{p}/lock`.
pub async fn take_lock(c: &Client, project: &str, req: &LockRequest) -> Result<LockInfo> {
    let url = c.api_url(&format!("/projects/{}/lock", seg(project)));
    c.json(c.request(Method::POST, &url)?.json(req)).await
}

/// `POST /v1/projects/{p}/lock/{id}/refresh?ttl_seconds=N`.
pub async fn refresh_lock(c: &Client, project: &str, id: &str, ttl_seconds: u64) -> Result<LockInfo> {
    let url = c.api_url(&format!("/projects/{}/lock/{}/refresh", seg(project), seg(id)));
    let rb = c
        .request(Method::POST, &url)?
        .query(&[("ttl_seconds", ttl_seconds)])
        .timeout(std::time::Duration::from_secs(10));
    c.json(rb).await
}

/// `DELETE /v1/projects/{p}/lock/{id}` (releasing a lock that is gone is not an error).
pub async fn release_lock(c: &Client, project: &str, id: &str) -> Result<()> {
    let url = c.api_url(&format!("/projects/{}/lock/{}", seg(project), seg(id)));
    c.send(c.request(Method::DELETE, &url)?.timeout(std::time::Duration::from_secs(10))).await.map(drop)
}

/// `POST …/boxes/{b}/recreate`: new immutable settings on the same root (keep-root replacement).
pub async fn recreate(c: &Client, project: &str, req: &CreateBox) -> Result<BoxInfo> {
    let id = BoxId { project: project.to_owned(), name: req.name.clone() };
    c.json(c.request(Method::POST, &c.api_url(&box_path(&id, "/recreate")))?.json(req)).await
}

pub async fn create_volume(c: &Client, project: &str, req: &CreateVolume) -> Result<VolumeInfo> {
    let url = c.api_url(&format!("/projects/{}/volumes", seg(project)));
    c.json(c.request(Method::POST, &url)?.json(req)).await
}

pub async fn update_volume(c: &Client, project: &str, name: &str, req: &UpdateVolume) -> Result<VolumeInfo> {
    let url = c.api_url(&format!("/projects/{}/volumes/{}", seg(project), seg(name)));
    c.json(c.request(Method::PATCH, &url)?.json(req)).await
}

pub async fn delete_volume(c: &Client, project: &str, name: &str) -> Result<VolumeDeleted> {
    let url = c.api_url(&format!("/projects/{}/volumes/{}", seg(project), seg(name)));
    c.json(c.request(Method::DELETE, &url)?.query(&[("force", false)])).await
}

/// `POST /v1/bases/{name}/import?parent=&tag=&build_tag=`: a tarball as a new version, tagged
/// with the owner and with the sha256 of what it was built from (so an unchanged source is seen
/// as built).
pub async fn import_base(
    c: &Client,
    name: &str,
    parent: Option<&str>,
    owner_tag: &str,
    build_tag: &str,
    body: reqwest::Body,
) -> Result<BaseVersion> {
    let mut query: Vec<(&str, &str)> = vec![("tag", owner_tag), ("build_tag", build_tag)];
    if let Some(p) = parent {
        query.push(("parent", p));
    }
    let rb = c
        .request(Method::POST, &c.api_url(&format!("/bases/{}/import", seg(name))))?
        .header(reqwest::header::CONTENT_TYPE, "application/gzip")
        .query(&query)
        .body(body);
    c.json(rb).await
}

/// `PUT …/files?path=&mode=&mkdirs=true`: writes a file, creating missing parent folders.
pub async fn put_file(c: &Client, id: &BoxId, path: &str, mode: u32, body: Vec<u8>) -> Result<()> {
    let rb = c
        .request(Method::PUT, &c.api_url(&box_path(id, "/files")))?
        .query(&[("path", path.to_owned()), ("mode", format!("{mode:04o}")), ("mkdirs", "true".to_owned())])
        .body(body);
    c.send(rb).await.map(drop)
}

/// `DELETE …/files?path=`: removes a file or an empty folder; a path that is already gone is not
/// an error (the server says so with success).
pub async fn delete_file(c: &Client, id: &BoxId, path: &str) -> Result<()> {
    let rb = c.request(Method::DELETE, &c.api_url(&box_path(id, "/files")))?.query(&[("path", path)]);
    c.send(rb).await.map(drop)
}

/// A 404 from the server's fallback route means the server predates publishing.
fn no_publishing(e: CliError) -> CliError {
    if e.kind() == ErrorKind::NotFound && e.message().contains("no such route") {
        return CliError::from(Error::new(
            ErrorKind::Unsupported,
            "publish_unsupported",
            "the server does not support publishing (it has no publish route)",
        ))
        .with_help("upgrade forkr-server, or remove `publish` from the workspace files for now");
    }
    e
}

/// `POST …/boxes/{b}/publish`.
pub async fn publish(c: &Client, id: &BoxId, req: &PublishRequest) -> Result<Published> {
    let rb = c.request(Method::POST, &c.api_url(&box_path(id, "/publish")))?.json(req);
    c.json(rb).await.map_err(no_publishing)
}

/// `POST …/boxes/{b}/unpublish` of one full host.
pub async fn unpublish(c: &Client, id: &BoxId, host: &str) -> Result<Published> {
    let req = UnpublishRequest { host: Some(host.to_owned()), ..UnpublishRequest::default() };
    let rb = c.request(Method::POST, &c.api_url(&box_path(id, "/unpublish")))?.json(&req);
    c.json(rb).await.map_err(no_publishing)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn path_segments_are_escaped() {
        assert_eq!(seg("web-1"), "web-1");
        assert_eq!(seg("a b/c?"), "a%20b%2Fc%3F");
        let id = BoxId { project: "p".into(), name: "web".into() };
        assert_eq!(box_path(&id, "/files"), "/projects/p/boxes/web/files");
    }
}
