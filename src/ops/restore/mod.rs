//! Restore a snapshot into a target: kind by kind, entities in key order,
//! with keys rewritten for the target (project, namespace, `--keys uuid`),
//! an optional transform, `--exact`/`--clear`, `--with-references`, and a
//! journal that lets an interrupted restore resume where it stopped.
//!
//! Threads: a reader thread walks the snapshot and decompresses bodies (and
//! feeds the transform, if any); the caller's thread rewrites keys, hands
//! entities to the target and keeps the journal.
//!
//! The journal (`restores/<target>.db`, kept by `repo::journal`)
//! holds the arguments' fingerprint, each kind's last checkpointed key, and
//! for `--exact` the keys written. A checkpoint is committed only after the
//! target's `sync`, so a resumed run starts at or before the first entity
//! the target may lack; writes are upserts, so repeating a few is harmless.
//!
//! Phases: choose the kinds (`choose_kinds`, `--with-references` in
//! `read::select_references`), prepare the target, `--clear`, then the
//! pipeline (`read::read_snapshot` → `writer::RestoreWriter`), then
//! `--exact`'s removals and the finish.

mod read;
mod rewrite;
mod transform;
mod writer;

use std::collections::BTreeMap;
use std::sync::mpsc::sync_channel;

use serde::Serialize;

use crate::connector::sql::ddl::SchemaPolicy;
use crate::connector::{EntityTarget, KindOptions};
use crate::error::{Error, Result};
use crate::ids::SnapshotId;
use crate::progress::Progress;
use crate::repo::journal::RestoreJournal;
use crate::repo::keymap::KeyMap;
use crate::repo::manifest::{Chain, SnapshotInfo};
use crate::repo::Repository;
use rewrite::Rewriter;
use transform::Transform;
use writer::RestoreWriter;

/// How keys are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum KeyMode {
    /// Original ids and names; ids reserved afterwards.
    #[default]
    Keep,
    /// Numeric ids become deterministic uuid key names.
    Uuid,
}

/// What happens to entities already on the target.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum WriteMode {
    /// Write (upsert) the snapshot's entities; leave the others.
    #[default]
    Upsert,
    /// Afterwards the kinds hold exactly the snapshot's entities.
    Exact,
    /// Empty the kinds first.
    Clear,
}

#[derive(Debug, Clone, Default)]
pub struct RestoreOptions {
    pub kinds: Option<Vec<String>>,
    pub keys: KeyMode,
    pub mode: WriteMode,
    pub dry_run: bool,
    pub tolerate: bool,
    pub with_references: bool,
    /// `--map-project A=B`
    pub map_project: Vec<(String, String)>,
    /// `--map-namespace A=B`
    pub map_namespace: Vec<(String, String)>,
    pub kind_options: BTreeMap<String, KindOptions>,
    /// A shell command entities are piped through (see docs/restore.md).
    pub transform: Option<String>,
    /// Entities between checkpoints.
    pub checkpoint_every: u64,
    /// `--trust-schema`: recreate the recorded schema's code (triggers,
    /// calls to functions outside the built-in list) as recorded.
    pub trust_schema: bool,
    /// Stops the restore at its next entity, at a checkpoint a rerun
    /// resumes from.
    pub cancel: crate::interrupt::Cancel,
    /// No write mode was chosen: refuse ([`Error::TargetHasData`]) when the
    /// target already holds entities of the kinds to restore, rather than
    /// merge into a live target silently. A resumed restore goes on (the
    /// entities there are its own); a dry run counts them instead
    /// ([`KindReport::existing`]).
    pub require_fresh: bool,
}

/// Per-kind results.
#[derive(Debug, Clone, Default, Serialize)]
pub struct KindReport {
    pub namespace: String,
    pub kind: String,
    /// Entities written (in a dry run: to be written).
    pub written: u64,
    /// Entities deleted by `--exact` or `--clear`.
    pub deleted: u64,
    pub rejected: u64,
    /// Dropped by the transform (it printed `null`).
    pub dropped: u64,
    /// Numeric ids handed to the target's reservation.
    pub ids_reserved: u64,
    /// Key references rewritten to uuid names.
    pub references_rewritten: u64,
    /// Key references to entities not in the snapshot (left alone).
    pub references_outside: u64,
    /// Entities of the kind already on the target: counted by a dry run
    /// that was given no write mode.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub existing: Option<u64>,
}

#[derive(Debug, Clone, Default, Serialize)]
pub struct RestoreReport {
    pub snapshot: String,
    pub target: String,
    pub dry_run: bool,
    pub keys: KeyMode,
    pub mode: WriteMode,
    /// The kind a resumed run continued from, if it resumed.
    pub resumed: Option<String>,
    pub reserve_method: String,
    pub kinds: Vec<KindReport>,
    /// The first rejections (all are counted in `kinds`).
    pub rejections: Vec<RejectionReport>,
    /// Recorded objects the target did not recreate, each with the reason
    /// (triggers of an untrusted snapshot).
    pub warnings: Vec<String>,
}

#[derive(Debug, Clone, Serialize)]
pub struct RejectionReport {
    pub key: String,
    pub reason: String,
}

impl RestoreReport {
    pub fn rejected(&self) -> u64 {
        self.kinds.iter().map(|k| k.rejected).sum()
    }
    pub fn written(&self) -> u64 {
        self.kinds.iter().map(|k| k.written).sum()
    }
}

/// Restore `snap` into `target`.
pub fn restore(
    repo: &Repository,
    snap: &SnapshotInfo,
    target: &mut dyn EntityTarget,
    opts: &RestoreOptions,
    progress: &dyn Progress,
) -> Result<RestoreReport> {
    let _lock = repo.lock_shared()?;
    let chain = Chain::open(repo, &snap.id)?;
    let all = kind_counts(&chain)?;
    let chosen = choose_kinds(&all, opts.kinds.as_deref(), &snap.name)?;
    let target_id = target.target_id();
    let mut report = RestoreReport {
        snapshot: snap.name.clone(),
        target: target_id.clone(),
        dry_run: opts.dry_run,
        keys: opts.keys,
        mode: opts.mode,
        reserve_method: target.reserve_method().to_string(),
        ..Default::default()
    };
    let fingerprint = fingerprint(snap, &chosen, opts);
    let (journal, resumed) = if opts.dry_run {
        let journal = RestoreJournal::scratch(repo, &target_id, &fingerprint)?;
        (journal, false)
    } else {
        repo.check_writable()?;
        RestoreJournal::open(repo, &target_id, &fingerprint)?
    };
    let keymap = match (opts.keys, opts.dry_run) {
        (KeyMode::Uuid, false) => Some(KeyMap::open(repo, &target_id)?),
        _ => None,
    };
    let whole: Vec<(String, String)> = chosen
        .iter()
        .map(|(n, k, _)| (n.clone(), k.clone()))
        .collect();
    let kinds = kinds_to_write(repo, &chain, &whole, &journal, opts, progress)?;
    let kinds = prepare_target(target, snap, opts, kinds, resumed)?;
    if opts.require_fresh && !resumed && !opts.dry_run {
        if let Err(e) = refuse_live_target(target, &kinds, &target_id) {
            // Nothing was written: leave no journal that a rerun with a
            // mode would take for an interrupted restore.
            let _ = target.discard();
            let _ = journal.remove();
            return Err(e);
        }
    }
    let rewriter = Rewriter::new(
        opts,
        target.project(),
        target.database(),
        &target_id,
        Chain::open(repo, &snap.id)?,
    );
    let mut writer = RestoreWriter::new(target, rewriter, journal, keymap, opts, progress, &kinds);
    if opts.require_fresh && opts.dry_run {
        writer.count_existing(&kinds)?;
    }
    writer.clear_first(&kinds)?;
    let plan = read::plan_kinds(&kinds, &whole, &all, &writer.journal)?;
    if resumed {
        report.resumed = Some(read::resume_point(&plan));
    }
    // The overall total is known when only whole kinds are written.
    let total: u64 = chosen.iter().map(|(_, _, n)| n).sum();
    progress.overall((!opts.with_references).then_some(total));
    pipeline(repo, &snap.id, &plan, &mut writer, opts)?;
    progress.overall(None);
    writer.remove_extras(&kinds)?;
    writer.finish(report)
}

/// Every kind of the snapshot that has entities, with its count.
fn kind_counts(chain: &Chain) -> Result<Vec<(String, String, u64)>> {
    Ok(chain
        .head()
        .kinds()?
        .into_iter()
        .filter(|k| k.entities > 0)
        .map(|k| (k.namespace, k.kind, k.entities))
        .collect())
}

/// The kinds to write: the chosen ones, whole, and with
/// `--with-references` those holding entities they reference (chosen once
/// and kept in the journal, so a resumed run writes the same).
fn kinds_to_write(
    repo: &Repository,
    chain: &Chain,
    whole: &[(String, String)],
    journal: &RestoreJournal,
    opts: &RestoreOptions,
    progress: &dyn Progress,
) -> Result<Vec<(String, String)>> {
    let mut kinds = whole.to_vec();
    if !opts.with_references {
        return Ok(kinds);
    }
    if !journal.has_selection()? {
        read::select_references(repo, chain, whole, journal, progress)?;
    }
    for nk in journal.selected_kinds()? {
        if !kinds.contains(&nk) {
            kinds.push(nk);
        }
    }
    Ok(kinds)
}

/// Tell the target how to treat the recorded schema, start it, let it
/// order the kinds, and check that it can take uuid names.
fn prepare_target(
    target: &mut dyn EntityTarget,
    snap: &SnapshotInfo,
    opts: &RestoreOptions,
    kinds: Vec<(String, String)>,
    resumed: bool,
) -> Result<Vec<(String, String)>> {
    target.set_cancel(&opts.cancel);
    target.set_schema_policy(SchemaPolicy {
        snapshot: snap.name.clone(),
        trust: opts.trust_schema,
    });
    target.start(resumed)?;
    let kinds = target.order_kinds(kinds)?;
    if opts.keys == KeyMode::Uuid {
        for (ns, kind) in &kinds {
            target.check_uuid_names(ns, kind)?;
        }
    }
    Ok(kinds)
}

/// A restore without a write mode goes only into kinds that are empty on
/// the target: merging a snapshot into live data is a choice.
fn refuse_live_target(
    target: &mut dyn EntityTarget,
    kinds: &[(String, String)],
    target_id: &str,
) -> Result<()> {
    let mut live = Vec::new();
    for (ns, kind) in kinds {
        if target.has_entities(ns, kind)? {
            live.push(match ns.is_empty() {
                true => kind.clone(),
                false => format!("{ns}/{kind}"),
            });
        }
    }
    if live.is_empty() {
        return Ok(());
    }
    let kinds = match live.len() {
        1 => format!("kind {}", live[0]),
        n if n <= 5 => format!("{n} of the kinds to restore ({})", live.join(", ")),
        n => format!("{n} of the kinds to restore ({}, …)", live[..5].join(", ")),
    };
    Err(Error::TargetHasData {
        target: crate::connector::redact_location(target_id),
        kinds,
    })
}

/// Read the snapshot on one thread (feeding the transform, if any) and
/// write on this one.
fn pipeline(
    repo: &Repository,
    id: &SnapshotId,
    plan: &[read::KindPlan],
    writer: &mut RestoreWriter<'_>,
    opts: &RestoreOptions,
) -> Result<()> {
    let selection = writer.journal.path().to_path_buf();
    let mut transform = opts
        .transform
        .as_deref()
        .map(Transform::spawn)
        .transpose()?;
    let transform_in = transform.as_mut().and_then(|t| t.take_stdin());
    let (tx, rx) = sync_channel::<read::Event>(256);
    let outcome = std::thread::scope(|s| -> Result<()> {
        let reader = s.spawn(|| read::read_snapshot(repo, id, plan, &selection, tx, transform_in));
        let consumed = writer.consume(rx, transform.as_mut());
        // On an error the reader stops at its next send; a transform it may
        // be blocked writing to is stopped first.
        if consumed.is_err() {
            if let Some(t) = transform.as_mut() {
                t.kill();
            }
        }
        let read = reader
            .join()
            .unwrap_or(Err(Error::Internal("the snapshot reader thread panicked")));
        consumed.and(read)
    });
    if let Some(t) = transform.as_mut() {
        let status = t.finish();
        if outcome.is_ok() {
            status?;
        }
    }
    outcome
}

fn choose_kinds(
    all: &[(String, String, u64)],
    wanted: Option<&[String]>,
    snapshot: &str,
) -> Result<Vec<(String, String, u64)>> {
    let Some(wanted) = wanted else {
        return Ok(all.to_vec());
    };
    for w in wanted {
        if !all.iter().any(|(_, k, _)| k == w) {
            return Err(super::unknown_kind(
                w,
                format!("snapshot `{snapshot}`"),
                snapshot,
                all.iter().map(|(_, k, _)| k.as_str()),
            ));
        }
    }
    Ok(all
        .iter()
        .filter(|(_, k, _)| wanted.contains(k))
        .cloned()
        .collect())
}

fn fingerprint(
    snap: &SnapshotInfo,
    chosen: &[(String, String, u64)],
    o: &RestoreOptions,
) -> String {
    let text = serde_json::json!({
        "snapshot": snap.logical.to_hex(),
        "kinds": chosen.iter().map(|(n, k, _)| format!("{n}/{k}")).collect::<Vec<_>>(),
        "keys": o.keys,
        "mode": o.mode,
        "with_references": o.with_references,
        "map_project": o.map_project,
        "map_namespace": o.map_namespace,
        "transform": o.transform,
    })
    .to_string();
    // Compared for equality only (and sealed in an encrypted repository).
    hex::encode(&blake3::hash(text.as_bytes()).as_bytes()[..12])
}
