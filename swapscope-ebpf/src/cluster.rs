//! Full tier, 6.14+: clusters moved between the allocator's lists or taken off them.

use crate::*;

/// The `cluster_list` code of a kernel `enum swap_cluster_flags` value. The table is read as one
/// word and shifted: the verifier refuses a variable-offset read of the stack copy of the layout.
#[inline(always)]
pub(crate) fn cluster_code(l: &KernelLayout, raw: u64) -> u8 {
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
pub(crate) unsafe fn cluster_index(l: &KernelLayout, si: *const u8, ci: *const u8) -> Option<u64> {
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
pub(crate) unsafe fn emit_cluster<C: EbpfContext>(
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
pub(crate) fn emit_isolated(ctx: &FExitContext, ci: *const u8) -> u32 {
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
