//! Exec through a real WebSocket: a small stand-in for the kubelet's exec endpoint speaks the
//! Kubernetes remote-command protocol (`v5.channel.k8s.io`: one byte of channel, then data; the
//! exit status as JSON on channel 3) and runs the requested argv for real on this machine, with
//! the runner's `/volumes` mapped to a busybox root and `/forkr-run` to a run directory. So the
//! wrapping (`env -i`, `chroot --userspec`, `cd`, argv kept word for word), the stream plumbing,
//! the exit codes and the detached start all run as they would in a runner container.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use axum::extract::ws::{Message, WebSocket, WebSocketUpgrade};
use axum::extract::{Path as UrlPath, RawQuery};
use axum::response::IntoResponse;
use k8s_openapi::api::core::v1::Pod;
use kube::Api;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use super::*;
use crate::runtime::ExecIo;

/// What the stand-in kubelet maps and records.
#[derive(Clone)]
struct Node {
    root: PathBuf,
    run_dir: PathBuf,
    seen: std::sync::Arc<std::sync::Mutex<Vec<String>>>,
}

fn decode(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%'
            && i + 2 < b.len()
            && let Ok(v) = u8::from_str_radix(std::str::from_utf8(&b[i + 1..i + 3]).unwrap_or(""), 16)
        {
            out.push(v);
            i += 3;
            continue;
        }
        out.push(if b[i] == b'+' { b' ' } else { b[i] });
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

async fn exec_endpoint(
    axum::extract::State(node): axum::extract::State<Node>,
    UrlPath((_ns, pod)): UrlPath<(String, String)>,
    RawQuery(query): RawQuery,
    ws: WebSocketUpgrade,
) -> impl IntoResponse {
    let mut argv = Vec::new();
    let mut flags = Vec::new();
    for pair in query.unwrap_or_default().split('&').filter(|p| !p.is_empty()) {
        let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
        match k {
            "command" => argv.push(decode(v)),
            other => flags.push(format!("{other}={}", decode(v))),
        }
    }
    flags.sort();
    node.seen.lock().unwrap().push(format!("{pod} {}", flags.join("&")));
    let stdin = flags.iter().any(|f| f == "stdin=true");
    // The runner container's paths, mapped onto this machine.
    let argv: Vec<String> = argv
        .into_iter()
        .map(|a| {
            if a == ROOT_MOUNT {
                node.root.to_string_lossy().into_owned()
            } else if let Some(rest) = a.strip_prefix(RUN_MOUNT) {
                format!("{}{rest}", node.run_dir.display())
            } else {
                a
            }
        })
        .collect();
    ws.protocols(["v5.channel.k8s.io", "v4.channel.k8s.io"])
        .on_upgrade(move |socket| session(socket, argv, stdin, node.seen))
}

/// Runs `argv` and relays its streams over the socket until it exits (or the client goes away).
/// Terminal resizes (channel 4) are recorded in `seen` as `resize <json>`.
async fn session(
    mut socket: WebSocket,
    argv: Vec<String>,
    with_stdin: bool,
    seen: std::sync::Arc<std::sync::Mutex<Vec<String>>>,
) {
    let mut child = tokio::process::Command::new(&argv[0])
        .args(&argv[1..])
        .stdin(if with_stdin { Stdio::piped() } else { Stdio::null() })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let mut stdin = child.stdin.take();
    let (mut out, mut err) = (child.stdout.take().unwrap(), child.stderr.take().unwrap());
    let (mut out_open, mut err_open) = (true, true);
    let (mut ob, mut eb) = ([0u8; 4096], [0u8; 4096]);
    while out_open || err_open {
        tokio::select! {
            n = out.read(&mut ob), if out_open => match n {
                Ok(0) | Err(_) => out_open = false,
                Ok(n) => { let _ = socket.send(Message::Binary([&[1u8][..], &ob[..n]].concat().into())).await; }
            },
            n = err.read(&mut eb), if err_open => match n {
                Ok(0) | Err(_) => err_open = false,
                Ok(n) => { let _ = socket.send(Message::Binary([&[2u8][..], &eb[..n]].concat().into())).await; }
            },
            msg = socket.recv() => match msg {
                Some(Ok(Message::Binary(b))) if b.first() == Some(&0) => {
                    if let Some(s) = stdin.as_mut() { let _ = s.write_all(&b[1..]).await; }
                }
                Some(Ok(Message::Binary(b))) if b[..] == [255, 0] => { stdin = None; }
                Some(Ok(Message::Binary(b))) if b.first() == Some(&4) => {
                    seen.lock().unwrap().push(format!("resize {}", String::from_utf8_lossy(&b[1..])));
                }
                Some(Ok(_)) => {}
                // The client went away: the process goes with it (kill_on_drop).
                None | Some(Err(_)) => return,
            },
        }
    }
    let code = child.wait().await.unwrap().code().unwrap_or(255);
    let status = if code == 0 {
        serde_json::json!({"metadata": {}, "status": "Success"})
    } else {
        serde_json::json!({"metadata": {}, "status": "Failure", "reason": "NonZeroExitCode",
            "message": format!("command terminated with non-zero exit code: exit status {code}"),
            "details": {"causes": [{"reason": "ExitCode", "message": code.to_string()}]}})
    };
    let _ = socket
        .send(Message::Binary([&[3u8][..], &serde_json::to_vec(&status).unwrap()].concat().into()))
        .await;
    let _ = socket.send(Message::Close(None)).await;
}

struct Harness {
    api: Api<Pod>,
    node: Node,
    _dir: tempfile::TempDir,
    server: tokio::task::JoinHandle<()>,
}

impl Drop for Harness {
    fn drop(&mut self) {
        self.server.abort();
    }
}

/// A busybox root (the box) and a run dir, served by the stand-in kubelet on a loopback port.
async fn harness() -> Harness {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("root");
    for d in ["bin", "tmp", "work"] {
        std::fs::create_dir_all(root.join(d)).unwrap();
    }
    std::fs::copy("/usr/bin/busybox", root.join("bin/busybox")).unwrap();
    for applet in ["sh", "cat", "id", "sleep", "echo"] {
        std::os::unix::fs::symlink("busybox", root.join("bin").join(applet)).unwrap();
    }
    let run_dir = dir.path().join("run");
    std::fs::create_dir_all(run_dir.join("bg")).unwrap();
    let node = Node { root, run_dir, seen: Default::default() };
    let app = axum::Router::new()
        .route("/api/v1/namespaces/{ns}/pods/{pod}/exec", axum::routing::get(exec_endpoint))
        .with_state(node.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr: SocketAddr = listener.local_addr().unwrap();
    let server = tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    let mut config = kube::Config::new(format!("http://{addr}").parse().unwrap());
    config.default_namespace = "forks".into();
    let client = kube::Client::try_from(config).unwrap();
    Harness { api: Api::namespaced(client, "forks"), node, _dir: dir, server }
}

fn spec(argv: &[&str], io: ExecIo) -> ExecSpec {
    ExecSpec {
        argv: argv.iter().map(|s| s.to_string()).collect(),
        env: vec![("PATH".into(), "/bin".into()), ("GREETING".into(), "hi there".into())],
        cwd: "/work".into(),
        uid: 0,
        gid: 0,
        io,
    }
}

async fn read_all(r: Option<crate::runtime::BoxedRead>) -> String {
    let mut s = String::new();
    if let Some(mut r) = r {
        r.read_to_string(&mut s).await.unwrap();
    }
    s
}

#[tokio::test]
async fn an_exec_runs_in_the_root_with_its_streams_environment_directory_and_exit_code() {
    let h = harness().await;
    let script = r#"read line; echo "out:$line:$GREETING:$PWD:$1"; echo oops >&2; exit 3"#;
    let mut p = exec(&h.api, "web-1", None, spec(&["/bin/sh", "-c", script, "sh", "a  b"], ExecIo::Pipes))
        .await
        .unwrap();
    let mut stdin = p.stdin.take().unwrap();
    stdin.write_all(b"hello\n").await.unwrap();
    drop(stdin);
    let (out, err) = tokio::join!(read_all(p.stdout.take()), read_all(p.stderr.take()));
    assert_eq!(out, "out:hello:hi there:/work:a  b\n");
    assert_eq!(err, "oops\n");
    assert_eq!(p.wait.await.unwrap(), 3);
    let seen = h.node.seen.lock().unwrap().clone();
    assert_eq!(seen, ["web-1 container=fork&stderr=true&stdin=true&stdout=true"]);
}

#[tokio::test]
async fn an_exec_runs_as_the_requested_user() {
    let h = harness().await;
    let mut s = spec(&["/bin/sh", "-c", "id -u; id -g"], ExecIo::Pipes);
    s.uid = 20001;
    s.gid = 20001;
    let mut p = exec(&h.api, "web-1", None, s).await.unwrap();
    drop(p.stdin.take());
    assert_eq!(read_all(p.stdout.take()).await, "20001\n20001\n");
    assert_eq!(p.wait.await.unwrap(), 0);
}

#[tokio::test]
async fn a_detached_exec_reports_its_pid_and_writes_its_log_in_the_run_dir() {
    let h = harness().await;
    let log = h.node.run_dir.join("bg/pending-0.log");
    let s =
        spec(&["/bin/sh", "-c", "echo started-$$; echo $GREETING"], ExecIo::Detached { log: log.clone() });
    let p = exec(&h.api, "web-1", Some(&h.node.run_dir), s).await.unwrap();
    assert!(p.pid > 1);
    assert_eq!(p.wait.await.unwrap(), 0);
    let want = format!("started-{}\nhi there\n", p.pid);
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    while std::fs::read_to_string(&log).unwrap_or_default() != want && std::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert_eq!(std::fs::read_to_string(&log).unwrap(), want);
    // A log outside the run directory is refused before anything runs.
    let s = spec(&["/bin/true"], ExecIo::Detached { log: PathBuf::from("/etc/x.log") });
    assert!(exec(&h.api, "web-1", Some(&h.node.run_dir), s).await.is_err());
}

#[tokio::test]
async fn kill_ends_a_running_exec() {
    let h = harness().await;
    let marker = h.node.root.join("tmp/alive");
    let mut p =
        exec(&h.api, "web-1", None, spec(&["/bin/sh", "-c", "echo x > /tmp/alive; sleep 30"], ExecIo::Pipes))
            .await
            .unwrap();
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    while !marker.exists() && std::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert!(marker.exists());
    drop(p.stdin.take());
    (p.kill)();
    let r = tokio::time::timeout(Duration::from_secs(5), p.wait).await.expect("wait resolves after a kill");
    assert!(r.is_err(), "a killed exec has no exit status");
}

#[tokio::test]
async fn listening_reads_the_pods_tcp_sockets() {
    let h = harness().await;
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = l.local_addr().unwrap().port();
    let found = listening(&h.api, "web-1").await.unwrap();
    assert!(found.iter().any(|s| s.port == port && s.address.to_string() == "127.0.0.1"), "{found:?}");
    let mut sorted = found.clone();
    sorted.sort();
    sorted.dedup();
    assert_eq!(found, sorted);
}

#[tokio::test]
async fn a_console_gets_a_tty_exec_whose_size_follows_the_client() {
    let h = harness().await;
    // The stand-in runs the command with pipes (a PTY is the kubelet's job); what matters here is
    // the request (tty, no separate stderr), the stream plumbing and the resize channel.
    let script = "read line; echo got:$line; read line; echo bye";
    let mut p =
        exec(&h.api, "web-1", None, spec(&["/bin/sh", "-c", script], ExecIo::Tty { rows: 24, cols: 80 }))
            .await
            .unwrap();
    assert!(p.stderr.is_none(), "a TTY has one output stream");
    let mut stdin = p.stdin.take().unwrap();
    let mut stdout = p.stdout.take().unwrap();
    stdin.write_all(b"one\n").await.unwrap();
    let mut buf = vec![0u8; 64];
    let n = stdout.read(&mut buf).await.unwrap();
    assert_eq!(&buf[..n], b"got:one\n");
    p.pty.as_ref().unwrap().resize(50, 132).unwrap();
    // kube sends resizes and stdin from separate queues, so their order on the socket is not
    // fixed: wait for the resize to arrive before the input that ends the session.
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    while h.node.seen.lock().unwrap().len() < 3 && std::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    stdin.write_all(b"two\n").await.unwrap();
    let mut rest = String::new();
    stdout.read_to_string(&mut rest).await.unwrap();
    assert_eq!(rest, "bye\n");
    assert_eq!(p.wait.await.unwrap(), 0);
    let seen = h.node.seen.lock().unwrap().clone();
    assert_eq!(
        seen,
        [
            "web-1 container=fork&stdin=true&stdout=true&tty=true",
            r#"resize {"Width":80,"Height":24}"#,
            r#"resize {"Width":132,"Height":50}"#,
        ]
    );
}

#[test]
fn the_stand_in_decodes_queries() {
    assert_eq!(decode("a%20b+c"), "a b c");
    assert!(Path::new("/usr/bin/busybox").exists(), "busybox-static is needed by these tests");
}
