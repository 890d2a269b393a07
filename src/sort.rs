//! External sort of snapshot records by (namespace, kind, key), in bounded
//! memory: records accumulate in one arena up to a budget, are sorted and
//! spilled to run files in the repository's `tmp/`, then merged.
//!
//! This is what lets a source that is not in key order (a JSON Lines file
//! written in any order) be merged against the parent snapshot without
//! holding a kind in memory.

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap};
use std::fs::{self, File};
use std::io::{BufReader, BufWriter, Read, Write};
use std::path::{Path, PathBuf};

use crate::error::{Error, Result};
use crate::ids::EntityHash;
use crate::repo::fsutil;

/// One entity on its way into a snapshot: its key and hash (the body has
/// already gone to a pack, or was known).
#[derive(Debug, Clone)]
pub struct Record {
    pub gid: u32,
    /// Where the source read it (a line number for files), for messages.
    pub origin: u64,
    pub hash: EntityHash,
    pub key: Vec<u8>,
    /// Size of the canonical encoding.
    pub size: u32,
}

/// (namespace, kind) → small integer, in order of first appearance.
#[derive(Debug, Default, Clone)]
pub struct Groups {
    names: Vec<(String, String)>,
    /// namespace → kind → group, looked up without allocating.
    map: HashMap<String, HashMap<String, u32>>,
}

impl Groups {
    pub fn intern(&mut self, namespace: &str, kind: &str) -> u32 {
        if let Some(g) = self.get(namespace, kind) {
            return g;
        }
        let g = self.names.len() as u32;
        self.names.push((namespace.to_string(), kind.to_string()));
        self.map
            .entry(namespace.to_string())
            .or_default()
            .insert(kind.to_string(), g);
        g
    }
    pub fn get(&self, namespace: &str, kind: &str) -> Option<u32> {
        self.map.get(namespace).and_then(|m| m.get(kind)).copied()
    }
    pub fn name(&self, gid: u32) -> (&str, &str) {
        let (n, k) = &self.names[gid as usize];
        (n, k)
    }
    pub fn all(&self) -> &[(String, String)] {
        &self.names
    }
    /// rank[gid] = position of the group in (namespace, kind) order.
    fn ranks(&self) -> Vec<u32> {
        let mut order: Vec<u32> = (0..self.names.len() as u32).collect();
        order.sort_by(|a, b| self.names[*a as usize].cmp(&self.names[*b as usize]));
        let mut rank = vec![0; order.len()];
        for (r, g) in order.into_iter().enumerate() {
            rank[g as usize] = r as u32;
        }
        rank
    }
}

struct Meta {
    gid: u32,
    origin: u64,
    hash: EntityHash,
    start: usize,
    key_len: u32,
    size: u32,
}

pub struct Sorter {
    pub groups: Groups,
    arena: Vec<u8>,
    metas: Vec<Meta>,
    budget: usize,
    runs: Vec<PathBuf>,
    tmp_dir: PathBuf,
}

impl Sorter {
    pub fn new(tmp_dir: &Path, budget: usize) -> Sorter {
        Sorter {
            groups: Groups::default(),
            arena: Vec::new(),
            metas: Vec::new(),
            budget,
            runs: Vec::new(),
            tmp_dir: tmp_dir.to_path_buf(),
        }
    }

    pub fn push(
        &mut self,
        gid: u32,
        origin: u64,
        hash: EntityHash,
        key: &[u8],
        size: u32,
    ) -> Result<()> {
        if self.metas.capacity() == 0 {
            // Fixed buffers, reserved once: memory stays at the budget
            // instead of doubling past it.
            self.metas
                .reserve_exact((self.budget * 3 / 5 / std::mem::size_of::<Meta>()).max(16));
            self.arena.reserve_exact((self.budget * 2 / 5).max(4096));
        }
        if self.metas.len() == self.metas.capacity()
            || self.arena.len() + key.len() > self.arena.capacity()
        {
            self.spill()?;
        }
        let start = self.arena.len();
        self.arena.extend_from_slice(key);
        self.metas.push(Meta {
            gid,
            origin,
            hash,
            start,
            key_len: key.len() as u32,
            size,
        });
        Ok(())
    }

    fn sort_in_memory(&mut self) {
        let rank = self.groups.ranks();
        let arena = &self.arena;
        self.metas.sort_unstable_by(|a, b| {
            rank[a.gid as usize]
                .cmp(&rank[b.gid as usize])
                .then_with(|| {
                    arena[a.start..a.start + a.key_len as usize]
                        .cmp(&arena[b.start..b.start + b.key_len as usize])
                })
        });
    }

    fn spill(&mut self) -> Result<()> {
        if self.metas.is_empty() {
            return Ok(());
        }
        self.sort_in_memory();
        let path = fsutil::temp_path(&self.tmp_dir, "sortrun");
        // Registered before writing so Drop removes a half-written run.
        self.runs.push(path.clone());
        // Private: a run holds keys, and may live in the system temp dir.
        let file = fsutil::private_file(&path, true).map_err(Error::io("creating", &path))?;
        let mut out = BufWriter::with_capacity(1 << 20, file);
        let write = |out: &mut BufWriter<File>| -> std::io::Result<()> {
            for m in &self.metas {
                out.write_all(&m.gid.to_le_bytes())?;
                out.write_all(&m.origin.to_le_bytes())?;
                out.write_all(m.hash.as_bytes())?;
                out.write_all(&m.key_len.to_le_bytes())?;
                out.write_all(&m.size.to_le_bytes())?;
                out.write_all(&self.arena[m.start..m.start + m.key_len as usize])?;
            }
            out.flush()
        };
        write(&mut out).map_err(Error::io("writing", &path))?;
        self.metas.clear();
        self.arena.clear();
        Ok(())
    }

    /// Finish input; returns the records in order.
    pub fn finish(mut self) -> Result<Sorted> {
        if self.runs.is_empty() {
            self.sort_in_memory();
            let metas = std::mem::take(&mut self.metas);
            let arena = std::mem::take(&mut self.arena);
            return Ok(Sorted {
                groups: self.groups.clone(),
                inner: Inner::Memory {
                    metas: metas.into_iter(),
                    arena,
                },
                peeked: None,
                spare: Vec::new(),
                _sorter: Some(self),
            });
        }
        self.spill()?;
        // The runs hold everything now; the buffers are not needed.
        self.metas = Vec::new();
        self.arena = Vec::new();
        let rank = self.groups.ranks();
        let mut readers = Vec::new();
        for p in &self.runs {
            let f = File::open(p).map_err(Error::io("opening", p))?;
            readers.push((BufReader::with_capacity(256 * 1024, f), p.clone()));
        }
        let mut heap = BinaryHeap::new();
        let mut heads = Vec::new();
        for (i, (r, p)) in readers.iter_mut().enumerate() {
            let rec = read_record(r, p)?;
            if let Some(rec) = &rec {
                heap.push(Reverse((rank[rec.gid as usize], rec.key.clone(), i)));
            }
            heads.push(rec);
        }
        Ok(Sorted {
            groups: self.groups.clone(),
            inner: Inner::Merge {
                readers,
                heap,
                heads,
                rank,
            },
            peeked: None,
            spare: Vec::new(),
            _sorter: Some(self),
        })
    }
}

impl Drop for Sorter {
    fn drop(&mut self) {
        for p in &self.runs {
            let _ = fs::remove_file(p);
        }
    }
}

fn read_record(r: &mut BufReader<File>, path: &Path) -> Result<Option<Record>> {
    let mut head = [0u8; 4 + 8 + 32 + 4 + 4];
    match r.read_exact(&mut head) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => return Ok(None),
        Err(e) => {
            return Err(Error::Io {
                op: "reading",
                path: path.to_path_buf(),
                source: e,
            })
        }
    }
    let u32at = |o: usize| u32::from_le_bytes([head[o], head[o + 1], head[o + 2], head[o + 3]]);
    let gid = u32at(0);
    let origin = u64::from_le_bytes(head[4..12].try_into().unwrap_or([0; 8]));
    let hash = EntityHash::from_slice(&head[12..44])
        .ok_or(Error::Internal("a sort run record is short"))?;
    let key_len = u32at(44) as usize;
    let size = u32at(48);
    let mut key = vec![0u8; key_len];
    r.read_exact(&mut key).map_err(Error::io("reading", path))?;
    Ok(Some(Record {
        gid,
        origin,
        hash,
        key,
        size,
    }))
}

enum Inner {
    Memory {
        metas: std::vec::IntoIter<Meta>,
        arena: Vec<u8>,
    },
    Merge {
        readers: Vec<(BufReader<File>, PathBuf)>,
        heap: BinaryHeap<Reverse<(u32, Vec<u8>, usize)>>,
        heads: Vec<Option<Record>>,
        rank: Vec<u32>,
    },
}

/// Records in (namespace, kind, key) order.
pub struct Sorted {
    pub groups: Groups,
    inner: Inner,
    peeked: Option<Record>,
    // Keeps the run files alive (and removes them when done).
    _sorter: Option<Sorter>,
    spare: Vec<Vec<u8>>,
}

impl Sorted {
    fn pull(&mut self) -> Result<Option<Record>> {
        let spare = self.spare.pop();
        match &mut self.inner {
            Inner::Memory { metas, arena } => Ok(metas.next().map(|m| {
                let mut key = spare.unwrap_or_default();
                key.clear();
                key.extend_from_slice(&arena[m.start..m.start + m.key_len as usize]);
                Record {
                    gid: m.gid,
                    origin: m.origin,
                    hash: m.hash,
                    key,
                    size: m.size,
                }
            })),
            Inner::Merge {
                readers,
                heap,
                heads,
                rank,
            } => {
                let Some(Reverse((_, _, i))) = heap.pop() else {
                    return Ok(None);
                };
                let rec = heads[i].take();
                let (r, p) = &mut readers[i];
                let next = read_record(r, p)?;
                if let Some(n) = &next {
                    heap.push(Reverse((rank[n.gid as usize], n.key.clone(), i)));
                }
                heads[i] = next;
                Ok(rec)
            }
        }
    }

    pub fn peek(&mut self) -> Result<Option<&Record>> {
        if self.peeked.is_none() {
            self.peeked = self.pull()?;
        }
        Ok(self.peeked.as_ref())
    }

    /// Hand a record back so its key buffer is reused (fewer allocations
    /// in the merge, which sees every record of the snapshot).
    pub fn recycle(&mut self, r: Record) {
        if self.spare.len() < 4 {
            self.spare.push(r.key);
        }
    }

    pub fn next_record(&mut self) -> Result<Option<Record>> {
        if let Some(r) = self.peeked.take() {
            return Ok(Some(r));
        }
        self.pull()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(32))]
        #[test]
        fn sorts_like_a_plain_sort(recs in prop::collection::vec((0u8..3, prop::collection::vec(any::<u8>(), 0..6), prop::collection::vec(any::<u8>(), 0..40)), 0..200),
                                   budget in 64usize..4096) {
            let dir = tempfile::tempdir().unwrap();
            let mut s = Sorter::new(dir.path(), budget);
            let mut expected = Vec::new();
            for (i, (g, key, body)) in recs.iter().enumerate() {
                let gid = s.groups.intern("", &format!("K{g}"));
                s.push(gid, i as u64, EntityHash::of(body), key, body.len() as u32).unwrap();
                expected.push((format!("K{g}"), key.clone(), body.clone()));
            }
            expected.sort_by(|a, b| (&a.0, &a.1).cmp(&(&b.0, &b.1)));
            let mut sorted = s.finish().unwrap();
            let mut got = Vec::new();
            while let Some(r) = sorted.next_record().unwrap() {
                got.push((sorted.groups.name(r.gid).1.to_string(), r.key, vec![0u8; r.size as usize]));
            }
            let strip = |v: &Vec<(String, Vec<u8>, Vec<u8>)>| v.iter().map(|(a, b, c)| (a.clone(), b.clone(), c.len())).collect::<Vec<_>>();
            let (mut a, mut b) = (strip(&got), strip(&expected));
            prop_assert!(a.windows(2).all(|w| (&w[0].0, &w[0].1) <= (&w[1].0, &w[1].1)), "output is sorted");
            a.sort();
            b.sort();
            prop_assert_eq!(a, b);
            prop_assert_eq!(got.len(), recs.len());
            drop(sorted);
            prop_assert_eq!(fs::read_dir(dir.path()).unwrap().count(), 0);
        }
    }
}
