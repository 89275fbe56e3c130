//! The declarative commands: `validate`, `plan`, `apply` (with `--watch`), `destroy`, `schema`.
//!
//! A workspace is the folder holding `.forkr/*.yaml` (see `forkr_engine::spec`). The commands find
//! it at or above the current directory (or take `--dir`), work out the project (`-p`, then the
//! files' `project`, then the usual order: FORKR_PROJECT, the config, the git root's name,
//! `default`), read the project's state from the server in one call, load the files against it
//! (every problem at once, as diagnostics pointing at file:line:col) and plan with
//! `forkr_engine::plan`, the same pure function whatever runs it.
//!
//! `apply` takes the project's lock on the server first (refreshed in the background; it expires by
//! itself when a client is killed), plans against the state it reads under the lock, asks for
//! confirmation (or refuses without `--auto-approve` when stdin is not a terminal), and runs the
//! plan ([`exec`]). `apply FILE` runs a saved plan exactly, and the server refuses (409
//! `stale_plan`) when its state changed since the plan was made, atomically with taking the lock.

mod api;
mod exec;
mod lock;
mod progress;
mod sync;
mod watch;

use std::io::{IsTerminal as _, Write as _};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use clap::{Args, ValueEnum};
use forkr_engine::name::{self, NameKind};
use forkr_engine::plan::{self, Observed, Plan, PlanOptions, RenderOptions};
use forkr_engine::spec::{self, LoadOptions, SchemaKind, SpecErrors, WORKSPACE_DIR, Workspace, WorkspaceId};
use forkr_engine::{Error, ErrorKind};
use serde_json::json;

use self::exec::Runner;
use self::lock::{LockOptions, Stop};
use self::progress::Progress;
use crate::cli::{JsonOpt, ProjectOpt};
use crate::client::Client;
use crate::ctx::Ctx;
use crate::error::{CliError, Result};

/// Where the workspace is and which project it goes to.
#[derive(Debug, Clone, Default, Args)]
pub struct WorkspaceOpt {
    /// The workspace: the folder holding .forkr/ [default: the nearest one at or above the current
    /// directory].
    #[arg(short = 'C', long = "dir", value_name = "DIR")]
    pub dir: Option<PathBuf>,
    /// Project (beats the files' `project`; default: the files' `project`, then FORKR_PROJECT, the
    /// config, the git root's name, `default`).
    #[arg(short = 'p', long = "project", value_name = "PROJECT")]
    pub project: Option<String>,
}

/// What a plan covers.
#[derive(Debug, Clone, Default, Args)]
pub struct PlanFlags {
    /// Also delete objects this workspace created that are no longer in the files.
    #[arg(long)]
    pub prune: bool,
    /// Limit the run to this box (or base.NAME, volume.NAME) and what it depends on (repeatable).
    #[arg(long = "target", value_name = "BOX")]
    pub targets: Vec<String>,
    /// Recreate this box from its base or source even if nothing changed (repeatable).
    #[arg(long = "replace", value_name = "BOX")]
    pub replace: Vec<String>,
}

impl PlanFlags {
    fn options(&self) -> PlanOptions {
        PlanOptions { prune: self.prune, targets: self.targets.clone(), replace: self.replace.clone() }
    }

    fn given(&self) -> bool {
        self.prune || !self.targets.is_empty() || !self.replace.is_empty()
    }
}

/// The lock an apply or destroy takes.
#[derive(Debug, Clone, Args)]
pub struct LockFlags {
    /// Wait up to this many seconds for another apply's lock instead of failing at once.
    #[arg(long, value_name = "SECONDS", default_value_t = 0)]
    pub lock_timeout: u64,
    /// How long the project lock outlives this 4kr if it is killed (refreshed while it runs).
    #[arg(long, value_name = "SECONDS", default_value_t = 30,
        value_parser = clap::value_parser!(u64).range(1..=3600))]
    pub lock_ttl: u64,
    /// How many independent actions run at once.
    #[arg(long, value_name = "N", default_value_t = 10, value_parser = clap::value_parser!(u64).range(1..=256))]
    pub parallelism: u64,
}

impl LockFlags {
    fn lock(&self) -> LockOptions {
        LockOptions { ttl: self.lock_ttl, wait: Duration::from_secs(self.lock_timeout) }
    }
}

#[derive(Debug, Args)]
pub struct ValidateArgs {
    #[command(flatten)]
    pub ws: WorkspaceOpt,
    /// Also check that referenced bases, volumes and boxes exist on the server (by default the
    /// check is offline, and references to anything not in the files are accepted).
    #[arg(long)]
    pub server: bool,
    #[command(flatten)]
    pub json: JsonOpt,
}

#[derive(Debug, Args)]
pub struct PlanArgs {
    #[command(flatten)]
    pub ws: WorkspaceOpt,
    #[command(flatten)]
    pub flags: PlanFlags,
    /// Print the plan as JSON.
    #[arg(short = 'j', long)]
    pub json: bool,
    /// Exit 0 when there are no changes, 2 when there are, 1 on errors.
    #[arg(long)]
    pub detailed_exitcode: bool,
    /// Save the plan to FILE; `4kr apply FILE` applies exactly it, or refuses if the server changed.
    #[arg(long, value_name = "FILE")]
    pub out: Option<PathBuf>,
}

#[derive(Debug, Args)]
pub struct ApplyArgs {
    /// A plan saved with `4kr plan --out FILE`: apply exactly it (no new plan, no confirmation).
    #[arg(value_name = "FILE")]
    pub file: Option<PathBuf>,
    #[command(flatten)]
    pub ws: WorkspaceOpt,
    #[command(flatten)]
    pub flags: PlanFlags,
    /// Apply without asking (required when stdin is not a terminal).
    #[arg(long)]
    pub auto_approve: bool,
    /// Keep running: apply again when .forkr/*.yaml change (without asking again), and mirror
    /// `sync` folders into their boxes as files change.
    #[arg(long, conflicts_with = "file")]
    pub watch: bool,
    #[command(flatten)]
    pub lock: LockFlags,
}

#[derive(Debug, Args)]
pub struct DestroyArgs {
    #[command(flatten)]
    pub ws: WorkspaceOpt,
    /// Only destroy this box (or base.NAME, volume.NAME) (repeatable).
    #[arg(long = "target", value_name = "BOX")]
    pub targets: Vec<String>,
    /// Destroy without asking (required when stdin is not a terminal).
    #[arg(long)]
    pub auto_approve: bool,
    #[command(flatten)]
    pub lock: LockFlags,
}

/// Which schema `4kr schema` prints.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, ValueEnum)]
pub enum SchemaWhich {
    /// `.forkr/*.yaml` (every file but config.yaml).
    #[default]
    #[value(alias = "workspace")]
    Forkr,
    /// `.forkr/config.yaml`, the CLI setup.
    Config,
}

#[derive(Debug, Args)]
pub struct SchemaArgs {
    /// Which file's schema.
    #[arg(value_enum, default_value_t = SchemaWhich::Forkr)]
    pub which: SchemaWhich,
}

// ---------------------------------------------------------------------------------------------
// Locating and loading

/// A located workspace.
#[derive(Debug, Clone)]
struct Located {
    root: PathBuf,
    /// The project the files (or the flag) say; the loader confirms it.
    project: String,
    /// `-p`, which beats the files.
    flag: Option<String>,
}

fn no_workspace(start: &Path) -> CliError {
    CliError::from(Error::bad_request(
        "no_workspace",
        format!("no workspace here: no .forkr/*.yaml in {} or any folder above it", start.display()),
    ))
    .with_help(
        "create .forkr/forkr.yaml with a `boxes:` section (`4kr schema` prints the format, `4kr docs` shows an example), or point at a workspace with --dir",
    )
}

fn locate(ctx: &Ctx, opt: &WorkspaceOpt) -> Result<Located> {
    let root = match &opt.dir {
        Some(d) => {
            let dir = ctx.cwd.join(d);
            if !dir.join(WORKSPACE_DIR).is_dir() {
                return Err(CliError::usage(format!("{} has no {WORKSPACE_DIR}/ folder", dir.display()))
                    .with_help("--dir takes the folder that holds .forkr/"));
            }
            dir
        }
        None => spec::find_workspace_root(&ctx.cwd).ok_or_else(|| no_workspace(&ctx.cwd))?,
    };
    let flag = opt.project.clone().filter(|p| !p.is_empty());
    if let Some(p) = &flag {
        name::validate(NameKind::Project, p)?;
    }
    let project = match &flag {
        Some(p) => p.clone(),
        None => {
            match spec::declared_project(&root).filter(|p| name::validate(NameKind::Project, p).is_ok()) {
                Some(p) => p,
                None => {
                    let fallback = ctx.project(&ProjectOpt::default())?;
                    // No `project:` line: the files most likely set none; an offline load says for sure.
                    let opts = LoadOptions { default_project: fallback.clone(), ..LoadOptions::default() };
                    spec::load_dir(&root, &opts).map(|ws| ws.project).unwrap_or(fallback)
                }
            }
        }
    };
    Ok(Located { root, project, flag })
}

impl Located {
    fn options(&self, known: Option<spec::Known>) -> LoadOptions {
        LoadOptions {
            default_project: self.project.clone(),
            project: self.flag.clone(),
            known,
            workspace_id: None,
        }
    }

    /// The workspace's identity, without loading the files (for destroy).
    fn id(&self) -> WorkspaceId {
        WorkspaceId::derive(&self.project, &self.root)
    }
}

/// Whether to colour what goes to stdout (a terminal, and NO_COLOR unset).
fn color_stdout(ctx: &Ctx) -> bool {
    std::io::stdout().is_terminal() && ctx.env.get("NO_COLOR").is_none()
}

fn color_stderr(ctx: &Ctx) -> bool {
    std::io::stderr().is_terminal() && ctx.env.get("NO_COLOR").is_none()
}

/// Prints every problem as a diagnostic on stderr.
fn print_problems(ctx: &Ctx, e: &SpecErrors) {
    eprint!("{}", e.render(color_stderr(ctx)));
}

/// Loads the workspace against the server's state of its project. `Ok(Err(_))` carries the
/// problems in the files.
async fn load_against(
    c: &Client,
    at: &Located,
    observed: Observed,
) -> Result<std::result::Result<(Workspace, Observed), SpecErrors>> {
    let ws = match spec::load_dir(&at.root, &at.options(Some(observed.known()))) {
        Ok(ws) => ws,
        Err(e) => return Ok(Err(e)),
    };
    if ws.project != observed.project {
        // The quick scan for `project:` guessed wrong (a flow-style mapping); load against the
        // right project's state.
        let observed = api::state(c, &ws.project).await?;
        let again = Located { project: ws.project.clone(), ..at.clone() };
        return Ok(spec::load_dir(&at.root, &again.options(Some(observed.known()))).map(|ws| (ws, observed)));
    }
    Ok(Ok((ws, observed)))
}

// ---------------------------------------------------------------------------------------------
// validate, plan, schema

pub async fn validate(ctx: &Ctx, a: ValidateArgs) -> Result<i32> {
    let at = locate(ctx, &a.ws)?;
    let loaded = if a.server {
        let c = ctx.client()?;
        let observed = api::state(c, &at.project).await?;
        load_against(c, &at, observed).await?.map(|(ws, _)| ws)
    } else {
        spec::load_dir(&at.root, &at.options(None))
    };
    let files: Vec<String> = spec::workspace_files(&at.root)
        .unwrap_or_default()
        .iter()
        .filter_map(|p| p.file_name().map(|n| format!("{WORKSPACE_DIR}/{}", n.to_string_lossy())))
        .collect();
    match loaded {
        Ok(ws) => {
            if a.json.json {
                crate::output::print_json(&json!({
                    "valid": true,
                    "project": ws.project,
                    "workspace": ws.id,
                    "files": files,
                    "bases": ws.bases.len(),
                    "volumes": ws.volumes.len(),
                    "boxes": ws.boxes.len(),
                    "checked_against_server": a.server,
                }))?;
            } else {
                let count = |n: usize, what: &str| format!("{n} {what}{}", if n == 1 { "" } else { "s" });
                let mut parts = vec![count(ws.boxes.len(), "box").replace("boxs", "boxes")];
                if !ws.bases.is_empty() {
                    parts.push(count(ws.bases.len(), "base"));
                }
                if !ws.volumes.is_empty() {
                    parts.push(count(ws.volumes.len(), "volume"));
                }
                println!(
                    "Success: the workspace is valid (project {}: {}; {}).",
                    ws.project,
                    parts.join(", "),
                    files.join(", ")
                );
                if !a.server {
                    println!(
                        "References to objects not in the files were not checked; `4kr validate --server` checks them."
                    );
                }
            }
            Ok(0)
        }
        Err(e) => {
            if a.json.json {
                crate::output::print_json(&json!({ "valid": false, "problems": e.to_json() }))?;
            } else {
                print_problems(ctx, &e);
            }
            Ok(1)
        }
    }
}

/// Writes `text` to `path` through a temporary file beside it, so a reader never sees half a plan.
fn write_atomically(path: &Path, text: &str) -> Result<()> {
    let dir = path.parent().filter(|d| !d.as_os_str().is_empty()).unwrap_or(Path::new("."));
    let cannot = |e| CliError::io(format!("cannot write the plan to {}", path.display()), e);
    let mut tmp = tempfile::NamedTempFile::new_in(dir).map_err(cannot)?;
    tmp.write_all(text.as_bytes()).map_err(cannot)?;
    tmp.persist(path).map_err(|e| cannot(e.error))?;
    Ok(())
}

pub async fn plan(ctx: &Ctx, a: PlanArgs) -> Result<i32> {
    let at = locate(ctx, &a.ws)?;
    let c = ctx.client()?;
    let observed = api::state(c, &at.project).await?;
    let (ws, observed) = match load_against(c, &at, observed).await? {
        Ok(x) => x,
        Err(e) => {
            print_problems(ctx, &e);
            return Ok(1);
        }
    };
    let plan = plan::plan(&ws, &observed, &a.flags.options());
    if let Some(out) = &a.out {
        write_atomically(&ctx.cwd.join(out), &plan.to_json())?;
    }
    if a.json {
        print!("{}", plan.to_json());
    } else {
        print!("{}", plan.render(&RenderOptions { color: color_stdout(ctx) }));
        if let Some(out) = &a.out
            && !plan.is_empty()
        {
            println!(
                "\nSaved the plan to {}. To apply exactly these actions, run:\n    4kr apply {}",
                out.display(),
                out.display()
            );
        }
    }
    if !plan.conflicts.is_empty() {
        return Ok(1);
    }
    Ok(if a.detailed_exitcode && !plan.is_empty() { 2 } else { 0 })
}

pub fn schema(a: SchemaArgs) -> Result<i32> {
    let kind = match a.which {
        SchemaWhich::Forkr => SchemaKind::Workspace,
        SchemaWhich::Config => SchemaKind::Config,
    };
    let mut out = std::io::stdout().lock();
    spec::write_schema(kind, &mut out).map_err(|e| CliError::io("cannot write the schema", e))?;
    Ok(0)
}

// ---------------------------------------------------------------------------------------------
// apply, destroy

/// Asks on the terminal; `Ok(false)` when the answer is not `yes` or the run was interrupted.
async fn confirm(question: &str, stop: &Stop) -> Result<bool> {
    print!("\n{question}\n  Only 'yes' will be accepted to approve.\n\n  Enter a value: ");
    let _ = std::io::stdout().flush();
    let read = tokio::task::spawn_blocking(|| {
        let mut line = String::new();
        std::io::stdin().read_line(&mut line).map(|_| line)
    });
    tokio::pin!(read);
    loop {
        tokio::select! {
            r = &mut read => {
                let line = r
                    .map_err(|e| CliError::from(Error::internal(format!("reading the answer failed: {e}"))))?
                    .map_err(|e| CliError::io("cannot read the answer from the terminal", e))?;
                println!();
                return Ok(line.trim() == "yes");
            }
            _ = tokio::time::sleep(Duration::from_millis(100)) => {
                if stop.is_set() {
                    println!();
                    return Ok(false);
                }
            }
        }
    }
}

fn refuse_unconfirmed(what: &str) -> CliError {
    CliError::from(Error::bad_request(
        "confirmation_required",
        format!("refusing to {what} without confirmation: stdin is not a terminal and --auto-approve was not given"),
    ))
    .with_help(format!(
        "review the plan above, then run `4kr {what} --auto-approve`; or save a plan with `4kr plan --out FILE` and run `4kr apply FILE`"
    ))
}

/// What one apply run is.
#[derive(Clone)]
struct Run<'a> {
    ctx: &'a Ctx,
    client: &'a Client,
    at: &'a Located,
    plan_opts: PlanOptions,
    lock: &'a LockFlags,
    auto_approve: bool,
    /// Plan the removal of everything the workspace owns instead of loading the files.
    destroy: bool,
}

/// What a run ended with.
enum Ran {
    /// The files have problems (already printed).
    Invalid,
    /// Nothing to do.
    NoChanges(Box<Workspace>),
    /// The user said no.
    Declined,
    /// The plan ran; `new_roots` are boxes whose root filesystem was made anew.
    Applied { ws: Box<Workspace>, new_roots: Vec<String> },
}

impl Run<'_> {
    fn command(&self) -> &'static str {
        if self.destroy { "destroy" } else { "apply" }
    }

    fn runner<'r>(&'r self, progress: &'r Progress, stop: &'r Stop) -> Runner<'r> {
        Runner {
            client: self.client,
            project: &self.at.project,
            parallelism: self.lock.parallelism as usize,
            progress,
            stop,
            path_var: self.ctx.env.get("PATH").map(str::to_owned),
            cwd: self.at.root.clone(),
        }
    }

    /// Lock, read the state, load, plan, confirm, execute, unlock.
    async fn once(&self, stop: &Stop) -> Result<Ran> {
        let lock =
            lock::acquire(self.client, &self.at.project, self.command(), self.lock.lock(), None).await?;
        let result = lock.hold(self.client, stop, self.planned(stop)).await;
        lock.release(self.client).await;
        result
    }

    async fn planned(&self, stop: &Stop) -> Result<Ran> {
        let observed = api::state(self.client, &self.at.project).await?;
        let (ws, observed) = if self.destroy {
            let ws = Workspace::empty(&self.at.project, self.at.id(), self.at.root.clone());
            (ws, observed)
        } else {
            match load_against(self.client, self.at, observed).await? {
                Ok(x) => x,
                Err(e) => {
                    print_problems(self.ctx, &e);
                    return Ok(Ran::Invalid);
                }
            }
        };
        if ws.project != self.at.project {
            return Err(CliError::from(Error::conflict(
                "project_changed",
                format!("the files now say project {:?}; this run locked {:?}", ws.project, self.at.project),
            ))
            .with_help("run the command again"));
        }
        let plan = plan::plan(&ws, &observed, &self.plan_opts);
        print!("{}", plan.render(&RenderOptions { color: color_stdout(self.ctx) }));
        if !plan.conflicts.is_empty() {
            return Err(conflicts(&plan));
        }
        if plan.is_empty() {
            return Ok(Ran::NoChanges(Box::new(ws)));
        }
        if !self.auto_approve {
            if !std::io::stdin().is_terminal() {
                return Err(refuse_unconfirmed(self.command()));
            }
            let question = if self.destroy {
                format!(
                    "Do you really want to destroy what this workspace created in project {:?}?",
                    ws.project
                )
            } else {
                format!("Do you want to perform these actions in project {:?}?", ws.project)
            };
            if !confirm(&question, stop).await? {
                println!("{} cancelled.", if self.destroy { "Destroy" } else { "Apply" });
                return Ok(Ran::Declined);
            }
        }
        let started = Instant::now();
        let progress = Progress::new(std::io::stdout().is_terminal());
        let outcome = self.runner(&progress, stop).run(&plan).await;
        let new_roots = outcome
            .done
            .iter()
            .filter(|(a, _)| {
                matches!(
                    &a.request,
                    plan::Request::CreateBox { .. } | plan::Request::ReplaceBox { keep_root: false, .. }
                )
            })
            .map(|(a, _)| a.name.clone())
            .collect();
        let complete = outcome.is_complete();
        if complete {
            let title = if self.destroy { "Destroy" } else { "Apply" };
            println!("\n{title} complete! {} ({}).", outcome.counts(), exec::took(started.elapsed()));
        } else {
            eprintln!(
                "\n{} stopped before the end:\n{}",
                if self.destroy { "Destroy" } else { "Apply" },
                outcome.report()
            );
            eprintln!(
                "Nothing else was changed. Run `4kr {}` again to continue: it plans from what the server has now.",
                self.command()
            );
        }
        let failed = outcome.failed.len();
        let stopped = outcome.stopped.clone();
        drop(outcome);
        if !complete {
            let message = match (failed, stopped) {
                (0, Some(why)) => format!("{} stopped: {why}", self.command()),
                (n, _) => {
                    format!("{} stopped: {n} action{} failed", self.command(), if n == 1 { "" } else { "s" })
                }
            };
            return Err(CliError::from(Error::new(ErrorKind::Internal, "apply_failed", message)));
        }
        Ok(Ran::Applied { ws: Box::new(ws), new_roots })
    }
}

fn conflicts(plan: &Plan) -> CliError {
    CliError::from(Error::conflict(
        "workspace_conflict",
        format!("the plan has {} conflict(s) (listed above); nothing was changed", plan.conflicts.len()),
    ))
}

pub async fn apply(ctx: &Ctx, a: ApplyArgs) -> Result<i32> {
    if let Some(file) = &a.file {
        return apply_saved(ctx, &a, file).await;
    }
    let at = locate(ctx, &a.ws)?;
    let c = ctx.client()?;
    let run = Run {
        ctx,
        client: c,
        at: &at,
        plan_opts: a.flags.options(),
        lock: &a.lock,
        auto_approve: a.auto_approve,
        destroy: false,
    };
    if a.watch {
        return watch::watch(&run).await;
    }
    let stop = Stop::default();
    Ok(match run.once(&stop).await? {
        Ran::Invalid | Ran::Declined => 1,
        Ran::NoChanges(_) | Ran::Applied { .. } => 0,
    })
}

async fn apply_saved(ctx: &Ctx, a: &ApplyArgs, file: &Path) -> Result<i32> {
    if a.flags.given() {
        return Err(CliError::usage("--prune, --target and --replace cannot be used with a saved plan")
            .with_help("the saved plan already fixed them; make a new one with `4kr plan --out FILE`"));
    }
    let path = ctx.cwd.join(file);
    let text = std::fs::read_to_string(&path)
        .map_err(|e| CliError::io(format!("cannot read the plan file {}", path.display()), e))?;
    let plan = Plan::from_json(&text)?;
    if let Some(p) = &a.ws.project
        && *p != plan.project
    {
        return Err(CliError::usage(format!("the plan is for project {:?}, not {p:?}", plan.project)));
    }
    if !plan.conflicts.is_empty() {
        eprint!("{}", plan.render(&RenderOptions::default()));
        return Err(conflicts(&plan));
    }
    if plan.is_empty() {
        println!("No changes. The saved plan has nothing to do.");
        return Ok(0);
    }
    let c = ctx.client()?;
    let saved = Some((plan.fingerprint.as_str(), &plan.scope));
    let lock = lock::acquire(c, &plan.project, "apply", a.lock.lock(), saved).await?;
    let stop = Stop::default();
    let progress = Progress::new(std::io::stdout().is_terminal());
    let runner = Runner {
        client: c,
        project: &plan.project,
        parallelism: a.lock.parallelism as usize,
        progress: &progress,
        stop: &stop,
        path_var: ctx.env.get("PATH").map(str::to_owned),
        cwd: ctx.cwd.clone(),
    };
    let started = Instant::now();
    let outcome = lock.hold(c, &stop, runner.run(&plan)).await;
    lock.release(c).await;
    if outcome.is_complete() {
        println!("\nApply complete! {} ({}).", outcome.counts(), exec::took(started.elapsed()));
        return Ok(0);
    }
    eprintln!("\nApply stopped before the end:\n{}", outcome.report());
    eprintln!("Run `4kr plan` and `4kr apply` to continue: the saved plan is stale now.");
    Err(CliError::from(Error::new(ErrorKind::Internal, "apply_failed", "apply stopped before the end")))
}

pub async fn destroy(ctx: &Ctx, a: DestroyArgs) -> Result<i32> {
    let at = locate(ctx, &a.ws)?;
    let c = ctx.client()?;
    let run = Run {
        ctx,
        client: c,
        at: &at,
        plan_opts: PlanOptions { prune: true, targets: a.targets.clone(), replace: Vec::new() },
        lock: &a.lock,
        auto_approve: a.auto_approve,
        destroy: true,
    };
    let stop = Stop::default();
    Ok(match run.once(&stop).await? {
        Ran::Invalid | Ran::Declined => 1,
        Ran::NoChanges(_) | Ran::Applied { .. } => 0,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser as _;

    fn parse(args: &[&str]) -> crate::cli::Command {
        crate::cli::Cli::try_parse_from(std::iter::once("4kr").chain(args.iter().copied())).unwrap().command
    }

    #[test]
    fn plan_flags_parse() {
        let crate::cli::Command::Plan(p) = parse(&[
            "plan",
            "--prune",
            "--target",
            "web",
            "--target",
            "base.ci",
            "--replace",
            "db",
            "-j",
            "--out",
            "p.json",
        ]) else {
            panic!("plan")
        };
        assert!(p.flags.prune && p.json);
        assert_eq!(p.flags.targets, vec!["web", "base.ci"]);
        assert_eq!(p.flags.options().replace, vec!["db"]);
        assert_eq!(p.out.as_deref(), Some(Path::new("p.json")));
    }

    #[test]
    fn apply_takes_a_saved_plan_but_not_with_watch() {
        let crate::cli::Command::Apply(a) = parse(&["apply", "plan.json", "--parallelism", "3"]) else {
            panic!("apply")
        };
        assert_eq!(a.file.as_deref(), Some(Path::new("plan.json")));
        assert_eq!((a.lock.parallelism, a.lock.lock_ttl, a.lock.lock_timeout), (3, 30, 0));
        let err = crate::cli::Cli::try_parse_from(["4kr", "apply", "plan.json", "--watch"]).unwrap_err();
        assert_eq!(err.kind(), clap::error::ErrorKind::ArgumentConflict);
        let err = crate::cli::Cli::try_parse_from(["4kr", "apply", "--parallelism", "0"]).unwrap_err();
        assert_eq!(err.kind(), clap::error::ErrorKind::ValueValidation);
    }

    #[test]
    fn schema_names() {
        let crate::cli::Command::Schema(s) = parse(&["schema"]) else { panic!("schema") };
        assert_eq!(s.which, SchemaWhich::Forkr);
        let crate::cli::Command::Schema(s) = parse(&["schema", "workspace"]) else { panic!("schema") };
        assert_eq!(s.which, SchemaWhich::Forkr);
        let crate::cli::Command::Schema(s) = parse(&["schema", "config"]) else { panic!("schema") };
        assert_eq!(s.which, SchemaWhich::Config);
    }

    fn ctx_in(dir: &Path, env: &[(&str, &str)]) -> Ctx {
        Ctx::new(
            crate::cli::GlobalArgs::default(),
            crate::env::Env::from_pairs(env.iter().copied()),
            dir.to_path_buf(),
        )
    }

    #[test]
    fn locating_the_workspace_and_its_project() {
        let dir = tempfile::tempdir().unwrap();
        let repo = dir.path().join("repo");
        std::fs::create_dir_all(repo.join(".git")).unwrap();
        std::fs::create_dir_all(repo.join(".forkr")).unwrap();
        std::fs::create_dir_all(repo.join("src/deep")).unwrap();
        std::fs::write(repo.join(".forkr/boxes.yaml"), "boxes:\n  web: {}\n").unwrap();

        // No `project:` in the files: the git root's name.
        let at = locate(&ctx_in(&repo.join("src/deep"), &[]), &WorkspaceOpt::default()).unwrap();
        assert_eq!((at.root.as_path(), at.project.as_str()), (repo.as_path(), "repo"));
        // FORKR_PROJECT comes next…
        let at = locate(&ctx_in(&repo, &[("FORKR_PROJECT", "envp")]), &WorkspaceOpt::default()).unwrap();
        assert_eq!(at.project, "envp");
        // …the files beat it…
        std::fs::write(repo.join(".forkr/project.yaml"), "project: files-p\n").unwrap();
        let at = locate(&ctx_in(&repo, &[("FORKR_PROJECT", "envp")]), &WorkspaceOpt::default()).unwrap();
        assert_eq!(at.project, "files-p");
        // …and -p beats the files.
        let opt = WorkspaceOpt { dir: None, project: Some("flag-p".into()) };
        let at = locate(&ctx_in(&repo, &[]), &opt).unwrap();
        assert_eq!((at.project.as_str(), at.flag.as_deref()), ("flag-p", Some("flag-p")));
        assert!(at.id().as_str().starts_with("flag-p."));

        // --dir, relative to the current directory.
        let opt = WorkspaceOpt { dir: Some("repo".into()), project: None };
        assert_eq!(locate(&ctx_in(dir.path(), &[]), &opt).unwrap().root, repo);
        let opt = WorkspaceOpt { dir: Some("nowhere".into()), project: None };
        let e = locate(&ctx_in(dir.path(), &[]), &opt).unwrap_err();
        assert!(e.message().ends_with("has no .forkr/ folder"), "{}", e.message());

        let e = locate(&ctx_in(dir.path(), &[]), &WorkspaceOpt::default()).unwrap_err();
        assert_eq!(e.code(), "no_workspace");
        let opt = WorkspaceOpt { dir: None, project: Some("Bad_P".into()) };
        assert!(locate(&ctx_in(&repo, &[]), &opt).is_err());
    }

    #[test]
    fn plans_are_written_whole() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("plan.json");
        write_atomically(&path, "{\"a\": 1}\n").unwrap();
        write_atomically(&path, "{\"b\": 2}\n").unwrap();
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "{\"b\": 2}\n");
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 1, "no temporary file left");
        assert!(write_atomically(&dir.path().join("missing/plan.json"), "x").is_err());
    }

    #[test]
    fn refusal_says_how_to_approve() {
        let e = refuse_unconfirmed("apply");
        assert_eq!(e.code(), "confirmation_required");
        assert!(e.help.as_deref().unwrap_or_default().contains("4kr apply --auto-approve"));
    }
}
