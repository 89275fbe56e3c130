//! Per-project apply locks with an expiry (Terraform-style state locking).
//!
//! Taking a lock is one transaction: drop an expired lock, then insert; the primary key on the
//! project makes a second holder fail inside SQLite. A client killed while holding the lock leaves
//! a row that simply expires.

use rusqlite::{OptionalExtension, params};

use super::Store;
use crate::{Error, Result};

/// A held lock.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LockRow {
    pub project: String,
    pub id: String,
    pub holder: String,
    /// Unix seconds.
    pub expires_at: i64,
}

impl Store {
    /// Takes the lock of `project` for `holder` until `expires_at`, unless someone else holds an
    /// unexpired one (409 `locked`). `check` runs inside the same transaction before the insert
    /// (the stale-plan test), so nothing can change between the check and taking the lock.
    pub fn take_lock(&self, lock: &LockRow, now: i64, check: impl FnOnce() -> Result<()>) -> Result<()> {
        let mut conn = self.conn();
        let tx = conn.transaction()?;
        tx.execute("DELETE FROM locks WHERE project = ?1 AND expires_at <= ?2", params![lock.project, now])?;
        let held: Option<(String, i64)> = tx
            .query_row(
                "SELECT holder, expires_at FROM locks WHERE project = ?1",
                params![lock.project],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )
            .optional()?;
        if let Some((holder, expires)) = held {
            return Err(Error::conflict(
                "locked",
                format!(
                    "project {:?} is locked by {holder} for {}s more; wait for that apply to finish (a lock left by a killed client expires by itself)",
                    lock.project,
                    (expires - now).max(0)
                ),
            ));
        }
        check()?;
        tx.execute(
            "INSERT INTO locks (project, id, holder, expires_at) VALUES (?1, ?2, ?3, ?4)",
            params![lock.project, lock.id, lock.holder, lock.expires_at],
        )?;
        tx.commit()?;
        Ok(())
    }

    /// Extends a lock the caller holds; 409 `lock_lost` when it expired and was taken or dropped.
    pub fn refresh_lock(&self, project: &str, id: &str, expires_at: i64) -> Result<()> {
        let n = self.conn().execute(
            "UPDATE locks SET expires_at = ?3 WHERE project = ?1 AND id = ?2",
            params![project, id, expires_at],
        )?;
        if n == 0 {
            return Err(Error::conflict(
                "lock_lost",
                format!("the lock on project {project:?} is no longer held by this client"),
            ));
        }
        Ok(())
    }

    /// Releases a lock; releasing one that is gone is not an error.
    pub fn release_lock(&self, project: &str, id: &str) -> Result<()> {
        self.conn().execute("DELETE FROM locks WHERE project = ?1 AND id = ?2", params![project, id])?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lock(id: &str, expires_at: i64) -> LockRow {
        LockRow { project: "p".into(), id: id.into(), holder: format!("h-{id}"), expires_at }
    }

    #[test]
    fn one_holder_and_expiry() {
        let s = Store::in_memory().unwrap();
        s.take_lock(&lock("a", 100), 0, || Ok(())).unwrap();
        let e = s.take_lock(&lock("b", 200), 50, || Ok(())).unwrap_err();
        assert_eq!(e.code(), "locked");
        assert!(e.message().contains("h-a"));
        s.refresh_lock("p", "a", 300).unwrap();
        assert!(s.take_lock(&lock("b", 400), 150, || Ok(())).is_err());
        // Expired: the next taker wins and the old holder has lost it.
        s.take_lock(&lock("b", 500), 300, || Ok(())).unwrap();
        assert_eq!(s.refresh_lock("p", "a", 600).unwrap_err().code(), "lock_lost");
        s.release_lock("p", "b").unwrap();
        s.release_lock("p", "b").unwrap();
        s.take_lock(&lock("c", 700), 301, || Ok(())).unwrap();
    }

    #[test]
    fn failed_check_takes_nothing() {
        let s = Store::in_memory().unwrap();
        let e = s.take_lock(&lock("a", 100), 0, || Err(Error::conflict("stale_plan", "stale"))).unwrap_err();
        assert_eq!(e.code(), "stale_plan");
        s.take_lock(&lock("b", 100), 0, || Ok(())).unwrap();
    }
}
