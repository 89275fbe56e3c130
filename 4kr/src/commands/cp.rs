//! `cp` (aliases `get`, `put`): copy one file into or out of a box, keeping its permission bits.

use std::io::Write as _;
use std::os::unix::fs::{OpenOptionsExt as _, PermissionsExt as _};
use std::path::{Path, PathBuf};

use clap::Args;
use forkr_engine::api::MODE_HEADER;
use forkr_engine::name::BoxPath;
use futures_util::StreamExt as _;

use crate::cli::{NoJsonOpt, ProjectOpt};
use crate::commands::ephemeral;
use crate::ctx::{BoxId, BoxSel, Ctx};
use crate::error::{CliError, Result};

#[derive(Debug, Args)]
pub struct CpArgs {
    /// Source: a local file, or box:/path (also project:box:/path, .:/path, -:/path).
    #[arg(value_name = "SRC", allow_hyphen_values = true)]
    pub src: String,
    /// Destination: a local path, or box:/path. A trailing `/` or an existing directory keeps the
    /// source's file name.
    #[arg(value_name = "DEST", allow_hyphen_values = true)]
    pub dest: String,
    #[command(flatten)]
    pub project: ProjectOpt,
    #[command(flatten)]
    pub json: NoJsonOpt,
}

/// The documented error for directories.
pub const DIRECTORY_ERROR: &str = "only files are supported (directories require -r, not yet supported)";

/// Which way a copy goes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Direction {
    /// Local file into a box.
    Put { local: PathBuf, remote: BoxPath },
    /// File in a box to a local path.
    Get { remote: BoxPath, local: PathBuf },
}

/// Decides the direction: exactly one side must be a `box:/path`.
pub fn direction(src: &str, dest: &str) -> Result<Direction> {
    match (BoxPath::parse(src)?, BoxPath::parse(dest)?) {
        (Some(_), Some(_)) => Err(CliError::usage(format!(
            "cp copies between this machine and one box, but both {src:?} and {dest:?} are box paths"
        ))
        .with_help("copy through a local file: `4kr get <box>:/path ./file`, then `4kr put ./file <box>:/path`")),
        (None, None) => Err(CliError::usage(format!(
            "cp needs exactly one box path, but neither {src:?} nor {dest:?} is one"
        ))
        .with_help("write the box side as box:/path (the :/ is required), e.g. `4kr cp ./app.tar web-1:/srv/app.tar`")),
        (None, Some(remote)) => Ok(Direction::Put { local: PathBuf::from(src), remote }),
        (Some(remote), None) => Ok(Direction::Get { remote, local: PathBuf::from(dest) }),
    }
}

/// The remote target of a put: a path ending in `/` gets the local file's name.
pub fn put_target(remote: &str, local: &Path) -> Result<String> {
    if !remote.ends_with('/') {
        return Ok(remote.to_owned());
    }
    let name = local
        .file_name()
        .and_then(|n| n.to_str())
        .ok_or_else(|| CliError::usage(format!("cannot tell the file name of {}", local.display())))?;
    Ok(format!("{remote}{name}"))
}

/// The local target of a get: a path ending in `/` or an existing directory gets the remote name.
pub fn get_target(local: &Path, remote: &str) -> Result<PathBuf> {
    let is_dir = local.as_os_str().to_string_lossy().ends_with('/') || local.is_dir();
    if !is_dir {
        return Ok(local.to_path_buf());
    }
    match remote.rsplit('/').next().filter(|n| !n.is_empty() && *n != "." && *n != "..") {
        Some(name) => Ok(local.join(name)),
        None => Err(CliError::usage(DIRECTORY_ERROR)),
    }
}

/// Parses the octal `x-forkr-mode` header.
pub fn parse_mode(raw: &str) -> Option<u32> {
    u32::from_str_radix(raw.trim().trim_start_matches("0o"), 8).ok().filter(|m| *m <= 0o7777)
}

pub async fn cp(ctx: &Ctx, a: CpArgs) -> Result<i32> {
    a.json.reject("cp/get/put")?;
    let dir = direction(&a.src, &a.dest)?;
    // A missing or directory source fails before any box is touched (or created, for `-`).
    if let Direction::Put { local, .. } = &dir {
        check_local_source(local)?;
    }
    let remote = match &dir {
        Direction::Put { remote, .. } | Direction::Get { remote, .. } => remote.clone(),
    };
    match ctx.resolve_parsed(remote.r#box, &a.project)? {
        BoxSel::Named(id) => transfer(ctx, &id, &dir).await,
        BoxSel::Ephemeral { project } => {
            ephemeral::run(ctx, project, async |id: &BoxId| transfer(ctx, id, &dir).await).await
        }
    }
}

fn check_local_source(local: &Path) -> Result<std::fs::Metadata> {
    let meta =
        std::fs::metadata(local).map_err(|e| CliError::io(format!("cannot read {}", local.display()), e))?;
    if meta.is_dir() {
        return Err(CliError::usage(DIRECTORY_ERROR));
    }
    Ok(meta)
}

async fn transfer(ctx: &Ctx, id: &BoxId, dir: &Direction) -> Result<i32> {
    let client = ctx.client()?;
    match dir {
        Direction::Put { local, remote } => {
            let meta = check_local_source(local)?;
            let path = put_target(&remote.path, local)?;
            let file = tokio::fs::File::open(local)
                .await
                .map_err(|e| CliError::io(format!("cannot read {}", local.display()), e))?;
            client.put_file(id, &path, meta.permissions().mode() & 0o7777, file.into()).await?;
        }
        Direction::Get { remote, local } => {
            let target = get_target(local, &remote.path)?;
            let resp = client.get_file(id, &remote.path).await?;
            let mode = resp.headers().get(MODE_HEADER).and_then(|v| v.to_str().ok()).and_then(parse_mode);
            download(resp, &target, mode).await?;
        }
    }
    Ok(0)
}

/// Streams the body into a temporary file beside `target`, applies `mode`, then renames it into
/// place, so a failed download never leaves a truncated file where a good one was.
async fn download(resp: reqwest::Response, target: &Path, mode: Option<u32>) -> Result<()> {
    let dir = target.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(Path::new("."));
    let name = target.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    let tmp = dir.join(format!(".{name}.4kr-{}.part", std::process::id()));
    let io = |what: &str, e| CliError::io(format!("cannot {what} {}", target.display()), e);
    let result = async {
        // A fresh file, never one found at the temporary name (a planted symlink is not followed).
        let mut file = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o666)
            .open(&tmp)
            .map_err(|e| io("write", e))?;
        let mut body = resp.bytes_stream();
        while let Some(chunk) = body.next().await {
            let chunk = chunk.map_err(|e| {
                CliError::from(forkr_engine::Error::internal(format!(
                    "download from forkr-server failed: {e}"
                )))
            })?;
            file.write_all(&chunk).map_err(|e| io("write", e))?;
        }
        file.flush().map_err(|e| io("write", e))?;
        if let Some(mode) = mode {
            // The box says what the mode is, and a box is not trusted: the set-user-ID and
            // set-group-ID bits are dropped, so a download made as root never becomes a setuid-root
            // program on this machine.
            file.set_permissions(std::fs::Permissions::from_mode(mode & !0o6000))
                .map_err(|e| io("set the mode of", e))?;
        }
        std::fs::rename(&tmp, target).map_err(|e| io("write", e))
    }
    .await;
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result
}

#[cfg(test)]
mod tests {
    use super::*;
    use forkr_engine::name::BoxRef;

    #[test]
    fn exactly_one_side_is_a_box() {
        let d = direction("./app.tar", "web-1:/srv/app.tar").unwrap();
        assert!(matches!(d, Direction::Put { ref remote, .. } if remote.path == "/srv/app.tar"));
        let d = direction("p:web:/var/log/app.log", "./app.log").unwrap();
        let Direction::Get { remote, local } = d else { panic!("get") };
        assert_eq!(remote.r#box, BoxRef::Named { project: Some("p".into()), name: "web".into() });
        assert_eq!(local, PathBuf::from("./app.log"));
        let e = direction("a:/x", "b:/y").unwrap_err();
        assert!(e.message().contains("both"), "{}", e.message());
        let e = direction("x", "web:y").unwrap_err();
        assert!(e.message().contains("neither"), "{}", e.message());
        assert!(direction("-:/x", "./y").is_ok());
        assert!(direction(".:/x", "./y").is_ok());
    }

    #[test]
    fn ephemeral_paths_parse_as_values_and_flags_still_work() {
        use clap::Parser as _;
        let parse = |args: &[&str]| {
            let cli = crate::cli::Cli::try_parse_from(["4kr"].iter().chain(args)).unwrap();
            let crate::cli::Command::Cp(a) = cli.command else { panic!("cp") };
            a
        };
        let a = parse(&["cp", "f", "-:/tmp/f"]);
        assert_eq!(a.dest, "-:/tmp/f");
        let a = parse(&["put", "-p", "proj", "-:/x", "y"]);
        assert_eq!(
            (a.project.project.as_deref(), a.src.as_str(), a.dest.as_str()),
            (Some("proj"), "-:/x", "y")
        );
        let a = parse(&["get", "-:/x", "y", "-p", "proj"]);
        assert_eq!(a.project.project.as_deref(), Some("proj"));
    }

    #[test]
    fn targets_keep_the_file_name_for_directories() {
        assert_eq!(put_target("/srv/", Path::new("dir/app.tar")).unwrap(), "/srv/app.tar");
        assert_eq!(put_target("/srv/x", Path::new("app.tar")).unwrap(), "/srv/x");
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(get_target(dir.path(), "/var/log/app.log").unwrap(), dir.path().join("app.log"));
        assert_eq!(get_target(Path::new("out/"), "/a/b").unwrap(), PathBuf::from("out/b"));
        assert_eq!(get_target(Path::new("x.log"), "/a/b").unwrap(), PathBuf::from("x.log"));
        assert_eq!(get_target(dir.path(), "/").unwrap_err().message(), DIRECTORY_ERROR);
    }

    #[test]
    fn local_directories_are_the_documented_error() {
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(check_local_source(dir.path()).unwrap_err().message(), DIRECTORY_ERROR);
        let e = check_local_source(&dir.path().join("missing")).unwrap_err();
        assert!(e.message().starts_with("cannot read "), "{}", e.message());
    }

    #[test]
    fn modes() {
        assert_eq!(parse_mode("0755"), Some(0o755));
        assert_eq!(parse_mode("644"), Some(0o644));
        assert_eq!(parse_mode("4755"), Some(0o4755));
        assert_eq!(parse_mode("0o600"), Some(0o600));
        assert_eq!(parse_mode("9"), None);
        assert_eq!(parse_mode("177777"), None);
    }
}
