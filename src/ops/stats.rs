//! Repository statistics: what the repository occupies (packs, index,
//! manifests), how much the snapshots hold in raw bytes against that (the
//! deduplication ratio), and what each snapshot and each kind added. Reads
//! headers and the index only: no manifest database, no pack is opened.
//! Stats never change the repository.

use std::collections::BTreeMap;

use serde::Serialize;

use crate::error::Result;
use crate::repo::manifest::{self, Manifest, SnapshotInfo};
use crate::repo::Repository;

/// `kindsnap stats --json` (whole repository). Documented in docs/retention.md.
#[derive(Debug, Clone, Serialize)]
pub struct RepoStats {
    pub snapshots: u64,
    pub packs: u64,
    /// Bytes of pack files on disk.
    pub pack_bytes: u64,
    /// Bytes of `index/` (the SQLite index and any journal).
    pub index_bytes: u64,
    pub manifests: u64,
    /// Bytes of `snapshots/`.
    pub manifest_bytes: u64,
    /// pack + index + manifest bytes.
    pub total_bytes: u64,
    /// Canonical-encoding bytes of every entity of every snapshot, summed
    /// over snapshots: what full copies would hold before compression.
    pub raw_bytes: u64,
    /// Uncompressed bytes of the bodies stored in packs.
    pub stored_raw_bytes: u64,
    /// `raw_bytes / pack_bytes`.
    pub dedup_ratio: f64,
    /// `raw_bytes / total_bytes`.
    pub overall_ratio: f64,
    /// Oldest first.
    pub growth: Vec<SnapshotGrowth>,
    pub kinds: Vec<KindStats>,
}

/// What one snapshot added to the repository when it was taken (a
/// snapshot `forget` folded another into counts what both added).
#[derive(Debug, Clone, Serialize)]
pub struct SnapshotGrowth {
    pub id: String,
    pub name: String,
    pub time: String,
    pub source: String,
    pub entities: u64,
    pub raw_bytes: u64,
    /// Pack bytes written by this snapshot.
    pub pack_bytes_added: u64,
    pub manifest_bytes: u64,
    /// `pack_bytes_added + manifest_bytes`.
    pub bytes_added: u64,
}

#[derive(Debug, Clone, Serialize)]
pub struct KindStats {
    pub namespace: String,
    pub kind: String,
    /// Packs of this kind in the index and their bytes.
    pub packs: u64,
    pub pack_bytes: u64,
    /// Raw bytes of this kind summed over every snapshot.
    pub raw_bytes: u64,
    /// Pack bytes added for this kind, summed over the snapshots.
    pub bytes_added: u64,
    /// Entities in the newest snapshot that has the kind.
    pub latest_entities: u64,
}

/// `kindsnap stats SNAP --json`.
#[derive(Debug, Clone, Serialize)]
pub struct SnapshotStats {
    pub id: String,
    pub name: String,
    pub time: String,
    pub source: String,
    pub parent: Option<String>,
    pub keyframe: bool,
    /// Delta manifests between this snapshot and its keyframe.
    pub depth: u32,
    pub entities: u64,
    pub raw_bytes: u64,
    /// Estimated compressed bytes of its entities (each kind's pack
    /// compression ratio applied to its raw bytes).
    pub stored_bytes_estimate: u64,
    pub pack_bytes_added: u64,
    pub manifest_bytes: u64,
    pub kinds: Vec<SnapshotKindStats>,
}

#[derive(Debug, Clone, Serialize)]
pub struct SnapshotKindStats {
    pub namespace: String,
    pub kind: String,
    pub entities: u64,
    pub raw_bytes: u64,
    pub stored_bytes_estimate: u64,
    pub added: u64,
    pub changed: u64,
    pub removed: u64,
    pub bytes_added: u64,
}

fn ratio(a: u64, b: u64) -> f64 {
    if b == 0 {
        0.0
    } else {
        ((a as f64 / b as f64) * 100.0).round() / 100.0
    }
}

fn time(us: i64) -> String {
    crate::model::json::format_timestamp(us)
}

pub fn repo_stats(repo: &Repository) -> Result<RepoStats> {
    let _lock = repo.lock_shared()?;
    let (infos, _) = manifest::list(repo)?;
    let (packs, pack_bytes) = crate::repo::fsutil::dir_bytes(&repo.root().join("packs"))?;
    let (_, index_bytes) = crate::repo::fsutil::dir_bytes(&repo.root().join("index"))?;
    let (manifests, manifest_bytes) = crate::repo::fsutil::dir_bytes(&repo.snapshots_dir())?;
    let index = repo.open_index(false)?;
    let mut kinds: BTreeMap<(String, String), KindStats> = BTreeMap::new();
    let mut growth = Vec::new();
    let mut raw_bytes = 0u64;
    for info in &infos {
        raw_bytes += info.raw_bytes;
        growth.push(growth_of(info));
        let m = Manifest::open(repo, &info.id)?;
        for k in m.kinds()? {
            let e = kinds
                .entry((k.namespace.clone(), k.kind.clone()))
                .or_insert_with(|| KindStats {
                    namespace: k.namespace.clone(),
                    kind: k.kind.clone(),
                    packs: 0,
                    pack_bytes: 0,
                    raw_bytes: 0,
                    bytes_added: 0,
                    latest_entities: 0,
                });
            e.raw_bytes += k.raw_bytes;
            e.bytes_added += k.bytes_added;
            // Oldest first: the last one seen is the newest.
            e.latest_entities = k.entities;
        }
    }
    let mut stored_raw_bytes = 0u64;
    for (_, ns, kind, _) in index.packs()? {
        kinds
            .entry((ns.clone(), kind.clone()))
            .or_insert_with(|| KindStats {
                namespace: ns.clone(),
                kind: kind.clone(),
                packs: 0,
                pack_bytes: 0,
                raw_bytes: 0,
                bytes_added: 0,
                latest_entities: 0,
            });
    }
    for ((ns, kind), k) in kinds.iter_mut() {
        let st = index.kind_storage(ns, kind)?;
        k.packs = st.packs;
        k.pack_bytes = st.size;
        stored_raw_bytes += st.raw_bytes;
    }
    let total_bytes = pack_bytes + index_bytes + manifest_bytes;
    Ok(RepoStats {
        snapshots: infos.len() as u64,
        packs,
        pack_bytes,
        index_bytes,
        manifests,
        manifest_bytes,
        total_bytes,
        raw_bytes,
        stored_raw_bytes,
        dedup_ratio: ratio(raw_bytes, pack_bytes),
        overall_ratio: ratio(raw_bytes, total_bytes),
        growth,
        kinds: kinds.into_values().collect(),
    })
}

fn growth_of(info: &SnapshotInfo) -> SnapshotGrowth {
    SnapshotGrowth {
        id: info.logical.to_hex(),
        name: info.name.clone(),
        time: time(info.time_us),
        source: info.source.clone(),
        entities: info.entities,
        raw_bytes: info.raw_bytes,
        pack_bytes_added: info.bytes_added,
        manifest_bytes: info.manifest_bytes,
        bytes_added: info.bytes_added + info.manifest_bytes,
    }
}

pub fn snapshot_stats(repo: &Repository, spec: &str) -> Result<SnapshotStats> {
    let _lock = repo.lock_shared()?;
    let (infos, _) = crate::repo::manifest::list(repo)?;
    let info = crate::repo::manifest::resolve(&infos, spec)?;
    let logical = crate::repo::manifest::logical_ids(&infos);
    let m = Manifest::open(repo, &info.id)?;
    let index = repo.open_index(false)?;
    let mut kinds = Vec::new();
    let mut stored_total = 0u64;
    for k in m.kinds()? {
        let st = index.kind_storage(&k.namespace, &k.kind)?;
        let stored = if st.raw_bytes > 0 {
            (k.raw_bytes as f64 * st.size as f64 / st.raw_bytes as f64) as u64
        } else {
            0
        };
        stored_total += stored;
        kinds.push(SnapshotKindStats {
            namespace: k.namespace,
            kind: k.kind,
            entities: k.entities,
            raw_bytes: k.raw_bytes,
            stored_bytes_estimate: stored,
            added: k.added,
            changed: k.changed,
            removed: k.removed,
            bytes_added: k.bytes_added,
        });
    }
    Ok(SnapshotStats {
        id: info.logical.to_hex(),
        name: info.name.clone(),
        time: time(info.time_us),
        source: info.source.clone(),
        parent: info
            .parent
            .map(|p| logical.get(&p).copied().unwrap_or(p).to_hex()),
        keyframe: info.keyframe,
        depth: info.depth,
        entities: info.entities,
        raw_bytes: info.raw_bytes,
        stored_bytes_estimate: stored_total,
        pack_bytes_added: info.bytes_added,
        manifest_bytes: info.manifest_bytes,
        kinds,
    })
}
