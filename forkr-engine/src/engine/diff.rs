//! `diff status` and `diff file` against a snapshot (document 000). Root-only by construction.
//!
//! `status` takes a read-only snapshot of the live root (O(1)) and compares it with the checkpoint
//! through a btrfs send stream without file data, so the cost follows the size of the change, not of
//! the tree. `file` reads one file from both trees, each resolved inside its own tree.

use std::sync::Arc;

use super::{Engine, blocking, fs};
use crate::api::{ChangeKind, DiffStatus, FileDiff, FileStatus, PathChange};
use crate::storage::diff as sdiff;
use crate::{Error, ErrorKind, Result};

/// Files larger than this are not diffed (document 000: 1 MB).
pub const FILE_DIFF_LIMIT: u64 = 1_000_000;

impl Engine {
    /// `GET …/diff/status?against=`.
    pub async fn diff_status(
        self: &Arc<Self>,
        project: &str,
        name: &str,
        against: Option<&str>,
    ) -> Result<DiffStatus> {
        self.require_box(project, name)?;
        let base = self.diff_base(project, name, against)?;
        let this = self.clone();
        let (p, n, s) = (project.to_owned(), name.to_owned(), base.name.clone());
        let changes = blocking(move || {
            let live = this.scratch_path("diff");
            this.storage.snapshot(&this.layout.root(&p, &n), &live, true)?;
            let result = sdiff::changes(&this.layout.checkpoint(&p, &n, &s), &live);
            let _ = this.storage.delete_subvolume(&live);
            result
        })
        .await?;
        let changes = changes
            .into_iter()
            .map(|c| PathChange {
                path: c.path,
                kind: match c.kind {
                    sdiff::ChangeKind::Added => ChangeKind::Added,
                    sdiff::ChangeKind::Modified => ChangeKind::Modified,
                    sdiff::ChangeKind::Deleted => ChangeKind::Deleted,
                },
            })
            .collect();
        Ok(DiffStatus { against: base.name, changes })
    }

    /// `GET …/diff/file?path=&against=`.
    pub async fn diff_file(
        self: &Arc<Self>,
        project: &str,
        name: &str,
        path: &str,
        against: Option<&str>,
    ) -> Result<FileDiff> {
        if !path.starts_with('/') {
            return Err(Error::bad_request("invalid_path", format!("path {path:?} must be absolute")));
        }
        self.require_box(project, name)?;
        let base = self.diff_base(project, name, against)?;
        let old_root = self.layout.checkpoint(project, name, &base.name);
        let new_root = self.layout.root(project, name);
        let p = path.to_owned();
        let (old, new) =
            blocking(move || Ok((read_for_diff(&old_root, &p)?, read_for_diff(&new_root, &p)?))).await?;
        let (status, diff) = match (old, new) {
            (None, None) => {
                return Err(Error::new(
                    ErrorKind::NotFound,
                    "not_found",
                    format!("{path} exists neither in the box nor in snapshot {:?}", base.name),
                ));
            }
            (None, Some(_)) => (FileStatus::Added, None),
            (Some(_), None) => (FileStatus::Deleted, None),
            (Some(a), Some(b)) if a == b => (FileStatus::Unchanged, None),
            (Some(a), Some(b)) => (FileStatus::Modified, Some(unified(path, &base.name, &a, &b))),
        };
        Ok(FileDiff { path: path.to_owned(), against: base.name, status, diff })
    }
}

/// The file's bytes, `None` when it does not exist; an error over the limit or for a directory.
fn read_for_diff(root: &std::path::Path, path: &str) -> Result<Option<Vec<u8>>> {
    match fs::read_file(root, path, FILE_DIFF_LIMIT) {
        Ok((data, _)) => Ok(Some(data)),
        Err(e) if e.kind() == ErrorKind::NotFound => Ok(None),
        Err(e) if e.kind() == ErrorKind::TooLarge => Err(Error::new(
            ErrorKind::TooLarge,
            "too_large",
            format!("{path} is larger than 1 MB; file diffs are limited to 1 MB"),
        )),
        Err(e) => Err(e),
    }
}

fn unified(path: &str, snapshot: &str, old: &[u8], new: &[u8]) -> String {
    match (std::str::from_utf8(old), std::str::from_utf8(new)) {
        (Ok(a), Ok(b)) => similar::TextDiff::from_lines(a, b)
            .unified_diff()
            .context_radius(3)
            .header(&format!("{path} ({snapshot})"), &format!("{path} (live)"))
            .to_string(),
        _ => format!("Binary files {path} ({snapshot}) and {path} (live) differ\n"),
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn unified_diff_and_binary() {
        let d = super::unified("/etc/x", "v0", b"a\nb\n", b"a\nc\n");
        assert!(d.contains("--- /etc/x (v0)") && d.contains("-b\n") && d.contains("+c\n"), "{d}");
        assert!(super::unified("/x", "v0", &[0xff], &[0xfe]).starts_with("Binary files"));
    }
}
