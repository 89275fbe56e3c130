//! `base list|show|save|import|build|delete`: read-only templates every box is cloned from
//! (document 000).
//!
//! Bases are global, not per project: only `base save` names a box, and its `-p` is that box's
//! project. On `base import` (and `base build`) `-p` means `--parent`; those commands have no
//! `--project`.

use std::path::{Path, PathBuf};

use clap::{Args, Subcommand};
use forkr_engine::api::{BaseVersion, BuildBase, BuildResult, SaveBase};
use forkr_engine::name::{self, NameKind};

use crate::cli::{JsonOpt, ProjectOpt};
use crate::commands::dockerfile;
use crate::ctx::Ctx;
use crate::error::{CliError, Result};
use crate::output;

#[derive(Debug, Args)]
pub struct BaseArgs {
    #[command(subcommand)]
    pub command: BaseCommand,
}

#[derive(Debug, Subcommand)]
pub enum BaseCommand {
    /// List bases: NAME VERSION SIZE CREATED (the newest version of each).
    #[command(visible_alias = "ls")]
    List(ListArgs),
    /// Show a base and its versions: VERSION KIND TAG BUILDER PARENT SIZE CREATED.
    Show(ShowArgs),
    /// Save a box's root filesystem as a new base version (the box need not run).
    Save(SaveArgs),
    /// Import a .tar.gz of a root filesystem as a new base version.
    Import(ImportArgs),
    /// Build a base from ./Dockerfile (docker, podman or nerdctl), or from a script with --script.
    Build(BuildArgs),
    /// Delete a base (every version) or one exact version.
    #[command(visible_alias = "rm")]
    Delete(DeleteArgs),
}

#[derive(Debug, Args)]
pub struct ListArgs {
    #[command(flatten)]
    pub json: JsonOpt,
}

#[derive(Debug, Args)]
pub struct ShowArgs {
    /// The base name (alias).
    #[arg(value_name = "NAME")]
    pub name: String,
    /// Only versions built from a script with this sha256 (the TAG column).
    #[arg(long, value_name = "SHA256")]
    pub tag: Option<String>,
    #[command(flatten)]
    pub json: JsonOpt,
}

#[derive(Debug, Args)]
pub struct SaveArgs {
    /// Name of the base to write (a new version when it exists).
    #[arg(value_name = "BASE")]
    pub base: String,
    /// The box whose root filesystem becomes the base.
    #[arg(value_name = "BOX")]
    pub r#box: String,
    #[command(flatten)]
    pub project: ProjectOpt,
    #[command(flatten)]
    pub json: JsonOpt,
}

#[derive(Debug, Args)]
pub struct ImportArgs {
    /// Name of the base to write (a new version when it exists).
    #[arg(value_name = "NAME")]
    pub name: String,
    /// A gzip-compressed tarball of a root filesystem.
    #[arg(long, value_name = "FILE", required = true)]
    pub file: PathBuf,
    /// Extract the tarball on top of this base (alias, exact version or alias:tag); here -p means
    /// --parent, not --project.
    #[arg(short = 'p', long, value_name = "BASE")]
    pub parent: Option<String>,
    #[command(flatten)]
    pub json: JsonOpt,
}

#[derive(Debug, Args)]
pub struct BuildArgs {
    /// Name of the base to write (a new version when it exists).
    #[arg(value_name = "NAME")]
    pub name: String,
    /// Run this shell script in a throwaway box on the parent base and save the result; the version's
    /// TAG is the script's sha256, and an unchanged script builds nothing. Without it: ./Dockerfile.
    #[arg(long, value_name = "FILE")]
    pub script: Option<PathBuf>,
    /// Base the script runs on [default: box-base]; -p means --parent.
    #[arg(short = 'p', long, value_name = "BASE", requires = "script")]
    pub parent: Option<String>,
    #[command(flatten)]
    pub json: JsonOpt,
}

#[derive(Debug, Args)]
pub struct DeleteArgs {
    /// A base name (deletes every version) or an exact version.
    #[arg(value_name = "NAME|VERSION")]
    pub target: String,
    /// Delete even while boxes use it or child bases are built on it.
    #[arg(short = 'f', long)]
    pub force: bool,
    /// Also delete every base built on it.
    #[arg(long)]
    pub cascade: bool,
    #[command(flatten)]
    pub json: JsonOpt,
}

pub async fn run(ctx: &Ctx, a: BaseArgs) -> Result<i32> {
    match a.command {
        BaseCommand::List(a) => list(ctx, a).await,
        BaseCommand::Show(a) => show(ctx, a).await,
        BaseCommand::Save(a) => save(ctx, a).await,
        BaseCommand::Import(a) => import(ctx, a).await,
        BaseCommand::Build(a) => build(ctx, a).await,
        BaseCommand::Delete(a) => delete(ctx, a).await,
    }
}

fn check_name(name: &str) -> Result<()> {
    Ok(name::validate(NameKind::Base, name)?)
}

async fn list(ctx: &Ctx, a: ListArgs) -> Result<i32> {
    let bases = ctx.client()?.list_bases().await?;
    if a.json.json {
        output::print_json(&bases)?;
    } else {
        print!("{}", output::base_table(&bases));
    }
    Ok(0)
}

async fn show(ctx: &Ctx, a: ShowArgs) -> Result<i32> {
    check_name(&a.name)?;
    let info = ctx.client()?.show_base(&a.name, a.tag.as_deref()).await?;
    if a.json.json {
        output::print_json(&info)?;
        return Ok(0);
    }
    print!("{}", output::base_details(&info));
    if let Some(tag) = &a.tag
        && info.versions.is_empty()
    {
        eprintln!("no version of {} has tag {tag}", info.name);
    }
    Ok(0)
}

fn print_version(v: &BaseVersion, json: bool, what: &str) -> Result<()> {
    if json {
        output::print_json(v)
    } else {
        println!("{}: {what}", v.version);
        Ok(())
    }
}

async fn save(ctx: &Ctx, a: SaveArgs) -> Result<i32> {
    check_name(&a.base)?;
    let id = ctx.resolve_named(&a.r#box, &a.project)?;
    let req = SaveBase { project: id.project.clone(), r#box: id.name.clone(), tags: Vec::new() };
    let v = ctx.client()?.save_base(&a.base, &req).await?;
    print_version(&v, a.json.json, &format!("saved from {id}"))?;
    Ok(0)
}

/// Opens a local tarball for a streaming upload; a missing file or a directory is a clear error.
async fn tarball_body(path: &Path) -> Result<reqwest::Body> {
    let cannot = |e| CliError::io(format!("cannot read {}", path.display()), e);
    let meta = tokio::fs::metadata(path).await.map_err(cannot)?;
    if !meta.is_file() {
        return Err(CliError::usage(format!("{} is not a file; --file takes a .tar.gz", path.display())));
    }
    Ok(tokio::fs::File::open(path).await.map_err(cannot)?.into())
}

fn imported_what(parent: Option<&str>) -> String {
    match parent {
        Some(p) => format!("imported on {p}"),
        None => "imported".to_owned(),
    }
}

async fn import(ctx: &Ctx, a: ImportArgs) -> Result<i32> {
    check_name(&a.name)?;
    let body = tarball_body(&a.file).await?;
    let v = ctx.client()?.import_base(&a.name, a.parent.as_deref(), body).await?;
    print_version(&v, a.json.json, &imported_what(v.parent.as_deref()))?;
    Ok(0)
}

/// What `base build` prints for a script build: the script's output, then the version, or
/// `unchanged` when the server had nothing to do.
pub fn render_build(r: &BuildResult) -> String {
    let tag = r.version.tag.as_deref().unwrap_or("-");
    if r.unchanged {
        return format!(
            "{}: unchanged (the newest version was built from this script, tag {tag})\n",
            r.version.version
        );
    }
    let mut out = r.log.clone();
    if !out.is_empty() && !out.ends_with('\n') {
        out.push('\n');
    }
    out.push_str(&format!("{}: built (tag {tag})\n", r.version.version));
    out
}

async fn build(ctx: &Ctx, a: BuildArgs) -> Result<i32> {
    check_name(&a.name)?;
    let Some(script_path) = &a.script else {
        return build_dockerfile(ctx, &a).await;
    };
    let script = std::fs::read_to_string(script_path)
        .map_err(|e| CliError::io(format!("cannot read the build script {}", script_path.display()), e))?;
    let req = BuildBase { script, parent: a.parent.clone(), tags: Vec::new() };
    let r = ctx.client()?.build_base(&a.name, &req).await?;
    if a.json.json {
        output::print_json(&r)?;
    } else {
        print!("{}", render_build(&r));
    }
    Ok(0)
}

/// `base build <name>` from ./Dockerfile: the local engine builds and exports the image, then the
/// tarball is uploaded like `base import`.
async fn build_dockerfile(ctx: &Ctx, a: &BuildArgs) -> Result<i32> {
    dockerfile::require_dockerfile(&ctx.cwd)?;
    let engine = dockerfile::detect(ctx.env.get("PATH"), &ctx.cwd)?;
    let tmp = tempfile::Builder::new()
        .prefix("4kr-base-")
        .suffix(".tar.gz")
        .tempfile()
        .map_err(|e| CliError::io("cannot create a temporary file for the exported image", e))?;
    let (dir, name, out) = (ctx.cwd.clone(), a.name.clone(), tmp.path().to_path_buf());
    let engine2 = engine.clone();
    tokio::task::spawn_blocking(move || {
        dockerfile::Builder { engine: &engine2, dir: &dir }.build_rootfs(&name, std::env::consts::ARCH, &out)
    })
    .await
    .map_err(|e| CliError::from(forkr_engine::Error::internal(format!("the image build stopped: {e}"))))??;
    eprintln!("uploading the root filesystem");
    let v = ctx.client()?.import_base(&a.name, None, tarball_body(tmp.path()).await?).await?;
    if a.json.json {
        output::print_json(&BuildResult { version: v, unchanged: false, log: String::new() })?;
    } else {
        println!("{}: built from ./Dockerfile with {}", v.version, engine.kind.program());
    }
    Ok(0)
}

async fn delete(ctx: &Ctx, a: DeleteArgs) -> Result<i32> {
    check_name(&a.target)?;
    if a.force && a.cascade {
        return Err(CliError::usage("--force and --cascade cannot be used together"));
    }
    let d = ctx.client()?.delete_base(&a.target, a.force, a.cascade).await?;
    if a.json.json {
        output::print_json(&d)?;
    } else {
        for v in &d.deleted {
            println!("{v}: deleted");
        }
    }
    Ok(0)
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser as _;

    fn parse(args: &[&str]) -> BaseCommand {
        let cli = crate::cli::Cli::try_parse_from(["4kr", "base"].iter().chain(args)).unwrap();
        match cli.command {
            crate::cli::Command::Base(BaseArgs { command }) => command,
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn on_import_p_means_parent() {
        let BaseCommand::Import(a) = parse(&["import", "my-base", "--file", "r.tar.gz", "-p", "box-base"])
        else {
            panic!("import")
        };
        assert_eq!((a.parent.as_deref(), a.file.as_path()), (Some("box-base"), Path::new("r.tar.gz")));
        let err =
            crate::cli::Cli::try_parse_from(["4kr", "base", "import", "x", "--file", "f", "--project", "p"])
                .unwrap_err();
        assert_eq!(err.kind(), clap::error::ErrorKind::UnknownArgument);
        let err = crate::cli::Cli::try_parse_from(["4kr", "base", "import", "x"]).unwrap_err();
        assert_eq!(err.kind(), clap::error::ErrorKind::MissingRequiredArgument);
    }

    #[test]
    fn save_takes_the_base_first_and_the_box_second() {
        let BaseCommand::Save(a) = parse(&["save", "my-base", "web-1", "-p", "proj"]) else { panic!("save") };
        assert_eq!((a.base.as_str(), a.r#box.as_str()), ("my-base", "web-1"));
        assert_eq!(a.project.project.as_deref(), Some("proj"));
    }

    #[test]
    fn build_parent_needs_a_script() {
        let BaseCommand::Build(a) = parse(&["build", "b", "--script", "s.sh", "-p", "box-base"]) else {
            panic!("build")
        };
        assert_eq!(a.parent.as_deref(), Some("box-base"));
        let err =
            crate::cli::Cli::try_parse_from(["4kr", "base", "build", "b", "--parent", "x"]).unwrap_err();
        assert_eq!(err.kind(), clap::error::ErrorKind::MissingRequiredArgument);
    }

    fn built(unchanged: bool, log: &str) -> BuildResult {
        BuildResult {
            version: BaseVersion {
                version: "tools-v20260101120000".into(),
                name: "tools".into(),
                kind: "script".into(),
                tag: Some("ab12".into()),
                builder: "script".into(),
                parent: Some("box-base".into()),
                size: None,
                arch: "x86_64".into(),
                created_at: "2026-01-01T12:00:00Z".into(),
                tags: vec![],
                script: Some("echo hi\n".into()),
            },
            unchanged,
            log: log.into(),
        }
    }

    #[test]
    fn build_prints_the_log_and_the_version_or_unchanged() {
        assert_eq!(
            render_build(&built(false, "installing\ndone")),
            "installing\ndone\ntools-v20260101120000: built (tag ab12)\n"
        );
        assert_eq!(render_build(&built(false, "")), "tools-v20260101120000: built (tag ab12)\n");
        assert_eq!(
            render_build(&built(true, "")),
            "tools-v20260101120000: unchanged (the newest version was built from this script, tag ab12)\n"
        );
    }

    #[tokio::test]
    async fn tarball_must_be_a_readable_file() {
        let dir = tempfile::tempdir().unwrap();
        let e = tarball_body(dir.path()).await.unwrap_err();
        assert!(e.message().ends_with("is not a file; --file takes a .tar.gz"), "{}", e.message());
        let e = tarball_body(&dir.path().join("missing.tar.gz")).await.unwrap_err();
        assert!(e.message().starts_with("cannot read "), "{}", e.message());
        std::fs::write(dir.path().join("ok.tar.gz"), b"x").unwrap();
        assert!(tarball_body(&dir.path().join("ok.tar.gz")).await.is_ok());
    }
}
