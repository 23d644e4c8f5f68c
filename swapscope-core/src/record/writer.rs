//! Appending events to a recording.

use std::io::Write;

use super::codec::{self, put_u64};
use super::header::{ChunkHeader, encode_header};
use super::{
    CHUNK_HEADER_LEN, FormatError, MAX_CHUNK_BYTES, MAX_CHUNK_RECORDS, MAX_RECORD_BODY,
    RECORD_HEADER_LEN, RecordingHeader, chunk_codec, chunk_kind,
};
use crate::event::{Event, Ts};

/// How chunk payloads are stored.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Compression {
    /// Stored as is (codec 0).
    None,
    /// One zstd frame per chunk (codec 1). A chunk that does not shrink is stored as is.
    Zstd { level: i32 },
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct WriterOptions {
    /// A chunk is written out once its uncompressed records reach this many bytes
    /// (1..=[`MAX_CHUNK_BYTES`]; values outside are clamped).
    pub chunk_bytes: usize,
    pub compression: Compression,
    /// Store writeouts, allocs, frees, grants, swap-ins and cluster moves as the delta kinds of
    /// format 1.5 (`writeout-folio`, `alloc-delta`, ...: each coded against the chunk's previous
    /// record of the same CPU; a third less on disk than plain records for the full tier, and
    /// for writeouts as small as format 1.2's `writeout-delta`) rather than as BPF bytes and
    /// plain records.
    pub delta_records: bool,
}

impl Default for WriterOptions {
    /// 1 MiB chunks, zstd level 1, delta-coded writeouts (level 1 is both faster and, with
    /// delta-coded writeouts, smaller than 3: 2.1 against 2.4 bytes per event on a swap storm's
    /// recording; docs/performance.md).
    fn default() -> Self {
        WriterOptions {
            chunk_bytes: 1 << 20,
            compression: Compression::Zstd { level: 1 },
            delta_records: true,
        }
    }
}

/// What a writer has written so far.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct WriterStats {
    /// Records written in EVENTS chunks.
    pub events: u64,
    /// EVENTS chunks written.
    pub chunks: u64,
    /// Chunks thrown away with [`Writer::discard_chunk`], and their records.
    pub discarded_chunks: u64,
    pub discarded_events: u64,
    /// Uncompressed record bytes written.
    pub raw_bytes: u64,
    /// Bytes handed to the underlying writer: header, chunk headers, payloads, END.
    pub bytes_written: u64,
}

/// Appends events to a recording, one chunk at a time.
///
/// Records accumulate in memory until the chunk reaches [`WriterOptions::chunk_bytes`], or until
/// [`Writer::flush_chunk`] (the live recorder calls it every second), and are then written as one
/// chunk. Only that one chunk is ever buffered. Call [`Writer::finish`] to write the END chunk:
/// dropping a writer without it behaves like a crash (the buffered records are lost and the file
/// has no END chunk, which readers report as a truncation after the last whole chunk).
///
/// After a write error the writer refuses further use ([`FormatError::WriterFailed`]): the file
/// may end in a partial chunk, which readers treat as the end of the recording.
pub struct Writer<W: Write> {
    w: W,
    swp_type_shift: u8,
    chunk_bytes: usize,
    compressor: Option<zstd::bulk::Compressor<'static>>,
    /// Records of the current chunk, framed and uncompressed.
    raw: Vec<u8>,
    /// Compressed payload scratch space.
    stored: Vec<u8>,
    n_records: u32,
    /// Smallest and largest timestamp in the current chunk and in the file.
    chunk_ts: Option<(Ts, Ts)>,
    file_ts: Option<(Ts, Ts)>,
    seq: u64,
    stats: WriterStats,
    failed: bool,
    delta_records: bool,
    /// The chunk's previous alloc, free, grant or swap-in, for their delta kinds (likewise).
    folio_deltas: codec::FolioDeltas,
}

impl<W: Write> Writer<W> {
    /// Writes and flushes the file header and returns a writer for the chunks.
    pub fn create(
        mut w: W,
        header: &RecordingHeader,
        options: WriterOptions,
    ) -> Result<Self, FormatError> {
        let bytes = encode_header(header)?;
        let compressor = match options.compression {
            Compression::None => None,
            Compression::Zstd { level } => Some(zstd::bulk::Compressor::new(level)?),
        };
        w.write_all(&bytes)?;
        // Out at once: a recording killed before its first chunk still names what it was.
        w.flush()?;
        let chunk_bytes = options.chunk_bytes.clamp(1, MAX_CHUNK_BYTES);
        Ok(Writer {
            w,
            swp_type_shift: header.swp_type_shift,
            chunk_bytes,
            compressor,
            raw: Vec::with_capacity(chunk_bytes.min(1 << 20) + 64),
            stored: Vec::new(),
            n_records: 0,
            chunk_ts: None,
            file_ts: None,
            seq: 0,
            stats: WriterStats {
                bytes_written: bytes.len() as u64,
                ..WriterStats::default()
            },
            failed: false,
            delta_records: options.delta_records,
            folio_deltas: codec::FolioDeltas::default(),
        })
    }

    /// Appends one event. With `delta_records` (the default) writeouts, allocs, frees, grants,
    /// swap-ins and cluster moves are stored as their delta kinds (format 1.5), coded against the
    /// chunk's previous record of the same CPU; without, writeouts are stored as BPF bytes split
    /// with the header's `swp_type_shift` (one that shift cannot represent is refused) and the
    /// rest as plain records. A string over 64 KiB is refused.
    pub fn push(&mut self, ev: &Event) -> Result<(), FormatError> {
        if self.delta_records && codec::folio_delta_kind(ev).is_some() {
            let deltas = std::mem::take(&mut self.folio_deltas);
            let mut step = None;
            let appended = self.append(|out| {
                let (kind, s) = codec::encode_folio_delta(ev, &deltas, out).ok_or_else(|| {
                    FormatError::InvalidEvent {
                        reason: "no delta kind for this event".to_owned(),
                    }
                })?;
                step = Some(s);
                Ok((kind, ev.ts()))
            });
            // A chunk written out by `append` starts the state over; a record that was not
            // appended leaves it as it was.
            match (appended, step) {
                (Ok(()), Some(step)) if self.n_records > 0 => {
                    self.folio_deltas = deltas;
                    self.folio_deltas.apply(step);
                }
                (Ok(()), _) => {}
                (Err(e), _) => {
                    self.folio_deltas = deltas;
                    return Err(e);
                }
            }
            return Ok(());
        }
        let shift = self.swp_type_shift;
        self.append(|out| Ok((codec::encode_event(ev, shift, out)?, ev.ts())))
    }

    /// Appends the bytes of one BPF `WriteoutEvent` exactly as the ring buffer delivered them;
    /// the timestamp is taken from the bytes. Bytes that are not a writeout event are refused.
    pub fn push_raw_writeout(&mut self, raw: &[u8]) -> Result<(), FormatError> {
        self.append(|out| {
            Ok((
                codec::RecordKind::Writeout,
                codec::encode_raw_writeout(raw, out)?,
            ))
        })
    }

    /// Frames one record around the body `encode` appends (it returns the record kind and the
    /// event's timestamp), then writes the chunk out if it is full.
    fn append(
        &mut self,
        encode: impl FnOnce(&mut Vec<u8>) -> Result<(codec::RecordKind, Ts), FormatError>,
    ) -> Result<(), FormatError> {
        self.check_usable()?;
        let start = self.raw.len();
        self.raw.extend_from_slice(&[0; RECORD_HEADER_LEN]);
        let framed = encode(&mut self.raw).and_then(|(kind, ts)| {
            let len = self.raw.len() - start - RECORD_HEADER_LEN;
            if len > MAX_RECORD_BODY {
                return Err(FormatError::InvalidEvent {
                    reason: format!("record of {len} bytes is larger than {MAX_RECORD_BODY}"),
                });
            }
            Ok((kind, len as u32, ts))
        });
        let (kind, len, ts) = match framed {
            Ok(v) => v,
            Err(e) => {
                self.raw.truncate(start);
                return Err(e);
            }
        };
        self.raw[start..start + 2].copy_from_slice(&kind.code().to_le_bytes());
        self.raw[start + 4..start + 8].copy_from_slice(&len.to_le_bytes());
        self.n_records += 1;
        self.chunk_ts = Some(widen(self.chunk_ts, ts));
        if self.raw.len() >= self.chunk_bytes || self.n_records >= MAX_CHUNK_RECORDS {
            self.write_events_chunk()?;
        }
        Ok(())
    }

    /// Writes the buffered records (if any) as a chunk and flushes the underlying writer. The
    /// live recorder calls this every second, so a crash loses at most about a second.
    pub fn flush_chunk(&mut self) -> Result<(), FormatError> {
        self.check_usable()?;
        self.write_events_chunk()?;
        self.io(|w| w.flush())
    }

    /// Throws the buffered records away as one lost chunk (its sequence number is skipped, so
    /// readers count a gap) and returns how many there were. For a recorder that falls behind:
    /// drop whole chunks, never single records.
    pub fn discard_chunk(&mut self) -> u32 {
        let n = self.n_records;
        if n > 0 {
            self.stats.discarded_chunks += 1;
            self.stats.discarded_events += u64::from(n);
            self.seq += 1;
        }
        self.reset_chunk();
        n
    }

    /// Writes the last chunk and the END chunk, flushes, and returns the underlying writer with
    /// the totals.
    pub fn finish(mut self) -> Result<(W, WriterStats), FormatError> {
        self.check_usable()?;
        self.write_events_chunk()?;
        let mut payload = Vec::with_capacity(32);
        put_u64(&mut payload, self.stats.events);
        put_u64(&mut payload, self.stats.chunks);
        put_u64(&mut payload, self.stats.discarded_chunks);
        put_u64(&mut payload, self.stats.discarded_events);
        let (first_ts, last_ts) = self.file_ts.unwrap_or((0, 0));
        let header = ChunkHeader {
            kind: chunk_kind::END,
            codec: chunk_codec::NONE,
            seq: self.seq,
            first_ts,
            last_ts,
            n_records: 0,
            stored_len: payload.len() as u32,
            raw_len: payload.len() as u32,
            payload_crc: crc32c::crc32c(&payload),
        };
        let written = write_framed(&mut self.w, &header, &payload);
        self.chunk_written(written, header.stored_len)?;
        self.io(|w| w.flush())?;
        Ok((self.w, self.stats))
    }

    /// Totals so far (the buffered chunk not included).
    pub fn stats(&self) -> WriterStats {
        self.stats
    }

    /// Records waiting in the current chunk.
    pub fn buffered_records(&self) -> u32 {
        self.n_records
    }

    /// Uncompressed bytes waiting in the current chunk.
    pub fn buffered_bytes(&self) -> usize {
        self.raw.len()
    }

    /// The underlying writer, e.g. to `sync_data` a file after [`Writer::flush_chunk`].
    pub fn get_ref(&self) -> &W {
        &self.w
    }

    pub fn get_mut(&mut self) -> &mut W {
        &mut self.w
    }

    fn check_usable(&self) -> Result<(), FormatError> {
        if self.failed {
            Err(FormatError::WriterFailed)
        } else {
            Ok(())
        }
    }

    /// Runs a write on the underlying writer; a failure makes the writer unusable.
    fn io<T>(&mut self, f: impl FnOnce(&mut W) -> std::io::Result<T>) -> Result<T, FormatError> {
        f(&mut self.w).map_err(|e| {
            self.failed = true;
            FormatError::Io(e)
        })
    }

    fn reset_chunk(&mut self) {
        self.raw.clear();
        self.n_records = 0;
        self.chunk_ts = None;
        self.folio_deltas = codec::FolioDeltas::default();
    }

    /// Compresses and writes the buffered records as an EVENTS chunk; nothing if empty.
    fn write_events_chunk(&mut self) -> Result<(), FormatError> {
        if self.n_records == 0 {
            return Ok(());
        }
        // `append` keeps a chunk under MAX_CHUNK_BYTES + MAX_RECORD_BODY + 8 < 2^32.
        let raw_len = self.raw.len() as u32;
        let mut codec = chunk_codec::NONE;
        if let Some(c) = self.compressor.as_mut() {
            self.stored.clear();
            self.stored
                .reserve(zstd::zstd_safe::compress_bound(self.raw.len()));
            match c.compress_to_buffer(&self.raw, &mut self.stored) {
                Ok(n) if n < self.raw.len() => codec = chunk_codec::ZSTD,
                Ok(_) => {} // incompressible: store as is
                Err(e) => {
                    self.failed = true;
                    return Err(FormatError::Io(e));
                }
            }
        }
        let (first_ts, last_ts) = self.chunk_ts.unwrap_or((0, 0));
        let payload = if codec == chunk_codec::ZSTD {
            &self.stored
        } else {
            &self.raw
        };
        let header = ChunkHeader {
            kind: chunk_kind::EVENTS,
            codec,
            seq: self.seq,
            first_ts,
            last_ts,
            n_records: self.n_records,
            stored_len: payload.len() as u32,
            raw_len,
            payload_crc: crc32c::crc32c(payload),
        };
        let written = write_framed(&mut self.w, &header, payload);
        self.chunk_written(written, header.stored_len)?;
        self.stats.events += u64::from(self.n_records);
        self.stats.chunks += 1;
        self.stats.raw_bytes += u64::from(raw_len);
        self.file_ts = Some(widen(self.file_ts, first_ts));
        self.file_ts = Some(widen(self.file_ts, last_ts));
        self.reset_chunk();
        Ok(())
    }

    /// Book-keeping after a chunk of `stored_len` payload bytes was written (or failed to be).
    fn chunk_written(
        &mut self,
        written: std::io::Result<()>,
        stored_len: u32,
    ) -> Result<(), FormatError> {
        if let Err(e) = written {
            self.failed = true;
            return Err(FormatError::Io(e));
        }
        self.seq += 1;
        self.stats.bytes_written += (CHUNK_HEADER_LEN + stored_len as usize) as u64;
        Ok(())
    }
}

fn write_framed<W: Write>(w: &mut W, header: &ChunkHeader, payload: &[u8]) -> std::io::Result<()> {
    w.write_all(&header.encode())?;
    w.write_all(payload)
}

fn widen(range: Option<(Ts, Ts)>, ts: Ts) -> (Ts, Ts) {
    match range {
        None => (ts, ts),
        Some((lo, hi)) => (lo.min(ts), hi.max(ts)),
    }
}
