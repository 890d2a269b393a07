//! Verify a repository: every manifest matches its id and is a sound SQLite
//! file, every delta's parent exists, every referenced entity is indexed in
//! a pack that exists; with `read_data`, every pack is re-hashed and every
//! entity body decompressed and re-hashed. Damage is reported with the
//! snapshots and kinds it affects. Check never changes the repository.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::fs;
use std::io::Read;

use crate::error::{Error, Result};
use crate::ids::{EntityHash, PackId, SnapshotId};
use crate::model::codec;
use crate::progress::Progress;
use crate::repo::index::Index;
use crate::repo::manifest::{self, Manifest, SnapshotInfo};
use crate::repo::pack;
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
}

fn hash_file(path: &std::path::Path) -> Result<[u8; 32]> {
    let mut f = fs::File::open(path).map_err(Error::io("opening", path))?;
    let mut h = blake3::Hasher::new();
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = f.read(&mut buf).map_err(Error::io("reading", path))?;
        if n == 0 {
            break;
        }
        h.update(&buf[..n]);
    }
    Ok(*h.finalize().as_bytes())
}

fn snap_label(i: &SnapshotInfo) -> String {
    format!("snapshot {} ({})", i.name, i.id.short())
}

pub fn check(repo: &Repository, read_data: bool, progress: &dyn Progress) -> Result<CheckReport> {
    let _lock = repo.lock_shared()?;
    let mut report = CheckReport::default();
    let (infos, bad) = manifest::list(repo)?;
    report.snapshots = (infos.len() + bad.len()) as u64;
    let mut damaged_snaps: HashSet<SnapshotId> = HashSet::new();
    for (id, err) in bad {
        report.problems.push(Problem {
            problem: format!("snapshot {}: unreadable manifest: {err}", id.short()),
            affects: vec![],
        });
        damaged_snaps.insert(id);
    }

    // Manifests: id = hash of bytes, SQLite sound.
    progress.phase("checking snapshots", Some(infos.len() as u64));
    let mut good: Vec<SnapshotInfo> = Vec::new();
    for info in &infos {
        let path = repo.snapshot_path(&info.id);
        let actual = hash_file(&path)?;
        if actual != *info.id.as_bytes() {
            report.problems.push(Problem {
                problem: format!(
                    "{}: manifest content does not match its id (damaged file {})",
                    snap_label(info),
                    path.display()
                ),
                affects: vec![],
            });
            damaged_snaps.insert(info.id);
        } else {
            match Manifest::open(repo, &info.id).and_then(|m| m.quick_check()) {
                Ok(None) => good.push(info.clone()),
                Ok(Some(msg)) => {
                    report.problems.push(Problem {
                        problem: format!("{}: manifest database damaged: {msg}", snap_label(info)),
                        affects: vec![],
                    });
                    damaged_snaps.insert(info.id);
                }
                Err(e) => {
                    report.problems.push(Problem {
                        problem: format!("{}: {e}", snap_label(info)),
                        affects: vec![],
                    });
                    damaged_snaps.insert(info.id);
                }
            }
        }
        progress.advance(1);
    }
    progress.done();
    // Chains: a delta needs every manifest back to its keyframe.
    let by_id: HashMap<SnapshotId, &SnapshotInfo> = infos.iter().map(|i| (i.id, i)).collect();
    let mut broken_chain = Vec::new();
    for info in &infos {
        let mut cur = info;
        let mut steps = 0;
        while !cur.keyframe {
            let Some(p) = cur.parent else { break };
            match by_id.get(&p) {
                Some(pi) if !damaged_snaps.contains(&p) => cur = pi,
                _ => {
                    broken_chain.push((info.clone(), p));
                    break;
                }
            }
            steps += 1;
            if steps > infos.len() {
                break;
            }
        }
    }
    for (info, missing) in broken_chain {
        let why = if by_id.contains_key(&missing) {
            "is damaged"
        } else {
            "is missing"
        };
        report.problems.push(Problem {
            problem: format!(
                "{}: depends on snapshot {} which {why}",
                snap_label(&info),
                missing.short()
            ),
            affects: vec![snap_label(&info)],
        });
    }
    // The problems about damaged manifests name what depends on them.
    for p in report.problems.iter_mut() {
        if p.affects.is_empty() {
            if let Some(id) = damaged_snaps
                .iter()
                .find(|id| p.problem.contains(&id.short()))
            {
                p.affects = infos
                    .iter()
                    .filter(|i| depends_on(i, id, &by_id))
                    .map(snap_label)
                    .collect();
                if p.affects.is_empty() {
                    p.affects.push(format!("snapshot {}", id.short()));
                }
            }
        }
    }

    // Index and packs.
    let index = Index::open(&repo.index_path(), false)?;
    if let Some(msg) = index.quick_check()? {
        report.problems.push(Problem {
            problem: format!(
                "index damaged: {msg}; `kindsnap check --rebuild-index` rebuilds it from the packs"
            ),
            affects: vec![],
        });
    }
    let indexed: Vec<(PackId, String, String, u64)> = index.packs()?;
    let on_disk = packs_on_disk(repo)?;
    report.packs = on_disk.len() as u64;
    let mut missing_packs = HashSet::new();
    for (id, _, _, _) in &indexed {
        if !on_disk.contains(id) {
            missing_packs.insert(*id);
        }
    }
    let indexed_set: HashSet<PackId> = indexed.iter().map(|p| p.0).collect();
    let unindexed = on_disk.iter().filter(|p| !indexed_set.contains(p)).count();
    if unindexed > 0 {
        report.notes.push(format!("{unindexed} pack(s) not in the index (left by an interrupted snapshot; `kindsnap prune` removes them)"));
    }

    // Damaged entity hashes, found by reading data.
    let mut damaged_entities: HashMap<EntityHash, String> = HashMap::new();
    for id in &missing_packs {
        for h in index.hashes_in_pack(id)? {
            damaged_entities.insert(h, format!("pack {} is missing", id.short()));
        }
    }
    if read_data {
        progress.phase("reading packs", Some(on_disk.len() as u64));
        for id in &on_disk {
            let path = repo.pack_path(id);
            let bytes = fs::read(&path).map_err(Error::io("reading", &path))?;
            report.bytes_read += bytes.len() as u64;
            let mut why = None;
            let damaged_before = damaged_entities.len();
            if PackId::of(&bytes) != *id {
                why = Some("content does not match its id".to_string());
            }
            match pack::parse_toc(&bytes, &id.to_hex()) {
                Ok(toc) => {
                    let mut blocks = Vec::with_capacity(toc.blocks.len());
                    for (off, clen, raw) in &toc.blocks {
                        let (s, e) = (*off as usize, *off as usize + *clen as usize);
                        blocks.push(
                            bytes
                                .get(s..e)
                                .and_then(|b| zstd::bulk::decompress(b, *raw as usize).ok()),
                        );
                    }
                    for (h, block, off, len) in &toc.entries {
                        let Some(h) = EntityHash::from_slice(h) else {
                            continue;
                        };
                        let body = blocks
                            .get(*block as usize)
                            .and_then(|b| b.as_ref())
                            .and_then(|b| b.get(*off as usize..*off as usize + *len as usize));
                        report.entities_read += 1;
                        match body {
                            Some(b) if codec::hash(b) == h => {}
                            Some(_) => {
                                damaged_entities.insert(
                                    h,
                                    format!(
                                        "pack {}: entity {} does not match its hash",
                                        id.short(),
                                        h.short()
                                    ),
                                );
                            }
                            None => {
                                damaged_entities.insert(
                                    h,
                                    format!(
                                        "pack {}: entity {} cannot be read",
                                        id.short(),
                                        h.short()
                                    ),
                                );
                            }
                        }
                    }
                    if why.is_some() && damaged_entities.len() == damaged_before {
                        // The damage is in framing bytes only; bodies are intact.
                        report.notes.push(format!(
                            "pack {}: {} but every entity in it verifies",
                            id.short(),
                            why.take().unwrap_or_default()
                        ));
                    }
                }
                Err(e) => {
                    for h in index.hashes_in_pack(id)? {
                        damaged_entities.insert(h, format!("pack {}: {e}", id.short()));
                    }
                }
            }
            if let Some(why) = why {
                report.problems.push(Problem {
                    problem: format!("pack {} ({}): {why}", id.short(), path.display()),
                    affects: vec![],
                });
            }
            progress.advance(1);
        }
        progress.done();
    }

    // Every hash referenced by a sound manifest must be indexed, in a pack
    // that exists and (with read_data) reads back.
    progress.phase("checking references", Some(good.len() as u64));
    let mut affected: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for info in &good {
        let m = Manifest::open(repo, &info.id)?;
        let label = snap_label(info);
        m.referenced_hashes(&mut |ns, kind, h| {
            let why = if let Some(w) = damaged_entities.get(&h) {
                Some(w.clone())
            } else {
                match index.lookup(&h)? {
                    None => Some(format!("entity {} is not in the index", h.short())),
                    Some(loc)
                        if missing_packs.contains(&loc.pack) || !on_disk.contains(&loc.pack) =>
                    {
                        Some(format!("pack {} is missing", loc.pack.short()))
                    }
                    Some(_) => None,
                }
            };
            if let Some(why) = why {
                let k = if ns.is_empty() {
                    kind.to_string()
                } else {
                    format!("{ns}/{kind}")
                };
                affected
                    .entry(why)
                    .or_default()
                    .insert(format!("{label} kind {k}"));
            }
            Ok(())
        })?;
        progress.advance(1);
    }
    progress.done();
    // Snapshots whose chain contains an affected manifest are affected too;
    // keep the report short by naming the snapshots that reference the
    // damaged data directly.
    for (why, affects) in affected {
        report.problems.push(Problem {
            problem: why,
            affects: affects.into_iter().collect(),
        });
    }
    Ok(report)
}

fn depends_on(
    info: &SnapshotInfo,
    target: &SnapshotId,
    by_id: &HashMap<SnapshotId, &SnapshotInfo>,
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
        let Some(p) = cur.parent else { return false };
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
    let mut out = BTreeSet::new();
    let root = repo.root().join("packs");
    for sub in fs::read_dir(&root).map_err(Error::io("reading", &root))? {
        let sub = sub.map_err(Error::io("reading", &root))?;
        if !sub.path().is_dir() {
            continue;
        }
        for f in fs::read_dir(sub.path()).map_err(Error::io("reading", sub.path()))? {
            let f = f.map_err(Error::io("reading", sub.path()))?;
            if let Some(id) = PackId::from_hex(&f.file_name().to_string_lossy()) {
                out.insert(id);
            }
        }
    }
    Ok(out)
}
