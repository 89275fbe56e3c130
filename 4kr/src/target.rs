//! Which server the CLI talks to and with which token.
//!
//! URL, in this order (documents 001/002): `--url`; the selected profile (`--profile`, else
//! `FORKR_PROFILE`, else the config's `profile`) through `FORKR_PROFILE_<NAME>_URL`, the config's
//! `profiles.<name>.url`, or — when the profile is the deployment the config file describes — the
//! config's `api_url` or `https://api.<forkr_domain>`; `FORKR_URL`; `FORKR_API_URL`; the config's
//! `api_url` / `forkr_domain`; else the local server's default address.
//!
//! Token: `--token`; the profile's token (same three places); `FORKR_TOKEN`; the config's `token`;
//! and, only when nothing configured a URL at all, the local server's token file
//! (`$FORKR_DATA_DIR/token`, default `/var/lib/forkr/token`) so that `4kr` works out of the box
//! next to a `forkr-server` started with its defaults.
//!
//! Everything here is a pure function of the flags, an [`Env`] and the [`SetupConfig`], so it is
//! tested without touching the process environment.

use std::fmt;
use std::net::IpAddr;
use std::path::{Path, PathBuf};

use crate::env::Env;
use crate::error::{CliError, Result};
use crate::setup::{self, SetupConfig};

/// `forkr-server`'s default listen address.
pub const DEFAULT_URL: &str = "http://127.0.0.1:7878";
/// `forkr-server`'s default data dir, which holds its token file.
pub const DEFAULT_DATA_DIR: &str = "/var/lib/forkr";

/// The connection flags shared by every command.
#[derive(Debug, Clone, Default)]
pub struct Flags {
    pub url: Option<String>,
    pub profile: Option<String>,
    pub token: Option<String>,
}

/// Where a resolved value came from; shown in connection errors so the user knows what to change.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Source {
    /// A command-line flag such as `--url`.
    Flag(&'static str),
    /// An environment variable.
    Env(String),
    /// A key of the config file.
    Config { key: String, path: PathBuf },
    /// The built-in default.
    Default,
    /// The local server's token file.
    TokenFile(PathBuf),
}

impl fmt::Display for Source {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Source::Flag(flag) => write!(f, "{flag}"),
            Source::Env(var) => write!(f, "${var}"),
            Source::Config { key, path } => write!(f, "{key} in {}", path.display()),
            Source::Default => {
                f.write_str("the default; no --url, profile, FORKR_URL, FORKR_API_URL or config url is set")
            }
            Source::TokenFile(path) => write!(f, "{}", path.display()),
        }
    }
}

/// The resolved connection settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    /// API base URL without a trailing slash.
    pub url: String,
    pub url_source: Source,
    pub token: Option<String>,
    pub token_source: Option<Source>,
    /// The selected profile, if any.
    pub profile: Option<String>,
    pub ssh_host: Option<String>,
    /// Accept invalid TLS certificates.
    pub insecure: bool,
    /// Connect to this address instead of resolving the URL's host.
    pub ip: Option<IpAddr>,
}

/// The environment variable for `suffix` of profile `name`: `FORKR_PROFILE_<NAME>_<SUFFIX>`, the name
/// uppercased and every character that is not an ASCII letter or digit replaced by `_`.
pub fn profile_var(name: &str, suffix: &str) -> String {
    let upper: String =
        name.chars().map(|c| if c.is_ascii_alphanumeric() { c.to_ascii_uppercase() } else { '_' }).collect();
    format!("FORKR_PROFILE_{upper}_{suffix}")
}

/// Checks that `raw` is an http(s) URL and strips trailing slashes. The error completes a sentence
/// that starts with the value.
pub fn normalize_url(raw: &str) -> std::result::Result<String, &'static str> {
    let trimmed = raw.trim().trim_end_matches('/');
    let rest = trimmed
        .strip_prefix("http://")
        .or_else(|| trimmed.strip_prefix("https://"))
        .ok_or("must start with http:// or https://")?;
    if rest.is_empty() || rest.starts_with('/') {
        return Err("has no host");
    }
    Ok(trimmed.to_owned())
}

/// A value and where it came from.
type Sourced = (String, Source);

fn config_source(path: &Path, key: impl Into<String>) -> Source {
    Source::Config { key: key.into(), path: path.to_path_buf() }
}

fn from_env(env: &Env, var: &str) -> Option<Sourced> {
    env.get(var).map(|v| (v.to_owned(), Source::Env(var.to_owned())))
}

/// The settings of one profile, found in the environment and the config file.
#[derive(Debug, Default)]
struct ProfileValues {
    url: Option<Sourced>,
    token: Option<Sourced>,
    ssh_host: Option<String>,
    insecure: Option<Sourced>,
    ip: Option<Sourced>,
}

fn profile_values(name: &str, env: &Env, config: &SetupConfig, path: &Path) -> ProfileValues {
    let entry = config.profiles.get(name);
    let key = |k: &str| format!("profiles.{name}.{k}");
    let from_entry = |k: &str, v: Option<&String>| v.map(|v| (v.clone(), config_source(path, key(k))));
    // The deployment the file itself describes, when this profile is it.
    let own = config.describes(name);
    let domain =
        entry.and_then(|e| e.forkr_domain.as_ref()).or(if own { config.forkr_domain.as_ref() } else { None });

    let url = from_env(env, &profile_var(name, "URL"))
        .or_else(|| from_entry("url", entry.and_then(|e| e.url.as_ref())))
        .or_else(|| {
            own.then(|| config.api_url.as_ref().map(|u| (u.clone(), config_source(path, "api_url"))))
                .flatten()
        })
        .or_else(|| {
            domain.map(|d| {
                let k = if entry.is_some_and(|e| e.forkr_domain.is_some()) {
                    key("forkr_domain")
                } else {
                    "forkr_domain".into()
                };
                (format!("https://api.{d}"), config_source(path, k))
            })
        });
    let token = from_env(env, &profile_var(name, "TOKEN"))
        .or_else(|| from_entry("token", entry.and_then(|e| e.token.as_ref())))
        .or_else(|| {
            own.then(|| config.token.as_ref().map(|t| (t.clone(), config_source(path, "token")))).flatten()
        });
    let ssh_host = env
        .get(&profile_var(name, "SSH_HOST"))
        .map(str::to_owned)
        .or_else(|| entry.and_then(|e| e.ssh_host.clone()))
        .or_else(|| own.then(|| config.ssh_host.clone()).flatten())
        .or_else(|| domain.map(|d| format!("ssh.{d}")));
    let insecure = from_env(env, &profile_var(name, "INSECURE"))
        .or_else(|| from_entry("insecure", entry.and_then(|e| e.insecure.map(|b| b.to_string())).as_ref()))
        .or_else(|| {
            own.then(|| config.insecure.map(|b| (b.to_string(), config_source(path, "insecure")))).flatten()
        });
    let ip = from_env(env, &profile_var(name, "IP"))
        .or_else(|| from_entry("ip", entry.and_then(|e| e.ip.as_ref())))
        .or_else(|| {
            own.then(|| config.ip.as_ref().map(|i| (i.clone(), config_source(path, "ip")))).flatten()
        });
    ProfileValues { url, token, ssh_host, insecure, ip }
}

/// The profile the user selected, if any: `--profile`, `FORKR_PROFILE`, then the config's `profile`.
pub fn selected_profile(flags: &Flags, env: &Env, config: &SetupConfig) -> Option<String> {
    flags
        .profile
        .as_deref()
        .filter(|p| !p.is_empty())
        .or_else(|| env.get("FORKR_PROFILE"))
        .or(config.profile.as_deref())
        .map(str::to_owned)
}

/// The token file of the local server: `$FORKR_DATA_DIR/token`, default `/var/lib/forkr/token`.
pub fn local_token_file(env: &Env) -> PathBuf {
    Path::new(env.get("FORKR_DATA_DIR").unwrap_or(DEFAULT_DATA_DIR)).join("token")
}

/// Resolves the target. `read_token_file` reads the local server's token file (injected so tests
/// do not depend on the machine).
pub fn resolve(
    flags: &Flags,
    env: &Env,
    config: &SetupConfig,
    config_path: &Path,
    read_token_file: &dyn Fn(&Path) -> Option<String>,
) -> Result<Target> {
    let profile = selected_profile(flags, env, config);
    if let Some(p) = &profile {
        setup::validate_profile_name(p)?;
    }
    let values = profile.as_deref().map(|p| profile_values(p, env, config, config_path)).unwrap_or_default();

    let flag_url = flags.url.as_ref().filter(|u| !u.is_empty()).map(|u| (u.clone(), Source::Flag("--url")));
    let (raw_url, url_source) = match (flag_url, &profile) {
        (Some(u), _) => u,
        (None, Some(p)) => values.url.clone().ok_or_else(|| {
            CliError::config(format!(
                "profile {p:?} is selected but {} is not set",
                profile_var(p, "URL")
            ))
            .with_help(format!(
                "export {}=https://…, set it in the config with `4kr config set profiles.{p}.url https://…`, or pick another profile",
                profile_var(p, "URL")
            ))
        })?,
        (None, None) => from_env(env, "FORKR_URL")
            .or_else(|| from_env(env, "FORKR_API_URL"))
            .or_else(|| config.api_url.as_ref().map(|u| (u.clone(), config_source(config_path, "api_url"))))
            .or_else(|| {
                config
                    .forkr_domain
                    .as_ref()
                    .map(|d| (format!("https://api.{d}"), config_source(config_path, "forkr_domain")))
            })
            .unwrap_or_else(|| (DEFAULT_URL.to_owned(), Source::Default)),
    };
    let url = normalize_url(&raw_url).map_err(|why| {
        CliError::config(format!("invalid API URL {raw_url:?} (from {url_source}): it {why}"))
    })?;

    let flag_token =
        flags.token.as_ref().filter(|t| !t.is_empty()).map(|t| (t.clone(), Source::Flag("--token")));
    let mut token = flag_token
        .or(values.token)
        .or_else(|| from_env(env, "FORKR_TOKEN"))
        .or_else(|| config.token.as_ref().map(|t| (t.clone(), config_source(config_path, "token"))));
    if token.is_none() && url_source == Source::Default {
        let file = local_token_file(env);
        token = read_token_file(&file)
            .map(|t| t.trim().to_owned())
            .filter(|t| !t.is_empty())
            .map(|t| (t, Source::TokenFile(file)));
    }
    let (token, token_source) = match token {
        Some((t, s)) => (Some(t), Some(s)),
        None => (None, None),
    };

    let insecure_raw = values
        .insecure
        .or_else(|| from_env(env, "FORKR_INSECURE"))
        .or_else(|| config.insecure.map(|b| (b.to_string(), config_source(config_path, "insecure"))));
    let insecure = match insecure_raw {
        None => false,
        Some((v, src)) => setup::parse_bool_text(&v)
            .ok_or_else(|| CliError::config(format!("{src} must be true or false, not {v:?}")))?,
    };
    let ip = match values.ip {
        None => None,
        Some((v, src)) => Some(
            v.parse::<IpAddr>()
                .map_err(|_| CliError::config(format!("{src} must be an IP address, not {v:?}")))?,
        ),
    };
    let ssh_host = if profile.is_some() {
        values.ssh_host
    } else {
        env.get("FORKR_SSH_HOST")
            .map(str::to_owned)
            .or_else(|| config.ssh_host.clone())
            .or_else(|| config.forkr_domain.as_ref().map(|d| format!("ssh.{d}")))
    };
    Ok(Target { url, url_source, token, token_source, profile, ssh_host, insecure, ip })
}

/// A profile known from the config file or the environment, for `4kr config profiles`.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct KnownProfile {
    pub name: String,
    /// The URL it resolves to, if any.
    pub url: Option<String>,
    /// Where it is defined: `env`, `config`, or both.
    pub defined_in: Vec<&'static str>,
    /// Whether it is the one commands target now.
    pub selected: bool,
}

/// Every profile named in the config (its `profile`/`env` keys and `profiles:`) or by a
/// `FORKR_PROFILE_<NAME>_URL` variable (shown lowercased, since the variable cannot say more).
pub fn known_profiles(
    flags: &Flags,
    env: &Env,
    config: &SetupConfig,
    config_path: &Path,
) -> Vec<KnownProfile> {
    use std::collections::BTreeMap;
    let mut found: BTreeMap<String, Vec<&'static str>> = BTreeMap::new();
    for name in config.profiles.keys().chain(config.profile.iter()).chain(config.env.iter()) {
        let entry = found.entry(name.clone()).or_default();
        if !entry.contains(&"config") {
            entry.push("config");
        }
    }
    for (var, _) in env.iter() {
        let Some(upper) = var.strip_prefix("FORKR_PROFILE_").and_then(|r| r.strip_suffix("_URL")) else {
            continue;
        };
        if upper.is_empty() {
            continue;
        }
        // Match a config profile whose variable name is this one, else use the lowercased form.
        let name = found
            .keys()
            .find(|n| profile_var(n, "URL") == var)
            .cloned()
            .unwrap_or_else(|| upper.to_ascii_lowercase());
        let entry = found.entry(name).or_default();
        if !entry.contains(&"env") {
            entry.push("env");
        }
    }
    let selected = selected_profile(flags, env, config);
    found
        .into_iter()
        .map(|(name, defined_in)| {
            let url = profile_values(&name, env, config, config_path).url.map(|(u, _)| u);
            let selected = selected.as_deref() == Some(name.as_str());
            KnownProfile { name, url, defined_in, selected }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn no_file(_: &Path) -> Option<String> {
        None
    }

    fn resolve_with(flags: &Flags, env: &[(&str, &str)], config: &SetupConfig) -> Result<Target> {
        resolve(
            flags,
            &Env::from_pairs(env.iter().copied()),
            config,
            Path::new("/w/.forkr/config.yaml"),
            &no_file,
        )
    }

    fn url(flags: &Flags, env: &[(&str, &str)], config: &SetupConfig) -> String {
        resolve_with(flags, env, config).unwrap().url
    }

    #[test]
    fn profile_variable_names() {
        assert_eq!(profile_var("staging", "URL"), "FORKR_PROFILE_STAGING_URL");
        assert_eq!(profile_var("prod-eu.1", "TOKEN"), "FORKR_PROFILE_PROD_EU_1_TOKEN");
        assert_eq!(profile_var("dev_box", "SSH_HOST"), "FORKR_PROFILE_DEV_BOX_SSH_HOST");
    }

    #[test]
    fn url_priority_order() {
        let none = SetupConfig::default();
        let cfg = SetupConfig { api_url: Some("http://config:1".into()), ..Default::default() };
        let all = [
            ("FORKR_PROFILE", "staging"),
            ("FORKR_PROFILE_STAGING_URL", "http://profile:1"),
            ("FORKR_URL", "http://forkr-url:1"),
            ("FORKR_API_URL", "http://api-url:1"),
        ];
        let flag = Flags { url: Some("http://flag:1/".into()), ..Default::default() };
        assert_eq!(url(&flag, &all, &cfg), "http://flag:1");
        assert_eq!(url(&Flags::default(), &all, &cfg), "http://profile:1");
        assert_eq!(url(&Flags::default(), &all[2..], &cfg), "http://forkr-url:1");
        assert_eq!(url(&Flags::default(), &all[3..], &cfg), "http://api-url:1");
        assert_eq!(url(&Flags::default(), &[], &cfg), "http://config:1");
        let t = resolve_with(&Flags::default(), &[], &none).unwrap();
        assert_eq!((t.url.as_str(), &t.url_source), (DEFAULT_URL, &Source::Default));
    }

    #[test]
    fn profile_flag_beats_env_and_config_profile() {
        let cfg = SetupConfig { profile: Some("cfg".into()), ..Default::default() };
        let env = [
            ("FORKR_PROFILE", "envp"),
            ("FORKR_PROFILE_ENVP_URL", "http://envp:1"),
            ("FORKR_PROFILE_FLAGP_URL", "http://flagp:1"),
            ("FORKR_PROFILE_CFG_URL", "http://cfg:1"),
        ];
        let flags = Flags { profile: Some("flagp".into()), ..Default::default() };
        assert_eq!(url(&flags, &env, &cfg), "http://flagp:1");
        assert_eq!(url(&Flags::default(), &env, &cfg), "http://envp:1");
        assert_eq!(url(&Flags::default(), &env[1..], &cfg), "http://cfg:1");
    }

    #[test]
    fn selected_profile_without_url_is_the_documented_error() {
        let env = [("FORKR_PROFILE", "staging"), ("FORKR_URL", "http://ignored:1")];
        let e = resolve_with(&Flags::default(), &env, &SetupConfig::default()).unwrap_err();
        assert_eq!(e.message(), r#"profile "staging" is selected but FORKR_PROFILE_STAGING_URL is not set"#);
        let e = resolve_with(
            &Flags { profile: Some("prod-eu".into()), ..Default::default() },
            &[],
            &SetupConfig::default(),
        )
        .unwrap_err();
        assert_eq!(e.message(), r#"profile "prod-eu" is selected but FORKR_PROFILE_PROD_EU_URL is not set"#);
        // --url still wins over a selected profile, so no error then.
        let flags = Flags { url: Some("http://x:1".into()), ..Default::default() };
        assert_eq!(url(&flags, &env, &SetupConfig::default()), "http://x:1");
    }

    #[test]
    fn config_describing_the_selected_profile_derives_url_ssh_and_token() {
        let cfg = SetupConfig {
            env: Some("staging".into()),
            forkr_domain: Some("forkr.example.com".into()),
            token: Some("cfg-token".into()),
            ..Default::default()
        };
        let t = resolve_with(&Flags::default(), &[("FORKR_PROFILE", "staging")], &cfg).unwrap();
        assert_eq!(t.url, "https://api.forkr.example.com");
        assert_eq!(t.ssh_host.as_deref(), Some("ssh.forkr.example.com"));
        assert_eq!(t.token.as_deref(), Some("cfg-token"));
        assert_eq!(t.profile.as_deref(), Some("staging"));

        // Explicit api_url and ssh_host beat the domain; env beats the file.
        let cfg = SetupConfig {
            api_url: Some("https://forks.example.com".into()),
            ssh_host: Some("gate.example.com".into()),
            ..cfg
        };
        let t = resolve_with(&Flags::default(), &[("FORKR_PROFILE", "staging")], &cfg).unwrap();
        assert_eq!(t.url, "https://forks.example.com");
        assert_eq!(t.ssh_host.as_deref(), Some("gate.example.com"));
        let env = [("FORKR_PROFILE", "staging"), ("FORKR_PROFILE_STAGING_TOKEN", "env-token")];
        assert_eq!(resolve_with(&Flags::default(), &env, &cfg).unwrap().token.as_deref(), Some("env-token"));

        // A different profile does not get this deployment's settings.
        let e = resolve_with(&Flags::default(), &[("FORKR_PROFILE", "prod")], &cfg).unwrap_err();
        assert!(e.message().contains("FORKR_PROFILE_PROD_URL"));
    }

    #[test]
    fn config_default_profile_targets_without_env() {
        let cfg = SetupConfig {
            profile: Some("staging".into()),
            forkr_domain: Some("s.example".into()),
            ..Default::default()
        };
        // The stored default profile is the deployment, and beats FORKR_URL (a profile is selected).
        assert_eq!(url(&Flags::default(), &[("FORKR_URL", "http://x:1")], &cfg), "https://api.s.example");
    }

    #[test]
    fn config_profiles_map() {
        let mut cfg = SetupConfig::default();
        cfg.profiles.insert(
            "dev".into(),
            crate::setup::ProfileConfig {
                url: Some("http://10.1.1.1:7878".into()),
                token: Some("dev-token".into()),
                ip: Some("10.1.1.2".into()),
                insecure: Some(true),
                ..Default::default()
            },
        );
        let t =
            resolve_with(&Flags { profile: Some("dev".into()), ..Default::default() }, &[], &cfg).unwrap();
        assert_eq!(t.url, "http://10.1.1.1:7878");
        assert_eq!(t.token.as_deref(), Some("dev-token"));
        assert_eq!(t.ip, Some("10.1.1.2".parse().unwrap()));
        assert!(t.insecure);
        assert_eq!(
            t.url_source,
            Source::Config { key: "profiles.dev.url".into(), path: "/w/.forkr/config.yaml".into() }
        );
        // The env variable beats the file.
        let env = [("FORKR_PROFILE_DEV_URL", "http://env:1")];
        assert_eq!(
            url(&Flags { profile: Some("dev".into()), ..Default::default() }, &env, &cfg),
            "http://env:1"
        );
    }

    #[test]
    fn token_priority_order() {
        let cfg = SetupConfig { token: Some("config".into()), ..Default::default() };
        let env = [
            ("FORKR_PROFILE", "p"),
            ("FORKR_PROFILE_P_URL", "http://p:1"),
            ("FORKR_PROFILE_P_TOKEN", "profile"),
            ("FORKR_TOKEN", "env"),
        ];
        let tok = |flags: &Flags, env: &[(&str, &str)]| resolve_with(flags, env, &cfg).unwrap().token;
        let flag = Flags { token: Some("flag".into()), ..Default::default() };
        assert_eq!(tok(&flag, &env).as_deref(), Some("flag"));
        assert_eq!(tok(&Flags::default(), &env).as_deref(), Some("profile"));
        assert_eq!(tok(&Flags::default(), &[env[0], env[1], env[3]]).as_deref(), Some("env"));
        assert_eq!(tok(&Flags::default(), &env[..2]).as_deref(), Some("config"));
    }

    #[test]
    fn token_file_only_when_nothing_configures_a_url() {
        let read = |p: &Path| -> Option<String> {
            (p == Path::new("/var/lib/forkr/token") || p == Path::new("/d/token"))
                .then(|| "file-token\n".into())
        };
        let cfg = SetupConfig::default();
        let path = Path::new("c.yaml");
        let t = resolve(&Flags::default(), &Env::default(), &cfg, path, &read).unwrap();
        assert_eq!(t.token.as_deref(), Some("file-token"));
        assert_eq!(t.token_source, Some(Source::TokenFile("/var/lib/forkr/token".into())));
        let env = Env::from_pairs([("FORKR_DATA_DIR", "/d")]);
        assert_eq!(
            resolve(&Flags::default(), &env, &cfg, path, &read).unwrap().token.as_deref(),
            Some("file-token")
        );
        // A configured URL means a server we know nothing local about: no token file.
        let env = Env::from_pairs([("FORKR_URL", "http://127.0.0.1:7878")]);
        assert_eq!(resolve(&Flags::default(), &env, &cfg, path, &read).unwrap().token, None);
        // An explicit token wins over the file.
        let env = Env::from_pairs([("FORKR_TOKEN", "t")]);
        assert_eq!(resolve(&Flags::default(), &env, &cfg, path, &read).unwrap().token.as_deref(), Some("t"));
    }

    #[test]
    fn bad_values_name_their_source() {
        let e = resolve_with(&Flags::default(), &[("FORKR_URL", "api.example.com")], &SetupConfig::default())
            .unwrap_err();
        assert_eq!(
            e.message(),
            r#"invalid API URL "api.example.com" (from $FORKR_URL): it must start with http:// or https://"#
        );
        let env = [
            ("FORKR_PROFILE", "p"),
            ("FORKR_PROFILE_P_URL", "http://p:1"),
            ("FORKR_PROFILE_P_INSECURE", "sure"),
        ];
        let e = resolve_with(&Flags::default(), &env, &SetupConfig::default()).unwrap_err();
        assert!(
            e.message().starts_with("$FORKR_PROFILE_P_INSECURE must be true or false"),
            "{}",
            e.message()
        );
        let env =
            [("FORKR_PROFILE", "p"), ("FORKR_PROFILE_P_URL", "http://p:1"), ("FORKR_PROFILE_P_IP", "x")];
        assert!(resolve_with(&Flags::default(), &env, &SetupConfig::default()).is_err());
    }

    #[test]
    fn insecure_from_env_inside_a_box() {
        // Inside a box, FORKR_API_URL and FORKR_INSECURE are injected.
        let env = [("FORKR_API_URL", "https://forks.example.com"), ("FORKR_INSECURE", "true")];
        let t = resolve_with(&Flags::default(), &env, &SetupConfig::default()).unwrap();
        assert_eq!(t.url, "https://forks.example.com");
        assert!(t.insecure);
    }

    #[test]
    fn profiles_are_listed_from_config_and_env() {
        let mut cfg = SetupConfig {
            profile: Some("staging".into()),
            forkr_domain: Some("s.example".into()),
            ..Default::default()
        };
        cfg.profiles.insert(
            "dev-1".into(),
            crate::setup::ProfileConfig { url: Some("http://d:1".into()), ..Default::default() },
        );
        let env = Env::from_pairs([
            ("FORKR_PROFILE_DEV_1_URL", "http://env-d:1"),
            ("FORKR_PROFILE_PROD_URL", "https://p.example"),
            ("FORKR_PROFILE__URL", "http://ignored"),
        ]);
        let list = known_profiles(&Flags::default(), &env, &cfg, Path::new("c.yaml"));
        let summary: Vec<_> = list
            .iter()
            .map(|p| (p.name.as_str(), p.url.as_deref(), p.defined_in.clone(), p.selected))
            .collect();
        assert_eq!(
            summary,
            vec![
                ("dev-1", Some("http://env-d:1"), vec!["config", "env"], false),
                ("prod", Some("https://p.example"), vec!["env"], false),
                ("staging", Some("https://api.s.example"), vec!["config"], true),
            ]
        );
    }
}
