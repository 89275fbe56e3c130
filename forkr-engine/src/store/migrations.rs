//! Schema migrations, applied in order inside one transaction each; `PRAGMA user_version` records how
//! many have run. Append new steps; never edit a released one.

use rusqlite::Connection;

use crate::Result;

const STEPS: &[&str] = &[
    // 1: boxes, root snapshots, bases.
    "CREATE TABLE boxes (
        project TEXT NOT NULL,
        name TEXT NOT NULL,
        base TEXT NOT NULL,
        forked_from TEXT,
        desired TEXT NOT NULL CHECK (desired IN ('running', 'stopped')),
        pid INTEGER,
        pid_start INTEGER,
        port INTEGER NOT NULL,
        cpus REAL NOT NULL,
        ram_mb INTEGER NOT NULL,
        storage_gb REAL NOT NULL,
        grace_seconds INTEGER NOT NULL,
        env TEXT NOT NULL,
        tags TEXT NOT NULL,
        data TEXT NOT NULL,
        created_at TEXT NOT NULL,
        updated_at TEXT NOT NULL,
        started_at TEXT,
        PRIMARY KEY (project, name)
    );
    CREATE INDEX boxes_base ON boxes (base);
    CREATE TABLE snapshots (
        project TEXT NOT NULL,
        box TEXT NOT NULL,
        name TEXT NOT NULL,
        description TEXT NOT NULL DEFAULT '',
        size INTEGER,
        created_at TEXT NOT NULL,
        PRIMARY KEY (project, box, name),
        FOREIGN KEY (project, box) REFERENCES boxes (project, name) ON DELETE CASCADE
    );
    CREATE TABLE bases (
        version TEXT PRIMARY KEY,
        alias TEXT NOT NULL,
        kind TEXT NOT NULL,
        tag TEXT,
        builder TEXT NOT NULL,
        parent TEXT REFERENCES bases (version),
        size INTEGER,
        arch TEXT NOT NULL,
        created_at TEXT NOT NULL
    );
    CREATE INDEX bases_alias ON bases (alias);",
    // 2: data volumes and their snapshots (volume-checkpoints). Backups are files that outlive
    // their volume, so they have no rows.
    "CREATE TABLE volumes (
        project TEXT NOT NULL,
        name TEXT NOT NULL,
        size_bytes INTEGER,
        size_enforced INTEGER NOT NULL DEFAULT 0,
        tags TEXT NOT NULL DEFAULT '[]',
        copied_from TEXT,
        created_at TEXT NOT NULL,
        PRIMARY KEY (project, name)
    );
    CREATE TABLE volume_snapshots (
        project TEXT NOT NULL,
        volume TEXT NOT NULL,
        name TEXT NOT NULL,
        description TEXT NOT NULL DEFAULT '',
        size INTEGER,
        created_at TEXT NOT NULL,
        PRIMARY KEY (project, volume, name),
        FOREIGN KEY (project, volume) REFERENCES volumes (project, name) ON DELETE CASCADE
    );",
    // 3: ownership tags and build scripts on bases; per-project apply locks with an expiry, so a
    // lock left by a killed client frees itself.
    "ALTER TABLE bases ADD COLUMN tags TEXT NOT NULL DEFAULT '[]';
    ALTER TABLE bases ADD COLUMN script TEXT;
    CREATE TABLE locks (
        project TEXT PRIMARY KEY,
        id TEXT NOT NULL,
        holder TEXT NOT NULL,
        expires_at INTEGER NOT NULL
    );",
    // 4 (networking): the address of each box on the host bridge (held while it runs, so a restarted
    // server keeps them), the allocator's cursor, and published hosts (one owner per host).
    "CREATE TABLE box_addresses (
        address INTEGER PRIMARY KEY,
        project TEXT NOT NULL,
        box TEXT NOT NULL,
        UNIQUE (project, box),
        FOREIGN KEY (project, box) REFERENCES boxes (project, name) ON DELETE CASCADE
    );
    CREATE TABLE net_state (
        key TEXT PRIMARY KEY,
        value INTEGER NOT NULL
    );
    CREATE TABLE publishes (
        host TEXT PRIMARY KEY,
        project TEXT NOT NULL,
        box TEXT NOT NULL,
        created_at TEXT NOT NULL,
        FOREIGN KEY (project, box) REFERENCES boxes (project, name) ON DELETE CASCADE
    );
    CREATE INDEX publishes_box ON publishes (project, box);",
    // 5 (hardening): API tokens limited to one project. Only a SHA-256 of the token is kept, so a
    // copy of the database grants nothing; `id` names a token for listing and revoking.
    "CREATE TABLE tokens (
        id TEXT PRIMARY KEY,
        hash TEXT NOT NULL UNIQUE,
        project TEXT NOT NULL,
        created_at TEXT NOT NULL
    );",
    // 6 (project users, document 004): one row per user; UIDs are unique per project and
    // allocated as max(existing) + 1 from 20000 inside the INSERT itself, so two concurrent creates
    // can never get the same UID.
    "CREATE TABLE users (
        project TEXT NOT NULL,
        name TEXT NOT NULL,
        uid INTEGER NOT NULL,
        shell TEXT NOT NULL,
        created_at TEXT NOT NULL,
        PRIMARY KEY (project, name),
        UNIQUE (project, uid)
    );",
];

pub(super) fn run(conn: &mut Connection) -> Result<()> {
    let done: usize = conn.query_row("PRAGMA user_version", [], |r| r.get::<_, i64>(0))? as usize;
    for (i, step) in STEPS.iter().enumerate().skip(done) {
        let tx = conn.transaction()?;
        tx.execute_batch(step)?;
        tx.pragma_update(None, "user_version", (i + 1) as i64)?;
        tx.commit()?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    #[test]
    fn migrations_are_idempotent() {
        let mut c = rusqlite::Connection::open_in_memory().unwrap();
        super::run(&mut c).unwrap();
        super::run(&mut c).unwrap();
        let v: i64 = c.query_row("PRAGMA user_version", [], |r| r.get(0)).unwrap();
        assert_eq!(v as usize, super::STEPS.len());
    }
}
