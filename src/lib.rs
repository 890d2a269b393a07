//! kindsnap: Git-style, content-addressed snapshots of application
//! datastores — incremental snapshots, diffs by kind, restores.
//!
//! The library is layered: [`model`] (keys, entities, canonical encoding),
//! [`repo`] (packs, index, manifests, locks), [`ops`] (snapshot, diff,
//! export, check) and [`connector`] (where entities come from and go to).
//! It never prints, never exits and never reads CLI types; the `kindsnap`
//! binary is the glue.

pub mod config;
pub mod connector;
pub mod error;
pub mod filter;
pub mod ids;
pub mod interrupt;
pub mod model;
pub mod net;
pub mod ops;
pub mod progress;
pub mod repo;
pub mod sort;
pub(crate) mod suggest;

pub use error::{Error, Result};
