//! `forkr-shim`: the helper that starts a box's PID 1 (like runc's `init` re-exec).
//!
//! Why a separate process: the server is multi-threaded (tokio), and `unshare(CLONE_NEWPID)`,
//! mount-namespace setup and the rest need a single-threaded process that may allocate freely.
//! The server spawns `forkr-shim start` with the [`ShimRequest`] as JSON on stdin; the shim
//!
//! 1. opens the host files PID 1 keeps (log, `/dev/null`),
//! 2. joins the box cgroup (before anything else, so that all of the box is accounted to it and
//!    the cgroup namespace is rooted there),
//! 3. unshares mount, UTS, IPC, network, PID and cgroup namespaces, sets the hostname, brings `lo`
//!    up and makes all mounts private,
//! 4. forks: the child is PID 1 of the new PID namespace; it builds the box's mounts, pivots into
//!    the root, drops capabilities, closes inherited fds and either execs tini (when the root has
//!    tini and bash) or becomes the built-in init,
//! 5. waits on a close-on-exec sync pipe for "exec succeeded" (EOF) or "init ready", and writes a
//!    [`ShimReport`] with PID 1's host PID as one JSON line to stdout, then exits.
//!
//! PID 1 is then an orphan: it is adopted by the server (a child subreaper) or the host's init,
//! and keeps running when the server restarts.

use std::ffi::{CString, OsStr};
use std::fs::File;
use std::io::{Read, Write};
use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::os::unix::fs::OpenOptionsExt;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use nix::sched::{CloneFlags, unshare};
use nix::sys::signal::{SaFlags, SigAction, SigHandler, SigSet, Signal, sigaction};
use nix::sys::stat::{Mode, umask};
use nix::sys::wait::{WaitPidFlag, WaitStatus, waitpid};
use nix::unistd::{ForkResult, Pid, fork, pipe2};
use serde::{Deserialize, Serialize};

use super::cgroup::CgroupView;
use super::{net, rootfs, sys};

/// Where tini may live in a box root, in order of preference.
pub(crate) const TINI_PATHS: &[&str] = &["/usr/bin/tini", "/sbin/tini", "/bin/tini"];

/// Name PID 1 shows in `/proc/1/cmdline` and `ps` when it is the built-in init.
pub(crate) const BUILTIN_INIT_NAME: &str = "forkr-init";

/// The start request, sent by the server on the shim's stdin.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct ShimRequest {
    pub hostname: String,
    pub root: PathBuf,
    pub mounts: Vec<ShimMount>,
    pub env: Vec<(String, String)>,
    pub log_path: PathBuf,
    /// `cgroup.procs` files of the box cgroup, one per hierarchy.
    pub cgroup_procs: Vec<PathBuf>,
    pub cgroup_view: CgroupView,
    /// The box's veth on the host bridge; `None`: loopback only.
    #[serde(default)]
    pub net: Option<net::BoxNet>,
}

/// A bind mount, as in [`crate::runtime::BindMount`].
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct ShimMount {
    pub source: PathBuf,
    pub target: String,
    pub read_only: bool,
    pub file: bool,
}

/// Which init PID 1 runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub(crate) enum InitKind {
    /// `tini -s -- /bin/bash -lc "sleep infinity"` (document 001).
    Tini,
    /// The shim itself, reaping children forever.
    Builtin,
}

/// The shim's answer on stdout.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub(crate) enum ShimReport {
    Started { pid: u32, init: InitKind },
    Failed { message: String },
}

/// Entry point of the `forkr-shim` binary.
pub fn shim_main() -> ! {
    let mut args = std::env::args_os().skip(1);
    if args.next().as_deref() != Some(OsStr::new("start")) || args.next().is_some() {
        eprintln!(
            "forkr-shim is an internal helper of forkr-server that starts a box's PID 1; it is not meant to be \
             run by hand"
        );
        std::process::exit(2);
    }
    let report = match start() {
        Ok((pid, init)) => ShimReport::Started { pid, init },
        Err(message) => ShimReport::Failed { message },
    };
    let ok = matches!(report, ShimReport::Started { .. });
    let line = serde_json::to_string(&report)
        .unwrap_or_else(|e| format!(r#"{{"failed":{{"message":"encoding the shim report: {e}"}}}}"#));
    let mut out = std::io::stdout().lock();
    let _ = writeln!(out, "{line}");
    let _ = out.flush();
    std::process::exit(if ok { 0 } else { 1 })
}

fn start() -> Result<(u32, InitKind), String> {
    let req: ShimRequest = serde_json::from_reader(std::io::stdin().lock())
        .map_err(|e| format!("reading the start request from the server: {e}"))?;
    // Host files PID 1 keeps as stdio; opened now, while the host filesystem is still reachable.
    let log = std::fs::OpenOptions::new()
        .append(true)
        .create(true)
        .mode(0o640)
        .open(&req.log_path)
        .map_err(|e| format!("opening the box log {}: {e}", req.log_path.display()))?;
    let null = File::open("/dev/null").map_err(|e| format!("opening /dev/null: {e}"))?;

    let me = std::process::id().to_string();
    for procs in &req.cgroup_procs {
        std::fs::OpenOptions::new()
            .write(true)
            .open(procs)
            .and_then(|mut f| f.write_all(me.as_bytes()))
            .map_err(|e| format!("joining the box cgroup {}: {e}", procs.display()))?;
    }
    // Opened before unsharing: this socket keeps talking to the host's network namespace, where
    // the box's veth is created and attached to the bridge.
    let mut host_nl = match &req.net {
        Some(_) => Some(net::Rtnl::open().map_err(|e| format!("opening netlink on the host: {e}"))?),
        None => None,
    };
    let flags = CloneFlags::CLONE_NEWNS
        | CloneFlags::CLONE_NEWUTS
        | CloneFlags::CLONE_NEWIPC
        | CloneFlags::CLONE_NEWNET
        | CloneFlags::CLONE_NEWPID
        | CloneFlags::CLONE_NEWCGROUP;
    unshare(flags).map_err(|e| format!("creating the box's namespaces: {}", std::io::Error::from(e)))?;
    nix::unistd::sethostname(&req.hostname)
        .map_err(|e| format!("setting the hostname {:?}: {}", req.hostname, std::io::Error::from(e)))?;
    sys::loopback_up().map_err(|e| format!("bringing up the box's loopback interface: {e}"))?;
    if let (Some(host_nl), Some(box_net)) = (host_nl.as_mut(), &req.net) {
        net::attach_box(host_nl, box_net).map_err(|e| format!("connecting the box to the network: {e}"))?;
    }
    drop(host_nl);
    nix::mount::mount(
        None::<&str>,
        "/",
        None::<&str>,
        nix::mount::MsFlags::MS_REC | nix::mount::MsFlags::MS_PRIVATE,
        None::<&str>,
    )
    .map_err(|e| format!("making the box's mounts private: {}", std::io::Error::from(e)))?;

    let (sync_r, sync_w) = pipe2(nix::fcntl::OFlag::O_CLOEXEC)
        .map_err(|e| format!("creating a pipe: {}", std::io::Error::from(e)))?;
    // SAFETY: the shim is single-threaded, so the child may do anything the parent could.
    match unsafe { fork() } {
        Ok(ForkResult::Child) => {
            drop(sync_r);
            child_main(&req, log, null, sync_w)
        }
        Ok(ForkResult::Parent { child }) => {
            drop(sync_w);
            let mut msg = Vec::new();
            let read = File::from(sync_r).read_to_end(&mut msg);
            let pid = child.as_raw() as u32;
            let fail = |message: String| {
                let _ = nix::sys::signal::kill(child, Signal::SIGKILL);
                let _ = waitpid(child, None);
                Err(message)
            };
            if let Err(e) = read {
                return fail(format!("reading PID 1's setup result: {e}"));
            }
            match msg.as_slice() {
                [b'B'] => Ok((pid, InitKind::Builtin)),
                [b'T'] => match waitpid(child, Some(WaitPidFlag::WNOHANG)) {
                    // Exec succeeded (the pipe closed on exec) and PID 1 runs.
                    Ok(WaitStatus::StillAlive) => Ok((pid, InitKind::Tini)),
                    Ok(status) => Err(format!("PID 1 (tini) exited right after it started: {status:?}")),
                    Err(e) => Err(format!("checking PID 1: {}", std::io::Error::from(e))),
                },
                [b'T', b'E', rest @ ..] | [b'E', rest @ ..] => {
                    fail(String::from_utf8_lossy(rest).into_owned())
                }
                _ => fail(match waitpid(child, Some(WaitPidFlag::WNOHANG)) {
                    Ok(WaitStatus::Signaled(_, sig, _)) => {
                        format!("PID 1 was killed by {sig} while setting up the box (out of memory?)")
                    }
                    other => format!("PID 1 died while setting up the box ({other:?})"),
                }),
            }
        }
        Err(e) => Err(format!("forking PID 1: {}", std::io::Error::from(e))),
    }
}

/// The future PID 1. Never returns: it execs tini, runs the built-in init, or reports an error on
/// the sync pipe and exits.
fn child_main(req: &ShimRequest, log: File, null: File, sync: OwnedFd) -> ! {
    let report_error = |msg: &str| -> ! {
        let mut bytes = Vec::with_capacity(msg.len() + 1);
        bytes.push(b'E');
        bytes.extend_from_slice(msg.as_bytes());
        // SAFETY: writing a valid buffer to our own pipe.
        unsafe { libc::write(sync.as_raw_fd(), bytes.as_ptr().cast(), bytes.len()) };
        // SAFETY: _exit never returns and skips atexit handlers of the copied parent.
        unsafe { libc::_exit(1) }
    };
    let prepared = match setup(req, &log, &null) {
        Ok(p) => p,
        Err(msg) => report_error(&msg),
    };
    drop(log);
    drop(null);
    match prepared {
        Prepared::Tini { path, argv, envp } => {
            // SAFETY: writing a valid buffer to our own pipe.
            unsafe { libc::write(sync.as_raw_fd(), b"T".as_ptr().cast(), 1) };
            let Err(err) = nix::unistd::execve(&path, &argv, &envp);
            report_error(&format!("starting {}: {}", path.to_string_lossy(), std::io::Error::from(err)))
        }
        Prepared::Builtin => builtin_init(sync),
    }
}

enum Prepared {
    Tini { path: CString, argv: Vec<CString>, envp: Vec<CString> },
    Builtin,
}

fn setup(req: &ShimRequest, log: &File, null: &File) -> Result<Prepared, String> {
    // Own session: a terminal signal to the server's process group never reaches the box.
    nix::unistd::setsid().map_err(|e| format!("setsid: {}", std::io::Error::from(e)))?;
    umask(Mode::empty());
    rootfs::prepare(req)?;
    umask(Mode::from_bits_truncate(0o022));

    nix::unistd::dup2_stdin(null.as_fd()).map_err(|e| format!("redirecting stdin: {e}"))?;
    nix::unistd::dup2_stdout(log.as_fd()).map_err(|e| format!("redirecting stdout: {e}"))?;
    nix::unistd::dup2_stderr(log.as_fd()).map_err(|e| format!("redirecting stderr: {e}"))?;
    reset_signals();

    let cstr = |s: &str| CString::new(s).map_err(|_| format!("{s:?} contains a NUL byte"));
    let envp = req.env.iter().map(|(k, v)| cstr(&format!("{k}={v}"))).collect::<Result<Vec<_>, _>>()?;
    let tini = TINI_PATHS.iter().find(|p| is_executable(p));
    let prepared = match tini {
        Some(tini) if is_executable("/bin/bash") => Prepared::Tini {
            path: cstr(tini)?,
            argv: [*tini, "-s", "--", "/bin/bash", "-lc", "sleep infinity"]
                .iter()
                .map(|a| cstr(a))
                .collect::<Result<_, _>>()?,
            envp,
        },
        _ => Prepared::Builtin,
    };

    sys::drop_bounding_caps().map_err(|e| format!("dropping capabilities: {}", errno_text(e)))?;
    sys::set_process_caps().map_err(|e| format!("setting capabilities: {}", errno_text(e)))?;
    // Every inherited fd above stderr closes at exec (the sync pipe too, which is the readiness
    // signal); the built-in init closes them right away.
    sys::close_from(3, true).map_err(|e| format!("closing inherited files: {}", errno_text(e)))?;
    Ok(prepared)
}

fn errno_text(e: i32) -> String {
    std::io::Error::from_raw_os_error(e).to_string()
}

fn is_executable(path: &str) -> bool {
    let Ok(c) = CString::new(path) else { return false };
    // SAFETY: valid C string.
    unsafe { libc::access(c.as_ptr(), libc::X_OK) == 0 }
}

/// Default dispositions and an empty mask: ignored signals (Rust ignores SIGPIPE) would otherwise
/// stay ignored across exec and surprise every program in the box.
fn reset_signals() {
    let dfl = SigAction::new(SigHandler::SigDfl, SaFlags::empty(), SigSet::empty());
    for sig in Signal::iterator() {
        if sig != Signal::SIGKILL && sig != Signal::SIGSTOP {
            // SAFETY: installing SIG_DFL is always sound.
            let _ = unsafe { sigaction(sig, &dfl) };
        }
    }
    let _ = SigSet::empty().thread_set_mask();
}

/// The built-in minimal init: reaps every child forever; on SIGTERM/SIGINT it asks every process
/// of the box to terminate, waits for them (up to [`SHUTDOWN_WAIT`]) and exits, which makes the
/// kernel SIGKILL whatever is left in the PID namespace.
fn builtin_init(sync: OwnedFd) -> ! {
    // Not dumpable: no box process may ptrace PID 1 or open /proc/1/exe, which is the host's shim
    // binary (the CVE-2019-5736 pattern).
    // SAFETY: plain prctl calls.
    unsafe {
        libc::prctl(libc::PR_SET_DUMPABLE, 0, 0, 0, 0);
        libc::prctl(libc::PR_SET_NAME, c"forkr-init".as_ptr(), 0, 0, 0);
    }
    let mut set = SigSet::empty();
    for s in [Signal::SIGCHLD, Signal::SIGTERM, Signal::SIGINT] {
        set.add(s);
    }
    let _ = set.thread_block();
    // SAFETY: writing a valid buffer to our own pipe.
    unsafe { libc::write(sync.as_raw_fd(), b"B".as_ptr().cast(), 1) };
    drop(sync);
    let _ = sys::close_from(3, false);
    loop {
        match set.wait() {
            Ok(Signal::SIGCHLD) => reap(),
            Ok(Signal::SIGTERM | Signal::SIGINT) => shutdown(&set),
            _ => {}
        }
    }
}

/// How long the built-in init waits for the box's processes after forwarding SIGTERM. The server
/// applies the box's own termination grace on top and SIGKILLs after it.
const SHUTDOWN_WAIT: Duration = Duration::from_secs(10);

fn reap() {
    while let Ok(status) = waitpid(Pid::from_raw(-1), Some(WaitPidFlag::WNOHANG)) {
        if status == WaitStatus::StillAlive {
            break;
        }
    }
}

fn shutdown(set: &SigSet) -> ! {
    // kill(-1) from the init of a PID namespace reaches every other process in it.
    let _ = nix::sys::signal::kill(Pid::from_raw(-1), Signal::SIGTERM);
    let deadline = Instant::now() + SHUTDOWN_WAIT;
    loop {
        reap();
        if !others_alive() || Instant::now() > deadline {
            // SAFETY: exiting PID 1 of the namespace; the kernel kills the rest.
            unsafe { libc::_exit(0) }
        }
        let timeout = libc::timespec { tv_sec: 0, tv_nsec: 50_000_000 };
        // SAFETY: valid set and timespec; a null siginfo is allowed.
        unsafe { libc::sigtimedwait(set.as_ref(), std::ptr::null_mut(), &timeout) };
    }
}

/// Whether any process other than PID 1 exists in the box (its `/proc` shows only the box).
fn others_alive() -> bool {
    std::fs::read_dir("/proc").is_ok_and(|entries| {
        entries.flatten().any(|e| {
            e.file_name().to_str().is_some_and(|n| n != "1" && n.bytes().all(|b| b.is_ascii_digit()))
        })
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn report_wire_format_is_stable() {
        let ok = serde_json::to_string(&ShimReport::Started { pid: 42, init: InitKind::Tini }).unwrap();
        assert_eq!(ok, r#"{"started":{"pid":42,"init":"tini"}}"#);
        let err: ShimReport = serde_json::from_str(r#"{"failed":{"message":"boom"}}"#).unwrap();
        assert!(matches!(err, ShimReport::Failed { message } if message == "boom"));
    }
}
