//! The HTTP and WebSocket client for the routes in `forkr_engine::api`.
//!
//! Every failure becomes a [`CliError`]: the server's `{"error":{"code","message"}}` body keeps its
//! code and message; a server that cannot be reached gets a message naming the URL and where it came
//! from, and a hint on how to fix it.

use std::cell::OnceCell;
use std::net::SocketAddr;
use std::time::Duration;

use forkr_engine::api::{
    BaseInfo, BaseVersion, BasesDeleted, BgStarted, BoxInfo, BuildBase, BuildResult, CreateBox,
    CreateSnapshot, Deleted, DiffStatus, ErrorBody, ExecOutput, ExecRequest, FileDiff, FileWritten,
    PsRequest, SaveBase, SnapshotInfo, UpdateBox,
};
use forkr_engine::{Error, ErrorKind};
use reqwest::{Method, RequestBuilder, Response};
use serde::de::DeserializeOwned;
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

use crate::ctx::BoxId;
use crate::error::{CliError, Result};
use crate::target::{Source, Target};

/// A WebSocket to the server (exec and console).
pub type Ws = WebSocketStream<MaybeTlsStream<TcpStream>>;

/// How long to wait for a TCP connection; requests themselves may run long (exec, logs --follow).
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

pub struct Client {
    target: Target,
    http: OnceCell<reqwest::Client>,
}

/// The innermost message of an error chain: for a refused connection that is the OS error, which is
/// what the user needs, rather than reqwest's "error sending request for url".
fn root_cause(e: &(dyn std::error::Error + 'static)) -> String {
    let mut cur = e;
    while let Some(next) = cur.source() {
        cur = next;
    }
    cur.to_string()
}

/// Maps a non-success answer to an error, keeping the server's code and message when the body is the
/// documented error JSON.
pub fn error_from_response(status: u16, body: &[u8], target: &Target) -> CliError {
    let kind = ErrorKind::from_http_status(status);
    let err: CliError = match serde_json::from_slice::<ErrorBody>(body) {
        Ok(b) => Error::new(kind, b.error.code, b.error.message).into(),
        Err(_) => {
            let text = String::from_utf8_lossy(body);
            let text = text.trim();
            let snippet: String = text.chars().take(200).collect();
            let message = if snippet.is_empty() {
                format!("forkr-server at {} answered HTTP {status}", target.url)
            } else {
                format!("forkr-server at {} answered HTTP {status}: {snippet}", target.url)
            };
            Error::new(kind, format!("http_{status}"), message).into()
        }
    };
    if status == 401 {
        let help = match &target.token_source {
            None => "no token was given: pass --token, set FORKR_TOKEN (or FORKR_PROFILE_<NAME>_TOKEN), or \
                     `4kr config set token …`; forkr-server prints where its token file is when it starts"
                .to_owned(),
            Some(src) => format!(
                "the token from {src} was refused; check that it matches the server's token file \
                 (forkr-server prints its path when it starts)"
            ),
        };
        return err.with_help(help);
    }
    err
}

impl Client {
    pub fn new(target: Target) -> Client {
        Client { target, http: OnceCell::new() }
    }

    /// The error for a server that cannot be reached: which URL, where it came from, how to fix it.
    fn unreachable(&self, cause: impl std::fmt::Display) -> CliError {
        let t = &self.target;
        let message = format!("cannot reach forkr-server at {} (URL from {}): {cause}", t.url, t.url_source);
        let help = if t.url_source == Source::Default {
            "is forkr-server running? Start it with `forkr-server` (it listens on 127.0.0.1:7878 by default), \
             or point 4kr at your server with --url, FORKR_URL or `4kr config set url <URL>`"
                .to_owned()
        } else {
            format!(
                "is forkr-server running and listening there? Check the URL, or change it at {}",
                t.url_source
            )
        };
        CliError::from(Error::new(ErrorKind::Internal, "unreachable", message)).with_help(help)
    }

    fn http(&self) -> Result<&reqwest::Client> {
        if self.http.get().is_none() {
            let mut b = reqwest::Client::builder()
                .connect_timeout(CONNECT_TIMEOUT)
                .user_agent(concat!("4kr/", env!("CARGO_PKG_VERSION")))
                .danger_accept_invalid_certs(self.target.insecure);
            if let Some(ip) = self.target.ip {
                let url = reqwest::Url::parse(&self.target.url)
                    .map_err(|e| CliError::config(format!("invalid API URL {:?}: {e}", self.target.url)))?;
                if let Some(host) = url.host_str() {
                    b = b.resolve(host, SocketAddr::new(ip, 0));
                }
            }
            let client = b.build().map_err(|e| {
                CliError::from(Error::internal(format!("cannot set up the HTTP client: {}", root_cause(&e))))
            })?;
            let _ = self.http.set(client);
        }
        self.http.get().ok_or_else(|| CliError::from(Error::internal("HTTP client not built")))
    }

    fn boxes_url(&self, project: &str) -> String {
        format!("{}/v1/projects/{project}/boxes", self.target.url)
    }

    fn box_url(&self, id: &BoxId, tail: &str) -> String {
        format!("{}/{}{tail}", self.boxes_url(&id.project), id.name)
    }

    /// `{url}/v1{path}`: for command groups that keep their routes beside their command.
    pub(crate) fn api_url(&self, path: &str) -> String {
        format!("{}/v1{path}", self.target.url)
    }

    pub(crate) fn request(&self, method: Method, url: &str) -> Result<RequestBuilder> {
        let mut rb = self.http()?.request(method, url);
        if let Some(token) = &self.target.token {
            rb = rb.bearer_auth(token);
        }
        Ok(rb)
    }

    /// Sends the request and turns transport failures and non-2xx answers into errors.
    pub async fn send(&self, rb: RequestBuilder) -> Result<Response> {
        let resp = rb.send().await.map_err(|e| {
            if e.is_connect() || e.is_timeout() {
                self.unreachable(root_cause(&e))
            } else {
                CliError::from(Error::internal(format!(
                    "request to forkr-server at {} failed: {}",
                    self.target.url,
                    root_cause(&e)
                )))
            }
        })?;
        if resp.status().is_success() {
            return Ok(resp);
        }
        let status = resp.status().as_u16();
        let body = resp.bytes().await.unwrap_or_default();
        Err(error_from_response(status, &body, &self.target))
    }

    pub(crate) async fn json<T: DeserializeOwned>(&self, rb: RequestBuilder) -> Result<T> {
        let resp = self.send(rb).await?;
        let body = resp.bytes().await.map_err(|e| {
            CliError::from(Error::internal(format!("reading the answer of forkr-server: {}", root_cause(&e))))
        })?;
        serde_json::from_slice(&body).map_err(|e| {
            CliError::from(Error::internal(format!(
                "forkr-server at {} sent an answer this 4kr does not understand ({e}); are 4kr and the server the same version?",
                self.target.url
            )))
        })
    }

    pub async fn list(&self, project: &str) -> Result<Vec<BoxInfo>> {
        self.json(self.request(Method::GET, &self.boxes_url(project))?).await
    }

    pub async fn create(&self, project: &str, req: &CreateBox) -> Result<BoxInfo> {
        self.json(self.request(Method::POST, &self.boxes_url(project))?.json(req)).await
    }

    pub async fn show(&self, id: &BoxId) -> Result<BoxInfo> {
        self.json(self.request(Method::GET, &self.box_url(id, ""))?).await
    }

    pub async fn update(&self, id: &BoxId, req: &UpdateBox) -> Result<BoxInfo> {
        self.json(self.request(Method::PATCH, &self.box_url(id, ""))?.json(req)).await
    }

    pub async fn delete(&self, id: &BoxId, force: bool) -> Result<Deleted> {
        let rb = self.request(Method::DELETE, &self.box_url(id, ""))?.query(&[("force", force)]);
        self.json(rb).await
    }

    pub async fn stop(&self, id: &BoxId) -> Result<BoxInfo> {
        self.json(self.request(Method::POST, &self.box_url(id, "/stop"))?).await
    }

    pub async fn resume(&self, id: &BoxId) -> Result<BoxInfo> {
        self.json(self.request(Method::POST, &self.box_url(id, "/resume"))?).await
    }

    /// Background exec (`bg` true): the pid of the detached process.
    pub async fn exec_bg(&self, id: &BoxId, req: &ExecRequest) -> Result<BgStarted> {
        self.json(self.request(Method::POST, &self.box_url(id, "/exec"))?.json(req)).await
    }

    pub async fn ps(&self, id: &BoxId, req: &PsRequest) -> Result<ExecOutput> {
        self.json(self.request(Method::POST, &self.box_url(id, "/ps"))?.json(req)).await
    }

    /// The log of a background process; with `follow` the body streams until the process ends.
    pub async fn logs(&self, id: &BoxId, pid: u32, follow: bool) -> Result<Response> {
        let rb = self
            .request(Method::GET, &self.box_url(id, "/logs"))?
            .query(&[("pid", pid.to_string()), ("follow", follow.to_string())]);
        self.send(rb).await
    }

    /// Starts a file download; the answer's body is the content and its `x-forkr-mode` the mode.
    pub async fn get_file(&self, id: &BoxId, path: &str) -> Result<Response> {
        let rb = self.request(Method::GET, &self.box_url(id, "/files"))?.query(&[("path", path)]);
        self.send(rb).await
    }

    pub async fn put_file(
        &self,
        id: &BoxId,
        path: &str,
        mode: u32,
        body: reqwest::Body,
    ) -> Result<FileWritten> {
        let rb = self
            .request(Method::PUT, &self.box_url(id, "/files"))?
            .query(&[("path", path.to_owned()), ("mode", format!("{mode:04o}"))])
            .body(body);
        self.json(rb).await
    }

    // ---- snapshots and diff (document 000) ----

    pub async fn list_snapshots(&self, id: &BoxId) -> Result<Vec<SnapshotInfo>> {
        self.json(self.request(Method::GET, &self.box_url(id, "/snapshots"))?).await
    }

    pub async fn create_snapshot(&self, id: &BoxId, req: &CreateSnapshot) -> Result<SnapshotInfo> {
        self.json(self.request(Method::POST, &self.box_url(id, "/snapshots"))?.json(req)).await
    }

    /// Restores `snapshot` onto the box it was taken of; the box restarts.
    pub async fn restore_snapshot(&self, id: &BoxId, snapshot: &str) -> Result<BoxInfo> {
        let url = self.box_url(id, &format!("/snapshots/{snapshot}/restore"));
        self.json(self.request(Method::POST, &url)?).await
    }

    /// Deletes a snapshot (the server answers 204 without a body).
    pub async fn delete_snapshot(&self, id: &BoxId, snapshot: &str) -> Result<()> {
        let url = self.box_url(id, &format!("/snapshots/{snapshot}"));
        self.send(self.request(Method::DELETE, &url)?).await.map(drop)
    }

    pub async fn diff_status(&self, id: &BoxId, against: Option<&str>) -> Result<DiffStatus> {
        let mut rb = self.request(Method::GET, &self.box_url(id, "/diff/status"))?;
        if let Some(a) = against {
            rb = rb.query(&[("against", a)]);
        }
        self.json(rb).await
    }

    pub async fn diff_file(&self, id: &BoxId, path: &str, against: Option<&str>) -> Result<FileDiff> {
        let mut rb = self.request(Method::GET, &self.box_url(id, "/diff/file"))?.query(&[("path", path)]);
        if let Some(a) = against {
            rb = rb.query(&[("against", a)]);
        }
        self.json(rb).await
    }

    // ---- bases ----

    fn base_url(&self, name: &str, tail: &str) -> String {
        format!("{}/v1/bases/{name}{tail}", self.target.url)
    }

    pub async fn list_bases(&self) -> Result<Vec<BaseInfo>> {
        self.json(self.request(Method::GET, &format!("{}/v1/bases", self.target.url))?).await
    }

    /// One base with its versions; with `tag`, only the versions built from a script with that sha256.
    pub async fn show_base(&self, name: &str, tag: Option<&str>) -> Result<BaseInfo> {
        let mut rb = self.request(Method::GET, &self.base_url(name, ""))?;
        if let Some(t) = tag {
            rb = rb.query(&[("tag", t)]);
        }
        self.json(rb).await
    }

    pub async fn save_base(&self, name: &str, req: &SaveBase) -> Result<BaseVersion> {
        self.json(self.request(Method::POST, &self.base_url(name, "/save"))?.json(req)).await
    }

    /// Uploads a `.tar.gz` root filesystem as a new version of `name`, optionally layered on `parent`.
    /// `body` streams, so a large tarball never sits in memory.
    pub async fn import_base(
        &self,
        name: &str,
        parent: Option<&str>,
        body: reqwest::Body,
    ) -> Result<BaseVersion> {
        let mut rb = self
            .request(Method::POST, &self.base_url(name, "/import"))?
            .header(reqwest::header::CONTENT_TYPE, "application/gzip")
            .body(body);
        if let Some(p) = parent {
            rb = rb.query(&[("parent", p)]);
        }
        self.json(rb).await
    }

    pub async fn build_base(&self, name: &str, req: &BuildBase) -> Result<BuildResult> {
        self.json(self.request(Method::POST, &self.base_url(name, "/build"))?.json(req)).await
    }

    pub async fn delete_base(&self, spec: &str, force: bool, cascade: bool) -> Result<BasesDeleted> {
        let rb = self
            .request(Method::DELETE, &self.base_url(spec, ""))?
            .query(&[("force", force), ("cascade", cascade)]);
        self.json(rb).await
    }

    /// Opens a WebSocket on `tail` (`/exec/ws`, `/console?rows=…`) of a box.
    pub async fn websocket(&self, id: &BoxId, tail: &str) -> Result<Ws> {
        use tungstenite::client::IntoClientRequest as _;
        use tungstenite::http::header::{AUTHORIZATION, HeaderValue};

        let http_url = self.box_url(id, tail);
        let (ws_url, tls) = match (http_url.strip_prefix("https://"), http_url.strip_prefix("http://")) {
            (Some(rest), _) => (format!("wss://{rest}"), true),
            (None, Some(rest)) => (format!("ws://{rest}"), false),
            (None, None) => return Err(CliError::config(format!("invalid API URL {:?}", self.target.url))),
        };
        let mut req = ws_url
            .as_str()
            .into_client_request()
            .map_err(|e| CliError::config(format!("invalid WebSocket URL {ws_url:?}: {e}")))?;
        if let Some(token) = &self.target.token {
            let value = HeaderValue::from_str(&format!("Bearer {token}"))
                .map_err(|_| CliError::config("the API token contains characters a header cannot carry"))?;
            req.headers_mut().insert(AUTHORIZATION, value);
        }
        let host =
            req.uri().host().unwrap_or_default().trim_start_matches('[').trim_end_matches(']').to_owned();
        let port = req.uri().port_u16().unwrap_or(if tls { 443 } else { 80 });
        let connect = async {
            match self.target.ip {
                Some(ip) => TcpStream::connect((ip, port)).await,
                None => TcpStream::connect((host.as_str(), port)).await,
            }
        };
        let stream = tokio::time::timeout(CONNECT_TIMEOUT, connect)
            .await
            .map_err(|_| self.unreachable("connection timed out"))?
            .map_err(|e| self.unreachable(e))?;
        // Keystrokes and small outputs must not wait for Nagle's algorithm.
        let _ = stream.set_nodelay(true);
        let connector =
            if tls && self.target.insecure { Some(crate::tls::insecure_connector()?) } else { None };
        match tokio_tungstenite::client_async_tls_with_config(req, stream, None, connector).await {
            Ok((ws, _)) => Ok(ws),
            Err(tungstenite::Error::Http(resp)) => {
                let status = resp.status().as_u16();
                let body = resp.body().clone().unwrap_or_default();
                Err(error_from_response(status, &body, &self.target))
            }
            Err(e) => Err(CliError::from(Error::internal(format!(
                "WebSocket to forkr-server at {} failed: {}",
                self.target.url,
                root_cause(&e)
            )))),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn target(token_source: Option<Source>) -> Target {
        Target {
            url: "http://127.0.0.1:7878".into(),
            url_source: Source::Default,
            token: None,
            token_source,
            profile: None,
            ssh_host: None,
            insecure: false,
            ip: None,
        }
    }

    #[test]
    fn server_errors_keep_code_and_message() {
        let body = br#"{"error":{"code":"fork_running","message":"box is running"}}"#;
        let e = error_from_response(409, body, &target(None));
        assert_eq!(
            (e.kind(), e.code(), e.message()),
            (ErrorKind::Conflict, "fork_running", "box is running")
        );
        assert!(e.help.is_none());
    }

    #[test]
    fn non_json_errors_say_what_answered() {
        let e = error_from_response(502, b"<html>bad gateway</html>", &target(None));
        assert_eq!(e.code(), "http_502");
        assert_eq!(
            e.message(),
            "forkr-server at http://127.0.0.1:7878 answered HTTP 502: <html>bad gateway</html>"
        );
        let e = error_from_response(404, b"", &target(None));
        assert_eq!(e.message(), "forkr-server at http://127.0.0.1:7878 answered HTTP 404");
        assert_eq!(e.kind(), ErrorKind::NotFound);
    }

    #[test]
    fn unauthorized_explains_where_the_token_came_from() {
        let body = br#"{"error":{"code":"unauthorized","message":"missing or wrong bearer token"}}"#;
        let e = error_from_response(401, body, &target(None));
        assert!(e.help.as_deref().unwrap_or_default().contains("no token was given"));
        let e = error_from_response(401, body, &target(Some(Source::Env("FORKR_TOKEN".into()))));
        assert!(e.help.as_deref().unwrap_or_default().contains("the token from $FORKR_TOKEN was refused"));
    }

    #[tokio::test]
    async fn unreachable_server_names_url_and_source() {
        // Bind and drop a listener to get a port nothing listens on.
        let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let mut t = target(None);
        t.url = format!("http://127.0.0.1:{port}");
        t.url_source = Source::Env("FORKR_URL".into());
        let c = Client::new(t);
        let e = c.list("default").await.unwrap_err();
        assert_eq!(e.code(), "unreachable");
        assert!(
            e.message().starts_with(&format!(
                "cannot reach forkr-server at http://127.0.0.1:{port} (URL from $FORKR_URL): "
            )),
            "{}",
            e.message()
        );
        assert!(e.message().to_lowercase().contains("refused"), "{}", e.message());
        let id = BoxId { project: "default".into(), name: "web".into() };
        let e = c.websocket(&id, "/exec/ws").await.unwrap_err();
        assert_eq!(e.code(), "unreachable");
    }

    #[tokio::test]
    async fn insecure_targets_accept_a_self_signed_websocket() {
        use futures_util::StreamExt as _;
        let port = crate::tls::tests::wss_server();
        let id = BoxId { project: "default".into(), name: "web".into() };
        let mut t = target(None);
        t.url = format!("https://localhost:{port}");
        t.url_source = Source::Env("FORKR_URL".into());

        // Verified TLS refuses the self-signed certificate…
        let e = Client::new(t.clone()).websocket(&id, "/exec/ws").await.unwrap_err();
        assert!(e.message().to_lowercase().contains("certificate"), "{}", e.message());
        // …and insecure mode talks to it.
        t.insecure = true;
        let mut ws = Client::new(t).websocket(&id, "/exec/ws").await.unwrap();
        let msg = ws.next().await.unwrap().unwrap();
        assert_eq!(msg.into_data().as_ref(), &[forkr_engine::api::ws::EXIT, b'0']);
    }
}
