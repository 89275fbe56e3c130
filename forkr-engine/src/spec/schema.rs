//! The JSON Schemas of the workspace files and of `config.yaml`, generated from the Rust types.
//!
//! Draft-07 is used because it is what editors (the YAML language server) support best. The
//! committed copies live in `schemas/` at the repository root; a test regenerates them and fails when
//! they differ (`FORKR_BLESS=1` rewrites them). `4kr schema` prints them with [`write_schema`].

use std::io::Write;
use std::sync::OnceLock;

use schemars::generate::SchemaSettings;
use schemars::transform::RecursiveTransform;
use serde_json::Value;

use super::types::{SetupConfig, WorkspaceFile};

/// Which schema.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SchemaKind {
    /// `.forkr/*.yaml` (all but `config.yaml`).
    Workspace,
    /// `.forkr/config.yaml`.
    Config,
}

impl SchemaKind {
    /// The file name under `schemas/`.
    pub fn file_name(self) -> &'static str {
        match self {
            SchemaKind::Workspace => "forkr.schema.json",
            SchemaKind::Config => "config.schema.json",
        }
    }

    /// Parses the name `4kr schema` takes: `workspace` (or `forkr`) and `config`.
    pub fn parse(name: &str) -> Option<SchemaKind> {
        match name {
            "workspace" | "forkr" => Some(SchemaKind::Workspace),
            "config" => Some(SchemaKind::Config),
            _ => None,
        }
    }
}

/// Doc comments wrap at 100 columns; editors show descriptions as prose, so the line breaks go.
fn unwrap_description(schema: &mut schemars::Schema) {
    if let Some(Value::String(d)) = schema.get_mut("description") {
        *d = d.split_whitespace().collect::<Vec<_>>().join(" ");
    }
}

fn generate(kind: SchemaKind) -> Value {
    let generator = SchemaSettings::draft07()
        .for_deserialize()
        .with_transform(RecursiveTransform(unwrap_description))
        .into_generator();
    let schema = match kind {
        SchemaKind::Workspace => generator.into_root_schema_for::<WorkspaceFile>(),
        SchemaKind::Config => generator.into_root_schema_for::<SetupConfig>(),
    };
    schema.to_value()
}

/// The schema as a JSON value (generated once per process).
pub fn schema(kind: SchemaKind) -> &'static Value {
    static WORKSPACE: OnceLock<Value> = OnceLock::new();
    static CONFIG: OnceLock<Value> = OnceLock::new();
    match kind {
        SchemaKind::Workspace => WORKSPACE.get_or_init(|| generate(kind)),
        SchemaKind::Config => CONFIG.get_or_init(|| generate(kind)),
    }
}

/// The schema as the committed file holds it: pretty JSON with a final newline.
pub fn schema_text(kind: SchemaKind) -> String {
    // Serializing a `serde_json::Value` cannot fail.
    let mut text = serde_json::to_string_pretty(schema(kind)).unwrap_or_default();
    text.push('\n');
    text
}

/// Writes the schema to `out` (what `4kr schema [workspace|config]` prints).
pub fn write_schema(kind: SchemaKind, out: &mut dyn Write) -> std::io::Result<()> {
    out.write_all(schema_text(kind).as_bytes())
}
