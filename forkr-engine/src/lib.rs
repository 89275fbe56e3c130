//! Forkr's engine: the domain model and everything that does not speak HTTP.
//!
//! The portable half (names, wire types, errors, declarative specs and plans) builds everywhere so
//! that the `4kr` CLI can use it on any OS. The `host` feature adds the Linux-only half: btrfs
//! storage, the local namespace runtime, SQLite metadata and the [`engine::Engine`] facade that
//! `forkr-server` drives.

pub mod api;
pub mod error;
pub mod name;
pub mod plan;
pub mod spec;

#[cfg(feature = "host")]
pub mod engine;
#[cfg(feature = "host")]
pub mod fault;
/// Entry points for the cargo-fuzz targets in `fuzz/` (feature `fuzzing`, never in a release).
#[cfg(feature = "fuzzing")]
pub mod fuzzing {
    pub use crate::engine::extract_tarball_for_fuzzing as extract_tarball;
}
#[cfg(feature = "host")]
pub mod runtime;
#[cfg(feature = "host")]
pub mod storage;
#[cfg(feature = "host")]
pub mod store;

pub use error::{Error, ErrorKind, Result};
