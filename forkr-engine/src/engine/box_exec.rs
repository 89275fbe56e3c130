//! `exec`, `console`, `ps`, background processes and their logs.
//!
//! Commands run through a login shell (document 004: `bash -lc`, so `/etc/profile.d` puts `/box/bin`
//! on PATH). A plain argv keeps its exact words: it runs as `bash -lc 'exec "$0" "$@"' argv...`, so
//! nothing is re-split or re-quoted. Roots without bash fall back to `sh`.

use std::path::PathBuf;
use std::sync::Arc;

use tokio::io::AsyncReadExt;

use super::env::{SYSTEM_PATH, injected};
use super::{Engine, fs, key};
use crate::api::{ExecOutput, ExecRequest};
use crate::runtime::{ExecIo, ExecSpec, Process};
use crate::store::BoxRow;
use crate::{Error, ErrorKind, Result};

/// How an exec's streams are wired.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExecMode {
    /// stdin/stdout/stderr pipes (buffered POST and streaming WebSocket).
    Pipes,
    /// A PTY (console, `exec` from a terminal).
    Tty { rows: u16, cols: u16 },
    /// Detached, output to a log that `logs --pid` reads.
    Background,
}

fn check_env_key(k: &str) -> Result<()> {
    let ok = !k.is_empty()
        && !k.as_bytes()[0].is_ascii_digit()
        && k.bytes().all(|c| c.is_ascii_alphanumeric() || c == b'_');
    if !ok {
        return Err(Error::bad_request("invalid_env", format!("invalid environment variable name {k:?}")));
    }
    Ok(())
}

impl Engine {
    fn shell(&self, row: &BoxRow) -> &'static str {
        if fs::exists(&self.layout.root(&row.project, &row.name), "/bin/bash") {
            "/bin/bash"
        } else {
            "/bin/sh"
        }
    }

    /// The argv that runs `req` through a login shell.
    fn argv(&self, row: &BoxRow, req: &ExecRequest) -> Vec<String> {
        let shell = self.shell(row).to_owned();
        if req.cmd.is_empty() {
            return vec![shell, "-l".into()];
        }
        if req.sh {
            return vec![shell, "-lc".into(), req.cmd.join(" ")];
        }
        let mut v = vec![shell, "-lc".into(), r#"exec "$0" "$@""#.into()];
        v.extend(req.cmd.iter().cloned());
        v
    }

    /// The environment of an exec. `login` is the project user it runs as (`None`: root), whose
    /// name goes into `USER` and `LOGNAME`.
    fn exec_env(
        &self,
        row: &BoxRow,
        req: &ExecRequest,
        home: &str,
        login: Option<&str>,
    ) -> Result<Vec<(String, String)>> {
        let mut env = vec![("PATH".to_owned(), SYSTEM_PATH.to_owned()), ("HOME".to_owned(), home.to_owned())];
        if let Some(user) = login {
            env.push(("USER".to_owned(), user.to_owned()));
            env.push(("LOGNAME".to_owned(), user.to_owned()));
        }
        env.extend(injected(&self.config, &row.project, &row.name));
        env.extend(row.env.iter().map(|(k, v)| (k.clone(), v.clone())));
        for (k, v) in &req.env {
            check_env_key(k)?;
            env.retain(|(ek, _)| ek != k);
            env.push((k.clone(), v.clone()));
        }
        Ok(env)
    }

    /// Starts a process in a running box.
    pub async fn exec(
        self: &Arc<Self>,
        project: &str,
        name: &str,
        req: &ExecRequest,
        mode: ExecMode,
    ) -> Result<Process> {
        let row = self.require_box(project, name)?;
        let Some(run) = self.running(&row) else {
            return Err(Error::conflict(
                "box_not_running",
                format!("box {name:?} is not running; start it with `4kr resume {name}`"),
            ));
        };
        // A project user: its passwd/group entries are synthesised in the root first (document 004).
        let user = match req.user.as_deref() {
            None | Some("root") => None,
            Some(u) => Some(self.exec_user(project, name, u).await?),
        };
        let (uid, gid, home) =
            user.as_ref().map_or((0, 0, "/root".to_owned()), |u| (u.uid, u.gid, u.home.clone()));
        if let Some(wd) = &req.wd
            && !wd.starts_with('/')
        {
            return Err(Error::bad_request(
                "invalid_path",
                format!("working directory {wd:?} must be absolute"),
            ));
        }
        let io = match mode {
            ExecMode::Pipes => ExecIo::Pipes,
            ExecMode::Tty { rows, cols } => ExecIo::Tty { rows, cols },
            ExecMode::Background => {
                let bg = self.layout.run_dir(project, name).join("bg");
                std::fs::create_dir_all(&bg)
                    .map_err(|e| Error::io("creating the background log directory", e))?;
                static SEQ: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
                let seq = SEQ.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                ExecIo::Detached { log: bg.join(format!("pending-{seq}.log")) }
            }
        };
        let spec = ExecSpec {
            argv: self.argv(&row, req),
            env: self.exec_env(&row, req, &home, user.as_ref().map(|u| u.name.as_str()))?,
            cwd: req.wd.clone().unwrap_or_else(|| "/".to_owned()),
            uid,
            gid,
            io: io.clone(),
        };
        let process = self.runtime.exec(&key(project, name), &run, spec).await?;
        if let ExecIo::Detached { log } = io {
            let final_log = self.bg_log_path(project, name, process.pid);
            std::fs::rename(&log, &final_log).map_err(|e| Error::io("naming the background log", e))?;
        }
        Ok(process)
    }

    /// The host file holding the output of background process `pid` of a box.
    pub fn bg_log_path(&self, project: &str, name: &str, pid: u32) -> PathBuf {
        self.layout.run_dir(project, name).join("bg").join(format!("{pid}.log"))
    }

    /// Whether in-box PID `pid` of a running box is alive (for `logs --follow`).
    pub fn box_pid_alive(&self, project: &str, name: &str, pid: u32) -> bool {
        let Ok(row) = self.require_box(project, name) else { return false };
        let Some(run) = self.running(&row) else { return false };
        // The box's own /proc, seen through its PID 1's root.
        std::path::Path::new(&format!("/proc/{}/root/proc/{pid}/stat", run.pid)).exists()
    }

    /// Runs a command to completion and returns its output, each stream capped at `limit` bytes.
    pub async fn exec_buffered(
        self: &Arc<Self>,
        project: &str,
        name: &str,
        req: &ExecRequest,
        limit: usize,
    ) -> Result<ExecOutput> {
        let mut p = self.exec(project, name, req, ExecMode::Pipes).await?;
        if let Some(mut stdin) = p.stdin.take() {
            let input = req.stdin.clone().unwrap_or_default();
            tokio::spawn(async move {
                use tokio::io::AsyncWriteExt;
                let _ = stdin.write_all(input.as_bytes()).await;
                let _ = stdin.shutdown().await;
            });
        }
        /// Why reading stopped early.
        enum Stop {
            Over,
            Io(std::io::Error),
        }
        /// Reads a stream to its end, or stops as soon as it passes `limit`.
        async fn collect(r: Option<crate::runtime::BoxedRead>, limit: usize) -> Result<Vec<u8>, Stop> {
            let Some(r) = r else { return Ok(Vec::new()) };
            let mut buf = Vec::new();
            let n = r.take(limit as u64 + 1).read_to_end(&mut buf).await.map_err(Stop::Io)?;
            if n > limit {
                return Err(Stop::Over);
            }
            Ok(buf)
        }
        // try_join: the moment one stream is over the limit, stop reading both and kill the
        // process. Waiting for the other stream's end instead would hang for good when the process
        // keeps that one open while it blocks writing to the full one (`yes` with stderr open).
        let (out, err) = match tokio::try_join!(
            collect(p.stdout.take(), limit),
            collect(p.stderr.take(), limit)
        ) {
            Ok(both) => both,
            Err(stop) => {
                (p.kill)();
                let _ = p.wait.await;
                return Err(match stop {
                    Stop::Io(e) => Error::io("reading exec output", e),
                    Stop::Over => Error::new(
                        ErrorKind::TooLarge,
                        "output_too_large",
                        format!(
                            "exec output is over the limit of {limit} bytes; use the streaming exec (4kr exec without --json) or --bg with 4kr logs"
                        ),
                    ),
                });
            }
        };
        let code = p.wait.await?;
        Ok(ExecOutput {
            exit_code: code,
            stdout: String::from_utf8_lossy(&out).into_owned(),
            stderr: String::from_utf8_lossy(&err).into_owned(),
        })
    }
}
