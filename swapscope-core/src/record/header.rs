//! The file header (fixed part + TLVs + CRC32C) and the chunk header.

use std::io::Read;

use super::codec::{Dec, decode_device, encode_device, put_str, put_u16, put_u32, put_u64};
use super::{
    CHUNK_HEADER_LEN, CHUNK_MAGIC, DEFAULT_SWP_TYPE_SHIFT, FORMAT_MAJOR, FORMAT_MINOR, FormatError,
    MAGIC, MAX_HEADER_LEN, ProbeStatus,
};
use crate::event::SwapDevice;

/// Header TLV types. Scalars appear at most once (the last one wins); `DEVICE`, `PROBE` and
/// `EXTRA` repeat, one TLV per item, in order. Readers skip types they do not know.
pub mod tlv {
    /// UTF-8: swapscope version (and git sha when known).
    pub const TOOL_VERSION: u16 = 1;
    /// u16: `swapscope_common::SCHEMA_VERSION` of the BPF event layouts.
    pub const SCHEMA_VERSION: u16 = 2;
    /// UTF-8: `uname -r`.
    pub const KERNEL_RELEASE: u16 = 3;
    /// UTF-8: `/proc/sys/kernel/random/boot_id`.
    pub const BOOT_ID: u16 = 4;
    /// i64: `CLOCK_REALTIME - CLOCK_BOOTTIME` in ns at the start of recording.
    pub const REALTIME_MINUS_BOOTTIME_NS: u16 = 5;
    /// u8: `SWP_TYPE_SHIFT` for splitting raw swap entries. Required.
    pub const SWP_TYPE_SHIFT: u16 = 6;
    /// u32: page size in bytes.
    pub const PAGE_SIZE: u16 = 7;
    /// u32: possible CPUs.
    pub const NR_CPUS: u16 = 8;
    /// UTF-8: where the events came from (`live`, `simulate:<workload>`, ...).
    pub const SOURCE: u16 = 9;
    /// UTF-8: the command line that made the recording.
    pub const COMMAND_LINE: u16 = 10;
    /// One swap device, in the Devices record's device layout.
    pub const DEVICE: u16 = 11;
    /// One probe: name str, kind str, attached u8 (0/1), detail str.
    pub const PROBE: u16 = 12;
    /// One extra key/value: key str, value str.
    pub const EXTRA: u16 = 13;
}

/// Bytes before the TLVs: magic, major, minor, header_len, flags.
const FIXED_LEN: usize = 8 + 2 + 2 + 4 + 4;
/// Smallest possible header: fixed part and CRC, no TLVs.
const MIN_HEADER_LEN: usize = FIXED_LEN + 4;

/// What the file header records about the machine and the session.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RecordingHeader {
    pub tool_version: String,
    /// `swapscope_common::SCHEMA_VERSION` of the recorder.
    pub schema_version: u16,
    pub kernel_release: String,
    pub boot_id: String,
    /// Add to a boot-time timestamp to get wall-clock ns since the epoch.
    pub realtime_minus_boottime_ns: i64,
    /// `SWP_TYPE_SHIFT` of the recording machine (58 on x86-64), 1..=63.
    pub swp_type_shift: u8,
    pub page_size: u32,
    pub nr_cpus: u32,
    /// `live`, `simulate:<workload>`, ...
    pub source: String,
    pub command_line: String,
    pub devices: Vec<SwapDevice>,
    pub probe_plan: Vec<ProbeStatus>,
    /// Anything else worth keeping (mTHP settings, kernel config bits, ...), in order.
    pub extra: Vec<(String, String)>,
}

impl Default for RecordingHeader {
    /// This build's versions and x86-64 geometry; everything machine-specific empty.
    fn default() -> Self {
        RecordingHeader {
            tool_version: env!("CARGO_PKG_VERSION").to_owned(),
            schema_version: swapscope_common::SCHEMA_VERSION,
            kernel_release: String::new(),
            boot_id: String::new(),
            realtime_minus_boottime_ns: 0,
            swp_type_shift: DEFAULT_SWP_TYPE_SHIFT,
            page_size: 4096,
            nr_cpus: 1,
            source: String::new(),
            command_line: String::new(),
            devices: Vec::new(),
            probe_plan: Vec::new(),
            extra: Vec::new(),
        }
    }
}

/// Format facts read from a file's fixed header.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct FileInfo {
    pub minor: u16,
    pub flags: u32,
    pub header_len: u32,
}

fn valid_shift(shift: u8) -> bool {
    (1..=63).contains(&shift)
}

/// Encodes the whole file header, CRC included.
pub(crate) fn encode_header(h: &RecordingHeader) -> Result<Vec<u8>, FormatError> {
    if !valid_shift(h.swp_type_shift) {
        return Err(FormatError::InvalidEvent {
            reason: format!(
                "header swp_type_shift {} is outside 1..=63",
                h.swp_type_shift
            ),
        });
    }
    let mut out = Vec::with_capacity(256);
    out.extend_from_slice(&MAGIC);
    put_u16(&mut out, FORMAT_MAJOR);
    put_u16(&mut out, FORMAT_MINOR);
    put_u32(&mut out, 0); // header_len, patched below
    put_u32(&mut out, 0); // flags

    let RecordingHeader {
        tool_version,
        schema_version,
        kernel_release,
        boot_id,
        realtime_minus_boottime_ns,
        swp_type_shift,
        page_size,
        nr_cpus,
        source,
        command_line,
        devices,
        probe_plan,
        extra,
    } = h;
    put_tlv(&mut out, tlv::TOOL_VERSION, tool_version.as_bytes())?;
    put_tlv(&mut out, tlv::SCHEMA_VERSION, &schema_version.to_le_bytes())?;
    put_tlv(&mut out, tlv::KERNEL_RELEASE, kernel_release.as_bytes())?;
    put_tlv(&mut out, tlv::BOOT_ID, boot_id.as_bytes())?;
    put_tlv(
        &mut out,
        tlv::REALTIME_MINUS_BOOTTIME_NS,
        &realtime_minus_boottime_ns.to_le_bytes(),
    )?;
    put_tlv(&mut out, tlv::SWP_TYPE_SHIFT, &[*swp_type_shift])?;
    put_tlv(&mut out, tlv::PAGE_SIZE, &page_size.to_le_bytes())?;
    put_tlv(&mut out, tlv::NR_CPUS, &nr_cpus.to_le_bytes())?;
    put_tlv(&mut out, tlv::SOURCE, source.as_bytes())?;
    put_tlv(&mut out, tlv::COMMAND_LINE, command_line.as_bytes())?;
    let mut item = Vec::new();
    for dev in devices {
        item.clear();
        encode_device(dev, &mut item)?;
        put_tlv(&mut out, tlv::DEVICE, &item)?;
    }
    for ProbeStatus {
        name,
        kind,
        attached,
        detail,
    } in probe_plan
    {
        item.clear();
        put_str(&mut item, name)?;
        put_str(&mut item, kind)?;
        item.push(u8::from(*attached));
        put_str(&mut item, detail)?;
        put_tlv(&mut out, tlv::PROBE, &item)?;
    }
    for (key, value) in extra {
        item.clear();
        put_str(&mut item, key)?;
        put_str(&mut item, value)?;
        put_tlv(&mut out, tlv::EXTRA, &item)?;
    }

    let total = out.len() + 4;
    let header_len = u32::try_from(total)
        .ok()
        .filter(|&n| n <= MAX_HEADER_LEN)
        .ok_or_else(|| FormatError::InvalidEvent {
            reason: format!("file header of {total} bytes is larger than {MAX_HEADER_LEN}"),
        })?;
    out[12..16].copy_from_slice(&header_len.to_le_bytes());
    let crc = crc32c::crc32c(&out);
    put_u32(&mut out, crc);
    Ok(out)
}

/// Appends a TLV whose value is under 4 GiB (the header limit keeps it far below).
fn put_tlv(out: &mut Vec<u8>, ty: u16, value: &[u8]) -> Result<(), FormatError> {
    let len = u32::try_from(value.len()).map_err(|_| FormatError::InvalidEvent {
        reason: format!("header field {ty} is too long"),
    })?;
    put_u16(out, ty);
    put_u32(out, len);
    out.extend_from_slice(value);
    Ok(())
}

/// Reads until `buf` is full or end of file; returns the bytes read.
pub(crate) fn read_full<R: Read>(r: &mut R, buf: &mut [u8]) -> std::io::Result<usize> {
    let mut n = 0;
    while n < buf.len() {
        match r.read(&mut buf[n..]) {
            Ok(0) => break,
            Ok(k) => n += k,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(n)
}

/// Reads and checks the file header; `name` is used in error messages.
pub(crate) fn read_header<R: Read>(
    r: &mut R,
    name: &str,
) -> Result<(RecordingHeader, FileInfo), FormatError> {
    let mut fixed = [0u8; FIXED_LEN];
    let got = read_full(r, &mut fixed)?;
    let truncated = |got: usize, need: usize| FormatError::TruncatedHeader {
        name: name.to_owned(),
        got: got as u64,
        need: need as u64,
    };
    let magic_len = got.min(MAGIC.len());
    if fixed[..magic_len] != MAGIC[..magic_len] {
        return Err(FormatError::NotARecording {
            name: name.to_owned(),
            found: escape(&fixed[..magic_len]),
        });
    }
    if got < FIXED_LEN {
        return Err(truncated(got, MIN_HEADER_LEN));
    }
    let major = u16::from_le_bytes([fixed[8], fixed[9]]);
    let minor = u16::from_le_bytes([fixed[10], fixed[11]]);
    let header_len = u32::from_le_bytes([fixed[12], fixed[13], fixed[14], fixed[15]]);
    let flags = u32::from_le_bytes([fixed[16], fixed[17], fixed[18], fixed[19]]);
    if major != FORMAT_MAJOR {
        return Err(FormatError::UnsupportedVersion {
            name: name.to_owned(),
            major,
            minor,
            supported: FORMAT_MAJOR,
        });
    }
    if header_len > MAX_HEADER_LEN || (header_len as usize) < MIN_HEADER_LEN {
        return Err(FormatError::BadHeader {
            name: name.to_owned(),
            reason: format!("header length {header_len} is impossible"),
        });
    }
    let total = header_len as usize;
    let mut buf = vec![0u8; total];
    buf[..FIXED_LEN].copy_from_slice(&fixed);
    let rest = read_full(r, &mut buf[FIXED_LEN..])?;
    if FIXED_LEN + rest < total {
        return Err(truncated(FIXED_LEN + rest, total));
    }
    let (body, crc) = buf.split_at(total - 4);
    let stored = u32::from_le_bytes([crc[0], crc[1], crc[2], crc[3]]);
    let computed = crc32c::crc32c(body);
    if stored != computed {
        return Err(FormatError::HeaderCrc {
            name: name.to_owned(),
            stored,
            computed,
        });
    }
    let header = parse_tlvs(&body[FIXED_LEN..]).map_err(|e| FormatError::BadHeader {
        name: name.to_owned(),
        reason: e.to_string(),
    })?;
    Ok((
        header,
        FileInfo {
            minor,
            flags,
            header_len,
        },
    ))
}

/// What is wrong with a file header's fields (the reason of [`FormatError::BadHeader`]).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
enum TlvError {
    #[error("a header field is cut short")]
    CutShort,
    #[error("header field {0} overruns the header")]
    Overrun(u16),
    #[error("header field {ty} ({what}) is malformed")]
    Malformed { ty: u16, what: &'static str },
    #[error("swp_type_shift {0} is outside 1..=63")]
    Shift(u8),
    #[error("the swp_type_shift field is missing")]
    NoShift,
}

fn parse_tlvs(mut tlvs: &[u8]) -> Result<RecordingHeader, TlvError> {
    let mut h = RecordingHeader {
        tool_version: String::new(),
        schema_version: 0,
        nr_cpus: 0,
        page_size: 0,
        ..RecordingHeader::default()
    };
    let mut have_shift = false;
    while !tlvs.is_empty() {
        let (ty, value, rest) = split_tlv(tlvs)?;
        tlvs = rest;
        let field = |what: &'static str| TlvError::Malformed { ty, what };
        let text = || {
            std::str::from_utf8(value)
                .map(str::to_owned)
                .map_err(|_| field("text"))
        };
        let fixed = |n: usize| {
            if value.len() == n {
                Ok(value)
            } else {
                Err(field("length"))
            }
        };
        match ty {
            tlv::TOOL_VERSION => h.tool_version = text()?,
            tlv::SCHEMA_VERSION => {
                let v = fixed(2)?;
                h.schema_version = u16::from_le_bytes([v[0], v[1]]);
            }
            tlv::KERNEL_RELEASE => h.kernel_release = text()?,
            tlv::BOOT_ID => h.boot_id = text()?,
            tlv::REALTIME_MINUS_BOOTTIME_NS => {
                h.realtime_minus_boottime_ns =
                    Dec::new(fixed(8)?).i64().map_err(|_| field("i64"))?;
            }
            tlv::SWP_TYPE_SHIFT => {
                h.swp_type_shift = fixed(1)?[0];
                if !valid_shift(h.swp_type_shift) {
                    return Err(TlvError::Shift(h.swp_type_shift));
                }
                have_shift = true;
            }
            tlv::PAGE_SIZE => h.page_size = Dec::new(fixed(4)?).u32().map_err(|_| field("u32"))?,
            tlv::NR_CPUS => h.nr_cpus = Dec::new(fixed(4)?).u32().map_err(|_| field("u32"))?,
            tlv::SOURCE => h.source = text()?,
            tlv::COMMAND_LINE => h.command_line = text()?,
            tlv::DEVICE => h
                .devices
                .push(whole(value, decode_device).map_err(|_| field("device"))?),
            tlv::PROBE => h
                .probe_plan
                .push(whole(value, decode_probe).map_err(|_| field("probe"))?),
            tlv::EXTRA => {
                let kv = whole(value, |d| Ok((d.str()?, d.str()?)));
                h.extra.push(kv.map_err(|_| field("extra"))?);
            }
            _ => {} // added by a newer minor version: skipped
        }
    }
    if !have_shift {
        return Err(TlvError::NoShift);
    }
    Ok(h)
}

/// Splits the first TLV off `tlvs`: (type, value, rest).
fn split_tlv(tlvs: &[u8]) -> Result<(u16, &[u8], &[u8]), TlvError> {
    let mut d = Dec::new(tlvs);
    let ty = d.u16().map_err(|_| TlvError::CutShort)?;
    let len = d.u32().map_err(|_| TlvError::CutShort)?;
    let value = d.bytes(len as usize).map_err(|_| TlvError::Overrun(ty))?;
    Ok((ty, value, &tlvs[6 + value.len()..]))
}

/// Decodes `value` with `f`, which must consume all of it.
fn whole<T>(
    value: &[u8],
    f: impl FnOnce(&mut Dec<'_>) -> Result<T, &'static str>,
) -> Result<T, &'static str> {
    let mut d = Dec::new(value);
    let t = f(&mut d)?;
    d.finish()?;
    Ok(t)
}

fn decode_probe(d: &mut Dec<'_>) -> Result<ProbeStatus, &'static str> {
    Ok(ProbeStatus {
        name: d.str()?,
        kind: d.str()?,
        attached: d.u8()? != 0,
        detail: d.str()?,
    })
}

/// Printable form of bytes that should have been the magic.
fn escape(b: &[u8]) -> String {
    format!("\"{}\"", b.escape_ascii())
}

/// The fixed 52-byte header in front of every chunk's payload.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct ChunkHeader {
    pub kind: u8,
    pub codec: u8,
    pub seq: u64,
    pub first_ts: u64,
    pub last_ts: u64,
    pub n_records: u32,
    pub stored_len: u32,
    pub raw_len: u32,
    pub payload_crc: u32,
}

impl ChunkHeader {
    pub(crate) fn encode(&self) -> [u8; CHUNK_HEADER_LEN] {
        let mut out = Vec::with_capacity(CHUNK_HEADER_LEN);
        out.extend_from_slice(&CHUNK_MAGIC);
        out.push(self.kind);
        out.push(self.codec);
        put_u16(&mut out, 0);
        put_u64(&mut out, self.seq);
        put_u64(&mut out, self.first_ts);
        put_u64(&mut out, self.last_ts);
        put_u32(&mut out, self.n_records);
        put_u32(&mut out, self.stored_len);
        put_u32(&mut out, self.raw_len);
        put_u32(&mut out, self.payload_crc);
        let crc = crc32c::crc32c(&out);
        put_u32(&mut out, crc);
        let mut b = [0u8; CHUNK_HEADER_LEN];
        b.copy_from_slice(&out);
        b
    }

    /// Checks magic and header CRC; the reason is for a [`super::Warning::Corrupt`].
    pub(crate) fn decode(b: &[u8; CHUNK_HEADER_LEN]) -> Result<Self, ChunkHeaderError> {
        if b.iter().all(|&x| x == 0) {
            return Err(ChunkHeaderError::Zeroes);
        }
        if b[..4] != CHUNK_MAGIC {
            return Err(ChunkHeaderError::Magic(escape(&b[..4])));
        }
        let (fields, crc) = b.split_at(CHUNK_HEADER_LEN - 4);
        let stored = u32::from_le_bytes([crc[0], crc[1], crc[2], crc[3]]);
        if crc32c::crc32c(fields) != stored {
            return Err(ChunkHeaderError::Crc);
        }
        whole(&fields[4..], |d| {
            let kind = d.u8()?;
            let codec = d.u8()?;
            let _reserved = d.u16()?;
            Ok(ChunkHeader {
                kind,
                codec,
                seq: d.u64()?,
                first_ts: d.u64()?,
                last_ts: d.u64()?,
                n_records: d.u32()?,
                stored_len: d.u32()?,
                raw_len: d.u32()?,
                payload_crc: d.u32()?,
            })
        })
        .map_err(ChunkHeaderError::Fields)
    }
}

/// Why a chunk header cannot be read (the reason of a [`super::Warning::Corrupt`]).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub(crate) enum ChunkHeaderError {
    #[error("zero-filled bytes where a chunk should start (unwritten tail after a crash?)")]
    Zeroes,
    #[error("bad chunk magic {0}")]
    Magic(String),
    #[error("chunk header CRC mismatch")]
    Crc,
    #[error("{0}")]
    Fields(&'static str),
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event::DeviceKind;

    pub(crate) fn sample_header() -> RecordingHeader {
        RecordingHeader {
            kernel_release: "6.18.0-test".to_owned(),
            boot_id: "0d3c6f0e-6c1b-4a49-9d1e-3f7e2a3b4c5d".to_owned(),
            realtime_minus_boottime_ns: 1_750_000_000_000_000_000,
            nr_cpus: 8,
            source: "simulate:thp-fragment".to_owned(),
            command_line: "swapscope simulate --workload thp-fragment -o x.swsc".to_owned(),
            devices: vec![SwapDevice {
                index: 0,
                path: "/dev/zram0".to_owned(),
                kind: DeviceKind::Zram,
                size_kb: 8 << 20,
                used_kb: 1234,
                prio: 100,
            }],
            probe_plan: vec![
                ProbeStatus {
                    name: "mm_vmscan_write_folio".to_owned(),
                    kind: "tp_btf".to_owned(),
                    attached: true,
                    detail: String::new(),
                },
                ProbeStatus {
                    name: "folio_alloc_swap".to_owned(),
                    kind: "fexit".to_owned(),
                    attached: false,
                    detail: "lockdown=confidentiality".to_owned(),
                },
            ],
            extra: vec![(
                "mthp/hugepages-64kB/enabled".to_owned(),
                "always".to_owned(),
            )],
            ..RecordingHeader::default()
        }
    }

    #[test]
    fn header_roundtrips() {
        let h = sample_header();
        let bytes = encode_header(&h).ok();
        let back = bytes.as_deref().map(|mut b| read_header(&mut b, "t"));
        match back {
            Some(Ok((back, info))) => {
                assert_eq!(back, h);
                assert_eq!(info.minor, FORMAT_MINOR);
                assert_eq!(Some(info.header_len as usize), bytes.map(|b| b.len()));
            }
            other => panic!("header did not roundtrip: {other:?}"),
        }
    }

    #[test]
    fn crc_is_standard_crc32c() {
        // The CRC-32C check value, as docs/format.md specifies.
        assert_eq!(crc32c::crc32c(b"123456789"), 0xe306_9283);
    }

    #[test]
    fn chunk_header_roundtrips() {
        let c = ChunkHeader {
            kind: 1,
            codec: 1,
            seq: 7,
            first_ts: 10,
            last_ts: 20,
            n_records: 3,
            stored_len: 100,
            raw_len: 200,
            payload_crc: 0xdead_beef,
        };
        assert_eq!(ChunkHeader::decode(&c.encode()), Ok(c));
        let mut bad = c.encode();
        bad[20] ^= 1;
        assert!(ChunkHeader::decode(&bad).is_err());
    }
}
