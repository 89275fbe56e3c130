//! Wiring: from the server's settings to a running engine (provision btrfs, open metadata, pick the
//! runtime, reconcile), and the `teardown` that undoes what a data dir holds on this host.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::Context;
use forkr_engine::engine::{Config, Engine};
use forkr_engine::runtime::local::{self, Local, LocalConfig};
use forkr_engine::storage::btrfs::Btrfs;
use forkr_engine::storage::layout::Layout;
use forkr_engine::storage::provision;
use forkr_engine::store::Store;

/// The cgroup instance name of a data dir: servers with different data dirs (tests run in parallel)
/// never touch each other's boxes.
fn instance(data_dir: &Path) -> String {
    let canonical = std::fs::canonicalize(data_dir).unwrap_or_else(|_| data_dir.to_path_buf());
    local::instance_for_data_dir(&canonical)
}

/// The `forkr-shim` helper: beside this executable.
pub fn default_shim() -> anyhow::Result<PathBuf> {
    Ok(Local::shim_next_to_current_exe()?)
}

/// Provisions storage, opens the store, builds the local runtime and reconciles.
pub async fn open_engine(config: Config, image_size: u64, shim: PathBuf) -> anyhow::Result<Arc<Engine>> {
    let layout = Layout::new(&config.data_dir);
    std::fs::create_dir_all(layout.data_dir())
        .with_context(|| format!("creating data dir {}", layout.data_dir().display()))?;
    let p = provision::ensure_btrfs(&layout, image_size).context("provisioning btrfs storage")?;
    tracing::info!(?p, "storage ready");
    let store = Store::open(&layout.db()).context("opening the metadata database")?;
    let runtime = Local::new(LocalConfig { shim, instance: instance(layout.data_dir()) })?;
    let engine = Arc::new(Engine::new(config, Arc::new(Btrfs::new()), Arc::new(runtime), store));
    let r = engine.reconcile().await.context("reconciling boxes")?;
    tracing::info!(?r, "reconciled");
    Ok(engine)
}

/// Stops every box process of this data dir, removes their cgroups, unmounts the btrfs image and
/// releases its loop device. The data stays on disk; a later start re-mounts it and resumes boxes.
pub fn teardown(data_dir: &Path) -> anyhow::Result<()> {
    let layout = Layout::new(data_dir);
    local::kill_instance(&instance(data_dir)).context("stopping box processes")?;
    provision::teardown(&layout).context("unmounting storage")?;
    Ok(())
}
