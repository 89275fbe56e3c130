//! Names and references: what a box, project, snapshot, base, volume or user may be called, and how
//! `project:box`, `project.box`, `.` and `-` refs resolve.

use crate::{Error, Result};

/// The project used when nothing else names one.
pub const DEFAULT_PROJECT: &str = "default";
/// The base a box starts from when `--base` is not given.
pub const DEFAULT_BASE: &str = "box-base";

/// What kind of object a name is for; picks the pattern and the wording of errors.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NameKind {
    Box,
    Project,
    Snapshot,
    Base,
    Volume,
    User,
}

impl NameKind {
    pub fn noun(self) -> &'static str {
        match self {
            NameKind::Box => "box",
            NameKind::Project => "project",
            NameKind::Snapshot => "snapshot",
            NameKind::Base => "base",
            NameKind::Volume => "volume",
            NameKind::User => "user",
        }
    }

    /// The pattern, as documented, for error messages and schemas.
    pub fn pattern(self) -> &'static str {
        match self {
            NameKind::Box | NameKind::Project | NameKind::Volume => "^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$",
            NameKind::Snapshot => "^[a-zA-Z0-9_.-]+$",
            NameKind::Base => "^[a-zA-Z0-9][a-zA-Z0-9_.-]*$",
            NameKind::User => "^[a-z0-9_-]{1,32}$",
        }
    }
}

/// System account names a project user may not take.
pub const RESERVED_USERS: &[&str] = &[
    "root",
    "daemon",
    "bin",
    "sys",
    "sync",
    "games",
    "man",
    "lp",
    "mail",
    "news",
    "uucp",
    "proxy",
    "www-data",
    "backup",
    "list",
    "irc",
    "gnats",
    "nobody",
    "systemd-network",
    "systemd-resolve",
    "messagebus",
    "sshd",
    "_apt",
    "ubuntu",
    "admin",
    "sudo",
    "wheel",
    "adm",
    "staff",
    "users",
    "nogroup",
    "tty",
    "disk",
    "shadow",
    "utmp",
    "operator",
];

fn is_dns_label(s: &str) -> bool {
    let b = s.as_bytes();
    !b.is_empty()
        && b.len() <= 63
        && b.iter().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || *c == b'-')
        && b[0] != b'-'
        && b[b.len() - 1] != b'-'
}

/// Checks `name` against the pattern for `kind`; the error says what was wrong and how to fix it.
pub fn validate(kind: NameKind, name: &str) -> Result<()> {
    let ok = match kind {
        NameKind::Box | NameKind::Project | NameKind::Volume => is_dns_label(name),
        NameKind::Snapshot => {
            !name.is_empty()
                && name.len() <= 128
                && name != "."
                && name != ".."
                && name.bytes().all(|c| c.is_ascii_alphanumeric() || matches!(c, b'_' | b'.' | b'-'))
        }
        NameKind::Base => {
            !name.is_empty()
                && name.len() <= 128
                && name.as_bytes()[0].is_ascii_alphanumeric()
                && name.bytes().all(|c| c.is_ascii_alphanumeric() || matches!(c, b'_' | b'.' | b'-'))
        }
        NameKind::User => {
            !name.is_empty()
                && name.len() <= 32
                && name
                    .bytes()
                    .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || matches!(c, b'_' | b'-'))
        }
    };
    if !ok {
        let hint = match kind {
            NameKind::Box | NameKind::Project | NameKind::Volume => {
                "use 1-63 lowercase letters, digits and '-', starting and ending with a letter or digit"
            }
            NameKind::Snapshot => "use letters, digits, '_', '.' and '-'",
            NameKind::Base => "use letters, digits, '_', '.' and '-', starting with a letter or digit",
            NameKind::User => "use 1-32 characters of a-z, 0-9, '_' and '-'",
        };
        return Err(Error::bad_request(
            "invalid_name",
            format!("invalid {} name {name:?}: {hint} (pattern {})", kind.noun(), kind.pattern()),
        ));
    }
    if kind == NameKind::User && RESERVED_USERS.contains(&name) {
        return Err(Error::bad_request(
            "invalid_name",
            format!("user name {name:?} is a reserved system name; pick another"),
        ));
    }
    Ok(())
}

/// Paths a data volume may not be mounted under (document 002).
pub const FORBIDDEN_MOUNT_ROOTS: &[&str] = &["/proc", "/sys", "/dev", "/run", "/etc", "/volumes"];

/// Checks a data-volume mount path: absolute, normalised, and not under a forbidden root.
pub fn validate_mount_path(path: &str) -> Result<()> {
    if !path.starts_with('/') {
        return Err(Error::bad_request("invalid_mount", format!("mount path {path:?} must be absolute")));
    }
    if path == "/" || path.split('/').any(|c| c == "." || c == "..") || path.contains("//") {
        return Err(Error::bad_request(
            "invalid_mount",
            format!("mount path {path:?} must be a normalised absolute path other than /"),
        ));
    }
    for root in FORBIDDEN_MOUNT_ROOTS {
        if path == *root || path.starts_with(&format!("{root}/")) {
            return Err(Error::bad_request(
                "invalid_mount",
                format!(
                    "mount path {path:?} cannot sit under {root} (forbidden: /proc, /sys, /dev, /run, /etc, /volumes)"
                ),
            ));
        }
    }
    Ok(())
}

/// A box reference as typed on the command line, before project resolution.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BoxRef {
    /// A named box, with the project if the ref named one.
    Named { project: Option<String>, name: String },
    /// `-`: an ephemeral box created for this command and deleted after it.
    Ephemeral { project: Option<String> },
    /// `.`: the box this command runs in (from `BOX_NAME` / `FORKR_PROJECT`).
    Current,
}

impl BoxRef {
    /// Parses `box`, `project:box` (canonical), `project.box` (shorthand), `-`, `project:-` or `.`.
    pub fn parse(s: &str) -> Result<BoxRef> {
        if s == "." {
            return Ok(BoxRef::Current);
        }
        if s == "-" {
            return Ok(BoxRef::Ephemeral { project: None });
        }
        let (project, name) = if let Some((p, n)) = s.split_once(':') {
            (Some(p), n)
        } else if let Some((p, n)) = s.split_once('.') {
            (Some(p), n)
        } else {
            (None, s)
        };
        if let Some(p) = project {
            validate(NameKind::Project, p)?;
        }
        if name == "-" {
            return Ok(BoxRef::Ephemeral { project: project.map(str::to_owned) });
        }
        validate(NameKind::Box, name)?;
        Ok(BoxRef::Named { project: project.map(str::to_owned), name: name.to_owned() })
    }
}

/// A `box:/path` reference for `cp`/`get`/`put`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BoxPath {
    pub r#box: BoxRef,
    /// Absolute path inside the box.
    pub path: String,
}

impl BoxPath {
    /// Returns `Some` when `s` names a box path (`box:/p`, `project:box:/p`, `.:/p`, `-:/p`), `None`
    /// when it is a local path. The `:/` is required.
    pub fn parse(s: &str) -> Result<Option<BoxPath>> {
        let Some(idx) = s.find(":/") else { return Ok(None) };
        let (head, path) = (&s[..idx], &s[idx + 1..]);
        if head.is_empty() || head.contains('/') {
            // `./a:/b` or `/x:/y` are local paths that happen to contain ":/".
            return Ok(None);
        }
        Ok(Some(BoxPath { r#box: BoxRef::parse(head)?, path: path.to_owned() }))
    }
}

/// Turns a free-form directory name (a git root's name) into a valid project name, or `None`.
pub fn sanitize_project(raw: &str) -> Option<String> {
    let mut out = String::new();
    for c in raw.chars().flat_map(char::to_lowercase) {
        if c.is_ascii_lowercase() || c.is_ascii_digit() {
            out.push(c);
        } else if !out.ends_with('-') {
            out.push('-');
        }
    }
    let out = out.trim_matches('-');
    let out: String = out.chars().take(63).collect();
    let out = out.trim_end_matches('-').to_owned();
    is_dns_label(&out).then_some(out)
}

/// Resolves the project: the flag, then `FORKR_PROJECT`, then the current git repository's root
/// directory name, then `default` (document 001's order).
pub fn resolve_project(flag: Option<&str>, env: Option<&str>, cwd: &std::path::Path) -> Result<String> {
    if let Some(p) = flag.filter(|p| !p.is_empty()) {
        validate(NameKind::Project, p)?;
        return Ok(p.to_owned());
    }
    if let Some(p) = env.filter(|p| !p.is_empty()) {
        validate(NameKind::Project, p)?;
        return Ok(p.to_owned());
    }
    if let Some(root) = git_root(cwd)
        && let Some(name) = root.file_name().and_then(|n| n.to_str()).and_then(sanitize_project)
    {
        return Ok(name);
    }
    Ok(DEFAULT_PROJECT.to_owned())
}

/// The nearest ancestor of `dir` holding `.git` (a directory or a worktree file).
pub fn git_root(dir: &std::path::Path) -> Option<std::path::PathBuf> {
    dir.ancestors().find(|d| d.join(".git").exists()).map(|d| d.to_path_buf())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn box_names() {
        for ok in ["web-1", "a", "db", "ephemeral-123-456789"] {
            validate(NameKind::Box, ok).unwrap();
        }
        for bad in ["", "-a", "a-", "Web", "a_b", "a.b", &"x".repeat(64)] {
            assert!(validate(NameKind::Box, bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn snapshot_names() {
        for ok in ["v0", "before-upgrade", "A_b.c-1"] {
            validate(NameKind::Snapshot, ok).unwrap();
        }
        for bad in ["", ".", "..", "a/b", "a b"] {
            assert!(validate(NameKind::Snapshot, bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn users() {
        validate(NameKind::User, "alice").unwrap();
        assert!(validate(NameKind::User, "root").is_err());
        assert!(validate(NameKind::User, "Alice").is_err());
        assert!(validate(NameKind::User, &"a".repeat(33)).is_err());
    }

    #[test]
    fn mount_paths() {
        validate_mount_path("/data").unwrap();
        validate_mount_path("/srv/db").unwrap();
        for bad in ["data", "/", "/etc", "/etc/x", "/proc/1", "/volumes", "/a/../b"] {
            assert!(validate_mount_path(bad).is_err(), "{bad}");
        }
        validate_mount_path("/etcetera").unwrap();
    }

    #[test]
    fn refs() {
        assert_eq!(BoxRef::parse("web").unwrap(), BoxRef::Named { project: None, name: "web".into() });
        assert_eq!(
            BoxRef::parse("p:web").unwrap(),
            BoxRef::Named { project: Some("p".into()), name: "web".into() }
        );
        assert_eq!(
            BoxRef::parse("p.web").unwrap(),
            BoxRef::Named { project: Some("p".into()), name: "web".into() }
        );
        assert_eq!(BoxRef::parse("-").unwrap(), BoxRef::Ephemeral { project: None });
        assert_eq!(BoxRef::parse("p:-").unwrap(), BoxRef::Ephemeral { project: Some("p".into()) });
        assert_eq!(BoxRef::parse(".").unwrap(), BoxRef::Current);
        assert!(BoxRef::parse("P:web").is_err());
    }

    #[test]
    fn box_paths() {
        assert_eq!(BoxPath::parse("./a.txt").unwrap(), None);
        assert_eq!(BoxPath::parse("web-1:etc").unwrap(), None);
        let p = BoxPath::parse("web-1:/srv/app.tar").unwrap().unwrap();
        assert_eq!(p.path, "/srv/app.tar");
        let p = BoxPath::parse("proj:web-1:/x").unwrap().unwrap();
        assert_eq!(p.r#box, BoxRef::Named { project: Some("proj".into()), name: "web-1".into() });
        assert_eq!(BoxPath::parse(".:/x").unwrap().unwrap().r#box, BoxRef::Current);
        assert_eq!(BoxPath::parse("-:/x").unwrap().unwrap().r#box, BoxRef::Ephemeral { project: None });
        assert_eq!(BoxPath::parse("/abs/x:/y").unwrap(), None);
    }

    #[test]
    fn project_resolution() {
        let dir = tempfile::tempdir().unwrap();
        let repo = dir.path().join("My_Repo");
        std::fs::create_dir_all(repo.join(".git")).unwrap();
        std::fs::create_dir_all(repo.join("sub")).unwrap();
        let sub = repo.join("sub");
        assert_eq!(resolve_project(Some("flag"), Some("env"), &sub).unwrap(), "flag");
        assert_eq!(resolve_project(None, Some("env"), &sub).unwrap(), "env");
        assert_eq!(resolve_project(None, None, &sub).unwrap(), "my-repo");
        assert_eq!(resolve_project(None, None, dir.path()).unwrap(), "default");
        assert!(resolve_project(Some("Bad_Name"), None, &sub).is_err());
    }
}
