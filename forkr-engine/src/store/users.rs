//! Project user rows (migration step 6, document 004).
//!
//! UIDs start at [`FIRST_UID`] and are assigned as max(existing) + 1 within the project, computed
//! by the `INSERT … SELECT` itself: SQLite runs the statement atomically, and `UNIQUE (project,
//! uid)` would turn any race into a conflict rather than two users sharing a UID. GID = UID, so it is
//! not stored twice.

use rusqlite::{OptionalExtension, params};

use super::{Store, unique_or};
use crate::{Error, Result};

/// The first UID of every project.
pub const FIRST_UID: u32 = 20_000;
/// The last UID a project user may get: 65534 is `nobody` and 65535 is `(uid_t)-1` on 16-bit
/// tools, so project users stop just below.
pub const LAST_UID: u32 = 65_533;

/// A project user. The home is always `/home/<name>`; GID equals `uid`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UserRow {
    pub project: String,
    pub name: String,
    pub uid: u32,
    pub shell: String,
    pub created_at: String,
}

const USER_COLUMNS: &str = "project, name, uid, shell, created_at";

fn user_from_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<UserRow> {
    Ok(UserRow {
        project: r.get(0)?,
        name: r.get(1)?,
        uid: r.get::<_, i64>(2)? as u32,
        shell: r.get(3)?,
        created_at: r.get(4)?,
    })
}

impl Store {
    /// Inserts a user with the next UID of its project and returns the stored row. A user with that
    /// name in the project already → 409 `conflict`; a project out of UIDs → 409 `no_uids`.
    pub fn insert_user(&self, project: &str, name: &str, shell: &str, created_at: &str) -> Result<UserRow> {
        let conn = self.conn();
        let next: i64 = conn.query_row(
            "SELECT COALESCE(MAX(uid) + 1, ?2) FROM users WHERE project = ?1",
            params![project, FIRST_UID as i64],
            |r| r.get(0),
        )?;
        if next > LAST_UID as i64 {
            return Err(Error::conflict(
                "no_uids",
                format!(
                    "project {project:?} has used every user ID up to {LAST_UID}; delete the user with \
                     the highest UID to free it"
                ),
            ));
        }
        conn.execute(
            &format!(
                "INSERT INTO users ({USER_COLUMNS}) \
                 SELECT ?1, ?2, COALESCE(MAX(uid) + 1, ?3), ?4, ?5 FROM users WHERE project = ?1"
            ),
            params![project, name, FIRST_UID as i64, shell, created_at],
        )
        .map_err(|e| {
            unique_or(e, "conflict", || format!("user {name:?} already exists in project {project:?}"))
        })?;
        conn.query_row(
            &format!("SELECT {USER_COLUMNS} FROM users WHERE project = ?1 AND name = ?2"),
            params![project, name],
            user_from_row,
        )
        .map_err(Into::into)
    }

    pub fn get_user(&self, project: &str, name: &str) -> Result<Option<UserRow>> {
        Ok(self
            .conn()
            .query_row(
                &format!("SELECT {USER_COLUMNS} FROM users WHERE project = ?1 AND name = ?2"),
                params![project, name],
                user_from_row,
            )
            .optional()?)
    }

    /// The users of one project, by UID (creation order).
    pub fn list_users(&self, project: &str) -> Result<Vec<UserRow>> {
        let conn = self.conn();
        let mut stmt = conn
            .prepare_cached(&format!("SELECT {USER_COLUMNS} FROM users WHERE project = ?1 ORDER BY uid"))?;
        let rows = stmt.query_map(params![project], user_from_row)?.collect::<rusqlite::Result<Vec<_>>>()?;
        Ok(rows)
    }

    /// Changes a user's shell. Returns whether the user exists.
    pub fn set_user_shell(&self, project: &str, name: &str, shell: &str) -> Result<bool> {
        Ok(self.conn().execute(
            "UPDATE users SET shell = ?3 WHERE project = ?1 AND name = ?2",
            params![project, name, shell],
        )? > 0)
    }

    /// Deletes a user row. Returns whether it existed.
    pub fn delete_user(&self, project: &str, name: &str) -> Result<bool> {
        Ok(self
            .conn()
            .execute("DELETE FROM users WHERE project = ?1 AND name = ?2", params![project, name])?
            > 0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ErrorKind;

    #[test]
    fn uids_are_sequential_per_project_and_names_unique() {
        let s = Store::in_memory().unwrap();
        let a = s.insert_user("p", "alice", "/bin/bash", "t").unwrap();
        let b = s.insert_user("p", "bob", "/bin/bash", "t").unwrap();
        let other = s.insert_user("q", "alice", "/bin/sh", "t").unwrap();
        assert_eq!((a.uid, b.uid, other.uid), (20_000, 20_001, 20_000));
        let dup = s.insert_user("p", "alice", "/bin/bash", "t").unwrap_err();
        assert_eq!((dup.kind(), dup.code()), (ErrorKind::Conflict, "conflict"));
        assert!(dup.message().contains("already exists"), "{dup}");
        // max(existing) + 1: deleting the newest frees its UID, deleting an older one does not.
        assert!(s.delete_user("p", "bob").unwrap());
        assert!(!s.delete_user("p", "bob").unwrap());
        assert_eq!(s.insert_user("p", "carol", "/bin/bash", "t").unwrap().uid, 20_001);
        assert!(s.delete_user("p", "alice").unwrap());
        assert_eq!(s.insert_user("p", "dave", "/bin/bash", "t").unwrap().uid, 20_002);
        let names: Vec<String> = s.list_users("p").unwrap().into_iter().map(|u| u.name).collect();
        assert_eq!(names, ["carol", "dave"]);
        assert!(s.set_user_shell("p", "dave", "/bin/sh").unwrap());
        assert_eq!(s.get_user("p", "dave").unwrap().unwrap().shell, "/bin/sh");
        assert!(!s.set_user_shell("p", "nobody-here", "/bin/sh").unwrap());
        assert_eq!(s.get_user("q", "dave").unwrap(), None);
    }

    #[test]
    fn a_project_out_of_uids_is_a_conflict() {
        let s = Store::in_memory().unwrap();
        s.conn()
            .execute(
                "INSERT INTO users (project, name, uid, shell, created_at) VALUES ('p', 'last', ?1, '/bin/bash', 't')",
                params![LAST_UID as i64],
            )
            .unwrap();
        let e = s.insert_user("p", "more", "/bin/bash", "t").unwrap_err();
        assert_eq!(e.code(), "no_uids");
    }
}
