//! `linux-6.10`: the swap-slot allocator of Linux 6.10 (`mm/swapfile.c`), after Ryan Roberts'
//! "mm: swap: allow storage of all mTHP orders" (845982eb264bc) and before the 6.12
//! cluster-order allocator.
//!
//! Mirrors `get_swap_pages` → `scan_swap_map_slots` → `scan_swap_map_try_ssd_cluster` /
//! `scan_swap_map_ssd_cluster_conflict`, `add_cluster_info_page` / `alloc_cluster`,
//! `dec_cluster_info_page` / `free_cluster`, and `swap_do_scheduled_discard`:
//!
//! * per-device per-CPU `percpu_cluster->next[order]`; when it is exhausted the CPU takes the
//!   head of the free list and scans it forward for a free, naturally aligned range;
//! * there are no nonfull/frag lists: a large order is served **only** from the CPU's current
//!   cluster or an empty cluster; when the free list is empty (and no discard is pending) the
//!   request fails;
//! * order 0 then falls back to a linear scan of the whole device from the CPU's
//!   `cluster_next_cpu` (next-fit, wrapping);
//! * an offset in a free cluster that is not the head of the free list is a "conflict": the
//!   CPU's cursor is reset and a new cluster taken;
//! * a cluster whose count drops to 0 goes to the free-list tail (or the discard list);
//! * no order > 0 on swap files or rotational devices; rotational devices have no clusters.
//!
//! The code is [`Alloc610`], generic over a [`Variant`]: `rr-scan` ([`super::rr_scan`]) is the
//! same allocator with Ryan Roberts' per-order scan of allocated clusters switched on.
//!
//! Simplifications: one request at a time (no order-0 swap slot cache); `cluster_next_cpu`
//! starts at 1 for every CPU and never jumps to a random 64 MiB trunk (the kernel randomises
//! both); the rotational-device scan is a next-fit; no cache-only reclaim; discard timing is a
//! [`DiscardTiming`] choice.

use std::marker::PhantomData;

use super::kernel::{CL, Dev, Devs, DiscardTiming, KernelAllocator, List};
use super::linux_6_12::legacy_next_fit;
use super::rr_scan::OrderScan;
use swapscope_core::alloc::MAX_ORDER;
use swapscope_core::event::SwapOn;

/// What is switched on over the 6.10 allocator.
pub trait Variant: Clone + Copy + std::fmt::Debug + Default + Send + 'static {
    /// Report name.
    const NAME: &'static str;
    /// Ryan Roberts' RFC (June 2024): clusters remember their order, and when a CPU finds no
    /// free cluster it scans allocated clusters of the order for a free aligned range.
    const ORDER_SCAN: bool;
}

/// Linux 6.10 as released.
#[derive(Clone, Copy, Debug, Default)]
pub struct Stock;

impl Variant for Stock {
    const NAME: &'static str = "linux-6.10";
    const ORDER_SCAN: bool = false;
}

/// The 6.10 allocator, with the variant `V`'s additions.
#[derive(Clone, Debug, Default)]
pub struct Alloc610<V: Variant> {
    devs: Devs,
    discard: DiscardTiming,
    discard_pending: bool,
    /// Per swap type: the per-order scanner state (`ORDER_SCAN` only, SSDs only).
    scan: Vec<Option<OrderScan>>,
    variant: PhantomData<V>,
}

/// The Linux 6.10 allocator.
pub type Linux610 = Alloc610<Stock>;

impl<V: Variant> Alloc610<V> {
    pub const NAME: &'static str = V::NAME;

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

    fn discard_device(d: &mut Dev) -> bool {
        let mut any = false;
        while let Some(c) = d.isolate(List::Discard) {
            d.move_tail(c, List::Free);
            any = true;
        }
        any
    }

    /// `scan_swap_map_try_ssd_cluster`: the next free aligned range in the CPU's cluster, or in
    /// the head of the free list, or (with `scan`) in an allocated cluster of the order.
    fn try_ssd_cluster(
        d: &mut Dev,
        mut scan: Option<&mut OrderScan>,
        cpu: usize,
        order: u8,
    ) -> Option<u64> {
        let n = 1u64 << order;
        let o = usize::from(order);
        // The scanner's `stop` (SWAP_NEXT_INVALID until the first scanned cluster).
        let mut stop = None;
        loop {
            let mut tmp = d
                .pcp_next
                .get(cpu)
                .and_then(|p| p.get(o))
                .copied()
                .unwrap_or(0);
            let mut from_head = false;
            if tmp == 0 {
                if let Some(h) = d.head(List::Free) {
                    tmp = u64::from(h) * CL;
                    from_head = true;
                } else if d.len(List::Discard) > 0 {
                    Self::discard_device(d);
                    continue;
                } else if let Some(sc) = scan.as_deref_mut()
                    && n < CL
                {
                    tmp = u64::from(sc.next_cluster_for_scan(d, order, &mut stop)?) * CL;
                } else {
                    return None;
                }
                if let Some(sc) = scan.as_deref_mut() {
                    sc.inc_scanners((tmp / CL) as u32);
                }
            }
            let max = d.max.min((tmp + 1).next_multiple_of(CL));
            let c = (tmp / CL) as u32;
            let found = if d.list_of(c) == Some(List::Discard) || max < n {
                None // discarding clusters are filled with SWAP_MAP_BAD
            } else {
                d.map.find_free_block(tmp, max - n, u32::from(order))
            };
            let slot = d.pcp_next.get_mut(cpu).and_then(|p| p.get_mut(o));
            match found {
                Some(off) => {
                    let next = if off + n < max { off + n } else { 0 };
                    if let Some(s) = slot {
                        *s = next;
                    }
                    if next == 0
                        && let Some(sc) = scan.as_deref_mut()
                    {
                        sc.dec_scanners(c);
                    }
                    return Some(off);
                }
                None => {
                    if let Some(s) = slot {
                        *s = 0;
                    }
                    if let Some(sc) = scan.as_deref_mut() {
                        sc.dec_scanners(c);
                    }
                    if from_head {
                        // An empty cluster that cannot hold the range (a tiny last cluster):
                        // the kernel would retry the same head forever.
                        return None;
                    }
                }
            }
        }
    }

    /// `scan_swap_map_ssd_cluster_conflict`.
    fn conflict(d: &mut Dev, off: u64, cpu: usize, order: u8) -> bool {
        let c = (off / CL) as u32;
        let conflict =
            d.head(List::Free).is_some_and(|h| h != c) && d.list_of(c) == Some(List::Free);
        if conflict
            && let Some(s) = d
                .pcp_next
                .get_mut(cpu)
                .and_then(|p| p.get_mut(usize::from(order)))
        {
            *s = 0;
        }
        conflict
    }

    /// The linear order-0 scan (`scan:` in `scan_swap_map_slots`), skipping discarding clusters:
    /// next-fit from `cluster_next_cpu` inclusive (the kernel starts one past it, but its
    /// slot-cache refill then takes the following slots in a batch of 64, so allocations come
    /// out consecutive).
    fn linear_scan(d: &Dev, base: u64) -> Option<u64> {
        let find = |from: u64, end: u64| {
            let mut p = from;
            while let Some(s) = d.find_free_slot(p, end) {
                if d.list_of((s / CL) as u32) != Some(List::Discard) {
                    return Some(s);
                }
                p = (s / CL + 1) * CL;
            }
            None
        };
        let base = base.clamp(1, d.max);
        find(base, d.max).or_else(|| find(1, base))
    }

    /// `scan_swap_map_slots` with a cluster-managed (SSD) device.
    fn scan_ssd(
        d: &mut Dev,
        mut scan: Option<&mut OrderScan>,
        cpu: usize,
        order: u8,
    ) -> Option<u64> {
        d.ensure_cpu(cpu);
        let mut off = Self::try_ssd_cluster(d, scan.as_deref_mut(), cpu, order);
        let mut tries = 0;
        while let Some(o) = off
            && tries < 4
            && Self::conflict(d, o, cpu, order)
        {
            off = Self::try_ssd_cluster(d, scan.as_deref_mut(), cpu, order);
            tries += 1;
        }
        let off = match off {
            Some(o) => o,
            None if order == 0 => {
                let base = d.scan_next.get(cpu).copied().unwrap_or(1);
                Self::linear_scan(d, base)?
            }
            None => return None,
        };
        if order == 0 && d.map.is_used(off) {
            return None;
        }
        let c = (off / CL) as u32;
        if d.list_of(c) == Some(List::Free) {
            d.unlink(c); // alloc_cluster
            if let Some(sc) = scan {
                // The RFC's alloc_cluster(si, idx, order): the cluster serves this order.
                d.set_order(c, order);
                sc.cluster_taken(c);
            }
        }
        if order == 0
            && let Some(s) = d.scan_next.get_mut(cpu)
        {
            *s = off + 1; // set_cluster_next
        }
        Some(off)
    }

    fn get_swap_pages(&mut self, order: u8, cpu: u32) -> Option<(u8, u64)> {
        if order > MAX_ORDER {
            return None;
        }
        if self.discard_pending && self.discard == DiscardTiming::BeforeNextAlloc {
            for ty in 0..=u8::MAX {
                if let Some(d) = self.devs.get_mut(ty) {
                    Self::discard_device(d);
                }
            }
            self.discard_pending = false;
        }
        let cpu = super::cpu_index(cpu);
        let n = 1u64 << order;
        let snap = self.devs.avail_snapshot();
        let mut r = None;
        for &ty in &snap {
            self.devs.requeue(ty);
            let Some(d) = self.devs.get_mut(ty) else {
                continue;
            };
            let mut scan = self
                .scan
                .get_mut(usize::from(ty))
                .and_then(Option::as_mut)
                .filter(|_| V::ORDER_SCAN);
            let found = if d.inuse >= d.pages || (order > 0 && !(d.blkdev() && d.solidstate())) {
                None
            } else if d.solidstate() {
                Self::scan_ssd(d, scan.as_deref_mut(), cpu, order)
            } else {
                legacy_next_fit(d)
            };
            if let Some(off) = found {
                let full = d.alloc_range(off, n);
                if let Some(sc) = scan {
                    let c = (off / CL) as u32;
                    sc.added(c, d.count(c), n);
                }
                self.devs.note_alloc(ty, n, full);
                r = Some((ty, off));
                break;
            }
            if order > 0 {
                break;
            }
        }
        self.devs.put_avail_snapshot(snap);
        r
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
        if let Some(sc) = self.scan.get_mut(usize::from(ty)).and_then(Option::as_mut) {
            sc.removed(c, d.count(c), d.order(c));
        }
        if d.solidstate() && d.count(c) == 0 {
            d.set_order(c, 0);
            if d.page_discard() {
                d.move_tail(c, List::Discard);
                self.discard_pending = true;
            } else {
                d.move_tail(c, List::Free);
            }
        }
        self.devs.note_free(ty, freed);
    }
}

#[cfg(test)]
impl<V: Variant> Alloc610<V> {
    pub(crate) fn devs(&self) -> &Devs {
        &self.devs
    }

    pub(crate) fn scan_state(&self, ty: u8) -> Option<&OrderScan> {
        self.scan.get(usize::from(ty)).and_then(Option::as_ref)
    }
}

crate::kernel::kernel_model!(@ V: Variant; Alloc610<V>);

impl<V: Variant> KernelAllocator for Alloc610<V> {
    const MODEL_NAME: &'static str = Self::NAME;

    fn devs(&self) -> &Devs {
        &self.devs
    }

    fn add_device(&mut self, dev: &SwapOn) {
        let mut d = Dev::new(dev);
        if d.solidstate() {
            d.setup_lists_interleaved(None);
        }
        let ty = usize::from(d.ty);
        if self.scan.len() <= ty {
            self.scan.resize_with(ty + 1, || None);
        }
        if let Some(s) = self.scan.get_mut(ty) {
            *s = (V::ORDER_SCAN && d.solidstate()).then(|| OrderScan::new(&d));
        }
        self.devs.add(d);
    }

    fn remove_device(&mut self, swap_type: u8) {
        self.devs.remove(swap_type);
        if let Some(s) = self.scan.get_mut(usize::from(swap_type)) {
            *s = None;
        }
    }

    fn request(&mut self, order: u8, cpu: u32) -> Option<(u8, u64)> {
        self.get_swap_pages(order, cpu)
    }

    fn free_piece(&mut self, ty: u8, off: u64, n: u64) {
        Self::free_piece(self, ty, off, n);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kernel::testutil::{on, one};
    use swapscope_core::alloc::AllocatorModel;
    use swapscope_core::event::swap_flags::{BLKDEV, PAGE_DISCARD, SOLIDSTATE};

    const SSD: u32 = SOLIDSTATE | BLKDEV;

    fn on1(clusters: u64, flags: u32) -> SwapOn {
        on(0, clusters, flags)
    }

    fn model(clusters: u64, flags: u32) -> Linux610 {
        let mut m = Linux610::new();
        m.swapon(&on1(clusters, flags));
        m
    }

    fn dev(m: &Linux610) -> &Dev {
        m.devs.get(0).unwrap_or_else(|| unreachable!())
    }

    #[test]
    fn mthp_only_from_empty_clusters() {
        let mut m = model(3, SSD);
        assert_eq!(one(&mut m, 0, 4), Some(512));
        assert_eq!(dev(&m).list_of(1), None);
        assert_eq!(one(&mut m, 1, 4), Some(1024));
        // Free slots remain in clusters 1 and 2, but another CPU has no empty cluster to take.
        assert_eq!(one(&mut m, 2, 4), None);
        // The CPUs that own a cluster keep using it.
        assert_eq!(one(&mut m, 0, 4), Some(528));
    }

    #[test]
    fn partial_free_does_not_help_large_orders() {
        let mut m = model(2, SSD);
        assert_eq!(one(&mut m, 0, 9), Some(512));
        m.free(0, 512, 256);
        assert_eq!(one(&mut m, 1, 4), None);
        // Order 0 falls back to the linear scan and finds the freed slots.
        assert_eq!(one(&mut m, 1, 0), Some(1));
        m.free(0, 768, 256);
        assert_eq!(dev(&m).list_of(1), Some(List::Free));
        assert_eq!(one(&mut m, 1, 4), Some(512));
    }

    #[test]
    fn order0_linear_scan_when_no_free_cluster() {
        let mut m = model(2, SSD);
        assert_eq!(one(&mut m, 0, 9), Some(512));
        // Cluster 0 (header) is on no list: order 0 reaches it only through the linear scan.
        assert_eq!(one(&mut m, 0, 0), Some(1));
        assert_eq!(one(&mut m, 0, 0), Some(2));
    }

    #[test]
    fn conflict_resets_cursor() {
        let mut m = model(4, SSD);
        assert_eq!(one(&mut m, 0, 4), Some(512));
        assert_eq!(one(&mut m, 1, 4), Some(1024));
        m.free(0, 512, 16);
        // Cluster 1 is back on the free list behind 3; CPU 0's cursor (528) points into it.
        assert_eq!(dev(&m).list_of(1), Some(List::Free));
        assert_eq!(one(&mut m, 0, 4), Some(1536));
    }

    #[test]
    fn discard_pending_then_synchronous() {
        let mut m = Linux610::with_discard_timing(DiscardTiming::OnDemand);
        m.swapon(&on1(2, SSD | PAGE_DISCARD));
        assert_eq!(one(&mut m, 0, 9), Some(512));
        m.free(0, 512, 512);
        assert_eq!(dev(&m).list_of(1), Some(List::Discard));
        assert_eq!(one(&mut m, 1, 9), Some(512));
    }

    #[test]
    fn files_and_hdds_get_no_large_orders() {
        assert_eq!(one(&mut model(2, SOLIDSTATE), 0, 4), None);
        let mut hdd = model(2, BLKDEV);
        assert_eq!(one(&mut hdd, 0, 4), None);
        assert_eq!(one(&mut hdd, 0, 0), Some(1));
    }
}
