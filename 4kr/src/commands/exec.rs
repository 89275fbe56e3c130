//! Running things in a box: `exec` (foreground over a WebSocket, or `--bg`), `ps`, `logs`.

use std::collections::BTreeMap;
use std::io::Write as _;

use clap::Args;
use forkr_engine::api::{ExecRequest, PsRequest};
use futures_util::StreamExt as _;
use serde::Serialize;

use crate::cli::{JsonOpt, ProjectOpt};
use crate::commands::{boxes::parse_kv, ephemeral};
use crate::ctx::{BoxId, BoxSel, Ctx};
use crate::error::{CliError, Result};
use crate::{output, session, term};

#[derive(Debug, Args)]
#[command(override_usage = "4kr exec [OPTIONS] <BOX> [-- <CMD>...]")]
pub struct ExecArgs {
    /// The box: name, project:name, `.` (this box), or `-` for a throwaway box.
    #[arg(value_name = "BOX")]
    pub target: String,
    /// Run as a project user.
    #[arg(long, value_name = "NAME")]
    pub user: Option<String>,
    /// Set an environment variable (repeatable).
    #[arg(short = 'e', long = "env", value_name = "KEY=VALUE")]
    pub env: Vec<String>,
    /// Working directory.
    #[arg(long = "wd", visible_alias = "cwd", value_name = "DIR")]
    pub wd: Option<String>,
    /// Treat the args as one shell string.
    #[arg(long = "sh", visible_alias = "bash")]
    pub sh: bool,
    /// Run detached in the background; prints pid=<n>.
    #[arg(long)]
    pub bg: bool,
    #[command(flatten)]
    pub project: ProjectOpt,
    #[command(flatten)]
    pub json: JsonOpt,
    /// The command and its arguments, after `--`. Without one: an interactive login shell on a
    /// terminal, else bash reading stdin.
    #[arg(value_name = "CMD", trailing_var_arg = true, allow_hyphen_values = true)]
    pub cmd: Vec<String>,
}

#[derive(Debug, Args)]
#[command(override_usage = "4kr ps [OPTIONS] <BOX> [-- <ARGS>...]")]
pub struct PsArgs {
    /// The box.
    #[arg(value_name = "BOX")]
    pub target: String,
    #[command(flatten)]
    pub project: ProjectOpt,
    /// Extra `ps` arguments, after `--`.
    #[arg(value_name = "ARGS", trailing_var_arg = true, allow_hyphen_values = true)]
    pub args: Vec<String>,
}

#[derive(Debug, Args)]
pub struct LogsArgs {
    /// The box.
    #[arg(value_name = "BOX")]
    pub target: String,
    /// PID printed by `exec --bg`.
    #[arg(long, value_name = "PID", required = true)]
    pub pid: u32,
    /// Keep printing until the process ends.
    #[arg(short = 'f', long)]
    pub follow: bool,
    #[command(flatten)]
    pub project: ProjectOpt,
    #[command(flatten)]
    pub json: JsonOpt,
}

/// The request for `exec`, and whether it runs with a terminal. `interactive` is whether stdin and
/// stdout are terminals; `stdin_tty` whether stdin is.
pub fn exec_request(a: &ExecArgs, interactive: bool, stdin_tty: bool) -> Result<(ExecRequest, bool)> {
    let mut env = BTreeMap::new();
    for raw in &a.env {
        let (k, v) = parse_kv("--env", raw)?;
        env.insert(k, v);
    }
    let mut cmd = a.cmd.clone();
    if cmd.is_empty() {
        if a.bg {
            return Err(CliError::usage("--bg needs a command: 4kr exec <box> --bg -- <cmd...>"));
        }
        if a.sh {
            return Err(CliError::usage("--sh needs a shell string: 4kr exec <box> --sh -- '<script>'"));
        }
        // Document 002: no command and stdin not a TTY runs bash (reading the script from stdin).
        if !stdin_tty {
            cmd = vec!["bash".to_owned()];
        }
    }
    let tty = !a.bg && interactive;
    let (rows, cols) = match (tty, term::size()) {
        (true, Some((r, c))) => (Some(r), Some(c)),
        _ => (None, None),
    };
    let req = ExecRequest {
        cmd,
        sh: a.sh,
        env,
        wd: a.wd.clone(),
        user: a.user.clone(),
        bg: a.bg,
        tty,
        rows,
        cols,
        stdin: None,
    };
    Ok((req, tty))
}

#[derive(Serialize)]
struct BgJson {
    pid: u32,
}

pub async fn exec(ctx: &Ctx, a: ExecArgs) -> Result<i32> {
    if a.json.json && !a.bg {
        return Err(CliError::usage("--json is not supported in foreground mode"));
    }
    let sel = ctx.resolve(&a.target, &a.project)?;
    let (req, tty) = exec_request(&a, term::interactive(), term::stdin_is_tty())?;
    match sel {
        BoxSel::Named(id) => run_exec(ctx, &id, &req, tty, a.json.json).await,
        BoxSel::Ephemeral { project } => {
            if a.bg {
                return Err(CliError::usage(
                    "--bg cannot be used with `-`: the throwaway box is deleted as soon as exec returns",
                ));
            }
            ephemeral::run(ctx, project, async |id: &BoxId| run_exec(ctx, id, &req, tty, false).await).await
        }
    }
}

async fn run_exec(ctx: &Ctx, id: &BoxId, req: &ExecRequest, tty: bool, json: bool) -> Result<i32> {
    let client = ctx.client()?;
    if req.bg {
        let started = client.exec_bg(id, req).await?;
        if json {
            output::print_json(&BgJson { pid: started.pid })?;
        } else {
            println!("pid={}", started.pid);
        }
        return Ok(0);
    }
    let first = serde_json::to_string(req).map_err(|e| {
        CliError::from(forkr_engine::Error::internal(format!("cannot encode the request: {e}")))
    })?;
    let ws = client.websocket(id, "/exec/ws").await?;
    session::run(ws, Some(first), tty).await
}

pub async fn ps(ctx: &Ctx, a: PsArgs) -> Result<i32> {
    let id = ctx.resolve_named(&a.target, &a.project)?;
    let out = ctx.client()?.ps(&id, &PsRequest { args: a.args }).await?;
    print!("{}", out.stdout);
    eprint!("{}", out.stderr);
    Ok(out.exit_code)
}

#[derive(Serialize)]
struct LogJson {
    pid: u32,
    log: String,
}

pub async fn logs(ctx: &Ctx, a: LogsArgs) -> Result<i32> {
    if a.json.json && a.follow {
        return Err(CliError::usage("--json is not supported with --follow"));
    }
    let id = ctx.resolve_named(&a.target, &a.project)?;
    let resp = ctx.client()?.logs(&id, a.pid, a.follow).await?;
    let read_err = |e: reqwest::Error| {
        CliError::from(forkr_engine::Error::internal(format!("reading the log from forkr-server: {e}")))
    };
    if a.json.json {
        let bytes = resp.bytes().await.map_err(read_err)?;
        return output::print_json(&LogJson {
            pid: a.pid,
            log: String::from_utf8_lossy(&bytes).into_owned(),
        })
        .map(|_| 0);
    }
    let mut stream = resp.bytes_stream();
    let mut stdout = std::io::stdout();
    let interrupt = session::interrupted();
    tokio::pin!(interrupt);
    loop {
        tokio::select! {
            chunk = stream.next() => match chunk {
                None => return Ok(0),
                Some(chunk) => {
                    let chunk = chunk.map_err(read_err)?;
                    if stdout.write_all(&chunk).and_then(|_| stdout.flush()).is_err() {
                        // The reader went away (`| head`): stop quietly.
                        return Ok(0);
                    }
                }
            },
            code = &mut interrupt => return Ok(code),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser as _;

    fn exec_args(args: &[&str]) -> ExecArgs {
        let cli = crate::cli::Cli::try_parse_from(["4kr", "exec"].iter().chain(args)).unwrap();
        match cli.command {
            crate::cli::Command::Exec(a) => a,
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn command_after_double_dash_keeps_its_flags() {
        let a =
            exec_args(&["web", "--user", "alice", "--wd", "/srv", "-e", "A=1", "--", "ls", "-la", "--bg"]);
        assert_eq!(a.cmd, ["ls", "-la", "--bg"]);
        assert!(!a.bg);
        let (r, tty) = exec_request(&a, false, false).unwrap();
        assert_eq!((r.user.as_deref(), r.wd.as_deref(), tty), (Some("alice"), Some("/srv"), false));
        assert_eq!(r.env.get("A").map(String::as_str), Some("1"));
        // Without `--` the command starts at the first non-flag word.
        let a = exec_args(&["web", "--bg", "sleep", "10", "-x"]);
        assert!(a.bg);
        assert_eq!(a.cmd, ["sleep", "10", "-x"]);
    }

    #[test]
    fn aliases_cwd_and_bash() {
        let a = exec_args(&["web", "--cwd", "/w", "--bash", "--", "echo $HOME"]);
        assert_eq!(a.wd.as_deref(), Some("/w"));
        assert!(a.sh);
    }

    #[test]
    fn no_command_means_bash_only_without_a_tty() {
        let a = exec_args(&["web"]);
        assert_eq!(exec_request(&a, false, false).unwrap().0.cmd, ["bash"]);
        // On a terminal: the server's login shell, with a PTY.
        let (r, tty) = exec_request(&a, true, true).unwrap();
        assert!(r.cmd.is_empty() && r.tty && tty);
        // --bg never gets a PTY and needs a command.
        assert!(exec_request(&exec_args(&["web", "--bg"]), true, true).is_err());
        let (r, tty) = exec_request(&exec_args(&["web", "--bg", "--", "sleep", "1"]), true, true).unwrap();
        assert!(r.bg && !r.tty && !tty);
    }

    #[test]
    fn request_wire_form_is_accepted_by_the_contract() {
        let (r, _) = exec_request(&exec_args(&["web", "--sh", "--", "echo", "hi"]), false, false).unwrap();
        let back: ExecRequest = serde_json::from_str(&serde_json::to_string(&r).unwrap()).unwrap();
        assert!(back.sh);
        assert_eq!(back.cmd, ["echo", "hi"]);
    }
}
