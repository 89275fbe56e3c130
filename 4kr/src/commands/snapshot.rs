//! `snapshot create|list|restore|delete`: read-only copies of one box's root (document 000).
//!
//! Snapshots are namespaced per box, so every subcommand takes the box first; a snapshot can only be
//! restored onto the box it was taken of, which the URL shape (`…/boxes/{box}/snapshots/{name}`)
//! enforces by construction.

use clap::{Args, Subcommand};
use forkr_engine::api::CreateSnapshot;
use forkr_engine::name::{self, NameKind};
use serde::Serialize;

use crate::cli::{JsonOpt, ProjectOpt};
use crate::ctx::Ctx;
use crate::error::Result;
use crate::output;

#[derive(Debug, Args)]
pub struct SnapshotArgs {
    #[command(subcommand)]
    pub command: SnapshotCommand,
}

#[derive(Debug, Subcommand)]
pub enum SnapshotCommand {
    /// Snapshot a box's root filesystem (named v0, v1, … unless you name it).
    Create(CreateArgs),
    /// List a box's snapshots: NAME SIZE CREATED DESCRIPTION.
    #[command(visible_alias = "ls")]
    List(ListArgs),
    /// Replace a box's root with a snapshot of it; the box restarts, /tmp and /run are wiped.
    Restore(TargetArgs),
    /// Delete a snapshot.
    #[command(visible_alias = "rm")]
    Delete(TargetArgs),
}

#[derive(Debug, Args)]
pub struct CreateArgs {
    /// The box to snapshot.
    #[arg(value_name = "BOX")]
    pub target: String,
    /// Snapshot name (pattern ^[a-zA-Z0-9_.-]+$) [default: the next vN].
    #[arg(value_name = "NAME")]
    pub name: Option<String>,
    /// Snapshot name; overrides the positional NAME.
    #[arg(long = "name", value_name = "NAME")]
    pub name_flag: Option<String>,
    /// Description shown by `snapshot list`.
    #[arg(short = 'm', long = "description", visible_alias = "message", value_name = "TEXT")]
    pub description: Option<String>,
    #[command(flatten)]
    pub project: ProjectOpt,
    #[command(flatten)]
    pub json: JsonOpt,
}

#[derive(Debug, Args)]
pub struct ListArgs {
    /// The box.
    #[arg(value_name = "BOX")]
    pub target: String,
    #[command(flatten)]
    pub project: ProjectOpt,
    #[command(flatten)]
    pub json: JsonOpt,
}

#[derive(Debug, Args)]
pub struct TargetArgs {
    /// The box the snapshot was taken of.
    #[arg(value_name = "BOX")]
    pub target: String,
    /// The snapshot.
    #[arg(value_name = "SNAPSHOT")]
    pub snapshot: String,
    #[command(flatten)]
    pub project: ProjectOpt,
    #[command(flatten)]
    pub json: JsonOpt,
}

/// The create request: `--name` beats the positional name (document 000); the name is checked here
/// so a typo fails before any request, with the same message the server gives.
pub fn create_request(a: &CreateArgs) -> Result<CreateSnapshot> {
    let name = a.name_flag.clone().or_else(|| a.name.clone());
    if let Some(n) = &name {
        name::validate(NameKind::Snapshot, n)?;
    }
    Ok(CreateSnapshot { name, description: a.description.clone().unwrap_or_default() })
}

pub async fn run(ctx: &Ctx, a: SnapshotArgs) -> Result<i32> {
    match a.command {
        SnapshotCommand::Create(a) => create(ctx, a).await,
        SnapshotCommand::List(a) => list(ctx, a).await,
        SnapshotCommand::Restore(a) => restore(ctx, a).await,
        SnapshotCommand::Delete(a) => delete(ctx, a).await,
    }
}

async fn create(ctx: &Ctx, a: CreateArgs) -> Result<i32> {
    let req = create_request(&a)?;
    let id = ctx.resolve_named(&a.target, &a.project)?;
    let snap = ctx.client()?.create_snapshot(&id, &req).await?;
    if a.json.json {
        output::print_json(&snap)?;
    } else {
        println!("{}: created", snap.name);
    }
    Ok(0)
}

async fn list(ctx: &Ctx, a: ListArgs) -> Result<i32> {
    let id = ctx.resolve_named(&a.target, &a.project)?;
    let snaps = ctx.client()?.list_snapshots(&id).await?;
    if a.json.json {
        output::print_json(&snaps)?;
    } else {
        print!("{}", output::snapshot_table(&snaps));
    }
    Ok(0)
}

async fn restore(ctx: &Ctx, a: TargetArgs) -> Result<i32> {
    name::validate(NameKind::Snapshot, &a.snapshot)?;
    let id = ctx.resolve_named(&a.target, &a.project)?;
    let info = ctx.client()?.restore_snapshot(&id, &a.snapshot).await?;
    if a.json.json {
        output::print_json(&info)?;
    } else {
        println!("{}: restored from {} ({})", info.name, a.snapshot, info.status.as_str());
    }
    Ok(0)
}

#[derive(Serialize)]
struct SnapshotDeleted<'a> {
    name: &'a str,
    deleted: bool,
}

async fn delete(ctx: &Ctx, a: TargetArgs) -> Result<i32> {
    name::validate(NameKind::Snapshot, &a.snapshot)?;
    let id = ctx.resolve_named(&a.target, &a.project)?;
    ctx.client()?.delete_snapshot(&id, &a.snapshot).await?;
    if a.json.json {
        output::print_json(&SnapshotDeleted { name: &a.snapshot, deleted: true })?;
    } else {
        println!("{}: deleted", a.snapshot);
    }
    Ok(0)
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser as _;

    fn create_args(args: &[&str]) -> CreateArgs {
        let cli = crate::cli::Cli::try_parse_from(["4kr", "snapshot", "create"].iter().chain(args)).unwrap();
        match cli.command {
            crate::cli::Command::Snapshot(SnapshotArgs { command: SnapshotCommand::Create(a) }) => a,
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn name_flag_overrides_the_positional_name() {
        let r = create_request(&create_args(&["web-1"])).unwrap();
        assert_eq!((r.name, r.description), (None, String::new()));
        let r = create_request(&create_args(&["web-1", "before", "-m", "Clean state"])).unwrap();
        assert_eq!((r.name.as_deref(), r.description.as_str()), (Some("before"), "Clean state"));
        let r = create_request(&create_args(&["web-1", "before", "--name", "after"])).unwrap();
        assert_eq!(r.name.as_deref(), Some("after"));
        let r = create_request(&create_args(&["web-1", "--name", "Rel_1.2", "--message", "x"])).unwrap();
        assert_eq!((r.name.as_deref(), r.description.as_str()), (Some("Rel_1.2"), "x"));
    }

    #[test]
    fn invalid_names_fail_before_any_request() {
        for bad in ["a b", "x/y", "..", "ü"] {
            let e = create_request(&create_args(&["web-1", bad])).unwrap_err();
            assert_eq!(e.code(), "invalid_name", "{bad}");
            assert!(e.message().contains("^[a-zA-Z0-9_.-]+$"), "{}", e.message());
        }
        // The flag is checked too, even when the positional name is fine.
        assert!(create_request(&create_args(&["web-1", "ok", "--name", "not ok"])).is_err());
    }

    #[test]
    fn the_wire_form_is_what_the_server_accepts() {
        let r = create_request(&create_args(&["web-1", "v9", "-m", "d"])).unwrap();
        assert_eq!(serde_json::to_value(&r).unwrap(), serde_json::json!({"name": "v9", "description": "d"}));
        let r = create_request(&create_args(&["web-1"])).unwrap();
        assert_eq!(serde_json::to_value(&r).unwrap(), serde_json::json!({}));
    }
}
