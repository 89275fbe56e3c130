//! `console`: an interactive terminal (a PTY) in a box over the `…/console` WebSocket.

use clap::Args;

use crate::cli::{NoJsonOpt, ProjectOpt};
use crate::commands::ephemeral;
use crate::ctx::{BoxId, BoxSel, Ctx};
use crate::error::Result;
use crate::{session, term};

#[derive(Debug, Args)]
pub struct ConsoleArgs {
    /// The box: name, project:name, `.`, or `-` for a throwaway box.
    #[arg(value_name = "BOX")]
    pub target: String,
    #[command(flatten)]
    pub project: ProjectOpt,
    #[command(flatten)]
    pub json: NoJsonOpt,
}

/// The console route with the initial terminal size (the server picks a default without one).
pub fn console_path(size: Option<(u16, u16)>) -> String {
    match size {
        Some((rows, cols)) => format!("/console?rows={rows}&cols={cols}"),
        None => "/console".to_owned(),
    }
}

pub async fn console(ctx: &Ctx, a: ConsoleArgs) -> Result<i32> {
    a.json.reject("console")?;
    match ctx.resolve(&a.target, &a.project)? {
        BoxSel::Named(id) => attach(ctx, &id).await,
        BoxSel::Ephemeral { project } => {
            ephemeral::run(ctx, project, async |id: &BoxId| attach(ctx, id).await).await
        }
    }
}

/// Raw mode only when this is a real terminal; piped input still works (useful for scripts and tests).
async fn attach(ctx: &Ctx, id: &BoxId) -> Result<i32> {
    let tty = term::interactive();
    let size = if tty { term::size() } else { None };
    let ws = ctx.client()?.websocket(id, &console_path(size)).await?;
    session::run(ws, None, tty).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn path_carries_the_size() {
        assert_eq!(console_path(Some((40, 120))), "/console?rows=40&cols=120");
        assert_eq!(console_path(None), "/console");
    }
}
