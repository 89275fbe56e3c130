//! Golden (insta) tests of every manifest the driver renders, each also checked against the
//! Kubernetes OpenAPI types and the API server's own cross-field rules.

use std::path::PathBuf;
use std::time::Duration;

use super::*;
use crate::runtime::BindMount;
use crate::runtime::kubernetes::openapi::{strict, yaml_roundtrip};

fn settings() -> Settings {
    Settings::new("forks", "node-a")
}

fn spec() -> StartSpec {
    let run = PathBuf::from("/var/lib/forkr/run/proj/web");
    StartSpec {
        key: BoxKey { project: "proj".into(), name: "web".into() },
        hostname: "web.proj".into(),
        root: "/var/lib/forkr/fs/roots/proj/web".into(),
        mounts: vec![
            BindMount {
                source: "/var/lib/forkr/fs/box-bin".into(),
                target: "/box/bin".into(),
                read_only: false,
                file: false,
            },
            BindMount {
                source: "/var/lib/forkr/fs/box-all".into(),
                target: "/box/all".into(),
                read_only: false,
                file: false,
            },
            BindMount {
                source: "/var/lib/forkr/fs/box-proj/proj".into(),
                target: "/box/proj".into(),
                read_only: false,
                file: false,
            },
            BindMount {
                source: "/var/lib/forkr/fs/home/proj".into(),
                target: "/home".into(),
                read_only: false,
                file: false,
            },
            BindMount { source: run.join("hosts"), target: "/etc/hosts".into(), read_only: true, file: true },
            BindMount {
                source: run.join("resolv.conf"),
                target: "/etc/resolv.conf".into(),
                read_only: true,
                file: true,
            },
            BindMount {
                source: run.join("hostname"),
                target: "/etc/hostname".into(),
                read_only: true,
                file: true,
            },
            BindMount {
                source: "/var/lib/forkr/fs/volumes/proj/data".into(),
                target: "/srv/data".into(),
                read_only: true,
                file: false,
            },
        ],
        env: vec![
            ("PATH".into(), "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin".into()),
            ("FORKR_PROJECT".into(), "proj".into()),
            ("BOX_NAME".into(), "web".into()),
            ("FORKR_API_URL".into(), "https://forks.example.com".into()),
            ("FORKR_API_HOST".into(), "forks.example.com".into()),
            ("FORKR_API_IP".into(), "127.0.0.1".into()),
            ("FORKR_NODE_IP".into(), "127.0.0.1".into()),
            ("TERM".into(), "xterm-256color".into()),
            ("GREETING".into(), "hello world".into()),
        ],
        resources: Resources { memory_bytes: Some(2048 << 20), cpus: Some(1.5), pids_max: Some(4096) },
        log_path: run.join("console.log"),
        network: None,
        exposure: Exposure { port: 8080, hosts: vec!["web.proj.example.com".into()] },
        grace: Duration::from_secs(10),
    }
}

#[test]
fn deployment() {
    let d = render_deployment(&spec(), &settings());
    insta::assert_yaml_snapshot!(d);
    yaml_roundtrip(&d);
    let v = serde_json::to_value(&d).unwrap();
    strict::<Deployment>(&v);
    // API server rules the types cannot express.
    let ds = d.spec.as_ref().unwrap();
    let template_labels = ds.template.metadata.as_ref().unwrap().labels.as_ref().unwrap();
    for (k, val) in ds.selector.match_labels.as_ref().unwrap() {
        assert_eq!(template_labels.get(k), Some(val), "selector must match the pod template");
    }
    let pod = ds.template.spec.as_ref().unwrap();
    let mounts = pod.containers[0].volume_mounts.as_ref().unwrap();
    let vols: Vec<&str> = pod.volumes.as_ref().unwrap().iter().map(|v| v.name.as_str()).collect();
    for m in mounts {
        assert!(vols.contains(&m.name.as_str()), "mount {} has no volume", m.name);
    }
    let mut paths: Vec<&str> = mounts.iter().map(|m| m.mount_path.as_str()).collect();
    paths.sort();
    paths.dedup();
    assert_eq!(paths.len(), mounts.len(), "two mounts at one path");
    // The pod's own resolv.conf and hosts are bound by the runner, not the server's files.
    assert!(!paths.contains(&"/volumes/etc/hosts") && !paths.contains(&"/volumes/etc/resolv.conf"));
    assert!(paths.contains(&"/volumes/etc/hostname") && paths.contains(&"/volumes/srv/data"));
    for l in template_labels.values().chain(d.metadata.labels.as_ref().unwrap().values()) {
        assert!(names::is_label_value(l), "{l}");
    }
}

#[test]
fn the_runner_script_follows_document_001() {
    let script = runner_script("web.proj");
    insta::assert_snapshot!(script);
    assert!(script.ends_with("exec chroot /volumes /usr/bin/tini -s -- /bin/bash -lc \"sleep infinity\"\n"));
    // A hostname over the kernel's 64 characters is cut, as the local driver does.
    let long = format!("{}.{}", "a".repeat(40), "b".repeat(40));
    assert!(runner_script(&long).contains(&format!("printf '%s' '{}.{}'", "a".repeat(40), "b".repeat(23))));
    // The script is valid POSIX sh.
    let out = std::process::Command::new("/bin/sh").args(["-n", "-c", &script]).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
}

#[test]
fn service() {
    let s = render_service(&spec().key, &spec().exposure, &settings());
    insta::assert_yaml_snapshot!(s);
    yaml_roundtrip(&s);
}

#[test]
fn ingress_with_cert_manager() {
    let i = render_ingress(&spec().key, &spec().exposure, &settings()).unwrap();
    insta::assert_yaml_snapshot!(i);
    yaml_roundtrip(&i);
}

#[test]
fn ingress_with_a_wildcard_secret_and_published_hosts() {
    let mut s = settings();
    s.tls = Tls::WildcardSecret("wildcard-example-com".into());
    s.ingress_class = Some("nginx".into());
    let e = Exposure { port: 3000, hosts: vec!["web.example.com".into(), "shop.example.com".into()] };
    let i = render_ingress(&BoxKey { project: "default".into(), name: "web".into() }, &e, &s).unwrap();
    insta::assert_yaml_snapshot!(i);
    yaml_roundtrip(&i);
    assert!(i.metadata.annotations.is_none(), "no cert-manager annotation with a wildcard secret");
    assert!(render_ingress(&spec().key, &Exposure { port: 1, hosts: vec![] }, &s).is_none());
}

#[test]
fn resources_request_memory_and_cpu_and_limit_only_memory() {
    let r = resource_requirements(&Resources {
        memory_bytes: Some(1536 << 20),
        cpus: Some(0.25),
        pids_max: None,
    });
    assert_eq!(
        serde_json::to_value(&r).unwrap(),
        serde_json::json!({"requests": {"memory": "1536Mi", "cpu": "250m"}, "limits": {"memory": "1536Mi"}})
    );
    let r = resource_requirements(&Resources {
        memory_bytes: Some(1_000_000),
        cpus: Some(0.0001),
        pids_max: None,
    });
    assert_eq!(
        serde_json::to_value(&r).unwrap(),
        serde_json::json!({"requests": {"memory": "1000000", "cpu": "1m"}, "limits": {"memory": "1000000"}})
    );
    assert_eq!(
        serde_json::to_value(resource_requirements(&Resources::default())).unwrap(),
        serde_json::json!({})
    );
}

#[test]
fn node_ip_variables_come_from_the_downward_api() {
    let env = environment(&[("A".into(), "1".into()), ("FORKR_NODE_IP".into(), "10.0.0.1".into())]);
    let v = serde_json::to_value(&env).unwrap();
    assert_eq!(
        v,
        serde_json::json!([
            {"name": "A", "value": "1"},
            {"name": "FORKR_NODE_IP", "valueFrom": {"fieldRef": {"fieldPath": "status.hostIP"}}},
            {"name": "FORKR_API_IP", "valueFrom": {"fieldRef": {"fieldPath": "status.hostIP"}}},
        ])
    );
}
