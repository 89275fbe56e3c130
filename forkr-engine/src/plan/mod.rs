//! Plans: what it takes to turn the server's state into the workspace's.
//!
//! [`plan`] is a pure function of the loaded [`Workspace`], the [`Observed`] server state and
//! [`PlanOptions`]; it never fails and never talks to anything, so `4kr plan` can run it on the
//! client and `apply` can re-run it on the server under the project lock.
//!
//! Actions (see [`Op`]): `+` create, `~` update in place (port, cpu, memory, grace, tags; a base's
//! new version; a volume growing), `-/+` replace (settings a box cannot change in place: env, data
//! mounts, base, fork source; when only env or mounts changed the new box keeps the old root
//! filesystem, [`Action::keep_root`]), `-` delete (only objects carrying this workspace's ownership
//! tag, and only with `prune`; a publish removed from a managed box is also a `-`).
//!
//! Order: every action lists the actions it must wait for; [`Plan::waves`] groups them into waves
//! of independent actions (run a wave in parallel, then the next). Within a wave actions are sorted
//! bases, volumes, boxes, snapshots, publishes.
//!
//! Saved plans: [`Plan::fingerprint`] digests the observed objects the plan depends on
//! ([`Plan::scope`]); [`Plan::check_fresh`] refuses a plan once the server changed (409
//! `stale_plan`). The JSON form carries [`PLAN_FORMAT_VERSION`].
//!
//! Contract for the executor (the server's apply): a snapshot create and a publish are "ensure"
//! operations (already there means done); [`Request::ReplaceBox`] with `keep_root` recreates the
//! box with the new settings on the old root filesystem and keeps its `forked_from`, then the
//! plan's own snapshot and publish actions restore those.

mod compute;
pub mod observed;
mod render;

#[cfg(test)]
mod tests;

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::Value;

pub use observed::{
    FingerprintScope, Observed, ObservedBase, ObservedBaseVersion, ObservedPublish, ObservedSnapshot,
    ObservedVolume,
};
pub use render::RenderOptions;

use crate::api::{CreateBox, UpdateBox};
use crate::spec::{BaseBuild, Workspace, WorkspaceId};
use crate::{Error, Result};

/// The version of the plan JSON format; bumped on incompatible changes.
pub const PLAN_FORMAT_VERSION: u32 = 1;

/// Options of a plan.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct PlanOptions {
    /// Delete objects this workspace created that are no longer in the files.
    #[serde(default)]
    pub prune: bool,
    /// Limit the plan to these objects and what they depend on: `web` or `box.web` for a box,
    /// `base.NAME`, `volume.NAME`.
    #[serde(default)]
    pub targets: Vec<String>,
    /// Boxes to recreate from scratch even if nothing changed (like Terraform's `-replace`).
    #[serde(default)]
    pub replace: Vec<String>,
}

/// Computes the plan. Pure: the same inputs give the same plan.
pub fn plan(desired: &Workspace, observed: &Observed, opts: &PlanOptions) -> Plan {
    compute::compute(desired, observed, opts)
}

/// What an action does to its object.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Op {
    Create,
    Update,
    Replace,
    Delete,
}

impl Op {
    /// The symbol of the human rendering: `+`, `~`, `-/+`, `-`.
    pub fn symbol(self) -> &'static str {
        match self {
            Op::Create => "+",
            Op::Update => "~",
            Op::Replace => "-/+",
            Op::Delete => "-",
        }
    }
}

/// The kind of object, in dependency order.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ObjectKind {
    Base,
    Volume,
    Box,
    Snapshot,
    Publish,
}

impl ObjectKind {
    pub fn noun(self) -> &'static str {
        match self {
            ObjectKind::Base => "base",
            ObjectKind::Volume => "volume",
            ObjectKind::Box => "box",
            ObjectKind::Snapshot => "snapshot",
            ObjectKind::Publish => "publish",
        }
    }
}

/// One field's change: `before` is `None` for a new value, `after` `None` for a removed one.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Change {
    pub field: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub before: Option<Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub after: Option<Value>,
    /// This change alone cannot be made in place.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub forces_replacement: bool,
}

/// What the executor sends or does, with everything it needs (a saved plan is applied as is).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Request {
    /// Build a new version of base `name` (`tags` go on the alias).
    BuildBase {
        name: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        from: Option<String>,
        build: BaseBuild,
        tag: String,
        tags: Vec<String>,
    },
    CreateVolume {
        name: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        size_mib: Option<u64>,
        tags: Vec<String>,
    },
    ResizeVolume {
        name: String,
        size_mib: u64,
    },
    CreateBox {
        create: CreateBox,
    },
    /// `PATCH` the box with these allowlisted settings and tags.
    UpdateBox {
        name: String,
        update: UpdateBox,
    },
    /// Delete and recreate the box; with `keep_root`, on its current root filesystem.
    ReplaceBox {
        create: CreateBox,
        keep_root: bool,
    },
    /// Make sure the snapshot exists.
    CreateSnapshot {
        #[serde(rename = "box")]
        box_name: String,
        name: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        description: Option<String>,
    },
    /// Make sure the host routes to the box.
    Publish {
        #[serde(rename = "box")]
        box_name: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        subdomain: Option<String>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        domain: Option<String>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        host: Option<String>,
        #[serde(default)]
        force: bool,
    },
    Unpublish {
        #[serde(rename = "box")]
        box_name: String,
        host: String,
    },
    /// Delete the box (force: it may be running).
    DeleteBox {
        name: String,
    },
    DeleteVolume {
        name: String,
    },
    DeleteBase {
        name: String,
    },
}

/// One step of a plan.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Action {
    /// Stable id: `base.NAME`, `volume.NAME`, `box.NAME`, `snapshot.BOX.NAME`, `publish.BOX.HOST`.
    pub id: String,
    pub op: Op,
    pub object: ObjectKind,
    /// The object's name (for snapshots the snapshot's, for publishes the host or subdomain).
    pub name: String,
    /// The box a snapshot or publish belongs to.
    #[serde(rename = "box", default, skip_serializing_if = "Option::is_none")]
    pub box_name: Option<String>,
    /// Field-level changes (for a create, the values it sets).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub changes: Vec<Change>,
    /// Why: the replacement reason, what a delete is about, an adoption.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// For a replace: the new box keeps the old one's root filesystem.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub keep_root: bool,
    /// The 0-based wave this action runs in.
    pub wave: usize,
    /// Ids of the actions that must finish first.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub depends_on: Vec<String>,
    pub request: Request,
}

/// Counts for the summary line.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Summary {
    pub add: usize,
    pub change: usize,
    pub replace: usize,
    pub destroy: usize,
}

/// A plan.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Plan {
    pub format_version: u32,
    pub project: String,
    pub workspace: WorkspaceId,
    /// The tag created objects carry.
    pub owner_tag: String,
    pub prune: bool,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub targets: Vec<String>,
    /// [`Observed::fingerprint`] of the state this plan was made against, over [`Plan::scope`].
    pub fingerprint: String,
    pub scope: FingerprintScope,
    pub summary: Summary,
    /// In execution order (by wave, then object kind, then name).
    pub actions: Vec<Action>,
    /// Action ids per wave.
    pub waves: Vec<Vec<String>>,
    /// Things worth knowing that do not stop an apply (objects left for `--prune`, a volume that
    /// cannot shrink, an adoption, a host that needs `force`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub warnings: Vec<String>,
    /// Things that stop an apply: objects in the files that another workspace owns.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub conflicts: Vec<String>,
}

impl Plan {
    /// No actions: the server matches the files.
    pub fn is_empty(&self) -> bool {
        self.actions.is_empty()
    }

    /// `Plan: N to add, N to change, N to replace, N to destroy.`
    pub fn summary_line(&self) -> String {
        let s = self.summary;
        format!(
            "Plan: {} to add, {} to change, {} to replace, {} to destroy.",
            s.add, s.change, s.replace, s.destroy
        )
    }

    /// The human rendering, like Terraform's.
    pub fn render(&self, opts: &RenderOptions) -> String {
        render::render(self, opts)
    }

    /// The stable JSON form (pretty, with a final newline).
    pub fn to_json(&self) -> String {
        // A plan holds only strings, numbers, maps and lists: serializing cannot fail.
        let mut text = serde_json::to_string_pretty(self).unwrap_or_default();
        text.push('\n');
        text
    }

    /// Reads a saved plan, refusing other format versions.
    pub fn from_json(text: &str) -> Result<Plan> {
        #[derive(Deserialize)]
        struct Header {
            format_version: u32,
        }
        let header: Header = serde_json::from_str(text)
            .map_err(|e| Error::bad_request("invalid_plan", format!("this is not a Forkr plan file: {e}")))?;
        if header.format_version != PLAN_FORMAT_VERSION {
            return Err(Error::bad_request(
                "unsupported_plan_format",
                format!(
                    "the plan file has format version {}, this Forkr reads version {PLAN_FORMAT_VERSION}; make the plan again with this version",
                    header.format_version
                ),
            ));
        }
        serde_json::from_str(text)
            .map_err(|e| Error::bad_request("invalid_plan", format!("the plan file is damaged: {e}")))
    }

    /// Refuses the plan (409 `stale_plan`) when `observed` differs from what it was made against.
    pub fn check_fresh(&self, observed: &Observed) -> Result<()> {
        if observed.project != self.project {
            return Err(Error::conflict(
                "stale_plan",
                format!("the plan is for project {:?}, not {:?}", self.project, observed.project),
            ));
        }
        if observed.fingerprint(&self.scope) != self.fingerprint {
            return Err(Error::conflict(
                "stale_plan",
                "the server changed since this plan was made; run `4kr plan` again and apply the new plan",
            ));
        }
        Ok(())
    }

    /// The action with this id.
    pub fn action(&self, id: &str) -> Option<&Action> {
        self.actions.iter().find(|a| a.id == id)
    }

    /// Actions grouped per wave, in order (what an executor iterates).
    pub fn actions_by_wave(&self) -> Vec<Vec<&Action>> {
        let by_id: BTreeMap<&str, &Action> = self.actions.iter().map(|a| (a.id.as_str(), a)).collect();
        self.waves
            .iter()
            .map(|w| w.iter().filter_map(|id| by_id.get(id.as_str()).copied()).collect())
            .collect()
    }
}
