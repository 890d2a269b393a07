//! Connectors: where entities come from and go to. A location string
//! (`jsonl:FILE`, later `datastore://…`, `sqlite:…`, `postgres://…`) picks
//! the implementation.
//!
//! Sources stream entities; they need not be in key order (the snapshot
//! sorts externally when they are not).

pub mod jsonl;

use crate::error::{Error, Result};
use crate::model::Entity;

/// Something entities can be read from.
pub trait EntitySource {
    /// A stable identity: snapshots of the same source form one history.
    fn source_id(&self) -> String;
    /// Call `f` for every entity, with an origin number for messages.
    fn for_each(&mut self, f: &mut dyn FnMut(Entity, u64) -> Result<()>) -> Result<()>;
    /// Where entity `origin` came from, for messages (`file.jsonl:17`).
    fn describe(&self, origin: u64) -> String;
}

/// A parsed location string.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Location {
    Jsonl(std::path::PathBuf),
}

pub fn parse_location(spec: &str) -> Result<Location> {
    let bad = |why: &str| Error::BadLocation { spec: spec.to_string(), why: why.to_string() };
    if let Some(rest) = spec.strip_prefix("jsonl:") {
        if rest.is_empty() {
            return Err(bad("give a file, as in `jsonl:entities.jsonl`"));
        }
        return Ok(Location::Jsonl(rest.into()));
    }
    if spec.ends_with(".jsonl") || spec.ends_with(".ndjson") {
        return Ok(Location::Jsonl(spec.into()));
    }
    Err(bad("expected `jsonl:FILE` (Datastore and SQL connectors are on their way)"))
}
