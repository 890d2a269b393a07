//! Restore a snapshot into a target: kind by kind, entities in key order,
//! with keys rewritten for the target (project, namespace, `--keys uuid`),
//! an optional transform, `--exact`/`--clear`, `--with-references`, and a
//! journal that lets an interrupted restore resume where it stopped.
//!
//! Threads: a reader thread walks the snapshot and decompresses bodies (and
//! feeds the transform, if any); the caller's thread rewrites keys, hands
//! entities to the target and keeps the journal.
//!
//! The journal (`restores/<target>.db` in the repository) holds the
//! arguments' fingerprint, each kind's last checkpointed key, and for
//! `--exact` the keys written. A checkpoint is committed only after the
//! target's `sync`, so a resumed run starts at or before the first entity
//! the target may lack; writes are upserts, so repeating a few is harmless.

use std::collections::{BTreeMap, HashMap};
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, ChildStdout, Command, Stdio};
use std::sync::mpsc::{sync_channel, Receiver, SyncSender};
use std::time::{Duration, Instant};

use rusqlite::{params, Connection, OptionalExtension};
use serde::Serialize;

use crate::connector::sql::ddl::SchemaPolicy;
use crate::connector::{EntityTarget, KindOptions, Rejection};
use crate::error::{Error, Result};
use crate::model::key::{decode_path, display_path, encode_path};
use crate::model::{json, ElementId, Entity, Key, Value, ValueKind};
use crate::progress::Progress;
use crate::repo::manifest::{Chain, SnapshotInfo};
use crate::repo::store::Store;
use crate::repo::Repository;

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

const MAX_REPORTED_REJECTIONS: usize = 1000;

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
    let all: Vec<(String, String, u64)> = chain
        .head()
        .kinds()?
        .into_iter()
        .filter(|k| k.entities > 0)
        .map(|k| (k.namespace, k.kind, k.entities))
        .collect();
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

    // The journal: real for a restore, a scratch file for a dry run.
    let tid = short_hash(&target_id);
    let fingerprint = fingerprint(snap, &chosen, opts);
    let (mut journal, resumed) = if opts.dry_run {
        let path = crate::repo::fsutil::temp_path(&repo.scratch_dir(), ".dryrun");
        (Journal::create(&path, &fingerprint, &target_id)?, false)
    } else {
        repo.check_writable()?;
        let dir = repo.root().join("restores");
        crate::repo::fsutil::private_dir(&dir).map_err(Error::io("creating", &dir))?;
        Journal::open(&dir.join(format!("{tid}.db")), &fingerprint, &target_id)?
    };
    let keymap = match (opts.keys, opts.dry_run) {
        (KeyMode::Uuid, false) => Some(KeyMap::open(repo, &target_id)?),
        _ => None,
    };

    // With --with-references the chosen kinds come whole, plus the closure
    // of what they reference, kept in the journal's `selected` table.
    let mut kinds: Vec<(String, String)> = chosen
        .iter()
        .map(|(n, k, _)| (n.clone(), k.clone()))
        .collect();
    if opts.with_references && !journal.has_selection()? {
        select_references(repo, &chain, &chosen, &mut journal, progress)?;
    }
    if opts.with_references {
        for (ns, kind) in journal.selected_kinds()? {
            if !kinds.contains(&(ns.clone(), kind.clone())) {
                kinds.push((ns, kind));
            }
        }
    }
    let whole: Vec<(String, String)> = chosen
        .iter()
        .map(|(n, k, _)| (n.clone(), k.clone()))
        .collect();

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
    let mut reports: BTreeMap<(String, String), KindReport> = kinds
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

    // --clear: empty every chosen kind first (once, even across resumes).
    if opts.mode == WriteMode::Clear && !journal.flag("cleared")? {
        for (ns, kind) in &kinds {
            progress.phase(&format!("clearing {kind}"), None);
            let n = if opts.dry_run {
                let mut n = 0;
                target.scan_keys(ns, kind, &mut |_| {
                    n += 1;
                    Ok(())
                })?;
                n
            } else {
                target.clear_kind(ns, kind)?
            };
            if let Some(r) = reports.get_mut(&(ns.clone(), kind.clone())) {
                r.deleted += n;
            }
            progress.done();
        }
        journal.set_flag("cleared")?;
    }

    let rewriter = Rewriter::new(
        opts,
        target.project(),
        target.database(),
        &target_id,
        Chain::open(repo, &snap.id)?,
    );
    let mut rejections: Vec<RejectionReport> = Vec::new();
    let (tx, rx) = sync_channel::<Event>(256);
    let plan: Vec<KindPlan> = kinds
        .iter()
        .map(|(ns, kind)| KindPlan {
            namespace: ns.clone(),
            kind: kind.clone(),
            whole: whole.contains(&(ns.clone(), kind.clone())),
            total: all
                .iter()
                .find(|(n, k, _)| n == ns && k == kind)
                .map(|(_, _, c)| *c),
            done: false,
            after: None,
        })
        .map(|mut p| -> Result<KindPlan> {
            let (done, after) = journal.progress(&p.namespace, &p.kind)?;
            p.done = done;
            p.after = after;
            Ok(p)
        })
        .collect::<Result<_>>()?;
    if resumed {
        report.resumed = plan
            .iter()
            .find(|p| !p.done)
            .map(|p| match &p.after {
                Some(k) => format!(
                    "{} after {}",
                    p.kind,
                    decode_path(k).map(|p| display_path(&p)).unwrap_or_default()
                ),
                None => p.kind.clone(),
            })
            .or(Some("the end (nothing left to write)".into()));
    }
    let selection_path = journal.path.clone();
    let mut transform = match &opts.transform {
        Some(cmd) => Some(Transform::spawn(cmd)?),
        None => None,
    };
    let transform_in = transform.as_mut().and_then(|t| t.stdin.take());

    let outcome = std::thread::scope(|s| -> Result<()> {
        let reader =
            s.spawn(|| read_snapshot(repo, &snap.id, &plan, &selection_path, tx, transform_in));
        let consumed = consume(
            rx,
            target,
            &rewriter,
            &mut journal,
            keymap.as_ref(),
            transform.as_mut(),
            opts,
            &mut reports,
            &mut rejections,
            progress,
        );
        // On an error the reader stops at its next send; a transform it may
        // be blocked writing to is stopped first.
        if consumed.is_err() {
            if let Some(t) = transform.as_mut() {
                let _ = t.child.kill();
            }
        }
        let read = reader
            .join()
            .unwrap_or(Err(Error::Internal("the snapshot reader thread panicked")));
        match consumed {
            Err(e) => Err(e),
            Ok(()) => read,
        }
    });
    if let Some(t) = transform.as_mut() {
        let status = t.finish();
        if outcome.is_ok() {
            status?;
        }
    }
    outcome?;

    // --exact: delete what is on the target but was not written.
    if opts.mode == WriteMode::Exact {
        for (ns, kind) in &kinds {
            if journal.kind_flag(ns, kind, "exact_done")? {
                continue;
            }
            progress.phase(&format!("removing extra {kind}"), None);
            let extras = journal.collect_extras(target, ns, kind)?;
            if let Some(r) = reports.get_mut(&(ns.clone(), kind.clone())) {
                r.deleted += extras.len() as u64;
            }
            if !opts.dry_run {
                for chunk in extras.chunks(500) {
                    target.delete(chunk.to_vec())?;
                }
                target.sync()?;
                journal.set_kind_flag(ns, kind, "exact_done")?;
            }
            progress.done();
        }
    }
    if opts.dry_run {
        target.discard()?;
        journal.remove()?;
    } else {
        target.finish()?;
        journal.remove()?;
    }
    report.kinds = reports.into_values().collect();
    report.rejections = rejections;
    report.warnings = target.take_warnings();
    Ok(report)
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

fn short_hash(s: &str) -> String {
    hex::encode(&blake3::hash(s.as_bytes()).as_bytes()[..12])
}

fn fingerprint(
    snap: &SnapshotInfo,
    chosen: &[(String, String, u64)],
    o: &RestoreOptions,
) -> String {
    let text = serde_json::json!({
        "snapshot": snap.id.to_hex(),
        "kinds": chosen.iter().map(|(n, k, _)| format!("{n}/{k}")).collect::<Vec<_>>(),
        "keys": o.keys,
        "mode": o.mode,
        "with_references": o.with_references,
        "map_project": o.map_project,
        "map_namespace": o.map_namespace,
        "transform": o.transform,
    })
    .to_string();
    short_hash(&text)
}

// ---------------------------------------------------------------------------
// The journal

struct Journal {
    path: PathBuf,
    db: Connection,
    /// Held while the restore runs: one restore per target at a time.
    _lock: Option<std::fs::File>,
}

impl Journal {
    /// Open the journal of a target: resume if it was left by a restore with
    /// the same arguments, else start afresh. Returns whether it resumes.
    fn open(path: &Path, fingerprint: &str, target: &str) -> Result<(Journal, bool)> {
        let lock_path = path.with_extension("lock");
        let lock = crate::repo::fsutil::private_file(&lock_path, false)
            .map_err(Error::io("opening", &lock_path))?;
        if lock.try_lock().is_err() {
            return Err(Error::BadArgument(format!(
                "another restore into {target} is running; wait for it to finish"
            )));
        }
        if path.exists() {
            let db = Connection::open(path).map_err(Error::sql(path))?;
            let old: Option<String> = db
                .query_row("SELECT v FROM meta WHERE k = 'fingerprint'", [], |r| {
                    r.get(0)
                })
                .optional()
                .ok()
                .flatten();
            if old.as_deref() == Some(fingerprint) {
                db.execute_batch("BEGIN").map_err(Error::sql(path))?;
                return Ok((
                    Journal {
                        path: path.to_path_buf(),
                        db,
                        _lock: Some(lock),
                    },
                    true,
                ));
            }
            drop(db);
            std::fs::remove_file(path).map_err(Error::io("removing", path))?;
        }
        let mut j = Journal::create(path, fingerprint, target)?;
        j._lock = Some(lock);
        Ok((j, false))
    }

    fn create(path: &Path, fingerprint: &str, target: &str) -> Result<Journal> {
        let _ = std::fs::remove_file(path);
        // Created private first: SQLite keeps an existing file's mode.
        crate::repo::fsutil::private_file(path, true).map_err(Error::io("creating", path))?;
        let db = Connection::open(path).map_err(Error::sql(path))?;
        db.execute_batch(
            "PRAGMA synchronous = NORMAL;
             CREATE TABLE meta (k TEXT PRIMARY KEY, v TEXT NOT NULL);
             CREATE TABLE kinds (ns TEXT NOT NULL, kind TEXT NOT NULL, done INTEGER NOT NULL DEFAULT 0,
                after BLOB, flags TEXT NOT NULL DEFAULT '', PRIMARY KEY (ns, kind));
             CREATE TABLE written (ns TEXT NOT NULL, kind TEXT NOT NULL, path BLOB NOT NULL,
                PRIMARY KEY (ns, kind, path)) WITHOUT ROWID;
             CREATE TABLE selected (ns TEXT NOT NULL, kind TEXT NOT NULL, path BLOB NOT NULL,
                queued INTEGER NOT NULL, PRIMARY KEY (ns, kind, path)) WITHOUT ROWID;
             CREATE INDEX selected_queue ON selected (queued) WHERE queued = 1;",
        )
        .map_err(Error::sql(path))?;
        db.execute(
            "INSERT INTO meta (k, v) VALUES ('fingerprint', ?1), ('target', ?2)",
            [fingerprint, target],
        )
        .map_err(Error::sql(path))?;
        db.execute_batch("BEGIN").map_err(Error::sql(path))?;
        Ok(Journal {
            path: path.to_path_buf(),
            db,
            _lock: None,
        })
    }

    fn sql(&self) -> impl FnOnce(rusqlite::Error) -> Error + use<> {
        Error::sql(self.path.clone())
    }

    fn commit(&self) -> Result<()> {
        self.db.execute_batch("COMMIT; BEGIN").map_err(self.sql())
    }

    fn flag(&self, name: &str) -> Result<bool> {
        let v: Option<String> = self
            .db
            .query_row("SELECT v FROM meta WHERE k = ?1", [name], |r| r.get(0))
            .optional()
            .map_err(self.sql())?;
        Ok(v.is_some())
    }

    fn set_flag(&self, name: &str) -> Result<()> {
        self.db
            .execute(
                "INSERT OR REPLACE INTO meta (k, v) VALUES (?1, '1')",
                [name],
            )
            .map_err(self.sql())?;
        self.commit()
    }

    fn kind_flag(&self, ns: &str, kind: &str, flag: &str) -> Result<bool> {
        let flags: Option<String> = self
            .db
            .query_row(
                "SELECT flags FROM kinds WHERE ns = ?1 AND kind = ?2",
                [ns, kind],
                |r| r.get(0),
            )
            .optional()
            .map_err(self.sql())?;
        Ok(flags
            .map(|f| f.split(',').any(|x| x == flag))
            .unwrap_or(false))
    }

    fn set_kind_flag(&self, ns: &str, kind: &str, flag: &str) -> Result<()> {
        self.db
            .execute(
                "INSERT INTO kinds (ns, kind, flags) VALUES (?1, ?2, ?3)
                 ON CONFLICT (ns, kind) DO UPDATE SET flags = flags || ',' || ?3",
                [ns, kind, flag],
            )
            .map_err(self.sql())?;
        self.commit()
    }

    fn progress(&self, ns: &str, kind: &str) -> Result<(bool, Option<Vec<u8>>)> {
        let row: Option<(bool, Option<Vec<u8>>)> = self
            .db
            .query_row(
                "SELECT done, after FROM kinds WHERE ns = ?1 AND kind = ?2",
                [ns, kind],
                |r| Ok((r.get::<_, i64>(0)? != 0, r.get(1)?)),
            )
            .optional()
            .map_err(self.sql())?;
        Ok(row.unwrap_or((false, None)))
    }

    /// Record a checkpoint (call after the target's `sync`) and commit.
    fn checkpoint(&self, ns: &str, kind: &str, after: Option<&[u8]>, done: bool) -> Result<()> {
        self.db
            .execute(
                "INSERT INTO kinds (ns, kind, done, after) VALUES (?1, ?2, ?3, ?4)
                 ON CONFLICT (ns, kind) DO UPDATE SET done = ?3, after = ?4",
                params![ns, kind, done as i64, after],
            )
            .map_err(self.sql())?;
        self.commit()
    }

    fn record_written(&self, key: &Key) -> Result<()> {
        self.db
            .prepare_cached("INSERT OR IGNORE INTO written (ns, kind, path) VALUES (?1, ?2, ?3)")
            .and_then(|mut st| {
                st.execute(params![
                    key.partition.namespace,
                    key.kind(),
                    key.path_bytes()
                ])
            })
            .map_err(self.sql())?;
        Ok(())
    }

    /// The target's keys of a kind that this restore did not write. Keys
    /// written under another namespace (`--map-namespace`) are looked up
    /// there.
    fn collect_extras(
        &self,
        target: &mut dyn EntityTarget,
        ns: &str,
        kind: &str,
    ) -> Result<Vec<Key>> {
        let mut extras = Vec::new();
        let mut st = self
            .db
            .prepare_cached("SELECT 1 FROM written WHERE ns = ?1 AND kind = ?2 AND path = ?3")
            .map_err(self.sql())?;
        let path = self.path.clone();
        target.scan_keys(ns, kind, &mut |key| {
            let found = st
                .exists(params![
                    key.partition.namespace,
                    key.kind(),
                    key.path_bytes()
                ])
                .map_err(Error::sql(path.clone()))?;
            if !found {
                extras.push(key);
            }
            Ok(())
        })?;
        Ok(extras)
    }

    fn has_selection(&self) -> Result<bool> {
        self.flag("selected")
    }

    fn selected_kinds(&self) -> Result<Vec<(String, String)>> {
        let mut st = self
            .db
            .prepare("SELECT DISTINCT ns, kind FROM selected ORDER BY ns, kind")
            .map_err(self.sql())?;
        let rows = st
            .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))
            .map_err(self.sql())?;
        rows.collect::<rusqlite::Result<_>>().map_err(self.sql())
    }

    fn remove(self) -> Result<()> {
        let Journal { path, db, _lock } = self;
        let _ = db.execute_batch("COMMIT");
        drop(db);
        std::fs::remove_file(&path).map_err(Error::io("removing", &path))?;
        let _ = std::fs::remove_file(path.with_extension("db-journal"));
        Ok(())
    }
}

/// `--with-references`: put every entity the chosen kinds reference,
/// transitively, into the journal's `selected` table (a breadth-first walk
/// that keeps its queue on disk, so cycles and big graphs are fine).
fn select_references(
    repo: &Repository,
    chain: &Chain,
    chosen: &[(String, String, u64)],
    journal: &mut Journal,
    progress: &dyn Progress,
) -> Result<()> {
    let store = Store::open(repo)?;
    let chosen_set: Vec<(String, String)> = chosen
        .iter()
        .map(|(n, k, _)| (n.clone(), k.clone()))
        .collect();
    let sql = journal.sql();
    let db = &journal.db;
    let mut insert = db
        .prepare_cached(
            "INSERT OR IGNORE INTO selected (ns, kind, path, queued) VALUES (?1, ?2, ?3, 1)",
        )
        .map_err(Error::sql(journal.path.clone()))?;
    let mut visit = |e: &Entity| -> Result<()> {
        let mut refs = Vec::new();
        for v in e.properties.values() {
            v.for_each_key(&mut |k| refs.push(k.clone()));
        }
        for k in refs {
            if !k.is_complete() {
                continue;
            }
            let ns = &k.partition.namespace;
            if chosen_set.iter().any(|(n, kk)| n == ns && kk == k.kind()) {
                continue; // restored whole anyway
            }
            let bytes = k.path_bytes();
            if chain.lookup(ns, k.kind(), &bytes)?.is_some() {
                insert
                    .execute(params![ns, k.kind(), bytes])
                    .map_err(Error::sql(journal.path.clone()))?;
            }
        }
        Ok(())
    };
    progress.phase("finding references", None);
    for (ns, kind, _) in chosen {
        let mut state = chain.state(ns, kind)?;
        while let Some(entry) = state.next_entry()? {
            visit(&store.get(&entry.hash)?)?;
        }
    }
    loop {
        let batch: Vec<(String, String, Vec<u8>)> = {
            let mut st = db
                .prepare_cached("SELECT ns, kind, path FROM selected WHERE queued = 1 LIMIT 1000")
                .map_err(Error::sql(journal.path.clone()))?;
            let rows = st
                .query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))
                .map_err(Error::sql(journal.path.clone()))?;
            rows.collect::<rusqlite::Result<_>>()
                .map_err(Error::sql(journal.path.clone()))?
        };
        if batch.is_empty() {
            break;
        }
        for (ns, kind, path) in batch {
            db.execute(
                "UPDATE selected SET queued = 0 WHERE ns = ?1 AND kind = ?2 AND path = ?3",
                params![ns, kind, path],
            )
            .map_err(Error::sql(journal.path.clone()))?;
            if let Some(entry) = chain.lookup(&ns, &kind, &path)? {
                visit(&store.get(&entry.hash)?)?;
            }
            progress.advance(1);
        }
    }
    drop(insert);
    db.execute(
        "INSERT OR REPLACE INTO meta (k, v) VALUES ('selected', '1')",
        [],
    )
    .map_err(sql)?;
    journal.commit()?;
    progress.done();
    Ok(())
}

// ---------------------------------------------------------------------------
// Reading the snapshot (on its own thread)

struct KindPlan {
    namespace: String,
    kind: String,
    /// The whole kind, or only its `selected` entities.
    whole: bool,
    /// Entities in the kind, for progress.
    total: Option<u64>,
    done: bool,
    /// Resume after this key.
    after: Option<Vec<u8>>,
}

enum Event {
    Kind {
        namespace: String,
        kind: String,
        total: Option<u64>,
    },
    Entity {
        key: Vec<u8>,
        entity: Option<Entity>,
    },
    EndKind,
}

fn read_snapshot(
    repo: &Repository,
    id: &crate::ids::SnapshotId,
    plan: &[KindPlan],
    journal: &Path,
    tx: SyncSender<Event>,
    mut transform: Option<ChildStdin>,
) -> Result<()> {
    let chain = Chain::open(repo, id)?;
    let store = Store::open(repo)?;
    let selection = if plan.iter().any(|p| !p.whole) {
        Some(Connection::open(journal).map_err(Error::sql(journal))?)
    } else {
        None
    };
    // The consumer hung up: it failed and says why.
    let send = |ev: Event| tx.send(ev).map_err(|_| Error::Interrupted);
    let mut line = Vec::new();
    let mut emit =
        |key: Vec<u8>, entity: Entity, transform: &mut Option<ChildStdin>| -> Result<()> {
            match transform {
                Some(stdin) => {
                    line.clear();
                    line.extend_from_slice(json::entity_to_json(&entity).as_bytes());
                    line.push(b'\n');
                    // A transform that exits early shows up on the reading side.
                    if stdin.write_all(&line).is_err() {
                        return send(Event::Entity { key, entity: None });
                    }
                    send(Event::Entity { key, entity: None })
                }
                None => send(Event::Entity {
                    key,
                    entity: Some(entity),
                }),
            }
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
                let entity = store.get(&entry.hash)?;
                emit(entry.key, entity, &mut transform)?;
            }
        } else if let Some(db) = &selection {
            let mut st = db
                .prepare(
                    "SELECT path FROM selected WHERE ns = ?1 AND kind = ?2 AND path > ?3 ORDER BY path",
                )
                .map_err(Error::sql(journal))?;
            let after = p.after.clone().unwrap_or_default();
            let mut rows = st
                .query(params![p.namespace, p.kind, after])
                .map_err(Error::sql(journal))?;
            while let Some(row) = rows.next().map_err(Error::sql(journal))? {
                let path: Vec<u8> = row.get(0).map_err(Error::sql(journal))?;
                if let Some(entry) = chain.lookup(&p.namespace, &p.kind, &path)? {
                    let entity = store.get(&entry.hash)?;
                    emit(path, entity, &mut transform)?;
                }
            }
        }
        send(Event::EndKind)?;
    }
    if let Some(mut stdin) = transform.take() {
        let _ = stdin.flush();
    }
    Ok(())
}

// ---------------------------------------------------------------------------
// Writing (on the caller's thread)

#[allow(clippy::too_many_arguments)]
fn consume(
    rx: Receiver<Event>,
    target: &mut dyn EntityTarget,
    rewriter: &Rewriter,
    journal: &mut Journal,
    keymap: Option<&KeyMap>,
    mut transform: Option<&mut Transform>,
    opts: &RestoreOptions,
    reports: &mut BTreeMap<(String, String), KindReport>,
    rejections: &mut Vec<RejectionReport>,
    progress: &dyn Progress,
) -> Result<()> {
    let every = if opts.checkpoint_every == 0 {
        20_000
    } else {
        opts.checkpoint_every
    };
    let mut current: Option<(String, String)> = None;
    let mut since = 0u64;
    let mut last_sync = Instant::now();
    let mut last_key: Option<Vec<u8>> = None;
    let mut to_reserve: Vec<Key> = Vec::new();
    let handle_rejections = |target: &mut dyn EntityTarget,
                             reports: &mut BTreeMap<(String, String), KindReport>,
                             rejections: &mut Vec<RejectionReport>|
     -> Result<()> {
        for Rejection { key, reason } in target.take_rejections() {
            if !opts.tolerate {
                return Err(Error::Rejected {
                    key: key.to_string(),
                    reason,
                });
            }
            // Rejections carry the key as written (namespace mapped);
            // the reports are by the snapshot's namespace.
            let kind = key.kind().to_string();
            let found = source_namespaces(&opts.map_namespace, &key.partition.namespace)
                .into_iter()
                .map(|ns| (ns, kind.clone()))
                .find(|nk| reports.contains_key(nk));
            let report = match found {
                Some(nk) => reports.get_mut(&nk),
                None => current_report(reports),
            };
            if let Some(r) = report {
                r.rejected += 1;
                r.written = r.written.saturating_sub(1);
            }
            if rejections.len() < MAX_REPORTED_REJECTIONS {
                rejections.push(RejectionReport {
                    key: key.to_string(),
                    reason,
                });
            }
        }
        Ok(())
    };
    let sync = |target: &mut dyn EntityTarget,
                journal: &Journal,
                ns_kind: &(String, String),
                after: Option<&[u8]>,
                done: bool,
                to_reserve: &mut Vec<Key>,
                reports: &mut BTreeMap<(String, String), KindReport>,
                rejections: &mut Vec<RejectionReport>|
     -> Result<()> {
        if opts.dry_run {
            return Ok(());
        }
        target.sync()?;
        handle_rejections(target, reports, rejections)?;
        if !to_reserve.is_empty() {
            target.reserve_ids(&ns_kind.0, &ns_kind.1, to_reserve)?;
            to_reserve.clear();
        }
        if let Some(m) = keymap {
            m.commit()?;
        }
        journal.checkpoint(&ns_kind.0, &ns_kind.1, after, done)
    };
    for ev in rx.iter() {
        match ev {
            Event::Kind {
                namespace,
                kind,
                total,
            } => {
                let options = opts.kind_options.get(&kind).copied().unwrap_or_default();
                if !opts.dry_run {
                    target.begin_kind(&namespace, &kind, options)?;
                }
                progress.phase(&format!("restoring {kind}"), total);
                current = Some((namespace, kind));
                last_key = None;
            }
            Event::EndKind => {
                let Some(nk) = current.take() else {
                    return Err(Error::Internal("restore: end of a kind that did not begin"));
                };
                if !opts.dry_run {
                    target.end_kind()?;
                }
                sync(
                    target,
                    journal,
                    &nk,
                    last_key.as_deref(),
                    true,
                    &mut to_reserve,
                    reports,
                    rejections,
                )?;
                progress.done();
            }
            Event::Entity { key, entity } => {
                crate::interrupt::check()?;
                let Some(nk) = current.clone() else {
                    return Err(Error::Internal("restore: an entity outside a kind"));
                };
                let entity = match (entity, transform.as_deref_mut()) {
                    (Some(e), _) => Some(e),
                    (None, Some(t)) => t.next(&key)?,
                    (None, None) => {
                        return Err(Error::Internal("restore: an entity without a body"))
                    }
                };
                let report = reports
                    .get_mut(&nk)
                    .ok_or(Error::Internal("restore: a kind without a report"))?;
                last_key = Some(key);
                let Some(mut entity) = entity else {
                    report.dropped += 1;
                    continue;
                };
                let original = entity.key.clone();
                let stats = rewriter.rewrite_entity(&mut entity)?;
                report.references_rewritten += stats.rewritten;
                report.references_outside += stats.outside;
                if let Some(m) = keymap {
                    if original.path != entity.key.path {
                        m.record(&original, &entity.key)?;
                    }
                }
                if opts.keys == KeyMode::Keep
                    && entity
                        .key
                        .path
                        .iter()
                        .any(|e| matches!(e.id, ElementId::Id(_)))
                {
                    report.ids_reserved += 1;
                    if !opts.dry_run {
                        to_reserve.push(entity.key.clone());
                    }
                }
                if opts.mode == WriteMode::Exact {
                    journal.record_written(&entity.key)?;
                }
                report.written += 1;
                progress.advance(1);
                if !opts.dry_run {
                    target.put(entity)?;
                    handle_rejections(target, reports, rejections)?;
                }
                since += 1;
                if since >= every || last_sync.elapsed() > Duration::from_secs(5) {
                    sync(
                        target,
                        journal,
                        &nk,
                        last_key.as_deref(),
                        false,
                        &mut to_reserve,
                        reports,
                        rejections,
                    )?;
                    since = 0;
                    last_sync = Instant::now();
                }
            }
        }
    }
    Ok(())
}

fn current_report(reports: &mut BTreeMap<(String, String), KindReport>) -> Option<&mut KindReport> {
    reports.values_mut().last()
}

// ---------------------------------------------------------------------------
// Key rewriting

#[derive(Default)]
struct RewriteStats {
    rewritten: u64,
    outside: u64,
}

struct Rewriter {
    uuid_key: Option<[u8; 32]>,
    project: Option<String>,
    database: Option<String>,
    map_project: Vec<(String, String)>,
    map_namespace: Vec<(String, String)>,
    chain: Chain,
    /// Whether a referenced key is in the snapshot (bounded cache).
    known: std::cell::RefCell<HashMap<(String, Vec<u8>), bool>>,
}

impl Rewriter {
    fn new(
        opts: &RestoreOptions,
        project: Option<String>,
        database: Option<String>,
        target_id: &str,
        chain: Chain,
    ) -> Rewriter {
        Rewriter {
            uuid_key: (opts.keys == KeyMode::Uuid).then(|| uuid_key(target_id)),
            project,
            database,
            map_project: opts.map_project.clone(),
            map_namespace: opts.map_namespace.clone(),
            chain,
            known: Default::default(),
        }
    }

    fn rewrite_entity(&self, e: &mut Entity) -> Result<RewriteStats> {
        let mut stats = RewriteStats::default();
        self.rewrite_key(&mut e.key, true)?;
        for v in e.properties.values_mut() {
            self.rewrite_value(v, &mut stats)?;
        }
        Ok(stats)
    }

    fn rewrite_value(&self, v: &mut Value, stats: &mut RewriteStats) -> Result<()> {
        match &mut v.kind {
            ValueKind::Key(k) => {
                let inside = k.is_complete() && self.in_snapshot(k)?;
                if !inside {
                    stats.outside += 1;
                }
                if self.rewrite_key(k, inside)? {
                    stats.rewritten += 1;
                }
            }
            ValueKind::Array(vs) => {
                for v in vs {
                    self.rewrite_value(v, stats)?;
                }
            }
            ValueKind::Entity(e) => {
                if let Some(k) = &mut e.key {
                    let inside = k.is_complete() && self.in_snapshot(k)?;
                    self.rewrite_key(k, inside)?;
                }
                for v in e.properties.values_mut() {
                    self.rewrite_value(v, stats)?;
                }
            }
            _ => {}
        }
        Ok(())
    }

    fn in_snapshot(&self, k: &Key) -> Result<bool> {
        let path = k.path_bytes();
        let cache_key = (k.partition.namespace.clone(), path);
        if let Some(&hit) = self.known.borrow().get(&cache_key) {
            return Ok(hit);
        }
        let found = self
            .chain
            .lookup(&k.partition.namespace, k.kind(), &cache_key.1)?
            .is_some();
        let mut known = self.known.borrow_mut();
        if known.len() > 200_000 {
            known.clear();
        }
        known.insert(cache_key, found);
        Ok(found)
    }

    /// Rewrite one key; `uuid` says whether numeric ids become uuid names
    /// (the entity's own key, or a reference into the snapshot). Returns
    /// whether any id was replaced.
    fn rewrite_key(&self, k: &mut Key, uuid: bool) -> Result<bool> {
        let mut replaced = false;
        if let (Some(secret), true) = (&self.uuid_key, uuid) {
            let original = k.path.clone();
            for i in 0..k.path.len() {
                if matches!(k.path[i].id, ElementId::Id(_)) {
                    let name = uuid_name(secret, &k.partition.namespace, &original[..=i]);
                    k.path[i].id = ElementId::Name(name);
                    replaced = true;
                }
            }
        }
        if let Some((_, to)) = self
            .map_namespace
            .iter()
            .find(|(from, _)| *from == k.partition.namespace)
        {
            k.partition.namespace = to.clone();
        }
        if let Some((_, to)) = self
            .map_project
            .iter()
            .find(|(from, _)| *from == k.partition.project)
        {
            k.partition.project = to.clone();
        } else if let Some(p) = &self.project {
            k.partition.project = p.clone();
        }
        if let Some(d) = &self.database {
            k.partition.database = d.clone();
        }
        Ok(replaced)
    }
}

/// The per-target secret the uuid names derive from: deterministic, so the
/// same entity gets the same name every time it is restored into the same
/// target (a second restore updates instead of duplicating).
fn uuid_key(target_id: &str) -> [u8; 32] {
    blake3::derive_key("kindsnap --keys uuid v1", target_id.as_bytes())
}

/// The uuid name of the path element `prefix.last()`, from the whole
/// original path up to it (so `User:1/Post:7` and `User:2/Post:7` differ).
fn uuid_name(secret: &[u8; 32], namespace: &str, prefix: &[crate::model::PathElement]) -> String {
    let mut h = blake3::Hasher::new_keyed(secret);
    h.update(namespace.as_bytes());
    h.update(&[0]);
    h.update(&encode_path(prefix));
    let mut bytes = [0u8; 16];
    bytes.copy_from_slice(&h.finalize().as_bytes()[..16]);
    uuid::Builder::from_random_bytes(bytes)
        .into_uuid()
        .hyphenated()
        .to_string()
}

// ---------------------------------------------------------------------------
// The key map

/// Original key ↔ uuid-named key, per target, in `keymaps/<target>.db`.
pub struct KeyMap {
    path: PathBuf,
    db: Connection,
}

impl KeyMap {
    pub fn path_for(repo: &Repository, target_id: &str) -> PathBuf {
        repo.root()
            .join("keymaps")
            .join(format!("{}.db", short_hash(target_id)))
    }

    fn open(repo: &Repository, target_id: &str) -> Result<KeyMap> {
        let path = Self::path_for(repo, target_id);
        if let Some(dir) = path.parent() {
            crate::repo::fsutil::private_dir(dir).map_err(Error::io("creating", dir))?;
        }
        crate::repo::fsutil::private_file(&path, false).map_err(Error::io("creating", &path))?;
        let db = Connection::open(&path).map_err(Error::sql(&path))?;
        db.execute_batch(
            "PRAGMA synchronous = NORMAL;
             CREATE TABLE IF NOT EXISTS meta (k TEXT PRIMARY KEY, v TEXT NOT NULL);
             CREATE TABLE IF NOT EXISTS map (ns TEXT NOT NULL, original TEXT NOT NULL,
                restored TEXT NOT NULL, PRIMARY KEY (ns, original));
             CREATE INDEX IF NOT EXISTS map_restored ON map (ns, restored);",
        )
        .map_err(Error::sql(&path))?;
        db.execute(
            "INSERT OR REPLACE INTO meta (k, v) VALUES ('target', ?1)",
            [target_id],
        )
        .map_err(Error::sql(&path))?;
        db.execute_batch("BEGIN").map_err(Error::sql(&path))?;
        Ok(KeyMap { path, db })
    }

    fn record(&self, original: &Key, restored: &Key) -> Result<()> {
        self.db
            .prepare_cached(
                "INSERT OR REPLACE INTO map (ns, original, restored) VALUES (?1, ?2, ?3)",
            )
            .and_then(|mut st| {
                st.execute(params![
                    original.partition.namespace,
                    original.display_path(),
                    restored.display_path()
                ])
            })
            .map_err(Error::sql(self.path.clone()))?;
        Ok(())
    }

    fn commit(&self) -> Result<()> {
        self.db
            .execute_batch("COMMIT; BEGIN")
            .map_err(Error::sql(self.path.clone()))
    }

    /// Look a key up either way: an original key gives its restored form,
    /// a restored one its original. `None` when the map has neither.
    pub fn lookup(
        repo: &Repository,
        target_id: &str,
        namespace: &str,
        path: &str,
    ) -> Result<Option<(String, String)>> {
        let file = Self::path_for(repo, target_id);
        if !file.exists() {
            return Err(Error::BadArgument(format!(
                "no key map for {target_id}: nothing was restored there with --keys uuid from this repository"
            )));
        }
        let db = Connection::open_with_flags(&file, rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY)
            .map_err(Error::sql(&file))?;
        let q = |sql: &str| -> Result<Option<String>> {
            db.query_row(sql, [namespace, path], |r| r.get(0))
                .optional()
                .map_err(Error::sql(&file))
        };
        if let Some(restored) = q("SELECT restored FROM map WHERE ns = ?1 AND original = ?2")? {
            return Ok(Some((path.to_string(), restored)));
        }
        if let Some(original) = q("SELECT original FROM map WHERE ns = ?1 AND restored = ?2")? {
            return Ok(Some((original, path.to_string())));
        }
        Ok(None)
    }
}

// ---------------------------------------------------------------------------
// The transform hook

/// `--transform CMD`: a child process (`sh -c CMD`) that reads one entity
/// per line on stdin and prints, for each, one line: the entity (changed or
/// not, same key) or `null` to leave it out. Entities stream through it; the
/// reader thread writes, the writer thread reads.
struct Transform {
    command: String,
    child: Child,
    stdin: Option<ChildStdin>,
    stdout: BufReader<ChildStdout>,
    line: String,
    seen: u64,
}

impl Transform {
    fn spawn(command: &str) -> Result<Transform> {
        let mut child = Command::new("sh")
            .arg("-c")
            .arg(command)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .map_err(|e| Error::Transform {
                command: command.to_string(),
                why: format!("cannot start it: {e}"),
            })?;
        let stdin = child.stdin.take();
        let stdout = child
            .stdout
            .take()
            .ok_or(Error::Internal("transform without stdout"))?;
        Ok(Transform {
            command: command.to_string(),
            child,
            stdin,
            stdout: BufReader::new(stdout),
            line: String::new(),
            seen: 0,
        })
    }

    fn fail(&mut self, why: String) -> Error {
        let _ = self.child.kill();
        Error::Transform {
            command: self.command.clone(),
            why,
        }
    }

    /// The transform's answer for the entity with original key `key`.
    fn next(&mut self, key: &[u8]) -> Result<Option<Entity>> {
        let shown = decode_path(key)
            .map(|p| display_path(&p))
            .unwrap_or_default();
        self.line.clear();
        let n = self
            .stdout
            .read_line(&mut self.line)
            .map_err(|e| Error::Transform {
                command: self.command.clone(),
                why: format!("reading its output: {e}"),
            })?;
        if n == 0 {
            let status = self.child.wait().ok();
            let how = match status.and_then(|s| s.code()) {
                Some(0) => "exited".to_string(),
                Some(c) => format!("exited with status {c}"),
                None => "was killed".to_string(),
            };
            return Err(self.fail(format!(
                "it {how} after {} entities without answering for {shown}",
                self.seen
            )));
        }
        self.seen += 1;
        let text = self.line.trim();
        if text == "null" {
            return Ok(None);
        }
        let entity = json::entity_from_json(text)
            .map_err(|e| format!("it printed invalid JSON for {shown}: {e}"));
        let entity = match entity {
            Ok(e) => e,
            Err(why) => return Err(self.fail(why)),
        };
        if entity.key.path_bytes() != key {
            let why = format!(
                "it changed the key of {shown} to {}; a transform may change properties only",
                entity.key.display_path()
            );
            return Err(self.fail(why));
        }
        Ok(Some(entity))
    }

    /// Wait for the child; an error if it failed or printed extra lines.
    fn finish(&mut self) -> Result<()> {
        drop(self.stdin.take());
        self.line.clear();
        let extra = self.stdout.read_line(&mut self.line).unwrap_or(0);
        let status = self.child.wait().map_err(|e| Error::Transform {
            command: self.command.clone(),
            why: format!("waiting for it: {e}"),
        })?;
        if extra > 0 {
            return Err(Error::Transform {
                command: self.command.clone(),
                why: "it printed more lines than it was given; print exactly one line per entity"
                    .into(),
            });
        }
        if !status.success() {
            return Err(Error::Transform {
                command: self.command.clone(),
                why: format!("it exited with {status}"),
            });
        }
        Ok(())
    }
}

impl Drop for Transform {
    fn drop(&mut self) {
        drop(self.stdin.take());
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
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
