//! Reading the snapshot for a restore: the plan of kinds, the reader thread
//! that walks it (decompressing bodies and feeding a transform), and the
//! `--with-references` selection.

use std::io::Write;
use std::path::Path;
use std::process::ChildStdin;
use std::sync::mpsc::SyncSender;

use crate::error::{Error, Result};
use crate::ids::SnapshotId;
use crate::model::key::{decode_path, display_path};
use crate::model::{json, Entity};
use crate::progress::Progress;
use crate::repo::journal::{RestoreJournal, Selection};
use crate::repo::manifest::Chain;
use crate::repo::store::Store;
use crate::repo::Repository;

/// One kind to restore, as the journal left it.
pub(super) struct KindPlan {
    pub namespace: String,
    pub kind: String,
    /// The whole kind, or only its `selected` entities.
    pub whole: bool,
    /// Entities in the kind, for progress.
    pub total: Option<u64>,
    pub done: bool,
    /// Resume after this key.
    pub after: Option<Vec<u8>>,
}

/// What the reader thread sends the writer.
pub(super) enum Event {
    Kind {
        namespace: String,
        kind: String,
        total: Option<u64>,
    },
    /// `entity` is `None` when it went to the transform, which answers
    /// for it on the writer's side.
    Entity {
        key: Vec<u8>,
        entity: Option<Entity>,
    },
    EndKind,
}

/// The plan of `kinds` (in restore order): `whole` ones are restored
/// entirely, the others only as selected; `all` gives entity counts.
pub(super) fn plan_kinds(
    kinds: &[(String, String)],
    whole: &[(String, String)],
    all: &[(String, String, u64)],
    journal: &RestoreJournal,
) -> Result<Vec<KindPlan>> {
    kinds
        .iter()
        .map(|(ns, kind)| {
            let (done, after) = journal.progress(ns, kind)?;
            Ok(KindPlan {
                namespace: ns.clone(),
                kind: kind.clone(),
                whole: whole.contains(&(ns.clone(), kind.clone())),
                total: all
                    .iter()
                    .find(|(n, k, _)| n == ns && k == kind)
                    .map(|(_, _, c)| *c),
                done,
                after,
            })
        })
        .collect()
}

/// Where a resumed restore continues, for the report.
pub(super) fn resume_point(plan: &[KindPlan]) -> String {
    plan.iter()
        .find(|p| !p.done)
        .map(|p| match &p.after {
            Some(k) => format!(
                "{} after {}",
                p.kind,
                decode_path(k).map(|p| display_path(&p)).unwrap_or_default()
            ),
            None => p.kind.clone(),
        })
        .unwrap_or_else(|| "the end (nothing left to write)".into())
}

/// The reader thread: every planned entity not yet done, in order, as
/// events; bodies go to the transform's stdin when there is one.
pub(super) fn read_snapshot(
    repo: &Repository,
    id: &SnapshotId,
    plan: &[KindPlan],
    journal: &Path,
    tx: SyncSender<Event>,
    mut transform: Option<ChildStdin>,
) -> Result<()> {
    let chain = Chain::open(repo, id)?;
    let store = Store::open(repo)?;
    let selection = match plan.iter().any(|p| !p.whole) {
        true => Some(Selection::open(repo, journal)?),
        false => None,
    };
    // The consumer hung up: it failed and says why.
    let send = |ev: Event| tx.send(ev).map_err(|_| Error::Interrupted);
    let mut line = Vec::new();
    let mut emit = |key: Vec<u8>, entity: Entity| -> Result<()> {
        let Some(stdin) = transform.as_mut() else {
            let entity = Some(entity);
            return send(Event::Entity { key, entity });
        };
        line.clear();
        line.extend_from_slice(json::entity_to_json(&entity).as_bytes());
        line.push(b'\n');
        // A transform that exits early shows up on the reading side.
        let _ = stdin.write_all(&line);
        send(Event::Entity { key, entity: None })
    };
    for p in plan.iter().filter(|p| !p.done) {
        send(Event::Kind {
            namespace: p.namespace.clone(),
            kind: p.kind.clone(),
            // Only a whole kind restored from its start has a known count.
            total: p.total.filter(|_| p.whole && p.after.is_none()),
        })?;
        if p.whole {
            let mut state = chain.state(&p.namespace, &p.kind)?;
            while let Some(entry) = state.next_entry()? {
                if p.after.as_ref().is_some_and(|a| entry.key <= *a) {
                    continue;
                }
                emit(entry.key, store.get(&entry.hash)?)?;
            }
        } else if let Some(selection) = &selection {
            selection.for_each(
                &p.namespace,
                &p.kind,
                p.after.as_deref(),
                &mut |path| match chain.lookup(&p.namespace, &p.kind, &path)? {
                    Some(entry) => emit(path, store.get(&entry.hash)?),
                    None => Ok(()),
                },
            )?;
        }
        send(Event::EndKind)?;
    }
    if let Some(mut stdin) = transform.take() {
        let _ = stdin.flush();
    }
    Ok(())
}

/// `--with-references`: put every entity the chosen kinds reference,
/// transitively, into the journal's selection (a breadth-first walk that
/// keeps its queue on disk, so cycles and big graphs are fine).
pub(super) fn select_references(
    repo: &Repository,
    chain: &Chain,
    chosen: &[(String, String)],
    journal: &RestoreJournal,
    progress: &dyn Progress,
) -> Result<()> {
    let store = Store::open(repo)?;
    let visit = |e: &Entity| -> Result<()> {
        let mut refs = Vec::new();
        for v in e.properties.values() {
            v.for_each_key(&mut |k| refs.push(k.clone()));
        }
        for k in refs.into_iter().filter(|k| k.is_complete()) {
            let ns = &k.partition.namespace;
            if chosen.iter().any(|(n, kk)| n == ns && kk == k.kind()) {
                continue; // restored whole anyway
            }
            let bytes = k.path_bytes();
            if chain.lookup(ns, k.kind(), &bytes)?.is_some() {
                journal.select(ns, k.kind(), &bytes)?;
            }
        }
        Ok(())
    };
    progress.phase("finding references", None);
    for (ns, kind) in chosen {
        let mut state = chain.state(ns, kind)?;
        while let Some(entry) = state.next_entry()? {
            visit(&store.get(&entry.hash)?)?;
        }
    }
    loop {
        let batch = journal.take_queued(1000)?;
        if batch.is_empty() {
            break;
        }
        for (ns, kind, path) in batch {
            if let Some(entry) = chain.lookup(&ns, &kind, &path)? {
                visit(&store.get(&entry.hash)?)?;
            }
            progress.advance(1);
        }
    }
    journal.finish_selection()?;
    progress.done();
    Ok(())
}
