//! Wiring: from the server's settings to a running engine (provision btrfs, open metadata, pick the
//! runtime, reconcile), and the `teardown` that undoes what a data dir holds on this host.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::Context;
use forkr_engine::engine::{Config, Engine};
use forkr_engine::runtime::Runtime;
use forkr_engine::runtime::kubernetes::{self, Kubernetes};
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

/// Which runtime drives the boxes (`--runtime`).
pub enum RuntimeChoice {
    /// Linux namespaces on this machine, started through the `forkr-shim` helper.
    Local { shim: PathBuf },
    /// A Deployment per box in a Kubernetes cluster (kubeconfig or in-cluster config).
    Kubernetes(kubernetes::Settings),
}

/// Provisions storage, opens the store, builds the local runtime and reconciles.
pub async fn open_engine(config: Config, image_size: u64, shim: PathBuf) -> anyhow::Result<Arc<Engine>> {
    open_engine_with(config, image_size, RuntimeChoice::Local { shim }).await
}

/// Provisions storage, opens the store, builds the chosen runtime and reconciles.
pub async fn open_engine_with(
    config: Config,
    image_size: u64,
    choice: RuntimeChoice,
) -> anyhow::Result<Arc<Engine>> {
    let layout = Layout::new(&config.data_dir);
    std::fs::create_dir_all(layout.data_dir())
        .with_context(|| format!("creating data dir {}", layout.data_dir().display()))?;
    // The runtime first: a Kubernetes server without a reachable cluster fails before it mounts
    // anything.
    let runtime: Arc<dyn Runtime> = match choice {
        RuntimeChoice::Local { shim } => {
            let instance = instance(layout.data_dir());
            if let Some(net) = &config.network {
                let host = local::net::HostNetwork::new(&instance, net.subnet, net.nat)?;
                local::net::setup_host(&instance, &host).context("setting up the box network")?;
                tracing::info!(bridge = %host.bridge, subnet = %net.subnet, nat = net.nat, "box network ready");
            }
            Arc::new(Local::new(LocalConfig { shim, instance })?)
        }
        RuntimeChoice::Kubernetes(settings) => {
            let k = Kubernetes::connect(settings).await.context("connecting to Kubernetes")?;
            tracing::info!(settings = ?k.settings(), "Kubernetes runtime ready");
            // The per-exec choice is logged by the driver; this says which choices it may make.
            tracing::info!(
                exec_path = %k.settings().exec_path,
                "exec and console: {}",
                match k.settings().exec_path {
                    kubernetes::node::ExecPath::Auto =>
                        "through this node when the box's container is found here (hostPID), else the Kubernetes exec API",
                    kubernetes::node::ExecPath::Node => "through this node only (--kube-exec node)",
                    kubernetes::node::ExecPath::Api => "through the Kubernetes exec API only (--kube-exec api)",
                }
            );
            Arc::new(k)
        }
    };
    let p = provision::ensure_btrfs(&layout, image_size).context("provisioning btrfs storage")?;
    tracing::info!(?p, "storage ready");
    let store = Store::open(&layout.db()).context("opening the metadata database")?;
    let engine = Arc::new(Engine::new(config, Arc::new(Btrfs::new()), runtime, store));
    let r = engine.reconcile().await.context("reconciling boxes")?;
    tracing::info!(?r, "reconciled");
    Ok(engine)
}

/// The deployment domain: required with the Kubernetes runtime (box hosts and certificates hang
/// off it), `localhost` as the local-development default otherwise.
pub fn resolve_domain(domain: Option<String>, kubernetes: bool) -> anyhow::Result<String> {
    match domain.map(|d| d.trim().to_owned()).filter(|d| !d.is_empty()) {
        Some(d) => Ok(d),
        None if kubernetes => anyhow::bail!(
            "FORKR_DOMAIN is required with --runtime kubernetes: set it (or --domain) to the domain boxes are published under, e.g. forkr.example.com"
        ),
        None => Ok("localhost".into()),
    }
}

/// Stops every box process of this data dir, removes their cgroups, unmounts the btrfs image and
/// releases its loop device. The data stays on disk; a later start re-mounts it and resumes boxes.
pub fn teardown(data_dir: &Path) -> anyhow::Result<()> {
    let layout = Layout::new(data_dir);
    local::kill_instance(&instance(data_dir)).context("stopping box processes")?;
    provision::teardown(&layout).context("unmounting storage")?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::resolve_domain;

    #[test]
    fn the_domain_is_required_on_kubernetes_only() {
        assert_eq!(resolve_domain(None, false).unwrap(), "localhost");
        assert_eq!(resolve_domain(Some("a.example".into()), true).unwrap(), "a.example");
        let err = resolve_domain(None, true).unwrap_err().to_string();
        assert!(err.contains("FORKR_DOMAIN is required with --runtime kubernetes"), "{err}");
        assert!(resolve_domain(Some("  ".into()), true).is_err());
    }
}
