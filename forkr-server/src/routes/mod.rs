//! Route handlers, one module per resource.
pub mod bases;
pub mod boxes;
pub mod exec;
pub mod files;
pub mod publish;
pub mod snapshots;
pub mod users;
pub mod volumes;
pub mod workspace;
