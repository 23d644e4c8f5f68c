//! `classified`: 512-slot clusters reserved per size class, like page-block migratetypes.
//!
//! # Idea and sources
//! The page allocator keeps unmovable and movable pages apart by giving each pageblock a
//! migratetype and stealing across types only when a type runs out (Mel Gorman, "reduce external
//! fragmentation by grouping pages by mobility", 2007; described on kerneltrap.org). Applied to swap,
//! the classes are folio sizes: order-0 entries freed one by one leave holes, and holes among large
//! entries make those clusters useless for large folios, so small and large entries get separate
//! clusters. The same idea for memory pageblocks was floated by Barry Song on linux-mm in June 2026
//! ("Re: [RFC PATCH 0/8] Introducte Reserved THP", lkml.iu.edu 2606.3/12822: a pageblock would
//! "remember which allocation order is preferred"). I could not find a primary posting that proposes
//! classifying swap clusters into small and large classes; the kernel's own 6.12+ allocator already
//! tags each cluster with the order of its first allocation (`ci->order`, per-order nonfull lists),
//! which is the per-order variant of this model ([`Classified::per_order`]), without the
//! class-aware stealing rules below.
//!
//! # Policy
//! A cluster with no allocation is *free* and has no class; it takes the class of its first
//! allocation and returns to the free pool when its last allocation is freed. Classes: `small` =
//! order 0 and `large` = order > 0 ([`Classified::new`]), or one class per order
//! ([`Classified::per_order`]). Per device (devices by priority, then swap type), a request tries:
//!
//! * order 0: (1) small clusters, best fit (the cluster whose largest free aligned block is
//!   smallest, so small entries pack into few clusters instead of spreading); (2) free clusters that
//!   hold reserved slots (header, bad, tail: poor for large folios anyway); (3) a clean free
//!   cluster, which becomes small; (4) only then steal a free slot of a large cluster, smallest
//!   holes first. Holes in large clusters are not taken earlier even when no large request could
//!   use them now: they turn back into aligned blocks when their neighbours are freed (a large
//!   folio swapped in page by page), which a small entry in the hole would prevent.
//! * order k > 0: (1) clusters of its class with a free aligned 2^k block, best fit; (2) a clean
//!   free cluster; (3) a free cluster with reserved slots that still has an aligned block; (4)
//!   steal an aligned block from a cluster of another class, best fit. So a large request fails only
//!   when no cluster of its class has an aligned free run, no free cluster exists, and no other
//!   cluster has one either.
//!
//! A stolen slot does not change the cluster's class (like a single stolen page, not a claimed
//! pageblock). CPUs are ignored: there are no per-CPU clusters, every choice is a global best fit.
//!
//! # Snapshot meaning
//! `free` = clusters without allocations (header/bad/tail clusters included); `full` = no free
//! slot; `nonfull` = partly used and can still serve its class (small: any free slot; large: a free
//! aligned block of the class's smallest order); `frag` = partly used large cluster with free slots
//! that its class cannot use. `other` = clusters that are entirely reserved. No metadata cost.
//!
//! Memory: the used-slot bitmap (1 bit/slot) plus per cluster a class byte, a max-free-order byte,
//! a reserved count, an allocation count and list links.

use swapscope_core::alloc::{
    Allocation, AllocatorModel, ClusterCell, ClusterCounts, ClusterList, MAX_ORDER, ModelSnapshot,
};
use swapscope_core::event::SwapOn;

use super::slotmap::{self, CLUSTER, ClusterLists, NO_LIST, SlotMap, snapshot_of};

/// Class byte of a cluster without allocations.
const FREE: u8 = u8::MAX;
/// Buckets per class: the cluster's largest free aligned order, 0..=MAX_ORDER.
const BUCKETS: usize = MAX_ORDER as usize + 1;

/// The classified model. See the module documentation.
#[derive(Debug)]
pub struct Classified {
    per_order: bool,
    devs: Vec<Dev>,
}

#[derive(Debug)]
struct Dev {
    map: SlotMap,
    lists: ClusterLists,
    class: Vec<u8>,
    /// Largest free aligned order per cluster (`FREE` when full).
    maxo: Vec<u8>,
    /// Allocated slots per cluster.
    count: Vec<u16>,
    /// Reserved slots per cluster.
    resv: Vec<u16>,
    nclasses: usize,
}

impl Default for Classified {
    fn default() -> Self {
        Self::new()
    }
}

impl Classified {
    /// Two classes: small (order 0) and large (any order > 0).
    pub fn new() -> Self {
        Classified {
            per_order: false,
            devs: Vec::new(),
        }
    }

    /// One class per order (order 0 is "small", each order > 0 its own class).
    pub fn per_order() -> Self {
        Classified {
            per_order: true,
            devs: Vec::new(),
        }
    }

    fn nclasses(&self) -> usize {
        if self.per_order { BUCKETS } else { 2 }
    }
}

impl Dev {
    fn new(dev: &SwapOn, nclasses: usize) -> Self {
        let map = SlotMap::new(dev);
        let n = map.nclusters();
        let mut d = Dev {
            lists: ClusterLists::new(nclasses * BUCKETS + 2, n),
            class: vec![FREE; n],
            maxo: vec![FREE; n],
            count: vec![0; n],
            resv: (0..n).map(|c| map.cluster_reserved(c) as u16).collect(),
            map,
            nclasses,
        };
        for c in 0..n {
            d.update(c);
        }
        d
    }

    fn clean_list(&self) -> usize {
        self.nclasses * BUCKETS
    }

    fn dirty_list(&self) -> usize {
        self.nclasses * BUCKETS + 1
    }

    /// Smallest order a class ever allocates: small = 0; large = 1 with two classes; with one class
    /// per order, the class number is its order. Both cases come down to the class index.
    fn class_min_order(&self, class: usize) -> usize {
        class
    }

    fn class_of(&self, order: u8) -> usize {
        if self.nclasses == 2 {
            usize::from(order.min(1))
        } else {
            usize::from(order)
        }
    }

    /// Recomputes cluster `c`'s bucket and list after its slots changed.
    fn update(&mut self, c: usize) {
        self.maxo[c] = self.map.cluster_max_free_order(c).unwrap_or(FREE);
        let list = if usize::from(self.resv[c]) >= CLUSTER
            || (self.count[c] > 0 && self.maxo[c] == FREE)
        {
            NO_LIST
        } else if self.count[c] == 0 {
            self.class[c] = FREE;
            let l = if self.resv[c] == 0 {
                self.clean_list()
            } else {
                self.dirty_list()
            };
            l as u16
        } else {
            (usize::from(self.class[c]) * BUCKETS + usize::from(self.maxo[c])) as u16
        };
        self.lists.set(c, list);
    }

    /// Best fit among `class`'s clusters whose largest free block is in `buckets`.
    fn best_fit(&self, class: usize, buckets: std::ops::Range<usize>) -> Option<usize> {
        buckets
            .into_iter()
            .find_map(|b| self.lists.last(class * BUCKETS + b))
    }

    fn take(&mut self, c: usize, k: usize, class: usize) -> Option<u64> {
        let off = self.map.find_in_cluster(c, k)?;
        if self.count[c] == 0 {
            self.class[c] = class as u8;
        }
        self.map.mark_used(off, 1 << k);
        self.count[c] += 1 << k;
        self.update(c);
        Some(off)
    }

    fn alloc(&mut self, order: u8) -> Option<u64> {
        let k = usize::from(order);
        let class = self.class_of(order);
        if self.map.free_slots() < (1u64 << k) {
            return None;
        }
        let c = if k == 0 {
            self.pick_small()
        } else {
            self.pick_large(k, class)
        }?;
        self.take(c, k, class)
    }

    fn pick_small(&self) -> Option<usize> {
        self.best_fit(0, 0..BUCKETS)
            .or_else(|| self.lists.last(self.dirty_list()))
            .or_else(|| self.lists.last(self.clean_list()))
            .or_else(|| {
                (0..BUCKETS).find_map(|b| {
                    (1..self.nclasses).find_map(|cl| self.lists.last(cl * BUCKETS + b))
                })
            })
    }

    fn pick_large(&self, k: usize, class: usize) -> Option<usize> {
        self.best_fit(class, k..BUCKETS)
            .or_else(|| self.lists.last(self.clean_list()))
            .or_else(|| {
                let dirty = self.lists.members(self.dirty_list());
                dirty
                    .iter()
                    .map(|&c| c as usize)
                    .find(|&c| self.maxo[c] != FREE && usize::from(self.maxo[c]) >= k)
            })
            .or_else(|| {
                (k..BUCKETS).find_map(|b| {
                    (0..self.nclasses)
                        .filter(|&cl| cl != class)
                        .find_map(|cl| self.lists.last(cl * BUCKETS + b))
                })
            })
    }

    fn free(&mut self, offset: u64, nr: u32) {
        let count = &mut self.count;
        self.map.release(offset, nr, |word, mask| {
            let c = word / slotmap::WORDS;
            count[c] = count[c].saturating_sub(mask.count_ones() as u16);
        });
        let first = (offset / CLUSTER as u64) as usize;
        let last = (offset.saturating_add(u64::from(nr) - 1) / CLUSTER as u64) as usize;
        for c in first..=last.min(self.map.nclusters().saturating_sub(1)) {
            self.update(c);
        }
    }

    fn cluster_list(&self, c: usize) -> ClusterList {
        if usize::from(self.resv[c]) >= CLUSTER {
            ClusterList::Other
        } else if self.count[c] == 0 {
            ClusterList::Free
        } else if self.maxo[c] == FREE {
            ClusterList::Full
        } else if usize::from(self.maxo[c]) >= self.class_min_order(usize::from(self.class[c])) {
            ClusterList::Nonfull
        } else {
            ClusterList::Frag
        }
    }

    fn cluster_counts(&self, counts: &mut ClusterCounts) {
        for c in 0..self.map.nclusters() {
            counts.add(self.cluster_list(c));
        }
    }

    fn cluster_cells(&self, out: &mut Vec<ClusterCell>) {
        out.extend((0..self.map.nclusters()).map(|c| {
            let list = self.cluster_list(c);
            ClusterCell {
                used: self.map.cluster_busy(c) as u16,
                order: (list != ClusterList::Free)
                    .then(|| self.class_min_order(usize::from(self.class[c])) as u8),
                list,
                last: None,
            }
        }));
    }
}

impl slotmap::HasSlotMap for Dev {
    fn slot_map(&self) -> &SlotMap {
        &self.map
    }
}

impl AllocatorModel for Classified {
    fn name(&self) -> &'static str {
        if self.per_order {
            "classified-per-order"
        } else {
            "classified"
        }
    }

    fn swapon(&mut self, dev: &SwapOn) {
        let d = Dev::new(dev, self.nclasses());
        slotmap::add_device(&mut self.devs, d);
    }

    fn swapoff(&mut self, swap_type: u8) {
        slotmap::remove_device(&mut self.devs, swap_type);
    }

    fn alloc(&mut self, _cpu: u32, order: u8) -> Option<Allocation> {
        if order > MAX_ORDER {
            return None;
        }
        self.devs.iter_mut().find_map(|d| {
            let off = d.alloc(order)?;
            Some(Allocation::contiguous(
                d.map.swap_type(),
                off,
                1u32 << order,
            ))
        })
    }

    fn free(&mut self, swap_type: u8, offset: u64, nr: u32) {
        if nr == 0 {
            return;
        }
        if let Some(d) = self
            .devs
            .iter_mut()
            .find(|d| d.map.swap_type() == swap_type)
        {
            d.free(offset, nr);
        }
    }

    fn snapshot(&self) -> ModelSnapshot {
        let mut counts = ClusterCounts::default();
        for d in &self.devs {
            d.cluster_counts(&mut counts);
        }
        let mut snap = snapshot_of(self.devs.iter().map(|d| &d.map), 0, |_, _| {});
        snap.clusters = counts;
        snap
    }

    fn cluster_map(&self, swap_type: u8, out: &mut Vec<ClusterCell>) -> bool {
        slotmap::cluster_map_of(&self.devs, swap_type, out, Dev::cluster_cells)
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;
    use crate::testkit::{Harness, dev, step};

    #[test]
    fn small_allocations_pack_into_few_clusters() {
        let mut h = Harness::new(Classified::new(), vec![dev(0, 8 * 512 + 1, vec![])]);
        for i in 0..700u32 {
            assert!(h.alloc(i % 4, 0).is_some());
        }
        let s = h.check();
        // The header cluster and the 1-slot tail cluster (both "dirty") fill first, then one clean
        // cluster; the other six stay free.
        assert_eq!(s.clusters.free, 6, "{:?}", s.clusters);
        assert_eq!(s.clusters.full, 2, "{:?}", s.clusters);
        // A large folio now takes a clean free cluster, not the small one's free slots.
        assert!(h.alloc(0, 4).is_some());
        assert_eq!(h.check().clusters.free, 5);
    }

    #[test]
    fn large_fails_only_without_class_space_or_free_cluster() {
        // Two clusters (plus the tail slot): fill cluster 0 with small, cluster 1 with order 4.
        let mut h = Harness::new(Classified::new(), vec![dev(0, 1025, vec![])]);
        for _ in 0..511 {
            assert!(h.alloc(0, 0).is_some());
        }
        for _ in 0..32 {
            assert!(h.alloc(0, 4).is_some());
        }
        assert!(
            h.alloc(0, 4).is_none(),
            "device has one free slot (the tail cluster)"
        );
        // Free one order-4 folio: the large cluster has an aligned 16-slot hole again.
        h.free_pages(511 + 3, 0, 16);
        assert_eq!(h.alloc(0, 4), Some(1));
        // Punch a one-slot hole in a large folio: order 0 takes the tail slot first, then the hole.
        h.free_pages(511 + 5, 7, 1);
        let s = h.check();
        assert_eq!(
            s.clusters.frag, 1,
            "large cluster whose only hole is order 0: {:?}",
            s.clusters
        );
        assert!(h.alloc(0, 0).is_some());
        assert!(h.alloc(0, 1).is_none());
    }

    #[test]
    fn small_steals_from_large_only_when_nothing_else() {
        let mut h = Harness::new(Classified::new(), vec![dev(0, 1025, vec![])]);
        // Large cluster: one order-4 folio in cluster 0? No: cluster 0 is dirty (header), so large
        // takes clean cluster 1 first.
        assert!(h.alloc(0, 4).is_some());
        let s = h.check();
        assert_eq!(s.clusters.nonfull, 1);
        // Small goes to the dirty header cluster, then to the tail cluster, not cluster 1.
        for _ in 0..511 {
            assert!(h.alloc(0, 0).is_some());
        }
        let s = h.check();
        assert_eq!(s.used_slots, 16 + 511);
        // Now only cluster 1 (large, 496 free) and the tail slot remain; small steals.
        for _ in 0..497 {
            assert!(h.alloc(0, 0).is_some());
        }
        assert!(h.alloc(0, 0).is_none());
        h.free_all();
        let s = h.check();
        assert_eq!(s.used_slots, 0);
        assert_eq!(
            s.clusters.free, 3,
            "every cluster back in the free pool: {:?}",
            s.clusters
        );
    }

    #[test]
    fn per_order_classes_keep_orders_apart() {
        let mut h = Harness::new(Classified::per_order(), vec![dev(0, 4 * 512 + 1, vec![])]);
        assert!(h.alloc(0, 4).is_some());
        assert!(h.alloc(0, 2).is_some());
        assert!(h.alloc(0, 4).is_some());
        let s = h.check();
        assert_eq!(
            s.clusters.nonfull, 2,
            "orders 4 and 2 in separate clusters: {:?}",
            s.clusters
        );
        assert_eq!(h.model.name(), "classified-per-order");
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(48))]
        #[test]
        fn random_ops_keep_invariants(ops in prop::collection::vec((0u8..7, any::<u16>(), any::<u16>(), any::<u16>()), 1..300),
                                      bad in prop::collection::vec(1u64..2100, 0..6),
                                      per_order in any::<bool>()) {
            let model = if per_order { Classified::per_order() } else { Classified::new() };
            let mut h = Harness::new(model, vec![dev(0, 2100, bad.clone()), dev(1, 700, vec![])]);
            let initial = h.check();
            for (k, a, b, c) in ops {
                step(&mut h, k, a, b, c);
                h.check();
            }
            h.free_all();
            let end = h.check();
            prop_assert_eq!(end.clusters, initial.clusters);
            prop_assert_eq!(end.largest_free_run, initial.largest_free_run);
        }
    }
}
