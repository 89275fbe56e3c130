//! `update`: only the documented allowlist (document 002) acts; everything else is dropped.

use std::sync::Arc;

use super::box_create::{check_grace, check_port};
use super::env::{parse_cpus, parse_memory_mb};
use super::{Engine, key, now};
use crate::api::{BoxInfo, UpdateBox};
use crate::{Error, Result};

impl Engine {
    /// `PATCH /projects/{p}/boxes/{b}`. PORT, CPU, MEMORY, TERMINATION_GRACE_PERIOD_SECONDS or
    /// TERMINATION_GRACE_SECONDS, and tags; anything else is silently ignored. With none of them:
    /// 400 `no_updates`. CPU and memory apply to a running box at once; grace on the next stop.
    pub async fn update_box(self: &Arc<Self>, project: &str, name: &str, req: UpdateBox) -> Result<BoxInfo> {
        let _g = self.lock_box(project, name).await;
        let mut row = self.require_box(project, name)?;
        let mut changed = false;
        for (k, v) in &req.settings {
            match k.as_str() {
                "PORT" => {
                    let port: u16 = v.trim().parse().map_err(|_| {
                        Error::bad_request(
                            "invalid_port",
                            format!("invalid PORT {v:?}: use a number from 1 to 65535"),
                        )
                    })?;
                    row.port = check_port(port)?;
                }
                "CPU" => row.cpus = parse_cpus(v)?,
                "MEMORY" => row.ram_mb = parse_memory_mb(v)?,
                "TERMINATION_GRACE_PERIOD_SECONDS" | "TERMINATION_GRACE_SECONDS" => {
                    let secs: u64 = v.trim().parse().map_err(|_| {
                        Error::bad_request(
                            "invalid_grace",
                            format!("invalid {k} {v:?}: use whole seconds, at most 86400"),
                        )
                    })?;
                    row.grace_seconds = check_grace(secs)?;
                }
                _ => continue,
            }
            changed = true;
        }
        if let Some(tags) = &req.tags {
            row.tags = tags.clone();
            changed = true;
        }
        if !changed {
            return Err(Error::bad_request("no_updates", "no updates provided"));
        }
        if self.running(&row).is_some() {
            self.runtime.set_resources(&key(project, name), &self.resources(&row)).await?;
        }
        if req.settings.contains_key("PORT") {
            self.runtime.expose(&key(project, name), &self.exposure(&row)).await?;
        }
        row.updated_at = now();
        self.store.update_box(&row)?;
        if req.settings.contains_key("PORT") {
            // The built-in proxy routes to the new port from the next request on.
            self.refresh_routes()?;
        }
        Ok(self.info(&row))
    }
}
