//! Problems found in workspace files, as miette diagnostics.
//!
//! A [`Problem`] is one finding: a stable code, a message saying what is wrong, the file and the
//! place (a label on the offending span), a help text saying how to fix it, and optionally related
//! places (the first definition of a duplicated name, in another file). [`SpecErrors`] carries all
//! problems of a load at once; it renders them for a terminal (graphical, with or without colour)
//! or as plain `file:line:col: message` lines, serializes them for `--json`, and converts into a
//! [`crate::Error`] for code paths that only speak that type.

use std::fmt;
use std::sync::Arc;

use miette::{
    Diagnostic, GraphicalReportHandler, GraphicalTheme, LabeledSpan, NamedSource, Severity, SourceCode,
};
use serde::Serialize;

use super::yaml::Pos;
use crate::Error;

/// A source file the problems point into: its display name (relative to the workspace root, such as
/// `.forkr/boxes.yaml`) and its text.
#[derive(Debug, Clone)]
pub struct SourceFile {
    src: NamedSource<Arc<str>>,
}

impl SourceFile {
    pub fn new(name: impl AsRef<str>, text: impl Into<Arc<str>>) -> Arc<SourceFile> {
        Arc::new(SourceFile { src: NamedSource::new(name, text.into()) })
    }

    pub fn name(&self) -> &str {
        self.src.name()
    }

    pub fn text(&self) -> &str {
        self.src.inner()
    }
}

/// A secondary place in the same file as the problem, with its own label.
#[derive(Debug, Clone)]
struct Extra {
    pos: Pos,
    label: String,
}

/// One problem in the workspace files.
#[derive(Debug, Clone)]
pub struct Problem {
    code: &'static str,
    message: String,
    file: Option<Arc<SourceFile>>,
    pos: Option<Pos>,
    label: String,
    help: Option<String>,
    extras: Vec<Extra>,
    related: Vec<Problem>,
    advice: bool,
}

impl Problem {
    pub(crate) fn new(code: &'static str, message: impl Into<String>) -> Problem {
        Problem {
            code,
            message: message.into(),
            file: None,
            pos: None,
            label: String::new(),
            help: None,
            extras: Vec::new(),
            related: Vec::new(),
            advice: false,
        }
    }

    /// Points the problem at `pos` in `file`, with `label` under the span.
    pub(crate) fn at(mut self, file: &Arc<SourceFile>, pos: Pos, label: impl Into<String>) -> Problem {
        self.file = Some(file.clone());
        self.pos = Some(pos);
        self.label = label.into();
        self
    }

    /// Names the file without a place in it (it could not be read or parsed at all).
    pub(crate) fn in_file(mut self, file: &Arc<SourceFile>) -> Problem {
        self.file = Some(file.clone());
        self
    }

    pub(crate) fn help(mut self, help: impl Into<String>) -> Problem {
        self.help = Some(help.into());
        self
    }

    /// Adds a second labelled place in the same file.
    pub(crate) fn also(mut self, pos: Pos, label: impl Into<String>) -> Problem {
        self.extras.push(Extra { pos, label: label.into() });
        self
    }

    /// Adds a related place in any file ("first defined here").
    pub(crate) fn related(mut self, file: &Arc<SourceFile>, pos: Pos, message: impl Into<String>) -> Problem {
        let mut rel = Problem::new(self.code, message).at(file, pos, "here");
        rel.advice = true;
        self.related.push(rel);
        self
    }

    /// The stable machine code, such as `unknown_key` or `reserved_env`.
    pub fn code(&self) -> &'static str {
        self.code
    }

    pub fn message(&self) -> &str {
        &self.message
    }

    pub fn help_text(&self) -> Option<&str> {
        self.help.as_deref()
    }

    /// The file's display name, relative to the workspace root.
    pub fn file(&self) -> Option<&str> {
        self.file.as_ref().map(|f| f.name())
    }

    /// 1-based line, when the problem has a place.
    pub fn line(&self) -> Option<usize> {
        self.pos.map(|p| p.line)
    }

    /// 1-based column (in characters), when the problem has a place.
    pub fn column(&self) -> Option<usize> {
        self.pos.map(|p| p.column)
    }

    /// `file:line:col` (or just the file, or nothing).
    pub fn location(&self) -> String {
        match (self.file(), self.pos) {
            (Some(f), Some(p)) => format!("{f}:{}:{}", p.line, p.column),
            (Some(f), None) => f.to_owned(),
            (None, _) => String::new(),
        }
    }

    /// One line: `file:line:col: error[code]: message (help: ...)`.
    pub fn to_line(&self) -> String {
        let loc = self.location();
        let mut out = if loc.is_empty() { String::new() } else { format!("{loc}: ") };
        out.push_str(&format!("error[{}]: {}", self.code, self.message));
        if let Some(h) = &self.help {
            out.push_str(&format!(" (help: {h})"));
        }
        out
    }

    fn sort_key(&self) -> (String, usize, usize) {
        (
            self.file().unwrap_or("").to_owned(),
            self.pos.map_or(0, |p| p.offset),
            self.pos.map_or(0, |p| p.len),
        )
    }
}

fn labeled(pos: Pos, label: &str, primary: bool) -> LabeledSpan {
    let label = (!label.is_empty()).then(|| label.to_owned());
    let span = (pos.offset, pos.len);
    if primary {
        LabeledSpan::new_primary_with_span(label, span)
    } else {
        LabeledSpan::new_with_span(label, span)
    }
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for Problem {}

impl Diagnostic for Problem {
    fn code<'a>(&'a self) -> Option<Box<dyn fmt::Display + 'a>> {
        (!self.advice).then(|| Box::new(self.code) as Box<dyn fmt::Display>)
    }

    fn severity(&self) -> Option<Severity> {
        Some(if self.advice { Severity::Advice } else { Severity::Error })
    }

    fn help<'a>(&'a self) -> Option<Box<dyn fmt::Display + 'a>> {
        self.help.as_ref().map(|h| Box::new(h) as Box<dyn fmt::Display>)
    }

    fn source_code(&self) -> Option<&dyn SourceCode> {
        match (&self.file, self.pos) {
            (Some(f), Some(_)) => Some(&f.src as &dyn SourceCode),
            _ => None,
        }
    }

    fn labels(&self) -> Option<Box<dyn Iterator<Item = LabeledSpan> + '_>> {
        let pos = self.pos?;
        let first = std::iter::once(labeled(pos, &self.label, true));
        let rest = self.extras.iter().map(|e| labeled(e.pos, &e.label, false));
        Some(Box::new(first.chain(rest)))
    }

    fn related<'a>(&'a self) -> Option<Box<dyn Iterator<Item = &'a dyn Diagnostic> + 'a>> {
        if self.related.is_empty() {
            return None;
        }
        Some(Box::new(self.related.iter().map(|r| r as &dyn Diagnostic)))
    }
}

/// A problem as `--json` reports it.
#[derive(Debug, Clone, Serialize)]
pub struct ProblemJson {
    pub code: &'static str,
    pub message: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub file: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub line: Option<usize>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub column: Option<usize>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub help: Option<String>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub related: Vec<ProblemJson>,
}

impl From<&Problem> for ProblemJson {
    fn from(p: &Problem) -> Self {
        ProblemJson {
            code: p.code,
            message: p.message.clone(),
            file: p.file().map(str::to_owned),
            line: p.line(),
            column: p.column(),
            help: p.help.clone(),
            related: p.related.iter().map(ProblemJson::from).collect(),
        }
    }
}

/// Every problem found while loading a workspace, in file and position order.
#[derive(Debug, Clone)]
pub struct SpecErrors {
    problems: Vec<Problem>,
}

impl SpecErrors {
    pub(crate) fn new(mut problems: Vec<Problem>) -> SpecErrors {
        problems.sort_by_key(|p| p.sort_key());
        SpecErrors { problems }
    }

    pub fn problems(&self) -> &[Problem] {
        &self.problems
    }

    pub fn len(&self) -> usize {
        self.problems.len()
    }

    pub fn is_empty(&self) -> bool {
        self.problems.is_empty()
    }

    /// Renders every problem with miette's graphical handler (source excerpt, label, help), then a
    /// count. `color` picks ANSI colours; tests and pipes use `false`.
    pub fn render(&self, color: bool) -> String {
        let theme = if color { GraphicalTheme::unicode() } else { GraphicalTheme::unicode_nocolor() };
        let handler = GraphicalReportHandler::new_themed(theme).with_width(100).with_links(false);
        let mut out = String::new();
        for p in &self.problems {
            // Writing into a String cannot fail.
            let _ = handler.render_report(&mut out, p);
            out.push('\n');
        }
        out.push_str(&self.count_line());
        out.push('\n');
        out
    }

    /// One `file:line:col: error[code]: message` line per problem.
    pub fn to_lines(&self) -> String {
        let mut out = String::new();
        for p in &self.problems {
            out.push_str(&p.to_line());
            out.push('\n');
        }
        out
    }

    pub fn to_json(&self) -> Vec<ProblemJson> {
        self.problems.iter().map(ProblemJson::from).collect()
    }

    fn count_line(&self) -> String {
        match self.problems.len() {
            1 => "1 problem found in the workspace files".to_owned(),
            n => format!("{n} problems found in the workspace files"),
        }
    }
}

impl fmt::Display for SpecErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.count_line())
    }
}

impl std::error::Error for SpecErrors {}

impl Diagnostic for SpecErrors {
    fn code<'a>(&'a self) -> Option<Box<dyn fmt::Display + 'a>> {
        Some(Box::new("invalid_workspace"))
    }

    fn related<'a>(&'a self) -> Option<Box<dyn Iterator<Item = &'a dyn Diagnostic> + 'a>> {
        Some(Box::new(self.problems.iter().map(|p| p as &dyn Diagnostic)))
    }
}

impl From<SpecErrors> for Error {
    /// A 400 `invalid_workspace` error whose message lists every problem with its place.
    fn from(e: SpecErrors) -> Error {
        Error::bad_request("invalid_workspace", format!("{}:\n{}", e.count_line(), e.to_lines().trim_end()))
    }
}
