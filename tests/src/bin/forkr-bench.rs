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

    snapshot_bench(&s, &api, &mut t, &n);
    workspace_bench(&s, &mut t, &n);
    proxy_bench(&s, &api, &mut t, quick);

    t.print();
}

/// Issue 3: snapshot create on a 200 MB and a 2 GB root (O(1): both should cost the same),
/// restore, `diff status` with 10 changes among 100,000 files against `diff -rq` of the same two
/// trees, and fork of a running box.
fn snapshot_bench(s: &Server, api: &Api, t: &mut Table, n: &dyn Fn(usize) -> usize) {
    let boxes = "/v1/projects/snap/boxes";
    let sh = |name: &str, script: &str| {
        let v = api.post(&format!("{boxes}/{name}/exec"), json!({"cmd": ["sh", "-c", script]}));
        assert_eq!(v["exit_code"], 0, "{script}: {v}");
    };
    for (name, mb) in [("r200m", 200), ("r2g", 2048)] {
        api.post(boxes, json!({"name": name}));
        // 1 MiB files, so that the bigger root also has ten times the metadata.
        sh(
            name,
            &format!(
                "mkdir -p /data && i=0; while [ $i -lt {mb} ]; do dd if=/dev/urandom of=/data/f$i bs=1M count=1 2>/dev/null; i=$((i+1)); done; sync"
            ),
        );
        let mut samples = Vec::new();
        for i in 0..n(30) {
            let (d, _) =
                time(|| api.post(&format!("{boxes}/{name}/snapshots"), json!({"name": format!("s{i}")})));
            samples.push(d);
        }
        let label = if mb == 200 { "200 MB" } else { "2 GB" };
        t.add(&format!("snapshot create, {label} root"), samples, "target < 20 ms, same for both sizes");
    }

    let mut restore = Vec::new();
    for i in 0..n(10) {
        let (d, _) = time(|| api.post(&format!("{boxes}/r200m/snapshots/s{i}/restore"), json!({})));
        restore.push(d);
    }
    t.add("snapshot restore (200 MB root; box restarts)", restore, "stop + swap + start");

    api.post(boxes, json!({"name": "many"}));
    sh(
        "many",
        "mkdir -p /t && cd /t && for d in $(seq 0 99); do mkdir $d && (cd $d && seq 0 999 | xargs touch); done",
    );
    api.post(&format!("{boxes}/many/snapshots"), json!({"name": "base"}));
    sh("many", "for d in $(seq 0 9); do echo changed > /t/$d/$((d*7)); done");
    let mut ours = Vec::new();
    for _ in 0..n(20) {
        let (d, v) =
            time(|| api.call(reqwest::Method::GET, &format!("{boxes}/many/diff/status?against=base"), None));
        assert_eq!(v["changes"].as_array().map(Vec::len), Some(10), "{v}");
        ours.push(d);
    }
    let ours = t.add("diff status: 10 changes in 100,000 files", ours, "target < 100 ms");
    let fs = s.data.path().join("fs");
    let (live, snap) = (fs.join("roots/snap/many/t"), fs.join("checkpoints/snap/many/base/t"));
    let mut theirs = Vec::new();
    for _ in 0..n(5).min(5) {
        let (d, out) = time(|| Command::new("diff").arg("-rq").arg(&snap).arg(&live).output().expect("diff"));
        assert_eq!(out.stdout.iter().filter(|&&b| b == b'\n').count(), 10);
        theirs.push(d);
    }
    let theirs = t.add("diff -rq of the same two trees", theirs, "reference");
    println!("diff status is {:.0}x faster than diff -rq\n", theirs / ours);

    let mut fork = Vec::new();
    for i in 0..n(20) {
        let (d, _) = time(|| api.post(boxes, json!({"name": format!("fork{i}"), "fork": "r200m"})));
        fork.push(d);
    }
    t.add("fork of a running box (200 MB root)", fork, "snapshot + create + start");
    for i in 0..n(20) {
        api.delete(&format!("{boxes}/fork{i}?force=true"));
    }
    for name in ["r200m", "r2g", "many"] {
        api.delete(&format!("{boxes}/{name}?force=true"));
    }
}

/// Issue 4, end to end through the real `4kr`: `plan` of a 500-box workspace against a server
/// holding those 500 boxes (nothing to do: the whole cost is reading the state, loading and
/// checking the files, and comparing), and `apply` of a workspace of 50 new boxes from one base.
fn workspace_bench(s: &Server, t: &mut Table, n: &dyn Fn(usize) -> usize) {
    let root = s.work.path().join("bench-workspace");
    std::fs::create_dir_all(root.join(".forkr")).expect("workspace folder");
    let boxes = |project: &str, count: usize| {
        let mut y = format!("project: {project}\nboxes:\n");
        for i in 0..count {
            y.push_str(&format!(
                "  b{i:03}:\n    port: 8080\n    env:\n      N: \"{i}\"\n    tags: [bench]\n"
            ));
        }
        y
    };
    let forkr = |args: &[&str]| {
        let out = s.cmd(args).current_dir(&root).output().expect("run 4kr");
        assert!(out.status.success(), "4kr {args:?}: {}", String::from_utf8_lossy(&out.stderr));
        out
    };
    std::fs::write(root.join(".forkr/forkr.yaml"), boxes("bench-plan", 500)).expect("write workspace");
    forkr(&["apply", "--auto-approve", "--parallelism", "16"]);
    let mut plan = Vec::new();
    for _ in 0..n(20) {
        let (d, out) = time(|| forkr(&["plan", "--detailed-exitcode"]));
        assert!(String::from_utf8_lossy(&out.stdout).starts_with("No changes."));
        plan.push(d);
    }
    t.add("plan: 500-box workspace vs 500 boxes (4kr plan)", plan, "target < 300 ms");
    forkr(&["destroy", "--auto-approve", "--parallelism", "16"]);

    let mut apply = Vec::new();
    for round in 0..n(5) {
        std::fs::write(root.join(".forkr/forkr.yaml"), boxes(&format!("bench-apply-{round}"), 50))
            .expect("write workspace");
        let (d, out) = time(|| forkr(&["apply", "--auto-approve"]));
        assert!(String::from_utf8_lossy(&out.stdout).contains("Apply complete! 50 added"));
        apply.push(d);
        forkr(&["destroy", "--auto-approve", "--parallelism", "16"]);
    }
    t.add("apply: 50 new boxes from one base (4kr apply)", apply, "target < 3 s");
}

/// Issue 5: requests per second through the publish proxy against the same requests sent straight
/// to the box's address on the bridge, in the same run (busybox httpd in the box; 4 client threads,
/// one connection per request both ways, since busybox httpd closes every connection). Rounds
/// alternate direct and proxied so that machine noise hits both; the best round of each counts.
fn proxy_bench(s: &Server, api: &Api, t: &mut Table, quick: bool) {
    use std::io::{Read, Write};
    let boxes = "/v1/projects/bench/boxes";
    api.post(boxes, json!({"name": "px"}));
    let sh = |cmd: &str| api.post(&format!("{boxes}/px/exec"), json!({"cmd": ["sh", "-c", cmd]}));
    sh("mkdir -p /srv/www && head -c 1024 /dev/zero | tr '\\0' x > /srv/www/index.html");
    api.post(
        &format!("{boxes}/px/exec"),
        json!({"cmd": ["httpd", "-f", "-p", "8080", "-h", "/srv/www"], "bg": true}),
    );
    api.post(&format!("{boxes}/px/publish"), json!({"subdomain": "px"}));
    let ip_out = sh("ip -o -4 addr show eth0");
    let ip_line = ip_out["stdout"].as_str().unwrap_or_default().to_owned();
    let ip = ip_line.split_whitespace().skip_while(|w| *w != "inet").nth(1).and_then(|a| a.split('/').next());
    let direct = format!("{}:8080", ip.expect("the box has an address on the bridge"));
    let proxied = s.proxy_http.clone();
    let request = b"GET /index.html HTTP/1.1\r\nHost: px.localhost\r\nConnection: close\r\n\r\n";
    let one = |addr: &str| -> bool {
        let Ok(mut c) = std::net::TcpStream::connect(addr) else { return false };
        let mut resp = Vec::with_capacity(2048);
        if c.write_all(request).is_err() || c.read_to_end(&mut resp).is_err() {
            return false;
        }
        resp.starts_with(b"HTTP/1.1 200") || resp.starts_with(b"HTTP/1.0 200")
    };
    for _ in 0..200 {
        if one(&direct) && one(&proxied) {
            break;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    let window = Duration::from_millis(if quick { 700 } else { 2000 });
    let round = |addr: &str| -> (f64, Vec<Duration>) {
        let start = Instant::now();
        let per_thread: Vec<Vec<Duration>> = std::thread::scope(|scope| {
            let handles: Vec<_> = (0..4)
                .map(|_| {
                    scope.spawn(|| {
                        let mut lat = Vec::new();
                        while start.elapsed() < window {
                            let (d, ok) = time(|| one(addr));
                            assert!(ok, "request to {addr} failed");
                            lat.push(d);
                        }
                        lat
                    })
                })
                .collect();
            handles.into_iter().map(|h| h.join().expect("client thread")).collect()
        });
        let lat: Vec<Duration> = per_thread.into_iter().flatten().collect();
        (lat.len() as f64 / start.elapsed().as_secs_f64(), lat)
    };
    let (mut best_direct, mut best_proxy) = ((0.0, Vec::new()), (0.0, Vec::new()));
    for _ in 0..if quick { 2 } else { 3 } {
        let d = round(&direct);
        if d.0 > best_direct.0 {
            best_direct = d;
        }
        let p = round(&proxied);
        if p.0 > best_proxy.0 {
            best_proxy = p;
        }
    }
    t.add(
        "GET 1 KiB page straight to the box (4 clients)",
        best_direct.1,
        &format!("{:.0} req/s", best_direct.0),
    );
    t.add(
        "GET 1 KiB page through the publish proxy (4 clients)",
        best_proxy.1,
        &format!("{:.0} req/s", best_proxy.0),
    );
    println!(
        "publish proxy: {:.0} req/s vs {:.0} req/s direct: ratio {:.2} (target >= 0.7)\n",
        best_proxy.0,
        best_direct.0,
        best_proxy.0 / best_direct.0
    );
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
