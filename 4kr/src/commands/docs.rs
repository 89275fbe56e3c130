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
        for word in GUIDE.split("4kr ").skip(1) {
            let cmd: String = word.chars().take_while(|c| c.is_ascii_lowercase()).collect();
            if cmd.is_empty() {
                continue;
            }
            seen += 1;
            assert!(known.contains(&cmd), "the guide uses `4kr {cmd}`, which does not exist");
        }
        assert!(seen > 20, "the guide shows commands");
        for doc_error in ["--base cannot be used with --fork", "--json is not supported in foreground mode"] {
            assert!(GUIDE.contains(doc_error), "{doc_error}");
        }
    }
}
