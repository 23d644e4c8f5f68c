//! `linux-6.12`: the swap-slot allocator of Linux 6.12 (`mm/swapfile.c`, v6.12.33, identical in
//! 6.13.7): Chris Li's and Kairui Song's cluster-order allocator.
//!
//! Mirrors `get_swap_pages` → `scan_swap_map_slots` → `cluster_alloc_swap` →
//! `cluster_alloc_swap_entry` → `alloc_swap_scan_cluster` / `cluster_alloc_range`, the free
//! side `dec_cluster_info_page` / `free_cluster` / `__free_cluster`, and
//! `swap_do_scheduled_discard`:
//!
//! * a per-device per-CPU `next[order]` is tried first, without checking the cluster's order;
//! * then the head of the free list (a free cluster is preferred over nonfull), which moves to
//!   `nonfull[order]` when first used (a CPU's active cluster sits on nonfull);
//! * if no free cluster: (`vm_swap_full`) rotate one full cluster; walk all of `nonfull[order]`,
//!   moving each cluster to `frag[order]` before scanning it; then rotate through up to
//!   `frag_cluster_nr[order]` frag clusters (the nonfull ones just moved count too);
//! * pending discards are done synchronously and the search restarts;
//! * order 0 then steals from the heads of `frag[o]` and `nonfull[o]`, o = 1..9;
//! * a free moves a partial cluster to `nonfull[ci->order]`, an empty one to free (or discard);
//! * PMD order skips nonfull/frag; no order > 0 on swap files or rotational devices;
//! * rotational devices have no clusters at all (legacy `scan_swap_map_slots` linear scan).
//!
//! Order 0 goes through the per-CPU swap slot cache (`mm/swap_slots.c`, 6.12: `folio_alloc_swap`
//! → `refill_swap_slots_cache` → `get_swap_pages(SWAP_SLOTS_CACHE_SIZE = 64, ...)`): a CPU takes
//! 64 slots at once and hands them out in order; `check_cache_active` turns the caches off
//! (draining them: their unused slots are freed) when free swap falls below 128 pages per online
//! CPU and on again above 320. Online CPUs are taken as the highest CPU id seen plus one. The free
//! side's slot cache needs no model: the stream sees frees when `swapcache_free_entries` really
//! frees them.
//!
//! Simplifications: the rotational-device scan
//! is a next-fit from `si->cluster_next` (no search for a free 512-slot window); trylock and
//! cache-only reclaim as in [`super::linux_6_18`]; the discard worker's timing is a
//! [`DiscardTiming`] choice.

use super::kernel::{CL, Dev, Devs, DiscardTiming, KernelAllocator, List};
use swapscope_core::alloc::{Cpus, MAX_ORDER, NR_ORDERS};
use swapscope_core::event::SwapOn;

const PMD_ORDER: u8 = MAX_ORDER;

/// `SWAP_SLOTS_CACHE_SIZE` (= `SWAP_BATCH`).
const SLOTS_CACHE_SIZE: usize = 64;
/// `THRESHOLD_ACTIVATE_SWAP_SLOTS_CACHE` and `THRESHOLD_DEACTIVATE_SWAP_SLOTS_CACHE`, per CPU.
const CACHE_ACTIVATE: u64 = 5 * SLOTS_CACHE_SIZE as u64;
const CACHE_DEACTIVATE: u64 = 2 * SLOTS_CACHE_SIZE as u64;

/// The Linux 6.12 allocator.
#[derive(Clone, Debug, Default)]
pub struct Linux612 {
    devs: Devs,
    discard: DiscardTiming,
    discard_pending: bool,
    /// Per-CPU swap slot caches (`swp_slots[cpu].slots`), in hand-out order.
    slot_cache: Vec<std::collections::VecDeque<(u8, u64)>>,
    /// `swap_slot_cache_active`.
    cache_active: bool,
    /// `num_online_cpus()`: the recorded host's when the stream says it, else the highest CPU
    /// id seen + 1.
    online_cpus: u64,
    /// The stream said how many CPUs were online.
    online_cpus_known: bool,
    /// `use_swap_slot_cache`.
    use_slot_cache: bool,
    /// The request being served refilled its CPU's slot cache.
    refilled: bool,
    /// Per CPU, aligned with the front of `slot_cache`: the model's own slot for each cached
    /// one where the kernel's batch replaced the model's ([`Self::adopt_batch`]); a cache hit
    /// answers with it (the model's prediction, compared with the kernel's) while the state
    /// hands out the kernel's. Shorter than the cache, or empty, where there is none.
    predicted: Vec<std::collections::VecDeque<(u8, u64)>>,
    /// The cached slot the request being served really took when it answered with a prediction.
    took: Option<(u8, u64)>,
    /// Slots hidden from the next decision ([`AllocatorModel::hide_free`]).
    hidden: Vec<crate::kernel::HiddenSlot>,
    /// Clusters a hidden free had emptied, taken off the free list for the next decision.
    unemptied: Vec<(u8, u32)>,
    /// Per CPU and order (> 0), newest first: the device and the `next[order]` value each of the
    /// last [`CURSOR_READS`] requests decided there read ([`KernelAllocator::interleaved`]).
    cursor_reads: Vec<[[(u8, u64); CURSOR_READS]; NR_ORDERS]>,
}

/// The cursor values a CPU's requests read that are kept, per order: how far back a request that
/// began before others decided on its CPU can have read its cursor.
const CURSOR_READS: usize = 4;

impl Linux612 {
    pub const NAME: &'static str = "linux-6.12";

    pub fn new() -> Self {
        Linux612 {
            use_slot_cache: true,
            ..Self::default()
        }
    }

    /// With an explicit discard-worker timing.
    pub fn with_discard_timing(discard: DiscardTiming) -> Self {
        Linux612 {
            discard,
            ..Self::new()
        }
    }

    /// Without the order-0 slot cache: every request goes straight to `get_swap_pages`, which is
    /// what the cluster-list unit tests exercise.
    pub fn without_slot_cache(mut self) -> Self {
        self.use_slot_cache = false;
        self
    }

    /// `alloc_swap_scan_cluster` (6.12 form): returns `(next offset or 0, found or 0)`.
    fn scan_cluster(&mut self, ty: u8, offset: u64, order: u8) -> (u64, u64) {
        let n = 1u64 << order;
        let Some((off, last)) = self.find_in_cluster(ty, offset, order) else {
            return (0, 0);
        };
        let Some(d) = self.devs.get_mut(ty) else {
            return (0, 0);
        };
        let c = (offset / CL) as u32;
        // cluster_alloc_range
        if d.list_of(c) == Some(List::Free) {
            if n < CL {
                d.move_tail(c, List::Nonfull(order));
            }
            d.set_order(c, order);
        }
        let became_full = d.alloc_range(off, n);
        let full = u64::from(d.count(c)) == CL;
        if full {
            d.move_tail(c, List::Full);
        }
        self.devs.note_alloc(ty, n, became_full);
        let next = if full || off + n > last { 0 } else { off + n };
        (next, off)
    }

    fn head_offset(&self, ty: u8, l: List) -> Option<u64> {
        self.devs
            .get(ty)
            .and_then(|d| d.head(l))
            .map(|c| u64::from(c) * CL)
    }

    fn discard_device(devs: &mut Devs, ty: u8) -> bool {
        let Some(d) = devs.get_mut(ty) else {
            return false;
        };
        let mut any = false;
        while let Some(c) = d.isolate(List::Discard) {
            d.move_tail(c, List::Free);
            d.set_order(c, 0);
            any = true;
        }
        any
    }

    /// `cluster_alloc_swap_entry` (6.12).
    fn cluster_alloc(&mut self, ty: u8, order: u8, cpu: usize) -> u64 {
        let o = usize::from(order);
        if order > 0 {
            let read = self.devs.get(ty).map_or(0, |d| d.cursor(cpu, order));
            if self.cursor_reads.len() <= cpu {
                self.cursor_reads
                    .resize(cpu + 1, [[(0, 0); CURSOR_READS]; NR_ORDERS]);
            }
            if let Some(r) = self.cursor_reads.get_mut(cpu).and_then(|r| r.get_mut(o)) {
                r.rotate_right(1);
                r[0] = (ty, read);
            }
        }
        loop {
            let Some(d) = self.devs.get_mut(ty) else {
                return 0;
            };
            d.ensure_cpu(cpu);
            let mut offset = d.cursor(cpu, order);
            let mut found = 0;
            if offset != 0 {
                (offset, found) = self.scan_cluster(ty, offset, order);
            }
            if found == 0 {
                if let Some(h) = self.head_offset(ty, List::Free) {
                    (offset, found) = self.scan_cluster(ty, h, order);
                } else {
                    if self.devs.vm_swap_full()
                        && let Some(d) = self.devs.get_mut(ty)
                        && let Some(c) = d.head(List::Full)
                    {
                        d.move_tail(c, List::Full);
                    }
                    if order < PMD_ORDER {
                        (offset, found) = self.scan_nonfull_then_frag(ty, order);
                    }
                    if found == 0 {
                        if self.devs.get(ty).is_some_and(|d| d.len(List::Discard) > 0) {
                            Self::discard_device(&mut self.devs, ty);
                            continue;
                        }
                        if order == 0 {
                            (offset, found) = self.steal(ty);
                        }
                    }
                }
            }
            if let Some(d) = self.devs.get_mut(ty) {
                d.set_cursor(cpu, order, offset);
            }
            return found;
        }
    }

    fn scan_nonfull_then_frag(&mut self, ty: u8, order: u8) -> (u64, u64) {
        let mut frags = 0u32;
        let mut last = (0, 0);
        while let Some(d) = self.devs.get_mut(ty)
            && let Some(c) = d.head(List::Nonfull(order))
        {
            d.move_tail(c, List::Frag(order));
            last = self.scan_cluster(ty, u64::from(c) * CL, order);
            frags += 1;
            if last.1 != 0 {
                return last;
            }
        }
        while let Some(d) = self.devs.get_mut(ty)
            && frags < d.len(List::Frag(order))
            && let Some(c) = d.head(List::Frag(order))
        {
            d.move_tail(c, List::Frag(order));
            last = self.scan_cluster(ty, u64::from(c) * CL, order);
            frags += 1;
            if last.1 != 0 {
                return last;
            }
        }
        last
    }

    /// Order-0 stealing: scan the head of `frag[o]`, then of `nonfull[o]`, without moving it.
    fn steal(&mut self, ty: u8) -> (u64, u64) {
        let mut last = (0, 0);
        for o in 1..NR_ORDERS as u8 {
            for l in [List::Frag(o), List::Nonfull(o)] {
                // The kernel loops while the list is not empty; a head that cannot serve order
                // 0 (impossible without cache-only slots) would spin, so try it once.
                if let Some(h) = self.head_offset(ty, l) {
                    last = self.scan_cluster(ty, h, 0);
                    if last.1 != 0 {
                        return last;
                    }
                }
            }
        }
        last
    }

    /// Rotational devices (no cluster info): next-fit from `si->cluster_next`.
    fn legacy_alloc(&mut self, ty: u8) -> u64 {
        let Some(d) = self.devs.get_mut(ty) else {
            return 0;
        };
        let Some(off) = legacy_next_fit(d) else {
            return 0;
        };
        let full = d.alloc_range(off, 1);
        self.devs.note_alloc(ty, 1, full);
        off
    }

    /// `scan_swap_map_slots` for one slot range of `2^order`.
    fn scan_device(&mut self, ty: u8, order: u8, cpu: usize) -> u64 {
        let Some(d) = self.devs.get(ty) else {
            return 0;
        };
        if d.inuse >= d.pages {
            return 0;
        }
        if order > 0 && !(d.blkdev() && d.solidstate()) {
            return 0;
        }
        if d.solidstate() {
            self.cluster_alloc(ty, order, cpu)
        } else {
            self.legacy_alloc(ty)
        }
    }

    /// `folio_alloc_swap` (mm/swap_slots.c): order 0 through the CPU's slot cache while the
    /// caches are active, everything else straight to `get_swap_pages(1, ..)`.
    fn folio_alloc_swap(&mut self, order: u8, cpu: u32) -> Option<(u8, u64)> {
        self.folio_alloc_swap_from(order, Cpus::on(cpu))
    }

    /// `folio_alloc_swap` for a task that entered on `cpus.entry` (whose slot cache it takes:
    /// `raw_cpu_ptr` before a mutex it may sleep on) and allocates on `cpus.decided` (whose
    /// cluster cursor `get_swap_pages` uses, under `si->lock`).
    fn folio_alloc_swap_from(&mut self, order: u8, cpus: Cpus) -> Option<(u8, u64)> {
        let cpu = cpus.decided;
        if !self.online_cpus_known {
            self.online_cpus = self.online_cpus.max(u64::from(cpu.max(cpus.entry)) + 1);
        }
        self.refilled = false;
        self.took = None;
        if order == 0 && self.use_slot_cache && self.check_cache_active() {
            let c = super::cpu_index(cpus.entry);
            self.ensure_cache(c);
            if self.slot_cache.get(c).is_some_and(|q| q.is_empty()) {
                self.refill(cpus);
            }
            if let Some(slot) = self.slot_cache.get_mut(c).and_then(|q| q.pop_front()) {
                if let Some(p) = self.predicted.get_mut(c).and_then(|q| q.pop_front()) {
                    self.took = Some(slot);
                    return Some(p);
                }
                return Some(slot);
            }
        }
        self.get_swap_pages(order, cpu)
    }

    /// `refill_swap_slots_cache`: `get_swap_pages(64, ...)`, i.e. up to 64 single-slot
    /// allocations in a row (with `cpus.decided`'s cluster cursor) into `cpus.entry`'s cache.
    fn refill(&mut self, cpus: Cpus) {
        let c = super::cpu_index(cpus.entry);
        for _ in 0..SLOTS_CACHE_SIZE {
            match self.get_swap_pages(0, cpus.decided) {
                Some(slot) => {
                    if let Some(q) = self.slot_cache.get_mut(c) {
                        q.push_back(slot);
                    }
                }
                None => break,
            }
        }
        self.refilled = true;
    }

    fn ensure_cache(&mut self, c: usize) {
        if self.slot_cache.len() <= c {
            self.slot_cache.resize_with(c + 1, Default::default);
        }
        if self.predicted.len() <= c {
            self.predicted.resize_with(c + 1, Default::default);
        }
    }

    /// The kernel refilled `cpus.entry`'s slot cache with `slots` of device `ty`, in hand-out
    /// order (6.12's batch, at its grant). The kernel's cache was empty and active: slots the
    /// model still holds there go back. The model then refills it by its own rule; where its
    /// batch differs from the kernel's, it goes back too and the kernel's slots are taken from
    /// their clusters instead, the deciding CPU's cursor after the last one. The model's batch
    /// stays as the predictions its cache hits answer with, one by one as the requests come, so
    /// each is still compared with the kernel's slot; the state follows the kernel's. Returns
    /// whether the batches differed.
    fn adopt_batch(&mut self, cpus: Cpus, ty: u8, slots: &[u64]) -> bool {
        if !self.use_slot_cache || slots.is_empty() {
            return false;
        }
        let c = super::cpu_index(cpus.entry);
        self.ensure_cache(c);
        let left: Vec<(u8, u64)> = self
            .slot_cache
            .get_mut(c)
            .map(|q| q.drain(..).collect())
            .unwrap_or_default();
        if let Some(q) = self.predicted.get_mut(c) {
            q.clear();
        }
        for (sty, soff) in left.into_iter().rev() {
            self.free_piece(sty, soff, 1);
        }
        self.cache_active = true;
        self.refill(cpus);
        self.refilled = false;
        let ours: Vec<(u8, u64)> = self
            .slot_cache
            .get(c)
            .map(|q| q.iter().copied().collect())
            .unwrap_or_default();
        if ours.len() == slots.len() && ours.iter().zip(slots).all(|(o, &k)| *o == (ty, k)) {
            return false;
        }
        if let Some(q) = self.slot_cache.get_mut(c) {
            q.clear();
        }
        for &(sty, soff) in ours.iter().rev() {
            self.free_piece(sty, soff, 1);
        }
        for &k in slots {
            // A slot another CPU's cache holds in the model changes hands; one the model
            // has given a folio is left as it is (the kernel's cannot be both).
            if let Some(h) = self
                .slot_cache
                .iter()
                .position(|q| q.iter().any(|&s| s == (ty, k)))
            {
                if let Some(q) = self.slot_cache.get_mut(h) {
                    q.retain(|&s| s != (ty, k));
                }
                if let Some(q) = self.predicted.get_mut(h) {
                    q.clear();
                }
            } else if self.devs.get(ty).is_some_and(|d| !d.map.is_used(k)) {
                self.take_slot(ty, k, 0);
            }
        }
        // `cluster->next[0]` of the deciding CPU: after the last slot, unless that filled its
        // cluster or ended it.
        if let (Some(&last), Some(d)) = (slots.last(), self.devs.get_mut(ty)) {
            let cl = (last / CL) as u32;
            let end = (u64::from(cl) * CL + CL).min(d.max);
            let next = if u64::from(d.count(cl)) == CL || last + 1 >= end {
                0
            } else {
                last + 1
            };
            d.set_cursor(super::cpu_index(cpus.decided), 0, next);
        }
        if let Some(q) = self.slot_cache.get_mut(c) {
            q.extend(slots.iter().map(|&k| (ty, k)));
        }
        if let Some(q) = self.predicted.get_mut(c) {
            q.extend(ours);
        }
        true
    }

    /// `cluster_alloc_range` for the kernel's slots `off ..` of 2^`order`: a free cluster moves
    /// to `nonfull[order]` and takes that order, a filled one moves to full. Returns whether
    /// the cluster is now full.
    fn take_slot(&mut self, ty: u8, off: u64, order: u8) -> bool {
        let n = 1u64 << order.min(MAX_ORDER);
        let Some(d) = self.devs.get_mut(ty) else {
            return false;
        };
        let cl = (off / CL) as u32;
        if d.list_of(cl) == Some(List::Free) {
            if n < CL {
                d.move_tail(cl, List::Nonfull(order));
            }
            d.set_order(cl, order);
        }
        let became_full = d.alloc_range(off, n);
        let full = u64::from(d.count(cl)) == CL;
        if full {
            d.move_tail(cl, List::Full);
        }
        self.devs.note_alloc(ty, n, became_full);
        full
    }

    /// Slots the per-CPU slot caches hold (allocated, not yet handed out).
    pub fn cached_slots(&self) -> u64 {
        self.slot_cache.iter().map(|q| q.len() as u64).sum()
    }

    /// `check_cache_active`: toggles the slot caches on free swap, draining them when turned off.
    fn check_cache_active(&mut self) -> bool {
        let free = self.devs.total_pages.saturating_sub(self.devs.inuse);
        if !self.cache_active {
            if free > self.online_cpus * CACHE_ACTIVATE {
                self.cache_active = true;
            }
        } else if free < self.online_cpus * CACHE_DEACTIVATE {
            self.cache_active = false;
            self.drain_slot_caches();
        }
        self.cache_active
    }

    /// `__drain_swap_slots_cache`: unused cached slots go back to the allocator.
    fn drain_slot_caches(&mut self) {
        self.predicted.clear();
        let mut caches = std::mem::take(&mut self.slot_cache);
        for q in &mut caches {
            for (ty, off) in q.drain(..) {
                self.free_piece(ty, off, 1);
            }
        }
        self.slot_cache = caches;
    }

    /// `get_swap_pages(1, ..., order)`.
    fn get_swap_pages(&mut self, order: u8, cpu: u32) -> Option<(u8, u64)> {
        if order > MAX_ORDER {
            return None;
        }
        if self.discard_pending && self.discard == DiscardTiming::BeforeNextAlloc {
            for ty in 0..=u8::MAX {
                Self::discard_device(&mut self.devs, ty);
            }
            self.discard_pending = false;
        }
        let cpu = super::cpu_index(cpu);
        let snap = self.devs.avail_snapshot();
        let mut r = None;
        for &ty in &snap {
            self.devs.requeue(ty);
            let f = self.scan_device(ty, order, cpu);
            if f != 0 {
                r = Some((ty, f));
                break;
            }
            if order > 0 {
                break;
            }
        }
        self.devs.put_avail_snapshot(snap);
        r
    }

    /// [`swapscope_core::alloc::AllocatorModel::follow_kernel`]. Order 0 through the slot caches: the
    /// kernel's slot is taken from the cache that holds it. When that is this CPU's cache, the
    /// slots ahead of it there (ours among them) are ones the kernel's refill did not take — a
    /// cache is handed out in the order it was filled — and go back to the allocator; when it is
    /// another CPU's (the request's task entered `folio_alloc_swap` there), ours goes back to the
    /// front of this CPU's cache; when no cache holds it (the kernel's refill took a slot the
    /// model's did not), ours goes back to the front of the cache and the kernel's slot is taken
    /// from its cluster. A large request's slots
    /// go back to their cluster and the kernel's are taken from theirs (`cluster_alloc_range`),
    /// the CPU's `next[order]` following the kernel's.
    fn take_kernels_answer(
        &mut self,
        cpus: Cpus,
        order: u8,
        ours: Option<(u8, u64)>,
        kernel: Option<(u8, u64)>,
    ) {
        let n = 1u64 << order.min(MAX_ORDER);
        let cached = order == 0 && self.use_slot_cache && self.cache_active;
        // The slot cache is the entry CPU's; the cluster cursor the deciding CPU's.
        let c = super::cpu_index(cpus.entry);
        let cursor = super::cpu_index(cpus.decided);
        let mut ours = ours;
        if let Some(took) = self.took.take() {
            // The model answered with its prediction; its state handed out `took`.
            if kernel == Some(took) {
                return;
            }
            ours = Some(took);
        }
        // The cache is re-synced below: its remaining predictions no longer line up.
        if let Some(q) = self.predicted.get_mut(c) {
            q.clear();
        }
        let Some((ty, off)) = kernel else {
            // The kernel refused: its scans failed, the last one leaving this CPU no next slot.
            if let Some(slot) = ours {
                self.free_piece(slot.0, slot.1, n);
                if let Some(d) = self.devs.get_mut(slot.0) {
                    d.set_cursor(cursor, order, 0);
                }
            }
            return;
        };
        // The kernel's batch began elsewhere than the model's: the CPU's cluster cursor was
        // elsewhere. The model's batch goes back, and is taken again from the kernel's slot on.
        if cached && self.refilled && ours.is_some_and(|o| o != (ty, off)) {
            let mut batch: Vec<(u8, u64)> = ours.into_iter().collect();
            if let Some(q) = self.slot_cache.get_mut(c) {
                batch.extend(q.drain(..));
            }
            for (sty, soff) in batch {
                self.free_piece(sty, soff, 1);
            }
            if let Some(d) = self.devs.get_mut(ty) {
                d.set_cursor(cursor, 0, off);
            }
            self.refill(cpus);
            if let Some(q) = self.slot_cache.get_mut(c)
                && q.front() == Some(&(ty, off))
            {
                q.pop_front();
                return;
            }
        }
        if cached {
            let holder = self
                .slot_cache
                .iter()
                .position(|q| q.iter().any(|&s| s == (ty, off)));
            match holder {
                Some(h) if h == c => {
                    let mut skipped = Vec::new();
                    if let Some(slot) = ours {
                        skipped.push(slot);
                    }
                    if let Some(q) = self.slot_cache.get_mut(c) {
                        while let Some(s) = q.pop_front() {
                            if s == (ty, off) {
                                break;
                            }
                            skipped.push(s);
                        }
                    }
                    for (sty, soff) in skipped {
                        self.free_piece(sty, soff, 1);
                    }
                    return;
                }
                Some(h) => {
                    if let Some(q) = self.slot_cache.get_mut(h) {
                        q.retain(|&s| s != (ty, off));
                    }
                    if let (Some(slot), Some(q)) = (ours, self.slot_cache.get_mut(c)) {
                        q.push_front(slot);
                    }
                    return;
                }
                None => {
                    if let (Some(slot), Some(q)) = (ours, self.slot_cache.get_mut(c)) {
                        q.push_front(slot);
                    }
                }
            }
        } else if let Some(slot) = ours {
            self.free_piece(slot.0, slot.1, n);
        }
        let full = self.take_slot(ty, off, order);
        if !cached && let Some(d) = self.devs.get_mut(ty) {
            let cl = off / CL;
            let last = (cl * CL + CL).min(d.max).saturating_sub(n);
            d.set_cursor(
                cursor,
                order,
                if full || off + n > last { 0 } else { off + n },
            );
        }
    }

    /// The slot `alloc_swap_scan_cluster` takes from `offset` on, with the last offset a block
    /// of the order can start at in that cluster; `None` when the scan fails. Takes nothing.
    fn find_in_cluster(&self, ty: u8, offset: u64, order: u8) -> Option<(u64, u64)> {
        let n = 1u64 << order;
        let d = self.devs.get(ty)?;
        let start = offset / CL * CL;
        let end = (start + CL).min(d.max);
        let last = end.checked_sub(n)?;
        let c = (offset / CL) as u32;
        // A cluster waiting for discard has its swap_map filled with SWAP_MAP_BAD.
        if d.list_of(c) == Some(List::Discard) || u64::from(d.count(c)) + n > CL {
            return None;
        }
        let off = d.map.find_free_block(offset, last, u32::from(order))?;
        Some((off, last))
    }

    /// `swap_entry_range_free` → `dec_cluster_info_page`.
    fn free_piece(&mut self, ty: u8, off: u64, n: u64) {
        let Some(d) = self.devs.get_mut(ty) else {
            return;
        };
        let freed = d.free_in_cluster(off, n);
        if freed == 0 {
            return;
        }
        if d.solidstate() {
            self.discard_pending |= place_freed((off / CL) as u32, d);
        }
        self.devs.note_free(ty, freed);
    }
}

/// Where a free leaves cluster `c` of a solid-state device: empty, on the free list (or the
/// discard list, returning true); else on `nonfull[order]` if it was not.
fn place_freed(c: u32, d: &mut Dev) -> bool {
    if d.count(c) == 0 {
        if d.page_discard() {
            d.move_tail(c, List::Discard);
            return true;
        }
        d.move_tail(c, List::Free);
        d.set_order(c, 0);
    } else if !matches!(d.list_of(c), Some(List::Nonfull(_))) {
        let o = d.order(c);
        d.move_tail(c, List::Nonfull(o));
    }
    false
}

/// Next free slot from `si->cluster_next`, wrapping to slot 1.
pub(crate) fn legacy_next_fit(d: &mut Dev) -> Option<u64> {
    let from = d.legacy_next.clamp(1, d.max);
    let off = d
        .map
        .find_free_slot(from, d.max)
        .or_else(|| d.find_free_slot(1, from))?;
    d.legacy_next = off + 1;
    Some(off)
}

#[cfg(test)]
impl Linux612 {
    pub(crate) fn devs(&self) -> &Devs {
        &self.devs
    }
}

crate::kernel::kernel_model!(Linux612);

impl KernelAllocator for Linux612 {
    const MODEL_NAME: &'static str = Self::NAME;

    fn devs(&self) -> &Devs {
        &self.devs
    }

    fn add_device(&mut self, dev: &SwapOn) {
        let mut d = Dev::new(dev);
        if d.solidstate() {
            d.setup_lists_interleaved(Some(List::Nonfull(0)));
        }
        self.devs.add(d);
    }

    fn remove_device(&mut self, swap_type: u8) {
        for q in &mut self.slot_cache {
            q.retain(|(ty, _)| *ty != swap_type);
        }
        self.predicted.clear();
        self.devs.remove(swap_type);
    }

    fn request(&mut self, order: u8, cpu: u32) -> Option<(u8, u64)> {
        self.folio_alloc_swap(order, cpu)
    }

    fn free_piece(&mut self, ty: u8, off: u64, n: u64) {
        Self::free_piece(self, ty, off, n);
    }

    fn online_cpus(&mut self, n: u32) {
        if n > 0 {
            self.online_cpus = u64::from(n);
            self.online_cpus_known = true;
        }
    }

    fn follow(
        &mut self,
        cpus: Cpus,
        order: u8,
        ours: Option<(u8, u64)>,
        kernel: Option<(u8, u64)>,
    ) -> bool {
        self.take_kernels_answer(cpus, order, ours, kernel);
        true
    }

    fn request_from(&mut self, order: u8, cpus: Cpus) -> Option<(u8, u64)> {
        self.folio_alloc_swap_from(order, cpus)
    }

    fn kernel_batch(&mut self, cpus: Cpus, swap_type: u8, slots: &[u64]) -> bool {
        self.adopt_batch(cpus, swap_type, slots)
    }

    /// A large request that began before the last `earlier` requests of its order decided on
    /// its CPU: 6.12 reads `next[order]` under `si->lock`, and a scan that drops the lock to
    /// reclaim swap cache lets the CPU run another task's request in between, which moves the
    /// cursor the first request already read. When the kernel's answer shows that — the cursor
    /// as it is now would have served another slot, while the one read before those requests
    /// serves the kernel's slot or fails (so the lists served it) — that earlier value is put
    /// back for this request.
    fn interleaved(&mut self, cpus: Cpus, order: u8, earlier: u32, kernel: (u8, u64)) -> bool {
        let Some(k) = (earlier as usize)
            .checked_sub(1)
            .filter(|&k| k < CURSOR_READS)
        else {
            return false;
        };
        if order == 0 || order >= PMD_ORDER {
            return false;
        }
        let cpu = super::cpu_index(cpus.decided);
        let Some(&(ty, read)) = self
            .cursor_reads
            .get(cpu)
            .and_then(|r| r.get(usize::from(order)))
            .and_then(|r| r.get(k))
        else {
            return false;
        };
        let now = self.devs.get(ty).map_or(0, |d| d.cursor(cpu, order));
        if now == read {
            return false;
        }
        let kernel_here = (kernel.0 == ty).then_some(kernel.1);
        // The slot the scan from a cursor takes (0: no cursor, no scan).
        let by = |cursor: u64| {
            (cursor != 0)
                .then(|| self.find_in_cluster(ty, cursor, order))
                .flatten()
                .map(|(off, _)| off)
        };
        let by_now = by(now);
        if by_now.is_none() || by_now == kernel_here {
            return false;
        }
        let by_read = by(read);
        if by_read.is_some() && by_read != kernel_here {
            return false;
        }
        match self.devs.get_mut(ty) {
            Some(d) => {
                d.set_cursor(cpu, order, read);
                true
            }
            None => false,
        }
    }

    /// As on 6.14+ ([`crate::kernel::Devs::hide_slots`]), and a cluster the free emptied (on the
    /// free list: a batch's scan takes a free cluster before any other) is taken off it again, to
    /// the tail of `nonfull[0]`: the scan that could not see the free found it partly used.
    fn hide(&mut self, ty: u8, off: u64, n: u64) {
        let c = (off / CL) as u32;
        let emptied = self
            .devs
            .get_mut(ty)
            .filter(|d| d.solidstate() && d.list_of(c) == Some(List::Free))
            .map(|d| d.move_tail(c, List::Nonfull(0)))
            .is_some();
        if emptied {
            self.unemptied.push((ty, c));
        }
        let before = self.hidden.len();
        self.devs.hide_slots(ty, off, n, emptied, &mut self.hidden);
        if emptied && self.hidden.len() == before {
            // Nothing hidden (the slots were in use after all): the cluster was empty.
            if let Some(d) = self.devs.get_mut(ty) {
                d.move_tail(c, List::Free);
            }
        }
    }

    /// Hides the free only where it emptied its cluster: the cluster is on the free list, or a
    /// free hidden before it in this decision took it off.
    fn hide_if_emptied(&mut self, ty: u8, off: u64, n: u64) {
        let c = (off / CL) as u32;
        if self.unemptied.contains(&(ty, c))
            || self
                .devs
                .get(ty)
                .is_some_and(|d| d.list_of(c) == Some(List::Free))
        {
            KernelAllocator::hide(self, ty, off, n);
        }
    }

    /// Gives the hidden slots back without list moves, as on 6.14+, except for a cluster the
    /// decision moved or that is empty again: 6.12 streams have no cluster events, so it goes
    /// where this model's free path puts it (the free list when empty, else nonfull).
    fn unhide_all(&mut self, _kernel_list: &dyn Fn(u8, u32) -> Option<(u8, u8)>) {
        let hidden = std::mem::take(&mut self.hidden);
        for &(ty, s, was) in &hidden {
            let Some(d) = self.devs.get_mut(ty) else {
                continue;
            };
            let c = (s / CL) as u32;
            let freed = d.free_in_cluster(s, 1);
            if d.solidstate() && (d.list_of(c) != was || d.count(c) == 0) {
                // Moved by the decision, or emptied again: where the model's free path puts it.
                self.discard_pending |= place_freed(c, d);
            }
            self.devs.note_free(ty, freed);
        }
        self.hidden = hidden;
        self.hidden.clear();
        self.unemptied.clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kernel::testutil::{on, one};
    use swapscope_core::alloc::AllocatorModel;
    use swapscope_core::event::swap_flags::{BLKDEV, PAGE_DISCARD, SOLIDSTATE};

    const SSD: u32 = SOLIDSTATE | BLKDEV;

    fn model(clusters: u64, flags: u32) -> Linux612 {
        let mut m = Linux612::new().without_slot_cache();
        m.swapon(&on(0, clusters, flags));
        m
    }

    fn dev(m: &Linux612) -> &Dev {
        m.devs.get(0).unwrap_or_else(|| unreachable!())
    }

    #[test]
    fn free_cluster_preferred_and_active_cluster_on_nonfull() {
        let mut m = model(4, SSD);
        // Even order 0 takes a free cluster first (interleaved free list: 1, 2, 3).
        assert_eq!(one(&mut m, 0, 0), Some(512));
        assert_eq!(dev(&m).list_of(1), Some(List::Nonfull(0)));
        assert_eq!(one(&mut m, 0, 0), Some(513));
        assert_eq!(one(&mut m, 1, 4), Some(1024));
        assert_eq!(dev(&m).list_of(2), Some(List::Nonfull(4)));
    }

    #[test]
    fn a_hidden_free_that_emptied_a_cluster_takes_it_off_the_free_list() {
        let mut m = model(3, SSD);
        assert_eq!(one(&mut m, 0, 0), Some(512));
        assert_eq!(one(&mut m, 0, 0), Some(513));
        m.free(0, 512, 2);
        assert_eq!(dev(&m).list_of(1), Some(List::Free));
        // A refill that could not have seen those frees finds cluster 1 partly used: the second
        // free is hidden too, although the first took the cluster off the free list.
        m.hide_free_if_emptied(0, 512, 1);
        m.hide_free_if_emptied(0, 513, 1);
        assert_eq!(dev(&m).list_of(1), Some(List::Nonfull(0)));
        assert!(dev(&m).map.is_used(512) && dev(&m).map.is_used(513));
        assert_eq!(
            one(&mut m, 1, 4),
            Some(1024),
            "the free list's next cluster"
        );
        // Given back as the kernel freed them: cluster 1 is empty again, on the free list.
        m.unhide(&|_, _| None);
        assert_eq!(dev(&m).list_of(1), Some(List::Free));
        assert!(!dev(&m).map.is_used(512) && !dev(&m).map.is_used(513));
        // Only a free that emptied its cluster is hidden that way.
        m.free(0, 1024, 1);
        m.hide_free_if_emptied(0, 1024, 1);
        assert!(!dev(&m).map.is_used(1024), "cluster 2 still holds 15 slots");
        m.unhide(&|_, _| None);
    }

    #[test]
    fn nonfull_walk_moves_to_frag_then_frag_rotates() {
        let mut m = model(3, SSD);
        let a = one(&mut m, 0, 4).unwrap_or(0);
        let b = one(&mut m, 1, 4).unwrap_or(0);
        assert_eq!((a, b), (512, 1024));
        // No free cluster left; CPU 2 walks nonfull[4]: cluster 1 moves to frag[4] and serves.
        assert_eq!(one(&mut m, 2, 4), Some(528));
        assert_eq!(dev(&m).list_of(1), Some(List::Frag(4)));
        assert_eq!(dev(&m).list_of(2), Some(List::Nonfull(4)));
        // A free moves the frag cluster back to nonfull.
        m.free(0, a, 16);
        assert_eq!(dev(&m).list_of(1), Some(List::Nonfull(4)));
    }

    #[test]
    fn fast_path_ignores_cluster_order() {
        let mut m = model(2, SSD);
        // CPU 0 order 4 takes cluster 1 and frees it completely; CPU 1 order 0 then takes it.
        let a = one(&mut m, 0, 4).unwrap_or(0);
        m.free(0, a, 16);
        assert_eq!(dev(&m).list_of(1), Some(List::Free));
        assert_eq!(one(&mut m, 1, 0), Some(512));
        assert_eq!(dev(&m).order(1), 0);
        // CPU 0's cursor still points into cluster 1 and allocates order 4 there.
        assert_eq!(one(&mut m, 0, 4), Some(528));
        assert_eq!(dev(&m).order(1), 0);
    }

    #[test]
    fn order0_steals_from_higher_orders() {
        let mut m = model(2, SSD);
        for _ in 0..31 {
            assert!(one(&mut m, 0, 4).is_some());
        }
        // nonfull[0] has cluster 0 (header); fill it from CPU 1.
        for _ in 0..511 {
            assert!(one(&mut m, 1, 0).is_some());
        }
        assert_eq!(dev(&m).list_of(0), Some(List::Full));
        assert_eq!(one(&mut m, 2, 0), Some(512 + 31 * 16));
    }

    #[test]
    fn pmd_needs_free_cluster_and_files_get_no_large_orders() {
        let mut m = model(3, SSD);
        assert_eq!(one(&mut m, 0, 9), Some(512));
        assert_eq!(dev(&m).list_of(1), Some(List::Full));
        m.free(0, 512, 256);
        assert_eq!(one(&mut m, 1, 9), Some(1024));
        assert_eq!(one(&mut m, 1, 9), None);
        let mut f = model(3, SOLIDSTATE);
        assert_eq!(one(&mut f, 0, 4), None);
        let mut hdd = model(3, BLKDEV);
        assert_eq!(one(&mut hdd, 0, 4), None);
        assert_eq!(one(&mut hdd, 0, 0), Some(1));
        assert_eq!(one(&mut hdd, 1, 0), Some(2));
    }

    #[test]
    fn discard_on_demand_restarts_search() {
        let mut m = Linux612::with_discard_timing(DiscardTiming::OnDemand);
        m.swapon(&on(0, 2, SSD | PAGE_DISCARD));
        assert_eq!(one(&mut m, 0, 9), Some(512));
        m.free(0, 512, 512);
        assert_eq!(dev(&m).list_of(1), Some(List::Discard));
        assert_eq!(one(&mut m, 1, 9), Some(512));
    }

    #[test]
    fn order0_comes_from_a_batch_of_64_per_cpu() {
        let mut m = Linux612::new();
        m.swapon(&on(0, 8, SSD));
        // CPU 0 takes 64 slots of one cluster at once; CPU 1 then gets its own batch from its
        // own cluster (per-CPU cluster pointers).
        assert_eq!(one(&mut m, 0, 0), Some(512));
        assert_eq!(dev(&m).count(1), 64);
        assert_eq!(one(&mut m, 1, 0), Some(1024));
        assert_eq!(dev(&m).count(2), 64);
        assert_eq!(one(&mut m, 0, 0), Some(513));
        assert_eq!(dev(&m).count(1), 64);
        // A large folio bypasses the cache.
        assert_eq!(one(&mut m, 0, 4), Some(1536));
    }

    #[test]
    fn low_free_swap_turns_the_cache_off_and_drains_it() {
        let mut m = Linux612::new();
        m.swapon(&on(0, 1, SSD));
        // 511 usable slots, one CPU: active while free > 320, off below 128.
        let mut held = Vec::new();
        for _ in 0..400 {
            held.push(one(&mut m, 0, 0));
        }
        assert!(held.iter().all(Option::is_some));
        // Free swap is now below 128: the cache was drained, so in-use equals handed-out.
        assert_eq!(dev(&m).count(0) as usize, held.len() + 1);
    }

    /// Following the kernel through the slot caches: the kernel's refill lacked a slot the
    /// model's had (it went back to the allocator), then the kernel's cache held one the model's
    /// did not (the model's next slot stays at the front), then the task's slot came from the
    /// other CPU's cache (ours goes back to the front of ours).
    #[test]
    fn follows_the_kernel_through_the_slot_caches() {
        let mut m = Linux612::new();
        m.swapon(&on(0, 8, SSD));
        m.set_online_cpus(2);
        assert_eq!(one(&mut m, 0, 0), Some(512));
        // The kernel handed out 514: 513 was not in its cache.
        assert_eq!(one(&mut m, 0, 0), Some(513));
        assert!(m.follow_kernel(Cpus::on(0), 0, Some((0, 513)), Some((0, 514))));
        assert_eq!(dev(&m).count(1), 63, "513 went back to the allocator");
        assert_eq!(one(&mut m, 0, 0), Some(515));
        // The kernel handed out 900, a slot no model cache holds: 516 stays at the front.
        assert!(m.follow_kernel(Cpus::on(0), 0, Some((0, 516)), Some((0, 900))));
        assert_eq!(one(&mut m, 0, 0), Some(516));
        // CPU 1's batch starts at 1024; the kernel served CPU 0's request from it.
        assert_eq!(one(&mut m, 1, 0), Some(1024));
        assert!(m.follow_kernel(Cpus::on(0), 0, Some((0, 517)), Some((0, 1025))));
        assert_eq!(one(&mut m, 0, 0), Some(517));
        assert_eq!(one(&mut m, 1, 0), Some(1026));
    }

    #[test]
    fn a_request_interleaved_on_its_cpu_reads_the_cursor_it_found() {
        // Another task's request on CPU 0 found no cursor and took cluster 1 off the free list
        // while this request, begun before it, had read the same empty cursor: the kernel
        // served this one from the lists (cluster 2), not from the cursor the other left.
        let mut m = model(4, SSD);
        assert_eq!(one(&mut m, 0, 4), Some(512));
        assert!(
            !AllocatorModel::interleaved(&mut m, Cpus::on(0), 4, 1, (0, 528)),
            "explained by now"
        );
        assert!(
            !AllocatorModel::interleaved(&mut m, Cpus::on(0), 4, 0, (0, 1024)),
            "not interleaved"
        );
        assert!(
            !AllocatorModel::interleaved(&mut m, Cpus::on(0), 4, 9, (0, 1024)),
            "not kept that far"
        );
        assert!(AllocatorModel::interleaved(
            &mut m,
            Cpus::on(0),
            4,
            1,
            (0, 1024)
        ));
        assert_eq!(one(&mut m, 0, 4), Some(1024));
        // Its answer set the cursor, as in the kernel: the next request follows it.
        assert_eq!(one(&mut m, 0, 4), Some(1040));
        // A cursor that serves the kernel's slot is the one it read: the other request took
        // 1040, freed before this one's grant.
        let mut m = model(4, SSD);
        assert_eq!(one(&mut m, 1, 4), Some(512));
        assert_eq!(one(&mut m, 1, 4), Some(528));
        m.free(0, 528, 16);
        assert!(AllocatorModel::interleaved(
            &mut m,
            Cpus::on(1),
            4,
            1,
            (0, 528)
        ));
        assert_eq!(one(&mut m, 1, 4), Some(528));
    }

    /// A large request the kernel refused: the model's slots go back and its CPU has no next
    /// slot, as the kernel's failed scans leave it.
    #[test]
    fn follows_a_kernel_refusal() {
        let mut m = model(8, SSD);
        assert_eq!(one(&mut m, 0, 4), Some(512));
        assert_eq!(one(&mut m, 0, 4), Some(528));
        assert!(m.follow_kernel(Cpus::on(0), 4, Some((0, 528)), None));
        assert_eq!(dev(&m).count(1), 16);
        // No next slot on CPU 0: the next request starts over (the free list's head, 6.12).
        assert_eq!(one(&mut m, 0, 4), Some(1024));
    }
}
