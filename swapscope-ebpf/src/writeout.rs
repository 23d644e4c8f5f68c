//! Tracepoint tier: a folio written to swap (`mm_vmscan_write_folio`); full tier: the device
//! write itself (`__swap_writepage`), which makes the tracepoint exact.

use crate::*;

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
pub(crate) fn writeout(ctx: &BtfTracePointContext) -> u32 {
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
    // Taken (and forgotten) on every hit, so that an entry never outlives its write-out.
    let written = took_written(folio as u64);
    if !bit(l.pg_swapbacked) {
        bump(counter::FILTERED);
        return 0;
    }
    // The tracepoint fires after the write, with the folio unlocked: another CPU can have
    // faulted it back in and taken it out of the swap cache meanwhile (`folio->swap` cleared).
    // It was written all the same: the event goes out without a slot (entry 0,
    // `folio_flags::NO_SLOT`) and counts in the totals. A folio out of the swap cache and not
    // mapped was not written: the swap entry had lost its last user before the write
    // (`folio_free_swap` in `swap_writeout`, no I/O) — unless this task submitted it to the
    // device ([`WRITTEN`], full tier): then its last user went away after the write (a process
    // exiting while this task, preempted after the write, had not reached the tracepoint).
    let in_cache = bit(l.pg_swapcache);
    if !in_cache {
        // SAFETY: as above (`atomic_t` members; -1 is "not mapped").
        let mapped = unsafe {
            if bit(l.pg_head) && l.folio_large_mapcount_off != 0 {
                load_i32(folio, l.folio_large_mapcount_off) >= 0
            } else {
                l.folio_mapcount_off != 0 && load_i32(folio, l.folio_mapcount_off) >= 0
            }
        };
        if !mapped && written {
            bump(counter::WRITTEN_GONE);
        } else if !mapped {
            bump(counter::FILTERED);
            return 0;
        }
    }
    // SAFETY: as above.
    let raw_swap = unsafe { load_u64(folio, l.folio_swap_off) };
    // SAFETY: as above.
    let raw_mapping = unsafe { load_u64(folio, l.folio_mapping_off) };
    let Some((swap_val, mapping)) = launder(raw_swap, raw_mapping) else {
        return 0;
    };
    let swap_val = if in_cache { swap_val } else { 0 };
    if in_cache && swap_val == 0 {
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
    ev_flags |= folio_flags::SWAPBACKED;
    if in_cache {
        ev_flags |= folio_flags::SWAPCACHE;
    } else {
        ev_flags |= folio_flags::NO_SLOT;
    }
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

/// Whether the current task's last device write (`__swap_writepage`) was of `folio`; forgets
/// it either way. A task is inside one `writeout()` at a time and its write precedes its
/// tracepoint, so an entry naming another folio is stale (a write not followed by the
/// tracepoint: zswap's writeback of a compressed page).
#[inline(always)]
fn took_written(folio: u64) -> bool {
    let me = bpf_get_current_pid_tgid();
    let Some(p) = WRITTEN.get_ptr_mut(task_slot(me)) else {
        return false;
    };
    // SAFETY: an entry of an array map; only this task (or one whose id collides modulo
    // TASK_SLOTS, which at worst loses or misattributes one such write-out) writes it.
    let seen = unsafe { core::ptr::read_volatile(p) };
    if seen[0] != me {
        return false;
    }
    // SAFETY: as above.
    unsafe { core::ptr::write_volatile(p, [0, 0]) };
    seen[1] == folio
}

/// Marks `folio` as submitted to the device by the current task ([`WRITTEN`]).
#[inline(always)]
fn mark_written(folio: u64) -> u32 {
    let me = bpf_get_current_pid_tgid();
    if let Some(p) = WRITTEN.get_ptr_mut(task_slot(me)) {
        // SAFETY: an entry of an array map (see `took_written`).
        unsafe { core::ptr::write_volatile(p, [me, folio]) };
    }
    0
}

// Full tier: `void __swap_writepage(struct folio *folio, ...)` (6.1: `struct page *`, the
// folio's head page, at the same address): the folio goes to the device. Emits nothing; marks
// the folio for the write-out tracepoint the task fires next ([`WRITTEN`]). It runs
// preemptible, so it has rescue twins like the feeds that emit.
twin!(
    fentry(function = "__swap_writepage"),
    Twin::RescueFirst,
    0,
    write_io,
    write_io_rescue,
    write_io_rescue2,
    FEntryContext,
    u32,
    rescue::WRITE_IO,
    write_io_body
);

#[inline(always)]
pub(crate) fn write_io_body(ctx: &FEntryContext) -> u32 {
    mark_written(ctx.arg(0))
}

// [`write_io`] for 7.x's `void __swap_writepage(struct swap_io_ctx *ctx, struct folio *folio)`.
twin!(
    fentry(function = "__swap_writepage"),
    Twin::RescueFirst,
    1,
    write_io_ctx,
    write_io_ctx_rescue,
    write_io_ctx_rescue2,
    FEntryContext,
    u32,
    rescue::WRITE_IO,
    write_io_ctx_body
);

#[inline(always)]
pub(crate) fn write_io_ctx_body(ctx: &FEntryContext) -> u32 {
    mark_written(ctx.arg(1))
}
