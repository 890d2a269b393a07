//! `repair snapshots`: rewrite every snapshot whose state needs a body the
//! repository has lost, without the entities whose bodies are gone, so
//! that what is left reads back and `check` passes (restic's `repair
//! snapshots`). Plan, then execute: [`plan`] decides from `check`'s
//! findings and is what `--dry-run` prints; [`execute`] writes.
//!
//! A repaired snapshot keeps its original's name, time, source and
//! `--kinds`. Without `forget` the original stays, and the repair is a
//! delta on top of it (the lost keys removed; a keyframe when the chain
//! would grow past the interval), which orders after the original
//! (`manifest::same_time_generation`), so the name, `latest` and the next
//! snapshot's parent resolve to the repair. With `forget` the repair is a
//! keyframe that *replaces* the original, as `forget` writes them
//! (docs/format.md `replaces`): children of the original reach it through
//! their unchanged parent pointer. A child whose state still needs a lost
//! body is repaired itself; a child that does not has overwritten or
//! removed every such key, so its state reads the same over the repair.
//! Every repair is published before any original is deleted, newest first.
//!
//! A snapshot whose manifest (or one in its chain) is damaged cannot be
//! repaired by dropping entities; the plan lists it and nothing is done
//! for it. This module never prints.

use std::collections::{BTreeMap, HashMap};

use serde::Serialize;

use super::check::{self, Cause};
use crate::error::Result;
use crate::ids::{EntityHash, SnapshotId};
use crate::progress::Progress;
use crate::repo::manifest::{
    self, Chain, KindInfo, ManifestWriter, NameVerdict, NewSnapshot, Op, Published, SnapshotInfo,
};
use crate::repo::{fsutil, Repository};

#[derive(Debug, Clone, Default)]
pub struct RepairOptions {
    pub dry_run: bool,
    /// Replace the damaged snapshots instead of keeping them beside their
    /// repairs.
    pub forget: bool,
    /// Read every pack first (as `check --read-data`), so bodies lost
    /// inside packs the index still lists are found too.
    pub read_data: bool,
}

/// Entities dropped from one kind of a snapshot.
#[derive(Debug, Clone, Serialize)]
pub struct KindRepair {
    pub kind: String,
    pub dropped: u64,
}

#[derive(Debug, Clone, Serialize)]
pub struct SnapshotRepair {
    pub id: String,
    pub name: String,
    pub time: String,
    pub dropped: u64,
    pub kinds: Vec<KindRepair>,
    /// The repaired snapshot's id (absent in a dry run): `id` itself with
    /// `--forget` (the repair replaces the original), else a new one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub new_id: Option<String>,
}

/// A snapshot that cannot be repaired by dropping entities.
#[derive(Debug, Clone, Serialize)]
pub struct Unrepairable {
    pub id: String,
    pub name: String,
    pub why: String,
}

/// `kindsnap repair snapshots --json`. Documented in docs/retention.md.
#[derive(Debug, Clone, Serialize)]
pub struct RepairReport {
    pub dry_run: bool,
    pub forget: bool,
    /// Distinct entity bodies the repository has lost.
    pub lost_entities: u64,
    /// Oldest first.
    pub repaired: Vec<SnapshotRepair>,
    pub cannot: Vec<Unrepairable>,
    /// Original manifests deleted (with `forget`).
    pub removed: u64,
}

/// What [`execute`] will do.
pub struct RepairPlan {
    pub report: RepairReport,
    todo: Vec<SnapshotInfo>,
    lost: HashMap<EntityHash, Cause>,
    forget: bool,
}

pub fn repair_snapshots(
    repo: &mut Repository,
    opts: &RepairOptions,
    progress: &dyn Progress,
) -> Result<RepairReport> {
    let lock = repo.lock_to_delete(opts.dry_run)?;
    let plan = plan(repo, opts, progress)?;
    if opts.dry_run {
        return Ok(plan.report);
    }
    let report = execute(repo, plan, progress);
    drop(lock);
    report
}

/// Decide which snapshots lose which entities. The caller holds a lock.
pub fn plan(
    repo: &Repository,
    opts: &RepairOptions,
    progress: &dyn Progress,
) -> Result<RepairPlan> {
    let checked = check::check_locked(repo, opts.read_data, progress)?;
    let (infos, _) = manifest::list(repo)?;
    let mut report = RepairReport {
        dry_run: opts.dry_run,
        forget: opts.forget,
        lost_entities: checked.lost.len() as u64,
        repaired: Vec::new(),
        cannot: Vec::new(),
        removed: 0,
    };
    for (id, why) in &checked.unreadable {
        let name = infos
            .iter()
            .find(|i| i.id == *id)
            .map(|i| i.name.clone())
            .unwrap_or_default();
        report.cannot.push(Unrepairable {
            id: id.to_hex(),
            name,
            why: why.clone(),
        });
    }
    // An original kept beside its repair (same name and time, the original
    // as parent) is not repaired again.
    let repaired_before: std::collections::HashSet<SnapshotId> = infos
        .iter()
        .filter_map(|i| {
            let p = infos.iter().find(|p| Some(p.id) == i.parent)?;
            (p.time_us == i.time_us && p.name == i.name).then_some(p.id)
        })
        .collect();
    let mut todo = Vec::new();
    if !checked.lost.is_empty() {
        progress.phase("planning repairs", Some(infos.len() as u64));
        for info in &infos {
            progress.advance(1);
            if checked.unreadable.contains_key(&info.id) || repaired_before.contains(&info.id) {
                continue;
            }
            let losses = match check::state_losses(repo, &info.id, &checked.lost) {
                Ok(l) => l,
                Err(e) => {
                    report.cannot.push(Unrepairable {
                        id: info.logical.to_hex(),
                        name: info.name.clone(),
                        why: e.to_string(),
                    });
                    continue;
                }
            };
            let mut kinds: BTreeMap<String, u64> = BTreeMap::new();
            for per_kind in losses.values() {
                for (k, n) in per_kind {
                    *kinds.entry(k.clone()).or_default() += n;
                }
            }
            if kinds.is_empty() {
                continue;
            }
            report.repaired.push(SnapshotRepair {
                id: info.logical.to_hex(),
                name: info.name.clone(),
                time: crate::model::json::format_timestamp(info.time_us),
                dropped: kinds.values().sum(),
                kinds: kinds
                    .into_iter()
                    .map(|(kind, dropped)| KindRepair { kind, dropped })
                    .collect(),
                new_id: None,
            });
            todo.push(info.clone());
        }
        progress.done();
    }
    Ok(RepairPlan {
        report,
        todo,
        lost: checked.lost,
        forget: opts.forget,
    })
}

/// Write the repaired snapshots, then (with `forget`) delete the originals.
pub fn execute(
    repo: &mut Repository,
    plan: RepairPlan,
    progress: &dyn Progress,
) -> Result<RepairReport> {
    let RepairPlan {
        mut report,
        todo,
        lost,
        forget,
    } = plan;
    if todo.is_empty() {
        return Ok(report);
    }
    if forget {
        // A manifest that replaces another needs format 2.
        repo.upgrade_format()?;
    }
    progress.phase("repairing snapshots", Some(todo.len() as u64));
    let mut new_ids: HashMap<SnapshotId, SnapshotId> = HashMap::new();
    for info in &todo {
        let id = rewrite(repo, info, &lost, forget)?;
        // With `forget` the repair replaces the original and keeps its
        // (logical) id; otherwise it is a new snapshot with an id of its own.
        new_ids.insert(info.logical, if forget { info.logical } else { id });
        progress.advance(1);
    }
    progress.done();
    for r in &mut report.repaired {
        if let Some(id) = SnapshotId::from_hex(&r.id) {
            r.new_id = new_ids.get(&id).map(|n| n.to_hex());
        }
    }
    if forget {
        let mut doomed: Vec<&SnapshotInfo> = todo.iter().collect();
        doomed.sort_by(|a, b| b.time_us.cmp(&a.time_us).then(b.id.cmp(&a.id)));
        for i in doomed {
            if repo.remove_manifest(&i.id)? {
                report.removed += 1;
            }
            for r in &i.replaces {
                repo.remove_manifest(r)?;
            }
        }
        fsutil::sync_dir(&repo.snapshots_dir())?;
    }
    Ok(report)
}

/// Publish `k`'s state without the lost entities. Returns the new id.
fn rewrite(
    repo: &Repository,
    k: &SnapshotInfo,
    lost: &HashMap<EntityHash, Cause>,
    forget: bool,
) -> Result<SnapshotId> {
    let chain = Chain::open(repo, &k.id)?;
    let keyframe = forget || k.depth + 1 >= repo.config.keyframe_interval.max(1);
    let depth = if keyframe { 0 } else { k.depth + 1 };
    let mut writer = ManifestWriter::create(repo)?;
    let (mut entities, mut raw_bytes) = (0u64, 0u64);
    for info in chain.head().kinds()? {
        let kid = writer.add_kind(&info.namespace, &info.kind)?;
        let mut digest = blake3::Hasher::new();
        let (mut n, mut raw, mut removed) = (0u64, 0u64, 0u64);
        let mut st = chain.state(&info.namespace, &info.kind)?;
        while let Some(e) = st.next_entry()? {
            if lost.contains_key(&e.hash) {
                removed += 1;
                if !forget {
                    writer.put_change(kid, &e.key, Op::Removed, None, 0)?;
                }
                continue;
            }
            digest.update(&(e.key.len() as u32).to_le_bytes());
            digest.update(&e.key);
            digest.update(e.hash.as_bytes());
            n += 1;
            raw += e.size;
            if keyframe {
                writer.put_entry(kid, &e.key, &e.hash, e.size)?;
            }
        }
        entities += n;
        raw_bytes += raw;
        writer.set_kind_totals(KindInfo {
            entities: n,
            raw_bytes: raw,
            digest: *digest.finalize().as_bytes(),
            added: 0,
            changed: 0,
            removed: if forget { 0 } else { removed },
            bytes_added: 0,
            ..info
        })?;
    }
    let mut replaces = Vec::new();
    if forget {
        replaces.push(k.id);
        replaces.extend(k.replaces.iter().copied());
    }
    let meta = NewSnapshot {
        name: k.name.clone(),
        time_us: k.time_us,
        source: k.source.clone(),
        kinds_filter: k.kinds_filter.clone(),
        parent: if forget { None } else { Some(k.id) },
        depth,
        keyframe,
        entities,
        raw_bytes,
        bytes_added: 0,
        packs_added: 0,
        replaces,
        tags: k.tags.clone(),
    };
    drop(chain);
    match writer.publish(repo, &meta, |_, _| Ok(NameVerdict::Publish))? {
        Published::New { id, .. } | Published::Existing(id) => Ok(id),
    }
}
