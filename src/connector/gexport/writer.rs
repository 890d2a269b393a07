//! Writes an export folder in the managed export's layout:
//!
//! ```text
//! DIR/
//!   DIR.overall_export_metadata
//!   all_namespaces/all_kinds/all_namespaces_all_kinds.export_metadata
//!   all_namespaces/all_kinds/output-0 … output-N
//! ```
//!
//! Each data file is a LevelDB log of `EntityProto` records, closed at
//! about 32 MiB. Files are written under temporary names and renamed into
//! place at the end; the overall metadata comes last, so a folder whose
//! writing stopped half-way has none and is never taken for an export.

use std::fs::File;
use std::io::BufWriter;
use std::path::{Path, PathBuf};

use super::layout::{FOLDER_SUFFIX, OVERALL_SUFFIX};
use super::log::LogWriter;
use super::{map, proto};
use crate::error::{Error, Result};
use crate::model::Entity;
use crate::repo::fsutil;

const SUB: &str = "all_namespaces/all_kinds";
const FOLDER_META: &str = "all_namespaces_all_kinds";
/// A data file is closed once it holds this many bytes.
const FILE_BYTES: u64 = 32 << 20;

pub struct ExportWriter {
    dir: PathBuf,
    name: String,
    current: Option<LogWriter<BufWriter<File>>>,
    /// Finished data files: temporary path, final name.
    done: Vec<(PathBuf, String)>,
    record: Vec<u8>,
    pub entities: u64,
    pub bytes: u64,
    started_us: i64,
}

fn now_us() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_micros() as i64)
        .unwrap_or(0)
}

impl ExportWriter {
    /// Start writing an export into `dir` (created if missing; an export
    /// already there is replaced at `finish`).
    pub fn create(dir: &Path) -> Result<ExportWriter> {
        let name = dir
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .filter(|n| !n.is_empty() && n != "." && n != "..")
            .ok_or_else(|| Error::BadLocation {
                spec: format!("datastore-export:{}", dir.display()),
                why: "give a folder name, as in `datastore-export:exports/2026-11-20`".into(),
            })?;
        let sub = dir.join(SUB);
        std::fs::create_dir_all(&sub).map_err(Error::io("creating", &sub))?;
        fsutil::remove_dead_temps(&sub, Some(".export"));
        Ok(ExportWriter {
            dir: dir.to_path_buf(),
            name,
            current: None,
            done: Vec::new(),
            record: Vec::new(),
            entities: 0,
            bytes: 0,
            started_us: now_us(),
        })
    }

    fn tmp(&self) -> PathBuf {
        fsutil::temp_path(&self.dir.join(SUB), ".export")
    }

    pub fn write(&mut self, entity: &Entity) -> Result<()> {
        self.record.clear();
        map::encode_entity(entity, &mut self.record).map_err(|why| Error::Rejected {
            key: entity.key.to_string(),
            reason: format!("cannot be written as an App Engine entity: {why}"),
        })?;
        if self.current.is_none() {
            let tmp = self.tmp();
            let f = File::create(&tmp).map_err(Error::io("creating", &tmp))?;
            self.done.push((tmp, format!("output-{}", self.done.len())));
            self.current = Some(LogWriter::new(BufWriter::with_capacity(1 << 20, f)));
        }
        let (tmp, _) = self
            .done
            .last()
            .ok_or(Error::Internal("no export file open"))?;
        let w = self
            .current
            .as_mut()
            .ok_or(Error::Internal("no export file open"))?;
        w.write_record(&self.record)
            .map_err(Error::io("writing", tmp.clone()))?;
        self.entities += 1;
        self.bytes += self.record.len() as u64;
        if w.bytes >= FILE_BYTES {
            self.close_file()?;
        }
        Ok(())
    }

    fn close_file(&mut self) -> Result<()> {
        if let Some(w) = self.current.take() {
            let tmp = &self
                .done
                .last()
                .ok_or(Error::Internal("no export file open"))?
                .0;
            let f = w.finish().map_err(Error::io("writing", tmp.clone()))?;
            let f = f
                .into_inner()
                .map_err(|e| Error::io("writing", tmp.clone())(e.into_error()))?;
            f.sync_all().map_err(Error::io("syncing", tmp.clone()))?;
        }
        Ok(())
    }

    /// Move the data files into place and write the metadata.
    pub fn finish(mut self) -> Result<()> {
        self.close_file()?;
        let sub = self.dir.join(SUB);
        if self.done.is_empty() {
            // An export of nothing still has its (empty) first data file.
            let tmp = self.tmp();
            File::create(&tmp).map_err(Error::io("creating", &tmp))?;
            self.done.push((tmp, "output-0".into()));
        }
        let overall = self.dir.join(format!("{}{OVERALL_SUFFIX}", self.name));
        match std::fs::remove_file(&overall) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
                return Err(Error::io("removing", &overall)(e))
            }
            _ => {}
        }
        let names: Vec<String> = self.done.iter().map(|(_, n)| n.clone()).collect();
        for (tmp, name) in std::mem::take(&mut self.done) {
            fsutil::commit_output(&tmp, &sub.join(name))?;
        }
        remove_stale_outputs(&sub, names.len())?;
        let folder_meta = format!("{FOLDER_META}{FOLDER_SUFFIX}");
        write_log(&sub.join(&folder_meta), &folder_record(&names))?;
        let overall_record = self.overall_record(&format!("{SUB}/{folder_meta}"));
        write_log(&overall, &overall_record)
    }

    /// The overall metadata's message, shaped like the `Backup` message of
    /// App Engine's Datastore Admin backups (`backup.proto`): a
    /// `BackupInfo` (name, start and end time in µs) and one
    /// `KindBackupInfo` naming the all-kinds metadata file.
    fn overall_record(&self, folder_meta: &str) -> Vec<u8> {
        let mut out = Vec::new();
        proto::put_message(&mut out, 1, |info| {
            proto::put_bytes(info, 1, self.name.as_bytes());
            proto::put_int(info, 2, self.started_us);
            proto::put_int(info, 3, now_us());
        });
        proto::put_message(&mut out, 2, |kind| {
            proto::put_bytes(kind, 1, b"__all__");
            proto::put_bytes(kind, 2, folder_meta.as_bytes());
        });
        out
    }
}

/// The folder metadata's message: a `KindBackupInfo` listing the files.
fn folder_record(files: &[String]) -> Vec<u8> {
    let mut out = Vec::new();
    proto::put_bytes(&mut out, 1, b"__all__");
    for f in files {
        proto::put_bytes(&mut out, 2, f.as_bytes());
    }
    out
}

/// A metadata file: a log of two records, the format version ("1") and
/// the message.
fn write_log(path: &Path, message: &[u8]) -> Result<()> {
    let dir = fsutil::parent_dir(path);
    let tmp = fsutil::temp_path(dir, ".export");
    let f = File::create(&tmp).map_err(Error::io("creating", &tmp))?;
    let mut w = LogWriter::new(BufWriter::new(f));
    let written = w
        .write_record(b"1")
        .and_then(|_| w.write_record(message))
        .and_then(|_| w.finish().map(drop));
    if let Err(e) = written {
        let _ = std::fs::remove_file(&tmp);
        return Err(Error::io("writing", &tmp)(e));
    }
    fsutil::commit_output(&tmp, path)
}

/// Data files of an earlier, larger export in the same folder.
fn remove_stale_outputs(sub: &Path, keep: usize) -> Result<()> {
    let entries = std::fs::read_dir(sub).map_err(Error::io("listing", sub))?;
    for entry in entries.flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        let stale = name
            .strip_prefix("output-")
            .and_then(|n| n.parse::<usize>().ok())
            .is_some_and(|n| n >= keep);
        if stale {
            let p = entry.path();
            std::fs::remove_file(&p).map_err(Error::io("removing", &p))?;
        }
    }
    Ok(())
}

impl Drop for ExportWriter {
    fn drop(&mut self) {
        for (tmp, _) in &self.done {
            let _ = std::fs::remove_file(tmp);
        }
    }
}
