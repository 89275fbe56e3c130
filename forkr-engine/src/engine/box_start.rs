//! Starting and stopping a box's PID 1 (used by create, resume, restore, reconcile and delete).

use std::time::Duration;

use super::env::{box_environment, boxes_env_file, resolv_conf};
use super::{Engine, blocking, fs, key, now};
use crate::api::BoxStatus;
use crate::runtime::{BindMount, Exposure, NetAttach, Resources, StartSpec};
use crate::store::BoxRow;
use crate::{Error, Result};

/// The line appended to `/etc/bash.bashrc` so login and interactive shells see `/etc/boxes-env`.
const BASHRC_SOURCE: &str = "[ -r /etc/boxes-env ] && . /etc/boxes-env";

impl Engine {
    /// The box's port and public hosts, for runtimes that route traffic themselves (Kubernetes
    /// Service and Ingress): the box's own `{box}.{domain}` host, then its published hosts.
    pub(crate) fn exposure(&self, row: &BoxRow) -> Exposure {
        let url = self.box_url(&row.project, &row.name);
        let host = url.strip_prefix("https://").unwrap_or(&url).to_owned();
        let mut hosts = vec![host];
        match self.store.box_publishes(&row.project, &row.name) {
            Ok(published) => {
                for h in published {
                    if !hosts.contains(&h) {
                        hosts.push(h);
                    }
                }
            }
            Err(e) => {
                tracing::warn!(project = %row.project, name = %row.name, error = %e, "could not read published hosts")
            }
        }
        Exposure { port: row.port, hosts }
    }

    pub(crate) fn resources(&self, row: &BoxRow) -> Resources {
        Resources {
            memory_bytes: Some(row.ram_mb * 1024 * 1024),
            cpus: Some(row.cpus),
            pids_max: Some(self.config.pids_max),
        }
    }

    /// Makes sure the per-project system volumes exist (`/box/proj`, `/home`). The first boxes of
    /// a project may start in parallel: the one that loses the race to create a volume finds it
    /// made by the winner, which is success.
    pub(super) fn ensure_project_volumes(&self, project: &str) -> Result<()> {
        for dir in [self.layout.box_proj(project), self.layout.home(project)] {
            if !self.storage.is_subvolume(&dir) {
                if let Some(parent) = dir.parent() {
                    std::fs::create_dir_all(parent)
                        .map_err(|e| Error::io(format!("creating {}", parent.display()), e))?;
                }
                match self.storage.create_subvolume(&dir) {
                    Err(_) if self.storage.is_subvolume(&dir) => {}
                    other => other?,
                }
            }
        }
        Ok(())
    }

    /// Writes the host-side runtime files and `/etc/boxes-env`, then builds the start spec.
    fn prepare_start(&self, row: &BoxRow, network: Option<NetAttach>) -> Result<StartSpec> {
        let (project, name) = (row.project.as_str(), row.name.as_str());
        self.ensure_project_volumes(project)?;
        let run = self.layout.run_dir(project, name);
        // /tmp-like state of the previous run (bg logs) is wiped on every start, as /tmp and /run are.
        let _ = std::fs::remove_dir_all(run.join("bg"));
        std::fs::create_dir_all(run.join("bg"))
            .map_err(|e| Error::io(format!("creating {}", run.display()), e))?;
        let hosts = run.join("hosts");
        let resolv = run.join("resolv.conf");
        let hostname = run.join("hostname");
        std::fs::write(&hostname, format!("{name}.{project}\n"))
            .map_err(|e| Error::io("writing hostname", e))?;
        std::fs::write(&hosts, self.hosts_for(project, name)?).map_err(|e| Error::io("writing hosts", e))?;
        let host_resolv = std::fs::read_to_string("/etc/resolv.conf").unwrap_or_default();
        std::fs::write(&resolv, resolv_conf(&host_resolv, project))
            .map_err(|e| Error::io("writing resolv.conf", e))?;

        let root = self.layout.root(project, name);
        fs::write_file(&root, "/etc/boxes-env", boxes_env_file(&self.config, row).as_bytes(), 0o644, true)?;
        if let Ok((bashrc, mode)) = fs::read_file(&root, "/etc/bash.bashrc", 1 << 20) {
            let text = String::from_utf8_lossy(&bashrc);
            if !text.lines().any(|l| l.trim() == BASHRC_SOURCE) {
                let mut new = text.into_owned();
                if !new.is_empty() && !new.ends_with('\n') {
                    new.push('\n');
                }
                new.push_str(BASHRC_SOURCE);
                new.push('\n');
                fs::write_file(&root, "/etc/bash.bashrc", new.as_bytes(), mode, false)?;
            }
        }

        let mut mounts = vec![
            BindMount {
                source: self.layout.box_bin(),
                target: "/box/bin".into(),
                read_only: false,
                file: false,
            },
            BindMount {
                source: self.layout.box_all(),
                target: "/box/all".into(),
                read_only: false,
                file: false,
            },
            BindMount {
                source: self.layout.box_proj(project),
                target: "/box/proj".into(),
                read_only: false,
                file: false,
            },
            BindMount {
                source: self.layout.home(project),
                target: "/home".into(),
                read_only: false,
                file: false,
            },
            BindMount { source: hosts, target: "/etc/hosts".into(), read_only: true, file: true },
            BindMount { source: resolv, target: "/etc/resolv.conf".into(), read_only: true, file: true },
            BindMount { source: hostname, target: "/etc/hostname".into(), read_only: true, file: true },
        ];
        // Data volumes after the system ones (a volume may sit below /home, never on it).
        mounts.extend(self.data_bind_mounts(row)?);
        Ok(StartSpec {
            key: key(project, name),
            hostname: format!("{name}.{project}"),
            root,
            mounts,
            env: box_environment(&self.config, row),
            resources: self.resources(row),
            log_path: run.join("console.log"),
            network,
            exposure: self.exposure(row),
            grace: Duration::from_secs(row.grace_seconds),
        })
    }

    /// Starts PID 1 and records it in `row` (not yet persisted).
    pub(crate) async fn start_box(self: &std::sync::Arc<Self>, row: &mut BoxRow) -> Result<()> {
        // Held while the volumes are mounted, so a volume restore cannot swap one out underneath.
        let _volumes = self.lock_volumes(&row.project, row.data.iter().map(|m| m.name.clone())).await;
        // The address first: the box's own /etc/hosts, written next, lists it.
        let network = self.attach_network(row)?;
        let spec = {
            let this = self.clone();
            let r = row.clone();
            blocking(move || this.prepare_start(&r, network)).await
        };
        let started = match spec {
            Ok(spec) => self.runtime.start(&spec).await,
            Err(e) => Err(e),
        };
        let run = match started {
            Ok(run) => run,
            Err(e) => {
                if network.is_some() {
                    let _ = self.detach_network(&row.project, &row.name);
                }
                return Err(e);
            }
        };
        if network.is_some() {
            self.network_changed();
        }
        row.pid = Some((run.pid, run.start_time));
        row.desired = BoxStatus::Running;
        let t = now();
        row.started_at = Some(t.clone());
        row.updated_at = t;
        Ok(())
    }

    /// Stops PID 1 (if it runs) within `grace` and records the box as stopped (not yet persisted).
    pub(crate) async fn stop_running(&self, row: &mut BoxRow, grace: Duration) -> Result<()> {
        if let Some(run) = self.running(row) {
            self.runtime.stop(&key(&row.project, &row.name), &run, grace).await?;
        }
        if self.config.network.is_some() {
            self.detach_network(&row.project, &row.name)?;
            self.network_changed();
        }
        row.pid = None;
        row.desired = BoxStatus::Stopped;
        row.updated_at = now();
        Ok(())
    }

    /// `POST …/stop`.
    pub async fn stop_box(
        self: &std::sync::Arc<Self>,
        project: &str,
        name: &str,
    ) -> Result<crate::api::BoxInfo> {
        let _g = self.lock_box(project, name).await;
        let mut row = self.require_box(project, name)?;
        let grace = Duration::from_secs(row.grace_seconds);
        self.stop_running(&mut row, grace).await?;
        self.store.update_box(&row)?;
        Ok(self.info(&row))
    }

    /// `POST …/resume`: starts a stopped (or exited) box with a fresh PID 1; a running box is left as
    /// it is.
    pub async fn resume_box(
        self: &std::sync::Arc<Self>,
        project: &str,
        name: &str,
    ) -> Result<crate::api::BoxInfo> {
        let _g = self.lock_box(project, name).await;
        let mut row = self.require_box(project, name)?;
        if self.running(&row).is_none() {
            self.start_box(&mut row).await?;
            self.store.update_box(&row)?;
        }
        Ok(self.info(&row))
    }
}
