//! Verify a repository: every manifest matches its id and is a sound SQLite
//! file, every delta's parent exists, every referenced entity is indexed in
//! a pack that exists; with `read_data`, every pack is re-hashed and every
//! entity body decompressed and re-hashed. Damage is reported with the
//! snapshots and kinds it affects. Check never changes the repository.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::fs;

use crate::error::{Error, Result};
use crate::ids::{EntityHash, PackId, SnapshotId};
use crate::progress::Progress;
use crate::repo::index::{Index, Location};
use crate::repo::manifest::{self, Chain, Manifest, SnapshotInfo};
use crate::repo::pack;
use crate::repo::store::Store;
use crate::repo::Repository;

#[derive(Debug, Clone, serde::Serialize)]
pub struct Problem {
    /// What is wrong, one line.
    pub problem: String,
    /// Snapshots (and kinds) that can no longer be fully restored.
    pub affects: Vec<String>,
}

#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct CheckReport {
    pub snapshots: u64,
    pub packs: u64,
    pub entities_read: u64,
    pub bytes_read: u64,
    pub problems: Vec<Problem>,
    /// Harmless findings (e.g. packs left by an interrupted snapshot).
    pub notes: Vec<String>,
    /// Every referenced entity whose body cannot be read, with why (for
    /// `repair snapshots`; the problems above say it in words).
    #[serde(skip)]
    pub lost: HashMap<EntityHash, Cause>,
    /// Snapshots that cannot be read at all (a damaged manifest, or one in
    /// their chain): dropping entities cannot repair them.
    #[serde(skip)]
    pub unreadable: BTreeMap<SnapshotId, String>,
}

/// Why a referenced entity's body is lost.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Cause {
    /// The index does not know it (its pack is gone, or it was in the
    /// damaged part of a pack when the index was rebuilt).
    NotIndexed,
    PackMissing(PackId),
    /// It is in the damaged part of this pack.
    DamagedPack(PackId),
}

/// `1 entity`, `2 entities`.
fn entities(n: impl Into<u64>) -> String {
    match n.into() {
        1 => "1 entity".to_string(),
        n => format!("{n} entities"),
    }
}

impl Cause {
    fn describe(&self, n: usize) -> String {
        let are = if n == 1 { "is" } else { "are" };
        let n = entities(n as u64);
        match self {
            Cause::NotIndexed => format!(
                "{n} {are} not in the index (their bodies are lost with a damaged or missing pack); \
                 `kindsnap repair snapshots` rewrites the snapshots without them"
            ),
            Cause::PackMissing(p) => format!(
                "pack {} is missing: {n} lost; `kindsnap repair snapshots` rewrites the snapshots without them",
                p.short()
            ),
            Cause::DamagedPack(p) => format!(
                "pack {}: {n} in its damaged part {are} lost; \
                 `kindsnap repair index` salvages the rest, then `kindsnap repair snapshots`",
                p.short()
            ),
        }
    }
}

fn snap_label(i: &SnapshotInfo) -> String {
    format!("snapshot {} ({})", i.name, i.logical.short())
}

pub fn check(repo: &Repository, read_data: bool, progress: &dyn Progress) -> Result<CheckReport> {
    let _lock = repo.lock_shared()?;
    check_locked(repo, read_data, progress)
}

/// [`check`] for a caller that holds a repository lock already (prune
/// holds the exclusive one).
pub fn check_locked(
    repo: &Repository,
    read_data: bool,
    progress: &dyn Progress,
) -> Result<CheckReport> {
    let mut report = CheckReport::default();
    let good = check_manifests(repo, progress, &mut report)?;
    let packs = check_index(repo, &mut report)?;
    let store = Store::open(repo)?;
    let damaged_packs = if read_data {
        read_packs(repo, &packs, &store, progress, &mut report)?
    } else {
        HashMap::new()
    };
    let (lost, mut attributed) = find_lost(repo, &good, &packs, &damaged_packs, &store, progress)?;
    if !lost.is_empty() {
        attribute_to_states(repo, &good, &lost, &report, &mut attributed, progress);
    }
    report_lost(&good, &lost, &attributed, &mut report);
    report.lost = lost;
    Ok(report)
}

/// Phase 1: every manifest's bytes hash to its id and its database is
/// sound; every delta's chain reaches its keyframe through sound
/// manifests. Damage is reported against every snapshot whose chain runs
/// through it. Returns the sound manifests. Hidden manifests (replaced by
/// `forget`, not yet deleted) are checked too: they exist until prune or
/// the next forget removes them.
fn check_manifests(
    repo: &Repository,
    progress: &dyn Progress,
    report: &mut CheckReport,
) -> Result<Vec<SnapshotInfo>> {
    let (infos, bad) = manifest::list_all(repo)?;
    report.snapshots = (infos.len() + bad.len()) as u64;
    // Damaged manifests, with why; their problems are written once we know
    // which snapshots depend on them.
    let mut damaged: Vec<(SnapshotId, String)> = bad
        .into_iter()
        .map(|(id, err)| {
            (
                id,
                format!("snapshot {}: unreadable manifest: {err}", id.short()),
            )
        })
        .collect();
    progress.phase("checking snapshots", Some(infos.len() as u64));
    let mut good: Vec<SnapshotInfo> = Vec::new();
    for info in &infos {
        match manifest_problem(repo, info)? {
            None => good.push(info.clone()),
            Some(why) => damaged.push((info.id, format!("{}: {why}", snap_label(info)))),
        }
        progress.advance(1);
    }
    progress.done();
    check_chains(&infos, damaged, report);
    Ok(good)
}

/// Why one manifest is damaged, if it is. The file is read once: the
/// manifest's own verification hashes it, and the database check after it
/// does not hash it again.
fn manifest_problem(repo: &Repository, info: &SnapshotInfo) -> Result<Option<String>> {
    let m = match Manifest::open(repo, &info.id) {
        Ok(m) => m,
        Err(e) => return Ok(Some(e.to_string())),
    };
    match m.verify() {
        Ok(()) => {}
        Err(Error::DamagedSnapshot { .. }) => {
            return Ok(Some(format!(
                "manifest content does not match its id (damaged file {})",
                m.path().display()
            )))
        }
        Err(e) => return Err(e),
    }
    Ok(match m.quick_check() {
        Ok(None) => None,
        Ok(Some(msg)) => Some(format!("manifest database damaged: {msg}")),
        Err(e) => Some(e.to_string()),
    })
}

/// Chains: a delta needs every manifest back to its keyframe (a parent
/// replaced by `forget` is reached through its replacement); a damaged
/// manifest takes every snapshot whose chain runs through it.
fn check_chains(
    infos: &[SnapshotInfo],
    damaged: Vec<(SnapshotId, String)>,
    report: &mut CheckReport,
) {
    let damaged_snaps: HashSet<SnapshotId> = damaged.iter().map(|(id, _)| *id).collect();
    let by_id: HashMap<SnapshotId, &SnapshotInfo> = infos.iter().map(|i| (i.id, i)).collect();
    let replacements = manifest::replacement_map(infos);
    let resolve = |p: SnapshotId| {
        let mut cur = p;
        for _ in 0..=replacements.len() {
            if by_id.contains_key(&cur) {
                return cur;
            }
            match replacements.get(&cur) {
                Some(r) => cur = *r,
                None => return p,
            }
        }
        p
    };
    for info in infos {
        let Some(missing) = broken_link(info, infos.len(), &by_id, &damaged_snaps, &resolve) else {
            continue;
        };
        let why = if by_id.contains_key(&missing) {
            "is damaged"
        } else {
            "is missing"
        };
        report.unreadable.insert(
            info.id,
            format!("depends on snapshot {} which {why}", missing.short()),
        );
        report.problems.push(Problem {
            problem: format!(
                "{}: depends on snapshot {} which {why}",
                snap_label(info),
                missing.short()
            ),
            affects: vec![snap_label(info)],
        });
    }
    for (id, problem) in damaged {
        report.unreadable.insert(id, problem.clone());
        let mut affects: Vec<String> = infos
            .iter()
            .filter(|i| depends_on(i, &id, &by_id, &resolve))
            .map(snap_label)
            .collect();
        if affects.is_empty() {
            affects.push(format!("snapshot {}", id.short()));
        }
        report.problems.push(Problem { problem, affects });
    }
}

/// The first manifest of `info`'s chain (back to its keyframe) that is
/// missing or damaged.
fn broken_link(
    info: &SnapshotInfo,
    limit: usize,
    by_id: &HashMap<SnapshotId, &SnapshotInfo>,
    damaged: &HashSet<SnapshotId>,
    resolve: &dyn Fn(SnapshotId) -> SnapshotId,
) -> Option<SnapshotId> {
    let mut cur = info;
    for _ in 0..=limit {
        if cur.keyframe {
            return None;
        }
        let p = resolve(cur.parent?);
        match by_id.get(&p) {
            Some(pi) if !damaged.contains(&p) => cur = pi,
            _ => return Some(p),
        }
    }
    None
}

/// What the index and the packs directory hold.
struct Packs {
    index: Index,
    on_disk: HashSet<PackId>,
    /// Indexed, but not on disk.
    missing: HashSet<PackId>,
}

/// Phase 2: the index is a sound database; packs it lists that are gone,
/// and packs it does not list (a note).
fn check_index(repo: &Repository, report: &mut CheckReport) -> Result<Packs> {
    let index = repo.open_index(false)?;
    if let Some(msg) = index.quick_check()? {
        report.problems.push(Problem {
            problem: format!(
                "index damaged: {msg}; `kindsnap check --rebuild-index` rebuilds it from the packs"
            ),
            affects: vec![],
        });
    }
    let indexed: HashSet<PackId> = index.packs()?.into_iter().map(|p| p.0).collect();
    let on_disk: HashSet<PackId> = packs_on_disk(repo)?.into_iter().collect();
    report.packs = on_disk.len() as u64;
    let missing = indexed.difference(&on_disk).copied().collect();
    let unindexed = on_disk.difference(&indexed).count();
    if unindexed > 0 {
        let packs = if unindexed == 1 {
            "pack is"
        } else {
            "packs are"
        };
        report.notes.push(format!("{unindexed} {packs} not in the index (left by an interrupted snapshot; `kindsnap prune` removes them)"));
    }
    Ok(Packs {
        index,
        on_disk,
        missing,
    })
}

/// Phase 3 (`--read-data`): every pack hashes to its id, every block
/// decompresses and splits into its bodies, and the index places each
/// body exactly where it is. Returns the damaged packs that lose indexed
/// bodies, with why.
fn read_packs(
    repo: &Repository,
    packs: &Packs,
    store: &Store,
    progress: &dyn Progress,
    report: &mut CheckReport,
) -> Result<HashMap<PackId, String>> {
    let mut damaged_packs = HashMap::new();
    let index = &packs.index;
    let mut on_disk: Vec<PackId> = packs.on_disk.iter().copied().collect();
    on_disk.sort();
    // Bytes when every pack's size is known here (a local repository, or
    // a cache holding them all): a bar that moves with the data, in MB/s.
    let total_bytes: Option<u64> = on_disk
        .iter()
        .map(|id| fs::metadata(repo.pack_path(id)).ok().map(|m| m.len()))
        .sum();
    match total_bytes {
        Some(b) => progress.phase("reading data", Some(b)),
        None => progress.phase("reading packs", Some(on_disk.len() as u64)),
    }
    let listed = index.entities_per_pack()?;
    let mut misplaced = 0u64;
    for id in &on_disk {
        let path = repo.local_pack(id)?;
        let bytes = fs::read(&path).map_err(Error::io("reading", &path))?;
        report.bytes_read += bytes.len() as u64;
        let (mut found, mut bodies) = (0u64, 0u64);
        let why = if repo.pack_id_of(&bytes) != *id {
            Some(repo.id_mismatch().to_string())
        } else {
            match pack::parse_toc(repo.keys().map(|k| &**k), &bytes, &id.to_hex()) {
                Err(e) => Some(e.to_string()),
                Ok(toc) => read_pack_blocks(
                    repo,
                    &bytes,
                    id,
                    &toc,
                    index,
                    [&mut bodies, &mut found, &mut misplaced],
                )?,
            }
        };
        report.entities_read += bodies;
        if let Some(why) = why {
            if damaged_pack(index, store, id, &path, &why, report)? {
                damaged_packs.insert(*id, why);
            }
        } else if let Some(n) = listed.get(id).filter(|n| **n > found) {
            report.problems.push(Problem {
                problem: format!(
                    "the index places {} in pack {} that {} not there; \
                     `kindsnap check --rebuild-index` rebuilds it from the packs",
                    entities(n - found),
                    id.short(),
                    if n - found == 1 { "is" } else { "are" }
                ),
                affects: vec![],
            });
        }
        progress.advance(match total_bytes {
            Some(_) => bytes.len() as u64,
            None => 1,
        });
    }
    if misplaced > 0 {
        report.problems.push(Problem {
            problem: format!(
                "the index gives the wrong block or offset for {}; \
                 `kindsnap check --rebuild-index` rebuilds it from the packs",
                entities(misplaced)
            ),
            affects: vec![],
        });
    }
    progress.done();
    Ok(damaged_packs)
}

/// A damaged pack: every body the index places in it is read back (each
/// read re-hashes it), since the damage matters only where it takes
/// indexed bodies with it. Reports it; returns whether it loses any.
fn damaged_pack(
    index: &Index,
    store: &Store,
    id: &PackId,
    path: &std::path::Path,
    why: &str,
    report: &mut CheckReport,
) -> Result<bool> {
    let placed = index.entities_in_pack(id)?;
    let unreadable = placed
        .iter()
        .filter(|(h, _)| store.get_bytes(h).is_err())
        .count();
    report.entities_read += (placed.len() - unreadable) as u64;
    if unreadable > 0 {
        report.problems.push(Problem {
            problem: format!(
                "pack {} ({}): {why}; {unreadable} of the {} entities the index places in it do not read back",
                id.short(),
                path.display(),
                placed.len()
            ),
            affects: vec![],
        });
        return Ok(true);
    }
    report.notes.push(format!(
        "pack {} is damaged ({why}), but all {} entities the index places in it read back intact \
         (`kindsnap repair index` salvaged them); `kindsnap prune` drops the pack once nothing needs it",
        id.short(),
        placed.len()
    ));
    Ok(false)
}

/// Phase 4: every hash a sound manifest references is indexed, in a pack
/// that exists and (with `--read-data`) reads back. Each manifest's own
/// rows, which find every lost body once; returns the lost bodies and, per
/// snapshot, what its own rows lose.
fn find_lost(
    repo: &Repository,
    good: &[SnapshotInfo],
    packs: &Packs,
    damaged_packs: &HashMap<PackId, String>,
    store: &Store,
    progress: &dyn Progress,
) -> Result<(
    HashMap<EntityHash, Cause>,
    BTreeMap<SnapshotId, Attribution>,
)> {
    progress.phase("checking references", Some(good.len() as u64));
    let mut lost: HashMap<EntityHash, Cause> = HashMap::new();
    let mut attributed: BTreeMap<SnapshotId, Attribution> = BTreeMap::new();
    for info in good {
        let m = Manifest::open(repo, &info.id)?;
        let mut mine = Attribution::new();
        m.referenced_hashes(&mut |ns, kind, h| {
            let cause = match lost.get(&h) {
                Some(c) => Some(*c),
                None => body_loss(&h, packs, damaged_packs, store)?,
            };
            if let Some(cause) = cause {
                lost.insert(h, cause);
                *mine
                    .entry(cause)
                    .or_default()
                    .entry(kind_label(ns, kind))
                    .or_default() += 1;
            }
            Ok(())
        })?;
        if !mine.is_empty() {
            attributed.insert(info.id, mine);
        }
        progress.advance(1);
    }
    progress.done();
    Ok((lost, attributed))
}

/// Why the body `h` cannot be read, if it cannot.
fn body_loss(
    h: &EntityHash,
    packs: &Packs,
    damaged_packs: &HashMap<PackId, String>,
    store: &Store,
) -> Result<Option<Cause>> {
    Ok(match packs.index.lookup(h)? {
        None => Some(Cause::NotIndexed),
        Some(loc) if packs.missing.contains(&loc.pack) || !packs.on_disk.contains(&loc.pack) => {
            Some(Cause::PackMissing(loc.pack))
        }
        // In a damaged pack an entity may still read back intact (the
        // damage can be in another block): try it.
        Some(loc) if damaged_packs.contains_key(&loc.pack) => store
            .get_bytes(h)
            .err()
            .map(|_| Cause::DamagedPack(loc.pack)),
        Some(_) => None,
    })
}

/// Phase 5: every snapshot whose state holds a lost body, whichever
/// manifest of its chain references it: a body shared by four snapshots
/// is reported against all four.
fn attribute_to_states(
    repo: &Repository,
    good: &[SnapshotInfo],
    lost: &HashMap<EntityHash, Cause>,
    report: &CheckReport,
    attributed: &mut BTreeMap<SnapshotId, Attribution>,
    progress: &dyn Progress,
) {
    progress.phase("attributing damage", Some(good.len() as u64));
    for info in good {
        if !report.unreadable.contains_key(&info.id) {
            match state_losses(repo, &info.id, lost) {
                Ok(a) if a.is_empty() => {
                    attributed.remove(&info.id);
                }
                Ok(a) => {
                    attributed.insert(info.id, a);
                }
                // Its chain does not read: its own rows stand (the chain's
                // problem is reported above).
                Err(_) => {}
            }
        }
        progress.advance(1);
    }
    progress.done();
}

/// Phase 6: one problem per cause, naming each snapshot and kind it takes
/// entities from (grouped: thousands of lost bodies are a few lines).
fn report_lost(
    good: &[SnapshotInfo],
    lost: &HashMap<EntityHash, Cause>,
    attributed: &BTreeMap<SnapshotId, Attribution>,
    report: &mut CheckReport,
) {
    let labels: HashMap<SnapshotId, String> = good.iter().map(|i| (i.id, snap_label(i))).collect();
    let mut by_cause: BTreeMap<Cause, (usize, Vec<String>)> = BTreeMap::new();
    for c in lost.values() {
        by_cause.entry(*c).or_default().0 += 1;
    }
    for (id, a) in attributed {
        let label = labels.get(id).cloned().unwrap_or_else(|| id.short());
        for (cause, kinds) in a {
            let list = kinds
                .iter()
                .map(|(k, n)| format!("{k} ({n})"))
                .collect::<Vec<_>>()
                .join(", ");
            by_cause
                .entry(*cause)
                .or_default()
                .1
                .push(format!("{label}: kind {list}"));
        }
    }
    for (cause, (n, affects)) in by_cause {
        report.problems.push(Problem {
            problem: cause.describe(n),
            affects,
        });
    }
}

/// cause → kind label → lost entities.
pub(crate) type Attribution = BTreeMap<Cause, BTreeMap<String, u64>>;

fn kind_label(ns: &str, kind: &str) -> String {
    if ns.is_empty() {
        kind.to_string()
    } else {
        format!("{ns}/{kind}")
    }
}

/// How many entities of each kind of a snapshot's state are lost, by cause.
pub(crate) fn state_losses(
    repo: &Repository,
    id: &SnapshotId,
    lost: &HashMap<EntityHash, Cause>,
) -> Result<Attribution> {
    let chain = Chain::open(repo, id)?;
    let mut out = Attribution::new();
    for k in chain.head().kinds()? {
        let mut st = chain.state(&k.namespace, &k.kind)?;
        while let Some(e) = st.next_entry()? {
            if let Some(c) = lost.get(&e.hash) {
                *out.entry(*c)
                    .or_default()
                    .entry(kind_label(&k.namespace, &k.kind))
                    .or_default() += 1;
            }
        }
    }
    Ok(out)
}

/// Decompress every block of a sound pack, split it into bodies, and
/// cross-check the index: each body the index places in this pack must be
/// placed exactly where it is. Counts `[bodies, found where the index
/// says, placed wrongly]`; `Some` says how the pack is damaged.
fn read_pack_blocks(
    repo: &Repository,
    bytes: &[u8],
    id: &PackId,
    toc: &pack::Toc,
    index: &Index,
    [bodies_read, found, misplaced]: [&mut u64; 3],
) -> Result<Option<String>> {
    for (off, clen, raw, lens) in &toc.blocks {
        let Some(data) = bytes.get(*off as usize..(*off as usize).saturating_add(*clen as usize))
        else {
            return Ok(Some(format!("block at {off} lies outside the pack")));
        };
        let Some(block) = pack::decode_block(repo.keys().map(|k| &**k), data, *raw) else {
            return Ok(Some(if repo.is_encrypted() {
                format!("block at {off} failed authentication or is damaged")
            } else {
                format!("block at {off} is damaged")
            }));
        };
        let Some(bodies) = pack::Toc::bodies(lens, &block) else {
            return Ok(Some(format!("block at {off} is damaged")));
        };
        *bodies_read += bodies.len() as u64;
        let mut at = 0u32;
        for body in bodies {
            let here = Location::new(*id, (*off, *clen, *raw), (at, body.len() as u32));
            at += body.len() as u32;
            match index.lookup(&repo.body_id(body))? {
                Some(loc) if loc == here => *found += 1,
                Some(loc) if loc.pack == *id => *misplaced += 1,
                // Indexed in another pack (a copy left by an interrupted
                // snapshot or a repack), or garbage: nothing to check here.
                _ => {}
            }
        }
    }
    Ok(None)
}

fn depends_on(
    info: &SnapshotInfo,
    target: &SnapshotId,
    by_id: &HashMap<SnapshotId, &SnapshotInfo>,
    resolve: &dyn Fn(SnapshotId) -> SnapshotId,
) -> bool {
    let mut cur = info;
    let mut steps = 0;
    loop {
        if cur.id == *target {
            return true;
        }
        if cur.keyframe {
            return false;
        }
        let Some(p) = cur.parent.map(resolve) else {
            return false;
        };
        if p == *target {
            return true;
        }
        match by_id.get(&p) {
            Some(pi) => cur = pi,
            None => return false,
        }
        steps += 1;
        if steps > by_id.len() {
            return false;
        }
    }
}

pub fn packs_on_disk(repo: &Repository) -> Result<BTreeSet<PackId>> {
    repo.list_packs()
}

/// A pack that failed its checks while the index was rebuilt, and what
/// was recovered from it.
#[derive(Debug, Clone, serde::Serialize)]
pub struct DamagedPack {
    pub pack: String,
    /// Why the pack is damaged, one line.
    pub why: String,
    /// Whether its table of contents could be read (without it the blocks
    /// were found by walking the zstd frames).
    pub had_toc: bool,
    /// Blocks and bodies recovered and indexed.
    pub blocks_salvaged: u64,
    pub entities_salvaged: u64,
}

/// What [`rebuild_index`] did.
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct RebuildReport {
    /// Packs indexed (sound ones and damaged ones something was salvaged from).
    pub packs: u64,
    pub entities: u64,
    /// Bodies indexed from damaged packs (included in `entities`).
    pub entities_salvaged: u64,
    pub damaged: Vec<DamagedPack>,
}

/// Why a pack fails its checks, or its sound blocks' locations.
fn read_sound_pack(
    repo: &Repository,
    bytes: &[u8],
    id: &PackId,
) -> std::result::Result<(pack::Toc, Vec<(crate::ids::EntityHash, Location)>), String> {
    if repo.pack_id_of(bytes) != *id {
        return Err(repo.id_mismatch().into());
    }
    let keys = repo.keys().map(|k| &**k);
    let toc = pack::parse_toc(keys, bytes, &id.to_hex()).map_err(|e| e.to_string())?;
    let mut locations = Vec::new();
    for (off, clen, raw, lens) in &toc.blocks {
        let data = bytes.get(*off as usize..(*off as usize).saturating_add(*clen as usize));
        let block = data.and_then(|d| pack::decode_block(keys, d, *raw));
        let Some(bodies) = block.as_deref().and_then(|b| pack::Toc::bodies(lens, b)) else {
            return Err(format!("block at {off} is damaged"));
        };
        let mut at = 0u32;
        for b in bodies {
            let loc = Location::new(*id, (*off, *clen, *raw), (at, b.len() as u32));
            locations.push((repo.body_id(b), loc));
            at += b.len() as u32;
        }
    }
    Ok((toc, locations))
}

/// Rebuild the index from the packs alone: every pack's table of contents
/// delimits its bodies, and each body is re-hashed. A damaged pack is not
/// skipped: every body that can still be recovered from it is indexed
/// where it lies ([`pack::salvage`]), after the sound packs, so a body
/// stored twice is found in its sound copy. The rebuilt index therefore
/// holds every body that reads back, whatever the old one held. Takes the
/// exclusive lock; the new index replaces the old one atomically.
pub fn rebuild_index(repo: &Repository, progress: &dyn Progress) -> Result<RebuildReport> {
    repo.check_writable()?;
    let _lock = repo.lock_exclusive()?;
    let tmp = crate::repo::fsutil::temp_path(&repo.tmp_dir(), "index");
    let result = (|| -> Result<RebuildReport> {
        Index::create(&tmp)?;
        let index = Index::open(&tmp, true)?.sealed(repo.keys().cloned());
        let packs = packs_on_disk(repo)?;
        progress.phase("rebuilding index", Some(packs.len() as u64));
        let mut report = RebuildReport::default();
        let mut damaged: Vec<(PackId, String)> = Vec::new();
        for id in packs {
            let path = repo.local_pack(&id)?;
            let bytes = fs::read(&path).map_err(Error::io("reading", &path))?;
            match read_sound_pack(repo, &bytes, &id) {
                Ok((toc, mut locations)) => {
                    locations.sort_unstable_by_key(|a| a.0);
                    let raw_bytes: u64 = toc.blocks.iter().map(|b| b.2 as u64).sum();
                    index.add_pack(
                        &id,
                        &toc.namespace,
                        &toc.kind,
                        bytes.len() as u64,
                        raw_bytes,
                        &locations,
                    )?;
                    report.packs += 1;
                    report.entities += locations.len() as u64;
                }
                Err(why) => damaged.push((id, why)),
            }
            progress.advance(1);
        }
        for (id, why) in damaged {
            let path = repo.local_pack(&id)?;
            let bytes = fs::read(&path).map_err(Error::io("reading", &path))?;
            let keys = repo.keys().map(|k| &**k);
            let s = pack::salvage(keys, &bytes, &id.to_hex());
            let mut locations = Vec::new();
            for (off, clen, raw, bodies) in &s.blocks {
                let Some(block) = bytes
                    .get(*off as usize..(*off as usize).saturating_add(*clen as usize))
                    .and_then(|d| pack::decode_block(keys, d, *raw))
                else {
                    continue;
                };
                for (at, len) in bodies {
                    let Some(body) = block.get(*at as usize..(*at + *len) as usize) else {
                        continue;
                    };
                    let loc = Location::new(id, (*off, *clen, *raw), (*at, *len));
                    locations.push((repo.body_id(body), loc));
                }
            }
            if !locations.is_empty() {
                locations.sort_unstable_by_key(|a| a.0);
                index.add_pack(
                    &id,
                    &s.namespace,
                    &s.kind,
                    bytes.len() as u64,
                    s.raw_bytes,
                    &locations,
                )?;
                report.packs += 1;
                report.entities += locations.len() as u64;
                report.entities_salvaged += locations.len() as u64;
            }
            report.damaged.push(DamagedPack {
                pack: id.to_hex(),
                why,
                had_toc: s.had_toc,
                blocks_salvaged: s.blocks.len() as u64,
                entities_salvaged: locations.len() as u64,
            });
        }
        progress.done();
        Ok(report)
    })();
    match result {
        Ok(r) => {
            crate::repo::fsutil::commit_file(&tmp, &repo.index_path())?;
            Ok(r)
        }
        Err(e) => {
            let _ = fs::remove_file(&tmp);
            Err(e)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn snap(n: u8, parent: Option<u8>, keyframe: bool) -> SnapshotInfo {
        SnapshotInfo {
            id: SnapshotId::from([n; 32]),
            logical: SnapshotId::from([n; 32]),
            name: format!("s{n}"),
            time_us: n as i64,
            source: "jsonl:x".into(),
            kinds_filter: String::new(),
            parent: parent.map(|p| SnapshotId::from([p; 32])),
            depth: 0,
            keyframe,
            entities: 0,
            raw_bytes: 0,
            bytes_added: 0,
            packs_added: 0,
            tool: String::new(),
            manifest_bytes: 0,
            replaces: vec![],
            tags: vec![],
        }
    }

    #[test]
    fn chains_break_at_the_first_missing_or_damaged_manifest() {
        // 1 (keyframe) ← 2 ← 3 ← 4; 6 names a parent 5 that is missing.
        let infos = vec![
            snap(1, None, true),
            snap(2, Some(1), false),
            snap(3, Some(2), false),
            snap(4, Some(3), false),
            snap(6, Some(5), false),
        ];
        let by_id: HashMap<SnapshotId, &SnapshotInfo> = infos.iter().map(|i| (i.id, i)).collect();
        let id = |n: u8| SnapshotId::from([n; 32]);
        let same = |p: SnapshotId| p;
        let none = HashSet::new();
        let link = |i: usize, damaged: &HashSet<SnapshotId>| {
            broken_link(&infos[i], infos.len(), &by_id, damaged, &same)
        };
        assert_eq!(link(3, &none), None);
        assert_eq!(link(0, &none), None);
        assert_eq!(link(4, &none), Some(id(5)));
        let two: HashSet<SnapshotId> = [id(2)].into();
        assert_eq!(link(3, &two), Some(id(2)));
        assert_eq!(
            link(1, &two),
            None,
            "a damaged manifest is not its own broken link"
        );
        // check_chains reports the damaged manifest against everything
        // built on it, and the broken chain against its snapshot.
        let mut report = CheckReport::default();
        check_chains(&infos, vec![(id(2), "s2: damaged".into())], &mut report);
        let damaged = report
            .problems
            .iter()
            .find(|p| p.problem == "s2: damaged")
            .unwrap();
        assert_eq!(damaged.affects.len(), 3, "{:?}", damaged.affects);
        assert!(report.unreadable.contains_key(&id(6)));
        assert!(report.unreadable.contains_key(&id(4)));
    }
}
