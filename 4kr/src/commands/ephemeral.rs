//! `-` as a box ref: create a throwaway box, run the command in it, and always force-delete it
//! afterwards, also when the command fails or the user interrupts.

use std::time::{SystemTime, UNIX_EPOCH};

use forkr_engine::api::CreateBox;

use crate::ctx::{BoxId, Ctx};
use crate::error::{CliError, Result};
use crate::session;

/// `ephemeral-<pid>-<millis>`, as document 002 names them.
pub fn ephemeral_name(pid: u32, millis: u128) -> String {
    format!("ephemeral-{pid}-{millis}")
}

fn fresh_name() -> String {
    let millis = SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_millis()).unwrap_or(0);
    ephemeral_name(std::process::id(), millis)
}

/// Creates an ephemeral box in `project`, prints `ephemeral fork: <name>` on stderr, runs `work` on it
/// and deletes it with force whatever the outcome. SIGINT/SIGTERM/SIGHUP stop the work (exit code
/// 128+signal) but not the cleanup.
pub async fn run<F>(ctx: &Ctx, project: String, work: F) -> Result<i32>
where
    F: AsyncFnOnce(&BoxId) -> Result<i32>,
{
    let client = ctx.client()?;
    let id = BoxId { project, name: fresh_name() };
    let mut attempted = false;
    let interrupt = session::interrupted();
    tokio::pin!(interrupt);
    let outcome = tokio::select! {
        r = async {
            attempted = true;
            client.create(&id.project, &CreateBox { name: id.name.clone(), ..Default::default() }).await?;
            eprintln!("ephemeral fork: {}", id.name);
            work(&id).await
        } => r,
        code = &mut interrupt => Ok(code),
    };
    if !attempted {
        return outcome;
    }
    let cleanup = client.delete(&id, true).await;
    match (outcome, cleanup) {
        (outcome, Ok(_)) => outcome,
        (Ok(_), Err(e)) => Err(CliError::from(forkr_engine::Error::new(
            e.kind(),
            e.code().to_owned(),
            format!("could not delete ephemeral box {}: {}", id.name, e.message()),
        ))
        .with_help(format!("delete it with `4kr delete --force {}`", id))),
        (Err(work_err), Err(e)) => {
            // The command's own error matters more; the leftover box is still worth a warning.
            if work_err.code() != "unreachable" {
                eprintln!("warning: could not delete ephemeral box {}: {}", id, e.message());
            }
            Err(work_err)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_valid_box_names() {
        let n = ephemeral_name(4242, 1_767_000_000_123);
        assert_eq!(n, "ephemeral-4242-1767000000123");
        forkr_engine::name::validate(forkr_engine::name::NameKind::Box, &n).unwrap();
        forkr_engine::name::validate(forkr_engine::name::NameKind::Box, &fresh_name()).unwrap();
    }
}
