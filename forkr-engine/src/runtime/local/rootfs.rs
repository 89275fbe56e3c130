//! Builds a box's filesystem view and switches into it. Runs in the shim's child (the future PID 1)
//! inside its fresh, private mount namespace, so nothing here is visible on the host.
//!
//! Path safety: the box root is controlled by the box (and shared volumes by other boxes), so every
//! mount point is resolved with `openat2(RESOLVE_IN_ROOT)` relative to an fd of the root, missing
//! ones are created relative to their resolved parent fd, and the mount is attached to the
//! resolved fd (through `/proc/self/fd/N` or `move_mount`), never to a path that would be
//! resolved a second time. A symlink planted by the box can therefore never send a mount outside
//! the root (the class of runc's CVE-2021-30465). System mount points (`/proc`, `/sys`, `/dev`,
//! `/tmp`, `/run`) may not be symlinks at all.
//!
//! Finally `pivot_root` (not `chroot`, which root can escape) makes the root the namespace's `/`,
//! and the old root is detached: the host filesystem is not in the box's mount namespace at all.

use std::ffi::CString;
use std::os::fd::{AsFd, OwnedFd};

use nix::errno::Errno;
use nix::fcntl::{OFlag, OpenHow, ResolveFlag, openat, openat2};
use nix::mount::{MntFlags, MsFlags, mount, umount2};
use nix::sys::stat::{FileStat, Mode, SFlag, fstat, makedev, mkdirat, mknodat};
use nix::unistd::{fchdir, pivot_root, symlinkat};

use super::cgroup::CgroupView;
use super::shim::ShimRequest;
use super::sys;

/// Errors are plain messages: the shim sends them to the server, which wraps them.
type R<T> = std::result::Result<T, String>;

/// Character devices of the box's `/dev`: name, major, minor.
const DEVICES: &[(&str, u64, u64)] =
    &[("null", 1, 3), ("zero", 1, 5), ("full", 1, 7), ("random", 1, 8), ("urandom", 1, 9), ("tty", 5, 0)];

/// `/proc` entries made read-only (writes there would reach the host kernel; `/proc/sysrq-trigger`
/// alone could reboot the machine). Docker's list.
const READ_ONLY_PATHS: &[&str] = &["proc/bus", "proc/fs", "proc/irq", "proc/sys", "proc/sysrq-trigger"];

/// Entries hidden behind `/dev/null` (files) or an empty read-only tmpfs (directories): host
/// kernel memory, keyrings, timers and firmware interfaces. Docker's list.
const MASKED_PATHS: &[&str] = &[
    "proc/acpi",
    "proc/asound",
    "proc/kcore",
    "proc/keys",
    "proc/latency_stats",
    "proc/timer_list",
    "proc/timer_stats",
    "proc/sched_debug",
    "proc/scsi",
    "sys/firmware",
    "sys/devices/virtual/powercap",
];

/// What a mount point must be.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Kind {
    Dir,
    File,
}

fn what(e: Errno) -> String {
    std::io::Error::from(e).to_string()
}

/// Symlinks followed while resolving one mount point before giving up (the kernel's own limit).
const MAX_LINKS: usize = 40;

/// Opens the mount point `target` (an absolute in-box path) as an `O_PATH` fd, resolving it as if
/// `root` were `/`, and creates missing components (directories, and a final empty file for
/// [`Kind::File`]). With `follow == false` no component may be a symlink. A symlink to a missing
/// target (such as `/etc/resolv.conf -> ../run/systemd/resolve/stub-resolv.conf` before `/run` is
/// populated) is followed inside the root and its target created, as runc does.
pub(crate) fn open_in_root(root: &OwnedFd, target: &str, kind: Kind, follow: bool) -> R<OwnedFd> {
    let comps: Vec<String> =
        target.split('/').filter(|c| !c.is_empty() && *c != ".").map(str::to_string).collect();
    if comps.iter().any(|c| c == "..") {
        return Err(format!("mount target {target:?} contains '..'; use a normalised absolute path"));
    }
    let mut path = comps;
    for _ in 0..MAX_LINKS {
        if path.is_empty() {
            return Err(format!("mount target {target:?} is the root of the box; pick a path below /"));
        }
        match walk(root, &path, kind, follow)? {
            Walk::Done(fd) => return Ok(fd),
            Walk::DanglingLink { parent, index, link } => {
                let mut next =
                    if link.starts_with('/') { Vec::new() } else { in_root_components(root, &parent)? };
                for c in link.split('/').chain(path[index + 1..].iter().map(String::as_str)) {
                    match c {
                        "" | "." => {}
                        ".." => {
                            next.pop(); // clamped at the root, like RESOLVE_IN_ROOT
                        }
                        c => next.push(c.to_string()),
                    }
                }
                path = next;
            }
        }
    }
    Err(format!("mount target {target:?} in the box goes through more than {MAX_LINKS} symbolic links"))
}

enum Walk {
    Done(OwnedFd),
    /// `path[index]`, in directory `parent`, is a symlink whose target does not exist (yet).
    DanglingLink {
        parent: OwnedFd,
        index: usize,
        link: String,
    },
}

fn walk(root: &OwnedFd, path: &[String], kind: Kind, follow: bool) -> R<Walk> {
    let mut resolve = ResolveFlag::RESOLVE_IN_ROOT | ResolveFlag::RESOLVE_NO_MAGICLINKS;
    if !follow {
        resolve |= ResolveFlag::RESOLVE_NO_SYMLINKS;
    }
    let how = OpenHow::new().flags(OFlag::O_PATH | OFlag::O_CLOEXEC).resolve(resolve);
    let mut current: Option<OwnedFd> = None;
    for i in 0..path.len() {
        let last = i + 1 == path.len();
        let want_dir = !last || kind == Kind::Dir;
        let shown = format!("/{}", path[..=i].join("/"));
        let name = path[i].as_str();
        let fd = match openat2(root, path[..=i].join("/").as_str(), how) {
            Ok(fd) => fd,
            Err(Errno::ENOENT) => {
                let parent = match current.take() {
                    Some(fd) => fd,
                    None => root.try_clone().map_err(|e| format!("duplicating the root fd: {e}"))?,
                };
                let st = nix::sys::stat::fstatat(&parent, name, nix::fcntl::AtFlags::AT_SYMLINK_NOFOLLOW);
                if follow && st.is_ok_and(|st| st.st_mode & libc::S_IFMT == libc::S_IFLNK) {
                    let link = nix::fcntl::readlinkat(&parent, name)
                        .map_err(|e| format!("reading the link {shown} in the box: {}", what(e)))?;
                    let link = link
                        .into_string()
                        .map_err(|_| format!("the link {shown} in the box is not UTF-8"))?;
                    return Ok(Walk::DanglingLink { parent, index: i, link });
                }
                create(&parent, name, want_dir, &shown)?;
                // O_NOFOLLOW: if something swapped a symlink in meanwhile, we get the link itself
                // and the type check below refuses it.
                openat(&parent, name, OFlag::O_PATH | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC, Mode::empty())
                    .map_err(|e| format!("opening mount point {shown} in the box: {}", what(e)))?
            }
            Err(Errno::ELOOP) if !follow => {
                return Err(format!(
                    "{shown} in the box root is a symbolic link; {shown} must be a directory (remove the link \
                     from the box's root filesystem)"
                ));
            }
            Err(e) => return Err(format!("resolving mount point {shown} in the box: {}", what(e))),
        };
        let st = fstat(&fd).map_err(|e| format!("inspecting {shown} in the box: {}", what(e)))?;
        check_kind(&st, want_dir, &shown)?;
        current = Some(fd);
    }
    current.map(Walk::Done).ok_or_else(|| "empty mount target".to_string())
}

/// The in-box path of directory `dir` (below `root`), as components, from the kernel's view of both
/// fds: physical, with every symlink already resolved.
fn in_root_components(root: &OwnedFd, dir: &OwnedFd) -> R<Vec<String>> {
    let path_of = |fd: &OwnedFd| {
        std::fs::read_link(sys::fd_path(fd.as_fd()))
            .map_err(|e| format!("finding the path of a directory: {e}"))
    };
    let (root_path, dir_path) = (path_of(root)?, path_of(dir)?);
    let rel = dir_path
        .strip_prefix(&root_path)
        .map_err(|_| format!("{} is not inside the box root {}", dir_path.display(), root_path.display()))?;
    rel.iter()
        .map(|c| c.to_str().map(str::to_string).ok_or_else(|| "a path in the box is not UTF-8".into()))
        .collect()
}

fn create(parent: &OwnedFd, name: &str, dir: bool, shown: &str) -> R<()> {
    let res = if dir {
        mkdirat(parent, name, Mode::from_bits_truncate(0o755))
    } else {
        openat(
            parent,
            name,
            OFlag::O_CREAT | OFlag::O_EXCL | OFlag::O_NOFOLLOW | OFlag::O_WRONLY | OFlag::O_CLOEXEC,
            Mode::from_bits_truncate(0o644),
        )
        .map(drop)
    };
    match res {
        Ok(()) => Ok(()),
        Err(Errno::EEXIST) => Err(format!(
            "cannot create mount point {shown} in the box: something is in the way (probably a symbolic link \
             that points to a missing target); remove it from the box's root filesystem"
        )),
        Err(e) => Err(format!("creating mount point {shown} in the box: {}", what(e))),
    }
}

fn check_kind(st: &FileStat, want_dir: bool, shown: &str) -> R<()> {
    let fmt = st.st_mode & libc::S_IFMT;
    if want_dir && fmt != libc::S_IFDIR {
        return Err(format!("{shown} in the box is not a directory, but a directory is mounted there"));
    }
    if !want_dir && (fmt == libc::S_IFDIR || fmt == libc::S_IFLNK) {
        return Err(format!("{shown} in the box is a directory or a link, but a file is mounted there"));
    }
    Ok(())
}

/// `mount(2)` of a fresh filesystem onto the object `target` refers to.
fn mount_fs(fstype: &str, target: &OwnedFd, flags: MsFlags, data: Option<&str>, shown: &str) -> R<()> {
    mount(Some(fstype), sys::fd_path(target.as_fd()).as_str(), Some(fstype), flags, data)
        .map_err(|e| format!("mounting {fstype} at {shown} in the box: {}", what(e)))
}

/// Opens an existing path inside the root without creating anything; `None` when it is missing.
fn open_existing(root: &OwnedFd, path: &str) -> R<Option<OwnedFd>> {
    let how = OpenHow::new().flags(OFlag::O_PATH | OFlag::O_CLOEXEC).resolve(
        ResolveFlag::RESOLVE_IN_ROOT | ResolveFlag::RESOLVE_NO_SYMLINKS | ResolveFlag::RESOLVE_NO_MAGICLINKS,
    );
    match openat2(root, path, how) {
        Ok(fd) => Ok(Some(fd)),
        Err(Errno::ENOENT) => Ok(None),
        Err(e) => Err(format!("resolving /{path} in the box: {}", what(e))),
    }
}

const NOSUID_NODEV_NOEXEC: MsFlags = MsFlags::MS_NOSUID.union(MsFlags::MS_NODEV).union(MsFlags::MS_NOEXEC);

/// Sets up every mount of the box below `req.root` and pivots into it. On return the process's
/// `/` is the box root and the host filesystem is gone from its mount namespace.
pub(crate) fn prepare(req: &ShimRequest) -> R<()> {
    let root_path = req.root.as_path();
    // A bind mount of the root onto itself: pivot_root needs the new root to be a mount point.
    mount(Some(root_path), root_path, None::<&str>, MsFlags::MS_BIND | MsFlags::MS_REC, None::<&str>)
        .map_err(|e| format!("bind-mounting the box root {}: {}", root_path.display(), what(e)))?;
    let root =
        nix::fcntl::open(root_path, OFlag::O_PATH | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC, Mode::empty())
            .map_err(|e| format!("opening the box root {}: {}", root_path.display(), what(e)))?;

    let proc_ = open_in_root(&root, "proc", Kind::Dir, false)?;
    mount_fs("proc", &proc_, NOSUID_NODEV_NOEXEC, None, "/proc")?;
    let sys_ = open_in_root(&root, "sys", Kind::Dir, false)?;
    mount_fs("sysfs", &sys_, NOSUID_NODEV_NOEXEC | MsFlags::MS_RDONLY, None, "/sys")?;
    mount_cgroups(&root, &req.cgroup_view)?;
    setup_dev(&root)?;
    let tmp = open_in_root(&root, "tmp", Kind::Dir, false)?;
    mount_fs("tmpfs", &tmp, MsFlags::MS_NOSUID | MsFlags::MS_NODEV, Some("mode=1777"), "/tmp")?;
    let run = open_in_root(&root, "run", Kind::Dir, false)?;
    mount_fs("tmpfs", &run, MsFlags::MS_NOSUID | MsFlags::MS_NODEV, Some("mode=755"), "/run")?;
    mask_kernel_files(&root)?;

    for m in &req.mounts {
        let src = CString::new(m.source.as_os_str().as_encoded_bytes())
            .map_err(|_| format!("mount source {} contains a NUL byte", m.source.display()))?;
        let tree = sys::open_tree_clone(&src).map_err(|e| {
            format!("opening {} to mount it at {} in the box: {e}", m.source.display(), m.target)
        })?;
        let st = fstat(&tree).map_err(|e| format!("inspecting {}: {}", m.source.display(), what(e)))?;
        let is_dir = st.st_mode & libc::S_IFMT == libc::S_IFDIR;
        if is_dir == m.file {
            return Err(format!(
                "{} is {} but is mounted at {} as {}",
                m.source.display(),
                if is_dir { "a directory" } else { "a file" },
                m.target,
                if m.file { "a file" } else { "a directory" }
            ));
        }
        if m.read_only {
            sys::mount_set_read_only(tree.as_fd())
                .map_err(|e| format!("making the mount of {} read-only: {e}", m.source.display()))?;
        }
        let target = open_in_root(&root, &m.target, if m.file { Kind::File } else { Kind::Dir }, true)?;
        sys::move_mount_to(tree.as_fd(), target.as_fd())
            .map_err(|e| format!("mounting {} at {} in the box: {e}", m.source.display(), m.target))?;
    }

    // pivot_root(".", ".") stacks the old root on top of the new one; detaching it leaves only the
    // box (runc's trick, which needs no directory inside the box for the old root).
    fchdir(&root).map_err(|e| format!("entering the box root: {}", what(e)))?;
    pivot_root(".", ".").map_err(|e| format!("pivot_root into the box root: {}", what(e)))?;
    umount2(".", MntFlags::MNT_DETACH).map_err(|e| format!("detaching the host filesystem: {}", what(e)))?;
    nix::unistd::chdir("/").map_err(|e| format!("changing to / in the box: {}", what(e)))?;
    Ok(())
}

/// A minimal `/dev` on tmpfs: the usual character devices, a private devpts instance for
/// terminals, `/dev/shm`, and the `fd`/`stdin`/`stdout`/`stderr` links.
fn setup_dev(root: &OwnedFd) -> R<()> {
    let dev = open_in_root(root, "dev", Kind::Dir, false)?;
    mount_fs(
        "tmpfs",
        &dev,
        MsFlags::MS_NOSUID | MsFlags::MS_STRICTATIME,
        Some("mode=755,size=65536k"),
        "/dev",
    )?;
    // Re-open: the fd above refers to the directory *under* the new tmpfs. Nothing of the box runs
    // yet and no shared volume is mounted yet, so this second resolution cannot be raced.
    let dev = open_in_root(root, "dev", Kind::Dir, false)?;
    for (name, major, minor) in DEVICES {
        mknodat(&dev, *name, SFlag::S_IFCHR, Mode::from_bits_truncate(0o666), makedev(*major, *minor))
            .map_err(|e| format!("creating /dev/{name} in the box: {}", what(e)))?;
    }
    let links = [
        ("ptmx", "pts/ptmx"),
        ("fd", "/proc/self/fd"),
        ("stdin", "/proc/self/fd/0"),
        ("stdout", "/proc/self/fd/1"),
        ("stderr", "/proc/self/fd/2"),
    ];
    for (name, target) in links {
        symlinkat(target, &dev, name).map_err(|e| format!("creating /dev/{name} in the box: {}", what(e)))?;
    }
    for (name, mode) in [("pts", 0o755), ("shm", 0o1777)] {
        mkdirat(&dev, name, Mode::from_bits_truncate(mode))
            .map_err(|e| format!("creating /dev/{name} in the box: {}", what(e)))?;
    }
    let open_sub = |name: &str| {
        openat(
            &dev,
            name,
            OFlag::O_PATH | OFlag::O_DIRECTORY | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC,
            Mode::empty(),
        )
        .map_err(|e| format!("opening /dev/{name} in the box: {}", what(e)))
    };
    let pts = open_sub("pts")?;
    mount_fs(
        "devpts",
        &pts,
        MsFlags::MS_NOSUID | MsFlags::MS_NOEXEC,
        Some("newinstance,ptmxmode=0666,mode=0620,gid=5"),
        "/dev/pts",
    )?;
    let shm = open_sub("shm")?;
    mount_fs("tmpfs", &shm, NOSUID_NODEV_NOEXEC, Some("mode=1777,size=65536k"), "/dev/shm")
}

/// The box's own cgroup, read-only, at `/sys/fs/cgroup` (rooted at the box cgroup by the cgroup
/// namespace), so that the box can read its limits as document 004 describes.
fn mount_cgroups(root: &OwnedFd, view: &CgroupView) -> R<()> {
    let Some(at) = open_existing(root, "sys/fs/cgroup")? else {
        return Ok(()); // a kernel without the directory: nothing to show
    };
    let ro = NOSUID_NODEV_NOEXEC | MsFlags::MS_RDONLY;
    match view {
        CgroupView::V2 => mount_fs("cgroup2", &at, ro, None, "/sys/fs/cgroup"),
        CgroupView::V1 { hierarchies } => {
            mount_fs("tmpfs", &at, NOSUID_NODEV_NOEXEC, Some("mode=755,size=64k"), "/sys/fs/cgroup")?;
            let Some(tmpfs) = open_existing(root, "sys/fs/cgroup")? else {
                return Err("/sys/fs/cgroup vanished while mounting it".into());
            };
            for h in hierarchies {
                let shown = format!("/sys/fs/cgroup/{}", h.dir);
                mkdirat(&tmpfs, h.dir.as_str(), Mode::from_bits_truncate(0o755))
                    .map_err(|e| format!("creating {shown} in the box: {}", what(e)))?;
                let dir = openat(
                    &tmpfs,
                    h.dir.as_str(),
                    OFlag::O_PATH | OFlag::O_DIRECTORY | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC,
                    Mode::empty(),
                )
                .map_err(|e| format!("opening {shown} in the box: {}", what(e)))?;
                mount(
                    Some("cgroup"),
                    sys::fd_path(dir.as_fd()).as_str(),
                    Some("cgroup"),
                    ro,
                    Some(h.options.as_str()),
                )
                .map_err(|e| {
                    format!("mounting the cgroup {} hierarchy at {shown}: {}", h.options, what(e))
                })?;
                // `cpu` and `cpuacct` links to a co-mounted `cpu,cpuacct`, as on the host.
                for ctrl in h.options.split(',').filter(|c| *c != h.dir) {
                    if h.dir.contains(',') {
                        symlinkat(h.dir.as_str(), &tmpfs, ctrl)
                            .map_err(|e| format!("creating /sys/fs/cgroup/{ctrl} in the box: {}", what(e)))?;
                    }
                }
            }
            mount(
                None::<&str>,
                sys::fd_path(tmpfs.as_fd()).as_str(),
                None::<&str>,
                MsFlags::MS_REMOUNT | ro,
                Some("mode=755,size=64k"),
            )
            .map_err(|e| format!("making /sys/fs/cgroup read-only in the box: {}", what(e)))
        }
    }
}

/// Applies [`READ_ONLY_PATHS`] and [`MASKED_PATHS`]. Entries this kernel lacks are skipped.
fn mask_kernel_files(root: &OwnedFd) -> R<()> {
    for path in READ_ONLY_PATHS {
        let Some(fd) = open_existing(root, path)? else { continue };
        let tree =
            sys::open_tree_clone_fd(fd.as_fd()).map_err(|e| format!("binding /{path} in the box: {e}"))?;
        sys::mount_set_read_only(tree.as_fd())
            .map_err(|e| format!("making /{path} read-only in the box: {e}"))?;
        sys::move_mount_to(tree.as_fd(), fd.as_fd()).map_err(|e| format!("making /{path} read-only: {e}"))?;
    }
    let null =
        sys::open_tree_clone(c"/dev/null").map_err(|e| format!("opening the host's /dev/null: {e}"))?;
    for path in MASKED_PATHS {
        let Some(fd) = open_existing(root, path)? else { continue };
        let st = fstat(&fd).map_err(|e| format!("inspecting /{path} in the box: {}", what(e)))?;
        if st.st_mode & libc::S_IFMT == libc::S_IFDIR {
            mount_fs("tmpfs", &fd, NOSUID_NODEV_NOEXEC | MsFlags::MS_RDONLY, Some("size=0,mode=555"), path)?;
        } else {
            // Each attachment needs its own clone of the /dev/null tree.
            let tree =
                sys::open_tree_clone_fd(null.as_fd()).map_err(|e| format!("cloning /dev/null: {e}"))?;
            sys::move_mount_to(tree.as_fd(), fd.as_fd())
                .map_err(|e| format!("masking /{path} in the box: {e}"))?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::symlink;

    fn root_fd(dir: &std::path::Path) -> OwnedFd {
        nix::fcntl::open(dir, OFlag::O_PATH | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC, Mode::empty()).unwrap()
    }

    #[test]
    fn creates_missing_mount_points_inside_the_root() {
        let tmp = tempfile::tempdir().unwrap();
        let root = tmp.path().join("root");
        std::fs::create_dir(&root).unwrap();
        let fd = root_fd(&root);
        open_in_root(&fd, "/box/proj/bin", Kind::Dir, true).unwrap();
        assert!(root.join("box/proj/bin").is_dir());
        open_in_root(&fd, "/etc/hosts", Kind::File, true).unwrap();
        assert!(root.join("etc/hosts").is_file());
        // Existing ones are reused.
        open_in_root(&fd, "/etc/hosts", Kind::File, true).unwrap();
        // Type mismatches are refused.
        let err = open_in_root(&fd, "/etc/hosts", Kind::Dir, true).unwrap_err();
        assert!(err.contains("not a directory"), "{err}");
        let err = open_in_root(&fd, "/etc", Kind::File, true).unwrap_err();
        assert!(err.contains("is a directory"), "{err}");
        assert!(open_in_root(&fd, "/", Kind::Dir, true).is_err());
        assert!(open_in_root(&fd, "/a/../b", Kind::Dir, true).is_err());
    }

    #[test]
    fn symlinks_never_lead_out_of_the_root() {
        let tmp = tempfile::tempdir().unwrap();
        let root = tmp.path().join("root");
        let outside = tmp.path().join("outside");
        std::fs::create_dir_all(&root).unwrap();
        std::fs::create_dir_all(&outside).unwrap();
        // Absolute and relative escapes, both resolved inside the root.
        symlink(&outside, root.join("abs")).unwrap();
        symlink("../../../../../../outside", root.join("rel")).unwrap();
        let fd = root_fd(&root);
        open_in_root(&fd, "/abs/made", Kind::Dir, true).unwrap();
        open_in_root(&fd, "/rel/file", Kind::File, true).unwrap();
        assert_eq!(
            std::fs::read_dir(&outside).unwrap().count(),
            0,
            "nothing may be created outside the root"
        );
        // The absolute link resolved as <root><outside>/made, the relative one as <root>/outside/file.
        assert!(root.join(outside.strip_prefix("/").unwrap()).join("made").is_dir());
        assert!(root.join("outside/file").is_file());
        // A dangling link is followed inside the root and its target created there.
        symlink("../run/systemd/resolve/stub-resolv.conf", root.join("etc-resolv")).unwrap();
        open_in_root(&fd, "/etc-resolv", Kind::File, true).unwrap();
        assert!(root.join("run/systemd/resolve/stub-resolv.conf").is_file());
        symlink("/../../x/../../deep", root.join("updir")).unwrap();
        open_in_root(&fd, "/updir/sub", Kind::Dir, true).unwrap();
        assert!(root.join("deep/sub").is_dir());
        // Link loops end with an error, not a hang.
        symlink("loop2", root.join("loop1")).unwrap();
        symlink("loop1", root.join("loop2")).unwrap();
        assert!(open_in_root(&fd, "/loop1/x", Kind::Dir, true).is_err());
        // System mount points may not be links at all.
        symlink("/etc", root.join("run2")).unwrap();
        let err = open_in_root(&fd, "/run2", Kind::Dir, false).unwrap_err();
        assert!(err.contains("symbolic link"), "{err}");
        // A dangling link is created inside the root, never outside.
        symlink("/nowhere/at/all", root.join("dangling")).unwrap();
        open_in_root(&fd, "/dangling", Kind::Dir, true).unwrap();
        assert!(root.join("nowhere/at/all").is_dir());
        assert!(!std::path::Path::new("/nowhere").exists());
    }
}
