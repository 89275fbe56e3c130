//! The engine facade over the Kubernetes driver: real btrfs storage (a loop-mounted image), a real
//! SQLite store, a real base, and the fake API server in place of a cluster. What the engine does
//! around the runtime (roots, `/etc/boxes-env`, status from `is_alive`, rollback of a failed
//! create, delete with and without force) runs exactly as with the local driver.

use std::collections::BTreeMap;
use std::io::Write;
use std::sync::Arc;

use super::fake::{Call, Cluster};
use super::{deployments, ingresses, name, pods, services, settings};
use crate::api::{BoxStatus, CreateBox, PublishRequest, UnpublishRequest, UpdateBox};
use crate::engine::{BaseImport, Config, Engine};
use crate::runtime::kubernetes::Kubernetes;
use crate::storage::btrfs::Btrfs;
use crate::storage::test_support::TestFs;
use crate::store::Store;

/// A `.tar.gz` root with busybox (so the base's architecture can be checked) and a bashrc.
fn tiny_base(dir: &std::path::Path) -> std::path::PathBuf {
    let root = dir.join("root");
    std::fs::create_dir_all(root.join("bin")).unwrap();
    std::fs::create_dir_all(root.join("etc")).unwrap();
    std::fs::copy("/usr/bin/busybox", root.join("bin/busybox")).unwrap();
    std::fs::write(root.join("etc/bash.bashrc"), "# bashrc\n").unwrap();
    let path = dir.join("base.tar.gz");
    let file = std::fs::File::create(&path).unwrap();
    let mut tar = tar::Builder::new(flate2::write::GzEncoder::new(file, flate2::Compression::fast()));
    tar.append_dir_all(".", &root).unwrap();
    tar.into_inner().unwrap().finish().unwrap().flush().unwrap();
    path
}

struct Setup {
    engine: Arc<Engine>,
    cluster: Cluster,
    _fs: TestFs,
    _dir: tempfile::TempDir,
}

async fn setup(start_timeout: std::time::Duration) -> Setup {
    let fs = TestFs::new();
    let layout = fs.layout();
    let mut config = Config::new(layout.data_dir());
    config.domain = "example.com".into();
    let store = Store::open(&layout.db()).unwrap();
    let (client, cluster) = Cluster::start();
    let mut s = settings();
    s.start_timeout = start_timeout;
    let k = Kubernetes::with_client(client, s).await.unwrap();
    let engine = Arc::new(Engine::new(config, Arc::new(Btrfs::new()), Arc::new(k), store));
    let dir = tempfile::tempdir().unwrap();
    let tarball = tiny_base(dir.path());
    engine
        .import_base(BaseImport {
            name: "box-base".into(),
            parent: None,
            tarball,
            tags: vec![],
            build_tag: None,
        })
        .await
        .unwrap();
    Setup { engine, cluster, _fs: fs, _dir: dir }
}

fn lines(c: &Cluster) -> Vec<String> {
    let mut s = c.lock();
    let l = s.lines();
    s.calls.clear();
    l
}

#[tokio::test]
async fn create_stop_resume_update_and_delete_through_the_engine() {
    let s = setup(std::time::Duration::from_secs(10)).await;
    let (e, c) = (&s.engine, &s.cluster);
    let req = CreateBox {
        name: "web".into(),
        memory: Some("1Gi".into()),
        cpu: Some("500m".into()),
        env: BTreeMap::from([("GREETING".into(), "hi".into())]),
        ..CreateBox::default()
    };
    let info = e.create_box("proj", req).await.unwrap();
    assert_eq!(info.status, BoxStatus::Running);
    assert_eq!(info.url, "https://web.proj.example.com");
    let n = name("web");
    assert_eq!(
        lines(c),
        [
            format!("POST {}", deployments()),
            format!("POST {}", services()),
            format!("POST {}", ingresses()),
            format!("PATCH {}/{n}/scale", deployments()),
        ]
    );

    // The Deployment mounts the root the engine made and prepared on this (the box's) node.
    let root = e.layout().root("proj", "web");
    assert!(root.join("etc/boxes-env").is_file());
    let dep = c.lock().objects[&("deployments".to_owned(), n.clone())].clone();
    let pod = &dep["spec"]["template"]["spec"];
    assert_eq!(pod["volumes"][0]["hostPath"]["path"], root.to_string_lossy().as_ref());
    for v in pod["volumes"].as_array().unwrap() {
        if let Some(p) = v["hostPath"]["path"].as_str()
            && v["hostPath"]["type"] != "DirectoryOrCreate"
        {
            assert!(std::path::Path::new(p).exists(), "hostPath {p} does not exist on the node");
        }
    }
    let env = pod["containers"][0]["env"].as_array().unwrap();
    let var = |k: &str| env.iter().find(|v| v["name"] == k).cloned().unwrap_or_default();
    assert_eq!(var("GREETING")["value"], "hi");
    assert_eq!(var("BOX_NAME")["value"], "web");
    assert_eq!(var("FORKR_NODE_IP")["valueFrom"]["fieldRef"]["fieldPath"], "status.hostIP");
    let res = &pod["containers"][0]["resources"];
    assert_eq!(res["requests"]["cpu"], "500m");
    assert_eq!(res["limits"]["memory"], "1024Mi");
    assert!(res["limits"].get("cpu").is_none());
    assert_eq!(pod["terminationGracePeriodSeconds"], 10);
    let ing = c.lock().objects[&("ingresses".to_owned(), n.clone())].clone();
    assert_eq!(ing["spec"]["rules"][0]["host"], "web.proj.example.com");

    // Delete without force refuses a running box (document 002), before any API call.
    let err = e.delete_box("proj", "web", false).await.unwrap_err();
    assert_eq!(err.code(), "fork_running");

    let info = e.stop_box("proj", "web").await.unwrap();
    assert_eq!(info.status, BoxStatus::Stopped);
    assert_eq!(lines(c), [format!("PATCH {}/{n}/scale", deployments())]);
    assert!(c.lock().pods.is_empty());

    let info = e.resume_box("proj", "web").await.unwrap();
    assert_eq!(info.status, BoxStatus::Running);
    let l = lines(c);
    assert_eq!(l.first(), Some(&format!("POST {}", deployments())));
    assert_eq!(l.last(), Some(&format!("PATCH {}/{n}/scale", deployments())));

    // update: CPU resizes the pod in place, PORT updates Service and Ingress.
    let settings =
        BTreeMap::from([("CPU".to_owned(), "2".to_owned()), ("PORT".to_owned(), "3000".to_owned())]);
    let info = e.update_box("proj", "web", UpdateBox { settings, tags: None }).await.unwrap();
    assert_eq!(info.port, 3000);
    let calls: Vec<Call> = c.lock().driver_calls();
    let pod_name = c.lock().pods.keys().next().cloned().unwrap();
    let resize = calls.iter().find(|x| x.line() == format!("PATCH {}/{pod_name}/resize", pods())).unwrap();
    assert_eq!(resize.body["spec"]["containers"][0]["resources"]["requests"]["cpu"], "2");
    assert_eq!(c.lock().objects[&("services".to_owned(), n.clone())]["spec"]["ports"][0]["port"], 3000);
    let ing = c.lock().objects[&("ingresses".to_owned(), n.clone())].clone();
    assert_eq!(ing["spec"]["rules"][0]["http"]["paths"][0]["backend"]["service"]["port"]["number"], 3000);
    c.lock().calls.clear();

    let deleted = e.delete_box("proj", "web", true).await.unwrap();
    assert!(deleted.deleted);
    let l = lines(c);
    assert_eq!(l[0], format!("PATCH {}/{n}/scale", deployments()));
    assert_eq!(
        l[l.len() - 3..],
        [
            format!("DELETE {}/{n}", ingresses()),
            format!("DELETE {}/{n}", services()),
            format!("DELETE {}/{n}", deployments()),
        ]
    );
    assert!(c.lock().objects.is_empty());
    assert!(!root.exists(), "the root is deleted after the pods are gone");
    assert!(e.get_box("proj", "web").is_err());
}

#[tokio::test]
async fn a_box_whose_pod_never_gets_ready_is_rolled_back() {
    let s = setup(std::time::Duration::from_millis(300)).await;
    let (e, c) = (&s.engine, &s.cluster);
    c.lock().pod_problem = Some(serde_json::json!({"phase": "Pending", "conditions": [
        {"type": "PodScheduled", "status": "False", "reason": "Unschedulable", "message": "node node-a is full"}]}));
    let err =
        e.create_box("proj", CreateBox { name: "web".into(), ..CreateBox::default() }).await.unwrap_err();
    assert!(err.message().contains("Unschedulable: node node-a is full"), "{}", err.message());
    // Nothing is left: no objects, no root, no row.
    assert!(c.lock().objects.is_empty(), "{:?}", c.lock().objects.keys().collect::<Vec<_>>());
    assert!(!e.layout().root("proj", "web").exists());
    assert!(e.get_box("proj", "web").is_err());
}

/// The hosts of a box's Ingress in the fake cluster (rules and TLS must agree), `None` without one.
fn ingress_hosts(c: &Cluster, b: &str) -> Option<Vec<String>> {
    let ing = c.lock().objects.get(&("ingresses".to_owned(), name(b))).cloned()?;
    let strs = |v: &serde_json::Value| -> Vec<String> {
        v.as_array().unwrap().iter().map(|h| h.as_str().unwrap().to_owned()).collect()
    };
    let rules: Vec<String> = ing["spec"]["rules"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["host"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(rules, strs(&ing["spec"]["tls"][0]["hosts"]), "TLS covers exactly the routed hosts");
    Some(rules)
}

#[tokio::test]
async fn publish_unpublish_and_takeover_rewrite_the_ingresses() {
    let s = setup(std::time::Duration::from_secs(10)).await;
    let (e, c) = (&s.engine, &s.cluster);
    for b in ["web", "api"] {
        e.create_box("proj", CreateBox { name: b.into(), ..CreateBox::default() }).await.unwrap();
    }
    assert_eq!(ingress_hosts(c, "web").unwrap(), ["web.proj.example.com"]);
    c.lock().calls.clear();
    let shop = || PublishRequest { subdomain: Some("shop".into()), ..PublishRequest::default() };
    let p = e.publish("proj", "web", shop()).await.unwrap();
    assert_eq!(p.host, "shop.example.com");
    let n = name("web");
    assert_eq!(
        lines(c),
        [
            format!("POST {}", services()),
            format!("GET {}/{n}", services()),
            format!("PUT {}/{n}", services()),
            format!("POST {}", ingresses()),
            format!("GET {}/{n}", ingresses()),
            format!("PUT {}/{n}", ingresses()),
        ]
    );
    assert_eq!(ingress_hosts(c, "web").unwrap(), ["web.proj.example.com", "shop.example.com"]);
    let ing = c.lock().objects[&("ingresses".to_owned(), n.clone())].clone();
    assert_eq!(ing["metadata"]["annotations"]["cert-manager.io/cluster-issuer"], "letsencrypt");
    assert_eq!(ing["spec"]["tls"][0]["secretName"], format!("{n}-tls"));
    assert!(e.get_box("proj", "web").unwrap().published.contains(&"shop.example.com".to_owned()));

    // Taken: 409 without --force, and no API call.
    let err = e.publish("proj", "api", shop()).await.unwrap_err();
    assert_eq!(err.kind(), crate::ErrorKind::Conflict);
    assert!(lines(c).is_empty());
    // --force moves the host: api's Ingress gains it, web's loses it.
    e.publish("proj", "api", PublishRequest { force: true, ..shop() }).await.unwrap();
    assert_eq!(ingress_hosts(c, "api").unwrap(), ["api.proj.example.com", "shop.example.com"]);
    assert_eq!(ingress_hosts(c, "web").unwrap(), ["web.proj.example.com"]);

    e.unpublish("proj", "api", UnpublishRequest { subdomain: Some("shop".into()), ..Default::default() })
        .await
        .unwrap();
    assert_eq!(ingress_hosts(c, "api").unwrap(), ["api.proj.example.com"]);
}

#[tokio::test]
async fn a_restarted_server_re_attaches_to_running_boxes_without_touching_them() {
    let s = setup(std::time::Duration::from_secs(10)).await;
    let Setup { engine, cluster, _fs: fs, _dir: dir } = s;
    for b in ["web", "db"] {
        engine.create_box("proj", CreateBox { name: b.into(), ..CreateBox::default() }).await.unwrap();
    }
    engine.stop_box("proj", "db").await.unwrap();
    let config = engine.config().clone();
    drop(engine);
    cluster.lock().calls.clear();

    // A new server process: a new driver over the same cluster, the same data dir and database.
    let layout = fs.layout();
    let k = Kubernetes::with_client(cluster.client(), settings()).await.unwrap();
    let store = Store::open(&layout.db()).unwrap();
    let engine = Arc::new(Engine::new(config, Arc::new(Btrfs::new()), Arc::new(k), store));
    let r = engine.reconcile().await.unwrap();
    assert_eq!((r.attached, r.restarted, r.failed), (1, 0, 0), "{r:?}");
    assert!(lines(&cluster).is_empty(), "re-attaching writes nothing to the cluster");
    assert_eq!(engine.get_box("proj", "web").unwrap().status, BoxStatus::Running);
    assert_eq!(engine.get_box("proj", "db").unwrap().status, BoxStatus::Stopped);
    // And it drives them as its own: stop web, resume db.
    engine.stop_box("proj", "web").await.unwrap();
    assert_eq!(engine.resume_box("proj", "db").await.unwrap().status, BoxStatus::Running);
    engine.delete_box("proj", "db", true).await.unwrap();
    engine.delete_box("proj", "web", true).await.unwrap();
    assert!(cluster.lock().objects.is_empty());
    drop(dir);
}
