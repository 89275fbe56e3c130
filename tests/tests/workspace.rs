//! Issue 4 end to end: declarative workspaces through the real `4kr validate/plan/apply/destroy`
//! against a real `forkr-server`.
//!
//! The examples in `examples/` are copied into each server's work folder and applied there. Every
//! wait is bounded and polls; processes a test starts (a watcher, a client at its prompt) are
//! killed by guards, also when an assertion fails.

use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use forkr_tests::Server;

fn examples() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..").join("examples")
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let target = to.join(entry.file_name());
        if entry.file_type().unwrap().is_dir() {
            copy_dir(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), &target).unwrap();
        }
    }
}

/// A copy of `examples/<name>` in the server's work folder.
fn example(s: &Server, name: &str) -> PathBuf {
    let dir = s.work.path().join(name);
    copy_dir(&examples().join(name), &dir);
    dir
}

/// A workspace written by the test: `files` are `(name, text)` under `.forkr/`.
fn workspace(s: &Server, name: &str, files: &[(&str, &str)]) -> PathBuf {
    let dir = s.work.path().join(name);
    std::fs::create_dir_all(dir.join(".forkr")).unwrap();
    for (file, text) in files {
        std::fs::write(dir.join(".forkr").join(file), text).unwrap();
    }
    dir
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

/// `4kr args` run in `dir`.
fn run_in(s: &Server, dir: &Path, args: &[&str]) -> Output {
    s.cmd(args).current_dir(dir).output().expect("run 4kr")
}

/// Runs `4kr args` in `dir`, asserts success, returns stdout.
fn ok_in(s: &Server, dir: &Path, args: &[&str]) -> String {
    let out = run_in(s, dir, args);
    assert!(
        out.status.success(),
        "4kr {args:?} failed ({:?})\nstdout: {}\nstderr: {}",
        out.status.code(),
        text(&out.stdout),
        text(&out.stderr)
    );
    text(&out.stdout)
}

/// Runs `4kr args` in `dir`, asserts it exits with `code`, returns (stdout, stderr).
fn code_in(s: &Server, dir: &Path, args: &[&str], code: i32) -> (String, String) {
    let out = run_in(s, dir, args);
    assert_eq!(
        out.status.code(),
        Some(code),
        "4kr {args:?}\nstdout: {}\nstderr: {}",
        text(&out.stdout),
        text(&out.stderr)
    );
    (text(&out.stdout), text(&out.stderr))
}

fn apply(s: &Server, dir: &Path) -> String {
    ok_in(s, dir, &["apply", "--auto-approve"])
}

/// `plan --detailed-exitcode` says there is nothing to do.
fn assert_converged(s: &Server, dir: &Path) {
    let (out, _) = code_in(s, dir, &["plan", "--detailed-exitcode"], 0);
    assert!(out.starts_with("No changes."), "{out}");
}

/// Polls `cond` every 50 ms until it holds or `limit` passes.
fn wait_for(limit: Duration, what: &str, mut cond: impl FnMut() -> bool) {
    let deadline = Instant::now() + limit;
    while !cond() {
        assert!(Instant::now() < deadline, "timed out after {limit:?} waiting for {what}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn show(s: &Server, project: &str, name: &str) -> serde_json::Value {
    serde_json::from_str(&s.ok(&["show", "-p", project, name, "--json"])).expect("show --json")
}

fn exec(s: &Server, project: &str, name: &str, script: &str) -> Output {
    s.run(&["exec", "-p", project, name, "--", "sh", "-c", script])
}

/// A child process killed (and reaped) when the guard goes, whatever the test did.
struct Kill(Child);

impl Drop for Kill {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Collects a child's stdout lines on a thread.
fn lines_of(child: &mut Child) -> mpsc::Receiver<String> {
    let (tx, rx) = mpsc::channel();
    let out = child.stdout.take().expect("piped stdout");
    std::thread::spawn(move || {
        for line in BufReader::new(out).lines() {
            let Ok(line) = line else { break };
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    rx
}

/// Reads lines until one contains `needle`; returns everything read.
fn read_until(rx: &mpsc::Receiver<String>, needle: &str, limit: Duration) -> String {
    let deadline = Instant::now() + limit;
    let mut seen = String::new();
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        match rx.recv_timeout(left) {
            Ok(line) => {
                seen.push_str(&line);
                seen.push('\n');
                if line.contains(needle) {
                    return seen;
                }
            }
            Err(_) => panic!("no line with {needle:?} within {limit:?}; output so far:\n{seen}"),
        }
    }
}

// ---------------------------------------------------------------------------------------------

#[test]
fn minimal_example_applies_and_converges() {
    let s = Server::start();
    let dir = example(&s, "minimal");
    let (out, _) = code_in(&s, &dir, &["plan", "--detailed-exitcode"], 2);
    assert!(out.contains("+ box \"hello\"") && out.contains("Plan: 1 to add"), "{out}");
    let out = apply(&s, &dir);
    assert!(out.contains("box.hello: created") && out.contains("Apply complete! 1 added"), "{out}");
    assert_converged(&s, &dir);
    assert_eq!(
        ok_in(&s, &dir, &["validate"]).lines().next(),
        Some("Success: the workspace is valid (project minimal: 1 box; .forkr/forkr.yaml).")
    );
    let info = show(&s, "minimal", "hello");
    assert_eq!(info["status"], "running");
    assert!(info["tags"][0].as_str().unwrap().starts_with("forkr.workspace=minimal."), "{info}");
    // Applying again is a no-op.
    assert!(apply(&s, &dir).starts_with("No changes."));
}

#[test]
fn ci_example_builds_a_base_and_forks_test_boxes() {
    let s = Server::start();
    let dir = example(&s, "ci");
    let out = apply(&s, &dir);
    assert!(out.contains("base.ci-base: built") && out.contains("5 added"), "{out}");
    assert_converged(&s, &dir);
    // The forks have the base's files and their own SUITE, on top of the builder's CI=true.
    for (name, suite) in [("test-unit", "unit"), ("test-integration", "integration")] {
        let out = exec(&s, "ci", name, "cat /opt/ci/VERSION; echo $CI $SUITE");
        assert_eq!(text(&out.stdout), format!("ci-toolchain 1\ntrue {suite}\n"), "{}", text(&out.stderr));
        assert_eq!(show(&s, "ci", name)["forked_from"], "builder");
    }
    assert!(s.ok(&["snapshot", "list", "-p", "ci", "builder"]).contains("built"));

    // A new script builds a new base version, and the boxes on it are replaced.
    std::fs::write(
        dir.join("scripts/provision.sh"),
        "set -eu\nmkdir -p /opt/ci\necho 'ci-toolchain 2' > /opt/ci/VERSION\n",
    )
    .unwrap();
    let (plan, _) = code_in(&s, &dir, &["plan", "--detailed-exitcode"], 2);
    assert!(plan.contains("~ base \"ci-base\"") && plan.contains("-/+ box \"builder\""), "{plan}");
    assert!(plan.contains("-/+ box \"test-unit\""), "{plan}");
    apply(&s, &dir);
    assert_converged(&s, &dir);
    assert_eq!(text(&exec(&s, "ci", "test-unit", "cat /opt/ci/VERSION").stdout), "ci-toolchain 2\n");

    // destroy removes the boxes, then the base they were on; box-base stays.
    let out = ok_in(&s, &dir, &["destroy", "--auto-approve"]);
    assert!(out.contains("- base \"ci-base\"") && out.contains("4 destroyed"), "{out}");
    assert_eq!(s.ok(&["list", "-p", "ci"]).lines().count(), 1);
    let bases = s.ok(&["base", "list"]);
    assert!(!bases.contains("ci-base") && bases.contains("box-base"), "{bases}");
}

#[test]
fn web_app_example_applies_and_converges() {
    let s = Server::start();
    let dir = example(&s, "web-app");
    let out = apply(&s, &dir);
    assert!(out.contains("volume.app-data: created") && out.contains("box.web: created"), "{out}");
    assert_converged(&s, &dir);
    let info = show(&s, "web-app", "web");
    assert_eq!(info["port"], 8080);
    assert_eq!(info["data"][0]["name"], "app-data");
    assert_eq!(info["env"]["APP_ENV"], "production");
    // The data volume is mounted where the files say.
    let out = exec(&s, "web-app", "web", "echo hello > /srv/data/x && cat /srv/data/x");
    assert_eq!(text(&out.stdout), "hello\n", "{}", text(&out.stderr));
    assert_eq!(info["published"][0], "www.localhost");
    assert!(s.ok(&["snapshot", "list", "-p", "web-app", "web"]).contains("clean"));

    // destroy removes the box (and its host), then the volume it mounted.
    let out = ok_in(&s, &dir, &["destroy", "--auto-approve"]);
    assert!(out.contains("- volume \"app-data\"") && out.contains("2 destroyed"), "{out}");
    assert!(!s.ok(&["volume", "list", "-p", "web-app"]).contains("app-data"));
    let (plan, _) = code_in(&s, &dir, &["plan", "--detailed-exitcode"], 2);
    assert!(plan.contains("Plan: 4 to add"), "{plan}");
}

#[test]
fn edits_drift_prune_and_destroy() {
    let s = Server::start();
    let dir = workspace(
        &s,
        "app",
        &[
            ("project.yaml", "project: edits\n"),
            ("boxes.yaml", "boxes:\n  api:\n    port: 8080\n  worker: {}\n"),
        ],
    );
    apply(&s, &dir);
    assert_converged(&s, &dir);
    // A box the workspace did not create, in the same project.
    s.ok(&["create", "-p", "edits", "handmade"]);
    assert_converged(&s, &dir);
    let file = "echo kept > /root/marker";
    assert!(exec(&s, "edits", "api", file).status.success());

    // A port change is an update in place.
    std::fs::write(dir.join(".forkr/boxes.yaml"), "boxes:\n  api:\n    port: 9090\n  worker: {}\n").unwrap();
    let (plan, _) = code_in(&s, &dir, &["plan", "--detailed-exitcode"], 2);
    assert!(plan.contains("~ box \"api\"") && plan.contains("~ port = 8080 -> 9090"), "{plan}");
    assert!(plan.contains("Plan: 0 to add, 1 to change, 0 to replace, 0 to destroy."), "{plan}");
    apply(&s, &dir);
    assert_eq!(show(&s, "edits", "api")["port"], 9090);
    assert_converged(&s, &dir);

    // An env change replaces the box on its own root: the file written before survives.
    std::fs::write(
        dir.join(".forkr/boxes.yaml"),
        "boxes:\n  api:\n    port: 9090\n    env:\n      MODE: blue\n  worker: {}\n",
    )
    .unwrap();
    let (plan, _) = code_in(&s, &dir, &["plan", "--detailed-exitcode"], 2);
    assert!(
        plan.contains("-/+ box \"api\"") && plan.contains("+ env.MODE = \"blue\" # forces replacement"),
        "{plan}"
    );
    assert!(plan.contains("its current root filesystem"), "{plan}");
    let out = apply(&s, &dir);
    assert!(out.contains("1 replaced"), "{out}");
    assert_eq!(text(&exec(&s, "edits", "api", "cat /root/marker; echo $MODE").stdout), "kept\nblue\n");
    assert_converged(&s, &dir);

    // Drift made with an imperative command shows up in the next plan, and apply puts it back.
    s.ok(&["update", "-p", "edits", "api", "PORT=7000"]);
    let (plan, _) = code_in(&s, &dir, &["plan", "--detailed-exitcode"], 2);
    assert!(plan.contains("~ port = 7000 -> 9090"), "{plan}");
    apply(&s, &dir);
    assert_converged(&s, &dir);

    // A box removed from the files is deleted only with --prune, and only if the workspace made it.
    std::fs::write(
        dir.join(".forkr/boxes.yaml"),
        "boxes:\n  api:\n    port: 9090\n    env:\n      MODE: blue\n",
    )
    .unwrap();
    let (plan, _) = code_in(&s, &dir, &["plan", "--detailed-exitcode"], 0);
    assert!(plan.starts_with("No changes.") && plan.contains("Run with --prune"), "{plan}");
    assert!(!plan.contains("- box"), "{plan}");
    let (plan, _) = code_in(&s, &dir, &["plan", "--prune", "--detailed-exitcode"], 2);
    assert!(plan.contains("- box \"worker\"") && plan.contains("1 to destroy"), "{plan}");
    assert!(!plan.contains("handmade"), "{plan}");
    ok_in(&s, &dir, &["apply", "--prune", "--auto-approve"]);
    let list = s.ok(&["list", "-p", "edits"]);
    assert!(!list.contains("worker") && list.contains("handmade") && list.contains("api"), "{list}");

    // --replace recreates a box from its base even though nothing changed.
    let (plan, _) = code_in(&s, &dir, &["plan", "--replace", "api", "--detailed-exitcode"], 2);
    assert!(
        plan.contains("-/+ box \"api\"") && plan.contains("a replacement was requested (--replace)"),
        "{plan}"
    );

    // --target limits a run to one box.
    std::fs::write(
        dir.join(".forkr/boxes.yaml"),
        "boxes:\n  api:\n    port: 9091\n    env:\n      MODE: blue\n  extra: {}\n",
    )
    .unwrap();
    let (plan, _) = code_in(&s, &dir, &["plan", "--target", "extra", "--detailed-exitcode"], 2);
    assert!(plan.contains("+ box \"extra\"") && !plan.contains("\"api\""), "{plan}");

    // destroy deletes what the workspace created and nothing else.
    let (_, err) = code_in(&s, &dir, &["destroy"], 1);
    assert!(err.contains("refusing to destroy without confirmation"), "{err}");
    let out = ok_in(&s, &dir, &["destroy", "--auto-approve"]);
    assert!(out.contains("- box \"api\"") && out.contains("Destroy complete!"), "{out}");
    let list = s.ok(&["list", "-p", "edits"]);
    assert!(list.contains("handmade") && !list.contains("api"), "{list}");
}

#[test]
fn a_failed_apply_stops_reports_and_a_rerun_converges() {
    let s = Server::start();
    // Another box of the project already publishes the host the files ask for.
    s.ok(&["create", "-p", "fail", "squatter"]);
    s.ok(&["publish", "-p", "fail", "squatter", "www"]);
    let dir = workspace(
        &s,
        "fail",
        &[(
            "forkr.yaml",
            "project: fail\nboxes:\n  a:\n    publish: [www]\n  b:\n    snapshots: [first]\n    publish: [zzz]\n",
        )],
    );
    let (plan, _) = code_in(&s, &dir, &["plan"], 0);
    assert!(plan.contains("Warning: www.localhost is published by fail:squatter"), "{plan}");

    // One action at a time, so what is not started is known: the boxes, then b's snapshot, then the
    // publish of a fails, and b's publish after it never starts.
    let (out, err) = code_in(&s, &dir, &["apply", "--auto-approve", "--parallelism", "1"], 1);
    assert!(out.contains("box.a: created") && out.contains("snapshot.b.first: snapshot taken"), "{out}");
    assert!(out.contains("publish.a.www.localhost: failed after"), "{out}");
    assert!(
        err.contains("  failed:      publish.a.www.localhost: host www.localhost is already published"),
        "{err}"
    );
    assert!(err.contains("  done:        box.a, box.b, snapshot.b.first\n"), "{err}");
    assert!(err.contains("  not started: publish.b.zzz.localhost\n"), "{err}");
    assert!(err.contains("Error: apply stopped: 1 action failed"), "{err}");
    assert!(
        !s.ok(&["show", "-p", "fail", "b"]).contains("zzz.localhost"),
        "nothing started after the failure"
    );

    // Once the host is free, running apply again does the rest, and only the rest.
    s.ok(&["unpublish", "-p", "fail", "squatter", "www"]);
    let out = apply(&s, &dir);
    assert!(out.contains("Plan: 2 to add, 0 to change"), "{out}");
    assert_converged(&s, &dir);
    assert_eq!(show(&s, "fail", "a")["published"][0], "www.localhost");
}

#[test]
fn tarball_bases_are_imported_once_and_again_when_the_tarball_changes() {
    let s = Server::start();
    let dir = workspace(
        &s,
        "tarball",
        &[(
            "forkr.yaml",
            "project: tarball\nbases:\n  overlay:\n    from: box-base\n    tarball: overlay.tar.gz\nboxes:\n  app:\n    base: overlay\n",
        )],
    );
    let make = |content: &str| {
        let root = dir.join("overlay-root");
        std::fs::create_dir_all(root.join("opt")).unwrap();
        std::fs::write(root.join("opt/overlay.txt"), content).unwrap();
        let st = Command::new("tar")
            .arg("-C")
            .arg(&root)
            .arg("-czf")
            .arg(dir.join("overlay.tar.gz"))
            .arg(".")
            .status()
            .unwrap();
        assert!(st.success());
    };
    make("v1\n");
    let out = apply(&s, &dir);
    assert!(out.contains("base.overlay: built") && out.contains("box.app: created"), "{out}");
    // The version records the tarball's sha256, so an unchanged tarball is not imported again.
    assert_converged(&s, &dir);
    assert_eq!(text(&exec(&s, "tarball", "app", "cat /opt/overlay.txt").stdout), "v1\n");

    make("v2\n");
    let (plan, _) = code_in(&s, &dir, &["plan", "--detailed-exitcode"], 2);
    assert!(plan.contains("~ base \"overlay\"") && plan.contains("-/+ box \"app\""), "{plan}");
    apply(&s, &dir);
    assert_converged(&s, &dir);
    assert_eq!(text(&exec(&s, "tarball", "app", "cat /opt/overlay.txt").stdout), "v2\n");
}

#[test]
fn saved_plans_apply_exactly_and_go_stale() {
    let s = Server::start();
    let dir = workspace(&s, "saved", &[("forkr.yaml", "project: saved\nboxes:\n  one: {}\n")]);
    let plan_file = dir.join("plan.json");
    let (out, _) = code_in(&s, &dir, &["plan", "--out", "plan.json", "--detailed-exitcode"], 2);
    assert!(out.contains("4kr apply plan.json"), "{out}");
    let saved: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&plan_file).unwrap()).unwrap();
    assert_eq!(saved["summary"]["add"], 1);
    // The files change after the plan was saved: the saved plan still does exactly what it said.
    std::fs::write(dir.join(".forkr/forkr.yaml"), "project: saved\nboxes:\n  one: {}\n  two: {}\n").unwrap();
    let out = ok_in(&s, &dir, &["apply", "plan.json"]);
    assert!(out.contains("box.one: created") && !out.contains("box.two"), "{out}");

    // A plan saved before an imperative change is refused by the server.
    code_in(&s, &dir, &["plan", "--out", "plan.json", "--detailed-exitcode"], 2);
    s.ok(&["update", "-p", "saved", "one", "PORT=8181"]);
    let (_, err) = code_in(&s, &dir, &["apply", "plan.json"], 1);
    assert!(err.contains("the saved plan is stale"), "{err}");
    assert!(err.contains("4kr plan --out FILE"), "{err}");
    assert!(s.run(&["show", "-p", "saved", "two"]).status.code() != Some(0), "a stale plan changed nothing");

    // Flags that shape a plan cannot be given to a saved one.
    let (_, err) = code_in(&s, &dir, &["apply", "plan.json", "--prune"], 1);
    assert!(err.contains("cannot be used with a saved plan"), "{err}");
}

#[test]
fn broken_example_reports_every_problem_at_once() {
    let s = Server::start();
    let dir = example(&s, "broken");
    let expected_places = [
        ".forkr/boxes.yaml:8:5",
        ".forkr/boxes.yaml:10:7",
        ".forkr/boxes.yaml:12:13",
        ".forkr/boxes.yaml:13:7",
        ".forkr/boxes.yaml:13:14",
        ".forkr/boxes.yaml:16:11",
        ".forkr/boxes.yaml:17:5",
        ".forkr/boxes.yaml:21:5",
        ".forkr/boxes.yaml:23:3",
        ".forkr/boxes.yaml:26:11",
        ".forkr/boxes.yaml:29:11",
        ".forkr/more.yaml:6:3",
        ".forkr/syntax.yaml:4:10",
    ];
    for args in [&["plan"][..], &["validate", "--server"], &["apply", "--auto-approve"]] {
        let (out, err) = code_in(&s, &dir, args, 1);
        assert!(out.is_empty() || !out.contains("Plan:"), "{args:?} planned: {out}");
        for place in expected_places {
            assert!(err.contains(&format!("[{place}]")), "{args:?}: no {place} in:\n{err}");
        }
        for code in
            ["yaml_syntax", "unknown_key", "wrong_type", "invalid_name", "reserved_env", "invalid_mount"]
        {
            assert!(err.contains(code), "{args:?}: no {code} in:\n{err}");
        }
        assert!(err.contains("did you mean `port`?"), "{err}");
        assert!(err.contains("13 problems found in the workspace files"), "{err}");
    }
    // Offline validation cannot know what the server has, so it reports the rest.
    let (_, err) = code_in(&s, &dir, &["validate"], 1);
    assert!(err.contains("[.forkr/boxes.yaml:8:5]") && !err.contains("no-such-base"), "{err}");
    // --json gives machines the same places.
    let (out, _) = code_in(&s, &dir, &["validate", "--server", "--json"], 1);
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(v["valid"], false);
    assert_eq!(v["problems"].as_array().unwrap().len(), expected_places.len());
    assert_eq!(v["problems"][0]["file"], ".forkr/boxes.yaml");
    assert_eq!((v["problems"][0]["line"].as_u64(), v["problems"][0]["column"].as_u64()), (Some(8), Some(5)));
    // Nothing reached the server.
    assert_eq!(s.ok(&["list", "-p", "broken"]).lines().count(), 1);
}

/// A `4kr` run under a pseudo-terminal (util-linux `script`), so it sees a terminal on stdin and
/// stops at its confirmation prompt.
fn on_a_terminal(s: &Server, dir: &Path, args: &str) -> (Kill, mpsc::Receiver<String>) {
    let fourkr = forkr_tests::bin("4kr");
    let line = format!("exec {} {args}", fourkr.display());
    let mut child = Command::new("script")
        .args(["-q", "-e", "-c", &line, "/dev/null"])
        .current_dir(dir)
        .env("FORKR_URL", &s.url)
        .env("FORKR_TOKEN", &s.token)
        .env("NO_COLOR", "1")
        .env_remove("FORKR_PROJECT")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("util-linux `script` is installed");
    let rx = lines_of(&mut child);
    (Kill(child), rx)
}

/// The pid of the `4kr` that `script` runs (its only child, which exec'd 4kr).
fn child_of(pid: u32) -> u32 {
    let children = std::fs::read_to_string(format!("/proc/{pid}/task/{pid}/children")).unwrap_or_default();
    children.split_whitespace().next().and_then(|p| p.parse().ok()).expect("script has a child")
}

#[test]
fn the_lock_keeps_applies_apart_and_a_killed_clients_lock_expires() {
    let s = Server::start();
    let dir = workspace(&s, "locked", &[("forkr.yaml", "project: locked\nboxes:\n  one: {}\n")]);

    // An apply that waits at its prompt on a terminal holds the lock…
    let (mut first, rx) = on_a_terminal(&s, &dir, "apply --lock-ttl 2");
    read_until(&rx, "Only 'yes' will be accepted", Duration::from_secs(30));
    // …so another apply fails with the lock message, naming who holds it…
    let (_, err) = code_in(&s, &dir, &["apply", "--auto-approve"], 1);
    assert!(err.contains("project \"locked\" is locked by 4kr apply by "), "{err}");
    assert!(err.contains("--lock-timeout"), "{err}");
    // …and a plan, which takes no lock, still works.
    code_in(&s, &dir, &["plan", "--detailed-exitcode"], 2);

    // Answering `yes` applies.
    first.0.stdin.as_mut().unwrap().write_all(b"yes\n").unwrap();
    read_until(&rx, "Apply complete!", Duration::from_secs(30));
    assert_eq!(first.0.wait().unwrap().code(), Some(0));
    assert_converged(&s, &dir);

    // A client killed at its prompt leaves its lock behind; it expires after its TTL.
    std::fs::write(dir.join(".forkr/forkr.yaml"), "project: locked\nboxes:\n  one: {}\n  two: {}\n").unwrap();
    let (killed, rx) = on_a_terminal(&s, &dir, "apply --lock-ttl 2");
    read_until(&rx, "Only 'yes' will be accepted", Duration::from_secs(30));
    let pid = child_of(killed.0.id());
    assert_eq!(Command::new("kill").args(["-9", &pid.to_string()]).status().unwrap().code(), Some(0));
    let (_, err) = code_in(&s, &dir, &["apply", "--auto-approve"], 1);
    assert!(err.contains("is locked by"), "{err}");
    let t = Instant::now();
    let out = ok_in(&s, &dir, &["apply", "--auto-approve", "--lock-timeout", "20"]);
    assert!(out.contains("box.two: created"), "{out}");
    assert!(t.elapsed() < Duration::from_secs(10), "waited {:?} for a 2 s lock", t.elapsed());
    drop(killed);

    // Two applies at once: the one that comes second while the first holds the lock fails with
    // the lock message (the first is kept busy by a slow base build).
    std::fs::write(
        dir.join(".forkr/forkr.yaml"),
        "project: locked\nbases:\n  slow:\n    script: \"sleep 2\"\nboxes:\n  one: {}\n  two: {}\n",
    )
    .unwrap();
    let mut busy = Kill(
        s.cmd(&["apply", "--auto-approve"])
            .current_dir(&dir)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap(),
    );
    let rx = lines_of(&mut busy.0);
    read_until(&rx, "base.slow: building...", Duration::from_secs(30));
    let (_, err) = code_in(&s, &dir, &["apply", "--auto-approve"], 1);
    assert!(err.contains("is locked by 4kr apply"), "{err}");
    read_until(&rx, "Apply complete!", Duration::from_secs(60));
    assert_eq!(busy.0.wait().unwrap().code(), Some(0));
    assert_converged(&s, &dir);
}

#[test]
fn interactive_apply_can_be_declined() {
    let s = Server::start();
    let dir = workspace(&s, "asked", &[("forkr.yaml", "project: asked\nboxes:\n  one: {}\n")]);
    let (mut client, rx) = on_a_terminal(&s, &dir, "apply");
    read_until(&rx, "Only 'yes' will be accepted", Duration::from_secs(30));
    client.0.stdin.as_mut().unwrap().write_all(b"no\n").unwrap();
    read_until(&rx, "Apply cancelled.", Duration::from_secs(30));
    assert_eq!(client.0.wait().unwrap().code(), Some(1));
    assert_eq!(s.ok(&["list", "-p", "asked"]).lines().count(), 1, "nothing was created");
    // The lock was released: an apply right away goes through.
    apply(&s, &dir);
}

#[test]
fn watch_reapplies_edits_and_mirrors_a_sync_folder() {
    let s = Server::start();
    let dir = workspace(
        &s,
        "watched",
        &[(
            "forkr.yaml",
            "project: watched\nboxes:\n  dev:\n    port: 8080\n    sync:\n      - from: src\n        to: /srv/app\n        exclude: [\"**/*.tmp\"]\n",
        )],
    );
    let src = dir.join("src");
    std::fs::create_dir_all(src.join("lib")).unwrap();
    std::fs::write(src.join("main.sh"), "echo one\n").unwrap();
    std::fs::write(src.join("lib/util.sh"), "echo util\n").unwrap();
    std::fs::write(src.join("scratch.tmp"), "never\n").unwrap();

    let mut watcher = Kill(
        s.cmd(&["apply", "--watch", "--auto-approve"])
            .current_dir(&dir)
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap(),
    );
    let rx = lines_of(&mut watcher.0);
    read_until(&rx, "Watching .forkr/*.yaml and 1 sync folder", Duration::from_secs(60));

    let cat = |path: &str| {
        text(&exec(&s, "watched", "dev", &format!("cat {path} 2>/dev/null || echo MISSING")).stdout)
    };
    let limit = Duration::from_secs(20);
    // The initial full sync, honouring the exclude pattern.
    assert_eq!(cat("/srv/app/main.sh"), "echo one\n");
    assert_eq!(cat("/srv/app/lib/util.sh"), "echo util\n");
    assert_eq!(cat("/srv/app/scratch.tmp"), "MISSING\n");

    // A new file, in a new folder.
    std::fs::create_dir_all(src.join("web")).unwrap();
    std::fs::write(src.join("web/index.html"), "<h1>hi</h1>\n").unwrap();
    wait_for(limit, "the new file in the box", || cat("/srv/app/web/index.html") == "<h1>hi</h1>\n");
    // A changed file.
    std::fs::write(src.join("main.sh"), "echo two\n").unwrap();
    wait_for(limit, "the changed file in the box", || cat("/srv/app/main.sh") == "echo two\n");
    // A deleted file, and a new excluded one that never arrives.
    std::fs::write(src.join("other.tmp"), "no\n").unwrap();
    std::fs::remove_file(src.join("lib/util.sh")).unwrap();
    wait_for(limit, "the deletion in the box", || cat("/srv/app/lib/util.sh") == "MISSING\n");
    assert_eq!(cat("/srv/app/other.tmp"), "MISSING\n");

    // An edit of the workspace files is planned and applied.
    std::fs::write(
        dir.join(".forkr/forkr.yaml"),
        "project: watched\nboxes:\n  dev:\n    port: 9999\n    sync:\n      - from: src\n        to: /srv/app\n        exclude: [\"**/*.tmp\"]\n",
    )
    .unwrap();
    read_until(&rx, "Apply complete! 0 added, 1 changed", limit);
    assert_eq!(show(&s, "watched", "dev")["port"], 9999);
    // Broken files print their problems and the watch goes on.
    std::fs::write(dir.join(".forkr/forkr.yaml"), "project: watched\nboxes:\n  dev:\n    prot: 1\n").unwrap();
    read_until(&rx, "Watching", limit);
    assert!(watcher.0.try_wait().unwrap().is_none(), "the watcher exited on broken files");
    drop(watcher);
}

#[test]
fn schema_prints_the_committed_schemas() {
    let repo = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..");
    for (args, file) in
        [(&["schema"][..], "forkr.schema.json"), (&["schema", "config"], "config.schema.json")]
    {
        let out = Command::new(forkr_tests::bin("4kr")).args(args).output().unwrap();
        assert!(out.status.success());
        assert_eq!(
            text(&out.stdout),
            std::fs::read_to_string(repo.join("schemas").join(file)).unwrap(),
            "{file}"
        );
    }
}
