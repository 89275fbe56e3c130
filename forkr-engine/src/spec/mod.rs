//! Declarative workspaces: the `.forkr/*.yaml` files of a repository.
//!
//! A workspace is the folder holding `.forkr/`. Every `*.yaml` (and `*.yml`) file in `.forkr/`
//! except `config.yaml` (the CLI's setup, [`types::SetupConfig`]) is read, and the files are merged;
//! each may hold `project`, `bases`, `volumes` and `boxes` ([`types::WorkspaceFile`]). Relative paths
//! in the files are relative to the workspace root.
//!
//! - [`types`]: the file format (serde + schemars): the single source of truth for the schemas.
//! - [`schema`]: `schemas/forkr.schema.json` and `schemas/config.schema.json`, generated.
//! - [`load_dir`] / [`load_sources`]: parse, check structure against the schema, check names,
//!   values and references across files, and return a [`Workspace`] or every problem at once as
//!   [`SpecErrors`] (miette diagnostics with file, line, column, label and help).
//! - [`model`]: the loaded workspace the planner (`crate::plan`) compares with the server.
//!
//! Ownership: objects created from a workspace carry the tag `forkr.workspace=<id>`; see
//! [`WorkspaceId`] for how the id derives from the project and the workspace root.

pub(crate) mod check;
pub mod diag;
mod load;
pub mod model;
pub mod schema;
pub mod types;
pub(crate) mod yaml;

pub use diag::{Problem, ProblemJson, SpecErrors};
pub use load::{
    CONFIG_FILE, Known, LoadOptions, WORKSPACE_DIR, declared_project, find_workspace_root, load_config,
    load_dir, load_sources, workspace_files,
};
pub use model::{
    Base, BaseBuild, BoxDef, BoxSource, CpuAmount, OWNER_TAG_PREFIX, Publish, Snapshot, Sync, SyncFilter,
    Volume, Workspace, WorkspaceId,
};
pub use schema::{SchemaKind, schema_text, write_schema};
