//! Full tier: slots handed out (or refused) inside the allocator's lock: the kernel's order.

use crate::*;

/// Emits slots granted by the allocator: `nr` allocations of 2^`order` slots, the first at
/// `swap_val`, for the current task (`folio_id` 0 when the hook sees no folio). Called only from
/// hooks that run inside the allocator's lock, which is what orders grants in the ring buffer
/// as the kernel ordered its decisions.
#[inline(always)]
pub(crate) fn emit_grant<C: EbpfContext>(
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
    emit_grant(
        &ctx,
        (ptr >> 6) ^ l.id_key,
        entry,
        1,
        order,
        in_lock_start(),
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
pub(crate) fn grant_charge_refused_body(ctx: &FEntryContext) -> u32 {
    let l = layout();
    if l.valid == 0 {
        return 0;
    }
    let folio: *const u8 = ctx.arg(0);
    // A refusal already reported inside the lock ([`grant_slow_refused`]): its mark is taken
    // back, and any stale mark of this task (whose charge was missed) is cleared.
    let task = bpf_get_current_pid_tgid();
    if let Some(p) = REFUSED_IN_LOCK.get_ptr_mut(task_slot(task)) {
        // SAFETY: an entry of an array map; only this task writes a mark of its own.
        let [who, what] = unsafe { core::ptr::read_volatile(p) };
        if who == task {
            // SAFETY: as above.
            unsafe { core::ptr::write_volatile(p, [0, 0]) };
            if what == folio as u64 {
                return 0;
            }
        }
    }
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

/// Per task (its [`task_slot`]): a large folio's refusal [`grant_slow_refused`]
/// reported inside the allocator's lock, as (task, folio pointer), until the task's
/// [`grant_charge_refused`] takes it back instead of reporting the refusal a second time. An
/// array, not a hash map: the charge hook runs preemptible, and a hash map update takes a bucket
/// lock whose release is a preemption point.
#[map]
pub(crate) static REFUSED_IN_LOCK: Array<[u64; 2]> = Array::with_max_entries(TASK_SLOTS, 0);

/// 7.x: `unsigned long cluster_alloc_swap_entry(struct swap_info_struct *si, struct folio
/// *folio)`, the slow path's scan of one device, run under the per-CPU cluster's local lock
/// (preemption off). A large folio tries one device only, so 0 there is the refusal, decided
/// here. [`grant_charge_refused`] would report it only once the lock is released, and a task
/// preempted in between lets others allocate and free first: on one vCPU the model then replayed
/// their grants before the refusal's scans had rotated the lists, and the other way round. The
/// refusal is reported here when the task's mark slot is free (else, as before, at the charge);
/// order 0 is left to the charge hook (it may try the next device, or retry after a discard).
#[fexit(function = "cluster_alloc_swap_entry")]
pub fn grant_slow_refused(ctx: FExitContext) -> u32 {
    let l = layout();
    if l.valid == 0 {
        return 0;
    }
    let folio: *const u8 = ctx.arg(1);
    let ret: u64 = ctx.arg(2);
    if ret != 0 || folio.is_null() {
        return 0;
    }
    // SAFETY: arg 1 is the BTF-typed folio pointer, not null; offsets come from BTF.
    let order = unsafe { folio_order(&l, folio) };
    if order == 0 {
        return 0;
    }
    let task = bpf_get_current_pid_tgid();
    let Some(p) = REFUSED_IN_LOCK.get_ptr_mut(task_slot(task)) else {
        return 0;
    };
    // SAFETY: an entry of an array map. Another task whose thread id shares the slot may hold
    // it (its charge not run yet): then this refusal is left to the charge hook.
    let [who, _] = unsafe { core::ptr::read_volatile(p) };
    if who != 0 && who != task {
        return 0;
    }
    // SAFETY: as above.
    unsafe { core::ptr::write_volatile(p, [task, folio as u64]) };
    bump(counter::REFUSED_IN_LOCK);
    emit_grant(&ctx, 0, 0, 0, order, in_lock_start())
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
pub(crate) fn grant_scan(ctx: &FExitContext, with_batch: bool) -> u32 {
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
pub(crate) fn emit_grant_batch(
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
