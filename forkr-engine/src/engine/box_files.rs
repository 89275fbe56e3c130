//! `cp`/`get`/`put`: files in a box's root filesystem and its system volumes (document 002).
//!
//! A path under `/home`, `/box/bin`, `/box/all` or `/box/proj` goes to that system volume; every other
//! path goes to the root subvolume, including paths under a data-volume mount or under `/tmp`, which
//! the live mounts shadow at runtime (the documented data-volume gotcha). Resolution never leaves the
//! chosen tree (see [`super::fs`]).

use std::path::PathBuf;
use std::sync::Arc;

use super::{Engine, blocking, fs};
use crate::Result;

impl Engine {
    /// The host directory acting as `/` for `path`, and the path relative to it.
    fn file_target(&self, project: &str, name: &str, path: &str) -> (PathBuf, String) {
        let mounts: [(&str, PathBuf); 4] = [
            ("/home", self.layout.home(project)),
            ("/box/bin", self.layout.box_bin()),
            ("/box/all", self.layout.box_all()),
            ("/box/proj", self.layout.box_proj(project)),
        ];
        for (prefix, dir) in mounts {
            if let Some(rest) = path.strip_prefix(prefix)
                && (rest.is_empty() || rest.starts_with('/'))
            {
                let rest = if rest.is_empty() { "/".to_owned() } else { rest.to_owned() };
                return (dir, rest);
            }
        }
        (self.layout.root(project, name), path.to_owned())
    }

    /// `GET …/files?path=`: the bytes and mode of a regular file.
    pub async fn read_box_file(
        self: &Arc<Self>,
        project: &str,
        name: &str,
        path: &str,
        limit: u64,
    ) -> Result<(Vec<u8>, u32)> {
        self.require_box(project, name)?;
        let (dir, rel) = self.file_target(project, name, path);
        blocking(move || fs::read_file(&dir, &rel, limit)).await
    }

    /// `PUT …/files?path=&mode=&mkdirs=`: writes a file atomically with the given mode, creating
    /// missing parent directories when `mkdirs` is set.
    pub async fn write_box_file(
        self: &Arc<Self>,
        project: &str,
        name: &str,
        path: &str,
        data: Vec<u8>,
        mode: u32,
        mkdirs: bool,
    ) -> Result<()> {
        self.require_box(project, name)?;
        let (dir, rel) = self.file_target(project, name, path);
        blocking(move || fs::write_file(&dir, &rel, &data, mode, mkdirs)).await
    }

    /// `DELETE …/files?path=`: removes a file (or an empty directory). A missing path is fine.
    pub async fn delete_box_file(self: &Arc<Self>, project: &str, name: &str, path: &str) -> Result<()> {
        self.require_box(project, name)?;
        let (dir, rel) = self.file_target(project, name, path);
        blocking(move || fs::remove(&dir, &rel)).await
    }
}
