//! Issue 7, item 3: the API's edge. Project tokens, limits that answer 413, names validated before
//! any handler runs, and every error in the documented shape `{"error":{"code","message"}}`.

mod support;

use std::io::Read;
use std::process::Command;
use std::time::{Duration, Instant};

use forkr_tests::{Server, bin};
use reqwest::Method;
use serde_json::{Value, json};
use support::{Resp, Tally, assert_error_shape, req, req_with, send};

/// `forkr-server token <args> --data-dir <data>` → stdout.
fn token_cmd(s: &Server, args: &[&str]) -> String {
    let out = Command::new(bin("forkr-server"))
        .args(["token"])
        .args(args)
        .arg("--data-dir")
        .arg(s.data.path())
        .output()
        .unwrap();
    assert!(out.status.success(), "token {args:?}: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8(out.stdout).unwrap()
}

fn with(s: &Server, token: &str, method: Method, path: &str) -> Resp {
    send(req_with(s, method, path, token))
}

#[test]
fn project_tokens_reach_only_their_project() {
    let s = Server::start();
    let mut tally = Tally::default();
    s.ok(&["create", "secret-box", "-p", "beta"]);
    let token = token_cmd(&s, &["create", "--project", "alpha"]).trim().to_owned();
    assert!(token.starts_with("fkt_"), "{token}");

    // Stored hashed: the token is nowhere in the database files.
    for f in ["forkr.db", "forkr.db-wal"] {
        let bytes = std::fs::read(s.data.path().join(f)).unwrap_or_default();
        assert!(!String::from_utf8_lossy(&bytes).contains(&token), "{f} holds the token in clear");
    }
    let listed = token_cmd(&s, &["list"]);
    assert!(listed.contains(" alpha ") && !listed.contains(&token), "{listed}");

    // Its own project: the whole box API works, through the real CLI too.
    let r =
        send(req_with(&s, Method::POST, "/v1/projects/alpha/boxes", &token).json(&json!({"name": "mine"})));
    assert_eq!(r.status, 201, "{}", r.text());
    let out = s
        .cmd(&["exec", "-p", "alpha", "mine", "--", "echo", "hi"])
        .env("FORKR_TOKEN", &token)
        .output()
        .unwrap();
    assert_eq!(String::from_utf8_lossy(&out.stdout), "hi\n", "{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(with(&s, &token, Method::GET, "/v1/projects/alpha/state").status, 200);
    // Global reads are allowed (boxes are made from bases).
    assert_eq!(with(&s, &token, Method::GET, "/v1/bases").status, 200);
    assert_eq!(with(&s, &token, Method::GET, "/v1/bases/box-base").status, 200);

    // Another project: 404 for everything, whether the object exists or not.
    for (method, path) in [
        (Method::GET, "/v1/projects/beta/boxes"),
        (Method::GET, "/v1/projects/beta/boxes/secret-box"),
        (Method::GET, "/v1/projects/beta/boxes/no-such-box"),
        (Method::DELETE, "/v1/projects/beta/boxes/secret-box?force=true"),
        (Method::POST, "/v1/projects/beta/boxes/secret-box/stop"),
        (Method::GET, "/v1/projects/beta/boxes/secret-box/files?path=/etc/passwd"),
        (Method::GET, "/v1/projects/beta/boxes/secret-box/snapshots"),
        (Method::GET, "/v1/projects/beta/volumes"),
        (Method::GET, "/v1/projects/beta/state"),
        (Method::GET, "/v1/projects/gamma/boxes"),
    ] {
        let r = with(&s, &token, method.clone(), path);
        let msg = r.error(404, "not_found");
        assert!(!msg.contains("secret-box"), "{method} {path}: {msg}");
        tally.one();
    }
    for (path, body) in [
        ("/v1/projects/beta/boxes", json!({"name": "intruder"})),
        ("/v1/projects/beta/boxes/secret-box/exec", json!({"cmd": ["id"]})),
        ("/v1/projects/beta/lock", json!({"holder": "x"})),
    ] {
        send(req_with(&s, Method::POST, path, &token).json(&body)).error(404, "not_found");
        tally.one();
    }
    // The WebSocket exec of another project is refused before the upgrade.
    let ws = tungstenite::client::connect(
        tungstenite::http::Request::builder()
            .uri(format!("ws://{}/v1/projects/beta/boxes/secret-box/exec/ws", s.addr))
            .header("Host", &s.addr)
            .header("Authorization", format!("Bearer {token}"))
            .header("Connection", "Upgrade")
            .header("Upgrade", "websocket")
            .header("Sec-WebSocket-Version", "13")
            .header("Sec-WebSocket-Key", tungstenite::handshake::client::generate_key())
            .body(())
            .unwrap(),
    );
    match ws {
        Err(tungstenite::Error::Http(resp)) => assert_eq!(resp.status().as_u16(), 404),
        other => panic!("WebSocket to another project: {:?}", other.map(|_| ())),
    }
    tally.one();
    assert_eq!(s.show("beta.secret-box")["status"], "running", "the other project's box was touched");

    // Global mutations: 403.
    let tarball = std::fs::read(forkr_tests::tiny_base_tarball(s.work.path())).unwrap();
    for r in [
        send(req_with(&s, Method::POST, "/v1/bases/mine/import", &token).body(tarball)),
        send(req_with(&s, Method::POST, "/v1/bases/mine/build", &token).json(&json!({"script": "true"}))),
        send(
            req_with(&s, Method::POST, "/v1/bases/mine/save", &token)
                .json(&json!({"project": "alpha", "box": "mine"})),
        ),
        with(&s, &token, Method::DELETE, "/v1/bases/box-base?force=true"),
    ] {
        let msg = r.error(403, "forbidden");
        assert!(msg.contains("limited to project \"alpha\""), "{msg}");
        tally.one();
    }
    let out = s.cmd(&["base", "delete", "box-base", "--force"]).env("FORKR_TOKEN", &token).output().unwrap();
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("limited to project"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(s.ok(&["base", "list"]).contains("box-base"));

    // The admin token keeps full access; wrong and revoked tokens get 401.
    assert_eq!(send(req(&s, Method::GET, "/v1/projects/beta/boxes")).status, 200);
    with(&s, &format!("{token}x"), Method::GET, "/v1/projects/alpha/boxes").error(401, "unauthorized");
    let id = &token[4..12];
    assert_eq!(token_cmd(&s, &["revoke", id]), format!("{id}: revoked\n"));
    with(&s, &token, Method::GET, "/v1/projects/alpha/boxes").error(401, "unauthorized");
    tally.report("cross-project requests", 17);
}

/// A WebSocket to the exec endpoint of box `name` with the admin token.
fn ws_exec(
    s: &Server,
    name: &str,
) -> tungstenite::WebSocket<tungstenite::stream::MaybeTlsStream<std::net::TcpStream>> {
    let request = tungstenite::http::Request::builder()
        .uri(format!("ws://{}/v1/projects/default/boxes/{name}/exec/ws", s.addr))
        .header("Host", &s.addr)
        .header("Authorization", format!("Bearer {}", s.token))
        .header("Connection", "Upgrade")
        .header("Upgrade", "websocket")
        .header("Sec-WebSocket-Version", "13")
        .header("Sec-WebSocket-Key", tungstenite::handshake::client::generate_key())
        .body(())
        .unwrap();
    let (ws, _) = tungstenite::client::connect(request).expect("WebSocket handshake");
    ws
}

#[test]
fn limits_answer_413_in_the_documented_shape() {
    let s = Server::start();
    s.ok(&["create", "lim"]);

    // JSON bodies over 1 MiB.
    let big = "x".repeat(2 << 20);
    let r =
        send(req(&s, Method::POST, "/v1/projects/default/boxes").json(&json!({"name": "b", "tags": [big]})));
    r.error(413, "too_large");

    // File uploads over the 512 MiB limit, streamed (no client buffer) with a declared length.
    let n = (512u64 << 20) + 1;
    let body = reqwest::blocking::Body::sized(std::io::repeat(b'a').take(n), n);
    let r = send(
        req(&s, Method::PUT, "/v1/projects/default/boxes/lim/files").query(&[("path", "/big")]).body(body),
    );
    r.error(413, "too_large");
    // … and without a declared length (chunked), cut off by the server.
    let body = reqwest::blocking::Body::new(std::io::repeat(b'a').take(n));
    let r = send(
        req(&s, Method::PUT, "/v1/projects/default/boxes/lim/files").query(&[("path", "/big")]).body(body),
    );
    r.error(413, "too_large");
    assert_eq!(
        send(req(&s, Method::GET, "/v1/projects/default/boxes/lim/files").query(&[("path", "/big")])).status,
        404
    );

    // Buffered exec output over 16 MiB: a clear 413, quickly, also when stderr stays open (the
    // command never ends by itself).
    for script in ["yes", "yes 1>&2", "head -c 20000000 /dev/zero; sleep 600"] {
        let t = Instant::now();
        let r = send(
            req(&s, Method::POST, "/v1/projects/default/boxes/lim/exec")
                .json(&json!({"cmd": ["sh", "-c", script]})),
        );
        r.error(413, "output_too_large");
        assert!(t.elapsed() < Duration::from_secs(30), "{script}: took {:?}", t.elapsed());
    }
    // Nothing of those commands keeps running.
    let ps = s.ok(&["exec", "lim", "--", "ps", "-o", "args"]);
    assert!(!ps.contains("yes") && !ps.contains("head -c"), "{ps}");

    // A WebSocket message over 1 MiB: an error frame `too_large`, then the socket closes, and the
    // process it was feeding is gone.
    let mut ws = ws_exec(&s, "lim");
    ws.send(tungstenite::Message::Text(
        json!({"cmd": ["sh", "-c", "echo $$ > /ws.pid; cat > /dev/null"]}).to_string().into(),
    ))
    .unwrap();
    std::thread::sleep(Duration::from_millis(300));
    let mut frame = vec![0u8];
    frame.resize((1 << 20) + 10, b'z');
    let _ = ws.send(tungstenite::Message::Binary(frame.into()));
    let mut error = None;
    let deadline = Instant::now() + Duration::from_secs(10);
    while Instant::now() < deadline {
        match ws.read() {
            Ok(tungstenite::Message::Text(t)) => error = Some(t.to_string()),
            Ok(tungstenite::Message::Close(_)) | Err(_) => break,
            Ok(_) => {}
        }
    }
    let error = error.expect("no error frame before the close");
    let v: Value = serde_json::from_str(&error).unwrap();
    assert_eq!(v["error"]["code"], "too_large", "{error}");
    let pid = s.ok(&["exec", "lim", "--", "cat", "/ws.pid"]);
    let out = s.run(&["exec", "lim", "--", "kill", "-0", pid.trim()]);
    assert!(!out.status.success(), "the process of the closed WebSocket still runs");
}

#[test]
fn every_error_has_the_documented_shape() {
    let s = Server::start();
    s.ok(&["create", "shape"]);
    let mut tally = Tally::default();
    let cases: Vec<(Resp, u16, &str)> = vec![
        (send(support::client().get(format!("{}/nope", s.url))), 404, "not_found"),
        (send(req(&s, Method::GET, "/v1/projects/default/boxes/shape/nope")), 404, "not_found"),
        (send(req(&s, Method::PUT, "/v1/bases")), 405, "method_not_allowed"),
        (send(req(&s, Method::DELETE, "/v1/projects/default/boxes/shape/exec")), 405, "method_not_allowed"),
        (send(support::client().post(format!("{}/healthz", s.url))), 405, "method_not_allowed"),
        (send(support::client().get(format!("{}/v1/bases", s.url))), 401, "unauthorized"),
        (
            send(support::client().get(format!("{}/v1/bases", s.url)).header("Authorization", "Basic eDp5")),
            401,
            "unauthorized",
        ),
        (send(req_with(&s, Method::GET, "/v1/bases", "wrong")), 401, "unauthorized"),
        (send(req(&s, Method::POST, "/v1/projects/default/boxes").body("{not json")), 400, "invalid_json"),
        (
            send(
                req(&s, Method::POST, "/v1/projects/default/boxes")
                    .header("content-type", "application/json")
                    .body("{not json"),
            ),
            400,
            "invalid_json",
        ),
        (
            send(req(&s, Method::POST, "/v1/projects/default/boxes").json(&json!({"name": 7}))),
            400,
            "invalid_json",
        ),
        (send(req(&s, Method::POST, "/v1/projects/default/boxes").json(&json!([]))), 400, "invalid_json"),
        (
            send(
                req(&s, Method::POST, "/v1/projects/default/boxes")
                    .json(&json!({"name": "ok", "port": 70000})),
            ),
            400,
            "invalid_json",
        ),
        (
            send(req(&s, Method::POST, "/v1/projects/default/boxes").json(&json!({"name": "shape"}))),
            409,
            "conflict",
        ),
        (send(req(&s, Method::GET, "/v1/projects/default/boxes/shape/files")), 400, "invalid_query"),
        (
            send(req(&s, Method::GET, "/v1/projects/default/boxes/shape/files?path=relative")),
            400,
            "invalid_path",
        ),
        (
            send(req(&s, Method::PUT, "/v1/projects/default/boxes/shape/files?path=/x&mode=99999").body("x")),
            400,
            "invalid_mode",
        ),
        (
            send(req(&s, Method::GET, "/v1/projects/default/boxes/shape/logs?pid=notanumber")),
            400,
            "invalid_query",
        ),
        (send(req(&s, Method::GET, "/v1/projects/default/boxes/%FF")), 400, "invalid_path"),
        (
            send(req(&s, Method::GET, "/v1/projects/default/boxes/shape/ports/99999/wait")),
            400,
            "invalid_path",
        ),
        (send(req(&s, Method::GET, "/v1/projects/default/boxes/ghost")), 404, "not_found"),
        (send(req(&s, Method::DELETE, "/v1/projects/default/boxes/shape")), 409, "fork_running"),
        (
            send(req(&s, Method::POST, "/v1/projects/default/boxes/shape/snapshots/nope/restore")),
            404,
            "not_found",
        ),
    ];
    for (r, status, code) in cases {
        r.error(status, code);
        tally.one();
    }
    tally.report("error-shape requests", 20);
}

/// The OpenAPI document's paths with their methods and parameters.
fn routes(s: &Server) -> Vec<(String, Vec<Method>)> {
    let doc: Value = send(support::client().get(format!("{}/v1/openapi.json", s.url))).json();
    let mut out = Vec::new();
    for (path, item) in doc["paths"].as_object().expect("paths") {
        let methods = item
            .as_object()
            .unwrap()
            .keys()
            .filter_map(|m| Method::from_bytes(m.to_uppercase().as_bytes()).ok())
            .collect();
        out.push((path.clone(), methods));
    }
    out
}

#[test]
fn names_are_validated_at_the_edge_of_every_route() {
    let s = Server::start();
    s.ok(&["create", "good"]);
    let mut tally = Tally::default();
    let long = |n: usize| "a".repeat(n);
    // Bad values per name kind. Dot segments are left out: HTTP clients normalise them away.
    let dns = ["UPPER", "under_score", "-dash", "dash-", "a.b", "x%2Fy", "a%00b", "%C3%A9", &long(64)]
        .map(String::from);
    let base = ["-dash", ".hidden", "x%2Fy", "a:b", "a%20b", &long(129)].map(String::from);
    let snapshot = ["x%2Fy", "a:b", "a%20b", "a%00b", &long(129)].map(String::from);
    let good = |param: &str| match param {
        "project" => "default",
        "name" | "volume" => "good",
        "snapshot" | "backup" => "v0",
        "id" => "0123abcd",
        "port" => "8080",
        _ => "x",
    };
    let routes = routes(&s);
    assert!(routes.len() >= 20, "the OpenAPI document lists only {} paths", routes.len());
    for (template, methods) in routes {
        let params: Vec<String> = template
            .split('/')
            .filter_map(|seg| seg.strip_prefix('{').and_then(|p| p.strip_suffix('}')))
            .map(str::to_owned)
            .collect();
        for target in &params {
            let bad: &[String] = match target.as_str() {
                "name" if template.starts_with("/v1/bases/") => &base,
                "project" | "name" | "volume" => &dns,
                "snapshot" | "backup" => &snapshot,
                _ => continue,
            };
            for b in bad {
                let mut path = template.clone();
                for p in &params {
                    let v = if p == target { b.as_str() } else { good(p) };
                    path = path.replace(&format!("{{{p}}}"), v);
                }
                for m in &methods {
                    let r = send(req(&s, m.clone(), &path).json(&json!({})));
                    assert_eq!(r.status, 400, "{m} {path} ({target}={b:?}): {}", r.text());
                    assert_eq!(r.json()["error"]["code"], "invalid_name", "{m} {path}: {}", r.text());
                    assert_error_shape(&r);
                    tally.one();
                }
            }
        }
    }
    tally.report("bad names at the edge", 300);
}
