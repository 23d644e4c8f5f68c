//! Full tier: large folios split (the fallback of a refused large allocation among them).

use crate::*;

#[inline(always)]
pub(crate) fn emit_split<C: EbpfContext>(
    ctx: &C,
    folio_ptr: u64,
    old_order: u8,
    new_order: u64,
) -> u32 {
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
pub(crate) fn split_folio_body(ctx: &FEntryContext) -> u32 {
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
pub(crate) fn split_page_to_order_body(ctx: &FEntryContext) -> u32 {
    let page: u64 = ctx.arg(0);
    let new_order: u64 = ctx.arg(2);
    emit_split(ctx, page, ORDER_UNKNOWN, new_order)
}
