//! Where everything lives under the data dir (document 001's layers).
//!
//! ```text
//! <data>/forkr.db            metadata (SQLite)
//! <data>/token               API bearer token (0600)
//! <data>/forkr.img           btrfs image, only when <data> is not on btrfs
//! <data>/fs/                 the btrfs filesystem root (mount point of the image, or a plain dir)
//!   bases/<version>                              read-only base subvolumes
//!   roots/<project>/<box>                        writable box roots
//!   checkpoints/<project>/<box>/<snapshot>       read-only root snapshots
//!   volumes/<project>/<volume>                   data volumes
//!   volume-checkpoints/<project>/<volume>/<snap> read-only volume snapshots
//!   volume-backups/<project>/<volume>/<name>.tar.gz
//!   system/box-bin, system/box-all               global system volumes (/box/bin, /box/all)
//!   system/projects/<project>/box-proj           per-project /box/proj
//!   system/projects/<project>/home               per-project /home
//!   tmp/                                         scratch subvolumes (diff, import) removed on start
//! <data>/run/<project>/<box>/                 host-side runtime files: hosts, resolv.conf,
//!                                              boxes-env, console.log, bg/<pid>.log
//! ```

use std::path::{Path, PathBuf};

/// All paths, derived from the data dir. Cheap to clone.
#[derive(Debug, Clone)]
pub struct Layout {
    data_dir: PathBuf,
}

impl Layout {
    pub fn new(data_dir: impl Into<PathBuf>) -> Self {
        Layout { data_dir: data_dir.into() }
    }
    pub fn data_dir(&self) -> &Path {
        &self.data_dir
    }
    pub fn db(&self) -> PathBuf {
        self.data_dir.join("forkr.db")
    }
    pub fn token(&self) -> PathBuf {
        self.data_dir.join("token")
    }
    pub fn image(&self) -> PathBuf {
        self.data_dir.join("forkr.img")
    }
    pub fn fs_root(&self) -> PathBuf {
        self.data_dir.join("fs")
    }
    pub fn bases(&self) -> PathBuf {
        self.fs_root().join("bases")
    }
    pub fn base(&self, version: &str) -> PathBuf {
        self.bases().join(version)
    }
    pub fn roots(&self, project: &str) -> PathBuf {
        self.fs_root().join("roots").join(project)
    }
    pub fn root(&self, project: &str, name: &str) -> PathBuf {
        self.roots(project).join(name)
    }
    pub fn checkpoints(&self, project: &str, name: &str) -> PathBuf {
        self.fs_root().join("checkpoints").join(project).join(name)
    }
    pub fn checkpoint(&self, project: &str, name: &str, snapshot: &str) -> PathBuf {
        self.checkpoints(project, name).join(snapshot)
    }
    pub fn volumes(&self, project: &str) -> PathBuf {
        self.fs_root().join("volumes").join(project)
    }
    pub fn volume(&self, project: &str, volume: &str) -> PathBuf {
        self.volumes(project).join(volume)
    }
    pub fn volume_checkpoints(&self, project: &str, volume: &str) -> PathBuf {
        self.fs_root().join("volume-checkpoints").join(project).join(volume)
    }
    pub fn volume_backups(&self, project: &str, volume: &str) -> PathBuf {
        self.fs_root().join("volume-backups").join(project).join(volume)
    }
    pub fn box_bin(&self) -> PathBuf {
        self.fs_root().join("system").join("box-bin")
    }
    pub fn box_all(&self) -> PathBuf {
        self.fs_root().join("system").join("box-all")
    }
    pub fn box_proj(&self, project: &str) -> PathBuf {
        self.fs_root().join("system").join("projects").join(project).join("box-proj")
    }
    pub fn home(&self, project: &str) -> PathBuf {
        self.fs_root().join("system").join("projects").join(project).join("home")
    }
    pub fn scratch(&self) -> PathBuf {
        self.fs_root().join("tmp")
    }
    pub fn run_dir(&self, project: &str, name: &str) -> PathBuf {
        self.data_dir.join("run").join(project).join(name)
    }
}
