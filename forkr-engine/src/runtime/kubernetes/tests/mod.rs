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

#[tokio::test]
async fn publish_creates_the_ingress_with_a_cert_manager_certificate_per_box() {
    let (k, c) = driver().await;
    started(&k, &c, "web").await;
    let n = name("web");
    // No public host left: the Ingress goes; publishing again creates it (POST, not an adoption).
    k.expose(&key("web"), &Exposure { port: 8080, hosts: vec![] }).await.unwrap();
    c.lock().calls.clear();
    let hosts = vec!["web.proj.example.com".to_owned(), "shop.example.com".to_owned()];
    k.expose(&key("web"), &Exposure { port: 8080, hosts: hosts.clone() }).await.unwrap();
    let calls = c.lock().driver_calls();
    assert_eq!(
        calls.iter().map(Call::line).collect::<Vec<_>>(),
        [
            format!("POST {}", services()),
            format!("GET {}/{n}", services()),
            format!("PUT {}/{n}", services()),
            format!("POST {}", ingresses()),
        ]
    );
    for call in &calls {
        if call.method != "GET" {
            assert_eq!(call.query.get("fieldManager").map(String::as_str), Some("forkr"), "{call:?}");
        }
    }
    let ing = &calls[3].body;
    assert_eq!(ing["kind"], "Ingress");
    assert_eq!(ing["metadata"]["annotations"], json!({"cert-manager.io/cluster-issuer": "letsencrypt"}));
    assert_eq!(ing["spec"]["tls"], json!([{"hosts": hosts, "secretName": format!("{n}-tls")}]));
    let rule_hosts: Vec<&str> =
        ing["spec"]["rules"].as_array().unwrap().iter().map(|r| r["host"].as_str().unwrap()).collect();
    assert_eq!(rule_hosts, ["web.proj.example.com", "shop.example.com"]);
    for r in ing["spec"]["rules"].as_array().unwrap() {
        assert_eq!(r["http"]["paths"][0]["backend"]["service"], json!({"name": n, "port": {"number": 8080}}));
    }
    assert!(ing["spec"].get("ingressClassName").is_none(), "the cluster's default class");
}

#[tokio::test]
async fn publish_with_a_wildcard_secret_uses_it_without_cert_manager() {
    let (client, c) = Cluster::start();
    let mut s = settings();
    s.tls = Tls::WildcardSecret("wildcard-example-com".into());
    s.ingress_class = Some("nginx".into());
    let k = Kubernetes::with_client(client, s).await.unwrap();
    started(&k, &c, "web").await;
    let n = name("web");
    let hosts = vec!["web.proj.example.com".to_owned(), "api.example.com".to_owned()];
    k.expose(&key("web"), &Exposure { port: 9000, hosts: hosts.clone() }).await.unwrap();
    let calls = c.lock().driver_calls();
    let put = by_line(&calls, &format!("PUT {}/{n}", ingresses()));
    assert_eq!(put.query.get("fieldManager").map(String::as_str), Some("forkr"));
    assert!(put.body["metadata"].get("annotations").is_none(), "{:#}", put.body);
    assert_eq!(put.body["spec"]["ingressClassName"], "nginx");
    assert_eq!(put.body["spec"]["tls"], json!([{"hosts": hosts, "secretName": "wildcard-example-com"}]));
    assert_eq!(put.body["spec"]["rules"][1]["host"], "api.example.com");
    // What the cluster now holds is the new Ingress, not a merge with the old one.
    let stored = c.lock().objects[&("ingresses".to_owned(), n)].clone();
    assert_eq!(stored["spec"]["tls"][0]["secretName"], "wildcard-example-com");
    assert_eq!(stored["spec"]["rules"].as_array().unwrap().len(), 2);
}

#[tokio::test]
async fn a_restarted_server_finds_its_boxes_and_pods_again() {
    let (k, c) = driver().await;
    started(&k, &c, "web").await;
    let run = started(&k, &c, "db").await;
    k.stop(&key("db"), &run, Duration::from_secs(10)).await.unwrap();
    drop(k);
    c.lock().calls.clear();
    let k = Kubernetes::with_client(c.client(), settings()).await.unwrap();
    // Both Deployments are listed; only web has a (Ready) pod, seen by the first list.
    assert_eq!(k.list_boxes().await.unwrap(), vec![key("db"), key("web")]);
    assert!(k.is_alive(&key("web"), &Running { pid: 1, start_time: 0 }));
    assert!(!k.is_alive(&key("db"), &Running { pid: 1, start_time: 0 }));
    assert_eq!(c.lock().lines(), [format!("GET {}", deployments())], "nothing written");
}

/// A driver over `c` with exec path `mode` (a second server view of the same fake cluster).
async fn driver_with(c: &Cluster, mode: node::ExecPath) -> Kubernetes {
    let mut s = settings();
    s.exec_path = mode;
    Kubernetes::with_client(c.client(), s).await.unwrap()
}

/// Starts box `b`, then binds its pod to `node` with runner container `container_id`, and waits
/// until every driver in `ks` has seen that.
async fn started_on(
    k: &Kubernetes,
    c: &Cluster,
    b: &str,
    node: &str,
    container_id: &str,
    ks: &[&Kubernetes],
) {
    started(k, c, b).await;
    let pod = c.lock().pods.keys().next().cloned().unwrap();
    c.lock().set_container(&pod, node, container_id);
    for _ in 0..500 {
        if ks
            .iter()
            .all(|k| k.pods.alive(&key(b)).is_some_and(|p| p.container_id.as_deref() == Some(container_id)))
        {
            c.lock().calls.clear();
            return;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!("the drivers did not see the pod's container");
}

fn exec_spec(script: &str) -> ExecSpec {
    ExecSpec {
        argv: vec!["sh".into(), "-c".into(), script.into()],
        env: vec![("PATH".into(), "/bin".into())],
        cwd: "/".into(),
        uid: 0,
        gid: 0,
        io: ExecIo::Pipes,
    }
}

/// The exec API calls among the driver's calls.
fn exec_calls(c: &Cluster) -> Vec<Call> {
    c.lock().driver_calls().into_iter().filter(|c| c.path.ends_with("/exec")).collect()
}

#[tokio::test]
async fn on_the_boxs_node_exec_and_ports_go_through_the_node_without_an_api_call() {
    let fake = crate::runtime::kubernetes::node::tests::FakeContainer::start();
    let (k, c) = driver().await;
    let run = Running { pid: 1, start_time: 0 };
    started_on(&k, &c, "web", "node-a", &format!("containerd://{}", fake.id), &[&k]).await;
    let mut p = k.exec(&key("web"), &run, exec_spec("cat /marker; hostname")).await.unwrap();
    drop(p.stdin.take());
    let mut out = String::new();
    tokio::io::AsyncReadExt::read_to_string(p.stdout.as_mut().unwrap(), &mut out).await.unwrap();
    assert_eq!(p.wait.await.unwrap(), 0);
    assert_eq!(out, format!("{}web.proj\n", node::tests::MARKER));
    // The second exec uses the cached init (no new scan), and `ports` reads the pod's sockets.
    let p = k.exec(&key("web"), &run, exec_spec("true")).await.unwrap();
    assert_eq!(p.wait.await.unwrap(), 0);
    assert!(k.listening(&key("web"), &run).await.unwrap().is_empty(), "nothing listens in the box");
    assert!(c.lock().driver_calls().is_empty(), "{:?}", c.lock().lines());

    // --kube-exec api: the exec API even though the node path is there.
    let api = driver_with(&c, node::ExecPath::Api).await;
    c.lock().calls.clear();
    let _ = api.exec(&key("web"), &run, exec_spec("true")).await;
    assert_eq!(exec_calls(&c).len(), 1, "{:?}", c.lock().lines());
}

#[tokio::test]
async fn without_the_node_path_exec_falls_back_to_the_kubernetes_exec_api() {
    let (k, c) = driver().await;
    let strict = driver_with(&c, node::ExecPath::Node).await;
    let run = Running { pid: 1, start_time: 0 };
    // The container is not on this machine (no process of it in /proc).
    let absent = format!("containerd://{}", "0123456789abcdef".repeat(4));
    started_on(&k, &c, "web", "node-a", &absent, &[&k, &strict]).await;
    let pod = c.lock().pods.keys().next().cloned().unwrap();

    // auto: the Kubernetes exec API, into the runner container, wrapped into the root. (The fake
    // cannot upgrade to a WebSocket; exec/ws_tests.rs runs this path for real.)
    let _ = k.exec(&key("web"), &run, exec_spec("cat /marker")).await;
    let calls = exec_calls(&c);
    assert_eq!(
        calls.iter().map(Call::line).collect::<Vec<_>>(),
        [format!("GET /api/v1{NS}/pods/{pod}/exec")]
    );
    assert_eq!(calls[0].query.get("container").map(String::as_str), Some("fork"));
    // (The fake keeps the last of the repeated `command` parameters: the argv's last word.)
    assert_eq!(calls[0].query.get("command").map(String::as_str), Some("cat /marker"));
    c.lock().calls.clear();
    let _ = k.listening(&key("web"), &run).await;
    assert_eq!(exec_calls(&c).len(), 1, "ports through the exec API too");

    // node: refuses, saying why, and makes no call.
    c.lock().calls.clear();
    let e = strict.exec(&key("web"), &run, exec_spec("true")).await.err().unwrap();
    assert_eq!(e.code(), "kube_node_exec_unavailable");
    assert!(e.message().contains("hostPID"), "{}", e.message());
    assert!(c.lock().driver_calls().is_empty());
}

#[tokio::test]
async fn a_pod_on_another_node_or_without_a_container_id_is_reached_through_the_api() {
    let (k, c) = driver().await;
    let strict = driver_with(&c, node::ExecPath::Node).await;
    let run = Running { pid: 1, start_time: 0 };
    // As started: no nodeName and no container status yet.
    started(&k, &c, "web").await;
    let e = strict.exec(&key("web"), &run, exec_spec("true")).await.err().unwrap();
    assert!(e.message().contains("runs on node (none)"), "{}", e.message());
    let fake = crate::runtime::kubernetes::node::tests::FakeContainer::start();
    let id = format!("containerd://{}", fake.id);
    let pod = c.lock().pods.keys().next().cloned().unwrap();
    c.lock().set_container(&pod, "node-b", &id);
    for _ in 0..500 {
        if strict.pods.alive(&key("web")).is_some_and(|p| p.container_id.as_deref() == Some(id.as_str())) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let e = strict.exec(&key("web"), &run, exec_spec("true")).await.err().unwrap();
    assert!(e.message().contains("runs on node node-b, not on this server's node node-a"), "{}", e.message());
    c.lock().calls.clear();
    let _ = k.exec(&key("web"), &run, exec_spec("true")).await;
    assert_eq!(exec_calls(&c).len(), 1, "auto falls back: {:?}", c.lock().lines());
}
