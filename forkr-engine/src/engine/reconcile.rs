//! The pass run at every server start: re-attach to boxes that kept running while the server was
//! down, restart boxes that should run but whose PID 1 is gone (host reboot), and remove what a crash
//! left half-made (scratch subvolumes, roots or bases without a row).

use std::sync::Arc;

use super::{Engine, blocking};
use crate::Result;
use crate::api::BoxStatus;

/// What the reconcile pass did, for the server's start-up log.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Reconciled {
    pub attached: usize,
    pub restarted: usize,
    pub failed: usize,
    pub removed_orphans: usize,
}

impl Engine {
    /// Brings storage, processes and metadata back in step. Idempotent.
    pub async fn reconcile(self: &Arc<Self>) -> Result<Reconciled> {
        let mut out = Reconciled::default();
        // 1. Scratch and orphans.
        let this = self.clone();
        out.removed_orphans = blocking(move || this.remove_orphans()).await?;
        // 2. Processes.
        for mut row in self.store.list_boxes(None)? {
            if row.desired != BoxStatus::Running {
                continue;
            }
            if self.running(&row).is_some() {
                out.attached += 1;
                continue;
            }
            let _g = self.lock_box(&row.project, &row.name).await;
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

    fn remove_orphans(&self) -> Result<usize> {
        let mut removed = std::fs::read_dir(self.layout.scratch()).map(|d| d.count()).unwrap_or(0);
        crate::storage::provision::clear_scratch(&self.layout)?;
        let boxes = self.store.list_boxes(None)?;
        let roots = self.layout.fs_root().join("roots");
        if let Ok(projects) = std::fs::read_dir(&roots) {
            for p in projects.flatten() {
                let project = p.file_name().to_string_lossy().into_owned();
                for b in std::fs::read_dir(p.path()).into_iter().flatten().flatten() {
                    let name = b.file_name().to_string_lossy().into_owned();
                    if !boxes.iter().any(|r| r.project == project && r.name == name) {
                        self.storage.delete_subvolume(&b.path())?;
                        removed += 1;
                    }
                }
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
