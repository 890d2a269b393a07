//! Taking a snapshot: stream the source through the encoder and the
//! external sort, then merge each kind, in key order, against the parent
//! snapshot's state. Only added and changed entities are encoded into
//! packs; only changes (and, on keyframes, the full table) go into the
//! manifest. Memory stays bounded whatever the size of the source.

use std::collections::BTreeSet;

use crate::connector::EntitySource;
use crate::error::{Error, Result};
use crate::filter::KindFilter;
use crate::ids::SnapshotId;
use crate::model::{codec, key};
use crate::progress::Progress;
use crate::repo::index::Index;
use crate::repo::manifest::{self, Chain, KindInfo, ManifestWriter, NewSnapshot, Op, StateEntry};
use crate::repo::pack::PackWriter;
use crate::repo::Repository;
use crate::sort::{Record, Sorter};

#[derive(Debug, Clone)]
pub struct SnapshotOptions {
    pub name: Option<String>,
    pub force: bool,
    pub filter: KindFilter,
    /// Bytes of records the sort keeps in memory before spilling.
    pub sort_budget: usize,
    /// The snapshot's time (µs since the epoch); now if `None`.
    pub time_us: Option<i64>,
}

impl Default for SnapshotOptions {
    fn default() -> Self {
        SnapshotOptions { name: None, force: false, filter: KindFilter::default(), sort_budget: 32 << 20, time_us: None }
    }
}

#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct KindReport {
    pub namespace: String,
    pub kind: String,
    pub entities: u64,
    pub added: u64,
    pub changed: u64,
    pub removed: u64,
    pub raw_bytes: u64,
    pub bytes_added: u64,
}

#[derive(Debug, Clone)]
pub struct SnapshotReport {
    pub id: SnapshotId,
    pub name: String,
    pub parent: Option<(SnapshotId, String)>,
    pub keyframe: bool,
    pub kinds: Vec<KindReport>,
    pub entities: u64,
    /// Pack bytes written plus the manifest.
    pub bytes_added: u64,
    pub manifest_bytes: u64,
    pub skipped_kinds: Vec<String>,
}

pub fn now_us() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_micros() as i64)
        .unwrap_or(0)
}

fn default_name(time_us: i64) -> String {
    let s = crate::model::json::format_timestamp(time_us - time_us.rem_euclid(1_000_000));
    s
}

pub fn snapshot(
    repo: &Repository,
    source: &mut dyn EntitySource,
    opts: &SnapshotOptions,
    progress: &dyn Progress,
) -> Result<SnapshotReport> {
    repo.check_writable()?;
    let _lock = repo.lock_shared()?;
    repo.clean_stale_temps();
    let time_us = opts.time_us.unwrap_or_else(now_us);

    let (infos, _) = manifest::list(repo)?;
    let explicit_name = opts.name.is_some();
    let name = match &opts.name {
        Some(n) => {
            super::validate_name(n)?;
            if !opts.force {
                if let Some(i) = infos.iter().find(|i| &i.name == n) {
                    return Err(Error::NameTaken { name: n.clone(), id: i.id.short() });
                }
            }
            n.clone()
        }
        None => {
            let base = default_name(time_us);
            let mut name = base.clone();
            let mut n = 2;
            while infos.iter().any(|i| i.name == name) {
                name = format!("{base}-{n}");
                n += 1;
            }
            name
        }
    };
    let source_id = source.source_id();
    let kinds_key = opts.filter.kinds_key();
    let parent = infos.iter().rev().find(|i| i.source == source_id && i.kinds_filter == kinds_key).cloned();

    // 1. Read, encode, hash, sort.
    progress.phase("reading", None);
    let mut sorter = Sorter::new(&repo.tmp_dir(), opts.sort_budget);
    let mut skipped = BTreeSet::new();
    let mut buf = Vec::with_capacity(4096);
    let mut count = 0u64;
    source.for_each(&mut |mut entity, origin| {
        let ns = entity.key.partition.namespace.clone();
        let kind = entity.key.kind().to_string();
        if !opts.filter.allows(&ns, &kind) {
            skipped.insert(if ns.is_empty() { kind } else { format!("{ns}/{kind}") });
            return Ok(());
        }
        let gid = sorter.groups.intern(&ns, &kind);
        let key = entity.key.path_bytes();
        codec::encode(&mut entity, &mut buf);
        let hash = codec::hash(&buf);
        sorter.push(gid, origin, hash, &key, &buf)?;
        count += 1;
        if count % 4096 == 0 {
            progress.advance(4096);
        }
        Ok(())
    })?;
    progress.advance(count % 4096);
    progress.done();
    let mut sorted = sorter.finish()?;
    let groups = sorted.groups.clone();

    // 2. Merge each kind against the parent.
    let chain = parent.as_ref().map(|p| Chain::open(repo, &p.id)).transpose()?;
    let mut names: BTreeSet<(String, String)> = groups.all().iter().cloned().collect();
    if let Some(chain) = &chain {
        for k in chain.head().kinds()? {
            if k.entities > 0 {
                names.insert((k.namespace, k.kind));
            }
        }
    }
    let keyframe = match &parent {
        None => true,
        Some(p) => p.depth + 1 >= repo.config.keyframe_interval.max(1),
    };
    let depth = if keyframe { 0 } else { parent.as_ref().map(|p| p.depth + 1).unwrap_or(0) };
    let write_changes = parent.is_some();

    let index = Index::open(&repo.index_path(), true)?;
    let mut writer = ManifestWriter::create(repo)?;
    let mut reports = Vec::new();
    let (mut total_entities, mut total_raw, mut total_packs, mut total_pack_bytes) = (0u64, 0u64, 0u64, 0u64);
    for (ns, kind) in &names {
        progress.phase(&format!("writing {}", if ns.is_empty() { kind.clone() } else { format!("{ns}/{kind}") }), None);
        let gid = groups.get(ns, kind);
        let kid = writer.add_kind(ns, kind)?;
        let mut packs = PackWriter::new(repo, &index, ns, kind)?;
        let mut parent_state = match &chain {
            Some(c) => Some(c.state(ns, kind)?),
            None => None,
        };
        let mut par: Option<StateEntry> = match &mut parent_state {
            Some(s) => s.next_entry()?,
            None => None,
        };
        let mut rep = KindReport { namespace: ns.clone(), kind: kind.clone(), ..Default::default() };
        let mut digest = blake3::Hasher::new();
        let mut prev: Option<Record> = None;
        loop {
            let src_here = match (gid, sorted.peek()?) {
                (Some(g), Some(r)) => r.gid == g,
                _ => false,
            };
            let src = if src_here { sorted.next_record()? } else { None };
            if let (Some(s), Some(p)) = (&src, &prev) {
                if s.key == p.key {
                    let shown = key::decode_path(&s.key).map(|p| key::display_path(&p)).unwrap_or_default();
                    return Err(Error::DuplicateKey {
                        key: if ns.is_empty() { shown } else { format!("[{ns}] {shown}") },
                        first: source.describe(p.origin),
                        second: source.describe(s.origin),
                    });
                }
            }
            // Removed keys: parent entries before the next source key.
            while let Some(p) = &par {
                if src.as_ref().map(|s| p.key < s.key).unwrap_or(true) {
                    if write_changes {
                        writer.put_change(kid, &p.key, Op::Removed, None, 0)?;
                    }
                    rep.removed += 1;
                    par = parent_state.as_mut().map(|s| s.next_entry()).transpose()?.flatten();
                } else {
                    break;
                }
            }
            let Some(s) = src else { break };
            let size = s.body.len() as u64;
            let same_key = par.as_ref().map(|p| p.key == s.key).unwrap_or(false);
            if same_key {
                let p = par.take();
                par = parent_state.as_mut().map(|st| st.next_entry()).transpose()?.flatten();
                if p.map(|p| p.hash != s.hash).unwrap_or(true) {
                    packs.add(s.hash, &s.body)?;
                    if write_changes {
                        writer.put_change(kid, &s.key, Op::Changed, Some(&s.hash), size)?;
                    }
                    rep.changed += 1;
                }
            } else {
                packs.add(s.hash, &s.body)?;
                if write_changes {
                    writer.put_change(kid, &s.key, Op::Added, Some(&s.hash), size)?;
                }
                rep.added += 1;
            }
            if keyframe {
                writer.put_entry(kid, &s.key, &s.hash, size)?;
            }
            digest.update(&(s.key.len() as u32).to_le_bytes());
            digest.update(&s.key);
            digest.update(s.hash.as_bytes());
            rep.entities += 1;
            rep.raw_bytes += size;
            if rep.entities % 4096 == 0 {
                progress.advance(4096);
            }
            prev = Some(Record { body: Vec::new(), ..s });
        }
        let (bytes, npacks) = packs.finish()?;
        rep.bytes_added = bytes;
        progress.advance(rep.entities % 4096);
        progress.done();
        writer.set_kind_totals(KindInfo {
            kid,
            namespace: ns.clone(),
            kind: kind.clone(),
            entities: rep.entities,
            raw_bytes: rep.raw_bytes,
            digest: *digest.finalize().as_bytes(),
            added: rep.added,
            changed: rep.changed,
            removed: rep.removed,
            bytes_added: rep.bytes_added,
        })?;
        total_entities += rep.entities;
        total_raw += rep.raw_bytes;
        total_packs += npacks;
        total_pack_bytes += bytes;
        reports.push(rep);
    }
    drop(chain);

    // 3. Publish: the manifest's rename is the commit.
    let meta = NewSnapshot {
        name: name.clone(),
        time_us,
        source: source_id,
        kinds_filter: kinds_key,
        parent: parent.as_ref().map(|p| p.id),
        depth,
        keyframe,
        entities: total_entities,
        raw_bytes: total_raw,
        bytes_added: total_pack_bytes,
        packs_added: total_packs,
    };
    let force = opts.force;
    let (id, manifest_bytes) = writer.publish(repo, &meta, |repo| {
        if explicit_name && !force {
            let (infos, _) = manifest::list(repo)?;
            if let Some(i) = infos.iter().find(|i| i.name == name) {
                return Err(Error::NameTaken { name: name.clone(), id: i.id.short() });
            }
        }
        Ok(())
    })?;
    Ok(SnapshotReport {
        id,
        name,
        parent: parent.map(|p| (p.id, p.name)),
        keyframe,
        kinds: reports,
        entities: total_entities,
        bytes_added: total_pack_bytes + manifest_bytes,
        manifest_bytes,
        skipped_kinds: skipped.into_iter().collect(),
    })
}
