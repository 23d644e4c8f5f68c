//! swapscope's BPF programs.
//!
//! Tracepoint tier (any BTF kernel, lockdown=confidentiality included): `tp_btf` on
//! `mm_vmscan_write_folio`. Only direct loads from BTF-typed pointers are used, never
//! `bpf_probe_read_kernel` (refused under lockdown). Struct offsets and page-flag bits come from the
//! running kernel's BTF through the `LAYOUT` global, which the loader writes before load.
#![no_std]
#![no_main]

use aya_ebpf::{
    EbpfContext,
    helpers::{bpf_get_current_pid_tgid, bpf_get_smp_processor_id, bpf_ktime_get_boot_ns},
    macros::{btf_tracepoint, fentry, fexit, map},
    maps::{Array, PerCpuArray, RingBuf},
    programs::{BtfTracePointContext, FEntryContext, FExitContext},
};
use aya_log_ebpf::{info, warn};
use swapscope_common::{
    AllocEvent, ClusterEvent, EventHeader, FreeEvent, KernelLayout, ORDER_UNKNOWN, PFN_UNKNOWN,
    SplitEvent, SwapInEvent, WriteoutEvent, counter, folio_flags, kind,
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
    si_type_off: 0,
    si_inuse_off: 0,
    si_cluster_info_off: 0,
    ci_size: 0,
    order_mode: 0,
    ci_count_off: 0,
    id_key: 0,
    ci_flags_off: 0,
    ci_order_off: 0,
    cluster_codes: [0xff; 8],
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

/// Per CPU: which task entered the allocation hook last, and when (`req_start`), for the
/// request latency. A per-CPU slot, not a hash map: hash map updates take a bucket lock whose
/// release is a preemption point inside the program, and a task preempted inside a program
/// makes the kernel skip that program for every other task on the CPU (`recursion_misses`).
/// A request whose task was preempted and migrated, or interleaved with another on the same
/// CPU, finds another task's entry and is reported untimed.
#[map]
static REQ_START: PerCpuArray<[u64; 2]> = PerCpuArray::with_max_entries(1, 0);

/// One flag per diagnostic that is logged once per session (aya-log, [`once`]).
#[map]
static ONCE: Array<u32> = Array::with_max_entries(diag::NR, 0);

/// The diagnostics BPF programs log (attach-time facts and rare error paths, never one per
/// event): each is logged the first time it happens.
mod diag {
    pub const FIRST_WRITEOUT: u32 = 0;
    pub const RINGBUF_FULL: u32 = 1;
    pub const LAYOUT_MISSING: u32 = 2;
    pub const FIRST_REQUEST: u32 = 3;
    pub const FIRST_FREE: u32 = 4;
    pub const FIRST_SPLIT: u32 = 5;
    pub const NO_CLUSTER_SIZE: u32 = 6;
    pub const FIRST_SWAPIN: u32 = 7;
    pub const FIRST_CLUSTER: u32 = 8;
    pub const NR: u32 = 9;
}

/// Whether diagnostic `i` is due: true the first time only. The flag is set without an atomic:
/// two CPUs racing may both log it, which is harmless.
#[inline(always)]
fn once(i: u32) -> bool {
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
fn layout_missing<C: EbpfContext>(ctx: &C) {
    if once(diag::LAYOUT_MISSING) {
        warn!(
            ctx,
            "LAYOUT was not filled in by the loader; no events are emitted"
        );
    }
}

/// Counts a ring-buffer drop and logs the first.
#[inline(always)]
fn dropped<C: EbpfContext>(ctx: &C) {
    bump(counter::RINGBUF_DROPS);
    if once(diag::RINGBUF_FULL) {
        warn!(
            ctx,
            "the events ring buffer is full; events are dropped and counted (raise --ringbuf-mib)"
        );
    }
}

/// `bpf_ringbuf_output` flags and `bpf_ringbuf_query` selectors (uapi `BPF_RB_*`).
const RB_NO_WAKEUP: u64 = 1;
const RB_FORCE_WAKEUP: u64 = 2;
const RB_AVAIL_DATA: u64 = 0;
const RB_RING_SIZE: u64 = 1;

/// Puts an event into the ring buffer without waking the consumer, which drains on a short
/// timer (`probe::LiveProbe::drain`): a wake-up per record costs an irq_work and a context switch
/// per event in the task that swaps. Every 16th record on a CPU looks at the fill level and, at
/// a quarter full or more, wakes the consumer, so a burst cannot fill the ring between two
/// timer ticks (looking at every record would cost two more helper calls each).
#[inline(always)]
fn submit<C: EbpfContext, T>(ctx: &C, ev: &T) {
    let n = match COUNTERS.get_ptr_mut(counter::SUBMITTED) {
        // SAFETY: this CPU's slot (see `bump`).
        Some(p) => unsafe {
            *p += 1;
            *p
        },
        None => 0,
    };
    let flags = if n & 15 == 0 && EVENTS.query(RB_AVAIL_DATA) >= EVENTS.query(RB_RING_SIZE) / 4 {
        RB_FORCE_WAKEUP
    } else {
        RB_NO_WAKEUP
    };
    if EVENTS.output::<T>(ev, flags).is_err() {
        dropped(ctx);
    }
}

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
    let l = layout();
    bump(counter::HITS);
    if l.valid == 0 {
        layout_missing(&ctx);
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
    // SAFETY: as above.
    let order = unsafe { folio_order(&l, folio) };
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
        header: header(kind::WRITEOUT, core::mem::size_of::<WriteoutEvent>()),
        swap_val,
        pid_tgid: bpf_get_current_pid_tgid(),
        pfn: PFN_UNKNOWN,
        flags: ev_flags,
        order,
        _pad: [0; 3],
    };
    submit(&ctx, &ev);
    if once(diag::FIRST_WRITEOUT) {
        info!(
            &ctx,
            "first swap write-out seen: folio order {}, swap entry {:x}", order, swap_val
        );
    }
    0
}

#[inline(always)]
fn layout() -> KernelLayout {
    // SAFETY: LAYOUT is a read-only global the loader initialised before load; the volatile read
    // keeps the compiler from folding the zero initialiser.
    unsafe { core::ptr::read_volatile(&LAYOUT) }
}

#[inline(always)]
fn header(kind: u16, size: usize) -> EventHeader {
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
unsafe fn folio_order(l: &KernelLayout, folio: *const u8) -> u8 {
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

/// Emits the result of a request for `folio`.
///
/// # Safety
/// As [`folio_order`].
#[inline(always)]
unsafe fn emit_alloc<C: EbpfContext>(ctx: &C, folio: *const u8, success: bool) -> u32 {
    let l = layout();
    if l.valid == 0 {
        layout_missing(ctx);
        return 0;
    }
    // SAFETY: per the contract.
    let order = unsafe { folio_order(&l, folio) };
    // SAFETY: per the contract.
    let raw_swap = unsafe { load_u64(folio, l.folio_swap_off) };
    let Some((swap_val, ptr)) = launder(raw_swap, folio as u64) else {
        return 0;
    };
    let pid_tgid = bpf_get_current_pid_tgid();
    let hdr = header(kind::ALLOC, core::mem::size_of::<AllocEvent>());
    let latency_ns = match REQ_START.get_ptr_mut(0) {
        // SAFETY: this CPU's slot; programs run with migration disabled, so nothing else on
        // this CPU writes it while this one runs (a preempting task's program is skipped).
        Some(p) => unsafe {
            let [task, t0] = core::ptr::read_volatile(p);
            if task == pid_tgid && t0 != 0 && t0 <= hdr.ts_ns {
                core::ptr::write_volatile(p, [0, 0]);
                (hdr.ts_ns - t0).clamp(1, u64::from(u32::MAX)) as u32
            } else {
                0
            }
        },
        None => 0,
    };
    let ev = AllocEvent {
        header: hdr,
        folio_id: (ptr >> 6) ^ l.id_key,
        swap_val: if success { swap_val } else { 0 },
        pid_tgid,
        success: u8::from(success),
        order,
        _pad: [0; 2],
        latency_ns,
    };
    submit(ctx, &ev);
    if once(diag::FIRST_REQUEST) {
        info!(
            ctx,
            "first swap-slot request seen: folio order {}, granted {}",
            order,
            u32::from(success)
        );
    }
    0
}

/// The entry of whichever allocation hook the planner chose (the loader attaches it to that
/// function): notes when this task's request started, so its exit can report the latency.
#[fentry(function = "folio_alloc_swap")]
pub fn req_start(_ctx: FEntryContext) -> u32 {
    let task = bpf_get_current_pid_tgid();
    // SAFETY: plain helper call.
    let t = unsafe { bpf_ktime_get_boot_ns() };
    if let Some(p) = REQ_START.get_ptr_mut(0) {
        // SAFETY: this CPU's slot (see REQ_START).
        unsafe { core::ptr::write_volatile(p, [task, t]) };
    }
    0
}

/// 6.17+: `int folio_alloc_swap(struct folio *folio, gfp_t gfp)`; 0 is success.
#[fexit(function = "folio_alloc_swap")]
pub fn req_folio_alloc_swap(ctx: FExitContext) -> u32 {
    let folio: *const u8 = ctx.arg(0);
    let ret: i64 = ctx.arg(2);
    // SAFETY: arg 0 is the BTF-typed folio pointer.
    unsafe { emit_alloc(&ctx, folio, ret as i32 == 0) }
}

/// The 2026 mm tree: `int folio_alloc_swap(struct folio *folio)`; 0 is success.
#[fexit(function = "folio_alloc_swap")]
pub fn req_folio_alloc_swap_1(ctx: FExitContext) -> u32 {
    let folio: *const u8 = ctx.arg(0);
    let ret: i64 = ctx.arg(1);
    // SAFETY: arg 0 is the BTF-typed folio pointer.
    unsafe { emit_alloc(&ctx, folio, ret as i32 == 0) }
}

/// Up to 6.16: `bool add_to_swap(struct folio *folio)`; true is success.
#[fexit(function = "add_to_swap")]
pub fn req_add_to_swap(ctx: FExitContext) -> u32 {
    let folio: *const u8 = ctx.arg(0);
    let ret: u64 = ctx.arg(1);
    // SAFETY: arg 0 is the BTF-typed folio pointer.
    unsafe { emit_alloc(&ctx, folio, ret & 0xff != 0) }
}

/// Emits a free of `nr` slots from `offset` on the device `si`.
///
/// # Safety
/// `si` must be a BTF-typed `struct swap_info_struct *` argument of a tracing program.
#[inline(always)]
unsafe fn emit_free<C: EbpfContext>(ctx: &C, si: *const u8, offset: u64, nr: u64) -> u32 {
    let l = layout();
    if l.valid == 0 {
        layout_missing(ctx);
        return 0;
    }
    // SAFETY: per the contract; offsets come from BTF.
    let ty = unsafe { core::ptr::read_volatile(si.add(l.si_type_off as usize)) };
    // SAFETY: as above. `inuse_pages` is an `unsigned int` up to 6.13 and an `atomic_long_t`
    // after; the low 32 bits are at its start on little-endian either way.
    let inuse = u64::from(unsafe {
        core::ptr::read_volatile(si.add(l.si_inuse_off as usize).cast::<u32>())
    });
    let ev = FreeEvent {
        header: header(kind::FREE, core::mem::size_of::<FreeEvent>()),
        offset,
        inuse,
        nr: nr as u32,
        swap_type: ty,
        _pad: [0; 3],
    };
    submit(ctx, &ev);
    if once(diag::FIRST_FREE) {
        info!(
            ctx,
            "first swap-slot free seen: {} slots on swap type {}", nr, ty
        );
    }
    0
}

/// Offset part of a swap entry (`SWP_TYPE_SHIFT` = 58 on every 64-bit kernel with 5 type bits).
#[inline(always)]
fn entry_offset(val: u64) -> u64 {
    val & ((1u64 << 58) - 1)
}

/// 6.14–6.18: `swap_entry_range_free(si, ci, entry, nr)` / `swap_entries_free(si, ci, entry, nr)`.
#[fentry(function = "swap_entries_free")]
pub fn free_si_ci_entry_nr(ctx: FEntryContext) -> u32 {
    let entry: u64 = ctx.arg(2);
    // SAFETY: arg 0 is the BTF-typed swap_info_struct pointer.
    unsafe { emit_free(&ctx, ctx.arg(0), entry_offset(entry), ctx.arg(3)) }
}

/// 6.12–6.13: `swap_entry_range_free(si, entry, nr)`.
#[fentry(function = "swap_entry_range_free")]
pub fn free_si_entry_nr(ctx: FEntryContext) -> u32 {
    let entry: u64 = ctx.arg(1);
    // SAFETY: arg 0 is the BTF-typed swap_info_struct pointer.
    unsafe { emit_free(&ctx, ctx.arg(0), entry_offset(entry), ctx.arg(2)) }
}

/// Up to 6.11: `swap_entry_free(si, entry)`, one slot.
#[fentry(function = "swap_entry_free")]
pub fn free_si_entry(ctx: FEntryContext) -> u32 {
    let entry: u64 = ctx.arg(1);
    // SAFETY: arg 0 is the BTF-typed swap_info_struct pointer.
    unsafe { emit_free(&ctx, ctx.arg(0), entry_offset(entry), 1) }
}

/// 6.1: `swap_range_free(si, unsigned long offset, unsigned int nr)`, where every free of a slot
/// ends (`swap_entry_free` is inlined there).
#[fentry(function = "swap_range_free")]
pub fn free_si_offset_nr(ctx: FEntryContext) -> u32 {
    let offset: u64 = ctx.arg(1);
    let nr: u64 = ctx.arg(2);
    // SAFETY: arg 0 is the BTF-typed swap_info_struct pointer.
    unsafe { emit_free(&ctx, ctx.arg(0), offset, nr & 0xffff_ffff) }
}

/// Up to 6.9: `swap_free_cluster(si, idx)`, a whole PMD-size cluster.
#[fentry(function = "swap_free_cluster")]
pub fn free_si_cluster(ctx: FEntryContext) -> u32 {
    let idx: u64 = ctx.arg(1);
    // SAFETY: arg 0 is the BTF-typed swap_info_struct pointer.
    unsafe { emit_free(&ctx, ctx.arg(0), idx * 512, 512) }
}

/// 7.x: `__swap_cluster_free_entries(si, ci, ci_start, nr)`: offsets relative to the cluster.
#[fentry(function = "__swap_cluster_free_entries")]
pub fn free_si_ci_start_nr(ctx: FEntryContext) -> u32 {
    let l = layout();
    if l.valid == 0 || l.ci_size == 0 {
        if once(diag::NO_CLUSTER_SIZE) {
            warn!(
                &ctx,
                "__swap_cluster_free_entries fired but the cluster size is unknown; frees are not emitted"
            );
        }
        return 0;
    }
    let si: *const u8 = ctx.arg(0);
    let ci: *const u8 = ctx.arg(1);
    let start: u64 = ctx.arg(2);
    // SAFETY: arg 0 is the BTF-typed swap_info_struct pointer.
    let Some(idx) = (unsafe { cluster_index(&l, si, ci) }) else {
        return 0;
    };
    // SAFETY: as above.
    unsafe { emit_free(&ctx, si, idx * 512 + (start & 511), ctx.arg(3)) }
}

/// The `cluster_list` code of a kernel `enum swap_cluster_flags` value. The table is read as one
/// word and shifted: the verifier refuses a variable-offset read of the stack copy of the layout.
#[inline(always)]
fn cluster_code(l: &KernelLayout, raw: u64) -> u8 {
    if raw >= 8 {
        return swapscope_common::cluster_list::UNKNOWN;
    }
    (u64::from_le_bytes(l.cluster_codes) >> (raw * 8)) as u8
}

/// Index of cluster `ci` on device `si`: its distance from `si->cluster_info` in clusters.
///
/// # Safety
/// `si` must be a BTF-typed `struct swap_info_struct *` argument of a tracing program and
/// `l.ci_size` non-zero.
#[inline(always)]
unsafe fn cluster_index(l: &KernelLayout, si: *const u8, ci: *const u8) -> Option<u64> {
    // SAFETY: per the contract; the member offset comes from BTF.
    let base = unsafe { load_u64(si, l.si_cluster_info_off) };
    let (base, ci) = launder(base, ci as u64)?;
    Some(ci.wrapping_sub(base) / u64::from(l.ci_size.max(1)))
}

/// Emits a cluster put on the list `new_flags` names (the kernel's `enum swap_cluster_flags`,
/// read from the cluster's flags as its previous list), or, with `None`, taken off the lists by
/// an allocator (its previous list is not read).
///
/// # Safety
/// `si` and `ci` must be BTF-typed `struct swap_info_struct *` / `struct swap_cluster_info *`
/// arguments (or the return value) of a tracing program.
#[inline(always)]
unsafe fn emit_cluster<C: EbpfContext>(
    ctx: &C,
    si: *const u8,
    ci: *const u8,
    new_flags: Option<u64>,
) -> u32 {
    let l = layout();
    if l.valid == 0 || l.ci_size == 0 {
        layout_missing(ctx);
        return 0;
    }
    // SAFETY: per the contract.
    let Some(idx) = (unsafe { cluster_index(&l, si, ci) }) else {
        return 0;
    };
    // SAFETY: per the contract; member offsets come from BTF.
    let (count, flags, order, ty) = unsafe {
        (
            core::ptr::read_volatile(ci.add(l.ci_count_off as usize).cast::<u16>()),
            core::ptr::read_volatile(ci.add(l.ci_flags_off as usize)),
            core::ptr::read_volatile(ci.add(l.ci_order_off as usize)),
            core::ptr::read_volatile(si.add(l.si_type_off as usize)),
        )
    };
    let (list, old_list) = match new_flags {
        Some(new) => (cluster_code(&l, new), cluster_code(&l, u64::from(flags))),
        None => (
            swapscope_common::cluster_list::ISOLATED,
            swapscope_common::cluster_list::UNKNOWN,
        ),
    };
    let ev = ClusterEvent {
        header: header(kind::CLUSTER, core::mem::size_of::<ClusterEvent>()),
        cluster: idx as u32,
        count,
        swap_type: ty,
        list,
        old_list,
        order,
        _pad: [0; 6],
    };
    submit(ctx, &ev);
    if once(diag::FIRST_CLUSTER) {
        info!(
            ctx,
            "first cluster list move seen: cluster {} to list {} (count {})",
            idx as u32,
            list,
            count
        );
    }
    0
}

/// 6.14+: `void move_cluster(si, ci, struct list_head *list, enum swap_cluster_flags new_flags)`:
/// every insertion into a cluster list (free, nonfull, frag, full, discard).
#[fentry(function = "move_cluster")]
pub fn cluster_move(ctx: FEntryContext) -> u32 {
    // SAFETY: args 0 and 1 are the BTF-typed swap_info_struct and swap_cluster_info pointers.
    unsafe { emit_cluster(&ctx, ctx.arg(0), ctx.arg(1), Some(ctx.arg(3))) }
}

/// Emits the isolation of the cluster an `isolate_lock_cluster` returned (NULL: none).
#[inline(always)]
fn emit_isolated(ctx: &FExitContext, ci: *const u8) -> u32 {
    if ci.is_null() {
        return 0;
    }
    // SAFETY: arg 0 is the BTF-typed swap_info_struct pointer, `ci` the function's BTF-typed
    // return value.
    unsafe { emit_cluster(ctx, ctx.arg(0), ci, None) }
}

/// 6.14–6.17 and 7.x: `struct swap_cluster_info *isolate_lock_cluster(si, struct list_head *)`:
/// a cluster taken off a list by an allocator.
#[fexit(function = "isolate_lock_cluster")]
pub fn cluster_isolate(ctx: FExitContext) -> u32 {
    emit_isolated(&ctx, ctx.arg(2))
}

/// 6.18: `isolate_lock_cluster(si, struct list_head *, int order)`.
#[fexit(function = "isolate_lock_cluster")]
pub fn cluster_isolate_order(ctx: FExitContext) -> u32 {
    emit_isolated(&ctx, ctx.arg(3))
}

#[inline(always)]
fn emit_split<C: EbpfContext>(ctx: &C, folio_ptr: u64, old_order: u8, new_order: u64) -> u32 {
    let l = layout();
    if l.valid == 0 {
        layout_missing(ctx);
        return 0;
    }
    let Some((ptr, _)) = launder(folio_ptr, 0) else {
        return 0;
    };
    let ev = SplitEvent {
        header: header(kind::SPLIT, core::mem::size_of::<SplitEvent>()),
        folio_id: (ptr >> 6) ^ l.id_key,
        pid_tgid: bpf_get_current_pid_tgid(),
        old_order,
        new_order: new_order as u8,
        _pad: [0; 6],
    };
    submit(ctx, &ev);
    if once(diag::FIRST_SPLIT) {
        info!(
            ctx,
            "first large-folio split seen: order {} to {}", old_order, new_order as u8
        );
    }
    0
}

/// 6.15+: `__folio_split(struct folio *folio, unsigned int new_order, ...)`.
#[fentry(function = "__folio_split")]
pub fn split_folio(ctx: FEntryContext) -> u32 {
    let l = layout();
    let folio: *const u8 = ctx.arg(0);
    let new_order: u64 = ctx.arg(1);
    let order = if l.valid == 0 {
        0
    } else {
        // SAFETY: arg 0 is the BTF-typed folio pointer.
        unsafe { folio_order(&l, folio) }
    };
    emit_split(&ctx, folio as u64, order, new_order)
}

/// 6.8–6.14: `split_huge_page_to_list_to_order(struct page *page, struct list_head *list,
/// unsigned int new_order)`. Only a `struct page` is seen, so the old order is unknown.
#[fentry(function = "split_huge_page_to_list_to_order")]
pub fn split_page_to_order(ctx: FEntryContext) -> u32 {
    let page: u64 = ctx.arg(0);
    let new_order: u64 = ctx.arg(2);
    emit_split(&ctx, page, ORDER_UNKNOWN, new_order)
}

/// Emits a swap-in of `folio` (or, on 6.1, of a `struct page`, whose `flags` and `private`
/// sit where a folio's `flags` and `swap` do).
///
/// # Safety
/// `folio` must be a BTF-typed `struct folio *` (`is_page`: `struct page *`) argument of a
/// tracing program.
#[inline(always)]
unsafe fn emit_swapin<C: EbpfContext>(ctx: &C, folio: *const u8, is_page: bool) -> u32 {
    let l = layout();
    if l.valid == 0 {
        layout_missing(ctx);
        return 0;
    }
    // SAFETY: per the contract; offsets come from BTF.
    let flags = unsafe { load_u64(folio, l.folio_flags_off) };
    let bit = |b: u32| (flags >> (b & 63)) & 1 == 1;
    let order = if !is_page {
        // SAFETY: per the contract.
        unsafe { folio_order(&l, folio) }
    } else if bit(l.pg_head) {
        // A `struct page` has no second page the verifier lets us read.
        ORDER_UNKNOWN
    } else {
        0
    };
    // SAFETY: per the contract.
    let raw_swap = unsafe { load_u64(folio, l.folio_swap_off) };
    let Some((swap_val, ptr)) = launder(raw_swap, folio as u64) else {
        return 0;
    };
    let mut ev_flags = 0u32;
    if bit(l.pg_swapbacked) {
        ev_flags |= folio_flags::SWAPBACKED;
    }
    if bit(l.pg_swapcache) {
        ev_flags |= folio_flags::SWAPCACHE;
    }
    let ev = SwapInEvent {
        header: header(kind::SWAPIN, core::mem::size_of::<SwapInEvent>()),
        swap_val,
        pid_tgid: bpf_get_current_pid_tgid(),
        folio_id: (ptr >> 6) ^ l.id_key,
        flags: ev_flags,
        order,
        _pad: [0; 3],
    };
    submit(ctx, &ev);
    if once(diag::FIRST_SWAPIN) {
        info!(
            ctx,
            "first swap-in seen: folio order {}, swap entry {:x}", order, swap_val
        );
    }
    0
}

/// 6.10–6.18: `void swap_read_folio(struct folio *folio, [bool sync,] struct swap_iocb **plug)`.
#[fentry(function = "swap_read_folio")]
pub fn swapin_folio(ctx: FEntryContext) -> u32 {
    // SAFETY: arg 0 is the BTF-typed folio pointer.
    unsafe { emit_swapin(&ctx, ctx.arg(0), false) }
}

/// 7.x: `void swap_read_folio(struct swap_io_ctx *ctx, struct folio *folio)`.
#[fentry(function = "swap_read_folio")]
pub fn swapin_ctx_folio(ctx: FEntryContext) -> u32 {
    // SAFETY: arg 1 is the BTF-typed folio pointer.
    unsafe { emit_swapin(&ctx, ctx.arg(1), false) }
}

/// Up to 6.9: `int swap_readpage(struct page *page, bool sync, struct swap_iocb **plug)`.
#[fentry(function = "swap_readpage")]
pub fn swapin_page(ctx: FEntryContext) -> u32 {
    // SAFETY: arg 0 is the BTF-typed page pointer.
    unsafe { emit_swapin(&ctx, ctx.arg(0), true) }
}

#[cfg(not(test))]
#[panic_handler]
fn panic(_info: &core::panic::PanicInfo) -> ! {
    loop {}
}

#[unsafe(link_section = "license")]
#[unsafe(no_mangle)]
static LICENSE: [u8; 4] = *b"GPL\0";
