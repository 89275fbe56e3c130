//! Loading a workspace: read `.forkr/*.yaml`, check everything, merge, resolve.
//!
//! The order is what makes "every problem at once" work:
//! 1. each file is parsed into a positioned tree (a syntax error ends that file, not the others);
//! 2. each document is checked against the generated schema, recording all mismatches;
//! 3. every entry (`bases.x`, `volumes.y`, `boxes.z`) that passed step 2 is deserialized on its own,
//!    so one broken box does not hide the problems of the next;
//! 4. names, values and references are checked across all files, with the known-on-the-server set;
//! 5. only when nothing was found is the [`Workspace`] built.

use std::collections::{BTreeMap, BTreeSet};
use std::io::Read;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use serde::de::DeserializeOwned;

use super::check::Checker;
use super::diag::{Problem, SourceFile, SpecErrors};
use super::model::{
    Base, BaseBuild, BoxDef, BoxSource, CpuAmount, RESERVED_ENV, RESERVED_TAG_PREFIX, Snapshot, Sync, Volume,
    Workspace, WorkspaceId, check_box_path, is_env_name, is_hostname, parse_cpu, parse_mount, parse_size_mib,
    sha256_hex,
};
use super::schema::{SchemaKind, schema};
use super::types::{BaseSpec, BoxSpec, Cpu, PublishSpec, Quantity, ScriptSource, SetupConfig, VolumeSpec};
use super::yaml::{self, Kind, Node, Pos, Seg};
use crate::name::{self, NameKind};

/// The folder, under the workspace root, that holds the files.
pub const WORKSPACE_DIR: &str = ".forkr";

/// The CLI setup file in [`WORKSPACE_DIR`], which is not part of the workspace.
pub const CONFIG_FILE: &str = "config.yaml";

/// Names that exist on the server, so that references to them are valid without being in the files.
/// Bases should list aliases and version names.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Known {
    pub bases: BTreeSet<String>,
    pub volumes: BTreeSet<String>,
    pub boxes: BTreeSet<String>,
}

/// How to load.
#[derive(Debug, Clone)]
pub struct LoadOptions {
    /// The project when no file sets `project` (the CLI's resolution: env, config, git root, default).
    pub default_project: String,
    /// A project that beats the files' `project` (the CLI's `-p`): the same workspace can then be
    /// applied to several projects, e.g. one per branch, each owning its own objects.
    pub project: Option<String>,
    /// What the server has. `None` (offline validation) accepts references to anything not in the
    /// files, since they may exist on the server.
    pub known: Option<Known>,
    /// Overrides the derived workspace id (see [`WorkspaceId`]).
    pub workspace_id: Option<WorkspaceId>,
}

impl Default for LoadOptions {
    fn default() -> Self {
        LoadOptions {
            default_project: name::DEFAULT_PROJECT.to_owned(),
            project: None,
            known: None,
            workspace_id: None,
        }
    }
}

/// The workspace files under `root`: `.forkr/*.yaml` and `*.yml` except `config.yaml`, hidden files
/// skipped, sorted by name.
pub fn workspace_files(root: &Path) -> std::io::Result<Vec<PathBuf>> {
    let dir = root.join(WORKSPACE_DIR);
    let mut files = Vec::new();
    for entry in std::fs::read_dir(&dir)? {
        let entry = entry?;
        let path = entry.path();
        let Some(name) = path.file_name().and_then(|n| n.to_str()) else { continue };
        let is_yaml = name.ends_with(".yaml") || name.ends_with(".yml");
        if !is_yaml || name.starts_with('.') || name == CONFIG_FILE || name == "config.yml" {
            continue;
        }
        if entry.file_type()?.is_file() || path.is_file() {
            files.push(path);
        }
    }
    files.sort();
    Ok(files)
}

/// The workspace root for a command run in `start`: the nearest ancestor (or `start` itself)
/// whose `.forkr/` holds at least one workspace file. A `.forkr/` with only `config.yaml` (the CLI
/// setup, e.g. in a home folder) does not make a workspace.
pub fn find_workspace_root(start: &Path) -> Option<PathBuf> {
    start.ancestors().find(|dir| workspace_files(dir).is_ok_and(|f| !f.is_empty())).map(Path::to_path_buf)
}

/// The `project` the files under `root` declare, found by a cheap scan for a top-level
/// `project: NAME` line, without parsing. A CLI needs the project before loading (references are
/// checked against that project's server state); the loader has the final word, and a caller whose
/// guess differs from [`Workspace::project`] loads again.
pub fn declared_project(root: &Path) -> Option<String> {
    for path in workspace_files(root).ok()? {
        let Ok(text) = std::fs::read_to_string(&path) else { continue };
        for line in text.lines() {
            let Some(rest) = line.strip_prefix("project:") else { continue };
            let value = rest.split(" #").next().unwrap_or("").trim().trim_matches(|c| c == '"' || c == '\'');
            if !value.is_empty() {
                return Some(value.to_owned());
            }
        }
    }
    None
}

/// Loads the workspace rooted at `root` (the folder holding `.forkr/`).
pub fn load_dir(root: &Path, opts: &LoadOptions) -> Result<Workspace, SpecErrors> {
    let files = match workspace_files(root) {
        Ok(f) => f,
        Err(e) => {
            let dir = root.join(WORKSPACE_DIR);
            return Err(SpecErrors::new(vec![
                Problem::new("no_workspace", format!("cannot read {}: {e}", dir.display()))
                    .help("run from the folder that holds `.forkr/`, or create `.forkr/forkr.yaml` with a `boxes:` section"),
            ]));
        }
    };
    if files.is_empty() {
        return Err(SpecErrors::new(vec![
            Problem::new(
                "no_workspace",
                format!("no workspace files in {}", root.join(WORKSPACE_DIR).display()),
            )
            .help("add a file such as `.forkr/forkr.yaml` with `boxes:`; `config.yaml` holds CLI setup only"),
        ]));
    }
    let mut sources = Vec::new();
    let mut problems = Vec::new();
    for path in files {
        let display =
            format!("{WORKSPACE_DIR}/{}", path.file_name().map(|n| n.to_string_lossy()).unwrap_or_default());
        match std::fs::read_to_string(&path) {
            Ok(text) => sources.push((display, text)),
            Err(e) => problems.push(
                Problem::new("unreadable_file", format!("cannot read {display}: {e}"))
                    .in_file(&SourceFile::new(&display, ""))
                    .help("check the file's permissions and that it is UTF-8 text"),
            ),
        }
    }
    let refs: Vec<(&str, &str)> = sources.iter().map(|(n, t)| (n.as_str(), t.as_str())).collect();
    match load_sources(root, &refs, opts) {
        Ok(ws) if problems.is_empty() => Ok(ws),
        Ok(_) => Err(SpecErrors::new(problems)),
        Err(e) => {
            problems.extend(e.problems().iter().cloned());
            Err(SpecErrors::new(problems))
        }
    }
}

/// Loads a workspace from `(display name, text)` pairs; relative paths in them resolve against
/// `root`, and the files they name are read.
pub fn load_sources(
    root: &Path,
    sources: &[(&str, &str)],
    opts: &LoadOptions,
) -> Result<Workspace, SpecErrors> {
    let mut loader = Loader::new(root, opts);
    for (name, text) in sources {
        loader.add_source(name, text);
    }
    loader.finish()
}

/// Loads `.forkr/config.yaml` text with the same checks and diagnostics as the workspace files.
pub fn load_config(display_name: &str, text: &str) -> Result<SetupConfig, SpecErrors> {
    let file = SourceFile::new(display_name, text);
    let docs = match yaml::parse(text) {
        Ok(d) => d,
        Err(e) => return Err(SpecErrors::new(vec![syntax_problem(&file, e)])),
    };
    let Some(doc) = docs.first() else { return Ok(SetupConfig::default()) };
    let mut checker = Checker::new(schema(SchemaKind::Config), &file);
    checker.check_document(doc);
    let mut problems: Vec<Problem> = checker.problems.into_iter().map(|(_, p)| p).collect();
    if docs.len() > 1 {
        problems.push(
            Problem::new("multiple_documents", "config.yaml holds more than one YAML document")
                .at(&file, docs[1].pos, "second document")
                .help("keep one document; remove the `---` separator"),
        );
    }
    if !problems.is_empty() {
        return Err(SpecErrors::new(problems));
    }
    serde_json::from_value(doc.to_json()).map_err(|e| {
        SpecErrors::new(vec![
            Problem::new("invalid_value", e.to_string()).at(&file, doc.pos, "here").help("fix the value"),
        ])
    })
}

fn syntax_problem(file: &Arc<SourceFile>, e: yaml::SyntaxError) -> Problem {
    let p = Problem::new("yaml_syntax", format!("YAML syntax error: {}", e.message))
        .help("fix the YAML syntax here; nothing else in this file was checked");
    match e.pos {
        Some(pos) => p.at(file, pos, "syntax error"),
        None => p.in_file(file),
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Section {
    Bases,
    Volumes,
    Boxes,
}

impl Section {
    fn key(self) -> &'static str {
        match self {
            Section::Bases => "bases",
            Section::Volumes => "volumes",
            Section::Boxes => "boxes",
        }
    }

    fn noun(self) -> &'static str {
        match self {
            Section::Bases => "base",
            Section::Volumes => "volume",
            Section::Boxes => "box",
        }
    }
}

struct Doc {
    file: Arc<SourceFile>,
    node: Node,
    /// Paths of nodes with structural problems.
    invalid: Vec<Vec<Seg>>,
}

struct Entry<T> {
    name: String,
    doc: usize,
    spec: T,
}

struct Loader<'o> {
    root: PathBuf,
    opts: &'o LoadOptions,
    docs: Vec<Doc>,
    problems: Vec<Problem>,
    /// Every declared name (valid or not), with the document it is in, so references to an entry with
    /// problems do not cascade into "unknown" errors.
    declared: BTreeMap<(Section, String), usize>,
    project: Option<(String, usize)>,
    bases: Vec<Entry<BaseSpec>>,
    volumes: Vec<Entry<VolumeSpec>>,
    boxes: Vec<Entry<BoxSpec>>,
}

impl<'o> Loader<'o> {
    fn new(root: &Path, opts: &'o LoadOptions) -> Loader<'o> {
        Loader {
            root: root.to_path_buf(),
            opts,
            docs: Vec::new(),
            problems: Vec::new(),
            declared: BTreeMap::new(),
            project: None,
            bases: Vec::new(),
            volumes: Vec::new(),
            boxes: Vec::new(),
        }
    }

    fn add_source(&mut self, name: &str, text: &str) {
        let file = SourceFile::new(name, text);
        let nodes = match yaml::parse(text) {
            Ok(n) => n,
            Err(e) => {
                self.problems.push(syntax_problem(&file, e));
                return;
            }
        };
        for node in nodes {
            let mut checker = Checker::new(schema(SchemaKind::Workspace), &file);
            checker.check_document(&node);
            let mut invalid = Vec::new();
            for (path, problem) in checker.problems {
                invalid.push(path);
                self.problems.push(problem);
            }
            self.docs.push(Doc { file: file.clone(), node, invalid });
            self.collect(self.docs.len() - 1);
        }
    }

    /// Takes the project and the entries of one document.
    fn collect(&mut self, doc: usize) {
        let node = self.docs[doc].node.clone();
        if let Some((_, value)) = node.entry("project")
            && let Some(project) = value.as_str()
        {
            self.add_project(doc, project, value.pos);
        }
        for section in [Section::Bases, Section::Volumes, Section::Boxes] {
            let Some((_, Node { kind: Kind::Map(entries), .. })) = node.entry(section.key()) else {
                continue;
            };
            let mut seen_here = BTreeSet::new();
            for (key, value) in entries {
                let Some(name) = key.key_text() else { continue };
                if !seen_here.insert(name.clone()) {
                    // A repeat inside one mapping: the schema check reported it.
                    continue;
                }
                if let Some(&first_doc) = self.declared.get(&(section, name.clone())) {
                    let first_path = [Seg::Key(section.key().into()), Seg::Key(name.clone())];
                    let first_pos = self.key_pos(first_doc, &first_path);
                    let file = self.docs[doc].file.clone();
                    let first_file = self.docs[first_doc].file.clone();
                    self.problems.push(
                        Problem::new("duplicate_name", format!("{} `{name}` is defined twice", section.noun()))
                            .at(&file, key.pos, "defined again here")
                            .related(&first_file, first_pos, format!("{} `{name}` is first defined here", section.noun()))
                            .help(format!(
                                "all files in .forkr/ are merged, so each {} name may appear once; rename or remove one",
                                section.noun()
                            )),
                    );
                    continue;
                }
                self.declared.insert((section, name.clone()), doc);
                let path = vec![Seg::Key(section.key().into()), Seg::Key(name.clone())];
                let Some((json, damaged)) = self.pruned_json(doc, &path, value) else { continue };
                match section {
                    Section::Bases => {
                        if let Some(spec) = self.typed(doc, json, damaged, key.pos) {
                            self.bases.push(Entry { name, doc, spec });
                        }
                    }
                    Section::Volumes => {
                        if let Some(spec) = self.typed(doc, json, damaged, key.pos) {
                            self.volumes.push(Entry { name, doc, spec });
                        }
                    }
                    Section::Boxes => {
                        if let Some(spec) = self.typed(doc, json, damaged, key.pos) {
                            self.boxes.push(Entry { name, doc, spec });
                        }
                    }
                }
            }
        }
    }

    /// The entry at `path` as JSON without the parts the schema check found wrong, so that the
    /// rest of the entry still gets its semantic checks; and whether anything was cut. A problem
    /// inside a list drops the whole list (cutting one item would shift the positions of the
    /// next). `None` when the entry itself is unusable.
    fn pruned_json(&self, doc: usize, path: &[Seg], value: &Node) -> Option<(serde_json::Value, bool)> {
        let mut json = value.to_json();
        let mut damaged = false;
        for bad in self.docs[doc].invalid.iter().filter(|p| p.starts_with(path)) {
            damaged = true;
            let rel = &bad[path.len()..];
            let cut = rel.iter().position(|s| matches!(s, Seg::Index(_))).unwrap_or(rel.len());
            let Some((Seg::Key(last), parents)) = rel[..cut].split_last() else { return None };
            let mut target = &mut json;
            for seg in parents {
                match (seg, target) {
                    (Seg::Key(k), serde_json::Value::Object(map)) => match map.get_mut(k) {
                        Some(next) => target = next,
                        None => return None,
                    },
                    _ => return None,
                }
            }
            if let serde_json::Value::Object(map) = target {
                map.remove(last);
            }
        }
        Some((json, damaged))
    }

    fn typed<T: DeserializeOwned>(
        &mut self,
        doc: usize,
        json: serde_json::Value,
        damaged: bool,
        pos: Pos,
    ) -> Option<T> {
        match serde_json::from_value(json) {
            Ok(v) => Some(v),
            // Cutting a wrong required value leaves the entry incomplete; it was reported.
            Err(_) if damaged => None,
            Err(e) => {
                // The schema check passed, so this is a mismatch between schema and types: a bug.
                let file = self.docs[doc].file.clone();
                self.problems.push(
                    Problem::new("invalid_value", format!("cannot read this entry: {e}"))
                        .at(&file, pos, "here")
                        .help("this is likely a Forkr bug; please report it with the file"),
                );
                None
            }
        }
    }

    fn add_project(&mut self, doc: usize, project: &str, pos: Pos) {
        let file = self.docs[doc].file.clone();
        if let Err(e) = name::validate(NameKind::Project, project) {
            self.problems.push(
                Problem::new("invalid_name", e.message().to_owned())
                    .at(&file, pos, "invalid project name")
                    .help("project names are DNS labels, such as `web-app`"),
            );
            return;
        }
        match &self.project {
            None => self.project = Some((project.to_owned(), doc)),
            Some((first, first_doc)) if first != project => {
                let first_doc = *first_doc;
                let first = first.clone();
                let first_pos = self.value_pos(first_doc, &[Seg::Key("project".into())]);
                let first_file = self.docs[first_doc].file.clone();
                self.problems.push(
                    Problem::new("project_mismatch", format!("project `{project}` differs from `{first}` set elsewhere"))
                        .at(&file, pos, "second project")
                        .related(&first_file, first_pos, format!("project `{first}` is set here"))
                        .help("a workspace lives in one project; set `project` once or to the same value everywhere"),
                );
            }
            Some(_) => {}
        }
    }

    // ----- positions -----

    fn place(&self, doc: usize, path: &[Seg]) -> Option<(Option<Pos>, Pos)> {
        self.docs[doc].node.find(path).map(|(k, v)| (k.map(|k| k.pos), v.pos))
    }

    /// The key of `path` (the value when it has no key, e.g. a list item).
    fn key_pos(&self, doc: usize, path: &[Seg]) -> Pos {
        match self.place(doc, path) {
            Some((Some(k), _)) => k,
            Some((None, v)) => v,
            None => self.docs[doc].node.pos,
        }
    }

    fn value_pos(&self, doc: usize, path: &[Seg]) -> Pos {
        match self.place(doc, path) {
            Some((key, v)) if v.len == 0 => key.unwrap_or(v),
            Some((_, v)) => v,
            None => self.docs[doc].node.pos,
        }
    }

    fn problem(
        &mut self,
        doc: usize,
        pos: Pos,
        code: &'static str,
        message: String,
        label: &str,
        help: String,
    ) {
        let file = self.docs[doc].file.clone();
        self.problems.push(Problem::new(code, message).at(&file, pos, label).help(help));
    }

    fn is_declared(&self, section: Section, name: &str) -> bool {
        self.declared.contains_key(&(section, name.to_owned()))
    }

    // ----- semantic checks -----

    fn finish(mut self) -> Result<Workspace, SpecErrors> {
        let bases = std::mem::take(&mut self.bases);
        let volumes = std::mem::take(&mut self.volumes);
        let boxes = std::mem::take(&mut self.boxes);

        let mut out_bases = BTreeMap::new();
        for e in &bases {
            if let Some(b) = self.check_base(e) {
                out_bases.insert(e.name.clone(), b);
            }
        }
        self.check_cycles(
            Section::Bases,
            bases.iter().map(|e| (e.name.as_str(), e.doc, e.spec.from.as_deref())).collect(),
        );

        let mut out_volumes = BTreeMap::new();
        for e in &volumes {
            if let Some(v) = self.check_volume(e) {
                out_volumes.insert(e.name.clone(), v);
            }
        }

        let mut out_boxes = BTreeMap::new();
        for e in &boxes {
            if let Some(b) = self.check_box(e) {
                out_boxes.insert(e.name.clone(), b);
            }
        }
        self.check_cycles(
            Section::Boxes,
            boxes.iter().map(|e| (e.name.as_str(), e.doc, e.spec.fork.as_deref())).collect(),
        );
        self.check_publish_duplicates(&boxes);

        if !self.problems.is_empty() {
            return Err(SpecErrors::new(self.problems));
        }
        let project = (self.opts.project.clone())
            .or(self.project.map(|(p, _)| p))
            .unwrap_or_else(|| self.opts.default_project.clone());
        let id = self.opts.workspace_id.clone().unwrap_or_else(|| WorkspaceId::derive(&project, &self.root));
        Ok(Workspace {
            project,
            id,
            root: self.root,
            bases: out_bases,
            volumes: out_volumes,
            boxes: out_boxes,
        })
    }

    fn check_name(&mut self, doc: usize, section: Section, kind: NameKind, name: &str) -> bool {
        match name::validate(kind, name) {
            Ok(()) => true,
            Err(e) => {
                let pos = self.key_pos(doc, &[Seg::Key(section.key().into()), Seg::Key(name.into())]);
                self.problem(
                    doc,
                    pos,
                    "invalid_name",
                    e.message().to_owned(),
                    "invalid name",
                    format!("rename this {} so it matches {}", section.noun(), kind.pattern()),
                );
                false
            }
        }
    }

    /// Checks a base reference (`alias`, `version` or `alias:tag`) at `path`.
    fn check_base_ref(&mut self, doc: usize, path: &[Seg], reference: &str) -> bool {
        let pos = self.value_pos(doc, path);
        let (alias, tag) = match reference.split_once(':') {
            Some((a, t)) => (a, Some(t)),
            None => (reference, None),
        };
        let syntax_ok = name::validate(NameKind::Base, alias).is_ok()
            && tag.is_none_or(|t| {
                !t.is_empty()
                    && t.bytes().all(|c| c.is_ascii_alphanumeric() || matches!(c, b'_' | b'.' | b'-'))
            });
        if !syntax_ok {
            self.problem(
                doc,
                pos,
                "invalid_reference",
                format!("{reference:?} is not a base reference"),
                "invalid base reference",
                "write an alias (`box-base`), an exact version (`box-base-v20260101120000`) or `alias:tag`"
                    .to_owned(),
            );
            return false;
        }
        if self.is_declared(Section::Bases, alias) {
            return true;
        }
        if let Some(known) = &self.opts.known
            && !known.bases.contains(reference)
            && !known.bases.contains(alias)
        {
            let mut names: Vec<&str> = known.bases.iter().map(String::as_str).collect();
            let declared: Vec<String> =
                self.declared.keys().filter(|(s, _)| *s == Section::Bases).map(|(_, n)| n.clone()).collect();
            names.extend(declared.iter().map(String::as_str));
            let help = match super::check::suggest(alias, &names) {
                Some(near) => format!(
                    "did you mean `{near}`? Otherwise define it under `bases:` or create it on the server"
                ),
                None => {
                    "define it under `bases:` or create it on the server (`4kr base list` shows what exists)"
                        .to_owned()
                }
            };
            self.problem(
                doc,
                pos,
                "unknown_reference",
                format!("base `{alias}` is neither in the workspace files nor on the server"),
                "unknown base",
                help,
            );
            return false;
        }
        true
    }

    fn check_base(&mut self, e: &Entry<BaseSpec>) -> Option<Base> {
        let doc = e.doc;
        let at = |rest: &[&str]| -> Vec<Seg> {
            let mut p = vec![Seg::Key("bases".into()), Seg::Key(e.name.clone())];
            p.extend(rest.iter().map(|s| Seg::Key((*s).to_owned())));
            p
        };
        let mut ok = self.check_name(doc, Section::Bases, NameKind::Base, &e.name);
        let s = &e.spec;

        let sources: Vec<&str> = [
            s.script.as_ref().map(|_| "script"),
            s.dockerfile.as_ref().map(|_| "dockerfile"),
            s.tarball.as_ref().map(|_| "tarball"),
        ]
        .into_iter()
        .flatten()
        .collect();
        match sources.as_slice() {
            [] => {
                let pos = self.key_pos(doc, &at(&[]));
                self.problem(
                    doc,
                    pos,
                    "missing_key",
                    format!("base `{}` does not say how to build it", e.name),
                    "no build source",
                    "add `script` (shell text or `{ file: path }`), `dockerfile` or `tarball`".to_owned(),
                );
                ok = false;
            }
            [_] => {}
            [first, second, ..] => {
                let pos = self.key_pos(doc, &at(&[second]));
                let first_pos = self.key_pos(doc, &at(&[first]));
                let file = self.docs[doc].file.clone();
                self.problems.push(
                    Problem::new("conflicting_keys", format!("`{second}` cannot be used with `{first}`"))
                        .at(&file, pos, format!("`{second}` given here"))
                        .also(first_pos, format!("`{first}` given here"))
                        .help("a base is built one way: keep one of `script`, `dockerfile` and `tarball`"),
                );
                ok = false;
            }
        }
        if s.dockerfile.is_some() && s.from.is_some() {
            let pos = self.key_pos(doc, &at(&["from"]));
            self.problem(
                doc,
                pos,
                "conflicting_keys",
                "`from` cannot be used with `dockerfile`".to_owned(),
                "`from` given here",
                "the Dockerfile's FROM line picks the parent; remove `from`".to_owned(),
            );
            ok = false;
        }
        if s.context.is_some() && s.dockerfile.is_none() {
            let pos = self.key_pos(doc, &at(&["context"]));
            self.problem(
                doc,
                pos,
                "conflicting_keys",
                "`context` needs `dockerfile`".to_owned(),
                "`context` without `dockerfile`",
                "`context` is the build context of a Dockerfile; add `dockerfile` or remove `context`"
                    .to_owned(),
            );
            ok = false;
        }
        if let Some(from) = &s.from {
            if *from == e.name {
                let pos = self.value_pos(doc, &at(&["from"]));
                self.problem(
                    doc,
                    pos,
                    "reference_cycle",
                    format!("base `{}` cannot be built on itself", e.name),
                    "same base",
                    "name the parent base here, such as `box-base`".to_owned(),
                );
                ok = false;
            } else {
                ok &= self.check_base_ref(doc, &at(&["from"]), from);
            }
        }

        let build = if let Some(script) = &s.script {
            match script {
                ScriptSource::Inline(text) => {
                    if text.trim().is_empty() {
                        let pos = self.value_pos(doc, &at(&["script"]));
                        self.problem(
                            doc,
                            pos,
                            "invalid_value",
                            format!("the script of base `{}` is empty", e.name),
                            "empty script",
                            "write the shell commands that build the base, or use `{ file: path }`"
                                .to_owned(),
                        );
                        None
                    } else {
                        Some((
                            BaseBuild::Script { content: text.clone(), file: None },
                            sha256_hex(text.as_bytes()),
                        ))
                    }
                }
                ScriptSource::File(f) => {
                    let path = at(&["script", "file"]);
                    match self.read_text(doc, &path, &f.file, "script") {
                        Some(content) => {
                            let tag = sha256_hex(content.as_bytes());
                            Some((BaseBuild::Script { content, file: Some(f.file.clone()) }, tag))
                        }
                        None => None,
                    }
                }
            }
        } else if let Some(dockerfile) = &s.dockerfile {
            let df = self.read_text(doc, &at(&["dockerfile"]), dockerfile, "Dockerfile");
            let df_path = self.root.join(dockerfile);
            let context = match &s.context {
                Some(c) => {
                    let dir = self.root.join(c);
                    if !dir.is_dir() {
                        let pos = self.value_pos(doc, &at(&["context"]));
                        self.problem(
                            doc,
                            pos,
                            "missing_file",
                            format!("the build context {c:?} is not a folder"),
                            "no such folder",
                            "paths are relative to the workspace root (the folder holding `.forkr/`)"
                                .to_owned(),
                        );
                        None
                    } else {
                        Some(dir)
                    }
                }
                None => Some(df_path.parent().map(Path::to_path_buf).unwrap_or_else(|| self.root.clone())),
            };
            match (df, context) {
                (Some(text), Some(context)) => Some((
                    BaseBuild::Dockerfile { dockerfile: df_path, context },
                    sha256_hex(text.as_bytes()),
                )),
                _ => None,
            }
        } else if let Some(tarball) = &s.tarball {
            let path = at(&["tarball"]);
            self.hash_file(doc, &path, tarball)
                .map(|tag| (BaseBuild::Tarball { path: self.root.join(tarball) }, tag))
        } else {
            None
        };

        let (build, tag) = build?;
        ok.then(|| Base { name: e.name.clone(), from: s.from.clone(), build, tag })
    }

    fn resolve_local(&mut self, doc: usize, path: &[Seg], rel: &str, what: &str) -> Option<PathBuf> {
        if Path::new(rel).is_absolute() {
            let pos = self.value_pos(doc, path);
            self.problem(
                doc,
                pos,
                "invalid_path",
                format!("the {what} path {rel:?} is absolute"),
                "absolute path",
                "write it relative to the workspace root (the folder holding `.forkr/`), so the workspace works on any machine"
                    .to_owned(),
            );
            return None;
        }
        Some(self.root.join(rel))
    }

    fn read_text(&mut self, doc: usize, path: &[Seg], rel: &str, what: &str) -> Option<String> {
        let full = self.resolve_local(doc, path, rel, what)?;
        match std::fs::read_to_string(&full) {
            Ok(t) => Some(t),
            Err(err) => {
                let pos = self.value_pos(doc, path);
                self.problem(
                    doc,
                    pos,
                    "missing_file",
                    format!("cannot read the {what} {rel:?}: {err}"),
                    "cannot read this file",
                    "paths are relative to the workspace root (the folder holding `.forkr/`)".to_owned(),
                );
                None
            }
        }
    }

    fn hash_file(&mut self, doc: usize, path: &[Seg], rel: &str) -> Option<String> {
        use sha2::{Digest, Sha256};
        let full = self.resolve_local(doc, path, rel, "tarball")?;
        let result = (|| -> std::io::Result<String> {
            let mut f = std::fs::File::open(&full)?;
            let mut hasher = Sha256::new();
            let mut buf = vec![0u8; 1 << 16];
            loop {
                let n = f.read(&mut buf)?;
                if n == 0 {
                    break;
                }
                hasher.update(&buf[..n]);
            }
            Ok(format!("{:x}", hasher.finalize()))
        })();
        match result {
            Ok(h) => Some(h),
            Err(err) => {
                let pos = self.value_pos(doc, path);
                self.problem(
                    doc,
                    pos,
                    "missing_file",
                    format!("cannot read the tarball {rel:?}: {err}"),
                    "cannot read this file",
                    "paths are relative to the workspace root (the folder holding `.forkr/`)".to_owned(),
                );
                None
            }
        }
    }

    fn check_volume(&mut self, e: &Entry<VolumeSpec>) -> Option<Volume> {
        let ok = self.check_name(e.doc, Section::Volumes, NameKind::Volume, &e.name);
        let size_mib = match &e.spec.size {
            None => None,
            Some(q) => {
                let path = [Seg::Key("volumes".into()), Seg::Key(e.name.clone()), Seg::Key("size".into())];
                Some(self.quantity(e.doc, &path, q, "size")?)
            }
        };
        ok.then(|| Volume { name: e.name.clone(), size_mib })
    }

    fn quantity(&mut self, doc: usize, path: &[Seg], q: &Quantity, what: &str) -> Option<u64> {
        let result = match q {
            Quantity::Mib(0) => Err("0 is not a size".to_owned()),
            Quantity::Mib(n) => Ok(*n),
            Quantity::Text(t) => parse_size_mib(t),
        };
        match result {
            Ok(n) => Some(n),
            Err(msg) => {
                let pos = self.value_pos(doc, path);
                self.problem(
                    doc,
                    pos,
                    "invalid_value",
                    format!("invalid {what}: {msg}"),
                    "invalid size",
                    "write a number with a unit, such as `512Mi`, `2Gi` or `1G`, or a plain number of MiB"
                        .to_owned(),
                );
                None
            }
        }
    }

    fn check_box(&mut self, e: &Entry<BoxSpec>) -> Option<BoxDef> {
        let doc = e.doc;
        let name = e.name.as_str();
        let at = |rest: &[Seg]| -> Vec<Seg> {
            let mut p = vec![Seg::Key("boxes".into()), Seg::Key(e.name.clone())];
            p.extend_from_slice(rest);
            p
        };
        let k = |s: &str| Seg::Key(s.to_owned());
        let mut ok = self.check_name(doc, Section::Boxes, NameKind::Box, name);
        let s = &e.spec;

        // Source.
        let source = match (&s.base, &s.fork) {
            (Some(_), Some(_)) => {
                let fork_pos = self.key_pos(doc, &at(&[k("fork")]));
                let base_pos = self.key_pos(doc, &at(&[k("base")]));
                let file = self.docs[doc].file.clone();
                self.problems.push(
                    Problem::new("base_with_fork", "`base` cannot be used with `fork` (--base cannot be used with --fork)")
                        .at(&file, fork_pos, "`fork` given here")
                        .also(base_pos, "`base` given here")
                        .help("a box is cloned from a base or forked from another box, not both; remove one of the two"),
                );
                ok = false;
                None
            }
            (Some(base), None) => {
                ok &= self.check_base_ref(doc, &at(&[k("base")]), base);
                Some(BoxSource::Base(base.clone()))
            }
            (None, Some(fork)) => {
                let pos = self.value_pos(doc, &at(&[k("fork")]));
                if fork == name {
                    self.problem(
                        doc,
                        pos,
                        "reference_cycle",
                        format!("box `{name}` cannot fork itself"),
                        "same box",
                        "name another box to clone, or use `base`".to_owned(),
                    );
                    ok = false;
                } else if let Err(err) = name::validate(NameKind::Box, fork) {
                    self.problem(
                        doc,
                        pos,
                        "invalid_reference",
                        err.message().to_owned(),
                        "invalid box name",
                        "name a box of this project".to_owned(),
                    );
                    ok = false;
                } else if !self.is_declared(Section::Boxes, fork)
                    && let Some(known) = &self.opts.known
                    && !known.boxes.contains(fork)
                {
                    let mut names: Vec<String> = known.boxes.iter().cloned().collect();
                    names.extend(
                        self.declared.keys().filter(|(s, _)| *s == Section::Boxes).map(|(_, n)| n.clone()),
                    );
                    let refs: Vec<&str> = names.iter().map(String::as_str).collect();
                    let help = match super::check::suggest(fork, &refs) {
                        Some(near) => format!("did you mean `{near}`? Otherwise define it under `boxes:`"),
                        None => "define it under `boxes:` or create it on the server".to_owned(),
                    };
                    self.problem(
                        doc,
                        pos,
                        "unknown_reference",
                        format!("box `{fork}` is neither in the workspace files nor on the server"),
                        "unknown box",
                        help,
                    );
                    ok = false;
                }
                Some(BoxSource::Fork(fork.clone()))
            }
            (None, None) => Some(BoxSource::Base(name::DEFAULT_BASE.to_owned())),
        };

        // Environment.
        let mut env = BTreeMap::new();
        for (key, value) in &s.env {
            let path = at(&[k("env"), k(key)]);
            if RESERVED_ENV.contains(&key.as_str()) {
                let pos = self.key_pos(doc, &path);
                self.problem(
                    doc,
                    pos,
                    "reserved_env",
                    format!("`{key}`: environment variable is reserved"),
                    "reserved",
                    format!("Forkr sets {} in every box; use another name", RESERVED_ENV.join(", ")),
                );
                ok = false;
            } else if !is_env_name(key) {
                let pos = self.key_pos(doc, &path);
                self.problem(
                    doc,
                    pos,
                    "invalid_env_name",
                    format!("`{key}` is not a valid environment variable name"),
                    "invalid name",
                    "use letters, digits and `_`, not starting with a digit (e.g. `APP_ENV`)".to_owned(),
                );
                ok = false;
            }
            let text = value.as_text();
            if text.contains('\0') {
                let pos = self.value_pos(doc, &path);
                self.problem(
                    doc,
                    pos,
                    "invalid_value",
                    format!("the value of `{key}` contains a NUL byte"),
                    "NUL byte",
                    "remove it".to_owned(),
                );
                ok = false;
            }
            env.insert(key.clone(), text);
        }

        // Resources.
        let cpu = match &s.cpu {
            None => None,
            Some(c) => {
                let (text, parsed) = match c {
                    Cpu::Cores(f) => (
                        f.to_string(),
                        if *f > 0.0 && f.is_finite() {
                            Ok(*f)
                        } else {
                            Err(format!("{f} is not a positive CPU amount"))
                        },
                    ),
                    Cpu::Text(t) => (t.clone(), parse_cpu(t)),
                };
                match parsed {
                    Ok(cores) => Some(CpuAmount { cores, text }),
                    Err(msg) => {
                        let pos = self.value_pos(doc, &at(&[k("cpu")]));
                        self.problem(
                            doc,
                            pos,
                            "invalid_value",
                            format!("invalid cpu: {msg}"),
                            "invalid CPU amount",
                            "write cores (`2`, `0.5`) or millicores (`500m`)".to_owned(),
                        );
                        ok = false;
                        None
                    }
                }
            }
        };
        let memory = match &s.memory {
            None => None,
            Some(q) => {
                let text = match q {
                    Quantity::Mib(n) => format!("{n}Mi"),
                    Quantity::Text(t) => t.clone(),
                };
                match self.quantity(doc, &at(&[k("memory")]), q, "memory") {
                    Some(mib) => Some((mib, text)),
                    None => {
                        ok = false;
                        None
                    }
                }
            }
        };
        // The schema check enforced 1..=65535.
        let port = s.port.and_then(|p| u16::try_from(p).ok());

        // Tags.
        let tags = match &s.tags {
            None => None,
            Some(list) => {
                let mut seen = BTreeSet::new();
                for (i, tag) in list.iter().enumerate() {
                    let path = at(&[k("tags"), Seg::Index(i)]);
                    let pos = self.value_pos(doc, &path);
                    if tag.starts_with(RESERVED_TAG_PREFIX) {
                        self.problem(
                            doc,
                            pos,
                            "reserved_tag",
                            format!("tag `{tag}` uses the reserved prefix `{RESERVED_TAG_PREFIX}`"),
                            "reserved prefix",
                            "Forkr adds its own `forkr.` tags (such as the workspace's ownership tag); pick another tag".to_owned(),
                        );
                        ok = false;
                    } else if tag.is_empty()
                        || tag.len() > 128
                        || tag.chars().any(|c| c.is_whitespace() || c.is_control())
                    {
                        self.problem(
                            doc,
                            pos,
                            "invalid_tag",
                            format!("tag {tag:?} is not valid"),
                            "invalid tag",
                            "tags are 1-128 characters without spaces".to_owned(),
                        );
                        ok = false;
                    } else if !seen.insert(tag.clone()) {
                        self.problem(
                            doc,
                            pos,
                            "duplicate_tag",
                            format!("tag `{tag}` is listed twice"),
                            "repeated",
                            "remove the repeat".to_owned(),
                        );
                        ok = false;
                    }
                }
                let mut sorted: Vec<String> = seen.into_iter().collect();
                sorted.sort();
                Some(sorted)
            }
        };

        // Data mounts.
        let mut data = Vec::new();
        let mut paths: BTreeMap<String, String> = BTreeMap::new();
        for (vol, spec) in &s.data {
            let path = at(&[k("data"), k(vol)]);
            if let Err(err) = name::validate(NameKind::Volume, vol) {
                let pos = self.key_pos(doc, &path);
                self.problem(
                    doc,
                    pos,
                    "invalid_name",
                    err.message().to_owned(),
                    "invalid volume name",
                    "name a volume of this project".to_owned(),
                );
                ok = false;
            } else if !self.is_declared(Section::Volumes, vol)
                && let Some(known) = &self.opts.known
                && !known.volumes.contains(vol)
            {
                let pos = self.key_pos(doc, &path);
                let declared: Vec<String> = self
                    .declared
                    .keys()
                    .filter(|(s, _)| *s == Section::Volumes)
                    .map(|(_, n)| n.clone())
                    .collect();
                let mut names: Vec<&str> = known.volumes.iter().map(String::as_str).collect();
                names.extend(declared.iter().map(String::as_str));
                let help = match super::check::suggest(vol, &names) {
                    Some(near) => format!("did you mean `{near}`? Otherwise define it under `volumes:`"),
                    None => "define it under `volumes:` or create it on the server".to_owned(),
                };
                self.problem(
                    doc,
                    pos,
                    "unknown_reference",
                    format!("volume `{vol}` is neither in the workspace files nor on the server"),
                    "unknown volume",
                    help,
                );
                ok = false;
            }
            match parse_mount(vol, spec) {
                Ok(mount) => {
                    if let Some(other) = paths.get(&mount.path) {
                        let pos = self.value_pos(doc, &path);
                        let first = self.value_pos(doc, &at(&[k("data"), k(other)]));
                        let file = self.docs[doc].file.clone();
                        self.problems.push(
                            Problem::new(
                                "duplicate_mount",
                                format!("volumes `{other}` and `{vol}` are both mounted at {}", mount.path),
                            )
                            .at(&file, pos, "mounted again here")
                            .also(first, "first mount")
                            .help("each mount needs its own path"),
                        );
                        ok = false;
                    } else {
                        paths.insert(mount.path.clone(), vol.clone());
                    }
                    data.push(mount);
                }
                Err(msg) => {
                    let pos = self.value_pos(doc, &path);
                    self.problem(
                        doc,
                        pos,
                        "invalid_mount",
                        format!("invalid mount for volume `{vol}`: {msg}"),
                        "invalid mount path",
                        "write an absolute path not under /proc, /sys, /dev, /run, /etc or /volumes, optionally ending in `:ro` or `:rw`"
                            .to_owned(),
                    );
                    ok = false;
                }
            }
        }
        data.sort_by(|a, b| a.name.cmp(&b.name));

        // Publishes.
        let mut publish = Vec::new();
        for (i, item) in s.publish.iter().enumerate() {
            let base_path = at(&[k("publish"), Seg::Index(i)]);
            match self.check_publish(doc, &base_path, item) {
                Some(p) => publish.push(p),
                None => ok = false,
            }
        }

        // Snapshots.
        let mut snapshots = Vec::new();
        let mut snap_names = BTreeSet::new();
        for (i, snap) in s.snapshots.iter().enumerate() {
            let path = at(&[k("snapshots"), Seg::Index(i)]);
            let pos = match snap {
                super::types::SnapshotSpec::Name(_) => self.value_pos(doc, &path),
                super::types::SnapshotSpec::Detailed(_) => {
                    let mut p = path.clone();
                    p.push(k("name"));
                    self.value_pos(doc, &p)
                }
            };
            if let Err(err) = name::validate(NameKind::Snapshot, snap.name()) {
                self.problem(
                    doc,
                    pos,
                    "invalid_name",
                    err.message().to_owned(),
                    "invalid snapshot name",
                    "use letters, digits, `_`, `.` and `-`".to_owned(),
                );
                ok = false;
            } else if !snap_names.insert(snap.name().to_owned()) {
                self.problem(
                    doc,
                    pos,
                    "duplicate_name",
                    format!("snapshot `{}` is listed twice", snap.name()),
                    "repeated",
                    "remove the repeat".to_owned(),
                );
                ok = false;
            }
            snapshots.push(Snapshot {
                name: snap.name().to_owned(),
                description: snap.description().map(str::to_owned),
            });
        }

        // Sync.
        let mut sync = Vec::new();
        for (i, entry) in s.sync.iter().enumerate() {
            let path = at(&[k("sync"), Seg::Index(i)]);
            let mut entry_ok = true;
            let mut from_path = path.clone();
            from_path.push(k("from"));
            let from = self.resolve_local(doc, &from_path, &entry.from, "sync source");
            if let Some(f) = &from
                && !f.is_dir()
            {
                let pos = self.value_pos(doc, &from_path);
                self.problem(
                    doc,
                    pos,
                    "missing_file",
                    format!("the sync source {:?} is not a folder", entry.from),
                    "no such folder",
                    "paths are relative to the workspace root (the folder holding `.forkr/`)".to_owned(),
                );
                entry_ok = false;
            }
            let mut to_path = path.clone();
            to_path.push(k("to"));
            if let Err(msg) = check_box_path(&entry.to) {
                let pos = self.value_pos(doc, &to_path);
                self.problem(
                    doc,
                    pos,
                    "invalid_path",
                    format!("invalid sync target: {msg}"),
                    "invalid box path",
                    "write an absolute path inside the box, such as `/work/src`".to_owned(),
                );
                entry_ok = false;
            } else if let Some(root) = ["/proc", "/sys", "/dev"]
                .iter()
                .find(|r| entry.to == **r || entry.to.starts_with(&format!("{r}/")))
            {
                let pos = self.value_pos(doc, &to_path);
                self.problem(
                    doc,
                    pos,
                    "invalid_path",
                    format!("cannot sync into {root}"),
                    "kernel file system",
                    format!("{root} is recreated on every start; pick another path"),
                );
                entry_ok = false;
            }
            for (key, patterns) in [("include", &entry.include), ("exclude", &entry.exclude)] {
                for (j, pattern) in patterns.iter().enumerate() {
                    if let Err(err) = globset::Glob::new(pattern) {
                        let mut p = path.clone();
                        p.extend([k(key), Seg::Index(j)]);
                        let pos = self.value_pos(doc, &p);
                        self.problem(
                            doc,
                            pos,
                            "invalid_glob",
                            format!("invalid glob {pattern:?}: {}", err.kind()),
                            "invalid pattern",
                            "use globset syntax, such as `**/*.rs` or `target/**`".to_owned(),
                        );
                        entry_ok = false;
                    }
                }
            }
            match (entry_ok, from) {
                (true, Some(from)) => sync.push(Sync {
                    from,
                    to: entry.to.clone(),
                    include: entry.include.clone(),
                    exclude: entry.exclude.clone(),
                }),
                _ => ok = false,
            }
        }

        let source = source?;
        ok.then(|| BoxDef {
            name: name.to_owned(),
            source,
            env,
            cpu,
            memory,
            port,
            termination_grace_seconds: s.termination_grace_seconds,
            tags,
            data,
            publish,
            snapshots,
            sync,
        })
    }

    fn check_publish(
        &mut self,
        doc: usize,
        path: &[Seg],
        item: &PublishSpec,
    ) -> Option<super::model::Publish> {
        let k = |s: &str| Seg::Key(s.to_owned());
        let sub_ok = |s: &str| s == "@" || is_hostname(s);
        match item {
            PublishSpec::Subdomain(sub) => {
                if !sub_ok(sub) {
                    let pos = self.value_pos(doc, path);
                    self.problem(
                        doc,
                        pos,
                        "invalid_publish",
                        format!("{sub:?} is not a valid subdomain"),
                        "invalid subdomain",
                        "use lowercase letters, digits and `-` (`@` for the bare domain), or `{ host: full.name }`".to_owned(),
                    );
                    return None;
                }
                Some(super::model::Publish {
                    subdomain: Some(sub.clone()),
                    domain: None,
                    host: None,
                    force: false,
                })
            }
            PublishSpec::Detailed(d) => {
                let mut sub_path = path.to_vec();
                let key_pos = |me: &Self, key: &str| {
                    let mut p = path.to_vec();
                    p.push(k(key));
                    me.key_pos(doc, &p)
                };
                match (&d.subdomain, &d.host) {
                    (None, None) => {
                        let pos = self.value_pos(doc, path);
                        self.problem(
                            doc,
                            pos,
                            "missing_key",
                            "a publish needs `subdomain` or `host`".to_owned(),
                            "neither given",
                            "add `subdomain: www` or `host: app.example.com`".to_owned(),
                        );
                        return None;
                    }
                    (Some(_), Some(_)) => {
                        let pos = key_pos(self, "host");
                        let other = key_pos(self, "subdomain");
                        let file = self.docs[doc].file.clone();
                        self.problems.push(
                            Problem::new("conflicting_keys", "`host` cannot be used with `subdomain`")
                                .at(&file, pos, "`host` given here")
                                .also(other, "`subdomain` given here")
                                .help("give the full hostname with `host`, or a subdomain of the publish domain with `subdomain`"),
                        );
                        return None;
                    }
                    _ => {}
                }
                if d.host.is_some() && d.domain.is_some() {
                    let pos = key_pos(self, "domain");
                    self.problem(
                        doc,
                        pos,
                        "conflicting_keys",
                        "`domain` cannot be used with `host`".to_owned(),
                        "`domain` given here",
                        "`host` is already a full name; remove `domain`".to_owned(),
                    );
                    return None;
                }
                let checks: [(&str, Option<&String>, bool); 3] = [
                    ("subdomain", d.subdomain.as_ref(), d.subdomain.as_deref().is_none_or(sub_ok)),
                    ("host", d.host.as_ref(), d.host.as_deref().is_none_or(is_hostname)),
                    ("domain", d.domain.as_ref(), d.domain.as_deref().is_none_or(is_hostname)),
                ];
                for (key, value, valid) in checks {
                    if let (Some(v), false) = (value, valid) {
                        sub_path.push(k(key));
                        let pos = self.value_pos(doc, &sub_path);
                        self.problem(
                            doc,
                            pos,
                            "invalid_publish",
                            format!("{v:?} is not a valid {key}"),
                            "invalid name",
                            "use lowercase letters, digits, `-` and `.`".to_owned(),
                        );
                        return None;
                    }
                }
                Some(super::model::Publish {
                    subdomain: d.subdomain.clone(),
                    domain: d.domain.clone(),
                    host: d.host.clone(),
                    force: d.force,
                })
            }
        }
    }

    /// Reports publishes that name the same host on two boxes (or twice on one).
    fn check_publish_duplicates(&mut self, boxes: &[Entry<BoxSpec>]) {
        let mut seen: BTreeMap<String, (String, usize, Vec<Seg>)> = BTreeMap::new();
        for e in boxes {
            for (i, item) in e.spec.publish.iter().enumerate() {
                let key = match item {
                    PublishSpec::Subdomain(s) => format!("{s}@"),
                    PublishSpec::Detailed(d) => match (&d.host, &d.subdomain) {
                        (Some(h), _) => h.clone(),
                        (None, Some(s)) => format!("{s}@{}", d.domain.as_deref().unwrap_or("")),
                        (None, None) => continue,
                    },
                };
                let path = vec![
                    Seg::Key("boxes".into()),
                    Seg::Key(e.name.clone()),
                    Seg::Key("publish".into()),
                    Seg::Index(i),
                ];
                match seen.get(&key.to_ascii_lowercase()) {
                    Some((other_box, other_doc, other_path)) => {
                        let pos = self.value_pos(e.doc, &path);
                        let first_pos = self.value_pos(*other_doc, other_path);
                        let file = self.docs[e.doc].file.clone();
                        let first_file = self.docs[*other_doc].file.clone();
                        let shown = key.trim_end_matches('@').replace('@', ".");
                        self.problems.push(
                            Problem::new(
                                "duplicate_publish",
                                format!("`{shown}` is published by `{other_box}` and `{}`", e.name),
                            )
                            .at(&file, pos, "published again here")
                            .related(&first_file, first_pos, format!("`{other_box}` publishes it here"))
                            .help("a host routes to one box; remove one of the publishes"),
                        );
                    }
                    None => {
                        seen.insert(key.to_ascii_lowercase(), (e.name.clone(), e.doc, path));
                    }
                }
            }
        }
    }

    /// Reports cycles of `from` (bases) or `fork` (boxes) among the workspace's entries.
    fn check_cycles(&mut self, section: Section, edges: Vec<(&str, usize, Option<&str>)>) {
        let next: BTreeMap<&str, (usize, &str)> = edges
            .iter()
            .filter_map(|(n, d, to)| to.map(|t| (*n, (*d, t.split(':').next().unwrap_or(t)))))
            .collect();
        let mut reported: BTreeSet<&str> = BTreeSet::new();
        for (start, _, _) in &edges {
            let mut chain = vec![*start];
            let mut cur = *start;
            while let Some(&(_, to)) = next.get(cur) {
                if to == cur {
                    break; // self-references are reported on their own
                }
                if let Some(idx) = chain.iter().position(|c| *c == to) {
                    let cycle: Vec<&str> = chain[idx..].to_vec();
                    if cycle.iter().any(|c| reported.contains(c)) {
                        break;
                    }
                    reported.extend(cycle.iter().copied());
                    let first = *cycle.iter().min().unwrap_or(&to);
                    let Some(&(doc, _)) = next.get(first) else { break };
                    let key = if section == Section::Bases { "from" } else { "fork" };
                    let pos = self.value_pos(
                        doc,
                        &[Seg::Key(section.key().into()), Seg::Key(first.into()), Seg::Key(key.into())],
                    );
                    let start_at = cycle.iter().position(|c| *c == first).unwrap_or(0);
                    let mut shown: Vec<&str> =
                        cycle[start_at..].iter().chain(cycle[..start_at].iter()).copied().collect();
                    shown.push(first);
                    self.problem(
                        doc,
                        pos,
                        "reference_cycle",
                        format!(
                            "{} {} form a cycle through `{key}`",
                            section.key(),
                            shown.iter().map(|s| format!("`{s}`")).collect::<Vec<_>>().join(" → ")
                        ),
                        "cycle",
                        format!("one of these {} must start from something outside the cycle", section.key()),
                    );
                    break;
                }
                if !next.contains_key(to) {
                    break;
                }
                chain.push(to);
                cur = to;
            }
        }
    }
}

#[cfg(test)]
mod tests;
