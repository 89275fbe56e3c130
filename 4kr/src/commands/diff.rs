//! `diff status|file`: what changed in a box's root since a snapshot (document 000). Root-only by
//! construction: data volumes are not part of a snapshot, so they are not part of a diff either.

use clap::{Args, Subcommand};
use forkr_engine::api::{DiffStatus, FileDiff, FileStatus};
use forkr_engine::name::{self, NameKind};

use crate::cli::{JsonOpt, ProjectOpt};
use crate::ctx::Ctx;
use crate::error::{CliError, Result};
use crate::output;

#[derive(Debug, Args)]
pub struct DiffArgs {
    #[command(subcommand)]
    pub command: DiffCommand,
}

#[derive(Debug, Subcommand)]
pub enum DiffCommand {
    /// List added (+), modified (~) and deleted (-) paths since a snapshot.
    Status(StatusArgs),
    /// One file against a snapshot: added, deleted, modified (with a unified diff) or unchanged.
    File(FileArgs),
}

#[derive(Debug, Args)]
pub struct StatusArgs {
    /// The box.
    #[arg(value_name = "BOX")]
    pub target: String,
    /// Snapshot to compare against [default: the most recent one].
    #[arg(long, value_name = "SNAPSHOT")]
    pub against: Option<String>,
    #[command(flatten)]
    pub project: ProjectOpt,
    #[command(flatten)]
    pub json: JsonOpt,
}

#[derive(Debug, Args)]
pub struct FileArgs {
    /// The box.
    #[arg(value_name = "BOX")]
    pub target: String,
    /// Absolute path of the file inside the box (files up to 1 MB).
    #[arg(value_name = "PATH")]
    pub path: String,
    /// Snapshot to compare against [default: the most recent one].
    #[arg(long, value_name = "SNAPSHOT")]
    pub against: Option<String>,
    #[command(flatten)]
    pub project: ProjectOpt,
    #[command(flatten)]
    pub json: JsonOpt,
}

pub async fn run(ctx: &Ctx, a: DiffArgs) -> Result<i32> {
    match a.command {
        DiffCommand::Status(a) => status(ctx, a).await,
        DiffCommand::File(a) => file(ctx, a).await,
    }
}

fn check_against(against: Option<&str>) -> Result<()> {
    if let Some(s) = against {
        name::validate(NameKind::Snapshot, s)?;
    }
    Ok(())
}

/// The path must be absolute (document 000); checked here too, so the answer needs no server.
pub fn check_path(path: &str) -> Result<()> {
    if !path.starts_with('/') {
        return Err(CliError::from(forkr_engine::Error::bad_request(
            "invalid_path",
            format!("path {path:?} must be absolute"),
        ))
        .with_help(format!("give the path from the box's root, e.g. /{}", path.trim_start_matches("./"))));
    }
    Ok(())
}

/// `+ path`, `~ path`, `- path` lines, or `No changes`.
pub fn render_status(d: &DiffStatus) -> String {
    if d.changes.is_empty() {
        return "No changes\n".to_owned();
    }
    d.changes.iter().map(|c| format!("{} {}\n", c.kind.symbol(), c.path)).collect()
}

/// `<path>: <status> (against <snapshot>)`, then the unified diff for a modified file.
pub fn render_file(d: &FileDiff) -> String {
    let status = match d.status {
        FileStatus::Added => "added",
        FileStatus::Deleted => "deleted",
        FileStatus::Modified => "modified",
        FileStatus::Unchanged => "unchanged",
    };
    let mut out = format!("{}: {status} (against {})\n", d.path, d.against);
    if let Some(diff) = &d.diff {
        out.push_str(diff);
        if !diff.ends_with('\n') {
            out.push('\n');
        }
    }
    out
}

async fn status(ctx: &Ctx, a: StatusArgs) -> Result<i32> {
    check_against(a.against.as_deref())?;
    let id = ctx.resolve_named(&a.target, &a.project)?;
    let d = ctx.client()?.diff_status(&id, a.against.as_deref()).await?;
    if a.json.json {
        output::print_json(&d)?;
    } else {
        print!("{}", render_status(&d));
    }
    Ok(0)
}

async fn file(ctx: &Ctx, a: FileArgs) -> Result<i32> {
    check_path(&a.path)?;
    check_against(a.against.as_deref())?;
    let id = ctx.resolve_named(&a.target, &a.project)?;
    let d = ctx.client()?.diff_file(&id, &a.path, a.against.as_deref()).await?;
    if a.json.json {
        output::print_json(&d)?;
    } else {
        print!("{}", render_file(&d));
    }
    Ok(0)
}

#[cfg(test)]
mod tests {
    use super::*;
    use forkr_engine::api::{ChangeKind, PathChange};

    #[test]
    fn status_lines_or_no_changes() {
        let mut d = DiffStatus { against: "v0".into(), changes: vec![] };
        assert_eq!(render_status(&d), "No changes\n");
        d.changes = vec![
            PathChange { path: "/etc/new".into(), kind: ChangeKind::Added },
            PathChange { path: "/etc/passwd".into(), kind: ChangeKind::Modified },
            PathChange { path: "/root/gone".into(), kind: ChangeKind::Deleted },
        ];
        assert_eq!(render_status(&d), "+ /etc/new\n~ /etc/passwd\n- /root/gone\n");
    }

    #[test]
    fn file_status_and_diff() {
        let mut d =
            FileDiff { path: "/etc/x".into(), against: "v1".into(), status: FileStatus::Added, diff: None };
        assert_eq!(render_file(&d), "/etc/x: added (against v1)\n");
        d.status = FileStatus::Modified;
        d.diff = Some("--- /etc/x (v1)\n+++ /etc/x (live)\n@@ -1 +1 @@\n-a\n+b".into());
        assert_eq!(
            render_file(&d),
            "/etc/x: modified (against v1)\n--- /etc/x (v1)\n+++ /etc/x (live)\n@@ -1 +1 @@\n-a\n+b\n"
        );
    }

    #[test]
    fn relative_paths_are_refused() {
        for bad in ["etc/x", "./etc/x", "", "~/x"] {
            let e = check_path(bad).unwrap_err();
            assert_eq!(e.message(), format!("path {bad:?} must be absolute"));
        }
        assert!(check_path("/etc/x").is_ok());
        assert_eq!(
            check_path("./etc/x").unwrap_err().help.as_deref(),
            Some("give the path from the box's root, e.g. /etc/x")
        );
    }
}
