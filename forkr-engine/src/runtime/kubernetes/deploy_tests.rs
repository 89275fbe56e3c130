//! The manifests that deploy Forkr itself (`deploy/kubernetes/*.yaml`): each parsed and checked
//! against the Kubernetes OpenAPI types, pinned by golden (insta) snapshots, and checked for the
//! properties the runtime relies on (least RBAC rights, node pinning, same data path inside and
//! outside the server, names that agree across files).

use serde_json::Value;

use super::openapi::check_document;

const FILES: [(&str, &str); 6] = [
    ("namespace", include_str!("../../../../deploy/kubernetes/namespace.yaml")),
    ("rbac", include_str!("../../../../deploy/kubernetes/rbac.yaml")),
    ("configmap", include_str!("../../../../deploy/kubernetes/configmap.yaml")),
    ("daemonset", include_str!("../../../../deploy/kubernetes/daemonset.yaml")),
    ("service", include_str!("../../../../deploy/kubernetes/service.yaml")),
    ("ingress", include_str!("../../../../deploy/kubernetes/ingress.yaml")),
];

fn documents(text: &str) -> Vec<Value> {
    serde_saphyr::from_multiple::<Value>(text)
        .expect("valid YAML")
        .into_iter()
        .filter(|d| !d.is_null())
        .collect()
}

fn all() -> Vec<Value> {
    FILES.iter().flat_map(|(_, text)| documents(text)).collect()
}

fn find<'a>(docs: &'a [Value], kind: &str, name: &str) -> &'a Value {
    docs.iter()
        .find(|d| d["kind"] == kind && d["metadata"]["name"] == name)
        .unwrap_or_else(|| panic!("no {kind} {name} in deploy/kubernetes"))
}

#[test]
fn every_manifest_is_a_valid_kubernetes_object_and_matches_its_snapshot() {
    for (file, text) in FILES {
        let docs = documents(text);
        assert!(!docs.is_empty(), "{file}.yaml is empty");
        for d in &docs {
            check_document(d);
        }
        insta::assert_yaml_snapshot!(file, docs);
    }
}

#[test]
fn the_server_has_only_the_rights_the_driver_uses_and_only_in_the_boxes_namespace() {
    let docs = all();
    assert!(
        !docs.iter().any(|d| d["kind"] == "ClusterRole" || d["kind"] == "ClusterRoleBinding"),
        "no cluster-wide rights"
    );
    let role = find(&docs, "Role", "forkr-server");
    let mut rules: Vec<String> = role["rules"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|r| {
            let group = r["apiGroups"][0].as_str().unwrap().to_owned();
            let verbs: Vec<String> =
                r["verbs"].as_array().unwrap().iter().map(|v| v.as_str().unwrap().to_owned()).collect();
            r["resources"]
                .as_array()
                .unwrap()
                .iter()
                .map(move |res| format!("{group}/{}: {}", res.as_str().unwrap(), verbs.join(",")))
        })
        .collect();
    rules.sort();
    assert_eq!(
        rules,
        [
            "/pods/exec: get,create",
            "/pods/resize: patch",
            "/pods: get,list,watch,delete",
            "/services: get,create,update,delete",
            "apps/deployments/scale: patch",
            "apps/deployments: get,list,create,update,patch,delete",
            "networking.k8s.io/ingresses: get,create,update,delete",
        ]
    );
    let config = find(&docs, "ConfigMap", "forkr-server");
    let boxes_ns = config["data"]["FORKR_KUBE_NAMESPACE"].as_str().unwrap();
    assert_eq!(role["metadata"]["namespace"], boxes_ns);
    find(&docs, "Namespace", boxes_ns);
    let binding = find(&docs, "RoleBinding", "forkr-server");
    let sa = find(&docs, "ServiceAccount", "forkr-server");
    assert_eq!(binding["metadata"]["namespace"], boxes_ns);
    assert_eq!(binding["subjects"][0]["name"], sa["metadata"]["name"]);
    assert_eq!(binding["subjects"][0]["namespace"], sa["metadata"]["namespace"]);
}

#[test]
fn the_server_runs_privileged_on_btrfs_nodes_with_the_data_dir_at_the_same_path() {
    let docs = all();
    let ds = find(&docs, "DaemonSet", "forkr-server");
    let pod = &ds["spec"]["template"]["spec"];
    assert_eq!(pod["nodeSelector"]["forkr.dev/btrfs"], "true");
    assert_eq!(pod["serviceAccountName"], "forkr-server");
    // The node exec path finds box processes in the host's /proc.
    assert_eq!(pod["hostPID"], true);
    let c = &pod["containers"][0];
    assert_eq!(c["securityContext"]["privileged"], true);
    let env = c["env"].as_array().unwrap();
    let from = |name: &str| {
        env.iter().find(|e| e["name"] == name).map(|e| e["valueFrom"]["fieldRef"]["fieldPath"].clone())
    };
    assert_eq!(from("FORKR_NODE_NAME"), Some("spec.nodeName".into()));
    assert_eq!(from("FORKR_NODE_IP"), Some("status.hostIP".into()));
    let config = find(&docs, "ConfigMap", "forkr-server");
    assert_eq!(c["envFrom"][0]["configMapRef"]["name"], config["metadata"]["name"]);
    let data_dir = config["data"]["FORKR_DATA_DIR"].as_str().unwrap();
    let mount = c["volumeMounts"].as_array().unwrap().iter().find(|m| m["name"] == "data").unwrap();
    assert_eq!(mount["mountPath"], data_dir);
    assert_eq!(mount["mountPropagation"], "Bidirectional");
    let vol = pod["volumes"].as_array().unwrap().iter().find(|v| v["name"] == "data").unwrap();
    assert_eq!(vol["hostPath"]["path"], data_dir, "box pods mount the paths the server names");
    assert_eq!(config["data"]["FORKR_RUNTIME"], "kubernetes");
    // Box hosts are routed by their Ingresses: the local runtime's publish proxy stays off.
    assert_eq!(config["data"]["FORKR_PROXY_LISTEN"], "off");
    assert_eq!(config["data"]["FORKR_PROXY_HTTP_LISTEN"], "off");
    assert!(
        !config["data"]["FORKR_DOMAIN"].as_str().unwrap_or_default().is_empty(),
        "FORKR_DOMAIN is required"
    );
    // The API Service reaches the server's port; the Ingress reaches the Service.
    let svc = find(&docs, "Service", "forkr-api");
    assert_eq!(svc["spec"]["selector"], ds["spec"]["selector"]["matchLabels"]);
    assert_eq!(svc["spec"]["ports"][0]["targetPort"], c["ports"][0]["name"]);
    let ing = find(&docs, "Ingress", "forkr-api");
    assert_eq!(ing["spec"]["rules"][0]["http"]["paths"][0]["backend"]["service"]["name"], "forkr-api");
}
