//! Helpers shared by the hardening test files (issue 7): raw API calls that bypass the CLI's own
//! checks, the documented error shape, and host "markers" that prove no host file was read or
//! written. Each test binary uses only part of this module.
#![allow(dead_code)]

use std::path::{Path, PathBuf};

use forkr_tests::Server;
use reqwest::Method;
use reqwest::blocking::{Client, RequestBuilder};
use serde_json::Value;

/// A finished HTTP exchange.
#[derive(Debug)]
pub struct Resp {
    pub status: u16,
    pub content_type: String,
    pub body: Vec<u8>,
}

impl Resp {
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.body).unwrap_or(Value::Null)
    }

    /// Asserts the documented error body `{"error":{"code","message"}}` with `status` and `code`,
    /// and returns the message.
    #[track_caller]
    pub fn error(&self, status: u16, code: &str) -> String {
        assert_eq!(self.status, status, "expected {status} {code}, got {} {}", self.status, self.text());
        assert_error_shape(self);
        assert_eq!(self.json()["error"]["code"], code, "{}", self.text());
        self.json()["error"]["message"].as_str().unwrap_or_default().to_owned()
    }
}

/// Asserts that `r` is an error in the documented shape: JSON content type, exactly one top-level
/// key `error` holding exactly a non-empty string `code` and a non-empty string `message`.
#[track_caller]
pub fn assert_error_shape(r: &Resp) {
    assert!(r.status >= 400, "not an error: {} {}", r.status, r.text());
    assert!(
        r.content_type.starts_with("application/json"),
        "content type {:?}: {}",
        r.content_type,
        r.text()
    );
    let v = r.json();
    let obj = v.as_object().unwrap_or_else(|| panic!("error body is not a JSON object: {}", r.text()));
    assert_eq!(obj.len(), 1, "{}", r.text());
    let e = v["error"].as_object().unwrap_or_else(|| panic!("no error object: {}", r.text()));
    assert_eq!(e.len(), 2, "{}", r.text());
    for key in ["code", "message"] {
        let s = e.get(key).and_then(Value::as_str).unwrap_or_default();
        assert!(!s.is_empty(), "error.{key} missing or empty: {}", r.text());
    }
}

/// A request to `path` on `s` with its admin token.
pub fn req(s: &Server, method: Method, path: &str) -> RequestBuilder {
    req_with(s, method, path, &s.token)
}

/// A request to `path` on `s` with `token`.
pub fn req_with(s: &Server, method: Method, path: &str, token: &str) -> RequestBuilder {
    client().request(method, format!("{}{path}", s.url)).bearer_auth(token)
}

pub fn client() -> Client {
    Client::builder().timeout(std::time::Duration::from_secs(120)).build().expect("HTTP client")
}

/// Sends and collects the whole answer.
#[track_caller]
pub fn send(rb: RequestBuilder) -> Resp {
    let r = rb.send().expect("request failed to complete");
    let status = r.status().as_u16();
    let content_type = r
        .headers()
        .get(reqwest::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_owned();
    let body = r.bytes().map(|b| b.to_vec()).unwrap_or_default();
    Resp { status, content_type, body }
}

/// `GET …/files?path=` of box `name` in `default`, the path passed verbatim (no CLI in between).
pub fn get_file(s: &Server, name: &str, path: &str) -> Resp {
    send(req(s, Method::GET, &format!("/v1/projects/default/boxes/{name}/files")).query(&[("path", path)]))
}

/// `PUT …/files?path=[&mkdirs=true]` of box `name` in `default`.
pub fn put_file(s: &Server, name: &str, path: &str, data: &[u8], mkdirs: bool) -> Resp {
    let mkdirs = if mkdirs { "true" } else { "false" };
    send(
        req(s, Method::PUT, &format!("/v1/projects/default/boxes/{name}/files"))
            .query(&[("path", path), ("mkdirs", mkdirs)])
            .body(data.to_vec()),
    )
}

/// `DELETE …/files?path=` of box `name` in `default`.
pub fn delete_file(s: &Server, name: &str, path: &str) -> Resp {
    send(req(s, Method::DELETE, &format!("/v1/projects/default/boxes/{name}/files")).query(&[("path", path)]))
}

/// Runs `script` with `sh -c` in box `name` and returns its stdout (asserting success).
#[track_caller]
pub fn sh(s: &Server, name: &str, script: &str) -> String {
    s.ok(&["exec", name, "--", "sh", "-c", script])
}

/// Files on the host, outside the server's data dir, that attacks aim at. A test proves that no
/// attack read them (the secret never shows up in any answer) or wrote them (the directory holds
/// exactly what it held, byte for byte, and no `pwned` file appeared anywhere we look).
pub struct Markers {
    dir: tempfile::TempDir,
    /// The content of `secret`; unique per run so it cannot appear by accident.
    pub secret: String,
    /// A unique word for files an attack tries to create (`pwned-<tag>`).
    pub tag: String,
}

pub const VICTIM: &str = "untouched host file\n";

impl Markers {
    pub fn new() -> Markers {
        let dir = tempfile::Builder::new().prefix("forkr-marker-").tempdir_in("/tmp").expect("marker dir");
        let n = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or(0);
        let m = Markers { dir, secret: format!("HOST-SECRET-{n:x}"), tag: format!("{n:x}") };
        std::fs::write(m.secret_path(), &m.secret).expect("write secret");
        std::fs::write(m.victim_path(), VICTIM).expect("write victim");
        m
    }

    /// The marker directory as an absolute host path string, e.g. `/tmp/forkr-marker-abc`.
    pub fn dir(&self) -> &str {
        self.dir.path().to_str().expect("utf-8 temp path")
    }

    pub fn secret_path(&self) -> PathBuf {
        self.dir.path().join("secret")
    }

    pub fn victim_path(&self) -> PathBuf {
        self.dir.path().join("victim")
    }

    /// The name attack writes use for new files.
    pub fn pwned(&self) -> String {
        format!("pwned-{}", self.tag)
    }

    /// Panics if `text` contains the host secret.
    #[track_caller]
    pub fn assert_not_leaked(&self, what: &str, text: &[u8]) {
        let hay = String::from_utf8_lossy(text);
        assert!(!hay.contains(&self.secret), "{what}: the host secret leaked: {hay}");
    }

    /// The marker directory holds exactly `secret` and `victim`, unchanged, and no `pwned-<tag>`
    /// file exists in the places a write that escaped would land.
    #[track_caller]
    pub fn assert_untouched(&self, extra_dirs: &[&Path]) {
        let mut names: Vec<String> = std::fs::read_dir(self.dir.path())
            .expect("read marker dir")
            .filter_map(|e| e.ok())
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .collect();
        names.sort();
        assert_eq!(names, ["secret", "victim"], "files appeared in the host marker dir");
        assert_eq!(std::fs::read_to_string(self.secret_path()).expect("secret"), self.secret);
        assert_eq!(std::fs::read_to_string(self.victim_path()).expect("victim"), VICTIM);
        let pwned = self.pwned();
        for d in [Path::new("/"), Path::new("/tmp"), Path::new("/etc"), Path::new("/root")]
            .iter()
            .chain(extra_dirs)
        {
            assert!(!d.join(&pwned).exists(), "an attack wrote {}", d.join(&pwned).display());
        }
    }
}

/// Counts attacks so a test can report (and pin) how many it tried.
#[derive(Default)]
pub struct Tally {
    pub count: usize,
}

impl Tally {
    pub fn one(&mut self) {
        self.count += 1;
    }

    /// Prints the count and asserts it did not silently shrink below `at_least`.
    #[track_caller]
    pub fn report(&self, what: &str, at_least: usize) {
        eprintln!("{what}: {} attacks tried, all refused", self.count);
        assert!(
            self.count >= at_least,
            "{what}: only {} attacks ran, expected at least {at_least}",
            self.count
        );
    }
}
