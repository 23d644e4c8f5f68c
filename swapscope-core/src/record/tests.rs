//! Container tests: write, cut, corrupt and read back.

use super::codec::RecordKind;
use proptest::prelude::*;
use swapscope_common::{EventHeader, WriteoutEvent, folio_flags};

use super::codec::{self, put_u16, put_u32, writeout_bytes};
use super::header::ChunkHeader;
use super::*;
use crate::event::{Alloc, AllocResult, ClusterMove, Event, Free, Grant, Marker, SwapIn, Writeout};

type Read3 = (Vec<Event>, Vec<Warning>, ReadStats);

fn read_all(bytes: &[u8]) -> Result<Read3, FormatError> {
    let mut r = Reader::open_named(bytes, "t.swsc")?;
    let mut events = Vec::new();
    while let Some(ev) = r.next_event()? {
        events.push(ev);
    }
    Ok((events, r.warnings().to_vec(), *r.stats()))
}

fn header() -> RecordingHeader {
    RecordingHeader {
        kernel_release: "6.18.0-test".to_owned(),
        source: "simulate:test".to_owned(),
        nr_cpus: 4,
        probe_plan: vec![ProbeStatus {
            name: "mm_vmscan_write_folio".to_owned(),
            kind: "tp_btf".to_owned(),
            attached: true,
            detail: String::new(),
        }],
        ..RecordingHeader::default()
    }
}

fn write(events: &[Event], options: WriterOptions) -> Result<Vec<u8>, FormatError> {
    let mut w = Writer::create(Vec::new(), &header(), options)?;
    for ev in events {
        w.push(ev)?;
    }
    Ok(w.finish()?.0)
}

/// xorshift64*: deterministic test data without a rand dependency.
struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

/// Writeouts as reclaim produces them: a few CPUs each filling its own cluster per order,
/// order 0 and order 4 (64 KiB mTHP) mixed, kswapd plus a few direct reclaimers, scattered pfns.
fn realistic_writeouts(n: usize, seed: u64) -> Vec<WriteoutEvent> {
    let mut rng = Rng(seed | 1);
    let mut next_cluster = 1u64;
    let mut cursor = [[0u64; 2]; 4]; // [cpu][order 0 | order 4]
    let mut ts = 5_000_000_000u64;
    let mut out = Vec::with_capacity(n);
    for _ in 0..n {
        ts += 1_000 + rng.below(20_000);
        let cpu = rng.below(4) as usize;
        let big = rng.below(10) < 3;
        let (order, slots) = if big { (4u8, 16u64) } else { (0u8, 1u64) };
        let c = &mut cursor[cpu][usize::from(big)];
        if *c % 512 == 0 {
            *c = next_cluster * 512;
            next_cluster += 1;
        }
        let offset = *c;
        *c += slots;
        let pid = if rng.below(10) < 8 {
            97
        } else {
            4000 + rng.below(4) as u32
        };
        let mut flags = folio_flags::SWAPBACKED
            | folio_flags::SWAPCACHE
            | folio_flags::DIRTY
            | folio_flags::ANON;
        if big {
            flags |= folio_flags::HEAD;
        }
        out.push(WriteoutEvent {
            header: EventHeader {
                kind: 1,
                size: 48,
                cpu: cpu as u32,
                ts_ns: ts,
            },
            swap_val: offset,
            pid_tgid: (u64::from(pid) << 32) | u64::from(pid),
            pfn: rng.below(4 << 20) & !(slots - 1),
            flags,
            order,
            _pad: [0; 3],
        });
    }
    out
}

fn mixed_events(n: usize) -> Vec<Event> {
    realistic_writeouts(n, 7)
        .iter()
        .enumerate()
        .map(|(i, w)| {
            if i % 97 == 0 {
                Event::Marker(Marker {
                    ts_ns: w.header.ts_ns,
                    label: format!("iteration {i}"),
                })
            } else {
                Event::Writeout(Writeout::from_bpf(w, DEFAULT_SWP_TYPE_SHIFT))
            }
        })
        .collect()
}

/// (start, end, events) of every chunk, END included, by walking the file's own framing.
fn chunk_spans(bytes: &[u8]) -> Vec<Span> {
    let header_len = u32::from_le_bytes([bytes[12], bytes[13], bytes[14], bytes[15]]) as usize;
    let mut spans = Vec::new();
    let mut at = header_len;
    while at < bytes.len() {
        let mut hb = [0u8; CHUNK_HEADER_LEN];
        hb.copy_from_slice(&bytes[at..at + CHUNK_HEADER_LEN]);
        let h = ChunkHeader::decode(&hb).expect("own file has valid chunk headers");
        let end = at + CHUNK_HEADER_LEN + h.stored_len as usize;
        spans.push((at, end, h.n_records as usize));
        at = end;
    }
    spans
}

/// A chunk built by hand: records `(kind, body)`, uncompressed.
fn hand_chunk(kind: u8, seq: u64, records: &[(u16, &[u8])]) -> Vec<u8> {
    let mut payload = Vec::new();
    for (k, body) in records {
        put_u16(&mut payload, *k);
        put_u16(&mut payload, 0);
        put_u32(&mut payload, body.len() as u32);
        payload.extend_from_slice(body);
    }
    let h = ChunkHeader {
        kind,
        codec: chunk_codec::NONE,
        seq,
        first_ts: 0,
        last_ts: 0,
        n_records: records.len() as u32,
        stored_len: payload.len() as u32,
        raw_len: payload.len() as u32,
        payload_crc: crc32c::crc32c(&payload),
    };
    let mut out = h.encode().to_vec();
    out.extend_from_slice(&payload);
    out
}

fn header_only() -> Vec<u8> {
    let w = Writer::create(Vec::new(), &header(), WriterOptions::default());
    w.map(|w| w.get_ref().clone()).expect("header encodes")
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 64, ..ProptestConfig::default() })]

    #[test]
    fn every_variant_roundtrips_through_a_file(
        events in prop::collection::vec(codec::tests::arb_event(), 0..60),
        chunk_bytes in 1usize..2048,
        zstd in any::<bool>(),
        delta_records in any::<bool>(),
    ) {
        let compression = if zstd { Compression::Zstd { level: 1 } } else { Compression::None };
        let bytes = write(&events, WriterOptions { chunk_bytes, compression, delta_records })
            .map_err(|e| TestCaseError::fail(e.to_string()))?;
        let (back, warnings, stats) = read_all(&bytes).map_err(|e| TestCaseError::fail(e.to_string()))?;
        prop_assert_eq!(&back, &events);
        prop_assert!(warnings.is_empty(), "{:?}", warnings);
        let end = stats.end.unwrap_or_default();
        prop_assert_eq!(end.events, events.len() as u64);
        prop_assert_eq!(end.chunks, stats.event_chunks);
        prop_assert_eq!(end.first_ts, events.iter().map(Event::ts).min().unwrap_or(0));
        prop_assert_eq!(end.last_ts, events.iter().map(Event::ts).max().unwrap_or(0));
    }
}

/// An edit to a file's bytes after its header, as damage or an attacker would make it.
#[derive(Clone, Debug)]
enum Edit {
    /// XOR a byte (at a position taken modulo the length).
    Flip(usize, u8),
    /// Cut the file there.
    Truncate(usize),
    /// Insert bytes there.
    Insert(usize, Vec<u8>),
    /// Copy chunk `i` (modulo the chunk count) to after chunk `j`.
    Duplicate(usize, usize),
    /// Remove chunk `i`.
    Drop(usize),
    /// Swap chunks `i` and `j`.
    Swap(usize, usize),
}

fn arb_edit() -> impl Strategy<Value = Edit> {
    prop_oneof![
        (any::<usize>(), 1u8..).prop_map(|(i, b)| Edit::Flip(i, b)),
        any::<usize>().prop_map(Edit::Truncate),
        (any::<usize>(), prop::collection::vec(any::<u8>(), 1..64))
            .prop_map(|(i, b)| Edit::Insert(i, b)),
        (any::<usize>(), any::<usize>()).prop_map(|(i, j)| Edit::Duplicate(i, j)),
        any::<usize>().prop_map(Edit::Drop),
        (any::<usize>(), any::<usize>()).prop_map(|(i, j)| Edit::Swap(i, j)),
    ]
}

/// `bytes` with `edit` applied after the first `header_len` bytes (chunk edits walk the
/// framing, so they apply only while it is intact).
fn apply(bytes: &mut Vec<u8>, header_len: usize, edit: &Edit) {
    let body = bytes.len() - header_len;
    let at = |i: usize| header_len + if body == 0 { 0 } else { i % (body + 1) };
    let chunks = || -> Vec<(usize, usize)> {
        let mut v = Vec::new();
        let mut a = header_len;
        while a + CHUNK_HEADER_LEN <= bytes.len() {
            let mut hb = [0u8; CHUNK_HEADER_LEN];
            hb.copy_from_slice(&bytes[a..a + CHUNK_HEADER_LEN]);
            let Ok(h) = ChunkHeader::decode(&hb) else {
                break;
            };
            let e = a + CHUNK_HEADER_LEN + h.stored_len as usize;
            if e > bytes.len() {
                break;
            }
            v.push((a, e));
            a = e;
        }
        v
    };
    match edit {
        Edit::Flip(i, b) if body > 0 => {
            let p = header_len + i % body;
            bytes[p] ^= b;
        }
        Edit::Flip(..) => {}
        Edit::Truncate(i) => bytes.truncate(at(*i)),
        Edit::Insert(i, b) => {
            let p = at(*i);
            bytes.splice(p..p, b.iter().copied());
        }
        Edit::Duplicate(i, j) => {
            let c = chunks();
            if !c.is_empty() {
                let (a, e) = c[i % c.len()];
                let copy = bytes[a..e].to_vec();
                let p = c[j % c.len()].1;
                bytes.splice(p..p, copy);
            }
        }
        Edit::Drop(i) => {
            let c = chunks();
            if !c.is_empty() {
                let (a, e) = c[i % c.len()];
                bytes.drain(a..e);
            }
        }
        Edit::Swap(i, j) => {
            let c = chunks();
            let (i, j) = if c.is_empty() {
                (0, 0)
            } else {
                (i % c.len(), j % c.len())
            };
            if i != j {
                let (lo, hi) = (c[i.min(j)], c[i.max(j)]);
                let mut out = bytes[..lo.0].to_vec();
                out.extend_from_slice(&bytes[hi.0..hi.1]);
                out.extend_from_slice(&bytes[lo.1..hi.0]);
                out.extend_from_slice(&bytes[lo.0..lo.1]);
                out.extend_from_slice(&bytes[hi.1..]);
                *bytes = out;
            }
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    /// Whatever is done to a file after its header, reading it never panics, never invents or
    /// doubles an event, and never loses one silently.
    #[test]
    fn a_damaged_file_reads_a_subset_of_its_events_and_says_so_when_short(
        events in prop::collection::vec(codec::tests::arb_event(), 1..50),
        chunk_bytes in 64usize..1024,
        zstd in any::<bool>(),
        edits in prop::collection::vec(arb_edit(), 1..4),
    ) {
        let compression = if zstd { Compression::Zstd { level: 1 } } else { Compression::None };
        let options = WriterOptions { chunk_bytes, compression, delta_records: true };
        let mut bytes = write(&events, options).map_err(|e| TestCaseError::fail(e.to_string()))?;
        let header_len = header_only().len();
        for e in &edits {
            apply(&mut bytes, header_len, e);
        }
        let (back, warnings, stats) = read_all(&bytes).map_err(|e| TestCaseError::fail(e.to_string()))?;
        let mut left = events.clone();
        for ev in &back {
            let i = left.iter().position(|e| e == ev);
            prop_assert!(i.is_some(), "read an event the file never had, or twice: {:?}", ev);
            if let Some(i) = i {
                left.swap_remove(i);
            }
        }
        prop_assert!(
            left.is_empty() || !warnings.is_empty(),
            "{} events lost without a warning", left.len()
        );
        prop_assert_eq!(stats.events, back.len() as u64);
    }

    /// Arbitrary bytes, with or without a valid header in front: an error or a reading, never
    /// a panic, and never more events than records could fit.
    #[test]
    fn arbitrary_bytes_never_panic(
        tail in prop::collection::vec(any::<u8>(), 0..4096),
        with_header in any::<bool>(),
    ) {
        let mut bytes = if with_header { header_only() } else { Vec::new() };
        bytes.extend_from_slice(&tail);
        if let Ok((back, _, _)) = read_all(&bytes) {
            prop_assert!(back.len() <= tail.len() / RECORD_HEADER_LEN);
        }
    }
}

#[test]
fn header_and_raw_writeouts_roundtrip() -> Result<(), FormatError> {
    let raw = realistic_writeouts(500, 3);
    let mut w = Writer::create(Vec::new(), &header(), WriterOptions::default())?;
    for ev in &raw {
        w.push_raw_writeout(&writeout_bytes(ev))?;
    }
    let (bytes, stats) = w.finish()?;
    assert_eq!(stats.events, 500);
    assert_eq!(stats.bytes_written, bytes.len() as u64);
    let r = Reader::open(bytes.as_slice())?;
    assert_eq!(r.header(), &header());
    assert_eq!(r.format_version(), (FORMAT_MAJOR, FORMAT_MINOR));
    let back: Result<Vec<Event>, FormatError> = r.collect();
    let expected: Vec<Event> = raw
        .iter()
        .map(|e| Event::Writeout(Writeout::from_bpf(e, DEFAULT_SWP_TYPE_SHIFT)))
        .collect();
    assert_eq!(back?, expected);
    Ok(())
}

/// Cuts a file at `cut` and checks that exactly the chunks wholly before the cut come back.
fn check_cut(bytes: &[u8], spans: &[(usize, usize, usize)], events: &[Event], cut: usize) {
    let header_len = spans.first().map_or(bytes.len(), |s| s.0);
    let result = read_all(&bytes[..cut]);
    if cut < header_len {
        match result {
            Err(FormatError::TruncatedHeader { got, .. }) => assert_eq!(got, cut as u64),
            other => panic!("cut {cut} inside the header: {other:?}"),
        }
        return;
    }
    let (back, warnings, stats) = match result {
        Ok(r) => r,
        Err(e) => panic!("cut {cut}: {e}"),
    };
    let whole: Vec<_> = spans.iter().filter(|s| s.1 <= cut).collect();
    let n: usize = whole.iter().map(|s| s.2).sum();
    assert_eq!(back.len(), n, "cut {cut}");
    assert_eq!(back[..], events[..n], "cut {cut}");
    if cut == bytes.len() {
        assert!(warnings.is_empty(), "{warnings:?}");
        return;
    }
    let last_end = whole.last().map_or(header_len, |s| s.1);
    assert_eq!(
        warnings,
        vec![Warning::Truncated {
            offset: last_end as u64,
            complete_chunks: whole.len() as u64,
            partial_bytes: (cut - last_end) as u64,
        }],
        "cut {cut}"
    );
    assert_eq!(stats.end, None);
}

#[test]
fn a_file_cut_anywhere_reads_back_every_whole_chunk() {
    let events = mixed_events(2000);
    let opts = WriterOptions {
        chunk_bytes: 1024,
        ..WriterOptions::default()
    };
    let bytes = write(&events, opts).expect("writes");
    let spans = chunk_spans(&bytes);
    assert!(spans.len() > 20, "{} chunks", spans.len());
    let header_len = spans[0].0;
    // Every offset of the header and of the first chunk, every offset from 4 bytes before to
    // 4 bytes after each chunk header (52 bytes), and a stride through the rest.
    let mut cuts: Vec<usize> = (0..=spans[0].1).collect();
    for &(start, _, _) in &spans[1..] {
        cuts.extend(start.saturating_sub(4)..(start + CHUNK_HEADER_LEN + 4).min(bytes.len()));
    }
    cuts.extend((header_len..bytes.len()).step_by(53));
    cuts.push(bytes.len());
    cuts.sort_unstable();
    cuts.dedup();
    for cut in cuts {
        check_cut(&bytes, &spans, &events, cut);
    }
}

#[test]
fn a_small_file_cut_at_every_byte_reads_back_every_whole_chunk() {
    let events = mixed_events(300);
    let opts = WriterOptions {
        chunk_bytes: 1024,
        ..WriterOptions::default()
    };
    let bytes = write(&events, opts).expect("writes");
    let spans = chunk_spans(&bytes);
    for cut in 0..=bytes.len() {
        check_cut(&bytes, &spans, &events, cut);
    }
}

#[test]
fn a_damaged_chunk_stops_reading_there() {
    let events = mixed_events(2000);
    let opts = WriterOptions {
        chunk_bytes: 4096,
        ..WriterOptions::default()
    };
    let bytes = write(&events, opts).expect("writes");
    let spans = chunk_spans(&bytes);
    let header_len = spans[0].0;
    for at in (header_len..bytes.len()).step_by(29) {
        let mut bad = bytes.clone();
        bad[at] ^= 0x40;
        let (back, warnings, _) = read_all(&bad).expect("body damage is not an error");
        let hit = spans
            .iter()
            .position(|s| s.0 <= at && at < s.1)
            .expect("inside a chunk");
        let n: usize = spans[..hit].iter().map(|s| s.2).sum();
        assert_eq!(back[..], events[..n], "flip at {at}");
        match &warnings[..] {
            [Warning::Corrupt { offset, .. }] => assert_eq!(*offset, spans[hit].0 as u64),
            other => panic!("flip at {at}: {other:?}"),
        }
    }
    // Header damage is an error, never a panic.
    for at in 0..header_len {
        let mut bad = bytes.clone();
        bad[at] ^= 0x01;
        assert!(read_all(&bad).is_err(), "flip at {at}");
    }
}

#[test]
fn an_impossible_length_is_corruption() {
    let mut bytes = header_only();
    let h = ChunkHeader {
        kind: chunk_kind::EVENTS,
        codec: chunk_codec::ZSTD,
        stored_len: u32::MAX,
        raw_len: 100,
        ..ChunkHeader::default()
    };
    bytes.extend_from_slice(&h.encode());
    bytes.extend_from_slice(&[0xaa; 100]);
    let (back, warnings, _) = read_all(&bytes).expect("reads");
    assert!(back.is_empty());
    assert!(
        matches!(&warnings[..], [Warning::Corrupt { reason, .. }] if reason.contains("impossible length")),
        "{warnings:?}"
    );
}

#[test]
fn a_chunk_of_millions_of_tiny_records_is_refused() {
    // 3.7 M empty markers fit a 6 KB zstd chunk (refused for its raw size, 67 MB); 1 M fit under
    // the raw cap, in 2 KB, and decoded each would be an `Event` of ~48 bytes.
    let mut marker = Vec::new();
    codec::encode_event(
        &Event::Marker(Marker {
            ts_ns: 0,
            label: String::new(),
        }),
        58,
        &mut marker,
    )
    .expect("encodes");
    let n = 1_000_000usize;
    let mut raw = Vec::new();
    for _ in 0..n {
        put_u16(&mut raw, RecordKind::Marker.code());
        put_u16(&mut raw, 0);
        put_u32(&mut raw, marker.len() as u32);
        raw.extend_from_slice(&marker);
    }
    let stored = zstd::bulk::compress(&raw, 19).expect("compresses");
    assert!(stored.len() < 64 << 10, "{} bytes", stored.len());
    let h = ChunkHeader {
        kind: chunk_kind::EVENTS,
        codec: chunk_codec::ZSTD,
        n_records: n as u32,
        stored_len: stored.len() as u32,
        raw_len: raw.len() as u32,
        payload_crc: crc32c::crc32c(&stored),
        ..ChunkHeader::default()
    };
    let mut bytes = header_only();
    bytes.extend_from_slice(&h.encode());
    bytes.extend_from_slice(&stored);
    let (back, warnings, _) = read_all(&bytes).expect("reads");
    assert!(back.is_empty());
    assert!(
        matches!(&warnings[..], [Warning::Corrupt { reason, .. }] if reason.contains("1000000 records")),
        "{warnings:?}"
    );
}

#[test]
fn a_zero_filled_tail_is_corruption_after_the_good_chunks() {
    let events = mixed_events(100);
    let mut w = Writer::create(Vec::new(), &header(), WriterOptions::default()).expect("create");
    for ev in &events {
        w.push(ev).expect("push");
    }
    w.flush_chunk().expect("flush");
    let mut bytes = w.get_ref().clone();
    bytes.extend_from_slice(&[0; 4096]);
    let (back, warnings, _) = read_all(&bytes).expect("reads");
    assert_eq!(back, events);
    assert!(
        matches!(&warnings[..], [Warning::Corrupt { .. }]),
        "{warnings:?}"
    );
}

#[test]
fn foreign_files_and_bad_headers_are_clear_errors() {
    let elf = b"\x7fELF\x02\x01\x01\0\0\0\0\0\0\0\0\0\x03\0\x3e\0\x01\0\0\0";
    let e = read_all(elf)
        .err()
        .map(|e| e.to_string())
        .unwrap_or_default();
    assert_eq!(
        e,
        "t.swsc is not a swapscope recording (bad magic \"\\x7fELF\\x02\\x01\\x01\\x00\"); \
         record one with `swapscope record -o FILE`"
    );
    assert!(matches!(
        read_all(b"hi"),
        Err(FormatError::NotARecording { .. })
    ));
    assert!(matches!(
        read_all(b""),
        Err(FormatError::TruncatedHeader { got: 0, .. })
    ));
    assert!(matches!(
        read_all(b"SWSC"),
        Err(FormatError::TruncatedHeader { got: 4, .. })
    ));

    let good = header_only();
    let mut crc = good.clone();
    let last = crc.len() - 1;
    crc[last] ^= 1;
    assert!(matches!(read_all(&crc), Err(FormatError::HeaderCrc { .. })));
    let mut v2 = good.clone();
    v2[8] = 2;
    let e = read_all(&v2).err();
    assert!(
        matches!(e, Some(FormatError::UnsupportedVersion { major: 2, .. })),
        "{e:?}"
    );
    for e in [e, read_all(&crc).err(), read_all(b"").err()] {
        let line = e.map(|e| e.to_string()).unwrap_or_default();
        assert!(
            line.starts_with("t.swsc ") && !line.contains('\n'),
            "{line}"
        );
    }
}

/// Inserts a TLV before the header CRC and fixes header_len and CRC.
fn with_tlv(file: &[u8], ty: u16, value: &[u8]) -> Vec<u8> {
    let header_len = u32::from_le_bytes([file[12], file[13], file[14], file[15]]) as usize;
    let mut h = file[..header_len - 4].to_vec();
    put_u16(&mut h, ty);
    put_u32(&mut h, value.len() as u32);
    h.extend_from_slice(value);
    let new_len = (h.len() + 4) as u32;
    h[12..16].copy_from_slice(&new_len.to_le_bytes());
    let crc = crc32c::crc32c(&h);
    put_u32(&mut h, crc);
    h.extend_from_slice(&file[header_len..]);
    h
}

#[test]
fn unknown_tlvs_are_skipped() -> Result<(), FormatError> {
    let events = mixed_events(50);
    let bytes = write(&events, WriterOptions::default())?;
    let bytes = with_tlv(&bytes, 0x7fff, b"a field from the future");
    let bytes = with_tlv(&bytes, tlv::EXTRA + 100, &[]);
    let r = Reader::open(bytes.as_slice())?;
    assert_eq!(r.header(), &header());
    let back: Result<Vec<Event>, _> = r.collect();
    assert_eq!(back?, events);
    // A known TLV with a bad length is not skipped.
    let bad = with_tlv(&bytes, tlv::PAGE_SIZE, &[1, 2]);
    assert!(matches!(read_all(&bad), Err(FormatError::BadHeader { .. })));
    Ok(())
}

#[test]
fn unknown_record_kinds_and_chunk_kinds_are_skipped_and_counted() -> Result<(), FormatError> {
    let m = |label: &str| {
        Event::Marker(Marker {
            ts_ns: 5,
            label: label.to_owned(),
        })
    };
    let mut body_a = Vec::new();
    codec::encode_event(&m("a"), 58, &mut body_a)?;
    let mut body_b = Vec::new();
    codec::encode_event(&m("b"), 58, &mut body_b)?;
    let mut bytes = header_only();
    bytes.extend(hand_chunk(
        chunk_kind::EVENTS,
        0,
        &[
            (RecordKind::Marker.code(), &body_a),
            (1000, b"new kind"),
            (RecordKind::Marker.code(), &body_b),
        ],
    ));
    bytes.extend(hand_chunk(77, 1, &[(1, b"whatever")]));
    bytes.extend(hand_chunk(chunk_kind::EVENTS, 2, &[(4242, &[])]));
    let (back, warnings, stats) = read_all(&bytes)?;
    assert_eq!(back, vec![m("a"), m("b")]);
    assert_eq!(stats.skipped_records, 2);
    assert_eq!(stats.skipped_chunks, 1);
    assert_eq!(stats.chunks, 3);
    assert_eq!(
        warnings,
        vec![Warning::Truncated {
            offset: bytes.len() as u64,
            complete_chunks: 3,
            partial_bytes: 0
        }]
    );
    Ok(())
}

#[test]
fn a_known_kind_with_a_bad_body_is_corruption() -> Result<(), FormatError> {
    let mut bytes = header_only();
    bytes.extend(hand_chunk(
        chunk_kind::EVENTS,
        0,
        &[(RecordKind::Marker.code(), b"\x01")],
    ));
    let (back, warnings, _) = read_all(&bytes)?;
    assert!(back.is_empty());
    assert!(
        matches!(&warnings[..], [Warning::Corrupt { reason, .. }] if reason.contains("marker")),
        "{warnings:?}"
    );
    Ok(())
}

#[test]
fn chunks_the_recorder_dropped_are_named_as_dropped() -> Result<(), FormatError> {
    let events = mixed_events(30);
    let mut w = Writer::create(Vec::new(), &header(), WriterOptions::default())?;
    for (i, ev) in events.iter().enumerate() {
        w.push(ev)?;
        if i % 10 == 9 {
            if i == 19 {
                assert_eq!(w.discard_chunk(), 10)
            } else {
                w.flush_chunk()?
            }
        }
    }
    let (bytes, stats) = w.finish()?;
    assert_eq!(
        (stats.chunks, stats.discarded_chunks, stats.discarded_events),
        (2, 1, 10)
    );
    let (back, warnings, read) = read_all(&bytes)?;
    assert_eq!(back[..10], events[..10]);
    assert_eq!(back[10..], events[20..]);
    assert_eq!(
        warnings,
        vec![Warning::Missing {
            count: 1,
            first: 1,
            last: 1,
            dropped_by_recorder: 1
        }]
    );
    assert!(
        warnings[0]
            .to_string()
            .contains("the recorder dropped them")
    );
    assert_eq!(read.missing_chunks, 1);
    assert_eq!(read.end.map(|e| e.discarded_events), Some(10));
    Ok(())
}

/// A chunk's span in a file, as `chunk_spans` gives it.
type Span = (usize, usize, usize);

/// A file of 600 events in small chunks, and its chunk spans (END last).
fn small_chunks() -> Result<(Vec<u8>, Vec<Span>), FormatError> {
    let bytes = write(
        &mixed_events(600),
        WriterOptions {
            chunk_bytes: 2048,
            ..Default::default()
        },
    )?;
    let spans = chunk_spans(&bytes);
    assert!(spans.len() > 6, "{} chunks", spans.len());
    Ok((bytes, spans))
}

/// `bytes` with its chunks in the order `order` (indexes into `spans`).
fn rearranged(bytes: &[u8], spans: &[(usize, usize, usize)], order: &[usize]) -> Vec<u8> {
    let mut out = bytes[..spans[0].0].to_vec();
    for &i in order {
        out.extend_from_slice(&bytes[spans[i].0..spans[i].1]);
    }
    out
}

#[test]
fn a_chunk_cut_out_is_missing_and_the_end_totals_disagree() -> Result<(), FormatError> {
    let (bytes, spans) = small_chunks()?;
    let order: Vec<usize> = (0..spans.len()).filter(|&i| i != 3).collect();
    let (back, warnings, read) = read_all(&rearranged(&bytes, &spans, &order))?;
    assert_eq!(read.missing_chunks, 1);
    let events: usize = spans[..spans.len() - 1].iter().map(|s| s.2).sum();
    assert_eq!(back.len(), events - spans[3].2);
    assert!(
        matches!(
            &warnings[..],
            [
                Warning::Missing {
                    count: 1,
                    first: 3,
                    last: 3,
                    dropped_by_recorder: 0
                },
                Warning::EndMismatch { .. }
            ]
        ),
        "{warnings:?}"
    );
    assert!(warnings[0].to_string().contains("lost from the file"));
    Ok(())
}

#[test]
fn a_duplicated_chunk_is_named_and_skipped() -> Result<(), FormatError> {
    let (bytes, spans) = small_chunks()?;
    let (want, _, _) = read_all(&bytes)?;
    let mut order: Vec<usize> = (0..spans.len()).collect();
    order.insert(3, 2);
    let doubled = rearranged(&bytes, &spans, &order);
    let (back, warnings, read) = read_all(&doubled)?;
    assert_eq!(back, want, "the copy's events are not read twice");
    assert_eq!(
        warnings,
        vec![Warning::Duplicate {
            offset: spans[3].0 as u64,
            seq: 2
        }]
    );
    assert_eq!((read.duplicate_chunks, read.missing_chunks), (1, 0));
    Ok(())
}

#[test]
fn swapped_chunks_are_named_as_reordered_not_missing() -> Result<(), FormatError> {
    let (bytes, spans) = small_chunks()?;
    let mut order: Vec<usize> = (0..spans.len()).collect();
    order.swap(2, 3);
    let swapped = rearranged(&bytes, &spans, &order);
    let (back, warnings, read) = read_all(&swapped)?;
    let (want, _, _) = read_all(&bytes)?;
    assert_eq!(back.len(), want.len());
    assert_eq!(
        warnings,
        vec![Warning::Reordered {
            offset: (spans[2].0 + (spans[3].1 - spans[3].0)) as u64,
            seq: 2,
            after: 3
        }]
    );
    assert_eq!(
        (
            read.reordered_chunks,
            read.missing_chunks,
            read.duplicate_chunks
        ),
        (1, 0, 0)
    );
    Ok(())
}

#[test]
fn a_chunk_removed_with_the_numbers_rewritten_is_caught_by_the_end_totals()
-> Result<(), FormatError> {
    let (bytes, spans) = small_chunks()?;
    // Remove chunk 3 and renumber every later chunk, with valid header CRCs: only the END
    // chunk's totals can tell.
    let mut forged = bytes[..spans[0].0].to_vec();
    for (i, &(a, b, _)) in spans.iter().enumerate() {
        if i == 3 {
            continue;
        }
        let mut hb = [0u8; CHUNK_HEADER_LEN];
        hb.copy_from_slice(&bytes[a..a + CHUNK_HEADER_LEN]);
        let mut h = ChunkHeader::decode(&hb).expect("own chunk header");
        if i > 3 {
            h.seq -= 1;
        }
        forged.extend_from_slice(&h.encode());
        forged.extend_from_slice(&bytes[a + CHUNK_HEADER_LEN..b]);
    }
    let (_, warnings, read) = read_all(&forged)?;
    assert_eq!(read.missing_chunks, 0);
    let events: usize = spans[..spans.len() - 1].iter().map(|s| s.2).sum();
    let read_events = (events - spans[3].2) as u64;
    assert_eq!(
        warnings,
        vec![Warning::EndMismatch {
            end_events: events as u64,
            end_chunks: (spans.len() - 1) as u64,
            read_events,
            read_chunks: (spans.len() - 2) as u64,
        }]
    );
    assert!(warnings[0].to_string().contains("removed or altered"));
    Ok(())
}

#[test]
fn trailing_bytes_after_end_are_reported() -> Result<(), FormatError> {
    let mut bytes = write(&mixed_events(10), WriterOptions::default())?;
    let len = bytes.len() as u64;
    bytes.extend_from_slice(b"junk");
    let (back, warnings, _) = read_all(&bytes)?;
    assert_eq!(back.len(), 10);
    assert_eq!(warnings, vec![Warning::TrailingData { offset: len }]);
    Ok(())
}

#[test]
fn the_writer_holds_at_most_one_chunk() -> Result<(), FormatError> {
    let opts = WriterOptions {
        chunk_bytes: 1000,
        ..WriterOptions::default()
    };
    let mut w = Writer::create(Vec::new(), &header(), opts)?;
    for ev in mixed_events(2000) {
        w.push(&ev)?;
        assert!(
            w.buffered_bytes() < 1000 + 100,
            "{} bytes buffered",
            w.buffered_bytes()
        );
    }
    let (_, stats) = w.finish()?;
    assert!(stats.chunks >= stats.raw_bytes / 1100, "{stats:?}");
    Ok(())
}

#[test]
fn a_failed_write_closes_the_writer() -> Result<(), FormatError> {
    struct Full(usize);
    impl std::io::Write for Full {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            if self.0 < buf.len() {
                return Err(std::io::Error::other("disk full"));
            }
            self.0 -= buf.len();
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }
    let mut w = Writer::create(
        Full(header_only().len() + 10),
        &header(),
        WriterOptions::default(),
    )?;
    for ev in mixed_events(20) {
        w.push(&ev)?;
    }
    assert!(matches!(w.flush_chunk(), Err(FormatError::Io(_))));
    assert!(matches!(
        w.push(&mixed_events(1)[0]),
        Err(FormatError::WriterFailed)
    ));
    assert!(matches!(w.finish(), Err(FormatError::WriterFailed)));
    Ok(())
}

/// Bytes per writeout on disk for realistic reclaim traffic, 1 MiB chunks.
fn bytes_per_writeout(n: usize, compression: Compression) -> f64 {
    let opts = WriterOptions {
        compression,
        ..WriterOptions::default()
    };
    let mut w = Writer::create(Vec::new(), &header(), opts).expect("create");
    for ev in realistic_writeouts(n, 11) {
        w.push_raw_writeout(&writeout_bytes(&ev)).expect("push");
    }
    let (bytes, _) = w.finish().expect("finish");
    (bytes.len() - header_only().len()) as f64 / n as f64
}

#[test]
fn writeouts_compress_well() {
    let per_event = bytes_per_writeout(20_000, WriterOptions::default().compression);
    assert!(per_event < 16.0, "{per_event:.2} bytes per writeout");
}

/// `cargo test -p swapscope --lib -- --ignored --nocapture measure` prints the figures.
#[test]
#[ignore = "measurement, not a check"]
fn measure_bytes_per_writeout() {
    for (name, c) in [
        ("none", Compression::None),
        ("zstd 1", Compression::Zstd { level: 1 }),
        ("zstd 3 (default)", Compression::Zstd { level: 3 }),
        ("zstd 9", Compression::Zstd { level: 9 }),
    ] {
        println!(
            "bytes per writeout, 100k events, {name}: {:.2}",
            bytes_per_writeout(100_000, c)
        );
    }
}

#[test]
fn refused_events_leave_no_trace() -> Result<(), FormatError> {
    let events = mixed_events(20);
    let mut w = Writer::create(Vec::new(), &header(), WriterOptions::default())?;
    for (i, ev) in events.iter().enumerate() {
        w.push(ev)?;
        if i == 5 {
            let long = Event::Marker(Marker {
                ts_ns: 1,
                label: "x".repeat(70_000),
            });
            assert!(matches!(
                w.push(&long),
                Err(FormatError::InvalidEvent { .. })
            ));
            assert!(w.push_raw_writeout(&[0; 47]).is_err());
        }
    }
    let (bytes, stats) = w.finish()?;
    assert_eq!(stats.events, 20);
    let (back, warnings, _) = read_all(&bytes)?;
    assert_eq!(back, events);
    assert!(warnings.is_empty());
    Ok(())
}

#[test]
fn batches_read_the_same_events_as_one_at_a_time() -> Result<(), FormatError> {
    let events = mixed_events(5000);
    let options = WriterOptions {
        chunk_bytes: 4096,
        ..WriterOptions::default()
    };
    let bytes = write(&events, options)?;
    // Cut mid-file: both ways stop at the same chunk with the same warning.
    let cut = bytes.get(..bytes.len() * 2 / 3).unwrap_or(&bytes);
    for input in [&bytes[..], cut] {
        let (one, warnings, stats) = read_all(input)?;
        let mut r = Reader::open_named(input, "t.swsc")?;
        let mut batched = Vec::new();
        let mut calls = 0;
        while r.next_batch(&mut batched)? {
            calls += 1;
        }
        assert_eq!(batched, one);
        assert_eq!(r.warnings(), &warnings[..]);
        assert_eq!(*r.stats(), stats);
        assert!(calls > 1);
    }
    Ok(())
}

proptest! {
    /// The alloc/free fast path decodes exactly what the general decoder does, and declines
    /// (leaving the general decoder to report it) whatever it does not.
    #[test]
    fn alloc_free_fast_path_matches_the_general_decoder(
        ts in any::<u64>(), cpu in any::<u32>(), order in any::<u8>(), id in any::<u64>(),
        result in 0u8..3, ty in any::<u8>(), off in any::<u64>(), nr in any::<u32>(),
        cut in 0usize..40, junk in any::<u8>(), latency in proptest::option::of(any::<u32>()),
    ) {
        use crate::event::{Alloc, AllocResult, Free};
        let alloc = Event::Alloc(Alloc {
            ts_ns: ts,
            cpu,
            order,
            id,
            result: match result {
                0 => AllocResult::Unknown,
                1 => AllocResult::Success { swap_type: ty, offset: off },
                _ => AllocResult::Failure,
            },
            latency_ns: latency,
            inferred: false,
        });
        let free = Event::Free(Free { ts_ns: ts, cpu, swap_type: ty, offset: off, nr });
        for ev in [alloc, free] {
            let mut body = Vec::new();
            let kind = codec::encode_event(&ev, 0, &mut body)?;
            prop_assert_eq!(codec::decode_alloc_free(kind.code(), &body), Some(ev.clone()));
            // Damaged bodies: shorter, longer, or with another result tag.
            let mut variants = vec![body.get(..cut.min(body.len())).unwrap_or(&[]).to_vec()];
            let mut longer = body.clone();
            longer.push(junk);
            variants.push(longer);
            let mut tagged = body.clone();
            if let Some(t) = tagged.get_mut(21) {
                *t = junk;
            }
            variants.push(tagged);
            for v in variants {
                if let Some(fast) = codec::decode_alloc_free(kind.code(), &v) {
                    prop_assert_eq!(Some(fast), codec::decode_record(kind.code(), &v, 0).ok().flatten());
                }
            }
        }
    }
}

/// Bytes per event of a recording rewritten with other chunk sizes and zstd levels (an
/// experiment for docs/performance.md): `SWAPSCOPE_RECOMPRESS=FILE cargo test --release -p
/// swapscope --lib recompress -- --ignored --nocapture`.
#[test]
#[ignore = "an experiment on a recording named by SWAPSCOPE_RECOMPRESS"]
fn recompress() {
    let Some(path) = std::env::var_os("SWAPSCOPE_RECOMPRESS") else {
        return;
    };
    let bytes = std::fs::read(&path).unwrap_or_default();
    let mut r = match Reader::open(std::io::Cursor::new(bytes)) {
        Ok(r) => r,
        Err(e) => panic!("{e}"),
    };
    let header = r.header().clone();
    let mut events = Vec::new();
    while let Ok(true) = r.next_batch(&mut events) {}
    for (chunk, level, delta_records) in [
        (1usize << 20, 3, false),
        (1 << 20, 9, false),
        (1 << 20, 19, false),
        (4 << 20, 3, false),
        (1 << 20, 1, true),
        (1 << 20, 3, true),
        (1 << 20, 6, true),
        (1 << 20, 9, true),
        (4 << 20, 3, true),
    ] {
        {
            let t = std::time::Instant::now();
            let mut w = match Writer::create(
                Vec::new(),
                &header,
                WriterOptions {
                    chunk_bytes: chunk,
                    compression: Compression::Zstd { level },
                    delta_records,
                },
            ) {
                Ok(w) => w,
                Err(e) => panic!("{e}"),
            };
            for ev in &events {
                let _ = w.push(ev);
            }
            let (out, _) = match w.finish() {
                Ok(x) => x,
                Err(e) => panic!("{e}"),
            };
            let kernel = events.iter().filter(|e| e.is_kernel_event()).count().max(1);
            println!(
                "chunk {:>2} MiB level {:>2} delta {delta_records:5}: {:.3} bytes/event, {:.0} ns/event to write",
                chunk >> 20,
                level,
                out.len() as f64 / kernel as f64,
                t.elapsed().as_nanos() as f64 / events.len().max(1) as f64
            );
        }
    }
}

/// Seeds for the fuzz targets (fuzz/, docs/fuzzing.md), from the real recordings under
/// tests/data: into `$SWAPSCOPE_FUZZ_SEEDS/read_file`, each recording's header with its first
/// events re-written small (several chunk sizes and codecs) and its first 4 KiB as they are,
/// behind the target's mode byte (odd: CRCs recomputed before reading, even: as they are);
/// into `$SWAPSCOPE_FUZZ_SEEDS/decode_record`, one record of each kind each has (kind, shift,
/// body). `cargo xtask fuzz` runs this first.
#[test]
#[ignore = "writes the fuzz seed corpus where SWAPSCOPE_FUZZ_SEEDS says"]
fn fuzz_seeds() {
    let Some(out) = std::env::var_os("SWAPSCOPE_FUZZ_SEEDS") else {
        return;
    };
    let out = std::path::PathBuf::from(out);
    let (files, records) = (out.join("read_file"), out.join("decode_record"));
    for d in [&files, &records] {
        std::fs::create_dir_all(d).unwrap_or_else(|e| panic!("{}: {e}", d.display()));
    }
    let data = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../swapscope/tests/data");
    let mut names: Vec<_> = std::fs::read_dir(&data)
        .map(|d| d.flatten().map(|e| e.path()).collect())
        .unwrap_or_default();
    names.retain(|p| p.extension().is_some_and(|e| e == "swsc"));
    names.sort();
    assert!(!names.is_empty(), "no recordings under {}", data.display());
    let write = |path: std::path::PathBuf, bytes: &[u8]| {
        std::fs::write(&path, bytes).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    };
    for path in &names {
        let stem = path
            .file_stem()
            .map(|s| s.to_string_lossy().into_owned())
            .unwrap_or_default();
        let bytes = std::fs::read(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        let mut head = vec![0u8];
        head.extend_from_slice(&bytes[..bytes.len().min(4096)]);
        write(files.join(format!("{stem}-head4k")), &head);
        let mut r = Reader::open(bytes.as_slice()).unwrap_or_else(|e| panic!("{e}"));
        let header = r.header().clone();
        let shift = header.swp_type_shift;
        let mut events = Vec::new();
        while events.len() < 400 && matches!(r.next_batch(&mut events), Ok(true)) {}
        let mut seen = std::collections::BTreeSet::new();
        for ev in &events {
            let mut body = Vec::new();
            let Ok(kind) = codec::encode_event(ev, shift, &mut body) else {
                continue;
            };
            if seen.insert(kind) {
                let mut rec = kind.code().to_le_bytes().to_vec();
                rec.push(shift);
                rec.extend_from_slice(&body);
                write(records.join(format!("{stem}-kind{}", kind.code())), &rec);
            }
            // And its delta kind, coded as the first of a chunk (as `decode_record` reads one).
            let mut body = Vec::new();
            if let Some((kind, _)) =
                codec::encode_folio_delta(ev, &codec::FolioDeltas::default(), &mut body)
                && seen.insert(kind)
            {
                let mut rec = kind.code().to_le_bytes().to_vec();
                rec.push(shift);
                rec.extend_from_slice(&body);
                write(records.join(format!("{stem}-kind{}", kind.code())), &rec);
            }
        }
        for (n, chunk_bytes, compression) in [
            (40, 256, Compression::None),
            (40, 512, Compression::Zstd { level: 1 }),
            (400, 4096, Compression::Zstd { level: 1 }),
        ] {
            let mut w = Writer::create(
                Vec::new(),
                &header,
                WriterOptions {
                    chunk_bytes,
                    compression,
                    delta_records: true,
                },
            )
            .unwrap_or_else(|e| panic!("{e}"));
            for ev in events.iter().take(n) {
                w.push(ev).unwrap_or_else(|e| panic!("{e}"));
            }
            let (file, _) = w.finish().unwrap_or_else(|e| panic!("{e}"));
            for mode in [0u8, 1] {
                let mut seed = vec![mode];
                seed.extend_from_slice(&file);
                write(
                    files.join(format!("{stem}-{n}-{chunk_bytes}-{mode}")),
                    &seed,
                );
            }
        }
    }
}

/// Every recording under swapscope/tests/data, rewritten by this writer (default options: delta
/// kinds, 1 MiB chunks, zstd level 1), decodes to the same events; the full-tier ones (those with
/// requests) shrink by at least a quarter against format 1.4's plain records.
#[test]
fn recordings_rewritten_with_delta_kinds_decode_the_same_and_stay_small() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../swapscope/tests/data");
    let mut files: Vec<_> = std::fs::read_dir(&dir)
        .into_iter()
        .flatten()
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|e| e == "swsc"))
        .collect();
    files.sort();
    assert!(
        files.len() >= 5,
        "{} recordings in {}",
        files.len(),
        dir.display()
    );
    let mut full_tier = 0;
    let mut sizes = Vec::new();
    for path in &files {
        let bytes = std::fs::read(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        let name = path.display().to_string();
        let (header, version) = match Reader::open_named(bytes.as_slice(), &name) {
            Ok(r) => (r.header().clone(), r.format_version()),
            Err(e) => panic!("{name}: {e}"),
        };
        let (events, _, _) = read_all(&bytes).unwrap_or_else(|e| panic!("{name}: {e}"));
        let mut w = Writer::create(Vec::new(), &header, WriterOptions::default())
            .unwrap_or_else(|e| panic!("{name}: {e}"));
        for ev in &events {
            w.push(ev).unwrap_or_else(|e| panic!("{name}: {e}"));
        }
        let rewritten = w.finish().unwrap_or_else(|e| panic!("{name}: {e}")).0;
        let (back, warnings, _) = read_all(&rewritten).unwrap_or_else(|e| panic!("{name}: {e}"));
        assert!(warnings.is_empty(), "{name}: {warnings:?}");
        assert!(
            back == events,
            "{name}: the rewritten recording decodes differently"
        );
        let per_event = rewritten.len() as f64 / events.len().max(1) as f64;
        println!(
            "{name}: {} events, {} -> {} bytes, {:.2} -> {per_event:.2} bytes/event",
            events.len(),
            bytes.len(),
            rewritten.len(),
            bytes.len() as f64 / events.len().max(1) as f64
        );
        // Written as format 1.4 or older (a recording kept since is already in delta kinds).
        if version < (1, 5)
            && events.iter().any(|e| matches!(e, Event::Alloc(_)))
            && events.len() >= 10_000
        {
            full_tier += 1;
            sizes.push((name, bytes.len(), rewritten.len(), per_event));
        }
    }
    assert!(full_tier >= 3, "{full_tier} full-tier recordings");
    for (name, before, after, per_event) in sizes {
        // Format 1.4 stored them as plain records (writeout-delta for writeouts).
        assert!(
            after * 4 <= before * 3,
            "{name}: {before} -> {after} bytes ({per_event:.2} per event)"
        );
    }
}

/// One folio's life on one CPU as the full tier sees it (grant, alloc, writeout, cluster move,
/// free, swap-in), with fields that mostly follow the CPU's previous folio and sometimes jump:
/// the delta kinds' "same as the context" branches and their "differs" branches both.
fn arb_folio_chain() -> impl Strategy<Value = Vec<Event>> {
    (
        0u32..3,
        0u64..4,
        prop::collection::vec((any::<u8>(), 0u64..2048, 0u8..10, any::<u32>()), 1..12),
        any::<u64>(),
    )
        .prop_map(|(cpu, ty, steps, seed)| {
            let mut out = Vec::new();
            let (mut ts, mut off, mut id, mut pid) = (1_000 + seed % 1_000, 64u64, seed, 100u32);
            for (bits, jump, order, noise) in steps {
                let jumpy = |b: u8| bits & (1 << b) != 0;
                ts += 1 + u64::from(noise % 50_000);
                if jumpy(0) {
                    off = off.wrapping_add(jump);
                }
                if jumpy(1) {
                    pid = pid.wrapping_add(noise % 7);
                }
                id = if jumpy(2) {
                    id ^ u64::from(noise)
                } else {
                    id.wrapping_sub(1)
                };
                let order = if jumpy(3) { order } else { 0 };
                let ty = if jumpy(4) { (ty + 1) as u8 } else { ty as u8 };
                let req_cpu = if jumpy(5) { cpu + 1 } else { cpu };
                let batch = if jumpy(6) {
                    vec![off + 1, off + 3, off]
                } else {
                    vec![]
                };
                out.push(Event::Grant(Grant {
                    ts_ns: ts,
                    cpu,
                    req_cpu,
                    pid,
                    tgid: if jumpy(7) { pid + 1 } else { pid },
                    id,
                    swap_type: ty,
                    offset: off,
                    order,
                    nr: if batch.is_empty() { 1 } else { 3 },
                    batch,
                    start_ns: if noise % 5 == 0 {
                        0
                    } else {
                        ts - u64::from(noise % 900)
                    },
                }));
                ts += u64::from(noise % 9_000);
                out.push(Event::Alloc(Alloc {
                    ts_ns: ts,
                    cpu,
                    order,
                    id,
                    result: match noise % 7 {
                        0 => AllocResult::Failure,
                        1 => AllocResult::Unknown,
                        _ => AllocResult::Success {
                            swap_type: ty,
                            offset: off,
                        },
                    },
                    latency_ns: (noise % 3 != 0).then_some(noise % 20_000),
                    inferred: noise % 11 == 0 && noise % 3 == 0,
                }));
                ts += 40_000;
                out.push(Event::Writeout(Writeout {
                    ts_ns: ts,
                    cpu,
                    pid,
                    tgid: pid,
                    swap_type: ty,
                    offset: off,
                    order,
                    pfn: (noise % 4 != 0).then_some(u64::from(noise) << 3),
                    flags: noise % 16,
                }));
                out.push(Event::Cluster(ClusterMove {
                    ts_ns: ts + 1,
                    cpu,
                    swap_type: ty,
                    cluster: (off / 512) as u32,
                    list: bits % 6,
                    old_list: 255,
                    order,
                    count: (noise % 512) as u16,
                }));
                let nr = 1u32 << order;
                if jumpy(1) {
                    out.push(Event::Free(Free {
                        ts_ns: ts + 2,
                        cpu: (cpu + 1) % 3,
                        swap_type: ty,
                        offset: off,
                        nr,
                    }));
                } else {
                    out.push(Event::SwapIn(SwapIn {
                        ts_ns: ts + 3,
                        cpu,
                        pid,
                        tgid: pid,
                        id: id ^ 0x40,
                        swap_type: ty,
                        offset: off,
                        order: (noise % 6 != 0).then_some(order),
                        flags: if jumpy(2) { 4 } else { 0 },
                    }));
                }
                off += u64::from(nr);
            }
            out
        })
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 128, ..ProptestConfig::default() })]

    /// Several CPUs' folio chains interleaved, through the writer's delta kinds with chunks cut
    /// anywhere, read back as the same events; every delta record also decodes alone as the
    /// first of a chunk against a fresh context, to the event its plain kind would give.
    #[test]
    fn folio_chains_roundtrip_through_the_delta_kinds(
        chains in prop::collection::vec(arb_folio_chain(), 1..4),
        chunk_bytes in 1usize..4096,
    ) {
        let mut events: Vec<Event> = chains.into_iter().flatten().collect();
        events.sort_by_key(Event::ts);
        let bytes = write(&events, WriterOptions {
            chunk_bytes,
            compression: Compression::Zstd { level: 1 },
            delta_records: true,
        })
        .map_err(|e| TestCaseError::fail(e.to_string()))?;
        let (back, warnings, _) = read_all(&bytes).map_err(|e| TestCaseError::fail(e.to_string()))?;
        prop_assert!(warnings.is_empty(), "{:?}", warnings);
        prop_assert_eq!(&back, &events);
        for ev in &events {
            let mut body = Vec::new();
            let Some((kind, _)) =
                codec::encode_folio_delta(ev, &codec::FolioDeltas::default(), &mut body)
            else {
                continue;
            };
            let alone = codec::decode_record(kind.code(), &body, 58)
                .map_err(|e| TestCaseError::fail(e.to_string()))?;
            prop_assert_eq!(alone.as_ref(), Some(ev));
            // A byte more or a byte less is a bad record, never another event.
            let mut longer = body.clone();
            longer.push(0);
            prop_assert!(codec::decode_record(kind.code(), &longer, 58).is_err());
            if let Some(shorter) = body.get(..body.len() - 1) {
                let r = codec::decode_record(kind.code(), shorter, 58);
                prop_assert!(r.is_err(), "{:?} decodes from a shorter body", kind);
            }
        }
    }
}
