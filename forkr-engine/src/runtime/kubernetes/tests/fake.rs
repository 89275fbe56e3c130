//! A small stateful Kubernetes API behind kube's mock service (`tower_test::mock::pair`).
//!
//! No cluster can run here, so the driver talks to this: it keeps Deployments, Services, Ingresses
//! and Pods as JSON, answers POST/GET/PUT/PATCH/DELETE with the status codes the API server uses
//! (201, 404, 409 with `AlreadyExists` or a stale resourceVersion), plays the Deployment
//! controller (a scale to 1 makes a pod, a scale to 0 deletes it) and streams pod watch events.
//! Every request is recorded, so tests assert the exact sequence of calls.
//!
//! Knobs: `auto_ready` (pods become Ready at once, else a test marks them), `slow_delete` (pods
//! stay terminating until a test finishes them), `pod_problem` (the status a new pod gets) and
//! `fail` (answer the next matching call with an error status).

use std::collections::BTreeMap;
use std::convert::Infallible;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};

use bytes::Bytes;
use http::{Request, Response};
use http_body::Frame;
use kube::client::Body;
use serde_json::{Value, json};
use tokio::sync::mpsc;

/// A response body fed through a channel: a whole answer, or a never-ending watch stream.
pub struct StreamBody(mpsc::UnboundedReceiver<Bytes>);

impl http_body::Body for StreamBody {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        self.0.poll_recv(cx).map(|o| o.map(|b| Ok(Frame::data(b))))
    }
}

/// One recorded request.
#[derive(Debug, Clone, PartialEq)]
pub struct Call {
    pub method: String,
    pub path: String,
    pub query: BTreeMap<String, String>,
    pub content_type: String,
    pub body: Value,
}

impl Call {
    /// `METHOD path` (the compact form tests compare sequences with).
    pub fn line(&self) -> String {
        format!("{} {}", self.method, self.path)
    }

    /// Whether this is the driver's background pod list/watch (filtered out of sequences).
    pub fn is_pod_watch(&self) -> bool {
        self.method == "GET" && self.path.ends_with("/pods")
    }
}

/// An error to answer instead of the normal response.
#[derive(Debug, Clone)]
pub struct Fail {
    pub method: &'static str,
    pub path_contains: String,
    pub code: u16,
    pub times: usize,
}

#[derive(Default)]
pub struct State {
    /// (resource plural, name) -> object.
    pub objects: BTreeMap<(String, String), Value>,
    pub pods: BTreeMap<String, Value>,
    pub calls: Vec<Call>,
    pub auto_ready: bool,
    pub slow_delete: bool,
    pub pod_problem: Option<Value>,
    pub fail: Vec<Fail>,
    rv: u64,
    pod_seq: u64,
    watchers: Vec<(String, mpsc::UnboundedSender<Bytes>)>,
}

/// The fake API server's state, shared with the test.
#[derive(Clone)]
pub struct Cluster(pub Arc<Mutex<State>>);

fn status(code: u16, reason: &str, message: &str) -> Value {
    json!({"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": if code < 300 { "Success" } else { "Failure" },
           "code": code, "reason": reason, "message": message})
}

fn percent_decode(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'+' => out.push(b' '),
            b'%' if i + 2 < b.len() => {
                let hex = std::str::from_utf8(&b[i + 1..i + 3]).unwrap_or("");
                if let Ok(v) = u8::from_str_radix(hex, 16) {
                    out.push(v);
                    i += 2;
                } else {
                    out.push(b'%');
                }
            }
            c => out.push(c),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn parse_query(q: Option<&str>) -> BTreeMap<String, String> {
    q.unwrap_or("")
        .split('&')
        .filter(|p| !p.is_empty())
        .map(|p| {
            let (k, v) = p.split_once('=').unwrap_or((p, ""));
            (percent_decode(k), percent_decode(v))
        })
        .collect()
}

fn labels_match(selector: &str, labels: &Value) -> bool {
    selector
        .split(',')
        .filter(|s| !s.is_empty())
        .all(|kv| kv.split_once('=').is_some_and(|(k, v)| labels.get(k).and_then(Value::as_str) == Some(v)))
}

/// Merges `patch` into `target` like a strategic merge patch for what the driver sends: objects
/// merge key by key, lists of objects with a `name` merge by name, `null` deletes.
pub fn merge(target: &mut Value, patch: &Value) {
    match (target, patch) {
        (Value::Object(t), Value::Object(p)) => {
            for (k, v) in p {
                if v.is_null() {
                    t.remove(k);
                } else {
                    merge(t.entry(k.clone()).or_insert(Value::Null), v);
                }
            }
        }
        (Value::Array(t), Value::Array(p)) if p.iter().all(|x| x.get("name").is_some()) && !t.is_empty() => {
            for item in p {
                match t.iter_mut().find(|x| x.get("name") == item.get("name")) {
                    Some(existing) => merge(existing, item),
                    None => t.push(item.clone()),
                }
            }
        }
        (t, p) => *t = p.clone(),
    }
}

impl State {
    fn next_rv(&mut self) -> String {
        self.rv += 1;
        self.rv.to_string()
    }

    fn emit(&mut self, kind: &str, pod: &Value) {
        let line = format!("{}\n", json!({"type": kind, "object": pod}));
        let labels = pod["metadata"]["labels"].clone();
        self.watchers
            .retain(|(sel, tx)| !labels_match(sel, &labels) || tx.send(Bytes::from(line.clone())).is_ok());
    }

    fn put_pod(&mut self, kind: &str, mut pod: Value) {
        pod["metadata"]["resourceVersion"] = json!(self.next_rv());
        let name = pod["metadata"]["name"].as_str().unwrap_or_default().to_owned();
        self.emit(kind, &pod);
        if kind == "DELETED" {
            self.pods.remove(&name);
        } else {
            self.pods.insert(name, pod);
        }
    }

    /// Marks a pod Ready (or not), as the kubelet does after its readiness probe.
    pub fn set_ready(&mut self, pod: &str, ready: bool) {
        if let Some(mut p) = self.pods.get(pod).cloned() {
            p["status"] = json!({"phase": "Running", "conditions": [
                {"type": "Ready", "status": if ready { "True" } else { "False" }}]});
            self.put_pod("MODIFIED", p);
        }
    }

    /// Binds a pod to `node` and reports its runner container's ID, as the scheduler and the
    /// kubelet do (the node exec path looks for that container on this machine).
    pub fn set_container(&mut self, pod: &str, node: &str, container_id: &str) {
        if let Some(mut p) = self.pods.get(pod).cloned() {
            p["spec"]["nodeName"] = json!(node);
            p["status"]["containerStatuses"] = json!([{
                "name": "fork", "image": "ubuntu:24.04", "imageID": "", "ready": true, "restartCount": 0,
                "containerID": container_id,
            }]);
            self.put_pod("MODIFIED", p);
        }
    }

    /// Removes a terminating pod (the kubelet is done with it).
    pub fn finish_delete(&mut self, pod: &str) {
        if let Some(p) = self.pods.get(pod).cloned() {
            self.put_pod("DELETED", p);
        }
    }

    fn delete_pod(&mut self, name: &str, grace: Option<i64>) {
        let Some(mut p) = self.pods.get(name).cloned() else { return };
        p["metadata"]["deletionTimestamp"] = json!("2025-01-01T00:00:10Z");
        if let Some(g) = grace {
            p["metadata"]["deletionGracePeriodSeconds"] = json!(g);
        }
        self.put_pod("MODIFIED", p.clone());
        if !self.slow_delete || grace == Some(0) {
            self.put_pod("DELETED", p);
        }
    }

    /// The Deployment controller: as many live pods as the Deployment wants.
    fn reconcile(&mut self, deployment: &str) {
        let dep = self.objects.get(&("deployments".into(), deployment.into())).cloned();
        let want = dep.as_ref().map_or(0, |d| d["spec"]["replicas"].as_i64().unwrap_or(1));
        let id = dep.as_ref().map(|d| d["spec"]["selector"]["matchLabels"]["forkr.dev/id"].clone());
        let id = id.unwrap_or_else(|| json!(deployment));
        let mine: Vec<String> = self
            .pods
            .iter()
            .filter(|(_, p)| {
                p["metadata"]["labels"]["forkr.dev/id"] == id && p["metadata"]["deletionTimestamp"].is_null()
            })
            .map(|(n, _)| n.clone())
            .collect();
        if want == 0 || dep.is_none() {
            for name in mine {
                self.delete_pod(&name, None);
            }
        } else if mine.is_empty() {
            let Some(d) = dep else { return };
            self.pod_seq += 1;
            let name = format!("{deployment}-{}", self.pod_seq);
            let mut pod = json!({
                "apiVersion": "v1", "kind": "Pod",
                "metadata": {"name": name, "namespace": d["metadata"]["namespace"],
                             "labels": d["spec"]["template"]["metadata"]["labels"],
                             "creationTimestamp": "2025-01-01T00:00:00Z", "uid": format!("uid-{}", self.pod_seq)},
                "spec": d["spec"]["template"]["spec"],
                "status": {"phase": "Pending", "conditions": [{"type": "Ready", "status": "False"}]},
            });
            if let Some(problem) = &self.pod_problem {
                pod["status"] = problem.clone();
            }
            self.put_pod("ADDED", pod);
            if self.auto_ready && self.pod_problem.is_none() {
                self.set_ready(&name, true);
            }
        }
    }

    fn take_failure(&mut self, method: &str, path: &str) -> Option<u16> {
        let f = self
            .fail
            .iter_mut()
            .find(|f| f.method == method && path.contains(&f.path_contains) && f.times > 0)?;
        f.times -= 1;
        Some(f.code)
    }

    /// Answers one request: (status code, body) or a watch stream.
    fn handle(&mut self, call: &Call) -> Result<(u16, Value), String> {
        if let Some(code) = self.take_failure(&call.method, &call.path) {
            return Ok((code, status(code, "Injected", "injected failure")));
        }
        let parts: Vec<&str> = call.path.trim_start_matches('/').split('/').collect();
        // [api, v1, namespaces, ns, plural, name?, sub?] or [apis, group, version, namespaces, ...]
        let rest = if parts.first() == Some(&"api") { &parts[2..] } else { &parts[3..] };
        let (plural, name, sub) = match rest {
            ["namespaces", _, plural] => (*plural, None, None),
            ["namespaces", _, plural, name] => (*plural, Some(*name), None),
            ["namespaces", _, plural, name, sub] => (*plural, Some(*name), Some(*sub)),
            _ => return Ok((404, status(404, "NotFound", "no such path"))),
        };
        let method = call.method.as_str();
        if plural == "pods" {
            return Ok(self.handle_pods(method, name, sub, call));
        }
        let key = (plural.to_owned(), name.unwrap_or_default().to_owned());
        let not_found = || (404, status(404, "NotFound", &format!("{plural} {:?} not found", key.1)));
        Ok(match (method, name, sub) {
            ("POST", None, None) => {
                let name = call.body["metadata"]["name"].as_str().unwrap_or_default().to_owned();
                let k = (plural.to_owned(), name.clone());
                if self.objects.contains_key(&k) {
                    return Ok((
                        409,
                        status(409, "AlreadyExists", &format!("{plural} {name:?} already exists")),
                    ));
                }
                let mut obj = call.body.clone();
                obj["metadata"]["resourceVersion"] = json!(self.next_rv());
                obj["metadata"]["uid"] = json!(format!("uid-{name}"));
                self.objects.insert(k, obj.clone());
                if plural == "deployments" {
                    self.reconcile(&name);
                }
                (201, obj)
            }
            ("GET", None, None) => {
                let sel = call.query.get("labelSelector").cloned().unwrap_or_default();
                let items: Vec<Value> = self
                    .objects
                    .iter()
                    .filter(|((p, _), o)| p == plural && labels_match(&sel, &o["metadata"]["labels"]))
                    .map(|(_, o)| o.clone())
                    .collect();
                (200, json!({"metadata": {"resourceVersion": self.rv.to_string()}, "items": items}))
            }
            ("GET", Some(_), None) => match self.objects.get(&key) {
                Some(o) => (200, o.clone()),
                None => not_found(),
            },
            ("PUT", Some(n), None) => {
                let Some(existing) = self.objects.get(&key) else { return Ok(not_found()) };
                if existing["metadata"]["resourceVersion"] != call.body["metadata"]["resourceVersion"] {
                    return Ok((409, status(409, "Conflict", "the object has been modified")));
                }
                let mut obj = call.body.clone();
                obj["metadata"]["resourceVersion"] = json!(self.next_rv());
                self.objects.insert(key.clone(), obj.clone());
                if plural == "deployments" {
                    self.reconcile(n);
                }
                (200, obj)
            }
            ("PATCH", Some(n), None) => {
                let Some(obj) = self.objects.get_mut(&key) else { return Ok(not_found()) };
                merge(obj, &call.body);
                let obj = obj.clone();
                if plural == "deployments" {
                    self.reconcile(n);
                }
                (200, obj)
            }
            ("PATCH", Some(n), Some("scale")) => {
                let Some(obj) = self.objects.get_mut(&key) else { return Ok(not_found()) };
                let replicas = call.body["spec"]["replicas"].clone();
                obj["spec"]["replicas"] = replicas.clone();
                self.reconcile(n);
                (
                    200,
                    json!({"apiVersion": "autoscaling/v1", "kind": "Scale", "metadata": {"name": n},
                             "spec": {"replicas": replicas}, "status": {"replicas": replicas}}),
                )
            }
            ("DELETE", Some(n), None) => {
                if self.objects.remove(&key).is_none() {
                    return Ok(not_found());
                }
                if plural == "deployments" {
                    self.reconcile(n);
                }
                (200, status(200, "", ""))
            }
            _ => (405, status(405, "MethodNotAllowed", "not supported by the fake")),
        })
    }

    fn handle_pods(
        &mut self,
        method: &str,
        name: Option<&str>,
        sub: Option<&str>,
        call: &Call,
    ) -> (u16, Value) {
        match (method, name, sub) {
            ("GET", None, None) => {
                let sel = call.query.get("labelSelector").cloned().unwrap_or_default();
                let items: Vec<Value> = self
                    .pods
                    .values()
                    .filter(|p| labels_match(&sel, &p["metadata"]["labels"]))
                    .cloned()
                    .collect();
                let rv = self.rv.to_string();
                (
                    200,
                    json!({"apiVersion": "v1", "kind": "PodList", "metadata": {"resourceVersion": rv}, "items": items}),
                )
            }
            ("DELETE", Some(n), None) => {
                if !self.pods.contains_key(n) {
                    return (404, status(404, "NotFound", "pod not found"));
                }
                let grace = call.body["gracePeriodSeconds"].as_i64();
                self.delete_pod(n, grace);
                (200, status(200, "", ""))
            }
            ("PATCH", Some(n), Some("resize")) => {
                let Some(mut pod) = self.pods.get(n).cloned() else {
                    return (404, status(404, "NotFound", "pod"));
                };
                merge(&mut pod, &call.body);
                self.put_pod("MODIFIED", pod.clone());
                (200, pod)
            }
            _ => (405, status(405, "MethodNotAllowed", "not supported by the fake")),
        }
    }

    /// The calls recorded so far, without the background pod watch, as `METHOD path` lines.
    pub fn lines(&self) -> Vec<String> {
        self.calls.iter().filter(|c| !c.is_pod_watch()).map(Call::line).collect()
    }

    /// The calls without the background pod watch.
    pub fn driver_calls(&self) -> Vec<Call> {
        self.calls.iter().filter(|c| !c.is_pod_watch()).cloned().collect()
    }
}

impl Cluster {
    pub fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.0.lock().unwrap()
    }

    /// A kube client whose requests this fake answers, and the fake.
    pub fn start() -> (kube::Client, Cluster) {
        let cluster = Cluster(Arc::new(Mutex::new(State { auto_ready: true, ..State::default() })));
        (cluster.client(), cluster)
    }

    /// Another client of the same fake cluster (a restarted server talks to the cluster its
    /// predecessor left).
    pub fn client(&self) -> kube::Client {
        let (service, mut handle) = tower_test::mock::pair::<Request<Body>, Response<StreamBody>>();
        let c = self.clone();
        tokio::spawn(async move {
            while let Some((req, send)) = handle.next_request().await {
                let (parts, body) = req.into_parts();
                let bytes = body.collect_bytes().await.unwrap_or_default();
                let call = Call {
                    method: parts.method.to_string(),
                    path: parts.uri.path().to_owned(),
                    query: parse_query(parts.uri.query()),
                    content_type: parts
                        .headers
                        .get(http::header::CONTENT_TYPE)
                        .and_then(|v| v.to_str().ok())
                        .unwrap_or_default()
                        .to_owned(),
                    body: serde_json::from_slice(&bytes).unwrap_or(Value::Null),
                };
                let (tx, rx) = mpsc::unbounded_channel();
                let mut state = c.lock();
                state.calls.push(call.clone());
                let watch =
                    call.method == "GET" && call.path.ends_with("/pods") && call.query.contains_key("watch");
                let code = if watch {
                    let sel = call.query.get("labelSelector").cloned().unwrap_or_default();
                    state.watchers.push((sel, tx));
                    200
                } else {
                    let (code, body) = state.handle(&call).unwrap_or_else(|e| (500, status(500, "Fake", &e)));
                    let _ = tx.send(Bytes::from(serde_json::to_vec(&body).unwrap_or_default()));
                    code
                };
                drop(state);
                let resp = Response::builder().status(code).body(StreamBody(rx)).unwrap();
                send.send_response(resp);
            }
        });
        kube::Client::new(service, "forks")
    }
}

#[test]
fn the_fake_merges_and_decodes_like_the_api_server() {
    let mut t = json!({"spec": {"containers": [{"name": "fork", "image": "u", "resources": {"limits": {"memory": "1Gi"}}}]}});
    merge(
        &mut t,
        &json!({"spec": {"containers": [{"name": "fork", "resources": {"limits": {"memory": "2Gi"}}}]}}),
    );
    assert_eq!(t["spec"]["containers"][0]["image"], "u");
    assert_eq!(t["spec"]["containers"][0]["resources"]["limits"]["memory"], "2Gi");
    assert_eq!(percent_decode("a%3Db%2Cc%3Dd"), "a=b,c=d");
    assert!(labels_match("a=b,c=d", &json!({"a": "b", "c": "d", "e": "f"})));
    assert!(!labels_match("a=b,c=x", &json!({"a": "b", "c": "d"})));
}
