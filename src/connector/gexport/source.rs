//! `datastore-export:PATH` as a snapshot source.
//!
//! Files are read in parallel, one worker per file and as many workers as
//! cores (at most 8): each reads its file's log records, checks their
//! checksums, decodes the entities and encodes them for the repository.
//! Entities still reach the caller file by file, in file order, so the
//! same export always makes the same repository bytes; each file's worker
//! runs at most two batches (about 1 MiB each) ahead of the caller, so
//! memory is bounded whatever the export's size.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc::{channel, sync_channel, Receiver, SyncSender};

use super::layout::{self, DataFile, Export};
use super::log::{LogError, LogReader};
use super::map;
use crate::connector::{Encoded, EncodedBatch, EntitySource};
use crate::error::{Error, Result};
use crate::model::Entity;
use crate::net::Timeouts;

/// Bytes of encoded entities per batch handed to the caller.
const BATCH_BYTES: usize = 1 << 20;
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
}

/// What a file's worker sends.
enum Msg {
    Batch(EncodedBatch, Vec<String>),
    Failed(Error),
    Done,
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
        })
    }

    /// The data files, in reading order.
    pub fn files(&self) -> &[DataFile] {
        &self.export.files
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
        skipped: &std::cell::RefCell<Vec<String>>,
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
                return Err(Error::ExportData {
                    file: shown,
                    offset,
                    message: format!(
                        "{why}; the export is damaged there: take it again, or pass --tolerate to skip damaged records"
                    ),
                });
            }
            skipped
                .borrow_mut()
                .push(format!("{shown} at byte {offset}: {why}"));
        }
    }

    /// A file's worker: its entities, encoded, in batches.
    fn work(&self, index: usize, tx: &SyncSender<Msg>) {
        let mut batch = EncodedBatch::with_capacity(BATCH_BYTES + (64 << 10));
        // Damage found in a file travels with the batch that follows it.
        let skipped = std::cell::RefCell::new(Vec::new());
        let r = self.read_file(index, &skipped, &mut |e, origin| {
            batch.push(e, origin);
            if batch.data_len() >= BATCH_BYTES {
                let full = std::mem::replace(
                    &mut batch,
                    EncodedBatch::with_capacity(BATCH_BYTES + (64 << 10)),
                );
                tx.send(Msg::Batch(full, skipped.take()))
                    .map_err(|_| Error::Interrupted)?;
            }
            Ok(())
        });
        let skipped = skipped.into_inner();
        let _ = match r {
            Ok(()) => tx
                .send(Msg::Batch(batch, skipped))
                .and_then(|_| tx.send(Msg::Done)),
            Err(Error::Interrupted) => Ok(()),
            Err(e) => tx.send(Msg::Failed(e)),
        };
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

    fn set_tolerate(&mut self, tolerate: bool) {
        self.tolerate = tolerate;
    }

    fn skipped(&self) -> Vec<String> {
        self.skipped.clone()
    }

    fn for_each(&mut self, f: &mut dyn FnMut(Entity, u64) -> Result<()>) -> Result<()> {
        let skipped = std::cell::RefCell::new(Vec::new());
        for i in 0..self.export.files.len() {
            self.read_file(i, &skipped, f)?;
        }
        self.skipped = skipped.into_inner();
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
        let workers = std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(2)
            .clamp(1, 8)
            .min(self.export.files.len().max(1));
        let next = AtomicUsize::new(0);
        let (reg_tx, reg_rx) = channel::<(usize, Receiver<Msg>)>();
        let this = &*self;
        let result = std::thread::scope(|s| {
            for _ in 0..workers {
                let reg_tx = reg_tx.clone();
                let next = &next;
                s.spawn(move || loop {
                    let i = next.fetch_add(1, Ordering::SeqCst);
                    if i >= this.export.files.len() {
                        return;
                    }
                    let (tx, rx) = sync_channel(2);
                    if reg_tx.send((i, rx)).is_err() {
                        return;
                    }
                    this.work(i, &tx);
                });
            }
            drop(reg_tx);
            deliver(this.export.files.len(), reg_rx, f)
        });
        let skipped = result?;
        self.skipped = skipped;
        Ok(())
    }
}

/// Hand every file's batches to `f`, file by file. Returns the damaged
/// records skipped. Dropping the receivers (on an error) stops the workers.
fn deliver(
    files: usize,
    reg: Receiver<(usize, Receiver<Msg>)>,
    f: &mut dyn FnMut(Encoded<'_>) -> Result<()>,
) -> Result<Vec<String>> {
    let mut waiting: BTreeMap<usize, Receiver<Msg>> = BTreeMap::new();
    let mut skipped = Vec::new();
    for i in 0..files {
        let rx = loop {
            if let Some(rx) = waiting.remove(&i) {
                break rx;
            }
            let (j, rx) = reg
                .recv()
                .map_err(|_| Error::Internal("an export reader stopped early"))?;
            waiting.insert(j, rx);
        };
        loop {
            match rx.recv() {
                Ok(Msg::Batch(batch, damaged)) => {
                    skipped.extend(damaged);
                    for e in batch.iter() {
                        f(e)?;
                    }
                }
                Ok(Msg::Done) => break,
                Ok(Msg::Failed(e)) => return Err(e),
                Err(_) => return Err(Error::Internal("an export reader stopped early")),
            }
        }
    }
    Ok(skipped)
}
