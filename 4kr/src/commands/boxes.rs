//! The box lifecycle: create, list, show, update, delete, stop, resume.

use std::collections::BTreeMap;

use clap::Args;
use forkr_engine::api::{CreateBox, DataMount, UpdateBox};
use forkr_engine::name::{BoxRef, NameKind};
use serde::Serialize;

use crate::cli::{JsonOpt, ProjectOpt};
use crate::ctx::{BoxSel, Ctx};
use crate::error::{CliError, Result};
use crate::output;

#[derive(Debug, Args)]
pub struct CreateArgs {
    /// Name of the new box (`project:name` picks the project too).
    #[arg(value_name = "NAME")]
    pub name: String,
    /// Base to start from: an alias (latest version), an exact version, or alias:tag [default: box-base].
    #[arg(short = 'b', long, value_name = "BASE")]
    pub base: Option<String>,
    /// Clone an existing box's filesystem instead of a base.
    #[arg(short = 'f', long, value_name = "BOX")]
    pub fork: Option<String>,
    /// Mount a data volume (repeatable).
    #[arg(short = 'd', long = "data", value_name = "NAME=/PATH[:ro|:rw]")]
    pub data: Vec<String>,
    /// Environment variable for the box (repeatable).
    #[arg(short = 'e', long = "env", value_name = "KEY=VALUE")]
    pub env: Vec<String>,
    /// CPU request: cores (2, 0.5) or millicores (500m).
    #[arg(long, value_name = "CPU")]
    pub cpu: Option<String>,
    /// Memory limit: 512Mi, 2Gi, 1G, or MiB as a plain number.
    #[arg(long, value_name = "MEMORY")]
    pub memory: Option<String>,
    /// Tag (repeatable).
    #[arg(long = "tag", value_name = "TAG")]
    pub tags: Vec<String>,
    /// Port the box serves on [default: 8080].
    #[arg(long, value_name = "PORT", value_parser = clap::value_parser!(u16).range(1..))]
    pub port: Option<u16>,
    #[command(flatten)]
    pub project: ProjectOpt,
    #[command(flatten)]
    pub json: JsonOpt,
}

#[derive(Debug, Args)]
pub struct ListArgs {
    #[command(flatten)]
    pub project: ProjectOpt,
    #[command(flatten)]
    pub json: JsonOpt,
}

#[derive(Debug, Args)]
pub struct ShowArgs {
    /// The box: name, project:name, project.name, or `.` inside a box.
    #[arg(value_name = "BOX")]
    pub target: String,
    #[command(flatten)]
    pub project: ProjectOpt,
    #[command(flatten)]
    pub json: JsonOpt,
}

#[derive(Debug, Args)]
pub struct UpdateArgs {
    /// The box.
    #[arg(value_name = "BOX")]
    pub target: String,
    /// Settings; the server applies PORT, CPU, MEMORY and TERMINATION_GRACE_PERIOD_SECONDS (or
    /// TERMINATION_GRACE_SECONDS) and ignores the rest.
    #[arg(value_name = "KEY=VALUE")]
    pub settings: Vec<String>,
    /// More settings, merged with the positional ones (repeatable).
    #[arg(short = 'e', long = "env", value_name = "KEY=VALUE")]
    pub env: Vec<String>,
    /// Replace the box's tags (repeatable).
    #[arg(long = "tag", value_name = "TAG")]
    pub tags: Vec<String>,
    #[command(flatten)]
    pub project: ProjectOpt,
    #[command(flatten)]
    pub json: JsonOpt,
}

#[derive(Debug, Args)]
pub struct DeleteArgs {
    /// Boxes to delete.
    #[arg(value_name = "BOX", required = true)]
    pub targets: Vec<String>,
    /// Delete even if the box is running.
    #[arg(short = 'f', long)]
    pub force: bool,
    #[command(flatten)]
    pub project: ProjectOpt,
    #[command(flatten)]
    pub json: JsonOpt,
}

#[derive(Debug, Args)]
pub struct StopArgs {
    /// The box.
    #[arg(value_name = "BOX")]
    pub target: String,
    #[command(flatten)]
    pub project: ProjectOpt,
    #[command(flatten)]
    pub json: JsonOpt,
}

/// Parses `KEY=VALUE` for `flag`; the key must be non-empty.
pub fn parse_kv(flag: &str, raw: &str) -> Result<(String, String)> {
    match raw.split_once('=') {
        Some((k, v)) if !k.is_empty() => Ok((k.to_owned(), v.to_owned())),
        _ => Err(CliError::usage(format!("invalid {flag} {raw:?}: expected KEY=VALUE"))),
    }
}

/// Parses `--data NAME=/path[:ro|:rw]`.
pub fn parse_data(raw: &str) -> Result<DataMount> {
    let bad =
        |why: &str| CliError::usage(format!("invalid --data {raw:?}: {why} (expected NAME=/path[:ro|:rw])"));
    let (name, rest) = raw.split_once('=').ok_or_else(|| bad("missing '='"))?;
    if name.contains(':') {
        return Err(bad("a box can only mount volumes of its own project; write the bare volume name"));
    }
    forkr_engine::name::validate(NameKind::Volume, name).map_err(|e| bad(e.message()))?;
    let (path, read_only) = match rest.rsplit_once(':') {
        Some((p, "ro")) => (p, true),
        Some((p, "rw")) => (p, false),
        _ => (rest, false),
    };
    if !path.starts_with('/') {
        return Err(bad("the mount path must be absolute"));
    }
    Ok(DataMount { name: name.to_owned(), path: path.to_owned(), read_only })
}

/// Builds the create request; `--base` with `--fork` is the documented error.
pub fn create_request(name: &str, a: &CreateArgs) -> Result<CreateBox> {
    if a.base.is_some() && a.fork.is_some() {
        return Err(CliError::usage("--base cannot be used with --fork"));
    }
    if let Some(src) = &a.fork
        && !matches!(BoxRef::parse(src)?, BoxRef::Named { .. })
    {
        return Err(CliError::usage(format!("--fork needs the name of an existing box, not {src:?}")));
    }
    let mut env = BTreeMap::new();
    for raw in &a.env {
        let (k, v) = parse_kv("--env", raw)?;
        env.insert(k, v);
    }
    let data = a.data.iter().map(|d| parse_data(d)).collect::<Result<Vec<_>>>()?;
    Ok(CreateBox {
        name: name.to_owned(),
        base: a.base.clone(),
        fork: a.fork.clone(),
        env,
        cpu: a.cpu.clone(),
        memory: a.memory.clone(),
        data,
        tags: a.tags.clone(),
        port: a.port,
        termination_grace_seconds: None,
    })
}

pub async fn create(ctx: &Ctx, a: CreateArgs) -> Result<i32> {
    let id = match ctx.resolve(&a.name, &a.project)? {
        BoxSel::Named(id) => id,
        BoxSel::Ephemeral { .. } => {
            return Err(CliError::usage("give the new box a name (`-` is for exec, console and cp)"));
        }
    };
    let req = create_request(&id.name, &a)?;
    let info = ctx.client()?.create(&id.project, &req).await?;
    if a.json.json {
        output::print_json(&info)?;
    } else {
        println!("{}: created", info.name);
    }
    Ok(0)
}

pub async fn list(ctx: &Ctx, a: ListArgs) -> Result<i32> {
    let project = ctx.project(&a.project)?;
    let boxes = ctx.client()?.list(&project).await?;
    if a.json.json {
        output::print_json(&boxes)?;
    } else {
        print!("{}", output::box_table(&boxes));
    }
    Ok(0)
}

pub async fn show(ctx: &Ctx, a: ShowArgs) -> Result<i32> {
    let id = ctx.resolve_named(&a.target, &a.project)?;
    let info = ctx.client()?.show(&id).await?;
    if a.json.json {
        output::print_json(&info)?;
    } else {
        print!("{}", output::box_details(&info));
    }
    Ok(0)
}

/// Merges positional settings and `--env` into one map (later wins), as document 002 describes.
pub fn update_request(a: &UpdateArgs) -> Result<UpdateBox> {
    let mut settings = BTreeMap::new();
    for raw in &a.settings {
        let (k, v) = parse_kv("setting", raw)?;
        settings.insert(k, v);
    }
    for raw in &a.env {
        let (k, v) = parse_kv("--env", raw)?;
        settings.insert(k, v);
    }
    let tags = (!a.tags.is_empty()).then(|| a.tags.clone());
    Ok(UpdateBox { settings, tags })
}

pub async fn update(ctx: &Ctx, a: UpdateArgs) -> Result<i32> {
    let id = ctx.resolve_named(&a.target, &a.project)?;
    let req = update_request(&a)?;
    let info = ctx.client()?.update(&id, &req).await?;
    if a.json.json {
        output::print_json(&info)?;
    } else {
        print!("{}", output::box_details(&info));
    }
    Ok(0)
}

/// One line of `delete`'s report.
#[derive(Debug, Serialize)]
struct DeleteResult {
    name: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    deleted: Option<bool>,
    /// The server retries part of the cleanup in the background (HTTP 202).
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    cleanup_pending: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    error: Option<forkr_engine::api::ErrorDetail>,
}

pub async fn delete(ctx: &Ctx, a: DeleteArgs) -> Result<i32> {
    // A connection problem is one error, not one per box.
    let client = ctx.client()?;
    let mut results = Vec::new();
    for raw in &a.targets {
        let outcome = async {
            let id = ctx.resolve_named(raw, &a.project)?;
            client.delete(&id, a.force).await
        }
        .await;
        let result = match outcome {
            Ok(d) => DeleteResult {
                name: raw.clone(),
                deleted: Some(d.deleted),
                cleanup_pending: d.cleanup_pending,
                error: None,
            },
            Err(e) => DeleteResult {
                name: raw.clone(),
                deleted: None,
                cleanup_pending: false,
                error: Some(forkr_engine::api::ErrorDetail {
                    code: e.code().to_owned(),
                    message: e.message().to_owned(),
                }),
            },
        };
        if !a.json.json {
            match &result.error {
                None => println!("{}: deleted", result.name),
                Some(e) => println!("{}: error: {}", result.name, e.message),
            }
        }
        results.push(result);
    }
    if a.json.json {
        output::print_json(&results)?;
    }
    let failed = results.iter().filter(|r| r.error.is_some()).count();
    output::deletes_done(failed, results.len(), "boxes")
}

pub async fn stop(ctx: &Ctx, a: StopArgs, resume: bool) -> Result<i32> {
    let id = ctx.resolve_named(&a.target, &a.project)?;
    let client = ctx.client()?;
    let info = if resume { client.resume(&id).await? } else { client.stop(&id).await? };
    if a.json.json {
        output::print_json(&info)?;
    } else {
        println!("{}: {}", info.name, info.status.as_str());
    }
    Ok(0)
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser as _;

    fn create_args(args: &[&str]) -> CreateArgs {
        let cli = crate::cli::Cli::try_parse_from(["4kr", "create"].iter().chain(args)).unwrap();
        match cli.command {
            crate::cli::Command::Create(a) => a,
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn base_with_fork_is_the_documented_error() {
        let a = create_args(&["web", "--base", "b", "--fork", "src"]);
        let e = create_request("web", &a).unwrap_err();
        assert_eq!(e.message(), "--base cannot be used with --fork");
        let a = create_args(&["web", "-b", "b", "-f", "src"]);
        assert_eq!(create_request("web", &a).unwrap_err().message(), "--base cannot be used with --fork");
    }

    #[test]
    fn create_request_carries_every_flag() {
        let a = create_args(&[
            "web",
            "-b",
            "box-base:3b1f",
            "-d",
            "pg=/var/lib/pg",
            "--data",
            "assets=/srv/a:ro",
            "-e",
            "A=1",
            "--env",
            "B=x=y",
            "--cpu",
            "500m",
            "--memory",
            "2Gi",
            "--tag",
            "t1",
            "--tag",
            "t2",
            "--port",
            "3000",
        ]);
        let r = create_request("web", &a).unwrap();
        assert_eq!(r.base.as_deref(), Some("box-base:3b1f"));
        assert_eq!(r.env.get("B").map(String::as_str), Some("x=y"));
        assert_eq!(r.data[1], DataMount { name: "assets".into(), path: "/srv/a".into(), read_only: true });
        assert_eq!(r.tags, vec!["t1", "t2"]);
        assert_eq!((r.cpu.as_deref(), r.memory.as_deref(), r.port), (Some("500m"), Some("2Gi"), Some(3000)));
        // The wire form is what the server's `deny_unknown_fields` CreateBox accepts.
        let json = serde_json::to_value(&r).unwrap();
        let back: CreateBox = serde_json::from_value(json).unwrap();
        assert_eq!(back.name, "web");
    }

    #[test]
    fn fork_must_name_a_box() {
        assert!(create_request("web", &create_args(&["web", "--fork", "-"])).is_err());
        assert!(create_request("web", &create_args(&["web", "--fork", "Bad"])).is_err());
        assert!(create_request("web", &create_args(&["web", "--fork", "p:src"])).is_ok());
    }

    #[test]
    fn data_mounts() {
        assert_eq!(
            parse_data("v=/d").unwrap(),
            DataMount { name: "v".into(), path: "/d".into(), read_only: false }
        );
        assert!(parse_data("v=/d:rw").is_ok_and(|d| !d.read_only && d.path == "/d"));
        assert!(parse_data("v=/a:b").is_ok_and(|d| d.path == "/a:b"));
        for bad in ["v", "v=rel", "=/d", "V=/d", "v=:ro"] {
            let e = parse_data(bad).unwrap_err();
            assert!(e.message().starts_with(&format!("invalid --data {bad:?}")), "{}", e.message());
        }
    }

    #[test]
    fn env_pairs() {
        assert_eq!(parse_kv("--env", "A=").unwrap(), ("A".into(), "".into()));
        assert_eq!(
            parse_kv("--env", "=x").unwrap_err().message(),
            r#"invalid --env "=x": expected KEY=VALUE"#
        );
        assert!(parse_kv("--env", "A").is_err());
    }

    #[test]
    fn update_merges_settings_and_env() {
        let cli = crate::cli::Cli::try_parse_from([
            "4kr",
            "update",
            "web",
            "PORT=3000",
            "FOO=1",
            "--env",
            "FOO=2",
            "-e",
            "CPU=2",
            "--tag",
            "a",
        ])
        .unwrap();
        let crate::cli::Command::Update(a) = cli.command else { panic!("update") };
        let r = update_request(&a).unwrap();
        let got: Vec<_> = r.settings.iter().map(|(k, v)| format!("{k}={v}")).collect();
        assert_eq!(got, ["CPU=2", "FOO=2", "PORT=3000"]);
        assert_eq!(r.tags, Some(vec!["a".to_owned()]));
        let cli = crate::cli::Cli::try_parse_from(["4kr", "update", "web", "PORT=1"]).unwrap();
        let crate::cli::Command::Update(a) = cli.command else { panic!("update") };
        assert_eq!(update_request(&a).unwrap().tags, None, "no --tag leaves tags alone");
    }
}
