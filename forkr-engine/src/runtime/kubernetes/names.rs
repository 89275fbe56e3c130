//! What the driver calls its Kubernetes objects, and the labels that let a server find them again.
//!
//! Every object of a box (Deployment, Service, Ingress) has the same name. Kubernetes names are
//! narrower than Forkr's: a Service name is a DNS-1035 label (63 characters, starting with a letter),
//! while `<box>` and `<project>` are each up to 63 characters. So the name is a readable prefix plus a
//! hash of (instance, project, box): unique per server instance, stable across restarts, and never
//! parsed back. The exact identity lives in labels, which is what listing and adoption read.

use std::collections::BTreeMap;

use sha2::{Digest, Sha256};

use crate::runtime::BoxKey;

/// `app.kubernetes.io/managed-by` value on every object the driver makes; the field manager too.
pub const MANAGER: &str = "forkr";
/// Label keys.
pub const LABEL_MANAGED_BY: &str = "app.kubernetes.io/managed-by";
pub const LABEL_NAME: &str = "app.kubernetes.io/name";
pub const LABEL_INSTANCE: &str = "forkr.dev/instance";
pub const LABEL_PROJECT: &str = "forkr.dev/project";
pub const LABEL_BOX: &str = "forkr.dev/box";
/// The one label the Deployment and Service select on (the object name: unique, never changes).
pub const LABEL_ID: &str = "forkr.dev/id";
/// Annotations recording where the box's root lives (the node and the host path on it).
pub const ANNOTATION_NODE: &str = "forkr.dev/node";
pub const ANNOTATION_ROOT: &str = "forkr.dev/root";

/// Length of the readable part of an object name; with `fork-`, `-` and 8 hex digits the whole
/// name stays at most 54 characters, inside every Kubernetes name rule.
const READABLE_MAX: usize = 40;

/// The name of a box's Deployment, Service and Ingress: `fork-<box>-<project>` cut to fit, then
/// `-<hash>`. The hash covers the instance too, so servers on different nodes sharing a namespace
/// never collide.
pub fn object_name(instance: &str, key: &BoxKey) -> String {
    let mut h = Sha256::new();
    for part in [instance, &key.project, &key.name] {
        h.update(part.as_bytes());
        h.update([0]);
    }
    let digest = h.finalize();
    let hash: String = digest.iter().take(4).map(|b| format!("{b:02x}")).collect();
    let readable = format!("{}-{}", key.name, key.project);
    let cut = readable.get(..READABLE_MAX.min(readable.len())).unwrap_or(&readable).trim_end_matches('-');
    format!("fork-{cut}-{hash}")
}

/// Whether `s` is a valid label value (63 characters of `[A-Za-z0-9_.-]`, alphanumeric at both ends).
pub fn is_label_value(s: &str) -> bool {
    let b = s.as_bytes();
    b.len() <= 63
        && (b.is_empty()
            || (b[0].is_ascii_alphanumeric()
                && b[b.len() - 1].is_ascii_alphanumeric()
                && b.iter().all(|c| c.is_ascii_alphanumeric() || matches!(c, b'-' | b'_' | b'.'))))
}

/// The instance label value for a node: the node name when it is a valid label value, else a hash
/// of it (node names may be 253 characters; label values only 63).
pub fn instance_for_node(node: &str) -> String {
    if !node.is_empty() && is_label_value(node) {
        return node.to_owned();
    }
    let digest = Sha256::digest(node.as_bytes());
    let hash: String = digest.iter().take(8).map(|b| format!("{b:02x}")).collect();
    format!("node-{hash}")
}

/// The labels of every object (and pod) of a box.
pub fn labels(instance: &str, key: &BoxKey) -> BTreeMap<String, String> {
    BTreeMap::from([
        (LABEL_NAME.to_owned(), "forkr-box".to_owned()),
        (LABEL_MANAGED_BY.to_owned(), MANAGER.to_owned()),
        (LABEL_INSTANCE.to_owned(), instance.to_owned()),
        (LABEL_PROJECT.to_owned(), key.project.clone()),
        (LABEL_BOX.to_owned(), key.name.clone()),
        (LABEL_ID.to_owned(), object_name(instance, key)),
    ])
}

/// The selector of a box's Deployment and Service.
pub fn selector(instance: &str, key: &BoxKey) -> BTreeMap<String, String> {
    BTreeMap::from([(LABEL_ID.to_owned(), object_name(instance, key))])
}

/// The label selector (query form) of everything this server instance manages.
pub fn instance_selector(instance: &str) -> String {
    format!("{LABEL_MANAGED_BY}={MANAGER},{LABEL_INSTANCE}={instance}")
}

/// The box an object belongs to, from its labels, when it was made by this server instance.
pub fn owner(instance: &str, labels: Option<&BTreeMap<String, String>>) -> Option<BoxKey> {
    let l = labels?;
    if l.get(LABEL_MANAGED_BY).map(String::as_str) != Some(MANAGER)
        || l.get(LABEL_INSTANCE).map(String::as_str) != Some(instance)
    {
        return None;
    }
    Some(BoxKey { project: l.get(LABEL_PROJECT)?.clone(), name: l.get(LABEL_BOX)?.clone() })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(p: &str, b: &str) -> BoxKey {
        BoxKey { project: p.into(), name: b.into() }
    }

    #[test]
    fn names_are_readable_unique_and_fit_every_name_rule() {
        let n = object_name("node-a", &key("default", "web"));
        assert!(n.starts_with("fork-web-default-"), "{n}");
        assert_eq!(n.len(), "fork-web-default-".len() + 8);
        // Same inputs, same name (adoption after a restart depends on it).
        assert_eq!(n, object_name("node-a", &key("default", "web")));
        // Dashes do not make two boxes collide; nor do two instances.
        assert_ne!(object_name("i", &key("b-c", "a")), object_name("i", &key("c", "a-b")));
        assert_ne!(n, object_name("node-b", &key("default", "web")));
        // Longest names: still a DNS-1035 label (Service names), no dash before the hash doubled.
        let long = object_name("i", &key(&"p".repeat(63), &"b".repeat(63)));
        assert!(long.len() <= 54, "{long}");
        assert!(long.bytes().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == b'-'));
        assert!(!long.contains("--"), "{long}");
        let cut_at_dash = object_name("i", &key("p", &format!("{}-x", "a".repeat(39))));
        assert!(!cut_at_dash.contains("--"), "{cut_at_dash}");
        // Box names may start with a digit; the prefix keeps the name starting with a letter.
        assert!(object_name("i", &key("p", "1box")).starts_with("fork-1box-p-"));
    }

    #[test]
    fn instance_labels_and_owners() {
        assert_eq!(instance_for_node("node-a.example"), "node-a.example");
        let long = format!("{}.example.com", "n".repeat(60));
        let i = instance_for_node(&long);
        assert!(i.starts_with("node-") && is_label_value(&i), "{i}");
        assert!(!is_label_value("-a") && !is_label_value("a_") && !is_label_value(&"a".repeat(64)));
        let k = key("proj", "db");
        let l = labels("node-a", &k);
        assert_eq!(owner("node-a", Some(&l)), Some(k.clone()));
        assert_eq!(owner("node-b", Some(&l)), None, "another instance's object is not ours");
        let mut foreign = l.clone();
        foreign.insert(LABEL_MANAGED_BY.into(), "helm".into());
        assert_eq!(owner("node-a", Some(&foreign)), None);
        assert_eq!(owner("node-a", None), None);
        assert_eq!(
            instance_selector("node-a"),
            "app.kubernetes.io/managed-by=forkr,forkr.dev/instance=node-a"
        );
    }
}
