//! `volume create|list|show|delete|snapshot|snapshots|restore|backup|backups|restore-backup`: the
//! data volumes of a project, which boxes mount with `create --data NAME=/path[:ro|:rw]`.
//!
//! Volumes are separate from every box root: root snapshots and bases never include them, and they
//! survive box delete (documents 000 and 004). Their own snapshots and `.tar.gz` backups are made
//! here; backups outlive the volume, and `restore-backup` brings a deleted volume back.
//!
//! A volume ref is `NAME` (project from -p and the usual order) or `PROJECT:NAME`.

use clap::{Args, Subcommand};
use forkr_engine::api::{
    CreateSnapshot, CreateVolume, CreateVolumeBackup, VolumeBackupInfo, VolumeDeleted, VolumeInfo,
    VolumeSnapshotInfo,
};
use forkr_engine::name::{self, NameKind};
use reqwest::Method;
use serde::Serialize;

use crate::cli::{JsonOpt, ProjectOpt};
use crate::client::Client;
use crate::ctx::{Ctx, Scoped};
use crate::error::{CliError, Result};
use crate::output;

#[derive(Debug, Args)]
pub struct VolumeArgs {
    #[command(subcommand)]
    pub command: VolumeCommand,
}

#[derive(Debug, Subcommand)]
pub enum VolumeCommand {
    /// Create a data volume (optionally with a size limit).
    Create(CreateArgs),
    /// List the volumes of a project: NAME SIZE MOUNTED_BY CREATED.
    #[command(visible_alias = "ls")]
    List(ListArgs),
    /// Show a volume: size limit, bytes used, the boxes that mount it.
    Show(VolumeRefArgs),
    /// Delete volumes (refused while a box mounts one, unless --force); backups are kept.
    #[command(visible_alias = "rm")]
    Delete(DeleteArgs),
    /// Take a read-only snapshot of a volume (named v0, v1, … unless you name it).
    Snapshot(SnapshotArgs),
    /// List a volume's snapshots: NAME SIZE CREATED DESCRIPTION.
    Snapshots(VolumeRefArgs),
    /// Replace a volume's files with a snapshot of it (refused while a running box mounts it).
    Restore(RestoreArgs),
    /// Write a .tar.gz backup of a volume; backups outlive the volume.
    Backup(BackupArgs),
    /// List a volume's backups (also after the volume was deleted): NAME SIZE CREATED.
    Backups(VolumeRefArgs),
    /// Replace a volume's files with a backup, or recreate a deleted volume from one.
    #[command(name = "restore-backup")]
    RestoreBackup(RestoreBackupArgs),
}

#[derive(Debug, Args)]
pub struct CreateArgs {
    /// Volume name, or PROJECT:NAME.
    #[arg(value_name = "VOLUME")]
    pub target: String,
    /// Size limit: 512Mi, 10Gi, 10G, or MiB as a plain number [default: unlimited].
    #[arg(short = 's', long, value_name = "SIZE")]
    pub size: Option<String>,
    /// Tag (repeatable).
    #[arg(long = "tag", value_name = "TAG")]
    pub tags: Vec<String>,
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
pub struct VolumeRefArgs {
    /// The volume: NAME or PROJECT:NAME.
    #[arg(value_name = "VOLUME")]
    pub target: String,
    #[command(flatten)]
    pub project: ProjectOpt,
    #[command(flatten)]
    pub json: JsonOpt,
}

#[derive(Debug, Args)]
pub struct DeleteArgs {
    /// Volumes to delete.
    #[arg(value_name = "VOLUME", required = true)]
    pub targets: Vec<String>,
    /// Delete even while boxes mount it, and remove it from their mounts (running boxes see an
    /// empty directory until they restart).
    #[arg(short = 'f', long)]
    pub force: bool,
    #[command(flatten)]
    pub project: ProjectOpt,
    #[command(flatten)]
    pub json: JsonOpt,
}

#[derive(Debug, Args)]
pub struct SnapshotArgs {
    /// The volume to snapshot.
    #[arg(value_name = "VOLUME")]
    pub target: String,
    /// Snapshot name (pattern ^[a-zA-Z0-9_.-]+$) [default: the next vN].
    #[arg(value_name = "NAME")]
    pub name: Option<String>,
    /// Snapshot name; overrides the positional NAME.
    #[arg(long = "name", value_name = "NAME")]
    pub name_flag: Option<String>,
    /// Description shown by `volume snapshots`.
    #[arg(short = 'm', long = "description", visible_alias = "message", value_name = "TEXT")]
    pub description: Option<String>,
    #[command(flatten)]
    pub project: ProjectOpt,
    #[command(flatten)]
    pub json: JsonOpt,
}

#[derive(Debug, Args)]
pub struct RestoreArgs {
    /// The volume.
    #[arg(value_name = "VOLUME")]
    pub target: String,
    /// The snapshot of it to restore.
    #[arg(value_name = "SNAPSHOT")]
    pub snapshot: String,
    #[command(flatten)]
    pub project: ProjectOpt,
    #[command(flatten)]
    pub json: JsonOpt,
}

#[derive(Debug, Args)]
pub struct BackupArgs {
    /// The volume to back up.
    #[arg(value_name = "VOLUME")]
    pub target: String,
    /// Backup name (letters, digits, '_', '.', '-') [default: the next vN].
    #[arg(value_name = "NAME")]
    pub name: Option<String>,
    #[command(flatten)]
    pub project: ProjectOpt,
    #[command(flatten)]
    pub json: JsonOpt,
}

#[derive(Debug, Args)]
pub struct RestoreBackupArgs {
    /// The volume (it is recreated if it was deleted).
    #[arg(value_name = "VOLUME")]
    pub target: String,
    /// The backup to restore (see `4kr volume backups VOLUME`).
    #[arg(value_name = "BACKUP")]
    pub backup: String,
    #[command(flatten)]
    pub project: ProjectOpt,
    #[command(flatten)]
    pub json: JsonOpt,
}

/// A volume by project and name.
pub type VolumeId = Scoped;

/// `NAME` in the resolved project, or `PROJECT:NAME`.
pub fn resolve(ctx: &Ctx, raw: &str, opt: &ProjectOpt) -> Result<VolumeId> {
    ctx.resolve_scoped(raw, opt, NameKind::Volume)
}

/// Parses `--size` like the declarative files do (`Gi` binary, `G` decimal, plain numbers MiB).
pub fn parse_size(text: &str) -> Result<u64> {
    let mib = forkr_engine::spec::model::parse_size_mib(text).map_err(|why| {
        CliError::usage(format!(
            "invalid --size {text:?}: {why} (give e.g. 512Mi, 10Gi or 10G; a plain number is MiB)"
        ))
    })?;
    mib.checked_mul(1 << 20).ok_or_else(|| CliError::usage(format!("invalid --size {text:?}: too large")))
}

/// The routes of `/v1/projects/{p}/volumes` (names are validated before they reach a URL).
impl Client {
    fn volume_url(&self, id: &VolumeId, tail: &str) -> String {
        self.api_url(&format!("/projects/{}/volumes/{}{tail}", id.project, id.name))
    }

    pub async fn list_volumes(&self, project: &str) -> Result<Vec<VolumeInfo>> {
        self.json(self.request(Method::GET, &self.api_url(&format!("/projects/{project}/volumes")))?).await
    }

    pub async fn create_volume(&self, project: &str, req: &CreateVolume) -> Result<VolumeInfo> {
        let url = self.api_url(&format!("/projects/{project}/volumes"));
        self.json(self.request(Method::POST, &url)?.json(req)).await
    }

    pub async fn show_volume(&self, id: &VolumeId) -> Result<VolumeInfo> {
        self.json(self.request(Method::GET, &self.volume_url(id, ""))?).await
    }

    pub async fn delete_volume(&self, id: &VolumeId, force: bool) -> Result<VolumeDeleted> {
        self.json(self.request(Method::DELETE, &self.volume_url(id, ""))?.query(&[("force", force)])).await
    }

    pub async fn create_volume_snapshot(
        &self,
        id: &VolumeId,
        req: &CreateSnapshot,
    ) -> Result<VolumeSnapshotInfo> {
        self.json(self.request(Method::POST, &self.volume_url(id, "/snapshots"))?.json(req)).await
    }

    pub async fn list_volume_snapshots(&self, id: &VolumeId) -> Result<Vec<VolumeSnapshotInfo>> {
        self.json(self.request(Method::GET, &self.volume_url(id, "/snapshots"))?).await
    }

    pub async fn restore_volume_snapshot(&self, id: &VolumeId, snapshot: &str) -> Result<VolumeInfo> {
        let url = self.volume_url(id, &format!("/snapshots/{snapshot}/restore"));
        self.json(self.request(Method::POST, &url)?).await
    }

    pub async fn create_volume_backup(
        &self,
        id: &VolumeId,
        req: &CreateVolumeBackup,
    ) -> Result<VolumeBackupInfo> {
        self.json(self.request(Method::POST, &self.volume_url(id, "/backups"))?.json(req)).await
    }

    pub async fn list_volume_backups(&self, id: &VolumeId) -> Result<Vec<VolumeBackupInfo>> {
        self.json(self.request(Method::GET, &self.volume_url(id, "/backups"))?).await
    }

    pub async fn restore_volume_backup(&self, id: &VolumeId, backup: &str) -> Result<VolumeInfo> {
        let url = self.volume_url(id, &format!("/backups/{backup}/restore"));
        self.json(self.request(Method::POST, &url)?).await
    }
}

pub async fn run(ctx: &Ctx, a: VolumeArgs) -> Result<i32> {
    match a.command {
        VolumeCommand::Create(a) => create(ctx, a).await,
        VolumeCommand::List(a) => list(ctx, a).await,
        VolumeCommand::Show(a) => show(ctx, a).await,
        VolumeCommand::Delete(a) => delete(ctx, a).await,
        VolumeCommand::Snapshot(a) => snapshot(ctx, a).await,
        VolumeCommand::Snapshots(a) => snapshots(ctx, a).await,
        VolumeCommand::Restore(a) => restore(ctx, a).await,
        VolumeCommand::Backup(a) => backup(ctx, a).await,
        VolumeCommand::Backups(a) => backups(ctx, a).await,
        VolumeCommand::RestoreBackup(a) => restore_backup(ctx, a).await,
    }
}

async fn create(ctx: &Ctx, a: CreateArgs) -> Result<i32> {
    let size_bytes = a.size.as_deref().map(parse_size).transpose()?;
    let id = resolve(ctx, &a.target, &a.project)?;
    let req = CreateVolume { name: id.name.clone(), size_bytes, tags: a.tags.clone() };
    let info = ctx.client()?.create_volume(&id.project, &req).await?;
    if a.json.json {
        output::print_json(&info)?;
    } else {
        println!("{}: created{}", info.name, size_note(&info));
    }
    Ok(0)
}

/// ` (1.0G limit)` / ` (1.0G, recorded but not enforced on this server)` / nothing.
fn size_note(v: &VolumeInfo) -> String {
    match (v.size_bytes, v.size_enforced) {
        (Some(s), true) => format!(" ({} limit)", output::human_size(s)),
        (Some(s), false) => format!(" ({}, recorded but not enforced on this server)", output::human_size(s)),
        (None, _) => String::new(),
    }
}

async fn list(ctx: &Ctx, a: ListArgs) -> Result<i32> {
    let project = ctx.project(&a.project)?;
    let volumes = ctx.client()?.list_volumes(&project).await?;
    if a.json.json {
        output::print_json(&volumes)?;
    } else {
        print!("{}", volume_table(&volumes));
    }
    Ok(0)
}

async fn show(ctx: &Ctx, a: VolumeRefArgs) -> Result<i32> {
    let id = resolve(ctx, &a.target, &a.project)?;
    let info = ctx.client()?.show_volume(&id).await?;
    if a.json.json {
        output::print_json(&info)?;
    } else {
        print!("{}", volume_details(&info));
    }
    Ok(0)
}

/// One line of `volume delete`'s report.
#[derive(Debug, Serialize)]
struct DeleteResult {
    name: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    deleted: Option<bool>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    detached_from: Vec<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    error: Option<forkr_engine::api::ErrorDetail>,
}

async fn delete(ctx: &Ctx, a: DeleteArgs) -> Result<i32> {
    let client = ctx.client()?;
    let mut results = Vec::with_capacity(a.targets.len());
    for raw in &a.targets {
        let outcome = async {
            let id = resolve(ctx, raw, &a.project)?;
            client.delete_volume(&id, a.force).await
        }
        .await;
        let result = match outcome {
            Ok(d) => DeleteResult {
                name: raw.clone(),
                deleted: Some(d.deleted),
                detached_from: d.detached_from,
                error: None,
            },
            Err(e) => DeleteResult {
                name: raw.clone(),
                deleted: None,
                detached_from: Vec::new(),
                error: Some(forkr_engine::api::ErrorDetail {
                    code: e.code().to_owned(),
                    message: e.message().to_owned(),
                }),
            },
        };
        if !a.json.json {
            match &result.error {
                None if result.detached_from.is_empty() => println!("{}: deleted", result.name),
                None => {
                    println!("{}: deleted (removed from {})", result.name, result.detached_from.join(", "))
                }
                Some(e) => println!("{}: error: {}", result.name, e.message),
            }
        }
        results.push(result);
    }
    if a.json.json {
        output::print_json(&results)?;
    }
    let failed = results.iter().filter(|r| r.error.is_some()).count();
    output::deletes_done(failed, results.len(), "volumes")
}

async fn snapshot(ctx: &Ctx, a: SnapshotArgs) -> Result<i32> {
    let name = a.name_flag.clone().or_else(|| a.name.clone());
    if let Some(n) = &name {
        name::validate(NameKind::Snapshot, n)?;
    }
    let id = resolve(ctx, &a.target, &a.project)?;
    let req = CreateSnapshot { name, description: a.description.clone().unwrap_or_default() };
    let snap = ctx.client()?.create_volume_snapshot(&id, &req).await?;
    if a.json.json {
        output::print_json(&snap)?;
    } else {
        println!("{}: created", snap.name);
    }
    Ok(0)
}

async fn snapshots(ctx: &Ctx, a: VolumeRefArgs) -> Result<i32> {
    let id = resolve(ctx, &a.target, &a.project)?;
    let snaps = ctx.client()?.list_volume_snapshots(&id).await?;
    if a.json.json {
        output::print_json(&snaps)?;
    } else {
        print!("{}", snapshot_table(&snaps));
    }
    Ok(0)
}

async fn restore(ctx: &Ctx, a: RestoreArgs) -> Result<i32> {
    name::validate(NameKind::Snapshot, &a.snapshot)?;
    let id = resolve(ctx, &a.target, &a.project)?;
    let info = ctx.client()?.restore_volume_snapshot(&id, &a.snapshot).await?;
    if a.json.json {
        output::print_json(&info)?;
    } else {
        println!("{}: restored from snapshot {}", info.name, a.snapshot);
    }
    Ok(0)
}

async fn backup(ctx: &Ctx, a: BackupArgs) -> Result<i32> {
    if let Some(n) = &a.name {
        name::validate(NameKind::Snapshot, n)?;
    }
    let id = resolve(ctx, &a.target, &a.project)?;
    let b = ctx.client()?.create_volume_backup(&id, &CreateVolumeBackup { name: a.name.clone() }).await?;
    if a.json.json {
        output::print_json(&b)?;
    } else {
        println!("{}: created ({})", b.name, output::human_size(b.size));
    }
    Ok(0)
}

async fn backups(ctx: &Ctx, a: VolumeRefArgs) -> Result<i32> {
    let id = resolve(ctx, &a.target, &a.project)?;
    let list = ctx.client()?.list_volume_backups(&id).await?;
    if a.json.json {
        output::print_json(&list)?;
    } else {
        print!("{}", backup_table(&list));
    }
    Ok(0)
}

async fn restore_backup(ctx: &Ctx, a: RestoreBackupArgs) -> Result<i32> {
    name::validate(NameKind::Snapshot, &a.backup)?;
    let id = resolve(ctx, &a.target, &a.project)?;
    let info = ctx.client()?.restore_volume_backup(&id, &a.backup).await?;
    if a.json.json {
        output::print_json(&info)?;
    } else {
        println!("{}: restored from backup {}", info.name, a.backup);
    }
    Ok(0)
}

fn size_cell(v: &VolumeInfo) -> String {
    match (v.size_bytes, v.size_enforced) {
        (Some(s), true) => output::human_size(s),
        (Some(s), false) => format!("{} (not enforced)", output::human_size(s)),
        (None, _) => "unlimited".to_owned(),
    }
}

fn mounts_cell(v: &VolumeInfo) -> String {
    if v.mounted_by.is_empty() {
        return "-".to_owned();
    }
    let all: Vec<String> = v
        .mounted_by
        .iter()
        .map(|m| format!("{}:{}{}", m.r#box, m.path, if m.read_only { ":ro" } else { "" }))
        .collect();
    all.join(", ")
}

/// `volume list`: NAME SIZE MOUNTED_BY CREATED.
pub fn volume_table(volumes: &[VolumeInfo]) -> String {
    let rows: Vec<Vec<String>> = volumes
        .iter()
        .map(|v| vec![v.name.clone(), size_cell(v), mounts_cell(v), v.created_at.clone()])
        .collect();
    output::table(&["NAME", "SIZE", "MOUNTED_BY", "CREATED"], &rows)
}

/// `volume show`: one `key: value` per line, keys aligned.
pub fn volume_details(v: &VolumeInfo) -> String {
    let size = match (v.size_bytes, v.size_enforced) {
        (Some(s), true) => format!("{} (enforced by a btrfs quota)", output::human_size(s)),
        (Some(s), false) => format!("{} (recorded, not enforced on this server)", output::human_size(s)),
        (None, _) => "unlimited".to_owned(),
    };
    let mut fields: Vec<(&str, String)> = vec![
        ("name", v.name.clone()),
        ("project", v.project.clone()),
        ("size", size),
        ("used", v.used_bytes.map_or_else(|| "-".to_owned(), output::human_size)),
    ];
    if let Some(src) = &v.copied_from {
        fields.push(("copied_from", src.clone()));
    }
    fields.extend([
        ("mounted_by", mounts_cell(v)),
        ("tags", if v.tags.is_empty() { "-".to_owned() } else { v.tags.join(", ") }),
        ("created_at", v.created_at.clone()),
    ]);
    let width = fields.iter().map(|(k, _)| k.len()).max().unwrap_or(0) + 1;
    fields.iter().map(|(k, val)| format!("{:<width$} {val}\n", format!("{k}:"))).collect()
}

/// `volume snapshots`: NAME SIZE CREATED DESCRIPTION.
pub fn snapshot_table(snaps: &[VolumeSnapshotInfo]) -> String {
    let rows: Vec<Vec<String>> = snaps
        .iter()
        .map(|s| {
            vec![
                s.name.clone(),
                s.size.map_or_else(|| "-".to_owned(), output::human_size),
                s.created_at.clone(),
                s.description.clone(),
            ]
        })
        .collect();
    output::table(&["NAME", "SIZE", "CREATED", "DESCRIPTION"], &rows)
}

/// `volume backups`: NAME SIZE CREATED.
pub fn backup_table(backups: &[VolumeBackupInfo]) -> String {
    let rows: Vec<Vec<String>> = backups
        .iter()
        .map(|b| vec![b.name.clone(), output::human_size(b.size), b.created_at.clone()])
        .collect();
    output::table(&["NAME", "SIZE", "CREATED"], &rows)
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser as _;
    use forkr_engine::api::VolumeMount;

    fn parse(args: &[&str]) -> VolumeCommand {
        let cli = crate::cli::Cli::try_parse_from(["4kr", "volume"].iter().chain(args)).unwrap();
        match cli.command {
            crate::cli::Command::Volume(a) => a.command,
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn every_subcommand_parses() {
        let VolumeCommand::Create(c) =
            parse(&["create", "pg", "--size", "10Gi", "--tag", "a", "-p", "proj", "-j"])
        else {
            panic!("create")
        };
        assert_eq!(
            (c.target.as_str(), c.size.as_deref(), c.project.project.as_deref()),
            ("pg", Some("10Gi"), Some("proj"))
        );
        assert!(c.json.json);
        assert!(matches!(parse(&["ls"]), VolumeCommand::List(_)));
        assert!(matches!(parse(&["show", "p:pg"]), VolumeCommand::Show(_)));
        let VolumeCommand::Delete(d) = parse(&["rm", "-f", "a", "b"]) else { panic!("delete") };
        assert!(d.force && d.targets == ["a", "b"]);
        let VolumeCommand::Snapshot(s) = parse(&["snapshot", "pg", "before", "--name", "over", "-m", "why"])
        else {
            panic!("snapshot")
        };
        assert_eq!(
            (s.name.as_deref(), s.name_flag.as_deref(), s.description.as_deref()),
            (Some("before"), Some("over"), Some("why"))
        );
        assert!(matches!(parse(&["snapshots", "pg"]), VolumeCommand::Snapshots(_)));
        assert!(matches!(parse(&["restore", "pg", "v0"]), VolumeCommand::Restore(_)));
        assert!(matches!(parse(&["backup", "pg"]), VolumeCommand::Backup(_)));
        assert!(matches!(parse(&["backups", "pg", "--json"]), VolumeCommand::Backups(_)));
        let VolumeCommand::RestoreBackup(r) = parse(&["restore-backup", "pg", "v3"]) else {
            panic!("restore-backup")
        };
        assert_eq!(r.backup, "v3");
        let missing = crate::cli::Cli::try_parse_from(["4kr", "volume", "restore", "pg"]).unwrap_err();
        assert_eq!(missing.kind(), clap::error::ErrorKind::MissingRequiredArgument);
    }

    #[test]
    fn sizes() {
        assert_eq!(parse_size("10Gi").unwrap(), 10 << 30);
        assert_eq!(parse_size("512").unwrap(), 512 << 20);
        assert_eq!(parse_size("1G").unwrap(), 954 << 20, "decimal G, rounded up to whole MiB");
        let e = parse_size("ten").unwrap_err();
        assert!(e.message().starts_with("invalid --size \"ten\""), "{}", e.message());
        assert!(parse_size("5X").is_err());
    }

    #[test]
    fn refs() {
        let dir = tempfile::tempdir().unwrap();
        let ctx = Ctx::new(
            crate::cli::GlobalArgs::default(),
            crate::env::Env::from_pairs([("FORKR_PROJECT", "envp")]),
            dir.path().to_path_buf(),
        );
        let none = ProjectOpt::default();
        assert_eq!(
            resolve(&ctx, "pg", &none).unwrap(),
            VolumeId { project: "envp".into(), name: "pg".into() }
        );
        assert_eq!(resolve(&ctx, "other:pg", &none).unwrap().to_string(), "other:pg");
        let flag = ProjectOpt { project: Some("flagp".into()) };
        assert_eq!(resolve(&ctx, "pg", &flag).unwrap().project, "flagp");
        assert!(resolve(&ctx, "Bad", &none).is_err());
        assert!(resolve(&ctx, "p:", &none).is_err());
    }

    fn vol(name: &str) -> VolumeInfo {
        VolumeInfo {
            name: name.into(),
            project: "default".into(),
            size_bytes: None,
            size_enforced: false,
            used_bytes: None,
            tags: vec![],
            copied_from: None,
            mounted_by: vec![],
            created_at: "2026-01-02T03:04:05Z".into(),
        }
    }

    #[test]
    fn tables_and_details() {
        let mut pg = vol("pg");
        pg.size_bytes = Some(10 << 30);
        pg.size_enforced = true;
        pg.mounted_by = vec![
            VolumeMount { r#box: "db".into(), path: "/var/lib/pg".into(), read_only: false },
            VolumeMount { r#box: "web".into(), path: "/data".into(), read_only: true },
        ];
        let mut assets = vol("assets");
        assets.size_bytes = Some(1 << 20);
        assert_eq!(
            volume_table(&[pg.clone(), assets, vol("box-web2-pg")]),
            "NAME          SIZE                  MOUNTED_BY                     CREATED\n\
             pg            10.0G                 db:/var/lib/pg, web:/data:ro   2026-01-02T03:04:05Z\n\
             assets        1.0M (not enforced)   -                              2026-01-02T03:04:05Z\n\
             box-web2-pg   unlimited             -                              2026-01-02T03:04:05Z\n"
        );
        pg.used_bytes = Some(1536);
        pg.copied_from = Some("base-pg".into());
        assert_eq!(
            volume_details(&pg),
            "name:        pg\n\
             project:     default\n\
             size:        10.0G (enforced by a btrfs quota)\n\
             used:        1.5K\n\
             copied_from: base-pg\n\
             mounted_by:  db:/var/lib/pg, web:/data:ro\n\
             tags:        -\n\
             created_at:  2026-01-02T03:04:05Z\n"
        );
        let b = VolumeBackupInfo {
            name: "v0".into(),
            volume: "pg".into(),
            project: "default".into(),
            size: 2048,
            created_at: "2026-01-02T03:04:05Z".into(),
        };
        assert_eq!(backup_table(&[b]), "NAME   SIZE   CREATED\nv0     2.0K   2026-01-02T03:04:05Z\n");
        assert_eq!(snapshot_table(&[]), "NAME   SIZE   CREATED   DESCRIPTION\n");
    }
}
