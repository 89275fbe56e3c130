//! Structural checks: a YAML tree against the JSON Schema generated from the Rust types.
//!
//! This walks the node tree and the schema side by side and records every mismatch instead of
//! stopping at the first, which is what serde would do. It understands the subset of JSON Schema
//! that `schemars` emits for our types: `$ref`, `allOf`, `anyOf`, `type`, `properties`,
//! `additionalProperties`, `required`, `items`, `minimum`/`maximum` and `enum`. Because the schema
//! is generated from the same types serde uses, a tree that passes here deserializes.

use std::sync::Arc;

use serde_json::Value;

use super::diag::{Problem, SourceFile};
use super::yaml::{Kind, Node, Pos, Seg, path_text};

/// The checker for one document.
pub(crate) struct Checker<'a> {
    root: &'a Value,
    file: &'a Arc<SourceFile>,
    /// Problems with the path of the node they are about (used to skip invalid entries later).
    pub problems: Vec<(Vec<Seg>, Problem)>,
}

impl<'a> Checker<'a> {
    pub fn new(root: &'a Value, file: &'a Arc<SourceFile>) -> Checker<'a> {
        Checker { root, file, problems: Vec::new() }
    }

    /// Checks a whole document against the root schema.
    pub fn check_document(&mut self, doc: &Node) {
        let mut path = Vec::new();
        self.check(self.root, self.root, doc, &mut path, None);
    }

    /// Follows `$ref`s to the schema they name.
    fn resolve(&self, mut schema: &'a Value) -> &'a Value {
        for _ in 0..32 {
            match schema.get("$ref").and_then(Value::as_str) {
                Some(r) => match r.strip_prefix('#').and_then(|p| self.root.pointer(p)) {
                    Some(target) => schema = target,
                    None => return schema,
                },
                None => return schema,
            }
        }
        schema
    }

    /// Whether `schema` allows a value of the kind of `node` at all (types only, not contents).
    fn accepts(&self, schema: &'a Value, node: &Node) -> bool {
        let schema = self.resolve(schema);
        if let Some(all) = schema.get("allOf").and_then(Value::as_array)
            && !all.iter().all(|s| self.accepts(s, node))
        {
            return false;
        }
        if let Some(any) = schema.get("anyOf").or_else(|| schema.get("oneOf")).and_then(Value::as_array)
            && !any.iter().any(|s| self.accepts(s, node))
        {
            return false;
        }
        match schema.get("type") {
            Some(t) => type_names(t).iter().any(|name| kind_matches(name, node)),
            None => true,
        }
    }

    /// The type names a schema allows, for "expected ..." messages.
    fn expected_names(&self, schema: &'a Value, out: &mut Vec<&'static str>) {
        let schema = self.resolve(schema);
        if let Some(t) = schema.get("type") {
            for name in type_names(t) {
                let noun = type_noun(name);
                if !out.contains(&noun) {
                    out.push(noun);
                }
            }
            return;
        }
        for key in ["anyOf", "oneOf", "allOf"] {
            if let Some(list) = schema.get(key).and_then(Value::as_array) {
                for s in list {
                    self.expected_names(s, out);
                }
            }
        }
    }

    /// `described` is the schema that carries the description of this place (a property's own
    /// schema before `$ref` resolution); `holder` is the key node this value sits under.
    fn check(
        &mut self,
        described: &'a Value,
        schema: &'a Value,
        node: &Node,
        path: &mut Vec<Seg>,
        holder: Option<&Node>,
    ) {
        let schema = self.resolve(schema);

        if let Some(all) = schema.get("allOf").and_then(Value::as_array) {
            for sub in all {
                self.check(described, sub, node, path, holder);
            }
        }

        if let Some(any) = schema.get("anyOf").or_else(|| schema.get("oneOf")).and_then(Value::as_array) {
            let fitting: Vec<&'a Value> = any.iter().filter(|s| self.accepts(s, node)).collect();
            match fitting.len() {
                0 => self.type_error(described, schema, node, path, holder),
                1 => self.check(described, fitting[0], node, path, holder),
                _ => {
                    // Several branches take this kind of value: keep the one that fits best.
                    let mut best: Option<Vec<(Vec<Seg>, Problem)>> = None;
                    for branch in fitting {
                        let saved = std::mem::take(&mut self.problems);
                        self.check(described, branch, node, path, holder);
                        let found = std::mem::replace(&mut self.problems, saved);
                        if best.as_ref().is_none_or(|b| found.len() < b.len()) {
                            best = Some(found);
                        }
                    }
                    self.problems.extend(best.unwrap_or_default());
                }
            }
            return;
        }

        if let Some(t) = schema.get("type")
            && !type_names(t).iter().any(|name| kind_matches(name, node))
        {
            self.type_error(described, schema, node, path, holder);
            return;
        }

        match &node.kind {
            Kind::Map(entries) => self.check_map(described, schema, node, entries, path, holder),
            Kind::Seq(items) => {
                if let Some(item_schema) = schema.get("items") {
                    for (i, item) in items.iter().enumerate() {
                        path.push(Seg::Index(i));
                        self.check(item_schema, item_schema, item, path, holder);
                        path.pop();
                    }
                }
            }
            Kind::Int(_) | Kind::UInt(_) | Kind::Float(_) => self.check_range(described, schema, node, path),
            Kind::Str(s) => {
                if let Some(allowed) = schema.get("enum").and_then(Value::as_array) {
                    let names: Vec<&str> = allowed.iter().filter_map(Value::as_str).collect();
                    if !names.contains(&s.as_str()) {
                        let help = match suggest(s, &names) {
                            Some(near) => format!("did you mean `{near}`?"),
                            None => format!("use one of: {}", names.join(", ")),
                        };
                        self.push(
                            path,
                            Problem::new("invalid_value", format!("`{}` cannot be {s:?}", path_text(path)))
                                .at(self.file, node.pos, "not an allowed value")
                                .help(help),
                        );
                    }
                }
            }
            Kind::Null | Kind::Bool(_) => {}
        }
    }

    fn check_map(
        &mut self,
        described: &'a Value,
        schema: &'a Value,
        node: &Node,
        entries: &[(Node, Node)],
        path: &mut Vec<Seg>,
        holder: Option<&Node>,
    ) {
        let properties = schema.get("properties").and_then(Value::as_object);
        let additional = schema.get("additionalProperties");
        let mut seen: Vec<(String, &Node)> = Vec::new();
        let where_ =
            if path.is_empty() { "at the top level".to_owned() } else { format!("in `{}`", path_text(path)) };

        for (key, value) in entries {
            let Some(name) = key.key_text() else {
                self.push(
                    path,
                    Problem::new("invalid_key", format!("a key {where_} is a list or mapping"))
                        .at(self.file, key.pos, "not a plain key")
                        .help("keys are plain names such as `port` or `web`"),
                );
                continue;
            };
            if let Some((_, first)) = seen.iter().find(|(n, _)| *n == name) {
                let mut p = path.clone();
                p.push(Seg::Key(name.clone()));
                self.push(
                    &p,
                    Problem::new("duplicate_key", format!("key `{name}` appears twice {where_}"))
                        .at(self.file, key.pos, "repeated here")
                        .also(first.pos, "first here")
                        .help("YAML keys must be unique in a mapping; merge the two entries or rename one"),
                );
                continue;
            }
            seen.push((name.clone(), key));

            path.push(Seg::Key(name.clone()));
            if let Some(prop) = properties.and_then(|p| p.get(&name)) {
                self.check(prop, prop, value, path, Some(key));
            } else {
                match additional {
                    Some(Value::Bool(false)) => {
                        let valid: Vec<&str> =
                            properties.map(|p| p.keys().map(String::as_str).collect()).unwrap_or_default();
                        let help = match suggest(&name, &valid) {
                            Some(near) => format!("did you mean `{near}`?"),
                            None => format!("valid keys here: {}", valid.join(", ")),
                        };
                        self.push(
                            path,
                            Problem::new("unknown_key", format!("unknown key `{name}` {where_}"))
                                .at(self.file, key.pos, "unknown key")
                                .help(help),
                        );
                    }
                    Some(extra @ Value::Object(_)) => self.check(extra, extra, value, path, Some(key)),
                    _ => {}
                }
            }
            path.pop();
        }

        if let Some(required) = schema.get("required").and_then(Value::as_array) {
            for req in required.iter().filter_map(Value::as_str) {
                if !seen.iter().any(|(n, _)| n == req) {
                    let prop = properties.and_then(|p| p.get(req));
                    let help = prop.and_then(describe).unwrap_or_else(|| format!("add `{req}`"));
                    let what = if path.is_empty() {
                        "the file".to_owned()
                    } else {
                        format!("`{}`", path_text(path))
                    };
                    self.push(
                        path,
                        Problem::new("missing_key", format!("{what} is missing the required key `{req}`"))
                            .at(self.file, label_pos(node, holder), format!("`{req}` missing here"))
                            .help(format!("add `{req}`: {help}")),
                    );
                }
            }
        }
        let _ = described;
    }

    fn check_range(&mut self, described: &'a Value, schema: &'a Value, node: &Node, path: &[Seg]) {
        let value = match node.kind {
            Kind::Int(i) => i as f64,
            Kind::UInt(u) => u as f64,
            Kind::Float(f) => f,
            _ => return,
        };
        let min = schema.get("minimum").and_then(Value::as_f64);
        let max = schema.get("maximum").and_then(Value::as_f64);
        let below = min.is_some_and(|m| value < m);
        let above = max.is_some_and(|m| value > m);
        if !below && !above {
            return;
        }
        let shown = number_text(node);
        let rule = match (min, max) {
            (Some(lo), Some(hi)) => format!("between {} and {}", fmt_num(lo), fmt_num(hi)),
            (Some(lo), None) => format!("at least {}", fmt_num(lo)),
            (None, Some(hi)) => format!("at most {}", fmt_num(hi)),
            (None, None) => return,
        };
        let code = if matches!(path.last(), Some(Seg::Key(k)) if k == "port") {
            "invalid_port"
        } else {
            "out_of_range"
        };
        let mut problem = Problem::new(code, format!("`{}` must be {rule}, found {shown}", path_text(path)))
            .at(self.file, node.pos, "out of range");
        if let Some(help) = describe(described).or_else(|| describe(schema)) {
            problem = problem.help(help);
        }
        self.push(path, problem);
    }

    fn type_error(
        &mut self,
        described: &'a Value,
        schema: &'a Value,
        node: &Node,
        path: &[Seg],
        holder: Option<&Node>,
    ) {
        let mut names = Vec::new();
        self.expected_names(schema, &mut names);
        names.retain(|n| *n != "nothing (null)");
        let expected = join_or(&names);
        let what = if path.is_empty() { "the file".to_owned() } else { format!("`{}`", path_text(path)) };
        let mut problem = Problem::new(
            "wrong_type",
            format!("{what} must be {expected}, found {}", node.kind_name()),
        )
        .at(self.file, label_pos(node, holder), format!("expected {expected}"));
        if let Some(help) = describe(described).or_else(|| describe(self.resolve(schema))) {
            problem = problem.help(help);
        }
        self.push(path, problem);
    }

    fn push(&mut self, path: &[Seg], problem: Problem) {
        self.problems.push((path.to_vec(), problem));
    }
}

/// Where to put a label for a whole value: block mappings and lists have no length of their own,
/// so their key is the better place.
fn label_pos(node: &Node, holder: Option<&Node>) -> Pos {
    match (&node.kind, holder) {
        (Kind::Map(_) | Kind::Seq(_) | Kind::Null, Some(h)) if node.pos.len <= 1 => h.pos,
        _ => node.pos,
    }
}

fn type_names(t: &Value) -> Vec<&str> {
    match t {
        Value::String(s) => vec![s.as_str()],
        Value::Array(list) => list.iter().filter_map(Value::as_str).collect(),
        _ => Vec::new(),
    }
}

fn kind_matches(type_name: &str, node: &Node) -> bool {
    matches!(
        (type_name, &node.kind),
        ("null", Kind::Null)
            | ("boolean", Kind::Bool(_))
            | ("integer", Kind::Int(_) | Kind::UInt(_))
            | ("number", Kind::Int(_) | Kind::UInt(_) | Kind::Float(_))
            | ("string", Kind::Str(_))
            | ("array", Kind::Seq(_))
            | ("object", Kind::Map(_))
    )
}

fn type_noun(type_name: &str) -> &'static str {
    match type_name {
        "null" => "nothing (null)",
        "boolean" => "a boolean (true or false)",
        "integer" => "an integer",
        "number" => "a number",
        "string" => "a string",
        "array" => "a list",
        "object" => "a mapping",
        _ => "a value",
    }
}

fn join_or(names: &[&str]) -> String {
    match names {
        [] => "something else".to_owned(),
        [one] => (*one).to_owned(),
        [init @ .., last] => format!("{} or {last}", init.join(", ")),
    }
}

fn fmt_num(v: f64) -> String {
    if v.fract() == 0.0 && v.abs() < 1e15 { format!("{}", v as i64) } else { v.to_string() }
}

fn number_text(node: &Node) -> String {
    match node.kind {
        Kind::Int(i) => i.to_string(),
        Kind::UInt(u) => u.to_string(),
        Kind::Float(f) => f.to_string(),
        _ => String::new(),
    }
}

/// The help text a schema offers: its description as one line, plus its first example.
pub(crate) fn describe(schema: &Value) -> Option<String> {
    let desc = schema.get("description").and_then(Value::as_str)?;
    let mut text = desc.split_whitespace().collect::<Vec<_>>().join(" ");
    if let Some(example) = schema.get("examples").and_then(Value::as_array).and_then(|e| e.first()) {
        let shown = match example {
            Value::String(s) if !s.contains('\n') => s.clone(),
            other => other.to_string(),
        };
        text.push_str(&format!(" Example: `{shown}`"));
    }
    Some(text)
}

/// The closest of `candidates` to `word`, when it is close enough to be a likely typo.
pub(crate) fn suggest<'c>(word: &str, candidates: &[&'c str]) -> Option<&'c str> {
    let word_l = word.to_ascii_lowercase();
    candidates
        .iter()
        .map(|c| (strsim::jaro_winkler(&word_l, &c.to_ascii_lowercase()), *c))
        .filter(|(score, _)| *score >= 0.8)
        .max_by(|a, b| a.0.total_cmp(&b.0))
        .map(|(_, c)| c)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::spec::schema::{SchemaKind, schema};
    use crate::spec::yaml::parse;

    fn problems(text: &str) -> Vec<(String, &'static str, String, Option<String>)> {
        let file = SourceFile::new("t.yaml", text);
        let docs = parse(text).unwrap();
        let mut checker = Checker::new(schema(SchemaKind::Workspace), &file);
        for d in &docs {
            checker.check_document(d);
        }
        checker
            .problems
            .into_iter()
            .map(|(path, p)| {
                (path_text(&path), p.code(), p.message().to_owned(), p.help_text().map(str::to_owned))
            })
            .collect()
    }

    #[test]
    fn valid_file_has_no_problems() {
        let text = "project: p\nboxes:\n  web:\n    port: 80\n    env: { A: 1, B: x, C: true }\n    cpu: 0.5\n    memory: 512Mi\n    publish: [www, {host: a.example.com}]\n    snapshots: [v1, {name: v2, description: d}]\n    sync: [{from: src, to: /src}]\n    data: { vol: /data }\nbases:\n  b:\n    script: { file: x.sh }\nvolumes:\n  vol: { size: 10 }\n";
        assert_eq!(problems(text), vec![]);
    }

    #[test]
    fn unknown_key_suggests_the_near_one() {
        let p = problems("boxes:\n  web:\n    prot: 80\n");
        assert_eq!(p.len(), 1);
        assert_eq!(p[0].1, "unknown_key");
        assert_eq!(p[0].2, "unknown key `prot` in `boxes.web`");
        assert_eq!(p[0].3.as_deref(), Some("did you mean `port`?"));
        let p = problems("boxs: {}\n");
        assert_eq!(p[0].3.as_deref(), Some("did you mean `boxes`?"));
    }

    #[test]
    fn wrong_types_and_ranges_are_all_reported() {
        let p = problems(
            "boxes:\n  web:\n    port: eighty\n    tags: web\n  api:\n    port: 70000\n    termination_grace_seconds: 90000\n",
        );
        let codes: Vec<_> = p.iter().map(|x| (x.0.as_str(), x.1)).collect();
        assert_eq!(
            codes,
            vec![
                ("boxes.web.port", "wrong_type"),
                ("boxes.web.tags", "wrong_type"),
                ("boxes.api.port", "invalid_port"),
                ("boxes.api.termination_grace_seconds", "out_of_range"),
            ]
        );
        assert_eq!(p[0].2, "`boxes.web.port` must be an integer, found a string");
        assert_eq!(p[2].2, "`boxes.api.port` must be between 1 and 65535, found 70000");
        assert!(p[0].3.as_deref().unwrap().contains("Example: `8080`"), "{:?}", p[0].3);
    }

    #[test]
    fn untagged_choices_pick_the_fitting_branch() {
        let p = problems("boxes:\n  web:\n    publish:\n      - {hots: a.example.com}\n    cpu: [1]\n");
        assert_eq!(p.len(), 2, "{p:?}");
        assert_eq!(p[0].2, "unknown key `hots` in `boxes.web.publish[0]`");
        assert_eq!(p[0].3.as_deref(), Some("did you mean `host`?"));
        assert_eq!(p[1].2, "`boxes.web.cpu` must be a number or a string, found a list");
    }

    #[test]
    fn missing_required_and_duplicates() {
        let p = problems("boxes:\n  web:\n    sync:\n      - from: src\n    port: 1\n    port: 2\n");
        let codes: Vec<_> = p.iter().map(|x| x.1).collect();
        assert_eq!(codes, vec!["missing_key", "duplicate_key"], "{p:?}");
        assert_eq!(p[0].2, "`boxes.web.sync[0]` is missing the required key `to`");
    }

    #[test]
    fn suggestions_need_to_be_close() {
        assert_eq!(suggest("prot", &["port", "base"]), Some("port"));
        assert_eq!(suggest("zzzz", &["port", "base"]), None);
    }
}
