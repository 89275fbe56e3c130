//! Exec through the Kubernetes exec API (kube's WebSocket attach): the fallback path of document
//! 001 for a server that does not run on the box's node.
//!
//! An exec lands in the runner container, whose root is the runner image, not the box. So every
//! command is wrapped: `env -i` sets exactly the engine's environment, `chroot --userspec` enters
//! the box root as the requested user, and the box's own `/bin/sh` changes to the working
//! directory and execs the argv unchanged. The exit code comes back on the status channel.

use std::sync::{Arc, Mutex};

use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Status;
use kube::Api;
use kube::api::{AttachParams, AttachedProcess, TerminalSize};
use tokio::io::AsyncReadExt;

use super::api_error;
use super::render::{CONTAINER, ROOT_MOUNT, RUN_MOUNT};
use crate::runtime::{ExecIo, ExecSpec, Listening, Process, PtyControl};
use crate::{Error, Result};

/// The runner image's tools (ubuntu: merged /usr).
const ENV: &str = "/usr/bin/env";
const CHROOT: &str = "/usr/sbin/chroot";
/// Run by the box's shell after the chroot: `$1` is the working directory, the rest the argv.
const CD_AND_EXEC: &str = r#"cd "$1" || exit 126; shift; exec "$@""#;
/// Run by the runner's shell for a detached exec: `$1` is the log file, the rest the command.
/// `setsid` gives the process its own session; the echo reports its PID in the pod's PID
/// namespace, which is the box's (tini is its PID 1 and adopts the process when this shell exits).
const DETACH: &str = r#"log=$1; shift; setsid "$@" </dev/null >"$log" 2>&1 & echo $!"#;

/// The argv that runs `spec` inside the box root from the runner container.
pub fn wrap(spec: &ExecSpec) -> Vec<String> {
    let mut argv = vec![ENV.to_owned(), "-i".to_owned()];
    argv.extend(spec.env.iter().map(|(k, v)| format!("{k}={v}")));
    argv.extend([
        CHROOT.to_owned(),
        format!("--userspec={}:{}", spec.uid, spec.gid),
        format!("--groups={}", spec.gid),
        ROOT_MOUNT.to_owned(),
        "/bin/sh".to_owned(),
        "-c".to_owned(),
        CD_AND_EXEC.to_owned(),
        "forkr-exec".to_owned(),
        spec.cwd.clone(),
    ]);
    argv.extend(spec.argv.iter().cloned());
    argv
}

/// The argv of a detached exec whose output goes to `log` (a path in the runner container).
pub fn wrap_detached(spec: &ExecSpec, log: &str) -> Vec<String> {
    let mut argv =
        vec!["/bin/sh".to_owned(), "-c".to_owned(), DETACH.to_owned(), "forkr-bg".to_owned(), log.to_owned()];
    argv.extend(wrap(spec));
    argv
}

/// The exit code in an exec's final status: `Success` is 0; a failure carries the code as the
/// `ExitCode` cause. `None` when the status says the command never ran (e.g. no such container).
pub fn exit_code(status: &Status) -> Option<i32> {
    if status.status.as_deref() == Some("Success") {
        return Some(0);
    }
    status
        .details
        .as_ref()?
        .causes
        .as_ref()?
        .iter()
        .find(|c| c.reason.as_deref() == Some("ExitCode"))?
        .message
        .as_ref()?
        .trim()
        .parse()
        .ok()
}

/// Maps the host path of a detached exec's log into the runner container: the log must sit in the
/// box's run directory (the parent of its console log), which the runner mounts at `RUN_MOUNT`.
pub fn log_in_runner(run_dir: &std::path::Path, log: &std::path::Path) -> Result<String> {
    let rel = log.strip_prefix(run_dir).map_err(|_| {
        Error::internal(format!(
            "background log {} is outside the box's run directory {}",
            log.display(),
            run_dir.display()
        ))
    })?;
    Ok(format!("{RUN_MOUNT}/{}", rel.display()))
}

type ResizeFn = Box<dyn FnMut(u16, u16) -> Result<()> + Send>;

/// Resizes the PTY of a TTY exec through kube's terminal-size channel.
struct Resize(Mutex<ResizeFn>);

impl PtyControl for Resize {
    fn resize(&self, rows: u16, cols: u16) -> Result<()> {
        (self.0.lock().unwrap_or_else(|p| p.into_inner()))(rows, cols)
    }
}

/// Starts `spec` in the runner container of `pod`. `run_dir` is the box's host-side run directory
/// (for detached logs).
pub async fn exec(
    api: &Api<Pod>,
    pod: &str,
    run_dir: Option<&std::path::Path>,
    spec: ExecSpec,
) -> Result<Process> {
    let ap = AttachParams::default().container(CONTAINER);
    match &spec.io {
        ExecIo::Pipes => {
            let ap = ap.stdin(true).stdout(true).stderr(true);
            let proc = api.exec(pod, wrap(&spec), &ap).await.map_err(|e| api_error("starting an exec", e))?;
            Ok(streaming(proc))
        }
        ExecIo::Tty { rows, cols } => {
            let ap = ap.stdin(true).stdout(true).stderr(false).tty(true);
            let mut proc =
                api.exec(pod, wrap(&spec), &ap).await.map_err(|e| api_error("starting an exec", e))?;
            let mut tx = proc.terminal_size();
            let mut resize = move |rows: u16, cols: u16| match tx.as_mut() {
                Some(tx) => tx
                    .try_send(TerminalSize { width: cols, height: rows })
                    .map_err(|e| Error::internal(format!("resizing the terminal of a Kubernetes exec: {e}"))),
                None => Ok(()),
            };
            resize(*rows, *cols)?;
            let mut p = streaming(proc);
            p.pty = Some(Box::new(Resize(Mutex::new(Box::new(resize)))));
            Ok(p)
        }
        ExecIo::Detached { log } => {
            let run_dir =
                run_dir.ok_or_else(|| Error::internal("the box has no run directory for background logs"))?;
            let log = log_in_runner(run_dir, log)?;
            let ap = ap.stdin(false).stdout(true).stderr(true);
            let (code, out, err) = run(api, pod, wrap_detached(&spec, &log), ap).await?;
            let pid =
                String::from_utf8_lossy(&out).trim().parse::<u32>().ok().filter(|_| code == 0).ok_or_else(
                    || {
                        Error::internal(format!(
                            "starting a background process in the box failed (exit {code}): {}",
                            String::from_utf8_lossy(&err).trim()
                        ))
                    },
                )?;
            Ok(Process {
                pid,
                stdin: None,
                stdout: None,
                stderr: None,
                pty: None,
                wait: Box::pin(async { Ok(0) }),
                kill: Box::new(|| {}),
            })
        }
    }
}

/// Runs a command to completion in the runner container (outside the chroot) and returns its exit
/// code, stdout and stderr.
pub async fn run(
    api: &Api<Pod>,
    pod: &str,
    argv: Vec<String>,
    ap: AttachParams,
) -> Result<(i32, Vec<u8>, Vec<u8>)> {
    let mut proc = api.exec(pod, argv, &ap).await.map_err(|e| api_error("starting an exec", e))?;
    let status = proc.take_status();
    let (mut out, mut err) = (Vec::new(), Vec::new());
    let (o, e) = (proc.stdout(), proc.stderr());
    let read_out = async {
        if let Some(mut o) = o {
            o.read_to_end(&mut out).await?;
        }
        Ok::<_, std::io::Error>(())
    };
    let read_err = async {
        if let Some(mut e) = e {
            e.read_to_end(&mut err).await?;
        }
        Ok::<_, std::io::Error>(())
    };
    let (a, b) = tokio::join!(read_out, read_err);
    a.and(b).map_err(|e| Error::io("reading the output of a Kubernetes exec", e))?;
    let code = finish(status).await?;
    drop(proc);
    Ok((code, out, err))
}

/// The TCP sockets listening in the pod's network namespace (the box's), from the runner's
/// `/proc/net/tcp{,6}`: sorted, without duplicates.
pub async fn listening(api: &Api<Pod>, pod: &str) -> Result<Vec<Listening>> {
    let argv = vec!["/bin/cat".into(), "/proc/net/tcp".into(), "/proc/net/tcp6".into()];
    let ap = AttachParams::default().container(CONTAINER).stdin(false).stdout(true).stderr(true);
    let (code, out, err) = run(api, pod, argv, ap).await?;
    if code != 0 {
        return Err(Error::internal(format!(
            "reading the box's TCP sockets failed (exit {code}): {}",
            String::from_utf8_lossy(&err).trim()
        )));
    }
    // Each file has a header line; the parser skips the first and ignores the other (its
    // "st" column is not LISTEN).
    let mut found = crate::runtime::local::net::parse_proc_net_tcp(&String::from_utf8_lossy(&out));
    found.sort();
    found.dedup();
    Ok(found)
}

async fn finish(status: Option<impl Future<Output = Option<Status>>>) -> Result<i32> {
    let status = match status {
        Some(s) => s.await,
        None => None,
    };
    let status = status.ok_or_else(|| Error::internal("the Kubernetes exec ended without an exit status"))?;
    exit_code(&status).ok_or_else(|| {
        Error::internal(format!(
            "the Kubernetes exec failed: {}",
            status.message.as_deref().unwrap_or("no message")
        ))
    })
}

/// Wraps an attached process into the runtime's [`Process`]: streams for the caller, the exit code
/// from the status channel, and a kill that closes the connection.
fn streaming(mut proc: AttachedProcess) -> Process {
    let stdin = proc.stdin().map(|w| Box::pin(w) as crate::runtime::BoxedWrite);
    let stdout = proc.stdout().map(|r| Box::pin(r) as crate::runtime::BoxedRead);
    let stderr = proc.stderr().map(|r| Box::pin(r) as crate::runtime::BoxedRead);
    let status = proc.take_status();
    // The attached process owns the WebSocket task (dropping it closes the connection): kept until
    // the exit status arrives, or until a kill drops it early.
    let holder = Arc::new(Mutex::new(Some(proc)));
    let kill_holder = holder.clone();
    let wait = Box::pin(async move {
        let code = finish(status).await;
        holder.lock().unwrap_or_else(|p| p.into_inner()).take();
        code
    });
    Process {
        pid: 0,
        stdin,
        stdout,
        stderr,
        pty: None,
        wait,
        kill: Box::new(move || {
            if let Some(p) = kill_holder.lock().unwrap_or_else(|p| p.into_inner()).take() {
                p.abort();
            }
        }),
    }
}

#[cfg(test)]
mod ws_tests;

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(io: ExecIo) -> ExecSpec {
        ExecSpec {
            argv: vec![
                "/bin/bash".into(),
                "-lc".into(),
                r#"exec "$0" "$@""#.into(),
                "echo".into(),
                "a b".into(),
            ],
            env: vec![("PATH".into(), "/usr/bin:/bin".into()), ("X".into(), "1 2".into())],
            cwd: "/work".into(),
            uid: 20000,
            gid: 20000,
            io,
        }
    }

    #[test]
    fn commands_enter_the_root_as_the_user_with_exactly_the_environment() {
        assert_eq!(
            wrap(&spec(ExecIo::Pipes)),
            [
                "/usr/bin/env",
                "-i",
                "PATH=/usr/bin:/bin",
                "X=1 2",
                "/usr/sbin/chroot",
                "--userspec=20000:20000",
                "--groups=20000",
                "/volumes",
                "/bin/sh",
                "-c",
                r#"cd "$1" || exit 126; shift; exec "$@""#,
                "forkr-exec",
                "/work",
                "/bin/bash",
                "-lc",
                r#"exec "$0" "$@""#,
                "echo",
                "a b",
            ]
        );
        let d = wrap_detached(&spec(ExecIo::Pipes), "/forkr-run/bg/pending-1.log");
        assert_eq!(&d[..5], ["/bin/sh", "-c", DETACH, "forkr-bg", "/forkr-run/bg/pending-1.log"]);
        assert_eq!(d[5..], wrap(&spec(ExecIo::Pipes))[..]);
    }

    /// The wrappers are real shell: run them here with the host's sh, env and chroot into a root
    /// made of the host's own `/` (chroot to `/` keeps the test free of a root filesystem build).
    #[test]
    fn the_wrappers_run_under_a_real_shell() {
        let mut s = spec(ExecIo::Pipes);
        s.uid = 0;
        s.gid = 0;
        s.cwd = "/tmp".into();
        s.argv =
            vec!["/bin/sh".into(), "-c".into(), r#"echo "$PWD|$X|$1""#.into(), "sh".into(), "a b".into()];
        let mut argv = wrap(&s);
        // The host may keep chroot in /usr/sbin or /sbin; `/volumes` becomes `/`.
        argv[4] = which_chroot();
        argv[7] = "/".into();
        let out = std::process::Command::new(&argv[0]).args(&argv[1..]).output().unwrap();
        assert_eq!(String::from_utf8_lossy(&out.stdout), "/tmp|1 2|a b\n", "{out:?}");
        // A missing working directory fails with 126 instead of running elsewhere.
        let mut bad = argv.clone();
        bad[12] = "/nonexistent-dir".into();
        let out = std::process::Command::new(&bad[0]).args(&bad[1..]).output().unwrap();
        assert_eq!(out.status.code(), Some(126));
        // Detached: prints a PID at once, the output lands in the log.
        let dir = tempfile::tempdir().unwrap();
        let log = dir.path().join("x.log");
        let mut d = wrap_detached(&s, &log.to_string_lossy());
        d[5 + 4] = which_chroot();
        d[5 + 7] = "/".into();
        let out = std::process::Command::new(&d[0]).args(&d[1..]).output().unwrap();
        let pid: u32 = String::from_utf8_lossy(&out.stdout).trim().parse().unwrap();
        assert!(pid > 1);
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
        while std::fs::read_to_string(&log).unwrap_or_default().is_empty()
            && std::time::Instant::now() < deadline
        {
            std::thread::sleep(std::time::Duration::from_millis(10));
        }
        assert_eq!(std::fs::read_to_string(&log).unwrap(), "/tmp|1 2|a b\n");
    }

    fn which_chroot() -> String {
        ["/usr/sbin/chroot", "/sbin/chroot", "/usr/bin/chroot"]
            .into_iter()
            .find(|p| std::path::Path::new(p).exists())
            .expect("chroot (coreutils) on this machine")
            .into()
    }

    #[test]
    fn exit_codes_come_from_the_status() {
        let ok: Status =
            serde_json::from_value(serde_json::json!({"status": "Success", "metadata": {}})).unwrap();
        assert_eq!(exit_code(&ok), Some(0));
        let failed: Status = serde_json::from_value(serde_json::json!({
            "status": "Failure", "reason": "NonZeroExitCode", "message": "command terminated with non-zero exit code",
            "details": {"causes": [{"reason": "ExitCode", "message": "42"}]}, "metadata": {}
        }))
        .unwrap();
        assert_eq!(exit_code(&failed), Some(42));
        let broken: Status = serde_json::from_value(serde_json::json!({
            "status": "Failure", "message": "container not found (\"fork\")", "metadata": {}
        }))
        .unwrap();
        assert_eq!(exit_code(&broken), None);
    }

    #[test]
    fn background_logs_map_into_the_runner() {
        let run = std::path::Path::new("/var/lib/forkr/run/p/b");
        assert_eq!(log_in_runner(run, &run.join("bg/pending-3.log")).unwrap(), "/forkr-run/bg/pending-3.log");
        assert!(log_in_runner(run, std::path::Path::new("/etc/passwd")).is_err());
    }
}
