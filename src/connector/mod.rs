//! Connectors: where entities come from and go to. A location string
//! (`jsonl:FILE`, `datastore://…`, `datastore-export:PATH`, `sqlite:PATH`,
//! `postgres://…`) picks the implementation.
//!
//! Sources stream entities; they need not be in key order (the snapshot
//! sorts externally when they are not).

pub(crate) mod datastore;
pub mod gexport;
pub mod jsonl;
pub(crate) mod linecache;
pub mod sql;
pub(crate) mod staging;

use crate::error::{Error, Result};
use crate::ids::EntityHash;
use crate::model::{codec, Entity, Key};
use crate::repo::remote::RemoteOptions;

/// Entities after the CPU work — canonical bytes, hash, sortable key —
/// packed into one buffer per batch, so a batch built on a worker thread is
/// freed on the receiving thread with two deallocations, not four per
/// entity.
#[derive(Debug, Default)]
pub struct EncodedBatch {
    data: Vec<u8>,
    items: Vec<Item>,
}

#[derive(Debug, Clone, Copy)]
struct Item {
    namespace: (u32, u32),
    kind: (u32, u32),
    key: (u32, u32),
    body: (u32, u32),
    hash: EntityHash,
    origin: u64,
}

/// One entity of a batch.
#[derive(Debug, Clone, Copy)]
pub struct Encoded<'a> {
    pub namespace: &'a str,
    pub kind: &'a str,
    /// The path in its order-preserving byte form.
    pub key: &'a [u8],
    pub hash: EntityHash,
    /// The canonical body; `None` when the source's cache vouches that
    /// the parent snapshot holds this exact entity (so it is stored
    /// already). `json` then holds the source text, to parse if the body
    /// is wanted after all; an empty `json` means the entity was carried
    /// from the parent's state ([`EntitySource::for_each_since`]).
    pub body: Option<&'a [u8]>,
    /// Bytes of the canonical body.
    pub size: u32,
    pub json: &'a [u8],
    pub origin: u64,
}

impl EncodedBatch {
    pub fn with_capacity(bytes: usize) -> EncodedBatch {
        EncodedBatch {
            data: Vec::with_capacity(bytes),
            items: Vec::with_capacity(bytes / 700 + 1),
        }
    }

    fn put(&mut self, bytes: &[u8]) -> (u32, u32) {
        let start = self.data.len() as u32;
        self.data.extend_from_slice(bytes);
        (start, bytes.len() as u32)
    }

    /// Encode, hash and append one entity.
    pub fn push(&mut self, mut entity: Entity, origin: u64) {
        let start = self.data.len();
        codec::encode_into(&mut entity, &mut self.data);
        let hash = codec::hash(&self.data[start..]);
        let body = (start as u32, (self.data.len() - start) as u32);
        let key = self.put(&entity.key.path_bytes());
        let namespace = self.put(entity.key.partition.namespace.as_bytes());
        let kind = self.put(entity.key.kind().as_bytes());
        self.items.push(Item {
            namespace,
            kind,
            key,
            body,
            hash,
            origin,
        });
    }

    /// Transcode one entity from its JSON text, hash and append it. On an
    /// error the batch is unchanged. Returns whether the key is complete
    /// (an incomplete one is appended all the same; the caller decides).
    pub fn push_json(
        &mut self,
        text: &[u8],
        origin: u64,
    ) -> std::result::Result<bool, serde_json::Error> {
        let start = self.data.len();
        let key = match crate::model::json::transcode::entity(text, &mut self.data) {
            Ok(t) => t.key,
            Err(e) => {
                self.data.truncate(start);
                return Err(e);
            }
        };
        let hash = codec::hash(&self.data[start..]);
        let body = (start as u32, (self.data.len() - start) as u32);
        let key_start = self.data.len();
        key.write_path_bytes(&mut self.data);
        let k = (key_start as u32, (self.data.len() - key_start) as u32);
        let namespace = self.put(key.namespace.as_bytes());
        let kind = self.put(key.kind().as_bytes());
        self.items.push(Item {
            namespace,
            kind,
            key: k,
            body,
            hash,
            origin,
        });
        Ok(key.is_complete())
    }

    /// Empty the batch, keeping its buffers for reuse.
    pub fn clear(&mut self) {
        self.data.clear();
        self.items.clear();
    }

    pub fn len(&self) -> usize {
        self.items.len()
    }

    /// Bytes held (bodies, keys and names).
    pub fn data_len(&self) -> usize {
        self.data.len()
    }

    pub fn is_empty(&self) -> bool {
        self.items.is_empty()
    }

    fn slice(&self, (s, l): (u32, u32)) -> &[u8] {
        &self.data[s as usize..(s + l) as usize]
    }

    fn text(&self, r: (u32, u32)) -> &str {
        // Only ever filled from `&str`s.
        std::str::from_utf8(self.slice(r)).unwrap_or("")
    }

    pub fn iter(&self) -> impl Iterator<Item = Encoded<'_>> {
        self.items.iter().map(|it| Encoded {
            namespace: self.text(it.namespace),
            kind: self.text(it.kind),
            key: self.slice(it.key),
            hash: it.hash,
            body: Some(self.slice(it.body)),
            size: it.body.1,
            json: &[],
            origin: it.origin,
        })
    }
}

/// Where a source keeps its cache, and the snapshot the new one builds on.
#[derive(Debug, Clone)]
pub struct CacheSpec {
    pub path: std::path::PathBuf,
    pub parent: Option<crate::ids::SnapshotId>,
    /// An encrypted repository's keys: the cache is sealed with them.
    pub keys: Option<std::sync::Arc<crate::repo::crypto::Keys>>,
}

/// What reading one kind cost, in the units Datastore bills: entity reads
/// (one per entity a query returns, at least one per query; one per key
/// of a lookup), small operations (the keys of keys-only queries: free)
/// and lookups (keys looked up; also counted as entity reads).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
pub struct ReadCounts {
    pub entity_reads: u64,
    pub small_ops: u64,
    pub lookups: u64,
}

/// One entry of the parent snapshot's state: a key (in its
/// order-preserving byte form) and the hash and size of its body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParentEntry {
    pub key: Vec<u8>,
    pub hash: EntityHash,
    pub size: u64,
}

/// The parent snapshot, as a source that reads only what changed since it
/// sees it ([`EntitySource::for_each_since`]). Everything streams: a kind's
/// entries come in key order, a page at a time, however big the parent.
pub trait ParentState {
    /// When the parent's source was read (µs since the epoch), if the
    /// parent recorded it.
    fn read_time_us(&self) -> Option<i64>;
    /// Whether the source may carry entities from the parent (false with
    /// `--full`: the parent is there to choose split points from).
    fn may_carry(&self) -> bool;
    /// How many entities of the kind the parent has.
    fn count(&self, namespace: &str, kind: &str) -> Result<u64>;
    /// The parent's entries of one kind, in key order.
    fn entries<'s>(
        &'s self,
        namespace: &str,
        kind: &str,
    ) -> Result<Box<dyn Iterator<Item = Result<ParentEntry>> + 's>>;
}

/// Reading only what changed (Datastore): the property every write
/// bumps (`updated`, or per kind), and how far before the parent's read
/// time to look, for clock skew and commits in flight.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChangedProperty {
    /// For every kind without its own.
    pub default: Option<String>,
    /// Per kind name (`[kinds.Event] changed_property = "updated_at"`).
    pub per_kind: std::collections::BTreeMap<String, String>,
    pub margin: std::time::Duration,
}

/// The default safety margin: five minutes.
pub const DEFAULT_CHANGED_MARGIN: std::time::Duration = std::time::Duration::from_secs(300);

impl ChangedProperty {
    pub fn for_kind(&self, kind: &str) -> Option<&str> {
        self.per_kind
            .get(kind)
            .or(self.default.as_ref())
            .map(String::as_str)
            .filter(|p| !p.is_empty())
    }

    pub fn is_set(&self) -> bool {
        self.default.is_some() || !self.per_kind.is_empty()
    }
}

/// How a source read one kind.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
#[serde(tag = "mode", rename_all = "snake_case")]
pub enum KindRead {
    /// Only what changed: `changed` entities from the changed query,
    /// `looked_up` by key (new keys the query did not return), the rest
    /// carried from the parent.
    Incremental {
        property: String,
        changed: u64,
        looked_up: u64,
        carried: u64,
    },
    /// Every entity, and why (when changed reads were asked for).
    Full { why: String },
}

/// How the last read went: the moment it saw, and per kind how it read.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ReadInfo {
    /// The moment the source was read at (µs since the epoch): the
    /// server's read time when every read used it, else a time taken
    /// before the first read. The next snapshot's changed reads start
    /// from here (minus the margin).
    pub read_time_us: Option<i64>,
    /// Whether every incremental read saw that one moment (`readTime`).
    pub consistent: bool,
    pub kinds: Vec<(String, String, KindRead)>,
    /// Things the user should know (a fallback taken).
    pub notes: Vec<String>,
}

/// Something entities can be read from.
pub trait EntitySource {
    /// A stable identity: snapshots of the same source form one history.
    fn source_id(&self) -> String;
    /// The token that stops this read; sources that wait on servers
    /// (retries, requests in flight) watch it, the others ignore it.
    fn set_cancel(&mut self, _cancel: &crate::interrupt::Cancel) {}
    /// Which kinds the snapshot wants; a source that lists its kinds
    /// skips the others without reading them.
    fn set_filter(&mut self, _filter: &crate::filter::KindFilter) {}
    /// Per-kind tuning from `kindsnap.toml` (`[kinds.Order] concurrency
    /// = 2`), keyed by kind name; sources that read kinds in parallel
    /// pieces use it, others ignore it.
    fn set_kind_options(&mut self, _options: &std::collections::BTreeMap<String, KindOptions>) {}
    /// How many entities a full read yields, when the source can tell
    /// cheaply (a JSON Lines file counts its lines), for a progress bar's
    /// total and ETA; `None` when it cannot.
    fn expected_entities(&self) -> Option<u64> {
        None
    }
    /// What the last `for_each_encoded` cost per (namespace, kind), for
    /// sources that bill reads (Datastore); empty for the others.
    fn read_counts(&self) -> Vec<(String, String, ReadCounts)> {
        Vec::new()
    }
    /// Skip damaged records (reporting them through `skipped`) instead of
    /// failing; sources that cannot be damaged ignore it.
    fn set_tolerate(&mut self, _tolerate: bool) {}
    /// The damaged records the last read skipped, one line each.
    fn skipped(&self) -> Vec<String> {
        Vec::new()
    }
    /// What the last read could not record (a PostgreSQL rule, a table
    /// without a key), one line each, for the snapshot's report.
    fn warnings(&self) -> Vec<String> {
        Vec::new()
    }
    /// Call `f` for every entity, with an origin number for messages.
    fn for_each(&mut self, f: &mut dyn FnMut(Entity, u64) -> Result<()>) -> Result<()>;
    /// Where entity `origin` came from, for messages (`file.jsonl:17`).
    fn describe(&self, origin: u64) -> String;
    /// Offer the source a cache of what it read for the parent snapshot,
    /// to skip what has not changed since; sources without one ignore it.
    fn use_cache(&mut self, _spec: CacheSpec) {}
    /// The snapshot read by the last `for_each_encoded` is published as
    /// `id`: keep what the cache learned, for the next snapshot.
    fn commit_cache(&mut self, _id: &crate::ids::SnapshotId) -> Result<()> {
        Ok(())
    }
    /// Read only what changed since `parent` where the source can (see
    /// [`ChangedProperty`] and [`ParentState::may_carry`]); entities
    /// carried from the parent come with `body: None` and an empty
    /// `json`. The parent's keys may also choose where to split a kind.
    /// The default reads everything.
    fn for_each_since(
        &mut self,
        _parent: &dyn ParentState,
        f: &mut dyn FnMut(Encoded<'_>) -> Result<()>,
    ) -> Result<()> {
        self.for_each_encoded(f)
    }
    /// Ask for changed reads (Datastore); others ignore it.
    fn set_changed_property(&mut self, _changed: &ChangedProperty) {}
    /// How the last read went, for sources that know (Datastore).
    fn read_info(&self) -> Option<ReadInfo> {
        None
    }
    /// Call `f` for every entity, encoded and hashed. Sources that can do
    /// the parsing and encoding on several threads override this; `f` is
    /// always called on the caller's thread, in source order.
    fn for_each_encoded(&mut self, f: &mut dyn FnMut(Encoded<'_>) -> Result<()>) -> Result<()> {
        self.for_each(&mut |e, origin| {
            let mut batch = EncodedBatch::with_capacity(4096);
            batch.push(e, origin);
            for e in batch.iter() {
                f(e)?;
            }
            Ok(())
        })
    }
}

/// One entity the target refused, with the reason in the target's words.
#[derive(Debug, Clone)]
pub struct Rejection {
    pub key: Key,
    pub reason: String,
}

/// Per-kind tuning, from `kindsnap.toml` (`[kinds.Image] batch_size = 1`).
/// `None` leaves the connector's automatic choice.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct KindOptions {
    pub batch_size: Option<usize>,
    pub concurrency: Option<usize>,
}

/// Something a snapshot can be restored into. The restore engine
/// (`ops::restore`) drives it kind by kind, entities in key order:
///
/// 1. `begin_kind`, then `put` for every entity. A target may buffer and
///    write in the background; writes are upserts (writing an entity twice
///    is harmless), which is what makes a resumed restore correct.
/// 2. `sync` now and then: when it returns, every entity `put` so far is
///    durably on the target or was handed back by `take_rejections`. The
///    engine records its resume checkpoint only after a `sync`.
/// 3. `end_kind`, then `reserve_ids` with the numeric ids written, so the
///    target's automatic ids never collide with them.
///
/// Keys arrive already rewritten for the target (project, namespace, uuid
/// names); the target does not rewrite.
pub trait EntityTarget {
    /// A stable identity of the place written to (`jsonl:/abs/path`,
    /// `datastore://host:port/project`); keys the resume journal and the
    /// uuid key map.
    fn target_id(&self) -> String;
    /// The token that stops this restore; targets that wait on servers
    /// watch it, the others ignore it.
    fn set_cancel(&mut self, _cancel: &crate::interrupt::Cancel) {}
    /// Called once before anything else. `resuming` says the engine is
    /// continuing an interrupted restore into this target (a target may keep
    /// staged state for that); otherwise any leftover state is discarded.
    fn start(&mut self, _resuming: bool) -> Result<()> {
        Ok(())
    }
    /// The project keys must carry on this target, if it has one.
    fn project(&self) -> Option<String> {
        None
    }
    /// The database keys must carry on this target, if it has one.
    fn database(&self) -> Option<String> {
        None
    }
    /// Every (namespace, kind) on the target, for `kindsnap clear` without
    /// `--kinds`.
    fn list_kinds(&mut self) -> Result<Vec<(String, String)>> {
        Err(Error::BadArgument(
            "this target cannot list its kinds; name them with --kinds".into(),
        ))
    }
    /// Whether `kind` can take a key name where the snapshot has a numeric
    /// id (`--keys uuid`); `Err` says why not.
    fn check_uuid_names(&mut self, _namespace: &str, _kind: &str) -> Result<()> {
        Ok(())
    }
    /// How to treat a recorded schema (SQL targets): the snapshot it
    /// comes from and whether its code is trusted. Called before `start`.
    fn set_schema_policy(&mut self, _policy: sql::ddl::SchemaPolicy) {}
    /// Recorded objects the target left out since the last call, with the
    /// reason (for the report).
    fn take_warnings(&mut self) -> Vec<String> {
        Vec::new()
    }
    /// The order to restore kinds in (SQL targets put referenced tables
    /// first); the default keeps the snapshot's order.
    fn order_kinds(&mut self, kinds: Vec<(String, String)>) -> Result<Vec<(String, String)>> {
        Ok(kinds)
    }
    fn begin_kind(&mut self, namespace: &str, kind: &str, options: KindOptions) -> Result<()>;
    fn put(&mut self, entity: Entity) -> Result<()>;
    fn sync(&mut self) -> Result<()>;
    /// Entities refused since the last call.
    fn take_rejections(&mut self) -> Vec<Rejection>;
    fn end_kind(&mut self) -> Result<()>;
    /// Make sure the target never hands out the numeric ids in these keys
    /// automatically (keys of `kind`, complete, already rewritten).
    fn reserve_ids(&mut self, namespace: &str, kind: &str, keys: &[Key]) -> Result<()>;
    /// How this target reserves ids, for the plan and the report.
    fn reserve_method(&self) -> &'static str;
    /// Whether the target holds any entity of `kind` (a restore that was
    /// given no write mode refuses to merge into a live target). The
    /// default stops `scan_keys` at the first key.
    fn has_entities(&mut self, namespace: &str, kind: &str) -> Result<bool> {
        any_key(|f| self.scan_keys(namespace, kind, f))
    }
    /// Every key of `kind` on the target, in any order (for `--exact`).
    fn scan_keys(
        &mut self,
        namespace: &str,
        kind: &str,
        f: &mut dyn FnMut(Key) -> Result<()>,
    ) -> Result<()>;
    /// Delete these entities (missing ones are not an error).
    fn delete(&mut self, keys: Vec<Key>) -> Result<()>;
    /// Delete every entity of `kind`; returns how many.
    fn clear_kind(&mut self, namespace: &str, kind: &str) -> Result<u64>;
    /// Throw away whatever `start` prepared (after a dry run).
    fn discard(&mut self) -> Result<()> {
        Ok(())
    }
    /// Make everything durable and visible (a file target renames into
    /// place here).
    fn finish(&mut self) -> Result<()>;
}

/// Whether `scan` finds a key: it is stopped at the first (a scan over
/// millions of keys answers after one).
pub(crate) fn any_key(
    scan: impl FnOnce(&mut dyn FnMut(Key) -> Result<()>) -> Result<()>,
) -> Result<bool> {
    let mut found = false;
    let scanned = scan(&mut |_| {
        found = true;
        Err(Error::Interrupted)
    });
    match scanned {
        _ if found => Ok(true),
        Ok(()) => Ok(false),
        Err(e) => Err(e),
    }
}

/// A parsed location string.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Location {
    Jsonl(std::path::PathBuf),
    Datastore(String),
    /// A managed export: its folder or `.overall_export_metadata` file,
    /// local or `gs://` / `s3://`.
    DatastoreExport(String),
    Sqlite(std::path::PathBuf),
    Postgres(String),
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
    if let Some(rest) = spec.strip_prefix("datastore-export:") {
        if rest.is_empty() {
            return Err(bad(
                "give the export's folder or its .overall_export_metadata file, as in `datastore-export:gs://BUCKET/2026-11-20T03:00:00_12345`",
            ));
        }
        return Ok(Location::DatastoreExport(rest.to_string()));
    }
    if spec.starts_with("datastore:") {
        datastore::Endpoint::parse(spec)?;
        return Ok(Location::Datastore(spec.to_string()));
    }
    if let Some(rest) = spec.strip_prefix("sqlite:") {
        let rest = rest.strip_prefix("//").unwrap_or(rest);
        if rest.is_empty() {
            return Err(bad("give a database file, as in `sqlite:app.db`"));
        }
        return Ok(Location::Sqlite(rest.into()));
    }
    if spec.starts_with("postgres://") || spec.starts_with("postgresql://") {
        return Ok(Location::Postgres(spec.to_string()));
    }
    // `file:shop.db`, `mysql:…`: a scheme kindsnap does not know. Refuse it
    // rather than read the whole string as a file name (which would then be
    // reported as `sqlite:file:shop.db`).
    // A file that really is called `x:y.db` is still read as a path.
    if let Some((scheme, rest)) = spec.split_once(':') {
        let schemeish = scheme.len() >= 2
            && scheme.starts_with(|c: char| c.is_ascii_alphabetic())
            && scheme.chars().all(|c| c.is_ascii_alphanumeric());
        if schemeish && !std::path::Path::new(spec).exists() {
            let rest = rest.strip_prefix("//").unwrap_or(rest);
            let file = if rest.is_empty() { "FILE" } else { rest };
            let instead = if rest.ends_with(".jsonl") || rest.ends_with(".ndjson") {
                format!("`jsonl:{file}`")
            } else if [".sqlite3", ".sqlite", ".db"]
                .iter()
                .any(|e| rest.ends_with(e))
            {
                format!("`sqlite:{file}`")
            } else {
                format!("`sqlite:{file}` for a SQLite file or `jsonl:{file}` for JSON Lines")
            };
            return Err(bad(&format!(
                "kindsnap does not know the scheme `{scheme}:`; write {instead} (`kindsnap snapshot --help` lists the sources)"
            )));
        }
    }
    if spec.ends_with(".jsonl") || spec.ends_with(".ndjson") {
        return Ok(Location::Jsonl(spec.into()));
    }
    if [".sqlite3", ".sqlite", ".db"]
        .iter()
        .any(|e| spec.ends_with(e))
        && !spec.contains("://")
    {
        return Ok(Location::Sqlite(spec.into()));
    }
    Err(bad(
        "expected `jsonl:FILE`, `sqlite:FILE`, `postgres://USER@HOST:PORT/DB`, `datastore://HOST:PORT/PROJECT`, `datastore:PROJECT` or `datastore-export:PATH`",
    ))
}

/// A location string fit to print: the password of a URL
/// (`scheme://user:PASSWORD@host…`) and any `password=` / `sslpassword=`
/// query parameter replaced by `***`. Everything else is kept, so the user
/// still recognises the location.
pub fn redact_location(spec: &str) -> String {
    let mut out = spec.to_string();
    if let Some(scheme_end) = out.find("://") {
        let auth_start = scheme_end + 3;
        let auth_end = out[auth_start..]
            .find(['/', '?', '#'])
            .map(|i| auth_start + i)
            .unwrap_or(out.len());
        if let Some(at) = out[auth_start..auth_end].rfind('@') {
            let userinfo = &out[auth_start..auth_start + at];
            if let Some(colon) = userinfo.find(':') {
                let (from, to) = (auth_start + colon + 1, auth_start + at);
                out.replace_range(from..to, "***");
            }
        }
    }
    if let Some(q) = out.find('?') {
        let (head, query) = out.split_at(q + 1);
        let query = query
            .split('&')
            .map(|pair| match pair.split_once('=') {
                Some((k, _))
                    if k.eq_ignore_ascii_case("password")
                        || k.eq_ignore_ascii_case("sslpassword") =>
                {
                    format!("{k}=***")
                }
                _ => pair.to_string(),
            })
            .collect::<Vec<_>>()
            .join("&");
        out = format!("{head}{query}");
    }
    out
}

/// Open a source from its location string; network sources reach their
/// servers as `options` say (timeouts; object storage's endpoint).
pub fn open_source(spec: &str, options: &RemoteOptions) -> Result<Box<dyn EntitySource>> {
    let timeouts = &options.timeouts;
    match parse_location(spec)? {
        Location::Jsonl(path) => Ok(Box::new(jsonl::JsonlSource::open(&path)?)),
        Location::Datastore(spec) => {
            Ok(Box::new(datastore::DatastoreSource::open(&spec, timeouts)?))
        }
        Location::DatastoreExport(path) => {
            Ok(Box::new(gexport::ExportSource::open(&path, options)?))
        }
        Location::Sqlite(path) => Ok(Box::new(sql::sqlite::SqliteSource::open(&path)?)),
        Location::Postgres(url) => Ok(Box::new(sql::postgres::PostgresSource::open(
            &url, timeouts,
        )?)),
    }
}

/// Open a target from its location string.
pub fn open_target(spec: &str, options: &RemoteOptions) -> Result<Box<dyn EntityTarget>> {
    let timeouts = &options.timeouts;
    match parse_location(spec)? {
        Location::Jsonl(path) => Ok(Box::new(jsonl::JsonlTarget::open(&path)?)),
        Location::Datastore(spec) => {
            Ok(Box::new(datastore::DatastoreTarget::open(&spec, timeouts)?))
        }
        Location::DatastoreExport(path) => {
            if crate::repo::remote::is_remote_url(&path) {
                return Err(Error::BadLocation {
                    spec: format!("datastore-export:{path}"),
                    why: "exports are written to a local folder; copy it to the bucket afterwards (`gcloud storage cp -r DIR gs://BUCKET/`)".into(),
                });
            }
            Ok(Box::new(gexport::ExportTarget::open(
                std::path::Path::new(&path),
            )?))
        }
        Location::Sqlite(path) => Ok(Box::new(sql::sqlite::SqliteTarget::open(&path)?)),
        Location::Postgres(url) => Ok(Box::new(sql::postgres::PostgresTarget::open(
            &url, timeouts,
        )?)),
    }
}

#[cfg(test)]
mod tests {
    use super::redact_location;

    #[test]
    fn redact_location_hides_passwords_only() {
        for (given, shown) in [
            (
                "postgres://me:s3cr%3At@db:5432/app",
                "postgres://me:***@db:5432/app",
            ),
            (
                "postgresql://me@db/app?sslmode=require&password=x&a=b",
                "postgresql://me@db/app?sslmode=require&password=***&a=b",
            ),
            (
                "postgres://u:p@h/d?sslpassword=k",
                "postgres://u:***@h/d?sslpassword=***",
            ),
            ("sqlite:shop.db", "sqlite:shop.db"),
            (
                "datastore://localhost:8081/dev",
                "datastore://localhost:8081/dev",
            ),
            ("s3://bucket/a:b@c", "s3://bucket/a:b@c"),
        ] {
            assert_eq!(redact_location(given), shown, "{given}");
        }
    }
}
