//! Where an export's files are: a local folder, or a folder on object
//! storage (`gs://BUCKET/PREFIX`, `s3://…`) reached through the
//! repository's object-store client ([`crate::repo::remote::Remote`]), with
//! its credential rules. Remote files are read in ranges, so memory stays
//! at one range per file being read whatever the file's size.

use std::io::{self, Read};
use std::path::PathBuf;
use std::sync::Arc;

use crate::error::{Error, Result};
use crate::net::Timeouts;
use crate::repo::remote::Remote;

/// Bytes fetched per request once a remote file is being read; the first
/// request is small, since often only the first record is wanted.
const RANGE: u64 = 8 << 20;
const FIRST_RANGE: u64 = 64 << 10;

#[derive(Clone)]
pub enum Folder {
    Local(PathBuf),
    Remote(Arc<Remote>),
}

impl Folder {
    pub fn open(location: &str, timeouts: &Timeouts) -> Result<Folder> {
        if crate::repo::remote::is_remote_url(location) {
            // The environment's endpoint (AWS_ENDPOINT_URL) and credentials
            // apply; KINDSNAP_S3_ENDPOINT, which the CLI resolves for
            // repositories only, does not reach sources yet.
            let options = crate::repo::remote::RemoteOptions::new(*timeouts);
            Ok(Folder::Remote(Arc::new(Remote::new(location, &options)?)))
        } else {
            Ok(Folder::Local(PathBuf::from(location)))
        }
    }

    /// A file of the folder as the user would write it.
    pub fn show(&self, rel: &str) -> String {
        match self {
            Folder::Local(p) => p.join(rel).display().to_string(),
            Folder::Remote(r) => format!("{}/{rel}", r.url()),
        }
    }

    /// Every file under the folder (recursively): path relative to it
    /// with `/` separators, and size.
    pub fn list(&self) -> Result<Vec<(String, u64)>> {
        match self {
            Folder::Remote(r) => r.list(""),
            Folder::Local(root) => {
                let mut out = Vec::new();
                let mut dirs = vec![(root.clone(), String::new())];
                while let Some((dir, rel)) = dirs.pop() {
                    let entries = std::fs::read_dir(&dir).map_err(Error::io("listing", &dir))?;
                    for entry in entries {
                        let entry = entry.map_err(Error::io("listing", &dir))?;
                        let name = entry.file_name().to_string_lossy().into_owned();
                        let path = entry.path();
                        let meta = entry.metadata().map_err(Error::io("reading", &path))?;
                        let rel = if rel.is_empty() {
                            name
                        } else {
                            format!("{rel}/{name}")
                        };
                        if meta.is_dir() {
                            dirs.push((path, rel));
                        } else {
                            out.push((rel, meta.len()));
                        }
                    }
                }
                out.sort();
                Ok(out)
            }
        }
    }

    /// A reader of one file, streaming.
    pub fn reader(&self, rel: &str, size: u64) -> Result<Box<dyn Read + Send>> {
        match self {
            Folder::Local(root) => {
                let path = root.join(rel);
                let f = std::fs::File::open(&path).map_err(Error::io("opening", &path))?;
                Ok(Box::new(io::BufReader::with_capacity(1 << 20, f)))
            }
            Folder::Remote(r) => Ok(Box::new(RangeReader {
                remote: Arc::clone(r),
                rel: rel.to_string(),
                size,
                next: 0,
                buf: Vec::new(),
                pos: 0,
            })),
        }
    }

    /// A whole (small) file.
    pub fn read_all(&self, rel: &str) -> Result<Vec<u8>> {
        match self {
            Folder::Local(root) => {
                let path = root.join(rel);
                std::fs::read(&path).map_err(Error::io("reading", &path))
            }
            Folder::Remote(r) => r.get(rel)?.ok_or_else(|| Error::BadLocation {
                spec: format!("datastore-export:{}", self.show(rel)),
                why: "no such object".into(),
            }),
        }
    }
}

/// A remote object read range by range.
struct RangeReader {
    remote: Arc<Remote>,
    rel: String,
    size: u64,
    next: u64,
    buf: Vec<u8>,
    pos: usize,
}

impl Read for RangeReader {
    fn read(&mut self, out: &mut [u8]) -> io::Result<usize> {
        if self.pos == self.buf.len() {
            if self.next >= self.size {
                return Ok(0);
            }
            let want = if self.next == 0 { FIRST_RANGE } else { RANGE };
            let end = (self.next + want).min(self.size);
            self.buf = self
                .remote
                .get_range(&self.rel, self.next..end)
                .map_err(|e| io::Error::other(format!("{e:#}")))?;
            if self.buf.is_empty() {
                return Err(io::Error::other(format!(
                    "{} ended early at byte {}",
                    self.rel, self.next
                )));
            }
            self.next += self.buf.len() as u64;
            self.pos = 0;
        }
        let n = out.len().min(self.buf.len() - self.pos);
        out[..n].copy_from_slice(&self.buf[self.pos..self.pos + n]);
        self.pos += n;
        Ok(n)
    }
}
