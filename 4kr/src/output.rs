//! Human output (aligned tables, `key: value` details) and JSON output.

use std::fmt::Write as _;

use forkr_engine::api::BoxInfo;
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

/// Pretty JSON on stdout.
pub fn print_json<T: Serialize + ?Sized>(value: &T) -> Result<()> {
    let text = serde_json::to_string_pretty(value)
        .map_err(|e| CliError::from(forkr_engine::Error::internal(format!("cannot encode JSON: {e}"))))?;
    println!("{text}");
    Ok(())
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use forkr_engine::api::{BoxStatus, DataMount};

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
    fn show_details_minimal() {
        let mut b = sample("db", BoxStatus::Stopped);
        b.started_at = None;
        insta::assert_snapshot!("show_details_minimal", box_details(&b));
    }
}
