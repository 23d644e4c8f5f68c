//! `.swsc` recordings: an append-only, chunked, checksummed file of [`Event`]s.
//!
//! A file is a header (magic, version, TLVs describing the machine and the session, CRC32C) and
//! then chunks, each self-delimiting and checksummed, each an independent zstd frame of
//! `{kind, len, body}` records. The full byte layout, the crash guarantees and the versioning
//! rules are in docs/format.md.
//!
//! - [`Writer`] appends records to the current chunk and writes it out when it reaches
//!   [`WriterOptions::chunk_bytes`] or on [`Writer::flush_chunk`]; it never holds more than one
//!   chunk.
//! - [`Reader`] yields events in file order. A file cut anywhere reads back every whole chunk
//!   before the cut and ends with a [`Warning::Truncated`]; a damaged chunk ends reading with a
//!   [`Warning::Corrupt`]. Only a file that is not a recording, or whose header is cut or damaged,
//!   is an error ([`FormatError`]).
//!
//! Architecture invariant: this module does no I/O beyond the `Read`/`Write` it is handed and
//! knows nothing about the engine.
//!
//! [`Event`]: crate::event::Event

pub mod codec;
mod header;
mod reader;
mod writer;

#[cfg(test)]
mod tests;

pub use header::{RecordingHeader, tlv};
pub use reader::{EndSummary, ReadStats, Reader, Warning};
pub use writer::{Compression, Writer, WriterOptions, WriterStats};

/// First bytes of every recording.
pub const MAGIC: [u8; 8] = *b"SWSCOPE\0";
/// Incompatible layout changes bump the major version; readers refuse other majors.
pub const FORMAT_MAJOR: u16 = 1;
/// Additive changes (record kinds, header TLVs, chunk kinds, codecs) bump the minor version;
/// readers skip what they do not know. 1.1 added `alloc-timed` records, 1.2 `writeout-delta`,
/// 1.3 `swapin` and `cluster`, 1.4 `grant`, 1.5 the delta kinds of the full tier (`alloc-delta`,
/// `free-delta`, `grant-delta`, `swapin-delta`, `writeout-folio`, `cluster-delta`).
pub const FORMAT_MINOR: u16 = 5;
/// `SWP_TYPE_SHIFT` on x86-64 (`MAX_SWAPFILES_SHIFT` = 5 bits of type above 58 bits of offset
/// in the swap entry the BPF program reads).
pub const DEFAULT_SWP_TYPE_SHIFT: u8 = 58;

/// Magic of every chunk header.
pub const CHUNK_MAGIC: [u8; 4] = *b"CHNK";
/// Chunk kinds.
pub mod chunk_kind {
    /// Records (`{kind u16, reserved u16, len u32, body}`), compressed per the chunk's codec.
    pub const EVENTS: u8 = 1;
    /// Written by [`super::Writer::finish`] on a clean close: totals, never compressed.
    pub const END: u8 = 2;
}
/// Chunk payload codecs.
pub mod chunk_codec {
    pub const NONE: u8 = 0;
    /// One independent zstd frame per chunk.
    pub const ZSTD: u8 = 1;
}

/// Bytes of a chunk header.
pub const CHUNK_HEADER_LEN: usize = 52;
/// Bytes of a record header (`kind u16, reserved u16, len u32`).
pub const RECORD_HEADER_LEN: usize = 8;
/// Largest decompressed chunk a reader accepts; longer is an impossible length (corruption). A
/// writer's chunk is at most [`MAX_CHUNK_BYTES`] plus one record of at most
/// [`MAX_RECORD_BODY`].
pub const MAX_RAW_CHUNK: u32 = 32 << 20;
/// Most records a chunk may hold (writers cut chunks there): what one decoded chunk can cost in
/// memory is bounded whatever its bytes say.
pub const MAX_CHUNK_RECORDS: u32 = 1 << 18;
/// Largest stored (compressed) chunk a reader accepts: [`MAX_RAW_CHUNK`] plus zstd's worst case
/// expansion.
pub const MAX_STORED_CHUNK: u32 = MAX_RAW_CHUNK + (1 << 20);
/// Largest record body a writer accepts.
pub const MAX_RECORD_BODY: usize = 8 << 20;
/// Largest `chunk_bytes` a writer accepts (so a chunk stays below [`MAX_RAW_CHUNK`]).
pub const MAX_CHUNK_BYTES: usize = 16 << 20;
/// Largest file header (TLVs included) either side accepts.
pub const MAX_HEADER_LEN: u32 = 1 << 20;

/// One probe of the probe plan: what the recorder tried to attach and whether it worked.
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct ProbeStatus {
    /// Probe name, e.g. `mm_vmscan_write_folio`.
    pub name: String,
    /// Attach type, e.g. `tp_btf`, `fentry`, `kprobe`, `sampler`.
    pub kind: String,
    pub attached: bool,
    /// Why it is missing, or the resolved symbol when attached.
    pub detail: String,
}

/// The tier a plan gives: `full` when requests and frees are both fed, `tracepoint` when only
/// write-outs are, `counters` otherwise (no BPF: the kernel's counters and /proc/swaps only).
pub fn tier(plan: &[ProbeStatus]) -> &'static str {
    use swapscope_common::Feed;
    let fed = |feed: Feed| {
        plan.iter().any(|p| {
            p.attached
                && p.detail
                    .strip_prefix(feed.as_str())
                    .is_some_and(|rest| rest.starts_with(':'))
        })
    };
    match (fed(Feed::Alloc) && fed(Feed::Free), fed(Feed::Writeout)) {
        (true, _) => "full",
        (false, true) => "tracepoint",
        _ => "counters",
    }
}

/// Errors that stop reading or writing. Display is one actionable line.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum FormatError {
    #[error(
        "{name} is not a swapscope recording (bad magic {found}); record one with `swapscope record -o FILE`"
    )]
    NotARecording { name: String, found: String },
    #[error(
        "{name} ends inside its file header ({got} of {need} bytes): the recorder stopped before writing anything; record again"
    )]
    TruncatedHeader { name: String, got: u64, need: u64 },
    #[error(
        "{name} has a damaged file header (CRC32C {stored:#010x}, computed {computed:#010x}); the file is corrupt and cannot be read"
    )]
    HeaderCrc {
        name: String,
        stored: u32,
        computed: u32,
    },
    #[error(
        "{name} is recording format {major}.{minor}, but this swapscope reads only format {supported}.x; use a swapscope release that reads it"
    )]
    UnsupportedVersion {
        name: String,
        major: u16,
        minor: u16,
        supported: u16,
    },
    #[error("{name} has an invalid file header: {reason}")]
    BadHeader { name: String, reason: String },
    #[error("bad {} record (kind {kind}): {reason}", codec::RecordKind::from_code(*kind).map_or("unknown", codec::RecordKind::name))]
    BadRecord { kind: u16, reason: String },
    #[error("cannot record this: {reason}")]
    InvalidEvent { reason: String },
    #[error("the recording writer stopped after an earlier write error; start a new recording")]
    WriterFailed,
    #[error("recording I/O error: {0}")]
    Io(#[from] std::io::Error),
}
