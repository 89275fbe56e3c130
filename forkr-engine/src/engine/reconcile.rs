//! The pass run at every server start: re-attach to boxes that kept running while the server was
//! down, restart boxes that should run but whose PID 1 is gone (host reboot), and finish or undo
//! what a crash interrupted.
//!
//! Every multi-step operation is ordered so that each state a crash can leave is one of these, and
//! this pass turns each into a consistent one (the crash tests in `tests/tests/crash.rs` kill the
//! server at every step and check it):
//!
//! | left by a crash                                | repaired by                                 |
//! |------------------------------------------------|---------------------------------------------|
//! | scratch subvolumes and files (`fs/tmp`)        | deleting them                               |
//! | a root, checkpoint, base or volume without row | deleting the subvolume                      |
//! | a box row without a root (create before its    | deleting the row: the create is undone, the |
//! | snapshot, delete after its files)              | delete completed                            |
//! | a snapshot row without its checkpoint          | deleting the row                            |
//! | a base row without its subvolume (delete)      | deleting the row, orphaning its children    |
//! | a transient build box (`forkr-builds`)         | deleting the box                            |
//! | an upload spooled for a base import            | deleting the file                           |
//! | processes of a box whose PID 1 is not recorded | killing them, then starting the box again   |

use std::sync::Arc;

use super::{Engine, blocking, key};
use crate::Result;
use crate::api::BoxStatus;

/// What the reconcile pass did, for the server's start-up log.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Reconciled {
    pub attached: usize,
    pub restarted: usize,
    pub failed: usize,
    /// Subvolumes, scratch entries and spooled uploads removed.
    pub removed_orphans: usize,
    /// Metadata rows removed because what they describe was never made or already deleted.
    pub removed_rows: usize,
}

impl Engine {
    /// Brings storage, processes and metadata back in step. Idempotent.
    pub async fn reconcile(self: &Arc<Self>) -> Result<Reconciled> {
        let mut out = Reconciled::default();
        // 1. Transient build boxes: their build died with the server that ran it.
        for row in self.store.list_boxes(Some(super::bases::BUILD_PROJECT))? {
            let _ = self.runtime.cleanup(&key(&row.project, &row.name)).await;
            self.store.delete_box(&row.project, &row.name)?;
            out.removed_rows += 1;
        }
        // 2. Rows whose subvolume is missing, then subvolumes without rows and scratch.
        let this = self.clone();
        let (rows, gone) = blocking(move || this.remove_dangling_rows()).await?;
        out.removed_rows += rows;
        for (project, name) in gone {
            let _ = self.runtime.cleanup(&key(&project, &name)).await;
        }
        let this = self.clone();
        out.removed_orphans = blocking(move || this.remove_orphans()).await?;
        // 3. Processes.
        for mut row in self.store.list_boxes(None)? {
            if self.running(&row).is_some() {
                if row.desired == BoxStatus::Running {
                    out.attached += 1;
                }
                continue;
            }
            if row.desired != BoxStatus::Running {
                continue;
            }
            let _g = self.lock_box(&row.project, &row.name).await;
            // A PID 1 the row does not know (the server died between starting it and recording
            // it) must not keep running untracked, nor block the start.
            let _ = self.runtime.cleanup(&key(&row.project, &row.name)).await;
            match self.start_box(&mut row).await.and_then(|_| self.store.update_box(&row)) {
                Ok(()) => out.restarted += 1,
                Err(e) => {
                    out.failed += 1;
                    tracing::warn!(project = %row.project, name = %row.name, error = %e, "could not restart box");
                }
            }
        }
        // Box names and the proxy's routes, for the boxes that kept running.
        self.network_changed();
        Ok(out)
    }

    /// Deletes rows describing subvolumes that do not exist: boxes without a root (with their
    /// leftovers), snapshots without a checkpoint, bases without a subvolume. Returns how many and
    /// the boxes removed (their cgroups go next).
    fn remove_dangling_rows(&self) -> Result<(usize, Vec<(String, String)>)> {
        let mut removed = 0;
        let mut gone = Vec::new();
        // A safety net against the wrong filesystem (not mounted, another data dir): if not one
        // registered base is on disk, nothing is judged missing and nothing is deleted.
        let bases = self.store.list_bases()?;
        if !bases.is_empty()
            && !bases.iter().any(|b| self.storage.is_subvolume(&self.layout.base(&b.version)))
        {
            tracing::error!(
                fs = %self.layout.fs_root().display(),
                "no registered base exists on this filesystem; not removing any metadata"
            );
            return Ok((0, gone));
        }
        for b in self.store.list_boxes(None)? {
            if !self.storage.is_subvolume(&self.layout.root(&b.project, &b.name)) {
                tracing::warn!(project = %b.project, name = %b.name, "box has no root filesystem (interrupted create or delete); removing it");
                self.store.delete_box(&b.project, &b.name)?;
                removed += 1;
                let run = self.layout.run_dir(&b.project, &b.name);
                let _ = std::fs::remove_dir_all(run);
                gone.push((b.project, b.name));
                continue;
            }
            for s in self.store.list_snapshots(&b.project, &b.name)? {
                if !self.storage.is_subvolume(&self.layout.checkpoint(&b.project, &b.name, &s.name)) {
                    self.store.delete_snapshot(&b.project, &b.name, &s.name)?;
                    removed += 1;
                }
            }
        }
        for base in bases {
            if !self.storage.is_subvolume(&self.layout.base(&base.version)) {
                tracing::warn!(version = %base.version, "base has no subvolume (interrupted delete); removing its row");
                self.store.orphan_base_children(&base.version)?;
                self.store.delete_base(&base.version)?;
                removed += 1;
            }
        }
        Ok((removed, gone))
    }

    fn remove_orphans(&self) -> Result<usize> {
        let mut removed = std::fs::read_dir(self.layout.scratch()).map(|d| d.count()).unwrap_or(0);
        crate::storage::provision::clear_scratch(&self.layout)?;
        // Uploads spooled by a base import that never finished.
        for e in std::fs::read_dir(self.layout.data_dir()).into_iter().flatten().flatten() {
            let name = e.file_name().to_string_lossy().into_owned();
            if name.starts_with("upload-")
                && name.ends_with(".tar.gz")
                && std::fs::remove_file(e.path()).is_ok()
            {
                removed += 1;
            }
        }
        let boxes = self.store.list_boxes(None)?;
        let fs = self.layout.fs_root();
        for (project, name, path) in two_levels(&fs.join("roots")) {
            if !boxes.iter().any(|r| r.project == project && r.name == name) {
                self.storage.delete_subvolume(&path)?;
                removed += 1;
            }
        }
        // Checkpoints of boxes that are gone, or that have no snapshot row.
        for (project, name, dir) in two_levels(&fs.join("checkpoints")) {
            let known: Vec<String> = if boxes.iter().any(|r| r.project == project && r.name == name) {
                self.store.list_snapshots(&project, &name)?.into_iter().map(|s| s.name).collect()
            } else {
                Vec::new()
            };
            for e in std::fs::read_dir(&dir).into_iter().flatten().flatten() {
                let snapshot = e.file_name().to_string_lossy().into_owned();
                if !known.contains(&snapshot) && self.storage.is_subvolume(&e.path()) {
                    self.storage.delete_subvolume(&e.path())?;
                    removed += 1;
                }
            }
            if known.is_empty() {
                let _ = std::fs::remove_dir(&dir);
            }
        }
        for (project, name, path) in two_levels(&fs.join("volumes")) {
            if self.store.get_volume(&project, &name)?.is_none() && self.storage.is_subvolume(&path) {
                tracing::warn!(project, name, "data volume subvolume without a row; removing it");
                self.storage.delete_subvolume(&path)?;
                removed += 1;
            }
        }
        if let Ok(entries) = std::fs::read_dir(self.layout.bases()) {
            for e in entries.flatten() {
                let version = e.file_name().to_string_lossy().into_owned();
                if self.store.get_base_version(&version)?.is_none() {
                    self.storage.delete_subvolume(&e.path())?;
                    removed += 1;
                }
            }
        }
        Ok(removed)
    }
}

/// The `<dir>/<a>/<b>` entries as `(a, b, path)`.
fn two_levels(dir: &std::path::Path) -> Vec<(String, String, std::path::PathBuf)> {
    let mut out = Vec::new();
    for a in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        let first = a.file_name().to_string_lossy().into_owned();
        for b in std::fs::read_dir(a.path()).into_iter().flatten().flatten() {
            out.push((first.clone(), b.file_name().to_string_lossy().into_owned(), b.path()));
        }
    }
    out
}
