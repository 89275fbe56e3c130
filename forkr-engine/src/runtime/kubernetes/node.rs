//! The node path of exec and console: document 001 says "the server prefers a container-runtime
//! path and falls back to Kubernetes exec".
//!
//! The server runs on the node that holds the boxes (the DaemonSet, with `hostPID`), so it can
//! reach a box the way the local driver does, without the API server, the kubelet and a WebSocket
//! in between: find the host PID of the runner container's init (tini, chrooted into `/volumes` by
//! the runner script), then fork, join that process's cgroups, namespaces and root, and exec
//! ([`crate::runtime::local::exec::exec_in`], the local driver's own code). Because
//! `/proc/<pid>/root` of the init *is* the chroot, the exec lands inside the box with no wrapper.
//!
//! Finding the init needs no container-runtime client (containerd, CRI-O and Docker each have
//! their own): the pod's `containerStatuses[].containerID` names the container, every container
//! runtime puts the container's processes in a cgroup whose directory carries that ID (cgroupfs
//! driver: `/kubepods/<qos>/pod<uid>/<id>`; systemd driver:
//! `/kubepods.slice/.../cri-containerd-<id>.scope`, `crio-<id>.scope`, `docker-<id>.scope`), and
//! `/proc/<pid>/cgroup` says which cgroup each process is in, for v1 and v2 alike. Of the
//! container's processes, the init is the one whose parent is outside the container (the runtime's
//! shim); an exec that the kubelet started is also parented by the shim, so PID 1 of the
//! container's own PID namespace wins, then the oldest.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::str::FromStr;

use crate::runtime::local::cgroup::MountEntry;
use crate::runtime::local::procfs;

/// How exec, console and `ports` reach a box (`--kube-exec`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ExecPath {
    /// The node path when it is available for the box, else the Kubernetes exec API (logged).
    #[default]
    Auto,
    /// Only the node path: an exec fails when it is not available (to find out why it is not).
    Node,
    /// Only the Kubernetes exec API (a server that does not run on the boxes' node).
    Api,
}

impl ExecPath {
    pub fn as_str(self) -> &'static str {
        match self {
            ExecPath::Auto => "auto",
            ExecPath::Node => "node",
            ExecPath::Api => "api",
        }
    }
}

impl std::fmt::Display for ExecPath {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for ExecPath {
    type Err = String;

    fn from_str(s: &str) -> std::result::Result<ExecPath, String> {
        match s.to_ascii_lowercase().as_str() {
            "auto" => Ok(ExecPath::Auto),
            "node" => Ok(ExecPath::Node),
            "api" => Ok(ExecPath::Api),
            _ => Err(format!("invalid exec path {s:?}: use auto, node or api")),
        }
    }
}

/// The container ID of a `containerStatuses[].containerID` (`containerd://<id>`, `cri-o://<id>`,
/// `docker://<id>`). `None` for anything that could not safely be searched for in cgroup paths
/// (too short to be unique, or with characters no runtime uses).
pub fn container_id(status_id: &str) -> Option<&str> {
    let (_, id) = status_id.split_once("://")?;
    (id.len() >= 12 && id.bytes().all(|b| b.is_ascii_alphanumeric())).then_some(id)
}

/// One line of `/proc/<pid>/cgroup`: `<hierarchy>:<controllers>:<path>`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CgroupLine {
    /// The v1 controllers (`cpu,cpuacct`, `name=systemd`); empty for the v2 hierarchy (`0::`).
    pub controllers: Vec<String>,
    /// Path relative to the hierarchy's root (as the reader's cgroup namespace sees it).
    pub path: String,
}

/// Parses the content of `/proc/<pid>/cgroup`; malformed lines are skipped.
pub fn parse_cgroup_file(text: &str) -> Vec<CgroupLine> {
    text.lines()
        .filter_map(|l| {
            let (_, rest) = l.split_once(':')?;
            let (ctrls, path) = rest.split_once(':')?;
            let controllers = ctrls.split(',').filter(|c| !c.is_empty()).map(str::to_owned).collect();
            Some(CgroupLine { controllers, path: path.to_owned() })
        })
        .collect()
}

/// Whether the cgroup `path` is container `id`'s own: one of its directories is the ID itself
/// (cgroupfs driver) or `<prefix>-<id>[.scope]` (systemd driver, CRI-O's `crio-<id>` under
/// cgroupfs). CRI-O's monitor, `crio-conmon-<id>.scope`, is not the container.
pub fn names_container(path: &str, id: &str) -> bool {
    path.split('/').any(|dir| {
        let dir = dir.strip_suffix(".scope").unwrap_or(dir);
        dir == id
            || (dir.strip_suffix(id).is_some_and(|p| p.ends_with('-') || p.ends_with(':'))
                && !dir.contains("conmon"))
    })
}

/// The init of a container found on this node.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ContainerInit {
    /// Host PID (in the server's PID namespace, the host's with `hostPID`).
    pub pid: u32,
    /// Field 22 of its `stat`, so that a reused PID is never entered.
    pub start_time: u64,
    /// Its cgroup lines, for the exec to join the same cgroups.
    pub cgroups: Vec<CgroupLine>,
}

/// A process of the container, as read from the proc tree.
struct Member {
    ppid: u32,
    start_time: u64,
    /// PID inside its own PID namespace, when it is in a nested one.
    nested: Option<u32>,
    cgroups: Vec<CgroupLine>,
}

/// Finds the init of container `id` in the proc tree at `proc_root` (`/proc` except in tests):
/// of the processes in the container's cgroup, the one whose parent is outside it; PID 1 of a
/// nested PID namespace first, then the oldest. `None` when no process of the container is visible.
pub fn find_init(proc_root: &Path, id: &str) -> Option<ContainerInit> {
    let entries = std::fs::read_dir(proc_root).ok()?;
    let mut members: HashMap<u32, Member> = HashMap::new();
    for entry in entries.flatten() {
        let Some(pid) = entry.file_name().to_str().and_then(|n| n.parse::<u32>().ok()) else { continue };
        let dir = entry.path();
        // Processes come and go while scanning: an unreadable one is simply not a member.
        let Ok(text) = std::fs::read_to_string(dir.join("cgroup")) else { continue };
        let cgroups = parse_cgroup_file(&text);
        if !cgroups.iter().any(|l| names_container(&l.path, id)) {
            continue;
        }
        let Some(stat) = std::fs::read_to_string(dir.join("stat")).ok().and_then(|s| procfs::parse_stat(&s))
        else {
            continue;
        };
        if stat.is_dead() {
            continue;
        }
        let nested = std::fs::read_to_string(dir.join("status")).ok().and_then(|s| procfs::parse_nspid(&s));
        members.insert(
            pid,
            Member {
                ppid: u32::try_from(stat.ppid).unwrap_or(0),
                start_time: stat.start_time,
                nested,
                cgroups,
            },
        );
    }
    let (pid, init) = members
        .iter()
        .filter(|(_, m)| !members.contains_key(&m.ppid))
        .min_by_key(|(pid, m)| (m.nested != Some(1), m.start_time, **pid))?;
    Some(ContainerInit { pid: *pid, start_time: init.start_time, cgroups: init.cgroups.clone() })
}

/// The directories (as mounted for the server, from its mountinfo) of the container's cgroups,
/// one per hierarchy whose line names container `id`; an exec joins all of them so that it is
/// accounted and limited like the container. `Err` says why one cannot be reached: then the exec
/// must not go this way, since it would escape the container's limits.
pub(crate) fn cgroup_dirs(
    mounts: &[MountEntry],
    lines: &[CgroupLine],
    id: &str,
) -> std::result::Result<Vec<PathBuf>, String> {
    let mut dirs = Vec::new();
    for line in lines.iter().filter(|l| names_container(&l.path, id)) {
        let shown = format!("{}:{}", line.controllers.join(","), line.path);
        let dir = mounts
            .iter()
            .filter(|m| hierarchy_matches(m, &line.controllers))
            .find_map(|m| below(&m.root, &line.path).map(|rel| m.mount_point.join(rel)))
            .filter(|d| d.is_dir())
            .ok_or_else(|| {
                format!(
                    "the container's cgroup {shown} is not reachable through the server's cgroup mounts \
                     (the server must see the host's cgroup tree: cgroup v1, or the host cgroup namespace)"
                )
            })?;
        dirs.push(dir);
    }
    if dirs.is_empty() {
        return Err(format!("the container {id}'s init is in no cgroup named after it"));
    }
    Ok(dirs)
}

/// Whether mount `m` is the hierarchy of a cgroup line with `controllers` (empty: cgroup2).
fn hierarchy_matches(m: &MountEntry, controllers: &[String]) -> bool {
    if controllers.is_empty() {
        return m.fstype == "cgroup2";
    }
    m.fstype == "cgroup" && controllers.iter().all(|c| m.super_options.split(',').any(|o| o == c))
}

/// `path` relative to a mount whose root is `root`, when it lies below it. Both are paths as the
/// reader's cgroup namespace shows them, so a plain component prefix is enough.
fn below<'a>(root: &str, path: &'a str) -> Option<&'a str> {
    let root = root.trim_end_matches('/');
    let rest = path.strip_prefix(root)?;
    if rest.is_empty() {
        return Some("");
    }
    rest.strip_prefix('/').filter(|r| !r.split('/').any(|c| c == ".."))
}

/// Reads the TCP sockets listening in the network namespace of host process `pid` (the pod's, so
/// the box's), like the local driver: sorted, without duplicates.
pub fn listening(pid: u32) -> crate::Result<Vec<crate::runtime::Listening>> {
    let mut text = String::new();
    for f in ["tcp", "tcp6"] {
        let path = format!("/proc/{pid}/net/{f}");
        match std::fs::read_to_string(&path) {
            Ok(t) => text.push_str(&t),
            // A kernel without IPv6 has no tcp6.
            Err(e) if f == "tcp6" && e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(crate::Error::io(format!("reading {path}"), e)),
        }
    }
    let mut found = crate::runtime::local::net::parse_proc_net_tcp(&text);
    found.sort();
    found.dedup();
    Ok(found)
}

#[cfg(test)]
pub(crate) mod tests;
