//! Full tier: slots given back.

use crate::*;

/// When a free program runs: at the free function's entry (the slots are about to be freed), or
/// at its exit (freed, and the cluster already moved to the list the free put it on).
#[derive(Clone, Copy, PartialEq, Eq)]
pub(crate) enum FreeHook {
    Entry,
    Exit,
}

/// Emits a free of `nr` slots from `offset` on the device `si`. The event carries
/// `si->inuse_pages` as it was before the free: read at entry, or at exit plus `nr`.
///
/// # Safety
/// `si` must be a BTF-typed `struct swap_info_struct *` argument of a tracing program.
#[inline(always)]
pub(crate) unsafe fn emit_free<C: EbpfContext>(
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

/// Offset part of a swap entry: the bits below `SWP_TYPE_SHIFT` (from [`LAYOUT`]).
#[inline(always)]
pub(crate) fn entry_offset(val: u64) -> u64 {
    let shift = u64::from(layout().swp_type_shift.clamp(1, 63));
    val & ((1u64 << shift) - 1)
}

/// `SWAPFILE_CLUSTER` (from [`LAYOUT`]; 512 until the loader has filled it in).
#[inline(always)]
fn cluster_slots() -> u64 {
    match layout().cluster_slots {
        0 => 512,
        n => u64::from(n),
    }
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

/// Up to 6.9: `swap_free_cluster(si, idx)`, a whole cluster.
#[fentry(function = "swap_free_cluster")]
pub fn free_si_cluster(ctx: FEntryContext) -> u32 {
    let idx: u64 = ctx.arg(1);
    let n = cluster_slots();
    // SAFETY: arg 0 is the BTF-typed swap_info_struct pointer.
    unsafe { emit_free(&ctx, ctx.arg(0), idx * n, n, FreeHook::Entry) }
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
    let n = cluster_slots();
    // SAFETY: as above.
    unsafe {
        emit_free(
            &ctx,
            si,
            idx * n + (start & (n - 1)),
            ctx.arg(3),
            FreeHook::Exit,
        )
    }
}
