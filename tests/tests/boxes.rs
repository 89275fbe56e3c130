//! Issue 2 end to end: the box lifecycle through the real `4kr` and `forkr-server`.

use forkr_tests::Server;

#[test]
fn lifecycle_exec_stop_resume_delete() {
    let s = Server::start();
    s.ok(&["create", "web-1"]);
    assert_eq!(s.ok(&["exec", "web-1", "--", "echo", "hello"]), "hello\n");

    let list = s.ok(&["list"]);
    assert!(list.contains("web-1") && list.contains("running"), "{list}");
    let info = s.show("web-1");
    assert_eq!(info["status"], "running");
    assert_eq!(info["project"], "default");
    assert_eq!(info["base"], "box-base");

    // /tmp is wiped by stop/resume, /root survives.
    s.ok(&["exec", "web-1", "--", "sh", "-c", "echo t > /tmp/t && echo r > /root/r"]);
    s.ok(&["stop", "web-1"]);
    assert_eq!(s.show("web-1")["status"], "stopped");
    s.ok(&["resume", "web-1"]);
    assert_eq!(s.ok(&["exec", "web-1", "--", "cat", "/root/r"]), "r\n");
    let out = s.run(&["exec", "web-1", "--", "cat", "/tmp/t"]);
    assert!(!out.status.success(), "/tmp/t survived a stop/resume");

    // Exit codes propagate.
    let out = s.run(&["exec", "web-1", "--", "sh", "-c", "exit 7"]);
    assert_eq!(out.status.code(), Some(7));

    // Delete refuses a running box, works with --force, and is idempotent.
    let out = s.run(&["delete", "web-1"]);
    assert!(!out.status.success());
    let report = String::from_utf8_lossy(&out.stdout);
    assert!(report.contains("web-1: error: box is running"), "{report}");
    assert_eq!(s.ok(&["delete", "--force", "web-1"]), "web-1: deleted\n");
    assert!(!s.ok(&["list"]).contains("web-1"));
    s.ok(&["rm", "web-1"]);
}

#[test]
fn inside_a_box() {
    let s = Server::start();
    s.ok(&["create", "inner", "-p", "proj", "-e", "GREETING=hi there"]);
    let pid1 = s.ok(&["exec", "proj:inner", "--", "cat", "/proc/1/cmdline"]);
    assert!(pid1.starts_with("/usr/bin/tini\0-s\0--\0/bin/bash\0-lc\0sleep infinity"), "{pid1:?}");
    assert_eq!(s.ok(&["exec", "proj.inner", "--", "hostname"]), "inner.proj\n");
    // Injected and user variables reach non-login children too.
    let env = s.ok(&[
        "exec",
        "-p",
        "proj",
        "inner",
        "--sh",
        "--",
        "env -i PATH=/bin sh -c 'cat /etc/boxes-env'; sh -c 'echo $BOX_NAME/$FORKR_PROJECT/$GREETING'",
    ]);
    assert!(env.contains("export BOX_NAME=\"inner\""), "{env}");
    assert!(env.ends_with("inner/proj/hi there\n"), "{env}");
    // Reserved names are refused.
    let err = s.fails(&["create", "bad", "-e", "BOX_NAME=x"]);
    assert!(err.contains("environment variable is reserved"), "{err}");
    // The box sees only its own processes and none of the host's files.
    let ps = s.ok(&["exec", "proj:inner", "--", "sh", "-c", "ls /proc | grep -c '^[0-9]'"]);
    let n: u32 = ps.trim().parse().unwrap();
    assert!(n < 10, "box sees {n} processes");
    let marker = s.work.path().join("host-marker");
    std::fs::write(&marker, "host").unwrap();
    let out = s.run(&["exec", "proj:inner", "--", "cat", marker.to_str().unwrap()]);
    assert!(!out.status.success(), "host file visible in the box");
    let out = s.run(&["exec", "proj:inner", "--", "cat", s.data.path().join("token").to_str().unwrap()]);
    assert!(!out.status.success(), "server token visible in the box");
}

#[test]
fn copy_files_both_ways_with_modes() {
    use std::os::unix::fs::PermissionsExt;
    let s = Server::start();
    s.ok(&["create", "files"]);
    let local = s.work.path().join("script.sh");
    std::fs::write(&local, "#!/bin/sh\necho copied\n").unwrap();
    std::fs::set_permissions(&local, std::fs::Permissions::from_mode(0o751)).unwrap();
    s.ok(&["cp", local.to_str().unwrap(), "files:/srv/script.sh"]);
    assert_eq!(s.ok(&["exec", "files", "--", "/srv/script.sh"]), "copied\n");
    assert_eq!(s.ok(&["exec", "files", "--", "stat", "-c", "%a", "/srv/script.sh"]), "751\n");

    s.ok(&["exec", "files", "--", "sh", "-c", "echo back > /root/out.txt && chmod 600 /root/out.txt"]);
    let back = s.work.path().join("out.txt");
    s.ok(&["get", "files:/root/out.txt", back.to_str().unwrap()]);
    assert_eq!(std::fs::read_to_string(&back).unwrap(), "back\n");
    assert_eq!(std::fs::metadata(&back).unwrap().permissions().mode() & 0o777, 0o600);

    let err = s.fails(&["cp", "files:/root", back.to_str().unwrap()]);
    assert!(err.contains("only files are supported (directories require -r, not yet supported)"), "{err}");
    let err = s.fails(&["cp", back.to_str().unwrap(), back.to_str().unwrap()]);
    assert!(!err.is_empty());
}

#[test]
fn ephemeral_and_background() {
    let s = Server::start();
    let out = s.run(&["exec", "-", "--", "cat", "/etc/hostname"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("ephemeral fork: ephemeral-"), "{stderr}");
    let list = s.ok(&["list", "--json"]);
    assert_eq!(list.trim(), "[]", "ephemeral box was not deleted: {list}");

    s.ok(&["create", "bg"]);
    let out = s.ok(&["exec", "bg", "--bg", "--", "sh", "-c", "echo started; sleep 0.2; echo finished"]);
    let pid = out.trim().strip_prefix("pid=").unwrap_or_else(|| panic!("{out}")).to_owned();
    let logs = s.ok(&["logs", "bg", "--pid", &pid, "--follow"]);
    assert_eq!(logs, "started\nfinished\n");
    assert_eq!(s.ok(&["tail", "bg", "--pid", &pid]), "started\nfinished\n");
}

#[test]
fn server_restart_keeps_boxes_running() {
    let mut s = Server::start();
    s.ok(&["create", "survivor"]);
    let pid_before = s.show("survivor")["pid"].clone();
    s.kill9();
    s.spawn();
    let info = s.show("survivor");
    assert_eq!(info["status"], "running");
    assert_eq!(info["pid"], pid_before, "the box was restarted instead of re-attached");
    assert_eq!(s.ok(&["exec", "survivor", "--", "echo", "still here"]), "still here\n");
}
