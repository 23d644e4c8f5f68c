//! The whole-file reader on arbitrary bytes: open, then read every batch to the end, as
//! `report` and `replay` do. Anything but a clean error or a reading is a finding (panics,
//! overflows, allocations past libFuzzer's -rss_limit_mb / -malloc_limit_mb).
//!
//! CRCs stop almost every mutation at the first check, so when the input's first byte is odd
//! the rest is read with its header and chunk CRCs recomputed first (by the format's framing,
//! docs/format.md): the mutations then reach the decompressor and the record decoder.
#![no_main]

use libfuzzer_sys::fuzz_target;
use swapscope_core::record::{CHUNK_HEADER_LEN as CHUNK_HEADER, Reader};

// A chunk header's fields at fixed offsets (docs/format.md).
const STORED_LEN_AT: usize = 36;
const PAYLOAD_CRC_AT: usize = 44;
const HEADER_CRC_AT: usize = 48;

fn u32_at(b: &[u8], at: usize) -> Option<u32> {
    Some(u32::from_le_bytes(b.get(at..at + 4)?.try_into().ok()?))
}

fn put_crc(b: &mut [u8], at: usize, crc: u32) {
    if let Some(s) = b.get_mut(at..at + 4) {
        s.copy_from_slice(&crc.to_le_bytes());
    }
}

/// Recomputes the file header's CRC and every chunk's header and payload CRCs.
fn fix_crcs(b: &mut [u8]) {
    let Some(hl) = u32_at(b, 12).map(|n| n as usize) else {
        return;
    };
    if hl < 24 || hl > b.len() {
        return;
    }
    let crc = crc32c::crc32c(&b[..hl - 4]);
    put_crc(b, hl - 4, crc);
    let mut at = hl;
    while at + CHUNK_HEADER <= b.len() {
        let stored = u32_at(b, at + STORED_LEN_AT).unwrap_or(0) as usize;
        let start = at + CHUNK_HEADER;
        let end = start.saturating_add(stored).min(b.len());
        let payload = crc32c::crc32c(&b[start..end]);
        put_crc(b, at + PAYLOAD_CRC_AT, payload);
        let header = crc32c::crc32c(&b[at..at + HEADER_CRC_AT]);
        put_crc(b, at + HEADER_CRC_AT, header);
        at = end;
    }
}

fuzz_target!(|data: &[u8]| {
    let Some((&mode, rest)) = data.split_first() else {
        return;
    };
    let mut file = rest.to_vec();
    if mode & 1 == 1 {
        fix_crcs(&mut file);
    }
    let Ok(mut r) = Reader::open_named(file.as_slice(), "fuzz.swsc") else {
        return;
    };
    let mut batch = Vec::new();
    let mut events = 0usize;
    while let Ok(true) = r.next_batch(&mut batch) {
        events += batch.len();
        batch.clear();
    }
    assert_eq!(r.stats().events, events as u64);
    for w in r.warnings() {
        let _ = w.to_string();
    }
});
