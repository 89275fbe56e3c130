//! Running things in boxes: buffered and background exec, `ps`, logs of background processes, and the
//! WebSocket exec and console streams (frame protocol in `forkr_engine::api::ws`).

use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::extract::State;
use axum::extract::ws::{Message, WebSocket, WebSocketUpgrade};
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use forkr_engine::api::{BgStarted, ErrorBody, ErrorDetail, ExecOutput, ExecRequest, PsRequest, Resize, ws};
use forkr_engine::engine::ExecMode;
use forkr_engine::name::{NameKind, validate};
use forkr_engine::{Error, ErrorKind};
use futures_util::{SinkExt, StreamExt};
use serde::Deserialize;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::AppState;
use crate::error::{ApiError, ApiJson, ApiPath, ApiQuery, ApiResult};

/// Cap on each of stdout and stderr of a buffered exec.
pub const EXEC_OUTPUT_LIMIT: usize = 16 << 20;
/// Cap on one WebSocket message from a client.
pub const WS_FRAME_LIMIT: usize = 1 << 20;

fn check(project: &str, name: &str) -> ApiResult<()> {
    validate(NameKind::Project, project)?;
    validate(NameKind::Box, name)?;
    Ok(())
}

/// The two answers of `POST …/exec` (documentation only): the buffered result, or with `bg` the
/// PID of the started process.
#[derive(utoipa::ToSchema)]
#[allow(dead_code)]
#[serde(untagged)]
enum ExecAnswer {
    Output(ExecOutput),
    Started(BgStarted),
}

#[utoipa::path(post, path = "/v1/projects/{project}/boxes/{name}/exec", tag = "exec",
    params(("project" = String, Path), ("name" = String, Path)), request_body = ExecRequest,
    responses((status = 200, body = ExecAnswer, description = "buffered result, or BgStarted with bg=true"),
        (status = 409, body = ErrorBody, description = "box is not running"), (status = 413, body = ErrorBody)))]
pub async fn exec(
    State(s): State<Arc<AppState>>,
    ApiPath((project, name)): ApiPath<(String, String)>,
    ApiJson(req): ApiJson<ExecRequest>,
) -> ApiResult<Response> {
    check(&project, &name)?;
    if req.tty {
        return Err(ApiError::new(
            ErrorKind::BadRequest,
            "invalid_request",
            "tty needs the WebSocket exec (…/exec/ws)",
        ));
    }
    if req.bg {
        let p = s.engine.exec(&project, &name, &req, ExecMode::Background).await?;
        return Ok(ApiJson(BgStarted { pid: p.pid }).into_response());
    }
    Ok(ApiJson(s.engine.exec_buffered(&project, &name, &req, EXEC_OUTPUT_LIMIT).await?).into_response())
}

#[utoipa::path(post, path = "/v1/projects/{project}/boxes/{name}/ps", tag = "exec",
    params(("project" = String, Path), ("name" = String, Path)), request_body = PsRequest,
    responses((status = 200, body = ExecOutput)))]
pub async fn ps(
    State(s): State<Arc<AppState>>,
    ApiPath((project, name)): ApiPath<(String, String)>,
    ApiJson(req): ApiJson<PsRequest>,
) -> ApiResult<ApiJson<ExecOutput>> {
    check(&project, &name)?;
    let mut cmd = vec!["ps".to_owned()];
    cmd.extend(req.args);
    let req = ExecRequest { cmd, ..Default::default() };
    Ok(ApiJson(s.engine.exec_buffered(&project, &name, &req, EXEC_OUTPUT_LIMIT).await?))
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
pub struct LogsQuery {
    /// PID (inside the box) of a background process started with `exec --bg`.
    pub pid: u32,
    /// Keep streaming until the process exits.
    #[serde(default)]
    pub follow: bool,
}

#[utoipa::path(get, path = "/v1/projects/{project}/boxes/{name}/logs", tag = "exec",
    params(("project" = String, Path), ("name" = String, Path), LogsQuery),
    responses((status = 200, description = "log bytes", content_type = "application/octet-stream"),
        (status = 404, body = ErrorBody)))]
pub async fn logs(
    State(s): State<Arc<AppState>>,
    ApiPath((project, name)): ApiPath<(String, String)>,
    ApiQuery(q): ApiQuery<LogsQuery>,
) -> ApiResult<Response> {
    check(&project, &name)?;
    s.engine.get_box(&project, &name)?;
    let path = s.engine.bg_log_path(&project, &name, q.pid);
    let file = tokio::fs::File::open(&path).await.map_err(|_| {
        Error::new(
            ErrorKind::NotFound,
            "not_found",
            format!("no background process with pid {} in box {name:?}", q.pid),
        )
    })?;
    if !q.follow {
        let mut data = Vec::new();
        let mut f = file;
        f.read_to_end(&mut data).await.map_err(|e| Error::io("reading log", e))?;
        return Ok(([(axum::http::header::CONTENT_TYPE, "application/octet-stream")], data).into_response());
    }
    // Follow: stream what is there, then poll for growth until the process is gone.
    let engine = s.engine.clone();
    let stream = futures_util::stream::unfold((file, false), move |(mut f, done)| {
        let engine = engine.clone();
        let (project, name) = (project.clone(), name.clone());
        async move {
            if done {
                return None;
            }
            let mut buf = vec![0u8; 64 * 1024];
            loop {
                match f.read(&mut buf).await {
                    Ok(0) => {
                        if !engine.box_pid_alive(&project, &name, q.pid) {
                            // One last read catches output written just before exit.
                            let n = f.read(&mut buf).await.unwrap_or(0);
                            buf.truncate(n);
                            return Some((Ok::<_, std::io::Error>(Bytes::from(buf)), (f, true)));
                        }
                        tokio::time::sleep(Duration::from_millis(100)).await;
                    }
                    Ok(n) => {
                        buf.truncate(n);
                        return Some((Ok(Bytes::from(buf)), (f, false)));
                    }
                    Err(e) => return Some((Err(e), (f, true))),
                }
            }
        }
    });
    Ok(([(axum::http::header::CONTENT_TYPE, "application/octet-stream")], Body::from_stream(stream))
        .into_response())
}

/// `GET …/exec/ws`: the first client message is a text frame with an `ExecRequest`.
pub async fn exec_ws(
    State(s): State<Arc<AppState>>,
    ApiPath((project, name)): ApiPath<(String, String)>,
    upgrade: WebSocketUpgrade,
) -> ApiResult<Response> {
    check(&project, &name)?;
    s.engine.get_box(&project, &name)?;
    Ok(upgrade
        .max_message_size(WS_FRAME_LIMIT)
        .on_upgrade(move |socket| run_ws(s, project, name, socket, None)))
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
pub struct ConsoleQuery {
    pub rows: Option<u16>,
    pub cols: Option<u16>,
}

/// `GET …/console`: an interactive login shell on a PTY.
pub async fn console(
    State(s): State<Arc<AppState>>,
    ApiPath((project, name)): ApiPath<(String, String)>,
    ApiQuery(q): ApiQuery<ConsoleQuery>,
    upgrade: WebSocketUpgrade,
) -> ApiResult<Response> {
    check(&project, &name)?;
    s.engine.get_box(&project, &name)?;
    let req = ExecRequest { tty: true, rows: q.rows, cols: q.cols, ..Default::default() };
    Ok(upgrade
        .max_message_size(WS_FRAME_LIMIT)
        .on_upgrade(move |socket| run_ws(s, project, name, socket, Some(req))))
}

fn error_frame(e: &Error) -> Message {
    let body =
        ErrorBody { error: ErrorDetail { code: e.code().to_owned(), message: e.message().to_owned() } };
    Message::Text(serde_json::to_string(&body).unwrap_or_default().into())
}

fn frame(channel: u8, data: &[u8]) -> Message {
    let mut v = Vec::with_capacity(data.len() + 1);
    v.push(channel);
    v.extend_from_slice(data);
    Message::Binary(v.into())
}

async fn run_ws(
    s: Arc<AppState>,
    project: String,
    name: String,
    socket: WebSocket,
    preset: Option<ExecRequest>,
) {
    let (mut tx, mut rx) = socket.split();
    let req = match preset {
        Some(r) => r,
        None => loop {
            match rx.next().await {
                Some(Ok(Message::Text(t))) => match serde_json::from_str::<ExecRequest>(&t) {
                    Ok(r) => break r,
                    Err(e) => {
                        let e = Error::bad_request("invalid_json", format!("invalid exec request: {e}"));
                        let _ = tx.send(error_frame(&e)).await;
                        let _ = tx.close().await;
                        return;
                    }
                },
                Some(Ok(Message::Ping(_) | Message::Pong(_))) => continue,
                _ => return,
            }
        },
    };
    let mode = if req.tty {
        ExecMode::Tty { rows: req.rows.unwrap_or(24), cols: req.cols.unwrap_or(80) }
    } else {
        ExecMode::Pipes
    };
    let mut p = match s.engine.exec(&project, &name, &req, mode).await {
        Ok(p) => p,
        Err(e) => {
            let _ = tx.send(error_frame(&e)).await;
            let _ = tx.close().await;
            return;
        }
    };

    // Output readers feed one channel; the socket writer drains it.
    let (otx, mut orx) = tokio::sync::mpsc::channel::<(u8, Vec<u8>)>(32);
    for (chan, reader) in [(ws::STDOUT, p.stdout.take()), (ws::STDERR, p.stderr.take())] {
        let Some(mut reader) = reader else { continue };
        let otx = otx.clone();
        tokio::spawn(async move {
            let mut buf = vec![0u8; 32 * 1024];
            loop {
                match reader.read(&mut buf).await {
                    Ok(0) | Err(_) => break,
                    Ok(n) => {
                        if otx.send((chan, buf[..n].to_vec())).await.is_err() {
                            break;
                        }
                    }
                }
            }
        });
    }
    drop(otx);

    // Client input: stdin bytes, resizes, EOF. A client that goes away before the process ends
    // kills it (nobody would read its output).
    let mut stdin = p.stdin.take();
    let pty = p.pty.take();
    let kill = Arc::new(p.kill);
    let finished = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let (kill_on_gone, finished_in) = (kill.clone(), finished.clone());
    // Set when the client sent a message over WS_FRAME_LIMIT: the session ends with a `too_large`
    // error frame (the WebSocket form of a 413) instead of an exit code.
    let over_limit = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let over_limit_in = over_limit.clone();
    let input = tokio::spawn(async move {
        while let Some(msg) = rx.next().await {
            let msg = match msg {
                Ok(m) => m,
                Err(e) => {
                    // tungstenite's capacity error ("Space limit exceeded: Message too long: …");
                    // axum does not expose its type.
                    let text = e.to_string();
                    if text.contains("Message too long") || text.contains("Space limit exceeded") {
                        over_limit_in.store(true, std::sync::atomic::Ordering::SeqCst);
                    }
                    break;
                }
            };
            match msg {
                Message::Binary(b) if !b.is_empty() => match b[0] {
                    ws::STDIN => {
                        if let Some(w) = stdin.as_mut()
                            && (w.write_all(&b[1..]).await.is_err() || w.flush().await.is_err())
                        {
                            stdin = None;
                        }
                    }
                    ws::RESIZE => {
                        if let (Some(pty), Ok(r)) = (pty.as_ref(), serde_json::from_slice::<Resize>(&b[1..]))
                        {
                            let _ = pty.resize(r.rows, r.cols);
                        }
                    }
                    ws::CLOSE_STDIN => {
                        if let Some(mut w) = stdin.take() {
                            let _ = w.shutdown().await;
                        }
                    }
                    _ => {}
                },
                Message::Close(_) => break,
                _ => {}
            }
        }
        if !finished_in.load(std::sync::atomic::Ordering::SeqCst) {
            (kill_on_gone)();
        }
    });

    let mut wait = p.wait;
    let code = loop {
        tokio::select! {
            out = orx.recv() => match out {
                Some((chan, data)) => {
                    if tx.send(frame(chan, &data)).await.is_err() {
                        (kill)();
                    }
                }
                None => break (&mut wait).await,
            },
            code = &mut wait => {
                // Drain what is still buffered; a background child holding the PTY must not keep
                // the session open forever.
                while let Ok(Some((chan, data))) = tokio::time::timeout(Duration::from_millis(200), orx.recv()).await {
                    if tx.send(frame(chan, &data)).await.is_err() {
                        break;
                    }
                }
                break code;
            }
        }
    };
    finished.store(true, std::sync::atomic::Ordering::SeqCst);
    if over_limit.load(std::sync::atomic::Ordering::SeqCst) {
        let e = Error::new(
            ErrorKind::TooLarge,
            "too_large",
            format!(
                "a WebSocket message was over the limit of {WS_FRAME_LIMIT} bytes; the process was stopped (send input in smaller pieces)"
            ),
        );
        let _ = tx.send(error_frame(&e)).await;
    } else {
        match code {
            Ok(c) => {
                let _ = tx.send(frame(ws::EXIT, c.to_string().as_bytes())).await;
            }
            Err(e) => {
                let _ = tx.send(error_frame(&e)).await;
            }
        }
    }
    let _ = tx.close().await;
    // Read until the client answers the close, so the connection ends cleanly instead of with a
    // reset for unread input.
    if tokio::time::timeout(Duration::from_secs(2), &mut { input }).await.is_err() {
        tracing::debug!("client did not answer the close in time");
    }
}
