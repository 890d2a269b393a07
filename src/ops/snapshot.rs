//! Taking a snapshot: stream the source through the encoder and the
//! external sort, then merge each kind, in key order, against the parent
//! snapshot's state. Only added and changed entities are encoded into
//! packs; only changes (and, on keyframes, the full table) go into the
//! manifest. Memory stays bounded whatever the size of the source.

use std::collections::{BTreeSet, HashMap};

use crate::connector::{
    linecache, CacheSpec, Encoded, EncodedBatch, EntitySource, KindRead, ParentEntry, ParentState,
    ReadCounts, ReadInfo,
};
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
    /// Read every entity even where the source could read only what
    /// changed since the parent (`--full`).
    pub full: bool,
    /// Read in full when this many snapshots in a row would otherwise
    /// have been incremental (`full_every` in kindsnap.toml).
    pub full_every: Option<u32>,
    /// Stops the snapshot at its next entity; nothing is published.
    pub cancel: crate::interrupt::Cancel,
    /// Tags of the new snapshot (`--tag`); the repository must be at
    /// format [`crate::repo::TAGS_FORMAT_VERSION`] ([`Repository::require_format`]) when there are any.
    pub tags: Vec<String>,
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
            full: false,
            full_every: None,
            cancel: Default::default(),
            tags: Vec::new(),
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
    /// How the source read the kind, when changed reads were asked for.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub read: Option<KindRead>,
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
    /// When the source was read, whether at one consistent moment, and
    /// notes on fallbacks (sources that know: Datastore).
    pub read_info: Option<ReadInfo>,
    /// Entities the source's cache vouched for, so their records were not
    /// parsed again (the JSON Lines line cache; 0 for other sources).
    pub from_cache: u64,
    /// What the source could not record (a PostgreSQL rule or policy, a
    /// table without a primary key), one line each.
    pub warnings: Vec<String>,
}

/// `snapshot --json` (docs/json.md): the report as one object, ids in
/// hex, the read information flattened (`read_time`, `consistent`,
/// `notes`). The source's identity is the caller's to add.
impl serde::Serialize for SnapshotReport {
    fn serialize<S: serde::Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        #[derive(serde::Serialize)]
        struct Shown<'a> {
            id: String,
            name: &'a str,
            parent: Option<String>,
            keyframe: bool,
            entities: u64,
            bytes_added: u64,
            manifest_bytes: u64,
            kinds: &'a [KindReport],
            skipped_kinds: &'a [String],
            reads: &'a Option<ReadCost>,
            existed: bool,
            from_cache: u64,
            read_time: Option<String>,
            consistent: Option<bool>,
            notes: &'a [String],
            warnings: &'a [String],
        }
        let info = self.read_info.as_ref();
        Shown {
            id: self.id.to_hex(),
            name: &self.name,
            parent: self.parent.as_ref().map(|p| p.0.to_hex()),
            keyframe: self.keyframe,
            entities: self.entities,
            bytes_added: self.bytes_added,
            manifest_bytes: self.manifest_bytes,
            kinds: &self.kinds,
            skipped_kinds: &self.skipped_kinds,
            reads: &self.reads,
            existed: self.existed,
            from_cache: self.from_cache,
            read_time: info
                .and_then(|i| i.read_time_us)
                .map(crate::model::json::format_timestamp),
            consistent: info.map(|i| i.consistent),
            notes: info.map(|i| i.notes.as_slice()).unwrap_or_default(),
            warnings: &self.warnings,
        }
        .serialize(s)
    }
}

/// The manifest `meta` entry holding the moment the source was read.
pub const META_READ_TIME: &str = "source_read_time_us";

/// The manifest `meta` entry counting the incremental snapshots in a row
/// up to this one (0: this one read every kind in full).
pub const META_INCREMENTAL_RUNS: &str = "incremental_runs";

/// `full_every`: incremental snapshots since the last full one.
struct Runs {
    before: u32,
    every: Option<u32>,
}

impl Runs {
    fn of(chain: Option<&Chain>, opts: &SnapshotOptions) -> Result<Runs> {
        let before = match chain {
            Some(c) => c.head().meta(META_INCREMENTAL_RUNS)?,
            None => None,
        };
        Ok(Runs {
            before: before.and_then(|v| v.parse().ok()).unwrap_or(0),
            every: opts.full_every,
        })
    }

    /// This snapshot must read in full (`full_every` reached).
    fn forced(&self) -> bool {
        self.every.is_some_and(|n| self.before + 1 >= n)
    }

    /// Note the count in the manifest (and the forced full read in the
    /// report).
    fn record(&self, writer: &mut ManifestWriter, info: &mut ReadInfo) -> Result<()> {
        if let (true, Some(n)) = (self.forced(), self.every) {
            info.notes.push(format!(
                "read in full: full_every = {n} ({} incremental snapshots since the last full one)",
                self.before
            ));
        }
        let incremental = info
            .kinds
            .iter()
            .any(|(_, _, r)| matches!(r, KindRead::Incremental { .. }));
        let runs = if incremental { self.before + 1 } else { 0 };
        writer.set_meta(META_INCREMENTAL_RUNS, &runs.to_string())
    }
}

/// The parent snapshot's state, for a source that reads only what changed.
struct ParentView<'c> {
    chain: &'c Chain,
    read_time_us: Option<i64>,
    may_carry: bool,
}

impl ParentState for ParentView<'_> {
    fn read_time_us(&self) -> Option<i64> {
        self.read_time_us
    }

    fn may_carry(&self) -> bool {
        self.may_carry
    }

    fn count(&self, namespace: &str, kind: &str) -> Result<u64> {
        Ok(self
            .chain
            .head()
            .kind(namespace, kind)?
            .map(|k| k.entities)
            .unwrap_or(0))
    }

    fn entries<'s>(
        &'s self,
        namespace: &str,
        kind: &str,
    ) -> Result<Box<dyn Iterator<Item = Result<ParentEntry>> + 's>> {
        let mut state = self.chain.state(namespace, kind)?;
        Ok(Box::new(std::iter::from_fn(move || {
            state.next_entry().transpose().map(|r| {
                r.map(|e| ParentEntry {
                    key: e.key,
                    hash: e.hash,
                    size: e.size,
                })
            })
        })))
    }
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

/// What a snapshot run decided before reading anything: its name, its
/// parent, and whether it may be a rerun of the same job.
struct Plan {
    name: String,
    explicit_name: bool,
    /// A snapshot of the same source and kinds under the name asked for:
    /// this run may be a rerun of the same job (cron). It goes on, and is
    /// a no-op if it finds the same content; any body not stored yet
    /// proves the content new and ends the run before it is stored.
    rerun_of: Option<String>,
    parent: Option<manifest::SnapshotInfo>,
    source_id: String,
    kinds_key: String,
    time_us: i64,
    keyframe: bool,
    depth: u32,
}

impl Plan {
    fn decide(
        repo: &Repository,
        source_id: String,
        opts: &SnapshotOptions,
        time_us: i64,
    ) -> Result<Plan> {
        let (infos, _) = manifest::list(repo)?;
        let kinds_key = opts.filter.kinds_key();
        let mut rerun_of: Option<String> = None;
        let name = match &opts.name {
            Some(n) => {
                super::validate_name(n)?;
                if !opts.force {
                    if let Some(i) = infos.iter().rev().find(|i| &i.name == n) {
                        if i.source != source_id || i.kinds_filter != kinds_key {
                            return Err(Error::NameTaken {
                                name: n.clone(),
                                id: i.logical.short(),
                            });
                        }
                        rerun_of = Some(i.logical.short());
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
        let keyframe = match &parent {
            None => true,
            Some(p) => p.depth + 1 >= repo.config.keyframe_interval.max(1),
        };
        let depth = match &parent {
            Some(p) if !keyframe => p.depth + 1,
            _ => 0,
        };
        Ok(Plan {
            name,
            explicit_name: opts.name.is_some(),
            rerun_of,
            parent,
            source_id,
            kinds_key,
            time_us,
            keyframe,
            depth,
        })
    }
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
    let started = std::time::Instant::now();
    let time_us = opts.time_us.unwrap_or_else(now_us);
    let plan = Plan::decide(repo, source.source_id(), opts, time_us)?;

    // 1. Read, encode, hash; store bodies not stored yet; sort the keys.
    // The total: what the source counts cheaply (a file's lines), else
    // the parent's count, a guess (a bar that may end a little short or
    // long, with an ETA).
    let counted = match progress.wants_totals() {
        true => source.expected_entities(),
        false => None,
    };
    let total = counted.or(plan.parent.as_ref().map(|p| p.entities));
    progress.phase("reading", total.filter(|n| *n > 0));
    let chain = plan
        .parent
        .as_ref()
        .map(|p| Chain::open(repo, &p.id))
        .transpose()?;
    source.set_filter(&opts.filter);
    source.set_cancel(&opts.cancel);
    if let Some(root) = &opts.cache_dir {
        source.use_cache(CacheSpec {
            path: linecache::cache_path(
                repo.keys().map(|k| &**k),
                root,
                &repo.config.id,
                (&plan.source_id, &plan.kinds_key),
            ),
            parent: plan.parent.as_ref().map(|p| p.logical),
            // An encrypted repository's cache is sealed with its keys.
            keys: repo.keys().cloned(),
        });
    }
    let runs = Runs::of(chain.as_ref(), opts)?;
    let mut ingest = Ingest::new(repo, opts, &plan, chain.as_ref(), progress)?;
    match chain.as_ref() {
        Some(chain) => {
            let view = ParentView {
                chain,
                read_time_us: chain
                    .head()
                    .meta(META_READ_TIME)?
                    .and_then(|v| v.parse().ok()),
                may_carry: !opts.full && !runs.forced(),
            };
            source.for_each_since(&view, &mut |e| ingest.take(e))?
        }
        None => source.for_each_encoded(&mut |e| ingest.take(e))?,
    }
    let (sorted, packer, skipped, from_cache) = ingest.finish()?;
    let mut read_info = source.read_info();
    tracing::debug!(
        "snapshot: source read and sorted at {:?}",
        started.elapsed()
    );

    // 2. Merge each kind, in key order, against the parent.
    let mut merged = merge_kinds(
        repo,
        &*source,
        opts,
        &plan,
        chain.as_ref(),
        sorted,
        progress,
    )?;
    if let Some(info) = &mut read_info {
        runs.record(&mut merged.writer, info)?;
        if let Some(t) = info.read_time_us {
            merged.writer.set_meta(META_READ_TIME, &t.to_string())?;
        }
        for rep in merged.reports.iter_mut() {
            rep.read = info
                .kinds
                .iter()
                .find(|(ns, k, _)| *ns == rep.namespace && *k == rep.kind)
                .map(|(_, _, r)| r.clone());
        }
    }
    drop(chain);
    tracing::debug!("snapshot: kinds merged at {:?}", started.elapsed());

    // 3. Publish: the manifest's rename is the commit.
    let mut report = publish(repo, opts, &plan, merged, packer)?;
    report.skipped_kinds = skipped.into_iter().collect();
    report.read_info = read_info;
    report.from_cache = from_cache;
    report.warnings = source.warnings();
    tracing::debug!("snapshot: manifest published at {:?}", started.elapsed());
    if let Err(e) = source.commit_cache(&report.id) {
        tracing::warn!("the source's cache is not kept: {e}");
    }
    Ok(report)
}

/// Step 1: every entity the source sends passes [`Ingest::take`], which
/// stores its body unless the repository has it and sorts its key.
struct Ingest<'a> {
    /// An encrypted repository's keys (entity ids are keyed hashes).
    keys: Option<std::sync::Arc<crate::repo::crypto::Keys>>,
    opts: &'a SnapshotOptions,
    plan: &'a Plan,
    chain: Option<&'a Chain>,
    dedup: Dedup,
    packer: Packer,
    sorter: Sorter,
    skipped: BTreeSet<String>,
    allowed: HashMap<(String, String), Option<u32>>,
    /// While the source arrives in key order, each entity is compared with
    /// the parent's as it streams by, and bodies the parent already has
    /// need no index lookup.
    cursors: Vec<Slot<'a>>,
    open_cursors: Vec<usize>,
    count: u64,
    /// Entities whose record the source's cache vouched for.
    from_cache: u64,
    scratch: EncodedBatch,
    progress: &'a dyn Progress,
}

/// The source's cache vouched for a body the repository does not have:
/// parse the line after all.
fn reparse<'s>(scratch: &'s mut EncodedBatch, e: &Encoded<'_>) -> Result<&'s [u8]> {
    scratch.clear();
    scratch
        .push_json(e.json, e.origin)
        .map_err(|_| Error::Internal("a cached line no longer parses"))?;
    match scratch.iter().next() {
        Some(fresh) if fresh.hash == e.hash && fresh.key == e.key => {
            Ok(fresh.body.unwrap_or_default())
        }
        _ => Err(Error::Internal(
            "the line cache disagrees with the file; run again with --no-cache",
        )),
    }
}

impl<'a> Ingest<'a> {
    fn new(
        repo: &Repository,
        opts: &'a SnapshotOptions,
        plan: &'a Plan,
        chain: Option<&'a Chain>,
        progress: &'a dyn Progress,
    ) -> Result<Ingest<'a>> {
        Ok(Ingest {
            keys: repo.keys().cloned(),
            opts,
            plan,
            chain,
            dedup: Dedup::open(&repo.index_path())?,
            packer: Packer::start(repo),
            sorter: Sorter::new(&repo.tmp_dir(), opts.sort_budget),
            skipped: BTreeSet::new(),
            allowed: HashMap::new(),
            cursors: Vec::new(),
            open_cursors: Vec::new(),
            count: 0,
            from_cache: 0,
            scratch: EncodedBatch::default(),
            progress,
        })
    }

    /// The repository's id of a body with this plain hash.
    fn entity_id(&self, plain: EntityHash) -> EntityHash {
        match &self.keys {
            Some(k) => k.entity_id(&plain),
            None => plain,
        }
    }

    /// The kind's group id, or `None` (and the kind noted as skipped) when
    /// the filter leaves it out.
    fn group(&mut self, namespace: &str, kind: &str) -> Option<u32> {
        if let Some(g) = self.sorter.groups.get(namespace, kind) {
            return Some(g);
        }
        let key = (namespace.to_string(), kind.to_string());
        let (filter, groups) = (&self.opts.filter, &mut self.sorter.groups);
        let gid = *self.allowed.entry(key).or_insert_with(|| {
            filter
                .allows(namespace, kind)
                .then(|| groups.intern(namespace, kind))
        });
        if gid.is_none() {
            self.skipped.insert(if namespace.is_empty() {
                kind.to_string()
            } else {
                format!("{namespace}/{kind}")
            });
        }
        gid
    }

    /// Whether the parent holds this exact entity (its body is stored).
    fn known(&mut self, g: usize, e: &Encoded<'_>) -> Result<bool> {
        let Some(chain) = self.chain else {
            return Ok(false);
        };
        if self.cursors.len() <= g {
            self.cursors.resize_with(g + 1, || Slot::Unopened);
        }
        if matches!(self.cursors[g], Slot::Unopened) {
            // A bounded number of kinds keep a cursor (each holds a page of
            // rows); the oldest gives its up for good and its kind falls
            // back to the index.
            if self.open_cursors.len() >= MAX_CURSORS {
                let old = self.open_cursors.remove(0);
                self.cursors[old] = Slot::Closed;
            }
            self.cursors[g] = Slot::Open(ParentCursor::new(chain.state(e.namespace, e.kind)?));
            self.open_cursors.push(g);
        }
        Ok(match &mut self.cursors[g] {
            Slot::Open(c) => c.seek(e.key)? == Some(e.hash),
            _ => false,
        })
    }

    fn take(&mut self, e: Encoded<'_>) -> Result<()> {
        let Some(gid) = self.group(e.namespace, e.kind) else {
            return Ok(());
        };
        // Carried from the parent's state: the parent's body is stored.
        let carried = e.body.is_none() && e.json.is_empty();
        // The source hashes the canonical encoding; an encrypted
        // repository names the body by a keyed hash of that (a carried
        // entity has the repository's id already).
        let plain_hash = e.hash;
        let e = Encoded {
            hash: if carried {
                e.hash
            } else {
                self.entity_id(e.hash)
            },
            ..e
        };
        let known = self.known(gid as usize, &e)?;
        if self.count.is_multiple_of(256) {
            // Bodies the packer has committed leave `pending` (which only
            // bounds memory: a stale entry still means "stored").
            self.packer.drain_acks();
        }
        if e.body.is_none() && !carried {
            self.from_cache += 1;
        }
        if !known
            && !carried
            && !self.packer.pending.contains(&e.hash)
            && !self.dedup.is_stored(&e.hash, &self.packer.pending)?
        {
            let body = match e.body {
                Some(b) => b,
                None => reparse(
                    &mut self.scratch,
                    &Encoded {
                        hash: plain_hash,
                        ..e
                    },
                )?,
            };
            if let Some(id) = &self.plan.rerun_of {
                return Err(Error::NameTaken {
                    name: self.plan.name.clone(),
                    id: id.clone(),
                });
            }
            self.dedup.note_added(&e.hash);
            self.packer.add(gid, e.namespace, e.kind, e.hash, body)?;
        }
        self.sorter.push(gid, e.origin, e.hash, e.key, e.size)?;
        self.count += 1;
        if self.count.is_multiple_of(4096) {
            self.progress.advance(4096);
            self.opts.cancel.check()?;
        }
        Ok(())
    }

    /// The keys sorted, and the packer still writing its last packs (they
    /// are compressed and written while the kinds merge).
    fn finish(mut self) -> Result<(crate::sort::Sorted, Packer, BTreeSet<String>, u64)> {
        self.cursors.clear();
        self.packer.close()?;
        drop(self.dedup);
        self.progress.advance(self.count % 4096);
        self.progress.done();
        Ok((
            self.sorter.finish()?,
            self.packer,
            self.skipped,
            self.from_cache,
        ))
    }
}
/// Step 2's result: the manifest being written, a report and the totals
/// (with the sort group, for the pack bytes) of every kind.
struct Merged {
    writer: ManifestWriter,
    reports: Vec<KindReport>,
    totals: Vec<(Option<u32>, KindInfo)>,
    reads: Option<ReadCost>,
}

fn merge_kinds(
    repo: &Repository,
    source: &dyn EntitySource,
    opts: &SnapshotOptions,
    plan: &Plan,
    chain: Option<&Chain>,
    mut sorted: crate::sort::Sorted,
    progress: &dyn Progress,
) -> Result<Merged> {
    let groups = sorted.groups.clone();
    let mut names: BTreeSet<(String, String)> = groups.all().iter().cloned().collect();
    if let Some(chain) = chain {
        for k in chain.head().kinds()? {
            if k.entities > 0 {
                names.insert((k.namespace, k.kind));
            }
        }
    }
    let price = opts.read_price_per_100k;
    let read_counts: HashMap<(String, String), ReadCounts> = source
        .read_counts()
        .into_iter()
        .map(|(ns, kind, c)| ((ns, kind), c))
        .collect();
    let reads = (!read_counts.is_empty()).then(|| {
        let mut sum = ReadCounts::default();
        for c in read_counts.values() {
            sum.entity_reads += c.entity_reads;
            sum.small_ops += c.small_ops;
            sum.lookups += c.lookups;
        }
        ReadCost::new(sum, price)
    });
    let mut merged = Merged {
        writer: ManifestWriter::create(repo)?,
        reports: Vec::new(),
        totals: Vec::new(),
        reads,
    };
    for (ns, kind) in &names {
        let guess = match chain {
            Some(c) => c.head().kind(ns, kind)?.map(|k| k.entities),
            None => None,
        };
        progress.phase(
            &format!("merging {}", kind_label(ns, kind)),
            guess.filter(|n| *n > 0),
        );
        let gid = groups.get(ns, kind);
        let kid = merged.writer.add_kind(ns, kind)?;
        let mut rep = KindReport {
            namespace: ns.clone(),
            kind: kind.clone(),
            reads: read_counts
                .get(&(ns.clone(), kind.clone()))
                .map(|c| ReadCost::new(*c, price)),
            ..Default::default()
        };
        let parent = chain.map(|c| c.state(ns, kind)).transpose()?;
        let mut merge = KindMerge {
            writer: &mut merged.writer,
            kid,
            write_changes: plan.parent.is_some(),
            keyframe: plan.keyframe,
            digest: blake3::Hasher::new(),
        };
        merge.run(&mut sorted, gid, parent, &mut rep, source, progress)?;
        progress.advance(rep.entities % 4096);
        progress.done();
        merged.totals.push((
            gid,
            KindInfo {
                kid,
                namespace: ns.clone(),
                kind: kind.clone(),
                entities: rep.entities,
                raw_bytes: rep.raw_bytes,
                digest: *merge.digest.finalize().as_bytes(),
                added: rep.added,
                changed: rep.changed,
                removed: rep.removed,
                bytes_added: 0,
            },
        ));
        merged.reports.push(rep);
    }
    Ok(merged)
}

fn kind_label(ns: &str, kind: &str) -> String {
    if ns.is_empty() {
        kind.to_string()
    } else {
        format!("{ns}/{kind}")
    }
}

/// One kind's merge of the sorted source records against the parent's
/// state: changes (with a parent), the full table (on keyframes) and the
/// digest of the (key, hash) stream.
struct KindMerge<'w> {
    writer: &'w mut ManifestWriter,
    kid: i64,
    write_changes: bool,
    keyframe: bool,
    digest: blake3::Hasher,
}

impl KindMerge<'_> {
    fn run(
        &mut self,
        sorted: &mut crate::sort::Sorted,
        gid: Option<u32>,
        mut parent: Option<StateReader<'_>>,
        rep: &mut KindReport,
        source: &dyn EntitySource,
        progress: &dyn Progress,
    ) -> Result<()> {
        fn next_parent(p: &mut Option<StateReader<'_>>) -> Result<Option<StateEntry>> {
            Ok(p.as_mut().map(|s| s.next_entry()).transpose()?.flatten())
        }
        let mut par = next_parent(&mut parent)?;
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
                    return Err(duplicate(rep, s, p, source));
                }
            }
            // Removed keys: parent entries before the next source key.
            while let Some(p) = &par {
                if src.as_ref().is_some_and(|s| p.key >= s.key) {
                    break;
                }
                if self.write_changes {
                    self.writer
                        .put_change(self.kid, &p.key, Op::Removed, None, 0)?;
                }
                rep.removed += 1;
                par = next_parent(&mut parent)?;
            }
            let Some(s) = src else { break };
            let size = s.size as u64;
            let op = if par.as_ref().is_some_and(|p| p.key == s.key) {
                let p = par.take();
                par = next_parent(&mut parent)?;
                if p.is_some_and(|p| p.hash == s.hash) {
                    None
                } else {
                    Some(Op::Changed)
                }
            } else {
                Some(Op::Added)
            };
            match op {
                Some(Op::Changed) => rep.changed += 1,
                Some(_) => rep.added += 1,
                None => {}
            }
            if let (Some(op), true) = (op, self.write_changes) {
                self.writer
                    .put_change(self.kid, &s.key, op, Some(&s.hash), size)?;
            }
            if self.keyframe {
                self.writer.put_entry(self.kid, &s.key, &s.hash, size)?;
            }
            self.digest.update(&(s.key.len() as u32).to_le_bytes());
            self.digest.update(&s.key);
            self.digest.update(s.hash.as_bytes());
            rep.entities += 1;
            rep.raw_bytes += size;
            if rep.entities.is_multiple_of(4096) {
                progress.advance(4096);
            }
            if let Some(old) = prev.replace(s) {
                sorted.recycle(old);
            }
        }
        Ok(())
    }
}

/// Two source records with one key.
fn duplicate(rep: &KindReport, s: &Record, p: &Record, source: &dyn EntitySource) -> Error {
    let shown = key::decode_path(&s.key)
        .map(|p| key::display_path(&p))
        .unwrap_or_default();
    let (first, second) = if p.origin <= s.origin {
        (p.origin, s.origin)
    } else {
        (s.origin, p.origin)
    };
    Error::DuplicateKey {
        key: if rep.namespace.is_empty() {
            shown
        } else {
            format!("[{}] {shown}", rep.namespace)
        },
        first: source.describe(first),
        second: source.describe(second),
    }
}

/// Step 3: wait for the packs, total up, and publish the manifest (its
/// rename is the commit).
fn publish(
    repo: &Repository,
    opts: &SnapshotOptions,
    plan: &Plan,
    merged: Merged,
    packer: Packer,
) -> Result<SnapshotReport> {
    let Merged {
        mut writer,
        mut reports,
        totals,
        reads,
    } = merged;
    let mut finished: HashMap<u32, u64> = HashMap::new();
    let mut total_packs = 0u64;
    for (g, (bytes, packs)) in packer.finish()? {
        finished.insert(g, bytes);
        total_packs += packs;
    }
    let total_pack_bytes: u64 = finished.values().sum();
    let content = content_of(totals.iter().map(|(_, k)| k));
    let (entities, raw_bytes) = totals
        .iter()
        .fold((0, 0), |(e, r), (_, k)| (e + k.entities, r + k.raw_bytes));
    for ((gid, mut info), rep) in totals.into_iter().zip(reports.iter_mut()) {
        let bytes = gid.and_then(|g| finished.get(&g).copied()).unwrap_or(0);
        info.bytes_added = bytes;
        rep.bytes_added = bytes;
        writer.set_kind_totals(info)?;
    }
    let meta = NewSnapshot {
        name: plan.name.clone(),
        time_us: plan.time_us,
        source: plan.source_id.clone(),
        kinds_filter: plan.kinds_key.clone(),
        parent: plan.parent.as_ref().map(|p| p.id),
        depth: plan.depth,
        keyframe: plan.keyframe,
        entities,
        raw_bytes,
        bytes_added: total_pack_bytes,
        packs_added: total_packs,
        replaces: Vec::new(),
        tags: opts.tags.clone(),
    };
    let published = writer.publish(repo, &meta, |repo, candidate| {
        name_verdict(repo, opts.force, plan, &meta, &content, candidate)
    })?;
    let (id, manifest_bytes, existed, name) = match published {
        Published::New { id, bytes, name } => (id, bytes, false, name),
        Published::Existing(id) => (id, 0, true, plan.name.clone()),
    };
    Ok(SnapshotReport {
        id,
        name,
        parent: plan.parent.as_ref().map(|p| (p.logical, p.name.clone())),
        keyframe: plan.keyframe,
        kinds: reports,
        entities,
        bytes_added: total_pack_bytes + manifest_bytes,
        manifest_bytes,
        skipped_kinds: Vec::new(),
        reads,
        existed,
        read_info: None,
        from_cache: 0,
        warnings: Vec::new(),
    })
}

/// Under the commit lock: an explicit name taken meanwhile refuses (or is
/// this very snapshot, rerun); a default name taken meanwhile (two
/// snapshots started in the same second) moves on to `NAME-2`, `-3`….
fn name_verdict(
    repo: &Repository,
    force: bool,
    plan: &Plan,
    meta: &NewSnapshot,
    content: &Content,
    candidate: &str,
) -> Result<NameVerdict> {
    if force {
        return Ok(NameVerdict::Publish);
    }
    let (infos, _) = manifest::list(repo)?;
    if !plan.explicit_name {
        return Ok(if infos.iter().any(|i| i.name == candidate) {
            NameVerdict::Rename(free_default_name(&infos, &default_name(plan.time_us)))
        } else {
            NameVerdict::Publish
        });
    }
    let Some(i) = infos.iter().rev().find(|i| i.name == candidate) else {
        return Ok(NameVerdict::Publish);
    };
    if i.source == meta.source
        && i.kinds_filter == meta.kinds_filter
        && content_of(&Manifest::open(repo, &i.id)?.kinds()?) == *content
    {
        return Ok(NameVerdict::Existing(i.logical));
    }
    Err(Error::NameTaken {
        name: candidate.to_string(),
        id: i.logical.short(),
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
