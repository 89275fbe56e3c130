//! What the server reports: the state a plan is made against.
//!
//! Boxes are the API's [`BoxInfo`]; bases, volumes, snapshots and publishes are small structs here
//! that the server's list endpoints can return as they are. [`Observed::fingerprint`] digests the
//! parts a plan depends on, so a saved plan can be refused once the server has changed.

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};

use crate::api::{BoxInfo, DataMount};
use crate::spec::model::sha256_hex;
use crate::spec::{Known, OWNER_TAG_PREFIX};

/// The server's state for one project.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Observed {
    pub project: String,
    #[serde(default)]
    pub boxes: Vec<BoxInfo>,
    #[serde(default)]
    pub bases: Vec<ObservedBase>,
    #[serde(default)]
    pub volumes: Vec<ObservedVolume>,
    /// Snapshots by box name.
    #[serde(default)]
    pub snapshots: BTreeMap<String, Vec<ObservedSnapshot>>,
    /// Every published host the server knows, in any project (a host has one owner server-wide);
    /// used to warn before a publish that would need `force`. A box's own hosts are in
    /// [`BoxInfo::published`].
    #[serde(default)]
    pub publishes: Vec<ObservedPublish>,
    /// The server's default publish domain (`subdomain` publishes live under it), when it has one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub publish_domain: Option<String>,
}

/// A base alias and its versions.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ObservedBase {
    /// The alias.
    pub name: String,
    /// The version the alias points at (the newest).
    pub latest: String,
    #[serde(default)]
    pub versions: Vec<ObservedBaseVersion>,
    /// Tags on the alias (the ownership tag of the workspace that built it).
    #[serde(default)]
    pub tags: Vec<String>,
}

/// One version of a base.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ObservedBaseVersion {
    /// `NAME` or `NAME-vYYYYMMDDHHMMSS`.
    pub version: String,
    /// `script`, `dockerfile`, `tarball`, `save` or `debootstrap`.
    #[serde(default)]
    pub kind: String,
    /// The build's sha256 (script, Dockerfile or tarball), when it was built from one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tag: Option<String>,
    /// The parent version it was built on.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub parent: Option<String>,
    /// The build script, for script builds (the plan shows a diff against it).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub script: Option<String>,
    #[serde(default)]
    pub created_at: String,
}

/// A data volume.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ObservedVolume {
    pub name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub size_mib: Option<u64>,
    #[serde(default)]
    pub tags: Vec<String>,
}

/// A snapshot of a box's root.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ObservedSnapshot {
    pub name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    #[serde(default)]
    pub created_at: String,
}

/// A published host and the box it routes to.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ObservedPublish {
    pub host: String,
    pub project: String,
    #[serde(rename = "box")]
    pub box_name: String,
}

/// The objects a plan depends on: what [`Observed::fingerprint`] covers. Objects carrying
/// `owner_tag` are always covered (they may be pruned), named ones whether they exist or not.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct FingerprintScope {
    pub owner_tag: String,
    #[serde(default)]
    pub bases: BTreeSet<String>,
    #[serde(default)]
    pub volumes: BTreeSet<String>,
    #[serde(default)]
    pub boxes: BTreeSet<String>,
    #[serde(default)]
    pub hosts: BTreeSet<String>,
}

/// Whether `tags` holds an ownership tag, and whose.
pub(crate) fn owner_of(tags: &[String]) -> Option<&str> {
    tags.iter().find_map(|t| t.strip_prefix(OWNER_TAG_PREFIX))
}

impl Observed {
    /// The names references in the files may use (aliases and every version for bases).
    pub fn known(&self) -> Known {
        let mut known = Known::default();
        for b in &self.bases {
            known.bases.insert(b.name.clone());
            known.bases.insert(b.latest.clone());
            known.bases.extend(b.versions.iter().map(|v| v.version.clone()));
        }
        known.volumes.extend(self.volumes.iter().map(|v| v.name.clone()));
        known.boxes.extend(self.boxes.iter().map(|b| b.name.clone()));
        known
    }

    /// A digest (`sha256:<hex>`) of everything in `scope` that planning reads: box settings, tags,
    /// mounts, environment, hosts and snapshot names; base versions and their tags; volume sizes
    /// and tags. Status and timestamps are left out, so stopping a box does not stale a plan.
    pub fn fingerprint(&self, scope: &FingerprintScope) -> String {
        let owner = scope.owner_tag.as_str();
        let owned = |tags: &[String]| !owner.is_empty() && tags.iter().any(|t| t == owner);

        let mut boxes: Vec<BoxPrint> = self
            .boxes
            .iter()
            .filter(|b| scope.boxes.contains(&b.name) || owned(&b.tags))
            .map(|b| {
                let mut tags = b.tags.clone();
                tags.sort();
                let mut data = b.data.clone();
                data.sort_by(|x, y| x.name.cmp(&y.name));
                let mut published = b.published.clone();
                published.sort();
                let mut snapshots: Vec<String> = self
                    .snapshots
                    .get(&b.name)
                    .map(|s| s.iter().map(|x| x.name.clone()).collect())
                    .unwrap_or_default();
                snapshots.sort();
                BoxPrint {
                    name: b.name.clone(),
                    base: b.base.clone(),
                    forked_from: b.forked_from.clone(),
                    port: b.port,
                    cpus: format!("{:.6}", b.cpus),
                    ram_mb: b.ram_mb,
                    grace: b.termination_grace_seconds,
                    tags,
                    data,
                    env: b.env.clone(),
                    published,
                    snapshots,
                }
            })
            .collect();
        boxes.sort_by(|a, b| a.name.cmp(&b.name));

        let mut bases: Vec<BasePrint> = self
            .bases
            .iter()
            .filter(|b| scope.bases.contains(&b.name) || owned(&b.tags))
            .map(|b| {
                let mut versions: Vec<(String, Option<String>, Option<String>)> =
                    b.versions.iter().map(|v| (v.version.clone(), v.tag.clone(), v.parent.clone())).collect();
                versions.sort();
                let mut tags = b.tags.clone();
                tags.sort();
                BasePrint { name: b.name.clone(), latest: b.latest.clone(), versions, tags }
            })
            .collect();
        bases.sort_by(|a, b| a.name.cmp(&b.name));

        let mut volumes: Vec<(String, Option<u64>, Vec<String>)> = self
            .volumes
            .iter()
            .filter(|v| scope.volumes.contains(&v.name) || owned(&v.tags))
            .map(|v| {
                let mut tags = v.tags.clone();
                tags.sort();
                (v.name.clone(), v.size_mib, tags)
            })
            .collect();
        volumes.sort();

        let mut hosts: Vec<(String, String, String)> = self
            .publishes
            .iter()
            .filter(|p| scope.hosts.contains(&p.host))
            .map(|p| (p.host.clone(), p.project.clone(), p.box_name.clone()))
            .collect();
        hosts.sort();

        let print = Print {
            project: &self.project,
            publish_domain: self.publish_domain.as_deref(),
            boxes,
            bases,
            volumes,
            hosts,
        };
        // Serializing plain structs, vectors and a BTreeMap cannot fail, and their order is fixed.
        let text = serde_json::to_string(&print).unwrap_or_default();
        format!("sha256:{}", sha256_hex(text.as_bytes()))
    }
}

#[derive(Serialize)]
struct Print<'a> {
    project: &'a str,
    publish_domain: Option<&'a str>,
    boxes: Vec<BoxPrint>,
    bases: Vec<BasePrint>,
    volumes: Vec<(String, Option<u64>, Vec<String>)>,
    hosts: Vec<(String, String, String)>,
}

#[derive(Serialize)]
struct BoxPrint {
    name: String,
    base: String,
    forked_from: Option<String>,
    port: u16,
    cpus: String,
    ram_mb: u64,
    grace: u64,
    tags: Vec<String>,
    data: Vec<DataMount>,
    env: BTreeMap<String, String>,
    published: Vec<String>,
    snapshots: Vec<String>,
}

#[derive(Serialize)]
struct BasePrint {
    name: String,
    latest: String,
    versions: Vec<(String, Option<String>, Option<String>)>,
    tags: Vec<String>,
}
