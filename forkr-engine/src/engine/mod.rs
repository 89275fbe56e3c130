//! The engine facade: every operation the server offers, keeping storage, runtime and metadata in
//! step. One file per verb (`box_create.rs`, `box_delete.rs`, ...), like youki's libcontainer.
//!
//! Invariants:
//! - A box row exists before its root subvolume is made and outlives it on delete, so a crash leaves
//!   at worst a row without a root or a root without a row, both repaired by [`Engine::reconcile`].
//! - Operations on one box are serialised by a per-box async lock; different boxes run in parallel.
//! - The engine never speaks HTTP; it returns [`crate::Error`]s whose kind the server maps to a status.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use crate::api::{BoxInfo, BoxStatus};
use crate::runtime::{BoxKey, Running, Runtime};
use crate::storage::Storage;
use crate::storage::layout::Layout;
use crate::store::{BoxRow, Store};
use crate::{Error, Result};

mod bases;
/// The base importer's tarball extraction, for the cargo-fuzz target `tar_import` (feature
/// `fuzzing` only): the real function, so the fuzzer tests exactly what uploads go through.
#[cfg(feature = "fuzzing")]
pub fn extract_tarball_for_fuzzing(tarball: &std::path::Path, dst: &std::path::Path) -> crate::Result<()> {
    bases::extract_tarball(tarball, dst)
}
mod box_create;
mod box_delete;
mod box_exec;
mod box_files;
mod box_recreate;
mod box_start;
mod box_update;
mod diff;
mod env;
pub mod fs;
pub mod network;
pub mod publish;
mod reconcile;
mod snapshots;
pub mod users;
mod volumes;
mod workspace;
pub use reconcile::Reconciled;

pub use bases::BaseImport;
pub use box_exec::ExecMode;

/// Settings of an engine instance (from the server's flags and environment).
#[derive(Debug, Clone)]
pub struct Config {
    pub data_dir: PathBuf,
    /// The deployment domain (`FORKR_DOMAIN`); box URLs are `https://{box}.{domain}`.
    pub domain: String,
    /// The API URL injected into boxes as `FORKR_API_URL` (default `https://forks.<domain>`).
    pub api_url: Option<String>,
    /// Injected as `FORKR_API_IP` / `FORKR_NODE_IP`.
    pub node_ip: String,
    /// Injected `FORKR_INSECURE=true` when set.
    pub insecure: bool,
    /// Default pids limit per box.
    pub pids_max: u64,
    /// The box network (a bridge address per box); `None`: boxes get only a loopback interface.
    pub network: Option<network::NetworkConfig>,
}

impl Config {
    pub fn new(data_dir: impl Into<PathBuf>) -> Config {
        Config {
            data_dir: data_dir.into(),
            domain: "localhost".into(),
            api_url: None,
            node_ip: "127.0.0.1".into(),
            insecure: false,
            pids_max: 4096,
            network: None,
        }
    }
}

/// Default box settings (document 004: memory request/limit; CPU request only).
pub const DEFAULT_PORT: u16 = 8080;
pub const DEFAULT_CPUS: f64 = 1.0;
pub const DEFAULT_RAM_MB: u64 = 2048;
pub const DEFAULT_STORAGE_GB: f64 = 10.0;
pub const DEFAULT_GRACE_SECONDS: u64 = 10;
pub const MAX_GRACE_SECONDS: u64 = 86_400;

/// The facade the server drives.
pub struct Engine {
    pub(crate) config: Config,
    pub(crate) layout: Layout,
    pub(crate) storage: Arc<dyn Storage>,
    pub(crate) runtime: Arc<dyn Runtime>,
    pub(crate) store: Store,
    locks: Mutex<HashMap<BoxKey, Arc<tokio::sync::Mutex<()>>>>,
    pub(crate) net: network::NetState,
}

pub(crate) fn now() -> String {
    chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
}

pub(crate) fn key(project: &str, name: &str) -> BoxKey {
    BoxKey { project: project.to_owned(), name: name.to_owned() }
}

/// `n` random bytes from the kernel, hex-encoded (tokens, lock ids).
pub fn random_hex(n: usize) -> Result<String> {
    let mut buf = vec![0u8; n];
    getrandom::fill(&mut buf).map_err(|e| Error::internal(format!("no randomness from the kernel: {e}")))?;
    Ok(hex::encode(buf))
}

/// Runs blocking work (btrfs ioctls, tree walks, file I/O) off the async workers.
pub(crate) async fn blocking<T: Send + 'static>(f: impl FnOnce() -> Result<T> + Send + 'static) -> Result<T> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| Error::internal(format!("background task failed: {e}")))?
}

impl Engine {
    /// Builds an engine over already-provisioned storage, an opened store and a runtime.
    pub fn new(config: Config, storage: Arc<dyn Storage>, runtime: Arc<dyn Runtime>, store: Store) -> Engine {
        let layout = Layout::new(&config.data_dir);
        Engine {
            config,
            layout,
            storage,
            runtime,
            store,
            locks: Mutex::new(HashMap::new()),
            net: network::NetState::default(),
        }
    }

    pub fn layout(&self) -> &Layout {
        &self.layout
    }

    pub fn config(&self) -> &Config {
        &self.config
    }

    /// The async lock serialising operations on one box.
    pub(crate) async fn lock_box(&self, project: &str, name: &str) -> tokio::sync::OwnedMutexGuard<()> {
        let m = {
            let mut map = self.locks.lock().unwrap_or_else(|p| p.into_inner());
            map.entry(key(project, name)).or_default().clone()
        };
        m.lock_owned().await
    }

    /// Drops the lock entry of a box that no longer exists (keeps the map from growing forever).
    pub(crate) fn forget_lock(&self, project: &str, name: &str) {
        let mut map = self.locks.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(m) = map.get(&key(project, name)) {
            // Only the map and the caller's guard hold it: nobody else waits.
            if Arc::strong_count(m) <= 2 {
                map.remove(&key(project, name));
            }
        }
    }

    /// The project a project token (see [`Store::create_token`]) is limited to; `None` for any
    /// other string.
    pub fn token_project(&self, token: &str) -> Result<Option<String>> {
        self.store.token_project(token)
    }

    pub(crate) fn require_box(&self, project: &str, name: &str) -> Result<BoxRow> {
        self.store.get_box(project, name)?.ok_or_else(|| Error::not_found("box", name))
    }

    /// The live PID 1 of a box, if it runs.
    pub(crate) fn running(&self, row: &BoxRow) -> Option<Running> {
        let (pid, start_time) = row.pid?;
        let run = Running { pid, start_time };
        self.runtime.is_alive(&key(&row.project, &row.name), &run).then_some(run)
    }

    /// The observable status: desired state corrected by what actually runs.
    pub(crate) fn status(&self, row: &BoxRow) -> BoxStatus {
        match (row.desired, self.running(row)) {
            (_, Some(_)) => BoxStatus::Running,
            (BoxStatus::Running, None) => BoxStatus::Exited,
            (s, None) => s,
        }
    }

    pub(crate) fn box_url(&self, project: &str, name: &str) -> String {
        if project == crate::name::DEFAULT_PROJECT {
            format!("https://{name}.{}", self.config.domain)
        } else {
            format!("https://{name}.{project}.{}", self.config.domain)
        }
    }

    pub(crate) fn info(&self, row: &BoxRow) -> BoxInfo {
        let status = self.status(row);
        BoxInfo {
            name: row.name.clone(),
            project: row.project.clone(),
            status,
            base: row.base.clone(),
            forked_from: row.forked_from.clone(),
            url: self.box_url(&row.project, &row.name),
            port: row.port,
            created_at: row.created_at.clone(),
            updated_at: row.updated_at.clone(),
            started_at: if status == BoxStatus::Running { row.started_at.clone() } else { None },
            published: self.store.box_publishes(&row.project, &row.name).unwrap_or_default(),
            tags: row.tags.clone(),
            data: row.data.clone(),
            env: row.env.clone(),
            cpus: row.cpus,
            ram_mb: row.ram_mb,
            storage_gb: row.storage_gb,
            termination_grace_seconds: row.grace_seconds,
            pid: if status == BoxStatus::Running { row.pid.map(|p| p.0) } else { None },
        }
    }

    /// `GET /projects/{p}/boxes`.
    pub fn list_boxes(&self, project: &str) -> Result<Vec<BoxInfo>> {
        Ok(self.store.list_boxes(Some(project))?.iter().map(|r| self.info(r)).collect())
    }

    /// `GET /projects/{p}/boxes/{b}`.
    pub fn get_box(&self, project: &str, name: &str) -> Result<BoxInfo> {
        Ok(self.info(&self.require_box(project, name)?))
    }
}
