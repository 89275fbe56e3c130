//! Issue 7, item 4: crash safety. For every fault point of `forkr_engine::fault::POINTS` (between
//! the steps of create, fork, restore, snapshot, base import/save/build and delete) a server built
//! with fault injection (`forkr-server-faults`) kills itself with SIGKILL at that step; the next
//! start (the normal binary) must converge: the operation is completed or undone, no half-made
//! subvolume or scratch is left, metadata and disk agree, and nothing that existed before is lost.
//!
//! Needs `cargo build -p forkr-server --features fault-injection --bin forkr-server-faults`
//! (scripts/test.sh does it).

mod support;

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::time::Duration;

use forkr_tests::Server;
use serde_json::{Value, json};
use support::{req, send, sh};

fn faults_binary() -> PathBuf {
    let exe = std::env::current_exe().unwrap();
    let dir = exe.parent().and_then(|d| d.parent()).unwrap().to_path_buf();
    let p = std::env::var("FORKR_BIN_DIR").map(PathBuf::from).unwrap_or(dir).join("forkr-server-faults");
    assert!(
        p.exists(),
        "{} is missing: build it with `cargo build -p forkr-server --features fault-injection --bin forkr-server-faults`",
        p.display()
    );
    p
}

/// Restarts `s` as the fault-injection build armed at `point`, runs `act` (whose request dies with
/// the server), asserts the server really died there, and restarts the normal server.
fn crash_at(s: &mut Server, point: &str, act: impl FnOnce(&Server)) {
    s.kill9();
    s.program = Some(faults_binary());
    s.program_env = vec![("FORKR_FAULT".into(), point.into())];
    s.spawn();
    act(s);
    let status = s.wait_exit(Duration::from_secs(60));
    assert!(status.is_some(), "{point}: the operation finished without reaching the fault point");
    s.program = None;
    s.program_env.clear();
    s.spawn();
}

/// Sends a request whose answer may never come (the server dies): errors are ignored.
fn fire(s: &Server, method: reqwest::Method, path: &str, body: Option<Value>) {
    let mut rb = req(s, method, path);
    if let Some(b) = body {
        rb = rb.json(&b);
    }
    let _ = rb.send();
}

fn names(dir: &Path) -> BTreeSet<String> {
    std::fs::read_dir(dir)
        .map(|d| d.flatten().map(|e| e.file_name().to_string_lossy().into_owned()).collect())
        .unwrap_or_default()
}

fn boxes(s: &Server, project: &str) -> Vec<Value> {
    send(req(s, reqwest::Method::GET, &format!("/v1/projects/{project}/boxes")))
        .json()
        .as_array()
        .cloned()
        .unwrap_or_default()
}

/// How many `tini` processes run in the cgroup of box `project/name` (found through the cgroup of
/// a running box of the same server, `reference`).
fn inits(s: &Server, reference: &str, project: &str, name: &str) -> usize {
    let pid = s.show(reference)["pid"].as_u64().expect("reference box runs");
    let cg = std::fs::read_to_string(format!("/proc/{pid}/cgroup")).unwrap();
    let line = cg.lines().find(|l| l.contains(":pids:")).expect("pids cgroup").to_owned();
    let path = line.rsplit(':').next().unwrap();
    let instance = path.strip_suffix(&format!("/default/{reference}")).expect("box cgroup path");
    let want = format!("{instance}/{project}/{name}");
    let mut n = 0;
    for e in std::fs::read_dir("/proc").unwrap().flatten() {
        let p = e.path();
        let comm = std::fs::read_to_string(p.join("comm")).unwrap_or_default();
        let cg = std::fs::read_to_string(p.join("cgroup")).unwrap_or_default();
        if comm.trim() == "tini" && cg.lines().any(|l| l.contains(":pids:") && l.ends_with(&want)) {
            n += 1;
        }
    }
    n
}

/// Disk and metadata agree after a restart: no scratch, no spooled upload, every root, checkpoint
/// and base on disk has its row and every row its subvolume; every box meant to run runs, once.
fn assert_converged(s: &Server, point: &str) {
    let fs = s.data.path().join("fs");
    assert_eq!(names(&fs.join("tmp")), BTreeSet::new(), "{point}: scratch left");
    let uploads: Vec<_> = names(s.data.path()).into_iter().filter(|n| n.starts_with("upload-")).collect();
    assert!(uploads.is_empty(), "{point}: spooled uploads left: {uploads:?}");
    let mut projects = names(&fs.join("roots"));
    projects.insert("default".into());
    for p in &projects {
        let listed = boxes(s, p);
        let rows: BTreeSet<String> = listed.iter().map(|b| b["name"].as_str().unwrap().to_owned()).collect();
        assert_eq!(names(&fs.join("roots").join(p)), rows, "{point}: roots of {p} vs box rows");
        for b in &listed {
            let name = b["name"].as_str().unwrap();
            assert_eq!(b["status"], "running", "{point}: box {p}/{name} does not run: {b}");
            let snaps: BTreeSet<String> =
                send(req(s, reqwest::Method::GET, &format!("/v1/projects/{p}/boxes/{name}/snapshots")))
                    .json()
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(|x| x["name"].as_str().unwrap().to_owned())
                    .collect();
            assert_eq!(
                names(&fs.join("checkpoints").join(p).join(name)),
                snaps,
                "{point}: checkpoints of {p}/{name}"
            );
        }
        let ghosts: Vec<_> = names(&fs.join("checkpoints").join(p)).difference(&rows).cloned().collect();
        assert!(ghosts.is_empty(), "{point}: checkpoints of deleted boxes {p}/{ghosts:?} left");
    }
    assert!(boxes(s, "forkr-builds").is_empty(), "{point}: a transient build box was left");
    let bases: Value = serde_json::from_str(&s.ok(&["base", "list", "--json"])).unwrap();
    let versions: BTreeSet<String> = bases
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|b| {
            b["versions"].as_array().unwrap().iter().map(|v| v["version"].as_str().unwrap().to_owned())
        })
        .collect();
    assert_eq!(names(&fs.join("bases")), versions, "{point}: base subvolumes vs base rows");
    // Nothing that existed before was lost.
    assert_eq!(sh(s, "keeper", "cat /root/precious"), "keep me\n", "{point}: the keeper box lost data");
    assert_eq!(inits(s, "keeper", "default", "keeper"), 1, "{point}: the keeper box has a leaked or no init");
}

/// A server with a box whose data must survive every crash.
fn server() -> Server {
    let s = Server::start();
    s.ok(&["create", "keeper"]);
    sh(&s, "keeper", "echo 'keep me' > /root/precious");
    s.ok(&["snapshot", "create", "keeper", "kept"]);
    s
}

fn points(prefix: &str) -> Vec<&'static str> {
    // Mirrors forkr_engine::fault::POINTS (checked there against the code).
    const POINTS: &[&str] = &[
        "create.after_row",
        "create.after_root",
        "create.after_start",
        "restore.after_stop",
        "restore.after_fresh_root",
        "restore.after_exchange",
        "snapshot.after_row",
        "import.after_extract",
        "base.after_move",
        "base.after_read_only",
        "base.after_row",
        "build.after_box",
        "build.after_script",
        "delete.after_stop",
        "delete.after_files",
    ];
    POINTS.iter().copied().filter(|p| p.starts_with(prefix)).collect()
}

fn report(what: &str, n: usize) {
    eprintln!("{what}: {n} fault points injected, all converged");
}

#[test]
fn create_and_fork_converge_after_a_crash_at_every_step() {
    let mut injected = 0;
    for point in points("create.") {
        for fork in [false, true] {
            let mut s = server();
            sh(&s, "keeper", "echo from-source > /root/origin");
            let body =
                if fork { json!({"name": "newbox", "fork": "keeper"}) } else { json!({"name": "newbox"}) };
            crash_at(&mut s, point, |s| {
                fire(s, reqwest::Method::POST, "/v1/projects/default/boxes", Some(body.clone()))
            });
            assert_converged(&s, point);
            // Completed (the box runs, once, with the fork's files) or undone (no trace).
            let exists = boxes(&s, "default").iter().any(|b| b["name"] == "newbox");
            if exists {
                assert_eq!(inits(&s, "keeper", "default", "newbox"), 1, "{point}: newbox init count");
                let origin = s.run(&["exec", "newbox", "--", "cat", "/root/origin"]);
                assert_eq!(origin.status.success(), fork, "{point} fork={fork}: /root/origin");
                s.ok(&["delete", "--force", "newbox"]);
            }
            eprintln!("{point} (fork={fork}): {}", if exists { "completed" } else { "undone" });
            // Nothing blocks doing it again.
            assert_eq!(
                send(req(&s, reqwest::Method::POST, "/v1/projects/default/boxes").json(&body)).status,
                201
            );
            injected += 1;
        }
    }
    report("create/fork", injected);
    assert_eq!(injected, 6);
}

#[test]
fn restore_and_snapshot_converge_after_a_crash_at_every_step() {
    let mut injected = 0;
    for point in points("restore.").into_iter().chain(points("snapshot.")) {
        let mut s = server();
        sh(&s, "keeper", "echo before > /root/state");
        s.ok(&["snapshot", "create", "keeper", "s1"]);
        sh(&s, "keeper", "echo after > /root/state");
        if point.starts_with("restore.") {
            crash_at(&mut s, point, |s| {
                fire(s, reqwest::Method::POST, "/v1/projects/default/boxes/keeper/snapshots/s1/restore", None)
            });
        } else {
            crash_at(&mut s, point, |s| {
                fire(
                    s,
                    reqwest::Method::POST,
                    "/v1/projects/default/boxes/keeper/snapshots",
                    Some(json!({"name": "s2"})),
                )
            });
        }
        assert_converged(&s, point);
        // The root is the old or the restored one, never a mix or nothing; after the exchange it
        // must be the restored one.
        let state = sh(&s, "keeper", "cat /root/state");
        assert!(state == "before\n" || state == "after\n", "{point}: {state:?}");
        if point == "restore.after_exchange" {
            assert_eq!(state, "before\n", "{point}: the exchange happened, the restore must stand");
        }
        eprintln!("{point}: state {}", state.trim());
        let snaps = s.ok(&["snapshot", "list", "keeper"]);
        assert!(snaps.contains("s1") && snaps.contains("kept"), "{point}: {snaps}");
        // Doing it again works.
        s.ok(&["snapshot", "restore", "keeper", "s1"]);
        assert_eq!(sh(&s, "keeper", "cat /root/state"), "before\n");
        s.ok(&["snapshot", "create", "keeper", "s2"]);
        injected += 1;
    }
    report("restore/snapshot", injected);
    assert_eq!(injected, 4);
}

#[test]
fn base_import_and_save_converge_after_a_crash_at_every_step() {
    let mut injected = 0;
    let import_points: Vec<&str> = points("import.").into_iter().chain(points("base.")).collect();
    let save_points = points("base.");
    for (op, point) in
        import_points.iter().map(|p| ("import", *p)).chain(save_points.iter().map(|p| ("save", *p)))
    {
        let mut s = server();
        let tarball = std::fs::read(forkr_tests::tiny_base_tarball(s.work.path())).unwrap();
        crash_at(&mut s, point, |s| {
            let _ = if op == "import" {
                req(s, reqwest::Method::POST, "/v1/bases/newbase/import").body(tarball.clone()).send()
            } else {
                req(s, reqwest::Method::POST, "/v1/bases/newbase/save")
                    .json(&json!({"project": "default", "box": "keeper"}))
                    .send()
            };
        });
        assert_converged(&s, point);
        let has = s.ok(&["base", "list"]).contains("newbase");
        if has {
            s.ok(&["create", "from-new", "--base", "newbase"]);
            s.ok(&["delete", "--force", "from-new"]);
        }
        eprintln!("{op} {point}: {}", if has { "completed" } else { "undone" });
        // Doing it again works.
        let r = if op == "import" {
            send(req(&s, reqwest::Method::POST, "/v1/bases/newbase/import").body(tarball))
        } else {
            send(
                req(&s, reqwest::Method::POST, "/v1/bases/newbase/save")
                    .json(&json!({"project": "default", "box": "keeper"})),
            )
        };
        assert_eq!(r.status, 201, "{op} {point}: {}", r.text());
        injected += 1;
    }
    report("base import/save", injected);
    assert_eq!(injected, 7);
}

#[test]
fn base_build_converges_after_a_crash_at_every_step() {
    let mut injected = 0;
    for point in points("build.").into_iter().chain(points("base.")) {
        let mut s = server();
        let body = json!({"script": "echo built > /built-marker", "parent": "box-base"});
        crash_at(&mut s, point, |s| {
            fire(s, reqwest::Method::POST, "/v1/bases/built/build", Some(body.clone()))
        });
        assert_converged(&s, point);
        let r = send(req(&s, reqwest::Method::POST, "/v1/bases/built/build").json(&body));
        assert_eq!(r.status, 200, "{point}: {}", r.text());
        s.ok(&["create", "from-built", "--base", "built"]);
        assert_eq!(sh(&s, "from-built", "cat /built-marker"), "built\n");
        eprintln!("{point}: rebuilt (unchanged={})", r.json()["unchanged"]);
        injected += 1;
    }
    report("base build", injected);
    assert_eq!(injected, 5);
}

#[test]
fn delete_converges_after_a_crash_at_every_step() {
    let mut injected = 0;
    for point in points("delete.") {
        let mut s = server();
        s.ok(&["create", "doomed"]);
        s.ok(&["snapshot", "create", "doomed", "d1"]);
        crash_at(&mut s, point, |s| {
            fire(s, reqwest::Method::DELETE, "/v1/projects/default/boxes/doomed?force=true", None)
        });
        assert_converged(&s, point);
        let exists = boxes(&s, "default").iter().any(|b| b["name"] == "doomed");
        eprintln!("{point}: {}", if exists { "undone" } else { "completed" });
        if exists {
            assert_eq!(inits(&s, "keeper", "default", "doomed"), 1);
        }
        assert_eq!(
            send(req(&s, reqwest::Method::DELETE, "/v1/projects/default/boxes/doomed?force=true")).status,
            200
        );
        assert!(!s.data.path().join("fs/roots/default/doomed").exists());
        assert!(!s.data.path().join("fs/checkpoints/default/doomed").exists());
        injected += 1;
    }
    report("delete", injected);
    assert_eq!(injected, 2);
}
