//! The planning algorithm behind [`super::plan`].
//!
//! Desired objects are visited in dependency order (bases parent-first, then volumes, then boxes
//! fork-source-first) so that a cascade is known when it matters: a box on a base that gets a new
//! version, or a fork whose source is recreated, is replaced too. Deletions come last. Then every
//! action's `depends_on` is filled from what it needs, and waves are the longest-path layering of
//! that graph.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use serde_json::{Value, json};

use super::observed::{ObservedBase, ObservedVolume, owner_of};
use super::{
    Action, Change, FingerprintScope, ObjectKind, Observed, Op, PLAN_FORMAT_VERSION, Plan, PlanOptions,
    Request, Summary,
};
use crate::api::{BoxInfo, CreateBox, DataMount, UpdateBox};
use crate::name::DEFAULT_BASE;
use crate::spec::model::INJECTED_ENV;
use crate::spec::{Base, BaseBuild, BoxDef, BoxSource, Publish, Workspace};

/// The port a box serves on when nothing says otherwise (document 002).
const DEFAULT_PORT: u16 = 8080;

pub(super) fn compute(ws: &Workspace, obs: &Observed, opts: &PlanOptions) -> Plan {
    let mut p = Planner::new(ws, obs, opts);
    p.plan_bases();
    p.plan_volumes();
    p.plan_boxes();
    p.plan_deletions();
    p.finish()
}

fn alias_of(reference: &str) -> &str {
    reference.split(':').next().unwrap_or(reference)
}

/// What `--target` lets through.
struct Targets {
    bases: BTreeSet<String>,
    volumes: BTreeSet<String>,
    boxes: BTreeSet<String>,
}

struct Planner<'a> {
    ws: &'a Workspace,
    obs: &'a Observed,
    opts: &'a PlanOptions,
    owner: String,
    boxes: HashMap<&'a str, &'a BoxInfo>,
    bases: HashMap<&'a str, &'a ObservedBase>,
    volumes: HashMap<&'a str, &'a ObservedVolume>,
    targets: Option<Targets>,
    actions: Vec<Action>,
    /// Action id → op, for dependency lookups.
    ops: HashMap<String, Op>,
    /// Workspace bases that get a new version in this plan.
    rebuilt: BTreeSet<String>,
    /// Boxes whose root filesystem is made anew in this plan (created, or replaced without
    /// keeping the root).
    new_roots: BTreeSet<String>,
    warnings: Vec<String>,
    conflicts: Vec<String>,
    pending_prune: Vec<String>,
}

impl<'a> Planner<'a> {
    fn new(ws: &'a Workspace, obs: &'a Observed, opts: &'a PlanOptions) -> Planner<'a> {
        let mut p = Planner {
            ws,
            obs,
            opts,
            owner: ws.owner_tag(),
            boxes: obs.boxes.iter().map(|b| (b.name.as_str(), b)).collect(),
            bases: obs.bases.iter().map(|b| (b.name.as_str(), b)).collect(),
            volumes: obs.volumes.iter().map(|v| (v.name.as_str(), v)).collect(),
            targets: None,
            actions: Vec::new(),
            ops: HashMap::new(),
            rebuilt: BTreeSet::new(),
            new_roots: BTreeSet::new(),
            warnings: Vec::new(),
            conflicts: Vec::new(),
            pending_prune: Vec::new(),
        };
        p.targets = p.resolve_targets();
        for name in &opts.replace {
            if !ws.boxes.contains_key(name) {
                p.warnings.push(format!("--replace {name}: there is no box {name:?} in the workspace files"));
            }
        }
        p
    }

    // ----- targets -----

    fn resolve_targets(&mut self) -> Option<Targets> {
        if self.opts.targets.is_empty() {
            return None;
        }
        let mut t = Targets { bases: BTreeSet::new(), volumes: BTreeSet::new(), boxes: BTreeSet::new() };
        for target in &self.opts.targets {
            let (kind, name) = if let Some(n) = target.strip_prefix("base.") {
                ("base", n)
            } else if let Some(n) = target.strip_prefix("volume.") {
                ("volume", n)
            } else {
                ("box", target.strip_prefix("box.").unwrap_or(target))
            };
            let exists = match kind {
                "base" => self.ws.bases.contains_key(name) || self.bases.contains_key(name),
                "volume" => self.ws.volumes.contains_key(name) || self.volumes.contains_key(name),
                _ => self.ws.boxes.contains_key(name) || self.boxes.contains_key(name),
            };
            if !exists {
                self.warnings
                    .push(format!("--target {target}: no {kind} {name:?} in the files or on the server"));
            }
            match kind {
                "base" => self.target_base(&mut t, name),
                "volume" => {
                    t.volumes.insert(name.to_owned());
                }
                _ => self.target_box(&mut t, name),
            }
        }
        Some(t)
    }

    fn target_base(&self, t: &mut Targets, name: &str) {
        if !t.bases.insert(name.to_owned()) {
            return;
        }
        if let Some(parent) = self.ws.bases.get(name).and_then(|b| b.from.as_deref()) {
            let alias = alias_of(parent);
            if self.ws.bases.contains_key(alias) {
                self.target_base(t, alias);
            }
        }
    }

    fn target_box(&self, t: &mut Targets, name: &str) {
        if !t.boxes.insert(name.to_owned()) {
            return;
        }
        let Some(b) = self.ws.boxes.get(name) else { return };
        match &b.source {
            BoxSource::Fork(src) => self.target_box(t, src),
            BoxSource::Base(r) => {
                if self.ws.bases.contains_key(alias_of(r)) {
                    self.target_base(t, alias_of(r));
                }
            }
        }
        for m in &b.data {
            t.volumes.insert(m.name.clone());
        }
    }

    fn in_scope(&self, kind: ObjectKind, name: &str) -> bool {
        match &self.targets {
            None => true,
            Some(t) => match kind {
                ObjectKind::Base => t.bases.contains(name),
                ObjectKind::Volume => t.volumes.contains(name),
                _ => t.boxes.contains(name),
            },
        }
    }

    // ----- helpers -----

    fn push(&mut self, action: Action) {
        self.ops.insert(action.id.clone(), action.op);
        self.actions.push(action);
    }

    fn has(&self, id: &str) -> bool {
        self.ops.contains_key(id)
    }

    /// Whether observed base version `version` satisfies `reference` (alias, exact version or
    /// `alias:tag`).
    fn is_version_of(&self, version: &str, reference: &str) -> bool {
        if version == reference {
            return true;
        }
        let (alias, tag) = match reference.split_once(':') {
            Some((a, t)) => (a, Some(t)),
            None => (reference, None),
        };
        if let Some(ob) = self.bases.get(alias) {
            if let Some(tag) = tag {
                return ob.versions.iter().any(|v| v.version == version && v.tag.as_deref() == Some(tag));
            }
            if ob.latest == version || ob.versions.iter().any(|v| v.version == version) {
                return true;
            }
        }
        // The versioning convention: NAME, then NAME-vYYYYMMDDHHMMSS.
        tag.is_none()
            && version
                .strip_prefix(alias)
                .and_then(|r| r.strip_prefix("-v"))
                .is_some_and(|r| r.len() == 14 && r.bytes().all(|c| c.is_ascii_digit()))
    }

    /// Another workspace's ownership tag on an object this workspace describes.
    fn foreign_owner(&self, tags: &[String]) -> Option<String> {
        owner_of(tags).filter(|o| *o != self.ws.id.as_str()).map(str::to_owned)
    }

    // ----- bases -----

    fn bases_in_order(&self) -> Vec<&'a Base> {
        fn visit<'b>(ws: &'b Workspace, name: &str, seen: &mut BTreeSet<String>, out: &mut Vec<&'b Base>) {
            if !seen.insert(name.to_owned()) {
                return;
            }
            let Some(b) = ws.bases.get(name) else { return };
            if let Some(parent) = &b.from {
                visit(ws, alias_of(parent), seen, out);
            }
            out.push(b);
        }
        let mut seen = BTreeSet::new();
        let mut out = Vec::new();
        for name in self.ws.bases.keys() {
            visit(self.ws, name, &mut seen, &mut out);
        }
        out
    }

    fn plan_bases(&mut self) {
        for base in self.bases_in_order() {
            if !self.in_scope(ObjectKind::Base, &base.name) {
                continue;
            }
            let parent = base
                .from
                .clone()
                .or_else(|| matches!(base.build, BaseBuild::Script { .. }).then(|| DEFAULT_BASE.to_owned()));
            let mut deps = Vec::new();
            if let Some(p) = &parent
                && self.rebuilt.contains(alias_of(p))
            {
                deps.push(format!("base.{}", alias_of(p)));
            }
            let request = Request::BuildBase {
                name: base.name.clone(),
                from: parent.clone(),
                build: base.build.clone(),
                tag: base.tag.clone(),
                tags: vec![self.owner.clone()],
            };
            let Some(ob) = self.bases.get(base.name.as_str()).copied() else {
                let mut changes = vec![added("kind", json!(base.build.kind()))];
                if let Some(p) = &parent {
                    changes.push(added("from", json!(p)));
                }
                changes.extend(build_fields(&base.build, None));
                changes.push(added("tag", json!(base.tag)));
                self.rebuilt.insert(base.name.clone());
                self.push(action(
                    format!("base.{}", base.name),
                    Op::Create,
                    ObjectKind::Base,
                    &base.name,
                    None,
                    changes,
                    None,
                    deps,
                    request,
                ));
                continue;
            };
            if let Some(other) = self.foreign_owner(&ob.tags) {
                self.conflicts.push(format!(
                    "base {:?} exists and belongs to workspace {other}; rename it in the files or remove it there",
                    base.name
                ));
                continue;
            }
            let latest = ob.versions.iter().find(|v| v.version == ob.latest);
            let mut changes = Vec::new();
            let mut reasons = Vec::new();
            let before_tag = latest.and_then(|v| v.tag.clone());
            if before_tag.as_deref() != Some(base.tag.as_str()) {
                if let BaseBuild::Script { .. } = &base.build {
                    changes.extend(build_fields(&base.build, latest.and_then(|v| v.script.as_deref())));
                }
                changes.push(Change {
                    field: "tag".into(),
                    before: before_tag.map(Value::String),
                    after: Some(json!(base.tag)),
                    forces_replacement: false,
                });
                reasons.push(format!("its {} changed", base.build.kind()));
            }
            if let Some(p) = &parent {
                let before_parent = latest.and_then(|v| v.parent.clone());
                if self.rebuilt.contains(alias_of(p)) {
                    changes.push(Change {
                        field: "from".into(),
                        before: before_parent.map(Value::String),
                        after: Some(json!(format!("{p} (new version)"))),
                        forces_replacement: false,
                    });
                    reasons.push(format!("its parent {} gets a new version", alias_of(p)));
                } else if let Some(bp) = before_parent
                    && !self.is_version_of(&bp, p)
                {
                    changes.push(Change {
                        field: "from".into(),
                        before: Some(json!(bp)),
                        after: Some(json!(p)),
                        forces_replacement: false,
                    });
                    reasons.push("its parent changed".into());
                }
            }
            if changes.is_empty() {
                continue;
            }
            self.rebuilt.insert(base.name.clone());
            let reason =
                format!("a new version is built because {}; the alias moves to it", reasons.join(" and "));
            self.push(action(
                format!("base.{}", base.name),
                Op::Update,
                ObjectKind::Base,
                &base.name,
                None,
                changes,
                Some(reason),
                deps,
                request,
            ));
        }
    }

    // ----- volumes -----

    fn plan_volumes(&mut self) {
        for vol in self.ws.volumes.values() {
            if !self.in_scope(ObjectKind::Volume, &vol.name) {
                continue;
            }
            let id = format!("volume.{}", vol.name);
            match self.volumes.get(vol.name.as_str()).copied() {
                None => {
                    let changes = vol
                        .size_mib
                        .map(|s| vec![added("size", json!(format!("{s}Mi")))])
                        .unwrap_or_default();
                    let request = Request::CreateVolume {
                        name: vol.name.clone(),
                        size_mib: vol.size_mib,
                        tags: vec![self.owner.clone()],
                    };
                    self.push(action(
                        id,
                        Op::Create,
                        ObjectKind::Volume,
                        &vol.name,
                        None,
                        changes,
                        None,
                        Vec::new(),
                        request,
                    ));
                }
                Some(ov) => {
                    if let Some(other) = self.foreign_owner(&ov.tags) {
                        self.conflicts.push(format!(
                            "volume {:?} exists and belongs to workspace {other}; rename it in the files or remove it there",
                            vol.name
                        ));
                        continue;
                    }
                    if let (Some(want), Some(have)) = (vol.size_mib, ov.size_mib) {
                        if want > have {
                            let changes = vec![Change {
                                field: "size".into(),
                                before: Some(json!(format!("{have}Mi"))),
                                after: Some(json!(format!("{want}Mi"))),
                                forces_replacement: false,
                            }];
                            let request = Request::ResizeVolume { name: vol.name.clone(), size_mib: want };
                            self.push(action(
                                id,
                                Op::Update,
                                ObjectKind::Volume,
                                &vol.name,
                                None,
                                changes,
                                None,
                                Vec::new(),
                                request,
                            ));
                        } else if want < have {
                            self.warnings.push(format!(
                                "volume {:?} is {have}Mi and the files ask for {want}Mi; volumes do not shrink, so it stays as it is",
                                vol.name
                            ));
                        }
                    }
                }
            }
        }
    }

    // ----- boxes -----

    fn boxes_in_order(&self) -> Vec<&'a BoxDef> {
        fn visit<'b>(ws: &'b Workspace, name: &str, seen: &mut BTreeSet<String>, out: &mut Vec<&'b BoxDef>) {
            if !seen.insert(name.to_owned()) {
                return;
            }
            let Some(b) = ws.boxes.get(name) else { return };
            if let BoxSource::Fork(src) = &b.source {
                visit(ws, src, seen, out);
            }
            out.push(b);
        }
        let mut seen = BTreeSet::new();
        let mut out = Vec::new();
        for name in self.ws.boxes.keys() {
            visit(self.ws, name, &mut seen, &mut out);
        }
        out
    }

    /// The tags a box should have: its own plus the ownership tag. For a fork without `tags`, the
    /// observed ones (inherited) plus the ownership tag.
    fn expected_tags(&self, b: &BoxDef, observed: Option<&BoxInfo>) -> Vec<String> {
        let mut tags: BTreeSet<String> = match (&b.tags, &b.source, observed) {
            (Some(t), _, _) => t.iter().cloned().collect(),
            (None, BoxSource::Fork(_), Some(ob)) => {
                ob.tags.iter().filter(|t| owner_of(std::slice::from_ref(t)).is_none()).cloned().collect()
            }
            (None, _, _) => BTreeSet::new(),
        };
        tags.insert(self.owner.clone());
        tags.into_iter().collect()
    }

    fn create_request(&self, b: &BoxDef) -> CreateBox {
        let (base, fork) = match &b.source {
            BoxSource::Base(r) => (Some(r.clone()), None),
            BoxSource::Fork(s) => (None, Some(s.clone())),
        };
        CreateBox {
            name: b.name.clone(),
            base,
            fork,
            env: b.env.clone(),
            cpu: b.cpu.as_ref().map(|c| c.text.clone()),
            memory: b.memory.as_ref().map(|m| m.1.clone()),
            data: b.data.clone(),
            tags: self.expected_tags(b, None),
            port: b.port,
            termination_grace_seconds: b.termination_grace_seconds,
        }
    }

    /// The actions a new root for `b` waits for: its base's build, its volumes' creation, its fork
    /// source's creation or replacement.
    fn box_deps(&self, b: &BoxDef) -> Vec<String> {
        let mut deps = Vec::new();
        match &b.source {
            BoxSource::Base(r) => {
                let id = format!("base.{}", alias_of(r));
                if self.has(&id) {
                    deps.push(id);
                }
            }
            BoxSource::Fork(src) => {
                let id = format!("box.{src}");
                if matches!(self.ops.get(&id), Some(Op::Create | Op::Replace)) {
                    deps.push(id);
                }
            }
        }
        for m in &b.data {
            let id = format!("volume.{}", m.name);
            if matches!(self.ops.get(&id), Some(Op::Create)) {
                deps.push(id);
            }
        }
        deps
    }

    fn plan_boxes(&mut self) {
        for b in self.boxes_in_order() {
            if self.in_scope(ObjectKind::Box, &b.name) {
                self.plan_box(b);
            }
        }
    }

    fn plan_box(&mut self, b: &BoxDef) {
        let id = format!("box.{}", b.name);
        let Some(ob) = self.boxes.get(b.name.as_str()).copied() else {
            let create = self.create_request(b);
            let changes = create_changes(&create);
            let deps = self.box_deps(b);
            self.new_roots.insert(b.name.clone());
            self.push(action(
                id.clone(),
                Op::Create,
                ObjectKind::Box,
                &b.name,
                None,
                changes,
                None,
                deps,
                Request::CreateBox { create },
            ));
            self.plan_snapshots(b, None, Some(&id));
            self.plan_publishes(b, None, Some(&id));
            return;
        };
        if let Some(other) = self.foreign_owner(&ob.tags) {
            self.conflicts.push(format!(
                "box {:?} exists and belongs to workspace {other}; rename it in the files or delete it there",
                b.name
            ));
            return;
        }

        // Reasons the root cannot stay, and settings fixed at creation.
        let mut root_reasons: Vec<String> = Vec::new();
        let mut keep_reasons: Vec<String> = Vec::new();
        let mut forcing: Vec<Change> = Vec::new();
        match &b.source {
            BoxSource::Base(r) => {
                let alias = alias_of(r);
                if let Some(src) = &ob.forked_from {
                    root_reasons.push(format!("it was forked from {src} and the files now ask for base {r}"));
                    forcing.push(forced("fork", Some(json!(src)), None));
                    forcing.push(forced("base", Some(json!(ob.base)), Some(json!(r))));
                } else if self.rebuilt.contains(alias) {
                    root_reasons.push(format!("its base {alias} gets a new version"));
                    forcing.push(forced(
                        "base",
                        Some(json!(ob.base)),
                        Some(json!(format!("{r} (new version)"))),
                    ));
                } else if !self.is_version_of(&ob.base, r) {
                    root_reasons.push(format!("its base changes from {} to {r}", ob.base));
                    forcing.push(forced("base", Some(json!(ob.base)), Some(json!(r))));
                }
            }
            BoxSource::Fork(src) => {
                if ob.forked_from.as_deref() != Some(src.as_str()) {
                    root_reasons.push(match &ob.forked_from {
                        Some(old) => format!("its fork source changes from {old} to {src}"),
                        None => {
                            format!("it was made from base {} and the files now fork it from {src}", ob.base)
                        }
                    });
                    forcing.push(forced("fork", ob.forked_from.clone().map(Value::String), Some(json!(src))));
                } else if self.new_roots.contains(src) {
                    root_reasons.push(format!("its fork source {src} is recreated"));
                    forcing.push(forced("fork", Some(json!(src)), Some(json!(format!("{src} (recreated)")))));
                }
            }
        }
        if self.opts.replace.contains(&b.name) {
            root_reasons.push("a replacement was requested (--replace)".into());
        }

        // Environment: a base box's whole environment, a fork's overrides.
        let observed_env: BTreeMap<&str, &str> = ob
            .env
            .iter()
            .filter(|(k, _)| !INJECTED_ENV.contains(&k.as_str()))
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .collect();
        let mut env_changed = false;
        for (k, v) in &b.env {
            match observed_env.get(k.as_str()) {
                Some(have) if *have == v => {}
                have => {
                    env_changed = true;
                    forcing.push(forced(&format!("env.{k}"), have.map(|h| json!(h)), Some(json!(v))));
                }
            }
        }
        if matches!(b.source, BoxSource::Base(_)) {
            for (k, have) in &observed_env {
                if !b.env.contains_key(*k) {
                    env_changed = true;
                    forcing.push(forced(&format!("env.{k}"), Some(json!(have)), None));
                }
            }
        }
        if env_changed {
            keep_reasons.push("env changed".into());
        }

        // Data mounts; a fork without `data` keeps the clones of its source's volumes.
        let mut observed_data: Vec<DataMount> = ob.data.clone();
        observed_data.sort_by(|x, y| x.name.cmp(&y.name));
        let inherit_data = matches!(b.source, BoxSource::Fork(_)) && b.data.is_empty();
        if !inherit_data && observed_data != b.data {
            let have: BTreeMap<&str, &DataMount> =
                observed_data.iter().map(|m| (m.name.as_str(), m)).collect();
            let want: BTreeMap<&str, &DataMount> = b.data.iter().map(|m| (m.name.as_str(), m)).collect();
            let names: BTreeSet<&str> = have.keys().chain(want.keys()).copied().collect();
            for n in names {
                let (h, w) = (have.get(n).map(|m| mount_text(m)), want.get(n).map(|m| mount_text(m)));
                if h != w {
                    forcing.push(forced(&format!("data.{n}"), h.map(Value::String), w.map(Value::String)));
                }
            }
            keep_reasons.push("data mounts changed".into());
        }

        // Settings that change in place.
        let mut settings = BTreeMap::new();
        let mut changes = Vec::new();
        let want_port = b.port.or(match b.source {
            BoxSource::Base(_) => Some(DEFAULT_PORT),
            BoxSource::Fork(_) => None,
        });
        if let Some(port) = want_port
            && port != ob.port
        {
            changes.push(updated("port", json!(ob.port), json!(port)));
            settings.insert("PORT".to_owned(), port.to_string());
        }
        if let Some(cpu) = &b.cpu
            && (cpu.cores - ob.cpus).abs() > 1e-6
        {
            changes.push(updated("cpu", json!(ob.cpus), json!(cpu.cores)));
            settings.insert("CPU".to_owned(), cpu.text.clone());
        }
        if let Some((mib, text)) = &b.memory
            && *mib != ob.ram_mb
        {
            changes.push(updated("memory", json!(format!("{}Mi", ob.ram_mb)), json!(text)));
            settings.insert("MEMORY".to_owned(), text.clone());
        }
        if let Some(grace) = b.termination_grace_seconds
            && grace != ob.termination_grace_seconds
        {
            changes.push(updated(
                "termination_grace_seconds",
                json!(ob.termination_grace_seconds),
                json!(grace),
            ));
            settings.insert("TERMINATION_GRACE_SECONDS".to_owned(), grace.to_string());
        }
        let want_tags = self.expected_tags(b, Some(ob));
        let mut have_tags = ob.tags.clone();
        have_tags.sort();
        have_tags.dedup();
        let mut tags_update = None;
        let adopting = owner_of(&ob.tags).is_none();
        if want_tags != have_tags {
            changes.push(updated("tags", json!(have_tags), json!(want_tags)));
            tags_update = Some(want_tags);
        }

        if !root_reasons.is_empty() || !keep_reasons.is_empty() {
            let keep_root = root_reasons.is_empty();
            let mut reasons = root_reasons;
            reasons.extend(keep_reasons);
            let mut all = forcing;
            all.extend(changes);
            let deps = self.box_deps(b);
            let create = self.create_request(b);
            if !keep_root {
                self.new_roots.insert(b.name.clone());
            }
            let reason = reasons.join("; ");
            self.push(Action {
                keep_root,
                ..action(
                    id.clone(),
                    Op::Replace,
                    ObjectKind::Box,
                    &b.name,
                    None,
                    all,
                    Some(reason),
                    deps,
                    Request::ReplaceBox { create, keep_root },
                )
            });
            self.plan_snapshots(b, None, Some(&id));
            self.plan_publishes(b, None, Some(&id));
            return;
        }

        if !changes.is_empty() {
            let reason = (adopting && tags_update.is_some()).then(|| {
                "adopts this existing box into the workspace by adding the ownership tag".to_owned()
            });
            let request = Request::UpdateBox {
                name: b.name.clone(),
                update: UpdateBox { settings, tags: tags_update },
            };
            self.push(action(
                id.clone(),
                Op::Update,
                ObjectKind::Box,
                &b.name,
                None,
                changes,
                reason,
                Vec::new(),
                request,
            ));
        }
        self.plan_snapshots(b, Some(ob), None);
        self.plan_publishes(b, Some(ob), None);
    }

    /// Snapshots to take: all of them on a new box (`observed` is `None`), the missing ones
    /// otherwise.
    fn plan_snapshots(&mut self, b: &BoxDef, observed: Option<&BoxInfo>, box_action: Option<&str>) {
        let have: BTreeSet<&str> = match observed {
            Some(_) => self
                .obs
                .snapshots
                .get(&b.name)
                .map(|s| s.iter().map(|x| x.name.as_str()).collect())
                .unwrap_or_default(),
            None => BTreeSet::new(),
        };
        for snap in &b.snapshots {
            if have.contains(snap.name.as_str()) {
                continue;
            }
            let mut changes = Vec::new();
            if let Some(d) = &snap.description {
                changes.push(added("description", json!(d)));
            }
            let request = Request::CreateSnapshot {
                box_name: b.name.clone(),
                name: snap.name.clone(),
                description: snap.description.clone(),
            };
            let deps = box_action.map(|d| vec![d.to_owned()]).unwrap_or_default();
            self.push(action(
                format!("snapshot.{}.{}", b.name, snap.name),
                Op::Create,
                ObjectKind::Snapshot,
                &snap.name,
                Some(&b.name),
                changes,
                None,
                deps,
                request,
            ));
        }
    }

    /// Publishes to add (all on a new box) and hosts to remove (on an existing one).
    fn plan_publishes(&mut self, b: &BoxDef, observed: Option<&BoxInfo>, box_action: Option<&str>) {
        let domain = self.obs.publish_domain.as_deref();
        let have: &[String] = observed.map(|o| o.published.as_slice()).unwrap_or(&[]);
        for p in &b.publish {
            if have.iter().any(|h| p.matches(h, domain)) {
                continue;
            }
            let shown = p.resolve(domain).unwrap_or_else(|| p.display());
            if let Some(full) = p.resolve(domain)
                && !p.force
                && let Some(holder) = self.obs.publishes.iter().find(|o| {
                    o.host.eq_ignore_ascii_case(&full)
                        && !(o.project == self.ws.project && o.box_name == b.name)
                })
            {
                self.warnings.push(format!(
                    "{full} is published by {}:{}; publishing it on {} will fail unless the publish sets `force: true`",
                    holder.project, holder.box_name, b.name
                ));
            }
            let request = Request::Publish {
                box_name: b.name.clone(),
                subdomain: p.subdomain.clone(),
                domain: p.domain.clone(),
                host: p.host.clone(),
                force: p.force,
            };
            // After the box exists with its new settings (a port change routes the host).
            let mut deps: Vec<String> = box_action.map(|d| vec![d.to_owned()]).unwrap_or_default();
            let box_id = format!("box.{}", b.name);
            if self.has(&box_id) && !deps.contains(&box_id) {
                deps.push(box_id);
            }
            let mut changes = vec![added("box", json!(b.name))];
            if p.force {
                changes.push(added("force", json!(true)));
            }
            self.push(action(
                format!("publish.{}.{shown}", b.name),
                Op::Create,
                ObjectKind::Publish,
                &shown,
                Some(&b.name),
                changes,
                None,
                deps,
                request,
            ));
        }
        for h in have {
            if b.publish.iter().any(|p: &Publish| p.matches(h, domain)) {
                continue;
            }
            let request = Request::Unpublish { box_name: b.name.clone(), host: h.clone() };
            self.push(action(
                format!("publish.{}.{h}", b.name),
                Op::Delete,
                ObjectKind::Publish,
                h,
                Some(&b.name),
                Vec::new(),
                Some("no longer in the files".into()),
                Vec::new(),
                request,
            ));
        }
    }

    // ----- deletions -----

    fn plan_deletions(&mut self) {
        let ws = self.ws;
        let owned = |tags: &[String]| owner_of(tags) == Some(ws.id.as_str());

        for ob in &self.obs.boxes {
            if ws.boxes.contains_key(&ob.name)
                || !owned(&ob.tags)
                || !self.in_scope(ObjectKind::Box, &ob.name)
            {
                continue;
            }
            if let Some(user) = ws.boxes.values().find(|b| b.source == BoxSource::Fork(ob.name.clone())) {
                self.warnings.push(format!(
                    "box {:?} is no longer in the files but {:?} forks it, so it is kept",
                    ob.name, user.name
                ));
                continue;
            }
            if !self.opts.prune {
                self.pending_prune.push(format!("box {}", ob.name));
                continue;
            }
            let request = Request::DeleteBox { name: ob.name.clone() };
            let reason = "created by this workspace and no longer in the files".to_owned();
            self.push(action(
                format!("box.{}", ob.name),
                Op::Delete,
                ObjectKind::Box,
                &ob.name,
                None,
                Vec::new(),
                Some(reason),
                Vec::new(),
                request,
            ));
        }

        for ov in &self.obs.volumes {
            if ws.volumes.contains_key(&ov.name)
                || !owned(&ov.tags)
                || !self.in_scope(ObjectKind::Volume, &ov.name)
            {
                continue;
            }
            if let Some(user) = ws.boxes.values().find(|b| b.data.iter().any(|m| m.name == ov.name)) {
                self.warnings.push(format!(
                    "volume {:?} is no longer in the files but box {:?} mounts it, so it is kept",
                    ov.name, user.name
                ));
                continue;
            }
            if !self.opts.prune {
                self.pending_prune.push(format!("volume {}", ov.name));
                continue;
            }
            // After every box that mounts it is gone or replaced.
            let deps: Vec<String> = self
                .obs
                .boxes
                .iter()
                .filter(|b| b.data.iter().any(|m| m.name == ov.name))
                .map(|b| format!("box.{}", b.name))
                .filter(|id| matches!(self.ops.get(id), Some(Op::Delete | Op::Replace)))
                .collect();
            let request = Request::DeleteVolume { name: ov.name.clone() };
            let reason = "created by this workspace and no longer in the files".to_owned();
            self.push(action(
                format!("volume.{}", ov.name),
                Op::Delete,
                ObjectKind::Volume,
                &ov.name,
                None,
                Vec::new(),
                Some(reason),
                deps,
                request,
            ));
        }

        for ob in &self.obs.bases {
            if ws.bases.contains_key(&ob.name)
                || !owned(&ob.tags)
                || !self.in_scope(ObjectKind::Base, &ob.name)
            {
                continue;
            }
            let used_by_base =
                ws.bases.values().find(|b| b.from.as_deref().map(alias_of) == Some(ob.name.as_str()));
            let used_by_box =
                ws.boxes.values().find(|b| matches!(&b.source, BoxSource::Base(r) if alias_of(r) == ob.name));
            if let Some(user) = used_by_base
                .map(|b| format!("base {:?}", b.name))
                .or(used_by_box.map(|b| format!("box {:?}", b.name)))
            {
                self.warnings.push(format!(
                    "base {:?} is no longer in the files but {user} uses it, so it is kept",
                    ob.name
                ));
                continue;
            }
            if !self.opts.prune {
                self.pending_prune.push(format!("base {}", ob.name));
                continue;
            }
            let deps: Vec<String> = self
                .obs
                .boxes
                .iter()
                .filter(|b| self.is_version_of(&b.base, &ob.name))
                .map(|b| format!("box.{}", b.name))
                .filter(|id| matches!(self.ops.get(id), Some(Op::Delete | Op::Replace)))
                .collect();
            let request = Request::DeleteBase { name: ob.name.clone() };
            let reason = "created by this workspace and no longer in the files".to_owned();
            self.push(action(
                format!("base.{}", ob.name),
                Op::Delete,
                ObjectKind::Base,
                &ob.name,
                None,
                Vec::new(),
                Some(reason),
                deps,
                request,
            ));
        }

        if !self.pending_prune.is_empty() {
            let n = self.pending_prune.len();
            self.warnings.push(format!(
                "{n} object{} created by this workspace {} no longer in the files: {}. Run with --prune to delete {}.",
                if n == 1 { "" } else { "s" },
                if n == 1 { "is" } else { "are" },
                self.pending_prune.join(", "),
                if n == 1 { "it" } else { "them" },
            ));
        }
    }

    // ----- finishing -----

    /// Adds the edges only known once every action exists: a publish waits for the removal of the
    /// same host from another box.
    fn link_publishes(&mut self) {
        let unpublish: HashMap<String, String> = self
            .actions
            .iter()
            .filter_map(|a| match &a.request {
                Request::Unpublish { host, .. } => Some((host.to_ascii_lowercase(), a.id.clone())),
                _ => None,
            })
            .collect();
        if unpublish.is_empty() {
            return;
        }
        let domain = self.obs.publish_domain.clone();
        for a in &mut self.actions {
            if let Request::Publish { subdomain, domain: d, host, .. } = &a.request {
                let p = Publish {
                    subdomain: subdomain.clone(),
                    domain: d.clone(),
                    host: host.clone(),
                    force: false,
                };
                if let Some(full) = p.resolve(domain.as_deref())
                    && let Some(id) = unpublish.get(&full.to_ascii_lowercase())
                    && !a.depends_on.contains(id)
                {
                    a.depends_on.push(id.clone());
                }
            }
        }
    }

    /// Longest-path layering: an action's wave is one more than the latest of its dependencies.
    fn assign_waves(&mut self) {
        let index: HashMap<String, usize> =
            self.actions.iter().enumerate().map(|(i, a)| (a.id.clone(), i)).collect();
        for a in &mut self.actions {
            a.depends_on.retain(|d| index.contains_key(d));
            a.depends_on.sort();
            a.depends_on.dedup();
        }
        let n = self.actions.len();
        let mut wave: Vec<Option<usize>> = vec![None; n];
        let mut visiting = vec![false; n];
        fn visit(
            i: usize,
            actions: &[Action],
            index: &HashMap<String, usize>,
            wave: &mut [Option<usize>],
            visiting: &mut [bool],
        ) -> usize {
            if let Some(w) = wave[i] {
                return w;
            }
            if visiting[i] {
                return 0; // a cycle cannot come from valid files; break it rather than loop
            }
            visiting[i] = true;
            let mut w = 0;
            for d in &actions[i].depends_on {
                if let Some(&j) = index.get(d) {
                    w = w.max(visit(j, actions, index, wave, visiting) + 1);
                }
            }
            visiting[i] = false;
            wave[i] = Some(w);
            w
        }
        for i in 0..n {
            visit(i, &self.actions, &index, &mut wave, &mut visiting);
        }
        for (a, w) in self.actions.iter_mut().zip(wave) {
            a.wave = w.unwrap_or(0);
        }
    }

    fn scope(&self) -> FingerprintScope {
        let ws = self.ws;
        let mut scope = FingerprintScope { owner_tag: self.owner.clone(), ..FingerprintScope::default() };
        for b in ws.bases.values() {
            scope.bases.insert(b.name.clone());
            if let Some(p) = &b.from {
                scope.bases.insert(alias_of(p).to_owned());
            } else if matches!(b.build, BaseBuild::Script { .. }) {
                scope.bases.insert(DEFAULT_BASE.to_owned());
            }
        }
        scope.volumes.extend(ws.volumes.keys().cloned());
        for b in ws.boxes.values() {
            scope.boxes.insert(b.name.clone());
            match &b.source {
                BoxSource::Base(r) => {
                    scope.bases.insert(alias_of(r).to_owned());
                }
                BoxSource::Fork(s) => {
                    scope.boxes.insert(s.clone());
                }
            }
            scope.volumes.extend(b.data.iter().map(|m| m.name.clone()));
            for p in &b.publish {
                if let Some(h) = p.resolve(self.obs.publish_domain.as_deref()) {
                    scope.hosts.insert(h);
                }
            }
        }
        scope
    }

    fn finish(mut self) -> Plan {
        self.link_publishes();
        self.assign_waves();
        self.actions.sort_by(|a, b| {
            (a.wave, a.object, a.op, &a.box_name, &a.name).cmp(&(
                b.wave,
                b.object,
                b.op,
                &b.box_name,
                &b.name,
            ))
        });
        let max_wave = self.actions.iter().map(|a| a.wave + 1).max().unwrap_or(0);
        let mut waves = vec![Vec::new(); max_wave];
        let mut summary = Summary::default();
        for a in &self.actions {
            waves[a.wave].push(a.id.clone());
            match a.op {
                Op::Create => summary.add += 1,
                Op::Update => summary.change += 1,
                Op::Replace => summary.replace += 1,
                Op::Delete => summary.destroy += 1,
            }
        }
        let scope = self.scope();
        Plan {
            format_version: PLAN_FORMAT_VERSION,
            project: self.ws.project.clone(),
            workspace: self.ws.id.clone(),
            owner_tag: self.owner.clone(),
            prune: self.opts.prune,
            targets: self.opts.targets.clone(),
            fingerprint: self.obs.fingerprint(&scope),
            scope,
            summary,
            actions: self.actions,
            waves,
            warnings: self.warnings,
            conflicts: self.conflicts,
        }
    }
}

#[allow(clippy::too_many_arguments)]
fn action(
    id: String,
    op: Op,
    object: ObjectKind,
    name: &str,
    box_name: Option<&str>,
    changes: Vec<Change>,
    reason: Option<String>,
    depends_on: Vec<String>,
    request: Request,
) -> Action {
    Action {
        id,
        op,
        object,
        name: name.to_owned(),
        box_name: box_name.map(str::to_owned),
        changes,
        reason,
        keep_root: false,
        wave: 0,
        depends_on,
        request,
    }
}

fn added(field: &str, value: Value) -> Change {
    Change { field: field.to_owned(), before: None, after: Some(value), forces_replacement: false }
}

fn updated(field: &str, before: Value, after: Value) -> Change {
    Change { field: field.to_owned(), before: Some(before), after: Some(after), forces_replacement: false }
}

fn forced(field: &str, before: Option<Value>, after: Option<Value>) -> Change {
    Change { field: field.to_owned(), before, after, forces_replacement: true }
}

fn mount_text(m: &DataMount) -> String {
    if m.read_only { format!("{}:ro", m.path) } else { m.path.clone() }
}

/// The fields describing a build, with the previous script when one is known.
fn build_fields(build: &BaseBuild, before_script: Option<&str>) -> Vec<Change> {
    match build {
        BaseBuild::Script { content, file } => {
            let mut v = Vec::new();
            if let Some(f) = file {
                v.push(added("script_file", json!(f)));
            }
            v.push(Change {
                field: "script".into(),
                before: before_script.map(|s| json!(s)),
                after: Some(json!(content)),
                forces_replacement: false,
            });
            v
        }
        BaseBuild::Dockerfile { dockerfile, context } => vec![
            added("dockerfile", json!(dockerfile.to_string_lossy())),
            added("context", json!(context.to_string_lossy())),
        ],
        BaseBuild::Tarball { path } => vec![added("tarball", json!(path.to_string_lossy()))],
    }
}

/// What a new box sets, as changes from nothing.
fn create_changes(c: &CreateBox) -> Vec<Change> {
    let mut v = Vec::new();
    if let Some(b) = &c.base {
        v.push(added("base", json!(b)));
    }
    if let Some(f) = &c.fork {
        v.push(added("fork", json!(f)));
    }
    for (k, val) in &c.env {
        v.push(added(&format!("env.{k}"), json!(val)));
    }
    if let Some(cpu) = &c.cpu {
        v.push(added("cpu", json!(cpu)));
    }
    if let Some(m) = &c.memory {
        v.push(added("memory", json!(m)));
    }
    if let Some(p) = c.port {
        v.push(added("port", json!(p)));
    }
    if let Some(g) = c.termination_grace_seconds {
        v.push(added("termination_grace_seconds", json!(g)));
    }
    for m in &c.data {
        v.push(added(&format!("data.{}", m.name), json!(mount_text(m))));
    }
    v.push(added("tags", json!(c.tags)));
    v
}
