//! `config set/get/list/unset/path/profiles` on the local setup config.

use clap::{Args, Subcommand};

use crate::ctx::Ctx;
use crate::error::{CliError, Result};
use crate::output;
use crate::setup::{Key, SetupConfig};
use crate::target;

#[derive(Debug, Args)]
pub struct ConfigArgs {
    #[command(subcommand)]
    pub command: ConfigCommand,
}

#[derive(Debug, Subcommand)]
pub enum ConfigCommand {
    /// Store a value: profile, env, url (api_url), token, forkr_domain, ssh_host, insecure, ip,
    /// project, or profiles.<name>.{url,token,ssh_host,insecure,ip,forkr_domain}.
    Set {
        #[arg(value_name = "KEY")]
        key: String,
        #[arg(value_name = "VALUE")]
        value: String,
    },
    /// Print a stored value.
    Get {
        #[arg(value_name = "KEY")]
        key: String,
    },
    /// Print every stored value (tokens masked).
    List,
    /// Remove a stored value.
    Unset {
        #[arg(value_name = "KEY")]
        key: String,
    },
    /// Print the config file's path.
    Path,
    /// List the profiles from the config and from FORKR_PROFILE_<NAME>_URL variables.
    Profiles,
}

/// Tokens are shown only by `config get token`, never in listings.
fn masked(key: &Key, value: &str) -> String {
    let is_token = matches!(key, Key::Top("token") | Key::Profile(_, "token"));
    if !is_token {
        return value.to_owned();
    }
    let tail: String = value.chars().rev().take(4).collect::<Vec<_>>().into_iter().rev().collect();
    if value.chars().count() > 8 { format!("****{tail}") } else { "****".to_owned() }
}

pub fn run(ctx: &Ctx, a: ConfigArgs) -> Result<i32> {
    let path = ctx.setup_path();
    match a.command {
        ConfigCommand::Path => println!("{}", path.display()),
        ConfigCommand::Set { key, value } => {
            let key = Key::parse(&key)?;
            let mut config = SetupConfig::load(&path)?;
            config.set(&key, Some(&value))?;
            config.save(&path)?;
        }
        ConfigCommand::Unset { key } => {
            let key = Key::parse(&key)?;
            let mut config = SetupConfig::load(&path)?;
            if config.set(&key, None)? {
                config.save(&path)?;
            }
        }
        ConfigCommand::Get { key } => {
            let key = Key::parse(&key)?;
            let config = SetupConfig::load(&path)?;
            match config.get(&key) {
                Some(v) => println!("{v}"),
                None => {
                    return Err(CliError::config(format!("{key} is not set in {}", path.display()))
                        .with_help(format!("set it with `4kr config set {key} <value>`")));
                }
            }
        }
        ConfigCommand::List => {
            let config = SetupConfig::load(&path)?;
            for (key, value) in config.entries() {
                println!("{key}={}", masked(&key, &value));
            }
        }
        ConfigCommand::Profiles => {
            let (path, config) = ctx.setup()?;
            let profiles = target::known_profiles(&ctx.global.flags(), &ctx.env, config, path);
            let rows: Vec<Vec<String>> = profiles
                .iter()
                .map(|p| {
                    vec![
                        if p.selected { format!("* {}", p.name) } else { format!("  {}", p.name) },
                        p.url.clone().unwrap_or_else(|| "-".to_owned()),
                        p.defined_in.join(","),
                    ]
                })
                .collect();
            print!("{}", output::table(&["  PROFILE", "URL", "FROM"], &rows));
        }
    }
    Ok(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_are_masked() {
        assert_eq!(masked(&Key::Top("token"), "abcdefghijkl"), "****ijkl");
        assert_eq!(masked(&Key::Profile("x".into(), "token"), "short"), "****");
        assert_eq!(masked(&Key::Top("api_url"), "http://x"), "http://x");
    }
}
