//! Box addresses and published hosts (migration step 4).
//!
//! Addresses are stored as integers (IPv4 in host order) so the allocator can range over them;
//! the engine maps them to and from the configured subnet. A box holds an address while it runs
//! (released on stop, like a pod IP), so a server restart keeps the addresses of running boxes.
//! The allocator hands addresses out round-robin from a persisted cursor rather than lowest-first:
//! a just-freed address is not reused at once, so peers' stale ARP entries and connections to a
//! box that stopped do not reach the next box.

use std::collections::HashSet;

use rusqlite::{OptionalExtension, params};

use super::Store;
use crate::{Error, Result};

/// A box's address.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AddressRow {
    pub project: String,
    pub name: String,
    pub address: u32,
}

/// A published host and where it leads: the owning box's port, and its address while it has one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PublishRoute {
    pub host: String,
    pub project: String,
    pub name: String,
    pub port: u16,
    pub address: Option<u32>,
}

/// The `net_state` key of the allocator's cursor.
const CURSOR: &str = "address_cursor";

impl Store {
    /// The box's address in `first..=last`: the one it holds if it is in that range, otherwise
    /// the next free one after the cursor. 409 `subnet_full` when every address is taken.
    pub fn allocate_address(&self, project: &str, name: &str, first: u32, last: u32) -> Result<u32> {
        if first > last {
            return Err(Error::internal(format!("empty address range {first}..={last}")));
        }
        let mut conn = self.conn();
        let tx = conn.transaction()?;
        let held: Option<i64> = tx
            .query_row(
                "SELECT address FROM box_addresses WHERE project = ?1 AND box = ?2",
                params![project, name],
                |r| r.get(0),
            )
            .optional()?;
        if let Some(a) = held {
            if (i64::from(first)..=i64::from(last)).contains(&a) {
                return Ok(a as u32);
            }
            // Outside the subnet the server now uses (it was reconfigured): give it up.
            tx.execute("DELETE FROM box_addresses WHERE project = ?1 AND box = ?2", params![project, name])?;
        }
        let cursor: Option<i64> = tx
            .query_row("SELECT value FROM net_state WHERE key = ?1", params![CURSOR], |r| r.get(0))
            .optional()?;
        let used: HashSet<u32> = {
            let mut stmt = tx.prepare("SELECT address FROM box_addresses WHERE address BETWEEN ?1 AND ?2")?;
            let rows = stmt.query_map(params![first, last], |r| r.get::<_, i64>(0))?;
            rows.collect::<rusqlite::Result<Vec<_>>>()?.into_iter().map(|a| a as u32).collect()
        };
        let size = u64::from(last - first) + 1;
        let start = match cursor {
            Some(c) if (i64::from(first)..=i64::from(last)).contains(&c) => u64::from(c as u32 - first),
            _ => 0,
        };
        let free = (0..size).map(|i| first + ((start + i) % size) as u32).find(|a| !used.contains(a));
        let Some(address) = free else {
            return Err(Error::conflict(
                "subnet_full",
                format!(
                    "no free address left for box {name:?}: all {size} addresses of the box subnet are in use; \
                     stop some boxes or restart forkr-server with a larger --subnet"
                ),
            ));
        };
        tx.execute(
            "INSERT INTO box_addresses (address, project, box) VALUES (?1, ?2, ?3)",
            params![address, project, name],
        )?;
        let next = if address == last { first } else { address + 1 };
        tx.execute(
            "INSERT INTO net_state (key, value) VALUES (?1, ?2) ON CONFLICT (key) DO UPDATE SET value = ?2",
            params![CURSOR, next],
        )?;
        tx.commit()?;
        Ok(address)
    }

    /// Gives up a box's address. Returns whether it had one.
    pub fn release_address(&self, project: &str, name: &str) -> Result<bool> {
        Ok(self
            .conn()
            .execute("DELETE FROM box_addresses WHERE project = ?1 AND box = ?2", params![project, name])?
            > 0)
    }

    /// Every box address, ordered by project and box.
    pub fn list_addresses(&self) -> Result<Vec<AddressRow>> {
        let conn = self.conn();
        let mut stmt =
            conn.prepare_cached("SELECT project, box, address FROM box_addresses ORDER BY project, box")?;
        let rows = stmt
            .query_map([], |r| {
                Ok(AddressRow { project: r.get(0)?, name: r.get(1)?, address: r.get::<_, i64>(2)? as u32 })
            })?
            .collect::<rusqlite::Result<Vec<_>>>()?;
        Ok(rows)
    }

    /// Every box's port, ordered by project and box (a light query for the proxy's routes: no
    /// JSON columns to decode).
    pub fn box_ports(&self) -> Result<Vec<(String, String, u16)>> {
        let conn = self.conn();
        let mut stmt = conn.prepare_cached("SELECT project, name, port FROM boxes ORDER BY project, name")?;
        let rows = stmt
            .query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get::<_, i64>(2)? as u16)))?
            .collect::<rusqlite::Result<Vec<_>>>()?;
        Ok(rows)
    }

    /// Publishes `host` on a box. The same box again is a no-op; another box's host is a 409
    /// `host_taken` unless `force`, which moves it. Returns the previous owner when it moved.
    pub fn publish(
        &self,
        host: &str,
        project: &str,
        name: &str,
        force: bool,
        created_at: &str,
    ) -> Result<Option<(String, String)>> {
        let mut conn = self.conn();
        let tx = conn.transaction()?;
        let owner: Option<(String, String)> = tx
            .query_row("SELECT project, box FROM publishes WHERE host = ?1", params![host], |r| {
                Ok((r.get(0)?, r.get(1)?))
            })
            .optional()?;
        let moved = match owner {
            Some((p, b)) if p == project && b == name => return Ok(None),
            Some((p, b)) if !force => {
                return Err(Error::conflict(
                    "host_taken",
                    format!(
                        "host {host} is already published by box {b:?} of project {p:?}; pass --force to take it over"
                    ),
                ));
            }
            other => other,
        };
        tx.execute(
            "INSERT INTO publishes (host, project, box, created_at) VALUES (?1, ?2, ?3, ?4) \
             ON CONFLICT (host) DO UPDATE SET project = ?2, box = ?3, created_at = ?4",
            params![host, project, name, created_at],
        )?;
        tx.commit()?;
        Ok(moved)
    }

    /// Unpublishes `host` from a box: 404 `not_published` when nobody publishes it, 403
    /// `host_not_owned` when another box does.
    pub fn unpublish(&self, host: &str, project: &str, name: &str) -> Result<()> {
        let mut conn = self.conn();
        let tx = conn.transaction()?;
        let owner: Option<(String, String)> = tx
            .query_row("SELECT project, box FROM publishes WHERE host = ?1", params![host], |r| {
                Ok((r.get(0)?, r.get(1)?))
            })
            .optional()?;
        match owner {
            None => Err(Error::new(
                crate::ErrorKind::NotFound,
                "not_published",
                format!("host {host} is not published"),
            )),
            Some((p, b)) if p != project || b != name => Err(Error::forbidden(
                "host_not_owned",
                format!(
                    "host {host} is published by box {b:?} of project {p:?}, not by {name:?} of {project:?}; \
                     unpublish it from that box"
                ),
            )),
            Some(_) => {
                tx.execute("DELETE FROM publishes WHERE host = ?1", params![host])?;
                tx.commit()?;
                Ok(())
            }
        }
    }

    /// The hosts a box publishes, sorted.
    pub fn box_publishes(&self, project: &str, name: &str) -> Result<Vec<String>> {
        let conn = self.conn();
        let mut stmt =
            conn.prepare_cached("SELECT host FROM publishes WHERE project = ?1 AND box = ?2 ORDER BY host")?;
        let rows =
            stmt.query_map(params![project, name], |r| r.get(0))?.collect::<rusqlite::Result<Vec<_>>>()?;
        Ok(rows)
    }

    /// Every published host with its box's port and current address.
    pub fn publish_routes(&self) -> Result<Vec<PublishRoute>> {
        let conn = self.conn();
        let mut stmt = conn.prepare_cached(
            "SELECT p.host, p.project, p.box, b.port, a.address FROM publishes p \
             JOIN boxes b ON b.project = p.project AND b.name = p.box \
             LEFT JOIN box_addresses a ON a.project = p.project AND a.box = p.box \
             ORDER BY p.host",
        )?;
        let rows = stmt
            .query_map([], |r| {
                Ok(PublishRoute {
                    host: r.get(0)?,
                    project: r.get(1)?,
                    name: r.get(2)?,
                    port: r.get::<_, i64>(3)? as u16,
                    address: r.get::<_, Option<i64>>(4)?.map(|a| a as u32),
                })
            })?
            .collect::<rusqlite::Result<Vec<_>>>()?;
        Ok(rows)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ErrorKind;

    fn store_with_boxes(boxes: &[(&str, &str)]) -> Store {
        let s = Store::in_memory().unwrap();
        for (p, n) in boxes {
            s.conn()
                .execute(
                    "INSERT INTO boxes (project, name, base, desired, port, cpus, ram_mb, storage_gb, \
                     grace_seconds, env, tags, data, created_at, updated_at) \
                     VALUES (?1, ?2, 'b', 'running', 8080, 1, 64, 1, 10, '{}', '[]', '[]', 't', 't')",
                    params![p, n],
                )
                .unwrap();
        }
        s
    }

    #[test]
    fn addresses_rotate_are_kept_and_run_out() {
        let s = store_with_boxes(&[("p", "a"), ("p", "b"), ("p", "c"), ("q", "a")]);
        assert_eq!(s.allocate_address("p", "a", 10, 12).unwrap(), 10);
        assert_eq!(s.allocate_address("p", "a", 10, 12).unwrap(), 10, "a box keeps its address");
        assert_eq!(s.allocate_address("p", "b", 10, 12).unwrap(), 11);
        assert!(s.release_address("p", "a").unwrap());
        assert!(!s.release_address("p", "a").unwrap());
        // Round-robin: the freed 10 is not handed out before 12.
        assert_eq!(s.allocate_address("p", "c", 10, 12).unwrap(), 12);
        assert_eq!(s.allocate_address("q", "a", 10, 12).unwrap(), 10);
        let e = s.allocate_address("p", "a", 10, 12).unwrap_err();
        assert_eq!((e.kind(), e.code()), (ErrorKind::Conflict, "subnet_full"));
        // A new range (the subnet changed) moves the box.
        assert_eq!(s.allocate_address("p", "b", 100, 200).unwrap(), 100);
        let all: Vec<_> =
            s.list_addresses().unwrap().into_iter().map(|r| (r.project, r.name, r.address)).collect();
        assert_eq!(
            all,
            [("p".into(), "b".into(), 100), ("p".into(), "c".into(), 12), ("q".into(), "a".into(), 10)]
        );
        // Deleting the box frees its address.
        s.delete_box("p", "c").unwrap();
        assert_eq!(s.list_addresses().unwrap().len(), 2);
        // A box that does not exist cannot hold an address.
        assert!(s.allocate_address("p", "ghost", 10, 12).is_err());
    }

    #[test]
    fn hosts_have_one_owner() {
        let s = store_with_boxes(&[("p", "web"), ("p", "api"), ("q", "web")]);
        assert_eq!(s.publish("web.example.com", "p", "web", false, "t").unwrap(), None);
        assert_eq!(s.publish("web.example.com", "p", "web", false, "t").unwrap(), None, "idempotent");
        let e = s.publish("web.example.com", "q", "web", false, "t").unwrap_err();
        assert_eq!((e.kind(), e.code()), (ErrorKind::Conflict, "host_taken"));
        assert!(e.message().contains("--force"), "{}", e.message());
        let e = s.unpublish("web.example.com", "p", "api").unwrap_err();
        assert_eq!((e.kind(), e.code()), (ErrorKind::Forbidden, "host_not_owned"));
        assert_eq!(
            s.publish("web.example.com", "q", "web", true, "t").unwrap(),
            Some(("p".into(), "web".into()))
        );
        assert!(s.box_publishes("p", "web").unwrap().is_empty());
        assert_eq!(s.box_publishes("q", "web").unwrap(), ["web.example.com"]);
        s.publish("api.example.com", "p", "api", false, "t").unwrap();
        s.allocate_address("p", "api", 5, 9).unwrap();
        assert_eq!(s.box_ports().unwrap()[0], ("p".into(), "api".into(), 8080));
        let routes = s.publish_routes().unwrap();
        assert_eq!(routes.len(), 2);
        assert_eq!(
            (routes[0].host.as_str(), routes[0].address, routes[0].port),
            ("api.example.com", Some(5), 8080)
        );
        assert_eq!(routes[1].address, None, "a stopped box has no address");
        s.unpublish("api.example.com", "p", "api").unwrap();
        let e = s.unpublish("api.example.com", "p", "api").unwrap_err();
        assert_eq!((e.kind(), e.code()), (ErrorKind::NotFound, "not_published"));
        // Hosts go with their box.
        s.delete_box("q", "web").unwrap();
        assert!(s.publish_routes().unwrap().is_empty());
    }
}
