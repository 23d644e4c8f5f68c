//! Helpers every feed uses: one-time diagnostics, the ring-buffer submit, counters, typed loads,
//! the layout and the event header.

use crate::*;

/// One flag per diagnostic that is logged once per session (aya-log, [`once`]).
#[map]
pub(crate) static ONCE: Array<u32> = Array::with_max_entries(diag::NR, 0);

/// The diagnostics BPF programs log (attach-time facts and rare error paths, never one per
/// event): each is logged the first time it happens.
pub(crate) mod diag {
    pub const FIRST_WRITEOUT: u32 = 0;
    pub const RINGBUF_FULL: u32 = 1;
    pub const LAYOUT_MISSING: u32 = 2;
    pub const FIRST_REQUEST: u32 = 3;
    pub const FIRST_FREE: u32 = 4;
    pub const FIRST_SPLIT: u32 = 5;
    pub const NO_CLUSTER_SIZE: u32 = 6;
    pub const FIRST_SWAPIN: u32 = 7;
    pub const FIRST_CLUSTER: u32 = 8;
    pub const FIRST_GRANT: u32 = 9;
    pub const NR: u32 = 10;
}

/// Whether diagnostic `i` is due: true the first time only. The flag is set without an atomic:
/// two CPUs racing may both log it, which is harmless.
#[inline(always)]
pub(crate) fn once(i: u32) -> bool {
    match ONCE.get_ptr_mut(i) {
        // SAFETY: `p` points at an array slot of this map; a racing write is benign (see above).
        Some(p) => unsafe {
            if core::ptr::read_volatile(p) == 0 {
                core::ptr::write_volatile(p, 1);
                true
            } else {
                false
            }
        },
        None => false,
    }
}

/// Logs (once) that the loader did not fill in [`LAYOUT`].
#[inline(always)]
pub(crate) fn layout_missing<C: EbpfContext>(ctx: &C) {
    if once(diag::LAYOUT_MISSING) {
        warn!(
            ctx,
            "LAYOUT was not filled in by the loader; no events are emitted"
        );
    }
}

/// Counts a ring-buffer drop and logs the first.
#[inline(always)]
pub(crate) fn dropped<C: EbpfContext>(ctx: &C) {
    bump(counter::RINGBUF_DROPS);
    if once(diag::RINGBUF_FULL) {
        warn!(
            ctx,
            "the events ring buffer is full; events are dropped and counted (raise --ringbuf-mib)"
        );
    }
}

/// `bpf_ringbuf_output` flags and `bpf_ringbuf_query` selectors (uapi `BPF_RB_*`).
pub(crate) const RB_NO_WAKEUP: u64 = 1;
pub(crate) const RB_FORCE_WAKEUP: u64 = 2;
pub(crate) const RB_AVAIL_DATA: u64 = 0;
pub(crate) const RB_RING_SIZE: u64 = 1;

/// Puts an event into the ring buffer without waking the consumer, which drains on a short
/// timer (`probe::LiveProbe::drain`): a wake-up per record costs an irq_work and a context switch
/// per event in the task that swaps. Every 16th record on a CPU looks at the fill level and, at
/// a quarter full or more, wakes the consumer, so a burst cannot fill the ring between two
/// timer ticks (looking at every record would cost two more helper calls each).
#[inline(always)]
pub(crate) fn submit<C: EbpfContext, T>(ctx: &C, ev: &T) {
    if EVENTS.output::<T>(ev, wake_flags()).is_err() {
        dropped(ctx);
    }
}

/// Wakeup flags for an event about to be submitted: the reader is woken every 16th event once a
/// quarter of the ring is filled, else not at all (it polls).
#[inline(always)]
pub(crate) fn wake_flags() -> u64 {
    let n = match COUNTERS.get_ptr_mut(counter::SUBMITTED) {
        // SAFETY: this CPU's slot (see `bump`).
        Some(p) => unsafe {
            *p += 1;
            *p
        },
        None => 0,
    };
    if n & 15 == 0 && EVENTS.query(RB_AVAIL_DATA) >= EVENTS.query(RB_RING_SIZE) / 4 {
        RB_FORCE_WAKEUP
    } else {
        RB_NO_WAKEUP
    }
}

/// Returns `(a, b)` as scalars (see [`SCRATCH`]), or `None` if the map lookup failed.
#[inline(always)]
pub(crate) fn launder(a: u64, b: u64) -> Option<(u64, u64)> {
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
pub(crate) fn bump(index: u32) {
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
/// [`load_u64`] for a 4-byte member.
///
/// # Safety
/// As [`load_u64`], for a 4-byte member.
#[inline(always)]
pub(crate) unsafe fn load_i32(base: *const u8, off: u32) -> i32 {
    // SAFETY: see the function's contract; a checked PROBE_MEM load, as in `load_u64`.
    unsafe { core::ptr::read_volatile(base.add(off as usize).cast::<i32>()) }
}

#[inline(always)]
pub(crate) unsafe fn load_u64(base: *const u8, off: u32) -> u64 {
    // SAFETY: see the function's contract; the verifier rewrites this into a checked PROBE_MEM load.
    unsafe { core::ptr::read_volatile(base.add(off as usize).cast::<u64>()) }
}

#[inline(always)]
pub(crate) fn layout() -> KernelLayout {
    // SAFETY: LAYOUT is a read-only global the loader initialised before load; the volatile read
    // keeps the compiler from folding the zero initialiser.
    unsafe { core::ptr::read_volatile(&LAYOUT) }
}

#[inline(always)]
pub(crate) fn header(kind: u16, size: usize) -> EventHeader {
    EventHeader {
        kind,
        size: size as u16,
        // SAFETY: plain helper call.
        cpu: unsafe { bpf_get_smp_processor_id() },
        // SAFETY: plain helper call.
        ts_ns: unsafe { bpf_ktime_get_boot_ns() },
    }
}

/// Order of a folio: `_flags_1 & 0xff` when PG_head is set.
///
/// # Safety
/// `folio` must be a BTF-typed `struct folio *` argument of a tracing program.
#[inline(always)]
pub(crate) unsafe fn folio_order(l: &KernelLayout, folio: *const u8) -> u8 {
    // SAFETY: per the contract; offsets come from BTF.
    let flags = unsafe { load_u64(folio, l.folio_flags_off) };
    if (flags >> (l.pg_head & 63)) & 1 == 0 {
        0
    } else if l.order_mode == 1 {
        // SAFETY: as above; `_folio_order` is a byte in the second page of a head page.
        unsafe { core::ptr::read_volatile(folio.add(l.folio_flags1_off as usize)) }
    } else {
        // SAFETY: as above; a head page has a second page holding `_flags_1`.
        (unsafe { load_u64(folio, l.folio_flags1_off) } & 0xff) as u8
    }
}
