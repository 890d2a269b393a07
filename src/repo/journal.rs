//! The restore journal, `restores/<target>.db`: what an interrupted restore
//! needs to resume. It holds the arguments' fingerprint, each kind's last
//! checkpointed key and flags, for `--exact` the keys written, and for
//! `--with-references` the selected entities (a queue kept on disk).
//!
//! The restore engine (`ops::restore`) decides when to checkpoint; this
//! module owns the file, its schema and its lock (one restore per target
//! at a time).

use std::path::{Path, PathBuf};

use rusqlite::types::Value;
use rusqlite::{params, Connection, OptionalExtension};

use crate::error::{Error, Result};
use crate::model::Key;
use crate::repo::cells::Cells;
use crate::repo::{fsutil, Repository};

/// A file name for state kept per target (`restores/`, `keymaps/`): a
/// hash of the target's id, which may hold a path or a URL (keyed in an
/// encrypted repository, so the name does not confirm a guessed target).
pub(crate) fn target_stem(repo: &Repository, target_id: &str) -> String {
    match repo.keys() {
        Some(k) => k.lookup_tag(target_id.as_bytes())[..24].to_string(),
        None => hex::encode(&blake3::hash(target_id.as_bytes()).as_bytes()[..12]),
    }
}

pub struct RestoreJournal {
    path: PathBuf,
    db: Connection,
    /// Names, keys and the target sealed in an encrypted repository.
    cells: Cells,
    /// Held while the restore runs: one restore per target at a time.
    _lock: Option<std::fs::File>,
}

/// One entity `--with-references` selected: namespace, kind, key path.
pub type Selected = (String, String, Vec<u8>);

impl RestoreJournal {
    /// Open the journal of a target: resume if it was left by a restore with
    /// the same arguments (`fingerprint`), else start afresh. Returns
    /// whether it resumes.
    pub fn open(
        repo: &Repository,
        target_id: &str,
        fingerprint: &str,
    ) -> Result<(RestoreJournal, bool)> {
        let dir = repo.root().join("restores");
        fsutil::private_dir(&dir).map_err(Error::io("creating", &dir))?;
        let path = dir.join(format!("{}.db", target_stem(repo, target_id)));
        let lock_path = path.with_extension("lock");
        let lock =
            fsutil::private_file(&lock_path, false).map_err(Error::io("opening", &lock_path))?;
        if lock.try_lock().is_err() {
            return Err(Error::RestoreRunning {
                target: target_id.to_string(),
            });
        }
        let cells = Cells::new(repo.keys().cloned(), path.clone());
        if path.exists() {
            let db = Connection::open(&path).map_err(Error::sql(&path))?;
            let old: Option<Value> = db
                .query_row("SELECT v FROM meta WHERE k = 'fingerprint'", [], |r| {
                    r.get(0)
                })
                .optional()
                .ok()
                .flatten();
            // A journal that does not open (another key, damage) is not
            // resumed: it is started afresh.
            let old = old.and_then(|v| cells.get_text("v", v).ok());
            if old.as_deref() == Some(fingerprint) {
                db.execute_batch("BEGIN").map_err(Error::sql(&path))?;
                let j = RestoreJournal {
                    path,
                    db,
                    cells,
                    _lock: Some(lock),
                };
                return Ok((j, true));
            }
            drop(db);
            std::fs::remove_file(&path).map_err(Error::io("removing", &path))?;
        }
        let mut j = RestoreJournal::create(&path, fingerprint, target_id, cells)?;
        j._lock = Some(lock);
        Ok((j, false))
    }

    /// A journal in scratch space, for a dry run: never resumed, removed
    /// at the end.
    pub fn scratch(
        repo: &Repository,
        target_id: &str,
        fingerprint: &str,
    ) -> Result<RestoreJournal> {
        let path = fsutil::temp_path(&repo.scratch_dir(), ".dryrun");
        let cells = Cells::new(repo.keys().cloned(), path.clone());
        RestoreJournal::create(&path, fingerprint, target_id, cells)
    }

    fn create(
        path: &Path,
        fingerprint: &str,
        target: &str,
        cells: Cells,
    ) -> Result<RestoreJournal> {
        let _ = std::fs::remove_file(path);
        // Created private first: SQLite keeps an existing file's mode.
        fsutil::private_file(path, true).map_err(Error::io("creating", path))?;
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
            params![cells.text("v", fingerprint), cells.text("v", target)],
        )
        .map_err(Error::sql(path))?;
        db.execute_batch("BEGIN").map_err(Error::sql(path))?;
        Ok(RestoreJournal {
            path: path.to_path_buf(),
            db,
            cells,
            _lock: None,
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    fn sql(&self) -> impl FnOnce(rusqlite::Error) -> Error + use<> {
        Error::sql(self.path.clone())
    }

    fn commit(&self) -> Result<()> {
        self.db.execute_batch("COMMIT; BEGIN").map_err(self.sql())
    }

    /// A kind's (ns, kind) as stored.
    fn kind_key(&self, ns: &str, kind: &str) -> [Value; 2] {
        [self.cells.text("ns", ns), self.cells.text("kind", kind)]
    }

    /// (ns, kind, path) as stored.
    fn cell_key(&self, ns: &str, kind: &str, path: &[u8]) -> [Value; 3] {
        [
            self.cells.text("ns", ns),
            self.cells.text("kind", kind),
            self.cells.blob("path", path),
        ]
    }

    /// An entity's (ns, kind, path) as stored.
    fn row_key(&self, key: &Key) -> [Value; 3] {
        self.cell_key(&key.partition.namespace, key.kind(), &key.path_bytes())
    }

    /// Whether the restore-wide step `name` (`cleared`) is done.
    pub fn flag(&self, name: &str) -> Result<bool> {
        let v: Option<String> = self
            .db
            .query_row("SELECT v FROM meta WHERE k = ?1", [name], |r| r.get(0))
            .optional()
            .map_err(self.sql())?;
        Ok(v.is_some())
    }

    pub fn set_flag(&self, name: &str) -> Result<()> {
        self.db
            .execute(
                "INSERT OR REPLACE INTO meta (k, v) VALUES (?1, '1')",
                [name],
            )
            .map_err(self.sql())?;
        self.commit()
    }

    /// Whether the per-kind step `flag` (`exact_done`) is done.
    pub fn kind_flag(&self, ns: &str, kind: &str, flag: &str) -> Result<bool> {
        let flags: Option<String> = self
            .db
            .query_row(
                "SELECT flags FROM kinds WHERE ns = ?1 AND kind = ?2",
                self.kind_key(ns, kind),
                |r| r.get(0),
            )
            .optional()
            .map_err(self.sql())?;
        Ok(flags
            .map(|f| f.split(',').any(|x| x == flag))
            .unwrap_or(false))
    }

    pub fn set_kind_flag(&self, ns: &str, kind: &str, flag: &str) -> Result<()> {
        let [a, b] = self.kind_key(ns, kind);
        self.db
            .execute(
                "INSERT INTO kinds (ns, kind, flags) VALUES (?1, ?2, ?3)
                 ON CONFLICT (ns, kind) DO UPDATE SET flags = flags || ',' || ?3",
                params![a, b, flag],
            )
            .map_err(self.sql())?;
        self.commit()
    }

    /// Whether the kind is done, and the key it continues after.
    pub fn progress(&self, ns: &str, kind: &str) -> Result<(bool, Option<Vec<u8>>)> {
        let row: Option<(bool, Option<Value>)> = self
            .db
            .query_row(
                "SELECT done, after FROM kinds WHERE ns = ?1 AND kind = ?2",
                self.kind_key(ns, kind),
                |r| Ok((r.get::<_, i64>(0)? != 0, r.get(1)?)),
            )
            .optional()
            .map_err(self.sql())?;
        match row {
            None => Ok((false, None)),
            Some((done, None | Some(Value::Null))) => Ok((done, None)),
            Some((done, Some(after))) => Ok((done, Some(self.cells.get_blob("after", after)?))),
        }
    }

    /// Record a checkpoint (call after the target's `sync`) and commit.
    pub fn checkpoint(&self, ns: &str, kind: &str, after: Option<&[u8]>, done: bool) -> Result<()> {
        let [a, b] = self.kind_key(ns, kind);
        let after = after.map(|k| self.cells.blob("after", k));
        self.db
            .execute(
                "INSERT INTO kinds (ns, kind, done, after) VALUES (?1, ?2, ?3, ?4)
                 ON CONFLICT (ns, kind) DO UPDATE SET done = ?3, after = ?4",
                params![a, b, done as i64, after],
            )
            .map_err(self.sql())?;
        self.commit()
    }

    /// `--exact`: remember a key written (committed with the next
    /// checkpoint).
    pub fn record_written(&self, key: &Key) -> Result<()> {
        self.db
            .prepare_cached("INSERT OR IGNORE INTO written (ns, kind, path) VALUES (?1, ?2, ?3)")
            .and_then(|mut st| st.execute(self.row_key(key)))
            .map_err(self.sql())?;
        Ok(())
    }

    /// Whether this restore wrote `key` (as written: namespace mapped).
    pub fn was_written(&self, key: &Key) -> Result<bool> {
        self.db
            .prepare_cached("SELECT 1 FROM written WHERE ns = ?1 AND kind = ?2 AND path = ?3")
            .and_then(|mut st| st.exists(self.row_key(key)))
            .map_err(self.sql())
    }

    /// Whether `--with-references` already chose its entities.
    pub fn has_selection(&self) -> Result<bool> {
        self.flag("selected")
    }

    /// Queue an entity for `--with-references` (once: a second call for
    /// the same key does nothing).
    pub fn select(&self, ns: &str, kind: &str, path: &[u8]) -> Result<()> {
        self.db
            .prepare_cached(
                "INSERT OR IGNORE INTO selected (ns, kind, path, queued) VALUES (?1, ?2, ?3, 1)",
            )
            .and_then(|mut st| st.execute(self.cell_key(ns, kind, path)))
            .map_err(self.sql())?;
        Ok(())
    }

    /// Up to `limit` queued entities, taken off the queue.
    pub fn take_queued(&self, limit: u32) -> Result<Vec<Selected>> {
        let stored: Vec<[Value; 3]> = {
            let mut st = self
                .db
                .prepare_cached("SELECT ns, kind, path FROM selected WHERE queued = 1 LIMIT ?1")
                .map_err(self.sql())?;
            let rows = st
                .query_map([limit], |r| Ok([r.get(0)?, r.get(1)?, r.get(2)?]))
                .map_err(self.sql())?;
            rows.collect::<rusqlite::Result<_>>().map_err(self.sql())?
        };
        let mut batch = Vec::with_capacity(stored.len());
        for [ns, kind, path] in stored {
            self.db
                .prepare_cached(
                    "UPDATE selected SET queued = 0 WHERE ns = ?1 AND kind = ?2 AND path = ?3",
                )
                .and_then(|mut st| st.execute(params![ns, kind, path]))
                .map_err(self.sql())?;
            batch.push((
                self.cells.get_text("ns", ns)?,
                self.cells.get_text("kind", kind)?,
                self.cells.get_blob("path", path)?,
            ));
        }
        Ok(batch)
    }

    /// The selection is complete: a resumed run keeps it as it is.
    pub fn finish_selection(&self) -> Result<()> {
        self.set_flag("selected")
    }

    /// The kinds that have selected entities.
    pub fn selected_kinds(&self) -> Result<Vec<(String, String)>> {
        let mut st = self
            .db
            .prepare("SELECT DISTINCT ns, kind FROM selected ORDER BY ns, kind")
            .map_err(self.sql())?;
        let rows = st
            .query_map([], |r| Ok((r.get::<_, Value>(0)?, r.get::<_, Value>(1)?)))
            .map_err(self.sql())?;
        let mut out = Vec::new();
        for row in rows {
            let (ns, kind) = row.map_err(self.sql())?;
            out.push((
                self.cells.get_text("ns", ns)?,
                self.cells.get_text("kind", kind)?,
            ));
        }
        // Sealed names do not sort as the names do.
        out.sort();
        Ok(out)
    }

    /// The restore finished: the journal goes.
    pub fn remove(self) -> Result<()> {
        let RestoreJournal { path, db, .. } = self;
        let _ = db.execute_batch("COMMIT");
        drop(db);
        std::fs::remove_file(&path).map_err(Error::io("removing", &path))?;
        let _ = std::fs::remove_file(path.with_extension("db-journal"));
        Ok(())
    }
}

/// A second, read-only view of a journal's selection, for the thread that
/// reads the snapshot while the journal is written on another.
pub struct Selection {
    path: PathBuf,
    db: Connection,
    cells: Cells,
}

impl Selection {
    pub fn open(repo: &Repository, journal: &Path) -> Result<Selection> {
        let db = Connection::open(journal).map_err(Error::sql(journal))?;
        Ok(Selection {
            path: journal.to_path_buf(),
            db,
            cells: Cells::new(repo.keys().cloned(), journal.to_path_buf()),
        })
    }

    /// Each selected key path of a kind after `after`, in order.
    pub fn for_each(
        &self,
        ns: &str,
        kind: &str,
        after: Option<&[u8]>,
        f: &mut dyn FnMut(Vec<u8>) -> Result<()>,
    ) -> Result<()> {
        if self.cells.sealed() {
            return self.for_each_sealed(ns, kind, after, f);
        }
        let sql = Error::sql(&self.path);
        let mut st = self
            .db
            .prepare(
                "SELECT path FROM selected WHERE ns = ?1 AND kind = ?2 AND path > ?3 ORDER BY path",
            )
            .map_err(sql)?;
        let after = after.unwrap_or_default();
        let mut rows = st
            .query(params![ns, kind, after])
            .map_err(Error::sql(&self.path))?;
        while let Some(row) = rows.next().map_err(Error::sql(&self.path))? {
            f(row.get(0).map_err(Error::sql(&self.path))?)?;
        }
        Ok(())
    }

    /// [`Selection::for_each`] in an encrypted repository: sealed paths do
    /// not sort as the keys do, so a kind's selected keys are read, opened
    /// and sorted in memory (the selection of one kind, not the kind).
    fn for_each_sealed(
        &self,
        ns: &str,
        kind: &str,
        after: Option<&[u8]>,
        f: &mut dyn FnMut(Vec<u8>) -> Result<()>,
    ) -> Result<()> {
        let mut st = self
            .db
            .prepare("SELECT path FROM selected WHERE ns = ?1 AND kind = ?2")
            .map_err(Error::sql(&self.path))?;
        let rows = st
            .query_map(
                [self.cells.text("ns", ns), self.cells.text("kind", kind)],
                |r| r.get::<_, Value>(0),
            )
            .map_err(Error::sql(&self.path))?;
        let mut paths = Vec::new();
        for row in rows {
            let path = self
                .cells
                .get_blob("path", row.map_err(Error::sql(&self.path))?)?;
            if after.is_none_or(|a| path.as_slice() > a) {
                paths.push(path);
            }
        }
        paths.sort();
        for p in paths {
            f(p)?;
        }
        Ok(())
    }
}
