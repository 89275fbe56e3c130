//! `sync` entries: a local folder mirrored into a box, for `4kr apply --watch`.
//!
//! A [`Mirror`] first uploads every file the entry's include/exclude patterns let through (a full
//! sync), then, for each debounced batch of changed paths, uploads what is new or changed and
//! deletes in the box what was deleted locally. It works from the state of each path when the batch
//! is handled, not from the event kinds, so editors that save through a temporary file and a rename
//! need no special case. It remembers the size and modification time of what it uploaded, so a
//! repeated full sync (after each re-apply) only sends what changed, and deleting a local folder
//! deletes exactly the files it had mirrored from it.
//!
//! Only regular files are mirrored; symbolic links and special files are skipped. Paths are sent as
//! UTF-8; a file name that is not UTF-8 is skipped with a warning.

use std::collections::{BTreeMap, BTreeSet};
use std::os::unix::fs::PermissionsExt as _;
use std::path::{Path, PathBuf};
use std::time::SystemTime;

use forkr_engine::spec::{Sync, SyncFilter};
use forkr_engine::{Error, ErrorKind};

use super::api;
use crate::client::Client;
use crate::ctx::BoxId;
use crate::error::{CliError, Result};

/// What a sync pass did.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Changes {
    /// Box paths written.
    pub uploaded: Vec<String>,
    /// Box paths removed.
    pub deleted: Vec<String>,
}

impl Changes {
    pub fn is_empty(&self) -> bool {
        self.uploaded.is_empty() && self.deleted.is_empty()
    }
}

/// One `sync` entry of one box.
#[derive(Debug)]
pub struct Mirror {
    pub id: BoxId,
    pub from: PathBuf,
    pub to: String,
    filter: SyncFilter,
    /// Mirrored files by path relative to `from`: size and modification time when uploaded.
    sent: BTreeMap<PathBuf, (u64, Option<SystemTime>)>,
}

/// The box path of `rel` under `to`, or `None` when `rel` is not UTF-8.
fn box_path(to: &str, rel: &Path) -> Option<String> {
    let mut out = to.trim_end_matches('/').to_owned();
    for c in rel.components() {
        out.push('/');
        out.push_str(c.as_os_str().to_str()?);
    }
    Some(out)
}

fn stamp(m: &std::fs::Metadata) -> (u64, Option<SystemTime>) {
    (m.len(), m.modified().ok())
}

impl Mirror {
    pub fn new(id: BoxId, sync: &Sync) -> Result<Mirror> {
        let filter = sync.filter().map_err(|e| {
            CliError::from(Error::bad_request(
                "invalid_pattern",
                format!("sync of {} into {}: {e}", sync.from.display(), id),
            ))
        })?;
        Ok(Mirror { id, from: sync.from.clone(), to: sync.to.clone(), filter, sent: BTreeMap::new() })
    }

    /// Whether this entry is the same as `sync` for box `id` (then it keeps what it sent).
    pub fn is(&self, id: &BoxId, sync: &Sync) -> bool {
        self.id == *id && self.from == sync.from && self.to == sync.to
    }

    /// Forgets what was sent: the box's root was made anew, so the next full sync sends all.
    pub fn reset(&mut self) {
        self.sent.clear();
    }

    /// Whether `path` (absolute) is inside the mirrored folder.
    pub fn covers(&self, path: &Path) -> bool {
        path.starts_with(&self.from)
    }

    /// `web:/srv/site`, for messages.
    pub fn label(&self) -> String {
        format!("{}:{}", self.id, self.to)
    }

    /// The files under `dir` (absolute) that the patterns let through, relative to `from`.
    fn walk(&self, dir: &Path, out: &mut Vec<(PathBuf, std::fs::Metadata)>) -> std::io::Result<()> {
        let entries = match std::fs::read_dir(dir) {
            Ok(e) => e,
            // Gone while walking: the next batch of events handles it.
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
            Err(e) => return Err(e),
        };
        for entry in entries {
            let entry = entry?;
            let path = entry.path();
            let Ok(meta) = std::fs::symlink_metadata(&path) else { continue };
            if meta.is_dir() {
                self.walk(&path, out)?;
            } else if meta.is_file()
                && let Ok(rel) = path.strip_prefix(&self.from)
                && self.filter.matches(rel)
            {
                out.push((rel.to_path_buf(), meta));
            }
        }
        Ok(())
    }

    async fn upload(
        &mut self,
        c: &Client,
        rel: &Path,
        meta: &std::fs::Metadata,
        changes: &mut Changes,
    ) -> Result<()> {
        if self.sent.get(rel) == Some(&stamp(meta)) {
            return Ok(());
        }
        let Some(target) = box_path(&self.to, rel) else {
            eprintln!("warning: sync skips {}: its name is not UTF-8", rel.display());
            return Ok(());
        };
        let local = self.from.join(rel);
        let body = match tokio::fs::read(&local).await {
            Ok(b) => b,
            // Deleted since the event: the deletion arrives as its own event.
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
            Err(e) => return Err(CliError::io(format!("cannot read {}", local.display()), e)),
        };
        api::put_file(c, &self.id, &target, meta.permissions().mode() & 0o7777, body).await?;
        self.sent.insert(rel.to_path_buf(), stamp(meta));
        changes.uploaded.push(target);
        Ok(())
    }

    async fn remove(&mut self, c: &Client, rel: &Path, changes: &mut Changes) -> Result<()> {
        // Files mirrored from under `rel` (when it was a folder), deepest first, then `rel` itself.
        let under: Vec<PathBuf> =
            self.sent.keys().filter(|p| p.starts_with(rel) && *p != rel).cloned().collect();
        for p in under.iter().rev() {
            if let Some(target) = box_path(&self.to, p) {
                api::delete_file(c, &self.id, &target).await?;
                changes.deleted.push(target);
            }
            self.sent.remove(p);
        }
        let was_sent = self.sent.remove(rel).is_some();
        if !(was_sent || !under.is_empty() || self.filter.matches(rel)) {
            return Ok(());
        }
        let Some(target) = box_path(&self.to, rel) else { return Ok(()) };
        match api::delete_file(c, &self.id, &target).await {
            Ok(()) => {
                if was_sent || under.is_empty() {
                    changes.deleted.push(target);
                }
                Ok(())
            }
            // A folder the box has its own files in stays.
            Err(e) if e.kind() == ErrorKind::BadRequest && e.code() == "not_empty" => Ok(()),
            Err(e) => Err(e),
        }
    }

    /// Uploads every file that is new or changed since it was last sent.
    pub async fn full(&mut self, c: &Client) -> Result<Changes> {
        let mut files = Vec::new();
        let from = self.from.clone();
        self.walk(&from, &mut files)
            .map_err(|e| CliError::io(format!("cannot read the sync folder {}", from.display()), e))?;
        let mut changes = Changes::default();
        let present: BTreeSet<PathBuf> = files.iter().map(|(p, _)| p.clone()).collect();
        for (rel, meta) in files {
            self.upload(c, &rel, &meta, &mut changes).await?;
        }
        // Files sent earlier and deleted while nothing watched (between two applies).
        let gone: Vec<PathBuf> = self.sent.keys().filter(|p| !present.contains(*p)).cloned().collect();
        for rel in gone {
            self.remove(c, &rel, &mut changes).await?;
        }
        Ok(changes)
    }

    /// Mirrors a batch of changed paths (absolute; those outside `from` are ignored).
    pub async fn changed(&mut self, c: &Client, paths: &BTreeSet<PathBuf>) -> Result<Changes> {
        let mut changes = Changes::default();
        for path in paths {
            let Ok(rel) = path.strip_prefix(&self.from) else { continue };
            if rel.as_os_str().is_empty() {
                continue;
            }
            match std::fs::symlink_metadata(path) {
                Ok(m) if m.is_file() => {
                    if self.filter.matches(rel) {
                        self.upload(c, rel, &m, &mut changes).await?;
                    }
                }
                Ok(m) if m.is_dir() => {
                    // A folder created or moved in: its files may predate the watch on it.
                    let mut files = Vec::new();
                    self.walk(path, &mut files)
                        .map_err(|e| CliError::io(format!("cannot read {}", path.display()), e))?;
                    for (rel, meta) in files {
                        self.upload(c, &rel, &meta, &mut changes).await?;
                    }
                }
                Ok(_) => {}
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                    self.remove(c, rel, &mut changes).await?
                }
                Err(e) => return Err(CliError::io(format!("cannot read {}", path.display()), e)),
            }
        }
        Ok(changes)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn box_paths_join_with_slashes() {
        assert_eq!(box_path("/srv/site", Path::new("a/b.html")).as_deref(), Some("/srv/site/a/b.html"));
        assert_eq!(box_path("/srv/site/", Path::new("x")).as_deref(), Some("/srv/site/x"));
        use std::os::unix::ffi::OsStrExt as _;
        let bad = Path::new(std::ffi::OsStr::from_bytes(b"bad\xff"));
        assert_eq!(box_path("/srv", bad), None);
    }

    #[test]
    fn walk_honours_the_patterns_and_skips_links() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        std::fs::create_dir_all(root.join("sub/deep")).unwrap();
        std::fs::write(root.join("index.html"), "x").unwrap();
        std::fs::write(root.join("notes.tmp"), "x").unwrap();
        std::fs::write(root.join("sub/deep/page.html"), "x").unwrap();
        std::os::unix::fs::symlink("index.html", root.join("link.html")).unwrap();
        let sync = Sync {
            from: root.to_path_buf(),
            to: "/srv/site".into(),
            include: vec![],
            exclude: vec!["**/*.tmp".into()],
        };
        let m = Mirror::new(BoxId { project: "p".into(), name: "web".into() }, &sync).unwrap();
        let mut files = Vec::new();
        m.walk(root, &mut files).unwrap();
        let mut names: Vec<String> = files.iter().map(|(p, _)| p.display().to_string()).collect();
        names.sort();
        assert_eq!(names, vec!["index.html", "sub/deep/page.html"]);
        assert!(m.covers(&root.join("sub/x")) && !m.covers(Path::new("/elsewhere")));
        assert_eq!(m.label(), "p:web:/srv/site");
    }
}
