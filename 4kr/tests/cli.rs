//! The real `4kr` binary on errors that need no server: documented texts, exit codes, config files.

use std::path::Path;

use assert_cmd::Command;

/// `4kr` in an empty directory with a clean environment, so no developer config or variable leaks in.
fn kr(dir: &Path) -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_4kr"));
    c.env_clear().env("PATH", std::env::var_os("PATH").unwrap_or_default()).env("HOME", dir).current_dir(dir);
    // Point the token-file fallback at the test dir, so a real /var/lib/forkr/token is never read.
    c.env("FORKR_DATA_DIR", dir.join("no-data"));
    c
}

fn stderr_of(out: &std::process::Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

fn stdout_of(out: &std::process::Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// A port with nothing listening on it.
fn dead_url() -> String {
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    format!("http://127.0.0.1:{port}")
}

#[test]
fn profile_without_url_is_the_documented_error() {
    let dir = tempfile::tempdir().unwrap();
    let out = kr(dir.path()).env("FORKR_PROFILE", "staging").arg("list").output().unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = stderr_of(&out);
    assert!(
        err.starts_with("Error: profile \"staging\" is selected but FORKR_PROFILE_STAGING_URL is not set\n"),
        "{err}"
    );
    // The --profile flag selects too.
    let out = kr(dir.path()).args(["--profile", "prod-eu", "show", "web"]).output().unwrap();
    assert!(
        stderr_of(&out)
            .contains("Error: profile \"prod-eu\" is selected but FORKR_PROFILE_PROD_EU_URL is not set")
    );
}

#[test]
fn documented_usage_errors() {
    let dir = tempfile::tempdir().unwrap();
    let cases: &[(&[&str], &str)] = &[
        (&["create", "web", "--base", "b", "--fork", "a"], "Error: --base cannot be used with --fork"),
        (&["exec", "--json", "web", "--", "true"], "Error: --json is not supported in foreground mode"),
        (&["exec", "web", "-j", "--", "true"], "Error: --json is not supported in foreground mode"),
        (&["cp", "a:/x", "b:/y"], "Error: cp copies between this machine and one box"),
        (&["cp", "x", "y"], "Error: cp needs exactly one box path"),
        (
            &["cp", ".", "web:/tmp/x"],
            "Error: only files are supported (directories require -r, not yet supported)",
        ),
        (&["logs", "web", "--pid", "1", "-f", "-j"], "Error: --json is not supported with --follow"),
        (&["console", "web", "--json"], "Error: --json is not supported for console"),
        (&["exec", "-", "--bg", "--", "sleep", "1"], "Error: --bg cannot be used with `-`"),
        (&["show", "-"], "Error: `-` (a throwaway box) only works with exec, console and cp"),
        (&["show", "."], "Error: `.` means the box this command runs in, but BOX_NAME is not set"),
        (&["show", "Web"], "Error: invalid box name \"Web\""),
        (&["create", "web", "-d", "vol"], "Error: invalid --data \"vol\""),
        (&["diff", "file", "web", "etc/x"], "Error: path \"etc/x\" must be absolute\n  help: "),
        (&["snapshot", "create", "web", "bad name"], "Error: invalid snapshot name \"bad name\""),
        (&["snapshot", "create", "web", "--name", "a/b"], "Error: invalid snapshot name \"a/b\""),
        (&["diff", "status", "web", "--against", "x y"], "Error: invalid snapshot name \"x y\""),
        (
            &["base", "delete", "b", "--force", "--cascade"],
            "Error: --force and --cascade cannot be used together",
        ),
        (&["base", "show", "no good"], "Error: invalid base name \"no good\""),
        (&["base", "build", "b", "--script", "missing.sh"], "Error: cannot read the build script missing.sh"),
        (&["base", "import", "b", "--file", "missing.tar.gz"], "Error: cannot read missing.tar.gz"),
    ];
    for (args, expected) in cases {
        // A dead URL proves these fail before any request.
        let out = kr(dir.path()).env("FORKR_URL", dead_url()).args(*args).output().unwrap();
        assert_eq!(out.status.code(), Some(1), "{args:?}");
        let err = stderr_of(&out);
        assert!(err.starts_with(expected), "{args:?}: {err}");
        assert!(stdout_of(&out).is_empty(), "{args:?}");
    }
}

#[test]
fn clap_errors_exit_1_and_help_exits_0() {
    let dir = tempfile::tempdir().unwrap();
    let out = kr(dir.path()).args(["logs", "web"]).output().unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr_of(&out).contains("--pid <PID>"), "{}", stderr_of(&out));
    let out = kr(dir.path()).arg("--help").output().unwrap();
    assert_eq!(out.status.code(), Some(0));
    assert!(stdout_of(&out).contains("FORKR_PROFILE_<NAME>_URL"));
    let out = kr(dir.path()).args(["create", "--port", "0", "web"]).output().unwrap();
    assert_eq!(out.status.code(), Some(1));
}

#[test]
fn unreachable_server_says_which_url_and_where_from() {
    let dir = tempfile::tempdir().unwrap();
    let url = dead_url();
    let out = kr(dir.path()).env("FORKR_URL", &url).arg("list").output().unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = stderr_of(&out);
    assert!(
        err.starts_with(&format!("Error: cannot reach forkr-server at {url} (URL from $FORKR_URL): ")),
        "{err}"
    );
    assert!(err.contains("help: is forkr-server running"), "{err}");
    // exec uses a WebSocket: same message.
    let out = kr(dir.path()).env("FORKR_URL", &url).args(["exec", "web", "--", "true"]).output().unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr_of(&out).starts_with(&format!("Error: cannot reach forkr-server at {url}")));
}

#[test]
fn ephemeral_exec_against_a_dead_server_fails_cleanly() {
    let dir = tempfile::tempdir().unwrap();
    let out = kr(dir.path()).env("FORKR_URL", dead_url()).args(["exec", "-", "--", "true"]).output().unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = stderr_of(&out);
    assert!(err.starts_with("Error: cannot reach forkr-server"), "{err}");
    assert!(!err.contains("ephemeral fork:"), "nothing was created: {err}");
}

#[test]
fn config_round_trip_through_the_binary() {
    let dir = tempfile::tempdir().unwrap();
    let repo = dir.path().join("repo");
    std::fs::create_dir_all(repo.join(".git")).unwrap();
    std::fs::create_dir_all(repo.join("sub")).unwrap();
    let sub = repo.join("sub");

    let out = kr(&sub).args(["config", "path"]).output().unwrap();
    assert_eq!(stdout_of(&out).trim(), repo.join(".forkr/config.yaml").display().to_string());

    for (k, v) in [("profile", "staging"), ("forkr_domain", "forkr.example.com"), ("token", "abcdefghijkl")] {
        kr(&sub).args(["config", "set", k, v]).assert().success();
    }
    kr(&sub).args(["config", "set", "profiles.dev.url", "http://10.0.0.5:7878"]).assert().success();
    let out = kr(&sub).args(["config", "get", "forkr_domain"]).output().unwrap();
    assert_eq!(stdout_of(&out), "forkr.example.com\n");
    let out = kr(&sub).args(["config", "list"]).output().unwrap();
    assert_eq!(
        stdout_of(&out),
        "profile=staging\ntoken=****ijkl\nforkr_domain=forkr.example.com\nprofiles.dev.url=http://10.0.0.5:7878\n"
    );
    let out = kr(&sub)
        .env("FORKR_PROFILE_PROD_URL", "https://p.example")
        .args(["config", "profiles"])
        .output()
        .unwrap();
    let text = stdout_of(&out);
    assert!(text.contains("* staging   https://api.forkr.example.com   config"), "{text}");
    assert!(text.contains("  prod      https://p.example               env"), "{text}");
    assert!(text.contains("  dev       http://10.0.0.5:7878            config"), "{text}");

    kr(&sub).args(["config", "unset", "token"]).assert().success();
    let out = kr(&sub).args(["config", "get", "token"]).output().unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr_of(&out).starts_with("Error: token is not set in "), "{}", stderr_of(&out));

    let out = kr(&sub).args(["config", "set", "colour", "blue"]).output().unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr_of(&out).starts_with("Error: unknown config key \"colour\""));

    // The stored profile is selected and derives its URL from forkr_domain: a dead server there.
    let out = kr(&sub).env("FORKR_PROFILE", "staging").args(["list"]).output().unwrap();
    assert!(
        stderr_of(&out).contains("at https://api.forkr.example.com (URL from forkr_domain in "),
        "{}",
        stderr_of(&out)
    );

    // FORKR_SETUP_DIR moves the file.
    let out = kr(&sub).env("FORKR_SETUP_DIR", "/etc/forkr-test").args(["config", "path"]).output().unwrap();
    assert_eq!(stdout_of(&out).trim(), "/etc/forkr-test/config.yaml");
}

#[test]
fn broken_config_names_the_file_but_docs_still_work() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(dir.path().join(".forkr")).unwrap();
    std::fs::write(dir.path().join(".forkr/config.yaml"), "profile: [unclosed\n").unwrap();
    let out = kr(dir.path()).arg("list").output().unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr_of(&out).starts_with("Error: cannot read "), "{}", stderr_of(&out));
    let out = kr(dir.path()).arg("docs").output().unwrap();
    assert_eq!(out.status.code(), Some(0));
    assert!(stdout_of(&out).starts_with("Using forkr\n"));
}

#[test]
fn closed_stdout_ends_quietly_like_other_unix_tools() {
    use std::os::unix::process::ExitStatusExt as _;
    let dir = tempfile::tempdir().unwrap();
    let (read, write) = nix::unistd::pipe().unwrap();
    drop(read);
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_4kr"))
        .current_dir(dir.path())
        .arg("docs")
        .stdout(std::process::Stdio::from(write))
        .stderr(std::process::Stdio::piped())
        .output()
        .unwrap();
    assert_eq!(out.status.signal(), Some(nix::sys::signal::Signal::SIGPIPE as i32), "{out:?}");
    assert!(out.stderr.is_empty(), "{}", String::from_utf8_lossy(&out.stderr));
}

/// `base build` without `--script` needs ./Dockerfile and then a container engine; both failures are
/// clear, name what to do, and happen before any request.
#[test]
fn dockerfile_build_without_dockerfile_or_engine() {
    let dir = tempfile::tempdir().unwrap();
    let empty_path = dir.path().join("empty-bin");
    std::fs::create_dir_all(&empty_path).unwrap();
    let run = || {
        kr(dir.path())
            .env("FORKR_URL", dead_url())
            .env("PATH", &empty_path)
            .args(["base", "build", "dev"])
            .output()
    };
    let out = run().unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = stderr_of(&out);
    assert!(err.starts_with("Error: there is no Dockerfile in "), "{err}");
    assert!(err.contains("--script FILE"), "{err}");

    std::fs::write(dir.path().join("Dockerfile"), "FROM scratch\n").unwrap();
    let out = run().unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = stderr_of(&out);
    assert!(
        err.starts_with(
            "Error: building a base from a Dockerfile needs a container engine, and none of docker, podman or nerdctl is on PATH\n  help: install Docker"
        ),
        "{err}"
    );
}
