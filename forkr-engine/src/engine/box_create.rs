//! `create`: a new box from a base, or a fork of an existing box.
//!
//! Order (each step undone if a later one fails): claim the name with the row, snapshot the root
//! (O(1), a btrfs snapshot), start PID 1, persist the running state.

use std::sync::Arc;

use super::env::{check_env, parse_cpus, parse_memory_mb};
use super::{
    DEFAULT_CPUS, DEFAULT_GRACE_SECONDS, DEFAULT_PORT, DEFAULT_RAM_MB, DEFAULT_STORAGE_GB, Engine,
    MAX_GRACE_SECONDS, blocking, now,
};
use crate::api::{BoxInfo, BoxStatus, CreateBox};
use crate::name::{DEFAULT_BASE, NameKind, validate};
use crate::store::BoxRow;
use crate::{Error, Result};

pub(crate) fn check_grace(secs: u64) -> Result<u64> {
    if secs > MAX_GRACE_SECONDS {
        return Err(Error::bad_request(
            "invalid_grace",
            format!("termination grace {secs}s is over the maximum of {MAX_GRACE_SECONDS}s"),
        ));
    }
    Ok(secs)
}

pub(crate) fn check_port(port: u16) -> Result<u16> {
    if port == 0 {
        return Err(Error::bad_request("invalid_port", "port must be between 1 and 65535"));
    }
    Ok(port)
}

impl Engine {
    /// `POST /projects/{p}/boxes`.
    pub async fn create_box(self: &Arc<Self>, project: &str, req: CreateBox) -> Result<BoxInfo> {
        validate(NameKind::Project, project)?;
        validate(NameKind::Box, &req.name)?;
        if req.base.is_some() && req.fork.is_some() {
            return Err(Error::bad_request("invalid_request", "--base cannot be used with --fork"));
        }
        check_env(&req.env)?;
        let requested = super::volumes::check_mounts(project, &req.data)?;
        let _g = self.lock_box(project, &req.name).await;

        let (mut row, source_root) = self.new_row(project, &req)?;

        // Data volumes: a fork gets copies of the source's volumes (`box-<name>-<vol>`), then the
        // requested ones. Their locks are held until the box row names them, so a volume delete
        // that runs meanwhile sees this box and refuses.
        let inherited = std::mem::take(&mut row.data);
        let (data, copies) = super::volumes::plan_box_mounts(&req.name, requested.clone(), &inherited)?;
        row.data = data;
        let names = row.data.iter().map(|m| m.name.clone()).chain(copies.iter().map(|c| c.source.clone()));
        let volume_locks = self.lock_volumes(project, names.collect::<Vec<_>>()).await;
        self.require_volumes(project, &requested)?;

        // Claim the name first: a concurrent create of the same name fails here with a 409. The
        // row says "running" from the start: if the server dies before the root exists, the next
        // start's reconcile removes the row (no root); once the root exists, it starts the box.
        self.store.insert_box(&row)?;
        crate::fault::point("create.after_row");
        if let Err(e) = self.make_volume_copies(project, &copies).await {
            let _ = self.store.delete_box(project, &req.name);
            return Err(e);
        }
        drop(volume_locks);
        let root = self.layout.root(project, &req.name);
        let made = {
            let this = self.clone();
            let (src, dst) = (source_root, root.clone());
            blocking(move || {
                if let Some(parent) = dst.parent() {
                    std::fs::create_dir_all(parent)
                        .map_err(|e| Error::io(format!("creating {}", parent.display()), e))?;
                }
                // A leftover from a crash at exactly this step would make the snapshot fail.
                if this.storage.is_subvolume(&dst) {
                    this.storage.delete_subvolume(&dst)?;
                }
                this.storage.snapshot(&src, &dst, false)
            })
            .await
        };
        let started = match made {
            Ok(()) => {
                crate::fault::point("create.after_root");
                self.start_box(&mut row).await.inspect(|_| crate::fault::point("create.after_start"))
            }
            Err(e) => Err(e),
        };
        if let Err(e) = started.and_then(|_| self.store.update_box(&row)) {
            self.undo_create(&row).await;
            self.remove_volume_copies(project, &copies).await;
            return Err(e);
        }
        Ok(self.info(&row))
    }

    /// The row a create request describes, and the subvolume its root is cloned from: the base's
    /// newest matching version, or the source box's root for a fork (whose settings, env and tags
    /// it inherits, overridden by the request). Also used by recreate for the settings.
    pub(crate) fn new_row(&self, project: &str, req: &CreateBox) -> Result<(BoxRow, std::path::PathBuf)> {
        let t = now();
        Ok(if let Some(src_name) = &req.fork {
            validate(NameKind::Box, src_name)?;
            if *src_name == req.name {
                return Err(Error::bad_request("invalid_request", "cannot fork a box from itself"));
            }
            let src = self.require_box(project, src_name)?;
            let mut env = src.env.clone();
            env.extend(req.env.clone());
            let mut tags = src.tags.clone();
            for t in &req.tags {
                if !tags.contains(t) {
                    tags.push(t.clone());
                }
            }
            let row = BoxRow {
                project: project.to_owned(),
                name: req.name.clone(),
                base: src.base.clone(),
                forked_from: Some(src.name.clone()),
                desired: BoxStatus::Running,
                pid: None,
                port: check_port(req.port.unwrap_or(src.port))?,
                cpus: req.cpu.as_deref().map(parse_cpus).transpose()?.unwrap_or(src.cpus),
                ram_mb: req.memory.as_deref().map(parse_memory_mb).transpose()?.unwrap_or(src.ram_mb),
                storage_gb: src.storage_gb,
                grace_seconds: check_grace(req.termination_grace_seconds.unwrap_or(src.grace_seconds))?,
                env,
                tags,
                data: src.data.clone(),
                created_at: t.clone(),
                updated_at: t,
                started_at: None,
            };
            (row, self.layout.root(project, src_name))
        } else {
            let base = self.resolve_base(req.base.as_deref().unwrap_or(DEFAULT_BASE))?;
            let row = BoxRow {
                project: project.to_owned(),
                name: req.name.clone(),
                base: base.version.clone(),
                forked_from: None,
                desired: BoxStatus::Running,
                pid: None,
                port: check_port(req.port.unwrap_or(DEFAULT_PORT))?,
                cpus: req.cpu.as_deref().map(parse_cpus).transpose()?.unwrap_or(DEFAULT_CPUS),
                ram_mb: req.memory.as_deref().map(parse_memory_mb).transpose()?.unwrap_or(DEFAULT_RAM_MB),
                storage_gb: DEFAULT_STORAGE_GB,
                grace_seconds: check_grace(req.termination_grace_seconds.unwrap_or(DEFAULT_GRACE_SECONDS))?,
                env: req.env.clone(),
                tags: req.tags.clone(),
                data: Vec::new(),
                created_at: t.clone(),
                updated_at: t,
                started_at: None,
            };
            (row, self.layout.base(&base.version))
        })
    }

    /// Removes everything a failed create made (best effort; reconcile catches the rest).
    async fn undo_create(self: &Arc<Self>, row: &BoxRow) {
        let mut r = row.clone();
        let _ = self.stop_running(&mut r, std::time::Duration::ZERO).await;
        let _ = self.runtime.cleanup(&super::key(&row.project, &row.name)).await;
        let this = self.clone();
        let root = self.layout.root(&row.project, &row.name);
        let _ = blocking(move || this.storage.delete_subvolume(&root)).await;
        let _ = self.store.delete_box(&row.project, &row.name);
    }
}
