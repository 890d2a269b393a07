//! The index: which pack, block and offset holds each entity hash. It is a
//! SQLite file that can always be rebuilt from the packs' tables of
//! contents (`kindsnap check --rebuild-index`).
//!
//! Invariant: an entry is added only after its pack is durable in `packs/`,
//! and before any manifest that needs it is published.

use std::path::{Path, PathBuf};
use std::time::Duration;

use rusqlite::{params, Connection, OpenFlags, OptionalExtension};

use crate::error::{Error, Result};
use crate::ids::{EntityHash, PackId};
use crate::repo::crypto::Keys;

const SCHEMA_VERSION: i64 = 1;

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS packs(
    pid INTEGER PRIMARY KEY,
    id BLOB NOT NULL UNIQUE,
    namespace TEXT NOT NULL,
    kind TEXT NOT NULL,
    size INTEGER NOT NULL,
    raw_bytes INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS blocks(
    bid INTEGER PRIMARY KEY,
    pid INTEGER NOT NULL,
    off INTEGER NOT NULL,
    clen INTEGER NOT NULL,
    raw INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS entities(
    hash BLOB PRIMARY KEY,
    bid INTEGER NOT NULL,
    off INTEGER NOT NULL,
    len INTEGER NOT NULL
) WITHOUT ROWID;
";

/// Where an entity body lives.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Location {
    pub pack: PackId,
    pub block_off: u64,
    pub block_len: u32,
    pub block_raw: u32,
    pub off: u32,
    pub len: u32,
}

impl Location {
    /// Body `(off, len)` of block `(offset, compressed length, raw length)`
    /// of `pack`.
    pub fn new(pack: PackId, block: (u64, u32, u32), (off, len): (u32, u32)) -> Location {
        let (block_off, block_len, block_raw) = block;
        Location {
            pack,
            block_off,
            block_len,
            block_raw,
            off,
            len,
        }
    }
}

/// How a pack's namespace and kind are stored in the `packs` table.
type KindSealer<'s> = &'s dyn Fn(&str, &str) -> (String, String);

fn insert_packs(
    tx: &rusqlite::Transaction<'_>,
    packs: &[NewPack],
    seal: KindSealer,
) -> rusqlite::Result<()> {
    for p in packs {
        let (ns, kind) = seal(&p.namespace, &p.kind);
        let new_pack = tx.execute(
            "INSERT OR IGNORE INTO packs(id, namespace, kind, size, raw_bytes) VALUES (?1, ?2, ?3, ?4, ?5)",
            params![&p.id.as_bytes()[..], ns, kind, p.size, p.raw_bytes],
        )? == 1;
        if !new_pack {
            // The same bytes were written before (packs are content
            // addressed): everything in it is indexed already.
            continue;
        }
        let pid = tx.last_insert_rowid();
        let mut block_st =
            tx.prepare_cached("INSERT INTO blocks(pid, off, clen, raw) VALUES (?1, ?2, ?3, ?4)")?;
        let mut bids: std::collections::HashMap<u64, i64> = std::collections::HashMap::new();
        let mut rows: Vec<(&EntityHash, i64, u32, u32)> = Vec::with_capacity(ENTITY_BATCH);
        for (h, l) in &p.entries {
            let bid = match bids.get(&l.block_off) {
                Some(b) => *b,
                None => {
                    block_st.execute(params![pid, l.block_off, l.block_len, l.block_raw])?;
                    let b = tx.last_insert_rowid();
                    bids.insert(l.block_off, b);
                    b
                }
            };
            rows.push((h, bid, l.off, l.len));
            if rows.len() == ENTITY_BATCH {
                insert_entities(tx, &rows)?;
                rows.clear();
            }
        }
        for row in &rows {
            insert_entities(tx, std::slice::from_ref(row))?;
        }
    }
    Ok(())
}

/// Rows per INSERT statement: many rows to a statement cost SQLite a good
/// deal less than one each.
const ENTITY_BATCH: usize = 64;

fn insert_entities(
    tx: &rusqlite::Transaction<'_>,
    rows: &[(&EntityHash, i64, u32, u32)],
) -> rusqlite::Result<()> {
    let sql = format!(
        "INSERT OR IGNORE INTO entities(hash, bid, off, len) VALUES {}",
        vec!["(?, ?, ?, ?)"; rows.len()].join(", ")
    );
    let mut st = tx.prepare_cached(&sql)?;
    for (i, (h, bid, off, len)) in rows.iter().enumerate() {
        let at = i * 4 + 1;
        st.raw_bind_parameter(at, &h.as_bytes()[..])?;
        st.raw_bind_parameter(at + 1, bid)?;
        st.raw_bind_parameter(at + 2, off)?;
        st.raw_bind_parameter(at + 3, len)?;
    }
    st.raw_execute()?;
    Ok(())
}

/// Tables only a remote repository's cache has (src/repo/remote.rs): the
/// index segments applied to this file, and the packs some segment holds.
const REMOTE_SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS remote_segments(name TEXT PRIMARY KEY);
CREATE TABLE IF NOT EXISTS remote_published(id BLOB PRIMARY KEY) WITHOUT ROWID;
";

/// A durable pack waiting to be recorded in the index.
#[derive(Debug, Clone)]
pub struct NewPack {
    pub id: PackId,
    pub namespace: String,
    pub kind: String,
    pub size: u64,
    pub raw_bytes: u64,
    pub entries: Vec<(EntityHash, Location)>,
}

/// How much of one pack is still needed (see [`Index::pack_usage`]).
#[derive(Debug, Clone)]
pub struct PackUsage {
    pub pid: i64,
    pub id: PackId,
    pub namespace: String,
    pub kind: String,
    /// File size.
    pub size: u64,
    /// Uncompressed bytes of every body in the pack.
    pub raw_bytes: u64,
    /// Bodies the index places in this pack, and how many are live.
    pub entities: u64,
    pub live: u64,
    /// Uncompressed bytes of the live bodies.
    pub live_raw: u64,
}

/// Per-kind pack totals (for stored-size estimates).
#[derive(Debug, Clone, Default)]
pub struct KindStorage {
    pub packs: u64,
    pub size: u64,
    pub raw_bytes: u64,
}

pub struct Index {
    conn: Connection,
    path: PathBuf,
    /// In an encrypted repository: each pack's namespace and kind are
    /// stored as a keyed tag (`namespace`, for grouping and lookups) and
    /// sealed (`kind`), since kind names are data too.
    keys: Option<std::sync::Arc<Keys>>,
}

/// Associated data of a sealed kind name in the index.
const KIND_AAD: &[u8] = b"kindsnap index kind";

impl Index {
    pub fn create(path: &Path) -> Result<()> {
        let conn = Connection::open(path).map_err(Error::sql(path))?;
        conn.execute_batch(SCHEMA).map_err(Error::sql(path))?;
        conn.pragma_update(None, "user_version", SCHEMA_VERSION)
            .map_err(Error::sql(path))?;
        Ok(())
    }

    /// Open for reading and writing (`write`) or read-only.
    pub fn open(path: &Path, write: bool) -> Result<Index> {
        if !path.exists() {
            return Err(Error::NotARepository {
                path: path.to_path_buf(),
                why: "the index is missing; `kindsnap check --rebuild-index` recreates it".into(),
            });
        }
        // Readers open read-write too when they may: a process killed in the
        // middle of an index transaction leaves a hot journal, and only a
        // connection that can write may roll it back (SQLite does so on the
        // first read). Read-only repositories fall back to a read-only open.
        let rw = OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX;
        let ro = OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX;
        let conn = match Connection::open_with_flags(path, rw) {
            Ok(c) => c,
            Err(_) if !write => Connection::open_with_flags(path, ro).map_err(Error::sql(path))?,
            Err(e) => {
                return Err(Error::Sqlite {
                    path: path.to_path_buf(),
                    source: e,
                })
            }
        };
        conn.busy_timeout(Duration::from_secs(120))
            .map_err(Error::sql(path))?;
        if write {
            conn.pragma_update(None, "synchronous", "FULL")
                .map_err(Error::sql(path))?;
        }
        // The writer inserts at random places in a B-tree that outgrows any
        // cache; a larger cache saves re-reading and re-writing pages. The
        // readers look up one hash at a time and need little.
        conn.pragma_update(None, "cache_size", if write { -8_000 } else { -2_000 })
            .map_err(Error::sql(path))?;
        let v: i64 = conn
            .pragma_query_value(None, "user_version", |r| r.get(0))
            .map_err(Error::sql(path))?;
        if v != SCHEMA_VERSION {
            return Err(Error::NotARepository {
                path: path.to_path_buf(),
                why: format!("index schema version {v}"),
            });
        }
        Ok(Index {
            conn,
            path: path.to_path_buf(),
            keys: None,
        })
    }

    /// The same index, sealing kind names with `keys` (an encrypted
    /// repository's; None leaves them plain).
    pub fn sealed(mut self, keys: Option<std::sync::Arc<Keys>>) -> Index {
        self.keys = keys;
        self
    }

    /// A pack's (namespace, kind) as the `packs` table stores them.
    fn seal_kind(&self, namespace: &str, kind: &str) -> (String, String) {
        use base64::Engine;
        match &self.keys {
            None => (namespace.to_string(), kind.to_string()),
            Some(k) => {
                let both = format!("{namespace}\0{kind}");
                let sealed = k.seal(KIND_AAD, both.as_bytes());
                (
                    k.lookup_tag(both.as_bytes()),
                    base64::engine::general_purpose::STANDARD.encode(sealed),
                )
            }
        }
    }

    /// The stored (namespace, kind) of a pack back in the clear.
    fn open_kind(&self, namespace: String, kind: String) -> Result<(String, String)> {
        use base64::Engine;
        let Some(k) = &self.keys else {
            return Ok((namespace, kind));
        };
        let failed = || Error::AuthFailed {
            file: self.path.display().to_string(),
            at: " (a pack's kind)".into(),
        };
        let sealed = base64::engine::general_purpose::STANDARD
            .decode(kind)
            .map_err(|_| failed())?;
        let plain = k.open(KIND_AAD, &sealed).map_err(|_| failed())?;
        let text = String::from_utf8(plain).map_err(|_| failed())?;
        let (ns, kind) = text.split_once('\0').ok_or_else(failed)?;
        if k.lookup_tag(text.as_bytes()) != namespace {
            return Err(failed());
        }
        Ok((ns.to_string(), kind.to_string()))
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    pub fn contains(&self, hash: &EntityHash) -> Result<bool> {
        let mut st = self
            .conn
            .prepare_cached("SELECT 1 FROM entities WHERE hash = ?1")
            .map_err(Error::sql(&self.path))?;
        st.exists(params![&hash.as_bytes()[..]])
            .map_err(Error::sql(&self.path))
    }

    pub fn lookup(&self, hash: &EntityHash) -> Result<Option<Location>> {
        let mut st = self
            .conn
            .prepare_cached(
                "SELECT p.id, b.off, b.clen, b.raw, e.off, e.len
                 FROM entities e JOIN blocks b ON b.bid = e.bid JOIN packs p ON p.pid = b.pid
                 WHERE e.hash = ?1",
            )
            .map_err(Error::sql(&self.path))?;
        st.query_row(params![&hash.as_bytes()[..]], |r| {
            let id: Vec<u8> = r.get(0)?;
            Ok((id, r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?, r.get(5)?))
        })
        .optional()
        .map_err(Error::sql(&self.path))?
        .map(|(id, block_off, block_len, block_raw, off, len)| {
            let pack = PackId::from_slice(&id).ok_or_else(|| Error::NotARepository {
                path: self.path.clone(),
                why: "index holds a malformed pack id".into(),
            })?;
            Ok(Location {
                pack,
                block_off,
                block_len,
                block_raw,
                off,
                len,
            })
        })
        .transpose()
    }

    /// Record a durable pack and the entities it holds, in one transaction.
    pub fn add_pack(
        &self,
        id: &PackId,
        namespace: &str,
        kind: &str,
        size: u64,
        raw_bytes: u64,
        entries: &[(EntityHash, Location)],
    ) -> Result<()> {
        let pack = NewPack {
            id: *id,
            namespace: namespace.to_string(),
            kind: kind.to_string(),
            size,
            raw_bytes,
            entries: entries.to_vec(),
        };
        self.add_packs(std::slice::from_ref(&pack))
    }

    /// Record several durable packs in one transaction (fewer journal
    /// writes than one transaction per pack when the index is large).
    pub fn add_packs(&self, packs: &[NewPack]) -> Result<()> {
        let run = || -> rusqlite::Result<()> {
            let tx = self.conn.unchecked_transaction()?;
            insert_packs(&tx, packs, &|ns, kind| self.seal_kind(ns, kind))?;
            tx.commit()
        };
        match run().map_err(Error::sql(&self.path)) {
            // A full disk has no room for the rollback journal. Prune must
            // still be able to drop packs there, so the journal goes to
            // memory for this one transaction: a crash in it can leave an
            // index that `check --rebuild-index` rebuilds from the packs,
            // which are deleted only after the commit.
            Err(e) if e.is_no_space() => {
                self.conn
                    .pragma_update(None, "journal_mode", "MEMORY")
                    .map_err(Error::sql(&self.path))?;
                let res = run().map_err(Error::sql(&self.path));
                let _ = self.conn.pragma_update(None, "journal_mode", "DELETE");
                res
            }
            other => other,
        }
    }

    /// Attach a scratch database holding `live(hash BLOB PRIMARY KEY)` as
    /// schema `live`, for [`Self::pack_usage`] and [`Self::live_in_pack`].
    pub fn attach_live(&self, path: &Path) -> Result<()> {
        self.conn
            .execute(
                "ATTACH DATABASE ?1 AS live",
                params![path.to_string_lossy()],
            )
            .map_err(Error::sql(&self.path))?;
        Ok(())
    }

    /// Per pack: how many indexed bodies and bytes it holds, and how many of
    /// them are live (listed in the attached `live` table).
    pub fn pack_usage(&self) -> Result<Vec<PackUsage>> {
        let mut st = self
            .conn
            .prepare(
                "SELECT p.pid, p.id, p.namespace, p.kind, p.size, p.raw_bytes,
                        count(e.hash), count(l.hash),
                        coalesce(sum(CASE WHEN l.hash IS NOT NULL THEN e.len ELSE 0 END), 0)
                 FROM packs p
                 LEFT JOIN blocks b ON b.pid = p.pid
                 LEFT JOIN entities e ON e.bid = b.bid
                 LEFT JOIN live.live l ON l.hash = e.hash
                 GROUP BY p.pid ORDER BY p.namespace, p.kind, p.pid",
            )
            .map_err(Error::sql(&self.path))?;
        let rows = st
            .query_map([], |r| {
                Ok((
                    r.get::<_, i64>(0)?,
                    r.get::<_, Vec<u8>>(1)?,
                    r.get::<_, String>(2)?,
                    r.get::<_, String>(3)?,
                    r.get::<_, u64>(4)?,
                    r.get::<_, u64>(5)?,
                    r.get::<_, u64>(6)?,
                    r.get::<_, u64>(7)?,
                    r.get::<_, u64>(8)?,
                ))
            })
            .map_err(Error::sql(&self.path))?;
        let mut out = Vec::new();
        for row in rows {
            let (pid, id, namespace, kind, size, raw_bytes, entities, live, live_raw) =
                row.map_err(Error::sql(&self.path))?;
            let Some(id) = PackId::from_slice(&id) else {
                continue;
            };
            let (namespace, kind) = self.open_kind(namespace, kind)?;
            out.push(PackUsage {
                pid,
                id,
                namespace,
                kind,
                size,
                raw_bytes,
                entities,
                live,
                live_raw,
            });
        }
        Ok(out)
    }

    /// The live bodies of one pack, in file order.
    pub fn live_in_pack(&self, pid: i64, id: PackId) -> Result<Vec<(EntityHash, Location)>> {
        self.bodies_in_pack(
            "SELECT e.hash, b.off, b.clen, b.raw, e.off, e.len
             FROM blocks b JOIN entities e ON e.bid = b.bid
             JOIN live.live l ON l.hash = e.hash
             WHERE b.pid = ?1 ORDER BY b.off, e.off",
            rusqlite::types::Value::Integer(pid),
            id,
        )
    }

    /// The (hash, location) rows a query selects for pack `id`, in order:
    /// `hash, block off, clen, raw, body off, len`, with one parameter.
    fn bodies_in_pack(
        &self,
        sql: &str,
        param: rusqlite::types::Value,
        id: PackId,
    ) -> Result<Vec<(EntityHash, Location)>> {
        let mut st = self
            .conn
            .prepare_cached(sql)
            .map_err(Error::sql(&self.path))?;
        let rows = st
            .query_map(params![param], |r| {
                Ok((
                    r.get::<_, Vec<u8>>(0)?,
                    r.get(1)?,
                    r.get(2)?,
                    r.get(3)?,
                    r.get(4)?,
                    r.get(5)?,
                ))
            })
            .map_err(Error::sql(&self.path))?;
        let mut out = Vec::new();
        for row in rows {
            let (h, block_off, block_len, block_raw, off, len) =
                row.map_err(Error::sql(&self.path))?;
            if let Some(h) = EntityHash::from_slice(&h) {
                out.push((
                    h,
                    Location::new(id, (block_off, block_len, block_raw), (off, len)),
                ));
            }
        }
        Ok(out)
    }

    /// In one transaction: record `new` packs (their entries replace the
    /// bodies' current locations) and forget `removed` packs with whatever
    /// entries still point into them.
    pub fn replace_packs(&self, new: &[NewPack], removed: &[PackId]) -> Result<()> {
        let run = || -> rusqlite::Result<()> {
            let tx = self.conn.unchecked_transaction()?;
            for p in new {
                let (ns, kind) = self.seal_kind(&p.namespace, &p.kind);
                tx.execute(
                    "INSERT OR IGNORE INTO packs(id, namespace, kind, size, raw_bytes) VALUES (?1, ?2, ?3, ?4, ?5)",
                    params![&p.id.as_bytes()[..], ns, kind, p.size, p.raw_bytes],
                )?;
                let pid: i64 = tx.query_row(
                    "SELECT pid FROM packs WHERE id = ?1",
                    params![&p.id.as_bytes()[..]],
                    |r| r.get(0),
                )?;
                let mut bids: std::collections::HashMap<u64, i64> =
                    std::collections::HashMap::new();
                for (h, l) in &p.entries {
                    let bid = match bids.get(&l.block_off) {
                        Some(b) => *b,
                        None => {
                            tx.execute(
                                "INSERT INTO blocks(pid, off, clen, raw) VALUES (?1, ?2, ?3, ?4)",
                                params![pid, l.block_off, l.block_len, l.block_raw],
                            )?;
                            let b = tx.last_insert_rowid();
                            bids.insert(l.block_off, b);
                            b
                        }
                    };
                    tx.execute(
                        "INSERT OR REPLACE INTO entities(hash, bid, off, len) VALUES (?1, ?2, ?3, ?4)",
                        params![&h.as_bytes()[..], bid, l.off, l.len],
                    )?;
                }
            }
            for id in removed {
                let pid: Option<i64> = tx
                    .query_row(
                        "SELECT pid FROM packs WHERE id = ?1",
                        params![&id.as_bytes()[..]],
                        |r| r.get(0),
                    )
                    .optional()?;
                let Some(pid) = pid else { continue };
                tx.execute(
                    "DELETE FROM entities WHERE bid IN (SELECT bid FROM blocks WHERE pid = ?1)",
                    params![pid],
                )?;
                tx.execute("DELETE FROM blocks WHERE pid = ?1", params![pid])?;
                tx.execute("DELETE FROM packs WHERE pid = ?1", params![pid])?;
            }
            tx.commit()
        };
        run().map_err(Error::sql(&self.path))
    }

    /// Give free pages back to the file system when more than a fifth of
    /// the file is free (after prune deleted rows). Returns whether it ran.
    pub fn vacuum_if_sparse(&self) -> Result<bool> {
        let pages: i64 = self
            .conn
            .query_row("PRAGMA page_count", [], |r| r.get(0))
            .map_err(Error::sql(&self.path))?;
        let free: i64 = self
            .conn
            .query_row("PRAGMA freelist_count", [], |r| r.get(0))
            .map_err(Error::sql(&self.path))?;
        if free * 5 <= pages {
            return Ok(false);
        }
        // VACUUM needs room for a copy; on a full disk, later.
        match self
            .conn
            .execute_batch("VACUUM main")
            .map_err(Error::sql(&self.path))
        {
            Ok(()) => Ok(true),
            Err(e) if e.is_no_space() => Ok(false),
            Err(e) => Err(e),
        }
    }

    /// Every pack the index knows, with its kind.
    pub fn packs(&self) -> Result<Vec<(PackId, String, String, u64)>> {
        let mut st = self
            .conn
            .prepare("SELECT id, namespace, kind, size FROM packs ORDER BY id")
            .map_err(Error::sql(&self.path))?;
        let rows = st
            .query_map([], |r| {
                Ok((r.get::<_, Vec<u8>>(0)?, r.get(1)?, r.get(2)?, r.get(3)?))
            })
            .map_err(Error::sql(&self.path))?;
        let mut out = Vec::new();
        for row in rows {
            let (id, ns, kind, size) = row.map_err(Error::sql(&self.path))?;
            if let Some(id) = PackId::from_slice(&id) {
                let (ns, kind) = self.open_kind(ns, kind)?;
                out.push((id, ns, kind, size));
            }
        }
        Ok(out)
    }

    /// Every body the index places in one pack, in file order.
    pub fn entities_in_pack(&self, id: &PackId) -> Result<Vec<(EntityHash, Location)>> {
        self.bodies_in_pack(
            "SELECT e.hash, b.off, b.clen, b.raw, e.off, e.len
             FROM packs p JOIN blocks b ON b.pid = p.pid JOIN entities e ON e.bid = b.bid
             WHERE p.id = ?1 ORDER BY b.off, e.off",
            rusqlite::types::Value::Blob(id.as_bytes().to_vec()),
            *id,
        )
    }

    /// How many entities the index places in each pack (one scan).
    pub fn entities_per_pack(&self) -> Result<std::collections::HashMap<PackId, u64>> {
        let mut st = self
            .conn
            .prepare(
                "SELECT p.id, count(*) FROM entities e JOIN blocks b ON b.bid = e.bid \
                 JOIN packs p ON p.pid = b.pid GROUP BY p.pid",
            )
            .map_err(Error::sql(&self.path))?;
        let rows = st
            .query_map([], |r| Ok((r.get::<_, Vec<u8>>(0)?, r.get::<_, i64>(1)?)))
            .map_err(Error::sql(&self.path))?;
        let mut out = std::collections::HashMap::new();
        for row in rows {
            let (id, n) = row.map_err(Error::sql(&self.path))?;
            if let Some(id) = PackId::from_slice(&id) {
                out.insert(id, n as u64);
            }
        }
        Ok(out)
    }

    /// Pack totals per (namespace, kind).
    pub fn kind_storage(&self, namespace: &str, kind: &str) -> Result<KindStorage> {
        let mut st = self
            .conn
            .prepare_cached(
                "SELECT count(*), coalesce(sum(size),0), coalesce(sum(raw_bytes),0) FROM packs WHERE namespace=?1 AND (kind=?2 OR ?3)",
            )
            .map_err(Error::sql(&self.path))?;
        // Sealed kinds are found by their tag alone.
        let (ns, kind) = match &self.keys {
            Some(_) => (self.seal_kind(namespace, kind).0, String::new()),
            None => (namespace.to_string(), kind.to_string()),
        };
        st.query_row(params![ns, kind, self.keys.is_some()], |r| {
            Ok(KindStorage {
                packs: r.get(0)?,
                size: r.get(1)?,
                raw_bytes: r.get(2)?,
            })
        })
        .map_err(Error::sql(&self.path))
    }

    /// Run SQLite's own consistency check.
    pub fn quick_check(&self) -> Result<Option<String>> {
        let res: String = self
            .conn
            .query_row("PRAGMA quick_check", [], |r| r.get(0))
            .map_err(Error::sql(&self.path))?;
        Ok(if res == "ok" { None } else { Some(res) })
    }

    /// Total number of entity bodies indexed.
    pub fn entity_count(&self) -> Result<u64> {
        self.conn
            .query_row("SELECT count(*) FROM entities", [], |r| r.get(0))
            .map_err(Error::sql(&self.path))
    }
}

/// A Bloom filter over entity hashes (which are uniformly random already,
/// so four 64-bit slices of the hash serve as the four probe positions).
struct Bloom {
    bits: Vec<u64>,
    mask: u64,
}

impl Bloom {
    fn with_capacity(n: u64) -> Bloom {
        let bits = (n.saturating_mul(16)).max(1 << 23).next_power_of_two();
        Bloom {
            bits: vec![0; (bits / 64) as usize],
            mask: bits - 1,
        }
    }
    fn probes(h: &EntityHash) -> [u64; 4] {
        let b = h.as_bytes();
        let at = |i: usize| {
            u64::from_le_bytes([
                b[i],
                b[i + 1],
                b[i + 2],
                b[i + 3],
                b[i + 4],
                b[i + 5],
                b[i + 6],
                b[i + 7],
            ])
        };
        [at(0), at(8), at(16), at(24)]
    }
    fn insert(&mut self, h: &EntityHash) {
        for p in Self::probes(h) {
            let bit = p & self.mask;
            self.bits[(bit / 64) as usize] |= 1 << (bit % 64);
        }
    }
    fn maybe(&self, h: &EntityHash) -> bool {
        Self::probes(h).iter().all(|p| {
            let bit = p & self.mask;
            self.bits[(bit / 64) as usize] & (1 << (bit % 64)) != 0
        })
    }
}

/// "Is this body stored already?" for a snapshot in progress. Asks the
/// index; once a run has asked many times (a first snapshot, or a source
/// whose order differs from the parent's), it loads a Bloom filter of the
/// index so that new bodies, the common answer then, need no lookup.
pub struct Dedup {
    index: Index,
    bloom: Option<Bloom>,
    lookups: u64,
}

const BLOOM_AFTER: u64 = 20_000;

impl Dedup {
    pub fn open(path: &Path) -> Result<Dedup> {
        let mut d = Dedup {
            index: Index::open(path, false)?,
            bloom: None,
            lookups: 0,
        };
        // An empty index (a new repository's first snapshot): the filter
        // costs nothing to build and answers every lookup.
        let empty: Option<i64> = d
            .index
            .conn
            .query_row("SELECT 1 FROM entities LIMIT 1", [], |r| r.get(0))
            .optional()
            .map_err(Error::sql(&d.index.path))?;
        if empty.is_none() {
            d.build(&crate::ids::EntityHashSet::default())?;
        }
        Ok(d)
    }

    /// Whether a body with this hash is committed in the index. `pending`
    /// (bodies this run handed to the packer, not yet committed) joins the
    /// filter when it is built.
    pub fn is_stored(
        &mut self,
        hash: &EntityHash,
        pending: &crate::ids::EntityHashSet,
    ) -> Result<bool> {
        if let Some(b) = &self.bloom {
            if !b.maybe(hash) {
                return Ok(false);
            }
        } else {
            self.lookups += 1;
            if self.lookups == BLOOM_AFTER {
                self.build(pending)?;
            }
        }
        self.index.contains(hash)
    }

    /// Record a body this run is storing (so the filter stays complete).
    pub fn note_added(&mut self, hash: &EntityHash) {
        if let Some(b) = &mut self.bloom {
            b.insert(hash);
        }
    }

    fn build(&mut self, pending: &crate::ids::EntityHashSet) -> Result<()> {
        let n = self.index.entity_count()?;
        let mut bloom = Bloom::with_capacity(n + 1_000_000);
        let mut st = self
            .index
            .conn
            .prepare("SELECT hash FROM entities")
            .map_err(Error::sql(&self.index.path))?;
        let mut rows = st.query([]).map_err(Error::sql(&self.index.path))?;
        while let Some(r) = rows.next().map_err(Error::sql(&self.index.path))? {
            let h: Vec<u8> = r.get(0).map_err(Error::sql(&self.index.path))?;
            if let Some(h) = EntityHash::from_slice(&h) {
                bloom.insert(&h);
            }
        }
        for h in pending {
            bloom.insert(h);
        }
        self.bloom = Some(bloom);
        Ok(())
    }
}

/// Note that segment `name` is applied or published, holding packs `ids`.
fn record_segment<'a>(
    tx: &rusqlite::Transaction<'_>,
    name: &str,
    ids: impl IntoIterator<Item = &'a PackId>,
) -> rusqlite::Result<()> {
    for id in ids {
        tx.execute(
            "INSERT OR IGNORE INTO remote_published(id) VALUES (?1)",
            params![&id.as_bytes()[..]],
        )?;
    }
    tx.execute(
        "INSERT OR IGNORE INTO remote_segments(name) VALUES (?1)",
        params![name],
    )?;
    Ok(())
}

/// The cache of a remote repository (src/repo/remote.rs).
impl Index {
    pub fn ensure_remote_tables(&self) -> Result<()> {
        self.conn
            .execute_batch(REMOTE_SCHEMA)
            .map_err(Error::sql(&self.path))
    }

    /// Names of the index segments applied to this file.
    pub fn applied_segments(&self) -> Result<std::collections::HashSet<String>> {
        let run = || -> rusqlite::Result<std::collections::HashSet<String>> {
            let mut st = self.conn.prepare("SELECT name FROM remote_segments")?;
            let rows = st.query_map([], |r| r.get::<_, String>(0))?;
            rows.collect()
        };
        run().map_err(Error::sql(&self.path))
    }

    /// Apply index segments (each: its name, its packs) in one
    /// transaction; with `reset`, everything else is dropped first.
    pub fn apply_segments(&self, reset: bool, segments: &[(String, Vec<NewPack>)]) -> Result<()> {
        let run = || -> rusqlite::Result<()> {
            let tx = self.conn.unchecked_transaction()?;
            if reset {
                tx.execute_batch(
                    "DELETE FROM entities; DELETE FROM blocks; DELETE FROM packs;
                     DELETE FROM remote_segments; DELETE FROM remote_published;",
                )?;
            }
            for (name, packs) in segments {
                insert_packs(&tx, packs, &|ns, kind| self.seal_kind(ns, kind))?;
                record_segment(&tx, name, packs.iter().map(|p| &p.id))?;
            }
            tx.commit()
        };
        run().map_err(Error::sql(&self.path))
    }

    /// Record that segment `name` holds the packs `ids` (with `only`, it
    /// is now the only segment).
    pub fn mark_published(&self, name: &str, ids: &[PackId], only: bool) -> Result<()> {
        let run = || -> rusqlite::Result<()> {
            let tx = self.conn.unchecked_transaction()?;
            if only {
                tx.execute_batch("DELETE FROM remote_segments; DELETE FROM remote_published;")?;
            }
            record_segment(&tx, name, ids)?;
            tx.commit()
        };
        run().map_err(Error::sql(&self.path))
    }

    /// Every indexed pack with its index rows.
    pub fn all_packs(&self) -> Result<Vec<NewPack>> {
        self.packs_with_rows(false)
    }

    /// Indexed packs that no segment holds yet, with their index rows.
    pub fn unpublished_packs(&self) -> Result<Vec<NewPack>> {
        self.packs_with_rows(true)
    }

    fn packs_with_rows(&self, unpublished: bool) -> Result<Vec<NewPack>> {
        let filter = if unpublished {
            "WHERE id NOT IN (SELECT id FROM remote_published)"
        } else {
            ""
        };
        let run = || -> rusqlite::Result<Vec<NewPack>> {
            let mut out: Vec<NewPack> = Vec::new();
            let mut by_pid: std::collections::HashMap<i64, usize> = Default::default();
            let mut st = self.conn.prepare(&format!(
                "SELECT pid, id, namespace, kind, size, raw_bytes FROM packs {filter} ORDER BY pid"
            ))?;
            let mut rows = st.query([])?;
            while let Some(r) = rows.next()? {
                let id: Vec<u8> = r.get(1)?;
                let Ok(id) = <[u8; 32]>::try_from(&id[..]) else {
                    continue;
                };
                by_pid.insert(r.get(0)?, out.len());
                out.push(NewPack {
                    id: PackId::from(id),
                    namespace: r.get(2)?,
                    kind: r.get(3)?,
                    size: r.get(4)?,
                    raw_bytes: r.get(5)?,
                    entries: Vec::new(),
                });
            }
            if out.is_empty() {
                return Ok(out);
            }
            let mut st = self.conn.prepare(
                "SELECT b.pid, b.off, b.clen, b.raw, e.hash, e.off, e.len
                 FROM entities e JOIN blocks b ON b.bid = e.bid",
            )?;
            let mut rows = st.query([])?;
            while let Some(r) = rows.next()? {
                let Some(&i) = by_pid.get(&r.get::<_, i64>(0)?) else {
                    continue;
                };
                let h: Vec<u8> = r.get(4)?;
                let Ok(h) = <[u8; 32]>::try_from(&h[..]) else {
                    continue;
                };
                let p = &mut out[i];
                p.entries.push((
                    EntityHash::from(h),
                    Location {
                        pack: p.id,
                        block_off: r.get(1)?,
                        block_len: r.get(2)?,
                        block_raw: r.get(3)?,
                        off: r.get(5)?,
                        len: r.get(6)?,
                    },
                ));
            }
            Ok(out)
        };
        let mut out = run().map_err(Error::sql(&self.path))?;
        for p in &mut out {
            let (ns, kind) = self.open_kind(
                std::mem::take(&mut p.namespace),
                std::mem::take(&mut p.kind),
            )?;
            p.namespace = ns;
            p.kind = kind;
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bloom_has_no_false_negatives() {
        let mut b = Bloom::with_capacity(1000);
        let hs: Vec<EntityHash> = (0..5000u32)
            .map(|i| EntityHash::of(&i.to_le_bytes()))
            .collect();
        for h in &hs[..2500] {
            b.insert(h);
        }
        assert!(hs[..2500].iter().all(|h| b.maybe(h)));
        let fp = hs[2500..].iter().filter(|h| b.maybe(h)).count();
        assert!(fp < 25, "{fp} false positives");
    }
}
