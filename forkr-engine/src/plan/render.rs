//! The human rendering of a plan, modelled on Terraform's: a legend, one block per action with a
//! comment saying what happens and why, field-level `before -> after` lines (multi-line values as
//! a line diff), then warnings, conflicts and the summary line.

use std::fmt::Write;

use serde_json::Value;
use similar::{ChangeTag, TextDiff};

use super::{Action, Change, ObjectKind, Op, Plan};

/// How to render.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RenderOptions {
    /// ANSI colours (green `+`, yellow `~`, red `-`).
    pub color: bool,
}

struct Style {
    color: bool,
}

impl Style {
    fn paint(&self, code: &str, text: &str) -> String {
        if self.color { format!("\x1b[{code}m{text}\x1b[0m") } else { text.to_owned() }
    }

    fn symbol(&self, op: Op) -> String {
        match op {
            Op::Create => self.paint("32", "+"),
            Op::Update => self.paint("33", "~"),
            Op::Delete => self.paint("31", "-"),
            Op::Replace => format!("{}/{}", self.paint("31", "-"), self.paint("32", "+")),
        }
    }

    fn bold(&self, text: &str) -> String {
        self.paint("1", text)
    }
}

pub(super) fn render(plan: &Plan, opts: &RenderOptions) -> String {
    let st = Style { color: opts.color };
    let mut out = String::new();

    if plan.is_empty() {
        let _ = writeln!(
            out,
            "{} Project {:?} matches the workspace files.",
            st.bold("No changes."),
            plan.project
        );
    } else {
        let _ = writeln!(
            out,
            "Forkr will perform the following actions in project {:?} (workspace {}):",
            plan.project, plan.workspace
        );
        let used = |op: Op| plan.actions.iter().any(|a| a.op == op);
        let legend = [
            (Op::Create, "create"),
            (Op::Update, "update in place"),
            (Op::Replace, "replace (delete, then create)"),
            (Op::Delete, "destroy"),
        ];
        for (op, text) in legend {
            if used(op) {
                let _ = writeln!(out, "{:>3} {text}", pad_symbol(&st, op));
            }
        }

        let mut actions: Vec<&Action> = plan.actions.iter().collect();
        actions.sort_by(|a, b| {
            (a.object, &a.box_name, &a.name, a.op).cmp(&(b.object, &b.box_name, &b.name, b.op))
        });
        for a in actions {
            out.push('\n');
            render_action(&mut out, &st, a);
        }
        out.push('\n');
        let _ = writeln!(out, "{}", st.bold(&plan.summary_line()));
    }

    for w in &plan.warnings {
        let _ = writeln!(out, "\n{} {w}", st.paint("33;1", "Warning:"));
    }
    for c in &plan.conflicts {
        let _ = writeln!(out, "\n{} {c}", st.paint("31;1", "Error:"));
    }
    out
}

/// The symbol right-aligned in three columns, as Terraform prints `-/+`.
fn pad_symbol(st: &Style, op: Op) -> String {
    let width = op.symbol().len();
    format!("{}{}", " ".repeat(3usize.saturating_sub(width)), st.symbol(op))
}

fn headline(a: &Action) -> String {
    let name = &a.name;
    let of_box = a.box_name.as_deref().unwrap_or("");
    match (a.object, a.op) {
        (ObjectKind::Base, Op::Create) => format!("base {name:?} will be built"),
        (ObjectKind::Base, Op::Update) => format!("base {name:?} gets a new version"),
        (ObjectKind::Volume, Op::Update) => format!("volume {name:?} will be resized"),
        (ObjectKind::Box, Op::Update) => format!("box {name:?} will be updated in place"),
        (ObjectKind::Box, Op::Replace) => format!("box {name:?} must be replaced"),
        (ObjectKind::Snapshot, _) => format!("snapshot {name:?} of box {of_box:?} will be taken"),
        (ObjectKind::Publish, Op::Create) => format!("box {of_box:?} will be published on {name:?}"),
        (ObjectKind::Publish, _) => format!("{name:?} will be unpublished from box {of_box:?}"),
        (kind, Op::Create) => format!("{} {name:?} will be created", kind.noun()),
        (kind, Op::Delete) => format!("{} {name:?} will be destroyed", kind.noun()),
        (kind, op) => format!("{} {name:?}: {op:?}", kind.noun()),
    }
}

fn render_action(out: &mut String, st: &Style, a: &Action) {
    let _ = writeln!(out, "  # {}", st.bold(&headline(a)));
    if let Some(reason) = &a.reason {
        let _ = writeln!(out, "  # ({reason})");
    }
    if a.keep_root {
        let _ = writeln!(
            out,
            "  # it restarts with the new settings on its current root filesystem, so its files are kept"
        );
    }
    let title = format!("{} {:?}", a.object.noun(), a.name);
    let symbol = pad_symbol(st, a.op);
    if a.changes.is_empty() {
        let _ = writeln!(out, "{symbol} {title}");
        return;
    }
    let _ = writeln!(out, "{symbol} {title} {{");
    let width = a.changes.iter().filter(|c| !is_multiline(c)).map(|c| c.field.len()).max().unwrap_or(0);
    for c in &a.changes {
        render_change(out, st, a.op, c, width);
    }
    let _ = writeln!(out, "    }}");
}

fn is_multiline(c: &Change) -> bool {
    let ml = |v: &Option<Value>| matches!(v, Some(Value::String(s)) if s.contains('\n'));
    ml(&c.before) || ml(&c.after)
}

fn render_change(out: &mut String, st: &Style, op: Op, c: &Change, width: usize) {
    let marker = match (&c.before, &c.after) {
        (None, Some(_)) => Op::Create,
        (Some(_), None) => Op::Delete,
        _ if op == Op::Create => Op::Create,
        _ => Op::Update,
    };
    let sym = st.symbol(marker);
    let note = if c.forces_replacement {
        format!(" {}", st.paint("31", "# forces replacement"))
    } else {
        String::new()
    };

    if is_multiline(c) {
        let before = c.before.as_ref().and_then(Value::as_str).unwrap_or("");
        let after = c.after.as_ref().and_then(Value::as_str).unwrap_or("");
        let _ = writeln!(out, "      {sym} {} = <<-EOT{note}", c.field);
        if c.before.is_none() || c.after.is_none() {
            let text = if c.before.is_none() { after } else { before };
            for line in text.lines() {
                let _ = writeln!(out, "            {line}");
            }
        } else {
            let diff = TextDiff::from_lines(before, after);
            for change in diff.iter_all_changes() {
                let line = change.value().trim_end_matches('\n');
                let (mark, code) = match change.tag() {
                    ChangeTag::Delete => ("-", "31"),
                    ChangeTag::Insert => ("+", "32"),
                    ChangeTag::Equal => (" ", ""),
                };
                let text = format!("{mark} {line}");
                let text = if code.is_empty() { text } else { st.paint(code, &text) };
                let _ = writeln!(out, "          {text}");
            }
        }
        let _ = writeln!(out, "        EOT");
        return;
    }

    let field = format!("{:<width$}", c.field);
    let value = match (&c.before, &c.after) {
        (Some(b), Some(a)) => format!("{} -> {}", fmt_value(b), fmt_value(a)),
        (None, Some(a)) => fmt_value(a),
        (Some(b), None) => format!("{} -> null", fmt_value(b)),
        (None, None) => "null".to_owned(),
    };
    let _ = writeln!(out, "      {sym} {field} = {value}{note}");
}

/// A value as the rendering shows it: strings quoted, lists and maps inline.
fn fmt_value(v: &Value) -> String {
    match v {
        Value::String(s) => serde_json::to_string(s).unwrap_or_else(|_| format!("{s:?}")),
        Value::Array(items) => format!("[{}]", items.iter().map(fmt_value).collect::<Vec<_>>().join(", ")),
        Value::Object(map) => {
            let inner: Vec<String> = map.iter().map(|(k, v)| format!("{k} = {}", fmt_value(v))).collect();
            format!("{{ {} }}", inner.join(", "))
        }
        other => other.to_string(),
    }
}
