//! The `4kr` side of the wire contract, end to end against the real server: documented outputs and
//! errors, exit codes, stdin streaming, terminals, interrupts, file modes and ephemeral cleanup.
//!
//! They replaced a stand-in server the CLI was first tested against; what needs no server at all
//! stays in 4kr/tests/cli.rs.

use std::io::Read as _;
use std::process::Stdio;
use std::time::{Duration, Instant};

use forkr_tests::Server;

fn out(o: &std::process::Output) -> (Option<i32>, String, String) {
    (
        o.status.code(),
        String::from_utf8_lossy(&o.stdout).into_owned(),
        String::from_utf8_lossy(&o.stderr).into_owned(),
    )
}

fn box_names(s: &Server, project: &str) -> Vec<String> {
    let list: serde_json::Value = serde_json::from_str(&s.ok(&["list", "-p", project, "--json"])).unwrap();
    list.as_array().unwrap().iter().map(|b| b["name"].as_str().unwrap().to_owned()).collect()
}

#[test]
fn documented_outputs_and_errors() {
    let s = Server::start();
    assert_eq!(out(&s.run(&["create", "web-1"])), (Some(0), "web-1: created\n".into(), "".into()));
    s.ok(&["create", "db", "-p", "other", "--tag", "x", "-e", "A=1"]);

    let list = s.ok(&["list"]);
    let header: Vec<&str> = list.lines().next().unwrap_or_default().split_whitespace().collect();
    assert_eq!(header, ["NAME", "STATUS", "BASE", "URL", "CREATED"]);
    assert!(list.lines().nth(1).unwrap_or_default().starts_with("web-1   running   box-base   "), "{list}");
    let listed: serde_json::Value = serde_json::from_str(&s.ok(&["list", "-j", "-p", "other"])).unwrap();
    assert_eq!(listed[0]["env"]["A"], "1");
    let shown = s.ok(&["show", "other:db"]);
    assert!(
        shown.starts_with("name:                      db\nproject:                   other\n"),
        "{shown}"
    );
    assert_eq!(s.show("other.db")["tags"], serde_json::json!(["x"]));

    assert_eq!(
        out(&s.run(&["update", "web-1", "FOO=1"])),
        (Some(1), "".into(), "Error: no updates provided\n".into())
    );
    let updated: serde_json::Value =
        serde_json::from_str(&s.ok(&["update", "web-1", "PORT=3000", "-j"])).unwrap();
    assert_eq!(updated["port"], 3000);

    // Per box: `<name>: deleted` or `<name>: error: <msg>`; any error exits non-zero.
    let (code, stdout, stderr) = out(&s.run(&["delete", "web-1", "ghost"]));
    assert_eq!(code, Some(1));
    assert_eq!(stdout, "web-1: error: box is running\nghost: deleted\n");
    assert_eq!(stderr, "Error: 1 of 2 boxes could not be deleted\n");
    assert_eq!(s.ok(&["stop", "web-1"]), "web-1: stopped\n");
    assert_eq!(s.ok(&["resume", "web-1"]), "web-1: running\n");
    let report: serde_json::Value =
        serde_json::from_str(&s.ok(&["rm", "-f", "web-1", "other:db", "-j"])).unwrap();
    assert_eq!(
        report,
        serde_json::json!([{"name": "web-1", "deleted": true}, {"name": "other:db", "deleted": true}])
    );
    assert!(box_names(&s, "default").is_empty() && box_names(&s, "other").is_empty());
    assert_eq!(
        out(&s.run(&["show", "web-1"])),
        (Some(1), "".into(), "Error: box \"web-1\" not found\n".into())
    );
}

#[test]
fn wrong_token_is_explained() {
    let s = Server::start();
    let refused = "Error: invalid token\n  help: the token from $FORKR_TOKEN was refused; check that it matches \
                   the server's token file (forkr-server prints its path when it starts)\n";
    let o = s.cmd(&["list"]).env("FORKR_TOKEN", "nope").output().unwrap();
    assert_eq!(out(&o), (Some(1), "".into(), refused.into()));
    // The WebSocket upgrade is refused the same way.
    let o = s.cmd(&["exec", "web", "--", "true"]).env("FORKR_TOKEN", "nope").output().unwrap();
    assert_eq!(out(&o), (Some(1), "".into(), refused.into()));
    // No token at all (and no readable token file to fall back on).
    let o = s.cmd(&["list"]).env_remove("FORKR_TOKEN").env("FORKR_DATA_DIR", s.work.path()).output().unwrap();
    let (code, _, stderr) = out(&o);
    assert_eq!(code, Some(1));
    assert!(stderr.contains("help: no token was given"), "{stderr}");
}

#[test]
fn exec_streams_and_keeps_the_exit_code() {
    let s = Server::start();
    s.ok(&["create", "web"]);
    let o = s.run(&["exec", "web", "--sh", "--", "echo out; echo err >&2; exit 7"]);
    assert_eq!(out(&o), (Some(7), "out\n".into(), "err\n".into()));
    // stdin is streamed, and its end is signalled.
    let o = s.run_stdin(&["exec", "web", "--", "cat"], b"line 1\nline 2\n");
    assert_eq!(out(&o), (Some(0), "line 1\nline 2\n".into(), "".into()));
    // Large output arrives whole.
    let o = s.run(&["exec", "web", "--", "head", "-c", "3000000", "/dev/zero"]);
    assert_eq!((o.status.code(), o.stdout.len()), (Some(0), 3_000_000));
    // No command and stdin not a terminal: the shell reads the script from stdin.
    let o = s.run_stdin(&["exec", "web"], b"echo from-script\nexit 3\n");
    assert_eq!(out(&o), (Some(3), "from-script\n".into(), "".into()));
    let o = s.run(&[
        "exec",
        "web",
        "--env",
        "GREETING=hi",
        "--cwd",
        "/srv",
        "--",
        "sh",
        "-c",
        "echo $GREETING; pwd",
    ]);
    assert_eq!(out(&o).1, "hi\n/srv\n");
    assert_eq!(
        out(&s.run(&["exec", "nope", "--", "true"])),
        (Some(1), "".into(), "Error: box \"nope\" not found\n".into())
    );
    // `.` is the box the command runs in.
    let o = s
        .cmd(&["exec", ".", "--", "echo", "dot"])
        .env("BOX_NAME", "web")
        .env("FORKR_PROJECT", "default")
        .output()
        .unwrap();
    assert_eq!(out(&o).1, "dot\n");
    // ps passes its arguments and the exit code through; logs --json wraps the log.
    let o = s.run(&["ps", "web", "--", "-o", "comm"]);
    assert_eq!(o.status.code(), Some(0));
    assert!(String::from_utf8_lossy(&o.stdout).contains("tini"), "{:?}", out(&o));
    let bg: serde_json::Value =
        serde_json::from_str(&s.ok(&["exec", "web", "--bg", "-j", "--", "echo", "bg-out"])).unwrap();
    let pid = bg["pid"].as_u64().unwrap().to_string();
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let log: serde_json::Value =
            serde_json::from_str(&s.ok(&["logs", "web", "--pid", &pid, "--json"])).unwrap();
        if log["log"] == "bg-out\n" {
            assert_eq!(log["pid"].as_u64().unwrap().to_string(), pid);
            break;
        }
        assert!(Instant::now() < deadline, "{log}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn files_into_directories_and_failed_downloads() {
    use std::os::unix::fs::PermissionsExt as _;
    let s = Server::start();
    s.ok(&["create", "web"]);
    let d = s.work.path();
    let local = d.join("run.sh");
    std::fs::write(&local, "#!/bin/sh\necho hi\n").unwrap();
    std::fs::set_permissions(&local, std::fs::Permissions::from_mode(0o750)).unwrap();
    // put into a directory keeps the name.
    s.ok(&["put", "run.sh", "web:/srv/"]);
    assert_eq!(s.ok(&["exec", "web", "--", "stat", "-c", "%a", "/srv/run.sh"]), "750\n");
    // get into an existing directory keeps the name; no temporary file is left behind.
    std::fs::create_dir(d.join("out")).unwrap();
    s.ok(&["cp", "default:web:/srv/run.sh", "out"]);
    let entries: Vec<_> = std::fs::read_dir(d.join("out")).unwrap().map(|e| e.unwrap().file_name()).collect();
    assert_eq!(entries, ["run.sh"]);
    assert_eq!(std::fs::metadata(d.join("out/run.sh")).unwrap().permissions().mode() & 0o7777, 0o750);

    let (code, _, stderr) = out(&s.run(&["cp", "web:/missing", "x"]));
    assert_eq!(code, Some(1));
    assert!(stderr.starts_with("Error: ") && stderr.contains("/missing"), "{stderr}");
    assert!(!d.join("x").exists(), "a failed download leaves nothing behind");
}

#[test]
fn ephemeral_boxes_are_always_deleted() {
    let s = Server::start();
    let (code, stdout, stderr) = out(&s.run(&["exec", "-", "--", "sh", "-c", "echo in-box; exit 4"]));
    assert_eq!((code, stdout.as_str()), (Some(4), "in-box\n"));
    let name = stderr
        .strip_prefix("ephemeral fork: ")
        .and_then(|r| r.strip_suffix('\n'))
        .unwrap_or_else(|| panic!("{stderr}"));
    let parts: Vec<&str> = name.splitn(3, '-').collect();
    assert_eq!(parts[0], "ephemeral");
    assert!(parts[1].parse::<u32>().is_ok() && parts[2].parse::<u128>().is_ok(), "{name}");
    assert!(box_names(&s, "default").is_empty(), "deleted after exec");

    // A failing command in a project given as project:-; still deleted.
    let (code, _, stderr) = out(&s.run(&["exec", "p:-", "--", "/nonexistent/cmd"]));
    assert_ne!(code, Some(0), "{stderr}");
    assert!(box_names(&s, "p").is_empty());

    // cp to `-`: created, written, deleted.
    std::fs::write(s.work.path().join("f"), "x").unwrap();
    let (code, _, stderr) = out(&s.run(&["cp", "f", "-:/tmp/f"]));
    assert_eq!(code, Some(0), "{stderr}");
    assert!(stderr.starts_with("ephemeral fork: ephemeral-"), "{stderr}");
    assert!(box_names(&s, "default").is_empty());
}

#[test]
fn ctrl_c_during_ephemeral_exec_still_deletes() {
    let s = Server::start();
    let mut child = s
        .cmd(&["exec", "-", "--", "sleep", "30"])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // Wait until the box runs the command.
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        if let Some(name) = box_names(&s, "default").first() {
            let ps = s.run(&["exec", name, "--sh", "--", "cat /proc/[0-9]*/comm | grep -qx sleep"]);
            if ps.status.success() {
                break;
            }
            eprintln!("DEBUG {:?}", out(&ps));
        }
        assert!(Instant::now() < deadline, "the ephemeral exec never started");
        std::thread::sleep(Duration::from_millis(50));
    }
    nix::sys::signal::kill(nix::unistd::Pid::from_raw(child.id() as i32), nix::sys::signal::Signal::SIGINT)
        .unwrap();
    let status = child.wait().unwrap();
    assert_eq!(status.code(), Some(130));
    assert!(box_names(&s, "default").is_empty(), "the ephemeral box was deleted after Ctrl-C");
    let mut stderr = String::new();
    child.stderr.as_mut().unwrap().read_to_string(&mut stderr).unwrap();
    assert!(stderr.starts_with("ephemeral fork: ephemeral-"), "{stderr}");
}

#[test]
fn console_without_a_terminal_relays_piped_input() {
    let s = Server::start();
    s.ok(&["create", "web"]);
    let o = s.run_stdin(&["console", "web"], b"echo console-ok\nexit 5\n");
    let (code, stdout, _) = out(&o);
    assert_eq!(code, Some(5));
    assert!(stdout.contains("console-ok"), "{stdout:?}");
}

/// `4kr exec` on a terminal: a PTY is used, the terminal is in raw mode while the command runs, and
/// it is restored afterwards, also when the command fails.
#[test]
fn terminal_exec_restores_the_terminal() {
    use nix::sys::termios::{LocalFlags, tcgetattr};
    use std::os::fd::AsFd as _;
    let s = Server::start();
    s.ok(&["create", "web"]);
    let pty = nix::pty::openpty(None, None).unwrap();
    let echo = || tcgetattr(pty.slave.as_fd()).unwrap().local_flags.contains(LocalFlags::ECHO);
    assert!(echo());
    // Drain the master side so the command never blocks on a full terminal buffer.
    let mut master = std::fs::File::from(pty.master.try_clone().unwrap());
    let drain = std::thread::spawn(move || {
        let mut seen = Vec::new();
        let mut buf = [0u8; 4096];
        while let Ok(n) = master.read(&mut buf) {
            if n == 0 {
                break;
            }
            seen.extend_from_slice(&buf[..n]);
            if String::from_utf8_lossy(&seen).contains("not found") {
                break;
            }
        }
        String::from_utf8_lossy(&seen).into_owned()
    });
    for (target, expect) in [("web", Some(3)), ("missing", Some(1))] {
        let tty = || Stdio::from(pty.slave.try_clone().unwrap());
        let status = s
            .cmd(&["exec", target, "--", "sh", "-c", "test -t 0 && echo on-a-tty; sleep 0.3; exit 3"])
            .stdin(tty())
            .stdout(tty())
            .stderr(tty())
            .status()
            .unwrap();
        assert_eq!(status.code(), expect, "{target}");
        assert!(echo(), "terminal left in raw mode after exec {target}");
    }
    let seen = drain.join().unwrap();
    assert!(seen.contains("on-a-tty"), "the command did not get a terminal: {seen:?}");
}
