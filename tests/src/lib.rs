//! End-to-end test harness: a real `forkr-server` on a loopback port with a temporary data dir (on
//! ext4, so the server provisions its own loop-mounted btrfs image), driven by the real `4kr` binary.
//!
//! Every [`Server`] cleans up after itself when dropped, also when a test panics: it kills the
//! server, runs `forkr-server teardown` (which kills the box processes of that data dir, removes their
//! cgroups, unmounts the image and releases the loop device) and removes the temporary directories.

use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

/// Where the workspace binaries are: `FORKR_BIN_DIR`, or the `target/<profile>` directory holding the
/// running test executable.
pub fn bin(name: &str) -> PathBuf {
    if let Ok(dir) = std::env::var("FORKR_BIN_DIR") {
        return PathBuf::from(dir).join(name);
    }
    let exe = std::env::current_exe().expect("test executable path");
    // Test binaries live in target/<profile>/deps/, forkr-bench in target/<profile>/.
    let mut dir = exe.parent().expect("target dir").to_path_buf();
    if dir.file_name().is_some_and(|n| n == "deps") {
        dir.pop();
    }
    let p = dir.join(name);
    assert!(p.exists(), "{} not built: run `cargo build --workspace --bins` first", p.display());
    p
}

/// Builds a tiny root filesystem in milliseconds: busybox-static with its applets, tini-static as
/// `/usr/bin/tini`, a `/bin/bash` that hands over to busybox `sh`, and the profile files document 004
/// describes. Returns the path of a `.tar.gz` of it.
pub fn tiny_base_tarball(dir: &Path) -> PathBuf {
    let root = dir.join("tiny-root");
    for d in [
        "bin",
        "usr/bin",
        "sbin",
        "etc/profile.d",
        "root",
        "tmp",
        "work",
        "proc",
        "sys",
        "dev",
        "run",
        "var/log",
        "srv",
        "home",
    ] {
        std::fs::create_dir_all(root.join(d)).unwrap();
    }
    std::fs::copy("/usr/bin/busybox", root.join("bin/busybox")).expect("busybox-static installed");
    std::fs::copy("/usr/bin/tini-static", root.join("usr/bin/tini")).expect("tini installed");
    let list = Command::new("/usr/bin/busybox").arg("--list").output().unwrap();
    for applet in String::from_utf8_lossy(&list.stdout).lines() {
        let link = root.join("bin").join(applet);
        if applet != "busybox" && !link.exists() {
            std::os::unix::fs::symlink("busybox", link).unwrap();
        }
    }
    write_mode(&root.join("bin/bash"), "#!/bin/sh\nexec /bin/sh \"$@\"\n", 0o755);
    write_mode(&root.join("etc/passwd"), "root:x:0:0:root:/root:/bin/bash\n", 0o644);
    write_mode(&root.join("etc/group"), "root:x:0:\n", 0o644);
    write_mode(
        &root.join("etc/profile"),
        "for f in /etc/profile.d/*.sh; do [ -r \"$f\" ] && . \"$f\"; done\n[ -r /etc/bash.bashrc ] && . /etc/bash.bashrc\n",
        0o644,
    );
    write_mode(
        &root.join("etc/profile.d/forks-path.sh"),
        "export PATH=\"$HOME/.local/bin:/box/proj/bin:/box/bin:$PATH\"\n",
        0o644,
    );
    write_mode(&root.join("etc/bash.bashrc"), "# system-wide bashrc\n", 0o644);
    write_mode(&root.join("root/.bashrc"), "cd /work\n", 0o644);
    let tarball = dir.join("tiny-base.tar.gz");
    let st = Command::new("tar").arg("-C").arg(&root).args(["-czf"]).arg(&tarball).arg(".").status().unwrap();
    assert!(st.success(), "tar failed");
    tarball
}

fn write_mode(path: &Path, content: &str, mode: u32) {
    use std::os::unix::fs::PermissionsExt;
    std::fs::write(path, content).unwrap();
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).unwrap();
}

/// A running server with its own data dir, and a working directory for CLI calls outside any git
/// repository (so the project resolves to `default` unless a test sets one).
pub struct Server {
    child: Option<Child>,
    pub data: tempfile::TempDir,
    pub work: tempfile::TempDir,
    pub url: String,
    pub token: String,
    pub addr: String,
    image_size: String,
    /// Extra `forkr-server` flags (see [`Server::start_with_args`]).
    args: Vec<String>,
    /// The publish proxy's addresses (`IP:PORT`).
    pub proxy_http: String,
    pub proxy_https: String,
    /// The server executable [`Server::spawn`] runs (default `forkr-server`; crash tests use the
    /// `forkr-server-faults` build) and extra environment for it (e.g. `FORKR_FAULT`).
    pub program: Option<PathBuf>,
    pub program_env: Vec<(String, String)>,
}

thread_local! {
    static ISOLATED: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
}

/// Moves the calling thread into a network namespace of its own (once per thread), with `lo` up.
///
/// Every server, box bridge, veth, NAT rule and proxy port of a test then lives in that namespace:
/// tests running in parallel (or several engineers' test runs) cannot clash on the default subnet
/// or on ports, nothing touches the host's network, and the kernel removes it all when the test's
/// thread ends, even after a panic. Processes spawned from this thread (the server, `4kr`, curl)
/// and threads it starts inherit the namespace.
pub fn isolate_network() {
    if ISOLATED.with(|i| i.replace(true)) {
        return;
    }
    nix::sched::unshare(nix::sched::CloneFlags::CLONE_NEWNET)
        .expect("unshare(CLONE_NEWNET): the end-to-end tests need root");
    let st = Command::new("ip").args(["link", "set", "lo", "up"]).status().expect("run ip");
    assert!(st.success(), "bringing up lo in the test's network namespace failed");
}

impl Server {
    /// Starts a server on a fresh data dir and imports the tiny base as `box-base`.
    pub fn start() -> Server {
        Server::start_with_image("4G")
    }

    /// Like [`Server::start`] with a btrfs image of `size` (sparse; e.g. `24G` for benchmarks).
    pub fn start_with_image(size: &str) -> Server {
        Server::start_with_args(size, &[])
    }

    /// Like [`Server::start_with_image`] with extra `forkr-server` flags (kept across restarts).
    pub fn start_with_args(size: &str, args: &[&str]) -> Server {
        let data = tempfile::Builder::new().prefix("forkr-e2e-").tempdir().unwrap();
        let work = tempfile::Builder::new().prefix("forkr-work-").tempdir().unwrap();
        let mut s = Server {
            child: None,
            data,
            work,
            url: String::new(),
            token: String::new(),
            addr: "127.0.0.1:0".into(),
            image_size: size.to_owned(),
            args: args.iter().map(|a| a.to_string()).collect(),
            proxy_http: String::new(),
            proxy_https: String::new(),
            program: None,
            program_env: Vec::new(),
        };
        s.spawn();
        let tarball = tiny_base_tarball(s.work.path());
        s.import_base("box-base", &tarball);
        s
    }

    /// Starts (or restarts, on the same data dir and port) the server process.
    pub fn spawn(&mut self) {
        isolate_network();
        let mut command = Command::new(self.program.clone().unwrap_or_else(|| bin("forkr-server")));
        command.envs(self.program_env.iter().map(|(k, v)| (k, v)));
        // If the test process dies without running Drop (killed by a timeout), the server must not
        // outlive it holding mounts and pipes.
        // SAFETY: prctl is async-signal-safe and touches nothing but this process.
        unsafe {
            std::os::unix::process::CommandExt::pre_exec(&mut command, || {
                libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL);
                Ok(())
            });
        }
        let mut child = command
            .args(["--listen", &self.addr, "--image-size", &self.image_size])
            .arg("--data-dir")
            .arg(self.data.path())
            // Ports of their own: the namespace is the test's, but a test may restart the server.
            .args(["--proxy-listen", "127.0.0.1:0", "--proxy-http-listen", "127.0.0.1:0"])
            .args(&self.args)
            .env("FORKR_LOG", "warn")
            // No outbound NAT unless a test asks for it (there is no uplink in the namespace).
            .env("FORKR_NAT", "off")
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("spawn forkr-server");
        let stdout = child.stdout.take().unwrap();
        let mut lines = BufReader::new(stdout).lines();
        let deadline = Instant::now() + Duration::from_secs(60);
        let mut token_file = None;
        while token_file.is_none() && Instant::now() < deadline {
            let Some(Ok(line)) = lines.next() else { break };
            if let Some(u) = line.strip_prefix("forkr-server listening on ") {
                self.url = u.to_owned();
                self.addr = u.trim_start_matches("http://").to_owned();
            } else if let Some(a) = line.strip_prefix("publish proxy listening on https://") {
                self.proxy_https = a.to_owned();
            } else if let Some(a) = line.strip_prefix("publish proxy listening on http://") {
                self.proxy_http = a.to_owned();
            } else if let Some(t) = line.strip_prefix("token file: ") {
                token_file = Some(PathBuf::from(t));
            }
        }
        // Keep draining stdout so the server never blocks on a full pipe.
        std::thread::spawn(move || for _ in lines.by_ref() {});
        self.child = Some(child);
        let token_file = token_file.expect("server printed its token file");
        self.token = std::fs::read_to_string(token_file).unwrap().trim().to_owned();
    }

    /// Imports a base tarball over the API directly (set-up, not the CLI under test).
    pub fn import_base(&self, name: &str, tarball: &Path) {
        let body = std::fs::read(tarball).unwrap();
        let resp = reqwest::blocking::Client::new()
            .post(format!("{}/v1/bases/{name}/import", self.url))
            .bearer_auth(&self.token)
            .body(body)
            .send()
            .expect("import request");
        let status = resp.status();
        assert!(status.is_success(), "base import failed: {status} {}", resp.text().unwrap_or_default());
    }

    /// The server's PID while it runs.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(|c| c.id())
    }

    /// Waits up to `limit` for the server process to exit by itself (a crash test's injected
    /// fault) and reaps it; `None` if it is still running.
    pub fn wait_exit(&mut self, limit: Duration) -> Option<std::process::ExitStatus> {
        let deadline = Instant::now() + limit;
        while Instant::now() < deadline {
            if let Some(c) = self.child.as_mut()
                && let Ok(Some(status)) = c.try_wait()
            {
                self.child = None;
                return Some(status);
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        None
    }

    /// Kills the server with SIGKILL (boxes keep running).
    pub fn kill9(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// A `4kr` command with this server's URL and token, in the work dir.
    pub fn cmd(&self, args: &[&str]) -> Command {
        let mut c = Command::new(bin("4kr"));
        c.args(args)
            .current_dir(self.work.path())
            .env("FORKR_URL", &self.url)
            .env("FORKR_TOKEN", &self.token)
            .env_remove("FORKR_PROJECT")
            .env_remove("FORKR_PROFILE")
            .env_remove("FORKR_API_URL")
            .env("NO_COLOR", "1")
            .stdin(Stdio::null());
        c
    }

    /// Runs `4kr args`, returns the output whatever the exit code.
    pub fn run(&self, args: &[&str]) -> Output {
        self.cmd(args).output().expect("run 4kr")
    }

    /// Runs `4kr args` with `input` on stdin.
    pub fn run_stdin(&self, args: &[&str], input: &[u8]) -> Output {
        let mut child = self
            .cmd(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let mut stdin = child.stdin.take().unwrap();
        stdin.write_all(input).unwrap();
        drop(stdin);
        child.wait_with_output().unwrap()
    }

    /// Runs `4kr args` and asserts success; returns stdout.
    pub fn ok(&self, args: &[&str]) -> String {
        let out = self.run(args);
        assert!(
            out.status.success(),
            "4kr {args:?} failed ({:?})\nstdout: {}\nstderr: {}",
            out.status.code(),
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// Runs `4kr args`, asserts failure, returns stderr.
    pub fn fails(&self, args: &[&str]) -> String {
        let out = self.run(args);
        assert!(
            !out.status.success(),
            "4kr {args:?} unexpectedly succeeded\nstdout: {}",
            String::from_utf8_lossy(&out.stdout)
        );
        String::from_utf8_lossy(&out.stderr).into_owned()
    }

    /// `4kr show <box> --json` parsed.
    pub fn show(&self, name: &str) -> serde_json::Value {
        serde_json::from_str(&self.ok(&["show", name, "--json"])).expect("show --json")
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.kill9();
        let out = Command::new(bin("forkr-server"))
            .arg("teardown")
            .arg("--data-dir")
            .arg(self.data.path())
            .output();
        match out {
            Ok(o) if o.status.success() => {}
            // Say so loudly: a failed teardown leaks mounts and loop devices into later runs.
            Ok(o) => eprintln!(
                "forkr-server teardown of {} failed: {}",
                self.data.path().display(),
                String::from_utf8_lossy(&o.stderr)
            ),
            Err(e) => eprintln!("could not run forkr-server teardown: {e}"),
        }
    }
}
