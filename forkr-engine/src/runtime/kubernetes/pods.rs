//! The driver's view of its pods: one watch on every pod this server instance manages, folded into
//! a per-box index that the synchronous [`Runtime::is_alive`](crate::runtime::Runtime::is_alive)
//! reads without an API call, and that `start`/`stop` wait on.
//!
//! The list-then-watch protocol (resource versions, re-lists after `410 Gone`, bookmarks, backoff)
//! is kube's [`watcher`]; this module only keeps the index and wakes the waiters. Being the single
//! source of truth matters: once `start` has seen its pod Ready here, `is_alive` says so too.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures_util::StreamExt;
use k8s_openapi::api::core::v1::Pod;
use kube::Api;
use kube::runtime::WatchStreamExt;
use kube::runtime::watcher::{self, Event};

use super::names;
use crate::runtime::BoxKey;
use crate::{Error, ErrorKind, Result};

/// What the driver needs to know about one pod.
#[derive(Debug, Clone, PartialEq)]
pub struct PodView {
    pub name: String,
    /// The pod's Ready condition is True: PID 1 runs chrooted in the root (the readiness probe).
    pub ready: bool,
    /// The pod has a deletion timestamp: it is going away.
    pub terminating: bool,
    /// `spec.terminationGracePeriodSeconds` (what the kubelet will wait before SIGKILL).
    pub grace_seconds: Option<i64>,
    /// Why the pod is not running, when Kubernetes says (`ImagePullBackOff: ...`, unschedulable...).
    pub problem: Option<String>,
    /// Creation time, seconds since the epoch (0 when unknown).
    pub created: u64,
    /// The node the pod is bound to (`spec.nodeName`).
    pub node: Option<String>,
    /// The runner container's ID as its status reports it (`containerd://<id>`): how the node
    /// path finds the box's processes.
    pub container_id: Option<String>,
}

impl PodView {
    fn from_pod(pod: &Pod) -> Option<(BoxKey, PodView)> {
        let labels = pod.metadata.labels.as_ref()?;
        let key = BoxKey {
            project: labels.get(names::LABEL_PROJECT)?.clone(),
            name: labels.get(names::LABEL_BOX)?.clone(),
        };
        let status = pod.status.as_ref();
        let ready = status
            .and_then(|s| s.conditions.as_ref())
            .is_some_and(|c| c.iter().any(|c| c.type_ == "Ready" && c.status == "True"));
        let view = PodView {
            name: pod.metadata.name.clone()?,
            ready,
            terminating: pod.metadata.deletion_timestamp.is_some(),
            grace_seconds: pod.spec.as_ref().and_then(|s| s.termination_grace_period_seconds),
            problem: problem(pod),
            created: pod
                .metadata
                .creation_timestamp
                .as_ref()
                .map(|t| u64::try_from(t.0.as_second()).unwrap_or(0))
                .unwrap_or(0),
            node: pod.spec.as_ref().and_then(|s| s.node_name.clone()),
            container_id: status
                .and_then(|s| s.container_statuses.as_ref())
                .and_then(|cs| cs.iter().find(|c| c.name == super::render::CONTAINER))
                .and_then(|c| c.container_id.clone()),
        };
        Some((key, view))
    }

    /// Serves traffic and exec: Ready and not on its way out.
    pub fn alive(&self) -> bool {
        self.ready && !self.terminating
    }
}

/// The most telling reason a pod does not run: a waiting or terminated container, else a false
/// pod condition (e.g. `PodScheduled: 0/3 nodes are available...`).
fn problem(pod: &Pod) -> Option<String> {
    let status = pod.status.as_ref()?;
    let join = |reason: Option<&String>, message: Option<&String>| match (reason, message) {
        (Some(r), Some(m)) => Some(format!("{r}: {m}")),
        (Some(r), None) => Some(r.clone()),
        (None, Some(m)) => Some(m.clone()),
        (None, None) => None,
    };
    for cs in status.container_statuses.iter().flatten() {
        let Some(state) = &cs.state else { continue };
        if let Some(w) = &state.waiting
            && let Some(p) = join(w.reason.as_ref(), w.message.as_ref())
        {
            return Some(p);
        }
        if let Some(t) = &state.terminated {
            let exit = format!("exited with code {}", t.exit_code);
            return Some(
                join(t.reason.as_ref(), t.message.as_ref()).map_or(exit.clone(), |p| format!("{p} ({exit})")),
            );
        }
    }
    for c in status.conditions.iter().flatten() {
        if c.status == "False"
            && c.type_ != "Ready"
            && c.type_ != "ContainersReady"
            && let Some(p) = join(c.reason.as_ref(), c.message.as_ref())
        {
            return Some(format!("{}: {p}", c.type_));
        }
    }
    None
}

#[derive(Default)]
struct Index {
    /// Pods by box, then by pod name.
    boxes: HashMap<BoxKey, BTreeMap<String, PodView>>,
    /// Pods listed since the last `Init`, swapped in at `InitDone` (a re-list replaces everything).
    relist: Option<HashMap<BoxKey, BTreeMap<String, PodView>>>,
    /// The first complete list has arrived.
    synced: bool,
    /// The last watch error, for messages while not synced.
    last_error: Option<String>,
}

impl Index {
    fn insert(map: &mut HashMap<BoxKey, BTreeMap<String, PodView>>, pod: &Pod) {
        if let Some((key, view)) = PodView::from_pod(pod) {
            map.entry(key).or_default().insert(view.name.clone(), view);
        }
    }

    fn remove(&mut self, pod: &Pod) {
        if let Some((key, view)) = PodView::from_pod(pod)
            && let Some(pods) = self.boxes.get_mut(&key)
        {
            pods.remove(&view.name);
            if pods.is_empty() {
                self.boxes.remove(&key);
            }
        }
    }

    fn apply(&mut self, event: Event<Pod>) {
        match event {
            Event::Init => self.relist = Some(HashMap::new()),
            Event::InitApply(pod) => Self::insert(self.relist.get_or_insert_default(), &pod),
            Event::InitDone => {
                self.boxes = self.relist.take().unwrap_or_default();
                self.synced = true;
                self.last_error = None;
            }
            Event::Apply(pod) => Self::insert(&mut self.boxes, &pod),
            Event::Delete(pod) => self.remove(&pod),
        }
    }
}

/// The shared index plus a channel that ticks on every change.
pub struct Pods {
    index: Mutex<Index>,
    changed: tokio::sync::watch::Sender<u64>,
}

impl Default for Pods {
    fn default() -> Self {
        Pods { index: Mutex::new(Index::default()), changed: tokio::sync::watch::Sender::new(0) }
    }
}

impl Pods {
    fn lock(&self) -> std::sync::MutexGuard<'_, Index> {
        self.index.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn tick(&self) {
        self.changed.send_modify(|n| *n = n.wrapping_add(1));
    }

    /// Folds one watcher event into the index.
    pub fn apply(&self, event: Event<Pod>) {
        self.lock().apply(event);
        self.tick();
    }

    fn error(&self, e: &watcher::Error) {
        self.lock().last_error = Some(e.to_string());
        self.tick();
    }

    /// The pods of a box, by name.
    pub fn of(&self, key: &BoxKey) -> Vec<PodView> {
        self.lock().boxes.get(key).map(|m| m.values().cloned().collect()).unwrap_or_default()
    }

    /// The box's pod that is Ready and not terminating, if any.
    pub fn alive(&self, key: &BoxKey) -> Option<PodView> {
        self.lock().boxes.get(key)?.values().find(|p| p.alive()).cloned()
    }

    /// Every box with at least one pod.
    pub fn boxes(&self) -> Vec<BoxKey> {
        self.lock().boxes.keys().cloned().collect()
    }

    /// Waits until `done` holds for the index (checked at once and after every change), or fails
    /// after `timeout` with the message `on_timeout` builds from the state at that moment.
    pub async fn wait_until<T>(
        &self,
        timeout: Duration,
        mut done: impl FnMut(&Pods) -> Option<T>,
        on_timeout: impl FnOnce(&Pods) -> Error,
    ) -> Result<T> {
        let mut rx = self.changed.subscribe();
        let wait = async {
            loop {
                if let Some(t) = done(self) {
                    return Some(t);
                }
                if rx.changed().await.is_err() {
                    return None;
                }
            }
        };
        match tokio::time::timeout(timeout, wait).await {
            Ok(Some(t)) => Ok(t),
            Ok(None) => Err(Error::internal("the Kubernetes pod watch stopped")),
            Err(_) => Err(on_timeout(self)),
        }
    }

    /// Starts the watch of every pod of `instance` in `api`'s namespace and waits (up to
    /// `timeout`) for the first complete list, so that `is_alive` is right from the first call.
    /// The returned task runs until aborted; errors are retried with kube's default backoff.
    pub async fn spawn(
        self: &Arc<Self>,
        api: Api<Pod>,
        instance: &str,
        timeout: Duration,
    ) -> Result<tokio::task::JoinHandle<()>> {
        let config = watcher::Config::default().labels(&names::instance_selector(instance));
        let pods = self.clone();
        let task = tokio::spawn(async move {
            let mut events = std::pin::pin!(watcher::watcher(api, config).default_backoff());
            while let Some(item) = events.next().await {
                match item {
                    Ok(event) => pods.apply(event),
                    Err(e) => {
                        tracing::warn!(error = %e, "Kubernetes pod watch failed; retrying");
                        pods.error(&e);
                    }
                }
            }
        });
        let synced = self
            .wait_until(
                timeout,
                |p| p.lock().synced.then_some(()),
                |p| {
                    let why = p.lock().last_error.clone().unwrap_or_else(|| "no answer".into());
                    Error::new(
                        ErrorKind::Internal,
                        "kube_unavailable",
                        format!(
                            "could not list the pods of this server in Kubernetes within {}s ({why}); check the API server address and that the service account may list and watch pods",
                            timeout.as_secs()
                        ),
                    )
                },
            )
            .await;
        if let Err(e) = synced {
            task.abort();
            return Err(e);
        }
        Ok(task)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pod(name: &str, bx: &str, ready: bool, terminating: bool) -> Pod {
        serde_json::from_value(serde_json::json!({
            "metadata": {
                "name": name,
                "labels": {"forkr.dev/project": "p", "forkr.dev/box": bx},
                "creationTimestamp": "2025-01-02T03:04:05Z",
                "deletionTimestamp": if terminating { Some("2025-01-02T03:05:00Z") } else { None },
            },
            "spec": {"containers": [{"name": "fork"}], "terminationGracePeriodSeconds": 10},
            "status": {"conditions": [{"type": "Ready", "status": if ready { "True" } else { "False" }}]},
        }))
        .unwrap()
    }

    fn key(b: &str) -> BoxKey {
        BoxKey { project: "p".into(), name: b.into() }
    }

    #[test]
    fn the_index_follows_events_and_relists() {
        let pods = Pods::default();
        pods.apply(Event::Init);
        pods.apply(Event::InitApply(pod("a-1", "a", true, false)));
        assert!(pods.alive(&key("a")).is_none(), "not visible before InitDone");
        pods.apply(Event::InitDone);
        let a = pods.alive(&key("a")).unwrap();
        assert_eq!((a.name.as_str(), a.grace_seconds, a.created), ("a-1", Some(10), 1_735_787_045));
        pods.apply(Event::Apply(pod("a-1", "a", true, true)));
        assert!(pods.alive(&key("a")).is_none(), "a terminating pod is not alive");
        assert_eq!(pods.of(&key("a")).len(), 1);
        pods.apply(Event::Apply(pod("b-1", "b", false, false)));
        assert!(pods.alive(&key("b")).is_none());
        pods.apply(Event::Delete(pod("a-1", "a", true, true)));
        assert!(pods.of(&key("a")).is_empty());
        // A re-list replaces everything: b's pod vanished meanwhile, c's appeared.
        pods.apply(Event::Init);
        pods.apply(Event::InitApply(pod("c-1", "c", true, false)));
        pods.apply(Event::InitDone);
        assert_eq!(pods.boxes(), vec![key("c")]);
        // Pods without our labels are ignored.
        let mut stray = pod("x", "x", true, false);
        stray.metadata.labels = None;
        pods.apply(Event::Apply(stray));
        assert_eq!(pods.boxes(), vec![key("c")]);
    }

    #[test]
    fn problems_say_why_a_pod_does_not_run() {
        let mut p = pod("a-1", "a", false, false);
        assert_eq!(problem(&p), None);
        p.status = serde_json::from_value(serde_json::json!({
            "conditions": [{"type": "PodScheduled", "status": "False", "reason": "Unschedulable",
                            "message": "0/3 nodes are available"}]
        }))
        .unwrap();
        assert_eq!(problem(&p).as_deref(), Some("PodScheduled: Unschedulable: 0/3 nodes are available"));
        p.status = serde_json::from_value(serde_json::json!({
            "containerStatuses": [{"name": "fork", "ready": false, "restartCount": 3, "image": "u", "imageID": "",
                "state": {"waiting": {"reason": "ImagePullBackOff", "message": "Back-off pulling image \"u\""}}}]
        }))
        .unwrap();
        assert_eq!(problem(&p).as_deref(), Some("ImagePullBackOff: Back-off pulling image \"u\""));
        p.status = serde_json::from_value(serde_json::json!({
            "containerStatuses": [{"name": "fork", "ready": false, "restartCount": 1, "image": "u", "imageID": "",
                "state": {"terminated": {"exitCode": 127, "reason": "Error"}}}]
        }))
        .unwrap();
        assert_eq!(problem(&p).as_deref(), Some("Error (exited with code 127)"));
    }

    #[tokio::test]
    async fn waiters_wake_on_changes_and_time_out_with_a_message() {
        let pods = Arc::new(Pods::default());
        let p2 = pods.clone();
        let waiter = tokio::spawn(async move {
            p2.wait_until(
                Duration::from_secs(5),
                |p| p.alive(&key("a")).map(|v| v.name),
                |_| Error::internal("t"),
            )
            .await
        });
        tokio::time::sleep(Duration::from_millis(20)).await;
        pods.apply(Event::Apply(pod("a-1", "a", false, false)));
        pods.apply(Event::Apply(pod("a-1", "a", true, false)));
        assert_eq!(waiter.await.unwrap().unwrap(), "a-1");
        let err = pods
            .wait_until(Duration::from_millis(30), |p| p.alive(&key("zzz")), |_| Error::internal("gave up"))
            .await
            .unwrap_err();
        assert_eq!(err.message(), "gave up");
    }
}
