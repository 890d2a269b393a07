//! The key map of `--keys uuid` restores, `keymaps/<target>.db`: original
//! key ↔ uuid-named key, per target, so a restored entity can be traced
//! back (`kindsnap keymap`) and a second restore into the same target
//! finds the names it gave before. In an encrypted repository every
//! name is sealed (repo::cells): rows are found by equality only.

use std::path::PathBuf;

use rusqlite::types::Value;
use rusqlite::{params, Connection, OptionalExtension};

use crate::error::{Error, Result};
use crate::model::Key;
use crate::repo::cells::Cells;
use crate::repo::journal::target_stem;
use crate::repo::{fsutil, Repository};

pub struct KeyMap {
    path: PathBuf,
    db: Connection,
    cells: Cells,
}

impl KeyMap {
    pub fn path_for(repo: &Repository, target_id: &str) -> PathBuf {
        repo.root()
            .join("keymaps")
            .join(format!("{}.db", target_stem(repo, target_id)))
    }

    /// Open (creating it if needed) the key map of a target for writing;
    /// changes are committed by [`KeyMap::commit`].
    pub fn open(repo: &Repository, target_id: &str) -> Result<KeyMap> {
        let path = Self::path_for(repo, target_id);
        if let Some(dir) = path.parent() {
            fsutil::private_dir(dir).map_err(Error::io("creating", dir))?;
        }
        fsutil::private_file(&path, false).map_err(Error::io("creating", &path))?;
        let db = Connection::open(&path).map_err(Error::sql(&path))?;
        db.execute_batch(
            "PRAGMA synchronous = NORMAL;
             CREATE TABLE IF NOT EXISTS meta (k TEXT PRIMARY KEY, v TEXT NOT NULL);
             CREATE TABLE IF NOT EXISTS map (ns TEXT NOT NULL, original TEXT NOT NULL,
                restored TEXT NOT NULL, PRIMARY KEY (ns, original));
             CREATE INDEX IF NOT EXISTS map_restored ON map (ns, restored);",
        )
        .map_err(Error::sql(&path))?;
        let cells = Cells::new(repo.keys().cloned(), path.clone());
        db.execute(
            "INSERT OR REPLACE INTO meta (k, v) VALUES ('target', ?1)",
            [cells.text("v", target_id)],
        )
        .map_err(Error::sql(&path))?;
        db.execute_batch("BEGIN").map_err(Error::sql(&path))?;
        Ok(KeyMap { path, db, cells })
    }

    pub fn record(&self, original: &Key, restored: &Key) -> Result<()> {
        self.db
            .prepare_cached(
                "INSERT OR REPLACE INTO map (ns, original, restored) VALUES (?1, ?2, ?3)",
            )
            .and_then(|mut st| {
                st.execute(params![
                    self.cells.text("ns", &original.partition.namespace),
                    self.cells.text("original", &original.display_path()),
                    self.cells.text("restored", &restored.display_path())
                ])
            })
            .map_err(Error::sql(self.path.clone()))?;
        Ok(())
    }

    pub fn commit(&self) -> Result<()> {
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
            return Err(Error::NoKeyMap {
                target: target_id.to_string(),
            });
        }
        let db = Connection::open_with_flags(&file, rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY)
            .map_err(Error::sql(&file))?;
        let cells = Cells::new(repo.keys().cloned(), file.clone());
        let q = |sql: &str, given: &str, wanted: &str| -> Result<Option<String>> {
            let found: Option<Value> = db
                .query_row(
                    sql,
                    [cells.text("ns", namespace), cells.text(given, path)],
                    |r| r.get(0),
                )
                .optional()
                .map_err(Error::sql(&file))?;
            found.map(|v| cells.get_text(wanted, v)).transpose()
        };
        let by_original = "SELECT restored FROM map WHERE ns = ?1 AND original = ?2";
        if let Some(restored) = q(by_original, "original", "restored")? {
            return Ok(Some((path.to_string(), restored)));
        }
        let by_restored = "SELECT original FROM map WHERE ns = ?1 AND restored = ?2";
        if let Some(original) = q(by_restored, "restored", "original")? {
            return Ok(Some((original, path.to_string())));
        }
        Ok(None)
    }
}
