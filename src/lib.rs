//! kindsnap: Git-style, content-addressed snapshots of application
//! datastores — incremental snapshots, diffs by kind, restores.
//!
//! The library is layered, and no import runs back up:
//! - [`model`]: keys, entities, values, the canonical encoding and JSON form;
//! - [`repo`]: the repository and its layout — packs, index, manifests,
//!   locks, restore journals, key maps, durable writes through
//!   [`repo::storage::Storage`], object storage behind the same methods;
//! - [`connector`]: where entities come from and go to (JSON Lines,
//!   Datastore, SQLite, PostgreSQL), as [`connector::EntitySource`] and
//!   [`connector::EntityTarget`];
//! - [`ops`]: the operations — snapshot, diff, export, restore, check,
//!   repair, forget, prune, stats, and the reads cat, show and log — each a
//!   function over a [`repo::Repository`] that takes its lock and returns a
//!   report.
//!
//! It never prints, never exits, never reads CLI types and reads no
//! `KINDSNAP_*` variable (settings arrive as options); errors follow the
//! policy in [`error`]; long operations stop when their
//! [`interrupt::Cancel`] token is cancelled. The `kindsnap` binary is the
//! glue.

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
