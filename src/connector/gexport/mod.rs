//! Google's managed exports (`gcloud datastore export`, scheduled
//! backups), read and written natively: `datastore-export:PATH`.
//!
//! - [`log`]: the LevelDB log format of every export file (checksummed
//!   records in 32 KiB blocks);
//! - [`proto`]: protocol buffer wire decoding and encoding, by hand;
//! - [`map`]: App Engine's `EntityProto` ⇄ the model, by the Cloud Datastore
//!   v1 API's rules;
//! - [`layout`], [`files`]: finding an export's files, on disk or on
//!   object storage;
//! - [`source`], [`writer`], [`target`]: the snapshot source, the folder
//!   writer (`kindsnap export`) and the restore target.
//!
//! docs/format-gcloud-export.md describes the format and every mapping.
//! Nothing here prints; damage is an error naming the file and byte offset.

mod files;
mod layout;
pub mod log;
pub mod map;
pub mod proto;
mod source;
mod target;
mod writer;

pub use source::ExportSource;
pub use target::ExportTarget;
pub use writer::ExportWriter;
