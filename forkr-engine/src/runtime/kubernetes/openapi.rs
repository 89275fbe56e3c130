//! Test support: checking manifests against the Kubernetes OpenAPI types of k8s-openapi.
//!
//! A manifest passes when it deserializes into its typed object *and* serializes back to exactly
//! the same JSON. k8s-openapi's types ignore fields they do not know, so a typo (`nodeSelectr`) or a
//! field of another API version would vanish on the way back and fail the comparison; a wrong
//! type or a missing required field fails the deserialization.

use std::fmt::Debug;

use k8s_openapi::api::apps::v1::{DaemonSet, Deployment};
use k8s_openapi::api::core::v1::{ConfigMap, Namespace, Service, ServiceAccount};
use k8s_openapi::api::networking::v1::Ingress;
use k8s_openapi::api::rbac::v1::{ClusterRole, ClusterRoleBinding, Role, RoleBinding};
use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::Value;

/// Deserializes `value` into `K` and checks that nothing was lost or changed.
pub fn strict<K: DeserializeOwned + Serialize + Debug>(value: &Value) -> K {
    let typed: K = serde_json::from_value(value.clone())
        .unwrap_or_else(|e| panic!("not a valid {}: {e}\n{value:#}", std::any::type_name::<K>()));
    let back = serde_json::to_value(&typed).expect("serializing a typed object");
    assert_eq!(&back, value, "fields unknown to {} were dropped", std::any::type_name::<K>());
    typed
}

/// A typed object survives a YAML round trip unchanged (what `kubectl apply -f` would read).
pub fn yaml_roundtrip<K: DeserializeOwned + Serialize + Debug + PartialEq>(obj: &K) {
    let yaml = serde_saphyr::to_string(obj).expect("serializing to YAML");
    let back: K =
        serde_saphyr::from_str(&yaml).unwrap_or_else(|e| panic!("YAML did not parse back: {e}\n{yaml}"));
    assert_eq!(&back, obj);
    strict::<K>(&serde_json::to_value(obj).expect("serializing to JSON"));
}

/// Checks one manifest document by its `kind`; returns the kind and name.
pub fn check_document(doc: &Value) -> (String, String) {
    let kind = doc["kind"].as_str().unwrap_or_else(|| panic!("a document without kind: {doc:#}")).to_owned();
    let name = doc["metadata"]["name"].as_str().unwrap_or_else(|| panic!("a {kind} without name")).to_owned();
    match kind.as_str() {
        "Namespace" => drop(strict::<Namespace>(doc)),
        "ServiceAccount" => drop(strict::<ServiceAccount>(doc)),
        "Role" => drop(strict::<Role>(doc)),
        "RoleBinding" => drop(strict::<RoleBinding>(doc)),
        "ClusterRole" => drop(strict::<ClusterRole>(doc)),
        "ClusterRoleBinding" => drop(strict::<ClusterRoleBinding>(doc)),
        "ConfigMap" => drop(strict::<ConfigMap>(doc)),
        "DaemonSet" => drop(strict::<DaemonSet>(doc)),
        "Deployment" => drop(strict::<Deployment>(doc)),
        "Service" => drop(strict::<Service>(doc)),
        "Ingress" => drop(strict::<Ingress>(doc)),
        other => panic!("no OpenAPI check for kind {other}"),
    }
    (kind, name)
}

#[test]
fn the_check_catches_typos_and_wrong_types() {
    let ok = serde_json::json!({"apiVersion": "v1", "kind": "Service", "metadata": {"name": "a"},
                                "spec": {"clusterIP": "None"}});
    check_document(&ok);
    let typo = serde_json::json!({"apiVersion": "v1", "kind": "Service", "metadata": {"name": "a"},
                                  "spec": {"clusterIp": "None"}});
    assert!(std::panic::catch_unwind(|| check_document(&typo)).is_err(), "a misspelt field passed");
    let wrong = serde_json::json!({"apiVersion": "v1", "kind": "Service", "metadata": {"name": "a"},
                                   "spec": {"ports": [{"port": "http"}]}});
    assert!(std::panic::catch_unwind(|| check_document(&wrong)).is_err(), "a string port passed");
    let kind = serde_json::json!({"apiVersion": "apps/v1", "kind": "Service", "metadata": {"name": "a"}});
    assert!(std::panic::catch_unwind(|| check_document(&kind)).is_err(), "a wrong apiVersion passed");
}
