//! End-to-end tests of the local runtime with the real `forkr-shim`, real namespaces, mounts and
//! cgroups, on tiny roots built in milliseconds from busybox-static (and tini-static).
//!
//! Every test uses its own runtime instance (cgroup namespace `forkr/<instance>`) and a guard that
//! runs `kill_instance` and removes its temporary directory on drop, also when the test fails.
//! Needs root, like the runtime itself.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use forkr_engine::runtime::local::{Local, LocalConfig, kill_instance};
use forkr_engine::runtime::{BindMount, BoxKey, ExecIo, ExecSpec, Resources, Running, Runtime, StartSpec};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const SHIM: &str = env!("CARGO_BIN_EXE_forkr-shim");
const PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/// A runtime instance plus everything a test created; cleans up on drop.
struct Harness {
    rt: Local,
    instance: String,
    dir: tempfile::TempDir,
}

impl Drop for Harness {
    fn drop(&mut self) {
        if let Err(e) = kill_instance(&self.instance) {
            eprintln!("cleanup of instance {} failed: {e}", self.instance);
        }
        // The TempDir field removes the roots and logs after this.
    }
}

fn harness(tag: &str) -> Harness {
    let instance = format!("t{}-{tag}", std::process::id());
    // Outside /tmp on purpose: a box has its own /tmp, so a marker there would prove nothing.
    let dir =
        tempfile::Builder::new().prefix("runtime-local-").tempdir_in(env!("CARGO_TARGET_TMPDIR")).unwrap();
    let rt = Local::new(LocalConfig { shim: SHIM.into(), instance: instance.clone() }).unwrap();
    Harness { rt, instance, dir }
}

/// Builds a root: busybox with all its applets, optionally tini and a `bash` (running busybox sh).
fn make_root(base: &Path, name: &str, tini: bool) -> PathBuf {
    let root = base.join(name);
    for d in ["bin", "usr/bin", "etc", "root", "tmp"] {
        std::fs::create_dir_all(root.join(d)).unwrap();
    }
    std::fs::copy("/usr/bin/busybox", root.join("bin/busybox")).unwrap();
    let list = std::process::Command::new("/usr/bin/busybox").arg("--list").output().unwrap();
    for applet in String::from_utf8(list.stdout).unwrap().lines() {
        if applet != "busybox" {
            std::os::unix::fs::symlink("busybox", root.join("bin").join(applet)).unwrap();
        }
    }
    if tini {
        std::fs::copy("/usr/bin/tini-static", root.join("usr/bin/tini")).unwrap();
        // busybox has no `bash` applet: a stand-in that runs busybox sh (which accepts -lc).
        std::fs::write(root.join("bin/bash"), "#!/bin/sh\nexec /bin/sh \"$@\"\n").unwrap();
        std::fs::set_permissions(root.join("bin/bash"), std::os::unix::fs::PermissionsExt::from_mode(0o755))
            .unwrap();
    }
    std::fs::write(
        root.join("etc/passwd"),
        "root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534::/:/bin/sh\n",
    )
    .unwrap();
    root
}

fn key(name: &str) -> BoxKey {
    BoxKey { project: "proj".into(), name: name.into() }
}

fn env(name: &str) -> Vec<(String, String)> {
    vec![
        ("PATH".into(), PATH.into()),
        ("HOME".into(), "/root".into()),
        ("BOX_NAME".into(), name.into()),
        ("FORKR_PROJECT".into(), "proj".into()),
    ]
}

fn start_spec(h: &Harness, name: &str, root: &Path) -> StartSpec {
    StartSpec {
        key: key(name),
        hostname: format!("{name}.proj"),
        root: root.to_path_buf(),
        mounts: vec![],
        env: env(name),
        resources: Resources::default(),
        log_path: h.dir.path().join(format!("{name}.log")),
        network: None,
        exposure: Default::default(),
        grace: Duration::from_secs(10),
    }
}

fn exec_spec(name: &str, argv: &[&str], io: ExecIo) -> ExecSpec {
    ExecSpec {
        argv: argv.iter().map(|s| s.to_string()).collect(),
        env: env(name),
        cwd: "/".into(),
        uid: 0,
        gid: 0,
        io,
    }
}

struct Output {
    code: i32,
    stdout: String,
    stderr: String,
}

async fn run_with(h: &Harness, name: &str, run: &Running, spec: ExecSpec, stdin: &[u8]) -> Output {
    let mut p = h.rt.exec(&key(name), run, spec).await.unwrap();
    let mut input = p.stdin.take().unwrap();
    let data = stdin.to_vec();
    let feed = async move {
        input.write_all(&data).await.unwrap();
        input.shutdown().await.unwrap();
        drop(input);
    };
    let read = |r: Option<forkr_engine::runtime::BoxedRead>| async move {
        let mut buf = String::new();
        r.unwrap().read_to_string(&mut buf).await.unwrap();
        buf
    };
    let (_, stdout, stderr, code) = tokio::join!(feed, read(p.stdout.take()), read(p.stderr.take()), p.wait);
    Output { code: code.unwrap(), stdout, stderr }
}

async fn run(h: &Harness, name: &str, r: &Running, argv: &[&str]) -> Output {
    run_with(h, name, r, exec_spec(name, argv, ExecIo::Pipes), b"").await
}

/// Runs `sh -c script` and returns stdout, failing the test on a non-zero exit.
async fn sh(h: &Harness, name: &str, r: &Running, script: &str) -> String {
    let out = run(h, name, r, &["sh", "-c", script]).await;
    assert_eq!(out.code, 0, "script {script:?} failed: {}{}", out.stdout, out.stderr);
    out.stdout
}

fn cgroup_file(h: &Harness, name: &str, controller: &str, file: &str) -> String {
    let dir =
        h.rt.cgroup_dirs(&key(name))
            .unwrap()
            .into_iter()
            .find(|d| d.to_string_lossy().contains(&format!("/{controller}")))
            .unwrap();
    std::fs::read_to_string(dir.join(file)).unwrap().trim().to_string()
}

fn cgroup_pids(h: &Harness, name: &str) -> Vec<u32> {
    let mut pids: Vec<u32> =
        h.rt.cgroup_dirs(&key(name))
            .unwrap()
            .iter()
            .filter_map(|d| std::fs::read_to_string(d.join("cgroup.procs")).ok())
            .flat_map(|t| t.lines().filter_map(|l| l.parse().ok()).collect::<Vec<_>>())
            .collect();
    pids.sort_unstable();
    pids.dedup();
    pids
}

#[tokio::test]
async fn builtin_init_isolates_the_box() {
    let h = harness("builtin");
    let root = make_root(h.dir.path(), "root", false);
    let marker = h.dir.path().join("host-marker");
    std::fs::write(&marker, "host secret").unwrap();
    let r = h.rt.start(&start_spec(&h, "b1", &root)).await.unwrap();
    assert!(h.rt.is_alive(&key("b1"), &r));

    // PID 1 is the built-in init.
    let cmdline = sh(&h, "b1", &r, "tr '\\0' ' ' < /proc/1/cmdline").await;
    assert!(cmdline.starts_with("forkr-init"), "{cmdline:?}");
    assert_eq!(sh(&h, "b1", &r, "cat /proc/1/comm").await.trim(), "forkr-init");
    // Its host binary is out of reach (not dumpable): no /proc/1/exe re-exec trick.
    let exe = run(&h, "b1", &r, &["readlink", "/proc/1/exe"]).await;
    assert_ne!(exe.code, 0, "/proc/1/exe must be unreadable: {}", exe.stdout);

    // Hostname and environment, also in nested `sh -c` children.
    assert_eq!(sh(&h, "b1", &r, "hostname").await.trim(), "b1.proj");
    assert_eq!(sh(&h, "b1", &r, "sh -c 'echo $BOX_NAME/$FORKR_PROJECT'").await.trim(), "b1/proj");

    // Only box processes are visible: PID 1, the shell and ps.
    let ps = sh(&h, "b1", &r, "ps -o pid,comm").await;
    let pids: Vec<u32> =
        ps.lines().skip(1).filter_map(|l| l.split_whitespace().next()?.parse().ok()).collect();
    assert!(pids.contains(&1) && pids.len() <= 3, "{ps}");
    let procs = sh(&h, "b1", &r, "ls /proc | grep -c '^[0-9]'").await;
    // PID 1, sh, ls and grep.
    assert!(procs.trim().parse::<u32>().unwrap() <= 4, "{procs}");

    // No host files: neither by path nor through /proc magic links.
    for path in [marker.display().to_string(), format!("/proc/1/root{}", marker.display())] {
        let out = run(&h, "b1", &r, &["cat", &path]).await;
        assert_ne!(out.code, 0, "{path} must not be readable");
        assert!(!out.stdout.contains("host secret"));
    }
    let top = sh(&h, "b1", &r, "ls /").await;
    assert!(!top.contains("work") && top.contains("proc"), "{top}");
    // The host root is not mounted anywhere in the box.
    let mounts = sh(&h, "b1", &r, "cat /proc/self/mountinfo").await;
    assert!(mounts.lines().count() < 40, "{mounts}");
    assert!(
        !mounts.lines().any(|l| l.split(' ').nth(4) == Some("/") && l.split(' ').nth(3) == Some("/")),
        "{mounts}"
    );

    // Capabilities are Docker's default set, effective and bounding.
    let caps = sh(&h, "b1", &r, "grep -E '^Cap(Eff|Bnd)' /proc/self/status").await;
    assert_eq!(caps.matches("00000000a80425fb").count(), 2, "{caps}");
    // Without CAP_SYS_ADMIN the box cannot mount, and kernel knobs are read-only.
    assert_ne!(run(&h, "b1", &r, &["mount", "-t", "tmpfs", "x", "/mnt"]).await.code, 0);
    assert_ne!(run(&h, "b1", &r, &["sh", "-c", "echo 1 > /proc/sys/kernel/ns_last_pid"]).await.code, 0);
    assert_ne!(run(&h, "b1", &r, &["sh", "-c", "echo h > /proc/sysrq-trigger"]).await.code, 0);

    // A minimal /dev.
    let dev = sh(&h, "b1", &r, "ls /dev").await;
    for node in ["null", "zero", "full", "random", "urandom", "tty", "ptmx", "pts", "shm", "fd", "stdin"] {
        assert!(dev.split_whitespace().any(|n| n == node), "/dev lacks {node}: {dev}");
    }
    assert_eq!(sh(&h, "b1", &r, "head -c 4 /dev/zero | wc -c").await.trim(), "4");
    assert!(sh(&h, "b1", &r, "stat -c %a /tmp").await.trim() == "1777");
    // Block devices are refused by the devices cgroup even when created.
    let blk = run(&h, "b1", &r, &["sh", "-c", "mknod /tmp/sda b 8 0; head -c1 /tmp/sda"]).await;
    assert_ne!(blk.code, 0, "a block device must not be readable: {}", blk.stdout);

    // The box reads its own limits under /sys/fs/cgroup, read-only.
    let pids_max =
        sh(&h, "b1", &r, "cat /sys/fs/cgroup/pids/pids.max 2>/dev/null || cat /sys/fs/cgroup/pids.max").await;
    assert_eq!(pids_max.trim(), "4096");

    h.rt.stop(&key("b1"), &r, Duration::from_secs(5)).await.unwrap();
    assert!(!h.rt.is_alive(&key("b1"), &r));
    assert!(cgroup_pids(&h, "b1").is_empty());
    h.rt.cleanup(&key("b1")).await.unwrap();
    assert!(h.rt.cgroup_dirs(&key("b1")).unwrap().iter().all(|d| !d.exists()));
}

#[tokio::test]
async fn tini_and_bash_make_the_documented_pid1() {
    let h = harness("tini");
    let root = make_root(h.dir.path(), "root", true);
    let r = h.rt.start(&start_spec(&h, "t1", &root)).await.unwrap();
    let cmdline = sh(&h, "t1", &r, "tr '\\0' ' ' < /proc/1/cmdline").await;
    assert_eq!(cmdline.trim(), "/usr/bin/tini -s -- /bin/bash -lc sleep infinity");
    // tini's child runs `sleep infinity`.
    let ps = sh(&h, "t1", &r, "ps -o pid,args").await;
    assert!(ps.contains("sleep infinity"), "{ps}");
    // PID 1 holds no inherited host file: only its stdio.
    assert_eq!(sh(&h, "t1", &r, "ls /proc/1/fd | tr '\\n' ' '").await.trim(), "0 1 2");
    // Environment of PID 1 is exactly the spec's.
    let environ = sh(&h, "t1", &r, "tr '\\0' '\\n' < /proc/1/environ | sort").await;
    let mut want: Vec<String> = env("t1").iter().map(|(k, v)| format!("{k}={v}")).collect();
    want.sort();
    assert_eq!(environ.lines().collect::<Vec<_>>(), want);
    // stop: tini forwards SIGTERM, everything is gone.
    let t = Instant::now();
    h.rt.stop(&key("t1"), &r, Duration::from_secs(10)).await.unwrap();
    assert!(t.elapsed() < Duration::from_secs(5), "tini should exit on SIGTERM, took {:?}", t.elapsed());
    assert!(cgroup_pids(&h, "t1").is_empty());
    assert!(!h.rt.is_alive(&key("t1"), &r));
}

/// The kernel drops a signal sent to a namespace's PID 1 that neither blocks nor catches it. Right
/// after a start, tini (or the built-in init) may not have reached its first instructions yet: a
/// stop at that moment must still be heard, not wait out the whole grace before a SIGKILL.
#[tokio::test]
async fn a_stop_right_after_a_start_is_heard() {
    let h = harness("quick");
    for tini in [true, false] {
        let root = make_root(h.dir.path(), if tini { "tini" } else { "builtin" }, tini);
        for _ in 0..25 {
            let r = h.rt.start(&start_spec(&h, "q1", &root)).await.unwrap();
            let t = Instant::now();
            h.rt.stop(&key("q1"), &r, Duration::from_secs(60)).await.unwrap();
            assert!(
                t.elapsed() < Duration::from_secs(30),
                "SIGTERM was lost (tini: {tini}): the stop waited {:?} for the grace",
                t.elapsed()
            );
            assert!(!h.rt.is_alive(&key("q1"), &r));
        }
    }
}

#[tokio::test]
async fn tmp_is_fresh_after_stop_and_start_but_the_root_persists() {
    let h = harness("restart");
    let root = make_root(h.dir.path(), "root", false);
    let spec = start_spec(&h, "r1", &root);
    let r = h.rt.start(&spec).await.unwrap();
    sh(&h, "r1", &r, "echo scratch > /tmp/x; echo keep > /root/y; echo run > /run/z").await;
    // Starting a running box again is refused.
    assert_eq!(h.rt.start(&spec).await.unwrap_err().code(), "box_running");
    h.rt.stop(&key("r1"), &r, Duration::from_secs(5)).await.unwrap();
    let r2 = h.rt.start(&spec).await.unwrap();
    assert_ne!(r, r2);
    assert!(!h.rt.is_alive(&key("r1"), &r), "the old PID 1 is gone");
    assert_eq!(sh(&h, "r1", &r2, "cat /root/y").await.trim(), "keep");
    assert_ne!(run(&h, "r1", &r2, &["cat", "/tmp/x"]).await.code, 0, "/tmp must be fresh");
    assert_ne!(run(&h, "r1", &r2, &["cat", "/run/z"]).await.code, 0, "/run must be fresh");
    // An exec into the old PID 1 is refused clearly.
    let err = h.rt.exec(&key("r1"), &r, exec_spec("r1", &["true"], ExecIo::Pipes)).await.err().unwrap();
    assert_eq!(err.code(), "box_not_running");
    h.rt.stop(&key("r1"), &r2, Duration::from_secs(5)).await.unwrap();
}

#[tokio::test]
async fn exec_codes_stdin_cwd_users_and_errors() {
    let h = harness("exec");
    let root = make_root(h.dir.path(), "root", false);
    let r = h.rt.start(&start_spec(&h, "e1", &root)).await.unwrap();
    assert_eq!(run(&h, "e1", &r, &["true"]).await.code, 0);
    assert_eq!(run(&h, "e1", &r, &["sh", "-c", "exit 7"]).await.code, 7);
    assert_eq!(run(&h, "e1", &r, &["sh", "-c", "kill -9 $$"]).await.code, 137);
    let out = run(&h, "e1", &r, &["sh", "-c", "echo out; echo err >&2"]).await;
    assert_eq!((out.stdout.as_str(), out.stderr.as_str()), ("out\n", "err\n"));
    // stdin is piped through.
    let data = "line one\nline two\n".repeat(1000);
    let out = run_with(&h, "e1", &r, exec_spec("e1", &["cat"], ExecIo::Pipes), data.as_bytes()).await;
    assert_eq!(out.stdout, data);
    // Working directory and user.
    let mut spec = exec_spec("e1", &["sh", "-c", "pwd; id -u; id -g"], ExecIo::Pipes);
    spec.cwd = "/etc".into();
    spec.uid = 65534;
    spec.gid = 65534;
    let out = run_with(&h, "e1", &r, spec, b"").await;
    assert_eq!(out.stdout, "/etc\n65534\n65534\n");
    // A non-root process has no capabilities at all.
    let mut spec = exec_spec("e1", &["grep", "CapEff", "/proc/self/status"], ExecIo::Pipes);
    spec.uid = 65534;
    spec.gid = 65534;
    assert!(run_with(&h, "e1", &r, spec, b"").await.stdout.contains("0000000000000000"));
    // The exec'd process is in the box's namespaces and cgroup.
    assert_eq!(sh(&h, "e1", &r, "hostname").await.trim(), "e1.proj");
    // Clear errors.
    let err =
        h.rt.exec(&key("e1"), &r, exec_spec("e1", &["no-such-cmd"], ExecIo::Pipes)).await.err().unwrap();
    assert_eq!(err.code(), "command_not_found", "{err}");
    let mut spec = exec_spec("e1", &["true"], ExecIo::Pipes);
    spec.cwd = "/does/not/exist".into();
    let err = h.rt.exec(&key("e1"), &r, spec).await.err().unwrap();
    assert_eq!(err.code(), "invalid_cwd", "{err}");
    assert!(err.message().contains("/does/not/exist"), "{err}");
    // Kill stops a running exec.
    let p = h.rt.exec(&key("e1"), &r, exec_spec("e1", &["sleep", "100"], ExecIo::Pipes)).await.unwrap();
    (p.kill)();
    assert_eq!(tokio::time::timeout(Duration::from_secs(5), p.wait).await.unwrap().unwrap(), 137);
    h.rt.stop(&key("e1"), &r, Duration::from_secs(5)).await.unwrap();
}

#[tokio::test]
async fn no_host_fd_leaks_into_exec() {
    let h = harness("fds");
    let root = make_root(h.dir.path(), "root", false);
    let r = h.rt.start(&start_spec(&h, "f1", &root)).await.unwrap();
    // A host fd deliberately opened *without* close-on-exec must still not reach the box.
    let leaky = std::ffi::CString::new(h.dir.path().join("f1.log").to_str().unwrap()).unwrap();
    // SAFETY: opening a file; closed below.
    let fd = unsafe { libc::open(leaky.as_ptr(), libc::O_RDONLY) };
    assert!(fd > 2);
    // `ls` lists the fds of the shell, which waits for it. No pipeline: a shell building one holds
    // pipe fds for a moment. The `; true` keeps busybox sh from exec'ing `ls` in its own place.
    let script = "ls /proc/$$/fd; true";
    let words = |s: &str| s.split_whitespace().collect::<Vec<_>>().join(" ");
    assert_eq!(words(&sh(&h, "f1", &r, script).await), "0 1 2", "pipes");
    for mode in ["tty", "detached"] {
        let io = match mode {
            "tty" => ExecIo::Tty { rows: 24, cols: 80 },
            _ => ExecIo::Detached { log: h.dir.path().join("fds.log") },
        };
        let mut p = h.rt.exec(&key("f1"), &r, exec_spec("f1", &["sh", "-c", script], io)).await.unwrap();
        let mut out = String::new();
        if let Some(mut s) = p.stdout.take() {
            s.read_to_string(&mut out).await.unwrap();
        }
        p.wait.await.unwrap();
        if mode == "detached" {
            let log = h.dir.path().join("fds.log");
            let deadline = Instant::now() + Duration::from_secs(5);
            while std::fs::read_to_string(&log).unwrap_or_default().is_empty() && Instant::now() < deadline {
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
            out = std::fs::read_to_string(&log).unwrap();
        }
        assert_eq!(words(&out), "0 1 2", "{mode}");
    }
    // SAFETY: closing the fd opened above.
    unsafe { libc::close(fd) };
    h.rt.stop(&key("f1"), &r, Duration::from_secs(5)).await.unwrap();
}

#[tokio::test]
async fn tty_exec_and_resize() {
    let h = harness("tty");
    let root = make_root(h.dir.path(), "root", false);
    let r = h.rt.start(&start_spec(&h, "y1", &root)).await.unwrap();
    let spec = exec_spec(
        "y1",
        &["sh", "-c", "tty; stty size; read line; echo got:$line"],
        ExecIo::Tty { rows: 24, cols: 80 },
    );
    let mut p = h.rt.exec(&key("y1"), &r, spec).await.unwrap();
    assert!(p.stderr.is_none());
    p.pty.as_ref().unwrap().resize(30, 100).unwrap();
    let mut stdin = p.stdin.take().unwrap();
    stdin.write_all(b"hello\n").await.unwrap();
    let mut out = String::new();
    tokio::time::timeout(Duration::from_secs(10), p.stdout.take().unwrap().read_to_string(&mut out))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(p.wait.await.unwrap(), 0);
    assert!(out.contains("/dev/pts/0"), "the PTY is the box's own devpts: {out:?}");
    assert!(out.contains("30 100") || out.contains("24 80"), "{out:?}");
    assert!(out.contains("got:hello"), "{out:?}");
    h.rt.stop(&key("y1"), &r, Duration::from_secs(5)).await.unwrap();
}

#[tokio::test]
async fn detached_exec_is_adopted_by_pid1_and_logs() {
    let h = harness("bg");
    let root = make_root(h.dir.path(), "root", false);
    let r = h.rt.start(&start_spec(&h, "d1", &root)).await.unwrap();
    let log = h.dir.path().join("bg.log");
    let spec =
        exec_spec("d1", &["sh", "-c", "echo started; sleep 30"], ExecIo::Detached { log: log.clone() });
    let t = Instant::now();
    let p = h.rt.exec(&key("d1"), &r, spec).await.unwrap();
    assert_eq!(p.wait.await.unwrap(), 0);
    assert!(t.elapsed() < Duration::from_secs(2), "wait must resolve right away");
    // The pid is a box pid whose parent is the box's PID 1.
    let stat = sh(&h, "d1", &r, &format!("cat /proc/{}/stat", p.pid)).await;
    assert_eq!(stat.split_whitespace().nth(3), Some("1"), "{stat}");
    assert!(stat.contains("(sh)") || stat.contains("(sleep)"), "{stat}");
    let deadline = Instant::now() + Duration::from_secs(5);
    while !std::fs::read_to_string(&log).unwrap_or_default().contains("started") {
        assert!(Instant::now() < deadline, "the log never got the output");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    // stop takes the detached process with it.
    h.rt.stop(&key("d1"), &r, Duration::from_secs(5)).await.unwrap();
    assert!(cgroup_pids(&h, "d1").is_empty());
}

#[tokio::test]
async fn memory_limit_mounts_and_live_resources() {
    let h = harness("mem");
    let root = make_root(h.dir.path(), "root", false);
    let data = h.dir.path().join("data");
    std::fs::create_dir(&data).unwrap();
    std::fs::write(data.join("hello"), "from the volume").unwrap();
    let hosts = h.dir.path().join("hosts");
    std::fs::write(&hosts, "127.0.0.1 localhost\n").unwrap();
    let mut spec = start_spec(&h, "m1", &root);
    spec.resources = Resources { memory_bytes: Some(64 << 20), cpus: Some(0.5), pids_max: None };
    spec.mounts = vec![
        BindMount { source: data.clone(), target: "/mnt/data".into(), read_only: true, file: false },
        BindMount { source: hosts.clone(), target: "/etc/hosts".into(), read_only: false, file: true },
    ];
    let r = h.rt.start(&spec).await.unwrap();
    if h.rt.cgroup_version() == "v1" {
        assert_eq!(cgroup_file(&h, "m1", "memory", "memory.limit_in_bytes"), (64u64 << 20).to_string());
        assert_eq!(cgroup_file(&h, "m1", "cpu", "cpu.shares"), "512");
        let inside = sh(&h, "m1", &r, "cat /sys/fs/cgroup/memory/memory.limit_in_bytes").await;
        assert_eq!(inside.trim(), (64u64 << 20).to_string());
        h.rt.set_resources(&key("m1"), &Resources { memory_bytes: Some(128 << 20), ..Default::default() })
            .await
            .unwrap();
        assert_eq!(cgroup_file(&h, "m1", "memory", "memory.limit_in_bytes"), (128u64 << 20).to_string());
    } else {
        assert_eq!(cgroup_file(&h, "m1", "", "memory.max"), (64u64 << 20).to_string());
    }
    // Bind mounts: the read-only volume is readable, not writable; the file mount works.
    assert_eq!(sh(&h, "m1", &r, "cat /mnt/data/hello").await, "from the volume");
    assert_ne!(run(&h, "m1", &r, &["sh", "-c", "echo x > /mnt/data/new"]).await.code, 0);
    assert!(!data.join("new").exists());
    sh(&h, "m1", &r, "echo '10.0.0.2 other' >> /etc/hosts").await;
    assert!(std::fs::read_to_string(&hosts).unwrap().contains("10.0.0.2 other"));
    // A process allocating beyond the limit is killed, the box survives.
    let hog = run(
        &h,
        "m1",
        &r,
        &["sh", "-c", "head -c 300000000 /dev/zero | tail -c 1 > /dev/null; echo survived"],
    )
    .await;
    assert!(hog.code == 0 || hog.code == 137, "unexpected exit {}", hog.code);
    assert!(h.rt.is_alive(&key("m1"), &r));
    assert_eq!(sh(&h, "m1", &r, "echo ok").await.trim(), "ok");
    // Loopback is up inside the box's own network namespace.
    let lo = sh(&h, "m1", &r, "cat /sys/class/net/lo/operstate; ls /sys/class/net | tr '\\n' ' '").await;
    assert!(lo.starts_with("unknown") || lo.starts_with("up"), "{lo}");
    assert_eq!(lo.lines().nth(1).unwrap().trim(), "lo", "only loopback: {lo}");
    h.rt.stop(&key("m1"), &r, Duration::from_secs(5)).await.unwrap();
}

#[tokio::test]
async fn stop_kills_everything_and_fork_bombs_are_contained() {
    let h = harness("bomb");
    let root = make_root(h.dir.path(), "root", false);
    let mut spec = start_spec(&h, "k1", &root);
    spec.resources.pids_max = Some(40);
    let r = h.rt.start(&spec).await.unwrap();
    // A process that ignores SIGTERM, a foreground exec and a detached one.
    let stubborn =
        h.rt.exec(
            &key("k1"),
            &r,
            exec_spec(
                "k1",
                &["sh", "-c", "trap '' TERM; sleep 1000"],
                ExecIo::Detached { log: h.dir.path().join("s.log") },
            ),
        )
        .await
        .unwrap();
    stubborn.wait.await.unwrap();
    let fg = h.rt.exec(&key("k1"), &r, exec_spec("k1", &["sleep", "1000"], ExecIo::Pipes)).await.unwrap();
    // The fork bomb: spawn far more processes than allowed.
    let bomb = run(&h, "k1", &r, &["sh", "-c", "i=0; while [ $i -lt 200 ]; do sleep 60 >/dev/null 2>&1 & i=$((i+1)); done 2>/dev/null; echo done"]).await;
    let count = cgroup_pids(&h, "k1").len();
    assert!(count <= 40, "pids.max must contain the bomb, found {count} processes");
    if h.rt.cgroup_version() == "v1" {
        assert!(cgroup_file(&h, "k1", "pids", "pids.current").parse::<u32>().unwrap() <= 40);
        assert!(cgroup_file(&h, "k1", "pids", "pids.events").contains("max"));
    }
    let _ = bomb;
    // Stop: PID 1 forwards SIGTERM; the stubborn one is SIGKILLed after the grace.
    let t = Instant::now();
    h.rt.stop(&key("k1"), &r, Duration::from_millis(500)).await.unwrap();
    assert!(t.elapsed() < Duration::from_secs(5), "stop took {:?}", t.elapsed());
    assert!(cgroup_pids(&h, "k1").is_empty(), "processes left: {:?}", cgroup_pids(&h, "k1"));
    // SIGTERM forwarded by PID 1 (143), or SIGKILL (137).
    let code = tokio::time::timeout(Duration::from_secs(5), fg.wait).await.unwrap().unwrap();
    assert!(code == 143 || code == 137, "the foreground exec must be killed, got {code}");
    assert!(!h.rt.is_alive(&key("k1"), &r));
    // Stopping again is harmless.
    h.rt.stop(&key("k1"), &r, Duration::from_millis(100)).await.unwrap();
}

#[tokio::test]
async fn a_new_runtime_reattaches_to_running_boxes() {
    // What a restarted server does: a fresh `Local` for the same instance, given only `Running`.
    let h = harness("reattach");
    let root = make_root(h.dir.path(), "root", true);
    let mut spec = start_spec(&h, "n1", &root);
    // A 127-character hostname (two 63-character labels) is cut to the kernel's 64.
    spec.key.name = "x".repeat(63);
    spec.hostname = format!("{}.{}", "x".repeat(63), "y".repeat(63));
    let r = h.rt.start(&spec).await.unwrap();
    let other = Local::new(LocalConfig { shim: SHIM.into(), instance: h.instance.clone() }).unwrap();
    assert!(other.is_alive(&spec.key, &r));
    let mut p = other.exec(&spec.key, &r, exec_spec("n1", &["hostname"], ExecIo::Pipes)).await.unwrap();
    let mut out = String::new();
    p.stdout.take().unwrap().read_to_string(&mut out).await.unwrap();
    assert_eq!(p.wait.await.unwrap(), 0);
    assert_eq!(out.trim(), "x".repeat(63));
    // A record with the right PID but another start time (PID reuse) is not the box.
    let forged = Running { pid: r.pid, start_time: r.start_time + 1 };
    assert!(!other.is_alive(&spec.key, &forged));
    let err = other.exec(&spec.key, &forged, exec_spec("n1", &["true"], ExecIo::Pipes)).await.err().unwrap();
    assert_eq!(err.code(), "box_not_running");
    other.stop(&spec.key, &r, Duration::from_secs(5)).await.unwrap();
    assert!(!h.rt.is_alive(&spec.key, &r));
}

#[tokio::test]
async fn the_cgroup_v2_driver_runs_boxes_too() {
    // This machine's controllers are v1, but its cgroup2 mount (without controllers) still has
    // processes, cgroup namespaces and cgroup.kill: enough to run the v2 paths end to end.
    let mountinfo = std::fs::read_to_string("/proc/self/mountinfo").unwrap();
    let Some(mount) = mountinfo.lines().find_map(|l| {
        let (left, right) = l.split_once(" - ")?;
        let f: Vec<&str> = left.split(' ').collect();
        (right.starts_with("cgroup2 ") && f[3] == "/").then(|| PathBuf::from(f[4]))
    }) else {
        eprintln!("skipped: no cgroup2 mount");
        return;
    };
    let mut h = harness("v2");
    h.rt = Local::new_with_cgroup2_at(
        LocalConfig { shim: SHIM.into(), instance: h.instance.clone() },
        mount.clone(),
    )
    .unwrap();
    assert_eq!(h.rt.cgroup_version(), "v2");
    let root = make_root(h.dir.path(), "root", false);
    let r = h.rt.start(&start_spec(&h, "v2box", &root)).await.unwrap();
    let dir = mount.join(format!("forkr/{}/proj/v2box", h.instance));
    // PID 1 and the exec'd shell are in the box cgroup, which the box sees as its root.
    let inside = sh(&h, "v2box", &r, "cat /proc/self/cgroup; cat /sys/fs/cgroup/cgroup.procs | wc -l").await;
    assert!(inside.lines().any(|l| l == "0::/"), "{inside}");
    assert!(inside.lines().last().unwrap().trim().parse::<u32>().unwrap() >= 2, "{inside}");
    assert!(
        std::fs::read_to_string(dir.join("cgroup.procs")).unwrap().lines().any(|p| p == r.pid.to_string())
    );
    // The cgroup tree is read-only in the box.
    assert_ne!(run(&h, "v2box", &r, &["mkdir", "/sys/fs/cgroup/escape"]).await.code, 0);
    h.rt.stop(&key("v2box"), &r, Duration::from_secs(5)).await.unwrap();
    assert!(std::fs::read_to_string(dir.join("cgroup.procs")).unwrap().is_empty());
    // kill_instance sweeps the cgroup2 mount as well.
    let r = h.rt.start(&start_spec(&h, "v2box", &root)).await.unwrap();
    kill_instance(&h.instance).unwrap();
    assert!(!h.rt.is_alive(&key("v2box"), &r));
    assert!(!dir.exists());
}

#[tokio::test]
async fn kill_instance_leaves_nothing() {
    let h = harness("killall");
    let mut runs = Vec::new();
    for name in ["a1", "a2"] {
        let root = make_root(h.dir.path(), name, name == "a2");
        let r = h.rt.start(&start_spec(&h, name, &root)).await.unwrap();
        h.rt.exec(
            &key(name),
            &r,
            exec_spec(
                name,
                &["sleep", "1000"],
                ExecIo::Detached { log: h.dir.path().join(format!("{name}-bg.log")) },
            ),
        )
        .await
        .unwrap();
        runs.push((name, r));
    }
    kill_instance(&h.instance).unwrap();
    for (name, r) in &runs {
        assert!(!h.rt.is_alive(&key(name), r));
        assert!(h.rt.cgroup_dirs(&key(name)).unwrap().iter().all(|d| !d.exists()));
    }
    // Idempotent.
    kill_instance(&h.instance).unwrap();
}

#[tokio::test]
async fn start_failures_are_clear_and_leave_nothing() {
    let h = harness("fail");
    let root = make_root(h.dir.path(), "root", false);
    // A system mount point planted as a symlink by the box.
    std::fs::remove_dir(root.join("tmp")).unwrap();
    std::os::unix::fs::symlink("/etc", root.join("tmp")).unwrap();
    let err = h.rt.start(&start_spec(&h, "x1", &root)).await.unwrap_err();
    assert_eq!(err.code(), "box_start_failed");
    assert!(err.message().contains("/tmp") && err.message().contains("symbolic link"), "{err}");
    assert!(cgroup_pids(&h, "x1").is_empty());
    // A mount whose source is missing.
    std::fs::remove_file(root.join("tmp")).unwrap();
    let mut spec = start_spec(&h, "x1", &root);
    spec.mounts.push(BindMount {
        source: "/no/such/dir".into(),
        target: "/data".into(),
        read_only: false,
        file: false,
    });
    let err = h.rt.start(&spec).await.unwrap_err();
    assert!(err.message().contains("/no/such/dir"), "{err}");
    assert!(h.rt.cgroup_dirs(&key("x1")).unwrap().iter().all(|d| !d.exists()));
}

fn median(v: &mut [f64]) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    v[v.len() / 2]
}

fn p95(v: &mut [f64]) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    v[(v.len() * 95 / 100).min(v.len() - 1)]
}

/// `cargo test -p forkr-server --test runtime_local -- --ignored --nocapture bench`
#[tokio::test]
#[ignore]
async fn bench_start_and_exec() {
    let h = harness("bench");
    for tini in [false, true] {
        let root = make_root(h.dir.path(), if tini { "tini" } else { "plain" }, tini);
        let spec = start_spec(&h, "bench", &root);
        let (mut starts, mut stops) = (Vec::new(), Vec::new());
        let mut last = None;
        for _ in 0..30 {
            let t = Instant::now();
            let r = h.rt.start(&spec).await.unwrap();
            starts.push(t.elapsed().as_secs_f64() * 1e3);
            let t = Instant::now();
            h.rt.stop(&key("bench"), &r, Duration::from_secs(5)).await.unwrap();
            stops.push(t.elapsed().as_secs_f64() * 1e3);
            last = Some(r);
        }
        let _ = last;
        let r = h.rt.start(&spec).await.unwrap();
        let mut execs = Vec::new();
        for _ in 0..200 {
            let t = Instant::now();
            let out = run(&h, "bench", &r, &["true"]).await;
            execs.push(t.elapsed().as_secs_f64() * 1e3);
            assert_eq!(out.code, 0);
        }
        let init = if tini { "tini" } else { "built-in init" };
        println!(
            "[{init}] start: median {:.2} ms, p95 {:.2} ms | stop: median {:.2} ms | exec `true` round trip: median {:.2} ms, p95 {:.2} ms",
            median(&mut starts),
            p95(&mut starts),
            median(&mut stops),
            median(&mut execs),
            p95(&mut execs)
        );
        h.rt.stop(&key("bench"), &r, Duration::from_secs(5)).await.unwrap();
    }
}
