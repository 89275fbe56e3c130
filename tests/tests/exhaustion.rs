//! Issue 7, item 6: resource exhaustion. A box is hostile and greedy: it fills the btrfs
//! filesystem every box shares, fork-bombs, and writes gigabytes to stdout. The server must answer
//! with clear errors (507 `no_space`, 413 `output_too_large`), keep every earlier box, snapshot,
//! volume and file intact, contain the box within its limits, and keep its own memory bounded.

mod support;

use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use forkr_tests::Server;
use reqwest::Method;
use serde_json::json;
use support::{Resp, get_file, put_file, req, send, sh};

/// Creates `name` in `default` over the raw API.
fn create_box(s: &Server, name: &str) -> Resp {
    send(req(s, Method::POST, "/v1/projects/default/boxes").json(&json!({ "name": name })))
}

fn snapshot(s: &Server, name: &str, snap: &str) -> Resp {
    send(
        req(s, Method::POST, &format!("/v1/projects/default/boxes/{name}/snapshots"))
            .json(&json!({ "name": snap })),
    )
}

fn create_volume(s: &Server, name: &str) -> Resp {
    send(req(s, Method::POST, "/v1/projects/default/volumes").json(&json!({ "name": name })))
}

/// The names in a JSON list answer of `path`.
fn names(s: &Server, path: &str) -> Vec<String> {
    let r = send(req(s, Method::GET, path));
    assert_eq!(r.status, 200, "GET {path}: {}", r.text());
    r.json()
        .as_array()
        .map(|a| a.iter().filter_map(|v| v["name"].as_str().map(str::to_owned)).collect())
        .unwrap_or_default()
}

/// Asserts a 507 `no_space` whose message says the storage is full.
#[track_caller]
fn assert_no_space(what: &str, r: &Resp) {
    let msg = r.error(507, "no_space");
    assert!(msg.contains("no space left"), "{what}: unclear message {msg:?}");
}

/// Fills the filesystem from inside box `name`: one big file until the data space is gone, then
/// empty files with long names (they need metadata only: an inode, two directory entries and a
/// back reference) until creating a file fails too. `true >` is a shell builtin, so no process is
/// forked per file. Returns the number of small files.
fn fill(s: &Server, name: &str) -> u64 {
    sh(s, name, "dd if=/dev/zero of=/work/fill bs=1M 2>/dev/null; sync; true");
    let long = "n".repeat(200);
    let out = sh(
        s,
        name,
        &format!(
            "mkdir -p /work/m; n=0; fails=0; \
             while [ $fails -lt 20 ]; do \
               if true 2>/dev/null > /work/m/${{n}}{long}; then n=$((n+1)); else fails=$((fails+1)); sync; fi; \
             done; echo $n"
        ),
    );
    out.trim().parse().unwrap_or(0)
}

#[test]
fn a_full_filesystem_fails_operations_clearly_and_loses_nothing() {
    let s = Server::start_with_image("300M");
    let fs = s.data.path().join("fs");
    // Earlier state that must survive: a box with a file, a snapshot of it, a volume with a file.
    s.ok(&["volume", "create", "keepvol"]);
    s.ok(&["create", "keep", "--data", "keepvol=/data"]);
    sh(&s, "keep", "echo precious > /work/precious; echo vol-data > /data/file");
    s.ok(&["snapshot", "create", "keep", "before"]);
    sh(&s, "keep", "echo changed > /work/precious");
    s.ok(&["create", "filler"]);

    let t = Instant::now();
    let small = fill(&s, "filler");
    let out = s.run(&["exec", "filler", "--", "sh", "-c", "echo x > /work/one-more"]);
    assert!(!out.status.success(), "a write still succeeded after filling");
    assert!(String::from_utf8_lossy(&out.stderr).contains("No space left"), "{out:?}");
    // Snapshots and subvolumes need a little metadata, which btrfs may still find; take snapshots
    // until it cannot, so every operation below meets a truly full filesystem.
    let mut extra = Vec::new();
    let refused = loop {
        assert!(extra.len() < 1000, "1000 snapshots fitted into a full 300M filesystem");
        let name = format!("fill{}", extra.len());
        let r = snapshot(&s, "keep", &name);
        if r.status != 201 {
            break r;
        }
        extra.push(name);
    };
    eprintln!(
        "filled 300M with a big file, {small} empty files and {} snapshots in {:?}",
        extra.len(),
        t.elapsed()
    );
    assert_no_space("snapshot", &refused);

    // Every operation that needs space fails with 507 and leaves nothing half-made behind.
    assert_no_space("create", &create_box(&s, "late"));
    let err = s.fails(&["create", "late"]);
    assert!(err.starts_with("Error: ") && err.contains("no space left"), "{err}");
    assert_no_space(
        "fork",
        &send(
            req(&s, Method::POST, "/v1/projects/default/boxes")
                .json(&json!({"name": "late", "fork": "keep"})),
        ),
    );
    assert_no_space("snapshot", &snapshot(&s, "keep", "late"));
    let err = s.fails(&["snapshot", "create", "keep", "late"]);
    assert!(err.contains("no space left"), "{err}");
    assert_no_space("put", &put_file(&s, "keep", "/work/upload", &vec![b'u'; 4 << 20], false));
    let local = s.work.path().join("upload");
    std::fs::write(&local, vec![b'u'; 4 << 20]).unwrap();
    let err = s.fails(&["cp", local.to_str().unwrap(), "keep:/work/upload"]);
    assert!(err.contains("no space left"), "{err}");
    assert_no_space("volume create", &create_volume(&s, "latevol"));
    let err = s.fails(&["volume", "create", "latevol"]);
    assert!(err.contains("no space left"), "{err}");

    assert_eq!(names(&s, "/v1/projects/default/boxes"), ["filler", "keep"]);
    let mut snaps = names(&s, "/v1/projects/default/boxes/keep/snapshots");
    snaps.retain(|n| !extra.contains(n));
    assert_eq!(snaps, ["before"]);
    assert_eq!(names(&s, "/v1/projects/default/volumes"), ["keepvol"]);
    assert_eq!(get_file(&s, "keep", "/work/upload").status, 404, "a partial upload was left behind");
    for leftover in ["roots/default/late", "checkpoints/default/keep/late", "volumes/default/latevol"] {
        assert!(!fs.join(leftover).exists(), "{leftover} was left behind");
    }

    // Reading still works on a full filesystem, and so does freeing space through the API.
    assert_eq!(sh(&s, "keep", "cat /work/precious /data/file"), "changed\nvol-data\n");
    for name in &extra {
        let r = send(req(&s, Method::DELETE, &format!("/v1/projects/default/boxes/keep/snapshots/{name}")));
        assert!(
            r.status == 200 || r.status == 204,
            "deleting snapshot {name} on a full disk: {} {}",
            r.status,
            r.text()
        );
    }
    sh(&s, "filler", "rm -rf /work/fill /work/m; sync");

    // btrfs returns freed chunks in the background: allow it a little while.
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let r = create_box(&s, "late");
        if r.status == 201 {
            break;
        }
        assert_no_space("create after freeing", &r);
        assert!(Instant::now() < deadline, "no space came back after freeing: {}", r.text());
        std::thread::sleep(Duration::from_millis(500));
    }
    assert_eq!(sh(&s, "late", "echo alive"), "alive\n");
    assert_eq!(snapshot(&s, "keep", "after").status, 201);
    let data: Vec<u8> = (0..4u32 << 20).map(|i| (i % 251) as u8).collect();
    assert_eq!(put_file(&s, "keep", "/work/upload", &data, false).status, 200);
    assert_eq!(get_file(&s, "keep", "/work/upload").body, data);
    assert_eq!(create_volume(&s, "latevol").status, 201);

    // Everything made before the disk filled is intact and usable.
    assert_eq!(sh(&s, "filler", "echo still here"), "still here\n");
    s.ok(&["snapshot", "restore", "keep", "before"]);
    assert_eq!(sh(&s, "keep", "cat /work/precious /data/file"), "precious\nvol-data\n");
    s.ok(&["snapshot", "restore", "keep", "after"]);
    assert_eq!(sh(&s, "keep", "cat /work/precious"), "changed\n");
}

/// The pids cgroup directory of the box whose PID 1 is `pid` (cgroup v1 `pids` hierarchy).
fn pids_cgroup(pid: u64) -> PathBuf {
    let text = std::fs::read_to_string(format!("/proc/{pid}/cgroup")).expect("read /proc/PID/cgroup");
    let rel = text
        .lines()
        .find_map(|l| {
            let mut parts = l.splitn(3, ':');
            let (_, ctrls, path) = (parts.next()?, parts.next()?, parts.next()?);
            ctrls.split(',').any(|c| c == "pids").then(|| path.to_owned())
        })
        .expect("box PID 1 is in a pids cgroup");
    Path::new("/sys/fs/cgroup/pids").join(rel.trim_start_matches('/'))
}

fn read_u64(path: &Path, key: Option<&str>) -> u64 {
    let text = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("read {}: {e}", path.display()));
    let value = match key {
        None => text.trim().to_owned(),
        Some(k) => text
            .lines()
            .find_map(|l| l.strip_prefix(k).map(|v| v.trim().to_owned()))
            .unwrap_or_else(|| panic!("{k} not in {}", path.display())),
    };
    value.parse().unwrap_or_else(|_| panic!("{}: not a number: {value}", path.display()))
}

/// Kills every process of a pids cgroup (cleanup for a failed test; the server's stop does it
/// in the normal case).
struct CgroupKill(PathBuf);

impl Drop for CgroupKill {
    fn drop(&mut self) {
        for _ in 0..50 {
            let Ok(procs) = std::fs::read_to_string(self.0.join("cgroup.procs")) else { return };
            if procs.trim().is_empty() {
                return;
            }
            for pid in procs.lines().filter_map(|l| l.trim().parse::<i32>().ok()) {
                // SAFETY: kill(2) with a PID read from the box's cgroup; no memory is involved.
                unsafe { libc::kill(pid, libc::SIGKILL) };
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

#[test]
fn a_fork_bomb_is_contained_by_the_pids_limit() {
    let s = Server::start();
    s.ok(&["create", "bomb"]);
    s.ok(&["create", "bystander"]);
    let pid = s.show("bomb")["pid"].as_u64().expect("bomb box has a PID 1");
    let cg = pids_cgroup(pid);
    let _cleanup = CgroupKill(cg.clone());
    let max = read_u64(&cg.join("pids.max"), None);
    assert_eq!(max, 4096, "the default pids limit of a box");
    let events_before = read_u64(&cg.join("pids.events"), Some("max "));

    // The classic bomb; every shell it forks forks two more, forever.
    let out = s.ok(&["exec", "bomb", "--bg", "--", "sh", "-c", "f() { f | f & }; f"]);
    assert!(out.starts_with("pid="), "{out}");

    // It reaches the limit and stays there.
    let deadline = Instant::now() + Duration::from_secs(60);
    while read_u64(&cg.join("pids.events"), Some("max ")) == events_before {
        assert!(Instant::now() < deadline, "the bomb never hit the limit");
        std::thread::sleep(Duration::from_millis(100));
    }
    let mut peak = 0;
    let t = Instant::now();
    while t.elapsed() < Duration::from_secs(5) {
        let current = read_u64(&cg.join("pids.current"), None);
        assert!(current <= max, "{current} processes in a box limited to {max}");
        peak = peak.max(current);
        std::thread::sleep(Duration::from_millis(50));
    }
    let refused = read_u64(&cg.join("pids.events"), Some("max ")) - events_before;
    eprintln!("fork bomb: peak {peak} of {max} processes, {refused} forks refused by the pids limit");
    assert!(peak > max / 2, "the bomb did not really run: peak {peak}");

    // The host and the other boxes stay usable while the bomb runs.
    let t = Instant::now();
    assert!(Command::new("true").status().expect("fork on the host").success());
    assert_eq!(sh(&s, "bystander", "echo fine"), "fine\n");
    s.ok(&["create", "newcomer"]);
    assert_eq!(sh(&s, "newcomer", "echo fine"), "fine\n");
    s.ok(&["list"]);
    eprintln!("host and other boxes answered in {:?} during the bomb", t.elapsed());

    // Stopping the box ends every process of the bomb; the box starts again and works.
    let t = Instant::now();
    s.ok(&["stop", "bomb"]);
    eprintln!("stopped the bombed box in {:?}", t.elapsed());
    assert_eq!(read_u64(&cg.join("pids.current"), None), 0, "processes of the bomb survived stop");
    s.ok(&["resume", "bomb"]);
    assert_eq!(sh(&s, "bomb", "echo recovered"), "recovered\n");
}

/// The resident set size of process `pid` in KiB.
fn rss_kib(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|text| {
            text.lines().find_map(|l| {
                l.strip_prefix("VmRSS:").and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
            })
        })
        .unwrap_or_else(|| panic!("no VmRSS for process {pid}"))
}

/// Samples the server's VmRSS every 20 ms on a thread until dropped; `peak` is the largest seen.
struct RssWatch {
    stop: Arc<AtomicBool>,
    peak: Arc<AtomicU64>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl RssWatch {
    fn start(pid: u32) -> RssWatch {
        let stop = Arc::new(AtomicBool::new(false));
        let peak = Arc::new(AtomicU64::new(rss_kib(pid)));
        let (st, pk) = (stop.clone(), peak.clone());
        let thread = std::thread::spawn(move || {
            while !st.load(Ordering::Relaxed) {
                pk.fetch_max(rss_kib(pid), Ordering::Relaxed);
                std::thread::sleep(Duration::from_millis(20));
            }
        });
        RssWatch { stop, peak, thread: Some(thread) }
    }

    fn peak(&self) -> u64 {
        self.peak.load(Ordering::Relaxed)
    }
}

impl Drop for RssWatch {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// How much the server may grow while a box floods it. The buffered exec limit is 16 MiB and the
/// allocator keeps some of what it freed; gigabytes of output must not show up here.
const RSS_BOUND_KIB: u64 = 96 << 10;

#[test]
fn gigabytes_of_output_do_not_grow_the_server() {
    let s = Server::start();
    s.ok(&["create", "flood"]);
    let pid = s.pid().expect("server runs");
    // Warm up both paths (thread pools, buffers) before the baseline.
    assert_eq!(sh(&s, "flood", "echo warm"), "warm\n");
    let r = send(
        req(&s, Method::POST, "/v1/projects/default/boxes/flood/exec")
            .json(&json!({"cmd": ["echo", "warm"]})),
    );
    assert_eq!(r.status, 200, "{}", r.text());
    let base = rss_kib(pid);
    let watch = RssWatch::start(pid);

    // Streaming (`4kr exec` over the WebSocket): 2 GiB, every byte delivered, nothing buffered. The
    // reader first stalls for 3 s so the server must hold the box back instead of queueing.
    const STREAM: u64 = 2 << 30;
    let t = Instant::now();
    let mut child = s
        .cmd(&["exec", "flood", "--", "head", "-c", &STREAM.to_string(), "/dev/zero"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn 4kr exec");
    std::thread::sleep(Duration::from_secs(3));
    let stalled = watch.peak();
    let mut stdout = child.stdout.take().expect("stdout");
    let mut buf = vec![0u8; 1 << 20];
    let mut total = 0u64;
    let mut nonzero = false;
    loop {
        let n = stdout.read(&mut buf).expect("read 4kr stdout");
        if n == 0 {
            break;
        }
        nonzero |= buf[..n].iter().any(|&b| b != 0);
        total += n as u64;
    }
    let status = child.wait().expect("wait 4kr");
    assert!(status.success(), "4kr exec failed: {status:?}");
    assert_eq!(total, STREAM, "streamed output lost or gained bytes");
    assert!(!nonzero, "streamed output was corrupted");
    let streamed = t.elapsed();
    eprintln!(
        "streamed {} MiB in {streamed:?} ({:.0} MiB/s); server RSS {} MiB at start, {} MiB while the reader stalled, peak {} MiB",
        STREAM >> 20,
        (STREAM >> 20) as f64 / streamed.as_secs_f64(),
        base >> 10,
        stalled >> 10,
        watch.peak() >> 10
    );

    // Buffered (`POST …/exec`): 1 GiB of output is cut off at the limit with a clear 413, also with
    // four such requests at once.
    let t = Instant::now();
    let answers: Vec<Resp> = std::thread::scope(|scope| {
        let handles: Vec<_> = (0..4)
            .map(|i| {
                let s = &s;
                scope.spawn(move || {
                    let script = if i % 2 == 0 {
                        "head -c 1073741824 /dev/zero"
                    } else {
                        "head -c 1073741824 /dev/zero 1>&2"
                    };
                    send(
                        req(s, Method::POST, "/v1/projects/default/boxes/flood/exec")
                            .json(&json!({"cmd": ["sh", "-c", script]})),
                    )
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().expect("request thread")).collect()
    });
    for r in &answers {
        let msg = r.error(413, "output_too_large");
        assert!(!msg.is_empty());
    }
    eprintln!("4 buffered execs of 1 GiB each refused with 413 in {:?}", t.elapsed());

    let peak = watch.peak();
    drop(watch);
    let after = rss_kib(pid);
    eprintln!(
        "server RSS: baseline {} MiB, peak {} MiB (+{} MiB), after {} MiB",
        base >> 10,
        peak >> 10,
        peak.saturating_sub(base) >> 10,
        after >> 10
    );
    assert!(
        peak.saturating_sub(base) < RSS_BOUND_KIB,
        "the server grew by {} MiB while a box wrote gigabytes",
        peak.saturating_sub(base) >> 10
    );
    // The box is still usable and nothing of the floods keeps running.
    let ps = sh(&s, "flood", "ps -o args");
    assert!(!ps.contains("head -c"), "{ps}");
}
