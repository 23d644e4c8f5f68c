//! Reading a recording back, chunk by chunk, tolerating truncation and damage.

use std::fmt;
use std::io::Read;

use super::codec::{self, Dec};
use super::header::{ChunkHeader, FileInfo, read_full, read_header};
use super::{
    CHUNK_HEADER_LEN, FORMAT_MAJOR, FormatError, MAX_CHUNK_RECORDS, MAX_RAW_CHUNK,
    MAX_STORED_CHUNK, RECORD_HEADER_LEN, RecordingHeader, chunk_codec, chunk_kind,
};
use crate::event::Event;

/// Something a reader met that ended the recording early or lost data, without being an error:
/// the events before it are all good.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Warning {
    /// The file ends without an END chunk: inside the chunk starting at `offset`
    /// (`partial_bytes` of it present), or exactly at `offset` between chunks
    /// (`partial_bytes` = 0). The recorder crashed, was killed, or is still writing.
    Truncated {
        offset: u64,
        complete_chunks: u64,
        partial_bytes: u64,
    },
    /// The chunk at `offset` failed a check; reading stopped there.
    Corrupt { offset: u64, reason: String },
    /// Sequence numbers `first ..= last` include `count` that no chunk had (counted when
    /// reading ends): their events were dropped by the recorder (`dropped_by_recorder` of them,
    /// as its END chunk says: it fell behind) or lost from the file.
    Missing {
        count: u64,
        first: u64,
        last: u64,
        dropped_by_recorder: u64,
    },
    /// The chunk at `offset` repeats sequence number `seq`, already read: skipped, so its
    /// events are not counted twice.
    Duplicate { offset: u64, seq: u64 },
    /// The chunk at `offset` (sequence number `seq`) comes after chunk `after`: out of order.
    /// Its events are read where they stand.
    Reordered { offset: u64, seq: u64, after: u64 },
    /// The END chunk's totals differ from what was read: chunks were removed, added or altered
    /// (with their checks rewritten).
    EndMismatch {
        end_events: u64,
        end_chunks: u64,
        read_events: u64,
        read_chunks: u64,
    },
    /// Bytes follow the END chunk, starting at `offset`; they were ignored.
    TrailingData { offset: u64 },
}

impl fmt::Display for Warning {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Warning::Truncated {
                offset,
                complete_chunks,
                partial_bytes: 0,
            } => write!(
                f,
                "recording ends at byte {offset} after {complete_chunks} chunks without an END chunk \
                 (recorder crashed, was killed or is still running); later events, if any, are lost"
            ),
            Warning::Truncated {
                offset,
                complete_chunks,
                partial_bytes,
            } => write!(
                f,
                "recording is cut {partial_bytes} bytes into the chunk at byte {offset}, after \
                 {complete_chunks} complete chunks; that chunk's events are lost"
            ),
            Warning::Corrupt { offset, reason } => write!(
                f,
                "chunk at byte {offset} is corrupt ({reason}); reading stopped there, everything \
                 before it is intact"
            ),
            Warning::Missing {
                count,
                first,
                last,
                dropped_by_recorder,
            } => {
                write!(
                    f,
                    "{count} chunk(s) of events are missing (sequence numbers {first} to {last} \
                     have gaps)"
                )?;
                match *dropped_by_recorder {
                    0 => write!(f, "; they were lost from the file"),
                    d if d >= *count => {
                        write!(f, ": the recorder dropped them (it fell behind)")
                    }
                    d => write!(
                        f,
                        ": the recorder dropped {d} (it fell behind), {} were lost from the file",
                        count - d
                    ),
                }
            }
            Warning::Duplicate { offset, seq } => write!(
                f,
                "chunk at byte {offset} repeats chunk {seq}, already read: skipped (its events \
                 are not counted twice)"
            ),
            Warning::Reordered { offset, seq, after } => write!(
                f,
                "chunk at byte {offset} is chunk {seq}, out of order after chunk {after}: its \
                 events are read where they stand"
            ),
            Warning::EndMismatch {
                end_events,
                end_chunks,
                read_events,
                read_chunks,
            } => write!(
                f,
                "the END chunk counts {end_events} events in {end_chunks} chunks, but \
                 {read_events} in {read_chunks} were read: chunks were removed or altered"
            ),
            Warning::TrailingData { offset } => {
                write!(f, "ignored bytes after the END chunk, from byte {offset}")
            }
        }
    }
}

/// The totals an END chunk carries.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct EndSummary {
    pub events: u64,
    pub chunks: u64,
    pub discarded_chunks: u64,
    pub discarded_events: u64,
    /// Smallest and largest event timestamp in the file (0, 0 without events).
    pub first_ts: u64,
    pub last_ts: u64,
}

/// What a reader has read so far.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ReadStats {
    /// Chunks read and checked, of every kind.
    pub chunks: u64,
    /// EVENTS chunks decoded.
    pub event_chunks: u64,
    /// Events decoded (returned or waiting to be).
    pub events: u64,
    /// Records of unknown kinds, skipped.
    pub skipped_records: u64,
    /// Chunks of unknown kinds or codecs, skipped.
    pub skipped_chunks: u64,
    /// Sequence numbers below the highest seen that no chunk had (known when reading ended).
    pub missing_chunks: u64,
    /// Chunks skipped because their sequence number was read before.
    pub duplicate_chunks: u64,
    /// Chunks read out of sequence order.
    pub reordered_chunks: u64,
    /// The END chunk, when the file was closed cleanly.
    pub end: Option<EndSummary>,
}

/// Reads events back from a recording, in file order.
///
/// Never panics and never errors on a damaged file body: it stops at the first incomplete or
/// damaged chunk and records a [`Warning`]. Errors are for I/O failures and for headers that
/// make the file unreadable.
pub struct Reader<R: Read> {
    r: R,
    header: RecordingHeader,
    info: FileInfo,
    /// Bytes consumed so far.
    offset: u64,
    /// Sequence numbers read, as sorted disjoint ranges `[start, end)`.
    seen: Vec<(u64, u64)>,
    /// The sequence number of the last chunk read.
    last_seq: Option<u64>,
    /// Whether the end-of-reading checks ran.
    concluded: bool,
    /// Events of the current chunk not yet returned.
    /// Decoded events of the current chunk not handed out yet: `pending[head..]`.
    pending: Vec<Event>,
    head: usize,
    done: bool,
    warnings: Vec<Warning>,
    stats: ReadStats,
    stored: Vec<u8>,
    raw: Vec<u8>,
    decompressor: Option<zstd::bulk::Decompressor<'static>>,
}

impl<R: Read> Reader<R> {
    /// Reads and checks the file header. Errors name the input "the input"; see
    /// [`Reader::open_named`].
    pub fn open(r: R) -> Result<Self, FormatError> {
        Self::open_named(r, "the input")
    }

    /// As [`Reader::open`], with `name` (usually the path) in error messages.
    pub fn open_named(mut r: R, name: &str) -> Result<Self, FormatError> {
        let (header, info) = read_header(&mut r, name)?;
        Ok(Reader {
            r,
            header,
            info,
            offset: u64::from(info.header_len),
            seen: Vec::new(),
            last_seq: None,
            concluded: false,
            pending: Vec::new(),
            head: 0,
            done: false,
            warnings: Vec::new(),
            stats: ReadStats::default(),
            stored: Vec::new(),
            raw: Vec::new(),
            decompressor: None,
        })
    }

    pub fn header(&self) -> &RecordingHeader {
        &self.header
    }

    /// The file's format version (major, minor).
    pub fn format_version(&self) -> (u16, u16) {
        (FORMAT_MAJOR, self.info.minor)
    }

    /// The header's flags word (0 in format 1.0).
    pub fn flags(&self) -> u32 {
        self.info.flags
    }

    /// Warnings so far; after the last event, why reading ended if not at a clean END.
    pub fn warnings(&self) -> &[Warning] {
        &self.warnings
    }

    pub fn stats(&self) -> &ReadStats {
        &self.stats
    }

    /// Bytes consumed from the input so far.
    pub fn offset(&self) -> u64 {
        self.offset
    }

    /// The next event, or `None` at the end of the recording (clean or not: see
    /// [`Reader::warnings`]). Errors only on I/O failure.
    pub fn next_event(&mut self) -> Result<Option<Event>, FormatError> {
        loop {
            if let Some(ev) = self.pending.get_mut(self.head) {
                self.head += 1;
                // A cheap placeholder takes its place; the vector is cleared when it runs out.
                return Ok(Some(std::mem::replace(
                    ev,
                    Event::SwapOff(crate::event::SwapOff {
                        ts_ns: 0,
                        swap_type: 0,
                    }),
                )));
            }
            self.pending.clear();
            self.head = 0;
            if self.done {
                return Ok(None);
            }
            if let Err(e) = self.read_chunk() {
                self.done = true;
                return Err(e);
            }
        }
    }

    /// Appends the events of the next chunk (at least one) to `out`; `false` at the end of the
    /// recording. The same events, warnings and errors as [`Reader::next_event`], without a
    /// call per event.
    pub fn next_batch(&mut self, out: &mut Vec<Event>) -> Result<bool, FormatError> {
        loop {
            if self.head < self.pending.len() {
                if out.is_empty() && self.head == 0 {
                    // No copy: `out` takes the decoded vector, and the reader keeps `out`'s
                    // old one (and its capacity) for the next chunk.
                    std::mem::swap(out, &mut self.pending);
                } else {
                    out.extend(self.pending.drain(self.head..));
                }
                self.pending.clear();
                self.head = 0;
                return Ok(true);
            }
            if self.done {
                return Ok(false);
            }
            if let Err(e) = self.read_chunk() {
                self.done = true;
                return Err(e);
            }
        }
    }

    fn stop(&mut self, warning: Warning) {
        self.warnings.push(warning);
        self.done = true;
        self.conclude();
    }

    /// The checks that need the whole file: sequence numbers never seen, and the END chunk's
    /// totals against what was read. Runs once, when reading ends.
    fn conclude(&mut self) {
        if self.concluded {
            return;
        }
        self.concluded = true;
        let mut missing = 0u64;
        let mut first = None;
        let mut last = 0;
        let mut prev_end = 0u64;
        for &(a, b) in &self.seen {
            if a > prev_end {
                missing += a - prev_end;
                first.get_or_insert(prev_end);
                last = a - 1;
            }
            prev_end = b;
        }
        self.stats.missing_chunks = missing;
        let dropped = self.stats.end.map_or(0, |e| e.discarded_chunks);
        if let Some(first) = first {
            self.warnings.push(Warning::Missing {
                count: missing,
                first,
                last,
                dropped_by_recorder: dropped,
            });
        }
        if let Some(end) = self.stats.end {
            let read_events = self.stats.events + self.stats.skipped_records;
            if end.events != read_events || end.chunks != self.stats.event_chunks {
                self.warnings.push(Warning::EndMismatch {
                    end_events: end.events,
                    end_chunks: end.chunks,
                    read_events,
                    read_chunks: self.stats.event_chunks,
                });
            }
        }
    }

    /// Notes a chunk's sequence number: `false` if it was seen before (a duplicate).
    fn note_seq(&mut self, seq: u64, offset: u64) -> bool {
        let i = self.seen.partition_point(|&(_, b)| b <= seq);
        if self.seen.get(i).is_some_and(|&(a, _)| a <= seq) {
            self.stats.duplicate_chunks += 1;
            self.warnings.push(Warning::Duplicate { offset, seq });
            return false;
        }
        if let Some(after) = self.last_seq.filter(|&l| seq < l) {
            self.stats.reordered_chunks += 1;
            self.warnings
                .push(Warning::Reordered { offset, seq, after });
        }
        self.last_seq = Some(seq);
        // Insert [seq, seq + 1) and merge with its neighbours.
        let joins_prev = i > 0 && self.seen.get(i - 1).is_some_and(|&(_, b)| b == seq);
        let joins_next = self.seen.get(i).is_some_and(|&(a, _)| a == seq + 1);
        match (joins_prev, joins_next) {
            (true, true) => {
                let next_end = self.seen[i].1;
                self.seen[i - 1].1 = next_end;
                self.seen.remove(i);
            }
            (true, false) => self.seen[i - 1].1 = seq + 1,
            (false, true) => self.seen[i].0 = seq,
            (false, false) => self.seen.insert(i, (seq, seq + 1)),
        }
        true
    }

    fn truncated(&mut self, offset: u64) {
        let partial_bytes = self.offset - offset;
        self.stop(Warning::Truncated {
            offset,
            complete_chunks: self.stats.chunks,
            partial_bytes,
        });
    }

    fn corrupt(&mut self, offset: u64, reason: impl Into<String>) {
        self.stop(Warning::Corrupt {
            offset,
            reason: reason.into(),
        });
    }

    /// Reads the next chunk: fills `pending`, or stops with a warning.
    fn read_chunk(&mut self) -> Result<(), FormatError> {
        let start = self.offset;
        let mut hb = [0u8; CHUNK_HEADER_LEN];
        let n = read_full(&mut self.r, &mut hb)?;
        self.offset += n as u64;
        if n < CHUNK_HEADER_LEN {
            self.truncated(start);
            return Ok(());
        }
        let h = match ChunkHeader::decode(&hb) {
            Ok(h) => h,
            Err(e) => {
                self.corrupt(start, e.to_string());
                return Ok(());
            }
        };
        if let Err(e) = check_lengths(&h) {
            self.corrupt(start, e.to_string());
            return Ok(());
        }
        self.stored.resize(h.stored_len as usize, 0);
        let n = read_full(&mut self.r, &mut self.stored)?;
        self.offset += n as u64;
        if n < self.stored.len() {
            self.truncated(start);
            return Ok(());
        }
        if crc32c::crc32c(&self.stored) != h.payload_crc {
            self.corrupt(start, "payload CRC mismatch");
            return Ok(());
        }
        if !self.note_seq(h.seq, start) {
            // A repeat of a chunk already read: skip it.
            self.stats.chunks += 1;
            return Ok(());
        }

        match h.kind {
            chunk_kind::EVENTS => self.decode_events(start, &h)?,
            chunk_kind::END => match decode_end(&self.stored, &h) {
                Ok(end) => {
                    self.stats.chunks += 1;
                    self.stats.end = Some(end);
                    self.done = true;
                    let mut probe = [0u8; 1];
                    if read_full(&mut self.r, &mut probe)? > 0 {
                        self.warnings.push(Warning::TrailingData {
                            offset: self.offset,
                        });
                    }
                    self.conclude();
                }
                Err(reason) => self.corrupt(start, format!("END chunk: {reason}")),
            },
            _ => {
                // A chunk kind from a newer minor version: its CRCs held, so skip it.
                self.stats.chunks += 1;
                self.stats.skipped_chunks += 1;
            }
        }
        Ok(())
    }

    /// Decompresses and decodes an EVENTS chunk whose payload is in `stored`. All or nothing:
    /// a bad record drops the whole chunk and stops reading.
    fn decode_events(&mut self, start: u64, h: &ChunkHeader) -> Result<(), FormatError> {
        let raw: &[u8] = match h.codec {
            chunk_codec::NONE => &self.stored,
            chunk_codec::ZSTD => {
                let dec = match self.decompressor.as_mut() {
                    Some(d) => d,
                    None => self.decompressor.insert(zstd::bulk::Decompressor::new()?),
                };
                self.raw.clear();
                self.raw.reserve(h.raw_len as usize);
                match dec.decompress_to_buffer(&self.stored, &mut self.raw) {
                    Ok(n) if n == h.raw_len as usize => {}
                    Ok(n) => {
                        self.corrupt(
                            start,
                            format!("decompressed to {n} bytes, not {}", h.raw_len),
                        );
                        return Ok(());
                    }
                    Err(e) => {
                        self.corrupt(start, format!("zstd: {e}"));
                        return Ok(());
                    }
                }
                &self.raw
            }
            _ => {
                // A codec from a newer minor version.
                self.stats.chunks += 1;
                self.stats.skipped_chunks += 1;
                return Ok(());
            }
        };
        let shift = self.header.swp_type_shift;
        let mut skipped = 0u64;
        let mut records = 0u32;
        self.pending.reserve(h.n_records as usize);
        let mut d = Dec::new(raw);
        let mut deltas = codec::WriteoutDeltas::default();
        let mut folio_deltas = codec::FolioDeltas::default();
        let result = loop {
            if d.remaining() == 0 {
                break Ok(());
            }
            let (kind, body) = match next_record(&mut d) {
                Ok(v) => v,
                Err(reason) => break Err(reason.to_owned()),
            };
            records += 1;
            if let Some(k) = codec::RecordKind::from_code(kind)
                && let Some(r) = codec::decode_folio_delta(k, body, &mut folio_deltas)
            {
                match r {
                    Ok(ev) => {
                        self.pending.push(ev);
                        continue;
                    }
                    Err(reason) => break Err(format!("bad {} record: {reason}", k.name())),
                }
            }
            if let Some(ev) = codec::decode_alloc_free(kind, body) {
                self.pending.push(ev);
                continue;
            }
            if kind == codec::RecordKind::WriteoutDelta.code() {
                match codec::decode_writeout_delta(body, &mut deltas) {
                    Ok(w) => {
                        self.pending.push(Event::Writeout(w));
                        continue;
                    }
                    Err(reason) => {
                        break Err(format!("bad writeout-delta record: {reason}"));
                    }
                }
            }
            match codec::decode_record(kind, body, shift) {
                Ok(Some(ev)) => self.pending.push(ev),
                Ok(None) => skipped += 1,
                Err(e) => break Err(e.to_string()),
            }
        };
        let result = result.and_then(|()| {
            if records == h.n_records {
                Ok(())
            } else {
                Err(format!("{records} records, header says {}", h.n_records))
            }
        });
        match result {
            Ok(()) => {
                self.stats.chunks += 1;
                self.stats.event_chunks += 1;
                self.stats.events += self.pending.len() as u64;
                self.stats.skipped_records += skipped;
            }
            Err(reason) => {
                self.pending.clear();
                self.head = 0;
                self.corrupt(start, reason);
            }
        }
        Ok(())
    }
}

/// One framed record: (kind, body).
fn next_record<'a>(d: &mut Dec<'a>) -> Result<(u16, &'a [u8]), &'static str> {
    let kind = d.u16().map_err(|_| "record header overruns chunk")?;
    let _reserved = d.u16().map_err(|_| "record header overruns chunk")?;
    let len = d.u32().map_err(|_| "record header overruns chunk")?;
    let body = d
        .bytes(len as usize)
        .map_err(|_| "record body overruns chunk")?;
    Ok((kind, body))
}

/// The END payload. Fields appended by later minor versions are ignored.
fn decode_end(payload: &[u8], h: &ChunkHeader) -> Result<EndSummary, &'static str> {
    let mut d = Dec::new(payload);
    Ok(EndSummary {
        events: d.u64()?,
        chunks: d.u64()?,
        discarded_chunks: d.u64()?,
        discarded_events: d.u64()?,
        first_ts: h.first_ts,
        last_ts: h.last_ts,
    })
}

/// A chunk header whose lengths no writer produces (it passed its CRC but is still nonsense).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
enum LengthError {
    #[error("impossible length: stored {stored} raw {raw} bytes")]
    TooLong { stored: u32, raw: u32 },
    #[error("END chunk is compressed")]
    CompressedEnd,
    #[error("impossible length: uncompressed chunk with stored != raw length")]
    StoredNotRaw,
    #[error("impossible length: {0} records (at most {MAX_CHUNK_RECORDS})")]
    TooManyRecords(u32),
    #[error("impossible length: {records} records in {raw} bytes")]
    RecordsOverrun { records: u32, raw: u32 },
}

/// Rejects lengths no writer produces (a header that passed its CRC but is still nonsense).
fn check_lengths(h: &ChunkHeader) -> Result<(), LengthError> {
    if h.stored_len > MAX_STORED_CHUNK || h.raw_len > MAX_RAW_CHUNK {
        return Err(LengthError::TooLong {
            stored: h.stored_len,
            raw: h.raw_len,
        });
    }
    if h.kind == chunk_kind::END && h.codec != chunk_codec::NONE {
        return Err(LengthError::CompressedEnd);
    }
    if h.codec == chunk_codec::NONE && h.stored_len != h.raw_len {
        return Err(LengthError::StoredNotRaw);
    }
    if h.kind == chunk_kind::EVENTS && h.n_records > MAX_CHUNK_RECORDS {
        return Err(LengthError::TooManyRecords(h.n_records));
    }
    if h.kind == chunk_kind::EVENTS
        && u64::from(h.n_records) * RECORD_HEADER_LEN as u64 > u64::from(h.raw_len)
    {
        return Err(LengthError::RecordsOverrun {
            records: h.n_records,
            raw: h.raw_len,
        });
    }
    Ok(())
}

impl<R: Read> Iterator for Reader<R> {
    type Item = Result<Event, FormatError>;

    fn next(&mut self) -> Option<Self::Item> {
        self.next_event().transpose()
    }
}
