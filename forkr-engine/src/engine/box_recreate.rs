//! `recreate`: the keep-root replacement of declarative apply. Settings that only take effect when
//! PID 1 starts (env, data mounts) cannot change in place, so the box is stopped, given the settings
//! a create with the same request would give it, and started again on the same root. The root, its
//! base and fork lineage, its snapshots and its creation time stay.

use std::sync::Arc;
use std::time::Duration;

use super::env::check_env;
use super::{Engine, now};
use crate::api::{BoxInfo, CreateBox};
use crate::name::{NameKind, validate};
use crate::{Error, Result};

impl Engine {
    /// `POST /projects/{p}/boxes/{b}/recreate`.
    pub async fn recreate_box(
        self: &Arc<Self>,
        project: &str,
        name: &str,
        req: CreateBox,
    ) -> Result<BoxInfo> {
        validate(NameKind::Project, project)?;
        validate(NameKind::Box, name)?;
        if req.name != name {
            return Err(Error::bad_request(
                "invalid_request",
                format!("the request names box {:?} but the path names {name:?}", req.name),
            ));
        }
        if req.base.is_some() && req.fork.is_some() {
            return Err(Error::bad_request("invalid_request", "--base cannot be used with --fork"));
        }
        check_env(&req.env)?;
        let requested = super::volumes::check_mounts(project, &req.data)?;
        let _g = self.lock_box(project, name).await;
        let old = self.require_box(project, name)?;
        let (fresh, _) = self.new_row(project, &req)?;

        // A fork's private volume copies (`box-<name>-<vol>`) belong to this box and stay mounted.
        let copy_prefix = format!("box-{name}-");
        let mut data: Vec<_> =
            old.data.iter().filter(|m| m.name.starts_with(&copy_prefix)).cloned().collect();
        for m in requested.iter() {
            if data.iter().any(|d| d.path == m.path || d.name == m.name) {
                return Err(Error::bad_request(
                    "invalid_mount",
                    format!("mount {}={} clashes with the box's own volume copy", m.name, m.path),
                ));
            }
            data.push(m.clone());
        }
        let names: Vec<String> = data.iter().map(|m| m.name.clone()).collect();
        let volumes = self.lock_volumes(project, names).await;
        self.require_volumes(project, &requested)?;

        let mut row = old.clone();
        self.stop_running(&mut row, Duration::from_secs(old.grace_seconds)).await?;
        row.env = fresh.env;
        row.tags = fresh.tags;
        row.port = fresh.port;
        row.cpus = fresh.cpus;
        row.ram_mb = fresh.ram_mb;
        row.grace_seconds = fresh.grace_seconds;
        row.data = data;
        row.updated_at = now();
        self.store.update_box(&row)?;
        // start_box takes the volume locks itself (they are not reentrant).
        drop(volumes);
        self.start_box(&mut row).await?;
        self.store.update_box(&row)?;
        Ok(self.info(&row))
    }
}
