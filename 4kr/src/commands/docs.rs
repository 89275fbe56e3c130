//! `docs`: the "Using forkr" guide, compiled into the binary so it always matches this version.

use clap::Args;

use crate::error::Result;

/// The guide's text.
pub const GUIDE: &str = include_str!("guide.md");

#[derive(Debug, Args)]
pub struct DocsArgs {}

pub fn run(_: DocsArgs) -> Result<i32> {
    print!("{GUIDE}");
    Ok(0)
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory as _;

    /// Every command the guide shows as `4kr <cmd>` exists, so the guide cannot drift from the CLI.
    #[test]
    fn guide_mentions_only_real_commands() {
        let cli = crate::cli::Cli::command();
        let known: Vec<String> = cli
            .get_subcommands()
            .flat_map(|s| {
                std::iter::once(s.get_name().to_owned()).chain(s.get_all_aliases().map(str::to_owned))
            })
            .collect();
        let mut seen = 0;
        for text in GUIDE.split("4kr ").skip(1) {
            let mut words = text.split_whitespace();
            let cmd: String =
                words.next().unwrap_or_default().chars().take_while(|c| c.is_ascii_lowercase()).collect();
            if cmd.is_empty() {
                continue;
            }
            seen += 1;
            assert!(known.contains(&cmd), "the guide uses `4kr {cmd}`, which does not exist");
            // Command groups (snapshot, diff, base, config): the next word is one of their subcommands.
            let group = cli.get_subcommands().find(|s| s.get_name() == cmd);
            if let Some(group) = group.filter(|g| g.has_subcommands()) {
                let sub = words.next().unwrap_or_default();
                assert!(
                    group
                        .get_subcommands()
                        .any(|s| s.get_name() == sub || s.get_all_aliases().any(|a| a == sub)),
                    "the guide uses `4kr {cmd} {sub}`, which does not exist"
                );
            }
        }
        assert!(seen > 20, "the guide shows commands");
        for doc_error in ["--base cannot be used with --fork", "--json is not supported in foreground mode"] {
            assert!(GUIDE.contains(doc_error), "{doc_error}");
        }
    }
}
