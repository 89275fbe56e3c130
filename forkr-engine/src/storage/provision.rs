//! Making sure a btrfs filesystem sits at `<data>/fs`, and taking it down again.
//!
//! When the data dir is itself on btrfs, `fs/` is a plain directory on it. Otherwise the server
//! keeps its filesystem in a sparse image, `<data>/forkr.img`: made with `mkfs.btrfs` on first start
//! (writing a mkfs is not worth it), attached to a free loop device with `LOOP_CONFIGURE` and
//! `LO_FLAGS_AUTOCLEAR` (so the kernel releases the device by itself when the filesystem is
//! unmounted, even if the server died) and mounted at `fs/`.
//!
//! Both [`ensure_btrfs`] and [`teardown`] are idempotent and hold an exclusive `flock` on the data
//! dir while they work, so concurrent calls on one data dir serialize. Calls on different data dirs
//! may race for the same free loop device: the loser of `LOOP_CONFIGURE` gets `EBUSY` and asks again.

use std::ffi::CString;
use std::fs::{DirBuilder, File, OpenOptions};
use std::io::{self, ErrorKind as IoKind};
use std::os::fd::AsRawFd;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use nix::errno::Errno;
use nix::fcntl::{Flock, FlockArg};
use nix::mount::{MntFlags, MsFlags};

use super::btrfs::{Btrfs, is_btrfs};
use super::layout::Layout;
use super::{Storage, sys};
use crate::{Error, Result};

/// What [`ensure_btrfs`] found or did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Provisioned {
    /// The btrfs filesystem root (`layout.fs_root()`).
    pub fs_root: PathBuf,
    pub backing: Backing,
}

/// Where the filesystem at `fs/` comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Backing {
    /// The data dir is on btrfs; `fs/` is a plain directory on it.
    Native,
    /// `fs/` is the loop-mounted image `image`.
    Image {
        image: PathBuf,
        /// The image did not exist and was made by this call.
        created: bool,
        /// This call mounted it (false: it was already mounted there).
        mounted: bool,
    },
}

/// Makes sure `layout.fs_root()` is a btrfs filesystem with the layout's top folders and the
/// global system volumes, creating and mounting the image (`image_size` bytes, sparse) if needed.
pub fn ensure_btrfs(layout: &Layout, image_size: u64) -> Result<Provisioned> {
    let data = layout.data_dir();
    DirBuilder::new()
        .recursive(true)
        .mode(0o755)
        .create(data)
        .map_err(|e| Error::io(format!("creating the data dir {}", data.display()), e))?;
    let _lock = lock(data)?;
    let fs_root = layout.fs_root();
    mkdir(&fs_root)?;

    let backing = if is_btrfs(data) {
        Backing::Native
    } else if is_mount_root(&fs_root)? {
        if !is_btrfs(&fs_root) {
            return Err(Error::internal(format!(
                "{} is a mount point but not a btrfs filesystem: unmount it so the server can mount its image there",
                fs_root.display()
            )));
        }
        Backing::Image { image: layout.image(), created: false, mounted: false }
    } else {
        let image = layout.image();
        let created = match std::fs::symlink_metadata(&image) {
            Ok(meta) if meta.is_file() => false,
            Ok(_) => {
                return Err(Error::internal(format!(
                    "{} exists but is not a regular file: move it away so the server can create its btrfs image",
                    image.display()
                )));
            }
            Err(e) if e.kind() == IoKind::NotFound => {
                create_image(&image, image_size)?;
                true
            }
            Err(e) => return Err(Error::io(format!("inspecting the btrfs image {}", image.display()), e)),
        };
        mount_image(&image, &fs_root)?;
        Backing::Image { image, created, mounted: true }
    };

    create_layout(layout)?;
    Ok(Provisioned { fs_root, backing })
}

/// Unmounts `fs/` if it is a mounted image (lazily when busy) and makes sure no loop device is
/// left attached to the image. Does nothing when the data dir is on btrfs or nothing is mounted.
pub fn teardown(layout: &Layout) -> Result<()> {
    let data = layout.data_dir();
    if !data.is_dir() {
        return Ok(());
    }
    let _lock = lock(data)?;
    let fs_root = layout.fs_root();
    let mut lazy = false;
    if !is_btrfs(data) {
        // Bounded: a stack of mounts at one point (a double mount by hand) is unwound one by one.
        for _ in 0..16 {
            if !is_mount_root(&fs_root)? {
                break;
            }
            match nix::mount::umount2(&fs_root, MntFlags::empty()) {
                Ok(()) => {}
                Err(Errno::EBUSY) => {
                    // Something still has files open (a box, a shell). Detach now; the kernel
                    // finishes the unmount, and releases the loop device, when they let go.
                    nix::mount::umount2(&fs_root, MntFlags::MNT_DETACH)
                        .map_err(|e| Error::io(format!("unmounting {}", fs_root.display()), e.into()))?;
                    lazy = true;
                }
                Err(Errno::EINVAL) => break,
                Err(e) => return Err(Error::io(format!("unmounting {}", fs_root.display()), e.into())),
            }
        }
    }
    release_loop_devices(&layout.image(), lazy)
}

/// Deletes everything in the scratch folder (`fs/tmp`): leftovers of diffs and imports that a
/// crash interrupted. Call once at server start, before anything uses scratch space.
pub fn clear_scratch(layout: &Layout) -> Result<()> {
    let scratch = layout.scratch();
    let storage = Btrfs::new();
    let entries = match std::fs::read_dir(&scratch) {
        Ok(entries) => entries,
        Err(e) if e.kind() == IoKind::NotFound => return Ok(()),
        Err(e) => return Err(Error::io(format!("listing {}", scratch.display()), e)),
    };
    for entry in entries {
        let path = entry.map_err(|e| Error::io(format!("listing {}", scratch.display()), e))?.path();
        if storage.is_subvolume(&path) {
            storage.delete_subvolume(&path)?;
        } else if path.is_dir() {
            std::fs::remove_dir_all(&path)
                .map_err(|e| Error::io(format!("removing {}", path.display()), e))?;
        } else {
            std::fs::remove_file(&path).map_err(|e| Error::io(format!("removing {}", path.display()), e))?;
        }
    }
    Ok(())
}

/// Takes an exclusive `flock` on the data dir itself (no lock file to leave behind), held until
/// the guard drops. Serializes provisioning of one data dir across processes.
fn lock(data: &Path) -> Result<Flock<File>> {
    let dir =
        File::open(data).map_err(|e| Error::io(format!("opening the data dir {}", data.display()), e))?;
    Flock::lock(dir, FlockArg::LockExclusive)
        .map_err(|(_, e)| Error::io(format!("locking the data dir {}", data.display()), e.into()))
}

fn mkdir(path: &Path) -> Result<()> {
    match DirBuilder::new().mode(0o755).create(path) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == IoKind::AlreadyExists && path.is_dir() => Ok(()),
        Err(e) => Err(Error::io(format!("creating {}", path.display()), e)),
    }
}

/// Whether `path` is the root of a mount (`STATX_ATTR_MOUNT_ROOT`, Linux 5.8+). Unlike comparing
/// device numbers with the parent, this is right on btrfs, where every subvolume has its own.
fn is_mount_root(path: &Path) -> Result<bool> {
    let c_path = CString::new(path.as_os_str().as_bytes()).map_err(|_| {
        Error::bad_request("invalid_path", format!("{}: path contains a NUL byte", path.display()))
    })?;
    // SAFETY: all-zero is a valid `struct statx`.
    let mut stx: libc::statx = unsafe { std::mem::zeroed() };
    // SAFETY: `c_path` is NUL-terminated and `stx` is a valid out-buffer.
    let rc = unsafe {
        libc::statx(
            libc::AT_FDCWD,
            c_path.as_ptr(),
            libc::AT_SYMLINK_NOFOLLOW,
            libc::STATX_BASIC_STATS,
            &mut stx,
        )
    };
    if rc != 0 {
        let e = io::Error::last_os_error();
        if e.kind() == IoKind::NotFound {
            return Ok(false);
        }
        return Err(Error::io(format!("inspecting {}", path.display()), e));
    }
    let bit = libc::STATX_ATTR_MOUNT_ROOT as u64;
    if stx.stx_attributes_mask & bit == 0 {
        return Err(Error::unsupported(
            "the kernel does not report mount points through statx (Linux 5.8 or newer is required)",
        ));
    }
    Ok(stx.stx_attributes & bit != 0)
}

/// Finds `mkfs.btrfs`: root's PATH normally has it, but services often run with a short PATH.
fn mkfs_btrfs() -> Result<PathBuf> {
    let from_path = std::env::var_os("PATH")
        .map(|p| std::env::split_paths(&p).map(|d| d.join("mkfs.btrfs")).collect::<Vec<_>>())
        .unwrap_or_default();
    from_path
        .into_iter()
        .chain(["/usr/sbin/mkfs.btrfs", "/sbin/mkfs.btrfs", "/usr/bin/mkfs.btrfs"].map(PathBuf::from))
        .find(|p| p.is_file())
        .ok_or_else(|| {
            Error::unsupported(
                "mkfs.btrfs was not found: install btrfs-progs (apt-get install btrfs-progs), or put the data dir on a btrfs filesystem",
            )
        })
}

/// Creates the sparse image at a temporary name, formats it, and renames it into place, so that
/// a crash never leaves a half-made image that later starts would try to mount.
fn create_image(image: &Path, size: u64) -> Result<()> {
    let mkfs = mkfs_btrfs()?;
    let name = image.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    let tmp = image.with_file_name(format!(".{name}.tmp-{}", std::process::id()));
    struct RemoveOnDrop<'a>(&'a Path, bool);
    impl Drop for RemoveOnDrop<'_> {
        fn drop(&mut self) {
            if self.1 {
                let _ = std::fs::remove_file(self.0);
            }
        }
    }
    let mut guard = RemoveOnDrop(&tmp, true);

    let file = OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(&tmp)
        .map_err(|e| Error::io(format!("creating the btrfs image {}", tmp.display()), e))?;
    file.set_len(size)
        .map_err(|e| Error::io(format!("sizing the btrfs image {} to {size} bytes", tmp.display()), e))?;
    drop(file);

    let out = Command::new(&mkfs)
        .args(["-q", "-f", "-L", "forkr"])
        .arg(&tmp)
        .output()
        .map_err(|e| Error::io(format!("running {}", mkfs.display()), e))?;
    if !out.status.success() {
        let stderr = String::from_utf8_lossy(&out.stderr);
        return Err(Error::internal(format!(
            "mkfs.btrfs failed on {} ({} bytes; btrfs needs at least a few hundred MB): {}",
            tmp.display(),
            size,
            stderr.trim()
        )));
    }
    std::fs::rename(&tmp, image)
        .map_err(|e| Error::io(format!("moving the new btrfs image into place at {}", image.display()), e))?;
    guard.1 = false;
    Ok(())
}

/// Attaches `image` to a free loop device (autoclear) and mounts it at `target`.
fn mount_image(image: &Path, target: &Path) -> Result<()> {
    let backing = OpenOptions::new()
        .read(true)
        .write(true)
        .custom_flags(libc::O_CLOEXEC)
        .open(image)
        .map_err(|e| Error::io(format!("opening the btrfs image {}", image.display()), e))?;
    let (device, device_path) = attach_loop(&backing, image)?;
    let mounted = nix::mount::mount(
        Some(device_path.as_path()),
        target,
        Some("btrfs"),
        // Access times would make every read a metadata write (and a CoW copy in a snapshot).
        MsFlags::MS_NOATIME,
        None::<&str>,
    );
    // The mount now holds the device; closing ours arms autoclear for when it is unmounted. On a
    // failed mount this close releases the device right away.
    drop(device);
    mounted.map_err(|e| {
        Error::io(
            format!(
                "mounting the btrfs image {} ({}) at {} (is it a btrfs image? if it is damaged, move it away to start afresh)",
                image.display(),
                device_path.display(),
                target.display()
            ),
            e.into(),
        )
    })
}

/// Binds `backing` to a free loop device and returns it open (closing it before mounting would
/// trigger autoclear). Retries when another process takes the same free device first.
fn attach_loop(backing: &File, image: &Path) -> Result<(File, PathBuf)> {
    let control = OpenOptions::new()
        .read(true)
        .write(true)
        .custom_flags(libc::O_CLOEXEC)
        .open("/dev/loop-control")
        .map_err(|e| Error::io("opening /dev/loop-control (is the loop module available?)", e))?;
    let mut config = sys::LoopConfig::zeroed();
    config.fd = backing.as_raw_fd() as u32;
    config.info.lo_flags = sys::LO_FLAGS_AUTOCLEAR;
    // Informational only (sysfs shows the full path); keep the tail, which is the telling part.
    let name = image.as_os_str().as_bytes();
    let tail = &name[name.len().saturating_sub(63)..];
    config.info.lo_file_name[..tail.len()].copy_from_slice(tail);

    let mut last = Errno::EBUSY;
    for _ in 0..64 {
        // SAFETY: LOOP_CTL_GET_FREE takes no argument.
        let n = unsafe { sys::loop_ctl_get_free(control.as_raw_fd()) }
            .map_err(|e| Error::io("finding a free loop device", e.into()))?;
        let path = PathBuf::from(format!("/dev/loop{n}"));
        let device = match open_loop(&path) {
            Ok(device) => device,
            Err(e) => return Err(Error::io(format!("opening {}", path.display()), e)),
        };
        // SAFETY: `config` is a valid `struct loop_config` whose fd is open.
        match unsafe { sys::loop_configure(device.as_raw_fd(), &config) } {
            Ok(_) => return Ok((device, path)),
            // Another process configured this device between GET_FREE and now: ask again.
            Err(Errno::EBUSY) => last = Errno::EBUSY,
            Err(e) => {
                return Err(Error::io(
                    format!("attaching {} to {}", image.display(), path.display()),
                    io::Error::from(e),
                ));
            }
        }
        std::thread::sleep(Duration::from_millis(2));
    }
    Err(Error::io(
        format!("attaching {} to a loop device: every free device was taken", image.display()),
        last.into(),
    ))
}

/// Opens a loop device node, giving devtmpfs a moment to create a node the kernel just added.
fn open_loop(path: &Path) -> io::Result<File> {
    let deadline = Instant::now() + Duration::from_secs(2);
    loop {
        match OpenOptions::new().read(true).write(true).custom_flags(libc::O_CLOEXEC).open(path) {
            Err(e) if e.kind() == IoKind::NotFound && Instant::now() < deadline => {
                std::thread::sleep(Duration::from_millis(5));
            }
            other => return other,
        }
    }
}

/// The loop devices (`/dev/loopN`) currently attached to `image`, from sysfs.
pub(crate) fn loop_devices_for(image: &Path) -> Vec<PathBuf> {
    let Ok(canonical) = image.canonicalize() else { return Vec::new() };
    let Ok(entries) = std::fs::read_dir("/sys/block") else { return Vec::new() };
    let mut found = Vec::new();
    for entry in entries.flatten() {
        let name = entry.file_name();
        if !name.as_bytes().starts_with(b"loop") {
            continue;
        }
        let Ok(backing) = std::fs::read(entry.path().join("loop/backing_file")) else { continue };
        let backing = backing.strip_suffix(b"\n").unwrap_or(&backing);
        let backing = backing.strip_suffix(b" (deleted)").unwrap_or(backing);
        if backing == canonical.as_os_str().as_bytes() {
            found.push(Path::new("/dev").join(name));
        }
    }
    found
}

/// Waits for autoclear to release the image's loop devices, clearing leftovers (a device attached
/// by a process that died before mounting, or after a lazy unmount completed) explicitly.
fn release_loop_devices(image: &Path, lazy: bool) -> Result<()> {
    let deadline = Instant::now() + Duration::from_secs(5);
    let mut cleared = false;
    loop {
        let devices = loop_devices_for(image);
        if devices.is_empty() {
            return Ok(());
        }
        if lazy {
            // Still in use by whoever kept the lazy unmount busy; autoclear frees it later.
            tracing::warn!(
                image = %image.display(),
                devices = ?devices,
                "the filesystem was detached lazily; its loop device is released when its last user exits"
            );
            return Ok(());
        }
        if !cleared {
            for device in &devices {
                if let Ok(file) = OpenOptions::new().read(true).custom_flags(libc::O_CLOEXEC).open(device) {
                    // SAFETY: LOOP_CLR_FD takes no argument. When others hold the device it only
                    // arms autoclear, so this never yanks a device out from under a mount.
                    let _ = unsafe { sys::loop_clr_fd(file.as_raw_fd()) };
                }
            }
            cleared = true;
        }
        if Instant::now() >= deadline {
            let names: Vec<String> = devices.iter().map(|d| d.display().to_string()).collect();
            return Err(Error::internal(format!(
                "{} is still attached to {} after unmounting: it is mounted or held open elsewhere (see `losetup -l` and `findmnt {}`)",
                image.display(),
                names.join(", "),
                names.first().map(String::as_str).unwrap_or_default()
            )));
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// Creates the top folders of the layout and the global system volumes. The per-project and
/// per-box folders below them are made by whoever creates the project or box.
fn create_layout(layout: &Layout) -> Result<()> {
    let fs_root = layout.fs_root();
    // Box roots hold whatever their boxes put there, setuid-root binaries included: keep host
    // users out of the whole tree. Boxes never traverse it (they are chrooted below it).
    std::fs::set_permissions(&fs_root, std::fs::Permissions::from_mode(0o700))
        .map_err(|e| Error::io(format!("restricting {} to root", fs_root.display()), e))?;
    // Derived from the layout's own path functions so the two cannot drift apart.
    let folders = [
        Some(layout.bases()),
        layout.roots("-").parent().map(Path::to_path_buf),
        layout.checkpoints("-", "-").parent().and_then(Path::parent).map(Path::to_path_buf),
        layout.volumes("-").parent().map(Path::to_path_buf),
        layout.volume_checkpoints("-", "-").parent().and_then(Path::parent).map(Path::to_path_buf),
        layout.volume_backups("-", "-").parent().and_then(Path::parent).map(Path::to_path_buf),
        layout.box_bin().parent().map(Path::to_path_buf),
        layout.box_proj("-").parent().and_then(Path::parent).map(Path::to_path_buf),
        Some(layout.scratch()),
    ];
    for folder in folders.into_iter().flatten() {
        mkdir(&folder)?;
    }
    let storage = Btrfs::new();
    for volume in [layout.box_bin(), layout.box_all()] {
        if storage.is_subvolume(&volume) {
            continue;
        }
        if std::fs::symlink_metadata(&volume).is_ok() {
            return Err(Error::internal(format!(
                "{} exists but is not a btrfs subvolume: move it away so the server can create the system volume",
                volume.display()
            )));
        }
        storage.create_subvolume(&volume)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::storage::test_support::{TestFs, require_root};

    #[test]
    fn provisions_an_image_reuses_it_and_tears_down() {
        require_root();
        let dir = tempfile::tempdir().unwrap();
        let layout = Layout::new(dir.path().join("data"));
        let guard = TestFs::guard(&layout);

        let first = ensure_btrfs(&layout, 1 << 30).unwrap();
        let image = layout.image();
        assert_eq!(first.fs_root, layout.fs_root());
        assert_eq!(first.backing, Backing::Image { image: image.clone(), created: true, mounted: true });
        assert!(is_btrfs(&layout.fs_root()));
        assert!(is_mount_root(&layout.fs_root()).unwrap());
        assert_eq!(loop_devices_for(&image).len(), 1);
        // Sparse: a 1 GiB image occupies a small fraction of that on the host disk.
        let meta = std::fs::metadata(&image).unwrap();
        assert_eq!(meta.len(), 1 << 30);
        assert!(std::os::unix::fs::MetadataExt::blocks(&meta) * 512 < 64 << 20);

        let storage = Btrfs::new();
        for top in [
            "bases",
            "roots",
            "checkpoints",
            "volumes",
            "volume-checkpoints",
            "volume-backups",
            "system/projects",
            "tmp",
        ] {
            assert!(layout.fs_root().join(top).is_dir(), "{top} missing");
        }
        assert!(storage.is_subvolume(&layout.box_bin()));
        assert!(storage.is_subvolume(&layout.box_all()));
        let mode = std::fs::metadata(layout.fs_root()).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o700);
        std::fs::write(layout.box_bin().join("marker"), b"kept").unwrap();

        // Second start while mounted: nothing to do.
        let second = ensure_btrfs(&layout, 1 << 30).unwrap();
        assert_eq!(second.backing, Backing::Image { image: image.clone(), created: false, mounted: false });
        assert_eq!(loop_devices_for(&image).len(), 1);

        // Stop, then start again: the same image comes back with its contents.
        teardown(&layout).unwrap();
        assert!(!is_mount_root(&layout.fs_root()).unwrap());
        assert!(loop_devices_for(&image).is_empty(), "loop device left behind");
        assert!(!layout.box_bin().exists());
        teardown(&layout).unwrap();

        let third = ensure_btrfs(&layout, 1 << 30).unwrap();
        assert_eq!(third.backing, Backing::Image { image: image.clone(), created: false, mounted: true });
        assert_eq!(std::fs::read(layout.box_bin().join("marker")).unwrap(), b"kept");
        drop(guard);
        assert!(loop_devices_for(&image).is_empty(), "loop device left behind");
        assert!(!is_mount_root(&layout.fs_root()).unwrap());
    }

    /// Parallel servers (and parallel tests) race for free loop devices; none may fail or steal.
    #[test]
    fn concurrent_provisioning_of_separate_data_dirs() {
        require_root();
        let dirs: Vec<tempfile::TempDir> = (0..6).map(|_| tempfile::tempdir().unwrap()).collect();
        let layouts: Vec<Layout> = dirs.iter().map(|d| Layout::new(d.path().join("data"))).collect();
        let _guards: Vec<_> = layouts.iter().map(TestFs::guard).collect();
        for round in 0..2 {
            std::thread::scope(|scope| {
                for layout in &layouts {
                    scope.spawn(move || {
                        let provisioned = ensure_btrfs(layout, 1 << 30).unwrap();
                        assert!(matches!(provisioned.backing, Backing::Image { mounted: true, .. }));
                        let marker = layout.box_all().join(format!("round{round}"));
                        std::fs::write(&marker, b"x").unwrap();
                        assert_eq!(loop_devices_for(&layout.image()).len(), 1);
                        teardown(layout).unwrap();
                        assert!(loop_devices_for(&layout.image()).is_empty());
                    });
                }
            });
        }
        // Every data dir kept its own files: no image was mounted in another's place.
        for layout in &layouts {
            ensure_btrfs(layout, 1 << 30).unwrap();
            let mut names: Vec<String> = std::fs::read_dir(layout.box_all())
                .unwrap()
                .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
                .collect();
            names.sort();
            assert_eq!(names, ["round0", "round1"]);
            teardown(layout).unwrap();
        }
    }

    /// Two starts on one data dir at once serialize on the data dir lock: one mounts, one reuses.
    #[test]
    fn concurrent_provisioning_of_one_data_dir_mounts_once() {
        require_root();
        let dir = tempfile::tempdir().unwrap();
        let layout = Layout::new(dir.path().join("data"));
        let guard = TestFs::guard(&layout);
        let results: Vec<Provisioned> = std::thread::scope(|scope| {
            let handles: Vec<_> =
                (0..3).map(|_| scope.spawn(|| ensure_btrfs(&layout, 1 << 30).unwrap())).collect();
            handles.into_iter().map(|h| h.join().unwrap()).collect()
        });
        let mounted =
            results.iter().filter(|p| matches!(p.backing, Backing::Image { mounted: true, .. })).count();
        let created =
            results.iter().filter(|p| matches!(p.backing, Backing::Image { created: true, .. })).count();
        assert_eq!((mounted, created), (1, 1), "{results:?}");
        assert_eq!(loop_devices_for(&layout.image()).len(), 1);
        drop(guard);
        assert!(loop_devices_for(&layout.image()).is_empty());
    }

    #[test]
    fn teardown_detaches_lazily_when_busy() {
        require_root();
        let dir = tempfile::tempdir().unwrap();
        let layout = Layout::new(dir.path().join("data"));
        let guard = TestFs::guard(&layout);
        ensure_btrfs(&layout, 1 << 30).unwrap();
        let image = layout.image();
        let busy = File::create(layout.scratch().join("open")).unwrap();
        teardown(&layout).unwrap();
        assert!(!is_mount_root(&layout.fs_root()).unwrap());
        // The open file keeps the filesystem (and its loop device) alive until it is closed.
        assert_eq!(loop_devices_for(&image).len(), 1);
        drop(busy);
        let deadline = Instant::now() + Duration::from_secs(5);
        while !loop_devices_for(&image).is_empty() && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(20));
        }
        assert!(loop_devices_for(&image).is_empty(), "autoclear did not release the loop device");
        drop(guard);
    }

    #[test]
    fn native_btrfs_data_dir_uses_a_plain_directory() {
        let outer = TestFs::new();
        let layout = Layout::new(outer.root().join("nested-data"));
        let provisioned = ensure_btrfs(&layout, 1 << 30).unwrap();
        assert_eq!(provisioned.backing, Backing::Native);
        assert!(!layout.image().exists());
        assert!(!is_mount_root(&layout.fs_root()).unwrap());
        let storage = Btrfs::new();
        assert!(storage.is_subvolume(&layout.box_all()));
        assert!(layout.scratch().is_dir());
        // Idempotent, and teardown leaves a native filesystem alone.
        assert_eq!(ensure_btrfs(&layout, 1 << 30).unwrap().backing, Backing::Native);
        teardown(&layout).unwrap();
        assert!(layout.box_all().is_dir());
    }

    #[test]
    fn clear_scratch_removes_subvolumes_and_files() {
        let fs = TestFs::new();
        let layout = fs.layout();
        let storage = Btrfs::new();
        let scratch = layout.scratch();
        storage.create_subvolume(&scratch.join("import")).unwrap();
        std::fs::write(scratch.join("import/file"), b"x").unwrap();
        storage.snapshot(&scratch.join("import"), &scratch.join("diff-ro"), true).unwrap();
        std::fs::create_dir_all(scratch.join("plain/dir")).unwrap();
        std::fs::write(scratch.join("loose"), b"x").unwrap();
        clear_scratch(&layout).unwrap();
        assert_eq!(std::fs::read_dir(&scratch).unwrap().count(), 0);
        clear_scratch(&layout).unwrap();
    }

    #[test]
    fn errors_are_clear() {
        require_root();
        // Too small for mkfs.btrfs: the error says so and no image is left behind.
        let dir = tempfile::tempdir().unwrap();
        let layout = Layout::new(dir.path().join("data"));
        let guard = TestFs::guard(&layout);
        let err = ensure_btrfs(&layout, 1 << 20).unwrap_err();
        assert!(err.message().contains("mkfs.btrfs failed"), "{}", err.message());
        assert!(!layout.image().exists());
        let leftovers: Vec<_> = std::fs::read_dir(layout.data_dir())
            .unwrap()
            .flatten()
            .map(|e| e.file_name())
            .filter(|n| n.to_string_lossy().contains("tmp"))
            .collect();
        assert!(leftovers.is_empty(), "{leftovers:?}");

        // A garbage image is reported, with the device released again.
        std::fs::write(layout.image(), vec![0u8; 4 << 20]).unwrap();
        let err = ensure_btrfs(&layout, 1 << 30).unwrap_err();
        assert!(err.message().contains("is it a btrfs image"), "{}", err.message());
        // Autoclear releases the device at its last close, which may be a moment later when udev
        // or blkid still has the new device open.
        let released = (0..100).any(|_| {
            let gone = loop_devices_for(&layout.image()).is_empty();
            if !gone {
                std::thread::sleep(std::time::Duration::from_millis(50));
            }
            gone
        });
        assert!(
            released,
            "loop device of a failed mount not released: {:?}",
            loop_devices_for(&layout.image())
        );
        drop(guard);
    }
}
