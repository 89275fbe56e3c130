//! Test fixtures: a real btrfs filesystem on a sparse image in a temporary directory, provisioned
//! through [`ensure_btrfs`] and always torn down again (also when the test fails).

use std::path::PathBuf;

use tempfile::TempDir;

use super::layout::Layout;
use super::provision::{ensure_btrfs, loop_devices_for, teardown};

/// These tests mount filesystems and attach loop devices: they need root.
pub(crate) fn require_root() {
    assert!(
        nix::unistd::geteuid().is_root(),
        "storage tests mount btrfs images and must run as root (sudo cargo test)"
    );
}

/// Runs [`teardown`] when dropped, so a panicking test leaves no mount or loop device behind.
pub(crate) struct TeardownGuard {
    layout: Layout,
}

impl Drop for TeardownGuard {
    fn drop(&mut self) {
        if let Err(e) = teardown(&self.layout) {
            eprintln!("teardown of {} failed: {e}", self.layout.data_dir().display());
            let _ = nix::mount::umount2(&self.layout.fs_root(), nix::mount::MntFlags::MNT_DETACH);
        }
        // A process another test forks at the wrong moment holds copies of our open files until
        // it execs; the unmount is then lazy and the kernel releases the loop device a moment
        // later. Give it that moment before calling it a leak.
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
        let mut left = loop_devices_for(&self.layout.image());
        while !left.is_empty() && std::time::Instant::now() < deadline {
            std::thread::sleep(std::time::Duration::from_millis(20));
            left = loop_devices_for(&self.layout.image());
        }
        if !left.is_empty() && !std::thread::panicking() {
            panic!("loop devices left attached to {}: {left:?}", self.layout.image().display());
        }
    }
}

/// A provisioned data dir on a fresh 4 GiB sparse image (a few MB on disk).
pub(crate) struct TestFs {
    // Field order matters: the guard unmounts before the directory is removed.
    _guard: TeardownGuard,
    layout: Layout,
    _dir: TempDir,
}

impl TestFs {
    pub fn new() -> TestFs {
        require_root();
        let dir = tempfile::tempdir().expect("creating a temporary directory");
        let layout = Layout::new(dir.path().join("data"));
        let guard = TestFs::guard(&layout);
        ensure_btrfs(&layout, 4 << 30).expect("provisioning a btrfs image");
        TestFs { _guard: guard, layout, _dir: dir }
    }

    /// A guard for a layout provisioned by the test itself.
    pub fn guard(layout: &Layout) -> TeardownGuard {
        TeardownGuard { layout: layout.clone() }
    }

    /// The btrfs filesystem root.
    pub fn root(&self) -> PathBuf {
        self.layout.fs_root()
    }

    pub fn layout(&self) -> Layout {
        self.layout.clone()
    }
}
