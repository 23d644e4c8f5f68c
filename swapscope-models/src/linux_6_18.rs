//! `linux-6.18`: the swap-slot allocator of Linux 6.18 (`mm/swapfile.c`, v6.18.4), which is also
//! the allocator of 7.x (the list policy is unchanged in the 2026 mm tree).
//!
//! Mirrors `folio_alloc_swap` → `swap_alloc_fast` / `swap_alloc_slow` →
//! `cluster_alloc_swap_entry` → `alloc_swap_scan_list` / `alloc_swap_scan_cluster`, with
//! `relocate_cluster`, `partial_free_cluster`, `free_cluster` / `__free_cluster`,
//! `swap_do_scheduled_discard`, `swap_sync_discard` and `swap_reclaim_full_clusters`:
//!
//! * a global per-CPU cache (`percpu_swap_cluster.si[order]`, `.offset[order]`) is the fast
//!   path; it scans forward only from the cached offset, and only SSDs are cached;
//! * every scanned cluster is relocated: frag after use (success or not), full when full, free
//!   when empty; a free moves a partial cluster to `nonfull[ci->order]`;
//! * search order: per-device HDD cursor → (discard devices: one free cluster) → all of
//!   `nonfull[order]` → one free cluster → (if `vm_swap_full`) rotate one full cluster → one
//!   `frag[order]` cluster → order 0 only: steal from `frag[o]` then `nonfull[o]`, o = 1..9;
//! * PMD order (9) skips nonfull and frag: it needs a free cluster;
//! * no order > 0 on devices without `SWP_BLKDEV` (swap files);
//! * a cluster on the free list has no swap table and is not usable by the fast path;
//! * large orders try one device only; order 0 tries each available device once.
//!
//! The algorithm is [`ClusterListAlloc`], generic over the [`Rules`] that changed between 6.14
//! and 6.18; `linux-6.14` ([`super::linux_6_14`]) is the same code under the 6.14–6.17 rules.
//!
//! Where the stream carries the kernel's isolations (`isolate_lock_cluster`, 6.14+), the model
//! follows them where lock contention explains them: `isolate_lock_cluster` takes the first
//! cluster of a list whose lock it can take, and with several CPUs the ones ahead of it may be
//! held by others (allocating from them, freeing into them). So when the cluster the kernel took
//! next on this CPU is on the list being scanned with at most `online CPUs − 1` clusters ahead,
//! the model takes it; when it is on another list and the one being scanned holds at most that
//! many clusters, the model finds nothing here, as the kernel did (all of them were held). Each
//! such isolation counts as steered (`steered_isolations`). Contention cannot explain more, so
//! with one CPU nothing is ever steered, and a model whose list order is wrong is not rescued:
//! it keeps its own rule. Everything else — the slot in the cluster, the per-CPU cache, success
//! or failure — stays the model's own.
//!
//! Simplifications: without the kernel's isolations trylock always succeeds; swap-table
//! allocation never fails; one NUMA
//! node; cache-only slots are unknown, so reclaim frees nothing (it only rotates the full list);
//! the discard worker's timing is a [`DiscardTiming`] choice; memcg charge failures are not
//! modelled (the stream's own `Failure` results cover them).

use std::marker::PhantomData;

use super::kernel::{CL, Dev, Devs, DiscardTiming, KernelAllocator, List};
use swapscope_core::alloc::{MAX_ORDER, NR_ORDERS};
use swapscope_core::event::SwapOn;

const PMD_ORDER: u8 = MAX_ORDER;

#[derive(Clone, Copy, Debug, Default)]
struct PercpuCluster {
    si: [Option<u8>; NR_ORDERS],
    offset: [u64; NR_ORDERS],
}

/// Where the cluster-list allocators of 6.14–6.18 differ. Each rule names the version that
/// changed it; everything else (relocation, per-CPU fast path, HDD cursor, stealing, freeing)
/// is shared.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Rules {
    /// Report name of the model.
    pub name: &'static str,
    /// 6.18 (9a42aed48421 "prefer nonfull over free clusters"): `nonfull[order]` is scanned
    /// before a free cluster is taken, except on `SWP_PAGE_DISCARD` devices. Before: one free
    /// cluster first, then nonfull.
    pub nonfull_before_free: bool,
    /// 6.18 (swap table phase I): a cluster on the free list has no swap table and is not
    /// usable by the per-CPU fast path or the HDD cursor.
    pub free_is_unusable: bool,
    /// 6.18 ("only scan one cluster in fragment list"): one `frag[order]` cluster per attempt.
    /// Before: rotate through every cluster that was on `frag[order]` (`frag_cluster_nr`).
    pub one_frag_cluster: bool,
    /// 6.14–6.17: when nothing served the request and clusters wait for discard,
    /// `cluster_alloc_swap_entry` discards them synchronously and restarts (any order).
    /// 6.18: `folio_alloc_swap` calls `swap_sync_discard` after an order-0 failure instead.
    pub discard_in_alloc: bool,
    /// 6.18 `setup_clusters` fills the lists in index order; 6.12–6.17 column-interleaved.
    pub sequential_setup: bool,
}

/// A kernel version's [`Rules`], as a type (so each version is its own model type).
pub trait Policy: Clone + Copy + std::fmt::Debug + Default + Send + 'static {
    const RULES: Rules;
}

/// The rules of 6.18 (and 7.x).
#[derive(Clone, Copy, Debug, Default)]
pub struct V618;

impl Policy for V618 {
    const RULES: Rules = Rules {
        name: "linux-6.18",
        nonfull_before_free: true,
        free_is_unusable: true,
        one_frag_cluster: true,
        discard_in_alloc: false,
        sequential_setup: true,
    };
}

/// The cluster-list allocator of 6.14–6.18 under the rules `P` (one definition of the
/// algorithm; [`Linux618`] and [`super::Linux614`] are its instances).
#[derive(Clone, Debug, Default)]
pub struct ClusterListAlloc<P: Policy> {
    devs: Devs,
    pcp: Vec<PercpuCluster>,
    discard: DiscardTiming,
    discard_pending: bool,
    /// Per CPU: the clusters the kernel's allocator isolated since that CPU's last request
    /// (type, cluster), oldest first ([`AllocatorModel::kernel_isolated`]).
    hints: Vec<std::collections::VecDeque<(u8, u32)>>,
    /// The CPU of the request being served (whose hints isolations consult).
    cur_cpu: u32,
    /// Isolations that took the kernel's cluster instead of the list's head, or found a list
    /// empty that was not (its clusters were held by other CPUs).
    steered: u64,
    /// `num_online_cpus()` (the stream's; else the highest CPU seen + 1): how many clusters other
    /// CPUs can hold at once is one fewer.
    online_cpus: u32,
    /// Slots hidden from the next decision ([`AllocatorModel::hide_free`]): (type, slot, the
    /// cluster's list when it was hidden).
    hidden: Vec<crate::kernel::HiddenSlot>,
    policy: PhantomData<P>,
}

/// Kernel isolations remembered per CPU at most (a request takes a handful).
const MAX_HINTS: usize = 64;

/// The Linux 6.18 allocator.
pub type Linux618 = ClusterListAlloc<V618>;

impl<P: Policy> ClusterListAlloc<P> {
    pub const NAME: &'static str = P::RULES.name;

    pub fn new() -> Self {
        Self::default()
    }

    /// With an explicit discard-worker timing.
    pub fn with_discard_timing(discard: DiscardTiming) -> Self {
        Self {
            discard,
            ..Self::default()
        }
    }

    fn pcp_mut(&mut self, cpu: u32) -> &mut PercpuCluster {
        let i = super::cpu_index(cpu);
        if self.pcp.len() <= i {
            self.pcp.resize(i + 1, PercpuCluster::default());
        }
        // The resize above makes the index valid; fall back to a fresh entry defensively.
        let len = self.pcp.len();
        &mut self.pcp[i.min(len - 1)]
    }

    /// `cluster_is_usable`: not full/discard, (6.18) has a swap table (not on the free list),
    /// and empty or of the same order for order > 0.
    fn usable(d: &Dev, c: u32, order: u8) -> bool {
        match d.list_of(c) {
            Some(List::Full | List::Discard) => false,
            Some(List::Free) if P::RULES.free_is_unusable => false,
            _ => order == 0 || d.count(c) == 0 || d.order(c) == order,
        }
    }

    /// `free_cluster`: count reached 0.
    fn free_cluster(d: &mut Dev, c: u32, pending: &mut bool) {
        if d.page_discard() {
            d.move_tail(c, List::Discard);
            *pending = true;
        } else {
            d.move_tail(c, List::Free);
            d.set_order(c, 0);
        }
    }

    /// `relocate_cluster`.
    fn relocate(d: &mut Dev, c: u32, pending: &mut bool) {
        let list = d.list_of(c);
        if list == Some(List::Discard) {
            return;
        }
        let count = u64::from(d.count(c));
        if count == 0 {
            if list != Some(List::Free) {
                Self::free_cluster(d, c, pending);
            }
        } else if count != CL {
            if !matches!(list, Some(List::Frag(_))) {
                let o = d.order(c);
                d.move_tail(c, List::Frag(o));
            }
        } else if list != Some(List::Full) {
            d.move_tail(c, List::Full);
        }
    }

    /// `alloc_swap_scan_cluster`: scans one cluster forward from `offset`; returns the offset
    /// found or 0.
    fn scan_cluster(&mut self, ty: u8, c: u32, offset: u64, order: u8, cpu: u32) -> u64 {
        let n = 1u64 << order;
        let mut next = 0;
        let mut found = 0;
        let mut became_full = false;
        let solid;
        {
            let Some(d) = self.devs.get_mut(ty) else {
                return 0;
            };
            solid = d.solidstate();
            let start = u64::from(c) * CL;
            let end = (start + CL).min(d.max);
            if !(end < n || u64::from(d.count(c)) + n > CL) {
                let last = end - n;
                if let Some(off) = d.map.find_free_block(offset, last, u32::from(order)) {
                    if d.count(c) == 0 {
                        d.set_order(c, order);
                    }
                    became_full = d.alloc_range(off, n);
                    found = off;
                    if u64::from(d.count(c)) < CL && off + n <= last {
                        next = off + n;
                    }
                }
            }
            Self::relocate(d, c, &mut self.discard_pending);
            if !solid && let Some(g) = d.global_next.get_mut(usize::from(order)) {
                *g = next;
            }
        }
        if found != 0 {
            self.devs.note_alloc(ty, n, became_full);
        }
        if solid {
            let p = self.pcp_mut(cpu);
            let o = usize::from(order);
            if let (Some(s), Some(off)) = (p.si.get_mut(o), p.offset.get_mut(o)) {
                *s = Some(ty);
                *off = next;
            }
        }
        found
    }

    /// `isolate_lock_cluster` on `list` for the request being served. The kernel's next isolation
    /// on this CPU decides it where lock contention explains it (see the module documentation):
    /// that cluster, when it is on `list` behind at most `online CPUs − 1` others; nothing, when
    /// it is on another list and `list` holds at most that many. Otherwise the head.
    fn isolate(&mut self, ty: u8, list: List) -> Option<u32> {
        let held = self
            .online_cpus
            .max(self.cur_cpu.saturating_add(1))
            .saturating_sub(1);
        let hints = self.hints.get_mut(super::cpu_index(self.cur_cpu));
        let d = self.devs.get_mut(ty)?;
        if let Some(h) = hints
            && let Some(&(hty, c)) = h.front()
            && hty == ty
        {
            match d.list_of(c) {
                Some(l) if l == list => {
                    if let Some(ahead) = d.position(list, c, held) {
                        h.pop_front();
                        if ahead > 0 {
                            self.steered += 1;
                        }
                        return d.isolate_at(list, c);
                    }
                }
                Some(_) if held > 0 && d.len(list) > 0 && d.len(list) <= held => {
                    self.steered += 1;
                    return None;
                }
                _ => {}
            }
        }
        d.isolate(list)
    }

    /// `alloc_swap_scan_list`: isolate clusters from the head of `list` and scan each from its
    /// start; `scan_all` keeps going until one serves the request (bounded by the list length,
    /// so a list whose clusters all fail cannot loop forever).
    fn scan_list(&mut self, ty: u8, list: List, order: u8, scan_all: bool, cpu: u32) -> u64 {
        let budget = match self.devs.get(ty) {
            Some(d) if scan_all => d.len(list),
            Some(_) => 1,
            None => 0,
        };
        self.scan_list_n(ty, list, order, budget, cpu)
    }

    /// Isolates and scans at most `budget` clusters from the head of `list`.
    fn scan_list_n(&mut self, ty: u8, list: List, order: u8, mut budget: u32, cpu: u32) -> u64 {
        while budget > 0 {
            budget -= 1;
            let Some(c) = self.isolate(ty, list) else {
                break;
            };
            let found = self.scan_cluster(ty, c, u64::from(c) * CL, order, cpu);
            if found != 0 {
                return found;
            }
        }
        0
    }

    /// `swap_reclaim_full_clusters(si, false)`: one full cluster is isolated, scanned for
    /// cache-only slots (none known here) and relocated to the tail of the full list.
    fn reclaim_full(&mut self, ty: u8) {
        if let Some(c) = self.isolate(ty, List::Full)
            && let Some(d) = self.devs.get_mut(ty)
        {
            Self::relocate(d, c, &mut self.discard_pending);
        }
    }

    /// `cluster_alloc_swap_entry`.
    fn cluster_alloc(&mut self, ty: u8, order: u8, cpu: u32) -> u64 {
        let Some(d) = self.devs.get(ty) else {
            return 0;
        };
        if order > 0 && !d.blkdev() {
            return 0;
        }
        let discard = d.page_discard();
        if !d.solidstate() {
            let off = d.global_next.get(usize::from(order)).copied().unwrap_or(0);
            if off != 0 {
                let c = (off / CL) as u32;
                if Self::usable(d, c, order) {
                    let o = if d.count(c) == 0 {
                        u64::from(c) * CL
                    } else {
                        off
                    };
                    let f = self.scan_cluster(ty, c, o, order, cpu);
                    if f != 0 {
                        return f;
                    }
                }
            }
        }
        let rules = P::RULES;
        // 6.18 takes a free cluster first only on discard devices; before 6.18 always.
        let free_first = !rules.nonfull_before_free || discard;
        loop {
            if free_first {
                let f = self.scan_list(ty, List::Free, order, false, cpu);
                if f != 0 {
                    return f;
                }
            }
            // 6.14–6.17 reclaim right after the free list; 6.18 after nonfull and free.
            if !rules.nonfull_before_free && self.devs.vm_swap_full() {
                self.reclaim_full(ty);
            }
            let mut nonfull_failed = 0;
            if order < PMD_ORDER {
                let before = self.devs.get(ty).map_or(0, |d| d.len(List::Nonfull(order)));
                let f = self.scan_list(ty, List::Nonfull(order), order, true, cpu);
                if f != 0 {
                    return f;
                }
                // Every cluster that failed went to frag[order] (`frags++` in 6.14–6.17).
                nonfull_failed = before;
            }
            if !free_first {
                let f = self.scan_list(ty, List::Free, order, false, cpu);
                if f != 0 {
                    return f;
                }
            }
            if rules.nonfull_before_free && self.devs.vm_swap_full() {
                self.reclaim_full(ty);
            }
            if order < PMD_ORDER {
                let f = if rules.one_frag_cluster {
                    self.scan_list(ty, List::Frag(order), order, false, cpu)
                } else {
                    // `frag_cluster_nr[order]` read after the nonfull walk, minus the clusters
                    // that walk just moved there: each older frag cluster is scanned once and
                    // rotated to the tail.
                    let existing = self.devs.get(ty).map_or(0, |d| d.len(List::Frag(order)));
                    let budget = existing.saturating_sub(nonfull_failed);
                    self.scan_list_n(ty, List::Frag(order), order, budget, cpu)
                };
                if f != 0 {
                    return f;
                }
            }
            if rules.discard_in_alloc && discard && Self::discard_device(&mut self.devs, ty) {
                continue;
            }
            break;
        }
        if order > 0 {
            return 0;
        }
        for o in 1..NR_ORDERS as u8 {
            let f = self.scan_list(ty, List::Frag(o), 0, true, cpu);
            if f != 0 {
                return f;
            }
            let f = self.scan_list(ty, List::Nonfull(o), 0, true, cpu);
            if f != 0 {
                return f;
            }
        }
        0
    }

    /// `swap_alloc_fast`.
    fn alloc_fast(&mut self, order: u8, cpu: u32) -> Option<(u8, u64)> {
        let p = self.pcp.get(super::cpu_index(cpu))?;
        let ty = (*p.si.get(usize::from(order))?)?;
        let off = *p.offset.get(usize::from(order))?;
        if off == 0 {
            return None;
        }
        let d = self.devs.get(ty)?;
        let c = (off / CL) as u32;
        if !Self::usable(d, c, order) {
            return None;
        }
        let o = if d.count(c) == 0 {
            u64::from(c) * CL
        } else {
            off
        };
        let f = self.scan_cluster(ty, c, o, order, cpu);
        (f != 0).then_some((ty, f))
    }

    /// `swap_alloc_slow`: devices in priority order, each requeued before it is tried.
    fn alloc_slow(&mut self, order: u8, cpu: u32) -> Option<(u8, u64)> {
        let snap = self.devs.avail_snapshot();
        let mut r = None;
        for &ty in &snap {
            self.devs.requeue(ty);
            let f = self.cluster_alloc(ty, order, cpu);
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

    /// `swap_do_scheduled_discard` on every device with pending discards.
    fn run_discard_worker(&mut self) {
        for ty in 0..=u8::MAX {
            Self::discard_device(&mut self.devs, ty);
        }
        self.discard_pending = false;
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

    /// `swap_sync_discard`: the first available device with pending discards.
    fn sync_discard(&mut self) -> bool {
        let snap = self.devs.avail_snapshot();
        let mut done = false;
        for &ty in &snap {
            if self.devs.get(ty).is_some_and(|d| d.page_discard())
                && Self::discard_device(&mut self.devs, ty)
            {
                done = true;
                break;
            }
        }
        self.devs.put_avail_snapshot(snap);
        done
    }

    /// `folio_alloc_swap`.
    fn folio_alloc_swap(&mut self, order: u8, cpu: u32) -> Option<(u8, u64)> {
        if order > MAX_ORDER {
            return None;
        }
        self.cur_cpu = cpu;
        let r = self.folio_alloc_swap_inner(order, cpu);
        // Isolations the request did not use belonged to something else (a reclaim worker).
        if let Some(h) = self.hints.get_mut(super::cpu_index(cpu)) {
            h.clear();
        }
        r
    }

    fn folio_alloc_swap_inner(&mut self, order: u8, cpu: u32) -> Option<(u8, u64)> {
        if self.discard_pending && self.discard == DiscardTiming::BeforeNextAlloc {
            self.run_discard_worker();
        }
        loop {
            let r = match self.alloc_fast(order, cpu) {
                Some(r) => Some(r),
                None => self.alloc_slow(order, cpu),
            };
            if r.is_none() && order == 0 && !P::RULES.discard_in_alloc && self.sync_discard() {
                continue;
            }
            return r;
        }
    }

    /// [`AllocatorModel::follow_kernel`]: the model's own slots go back as if never taken (the
    /// cluster relocated by its count, as after a scan: no `partial_free_cluster`), the kernel's
    /// are taken (off whatever list the cluster was on, relocated after the allocation, as
    /// `alloc_swap_scan_cluster` does), and the CPU's cache for the order is what the kernel's
    /// scan leaves: the next slot after the kernel's in that cluster, or none (the kernel
    /// refused: its last scan failed).
    fn take_kernels_answer(
        &mut self,
        cpu: u32,
        order: u8,
        ours: Option<(u8, u64)>,
        kernel: Option<(u8, u64)>,
    ) {
        let n = 1u64 << order.min(MAX_ORDER);
        if let Some((ty, off)) = ours
            && let Some(d) = self.devs.get_mut(ty)
        {
            let freed = d.free_in_cluster(off, n);
            let c = (off / CL) as u32;
            if d.list_of(c).is_some() {
                Self::relocate(d, c, &mut self.discard_pending);
            }
            self.devs.note_free(ty, freed);
        }
        let next = match kernel {
            Some((ty, off)) => {
                let Some(d) = self.devs.get_mut(ty) else {
                    return;
                };
                let c = (off / CL) as u32;
                let start = u64::from(c) * CL;
                let last = (start + CL).min(d.max).saturating_sub(n);
                if d.list_of(c).is_some() {
                    d.unlink(c);
                }
                if d.count(c) == 0 {
                    d.set_order(c, order);
                }
                let became_full = d.alloc_range(off, n);
                let next = if u64::from(d.count(c)) < CL && off + n <= last {
                    off + n
                } else {
                    0
                };
                Self::relocate(d, c, &mut self.discard_pending);
                let solid = d.solidstate();
                self.devs.note_alloc(ty, n, became_full);
                solid.then_some((ty, next))
            }
            None => self
                .pcp
                .get(super::cpu_index(cpu))
                .and_then(|p| p.si.get(usize::from(order)).copied().flatten())
                .map(|ty| (ty, 0)),
        };
        if let Some((ty, next)) = next {
            let p = self.pcp_mut(cpu);
            let o = usize::from(order);
            if let (Some(s), Some(off)) = (p.si.get_mut(o), p.offset.get_mut(o)) {
                *s = Some(ty);
                *off = next;
            }
        }
    }

    fn free_piece(&mut self, ty: u8, off: u64, n: u64) {
        let Some(d) = self.devs.get_mut(ty) else {
            return;
        };
        let freed = d.free_in_cluster(off, n);
        if freed == 0 {
            return;
        }
        let c = (off / CL) as u32;
        if d.count(c) == 0 {
            Self::free_cluster(d, c, &mut self.discard_pending);
        } else if !matches!(d.list_of(c), Some(List::Nonfull(_))) {
            // partial_free_cluster
            let o = d.order(c);
            d.move_tail(c, List::Nonfull(o));
        }
        self.devs.note_free(ty, freed);
    }
}

#[cfg(test)]
impl<P: Policy> ClusterListAlloc<P> {
    pub(crate) fn devs(&self) -> &Devs {
        &self.devs
    }
}

crate::kernel::kernel_model!(@ P: Policy; ClusterListAlloc<P>);

impl<P: Policy> KernelAllocator for ClusterListAlloc<P> {
    const MODEL_NAME: &'static str = Self::NAME;

    fn devs(&self) -> &Devs {
        &self.devs
    }

    fn add_device(&mut self, dev: &SwapOn) {
        let mut d = Dev::new(dev);
        if P::RULES.sequential_setup {
            d.setup_lists_sequential();
        } else {
            d.setup_lists_interleaved(Some(List::Nonfull(0)));
        }
        self.devs.add(d);
    }

    fn remove_device(&mut self, swap_type: u8) {
        self.devs.remove(swap_type);
        // flush_percpu_swap_cluster
        for p in &mut self.pcp {
            for (s, off) in p.si.iter_mut().zip(p.offset.iter_mut()) {
                if *s == Some(swap_type) {
                    *s = None;
                    *off = 0;
                }
            }
        }
    }

    fn request(&mut self, order: u8, cpu: u32) -> Option<(u8, u64)> {
        self.folio_alloc_swap(order, cpu)
    }

    fn online_cpus(&mut self, n: u32) {
        self.online_cpus = n;
    }

    fn isolated_by_kernel(&mut self, cpu: u32, swap_type: u8, cluster: u32) {
        let i = super::cpu_index(cpu);
        if self.hints.len() <= i {
            self.hints.resize_with(i + 1, Default::default);
        }
        if let Some(h) = self.hints.get_mut(i) {
            if h.len() >= MAX_HINTS {
                h.pop_front();
            }
            h.push_back((swap_type, cluster));
        }
    }

    fn steered(&self) -> Option<u64> {
        Some(self.steered)
    }

    fn follow(
        &mut self,
        cpus: swapscope_core::alloc::Cpus,
        order: u8,
        ours: Option<(u8, u64)>,
        kernel: Option<(u8, u64)>,
    ) -> bool {
        self.take_kernels_answer(cpus.decided, order, ours, kernel);
        true
    }

    fn free_piece(&mut self, ty: u8, off: u64, n: u64) {
        Self::free_piece(self, ty, off, n);
    }

    /// Marks the free slots of `off .. off + n` (one cluster) used, without moving the cluster:
    /// it stays where the free put it, as the kernel's lists had it by the time of the decision.
    fn hide(&mut self, ty: u8, off: u64, n: u64) {
        self.devs.hide_slots(ty, off, n, false, &mut self.hidden);
    }

    /// Gives the hidden slots back without list moves: the frees that released them already
    /// moved their clusters when the stream had them. A cluster the decision moved (a scan that
    /// found it fuller than it was) goes to the list the kernel has it on now; without that, to
    /// where `relocate_cluster` puts it by its true count when the decision filed it as full.
    fn unhide_all(&mut self, kernel_list: &dyn Fn(u8, u32) -> Option<(u8, u8)>) {
        use swapscope_core::event::cluster_list as cl;
        let hidden = std::mem::take(&mut self.hidden);
        for &(ty, s, was) in &hidden {
            let Some(d) = self.devs.get_mut(ty) else {
                continue;
            };
            let freed = d.free_in_cluster(s, 1);
            self.devs.note_free(ty, freed);
            let Some(d) = self.devs.get_mut(ty) else {
                continue;
            };
            let c = (s / CL) as u32;
            if d.list_of(c) == was {
                continue;
            }
            let kernel = kernel_list(ty, c).and_then(|(code, order)| match code {
                cl::FREE => Some(List::Free),
                cl::NONFULL => Some(List::Nonfull(order)),
                cl::FRAG => Some(List::Frag(order)),
                cl::FULL => Some(List::Full),
                cl::DISCARD => Some(List::Discard),
                _ => None,
            });
            match kernel {
                Some(l) => {
                    if let List::Nonfull(o) | List::Frag(o) = l {
                        d.set_order(c, o);
                    }
                    d.move_tail(c, l);
                }
                None if d.list_of(c) == Some(List::Full) && u64::from(d.count(c)) < CL => {
                    Self::relocate(d, c, &mut self.discard_pending);
                }
                None => {}
            }
        }
        self.hidden = hidden;
        self.hidden.clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kernel::testutil::{on, one};
    use swapscope_core::alloc::AllocatorModel;
    use swapscope_core::event::swap_flags::{BLKDEV, PAGE_DISCARD, SOLIDSTATE};

    const SSD: u32 = SOLIDSTATE | BLKDEV;

    fn model(clusters: u64, flags: u32) -> Linux618 {
        let mut m = Linux618::new();
        m.swapon(&on(0, clusters, flags));
        m
    }

    fn dev(m: &Linux618) -> &Dev {
        m.devs.get(0).unwrap_or_else(|| unreachable!())
    }

    #[test]
    fn hidden_frees_are_not_found_and_come_back_as_frees() {
        let mut m = model(2, SSD);
        for i in 0..32 {
            assert_eq!(one(&mut m, 0, 4), Some(512 + 16 * i));
        }
        assert_eq!(dev(&m).list_of(1), Some(List::Full));
        // Another CPU frees 16 slots: the cluster goes to nonfull.
        m.free(0, 512, 16);
        assert_eq!(dev(&m).list_of(1), Some(List::Nonfull(4)));
        // A decision that could not have seen them refuses, and leaves them as the free did.
        m.hide_free(0, 512, 16);
        m.hide_free(0, 600, 1); // in use: nothing to hide
        assert_eq!(one(&mut m, 1, 4), None);
        // The refusal's scan found the cluster full (the hidden slots) and relocated it to the
        // full list: it goes where its true count puts it.
        m.unhide(&|_, _| None);
        assert_eq!(dev(&m).count(1), 496);
        assert_eq!(dev(&m).list_of(1), Some(List::Frag(4)));
        assert_eq!(one(&mut m, 1, 4), Some(512));
        // Nothing is hidden in a cluster the free emptied (it went to the free list).
        let mut m = model(2, SSD);
        assert_eq!(one(&mut m, 0, 4), Some(512));
        m.free(0, 512, 16);
        m.hide_free(0, 512, 16);
        assert_eq!(dev(&m).count(1), 0);
        m.unhide(&|_, _| None);
        assert_eq!(dev(&m).list_of(1), Some(List::Free));
    }

    #[test]
    fn setup_puts_header_cluster_on_nonfull0() {
        let m = model(4, SSD);
        let d = dev(&m);
        assert_eq!(d.list_of(0), Some(List::Nonfull(0)));
        assert_eq!(d.len(List::Free), 3);
    }

    #[test]
    fn order0_uses_nonfull_header_cluster_then_frag() {
        let mut m = model(4, SSD);
        assert_eq!(one(&mut m, 0, 0), Some(1));
        // The scanned cluster is relocated to frag[0] and cached per CPU.
        assert_eq!(dev(&m).list_of(0), Some(List::Frag(0)));
        assert_eq!(one(&mut m, 0, 0), Some(2));
        // Another CPU has no cache: nonfull[0] is empty, so it takes a free cluster.
        assert_eq!(one(&mut m, 1, 0), Some(512));
        assert_eq!(dev(&m).list_of(1), Some(List::Frag(0)));
    }

    #[test]
    fn free_moves_frag_to_nonfull_and_empty_to_free() {
        let mut m = model(4, SSD);
        let a = one(&mut m, 0, 4).unwrap_or(0);
        assert_eq!(a, 512);
        let b = one(&mut m, 0, 4).unwrap_or(0);
        assert_eq!(b, 528);
        assert_eq!(dev(&m).list_of(1), Some(List::Frag(4)));
        m.free(0, a, 16);
        assert_eq!(dev(&m).list_of(1), Some(List::Nonfull(4)));
        m.free(0, b, 16);
        assert_eq!(dev(&m).list_of(1), Some(List::Free));
        assert_eq!(dev(&m).order(1), 0);
        assert_eq!(dev(&m).head(List::Free), Some(2));
    }

    #[test]
    fn full_cluster_goes_to_full_list() {
        let mut m = model(3, SSD);
        assert_eq!(one(&mut m, 0, 9), Some(512));
        assert_eq!(dev(&m).list_of(1), Some(List::Full));
        m.free(0, 512 + 7, 1);
        assert_eq!(dev(&m).list_of(1), Some(List::Nonfull(9)));
    }

    #[test]
    fn fast_path_is_forward_only() {
        let mut m = model(4, SSD);
        let a = one(&mut m, 0, 4).unwrap_or(0);
        let b = one(&mut m, 0, 4).unwrap_or(0);
        m.free(0, a, 16);
        assert_eq!(dev(&m).list_of(1), Some(List::Nonfull(4)));
        // The hole at `a` is behind the per-CPU cursor: the fast path continues forward, and
        // relocates the cluster back to frag.
        assert_eq!(one(&mut m, 0, 4), Some(544));
        assert_eq!(dev(&m).list_of(1), Some(List::Frag(4)));
        // After another free, a CPU without a cache isolates the cluster from nonfull[4] and
        // scans it from the start.
        m.free(0, b, 16);
        assert_eq!(one(&mut m, 1, 4), Some(a));
    }

    #[test]
    fn nonfull_preferred_over_free_unless_discard() {
        for (flags, expect) in [(SSD, 512u64), (SSD | PAGE_DISCARD, 1024)] {
            let mut m = Linux618::with_discard_timing(DiscardTiming::OnDemand);
            m.swapon(&on(0, 4, flags));
            let a = one(&mut m, 0, 4).unwrap_or(0);
            let _ = one(&mut m, 0, 4);
            m.free(0, a, 16);
            assert_eq!(one(&mut m, 1, 4), Some(expect), "flags {flags:#x}");
        }
    }

    #[test]
    fn only_one_frag_cluster_per_attempt() {
        let mut m = model(4, SSD);
        // Two order-4 clusters (1 and 2) partly used by CPUs 0 and 1; both sit on frag[4].
        let a = one(&mut m, 0, 4).unwrap_or(0);
        let b = one(&mut m, 1, 4).unwrap_or(0);
        assert_eq!((a, b), (512, 1024));
        // Fill cluster 3 (the last free one) with PMD so no free cluster remains.
        assert_eq!(one(&mut m, 2, 9), Some(1536));
        assert_eq!(dev(&m).len(List::Frag(4)), 2);
        // CPU 3 has no cache, nonfull[4] and free are empty: one frag cluster (the head, 1) is
        // scanned and rotated to the tail.
        assert_eq!(one(&mut m, 3, 4), Some(528));
        assert_eq!(dev(&m).head(List::Frag(4)), Some(2));
    }

    #[test]
    fn order0_steals_from_frag_then_nonfull_of_larger_orders() {
        // Two clusters: 0 (header, nonfull[0]) and 1.
        let mut m = model(2, SSD);
        // CPU 0 takes cluster 1 for order 4 and fills it up but one block.
        for _ in 0..31 {
            assert!(one(&mut m, 0, 4).is_some());
        }
        // Fill cluster 0 with order 0 from CPU 1.
        for _ in 0..511 {
            assert!(one(&mut m, 1, 0).is_some());
        }
        assert_eq!(dev(&m).list_of(0), Some(List::Full));
        assert_eq!(dev(&m).list_of(1), Some(List::Frag(4)));
        // CPU 2 order 0: nothing in nonfull[0]/free/frag[0]: it steals from frag[4].
        assert_eq!(one(&mut m, 2, 0), Some(512 + 31 * 16));
        assert_eq!(dev(&m).list_of(1), Some(List::Frag(4)));
        assert_eq!(dev(&m).order(1), 4);
        // Free a block in cluster 1: it goes to nonfull[4]; CPU 3 steals from there.
        m.free(0, 512, 16);
        assert_eq!(dev(&m).list_of(1), Some(List::Nonfull(4)));
        assert_eq!(one(&mut m, 3, 0), Some(512));
        assert_eq!(dev(&m).list_of(1), Some(List::Frag(4)));
    }

    #[test]
    fn pmd_only_from_free_cluster() {
        let mut m = model(3, SSD);
        let a = one(&mut m, 0, 9).unwrap_or(0);
        assert_eq!(a, 512);
        // Free half of it: the cluster is on nonfull[9] with 256 free aligned slots — useless.
        m.free(0, 512, 256);
        assert_eq!(one(&mut m, 1, 9), Some(1024));
        assert_eq!(one(&mut m, 2, 9), None);
        // Free the rest: the cluster is free again and serves the next PMD request.
        m.free(0, 768, 256);
        assert_eq!(one(&mut m, 2, 9), Some(512));
    }

    #[test]
    fn swap_file_gets_no_large_orders() {
        let mut m = model(4, SOLIDSTATE);
        assert_eq!(one(&mut m, 0, 4), None);
        assert_eq!(one(&mut m, 0, 0), Some(1));
    }

    #[test]
    fn hdd_uses_one_cursor_per_order_for_all_cpus() {
        let mut m = model(4, BLKDEV);
        assert_eq!(one(&mut m, 0, 0), Some(1));
        assert_eq!(one(&mut m, 1, 0), Some(2));
        assert_eq!(one(&mut m, 0, 4), Some(512));
        assert_eq!(one(&mut m, 1, 4), Some(528));
        assert!(m.pcp.iter().all(|p| p.si.iter().all(Option::is_none)));
    }

    #[test]
    fn discard_list_and_sync_discard() {
        let mut m = Linux618::with_discard_timing(DiscardTiming::OnDemand);
        m.swapon(&on(0, 2, SSD | PAGE_DISCARD));
        // Fill the device: cluster 0 has the header.
        let mut got = Vec::new();
        while let Some(o) = one(&mut m, 0, 0) {
            got.push(o);
        }
        assert_eq!(got.len(), 1023);
        // Empty cluster 1: it waits on the discard list, not the free list.
        m.free(0, 512, 512);
        assert_eq!(dev(&m).list_of(1), Some(List::Discard));
        assert_eq!(m.snapshot().clusters.other, 1);
        // Order 4 cannot use it (no synchronous discard for large orders).
        assert_eq!(one(&mut m, 1, 4), None);
        // Order 0 fails everywhere, discards synchronously and retries.
        assert_eq!(one(&mut m, 1, 0), Some(512));
        assert_eq!(dev(&m).len(List::Discard), 0);
    }

    #[test]
    fn discard_worker_runs_before_next_alloc_by_default() {
        let mut m = Linux618::new();
        m.swapon(&on(0, 3, SSD | PAGE_DISCARD));
        let a = one(&mut m, 0, 9).unwrap_or(0);
        m.free(0, a, 512);
        assert_eq!(dev(&m).list_of(1), Some(List::Discard));
        // Discard devices prefer a free cluster; after the worker cluster 1 is at the tail.
        assert_eq!(one(&mut m, 1, 9), Some(1024));
        assert_eq!(dev(&m).list_of(1), Some(List::Free));
    }

    #[test]
    fn full_device_leaves_avail_and_second_device_serves() {
        let mut m = Linux618::new();
        m.swapon(&SwapOn {
            prio: 10,
            ..on(0, 1, SSD)
        });
        m.swapon(&SwapOn {
            prio: 5,
            ..on(1, 2, SSD)
        });
        for i in 1..512 {
            let a = m.alloc(0, 0).map(|a| a.extents);
            assert_eq!(
                a.and_then(|e| e.first().map(|e| (e.swap_type, e.offset))),
                Some((0, i))
            );
        }
        let a = m.alloc(0, 0).and_then(|a| a.extents.first().copied());
        assert_eq!(a.map(|e| e.swap_type), Some(1));
        m.swapoff(1);
        assert_eq!(m.snapshot().total_slots, 511);
    }
}
