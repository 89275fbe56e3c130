//! The real `4kr` binary against a stand-in server that implements the wire contract of
//! `forkr_engine::api` (routes, JSON bodies, error bodies, the exec WebSocket frames, file modes).
//!
//! Why a stand-in: these tests pin the CLI's side of the contract (exit codes, streaming, stdin, modes,
//! ephemeral cleanup) independently of the server, which is written at the same time. Commands run as
//! ordinary host processes here; boxes, namespaces and btrfs are the real server's business and its
//! end-to-end tests in `tests/` drive this same binary against it.

// The stand-in's handlers short-circuit with a ready `Response` as the error, as axum code does.
#![allow(clippy::result_large_err)]

use std::collections::{BTreeMap, HashMap};
use std::os::unix::fs::PermissionsExt as _;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::{Arc, Mutex};

use assert_cmd::Command;
use axum::body::Bytes;
use axum::extract::ws::{Message, WebSocket, WebSocketUpgrade};
use axum::extract::{Path as UrlPath, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use forkr_engine::api::{
    self, BgStarted, BoxInfo, BoxStatus, CreateBox, Deleted, ErrorBody, ErrorDetail, ExecOutput, ExecRequest,
    FileWritten, PsRequest, UpdateBox,
};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};

const TOKEN: &str = "test-token";

struct Inner {
    boxes: Mutex<BTreeMap<(String, String), BoxInfo>>,
    files: PathBuf,
    /// Every request line, to check what the CLI sent.
    log: Mutex<Vec<String>>,
}

type St = State<Arc<Inner>>;

fn error(status: StatusCode, code: &str, message: &str) -> Response {
    let body = ErrorBody { error: ErrorDetail { code: code.into(), message: message.into() } };
    (status, Json(body)).into_response()
}

fn authorized(headers: &HeaderMap) -> Result<(), Response> {
    let ok = headers.get("authorization").and_then(|v| v.to_str().ok()) == Some(&format!("Bearer {TOKEN}"));
    if ok {
        Ok(())
    } else {
        Err(error(StatusCode::UNAUTHORIZED, "unauthorized", "missing or wrong bearer token"))
    }
}

fn info(project: &str, req: &CreateBox) -> BoxInfo {
    BoxInfo {
        name: req.name.clone(),
        project: project.into(),
        status: BoxStatus::Running,
        base: req.base.clone().unwrap_or_else(|| "box-base".into()),
        forked_from: req.fork.clone(),
        url: format!("http://{}.localhost", req.name),
        port: req.port.unwrap_or(8080),
        created_at: "2026-01-02T03:04:05Z".into(),
        updated_at: "2026-01-02T03:04:05Z".into(),
        started_at: Some("2026-01-02T03:04:05Z".into()),
        published: vec![],
        tags: req.tags.clone(),
        data: req.data.clone(),
        env: req.env.clone(),
        cpus: 1.0,
        ram_mb: 2048,
        storage_gb: 10.0,
        termination_grace_seconds: 30,
        pid: Some(1),
    }
}

impl Inner {
    fn get(&self, p: &str, b: &str) -> Result<BoxInfo, Response> {
        let boxes = self.boxes.lock().unwrap();
        boxes
            .get(&(p.to_owned(), b.to_owned()))
            .cloned()
            .ok_or_else(|| error(StatusCode::NOT_FOUND, "not_found", &format!("box {b:?} not found")))
    }

    fn root(&self, p: &str, b: &str) -> PathBuf {
        self.files.join(p).join(b)
    }
}

async fn list(st: St, h: HeaderMap, UrlPath(p): UrlPath<String>) -> Response {
    if let Err(r) = authorized(&h) {
        return r;
    }
    let boxes = st.boxes.lock().unwrap();
    Json(boxes.values().filter(|b| b.project == p).cloned().collect::<Vec<_>>()).into_response()
}

async fn create(st: St, h: HeaderMap, UrlPath(p): UrlPath<String>, body: Bytes) -> Response {
    if let Err(r) = authorized(&h) {
        return r;
    }
    // The contract's own type, with its deny_unknown_fields.
    let req: CreateBox = match serde_json::from_slice(&body) {
        Ok(r) => r,
        Err(e) => return error(StatusCode::BAD_REQUEST, "bad_request", &e.to_string()),
    };
    if req.base.is_some() && req.fork.is_some() {
        return error(StatusCode::BAD_REQUEST, "bad_request", "--base cannot be used with --fork");
    }
    let mut boxes = st.boxes.lock().unwrap();
    let key = (p.clone(), req.name.clone());
    if boxes.contains_key(&key) {
        return error(StatusCode::CONFLICT, "exists", &format!("box {:?} already exists", req.name));
    }
    let b = info(&p, &req);
    boxes.insert(key, b.clone());
    let _ = std::fs::create_dir_all(st.root(&p, &req.name));
    (StatusCode::CREATED, Json(b)).into_response()
}

async fn show(st: St, h: HeaderMap, UrlPath((p, b)): UrlPath<(String, String)>) -> Response {
    if let Err(r) = authorized(&h) {
        return r;
    }
    match st.get(&p, &b) {
        Ok(info) => Json(info).into_response(),
        Err(r) => r,
    }
}

async fn update(
    st: St,
    h: HeaderMap,
    UrlPath((p, b)): UrlPath<(String, String)>,
    Json(req): Json<UpdateBox>,
) -> Response {
    if let Err(r) = authorized(&h) {
        return r;
    }
    let mut boxes = st.boxes.lock().unwrap();
    let Some(info) = boxes.get_mut(&(p, b.clone())) else {
        return error(StatusCode::NOT_FOUND, "not_found", &format!("box {b:?} not found"));
    };
    let mut changed = false;
    if let Some(port) = req.settings.get("PORT").and_then(|v| v.parse().ok()) {
        info.port = port;
        changed = true;
    }
    if let Some(tags) = req.tags {
        info.tags = tags;
        changed = true;
    }
    if !changed {
        return error(StatusCode::BAD_REQUEST, "no_updates", "no updates provided");
    }
    Json(info.clone()).into_response()
}

async fn delete(
    st: St,
    h: HeaderMap,
    UrlPath((p, b)): UrlPath<(String, String)>,
    Query(q): Query<HashMap<String, String>>,
) -> Response {
    if let Err(r) = authorized(&h) {
        return r;
    }
    st.log.lock().unwrap().push(format!("DELETE {p}/{b} force={}", q.get("force").map_or("", |s| s)));
    let mut boxes = st.boxes.lock().unwrap();
    let key = (p, b.clone());
    let force = q.get("force").map(String::as_str) == Some("true");
    if boxes.get(&key).is_some_and(|i| i.status == BoxStatus::Running) && !force {
        return error(StatusCode::CONFLICT, "fork_running", "box is running");
    }
    let existed = boxes.remove(&key).is_some();
    Json(Deleted { name: b, deleted: existed, cleanup_pending: false }).into_response()
}

async fn stop_or_resume(
    st: St,
    h: HeaderMap,
    UrlPath((p, b, op)): UrlPath<(String, String, String)>,
) -> Response {
    if let Err(r) = authorized(&h) {
        return r;
    }
    let mut boxes = st.boxes.lock().unwrap();
    let Some(info) = boxes.get_mut(&(p, b.clone())) else {
        return error(StatusCode::NOT_FOUND, "not_found", &format!("box {b:?} not found"));
    };
    info.status = if op == "stop" { BoxStatus::Stopped } else { BoxStatus::Running };
    Json(info.clone()).into_response()
}

async fn exec_post(
    st: St,
    h: HeaderMap,
    UrlPath((p, b)): UrlPath<(String, String)>,
    Json(req): Json<ExecRequest>,
) -> Response {
    if let Err(r) = authorized(&h) {
        return r;
    }
    if let Err(r) = st.get(&p, &b) {
        return r;
    }
    st.log.lock().unwrap().push(format!("EXEC bg={} cmd={:?}", req.bg, req.cmd));
    if req.bg {
        return Json(BgStarted { pid: 4242 }).into_response();
    }
    error(StatusCode::BAD_REQUEST, "bad_request", "the stand-in only does --bg over POST")
}

async fn ps(
    st: St,
    h: HeaderMap,
    UrlPath((p, b)): UrlPath<(String, String)>,
    Json(req): Json<PsRequest>,
) -> Response {
    if let Err(r) = authorized(&h) {
        return r;
    }
    if let Err(r) = st.get(&p, &b) {
        return r;
    }
    Json(ExecOutput {
        exit_code: 2,
        stdout: format!("PID CMD {}\n", req.args.join(" ")),
        stderr: "warn\n".into(),
    })
    .into_response()
}

async fn logs(
    st: St,
    h: HeaderMap,
    UrlPath((p, b)): UrlPath<(String, String)>,
    Query(q): Query<HashMap<String, String>>,
) -> Response {
    if let Err(r) = authorized(&h) {
        return r;
    }
    if let Err(r) = st.get(&p, &b) {
        return r;
    }
    format!("log of pid {} follow={}\n", q["pid"], q["follow"]).into_response()
}

async fn get_file(
    st: St,
    h: HeaderMap,
    UrlPath((p, b)): UrlPath<(String, String)>,
    Query(q): Query<HashMap<String, String>>,
) -> Response {
    if let Err(r) = authorized(&h) {
        return r;
    }
    let path = st.root(&p, &b).join(q["path"].trim_start_matches('/'));
    match std::fs::metadata(&path) {
        Ok(m) if m.is_dir() => error(
            StatusCode::BAD_REQUEST,
            "is_directory",
            "only files are supported (directories require -r, not yet supported)",
        ),
        Ok(m) => {
            let mode = format!("{:04o}", m.permissions().mode() & 0o7777);
            ([(api::MODE_HEADER, mode)], std::fs::read(&path).unwrap_or_default()).into_response()
        }
        Err(_) => error(StatusCode::NOT_FOUND, "not_found", &format!("{} not found", q["path"])),
    }
}

async fn put_file(
    st: St,
    h: HeaderMap,
    UrlPath((p, b)): UrlPath<(String, String)>,
    Query(q): Query<HashMap<String, String>>,
    body: Bytes,
) -> Response {
    if let Err(r) = authorized(&h) {
        return r;
    }
    let path = st.root(&p, &b).join(q["path"].trim_start_matches('/'));
    let mode = u32::from_str_radix(&q["mode"], 8).unwrap_or(0o644);
    let _ = std::fs::create_dir_all(path.parent().unwrap());
    std::fs::write(&path, &body).unwrap();
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(mode)).unwrap();
    Json(FileWritten { path: q["path"].clone(), size: body.len() as u64, mode }).into_response()
}

async fn exec_ws(
    st: St,
    h: HeaderMap,
    UrlPath((p, b)): UrlPath<(String, String)>,
    ws: WebSocketUpgrade,
) -> Response {
    if let Err(r) = authorized(&h) {
        return r;
    }
    let exists = st.get(&p, &b);
    ws.on_upgrade(move |mut socket| async move {
        let Some(Ok(Message::Text(first))) = socket.recv().await else { return };
        let req: ExecRequest = match serde_json::from_str(&first) {
            Ok(r) => r,
            Err(e) => return send_error(socket, "bad_request", &e.to_string()).await,
        };
        if exists.is_err() {
            return send_error(socket, "not_found", &format!("box {b:?} not found")).await;
        }
        st.log
            .lock()
            .unwrap()
            .push(format!("WS cmd={:?} sh={} tty={} wd={:?}", req.cmd, req.sh, req.tty, req.wd));
        let mut cmd = if req.sh || req.cmd.is_empty() {
            let mut c = tokio::process::Command::new("sh");
            if !req.cmd.is_empty() {
                c.arg("-c").arg(req.cmd.join(" "));
            }
            c
        } else {
            let mut c = tokio::process::Command::new(&req.cmd[0]);
            c.args(&req.cmd[1..]);
            c
        };
        cmd.envs(&req.env)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true);
        if let Some(wd) = &req.wd {
            cmd.current_dir(wd);
        }
        pump(socket, cmd).await;
    })
}

async fn console_ws(
    st: St,
    h: HeaderMap,
    UrlPath((p, b)): UrlPath<(String, String)>,
    ws: WebSocketUpgrade,
) -> Response {
    if let Err(r) = authorized(&h) {
        return r;
    }
    if let Err(r) = st.get(&p, &b) {
        return r;
    }
    ws.on_upgrade(move |socket| async move {
        let mut cmd = tokio::process::Command::new("sh");
        cmd.stdin(Stdio::piped()).stdout(Stdio::piped()).stderr(Stdio::piped()).kill_on_drop(true);
        pump(socket, cmd).await;
    })
}

async fn send_error(mut socket: WebSocket, code: &str, message: &str) {
    let body = ErrorBody { error: ErrorDetail { code: code.into(), message: message.into() } };
    let _ = socket.send(Message::Text(serde_json::to_string(&body).unwrap().into())).await;
    let _ = socket.send(Message::Close(None)).await;
}

/// Runs `cmd`, relaying the frame protocol of `api::ws` both ways.
async fn pump(mut socket: WebSocket, mut cmd: tokio::process::Command) {
    let mut child = match cmd.spawn() {
        Ok(c) => c,
        Err(e) => return send_error(socket, "exec_failed", &e.to_string()).await,
    };
    let mut stdin = child.stdin.take();
    let (tx, mut rx) = tokio::sync::mpsc::channel::<(u8, Vec<u8>)>(16);
    for (channel, mut reader) in [
        (
            api::ws::STDOUT,
            Box::new(child.stdout.take().unwrap()) as Box<dyn tokio::io::AsyncRead + Send + Unpin>,
        ),
        (api::ws::STDERR, Box::new(child.stderr.take().unwrap())),
    ] {
        let tx = tx.clone();
        tokio::spawn(async move {
            let mut buf = [0u8; 4096];
            while let Ok(n) = reader.read(&mut buf).await {
                if n == 0 || tx.send((channel, buf[..n].to_vec())).await.is_err() {
                    break;
                }
            }
        });
    }
    drop(tx);
    loop {
        tokio::select! {
            out = rx.recv() => match out {
                Some((channel, data)) => {
                    let mut frame = vec![channel];
                    frame.extend(data);
                    if socket.send(Message::Binary(frame.into())).await.is_err() {
                        return;
                    }
                }
                None => break,
            },
            msg = socket.recv() => match msg {
                Some(Ok(Message::Binary(data))) => match data.first() {
                    Some(&api::ws::STDIN) => {
                        if let Some(s) = stdin.as_mut() {
                            let _ = s.write_all(&data[1..]).await;
                        }
                    }
                    Some(&api::ws::CLOSE_STDIN) => stdin = None,
                    _ => {}
                },
                Some(Ok(_)) => {}
                // The client went away: the child is killed on drop.
                None | Some(Err(_)) => return,
            },
        }
    }
    let code = child.wait().await.ok().and_then(|s| s.code()).unwrap_or(255);
    let mut frame = vec![api::ws::EXIT];
    frame.extend(code.to_string().into_bytes());
    let _ = socket.send(Message::Binary(frame.into())).await;
    let _ = socket.send(Message::Close(None)).await;
}

/// A running stand-in server; dropped at the end of the test (its runtime thread ends with the process).
struct Server {
    url: String,
    inner: Arc<Inner>,
    _files: tempfile::TempDir,
}

fn server() -> Server {
    let files = tempfile::tempdir().unwrap();
    let inner = Arc::new(Inner {
        boxes: Mutex::new(BTreeMap::new()),
        files: files.path().to_path_buf(),
        log: Mutex::new(Vec::new()),
    });
    let base = "/v1/projects/{p}/boxes";
    let app = Router::new()
        .route(base, get(list).post(create))
        .route(&format!("{base}/{{b}}"), get(show).patch(update).delete(delete))
        .route(&format!("{base}/{{b}}/exec"), post(exec_post))
        .route(&format!("{base}/{{b}}/exec/ws"), get(exec_ws))
        .route(&format!("{base}/{{b}}/console"), get(console_ws))
        .route(&format!("{base}/{{b}}/ps"), post(ps))
        .route(&format!("{base}/{{b}}/logs"), get(logs))
        .route(&format!("{base}/{{b}}/files"), get(get_file).put(put_file))
        .route(&format!("{base}/{{b}}/{{op}}"), post(stop_or_resume))
        .with_state(inner.clone());
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    listener.set_nonblocking(true).unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(1).enable_all().build().unwrap();
        rt.block_on(async move {
            let listener = tokio::net::TcpListener::from_std(listener).unwrap();
            axum::serve(listener, app).await.unwrap();
        });
    });
    Server { url, inner, _files: files }
}

impl Server {
    /// `4kr` pointed at this server through FORKR_URL/FORKR_TOKEN, in a clean environment.
    fn kr(&self, dir: &Path) -> Command {
        let mut c = Command::new(env!("CARGO_BIN_EXE_4kr"));
        c.env_clear()
            .env("PATH", std::env::var_os("PATH").unwrap_or_default())
            .env("HOME", dir)
            .env("FORKR_URL", &self.url)
            .env("FORKR_TOKEN", TOKEN)
            .current_dir(dir);
        c
    }

    fn names(&self) -> Vec<String> {
        self.inner.boxes.lock().unwrap().keys().map(|(p, b)| format!("{p}:{b}")).collect()
    }
}

fn out(o: &std::process::Output) -> (Option<i32>, String, String) {
    (
        o.status.code(),
        String::from_utf8_lossy(&o.stdout).into_owned(),
        String::from_utf8_lossy(&o.stderr).into_owned(),
    )
}

#[test]
fn lifecycle_and_documented_outputs() {
    let s = server();
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    assert_eq!(
        out(&s.kr(d).args(["create", "web-1"]).output().unwrap()),
        (Some(0), "web-1: created\n".into(), "".into())
    );
    s.kr(d).args(["create", "db", "-p", "other", "--tag", "x", "-e", "A=1"]).assert().success();
    assert_eq!(s.names(), ["default:web-1", "other:db"]);

    let (code, stdout, _) = out(&s.kr(d).args(["list"]).output().unwrap());
    assert_eq!(code, Some(0));
    assert_eq!(
        stdout,
        "NAME    STATUS    BASE       URL                      CREATED\nweb-1   running   box-base   http://web-1.localhost   2026-01-02T03:04:05Z\n"
    );
    let (_, stdout, _) = out(&s.kr(d).args(["list", "-j", "-p", "other"]).output().unwrap());
    let listed: Vec<BoxInfo> = serde_json::from_str(&stdout).unwrap();
    assert_eq!(listed[0].env.get("A").map(String::as_str), Some("1"));

    let (_, stdout, _) = out(&s.kr(d).args(["show", "other:db"]).output().unwrap());
    assert!(
        stdout.starts_with("name:                      db\nproject:                   other\n"),
        "{stdout}"
    );
    let (_, stdout, _) = out(&s.kr(d).args(["show", "other.db", "--json"]).output().unwrap());
    assert_eq!(serde_json::from_str::<BoxInfo>(&stdout).unwrap().tags, ["x"]);

    let (code, _, stderr) = out(&s.kr(d).args(["update", "web-1", "FOO=1"]).output().unwrap());
    assert_eq!((code, stderr.as_str()), (Some(1), "Error: no updates provided\n"));
    let (code, stdout, _) = out(&s.kr(d).args(["update", "web-1", "PORT=3000", "-j"]).output().unwrap());
    assert_eq!((code, serde_json::from_str::<BoxInfo>(&stdout).unwrap().port), (Some(0), 3000));

    let (code, stdout, stderr) = out(&s.kr(d).args(["delete", "web-1", "ghost"]).output().unwrap());
    assert_eq!(code, Some(1));
    assert_eq!(stdout, "web-1: error: box is running\nghost: deleted\n");
    assert_eq!(stderr, "Error: 1 of 2 boxes could not be deleted\n");
    assert_eq!(out(&s.kr(d).args(["stop", "web-1"]).output().unwrap()).1, "web-1: stopped\n");
    assert_eq!(out(&s.kr(d).args(["resume", "web-1"]).output().unwrap()).1, "web-1: running\n");
    let (code, stdout, _) = out(&s.kr(d).args(["rm", "-f", "web-1", "other:db", "-j"]).output().unwrap());
    assert_eq!(code, Some(0));
    let report: serde_json::Value = serde_json::from_str(&stdout).unwrap();
    assert_eq!(
        report,
        serde_json::json!([{"name": "web-1", "deleted": true}, {"name": "other:db", "deleted": true}])
    );
    assert!(s.names().is_empty());

    let (code, _, stderr) = out(&s.kr(d).args(["show", "web-1"]).output().unwrap());
    assert_eq!((code, stderr.as_str()), (Some(1), "Error: box \"web-1\" not found\n"));
}

#[test]
fn wrong_token_is_explained() {
    let s = server();
    let dir = tempfile::tempdir().unwrap();
    let (code, _, stderr) = out(&s.kr(dir.path()).env("FORKR_TOKEN", "nope").arg("list").output().unwrap());
    assert_eq!(code, Some(1));
    assert!(
        stderr.starts_with(
            "Error: missing or wrong bearer token\n  help: the token from $FORKR_TOKEN was refused"
        ),
        "{stderr}"
    );
    // The WebSocket upgrade is refused the same way.
    let (code, _, stderr) = out(&s
        .kr(dir.path())
        .env("FORKR_TOKEN", "nope")
        .args(["exec", "web", "--", "true"])
        .output()
        .unwrap());
    assert_eq!(code, Some(1));
    assert!(stderr.starts_with("Error: missing or wrong bearer token"), "{stderr}");
}

#[test]
fn exec_streams_and_keeps_the_exit_code() {
    let s = server();
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    s.kr(d).args(["create", "web"]).assert().success();

    assert_eq!(
        out(&s.kr(d).args(["exec", "web", "--", "echo", "hello"]).output().unwrap()),
        (Some(0), "hello\n".into(), "".into())
    );
    let o = s.kr(d).args(["exec", "web", "--sh", "--", "echo out; echo err >&2; exit 7"]).output().unwrap();
    assert_eq!(out(&o), (Some(7), "out\n".into(), "err\n".into()));
    // stdin is streamed, and its end is signalled.
    let o = s.kr(d).args(["exec", "web", "--", "cat"]).write_stdin("line 1\nline 2\n").output().unwrap();
    assert_eq!(out(&o), (Some(0), "line 1\nline 2\n".into(), "".into()));
    // Large output arrives whole.
    let o = s.kr(d).args(["exec", "web", "--", "head", "-c", "3000000", "/dev/zero"]).output().unwrap();
    assert_eq!((o.status.code(), o.stdout.len()), (Some(0), 3_000_000));
    // No command and stdin not a TTY: bash reads the script from stdin.
    let o = s.kr(d).args(["exec", "web"]).write_stdin("echo from-script\nexit 3\n").output().unwrap();
    assert_eq!(out(&o), (Some(3), "from-script\n".into(), "".into()));
    // --env, --wd reach the request.
    let o = s
        .kr(d)
        .args(["exec", "web", "--env", "GREETING=hi", "--cwd", "/", "--", "sh", "-c", "echo $GREETING; pwd"])
        .output()
        .unwrap();
    assert_eq!(out(&o).1, "hi\n/\n");
    let log = s.inner.log.lock().unwrap().clone();
    assert!(log.contains(&r#"WS cmd=["bash"] sh=false tty=false wd=None"#.to_owned()), "{log:?}");

    // A missing box: the server's error frame.
    let (code, _, stderr) = out(&s.kr(d).args(["exec", "nope", "--", "true"]).output().unwrap());
    assert_eq!((code, stderr.as_str()), (Some(1), "Error: box \"nope\" not found\n"));

    // `.` inside a box.
    let o = s
        .kr(d)
        .env("BOX_NAME", "web")
        .env("FORKR_PROJECT", "default")
        .args(["exec", ".", "--", "echo", "dot"])
        .output()
        .unwrap();
    assert_eq!(out(&o).1, "dot\n");
}

#[test]
fn background_exec_logs_and_ps() {
    let s = server();
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    s.kr(d).args(["create", "web"]).assert().success();
    assert_eq!(
        out(&s.kr(d).args(["exec", "web", "--bg", "--", "sleep", "100"]).output().unwrap()).1,
        "pid=4242\n"
    );
    let (_, stdout, _) =
        out(&s.kr(d).args(["exec", "web", "--bg", "-j", "--", "sleep", "100"]).output().unwrap());
    assert_eq!(serde_json::from_str::<serde_json::Value>(&stdout).unwrap(), serde_json::json!({"pid": 4242}));
    assert_eq!(
        out(&s.kr(d).args(["logs", "web", "--pid", "4242"]).output().unwrap()).1,
        "log of pid 4242 follow=false\n"
    );
    assert_eq!(
        out(&s.kr(d).args(["tail", "web", "--pid", "7", "-f"]).output().unwrap()).1,
        "log of pid 7 follow=true\n"
    );
    let (_, stdout, _) = out(&s.kr(d).args(["logs", "web", "--pid", "7", "--json"]).output().unwrap());
    assert_eq!(
        serde_json::from_str::<serde_json::Value>(&stdout).unwrap(),
        serde_json::json!({"pid": 7, "log": "log of pid 7 follow=false\n"})
    );
    assert_eq!(
        out(&s.kr(d).args(["ps", "web", "--", "-ef"]).output().unwrap()),
        (Some(2), "PID CMD -ef\n".into(), "warn\n".into())
    );
}

#[test]
fn files_keep_their_modes_both_ways() {
    let s = server();
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    s.kr(d).args(["create", "web"]).assert().success();
    let local = d.join("run.sh");
    std::fs::write(&local, "#!/bin/sh\necho hi\n").unwrap();
    std::fs::set_permissions(&local, std::fs::Permissions::from_mode(0o750)).unwrap();

    s.kr(d).args(["cp", "run.sh", "web:/srv/run.sh"]).assert().success();
    let remote = s.inner.root("default", "web").join("srv/run.sh");
    assert_eq!(std::fs::metadata(&remote).unwrap().permissions().mode() & 0o7777, 0o750);
    // put into a directory keeps the name.
    s.kr(d).args(["put", "run.sh", "web:/opt/"]).assert().success();
    assert!(s.inner.root("default", "web").join("opt/run.sh").exists());

    std::fs::set_permissions(&remote, std::fs::Permissions::from_mode(0o604)).unwrap();
    s.kr(d).args(["get", "default:web:/srv/run.sh", "back.sh"]).assert().success();
    let back = d.join("back.sh");
    assert_eq!(std::fs::read_to_string(&back).unwrap(), "#!/bin/sh\necho hi\n");
    assert_eq!(std::fs::metadata(&back).unwrap().permissions().mode() & 0o7777, 0o604);
    // get into an existing directory keeps the name; no temporary file is left behind.
    std::fs::create_dir(d.join("out")).unwrap();
    s.kr(d).args(["cp", "web:/srv/run.sh", "out"]).assert().success();
    let entries: Vec<_> = std::fs::read_dir(d.join("out")).unwrap().map(|e| e.unwrap().file_name()).collect();
    assert_eq!(entries, ["run.sh"]);

    let (code, _, stderr) = out(&s.kr(d).args(["cp", "web:/srv", "x"]).output().unwrap());
    assert_eq!(code, Some(1));
    assert_eq!(stderr, "Error: only files are supported (directories require -r, not yet supported)\n");
    assert!(!d.join("x").exists());
    let (code, _, stderr) = out(&s.kr(d).args(["cp", "web:/missing", "x"]).output().unwrap());
    assert_eq!((code, stderr.as_str()), (Some(1), "Error: /missing not found\n"));
    assert!(!d.join("x").exists(), "a failed download leaves nothing behind");
}

#[test]
fn ephemeral_boxes_are_always_deleted() {
    let s = server();
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let (code, stdout, stderr) =
        out(&s.kr(d).args(["exec", "-", "--", "sh", "-c", "echo in-box; exit 4"]).output().unwrap());
    assert_eq!((code, stdout.as_str()), (Some(4), "in-box\n"));
    let name = stderr
        .strip_prefix("ephemeral fork: ")
        .and_then(|r| r.strip_suffix('\n'))
        .unwrap_or_else(|| panic!("{stderr}"));
    let parts: Vec<&str> = name.splitn(3, '-').collect();
    assert_eq!(parts[0], "ephemeral");
    assert!(parts[1].parse::<u32>().is_ok() && parts[2].parse::<u128>().is_ok(), "{name}");
    assert!(s.names().is_empty(), "deleted after exec");
    let log = s.inner.log.lock().unwrap().clone();
    assert!(log.contains(&format!("DELETE default/{name} force=true")), "{log:?}");

    // Failing command in a project given as project:-; still deleted.
    let (code, _, stderr) = out(&s.kr(d).args(["exec", "p:-", "--", "/nonexistent/cmd"]).output().unwrap());
    assert_eq!(code, Some(1));
    assert!(stderr.contains("Error: "), "{stderr}");
    assert!(s.names().is_empty());

    // cp to `-`: created, written, deleted.
    std::fs::write(d.join("f"), "x").unwrap();
    let (code, _, stderr) = out(&s.kr(d).args(["cp", "f", "-:/tmp/f"]).output().unwrap());
    assert_eq!(code, Some(0), "{stderr}");
    assert!(stderr.starts_with("ephemeral fork: ephemeral-"));
    assert!(s.names().is_empty());
}

#[test]
fn ctrl_c_during_ephemeral_exec_still_deletes() {
    let s = server();
    let dir = tempfile::tempdir().unwrap();
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_4kr"))
        .env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .env("FORKR_URL", &s.url)
        .env("FORKR_TOKEN", TOKEN)
        .current_dir(dir.path())
        .args(["exec", "-", "--", "sleep", "30"])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // Wait until the box exists and the command runs.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while !s.inner.log.lock().unwrap().iter().any(|l| l.starts_with("WS ")) {
        assert!(std::time::Instant::now() < deadline, "exec never started");
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    assert_eq!(s.names().len(), 1);
    nix::sys::signal::kill(nix::unistd::Pid::from_raw(child.id() as i32), nix::sys::signal::Signal::SIGINT)
        .unwrap();
    let status = child.wait().unwrap();
    assert_eq!(status.code(), Some(130));
    assert!(s.names().is_empty(), "the ephemeral box was deleted after Ctrl-C");
    let mut stderr = String::new();
    std::io::Read::read_to_string(child.stderr.as_mut().unwrap(), &mut stderr).unwrap();
    assert!(stderr.starts_with("ephemeral fork: ephemeral-"), "{stderr}");
}

#[test]
fn console_without_a_terminal_relays_piped_input() {
    let s = server();
    let dir = tempfile::tempdir().unwrap();
    s.kr(dir.path()).args(["create", "web"]).assert().success();
    let o =
        s.kr(dir.path()).args(["console", "web"]).write_stdin("echo console-ok\nexit 5\n").output().unwrap();
    assert_eq!(out(&o), (Some(5), "console-ok\n".into(), "".into()));
}

/// `4kr exec` on a terminal: a PTY is requested, the terminal is in raw mode while the command runs,
/// and it is restored afterwards, also when the command fails.
#[test]
fn terminal_exec_restores_the_terminal() {
    use nix::sys::termios::{LocalFlags, tcgetattr};
    use std::os::fd::AsFd as _;
    let s = server();
    let dir = tempfile::tempdir().unwrap();
    s.kr(dir.path()).args(["create", "web"]).assert().success();
    let pty = nix::pty::openpty(None, None).unwrap();
    let echo = || tcgetattr(pty.slave.as_fd()).unwrap().local_flags.contains(LocalFlags::ECHO);
    assert!(echo());
    for (target, expect) in [("web", Some(3)), ("missing", Some(1))] {
        let tty = || Stdio::from(pty.slave.try_clone().unwrap());
        let status = std::process::Command::new(env!("CARGO_BIN_EXE_4kr"))
            .env_clear()
            .env("PATH", std::env::var_os("PATH").unwrap_or_default())
            .env("FORKR_URL", &s.url)
            .env("FORKR_TOKEN", TOKEN)
            .current_dir(dir.path())
            .args(["exec", target, "--", "sh", "-c", "sleep 0.3; exit 3"])
            .stdin(tty())
            .stdout(tty())
            .stderr(tty())
            .status()
            .unwrap();
        assert_eq!(status.code(), expect, "{target}");
        assert!(echo(), "terminal left in raw mode after exec {target}");
    }
    let log = s.inner.log.lock().unwrap().clone();
    assert!(log.iter().any(|l| l.starts_with("WS ") && l.contains("tty=true")), "{log:?}");
}
