//! The committed JSON Schemas in `schemas/` must match what the Rust types generate.
//!
//! When a type changes, regenerate them with
//! `FORKR_BLESS=1 cargo test -p forkr-engine --test schemas` and commit the result.

use std::path::PathBuf;

use forkr_engine::spec::schema::{SchemaKind, schema, schema_text};
use serde_json::Value;

fn schemas_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..").join("schemas")
}

const KINDS: [SchemaKind; 2] = [SchemaKind::Workspace, SchemaKind::Config];

#[test]
fn committed_schemas_are_current() {
    let bless = std::env::var("FORKR_BLESS").is_ok_and(|v| v == "1");
    let mut stale = Vec::new();
    for kind in KINDS {
        let path = schemas_dir().join(kind.file_name());
        let fresh = schema_text(kind);
        if bless {
            std::fs::write(&path, &fresh).unwrap_or_else(|e| panic!("writing {}: {e}", path.display()));
            continue;
        }
        let committed = std::fs::read_to_string(&path).unwrap_or_default();
        if committed != fresh {
            stale.push(kind.file_name());
        }
    }
    assert!(
        stale.is_empty(),
        "schemas/{} out of date with the Rust types; regenerate with `FORKR_BLESS=1 cargo test -p forkr-engine --test schemas`",
        stale.join(", schemas/")
    );
}

/// Collects `(path, property schema)` for every property of every object schema.
fn properties<'a>(v: &'a Value, path: String, out: &mut Vec<(String, &'a Value)>) {
    match v {
        Value::Object(map) => {
            if let Some(Value::Object(props)) = map.get("properties") {
                for (name, prop) in props {
                    out.push((format!("{path}.{name}"), prop));
                }
            }
            for (k, child) in map {
                properties(child, format!("{path}/{k}"), out);
            }
        }
        Value::Array(items) => {
            for (i, child) in items.iter().enumerate() {
                properties(child, format!("{path}[{i}]"), out);
            }
        }
        _ => {}
    }
}

#[test]
fn every_field_has_a_description_and_an_example() {
    for kind in KINDS {
        let mut props = Vec::new();
        properties(schema(kind), String::new(), &mut props);
        assert!(props.len() > 10, "{kind:?}: too few properties found: {}", props.len());
        let missing: Vec<String> = props
            .iter()
            .filter(|(_, p)| {
                let desc = p.get("description").and_then(Value::as_str).is_some_and(|d| d.len() > 10);
                let example = p.get("examples").and_then(Value::as_array).is_some_and(|e| !e.is_empty());
                !(desc && example)
            })
            .map(|(path, _)| path.clone())
            .collect();
        assert!(missing.is_empty(), "{kind:?}: fields without a description or an example: {missing:?}");
    }
}

#[test]
fn schemas_are_valid_draft7_and_forbid_unknown_keys() {
    for kind in KINDS {
        let s = schema(kind);
        assert_eq!(s["$schema"], "http://json-schema.org/draft-07/schema#");
        assert!(jsonschema::validator_for(s).is_ok(), "{kind:?} does not compile");
        assert_eq!(s["additionalProperties"], Value::Bool(false));
        assert!(!jsonschema::is_valid(s, &serde_json::json!({ "nonsense": 1 })));
    }
}

#[test]
fn printing_matches_the_committed_text() {
    let mut out = Vec::new();
    forkr_engine::spec::write_schema(SchemaKind::Config, &mut out).unwrap();
    assert_eq!(String::from_utf8(out).unwrap(), schema_text(SchemaKind::Config));
    assert_eq!(SchemaKind::parse("workspace"), Some(SchemaKind::Workspace));
    assert_eq!(SchemaKind::parse("config"), Some(SchemaKind::Config));
    assert_eq!(SchemaKind::parse("other"), None);
}
