//! Issue 7, item 2: box isolation through the real server. A box cannot see host processes or
//! mounts, cannot reach the server's data dir or token, cannot re-exec a host binary through
//! `/proc/<pid>/exe`, and a freshly exec'd process holds only the descriptors the box opened
//! (0, 1 and 2), with no directory of the host among them (the runc CVE-2024-21626 class).

mod support;

use std::process::Command;

use forkr_tests::Server;
use reqwest::Method;
use serde_json::json;
use support::{Tally, req, send, sh};

const BOX: &str = "iso";

/// `POST …/exec` (buffered) in `default`.
fn exec_api(s: &Server, name: &str, body: serde_json::Value) -> support::Resp {
    send(req(s, Method::POST, &format!("/v1/projects/default/boxes/{name}/exec")).json(&body))
}

#[test]
fn host_processes_mounts_data_dir_and_token_are_out_of_reach() {
    let s = Server::start();
    s.ok(&["create", BOX]);
    let mut tally = Tally::default();
    let data = s.data.path().to_str().unwrap().to_owned();

    // Processes: only the box's own, none of the host's (the server, cargo, the test).
    let cmdlines = sh(&s, BOX, "for p in /proc/[0-9]*; do tr '\\0' ' ' < $p/cmdline 2>/dev/null; echo; done");
    let n = cmdlines.lines().filter(|l| !l.trim().is_empty()).count();
    assert!(n < 10, "the box sees {n} processes:\n{cmdlines}");
    for host in ["forkr-server", "cargo", "isolation-", "systemd", "sshd"] {
        assert!(!cmdlines.contains(host), "host process {host:?} visible in the box:\n{cmdlines}");
    }
    tally.one();

    // Mounts: the box's own filesystems, plus read-only single files the server writes (hosts,
    // resolv.conf, hostname) and /dev/null over masked /proc files. No host directory, nothing
    // writable of the host (like Docker's bind-mounted /etc/hosts, the source path is visible).
    let mounts = sh(&s, BOX, "cat /proc/self/mountinfo");
    let own = ["btrfs", "proc", "sysfs", "tmpfs", "devpts", "cgroup", "cgroup2", "mqueue"];
    for line in mounts.lines() {
        let f: Vec<&str> = line.split(' ').collect();
        let sep = f.iter().position(|x| *x == "-").expect("mountinfo separator");
        let (root, target, opts, fstype) = (f[3], f[4], f[5], f[sep + 1]);
        if own.contains(&fstype) {
            continue;
        }
        let file_from_run_dir = ["/etc/hosts", "/etc/resolv.conf", "/etc/hostname"].contains(&target)
            && root.starts_with(&format!("{data}/run/"))
            && opts.split(',').any(|o| o == "ro");
        let masked = fstype == "devtmpfs" && root == "/null" && target.starts_with("/proc/");
        assert!(file_from_run_dir || masked, "host mount visible in the box: {line}");
    }
    let out = s.run(&["exec", BOX, "--", "sh", "-c", "echo x >> /etc/hosts || echo x >> /etc/resolv.conf"]);
    assert!(!out.status.success(), "a host-side file mounted into the box is writable");
    tally.one();

    // `/..` is `/`, also after chroot tricks with the kept CAP_SYS_CHROOT.
    let ids = sh(
        &s,
        BOX,
        "stat -L -c %d:%i / /.. /../../.. /proc/1/root /proc/self/root/..; \
         mkdir -p /jail; cd /jail && chroot /jail /bin/busybox stat -c %d:%i /proc/self/root 2>/dev/null || true",
    );
    let first = ids.lines().next().unwrap().to_owned();
    for l in ids.lines().take(5) {
        assert_eq!(l, first, "a path above the box root leads elsewhere:\n{ids}");
    }
    tally.one();

    // The data dir and the token file are not reachable by any path we know.
    let token = s.data.path().join("token");
    for p in [
        token.display().to_string(),
        format!("/proc/1/root{}", token.display()),
        format!("/proc/self/root/../../..{}", token.display()),
        format!("/proc/1/cwd/../../..{}", token.display()),
        format!("{data}/forkr.db"),
        format!("{data}/fs/roots"),
    ] {
        let out = s.run(&["exec", BOX, "--", "ls", "-la", &p]);
        assert!(!out.status.success(), "{p} is reachable from the box");
        tally.one();
    }
    // The token appears nowhere a box can read: files, PID 1's environment, an exec's environment.
    let grep = format!(
        "grep -rl {} /bin /etc /root /home /box /tmp /run /usr /var /srv /work /proc/1/environ /proc/self/environ 2>/dev/null; true",
        s.token
    );
    assert_eq!(sh(&s, BOX, &grep), "", "the server token is readable in the box");
    tally.one();

    // The server's API is not on the box's loopback.
    let port = s.addr.rsplit(':').next().unwrap();
    let out = s.run(&[
        "exec",
        BOX,
        "--",
        "wget",
        "-q",
        "-T",
        "2",
        "-O",
        "-",
        &format!("http://127.0.0.1:{port}/healthz"),
    ]);
    assert!(!out.status.success(), "the API is reachable on the box's loopback");
    tally.one();

    // Kernel interfaces a box must not touch (capabilities dropped, /proc/sys and /sys read-only,
    // block devices denied). A tool missing from the base makes its probe "work" (exit 0), so a
    // probe can never pass for the wrong reason.
    for (what, script) in [
        ("sysctl write", "echo 1 > /proc/sys/kernel/sysrq"),
        ("sysfs write", "echo x > /sys/kernel/uevent_helper"),
        ("mount", "command -v mount || exit 0; mkdir -p /mnt2 && mount -t tmpfs none /mnt2"),
        ("remount /", "command -v mount || exit 0; mount -o remount,rw /"),
        ("new mount namespace", "command -v unshare || exit 0; unshare -m true"),
        ("kernel log", "command -v dmesg || exit 0; dmesg"),
        ("raw block device", "mknod /work-vda b 254 0 && head -c1 /work-vda"),
        // busybox `date -s` exits 0 even when settimeofday fails, so check the year.
        ("set the clock", "date -s 2000-01-01 >/dev/null 2>&1; [ \"$(date +%Y)\" = 2000 ]"),
    ] {
        let out = s.run(&["exec", BOX, "--", "sh", "-c", script]);
        assert!(!out.status.success(), "{what} worked inside the box");
        tally.one();
    }
    // No dangerous capability in the effective or bounding set of an exec'd process.
    let caps = sh(&s, BOX, "grep -E '^Cap(Eff|Bnd):' /proc/self/status");
    for line in caps.lines() {
        let mask = u64::from_str_radix(line.split_whitespace().nth(1).unwrap(), 16).unwrap();
        for (bit, name) in [
            (2, "DAC_READ_SEARCH"),
            (12, "NET_ADMIN"),
            (16, "SYS_MODULE"),
            (17, "SYS_RAWIO"),
            (19, "SYS_PTRACE"),
            (21, "SYS_ADMIN"),
            (22, "SYS_BOOT"),
            (25, "SYS_TIME"),
            (34, "SYSLOG"),
            (38, "PERFMON"),
            (39, "BPF"),
        ] {
            assert_eq!(mask & (1 << bit), 0, "CAP_{name} in {line}");
        }
    }
    tally.one();
    tally.report("isolation probes", 20);
}

#[test]
fn proc_exe_never_exposes_a_host_binary() {
    let s = Server::start();
    s.ok(&["create", BOX]);
    let mut tally = Tally::default();
    // PID 1 is the box's own tini.
    assert_eq!(sh(&s, BOX, "readlink /proc/1/exe"), "/usr/bin/tini\n");
    tally.one();

    // A scanner inside the box reads every /proc/<pid>/exe it can while execs start: the forked
    // helpers carry the server's binary until they exec, so they must be unreadable (non-dumpable).
    let scanner = "rm -f /seen /scanned; while [ ! -e /stop ]; do for p in /proc/[0-9]*; do \
        l=$(readlink $p/exe 2>/dev/null) || continue; \
        case \"$l\" in /bin/busybox|/usr/bin/tini) ;; *) echo \"$p $l\" >> /seen;; esac; \
        head -c 4 $p/exe >/dev/null 2>&1 && echo >> /scanned; done; done";
    s.ok(&["exec", BOX, "--bg", "--", "sh", "-c", scanner]);
    for i in 0..40 {
        let body = json!({"cmd": ["true"]});
        assert_eq!(exec_api(&s, BOX, body).status, 200, "exec {i}");
        tally.one();
    }
    // Each box-side attempt to re-exec the host binary through a magic link.
    sh(
        &s,
        BOX,
        "ln -sf /proc/self/exe /work-self-exe 2>/dev/null; mkdir -p /work; ln -sf /proc/self/exe /work/self-exe",
    );
    for cmd in [
        vec!["/proc/self/exe", "--version"],
        vec!["/work/self-exe", "--version"],
        vec!["/proc/1/exe", "--version"],
    ] {
        let r = exec_api(&s, BOX, json!({ "cmd": cmd }));
        let out = r.json();
        let text = format!("{}{}", out["stdout"], out["stderr"]);
        assert!(!text.contains("forkr"), "{cmd:?} ran a host binary: {text}");
        tally.one();
    }
    sh(&s, BOX, "touch /stop");
    std::thread::sleep(std::time::Duration::from_millis(300));
    let seen = s.run(&["exec", BOX, "--", "cat", "/seen"]);
    assert_eq!(
        String::from_utf8_lossy(&seen.stdout),
        "",
        "host binaries were visible through /proc/<pid>/exe"
    );
    let scanned = sh(&s, BOX, "wc -l < /scanned");
    assert!(scanned.trim().parse::<u32>().unwrap_or(0) > 0, "the scanner never ran");
    tally.report("/proc/<pid>/exe probes", 40);
}

/// CVE-2019-5736: a box makes its shell a link to `/proc/self/exe`, so the next exec, still a fork
/// of the server until it execs, runs the server's own binary inside the box. That process is then
/// dumpable, and a box process could keep its `/proc/<pid>/exe` open and write the host's server
/// binary once nothing executes it (a restart). The server runs from a sealed in-memory copy of
/// itself, so what the box reaches is that copy, which nobody can write.
#[test]
fn a_shell_linked_to_proc_self_exe_reaches_only_a_sealed_copy() {
    let s = Server::start();
    s.ok(&["create", BOX]);
    // A scanner (started while the shell still works) lists every /proc/<pid>/exe that is not a
    // box binary and tries to open each for writing, without truncating.
    let scanner = "rm -f /seen /wrote; while [ ! -e /stop ]; do \
        ls -l /proc/[0-9]*/exe 2>/dev/null | grep -v -e /bin/busybox -e /usr/bin/tini >> /seen; \
        for e in /proc/[0-9]*/exe; do case \"$(readlink $e 2>/dev/null)\" in *forkr*) \
          (: >> $e) 2>/dev/null && echo \"$e\" >> /wrote;; esac; done; done";
    s.ok(&["exec", BOX, "--bg", "--", "sh", "-c", scanner]);
    // A real root filesystem (box-base) has the dynamic loader and libc the server binary needs;
    // the tiny test base does not, so give the box the host's copies.
    let ldd = Command::new("ldd").arg(forkr_tests::bin("forkr-server")).output().unwrap();
    for lib in String::from_utf8_lossy(&ldd.stdout).split_whitespace().filter(|w| w.starts_with('/')) {
        let r = support::put_file(&s, BOX, lib, &std::fs::read(lib).unwrap(), true);
        assert_eq!(r.status, 200, "{lib}: {}", r.text());
        sh(&s, BOX, &format!("chmod 755 {lib}"));
    }
    sh(&s, BOX, "ln -s /proc/self/exe /bin/sh.evil && mv /bin/sh.evil /bin/sh");
    // Every exec now runs the server binary (which rejects its arguments and exits).
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(40);
    let mut ran_host_binary = 0;
    for _ in 0..300 {
        let r = exec_api(&s, BOX, json!({"cmd": ["true"]}));
        // clap's answer to the shell's arguments: the server binary ran.
        if r.text().contains("unrecognized subcommand") {
            ran_host_binary += 1;
        }
        if std::time::Instant::now() > deadline {
            break;
        }
    }
    assert!(ran_host_binary > 0, "the /proc/self/exe link was not followed: the test did not attack");
    // Restore the shell through the server (exec cannot run anything now) and stop the scanner.
    let busybox = std::fs::read("/usr/bin/busybox").unwrap();
    let r = send(
        req(&s, Method::PUT, &format!("/v1/projects/default/boxes/{BOX}/files"))
            .query(&[("path", "/bin/sh"), ("mode", "0755")])
            .body(busybox),
    );
    assert_eq!(r.status, 200, "{}", r.text());
    sh(&s, BOX, "touch /stop");
    std::thread::sleep(std::time::Duration::from_millis(300));
    let seen = String::from_utf8_lossy(&support::get_file(&s, BOX, "/seen").body).into_owned();
    let wrote = support::get_file(&s, BOX, "/wrote");
    assert_eq!(wrote.status, 404, "the box opened a server executable for writing: {}", wrote.text());
    eprintln!("{ran_host_binary} execs ran the server binary; the scanner saw:\n{seen}");
    for line in seen.lines().filter(|l| l.contains(" -> ")) {
        let target = line.split(" -> ").nth(1).unwrap_or_default();
        // The sealed copy, or the busybox copy put back as /bin/sh at the end.
        assert!(
            target.starts_with("/memfd:") || target == "/bin/sh",
            "a box process ran a host file: {line}"
        );
    }
}

#[test]
fn builtin_init_pid1_is_not_readable() {
    let s = Server::start();
    // A base without tini: the server's own minimal init runs as PID 1.
    let dir = s.work.path().join("no-tini");
    std::fs::create_dir_all(&dir).unwrap();
    forkr_tests::tiny_base_tarball(&dir);
    let root = dir.join("tiny-root");
    std::fs::remove_file(root.join("usr/bin/tini")).unwrap();
    let tarball = dir.join("no-tini.tar.gz");
    let st = Command::new("tar").arg("-C").arg(&root).arg("-czf").arg(&tarball).arg(".").status().unwrap();
    assert!(st.success());
    s.import_base("no-tini", &tarball);
    s.ok(&["create", BOX, "--base", "no-tini"]);
    for probe in [
        "readlink /proc/1/exe",
        "head -c 4 /proc/1/exe",
        "cat /proc/1/environ",
        "readlink /proc/1/fd/0",
        "cat /proc/1/maps",
    ] {
        let out = s.run(&["exec", BOX, "--", "sh", "-c", probe]);
        assert!(
            !out.status.success(),
            "{probe} worked on the built-in init: {}",
            String::from_utf8_lossy(&out.stdout)
        );
    }
}

/// The descriptors of process `pid` in the box: `fd -> target`, one per line, sorted by fd.
fn fds_of(s: &Server, pid: &str) -> Vec<(u32, String)> {
    let text = sh(s, BOX, &format!("cd /proc/{pid}/fd && for f in *; do echo \"$f $(readlink $f)\"; done"));
    let mut v: Vec<(u32, String)> = text
        .lines()
        .filter_map(|l| l.split_once(' '))
        .filter_map(|(fd, t)| Some((fd.parse().ok()?, t.to_owned())))
        .collect();
    v.sort();
    v
}

/// Whether an fd target is something a box process may hold: a pipe, a socket, a terminal of the
/// box, /dev/null, or (for a background exec) its log file. Never a directory.
fn harmless(target: &str) -> bool {
    target.starts_with("pipe:")
        || target.starts_with("socket:")
        || target.starts_with("/dev/pts/")
        || target == "/dev/null"
        || target.ends_with(".log")
}

#[test]
fn fresh_execs_hold_only_0_1_2_and_no_host_directory() {
    let s = Server::start();
    s.ok(&["create", BOX]);
    let mut tally = Tally::default();
    let check = |what: &str, fds: Vec<(u32, String)>| {
        let nums: Vec<u32> = fds.iter().map(|(n, _)| *n).collect();
        assert_eq!(nums, [0, 1, 2], "{what}: fds {fds:?}");
        for (n, t) in &fds {
            assert!(harmless(t), "{what}: fd {n} -> {t}");
        }
    };

    // PID 1.
    check("PID 1", fds_of(&s, "1"));
    tally.one();
    // A background exec (adopted by PID 1), a streaming exec (`4kr exec`, WebSocket pipes) and a
    // buffered one (POST), each sleeping so another exec can look at it.
    let bg = s.ok(&["exec", BOX, "--bg", "--", "sleep", "30"]);
    let pid = bg.trim().trim_start_matches("pid=").to_owned();
    check("background exec", fds_of(&s, &pid));
    tally.one();
    let mut streaming = s
        .cmd(&["exec", BOX, "--", "sh", "-c", "echo $$ > /streaming.pid; exec sleep 30"])
        .stdout(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let api = {
        let (url, token) = (s.url.clone(), s.token.clone());
        std::thread::spawn(move || {
            support::client()
                .post(format!("{url}/v1/projects/default/boxes/{BOX}/exec"))
                .bearer_auth(token)
                .json(&json!({"cmd": ["sh", "-c", "echo $$ > /buffered.pid; exec sleep 3"]}))
                .send()
                .map(|r| r.status().as_u16())
        })
    };
    let wait_pid = |file: &str| {
        for _ in 0..100 {
            if let Ok(o) = s.cmd(&["exec", BOX, "--", "cat", file]).output()
                && o.status.success()
            {
                return String::from_utf8_lossy(&o.stdout).trim().to_owned();
            }
            std::thread::sleep(std::time::Duration::from_millis(50));
        }
        panic!("{file} never appeared");
    };
    check("streaming exec", fds_of(&s, &wait_pid("/streaming.pid")));
    tally.one();
    check("buffered exec", fds_of(&s, &wait_pid("/buffered.pid")));
    tally.one();
    let _ = streaming.kill();
    let _ = streaming.wait();
    assert_eq!(api.join().unwrap().unwrap(), 200);

    // CVE-2024-21626: a working directory through /proc magic links would land on whatever
    // directory the server held open at fork time. Every such path is refused.
    let mut wds: Vec<String> = (0..64).map(|n| format!("/proc/self/fd/{n}")).collect();
    wds.extend(
        ["/proc/self/cwd", "/proc/self/root", "/proc/1/cwd", "/proc/1/root", "/proc/thread-self/cwd"]
            .map(String::from),
    );
    for wd in wds {
        let r = exec_api(&s, BOX, json!({"cmd": ["sh", "-c", "pwd; ls -a; stat -c %d:%i /"], "wd": wd}));
        if r.status == 200 {
            panic!("exec in {wd} ran: {}", r.text());
        }
        r.error(400, "invalid_cwd");
        tally.one();
    }
    tally.report("fd and cwd probes", 70);
}
