//! `delete`: stop, remove checkpoints and root, forget the box. Idempotent.

use std::sync::Arc;
use std::time::Duration;

use super::{Engine, blocking, key};
use crate::api::Deleted;
use crate::{Error, Result};

impl Engine {
    /// `DELETE /projects/{p}/boxes/{b}`. Without `force`, a running box is a 409 `fork_running`.
    /// A box that does not exist is reported as `deleted: false`, not as an error.
    pub async fn delete_box(self: &Arc<Self>, project: &str, name: &str, force: bool) -> Result<Deleted> {
        crate::name::validate(crate::name::NameKind::Box, name)?;
        let guard = self.lock_box(project, name).await;
        let Some(mut row) = self.store.get_box(project, name)? else {
            return Ok(Deleted { name: name.to_owned(), deleted: false, cleanup_pending: false });
        };
        if self.running(&row).is_some() && !force {
            return Err(Error::conflict("fork_running", "box is running"));
        }
        // Forced delete does not wait for a graceful exit (like `docker rm -f`).
        self.stop_running(&mut row, Duration::ZERO).await?;
        self.runtime.cleanup(&key(project, name)).await?;
        crate::fault::point("delete.after_stop");
        let removed = self.remove_box_files(project, name).await;
        crate::fault::point("delete.after_files");
        // The row goes last: if file removal failed, the row (now stopped) is deleted anyway and the
        // leftovers are retried in the background and by the next reconcile, which removes roots
        // that have no row.
        self.store.delete_box(project, name)?;
        // Its names leave the other boxes' /etc/hosts, its hosts the proxy.
        self.network_changed();
        drop(guard);
        self.forget_lock(project, name);
        let cleanup_pending = removed.is_err();
        if let Err(e) = removed {
            tracing::warn!(project, name, error = %e, "box files not fully removed; retrying in the background");
            let this = self.clone();
            let (p, n) = (project.to_owned(), name.to_owned());
            tokio::spawn(async move {
                for attempt in 1..=5u32 {
                    tokio::time::sleep(Duration::from_secs(attempt as u64)).await;
                    if this.remove_box_files(&p, &n).await.is_ok() {
                        break;
                    }
                }
            });
        }
        Ok(Deleted { name: name.to_owned(), deleted: true, cleanup_pending })
    }

    /// Deletes a box's checkpoints, root and host-side run directory.
    pub(crate) async fn remove_box_files(self: &Arc<Self>, project: &str, name: &str) -> Result<()> {
        let this = self.clone();
        let (project, name) = (project.to_owned(), name.to_owned());
        blocking(move || {
            let checkpoints = this.layout.checkpoints(&project, &name);
            if let Ok(entries) = std::fs::read_dir(&checkpoints) {
                for e in entries.flatten() {
                    this.storage.delete_subvolume(&e.path())?;
                }
                let _ = std::fs::remove_dir(&checkpoints);
            }
            this.storage.delete_subvolume(&this.layout.root(&project, &name))?;
            let run = this.layout.run_dir(&project, &name);
            if run.exists() {
                std::fs::remove_dir_all(&run)
                    .map_err(|e| Error::io(format!("removing {}", run.display()), e))?;
            }
            Ok(())
        })
        .await
    }
}
