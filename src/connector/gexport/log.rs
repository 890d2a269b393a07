//! The LevelDB log format that Google's managed exports store records in:
//! the file is a run of 32 KiB blocks; a record is cut into fragments that
//! never cross a block, each behind a 7-byte header (masked CRC32C of the
//! type byte and the payload, little-endian length, type: FULL, FIRST,
//! MIDDLE or LAST). A block's last 1–6 bytes, too short for a header, are
//! zeros. Every fragment's checksum is checked.
//!
//! The reader streams: it holds one block and the record being assembled,
//! never the file. It never skips damage by itself; the caller decides
//! (`--tolerate`) whether a damaged record ends the read.

use std::io::{self, Read, Write};

pub const BLOCK: usize = 32 * 1024;
pub const HEADER: usize = 7;

const ZERO: u8 = 0;
const FULL: u8 = 1;
const FIRST: u8 = 2;
const MIDDLE: u8 = 3;
const LAST: u8 = 4;

const MASK_DELTA: u32 = 0xa282_ead8;

/// LevelDB's masked CRC32C of the type byte followed by the payload.
pub fn masked_crc(kind: u8, payload: &[u8]) -> u32 {
    let crc = crc32c::crc32c_append(crc32c::crc32c(&[kind]), payload);
    crc.rotate_right(15).wrapping_add(MASK_DELTA)
}

/// Why a record could not be read, and where it starts.
#[derive(Debug)]
pub enum LogError {
    /// The file could not be read at all.
    Io(io::Error),
    /// The bytes at `offset` are not a valid fragment (or a record's
    /// fragments are out of order); the reader has moved past them and
    /// can go on with the next block.
    Damaged { offset: u64, why: String },
}

/// One record: where it starts in the file and its bytes (borrowed from the
/// reader until the next call).
pub struct Record<'a> {
    pub offset: u64,
    pub data: &'a [u8],
}

pub struct LogReader<R> {
    src: R,
    block: Vec<u8>,
    /// Bytes of `block` filled, and how far they are parsed.
    len: usize,
    pos: usize,
    /// File offset of `block[0]`.
    block_start: u64,
    eof: bool,
    record: Vec<u8>,
    /// Offset of the FIRST fragment of the record being assembled.
    record_start: Option<u64>,
    /// After damage: the rest of the damaged record (MIDDLE and LAST
    /// fragments at the start of the next block) is passed over quietly.
    resyncing: bool,
}

impl<R: Read> LogReader<R> {
    pub fn new(src: R) -> Self {
        LogReader {
            src,
            block: vec![0; BLOCK],
            len: 0,
            pos: 0,
            block_start: 0,
            eof: false,
            record: Vec::new(),
            record_start: None,
            resyncing: false,
        }
    }

    /// Read the next block; false at the end of the file.
    fn next_block(&mut self) -> io::Result<bool> {
        if self.eof {
            return Ok(false);
        }
        self.block_start += self.len as u64;
        let mut n = 0;
        while n < BLOCK {
            match self.src.read(&mut self.block[n..]) {
                Ok(0) => break,
                Ok(k) => n += k,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
        self.eof = n < BLOCK;
        self.len = n;
        self.pos = 0;
        Ok(n > 0)
    }

    fn damaged(&mut self, offset: u64, why: String) -> LogError {
        // Resynchronise at the next block: a header cannot be trusted to
        // say where the next fragment is.
        self.pos = self.len;
        self.record.clear();
        self.record_start = None;
        self.resyncing = true;
        LogError::Damaged { offset, why }
    }

    /// The next record, `None` at the end of the file. After a `Damaged`
    /// error the reader can be called again: it goes on at the next block.
    pub fn next_record(&mut self) -> Result<Option<Record<'_>>, LogError> {
        loop {
            if self.len - self.pos < HEADER {
                // The trailer of a block (zeros), or the end of the file.
                let rest = &self.block[self.pos..self.len];
                let at = self.block_start + self.pos as u64;
                if self.len < BLOCK && !rest.is_empty() && rest.iter().any(|&b| b != 0) {
                    return Err(self.damaged(at, "the file ends inside a record header".into()));
                }
                if !self.next_block().map_err(LogError::Io)? {
                    return match self.record_start {
                        Some(start) => Err(self.damaged(
                            start,
                            "the file ends in the middle of a record (truncated)".into(),
                        )),
                        None => Ok(None),
                    };
                }
                continue;
            }
            let at = self.block_start + self.pos as u64;
            let h = &self.block[self.pos..self.pos + HEADER];
            let crc = u32::from_le_bytes([h[0], h[1], h[2], h[3]]);
            let length = u16::from_le_bytes([h[4], h[5]]) as usize;
            let kind = h[6];
            if kind == ZERO && length == 0 && crc == 0 {
                // Zeros where a header should be: preallocated space, which
                // leveldb's writers leave too. Nothing more in this block.
                if self.block[self.pos..self.len].iter().any(|&b| b != 0) {
                    return Err(self.damaged(at, "a zero header before data".into()));
                }
                self.pos = self.len;
                continue;
            }
            let start = self.pos + HEADER;
            if start + length > self.len {
                let why = if self.len < BLOCK {
                    "the file ends inside a record (truncated)".to_string()
                } else {
                    format!("a fragment of {length} bytes does not fit in its block")
                };
                return Err(self.damaged(at, why));
            }
            let payload = &self.block[start..start + length];
            if masked_crc(kind, payload) != crc {
                return Err(self.damaged(at, "checksum mismatch (CRC32C)".into()));
            }
            self.pos = start + length;
            if self.resyncing {
                if kind == MIDDLE || kind == LAST {
                    continue;
                }
                self.resyncing = false;
            }
            match kind {
                FULL if self.record_start.is_none() => {
                    return Ok(Some(Record {
                        offset: at,
                        data: &self.block[start..start + length],
                    }));
                }
                FIRST if self.record_start.is_none() => {
                    self.record.clear();
                    self.record.extend_from_slice(payload);
                    self.record_start = Some(at);
                }
                MIDDLE if self.record_start.is_some() => self.record.extend_from_slice(payload),
                LAST if self.record_start.is_some() => {
                    self.record.extend_from_slice(payload);
                    let offset = self.record_start.take().unwrap_or(at);
                    return Ok(Some(Record {
                        offset,
                        data: &self.record,
                    }));
                }
                FULL | FIRST => {
                    let start = self.record_start.unwrap_or(at);
                    return Err(self.damaged(
                        start,
                        "a record is cut off (its last fragment is missing)".into(),
                    ));
                }
                MIDDLE | LAST => {
                    return Err(
                        self.damaged(at, "a record fragment without its first fragment".into())
                    )
                }
                other => {
                    return Err(self.damaged(at, format!("unknown fragment type {other}")));
                }
            }
        }
    }
}

/// Writes records in the log format. `finish` returns the writer; a file
/// with no record is empty (what Google writes for an empty shard).
pub struct LogWriter<W> {
    out: W,
    /// Bytes written into the current block.
    in_block: usize,
    pub bytes: u64,
}

impl<W: Write> LogWriter<W> {
    pub fn new(out: W) -> Self {
        LogWriter {
            out,
            in_block: 0,
            bytes: 0,
        }
    }

    pub fn write_record(&mut self, data: &[u8]) -> io::Result<()> {
        let mut rest = data;
        let mut first = true;
        loop {
            let left = BLOCK - self.in_block;
            if left < HEADER {
                self.out.write_all(&[0u8; HEADER][..left])?;
                self.bytes += left as u64;
                self.in_block = 0;
                continue;
            }
            let room = left - HEADER;
            let take = rest.len().min(room);
            let last = take == rest.len();
            let kind = match (first, last) {
                (true, true) => FULL,
                (true, false) => FIRST,
                (false, false) => MIDDLE,
                (false, true) => LAST,
            };
            let payload = &rest[..take];
            let mut header = [0u8; HEADER];
            header[..4].copy_from_slice(&masked_crc(kind, payload).to_le_bytes());
            header[4..6].copy_from_slice(&(take as u16).to_le_bytes());
            header[6] = kind;
            self.out.write_all(&header)?;
            self.out.write_all(payload)?;
            self.in_block += HEADER + take;
            self.bytes += (HEADER + take) as u64;
            rest = &rest[take..];
            first = false;
            if last {
                return Ok(());
            }
        }
    }

    pub fn finish(mut self) -> io::Result<W> {
        self.out.flush()?;
        Ok(self.out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write(records: &[Vec<u8>]) -> Vec<u8> {
        let mut w = LogWriter::new(Vec::new());
        for r in records {
            w.write_record(r).unwrap();
        }
        w.finish().unwrap()
    }

    fn read_all(bytes: &[u8]) -> Vec<Result<(u64, Vec<u8>), String>> {
        let mut r = LogReader::new(bytes);
        let mut out = Vec::new();
        loop {
            match r.next_record() {
                Ok(Some(rec)) => out.push(Ok((rec.offset, rec.data.to_vec()))),
                Ok(None) => return out,
                Err(LogError::Damaged { offset, why }) => out.push(Err(format!("{offset}: {why}"))),
                Err(LogError::Io(e)) => panic!("{e}"),
            }
        }
    }

    #[test]
    fn the_masked_crc_is_leveldbs() {
        // crc32c("123456789") = 0xe3069283 (the standard check value).
        assert_eq!(crc32c::crc32c(b"123456789"), 0xe306_9283);
        let crc = crc32c::crc32c(b"\x01abc");
        assert_eq!(
            masked_crc(1, b"abc"),
            crc.rotate_right(15).wrapping_add(MASK_DELTA)
        );
    }

    #[test]
    fn records_round_trip_across_blocks() {
        let records: Vec<Vec<u8>> = vec![
            vec![],
            b"one".to_vec(),
            vec![7; BLOCK - 2 * HEADER - 3 - 1],
            vec![9; 3 * BLOCK + 5],
            b"after".to_vec(),
        ];
        let bytes = write(&records);
        let got: Vec<Vec<u8>> = read_all(&bytes).into_iter().map(|r| r.unwrap().1).collect();
        assert_eq!(got, records);
        assert!(read_all(&[]).is_empty());
    }

    #[test]
    fn a_flipped_byte_is_reported_at_its_offset_and_reading_goes_on() {
        let records: Vec<Vec<u8>> = (0..40u8).map(|i| vec![i; 2000]).collect();
        let mut bytes = write(&records);
        // The third record's payload.
        let third = 2 * (HEADER + 2000) as u64;
        bytes[third as usize + HEADER + 10] ^= 1;
        let got = read_all(&bytes);
        assert_eq!(
            got[2].as_ref().unwrap_err(),
            &format!("{third}: checksum mismatch (CRC32C)")
        );
        // The rest of that block is skipped; the next blocks read.
        let ok = got.iter().filter(|r| r.is_ok()).count();
        assert!(ok > 20 && ok < 40, "{ok}");
        assert_eq!(got.last().unwrap().as_ref().unwrap().1, vec![39u8; 2000]);
    }

    #[test]
    fn truncation_is_damage() {
        let bytes = write(&[vec![1; 100], vec![2; 3 * BLOCK]]);
        let got = read_all(&bytes[..BLOCK + 10]);
        assert!(got[0].is_ok());
        let err = got[1].as_ref().unwrap_err();
        // Reported where the cut fragment starts.
        assert!(
            err.starts_with(&format!("{BLOCK}: ")) && err.contains("truncated"),
            "{err}"
        );
    }
}
