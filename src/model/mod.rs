//! The data model shared by every connector: keys, entities, values, their
//! canonical encoding and the Datastore-shaped JSON form.
//!
//! Nothing here does I/O.

pub mod codec;
pub mod json;
pub mod key;
pub mod value;

pub use key::{ElementId, Key, PartitionId, PathElement};
pub use value::{EmbeddedEntity, Entity, GeoPoint, Properties, Value, ValueKind};
