//! `forkr-server token create|list|revoke`: project tokens, managed on the server host by whoever
//! can read its data dir (the same people who can read the admin token file).
//!
//! Works on the metadata database directly, so it needs neither the btrfs storage nor a running
//! server; SQLite's locking makes it safe while the server runs.

use std::path::Path;

use anyhow::Context;
use clap::Subcommand;
use forkr_engine::storage::layout::Layout;
use forkr_engine::store::Store;

#[derive(Debug, Subcommand)]
pub enum TokenCommand {
    /// Create a token limited to one project and print it (it is shown only this once; only a
    /// hash is stored).
    Create {
        /// The project the token may use; every other project answers 404, and changing bases
        /// answers 403.
        #[arg(long, short = 'p', value_name = "PROJECT")]
        project: String,
    },
    /// List project tokens: ID PROJECT CREATED.
    #[command(visible_alias = "ls")]
    List,
    /// Revoke the project token with this ID.
    #[command(visible_alias = "rm")]
    Revoke {
        #[arg(value_name = "ID")]
        id: String,
    },
}

fn open(data_dir: &Path) -> anyhow::Result<Store> {
    let layout = Layout::new(data_dir);
    std::fs::create_dir_all(layout.data_dir())
        .with_context(|| format!("creating data dir {}", layout.data_dir().display()))?;
    Store::open(&layout.db()).context("opening the metadata database")
}

/// Runs one `token` subcommand, writing its result to `out`.
pub fn run(data_dir: &Path, cmd: TokenCommand, out: &mut impl std::io::Write) -> anyhow::Result<()> {
    let store = open(data_dir)?;
    match cmd {
        TokenCommand::Create { project } => {
            let (_, token) = store.create_token(&project)?;
            writeln!(out, "{token}")?;
        }
        TokenCommand::List => {
            writeln!(out, "{:<10}{:<30}CREATED", "ID", "PROJECT")?;
            for t in store.list_tokens()? {
                writeln!(out, "{:<10}{:<30}{}", t.id, t.project, t.created_at)?;
            }
        }
        TokenCommand::Revoke { id } => {
            store.revoke_token(&id)?;
            writeln!(out, "{id}: revoked")?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn create_list_revoke() {
        let d = tempfile::tempdir().unwrap();
        let mut out = Vec::new();
        run(d.path(), TokenCommand::Create { project: "alpha".into() }, &mut out).unwrap();
        let token = String::from_utf8(out).unwrap().trim().to_owned();
        assert!(token.starts_with("fkt_"), "{token}");
        let store = open(d.path()).unwrap();
        assert_eq!(store.token_project(&token).unwrap().as_deref(), Some("alpha"));
        let mut out = Vec::new();
        run(d.path(), TokenCommand::List, &mut out).unwrap();
        let list = String::from_utf8(out).unwrap();
        let id = token[4..12].to_owned();
        assert!(list.lines().nth(1).unwrap().starts_with(&format!("{id}  alpha ")), "{list}");
        assert!(!list.contains(&token), "the list shows a token");
        run(d.path(), TokenCommand::Revoke { id: id.clone() }, &mut Vec::new()).unwrap();
        assert_eq!(store.token_project(&token).unwrap(), None);
        assert!(run(d.path(), TokenCommand::Revoke { id }, &mut Vec::new()).is_err());
        assert!(run(d.path(), TokenCommand::Create { project: "Bad_Name".into() }, &mut Vec::new()).is_err());
    }
}
