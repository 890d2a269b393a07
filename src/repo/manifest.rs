//! Snapshot manifests: one file per snapshot, named by the blake3 of its
//! bytes. A manifest holds the snapshot's metadata and per-kind totals and
//! digests (a small JSON header, readable without touching the rest), and
//! its key → entity-hash mapping as *changes against its parent* in a
//! zstd-compressed SQLite database; every `keyframe_interval` snapshots
//! (and for the first one) it also holds the full table. Reading a
//! snapshot's state is a merge of the chain back to the nearest keyframe.
//!
//! File layout: `KSSNAP01`, u32 LE header length, header JSON, then one zstd
//! frame holding the SQLite file. The database is decompressed to a temp
//! file the first time a table is read, and removed when the manifest is
//! dropped.
//!
//! A manifest is written to a temp file, fsynced, hashed and renamed into
//! `snapshots/`: its arrival there is the snapshot's commit point.

use std::cell::{Cell, OnceCell};
use std::collections::VecDeque;
use std::fs::{self, File};
use std::io::{BufReader, BufWriter, Read, Write};
use std::path::{Path, PathBuf};

use rusqlite::{params, Connection, OpenFlags, OptionalExtension};
use serde::{Deserialize, Serialize};

use std::sync::Arc;

use super::crypto::Keys;
use super::{fsutil, Repository};
use crate::error::{Error, Result};
use crate::ids::{EntityHash, SnapshotId};

pub const MANIFEST_MAGIC: &[u8; 8] = b"KSSNAP01";
pub const MANIFEST_VERSION: i64 = 1;
/// Header format of manifests written by `forget` (they carry `replaces`).
/// Readers accept both; the database inside is the same (version 1).
pub const MANIFEST_HEADER_V2: i64 = 2;
/// Header format of manifests that carry `tags` (repository format 3).
pub const MANIFEST_HEADER_V3: i64 = 3;

const SCHEMA: &str = "
CREATE TABLE changes(
    kid INTEGER NOT NULL,
    key BLOB NOT NULL,
    op INTEGER NOT NULL,
    hash BLOB,
    size INTEGER NOT NULL,
    PRIMARY KEY(kid, key)
) WITHOUT ROWID;
CREATE TABLE entries(
    kid INTEGER NOT NULL,
    key BLOB NOT NULL,
    hash BLOB NOT NULL,
    size INTEGER NOT NULL,
    PRIMARY KEY(kid, key)
) WITHOUT ROWID;
CREATE TABLE meta(
    name TEXT PRIMARY KEY NOT NULL,
    value TEXT NOT NULL
);
";

/// What happened to a key between a snapshot and its parent.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Op {
    Added = 1,
    Changed = 2,
    Removed = 3,
}

impl Op {
    fn from_i64(v: i64) -> Option<Op> {
        match v {
            1 => Some(Op::Added),
            2 => Some(Op::Changed),
            3 => Some(Op::Removed),
            _ => None,
        }
    }
}

/// Metadata of one snapshot (the manifest header plus its id and size).
#[derive(Debug, Clone)]
pub struct SnapshotInfo {
    /// The manifest file's id (blake3 of its bytes): what opens it and
    /// what parent pointers name. Internal; people see [`Self::logical`].
    pub id: SnapshotId,
    /// The snapshot's id as printed: the id of its first manifest, which
    /// stays when `forget`, `tag` or `repair --forget` rewrite the
    /// manifest (the last entry of `replaces`, else `id`). Never changes
    /// once printed; lookups by id or prefix match it first.
    pub logical: SnapshotId,
    pub name: String,
    pub time_us: i64,
    pub source: String,
    pub kinds_filter: String,
    pub parent: Option<SnapshotId>,
    pub depth: u32,
    pub keyframe: bool,
    pub entities: u64,
    pub raw_bytes: u64,
    pub bytes_added: u64,
    pub packs_added: u64,
    pub tool: String,
    pub manifest_bytes: u64,
    /// Ids of earlier manifests of this same snapshot that this one
    /// replaces (`forget` folded a forgotten parent into it). A manifest
    /// whose id is listed here is hidden, and a parent pointer naming it
    /// resolves to this manifest (the two hold the same state).
    pub replaces: Vec<SnapshotId>,
    /// Labels given by `snapshot --tag` and `kindsnap tag`, sorted, each
    /// once. Changing them rewrites the manifest; the logical id stays.
    pub tags: Vec<String>,
}

/// Per-kind totals of a manifest.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KindInfo {
    pub kid: i64,
    pub namespace: String,
    pub kind: String,
    pub entities: u64,
    pub raw_bytes: u64,
    #[serde(with = "hex_digest")]
    pub digest: [u8; 32],
    pub added: u64,
    pub changed: u64,
    pub removed: u64,
    pub bytes_added: u64,
}

mod hex_digest {
    use serde::{Deserialize, Deserializer, Serializer};
    pub fn serialize<S: Serializer>(d: &[u8; 32], s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&hex::encode(d))
    }
    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<[u8; 32], D::Error> {
        let s = String::deserialize(d)?;
        let mut out = [0u8; 32];
        hex::decode_to_slice(&s, &mut out).map_err(serde::de::Error::custom)?;
        Ok(out)
    }
}

/// The JSON header of a manifest file.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct Header {
    format: i64,
    name: String,
    time_us: i64,
    source: String,
    kinds_filter: String,
    parent: Option<String>,
    depth: u32,
    keyframe: bool,
    entities: u64,
    raw_bytes: u64,
    bytes_added: u64,
    packs_added: u64,
    tool: String,
    kinds: Vec<KindInfo>,
    /// Header format 2 and 3.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    replaces: Vec<String>,
    /// Header format 3 only.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    tags: Vec<String>,
}

impl Header {
    /// The oldest header format that holds these fields (older builds
    /// reject fields they do not know).
    fn needed_format(&self) -> i64 {
        if !self.tags.is_empty() {
            MANIFEST_HEADER_V3
        } else if !self.replaces.is_empty() {
            MANIFEST_HEADER_V2
        } else {
            MANIFEST_VERSION
        }
    }
}

/// One live key of a snapshot's state.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StateEntry {
    pub key: Vec<u8>,
    pub hash: EntityHash,
    pub size: u64,
}

/// One row of a snapshot's changes against its parent.
#[derive(Debug, Clone)]
pub struct ChangeEntry {
    pub key: Vec<u8>,
    pub op: Op,
    pub hash: Option<EntityHash>,
    pub size: u64,
}

fn bad_hash(path: &Path) -> rusqlite::Error {
    rusqlite::Error::InvalidColumnType(
        0,
        format!("hash in {}", path.display()),
        rusqlite::types::Type::Blob,
    )
}

/// The magic of an encrypted repository's manifest: the rest of the file
/// is one sealed stream (crypto::SealWriter) of what follows the magic in
/// a plain manifest (u32 header length, header, zstd frame).
pub const SEALED_MANIFEST_MAGIC: &[u8; 8] = b"KSSNAPE1";

/// A manifest's bytes after its magic, decrypted when sealed; opened on
/// the file positioned after the magic.
fn body_reader(keys: Option<&Arc<Keys>>, f: File) -> std::io::Result<Box<dyn Read>> {
    let f = BufReader::with_capacity(128 << 10, f);
    Ok(match keys {
        Some(k) => Box::new(crate::repo::crypto::SealReader::new(
            Arc::clone(k),
            f,
            SEALED_MANIFEST_MAGIC,
            8,
        )?),
        None => Box::new(f),
    })
}

/// An error reading a manifest's bytes: an authentication failure when
/// a sealed chunk failed, else `other`.
fn read_failure(path: &Path, e: &std::io::Error, other: impl FnOnce() -> Error) -> Error {
    match crate::repo::crypto::auth_failure_offset(e) {
        Some(at) => Error::AuthFailed {
            file: path.display().to_string(),
            at: format!(" (at byte {at})"),
        },
        None => other(),
    }
}

/// Read a manifest's header (and learn where the database starts: an
/// offset in the bytes after the magic, decrypted when sealed).
fn read_header(
    keys: Option<&Arc<Keys>>,
    path: &Path,
    id: SnapshotId,
) -> Result<(SnapshotInfo, Vec<KindInfo>, u64)> {
    let damaged = |why: String| Error::DamagedSnapshot {
        id: id.to_hex(),
        why,
    };
    let mut f = File::open(path).map_err(|e| match e.kind() {
        std::io::ErrorKind::NotFound => Error::UnknownSnapshot {
            spec: id.to_hex(),
            hint: String::new(),
        },
        _ => Error::Io {
            op: "reading",
            path: path.to_path_buf(),
            source: e,
        },
    })?;
    let len = f.metadata().map_err(Error::io("reading", path))?.len();
    let mut magic = [0u8; 8];
    f.read_exact(&mut magic)
        .map_err(|_| damaged("truncated manifest".into()))?;
    let expected = if keys.is_some() {
        SEALED_MANIFEST_MAGIC
    } else {
        MANIFEST_MAGIC
    };
    if &magic != expected {
        return Err(match keys {
            Some(_) => Error::AuthFailed {
                file: path.display().to_string(),
                at: " (its magic is not an encrypted manifest's)".into(),
            },
            None => damaged("not a kindsnap manifest (bad magic)".into()),
        });
    }
    let mut body = body_reader(keys, f)
        .map_err(|e| read_failure(path, &e, || damaged("truncated manifest".into())))?;
    let mut head = [0u8; 4];
    body.read_exact(&mut head)
        .map_err(|e| read_failure(path, &e, || damaged("truncated manifest".into())))?;
    let hlen = u32::from_le_bytes(head) as u64;
    if hlen > len.saturating_sub(12) {
        return Err(damaged("header length out of range".into()));
    }
    let mut json = vec![0u8; hlen as usize];
    body.read_exact(&mut json)
        .map_err(|e| read_failure(path, &e, || damaged("truncated header".into())))?;
    let h: Header = serde_json::from_slice(&json).map_err(|e| damaged(format!("header: {e}")))?;
    if !(MANIFEST_VERSION..=MANIFEST_HEADER_V3).contains(&h.format) {
        return Err(damaged(format!(
            "manifest version {}, expected {MANIFEST_VERSION} to {MANIFEST_HEADER_V3}",
            h.format
        )));
    }
    let mut replaces = Vec::with_capacity(h.replaces.len());
    for r in &h.replaces {
        replaces.push(
            SnapshotId::from_hex(r).ok_or_else(|| damaged(format!("bad id `{r}` in replaces")))?,
        );
    }
    let info = SnapshotInfo {
        id,
        logical: replaces.last().copied().unwrap_or(id),
        name: h.name,
        time_us: h.time_us,
        source: h.source,
        kinds_filter: h.kinds_filter,
        parent: h.parent.and_then(|p| SnapshotId::from_hex(&p)),
        depth: h.depth,
        keyframe: h.keyframe,
        entities: h.entities,
        raw_bytes: h.raw_bytes,
        bytes_added: h.bytes_added,
        packs_added: h.packs_added,
        tool: h.tool,
        manifest_bytes: len,
        replaces,
        tags: h.tags,
    };
    Ok((info, h.kinds, 4 + hlen))
}

struct Db {
    conn: Connection,
    file: PathBuf,
}

impl Drop for Db {
    fn drop(&mut self) {
        let _ = fs::remove_file(&self.file);
    }
}

/// An open, published manifest.
pub struct Manifest {
    pub info: SnapshotInfo,
    kinds: Vec<KindInfo>,
    path: PathBuf,
    db_offset: u64,
    tmp_dir: PathBuf,
    /// An encrypted repository's keys.
    keys: Option<Arc<Keys>>,
    db: OnceCell<Db>,
    /// The file's bytes hashed to its id (see [`Manifest::verify`]).
    verified: Cell<bool>,
}

impl Manifest {
    pub fn open(repo: &Repository, id: &SnapshotId) -> Result<Manifest> {
        let path = repo.snapshot_path(id);
        let keys = repo.keys().cloned();
        let (info, kinds, db_offset) = read_header(keys.as_ref(), &path, *id)?;
        Ok(Manifest {
            info,
            kinds,
            path,
            db_offset,
            tmp_dir: repo.scratch_dir(),
            keys,
            db: OnceCell::new(),
            verified: Cell::new(false),
        })
    }

    /// Check that the file's bytes hash to the snapshot's id, once. Every
    /// read of a manifest's rows, and every chain, goes through this
    /// before it trusts the header or a row: a damaged manifest fails the
    /// command instead of giving silently incomplete data. (`log` and
    /// `show` read headers without it, for speed.)
    pub fn verify(&self) -> Result<()> {
        if self.verified.get() {
            return Ok(());
        }
        let mut hasher = match &self.keys {
            Some(k) => k.object_hasher(),
            None => blake3::Hasher::new(),
        };
        let mut f = File::open(&self.path).map_err(Error::io("reading", &self.path))?;
        let mut buf = vec![0u8; 256 << 10];
        loop {
            let n = match f.read(&mut buf) {
                Ok(0) => break,
                Ok(n) => n,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(Error::io("reading", &self.path)(e)),
            };
            hasher.update(&buf[..n]);
        }
        if hasher.finalize().as_bytes() != self.info.id.as_bytes() {
            if self.keys.is_some() {
                return Err(Error::AuthFailed {
                    file: self.path.display().to_string(),
                    at: " (its keyed id does not match its content)".into(),
                });
            }
            return Err(self.damaged(
                "its bytes do not hash to its id: the manifest was changed or damaged; \
                 `kindsnap check` reports what depends on it"
                    .into(),
            ));
        }
        self.verified.set(true);
        Ok(())
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    fn damaged(&self, why: String) -> Error {
        Error::DamagedSnapshot {
            id: self.info.id.to_hex(),
            why,
        }
    }

    /// The database, decompressed on first use.
    fn conn(&self) -> Result<&Connection> {
        if self.db.get().is_none() {
            // In the repository's scratch directory; when its disk is full,
            // in the system's temp directory instead (so `check`, `export`
            // and `prune` work on a full repository disk).
            let mut dirs = vec![self.tmp_dir.clone()];
            if std::env::temp_dir() != self.tmp_dir {
                dirs.push(std::env::temp_dir());
            }
            let mut failure = None;
            for dir in dirs {
                let file = fsutil::temp_path(&dir, "manifestdb");
                match self.unpack(&file) {
                    Ok(db) => {
                        let _ = self.db.set(db);
                        failure = None;
                        break;
                    }
                    Err(e) => {
                        let _ = fs::remove_file(&file);
                        let again = e.is_no_space();
                        failure = Some(e);
                        if !again {
                            break;
                        }
                    }
                }
            }
            if let Some(e) = failure {
                return Err(e);
            }
        }
        self.db
            .get()
            .map(|d| &d.conn)
            .ok_or(Error::Internal("manifest database not opened"))
    }

    fn unpack(&self, file: &Path) -> Result<Db> {
        self.verify()?;
        let mut src = File::open(&self.path).map_err(Error::io("reading", &self.path))?;
        std::io::Seek::seek(&mut src, std::io::SeekFrom::Start(8))
            .map_err(Error::io("reading", &self.path))?;
        let mut src = body_reader(self.keys.as_ref(), src)
            .map_err(|e| read_failure(&self.path, &e, || self.damaged(e.to_string())))?;
        std::io::copy(&mut (&mut src).take(self.db_offset), &mut std::io::sink())
            .map_err(|e| read_failure(&self.path, &e, || self.damaged(e.to_string())))?;
        // Reading a manifest needs a decompressed copy on disk: a failure
        // to write it is the disk's, never the manifest's.
        const SCRATCH: &str =
            "writing the temporary copy of a snapshot manifest that reading it needs";
        // Private: it holds the snapshot's keys, and may be in /tmp.
        let out = fsutil::private_file(file, true).map_err(Error::io(SCRATCH, file))?;
        let mut out = BufWriter::new(out);
        let mut dec =
            zstd::stream::read::Decoder::new(src).map_err(|e| self.damaged(e.to_string()))?;
        let mut buf = vec![0u8; 128 << 10];
        loop {
            let n = match dec.read(&mut buf) {
                Ok(0) => break,
                Ok(n) => n,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                Err(e) => {
                    return Err(read_failure(&self.path, &e, || {
                        self.damaged(format!("database does not decompress: {e}"))
                    }))
                }
            };
            out.write_all(&buf[..n]).map_err(Error::io(SCRATCH, file))?;
        }
        out.flush().map_err(Error::io(SCRATCH, file))?;
        let uri = format!("file:{}?immutable=1", file.display());
        let conn = Connection::open_with_flags(
            &uri,
            OpenFlags::SQLITE_OPEN_READ_ONLY
                | OpenFlags::SQLITE_OPEN_URI
                | OpenFlags::SQLITE_OPEN_NO_MUTEX,
        )
        .map_err(|e| self.damaged(e.to_string()))?;
        // Reads are sequential page scans: a small cache is enough.
        conn.pragma_update(None, "cache_size", -512)
            .map_err(|e| self.damaged(e.to_string()))?;
        let version: i64 = conn
            .pragma_query_value(None, "user_version", |r| r.get(0))
            .map_err(|e| self.damaged(e.to_string()))?;
        if version != MANIFEST_VERSION {
            return Err(self.damaged(format!(
                "database version {version}, expected {MANIFEST_VERSION}"
            )));
        }
        Ok(Db {
            conn,
            file: file.to_path_buf(),
        })
    }

    fn sql_err(&self) -> impl FnOnce(rusqlite::Error) -> Error {
        let id = self.info.id.to_hex();
        move |e| Error::DamagedSnapshot {
            id,
            why: e.to_string(),
        }
    }

    /// Per-kind totals, in (namespace, kind) order.
    pub fn kinds(&self) -> Result<Vec<KindInfo>> {
        Ok(self.kinds.clone())
    }

    /// A value of the manifest's `meta` table (`source_read_time_us` …);
    /// `None` when unset, also in manifests written before the table.
    pub fn meta(&self, name: &str) -> Result<Option<String>> {
        let conn = self.conn()?;
        let has_table: bool = conn
            .query_row(
                "SELECT count(*) FROM sqlite_master WHERE type = 'table' AND name = 'meta'",
                [],
                |r| r.get::<_, i64>(0),
            )
            .map_err(self.sql_err())?
            > 0;
        if !has_table {
            return Ok(None);
        }
        conn.query_row("SELECT value FROM meta WHERE name = ?1", [name], |r| {
            r.get(0)
        })
        .optional()
        .map_err(self.sql_err())
    }

    pub fn kind(&self, namespace: &str, kind: &str) -> Result<Option<KindInfo>> {
        Ok(self
            .kinds
            .iter()
            .find(|k| k.namespace == namespace && k.kind == kind)
            .cloned())
    }

    /// One page of changes for `kid` with keys after `after`.
    fn changes_page(&self, kid: i64, after: &[u8], limit: usize) -> Result<Vec<ChangeEntry>> {
        let path = self.path.clone();
        let mut st = self
            .conn()?
            .prepare_cached(
                "SELECT key, op, hash, size FROM changes WHERE kid = ?1 AND key > ?2 ORDER BY key LIMIT ?3",
            )
            .map_err(self.sql_err())?;
        let rows = st
            .query_map(params![kid, after, limit as i64], |r| {
                let hash: Option<Vec<u8>> = r.get(2)?;
                let hash = match hash {
                    Some(h) => Some(EntityHash::from_slice(&h).ok_or_else(|| bad_hash(&path))?),
                    None => None,
                };
                let op = Op::from_i64(r.get(1)?).ok_or_else(|| bad_hash(&path))?;
                Ok(ChangeEntry {
                    key: r.get(0)?,
                    op,
                    hash,
                    size: r.get(3)?,
                })
            })
            .map_err(self.sql_err())?;
        rows.collect::<rusqlite::Result<Vec<_>>>()
            .map_err(self.sql_err())
    }

    fn entries_page(&self, kid: i64, after: &[u8], limit: usize) -> Result<Vec<ChangeEntry>> {
        let path = self.path.clone();
        let mut st = self
            .conn()?
            .prepare_cached("SELECT key, hash, size FROM entries WHERE kid = ?1 AND key > ?2 ORDER BY key LIMIT ?3")
            .map_err(self.sql_err())?;
        let rows = st
            .query_map(params![kid, after, limit as i64], |r| {
                let h: Vec<u8> = r.get(1)?;
                Ok(ChangeEntry {
                    key: r.get(0)?,
                    op: Op::Added,
                    hash: Some(EntityHash::from_slice(&h).ok_or_else(|| bad_hash(&path))?),
                    size: r.get(2)?,
                })
            })
            .map_err(self.sql_err())?;
        rows.collect::<rusqlite::Result<Vec<_>>>()
            .map_err(self.sql_err())
    }

    /// This manifest's own change row for one key of kind `kid`, if it
    /// has one (the change against its parent; a keyframe has them too,
    /// a first snapshot has none).
    pub fn change_at(&self, kid: i64, key: &[u8]) -> Result<Option<ChangeEntry>> {
        let path = self.path.clone();
        self.conn()?
            .query_row(
                "SELECT op, hash, size FROM changes WHERE kid = ?1 AND key = ?2",
                params![kid, key],
                |r| {
                    let hash: Option<Vec<u8>> = r.get(1)?;
                    let hash = match hash {
                        Some(h) => Some(EntityHash::from_slice(&h).ok_or_else(|| bad_hash(&path))?),
                        None => None,
                    };
                    let op = Op::from_i64(r.get(0)?).ok_or_else(|| bad_hash(&path))?;
                    Ok(ChangeEntry {
                        key: key.to_vec(),
                        op,
                        hash,
                        size: r.get(2)?,
                    })
                },
            )
            .optional()
            .map_err(self.sql_err())
    }

    fn entry_at(&self, kid: i64, key: &[u8]) -> Result<Option<ChangeEntry>> {
        let path = self.path.clone();
        self.conn()?
            .query_row(
                "SELECT hash, size FROM entries WHERE kid = ?1 AND key = ?2",
                params![kid, key],
                |r| {
                    let h: Vec<u8> = r.get(0)?;
                    Ok(ChangeEntry {
                        key: key.to_vec(),
                        op: Op::Added,
                        hash: Some(EntityHash::from_slice(&h).ok_or_else(|| bad_hash(&path))?),
                        size: r.get(1)?,
                    })
                },
            )
            .optional()
            .map_err(self.sql_err())
    }

    /// Stream this manifest's own change rows for one kind.
    pub fn changes(&self, kid: i64) -> PagedRows<'_> {
        PagedRows {
            manifest: self,
            kid,
            table: Table::Changes,
            buf: VecDeque::new(),
            last: Vec::new(),
            done: false,
        }
    }

    /// Every entity hash this manifest itself references.
    pub fn referenced_hashes(
        &self,
        f: &mut dyn FnMut(&str, &str, EntityHash) -> Result<()>,
    ) -> Result<()> {
        for k in self.kinds()? {
            for table in [Table::Changes, Table::Entries] {
                let mut rows = PagedRows {
                    manifest: self,
                    kid: k.kid,
                    table,
                    buf: VecDeque::new(),
                    last: Vec::new(),
                    done: false,
                };
                while let Some(row) = rows.next_row()? {
                    if let Some(h) = row.hash {
                        f(&k.namespace, &k.kind, h)?;
                    }
                }
            }
        }
        Ok(())
    }

    pub fn quick_check(&self) -> Result<Option<String>> {
        let res: String = self
            .conn()?
            .query_row("PRAGMA quick_check", [], |r| r.get(0))
            .map_err(self.sql_err())?;
        Ok(if res == "ok" { None } else { Some(res) })
    }
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Table {
    Changes,
    Entries,
}

/// Pages through one table of one manifest for one kind in key order,
/// holding at most one page in memory.
pub struct PagedRows<'a> {
    manifest: &'a Manifest,
    kid: i64,
    table: Table,
    buf: VecDeque<ChangeEntry>,
    last: Vec<u8>,
    done: bool,
}

const PAGE: usize = 2048;

impl PagedRows<'_> {
    fn fill(&mut self) -> Result<()> {
        if self.buf.is_empty() && !self.done {
            let page = match self.table {
                Table::Changes => self.manifest.changes_page(self.kid, &self.last, PAGE)?,
                Table::Entries => self.manifest.entries_page(self.kid, &self.last, PAGE)?,
            };
            if page.len() < PAGE {
                self.done = true;
            }
            if let Some(last) = page.last() {
                self.last = last.key.clone();
            }
            self.buf.extend(page);
        }
        Ok(())
    }

    pub fn peek(&mut self) -> Result<Option<&ChangeEntry>> {
        self.fill()?;
        Ok(self.buf.front())
    }

    pub fn next_row(&mut self) -> Result<Option<ChangeEntry>> {
        self.fill()?;
        Ok(self.buf.pop_front())
    }
}

/// The manifests from one snapshot back to its keyframe, opened once.
pub struct Chain {
    /// Newest first; the last one is a keyframe.
    pub layers: Vec<Manifest>,
}

impl Chain {
    pub fn open(repo: &Repository, id: &SnapshotId) -> Result<Chain> {
        let mut layers = Vec::new();
        let mut next = Some(*id);
        // Built only when a manifest is not found under its own id: `forget`
        // may have replaced it by a manifest holding the same state — also
        // the head, when a reader resolved its name before a concurrent
        // `forget` rewrote it.
        let mut replacements: Option<std::collections::HashMap<SnapshotId, SnapshotId>> = None;
        while let Some(mut id) = next {
            if !repo.snapshot_path(&id).exists() {
                if replacements.is_none() {
                    replacements = Some(replacement_map(&list_all(repo)?.0));
                }
                let map = replacements
                    .as_ref()
                    .ok_or(Error::Internal("replacement map"))?;
                let mut hops = 0;
                while let Some(r) = map.get(&id) {
                    id = *r;
                    hops += 1;
                    if repo.snapshot_path(&id).exists() || hops > map.len() {
                        break;
                    }
                }
            }
            let m = Manifest::open(repo, &id).map_err(|e| match e {
                Error::UnknownSnapshot { .. } if !layers.is_empty() => Error::DamagedSnapshot {
                    id: layers
                        .first()
                        .map(|m: &Manifest| m.info.id.to_hex())
                        .unwrap_or_default(),
                    why: format!("its parent {} is missing from the repository", id.to_hex()),
                },
                e => e,
            })?;
            m.verify()?;
            next = if m.info.keyframe { None } else { m.info.parent };
            if !m.info.keyframe && m.info.parent.is_none() {
                return Err(Error::DamagedSnapshot {
                    id: m.info.id.to_hex(),
                    why: "a delta without a parent".into(),
                });
            }
            layers.push(m);
            if layers.len() > 10_000 {
                return Err(Error::DamagedSnapshot {
                    id: id.to_hex(),
                    why: "parent chain loops".into(),
                });
            }
        }
        Ok(Chain { layers })
    }

    pub fn head(&self) -> &Manifest {
        &self.layers[0]
    }

    /// The layers that hold state for one kind: from the head down until a
    /// keyframe, or until a manifest that does not have the kind (the kind
    /// was absent, so nothing older matters).
    fn kind_layers(&self, namespace: &str, kind: &str) -> Result<Vec<PagedRows<'_>>> {
        let mut out = Vec::new();
        for m in &self.layers {
            let Some(k) = m.kind(namespace, kind)? else {
                break;
            };
            let table = if m.info.keyframe {
                Table::Entries
            } else {
                Table::Changes
            };
            out.push(PagedRows {
                manifest: m,
                kid: k.kid,
                table,
                buf: VecDeque::new(),
                last: Vec::new(),
                done: false,
            });
            if m.info.keyframe {
                break;
            }
        }
        Ok(out)
    }

    /// Stream the live (key, hash) pairs of one kind in key order. The
    /// stream is checked against the head's per-kind digest and count as
    /// it ends: a chain that does not add up fails instead of ending early.
    pub fn state(&self, namespace: &str, kind: &str) -> Result<StateReader<'_>> {
        let expected = self.head().kind(namespace, kind)?.map(|k| {
            Box::new(Expected {
                snapshot: self.head().info.id,
                kind: kind.to_string(),
                digest: k.digest,
                entities: k.entities,
            })
        });
        Ok(StateReader {
            layers: self.kind_layers(namespace, kind)?,
            digest: Box::default(),
            seen: 0,
            expected,
        })
    }

    /// Look up one key of one kind.
    pub fn lookup(&self, namespace: &str, kind: &str, key: &[u8]) -> Result<Option<StateEntry>> {
        for m in &self.layers {
            let Some(k) = m.kind(namespace, kind)? else {
                return Ok(None);
            };
            let row = if m.info.keyframe {
                m.entry_at(k.kid, key)?
            } else {
                m.change_at(k.kid, key)?
            };
            if let Some(row) = row {
                return Ok(match (row.op, row.hash) {
                    (Op::Removed, _) | (_, None) => None,
                    (_, Some(hash)) => Some(StateEntry {
                        key: row.key,
                        hash,
                        size: row.size,
                    }),
                });
            }
            if m.info.keyframe {
                return Ok(None);
            }
        }
        Ok(None)
    }
}

/// A k-way merge of a kind's layers: for each key the newest layer wins,
/// and a removal hides the key.
pub struct StateReader<'a> {
    layers: Vec<PagedRows<'a>>,
    /// Of the entries streamed so far, as the snapshot computed it (boxed:
    /// the hasher is 2 KB, and readers live in enums).
    digest: Box<blake3::Hasher>,
    seen: u64,
    /// What the head's header says the whole stream adds up to; taken
    /// when checked.
    expected: Option<Box<Expected>>,
}

struct Expected {
    snapshot: SnapshotId,
    kind: String,
    digest: [u8; 32],
    entities: u64,
}

impl StateReader<'_> {
    pub fn next_entry(&mut self) -> Result<Option<StateEntry>> {
        let next = self.merge_next()?;
        match &next {
            Some(e) => {
                self.digest.update(&(e.key.len() as u32).to_le_bytes());
                self.digest.update(&e.key);
                self.digest.update(e.hash.as_bytes());
                self.seen += 1;
            }
            None => {
                if let Some(x) = self.expected.take() {
                    if self.seen != x.entities || *self.digest.finalize().as_bytes() != x.digest {
                        return Err(Error::DamagedSnapshot {
                            id: x.snapshot.to_hex(),
                            why: format!(
                                "kind `{}` reads as {} entities that do not match its recorded digest ({} entities); \
                                 `kindsnap check` reports what is damaged",
                                x.kind, self.seen, x.entities
                            ),
                        });
                    }
                }
            }
        }
        Ok(next)
    }

    fn merge_next(&mut self) -> Result<Option<StateEntry>> {
        loop {
            let mut min: Option<(usize, Vec<u8>)> = None;
            for (i, layer) in self.layers.iter_mut().enumerate() {
                if let Some(row) = layer.peek()? {
                    if min.as_ref().map(|(_, k)| row.key < *k).unwrap_or(true) {
                        min = Some((i, row.key.clone()));
                    }
                }
            }
            let Some((winner, key)) = min else {
                return Ok(None);
            };
            let mut chosen = None;
            for (i, layer) in self.layers.iter_mut().enumerate() {
                if layer.peek()?.map(|r| r.key == key).unwrap_or(false) {
                    let row = layer.next_row()?;
                    if i == winner {
                        chosen = row;
                    }
                }
            }
            if let Some(row) = chosen {
                if let (Op::Added | Op::Changed, Some(hash)) = (row.op, row.hash) {
                    return Ok(Some(StateEntry {
                        key: row.key,
                        hash,
                        size: row.size,
                    }));
                }
            }
        }
    }
}

/// Builds a manifest: the database in a temp file, the kinds in memory.
pub struct ManifestWriter {
    conn: Option<Connection>,
    tmp: PathBuf,
    kinds: Vec<KindInfo>,
    /// Keyframe rows not inserted yet: written [`ENTRY_BATCH`] to a
    /// statement, which costs SQLite a third less than one row each.
    batch: EntryBatch,
}

const ENTRY_BATCH: usize = 64;

#[derive(Default)]
struct EntryBatch {
    keys: Vec<u8>,
    rows: Vec<(i64, usize, usize, [u8; 32], u64)>,
}

/// The header fields written at the end.
#[derive(Debug, Clone)]
pub struct NewSnapshot {
    pub name: String,
    pub time_us: i64,
    pub source: String,
    pub kinds_filter: String,
    pub parent: Option<SnapshotId>,
    pub depth: u32,
    pub keyframe: bool,
    pub entities: u64,
    pub raw_bytes: u64,
    pub bytes_added: u64,
    pub packs_added: u64,
    /// Earlier manifests of the same snapshot this one replaces (forget).
    pub replaces: Vec<SnapshotId>,
    /// Tags (sorted, unique); a non-empty list needs repository format 3.
    pub tags: Vec<String>,
}

impl ManifestWriter {
    pub fn create(repo: &Repository) -> Result<ManifestWriter> {
        let tmp = fsutil::temp_path(&repo.tmp_dir(), "manifest");
        let conn = Connection::open(&tmp).map_err(Error::sql(&tmp))?;
        let setup = || -> rusqlite::Result<()> {
            conn.pragma_update(None, "journal_mode", "OFF")?;
            conn.pragma_update(None, "synchronous", "OFF")?;
            conn.pragma_update(None, "page_size", 16384)?;
            conn.execute_batch(SCHEMA)?;
            conn.pragma_update(None, "user_version", MANIFEST_VERSION)?;
            conn.execute_batch("BEGIN")?;
            Ok(())
        };
        setup().map_err(Error::sql(&tmp))?;
        Ok(ManifestWriter {
            conn: Some(conn),
            tmp,
            kinds: Vec::new(),
            batch: EntryBatch::default(),
        })
    }

    fn conn(&self) -> Result<&Connection> {
        self.conn
            .as_ref()
            .ok_or(Error::Internal("manifest writer used after publish"))
    }

    /// Set a value of the `meta` table (how the source was read).
    pub fn set_meta(&mut self, name: &str, value: &str) -> Result<()> {
        let tmp = self.tmp.clone();
        self.conn()?
            .execute(
                "INSERT OR REPLACE INTO meta(name, value) VALUES (?1, ?2)",
                [name, value],
            )
            .map_err(Error::sql(&tmp))?;
        Ok(())
    }

    pub fn add_kind(&mut self, namespace: &str, kind: &str) -> Result<i64> {
        let kid = self.kinds.len() as i64 + 1;
        self.kinds.push(KindInfo {
            kid,
            namespace: namespace.to_string(),
            kind: kind.to_string(),
            entities: 0,
            raw_bytes: 0,
            digest: [0; 32],
            added: 0,
            changed: 0,
            removed: 0,
            bytes_added: 0,
        });
        Ok(kid)
    }

    /// Set a kind's totals (`info.kid` names the kind).
    pub fn set_kind_totals(&mut self, info: KindInfo) -> Result<()> {
        match self.kinds.iter_mut().find(|k| k.kid == info.kid) {
            Some(k) => {
                *k = info;
                Ok(())
            }
            None => Err(Error::Internal("unknown kind id in manifest writer")),
        }
    }

    pub fn put_change(
        &self,
        kid: i64,
        key: &[u8],
        op: Op,
        hash: Option<&EntityHash>,
        size: u64,
    ) -> Result<()> {
        let mut st = self
            .conn()?
            .prepare_cached(
                "INSERT INTO changes(kid, key, op, hash, size) VALUES (?1, ?2, ?3, ?4, ?5)",
            )
            .map_err(Error::sql(&self.tmp))?;
        st.execute(params![
            kid,
            key,
            op as i64,
            hash.map(|h| &h.as_bytes()[..]),
            size
        ])
        .map_err(Error::sql(&self.tmp))?;
        Ok(())
    }

    pub fn put_entry(&mut self, kid: i64, key: &[u8], hash: &EntityHash, size: u64) -> Result<()> {
        let b = &mut self.batch;
        let start = b.keys.len();
        b.keys.extend_from_slice(key);
        b.rows.push((kid, start, key.len(), *hash.as_bytes(), size));
        if b.rows.len() >= ENTRY_BATCH {
            self.flush_entries()?;
        }
        Ok(())
    }

    fn flush_entries(&mut self) -> Result<()> {
        let b = std::mem::take(&mut self.batch);
        if b.rows.is_empty() {
            return Ok(());
        }
        let conn = self.conn()?;
        let write = |rows: &[(i64, usize, usize, [u8; 32], u64)]| -> rusqlite::Result<()> {
            let sql = format!(
                "INSERT INTO entries(kid, key, hash, size) VALUES {}",
                vec!["(?, ?, ?, ?)"; rows.len()].join(", ")
            );
            let mut st = conn.prepare_cached(&sql)?;
            for (i, (kid, start, len, hash, size)) in rows.iter().enumerate() {
                let at = i * 4 + 1;
                st.raw_bind_parameter(at, kid)?;
                st.raw_bind_parameter(at + 1, &b.keys[*start..start + len])?;
                st.raw_bind_parameter(at + 2, &hash[..])?;
                st.raw_bind_parameter(at + 3, *size as i64)?;
            }
            st.raw_execute()?;
            Ok(())
        };
        let full = b.rows.len() / ENTRY_BATCH * ENTRY_BATCH;
        for chunk in b.rows[..full].chunks(ENTRY_BATCH) {
            write(chunk).map_err(Error::sql(&self.tmp))?;
        }
        for row in &b.rows[full..] {
            write(std::slice::from_ref(row)).map_err(Error::sql(&self.tmp))?;
        }
        let mut b = b;
        b.keys.clear();
        b.rows.clear();
        self.batch = b;
        Ok(())
    }

    /// Close the database, write the manifest file and publish it.
    /// `check_name` runs under the commit lock, just before the rename,
    /// with the name the manifest carries. It may refuse (an error), answer
    /// with a snapshot already published that this one would only repeat
    /// (then nothing is published and the new manifest is removed), or
    /// give another name (a default name another snapshot took meanwhile:
    /// the manifest is written again under it, and checked again).
    pub fn publish(
        mut self,
        repo: &Repository,
        meta: &NewSnapshot,
        mut check_name: impl FnMut(&Repository, &str) -> Result<NameVerdict>,
    ) -> Result<Published> {
        self.flush_entries()?;
        let conn = self
            .conn
            .take()
            .ok_or(Error::Internal("manifest published twice"))?;
        conn.execute_batch("COMMIT")
            .map_err(Error::sql(&self.tmp))?;
        conn.close().map_err(|(_, e)| Error::Sqlite {
            path: self.tmp.clone(),
            source: e,
        })?;
        let mut kinds = std::mem::take(&mut self.kinds);
        kinds.sort_by(|a, b| (&a.namespace, &a.kind).cmp(&(&b.namespace, &b.kind)));
        let mut name = meta.name.clone();
        for _ in 0..1000 {
            let (id, len, out_path) = self.write_file(repo, meta, &name, &kinds)?;
            let _commit = repo.lock_commit()?;
            let verdict = match check_name(repo, &name) {
                Ok(v) => v,
                Err(e) => {
                    let _ = fs::remove_file(&out_path);
                    return Err(e);
                }
            };
            match verdict {
                NameVerdict::Publish => {}
                NameVerdict::Existing(existing) => {
                    let _ = fs::remove_file(&out_path);
                    return Ok(Published::Existing(existing));
                }
                NameVerdict::Rename(other) => {
                    let _ = fs::remove_file(&out_path);
                    name = other;
                    continue;
                }
            }
            if let Err(e) = repo.manifest_written(&out_path, &id) {
                let _ = fs::remove_file(&out_path);
                return Err(e);
            }
            if let Err(e) = repo.commit_file(&out_path, &repo.snapshot_path(&id)) {
                let _ = fs::remove_file(&out_path);
                return Err(e);
            }
            return Ok(Published::New {
                id,
                bytes: len,
                name,
            });
        }
        Err(Error::Internal("no free snapshot name after 1000 tries"))
    }

    /// Write the manifest file (header naming `name`, then the compressed
    /// database) to a temp file; returns its id, length and path.
    fn write_file(
        &self,
        repo: &Repository,
        meta: &NewSnapshot,
        name: &str,
        kinds: &[KindInfo],
    ) -> Result<(SnapshotId, u64, PathBuf)> {
        let mut header = Header {
            format: MANIFEST_VERSION,
            name: name.to_string(),
            time_us: meta.time_us,
            source: meta.source.clone(),
            kinds_filter: meta.kinds_filter.clone(),
            parent: meta.parent.map(|p| p.to_hex()),
            depth: meta.depth,
            keyframe: meta.keyframe,
            entities: meta.entities,
            raw_bytes: meta.raw_bytes,
            bytes_added: meta.bytes_added,
            packs_added: meta.packs_added,
            tool: format!("kindsnap {}", env!("CARGO_PKG_VERSION")),
            kinds: kinds.to_vec(),
            replaces: meta.replaces.iter().map(|r| r.to_hex()).collect(),
            tags: meta.tags.clone(),
        };
        header.format = header.needed_format();
        let json = serde_json::to_vec(&header).map_err(|e| Error::DamagedSnapshot {
            id: "(new)".into(),
            why: e.to_string(),
        })?;
        let out_path = fsutil::temp_path(&repo.tmp_dir(), "snapshot");
        let res = (|| -> std::io::Result<(SnapshotId, u64)> {
            let db_len = fs::metadata(&self.tmp)?.len();
            // Small databases (deltas) get a stronger level; keyframes a fast one
            // (level 19 saved 2 KB of 150 KB on the benchmark and cost 35 ms).
            // A keyframe is mostly hashes, which do not compress: level 1
            // made the benchmark's 8.21 MB where level 3 made 8.28 MB, and
            // ran 1.6 times as fast.
            let level = if db_len < 8 << 20 { 9 } else { 1 };
            let threads = if db_len >= 8 << 20 {
                // A keyframe is tens of MB: use both cores.
                std::thread::available_parallelism()
                    .map(|n| n.get().min(4) as u32)
                    .unwrap_or(1)
            } else {
                0
            };
            let db = BufReader::new(File::open(&self.tmp)?);
            write_manifest_file(repo, &out_path, |out| {
                write_body(out, &json, db, (db_len, level, threads))
            })
        })();
        let (id, len) = match res {
            Ok(v) => v,
            Err(e) => {
                let _ = fs::remove_file(&out_path);
                return Err(Error::io("writing", out_path)(e));
            }
        };
        Ok((id, len, out_path))
    }
}

/// Write the manifest file `path`: the magic, then what `body` writes,
/// sealed in an encrypted repository. Returns its id (the repository's
/// object hash of every byte) and its length.
fn write_manifest_file(
    repo: &Repository,
    path: &Path,
    body: impl FnOnce(&mut dyn Write) -> std::io::Result<()>,
) -> std::io::Result<(SnapshotId, u64)> {
    let mut out = HashingWriter {
        inner: BufWriter::new(super::storage::StorageFile::create(
            Arc::clone(repo.storage()),
            path,
        )?),
        hasher: repo.object_hasher(),
        len: 0,
    };
    match repo.keys() {
        None => {
            out.write_all(MANIFEST_MAGIC)?;
            body(&mut out)?;
        }
        Some(k) => {
            out.write_all(SEALED_MANIFEST_MAGIC)?;
            let mut sealed = crate::repo::crypto::SealWriter::new(
                Arc::clone(k),
                &mut out,
                SEALED_MANIFEST_MAGIC,
            )?;
            body(&mut sealed)?;
            sealed.finish()?;
        }
    }
    out.inner.flush()?;
    Ok((SnapshotId::from(*out.hasher.finalize().as_bytes()), out.len))
}

/// What follows a manifest's magic: u32 header length, the header, the
/// database as one zstd frame of `level` (`threads` workers when > 0).
fn write_body(
    out: &mut (impl Write + ?Sized),
    json: &[u8],
    mut db: impl Read,
    (db_len, level, threads): (u64, i32, u32),
) -> std::io::Result<()> {
    out.write_all(&(json.len() as u32).to_le_bytes())?;
    out.write_all(json)?;
    let mut enc = zstd::stream::write::Encoder::new(out, level)?;
    // Knowing the size lets zstd size its window and tables to the
    // data, which keeps memory small at high levels.
    enc.set_pledged_src_size(Some(db_len))?;
    if threads > 0 {
        enc.multithread(threads)?;
    }
    std::io::copy(&mut db, &mut enc)?;
    enc.finish()?;
    Ok(())
}

/// What the name check under the commit lock decided.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NameVerdict {
    Publish,
    /// This snapshot exists already, with the same content.
    Existing(SnapshotId),
    /// Publish under this name instead.
    Rename(String),
}

/// What [`ManifestWriter::publish`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Published {
    /// The manifest is published under `name`: the snapshot exists,
    /// `bytes` long.
    New {
        id: SnapshotId,
        bytes: u64,
        name: String,
    },
    /// The name check found this snapshot already published with the same
    /// content; nothing was written.
    Existing(SnapshotId),
}

struct HashingWriter<W: Write> {
    inner: W,
    hasher: blake3::Hasher,
    len: u64,
}

impl<W: Write> Write for HashingWriter<W> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.hasher.update(&buf[..n]);
        self.len += n as u64;
        Ok(n)
    }
    fn flush(&mut self) -> std::io::Result<()> {
        self.inner.flush()
    }
}

impl Drop for ManifestWriter {
    fn drop(&mut self) {
        self.conn.take();
        let _ = fs::remove_file(&self.tmp);
    }
}

/// A manifest that could not be read, with why.
pub type Unreadable = (SnapshotId, Error);

/// List the snapshots, oldest first: every published manifest except those
/// replaced by another one (see [`SnapshotInfo::replaces`]). Unreadable
/// manifests are returned as errors beside the good ones so `check` can
/// report them.
pub fn list(repo: &Repository) -> Result<(Vec<SnapshotInfo>, Vec<Unreadable>)> {
    let (mut infos, bad) = list_all(repo)?;
    let hidden = replaced_ids(&infos);
    if !hidden.is_empty() {
        infos.retain(|i| !hidden.contains(&i.id));
    }
    Ok((infos, bad))
}

/// Ids of manifests that a present manifest replaces: left behind only by
/// a `forget` that was stopped before it deleted them.
pub fn replaced_ids(infos: &[SnapshotInfo]) -> std::collections::HashSet<SnapshotId> {
    let present: std::collections::HashSet<SnapshotId> = infos.iter().map(|i| i.id).collect();
    infos
        .iter()
        .flat_map(|i| i.replaces.iter().copied())
        .filter(|r| present.contains(r))
        .collect()
}

/// Old manifest id → the present manifest that replaces it.
pub fn replacement_map(
    infos: &[SnapshotInfo],
) -> std::collections::HashMap<SnapshotId, SnapshotId> {
    let mut map = std::collections::HashMap::new();
    for i in infos {
        for r in &i.replaces {
            map.insert(*r, i.id);
        }
    }
    map
}

/// Resolve a parent pointer to a present manifest: itself, or the manifest
/// that replaces it (following replacements of replacements).
pub fn resolve_parent(
    id: SnapshotId,
    present: &std::collections::HashMap<SnapshotId, SnapshotInfo>,
    replacements: &std::collections::HashMap<SnapshotId, SnapshotId>,
) -> Option<SnapshotId> {
    let mut cur = id;
    for _ in 0..=replacements.len() {
        if present.contains_key(&cur) {
            return Some(cur);
        }
        cur = *replacements.get(&cur)?;
    }
    None
}

/// Manifest id → the printed (logical) id of its snapshot, for every
/// manifest of a listing and every manifest they replace: parent pointers
/// name manifest files, which `forget` or `tag` may since have replaced.
pub fn logical_ids(infos: &[SnapshotInfo]) -> std::collections::HashMap<SnapshotId, SnapshotId> {
    let mut map = std::collections::HashMap::new();
    for i in infos {
        map.insert(i.id, i.logical);
        for r in &i.replaces {
            map.entry(*r).or_insert(i.logical);
        }
    }
    map
}

/// Every published manifest, hidden (replaced) ones included, oldest first.
pub fn list_all(repo: &Repository) -> Result<(Vec<SnapshotInfo>, Vec<Unreadable>)> {
    let dir = repo.snapshots_dir();
    let mut infos = Vec::new();
    let mut bad = Vec::new();
    for e in fs::read_dir(&dir).map_err(Error::io("reading", &dir))? {
        let e = e.map_err(Error::io("reading", &dir))?;
        let name = e.file_name().to_string_lossy().to_string();
        let Some(id) = SnapshotId::from_hex(&name) else {
            continue;
        };
        match read_header(repo.keys(), &e.path(), id) {
            Ok((info, _, _)) => infos.push(info),
            Err(err) => bad.push((id, err)),
        }
    }
    let gen = same_time_generation(&infos);
    infos.sort_by_key(|i| (i.time_us, gen.get(&i.id).copied().unwrap_or(0), i.id));
    Ok((infos, bad))
}

/// For each snapshot, how many of its ancestors in a row carry its very
/// time. `repair snapshots` writes a repaired snapshot with its original's
/// name and time and the original as parent; ordering by (time, this, id)
/// puts it after the original, so its name, `latest` and the next
/// snapshot's choice of parent resolve to the repair. Other snapshots
/// never share a parent's time, and get 0.
pub fn same_time_generation(infos: &[SnapshotInfo]) -> std::collections::HashMap<SnapshotId, u32> {
    let by_id: std::collections::HashMap<SnapshotId, &SnapshotInfo> =
        infos.iter().map(|i| (i.id, i)).collect();
    infos
        .iter()
        .map(|i| {
            let mut n = 0u32;
            let mut cur = i;
            while let Some(p) = cur.parent.and_then(|p| by_id.get(&p)) {
                if p.time_us != i.time_us || n as usize >= infos.len() {
                    break;
                }
                n += 1;
                cur = p;
            }
            (i.id, n)
        })
        .collect()
}

/// Resolve a user's snapshot reference: `latest`, `latest~N`, a name (the
/// newest snapshot of that name), or a unique id prefix (4+ hex digits).
/// A reference that matches nothing gets a hint: the closest names, how
/// far back `latest~N` goes, the oldest snapshot's time for `@DATE`, or the
/// shortest id prefix.
pub fn resolve(infos: &[SnapshotInfo], spec: &str) -> Result<SnapshotInfo> {
    let unknown = |hint: String| Error::UnknownSnapshot {
        spec: spec.to_string(),
        hint,
    };
    let count = || match infos.len() {
        0 => "the repository has no snapshots yet".to_string(),
        1 => "the repository has 1 snapshot, `latest`".to_string(),
        n => format!(
            "the repository has {n} snapshots, `latest` to `latest~{}`",
            n - 1
        ),
    };
    if spec == "latest" || spec.starts_with("latest~") {
        let n: usize = if spec == "latest" {
            0
        } else {
            spec[7..].parse().map_err(|_| {
                unknown(format!(
                    ": after `latest~` give a number of snapshots back, such as `latest~1`; {}",
                    count()
                ))
            })?
        };
        return infos
            .iter()
            .rev()
            .nth(n)
            .cloned()
            .ok_or_else(|| unknown(format!(": {}", count())));
    }
    if let Some(when) = spec.strip_prefix('@') {
        // `@2026-11-20` (the end of that UTC day) or `@2026-11-20T06:00:00Z`:
        // the newest snapshot taken at or before that time.
        let limit = if when.len() == 10 {
            crate::model::json::parse_timestamp(&format!("{when}T23:59:59.999999Z"))
        } else {
            crate::model::json::parse_timestamp(when)
        }
        .map_err(|_| {
            Error::BadArgument(format!(
                "`{spec}`: after `@` give a UTC date (2026-11-20) or an RFC 3339 time (2026-11-20T06:00:00Z)"
            ))
        })?;
        return infos
            .iter()
            .rev()
            .find(|i| i.time_us <= limit)
            .cloned()
            .ok_or_else(|| {
                unknown(match infos.first() {
                    Some(oldest) => format!(
                        ": the oldest snapshot, `{}`, was taken {}; give that time or later",
                        oldest.name,
                        crate::model::json::format_timestamp(
                            oldest.time_us - oldest.time_us.rem_euclid(1_000_000)
                        )
                    ),
                    None => format!(": {}", count()),
                })
            });
    }
    if let Some(i) = infos.iter().rev().find(|i| i.name == spec) {
        return Ok(i.clone());
    }
    let lower = spec.to_ascii_lowercase();
    let hex = !lower.is_empty() && lower.chars().all(|c| c.is_ascii_hexdigit());
    if hex && lower.len() >= MIN_ID_PREFIX {
        let matches = with_id_prefix(infos, &lower);
        match matches.len() {
            0 => {
                let close = crate::suggest::closest(spec, infos.iter().map(|i| i.name.as_str()));
                return Err(unknown(match crate::suggest::did_you_mean(&close) {
                    Some(h) => format!(" ({h})"),
                    None => format!(": no snapshot id starts with `{lower}`"),
                }));
            }
            1 => return Ok(matches[0].clone()),
            _ => {
                return Err(Error::AmbiguousSnapshot {
                    spec: spec.to_string(),
                    matches: matches
                        .iter()
                        .map(|m| m.logical.short())
                        .collect::<Vec<_>>()
                        .join(", "),
                })
            }
        }
    }
    let close = crate::suggest::closest(spec, infos.iter().map(|i| i.name.as_str()));
    if let Some(hint) = crate::suggest::did_you_mean(&close) {
        return Err(unknown(format!(" ({hint})")));
    }
    if hex && lower.len() < MIN_ID_PREFIX {
        return Err(unknown(format!(
            ": an id prefix needs at least {MIN_ID_PREFIX} hex digits"
        )));
    }
    if infos.is_empty() {
        return Err(unknown(format!(": {}", count())));
    }
    Err(unknown(String::new()))
}

/// The snapshots whose id starts with `prefix` (lower-case hex): the
/// printed (logical) ids first; else manifest ids, which builds before
/// logical ids printed for rewritten snapshots (forget's "rewritten as").
fn with_id_prefix<'a>(infos: &'a [SnapshotInfo], prefix: &str) -> Vec<&'a SnapshotInfo> {
    let logical: Vec<&SnapshotInfo> = infos
        .iter()
        .filter(|i| i.logical.to_hex().starts_with(prefix))
        .collect();
    if !logical.is_empty() {
        return logical;
    }
    infos
        .iter()
        .filter(|i| i.id.to_hex().starts_with(prefix))
        .collect()
}

/// The fewest hex digits of a snapshot id that `resolve` reads as an id.
pub const MIN_ID_PREFIX: usize = 4;

/// Write a new manifest for snapshot `info` with `tags` (sorted, unique)
/// and publish it, replacing `info`'s manifest: the header is rewritten,
/// the compressed database is copied as it is, so the state and the
/// logical id stay. The caller holds the exclusive repository lock and
/// removes the old manifest afterwards (a crash between the two leaves a
/// hidden manifest that the next `forget` or `prune` removes).
pub fn publish_retagged(
    repo: &Repository,
    info: &SnapshotInfo,
    tags: Vec<String>,
) -> Result<SnapshotId> {
    let path = repo.snapshot_path(&info.id);
    let old = Manifest::open(repo, &info.id)?;
    old.verify()?;
    let damaged = |why: String| Error::DamagedSnapshot {
        id: info.logical.to_hex(),
        why,
    };
    let keys = repo.keys();
    let mut f = File::open(&path).map_err(Error::io("reading", &path))?;
    std::io::Seek::seek(&mut f, std::io::SeekFrom::Start(8))
        .map_err(Error::io("reading", &path))?;
    // The body after the magic (decrypted when sealed): header length,
    // header, then the database's zstd frame, copied as it is.
    let mut body =
        body_reader(keys, f).map_err(|e| read_failure(&path, &e, || damaged(e.to_string())))?;
    let mut len = [0u8; 4];
    body.read_exact(&mut len)
        .map_err(|e| read_failure(&path, &e, || damaged("truncated header".into())))?;
    let mut head = vec![0u8; u32::from_le_bytes(len) as usize];
    body.read_exact(&mut head)
        .map_err(|e| read_failure(&path, &e, || damaged("truncated header".into())))?;
    let mut h: Header =
        serde_json::from_slice(&head).map_err(|e| damaged(format!("header: {e}")))?;
    let mut replaces = vec![info.id.to_hex()];
    replaces.extend(h.replaces.iter().cloned());
    h.replaces = replaces;
    h.tags = tags;
    h.format = h.needed_format();
    let json = serde_json::to_vec(&h).map_err(|e| damaged(e.to_string()))?;
    let out_path = fsutil::temp_path(&repo.tmp_dir(), "snapshot");
    let copy_body = |out: &mut dyn Write, body: &mut dyn Read| -> std::io::Result<()> {
        out.write_all(&(json.len() as u32).to_le_bytes())?;
        out.write_all(&json)?;
        std::io::copy(body, out)?;
        Ok(())
    };
    let res = write_manifest_file(repo, &out_path, |out| copy_body(out, &mut body));
    let (id, _) = res.map_err(|e| {
        let _ = fs::remove_file(&out_path);
        match crate::repo::crypto::auth_failure_offset(&e) {
            Some(at) => Error::AuthFailed {
                file: path.display().to_string(),
                at: format!(" (at byte {at})"),
            },
            None => Error::io("writing", out_path.clone())(e),
        }
    })?;
    let _commit = repo.lock_commit()?;
    let publish = repo
        .manifest_written(&out_path, &id)
        .and_then(|()| repo.commit_file(&out_path, &repo.snapshot_path(&id)));
    if let Err(e) = publish {
        let _ = fs::remove_file(&out_path);
        return Err(e);
    }
    Ok(id)
}
