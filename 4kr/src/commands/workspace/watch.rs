//! `4kr apply --watch`: apply, then keep the server and the boxes in step with the local files.
//!
//! One notify watcher covers `.forkr/` (not recursively) and every `sync` folder (recursively).
//! Events are collected until the files have been quiet for [`QUIET`] (at most [`MAX_BATCH`]), so an
//! editor's burst of writes or a `git checkout` becomes one batch. A batch that touches a workspace
//! file re-runs plan and apply (broken files print their diagnostics and the watch goes on); a batch
//! inside a sync folder is mirrored into its box ([`super::sync`]). After every apply, the mirrors
//! are matched to the `sync` entries in the files, and each does a full sync, which only sends what
//! changed unless the box's root filesystem was made anew.
//!
//! Ctrl-C ends the watch (exit 0); during an apply it first lets running actions finish.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::time::Duration;

use notify::{EventKind, RecursiveMode, Watcher as _};
use tokio::sync::mpsc;

use super::lock::Stop;
use super::sync::Mirror;
use super::{Ran, Run};
use crate::ctx::BoxId;
use crate::error::{CliError, Result};
use forkr_engine::spec::{WORKSPACE_DIR, Workspace};
use forkr_engine::{Error, ErrorKind};

/// How long the files must be quiet before a batch is handled.
const QUIET: Duration = Duration::from_millis(150);
/// The longest a batch collects while events keep coming.
const MAX_BATCH: Duration = Duration::from_secs(2);

/// Whether an event can change a file's content or existence (opening and reading cannot).
fn relevant(kind: &EventKind) -> bool {
    use notify::event::{AccessKind, AccessMode};
    match kind {
        EventKind::Access(AccessKind::Close(AccessMode::Write)) => true,
        EventKind::Access(_) => false,
        _ => true,
    }
}

/// Whether `path` is a workspace file (`.forkr/*.yaml` but `config.yaml`).
fn is_workspace_file(root: &Path, path: &Path) -> bool {
    let dir = root.join(WORKSPACE_DIR);
    if path.parent() != Some(dir.as_path()) {
        return false;
    }
    let Some(name) = path.file_name().and_then(|n| n.to_str()) else { return false };
    (name.ends_with(".yaml") || name.ends_with(".yml"))
        && !name.starts_with('.')
        && name != "config.yaml"
        && name != "config.yml"
}

/// The notify watcher and the paths it watches.
struct Watch {
    watcher: notify::RecommendedWatcher,
    rx: mpsc::UnboundedReceiver<PathBuf>,
    watched: Vec<PathBuf>,
}

impl Watch {
    fn new() -> Result<Watch> {
        let (tx, rx) = mpsc::unbounded_channel();
        let watcher = notify::recommended_watcher(move |res: notify::Result<notify::Event>| {
            if let Ok(ev) = res
                && relevant(&ev.kind)
            {
                for p in ev.paths {
                    let _ = tx.send(p);
                }
            }
        })
        .map_err(|e| watch_error("cannot start watching files", e))?;
        Ok(Watch { watcher, rx, watched: Vec::new() })
    }

    /// Watches exactly `.forkr/` and the mirrors' folders.
    fn set(&mut self, root: &Path, mirrors: &[Mirror]) -> Result<()> {
        let mut want: Vec<(PathBuf, RecursiveMode)> =
            vec![(root.join(WORKSPACE_DIR), RecursiveMode::NonRecursive)];
        for m in mirrors {
            if !want.iter().any(|(p, _)| *p == m.from) {
                want.push((m.from.clone(), RecursiveMode::Recursive));
            }
        }
        for old in std::mem::take(&mut self.watched) {
            let _ = self.watcher.unwatch(&old);
        }
        for (path, mode) in want {
            if let Err(e) = self.watcher.watch(&path, mode) {
                // A sync folder that does not exist yet is not fatal: the files may create it.
                eprintln!("warning: cannot watch {}: {e}", path.display());
                continue;
            }
            self.watched.push(path);
        }
        Ok(())
    }

    /// The next batch of changed paths; `None` when the watcher stopped.
    async fn batch(&mut self) -> Option<BTreeSet<PathBuf>> {
        let first = self.rx.recv().await?;
        let mut paths = BTreeSet::from([first]);
        let deadline = tokio::time::Instant::now() + MAX_BATCH;
        loop {
            let quiet = tokio::time::Instant::now() + QUIET;
            match tokio::time::timeout_at(quiet.min(deadline), self.rx.recv()).await {
                Ok(Some(p)) => {
                    paths.insert(p);
                }
                Ok(None) | Err(_) => return Some(paths),
            }
        }
    }
}

fn watch_error(what: &str, e: notify::Error) -> CliError {
    CliError::from(Error::new(ErrorKind::Internal, "watch_failed", format!("{what}: {e}")))
        .with_help("on Linux, raise fs.inotify.max_user_watches if the folders are large")
}

/// Matches the mirrors to the files' `sync` entries: unchanged entries keep what they sent, boxes
/// with a new root send everything again.
fn reconcile(mirrors: Vec<Mirror>, ws: &Workspace, new_roots: &[String]) -> Result<Vec<Mirror>> {
    let mut old = mirrors;
    let mut out = Vec::new();
    for b in ws.boxes.values() {
        let id = BoxId { project: ws.project.clone(), name: b.name.clone() };
        for s in &b.sync {
            let mut m = match old.iter().position(|m| m.is(&id, s)) {
                Some(i) => old.swap_remove(i),
                None => Mirror::new(id.clone(), s)?,
            };
            if new_roots.contains(&b.name) {
                m.reset();
            }
            out.push(m);
        }
    }
    Ok(out)
}

fn print_changes(m: &Mirror, changes: &super::sync::Changes) {
    for p in &changes.uploaded {
        println!("sync {}: {p} updated", m.id);
    }
    for p in &changes.deleted {
        println!("sync {}: {p} deleted", m.id);
    }
}

/// Runs the watch until Ctrl-C.
pub(super) async fn watch(run: &Run<'_>) -> Result<i32> {
    let c = run.client;
    let mut watch = Watch::new()?;
    let mut mirrors: Vec<Mirror> = Vec::new();
    let mut first = true;
    let mut ctrl_c = std::pin::pin!(tokio::signal::ctrl_c());
    loop {
        // Apply (the first run asks as a plain apply does; later runs follow edits made while
        // watching, so they do not ask).
        let approve = Run { auto_approve: run.auto_approve || !first, ..run.clone() };
        let stop = Stop::default();
        match approve.once(&stop).await {
            Ok(Ran::NoChanges(ws)) => mirrors = reconcile(mirrors, &ws, &[])?,
            Ok(Ran::Applied { ws, new_roots, .. }) => mirrors = reconcile(mirrors, &ws, &new_roots)?,
            Ok(Ran::Declined) if first => return Ok(1),
            Ok(Ran::Invalid | Ran::Declined) => {}
            Err(e) if first && e.code() != "apply_failed" => return Err(e),
            Err(e) => eprintln!("{}", crate::error::render(e)),
        }
        if stop.reason().is_some_and(|r| r.starts_with("interrupted")) {
            return Ok(0);
        }
        first = false;
        for m in &mut mirrors {
            match m.full(c).await {
                Ok(changes) if !changes.is_empty() => println!(
                    "sync {}: {} file(s) updated, {} deleted",
                    m.label(),
                    changes.uploaded.len(),
                    changes.deleted.len()
                ),
                Ok(_) => {}
                Err(e) => eprintln!("sync {}: {}", m.label(), crate::error::render(e)),
            }
        }
        watch.set(&run.at.root, &mirrors)?;
        println!(
            "\nWatching {WORKSPACE_DIR}/*.yaml{} for changes; press Ctrl-C to stop.",
            match mirrors.len() {
                0 => String::new(),
                1 => " and 1 sync folder".to_owned(),
                n => format!(" and {n} sync folders"),
            }
        );

        // Mirror sync changes until a workspace file changes.
        loop {
            let batch = tokio::select! {
                b = watch.batch() => b,
                _ = &mut ctrl_c => return Ok(0),
            };
            let Some(batch) = batch else {
                return Err(CliError::from(Error::internal("the file watcher stopped")));
            };
            if batch.iter().any(|p| is_workspace_file(&run.at.root, p)) {
                println!("\nThe workspace files changed; planning again.");
                break;
            }
            for m in &mut mirrors {
                let mine: BTreeSet<PathBuf> = batch.iter().filter(|p| m.covers(p)).cloned().collect();
                if mine.is_empty() {
                    continue;
                }
                match m.changed(c, &mine).await {
                    Ok(changes) => print_changes(m, &changes),
                    Err(e) => eprintln!("sync {}: {}", m.label(), crate::error::render(e)),
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn workspace_files_are_recognised() {
        let root = Path::new("/w");
        assert!(is_workspace_file(root, Path::new("/w/.forkr/boxes.yaml")));
        assert!(is_workspace_file(root, Path::new("/w/.forkr/more.yml")));
        assert!(!is_workspace_file(root, Path::new("/w/.forkr/config.yaml")));
        assert!(!is_workspace_file(root, Path::new("/w/.forkr/.boxes.yaml.swp")));
        assert!(!is_workspace_file(root, Path::new("/w/.forkr/4913")));
        assert!(!is_workspace_file(root, Path::new("/w/site/boxes.yaml")));
    }

    #[test]
    fn reads_are_not_changes() {
        use notify::event::{AccessKind, AccessMode, CreateKind};
        assert!(!relevant(&EventKind::Access(AccessKind::Open(AccessMode::Read))));
        assert!(relevant(&EventKind::Access(AccessKind::Close(AccessMode::Write))));
        assert!(relevant(&EventKind::Create(CreateKind::File)));
    }

    /// A real inotify watcher: a burst of writes arrives as one batch, and a later write as the next.
    #[tokio::test]
    async fn bursts_are_debounced_into_one_batch() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        std::fs::create_dir_all(root.join(".forkr")).unwrap();
        let mut w = Watch::new().unwrap();
        w.set(root, &[]).unwrap();
        for i in 0..5 {
            std::fs::write(root.join(".forkr/a.yaml"), format!("boxes: {{}} # {i}\n")).unwrap();
        }
        let batch = tokio::time::timeout(Duration::from_secs(5), w.batch()).await.unwrap().unwrap();
        assert!(batch.contains(&root.join(".forkr/a.yaml")), "{batch:?}");
        std::fs::write(root.join(".forkr/b.yaml"), "boxes: {}\n").unwrap();
        let batch = tokio::time::timeout(Duration::from_secs(5), w.batch()).await.unwrap().unwrap();
        assert_eq!(batch, BTreeSet::from([root.join(".forkr/b.yaml")]));
    }
}
