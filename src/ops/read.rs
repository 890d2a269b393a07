//! Reads of one snapshot for people: one entity (`cat`) and a snapshot's
//! summary (`show`). Each holds the shared repository lock while it reads,
//! so a `prune` or `forget` cannot delete what it is reading; each returns
//! a value the CLI prints.

use serde::Serialize;

use crate::error::{Error, Result};
use crate::model::{key, Entity};
use crate::repo::manifest::{Chain, Manifest, SnapshotInfo};
use crate::repo::store::Store;
use crate::repo::Repository;

/// One entity of a snapshot, by namespace and key path text
/// (`User:alice/Post:7`).
pub fn cat(
    repo: &Repository,
    spec: &str,
    namespace: &str,
    key_text: &str,
) -> Result<(SnapshotInfo, Entity)> {
    let path = key::parse_path(key_text).map_err(|why| Error::BadKey {
        text: key_text.to_string(),
        why,
    })?;
    let _lock = repo.lock_shared()?;
    let info = super::find_snapshot(repo, spec)?;
    let chain = Chain::open(repo, &info.id)?;
    let kind = path.last().map(|e| e.kind.clone()).unwrap_or_default();
    let Some(entry) = chain.lookup(namespace, &kind, &key::encode_path(&path))? else {
        // A missing kind is more likely a typo (`Product` for `product`)
        // than a missing key: say which kinds are close.
        let kinds = chain.head().kinds()?;
        let here: Vec<&str> = kinds
            .iter()
            .filter(|k| k.namespace == namespace && k.entities > 0)
            .map(|k| k.kind.as_str())
            .collect();
        if !here.contains(&kind.as_str()) {
            return Err(super::unknown_kind(
                &kind,
                format!("snapshot `{}`", info.name),
                &info.name,
                here,
            ));
        }
        let typed = key::display_path(&path);
        let close = close_keys(&chain, namespace, &kind, &typed)?;
        let close: Vec<&str> = close.iter().map(String::as_str).collect();
        return Err(Error::NotFound {
            hint: crate::suggest::did_you_mean(&close)
                .map(|h| format!(" ({h})"))
                .unwrap_or_default(),
            what: format!("key {typed}"),
            snapshot: info.name.clone(),
        });
    };
    let entity = Store::open(repo)?.get(&entry.hash)?;
    Ok((info, entity))
}

/// Keys of `kind` close to `typed` (same letters in another case, or a
/// small edit away), for a "did you mean". Reads at most the first
/// [`KEY_SCAN`] keys of the kind: this runs only on the error path, and a
/// bounded look keeps it quick on a kind of millions.
fn close_keys(chain: &Chain, namespace: &str, kind: &str, typed: &str) -> Result<Vec<String>> {
    let mut keys = Vec::new();
    let mut st = chain.state(namespace, kind)?;
    while let Some(e) = st.next_entry()? {
        if let Some(p) = key::decode_path(&e.key) {
            keys.push(key::display_path(&p));
        }
        if keys.len() >= KEY_SCAN {
            break;
        }
    }
    Ok(
        crate::suggest::closest(typed, keys.iter().map(String::as_str))
            .into_iter()
            .map(str::to_string)
            .collect(),
    )
}

/// How many keys [`close_keys`] looks at.
const KEY_SCAN: usize = 100_000;

/// Every entity of one kind of a snapshot, in key order, each handed to
/// `f`, which returns `false` to stop (a row limit). Streams: one entity
/// in memory at a time. Returns the snapshot read.
pub fn cat_kind(
    repo: &Repository,
    spec: &str,
    namespace: &str,
    kind: &str,
    f: &mut dyn FnMut(Entity) -> Result<bool>,
) -> Result<SnapshotInfo> {
    let _lock = repo.lock_shared()?;
    let info = super::find_snapshot(repo, spec)?;
    let chain = Chain::open(repo, &info.id)?;
    let kinds = chain.head().kinds()?;
    let here: Vec<&str> = kinds
        .iter()
        .filter(|k| k.namespace == namespace && k.entities > 0)
        .map(|k| k.kind.as_str())
        .collect();
    if !here.contains(&kind) {
        return Err(super::unknown_kind(
            kind,
            format!("snapshot `{}`", info.name),
            &info.name,
            here,
        ));
    }
    let store = Store::open(repo)?;
    let mut st = chain.state(namespace, kind)?;
    while let Some(e) = st.next_entry()? {
        if !f(store.get(&e.hash)?)? {
            break;
        }
    }
    Ok(info)
}

/// What `kindsnap show` reports (and prints with `--json`).
#[derive(Debug, Clone, Serialize)]
pub struct ShowReport {
    pub id: String,
    pub name: String,
    /// RFC 3339, UTC.
    pub time: String,
    pub source: String,
    pub parent: Option<String>,
    pub keyframe: bool,
    pub entities: u64,
    /// Sorted (`kindsnap tag`).
    pub tags: Vec<String>,
    pub kinds: Vec<ShowKind>,
    #[serde(skip)]
    pub time_us: i64,
}

#[derive(Debug, Clone, Serialize)]
pub struct ShowKind {
    pub namespace: String,
    pub kind: String,
    pub entities: u64,
    pub raw_bytes: u64,
    /// Estimated from the kind's compression ratio in the repository.
    pub stored_bytes: u64,
}

/// A snapshot's metadata and its kinds with sizes (header reads only).
pub fn show(repo: &Repository, spec: &str) -> Result<ShowReport> {
    let _lock = repo.lock_shared()?;
    let (infos, _) = crate::repo::manifest::list(repo)?;
    let info = crate::repo::manifest::resolve(&infos, spec)?;
    let logical = crate::repo::manifest::logical_ids(&infos);
    let m = Manifest::open(repo, &info.id)?;
    let index = repo.open_index(false)?;
    let mut kinds = Vec::new();
    for k in m.kinds()? {
        if k.entities == 0 {
            continue;
        }
        let st = index.kind_storage(&k.namespace, &k.kind)?;
        let stored_bytes = if st.raw_bytes > 0 {
            (k.raw_bytes as f64 * st.size as f64 / st.raw_bytes as f64) as u64
        } else {
            0
        };
        kinds.push(ShowKind {
            namespace: k.namespace,
            kind: k.kind,
            entities: k.entities,
            raw_bytes: k.raw_bytes,
            stored_bytes,
        });
    }
    Ok(ShowReport {
        id: info.logical.to_hex(),
        name: info.name,
        time: crate::model::json::format_timestamp(info.time_us),
        source: info.source,
        parent: info
            .parent
            .map(|p| logical.get(&p).copied().unwrap_or(p).to_hex()),
        keyframe: info.keyframe,
        entities: info.entities,
        tags: info.tags,
        kinds,
        time_us: info.time_us,
    })
}

/// One snapshot as `kindsnap log` lists it (and prints with `--json`).
#[derive(Debug, Clone, Serialize)]
pub struct LogEntry {
    pub id: String,
    pub name: String,
    /// RFC 3339, UTC.
    pub time: String,
    pub source: String,
    pub parent: Option<String>,
    pub entities: u64,
    /// Bytes the snapshot added to the repository (packs and manifest).
    pub bytes_added: u64,
    /// Sorted (`kindsnap tag`).
    pub tags: Vec<String>,
    #[serde(skip)]
    pub time_us: i64,
}

/// A manifest `log` could not read, with the reason.
#[derive(Debug, Clone, Serialize)]
pub struct Unreadable {
    pub id: String,
    pub why: String,
}

/// What `kindsnap log` reports: every snapshot, newest first (header reads
/// only), and the manifests it could not read.
#[derive(Debug, Clone, Serialize)]
pub struct LogReport {
    pub snapshots: Vec<LogEntry>,
    pub unreadable: Vec<Unreadable>,
}

/// The repository's snapshots, newest first, under the shared lock.
pub fn log(repo: &Repository) -> Result<LogReport> {
    let _lock = repo.lock_shared()?;
    let (infos, bad) = crate::repo::manifest::list(repo)?;
    let logical = crate::repo::manifest::logical_ids(&infos);
    let snapshots = infos
        .into_iter()
        .rev()
        .map(|i| LogEntry {
            id: i.logical.to_hex(),
            name: i.name,
            time: crate::model::json::format_timestamp(i.time_us),
            source: i.source,
            parent: i
                .parent
                .map(|p| logical.get(&p).copied().unwrap_or(p).to_hex()),
            entities: i.entities,
            bytes_added: i.bytes_added + i.manifest_bytes,
            tags: i.tags,
            time_us: i.time_us,
        })
        .collect();
    let unreadable = bad
        .into_iter()
        .map(|(id, e)| Unreadable {
            id: id.to_hex(),
            why: e.to_string(),
        })
        .collect();
    Ok(LogReport {
        snapshots,
        unreadable,
    })
}
