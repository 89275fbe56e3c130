//! The command line: global flags, the command enum, and the small argument groups commands share.
//!
//! Each command group lives in its own module under `commands/` with its own `Args` struct; adding a
//! group (publish, snapshot, base, …) means one module and one variant here.

use clap::{Args, Parser, Subcommand};

use crate::commands::{
    base, boxes, config, console, cp, diff, docs, exec, inject, port, publish, snapshot, user, volume,
    workspace,
};

const CONNECTION_HELP: &str = "\
Server URL, first match wins:
  --url; the selected profile (--profile, FORKR_PROFILE, or the config's
  `profile`) through FORKR_PROFILE_<NAME>_URL; FORKR_URL; FORKR_API_URL; the
  config file (.forkr/config.yaml or $FORKR_SETUP_DIR/config.yaml);
  else http://127.0.0.1:7878, forkr-server's default address.
Token, first match wins:
  --token; FORKR_PROFILE_<NAME>_TOKEN; FORKR_TOKEN; the config file. When no
  URL is configured at all, the local server's token file is read if it is
  readable (/var/lib/forkr/token, or $FORKR_DATA_DIR/token): a convenience
  for local development.
Project, first match wins:
  -p/--project; FORKR_PROJECT; the config's `project`; the git root's
  directory name; `default`.

Run `4kr docs` for the \"Using forkr\" guide.";

/// 4kr: instant, persistent Linux sandboxes ("boxes") on a Forkr server.
#[derive(Debug, Parser)]
#[command(name = "4kr", version, after_help = CONNECTION_HELP, max_term_width = 110)]
pub struct Cli {
    #[command(flatten)]
    pub global: GlobalArgs,
    #[command(subcommand)]
    pub command: Command,
}

/// Flags every command accepts, before or after the command name. They get their own help section,
/// so each command's own options come first in its `--help`.
#[derive(Debug, Clone, Default, Args)]
#[command(next_help_heading = "Global options")]
pub struct GlobalArgs {
    /// API base URL (beats profiles and environment variables).
    #[arg(long, global = true, value_name = "URL")]
    pub url: Option<String>,
    /// Profile to target for this command (like FORKR_PROFILE=<NAME>).
    #[arg(long, global = true, value_name = "NAME")]
    pub profile: Option<String>,
    /// API bearer token (beats FORKR_TOKEN and the config).
    #[arg(long, global = true, value_name = "TOKEN")]
    pub token: Option<String>,
}

impl GlobalArgs {
    pub fn flags(&self) -> crate::target::Flags {
        crate::target::Flags {
            url: self.url.clone(),
            profile: self.profile.clone(),
            token: self.token.clone(),
        }
    }
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Create a box from a base (default box-base) or as a fork of another box.
    Create(boxes::CreateArgs),
    /// List the boxes of a project.
    #[command(visible_alias = "ls")]
    List(boxes::ListArgs),
    /// Show a box's details.
    Show(boxes::ShowArgs),
    /// Update a box's port, CPU, memory, termination grace or tags.
    Update(boxes::UpdateArgs),
    /// Delete one or more boxes.
    #[command(visible_alias = "rm")]
    Delete(boxes::DeleteArgs),
    /// Stop a box: its processes end, its root filesystem stays.
    Stop(boxes::StopArgs),
    /// Start a stopped box again with a fresh PID 1.
    Resume(boxes::StopArgs),
    /// Run a command in a box (`-` for a throwaway box).
    Exec(exec::ExecArgs),
    /// Open an interactive terminal in a box.
    Console(console::ConsoleArgs),
    /// Run `ps` inside a box.
    Ps(exec::PsArgs),
    /// Read the log of a background process started with `exec --bg`.
    #[command(visible_alias = "tail")]
    Logs(exec::LogsArgs),
    /// Copy a file into or out of a box (one side is box:/path).
    #[command(visible_aliases = ["get", "put"])]
    Cp(cp::CpArgs),
    /// Publish a box on a hostname through the server's HTTPS proxy.
    Publish(publish::PublishArgs),
    /// Stop publishing a hostname.
    Unpublish(publish::UnpublishArgs),
    /// TCP ports listening inside a box: list, wait.
    Port(port::PortArgs),
    /// Snapshots of a box's root filesystem: create, list, restore, delete.
    Snapshot(snapshot::SnapshotArgs),
    /// What changed in a box's root since a snapshot.
    Diff(diff::DiffArgs),
    /// Bases, the read-only templates boxes are cloned from.
    Base(base::BaseArgs),
    /// Data volumes: create, list, show, delete, snapshot, restore, backup, restore-backup.
    Volume(volume::VolumeArgs),
    /// Project users that `exec --user` runs as: create, list, update, delete.
    User(user::UserArgs),
    /// Copy local credentials (codex auth/config, ssh key pair, git config) into a box.
    Inject(inject::InjectArgs),
    /// Check the workspace files (.forkr/*.yaml); offline unless --server.
    Validate(workspace::ValidateArgs),
    /// Show what apply would change on the server to match the workspace files.
    Plan(workspace::PlanArgs),
    /// Change the server to match the workspace files (or run a saved plan).
    Apply(workspace::ApplyArgs),
    /// Delete everything this workspace created (and nothing else).
    Destroy(workspace::DestroyArgs),
    /// Print the JSON Schema of the workspace files or of config.yaml.
    Schema(workspace::SchemaArgs),
    /// Read and write the local setup config (.forkr/config.yaml).
    Config(config::ConfigArgs),
    /// Print the "Using forkr" guide.
    Docs(docs::DocsArgs),
}

/// `-p/--project`: the project for refs that do not name one.
#[derive(Debug, Clone, Default, Args)]
pub struct ProjectOpt {
    /// Project (default: FORKR_PROJECT, the config, the git root's name, then `default`).
    #[arg(short = 'p', long = "project", value_name = "PROJECT")]
    pub project: Option<String>,
}

/// `-j/--json` on commands whose output has a JSON form.
#[derive(Debug, Clone, Copy, Default, Args)]
pub struct JsonOpt {
    /// Print JSON instead of text.
    #[arg(short = 'j', long = "json")]
    pub json: bool,
}

/// `-j/--json` on commands that have no JSON form: accepted so the answer is a clear error rather than
/// "unexpected argument".
#[derive(Debug, Clone, Copy, Default, Args)]
pub struct NoJsonOpt {
    #[arg(short = 'j', long = "json", hide = true)]
    pub json: bool,
}

impl NoJsonOpt {
    /// Fails with `--json is not supported for <what>` when the flag was given.
    pub fn reject(self, what: &str) -> crate::error::Result<()> {
        if self.json {
            return Err(crate::error::CliError::usage(format!("--json is not supported for {what}")));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn clap_definition_is_consistent() {
        Cli::command().debug_assert();
    }

    fn parse(args: &[&str]) -> Result<Cli, clap::Error> {
        Cli::try_parse_from(std::iter::once("4kr").chain(args.iter().copied()))
    }

    #[test]
    fn global_flags_go_before_or_after_the_command() {
        let a = parse(&["--url", "http://a:1", "list"]).unwrap();
        let b = parse(&["list", "--url", "http://a:1"]).unwrap();
        assert_eq!(a.global.url, b.global.url);
        let c = parse(&["--profile", "staging", "show", "web"]).unwrap();
        assert_eq!(c.global.profile.as_deref(), Some("staging"));
    }

    #[test]
    fn aliases() {
        for (alias, expect) in
            [("rm", "Delete"), ("tail", "Logs"), ("get", "Cp"), ("put", "Cp"), ("ls", "List")]
        {
            let args: &[&str] = match alias {
                "rm" => &["rm", "a"],
                "tail" => &["tail", "a", "--pid", "1"],
                "ls" => &["ls"],
                _ => &[alias, "a:/x", "y"],
            };
            let cli = parse(args).unwrap();
            assert!(format!("{:?}", cli.command).starts_with(expect), "{alias}");
        }
    }

    #[test]
    fn invalid_arguments_are_rejected_by_clap() {
        let kind = |args: &[&str]| parse(args).unwrap_err().kind();
        assert_eq!(kind(&["logs", "web"]), clap::error::ErrorKind::MissingRequiredArgument);
        assert_eq!(kind(&["logs", "web", "--pid", "x"]), clap::error::ErrorKind::ValueValidation);
        assert_eq!(kind(&["create", "web", "--port", "0"]), clap::error::ErrorKind::ValueValidation);
        assert_eq!(kind(&["create", "web", "--port", "70000"]), clap::error::ErrorKind::ValueValidation);
        assert_eq!(kind(&["delete"]), clap::error::ErrorKind::MissingRequiredArgument);
        assert_eq!(kind(&["cp", "a:/x"]), clap::error::ErrorKind::MissingRequiredArgument);
        assert_eq!(kind(&["frobnicate"]), clap::error::ErrorKind::InvalidSubcommand);
        assert_eq!(kind(&["config", "set", "profile"]), clap::error::ErrorKind::MissingRequiredArgument);
        assert_eq!(kind(&["snapshot", "create"]), clap::error::ErrorKind::MissingRequiredArgument);
        assert_eq!(kind(&["snapshot", "restore", "web"]), clap::error::ErrorKind::MissingRequiredArgument);
        assert_eq!(kind(&["diff", "file", "web"]), clap::error::ErrorKind::MissingRequiredArgument);
        assert_eq!(kind(&["base", "import", "b"]), clap::error::ErrorKind::MissingRequiredArgument);
        assert_eq!(kind(&["base", "save", "b"]), clap::error::ErrorKind::MissingRequiredArgument);
    }

    #[test]
    fn help_snapshots() {
        let mut root = Cli::command().term_width(100);
        insta::assert_snapshot!("help", root.render_help().to_string());
        let names = [
            "create",
            "exec",
            "delete",
            "cp",
            "logs",
            "update",
            "config",
            "snapshot",
            "snapshot create",
            "diff",
            "diff file",
            "base",
            "base show",
            "base import",
            "base build",
            "base delete",
            "validate",
            "plan",
            "apply",
            "destroy",
            "schema",
            "user",
            "user create",
            "user update",
            "inject",
        ];
        for name in names {
            let mut root = Cli::command().term_width(100);
            root.build();
            let mut sub = &root;
            for word in name.split(' ') {
                sub = sub.find_subcommand(word).unwrap_or_else(|| panic!("{name}"));
            }
            let mut sub = sub.clone().bin_name(format!("4kr {name}"));
            insta::assert_snapshot!(
                format!("help_{}", name.replace(' ', "_")),
                sub.render_help().to_string()
            );
        }
    }
}
