//! cgroups for boxes: v1 and v2 behind one trait (youki's libcgroups model).
//!
//! Every box gets the cgroup `forkr/<instance>/<project>/<box>` below the root of each hierarchy the
//! runtime manages. The cgroup is what makes a box a unit: limits apply to it, `stop` and
//! [`super::kill_instance`] find every process of a box through it (also processes that escaped
//! the box's PID namespace tree, such as exec intermediates), and the box's processes join it
//! before they can fork.
//!
//! Which version is used is decided from `/proc/self/mountinfo`: a v1 `memory` hierarchy means v1
//! (this includes "hybrid" machines, whose cgroup2 mount carries no controllers); otherwise the
//! cgroup2 mount is used.

use std::fmt::Debug;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use crate::runtime::Resources;
use crate::{Error, Result};

/// pids limit of a box when none is configured: generous for real work, small enough that a fork
/// bomb hits it long before the host's `pid_max`.
pub(crate) const DEFAULT_PIDS_MAX: u64 = 4096;

/// v1 controllers the runtime puts boxes into. `cpuset` is left out on purpose: a new v1 cpuset
/// cgroup is unusable until `cpuset.cpus`/`cpuset.mems` are filled in, and boxes do not pin CPUs.
const MANAGED_V1: &[&str] = &["memory", "cpu", "cpuacct", "pids", "devices"];

/// Every v1 controller name the kernel knows, to tell controllers from mount options.
const KNOWN_V1: &[&str] = &[
    "cpuset",
    "cpu",
    "cpuacct",
    "blkio",
    "memory",
    "devices",
    "freezer",
    "net_cls",
    "perf_event",
    "net_prio",
    "hugetlb",
    "pids",
    "rdma",
    "misc",
];

/// Device rules of a box (v1 `devices` controller): deny everything, then allow creating
/// character devices (mknod, not use) and using the nodes of the box's minimal `/dev`. No block
/// device is usable, so a box cannot open the host's disks even if it creates a node for them.
const DEVICE_RULES: &[&str] = &[
    "c *:* m",      // mknod of character devices
    "c 1:3 rwm",    // null
    "c 1:5 rwm",    // zero
    "c 1:7 rwm",    // full
    "c 1:8 rwm",    // random
    "c 1:9 rwm",    // urandom
    "c 5:0 rwm",    // tty
    "c 5:1 rwm",    // console
    "c 5:2 rwm",    // ptmx
    "c 136:* rwm",  // pts/*
    "c 10:200 rwm", // net/tun
];

/// What a box mounts at `/sys/fs/cgroup` (read-only, rooted at its own cgroup through its cgroup
/// namespace), so that `cat /sys/fs/cgroup/memory.max` (v2) or
/// `/sys/fs/cgroup/memory/memory.limit_in_bytes` (v1) shows the box's own limit.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) enum CgroupView {
    V1 { hierarchies: Vec<V1Mount> },
    V2,
}

/// One v1 hierarchy as the box mounts it: directory name below `/sys/fs/cgroup` and the
/// comma-separated controllers (the mount options).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct V1Mount {
    pub dir: String,
    pub options: String,
}

/// A cgroup version's operations on a box cgroup named by a path relative to the hierarchy roots.
pub(crate) trait CgroupDriver: Send + Sync + Debug {
    /// `"v1"` or `"v2"`.
    fn version(&self) -> &'static str;
    /// The directories of cgroup `rel` in every managed hierarchy.
    fn dirs(&self, rel: &Path) -> Vec<PathBuf>;
    /// Creates cgroup `rel` (and its parents) in every hierarchy and applies static settings.
    fn create(&self, rel: &Path) -> Result<()>;
    /// Writes the limits of `resources` (defaults for unset values).
    fn apply(&self, rel: &Path, resources: &Resources) -> Result<()>;
    /// What the box mounts at `/sys/fs/cgroup`.
    fn view(&self) -> CgroupView;
    /// The `cgroup.procs` files a process writes `0` into to join the box.
    fn procs_files(&self, rel: &Path) -> Vec<PathBuf> {
        self.dirs(rel).into_iter().map(|d| d.join("cgroup.procs")).collect()
    }
    /// v2's `cgroup.kill`, which kills every process of a cgroup atomically.
    fn kill_file(&self, _rel: &Path) -> Option<PathBuf> {
        None
    }
}

/// Finds the machine's cgroup hierarchies.
pub(crate) fn detect() -> Result<Arc<dyn CgroupDriver>> {
    let text = std::fs::read_to_string("/proc/self/mountinfo")
        .map_err(|e| Error::io("reading /proc/self/mountinfo to find the cgroup filesystems", e))?;
    detect_from(&parse_mountinfo(&text))
}

/// Every cgroup hierarchy of the machine: the v1 controllers and each cgroup2 mount. Used to sweep
/// an instance's cgroups wherever they are (a hybrid machine has both kinds).
pub(crate) fn all_drivers() -> Result<Vec<Arc<dyn CgroupDriver>>> {
    let text = std::fs::read_to_string("/proc/self/mountinfo")
        .map_err(|e| Error::io("reading /proc/self/mountinfo to find the cgroup filesystems", e))?;
    let mounts = parse_mountinfo(&text);
    let mut out: Vec<Arc<dyn CgroupDriver>> = Vec::new();
    let v1 = V1::from_mounts(&mounts);
    if !v1.hierarchies.is_empty() {
        out.push(Arc::new(v1));
    }
    for m in mounts.iter().filter(|m| m.fstype == "cgroup2" && m.root == "/") {
        out.push(Arc::new(V2 { root: m.mount_point.clone() }));
    }
    Ok(out)
}

fn detect_from(mounts: &[MountEntry]) -> Result<Arc<dyn CgroupDriver>> {
    let v1 = V1::from_mounts(mounts);
    if v1.hierarchies.iter().any(|h| h.controllers.iter().any(|c| c == "memory")) {
        return Ok(Arc::new(v1));
    }
    let v2 = mounts
        .iter()
        .filter(|m| m.fstype == "cgroup2" && m.root == "/")
        .max_by_key(|m| m.mount_point == Path::new("/sys/fs/cgroup"));
    if let Some(m) = v2 {
        return Ok(Arc::new(V2 { root: m.mount_point.clone() }));
    }
    Err(Error::unsupported(
        "no cgroup filesystem with a memory controller is mounted (looked for cgroup v1 'memory' and cgroup2 \
         in /proc/self/mountinfo); mount cgroup2 at /sys/fs/cgroup or the v1 controllers below it",
    ))
}

/// One line of `/proc/self/mountinfo`, the fields the runtime needs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct MountEntry {
    /// Root of the mount within its filesystem.
    pub root: String,
    pub mount_point: PathBuf,
    pub fstype: String,
    pub super_options: String,
}

/// Parses `/proc/self/mountinfo` (see proc(5)); malformed lines are skipped.
pub(crate) fn parse_mountinfo(text: &str) -> Vec<MountEntry> {
    text.lines()
        .filter_map(|line| {
            let (left, right) = line.split_once(" - ")?;
            let left: Vec<&str> = left.split(' ').collect();
            let mut right = right.split(' ');
            let fstype = right.next()?.to_string();
            let _source = right.next()?;
            let super_options = right.next().unwrap_or("").to_string();
            Some(MountEntry {
                root: unescape_octal(left.get(3)?),
                mount_point: PathBuf::from(unescape_octal(left.get(4)?)),
                fstype,
                super_options,
            })
        })
        .collect()
}

/// mountinfo escapes space, tab, newline and backslash as `\ooo`.
fn unescape_octal(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'\\' && i + 3 < b.len() && b[i + 1..i + 4].iter().all(|c| (b'0'..=b'7').contains(c)) {
            out.push((b[i + 1] - b'0') * 64 + (b[i + 2] - b'0') * 8 + (b[i + 3] - b'0'));
            i += 4;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[derive(Debug, Clone)]
struct Hierarchy {
    mount: PathBuf,
    controllers: Vec<String>,
}

/// cgroup v1: one directory per managed hierarchy.
#[derive(Debug, Clone)]
pub(crate) struct V1 {
    hierarchies: Vec<Hierarchy>,
}

impl V1 {
    fn from_mounts(mounts: &[MountEntry]) -> V1 {
        let mut hierarchies: Vec<Hierarchy> = Vec::new();
        for m in mounts.iter().filter(|m| m.fstype == "cgroup" && m.root == "/") {
            let controllers: Vec<String> =
                m.super_options.split(',').filter(|o| KNOWN_V1.contains(o)).map(str::to_string).collect();
            if !controllers.iter().any(|c| MANAGED_V1.contains(&c.as_str())) {
                continue;
            }
            if hierarchies.iter().any(|h| h.controllers == controllers) {
                continue; // the same hierarchy mounted twice
            }
            hierarchies.push(Hierarchy { mount: m.mount_point.clone(), controllers });
        }
        V1 { hierarchies }
    }

    fn dir_of(&self, controller: &str, rel: &Path) -> Option<PathBuf> {
        self.hierarchies
            .iter()
            .find(|h| h.controllers.iter().any(|c| c == controller))
            .map(|h| h.mount.join(rel))
    }
}

impl CgroupDriver for V1 {
    fn version(&self) -> &'static str {
        "v1"
    }

    fn dirs(&self, rel: &Path) -> Vec<PathBuf> {
        self.hierarchies.iter().map(|h| h.mount.join(rel)).collect()
    }

    fn create(&self, rel: &Path) -> Result<()> {
        for dir in self.dirs(rel) {
            std::fs::create_dir_all(&dir)
                .map_err(|e| Error::io(format!("creating cgroup {}", dir.display()), e))?;
        }
        if let Some(dir) = self.dir_of("devices", rel) {
            write_file(&dir.join("devices.deny"), "a")?;
            for rule in DEVICE_RULES {
                write_file(&dir.join("devices.allow"), rule)?;
            }
        }
        Ok(())
    }

    fn apply(&self, rel: &Path, r: &Resources) -> Result<()> {
        match self.dir_of("memory", rel) {
            Some(dir) => set_memory_v1(&dir, r.memory_bytes)?,
            None if r.memory_bytes.is_some() => return Err(no_controller("memory")),
            None => {}
        }
        if let Some(dir) = self.dir_of("cpu", rel) {
            write_file(&dir.join("cpu.shares"), &cpu_shares(r.cpus).to_string())?;
        }
        match self.dir_of("pids", rel) {
            Some(dir) => {
                write_file(&dir.join("pids.max"), &r.pids_max.unwrap_or(DEFAULT_PIDS_MAX).to_string())?
            }
            None if r.pids_max.is_some() => return Err(no_controller("pids")),
            None => {}
        }
        Ok(())
    }

    fn view(&self) -> CgroupView {
        CgroupView::V1 {
            hierarchies: self
                .hierarchies
                .iter()
                .filter_map(|h| {
                    Some(V1Mount {
                        dir: h.mount.file_name()?.to_str()?.to_string(),
                        options: h.controllers.join(","),
                    })
                })
                .collect(),
        }
    }
}

/// v1 memory: `memory.limit_in_bytes`, and `memory.memsw.limit_in_bytes` set to the same value
/// where swap accounting exists, so that the limit cannot be dodged by swapping. The kernel
/// requires memsw >= limit at every moment, hence the order of the writes.
fn set_memory_v1(dir: &Path, bytes: Option<u64>) -> Result<()> {
    let value = bytes.map(|b| b.to_string()).unwrap_or_else(|| "-1".to_string());
    let limit = dir.join("memory.limit_in_bytes");
    let memsw = dir.join("memory.memsw.limit_in_bytes");
    let has_memsw = memsw.exists();
    let raising = match std::fs::read_to_string(&limit) {
        Ok(cur) => bytes.is_none_or(|b| cur.trim().parse::<u64>().is_ok_and(|c| b > c)),
        Err(_) => true,
    };
    let write = |path: &Path| write_file(path, &value).map_err(|e| memory_error(e, bytes));
    if has_memsw && raising {
        write(&memsw)?;
        write(&limit)?;
    } else {
        write(&limit)?;
        if has_memsw {
            write(&memsw)?;
        }
    }
    Ok(())
}

fn memory_error(e: Error, bytes: Option<u64>) -> Error {
    match (is_busy(&e), bytes) {
        (true, Some(b)) => Error::conflict(
            "memory_in_use",
            format!(
                "cannot lower the memory limit to {b} bytes: the box uses more than that right now; \
                 free memory in the box or pick a higher limit"
            ),
        ),
        _ => e,
    }
}

/// v1 `cpu.shares` for a CPU request: 1024 per core, the kernel's minimum of 2.
pub(crate) fn cpu_shares(cpus: Option<f64>) -> u64 {
    match cpus {
        Some(c) if c.is_finite() && c > 0.0 => ((c * 1024.0).round() as u64).clamp(2, 262_144),
        _ => 1024,
    }
}

/// v2 `cpu.weight` for a CPU request, converted from shares as runc does.
pub(crate) fn cpu_weight(cpus: Option<f64>) -> u64 {
    let shares = cpu_shares(cpus);
    1 + ((shares - 2) * 9999) / 262_142
}

fn no_controller(name: &str) -> Error {
    Error::unsupported(format!(
        "this machine has no cgroup '{name}' controller, so a {name} limit cannot be enforced; enable the \
         controller or remove the limit"
    ))
}

/// cgroup v2: one unified hierarchy.
#[derive(Debug, Clone)]
pub(crate) struct V2 {
    root: PathBuf,
}

impl V2 {
    pub(crate) fn at(root: PathBuf) -> V2 {
        V2 { root }
    }
}

impl CgroupDriver for V2 {
    fn version(&self) -> &'static str {
        "v2"
    }

    fn dirs(&self, rel: &Path) -> Vec<PathBuf> {
        vec![self.root.join(rel)]
    }

    fn create(&self, rel: &Path) -> Result<()> {
        // Controllers must be enabled in the parent's subtree_control at every level; only those
        // the parent has can be enabled, the others are left out (limits on them fail clearly).
        let mut dir = self.root.clone();
        for comp in rel.components() {
            let available = std::fs::read_to_string(dir.join("cgroup.controllers")).unwrap_or_default();
            for ctrl in ["memory", "cpu", "pids"] {
                if available.split_whitespace().any(|c| c == ctrl)
                    && let Err(e) = write_file(&dir.join("cgroup.subtree_control"), &format!("+{ctrl}"))
                {
                    tracing::warn!("cannot enable the cgroup {ctrl} controller in {}: {e}", dir.display());
                }
            }
            dir.push(comp);
            match std::fs::create_dir(&dir) {
                Ok(()) => {}
                Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {}
                Err(e) => return Err(Error::io(format!("creating cgroup {}", dir.display()), e)),
            }
        }
        Ok(())
    }

    fn apply(&self, rel: &Path, r: &Resources) -> Result<()> {
        let dir = self.root.join(rel);
        let has = |file: &str| dir.join(file).exists();
        if has("memory.max") {
            let value = r.memory_bytes.map(|b| b.to_string()).unwrap_or_else(|| "max".into());
            write_file(&dir.join("memory.max"), &value).map_err(|e| memory_error(e, r.memory_bytes))?;
            if has("memory.swap.max") {
                let swap = if r.memory_bytes.is_some() { "0" } else { "max" };
                write_file(&dir.join("memory.swap.max"), swap)?;
            }
        } else if r.memory_bytes.is_some() {
            return Err(no_controller("memory"));
        }
        if has("cpu.weight") {
            write_file(&dir.join("cpu.weight"), &cpu_weight(r.cpus).to_string())?;
        }
        if has("pids.max") {
            write_file(&dir.join("pids.max"), &r.pids_max.unwrap_or(DEFAULT_PIDS_MAX).to_string())?;
        } else if r.pids_max.is_some() {
            return Err(no_controller("pids"));
        }
        Ok(())
    }

    fn view(&self) -> CgroupView {
        CgroupView::V2
    }

    fn kill_file(&self, rel: &Path) -> Option<PathBuf> {
        Some(self.root.join(rel).join("cgroup.kill")).filter(|p| p.exists())
    }
}

/// Writes `value` to an existing cgroup file (never creates one).
pub(crate) fn write_file(path: &Path, value: &str) -> Result<()> {
    use std::io::Write;
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .open(path)
        .map_err(|e| Error::io(format!("opening {}", path.display()), e))?;
    f.write_all(value.as_bytes())
        .map_err(|e| Error::io(format!("writing {value:?} to {}", path.display()), e))
}

/// Every process in the cgroups `dirs` and their descendants (host PIDs, deduplicated).
pub(crate) fn pids_in(dirs: &[PathBuf]) -> Vec<i32> {
    fn walk(dir: &Path, out: &mut Vec<i32>) {
        if let Ok(text) = std::fs::read_to_string(dir.join("cgroup.procs")) {
            out.extend(text.lines().filter_map(|l| l.trim().parse::<i32>().ok()));
        }
        if let Ok(entries) = std::fs::read_dir(dir) {
            for e in entries.flatten() {
                if e.file_type().is_ok_and(|t| t.is_dir()) {
                    walk(&e.path(), out);
                }
            }
        }
    }
    let mut out = Vec::new();
    for d in dirs {
        walk(d, &mut out);
    }
    out.sort_unstable();
    out.dedup();
    out
}

/// One round of killing: SIGKILL to every process in the cgroup (through `cgroup.kill` on v2).
/// Returns the processes that were still there.
pub(crate) fn kill_round(driver: &dyn CgroupDriver, rel: &Path) -> Vec<i32> {
    let pids = pids_in(&driver.dirs(rel));
    if pids.is_empty() {
        return pids;
    }
    if let Some(kill) = driver.kill_file(rel)
        && write_file(&kill, "1").is_ok()
    {
        return pids;
    }
    for pid in &pids {
        // SAFETY: kill with a positive PID and SIGKILL has no memory effects. The PID comes from
        // the box's own cgroup, so it names a box process (or nothing, if it just exited).
        unsafe { libc::kill(*pid, libc::SIGKILL) };
    }
    pids
}

/// How long killing a cgroup may take before it is reported as stuck (processes in
/// uninterruptible sleep on a hung filesystem can take a while).
pub(crate) const KILL_TIMEOUT: Duration = Duration::from_secs(10);

fn stuck(rel: &Path, pids: &[i32]) -> Error {
    Error::internal(format!(
        "processes {pids:?} of cgroup {} did not exit within {}s of SIGKILL (probably blocked in the kernel, \
         e.g. on a hung filesystem); retry later",
        rel.display(),
        KILL_TIMEOUT.as_secs()
    ))
}

/// Kills every process of cgroup `rel` and waits until none is left (blocking).
pub(crate) fn kill_all_blocking(driver: &dyn CgroupDriver, rel: &Path) -> Result<Vec<i32>> {
    let deadline = Instant::now() + KILL_TIMEOUT;
    let mut seen = Vec::new();
    loop {
        let pids = kill_round(driver, rel);
        if pids.is_empty() {
            return Ok(seen);
        }
        seen.extend_from_slice(&pids);
        if Instant::now() > deadline {
            return Err(stuck(rel, &pids));
        }
        std::thread::sleep(Duration::from_millis(2));
    }
}

/// Kills every process of cgroup `rel` and waits until none is left (async).
pub(crate) async fn kill_all(driver: &dyn CgroupDriver, rel: &Path) -> Result<Vec<i32>> {
    let deadline = Instant::now() + KILL_TIMEOUT;
    let mut seen = Vec::new();
    loop {
        let pids = kill_round(driver, rel);
        if pids.is_empty() {
            return Ok(seen);
        }
        seen.extend_from_slice(&pids);
        if Instant::now() > deadline {
            return Err(stuck(rel, &pids));
        }
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
}

/// Removes the cgroup directories `dirs` and everything below them, deepest first. Missing
/// directories are fine; `EBUSY` (a process that is still exiting) is retried for a while.
pub(crate) fn remove_dirs(dirs: &[PathBuf]) -> Result<()> {
    remove_dirs_within(dirs, Duration::from_secs(5))
}

fn remove_dirs_within(dirs: &[PathBuf], patience: Duration) -> Result<()> {
    fn remove(dir: &Path, deadline: Instant) -> io::Result<()> {
        let entries = match std::fs::read_dir(dir) {
            Ok(e) => e,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
            Err(e) => return Err(e),
        };
        for e in entries.flatten() {
            if e.file_type().is_ok_and(|t| t.is_dir()) {
                remove(&e.path(), deadline)?;
            }
        }
        loop {
            match std::fs::remove_dir(dir) {
                Ok(()) => return Ok(()),
                Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
                Err(e) if e.raw_os_error() == Some(libc::EBUSY) && Instant::now() < deadline => {
                    std::thread::sleep(Duration::from_millis(2))
                }
                Err(e) => return Err(e),
            }
        }
    }
    let deadline = Instant::now() + patience;
    for d in dirs {
        remove(d, deadline).map_err(|e| Error::io(format!("removing cgroup {}", d.display()), e))?;
    }
    Ok(())
}

/// Whether `e` wraps `EBUSY` (a memory limit below usage, a cgroup that still has members).
fn is_busy(e: &Error) -> bool {
    std::error::Error::source(e)
        .and_then(|s| s.downcast_ref::<io::Error>())
        .is_some_and(|io| io.raw_os_error() == Some(libc::EBUSY))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ErrorKind;

    const HYBRID: &str = "\
31 23 0:28 / /sys/fs/cgroup rw,relatime - tmpfs tmpfs rw,mode=755
32 31 0:29 / /sys/fs/cgroup/cpu,cpuacct rw,relatime shared:9 - cgroup cgroup rw,cpu,cpuacct
34 31 0:31 / /sys/fs/cgroup/cpuset rw,relatime - cgroup cgroup rw,cpuset
35 31 0:32 / /sys/fs/cgroup/memory rw,relatime - cgroup cgroup rw,memory
36 31 0:33 / /sys/fs/cgroup/devices rw,relatime - cgroup cgroup rw,devices
39 31 0:36 / /sys/fs/cgroup/pids rw,relatime - cgroup cgroup rw,pids
40 31 0:37 / /sys/fs/cgroup/systemd rw,relatime - cgroup cgroup rw,xattr,name=systemd
41 31 0:38 / /sys/fs/cgroup/unified rw,relatime - cgroup2 cgroup2 rw
99 31 0:32 / /mnt/memory\\040again rw - cgroup cgroup rw,memory
";

    #[test]
    fn hybrid_machine_uses_v1_with_managed_hierarchies() {
        let mounts = parse_mountinfo(HYBRID);
        assert_eq!(mounts.len(), 9);
        assert_eq!(mounts[8].mount_point, PathBuf::from("/mnt/memory again"));
        let driver = detect_from(&mounts).unwrap();
        assert_eq!(driver.version(), "v1");
        let dirs = driver.dirs(Path::new("forkr/i/p/b"));
        assert_eq!(
            dirs,
            ["cpu,cpuacct", "memory", "devices", "pids"]
                .iter()
                .map(|d| Path::new("/sys/fs/cgroup").join(d).join("forkr/i/p/b"))
                .collect::<Vec<_>>()
        );
        let CgroupView::V1 { hierarchies } = driver.view() else { panic!("expected a v1 view") };
        assert_eq!(hierarchies[0], V1Mount { dir: "cpu,cpuacct".into(), options: "cpu,cpuacct".into() });
    }

    #[test]
    fn unified_machine_uses_v2() {
        let text = "30 23 0:26 / /sys/fs/cgroup rw,nosuid - cgroup2 cgroup2 rw,nsdelegate\n";
        let driver = detect_from(&parse_mountinfo(text)).unwrap();
        assert_eq!(driver.version(), "v2");
        assert_eq!(
            driver.procs_files(Path::new("a/b")),
            vec![PathBuf::from("/sys/fs/cgroup/a/b/cgroup.procs")]
        );
        assert_eq!(driver.view(), CgroupView::V2);
    }

    #[test]
    fn no_cgroups_is_unsupported() {
        let text = "22 1 0:21 / /proc rw - proc proc rw\n";
        let err = detect_from(&parse_mountinfo(text)).unwrap_err();
        assert_eq!(err.kind(), ErrorKind::Unsupported);
    }

    #[test]
    fn cpu_conversions() {
        assert_eq!(cpu_shares(None), 1024);
        assert_eq!(cpu_shares(Some(0.5)), 512);
        assert_eq!(cpu_shares(Some(2.0)), 2048);
        assert_eq!(cpu_shares(Some(0.0001)), 2);
        assert_eq!(cpu_shares(Some(f64::NAN)), 1024);
        assert_eq!(cpu_weight(None), 39); // runc's mapping of the default 1024 shares
        assert_eq!(cpu_weight(Some(0.0001)), 1);
        assert_eq!(cpu_weight(Some(256.0)), 10000);
    }

    /// A unique cgroup path for one test, removed (with its processes) on drop.
    struct TestCgroup {
        driver: Arc<dyn CgroupDriver>,
        rel: PathBuf,
    }

    impl TestCgroup {
        fn new(driver: Arc<dyn CgroupDriver>, tag: &str) -> TestCgroup {
            let rel = PathBuf::from(format!("forkr-unit/{tag}-{}", std::process::id()));
            TestCgroup { driver, rel }
        }
    }

    impl Drop for TestCgroup {
        fn drop(&mut self) {
            let _ = kill_all_blocking(&*self.driver, &self.rel);
            let _ = remove_dirs(&self.driver.dirs(&self.rel));
            for d in self.driver.dirs(Path::new("forkr-unit")) {
                let _ = std::fs::remove_dir(d);
            }
        }
    }

    /// Spawns `sleep` inside the cgroup (joined between fork and exec).
    fn spawn_in(driver: &dyn CgroupDriver, rel: &Path) -> std::process::Child {
        use std::os::unix::process::CommandExt;
        let files: Vec<std::ffi::CString> = driver
            .procs_files(rel)
            .iter()
            .map(|p| std::ffi::CString::new(p.as_os_str().as_encoded_bytes()).unwrap())
            .collect();
        let mut cmd = std::process::Command::new("sleep");
        cmd.arg("30");
        // SAFETY: only open/write/close (async-signal-safe) after fork.
        unsafe {
            cmd.pre_exec(move || {
                for f in &files {
                    let fd = libc::open(f.as_ptr(), libc::O_WRONLY | libc::O_CLOEXEC);
                    if fd < 0 || libc::write(fd, c"0".as_ptr().cast(), 1) != 1 {
                        return Err(io::Error::last_os_error());
                    }
                    libc::close(fd);
                }
                Ok(())
            })
        };
        cmd.spawn().unwrap()
    }

    fn run_lifecycle(driver: Arc<dyn CgroupDriver>, tag: &str, resources: Resources) {
        let cg = TestCgroup::new(driver.clone(), tag);
        driver.create(&cg.rel).unwrap();
        driver.create(&cg.rel).unwrap(); // idempotent
        driver.apply(&cg.rel, &resources).unwrap();
        let mut children: Vec<_> = (0..3).map(|_| spawn_in(&*driver, &cg.rel)).collect();
        let mut expected: Vec<i32> = children.iter().map(|c| c.id() as i32).collect();
        expected.sort_unstable();
        assert_eq!(pids_in(&driver.dirs(&cg.rel)), expected);
        // A cgroup with members cannot be removed.
        let err = remove_dirs_within(&driver.dirs(&cg.rel), Duration::ZERO).unwrap_err();
        assert!(is_busy(&err), "{err}");
        let killed = kill_all_blocking(&*driver, &cg.rel).unwrap();
        assert!(expected.iter().all(|p| killed.contains(p)));
        for c in &mut children {
            let status = c.wait().unwrap();
            assert_eq!(std::os::unix::process::ExitStatusExt::signal(&status), Some(libc::SIGKILL));
        }
        assert!(pids_in(&driver.dirs(&cg.rel)).is_empty());
        remove_dirs(&driver.dirs(&cg.rel)).unwrap();
        assert!(driver.dirs(&cg.rel).iter().all(|d| !d.exists()));
    }

    #[test]
    fn v1_lifecycle_on_this_machine() {
        let driver = detect().unwrap();
        if driver.version() != "v1" {
            eprintln!("skipped: this machine uses cgroup v2");
            return;
        }
        let r = Resources { memory_bytes: Some(64 << 20), cpus: Some(0.5), pids_max: Some(77) };
        // Limits land in the files.
        let cg = TestCgroup::new(driver.clone(), "limits");
        driver.create(&cg.rel).unwrap();
        driver.apply(&cg.rel, &r).unwrap();
        let read = |ctrl: &str, file: &str| {
            let dir = driver.dirs(&cg.rel).into_iter().find(|d| d.to_string_lossy().contains(ctrl)).unwrap();
            std::fs::read_to_string(dir.join(file)).unwrap().trim().to_string()
        };
        assert_eq!(read("memory", "memory.limit_in_bytes"), (64u64 << 20).to_string());
        assert_eq!(read("cpu", "cpu.shares"), "512");
        assert_eq!(read("pids", "pids.max"), "77");
        assert!(!read("devices", "devices.list").contains("a *:* rwm"));
        assert!(read("devices", "devices.list").contains("c 1:3 rwm"));
        // Raising, lowering and clearing the memory limit all work (memsw ordering).
        driver.apply(&cg.rel, &Resources { memory_bytes: Some(256 << 20), ..r }).unwrap();
        assert_eq!(read("memory", "memory.limit_in_bytes"), (256u64 << 20).to_string());
        driver.apply(&cg.rel, &Resources { memory_bytes: Some(32 << 20), ..r }).unwrap();
        assert_eq!(read("memory", "memory.limit_in_bytes"), (32u64 << 20).to_string());
        driver.apply(&cg.rel, &Resources::default()).unwrap();
        assert!(read("memory", "memory.limit_in_bytes").parse::<u64>().unwrap() > 1 << 50);
        assert_eq!(read("pids", "pids.max"), DEFAULT_PIDS_MAX.to_string());
        drop(cg);
        run_lifecycle(driver, "v1", r);
    }

    #[test]
    fn v2_lifecycle_on_the_unified_mount() {
        // On hybrid machines the cgroup2 mount has no controllers but processes, cgroup.kill and
        // removal work: exercise the v2 driver there.
        let text = std::fs::read_to_string("/proc/self/mountinfo").unwrap();
        let Some(m) = parse_mountinfo(&text).into_iter().find(|m| m.fstype == "cgroup2" && m.root == "/")
        else {
            eprintln!("skipped: no cgroup2 mount");
            return;
        };
        let driver: Arc<dyn CgroupDriver> = Arc::new(V2::at(m.mount_point));
        let has_memory = std::fs::read_to_string(driver.dirs(Path::new(""))[0].join("cgroup.controllers"))
            .unwrap_or_default()
            .contains("memory");
        let r = if has_memory {
            Resources { memory_bytes: Some(64 << 20), ..Default::default() }
        } else {
            Resources::default()
        };
        run_lifecycle(driver.clone(), "v2", r);
        if !has_memory {
            let cg = TestCgroup::new(driver.clone(), "v2-nomem");
            driver.create(&cg.rel).unwrap();
            let err = driver.apply(&cg.rel, &Resources { memory_bytes: Some(1 << 30), ..Default::default() });
            assert_eq!(err.unwrap_err().kind(), ErrorKind::Unsupported);
        }
    }
}
