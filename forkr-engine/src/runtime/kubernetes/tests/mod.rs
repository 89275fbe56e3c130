//! The driver against kube's mock service, answered by a small fake API server (`fake.rs`): the
//! exact API calls of start, stop, resume, delete, set_resources and expose; 404 and 409 handling;
//! the readiness watch; errors.

mod engine;
mod fake;

use std::path::PathBuf;
use std::time::Duration;

use serde_json::json;

use self::fake::{Call, Cluster, Fail};
use super::*;
use crate::runtime::BindMount;

const NS: &str = "/namespaces/forks";

fn settings() -> Settings {
    let mut s = Settings::new("forks", "node-a");
    s.start_timeout = Duration::from_secs(10);
    s
}

async fn driver() -> (Kubernetes, Cluster) {
    let (client, cluster) = Cluster::start();
    let k = Kubernetes::with_client(client, settings()).await.unwrap();
    (k, cluster)
}

fn key(name: &str) -> BoxKey {
    BoxKey { project: "proj".into(), name: name.into() }
}

fn spec(name: &str) -> StartSpec {
    let run = PathBuf::from(format!("/var/lib/forkr/run/proj/{name}"));
    StartSpec {
        key: key(name),
        hostname: format!("{name}.proj"),
        root: format!("/var/lib/forkr/fs/roots/proj/{name}").into(),
        mounts: vec![
            BindMount {
                source: "/var/lib/forkr/fs/box-bin".into(),
                target: "/box/bin".into(),
                read_only: false,
                file: false,
            },
            BindMount { source: run.join("hosts"), target: "/etc/hosts".into(), read_only: true, file: true },
            BindMount {
                source: run.join("hostname"),
                target: "/etc/hostname".into(),
                read_only: true,
                file: true,
            },
        ],
        env: vec![("PATH".into(), "/usr/bin:/bin".into()), ("BOX_NAME".into(), name.into())],
        resources: Resources { memory_bytes: Some(2 << 30), cpus: Some(1.0), pids_max: Some(4096) },
        log_path: run.join("console.log"),
        network: None,
        exposure: Exposure { port: 8080, hosts: vec![format!("{name}.proj.example.com")] },
        grace: Duration::from_secs(10),
    }
}

fn name(b: &str) -> String {
    names::object_name("node-a", &key(b))
}

fn deployments() -> String {
    format!("/apis/apps/v1{NS}/deployments")
}
fn services() -> String {
    format!("/api/v1{NS}/services")
}
fn ingresses() -> String {
    format!("/apis/networking.k8s.io/v1{NS}/ingresses")
}
fn pods() -> String {
    format!("/api/v1{NS}/pods")
}

/// Starts `b` with pods that become Ready at once, then forgets the calls.
async fn started(k: &Kubernetes, c: &Cluster, b: &str) -> Running {
    let run = k.start(&spec(b)).await.unwrap();
    c.lock().calls.clear();
    run
}

/// Waits (briefly) for a condition on the fake cluster.
async fn eventually(c: &Cluster, what: &str, f: impl Fn(&fake::State) -> bool) {
    for _ in 0..500 {
        if f(&c.lock()) {
            return;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!("timed out waiting for {what}");
}

fn by_line<'a>(calls: &'a [Call], line: &str) -> &'a Call {
    calls.iter().find(|c| c.line() == line).unwrap_or_else(|| panic!("no call {line} in {calls:#?}"))
}

#[tokio::test]
async fn connecting_lists_then_watches_this_instances_pods() {
    let (_k, c) = driver().await;
    eventually(&c, "the watch", |s| s.calls.len() >= 2).await;
    let calls = c.lock().calls.clone();
    let selector = "app.kubernetes.io/managed-by=forkr,forkr.dev/instance=node-a";
    assert_eq!(calls[0].line(), format!("GET {}", pods()));
    assert_eq!(calls[0].query.get("labelSelector").map(String::as_str), Some(selector));
    assert!(!calls[0].query.contains_key("watch"));
    assert_eq!(calls[1].line(), format!("GET {}", pods()));
    assert_eq!(calls[1].query.get("watch").map(String::as_str), Some("true"));
    assert_eq!(calls[1].query.get("labelSelector").map(String::as_str), Some(selector));
    assert!(calls[1].query.contains_key("resourceVersion"), "{:?}", calls[1].query);
}

#[tokio::test]
async fn start_creates_deployment_service_ingress_scales_to_one_and_waits_until_ready() {
    let (k, c) = driver().await;
    c.lock().calls.clear();
    c.lock().auto_ready = false;
    let k = std::sync::Arc::new(k);
    let k2 = k.clone();
    let start = tokio::spawn(async move { k2.start(&spec("web")).await });
    eventually(&c, "the pod", |s| !s.pods.is_empty()).await;
    tokio::time::sleep(Duration::from_millis(50)).await;
    assert!(!start.is_finished(), "start returned before the pod was Ready");
    let run0 = Running { pid: 1, start_time: 0 };
    assert!(!k.is_alive(&key("web"), &run0));
    let pod = c.lock().pods.keys().next().cloned().unwrap();
    c.lock().set_ready(&pod, true);
    let run = start.await.unwrap().unwrap();
    assert_eq!(run, Running { pid: 1, start_time: 1_735_689_600 });
    assert!(k.is_alive(&key("web"), &run));

    let n = name("web");
    let calls = c.lock().driver_calls();
    assert_eq!(
        calls.iter().map(Call::line).collect::<Vec<_>>(),
        [
            format!("POST {}", deployments()),
            format!("POST {}", services()),
            format!("POST {}", ingresses()),
            format!("PATCH {}/{n}/scale", deployments()),
        ]
    );
    for call in &calls {
        assert_eq!(call.query.get("fieldManager").map(String::as_str), Some("forkr"), "{call:?}");
    }
    let d = &calls[0].body;
    assert_eq!(d["kind"], "Deployment");
    assert_eq!(d["metadata"]["name"], n.as_str());
    assert_eq!(d["spec"]["replicas"], 1);
    assert_eq!(d["spec"]["strategy"]["type"], "Recreate");
    let ctr = &d["spec"]["template"]["spec"]["containers"][0];
    assert_eq!(ctr["name"], "fork");
    assert_eq!(ctr["image"], "ubuntu:24.04");
    assert_eq!(ctr["securityContext"]["privileged"], true);
    assert_eq!(
        d["spec"]["template"]["spec"]["affinity"]["nodeAffinity"]["requiredDuringSchedulingIgnoredDuringExecution"]
            ["nodeSelectorTerms"][0]["matchFields"][0]["values"][0],
        "node-a"
    );
    assert_eq!(calls[1].body["spec"]["clusterIP"], "None");
    assert_eq!(calls[2].body["spec"]["rules"][0]["host"], "web.proj.example.com");
    assert_eq!(calls[3].body, json!({"spec": {"replicas": 1}}));
    assert_eq!(calls[3].content_type, "application/merge-patch+json");
}

#[tokio::test]
async fn stop_scales_to_zero_and_waits_for_the_pod_to_go() {
    let (k, c) = driver().await;
    let run = started(&k, &c, "web").await;
    c.lock().slow_delete = true;
    let k = std::sync::Arc::new(k);
    let k2 = k.clone();
    let stop = tokio::spawn(async move { k2.stop(&key("web"), &run, Duration::from_secs(10)).await });
    eventually(&c, "the pod terminating", |s| {
        s.pods.values().any(|p| !p["metadata"]["deletionTimestamp"].is_null())
    })
    .await;
    tokio::time::sleep(Duration::from_millis(50)).await;
    assert!(!stop.is_finished(), "stop returned while the pod was still terminating");
    assert!(!k.is_alive(&key("web"), &run), "a terminating pod is not alive");
    let pod = c.lock().pods.keys().next().cloned().unwrap();
    c.lock().finish_delete(&pod);
    stop.await.unwrap().unwrap();
    // Same grace as the pod's: no pod delete, the kubelet applies terminationGracePeriodSeconds.
    let calls = c.lock().driver_calls();
    assert_eq!(
        calls.iter().map(Call::line).collect::<Vec<_>>(),
        [format!("PATCH {}/{}/scale", deployments(), name("web"))]
    );
    assert_eq!(calls[0].body, json!({"spec": {"replicas": 0}}));
    assert_eq!(calls[0].query.get("fieldManager").map(String::as_str), Some("forkr"));
}

#[tokio::test]
async fn a_forced_stop_deletes_the_pod_without_grace() {
    let (k, c) = driver().await;
    let run = started(&k, &c, "web").await;
    c.lock().slow_delete = true;
    let pod = c.lock().pods.keys().next().cloned().unwrap();
    k.stop(&key("web"), &run, Duration::ZERO).await.unwrap();
    let calls = c.lock().driver_calls();
    assert_eq!(
        calls.iter().map(Call::line).collect::<Vec<_>>(),
        [format!("PATCH {}/{}/scale", deployments(), name("web")), format!("DELETE {}/{pod}", pods())]
    );
    assert_eq!(calls[1].body["gracePeriodSeconds"], 0);
    assert!(c.lock().pods.is_empty());
}

#[tokio::test]
async fn resume_adopts_the_existing_objects_and_scales_to_one() {
    let (k, c) = driver().await;
    let run = started(&k, &c, "web").await;
    k.stop(&key("web"), &run, Duration::from_secs(10)).await.unwrap();
    let before = c.lock().objects.clone();
    c.lock().calls.clear();
    let run = k.start(&spec("web")).await.unwrap();
    assert!(k.is_alive(&key("web"), &run));
    let n = name("web");
    let calls = c.lock().driver_calls();
    assert_eq!(
        calls.iter().map(Call::line).collect::<Vec<_>>(),
        [
            format!("POST {}", deployments()),
            format!("GET {}/{n}", deployments()),
            format!("PUT {}/{n}", deployments()),
            format!("POST {}", services()),
            format!("GET {}/{n}", services()),
            format!("PUT {}/{n}", services()),
            format!("POST {}", ingresses()),
            format!("GET {}/{n}", ingresses()),
            format!("PUT {}/{n}", ingresses()),
            format!("PATCH {}/{n}/scale", deployments()),
        ]
    );
    // The replace carries the resourceVersion it read (optimistic concurrency) and the manager.
    let put = by_line(&calls, &format!("PUT {}/{n}", deployments()));
    let old_rv = &before[&("deployments".to_owned(), n.clone())]["metadata"]["resourceVersion"];
    assert_eq!(&put.body["metadata"]["resourceVersion"], old_rv);
    assert_eq!(put.query.get("fieldManager").map(String::as_str), Some("forkr"));
    assert_eq!(calls[9].body, json!({"spec": {"replicas": 1}}));
}

#[tokio::test]
async fn a_changed_object_between_read_and_replace_is_read_again() {
    let (k, c) = driver().await;
    started(&k, &c, "web").await;
    let n = name("web");
    c.lock().fail.push(Fail { method: "PUT", path_contains: format!("services/{n}"), code: 409, times: 1 });
    k.start(&spec("web")).await.unwrap();
    let lines = c.lock().lines();
    let svc: Vec<&String> = lines.iter().filter(|l| l.contains("/services")).collect();
    assert_eq!(
        svc,
        [
            &format!("POST {}", services()),
            &format!("GET {}/{n}", services()),
            &format!("PUT {}/{n}", services()),
            &format!("GET {}/{n}", services()),
            &format!("PUT {}/{n}", services()),
        ]
    );
}

#[tokio::test]
async fn objects_of_someone_else_are_not_adopted() {
    let (k, c) = driver().await;
    let n = name("web");
    c.lock().objects.insert(
        ("deployments".into(), n.clone()),
        json!({"apiVersion": "apps/v1", "kind": "Deployment",
               "metadata": {"name": n, "namespace": "forks", "resourceVersion": "7", "labels": {"app": "theirs"}},
               "spec": {"selector": {"matchLabels": {"app": "theirs"}},
                        "template": {"metadata": {"labels": {"app": "theirs"}}, "spec": {"containers": [{"name": "x"}]}}}}),
    );
    let err = k.start(&spec("web")).await.unwrap_err();
    assert_eq!((err.kind(), err.code()), (ErrorKind::Conflict, "kube_name_taken"));
    assert!(err.message().contains("not Forkr's object"), "{}", err.message());
    let lines = c.lock().lines();
    assert_eq!(lines, [format!("POST {}", deployments()), format!("GET {}/{n}", deployments())]);
    // Another Forkr instance's box of the same name is not ours either.
    let mut other = serde_json::to_value(render::render_deployment(&spec("web"), &settings())).unwrap();
    other["metadata"]["labels"]["forkr.dev/instance"] = json!("node-b");
    other["metadata"]["resourceVersion"] = json!("8");
    c.lock().objects.insert(("deployments".into(), n.clone()), other);
    let err = k.start(&spec("web")).await.unwrap_err();
    assert_eq!(err.code(), "kube_name_taken");
}

#[tokio::test]
async fn delete_removes_ingress_service_and_deployment_in_the_foreground() {
    let (k, c) = driver().await;
    started(&k, &c, "web").await;
    k.cleanup(&key("web")).await.unwrap();
    let n = name("web");
    let calls = c.lock().driver_calls();
    assert_eq!(
        calls.iter().map(Call::line).collect::<Vec<_>>(),
        [
            format!("DELETE {}/{n}", ingresses()),
            format!("DELETE {}/{n}", services()),
            format!("DELETE {}/{n}", deployments())
        ]
    );
    for call in &calls {
        assert_eq!(call.body["propagationPolicy"], "Foreground", "{call:?}");
    }
    assert!(c.lock().objects.is_empty() && c.lock().pods.is_empty());
    assert!(!k.is_alive(&key("web"), &Running { pid: 1, start_time: 0 }));
}

#[tokio::test]
async fn deleting_what_is_already_gone_succeeds() {
    let (k, c) = driver().await;
    c.lock().calls.clear();
    k.cleanup(&key("never")).await.unwrap();
    assert_eq!(c.lock().lines().len(), 3, "three DELETEs answered 404");
    // Stopping a box without a Deployment is a no-op too.
    k.stop(&key("never"), &Running { pid: 1, start_time: 0 }, Duration::from_secs(1)).await.unwrap();
}

#[tokio::test]
async fn set_resources_resizes_the_running_pod_in_place() {
    let (k, c) = driver().await;
    started(&k, &c, "web").await;
    let pod = c.lock().pods.keys().next().cloned().unwrap();
    let r = Resources { memory_bytes: Some(1 << 30), cpus: Some(0.5), pids_max: Some(100) };
    k.set_resources(&key("web"), &r).await.unwrap();
    let calls = c.lock().driver_calls();
    assert_eq!(calls.iter().map(Call::line).collect::<Vec<_>>(), [format!("PATCH {}/{pod}/resize", pods())]);
    assert_eq!(calls[0].content_type, "application/strategic-merge-patch+json");
    assert_eq!(calls[0].query.get("fieldManager").map(String::as_str), Some("forkr"));
    assert_eq!(
        calls[0].body,
        json!({"spec": {"containers": [{"name": "fork", "resources": {
            "requests": {"memory": "1024Mi", "cpu": "500m"}, "limits": {"memory": "1024Mi"}}}]}})
    );
    // No CPU limit, ever (document 004).
    assert!(c.lock().pods[&pod]["spec"]["containers"][0]["resources"]["limits"].get("cpu").is_none());
}

#[tokio::test]
async fn set_resources_falls_back_to_the_template_where_resize_is_refused() {
    let (k, c) = driver().await;
    started(&k, &c, "web").await;
    let pod = c.lock().pods.keys().next().cloned().unwrap();
    c.lock().fail.push(Fail { method: "PATCH", path_contains: "/resize".into(), code: 404, times: 1 });
    let r = Resources { memory_bytes: Some(3 << 30), cpus: Some(2.0), pids_max: None };
    k.set_resources(&key("web"), &r).await.unwrap();
    let n = name("web");
    let calls = c.lock().driver_calls();
    assert_eq!(
        calls.iter().map(Call::line).collect::<Vec<_>>(),
        [format!("PATCH {}/{pod}/resize", pods()), format!("PATCH {}/{n}", deployments())]
    );
    assert_eq!(calls[1].content_type, "application/strategic-merge-patch+json");
    assert_eq!(
        calls[1].body["spec"]["template"]["spec"]["containers"][0]["resources"],
        json!({"requests": {"memory": "3072Mi", "cpu": "2"}, "limits": {"memory": "3072Mi"}})
    );
    let dep = c.lock().objects[&("deployments".to_owned(), n)].clone();
    assert_eq!(dep["spec"]["template"]["spec"]["containers"][0]["resources"]["limits"]["memory"], "3072Mi");
}

#[tokio::test]
async fn expose_updates_service_and_ingress_and_drops_an_ingress_without_hosts() {
    let (k, c) = driver().await;
    started(&k, &c, "web").await;
    let n = name("web");
    let e = Exposure { port: 3000, hosts: vec!["web.proj.example.com".into(), "shop.example.com".into()] };
    k.expose(&key("web"), &e).await.unwrap();
    let calls = c.lock().driver_calls();
    let put_svc = by_line(&calls, &format!("PUT {}/{n}", services()));
    assert_eq!(put_svc.body["spec"]["ports"][0]["port"], 3000);
    let put_ing = by_line(&calls, &format!("PUT {}/{n}", ingresses()));
    assert_eq!(put_ing.body["spec"]["rules"][1]["host"], "shop.example.com");
    assert_eq!(
        put_ing.body["spec"]["rules"][1]["http"]["paths"][0]["backend"]["service"]["port"]["number"],
        3000
    );
    c.lock().calls.clear();
    k.expose(&key("web"), &Exposure { port: 3000, hosts: vec![] }).await.unwrap();
    assert_eq!(c.lock().lines().last().unwrap(), &format!("DELETE {}/{n}", ingresses()));
    assert!(!c.lock().objects.contains_key(&("ingresses".to_owned(), n)));
}

#[tokio::test]
async fn readiness_follows_the_pod_watch() {
    let (k, c) = driver().await;
    let run = started(&k, &c, "web").await;
    let pod = c.lock().pods.keys().next().cloned().unwrap();
    // The readiness probe fails (PID 1 is gone): the box is not alive; then it recovers.
    c.lock().set_ready(&pod, false);
    for _ in 0..200 {
        if !k.is_alive(&key("web"), &run) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    assert!(!k.is_alive(&key("web"), &run));
    c.lock().set_ready(&pod, true);
    for _ in 0..200 {
        if k.is_alive(&key("web"), &run) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    assert!(k.is_alive(&key("web"), &run));
    assert_eq!(k.boxes_with_pods(), vec![key("web")]);
    // Exec needs a live pod; without one it is the documented 409.
    let err = k.listening(&key("other"), &run).await.unwrap_err();
    assert_eq!((err.kind(), err.code()), (ErrorKind::Conflict, "box_not_running"));
}

#[tokio::test]
async fn a_start_that_never_gets_ready_says_why() {
    let (client, c) = Cluster::start();
    let mut s = settings();
    s.start_timeout = Duration::from_millis(300);
    let k = Kubernetes::with_client(client, s).await.unwrap();
    c.lock().pod_problem = Some(json!({"phase": "Pending", "containerStatuses": [{
        "name": "fork", "ready": false, "restartCount": 0, "image": "ubuntu:24.04", "imageID": "",
        "state": {"waiting": {"reason": "ImagePullBackOff", "message": "Back-off pulling image \"ubuntu:24.04\""}}}]}));
    let err = k.start(&spec("web")).await.unwrap_err();
    assert!(err.message().contains("did not become ready within 300ms on node node-a"), "{}", err.message());
    assert!(err.message().contains("ImagePullBackOff: Back-off pulling image"), "{}", err.message());
}

#[tokio::test]
async fn api_errors_map_to_forkr_errors() {
    let (k, c) = driver().await;
    c.lock().fail.push(Fail { method: "POST", path_contains: "/deployments".into(), code: 403, times: 1 });
    let err = k.start(&spec("web")).await.unwrap_err();
    assert_eq!((err.kind(), err.code()), (ErrorKind::Internal, "kube_forbidden"));
    assert!(err.message().contains("creating Deployment fork-web-proj-"), "{}", err.message());
    assert!(err.message().contains("deploy/kubernetes/rbac.yaml"), "{}", err.message());
    c.lock().fail.push(Fail { method: "POST", path_contains: "/services".into(), code: 422, times: 1 });
    let err = k.start(&spec("web")).await.unwrap_err();
    assert_eq!((err.kind(), err.code()), (ErrorKind::BadRequest, "kube_invalid"));
    c.lock().fail.push(Fail { method: "DELETE", path_contains: "/ingresses".into(), code: 500, times: 1 });
    let err = k.cleanup(&key("web")).await.unwrap_err();
    assert_eq!((err.kind(), err.code()), (ErrorKind::Internal, "kube_unavailable"));
}

#[tokio::test]
async fn bad_input_is_refused_before_any_api_call() {
    let (k, c) = driver().await;
    c.lock().calls.clear();
    let mut s = spec("web");
    s.hostname = "web.proj;reboot".into();
    assert_eq!(k.start(&s).await.unwrap_err().code(), "invalid_hostname");
    let mut s = spec("web");
    s.mounts[0].target = "/box/../etc".into();
    assert_eq!(k.start(&s).await.unwrap_err().code(), "invalid_mount");
    let mut s = spec("web");
    s.env.push(("A=B".into(), "c".into()));
    assert_eq!(k.start(&s).await.unwrap_err().code(), "invalid_env");
    assert!(c.lock().lines().is_empty());
    let mut bad = settings();
    bad.node_name.clear();
    let (client, _c) = Cluster::start();
    let err = Kubernetes::with_client(client, bad).await.unwrap_err();
    assert!(err.message().contains("FORKR_NODE_NAME"), "{}", err.message());
}

#[tokio::test]
async fn the_server_lists_its_boxes_by_label() {
    let (k, c) = driver().await;
    started(&k, &c, "web").await;
    started(&k, &c, "db").await;
    let boxes = k.list_boxes().await.unwrap();
    assert_eq!(boxes, vec![key("db"), key("web")]);
    let call = c.lock().driver_calls().pop().unwrap();
    assert_eq!(call.line(), format!("GET {}", deployments()));
    assert_eq!(
        call.query.get("labelSelector").map(String::as_str),
        Some("app.kubernetes.io/managed-by=forkr,forkr.dev/instance=node-a")
    );
}
