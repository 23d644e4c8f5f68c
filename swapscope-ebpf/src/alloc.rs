//! Full tier: swap-slot requests at the allocation hooks' exit (and their start, for the latency).

use crate::*;

/// Emits the result of a request for `folio`.
///
/// # Safety
/// As [`folio_order`].
#[inline(always)]
pub(crate) unsafe fn emit_alloc<C: EbpfContext>(ctx: &C, folio: *const u8, success: bool) -> u32 {
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
pub(crate) fn req_start_body(_ctx: &FEntryContext) -> u32 {
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
pub(crate) fn req_folio_alloc_swap_body(ctx: &FExitContext) -> u32 {
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
pub(crate) fn req_folio_alloc_swap_1_body(ctx: &FExitContext) -> u32 {
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
pub(crate) fn req_add_to_swap_body(ctx: &FExitContext) -> u32 {
    let folio: *const u8 = ctx.arg(0);
    let ret: u64 = ctx.arg(1);
    // SAFETY: arg 0 is the BTF-typed folio pointer.
    unsafe { emit_alloc(ctx, folio, ret & 0xff != 0) }
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
pub(crate) fn req_shmem_cache_add_body(ctx: &FEntryContext) -> u32 {
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
