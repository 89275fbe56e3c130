//! Thin wrappers over the system calls the runtime needs and `nix` does not wrap (pidfds,
//! `close_range`, capabilities, the new mount API).
//!
//! Several of these run between `fork` and `exec` of a multi-threaded server, where only
//! async-signal-safe code may run: those functions take no locks, allocate nothing and return a
//! raw `errno` instead of an `io::Error` with a message. That is also why capabilities are set here
//! with raw `prctl`/`capset` instead of the `caps` crate, whose API allocates hash sets.

use std::ffi::CStr;
use std::io;
use std::os::fd::{AsRawFd, BorrowedFd, FromRawFd, OwnedFd, RawFd};

/// Capabilities a box keeps: Docker's default set. Everything else (CAP_SYS_ADMIN, SYS_MODULE,
/// SYS_PTRACE, SYS_RAWIO, SYS_BOOT, SYS_TIME, NET_ADMIN, ...) is dropped from the bounding set so
/// that not even a setuid binary inside the box can regain it.
pub(crate) const KEPT_CAPS: &[u32] = &[
    0,  // CAP_CHOWN
    1,  // CAP_DAC_OVERRIDE
    3,  // CAP_FOWNER
    4,  // CAP_FSETID
    5,  // CAP_KILL
    6,  // CAP_SETGID
    7,  // CAP_SETUID
    8,  // CAP_SETPCAP
    10, // CAP_NET_BIND_SERVICE
    13, // CAP_NET_RAW
    18, // CAP_SYS_CHROOT
    27, // CAP_MKNOD
    29, // CAP_AUDIT_WRITE
    31, // CAP_SETFCAP
];

/// Bit mask of [`KEPT_CAPS`].
pub(crate) const fn kept_caps_mask() -> u64 {
    let mut mask = 0u64;
    let mut i = 0;
    while i < KEPT_CAPS.len() {
        mask |= 1 << KEPT_CAPS[i];
        i += 1;
    }
    mask
}

fn errno() -> i32 {
    io::Error::last_os_error().raw_os_error().unwrap_or(libc::EIO)
}

#[repr(C)]
struct CapHeader {
    version: u32,
    pid: i32,
}

#[repr(C)]
#[derive(Clone, Copy)]
struct CapData {
    effective: u32,
    permitted: u32,
    inheritable: u32,
}

const LINUX_CAPABILITY_VERSION_3: u32 = 0x2008_0522;

/// Drops every capability outside [`KEPT_CAPS`] from the bounding set and clears the ambient set.
/// Must run while the process still has CAP_SETPCAP (before `setuid` to a non-root user).
/// Async-signal-safe.
pub(crate) fn drop_bounding_caps() -> Result<(), i32> {
    let keep = kept_caps_mask();
    for cap in 0..64u32 {
        if keep & (1 << cap) != 0 {
            continue;
        }
        // SAFETY: plain prctl with integer arguments.
        let rc = unsafe { libc::prctl(libc::PR_CAPBSET_DROP, cap as libc::c_ulong, 0, 0, 0) };
        if rc != 0 {
            let e = errno();
            if e == libc::EINVAL {
                break; // past CAP_LAST_CAP of this kernel
            }
            return Err(e);
        }
    }
    // SAFETY: plain prctl with integer arguments. EINVAL means no ambient support: nothing to clear.
    let rc = unsafe {
        libc::prctl(libc::PR_CAP_AMBIENT, libc::PR_CAP_AMBIENT_CLEAR_ALL as libc::c_ulong, 0, 0, 0)
    };
    if rc != 0 && errno() != libc::EINVAL {
        return Err(errno());
    }
    Ok(())
}

/// Sets the effective and permitted sets of the calling (root) process to [`KEPT_CAPS`] and the
/// inheritable set to empty (runc's fix for CVE-2022-29162). Async-signal-safe.
pub(crate) fn set_process_caps() -> Result<(), i32> {
    let mask = kept_caps_mask();
    let lo = mask as u32;
    let hi = (mask >> 32) as u32;
    let mut header = CapHeader { version: LINUX_CAPABILITY_VERSION_3, pid: 0 };
    let data = [
        CapData { effective: lo, permitted: lo, inheritable: 0 },
        CapData { effective: hi, permitted: hi, inheritable: 0 },
    ];
    // SAFETY: header and data are valid for the duration of the call; layout matches the kernel's.
    let rc = unsafe { libc::syscall(libc::SYS_capset, &mut header as *mut CapHeader, data.as_ptr()) };
    if rc != 0 { Err(errno()) } else { Ok(()) }
}

/// `close_range(first, ~0, flags)`. With `cloexec` the fds stay open until the next `exec`
/// (so that a sync pipe still works), without it they are closed now. Async-signal-safe.
pub(crate) fn close_from(first: u32, cloexec: bool) -> Result<(), i32> {
    let flags = if cloexec { libc::CLOSE_RANGE_CLOEXEC } else { 0 };
    // SAFETY: close_range only affects the descriptor table.
    let rc = unsafe { libc::syscall(libc::SYS_close_range, first, u32::MAX, flags) };
    if rc != 0 { Err(errno()) } else { Ok(()) }
}

/// `pidfd_open(2)`: a file descriptor that refers to exactly this process, immune to PID reuse.
pub(crate) fn pidfd_open(pid: u32) -> io::Result<OwnedFd> {
    // SAFETY: plain syscall; on success the kernel returns a new fd we own.
    let fd = unsafe { libc::syscall(libc::SYS_pidfd_open, pid as libc::pid_t, 0u32) };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: fd is a fresh descriptor returned by the kernel.
    Ok(unsafe { OwnedFd::from_raw_fd(fd as RawFd) })
}

/// `pidfd_send_signal(2)`.
pub(crate) fn pidfd_signal(pidfd: BorrowedFd<'_>, signal: i32) -> io::Result<()> {
    // SAFETY: plain syscall with a valid fd and a null siginfo.
    let rc = unsafe {
        libc::syscall(
            libc::SYS_pidfd_send_signal,
            pidfd.as_raw_fd(),
            signal,
            std::ptr::null::<libc::siginfo_t>(),
            0u32,
        )
    };
    if rc != 0 { Err(io::Error::last_os_error()) } else { Ok(()) }
}

/// Brings the loopback interface of the current network namespace up, so that services in a box
/// can talk to themselves over 127.0.0.1.
pub(crate) fn loopback_up() -> io::Result<()> {
    // SAFETY: socket() returns a new fd or -1.
    let fd = unsafe { libc::socket(libc::AF_INET, libc::SOCK_DGRAM | libc::SOCK_CLOEXEC, 0) };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: fd is fresh and owned here.
    let sock = unsafe { OwnedFd::from_raw_fd(fd) };
    // SAFETY: ifreq is plain old data; all-zero is a valid value.
    let mut req: libc::ifreq = unsafe { std::mem::zeroed() };
    for (dst, src) in req.ifr_name.iter_mut().zip(b"lo\0") {
        *dst = *src as libc::c_char;
    }
    // SAFETY: req is a valid ifreq for the duration of both ioctls.
    unsafe {
        if libc::ioctl(sock.as_raw_fd(), libc::SIOCGIFFLAGS, &mut req) != 0 {
            return Err(io::Error::last_os_error());
        }
        req.ifr_ifru.ifru_flags |= libc::IFF_UP as libc::c_short;
        if libc::ioctl(sock.as_raw_fd(), libc::SIOCSIFFLAGS, &req) != 0 {
            return Err(io::Error::last_os_error());
        }
    }
    Ok(())
}

/// Path of an fd in `/proc/self/fd`, for system calls that only take paths (`mount(2)`): the
/// kernel follows the magic link to the very object the fd refers to, with no path re-resolution.
pub(crate) fn fd_path(fd: BorrowedFd<'_>) -> String {
    format!("/proc/self/fd/{}", fd.as_raw_fd())
}

/// `open_tree(OPEN_TREE_CLONE | AT_RECURSIVE)`: a detached copy of the mount tree at host path
/// `path`, ready to be attached elsewhere with [`move_mount_to`].
pub(crate) fn open_tree_clone(path: &CStr) -> io::Result<OwnedFd> {
    open_tree_raw(libc::AT_FDCWD, path, 0)
}

/// Like [`open_tree_clone`] for the object an fd refers to.
pub(crate) fn open_tree_clone_fd(fd: BorrowedFd<'_>) -> io::Result<OwnedFd> {
    open_tree_raw(fd.as_raw_fd(), c"", libc::AT_EMPTY_PATH as libc::c_uint)
}

fn open_tree_raw(dirfd: RawFd, path: &CStr, extra: libc::c_uint) -> io::Result<OwnedFd> {
    let flags = libc::OPEN_TREE_CLONE | libc::OPEN_TREE_CLOEXEC | libc::AT_RECURSIVE as libc::c_uint | extra;
    // SAFETY: path is a valid C string; on success the kernel returns a new fd.
    let fd = unsafe { libc::syscall(libc::SYS_open_tree, dirfd, path.as_ptr(), flags) };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: fresh fd from the kernel.
    Ok(unsafe { OwnedFd::from_raw_fd(fd as RawFd) })
}

/// Makes a detached mount tree (from [`open_tree_clone`]) read-only, recursively, before it is
/// attached: there is never a moment when the box could see it writable.
pub(crate) fn mount_set_read_only(tree: BorrowedFd<'_>) -> io::Result<()> {
    // SAFETY: mount_attr is plain old data; all-zero is valid.
    let mut attr: libc::mount_attr = unsafe { std::mem::zeroed() };
    attr.attr_set = libc::MOUNT_ATTR_RDONLY;
    let flags = libc::AT_EMPTY_PATH | libc::AT_RECURSIVE;
    // SAFETY: valid fd, empty path, attr valid for the call.
    let rc = unsafe {
        libc::syscall(
            libc::SYS_mount_setattr,
            tree.as_raw_fd(),
            c"".as_ptr(),
            flags as libc::c_uint,
            &mut attr as *mut libc::mount_attr,
            std::mem::size_of::<libc::mount_attr>(),
        )
    };
    if rc != 0 { Err(io::Error::last_os_error()) } else { Ok(()) }
}

/// Attaches the detached mount `tree` onto the object `target` refers to (both by fd, so nothing
/// is resolved by path).
pub(crate) fn move_mount_to(tree: BorrowedFd<'_>, target: BorrowedFd<'_>) -> io::Result<()> {
    let flags = libc::MOVE_MOUNT_F_EMPTY_PATH | libc::MOVE_MOUNT_T_EMPTY_PATH;
    // SAFETY: valid fds and empty C strings.
    let rc = unsafe {
        libc::syscall(
            libc::SYS_move_mount,
            tree.as_raw_fd(),
            c"".as_ptr(),
            target.as_raw_fd(),
            c"".as_ptr(),
            flags,
        )
    };
    if rc != 0 { Err(io::Error::last_os_error()) } else { Ok(()) }
}

/// One record on the exec report pipe. Written with a single `write` (12 bytes, far below
/// PIPE_BUF, hence atomic) by the intermediate and grandchild processes of an exec.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Record {
    /// Host PID of the exec'd process (from the intermediate).
    HostPid(u32),
    /// PID of the exec'd process inside the box (from the process itself).
    BoxPid(u32),
    /// A setup step failed with an errno.
    Failed { step: u32, errno: i32 },
}

impl Record {
    const LEN: usize = 12;

    fn encode(self) -> [u8; Self::LEN] {
        let (tag, a, b) = match self {
            Record::HostPid(p) => (1u32, p, 0u32),
            Record::BoxPid(p) => (2, p, 0),
            Record::Failed { step, errno } => (3, step, errno as u32),
        };
        let mut out = [0u8; Self::LEN];
        out[..4].copy_from_slice(&tag.to_ne_bytes());
        out[4..8].copy_from_slice(&a.to_ne_bytes());
        out[8..].copy_from_slice(&b.to_ne_bytes());
        out
    }

    /// Decodes a stream of records; a trailing partial record is ignored.
    pub fn decode_all(bytes: &[u8]) -> Vec<Record> {
        bytes
            .chunks_exact(Self::LEN)
            .filter_map(|c| {
                let word = |i: usize| u32::from_ne_bytes([c[i], c[i + 1], c[i + 2], c[i + 3]]);
                match word(0) {
                    1 => Some(Record::HostPid(word(4))),
                    2 => Some(Record::BoxPid(word(4))),
                    3 => Some(Record::Failed { step: word(4), errno: word(8) as i32 }),
                    _ => None,
                }
            })
            .collect()
    }

    /// Writes the record to `fd`. Async-signal-safe; errors are ignored because the reader
    /// treats a missing record as a failure anyway.
    pub fn send(self, fd: RawFd) {
        let buf = self.encode();
        // SAFETY: buf is valid for its length.
        unsafe { libc::write(fd, buf.as_ptr().cast(), buf.len()) };
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kept_caps_are_dockers_default() {
        let mask = kept_caps_mask();
        assert_eq!(mask.count_ones(), 14);
        assert_eq!(mask & (1 << 21), 0, "CAP_SYS_ADMIN must be dropped");
        assert_eq!(mask & (1 << 19), 0, "CAP_SYS_PTRACE must be dropped");
        assert_eq!(mask & (1 << 12), 0, "CAP_NET_ADMIN must be dropped");
        assert_ne!(mask & (1 << 27), 0, "CAP_MKNOD is kept");
        // The value Docker containers show as CapEff.
        assert_eq!(mask, 0xa80425fb);
    }

    #[test]
    fn records_round_trip() {
        let recs =
            [Record::HostPid(4242), Record::BoxPid(7), Record::Failed { step: 3, errno: libc::ENOENT }];
        let mut bytes = Vec::new();
        for r in recs {
            bytes.extend_from_slice(&r.encode());
        }
        bytes.extend_from_slice(&[1, 2, 3]); // partial trailing junk is ignored
        assert_eq!(Record::decode_all(&bytes), recs);
    }

    #[test]
    fn pidfd_of_self_and_of_a_missing_process() {
        let fd = pidfd_open(std::process::id()).unwrap();
        pidfd_signal(std::os::fd::AsFd::as_fd(&fd), 0).unwrap();
        // PID 0x3fffffff is above pid_max: no such process.
        assert!(pidfd_open(0x3fff_ffff).is_err());
    }
}
