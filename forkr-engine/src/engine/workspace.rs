//! What declarative apply needs from the server: the observed state of a project in one call, and
//! an expiring per-project lock that also refuses a saved plan made against a state that changed since.

use std::collections::BTreeMap;

use super::Engine;
use crate::api::{LockInfo, LockRequest};
use crate::plan::{Observed, ObservedBase, ObservedBaseVersion, ObservedSnapshot, ObservedVolume};
use crate::store::LockRow;
use crate::{Error, Result};

/// Longest a lock may be taken for in one go.
pub const MAX_LOCK_TTL: u64 = 3600;

fn unix_now() -> i64 {
    chrono::Utc::now().timestamp()
}

fn rfc3339(secs: i64) -> String {
    chrono::DateTime::from_timestamp(secs, 0)
        .map(|t| t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true))
        .unwrap_or_default()
}

impl Engine {
    /// `GET /projects/{p}/state`: everything a plan is made against, built exactly the way the
    /// client builds it, so fingerprints agree.
    pub fn observed(&self, project: &str) -> Result<Observed> {
        let boxes = self.list_boxes(project)?;
        let mut snapshots = BTreeMap::new();
        for b in &boxes {
            let snaps: Vec<ObservedSnapshot> = self
                .store
                .list_snapshots(project, &b.name)?
                .into_iter()
                .map(|s| ObservedSnapshot {
                    name: s.name,
                    description: (!s.description.is_empty()).then_some(s.description),
                    created_at: s.created_at,
                })
                .collect();
            if !snaps.is_empty() {
                snapshots.insert(b.name.clone(), snaps);
            }
        }
        let bases = self
            .list_bases()?
            .into_iter()
            .map(|b| ObservedBase {
                tags: b.versions.last().map(|v| v.tags.clone()).unwrap_or_default(),
                name: b.name,
                latest: b.latest,
                versions: b
                    .versions
                    .into_iter()
                    .map(|v| ObservedBaseVersion {
                        script: v.script,
                        version: v.version,
                        kind: v.kind,
                        tag: v.tag,
                        parent: v.parent,
                        created_at: v.created_at,
                    })
                    .collect(),
            })
            .collect();
        let volumes = self
            .store
            .list_volumes(project)?
            .into_iter()
            .map(|v| ObservedVolume {
                name: v.name,
                size_mib: v.size_bytes.map(|b| b / (1 << 20)),
                tags: v.tags,
            })
            .collect();
        Ok(Observed {
            project: project.to_owned(),
            boxes,
            bases,
            volumes,
            snapshots,
            publishes: self.observed_publishes()?,
            publish_domain: Some(self.config.domain.clone()),
        })
    }

    /// Every published host in any project, for plans (a host has one owner server-wide).
    fn observed_publishes(&self) -> Result<Vec<crate::plan::ObservedPublish>> {
        Ok(self
            .store
            .publish_routes()?
            .into_iter()
            .map(|r| crate::plan::ObservedPublish { host: r.host, project: r.project, box_name: r.name })
            .collect())
    }

    /// `POST /projects/{p}/lock`.
    pub fn take_lock(&self, project: &str, req: &LockRequest) -> Result<LockInfo> {
        crate::name::validate(crate::name::NameKind::Project, project)?;
        if req.ttl_seconds == 0 || req.ttl_seconds > MAX_LOCK_TTL {
            return Err(Error::bad_request(
                "invalid_ttl",
                format!("ttl_seconds must be between 1 and {MAX_LOCK_TTL}"),
            ));
        }
        if req.holder.trim().is_empty() || req.holder.len() > 200 {
            return Err(Error::bad_request(
                "invalid_holder",
                "holder must be 1-200 characters naming who takes the lock",
            ));
        }
        let now = unix_now();
        let id = super::random_hex(8)?;
        let row = LockRow {
            project: project.to_owned(),
            id: id.clone(),
            holder: req.holder.clone(),
            expires_at: now + req.ttl_seconds as i64,
        };
        if req.fingerprint.is_some() != req.scope.is_some() {
            return Err(Error::bad_request("invalid_request", "fingerprint and scope go together"));
        }
        self.store.take_lock(&row, now, || Ok(()))?;
        // The stale-plan test runs once the lock is held: it reads the whole store, which it cannot
        // do inside the lock's transaction (one connection), and no other apply can change the
        // project meanwhile. A stale plan gives the lock back.
        if let (Some(expected), Some(scope)) = (&req.fingerprint, &req.scope) {
            let fresh = self.observed(project).map(|o| &o.fingerprint(scope) == expected);
            if !matches!(fresh, Ok(true)) {
                let _ = self.store.release_lock(project, &id);
                fresh?;
                return Err(Error::conflict(
                    "stale_plan",
                    "the saved plan is stale: the server changed since it was made; run `4kr plan` again",
                ));
            }
        }
        Ok(LockInfo {
            project: project.to_owned(),
            id,
            holder: req.holder.clone(),
            expires_at: rfc3339(row.expires_at),
        })
    }

    /// `POST /projects/{p}/lock/{id}/refresh`.
    pub fn refresh_lock(&self, project: &str, id: &str, ttl_seconds: u64) -> Result<LockInfo> {
        let ttl = ttl_seconds.clamp(1, MAX_LOCK_TTL) as i64;
        let expires = unix_now() + ttl;
        self.store.refresh_lock(project, id, expires)?;
        Ok(LockInfo {
            project: project.to_owned(),
            id: id.to_owned(),
            holder: String::new(),
            expires_at: rfc3339(expires),
        })
    }

    /// `DELETE /projects/{p}/lock/{id}`.
    pub fn release_lock(&self, project: &str, id: &str) -> Result<()> {
        self.store.release_lock(project, id)
    }
}
