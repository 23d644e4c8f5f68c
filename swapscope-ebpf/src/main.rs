//! swapscope's BPF programs.
//!
//! Tracepoint tier (any BTF kernel, lockdown=confidentiality included): `tp_btf` on
//! `mm_vmscan_write_folio`. Only direct loads from BTF-typed pointers are used, never
//! `bpf_probe_read_kernel` (refused under lockdown), except in one full-tier program that has a
//! plain fallback (`grant_scan_slots_batch`). Struct offsets and page-flag bits come from the
//! running kernel's BTF through the `LAYOUT` global, which the loader writes before load.
#![no_std]
#![no_main]

use aya_ebpf::{
    EbpfContext,
    helpers::{
        bpf_get_current_pid_tgid, bpf_get_smp_processor_id, bpf_ktime_get_boot_ns,
        bpf_probe_read_kernel_buf,
    },
    macros::{btf_tracepoint, fentry, fexit, map},
    maps::{Array, PerCpuArray, RingBuf},
    programs::{BtfTracePointContext, FEntryContext, FExitContext},
};
use aya_log_ebpf::{info, warn};
use swapscope_common::{
    AllocEvent, ClusterEvent, EventHeader, FreeEvent, GRANT_BATCH_MAX, GrantBatchEvent, GrantEvent,
    KernelLayout, ORDER_UNKNOWN, PFN_UNKNOWN, SplitEvent, SwapInEvent, WriteoutEvent, counter,
    folio_flags, kind, rescue,
};

/// Three programs per hook that runs with preemption enabled (see [`level`]): `$primary`,
/// `$rescue` and `$rescue2`, attached to the same hook in that order; whichever the kernel runs
/// first delivers the events, the others those it had to skip ([`swapscope_common::rescue`]).
/// All run `$body`. `$first` says in which order the kernel runs a hook's programs ([`Twin`]);
/// argument `$key` of the hook (the folio or page pointer, different for each invocation of a
/// task) names the invocation.
macro_rules! twin {
    ($attr:meta, $first:expr, $key:literal, $primary:ident, $rescue:ident, $rescue2:ident, $ctx:ty, $ret:ty, $slot:expr, $body:ident) => {
        #[$attr]
        pub fn $primary(ctx: $ctx) -> $ret {
            let key: u64 = ctx.arg($key);
            level($slot, 0, $first, key, || $body(&ctx)) as $ret
        }

        #[$attr]
        pub fn $rescue(ctx: $ctx) -> $ret {
            let key: u64 = ctx.arg($key);
            level($slot, 1, $first, key, || $body(&ctx)) as $ret
        }

        #[$attr]
        pub fn $rescue2(ctx: $ctx) -> $ret {
            let key: u64 = ctx.arg($key);
            level($slot, 2, $first, key, || $body(&ctx)) as $ret
        }
    };
}

/// In which order the kernel runs a hook's programs. A BTF tracepoint calls them in attach order
/// (`tracepoint_probe_register` appends); a trampoline (fentry/fexit) in the reverse
/// (`bpf_trampoline_link_prog` adds at the head of its list), so there the last twin attached
/// runs first and plays the first program's part (see [`level`]).
#[derive(Clone, Copy, PartialEq, Eq)]
enum Twin {
    PrimaryFirst,
    RescueFirst,
}

/// Filled in by the loader from BTF (see `swapscope_probe::probe::btf::KernelBtf::kernel_layout`).
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
    nr_cpus: 0,
    _pad: 0,
};

/// Ring buffer of events; the loader sets its size (`record --ringbuf-mib`, `LiveOptions::ringbuf_bytes`).
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

/// Per CPU (indexed by CPU number; the loader sizes it to the possible CPUs): which task entered
/// the allocation hook last there, and when (`req_start`). It gives a request its latency and
/// the CPU it entered on — whose per-CPU caches of that moment it used (6.12's slot cache) —
/// also when its task has migrated since: the exit looks for its task's entry on the other
/// CPUs. Written by each CPU in its own entry only. Not a hash map: hash map updates take a
/// bucket lock whose release is a preemption point inside the program (see [`rescue`]). A
/// request interleaved with another on the same CPU finds another task's entry and is reported
/// untimed, at its exit CPU.
#[map]
static REQ_START: Array<[u64; 2]> = Array::with_max_entries(MAX_CPUS, 0);

/// The most CPUs [`REQ_START`] is searched over (the verifier needs a bound).
const MAX_CPUS: u32 = 512;

/// The CPU whose [`REQ_START`] entry holds `task` (this one first), with a pointer to it.
#[inline(always)]
fn entry_of(task: u64) -> Option<(u32, *mut [u64; 2])> {
    // SAFETY: plain helper call.
    let here = unsafe { bpf_get_smp_processor_id() };
    let holds = |cpu: u32| -> Option<*mut [u64; 2]> {
        let p = REQ_START.get_ptr_mut(cpu)?;
        // SAFETY: an entry of an array map; another CPU may write it concurrently (its own
        // entry only), which at worst makes this request untimed.
        (unsafe { core::ptr::read_volatile(p) }[0] == task).then_some(p)
    };
    if let Some(p) = holds(here) {
        return Some((here, p));
    }
    let n = layout().nr_cpus.min(MAX_CPUS);
    for cpu in 0..MAX_CPUS {
        if cpu >= n {
            break;
        }
        if cpu != here
            && let Some(p) = holds(cpu)
        {
            return Some((cpu, p));
        }
    }
    None
}

/// The CPU the current task entered the allocator on and when, from its [`REQ_START`] entry:
/// `(CPU_UNKNOWN, 0)` when it has none.
#[inline(always)]
fn entry_start() -> (u32, u64) {
    match entry_of(bpf_get_current_pid_tgid()) {
        // SAFETY: an entry of an array map (see `entry_of`).
        Some((cpu, p)) => (cpu, unsafe { core::ptr::read_volatile(p) }[1]),
        None => (swapscope_common::CPU_UNKNOWN, 0),
    }
}

/// Programs per hook that runs preemptible: the primary and its rescue twins (see [`level`]).
const LEVELS: u32 = 3;

/// Per rescued feed ([`swapscope_common::rescue`]): how many programs of its chain are attached
/// (written by the loader: 1 once the primary is, more as twins attach). A program runs a chain
/// position from it and its own attach index (see [`level`]); one whose index is not attached
/// yet does nothing.
#[map]
static CHAIN: Array<u32> = Array::with_max_entries(rescue::NR, 0);

/// Task slots per feed in [`DELIVERED`] (a power of two).
const TASK_SLOTS: u32 = 4096;

/// Per rescued feed and task (thread id modulo [`TASK_SLOTS`]): the invocation (task, the hook's
/// `key` argument) a program of the chain last delivered, so the programs running after it on
/// the same hook skip it. Per task, not per CPU: a task may migrate between two programs of a
/// trampoline, and a task is inside at most one invocation of a hook at a time. An array, not a
/// hash map: hash map updates take a bucket lock whose release is a preemption point.
#[map]
static DELIVERED: Array<[u64; 2]> = Array::with_max_entries(rescue::NR * TASK_SLOTS, 0);

/// One program of a hook's chain. The kernel skips a program entered on a CPU where another
/// task is inside it (preempted there, `recursion_misses`), from the trampoline's entry to its
/// exit; so the chain's first program to run delivers every invocation it runs for, and each
/// later one delivers what no program before it did — the invocations the kernel made the
/// earlier ones skip — counting them (`counter::RESCUED`). Which one runs first depends on the
/// hook ([`Twin`]) and on how many are attached ([`CHAIN`]). Deciding by what was delivered, not
/// by which tasks are inside the earlier programs, also covers a task preempted in the
/// trampoline before or after a program's body, where the kernel already (or still) counts it
/// as inside.
#[inline(always)]
fn level(slot: u32, attach: u32, first: Twin, key: u64, body: impl FnOnce() -> u32) -> u32 {
    let n = CHAIN.get(slot).copied().unwrap_or(0).min(LEVELS);
    if attach >= n {
        return 0;
    }
    let pos = match first {
        Twin::PrimaryFirst => attach,
        Twin::RescueFirst => n - 1 - attach,
    };
    let me = bpf_get_current_pid_tgid();
    let entry = DELIVERED.get_ptr_mut(slot * TASK_SLOTS + ((me as u32) & (TASK_SLOTS - 1)));
    let last = pos + 1 == n;
    if pos > 0 {
        if let Some(p) = entry {
            // SAFETY: an entry of an array map; only this task (or one whose id collides
            // modulo TASK_SLOTS, which at worst delivers an invocation twice) writes it.
            let seen = unsafe { core::ptr::read_volatile(p) };
            if seen[0] == me && seen[1] == key {
                if last {
                    // SAFETY: as above.
                    unsafe { core::ptr::write_volatile(p, [0, 0]) };
                }
                return 0;
            }
        }
        bump(counter::RESCUED + slot);
    }
    let r = body();
    if !last && let Some(p) = entry {
        // SAFETY: as above.
        unsafe { core::ptr::write_volatile(p, [me, key]) };
    }
    r
}

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
    pub const FIRST_GRANT: u32 = 9;
    pub const NR: u32 = 10;
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
    if EVENTS.output::<T>(ev, wake_flags()).is_err() {
        dropped(ctx);
    }
}

/// Wakeup flags for an event about to be submitted: the reader is woken every 16th event once a
/// quarter of the ring is filled, else not at all (it polls).
#[inline(always)]
fn wake_flags() -> u64 {
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

twin!(
    btf_tracepoint(function = "mm_vmscan_write_folio"),
    Twin::PrimaryFirst,
    0,
    mm_vmscan_write_folio,
    mm_vmscan_write_folio_rescue,
    mm_vmscan_write_folio_rescue2,
    BtfTracePointContext,
    i32,
    rescue::WRITEOUT,
    writeout
);

#[inline(always)]
fn writeout(ctx: &BtfTracePointContext) -> u32 {
    let l = layout();
    bump(counter::HITS);
    if l.valid == 0 {
        layout_missing(ctx);
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
    submit(ctx, &ev);
    if once(diag::FIRST_WRITEOUT) {
        info!(
            ctx,
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
    let mut hdr = header(kind::ALLOC, core::mem::size_of::<AllocEvent>());
    let latency_ns = match entry_of(pid_tgid) {
        // SAFETY: `p` is this request's entry (see `entry_of`); cleared so a later request of
        // the task is not timed from it.
        Some((cpu, p)) => unsafe {
            let [_, t0] = core::ptr::read_volatile(p);
            core::ptr::write_volatile(p, [0, 0]);
            hdr.cpu = cpu;
            if t0 != 0 && t0 <= hdr.ts_ns {
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

// The entry of whichever allocation hook the planner chose (the loader attaches it to that
// function): notes when this task's request started, so its exit can report the latency.
twin!(
    fentry(function = "folio_alloc_swap"),
    Twin::RescueFirst,
    0,
    req_start,
    req_start_rescue,
    req_start_rescue2,
    FEntryContext,
    u32,
    rescue::ALLOC_TIMING,
    req_start_body
);

#[inline(always)]
fn req_start_body(_ctx: &FEntryContext) -> u32 {
    let task = bpf_get_current_pid_tgid();
    // SAFETY: plain helper calls.
    let (t, cpu) = unsafe { (bpf_ktime_get_boot_ns(), bpf_get_smp_processor_id()) };
    if let Some(p) = REQ_START.get_ptr_mut(cpu) {
        // SAFETY: this CPU's own entry (see REQ_START).
        unsafe { core::ptr::write_volatile(p, [task, t]) };
    }
    0
}

// 6.17+: `int folio_alloc_swap(struct folio *folio, gfp_t gfp)`; 0 is success.
twin!(
    fexit(function = "folio_alloc_swap"),
    Twin::RescueFirst,
    0,
    req_folio_alloc_swap,
    req_folio_alloc_swap_rescue,
    req_folio_alloc_swap_rescue2,
    FExitContext,
    u32,
    rescue::ALLOC,
    req_folio_alloc_swap_body
);

#[inline(always)]
fn req_folio_alloc_swap_body(ctx: &FExitContext) -> u32 {
    let folio: *const u8 = ctx.arg(0);
    let ret: i64 = ctx.arg(2);
    // SAFETY: arg 0 is the BTF-typed folio pointer.
    unsafe { emit_alloc(ctx, folio, ret as i32 == 0) }
}

// The 2026 mm tree: `int folio_alloc_swap(struct folio *folio)`; 0 is success.
twin!(
    fexit(function = "folio_alloc_swap"),
    Twin::RescueFirst,
    0,
    req_folio_alloc_swap_1,
    req_folio_alloc_swap_1_rescue,
    req_folio_alloc_swap_1_rescue2,
    FExitContext,
    u32,
    rescue::ALLOC,
    req_folio_alloc_swap_1_body
);

#[inline(always)]
fn req_folio_alloc_swap_1_body(ctx: &FExitContext) -> u32 {
    let folio: *const u8 = ctx.arg(0);
    let ret: i64 = ctx.arg(1);
    // SAFETY: arg 0 is the BTF-typed folio pointer.
    unsafe { emit_alloc(ctx, folio, ret as i32 == 0) }
}

// Up to 6.16: `bool add_to_swap(struct folio *folio)`; true is success.
twin!(
    fexit(function = "add_to_swap"),
    Twin::RescueFirst,
    0,
    req_add_to_swap,
    req_add_to_swap_rescue,
    req_add_to_swap_rescue2,
    FExitContext,
    u32,
    rescue::ALLOC,
    req_add_to_swap_body
);

#[inline(always)]
fn req_add_to_swap_body(ctx: &FExitContext) -> u32 {
    let folio: *const u8 = ctx.arg(0);
    let ret: u64 = ctx.arg(1);
    // SAFETY: arg 0 is the BTF-typed folio pointer.
    unsafe { emit_alloc(ctx, folio, ret & 0xff != 0) }
}

/// Emits slots granted by the allocator: `nr` allocations of 2^`order` slots, the first at
/// `swap_val`, for the current task (`folio_id` 0 when the hook sees no folio). Called only from
/// hooks that run inside the allocator's lock, which is what orders grants in the ring buffer
/// as the kernel ordered its decisions.
#[inline(always)]
fn emit_grant<C: EbpfContext>(
    ctx: &C,
    folio_id: u64,
    swap_val: u64,
    nr: u16,
    order: u8,
    (req_cpu, start_ns): (u32, u64),
) -> u32 {
    let ev = GrantEvent {
        header: header(kind::GRANT, core::mem::size_of::<GrantEvent>()),
        folio_id,
        swap_val,
        pid_tgid: bpf_get_current_pid_tgid(),
        nr,
        order,
        _pad: 0,
        req_cpu,
        start_ns,
    };
    submit(ctx, &ev);
    if once(diag::FIRST_GRANT) {
        info!(
            ctx,
            "first slot grant seen inside the allocator's lock: {} x order {}, swap entry {:x}",
            nr,
            order,
            swap_val
        );
    }
    0
}

/// 7.x: `void __swap_cache_add_folio(struct swap_cluster_info *ci, struct folio *folio,
/// swp_entry_t entry)`, called by the allocator (`__swap_cluster_alloc_entries`, under the
/// cluster lock and the per-CPU cluster's local lock) for the folio it just placed, and by swap-in
/// for a new folio read back. A folio being swapped out still has its mapping (anon or shmem); a
/// folio being read in has none yet, which tells the two apart.
#[fentry(function = "__swap_cache_add_folio")]
pub fn grant_cache_add(ctx: FEntryContext) -> u32 {
    let l = layout();
    if l.valid == 0 {
        layout_missing(&ctx);
        return 0;
    }
    let folio: *const u8 = ctx.arg(1);
    let entry: u64 = ctx.arg(2);
    // SAFETY: arg 1 is the BTF-typed folio pointer; offsets come from BTF.
    let raw_mapping = unsafe { load_u64(folio, l.folio_mapping_off) };
    let Some((mapping, ptr)) = launder(raw_mapping, folio as u64) else {
        return 0;
    };
    if mapping == 0 {
        return 0;
    }
    // SAFETY: as above.
    let order = unsafe { folio_order(&l, folio) };
    // Under the per-CPU cluster's local lock: this CPU's cache is the one used.
    // SAFETY: plain helper call.
    let cpu = unsafe { bpf_get_smp_processor_id() };
    let (_, start_ns) = entry_start();
    emit_grant(
        &ctx,
        (ptr >> 6) ^ l.id_key,
        entry,
        1,
        order,
        (cpu, start_ns),
    )
}

// 7.x: `int __mem_cgroup_try_charge_swap(struct folio *folio)`, which `folio_alloc_swap` calls
// right after the allocator's local lock is released, on success and on failure alike; a
// `folio->swap` of 0 there means the allocator found nothing. Reported as a refusal grant (`nr`
// 0): the request's own event comes later, at the function's exit, after anything other tasks
// freed meanwhile (room the allocator did not have when it refused). A refusal all of its
// programs miss is decided at the request event, as without them.
twin!(
    fentry(function = "__mem_cgroup_try_charge_swap"),
    Twin::RescueFirst,
    0,
    grant_charge_refused,
    grant_charge_refused_rescue,
    grant_charge_refused_rescue2,
    FEntryContext,
    u32,
    rescue::GRANT_REFUSAL,
    grant_charge_refused_body
);

#[inline(always)]
fn grant_charge_refused_body(ctx: &FEntryContext) -> u32 {
    let l = layout();
    if l.valid == 0 {
        return 0;
    }
    let folio: *const u8 = ctx.arg(0);
    // SAFETY: arg 0 is the BTF-typed folio pointer; offsets come from BTF.
    let raw_swap = unsafe { load_u64(folio, l.folio_swap_off) };
    let Some((swap_val, _)) = launder(raw_swap, 0) else {
        return 0;
    };
    if swap_val != 0 {
        return 0;
    }
    // SAFETY: as above.
    let order = unsafe { folio_order(&l, folio) };
    emit_grant(ctx, 0, 0, 0, order, entry_start())
}

/// 6.12: `int scan_swap_map_slots(struct swap_info_struct *si, unsigned char usage, int nr,
/// swp_entry_t slots[], int order)`, whose exit runs before its caller drops `si->lock`: one
/// large folio's slots, or a batch of order-0 slots refilling the calling CPU's slot cache (its
/// first slot goes to the folio that asked). A single allocation (`nr` 1: a large folio, or order
/// 0 without the slot cache) that found nothing is a refusal, reported with `nr` 0. Hibernation's
/// `usage` 1 is not a folio's.
#[fexit(function = "scan_swap_map_slots")]
pub fn grant_scan_slots(ctx: FExitContext) -> u32 {
    grant_scan(&ctx, false)
}

/// [`grant_scan_slots`] that also reports a batch's slots ([`GrantBatchEvent`]), read from the
/// kernel's array with `bpf_probe_read_kernel`: the loader tries it first and falls back to the
/// plain program where that helper is refused (lockdown=confidentiality).
#[fexit(function = "scan_swap_map_slots")]
pub fn grant_scan_slots_batch(ctx: FExitContext) -> u32 {
    grant_scan(&ctx, true)
}

#[inline(always)]
fn grant_scan(ctx: &FExitContext, with_batch: bool) -> u32 {
    let usage: u64 = ctx.arg(1);
    let wanted: u64 = ctx.arg(2);
    let slots: *const u8 = ctx.arg(3);
    let order: u64 = ctx.arg(4);
    let ret: i64 = ctx.arg(5);
    let n = ret as i32;
    if usage & 0xff != 0x40 || n < 0 {
        return 0;
    }
    // A batch goes to the slot cache of the CPU the task entered on (it may have migrated
    // since); the cluster cursor used was this CPU's.
    let req = entry_start();
    if n == 0 {
        if wanted as i32 == 1 {
            return emit_grant(ctx, 0, 0, 0, order as u8, req);
        }
        return 0;
    }
    // SAFETY: `slots` is the BTF-typed `swp_entry_t *` argument; `val` is its first member.
    let first = unsafe { load_u64(slots, 0) };
    // Only the slot cache's refill asks for a whole batch, into its array of exactly
    // `SWAP_SLOTS_CACHE_SIZE` entries: reading all of it stays inside that array.
    if with_batch && n >= 2 && wanted == GRANT_BATCH_MAX as u64 && n as u64 <= wanted {
        return emit_grant_batch(ctx, first, slots, n as u16, order as u8, req);
    }
    emit_grant(ctx, 0, first, n as u16, order as u8, req)
}

/// A batch grant with its slots: `nr` entries of the kernel's array at `slots`.
#[inline(always)]
fn emit_grant_batch(
    ctx: &FExitContext,
    first: u64,
    slots: *const u8,
    nr: u16,
    order: u8,
    (req_cpu, start_ns): (u32, u64),
) -> u32 {
    let Some(mut entry) = EVENTS.reserve::<GrantBatchEvent>(0) else {
        dropped(ctx);
        return 0;
    };
    let p = entry.as_mut_ptr();
    // SAFETY: `p` is a reserved ring-buffer record of `GrantBatchEvent`'s size, written only
    // here before it is submitted; `slots` points at the kernel's 64-entry array (see caller).
    unsafe {
        (*p).grant = GrantEvent {
            header: header(kind::GRANT, core::mem::size_of::<GrantBatchEvent>()),
            folio_id: 0,
            swap_val: first,
            pid_tgid: bpf_get_current_pid_tgid(),
            nr,
            order,
            _pad: 0,
            req_cpu,
            start_ns,
        };
        let dst = core::slice::from_raw_parts_mut(
            (*p).slots.as_mut_ptr().cast::<u8>(),
            8 * GRANT_BATCH_MAX,
        );
        if bpf_probe_read_kernel_buf(slots, dst).is_err() {
            // The batch is unreadable: the plain grant, first slot only.
            (*p).grant.header.size = core::mem::size_of::<GrantEvent>() as u16;
        }
    }
    entry.submit(wake_flags());
    0
}

/// When a free program runs: at the free function's entry (the slots are about to be freed), or
/// at its exit (freed, and the cluster already moved to the list the free put it on).
#[derive(Clone, Copy, PartialEq, Eq)]
enum FreeHook {
    Entry,
    Exit,
}

// Up to 6.16, shmem's swap-out (`shmem_writepage`/`shmem_writeout`) calls `folio_alloc_swap`
// directly, not through `add_to_swap`, and that function's exit cannot be hooked there (it
// returns a struct): `int add_to_swap_cache(struct folio *folio, swp_entry_t entry, gfp_t gfp,
// void **shadowp)` is where both paths put a folio with its new entry into the swap cache. This
// program reports shmem folios from there (a mapping that is not anon); anon ones come from
// `add_to_swap`, and a folio read back in has no mapping yet.
twin!(
    fentry(function = "add_to_swap_cache"),
    Twin::RescueFirst,
    0,
    req_shmem_cache_add,
    req_shmem_cache_add_rescue,
    req_shmem_cache_add_rescue2,
    FEntryContext,
    u32,
    rescue::ALLOC_SHMEM,
    req_shmem_cache_add_body
);

#[inline(always)]
fn req_shmem_cache_add_body(ctx: &FEntryContext) -> u32 {
    let l = layout();
    if l.valid == 0 {
        layout_missing(ctx);
        return 0;
    }
    let folio: *const u8 = ctx.arg(0);
    let entry: u64 = ctx.arg(1);
    // SAFETY: arg 0 is the BTF-typed folio pointer; offsets come from BTF.
    let raw_mapping = unsafe { load_u64(folio, l.folio_mapping_off) };
    let Some((mapping, ptr)) = launder(raw_mapping, folio as u64) else {
        return 0;
    };
    if mapping == 0 || mapping & 1 == 1 {
        return 0;
    }
    // SAFETY: as above.
    let order = unsafe { folio_order(&l, folio) };
    let ev = AllocEvent {
        header: header(kind::ALLOC, core::mem::size_of::<AllocEvent>()),
        folio_id: (ptr >> 6) ^ l.id_key,
        swap_val: entry,
        pid_tgid: bpf_get_current_pid_tgid(),
        success: 1,
        order,
        _pad: [0; 2],
        latency_ns: 0,
    };
    submit(ctx, &ev);
    0
}

/// Emits a free of `nr` slots from `offset` on the device `si`. The event carries
/// `si->inuse_pages` as it was before the free: read at entry, or at exit plus `nr`.
///
/// # Safety
/// `si` must be a BTF-typed `struct swap_info_struct *` argument of a tracing program.
#[inline(always)]
unsafe fn emit_free<C: EbpfContext>(
    ctx: &C,
    si: *const u8,
    offset: u64,
    nr: u64,
    hook: FreeHook,
) -> u32 {
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
    let inuse = match hook {
        FreeHook::Entry => inuse,
        FreeHook::Exit => inuse + (nr & 0xffff_ffff),
    };
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

/// 6.14–6.18: `swap_entry_range_free(si, ci, entry, nr)` / `swap_entries_free(si, ci, entry, nr)`,
/// at exit: the function runs under the cluster lock only and moves the cluster between lists
/// last (after the device's own free notification, which zram makes slow), so the event comes
/// after that move, in the order other CPUs saw it.
#[fexit(function = "swap_entries_free")]
pub fn free_si_ci_entry_nr(ctx: FExitContext) -> u32 {
    let entry: u64 = ctx.arg(2);
    // SAFETY: arg 0 is the BTF-typed swap_info_struct pointer.
    unsafe {
        emit_free(
            &ctx,
            ctx.arg(0),
            entry_offset(entry),
            ctx.arg(3),
            FreeHook::Exit,
        )
    }
}

/// 6.12–6.13: `swap_entry_range_free(si, entry, nr)`.
#[fentry(function = "swap_entry_range_free")]
pub fn free_si_entry_nr(ctx: FEntryContext) -> u32 {
    let entry: u64 = ctx.arg(1);
    // SAFETY: arg 0 is the BTF-typed swap_info_struct pointer.
    unsafe {
        emit_free(
            &ctx,
            ctx.arg(0),
            entry_offset(entry),
            ctx.arg(2),
            FreeHook::Entry,
        )
    }
}

/// Up to 6.11: `swap_entry_free(si, entry)`, one slot.
#[fentry(function = "swap_entry_free")]
pub fn free_si_entry(ctx: FEntryContext) -> u32 {
    let entry: u64 = ctx.arg(1);
    // SAFETY: arg 0 is the BTF-typed swap_info_struct pointer.
    unsafe { emit_free(&ctx, ctx.arg(0), entry_offset(entry), 1, FreeHook::Entry) }
}

/// 6.1: `swap_range_free(si, unsigned long offset, unsigned int nr)`, where every free of a slot
/// ends (`swap_entry_free` is inlined there).
#[fentry(function = "swap_range_free")]
pub fn free_si_offset_nr(ctx: FEntryContext) -> u32 {
    let offset: u64 = ctx.arg(1);
    let nr: u64 = ctx.arg(2);
    // SAFETY: arg 0 is the BTF-typed swap_info_struct pointer.
    unsafe { emit_free(&ctx, ctx.arg(0), offset, nr & 0xffff_ffff, FreeHook::Entry) }
}

/// Up to 6.9: `swap_free_cluster(si, idx)`, a whole PMD-size cluster.
#[fentry(function = "swap_free_cluster")]
pub fn free_si_cluster(ctx: FEntryContext) -> u32 {
    let idx: u64 = ctx.arg(1);
    // SAFETY: arg 0 is the BTF-typed swap_info_struct pointer.
    unsafe { emit_free(&ctx, ctx.arg(0), idx * 512, 512, FreeHook::Entry) }
}

/// 7.x: `__swap_cluster_free_entries(si, ci, ci_start, nr)`: offsets relative to the cluster. At
/// exit, as [`free_si_ci_entry_nr`]: the cluster's list move is the function's last step.
#[fexit(function = "__swap_cluster_free_entries")]
pub fn free_si_ci_start_nr(ctx: FExitContext) -> u32 {
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
    unsafe {
        emit_free(
            &ctx,
            si,
            idx * 512 + (start & 511),
            ctx.arg(3),
            FreeHook::Exit,
        )
    }
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

// 6.15+: `__folio_split(struct folio *folio, unsigned int new_order, ...)`.
twin!(
    fentry(function = "__folio_split"),
    Twin::RescueFirst,
    0,
    split_folio,
    split_folio_rescue,
    split_folio_rescue2,
    FEntryContext,
    u32,
    rescue::SPLIT,
    split_folio_body
);

#[inline(always)]
fn split_folio_body(ctx: &FEntryContext) -> u32 {
    let l = layout();
    let folio: *const u8 = ctx.arg(0);
    let new_order: u64 = ctx.arg(1);
    let order = if l.valid == 0 {
        0
    } else {
        // SAFETY: arg 0 is the BTF-typed folio pointer.
        unsafe { folio_order(&l, folio) }
    };
    emit_split(ctx, folio as u64, order, new_order)
}

// 6.8–6.14: `split_huge_page_to_list_to_order(struct page *page, struct list_head *list,
// unsigned int new_order)`. Only a `struct page` is seen, so the old order is unknown.
twin!(
    fentry(function = "split_huge_page_to_list_to_order"),
    Twin::RescueFirst,
    0,
    split_page_to_order,
    split_page_to_order_rescue,
    split_page_to_order_rescue2,
    FEntryContext,
    u32,
    rescue::SPLIT,
    split_page_to_order_body
);

#[inline(always)]
fn split_page_to_order_body(ctx: &FEntryContext) -> u32 {
    let page: u64 = ctx.arg(0);
    let new_order: u64 = ctx.arg(2);
    emit_split(ctx, page, ORDER_UNKNOWN, new_order)
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

// 6.10–6.18: `void swap_read_folio(struct folio *folio, [bool sync,] struct swap_iocb **plug)`.
twin!(
    fentry(function = "swap_read_folio"),
    Twin::RescueFirst,
    0,
    swapin_folio,
    swapin_folio_rescue,
    swapin_folio_rescue2,
    FEntryContext,
    u32,
    rescue::SWAPIN,
    swapin_folio_body
);

#[inline(always)]
fn swapin_folio_body(ctx: &FEntryContext) -> u32 {
    // SAFETY: arg 0 is the BTF-typed folio pointer.
    unsafe { emit_swapin(ctx, ctx.arg(0), false) }
}

// 7.x: `void swap_read_folio(struct swap_io_ctx *ctx, struct folio *folio)`.
twin!(
    fentry(function = "swap_read_folio"),
    Twin::RescueFirst,
    1,
    swapin_ctx_folio,
    swapin_ctx_folio_rescue,
    swapin_ctx_folio_rescue2,
    FEntryContext,
    u32,
    rescue::SWAPIN,
    swapin_ctx_folio_body
);

#[inline(always)]
fn swapin_ctx_folio_body(ctx: &FEntryContext) -> u32 {
    // SAFETY: arg 1 is the BTF-typed folio pointer.
    unsafe { emit_swapin(ctx, ctx.arg(1), false) }
}

// Up to 6.9: `int swap_readpage(struct page *page, bool sync, struct swap_iocb **plug)`.
twin!(
    fentry(function = "swap_readpage"),
    Twin::RescueFirst,
    0,
    swapin_page,
    swapin_page_rescue,
    swapin_page_rescue2,
    FEntryContext,
    u32,
    rescue::SWAPIN,
    swapin_page_body
);

#[inline(always)]
fn swapin_page_body(ctx: &FEntryContext) -> u32 {
    // SAFETY: arg 0 is the BTF-typed page pointer.
    unsafe { emit_swapin(ctx, ctx.arg(0), true) }
}

#[cfg(not(test))]
#[panic_handler]
fn panic(_info: &core::panic::PanicInfo) -> ! {
    loop {}
}

#[unsafe(link_section = "license")]
#[unsafe(no_mangle)]
static LICENSE: [u8; 4] = *b"GPL\0";
