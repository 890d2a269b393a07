//! `datastore-export:DIR` as a restore target: a folder that Google's
//! managed import (`gcloud datastore import DIR/DIR.overall_export_metadata`)
//! loads. Like the JSON Lines target it behaves as a keyed store: writes go
//! to a SQLite staging database beside the folder (upserts, deletes for
//! `--exact` and `--clear`, survives an interruption for resume), and
//! `finish` writes the whole folder from it in key order.

use std::path::{Path, PathBuf};

use super::writer::ExportWriter;
use crate::connector::staging::Staging;
use crate::connector::{EntitySource, EntityTarget, KindOptions, Rejection};
use crate::error::{Error, Result};
use crate::model::{codec, Entity, Key};

pub struct ExportTarget {
    dir: PathBuf,
    staging: Staging,
}

impl ExportTarget {
    pub fn open(dir: &Path) -> Result<ExportTarget> {
        if dir.is_file() {
            return Err(Error::BadLocation {
                spec: format!("datastore-export:{}", dir.display()),
                why: "is a file; give the folder to write the export into".into(),
            });
        }
        Ok(ExportTarget {
            dir: dir.to_path_buf(),
            staging: Staging::beside(dir),
        })
    }

    /// An entity as the staging store keeps it: its canonical encoding.
    fn body(e: &Entity) -> Vec<u8> {
        let mut body = Vec::new();
        codec::encode(&mut e.clone(), &mut body);
        body
    }

    /// Whether the folder holds an export already.
    fn has_export(&self) -> bool {
        std::fs::read_dir(&self.dir)
            .map(|rd| {
                rd.flatten().any(|e| {
                    e.file_name()
                        .to_string_lossy()
                        .ends_with(super::layout::OVERALL_SUFFIX)
                })
            })
            .unwrap_or(false)
    }
}

impl EntityTarget for ExportTarget {
    fn target_id(&self) -> String {
        let abs = std::path::absolute(&self.dir).unwrap_or_else(|_| self.dir.clone());
        format!("datastore-export:{}", abs.display())
    }

    fn start(&mut self, resuming: bool) -> Result<()> {
        // A fresh store holds the export already in the folder.
        let existing = self.has_export().then(|| self.dir.display().to_string());
        let load = |f: &mut dyn FnMut(&Entity) -> Result<()>| -> Result<()> {
            let Some(location) = existing else {
                return Ok(());
            };
            let mut source = super::ExportSource::open(&location, &Default::default())?;
            source.for_each(&mut |e, _| f(&e))
        };
        self.staging.start(resuming, load, Self::body)
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
        self.staging.put(&entity, &Self::body(&entity))
    }

    fn sync(&mut self) -> Result<()> {
        self.staging.sync()
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
        self.staging.scan_keys(namespace, kind, f)
    }

    fn delete(&mut self, keys: Vec<Key>) -> Result<()> {
        self.staging.delete(keys)
    }

    fn clear_kind(&mut self, namespace: &str, kind: &str) -> Result<u64> {
        self.staging.clear_kind(namespace, kind)
    }

    fn discard(&mut self) -> Result<()> {
        self.staging.discard()
    }

    fn finish(&mut self) -> Result<()> {
        if !self.staging.is_open() {
            return Ok(());
        }
        let mut writer = ExportWriter::create(&self.dir)?;
        self.staging.drain(&mut |body| {
            let entity = codec::decode(body)
                .map_err(|_| Error::Internal("a staged entity does not decode"))?;
            writer.write(&entity)
        })?;
        writer.finish()?;
        self.staging.remove()
    }
}
