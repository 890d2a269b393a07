//! JSON Lines files: one entity per line in the Cloud Datastore v1 REST
//! JSON shape (see docs/format.md). Blank lines are skipped.

use std::fs::File;
use std::io::{BufRead, BufReader, BufWriter, Write};
use std::path::{Path, PathBuf};

use super::linecache;
use super::staging::Staging;
use super::{CacheSpec, Encoded, EncodedBatch, EntitySource};
use crate::error::{Error, Result};
use crate::model::{json, Entity};

pub struct JsonlSource {
    path: PathBuf,
    shown: String,
    cache: Option<CacheSpec>,
    /// The cache written by the last read, until its snapshot is published.
    written: Option<linecache::Writer>,
}

impl JsonlSource {
    pub fn open(path: &Path) -> Result<JsonlSource> {
        let meta = std::fs::metadata(path).map_err(|e| match e.kind() {
            std::io::ErrorKind::NotFound => Error::BadLocation {
                spec: format!("jsonl:{}", path.display()),
                why: "no such file".into(),
            },
            _ => Error::Io {
                op: "opening",
                path: path.to_path_buf(),
                source: e,
            },
        })?;
        if meta.is_dir() {
            return Err(Error::BadLocation {
                spec: format!("jsonl:{}", path.display()),
                why: "is a directory".into(),
            });
        }
        Ok(JsonlSource {
            path: path.to_path_buf(),
            shown: path.display().to_string(),
            cache: None,
            written: None,
        })
    }
}

impl EntitySource for JsonlSource {
    /// Its non-blank lines: one pass over the bytes, a small fraction of
    /// parsing them.
    fn expected_entities(&self) -> Option<u64> {
        use std::io::Read;
        let mut f = File::open(&self.path).ok()?;
        let mut buf = vec![0u8; 1 << 20];
        let (mut lines, mut previous) = (0u64, b'\n');
        loop {
            let n = match f.read(&mut buf) {
                Ok(0) => break,
                Ok(n) => n,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                Err(_) => return None,
            };
            for &b in &buf[..n] {
                // A line starts where a byte other than a newline follows one.
                lines += u64::from(previous == b'\n' && b != b'\n' && b != b'\r');
                previous = b;
            }
        }
        Some(lines)
    }

    fn source_id(&self) -> String {
        // Absolute, but symlinks kept: `latest.jsonl -> 2026-11-22.jsonl`
        // rotated daily is one source.
        let abs = std::path::absolute(&self.path).unwrap_or_else(|_| self.path.clone());
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
            let entity = json::entity_from_json(text)
                .map_err(|e| not_an_entity(&self.shown, n, &e.to_string()))?;
            if !entity.key.is_complete() {
                return Err(incomplete(&self.shown, n));
            }
            f(entity, n)?;
        }
    }

    fn describe(&self, origin: u64) -> String {
        format!("{}:{origin}", self.shown)
    }

    fn use_cache(&mut self, spec: CacheSpec) {
        self.cache = Some(spec);
    }

    fn commit_cache(&mut self, id: &crate::ids::SnapshotId) -> Result<()> {
        match self.written.take() {
            Some(w) => w.commit(id),
            None => Ok(()),
        }
    }

    fn for_each_encoded(&mut self, f: &mut dyn FnMut(Encoded<'_>) -> Result<()>) -> Result<()> {
        self.written = None;
        let mut cache = parallel::Cache::default();
        if let Some(spec) = &self.cache {
            cache.reader = spec
                .parent
                .as_ref()
                .and_then(|p| linecache::Reader::open(&spec.path, p, spec.keys.clone()));
            let seed = cache
                .reader
                .as_ref()
                .map(|r| r.seed())
                .unwrap_or_else(rand::random);
            cache.writer = match linecache::Writer::create(&spec.path, seed, spec.keys.clone()) {
                Ok(w) => Some(w),
                Err(e) => {
                    tracing::warn!("the line cache is not kept: {e}");
                    None
                }
            };
            cache.seed = Some(seed);
        }
        let hits = parallel::run(&self.path, &self.shown, &mut cache, f)?;
        if cache.reader.is_some() {
            tracing::debug!("line cache: {hits} lines unchanged since the parent");
        }
        self.written = cache.writer;
        Ok(())
    }
}

/// A line that does not parse as an entity: serde's words, and the shape
/// that was expected, so that `{"id": 1}` leads to the format.
fn not_an_entity(shown: &str, line: u64, why: &str) -> Error {
    Error::Source {
        file: shown.to_string(),
        line,
        message: format!(
            "{why}; each line must be a Datastore v1 entity, such as \
             {{\"key\":{{\"path\":[{{\"kind\":\"User\",\"name\":\"alice\"}}]}},\"properties\":{{\"age\":{{\"integerValue\":\"42\"}}}}}} \
             (docs/format.md, \"Entity JSON\")"
        ),
    }
}

fn incomplete(shown: &str, line: u64) -> Error {
    Error::Source {
        file: shown.to_string(),
        line,
        message: "the entity's key is incomplete; every path element needs an `id` or a `name`"
            .into(),
    }
}

/// Transcode one line into `out`, with the error a user can act on.
fn parse_line(shown: &str, out: &mut EncodedBatch, text: &[u8], line: u64) -> Result<()> {
    let complete = out
        .push_json(text, line)
        .map_err(|e| not_an_entity(shown, line, &e.to_string()))?;
    if complete {
        Ok(())
    } else {
        Err(incomplete(shown, line))
    }
}

/// Parsing, encoding and hashing on every core: one thread reads the file
/// in newline-aligned chunks, workers turn chunks into encoded entities,
/// and the caller's thread receives them in file order. Channels are
/// bounded, so memory stays at a few chunks whatever the file size.
///
/// With a line cache from the parent snapshot, workers only fingerprint
/// the lines of a chunk, and the caller's thread looks each line up in the
/// cache: a line seen before is delivered from its record, without a body,
/// and only new lines are parsed (there, few as they are). While most
/// lines miss (a block of new entities, a file rewritten), workers parse
/// whole chunks again.
mod parallel {
    use std::collections::BTreeMap;
    use std::io::Read;
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::sync::mpsc::{sync_channel, Receiver};
    use std::sync::{Arc, Mutex};

    use super::*;

    const CHUNK: usize = 1 << 20;

    /// Lines over which the hit rate decides who parses.
    const SPAN: u64 = 1024;

    type Chunk = (u64, u64, Vec<u8>);

    /// A non-empty line of a chunk.
    #[derive(Debug, Clone, Copy)]
    struct Line {
        fp: u128,
        origin: u64,
        start: u32,
        end: u32,
    }

    /// A worker's chunk: its bytes, its lines (fingerprinted when there is
    /// a cache) and, unless the cache is expected to answer, the parse.
    struct Done {
        seq: u64,
        bytes: Vec<u8>,
        lines: Vec<Line>,
        batch: Option<Result<EncodedBatch>>,
    }

    #[derive(Default)]
    pub struct Cache {
        pub reader: Option<linecache::Reader>,
        pub writer: Option<linecache::Writer>,
        pub seed: Option<u64>,
    }

    /// Buffers handed back for reuse: allocating a fresh megabyte per chunk
    /// on one thread and freeing it on another fragments the heap until
    /// memory grows with the file.
    type Pool<T> = Arc<Mutex<Vec<T>>>;

    fn take<T>(pool: &Pool<T>) -> Option<T> {
        pool.lock().ok().and_then(|mut p| p.pop())
    }

    fn give<T>(pool: &Pool<T>, item: T) {
        if let Ok(mut p) = pool.lock() {
            if p.len() < 16 {
                p.push(item);
            }
        }
    }

    /// Split a chunk into lines; fingerprint them if `seed`, parse them
    /// into `out` if `parse`.
    fn work(
        shown: &str,
        first_line: u64,
        bytes: &[u8],
        seed: Option<u64>,
        lines: &mut Vec<Line>,
        out: Option<&mut EncodedBatch>,
    ) -> Result<()> {
        lines.clear();
        let mut out = out;
        if let Some(o) = out.as_deref_mut() {
            o.clear();
        }
        let mut start = 0;
        let ends = memchr::memchr_iter(b'\n', bytes).chain(std::iter::once(bytes.len()));
        for (i, end) in ends.enumerate() {
            let raw = &bytes[start..end];
            let offset = start;
            start = end + 1;
            let line = first_line + i as u64;
            let text = raw.trim_ascii();
            if text.is_empty() {
                continue;
            }
            if let Some(seed) = seed {
                let lead = text.as_ptr() as usize - raw.as_ptr() as usize;
                let s = offset + lead;
                lines.push(Line {
                    fp: linecache::fingerprint(seed, text),
                    origin: line,
                    start: s as u32,
                    end: (s + text.len()) as u32,
                });
            }
            if let Some(o) = out.as_deref_mut() {
                parse_line(shown, o, text, line)?;
            }
        }
        Ok(())
    }

    /// Returns how many lines the cache answered.
    pub fn run(
        path: &Path,
        shown: &str,
        cache: &mut Cache,
        f: &mut dyn FnMut(Encoded<'_>) -> Result<()>,
    ) -> Result<u64> {
        let workers = std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(2)
            .clamp(1, 8);
        let file = File::open(path).map_err(Error::io("opening", path))?;
        let (chunk_tx, chunk_rx) = sync_channel::<Chunk>(workers);
        let (done_tx, done_rx) = sync_channel::<Done>(workers);
        let chunk_rx = Arc::new(Mutex::new(chunk_rx));
        let chunk_pool: Pool<Vec<u8>> = Arc::new(Mutex::new(Vec::new()));
        let batch_pool: Pool<EncodedBatch> = Arc::new(Mutex::new(Vec::new()));
        let line_pool: Pool<Vec<Line>> = Arc::new(Mutex::new(Vec::new()));
        // Whether workers parse: always without a cache to read.
        let parse = Arc::new(AtomicBool::new(cache.reader.is_none()));
        let seed = cache.seed;
        std::thread::scope(|s| -> Result<u64> {
            let reader_pool = Arc::clone(&chunk_pool);
            let reader = s.spawn(move || -> Result<()> {
                let mut file = file;
                let (mut seq, mut line) = (0u64, 1u64);
                let mut carry: Vec<u8> = Vec::new();
                loop {
                    let mut buf = take(&reader_pool)
                        .unwrap_or_else(|| Vec::with_capacity(CHUNK + (64 << 10)));
                    buf.clear();
                    buf.extend_from_slice(&carry);
                    carry.clear();
                    let start = buf.len();
                    buf.resize(start + CHUNK, 0);
                    let n = read_full(&mut file, &mut buf[start..])
                        .map_err(Error::io("reading", path))?;
                    buf.truncate(start + n);
                    let eof = n == 0;
                    if !eof {
                        // Cut at the last newline; the rest waits for more.
                        match memchr::memrchr(b'\n', &buf) {
                            Some(p) => {
                                carry.extend_from_slice(&buf[p + 1..]);
                                buf.truncate(p + 1);
                            }
                            None => {
                                carry.extend_from_slice(&buf);
                                give(&reader_pool, buf);
                                continue;
                            }
                        }
                    }
                    if buf.is_empty() {
                        return Ok(());
                    }
                    let lines = memchr::memchr_iter(b'\n', &buf).count() as u64;
                    let chunk_line = line;
                    line += lines;
                    if chunk_tx.send((seq, chunk_line, buf)).is_err() {
                        return Ok(());
                    }
                    seq += 1;
                    if eof {
                        return Ok(());
                    }
                }
            });
            for _ in 0..workers {
                let rx = Arc::clone(&chunk_rx);
                let tx = done_tx.clone();
                let chunk_pool = Arc::clone(&chunk_pool);
                let batch_pool = Arc::clone(&batch_pool);
                let line_pool = Arc::clone(&line_pool);
                let parse = Arc::clone(&parse);
                s.spawn(move || loop {
                    let next = rx.lock().map(|r| r.recv());
                    let Ok(Ok((seq, first, mut bytes))) = next else {
                        return;
                    };
                    let mut lines = take(&line_pool).unwrap_or_default();
                    let batch = if parse.load(Ordering::Relaxed) {
                        let mut batch = take(&batch_pool).unwrap_or_default();
                        let text = bytes.strip_suffix(b"\n").unwrap_or(&bytes);
                        let r = work(shown, first, text, seed, &mut lines, Some(&mut batch));
                        // Parsed, the text is not needed any more.
                        give(&chunk_pool, std::mem::take(&mut bytes));
                        Some(r.map(|()| batch))
                    } else {
                        let text = bytes.strip_suffix(b"\n").unwrap_or(&bytes);
                        // Without a batch to parse into, splitting cannot fail.
                        work(shown, first, text, seed, &mut lines, None)
                            .err()
                            .map(Err)
                    };
                    let done = Done {
                        seq,
                        bytes,
                        lines,
                        batch,
                    };
                    if tx.send(done).is_err() {
                        return;
                    }
                });
            }
            drop(done_tx);
            drop(chunk_rx);
            let pools = (&chunk_pool, &batch_pool, &line_pool);
            let result = deliver(shown, &done_rx, f, cache, &parse, pools);
            // Stop the workers and the reader early on an error.
            drop(done_rx);
            let read = reader
                .join()
                .unwrap_or(Err(Error::Internal("the file reader thread panicked")));
            result.and_then(|hits| read.map(|()| hits))
        })
    }

    fn deliver(
        shown: &str,
        rx: &Receiver<Done>,
        f: &mut dyn FnMut(Encoded<'_>) -> Result<()>,
        cache: &mut Cache,
        parse: &AtomicBool,
        (chunks, batches, line_vecs): (&Pool<Vec<u8>>, &Pool<EncodedBatch>, &Pool<Vec<Line>>),
    ) -> Result<u64> {
        let mut pending: BTreeMap<u64, Done> = BTreeMap::new();
        let mut next = 0u64;
        let mut scratch = EncodedBatch::default();
        let (mut seen, mut missed, mut hits) = (0u64, 0u64, 0u64);
        for done in rx.iter() {
            pending.insert(done.seq, done);
            while let Some(done) = pending.remove(&next) {
                next += 1;
                match done.batch {
                    Some(batch) => {
                        let batch = batch?;
                        if cache.seed.is_some() {
                            for (e, l) in batch.iter().zip(&done.lines) {
                                if let Some(r) = &mut cache.reader {
                                    seen += 1;
                                    match r.take(l.fp) {
                                        Some(_) => hits += 1,
                                        None => missed += 1,
                                    }
                                }
                                if let Some(w) = &mut cache.writer {
                                    w.record(l.fp, &e);
                                }
                                f(e)?;
                            }
                        } else {
                            for e in batch.iter() {
                                f(e)?;
                            }
                        }
                        give(batches, batch);
                    }
                    None => {
                        let reader = cache
                            .reader
                            .as_mut()
                            .ok_or(Error::Internal("a chunk was left unparsed without a cache"))?;
                        for l in &done.lines {
                            let json = &done.bytes[l.start as usize..l.end as usize];
                            seen += 1;
                            match reader.take(l.fp) {
                                Some(hit) => {
                                    hits += 1;
                                    if let Some(w) = &mut cache.writer {
                                        w.copy(&hit);
                                    }
                                    f(Encoded {
                                        namespace: hit.namespace,
                                        kind: hit.kind,
                                        key: hit.key,
                                        hash: hit.hash,
                                        body: None,
                                        size: hit.size,
                                        json,
                                        origin: l.origin,
                                    })?;
                                }
                                None => {
                                    missed += 1;
                                    scratch.clear();
                                    parse_line(shown, &mut scratch, json, l.origin)?;
                                    for e in scratch.iter() {
                                        if let Some(w) = &mut cache.writer {
                                            w.record(l.fp, &e);
                                        }
                                        f(e)?;
                                    }
                                }
                            }
                        }
                    }
                }
                if done.bytes.capacity() > 0 {
                    give(chunks, done.bytes);
                }
                give(line_vecs, done.lines);
                if seen >= SPAN {
                    // Mostly new lines: parsing them here, on one thread,
                    // would be slower than the workers parsing everything.
                    if missed * 4 > seen {
                        parse.store(true, Ordering::Relaxed);
                    } else if missed * 16 < seen {
                        parse.store(false, Ordering::Relaxed);
                    }
                    (seen, missed) = (0, 0);
                }
            }
        }
        Ok(hits)
    }

    fn read_full(file: &mut File, buf: &mut [u8]) -> std::io::Result<usize> {
        let mut n = 0;
        while n < buf.len() {
            match file.read(&mut buf[n..])? {
                0 => break,
                k => n += k,
            }
        }
        Ok(n)
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
            return Err(Error::BadLocation {
                spec: "jsonl:-".into(),
                why: "write to a file".into(),
            });
        }
        let dir = path
            .parent()
            .filter(|p| !p.as_os_str().is_empty())
            .unwrap_or(Path::new("."));
        // Left by exports that were killed (their writer's pid is gone).
        crate::repo::fsutil::remove_dead_temps(dir, Some(".export"));
        let tmp = crate::repo::fsutil::temp_path(dir, ".export");
        let f = File::create(&tmp).map_err(Error::io("creating", &tmp))?;
        Ok(JsonlSink {
            path: path.to_path_buf(),
            tmp,
            out: Some(BufWriter::with_capacity(1 << 20, f)),
            written: 0,
        })
    }

    pub fn write(&mut self, entity: &Entity) -> Result<()> {
        let out = self
            .out
            .as_mut()
            .ok_or(Error::Internal("export sink used after finish"))?;
        let line = json::entity_to_json(entity);
        out.write_all(line.as_bytes())
            .and_then(|_| out.write_all(b"\n"))
            .map_err(Error::io("writing", &self.tmp))?;
        self.written += 1;
        Ok(())
    }

    pub fn finish(mut self) -> Result<()> {
        if let Some(mut out) = self.out.take() {
            out.flush().map_err(Error::io("writing", &self.tmp))?;
        }
        crate::repo::fsutil::commit_output(&self.tmp, &self.path)
    }
}

impl Drop for JsonlSink {
    fn drop(&mut self) {
        if self.out.take().is_some() {
            let _ = std::fs::remove_file(&self.tmp);
        }
    }
}

/// A JSON Lines file as a restore target. The file behaves like a keyed
/// store: restoring into an existing file updates its entities by key and
/// keeps the others (unless `--exact` or `--clear` say otherwise). Writes go
/// to a SQLite staging database beside the file
/// (`.NAME.kindsnap-staging`), which makes them upserts, lets `--exact` and
/// `--clear` delete, survives an interruption for resume, and keeps memory
/// flat; `finish` writes the file in key order and renames it into place.
pub struct JsonlTarget {
    path: PathBuf,
    staging: Staging,
}

impl JsonlTarget {
    pub fn open(path: &Path) -> Result<JsonlTarget> {
        if path == Path::new("-") || path.is_dir() {
            return Err(Error::BadLocation {
                spec: format!("jsonl:{}", path.display()),
                why: "give a file to write".into(),
            });
        }
        Ok(JsonlTarget {
            path: path.to_path_buf(),
            staging: Staging::beside(path),
        })
    }

    /// An entity as the staging store keeps it: its JSON line.
    fn body(e: &Entity) -> Vec<u8> {
        json::entity_to_json(e).into_bytes()
    }

    /// Every staged line, in key order, into a temp file beside the
    /// target, then into place.
    fn write_out(&mut self) -> Result<()> {
        let dir = crate::repo::fsutil::parent_dir(&self.path);
        crate::repo::fsutil::remove_dead_temps(dir, Some(".restore"));
        let tmp = crate::repo::fsutil::temp_path(dir, ".restore");
        let file = File::create(&tmp).map_err(Error::io("creating", &tmp))?;
        let mut out = BufWriter::with_capacity(1 << 20, file);
        let written = self.staging.drain(&mut |line| {
            out.write_all(line)
                .and_then(|_| out.write_all(b"\n"))
                .map_err(Error::io("writing", &tmp))
        });
        let written = written.and_then(|_| out.flush().map_err(Error::io("writing", &tmp)));
        if let Err(e) = written {
            let _ = std::fs::remove_file(&tmp);
            return Err(e);
        }
        drop(out);
        crate::repo::fsutil::commit_output(&tmp, &self.path)
    }
}

impl super::EntityTarget for JsonlTarget {
    fn target_id(&self) -> String {
        let abs = std::path::absolute(&self.path).unwrap_or_else(|_| self.path.clone());
        format!("jsonl:{}", abs.display())
    }

    fn start(&mut self, resuming: bool) -> Result<()> {
        // A fresh store holds what the file holds already.
        let existing = self.path.exists().then(|| self.path.clone());
        let load = |f: &mut dyn FnMut(&Entity) -> Result<()>| -> Result<()> {
            let Some(path) = existing else {
                return Ok(());
            };
            JsonlSource::open(&path)?.for_each(&mut |e, _| f(&e))
        };
        self.staging.start(resuming, load, Self::body)
    }

    fn begin_kind(&mut self, _ns: &str, _kind: &str, _o: super::KindOptions) -> Result<()> {
        Ok(())
    }

    fn put(&mut self, entity: Entity) -> Result<()> {
        self.staging.put(&entity, &Self::body(&entity))
    }

    fn sync(&mut self) -> Result<()> {
        self.staging.sync()
    }

    fn take_rejections(&mut self) -> Vec<super::Rejection> {
        Vec::new()
    }

    fn end_kind(&mut self) -> Result<()> {
        Ok(())
    }

    fn reserve_ids(&mut self, _ns: &str, _kind: &str, _keys: &[crate::model::Key]) -> Result<()> {
        Ok(())
    }

    fn reserve_method(&self) -> &'static str {
        "none needed (a file hands out no ids)"
    }

    fn scan_keys(
        &mut self,
        namespace: &str,
        kind: &str,
        f: &mut dyn FnMut(crate::model::Key) -> Result<()>,
    ) -> Result<()> {
        self.staging.scan_keys(namespace, kind, f)
    }

    fn delete(&mut self, keys: Vec<crate::model::Key>) -> Result<()> {
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
        self.write_out()?;
        self.staging.remove()
    }
}
