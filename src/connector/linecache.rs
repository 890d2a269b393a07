//! The line cache of JSON Lines sources: what each line of the file parsed
//! to the last time, so that a daily snapshot of a mostly unchanged file
//! parses, transcodes and hashes only the lines that changed.
//!
//! A cache file belongs to one repository, one source and one kind filter
//! (its path says which; see [`cache_path`]) and to the snapshot it was
//! written for (its trailer says which). A snapshot uses it only when that
//! snapshot is its parent, so every entity it vouches for is stored in the
//! repository already.
//!
//! Lines are matched by a 128-bit xxh3 fingerprint of their bytes, seeded
//! with a random number kept in the file. A record holds the fingerprint
//! and what the line parsed to: namespace, kind, key, entity hash and the
//! size of the canonical body. Records are in file order, and the reader
//! walks them beside the new file with a window of [`WINDOW`] records, so
//! lines inserted, deleted or changed anywhere cost a parse each and
//! memory stays bounded whatever the size of the file.
//!
//! The cache is only ever a shortcut: a missing, stale or damaged file
//! means lines are parsed, never that a snapshot is wrong. Damage cannot
//! make a line match a record it did not produce: each record carries a
//! checksum of itself, and a line matches only a record with its 128-bit
//! fingerprint.
//!
//! Layout: records, then a 72-byte trailer.
//!
//! ```text
//! record:  check u64 | fp u128 | hash [32] | size u32 | ns_len u16 | kind_len u16 | key_len u32 | ns | kind | key
//! trailer: seed u64 | records u64 | snapshot id [32] | stamp [16] | magic [8]
//! ```
//! `check` is the xxh3 of the rest of the record: a damaged record is
//! a miss, never a wrong hit. Integers are little-endian. The stamp changes with every kindsnap
//! version, so a cache never outlives the code that parsed its lines.
//!
//! For an encrypted repository the same records and trailer are sealed
//! with its keys (docs/format.md): the records as one sealed stream, the
//! trailer as a sealed object, then the stream's length (u64) and
//! `KSLINESE`. A chunk that fails authentication ends the cache there
//! (the rest of the file is parsed), as a damaged record does.

use std::collections::{HashMap, VecDeque};
use std::fs::File;
use std::io::{BufReader, BufWriter, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

use std::sync::Arc;

use crate::error::{Error, Result};
use crate::ids::{EntityHash, SnapshotId};
use crate::repo::crypto::{Keys, SealReader, SealWriter, NONCE_LEN, TAG_LEN};

use super::Encoded;

const MAGIC: &[u8; 8] = b"KSLINES1";
/// The magic of a sealed cache (an encrypted repository's).
const SEALED_MAGIC: &[u8; 8] = b"KSLINESE";
/// A sealed trailer: nonce, the 72 bytes, tag.
const SEALED_TRAILER: usize = NONCE_LEN + TRAILER + TAG_LEN;
const TRAILER_AAD: &[u8] = b"KSLINESE trailer";
const TRAILER: usize = 72;
const HEAD: usize = 8 + 16 + 32 + 4 + 2 + 2 + 4;

/// Records looked ahead of the current position: a block of up to this
/// many deleted or moved lines still finds its successors.
pub const WINDOW: usize = 16 * 1024;

/// Where the cache of one source lives: `<cache>/lines/<repository id>/`,
/// one file per source and kind filter (named by a keyed hash for an
/// encrypted repository, so the name confirms no guessed source).
pub fn cache_path(
    keys: Option<&Keys>,
    cache_root: &Path,
    repo_id: &str,
    (source_id, kinds_key): (&str, &str),
) -> PathBuf {
    let mut h = match keys {
        Some(k) => k.object_hasher(),
        None => blake3::Hasher::new(),
    };
    h.update(source_id.as_bytes());
    h.update(b"\0");
    h.update(kinds_key.as_bytes());
    let name = hex::encode(&h.finalize().as_bytes()[..16]);
    cache_root.join("lines").join(repo_id).join(name)
}

fn stamp() -> [u8; 16] {
    let h = blake3::hash(concat!("kindsnap line cache 1 ", env!("CARGO_PKG_VERSION")).as_bytes());
    let mut s = [0u8; 16];
    s.copy_from_slice(&h.as_bytes()[..16]);
    s
}

/// The fingerprint of one (trimmed, non-empty) line.
pub fn fingerprint(seed: u64, line: &[u8]) -> u128 {
    xxhash_rust::xxh3::xxh3_128_with_seed(line, seed)
}

/// One record, borrowed from the reader's buffer.
#[derive(Debug, Clone, Copy)]
pub struct Hit<'a> {
    pub namespace: &'a str,
    pub kind: &'a str,
    pub key: &'a [u8],
    pub hash: EntityHash,
    pub size: u32,
    /// The record's bytes, to copy into the next cache as they are.
    pub raw: &'a [u8],
}

impl<'a> Hit<'a> {
    fn decode(raw: &'a [u8]) -> Option<Hit<'a>> {
        let check = u64::from_le_bytes(raw.get(..8)?.try_into().ok()?);
        if check != xxhash_rust::xxh3::xxh3_64(raw.get(8..)?) {
            return None;
        }
        let hash = EntityHash::from_slice(raw.get(24..56)?)?;
        let size = u32::from_le_bytes(raw.get(56..60)?.try_into().ok()?);
        let ns_len = u16::from_le_bytes(raw.get(60..62)?.try_into().ok()?) as usize;
        let kind_len = u16::from_le_bytes(raw.get(62..64)?.try_into().ok()?) as usize;
        let rest = raw.get(HEAD..)?;
        let namespace = std::str::from_utf8(rest.get(..ns_len)?).ok()?;
        let kind = std::str::from_utf8(rest.get(ns_len..ns_len + kind_len)?).ok()?;
        let key = rest.get(ns_len + kind_len..)?;
        Some(Hit {
            namespace,
            kind,
            key,
            hash,
            size,
            raw,
        })
    }
}

/// The 72-byte trailer and the length of the records before it: plain,
/// or (with `keys`) opened from a sealed cache. None when the file is not
/// a cache of this kind (too short, another kind, not authentic).
fn read_trailer(
    file: &mut File,
    len: u64,
    keys: Option<&Keys>,
) -> std::io::Result<Option<([u8; TRAILER], u64)>> {
    let Some(k) = keys else {
        if len < TRAILER as u64 {
            return Ok(None);
        }
        file.seek(SeekFrom::Start(len - TRAILER as u64))?;
        let mut t = [0u8; TRAILER];
        file.read_exact(&mut t)?;
        return Ok(Some((t, len - TRAILER as u64)));
    };
    let tail = (SEALED_TRAILER + 16) as u64;
    if len < tail {
        return Ok(None);
    }
    file.seek(SeekFrom::Start(len - tail))?;
    let mut end = vec![0u8; tail as usize];
    file.read_exact(&mut end)?;
    let (sealed, rest) = end.split_at(SEALED_TRAILER);
    let records_len = u64::from_le_bytes(rest[..8].try_into().unwrap_or_default());
    if &rest[8..] != SEALED_MAGIC || records_len != len - tail {
        return Ok(None);
    }
    let Ok(plain) = k.open(TRAILER_AAD, sealed) else {
        return Ok(None);
    };
    let Ok(t) = <[u8; TRAILER]>::try_from(&plain[..]) else {
        return Ok(None);
    };
    Ok(Some((t, records_len)))
}

/// Reads the parent's cache beside the new file, in order.
pub struct Reader {
    file: BufReader<Box<dyn Read + Send>>,
    /// Records not read from the file yet.
    unread: u64,
    seed: u64,
    /// Bytes of the records in `recs`, from `recs[0]`'s offset on (and
    /// some already taken, until the next compaction).
    data: Vec<u8>,
    /// (fingerprint, offset in `data`, length) of the window's records.
    recs: VecDeque<(u128, usize, usize)>,
    /// Sequence number of `recs[0]`.
    first: u64,
    /// Fingerprint → sequence number, for the records in the window.
    map: HashMap<u128, u64>,
}

impl Reader {
    /// The cache at `path` if it was written for snapshot `parent` by this
    /// version of kindsnap; `None` (and why, at debug level) otherwise.
    pub fn open(path: &Path, parent: &SnapshotId, keys: Option<Arc<Keys>>) -> Option<Reader> {
        match Self::try_open(path, parent, keys) {
            Ok(r) => r,
            Err(e) => {
                tracing::debug!("line cache {}: not used: {e}", path.display());
                None
            }
        }
    }

    fn try_open(
        path: &Path,
        parent: &SnapshotId,
        keys: Option<Arc<Keys>>,
    ) -> std::io::Result<Option<Reader>> {
        let mut file = match File::open(path) {
            Ok(f) => f,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(e),
        };
        let len = file.metadata()?.len();
        let Some((t, records_len)) = read_trailer(&mut file, len, keys.as_deref())? else {
            tracing::debug!(
                "line cache {}: no trailer this repository can read",
                path.display()
            );
            return Ok(None);
        };
        let seed = u64::from_le_bytes(t[0..8].try_into().unwrap_or_default());
        let records = u64::from_le_bytes(t[8..16].try_into().unwrap_or_default());
        let why = if &t[64..72] != MAGIC {
            Some("not a line cache")
        } else if t[48..64] != stamp() {
            Some("written by another version of kindsnap")
        } else if &t[16..48] != parent.as_bytes() {
            Some("written for another snapshot than the parent")
        } else {
            None
        };
        if let Some(why) = why {
            tracing::debug!("line cache {}: {why}", path.display());
            return Ok(None);
        }
        file.seek(SeekFrom::Start(0))?;
        // Records past the trailer's start would be the trailer itself.
        let records_file = file.take(records_len);
        let source: Box<dyn Read + Send> = match keys {
            Some(k) => Box::new(SealReader::new(k, records_file, SEALED_MAGIC, 0)?),
            None => Box::new(records_file),
        };
        Ok(Some(Reader {
            file: BufReader::with_capacity(1 << 20, source),
            unread: records,
            seed,
            data: Vec::new(),
            recs: VecDeque::new(),
            first: 0,
            map: HashMap::new(),
        }))
    }

    pub fn seed(&self) -> u64 {
        self.seed
    }

    /// Read records until the window is full or the file ends. A record
    /// that does not parse ends the cache early (the rest is parsed).
    fn fill(&mut self) {
        // Drop the bytes of records already taken once they are the bulk.
        if let Some(&(_, off, _)) = self.recs.front() {
            if off > (1 << 20) && off > self.data.len() / 2 {
                self.data.drain(..off);
                for r in self.recs.iter_mut() {
                    r.1 -= off;
                }
            }
        } else {
            self.data.clear();
        }
        while self.recs.len() < WINDOW && self.unread > 0 {
            let off = self.data.len();
            self.data.resize(off + HEAD, 0);
            if self.file.read_exact(&mut self.data[off..]).is_err() {
                self.data.truncate(off);
                self.unread = 0;
                break;
            }
            let h = &self.data[off..];
            let fp = u128::from_le_bytes(h[8..24].try_into().unwrap_or_default());
            let ns = u16::from_le_bytes([h[60], h[61]]) as usize;
            let kind = u16::from_le_bytes([h[62], h[63]]) as usize;
            let key = u32::from_le_bytes([h[64], h[65], h[66], h[67]]) as usize;
            let rest = ns + kind + key;
            if rest > 1 << 20 {
                self.data.truncate(off);
                self.unread = 0;
                break;
            }
            self.data.resize(off + HEAD + rest, 0);
            if self.file.read_exact(&mut self.data[off + HEAD..]).is_err() {
                self.data.truncate(off);
                self.unread = 0;
                break;
            }
            self.unread -= 1;
            let seq = self.first + self.recs.len() as u64;
            self.recs.push_back((fp, off, HEAD + rest));
            self.map.insert(fp, seq);
        }
    }

    fn pop_front(&mut self) {
        if let Some((fp, _, _)) = self.recs.pop_front() {
            if self.map.get(&fp) == Some(&self.first) {
                self.map.remove(&fp);
            }
            self.first += 1;
        }
    }

    /// The record of the line with fingerprint `fp`: the next record, or
    /// one further on (the records skipped are lines deleted or changed
    /// since). `None` for a line that is new here.
    pub fn take(&mut self, fp: u128) -> Option<Hit<'_>> {
        if self.recs.len() < WINDOW / 2 {
            self.fill();
        }
        let seq = match self.recs.front() {
            Some(&(f, _, _)) if f == fp => self.first,
            Some(_) => *self.map.get(&fp)?,
            None => return None,
        };
        while self.first < seq {
            self.pop_front();
        }
        let (_, off, len) = *self.recs.front()?;
        self.pop_front();
        Hit::decode(&self.data[off..off + len])
    }
}

/// Writes the cache for the snapshot being taken; [`Writer::commit`] puts
/// it in place once the snapshot is published, and dropping it uncommitted
/// removes the temporary file.
pub struct Writer {
    path: PathBuf,
    tmp: PathBuf,
    out: Option<Out>,
    seed: u64,
    records: u64,
    failed: bool,
    /// A record being put together.
    rec: Vec<u8>,
}

/// Where records go: the file, or a sealed stream into it.
enum Out {
    Plain(BufWriter<File>),
    Sealed(SealWriter<BufWriter<File>>, Arc<Keys>),
}

impl Out {
    fn write_all(&mut self, bytes: &[u8]) -> std::io::Result<()> {
        match self {
            Out::Plain(w) => w.write_all(bytes),
            Out::Sealed(w, _) => w.write_all(bytes),
        }
    }

    /// Write the trailer after the records and flush everything.
    fn finish(self, trailer: &[u8; TRAILER]) -> std::io::Result<()> {
        let mut file = match self {
            Out::Plain(mut w) => {
                w.write_all(trailer)?;
                w
            }
            Out::Sealed(w, keys) => {
                let mut file = w.finish()?;
                file.flush()?;
                let records_len = file.get_ref().metadata()?.len();
                file.write_all(&keys.seal(TRAILER_AAD, trailer))?;
                file.write_all(&records_len.to_le_bytes())?;
                file.write_all(SEALED_MAGIC)?;
                file
            }
        };
        file.flush()
    }
}

impl Writer {
    pub fn create(path: &Path, seed: u64, keys: Option<Arc<Keys>>) -> Result<Writer> {
        let dir = path.parent().unwrap_or(Path::new("."));
        crate::repo::fsutil::private_dir(dir).map_err(Error::io("creating", dir))?;
        remove_stale_temps(dir);
        let tmp = crate::repo::fsutil::temp_path(dir, ".lines");
        let f =
            crate::repo::fsutil::private_file(&tmp, true).map_err(Error::io("creating", &tmp))?;
        let file = BufWriter::with_capacity(256 << 10, f);
        let out = match keys {
            None => Out::Plain(file),
            Some(k) => Out::Sealed(
                SealWriter::new(Arc::clone(&k), file, SEALED_MAGIC)
                    .map_err(Error::io("writing", &tmp))?,
                k,
            ),
        };
        Ok(Writer {
            path: path.to_path_buf(),
            tmp,
            out: Some(out),
            seed,
            records: 0,
            failed: false,
            rec: Vec::new(),
        })
    }

    fn write(&mut self, bytes: &[u8]) {
        if let Some(out) = &mut self.out {
            if out.write_all(bytes).is_err() {
                self.failed = true;
                self.out = None;
            }
        }
    }

    /// A record copied from the parent's cache.
    pub fn copy(&mut self, hit: &Hit<'_>) {
        self.write(hit.raw);
        self.records += 1;
    }

    /// A record for a line parsed in this run.
    pub fn record(&mut self, fp: u128, e: &Encoded<'_>) {
        let (ns, kind) = (e.namespace.as_bytes(), e.kind.as_bytes());
        if ns.len() > u16::MAX as usize || kind.len() > u16::MAX as usize || e.key.len() > 1 << 20 {
            // Never happens with real names; such a line is just parsed
            // again next time.
            return;
        }
        let mut rec = std::mem::take(&mut self.rec);
        rec.clear();
        rec.extend_from_slice(&[0u8; 8]);
        rec.extend_from_slice(&fp.to_le_bytes());
        rec.extend_from_slice(e.hash.as_bytes());
        rec.extend_from_slice(&e.size.to_le_bytes());
        rec.extend_from_slice(&(ns.len() as u16).to_le_bytes());
        rec.extend_from_slice(&(kind.len() as u16).to_le_bytes());
        rec.extend_from_slice(&(e.key.len() as u32).to_le_bytes());
        rec.extend_from_slice(ns);
        rec.extend_from_slice(kind);
        rec.extend_from_slice(e.key);
        let check = xxhash_rust::xxh3::xxh3_64(&rec[8..]);
        rec[..8].copy_from_slice(&check.to_le_bytes());
        self.write(&rec);
        self.rec = rec;
        self.records += 1;
    }

    /// Seal the cache as belonging to snapshot `id` and put it in place.
    pub fn commit(mut self, id: &SnapshotId) -> Result<()> {
        let mut t = [0u8; TRAILER];
        t[0..8].copy_from_slice(&self.seed.to_le_bytes());
        t[8..16].copy_from_slice(&self.records.to_le_bytes());
        t[16..48].copy_from_slice(id.as_bytes());
        t[48..64].copy_from_slice(&stamp());
        t[64..72].copy_from_slice(MAGIC);
        let out = self.out.take();
        if self.failed {
            let _ = std::fs::remove_file(&self.tmp);
            return Err(Error::Internal("writing the line cache failed"));
        }
        if let Some(out) = out {
            out.finish(&t).map_err(Error::io("writing", &self.tmp))?;
        }
        std::fs::rename(&self.tmp, &self.path).map_err(Error::io("renaming", &self.tmp))
    }
}

/// Temporary files of runs that were killed: those whose writer's pid is
/// gone. Where the system cannot tell (no `/proc`), an hour without a
/// write stands in (a live run rewrites its file as it reads).
fn remove_stale_temps(dir: &Path) {
    use crate::repo::fsutil;
    if fsutil::pids_visible() {
        fsutil::remove_dead_temps(dir, Some(".lines"));
        return;
    }
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for e in entries.flatten() {
        let name = e.file_name();
        let ours = name
            .to_str()
            .and_then(fsutil::temp_owner)
            .is_some_and(|(prefix, _)| prefix == ".lines");
        if !ours {
            continue;
        }
        let old = e
            .metadata()
            .and_then(|m| m.modified())
            .ok()
            .and_then(|t| t.elapsed().ok())
            .is_some_and(|age| age.as_secs() > 3600);
        if old {
            let _ = std::fs::remove_file(e.path());
        }
    }
}

impl Drop for Writer {
    fn drop(&mut self) {
        if self.out.take().is_some() || self.failed {
            let _ = std::fs::remove_file(&self.tmp);
        }
    }
}
