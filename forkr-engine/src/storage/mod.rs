//! Copy-on-write storage for box roots, checkpoints, bases and volumes.
//!
//! [`Storage`] is the seam; [`btrfs::Btrfs`] is the real implementation (ioctls on a btrfs
//! filesystem). [`layout::Layout`] names every path; [`provision`] makes sure a btrfs filesystem is
//! mounted under the data dir (the data dir itself when it is btrfs, otherwise a loop-mounted image).
//!
//! Invariants: every path handed to a `Storage` method lies inside `Layout::fs_root`; every CoW
//! operation costs O(1) in the size of the tree; deleting a missing subvolume succeeds (idempotent).

use std::path::Path;

use crate::Result;

pub mod btrfs;
pub mod diff;
pub mod layout;
pub mod provision;
mod sys;
#[cfg(test)]
pub(crate) mod test_support;

/// Subvolume operations. Synchronous: callers run them on a blocking thread.
pub trait Storage: Send + Sync + 'static {
    /// Creates an empty writable subvolume at `path` (the parent directory must exist).
    fn create_subvolume(&self, path: &Path) -> Result<()>;
    /// Snapshots subvolume `src` to `dst` (parent must exist, `dst` must not), read-only or writable.
    fn snapshot(&self, src: &Path, dst: &Path, read_only: bool) -> Result<()>;
    /// Deletes the subvolume at `path`, read-only or not. A missing path is not an error.
    fn delete_subvolume(&self, path: &Path) -> Result<()>;
    /// Sets or clears the read-only flag.
    fn set_read_only(&self, path: &Path, read_only: bool) -> Result<()>;
    /// Whether `path` is the top of a subvolume.
    fn is_subvolume(&self, path: &Path) -> bool;
    /// Bytes used by the files below `path` (allocated blocks), without crossing into other
    /// subvolumes or mounts.
    fn size(&self, path: &Path) -> Result<u64>;
    /// Limits the bytes that may be written into the subvolume at `path` (`None` removes the
    /// limit); writes beyond it fail with `EDQUOT` inside the box. An `unsupported` error means the
    /// filesystem cannot enforce limits: callers then record the size without enforcing it.
    fn set_size_limit(&self, path: &Path, limit: Option<u64>) -> Result<()> {
        let _ = (path, limit);
        Err(crate::Error::unsupported("this storage cannot limit the size of a subvolume"))
    }
}
