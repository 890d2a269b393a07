//! Pack files: write-once, content-addressed containers of entity bodies of
//! one kind, in zstd-compressed blocks, with a table of contents at the end
//! so the index can be rebuilt from the packs alone.
//!
//! Layout (all integers little-endian):
//! ```text
//! "KSPACK01"                      8-byte magic with format version
//! block*                          zstd frames; each decompresses to the
//!                                 concatenated bodies of some entities
//! toc                             zstd frame of CBOR `Toc`
//! u32 toc length, "KSTOC001"      12-byte trailer
//! ```
//! The pack id is blake3 of the whole file.

use std::fs::{self, File};
use std::io::{BufWriter, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::crypto::Keys;
use super::fsutil;
use super::index::{Index, Location, NewPack};
use super::storage::StorageFile;
use super::Repository;
use crate::error::{Error, Result};
use crate::ids::{EntityHash, PackId};

pub const MAGIC: &[u8; 8] = b"KSPACK01";
pub const TRAILER_MAGIC: &[u8; 8] = b"KSTOC001";
/// The magic of a pack of an encrypted repository: each block and the
/// table of contents is `nonce ‖ sealed zstd frame ‖ tag` (docs/format.md).
pub const SEALED_MAGIC: &[u8; 8] = b"KSPACKE1";
/// Associated data of a sealed table of contents (blocks use the magic).
const TOC_AAD: &[u8; 11] = b"KSPACKE1toc";

/// A block or table of contents as stored: the zstd frame itself, or
/// sealed with the repository's keys.
fn seal_frame(keys: Option<&Keys>, aad: &[u8], frame: Vec<u8>) -> Vec<u8> {
    match keys {
        Some(k) => k.seal(aad, &frame),
        None => frame,
    }
}

/// The zstd frame of a stored block or table of contents; `Err` names
/// where authentication failed.
fn open_frame<'b>(
    keys: Option<&Keys>,
    aad: &[u8],
    stored: &'b [u8],
) -> std::result::Result<std::borrow::Cow<'b, [u8]>, crate::repo::crypto::Unauthentic> {
    match keys {
        Some(k) => k.open(aad, stored).map(std::borrow::Cow::Owned),
        None => Ok(std::borrow::Cow::Borrowed(stored)),
    }
}

/// Table of contents stored at the end of each pack. It holds no hashes
/// (the index and the manifests do): rebuilding the index re-hashes the
/// bodies, which the block boundaries and body lengths here delimit.
#[derive(Debug, Serialize, Deserialize)]
pub struct Toc {
    pub namespace: String,
    pub kind: String,
    /// (offset in file, compressed length, uncompressed length, the length
    /// of each body in the block, in order)
    pub blocks: Vec<(u64, u32, u32, Vec<u32>)>,
}

impl Toc {
    /// Split a decompressed block into its bodies.
    pub fn bodies<'b>(lens: &[u32], block: &'b [u8]) -> Option<Vec<&'b [u8]>> {
        let mut out = Vec::with_capacity(lens.len());
        let mut at = 0usize;
        for l in lens {
            let end = at.checked_add(*l as usize)?;
            out.push(block.get(at..end)?);
            at = end;
        }
        (at == block.len()).then_some(out)
    }
}

/// Accumulates entity bodies of one kind and writes packs of about
/// `pack_size` compressed bytes (or [`MAX_PACK_ENTITIES`] entities). Each finished pack is made durable, then
/// recorded in the index, before the writer moves on.
/// At most this many entities per pack (see `flush_block`).
pub const MAX_PACK_ENTITIES: usize = 100_000;

pub struct PackWriter<'a> {
    repo: &'a Repository,
    index: &'a Index,
    namespace: String,
    kind: String,
    block: Vec<u8>,
    block_entries: Vec<(EntityHash, u32, u32)>,
    pending: crate::ids::EntityHashSet,
    open: Option<OpenPack>,
    compressor: zstd::bulk::Compressor<'static>,
    /// Compressed bytes of the packs finished so far.
    pub bytes_written: u64,
    pub packs_written: u64,
    /// Hashes whose pack was committed to the index (for `write_block`).
    committed: Vec<EntityHash>,
    /// When set, finished packs wait here for the caller to index them.
    deferred: Option<Vec<NewPack>>,
}

struct OpenPack {
    tmp: PathBuf,
    out: BufWriter<StorageFile>,
    hasher: blake3::Hasher,
    len: u64,
    toc: Toc,
    locations: Vec<(EntityHash, u64, u32, u32, u32, u32)>,
}

impl<'a> PackWriter<'a> {
    pub fn new(
        repo: &'a Repository,
        index: &'a Index,
        namespace: &str,
        kind: &str,
    ) -> Result<Self> {
        let compressor = zstd::bulk::Compressor::new(repo.config.zstd_level)
            .map_err(Error::io("starting zstd", repo.root()))?;
        Ok(PackWriter {
            repo,
            index,
            namespace: namespace.to_string(),
            kind: kind.to_string(),
            block: Vec::with_capacity(repo.config.block_size + 64 * 1024),
            block_entries: Vec::new(),
            pending: crate::ids::EntityHashSet::default(),
            open: None,
            compressor,
            bytes_written: 0,
            packs_written: 0,
            committed: Vec::new(),
            deferred: None,
        })
    }

    fn keys(&self) -> Option<&Keys> {
        self.repo.keys().map(|k| &**k)
    }

    fn magic(&self) -> &'static [u8; 8] {
        if self.repo.keys().is_some() {
            SEALED_MAGIC
        } else {
            MAGIC
        }
    }

    /// Store `body` unless an entity with this hash is stored already.
    /// Returns true when the body was new.
    pub fn add(&mut self, hash: EntityHash, body: &[u8]) -> Result<bool> {
        if self.pending.contains(&hash) || self.index.contains(&hash)? {
            return Ok(false);
        }
        self.pending.insert(hash);
        let off = self.block.len() as u32;
        self.block.extend_from_slice(body);
        self.block_entries.push((hash, off, body.len() as u32));
        if self.block.len() >= self.repo.config.block_size {
            self.flush_block()?;
        }
        Ok(true)
    }

    /// Store `body` without asking whether it is stored already: for
    /// prune, which copies live bodies out of packs it will delete (the
    /// index still points at the old copy until the new pack replaces it).
    pub fn add_copy(&mut self, hash: EntityHash, body: &[u8]) -> Result<()> {
        let off = self.block.len() as u32;
        self.block.extend_from_slice(body);
        self.block_entries.push((hash, off, body.len() as u32));
        if self.block.len() >= self.repo.config.block_size {
            self.flush_block()?;
        }
        Ok(())
    }

    /// Leave finished packs for the caller to index ([`Self::take_deferred`]).
    pub fn defer_indexing(mut self) -> Self {
        self.deferred = Some(Vec::new());
        self
    }

    /// Finished packs not yet in the index.
    pub fn take_deferred(&mut self) -> Vec<NewPack> {
        self.deferred
            .as_mut()
            .map(std::mem::take)
            .unwrap_or_default()
    }

    /// Compress and write one block assembled elsewhere (the background
    /// packer's entry point). `entries` are (hash, offset, length) in `raw`.
    pub fn write_block(
        &mut self,
        raw: Vec<u8>,
        entries: Vec<(EntityHash, u32, u32)>,
    ) -> Result<Vec<EntityHash>> {
        self.block = raw;
        self.block_entries = entries;
        let before = self.packs_written;
        self.flush_block()?;
        Ok(if self.packs_written > before {
            std::mem::take(&mut self.committed)
        } else {
            Vec::new()
        })
    }

    fn flush_block(&mut self) -> Result<()> {
        if self.block.is_empty() {
            return Ok(());
        }
        if self.open.is_none() {
            let tmp = fsutil::temp_path(&self.repo.tmp_dir(), "pack");
            let file = self.repo.create_file(&tmp)?;
            let mut open = OpenPack {
                tmp,
                out: BufWriter::with_capacity(256 * 1024, file),
                hasher: self.repo.object_hasher(),
                len: 0,
                toc: Toc {
                    namespace: self.namespace.clone(),
                    kind: self.kind.clone(),
                    blocks: vec![],
                },
                locations: vec![],
            };
            open.write(self.magic())?;
            self.open = Some(open);
        }
        let compressed = self
            .compressor
            .compress(&self.block)
            .map_err(Error::io("compressing a block for", self.repo.root()))?;
        let compressed = seal_frame(self.keys(), SEALED_MAGIC, compressed);
        let open = self.open.as_mut().ok_or(Error::Internal("pack not open"))?;
        let off = open.len;
        open.write(&compressed)?;
        let raw = self.block.len() as u32;
        let lens = self.block_entries.iter().map(|e| e.2).collect();
        open.toc
            .blocks
            .push((off, compressed.len() as u32, raw, lens));
        for (hash, o, l) in self.block_entries.drain(..) {
            open.locations
                .push((hash, off, compressed.len() as u32, raw, o, l));
        }
        self.block.clear();
        // Small, similar entities compress so well that a pack of
        // `pack_size` bytes can hold a million of them; its location list
        // and the snapshot's set of not-yet-committed hashes would then grow
        // with the table. A cap on entities per pack keeps both bounded.
        if open.len >= self.repo.config.pack_size as u64
            || open.locations.len() >= MAX_PACK_ENTITIES
        {
            self.finish_pack()?;
        }
        Ok(())
    }

    fn finish_pack(&mut self) -> Result<()> {
        let Some(mut open) = self.open.take() else {
            return Ok(());
        };
        let mut toc_cbor = Vec::new();
        ciborium::ser::into_writer(&open.toc, &mut toc_cbor).map_err(|e| Error::DamagedPack {
            pack: "(new)".into(),
            why: e.to_string(),
        })?;
        let toc =
            zstd::bulk::compress(&toc_cbor, 3).map_err(Error::io("compressing", &open.tmp))?;
        let toc = seal_frame(self.repo.keys().map(|k| &**k), TOC_AAD, toc);
        open.write(&toc)?;
        let mut trailer = Vec::with_capacity(12);
        trailer.extend_from_slice(&(toc.len() as u32).to_le_bytes());
        trailer.extend_from_slice(TRAILER_MAGIC);
        open.write(&trailer)?;
        open.out.flush().map_err(Error::io("writing", &open.tmp))?;
        let id = PackId::from(*open.hasher.finalize().as_bytes());
        let dest = self.repo.pack_path(&id);
        drop(open.out);
        self.repo.commit_file(&open.tmp, &dest)?;
        self.repo.pack_written(&id, &dest)?;
        let raw: u64 = open.toc.blocks.iter().map(|b| b.2 as u64).sum();
        let locations: Vec<(EntityHash, Location)> = open
            .locations
            .into_iter()
            .map(|(h, block_off, block_len, block_raw, off, len)| {
                (
                    h,
                    Location::new(id, (block_off, block_len, block_raw), (off, len)),
                )
            })
            .collect();
        // Not sorted by hash on purpose: random inserts leave the index's
        // pages with slack that later snapshots fill without growing the
        // file (sorted inserts pack pages full, and every later insert then
        // splits one: +25% on the day-2 benchmark's growth).
        let pack = NewPack {
            id,
            namespace: self.namespace.clone(),
            kind: self.kind.clone(),
            size: open.len,
            raw_bytes: raw,
            entries: locations,
        };
        match self.deferred.as_mut() {
            // The caller records it, batched with others.
            Some(d) => d.push(pack),
            None => {
                self.index.add_packs(std::slice::from_ref(&pack))?;
                self.committed.extend(pack.entries.iter().map(|(h, _)| *h));
            }
        }
        self.pending.clear();
        self.bytes_written += open.len;
        self.packs_written += 1;
        Ok(())
    }

    /// Write out everything still buffered, keeping the writer (and its
    /// deferred packs) for the caller.
    pub fn close(&mut self) -> Result<()> {
        self.flush_block()?;
        self.finish_pack()
    }

    /// Write out everything still buffered. Call once, at the end.
    pub fn finish(mut self) -> Result<(u64, u64)> {
        self.flush_block()?;
        self.finish_pack()?;
        Ok((self.bytes_written, self.packs_written))
    }

    /// Compressed bytes written so far, including the open pack.
    pub fn bytes_so_far(&self) -> u64 {
        self.bytes_written + self.open.as_ref().map(|o| o.len).unwrap_or(0)
    }
}

impl Drop for PackWriter<'_> {
    fn drop(&mut self) {
        // A writer dropped without `finish` (an error elsewhere) leaves no
        // temp file behind.
        if let Some(open) = self.open.take() {
            let _ = fs::remove_file(&open.tmp);
        }
    }
}

impl OpenPack {
    fn write(&mut self, bytes: &[u8]) -> Result<()> {
        self.out
            .write_all(bytes)
            .map_err(Error::io("writing", &self.tmp))?;
        self.hasher.update(bytes);
        self.len += bytes.len() as u64;
        Ok(())
    }
}

/// Read one block of a pack (authenticated first in an encrypted
/// repository) and decompress it.
pub fn read_block(
    keys: Option<&Keys>,
    file: &mut File,
    path: &Path,
    (off, clen, raw): (u64, u32, u32),
) -> Result<Vec<u8>> {
    let mut buf = vec![0u8; clen as usize];
    file.seek(SeekFrom::Start(off))
        .map_err(Error::io("seeking in", path))?;
    file.read_exact(&mut buf).map_err(|e| Error::DamagedPack {
        pack: path.display().to_string(),
        why: format!("cannot read block at {off}: {e}"),
    })?;
    let frame = open_frame(keys, SEALED_MAGIC, &buf).map_err(|_| Error::AuthFailed {
        file: path.display().to_string(),
        at: format!(" (block at byte {off})"),
    })?;
    zstd::bulk::decompress(&frame, raw as usize).map_err(|e| Error::DamagedPack {
        pack: path.display().to_string(),
        why: format!("block at {off} does not decompress: {e}"),
    })
}

/// A block as stored, authenticated (in an encrypted repository) and
/// decompressed; None when either fails.
pub fn decode_block(keys: Option<&Keys>, stored: &[u8], raw: u32) -> Option<Vec<u8>> {
    let frame = open_frame(keys, SEALED_MAGIC, stored).ok()?;
    zstd::bulk::decompress(&frame, raw as usize).ok()
}

/// Parse a whole pack held in memory: check the magic and trailer and
/// return its table of contents.
pub fn parse_toc(keys: Option<&Keys>, bytes: &[u8], name: &str) -> Result<Toc> {
    let damaged = |why: String| Error::DamagedPack {
        pack: name.to_string(),
        why,
    };
    let magic = if keys.is_some() { SEALED_MAGIC } else { MAGIC };
    if bytes.len() < MAGIC.len() + 12 || &bytes[..8] != magic {
        return Err(match keys {
            Some(_) => Error::AuthFailed {
                file: format!("pack {name}"),
                at: " (its magic is not an encrypted pack's)".into(),
            },
            None => damaged("bad magic".into()),
        });
    }
    let t = bytes.len() - 12;
    if &bytes[t + 4..] != TRAILER_MAGIC {
        return Err(damaged("bad trailer".into()));
    }
    let toc_len = u32::from_le_bytes([bytes[t], bytes[t + 1], bytes[t + 2], bytes[t + 3]]) as usize;
    if toc_len > t - 8 {
        return Err(damaged("table of contents length out of range".into()));
    }
    let frame =
        open_frame(keys, TOC_AAD, &bytes[t - toc_len..t]).map_err(|_| Error::AuthFailed {
            file: format!("pack {name}"),
            at: format!(" (table of contents at byte {})", t - toc_len),
        })?;
    let raw = zstd::stream::decode_all(&frame[..])
        .map_err(|e| damaged(format!("table of contents: {e}")))?;
    ciborium::de::from_reader(raw.as_slice())
        .map_err(|e| damaged(format!("table of contents: {e}")))
}

/// What could be recovered from a damaged pack: the blocks that still
/// decompress, each with the bodies in it that decode as entities, at
/// exactly the places the store reads them from.
/// A block recovered from a damaged pack: (offset in file, compressed
/// length, uncompressed length, its bodies as (offset in block, length)).
pub type SalvagedBlock = (u64, u32, u32, Vec<(u32, u32)>);

/// A decompressed block found in a damaged pack, with the body lengths
/// its table of contents lists, when it could be read.
type FoundBlock = (u64, u32, Vec<u8>, Option<Vec<u32>>);

#[derive(Debug, Default)]
pub struct Salvaged {
    /// From the table of contents, or else from the first body recovered.
    pub namespace: String,
    pub kind: String,
    /// (offset in file, compressed length, uncompressed length, the bodies
    /// as (offset in the block, length)).
    pub blocks: Vec<SalvagedBlock>,
    /// Uncompressed bytes of every block recovered.
    pub raw_bytes: u64,
    /// Whether the table of contents could be read.
    pub had_toc: bool,
}

impl Salvaged {
    pub fn bodies(&self) -> u64 {
        self.blocks.iter().map(|b| b.3.len() as u64).sum()
    }
}

/// Recover what can be recovered from a pack that failed its checks (its
/// id does not match, or its table of contents or a block is unreadable).
/// With a readable table of contents each listed block that decompresses
/// and splits is kept; without one (a truncated pack) the zstd frames are
/// walked from the magic on, and each block is cut into bodies by reading
/// one CBOR item after another. Only bodies that decode as an entity are
/// kept: the caller indexes each under the hash of its bytes, so a body
/// damaged in place simply never matches a reference.
pub fn salvage(keys: Option<&Keys>, bytes: &[u8], name: &str) -> Salvaged {
    let mut out = Salvaged::default();
    let toc = parse_toc(keys, bytes, name).ok();
    let blocks: Vec<FoundBlock> = match &toc {
        Some(toc) => {
            out.had_toc = true;
            out.namespace = toc.namespace.clone();
            out.kind = toc.kind.clone();
            toc.blocks
                .iter()
                .filter_map(|(off, clen, raw, lens)| {
                    let data =
                        bytes.get(*off as usize..(*off as usize).saturating_add(*clen as usize))?;
                    let frame = open_frame(keys, SEALED_MAGIC, data).ok()?;
                    let block = zstd::bulk::decompress(&frame, *raw as usize).ok()?;
                    Some((*off, *clen, block, Some(lens.clone())))
                })
                .collect()
        }
        // Sealed blocks carry no length of their own: without the table
        // of contents nothing can be cut out of an encrypted pack.
        None if keys.is_some() => Vec::new(),
        None => walk_frames(bytes)
            .into_iter()
            .map(|(off, clen, block)| (off, clen, block, None))
            .collect(),
    };
    for (off, clen, block, lens) in blocks {
        let cuts = match lens {
            Some(lens) => Toc::bodies(&lens, &block)
                .map(|b| b.iter().map(|x| x.len() as u32).collect::<Vec<u32>>())
                // The lengths do not add up: read the items themselves.
                .unwrap_or_else(|| cbor_items(&block)),
            None => cbor_items(&block),
        };
        let mut bodies = Vec::new();
        let mut at = 0u32;
        for len in cuts {
            let Some(body) = block.get(at as usize..(at as usize).saturating_add(len as usize))
            else {
                break;
            };
            if let Ok(entity) = crate::model::codec::decode(body) {
                if out.kind.is_empty() {
                    out.kind = entity.key.kind().to_string();
                    out.namespace = entity.key.partition.namespace.clone();
                }
                bodies.push((at, len));
            }
            at = at.saturating_add(len);
        }
        if !bodies.is_empty() {
            out.raw_bytes += block.len() as u64;
            out.blocks.push((off, clen, block.len() as u32, bodies));
        }
    }
    out
}

/// The blocks of a pack without a table of contents: one zstd frame after
/// another from the end of the magic, until one does not decode (the
/// damage, or the table of contents, which is not a block of entities and
/// is dropped by the caller).
fn walk_frames(bytes: &[u8]) -> Vec<(u64, u32, Vec<u8>)> {
    let mut out = Vec::new();
    let mut at = MAGIC.len();
    while at < bytes.len() {
        let rest = &bytes[at..];
        let Ok(clen) = zstd::zstd_safe::find_frame_compressed_size(rest) else {
            break;
        };
        let Some(frame) = rest.get(..clen) else {
            break;
        };
        let raw = match zstd::zstd_safe::get_frame_content_size(frame) {
            Ok(Some(n)) if n <= u32::MAX as u64 => zstd::bulk::decompress(frame, n as usize).ok(),
            _ => zstd::stream::decode_all(frame).ok(),
        };
        let Some(raw) = raw else { break };
        if raw.len() > u32::MAX as usize || clen > u32::MAX as usize {
            break;
        }
        out.push((at as u64, clen as u32, raw));
        at += clen;
    }
    out
}

/// The lengths of the CBOR items that follow each other in `block`, up to
/// the first that does not read as one.
fn cbor_items(block: &[u8]) -> Vec<u32> {
    let mut out = Vec::new();
    let mut rest = block;
    while !rest.is_empty() {
        let before = rest.len();
        let mut reader = rest;
        if ciborium::de::from_reader::<ciborium::Value, _>(&mut reader).is_err() {
            break;
        }
        let used = before - reader.len();
        if used == 0 {
            break;
        }
        out.push(used as u32);
        rest = reader;
    }
    out
}

/// Compression and pack writing on a background thread, so the thread that
/// reads the source only assembles blocks. Blocks travel over a bounded
/// channel; when a pack's index entries are committed, their hashes come
/// back so the sender can stop treating them as pending.
pub mod background {
    use std::collections::BTreeMap;
    use std::sync::mpsc::{channel, sync_channel, Receiver, Sender, SyncSender};
    use std::thread::JoinHandle;

    use super::PackWriter;
    use crate::error::{Error, Result};
    use crate::ids::EntityHash;
    use crate::repo::index::{Index, NewPack};
    use crate::repo::Repository;

    struct Block {
        gid: u32,
        namespace: String,
        kind: String,
        raw: Vec<u8>,
        entries: Vec<(EntityHash, u32, u32)>,
    }

    enum Msg {
        Block(Block),
        Finish,
    }

    /// Packs open at once in the packer.
    const MAX_OPEN_PACKS: usize = 16;

    /// Bytes buffered in unfinished blocks across all kinds before the
    /// largest is sent as a short block.
    const MAX_BUFFERED: usize = 16 << 20;

    /// Entities per index transaction: one transaction per pack journals
    /// most of a large index's pages again and again.
    const INDEX_BATCH: usize = 64 * 1024;

    fn commit(
        index: &Index,
        batch: &mut Vec<NewPack>,
        acks: &Sender<Vec<EntityHash>>,
    ) -> Result<()> {
        if batch.is_empty() {
            return Ok(());
        }
        index.add_packs(batch)?;
        let done: Vec<EntityHash> = batch
            .iter()
            .flat_map(|p| p.entries.iter().map(|(h, _)| *h))
            .collect();
        batch.clear();
        let _ = acks.send(done);
        Ok(())
    }

    /// Per kind (group id): compressed bytes and packs written.
    pub type Stats = BTreeMap<u32, (u64, u64)>;

    struct Buf {
        namespace: String,
        kind: String,
        raw: Vec<u8>,
        entries: Vec<(EntityHash, u32, u32)>,
    }

    pub struct Packer {
        tx: Option<SyncSender<Msg>>,
        acks: Receiver<Vec<EntityHash>>,
        handle: Option<JoinHandle<Result<Stats>>>,
        bufs: BTreeMap<u32, Buf>,
        block_size: usize,
        buffered: usize,
        /// Bodies handed to the packer whose index entries are not yet
        /// committed: a second copy of one of them must not be stored.
        pub pending: crate::ids::EntityHashSet,
    }

    impl Packer {
        pub fn start(repo: &Repository) -> Packer {
            let (tx, rx) = sync_channel::<Msg>(4);
            let (ack_tx, acks) = channel();
            let block_size = repo.config.block_size;
            let repo = repo.clone();
            let handle = std::thread::spawn(move || -> Result<Stats> {
                let index = repo.open_index(true)?;
                // Ordered maps: packs are finished and indexed in the same order on
                // every run, so the same data gives the same repository bytes.
                let mut writers: BTreeMap<u32, PackWriter> = BTreeMap::new();
                let mut batch: Vec<NewPack> = Vec::new();
                let mut recent: Vec<u32> = Vec::new();
                for msg in rx.iter() {
                    match msg {
                        Msg::Block(b) => {
                            let w = match writers.entry(b.gid) {
                                std::collections::btree_map::Entry::Occupied(o) => o.into_mut(),
                                std::collections::btree_map::Entry::Vacant(v) => v.insert(
                                    PackWriter::new(&repo, &index, &b.namespace, &b.kind)?
                                        .defer_indexing(),
                                ),
                            };
                            w.write_block(b.raw, b.entries)?;
                            batch.extend(w.take_deferred());
                            // A bounded number of open packs (each holds a
                            // file and a write buffer): close the one written
                            // least recently. Its kind starts a new pack later.
                            recent.retain(|g| *g != b.gid);
                            recent.push(b.gid);
                            if recent.len() > MAX_OPEN_PACKS {
                                let old = recent.remove(0);
                                if let Some(w) = writers.get_mut(&old) {
                                    w.close()?;
                                    batch.extend(w.take_deferred());
                                }
                            }
                            if batch.iter().map(|p| p.entries.len()).sum::<usize>() >= INDEX_BATCH {
                                commit(&index, &mut batch, &ack_tx)?;
                            }
                        }
                        Msg::Finish => {
                            let mut stats = Stats::new();
                            for (gid, mut w) in std::mem::take(&mut writers) {
                                w.close()?;
                                batch.extend(w.take_deferred());
                                stats.insert(gid, (w.bytes_written, w.packs_written));
                            }
                            commit(&index, &mut batch, &ack_tx)?;
                            return Ok(stats);
                        }
                    }
                }
                // The sender went away without `Finish`: an error elsewhere.
                // Dropping the writers removes their temp files.
                Err(Error::Interrupted)
            });
            Packer {
                tx: Some(tx),
                acks,
                handle: Some(handle),
                bufs: BTreeMap::new(),
                block_size,
                buffered: 0,
                pending: crate::ids::EntityHashSet::default(),
            }
        }

        /// Forget pending hashes whose packs are now in the index.
        pub fn drain_acks(&mut self) {
            while let Ok(done) = self.acks.try_recv() {
                for h in done {
                    self.pending.remove(&h);
                }
            }
        }

        pub fn add(
            &mut self,
            gid: u32,
            namespace: &str,
            kind: &str,
            hash: EntityHash,
            body: &[u8],
        ) -> Result<()> {
            self.pending.insert(hash);
            let buf = self.bufs.entry(gid).or_insert_with(|| Buf {
                namespace: namespace.to_string(),
                kind: kind.to_string(),
                raw: Vec::new(),
                entries: Vec::new(),
            });
            let off = buf.raw.len() as u32;
            buf.raw.extend_from_slice(body);
            buf.entries.push((hash, off, body.len() as u32));
            self.buffered += body.len();
            if buf.raw.len() >= self.block_size {
                self.flush(gid)?;
            } else if self.buffered > MAX_BUFFERED {
                // Many kinds each with a partial block: send the largest.
                let largest = self
                    .bufs
                    .iter()
                    .max_by_key(|(_, b)| b.raw.len())
                    .map(|(g, _)| *g);
                if let Some(g) = largest {
                    self.flush(g)?;
                }
            }
            Ok(())
        }

        fn flush(&mut self, gid: u32) -> Result<()> {
            let Some(buf) = self.bufs.get_mut(&gid) else {
                return Ok(());
            };
            if buf.raw.is_empty() {
                return Ok(());
            }
            self.buffered -= buf.raw.len();
            let block = Block {
                gid,
                namespace: buf.namespace.clone(),
                kind: buf.kind.clone(),
                raw: std::mem::take(&mut buf.raw),
                entries: std::mem::take(&mut buf.entries),
            };
            self.send(Msg::Block(block))
        }

        fn send(&mut self, msg: Msg) -> Result<()> {
            let sent = self
                .tx
                .as_ref()
                .map(|tx| tx.send(msg).is_ok())
                .unwrap_or(false);
            if sent {
                Ok(())
            } else {
                // The packer stopped: its own error says why.
                self.tx = None;
                match self.handle.take().map(|h| h.join()) {
                    Some(Ok(Err(e))) => Err(e),
                    _ => Err(Error::Internal("the pack writer thread panicked")),
                }
            }
        }

        /// Write out what is buffered and tell the writer to close every
        /// pack, without waiting: the caller may do other work meanwhile.
        /// Nothing can be added afterwards.
        pub fn close(&mut self) -> Result<()> {
            if self.tx.is_none() {
                return Ok(());
            }
            let gids: Vec<u32> = self.bufs.keys().copied().collect();
            for gid in gids {
                self.flush(gid)?;
            }
            self.send(Msg::Finish)?;
            self.tx = None;
            Ok(())
        }

        /// Close (see [`Packer::close`]) and wait for every pack to be
        /// written and indexed.
        pub fn finish(mut self) -> Result<Stats> {
            self.close()?;
            match self.handle.take().map(|h| h.join()) {
                Some(Ok(r)) => r,
                _ => Err(Error::Internal("the pack writer thread panicked")),
            }
        }
    }

    impl Drop for Packer {
        fn drop(&mut self) {
            // Without `finish`: close the channel so the thread aborts and
            // removes its temp files, and wait for it.
            self.tx = None;
            if let Some(h) = self.handle.take() {
                let _ = h.join();
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::background::Packer;
    use super::*;

    #[test]
    fn cbor_items_cut_a_block_into_its_bodies() {
        let bodies: Vec<Vec<u8>> = ["a", "bb"]
            .iter()
            .map(|n| {
                let mut e = crate::model::Entity {
                    key: crate::model::key::Key::new(
                        Default::default(),
                        vec![crate::model::key::PathElement::name("K", *n)],
                    ),
                    properties: Default::default(),
                };
                let mut out = Vec::new();
                crate::model::codec::encode(&mut e, &mut out);
                out
            })
            .collect();
        let block = bodies.concat();
        let lens: Vec<u32> = bodies.iter().map(|b| b.len() as u32).collect();
        assert_eq!(cbor_items(&block), lens);
        // A cut-off last item is left out.
        assert_eq!(cbor_items(&block[..block.len() - 1]), lens[..1].to_vec());
    }

    #[test]
    fn committed_packs_leave_the_pending_set() {
        let dir = tempfile::tempdir().unwrap();
        let mut repo = Repository::init(&dir.path().join("r")).unwrap();
        repo.config.block_size = 4096;
        repo.config.pack_size = 16 * 1024;
        let mut packer = Packer::start(&repo);
        // More than one index batch, so acknowledgements must arrive.
        let n = 70_000u32;
        for i in 0..n {
            let mut body = i.to_le_bytes().to_vec();
            body.extend((0..40u32).map(|j| (i.wrapping_mul(31).wrapping_add(j * 7) % 251) as u8));
            packer
                .add(0, "", "K", EntityHash::of(&body), &body)
                .unwrap();
        }
        // Acks arrive asynchronously: wait for the packer to catch up.
        let t = std::time::Instant::now();
        while packer.pending.len() as u32 > n / 2 && t.elapsed().as_secs() < 10 {
            std::thread::sleep(std::time::Duration::from_millis(10));
            packer.drain_acks();
        }
        assert!(
            (packer.pending.len() as u32) < n / 2,
            "{} still pending",
            packer.pending.len()
        );
        let stats = packer.finish().unwrap();
        assert!(stats[&0].1 >= 2, "several packs written: {:?}", stats);
        let index = repo.open_index(false).unwrap();
        assert_eq!(index.entity_count().unwrap(), n as u64);
    }
}
