//! The per-project apply lock, held for the length of one apply and refreshed in the background.
//!
//! The server's lock expires by itself (`ttl`), so a killed `4kr` never blocks a project for
//! longer than that. While the work runs, [`Lock::hold`] refreshes it every third of the TTL; a
//! refresh that fails (the lock expired and someone else took it) marks the run stopped, so the
//! executor starts nothing more. Ctrl-C does the same: running actions finish, nothing new starts,
//! and the lock is released.

use std::cell::RefCell;
use std::future::Future;
use std::time::{Duration, Instant};

use forkr_engine::api::LockRequest;
use forkr_engine::plan::FingerprintScope;

use super::api;
use crate::client::Client;
use crate::error::Result;

/// Why a run stops starting actions: a lost lock or Ctrl-C. Shared by reference; everything runs
/// on the CLI's single-threaded runtime.
#[derive(Debug, Default)]
pub struct Stop {
    reason: RefCell<Option<String>>,
}

impl Stop {
    pub fn set(&self, reason: impl Into<String>) {
        let mut r = self.reason.borrow_mut();
        if r.is_none() {
            *r = Some(reason.into());
        }
    }

    pub fn reason(&self) -> Option<String> {
        self.reason.borrow().clone()
    }

    pub fn is_set(&self) -> bool {
        self.reason.borrow().is_some()
    }
}

/// How to take the lock.
#[derive(Debug, Clone, Copy)]
pub struct LockOptions {
    /// Seconds the lock outlives a killed client.
    pub ttl: u64,
    /// How long to wait for someone else's lock (zero: fail at once).
    pub wait: Duration,
}

/// A held lock.
#[derive(Debug)]
pub struct Lock {
    pub project: String,
    pub id: String,
    ttl: u64,
}

/// Who takes the lock, as others see it: `4kr apply by user@host (pid N)`.
pub fn holder(command: &str) -> String {
    let user = std::env::var("USER").unwrap_or_else(|_| "unknown".into());
    let host =
        nix::unistd::gethostname().ok().and_then(|h| h.into_string().ok()).unwrap_or_else(|| "?".into());
    format!("4kr {command} by {user}@{host} (pid {})", std::process::id())
}

/// Takes the lock of `project`, waiting up to `opts.wait` for another holder. With `saved` (the
/// fingerprint and scope of a saved plan), the server refuses with 409 `stale_plan` when its
/// state no longer matches, in the same transaction that takes the lock.
pub async fn acquire(
    c: &Client,
    project: &str,
    command: &str,
    opts: LockOptions,
    saved: Option<(&str, &FingerprintScope)>,
) -> Result<Lock> {
    let req = LockRequest {
        holder: holder(command),
        ttl_seconds: opts.ttl,
        fingerprint: saved.map(|(f, _)| f.to_owned()),
        scope: saved.map(|(_, s)| s.clone()),
    };
    let started = Instant::now();
    let mut told = false;
    loop {
        match api::take_lock(c, project, &req).await {
            Ok(info) => return Ok(Lock { project: project.to_owned(), id: info.id, ttl: opts.ttl }),
            Err(e) if e.code() == "locked" && started.elapsed() < opts.wait => {
                if !told {
                    eprintln!("waiting up to {}s for the lock: {}", opts.wait.as_secs(), e.message());
                    told = true;
                }
                tokio::time::sleep(Duration::from_millis(500)).await;
            }
            Err(e) if e.code() == "locked" => {
                let help = if opts.wait.is_zero() {
                    "run again when that apply has finished, or pass --lock-timeout SECONDS to wait for it"
                } else {
                    "the other apply is still running; run again when it has finished"
                };
                return Err(e.with_help(help));
            }
            Err(e) if e.code() == "stale_plan" => {
                return Err(e.with_help(
                    "someone changed the project since the plan was saved; run `4kr plan --out FILE` again, review it, and apply the new file",
                ));
            }
            Err(e) => return Err(e),
        }
    }
}

impl Lock {
    /// Runs `work` while refreshing the lock, and while watching for Ctrl-C; either failing marks
    /// `stop`, which the executor checks before starting each action.
    pub async fn hold<F: Future>(&self, c: &Client, stop: &Stop, work: F) -> F::Output {
        let every = Duration::from_millis((self.ttl * 1000 / 3).max(300));
        tokio::pin!(work);
        let mut next = tokio::time::Instant::now() + every;
        // When the server last confirmed the lock: a busy server may answer a refresh late, which
        // only matters once the lock may have expired.
        let mut confirmed = Instant::now();
        let mut ctrl_c = std::pin::pin!(tokio::signal::ctrl_c());
        let mut watching_ctrl_c = true;
        loop {
            tokio::select! {
                out = &mut work => return out,
                _ = tokio::time::sleep_until(next), if !stop.is_set() => {
                    match api::refresh_lock(c, &self.project, &self.id, self.ttl).await {
                        Ok(_) => confirmed = Instant::now(),
                        Err(e) if e.code() == "lock_lost" || confirmed.elapsed() >= Duration::from_secs(self.ttl) => {
                            stop.set(format!("the project lock could not be kept: {}", e.message()));
                        }
                        Err(_) => {}
                    }
                    next = tokio::time::Instant::now() + every;
                }
                _ = &mut ctrl_c, if watching_ctrl_c => {
                    watching_ctrl_c = false;
                    eprintln!("\ninterrupted: waiting for running actions to finish; nothing new is started");
                    stop.set("interrupted (Ctrl-C)");
                }
            }
        }
    }

    /// Releases the lock; a failure only warns, since the lock expires by itself.
    pub async fn release(self, c: &Client) {
        if let Err(e) = api::release_lock(c, &self.project, &self.id).await {
            eprintln!(
                "warning: could not release the lock on project {:?} ({}); it expires within {}s",
                self.project,
                e.message(),
                self.ttl
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stop_keeps_the_first_reason() {
        let s = Stop::default();
        assert!(!s.is_set());
        s.set("lock lost");
        s.set("interrupted");
        assert_eq!(s.reason().as_deref(), Some("lock lost"));
    }

    #[test]
    fn holder_names_command_and_pid() {
        let h = holder("apply");
        assert!(h.starts_with("4kr apply by "), "{h}");
        assert!(h.ends_with(&format!("(pid {})", std::process::id())), "{h}");
    }
}
