//! The node path: finding a container's init in a synthetic proc tree (the real file formats of
//! cgroup v1 and v2, cgroupfs and systemd drivers, containerd and CRI-O), and for real on this
//! machine: a fake container (a cgroup named after a container ID, new namespaces, tini chrooted
//! into a busybox root, like a runner container) that the node path finds, execs into and opens a
//! console in.

use std::io::Read;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};

use super::*;
use crate::runtime::local::cgroup::parse_mountinfo;
use crate::runtime::{ExecIo, ExecSpec, Running};

const ID: &str = "3f1c0e1b9a8d7c6b5a4f3e2d1c0b9a8f7e6d5c4b3a2f1e0d9c8b7a6f5e4d3c2b";
const PAUSE: &str = "aaaabbbbccccddddeeeeffff00001111222233334444555566667777888899990";

/// A synthetic `/proc`: one directory per process with `cgroup`, `stat` and `status`.
struct FakeProc(tempfile::TempDir);

impl FakeProc {
    fn new() -> FakeProc {
        FakeProc(tempfile::tempdir().unwrap())
    }

    /// Adds a process; `nspid` is the `NSpid:` line's values (host PID first).
    fn add(&self, pid: u32, comm: &str, ppid: u32, start: u64, nspid: &[u32], cgroup: &str) {
        let dir = self.0.path().join(pid.to_string());
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("cgroup"), cgroup).unwrap();
        // Fields 5..=21 are zero; field 22 is the start time; more fields follow, as in the kernel's.
        let zeros = vec!["0"; 17].join(" ");
        std::fs::write(dir.join("stat"), format!("{pid} ({comm}) S {ppid} {zeros} {start} 0 0 0\n")).unwrap();
        let ns: Vec<String> = nspid.iter().map(u32::to_string).collect();
        std::fs::write(
            dir.join("status"),
            format!("Name:\t{comm}\nState:\tS (sleeping)\nNSpid:\t{}\n", ns.join("\t")),
        )
        .unwrap();
    }

    fn path(&self) -> &Path {
        self.0.path()
    }
}

/// The cgroup file of a process in cgroup `path` for every v1 controller of a hybrid host, and `/`
/// in the (controller-less) unified hierarchy, as on this machine.
fn v1(path: &str) -> String {
    let ctrls = ["name=systemd", "pids", "blkio", "freezer", "devices", "memory", "cpuset", "cpuacct", "cpu"];
    let mut s: String = ctrls.iter().enumerate().map(|(i, c)| format!("{}:{c}:{path}\n", 9 - i)).collect();
    s.push_str("0::/\n");
    s
}

fn v2(path: &str) -> String {
    format!("0::{path}\n")
}

#[test]
fn container_ids_come_from_the_pod_status() {
    assert_eq!(container_id(&format!("containerd://{ID}")), Some(ID));
    assert_eq!(container_id(&format!("cri-o://{ID}")), Some(ID));
    assert_eq!(container_id(&format!("docker://{ID}")), Some(ID));
    assert_eq!(container_id(ID), None, "no runtime prefix");
    assert_eq!(container_id("containerd://abc"), None, "too short to be unique");
    assert_eq!(container_id("containerd://../../etc"), None);
    assert_eq!(container_id("containerd://"), None);
}

#[test]
fn cgroup_paths_name_their_container_under_every_driver() {
    for path in [
        format!("/kubepods/burstable/pod6c1e/{ID}"),
        format!("/kubepods/pod6c1e/{ID}"),
        format!(
            "/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod6c1e.slice/cri-containerd-{ID}.scope"
        ),
        format!("/kubepods.slice/kubepods-pod6c1e.slice/crio-{ID}.scope"),
        format!("/kubepods/besteffort/pod6c1e/crio-{ID}"),
        format!("/kubepods.slice/kubepods-pod6c1e.slice/docker-{ID}.scope"),
        format!("/kubepods/pod6c1e/{ID}/init.scope"),
    ] {
        assert!(names_container(&path, ID), "{path}");
    }
    for path in [
        format!("/kubepods.slice/kubepods-pod6c1e.slice/crio-conmon-{ID}.scope"),
        format!("/kubepods/pod6c1e/{PAUSE}"),
        format!("/kubepods/pod6c1e/x{ID}"),
        "/kubepods/pod6c1e".to_owned(),
        "/".to_owned(),
    ] {
        assert!(!names_container(&path, ID), "{path}");
    }
}

#[test]
fn cgroup_files_parse_for_v1_and_v2() {
    let lines =
        parse_cgroup_file("12:cpu,cpuacct:/kubepods/a\n1:name=systemd:/x:y\n0::/kubepods.slice\nbad\n");
    assert_eq!(
        lines,
        [
            CgroupLine { controllers: vec!["cpu".into(), "cpuacct".into()], path: "/kubepods/a".into() },
            CgroupLine { controllers: vec!["name=systemd".into()], path: "/x:y".into() },
            CgroupLine { controllers: vec![], path: "/kubepods.slice".into() },
        ]
    );
}

#[test]
fn the_init_is_the_container_process_whose_parent_is_outside_it_v1_cgroupfs() {
    let p = FakeProc::new();
    let pod = "/kubepods/burstable/pod6c1e2f3a-1111-2222-3333-444455556666";
    let ctr = format!("{pod}/{ID}");
    p.add(1, "systemd", 0, 1, &[1], &v1("/init.scope"));
    p.add(90, "containerd-shim", 1, 50, &[90], &v1("/system.slice/containerd.service"));
    p.add(95, "pause", 90, 60, &[95, 1], &v1(&format!("{pod}/{PAUSE}")));
    // The runner: tini chrooted into /volumes, with its child; then an exec the kubelet started
    // (also a child of the shim, but not PID 1 of the container).
    p.add(100, "tini", 90, 70, &[100, 1], &v1(&ctr));
    p.add(101, "bash", 100, 71, &[101, 7], &v1(&ctr));
    p.add(120, "sh", 90, 65, &[120, 20], &v1(&ctr));
    // Unreadable leftovers are ignored.
    std::fs::create_dir_all(p.path().join("130")).unwrap();
    std::fs::create_dir_all(p.path().join("self")).unwrap();
    let init = find_init(p.path(), ID).unwrap();
    assert_eq!((init.pid, init.start_time), (100, 70));
    assert_eq!(init.cgroups, parse_cgroup_file(&v1(&ctr)));
    assert_eq!(find_init(p.path(), PAUSE).unwrap().pid, 95);
    assert_eq!(find_init(p.path(), &ID.replace('3', "4")), None, "no such container");
}

#[test]
fn the_init_is_found_in_v2_systemd_cgroups_and_next_to_crio_conmon() {
    let p = FakeProc::new();
    let slice = "/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod6c1e2f3a_1111.slice";
    p.add(1, "systemd", 0, 1, &[1], &v2("/init.scope"));
    p.add(80, "crio", 1, 10, &[80], &v2("/system.slice/crio.service"));
    // CRI-O's monitor is a sibling cgroup carrying the ID; it is not the container.
    p.add(90, "conmon", 1, 50, &[90], &v2(&format!("{slice}/crio-conmon-{ID}.scope")));
    p.add(100, "tini", 90, 70, &[100, 1], &v2(&format!("{slice}/crio-{ID}.scope")));
    p.add(101, "sleep", 100, 72, &[101, 2], &v2(&format!("{slice}/crio-{ID}.scope")));
    let init = find_init(p.path(), ID).unwrap();
    assert_eq!(init.pid, 100);
    assert_eq!(init.cgroups, [CgroupLine { controllers: vec![], path: format!("{slice}/crio-{ID}.scope") }]);
}

#[test]
fn without_a_pid_namespace_of_its_own_the_oldest_outside_parented_process_is_the_init() {
    // shareProcessNamespace: the pause container is PID 1; the container's init is the oldest of
    // the processes the shim started.
    let p = FakeProc::new();
    let ctr = format!("/kubepods/pod1/{ID}");
    p.add(90, "shim", 1, 50, &[90], &v1("/system.slice/containerd.service"));
    p.add(120, "sh", 90, 80, &[120, 9], &v1(&ctr));
    p.add(100, "tini", 90, 70, &[100, 5], &v1(&ctr));
    p.add(101, "sleep", 100, 71, &[101, 6], &v1(&ctr));
    assert_eq!(find_init(p.path(), ID).unwrap().pid, 100);
    // A zombie init is no init.
    let dir = p.path().join("100");
    let stat = std::fs::read_to_string(dir.join("stat")).unwrap().replace(") S ", ") Z ");
    std::fs::write(dir.join("stat"), stat).unwrap();
    assert_eq!(find_init(p.path(), ID).unwrap().pid, 101, "its orphan, now parented outside");
}

const MOUNTINFO: &str = "\
31 23 0:28 / /sys/fs/cgroup rw,relatime - tmpfs tmpfs rw,mode=755
32 31 0:29 / /sys/fs/cgroup/cpu,cpuacct rw,relatime - cgroup cgroup rw,cpu,cpuacct
39 31 0:36 / /sys/fs/cgroup/pids rw,relatime - cgroup cgroup rw,pids
40 31 0:37 / /sys/fs/cgroup/systemd rw,relatime - cgroup cgroup rw,xattr,name=systemd
41 31 0:38 / /sys/fs/cgroup/unified rw,relatime - cgroup2 cgroup2 rw
50 23 0:36 /kubepods /host/pids-kubepods rw,relatime - cgroup cgroup rw,pids
";

#[test]
fn the_containers_cgroups_map_to_the_servers_mounts() {
    let dir = tempfile::tempdir().unwrap();
    // Rebase the mount points into a temporary directory, where the cgroup directories exist.
    let base = dir.path().display().to_string();
    let text =
        MOUNTINFO.replace(" /sys/", &format!(" {base}/sys/")).replace(" /host/", &format!(" {base}/host/"));
    let mounts = parse_mountinfo(&text);
    let ctr = format!("/kubepods/pod1/{ID}");
    for d in [
        format!("sys/fs/cgroup/cpu,cpuacct{ctr}"),
        format!("sys/fs/cgroup/pids{ctr}"),
        format!("sys/fs/cgroup/systemd{ctr}"),
        format!("sys/fs/cgroup/unified{ctr}"),
    ] {
        std::fs::create_dir_all(dir.path().join(d)).unwrap();
    }
    let lines =
        parse_cgroup_file(&format!("12:cpu,cpuacct:{ctr}\n8:pids:{ctr}\n1:name=systemd:{ctr}\n0::{ctr}\n"));
    let dirs = cgroup_dirs(&mounts, &lines, ID).unwrap();
    assert_eq!(
        dirs,
        [
            dir.path().join(format!("sys/fs/cgroup/cpu,cpuacct{ctr}")),
            dir.path().join(format!("sys/fs/cgroup/pids{ctr}")),
            dir.path().join(format!("sys/fs/cgroup/systemd{ctr}")),
            dir.path().join(format!("sys/fs/cgroup/unified{ctr}")),
        ]
    );
    // Lines of other cgroups (here: the unified root of a hybrid host) are not joined.
    let lines = parse_cgroup_file(&format!("8:pids:{ctr}\n0::/\n"));
    assert_eq!(
        cgroup_dirs(&mounts, &lines, ID).unwrap(),
        [dir.path().join(format!("sys/fs/cgroup/pids{ctr}"))]
    );
    // A bind mount of a subtree serves paths below its root.
    std::fs::create_dir_all(dir.path().join(format!("host/pids-kubepods/pod1/{ID}"))).unwrap();
    let only_sub: Vec<MountEntry> = mounts.iter().filter(|m| m.root == "/kubepods").cloned().collect();
    assert_eq!(
        cgroup_dirs(&only_sub, &parse_cgroup_file(&format!("8:pids:{ctr}\n")), ID).unwrap(),
        [dir.path().join(format!("host/pids-kubepods/pod1/{ID}"))]
    );
    // Outside the server's cgroup namespace (cgroup v2 pods have their own), or not mounted:
    // unreachable, so the node path is not taken.
    let outside = parse_cgroup_file(&format!("0::/../../kubepods.slice/{ID}\n"));
    let err = cgroup_dirs(&mounts, &outside, ID).unwrap_err();
    assert!(err.contains("not reachable"), "{err}");
    let unmounted = parse_cgroup_file(&format!("3:memory:{ctr}\n"));
    assert!(cgroup_dirs(&mounts, &unmounted, ID).is_err());
    assert!(cgroup_dirs(&mounts, &parse_cgroup_file("0::/\n"), ID).is_err(), "no line names the container");
}

#[test]
fn exec_paths_parse() {
    assert_eq!("auto".parse::<ExecPath>(), Ok(ExecPath::Auto));
    assert_eq!("NODE".parse::<ExecPath>(), Ok(ExecPath::Node));
    assert_eq!("api".parse::<ExecPath>(), Ok(ExecPath::Api));
    assert!("kubelet".parse::<ExecPath>().unwrap_err().contains("auto, node or api"));
    assert_eq!(ExecPath::default().to_string(), "auto");
}

/// A runner container on this machine, as the container runtime and the runner script make it: a
/// cgroup `kubepods/pod<uid>/<id>` in the v1 pids hierarchy, new PID, mount, UTS, IPC and network
/// namespaces, `/proc` and a devpts in a busybox root, and tini chrooted into that root, parented
/// by a process outside the cgroup (`unshare`, standing in for the shim). Everything goes in Drop.
pub(crate) struct FakeContainer {
    pub id: String,
    /// The cgroup directories this created, deepest first.
    cgroups: Vec<PathBuf>,
    shim: Child,
    _dir: tempfile::TempDir,
}

/// The marker file that exists only in the fake container's root.
pub(crate) const MARKER: &str = "inside the box root\n";

impl FakeContainer {
    pub(crate) fn start() -> FakeContainer {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("root");
        for d in ["bin", "usr/bin", "dev/pts", "proc", "tmp"] {
            std::fs::create_dir_all(root.join(d)).unwrap();
        }
        std::fs::copy("/usr/bin/busybox", root.join("bin/busybox")).unwrap();
        for applet in ["sh", "cat", "sleep", "tty", "stty", "hostname", "echo"] {
            std::os::unix::fs::symlink("busybox", root.join("bin").join(applet)).unwrap();
        }
        std::fs::copy("/usr/bin/tini-static", root.join("usr/bin/tini")).unwrap();
        std::fs::write(root.join("marker"), MARKER).unwrap();
        // A fresh ID per test run (tests run in parallel; a leftover must never be found).
        let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default();
        let nonce = format!("{:x}{:x}", std::process::id(), now.as_nanos());
        let id: String = format!("{nonce}{}", ID).chars().take(64).collect();
        let pids = Path::new("/sys/fs/cgroup/pids");
        let kubepods = pids.join("kubepods");
        let pod = kubepods.join(format!("pod{}-test", std::process::id()));
        let ctr = pod.join(&id);
        let mut cgroups = vec![ctr.clone(), pod.clone()];
        if !kubepods.exists() {
            cgroups.push(kubepods.clone());
        }
        std::fs::create_dir_all(&ctr).unwrap();
        let script = r#"set -e
echo 0 > "$1/cgroup.procs"
mount -t proc proc "$2/proc"
mount -t devpts -o newinstance,ptmxmode=0666,mode=0620 devpts "$2/dev/pts"
hostname web.proj
exec chroot "$2" /usr/bin/tini -s -- /bin/sleep 1000"#;
        let shim = Command::new("unshare")
            .args(["--pid", "--mount", "--uts", "--ipc", "--net", "--propagation", "private", "--kill-child"])
            .args(["/bin/sh", "-c", script, "runner"])
            .arg(&ctr)
            .arg(&root)
            .stdin(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let mut c = FakeContainer { id, cgroups, shim, _dir: dir };
        // Ready when tini runs (the runner script has chrooted): like the pod's readiness probe.
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let init = find_init(Path::new("/proc"), &c.id);
            let comm = init.and_then(|i| std::fs::read_to_string(format!("/proc/{}/comm", i.pid)).ok());
            if comm.as_deref() == Some("tini\n") {
                break;
            }
            if let Ok(Some(status)) = c.shim.try_wait() {
                let mut err = String::new();
                if let Some(mut e) = c.shim.stderr.take() {
                    let _ = e.read_to_string(&mut err);
                }
                panic!("the fake container exited ({status}): {err}");
            }
            assert!(Instant::now() < deadline, "the fake container did not start");
            std::thread::sleep(Duration::from_millis(10));
        }
        c
    }

    pub(crate) fn cgroup(&self) -> &Path {
        &self.cgroups[0]
    }
}

impl Drop for FakeContainer {
    fn drop(&mut self) {
        // Killing the stand-in shim kills the init (--kill-child), whose death ends its PID
        // namespace; anything left in the cgroup (an exec that escaped) is killed too.
        let _ = self.shim.kill();
        let _ = self.shim.wait();
        let deadline = Instant::now() + Duration::from_secs(5);
        for dir in &self.cgroups {
            loop {
                let left = std::fs::read_to_string(dir.join("cgroup.procs")).unwrap_or_default();
                for pid in left.lines().filter_map(|l| l.trim().parse::<i32>().ok()) {
                    // SAFETY: kill(2) on a PID of our own test cgroup.
                    unsafe { libc::kill(pid, libc::SIGKILL) };
                }
                if std::fs::remove_dir(dir).is_ok() || !dir.exists() || Instant::now() > deadline {
                    break;
                }
                std::thread::sleep(Duration::from_millis(10));
            }
        }
    }
}

fn exec_spec(argv: &[&str], io: ExecIo) -> ExecSpec {
    ExecSpec {
        argv: argv.iter().map(|s| s.to_string()).collect(),
        env: vec![("PATH".into(), "/bin:/usr/bin".into()), ("TERM".into(), "dumb".into())],
        cwd: "/".into(),
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

/// Reads from a PTY until `want` has appeared (the shell's prompt and echo come in pieces).
async fn read_until(r: &mut crate::runtime::BoxedRead, seen: &mut String, want: &str) {
    let mut buf = [0u8; 512];
    let deadline = Instant::now() + Duration::from_secs(10);
    while !seen.contains(want) {
        assert!(Instant::now() < deadline, "waited for {want:?}, got {seen:?}");
        let n = tokio::time::timeout(Duration::from_secs(10), r.read(&mut buf)).await.unwrap().unwrap();
        assert!(n > 0, "the console closed before {want:?}: {seen:?}");
        seen.push_str(&String::from_utf8_lossy(&buf[..n]));
    }
}

#[tokio::test]
async fn the_node_path_finds_a_real_container_and_execs_inside_its_root() {
    let c = FakeContainer::start();
    let t0 = Instant::now();
    let init = find_init(Path::new("/proc"), &c.id).unwrap();
    let scan = t0.elapsed();
    let mounts = parse_mountinfo(&std::fs::read_to_string("/proc/self/mountinfo").unwrap());
    let dirs = cgroup_dirs(&mounts, &init.cgroups, &c.id).unwrap();
    assert_eq!(dirs, [c.cgroup().to_path_buf()]);
    eprintln!("scanning /proc for the container's init took {scan:?}");
    let run = Running { pid: init.pid, start_time: init.start_time };

    // The marker exists only in the container's root: the exec is inside it, in the container's
    // UTS namespace and cgroup, under its PID namespace (tini is 1, sleep 2).
    let script = "cat /marker; hostname; cat /proc/self/cgroup; echo pid=$$";
    let mut p =
        crate::runtime::local::exec::exec_in(&run, &dirs, exec_spec(&["sh", "-c", script], ExecIo::Pipes))
            .await
            .unwrap();
    drop(p.stdin.take());
    let (out, err) = tokio::join!(read_all(p.stdout.take()), read_all(p.stderr.take()));
    assert_eq!(p.wait.await.unwrap(), 0, "{err}");
    assert!(out.starts_with(&format!("{MARKER}web.proj\n")), "{out}");
    assert!(out.lines().any(|l| l.starts_with("8:pids:/kubepods/") && l.ends_with(&c.id)), "{out}");
    let pid: u32 = out.lines().last().unwrap().strip_prefix("pid=").unwrap().parse().unwrap();
    assert_eq!(pid, p.pid);
    assert!(pid > 2, "a PID of the container's namespace, not the host's: {pid}");
    assert!(!Path::new("/marker").exists(), "the host has no /marker");

    // A console: a PTY from the container's devpts, resizable.
    let mut p = crate::runtime::local::exec::exec_in(
        &run,
        &dirs,
        exec_spec(
            &["sh", "-c", "tty; stty size; read x; stty size; echo got-$x"],
            ExecIo::Tty { rows: 24, cols: 80 },
        ),
    )
    .await
    .unwrap();
    let mut out = p.stdout.take().unwrap();
    let mut stdin = p.stdin.take().unwrap();
    let mut seen = String::new();
    read_until(&mut out, &mut seen, "24 80").await;
    assert!(seen.starts_with("/dev/pts/0"), "the container's own devpts: {seen:?}");
    p.pty.as_ref().unwrap().resize(50, 132).unwrap();
    stdin.write_all(b"hi\n").await.unwrap();
    read_until(&mut out, &mut seen, "got-hi").await;
    assert!(seen.contains("50 132"), "{seen:?}");
    assert_eq!(p.wait.await.unwrap(), 0);

    // A background process: adopted inside the container, its output in a host log file.
    let logs = tempfile::tempdir().unwrap();
    let log = logs.path().join("bg.log");
    let p = crate::runtime::local::exec::exec_in(
        &run,
        &dirs,
        exec_spec(&["sh", "-c", "echo bg-$$; cat /marker"], ExecIo::Detached { log: log.clone() }),
    )
    .await
    .unwrap();
    assert_eq!(p.wait.await.unwrap(), 0);
    let want = format!("bg-{}\n{MARKER}", p.pid);
    let deadline = Instant::now() + Duration::from_secs(5);
    while std::fs::read_to_string(&log).unwrap_or_default() != want && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert_eq!(std::fs::read_to_string(&log).unwrap(), want);

    // A PID that is no longer the init (start time differs) is refused, not entered.
    let stale = Running { pid: init.pid, start_time: init.start_time + 1 };
    let e = crate::runtime::local::exec::exec_in(&stale, &dirs, exec_spec(&["true"], ExecIo::Pipes))
        .await
        .err()
        .unwrap();
    assert_eq!(e.code(), "box_not_running");

    // The container's listening sockets, from its network namespace (the host's are not there).
    let _host = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let p = crate::runtime::local::exec::exec_in(
        &run,
        &dirs,
        exec_spec(&["sh", "-c", "exec busybox nc -l -p 4321"], ExecIo::Pipes),
    )
    .await
    .unwrap();
    let deadline = Instant::now() + Duration::from_secs(5);
    let mut found = listening(init.pid).unwrap();
    while found.is_empty() && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(10)).await;
        found = listening(init.pid).unwrap();
    }
    assert_eq!(
        found.iter().map(|l| (l.address.to_string(), l.port)).collect::<Vec<_>>(),
        [("::".into(), 4321)]
    );
    (p.kill)();
    assert_ne!(p.wait.await.unwrap(), 0);
}
