//! Declarative workspace files (`.forkr/*.yaml`).

pub(crate) mod check;
pub mod diag;
pub mod schema;
pub mod types;
pub(crate) mod yaml;
