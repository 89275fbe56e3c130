//! Metadata in SQLite: boxes, snapshots, bases and what later issues add.
//!
//! One connection behind a mutex (every statement here takes microseconds; SQLite serialises writers
//! anyway). WAL mode, foreign keys on, schema versioned by `PRAGMA user_version` migrations.
//! Uniqueness that matters is enforced by the schema, not by checks in Rust: a second box with the
//! same name or a second snapshot with the same name fails inside SQLite and surfaces as a 409.
//!
//! Invariant: this module knows nothing of btrfs or processes; the engine keeps both in step.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::{Mutex, MutexGuard};

use rusqlite::{Connection, OptionalExtension, params};

use crate::api::{BoxStatus, DataMount};
use crate::{Error, Result};

mod locks;
mod migrations;
mod network;
mod tokens;
mod users;

pub use locks::LockRow;
mod volumes;
pub use network::{AddressRow, PublishRoute};
pub use tokens::TokenRow;
pub use users::{FIRST_UID, LAST_UID, UserRow};
pub use volumes::{VolumeRow, VolumeSnapshotRow};

/// A box row.
#[derive(Debug, Clone, PartialEq)]
pub struct BoxRow {
    pub project: String,
    pub name: String,
    /// The exact base version the root descends from.
    pub base: String,
    pub forked_from: Option<String>,
    /// What the user asked for: `Running` or `Stopped`. `Exited` is derived, never stored.
    pub desired: BoxStatus,
    /// Host PID and its start time while running.
    pub pid: Option<(u32, u64)>,
    pub port: u16,
    pub cpus: f64,
    pub ram_mb: u64,
    pub storage_gb: f64,
    pub grace_seconds: u64,
    pub env: BTreeMap<String, String>,
    pub tags: Vec<String>,
    pub data: Vec<DataMount>,
    pub created_at: String,
    pub updated_at: String,
    pub started_at: Option<String>,
}

/// A root snapshot (checkpoint) row.
#[derive(Debug, Clone, PartialEq)]
pub struct SnapshotRow {
    pub project: String,
    pub r#box: String,
    pub name: String,
    pub description: String,
    pub size: Option<u64>,
    pub created_at: String,
}

/// A base version row. `alias` is the base name users type; `version` the subvolume name.
#[derive(Debug, Clone, PartialEq)]
pub struct BaseRow {
    pub version: String,
    pub alias: String,
    /// `import`, `save`, `build`, `script`.
    pub kind: String,
    /// For script/Dockerfile builds: the sha256 of the build input.
    pub tag: Option<String>,
    /// What built it (`tar`, `box:<project>/<name>`, `docker`, `script`).
    pub builder: String,
    /// The parent base version, if layered.
    pub parent: Option<String>,
    pub size: Option<u64>,
    pub arch: String,
    pub created_at: String,
    /// Ownership tags (a workspace's `forkr.workspace=<id>`).
    pub tags: Vec<String>,
    /// The build script, for script builds (plans show a diff against it).
    pub script: Option<String>,
}

/// The metadata database.
pub struct Store {
    conn: Mutex<Connection>,
}

fn json<T: serde::Serialize>(v: &T) -> String {
    // Serializing maps/vecs of strings cannot fail.
    serde_json::to_string(v).unwrap_or_default()
}

fn from_json<T: serde::de::DeserializeOwned + Default>(s: &str) -> T {
    serde_json::from_str(s).unwrap_or_default()
}

/// Maps a UNIQUE/PRIMARY KEY violation to a 409 with `message`, anything else to an internal error.
fn unique_or(e: rusqlite::Error, code: &'static str, message: impl FnOnce() -> String) -> Error {
    match e {
        rusqlite::Error::SqliteFailure(f, _)
            if f.code == rusqlite::ErrorCode::ConstraintViolation
                && matches!(f.extended_code, 1555 | 2067) =>
        {
            Error::conflict(code, message())
        }
        other => other.into(),
    }
}

const BOX_COLUMNS: &str = "project, name, base, forked_from, desired, pid, pid_start, port, cpus, ram_mb, \
     storage_gb, grace_seconds, env, tags, data, created_at, updated_at, started_at";

fn box_from_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<BoxRow> {
    let desired: String = r.get(4)?;
    let pid: Option<i64> = r.get(5)?;
    let pid_start: Option<i64> = r.get(6)?;
    Ok(BoxRow {
        project: r.get(0)?,
        name: r.get(1)?,
        base: r.get(2)?,
        forked_from: r.get(3)?,
        desired: if desired == "stopped" { BoxStatus::Stopped } else { BoxStatus::Running },
        pid: pid.zip(pid_start).map(|(p, s)| (p as u32, s as u64)),
        port: r.get::<_, i64>(7)? as u16,
        cpus: r.get(8)?,
        ram_mb: r.get::<_, i64>(9)? as u64,
        storage_gb: r.get(10)?,
        grace_seconds: r.get::<_, i64>(11)? as u64,
        env: from_json(&r.get::<_, String>(12)?),
        tags: from_json(&r.get::<_, String>(13)?),
        data: from_json(&r.get::<_, String>(14)?),
        created_at: r.get(15)?,
        updated_at: r.get(16)?,
        started_at: r.get(17)?,
    })
}

fn base_from_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<BaseRow> {
    Ok(BaseRow {
        version: r.get(0)?,
        alias: r.get(1)?,
        kind: r.get(2)?,
        tag: r.get(3)?,
        builder: r.get(4)?,
        parent: r.get(5)?,
        size: r.get::<_, Option<i64>>(6)?.map(|s| s as u64),
        arch: r.get(7)?,
        created_at: r.get(8)?,
        tags: from_json(&r.get::<_, String>(9)?),
        script: r.get(10)?,
    })
}

/// Makes the database owner-only (0600) before SQLite opens it: it holds box environments (often
/// secrets) and token hashes. SQLite gives its `-wal` and `-shm` files the database file's mode, so
/// creating the file first is enough for new databases; existing files are tightened.
fn restrict_to_owner(path: &Path) -> Result<()> {
    use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
    std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(false)
        .mode(0o600)
        .open(path)
        .map_err(|e| Error::io(format!("creating {}", path.display()), e))?;
    for suffix in ["", "-wal", "-shm"] {
        let mut p = path.as_os_str().to_owned();
        p.push(suffix);
        if let Ok(meta) = std::fs::metadata(&p)
            && meta.permissions().mode() & 0o077 != 0
        {
            std::fs::set_permissions(&p, std::fs::Permissions::from_mode(meta.permissions().mode() & 0o700))
                .map_err(|e| Error::io(format!("restricting {}", Path::new(&p).display()), e))?;
        }
    }
    Ok(())
}

const BASE_COLUMNS: &str = "version, alias, kind, tag, builder, parent, size, arch, created_at, tags, script";

impl Store {
    /// Opens (creating if needed) the database at `path` and runs pending migrations.
    pub fn open(path: &Path) -> Result<Store> {
        restrict_to_owner(path)?;
        let mut conn = Connection::open(path)?;
        conn.pragma_update(None, "journal_mode", "WAL")?;
        conn.pragma_update(None, "synchronous", "NORMAL")?;
        conn.pragma_update(None, "foreign_keys", "ON")?;
        conn.busy_timeout(std::time::Duration::from_secs(5))?;
        migrations::run(&mut conn)?;
        Ok(Store { conn: Mutex::new(conn) })
    }

    /// An in-memory store for tests.
    pub fn in_memory() -> Result<Store> {
        let mut conn = Connection::open_in_memory()?;
        conn.pragma_update(None, "foreign_keys", "ON")?;
        migrations::run(&mut conn)?;
        Ok(Store { conn: Mutex::new(conn) })
    }

    fn conn(&self) -> MutexGuard<'_, Connection> {
        // A panic while holding the lock cannot leave SQLite inconsistent (statements are atomic), so
        // a poisoned mutex is still usable.
        self.conn.lock().unwrap_or_else(|p| p.into_inner())
    }

    // ---- boxes ----

    /// Inserts a new box; a box with that name in the project already → 409 `conflict`.
    pub fn insert_box(&self, b: &BoxRow) -> Result<()> {
        self.conn()
            .execute(
                &format!(
                    "INSERT INTO boxes ({BOX_COLUMNS}) VALUES \
                     (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16, ?17, ?18)"
                ),
                params![
                    b.project,
                    b.name,
                    b.base,
                    b.forked_from,
                    b.desired.as_str(),
                    b.pid.map(|p| p.0 as i64),
                    b.pid.map(|p| p.1 as i64),
                    b.port as i64,
                    b.cpus,
                    b.ram_mb as i64,
                    b.storage_gb,
                    b.grace_seconds as i64,
                    json(&b.env),
                    json(&b.tags),
                    json(&b.data),
                    b.created_at,
                    b.updated_at,
                    b.started_at,
                ],
            )
            .map_err(|e| {
                unique_or(e, "conflict", || {
                    format!("box {:?} already exists in project {:?}", b.name, b.project)
                })
            })?;
        Ok(())
    }

    /// Overwrites every mutable column of an existing box.
    pub fn update_box(&self, b: &BoxRow) -> Result<()> {
        let n = self.conn().execute(
            "UPDATE boxes SET base = ?3, forked_from = ?4, desired = ?5, pid = ?6, pid_start = ?7, \
             port = ?8, cpus = ?9, ram_mb = ?10, storage_gb = ?11, grace_seconds = ?12, env = ?13, \
             tags = ?14, data = ?15, updated_at = ?16, started_at = ?17 \
             WHERE project = ?1 AND name = ?2",
            params![
                b.project,
                b.name,
                b.base,
                b.forked_from,
                b.desired.as_str(),
                b.pid.map(|p| p.0 as i64),
                b.pid.map(|p| p.1 as i64),
                b.port as i64,
                b.cpus,
                b.ram_mb as i64,
                b.storage_gb,
                b.grace_seconds as i64,
                json(&b.env),
                json(&b.tags),
                json(&b.data),
                b.updated_at,
                b.started_at,
            ],
        )?;
        if n == 0 {
            return Err(Error::not_found("box", &b.name));
        }
        Ok(())
    }

    pub fn get_box(&self, project: &str, name: &str) -> Result<Option<BoxRow>> {
        Ok(self
            .conn()
            .query_row(
                &format!("SELECT {BOX_COLUMNS} FROM boxes WHERE project = ?1 AND name = ?2"),
                params![project, name],
                box_from_row,
            )
            .optional()?)
    }

    /// Boxes of one project, or of all projects with `None`, ordered by project and name.
    pub fn list_boxes(&self, project: Option<&str>) -> Result<Vec<BoxRow>> {
        let conn = self.conn();
        let mut stmt = conn.prepare_cached(&format!(
            "SELECT {BOX_COLUMNS} FROM boxes WHERE ?1 IS NULL OR project = ?1 ORDER BY project, name"
        ))?;
        let rows = stmt.query_map(params![project], box_from_row)?.collect::<rusqlite::Result<Vec<_>>>()?;
        Ok(rows)
    }

    /// Deletes a box row and (by cascade) its snapshot rows. Returns whether it existed.
    pub fn delete_box(&self, project: &str, name: &str) -> Result<bool> {
        Ok(self
            .conn()
            .execute("DELETE FROM boxes WHERE project = ?1 AND name = ?2", params![project, name])?
            > 0)
    }

    /// Whether any box's root descends from base `version`.
    pub fn boxes_using_base(&self, version: &str) -> Result<Vec<(String, String)>> {
        let conn = self.conn();
        let mut stmt =
            conn.prepare_cached("SELECT project, name FROM boxes WHERE base = ?1 ORDER BY project, name")?;
        let rows = stmt
            .query_map(params![version], |r| Ok((r.get(0)?, r.get(1)?)))?
            .collect::<rusqlite::Result<Vec<_>>>()?;
        Ok(rows)
    }

    // ---- snapshots ----

    /// Inserts a snapshot; a duplicate name on the box → 409 `conflict`.
    pub fn insert_snapshot(&self, s: &SnapshotRow) -> Result<()> {
        self.conn()
            .execute(
                "INSERT INTO snapshots (project, box, name, description, size, created_at) \
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
                params![s.project, s.r#box, s.name, s.description, s.size.map(|v| v as i64), s.created_at],
            )
            .map_err(|e| {
                unique_or(e, "conflict", || {
                    format!("snapshot {:?} already exists on box {:?}", s.name, s.r#box)
                })
            })?;
        Ok(())
    }

    pub fn list_snapshots(&self, project: &str, r#box: &str) -> Result<Vec<SnapshotRow>> {
        let conn = self.conn();
        let mut stmt = conn.prepare_cached(
            "SELECT project, box, name, description, size, created_at FROM snapshots \
             WHERE project = ?1 AND box = ?2 ORDER BY created_at, rowid",
        )?;
        let rows = stmt
            .query_map(params![project, r#box], |r| {
                Ok(SnapshotRow {
                    project: r.get(0)?,
                    r#box: r.get(1)?,
                    name: r.get(2)?,
                    description: r.get(3)?,
                    size: r.get::<_, Option<i64>>(4)?.map(|s| s as u64),
                    created_at: r.get(5)?,
                })
            })?
            .collect::<rusqlite::Result<Vec<_>>>()?;
        Ok(rows)
    }

    pub fn set_snapshot_size(&self, project: &str, r#box: &str, name: &str, size: u64) -> Result<()> {
        self.conn().execute(
            "UPDATE snapshots SET size = ?4 WHERE project = ?1 AND box = ?2 AND name = ?3",
            params![project, r#box, name, size as i64],
        )?;
        Ok(())
    }

    pub fn delete_snapshot(&self, project: &str, r#box: &str, name: &str) -> Result<bool> {
        Ok(self.conn().execute(
            "DELETE FROM snapshots WHERE project = ?1 AND box = ?2 AND name = ?3",
            params![project, r#box, name],
        )? > 0)
    }

    // ---- bases ----

    pub fn insert_base(&self, b: &BaseRow) -> Result<()> {
        self.conn()
            .execute(
                &format!(
                    "INSERT INTO bases ({BASE_COLUMNS}) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11)"
                ),
                params![
                    b.version,
                    b.alias,
                    b.kind,
                    b.tag,
                    b.builder,
                    b.parent,
                    b.size.map(|s| s as i64),
                    b.arch,
                    b.created_at,
                    json(&b.tags),
                    b.script,
                ],
            )
            .map_err(|e| {
                unique_or(e, "conflict", || format!("base version {:?} already exists", b.version))
            })?;
        Ok(())
    }

    pub fn get_base_version(&self, version: &str) -> Result<Option<BaseRow>> {
        Ok(self
            .conn()
            .query_row(
                &format!("SELECT {BASE_COLUMNS} FROM bases WHERE version = ?1"),
                params![version],
                base_from_row,
            )
            .optional()?)
    }

    /// Every version of alias `alias`, oldest first.
    pub fn base_versions(&self, alias: &str) -> Result<Vec<BaseRow>> {
        let conn = self.conn();
        let mut stmt = conn.prepare_cached(&format!(
            "SELECT {BASE_COLUMNS} FROM bases WHERE alias = ?1 ORDER BY created_at, rowid"
        ))?;
        let rows = stmt.query_map(params![alias], base_from_row)?.collect::<rusqlite::Result<Vec<_>>>()?;
        Ok(rows)
    }

    /// All base versions, grouped by alias, oldest first within an alias.
    pub fn list_bases(&self) -> Result<Vec<BaseRow>> {
        let conn = self.conn();
        let mut stmt = conn
            .prepare_cached(&format!("SELECT {BASE_COLUMNS} FROM bases ORDER BY alias, created_at, rowid"))?;
        let rows = stmt.query_map([], base_from_row)?.collect::<rusqlite::Result<Vec<_>>>()?;
        Ok(rows)
    }

    /// Base versions whose parent is `version`.
    pub fn base_children(&self, version: &str) -> Result<Vec<BaseRow>> {
        let conn = self.conn();
        let mut stmt = conn.prepare_cached(&format!(
            "SELECT {BASE_COLUMNS} FROM bases WHERE parent = ?1 ORDER BY version"
        ))?;
        let rows = stmt.query_map(params![version], base_from_row)?.collect::<rusqlite::Result<Vec<_>>>()?;
        Ok(rows)
    }

    pub fn set_base_size(&self, version: &str, size: u64) -> Result<()> {
        self.conn()
            .execute("UPDATE bases SET size = ?2 WHERE version = ?1", params![version, size as i64])?;
        Ok(())
    }

    /// Clears the parent link of `version`'s children (a forced delete of a parent base; the
    /// children's subvolumes do not depend on it).
    pub fn orphan_base_children(&self, version: &str) -> Result<()> {
        self.conn().execute("UPDATE bases SET parent = NULL WHERE parent = ?1", params![version])?;
        Ok(())
    }

    pub fn delete_base(&self, version: &str) -> Result<bool> {
        Ok(self.conn().execute("DELETE FROM bases WHERE version = ?1", params![version])? > 0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    pub(crate) fn sample_box(project: &str, name: &str) -> BoxRow {
        BoxRow {
            project: project.into(),
            name: name.into(),
            base: "box-base".into(),
            forked_from: None,
            desired: BoxStatus::Running,
            pid: Some((42, 7)),
            port: 8080,
            cpus: 1.0,
            ram_mb: 1024,
            storage_gb: 10.0,
            grace_seconds: 10,
            env: BTreeMap::from([("A".into(), "1".into())]),
            tags: vec!["t".into()],
            data: vec![],
            created_at: "2026-01-01T00:00:00Z".into(),
            updated_at: "2026-01-01T00:00:00Z".into(),
            started_at: None,
        }
    }

    /// The file store is owner-only, with WAL and foreign keys on, also for a database an older
    /// version created world-readable.
    #[test]
    fn file_store_is_private_wal_and_enforces_foreign_keys() {
        use std::os::unix::fs::PermissionsExt;
        let d = tempfile::tempdir().unwrap();
        let path = d.path().join("forkr.db");
        std::fs::write(&path, b"").unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
        let s = Store::open(&path).unwrap();
        s.insert_box(&sample_box("p", "web")).unwrap();
        for f in ["forkr.db", "forkr.db-wal", "forkr.db-shm"] {
            let mode = std::fs::metadata(d.path().join(f)).unwrap().permissions().mode() & 0o777;
            assert_eq!(mode, 0o600, "{f}");
        }
        let conn = s.conn();
        let mode: String = conn.query_row("PRAGMA journal_mode", [], |r| r.get(0)).unwrap();
        assert_eq!(mode, "wal");
        let fk: i64 = conn.query_row("PRAGMA foreign_keys", [], |r| r.get(0)).unwrap();
        assert_eq!(fk, 1);
        let orphan = conn.execute(
            "INSERT INTO snapshots (project, box, name, created_at) VALUES ('p', 'ghost', 's', 'now')",
            [],
        );
        assert!(orphan.is_err(), "a snapshot row without its box was accepted");
    }

    #[test]
    fn box_round_trip_and_conflict() {
        let s = Store::in_memory().unwrap();
        let b = sample_box("p", "web");
        s.insert_box(&b).unwrap();
        assert_eq!(s.get_box("p", "web").unwrap().unwrap(), b);
        let e = s.insert_box(&b).unwrap_err();
        assert_eq!(e.kind(), crate::ErrorKind::Conflict);
        s.insert_box(&sample_box("q", "web")).unwrap();
        assert_eq!(s.list_boxes(Some("p")).unwrap().len(), 1);
        assert_eq!(s.list_boxes(None).unwrap().len(), 2);
        let mut b2 = b.clone();
        b2.port = 9090;
        b2.pid = None;
        s.update_box(&b2).unwrap();
        assert_eq!(s.get_box("p", "web").unwrap().unwrap(), b2);
        assert!(s.delete_box("p", "web").unwrap());
        assert!(!s.delete_box("p", "web").unwrap());
    }

    #[test]
    fn snapshots_cascade_and_unique() {
        let s = Store::in_memory().unwrap();
        s.insert_box(&sample_box("p", "web")).unwrap();
        let snap = SnapshotRow {
            project: "p".into(),
            r#box: "web".into(),
            name: "v0".into(),
            description: String::new(),
            size: None,
            created_at: "2026-01-01T00:00:00Z".into(),
        };
        s.insert_snapshot(&snap).unwrap();
        assert_eq!(s.insert_snapshot(&snap).unwrap_err().kind(), crate::ErrorKind::Conflict);
        assert_eq!(s.list_snapshots("p", "web").unwrap().len(), 1);
        s.delete_box("p", "web").unwrap();
        assert!(s.list_snapshots("p", "web").unwrap().is_empty());
    }

    #[test]
    fn bases() {
        let s = Store::in_memory().unwrap();
        let b = BaseRow {
            version: "box-base".into(),
            alias: "box-base".into(),
            kind: "import".into(),
            tag: None,
            builder: "tar".into(),
            parent: None,
            size: None,
            arch: "x86_64".into(),
            created_at: "2026-01-01T00:00:00Z".into(),
            tags: vec!["forkr.workspace=x".into()],
            script: Some("echo hi".into()),
        };
        s.insert_base(&b).unwrap();
        assert_eq!(s.get_base_version("box-base").unwrap().unwrap(), b);
        assert_eq!(s.insert_base(&b).unwrap_err().kind(), crate::ErrorKind::Conflict);
        let mut v2 = b.clone();
        v2.version = "box-base-v20260102000000".into();
        v2.parent = Some("box-base".into());
        v2.created_at = "2026-01-02T00:00:00Z".into();
        s.insert_base(&v2).unwrap();
        assert_eq!(s.base_versions("box-base").unwrap().len(), 2);
        assert_eq!(s.base_children("box-base").unwrap().len(), 1);
        s.set_base_size("box-base", 10).unwrap();
        assert_eq!(s.get_base_version("box-base").unwrap().unwrap().size, Some(10));
    }
}
