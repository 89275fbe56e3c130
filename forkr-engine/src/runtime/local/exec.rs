//! Running a process inside a running box, without any helper binary (exec must stay within a
//! few milliseconds).
//!
//! The server forks a child (std's `Command` with a `pre_exec` hook). That child, the
//! *intermediate*, joins the box cgroup (`cgroup.procs` fds opened beforehand), enters all of the
//! box's namespaces at once with `setns` on a pidfd of PID 1 (immune to PID reuse), chroots into
//! PID 1's root (an `O_PATH` fd of `/proc/<pid>/root` opened beforehand) and forks again, because
//! only children enter a PID namespace. The *grandchild* changes to the working directory, drops
//! capabilities and privileges like PID 1, starts a session (with the PTY as controlling terminal),
//! marks every inherited fd close-on-exec and returns, so that std execs `argv` (resolved through
//! the `PATH` of the box environment, inside the box). The intermediate reports the grandchild's
//! host PID, closes everything and waits for it, exiting with its status (128 + signal for a
//! signalled process). A detached process forks once more inside the box and its parent exits, so
//! that the box's PID 1 adopts it (an orphan goes to the reaper of its parent's PID namespace).
//!
//! Everything the two forked processes need (C strings, fds) is prepared before the fork: after it,
//! only async-signal-safe system calls run. Both stay non-dumpable until exec, so no box process can
//! ptrace them or read the server memory they still carry.

use std::ffi::CString;
use std::io;
use std::os::fd::{AsFd, AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::fs::OpenOptionsExt;
use std::pin::Pin;
use std::process::Stdio;
use std::sync::Arc;
use std::task::{Context, Poll, ready};

use nix::fcntl::{OFlag, OpenHow, ResolveFlag, openat2};
use tokio::io::unix::AsyncFd;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

use super::{cgroup::CgroupDriver, procfs, sys};
use crate::runtime::{BoxedRead, BoxedWrite, ExecIo, ExecSpec, Process, PtyControl, Running};
use crate::{Error, Result};

/// Setup steps, as reported on the exec report pipe.
mod step {
    pub const CGROUP: u32 = 1;
    pub const SETNS: u32 = 2;
    pub const CHROOT: u32 = 3;
    pub const FORK: u32 = 4;
    pub const CWD: u32 = 5;
    pub const CAPS: u32 = 6;
    pub const IDS: u32 = 7;
    pub const SESSION: u32 = 8;
}

fn step_message(step: u32, errno: i32, spec: &ExecSpec) -> Error {
    let why = io::Error::from_raw_os_error(errno);
    match step {
        step::CWD => Error::bad_request(
            "invalid_cwd",
            format!(
                "cannot change to working directory {:?} in the box: {why}; pass a directory that exists",
                spec.cwd
            ),
        ),
        step::IDS => Error::bad_request(
            "invalid_user",
            format!("cannot switch to uid {} / gid {} in the box: {why}", spec.uid, spec.gid),
        ),
        step::SETNS => Error::conflict(
            "box_not_running",
            format!("cannot enter the box's namespaces: {why}; the box has probably stopped"),
        ),
        step::CGROUP => Error::internal(format!("joining the box cgroup: {why}")),
        step::CHROOT => Error::internal(format!("entering the box root: {why}")),
        step::FORK => Error::internal(format!("forking inside the box: {why}")),
        step::CAPS => Error::internal(format!("dropping capabilities: {why}")),
        _ => Error::internal(format!("starting a session in the box: {why}")),
    }
}

/// Everything the forked processes use, prepared in the server.
struct Plan {
    cgroup_fds: Vec<RawFd>,
    pidfd: RawFd,
    rootfd: RawFd,
    report: RawFd,
    cwd: CString,
    uid: u32,
    gid: u32,
    tty: bool,
    detached: bool,
}

impl Plan {
    /// The `pre_exec` hook: runs in the intermediate after std's fork.
    ///
    /// # Safety
    /// Async-signal-safe system calls only; no allocation, no locks.
    fn run(&self) -> io::Result<()> {
        let fail = |step: u32| -> io::Error {
            let e = io::Error::last_os_error();
            sys::Record::Failed { step, errno: e.raw_os_error().unwrap_or(libc::EIO) }.send(self.report);
            e
        };
        // SAFETY (whole block): plain system calls on fds and C strings prepared before the fork.
        unsafe {
            libc::prctl(libc::PR_SET_DUMPABLE, 0, 0, 0, 0);
            for fd in &self.cgroup_fds {
                if libc::write(*fd, c"0".as_ptr().cast(), 1) != 1 {
                    return Err(fail(step::CGROUP));
                }
            }
            let ns = libc::CLONE_NEWNS
                | libc::CLONE_NEWUTS
                | libc::CLONE_NEWIPC
                | libc::CLONE_NEWNET
                | libc::CLONE_NEWPID
                | libc::CLONE_NEWCGROUP;
            if libc::setns(self.pidfd, ns) != 0 {
                return Err(fail(step::SETNS));
            }
            if libc::fchdir(self.rootfd) != 0 || libc::chroot(c".".as_ptr()) != 0 {
                return Err(fail(step::CHROOT));
            }
            // The server's SIGCHLD handler must not run in the intermediate.
            libc::signal(libc::SIGCHLD, libc::SIG_DFL);
            let pid = libc::fork();
            if pid < 0 {
                return Err(fail(step::FORK));
            }
            if pid > 0 {
                self.intermediate(pid)
            }
            self.grandchild()
        }
    }

    /// Reports the grandchild, closes everything (std's error pipe included, so that only the
    /// exec'd process decides when `spawn` returns) and waits for it.
    unsafe fn intermediate(&self, pid: libc::pid_t) -> ! {
        sys::Record::HostPid(pid as u32).send(self.report);
        let _ = sys::close_from(0, false);
        // SAFETY: async-signal-safe calls; _exit never returns.
        unsafe {
            let mut status = 0;
            loop {
                let r = libc::waitpid(pid, &mut status, 0);
                if r == pid {
                    break;
                }
                if r < 0 && *libc::__errno_location() != libc::EINTR {
                    libc::_exit(255);
                }
            }
            let code = if libc::WIFEXITED(status) {
                libc::WEXITSTATUS(status)
            } else if libc::WIFSIGNALED(status) {
                128 + libc::WTERMSIG(status)
            } else {
                255
            };
            libc::_exit(code)
        }
    }

    /// Runs inside the box's PID namespace; returning `Ok` lets std exec argv.
    unsafe fn grandchild(&self) -> io::Result<()> {
        let fail = |step: u32| -> io::Error {
            let e = io::Error::last_os_error();
            sys::Record::Failed { step, errno: e.raw_os_error().unwrap_or(libc::EIO) }.send(self.report);
            e
        };
        // SAFETY (whole block): async-signal-safe calls on prepared data.
        unsafe {
            // Nothing from the host survives exec: std's own pipes and stdio are the only fds
            // that may, and std's pipe is close-on-exec itself.
            if sys::close_from(3, true).is_err() {
                return Err(fail(step::SESSION));
            }
            if enter_cwd(&self.cwd).is_err() {
                return Err(fail(step::CWD));
            }
            if let Err(e) = sys::drop_bounding_caps() {
                *libc::__errno_location() = e;
                return Err(fail(step::CAPS));
            }
            if libc::setgroups(0, std::ptr::null()) != 0
                || libc::setgid(self.gid) != 0
                || libc::setuid(self.uid) != 0
            {
                return Err(fail(step::IDS));
            }
            if self.uid == 0
                && let Err(e) = sys::set_process_caps()
            {
                *libc::__errno_location() = e;
                return Err(fail(step::CAPS));
            }
            if libc::setsid() < 0 {
                return Err(fail(step::SESSION));
            }
            if self.tty && libc::ioctl(0, libc::TIOCSCTTY, 0) != 0 {
                return Err(fail(step::SESSION));
            }
            if self.detached {
                // An orphan is adopted by the reaper of its *parent's* PID namespace. Our parent,
                // the intermediate, lives in the host's, so fork once more inside the box: when
                // this process exits right away, the box's PID 1 adopts (and later reaps) the
                // detached process, as if the box had started it itself.
                let pid = libc::fork();
                if pid < 0 {
                    return Err(fail(step::FORK));
                }
                if pid > 0 {
                    libc::_exit(0);
                }
            }
            // Inside the box's PID namespace getpid() is the in-box PID.
            sys::Record::BoxPid(libc::getpid() as u32).send(self.report);
        }
        Ok(())
    }
}

/// Changes to the working directory `cwd` (absolute, resolved in the box root we are chrooted
/// into) without following magic links, then checks that the result lies under that root.
///
/// Until exec, this process still holds every descriptor the server had open (they are only
/// close-on-exec), so a plain `chdir("/proc/self/fd/N")` could land on a directory of the host that
/// the server happened to have open, and the command would start outside the box (runc's
/// CVE-2024-21626). `RESOLVE_NO_MAGICLINKS` refuses every `/proc/*/fd`, `cwd`, `root` and `exe` link;
/// the `getcwd` check (which reports a directory outside the root as "(unreachable)…", not `/…`)
/// is the second line of defence.
///
/// # Safety
/// Async-signal-safe: raw system calls on a caller-owned C string and stack buffers only.
unsafe fn enter_cwd(cwd: &std::ffi::CStr) -> io::Result<()> {
    // SAFETY (whole block): raw system calls with valid pointers to stack data.
    unsafe {
        let mut how: libc::open_how = std::mem::zeroed();
        how.flags = (libc::O_PATH | libc::O_DIRECTORY | libc::O_CLOEXEC) as u64;
        how.resolve = libc::RESOLVE_NO_MAGICLINKS;
        let fd = libc::syscall(
            libc::SYS_openat2,
            libc::AT_FDCWD,
            cwd.as_ptr(),
            &how as *const libc::open_how,
            std::mem::size_of::<libc::open_how>(),
        );
        if fd < 0 {
            return Err(io::Error::last_os_error());
        }
        let rc = libc::fchdir(fd as i32);
        let err = io::Error::last_os_error();
        libc::close(fd as i32);
        if rc != 0 {
            *libc::__errno_location() = err.raw_os_error().unwrap_or(libc::EIO);
            return Err(err);
        }
        let mut buf = [0u8; 256];
        let n = libc::syscall(libc::SYS_getcwd, buf.as_mut_ptr(), buf.len());
        // ERANGE (a deep path) is fine; anything that is not an absolute path is not in the box.
        if n > 0 && buf[0] != b'/' {
            *libc::__errno_location() = libc::EXDEV;
            return Err(io::Error::from_raw_os_error(libc::EXDEV));
        }
    }
    Ok(())
}

fn cstring(what: &str, s: &str) -> Result<CString> {
    CString::new(s)
        .map_err(|_| Error::bad_request("invalid_exec", format!("{what} {s:?} contains a NUL byte")))
}

fn validate(spec: &ExecSpec) -> Result<()> {
    let Some(first) = spec.argv.first() else {
        return Err(Error::bad_request("invalid_exec", "the command is empty; pass at least a program name"));
    };
    if first.is_empty() {
        return Err(Error::bad_request("invalid_exec", "the program name is empty"));
    }
    for a in &spec.argv {
        cstring("argument", a)?;
    }
    for (k, v) in &spec.env {
        if k.is_empty() || k.contains('=') {
            return Err(Error::bad_request(
                "invalid_env",
                format!("invalid environment variable name {k:?}"),
            ));
        }
        cstring("environment variable", k)?;
        cstring("environment value", v)?;
    }
    if !spec.cwd.starts_with('/') {
        return Err(Error::bad_request(
            "invalid_cwd",
            format!("working directory {:?} must be an absolute path inside the box", spec.cwd),
        ));
    }
    Ok(())
}

/// Opens a pidfd for the box's PID 1 and checks it is still the process `run` describes.
pub(super) fn open_pid1(run: &Running) -> Result<OwnedFd> {
    let not_running = || {
        Error::conflict("box_not_running", "the box is not running (its PID 1 has exited); start it first")
    };
    let pidfd = sys::pidfd_open(run.pid).map_err(|_| not_running())?;
    // Checked *after* opening: the pidfd now pins the process, so a match proves identity.
    match procfs::stat(run.pid) {
        Some(st) if st.start_time == run.start_time && !st.is_dead() => Ok(pidfd),
        _ => Err(not_running()),
    }
}

/// Starts `spec` in the box whose PID 1 is `run`.
pub(super) async fn exec(
    cgroups: &dyn CgroupDriver,
    cgroup: &std::path::Path,
    run: &Running,
    spec: ExecSpec,
) -> Result<Process> {
    exec_in(run, &cgroups.dirs(cgroup), spec).await
}

/// Starts `spec` in the namespaces and root of the process `run` names (host PID and start time,
/// so a reused PID is refused), joining the cgroup directories `cgroup_dirs` (one per hierarchy).
///
/// The one entry point shared by the local driver (a box's PID 1) and the Kubernetes driver's node
/// path (the init of a box's runner container, found through its cgroup), so that both get the
/// same isolation, PTY handling and error messages.
pub(crate) async fn exec_in(
    run: &Running,
    cgroup_dirs: &[std::path::PathBuf],
    spec: ExecSpec,
) -> Result<Process> {
    validate(&spec)?;
    let pidfd = open_pid1(run)?;
    let rootfd = nix::fcntl::open(
        format!("/proc/{}/root", run.pid).as_str(),
        OFlag::O_PATH | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC,
        nix::sys::stat::Mode::empty(),
    )
    .map_err(|e| Error::io("opening the box root of PID 1", e.into()))?;
    let cgroup_fds = cgroup_dirs
        .iter()
        .map(|d| d.join("cgroup.procs"))
        .map(|p| {
            std::fs::OpenOptions::new()
                .write(true)
                .custom_flags(libc::O_CLOEXEC)
                .open(&p)
                .map(OwnedFd::from)
                .map_err(|e| Error::io(format!("opening {}", p.display()), e))
        })
        .collect::<Result<Vec<_>>>()?;
    let (report_r, report_w) = nix::unistd::pipe2(OFlag::O_CLOEXEC)
        .map_err(|e| Error::io("creating the exec report pipe", e.into()))?;

    let mut cmd = tokio::process::Command::new(&spec.argv[0]);
    cmd.args(&spec.argv[1..]).env_clear().envs(spec.env.iter().map(|(k, v)| (k, v))).kill_on_drop(false);
    let mut pty = None;
    match &spec.io {
        ExecIo::Pipes => {
            cmd.stdin(Stdio::piped()).stdout(Stdio::piped()).stderr(Stdio::piped());
        }
        ExecIo::Tty { rows, cols } => {
            let (master, slave) = open_box_pty(&rootfd, *rows, *cols)?;
            let dup = |fd: &OwnedFd| fd.try_clone().map_err(|e| Error::io("duplicating the PTY", e));
            cmd.stdin(Stdio::from(dup(&slave)?)).stdout(Stdio::from(dup(&slave)?)).stderr(Stdio::from(slave));
            pty = Some(master);
        }
        ExecIo::Detached { log } => {
            let file = std::fs::OpenOptions::new()
                .append(true)
                .create(true)
                .mode(0o640)
                .open(log)
                .map_err(|e| Error::io(format!("opening the exec log {}", log.display()), e))?;
            let err = file.try_clone().map_err(|e| Error::io("duplicating the exec log", e))?;
            cmd.stdin(Stdio::null()).stdout(Stdio::from(file)).stderr(Stdio::from(err));
        }
    }
    let plan = Plan {
        cgroup_fds: cgroup_fds.iter().map(|f| f.as_raw_fd()).collect(),
        pidfd: pidfd.as_raw_fd(),
        rootfd: rootfd.as_raw_fd(),
        report: report_w.as_raw_fd(),
        cwd: cstring("working directory", &spec.cwd)?,
        uid: spec.uid,
        gid: spec.gid,
        tty: matches!(spec.io, ExecIo::Tty { .. }),
        detached: matches!(spec.io, ExecIo::Detached { .. }),
    };
    // SAFETY: Plan::run only makes async-signal-safe system calls (see its docs).
    unsafe { cmd.pre_exec(move || plan.run()) };
    let spawned = cmd.spawn();
    // The forked processes hold their own copies; ours must go so that the report pipe reaches EOF.
    drop(report_w);
    drop(cgroup_fds);
    drop(rootfd);
    drop(pidfd);
    let records = read_report(report_r).await?;
    let failed = records.iter().find_map(|r| match r {
        sys::Record::Failed { step, errno } => Some((*step, *errno)),
        _ => None,
    });
    let mut child = match (spawned, failed) {
        (_, Some((step, errno))) => return Err(step_message(step, errno, &spec)),
        (Ok(child), None) => child,
        (Err(e), None) => return Err(spawn_error(&spec, e)),
    };
    let detached = matches!(spec.io, ExecIo::Detached { .. });
    let box_pid = records.iter().find_map(|r| if let sys::Record::BoxPid(p) = r { Some(*p) } else { None });
    let Some(box_pid) = box_pid else {
        return Err(Error::internal(
            "the exec'd process did not report its PID; it probably crashed while starting",
        ));
    };
    // The host PID: reported by the intermediate, except for a detached process (forked once
    // more inside the box), which is found among the box cgroup's processes.
    let host_pid = if detached {
        super::cgroup::pids_in(cgroup_dirs)
            .into_iter()
            .map(|p| p as u32)
            .find(|p| procfs::nested_pid(*p) == Some(box_pid))
    } else {
        records.iter().find_map(|r| if let sys::Record::HostPid(p) = r { Some(*p) } else { None })
    };
    // A pidfd of the process for `kill`; only kept if it still is the process we started.
    let target = host_pid
        .and_then(|p| sys::pidfd_open(p).ok().filter(|_| procfs::nested_pid(p) == Some(box_pid)))
        .map(Arc::new);
    let kill: Box<dyn Fn() + Send + Sync> = Box::new(move || {
        if let Some(fd) = &target {
            let _ = sys::pidfd_signal(fd.as_fd(), libc::SIGKILL);
        }
    });

    let mut process = Process {
        pid: box_pid,
        stdin: child.stdin.take().map(|s| Box::pin(s) as BoxedWrite),
        stdout: child.stdout.take().map(|s| Box::pin(s) as BoxedRead),
        stderr: child.stderr.take().map(|s| Box::pin(s) as BoxedRead),
        pty: None,
        wait: Box::pin(std::future::ready(Ok(0))),
        kill,
    };
    if let Some(master) = pty {
        let writer = master.try_clone().map_err(|e| Error::io("duplicating the PTY", e))?;
        let control = master.try_clone().map_err(|e| Error::io("duplicating the PTY", e))?;
        process.stdout = Some(Box::pin(PtyStream::new(master)?));
        process.stdin = Some(Box::pin(PtyStream::new(writer)?));
        process.pty = Some(Box::new(PtyResize(control)));
    }
    process.wait = Box::pin(async move {
        let status = child.wait().await.map_err(|e| Error::io("waiting for the exec'd process", e))?;
        if detached {
            return Ok(0);
        }
        let signal = std::os::unix::process::ExitStatusExt::signal(&status);
        Ok(status.code().unwrap_or_else(|| 128 + signal.unwrap_or(0)))
    });
    Ok(process)
}

fn spawn_error(spec: &ExecSpec, e: io::Error) -> Error {
    match e.raw_os_error() {
        Some(libc::ENOENT) => Error::bad_request(
            "command_not_found",
            format!(
                "{:?} was not found in the box (looked in the PATH of the box environment)",
                spec.argv[0]
            ),
        ),
        Some(libc::EACCES) => Error::bad_request(
            "command_not_executable",
            format!("{:?} in the box is not executable by uid {}", spec.argv[0], spec.uid),
        ),
        _ => Error::io(format!("starting {:?} in the box", spec.argv[0]), e),
    }
}

async fn read_report(fd: OwnedFd) -> Result<Vec<sys::Record>> {
    use tokio::io::AsyncReadExt;
    let mut rx = tokio::net::unix::pipe::Receiver::from_owned_fd(fd)
        .map_err(|e| Error::io("reading the exec report pipe", e))?;
    let mut bytes = Vec::with_capacity(36);
    rx.read_to_end(&mut bytes).await.map_err(|e| Error::io("reading the exec report pipe", e))?;
    Ok(sys::Record::decode_all(&bytes))
}

/// Opens a PTY pair in the box's own devpts instance (so that `tty` in the box names a real
/// `/dev/pts/N` there): `/dev/pts/ptmx` is resolved inside the box root without following links
/// and must be on devpts. The slave comes from `TIOCGPTPEER`, never from a path.
fn open_box_pty(root: &OwnedFd, rows: u16, cols: u16) -> Result<(OwnedFd, OwnedFd)> {
    let how = OpenHow::new().flags(OFlag::O_RDWR | OFlag::O_NOCTTY | OFlag::O_CLOEXEC).resolve(
        ResolveFlag::RESOLVE_IN_ROOT | ResolveFlag::RESOLVE_NO_SYMLINKS | ResolveFlag::RESOLVE_NO_MAGICLINKS,
    );
    let master = openat2(root, "dev/pts/ptmx", how)
        .map_err(|e| Error::io("opening /dev/pts/ptmx in the box", e.into()))?;
    let fs = nix::sys::statfs::fstatfs(&master)
        .map_err(|e| Error::io("checking /dev/pts/ptmx in the box", e.into()))?;
    if fs.filesystem_type() != nix::sys::statfs::DEVPTS_SUPER_MAGIC {
        return Err(Error::internal(
            "/dev/pts/ptmx in the box is not on devpts; restart the box to recreate /dev",
        ));
    }
    let unlock: libc::c_int = 0;
    let ws = libc::winsize { ws_row: rows, ws_col: cols, ws_xpixel: 0, ws_ypixel: 0 };
    // SAFETY: ioctls on a valid master fd with valid argument pointers.
    let slave = unsafe {
        if libc::ioctl(master.as_raw_fd(), libc::TIOCSPTLCK, &unlock) != 0
            || libc::ioctl(master.as_raw_fd(), libc::TIOCSWINSZ, &ws) != 0
        {
            return Err(Error::io("setting up the PTY", io::Error::last_os_error()));
        }
        let fd = libc::ioctl(
            master.as_raw_fd(),
            libc::TIOCGPTPEER,
            libc::O_RDWR | libc::O_NOCTTY | libc::O_CLOEXEC,
        );
        if fd < 0 {
            return Err(Error::io("opening the PTY slave", io::Error::last_os_error()));
        }
        OwnedFd::from_raw_fd(fd)
    };
    Ok((master, slave))
}

/// Resizes an exec's PTY.
struct PtyResize(OwnedFd);

impl PtyControl for PtyResize {
    fn resize(&self, rows: u16, cols: u16) -> Result<()> {
        let ws = libc::winsize { ws_row: rows, ws_col: cols, ws_xpixel: 0, ws_ypixel: 0 };
        // SAFETY: ioctl on a valid fd with a valid winsize.
        if unsafe { libc::ioctl(self.0.as_raw_fd(), libc::TIOCSWINSZ, &ws) } != 0 {
            return Err(Error::io("resizing the terminal", io::Error::last_os_error()));
        }
        Ok(())
    }
}

/// Async reads and writes on a PTY master. `EIO` on read means every slave fd is closed (the
/// process and its children exited): that is end of file.
struct PtyStream(AsyncFd<OwnedFd>);

impl PtyStream {
    fn new(fd: OwnedFd) -> Result<PtyStream> {
        // SAFETY: fcntl on a valid fd.
        unsafe {
            let flags = libc::fcntl(fd.as_raw_fd(), libc::F_GETFL);
            libc::fcntl(fd.as_raw_fd(), libc::F_SETFL, flags | libc::O_NONBLOCK);
        }
        // SAFETY: the OwnedFd stays open and unchanged for the lifetime of the AsyncFd.
        let fd = unsafe { AsyncFd::register(fd) }.map_err(|e| Error::io("registering the PTY", e.into()))?;
        Ok(PtyStream(fd))
    }
}

impl AsyncRead for PtyStream {
    fn poll_read(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        loop {
            let mut guard = ready!(self.0.poll_read_ready(cx))?;
            let unfilled = buf.initialize_unfilled();
            let res = guard.try_io(|fd| {
                // SAFETY: reading into a valid, initialised buffer.
                let n = unsafe { libc::read(fd.as_raw_fd(), unfilled.as_mut_ptr().cast(), unfilled.len()) };
                if n < 0 { Err(io::Error::last_os_error()) } else { Ok(n as usize) }
            });
            match res {
                Ok(Ok(n)) => {
                    buf.advance(n);
                    return Poll::Ready(Ok(()));
                }
                Ok(Err(e)) if e.raw_os_error() == Some(libc::EIO) => return Poll::Ready(Ok(())),
                Ok(Err(e)) => return Poll::Ready(Err(e)),
                Err(_would_block) => continue,
            }
        }
    }
}

impl AsyncWrite for PtyStream {
    fn poll_write(self: Pin<&mut Self>, cx: &mut Context<'_>, data: &[u8]) -> Poll<io::Result<usize>> {
        loop {
            let mut guard = ready!(self.0.poll_write_ready(cx))?;
            let res = guard.try_io(|fd| {
                // SAFETY: writing from a valid buffer.
                let n = unsafe { libc::write(fd.as_raw_fd(), data.as_ptr().cast(), data.len()) };
                if n < 0 { Err(io::Error::last_os_error()) } else { Ok(n as usize) }
            });
            match res {
                Ok(r) => return Poll::Ready(r),
                Err(_would_block) => continue,
            }
        }
    }

    fn poll_flush(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    fn poll_shutdown(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(argv: &[&str], cwd: &str) -> ExecSpec {
        ExecSpec {
            argv: argv.iter().map(|s| s.to_string()).collect(),
            env: vec![("PATH".into(), "/bin".into())],
            cwd: cwd.into(),
            uid: 0,
            gid: 0,
            io: ExecIo::Pipes,
        }
    }

    #[test]
    fn rejects_bad_exec_specs() {
        assert!(validate(&spec(&["true"], "/")).is_ok());
        assert_eq!(validate(&spec(&[], "/")).unwrap_err().code(), "invalid_exec");
        assert_eq!(validate(&spec(&[""], "/")).unwrap_err().code(), "invalid_exec");
        assert_eq!(validate(&spec(&["a\0b"], "/")).unwrap_err().code(), "invalid_exec");
        assert_eq!(validate(&spec(&["true"], "relative")).unwrap_err().code(), "invalid_cwd");
        let mut s = spec(&["true"], "/");
        s.env.push(("A=B".into(), "x".into()));
        assert_eq!(validate(&s).unwrap_err().code(), "invalid_env");
    }

    #[test]
    fn step_errors_are_clear() {
        let s = spec(&["true"], "/nope");
        let e = step_message(step::CWD, libc::ENOENT, &s);
        assert_eq!(e.code(), "invalid_cwd");
        assert!(e.message().contains("\"/nope\""), "{}", e.message());
        assert_eq!(step_message(step::SETNS, libc::ESRCH, &s).code(), "box_not_running");
    }
}
