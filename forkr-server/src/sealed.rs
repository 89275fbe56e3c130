//! The server runs from a sealed in-memory copy of its own executable (runc's CVE-2019-5736 fix).
//!
//! An exec into a box is a fork of this server that joins the box and then execs the box's shell.
//! Until that exec, `/proc/self/exe` of the child is the server's executable. A box that replaces
//! its shell with a link to `/proc/self/exe` therefore makes the child exec the *server binary*
//! inside the box, as a normal dumpable process: any process of the box can then open its
//! `/proc/<pid>/exe` and, as soon as nothing executes the file (a server restart), write the host's
//! `forkr-server` with whatever it likes, which root runs at the next start.
//!
//! So at start-up `serve` copies its executable into a `memfd`, seals it against every change
//! (`F_SEAL_WRITE | F_SEAL_SHRINK | F_SEAL_GROW | F_SEAL_SEAL`) and re-executes itself from it.
//! What a box can reach through `/proc/<pid>/exe` is then that copy, which nobody can modify, and
//! which disappears with the last process using it. The copy costs the executable's size in memory
//! once per server (shared by its forks).

use std::ffi::{CStr, CString};
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::Path;

const SEALS: libc::c_int = libc::F_SEAL_SEAL | libc::F_SEAL_SHRINK | libc::F_SEAL_GROW | libc::F_SEAL_WRITE;

/// Whether the file behind `fd` is a memfd carrying all of [`SEALS`].
fn is_sealed(fd: &impl AsRawFd) -> bool {
    // SAFETY: F_GET_SEALS only reads the seals of a valid descriptor (EINVAL for other files).
    let seals = unsafe { libc::fcntl(fd.as_raw_fd(), libc::F_GET_SEALS) };
    seals >= 0 && seals & SEALS == SEALS
}

/// Whether this process already runs from a sealed copy.
pub fn running_sealed() -> bool {
    std::fs::File::open("/proc/self/exe").is_ok_and(|f| is_sealed(&f))
}

/// A sealed, close-on-exec memfd named `name` holding the bytes of `src`.
pub fn sealed_copy(src: &Path, name: &CStr) -> io::Result<OwnedFd> {
    // SAFETY: memfd_create with a valid C string; the descriptor is owned right away.
    let raw = unsafe { libc::memfd_create(name.as_ptr(), libc::MFD_CLOEXEC | libc::MFD_ALLOW_SEALING) };
    if raw < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: a fresh descriptor nobody else owns.
    let mut copy = std::fs::File::from(unsafe { OwnedFd::from_raw_fd(raw) });
    io::copy(&mut std::fs::File::open(src)?, &mut copy)?;
    // SAFETY: adding seals to our own memfd.
    if unsafe { libc::fcntl(copy.as_raw_fd(), libc::F_ADD_SEALS, SEALS) } < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(copy.into())
}

/// Re-executes this program from a sealed copy of itself, with the same arguments and environment
/// plus `extra_env`, unless it already runs from one. Returns only on failure, or `Ok` when
/// already sealed. Call it before any thread is started.
pub fn reexec_from_sealed_copy(extra_env: &[(&str, &std::ffi::OsStr)]) -> anyhow::Result<()> {
    if running_sealed() {
        return Ok(());
    }
    let copy = sealed_copy(Path::new("/proc/self/exe"), c"forkr-server")
        .map_err(|e| anyhow::anyhow!("making a sealed copy of the server executable: {e}"))?;
    let cstring =
        |b: &[u8]| CString::new(b).map_err(|_| anyhow::anyhow!("argument or variable with a NUL byte"));
    let args = std::env::args_os().map(|a| cstring(a.as_bytes())).collect::<anyhow::Result<Vec<_>>>()?;
    let mut env = Vec::new();
    for (k, v) in std::env::vars_os() {
        if !extra_env.iter().any(|(ek, _)| k.as_bytes() == ek.as_bytes()) {
            env.push(cstring(&[k.as_bytes(), b"=", v.as_bytes()].concat())?);
        }
    }
    for (k, v) in extra_env {
        env.push(cstring(&[k.as_bytes(), b"=", v.as_bytes()].concat())?);
    }
    let ptrs = |v: &[CString]| v.iter().map(|c| c.as_ptr()).chain([std::ptr::null()]).collect::<Vec<_>>();
    let (argv, envp) = (ptrs(&args), ptrs(&env));
    // An ELF executable runs from a close-on-exec descriptor (only scripts would need it open).
    // SAFETY: NULL-terminated arrays of valid C strings that outlive the call.
    unsafe { libc::fexecve(copy.as_raw_fd(), argv.as_ptr(), envp.as_ptr()) };
    Err(anyhow::anyhow!("re-executing the server from its sealed copy: {}", io::Error::last_os_error()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    #[test]
    fn a_sealed_copy_cannot_be_changed() {
        let d = tempfile::tempdir().unwrap();
        let src = d.path().join("bin");
        std::fs::write(&src, b"\x7fELF pretend").unwrap();
        let fd = sealed_copy(&src, c"test-copy").unwrap();
        assert!(is_sealed(&fd));
        assert_eq!(std::fs::read(format!("/proc/self/fd/{}", fd.as_raw_fd())).unwrap(), b"\x7fELF pretend");
        // Neither a new writable open (what a box would do through /proc/<pid>/exe) nor a resize.
        let reopened =
            std::fs::OpenOptions::new().write(true).open(format!("/proc/self/fd/{}", fd.as_raw_fd()));
        match reopened {
            Err(e) => assert_eq!(e.raw_os_error(), Some(libc::EPERM), "{e}"),
            Ok(mut f) => assert!(f.write_all(b"x").is_err(), "wrote into a sealed copy"),
        }
        let f = std::fs::File::from(fd);
        assert!(f.set_len(1).is_err(), "shrank a sealed copy");
        // The source file is not sealed; the test binary itself does not run from a copy.
        assert!(!is_sealed(&std::fs::File::open(&src).unwrap()));
        assert!(!running_sealed());
    }
}
