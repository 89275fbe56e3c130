//! The environment a box sees (document 004), resource value parsing, and the host-side files a box
//! start writes: `/etc/hosts`, `/etc/resolv.conf`, `/etc/boxes-env`.

use std::collections::BTreeMap;

use super::Config;
use crate::store::BoxRow;
use crate::{Error, Result};

/// Keys a user may not set with `-e` (document 004).
pub const RESERVED_ENV: &[&str] = &["FORKR_PROJECT", "BOX_NAME", "FORKR_API_URL", "FORKR_API_HOST", "TERM"];

/// The bare system PATH (document 004: what non-login children see).
pub const SYSTEM_PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/// Rejects reserved or malformed keys.
pub fn check_env(env: &BTreeMap<String, String>) -> Result<()> {
    for k in env.keys() {
        if RESERVED_ENV.contains(&k.as_str()) {
            return Err(Error::bad_request("reserved_env", format!("environment variable is reserved: {k}")));
        }
        let valid = !k.is_empty()
            && !k.as_bytes()[0].is_ascii_digit()
            && k.bytes().all(|c| c.is_ascii_alphanumeric() || c == b'_');
        if !valid {
            return Err(Error::bad_request(
                "invalid_env",
                format!(
                    "invalid environment variable name {k:?}: use letters, digits and '_', not starting with a digit"
                ),
            ));
        }
    }
    Ok(())
}

/// The variables the runtime injects (document 004 table), in order.
pub fn injected(config: &Config, project: &str, name: &str) -> Vec<(String, String)> {
    let api_host = format!("forks.{}", config.domain);
    let api_url = config.api_url.clone().unwrap_or_else(|| format!("https://{api_host}"));
    let mut v = vec![
        ("FORKR_PROJECT".to_owned(), project.to_owned()),
        ("BOX_NAME".to_owned(), name.to_owned()),
        ("FORKR_API_URL".to_owned(), api_url),
        ("FORKR_API_HOST".to_owned(), api_host),
        ("FORKR_API_IP".to_owned(), config.node_ip.clone()),
        ("FORKR_NODE_IP".to_owned(), config.node_ip.clone()),
        ("TERM".to_owned(), "xterm-256color".to_owned()),
    ];
    if config.insecure {
        v.push(("FORKR_INSECURE".to_owned(), "true".to_owned()));
    }
    v
}

/// PID 1's full environment: PATH and HOME, the injected variables, then the box's own.
pub fn box_environment(config: &Config, row: &BoxRow) -> Vec<(String, String)> {
    let mut v = vec![("PATH".to_owned(), SYSTEM_PATH.to_owned()), ("HOME".to_owned(), "/root".to_owned())];
    v.extend(injected(config, &row.project, &row.name));
    v.extend(row.env.iter().map(|(k, val)| (k.clone(), val.clone())));
    v
}

/// Quotes a value for `export KEY="value"` in a POSIX shell.
fn shell_double_quote(v: &str) -> String {
    let mut out = String::with_capacity(v.len() + 2);
    out.push('"');
    for c in v.chars() {
        if matches!(c, '"' | '\\' | '$' | '`') {
            out.push('\\');
        }
        out.push(c);
    }
    out.push('"');
    out
}

/// The contents of `/etc/boxes-env`: one `export KEY="value"` line per injected and user variable.
pub fn boxes_env_file(config: &Config, row: &BoxRow) -> String {
    let mut s = String::from("# Written by forkr at every box start. Do not edit: changes are lost.\n");
    let injected = injected(config, &row.project, &row.name);
    let all = injected
        .iter()
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .chain(row.env.iter().map(|(k, v)| (k.as_str(), v.as_str())));
    for (k, v) in all {
        s.push_str(&format!("export {k}={}\n", shell_double_quote(v)));
    }
    s
}

/// `/etc/hosts` of a box.
pub fn hosts_file(project: &str, name: &str, peers: &[(String, String)]) -> String {
    let mut s = format!(
        "# Written by forkr.\n127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\n127.0.1.1\t{name}.{project} {name}\n"
    );
    for (ip, names) in peers {
        s.push_str(&format!("{ip}\t{names}\n"));
    }
    s
}

/// `/etc/resolv.conf` of a box: the host's nameservers with the project's search domains
/// (document 004: `<project>.forks`, `forks`, `<project>`; `ndots:1`).
pub fn resolv_conf(host_resolv: &str, project: &str) -> String {
    let mut s = String::from("# Written by forkr.\n");
    for line in host_resolv.lines() {
        if line.trim_start().starts_with("nameserver") {
            s.push_str(line.trim());
            s.push('\n');
        }
    }
    s.push_str(&format!("search {project}.forks forks {project}\noptions ndots:1\n"));
    s
}

/// Parses a CPU request: cores (`2`, `0.5`) or millicores (`500m`).
pub fn parse_cpus(s: &str) -> Result<f64> {
    let s = s.trim();
    let v = if let Some(m) = s.strip_suffix('m') {
        m.parse::<f64>().ok().map(|m| m / 1000.0)
    } else {
        s.parse::<f64>().ok()
    };
    match v {
        Some(v) if v.is_finite() && v > 0.0 && v <= 1024.0 => Ok(v),
        _ => Err(Error::bad_request(
            "invalid_cpu",
            format!("invalid CPU value {s:?}: give cores (2, 0.5) or millicores (500m)"),
        )),
    }
}

/// Parses a memory size into MiB: `512Mi`, `2Gi`, `1G`, `512M`, `1024` (MiB).
pub fn parse_memory_mb(s: &str) -> Result<u64> {
    let t = s.trim();
    let split = t.find(|c: char| !(c.is_ascii_digit() || c == '.')).unwrap_or(t.len());
    let (num, unit) = t.split_at(split);
    let n: Option<f64> = num.parse().ok();
    let factor_mb = match unit.trim() {
        "" | "Mi" | "M" | "MB" | "MiB" | "m" => Some(1.0),
        "Gi" | "G" | "GB" | "GiB" | "g" => Some(1024.0),
        "Ti" | "T" | "TB" | "TiB" => Some(1024.0 * 1024.0),
        "Ki" | "K" | "KB" | "KiB" | "k" => Some(1.0 / 1024.0),
        _ => None,
    };
    match (n, factor_mb) {
        (Some(n), Some(f)) if n > 0.0 && (n * f) >= 16.0 && (n * f) <= 16.0 * 1024.0 * 1024.0 => {
            Ok((n * f).round() as u64)
        }
        _ => Err(Error::bad_request(
            "invalid_memory",
            format!(
                "invalid memory value {s:?}: give a size such as 512Mi, 2Gi or 1024 (MiB), at least 16Mi"
            ),
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reserved_env_is_rejected() {
        let e = check_env(&BTreeMap::from([("BOX_NAME".into(), "x".into())])).unwrap_err();
        assert!(e.message().contains("environment variable is reserved"));
        assert!(check_env(&BTreeMap::from([("1A".into(), "x".into())])).is_err());
        check_env(&BTreeMap::from([("MY_VAR".into(), "x".into())])).unwrap();
    }

    #[test]
    fn quoting() {
        assert_eq!(shell_double_quote(r#"a"b$c`d\e"#), r#""a\"b\$c\`d\\e""#);
    }

    #[test]
    fn resources() {
        assert_eq!(parse_cpus("500m").unwrap(), 0.5);
        assert_eq!(parse_cpus("2").unwrap(), 2.0);
        assert!(parse_cpus("0").is_err());
        assert!(parse_cpus("abc").is_err());
        assert_eq!(parse_memory_mb("512Mi").unwrap(), 512);
        assert_eq!(parse_memory_mb("2Gi").unwrap(), 2048);
        assert_eq!(parse_memory_mb("1024").unwrap(), 1024);
        assert!(parse_memory_mb("1Ki").is_err());
        assert!(parse_memory_mb("lots").is_err());
    }

    #[test]
    fn resolv() {
        let r = resolv_conf("nameserver 10.0.0.2\nsearch corp\n", "p");
        assert!(r.contains("nameserver 10.0.0.2\n"));
        assert!(r.contains("search p.forks forks p\noptions ndots:1\n"));
        assert!(!r.contains("corp"));
    }
}
