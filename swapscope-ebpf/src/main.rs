//! swapscope's BPF programs.
//!
//! Tracepoint tier (any BTF kernel, lockdown=confidentiality included): `tp_btf` on
//! `mm_vmscan_write_folio`. Only direct loads from BTF-typed pointers are used, never
//! `bpf_probe_read_kernel` (refused under lockdown). Struct offsets and page-flag bits come from the
//! running kernel's BTF through the `LAYOUT` global, which the loader writes before load.
#![no_std]
#![no_main]

use aya_ebpf::{
    helpers::{bpf_get_current_pid_tgid, bpf_get_smp_processor_id, bpf_ktime_get_boot_ns},
    macros::{btf_tracepoint, fexit, map},
    maps::{PerCpuArray, RingBuf},
    programs::{BtfTracePointContext, FExitContext},
};
use swapscope_common::{
    EventHeader, KernelLayout, PFN_UNKNOWN, WriteoutEvent, counter, folio_flags, kind,
};

/// Filled in by the loader from BTF (see `swapscope::probe::layout`).
#[unsafe(no_mangle)]
static LAYOUT: KernelLayout = KernelLayout {
    folio_flags_off: 0,
    folio_flags1_off: 0,
    folio_swap_off: 0,
    folio_mapping_off: 0,
    pg_head: 0,
    pg_swapbacked: 0,
    pg_swapcache: 0,
    pg_dirty: 0,
    pg_writeback: 0,
    valid: 0,
};

/// Ring buffer of events; its size is set by the loader (`--ringbuf-pages`).
#[map]
static EVENTS: RingBuf = RingBuf::with_byte_size(1 << 22, 0);

/// Per-CPU counters, indexed by `swapscope_common::counter`.
#[map]
static COUNTERS: PerCpuArray<u64> = PerCpuArray::with_max_entries(counter::NR, 0);

/// Per-CPU scratch words. Members such as `folio->swap` share a union with `void *private`, so the
/// verifier types a direct load of them as a pointer and refuses arithmetic on it; a round trip
/// through map memory turns the value into a plain scalar.
#[map]
static SCRATCH: PerCpuArray<[u64; 2]> = PerCpuArray::with_max_entries(1, 0);

/// Returns `(a, b)` as scalars (see [`SCRATCH`]), or `None` if the map lookup failed.
#[inline(always)]
fn launder(a: u64, b: u64) -> Option<(u64, u64)> {
    let p = SCRATCH.get_ptr_mut(0)?;
    // SAFETY: `p` points at this CPU's scratch slot, used only by this program with preemption
    // disabled; volatile accesses keep the compiler from forwarding the stored values.
    unsafe {
        let p = p.cast::<u64>();
        core::ptr::write_volatile(p, a);
        core::ptr::write_volatile(p.add(1), b);
        Some((
            core::ptr::read_volatile(p),
            core::ptr::read_volatile(p.add(1)),
        ))
    }
}

#[inline(always)]
fn bump(index: u32) {
    if let Some(p) = COUNTERS.get_ptr_mut(index) {
        // SAFETY: a per-CPU array slot is only touched by programs on this CPU, which run with
        // preemption disabled, so the increment cannot race.
        unsafe { *p += 1 };
    }
}

/// Reads a `u64` at `off` bytes into the kernel object `base`.
///
/// # Safety
/// `base` must be a BTF-typed kernel pointer handed to a `tp_btf` program and `off` the offset of
/// an 8-byte member of its type; the verifier checks the access against BTF and turns faults into
/// zero.
#[inline(always)]
unsafe fn load_u64(base: *const u8, off: u32) -> u64 {
    // SAFETY: see the function's contract; the verifier rewrites this into a checked PROBE_MEM load.
    unsafe { core::ptr::read_volatile(base.add(off as usize).cast::<u64>()) }
}

#[btf_tracepoint(function = "mm_vmscan_write_folio")]
pub fn mm_vmscan_write_folio(ctx: BtfTracePointContext) -> i32 {
    // SAFETY: LAYOUT is a read-only global the loader initialised before load; the volatile read
    // keeps the compiler from folding the zero initialiser.
    let l = unsafe { core::ptr::read_volatile(&LAYOUT) };
    bump(counter::HITS);
    if l.valid == 0 {
        return 0;
    }
    let folio: *const u8 = ctx.arg(0);
    // SAFETY: `folio` is the tracepoint's `struct folio *` argument; offsets come from BTF.
    let flags = unsafe { load_u64(folio, l.folio_flags_off) };
    let bit = |b: u32| (flags >> (b & 63)) & 1 == 1;
    if !bit(l.pg_swapbacked) || !bit(l.pg_swapcache) {
        bump(counter::FILTERED);
        return 0;
    }
    // SAFETY: as above.
    let raw_swap = unsafe { load_u64(folio, l.folio_swap_off) };
    // SAFETY: as above.
    let raw_mapping = unsafe { load_u64(folio, l.folio_mapping_off) };
    let Some((swap_val, mapping)) = launder(raw_swap, raw_mapping) else {
        return 0;
    };
    if swap_val == 0 {
        bump(counter::FILTERED);
        return 0;
    }
    let head = bit(l.pg_head);
    let order = if head {
        // SAFETY: as above; `_flags_1` is in the folio's second page, which exists for a head page.
        (unsafe { load_u64(folio, l.folio_flags1_off) } & 0xff) as u8
    } else {
        0
    };
    let mut ev_flags = 0u32;
    if head {
        ev_flags |= folio_flags::HEAD;
    }
    ev_flags |= folio_flags::SWAPBACKED | folio_flags::SWAPCACHE;
    if bit(l.pg_dirty) {
        ev_flags |= folio_flags::DIRTY;
    }
    if bit(l.pg_writeback) {
        ev_flags |= folio_flags::WRITEBACK;
    }
    if mapping & 1 == 1 {
        ev_flags |= folio_flags::ANON;
    }
    let ev = WriteoutEvent {
        header: EventHeader {
            kind: kind::WRITEOUT,
            size: core::mem::size_of::<WriteoutEvent>() as u16,
            // SAFETY: plain helper call.
            cpu: unsafe { bpf_get_smp_processor_id() },
            // SAFETY: plain helper call.
            ts_ns: unsafe { bpf_ktime_get_boot_ns() },
        },
        swap_val,
        pid_tgid: bpf_get_current_pid_tgid(),
        pfn: PFN_UNKNOWN,
        flags: ev_flags,
        order,
        _pad: [0; 3],
    };
    if EVENTS.output::<WriteoutEvent>(&ev, 0).is_err() {
        bump(counter::RINGBUF_DROPS);
    }
    0
}

/// Trial program: `doctor` and the probe planner load (never attach) it to learn whether this
/// kernel allows fentry/fexit at all (lockdown and CONFIG_* can refuse them). The loader points it
/// at whichever swap-allocation function the kernel's BTF has.
#[fexit(function = "folio_alloc_swap")]
pub fn trial_fexit(_ctx: FExitContext) -> i32 {
    0
}

#[cfg(not(test))]
#[panic_handler]
fn panic(_info: &core::panic::PanicInfo) -> ! {
    loop {}
}

#[unsafe(link_section = "license")]
#[unsafe(no_mangle)]
static LICENSE: [u8; 4] = *b"GPL\0";
