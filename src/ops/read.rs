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
        return Err(Error::NotFound {
            what: format!("key {}", key::display_path(&path)),
            snapshot: info.name.clone(),
        });
    };
    let entity = Store::open(repo)?.get(&entry.hash)?;
    Ok((info, entity))
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
    let info = super::find_snapshot(repo, spec)?;
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
        id: info.id.to_hex(),
        name: info.name,
        time: crate::model::json::format_timestamp(info.time_us),
        source: info.source,
        parent: info.parent.map(|p| p.to_hex()),
        keyframe: info.keyframe,
        entities: info.entities,
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
    let snapshots = infos
        .into_iter()
        .rev()
        .map(|i| LogEntry {
            id: i.id.to_hex(),
            name: i.name,
            time: crate::model::json::format_timestamp(i.time_us),
            source: i.source,
            parent: i.parent.map(|p| p.to_hex()),
            entities: i.entities,
            bytes_added: i.bytes_added + i.manifest_bytes,
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
