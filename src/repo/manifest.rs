//! Snapshot manifests: one SQLite file per snapshot, named by the blake3 of
//! its bytes. A manifest holds the snapshot's metadata, per-kind totals and
//! digests, and its key → entity-hash mapping as *changes against its
//! parent*; every `keyframe_interval` snapshots (and for the first one) it
//! also holds the full table. Reading a snapshot's state is a merge of the
//! chain back to the nearest keyframe.
//!
//! A manifest is written to a temp file, fsynced, hashed and renamed into
//! `snapshots/`: its arrival there is the snapshot's commit point.

use std::collections::VecDeque;
use std::fs;
use std::path::{Path, PathBuf};

use rusqlite::{params, Connection, OpenFlags, OptionalExtension};

use super::{fsutil, Repository};
use crate::error::{Error, Result};
use crate::ids::{EntityHash, SnapshotId};

pub const MANIFEST_VERSION: i64 = 1;

const SCHEMA: &str = "
CREATE TABLE snapshot(
    name TEXT NOT NULL,
    time_us INTEGER NOT NULL,
    source TEXT NOT NULL,
    kinds_filter TEXT NOT NULL,
    parent TEXT,
    depth INTEGER NOT NULL,
    keyframe INTEGER NOT NULL,
    entities INTEGER NOT NULL,
    raw_bytes INTEGER NOT NULL,
    bytes_added INTEGER NOT NULL,
    packs_added INTEGER NOT NULL,
    tool TEXT NOT NULL
);
CREATE TABLE kinds(
    kid INTEGER PRIMARY KEY,
    namespace TEXT NOT NULL,
    kind TEXT NOT NULL,
    entities INTEGER NOT NULL,
    raw_bytes INTEGER NOT NULL,
    digest BLOB NOT NULL,
    added INTEGER NOT NULL,
    changed INTEGER NOT NULL,
    removed INTEGER NOT NULL,
    bytes_added INTEGER NOT NULL,
    UNIQUE(namespace, kind)
);
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

/// Metadata of one snapshot (the `snapshot` row plus its id).
#[derive(Debug, Clone)]
pub struct SnapshotInfo {
    pub id: SnapshotId,
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
}

/// Per-kind row of a manifest.
#[derive(Debug, Clone)]
pub struct KindInfo {
    pub kid: i64,
    pub namespace: String,
    pub kind: String,
    pub entities: u64,
    pub raw_bytes: u64,
    pub digest: [u8; 32],
    pub added: u64,
    pub changed: u64,
    pub removed: u64,
    pub bytes_added: u64,
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
    rusqlite::Error::InvalidColumnType(0, format!("hash in {}", path.display()), rusqlite::types::Type::Blob)
}

/// An open, published manifest.
pub struct Manifest {
    pub info: SnapshotInfo,
    conn: Connection,
    path: PathBuf,
}

impl Manifest {
    pub fn open(repo: &Repository, id: &SnapshotId) -> Result<Manifest> {
        let path = repo.snapshot_path(id);
        Self::open_path(&path, *id)
    }

    pub fn open_path(path: &Path, id: SnapshotId) -> Result<Manifest> {
        let damaged = |why: String| Error::DamagedSnapshot { id: id.to_hex(), why };
        let meta = fs::metadata(path).map_err(|e| match e.kind() {
            std::io::ErrorKind::NotFound => Error::UnknownSnapshot { spec: id.to_hex() },
            _ => Error::Io { op: "reading", path: path.to_path_buf(), source: e },
        })?;
        // immutable=1: the file never changes once published, so SQLite may
        // skip locking; this also makes read-only repositories readable.
        let uri = format!("file:{}?immutable=1", path.display());
        let conn = Connection::open_with_flags(
            &uri,
            OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_URI | OpenFlags::SQLITE_OPEN_NO_MUTEX,
        )
        .map_err(|e| damaged(e.to_string()))?;
        let version: i64 =
            conn.pragma_query_value(None, "user_version", |r| r.get(0)).map_err(|e| damaged(e.to_string()))?;
        if version != MANIFEST_VERSION {
            return Err(damaged(format!("manifest version {version}, expected {MANIFEST_VERSION}")));
        }
        let info = conn
            .query_row(
                "SELECT name, time_us, source, kinds_filter, parent, depth, keyframe, entities, raw_bytes,
                        bytes_added, packs_added, tool FROM snapshot",
                [],
                |r| {
                    let parent: Option<String> = r.get(4)?;
                    Ok(SnapshotInfo {
                        id,
                        name: r.get(0)?,
                        time_us: r.get(1)?,
                        source: r.get(2)?,
                        kinds_filter: r.get(3)?,
                        parent: parent.and_then(|p| SnapshotId::from_hex(&p)),
                        depth: r.get(5)?,
                        keyframe: r.get::<_, i64>(6)? != 0,
                        entities: r.get(7)?,
                        raw_bytes: r.get(8)?,
                        bytes_added: r.get(9)?,
                        packs_added: r.get(10)?,
                        tool: r.get(11)?,
                        manifest_bytes: meta.len(),
                    })
                },
            )
            .map_err(|e| damaged(e.to_string()))?;
        Ok(Manifest { info, conn, path: path.to_path_buf() })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    fn sql_err(&self) -> impl FnOnce(rusqlite::Error) -> Error {
        let id = self.info.id.to_hex();
        move |e| Error::DamagedSnapshot { id, why: e.to_string() }
    }

    pub fn kinds(&self) -> Result<Vec<KindInfo>> {
        let mut st = self
            .conn
            .prepare(
                "SELECT kid, namespace, kind, entities, raw_bytes, digest, added, changed, removed, bytes_added
                 FROM kinds ORDER BY namespace, kind",
            )
            .map_err(self.sql_err())?;
        let rows = st
            .query_map([], |r| {
                let d: Vec<u8> = r.get(5)?;
                Ok(KindInfo {
                    kid: r.get(0)?,
                    namespace: r.get(1)?,
                    kind: r.get(2)?,
                    entities: r.get(3)?,
                    raw_bytes: r.get(4)?,
                    digest: d.try_into().unwrap_or([0; 32]),
                    added: r.get(6)?,
                    changed: r.get(7)?,
                    removed: r.get(8)?,
                    bytes_added: r.get(9)?,
                })
            })
            .map_err(self.sql_err())?;
        rows.collect::<rusqlite::Result<Vec<_>>>().map_err(self.sql_err())
    }

    pub fn kind(&self, namespace: &str, kind: &str) -> Result<Option<KindInfo>> {
        Ok(self.kinds()?.into_iter().find(|k| k.namespace == namespace && k.kind == kind))
    }

    /// One page of changes for `kid` with keys after `after`.
    fn changes_page(&self, kid: i64, after: &[u8], limit: usize) -> Result<Vec<ChangeEntry>> {
        let path = self.path.clone();
        let mut st = self
            .conn
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
                Ok(ChangeEntry { key: r.get(0)?, op, hash, size: r.get(3)? })
            })
            .map_err(self.sql_err())?;
        rows.collect::<rusqlite::Result<Vec<_>>>().map_err(self.sql_err())
    }

    fn entries_page(&self, kid: i64, after: &[u8], limit: usize) -> Result<Vec<ChangeEntry>> {
        let path = self.path.clone();
        let mut st = self
            .conn
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
        rows.collect::<rusqlite::Result<Vec<_>>>().map_err(self.sql_err())
    }

    fn change_at(&self, kid: i64, key: &[u8]) -> Result<Option<ChangeEntry>> {
        let path = self.path.clone();
        self.conn
            .query_row("SELECT op, hash, size FROM changes WHERE kid = ?1 AND key = ?2", params![kid, key], |r| {
                let hash: Option<Vec<u8>> = r.get(1)?;
                let hash = match hash {
                    Some(h) => Some(EntityHash::from_slice(&h).ok_or_else(|| bad_hash(&path))?),
                    None => None,
                };
                let op = Op::from_i64(r.get(0)?).ok_or_else(|| bad_hash(&path))?;
                Ok(ChangeEntry { key: key.to_vec(), op, hash, size: r.get(2)? })
            })
            .optional()
            .map_err(self.sql_err())
    }

    fn entry_at(&self, kid: i64, key: &[u8]) -> Result<Option<ChangeEntry>> {
        let path = self.path.clone();
        self.conn
            .query_row("SELECT hash, size FROM entries WHERE kid = ?1 AND key = ?2", params![kid, key], |r| {
                let h: Vec<u8> = r.get(0)?;
                Ok(ChangeEntry {
                    key: key.to_vec(),
                    op: Op::Added,
                    hash: Some(EntityHash::from_slice(&h).ok_or_else(|| bad_hash(&path))?),
                    size: r.get(1)?,
                })
            })
            .optional()
            .map_err(self.sql_err())
    }

    /// Stream this manifest's own change rows for one kind.
    pub fn changes(&self, kid: i64) -> PagedRows<'_> {
        PagedRows { manifest: self, kid, table: Table::Changes, buf: VecDeque::new(), last: Vec::new(), done: false }
    }

    /// Every distinct entity hash this manifest itself references.
    pub fn referenced_hashes(&self, f: &mut dyn FnMut(&str, &str, EntityHash) -> Result<()>) -> Result<()> {
        for k in self.kinds()? {
            for table in [Table::Changes, Table::Entries] {
                let mut rows =
                    PagedRows { manifest: self, kid: k.kid, table, buf: VecDeque::new(), last: Vec::new(), done: false };
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
        let res: String = self.conn.query_row("PRAGMA quick_check", [], |r| r.get(0)).map_err(self.sql_err())?;
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
        while let Some(id) = next {
            let m = Manifest::open(repo, &id).map_err(|e| match e {
                Error::UnknownSnapshot { .. } if !layers.is_empty() => Error::DamagedSnapshot {
                    id: layers.first().map(|m: &Manifest| m.info.id.to_hex()).unwrap_or_default(),
                    why: format!("its parent {} is missing from the repository", id.to_hex()),
                },
                e => e,
            })?;
            next = if m.info.keyframe { None } else { m.info.parent };
            if !m.info.keyframe && m.info.parent.is_none() {
                return Err(Error::DamagedSnapshot { id: m.info.id.to_hex(), why: "a delta without a parent".into() });
            }
            layers.push(m);
            if layers.len() > 10_000 {
                return Err(Error::DamagedSnapshot { id: id.to_hex(), why: "parent chain loops".into() });
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
            let Some(k) = m.kind(namespace, kind)? else { break };
            let table = if m.info.keyframe { Table::Entries } else { Table::Changes };
            out.push(PagedRows { manifest: m, kid: k.kid, table, buf: VecDeque::new(), last: Vec::new(), done: false });
            if m.info.keyframe {
                break;
            }
        }
        Ok(out)
    }

    /// Stream the live (key, hash) pairs of one kind in key order.
    pub fn state(&self, namespace: &str, kind: &str) -> Result<StateReader<'_>> {
        Ok(StateReader { layers: self.kind_layers(namespace, kind)? })
    }

    /// Look up one key of one kind.
    pub fn lookup(&self, namespace: &str, kind: &str, key: &[u8]) -> Result<Option<StateEntry>> {
        for m in &self.layers {
            let Some(k) = m.kind(namespace, kind)? else { return Ok(None) };
            let row = if m.info.keyframe { m.entry_at(k.kid, key)? } else { m.change_at(k.kid, key)? };
            if let Some(row) = row {
                return Ok(match (row.op, row.hash) {
                    (Op::Removed, _) | (_, None) => None,
                    (_, Some(hash)) => Some(StateEntry { key: row.key, hash, size: row.size }),
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
}

impl StateReader<'_> {
    pub fn next_entry(&mut self) -> Result<Option<StateEntry>> {
        loop {
            let mut min: Option<(usize, Vec<u8>)> = None;
            for (i, layer) in self.layers.iter_mut().enumerate() {
                if let Some(row) = layer.peek()? {
                    if min.as_ref().map(|(_, k)| row.key < *k).unwrap_or(true) {
                        min = Some((i, row.key.clone()));
                    }
                }
            }
            let Some((winner, key)) = min else { return Ok(None) };
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
                    return Ok(Some(StateEntry { key: row.key, hash, size: row.size }));
                }
            }
        }
    }
}

/// Builds a manifest in a temp file.
pub struct ManifestWriter {
    conn: Option<Connection>,
    tmp: PathBuf,
}

/// The `snapshot` row written at the end.
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
}

impl ManifestWriter {
    pub fn create(repo: &Repository) -> Result<ManifestWriter> {
        let tmp = fsutil::temp_path(&repo.tmp_dir(), "manifest");
        let conn = Connection::open(&tmp).map_err(Error::sql(&tmp))?;
        let setup = || -> rusqlite::Result<()> {
            conn.pragma_update(None, "journal_mode", "OFF")?;
            conn.pragma_update(None, "synchronous", "OFF")?;
            conn.pragma_update(None, "page_size", 4096)?;
            conn.execute_batch(SCHEMA)?;
            conn.pragma_update(None, "user_version", MANIFEST_VERSION)?;
            conn.execute_batch("BEGIN")?;
            Ok(())
        };
        setup().map_err(Error::sql(&tmp))?;
        Ok(ManifestWriter { conn: Some(conn), tmp })
    }

    fn conn(&self) -> Result<&Connection> {
        self.conn.as_ref().ok_or(Error::Interrupted)
    }

    pub fn add_kind(&self, namespace: &str, kind: &str) -> Result<i64> {
        let conn = self.conn()?;
        conn.execute(
            "INSERT INTO kinds(namespace, kind, entities, raw_bytes, digest, added, changed, removed, bytes_added)
             VALUES (?1, ?2, 0, 0, x'', 0, 0, 0, 0)",
            params![namespace, kind],
        )
        .map_err(Error::sql(&self.tmp))?;
        Ok(conn.last_insert_rowid())
    }

    #[allow(clippy::too_many_arguments)]
    pub fn set_kind_totals(
        &self,
        kid: i64,
        entities: u64,
        raw_bytes: u64,
        digest: &[u8; 32],
        added: u64,
        changed: u64,
        removed: u64,
        bytes_added: u64,
    ) -> Result<()> {
        self.conn()?
            .execute(
                "UPDATE kinds SET entities=?2, raw_bytes=?3, digest=?4, added=?5, changed=?6, removed=?7, bytes_added=?8
                 WHERE kid=?1",
                params![kid, entities, raw_bytes, &digest[..], added, changed, removed, bytes_added],
            )
            .map_err(Error::sql(&self.tmp))?;
        Ok(())
    }

    pub fn put_change(&self, kid: i64, key: &[u8], op: Op, hash: Option<&EntityHash>, size: u64) -> Result<()> {
        let mut st = self
            .conn()?
            .prepare_cached("INSERT INTO changes(kid, key, op, hash, size) VALUES (?1, ?2, ?3, ?4, ?5)")
            .map_err(Error::sql(&self.tmp))?;
        st.execute(params![kid, key, op as i64, hash.map(|h| &h.as_bytes()[..]), size])
            .map_err(Error::sql(&self.tmp))?;
        Ok(())
    }

    pub fn put_entry(&self, kid: i64, key: &[u8], hash: &EntityHash, size: u64) -> Result<()> {
        let mut st = self
            .conn()?
            .prepare_cached("INSERT INTO entries(kid, key, hash, size) VALUES (?1, ?2, ?3, ?4)")
            .map_err(Error::sql(&self.tmp))?;
        st.execute(params![kid, key, &hash.as_bytes()[..], size]).map_err(Error::sql(&self.tmp))?;
        Ok(())
    }

    /// Write the snapshot row, close the file and publish it. `check_name`
    /// runs under the commit lock, just before the rename.
    pub fn publish(
        mut self,
        repo: &Repository,
        meta: &NewSnapshot,
        check_name: impl FnOnce(&Repository) -> Result<()>,
    ) -> Result<(SnapshotId, u64)> {
        let conn = self.conn.take().ok_or(Error::Interrupted)?;
        let tool = format!("kindsnap {}", env!("CARGO_PKG_VERSION"));
        let finish = || -> rusqlite::Result<()> {
            conn.execute(
                "INSERT INTO snapshot(name, time_us, source, kinds_filter, parent, depth, keyframe, entities, raw_bytes,
                                      bytes_added, packs_added, tool)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12)",
                params![
                    meta.name,
                    meta.time_us,
                    meta.source,
                    meta.kinds_filter,
                    meta.parent.map(|p| p.to_hex()),
                    meta.depth,
                    meta.keyframe as i64,
                    meta.entities,
                    meta.raw_bytes,
                    meta.bytes_added,
                    meta.packs_added,
                    tool
                ],
            )?;
            conn.execute_batch("COMMIT")?;
            Ok(())
        };
        finish().map_err(Error::sql(&self.tmp))?;
        conn.close().map_err(|(_, e)| Error::Sqlite { path: self.tmp.clone(), source: e })?;
        let bytes = fs::read(&self.tmp).map_err(Error::io("reading", &self.tmp))?;
        let id = SnapshotId::of(&bytes);
        let len = bytes.len() as u64;
        drop(bytes);
        let _commit = repo.lock_commit()?;
        check_name(repo)?;
        fsutil::commit_file(&self.tmp, &repo.snapshot_path(&id))?;
        Ok((id, len))
    }
}

impl Drop for ManifestWriter {
    fn drop(&mut self) {
        self.conn.take();
        let _ = fs::remove_file(&self.tmp);
    }
}

/// List every published snapshot, oldest first. Unreadable manifests are
/// returned as errors beside the good ones so `check` can report them.
pub fn list(repo: &Repository) -> Result<(Vec<SnapshotInfo>, Vec<(SnapshotId, Error)>)> {
    let dir = repo.snapshots_dir();
    let mut infos = Vec::new();
    let mut bad = Vec::new();
    for e in fs::read_dir(&dir).map_err(Error::io("reading", &dir))? {
        let e = e.map_err(Error::io("reading", &dir))?;
        let name = e.file_name().to_string_lossy().to_string();
        let Some(id) = SnapshotId::from_hex(&name) else { continue };
        match Manifest::open_path(&e.path(), id) {
            Ok(m) => infos.push(m.info),
            Err(err) => bad.push((id, err)),
        }
    }
    infos.sort_by(|a, b| a.time_us.cmp(&b.time_us).then(a.id.cmp(&b.id)));
    Ok((infos, bad))
}

/// Resolve a user's snapshot reference: `latest`, `latest~N`, a name (the
/// newest snapshot of that name), or a unique id prefix (4+ hex digits).
pub fn resolve(infos: &[SnapshotInfo], spec: &str) -> Result<SnapshotInfo> {
    let unknown = || Error::UnknownSnapshot { spec: spec.to_string() };
    if spec == "latest" || spec.starts_with("latest~") {
        let n: usize = if spec == "latest" { 0 } else { spec[7..].parse().map_err(|_| unknown())? };
        return infos.iter().rev().nth(n).cloned().ok_or_else(unknown);
    }
    if let Some(i) = infos.iter().rev().find(|i| i.name == spec) {
        return Ok(i.clone());
    }
    let lower = spec.to_ascii_lowercase();
    if lower.len() >= 4 && lower.chars().all(|c| c.is_ascii_hexdigit()) {
        let matches: Vec<&SnapshotInfo> = infos.iter().filter(|i| i.id.to_hex().starts_with(&lower)).collect();
        return match matches.len() {
            0 => Err(unknown()),
            1 => Ok(matches[0].clone()),
            _ => Err(Error::AmbiguousSnapshot {
                spec: spec.to_string(),
                matches: matches.iter().map(|m| m.id.short()).collect::<Vec<_>>().join(", "),
            }),
        };
    }
    Err(unknown())
}
