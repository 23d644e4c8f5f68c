//! Full tier: folios read back from swap.

use crate::*;

/// Emits a swap-in of `folio` (or, on 6.1, of a `struct page`, whose `flags` and `private`
/// sit where a folio's `flags` and `swap` do).
///
/// # Safety
/// `folio` must be a BTF-typed `struct folio *` (`is_page`: `struct page *`) argument of a
/// tracing program.
#[inline(always)]
pub(crate) unsafe fn emit_swapin<C: EbpfContext>(ctx: &C, folio: *const u8, is_page: bool) -> u32 {
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
pub(crate) fn swapin_folio_body(ctx: &FEntryContext) -> u32 {
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
pub(crate) fn swapin_ctx_folio_body(ctx: &FEntryContext) -> u32 {
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
pub(crate) fn swapin_page_body(ctx: &FEntryContext) -> u32 {
    // SAFETY: arg 0 is the BTF-typed page pointer.
    unsafe { emit_swapin(ctx, ctx.arg(0), true) }
}
