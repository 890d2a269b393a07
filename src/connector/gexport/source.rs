//! `datastore-export:PATH` as a snapshot source.
//!
//! Reading is one thread that reads the data files one after another and
//! checks every record's checksums, and one worker per core that decodes
//! and encodes the records (see [`parallel`]). Entities reach the caller
//! in file order, so the same export always makes the same repository
//! bytes, and memory stays at a few chunks of about 1 MiB per worker
//! whatever the export's size.

use super::layout::{self, Export};
use super::log::{LogError, LogReader};
use super::map;
use crate::connector::{Encoded, EncodedBatch, EntitySource};
use crate::error::{Error, Result};
use crate::model::Entity;
use crate::net::Timeouts;

/// Origins: the file's index above these bits, the byte offset below.
const OFFSET_BITS: u32 = 40;

pub struct ExportSource {
    export: Export,
    /// The project of the export's entities (from its first record), for
    /// the source id.
    project: Option<String>,
    tolerate: bool,
    /// Damaged records skipped by the last read (`--tolerate`).
    skipped: Vec<String>,
    filter: Option<crate::filter::KindFilter>,
}

impl ExportSource {
    pub fn open(location: &str, timeouts: &Timeouts) -> Result<ExportSource> {
        let export = layout::resolve(location, timeouts)?;
        let project = first_project(&export);
        Ok(ExportSource {
            export,
            project,
            tolerate: false,
            skipped: Vec::new(),
            filter: None,
        })
    }

    /// The files to read: in a filtered export, a folder of one
    /// namespace and kind that the snapshot does not want is not read.
    fn wanted(&self) -> Vec<usize> {
        (0..self.export.files.len())
            .filter(|&i| {
                let Some(filter) = &self.filter else {
                    return true;
                };
                let mut parts = self.export.files[i].rel.split('/');
                let (ns, kind) = (parts.next().unwrap_or(""), parts.next().unwrap_or(""));
                let ns = match ns {
                    "default_namespace" => Some(""),
                    other => other.strip_prefix("namespace_"),
                };
                match (ns, kind.strip_prefix("kind_")) {
                    (Some(ns), Some(kind)) => filter.allows(ns, kind),
                    _ => true,
                }
            })
            .collect()
    }

    fn origin_parts(origin: u64) -> (usize, u64) {
        (
            (origin >> OFFSET_BITS) as usize,
            origin & ((1 << OFFSET_BITS) - 1),
        )
    }

    /// Read file `index` through, calling `f` for each entity (with its
    /// origin); damaged records are skipped into `skipped` when
    /// tolerating, else end the read.
    fn read_file(
        &self,
        index: usize,
        skipped: &mut Vec<String>,
        f: &mut dyn FnMut(Entity, u64) -> Result<()>,
    ) -> Result<()> {
        let file = &self.export.files[index];
        let shown = self.export.folder.show(&file.rel);
        let reader = self.export.folder.reader(&file.rel, file.size)?;
        let mut log = LogReader::new(reader);
        loop {
            let (offset, why) = match log.next_record() {
                Ok(None) => return Ok(()),
                Ok(Some(rec)) => match map::decode_entity(rec.data) {
                    Ok(e) => {
                        f(e, ((index as u64) << OFFSET_BITS) | rec.offset)?;
                        continue;
                    }
                    Err(why) => (rec.offset, format!("not an App Engine entity ({why})")),
                },
                Err(LogError::Io(e)) => return Err(Error::io("reading", shown)(e)),
                Err(LogError::Damaged { offset, why }) => (offset, why),
            };
            if !self.tolerate {
                return Err(damaged(shown, offset, &why));
            }
            skipped.push(format!("{shown} at byte {offset}: {why}"));
        }
    }
}

/// The error for damage at `offset` of `file`.
fn damaged(file: String, offset: u64, why: &str) -> Error {
    Error::ExportData {
        file,
        offset,
        message: format!(
            "{why}; the export is damaged there: take it again, or pass --tolerate to skip damaged records"
        ),
    }
}

/// The project of the first entity of the first file that has one.
fn first_project(export: &Export) -> Option<String> {
    for file in export.files.iter().filter(|f| f.size > 0) {
        let reader = export.folder.reader(&file.rel, file.size).ok()?;
        let mut log = LogReader::new(reader);
        if let Ok(Some(rec)) = log.next_record() {
            return map::decode_entity(rec.data)
                .ok()
                .map(|e| e.key.partition.project);
        }
    }
    None
}

impl EntitySource for ExportSource {
    /// `datastore-export:SERIES (PROJECT)`: the folder holding the dated
    /// exports and the project, not the dated folder, so that daily
    /// exports into one place form one history; a filtered export's
    /// filter is part of it.
    fn source_id(&self) -> String {
        let mut id = format!("datastore-export:{}", self.export.series);
        let mut extra: Vec<&str> = Vec::new();
        if let Some(p) = &self.project {
            extra.push(p);
        }
        if !self.export.filter.is_empty() {
            extra.push(&self.export.filter);
        }
        if !extra.is_empty() {
            id.push_str(&format!(" ({})", extra.join("; ")));
        }
        id
    }

    fn set_filter(&mut self, filter: &crate::filter::KindFilter) {
        self.filter = Some(filter.clone());
    }

    fn set_tolerate(&mut self, tolerate: bool) {
        self.tolerate = tolerate;
    }

    fn skipped(&self) -> Vec<String> {
        self.skipped.clone()
    }

    fn for_each(&mut self, f: &mut dyn FnMut(Entity, u64) -> Result<()>) -> Result<()> {
        let mut skipped = Vec::new();
        for i in self.wanted() {
            self.read_file(i, &mut skipped, f)?;
        }
        self.skipped = skipped;
        Ok(())
    }

    fn describe(&self, origin: u64) -> String {
        let (file, offset) = Self::origin_parts(origin);
        match self.export.files.get(file) {
            Some(f) => format!("{} at byte {offset}", self.export.folder.show(&f.rel)),
            None => format!("record {origin}"),
        }
    }

    fn for_each_encoded(&mut self, f: &mut dyn FnMut(Encoded<'_>) -> Result<()>) -> Result<()> {
        let files = self.wanted();
        let skipped = parallel::run(self, &files, f)?;
        self.skipped = skipped;
        Ok(())
    }
}

/// One reader thread reads the files in order, checks every record's
/// checksums and hands out chunks of about 1 MiB of records; workers (one
/// per core, at most 8) decode and encode them; the caller's thread gets
/// them back in reading order. Channels are bounded, so memory stays at a
/// few chunks per worker whatever the export's size. A data file is read
/// by the one reader, decoded by all workers: one huge file and many
/// small ones go equally fast.
mod parallel {
    use std::collections::BTreeMap;
    use std::sync::mpsc::{sync_channel, Receiver, SyncSender};
    use std::sync::{Arc, Mutex};

    use super::*;

    const CHUNK: usize = 1 << 20;

    /// Records of one file: their bytes, and (file offset, start, length).
    struct Chunk {
        seq: u64,
        file: usize,
        data: Vec<u8>,
        records: Vec<(u64, u32, u32)>,
        /// Damage found before the records of the next chunk (tolerated).
        damaged: Vec<String>,
        /// Damage or an I/O error that ends the read, after these records.
        failed: Option<Error>,
    }

    struct Done {
        seq: u64,
        batch: EncodedBatch,
        damaged: Vec<String>,
        failed: Option<Error>,
    }

    impl Chunk {
        fn new(seq: u64, file: usize) -> Chunk {
            Chunk {
                seq,
                file,
                data: Vec::with_capacity(CHUNK + (64 << 10)),
                records: Vec::new(),
                damaged: Vec::new(),
                failed: None,
            }
        }
    }

    /// Returns the damaged records skipped.
    pub fn run(
        src: &ExportSource,
        files: &[usize],
        f: &mut dyn FnMut(Encoded<'_>) -> Result<()>,
    ) -> Result<Vec<String>> {
        let workers = std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(2)
            .clamp(1, 8);
        let (chunk_tx, chunk_rx) = sync_channel::<Chunk>(workers);
        let (done_tx, done_rx) = sync_channel::<Done>(workers);
        let chunk_rx = Arc::new(Mutex::new(chunk_rx));
        std::thread::scope(|s| {
            s.spawn(move || read(src, files, &chunk_tx));
            for _ in 0..workers {
                let rx = Arc::clone(&chunk_rx);
                let tx = done_tx.clone();
                s.spawn(move || loop {
                    let next = rx.lock().map(|r| r.recv());
                    let Ok(Ok(chunk)) = next else {
                        return;
                    };
                    if tx.send(decode(src, chunk)).is_err() {
                        return;
                    }
                });
            }
            drop(done_tx);
            drop(chunk_rx);
            deliver(&done_rx, f)
        })
    }

    /// The reader: records of every file, in order, in chunks.
    fn read(src: &ExportSource, files: &[usize], tx: &SyncSender<Chunk>) {
        let mut seq = 0;
        for &i in files {
            let file = &src.export.files[i];
            let shown = src.export.folder.show(&file.rel);
            let mut chunk = Chunk::new(seq, i);
            let mut log = match src.export.folder.reader(&file.rel, file.size) {
                Ok(r) => LogReader::new(r),
                Err(e) => {
                    chunk.failed = Some(e);
                    let _ = tx.send(chunk);
                    return;
                }
            };
            loop {
                match log.next_record() {
                    Ok(None) => break,
                    Ok(Some(rec)) => {
                        let start = chunk.data.len() as u32;
                        chunk.data.extend_from_slice(rec.data);
                        chunk
                            .records
                            .push((rec.offset, start, rec.data.len() as u32));
                    }
                    Err(LogError::Io(e)) => chunk.failed = Some(Error::io("reading", &shown)(e)),
                    Err(LogError::Damaged { offset, why }) if src.tolerate => {
                        // Goes with the records read so far; the next chunk
                        // holds what follows the damage.
                        chunk
                            .damaged
                            .push(format!("{shown} at byte {offset}: {why}"));
                    }
                    Err(LogError::Damaged { offset, why }) => {
                        chunk.failed = Some(damaged(shown.clone(), offset, &why))
                    }
                }
                if chunk.failed.is_some() {
                    let _ = tx.send(chunk);
                    return;
                }
                if chunk.data.len() >= CHUNK {
                    seq += 1;
                    let full = std::mem::replace(&mut chunk, Chunk::new(seq, i));
                    if tx.send(full).is_err() {
                        return;
                    }
                }
            }
            seq += 1;
            if tx.send(chunk).is_err() {
                return;
            }
        }
    }

    fn decode(src: &ExportSource, chunk: Chunk) -> Done {
        let mut batch = EncodedBatch::with_capacity(chunk.data.len() + chunk.data.len() / 2);
        let mut damaged = chunk.damaged;
        let mut failed = None;
        for &(offset, start, len) in &chunk.records {
            let bytes = &chunk.data[start as usize..(start + len) as usize];
            match map::decode_entity(bytes) {
                Ok(e) => batch.push(e, ((chunk.file as u64) << OFFSET_BITS) | offset),
                Err(why) => {
                    let shown = src.export.folder.show(&src.export.files[chunk.file].rel);
                    let why = format!("not an App Engine entity ({why})");
                    if src.tolerate {
                        damaged.push(format!("{shown} at byte {offset}: {why}"));
                    } else {
                        failed = Some(damaged_error(shown, offset, &why));
                        break;
                    }
                }
            }
        }
        Done {
            seq: chunk.seq,
            batch,
            damaged,
            failed: failed.or(chunk.failed),
        }
    }

    use super::damaged as damaged_error;

    fn deliver(
        rx: &Receiver<Done>,
        f: &mut dyn FnMut(Encoded<'_>) -> Result<()>,
    ) -> Result<Vec<String>> {
        let mut pending: BTreeMap<u64, Done> = BTreeMap::new();
        let mut next = 0u64;
        let mut skipped = Vec::new();
        for done in rx.iter() {
            pending.insert(done.seq, done);
            while let Some(done) = pending.remove(&next) {
                next += 1;
                for e in done.batch.iter() {
                    f(e)?;
                }
                skipped.extend(done.damaged);
                if let Some(e) = done.failed {
                    return Err(e);
                }
            }
        }
        if !pending.is_empty() {
            return Err(Error::Internal("an export chunk went missing"));
        }
        Ok(skipped)
    }
}
