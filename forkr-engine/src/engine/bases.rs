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
    /// Ownership tags for the new version.
    pub tags: Vec<String>,
    /// The sha256 (hex) of what the tarball was made from (a workspace's tarball or Dockerfile),
    /// recorded as the version's TAG so that a declarative apply sees an unchanged source as built.
    pub build_tag: Option<String>,
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
        tags: r.tags.clone(),
        script: r.script.clone(),
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
        return Err(Error::bad_request(
            "invalid_tarball",
            "the upload is not a gzip-compressed tar archive (.tar.gz)",
        ));
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
        if kind.is_hard_link()
            && let Ok(Some(target)) = entry.link_name()
            && (target.is_absolute()
                || target.components().any(|c| matches!(c, std::path::Component::ParentDir)))
        {
            return Err(Error::bad_request(
                "invalid_tarball",
                format!("hard link {} points outside the root filesystem", path.display()),
            ));
        }
        // `unpack_in` refuses entries whose parent resolves outside `dst` through a symlink.
        let inside = entry.unpack_in(dst).map_err(|e| {
            if e.raw_os_error() == Some(libc::ENOSPC) {
                Error::io("extracting the archive", e)
            } else if error_chain(&e).contains("outside of destination") {
                Error::bad_request(
                    "invalid_tarball",
                    format!("archive entry {} points outside the root filesystem", path.display()),
                )
            } else {
                // The io error's text names server paths; its kind says enough.
                Error::bad_request(
                    "invalid_tarball",
                    format!("cannot extract {}: {}", path.display(), e.kind()),
                )
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

/// The messages of `e` and all its sources: the `tar` crate wraps "trying to unpack outside of
/// destination" (e.g. a hard link whose target resolves through a symlink out of the root) in a
/// "failed to unpack" error, so the outer message alone does not say why.
fn error_chain(e: &std::io::Error) -> String {
    let mut text = e.to_string();
    let mut source = std::error::Error::source(e);
    while let Some(s) = source {
        text.push_str(": ");
        text.push_str(&s.to_string());
        source = s.source();
    }
    text
}

fn bad_archive(e: &std::io::Error) -> Error {
    Error::bad_request("invalid_tarball", format!("the archive is not a valid .tar.gz: {e}"))
}

impl Engine {
    /// Resolves a `--base` argument to an existing version row.
    pub fn resolve_base(&self, spec: &str) -> Result<BaseRow> {
        if let Some((alias, tag)) = spec.split_once(':') {
            let versions = self.store.base_versions(alias)?;
            return versions.into_iter().rev().find(|v| v.tag.as_deref() == Some(tag)).ok_or_else(|| {
                Error::new(
                    ErrorKind::NotFound,
                    "not_found",
                    format!("base {alias:?} has no version tagged {tag:?}"),
                )
            });
        }
        if let Some(newest) = self.store.base_versions(spec)?.pop() {
            return Ok(newest);
        }
        self.store.get_base_version(spec)?.ok_or_else(|| {
            Error::new(
                ErrorKind::NotFound,
                "not_found",
                format!("base {spec:?} not found; see `4kr base list`"),
            )
        })
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
        std::fs::rename(scratch, &dst)
            .map_err(|e| Error::io(format!("moving new base into {}", dst.display()), e))?;
        crate::fault::point("base.after_move");
        let registered = self.storage.set_read_only(&dst, true).and_then(|_| {
            crate::fault::point("base.after_read_only");
            row.created_at = now();
            self.store.insert_base(&row)
        });
        crate::fault::point("base.after_row");
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
        let n = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or(0);
        self.layout.scratch().join(format!("{what}-{}-{n}", std::process::id()))
    }

    /// `base import`: a tarball, optionally layered on a parent.
    pub async fn import_base(self: &Arc<Self>, req: BaseImport) -> Result<BaseVersion> {
        validate(NameKind::Base, &req.name)?;
        if let Some(t) = &req.build_tag
            && !(t.len() == 64 && t.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b)))
        {
            return Err(Error::bad_request(
                "invalid_tag",
                "build_tag must be a sha256 in lowercase hex (64 characters)",
            ));
        }
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
            let built = extract_tarball(&req.tarball, &scratch)
                .inspect(|_| crate::fault::point("import.after_extract"))
                .and_then(|_| detect_arch(&scratch)).and_then(|arch| {
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
                        tag: req.build_tag.clone(),
                        builder: "tar".into(),
                        parent: parent.as_ref().map(|p| p.version.clone()),
                        size: None,
                        arch,
                        created_at: String::new(),
                        tags: req.tags.clone(),
                        script: None,
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
            return Err(Error::new(
                ErrorKind::NotFound,
                "not_found",
                format!("base {name:?} not found; see `4kr base list`"),
            ));
        };
        let latest = latest.version.clone();
        let count = rows.len();
        let versions =
            rows.iter().filter(|r| tag.is_none_or(|t| r.tag.as_deref() == Some(t))).map(to_api).collect();
        Ok(BaseInfo { name: name.to_owned(), latest, version_count: count, versions })
    }
}

/// How a version saved from a box root is described.
struct NewVersion {
    kind: &'static str,
    builder: String,
    tag: Option<String>,
    tags: Vec<String>,
    script: Option<String>,
}

/// The project transient build boxes live in.
pub const BUILD_PROJECT: &str = "forkr-builds";

impl Engine {
    /// `base save <base> <box>`: the box's on-disk root becomes a new version. The box need not run.
    pub async fn save_base(
        self: &Arc<Self>,
        name: &str,
        project: &str,
        box_name: &str,
        tags: Vec<String>,
    ) -> Result<BaseVersion> {
        validate(NameKind::Base, name)?;
        validate(NameKind::Project, project)?;
        validate(NameKind::Box, box_name)?;
        let _g = self.lock_box(project, box_name).await;
        let src = self.require_box(project, box_name)?;
        let meta = NewVersion {
            kind: "save",
            builder: format!("box:{project}/{box_name}"),
            tag: None,
            tags,
            script: None,
        };
        let row = self.save_root_as_base(name, &src, meta).await?;
        self.measure_base(row.version.clone());
        Ok(to_api(&row))
    }

    async fn save_root_as_base(
        self: &Arc<Self>,
        name: &str,
        src: &crate::store::BoxRow,
        meta: NewVersion,
    ) -> Result<BaseRow> {
        let this = self.clone();
        let root = self.layout.root(&src.project, &src.name);
        let (name, parent) = (name.to_owned(), src.base.clone());
        blocking(move || {
            if !this.storage.is_subvolume(&root) {
                return Err(Error::new(
                    ErrorKind::NotFound,
                    "not_found",
                    "the box's root filesystem does not exist on disk",
                ));
            }
            let scratch = this.scratch_path("save");
            this.storage.snapshot(&root, &scratch, false)?;
            let arch = detect_arch(&scratch).unwrap_or_else(|_| HOST_ARCH.to_owned());
            let row = this.next_version_name(&name).and_then(|version| {
                this.register_base(
                    &scratch,
                    BaseRow {
                        version,
                        alias: name.clone(),
                        kind: meta.kind.to_owned(),
                        tag: meta.tag,
                        builder: meta.builder,
                        parent: this.store.get_base_version(&parent)?.map(|p| p.version),
                        size: None,
                        arch,
                        created_at: String::new(),
                        tags: meta.tags,
                        script: meta.script,
                    },
                )
            });
            if row.is_err() {
                let _ = this.storage.delete_subvolume(&scratch);
            }
            row
        })
        .await
    }

    /// `base build <name> --script`: runs the script in a transient box on the parent and saves the
    /// result with TAG = sha256(script). When the newest version already carries that tag, nothing
    /// is built (the forkd `snapshot-diff` idea: an unchanged script is a no-op).
    pub async fn build_base(
        self: &Arc<Self>,
        name: &str,
        req: crate::api::BuildBase,
    ) -> Result<crate::api::BuildResult> {
        use sha2::Digest;
        validate(NameKind::Base, name)?;
        let tag = hex::encode(sha2::Sha256::digest(req.script.as_bytes()));
        let parent_spec = req.parent.clone().unwrap_or_else(|| crate::name::DEFAULT_BASE.to_owned());
        let parent = self.resolve_base(&parent_spec)?;
        if let Some(newest) = self.store.base_versions(name)?.pop()
            && newest.tag.as_deref() == Some(tag.as_str())
            && newest.parent.as_deref() == Some(parent.version.as_str())
        {
            return Ok(crate::api::BuildResult {
                version: to_api(&newest),
                unchanged: true,
                log: String::new(),
            });
        }
        let box_name = format!(
            "build-{:x}",
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_nanos())
                .unwrap_or(0)
                & 0xffff_ffff_ffff
        );
        let create = crate::api::CreateBox {
            name: box_name.clone(),
            base: Some(parent.version.clone()),
            ..Default::default()
        };
        self.create_box(BUILD_PROJECT, create).await?;
        crate::fault::point("build.after_box");
        let result = self.run_build(name, &box_name, &req, tag).await;
        let _ = self.delete_box(BUILD_PROJECT, &box_name, true).await;
        result
    }

    async fn run_build(
        self: &Arc<Self>,
        name: &str,
        box_name: &str,
        build: &crate::api::BuildBase,
        tag: String,
    ) -> Result<crate::api::BuildResult> {
        let script = build.script.as_str();
        const SCRIPT: &str = "/.forkr-build.sh";
        let root = self.layout.root(BUILD_PROJECT, box_name);
        let (r2, s2) = (root.clone(), script.to_owned());
        blocking(move || super::fs::write_file(&r2, SCRIPT, s2.as_bytes(), 0o755, false)).await?;
        let row = self.require_box(BUILD_PROJECT, box_name)?;
        let shell = if super::fs::exists(&root, "/bin/bash") { "bash" } else { "sh" };
        let req = crate::api::ExecRequest { cmd: vec![shell.into(), SCRIPT.into()], ..Default::default() };
        let out = self.exec_buffered(BUILD_PROJECT, box_name, &req, 16 << 20).await?;
        crate::fault::point("build.after_script");
        let log = format!("{}{}", out.stdout, out.stderr);
        if out.exit_code != 0 {
            let tail: String = log
                .lines()
                .rev()
                .take(30)
                .collect::<Vec<_>>()
                .into_iter()
                .rev()
                .collect::<Vec<_>>()
                .join("\n");
            return Err(Error::bad_request(
                "build_failed",
                format!("build script exited with code {}:\n{tail}", out.exit_code),
            ));
        }
        {
            let _g = self.lock_box(BUILD_PROJECT, box_name).await;
            let mut r = row.clone();
            self.stop_running(&mut r, std::time::Duration::from_secs(5)).await?;
            let r3 = root.clone();
            blocking(move || match std::fs::remove_file(r3.join(SCRIPT.trim_start_matches('/'))) {
                Ok(()) => Ok(()),
                Err(e) => Err(Error::io("removing the build script", e)),
            })
            .await?;
            let meta = NewVersion {
                kind: "script",
                builder: "script".into(),
                tag: Some(tag),
                tags: build.tags.clone(),
                script: Some(build.script.clone()),
            };
            let saved = self.save_root_as_base(name, &r, meta).await?;
            self.measure_base(saved.version.clone());
            Ok(crate::api::BuildResult { version: to_api(&saved), unchanged: false, log })
        }
    }

    /// `base delete <name|version> [--force] [--cascade]`.
    pub async fn delete_base(
        self: &Arc<Self>,
        spec: &str,
        force: bool,
        cascade: bool,
    ) -> Result<crate::api::BasesDeleted> {
        if force && cascade {
            return Err(Error::bad_request(
                "invalid_request",
                "--force and --cascade cannot be used together",
            ));
        }
        let mut roots = self.store.base_versions(spec)?;
        if roots.is_empty() {
            roots = self.store.get_base_version(spec)?.into_iter().collect();
        }
        if roots.is_empty() {
            return Err(Error::new(
                ErrorKind::NotFound,
                "not_found",
                format!("base {spec:?} not found; see `4kr base list`"),
            ));
        }
        // Post-order over the child relation: children before parents.
        let mut order: Vec<BaseRow> = Vec::new();
        fn visit(e: &Engine, v: BaseRow, cascade: bool, out: &mut Vec<BaseRow>) -> Result<()> {
            if cascade {
                for c in e.store.base_children(&v.version)? {
                    visit(e, c, cascade, out)?;
                }
            }
            if !out.iter().any(|o| o.version == v.version) {
                out.push(v);
            }
            Ok(())
        }
        for r in roots {
            visit(self, r, cascade, &mut order)?;
        }
        if !force {
            for v in &order {
                if let Some((p, b)) = self.store.boxes_using_base(&v.version)?.into_iter().next() {
                    return Err(Error::conflict(
                        "base_in_use",
                        format!(
                            "base version {:?} is used by box {p}:{b}; delete the box first or pass --force",
                            v.version
                        ),
                    ));
                }
                let children: Vec<_> = self
                    .store
                    .base_children(&v.version)?
                    .into_iter()
                    .filter(|c| !order.iter().any(|o| o.version == c.version))
                    .collect();
                if let Some(c) = children.first() {
                    return Err(Error::conflict(
                        "base_has_children",
                        format!(
                            "base version {:?} is the parent of {:?}; pass --cascade to delete both or --force to orphan it",
                            v.version, c.version
                        ),
                    ));
                }
            }
        }
        let mut deleted = Vec::new();
        for v in order {
            let this = self.clone();
            let path = self.layout.base(&v.version);
            blocking(move || this.storage.delete_subvolume(&path)).await?;
            self.store.orphan_base_children(&v.version)?;
            self.store.delete_base(&v.version)?;
            deleted.push(v.version);
        }
        Ok(crate::api::BasesDeleted { deleted })
    }
}
