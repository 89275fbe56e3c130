//! `forkr-bench`: starts a real server on a fresh data dir and prints a table of median and p95
//! timings for the operations the issues set targets for. Speed targets live here, never in tests.
//!
//! Usage: `cargo build --release --bins && target/release/forkr-bench [--quick] [--only SECTION]`
//! (sections: boxes, snapshots, workspace, proxy).

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
    let only = std::env::args().skip_while(|a| a != "--only").nth(1);
    let section = |name: &str| only.as_deref().is_none_or(|o| o == name);
    let n = |full: usize| if quick { full.div_ceil(5).max(3) } else { full };
    let s = Server::start_with_image("24G");
    let api = Api::new(&s);
    let mut t = Table::default();

    if section("boxes") {
        boxes_bench(&s, &api, &mut t, &n);
    }
    if section("snapshots") {
        snapshot_bench(&s, &api, &mut t, &n);
    }
    if section("workspace") {
        workspace_bench(&s, &mut t, &n);
    }
    if section("proxy") {
        proxy_bench(&s, &api, &mut t, quick);
    }

    t.print();
}

/// Issue 2: create, exec through the API and the CLI, create + first exec against `runc run`.
fn boxes_bench(s: &Server, api: &Api, t: &mut Table, n: &dyn Fn(usize) -> usize) {
    let boxes = "/v1/projects/bench/boxes";
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

    match runc_bench(s, n(30)) {
        Some(samples) => {
            let theirs = t.add("runc run /bin/true (same root filesystem)", samples, "reference");
            println!("create+first exec is {:.1}x faster than runc run\n", theirs / ours);
        }
        None => eprintln!("runc not installed: skipping the runc comparison (apt-get install runc)"),
    }
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
    let roots = [("r200m", 200, "200 MB"), ("r2g", 2048, "2 GB")];
    for (name, mb, _) in roots {
        api.post(boxes, json!({"name": name}));
        // 1 MiB files, so that the bigger root also has ten times the metadata.
        sh(
            name,
            &format!(
                "mkdir -p /data && i=0; while [ $i -lt {mb} ]; do dd if=/dev/urandom of=/data/f$i bs=1M count=1 2>/dev/null; i=$((i+1)); done; sync"
            ),
        );
    }
    // Alternating between the two roots, so that both are measured under the same conditions
    // (writeback of the data just written, other activity on the machine).
    let mut samples = [Vec::new(), Vec::new()];
    for i in 0..n(30) {
        for (k, (name, _, _)) in roots.iter().enumerate() {
            let (d, _) =
                time(|| api.post(&format!("{boxes}/{name}/snapshots"), json!({"name": format!("s{i}")})));
            samples[k].push(d);
        }
    }
    for ((_, _, label), samples) in roots.iter().zip(samples) {
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
/// to the box (busybox httpd, a 1 KiB page, 4 client threads), same run; nginx in front of the
/// same kind of box, when installed, as the reference. Two client behaviours: a new connection
/// per request, and keep-alive clients (browsers, wrk) that reuse their connection.
fn proxy_bench(s: &Server, api: &Api, t: &mut Table, quick: bool) {
    let window = Duration::from_millis(if quick { 700 } else { 2000 });
    for keep_alive in [false, true] {
        let mode = if keep_alive { "keep-alive clients" } else { "a new connection per request" };
        // Each proxy, and each phase, gets a box of its own: a proxy that closes its side of a
        // box connection first holds a local port in TIME_WAIT for 60 s, and the host has ~28k
        // ports per box address. Sharing one box would measure port exhaustion, not the proxy.
        let tag = if keep_alive { "ka" } else { "nc" };
        let ours = web_box(api, &format!("{tag}-forkr"));
        let theirs = web_box(api, &format!("{tag}-nginx"));
        let nginx = Nginx::start(&theirs.1);
        if nginx.is_none() {
            eprintln!("nginx not installed: skipping the reference proxy (apt-get install nginx-light)");
        }
        let mut targets = vec![
            ("straight to the box", ours.1.clone(), ours.0.clone()),
            ("through the publish proxy", s.proxy_http.clone(), ours.0.clone()),
        ];
        if let Some(n) = &nginx {
            targets.push(("through nginx (reference)", n.addr.clone(), theirs.0.clone()));
        }
        for (_, addr, host) in &targets {
            let ready = (0..200).any(|_| {
                let ok = get_once(addr, host);
                if !ok {
                    std::thread::sleep(Duration::from_millis(10));
                }
                ok
            });
            assert!(ready, "{addr} ({host}) never answered");
        }
        let round = |addr: &str, host: &str| -> (f64, Vec<Duration>) {
            let start = Instant::now();
            let per_thread: Vec<Vec<Duration>> = std::thread::scope(|scope| {
                let handles: Vec<_> = (0..4)
                    .map(|_| {
                        scope.spawn(|| {
                            let mut lat = Vec::new();
                            let mut conn = None;
                            while start.elapsed() < window {
                                let (d, ok) = time(|| {
                                    if keep_alive {
                                        keep_alive_get(&mut conn, addr, host)
                                    } else {
                                        get_once(addr, host)
                                    }
                                });
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
        let mut best: Vec<(f64, Vec<Duration>)> = vec![(0.0, Vec::new()); targets.len()];
        for _ in 0..if quick { 2 } else { 3 } {
            for (i, (_, addr, host)) in targets.iter().enumerate() {
                let r = round(addr, host);
                if r.0 > best[i].0 {
                    best[i] = r;
                }
            }
        }
        for ((what, _, _), (rate, lat)) in targets.iter().zip(&best) {
            t.add(&format!("GET 1 KiB page {what} ({mode})"), lat.clone(), &format!("{rate:.0} req/s"));
        }
        println!(
            "publish proxy, {mode}: {:.0} req/s vs {:.0} req/s direct: ratio {:.2} (target >= 0.7)",
            best[1].0,
            best[0].0,
            best[1].0 / best[0].0
        );
        if best.len() > 2 {
            println!("  nginx as the proxy, same run: ratio {:.2}", best[2].0 / best[0].0);
        }
        println!();
    }
}

/// A published box serving a 1 KiB page with busybox httpd on port 8080: (its host, its
/// address on the bridge).
fn web_box(api: &Api, name: &str) -> (String, String) {
    let boxes = "/v1/projects/bench/boxes";
    api.post(boxes, json!({"name": name}));
    let sh = |cmd: &str| api.post(&format!("{boxes}/{name}/exec"), json!({"cmd": ["sh", "-c", cmd]}));
    sh("mkdir -p /srv/www && head -c 1024 /dev/zero | tr '\\0' x > /srv/www/index.html");
    api.post(
        &format!("{boxes}/{name}/exec"),
        json!({"cmd": ["httpd", "-f", "-p", "8080", "-h", "/srv/www"], "bg": true}),
    );
    let published = api.post(&format!("{boxes}/{name}/publish"), json!({"subdomain": name}));
    let host = published["host"].as_str().map_or_else(|| format!("{name}.bench.localhost"), str::to_owned);
    let out = sh("ip -o -4 addr show eth0");
    let line = out["stdout"].as_str().unwrap_or_default().to_owned();
    let ip = line.split_whitespace().skip_while(|w| *w != "inet").nth(1).and_then(|a| a.split('/').next());
    (host, format!("{}:8080", ip.expect("the box has an address on the bridge")))
}

/// One `GET /index.html` on a new connection (`Connection: close`), read to the server's close.
fn get_once(addr: &str, host: &str) -> bool {
    use std::io::{Read, Write};
    let Ok(mut c) = std::net::TcpStream::connect(addr) else { return false };
    let request = format!("GET /index.html HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n");
    let mut resp = Vec::with_capacity(2048);
    if c.write_all(request.as_bytes()).is_err() || c.read_to_end(&mut resp).is_err() {
        return false;
    }
    resp.starts_with(b"HTTP/1.1 200") || resp.starts_with(b"HTTP/1.0 200")
}

/// nginx as a reference reverse proxy in front of the same box, when nginx is installed: the
/// same client, backend and machine, so its ratio tells what an established proxy achieves here.
struct Nginx {
    addr: String,
    child: std::process::Child,
    _dir: tempfile::TempDir,
}

impl Nginx {
    fn start(backend: &str) -> Option<Nginx> {
        let dir = tempfile::tempdir().ok()?;
        let port = std::net::TcpListener::bind("127.0.0.1:0").ok()?.local_addr().ok()?.port();
        let d = dir.path().display();
        let conf = format!(
            "worker_processes auto; pid {d}/nginx.pid; error_log {d}/error.log;
events {{ worker_connections 1024; }}
http {{
  access_log off; client_body_temp_path {d}; proxy_temp_path {d};
  fastcgi_temp_path {d}; uwsgi_temp_path {d}; scgi_temp_path {d};
  server {{
    listen 127.0.0.1:{port};
    location / {{ proxy_pass http://{backend}; proxy_set_header Host $host; }}
  }}
}}
"
        );
        std::fs::write(dir.path().join("nginx.conf"), conf).ok()?;
        let child = Command::new("nginx")
            .arg("-c")
            .arg(dir.path().join("nginx.conf"))
            .args(["-g", "daemon off;"])
            .stderr(std::process::Stdio::null())
            .spawn()
            .ok()?;
        let addr = format!("127.0.0.1:{port}");
        for _ in 0..100 {
            if std::net::TcpStream::connect(&addr).is_ok() {
                return Some(Nginx { addr, child, _dir: dir });
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        None
    }
}

impl Drop for Nginx {
    fn drop(&mut self) {
        // SIGTERM, not SIGKILL: the master then stops its workers (a killed master orphans them).
        let _ = nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(self.child.id() as i32),
            nix::sys::signal::Signal::SIGTERM,
        );
        let _ = self.child.wait();
    }
}

/// One `GET /index.html` on a kept-alive connection (opened when there is none); the connection
/// is dropped when the server says it closes it. Responses are read by their Content-Length.
fn keep_alive_get(
    conn: &mut Option<std::io::BufReader<std::net::TcpStream>>,
    addr: &str,
    host: &str,
) -> bool {
    use std::io::{BufRead, Read, Write};
    if conn.is_none() {
        let Ok(c) = std::net::TcpStream::connect(addr) else { return false };
        let _ = c.set_nodelay(true);
        *conn = Some(std::io::BufReader::new(c));
    }
    let Some(c) = conn.as_mut() else { return false };
    let request = format!("GET /index.html HTTP/1.1\r\nHost: {host}\r\n\r\n");
    if c.get_mut().write_all(request.as_bytes()).is_err() {
        *conn = None;
        return false;
    }
    let (mut status_ok, mut length, mut close, mut line) = (false, None, false, String::new());
    loop {
        line.clear();
        if c.read_line(&mut line).unwrap_or(0) == 0 {
            *conn = None;
            return false;
        }
        let l = line.trim_end().to_ascii_lowercase();
        if l.is_empty() {
            break;
        }
        if l.starts_with("http/1.") {
            status_ok = l.split_whitespace().nth(1) == Some("200");
        } else if let Some(v) = l.strip_prefix("content-length:") {
            length = v.trim().parse::<usize>().ok();
        } else if l.starts_with("connection:") && l.contains("close") {
            close = true;
        }
    }
    let mut body = vec![0; length.unwrap_or(0)];
    let read = c.read_exact(&mut body).is_ok();
    if close || length.is_none() {
        // Wait for the server's close before dropping ours, so that the server side holds the
        // TIME_WAIT: a client that closes first runs out of local ports within seconds here.
        let mut rest = Vec::new();
        let _ = c.read_to_end(&mut rest);
        *conn = None;
    }
    status_ok && read && length.is_some()
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
