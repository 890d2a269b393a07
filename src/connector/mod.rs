//! Connectors: where entities come from and go to. A location string
//! (`jsonl:FILE`, later `datastore://…`, `sqlite:…`, `postgres://…`) picks
//! the implementation.
//!
//! Sources stream entities; they need not be in key order (the snapshot
//! sorts externally when they are not).

pub mod jsonl;

use crate::error::{Error, Result};
use crate::ids::EntityHash;
use crate::model::{codec, Entity};

thread_local! {
    static ENCODE_BUF: std::cell::RefCell<Vec<u8>> = std::cell::RefCell::new(Vec::with_capacity(64 * 1024));
}

/// An entity after the CPU work: canonical bytes, hash and sortable key.
#[derive(Debug, Clone)]
pub struct Encoded {
    pub namespace: String,
    pub kind: String,
    /// The path in its order-preserving byte form.
    pub key: Vec<u8>,
    pub hash: EntityHash,
    pub body: Vec<u8>,
    pub origin: u64,
}

impl Encoded {
    pub fn new(mut entity: Entity, origin: u64) -> Encoded {
        let body = ENCODE_BUF.with(|buf| {
            let mut buf = buf.borrow_mut();
            codec::encode(&mut entity, &mut buf);
            // An exact-size copy: the scratch buffer's slack is not kept.
            buf.to_vec()
        });
        let hash = codec::hash(&body);
        let key = entity.key.path_bytes();
        let kind = entity.key.kind().to_string();
        Encoded {
            namespace: std::mem::take(&mut entity.key.partition.namespace),
            kind,
            key,
            hash,
            body,
            origin,
        }
    }
}

/// Something entities can be read from.
pub trait EntitySource {
    /// A stable identity: snapshots of the same source form one history.
    fn source_id(&self) -> String;
    /// Call `f` for every entity, with an origin number for messages.
    fn for_each(&mut self, f: &mut dyn FnMut(Entity, u64) -> Result<()>) -> Result<()>;
    /// Where entity `origin` came from, for messages (`file.jsonl:17`).
    fn describe(&self, origin: u64) -> String;
    /// Call `f` for every entity, encoded and hashed. Sources that can do
    /// the parsing and encoding on several threads override this; `f` is
    /// always called on the caller's thread, in source order.
    fn for_each_encoded(&mut self, f: &mut dyn FnMut(Encoded) -> Result<()>) -> Result<()> {
        self.for_each(&mut |e, origin| f(Encoded::new(e, origin)))
    }
}

/// A parsed location string.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Location {
    Jsonl(std::path::PathBuf),
}

pub fn parse_location(spec: &str) -> Result<Location> {
    let bad = |why: &str| Error::BadLocation {
        spec: spec.to_string(),
        why: why.to_string(),
    };
    if let Some(rest) = spec.strip_prefix("jsonl:") {
        if rest.is_empty() {
            return Err(bad("give a file, as in `jsonl:entities.jsonl`"));
        }
        return Ok(Location::Jsonl(rest.into()));
    }
    if spec.ends_with(".jsonl") || spec.ends_with(".ndjson") {
        return Ok(Location::Jsonl(spec.into()));
    }
    Err(bad(
        "expected `jsonl:FILE` (Datastore and SQL connectors are on their way)",
    ))
}
