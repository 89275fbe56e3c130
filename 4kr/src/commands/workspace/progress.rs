//! Progress of an apply: a spinner per running action on a terminal (indicatif), plain lines
//! otherwise (CI logs, pipes, tests), both on stdout.
//!
//! Every finished action leaves one line either way (`✓ box.web: created (0.4s)` on a terminal,
//! `box.web: created (0.4s)` otherwise), so the record of what happened survives in a log.

use std::cell::RefCell;
use std::collections::HashMap;
use std::time::Duration;

use forkr_engine::plan::{Action, ObjectKind, Op};
use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};

use crate::error::CliError;

/// What an action is called while it runs and once it is done.
pub fn verbs(a: &Action) -> (&'static str, &'static str) {
    match (a.object, a.op) {
        (ObjectKind::Base, Op::Create | Op::Update) => ("building", "built"),
        (ObjectKind::Volume, Op::Update) => ("resizing", "resized"),
        (ObjectKind::Snapshot, _) => ("taking snapshot", "snapshot taken"),
        (ObjectKind::Publish, Op::Delete) => ("unpublishing", "unpublished"),
        (ObjectKind::Publish, _) => ("publishing", "published"),
        (ObjectKind::Box, Op::Replace) if a.keep_root => ("recreating on its root", "recreated on its root"),
        (_, Op::Create) => ("creating", "created"),
        (_, Op::Update) => ("updating", "updated"),
        (_, Op::Replace) => ("replacing", "replaced"),
        (_, Op::Delete) => ("destroying", "destroyed"),
    }
}

fn secs(d: Duration) -> String {
    format!("{:.1}s", d.as_secs_f64())
}

/// Where progress goes.
pub enum Progress {
    /// Spinners on a terminal.
    Bars { multi: MultiProgress, bars: RefCell<HashMap<String, ProgressBar>> },
    /// One line when an action starts and one when it ends.
    Lines,
}

impl Progress {
    /// Spinners when stdout is a terminal, lines otherwise.
    pub fn new(terminal: bool) -> Progress {
        if terminal {
            Progress::Bars {
                multi: MultiProgress::with_draw_target(ProgressDrawTarget::stdout()),
                bars: RefCell::new(HashMap::new()),
            }
        } else {
            Progress::Lines
        }
    }

    /// A line that stays (above the spinners on a terminal).
    pub fn println(&self, line: &str) {
        match self {
            Progress::Bars { multi, .. } => {
                if multi.println(line).is_err() {
                    println!("{line}");
                }
            }
            Progress::Lines => println!("{line}"),
        }
    }

    pub fn start(&self, a: &Action) {
        let (doing, _) = verbs(a);
        match self {
            Progress::Bars { multi, bars } => {
                let bar = multi.add(ProgressBar::new_spinner());
                if let Ok(style) = ProgressStyle::with_template("{spinner} {msg} [{elapsed}]") {
                    bar.set_style(style);
                }
                bar.set_message(format!("{}: {doing}...", a.id));
                bar.enable_steady_tick(Duration::from_millis(100));
                bars.borrow_mut().insert(a.id.clone(), bar);
            }
            Progress::Lines => println!("{}: {doing}...", a.id),
        }
    }

    fn end(&self, a: &Action, line: String) {
        if let Progress::Bars { multi, bars } = self
            && let Some(bar) = bars.borrow_mut().remove(&a.id)
        {
            bar.finish_and_clear();
            multi.remove(&bar);
        }
        self.println(&line);
    }

    pub fn done(&self, a: &Action, note: &str, took: Duration) {
        let (_, done) = verbs(a);
        let note = if note.is_empty() { String::new() } else { format!(", {note}") };
        let mark = if matches!(self, Progress::Bars { .. }) { "✓ " } else { "" };
        self.end(a, format!("{mark}{}: {done} ({}{note})", a.id, secs(took)));
    }

    pub fn failed(&self, a: &Action, e: &CliError, took: Duration) {
        let mark = if matches!(self, Progress::Bars { .. }) { "✗ " } else { "" };
        self.end(a, format!("{mark}{}: failed after {}: {}", a.id, secs(took), e.message()));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use forkr_engine::plan::Request;

    fn action(object: ObjectKind, op: Op, keep_root: bool) -> Action {
        Action {
            id: "box.web".into(),
            op,
            object,
            name: "web".into(),
            box_name: None,
            changes: Vec::new(),
            reason: None,
            keep_root,
            wave: 0,
            depends_on: Vec::new(),
            request: Request::DeleteBox { name: "web".into() },
        }
    }

    #[test]
    fn verbs_follow_object_and_op() {
        assert_eq!(verbs(&action(ObjectKind::Box, Op::Create, false)), ("creating", "created"));
        assert_eq!(verbs(&action(ObjectKind::Box, Op::Replace, true)).1, "recreated on its root");
        assert_eq!(verbs(&action(ObjectKind::Box, Op::Replace, false)).1, "replaced");
        assert_eq!(verbs(&action(ObjectKind::Base, Op::Update, false)).1, "built");
        assert_eq!(verbs(&action(ObjectKind::Publish, Op::Delete, false)).1, "unpublished");
        assert_eq!(secs(Duration::from_millis(1234)), "1.2s");
    }
}
