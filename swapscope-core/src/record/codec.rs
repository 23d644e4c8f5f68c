//! Record bodies: how each [`Event`] variant is laid out inside an EVENTS chunk.
//!
//! Writeout bodies are the 48 raw bytes of a [`WriteoutEvent`] exactly as the BPF program put them
//! in the ring buffer (the live recorder copies them in without re-serialising). Every other kind
//! uses a small hand-written little-endian encoding; docs/format.md documents each layout byte by
//! byte. A layout never changes once released: a new layout is a new record kind.

use swapscope_common::{EventHeader, GRANT_BATCH_MAX, PFN_UNKNOWN, WriteoutEvent};

use super::FormatError;
use crate::event::{
    Alloc, AllocResult, ClusterMove, CounterSample, DeviceKind, DeviceList, Event, Free, Grant,
    Lost, Marker, Split, SwapDevice, SwapIn, SwapOff, SwapOn, Ts, Writeout,
};

/// Record kinds (the `kind` field of a record, as its code): the one table of record kinds.
/// Append new kinds with the next code; never renumber or reuse one. These are the recording's
/// numbering, apart from the BPF ring buffer's (`swapscope_common::kind`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[repr(u16)]
pub enum RecordKind {
    Writeout = 1,
    Counters = 2,
    Devices = 3,
    Lost = 4,
    SwapOn = 5,
    SwapOff = 6,
    Alloc = 7,
    Free = 8,
    Marker = 9,
    Split = 10,
    /// An alloc with the kernel's answer time (format 1.1): the alloc body, then `latency u32`.
    AllocTimed = 11,
    /// A writeout coded against the chunk's previous one (format 1.2; see
    /// [`super::WriteoutDeltas`]).
    WriteoutDelta = 12,
    /// A folio read back from swap (format 1.3, full tier).
    SwapIn = 13,
    /// A cluster list move (format 1.3, full tier, 6.14+).
    Cluster = 14,
    /// Slots granted inside the allocator's lock (format 1.4, full tier).
    Grant = 15,
    /// A request the kernel did not deliver, inferred from events it did (format 1.4): the
    /// alloc body.
    AllocInferred = 16,
    /// A split inferred likewise (format 1.4): the split body.
    SplitInferred = 17,
    /// An alloc (timed, inferred or neither) coded against the chunk's previous full-tier
    /// record (format 1.5; see [`FolioDeltas`]).
    AllocDelta = 18,
    /// A free coded likewise (format 1.5).
    FreeDelta = 19,
    /// A grant coded likewise (format 1.5).
    GrantDelta = 20,
    /// A swap-in coded likewise (format 1.5).
    SwapInDelta = 21,
    /// A writeout coded likewise (format 1.5): against its CPU's previous record, usually the
    /// same folio's alloc.
    WriteoutFolio = 22,
    /// A cluster list move coded likewise (format 1.5).
    ClusterDelta = 23,
}

impl RecordKind {
    /// Every kind this version reads and writes, in code order (`ALL[i]` has code `i + 1`).
    pub const ALL: [RecordKind; 23] = [
        RecordKind::Writeout,
        RecordKind::Counters,
        RecordKind::Devices,
        RecordKind::Lost,
        RecordKind::SwapOn,
        RecordKind::SwapOff,
        RecordKind::Alloc,
        RecordKind::Free,
        RecordKind::Marker,
        RecordKind::Split,
        RecordKind::AllocTimed,
        RecordKind::WriteoutDelta,
        RecordKind::SwapIn,
        RecordKind::Cluster,
        RecordKind::Grant,
        RecordKind::AllocInferred,
        RecordKind::SplitInferred,
        RecordKind::AllocDelta,
        RecordKind::FreeDelta,
        RecordKind::GrantDelta,
        RecordKind::SwapInDelta,
        RecordKind::WriteoutFolio,
        RecordKind::ClusterDelta,
    ];

    /// The code stored in a record header.
    #[inline]
    pub const fn code(self) -> u16 {
        self as u16
    }

    /// The kind of a stored code; `None` for a kind this version does not know.
    #[inline]
    pub fn from_code(code: u16) -> Option<RecordKind> {
        Self::ALL.get(usize::from(code).checked_sub(1)?).copied()
    }

    /// The kind's name (`dump`, `export`, error messages).
    pub const fn name(self) -> &'static str {
        match self {
            RecordKind::Writeout => "writeout",
            RecordKind::Counters => "counters",
            RecordKind::Devices => "devices",
            RecordKind::Lost => "lost",
            RecordKind::SwapOn => "swapon",
            RecordKind::SwapOff => "swapoff",
            RecordKind::Alloc => "alloc",
            RecordKind::Free => "free",
            RecordKind::Marker => "marker",
            RecordKind::Split => "split",
            RecordKind::AllocTimed => "alloc-timed",
            RecordKind::WriteoutDelta => "writeout-delta",
            RecordKind::SwapIn => "swapin",
            RecordKind::Cluster => "cluster",
            RecordKind::Grant => "grant",
            RecordKind::AllocInferred => "alloc-inferred",
            RecordKind::SplitInferred => "split-inferred",
            RecordKind::AllocDelta => "alloc-delta",
            RecordKind::FreeDelta => "free-delta",
            RecordKind::GrantDelta => "grant-delta",
            RecordKind::SwapInDelta => "swapin-delta",
            RecordKind::WriteoutFolio => "writeout-folio",
            RecordKind::ClusterDelta => "cluster-delta",
        }
    }
}

/// Size of a Writeout body: `size_of::<WriteoutEvent>()`.
pub const WRITEOUT_LEN: usize = size_of::<WriteoutEvent>();

/// The record kind an event is stored as.
pub fn kind_of(ev: &Event) -> RecordKind {
    match ev {
        Event::Writeout(_) => RecordKind::Writeout,
        Event::Counters(_) => RecordKind::Counters,
        Event::Devices(_) => RecordKind::Devices,
        Event::Lost(_) => RecordKind::Lost,
        Event::SwapOn(_) => RecordKind::SwapOn,
        Event::SwapOff(_) => RecordKind::SwapOff,
        Event::Alloc(a) if a.inferred => RecordKind::AllocInferred,
        Event::Alloc(a) if a.latency_ns.is_some() => RecordKind::AllocTimed,
        Event::Alloc(_) => RecordKind::Alloc,
        Event::Free(_) => RecordKind::Free,
        Event::Marker(_) => RecordKind::Marker,
        Event::Split(s) if s.inferred => RecordKind::SplitInferred,
        Event::Split(_) => RecordKind::Split,
        Event::SwapIn(_) => RecordKind::SwapIn,
        Event::Cluster(_) => RecordKind::Cluster,
        Event::Grant(_) => RecordKind::Grant,
    }
}

/// Appends the body of `ev` to `out` and returns its record kind. Writeouts are re-assembled into
/// BPF bytes with `swp_type_shift`; a writeout that shift cannot represent is an error, so that
/// decoding always gives back the same event. On error `out` may hold a partial body.
pub fn encode_event(
    ev: &Event,
    swp_type_shift: u8,
    out: &mut Vec<u8>,
) -> Result<RecordKind, FormatError> {
    match ev {
        Event::Writeout(w) => out.extend_from_slice(&writeout_to_bpf(w, swp_type_shift)?),
        Event::Counters(CounterSample { ts_ns, values }) => {
            put_u64(out, *ts_ns);
            put_count(out, values.len(), "counter values")?;
            for (name, value) in values {
                put_str(out, name)?;
                put_u64(out, *value);
            }
        }
        Event::Devices(DeviceList { ts_ns, devices }) => {
            put_u64(out, *ts_ns);
            put_count(out, devices.len(), "devices")?;
            for dev in devices {
                encode_device(dev, out)?;
            }
        }
        Event::Lost(Lost {
            ts_ns,
            ringbuf,
            userspace,
        }) => {
            put_u64(out, *ts_ns);
            put_u64(out, *ringbuf);
            put_u64(out, *userspace);
        }
        Event::SwapOn(SwapOn {
            ts_ns,
            swap_type,
            max,
            bad,
            flags,
            prio,
        }) => {
            put_u64(out, *ts_ns);
            out.push(*swap_type);
            put_u64(out, *max);
            put_u32(out, *flags);
            put_i32(out, *prio);
            put_count(out, bad.len(), "bad slots")?;
            for slot in bad {
                put_u64(out, *slot);
            }
        }
        Event::SwapOff(SwapOff { ts_ns, swap_type }) => {
            put_u64(out, *ts_ns);
            out.push(*swap_type);
        }
        Event::Alloc(Alloc {
            ts_ns,
            cpu,
            order,
            id,
            result,
            latency_ns,
            inferred,
        }) => {
            put_u64(out, *ts_ns);
            put_u32(out, *cpu);
            out.push(*order);
            put_u64(out, *id);
            match result {
                AllocResult::Unknown => out.push(0),
                AllocResult::Success { swap_type, offset } => {
                    out.push(1);
                    out.push(*swap_type);
                    put_u64(out, *offset);
                }
                AllocResult::Failure => out.push(2),
            }
            if let Some(ns) = latency_ns.filter(|_| !inferred) {
                put_u32(out, ns);
            }
        }
        Event::Free(Free {
            ts_ns,
            cpu,
            swap_type,
            offset,
            nr,
        }) => {
            put_u64(out, *ts_ns);
            put_u32(out, *cpu);
            out.push(*swap_type);
            put_u64(out, *offset);
            put_u32(out, *nr);
        }
        Event::Marker(Marker { ts_ns, label }) => {
            put_u64(out, *ts_ns);
            put_str(out, label)?;
        }
        Event::Split(Split {
            ts_ns,
            cpu,
            pid,
            id,
            old_order,
            new_order,
            inferred: _,
        }) => {
            put_u64(out, *ts_ns);
            put_u32(out, *cpu);
            put_u32(out, *pid);
            put_u64(out, *id);
            out.push(old_order.unwrap_or(swapscope_common::ORDER_UNKNOWN));
            out.push(*new_order);
        }
        Event::SwapIn(SwapIn {
            ts_ns,
            cpu,
            pid,
            tgid,
            id,
            swap_type,
            offset,
            order,
            flags,
        }) => {
            if *order == Some(swapscope_common::ORDER_UNKNOWN) {
                return Err(FormatError::InvalidEvent {
                    reason: "swap-in order equals the ORDER_UNKNOWN sentinel".to_owned(),
                });
            }
            put_u64(out, *ts_ns);
            put_u32(out, *cpu);
            put_u32(out, *pid);
            put_u32(out, *tgid);
            put_u64(out, *id);
            out.push(*swap_type);
            put_u64(out, *offset);
            out.push(order.unwrap_or(swapscope_common::ORDER_UNKNOWN));
            put_u32(out, *flags);
        }
        Event::Cluster(ClusterMove {
            ts_ns,
            cpu,
            swap_type,
            cluster,
            list,
            old_list,
            order,
            count,
        }) => {
            put_u64(out, *ts_ns);
            put_u32(out, *cpu);
            out.push(*swap_type);
            put_u32(out, *cluster);
            out.push(*list);
            out.push(*old_list);
            out.push(*order);
            put_u16(out, *count);
        }
        Event::Grant(Grant {
            ts_ns,
            cpu,
            req_cpu,
            pid,
            tgid,
            id,
            swap_type,
            offset,
            order,
            nr,
            batch,
            start_ns,
        }) => {
            put_u64(out, *ts_ns);
            put_u32(out, *cpu);
            put_u32(out, *req_cpu);
            put_u32(out, *pid);
            put_u32(out, *tgid);
            put_u64(out, *id);
            out.push(*swap_type);
            put_u64(out, *offset);
            out.push(*order);
            put_u32(out, *nr);
            // The batch: each slot as the zigzag varint of its distance from the one before
            // (`offset` before the first).
            if batch.len() > GRANT_BATCH_MAX {
                return Err(FormatError::InvalidEvent {
                    reason: format!(
                        "a grant lists {} slots, more than {GRANT_BATCH_MAX}",
                        batch.len()
                    ),
                });
            }
            put_count(out, batch.len(), "batch slots")?;
            let mut prev = *offset;
            for &o in batch {
                put_varint(out, zigzag(o.wrapping_sub(prev) as i64));
                prev = o;
            }
            // The request's start as 1 + its distance before `ts_ns` (0: not known).
            put_varint(out, grant_start(*start_ns, *ts_ns));
        }
    }
    Ok(kind_of(ev))
}

/// Checks that `raw` is a BPF [`WriteoutEvent`] as the ring buffer delivers it, appends it to
/// `out` unchanged and returns its timestamp.
pub fn encode_raw_writeout(raw: &[u8], out: &mut Vec<u8>) -> Result<Ts, FormatError> {
    let ev = parse_writeout(raw).map_err(|reason| FormatError::InvalidEvent {
        reason: format!("raw writeout: {reason}"),
    })?;
    out.extend_from_slice(raw);
    Ok(ev.header.ts_ns)
}

/// The previous writeout of a chunk, which a `writeout-delta` record is coded against. Reset at
/// every chunk, so a chunk decodes on its own.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct WriteoutDeltas {
    ts: Ts,
    pid: u32,
    offset: u64,
}

fn put_varint(out: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        out.push((v as u8) | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

fn zigzag(v: i64) -> u64 {
    ((v << 1) ^ (v >> 63)) as u64
}

fn unzigzag(v: u64) -> i64 {
    ((v >> 1) as i64) ^ -((v & 1) as i64)
}

/// Appends a `writeout-delta` body: `ts` (zigzag varint, against the previous writeout's),
/// `cpu` (varint), `pid` (zigzag varint, against the previous), `tgid - pid` (zigzag varint),
/// `swap_type u8`, `offset` (zigzag varint, against the previous), `order u8`, `flags` (varint),
/// then `pfn` (varint, pfn + 1, 0 when unknown). Typically 10 bytes where the BPF layout takes 48.
pub fn encode_writeout_delta(w: &Writeout, prev: &mut WriteoutDeltas, out: &mut Vec<u8>) {
    put_varint(out, zigzag(w.ts_ns.wrapping_sub(prev.ts) as i64));
    put_varint(out, u64::from(w.cpu));
    put_varint(out, zigzag(i64::from(w.pid) - i64::from(prev.pid)));
    put_varint(out, zigzag(i64::from(w.tgid) - i64::from(w.pid)));
    out.push(w.swap_type);
    put_varint(out, zigzag(w.offset.wrapping_sub(prev.offset) as i64));
    out.push(w.order);
    put_varint(out, u64::from(w.flags));
    put_varint(out, w.pfn.map_or(0, |p| p.wrapping_add(1)));
    *prev = WriteoutDeltas {
        ts: w.ts_ns,
        pid: w.pid,
        offset: w.offset,
    };
}

/// Decodes a `writeout-delta` body against (and then into) `prev`.
pub fn decode_writeout_delta(
    body: &[u8],
    prev: &mut WriteoutDeltas,
) -> Result<Writeout, &'static str> {
    let mut d = Dec::new(body);
    let ts_ns = prev.ts.wrapping_add(unzigzag(d.varint()?) as u64);
    let cpu = u32::try_from(d.varint()?).map_err(|_| "cpu out of range")?;
    let pid = u32::try_from(i64::from(prev.pid) + unzigzag(d.varint()?))
        .map_err(|_| "pid out of range")?;
    let tgid =
        u32::try_from(i64::from(pid) + unzigzag(d.varint()?)).map_err(|_| "tgid out of range")?;
    let swap_type = d.u8()?;
    let offset = prev.offset.wrapping_add(unzigzag(d.varint()?) as u64);
    let order = d.u8()?;
    let flags = u32::try_from(d.varint()?).map_err(|_| "flags out of range")?;
    let pfn = match d.varint()? {
        0 => None,
        p => Some(p - 1),
    };
    d.finish()?;
    *prev = WriteoutDeltas {
        ts: ts_ns,
        pid,
        offset,
    };
    Ok(Writeout {
        ts_ns,
        cpu,
        pid,
        tgid,
        swap_type,
        offset,
        order,
        pfn,
        flags,
    })
}

/// What the delta kinds of format 1.5 (`alloc-delta`, `free-delta`, `grant-delta`,
/// `swapin-delta`) are coded against: the chunk's previous such record's timestamp, and per CPU
/// (the record's own `cpu` field, modulo [`DELTA_CPUS`]) the previous such record's folio id, the
/// slot just past the slots it named, and its task. Reset at every chunk, so a chunk decodes on
/// its own.
///
/// Per CPU because a CPU's records follow one folio at a time: a 7.x grant, then the same
/// folio's alloc (same id, same slot), then the next folio of the same task, usually the next
/// slots of the same cluster. A folio's id is its `struct folio` address shifted and XORed with a
/// per-boot key (the probe's `id_key`), so the ids of folios near each other in memory differ in
/// their low bits only: each id is stored XORed with the CPU's previous one.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct FolioDeltas {
    cpus: Vec<CpuDeltas>,
}

/// CPU contexts a chunk keeps for the delta kinds; CPU ids share one modulo this (bounding what
/// a file can make a reader allocate: 64 KiB).
pub const DELTA_CPUS: usize = 1024;

/// One CPU's context in [`FolioDeltas`].
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct CpuDeltas {
    ts: Ts,
    id: u64,
    /// The slot past the slots of the CPU's previous record.
    next: u64,
    /// The first slot of the CPU's previous record (a writeout's folio is its alloc's).
    last: u64,
    /// The request start of the CPU's previous grant, until its alloc (0: none).
    start: Ts,
    /// The page frame past the CPU's previous writeout's folio.
    pfn: u64,
    pid: u32,
    cluster: u32,
    /// The swap type, order and free size of the CPU's previous record.
    ty: u8,
    order: u8,
    nr: u32,
}

/// How one delta record moves [`FolioDeltas`] on ([`FolioDeltas::apply`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FolioStep {
    cpu: u32,
    ctx: CpuDeltas,
}

impl FolioDeltas {
    /// The context of `cpu` (all zero before its first record in the chunk).
    #[inline]
    fn of(&self, cpu: u32) -> CpuDeltas {
        self.cpus
            .get(cpu as usize % DELTA_CPUS)
            .copied()
            .unwrap_or_default()
    }

    /// Moves the state past one record.
    #[inline]
    pub fn apply(&mut self, step: FolioStep) {
        let i = step.cpu as usize % DELTA_CPUS;
        if self.cpus.len() <= i {
            self.cpus.resize(i + 1, CpuDeltas::default());
        }
        self.cpus[i] = step.ctx;
    }
}

/// Whether `ev` has a delta kind ([`encode_folio_delta`] can code it): allocs, frees, grants and
/// swap-ins whose order fits the kinds' fields.
#[inline]
pub fn folio_delta_kind(ev: &Event) -> Option<RecordKind> {
    Some(match ev {
        Event::Alloc(a) if a.order < 16 => RecordKind::AllocDelta,
        Event::Free(_) => RecordKind::FreeDelta,
        Event::Grant(g) if g.batch.len() <= GRANT_BATCH_MAX => RecordKind::GrantDelta,
        Event::SwapIn(s) if s.order != Some(swapscope_common::ORDER_UNKNOWN) => {
            RecordKind::SwapInDelta
        }
        Event::Writeout(_) => RecordKind::WriteoutFolio,
        Event::Cluster(_) => RecordKind::ClusterDelta,
        _ => return None,
    })
}

fn put_zz(out: &mut Vec<u8>, now: u64, before: u64) {
    put_varint(out, zigzag(now.wrapping_sub(before) as i64));
}

fn get_zz(d: &mut Dec<'_>, before: u64) -> Result<u64, &'static str> {
    Ok(before.wrapping_add(unzigzag(d.varint()?) as u64))
}

fn get_u32(d: &mut Dec<'_>, what: &'static str) -> Result<u32, &'static str> {
    u32::try_from(d.varint()?).map_err(|_| what)
}

fn get_u32_zz(d: &mut Dec<'_>, before: u32, what: &'static str) -> Result<u32, &'static str> {
    u32::try_from(i64::from(before) + unzigzag(d.varint()?)).map_err(|_| what)
}

/// The slot past 2^order slots from `offset` (what the CPU's next offset is coded against).
fn past(offset: u64, order: u8) -> u64 {
    offset.wrapping_add(1u64 << (order & 63))
}

/// Appends the delta body of `ev` (its kind is [`folio_delta_kind`]; `None`, and nothing
/// appended, for any other event) and says how it moves `prev` on ([`FolioDeltas::apply`]). The
/// layouts, byte by byte, are docs/format.md's kinds 18–23: every body starts with `cpu` (a
/// varint, which picks the context) and the timestamp against the context's; fields equal to the
/// context's are left out behind a flags byte (free, grant, swap-in) or coded as differences
/// from it; a folio id is XORed with the context's.
pub fn encode_folio_delta(
    ev: &Event,
    prev: &FolioDeltas,
    out: &mut Vec<u8>,
) -> Option<(RecordKind, FolioStep)> {
    let kind = folio_delta_kind(ev)?;
    let (ts, cpu) = (ev.ts(), ev_cpu(ev)?);
    let mut ctx = prev.of(cpu);
    let before = ctx.ts;
    ctx.ts = ts;
    match ev {
        Event::Alloc(a) => {
            let (tag, slot) = match a.result {
                AllocResult::Unknown => (0u8, None),
                AllocResult::Success { swap_type, offset } => (1, Some((swap_type, offset))),
                AllocResult::Failure => (2, None),
            };
            // As kind 16: an inferred request carries no latency.
            let latency = a.latency_ns.filter(|_| !a.inferred);
            out.push(
                a.order | tag << 4 | u8::from(latency.is_some()) << 6 | u8::from(a.inferred) << 7,
            );
            put_varint(out, u64::from(cpu));
            put_zz(out, ts, before);
            put_varint(out, a.id ^ ctx.id);
            if let Some((ty, off)) = slot {
                out.push(ty);
                put_zz(out, off, ctx.next);
                ctx.ty = ty;
                ctx.last = off;
                ctx.next = past(off, a.order);
            }
            if let Some(ns) = latency {
                put_zz(out, u64::from(ns), latency_guess(ts, ctx.start));
            }
            ctx.id = a.id;
            ctx.order = a.order;
            ctx.start = 0;
        }
        Event::Free(f) => {
            put_varint(out, u64::from(cpu));
            let flags = u8::from(f.swap_type != ctx.ty)
                | u8::from(f.offset != ctx.next) << 1
                | u8::from(f.nr != ctx.nr) << 2;
            out.push(flags);
            put_zz(out, ts, before);
            if f.swap_type != ctx.ty {
                out.push(f.swap_type);
            }
            if f.offset != ctx.next {
                put_zz(out, f.offset, ctx.next);
            }
            if f.nr != ctx.nr {
                put_varint(out, u64::from(f.nr));
            }
            ctx.ty = f.swap_type;
            ctx.nr = f.nr;
            ctx.last = f.offset;
            ctx.next = f.offset.wrapping_add(u64::from(f.nr));
        }
        Event::Grant(g) => {
            put_varint(out, u64::from(cpu));
            let flags = u8::from(g.req_cpu != cpu)
                | u8::from(g.pid != ctx.pid) << 1
                | u8::from(g.tgid != g.pid) << 2
                | u8::from(g.swap_type != ctx.ty) << 3
                | u8::from(g.offset != ctx.next) << 4
                | u8::from(g.order != ctx.order) << 5
                | u8::from(g.nr != 1) << 6
                | u8::from(!g.batch.is_empty()) << 7;
            out.push(flags);
            put_zz(out, ts, before);
            put_varint(out, g.id ^ ctx.id);
            if g.req_cpu != cpu {
                put_varint(out, zigzag(i64::from(g.req_cpu) - i64::from(cpu)));
            }
            if g.pid != ctx.pid {
                put_varint(out, zigzag(i64::from(g.pid) - i64::from(ctx.pid)));
            }
            if g.tgid != g.pid {
                put_varint(out, zigzag(i64::from(g.tgid) - i64::from(g.pid)));
            }
            if g.swap_type != ctx.ty {
                out.push(g.swap_type);
            }
            if g.offset != ctx.next {
                put_zz(out, g.offset, ctx.next);
            }
            if g.order != ctx.order {
                out.push(g.order);
            }
            if g.nr != 1 {
                put_varint(out, u64::from(g.nr));
            }
            if !g.batch.is_empty() {
                put_varint(out, g.batch.len() as u64);
                let mut last = g.offset;
                for &o in &g.batch {
                    put_zz(out, o, last);
                    last = o;
                }
            }
            put_varint(out, grant_start(g.start_ns, g.ts_ns));
            ctx.id = g.id;
            ctx.pid = g.pid;
            ctx.ty = g.swap_type;
            ctx.order = g.order;
            ctx.last = g.offset;
            ctx.next = g.offset;
            ctx.start = g.start_ns;
        }
        Event::SwapIn(sw) => {
            let order = sw.order.unwrap_or(swapscope_common::ORDER_UNKNOWN);
            put_varint(out, u64::from(cpu));
            let flags = u8::from(sw.pid != ctx.pid)
                | u8::from(sw.tgid != sw.pid) << 1
                | u8::from(sw.swap_type != ctx.ty) << 2
                | u8::from(sw.offset != ctx.next) << 3
                | u8::from(order != ctx.order) << 4
                | u8::from(sw.flags != 0) << 5;
            out.push(flags);
            put_zz(out, ts, before);
            put_varint(out, sw.id ^ ctx.id);
            if sw.pid != ctx.pid {
                put_varint(out, zigzag(i64::from(sw.pid) - i64::from(ctx.pid)));
            }
            if sw.tgid != sw.pid {
                put_varint(out, zigzag(i64::from(sw.tgid) - i64::from(sw.pid)));
            }
            if sw.swap_type != ctx.ty {
                out.push(sw.swap_type);
            }
            if sw.offset != ctx.next {
                put_zz(out, sw.offset, ctx.next);
            }
            if order != ctx.order {
                out.push(order);
            }
            if sw.flags != 0 {
                put_varint(out, u64::from(sw.flags));
            }
            ctx.id = sw.id;
            ctx.pid = sw.pid;
            ctx.ty = sw.swap_type;
            ctx.order = order;
            ctx.last = sw.offset;
            ctx.next = past(sw.offset, sw.order.unwrap_or(0));
        }
        Event::Writeout(w) => {
            put_varint(out, u64::from(cpu));
            put_zz(out, ts, before);
            put_varint(out, zigzag(i64::from(w.pid) - i64::from(ctx.pid)));
            put_varint(out, zigzag(i64::from(w.tgid) - i64::from(w.pid)));
            out.push(w.swap_type);
            put_zz(out, w.offset, ctx.last);
            out.push(w.order);
            put_varint(out, u64::from(w.flags) << 1 | u64::from(w.pfn.is_some()));
            if let Some(pfn) = w.pfn {
                put_zz(out, pfn, ctx.pfn);
                ctx.pfn = past(pfn, w.order);
            }
            ctx.pid = w.pid;
            ctx.ty = w.swap_type;
            ctx.order = w.order;
            ctx.last = w.offset;
            ctx.next = past(w.offset, w.order);
        }
        Event::Cluster(c) => {
            put_varint(out, u64::from(cpu));
            put_zz(out, ts, before);
            out.push(c.swap_type);
            put_varint(out, zigzag(i64::from(c.cluster) - i64::from(ctx.cluster)));
            out.push(c.list);
            out.push(c.old_list);
            out.push(c.order);
            put_varint(out, u64::from(c.count));
            ctx.cluster = c.cluster;
        }
        _ => return None,
    }
    Some((kind, FolioStep { cpu, ctx }))
}

/// The CPU field of the events the delta kinds code.
fn ev_cpu(ev: &Event) -> Option<u32> {
    match ev {
        Event::Alloc(a) => Some(a.cpu),
        Event::Free(f) => Some(f.cpu),
        Event::Grant(g) => Some(g.cpu),
        Event::SwapIn(s) => Some(s.cpu),
        Event::Writeout(w) => Some(w.cpu),
        Event::Cluster(c) => Some(c.cpu),
        _ => None,
    }
}

/// What an alloc's latency is coded against: the time since its grant's request start, when
/// the CPU's previous record was a grant that knew it (the same request, 7.x), else 0.
fn latency_guess(ts: Ts, start: Ts) -> u64 {
    if start == 0 {
        0
    } else {
        ts.wrapping_sub(start)
    }
}

/// A grant's request start as kind 15 stores it: 1 + its distance before `ts` (0: not known).
fn grant_start(start_ns: Ts, ts_ns: Ts) -> u64 {
    if start_ns == 0 || start_ns > ts_ns {
        0
    } else {
        ts_ns - start_ns + 1
    }
}

/// Decodes a delta body of `kind` ([`encode_folio_delta`]) against `prev`, and moves `prev` on
/// when it decodes; the event is the one the kind's plain record would give. `None` for a kind
/// that is not a delta kind.
pub fn decode_folio_delta(
    kind: RecordKind,
    body: &[u8],
    prev: &mut FolioDeltas,
) -> Option<Result<Event, &'static str>> {
    let mut d = Dec::new(body);
    let r = match kind {
        RecordKind::AllocDelta => decode_alloc_delta(&mut d, prev),
        RecordKind::FreeDelta => decode_free_delta(&mut d, prev),
        RecordKind::GrantDelta => decode_grant_delta(&mut d, prev),
        RecordKind::SwapInDelta => decode_swapin_delta(&mut d, prev),
        RecordKind::WriteoutFolio => decode_writeout_folio(&mut d, prev),
        RecordKind::ClusterDelta => decode_cluster_delta(&mut d, prev),
        _ => return None,
    };
    Some(r.and_then(|(ev, step)| {
        d.finish()?;
        prev.apply(step);
        Ok(ev)
    }))
}

/// `ts` and `cpu`, the head of every delta body, and the CPU's context.
fn delta_head(d: &mut Dec<'_>, prev: &FolioDeltas) -> Result<(Ts, u32, CpuDeltas), &'static str> {
    let cpu = get_u32(d, "cpu out of range")?;
    let mut ctx = prev.of(cpu);
    let ts = get_zz(d, ctx.ts)?;
    ctx.ts = ts;
    Ok((ts, cpu, ctx))
}

fn decode_alloc_delta(
    d: &mut Dec<'_>,
    prev: &FolioDeltas,
) -> Result<(Event, FolioStep), &'static str> {
    let head = d.u8()?;
    let order = head & 0x0f;
    let inferred = head & 0x80 != 0;
    let timed = head & 0x40 != 0;
    if inferred && timed {
        return Err("an inferred alloc with a latency");
    }
    let (ts_ns, cpu, mut ctx) = delta_head(d, prev)?;
    let id = d.varint()? ^ ctx.id;
    let result = match (head >> 4) & 3 {
        0 => AllocResult::Unknown,
        1 => {
            let swap_type = d.u8()?;
            let offset = get_zz(d, ctx.next)?;
            ctx.ty = swap_type;
            ctx.last = offset;
            ctx.next = past(offset, order);
            AllocResult::Success { swap_type, offset }
        }
        2 => AllocResult::Failure,
        _ => return Err("unknown alloc result tag"),
    };
    let latency_ns = if timed {
        let ns = get_zz(d, latency_guess(ts_ns, ctx.start))?;
        Some(u32::try_from(ns).map_err(|_| "latency out of range")?)
    } else {
        None
    };
    ctx.id = id;
    ctx.order = order;
    ctx.start = 0;
    let ev = Event::Alloc(Alloc {
        ts_ns,
        cpu,
        order,
        id,
        result,
        latency_ns,
        inferred,
    });
    Ok((ev, FolioStep { cpu, ctx }))
}

/// The head of a delta body with a flags byte (free, grant, swap-in): `cpu`, the flags (which
/// fields differ from the context; bits outside `known` are a bad record), the timestamp.
fn flagged_head(
    d: &mut Dec<'_>,
    prev: &FolioDeltas,
    known: u8,
) -> Result<(Ts, u32, CpuDeltas, u8), &'static str> {
    let cpu = get_u32(d, "cpu out of range")?;
    let flags = d.u8()?;
    if flags & !known != 0 {
        return Err("unknown flag bits in a delta record");
    }
    let mut ctx = prev.of(cpu);
    let ts = get_zz(d, ctx.ts)?;
    ctx.ts = ts;
    Ok((ts, cpu, ctx, flags))
}

/// A field a delta body holds when `stored` (its flag is set), else the context's value `or`.
fn flagged<T>(
    d: &mut Dec<'_>,
    stored: bool,
    or: T,
    read: impl FnOnce(&mut Dec<'_>) -> Result<T, &'static str>,
) -> Result<T, &'static str> {
    if stored { read(d) } else { Ok(or) }
}

fn decode_free_delta(
    d: &mut Dec<'_>,
    prev: &FolioDeltas,
) -> Result<(Event, FolioStep), &'static str> {
    let (ts_ns, cpu, mut ctx, flags) = flagged_head(d, prev, 0b111)?;
    let swap_type = flagged(d, flags & 1 != 0, ctx.ty, |d| d.u8())?;
    let offset = flagged(d, flags & 2 != 0, ctx.next, |d| get_zz(d, ctx.next))?;
    let nr = flagged(d, flags & 4 != 0, ctx.nr, |d| get_u32(d, "nr out of range"))?;
    ctx.ty = swap_type;
    ctx.nr = nr;
    ctx.last = offset;
    ctx.next = offset.wrapping_add(u64::from(nr));
    let ev = Event::Free(Free {
        ts_ns,
        cpu,
        swap_type,
        offset,
        nr,
    });
    Ok((ev, FolioStep { cpu, ctx }))
}

fn decode_grant_delta(
    d: &mut Dec<'_>,
    prev: &FolioDeltas,
) -> Result<(Event, FolioStep), &'static str> {
    let (ts_ns, cpu, mut ctx, flags) = flagged_head(d, prev, 0xff)?;
    let id = d.varint()? ^ ctx.id;
    let req_cpu = flagged(d, flags & 1 != 0, cpu, |d| {
        get_u32_zz(d, cpu, "req_cpu out of range")
    })?;
    let pid = flagged(d, flags & 2 != 0, ctx.pid, |d| {
        get_u32_zz(d, ctx.pid, "pid out of range")
    })?;
    let tgid = flagged(d, flags & 4 != 0, pid, |d| {
        get_u32_zz(d, pid, "tgid out of range")
    })?;
    let swap_type = flagged(d, flags & 8 != 0, ctx.ty, |d| d.u8())?;
    let offset = flagged(d, flags & 16 != 0, ctx.next, |d| get_zz(d, ctx.next))?;
    let order = flagged(d, flags & 32 != 0, ctx.order, |d| d.u8())?;
    let nr = flagged(d, flags & 64 != 0, 1, |d| get_u32(d, "nr out of range"))?;
    let mut batch = Vec::new();
    if flags & 128 != 0 {
        let n = usize::try_from(d.varint()?).map_err(|_| "batch count out of range")?;
        if n > GRANT_BATCH_MAX {
            return Err("a grant lists more than 64 slots");
        }
        let mut last = offset;
        batch.reserve(n);
        for _ in 0..n {
            last = get_zz(d, last)?;
            batch.push(last);
        }
    }
    let start_ns = match d.varint()? {
        0 => 0,
        v => ts_ns
            .checked_sub(v - 1)
            .ok_or("a grant's request starts before time 0")?,
    };
    ctx.id = id;
    ctx.pid = pid;
    ctx.ty = swap_type;
    ctx.order = order;
    ctx.last = offset;
    ctx.next = offset;
    ctx.start = start_ns;
    let ev = Event::Grant(Grant {
        ts_ns,
        cpu,
        req_cpu,
        pid,
        tgid,
        id,
        swap_type,
        offset,
        order,
        nr,
        batch,
        start_ns,
    });
    Ok((ev, FolioStep { cpu, ctx }))
}

fn decode_swapin_delta(
    d: &mut Dec<'_>,
    prev: &FolioDeltas,
) -> Result<(Event, FolioStep), &'static str> {
    let (ts_ns, cpu, mut ctx, flags) = flagged_head(d, prev, 0b11_1111)?;
    let id = d.varint()? ^ ctx.id;
    let pid = flagged(d, flags & 1 != 0, ctx.pid, |d| {
        get_u32_zz(d, ctx.pid, "pid out of range")
    })?;
    let tgid = flagged(d, flags & 2 != 0, pid, |d| {
        get_u32_zz(d, pid, "tgid out of range")
    })?;
    let swap_type = flagged(d, flags & 4 != 0, ctx.ty, |d| d.u8())?;
    let offset = flagged(d, flags & 8 != 0, ctx.next, |d| get_zz(d, ctx.next))?;
    let order_byte = flagged(d, flags & 16 != 0, ctx.order, |d| d.u8())?;
    let folio_flags = flagged(d, flags & 32 != 0, 0, |d| get_u32(d, "flags out of range"))?;
    let order = (order_byte != swapscope_common::ORDER_UNKNOWN).then_some(order_byte);
    ctx.id = id;
    ctx.pid = pid;
    ctx.ty = swap_type;
    ctx.order = order_byte;
    ctx.last = offset;
    ctx.next = past(offset, order.unwrap_or(0));
    let ev = Event::SwapIn(SwapIn {
        ts_ns,
        cpu,
        pid,
        tgid,
        id,
        swap_type,
        offset,
        order,
        flags: folio_flags,
    });
    Ok((ev, FolioStep { cpu, ctx }))
}

fn decode_writeout_folio(
    d: &mut Dec<'_>,
    prev: &FolioDeltas,
) -> Result<(Event, FolioStep), &'static str> {
    let (ts_ns, cpu, mut ctx) = delta_head(d, prev)?;
    let pid = get_u32_zz(d, ctx.pid, "pid out of range")?;
    let tgid = get_u32_zz(d, pid, "tgid out of range")?;
    let swap_type = d.u8()?;
    let offset = get_zz(d, ctx.last)?;
    let order = d.u8()?;
    let flags_pfn = d.varint()?;
    let flags = u32::try_from(flags_pfn >> 1).map_err(|_| "flags out of range")?;
    let pfn = if flags_pfn & 1 == 1 {
        let pfn = get_zz(d, ctx.pfn)?;
        ctx.pfn = past(pfn, order);
        Some(pfn)
    } else {
        None
    };
    ctx.pid = pid;
    ctx.ty = swap_type;
    ctx.order = order;
    ctx.last = offset;
    ctx.next = past(offset, order);
    let ev = Event::Writeout(Writeout {
        ts_ns,
        cpu,
        pid,
        tgid,
        swap_type,
        offset,
        order,
        pfn,
        flags,
    });
    Ok((ev, FolioStep { cpu, ctx }))
}

fn decode_cluster_delta(
    d: &mut Dec<'_>,
    prev: &FolioDeltas,
) -> Result<(Event, FolioStep), &'static str> {
    let (ts_ns, cpu, mut ctx) = delta_head(d, prev)?;
    let swap_type = d.u8()?;
    let cluster = get_u32_zz(d, ctx.cluster, "cluster out of range")?;
    let list = d.u8()?;
    let old_list = d.u8()?;
    let order = d.u8()?;
    let count = u16::try_from(d.varint()?).map_err(|_| "count out of range")?;
    ctx.cluster = cluster;
    let ev = Event::Cluster(ClusterMove {
        ts_ns,
        cpu,
        swap_type,
        cluster,
        list,
        old_list,
        order,
        count,
    });
    Ok((ev, FolioStep { cpu, ctx }))
}

/// Decodes one record body. Unknown kinds give `Ok(None)` (the caller skips and counts them); a
/// known kind whose body does not match its layout exactly is an error.
pub fn decode_record(
    kind: u16,
    body: &[u8],
    swp_type_shift: u8,
) -> Result<Option<Event>, FormatError> {
    let bad = |reason: String| FormatError::BadRecord { kind, reason };
    let Some(known) = RecordKind::from_code(kind) else {
        return Ok(None);
    };
    let ev = match known {
        RecordKind::Writeout => {
            let ev = parse_writeout(body).map_err(|r| bad(r.to_owned()))?;
            Event::Writeout(Writeout::from_bpf(&ev, swp_type_shift))
        }
        RecordKind::WriteoutDelta => {
            // Coded against the chunk's previous writeout: alone, as if first in its chunk.
            let w = decode_writeout_delta(body, &mut WriteoutDeltas::default())
                .map_err(|r| bad(r.to_owned()))?;
            Event::Writeout(w)
        }
        RecordKind::AllocDelta
        | RecordKind::FreeDelta
        | RecordKind::GrantDelta
        | RecordKind::SwapInDelta
        | RecordKind::WriteoutFolio
        | RecordKind::ClusterDelta => {
            // Likewise: alone, as if first in its chunk.
            match decode_folio_delta(known, body, &mut FolioDeltas::default()) {
                Some(Ok(ev)) => ev,
                Some(Err(r)) => return Err(bad(r.to_owned())),
                None => return Err(bad("not a delta kind".to_owned())),
            }
        }
        _ => {
            let mut d = Dec::new(body);
            let ev = decode_body(known, &mut d).map_err(|r| bad(r.to_owned()))?;
            d.finish().map_err(|r| bad(r.to_owned()))?;
            ev
        }
    };
    Ok(Some(ev))
}

/// Alloc and Free bodies (the bulk of a replayable stream) at their fixed offsets, without the
/// general decoder. `None` when the body is not exactly one of their layouts: the general path
/// ([`decode_record`]) then decides, so the result is always the same as its.
#[inline]
pub fn decode_alloc_free(kind: u16, b: &[u8]) -> Option<Event> {
    let u64_at = |i: usize| Some(u64::from_le_bytes(b.get(i..i + 8)?.try_into().ok()?));
    let u32_at = |i: usize| Some(u32::from_le_bytes(b.get(i..i + 4)?.try_into().ok()?));
    match (RecordKind::from_code(kind)?, b.len()) {
        (RecordKind::Free, 25) => Some(Event::Free(Free {
            ts_ns: u64_at(0)?,
            cpu: u32_at(8)?,
            swap_type: *b.get(12)?,
            offset: u64_at(13)?,
            nr: u32_at(21)?,
        })),
        (k @ (RecordKind::Alloc | RecordKind::AllocTimed | RecordKind::AllocInferred), len) => {
            // An ALLOC_TIMED body is an ALLOC body and 4 bytes of latency.
            let (len, latency_ns) = if k == RecordKind::AllocTimed {
                let l = len.checked_sub(4)?;
                (l, Some(u32_at(l)?))
            } else {
                (len, None)
            };
            let result = match (*b.get(21)?, len) {
                (0, 22) => AllocResult::Unknown,
                (2, 22) => AllocResult::Failure,
                (1, 31) => AllocResult::Success {
                    swap_type: *b.get(22)?,
                    offset: u64_at(23)?,
                },
                _ => return None,
            };
            Some(Event::Alloc(Alloc {
                ts_ns: u64_at(0)?,
                cpu: u32_at(8)?,
                order: *b.get(12)?,
                id: u64_at(13)?,
                result,
                latency_ns,
                inferred: k == RecordKind::AllocInferred,
            }))
        }
        _ => None,
    }
}

/// Decodes a hand-encoded body (every known kind but Writeout).
fn decode_body(kind: RecordKind, d: &mut Dec<'_>) -> Result<Event, &'static str> {
    let ts_ns = d.u64()?;
    Ok(match kind {
        RecordKind::Counters => {
            let n = d.count(STR_MIN + 8)?;
            let mut values = Vec::with_capacity(n);
            for _ in 0..n {
                let name = d.str()?;
                values.push((name, d.u64()?));
            }
            Event::Counters(CounterSample { ts_ns, values })
        }
        RecordKind::Devices => {
            let n = d.count(DEVICE_MIN)?;
            let mut devices = Vec::with_capacity(n);
            for _ in 0..n {
                devices.push(decode_device(d)?);
            }
            Event::Devices(DeviceList { ts_ns, devices })
        }
        RecordKind::Lost => Event::Lost(Lost {
            ts_ns,
            ringbuf: d.u64()?,
            userspace: d.u64()?,
        }),
        RecordKind::SwapOn => {
            let swap_type = d.u8()?;
            let max = d.u64()?;
            let flags = d.u32()?;
            let prio = d.i32()?;
            let n = d.count(8)?;
            let mut bad = Vec::with_capacity(n);
            for _ in 0..n {
                bad.push(d.u64()?);
            }
            Event::SwapOn(SwapOn {
                ts_ns,
                swap_type,
                max,
                bad,
                flags,
                prio,
            })
        }
        RecordKind::SwapOff => Event::SwapOff(SwapOff {
            ts_ns,
            swap_type: d.u8()?,
        }),
        RecordKind::Alloc | RecordKind::AllocTimed | RecordKind::AllocInferred => {
            let cpu = d.u32()?;
            let order = d.u8()?;
            let id = d.u64()?;
            let result = match d.u8()? {
                0 => AllocResult::Unknown,
                1 => AllocResult::Success {
                    swap_type: d.u8()?,
                    offset: d.u64()?,
                },
                2 => AllocResult::Failure,
                _ => return Err("unknown alloc result tag"),
            };
            let latency_ns = if kind == RecordKind::AllocTimed {
                Some(d.u32()?)
            } else {
                None
            };
            Event::Alloc(Alloc {
                ts_ns,
                cpu,
                order,
                id,
                result,
                latency_ns,
                inferred: kind == RecordKind::AllocInferred,
            })
        }
        RecordKind::Free => Event::Free(Free {
            ts_ns,
            cpu: d.u32()?,
            swap_type: d.u8()?,
            offset: d.u64()?,
            nr: d.u32()?,
        }),
        RecordKind::Marker => Event::Marker(Marker {
            ts_ns,
            label: d.str()?,
        }),
        RecordKind::Split | RecordKind::SplitInferred => Event::Split(Split {
            ts_ns,
            cpu: d.u32()?,
            pid: d.u32()?,
            id: d.u64()?,
            old_order: d.order()?,
            new_order: d.u8()?,
            inferred: kind == RecordKind::SplitInferred,
        }),
        RecordKind::SwapIn => Event::SwapIn(SwapIn {
            ts_ns,
            cpu: d.u32()?,
            pid: d.u32()?,
            tgid: d.u32()?,
            id: d.u64()?,
            swap_type: d.u8()?,
            offset: d.u64()?,
            order: d.order()?,
            flags: d.u32()?,
        }),
        RecordKind::Cluster => Event::Cluster(ClusterMove {
            ts_ns,
            cpu: d.u32()?,
            swap_type: d.u8()?,
            cluster: d.u32()?,
            list: d.u8()?,
            old_list: d.u8()?,
            order: d.u8()?,
            count: d.u16()?,
        }),
        RecordKind::Grant => {
            let cpu = d.u32()?;
            let req_cpu = d.u32()?;
            let pid = d.u32()?;
            let tgid = d.u32()?;
            let id = d.u64()?;
            let swap_type = d.u8()?;
            let offset = d.u64()?;
            let order = d.u8()?;
            let nr = d.u32()?;
            let n = d.count(1)?;
            if n > GRANT_BATCH_MAX {
                return Err("a grant lists more than 64 slots");
            }
            let mut prev = offset;
            let mut batch = Vec::with_capacity(n);
            for _ in 0..n {
                prev = prev.wrapping_add(unzigzag(d.varint()?) as u64);
                batch.push(prev);
            }
            let start_ns = match d.varint()? {
                0 => 0,
                v => ts_ns
                    .checked_sub(v - 1)
                    .ok_or("a grant's request starts before time 0")?,
            };
            Event::Grant(Grant {
                ts_ns,
                cpu,
                req_cpu,
                pid,
                tgid,
                id,
                swap_type,
                offset,
                order,
                nr,
                batch,
                start_ns,
            })
        }
        _ => return Err("not a hand-encoded record kind"),
    })
}

/// Re-assembles the BPF bytes of a decoded writeout. Errors when `swp_type_shift` cannot hold
/// the swap type and offset, or when `pfn` is the "unknown" sentinel.
pub fn writeout_to_bpf(
    w: &Writeout,
    swp_type_shift: u8,
) -> Result<[u8; WRITEOUT_LEN], FormatError> {
    let invalid = |reason: String| FormatError::InvalidEvent { reason };
    if !(1..=63).contains(&swp_type_shift) {
        return Err(invalid(format!(
            "swp_type_shift {swp_type_shift} is outside 1..=63"
        )));
    }
    let shift = u32::from(swp_type_shift);
    if w.offset >> shift != 0 {
        return Err(invalid(format!(
            "writeout offset {:#x} does not fit in {shift} bits",
            w.offset
        )));
    }
    if u64::from(w.swap_type)
        .checked_shl(shift)
        .and_then(|v| v.checked_shr(shift))
        != Some(u64::from(w.swap_type))
    {
        return Err(invalid(format!(
            "writeout swap type {} does not fit above bit {shift}",
            w.swap_type
        )));
    }
    if w.pfn == Some(PFN_UNKNOWN) {
        return Err(invalid(
            "writeout pfn equals the PFN_UNKNOWN sentinel".to_owned(),
        ));
    }
    let ev = WriteoutEvent {
        header: EventHeader {
            kind: swapscope_common::kind::WRITEOUT,
            size: WRITEOUT_LEN as u16,
            cpu: w.cpu,
            ts_ns: w.ts_ns,
        },
        swap_val: (u64::from(w.swap_type) << shift) | w.offset,
        pid_tgid: (u64::from(w.tgid) << 32) | u64::from(w.pid),
        pfn: w.pfn.unwrap_or(PFN_UNKNOWN),
        flags: w.flags,
        order: w.order,
        _pad: [0; 3],
    };
    Ok(writeout_bytes(&ev))
}

/// The little-endian bytes of a [`WriteoutEvent`], field by field in its `repr(C)` layout.
pub fn writeout_bytes(ev: &WriteoutEvent) -> [u8; WRITEOUT_LEN] {
    let mut b = [0u8; WRITEOUT_LEN];
    b[0..2].copy_from_slice(&ev.header.kind.to_le_bytes());
    b[2..4].copy_from_slice(&ev.header.size.to_le_bytes());
    b[4..8].copy_from_slice(&ev.header.cpu.to_le_bytes());
    b[8..16].copy_from_slice(&ev.header.ts_ns.to_le_bytes());
    b[16..24].copy_from_slice(&ev.swap_val.to_le_bytes());
    b[24..32].copy_from_slice(&ev.pid_tgid.to_le_bytes());
    b[32..40].copy_from_slice(&ev.pfn.to_le_bytes());
    b[40..44].copy_from_slice(&ev.flags.to_le_bytes());
    b[44] = ev.order;
    b[45..48].copy_from_slice(&ev._pad);
    b
}

/// Parses BPF writeout bytes field by field (no `unsafe` cast): exactly [`WRITEOUT_LEN`] bytes
/// whose header names the writeout kind and that size.
pub fn parse_writeout(b: &[u8]) -> Result<WriteoutEvent, &'static str> {
    if b.len() != WRITEOUT_LEN {
        return Err("writeout body is not 48 bytes");
    }
    let mut d = Dec::new(b);
    let header = bpf_header(&mut d)?;
    if header.kind != swapscope_common::kind::WRITEOUT {
        return Err("BPF event header kind is not WRITEOUT");
    }
    if usize::from(header.size) != WRITEOUT_LEN {
        return Err("BPF event header size is not 48");
    }
    Ok(WriteoutEvent {
        header,
        swap_val: d.u64()?,
        pid_tgid: d.u64()?,
        pfn: d.u64()?,
        flags: d.u32()?,
        order: d.u8()?,
        _pad: [d.u8()?, d.u8()?, d.u8()?],
    })
}

/// Smallest encoding of a string and of a device (for bounding preallocation by body size).
const STR_MIN: usize = 2;
const DEVICE_MIN: usize = 1 + 1 + STR_MIN + 8 + 8 + 4;

/// Device layout, shared by Devices records and the header's device TLVs.
pub(crate) fn encode_device(dev: &SwapDevice, out: &mut Vec<u8>) -> Result<(), FormatError> {
    let SwapDevice {
        index,
        path,
        kind,
        size_kb,
        used_kb,
        prio,
    } = dev;
    out.push(*index);
    out.push(match kind {
        DeviceKind::Zram => 0,
        DeviceKind::Partition => 1,
        DeviceKind::File => 2,
        DeviceKind::Other => 3,
    });
    put_str(out, path)?;
    put_u64(out, *size_kb);
    put_u64(out, *used_kb);
    put_i32(out, *prio);
    Ok(())
}

pub(crate) fn decode_device(d: &mut Dec<'_>) -> Result<SwapDevice, &'static str> {
    let index = d.u8()?;
    // Codes past the known ones are kinds a newer writer added: read them as Other.
    let kind = match d.u8()? {
        0 => DeviceKind::Zram,
        1 => DeviceKind::Partition,
        2 => DeviceKind::File,
        _ => DeviceKind::Other,
    };
    Ok(SwapDevice {
        index,
        kind,
        path: d.str()?,
        size_kb: d.u64()?,
        used_kb: d.u64()?,
        prio: d.i32()?,
    })
}

pub(crate) fn put_u16(out: &mut Vec<u8>, v: u16) {
    out.extend_from_slice(&v.to_le_bytes());
}
pub(crate) fn put_u32(out: &mut Vec<u8>, v: u32) {
    out.extend_from_slice(&v.to_le_bytes());
}
pub(crate) fn put_u64(out: &mut Vec<u8>, v: u64) {
    out.extend_from_slice(&v.to_le_bytes());
}
pub(crate) fn put_i32(out: &mut Vec<u8>, v: i32) {
    out.extend_from_slice(&v.to_le_bytes());
}

/// A string: u16 byte length, then UTF-8.
pub(crate) fn put_str(out: &mut Vec<u8>, s: &str) -> Result<(), FormatError> {
    let len = u16::try_from(s.len()).map_err(|_| FormatError::InvalidEvent {
        reason: format!("string of {} bytes is longer than 65535", s.len()),
    })?;
    put_u16(out, len);
    out.extend_from_slice(s.as_bytes());
    Ok(())
}

/// An element count: u32.
fn put_count(out: &mut Vec<u8>, n: usize, what: &str) -> Result<(), FormatError> {
    let n = u32::try_from(n).map_err(|_| FormatError::InvalidEvent {
        reason: format!("too many {what}: {n}"),
    })?;
    put_u32(out, n);
    Ok(())
}

/// The [`EventHeader`] every BPF event starts with.
pub fn bpf_header(d: &mut Dec<'_>) -> Result<EventHeader, &'static str> {
    Ok(EventHeader {
        kind: d.u16()?,
        size: d.u16()?,
        cpu: d.u32()?,
        ts_ns: d.u64()?,
    })
}

/// A little-endian reader over a body; every read is bounds-checked.
pub struct Dec<'a> {
    buf: &'a [u8],
}

impl<'a> Dec<'a> {
    pub fn new(buf: &'a [u8]) -> Self {
        Dec { buf }
    }

    pub fn bytes(&mut self, n: usize) -> Result<&'a [u8], &'static str> {
        if n > self.buf.len() {
            return Err("body too short");
        }
        let (head, rest) = self.buf.split_at(n);
        self.buf = rest;
        Ok(head)
    }

    fn array<const N: usize>(&mut self) -> Result<[u8; N], &'static str> {
        let mut a = [0u8; N];
        a.copy_from_slice(self.bytes(N)?);
        Ok(a)
    }

    pub fn u8(&mut self) -> Result<u8, &'static str> {
        Ok(self.array::<1>()?[0])
    }
    /// A folio order byte, `None` for `ORDER_UNKNOWN`.
    pub fn order(&mut self) -> Result<Option<u8>, &'static str> {
        Ok(Some(self.u8()?).filter(|o| *o != swapscope_common::ORDER_UNKNOWN))
    }
    pub fn u16(&mut self) -> Result<u16, &'static str> {
        Ok(u16::from_le_bytes(self.array()?))
    }
    pub fn u32(&mut self) -> Result<u32, &'static str> {
        Ok(u32::from_le_bytes(self.array()?))
    }
    pub fn u64(&mut self) -> Result<u64, &'static str> {
        Ok(u64::from_le_bytes(self.array()?))
    }
    pub fn i32(&mut self) -> Result<i32, &'static str> {
        Ok(i32::from_le_bytes(self.array()?))
    }
    pub fn i64(&mut self) -> Result<i64, &'static str> {
        Ok(i64::from_le_bytes(self.array()?))
    }

    /// A u16-length-prefixed UTF-8 string.
    pub fn str(&mut self) -> Result<String, &'static str> {
        let len = self.u16()?;
        let b = self.bytes(usize::from(len))?;
        std::str::from_utf8(b)
            .map(str::to_owned)
            .map_err(|_| "string is not UTF-8")
    }

    /// A u32 element count, checked against the bytes left (each element is at least `min`
    /// bytes), so a bad count cannot make us allocate more than the body could hold.
    fn count(&mut self, min: usize) -> Result<usize, &'static str> {
        let n = usize::try_from(self.u32()?).map_err(|_| "count too large")?;
        if n.saturating_mul(min) > self.buf.len() {
            return Err("element count larger than the body");
        }
        Ok(n)
    }

    /// An unsigned LEB128 varint of at most 10 bytes.
    pub fn varint(&mut self) -> Result<u64, &'static str> {
        let mut v = 0u64;
        for i in 0..10 {
            let b = self.u8()?;
            v |= u64::from(b & 0x7f) << (7 * i);
            if b & 0x80 == 0 {
                return Ok(v);
            }
        }
        Err("varint longer than 10 bytes")
    }

    pub(crate) fn remaining(&self) -> usize {
        self.buf.len()
    }

    /// Errors when bytes are left over: a body must match its layout exactly.
    pub(crate) fn finish(&self) -> Result<(), &'static str> {
        if self.buf.is_empty() {
            Ok(())
        } else {
            Err("trailing bytes after the body")
        }
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use proptest::prelude::*;

    use super::*;
    use crate::event::swap_flags;

    const SHIFT: u8 = 58;

    fn roundtrip(ev: &Event) -> Result<Option<Event>, FormatError> {
        let mut body = Vec::new();
        let k = encode_event(ev, SHIFT, &mut body)?;
        assert_eq!(k, kind_of(ev));
        decode_record(k.code(), &body, SHIFT)
    }

    fn arb_string() -> impl Strategy<Value = String> {
        prop_oneof![Just(String::new()), "[a-z/_0-9-]{1,24}", any::<String>()]
    }

    fn arb_device() -> impl Strategy<Value = SwapDevice> {
        (
            any::<u8>(),
            arb_string(),
            prop_oneof![
                Just(DeviceKind::Zram),
                Just(DeviceKind::Partition),
                Just(DeviceKind::File),
                Just(DeviceKind::Other)
            ],
            any::<u64>(),
            any::<u64>(),
            any::<i32>(),
        )
            .prop_map(|(index, path, kind, size_kb, used_kb, prio)| SwapDevice {
                index,
                path,
                kind,
                size_kb,
                used_kb,
                prio,
            })
    }

    /// Arbitrary writeouts that a 58-bit swap-type shift can represent.
    pub(crate) fn arb_writeout() -> impl Strategy<Value = Writeout> {
        (
            any::<u64>(),
            any::<u32>(),
            any::<u32>(),
            any::<u32>(),
            0u8..64,
            0u64..(1 << SHIFT),
            any::<u8>(),
            prop_oneof![Just(None), (0..PFN_UNKNOWN).prop_map(Some)],
            any::<u32>(),
        )
            .prop_map(
                |(ts_ns, cpu, pid, tgid, swap_type, offset, order, pfn, flags)| Writeout {
                    ts_ns,
                    cpu,
                    pid,
                    tgid,
                    swap_type,
                    offset,
                    order,
                    pfn,
                    flags,
                },
            )
    }

    pub(crate) fn arb_event() -> impl Strategy<Value = Event> {
        let ts = any::<u64>();
        prop_oneof![
            arb_writeout().prop_map(Event::Writeout),
            (
                ts,
                prop::collection::vec((arb_string(), any::<u64>()), 0..6)
            )
                .prop_map(|(ts_ns, values)| Event::Counters(CounterSample { ts_ns, values })),
            (ts, prop::collection::vec(arb_device(), 0..4))
                .prop_map(|(ts_ns, devices)| Event::Devices(DeviceList { ts_ns, devices })),
            (ts, any::<u64>(), any::<u64>()).prop_map(|(ts_ns, ringbuf, userspace)| {
                Event::Lost(Lost {
                    ts_ns,
                    ringbuf,
                    userspace,
                })
            }),
            (
                ts,
                any::<u8>(),
                any::<u64>(),
                prop::collection::vec(any::<u64>(), 0..8),
                any::<u32>(),
                any::<i32>()
            )
                .prop_map(|(ts_ns, swap_type, max, bad, flags, prio)| {
                    Event::SwapOn(SwapOn {
                        ts_ns,
                        swap_type,
                        max,
                        bad,
                        flags,
                        prio,
                    })
                }),
            (ts, any::<u8>())
                .prop_map(|(ts_ns, swap_type)| Event::SwapOff(SwapOff { ts_ns, swap_type })),
            (
                ts,
                any::<u32>(),
                any::<u8>(),
                any::<u64>(),
                prop_oneof![
                    Just(AllocResult::Unknown),
                    Just(AllocResult::Failure),
                    (any::<u8>(), any::<u64>()).prop_map(|(swap_type, offset)| {
                        AllocResult::Success { swap_type, offset }
                    }),
                ],
                proptest::option::of(any::<u32>()),
                any::<bool>()
            )
                .prop_map(|(ts_ns, cpu, order, id, result, latency_ns, inferred)| {
                    Event::Alloc(Alloc {
                        ts_ns,
                        cpu,
                        order,
                        id,
                        result,
                        // An inferred request is never timed (`alloc-inferred` has no latency).
                        latency_ns: latency_ns.filter(|_| !inferred),
                        inferred,
                    })
                }),
            (ts, any::<u32>(), any::<u8>(), any::<u64>(), any::<u32>()).prop_map(
                |(ts_ns, cpu, swap_type, offset, nr)| {
                    Event::Free(Free {
                        ts_ns,
                        cpu,
                        swap_type,
                        offset,
                        nr,
                    })
                }
            ),
            (ts, arb_string()).prop_map(|(ts_ns, label)| Event::Marker(Marker { ts_ns, label })),
            (
                ts,
                any::<u32>(),
                any::<u32>(),
                any::<u64>(),
                proptest::option::of(0u8..0xff),
                any::<u8>(),
                any::<bool>()
            )
                .prop_map(|(ts_ns, cpu, pid, id, old_order, new_order, inferred)| {
                    Event::Split(Split {
                        ts_ns,
                        cpu,
                        pid,
                        id,
                        old_order,
                        new_order,
                        inferred,
                    })
                }),
            (
                ts,
                (any::<u32>(), any::<u32>(), any::<u32>()),
                any::<u64>(),
                any::<u8>(),
                any::<u64>(),
                proptest::option::of(0u8..0xff),
                any::<u32>()
            )
                .prop_map(
                    |(ts_ns, (cpu, pid, tgid), id, swap_type, offset, order, flags)| {
                        Event::SwapIn(SwapIn {
                            ts_ns,
                            cpu,
                            pid,
                            tgid,
                            id,
                            swap_type,
                            offset,
                            order,
                            flags,
                        })
                    }
                ),
            (
                ts,
                any::<u32>(),
                any::<u8>(),
                any::<u32>(),
                (any::<u8>(), any::<u8>(), any::<u8>()),
                any::<u16>()
            )
                .prop_map(
                    |(ts_ns, cpu, swap_type, cluster, (list, old_list, order), count)| {
                        Event::Cluster(ClusterMove {
                            ts_ns,
                            cpu,
                            swap_type,
                            cluster,
                            list,
                            old_list,
                            order,
                            count,
                        })
                    }
                ),
            (
                ts,
                (any::<u32>(), any::<u32>(), any::<u32>(), any::<u32>()),
                (
                    any::<u64>(),
                    any::<u8>(),
                    any::<u64>(),
                    any::<u8>(),
                    any::<u32>()
                ),
                prop::collection::vec(any::<u64>(), 0..=GRANT_BATCH_MAX),
                any::<u64>()
            )
                .prop_map(
                    |(
                        ts_ns,
                        (cpu, req_cpu, pid, tgid),
                        (id, swap_type, offset, order, nr),
                        batch,
                        back,
                    )| {
                        Event::Grant(Grant {
                            ts_ns,
                            cpu,
                            req_cpu,
                            pid,
                            tgid,
                            id,
                            swap_type,
                            offset,
                            order,
                            nr,
                            batch,
                            // 0 (unknown) or any time up to `ts_ns`.
                            start_ns: if back % 3 == 0 {
                                0
                            } else {
                                ts_ns.saturating_sub(back % (ts_ns + 1)).max(1).min(ts_ns)
                            },
                        })
                    }
                ),
        ]
    }

    proptest! {
        #[test]
        fn every_variant_roundtrips(ev in arb_event()) {
            prop_assert_eq!(roundtrip(&ev).ok().flatten(), Some(ev));
        }

        #[test]
        fn truncated_or_extended_bodies_are_errors(ev in arb_event(), extra in 1usize..4) {
            let mut body = Vec::new();
            let k = encode_event(&ev, SHIFT, &mut body).map_err(|e| TestCaseError::fail(e.to_string()))?;
            let mut longer = body.clone();
            longer.resize(body.len() + extra, 0);
            prop_assert!(decode_record(k.code(), &longer, SHIFT).is_err());
            // Any strict prefix is short somewhere.
            let cut = body.len().saturating_sub(extra);
            prop_assert!(decode_record(k.code(), &body[..cut], SHIFT).is_err());
        }

        #[test]
        fn arbitrary_bodies_never_panic(k in 0u16..25, body in prop::collection::vec(any::<u8>(), 0..80)) {
            let _ = decode_record(k, &body, SHIFT);
        }
    }

    #[test]
    fn every_kind_is_in_the_table_at_its_code() {
        let codes: Vec<u16> = RecordKind::ALL.iter().map(|k| k.code()).collect();
        assert_eq!(codes, (1..=23).collect::<Vec<u16>>());
        for code in 0..=u16::MAX {
            let k = RecordKind::from_code(code);
            assert_eq!(
                k.map(RecordKind::code),
                (1..=23).contains(&code).then_some(code)
            );
        }
        let mut names: Vec<&str> = RecordKind::ALL.iter().map(|k| k.name()).collect();
        names.sort_unstable();
        names.dedup();
        assert_eq!(names.len(), RecordKind::ALL.len());
    }

    #[test]
    fn raw_writeout_is_stored_verbatim_and_decoded_with_the_header_shift() {
        let ev = WriteoutEvent {
            header: EventHeader {
                kind: 1,
                size: 48,
                cpu: 3,
                ts_ns: 123_456,
            },
            swap_val: (2u64 << SHIFT) | 0x1234,
            pid_tgid: (77u64 << 32) | 78,
            pfn: PFN_UNKNOWN,
            flags: 0b10_0110,
            order: 4,
            _pad: [0; 3],
        };
        let raw = writeout_bytes(&ev);
        let mut body = Vec::new();
        assert_eq!(encode_raw_writeout(&raw, &mut body).ok(), Some(123_456));
        assert_eq!(body, raw);
        let expected = Writeout {
            ts_ns: 123_456,
            cpu: 3,
            pid: 78,
            tgid: 77,
            swap_type: 2,
            offset: 0x1234,
            order: 4,
            pfn: None,
            flags: 0b10_0110,
        };
        assert_eq!(
            decode_record(RecordKind::Writeout.code(), &body, SHIFT)
                .ok()
                .flatten(),
            Some(Event::Writeout(expected))
        );
        assert_eq!(writeout_to_bpf(&expected, SHIFT).ok(), Some(raw));
    }

    #[test]
    fn raw_writeout_is_checked() {
        let good = writeout_bytes(&WriteoutEvent {
            header: EventHeader {
                kind: 1,
                size: 48,
                cpu: 0,
                ts_ns: 1,
            },
            ..WriteoutEvent::default()
        });
        let mut out = Vec::new();
        assert!(encode_raw_writeout(&good[..47], &mut out).is_err());
        let mut wrong_kind = good;
        wrong_kind[0] = 9;
        assert!(encode_raw_writeout(&wrong_kind, &mut out).is_err());
        let mut wrong_size = good;
        wrong_size[2] = 40;
        assert!(encode_raw_writeout(&wrong_size, &mut out).is_err());
        assert!(out.is_empty());
    }

    #[test]
    fn unrepresentable_writeouts_are_refused() {
        let w = Writeout {
            ts_ns: 0,
            cpu: 0,
            pid: 0,
            tgid: 0,
            swap_type: 0,
            offset: 0,
            order: 0,
            pfn: None,
            flags: 0,
        };
        assert!(writeout_to_bpf(&w, SHIFT).is_ok());
        assert!(
            writeout_to_bpf(
                &Writeout {
                    offset: 1 << SHIFT,
                    ..w
                },
                SHIFT
            )
            .is_err()
        );
        assert!(writeout_to_bpf(&Writeout { swap_type: 64, ..w }, SHIFT).is_err());
        assert!(
            writeout_to_bpf(
                &Writeout {
                    pfn: Some(PFN_UNKNOWN),
                    ..w
                },
                SHIFT
            )
            .is_err()
        );
        assert!(writeout_to_bpf(&w, 0).is_err());
    }

    #[test]
    fn unknown_kinds_decode_to_none_and_bad_tags_are_errors() {
        assert!(matches!(decode_record(24, b"whatever", SHIFT), Ok(None)));
        assert!(matches!(decode_record(0xffff, &[], SHIFT), Ok(None)));
        let ev = Event::Alloc(Alloc {
            ts_ns: 1,
            cpu: 2,
            order: 4,
            id: 5,
            result: AllocResult::Failure,
            latency_ns: None,
            inferred: false,
        });
        let mut body = Vec::new();
        let k = encode_event(&ev, SHIFT, &mut body).ok();
        let last = body.len() - 1;
        body[last] = 7;
        assert!(matches!(
            k.map(|k| decode_record(k.code(), &body, SHIFT)),
            Some(Err(FormatError::BadRecord { kind: 7, .. }))
        ));
        let swapon = Event::SwapOn(SwapOn {
            ts_ns: 0,
            swap_type: 1,
            max: 1 << 20,
            bad: vec![5],
            flags: swap_flags::SOLIDSTATE,
            prio: -2,
        });
        assert_eq!(roundtrip(&swapon).ok().flatten(), Some(swapon));
    }

    #[test]
    fn overlong_strings_are_refused() {
        let ev = Event::Marker(Marker {
            ts_ns: 0,
            label: "x".repeat(70_000),
        });
        assert!(matches!(
            encode_event(&ev, SHIFT, &mut Vec::new()),
            Err(FormatError::InvalidEvent { .. })
        ));
    }
}
