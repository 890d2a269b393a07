//! `datastore-export:DIR` as a restore target: a folder that Google's
//! managed import (`gcloud datastore import DIR/DIR.overall_export_metadata`)
//! loads. Like the JSON Lines target it behaves as a keyed store: writes go
//! to a SQLite staging database beside the folder (upserts, deletes for
//! `--exact` and `--clear`, survives an interruption for resume), and
//! `finish` writes the whole folder from it in key order.

use std::path::{Path, PathBuf};

use super::writer::ExportWriter;
use crate::connector::{EntitySource, EntityTarget, KindOptions, Rejection};
use crate::error::{Error, Result};
use crate::model::{codec, key, Entity, Key, PartitionId};

pub struct ExportTarget {
    dir: PathBuf,
    staging: PathBuf,
    db: Option<rusqlite::Connection>,
}

impl ExportTarget {
    pub fn open(dir: &Path) -> Result<ExportTarget> {
        if dir.is_file() {
            return Err(Error::BadLocation {
                spec: format!("datastore-export:{}", dir.display()),
                why: "is a file; give the folder to write the export into".into(),
            });
        }
        let parent = crate::repo::fsutil::parent_dir(dir);
        let name = dir
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        Ok(ExportTarget {
            dir: dir.to_path_buf(),
            staging: parent.join(format!(".{name}.kindsnap-staging")),
            db: None,
        })
    }

    fn db(&self) -> Result<&rusqlite::Connection> {
        self.db
            .as_ref()
            .ok_or(Error::Internal("export target used before start"))
    }

    fn sql(&self) -> impl FnOnce(rusqlite::Error) -> Error + use<> {
        Error::sql(self.staging.clone())
    }

    fn upsert(db: &rusqlite::Connection, e: &Entity) -> rusqlite::Result<()> {
        let mut body = Vec::new();
        codec::encode(&mut e.clone(), &mut body);
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

    /// A fresh staging database, holding the export already in the folder.
    fn stage_fresh(&self) -> Result<()> {
        let parent = crate::repo::fsutil::parent_dir(&self.staging);
        std::fs::create_dir_all(parent).map_err(Error::io("creating", parent))?;
        let fresh = self.staging.with_extension("kindsnap-staging-new");
        let _ = std::fs::remove_file(&fresh);
        let db = rusqlite::Connection::open(&fresh).map_err(Error::sql(&fresh))?;
        db.execute_batch(
            "CREATE TABLE e (ns TEXT NOT NULL, path BLOB NOT NULL, kind TEXT NOT NULL,
               project TEXT NOT NULL, db TEXT NOT NULL, body BLOB NOT NULL,
               PRIMARY KEY (ns, path)) WITHOUT ROWID;
             CREATE INDEX e_kind ON e (ns, kind);
             BEGIN;",
        )
        .map_err(Error::sql(&fresh))?;
        let has_export = std::fs::read_dir(&self.dir)
            .map(|rd| {
                rd.flatten().any(|e| {
                    e.file_name()
                        .to_string_lossy()
                        .ends_with(super::layout::OVERALL_SUFFIX)
                })
            })
            .unwrap_or(false);
        if has_export {
            let location = self.dir.display().to_string();
            let mut existing =
                super::ExportSource::open(&location, &crate::net::Timeouts::default())?;
            existing.for_each(&mut |e, _| Self::upsert(&db, &e).map_err(Error::sql(&fresh)))?;
        }
        db.execute_batch("COMMIT").map_err(Error::sql(&fresh))?;
        drop(db);
        std::fs::rename(&fresh, &self.staging).map_err(Error::io("renaming", &fresh))
    }
}

impl EntityTarget for ExportTarget {
    fn target_id(&self) -> String {
        let abs = std::path::absolute(&self.dir).unwrap_or_else(|_| self.dir.clone());
        format!("datastore-export:{}", abs.display())
    }

    fn start(&mut self, resuming: bool) -> Result<()> {
        if !resuming || !self.staging.exists() {
            match std::fs::remove_file(&self.staging) {
                Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
                    return Err(Error::io("removing", &self.staging)(e))
                }
                _ => {}
            }
            self.stage_fresh()?;
        }
        let db = rusqlite::Connection::open(&self.staging).map_err(self.sql())?;
        db.execute_batch("PRAGMA synchronous = NORMAL; BEGIN")
            .map_err(self.sql())?;
        self.db = Some(db);
        Ok(())
    }

    fn begin_kind(&mut self, _ns: &str, _kind: &str, _o: KindOptions) -> Result<()> {
        Ok(())
    }

    fn put(&mut self, entity: Entity) -> Result<()> {
        let mut probe = Vec::new();
        if let Err(why) = super::map::encode_entity(&entity, &mut probe) {
            return Err(Error::Rejected {
                key: entity.key.to_string(),
                reason: format!("cannot be written as an App Engine entity: {why}"),
            });
        }
        Self::upsert(self.db()?, &entity).map_err(self.sql())
    }

    fn sync(&mut self) -> Result<()> {
        self.db()?
            .execute_batch("COMMIT; BEGIN")
            .map_err(self.sql())
    }

    fn take_rejections(&mut self) -> Vec<Rejection> {
        Vec::new()
    }

    fn end_kind(&mut self) -> Result<()> {
        Ok(())
    }

    fn reserve_ids(&mut self, _ns: &str, _kind: &str, _keys: &[Key]) -> Result<()> {
        Ok(())
    }

    fn reserve_method(&self) -> &'static str {
        "none needed (Google's import reserves the ids it loads)"
    }

    fn scan_keys(
        &mut self,
        namespace: &str,
        kind: &str,
        f: &mut dyn FnMut(Key) -> Result<()>,
    ) -> Result<()> {
        let db = self.db()?;
        let mut st = db
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

    fn delete(&mut self, keys: Vec<Key>) -> Result<()> {
        let db = self.db()?;
        let mut st = db
            .prepare_cached("DELETE FROM e WHERE ns = ?1 AND path = ?2")
            .map_err(self.sql())?;
        for k in keys {
            st.execute(rusqlite::params![k.partition.namespace, k.path_bytes()])
                .map_err(self.sql())?;
        }
        Ok(())
    }

    fn clear_kind(&mut self, namespace: &str, kind: &str) -> Result<u64> {
        let n = self
            .db()?
            .execute(
                "DELETE FROM e WHERE ns = ?1 AND kind = ?2",
                [namespace, kind],
            )
            .map_err(self.sql())?;
        Ok(n as u64)
    }

    fn discard(&mut self) -> Result<()> {
        drop(self.db.take());
        match std::fs::remove_file(&self.staging) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
                Err(Error::io("removing", &self.staging)(e))
            }
            _ => Ok(()),
        }
    }

    fn finish(&mut self) -> Result<()> {
        let Some(db) = self.db.take() else {
            return Ok(());
        };
        db.execute_batch("COMMIT").map_err(self.sql())?;
        let mut writer = ExportWriter::create(&self.dir)?;
        {
            let mut st = db
                .prepare("SELECT body FROM e ORDER BY ns, path")
                .map_err(self.sql())?;
            let mut rows = st.query([]).map_err(self.sql())?;
            while let Some(row) = rows.next().map_err(self.sql())? {
                let body = row.get_ref(0).map_err(self.sql())?;
                let bytes = body.as_blob().map_err(|e| self.sql()(e.into()))?;
                let entity = codec::decode(bytes)
                    .map_err(|_| Error::Internal("a staged entity does not decode"))?;
                writer.write(&entity)?;
            }
        }
        writer.finish()?;
        drop(db);
        std::fs::remove_file(&self.staging).map_err(Error::io("removing", &self.staging))
    }
}
