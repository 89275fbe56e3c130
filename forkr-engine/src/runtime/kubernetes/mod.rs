//! The Kubernetes runtime: each box is a single-replica Deployment running one privileged runner
//! container that chroots into the box's btrfs root on the node, plus a headless Service and an
//! Ingress (documents 001, 002, 004; docs/kubernetes.md has the whole picture).
//!
//! The engine does not know which runtime it drives: it hands this driver the same [`StartSpec`]
//! as the local one, with host paths of the node the server runs on. That is also why a box is
//! pinned to that node: its root is a subvolume of the node-local btrfs.
//!
//! How the [`Runtime`] methods map to the API:
//! - `start`: create the Deployment, Service and Ingress (POST; on 409 the existing object is
//!   adopted when its labels say it is this server's box, and replaced by the desired one), scale
//!   to 1, then wait until the box's pod is Ready (bounded by [`Settings::start_timeout`]). Returns
//!   [`Running`] with the stable pseudo PID 1 (tini is PID 1 of the pod's PID namespace) and the
//!   pod's creation time.
//! - `is_alive`: the box has a pod that is Ready (its readiness probe checks that PID 1 runs
//!   chrooted into the root) and not terminating, from the pod watch ([`pods`]); no API call.
//!   The `Running` record is not compared: Kubernetes restarts pods by itself, and a box is its
//!   Deployment, not one pod.
//! - `stop`: scale to 0; pods whose grace is longer than the one asked for are deleted with the
//!   shorter grace (a forced delete does not wait); then wait until the pods are gone.
//! - `cleanup`: delete Ingress, Service and Deployment with `propagationPolicy: Foreground` (404 is
//!   success) and wait until the pods are gone, so the engine can delete the root.
//! - `set_resources`: resize the running pod in place (the `resize` subresource, Kubernetes 1.33+);
//!   where the cluster refuses, patch the Deployment's template instead (the pod restarts).
//! - `exec` and `listening`: through the node when the server runs on the box's node with
//!   `hostPID` ([`node`]: enter the runner container's init like the local driver enters a PID 1),
//!   else through the Kubernetes exec API ([`exec`]); [`Settings::exec_path`] chooses, and every
//!   fallback is logged with its reason.
//! - `expose`: re-apply Service and Ingress (`update PORT`, publish).

#[cfg(test)]
mod deploy_tests;
pub mod exec;
pub mod names;
pub mod node;
#[cfg(test)]
mod openapi;
pub mod pods;
pub mod render;

use std::fmt::Debug;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use k8s_openapi::NamespaceResourceScope;
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{Pod, Service};
use k8s_openapi::api::networking::v1::Ingress;
use kube::api::{DeleteParams, Patch, PatchParams, PostParams};
use kube::{Api, Client, Resource, ResourceExt};
use serde::Serialize;
use serde::de::DeserializeOwned;

use self::names::MANAGER;
use self::node::ExecPath;
use self::pods::{PodView, Pods};
use super::{BoxKey, ExecIo, ExecSpec, Exposure, Listening, Process, Resources, Running, Runtime, StartSpec};
use crate::{Error, ErrorKind, Result};

/// How public hosts get TLS certificates (document 002: "TLS uses a wildcard secret if the cluster
/// has one configured, otherwise cert-manager issues a per-host certificate via the cluster issuer").
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Tls {
    /// A TLS secret in the boxes' namespace holding a `*.{domain}` certificate.
    WildcardSecret(String),
    /// The name of a cert-manager `ClusterIssuer`.
    ClusterIssuer(String),
}

/// Settings of the Kubernetes driver (from the server's flags).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Settings {
    /// Namespace of the boxes' objects (`--kube-namespace`).
    pub namespace: String,
    /// The runner image (`--runner-image`, default `ubuntu:24.04`).
    pub runner_image: String,
    /// The node the server runs on, which holds the boxes' roots (`FORKR_NODE_NAME`, from the
    /// downward API `spec.nodeName`).
    pub node_name: String,
    /// Label value naming this server instance; its objects are found by it ([`names`]).
    pub instance: String,
    /// `spec.ingressClassName` of the Ingresses (`None`: the cluster's default class).
    pub ingress_class: Option<String>,
    pub tls: Tls,
    /// DNS zone of the search domains `<project>.<zone>`, `<zone>`, `<project>` (document 004).
    pub dns_zone: String,
    /// How long `start` waits for the pod to be Ready (an image pull can take a while).
    pub start_timeout: Duration,
    /// How exec, console and `ports` reach a box (`--kube-exec`, default auto).
    pub exec_path: ExecPath,
}

/// Default runner image (document 001).
pub const DEFAULT_RUNNER_IMAGE: &str = "ubuntu:24.04";
/// Default cert-manager cluster issuer.
pub const DEFAULT_CLUSTER_ISSUER: &str = "letsencrypt";
/// How long the first pod list may take at connect time.
const SYNC_TIMEOUT: Duration = Duration::from_secs(30);
/// Time allowed on top of the grace for a pod to disappear (kubelet and API round trips).
const STOP_MARGIN: Duration = Duration::from_secs(60);

impl Settings {
    /// Defaults for a server on `node_name` managing boxes in `namespace`.
    pub fn new(namespace: impl Into<String>, node_name: impl Into<String>) -> Settings {
        let node_name = node_name.into();
        Settings {
            namespace: namespace.into(),
            runner_image: DEFAULT_RUNNER_IMAGE.into(),
            instance: names::instance_for_node(&node_name),
            node_name,
            ingress_class: None,
            tls: Tls::ClusterIssuer(DEFAULT_CLUSTER_ISSUER.into()),
            dns_zone: "forks".into(),
            start_timeout: Duration::from_secs(300),
            exec_path: ExecPath::Auto,
        }
    }
}

/// Maps a kube error to a Forkr error; `doing` says what the driver was doing ("creating
/// Deployment fork-web-default-1a2b3c4d").
pub fn api_error(doing: &str, e: kube::Error) -> Error {
    match e {
        kube::Error::Api(status) => {
            let code = status.code;
            let msg = status.message.clone();
            let (kind, tag, hint) = match code {
                400 | 422 => (
                    ErrorKind::BadRequest,
                    "kube_invalid",
                    "Kubernetes rejected the object; check the box's settings and the server's runtime flags",
                ),
                401 | 403 => (
                    ErrorKind::Internal,
                    "kube_forbidden",
                    "the server's service account lacks a permission; apply deploy/kubernetes/rbac.yaml",
                ),
                404 => (ErrorKind::NotFound, "kube_not_found", "the object does not exist (any more)"),
                409 => (ErrorKind::Conflict, "kube_conflict", "the object changed meanwhile or already exists; retry"),
                _ => (
                    ErrorKind::Internal,
                    "kube_unavailable",
                    "the Kubernetes API server failed; check that it is healthy and retry",
                ),
            };
            Error::new(kind, tag, format!("{doing}: Kubernetes answered {code} ({msg}); {hint}"))
        }
        other => Error::new(
            ErrorKind::Internal,
            "kube_unavailable",
            format!("{doing}: cannot reach the Kubernetes API ({other}); check the kubeconfig or in-cluster config and the network"),
        )
        .with_source(other),
    }
}

fn is_status(e: &kube::Error, code: u16) -> bool {
    matches!(e, kube::Error::Api(s) if s.code == code)
}

/// The Kubernetes driver. Holds the API client, the settings and the pod watch.
pub struct Kubernetes {
    client: Client,
    settings: Settings,
    pods: Arc<Pods>,
    watch: tokio::task::JoinHandle<()>,
    /// Run directory of each started box (the parent of its console log), for background logs.
    run_dirs: Mutex<std::collections::HashMap<BoxKey, PathBuf>>,
    /// The inits found by the node path, by container ID: a scan of `/proc` is done once per
    /// container, later execs only check that the PID is still that process.
    inits: Mutex<std::collections::HashMap<String, node::ContainerInit>>,
}

/// Where one exec goes.
enum Route {
    /// Through the node: the runner container's init and the cgroup directories to join.
    Node { init: Running, cgroups: Vec<PathBuf> },
    /// Through the Kubernetes exec API, into this pod.
    Api(String),
}

impl Drop for Kubernetes {
    fn drop(&mut self) {
        self.watch.abort();
    }
}

impl Debug for Kubernetes {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Kubernetes").field("settings", &self.settings).finish_non_exhaustive()
    }
}

impl Kubernetes {
    /// Connects with kube's inferred configuration: the kubeconfig (`KUBECONFIG`, `~/.kube/config`)
    /// when there is one, else the in-cluster service account.
    pub async fn connect(settings: Settings) -> Result<Kubernetes> {
        let config = kube::Config::infer().await.map_err(|e| {
            Error::new(
                ErrorKind::Internal,
                "kube_config",
                format!("no Kubernetes configuration found ({e}); set KUBECONFIG or run the server in a pod with a service account"),
            )
        })?;
        let client = Client::try_from(config).map_err(|e| api_error("building the Kubernetes client", e))?;
        Self::with_client(client, settings).await
    }

    /// Builds the driver over an existing client (tests use kube's mock service) and waits for the
    /// first list of this instance's pods.
    pub async fn with_client(client: Client, settings: Settings) -> Result<Kubernetes> {
        check_settings(&settings)?;
        let pods = Arc::new(Pods::default());
        let api: Api<Pod> = Api::namespaced(client.clone(), &settings.namespace);
        let watch = pods.spawn(api, &settings.instance, SYNC_TIMEOUT).await?;
        Ok(Kubernetes { client, settings, pods, watch, run_dirs: Mutex::default(), inits: Mutex::default() })
    }

    pub fn settings(&self) -> &Settings {
        &self.settings
    }

    /// The boxes of this server instance that have a pod, as the watch sees them.
    pub fn boxes_with_pods(&self) -> Vec<BoxKey> {
        self.pods.boxes()
    }

    /// The boxes of this server instance that have a Deployment: what a server adopts after a
    /// restart or finds orphaned.
    pub async fn list_boxes(&self) -> Result<Vec<BoxKey>> {
        let lp = kube::api::ListParams::default().labels(&names::instance_selector(&self.settings.instance));
        let list =
            self.api::<Deployment>().list(&lp).await.map_err(|e| api_error("listing box Deployments", e))?;
        let mut keys: Vec<BoxKey> = list
            .items
            .iter()
            .filter_map(|d| names::owner(&self.settings.instance, d.metadata.labels.as_ref()))
            .collect();
        keys.sort_by(|a, b| (&a.project, &a.name).cmp(&(&b.project, &b.name)));
        Ok(keys)
    }

    fn api<K>(&self) -> Api<K>
    where
        K: Resource<Scope = NamespaceResourceScope>,
        <K as Resource>::DynamicType: Default,
    {
        Api::namespaced(self.client.clone(), &self.settings.namespace)
    }

    fn name(&self, key: &BoxKey) -> String {
        names::object_name(&self.settings.instance, key)
    }

    /// Creates `obj`; when it exists (409) and is this server's object for the same box, replaces it
    /// by `obj` (a full PUT, so nothing of an older shape lingers); when it belongs to someone else,
    /// refuses. Returns whether the object was adopted.
    async fn ensure<K>(&self, key: &BoxKey, obj: &K) -> Result<bool>
    where
        K: Resource<Scope = NamespaceResourceScope> + Clone + Serialize + DeserializeOwned + Debug,
        <K as Resource>::DynamicType: Default,
    {
        let api = self.api::<K>();
        let kind = K::kind(&Default::default()).into_owned();
        let name = obj.name_any();
        let pp = PostParams { field_manager: Some(MANAGER.into()), ..PostParams::default() };
        match api.create(&pp, obj).await {
            Ok(_) => return Ok(false),
            Err(e) if is_status(&e, 409) => {}
            Err(e) => return Err(api_error(&format!("creating {kind} {name}"), e)),
        }
        // Adoption: at most one retry when the object changes between GET and PUT.
        for attempt in 0..2 {
            let existing =
                api.get(&name).await.map_err(|e| api_error(&format!("reading {kind} {name}"), e))?;
            if names::owner(&self.settings.instance, existing.meta().labels.as_ref()).as_ref() != Some(key) {
                return Err(Error::conflict(
                    "kube_name_taken",
                    format!(
                        "{kind} {name} in namespace {} exists but is not Forkr's object for box {:?} of project {:?}; delete or rename it, or use another --kube-namespace",
                        self.settings.namespace, key.name, key.project
                    ),
                ));
            }
            let mut desired = obj.clone();
            desired.meta_mut().resource_version = existing.meta().resource_version.clone();
            match api.replace(&name, &pp, &desired).await {
                Ok(_) => return Ok(true),
                Err(e) if is_status(&e, 409) && attempt == 0 => continue,
                Err(e) => return Err(api_error(&format!("updating {kind} {name}"), e)),
            }
        }
        Err(Error::conflict("kube_conflict", format!("{kind} {name} keeps changing; retry")))
    }

    /// Deletes an object with foreground propagation; a missing object is success.
    async fn delete<K>(&self, name: &str) -> Result<()>
    where
        K: Resource<Scope = NamespaceResourceScope> + Clone + DeserializeOwned + Debug,
        <K as Resource>::DynamicType: Default,
    {
        let kind = K::kind(&Default::default()).into_owned();
        match self.api::<K>().delete(name, &DeleteParams::foreground()).await {
            Ok(_) => Ok(()),
            Err(e) if is_status(&e, 404) => Ok(()),
            Err(e) => Err(api_error(&format!("deleting {kind} {name}"), e)),
        }
    }

    async fn scale(&self, key: &BoxKey, replicas: i32) -> Result<()> {
        let name = self.name(key);
        let pp = PatchParams { field_manager: Some(MANAGER.into()), ..PatchParams::default() };
        let patch = Patch::Merge(serde_json::json!({ "spec": { "replicas": replicas } }));
        self.api::<Deployment>()
            .patch_scale(&name, &pp, &patch)
            .await
            .map_err(|e| api_error(&format!("scaling Deployment {name} to {replicas}"), e))?;
        Ok(())
    }

    /// Waits until the box has no pod left.
    async fn wait_gone(&self, key: &BoxKey, timeout: Duration) -> Result<()> {
        self.pods
            .wait_until(
                timeout,
                |p| p.of(key).is_empty().then_some(()),
                |p| {
                    let left: Vec<String> = p.of(key).into_iter().map(|v| v.name).collect();
                    Error::internal(format!(
                        "the pod(s) {} of box {:?} were still there {}s after stopping it; check the node's kubelet",
                        left.join(", "),
                        key.name,
                        timeout.as_secs()
                    ))
                },
            )
            .await
    }

    /// The box's live pod, or the error every exec-like call returns without one.
    fn live_pod(&self, key: &BoxKey) -> Result<PodView> {
        self.pods.alive(key).ok_or_else(|| {
            Error::conflict(
                "box_not_running",
                format!("box {:?} of project {:?} is not running; resume it first", key.name, key.project),
            )
        })
    }

    /// Chooses the way into the box for one exec (document 001: the node path when available,
    /// else the Kubernetes exec API). The choice is logged, a fallback with its reason.
    fn route(&self, key: &BoxKey) -> Result<Route> {
        let pod = self.live_pod(key)?;
        let mode = self.settings.exec_path;
        if mode == ExecPath::Api {
            return Ok(Route::Api(pod.name));
        }
        match self.node_target(&pod) {
            Ok((init, cgroups)) => {
                tracing::debug!(r#box = %key.name, project = %key.project, pod = %pod.name, pid = init.pid, "exec through the node");
                Ok(Route::Node { init, cgroups })
            }
            Err(why) if mode == ExecPath::Auto => {
                tracing::info!(r#box = %key.name, project = %key.project, pod = %pod.name, reason = %why, "node exec path unavailable; exec through the Kubernetes API");
                Ok(Route::Api(pod.name))
            }
            Err(why) => Err(Error::new(
                ErrorKind::Internal,
                "kube_node_exec_unavailable",
                format!(
                    "cannot exec into box {:?} of project {:?} through the node (--kube-exec node): {why}; run the server on the box's node with hostPID, or use --kube-exec auto",
                    key.name, key.project
                ),
            )),
        }
    }

    /// The init of the pod's runner container on this node and the cgroups an exec joins, or why
    /// the node path is not available for it.
    fn node_target(&self, pod: &PodView) -> std::result::Result<(Running, Vec<PathBuf>), String> {
        let here = &self.settings.node_name;
        if pod.node.as_deref() != Some(here.as_str()) {
            return Err(format!(
                "pod {} runs on node {}, not on this server's node {here}",
                pod.name,
                pod.node.as_deref().unwrap_or("(none)")
            ));
        }
        let status_id = pod.container_id.as_deref().ok_or_else(|| {
            format!("pod {} reports no ID for its container {}", pod.name, render::CONTAINER)
        })?;
        let id = node::container_id(status_id)
            .ok_or_else(|| format!("pod {} reports an unrecognised container ID {status_id:?}", pod.name))?;
        let init = self.init_of(id)?;
        let mountinfo = std::fs::read_to_string("/proc/self/mountinfo")
            .map_err(|e| format!("cannot read /proc/self/mountinfo: {e}"))?;
        let mounts = crate::runtime::local::cgroup::parse_mountinfo(&mountinfo);
        let cgroups = node::cgroup_dirs(&mounts, &init.cgroups, id)?;
        Ok((Running { pid: init.pid, start_time: init.start_time }, cgroups))
    }

    /// The init of container `id`: from the cache while that PID is still the same process, else
    /// from a scan of `/proc`.
    fn init_of(&self, id: &str) -> std::result::Result<node::ContainerInit, String> {
        let same = |c: &node::ContainerInit| {
            crate::runtime::local::procfs::stat(c.pid)
                .is_some_and(|st| st.start_time == c.start_time && !st.is_dead())
        };
        let mut cache = self.inits.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(c) = cache.get(id).filter(|c| same(c)) {
            return Ok(c.clone());
        }
        // Forget the inits of containers that are gone.
        cache.retain(|_, c| same(c));
        let init = node::find_init(std::path::Path::new("/proc"), id).ok_or_else(|| {
            format!(
                "no process of container {id} is visible in /proc (the server does not share the host's PID namespace: hostPID; or the container has just restarted)"
            )
        })?;
        cache.insert(id.to_owned(), init.clone());
        Ok(init)
    }
}

fn check_settings(s: &Settings) -> Result<()> {
    let bad = |what: &str, v: &str, how: &str| {
        Err(Error::bad_request("invalid_kube_setting", format!("invalid {what} {v:?}: {how}")))
    };
    if crate::name::validate(crate::name::NameKind::Project, &s.namespace).is_err() {
        return bad("Kubernetes namespace", &s.namespace, "use a DNS label such as forks");
    }
    if s.node_name.is_empty() {
        return bad(
            "node name",
            &s.node_name,
            "set FORKR_NODE_NAME to the node this server runs on (the downward API field spec.nodeName)",
        );
    }
    if !names::is_label_value(&s.instance) || s.instance.is_empty() {
        return bad("instance", &s.instance, "use at most 63 letters, digits, '-', '_' or '.'");
    }
    if s.runner_image.trim().is_empty() {
        return bad("runner image", &s.runner_image, "name an image such as ubuntu:24.04");
    }
    Ok(())
}

/// Checks what Kubernetes would otherwise reject halfway through a start, with a clear message.
fn check_start(spec: &StartSpec) -> Result<()> {
    for (what, v) in [("project", &spec.key.project), ("box", &spec.key.name)] {
        if !names::is_label_value(v) || v.is_empty() {
            return Err(Error::bad_request(
                "invalid_name",
                format!("{what} name {v:?} cannot label a Kubernetes object"),
            ));
        }
    }
    let h = &spec.hostname;
    if h.is_empty() || !h.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.')) {
        return Err(Error::bad_request(
            "invalid_hostname",
            format!("hostname {h:?} is invalid: use letters, digits, '-' and '.'"),
        ));
    }
    if !spec.root.is_absolute() {
        return Err(Error::internal(format!("the box root {} is not an absolute path", spec.root.display())));
    }
    for m in &spec.mounts {
        if !m.target.starts_with('/') || m.target.split('/').any(|c| c == "..") || !m.source.is_absolute() {
            return Err(Error::bad_request(
                "invalid_mount",
                format!("mount {} -> {} must join two absolute paths", m.source.display(), m.target),
            ));
        }
    }
    for (k, _) in &spec.env {
        let ok = !k.is_empty() && !k.contains('=') && !k.as_bytes()[0].is_ascii_digit();
        if !ok {
            return Err(Error::bad_request(
                "invalid_env",
                format!("invalid environment variable name {k:?}"),
            ));
        }
    }
    Ok(())
}

#[async_trait::async_trait]
impl Runtime for Kubernetes {
    async fn start(&self, spec: &StartSpec) -> Result<Running> {
        check_start(spec)?;
        let key = &spec.key;
        let s = &self.settings;
        if let Some(run_dir) = spec.log_path.parent() {
            self.run_dirs
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .insert(key.clone(), run_dir.to_path_buf());
        }
        self.ensure(key, &render::render_deployment(spec, s)).await?;
        self.ensure(key, &render::render_service(key, &spec.exposure, s)).await?;
        match render::render_ingress(key, &spec.exposure, s) {
            Some(ing) => {
                self.ensure(key, &ing).await?;
            }
            None => self.delete::<Ingress>(&self.name(key)).await?,
        }
        self.scale(key, 1).await?;
        let pod =
            self.pods
                .wait_until(
                    s.start_timeout,
                    |p| p.alive(key),
                    |p| {
                        let why =
                            p.of(key).into_iter().find_map(|v| v.problem).unwrap_or_else(|| {
                                "no pod was scheduled; check the Deployment's events".into()
                            });
                        Error::internal(format!(
                            "box {:?} did not become ready within {:?} on node {}: {why}",
                            key.name, s.start_timeout, s.node_name
                        ))
                    },
                )
                .await?;
        Ok(Running { pid: 1, start_time: pod.created })
    }

    fn is_alive(&self, key: &BoxKey, _run: &Running) -> bool {
        self.pods.alive(key).is_some()
    }

    async fn stop(&self, key: &BoxKey, _run: &Running, grace: Duration) -> Result<()> {
        match self.scale(key, 0).await {
            Ok(()) => {}
            // No Deployment: nothing runs (the pods, if any, are being deleted with it).
            Err(e) if e.kind() == ErrorKind::NotFound => {}
            Err(e) => return Err(e),
        }
        let secs = i64::try_from(grace.as_secs()).unwrap_or(i64::MAX);
        for pod in self.pods.of(key) {
            if pod.grace_seconds.is_none_or(|g| g > secs) {
                let dp = DeleteParams {
                    grace_period_seconds: u32::try_from(secs).ok(),
                    ..DeleteParams::default()
                };
                match self.api::<Pod>().delete(&pod.name, &dp).await {
                    Ok(_) => {}
                    Err(e) if is_status(&e, 404) => {}
                    Err(e) => return Err(api_error(&format!("deleting pod {}", pod.name), e)),
                }
            }
        }
        self.wait_gone(key, grace + STOP_MARGIN).await
    }

    async fn exec(&self, key: &BoxKey, _run: &Running, spec: ExecSpec) -> Result<Process> {
        let pod = match self.route(key)? {
            Route::Node { init, cgroups } => {
                return crate::runtime::local::exec::exec_in(&init, &cgroups, spec).await;
            }
            Route::Api(pod) => pod,
        };
        let run_dir = match &spec.io {
            ExecIo::Detached { log } => {
                let known = self.run_dirs.lock().unwrap_or_else(|p| p.into_inner()).get(key).cloned();
                // After a server restart the box was started by an earlier process: the engine's
                // layout puts the log in `<run dir>/bg/`.
                known.or_else(|| log.parent().and_then(|bg| bg.parent()).map(PathBuf::from))
            }
            _ => None,
        };
        exec::exec(&self.api::<Pod>(), &pod, run_dir.as_deref(), spec).await
    }

    async fn set_resources(&self, key: &BoxKey, resources: &Resources) -> Result<()> {
        let patch = Patch::Strategic(serde_json::json!({
            "spec": { "containers": [{
                "name": render::CONTAINER,
                "resources": render::resource_requirements(resources),
            }]}
        }));
        let pp = PatchParams { field_manager: Some(MANAGER.into()), ..PatchParams::default() };
        if let Some(pod) = self.pods.alive(key) {
            match self.api::<Pod>().patch_resize(&pod.name, &pp, &patch).await {
                Ok(_) => return Ok(()),
                // No resize subresource (before 1.33, or the feature is off) or a resize the
                // kubelet cannot do in place: fall back to the template (restarts the pod).
                Err(e) if [400, 404, 405, 422].iter().any(|c| is_status(&e, *c)) => {
                    tracing::warn!(box = %key.name, error = %e, "in-place resize refused; updating the Deployment, which restarts the box");
                }
                Err(e) => return Err(api_error(&format!("resizing pod {}", pod.name), e)),
            }
        }
        let name = self.name(key);
        let patch = Patch::Strategic(serde_json::json!({
            "spec": { "template": { "spec": { "containers": [{
                "name": render::CONTAINER,
                "resources": render::resource_requirements(resources),
            }]}}}
        }));
        self.api::<Deployment>()
            .patch(&name, &pp, &patch)
            .await
            .map_err(|e| api_error(&format!("updating the resources of Deployment {name}"), e))?;
        Ok(())
    }

    async fn cleanup(&self, key: &BoxKey) -> Result<()> {
        let name = self.name(key);
        self.delete::<Ingress>(&name).await?;
        self.delete::<Service>(&name).await?;
        self.delete::<Deployment>(&name).await?;
        self.run_dirs.lock().unwrap_or_else(|p| p.into_inner()).remove(key);
        // The engine deletes the root next: no pod may still have it mounted.
        self.wait_gone(key, STOP_MARGIN).await
    }

    async fn listening(&self, key: &BoxKey, _run: &Running) -> Result<Vec<Listening>> {
        match self.route(key)? {
            Route::Node { init, .. } => node::listening(init.pid),
            Route::Api(pod) => exec::listening(&self.api::<Pod>(), &pod).await,
        }
    }

    async fn expose(&self, key: &BoxKey, exposure: &Exposure) -> Result<()> {
        let s = &self.settings;
        self.ensure(key, &render::render_service(key, exposure, s)).await?;
        match render::render_ingress(key, exposure, s) {
            Some(ing) => self.ensure(key, &ing).await.map(|_| ()),
            None => self.delete::<Ingress>(&self.name(key)).await,
        }
    }
}

#[cfg(test)]
mod tests;
