//! Data volumes: per-project btrfs subvolumes under `volumes/<project>/<name>`, bind-mounted into
//! boxes with `create --data NAME=/path[:ro|:rw]` (document 002). They are separate subvolumes from
//! every root, so root snapshots, bases, diffs and box delete never see or touch their data
//! (documents 000 and 004).
//!
//! - Snapshots (`volume-checkpoints/<project>/<volume>/<name>`) are read-only btrfs snapshots, O(1);
//!   restore makes a writable snapshot of one and swaps it in by rename.
//! - Backups (`volume-backups/<project>/<volume>/<name>.tar.gz`) are plain files that outlive the
//!   volume; restoring one recreates the volume when it is gone. The archive is written from a
//!   read-only snapshot, so it is a point-in-time copy even while boxes keep writing.
//! - A size limit is a btrfs qgroup limit on the volume's subvolume (simple quotas, turned on the
//!   first time a limit is set; see [`crate::storage::btrfs`]); where the kernel cannot enforce it,
//!   the size is recorded and reported with `size_enforced: false`.
//!
//! Restores are refused while a running box mounts the volume (409 `volume_in_use`): a live bind
//! mount pins the old subvolume, so the box would silently keep the old data. Stopping boxes on the
//! user's behalf was the alternative; refusing is the safer one, and the message names the boxes.
//!
//! Locks: each volume has an async lock (in the engine's lock map, under a key no box can have).
//! Whoever needs box locks and volume locks takes the box locks first: box create and box start
//! hold the box lock and then lock the volumes they mount (start holds them while it mounts, so a
//! restore cannot swap a volume under a starting box); a forced volume delete locks the boxes that
//! mount the volume before the volume. Several volume locks are taken in name order.

use std::collections::BTreeSet;
use std::io::Write as _;
use std::os::unix::fs::OpenOptionsExt as _;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use super::{Engine, blocking, now};
use crate::api::{
    CreateSnapshot, CreateVolume, CreateVolumeBackup, DataMount, UpdateVolume, VolumeBackupInfo,
    VolumeDeleted, VolumeInfo, VolumeMount, VolumeSnapshotInfo,
};
use crate::name::{NameKind, validate, validate_mount_path};
use crate::runtime::BindMount;
use crate::storage::Storage;
use crate::store::{BoxRow, VolumeRow, VolumeSnapshotRow};
use crate::{Error, ErrorKind, Result};

/// Where the system volumes are mounted; a data volume may not sit on one of them or above one
/// (it would hide it).
const SYSTEM_MOUNTS: &[&str] = &["/box/bin", "/box/all", "/box/proj", "/home"];

/// The smallest size limit: below it not even btrfs metadata for a few files fits.
pub const MIN_VOLUME_SIZE: u64 = 1 << 20;

const BACKUP_SUFFIX: &str = ".tar.gz";

/// The lock-map project for the volumes of `project` (`/` cannot occur in a project name, so no
/// box ever has this key).
fn lock_project(project: &str) -> String {
    format!("{project}/volumes")
}

/// Volume locks held together, taken in name order.
pub(crate) struct VolumeLocks {
    _guards: Vec<tokio::sync::OwnedMutexGuard<()>>,
}

/// A `--fork` copy to make: volume `source` of the source box becomes `copy` of the new box.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct VolumeCopy {
    pub source: String,
    pub copy: String,
}

/// `v<N+1>` for the highest existing `v<N>`, else `v0` (the rule box snapshots use).
fn next_auto_name<'a>(existing: impl IntoIterator<Item = &'a str>) -> String {
    let next = existing
        .into_iter()
        .filter_map(|s| s.strip_prefix('v').and_then(|n| n.parse::<u64>().ok()))
        .max()
        .map_or(0, |n| n + 1);
    format!("v{next}")
}

fn check_size(size: Option<u64>) -> Result<()> {
    match size {
        Some(s) if s < MIN_VOLUME_SIZE => Err(Error::bad_request(
            "invalid_size",
            format!("volume size {s} bytes is below the minimum of 1 MiB; give a size such as 512Mi or 10Gi"),
        )),
        _ => Ok(()),
    }
}

/// Backup names follow the snapshot pattern, and may not start with `.` (in-progress archives are
/// hidden files).
fn check_backup_name(name: &str) -> Result<()> {
    if validate(NameKind::Snapshot, name).is_err() || name.starts_with('.') {
        return Err(Error::bad_request(
            "invalid_name",
            format!(
                "invalid backup name {name:?}: use letters, digits, '_', '.' and '-', not starting with '.' \
                 (pattern ^[a-zA-Z0-9_-][a-zA-Z0-9_.-]*$)"
            ),
        ));
    }
    Ok(())
}

/// Checks the `--data` mounts of a create request on their own, before anything is looked up, and
/// returns them with trailing slashes removed: bare volume names (a box mounts volumes of its own
/// project only), documented mount paths, no path that hides a system volume, unique names and
/// unique paths.
pub(crate) fn check_mounts(project: &str, mounts: &[DataMount]) -> Result<Vec<DataMount>> {
    let mut out = Vec::with_capacity(mounts.len());
    for m in mounts {
        if let Some((other, vol)) = m.name.split_once(':').or_else(|| m.name.split_once('.')) {
            return Err(Error::bad_request(
                "invalid_mount",
                format!(
                    "data volume {:?} names project {other:?}: a box can only mount volumes of its own project \
                     ({project:?}); write the bare volume name, and create the volume in this project if it is \
                     missing (`4kr volume create {vol} -p {project}`)",
                    m.name
                ),
            ));
        }
        validate(NameKind::Volume, &m.name)?;
        let path = if m.path.len() > 1 { m.path.trim_end_matches('/') } else { m.path.as_str() };
        let path = if path.is_empty() { "/" } else { path };
        validate_mount_path(path)?;
        if let Some(sys) = SYSTEM_MOUNTS.iter().find(|s| **s == path || s.starts_with(&format!("{path}/"))) {
            return Err(Error::bad_request(
                "invalid_mount",
                format!(
                    "mount path {path:?} would hide the system volume at {sys}; mount data volume {:?} elsewhere",
                    m.name
                ),
            ));
        }
        out.push(DataMount { name: m.name.clone(), path: path.to_owned(), read_only: m.read_only });
    }
    check_unique(&out)?;
    Ok(out)
}

fn check_unique(mounts: &[DataMount]) -> Result<()> {
    for (i, m) in mounts.iter().enumerate() {
        for other in &mounts[..i] {
            if other.name == m.name {
                return Err(Error::bad_request(
                    "invalid_mount",
                    format!("data volume {:?} is mounted twice; each mount name must be unique", m.name),
                ));
            }
            if other.path == m.path {
                return Err(Error::bad_request(
                    "invalid_mount",
                    format!(
                        "data volumes {:?} and {:?} are both mounted at {}; each mount path must be unique",
                        other.name, m.name, m.path
                    ),
                ));
            }
        }
    }
    Ok(())
}

/// The mounts of a new box: `--fork` copies of the source's mounts (`box-<name>-<vol>`, same paths
/// and modes) followed by the requested ones (already through [`check_mounts`]), plus the copies to
/// make.
pub(crate) fn plan_box_mounts(
    box_name: &str,
    requested: Vec<DataMount>,
    inherited: &[DataMount],
) -> Result<(Vec<DataMount>, Vec<VolumeCopy>)> {
    let mut mounts = Vec::with_capacity(inherited.len() + requested.len());
    let mut copies = Vec::with_capacity(inherited.len());
    for m in inherited {
        let copy = format!("box-{box_name}-{}", m.name);
        if validate(NameKind::Volume, &copy).is_err() {
            return Err(Error::bad_request(
                "invalid_name",
                format!(
                    "cannot copy data volume {:?} for the fork: the copy's name {copy:?} is longer than 63 \
                     characters; use a shorter box name",
                    m.name
                ),
            ));
        }
        mounts.push(DataMount { name: copy.clone(), path: m.path.clone(), read_only: m.read_only });
        copies.push(VolumeCopy { source: m.name.clone(), copy });
    }
    mounts.extend(requested);
    check_unique(&mounts)?;
    Ok((mounts, copies))
}

/// Sets the limit `size` on a subvolume; `Ok(true)` when it is enforced, `Ok(false)` when there is
/// no limit or the storage cannot enforce one (then the size is only recorded).
fn apply_limit(storage: &dyn Storage, path: &Path, size: Option<u64>) -> Result<bool> {
    let Some(bytes) = size else { return Ok(false) };
    match storage.set_size_limit(path, Some(bytes)) {
        Ok(()) => Ok(true),
        Err(e) if e.kind() == ErrorKind::Unsupported => {
            tracing::warn!(path = %path.display(), error = %e, "volume size recorded but not enforced");
            Ok(false)
        }
        Err(e) => Err(e),
    }
}

fn rfc3339(t: std::time::SystemTime) -> String {
    chrono::DateTime::<chrono::Utc>::from(t).to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
}

/// Writes a `.tar.gz` of the tree `src` to the (already created) file `out`: regular files,
/// directories and symlinks (as links), with relative paths, modes, owners and mtimes. Sockets,
/// FIFOs and device nodes are skipped: sockets cannot be archived, and the extractor shared with
/// base imports skips devices and would turn a FIFO into a regular file. Nested subvolumes appear
/// as the empty directories a snapshot shows for them.
fn write_backup(src: &Path, out: &Path) -> std::io::Result<()> {
    let file = std::fs::OpenOptions::new().write(true).truncate(true).open(out)?;
    let gz = flate2::write::GzEncoder::new(std::io::BufWriter::new(file), flate2::Compression::fast());
    let mut builder = tar::Builder::new(gz);
    builder.follow_symlinks(false);
    builder.mode(tar::HeaderMode::Complete);
    let mut stack = vec![PathBuf::new()];
    while let Some(rel) = stack.pop() {
        let mut entries = std::fs::read_dir(src.join(&rel))?.collect::<std::io::Result<Vec<_>>>()?;
        entries.sort_by_key(|e| e.file_name());
        // Reversed so the stack pops directories in name order (a stable archive for equal trees).
        for entry in entries.into_iter().rev() {
            let kind = entry.file_type()?;
            if !(kind.is_dir() || kind.is_file() || kind.is_symlink()) {
                continue;
            }
            let child = rel.join(entry.file_name());
            builder.append_path_with_name(entry.path(), &child)?;
            if kind.is_dir() {
                stack.push(child);
            }
        }
    }
    let gz = builder.into_inner()?;
    let mut buffered = gz.finish()?;
    buffered.flush()?;
    let file = buffered.into_inner().map_err(|e| e.into_error())?;
    file.sync_all()
}

impl Engine {
    pub(crate) async fn lock_volume(&self, project: &str, name: &str) -> tokio::sync::OwnedMutexGuard<()> {
        self.lock_box(&lock_project(project), name).await
    }

    /// Locks several volumes of a project, in name order (duplicates once).
    pub(crate) async fn lock_volumes(
        &self,
        project: &str,
        names: impl IntoIterator<Item = String>,
    ) -> VolumeLocks {
        let names: BTreeSet<String> = names.into_iter().collect();
        let mut guards = Vec::with_capacity(names.len());
        for n in names {
            guards.push(self.lock_volume(project, &n).await);
        }
        VolumeLocks { _guards: guards }
    }

    pub(crate) fn require_volume(&self, project: &str, name: &str) -> Result<VolumeRow> {
        self.store.get_volume(project, name)?.ok_or_else(|| {
            Error::new(
                ErrorKind::NotFound,
                "not_found",
                format!(
                    "data volume {name:?} not found in project {project:?}; create it with `4kr volume create {name} -p {project}`"
                ),
            )
        })
    }

    fn require_volume_snapshot(
        &self,
        project: &str,
        volume: &str,
        snapshot: &str,
    ) -> Result<VolumeSnapshotRow> {
        self.store.list_volume_snapshots(project, volume)?.into_iter().find(|s| s.name == snapshot).ok_or_else(|| {
            Error::new(
                ErrorKind::NotFound,
                "not_found",
                format!("snapshot {snapshot:?} not found on volume {volume:?}; see `4kr volume snapshots {volume}`"),
            )
        })
    }

    /// Boxes of `project` that mount `volume`, with the mount, by box name.
    fn mounts_of(&self, boxes: &[BoxRow], volume: &str) -> Vec<(BoxRow, DataMount)> {
        boxes
            .iter()
            .filter_map(|b| b.data.iter().find(|m| m.name == volume).map(|m| (b.clone(), m.clone())))
            .collect()
    }

    /// Refuses (409 `volume_in_use`) when a running box mounts `volume`.
    fn refuse_if_mounted_running(&self, project: &str, volume: &str, what: &str) -> Result<()> {
        let boxes = self.store.list_boxes(Some(project))?;
        let running: Vec<String> = self
            .mounts_of(&boxes, volume)
            .into_iter()
            .filter(|(b, _)| self.running(b).is_some())
            .map(|(b, _)| b.name)
            .collect();
        if let Some(first) = running.first() {
            return Err(Error::conflict(
                "volume_in_use",
                format!(
                    "volume {volume:?} is mounted by running box(es) {}; stop them first (`4kr stop {first}`) and retry: \
                     a {what} cannot replace the data under a live mount",
                    running.join(", ")
                ),
            ));
        }
        Ok(())
    }

    fn volume_info(&self, row: &VolumeRow, boxes: &[BoxRow], used_bytes: Option<u64>) -> VolumeInfo {
        VolumeInfo {
            name: row.name.clone(),
            project: row.project.clone(),
            size_bytes: row.size_bytes,
            size_enforced: row.size_enforced,
            used_bytes,
            tags: row.tags.clone(),
            copied_from: row.copied_from.clone(),
            mounted_by: self
                .mounts_of(boxes, &row.name)
                .into_iter()
                .map(|(b, m)| VolumeMount { r#box: b.name, path: m.path, read_only: m.read_only })
                .collect(),
            created_at: row.created_at.clone(),
        }
    }

    /// [`Engine::volume_info`] with the current mounts and, with `measure`, the bytes used.
    async fn volume_info_now(self: &Arc<Self>, row: &VolumeRow, measure: bool) -> Result<VolumeInfo> {
        let boxes = self.store.list_boxes(Some(&row.project))?;
        let used = if measure {
            let this = self.clone();
            let path = self.layout.volume(&row.project, &row.name);
            blocking(move || Ok(this.storage.size(&path).ok())).await?
        } else {
            None
        };
        Ok(self.volume_info(row, &boxes, used))
    }

    // ---- create, list, show, update, delete ----

    /// `POST /projects/{p}/volumes`: the row first (it claims the name), then the subvolume and
    /// its size limit; a failure removes both.
    pub async fn create_volume(self: &Arc<Self>, project: &str, req: CreateVolume) -> Result<VolumeInfo> {
        validate(NameKind::Project, project)?;
        validate(NameKind::Volume, &req.name)?;
        check_size(req.size_bytes)?;
        let _g = self.lock_volume(project, &req.name).await;
        let mut row = VolumeRow {
            project: project.to_owned(),
            name: req.name.clone(),
            size_bytes: req.size_bytes,
            size_enforced: false,
            tags: req.tags.clone(),
            copied_from: None,
            created_at: now(),
        };
        self.store.insert_volume(&row)?;
        let this = self.clone();
        let path = self.layout.volume(project, &req.name);
        let size = req.size_bytes;
        let made = blocking(move || {
            if let Some(parent) = path.parent() {
                std::fs::create_dir_all(parent)
                    .map_err(|e| Error::io(format!("creating {}", parent.display()), e))?;
            }
            // A subvolume without a row: left by a crash in the middle of an earlier create's undo.
            if this.storage.is_subvolume(&path) {
                this.storage.delete_subvolume(&path)?;
            }
            this.storage.create_subvolume(&path)?;
            let limited = apply_limit(&*this.storage, &path, size);
            if limited.is_err() {
                let _ = this.storage.delete_subvolume(&path);
            }
            limited
        })
        .await
        .and_then(|enforced| {
            row.size_enforced = enforced;
            self.store.update_volume(&row)
        });
        if let Err(e) = made {
            let _ = self.store.delete_volume(project, &req.name);
            return Err(e);
        }
        self.volume_info_now(&row, false).await
    }

    /// `GET /projects/{p}/volumes`, by name (no `used_bytes`: measuring walks the files).
    pub fn list_volumes(&self, project: &str) -> Result<Vec<VolumeInfo>> {
        validate(NameKind::Project, project)?;
        let boxes = self.store.list_boxes(Some(project))?;
        Ok(self.store.list_volumes(project)?.iter().map(|v| self.volume_info(v, &boxes, None)).collect())
    }

    /// `GET /projects/{p}/volumes/{v}`, with the bytes its files use.
    pub async fn get_volume(self: &Arc<Self>, project: &str, name: &str) -> Result<VolumeInfo> {
        validate(NameKind::Volume, name)?;
        let row = self.require_volume(project, name)?;
        self.volume_info_now(&row, true).await
    }

    /// `PATCH /projects/{p}/volumes/{v}`: a new size limit (bigger or smaller: a limit below what
    /// is used only stops further writes) and/or new tags.
    pub async fn update_volume(
        self: &Arc<Self>,
        project: &str,
        name: &str,
        req: UpdateVolume,
    ) -> Result<VolumeInfo> {
        validate(NameKind::Volume, name)?;
        check_size(req.size_bytes)?;
        if req.size_bytes.is_none() && req.tags.is_none() {
            return Err(Error::bad_request("no_updates", "no updates provided: give a size or tags"));
        }
        let _g = self.lock_volume(project, name).await;
        let mut row = self.require_volume(project, name)?;
        if let Some(size) = req.size_bytes {
            let this = self.clone();
            let path = self.layout.volume(project, name);
            row.size_enforced = blocking(move || apply_limit(&*this.storage, &path, Some(size))).await?;
            row.size_bytes = Some(size);
        }
        if let Some(tags) = req.tags {
            row.tags = tags;
        }
        self.store.update_volume(&row)?;
        self.volume_info_now(&row, false).await
    }

    /// `DELETE /projects/{p}/volumes/{v}?force=`: refused (409 `volume_in_use`) while any box
    /// mounts the volume, unless `force`, which also removes the mount from those boxes (running
    /// ones keep an empty mount point until they stop). Snapshots go with the volume; backups stay.
    /// A volume that does not exist is reported as `deleted: false`.
    pub async fn delete_volume(
        self: &Arc<Self>,
        project: &str,
        name: &str,
        force: bool,
    ) -> Result<VolumeDeleted> {
        validate(NameKind::Project, project)?;
        validate(NameKind::Volume, name)?;
        // Box locks before the volume lock; if a box starts mounting the volume between reading the
        // users and locking, the check under the locks sees it and the loop tries again.
        for _ in 0..5 {
            let users: Vec<String> = {
                let boxes = self.store.list_boxes(Some(project))?;
                self.mounts_of(&boxes, name).into_iter().map(|(b, _)| b.name).collect()
            };
            if !users.is_empty() && !force {
                return Err(in_use(name, &users));
            }
            let mut box_guards = Vec::with_capacity(users.len());
            for b in &users {
                box_guards.push(self.lock_box(project, b).await);
            }
            let guard = self.lock_volume(project, name).await;
            let boxes = self.store.list_boxes(Some(project))?;
            let now_users: Vec<BoxRow> = self.mounts_of(&boxes, name).into_iter().map(|(b, _)| b).collect();
            if now_users.iter().any(|b| !users.contains(&b.name)) {
                continue;
            }
            if !now_users.is_empty() && !force {
                let names: Vec<String> = now_users.iter().map(|b| b.name.clone()).collect();
                return Err(in_use(name, &names));
            }
            let exists = self.store.get_volume(project, name)?.is_some();
            if exists {
                let this = self.clone();
                let (p, n) = (project.to_owned(), name.to_owned());
                blocking(move || {
                    let checkpoints = this.layout.volume_checkpoints(&p, &n);
                    if let Ok(entries) = std::fs::read_dir(&checkpoints) {
                        for e in entries.flatten() {
                            this.storage.delete_subvolume(&e.path())?;
                        }
                        let _ = std::fs::remove_dir(&checkpoints);
                    }
                    this.storage.delete_subvolume(&this.layout.volume(&p, &n))
                })
                .await?;
            }
            let mut detached = Vec::with_capacity(now_users.len());
            for mut b in now_users {
                b.data.retain(|m| m.name != name);
                b.updated_at = now();
                self.store.update_box(&b)?;
                detached.push(b.name);
            }
            self.store.delete_volume(project, name)?;
            drop(guard);
            drop(box_guards);
            self.forget_lock(&lock_project(project), name);
            return Ok(VolumeDeleted { name: name.to_owned(), deleted: exists, detached_from: detached });
        }
        Err(Error::conflict(
            "volume_in_use",
            format!("boxes kept attaching volume {name:?} while it was being deleted; retry"),
        ))
    }

    // ---- snapshots (volume-checkpoints) ----

    /// `POST …/volumes/{v}/snapshots`: a read-only snapshot, named `v<N>` unless named.
    pub async fn create_volume_snapshot(
        self: &Arc<Self>,
        project: &str,
        volume: &str,
        req: CreateSnapshot,
    ) -> Result<VolumeSnapshotInfo> {
        validate(NameKind::Volume, volume)?;
        if let Some(n) = &req.name {
            validate(NameKind::Snapshot, n)?;
        }
        let _g = self.lock_volume(project, volume).await;
        self.require_volume(project, volume)?;
        let existing = self.store.list_volume_snapshots(project, volume)?;
        let name =
            req.name.clone().unwrap_or_else(|| next_auto_name(existing.iter().map(|s| s.name.as_str())));
        let row = VolumeSnapshotRow {
            project: project.to_owned(),
            volume: volume.to_owned(),
            name: name.clone(),
            description: req.description.clone(),
            size: None,
            created_at: now(),
        };
        self.store.insert_volume_snapshot(&row)?;
        let this = self.clone();
        let (p, v, s) = (project.to_owned(), volume.to_owned(), name.clone());
        let made = blocking(move || {
            let dir = this.layout.volume_checkpoints(&p, &v);
            std::fs::create_dir_all(&dir).map_err(|e| Error::io(format!("creating {}", dir.display()), e))?;
            this.storage.snapshot(&this.layout.volume(&p, &v), &dir.join(&s), true)
        })
        .await;
        if let Err(e) = made {
            let _ = self.store.delete_volume_snapshot(project, volume, &name);
            return Err(e);
        }
        // Measured in the background: a read-only snapshot never changes.
        let this = self.clone();
        let (p, v, s) = (project.to_owned(), volume.to_owned(), name);
        tokio::task::spawn_blocking(move || {
            if let Ok(size) = this.storage.size(&this.layout.volume_checkpoints(&p, &v).join(&s)) {
                let _ = this.store.set_volume_snapshot_size(&p, &v, &s, size);
            }
        });
        Ok(snapshot_info(&row))
    }

    /// `GET …/volumes/{v}/snapshots`, oldest first.
    pub fn list_volume_snapshots(&self, project: &str, volume: &str) -> Result<Vec<VolumeSnapshotInfo>> {
        validate(NameKind::Volume, volume)?;
        self.require_volume(project, volume)?;
        Ok(self.store.list_volume_snapshots(project, volume)?.iter().map(snapshot_info).collect())
    }

    /// `DELETE …/volumes/{v}/snapshots/{s}`.
    pub async fn delete_volume_snapshot(
        self: &Arc<Self>,
        project: &str,
        volume: &str,
        snapshot: &str,
    ) -> Result<()> {
        validate(NameKind::Volume, volume)?;
        validate(NameKind::Snapshot, snapshot)?;
        let _g = self.lock_volume(project, volume).await;
        self.require_volume_snapshot(project, volume, snapshot)?;
        let this = self.clone();
        let path = self.layout.volume_checkpoints(project, volume).join(snapshot);
        blocking(move || this.storage.delete_subvolume(&path)).await?;
        self.store.delete_volume_snapshot(project, volume, snapshot)?;
        Ok(())
    }

    /// `POST …/volumes/{v}/snapshots/{s}/restore`: the volume becomes a writable copy of the
    /// snapshot (O(1)); refused while a running box mounts it. Later snapshots stay.
    pub async fn restore_volume_snapshot(
        self: &Arc<Self>,
        project: &str,
        volume: &str,
        snapshot: &str,
    ) -> Result<VolumeInfo> {
        validate(NameKind::Volume, volume)?;
        validate(NameKind::Snapshot, snapshot)?;
        let _g = self.lock_volume(project, volume).await;
        let mut row = self.require_volume(project, volume)?;
        self.require_volume_snapshot(project, volume, snapshot)?;
        self.refuse_if_mounted_running(project, volume, "restore")?;
        let this = self.clone();
        let (p, v, s, size) = (project.to_owned(), volume.to_owned(), snapshot.to_owned(), row.size_bytes);
        row.size_enforced = blocking(move || {
            let fresh = this.scratch_path("volume-restore");
            this.storage.snapshot(&this.layout.volume_checkpoints(&p, &v).join(&s), &fresh, false)?;
            this.replace_volume(&p, &v, &fresh, size)
        })
        .await?;
        self.store.update_volume(&row)?;
        self.volume_info_now(&row, false).await
    }

    /// Puts the writable subvolume `fresh` (in scratch) in place of volume `name`, with the size
    /// limit on it first (a limit belongs to the subvolume, so a replaced volume needs it again).
    /// The old volume is moved aside and deleted only once the new one is in place; on failure
    /// the old one stays and `fresh` is removed. Returns whether the limit is enforced.
    fn replace_volume(&self, project: &str, name: &str, fresh: &Path, size: Option<u64>) -> Result<bool> {
        let live = self.layout.volume(project, name);
        let old = self.scratch_path("volume-replaced");
        let swapped = apply_limit(&*self.storage, fresh, size).and_then(|enforced| {
            let had = std::fs::symlink_metadata(&live).is_ok();
            if had {
                std::fs::rename(&live, &old).map_err(|e| Error::io("moving the old volume aside", e))?;
            } else if let Some(parent) = live.parent() {
                std::fs::create_dir_all(parent)
                    .map_err(|e| Error::io(format!("creating {}", parent.display()), e))?;
            }
            if let Err(e) = std::fs::rename(fresh, &live) {
                if had {
                    let _ = std::fs::rename(&old, &live);
                }
                return Err(Error::io("moving the restored volume in place", e));
            }
            if had {
                // Scratch now; if this fails, the next start's reconcile removes it.
                let _ = self.storage.delete_subvolume(&old);
            }
            Ok(enforced)
        });
        if swapped.is_err() {
            let _ = self.storage.delete_subvolume(fresh);
        }
        swapped
    }

    // ---- backups (volume-backups) ----

    /// Names of the finished backups of a volume and of those being written (hidden partials).
    fn backup_names(dir: &Path) -> Result<(Vec<String>, Vec<String>)> {
        let (mut done, mut partial) = (Vec::new(), Vec::new());
        let entries = match std::fs::read_dir(dir) {
            Ok(entries) => entries,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok((done, partial)),
            Err(e) => return Err(Error::io(format!("listing {}", dir.display()), e)),
        };
        for e in entries.flatten() {
            let file = e.file_name().to_string_lossy().into_owned();
            if let Some(n) = file.strip_prefix('.').and_then(|f| f.strip_suffix(".partial")) {
                partial.push(n.to_owned());
            } else if let Some(n) = file.strip_suffix(BACKUP_SUFFIX) {
                done.push(n.to_owned());
            }
        }
        Ok((done, partial))
    }

    /// `POST …/volumes/{v}/backups`: a `.tar.gz` of a point-in-time snapshot of the volume. The
    /// volume is locked only while the snapshot is taken; the archive is written as a hidden
    /// partial file and renamed into place when complete.
    pub async fn create_volume_backup(
        self: &Arc<Self>,
        project: &str,
        volume: &str,
        req: CreateVolumeBackup,
    ) -> Result<VolumeBackupInfo> {
        validate(NameKind::Project, project)?;
        validate(NameKind::Volume, volume)?;
        if let Some(n) = &req.name {
            check_backup_name(n)?;
        }
        let guard = self.lock_volume(project, volume).await;
        self.require_volume(project, volume)?;
        let this = self.clone();
        let (p, v) = (project.to_owned(), volume.to_owned());
        let (snap, partial, name) = blocking(move || {
            let dir = this.layout.volume_backups(&p, &v);
            std::fs::create_dir_all(&dir).map_err(|e| Error::io(format!("creating {}", dir.display()), e))?;
            let (done, partial) = Engine::backup_names(&dir)?;
            let name =
                req.name.unwrap_or_else(|| next_auto_name(done.iter().chain(&partial).map(String::as_str)));
            if done.contains(&name) || partial.contains(&name) {
                return Err(Error::conflict(
                    "conflict",
                    format!("backup {name:?} already exists for volume {v:?}"),
                ));
            }
            let partial = dir.join(format!(".{name}.partial"));
            std::fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .mode(0o600)
                .open(&partial)
                .map_err(|e| Error::io(format!("creating {}", partial.display()), e))?;
            let snap = this.scratch_path("volume-backup");
            if let Err(e) = this.storage.snapshot(&this.layout.volume(&p, &v), &snap, true) {
                let _ = std::fs::remove_file(&partial);
                return Err(e);
            }
            Ok((snap, partial, name))
        })
        .await?;
        drop(guard);
        let this = self.clone();
        let (p, v) = (project.to_owned(), volume.to_owned());
        blocking(move || {
            let done = this.layout.volume_backups(&p, &v).join(format!("{name}{BACKUP_SUFFIX}"));
            let written = write_backup(&snap, &partial)
                .and_then(|_| std::fs::rename(&partial, &done))
                .map_err(|e| Error::io(format!("writing backup {name:?} of volume {v:?}"), e));
            let _ = this.storage.delete_subvolume(&snap);
            if written.is_err() {
                let _ = std::fs::remove_file(&partial);
            }
            written?;
            let meta =
                std::fs::metadata(&done).map_err(|e| Error::io(format!("reading {}", done.display()), e))?;
            Ok(VolumeBackupInfo {
                name,
                volume: v,
                project: p,
                size: meta.len(),
                created_at: meta.modified().map(rfc3339).unwrap_or_else(|_| now()),
            })
        })
        .await
    }

    /// `GET …/volumes/{v}/backups`, oldest first. Works for a deleted volume whose backups remain.
    pub async fn list_volume_backups(
        self: &Arc<Self>,
        project: &str,
        volume: &str,
    ) -> Result<Vec<VolumeBackupInfo>> {
        validate(NameKind::Project, project)?;
        validate(NameKind::Volume, volume)?;
        let exists = self.store.get_volume(project, volume)?.is_some();
        let dir = self.layout.volume_backups(project, volume);
        let (p, v) = (project.to_owned(), volume.to_owned());
        let list = blocking(move || {
            let (done, _) = Engine::backup_names(&dir)?;
            let mut out = Vec::with_capacity(done.len());
            for name in done {
                let path = dir.join(format!("{name}{BACKUP_SUFFIX}"));
                let Ok(meta) = std::fs::metadata(&path) else { continue };
                let created = meta.modified().ok();
                out.push((
                    created,
                    VolumeBackupInfo {
                        name,
                        volume: v.clone(),
                        project: p.clone(),
                        size: meta.len(),
                        created_at: created.map(rfc3339).unwrap_or_default(),
                    },
                ));
            }
            out.sort_by(|a, b| a.0.cmp(&b.0).then_with(|| a.1.name.cmp(&b.1.name)));
            Ok(out.into_iter().map(|(_, b)| b).collect::<Vec<_>>())
        })
        .await?;
        if list.is_empty() && !exists {
            return Err(Error::new(
                ErrorKind::NotFound,
                "not_found",
                format!("data volume {volume:?} not found in project {project:?} and it has no backups"),
            ));
        }
        Ok(list)
    }

    fn require_backup(&self, project: &str, volume: &str, backup: &str) -> Result<PathBuf> {
        check_backup_name(backup)?;
        let path = self.layout.volume_backups(project, volume).join(format!("{backup}{BACKUP_SUFFIX}"));
        if !path.is_file() {
            return Err(Error::new(
                ErrorKind::NotFound,
                "not_found",
                format!(
                    "backup {backup:?} of volume {volume:?} not found; see `4kr volume backups {volume}`"
                ),
            ));
        }
        Ok(path)
    }

    /// `DELETE …/volumes/{v}/backups/{b}`.
    pub async fn delete_volume_backup(
        self: &Arc<Self>,
        project: &str,
        volume: &str,
        backup: &str,
    ) -> Result<()> {
        validate(NameKind::Project, project)?;
        validate(NameKind::Volume, volume)?;
        let _g = self.lock_volume(project, volume).await;
        let path = self.require_backup(project, volume, backup)?;
        blocking(move || {
            std::fs::remove_file(&path).map_err(|e| Error::io(format!("removing {}", path.display()), e))
        })
        .await
    }

    /// `POST …/volumes/{v}/backups/{b}/restore`: replaces the volume's files with the archive's,
    /// or recreates the volume (unlimited, untagged) when it was deleted. Refused while a running
    /// box mounts it. Extraction goes into a scratch subvolume through the same safe extractor as
    /// base imports, so a bad archive leaves the volume as it was.
    pub async fn restore_volume_backup(
        self: &Arc<Self>,
        project: &str,
        volume: &str,
        backup: &str,
    ) -> Result<VolumeInfo> {
        validate(NameKind::Project, project)?;
        validate(NameKind::Volume, volume)?;
        let _g = self.lock_volume(project, volume).await;
        let tarball = self.require_backup(project, volume, backup)?;
        let (mut row, created) = match self.store.get_volume(project, volume)? {
            Some(row) => {
                self.refuse_if_mounted_running(project, volume, "restore")?;
                (row, false)
            }
            None => {
                let row = VolumeRow {
                    project: project.to_owned(),
                    name: volume.to_owned(),
                    size_bytes: None,
                    size_enforced: false,
                    tags: Vec::new(),
                    copied_from: None,
                    created_at: now(),
                };
                self.store.insert_volume(&row)?;
                (row, true)
            }
        };
        let this = self.clone();
        let (p, v, size) = (project.to_owned(), volume.to_owned(), row.size_bytes);
        let restored = blocking(move || {
            let fresh = this.scratch_path("volume-restore");
            this.storage.create_subvolume(&fresh)?;
            if let Err(e) = super::bases::extract_tarball(&tarball, &fresh) {
                let _ = this.storage.delete_subvolume(&fresh);
                return Err(e);
            }
            this.replace_volume(&p, &v, &fresh, size)
        })
        .await;
        match restored {
            Ok(enforced) => row.size_enforced = enforced,
            Err(e) => {
                if created {
                    let _ = self.store.delete_volume(project, volume);
                }
                return Err(e);
            }
        }
        self.store.update_volume(&row)?;
        self.volume_info_now(&row, false).await
    }

    // ---- boxes ----

    /// Fails unless every requested volume exists in the box's project.
    pub(crate) fn require_volumes(&self, project: &str, mounts: &[DataMount]) -> Result<()> {
        for m in mounts {
            self.require_volume(project, &m.name)?;
        }
        Ok(())
    }

    /// Makes the `--fork` copies: for each, the row (it claims the name) and then a writable
    /// snapshot of the source volume with the source's size limit. On failure everything made so
    /// far is removed again. The caller holds the locks of the sources and the copies.
    pub(crate) async fn make_volume_copies(
        self: &Arc<Self>,
        project: &str,
        copies: &[VolumeCopy],
    ) -> Result<()> {
        for (i, c) in copies.iter().enumerate() {
            let made = self.make_volume_copy(project, c).await;
            if let Err(e) = made {
                self.remove_volume_copies(project, &copies[..i]).await;
                return Err(e);
            }
        }
        Ok(())
    }

    async fn make_volume_copy(self: &Arc<Self>, project: &str, c: &VolumeCopy) -> Result<()> {
        let src = self.store.get_volume(project, &c.source)?.ok_or_else(|| {
            Error::new(
                ErrorKind::NotFound,
                "not_found",
                format!(
                    "the source box mounts data volume {:?}, which no longer exists; it cannot be copied",
                    c.source
                ),
            )
        })?;
        let mut row = VolumeRow {
            project: project.to_owned(),
            name: c.copy.clone(),
            size_bytes: src.size_bytes,
            size_enforced: false,
            tags: Vec::new(),
            copied_from: Some(c.source.clone()),
            created_at: now(),
        };
        self.store.insert_volume(&row).map_err(|e| {
            if e.kind() == ErrorKind::Conflict {
                Error::conflict(
                    "conflict",
                    format!(
                        "volume {:?} (the fork's copy of {:?}) already exists in project {project:?}; delete it or pick another box name",
                        c.copy, c.source
                    ),
                )
            } else {
                e
            }
        })?;
        let this = self.clone();
        let (from, to) = (self.layout.volume(project, &c.source), self.layout.volume(project, &c.copy));
        let made = blocking(move || {
            if let Some(parent) = to.parent() {
                std::fs::create_dir_all(parent)
                    .map_err(|e| Error::io(format!("creating {}", parent.display()), e))?;
            }
            if this.storage.is_subvolume(&to) {
                this.storage.delete_subvolume(&to)?;
            }
            this.storage.snapshot(&from, &to, false)?;
            let limited = apply_limit(&*this.storage, &to, src.size_bytes);
            if limited.is_err() {
                let _ = this.storage.delete_subvolume(&to);
            }
            limited
        })
        .await
        .and_then(|enforced| {
            row.size_enforced = enforced;
            self.store.update_volume(&row)
        });
        if made.is_err() {
            let _ = self.store.delete_volume(project, &c.copy);
        }
        made
    }

    /// Removes fork copies again (undo of a failed create; best effort).
    pub(crate) async fn remove_volume_copies(self: &Arc<Self>, project: &str, copies: &[VolumeCopy]) {
        for c in copies {
            let this = self.clone();
            let path = self.layout.volume(project, &c.copy);
            let _ = blocking(move || this.storage.delete_subvolume(&path)).await;
            let _ = self.store.delete_volume(project, &c.copy);
        }
    }

    /// The bind mounts of a box's data volumes, parents before children (so a volume mounted
    /// inside another one's path is not hidden by it).
    pub(crate) fn data_bind_mounts(&self, row: &BoxRow) -> Result<Vec<BindMount>> {
        let mut mounts = Vec::with_capacity(row.data.len());
        for m in &row.data {
            let source = self.layout.volume(&row.project, &m.name);
            if !self.storage.is_subvolume(&source) {
                return Err(Error::new(
                    ErrorKind::NotFound,
                    "not_found",
                    format!(
                        "data volume {:?} (mounted at {}) does not exist in project {:?}; create it with \
                         `4kr volume create {} -p {}` or restore it from a backup",
                        m.name, m.path, row.project, m.name, row.project
                    ),
                ));
            }
            mounts.push(BindMount { source, target: m.path.clone(), read_only: m.read_only, file: false });
        }
        mounts.sort_by(|a, b| a.target.cmp(&b.target));
        Ok(mounts)
    }
}

fn in_use(volume: &str, boxes: &[String]) -> Error {
    Error::conflict(
        "volume_in_use",
        format!(
            "volume {volume:?} is mounted by box(es) {}; delete those boxes first, or pass --force to delete it \
             anyway and remove it from them",
            boxes.join(", ")
        ),
    )
}

fn snapshot_info(r: &VolumeSnapshotRow) -> VolumeSnapshotInfo {
    VolumeSnapshotInfo {
        name: r.name.clone(),
        volume: r.volume.clone(),
        project: r.project.clone(),
        size: r.size,
        created_at: r.created_at.clone(),
        description: r.description.clone(),
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;
    use std::os::unix::fs::PermissionsExt as _;
    use std::process::{Child, Command};

    use super::*;
    use crate::api::BoxStatus;
    use crate::engine::Config;
    use crate::runtime::local::{Local, LocalConfig};
    use crate::storage::btrfs::Btrfs;
    use crate::storage::test_support::TestFs;
    use crate::store::Store;

    /// An engine over a real btrfs image and the real local runtime. No test here starts a box
    /// (that needs the shim and is covered end to end); "running" boxes are stood in for by real
    /// processes whose PID and start time the box row carries, which is all `is_alive` reads.
    struct Env {
        engine: Arc<Engine>,
        _fs: TestFs,
    }

    fn env() -> Env {
        let fs = TestFs::new();
        let layout = fs.layout();
        let runtime = Local::new(LocalConfig {
            shim: "/bin/true".into(),
            instance: format!("voltest{}", std::process::id()),
        })
        .unwrap();
        let engine = Engine::new(
            Config::new(layout.data_dir()),
            Arc::new(Btrfs::new()),
            Arc::new(runtime),
            Store::in_memory().unwrap(),
        );
        Env { engine: Arc::new(engine), _fs: fs }
    }

    /// A real process standing in for a box's PID 1; killed and reaped on drop.
    struct Pid1(Child);

    impl Pid1 {
        fn spawn() -> Pid1 {
            Pid1(Command::new("sleep").arg("600").spawn().unwrap())
        }
        fn running(&self) -> (u32, u64) {
            let pid = self.0.id();
            let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
            let after = &stat[stat.rfind(')').unwrap() + 2..];
            (pid, after.split_whitespace().nth(19).unwrap().parse().unwrap())
        }
    }

    impl Drop for Pid1 {
        fn drop(&mut self) {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }

    fn box_row(name: &str, data: Vec<DataMount>, pid: Option<(u32, u64)>) -> BoxRow {
        BoxRow {
            project: "p".into(),
            name: name.into(),
            base: "box-base".into(),
            forked_from: None,
            desired: if pid.is_some() { BoxStatus::Running } else { BoxStatus::Stopped },
            pid,
            port: 8080,
            cpus: 1.0,
            ram_mb: 256,
            storage_gb: 1.0,
            grace_seconds: 1,
            env: BTreeMap::new(),
            tags: vec![],
            data,
            created_at: now(),
            updated_at: now(),
            started_at: None,
        }
    }

    fn mount(name: &str, path: &str, read_only: bool) -> DataMount {
        DataMount { name: name.into(), path: path.into(), read_only }
    }

    fn create(name: &str, size: Option<u64>) -> CreateVolume {
        CreateVolume { name: name.into(), size_bytes: size, tags: vec![] }
    }

    /// Writes `mib` MiB to `path` and syncs, so a quota is checked.
    fn write_mib(path: &Path, mib: usize) -> std::io::Result<()> {
        let mut f = std::fs::File::create(path)?;
        let chunk = vec![0xa5u8; 1 << 20];
        for _ in 0..mib {
            f.write_all(&chunk)?;
        }
        f.sync_all()
    }

    fn read(path: &Path) -> String {
        std::fs::read_to_string(path).unwrap_or_else(|e| format!("<{e}>"))
    }

    #[tokio::test]
    async fn create_show_update_delete_with_an_enforced_size() {
        let env = env();
        let e = &env.engine;
        let info = e.create_volume("p", create("data", Some(4 << 20))).await.unwrap();
        assert_eq!((info.size_bytes, info.size_enforced), (Some(4 << 20), true));
        let dir = e.layout.volume("p", "data");
        let err = write_mib(&dir.join("big"), 16).unwrap_err();
        assert_eq!(err.raw_os_error(), Some(libc::EDQUOT), "{err}");
        std::fs::remove_file(dir.join("big")).unwrap();
        // btrfs gives a deleted file's extents back to the quota when the transaction commits.
        nix::unistd::sync();

        assert_eq!(e.create_volume("p", create("data", None)).await.unwrap_err().kind(), ErrorKind::Conflict);
        assert_eq!(e.create_volume("p", create("Bad", None)).await.unwrap_err().code(), "invalid_name");
        assert_eq!(
            e.create_volume("p", create("tiny", Some(4096))).await.unwrap_err().code(),
            "invalid_size"
        );
        // The same name in another project is another volume.
        e.create_volume("q", create("data", None)).await.unwrap();

        std::fs::write(dir.join("small"), vec![7u8; 64 << 10]).unwrap();
        nix::unistd::sync();
        let shown = e.get_volume("p", "data").await.unwrap();
        assert!(shown.used_bytes.is_some_and(|u| u >= 64 << 10), "{shown:?}");
        let listed = e.list_volumes("p").unwrap();
        assert_eq!(listed.len(), 1);
        assert_eq!(listed[0].used_bytes, None);

        let req = UpdateVolume { size_bytes: Some(64 << 20), tags: Some(vec!["t".into()]) };
        let updated = e.update_volume("p", "data", req).await.unwrap();
        assert_eq!((updated.size_bytes, updated.tags.clone()), (Some(64 << 20), vec!["t".to_owned()]));
        write_mib(&dir.join("big"), 16).unwrap();
        let err = e.update_volume("p", "data", UpdateVolume::default()).await.unwrap_err();
        assert_eq!(err.code(), "no_updates");

        let gone = e.delete_volume("p", "data", false).await.unwrap();
        assert!(gone.deleted && gone.detached_from.is_empty());
        assert!(!dir.exists());
        assert!(!e.delete_volume("p", "data", false).await.unwrap().deleted, "delete is idempotent");
        assert_eq!(e.get_volume("p", "data").await.unwrap_err().kind(), ErrorKind::NotFound);
        assert!(e.get_volume("q", "data").await.is_ok());
    }

    #[tokio::test]
    async fn snapshot_restore_round_trip_and_refused_under_a_running_box() {
        let env = env();
        let e = &env.engine;
        e.create_volume("p", create("pg", Some(8 << 20))).await.unwrap();
        let dir = e.layout.volume("p", "pg");
        std::fs::write(dir.join("a"), "1").unwrap();
        let v0 = e.create_volume_snapshot("p", "pg", CreateSnapshot::default()).await.unwrap();
        assert_eq!(v0.name, "v0");
        std::fs::write(dir.join("a"), "2").unwrap();
        std::fs::write(dir.join("b"), "new").unwrap();
        let named = CreateSnapshot { name: Some("two".into()), description: "after".into() };
        e.create_volume_snapshot("p", "pg", named.clone()).await.unwrap();
        assert_eq!(e.create_volume_snapshot("p", "pg", named).await.unwrap_err().kind(), ErrorKind::Conflict);
        assert_eq!(e.create_volume_snapshot("p", "pg", CreateSnapshot::default()).await.unwrap().name, "v1");
        // Snapshots are read-only.
        assert!(std::fs::write(e.layout.volume_checkpoints("p", "pg").join("v0/a"), "x").is_err());

        // A running box that mounts it (even read-only) blocks the restore; a stopped one does not.
        let pid1 = Pid1::spawn();
        e.store.insert_box(&box_row("web", vec![mount("pg", "/data", true)], Some(pid1.running()))).unwrap();
        let err = e.restore_volume_snapshot("p", "pg", "v0").await.unwrap_err();
        assert_eq!((err.kind(), err.code()), (ErrorKind::Conflict, "volume_in_use"));
        assert!(err.message().contains("web") && err.message().contains("4kr stop web"), "{}", err.message());
        drop(pid1);

        let info = e.restore_volume_snapshot("p", "pg", "v0").await.unwrap();
        assert_eq!(read(&dir.join("a")), "1");
        assert!(!dir.join("b").exists());
        assert!(info.size_enforced, "the limit is put on the restored subvolume again");
        let err = write_mib(&dir.join("big"), 32).unwrap_err();
        assert_eq!(err.raw_os_error(), Some(libc::EDQUOT), "{err}");
        std::fs::remove_file(dir.join("big")).unwrap();
        // Restoring "two" brings the later state back: restores keep every snapshot.
        e.restore_volume_snapshot("p", "pg", "two").await.unwrap();
        assert_eq!((read(&dir.join("a")).as_str(), read(&dir.join("b")).as_str()), ("2", "new"));

        let names: Vec<_> = e.list_volume_snapshots("p", "pg").unwrap().into_iter().map(|s| s.name).collect();
        assert_eq!(names, ["v0", "two", "v1"]);
        assert_eq!(
            e.restore_volume_snapshot("p", "pg", "nope").await.unwrap_err().kind(),
            ErrorKind::NotFound
        );
        e.delete_volume_snapshot("p", "pg", "v0").await.unwrap();
        assert!(!e.layout.volume_checkpoints("p", "pg").join("v0").exists());
        assert_eq!(e.list_volume_snapshots("p", "pg").unwrap().len(), 2);
        assert!(e.layout.scratch().read_dir().unwrap().next().is_none(), "scratch left behind");
    }

    /// A small tree with every kind of entry a volume may hold.
    fn fill(dir: &Path) -> std::os::unix::net::UnixListener {
        std::fs::create_dir_all(dir.join("sub/deeper")).unwrap();
        std::fs::create_dir(dir.join("empty")).unwrap();
        std::fs::write(dir.join("sub/deeper/file"), "deep").unwrap();
        std::fs::write(dir.join("secret"), "s").unwrap();
        std::fs::set_permissions(dir.join("secret"), std::fs::Permissions::from_mode(0o640)).unwrap();
        std::os::unix::fs::chown(dir.join("secret"), Some(1234), Some(5678)).unwrap();
        std::os::unix::fs::symlink("sub/deeper/file", dir.join("link")).unwrap();
        nix::unistd::mkfifo(&dir.join("fifo"), nix::sys::stat::Mode::from_bits_truncate(0o600)).unwrap();
        std::os::unix::net::UnixListener::bind(dir.join("sock")).unwrap()
    }

    fn check_filled(dir: &Path) {
        use std::os::unix::fs::MetadataExt as _;
        assert_eq!(read(&dir.join("sub/deeper/file")), "deep");
        assert!(dir.join("empty").is_dir());
        let secret = std::fs::metadata(dir.join("secret")).unwrap();
        assert_eq!((secret.mode() & 0o7777, secret.uid(), secret.gid()), (0o640, 1234, 5678));
        assert_eq!(std::fs::read_link(dir.join("link")).unwrap(), Path::new("sub/deeper/file"));
        assert!(std::fs::symlink_metadata(dir.join("fifo")).is_err(), "FIFOs are not archived");
        assert!(std::fs::symlink_metadata(dir.join("sock")).is_err(), "sockets are not archived");
    }

    #[tokio::test]
    async fn backup_round_trip_survives_the_volume() {
        let env = env();
        let e = &env.engine;
        e.create_volume("p", create("files", None)).await.unwrap();
        let dir = e.layout.volume("p", "files");
        let _sock = fill(&dir);
        let b0 = e.create_volume_backup("p", "files", CreateVolumeBackup::default()).await.unwrap();
        assert_eq!(b0.name, "v0");
        assert!(b0.size > 0);
        let nightly = CreateVolumeBackup { name: Some("nightly".into()) };
        e.create_volume_backup("p", "files", nightly.clone()).await.unwrap();
        assert_eq!(
            e.create_volume_backup("p", "files", nightly).await.unwrap_err().kind(),
            ErrorKind::Conflict
        );
        let hidden = CreateVolumeBackup { name: Some(".x".into()) };
        assert_eq!(e.create_volume_backup("p", "files", hidden).await.unwrap_err().code(), "invalid_name");
        let names: Vec<_> =
            e.list_volume_backups("p", "files").await.unwrap().into_iter().map(|b| b.name).collect();
        assert_eq!(names.len(), 2);
        assert!(names.contains(&"v0".to_owned()) && names.contains(&"nightly".to_owned()), "{names:?}");

        // Changes are undone by a restore.
        std::fs::write(dir.join("sub/deeper/file"), "changed").unwrap();
        std::fs::write(dir.join("extra"), "x").unwrap();
        e.restore_volume_backup("p", "files", "v0").await.unwrap();
        check_filled(&dir);
        assert!(!dir.join("extra").exists());

        // Backups outlive the volume, and restoring one brings the volume back.
        e.delete_volume("p", "files", false).await.unwrap();
        assert_eq!(e.list_volume_backups("p", "files").await.unwrap().len(), 2);
        let info = e.restore_volume_backup("p", "files", "nightly").await.unwrap();
        assert_eq!(info.name, "files");
        check_filled(&dir);
        assert!(e.store.get_volume("p", "files").unwrap().is_some());

        // A broken archive leaves the volume as it was.
        let bad = e.layout.volume_backups("p", "files").join("bad.tar.gz");
        std::fs::write(&bad, b"not a tarball").unwrap();
        let err = e.restore_volume_backup("p", "files", "bad").await.unwrap_err();
        assert_eq!(err.code(), "invalid_tarball");
        check_filled(&dir);

        assert_eq!(
            e.restore_volume_backup("p", "files", "nope").await.unwrap_err().kind(),
            ErrorKind::NotFound
        );
        assert_eq!(e.list_volume_backups("p", "never").await.unwrap_err().kind(), ErrorKind::NotFound);
        e.delete_volume_backup("p", "files", "bad").await.unwrap();
        assert!(!bad.exists());
        assert!(e.layout.scratch().read_dir().unwrap().next().is_none(), "scratch left behind");
    }

    #[tokio::test]
    async fn delete_refuses_while_mounted_and_force_detaches() {
        let env = env();
        let e = &env.engine;
        e.create_volume("p", create("shared", None)).await.unwrap();
        e.create_volume("p", create("other", None)).await.unwrap();
        e.create_volume_snapshot("p", "shared", CreateSnapshot::default()).await.unwrap();
        let mounts = vec![mount("shared", "/srv", false), mount("other", "/other", false)];
        e.store.insert_box(&box_row("web", mounts, None)).unwrap();
        e.store.insert_box(&box_row("db", vec![mount("shared", "/data", true)], None)).unwrap();
        let info = e.get_volume("p", "shared").await.unwrap();
        let users: Vec<_> = info.mounted_by.iter().map(|m| (m.r#box.as_str(), m.read_only)).collect();
        assert_eq!(users, [("db", true), ("web", false)]);

        let err = e.delete_volume("p", "shared", false).await.unwrap_err();
        assert_eq!((err.kind(), err.code()), (ErrorKind::Conflict, "volume_in_use"));
        assert!(err.message().contains("db, web") && err.message().contains("--force"), "{}", err.message());
        assert!(e.layout.volume("p", "shared").exists());

        let gone = e.delete_volume("p", "shared", true).await.unwrap();
        assert_eq!(gone.detached_from, ["db", "web"]);
        assert!(!e.layout.volume("p", "shared").exists());
        assert!(!e.layout.volume_checkpoints("p", "shared").exists());
        assert_eq!(e.store.get_box("p", "web").unwrap().unwrap().data, [mount("other", "/other", false)]);
        assert!(e.store.get_box("p", "db").unwrap().unwrap().data.is_empty());
    }

    #[test]
    fn documented_mount_errors() {
        let check = |mounts: &[DataMount]| check_mounts("p", mounts);
        let err = |mounts: &[DataMount]| check(mounts).unwrap_err().message().to_owned();
        assert!(err(&[mount("v", "data", false)]).contains("must be absolute"));
        for forbidden in ["/proc", "/sys/x", "/dev/shm", "/run/x", "/etc", "/etc/app", "/volumes/v"] {
            let m = err(&[mount("v", forbidden, false)]);
            assert!(m.contains("cannot sit under"), "{forbidden}: {m}");
        }
        for system in ["/home", "/box", "/box/bin", "/box/proj/"] {
            assert!(err(&[mount("v", system, false)]).contains("would hide the system volume"), "{system}");
        }
        for qualified in ["other:v", "p:v", "other.v"] {
            let m = err(&[mount(qualified, "/d", false)]);
            assert!(m.contains("can only mount volumes of its own project"), "{m}");
        }
        assert!(err(&[mount("Bad", "/d", false)]).contains("invalid volume name"));
        assert!(
            err(&[mount("v", "/a", false), mount("v", "/b", true)])
                .contains("each mount name must be unique")
        );
        let m = err(&[mount("v", "/data/", false), mount("w", "/data", false)]);
        assert!(m.contains("each mount path must be unique"), "{m}");
        assert!(check(&[mount("v", "/", false)]).is_err());

        let ok = check(&[mount("v", "/srv/data/", true), mount("w", "/home/alice/w", false)]).unwrap();
        assert_eq!(ok, [mount("v", "/srv/data", true), mount("w", "/home/alice/w", false)]);
    }

    #[test]
    fn fork_mounts_are_copies_first() {
        let inherited = [mount("pg", "/var/lib/pg", false), mount("assets", "/srv", true)];
        let (mounts, copies) =
            plan_box_mounts("web2", vec![mount("extra", "/extra", false)], &inherited).unwrap();
        assert_eq!(
            mounts,
            [
                mount("box-web2-pg", "/var/lib/pg", false),
                mount("box-web2-assets", "/srv", true),
                mount("extra", "/extra", false)
            ]
        );
        assert_eq!(copies[1], VolumeCopy { source: "assets".into(), copy: "box-web2-assets".into() });
        let clash = plan_box_mounts("web2", vec![mount("x", "/srv", false)], &inherited).unwrap_err();
        assert!(clash.message().contains("each mount path must be unique"));
        let long = "a".repeat(55);
        let e = plan_box_mounts(&long, vec![], &inherited).unwrap_err();
        assert!(e.message().contains("use a shorter box name"), "{}", e.message());
        assert_eq!(next_auto_name(["v0", "v7", "x", "v2"]), "v8");
        assert_eq!(next_auto_name([]), "v0");
    }

    #[tokio::test]
    async fn fork_copies_are_independent_snapshots() {
        let env = env();
        let e = &env.engine;
        e.create_volume("p", create("pg", Some(16 << 20))).await.unwrap();
        std::fs::write(e.layout.volume("p", "pg").join("db"), "source").unwrap();
        let copies = vec![VolumeCopy { source: "pg".into(), copy: "box-web2-pg".into() }];
        e.make_volume_copies("p", &copies).await.unwrap();
        let copy = e.layout.volume("p", "box-web2-pg");
        assert_eq!(read(&copy.join("db")), "source");
        std::fs::write(copy.join("db"), "fork").unwrap();
        assert_eq!(read(&e.layout.volume("p", "pg").join("db")), "source");
        let row = e.store.get_volume("p", "box-web2-pg").unwrap().unwrap();
        assert_eq!(
            (row.copied_from.as_deref(), row.size_bytes, row.size_enforced),
            (Some("pg"), Some(16 << 20), true)
        );

        // A second copy of the same name is a conflict and leaves the first one alone.
        let err = e.make_volume_copies("p", &copies).await.unwrap_err();
        assert!(err.message().contains("the fork's copy of \"pg\""), "{}", err.message());
        assert_eq!(read(&copy.join("db")), "fork");
        // A failed batch removes the copies it made before failing.
        let batch = vec![
            VolumeCopy { source: "pg".into(), copy: "box-web3-pg".into() },
            VolumeCopy { source: "gone".into(), copy: "box-web3-gone".into() },
        ];
        assert_eq!(e.make_volume_copies("p", &batch).await.unwrap_err().kind(), ErrorKind::NotFound);
        assert!(e.store.get_volume("p", "box-web3-pg").unwrap().is_none());
        assert!(!e.layout.volume("p", "box-web3-pg").exists());

        e.remove_volume_copies("p", &copies).await;
        assert!(!copy.exists() && e.store.get_volume("p", "box-web2-pg").unwrap().is_none());
    }

    #[tokio::test]
    async fn bind_mounts_mount_parents_first_and_need_the_volume() {
        let env = env();
        let e = &env.engine;
        e.create_volume("p", create("outer", None)).await.unwrap();
        e.create_volume("p", create("inner", None)).await.unwrap();
        let row =
            box_row("web", vec![mount("inner", "/data/inner", true), mount("outer", "/data", false)], None);
        let mounts = e.data_bind_mounts(&row).unwrap();
        let got: Vec<_> = mounts.iter().map(|m| (m.target.as_str(), m.read_only, m.file)).collect();
        assert_eq!(got, [("/data", false, false), ("/data/inner", true, false)]);
        assert_eq!(mounts[0].source, e.layout.volume("p", "outer"));

        e.delete_volume("p", "inner", true).await.unwrap();
        let err = e.data_bind_mounts(&row).unwrap_err();
        assert!(
            err.message().contains("\"inner\" (mounted at /data/inner) does not exist"),
            "{}",
            err.message()
        );
    }
}
