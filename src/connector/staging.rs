//! The staging store of the file targets (JSON Lines, export folders): a
//! SQLite database beside the target that behaves as a keyed store —
//! upserts, deletes for `--exact` and `--clear`, a resumable state for an
//! interrupted restore — from which `finish` writes the whole file or
//! folder in key order. Each target chooses how an entity is stored (JSON
//! text, canonical encoding) and how the bodies are written out.

use std::path::{Path, PathBuf};

use rusqlite::types::ValueRef;
use rusqlite::Connection;

use crate::error::{Error, Result};
use crate::model::{key, Entity, Key, PartitionId};

pub(crate) struct Staging {
    path: PathBuf,
    db: Option<Connection>,
}

impl Staging {
    /// `.NAME.kindsnap-staging` beside `target`.
    pub(crate) fn beside(target: &Path) -> Staging {
        let name = target
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        let dir = crate::repo::fsutil::parent_dir(target);
        Staging {
            path: dir.join(format!(".{name}.kindsnap-staging")),
            db: None,
        }
    }

    fn db(&self) -> Result<&Connection> {
        self.db
            .as_ref()
            .ok_or(Error::Internal("a file target used before start"))
    }

    fn sql(&self) -> impl FnOnce(rusqlite::Error) -> Error + use<> {
        Error::sql(self.path.clone())
    }

    /// Open for a restore. A resumed restore continues with what it
    /// staged; otherwise the store starts afresh, filled by `load` (the
    /// entities the target holds already) with `body` as each one's stored
    /// form.
    pub(crate) fn start(
        &mut self,
        resuming: bool,
        load: impl FnOnce(&mut dyn FnMut(&Entity) -> Result<()>) -> Result<()>,
        body: fn(&Entity) -> Vec<u8>,
    ) -> Result<()> {
        if !resuming || !self.path.exists() {
            match std::fs::remove_file(&self.path) {
                Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
                    return Err(Error::io("removing", &self.path)(e))
                }
                _ => {}
            }
            let _ = std::fs::remove_file(self.path.with_extension("kindsnap-staging-journal"));
            self.stage_fresh(load, body)?;
        }
        let db = Connection::open(&self.path).map_err(self.sql())?;
        // A JSON Lines store staged by an older build named its payload
        // column `json`: rename it, so that restore resumes too.
        let old: i64 = db
            .query_row(
                "SELECT count(*) FROM pragma_table_info('e') WHERE name = 'json'",
                [],
                |r| r.get(0),
            )
            .map_err(self.sql())?;
        if old > 0 {
            db.execute_batch("ALTER TABLE e RENAME COLUMN json TO body")
                .map_err(self.sql())?;
        }
        db.execute_batch("PRAGMA synchronous = NORMAL; BEGIN")
            .map_err(self.sql())?;
        self.db = Some(db);
        Ok(())
    }

    /// Build the store under another name, then rename it into place.
    fn stage_fresh(
        &self,
        load: impl FnOnce(&mut dyn FnMut(&Entity) -> Result<()>) -> Result<()>,
        body: fn(&Entity) -> Vec<u8>,
    ) -> Result<()> {
        let parent = crate::repo::fsutil::parent_dir(&self.path);
        std::fs::create_dir_all(parent).map_err(Error::io("creating", parent))?;
        let fresh = self.path.with_extension("kindsnap-staging-new");
        let _ = std::fs::remove_file(&fresh);
        let db = Connection::open(&fresh).map_err(Error::sql(&fresh))?;
        db.execute_batch(
            "CREATE TABLE e (ns TEXT NOT NULL, path BLOB NOT NULL, kind TEXT NOT NULL,
               project TEXT NOT NULL, db TEXT NOT NULL, body BLOB NOT NULL,
               PRIMARY KEY (ns, path)) WITHOUT ROWID;
             CREATE INDEX e_kind ON e (ns, kind);
             BEGIN;",
        )
        .map_err(Error::sql(&fresh))?;
        load(&mut |e| upsert(&db, e, &body(e)).map_err(Error::sql(&fresh)))?;
        db.execute_batch("COMMIT").map_err(Error::sql(&fresh))?;
        drop(db);
        std::fs::rename(&fresh, &self.path).map_err(Error::io("renaming", &fresh))
    }

    /// Write (or replace) an entity, stored as `body`.
    pub(crate) fn put(&self, e: &Entity, body: &[u8]) -> Result<()> {
        upsert(self.db()?, e, body).map_err(self.sql())
    }

    pub(crate) fn sync(&self) -> Result<()> {
        self.db()?
            .execute_batch("COMMIT; BEGIN")
            .map_err(self.sql())
    }

    pub(crate) fn scan_keys(
        &self,
        namespace: &str,
        kind: &str,
        f: &mut dyn FnMut(Key) -> Result<()>,
    ) -> Result<()> {
        let mut st = self
            .db()?
            .prepare("SELECT path, project, db FROM e WHERE ns = ?1 AND kind = ?2")
            .map_err(self.sql())?;
        let mut rows = st.query([namespace, kind]).map_err(self.sql())?;
        while let Some(row) = rows.next().map_err(self.sql())? {
            let bytes: Vec<u8> = row.get(0).map_err(self.sql())?;
            let path =
                key::decode_path(&bytes).ok_or(Error::Internal("a staged key does not decode"))?;
            let partition = PartitionId {
                project: row.get(1).map_err(self.sql())?,
                database: row.get(2).map_err(self.sql())?,
                namespace: namespace.to_string(),
            };
            f(Key::new(partition, path))?;
        }
        Ok(())
    }

    pub(crate) fn delete(&self, keys: Vec<Key>) -> Result<()> {
        let mut st = self
            .db()?
            .prepare_cached("DELETE FROM e WHERE ns = ?1 AND path = ?2")
            .map_err(self.sql())?;
        for k in keys {
            st.execute(rusqlite::params![k.partition.namespace, k.path_bytes()])
                .map_err(self.sql())?;
        }
        Ok(())
    }

    pub(crate) fn clear_kind(&self, namespace: &str, kind: &str) -> Result<u64> {
        let n = self
            .db()?
            .execute(
                "DELETE FROM e WHERE ns = ?1 AND kind = ?2",
                [namespace, kind],
            )
            .map_err(self.sql())?;
        Ok(n as u64)
    }

    /// Throw the store away (after a dry run).
    pub(crate) fn discard(&mut self) -> Result<()> {
        drop(self.db.take());
        match std::fs::remove_file(&self.path) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
                Err(Error::io("removing", &self.path)(e))
            }
            _ => Ok(()),
        }
    }

    /// Whether `start` opened the store (and `drain` has not closed it).
    pub(crate) fn is_open(&self) -> bool {
        self.db.is_some()
    }

    /// Commit, close, and call `f` with every stored body in key order.
    /// The store stays until [`Staging::remove`], so a restore whose
    /// output fails can be resumed.
    pub(crate) fn drain(&mut self, f: &mut dyn FnMut(&[u8]) -> Result<()>) -> Result<()> {
        let db = self
            .db
            .take()
            .ok_or(Error::Internal("a file target finished before start"))?;
        db.execute_batch("COMMIT").map_err(self.sql())?;
        {
            let mut st = db
                .prepare("SELECT body FROM e ORDER BY ns, path")
                .map_err(self.sql())?;
            let mut rows = st.query([]).map_err(self.sql())?;
            while let Some(row) = rows.next().map_err(self.sql())? {
                // Text in a store an older build staged; bytes otherwise.
                match row.get_ref(0).map_err(self.sql())? {
                    ValueRef::Blob(b) | ValueRef::Text(b) => f(b)?,
                    _ => return Err(Error::Internal("a staged body is neither text nor bytes")),
                }
            }
        }
        Ok(())
    }

    /// The output is in place: the store goes.
    pub(crate) fn remove(&self) -> Result<()> {
        std::fs::remove_file(&self.path).map_err(Error::io("removing", &self.path))
    }
}

fn upsert(db: &Connection, e: &Entity, body: &[u8]) -> rusqlite::Result<()> {
    db.prepare_cached(
        "INSERT OR REPLACE INTO e (ns, path, kind, project, db, body) VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
    )?
    .execute(rusqlite::params![
        e.key.partition.namespace,
        e.key.path_bytes(),
        e.key.kind(),
        e.key.partition.project,
        e.key.partition.database,
        body,
    ])?;
    Ok(())
}
