//! JSON Lines files: one entity per line in the Cloud Datastore v1 REST
//! JSON shape (see docs/format.md). Blank lines are skipped.

use std::fs::File;
use std::io::{BufRead, BufReader, BufWriter, Write};
use std::path::{Path, PathBuf};

use super::EntitySource;
use crate::error::{Error, Result};
use crate::model::{json, Entity};

pub struct JsonlSource {
    path: PathBuf,
    shown: String,
}

impl JsonlSource {
    pub fn open(path: &Path) -> Result<JsonlSource> {
        let meta = std::fs::metadata(path).map_err(|e| match e.kind() {
            std::io::ErrorKind::NotFound => Error::BadLocation {
                spec: format!("jsonl:{}", path.display()),
                why: "no such file".into(),
            },
            _ => Error::Io { op: "opening", path: path.to_path_buf(), source: e },
        })?;
        if meta.is_dir() {
            return Err(Error::BadLocation { spec: format!("jsonl:{}", path.display()), why: "is a directory".into() });
        }
        Ok(JsonlSource { path: path.to_path_buf(), shown: path.display().to_string() })
    }
}

impl EntitySource for JsonlSource {
    fn source_id(&self) -> String {
        let abs = std::fs::canonicalize(&self.path).unwrap_or_else(|_| self.path.clone());
        format!("jsonl:{}", abs.display())
    }

    fn for_each(&mut self, f: &mut dyn FnMut(Entity, u64) -> Result<()>) -> Result<()> {
        let file = File::open(&self.path).map_err(Error::io("opening", &self.path))?;
        let mut r = BufReader::with_capacity(1 << 20, file);
        let mut line = String::new();
        let mut n = 0u64;
        loop {
            line.clear();
            let read = r.read_line(&mut line).map_err(|e| Error::Source {
                file: self.shown.clone(),
                line: n + 1,
                message: format!("cannot read: {e}"),
            })?;
            if read == 0 {
                return Ok(());
            }
            n += 1;
            let text = line.trim();
            if text.is_empty() {
                continue;
            }
            let entity = json::entity_from_json(text).map_err(|e| Error::Source {
                file: self.shown.clone(),
                line: n,
                message: e.to_string(),
            })?;
            if !entity.key.is_complete() {
                return Err(Error::Source {
                    file: self.shown.clone(),
                    line: n,
                    message: "the entity's key is incomplete; every path element needs an `id` or a `name`".into(),
                });
            }
            f(entity, n)?;
        }
    }

    fn describe(&self, origin: u64) -> String {
        format!("{}:{origin}", self.shown)
    }
}

/// Writes entities as JSON Lines, to a temp file renamed into place at the
/// end so a failed export never leaves a half file under the final name.
pub struct JsonlSink {
    path: PathBuf,
    tmp: PathBuf,
    out: Option<BufWriter<File>>,
    pub written: u64,
}

impl JsonlSink {
    pub fn create(path: &Path) -> Result<JsonlSink> {
        if path == Path::new("-") {
            return Err(Error::BadLocation { spec: "jsonl:-".into(), why: "write to a file".into() });
        }
        let dir = path.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(Path::new("."));
        let tmp = crate::repo::fsutil::temp_path(dir, ".export");
        let f = File::create(&tmp).map_err(Error::io("creating", &tmp))?;
        Ok(JsonlSink { path: path.to_path_buf(), tmp, out: Some(BufWriter::with_capacity(1 << 20, f)), written: 0 })
    }

    pub fn write(&mut self, entity: &Entity) -> Result<()> {
        let out = self.out.as_mut().ok_or(Error::Interrupted)?;
        let line = json::entity_to_json(entity);
        out.write_all(line.as_bytes()).and_then(|_| out.write_all(b"\n")).map_err(Error::io("writing", &self.tmp))?;
        self.written += 1;
        Ok(())
    }

    pub fn finish(mut self) -> Result<()> {
        if let Some(mut out) = self.out.take() {
            out.flush().map_err(Error::io("writing", &self.tmp))?;
        }
        crate::repo::fsutil::commit_file(&self.tmp, &self.path)
    }
}

impl Drop for JsonlSink {
    fn drop(&mut self) {
        if self.out.take().is_some() {
            let _ = std::fs::remove_file(&self.tmp);
        }
    }
}
