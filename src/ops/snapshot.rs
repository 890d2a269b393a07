//! Taking a snapshot: stream the source through the encoder and the
//! external sort, then merge each kind, in key order, against the parent
//! snapshot's state. Only added and changed entities are encoded into
//! packs; only changes (and, on keyframes, the full table) go into the
//! manifest. Memory stays bounded whatever the size of the source.

use std::collections::{BTreeSet, HashMap};

use crate::connector::{linecache, CacheSpec, EncodedBatch, EntitySource, ReadCounts};
use crate::error::{Error, Result};
use crate::filter::KindFilter;
use crate::ids::EntityHash;
use crate::ids::SnapshotId;
use crate::model::key;
use crate::progress::Progress;
use crate::repo::index::Dedup;
use crate::repo::manifest::{
    self, Chain, KindInfo, Manifest, ManifestWriter, NameVerdict, NewSnapshot, Op, Published,
    StateEntry, StateReader,
};
use crate::repo::pack::background::Packer;
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
    /// Where sources may keep a cache of what they read (the JSON Lines
    /// line cache); `None` reads everything afresh.
    pub cache_dir: Option<std::path::PathBuf>,
    /// US dollars per 100,000 entity reads, for the cost estimate.
    pub read_price_per_100k: f64,
    /// Stops the snapshot at its next entity; nothing is published.
    pub cancel: crate::interrupt::Cancel,
}

/// Cloud Datastore's list price for entity reads (US dollars per 100,000,
/// Firestore in Datastore mode, 2026); small operations are free.
/// `datastore_read_price` in kindsnap.toml overrides it.
pub const DEFAULT_READ_PRICE_PER_100K: f64 = 0.06;

impl Default for SnapshotOptions {
    fn default() -> Self {
        SnapshotOptions {
            name: None,
            force: false,
            filter: KindFilter::default(),
            sort_budget: 24 << 20,
            time_us: None,
            cache_dir: None,
            read_price_per_100k: DEFAULT_READ_PRICE_PER_100K,
            cancel: Default::default(),
        }
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
    /// What reading the kind cost, for sources that bill reads
    /// (Datastore); `None` for the others.
    pub reads: Option<ReadCost>,
}

/// Reads billed by the source and their estimated price.
#[derive(Debug, Clone, Copy, Default, PartialEq, serde::Serialize)]
pub struct ReadCost {
    pub entity_reads: u64,
    pub small_ops: u64,
    pub lookups: u64,
    /// US dollars at the configured price per 100,000 entity reads.
    pub estimated_usd: f64,
}

impl ReadCost {
    fn new(c: ReadCounts, price_per_100k: f64) -> ReadCost {
        ReadCost {
            entity_reads: c.entity_reads,
            small_ops: c.small_ops,
            lookups: c.lookups,
            estimated_usd: c.entity_reads as f64 * price_per_100k / 100_000.0,
        }
    }
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
    /// Every read the source billed (also of kinds that came out empty);
    /// `None` for sources that do not bill reads.
    pub reads: Option<ReadCost>,
    /// A snapshot of this name, source and content existed already (a
    /// rerun): `id` is that snapshot's and nothing was published.
    pub existed: bool,
}

/// Kinds with a parent cursor open at once.
const MAX_CURSORS: usize = 8;

/// A kind's parent cursor: not opened yet, open, or given up.
enum Slot<'a> {
    Unopened,
    Open(ParentCursor<'a>),
    Closed,
}

/// A forward-only cursor over one kind of the parent's state.
struct ParentCursor<'a> {
    reader: StateReader<'a>,
    current: Option<StateEntry>,
    last: Vec<u8>,
    started: bool,
}

impl<'a> ParentCursor<'a> {
    fn new(reader: StateReader<'a>) -> Self {
        ParentCursor {
            reader,
            current: None,
            last: Vec::new(),
            started: false,
        }
    }

    /// The parent's hash for `key`, if the source is still in key order
    /// here (`None` otherwise, and the caller falls back to the index).
    fn seek(&mut self, key: &[u8]) -> Result<Option<EntityHash>> {
        if self.started && key <= self.last.as_slice() {
            return Ok(None);
        }
        if !self.started {
            self.current = self.reader.next_entry()?;
            self.started = true;
        }
        self.last.clear();
        self.last.extend_from_slice(key);
        while let Some(c) = &self.current {
            if c.key.as_slice() < key {
                self.current = self.reader.next_entry()?;
            } else {
                break;
            }
        }
        Ok(self
            .current
            .as_ref()
            .filter(|c| c.key == key)
            .map(|c| c.hash))
    }
}

pub fn now_us() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_micros() as i64)
        .unwrap_or(0)
}

fn default_name(time_us: i64) -> String {
    crate::model::json::format_timestamp(time_us - time_us.rem_euclid(1_000_000))
}

/// `base`, or `base-2`, `base-3`… : the first no snapshot has.
fn free_default_name(infos: &[manifest::SnapshotInfo], base: &str) -> String {
    let mut name = base.to_string();
    let mut n = 2;
    while infos.iter().any(|i| i.name == name) {
        name = format!("{base}-{n}");
        n += 1;
    }
    name
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
    let started = std::time::Instant::now();

    let (infos, _) = manifest::list(repo)?;
    let source_id = source.source_id();
    let kinds_key = opts.filter.kinds_key();
    let explicit_name = opts.name.is_some();
    // A snapshot of the same source and kinds under the name asked for may
    // be a rerun of the same job (cron): the run goes on, and is a no-op if
    // it finds the same content. Any body not stored yet already proves the
    // content new, and ends the run before it is stored.
    let mut rerun_of: Option<String> = None;
    let name = match &opts.name {
        Some(n) => {
            super::validate_name(n)?;
            if !opts.force {
                if let Some(i) = infos.iter().rev().find(|i| &i.name == n) {
                    if i.source != source_id || i.kinds_filter != kinds_key {
                        return Err(Error::NameTaken {
                            name: n.clone(),
                            id: i.id.short(),
                        });
                    }
                    rerun_of = Some(i.id.short());
                }
            }
            n.clone()
        }
        None => free_default_name(&infos, &default_name(time_us)),
    };
    let parent = infos
        .iter()
        .rev()
        .find(|i| i.source == source_id && i.kinds_filter == kinds_key)
        .cloned();

    // 1. Read, encode, hash; store bodies not stored yet; sort the keys.
    progress.phase("reading", None);
    let mut dedup = Dedup::open(&repo.index_path())?;
    let mut packer = Packer::start(repo);
    let mut sorter = Sorter::new(&repo.tmp_dir(), opts.sort_budget);
    let mut skipped = BTreeSet::new();
    let mut allowed: HashMap<(String, String), Option<u32>> = HashMap::new();
    // Open the parent first: while the source arrives in key order, each
    // entity is compared with the parent's as it streams by, and bodies the
    // parent already has need no index lookup.
    let chain = parent
        .as_ref()
        .map(|p| Chain::open(repo, &p.id))
        .transpose()?;
    let mut cursors: Vec<Slot> = Vec::new();
    let mut open_cursors: Vec<usize> = Vec::new();
    let mut count = 0u64;
    source.set_filter(&opts.filter);
    if let Some(root) = &opts.cache_dir {
        source.use_cache(CacheSpec {
            path: linecache::cache_path(root, &repo.config.id, &source_id, &kinds_key),
            parent: parent.as_ref().map(|p| p.id),
        });
    }
    let mut scratch = EncodedBatch::default();
    source.for_each_encoded(&mut |e| {
        let gid = match sorter.groups.get(e.namespace, e.kind) {
            Some(g) => Some(g),
            None => {
                let key = (e.namespace.to_string(), e.kind.to_string());
                *allowed.entry(key).or_insert_with(|| {
                    opts.filter
                        .allows(e.namespace, e.kind)
                        .then(|| sorter.groups.intern(e.namespace, e.kind))
                })
            }
        };
        let Some(gid) = gid else {
            skipped.insert(if e.namespace.is_empty() {
                e.kind.to_string()
            } else {
                format!("{}/{}", e.namespace, e.kind)
            });
            return Ok(());
        };
        let g = gid as usize;
        if cursors.len() <= g {
            cursors.resize_with(g + 1, || Slot::Unopened);
        }
        // The parent has this exact entity: its body is stored already.
        let known = match &chain {
            Some(chain) => {
                if matches!(cursors[g], Slot::Unopened) {
                    // A bounded number of kinds keep a cursor (each holds a
                    // page of rows); the oldest gives its up for good and its
                    // kind falls back to the index.
                    if open_cursors.len() >= MAX_CURSORS {
                        let old = open_cursors.remove(0);
                        cursors[old] = Slot::Closed;
                    }
                    cursors[g] = Slot::Open(ParentCursor::new(chain.state(e.namespace, e.kind)?));
                    open_cursors.push(g);
                }
                match &mut cursors[g] {
                    Slot::Open(c) => c.seek(e.key)? == Some(e.hash),
                    _ => false,
                }
            }
            None => false,
        };
        if count.is_multiple_of(256) {
            // Bodies the packer has committed leave `pending` (which only
            // bounds memory: a stale entry still means "stored").
            packer.drain_acks();
        }
        if !known
            && !packer.pending.contains(&e.hash)
            && !dedup.is_stored(&e.hash, &packer.pending)?
        {
            let body =
                match e.body {
                    Some(b) => b,
                    None => {
                        // The source's cache vouched for a body the
                        // repository does not have: parse the line after all.
                        scratch.clear();
                        scratch
                            .push_json(e.json, e.origin)
                            .map_err(|_| Error::Internal("a cached line no longer parses"))?;
                        match scratch.iter().next() {
                            Some(fresh) if fresh.hash == e.hash && fresh.key == e.key => {
                                fresh.body.unwrap_or_default()
                            }
                            _ => return Err(Error::Internal(
                                "the line cache disagrees with the file; run again with --no-cache",
                            )),
                        }
                    }
                };
            if let Some(id) = &rerun_of {
                return Err(Error::NameTaken {
                    name: name.clone(),
                    id: id.clone(),
                });
            }
            dedup.note_added(&e.hash);
            packer.add(gid, e.namespace, e.kind, e.hash, body)?;
        }
        sorter.push(gid, e.origin, e.hash, e.key, e.size)?;
        count += 1;
        if count.is_multiple_of(4096) {
            progress.advance(4096);
            opts.cancel.check()?;
        }
        Ok(())
    })?;
    drop(cursors);
    tracing::debug!("snapshot: source read in {:?}", started.elapsed());
    // The last packs are compressed and written while the kinds merge.
    packer.close()?;
    drop(dedup);
    progress.advance(count % 4096);
    progress.done();
    let mut sorted = sorter.finish()?;
    tracing::debug!("snapshot: keys sorted at {:?}", started.elapsed());
    let groups = sorted.groups.clone();

    // 2. Merge each kind, in key order, against the parent.
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
    let depth = if keyframe {
        0
    } else {
        parent.as_ref().map(|p| p.depth + 1).unwrap_or(0)
    };
    let write_changes = parent.is_some();

    let price = opts.read_price_per_100k;
    let read_counts: HashMap<(String, String), ReadCounts> = source
        .read_counts()
        .into_iter()
        .map(|(ns, kind, c)| ((ns, kind), c))
        .collect();
    let all_reads = (!read_counts.is_empty()).then(|| {
        let mut sum = ReadCounts::default();
        for c in read_counts.values() {
            sum.entity_reads += c.entity_reads;
            sum.small_ops += c.small_ops;
            sum.lookups += c.lookups;
        }
        ReadCost::new(sum, price)
    });
    let mut writer = ManifestWriter::create(repo)?;
    let mut reports = Vec::new();
    let (mut total_entities, mut total_raw) = (0u64, 0u64);
    let mut totals: Vec<(Option<u32>, KindInfo)> = Vec::new();
    for (ns, kind) in &names {
        progress.phase(
            &format!(
                "merging {}",
                if ns.is_empty() {
                    kind.clone()
                } else {
                    format!("{ns}/{kind}")
                }
            ),
            None,
        );
        let gid = groups.get(ns, kind);
        let kid = writer.add_kind(ns, kind)?;
        let mut parent_state = match &chain {
            Some(c) => Some(c.state(ns, kind)?),
            None => None,
        };
        let mut par: Option<StateEntry> = match &mut parent_state {
            Some(s) => s.next_entry()?,
            None => None,
        };
        let mut rep = KindReport {
            namespace: ns.clone(),
            kind: kind.clone(),
            reads: read_counts
                .get(&(ns.clone(), kind.clone()))
                .map(|c| ReadCost::new(*c, price)),
            ..Default::default()
        };
        let mut digest = blake3::Hasher::new();
        let mut prev: Option<Record> = None;
        loop {
            let src_here = match (gid, sorted.peek()?) {
                (Some(g), Some(r)) => r.gid == g,
                _ => false,
            };
            let src = if src_here {
                sorted.next_record()?
            } else {
                None
            };
            if let (Some(s), Some(p)) = (&src, &prev) {
                if s.key == p.key {
                    let shown = key::decode_path(&s.key)
                        .map(|p| key::display_path(&p))
                        .unwrap_or_default();
                    let (first, second) = if p.origin <= s.origin {
                        (p.origin, s.origin)
                    } else {
                        (s.origin, p.origin)
                    };
                    return Err(Error::DuplicateKey {
                        key: if ns.is_empty() {
                            shown
                        } else {
                            format!("[{ns}] {shown}")
                        },
                        first: source.describe(first),
                        second: source.describe(second),
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
                    par = parent_state
                        .as_mut()
                        .map(|s| s.next_entry())
                        .transpose()?
                        .flatten();
                } else {
                    break;
                }
            }
            let Some(s) = src else { break };
            let size = s.size as u64;
            let same_key = par.as_ref().map(|p| p.key == s.key).unwrap_or(false);
            if same_key {
                let p = par.take();
                par = parent_state
                    .as_mut()
                    .map(|st| st.next_entry())
                    .transpose()?
                    .flatten();
                if p.map(|p| p.hash != s.hash).unwrap_or(true) {
                    if write_changes {
                        writer.put_change(kid, &s.key, Op::Changed, Some(&s.hash), size)?;
                    }
                    rep.changed += 1;
                }
            } else {
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
            if rep.entities.is_multiple_of(4096) {
                progress.advance(4096);
            }
            if let Some(old) = prev.replace(s) {
                sorted.recycle(old);
            }
        }
        progress.advance(rep.entities % 4096);
        progress.done();
        totals.push((
            gid,
            KindInfo {
                kid,
                namespace: ns.clone(),
                kind: kind.clone(),
                entities: rep.entities,
                raw_bytes: rep.raw_bytes,
                digest: *digest.finalize().as_bytes(),
                added: rep.added,
                changed: rep.changed,
                removed: rep.removed,
                bytes_added: 0,
            },
        ));
        total_entities += rep.entities;
        total_raw += rep.raw_bytes;
        reports.push(rep);
    }
    drop(chain);
    tracing::debug!("snapshot: kinds merged at {:?}", started.elapsed());
    let mut finished: HashMap<u32, u64> = HashMap::new();
    let mut total_packs = 0u64;
    for (g, (bytes, packs)) in packer.finish()? {
        finished.insert(g, bytes);
        total_packs += packs;
    }
    tracing::debug!(
        "snapshot: packs and index written at {:?}",
        started.elapsed()
    );
    let total_pack_bytes: u64 = finished.values().sum();
    let content = content_of(totals.iter().map(|(_, k)| k));
    for ((gid, mut info), rep) in totals.into_iter().zip(reports.iter_mut()) {
        let bytes = gid.and_then(|g| finished.get(&g).copied()).unwrap_or(0);
        info.bytes_added = bytes;
        rep.bytes_added = bytes;
        writer.set_kind_totals(info)?;
    }

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
        replaces: Vec::new(),
    };
    let force = opts.force;
    // Under the commit lock: an explicit name taken meanwhile refuses (or
    // is this very snapshot, rerun); a default name taken meanwhile (two
    // snapshots started in the same second) moves on to `NAME-2`, `-3`….
    let published = writer.publish(repo, &meta, |repo, candidate| {
        if force {
            return Ok(NameVerdict::Publish);
        }
        let (infos, _) = manifest::list(repo)?;
        if !explicit_name {
            return Ok(if infos.iter().any(|i| i.name == candidate) {
                NameVerdict::Rename(free_default_name(&infos, &default_name(time_us)))
            } else {
                NameVerdict::Publish
            });
        }
        let Some(i) = infos.iter().rev().find(|i| i.name == candidate) else {
            return Ok(NameVerdict::Publish);
        };
        if i.source == meta.source
            && i.kinds_filter == meta.kinds_filter
            && content_of(&Manifest::open(repo, &i.id)?.kinds()?) == content
        {
            return Ok(NameVerdict::Existing(i.id));
        }
        Err(Error::NameTaken {
            name: candidate.to_string(),
            id: i.id.short(),
        })
    })?;
    let (id, manifest_bytes, existed, name) = match published {
        Published::New { id, bytes, name } => (id, bytes, false, name),
        Published::Existing(id) => (id, 0, true, name),
    };
    tracing::debug!("snapshot: manifest published at {:?}", started.elapsed());
    if let Err(e) = source.commit_cache(&id) {
        tracing::warn!("the source's cache is not kept: {e}");
    }
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
        reads: all_reads,
        existed,
    })
}

/// A snapshot's content for comparing reruns: each kind that has
/// entities, with its count and the digest of its (key, hash) stream.
type Content = Vec<(String, String, u64, [u8; 32])>;

fn content_of<'a>(kinds: impl IntoIterator<Item = &'a KindInfo>) -> Content {
    let mut c: Content = kinds
        .into_iter()
        .filter(|k| k.entities > 0)
        .map(|k| (k.namespace.clone(), k.kind.clone(), k.entities, k.digest))
        .collect();
    c.sort();
    c
}
