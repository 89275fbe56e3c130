//! Host-side file access inside a box's tree that cannot be steered out of it.
//!
//! Every path from a user or from inside a box is resolved with `openat2(RESOLVE_IN_ROOT)`: `..`,
//! absolute symlinks and symlink chains are all resolved as if the box root were `/`, by the kernel,
//! in one step, so there is no window between a check and the use (the runc CVE-2018-15664 class).
//! Writes go to a fresh temporary name beside the target (opened `O_EXCL|O_NOFOLLOW` relative to the
//! already-resolved parent directory fd) and are renamed over it, so a reader never sees half a file
//! and a planted symlink at the target is replaced, not followed.

use std::ffi::CString;
use std::io::{Read, Write};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::Path;

use crate::{Error, Result};

/// The error for directories (document 002).
pub const DIRECTORIES_UNSUPPORTED: &str =
    "only files are supported (directories require -r, not yet supported)";

fn cstr(s: &[u8]) -> Result<CString> {
    CString::new(s).map_err(|_| Error::bad_request("invalid_path", "path contains a NUL byte"))
}

/// `openat2(dirfd, path, flags, mode, RESOLVE_IN_ROOT | RESOLVE_NO_MAGICLINKS)`.
fn openat2_in(dirfd: i32, path: &str, flags: i32, mode: u32) -> std::io::Result<OwnedFd> {
    let c = CString::new(path.as_bytes()).map_err(|_| std::io::Error::from_raw_os_error(libc::EINVAL))?;
    let mut how: libc::open_how = unsafe { std::mem::zeroed() };
    how.flags = (flags | libc::O_CLOEXEC) as u64;
    how.mode = if flags & libc::O_CREAT != 0 { mode as u64 } else { 0 };
    how.resolve = libc::RESOLVE_IN_ROOT | libc::RESOLVE_NO_MAGICLINKS;
    // SAFETY: `c` and `how` outlive the call; the size matches the struct passed.
    let fd = unsafe {
        libc::syscall(
            libc::SYS_openat2,
            dirfd,
            c.as_ptr(),
            &how as *const libc::open_how,
            std::mem::size_of::<libc::open_how>(),
        )
    };
    if fd < 0 {
        return Err(std::io::Error::last_os_error());
    }
    // SAFETY: the kernel returned a fresh descriptor that we now own.
    Ok(unsafe { OwnedFd::from_raw_fd(fd as i32) })
}

fn open_dir(root: &Path) -> Result<OwnedFd> {
    let c = cstr(root.as_os_str().as_bytes())?;
    // SAFETY: plain open(2) of a NUL-terminated path.
    let fd = unsafe { libc::open(c.as_ptr(), libc::O_PATH | libc::O_DIRECTORY | libc::O_CLOEXEC) };
    if fd < 0 {
        return Err(Error::io(format!("opening {}", root.display()), std::io::Error::last_os_error()));
    }
    // SAFETY: fresh descriptor.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// Opens the inode an `O_PATH` descriptor refers to with `flags`, through `/proc/self/fd` (the
/// kernel's documented way to upgrade an `O_PATH` descriptor; no path inside the box is involved).
fn reopen(fd: &OwnedFd, flags: i32) -> std::io::Result<OwnedFd> {
    let c = CString::new(format!("/proc/self/fd/{}", fd.as_raw_fd()))
        .map_err(|_| std::io::Error::from_raw_os_error(libc::EINVAL))?;
    // SAFETY: plain open(2) of a NUL-terminated path.
    let raw = unsafe { libc::open(c.as_ptr(), flags | libc::O_CLOEXEC) };
    if raw < 0 {
        return Err(std::io::Error::last_os_error());
    }
    // SAFETY: fresh descriptor that we now own.
    Ok(unsafe { OwnedFd::from_raw_fd(raw) })
}

fn fstat(fd: &OwnedFd) -> std::io::Result<libc::stat> {
    let mut st: libc::stat = unsafe { std::mem::zeroed() };
    // SAFETY: fd is valid, st is a valid out pointer.
    if unsafe { libc::fstat(fd.as_raw_fd(), &mut st) } < 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(st)
}

fn check_abs(path: &str) -> Result<()> {
    if !path.starts_with('/') {
        return Err(Error::bad_request(
            "invalid_path",
            format!("path {path:?} must be absolute (start with /)"),
        ));
    }
    if path.as_bytes().contains(&0) {
        return Err(Error::bad_request("invalid_path", "path contains a NUL byte"));
    }
    Ok(())
}

fn map_open_err(path: &str, e: std::io::Error) -> Error {
    match e.raw_os_error() {
        Some(libc::ENOENT) => {
            Error::new(crate::ErrorKind::NotFound, "not_found", format!("{path}: no such file in the box"))
        }
        Some(libc::ENOTDIR) => {
            Error::bad_request("invalid_path", format!("{path}: a path component is not a directory"))
        }
        Some(libc::EXDEV) | Some(libc::ELOOP) => {
            Error::bad_request("invalid_path", format!("{path}: path resolves outside the box or loops"))
        }
        Some(libc::EISDIR) => Error::bad_request("is_directory", DIRECTORIES_UNSUPPORTED),
        _ => Error::io(format!("opening {path} in the box"), e),
    }
}

/// Maps a failure to create, rename or mkdir `path` in the already-resolved directory `parent`.
/// The box may change its tree between our steps (it runs while we copy), so a parent that
/// vanished or turned into something else is the box's doing: a 404 or 400, never a 500.
fn map_write_err(parent: &str, path: &str, e: std::io::Error) -> Error {
    match e.raw_os_error() {
        Some(libc::ENOENT) => Error::new(
            crate::ErrorKind::NotFound,
            "not_found",
            format!("directory {parent} does not exist in the box (it was removed while writing {path})"),
        ),
        Some(libc::ENOTDIR) => {
            Error::bad_request("invalid_path", format!("{path}: a path component is not a directory"))
        }
        Some(libc::EISDIR) | Some(libc::ENOTEMPTY) | Some(libc::EEXIST) => {
            Error::bad_request("is_directory", DIRECTORIES_UNSUPPORTED)
        }
        _ => Error::io(format!("writing {path} in the box"), e),
    }
}

/// Reads the regular file `path` (absolute, inside `root`), at most `limit` bytes. Returns the bytes
/// and the permission bits.
pub fn read_file(root: &Path, path: &str, limit: u64) -> Result<(Vec<u8>, u32)> {
    check_abs(path)?;
    let dir = open_dir(root)?;
    // Resolve to an O_PATH descriptor first and check the type on it: opening a FIFO would block
    // and opening a device node a box planted (mknod is allowed for character devices) would run
    // that driver's open on the host, outside the box's device cgroup. Only a regular file is then
    // opened for reading, through the descriptor, so there is no second resolution of `path`.
    let found = openat2_in(dir.as_raw_fd(), path, libc::O_PATH, 0).map_err(|e| map_open_err(path, e))?;
    let st = fstat(&found).map_err(|e| Error::io(format!("stat {path}"), e))?;
    match st.st_mode & libc::S_IFMT {
        libc::S_IFREG => {}
        libc::S_IFDIR => return Err(Error::bad_request("is_directory", DIRECTORIES_UNSUPPORTED)),
        _ => return Err(Error::bad_request("not_a_file", format!("{path} is not a regular file"))),
    }
    let fd = reopen(&found, libc::O_RDONLY | libc::O_NOCTTY).map_err(|e| map_open_err(path, e))?;
    if st.st_size as u64 > limit {
        return Err(Error::new(
            crate::ErrorKind::TooLarge,
            "too_large",
            format!("{path} is {} bytes, over the limit of {limit} bytes", st.st_size),
        ));
    }
    let mut f = std::fs::File::from(fd);
    let mut buf = Vec::with_capacity(st.st_size as usize);
    Read::by_ref(&mut f)
        .take(limit + 1)
        .read_to_end(&mut buf)
        .map_err(|e| Error::io(format!("reading {path}"), e))?;
    if buf.len() as u64 > limit {
        return Err(Error::new(
            crate::ErrorKind::TooLarge,
            "too_large",
            format!("{path} is over the limit of {limit} bytes"),
        ));
    }
    Ok((buf, st.st_mode & 0o7777))
}

/// Whether `path` exists inside `root` (symlinks resolved inside the root).
pub fn exists(root: &Path, path: &str) -> bool {
    let Ok(dir) = open_dir(root) else { return false };
    openat2_in(dir.as_raw_fd(), path, libc::O_PATH, 0).is_ok()
}

/// Atomically writes `data` to `path` (absolute, inside `root`) with permission bits `mode`. The
/// parent directory must exist; `mkdirs` creates missing parents (mode 0755) first.
pub fn write_file(root: &Path, path: &str, data: &[u8], mode: u32, mkdirs: bool) -> Result<()> {
    check_abs(path)?;
    let trimmed = path.trim_end_matches('/');
    let (parent, name) = match trimmed.rsplit_once('/') {
        Some((p, n)) if !n.is_empty() && n != "." && n != ".." => (if p.is_empty() { "/" } else { p }, n),
        _ => return Err(Error::bad_request("invalid_path", format!("{path:?} does not name a file"))),
    };
    let rootfd = open_dir(root)?;
    if mkdirs {
        mkdir_all(&rootfd, parent)?;
    }
    let dir =
        openat2_in(rootfd.as_raw_fd(), parent, libc::O_PATH | libc::O_DIRECTORY, 0).map_err(|e| {
            match e.raw_os_error() {
                Some(libc::ENOENT) => Error::new(
                    crate::ErrorKind::NotFound,
                    "not_found",
                    format!("directory {parent} does not exist in the box; create it first"),
                ),
                _ => map_open_err(parent, e),
            }
        })?;
    // Refuse to replace a directory with a file.
    if let Ok(existing) = openat2_in(dir.as_raw_fd(), name, libc::O_PATH | libc::O_NOFOLLOW, 0)
        && fstat(&existing).map(|st| st.st_mode & libc::S_IFMT == libc::S_IFDIR).unwrap_or(false)
    {
        return Err(Error::bad_request("is_directory", DIRECTORIES_UNSUPPORTED));
    }
    let tmp = format!(".{name}.forkr-{}-{}", std::process::id(), nanos());
    let ctmp = cstr(tmp.as_bytes())?;
    // SAFETY: dir is a valid directory fd; ctmp NUL-terminated.
    let fd = unsafe {
        libc::openat(
            dir.as_raw_fd(),
            ctmp.as_ptr(),
            libc::O_WRONLY | libc::O_CREAT | libc::O_EXCL | libc::O_NOFOLLOW | libc::O_CLOEXEC,
            0o600,
        )
    };
    if fd < 0 {
        return Err(map_write_err(parent, path, std::io::Error::last_os_error()));
    }
    // SAFETY: fresh descriptor.
    let mut f = std::fs::File::from(unsafe { OwnedFd::from_raw_fd(fd) });
    let cleanup = |e: Error| {
        // SAFETY: unlinking our own temporary name relative to the parent fd.
        unsafe { libc::unlinkat(dir.as_raw_fd(), ctmp.as_ptr(), 0) };
        e
    };
    f.write_all(data).map_err(|e| cleanup(Error::io(format!("writing {path}"), e)))?;
    // SAFETY: valid fd.
    if unsafe { libc::fchmod(f.as_raw_fd(), (mode & 0o7777) as libc::mode_t) } < 0 {
        return Err(cleanup(Error::io(format!("chmod {path}"), std::io::Error::last_os_error())));
    }
    let cname = cstr(name.as_bytes())?;
    // SAFETY: both names relative to the same valid directory fd.
    if unsafe { libc::renameat(dir.as_raw_fd(), ctmp.as_ptr(), dir.as_raw_fd(), cname.as_ptr()) } < 0 {
        return Err(cleanup(map_write_err(parent, path, std::io::Error::last_os_error())));
    }
    Ok(())
}

/// Removes the file, symlink or empty directory `path` inside `root` (the link itself, never its
/// target). A path that does not exist is not an error.
pub fn remove(root: &Path, path: &str) -> Result<()> {
    check_abs(path)?;
    let trimmed = path.trim_end_matches('/');
    let Some((parent, name)) =
        trimmed.rsplit_once('/').filter(|(_, n)| !n.is_empty() && *n != "." && *n != "..")
    else {
        return Err(Error::bad_request("invalid_path", format!("{path:?} does not name a file")));
    };
    let parent = if parent.is_empty() { "/" } else { parent };
    let rootfd = open_dir(root)?;
    let dir = match openat2_in(rootfd.as_raw_fd(), parent, libc::O_PATH | libc::O_DIRECTORY, 0) {
        Ok(d) => d,
        Err(e) if e.raw_os_error() == Some(libc::ENOENT) => return Ok(()),
        Err(e) => return Err(map_open_err(parent, e)),
    };
    let c = cstr(name.as_bytes())?;
    // SAFETY: valid directory fd and NUL-terminated name; unlinkat never follows the last component.
    let mut rc = unsafe { libc::unlinkat(dir.as_raw_fd(), c.as_ptr(), 0) };
    if rc < 0 && std::io::Error::last_os_error().raw_os_error() == Some(libc::EISDIR) {
        // SAFETY: as above.
        rc = unsafe { libc::unlinkat(dir.as_raw_fd(), c.as_ptr(), libc::AT_REMOVEDIR) };
    }
    if rc < 0 {
        let e = std::io::Error::last_os_error();
        return match e.raw_os_error() {
            Some(libc::ENOENT) => Ok(()),
            Some(libc::ENOTEMPTY) => {
                Err(Error::bad_request("not_empty", format!("{path} is a directory that is not empty")))
            }
            _ => Err(Error::io(format!("removing {path} in the box"), e)),
        };
    }
    Ok(())
}

/// Creates every missing directory of `path` inside the root fd, resolving each step in the root.
fn mkdir_all(rootfd: &OwnedFd, path: &str) -> Result<()> {
    let mut cur = String::new();
    for comp in path.split('/').filter(|c| !c.is_empty()) {
        if comp == ".." || comp == "." {
            return Err(Error::bad_request("invalid_path", format!("{path:?} must not contain . or ..")));
        }
        let parent = if cur.is_empty() { "/".to_owned() } else { cur.clone() };
        cur.push('/');
        cur.push_str(comp);
        if openat2_in(rootfd.as_raw_fd(), &cur, libc::O_PATH | libc::O_DIRECTORY, 0).is_ok() {
            continue;
        }
        let pfd = openat2_in(rootfd.as_raw_fd(), &parent, libc::O_PATH | libc::O_DIRECTORY, 0)
            .map_err(|e| map_open_err(&parent, e))?;
        let c = cstr(comp.as_bytes())?;
        // SAFETY: valid dir fd and name.
        if unsafe { libc::mkdirat(pfd.as_raw_fd(), c.as_ptr(), 0o755) } < 0 {
            let e = std::io::Error::last_os_error();
            if e.raw_os_error() != Some(libc::EEXIST) {
                return Err(map_write_err(&parent, &cur, e));
            }
        }
    }
    Ok(())
}

fn nanos() -> u128 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_nanos()).unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn round_trip_and_mode() {
        let d = tempfile::tempdir().unwrap();
        write_file(d.path(), "/a/b/c.txt", b"hi", 0o640, true).unwrap();
        let (data, mode) = read_file(d.path(), "/a/b/c.txt", 1024).unwrap();
        assert_eq!(data, b"hi");
        assert_eq!(mode, 0o640);
        assert_eq!(
            std::fs::metadata(d.path().join("a/b/c.txt")).unwrap().permissions().mode() & 0o777,
            0o640
        );
        assert!(exists(d.path(), "/a/b"));
        assert_eq!(read_file(d.path(), "/a", 10).unwrap_err().message(), DIRECTORIES_UNSUPPORTED);
        assert_eq!(read_file(d.path(), "/a/b/c.txt", 1).unwrap_err().kind(), crate::ErrorKind::TooLarge);
        assert!(read_file(d.path(), "rel", 10).is_err());
        assert_eq!(
            write_file(d.path(), "/nope/x", b"", 0o644, false).unwrap_err().kind(),
            crate::ErrorKind::NotFound
        );
    }

    #[test]
    fn remove_files_links_and_dirs() {
        let outside = tempfile::tempdir().unwrap();
        std::fs::write(outside.path().join("keep"), b"host").unwrap();
        let d = tempfile::tempdir().unwrap();
        write_file(d.path(), "/a/f", b"x", 0o644, true).unwrap();
        std::os::unix::fs::symlink(outside.path().join("keep"), d.path().join("link")).unwrap();
        remove(d.path(), "/a/f").unwrap();
        assert!(!d.path().join("a/f").exists());
        remove(d.path(), "/a/f").unwrap();
        remove(d.path(), "/a").unwrap();
        remove(d.path(), "/link").unwrap();
        assert!(outside.path().join("keep").exists(), "removing a link must not touch its target");
        write_file(d.path(), "/b/c", b"x", 0o644, true).unwrap();
        assert_eq!(remove(d.path(), "/b").unwrap_err().code(), "not_empty");
        assert!(remove(d.path(), "/").is_err());
    }

    /// A box may plant FIFOs and character devices (mknod is allowed for them); reading one must
    /// be refused without the server ever opening it: a FIFO open blocks, a device open runs the
    /// driver on the host (e.g. arming a watchdog). inotify's IN_OPEN proves no open happened.
    #[test]
    fn fifos_and_devices_are_refused_without_being_opened() {
        let d = tempfile::tempdir().unwrap();
        let names = ["fifo", "null"];
        let c = |n: &str| CString::new(d.path().join(n).as_os_str().as_bytes()).unwrap();
        // SAFETY: NUL-terminated paths in our own temporary directory.
        unsafe {
            assert_eq!(libc::mkfifo(c("fifo").as_ptr(), 0o644), 0);
            assert_eq!(libc::mknod(c("null").as_ptr(), libc::S_IFCHR | 0o666, libc::makedev(1, 3)), 0);
        }
        // SAFETY: plain syscalls; the descriptor is owned right away.
        let ino = unsafe { OwnedFd::from_raw_fd(libc::inotify_init1(libc::IN_NONBLOCK | libc::IN_CLOEXEC)) };
        for n in names {
            // SAFETY: valid inotify fd and C string.
            let wd = unsafe { libc::inotify_add_watch(ino.as_raw_fd(), c(n).as_ptr(), libc::IN_OPEN) };
            assert!(wd >= 0, "{}", std::io::Error::last_os_error());
        }
        for n in names {
            let e = read_file(d.path(), &format!("/{n}"), 100).unwrap_err();
            assert_eq!(e.code(), "not_a_file", "{n}: {e}");
        }
        let mut buf = [0u8; 1024];
        // SAFETY: reading into a local buffer of the given size.
        let n = unsafe { libc::read(ino.as_raw_fd(), buf.as_mut_ptr().cast(), buf.len()) };
        assert!(n < 0, "the server opened a FIFO or device node ({n} bytes of inotify events)");
        // Regular files still read, and writing over a node replaces it.
        write_file(d.path(), "/fifo", b"file", 0o644, false).unwrap();
        assert_eq!(read_file(d.path(), "/fifo", 100).unwrap().0, b"file");
    }

    #[test]
    fn symlinks_cannot_escape() {
        let outside = tempfile::tempdir().unwrap();
        std::fs::write(outside.path().join("secret"), b"host").unwrap();
        let d = tempfile::tempdir().unwrap();
        let root = d.path();
        // An absolute link to the host dir, a relative `..` chain, and a link at the target name.
        std::os::unix::fs::symlink(outside.path(), root.join("abs")).unwrap();
        std::os::unix::fs::symlink("../../../../../../..", root.join("up")).unwrap();
        let rel_secret = format!("/up{}/secret", outside.path().display());
        assert!(read_file(root, "/abs/secret", 100).is_err());
        assert!(read_file(root, &rel_secret, 100).is_err());
        assert!(read_file(root, &format!("/../../..{}/secret", outside.path().display()), 100).is_err());
        // Writes through the links land inside the root or fail; the host file is untouched.
        let _ = write_file(root, &rel_secret, b"pwned", 0o644, true);
        std::os::unix::fs::symlink(outside.path().join("secret"), root.join("target")).unwrap();
        write_file(root, "/target", b"inside", 0o644, false).unwrap();
        assert_eq!(std::fs::read(outside.path().join("secret")).unwrap(), b"host");
        assert_eq!(std::fs::read(root.join("target")).unwrap(), b"inside");
    }
}
