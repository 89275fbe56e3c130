//! Root snapshots (checkpoints): create, list, restore, delete (document 000).
//!
//! A snapshot is a read-only btrfs snapshot of the box root: O(1) in the size of the tree. Names are
//! unique per box (a schema constraint); automatic names are `v<N>` one above the highest existing.

use std::sync::Arc;
use std::time::Duration;

use super::{Engine, blocking, now};
use crate::api::{CreateSnapshot, SnapshotInfo};
use crate::name::{NameKind, validate};
use crate::store::SnapshotRow;
use crate::{Error, ErrorKind, Result};

fn to_api(r: &SnapshotRow) -> SnapshotInfo {
    SnapshotInfo {
        name: r.name.clone(),
        r#box: r.r#box.clone(),
        project: r.project.clone(),
        size: r.size,
        created_at: r.created_at.clone(),
        description: r.description.clone(),
    }
}

/// Atomically exchanges the directory entries `a` and `b` (`renameat2(RENAME_EXCHANGE)`; btrfs
/// supports it for subvolumes in the same parent subvolume).
pub(crate) fn exchange(a: &std::path::Path, b: &std::path::Path) -> std::io::Result<()> {
    use std::os::unix::ffi::OsStrExt;
    let c = |p: &std::path::Path| {
        std::ffi::CString::new(p.as_os_str().as_bytes())
            .map_err(|_| std::io::Error::from_raw_os_error(libc::EINVAL))
    };
    let (ca, cb) = (c(a)?, c(b)?);
    // SAFETY: two NUL-terminated paths that outlive the call.
    let rc = unsafe {
        libc::renameat2(libc::AT_FDCWD, ca.as_ptr(), libc::AT_FDCWD, cb.as_ptr(), libc::RENAME_EXCHANGE)
    };
    if rc < 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(())
}

/// The next automatic name: `v<N+1>` for the highest existing `v<N>`, else `v0`.
pub(crate) fn next_auto_name(existing: &[SnapshotRow]) -> String {
    let next = existing
        .iter()
        .filter_map(|s| s.name.strip_prefix('v').and_then(|n| n.parse::<u64>().ok()))
        .max()
        .map_or(0, |n| n + 1);
    format!("v{next}")
}

impl Engine {
    fn require_snapshot(&self, project: &str, name: &str, snapshot: &str) -> Result<SnapshotRow> {
        self.store.list_snapshots(project, name)?.into_iter().find(|s| s.name == snapshot).ok_or_else(|| {
            Error::new(
                ErrorKind::NotFound,
                "not_found",
                format!("snapshot {snapshot:?} not found on box {name:?}"),
            )
        })
    }

    /// `POST …/snapshots`.
    pub async fn create_snapshot(
        self: &Arc<Self>,
        project: &str,
        name: &str,
        req: CreateSnapshot,
    ) -> Result<SnapshotInfo> {
        if let Some(n) = &req.name {
            validate(NameKind::Snapshot, n)?;
        }
        let _g = self.lock_box(project, name).await;
        self.require_box(project, name)?;
        let existing = self.store.list_snapshots(project, name)?;
        let snap_name = req.name.clone().unwrap_or_else(|| next_auto_name(&existing));
        let row = SnapshotRow {
            project: project.to_owned(),
            r#box: name.to_owned(),
            name: snap_name.clone(),
            description: req.description.clone(),
            size: None,
            created_at: now(),
        };
        self.store.insert_snapshot(&row)?;
        crate::fault::point("snapshot.after_row");
        let this = self.clone();
        let (p, n, s) = (project.to_owned(), name.to_owned(), snap_name.clone());
        let made = blocking(move || {
            let dir = this.layout.checkpoints(&p, &n);
            std::fs::create_dir_all(&dir).map_err(|e| Error::io(format!("creating {}", dir.display()), e))?;
            this.storage.snapshot(&this.layout.root(&p, &n), &dir.join(&s), true)
        })
        .await;
        if let Err(e) = made {
            let _ = self.store.delete_snapshot(project, name, &snap_name);
            return Err(e);
        }
        self.measure_snapshot(project, name, &snap_name);
        Ok(to_api(&row))
    }

    fn measure_snapshot(self: &Arc<Self>, project: &str, name: &str, snapshot: &str) {
        let this = self.clone();
        let (p, n, s) = (project.to_owned(), name.to_owned(), snapshot.to_owned());
        tokio::task::spawn_blocking(move || {
            if let Ok(size) = this.storage.size(&this.layout.checkpoint(&p, &n, &s)) {
                let _ = this.store.set_snapshot_size(&p, &n, &s, size);
            }
        });
    }

    /// `GET …/snapshots`, oldest first.
    pub fn list_snapshots(&self, project: &str, name: &str) -> Result<Vec<SnapshotInfo>> {
        self.require_box(project, name)?;
        Ok(self.store.list_snapshots(project, name)?.iter().map(to_api).collect())
    }

    /// `POST …/snapshots/{s}/restore`: stop the box, replace its root with a writable snapshot of the
    /// checkpoint, start it again (document 000). The new root is made in scratch and swapped in by
    /// one atomic exchange, so a failure or a crash at any step leaves one of the two roots in place.
    pub async fn restore_snapshot(
        self: &Arc<Self>,
        project: &str,
        name: &str,
        snapshot: &str,
    ) -> Result<crate::api::BoxInfo> {
        validate(NameKind::Snapshot, snapshot)?;
        let _g = self.lock_box(project, name).await;
        let mut row = self.require_box(project, name)?;
        self.require_snapshot(project, name, snapshot)?;
        let grace = Duration::from_secs(row.grace_seconds);
        self.stop_running(&mut row, grace).await?;
        // Recorded as stopped but still meant to run: if the server dies before the end, the next
        // start's reconcile starts the box again, on whichever root is in place then.
        row.desired = crate::api::BoxStatus::Running;
        self.store.update_box(&row)?;
        crate::fault::point("restore.after_stop");
        let this = self.clone();
        let (p, n, s) = (project.to_owned(), name.to_owned(), snapshot.to_owned());
        let swapped = blocking(move || {
            let root = this.layout.root(&p, &n);
            let fresh = this.scratch_path("restore");
            this.storage.snapshot(&this.layout.checkpoint(&p, &n, &s), &fresh, false)?;
            crate::fault::point("restore.after_fresh_root");
            // One atomic exchange: at every instant the box has a root, the old or the new one.
            // (Two renames, old aside then new in, leave no root at all in between; a crash
            // there loses the box, since the old root then sits in scratch, which is emptied.)
            if let Err(e) = exchange(&fresh, &root) {
                let _ = this.storage.delete_subvolume(&fresh);
                return Err(Error::io("swapping the restored root in place", e));
            }
            crate::fault::point("restore.after_exchange");
            // `fresh` now holds the old root: scratch; if this fails the next reconcile removes it.
            let _ = this.storage.delete_subvolume(&fresh);
            Ok(())
        })
        .await;
        if let Err(e) = swapped {
            // The old root is still in place: bring the box back as it was.
            if self.start_box(&mut row).await.is_ok() {
                let _ = self.store.update_box(&row);
            }
            return Err(e);
        }
        self.start_box(&mut row).await?;
        self.store.update_box(&row)?;
        Ok(self.info(&row))
    }

    /// `DELETE …/snapshots/{s}`.
    pub async fn delete_snapshot(self: &Arc<Self>, project: &str, name: &str, snapshot: &str) -> Result<()> {
        validate(NameKind::Snapshot, snapshot)?;
        let _g = self.lock_box(project, name).await;
        self.require_snapshot(project, name, snapshot)?;
        let this = self.clone();
        let path = self.layout.checkpoint(project, name, snapshot);
        blocking(move || this.storage.delete_subvolume(&path)).await?;
        self.store.delete_snapshot(project, name, snapshot)?;
        Ok(())
    }

    /// The snapshot a diff compares against: the named one, or the newest.
    pub(crate) fn diff_base(&self, project: &str, name: &str, against: Option<&str>) -> Result<SnapshotRow> {
        match against {
            Some(s) => {
                validate(NameKind::Snapshot, s)?;
                self.require_snapshot(project, name, s)
            }
            None => self.store.list_snapshots(project, name)?.pop().ok_or_else(|| {
                Error::bad_request(
                    "no_snapshots",
                    format!("box {name:?} has no snapshots; specify one with --against (create one with `4kr snapshot create {name}`)"),
                )
            }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn snap(name: &str) -> SnapshotRow {
        SnapshotRow {
            project: "p".into(),
            r#box: "b".into(),
            name: name.into(),
            description: String::new(),
            size: None,
            created_at: String::new(),
        }
    }

    #[test]
    fn auto_names() {
        assert_eq!(next_auto_name(&[]), "v0");
        assert_eq!(next_auto_name(&[snap("v0"), snap("before"), snap("v7"), snap("v2")]), "v8");
        assert_eq!(next_auto_name(&[snap("vx"), snap("release")]), "v0");
    }
}
