//! `forkr-bench`: starts a real server on a fresh data dir and prints a table of median and p95
//! timings for the operations the issues set targets for. Speed targets live here, never in tests.
//!
//! Usage: `cargo build --release --bins && target/release/forkr-bench [--quick]`

use std::process::Command;
use std::time::{Duration, Instant};

use forkr_tests::Server;
use serde_json::{Value, json};

struct Api {
    http: reqwest::blocking::Client,
    url: String,
    token: String,
}

impl Api {
    fn new(s: &Server) -> Api {
        Api { http: reqwest::blocking::Client::new(), url: s.url.clone(), token: s.token.clone() }
    }
    fn call(&self, method: reqwest::Method, path: &str, body: Option<Value>) -> Value {
        let mut req = self.http.request(method, format!("{}{path}", self.url)).bearer_auth(&self.token);
        if let Some(b) = body {
            req = req.json(&b);
        }
        let resp = req.send().expect("request");
        let status = resp.status();
        let v: Value = resp.json().unwrap_or(Value::Null);
        assert!(status.is_success(), "{path}: {status} {v}");
        v
    }
    fn post(&self, path: &str, body: Value) -> Value {
        self.call(reqwest::Method::POST, path, Some(body))
    }
    fn delete(&self, path: &str) {
        self.call(reqwest::Method::DELETE, path, None);
    }
}

#[derive(Default)]
struct Table {
    rows: Vec<(String, usize, f64, f64, String)>,
}

impl Table {
    fn add(&mut self, name: &str, mut samples: Vec<Duration>, note: &str) -> f64 {
        samples.sort();
        let ms = |d: Duration| d.as_secs_f64() * 1000.0;
        let median = ms(samples[samples.len() / 2]);
        let p95 =
            ms(samples
                [((samples.len() as f64 * 0.95).ceil() as usize).saturating_sub(1).min(samples.len() - 1)]);
        self.rows.push((name.to_owned(), samples.len(), median, p95, note.to_owned()));
        eprintln!("  {name}: median {median:.2} ms");
        median
    }
    fn print(&self) {
        println!("| operation | n | median ms | p95 ms | note |");
        println!("|---|---:|---:|---:|---|");
        for (name, n, med, p95, note) in &self.rows {
            println!("| {name} | {n} | {med:.2} | {p95:.2} | {note} |");
        }
    }
}

fn time<T>(f: impl FnOnce() -> T) -> (Duration, T) {
    let t = Instant::now();
    let v = f();
    (t.elapsed(), v)
}

fn main() {
    let quick = std::env::args().any(|a| a == "--quick");
    let n = |full: usize| if quick { full.div_ceil(5).max(3) } else { full };
    let s = Server::start_with_image("24G");
    let api = Api::new(&s);
    let boxes = "/v1/projects/bench/boxes";
    let mut t = Table::default();

    // ---- issue 2: create, exec ----
    let mut create = Vec::new();
    for i in 0..n(30) {
        let (d, _) = time(|| api.post(boxes, json!({"name": format!("c{i}")})));
        create.push(d);
    }
    t.add("create box from base (API)", create, "target < 30 ms");
    for i in 0..n(30) {
        api.delete(&format!("{boxes}/c{i}?force=true"));
    }

    api.post(boxes, json!({"name": "hot"}));
    let mut exec = Vec::new();
    for _ in 0..n(200) {
        let (d, v) = time(|| api.post(&format!("{boxes}/hot/exec"), json!({"cmd": ["true"]})));
        assert_eq!(v["exit_code"], 0);
        exec.push(d);
    }
    t.add("exec `true` in running box (API)", exec, "target < 5 ms");

    let mut cli = Vec::new();
    for _ in 0..n(30) {
        let (d, out) = time(|| s.run(&["exec", "-p", "bench", "hot", "--", "true"]));
        assert!(out.status.success());
        cli.push(d);
    }
    t.add("exec `true` in running box (4kr CLI, WebSocket)", cli, "includes CLI process start");

    let mut first = Vec::new();
    for i in 0..n(30) {
        let (d, _) = time(|| {
            api.post(boxes, json!({"name": format!("f{i}")}));
            api.post(&format!("{boxes}/f{i}/exec"), json!({"cmd": ["true"]}))
        });
        first.push(d);
    }
    let ours = t.add("create + first exec (API)", first, "must beat runc run");
    for i in 0..n(30) {
        api.delete(&format!("{boxes}/f{i}?force=true"));
    }

    match runc_bench(&s, n(30)) {
        Some(samples) => {
            let theirs = t.add("runc run /bin/true (same root filesystem)", samples, "reference");
            println!("create+first exec is {:.1}x faster than runc run\n", theirs / ours);
        }
        None => eprintln!("runc not installed: skipping the runc comparison (apt-get install runc)"),
    }

    t.print();
}

/// `runc run` of `/bin/true` on the root filesystem of the `hot` box, or `None` without runc.
fn runc_bench(s: &Server, n: usize) -> Option<Vec<Duration>> {
    let runc = ["/usr/sbin/runc", "/usr/bin/runc"].into_iter().find(|p| std::path::Path::new(p).exists())?;
    let bundle = tempfile::tempdir().ok()?;
    let root = s.data.path().join("fs/roots/bench/hot");
    let st = Command::new(runc).arg("spec").current_dir(bundle.path()).status().ok()?;
    if !st.success() {
        return None;
    }
    let cfg_path = bundle.path().join("config.json");
    let mut cfg: Value = serde_json::from_str(&std::fs::read_to_string(&cfg_path).ok()?).ok()?;
    cfg["process"]["args"] = json!(["/bin/true"]);
    cfg["process"]["terminal"] = json!(false);
    cfg["root"] = json!({"path": root, "readonly": true});
    std::fs::write(&cfg_path, cfg.to_string()).ok()?;
    let mut samples = Vec::new();
    for i in 0..n {
        let id = format!("forkr-bench-{}-{i}", std::process::id());
        let (d, st) =
            time(|| Command::new(runc).args(["run", "--bundle"]).arg(bundle.path()).arg(&id).status());
        if !st.map(|s| s.success()).unwrap_or(false) {
            eprintln!("runc run failed; skipping the comparison");
            return None;
        }
        samples.push(d);
    }
    Some(samples)
}
