//! The local runtime: boxes as namespaced process trees on this machine.
//!
//! A box is a PID 1 in its own mount, UTS, IPC, network, PID and cgroup namespaces, pivoted into
//! the box's root subvolume, in the cgroup `forkr/<instance>/<project>/<box>` of every managed
//! hierarchy. PID 1 is `tini -s -- /bin/bash -lc "sleep infinity"` when the root has tini and bash
//! (document 001), otherwise a built-in minimal init.
//!
//! - [`Local::start`](crate::runtime::Runtime::start) runs the `forkr-shim` helper (`shim.rs`), which
//!   sets up the namespaces and mounts (`rootfs.rs`) in a single-threaded process and reports PID 1.
//! - `exec` (`exec.rs`) forks directly from the server and enters the box with `setns` on a pidfd
//!   of PID 1: no helper binary on that path, so an exec costs about a millisecond.
//! - With a [`NetAttach`](crate::runtime::NetAttach) in the start spec, the shim wires the new
//!   network namespace to the instance's host bridge with a veth pair before PID 1 starts
//!   (`net.rs`); the server creates the bridge and NAT rules at start and `kill_instance` removes
//!   them.
//! - `stop` sends SIGTERM to PID 1, waits for the grace period, then SIGKILLs whatever is left in
//!   the box cgroup (`cgroup.rs`), which is the authoritative list of the box's processes.
//!
//! The server process becomes a child subreaper (see [`Local::new`]) so that it adopts, and reaps,
//! the PID 1s it starts; after a server restart they are adopted by the host's init instead and
//! keep running. Boxes are found again from their [`Running`] record (PID + start time).

pub(crate) mod cgroup;
pub(crate) mod exec;
pub mod net;
pub(crate) mod procfs;
mod rootfs;
mod shim;
mod sys;

use std::os::fd::AsFd;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use tokio::io::AsyncWriteExt;
use tokio::io::unix::AsyncFd;

pub use shim::shim_main;

use self::cgroup::CgroupDriver;
use self::shim::{BUILTIN_INIT_NAME, ShimMount, ShimReport, ShimRequest};
use super::{BoxKey, ExecSpec, Listening, Process, Resources, Running, Runtime, StartSpec};
use crate::{Error, Result};

/// Name of the helper binary, installed next to `forkr-server`.
pub const SHIM_NAME: &str = "forkr-shim";

/// Smallest memory limit a box may have: below this even a shell cannot start, and the failure
/// would look like a mysterious crash instead of a clear refusal.
pub const MIN_MEMORY_BYTES: u64 = 4 << 20;

/// How long starting PID 1 may take before it is given up.
const START_TIMEOUT: Duration = Duration::from_secs(30);

/// Configuration of the local runtime.
#[derive(Debug, Clone)]
pub struct LocalConfig {
    /// Path of the `forkr-shim` binary (see [`Local::shim_next_to_current_exe`]).
    pub shim: PathBuf,
    /// Namespaces this server's cgroups (`forkr/<instance>/...`), so that several servers or test
    /// runs share a machine without touching each other's boxes; e.g. [`instance_for_data_dir`].
    pub instance: String,
}

/// The local namespace runtime.
#[derive(Debug)]
pub struct Local {
    shim: PathBuf,
    instance: String,
    cgroups: Arc<dyn CgroupDriver>,
}

impl Local {
    /// Checks the configuration, detects the machine's cgroups and makes this process a child
    /// subreaper, so that the PID 1s it starts (orphaned when the shim exits) are reaped by it
    /// instead of becoming zombies under a host init that may not reap.
    pub fn new(config: LocalConfig) -> Result<Local> {
        Self::with_cgroups(config, cgroup::detect()?)
    }

    /// Test seam: forces the cgroup v2 driver on the cgroup2 filesystem mounted at `mount`, so
    /// that the v2 code paths can run end to end on a machine whose controllers are v1.
    #[doc(hidden)]
    pub fn new_with_cgroup2_at(config: LocalConfig, mount: PathBuf) -> Result<Local> {
        Self::with_cgroups(config, Arc::new(cgroup::V2::at(mount)))
    }

    fn with_cgroups(config: LocalConfig, cgroups: Arc<dyn CgroupDriver>) -> Result<Local> {
        check_component("instance", &config.instance)?;
        let meta = std::fs::metadata(&config.shim).map_err(|e| {
            Error::internal(format!(
                "the box helper {} is missing ({e}); install {SHIM_NAME} next to forkr-server",
                config.shim.display()
            ))
        })?;
        if !meta.is_file() || std::os::unix::fs::PermissionsExt::mode(&meta.permissions()) & 0o111 == 0 {
            return Err(Error::internal(format!(
                "the box helper {} is not an executable file; reinstall {SHIM_NAME}",
                config.shim.display()
            )));
        }
        // SAFETY: plain prctl with integer arguments.
        if unsafe { libc::prctl(libc::PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) } != 0 {
            return Err(Error::io("becoming a child subreaper", std::io::Error::last_os_error()));
        }
        Ok(Local { shim: config.shim, instance: config.instance, cgroups })
    }

    /// `forkr-shim` next to the running executable (how the server finds its helper).
    pub fn shim_next_to_current_exe() -> Result<PathBuf> {
        let exe = std::env::current_exe().map_err(|e| Error::io("finding the server executable", e))?;
        let dir =
            exe.parent().ok_or_else(|| Error::internal("the server executable has no parent directory"))?;
        Ok(dir.join(SHIM_NAME))
    }

    pub fn instance(&self) -> &str {
        &self.instance
    }

    /// `"v1"` or `"v2"`.
    pub fn cgroup_version(&self) -> &'static str {
        self.cgroups.version()
    }

    /// The box's cgroup directories, one per managed hierarchy (for diagnostics and tests).
    pub fn cgroup_dirs(&self, key: &BoxKey) -> Result<Vec<PathBuf>> {
        Ok(self.cgroups.dirs(&self.cgroup_rel(key)?))
    }

    fn cgroup_rel(&self, key: &BoxKey) -> Result<PathBuf> {
        check_component("project", &key.project)?;
        check_component("box", &key.name)?;
        Ok(Path::new("forkr").join(&self.instance).join(&key.project).join(&key.name))
    }

    async fn spawn_shim(&self, req: &ShimRequest, spec: &StartSpec) -> Result<Running> {
        let json = serde_json::to_vec(req)
            .map_err(|e| Error::internal(format!("encoding the start request: {e}")))?;
        let mut cmd = tokio::process::Command::new(&self.shim);
        cmd.arg0(BUILTIN_INIT_NAME)
            .arg("start")
            .env_clear()
            .envs(spec.env.iter().map(|(k, v)| (k, v)))
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .kill_on_drop(true);
        let mut child = cmd.spawn().map_err(|e| Error::io(format!("running {}", self.shim.display()), e))?;
        if let Some(mut stdin) = child.stdin.take() {
            stdin
                .write_all(&json)
                .await
                .map_err(|e| Error::io("sending the start request to the shim", e))?;
        }
        let out = tokio::time::timeout(START_TIMEOUT, child.wait_with_output())
            .await
            .map_err(|_| {
                Error::internal(format!("starting PID 1 took longer than {}s", START_TIMEOUT.as_secs()))
            })?
            .map_err(|e| Error::io("waiting for the shim", e))?;
        let stdout = String::from_utf8_lossy(&out.stdout);
        let report: ShimReport =
            stdout.lines().last().and_then(|l| serde_json::from_str(l).ok()).ok_or_else(|| {
                Error::internal(format!(
                    "the box helper failed without a report (status {}): {}",
                    out.status,
                    String::from_utf8_lossy(&out.stderr).trim()
                ))
            })?;
        let box_name = format!("box {:?} of project {:?}", spec.key.name, spec.key.project);
        match report {
            ShimReport::Started { pid, init } => {
                if init == shim::InitKind::Tini {
                    tini_ready(pid).await;
                }
                let st = procfs::stat(pid).filter(|s| !s.is_dead()).ok_or_else(|| {
                    Error::internal(format!(
                        "PID 1 of {box_name} exited right after it started; see its log {}",
                        spec.log_path.display()
                    ))
                })?;
                tracing::debug!(pid, ?init, "started {box_name}");
                Ok(Running { pid, start_time: st.start_time })
            }
            ShimReport::Failed { message } => Err(Error::new(
                crate::ErrorKind::Internal,
                "box_start_failed",
                format!("starting {box_name} failed: {message}"),
            )),
        }
    }
}

/// A stable short name for the server owning `data_dir` (FNV-1a of the path, which, unlike std's
/// hasher, is guaranteed not to change between Rust releases: a changed name would orphan the
/// cgroups of running boxes).
pub fn instance_for_data_dir(data_dir: &Path) -> String {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for b in data_dir.as_os_str().as_encoded_bytes() {
        hash ^= u64::from(*b);
        hash = hash.wrapping_mul(0x0000_0100_0000_01b3);
    }
    format!("{:012x}", hash & 0xffff_ffff_ffff)
}

/// cgroup path components must be plain names: no `/`, `.` or `..`.
fn check_component(what: &str, name: &str) -> Result<()> {
    let ok = !name.is_empty()
        && name.len() <= 128
        && name != "."
        && name != ".."
        && name.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'));
    if ok {
        Ok(())
    } else {
        Err(Error::bad_request(
            "invalid_name",
            format!(
                "invalid {what} name {name:?} for the local runtime: use letters, digits, '-', '_' and '.'"
            ),
        ))
    }
}

/// The kernel's limit on a hostname (`HOST_NAME_MAX`).
const HOST_NAME_MAX: usize = 64;

/// `<box>.<project>` can be up to 127 characters (two DNS labels) but the kernel takes 64: cut it
/// there (and drop a trailing `.`/`-`), like Kubernetes does for pod hostnames.
fn kernel_hostname(h: &str) -> &str {
    if h.len() <= HOST_NAME_MAX {
        return h;
    }
    h[..HOST_NAME_MAX].trim_end_matches(['.', '-'])
}

fn validate_start(spec: &StartSpec) -> Result<()> {
    let h = &spec.hostname;
    if h.is_empty() || !h.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.')) {
        return Err(Error::bad_request(
            "invalid_hostname",
            format!("hostname {h:?} is invalid: use letters, digits, '-' and '.'"),
        ));
    }
    if !spec.root.is_absolute() || !spec.root.is_dir() {
        return Err(Error::internal(format!(
            "the box root {} is not an existing directory",
            spec.root.display()
        )));
    }
    for (k, v) in &spec.env {
        if k.is_empty() || k.contains('=') || k.contains('\0') || v.contains('\0') {
            return Err(Error::bad_request("invalid_env", format!("invalid environment variable {k:?}")));
        }
    }
    for m in &spec.mounts {
        if !m.target.starts_with('/') || m.target.split('/').any(|c| c == "..") {
            return Err(Error::bad_request(
                "invalid_mount",
                format!("mount target {:?} must be a normalised absolute path", m.target),
            ));
        }
    }
    if spec.resources.memory_bytes.is_some_and(|m| m < MIN_MEMORY_BYTES) {
        return Err(Error::bad_request(
            "invalid_memory",
            format!("a memory limit must be at least {} MiB", MIN_MEMORY_BYTES >> 20),
        ));
    }
    Ok(())
}

/// Waits until tini, just exec'd as PID 1, has started its child (at most [`START_TIMEOUT`], and
/// no longer than it lives).
///
/// The kernel drops a signal sent to a namespace's init that neither blocks nor catches it. Until
/// tini has run its first instructions, which block its signals, a stop's SIGTERM would be lost
/// and the stop would wait out the whole grace; on a busy machine that window lasts milliseconds.
/// tini sets its signals up before it forks its child, so a child means a SIGTERM is heard.
async fn tini_ready(pid: u32) {
    let deadline = tokio::time::Instant::now() + START_TIMEOUT;
    let mut poll = Duration::from_micros(200);
    while !procfs::has_children(pid)
        && procfs::stat(pid).is_some_and(|s| !s.is_dead())
        && tokio::time::Instant::now() < deadline
    {
        tokio::time::sleep(poll).await;
        poll = (poll * 2).min(Duration::from_millis(20));
    }
}

/// Reaps `pid` if it is a dead child of this process (a PID 1 we adopted as subreaper).
fn reap_if_ours(pid: u32) {
    let me = std::process::id() as i32;
    let deadline = std::time::Instant::now() + Duration::from_secs(1);
    while let Some(st) = procfs::stat(pid) {
        if st.ppid != me {
            return;
        }
        if st.is_dead() {
            let _ = nix::sys::wait::waitpid(
                nix::unistd::Pid::from_raw(pid as i32),
                Some(nix::sys::wait::WaitPidFlag::WNOHANG),
            );
            return;
        }
        if std::time::Instant::now() > deadline {
            return;
        }
        std::thread::sleep(Duration::from_millis(1));
    }
}

/// Waits until the process behind `pidfd` has exited, at most `timeout`. True when it exited.
async fn wait_exit(pidfd: std::os::fd::OwnedFd, timeout: Duration) -> bool {
    // SAFETY: the OwnedFd stays open and unchanged for the lifetime of the AsyncFd.
    let Ok(fd) = (unsafe { AsyncFd::register_with_interest(pidfd, tokio::io::Interest::READABLE) }) else {
        return false;
    };
    tokio::time::timeout(timeout, fd.readable()).await.is_ok_and(|r| r.is_ok())
}

#[async_trait::async_trait]
impl Runtime for Local {
    async fn start(&self, spec: &StartSpec) -> Result<Running> {
        let rel = self.cgroup_rel(&spec.key)?;
        validate_start(spec)?;
        let dirs = self.cgroups.dirs(&rel);
        if !cgroup::pids_in(&dirs).is_empty() {
            return Err(Error::conflict(
                "box_running",
                format!(
                    "box {:?} of project {:?} still has running processes; stop it before starting it again",
                    spec.key.name, spec.key.project
                ),
            ));
        }
        self.cgroups.create(&rel)?;
        let req = ShimRequest {
            hostname: kernel_hostname(&spec.hostname).to_string(),
            root: spec.root.clone(),
            mounts: spec
                .mounts
                .iter()
                .map(|m| ShimMount {
                    source: m.source.clone(),
                    target: m.target.clone(),
                    read_only: m.read_only,
                    file: m.file,
                })
                .collect(),
            env: spec.env.clone(),
            log_path: spec.log_path.clone(),
            cgroup_procs: self.cgroups.procs_files(&rel),
            cgroup_view: self.cgroups.view(),
            net: spec.network.map(|n| net::BoxNet {
                bridge: net::bridge_name(&self.instance),
                host_if: net::host_veth_name(&self.instance, n.address),
                address: n.address,
                prefix_len: n.prefix_len,
                gateway: n.gateway,
                default_route: n.default_route,
            }),
        };
        let started = match self.cgroups.apply(&rel, &spec.resources) {
            Ok(()) => self.spawn_shim(&req, spec).await,
            Err(e) => Err(e),
        };
        if started.is_err() {
            // Nothing of a failed start may linger: kill whatever got into the cgroup.
            let _ = cgroup::kill_all(&*self.cgroups, &rel).await;
            let _ = cgroup::remove_dirs(&dirs);
        }
        started
    }

    fn is_alive(&self, _key: &BoxKey, run: &Running) -> bool {
        match procfs::stat(run.pid) {
            Some(st) if st.start_time == run.start_time => {
                if st.is_dead() {
                    reap_if_ours(run.pid);
                }
                !st.is_dead()
            }
            _ => false,
        }
    }

    async fn stop(&self, key: &BoxKey, run: &Running, grace: Duration) -> Result<()> {
        let rel = self.cgroup_rel(key)?;
        if let Ok(pidfd) = exec::open_pid1(run) {
            let _ = sys::pidfd_signal(pidfd.as_fd(), libc::SIGTERM);
            let exited = match pidfd.try_clone() {
                Ok(dup) => wait_exit(dup, grace).await,
                Err(_) => false,
            };
            if !exited {
                // PID 1 first: its death makes the kernel kill the whole PID namespace at once,
                // so no box process is orphaned out of it by killing an exec intermediate first.
                let _ = sys::pidfd_signal(pidfd.as_fd(), libc::SIGKILL);
                wait_exit(pidfd, cgroup::KILL_TIMEOUT).await;
            }
        }
        cgroup::kill_all(&*self.cgroups, &rel).await?;
        reap_if_ours(run.pid);
        Ok(())
    }

    async fn exec(&self, key: &BoxKey, run: &Running, spec: ExecSpec) -> Result<Process> {
        let rel = self.cgroup_rel(key)?;
        exec::exec(&*self.cgroups, &rel, run, spec).await
    }

    async fn set_resources(&self, key: &BoxKey, resources: &Resources) -> Result<()> {
        if resources.memory_bytes.is_some_and(|m| m < MIN_MEMORY_BYTES) {
            return Err(Error::bad_request(
                "invalid_memory",
                format!("a memory limit must be at least {} MiB", MIN_MEMORY_BYTES >> 20),
            ));
        }
        let rel = self.cgroup_rel(key)?;
        self.cgroups.apply(&rel, resources)
    }

    async fn cleanup(&self, key: &BoxKey) -> Result<()> {
        let rel = self.cgroup_rel(key)?;
        cgroup::kill_all_blocking(&*self.cgroups, &rel)?;
        cgroup::remove_dirs(&self.cgroups.dirs(&rel))?;
        // The project's directory goes with its last box; other boxes keep it busy (ignored).
        if let Some(parent) = rel.parent() {
            for dir in self.cgroups.dirs(parent) {
                let _ = std::fs::remove_dir(dir);
            }
        }
        Ok(())
    }

    async fn listening(&self, key: &BoxKey, run: &Running) -> Result<Vec<Listening>> {
        // /proc/<pid>/net shows the network namespace of that process: the box's.
        let found = net::listening_tcp(run.pid);
        // Checked after reading, so that a PID reused meanwhile is never reported as the box.
        if !self.is_alive(key, run) {
            return Err(Error::conflict(
                "box_not_running",
                format!("box {:?} of project {:?} is not running; resume it first", key.name, key.project),
            ));
        }
        found.map_err(|e| Error::io("reading the box's TCP sockets", e))
    }
}

/// Kills every process in every box cgroup of `instance` and removes those cgroups, in every
/// cgroup hierarchy of the machine. Used by `forkr-server teardown` and by test harnesses to
/// guarantee that nothing leaks. Idempotent.
pub fn kill_instance(instance: &str) -> Result<()> {
    check_component("instance", instance)?;
    let rel = Path::new("forkr").join(instance);
    let drivers = cgroup::all_drivers()?;
    // Box PID 1s first (each takes its PID namespace with it), then everything else.
    let inits: Vec<u32> = drivers
        .iter()
        .flat_map(|d| cgroup::pids_in(&d.dirs(&rel)))
        .map(|p| p as u32)
        .filter(|p| procfs::nested_pid(*p) == Some(1))
        .collect();
    for pid in &inits {
        // SAFETY: kill with a PID read from the instance's own cgroups.
        unsafe { libc::kill(*pid as i32, libc::SIGKILL) };
    }
    for d in &drivers {
        cgroup::kill_all_blocking(&**d, &rel)?;
    }
    for pid in inits {
        reap_if_ours(pid);
    }
    for d in &drivers {
        cgroup::remove_dirs(&d.dirs(&rel))?;
        for dir in d.dirs(Path::new("forkr")) {
            let _ = std::fs::remove_dir(dir); // still used by other instances: fine
        }
    }
    // With every box gone, their veths are gone or going; the bridge and NAT rules follow.
    net::remove_host(instance)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn instance_names_are_stable_and_short() {
        let a = instance_for_data_dir(Path::new("/var/lib/forkr"));
        assert_eq!(a, instance_for_data_dir(Path::new("/var/lib/forkr")));
        assert_ne!(a, instance_for_data_dir(Path::new("/var/lib/forkr2")));
        assert_eq!(a.len(), 12);
        check_component("instance", &a).unwrap();
        // Pinned: changing the function would orphan running boxes' cgroups.
        assert_eq!(instance_for_data_dir(Path::new("")), "9ce484222325");
        assert_eq!(a, "10dccaf0f9be");
    }

    #[test]
    fn names_become_safe_cgroup_components() {
        for bad in ["", ".", "..", "a/b", "a b", "x\0"] {
            assert_eq!(check_component("box", bad).unwrap_err().code(), "invalid_name", "{bad:?}");
        }
        check_component("box", "web-1").unwrap();
    }

    fn start_spec(root: &Path) -> StartSpec {
        StartSpec {
            key: BoxKey { project: "p".into(), name: "b".into() },
            hostname: "b.p".into(),
            root: root.to_path_buf(),
            mounts: vec![],
            env: vec![("PATH".into(), "/bin".into())],
            resources: Resources::default(),
            log_path: root.join("log"),
            network: None,
            exposure: Default::default(),
            grace: Duration::from_secs(10),
        }
    }

    #[test]
    fn long_hostnames_are_cut_to_the_kernel_limit() {
        assert_eq!(kernel_hostname("web-1.default"), "web-1.default");
        let long = format!("{}.{}", "a".repeat(63), "b".repeat(63));
        assert_eq!(kernel_hostname(&long), format!("{}", "a".repeat(63)));
        let long = format!("{}.{}", "a".repeat(40), "b-c".repeat(20));
        let cut = kernel_hostname(&long);
        assert!(cut.len() <= 64 && !cut.ends_with('-') && !cut.ends_with('.'), "{cut}");
    }

    #[test]
    fn start_specs_are_validated() {
        let tmp = tempfile::tempdir().unwrap();
        validate_start(&start_spec(tmp.path())).unwrap();
        let mut s = start_spec(tmp.path());
        s.hostname = "a b".into();
        assert_eq!(validate_start(&s).unwrap_err().code(), "invalid_hostname");
        let mut s = start_spec(tmp.path());
        s.env.push(("A=B".into(), "c".into()));
        assert_eq!(validate_start(&s).unwrap_err().code(), "invalid_env");
        let mut s = start_spec(tmp.path());
        s.mounts.push(crate::runtime::BindMount {
            source: "/tmp".into(),
            target: "relative".into(),
            read_only: false,
            file: false,
        });
        assert_eq!(validate_start(&s).unwrap_err().code(), "invalid_mount");
        let mut s = start_spec(tmp.path());
        s.resources.memory_bytes = Some(1 << 20);
        assert_eq!(validate_start(&s).unwrap_err().code(), "invalid_memory");
        let s = start_spec(&tmp.path().join("missing"));
        assert!(validate_start(&s).is_err());
    }
}
