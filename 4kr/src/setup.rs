//! The local setup config, `.forkr/config.yaml` (or `$FORKR_SETUP_DIR/config.yaml`).
//!
//! It stores where the API is and how to authenticate, per deployment: a default `profile`, the
//! deployment's own `api_url`/`token`/`forkr_domain`/`ssh_host` (used when the selected profile
//! matches the config's `env` or `profile` key), a default `project`, and a `profiles` map for other
//! deployments. `4kr config set/get/list/unset/path/profiles` read and write it. The other
//! `.forkr/*.yaml` files are the declarative workspace and are not touched here.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::env::Env;
use crate::error::{CliError, Result};

/// The config file's name inside the setup dir.
pub const FILE_NAME: &str = "config.yaml";
/// The setup dir's name at a git root or the current directory.
pub const DIR_NAME: &str = ".forkr";

/// The whole file. Unknown keys are rejected so that a typo does not silently do nothing.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SetupConfig {
    /// The profile every command targets unless `--profile` or `FORKR_PROFILE` pick another.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub profile: Option<String>,
    /// The name of the deployment this file describes (matched against the selected profile).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub env: Option<String>,
    /// The API base URL of this deployment. `url` is accepted as an alias.
    #[serde(default, alias = "url", skip_serializing_if = "Option::is_none")]
    pub api_url: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub token: Option<String>,
    /// The deployment's domain; gives `https://api.<domain>` and `ssh.<domain>` when those are unset.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub forkr_domain: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ssh_host: Option<String>,
    /// Accept invalid TLS certificates (self-signed test deployments).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub insecure: Option<bool>,
    /// Connect to this IP instead of resolving the API host name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ip: Option<String>,
    /// Default project, used after `-p` and `FORKR_PROJECT` and before the git root's name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub project: Option<String>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub profiles: BTreeMap<String, ProfileConfig>,
}

/// One entry of `profiles:`; the same settings as the `FORKR_PROFILE_<NAME>_*` variables.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProfileConfig {
    /// API base URL. `api_url` is accepted as an alias.
    #[serde(default, alias = "api_url", skip_serializing_if = "Option::is_none")]
    pub url: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub token: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ssh_host: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub insecure: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ip: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub forkr_domain: Option<String>,
}

impl ProfileConfig {
    fn is_empty(&self) -> bool {
        self == &ProfileConfig::default()
    }
}

/// Top-level keys, canonical spelling first in each group of aliases.
const TOP_KEYS: &[&str] =
    &["profile", "env", "api_url", "url", "token", "forkr_domain", "ssh_host", "insecure", "ip", "project"];
/// Keys inside `profiles.<name>.`.
const PROFILE_KEYS: &[&str] = &["url", "api_url", "token", "ssh_host", "insecure", "ip", "forkr_domain"];

/// A parsed config key: a top-level key or `profiles.<name>.<key>`, with aliases folded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Key {
    Top(&'static str),
    Profile(String, &'static str),
}

impl Key {
    pub fn parse(raw: &str) -> Result<Key> {
        let unknown = || {
            CliError::config(format!("unknown config key {raw:?}")).with_help(format!(
                "keys are {}, and profiles.<name>.{{{}}}",
                TOP_KEYS.join(", "),
                PROFILE_KEYS.join(",")
            ))
        };
        if let Some(rest) = raw.strip_prefix("profiles.") {
            let (name, key) = rest.rsplit_once('.').ok_or_else(unknown)?;
            validate_profile_name(name)?;
            let key = PROFILE_KEYS.iter().find(|k| **k == key).ok_or_else(unknown)?;
            let key = if *key == "api_url" { "url" } else { key };
            return Ok(Key::Profile(name.to_owned(), key));
        }
        let key = TOP_KEYS.iter().find(|k| **k == raw).ok_or_else(unknown)?;
        Ok(Key::Top(if *key == "url" { "api_url" } else { key }))
    }
}

impl std::fmt::Display for Key {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Key::Top(k) => f.write_str(k),
            Key::Profile(n, k) => write!(f, "profiles.{n}.{k}"),
        }
    }
}

/// Profile names become part of environment variable names and of dotted config keys, so they are
/// limited to letters, digits, `-` and `_`.
pub fn validate_profile_name(name: &str) -> Result<()> {
    if name.is_empty() || !name.bytes().all(|c| c.is_ascii_alphanumeric() || c == b'-' || c == b'_') {
        return Err(CliError::config(format!(
            "invalid profile name {name:?}: use letters, digits, '-' and '_'"
        )));
    }
    Ok(())
}

fn parse_bool(key: &Key, value: &str) -> Result<bool> {
    parse_bool_text(value)
        .ok_or_else(|| CliError::config(format!("{key} must be true or false, not {value:?}")))
}

/// `true`/`false` and the usual spellings (`1`, `yes`, `on`, …) of environment flags.
pub fn parse_bool_text(value: &str) -> Option<bool> {
    match value.trim().to_ascii_lowercase().as_str() {
        "true" | "1" | "yes" | "on" => Some(true),
        "false" | "0" | "no" | "off" | "" => Some(false),
        _ => None,
    }
}

/// Checks a value before it is stored, so the file never holds something resolution rejects later.
fn validate_value(key: &Key, value: &str) -> Result<()> {
    let name = match key {
        Key::Top(k) | Key::Profile(_, k) => *k,
    };
    match name {
        "profile" | "env" => validate_profile_name(value),
        "project" => {
            forkr_engine::name::validate(forkr_engine::name::NameKind::Project, value).map_err(CliError::from)
        }
        "api_url" | "url" => crate::target::normalize_url(value)
            .map(|_| ())
            .map_err(|why| CliError::config(format!("invalid value for {key}: {value:?} {why}"))),
        "ip" => value.parse::<std::net::IpAddr>().map(|_| ()).map_err(|_| {
            CliError::config(format!("invalid value for {key}: {value:?} is not an IP address"))
        }),
        "forkr_domain" | "ssh_host" if value.is_empty() || value.contains('/') => {
            Err(CliError::config(format!("invalid value for {key}: {value:?} must be a host name")))
        }
        _ => Ok(()),
    }
}

impl SetupConfig {
    /// Whether `profile` names the deployment this file describes (its `env` or `profile` key).
    pub fn describes(&self, profile: &str) -> bool {
        self.env.as_deref() == Some(profile) || self.profile.as_deref() == Some(profile)
    }

    /// The stored value of `key` as text, if set.
    pub fn get(&self, key: &Key) -> Option<String> {
        fn text(s: &Option<String>) -> Option<String> {
            s.clone()
        }
        fn flag(b: &Option<bool>) -> Option<String> {
            b.map(|b| b.to_string())
        }
        match key {
            Key::Top(k) => match *k {
                "profile" => text(&self.profile),
                "env" => text(&self.env),
                "api_url" => text(&self.api_url),
                "token" => text(&self.token),
                "forkr_domain" => text(&self.forkr_domain),
                "ssh_host" => text(&self.ssh_host),
                "insecure" => flag(&self.insecure),
                "ip" => text(&self.ip),
                "project" => text(&self.project),
                _ => None,
            },
            Key::Profile(name, k) => {
                let p = self.profiles.get(name)?;
                match *k {
                    "url" => text(&p.url),
                    "token" => text(&p.token),
                    "ssh_host" => text(&p.ssh_host),
                    "insecure" => flag(&p.insecure),
                    "ip" => text(&p.ip),
                    "forkr_domain" => text(&p.forkr_domain),
                    _ => None,
                }
            }
        }
    }

    /// Stores `value` under `key` (`None` removes it). Returns whether something changed.
    pub fn set(&mut self, key: &Key, value: Option<&str>) -> Result<bool> {
        if let Some(v) = value {
            validate_value(key, v)?;
        }
        let before = self.clone();
        let text = value.map(str::to_owned);
        let is_flag = matches!(key, Key::Top("insecure") | Key::Profile(_, "insecure"));
        let flag = if is_flag { value.map(|v| parse_bool(key, v)).transpose()? } else { None };
        match key {
            Key::Top(k) => match *k {
                "profile" => self.profile = text,
                "env" => self.env = text,
                "api_url" => self.api_url = text,
                "token" => self.token = text,
                "forkr_domain" => self.forkr_domain = text,
                "ssh_host" => self.ssh_host = text,
                "insecure" => self.insecure = flag,
                "ip" => self.ip = text,
                "project" => self.project = text,
                _ => {}
            },
            Key::Profile(name, k) => {
                let p = self.profiles.entry(name.clone()).or_default();
                match *k {
                    "url" => p.url = text,
                    "token" => p.token = text,
                    "ssh_host" => p.ssh_host = text,
                    "insecure" => p.insecure = flag,
                    "ip" => p.ip = text,
                    "forkr_domain" => p.forkr_domain = text,
                    _ => {}
                }
                if p.is_empty() {
                    self.profiles.remove(name);
                }
            }
        }
        Ok(*self != before)
    }

    /// Every set key with its value, in file order (top-level keys, then profiles by name).
    pub fn entries(&self) -> Vec<(Key, String)> {
        let mut out = Vec::new();
        for k in TOP_KEYS.iter().filter(|k| **k != "url") {
            let key = Key::Top(k);
            if let Some(v) = self.get(&key) {
                out.push((key, v));
            }
        }
        for name in self.profiles.keys() {
            for k in PROFILE_KEYS.iter().filter(|k| **k != "api_url") {
                let key = Key::Profile(name.clone(), k);
                if let Some(v) = self.get(&key) {
                    out.push((key, v));
                }
            }
        }
        out
    }

    fn has_secret(&self) -> bool {
        self.token.is_some() || self.profiles.values().any(|p| p.token.is_some())
    }

    /// Parses the file's text; the error names the file and the line.
    pub fn parse(text: &str, path: &Path) -> Result<SetupConfig> {
        if text.trim().is_empty() {
            return Ok(SetupConfig::default());
        }
        serde_saphyr::from_str(text).map_err(|e| {
            CliError::config(format!("cannot read {}: {e}", path.display()))
                .with_help("fix the file by hand, or remove the key with `4kr config unset <key>`")
        })
    }

    /// Reads the file at `path`; a missing file is an empty config.
    pub fn load(path: &Path) -> Result<SetupConfig> {
        match std::fs::read_to_string(path) {
            Ok(text) => SetupConfig::parse(&text, path),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(SetupConfig::default()),
            Err(e) => Err(CliError::io(format!("cannot read {}", path.display()), e)),
        }
    }

    /// Writes the file, creating its directory. A file holding a token is made owner-only (0600).
    pub fn save(&self, path: &Path) -> Result<()> {
        use std::io::Write as _;
        use std::os::unix::fs::OpenOptionsExt as _;
        use std::os::unix::fs::PermissionsExt as _;

        let text = serde_saphyr::to_string(self)
            .map_err(|e| CliError::config(format!("cannot write the config: {e}")))?;
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir)
                .map_err(|e| CliError::io(format!("cannot create {}", dir.display()), e))?;
        }
        let mode = if self.has_secret() { 0o600 } else { 0o644 };
        let write = || -> std::io::Result<()> {
            let mut f =
                std::fs::OpenOptions::new().write(true).create(true).truncate(true).mode(mode).open(path)?;
            // `mode` only applies to new files; an existing file that now holds a token is tightened.
            if self.has_secret() {
                f.set_permissions(std::fs::Permissions::from_mode(0o600))?;
            }
            f.write_all(text.as_bytes())
        };
        write().map_err(|e| CliError::io(format!("cannot write {}", path.display()), e))
    }
}

/// Where the config file is: `$FORKR_SETUP_DIR/config.yaml`; else the first existing `.forkr/` of the
/// current directory and the git root; else `.forkr/` at the git root, or in the current directory
/// outside a repository (where `config set` will create it).
pub fn locate(env: &Env, cwd: &Path) -> PathBuf {
    if let Some(dir) = env.get("FORKR_SETUP_DIR") {
        return cwd.join(dir).join(FILE_NAME);
    }
    let root = forkr_engine::name::git_root(cwd);
    let candidates = std::iter::once(cwd.to_path_buf()).chain(root.clone());
    for dir in candidates {
        if dir.join(DIR_NAME).is_dir() {
            return dir.join(DIR_NAME).join(FILE_NAME);
        }
    }
    root.unwrap_or_else(|| cwd.to_path_buf()).join(DIR_NAME).join(FILE_NAME)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_parse_with_aliases() {
        assert_eq!(Key::parse("url").unwrap(), Key::Top("api_url"));
        assert_eq!(Key::parse("api_url").unwrap(), Key::Top("api_url"));
        assert_eq!(Key::parse("profiles.staging.url").unwrap(), Key::Profile("staging".into(), "url"));
        assert_eq!(Key::parse("profiles.staging.api_url").unwrap(), Key::Profile("staging".into(), "url"));
        assert_eq!(Key::parse("profiles.prod-eu.token").unwrap(), Key::Profile("prod-eu".into(), "token"));
        for bad in ["nope", "profiles.x", "profiles..url", "profiles.a.b.url", "profiles.x.nope", ""] {
            let e = Key::parse(bad).unwrap_err();
            assert_eq!(e.code(), "config", "{bad}");
        }
    }

    #[test]
    fn set_get_unset() {
        let mut c = SetupConfig::default();
        assert!(c.set(&Key::parse("profile").unwrap(), Some("staging")).unwrap());
        assert!(!c.set(&Key::parse("profile").unwrap(), Some("staging")).unwrap());
        c.set(&Key::parse("profiles.prod.url").unwrap(), Some("https://api.prod.example")).unwrap();
        c.set(&Key::parse("profiles.prod.insecure").unwrap(), Some("yes")).unwrap();
        assert_eq!(c.get(&Key::parse("profiles.prod.insecure").unwrap()).as_deref(), Some("true"));
        assert_eq!(
            c.get(&Key::parse("profiles.prod.api_url").unwrap()).as_deref(),
            Some("https://api.prod.example")
        );
        assert!(c.set(&Key::parse("profiles.prod.url").unwrap(), None).unwrap());
        assert!(c.set(&Key::parse("profiles.prod.insecure").unwrap(), None).unwrap());
        assert!(c.profiles.is_empty(), "an emptied profile is removed");
        assert!(!c.set(&Key::parse("token").unwrap(), None).unwrap());
    }

    #[test]
    fn values_are_validated() {
        let mut c = SetupConfig::default();
        for (k, v) in [
            ("url", "api.example.com"),
            ("project", "Bad_Name"),
            ("insecure", "maybe"),
            ("ip", "not-an-ip"),
            ("profile", "a.b"),
            ("forkr_domain", "https://x"),
        ] {
            let e = c.set(&Key::parse(k).unwrap(), Some(v)).unwrap_err();
            assert!(e.message().contains(v) || e.message().contains(k), "{k}={v}: {}", e.message());
        }
        assert_eq!(c, SetupConfig::default());
    }

    #[test]
    fn file_round_trip() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(".forkr").join(FILE_NAME);
        assert_eq!(SetupConfig::load(&path).unwrap(), SetupConfig::default());
        let mut c = SetupConfig::default();
        for (k, v) in [
            ("profile", "staging"),
            ("forkr_domain", "forkr.example.com"),
            ("project", "web"),
            ("insecure", "false"),
            ("profiles.other.url", "http://10.0.0.1:7878"),
            ("profiles.other.ip", "10.0.0.1"),
        ] {
            c.set(&Key::parse(k).unwrap(), Some(v)).unwrap();
        }
        c.save(&path).unwrap();
        let text = std::fs::read_to_string(&path).unwrap();
        assert!(text.contains("forkr_domain: forkr.example.com"), "{text}");
        assert_eq!(SetupConfig::load(&path).unwrap(), c);
        use std::os::unix::fs::PermissionsExt as _;
        assert_eq!(std::fs::metadata(&path).unwrap().permissions().mode() & 0o777, 0o644);

        c.set(&Key::parse("token").unwrap(), Some("s3cret")).unwrap();
        c.save(&path).unwrap();
        assert_eq!(std::fs::metadata(&path).unwrap().permissions().mode() & 0o777, 0o600);
        assert_eq!(SetupConfig::load(&path).unwrap(), c);
    }

    #[test]
    fn hand_written_files_parse_with_aliases() {
        let text = "profile: staging\nurl: https://api.x.example\nprofiles:\n  dev:\n    api_url: http://127.0.0.1:7878\n    token: t\n";
        let c = SetupConfig::parse(text, Path::new("config.yaml")).unwrap();
        assert_eq!(c.api_url.as_deref(), Some("https://api.x.example"));
        assert_eq!(c.profiles["dev"].url.as_deref(), Some("http://127.0.0.1:7878"));
        assert!(c.describes("staging"));
        assert!(!c.describes("dev"));
    }

    #[test]
    fn unknown_keys_are_reported_with_the_file() {
        let e = SetupConfig::parse("porfile: x\n", Path::new("/w/.forkr/config.yaml")).unwrap_err();
        assert!(e.message().starts_with("cannot read /w/.forkr/config.yaml: "), "{}", e.message());
        assert!(e.message().contains("porfile"), "{}", e.message());
    }

    #[test]
    fn locate_prefers_setup_dir_then_existing_forkr_dirs() {
        let dir = tempfile::tempdir().unwrap();
        let repo = dir.path().join("repo");
        let sub = repo.join("sub");
        std::fs::create_dir_all(repo.join(".git")).unwrap();
        std::fs::create_dir_all(&sub).unwrap();
        let none = Env::default();
        // Nothing exists yet: the git root.
        assert_eq!(locate(&none, &sub), repo.join(".forkr/config.yaml"));
        // Outside a repository: the current directory.
        assert_eq!(locate(&none, dir.path()), dir.path().join(".forkr/config.yaml"));
        // An existing .forkr/ in the current directory wins over the root.
        std::fs::create_dir_all(sub.join(".forkr")).unwrap();
        assert_eq!(locate(&none, &sub), sub.join(".forkr/config.yaml"));
        // FORKR_SETUP_DIR wins over everything, relative to the current directory.
        let env = Env::from_pairs([("FORKR_SETUP_DIR", "setup")]);
        assert_eq!(locate(&env, &sub), sub.join("setup/config.yaml"));
    }
}
