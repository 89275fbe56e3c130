//! The built-in publish proxy: routes HTTP and HTTPS requests by `Host` to the box that publishes
//! that host (or whose own URL it is), at the box's address on the host bridge and its `PORT`.
//!
//! - Listens on `--proxy-listen` (TLS, default `127.0.0.1:8443`) and `--proxy-http-listen`
//!   (plain HTTP, default `127.0.0.1:8080`); either can be `off`.
//! - Routing reads the engine's in-memory table ([`Engine::route`]), which the engine swaps on
//!   every publish, unpublish, start, stop, delete and `update PORT`: a request never waits on the
//!   database, and a port change applies to the next request.
//! - Unknown host → 404 page; a box that is stopped or does not answer → 502 page.
//! - Plain requests go through a pooled HTTP/1.1 client (keep-alive to the box where the box's
//!   server allows it). Upgrades (WebSocket) get their own backend connection; after both sides
//!   switched protocols the proxy copies bytes both ways until either side closes.
//! - Hop-by-hop headers are dropped in both directions; `X-Forwarded-For`, `-Proto` and `-Host`
//!   are set.

pub mod tls;

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use forkr_engine::engine::Engine;
use forkr_engine::engine::network::Route;
use http_body_util::combinators::BoxBody;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::header::{self, HeaderMap, HeaderName, HeaderValue};
use hyper::{Request, Response, StatusCode};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use tokio::net::{TcpListener, TcpStream};

pub use tls::TlsSource;

type Body = BoxBody<Bytes, hyper::Error>;

/// How long a client may take to send its request head (slow-loris protection).
const HEADER_TIMEOUT: Duration = Duration::from_secs(30);
/// How long a TLS handshake may take.
const TLS_TIMEOUT: Duration = Duration::from_secs(10);
/// How long connecting to a box may take: it is on a local bridge, so this only trips when the
/// box is gone and its address silently drops packets.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// The proxy's settings.
#[derive(Debug, Clone)]
pub struct ProxyConfig {
    pub https: Option<SocketAddr>,
    pub http: Option<SocketAddr>,
    pub tls: TlsSource,
}

/// The addresses the proxy actually listens on (port 0 resolved).
#[derive(Debug, Clone, Copy, Default)]
pub struct ProxyAddrs {
    pub https: Option<SocketAddr>,
    pub http: Option<SocketAddr>,
}

/// Shared by every connection.
struct Proxy {
    engine: Arc<Engine>,
    client: Client<HttpConnector, Incoming>,
}

/// Binds the listeners and serves them on the proxy's own runtime (see [`proxy_runtime`]). Fails
/// when a listener cannot be bound or the TLS certificate cannot be loaded, so a misconfiguration
/// stops the server at start.
pub async fn spawn(engine: Arc<Engine>, config: ProxyConfig) -> anyhow::Result<ProxyAddrs> {
    use anyhow::Context;
    let bind = |addr: SocketAddr, flag: &str| -> anyhow::Result<std::net::TcpListener> {
        let l = std::net::TcpListener::bind(addr)
            .with_context(|| format!("binding the publish proxy to {addr}; change {flag}"))?;
        l.set_nonblocking(true)?;
        Ok(l)
    };
    let tls = match config.https {
        Some(_) => Some(tls::server_config(&config.tls).context("setting up TLS for the publish proxy")?),
        None => None,
    };
    let https = config.https.map(|a| bind(a, "--proxy-listen")).transpose()?;
    let http = config.http.map(|a| bind(a, "--proxy-http-listen")).transpose()?;
    let addrs = ProxyAddrs {
        https: https.as_ref().map(|l| l.local_addr()).transpose()?,
        http: http.as_ref().map(|l| l.local_addr()).transpose()?,
    };
    let rt = proxy_runtime()?;
    rt.serve(engine, https.zip(tls), http)?;
    // The runtime lives as long as the server: its thread parks forever while the workers serve.
    std::thread::Builder::new()
        .name("forkr-proxy".into())
        .spawn(move || rt.0.block_on(std::future::pending::<()>()))
        .context("starting the publish proxy's thread")?;
    Ok(addrs)
}

/// The proxy's own multi-threaded runtime, one worker per core.
///
/// Why not the API's runtime: that one runs more workers than cores (API handlers block briefly
/// on cgroup and btrfs calls), and a proxied request hops between the client connection's task
/// and the box connection's task; with surplus workers those hops become cross-thread wake-ups,
/// which cost more CPU than the proxying itself (measured: about 20% of the proxy's time in the
/// scheduler).
fn proxy_runtime() -> anyhow::Result<ProxyRuntime> {
    let workers = std::thread::available_parallelism().map_or(2, |n| n.get());
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(workers)
        .thread_name("forkr-proxy-worker")
        .enable_all()
        .build()?;
    Ok(ProxyRuntime(rt))
}

struct ProxyRuntime(tokio::runtime::Runtime);

impl ProxyRuntime {
    /// Registers the listeners with this runtime and spawns their accept loops on its workers.
    fn serve(
        &self,
        engine: Arc<Engine>,
        https: Option<(std::net::TcpListener, Arc<rustls::ServerConfig>)>,
        http: Option<std::net::TcpListener>,
    ) -> anyhow::Result<()> {
        let _guard = self.0.enter();
        let mut connector = HttpConnector::new();
        connector.set_connect_timeout(Some(CONNECT_TIMEOUT));
        connector.set_nodelay(true);
        let client = Client::builder(TokioExecutor::new())
            .pool_idle_timeout(Duration::from_secs(30))
            .pool_timer(TokioTimer::new())
            .build(connector);
        let proxy = Arc::new(Proxy { engine, client });
        if let Some((l, tls)) = https {
            let l = TcpListener::from_std(l)?;
            self.0.spawn(accept_loop(l, proxy.clone(), Some(tokio_rustls::TlsAcceptor::from(tls))));
        }
        if let Some(l) = http {
            let l = TcpListener::from_std(l)?;
            self.0.spawn(accept_loop(l, proxy, None));
        }
        Ok(())
    }
}

async fn accept_loop(listener: TcpListener, proxy: Arc<Proxy>, tls: Option<tokio_rustls::TlsAcceptor>) {
    loop {
        let (stream, peer) = match listener.accept().await {
            Ok(c) => c,
            Err(e) => {
                // EMFILE and the like: back off instead of spinning.
                tracing::warn!(error = %e, "publish proxy: accept failed");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        let _ = stream.set_nodelay(true);
        let proxy = proxy.clone();
        let tls = tls.clone();
        tokio::spawn(async move {
            match tls {
                None => serve(stream, peer, proxy, "http").await,
                Some(acceptor) => match tokio::time::timeout(TLS_TIMEOUT, acceptor.accept(stream)).await {
                    Ok(Ok(s)) => serve(s, peer, proxy, "https").await,
                    Ok(Err(e)) => tracing::debug!(%peer, error = %e, "publish proxy: TLS handshake failed"),
                    Err(_) => tracing::debug!(%peer, "publish proxy: TLS handshake timed out"),
                },
            }
        });
    }
}

async fn serve<S>(io: S, peer: SocketAddr, proxy: Arc<Proxy>, scheme: &'static str)
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let svc = hyper::service::service_fn(move |req| {
        let proxy = proxy.clone();
        async move { Ok::<_, Infallible>(handle(&proxy, req, peer, scheme).await) }
    });
    let conn = hyper::server::conn::http1::Builder::new()
        .timer(TokioTimer::new())
        .header_read_timeout(HEADER_TIMEOUT)
        .serve_connection(TokioIo::new(io), svc)
        .with_upgrades();
    if let Err(e) = conn.await {
        tracing::debug!(%peer, error = %e, "publish proxy: connection ended with an error");
    }
}

/// The `Host` of a request: the header, or the authority of an absolute-form URI.
fn request_host(req: &Request<Incoming>) -> Option<String> {
    req.headers()
        .get(header::HOST)
        .and_then(|h| h.to_str().ok())
        .map(str::to_owned)
        .or_else(|| req.uri().authority().map(|a| a.to_string()))
}

async fn handle(
    proxy: &Proxy,
    req: Request<Incoming>,
    peer: SocketAddr,
    scheme: &'static str,
) -> Response<Body> {
    let Some(host) = request_host(&req) else {
        return page(StatusCode::BAD_REQUEST, "Bad request", "The request has no Host header.");
    };
    let (project, name, addr) = match proxy.engine.route(&host) {
        None => {
            return page(
                StatusCode::NOT_FOUND,
                "Not published",
                &format!("No box is published at {}.", escape(&host)),
            );
        }
        Some(Route::Down { project, name }) => {
            return page(
                StatusCode::BAD_GATEWAY,
                "Box not running",
                &format!(
                    "Box {}:{} is not running. Resume it with <code>4kr resume {}:{}</code>.",
                    escape(&project),
                    escape(&name),
                    escape(&project),
                    escape(&name)
                ),
            );
        }
        Some(Route::Up { project, name, addr }) => (project, name, addr),
    };
    let result = if is_upgrade(req.headers()) {
        forward_upgrade(req, addr, peer, scheme, &host).await
    } else {
        forward(proxy, req, addr, peer, scheme, &host).await
    };
    match result {
        Ok(resp) => resp,
        Err(e) => {
            tracing::debug!(%project, %name, %addr, error = %e, "publish proxy: box did not answer");
            page(
                StatusCode::BAD_GATEWAY,
                "Box not answering",
                &format!(
                    "Box {}:{} does not answer on port {}. Is its server listening there? \
                     (<code>4kr port list {}:{}</code>; change the port with <code>4kr update {}:{} PORT=…</code>)",
                    escape(&project),
                    escape(&name),
                    addr.port(),
                    escape(&project),
                    escape(&name),
                    escape(&project),
                    escape(&name)
                ),
            )
        }
    }
}

/// Headers that describe one connection and must not cross the proxy (RFC 9110 §7.6.1), plus
/// whatever the `Connection` header names.
fn strip_hop_by_hop(headers: &mut HeaderMap, keep_upgrade: bool) {
    let named: Vec<HeaderName> = headers
        .get_all(header::CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .filter_map(|n| HeaderName::from_bytes(n.trim().as_bytes()).ok())
        .collect();
    for n in named {
        if !(keep_upgrade && n == header::UPGRADE) {
            headers.remove(n);
        }
    }
    for n in [
        header::TE,
        header::TRAILER,
        header::TRANSFER_ENCODING,
        header::PROXY_AUTHORIZATION,
        header::PROXY_AUTHENTICATE,
        HeaderName::from_static("keep-alive"),
        HeaderName::from_static("proxy-connection"),
    ] {
        headers.remove(n);
    }
    if !keep_upgrade {
        headers.remove(header::CONNECTION);
        headers.remove(header::UPGRADE);
    }
}

fn is_upgrade(headers: &HeaderMap) -> bool {
    headers.contains_key(header::UPGRADE)
        && headers
            .get_all(header::CONNECTION)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .any(|v| v.split(',').any(|t| t.trim().eq_ignore_ascii_case("upgrade")))
}

fn set_forwarded(headers: &mut HeaderMap, peer: SocketAddr, scheme: &'static str, host: &str) {
    let ip = peer.ip().to_string();
    let xff = match headers.get("x-forwarded-for").and_then(|v| v.to_str().ok()) {
        Some(prev) => format!("{prev}, {ip}"),
        None => ip,
    };
    if let Ok(v) = HeaderValue::from_str(&xff) {
        headers.insert("x-forwarded-for", v);
    }
    headers.insert("x-forwarded-proto", HeaderValue::from_static(scheme));
    if let Ok(v) = HeaderValue::from_str(host) {
        headers.insert("x-forwarded-host", v);
    }
}

async fn forward(
    proxy: &Proxy,
    req: Request<Incoming>,
    addr: SocketAddr,
    peer: SocketAddr,
    scheme: &'static str,
    host: &str,
) -> anyhow::Result<Response<Body>> {
    let (mut parts, body) = req.into_parts();
    let path = parts.uri.path_and_query().map_or("/", |p| p.as_str());
    parts.uri = format!("http://{addr}{path}").parse()?;
    strip_hop_by_hop(&mut parts.headers, false);
    set_forwarded(&mut parts.headers, peer, scheme, host);
    // The client keeps the Host header it finds (the published host), as the box expects.
    parts.version = hyper::Version::HTTP_11;
    let resp = proxy.client.request(Request::from_parts(parts, body)).await?;
    let (mut parts, body) = resp.into_parts();
    strip_hop_by_hop(&mut parts.headers, false);
    Ok(Response::from_parts(parts, body.boxed()))
}

async fn forward_upgrade(
    mut req: Request<Incoming>,
    addr: SocketAddr,
    peer: SocketAddr,
    scheme: &'static str,
    host: &str,
) -> anyhow::Result<Response<Body>> {
    let client_side = hyper::upgrade::on(&mut req);
    let (mut parts, body) = req.into_parts();
    parts.uri = parts.uri.path_and_query().map_or("/", |p| p.as_str()).parse()?;
    strip_hop_by_hop(&mut parts.headers, true);
    parts.headers.insert(header::CONNECTION, HeaderValue::from_static("upgrade"));
    set_forwarded(&mut parts.headers, peer, scheme, host);
    let stream = tokio::time::timeout(CONNECT_TIMEOUT, TcpStream::connect(addr)).await??;
    stream.set_nodelay(true)?;
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream)).await?;
    tokio::spawn(async move {
        let _ = conn.with_upgrades().await;
    });
    let mut resp = sender.send_request(Request::from_parts(parts, body)).await?;
    if resp.status() == StatusCode::SWITCHING_PROTOCOLS {
        let box_side = hyper::upgrade::on(&mut resp);
        tokio::spawn(async move {
            let (client, upstream) = tokio::join!(client_side, box_side);
            if let (Ok(client), Ok(upstream)) = (client, upstream) {
                let _ = tokio::io::copy_bidirectional(&mut TokioIo::new(client), &mut TokioIo::new(upstream))
                    .await;
            }
        });
    }
    let (parts, body) = resp.into_parts();
    Ok(Response::from_parts(parts, body.boxed()))
}

/// Escapes text for HTML.
fn escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '&' => out.push_str("&amp;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// A small HTML error page (`html` is already escaped).
fn page(status: StatusCode, title: &str, html: &str) -> Response<Body> {
    let body = format!(
        "<!doctype html>\n<html><head><meta charset=\"utf-8\"><title>{code} {title}</title></head>\n\
         <body><h1>{code} {title}</h1>\n<p>{html}</p>\n<hr><p>forkr publish proxy</p></body></html>\n",
        code = status.as_u16()
    );
    let mut resp = Response::new(Full::new(Bytes::from(body)).map_err(|never| match never {}).boxed());
    *resp.status_mut() = status;
    resp.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static("text/html; charset=utf-8"));
    resp.headers_mut().insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    resp
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hop_by_hop_headers_do_not_cross() {
        let mut h = HeaderMap::new();
        h.insert(header::CONNECTION, HeaderValue::from_static("keep-alive, x-private"));
        h.insert("x-private", HeaderValue::from_static("1"));
        h.insert("keep-alive", HeaderValue::from_static("timeout=5"));
        h.insert(header::TRANSFER_ENCODING, HeaderValue::from_static("chunked"));
        h.insert(header::CONTENT_TYPE, HeaderValue::from_static("text/plain"));
        strip_hop_by_hop(&mut h, false);
        let left: Vec<_> = h.keys().map(|k| k.as_str().to_owned()).collect();
        assert_eq!(left, ["content-type"]);
    }

    #[test]
    fn upgrades_keep_their_headers() {
        let mut h = HeaderMap::new();
        h.insert(header::CONNECTION, HeaderValue::from_static("Upgrade"));
        h.insert(header::UPGRADE, HeaderValue::from_static("websocket"));
        assert!(is_upgrade(&h));
        strip_hop_by_hop(&mut h, true);
        assert_eq!(h.get(header::UPGRADE).unwrap(), "websocket");
        let mut h = HeaderMap::new();
        h.insert(header::UPGRADE, HeaderValue::from_static("websocket"));
        assert!(!is_upgrade(&h), "Upgrade without Connection: upgrade is not an upgrade");
    }

    #[test]
    fn forwarded_headers_append() {
        let mut h = HeaderMap::new();
        h.insert("x-forwarded-for", HeaderValue::from_static("203.0.113.9"));
        set_forwarded(&mut h, "127.0.0.1:5555".parse().unwrap(), "https", "web.example.com");
        assert_eq!(h["x-forwarded-for"], "203.0.113.9, 127.0.0.1");
        assert_eq!(h["x-forwarded-proto"], "https");
        assert_eq!(h["x-forwarded-host"], "web.example.com");
    }

    #[test]
    fn pages_escape_what_the_client_sent() {
        assert_eq!(escape("<script>&\"'"), "&lt;script&gt;&amp;&quot;&#39;");
        let p = page(StatusCode::NOT_FOUND, "Not published", "x");
        assert_eq!(p.status(), 404);
        assert_eq!(p.headers()[header::CONTENT_TYPE], "text/html; charset=utf-8");
    }
}
