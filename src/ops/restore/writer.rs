//! Writing a restore, on the caller's thread: keys rewritten, entities
//! handed to the target, rejections accounted per kind, ids reserved, and
//! the journal checkpointed after each of the target's syncs.

use std::collections::BTreeMap;
use std::sync::mpsc::Receiver;
use std::time::{Duration, Instant};

use super::read::Event;
use super::rewrite::Rewriter;
use super::transform::Transform;
use super::{KeyMode, KindReport, RejectionReport, RestoreOptions, RestoreReport, WriteMode};
use crate::connector::{EntityTarget, Rejection};
use crate::error::{Error, Result};
use crate::model::{ElementId, Entity, Key};
use crate::progress::Progress;
use crate::repo::journal::RestoreJournal;
use crate::repo::keymap::KeyMap;

const MAX_REPORTED_REJECTIONS: usize = 1000;

/// Entities between checkpoints when the options leave it at 0.
const DEFAULT_CHECKPOINT_EVERY: u64 = 20_000;

/// A checkpoint at least this often, however few entities came.
const CHECKPOINT_INTERVAL: Duration = Duration::from_secs(5);

type KindId = (String, String);

pub(super) struct RestoreWriter<'a> {
    target: &'a mut dyn EntityTarget,
    rewriter: Rewriter,
    pub(super) journal: RestoreJournal,
    keymap: Option<KeyMap>,
    opts: &'a RestoreOptions,
    progress: &'a dyn Progress,
    reports: BTreeMap<KindId, KindReport>,
    rejections: Vec<RejectionReport>,
    /// The kind being written, the last key read of it, and the
    /// entities since the last checkpoint.
    current: Option<KindId>,
    last_key: Option<Vec<u8>>,
    since: u64,
    last_sync: Instant,
    /// Keys with numeric ids written since the last checkpoint.
    to_reserve: Vec<Key>,
}

impl<'a> RestoreWriter<'a> {
    pub(super) fn new(
        target: &'a mut dyn EntityTarget,
        rewriter: Rewriter,
        journal: RestoreJournal,
        keymap: Option<KeyMap>,
        opts: &'a RestoreOptions,
        progress: &'a dyn Progress,
        kinds: &[KindId],
    ) -> RestoreWriter<'a> {
        let reports = kinds
            .iter()
            .map(|(ns, k)| {
                let r = KindReport {
                    namespace: ns.clone(),
                    kind: k.clone(),
                    ..Default::default()
                };
                ((ns.clone(), k.clone()), r)
            })
            .collect();
        RestoreWriter {
            target,
            rewriter,
            journal,
            keymap,
            opts,
            progress,
            reports,
            rejections: Vec::new(),
            current: None,
            last_key: None,
            since: 0,
            last_sync: Instant::now(),
            to_reserve: Vec::new(),
        }
    }

    /// A dry run without a write mode: how many entities of each kind the
    /// target holds already.
    pub(super) fn count_existing(&mut self, kinds: &[KindId]) -> Result<()> {
        for (ns, kind) in kinds {
            let mut n = 0u64;
            if self.target.has_entities(ns, kind)? {
                self.target.scan_keys(ns, kind, &mut |_| {
                    n += 1;
                    Ok(())
                })?;
            }
            if let Some(r) = self.reports.get_mut(&(ns.clone(), kind.clone())) {
                r.existing = Some(n);
            }
        }
        Ok(())
    }

    /// `--clear`: empty every kind first (once, even across resumes; a
    /// dry run counts what would go).
    pub(super) fn clear_first(&mut self, kinds: &[KindId]) -> Result<()> {
        if self.opts.mode != WriteMode::Clear || self.journal.flag("cleared")? {
            return Ok(());
        }
        for (ns, kind) in kinds {
            self.progress.phase(&format!("clearing {kind}"), None);
            let n = if self.opts.dry_run {
                let mut n = 0;
                self.target.scan_keys(ns, kind, &mut |_| {
                    n += 1;
                    Ok(())
                })?;
                n
            } else {
                self.target.clear_kind(ns, kind)?
            };
            if let Some(r) = self.reports.get_mut(&(ns.clone(), kind.clone())) {
                r.deleted += n;
            }
            self.progress.done();
        }
        self.journal.set_flag("cleared")
    }

    /// Write every event the reader sends; the transform, if any, answers
    /// for the entities it was given.
    pub(super) fn consume(
        &mut self,
        rx: Receiver<Event>,
        mut transform: Option<&mut Transform>,
    ) -> Result<()> {
        for ev in rx.iter() {
            match ev {
                Event::Kind {
                    namespace,
                    kind,
                    total,
                } => self.begin_kind(namespace, kind, total)?,
                Event::EndKind => self.end_kind()?,
                Event::Entity { key, entity } => {
                    self.opts.cancel.check()?;
                    let entity = match (entity, transform.as_deref_mut()) {
                        (Some(e), _) => Some(e),
                        (None, Some(t)) => t.next(&key)?,
                        (None, None) => {
                            return Err(Error::Internal("restore: an entity without a body"))
                        }
                    };
                    self.write(key, entity)?;
                }
            }
        }
        Ok(())
    }

    fn begin_kind(&mut self, namespace: String, kind: String, total: Option<u64>) -> Result<()> {
        let options = self.opts.kind_options.get(&kind).copied();
        if !self.opts.dry_run {
            let options = options.unwrap_or_default();
            self.target.begin_kind(&namespace, &kind, options)?;
        }
        self.progress.phase(&format!("restoring {kind}"), total);
        self.current = Some((namespace, kind));
        self.last_key = None;
        Ok(())
    }

    fn end_kind(&mut self) -> Result<()> {
        if self.current.is_none() {
            return Err(Error::Internal("restore: end of a kind that did not begin"));
        }
        if !self.opts.dry_run {
            self.target.end_kind()?;
        }
        self.checkpoint(true)?;
        self.current = None;
        self.progress.done();
        Ok(())
    }

    /// One entity of the current kind (`None`: the transform dropped it),
    /// read at snapshot key `key`.
    fn write(&mut self, key: Vec<u8>, entity: Option<Entity>) -> Result<()> {
        let nk = self
            .current
            .clone()
            .ok_or(Error::Internal("restore: an entity outside a kind"))?;
        self.last_key = Some(key);
        let Some(mut entity) = entity else {
            self.report(&nk)?.dropped += 1;
            return Ok(());
        };
        let original = entity.key.clone();
        let stats = self.rewriter.rewrite_entity(&mut entity)?;
        if let Some(m) = &self.keymap {
            if original.path != entity.key.path {
                m.record(&original, &entity.key)?;
            }
        }
        let has_ids = self.opts.keys == KeyMode::Keep
            && entity
                .key
                .path
                .iter()
                .any(|e| matches!(e.id, ElementId::Id(_)));
        if self.opts.mode == WriteMode::Exact {
            self.journal.record_written(&entity.key)?;
        }
        let dry_run = self.opts.dry_run;
        let report = self.report(&nk)?;
        report.references_rewritten += stats.rewritten;
        report.references_outside += stats.outside;
        report.written += 1;
        if has_ids {
            report.ids_reserved += 1;
            if !dry_run {
                self.to_reserve.push(entity.key.clone());
            }
        }
        self.progress.advance(1);
        if !dry_run {
            self.target.put(entity)?;
            self.take_rejections()?;
        }
        self.since += 1;
        let every = match self.opts.checkpoint_every {
            0 => DEFAULT_CHECKPOINT_EVERY,
            n => n,
        };
        if self.since >= every || self.last_sync.elapsed() > CHECKPOINT_INTERVAL {
            self.checkpoint(false)?;
        }
        Ok(())
    }

    fn report(&mut self, nk: &KindId) -> Result<&mut KindReport> {
        self.reports
            .get_mut(nk)
            .ok_or(Error::Internal("restore: a kind without a report"))
    }

    /// Sync the target, account for its rejections, reserve ids, commit
    /// the key map, then record how far the current kind got (`done`: all
    /// of it).
    fn checkpoint(&mut self, done: bool) -> Result<()> {
        self.since = 0;
        self.last_sync = Instant::now();
        if self.opts.dry_run {
            return Ok(());
        }
        let Some((ns, kind)) = self.current.clone() else {
            return Err(Error::Internal("restore: a checkpoint outside a kind"));
        };
        self.target.sync()?;
        self.take_rejections()?;
        if !self.to_reserve.is_empty() {
            self.target.reserve_ids(&ns, &kind, &self.to_reserve)?;
            self.to_reserve.clear();
        }
        if let Some(m) = &self.keymap {
            m.commit()?;
        }
        self.journal
            .checkpoint(&ns, &kind, self.last_key.as_deref(), done)
    }

    /// The target's rejections since the last call: an error, or with
    /// `--tolerate` counted against their kind and listed (the first
    /// [`MAX_REPORTED_REJECTIONS`]).
    fn take_rejections(&mut self) -> Result<()> {
        for Rejection { key, reason } in self.target.take_rejections() {
            if !self.opts.tolerate {
                return Err(Error::Rejected {
                    key: key.to_string(),
                    reason,
                });
            }
            // Rejections carry the key as written (namespace mapped);
            // the reports are by the snapshot's namespace.
            let kind = key.kind().to_string();
            let found = source_namespaces(&self.opts.map_namespace, &key.partition.namespace)
                .into_iter()
                .map(|ns| (ns, kind.clone()))
                .find(|nk| self.reports.contains_key(nk));
            let report = match found {
                Some(nk) => self.reports.get_mut(&nk),
                None => self.reports.values_mut().last(),
            };
            if let Some(r) = report {
                r.rejected += 1;
                r.written = r.written.saturating_sub(1);
            }
            if self.rejections.len() < MAX_REPORTED_REJECTIONS {
                let key = key.to_string();
                self.rejections.push(RejectionReport { key, reason });
            }
        }
        Ok(())
    }

    /// `--exact`: delete what is on the target but was not written.
    pub(super) fn remove_extras(&mut self, kinds: &[KindId]) -> Result<()> {
        if self.opts.mode != WriteMode::Exact {
            return Ok(());
        }
        for (ns, kind) in kinds {
            if self.journal.kind_flag(ns, kind, "exact_done")? {
                continue;
            }
            self.progress.phase(&format!("removing extra {kind}"), None);
            let mut extras = Vec::new();
            let journal = &self.journal;
            self.target.scan_keys(ns, kind, &mut |key| {
                if !journal.was_written(&key)? {
                    extras.push(key);
                }
                Ok(())
            })?;
            if let Some(r) = self.reports.get_mut(&(ns.clone(), kind.clone())) {
                r.deleted += extras.len() as u64;
            }
            if !self.opts.dry_run {
                for chunk in extras.chunks(500) {
                    self.target.delete(chunk.to_vec())?;
                }
                self.target.sync()?;
                self.journal.set_kind_flag(ns, kind, "exact_done")?;
            }
            self.progress.done();
        }
        Ok(())
    }

    /// Make the restore visible on the target (or throw a dry run's
    /// preparations away), remove the journal, and complete the report.
    pub(super) fn finish(self, mut report: RestoreReport) -> Result<RestoreReport> {
        if self.opts.dry_run {
            self.target.discard()?;
        } else {
            self.target.finish()?;
        }
        self.journal.remove()?;
        report.kinds = self.reports.into_values().collect();
        report.rejections = self.rejections;
        report.warnings = self.target.take_warnings();
        Ok(report)
    }
}

/// The snapshot namespaces that `--map-namespace` writes as `written`:
/// those mapped to it, then itself unless it was mapped away.
fn source_namespaces(map: &[(String, String)], written: &str) -> Vec<String> {
    let mut out: Vec<String> = map
        .iter()
        .filter(|(_, to)| to == written)
        .map(|(from, _)| from.clone())
        .collect();
    if !map.iter().any(|(from, _)| from == written) {
        out.push(written.to_string());
    }
    out
}

#[cfg(test)]
mod tests {
    use super::source_namespaces;

    #[test]
    fn rejections_find_their_snapshot_namespace() {
        let map = vec![("a".to_string(), "b".to_string()), ("".into(), "c".into())];
        assert_eq!(source_namespaces(&map, "b"), ["a", "b"]);
        assert_eq!(source_namespaces(&map, "c"), ["", "c"]);
        // Not mapped: itself.
        assert_eq!(source_namespaces(&map, "x"), ["x"]);
        // Mapped away, so not itself.
        assert!(source_namespaces(&map, "a").is_empty());
        let swap = vec![("a".to_string(), "b".to_string()), ("b".into(), "a".into())];
        assert_eq!(source_namespaces(&swap, "a"), ["b"]);
    }
}
