//! The manifests of a box, as pure functions of what the engine asks for and the driver's settings.
//!
//! Kept free of I/O so that every manifest is pinned by a golden (insta) test and checked against
//! the Kubernetes OpenAPI types (see the tests at the bottom).
//!
//! A box is (documents 001, 002, 004):
//! - a single-replica Deployment (`Recreate`: two pods must never share a root) running one
//!   privileged container named `fork` from the runner image (default `ubuntu:24.04`), pinned to
//!   the node that holds the box's root. The runner mounts proc, sysfs and the host `/dev` into the
//!   root, bind-mounts `/tmp`, `/run`, `/etc/resolv.conf` and `/etc/hosts`, sets the hostname
//!   `<box>.<project>` and ends with `exec chroot /volumes /usr/bin/tini -s -- /bin/bash -lc "sleep
//!   infinity"`. Memory: request and limit; CPU: request only.
//! - a headless Service (`clusterIP: None`): DNS answers with the pod IP, every port reachable.
//! - an Ingress for the box's public hosts, TLS from a wildcard secret when configured, otherwise
//!   a per-box certificate from cert-manager's cluster issuer.

use std::collections::BTreeMap;
use std::path::Path;

use k8s_openapi::api::apps::v1::{Deployment, DeploymentSpec, DeploymentStrategy};
use k8s_openapi::api::core::v1::{
    Affinity, Container, ContainerResizePolicy, EmptyDirVolumeSource, EnvVar, EnvVarSource, ExecAction,
    HostPathVolumeSource, NodeAffinity, NodeSelector, NodeSelectorRequirement, NodeSelectorTerm,
    ObjectFieldSelector, PodDNSConfig, PodDNSConfigOption, PodSpec, PodTemplateSpec, Probe,
    ResourceRequirements, SecurityContext, Service, ServicePort, ServiceSpec, Volume, VolumeMount,
};
use k8s_openapi::api::networking::v1::{
    HTTPIngressPath, HTTPIngressRuleValue, Ingress, IngressBackend, IngressRule, IngressServiceBackend,
    IngressSpec, IngressTLS, ServiceBackendPort,
};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, ObjectMeta};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;

use super::names::{self, ANNOTATION_NODE, ANNOTATION_ROOT};
use super::{Settings, Tls};
use crate::runtime::{BoxKey, Exposure, Resources, StartSpec};

/// The runner container's name (document 004: "a container literally named fork").
pub const CONTAINER: &str = "fork";
/// Where the runner mounts the box's root, and what it chroots into (document 001).
pub const ROOT_MOUNT: &str = "/volumes";
/// Where the runner sees the box's host-side run directory (outside the chroot): background exec
/// logs are written there, so the server reads them on the node as with the local driver.
pub const RUN_MOUNT: &str = "/forkr-run";
/// The annotation cert-manager's ingress-shim reads.
pub const CLUSTER_ISSUER_ANNOTATION: &str = "cert-manager.io/cluster-issuer";
/// Injected variables whose value is the node IP, from the downward API (document 004).
const NODE_IP_VARS: [&str; 2] = ["FORKR_API_IP", "FORKR_NODE_IP"];
/// Files the runner binds from the pod itself (kubelet writes them: the cluster DNS with the
/// box's search domains, and the pod's hosts), not from the server's run dir.
const POD_FILES: [&str; 2] = ["/etc/resolv.conf", "/etc/hosts"];
/// The kernel's hostname limit.
const HOST_NAME_MAX: usize = 64;

fn meta(name: &str, key: &BoxKey, settings: &Settings) -> ObjectMeta {
    ObjectMeta {
        name: Some(name.to_owned()),
        namespace: Some(settings.namespace.clone()),
        labels: Some(names::labels(&settings.instance, key)),
        ..ObjectMeta::default()
    }
}

/// `<box>.<project>` cut to the kernel's 64 characters (and no trailing `.`/`-`), as the local
/// driver and Kubernetes do.
fn kernel_hostname(h: &str) -> &str {
    if h.len() <= HOST_NAME_MAX {
        return h;
    }
    h.get(..HOST_NAME_MAX).unwrap_or(h).trim_end_matches(['.', '-'])
}

/// The runner's shell script: document 001's three steps. `hostname` is validated by the driver
/// (letters, digits, `-`, `.`), so it needs no quoting beyond the single quotes.
pub fn runner_script(hostname: &str) -> String {
    let host = kernel_hostname(hostname);
    format!(
        r#"set -eu
# 1. Kernel interfaces and scratch surfaces, recreated on every pod start.
R={ROOT_MOUNT}
mkdir -p "$R/proc" "$R/sys" "$R/dev" "$R/tmp" "$R/run" "$R/etc"
mount -t proc proc "$R/proc"
mount -t sysfs sysfs "$R/sys"
mount --rbind /dev "$R/dev"
chmod 1777 /tmp
mount --bind /tmp "$R/tmp"
mount --bind /run "$R/run"
for f in resolv.conf hosts; do
  # A symlink here would send the bind mount outside the root: replace it by a plain file.
  if [ -L "$R/etc/$f" ]; then rm -f "$R/etc/$f"; fi
  [ -e "$R/etc/$f" ] || : > "$R/etc/$f"
  mount --bind "/etc/$f" "$R/etc/$f"
done
# 2. The hostname <box>.<project>.
printf '%s' '{host}' > /proc/sys/kernel/hostname
# 3. chroot and start PID 1.
exec chroot {ROOT_MOUNT} /usr/bin/tini -s -- /bin/bash -lc "sleep infinity"
"#
    )
}

/// Memory as a Kubernetes quantity: `Mi` when whole mebibytes, else bytes.
fn memory_quantity(bytes: u64) -> Quantity {
    if bytes.is_multiple_of(1 << 20) {
        Quantity(format!("{}Mi", bytes >> 20))
    } else {
        Quantity(bytes.to_string())
    }
}

/// CPU as a Kubernetes quantity in millicores (at least 1m: zero would mean "no request").
fn cpu_quantity(cpus: f64) -> Quantity {
    let milli = (cpus * 1000.0).round().max(1.0) as u64;
    if milli.is_multiple_of(1000) {
        Quantity((milli / 1000).to_string())
    } else {
        Quantity(format!("{milli}m"))
    }
}

/// Memory request and limit, CPU request only (document 004: CPU is never capped by a quota). The
/// pids limit has no per-pod field in Kubernetes (it is the kubelet's `podPidsLimit`).
pub fn resource_requirements(r: &Resources) -> ResourceRequirements {
    let mut requests = BTreeMap::new();
    let mut limits = BTreeMap::new();
    if let Some(m) = r.memory_bytes {
        requests.insert("memory".to_owned(), memory_quantity(m));
        limits.insert("memory".to_owned(), memory_quantity(m));
    }
    if let Some(c) = r.cpus {
        requests.insert("cpu".to_owned(), cpu_quantity(c));
    }
    ResourceRequirements {
        requests: (!requests.is_empty()).then_some(requests),
        limits: (!limits.is_empty()).then_some(limits),
        ..ResourceRequirements::default()
    }
}

/// The container environment: the engine's complete environment, except that the node-IP
/// variables come from the downward API (`status.hostIP`), added when the engine left them out.
fn environment(env: &[(String, String)]) -> Vec<EnvVar> {
    let host_ip = || {
        Some(EnvVarSource {
            field_ref: Some(ObjectFieldSelector { field_path: "status.hostIP".into(), ..Default::default() }),
            ..Default::default()
        })
    };
    let mut out: Vec<EnvVar> = env
        .iter()
        .map(|(k, v)| {
            if NODE_IP_VARS.contains(&k.as_str()) {
                EnvVar { name: k.clone(), value: None, value_from: host_ip() }
            } else {
                EnvVar { name: k.clone(), value: Some(v.clone()), value_from: None }
            }
        })
        .collect();
    for var in NODE_IP_VARS {
        if !out.iter().any(|e| e.name == var) {
            out.push(EnvVar { name: var.into(), value: None, value_from: host_ip() });
        }
    }
    out
}

fn host_path(name: &str, path: &Path, kind: &str) -> Volume {
    Volume {
        name: name.to_owned(),
        host_path: Some(HostPathVolumeSource {
            path: path.to_string_lossy().into_owned(),
            type_: Some(kind.to_owned()),
        }),
        ..Volume::default()
    }
}

fn empty_dir(name: &str) -> Volume {
    Volume { name: name.to_owned(), empty_dir: Some(EmptyDirVolumeSource::default()), ..Volume::default() }
}

fn mount(name: &str, path: &str, read_only: bool) -> VolumeMount {
    VolumeMount {
        name: name.to_owned(),
        mount_path: path.to_owned(),
        read_only: read_only.then_some(true),
        ..VolumeMount::default()
    }
}

/// The volumes and mounts of the runner: the root at `/volumes`, each of the engine's bind mounts
/// below it (system volumes, data volumes, `/etc/hostname`) as a hostPath of the node, empty dirs
/// for `/tmp` and `/run` (ephemeral host paths, document 004), and the run dir for exec logs.
fn volumes(spec: &StartSpec) -> (Vec<Volume>, Vec<VolumeMount>) {
    let mut vols = vec![host_path("root", &spec.root, "Directory"), empty_dir("tmp"), empty_dir("run")];
    let mut mounts =
        vec![mount("root", ROOT_MOUNT, false), mount("tmp", "/tmp", false), mount("run", "/run", false)];
    if let Some(run_dir) = spec.log_path.parent() {
        vols.push(host_path("forkr-run", run_dir, "DirectoryOrCreate"));
        mounts.push(mount("forkr-run", RUN_MOUNT, false));
    }
    for (i, m) in spec.mounts.iter().filter(|m| !POD_FILES.contains(&m.target.as_str())).enumerate() {
        let name = format!("mount-{i}");
        vols.push(host_path(&name, &m.source, if m.file { "File" } else { "Directory" }));
        mounts.push(mount(&name, &format!("{ROOT_MOUNT}{}", m.target), m.read_only));
    }
    (vols, mounts)
}

/// Ready once PID 1 runs chrooted into the root, i.e. after every step of the runner script (a
/// started container alone is not enough: the mounts happen after that).
fn readiness_probe() -> Probe {
    Probe {
        exec: Some(ExecAction {
            command: Some(vec![
                "/bin/sh".into(),
                "-c".into(),
                format!(r#"[ "$(readlink /proc/1/root)" = {ROOT_MOUNT} ]"#),
            ]),
        }),
        period_seconds: Some(2),
        timeout_seconds: Some(2),
        failure_threshold: Some(3),
        ..Probe::default()
    }
}

/// Pins the pod to the node holding the box's root: by node name (`metadata.name`), which is
/// exact, where the `kubernetes.io/hostname` label may differ from it.
fn pin_to_node(node: &str) -> Affinity {
    Affinity {
        node_affinity: Some(NodeAffinity {
            required_during_scheduling_ignored_during_execution: Some(NodeSelector {
                node_selector_terms: vec![NodeSelectorTerm {
                    match_fields: Some(vec![NodeSelectorRequirement {
                        key: "metadata.name".into(),
                        operator: "In".into(),
                        values: Some(vec![node.to_owned()]),
                    }]),
                    ..NodeSelectorTerm::default()
                }],
            }),
            ..NodeAffinity::default()
        }),
        ..Affinity::default()
    }
}

/// The box's Deployment.
pub fn render_deployment(spec: &StartSpec, settings: &Settings) -> Deployment {
    let key = &spec.key;
    let name = names::object_name(&settings.instance, key);
    let annotations = BTreeMap::from([
        (ANNOTATION_NODE.to_owned(), settings.node_name.clone()),
        (ANNOTATION_ROOT.to_owned(), spec.root.to_string_lossy().into_owned()),
    ]);
    let (vols, mounts) = volumes(spec);
    let container = Container {
        name: CONTAINER.into(),
        image: Some(settings.runner_image.clone()),
        image_pull_policy: Some("IfNotPresent".into()),
        command: Some(vec!["/bin/sh".into(), "-c".into(), runner_script(&spec.hostname)]),
        env: Some(environment(&spec.env)),
        resources: Some(resource_requirements(&spec.resources)),
        // In-place resize (`update CPU/MEMORY`) without restarting PID 1.
        resize_policy: Some(vec![
            ContainerResizePolicy { resource_name: "cpu".into(), restart_policy: "NotRequired".into() },
            ContainerResizePolicy { resource_name: "memory".into(), restart_policy: "NotRequired".into() },
        ]),
        security_context: Some(SecurityContext { privileged: Some(true), ..SecurityContext::default() }),
        volume_mounts: Some(mounts),
        readiness_probe: Some(readiness_probe()),
        ..Container::default()
    };
    let search = vec![
        format!("{}.{}", key.project, settings.dns_zone),
        settings.dns_zone.clone(),
        key.project.clone(),
    ];
    let pod = PodSpec {
        containers: vec![container],
        volumes: Some(vols),
        affinity: Some(pin_to_node(&settings.node_name)),
        // `<box>.<service>.<namespace>.svc` resolves to the pod; the runner sets the kernel
        // hostname to `<box>.<project>` itself (a pod hostname cannot contain a dot).
        hostname: Some(key.name.clone()),
        subdomain: Some(name.clone()),
        dns_config: Some(PodDNSConfig {
            searches: Some(search),
            options: Some(vec![PodDNSConfigOption { name: Some("ndots".into()), value: Some("1".into()) }]),
            ..PodDNSConfig::default()
        }),
        // A box has no Kubernetes identity (document 004) and sees only its own environment.
        automount_service_account_token: Some(false),
        enable_service_links: Some(false),
        termination_grace_period_seconds: Some(spec.grace.as_secs().try_into().unwrap_or(i64::MAX)),
        ..PodSpec::default()
    };
    let pod_meta = ObjectMeta {
        labels: Some(names::labels(&settings.instance, key)),
        annotations: Some(annotations.clone()),
        ..ObjectMeta::default()
    };
    Deployment {
        metadata: ObjectMeta { annotations: Some(annotations), ..meta(&name, key, settings) },
        spec: Some(DeploymentSpec {
            replicas: Some(1),
            // Old ReplicaSets are useless here: a box is never rolled back.
            revision_history_limit: Some(0),
            selector: LabelSelector {
                match_labels: Some(names::selector(&settings.instance, key)),
                ..LabelSelector::default()
            },
            strategy: Some(DeploymentStrategy {
                type_: Some("Recreate".into()),
                ..DeploymentStrategy::default()
            }),
            template: PodTemplateSpec { metadata: Some(pod_meta), spec: Some(pod) },
            ..DeploymentSpec::default()
        }),
        ..Deployment::default()
    }
}

/// The box's headless Service: DNS returns the pod IP, every port is reachable between boxes; the
/// one declared port is what the Ingress targets (the box's `PORT`).
pub fn render_service(key: &BoxKey, exposure: &Exposure, settings: &Settings) -> Service {
    let name = names::object_name(&settings.instance, key);
    Service {
        metadata: meta(&name, key, settings),
        spec: Some(ServiceSpec {
            cluster_ip: Some("None".into()),
            selector: Some(names::selector(&settings.instance, key)),
            ports: Some(vec![ServicePort {
                name: Some("http".into()),
                port: i32::from(exposure.port),
                target_port: Some(IntOrString::Int(i32::from(exposure.port))),
                protocol: Some("TCP".into()),
                ..ServicePort::default()
            }]),
            ..ServiceSpec::default()
        }),
        ..Service::default()
    }
}

/// The box's Ingress: one rule per public host to the Service's port. TLS from the wildcard secret
/// when configured, else a per-box secret that cert-manager fills through the cluster issuer.
/// `None` when the box has no public host.
pub fn render_ingress(key: &BoxKey, exposure: &Exposure, settings: &Settings) -> Option<Ingress> {
    if exposure.hosts.is_empty() {
        return None;
    }
    let name = names::object_name(&settings.instance, key);
    let backend = IngressBackend {
        service: Some(IngressServiceBackend {
            name: name.clone(),
            port: Some(ServiceBackendPort { number: Some(i32::from(exposure.port)), ..Default::default() }),
        }),
        ..IngressBackend::default()
    };
    let rules = exposure
        .hosts
        .iter()
        .map(|h| IngressRule {
            host: Some(h.clone()),
            http: Some(HTTPIngressRuleValue {
                paths: vec![HTTPIngressPath {
                    path: Some("/".into()),
                    path_type: "Prefix".into(),
                    backend: backend.clone(),
                }],
            }),
        })
        .collect();
    let (secret, annotations) = match &settings.tls {
        Tls::WildcardSecret(secret) => (secret.clone(), None),
        Tls::ClusterIssuer(issuer) => (
            format!("{name}-tls"),
            Some(BTreeMap::from([(CLUSTER_ISSUER_ANNOTATION.to_owned(), issuer.clone())])),
        ),
    };
    Some(Ingress {
        metadata: ObjectMeta { annotations, ..meta(&name, key, settings) },
        spec: Some(IngressSpec {
            ingress_class_name: settings.ingress_class.clone(),
            rules: Some(rules),
            tls: Some(vec![IngressTLS { hosts: Some(exposure.hosts.clone()), secret_name: Some(secret) }]),
            ..IngressSpec::default()
        }),
        ..Ingress::default()
    })
}

#[cfg(test)]
mod tests;
