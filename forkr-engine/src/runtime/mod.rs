//! Running boxes: the [`Runtime`] seam and its drivers.
//!
//! [`local::Local`] runs each box as a process tree in its own Linux namespaces on this machine. A
//! Kubernetes driver implements the same trait. The engine decides *what* runs (argv, environment,
//! mounts, user); a runtime decides *how* it runs. A runtime never touches the metadata store.

use std::future::Future;
use std::net::{IpAddr, Ipv4Addr};
use std::path::PathBuf;
use std::pin::Pin;
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite};

use crate::Result;

#[cfg(feature = "kubernetes")]
pub mod kubernetes;
pub mod local;

/// Identifies a box to a runtime.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct BoxKey {
    pub project: String,
    pub name: String,
}

/// A bind mount into the box: host `source` at absolute in-box `target`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BindMount {
    pub source: PathBuf,
    pub target: String,
    pub read_only: bool,
    /// `true` when `source` is a regular file (e.g. `/etc/hosts`), `false` for a directory.
    pub file: bool,
}

/// Resource settings of a box.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct Resources {
    /// Hard memory limit in bytes (`None`: unlimited).
    pub memory_bytes: Option<u64>,
    /// CPU request in cores; mapped to a relative weight, never a hard quota (document 004).
    pub cpus: Option<f64>,
    /// Maximum number of processes/threads (fork-bomb containment).
    pub pids_max: Option<u64>,
}

/// Everything needed to start a box's PID 1.
#[derive(Debug, Clone)]
pub struct StartSpec {
    pub key: BoxKey,
    /// `<box>.<project>`.
    pub hostname: String,
    /// Host path of the box's root subvolume.
    pub root: PathBuf,
    /// Bind mounts applied after `/proc`, `/sys`, `/dev`, `/tmp`, `/run` (system volumes, data
    /// volumes, `/etc/hosts`, `/etc/resolv.conf`).
    pub mounts: Vec<BindMount>,
    /// The complete environment of PID 1.
    pub env: Vec<(String, String)>,
    pub resources: Resources,
    /// Host file receiving PID 1's stdout and stderr.
    pub log_path: PathBuf,
    /// The box's network interface; `None`: the box has only a loopback interface.
    pub network: Option<NetAttach>,
    /// How the box is reached from outside (its Service/Ingress on Kubernetes; the local driver
    /// leaves this to the server's built-in proxy).
    pub exposure: Exposure,
    /// How long PID 1 gets between SIGTERM and SIGKILL when the box stops. Drivers that stop boxes
    /// themselves (Kubernetes: `terminationGracePeriodSeconds`) need it at start; the local driver
    /// takes it from [`Runtime::stop`].
    pub grace: Duration,
}

/// How a box is reached from outside: the port its Service targets and the public hosts routed to
/// it (the box's own `{box}.{domain}` host first, then published hosts).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Exposure {
    pub port: u16,
    pub hosts: Vec<String>,
}

/// A box's place on the host bridge, chosen by the engine's address allocator.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NetAttach {
    pub address: Ipv4Addr,
    pub prefix_len: u8,
    /// The bridge's address.
    pub gateway: Ipv4Addr,
    /// Route everything else via `gateway` (only when the host masquerades box traffic: without
    /// NAT, unreachable destinations fail at once instead of leaking unroutable packets).
    pub default_route: bool,
}

/// A TCP socket listening inside a box.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct Listening {
    pub address: IpAddr,
    pub port: u16,
}

/// A started box: enough to find its PID 1 again after a server restart.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Running {
    /// Host PID of the box's PID 1.
    pub pid: u32,
    /// Start time of that PID (field 22 of `/proc/<pid>/stat`), to detect PID reuse.
    pub start_time: u64,
}

/// Where an exec'd process's standard streams go.
#[derive(Debug, Clone)]
pub enum ExecIo {
    /// stdin, stdout and stderr are pipes returned in [`Process`].
    Pipes,
    /// A PTY of the given size: [`Process::stdout`] reads and [`Process::stdin`] writes the master.
    Tty { rows: u16, cols: u16 },
    /// Detached: stdin is `/dev/null`, stdout and stderr go to this host file; the process is
    /// reparented to the box's PID 1 and [`Process::wait`] resolves as soon as it has started.
    Detached { log: PathBuf },
}

/// A process to run inside a running box.
#[derive(Debug, Clone)]
pub struct ExecSpec {
    /// Full argv; `argv[0]` is resolved inside the box.
    pub argv: Vec<String>,
    /// The complete environment.
    pub env: Vec<(String, String)>,
    /// Working directory inside the box.
    pub cwd: String,
    pub uid: u32,
    pub gid: u32,
    pub io: ExecIo,
}

/// Changes the size of an exec's PTY.
pub trait PtyControl: Send + Sync {
    fn resize(&self, rows: u16, cols: u16) -> Result<()>;
}

pub type BoxedRead = Pin<Box<dyn AsyncRead + Send>>;
pub type BoxedWrite = Pin<Box<dyn AsyncWrite + Send>>;

/// A started exec.
pub struct Process {
    /// PID of the process as seen inside the box.
    pub pid: u32,
    pub stdin: Option<BoxedWrite>,
    pub stdout: Option<BoxedRead>,
    pub stderr: Option<BoxedRead>,
    pub pty: Option<Box<dyn PtyControl>>,
    /// Resolves to the exit code (128 + signal for a signalled process).
    pub wait: Pin<Box<dyn Future<Output = Result<i32>> + Send>>,
    /// Kills the process (SIGKILL); used when a client goes away.
    pub kill: Box<dyn Fn() + Send + Sync>,
}

/// A box driver. Methods may block briefly; the engine calls them from async context.
#[async_trait::async_trait]
pub trait Runtime: Send + Sync + 'static {
    /// Starts PID 1 and returns once it runs inside the box's namespaces and root.
    async fn start(&self, spec: &StartSpec) -> Result<Running>;
    /// Whether `run` is still the live PID 1 of the box (false after exit or PID reuse).
    fn is_alive(&self, key: &BoxKey, run: &Running) -> bool;
    /// SIGTERM to PID 1, SIGKILL to every process of the box after `grace`; returns when all are gone.
    async fn stop(&self, key: &BoxKey, run: &Running, grace: Duration) -> Result<()>;
    /// Starts a process inside the running box.
    async fn exec(&self, key: &BoxKey, run: &Running, spec: ExecSpec) -> Result<Process>;
    /// Applies new resource settings to a running box.
    ///
    /// Async (like `cleanup` and `listening`) because a remote driver (Kubernetes) makes API calls
    /// here; the local driver only writes cgroup files.
    async fn set_resources(&self, key: &BoxKey, resources: &Resources) -> Result<()>;
    /// Removes what the runtime keeps per box once it is stopped for good (cgroups; Kubernetes
    /// objects).
    async fn cleanup(&self, key: &BoxKey) -> Result<()>;
    /// The TCP sockets listening inside the running box, sorted, without duplicates.
    async fn listening(&self, key: &BoxKey, run: &Running) -> Result<Vec<Listening>>;
    /// Applies a new port or host list (`update PORT`, publish, unpublish) to what routes traffic
    /// to the box. Drivers whose routing the server does itself (the local driver: the built-in
    /// proxy reads the store) keep this default, which does nothing.
    async fn expose(&self, _key: &BoxKey, _exposure: &Exposure) -> Result<()> {
        Ok(())
    }
}
