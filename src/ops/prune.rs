//! `prune`: delete the pack data no snapshot needs, and repack packs that
//! are mostly unused.
//!
//! 1. Under the exclusive repository lock (no snapshot runs meanwhile; a
//!    snapshot started during prune waits for it, and prune waits for
//!    running snapshots), refuse unless the repository passes `check`'s
//!    manifest and reference checks (or `force`).
//! 2. Remove manifests an interrupted `forget` left replaced.
//! 3. The live set: every entity hash any manifest references, streamed
//!    into a scratch SQLite table in `tmp/` (memory stays at SQLite's page
//!    cache whatever the repository size).
//! 4. Per pack, live bytes against all bytes (one SQL join of the index
//!    with the live table). Packs with nothing live are deleted; packs whose
//!    unused fraction exceeds `max_unused` are repacked: their live bodies
//!    (re-hashed as they are read) go into new packs of the same kind.
//!    Packs on disk that the index does not know (left by a killed
//!    snapshot or prune) are deleted.
//! 5. Per kind, in this order: new packs durable (temp → fsync → rename),
//!    then one index transaction that points the moved bodies at the new
//!    packs and drops the old packs, then the old pack files deleted. A
//!    kill at any point leaves a repository that `check --read-data`
//!    passes: before the index commits, the new packs are merely
//!    unindexed; after it, the old ones are. The next prune removes either.
//!
//! Never prints; returns a report.

use std::collections::{BTreeMap, HashSet};
use std::fs::{self, File};
use std::path::PathBuf;

use rusqlite::{params, Connection};
use serde::Serialize;

use crate::error::{Error, Result};
use crate::ids::PackId;
use crate::interrupt::Cancel;

use crate::progress::Progress;
use crate::repo::index::{Index, PackUsage};
use crate::repo::manifest::{self, Manifest};
use crate::repo::pack::{read_block, PackWriter};
use crate::repo::{fsutil, Repository};

#[derive(Debug, Clone)]
pub struct PruneOptions {
    pub dry_run: bool,
    /// Repack a pack when more than this fraction of its bytes is unused
    /// (0.0–1.0).
    pub max_unused: f64,
    /// Run even when `check` finds problems.
    pub force: bool,
    /// Stops the prune at a safe point (before anything is deleted, or
    /// between repacked packs).
    pub cancel: crate::interrupt::Cancel,
}

impl Default for PruneOptions {
    fn default() -> Self {
        PruneOptions {
            dry_run: false,
            max_unused: 0.05,
            force: false,
            cancel: Default::default(),
        }
    }
}

/// `kindsnap prune --json`. Documented in docs/retention.md.
#[derive(Debug, Clone, Default, Serialize)]
pub struct PruneReport {
    pub dry_run: bool,
    pub snapshots: u64,
    pub live_entities: u64,
    pub packs_before: u64,
    /// Packs with no live body: deleted.
    pub packs_deleted: u64,
    /// Packs above the unused limit: their live bodies moved, then deleted.
    pub packs_repacked: u64,
    /// New packs written by the repack.
    pub packs_written: u64,
    /// Packs on disk the index did not know: deleted.
    pub unindexed_deleted: u64,
    /// Bodies copied into new packs.
    pub entities_moved: u64,
    /// Manifests a stopped forget left behind, removed.
    pub leftover_manifests_removed: u64,
    /// Repository bytes (packs + index + manifests) before and after; in a
    /// dry run `bytes_after` is an estimate.
    pub bytes_before: u64,
    pub bytes_after: u64,
    pub bytes_freed: u64,
    /// Unused bytes left in packs below the limit.
    pub unused_bytes_kept: u64,
}

/// The scratch database of live hashes; removed when dropped.
struct LiveSet {
    conn: Option<Connection>,
    path: PathBuf,
}

impl Drop for LiveSet {
    fn drop(&mut self) {
        self.conn.take();
        let _ = fs::remove_file(&self.path);
    }
}

impl LiveSet {
    /// In the repository's scratch directory, or, when its disk is full,
    /// in the system's temp directory: prune must run on a full disk.
    fn build(
        repo: &Repository,
        cancel: &Cancel,
        progress: &dyn Progress,
    ) -> Result<(LiveSet, u64, u64)> {
        match Self::build_in(&repo.scratch_dir(), repo, cancel, progress) {
            Err(e) if e.is_no_space() && std::env::temp_dir() != repo.scratch_dir() => {
                Self::build_in(&std::env::temp_dir(), repo, cancel, progress)
            }
            other => other,
        }
    }

    fn build_in(
        dir: &std::path::Path,
        repo: &Repository,
        cancel: &Cancel,
        progress: &dyn Progress,
    ) -> Result<(LiveSet, u64, u64)> {
        let path = fsutil::temp_path(dir, "prune-live");
        // Private: it may be in the system's temp directory.
        fsutil::private_file(&path, true).map_err(Error::io("creating", &path))?;
        let conn = Connection::open(&path).map_err(Error::sql(&path))?;
        let setup = || -> rusqlite::Result<()> {
            conn.pragma_update(None, "journal_mode", "OFF")?;
            conn.pragma_update(None, "synchronous", "OFF")?;
            conn.pragma_update(None, "cache_size", -16_000)?;
            conn.execute_batch("CREATE TABLE live(hash BLOB PRIMARY KEY) WITHOUT ROWID; BEGIN;")
        };
        setup().map_err(Error::sql(&path))?;
        let set = LiveSet {
            conn: Some(conn),
            path,
        };
        let (infos, bad) = manifest::list_all(repo)?;
        if let Some((id, e)) = bad.into_iter().next() {
            return Err(Error::DamagedSnapshot {
                id: id.to_hex(),
                why: format!("cannot be read ({e}); prune needs every manifest"),
            });
        }
        progress.phase("finding live data", Some(infos.len() as u64));
        {
            let conn = set
                .conn
                .as_ref()
                .ok_or(Error::Internal("live set closed"))?;
            let mut st = conn
                .prepare("INSERT OR IGNORE INTO live(hash) VALUES (?1)")
                .map_err(Error::sql(&set.path))?;
            for info in &infos {
                let m = Manifest::open(repo, &info.id)?;
                m.referenced_hashes(&mut |_, _, h| {
                    st.execute(params![&h.as_bytes()[..]])
                        .map_err(Error::sql(&set.path))?;
                    Ok(())
                })?;
                progress.advance(1);
                cancel.check()?;
            }
            conn.execute_batch("COMMIT")
                .map_err(Error::sql(&set.path))?;
        }
        progress.done();
        let n: u64 = set
            .conn
            .as_ref()
            .ok_or(Error::Internal("live set closed"))?
            .query_row("SELECT count(*) FROM live", [], |r| r.get(0))
            .map_err(Error::sql(&set.path))?;
        Ok((set, n, infos.len() as u64))
    }
}

fn remove_pack_file(repo: &Repository, id: &PackId) -> Result<()> {
    repo.remove_pack(id)
}

pub fn prune(
    repo: &Repository,
    opts: &PruneOptions,
    progress: &dyn Progress,
) -> Result<PruneReport> {
    let _lock = repo.lock_to_delete(opts.dry_run)?;
    let mut report = PruneReport {
        dry_run: opts.dry_run,
        bytes_before: repo.stored_bytes()?,
        ..Default::default()
    };
    // 1. Only a sound repository may lose data.
    refuse_if_damaged(repo, opts, progress)?;
    if !opts.dry_run {
        repo.clean_stale_temps();
        // 2. What an interrupted forget left behind.
        report.leftover_manifests_removed = super::forget::remove_replaced(repo)?;
    }
    // 3. The live set.
    let (live, live_n, snaps) = LiveSet::build(repo, &opts.cancel, progress)?;
    report.live_entities = live_n;
    report.snapshots = snaps;
    let index = repo.open_index(!opts.dry_run)?;
    index.attach_live(&live.path)?;
    // 4. Decide; a dry run stops here.
    let usage = index.pack_usage()?;
    let plan = PrunePlan::decide(repo, &usage, opts.max_unused, &mut report)?;
    if opts.dry_run {
        report.bytes_freed = plan.freed_estimate;
        report.bytes_after = report.bytes_before.saturating_sub(plan.freed_estimate);
        return Ok(report);
    }
    // 5. Act.
    plan.execute(repo, &index, &mut report, &opts.cancel, progress)?;
    drop(index);
    drop(live);
    report.bytes_after = repo.stored_bytes()?;
    report.bytes_freed = report.bytes_before.saturating_sub(report.bytes_after);
    Ok(report)
}

/// Prune deletes data: it refuses a repository `check` finds problems in,
/// unless forced.
fn refuse_if_damaged(
    repo: &Repository,
    opts: &PruneOptions,
    progress: &dyn Progress,
) -> Result<()> {
    let checked = super::check::check_locked(repo, false, progress)?;
    if !checked.problems.is_empty() && !opts.force {
        return Err(Error::BadArgument(format!(
            "the repository has {} (`kindsnap check` lists them: {}); prune deletes data and refuses to run on a damaged repository; repair it, or pass --force to prune what is known to be unused anyway",
            if checked.problems.len() == 1 {
                "1 problem".to_string()
            } else {
                format!("{} problems", checked.problems.len())
            },
            checked.problems[0].problem
        )));
    }
    Ok(())
}

/// What prune will do: a value the dry run reports and the tests inspect.
#[derive(Debug, Default)]
struct PrunePlan<'u> {
    /// Packs on disk the index does not know.
    unindexed: Vec<PackId>,
    /// Indexed packs with nothing live.
    dead: Vec<&'u PackUsage>,
    /// Packs mostly unused, by (namespace, kind).
    repack: BTreeMap<(String, String), Vec<&'u PackUsage>>,
    freed_estimate: u64,
}

impl<'u> PrunePlan<'u> {
    /// Packs with nothing live are deleted; packs whose unused fraction
    /// exceeds `max_unused` are repacked; packs nobody indexes go. Fills
    /// the report's counts.
    fn decide(
        repo: &Repository,
        usage: &'u [PackUsage],
        max_unused: f64,
        report: &mut PruneReport,
    ) -> Result<PrunePlan<'u>> {
        let mut plan = PrunePlan::default();
        let indexed: HashSet<PackId> = usage.iter().map(|u| u.id).collect();
        let on_disk = super::check::packs_on_disk(repo)?;
        report.packs_before = on_disk.len() as u64;
        plan.unindexed = on_disk
            .iter()
            .filter(|p| !indexed.contains(p))
            .copied()
            .collect();
        for u in usage {
            if u.live == 0 {
                plan.dead.push(u);
                plan.freed_estimate += u.size;
                continue;
            }
            let unused = 1.0 - u.live_raw as f64 / u.raw_bytes.max(1) as f64;
            if unused > max_unused {
                plan.repack
                    .entry((u.namespace.clone(), u.kind.clone()))
                    .or_default()
                    .push(u);
                // The live part costs about its share of the compressed size.
                plan.freed_estimate += (u.size as f64 * unused) as u64;
            } else {
                report.unused_bytes_kept += (u.size as f64 * unused) as u64;
            }
        }
        for id in &plan.unindexed {
            plan.freed_estimate += fs::metadata(repo.pack_path(id))
                .map(|m| m.len())
                .unwrap_or(0);
        }
        report.packs_deleted = plan.dead.len() as u64;
        report.packs_repacked = plan.repack.values().map(|v| v.len() as u64).sum();
        report.unindexed_deleted = plan.unindexed.len() as u64;
        Ok(plan)
    }

    /// Unindexed packs first (no reader can reach them), then each kind's
    /// repack (new packs, index, old packs), then the dead packs (index,
    /// then files).
    fn execute(
        &self,
        repo: &Repository,
        index: &Index,
        report: &mut PruneReport,
        cancel: &Cancel,
        progress: &dyn Progress,
    ) -> Result<()> {
        for id in &self.unindexed {
            remove_pack_file(repo, id)?;
        }
        progress.phase("repacking", Some(report.packs_repacked));
        for ((ns, kind), packs) in &self.repack {
            repack_kind(repo, index, (ns, kind), packs, report, cancel, progress)?;
        }
        progress.done();
        self.delete_dead(repo, index)
    }

    fn delete_dead(&self, repo: &Repository, index: &Index) -> Result<()> {
        let (unindexed, repack) = (&self.unindexed, &self.repack);
        let dead = &self.dead;
        // Packs with nothing live: out of the index, then off the disk.
        let dead_ids: Vec<PackId> = dead.iter().map(|u| u.id).collect();
        index.replace_packs(&[], &dead_ids)?;
        if !unindexed.is_empty() || !dead_ids.is_empty() || !repack.is_empty() {
            repo.index_rewritten()?;
        }
        for id in &dead_ids {
            remove_pack_file(repo, id)?;
        }
        for sub in fs::read_dir(repo.root().join("packs"))
            .map_err(Error::io("reading", repo.root().join("packs")))?
            .flatten()
        {
            let p = sub.path();
            if p.is_dir() {
                // Empty fan-out directories go; full ones refuse, which is fine.
                let _ = fs::remove_dir(&p);
                let _ = fsutil::sync_dir(&p);
            }
        }
        fsutil::sync_dir(&repo.root().join("packs"))?;
        index.vacuum_if_sparse()?;
        Ok(())
    }
}

/// Repack one kind's mostly unused packs: their live bodies (re-hashed as
/// they are read) into new packs, one index transaction that points the
/// moved bodies at them and drops the old packs, then the old files.
fn repack_kind(
    repo: &Repository,
    index: &Index,
    (ns, kind): (&str, &str),
    packs: &[&PackUsage],
    report: &mut PruneReport,
    cancel: &Cancel,
    progress: &dyn Progress,
) -> Result<()> {
    let mut writer = PackWriter::new(repo, index, ns, kind)?.defer_indexing();
    for u in packs {
        let path = repo.local_pack(&u.id)?;
        let mut file = File::open(&path).map_err(Error::io("opening", &path))?;
        let mut block: Option<(u64, Vec<u8>)> = None;
        for (hash, loc) in index.live_in_pack(u.pid, u.id)? {
            if block
                .as_ref()
                .map(|(o, _)| *o != loc.block_off)
                .unwrap_or(true)
            {
                let data = read_block(
                    repo.keys().map(|k| &**k),
                    &mut file,
                    &path,
                    (loc.block_off, loc.block_len, loc.block_raw),
                )?;
                block = Some((loc.block_off, data));
            }
            let Some((_, data)) = &block else {
                return Err(Error::Internal("repack lost its block"));
            };
            let body = data
                .get(loc.off as usize..loc.off as usize + loc.len as usize)
                .ok_or_else(|| Error::DamagedPack {
                    pack: u.id.to_hex(),
                    why: format!("entity {} lies outside its block", hash.short()),
                })?;
            if repo.body_id(body) != hash {
                return Err(Error::DamagedPack {
                    pack: u.id.to_hex(),
                    why: format!("entity {} does not match its hash", hash.short()),
                });
            }
            writer.add_copy(hash, body)?;
            report.entities_moved += 1;
        }
        cancel.check()?;
        progress.advance(1);
    }
    writer.close()?;
    let new_packs = writer.take_deferred();
    report.packs_written += new_packs.len() as u64;
    drop(writer);
    let old: Vec<PackId> = packs.iter().map(|u| u.id).collect();
    index.replace_packs(&new_packs, &old)?;
    repo.index_rewritten()?;
    for id in &old {
        remove_pack_file(repo, id)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn usage(n: u8, kind: &str, raw: u64, live_raw: u64) -> PackUsage {
        PackUsage {
            pid: n as i64,
            id: PackId::from([n; 32]),
            namespace: String::new(),
            kind: kind.into(),
            size: 1000,
            raw_bytes: raw,
            entities: 10,
            live: if live_raw == 0 { 0 } else { 5 },
            live_raw,
        }
    }

    #[test]
    fn the_plan_deletes_dead_packs_and_repacks_mostly_unused_ones() {
        let dir = tempfile::tempdir().unwrap();
        let repo = Repository::init(&dir.path().join("r")).unwrap();
        let usage = vec![
            usage(1, "A", 4000, 0),    // dead
            usage(2, "A", 4000, 1000), // 75 % unused: repacked
            usage(3, "B", 4000, 3900), // 2.5 % unused: kept
            usage(4, "B", 4000, 100),  // repacked
        ];
        let mut report = PruneReport::default();
        let plan = PrunePlan::decide(&repo, &usage, 0.05, &mut report).unwrap();
        let ids = |v: &[&PackUsage]| v.iter().map(|u| u.pid).collect::<Vec<_>>();
        assert_eq!(ids(&plan.dead), [1]);
        assert_eq!(ids(&plan.repack[&(String::new(), "A".into())]), [2]);
        assert_eq!(ids(&plan.repack[&(String::new(), "B".into())]), [4]);
        assert!(plan.unindexed.is_empty());
        assert_eq!((report.packs_deleted, report.packs_repacked), (1, 2));
        // 1000 (dead) + 750 + 975 (the unused shares); pack 3's 25 kept.
        assert_eq!(plan.freed_estimate, 1000 + 750 + 975);
        assert_eq!(report.unused_bytes_kept, 25);
    }
}
