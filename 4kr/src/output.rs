//! Human output (aligned tables, `key: value` details) and JSON output.

use std::fmt::Write as _;

use forkr_engine::api::{BaseInfo, BoxInfo, SnapshotInfo};
use serde::Serialize;

use crate::error::{CliError, Result};

/// Left-aligned columns separated by three spaces; the last column is not padded.
pub fn table(headers: &[&str], rows: &[Vec<String>]) -> String {
    let mut widths: Vec<usize> = headers.iter().map(|h| h.chars().count()).collect();
    for row in rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.chars().count());
        }
    }
    let mut out = String::new();
    let header: Vec<String> = headers.iter().map(|h| h.to_string()).collect();
    for row in std::iter::once(&header).chain(rows) {
        let mut line = String::new();
        for (i, cell) in row.iter().enumerate() {
            if i + 1 == row.len() {
                line.push_str(cell);
            } else {
                let _ = write!(line, "{cell:<width$}   ", width = widths[i]);
            }
        }
        out.push_str(line.trim_end());
        out.push('\n');
    }
    out
}

/// `list`: NAME STATUS BASE URL CREATED.
pub fn box_table(boxes: &[BoxInfo]) -> String {
    let rows: Vec<Vec<String>> = boxes
        .iter()
        .map(|b| {
            vec![
                b.name.clone(),
                b.status.as_str().to_owned(),
                b.base.clone(),
                b.url.clone(),
                b.created_at.clone(),
            ]
        })
        .collect();
    table(&["NAME", "STATUS", "BASE", "URL", "CREATED"], &rows)
}

fn list_or_dash(items: &[String]) -> String {
    if items.is_empty() { "-".to_owned() } else { items.join(", ") }
}

/// `show`: document 002's fields, one `key: value` per line, keys aligned.
pub fn box_details(b: &BoxInfo) -> String {
    let data: Vec<String> = b
        .data
        .iter()
        .map(|d| format!("{}={}{}", d.name, d.path, if d.read_only { ":ro" } else { "" }))
        .collect();
    let mut fields: Vec<(&str, String)> = vec![
        ("name", b.name.clone()),
        ("project", b.project.clone()),
        ("status", b.status.as_str().to_owned()),
        ("base", b.base.clone()),
    ];
    if let Some(src) = &b.forked_from {
        fields.push(("forked_from", src.clone()));
    }
    fields.extend([
        ("url", b.url.clone()),
        ("port", b.port.to_string()),
        ("created_at", b.created_at.clone()),
        ("updated_at", b.updated_at.clone()),
        ("started_at", b.started_at.clone().unwrap_or_else(|| "-".to_owned())),
        ("published", list_or_dash(&b.published)),
        ("tags", list_or_dash(&b.tags)),
        ("data", list_or_dash(&data)),
        ("cpus", b.cpus.to_string()),
        ("ram_mb", b.ram_mb.to_string()),
        ("storage_gb", b.storage_gb.to_string()),
        ("termination_grace_seconds", b.termination_grace_seconds.to_string()),
    ]);
    let width = fields.iter().map(|(k, _)| k.len()).max().unwrap_or(0) + 1;
    let mut out = String::new();
    for (k, v) in fields {
        let _ = writeln!(out, "{:<width$} {v}", format!("{k}:"));
    }
    out
}

/// Bytes for people: `512B`, `1.5K`, `12.3M`, `2.0G` (powers of 1024, one decimal). Tables use this;
/// `--json` keeps exact bytes.
pub fn human_size(bytes: u64) -> String {
    const UNITS: [&str; 6] = ["K", "M", "G", "T", "P", "E"];
    if bytes < 1024 {
        return format!("{bytes}B");
    }
    let mut value = bytes as f64 / 1024.0;
    let mut unit = 0;
    // Compare after rounding, so 1023.96K prints as 1.0M rather than 1024.0K.
    while (value * 10.0).round() / 10.0 >= 1024.0 && unit + 1 < UNITS.len() {
        value /= 1024.0;
        unit += 1;
    }
    format!("{value:.1}{}", UNITS[unit])
}

/// A size that may still be being measured by the server (`-` until it is known).
fn size_cell(size: Option<u64>) -> String {
    size.map_or_else(|| "-".to_owned(), human_size)
}

fn or_dash(value: Option<&str>) -> String {
    value.filter(|v| !v.is_empty()).unwrap_or("-").to_owned()
}

/// `snapshot list`: NAME SIZE CREATED DESCRIPTION (document 000), CREATED in RFC3339.
pub fn snapshot_table(snapshots: &[SnapshotInfo]) -> String {
    let rows: Vec<Vec<String>> = snapshots
        .iter()
        .map(|s| vec![s.name.clone(), size_cell(s.size), s.created_at.clone(), s.description.clone()])
        .collect();
    table(&["NAME", "SIZE", "CREATED", "DESCRIPTION"], &rows)
}

/// `base list`: NAME VERSION SIZE CREATED, one row per base name with its newest version.
pub fn base_table(bases: &[BaseInfo]) -> String {
    let rows: Vec<Vec<String>> = bases
        .iter()
        .map(|b| {
            let latest = b.versions.iter().find(|v| v.version == b.latest);
            vec![
                b.name.clone(),
                b.latest.clone(),
                size_cell(latest.and_then(|v| v.size)),
                latest.map(|v| v.created_at.clone()).unwrap_or_else(|| "-".to_owned()),
            ]
        })
        .collect();
    table(&["NAME", "VERSION", "SIZE", "CREATED"], &rows)
}

/// `base show`: name, latest version and version count, then VERSION KIND TAG BUILDER PARENT SIZE
/// CREATED (document 000). TAG is the build script's full sha256, so it can be pasted into `--tag`
/// and `alias:tag`.
pub fn base_details(b: &BaseInfo) -> String {
    let mut out = String::new();
    let _ = writeln!(out, "name:           {}", b.name);
    let _ = writeln!(out, "latest_version: {}", b.latest);
    let _ = writeln!(out, "version_count:  {}", b.version_count);
    out.push('\n');
    let rows: Vec<Vec<String>> = b
        .versions
        .iter()
        .map(|v| {
            vec![
                v.version.clone(),
                v.kind.clone(),
                or_dash(v.tag.as_deref()),
                or_dash(Some(&v.builder)),
                or_dash(v.parent.as_deref()),
                size_cell(v.size),
                v.created_at.clone(),
            ]
        })
        .collect();
    out.push_str(&table(&["VERSION", "KIND", "TAG", "BUILDER", "PARENT", "SIZE", "CREATED"], &rows));
    // Document 000: `base show` reports the build script of each version.
    for v in b.versions.iter().filter(|v| v.script.is_some()) {
        let _ = writeln!(out, "\nbuild script of {}:", v.version);
        for line in v.script.as_deref().unwrap_or_default().lines() {
            let _ = writeln!(out, "  {line}");
        }
    }
    out
}

/// Pretty JSON on stdout.
/// The end of a delete of several targets (`4kr delete a b`, `volume delete`, `user delete`): exit
/// 0 when every target went, else one error that counts the failures (each was printed already).
pub fn deletes_done(failed: usize, total: usize, noun: &str) -> Result<i32> {
    if failed == 0 {
        return Ok(0);
    }
    Err(CliError::from(forkr_engine::Error::new(
        forkr_engine::ErrorKind::Conflict,
        "delete_failed",
        format!("{failed} of {total} {noun} could not be deleted"),
    )))
}

pub fn print_json<T: Serialize + ?Sized>(value: &T) -> Result<()> {
    let text = serde_json::to_string_pretty(value)
        .map_err(|e| CliError::from(forkr_engine::Error::internal(format!("cannot encode JSON: {e}"))))?;
    println!("{text}");
    Ok(())
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use forkr_engine::api::{BaseVersion, BoxStatus, DataMount};

    pub fn sample(name: &str, status: BoxStatus) -> BoxInfo {
        BoxInfo {
            name: name.into(),
            project: "default".into(),
            status,
            base: "box-base".into(),
            forked_from: None,
            url: format!("http://{name}.localhost"),
            port: 8080,
            created_at: "2026-01-02T03:04:05Z".into(),
            updated_at: "2026-01-02T03:04:06Z".into(),
            started_at: Some("2026-01-02T03:04:06Z".into()),
            published: vec![],
            tags: vec![],
            data: vec![],
            env: Default::default(),
            cpus: 1.0,
            ram_mb: 2048,
            storage_gb: 10.0,
            termination_grace_seconds: 30,
            pid: Some(4242),
        }
    }

    #[test]
    fn list_table() {
        let mut b = sample("db", BoxStatus::Stopped);
        b.base = "box-base-v20260101120000".into();
        b.started_at = None;
        let boxes = vec![sample("web-1", BoxStatus::Running), b, sample("a", BoxStatus::Exited)];
        insta::assert_snapshot!("list_table", box_table(&boxes));
    }

    #[test]
    fn empty_list_is_just_the_header() {
        assert_eq!(box_table(&[]), "NAME   STATUS   BASE   URL   CREATED\n");
    }

    #[test]
    fn show_details() {
        let mut b = sample("web-1", BoxStatus::Running);
        b.forked_from = Some("web-0".into());
        b.published = vec!["web.example.com".into(), "www.example.com".into()];
        b.tags = vec!["team-a".into()];
        b.data = vec![
            DataMount { name: "pg".into(), path: "/var/lib/postgresql".into(), read_only: false },
            DataMount { name: "assets".into(), path: "/srv/assets".into(), read_only: true },
        ];
        b.cpus = 0.5;
        insta::assert_snapshot!("show_details", box_details(&b));
    }

    #[test]
    fn human_sizes() {
        let cases = [
            (0, "0B"),
            (1023, "1023B"),
            (1024, "1.0K"),
            (1536, "1.5K"),
            (12_897_484, "12.3M"),
            (1024 * 1024 - 20, "1.0M"),
            (5 << 30, "5.0G"),
            (u64::MAX, "16.0E"),
        ];
        for (bytes, text) in cases {
            assert_eq!(human_size(bytes), text, "{bytes}");
        }
    }

    fn snapshot(name: &str, size: Option<u64>, description: &str) -> SnapshotInfo {
        SnapshotInfo {
            name: name.into(),
            r#box: "web-1".into(),
            project: "default".into(),
            size,
            created_at: "2026-01-02T03:04:05Z".into(),
            description: description.into(),
        }
    }

    #[test]
    fn snapshot_list_table() {
        let snaps = vec![
            snapshot("v0", Some(16_384), ""),
            snapshot("before-upgrade", Some(12_897_484), "Clean state before the Postgres 17 upgrade"),
            snapshot("v1", None, "still measuring"),
        ];
        insta::assert_snapshot!("snapshot_table", snapshot_table(&snaps));
    }

    fn version(version: &str, kind: &str, tag: Option<&str>, parent: Option<&str>, size: u64) -> BaseVersion {
        BaseVersion {
            version: version.into(),
            name: "my-base".into(),
            kind: kind.into(),
            tag: tag.map(Into::into),
            builder: if kind == "script" { "script".into() } else { "tar".into() },
            parent: parent.map(Into::into),
            size: Some(size),
            arch: "x86_64".into(),
            created_at: "2026-01-01T12:00:00Z".into(),
            tags: vec![],
            script: (kind == "script").then(|| "apk add curl\necho done\n".into()),
        }
    }

    fn my_base() -> BaseInfo {
        let sha = "3b1f9c2a8d4e5f60718293a4b5c6d7e8f9011223344556677889900aabbccddee";
        let versions = vec![
            version("my-base", "import", None, None, 4_400_000),
            version("my-base-v20260101120000", "script", Some(sha), Some("box-base"), 130_000_000),
        ];
        BaseInfo { name: "my-base".into(), latest: versions[1].version.clone(), version_count: 2, versions }
    }

    #[test]
    fn base_list_table() {
        let mut box_base = my_base();
        box_base.name = "box-base".into();
        box_base.latest = "box-base".into();
        box_base.versions.truncate(1);
        box_base.versions[0].version = "box-base".into();
        box_base.version_count = 1;
        insta::assert_snapshot!("base_table", base_table(&[box_base, my_base()]));
    }

    #[test]
    fn base_show_details() {
        insta::assert_snapshot!("base_details", base_details(&my_base()));
    }

    #[test]
    fn show_details_minimal() {
        let mut b = sample("db", BoxStatus::Stopped);
        b.started_at = None;
        insta::assert_snapshot!("show_details_minimal", box_details(&b));
    }
}
