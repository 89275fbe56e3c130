//! The loaded workspace: every file merged, every value parsed and checked.
//!
//! The file types in `types.rs` say what a user may write; these types say what it means, in the
//! units the server reports (MiB, cores, `DataMount`s, full hostnames where known). The planner
//! works only on these, so it never has to parse or fail.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::api::DataMount;

/// The tag prefix that marks an object as created by a workspace: `forkr.workspace=<id>`.
pub const OWNER_TAG_PREFIX: &str = "forkr.workspace=";

/// The prefix of tags Forkr itself manages; users may not set them in the files.
pub const RESERVED_TAG_PREFIX: &str = "forkr.";

/// Environment variables Forkr injects into every box; a workspace may not set them.
pub const RESERVED_ENV: &[&str] = &["FORKR_PROJECT", "BOX_NAME", "FORKR_API_URL", "FORKR_API_HOST", "TERM"];

/// Injected variables that are not reserved but that the server adds to what it reports; the
/// planner ignores them when comparing environments.
pub const INJECTED_ENV: &[&str] = &[
    "FORKR_PROJECT",
    "BOX_NAME",
    "FORKR_API_URL",
    "FORKR_API_HOST",
    "FORKR_API_IP",
    "FORKR_NODE_IP",
    "FORKR_INSECURE",
    "TERM",
];

/// A workspace's identity, the value of its ownership tag.
///
/// It is `<project>.<8 hex digits>`, the digits being the start of
/// `sha256(project + "\n" + root key)`. The root key is `<git root folder name>/<path of the
/// workspace root inside the repository>` (for instance `forkr/examples/web-app`) when the workspace
/// is inside a git repository, otherwise the workspace root's absolute path. So the same repository
/// checked out on a laptop and in CI owns the same objects, while two workspaces of one repository,
/// or two repositories sharing a project, never prune each other's boxes.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct WorkspaceId(pub String);

impl WorkspaceId {
    /// Derives the id from the project and the workspace root (see the type's documentation).
    pub fn derive(project: &str, root: &Path) -> WorkspaceId {
        WorkspaceId::from_key(project, &root_key(root))
    }

    /// The id for an explicit root key.
    pub fn from_key(project: &str, root_key: &str) -> WorkspaceId {
        let digest = Sha256::digest(format!("{project}\n{root_key}").as_bytes());
        let hex: String = digest.iter().take(4).map(|b| format!("{b:02x}")).collect();
        WorkspaceId(format!("{project}.{hex}"))
    }

    /// The ownership tag objects created by this workspace carry.
    pub fn owner_tag(&self) -> String {
        format!("{OWNER_TAG_PREFIX}{}", self.0)
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Display for WorkspaceId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

/// The root key of [`WorkspaceId`]: machine-independent inside a git repository.
pub fn root_key(root: &Path) -> String {
    let abs = std::fs::canonicalize(root).unwrap_or_else(|_| root.to_path_buf());
    if let Some(git) = crate::name::git_root(&abs) {
        let name = git.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
        let rel = abs.strip_prefix(&git).unwrap_or(Path::new(""));
        let rel: Vec<String> =
            rel.components().map(|c| c.as_os_str().to_string_lossy().into_owned()).collect();
        if rel.is_empty() { name } else { format!("{name}/{}", rel.join("/")) }
    } else {
        abs.to_string_lossy().into_owned()
    }
}

/// A loaded, valid workspace.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Workspace {
    /// The project (from the files, else the loader's default).
    pub project: String,
    /// The identity its ownership tag carries.
    pub id: WorkspaceId,
    /// The folder holding `.forkr/`; relative paths in the files are relative to it.
    pub root: PathBuf,
    pub bases: BTreeMap<String, Base>,
    pub volumes: BTreeMap<String, Volume>,
    pub boxes: BTreeMap<String, BoxDef>,
}

impl Workspace {
    /// An empty workspace (no objects), e.g. for `4kr destroy`, which plans the removal of
    /// everything the workspace owns.
    pub fn empty(project: &str, id: WorkspaceId, root: PathBuf) -> Workspace {
        Workspace {
            project: project.to_owned(),
            id,
            root,
            bases: BTreeMap::new(),
            volumes: BTreeMap::new(),
            boxes: BTreeMap::new(),
        }
    }

    pub fn owner_tag(&self) -> String {
        self.id.owner_tag()
    }
}

/// A base to build.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Base {
    pub name: String,
    /// The parent base reference; scripts default to `box-base`.
    pub from: Option<String>,
    pub build: BaseBuild,
    /// What identifies this build: the sha256 (hex) of the script, Dockerfile or tarball. A base
    /// version whose tag equals it needs no rebuild.
    pub tag: String,
}

/// How a base is built.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum BaseBuild {
    /// A script run in a transient box on the parent.
    Script {
        /// The script text (read from `file` when the files name one).
        content: String,
        /// The script's path relative to the workspace root, when it came from a file.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        file: Option<String>,
    },
    /// A Dockerfile build; paths are absolute.
    Dockerfile { dockerfile: PathBuf, context: PathBuf },
    /// A root filesystem tarball; the path is absolute.
    Tarball { path: PathBuf },
}

impl BaseBuild {
    pub fn kind(&self) -> &'static str {
        match self {
            BaseBuild::Script { .. } => "script",
            BaseBuild::Dockerfile { .. } => "dockerfile",
            BaseBuild::Tarball { .. } => "tarball",
        }
    }
}

/// A data volume.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Volume {
    pub name: String,
    /// The size in MiB, when the files give one.
    pub size_mib: Option<u64>,
}

/// Where a box's root filesystem comes from.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum BoxSource {
    /// A base reference (alias, exact version or `alias:tag`); `box-base` when the files say none.
    Base(String),
    /// Another box of the project.
    Fork(String),
}

/// A CPU amount in cores, with the text the user wrote (sent to the server as is).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct CpuAmount {
    pub cores: f64,
    pub text: String,
}

/// A box.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct BoxDef {
    pub name: String,
    pub source: BoxSource,
    /// For a `Base` box, the whole environment; for a fork, the overrides of the inherited one.
    pub env: BTreeMap<String, String>,
    pub cpu: Option<CpuAmount>,
    /// Memory limit in MiB, with the text the user wrote.
    pub memory: Option<(u64, String)>,
    pub port: Option<u16>,
    pub termination_grace_seconds: Option<u64>,
    /// User tags (the ownership tag is added by the planner). `None` when the files say nothing,
    /// which for a fork means "keep the inherited tags".
    pub tags: Option<Vec<String>>,
    /// Data mounts, sorted by volume name. A fork without `data` keeps what it inherited (the
    /// server clones the source's volumes for it), so the planner compares mounts only when the
    /// files list some.
    pub data: Vec<DataMount>,
    pub publish: Vec<Publish>,
    pub snapshots: Vec<Snapshot>,
    pub sync: Vec<Sync>,
}

impl BoxDef {
    /// A box from the default base with nothing else set (handy for tests and tools).
    pub fn new(name: &str) -> BoxDef {
        BoxDef {
            name: name.to_owned(),
            source: BoxSource::Base(crate::name::DEFAULT_BASE.to_owned()),
            env: BTreeMap::new(),
            cpu: None,
            memory: None,
            port: None,
            termination_grace_seconds: None,
            tags: None,
            data: Vec::new(),
            publish: Vec::new(),
            snapshots: Vec::new(),
            sync: Vec::new(),
        }
    }
}

/// A host to publish a box on.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Publish {
    /// A subdomain (`@` for the bare domain) of `domain` or of the server's publish domain.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub subdomain: Option<String>,
    /// The domain for `subdomain`; `None` means the server's publish domain.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub domain: Option<String>,
    /// A full hostname (instead of `subdomain`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub host: Option<String>,
    #[serde(default)]
    pub force: bool,
}

impl Publish {
    /// The full hostname, when it can be known: `host`, or `subdomain.domain` with `domain` or the
    /// server's `default_domain`.
    pub fn resolve(&self, default_domain: Option<&str>) -> Option<String> {
        if let Some(h) = &self.host {
            return Some(h.clone());
        }
        let sub = self.subdomain.as_deref()?;
        let domain = self.domain.as_deref().or(default_domain)?;
        Some(if sub == "@" { domain.to_owned() } else { format!("{sub}.{domain}") })
    }

    /// How the files name this publish, for messages: the host or the subdomain.
    pub fn display(&self) -> String {
        match (&self.host, &self.subdomain, &self.domain) {
            (Some(h), _, _) => h.clone(),
            (None, Some(s), Some(d)) => {
                if s == "@" {
                    d.clone()
                } else {
                    format!("{s}.{d}")
                }
            }
            (None, Some(s), None) => s.clone(),
            (None, None, _) => String::new(),
        }
    }

    /// Whether an observed `host` is this publish. Without a known domain, a subdomain matches any
    /// host that starts with `subdomain.`.
    pub fn matches(&self, host: &str, default_domain: Option<&str>) -> bool {
        if let Some(full) = self.resolve(default_domain) {
            return full.eq_ignore_ascii_case(host);
        }
        match self.subdomain.as_deref() {
            Some("@") | None => false,
            Some(sub) => {
                let (h, s) = (host.as_bytes(), sub.as_bytes());
                h.len() > s.len() && h[..s.len()].eq_ignore_ascii_case(s) && h[s.len()] == b'.'
            }
        }
    }
}

/// A snapshot to make sure exists.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Snapshot {
    pub name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
}

/// A local folder mirrored into a box.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Sync {
    /// The local folder (absolute).
    pub from: PathBuf,
    /// The path inside the box.
    pub to: String,
    pub include: Vec<String>,
    pub exclude: Vec<String>,
}

impl Sync {
    /// The include/exclude matcher for paths relative to `from`. The patterns were checked when
    /// the workspace was loaded.
    pub fn filter(&self) -> Result<SyncFilter, globset::Error> {
        let build = |patterns: &[String]| -> Result<Option<globset::GlobSet>, globset::Error> {
            if patterns.is_empty() {
                return Ok(None);
            }
            let mut b = globset::GlobSetBuilder::new();
            for p in patterns {
                b.add(globset::Glob::new(p)?);
            }
            b.build().map(Some)
        };
        Ok(SyncFilter { include: build(&self.include)?, exclude: build(&self.exclude)? })
    }
}

/// Decides which files a sync mirrors.
#[derive(Debug, Clone)]
pub struct SyncFilter {
    include: Option<globset::GlobSet>,
    exclude: Option<globset::GlobSet>,
}

impl SyncFilter {
    /// Whether `rel` (relative to the sync's `from`) is mirrored: it matches an include pattern
    /// (or there are none) and no exclude pattern.
    pub fn matches(&self, rel: &Path) -> bool {
        if self.exclude.as_ref().is_some_and(|e| e.is_match(rel)) {
            return false;
        }
        self.include.as_ref().is_none_or(|i| i.is_match(rel))
    }
}

/// Parses a memory or volume size into MiB (rounded up). Plain numbers are MiB.
pub fn parse_size_mib(text: &str) -> Result<u64, String> {
    let t = text.trim();
    let split = t.find(|c: char| !(c.is_ascii_digit() || c == '.')).unwrap_or(t.len());
    let (num, unit) = t.split_at(split);
    let value: f64 = num.parse().map_err(|_| format!("{text:?} is not a size"))?;
    const MIB: f64 = 1024.0 * 1024.0;
    let bytes_per_unit = match unit.trim() {
        "" | "Mi" => MIB,
        "Ki" => 1024.0,
        "Gi" => 1024.0 * MIB,
        "Ti" => 1024.0 * 1024.0 * MIB,
        "K" => 1e3,
        "M" => 1e6,
        "G" => 1e9,
        "T" => 1e12,
        other => return Err(format!("unknown unit {other:?} in {text:?}")),
    };
    let mib = (value * bytes_per_unit / MIB).ceil();
    if !(mib.is_finite() && mib >= 1.0) {
        return Err(format!("{text:?} is less than 1 MiB"));
    }
    if mib > u64::MAX as f64 / 2.0 {
        return Err(format!("{text:?} is too large"));
    }
    Ok(mib as u64)
}

/// Parses a CPU amount (`2`, `0.5`, `500m`) into cores.
pub fn parse_cpu(text: &str) -> Result<f64, String> {
    let t = text.trim();
    let cores = match t.strip_suffix('m') {
        Some(milli) => milli
            .parse::<u64>()
            .map(|m| m as f64 / 1000.0)
            .map_err(|_| format!("{text:?} is not a CPU amount"))?,
        None => t.parse::<f64>().map_err(|_| format!("{text:?} is not a CPU amount"))?,
    };
    if !(cores.is_finite() && cores > 0.0) {
        return Err(format!("{text:?} is not a positive CPU amount"));
    }
    Ok(cores)
}

/// Mount paths a data volume may not sit on or under.
pub const FORBIDDEN_MOUNT_ROOTS: &[&str] = &["/proc", "/sys", "/dev", "/run", "/etc", "/volumes"];

/// Checks a box path: absolute, normalized (no `.`, `..` or empty components) and not `/`.
pub fn check_box_path(path: &str) -> Result<(), String> {
    if !path.starts_with('/') {
        return Err(format!("{path:?} is not an absolute path"));
    }
    let inner = path.trim_end_matches('/');
    if inner.is_empty() {
        return Err("the root directory cannot be used".to_owned());
    }
    if inner[1..].split('/').any(|c| c.is_empty() || c == "." || c == "..") {
        return Err(format!("{path:?} is not a normalized path (no `//`, `.` or `..`)"));
    }
    if path.contains('\0') {
        return Err("the path contains a NUL byte".to_owned());
    }
    Ok(())
}

/// The forbidden root `path` sits on or under, if any.
pub fn forbidden_mount_root(path: &str) -> Option<&'static str> {
    let path = path.trim_end_matches('/');
    FORBIDDEN_MOUNT_ROOTS.iter().copied().find(|root| path == *root || path.starts_with(&format!("{root}/")))
}

/// Parses `"/path[:ro|:rw]"` into the mount of volume `name`.
pub fn parse_mount(name: &str, spec: &str) -> Result<DataMount, String> {
    let (path, read_only) = if let Some(p) = spec.strip_suffix(":ro") {
        (p, true)
    } else if let Some(p) = spec.strip_suffix(":rw") {
        (p, false)
    } else if let Some((p, opt)) = spec.rsplit_once(':') {
        return Err(format!("unknown mount option `{opt}` after {p:?}; use `:ro` or `:rw`"));
    } else {
        (spec, false)
    };
    check_box_path(path)?;
    if let Some(root) = forbidden_mount_root(path) {
        return Err(format!("{path:?} is under {root}, which Forkr manages"));
    }
    Ok(DataMount { name: name.to_owned(), path: path.trim_end_matches('/').to_owned(), read_only })
}

/// Whether `name` is a valid environment variable name (`[A-Za-z_][A-Za-z0-9_]*`).
pub fn is_env_name(name: &str) -> bool {
    let mut chars = name.chars();
    matches!(chars.next(), Some(c) if c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

/// Whether `host` is a valid lowercase DNS name (labels of a-z, 0-9 and `-`, at most 253 bytes).
pub fn is_hostname(host: &str) -> bool {
    !host.is_empty()
        && host.len() <= 253
        && host.split('.').all(|l| {
            !l.is_empty()
                && l.len() <= 63
                && l.bytes().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == b'-')
                && !l.starts_with('-')
                && !l.ends_with('-')
        })
}

/// The sha256 of `bytes` as lowercase hex.
pub fn sha256_hex(bytes: &[u8]) -> String {
    format!("{:x}", Sha256::digest(bytes))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes() {
        assert_eq!(parse_size_mib("512Mi").unwrap(), 512);
        assert_eq!(parse_size_mib("2Gi").unwrap(), 2048);
        assert_eq!(parse_size_mib("1G").unwrap(), 954);
        assert_eq!(parse_size_mib("300").unwrap(), 300);
        assert_eq!(parse_size_mib("1.5Gi").unwrap(), 1536);
        assert_eq!(parse_size_mib("1Ti").unwrap(), 1024 * 1024);
        assert!(parse_size_mib("12XB").is_err());
        assert!(parse_size_mib("0").is_err());
        assert!(parse_size_mib("abc").is_err());
    }

    #[test]
    fn cpus() {
        assert_eq!(parse_cpu("500m").unwrap(), 0.5);
        assert_eq!(parse_cpu("2").unwrap(), 2.0);
        assert_eq!(parse_cpu("0.25").unwrap(), 0.25);
        assert!(parse_cpu("0").is_err());
        assert!(parse_cpu("-1").is_err());
        assert!(parse_cpu("1.5m").is_err());
    }

    #[test]
    fn mounts() {
        assert_eq!(
            parse_mount("v", "/srv/data:ro").unwrap(),
            DataMount { name: "v".into(), path: "/srv/data".into(), read_only: true }
        );
        assert!(!parse_mount("v", "/srv/data:rw").unwrap().read_only);
        assert!(!parse_mount("v", "/srv/data").unwrap().read_only);
        for bad in
            ["srv", "/", "/etc", "/etc/x", "/proc", "/volumes/a", "/a/../b", "/a//b", "/a:rx", "/run/x"]
        {
            assert!(parse_mount("v", bad).is_err(), "{bad}");
        }
        assert!(parse_mount("v", "/etcetera").is_ok());
    }

    #[test]
    fn workspace_ids() {
        let a = WorkspaceId::from_key("web", "repo/examples/web");
        let b = WorkspaceId::from_key("web", "repo/examples/ci");
        assert_ne!(a, b);
        assert!(a.as_str().starts_with("web."));
        assert_eq!(a.as_str().len(), "web.".len() + 8);
        assert_eq!(a.owner_tag(), format!("forkr.workspace={a}"));
        assert_eq!(a, WorkspaceId::from_key("web", "repo/examples/web"));
    }

    #[test]
    fn root_key_is_relative_to_git() {
        let dir = tempfile::tempdir().unwrap();
        let repo = dir.path().join("myrepo");
        std::fs::create_dir_all(repo.join(".git")).unwrap();
        std::fs::create_dir_all(repo.join("examples/web")).unwrap();
        assert_eq!(root_key(&repo), "myrepo");
        assert_eq!(root_key(&repo.join("examples/web")), "myrepo/examples/web");
    }

    #[test]
    fn publish_matching() {
        let p = Publish { subdomain: Some("www".into()), domain: None, host: None, force: false };
        assert_eq!(p.resolve(Some("example.com")).as_deref(), Some("www.example.com"));
        assert!(p.matches("www.example.com", Some("example.com")));
        assert!(!p.matches("www.example.org", Some("example.com")));
        assert!(p.matches("www.anything.test", None));
        assert!(!p.matches("wwwx.example.com", None));
        let apex = Publish {
            subdomain: Some("@".into()),
            domain: Some("example.org".into()),
            host: None,
            force: false,
        };
        assert_eq!(apex.resolve(None).as_deref(), Some("example.org"));
    }

    #[test]
    fn sync_filters() {
        let s = Sync {
            from: "/x".into(),
            to: "/y".into(),
            include: vec!["**/*.rs".into()],
            exclude: vec!["target/**".into()],
        };
        let f = s.filter().unwrap();
        assert!(f.matches(Path::new("src/main.rs")));
        assert!(!f.matches(Path::new("target/debug/x.rs")));
        assert!(!f.matches(Path::new("README.md")));
    }
}
