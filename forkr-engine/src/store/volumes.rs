//! Data volume rows and their snapshot rows (migration step 2).
//!
//! Which boxes mount a volume is not stored here a second time: each box row carries its mounts
//! (`boxes.data`), and the engine reads them from there, so the two can never disagree.

use rusqlite::{OptionalExtension, params};

use super::{Store, from_json, json, unique_or};
use crate::Result;

/// A data volume row. The subvolume lives at `Layout::volume(project, name)`.
#[derive(Debug, Clone, PartialEq)]
pub struct VolumeRow {
    pub project: String,
    pub name: String,
    /// The size the user asked for, in bytes (`None`: unlimited).
    pub size_bytes: Option<u64>,
    /// Whether a btrfs quota enforces `size_bytes` (false: recorded and reported only).
    pub size_enforced: bool,
    pub tags: Vec<String>,
    /// The volume this one was copied from (a `--fork` copy), if any.
    pub copied_from: Option<String>,
    pub created_at: String,
}

/// A volume snapshot (volume-checkpoint) row.
#[derive(Debug, Clone, PartialEq)]
pub struct VolumeSnapshotRow {
    pub project: String,
    pub volume: String,
    pub name: String,
    pub description: String,
    pub size: Option<u64>,
    pub created_at: String,
}

const VOLUME_COLUMNS: &str = "project, name, size_bytes, size_enforced, tags, copied_from, created_at";

fn volume_from_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<VolumeRow> {
    Ok(VolumeRow {
        project: r.get(0)?,
        name: r.get(1)?,
        size_bytes: r.get::<_, Option<i64>>(2)?.map(|s| s as u64),
        size_enforced: r.get(3)?,
        tags: from_json(&r.get::<_, String>(4)?),
        copied_from: r.get(5)?,
        created_at: r.get(6)?,
    })
}

fn volume_snapshot_from_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<VolumeSnapshotRow> {
    Ok(VolumeSnapshotRow {
        project: r.get(0)?,
        volume: r.get(1)?,
        name: r.get(2)?,
        description: r.get(3)?,
        size: r.get::<_, Option<i64>>(4)?.map(|s| s as u64),
        created_at: r.get(5)?,
    })
}

impl Store {
    /// Inserts a new volume; one with that name in the project already → 409 `conflict`.
    pub fn insert_volume(&self, v: &VolumeRow) -> Result<()> {
        self.conn()
            .execute(
                &format!("INSERT INTO volumes ({VOLUME_COLUMNS}) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)"),
                params![
                    v.project,
                    v.name,
                    v.size_bytes.map(|s| s as i64),
                    v.size_enforced,
                    json(&v.tags),
                    v.copied_from,
                    v.created_at,
                ],
            )
            .map_err(|e| {
                unique_or(e, "conflict", || {
                    format!("volume {:?} already exists in project {:?}", v.name, v.project)
                })
            })?;
        Ok(())
    }

    /// Overwrites the mutable columns (size, enforcement, tags) of an existing volume.
    pub fn update_volume(&self, v: &VolumeRow) -> Result<()> {
        let n = self.conn().execute(
            "UPDATE volumes SET size_bytes = ?3, size_enforced = ?4, tags = ?5 WHERE project = ?1 AND name = ?2",
            params![v.project, v.name, v.size_bytes.map(|s| s as i64), v.size_enforced, json(&v.tags)],
        )?;
        if n == 0 {
            return Err(crate::Error::not_found("volume", &v.name));
        }
        Ok(())
    }

    pub fn get_volume(&self, project: &str, name: &str) -> Result<Option<VolumeRow>> {
        Ok(self
            .conn()
            .query_row(
                &format!("SELECT {VOLUME_COLUMNS} FROM volumes WHERE project = ?1 AND name = ?2"),
                params![project, name],
                volume_from_row,
            )
            .optional()?)
    }

    /// The volumes of one project, by name.
    pub fn list_volumes(&self, project: &str) -> Result<Vec<VolumeRow>> {
        let conn = self.conn();
        let mut stmt = conn.prepare_cached(&format!(
            "SELECT {VOLUME_COLUMNS} FROM volumes WHERE project = ?1 ORDER BY name"
        ))?;
        let rows =
            stmt.query_map(params![project], volume_from_row)?.collect::<rusqlite::Result<Vec<_>>>()?;
        Ok(rows)
    }

    /// Deletes a volume row and (by cascade) its snapshot rows. Returns whether it existed.
    pub fn delete_volume(&self, project: &str, name: &str) -> Result<bool> {
        Ok(self
            .conn()
            .execute("DELETE FROM volumes WHERE project = ?1 AND name = ?2", params![project, name])?
            > 0)
    }

    /// Inserts a volume snapshot; a duplicate name on the volume → 409 `conflict`.
    pub fn insert_volume_snapshot(&self, s: &VolumeSnapshotRow) -> Result<()> {
        self.conn()
            .execute(
                "INSERT INTO volume_snapshots (project, volume, name, description, size, created_at) \
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
                params![s.project, s.volume, s.name, s.description, s.size.map(|v| v as i64), s.created_at],
            )
            .map_err(|e| {
                unique_or(e, "conflict", || {
                    format!("snapshot {:?} already exists on volume {:?}", s.name, s.volume)
                })
            })?;
        Ok(())
    }

    /// The snapshots of a volume, oldest first.
    pub fn list_volume_snapshots(&self, project: &str, volume: &str) -> Result<Vec<VolumeSnapshotRow>> {
        let conn = self.conn();
        let mut stmt = conn.prepare_cached(
            "SELECT project, volume, name, description, size, created_at FROM volume_snapshots \
             WHERE project = ?1 AND volume = ?2 ORDER BY created_at, rowid",
        )?;
        let rows = stmt
            .query_map(params![project, volume], volume_snapshot_from_row)?
            .collect::<rusqlite::Result<Vec<_>>>()?;
        Ok(rows)
    }

    pub fn set_volume_snapshot_size(&self, project: &str, volume: &str, name: &str, size: u64) -> Result<()> {
        self.conn().execute(
            "UPDATE volume_snapshots SET size = ?4 WHERE project = ?1 AND volume = ?2 AND name = ?3",
            params![project, volume, name, size as i64],
        )?;
        Ok(())
    }

    pub fn delete_volume_snapshot(&self, project: &str, volume: &str, name: &str) -> Result<bool> {
        Ok(self.conn().execute(
            "DELETE FROM volume_snapshots WHERE project = ?1 AND volume = ?2 AND name = ?3",
            params![project, volume, name],
        )? > 0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ErrorKind;

    fn vol(project: &str, name: &str) -> VolumeRow {
        VolumeRow {
            project: project.into(),
            name: name.into(),
            size_bytes: Some(1 << 30),
            size_enforced: true,
            tags: vec!["owner=ws".into()],
            copied_from: None,
            created_at: "2026-01-01T00:00:00Z".into(),
        }
    }

    fn snap(volume: &str, name: &str) -> VolumeSnapshotRow {
        VolumeSnapshotRow {
            project: "p".into(),
            volume: volume.into(),
            name: name.into(),
            description: String::new(),
            size: None,
            created_at: "2026-01-01T00:00:00Z".into(),
        }
    }

    #[test]
    fn volume_round_trip_conflict_and_update() {
        let s = Store::in_memory().unwrap();
        let v = vol("p", "pg");
        s.insert_volume(&v).unwrap();
        assert_eq!(s.get_volume("p", "pg").unwrap().unwrap(), v);
        let e = s.insert_volume(&v).unwrap_err();
        assert_eq!(e.kind(), ErrorKind::Conflict);
        assert!(e.message().contains("already exists"), "{}", e.message());
        s.insert_volume(&vol("q", "pg")).unwrap();
        s.insert_volume(&vol("p", "assets")).unwrap();
        let names: Vec<_> = s.list_volumes("p").unwrap().into_iter().map(|v| v.name).collect();
        assert_eq!(names, ["assets", "pg"]);

        let mut v2 = v.clone();
        v2.size_bytes = None;
        v2.size_enforced = false;
        v2.tags = vec![];
        s.update_volume(&v2).unwrap();
        assert_eq!(s.get_volume("p", "pg").unwrap().unwrap(), v2);
        assert_eq!(s.update_volume(&vol("p", "missing")).unwrap_err().kind(), ErrorKind::NotFound);
        assert!(s.delete_volume("p", "pg").unwrap());
        assert!(!s.delete_volume("p", "pg").unwrap());
        assert!(
            s.get_volume("q", "pg").unwrap().is_some(),
            "another project's volume of the same name stays"
        );
    }

    #[test]
    fn volume_snapshots_are_unique_per_volume_and_cascade() {
        let s = Store::in_memory().unwrap();
        s.insert_volume(&vol("p", "pg")).unwrap();
        s.insert_volume(&vol("p", "other")).unwrap();
        s.insert_volume_snapshot(&snap("pg", "v0")).unwrap();
        assert_eq!(s.insert_volume_snapshot(&snap("pg", "v0")).unwrap_err().kind(), ErrorKind::Conflict);
        s.insert_volume_snapshot(&snap("other", "v0")).unwrap();
        // A snapshot of a volume that does not exist violates the foreign key.
        assert!(s.insert_volume_snapshot(&snap("ghost", "v0")).is_err());
        s.set_volume_snapshot_size("p", "pg", "v0", 42).unwrap();
        assert_eq!(s.list_volume_snapshots("p", "pg").unwrap()[0].size, Some(42));
        s.delete_volume("p", "pg").unwrap();
        assert!(s.list_volume_snapshots("p", "pg").unwrap().is_empty());
        assert_eq!(s.list_volume_snapshots("p", "other").unwrap().len(), 1);
        assert!(s.delete_volume_snapshot("p", "other", "v0").unwrap());
        assert!(!s.delete_volume_snapshot("p", "other", "v0").unwrap());
    }
}
