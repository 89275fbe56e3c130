//! Bases: resolution of `--base` names, versioning, tarball import, listing.
//!
//! Versioning (document 000): the first write of a name creates a version of exactly that name; later
//! writes get `-vYYYYMMDDHHMMSS`. The alias (the name) always means the newest version; an exact
//! version name pins; `alias:tag` picks the newest version built from a script with that sha256.
//!
//! A new version is assembled in a scratch subvolume under `tmp/`, moved into `bases/` and set
//! read-only before its row is written; a crash in between leaves only scratch or an unregistered
//! subvolume, both removed by the reconcile pass on the next start.

use std::io::Read;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use super::{Engine, blocking, now};
use crate::api::{BaseInfo, BaseVersion};
use crate::name::{NameKind, validate};
use crate::store::BaseRow;
use crate::{Error, ErrorKind, Result};

/// The architecture every base must have (the host's).
pub const HOST_ARCH: &str = "x86_64";

/// How a new base version is made by an import.
pub struct BaseImport {
    pub name: String,
    /// Optional parent base (name, version or `alias:tag`) the tarball is layered on.
    pub parent: Option<String>,
    /// A `.tar.gz` of a root filesystem, already spooled to a local file.
    pub tarball: PathBuf,
}

fn to_api(r: &BaseRow) -> BaseVersion {
    BaseVersion {
        version: r.version.clone(),
        name: r.alias.clone(),
        kind: r.kind.clone(),
        tag: r.tag.clone(),
        builder: r.builder.clone(),
        parent: r.parent.clone(),
        size: r.size,
        arch: r.arch.clone(),
        created_at: r.created_at.clone(),
    }
}

/// Reads the ELF machine of the first of a few well-known binaries inside `root`.
pub(crate) fn detect_arch(root: &Path) -> Result<String> {
    for candidate in ["/bin/sh", "/usr/bin/env", "/bin/busybox", "/usr/bin/busybox", "/bin/bash"] {
        let Ok((head, _)) = read_head(root, candidate) else { continue };
        if head.len() < 20 || &head[..4] != b"\x7fELF" {
            continue;
        }
        let machine = u16::from_le_bytes([head[18], head[19]]);
        return Ok(match machine {
            62 => "x86_64",
            183 => "aarch64",
            3 => "i386",
            40 => "arm",
            243 => "riscv64",
            _ => "unknown",
        }
        .to_owned());
    }
    Err(Error::bad_request(
        "unknown_arch",
        "cannot verify the base architecture: the root filesystem has no /bin/sh, /usr/bin/env or busybox binary",
    ))
}

fn read_head(root: &Path, path: &str) -> Result<(Vec<u8>, u32)> {
    // Bounded read: only the ELF header matters, but `read_file` reads whole files, so cap at 64 MiB.
    let (mut data, mode) = super::fs::read_file(root, path, 64 << 20)?;
    data.truncate(64);
    Ok((data, mode))
}

/// Extracts a `.tar.gz` into `dst` without letting any entry write outside it. Device nodes are
/// skipped (a box gets its own minimal /dev at start); permission bits including setuid are kept,
/// because a root filesystem needs them (su, passwd) and the box runs as root anyway.
pub(crate) fn extract_tarball(tarball: &Path, dst: &Path) -> Result<()> {
    let f = std::fs::File::open(tarball).map_err(|e| Error::io("opening uploaded tarball", e))?;
    let mut head = [0u8; 2];
    let mut probe = std::fs::File::open(tarball).map_err(|e| Error::io("opening uploaded tarball", e))?;
    if probe.read_exact(&mut head).is_err() || head != [0x1f, 0x8b] {
        return Err(Error::bad_request("invalid_tarball", "the upload is not a gzip-compressed tar archive (.tar.gz)"));
    }
    let mut archive = tar::Archive::new(flate2::read::GzDecoder::new(f));
    archive.set_preserve_permissions(true);
    archive.set_preserve_ownerships(true);
    archive.set_preserve_mtime(true);
    archive.set_unpack_xattrs(false);
    archive.set_overwrite(true);
    let entries = archive.entries().map_err(|e| bad_archive(&e))?;
    for entry in entries {
        let mut entry = entry.map_err(|e| bad_archive(&e))?;
        let kind = entry.header().entry_type();
        if kind.is_block_special() || kind.is_character_special() {
            continue;
        }
        let path = entry.path().map_err(|e| bad_archive(&e))?.into_owned();
        if path.is_absolute() || path.components().any(|c| matches!(c, std::path::Component::ParentDir)) {
            return Err(Error::bad_request(
                "invalid_tarball",
                format!("archive entry {} points outside the root filesystem", path.display()),
            ));
        }
        if kind.is_hard_link() {
            if let Ok(Some(target)) = entry.link_name() {
                if target.is_absolute() || target.components().any(|c| matches!(c, std::path::Component::ParentDir)) {
                    return Err(Error::bad_request(
                        "invalid_tarball",
                        format!("hard link {} points outside the root filesystem", path.display()),
                    ));
                }
            }
        }
        // `unpack_in` refuses entries whose parent resolves outside `dst` through a symlink.
        let inside = entry.unpack_in(dst).map_err(|e| {
            if e.raw_os_error() == Some(libc::ENOSPC) {
                Error::io("extracting the archive", e)
            } else {
                Error::bad_request("invalid_tarball", format!("cannot extract {}: {e}", path.display()))
            }
        })?;
        if !inside {
            return Err(Error::bad_request(
                "invalid_tarball",
                format!("archive entry {} points outside the root filesystem", path.display()),
            ));
        }
    }
    Ok(())
}

fn bad_archive(e: &std::io::Error) -> Error {
    Error::bad_request("invalid_tarball", format!("the archive is not a valid .tar.gz: {e}"))
}

impl Engine {
    /// Resolves a `--base` argument to an existing version row.
    pub fn resolve_base(&self, spec: &str) -> Result<BaseRow> {
        if let Some((alias, tag)) = spec.split_once(':') {
            let versions = self.store.base_versions(alias)?;
            return versions
                .into_iter()
                .rev()
                .find(|v| v.tag.as_deref() == Some(tag))
                .ok_or_else(|| Error::new(ErrorKind::NotFound, "not_found", format!("base {alias:?} has no version tagged {tag:?}")));
        }
        if let Some(newest) = self.store.base_versions(spec)?.pop() {
            return Ok(newest);
        }
        self.store
            .get_base_version(spec)?
            .ok_or_else(|| Error::new(ErrorKind::NotFound, "not_found", format!("base {spec:?} not found; see `4kr base list`")))
    }

    /// The version name for the next write of `name`.
    pub(crate) fn next_version_name(&self, name: &str) -> Result<String> {
        if self.store.base_versions(name)?.is_empty() && self.store.get_base_version(name)?.is_none() {
            return Ok(name.to_owned());
        }
        let mut t = chrono::Utc::now();
        loop {
            let v = format!("{name}-v{}", t.format("%Y%m%d%H%M%S"));
            if self.store.get_base_version(&v)?.is_none() {
                return Ok(v);
            }
            t += chrono::Duration::seconds(1);
        }
    }

    /// Moves a finished scratch subvolume into `bases/`, sets it read-only and registers it.
    pub(crate) fn register_base(&self, scratch: &Path, mut row: BaseRow) -> Result<BaseRow> {
        let dst = self.layout.base(&row.version);
        std::fs::rename(scratch, &dst).map_err(|e| Error::io(format!("moving new base into {}", dst.display()), e))?;
        let registered = self.storage.set_read_only(&dst, true).and_then(|_| {
            row.created_at = now();
            self.store.insert_base(&row)
        });
        if let Err(e) = registered {
            let _ = self.storage.delete_subvolume(&dst);
            return Err(e);
        }
        Ok(row)
    }

    /// Measures a read-only base in the background (it never changes, so once is enough).
    pub(crate) fn measure_base(self: &Arc<Self>, version: String) {
        let this = self.clone();
        tokio::task::spawn_blocking(move || {
            let path = this.layout.base(&version);
            if let Ok(size) = this.storage.size(&path) {
                let _ = this.store.set_base_size(&version, size);
            }
        });
    }

    /// A fresh scratch path under `tmp/`.
    pub(crate) fn scratch_path(&self, what: &str) -> PathBuf {
        let n = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_nanos()).unwrap_or(0);
        self.layout.scratch().join(format!("{what}-{}-{n}", std::process::id()))
    }

    /// `base import`: a tarball, optionally layered on a parent.
    pub async fn import_base(self: &Arc<Self>, req: BaseImport) -> Result<BaseVersion> {
        validate(NameKind::Base, &req.name)?;
        let parent = match &req.parent {
            Some(p) => Some(self.resolve_base(p)?),
            None => None,
        };
        let this = self.clone();
        let row = blocking(move || {
            let scratch = this.scratch_path("import");
            match &parent {
                Some(p) => this.storage.snapshot(&this.layout.base(&p.version), &scratch, false)?,
                None => this.storage.create_subvolume(&scratch)?,
            }
            let built = extract_tarball(&req.tarball, &scratch).and_then(|_| detect_arch(&scratch)).and_then(|arch| {
                if arch != HOST_ARCH {
                    return Err(Error::bad_request(
                        "arch_mismatch",
                        format!("base architecture is {arch}, but this host runs {HOST_ARCH}; build the image for linux/amd64"),
                    ));
                }
                let version = this.next_version_name(&req.name)?;
                this.register_base(
                    &scratch,
                    BaseRow {
                        version,
                        alias: req.name.clone(),
                        kind: "import".into(),
                        tag: None,
                        builder: "tar".into(),
                        parent: parent.as_ref().map(|p| p.version.clone()),
                        size: None,
                        arch,
                        created_at: String::new(),
                    },
                )
            });
            if built.is_err() {
                let _ = this.storage.delete_subvolume(&scratch);
            }
            built
        })
        .await?;
        self.measure_base(row.version.clone());
        Ok(to_api(&row))
    }

    /// `base list`: every base name with its newest version.
    pub fn list_bases(&self) -> Result<Vec<BaseInfo>> {
        let mut out: Vec<BaseInfo> = Vec::new();
        for row in self.store.list_bases()? {
            match out.last_mut() {
                Some(b) if b.name == row.alias => {
                    b.latest = row.version.clone();
                    b.version_count += 1;
                    b.versions.push(to_api(&row));
                }
                _ => out.push(BaseInfo {
                    name: row.alias.clone(),
                    latest: row.version.clone(),
                    version_count: 1,
                    versions: vec![to_api(&row)],
                }),
            }
        }
        Ok(out)
    }

    /// `base show`: one base with all its versions, optionally only those with `tag`.
    pub fn show_base(&self, name: &str, tag: Option<&str>) -> Result<BaseInfo> {
        let rows = self.store.base_versions(name)?;
        let Some(latest) = rows.last() else {
            return Err(Error::new(ErrorKind::NotFound, "not_found", format!("base {name:?} not found; see `4kr base list`")));
        };
        let latest = latest.version.clone();
        let count = rows.len();
        let versions = rows.iter().filter(|r| tag.is_none_or(|t| r.tag.as_deref() == Some(t))).map(to_api).collect();
        Ok(BaseInfo { name: name.to_owned(), latest, version_count: count, versions })
    }
}
