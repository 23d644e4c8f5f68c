//! `buddy`: a binary buddy allocator over each device's swap slots.
//!
//! # Idea and sources
//! Swap slots are handed out the way the page allocator hands out pages: per device, one free list
//! per order 0..=[`MAX_ORDER`]; an order-k request takes the smallest free block of order ≥ k and
//! splits it, and a free coalesces a block with its buddy while the buddy is free as a whole.
//! Every free block is naturally aligned, so a large folio always gets an aligned run and free
//! space stays in the largest blocks the frees allow.
//!
//! I could not find a primary posting (patch, RFC or mailing-list proposal with figures) of a buddy
//! allocator for swap slots. The nearest public material: Chris Li's cover letter of "mm: swap: mTHP
//! swap allocator base on swap cluster order" (linux-mm, June/July 2024; spinics linux-mm msg389635
//! and msg392965) calls the per-order cluster allocator the "short term solution" from his LSF/MM
//! 2024 "Swap Abstraction" slides, which implies longer-term allocators were discussed there (slide
//! content not retrieved), and Zi Yan's "buddy allocator like (non-uniform) folio_split()" (2025)
//! applies buddy-style splitting to folios, not to swap slots. This model is therefore the textbook
//! buddy system applied to swap slots, not a reconstruction of a specific proposal.
//!
//! # Policy and simplifications
//! * Address-ordered: among free blocks of the smallest sufficient order, the lowest offset wins;
//!   devices are tried by priority (highest first, then lowest swap type). CPUs are ignored (the
//!   page allocator's per-CPU lists are a locking device, not a placement policy).
//! * Slot 0, bad slots and slots past `max` are never free; the free space of a cluster holding
//!   them is cut into the maximal aligned blocks around them at swapon.
//! * Frees may cover any part of an earlier allocation: freed slots become free blocks of the
//!   largest aligned sizes they form and coalesce as their buddies return, so freeing every piece
//!   of an order-4 block in any order restores the order-4 (and larger) block. Frees of slots that
//!   are not allocated are ignored.
//! * Memory: the used-slot bitmap (1 bit/slot) plus one free bitmap per order (< 1 bit/slot in all,
//!   with a 64-ary summary for O(log n) "lowest free block" lookups). No per-slot tables.
//!
//! # Snapshot meaning
//! Clusters are the 512-slot aligned blocks (order 9). `free` = no slot used; `full` = no slot
//! free; `nonfull` = partly used with a free aligned 2^[`slotmap::FRAG_ORDER`] block (can still
//! serve a 64 KiB folio); `frag` = partly used without one. `other` is always 0; metadata is 0
//! (a buddy system needs no state beyond the free lists, which live in the slots' own bitmap).

use swapscope_core::alloc::{
    Allocation, AllocatorModel, ClusterCell, MAX_ORDER, ModelSnapshot, NR_ORDERS,
};
use swapscope_core::event::SwapOn;

use super::slotmap::{self, HierSet, SlotMap, snapshot_of};

/// The buddy model. See the module documentation.
#[derive(Debug, Default)]
pub struct Buddy {
    /// Devices in allocation order (priority descending, then swap type ascending).
    devs: Vec<BuddyDev>,
}

#[derive(Debug)]
struct BuddyDev {
    map: SlotMap,
    /// `free[k]` holds block index `offset >> k` for every free block of exactly order k.
    free: Vec<HierSet>,
}

impl Buddy {
    pub fn new() -> Self {
        Buddy::default()
    }
}

impl BuddyDev {
    fn new(dev: &SwapOn) -> Self {
        let map = SlotMap::new(dev);
        let slots = map.nclusters() * slotmap::CLUSTER;
        let free = (0..NR_ORDERS).map(|k| HierSet::new(slots >> k)).collect();
        let mut d = BuddyDev { map, free };
        for c in 0..d.map.nclusters() {
            d.seed_free(c * slotmap::CLUSTER, u32::from(MAX_ORDER));
        }
        d
    }

    /// Registers the free space of the aligned 2^k block at `start` as maximal free blocks.
    fn seed_free(&mut self, start: usize, k: u32) {
        let n = 1usize << k;
        if self.map.all_free(start as u64, n as u64) {
            self.free[k as usize].insert(start >> k);
        } else if k > 0 && !self.map.all_used(start as u64, n as u64) {
            self.seed_free(start, k - 1);
            self.seed_free(start + n / 2, k - 1);
        }
    }

    fn alloc(&mut self, order: u8) -> Option<u64> {
        let k = usize::from(order);
        let j = (k..NR_ORDERS).find(|&j| !self.free[j].is_empty())?;
        let b = self.free[j].first()?;
        self.free[j].remove(b);
        let off = b << j;
        for i in (k..j).rev() {
            // Splitting the order-(i+1) block at `off` frees its upper half at order i.
            self.free[i].insert((off >> i) + 1);
        }
        self.map.mark_used(off as u64, 1u64 << k);
        Some(off as u64)
    }

    fn free(&mut self, offset: u64, nr: u32) {
        let free_lists = &mut self.free;
        self.map.release(offset, nr, |word, mask| {
            let mut m = mask;
            while m != 0 {
                let lo = m.trailing_zeros() as usize;
                let run = (m >> lo).trailing_ones() as usize;
                let start = word * 64 + lo;
                insert_range(free_lists, start, run);
                m &= !(run_mask(lo, run));
            }
        });
    }
}

/// Bits `lo..lo+len` of a word (`len` ≥ 1, `lo + len` ≤ 64).
fn run_mask(lo: usize, len: usize) -> u64 {
    if len >= 64 {
        u64::MAX
    } else {
        ((1u64 << len) - 1) << lo
    }
}

/// Inserts the free slots `[start, start+len)` as maximal aligned blocks, coalescing each.
fn insert_range(free: &mut [HierSet], start: usize, len: usize) {
    let mut s = start;
    let end = start + len;
    while s < end {
        let align = if s == 0 {
            MAX_ORDER as u32
        } else {
            s.trailing_zeros().min(MAX_ORDER as u32)
        };
        let fit = (usize::BITS - 1 - (end - s).leading_zeros()).min(MAX_ORDER as u32);
        let k = align.min(fit);
        insert_block(free, s, k as usize);
        s += 1 << k;
    }
}

/// Inserts one free block and merges it with its buddy while the buddy is free as a whole.
fn insert_block(free: &mut [HierSet], start: usize, order: usize) {
    let mut s = start;
    let mut k = order;
    while k < usize::from(MAX_ORDER) {
        let buddy = (s >> k) ^ 1;
        if !free[k].contains(buddy) {
            break;
        }
        free[k].remove(buddy);
        s &= !(1usize << k);
        k += 1;
    }
    free[k].insert(s >> k);
}

impl slotmap::HasSlotMap for BuddyDev {
    fn slot_map(&self) -> &SlotMap {
        &self.map
    }
}

impl AllocatorModel for Buddy {
    fn name(&self) -> &'static str {
        "buddy"
    }

    fn swapon(&mut self, dev: &SwapOn) {
        slotmap::add_device(&mut self.devs, BuddyDev::new(dev));
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
        if let Some(d) = self
            .devs
            .iter_mut()
            .find(|d| d.map.swap_type() == swap_type)
        {
            d.free(offset, nr);
        }
    }

    fn snapshot(&self) -> ModelSnapshot {
        snapshot_of(
            self.devs.iter().map(|d| &d.map),
            0,
            slotmap::generic_cluster_counts,
        )
    }

    fn cluster_map(&self, swap_type: u8, out: &mut Vec<ClusterCell>) -> bool {
        slotmap::cluster_map_of(&self.devs, swap_type, out, |d, out| {
            slotmap::generic_cluster_cells(&d.map, out)
        })
    }
}

#[cfg(test)]
mod tests {

    /// The one-pass `max_free_order` against the definition (largest k with a free aligned
    /// 2^k block), on random and structured clusters.
    #[test]
    fn max_free_order_matches_definition() {
        use crate::slotmap::{free_block_starts, max_free_order};
        let reference = |w: &[u64]| -> Option<u8> {
            for k in (6..=usize::from(MAX_ORDER)).rev() {
                let g = 1usize << (k - 6);
                if w.chunks(g).any(|c| c.iter().all(|&x| x == 0)) {
                    return Some(k as u8);
                }
            }
            (0..6)
                .rev()
                .find(|&k| w.iter().any(|&x| free_block_starts(x, k) != 0))
                .map(|k| k as u8)
        };
        let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
        for _ in 0..20_000 {
            let mut w = [0u64; 8];
            for v in &mut w {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                // Dense words (few free bits) and sparse ones.
                *v = match x % 4 {
                    0 => x | x.rotate_left(17) | x.rotate_left(29),
                    1 => x & x.rotate_left(11),
                    2 => !(1u64 << (x % 64)) & !(0xffu64 << (x.rotate_left(7) % 57)),
                    _ => u64::MAX,
                };
            }
            assert_eq!(max_free_order(&w), reference(&w), "{w:x?}");
        }
    }
    use proptest::prelude::*;

    use super::*;
    use crate::testkit::{Harness, dev, step};

    fn free_sets(b: &Buddy) -> Vec<Vec<Option<usize>>> {
        b.devs
            .iter()
            .map(|d| d.free.iter().map(HierSet::first).collect())
            .collect()
    }

    #[test]
    fn fresh_device_is_all_order9_blocks_around_the_header() {
        let mut b = Buddy::new();
        b.swapon(&dev(0, 2048 + 1, vec![]));
        let s = b.snapshot();
        assert_eq!(s.total_slots, 2048);
        assert_eq!(s.used_slots, 0);
        // Cluster 0 loses slot 0 (nonfull); cluster 4 holds only slot 2048 (frag); 1..=3 are free.
        assert_eq!(s.clusters.free, 3);
        assert_eq!(s.clusters.nonfull, 1);
        assert_eq!(s.clusters.frag, 1);
        // Aligned free blocks: 1..=3 are order-9 blocks, the largest pair is clusters 2+3.
        assert_eq!(s.largest_free_run, 1024);
        assert_eq!(s.fragmentation_by_order[0], 0.0);
    }

    #[test]
    fn split_and_partial_free_coalesce_back() {
        let mut h = Harness::new(Buddy::new(), vec![dev(0, 1025, vec![])]);
        let before = free_sets(&h.model);
        assert_eq!(h.alloc(0, 4), Some(1));
        h.check();
        // Free single pages inside the order-4 block, then the rest in two pieces.
        h.free_pages(0, 5, 1);
        assert_eq!(h.check().used_slots, 15);
        h.free_pages(0, 9, 1);
        h.free_pages(0, 0, 7);
        h.free_pages(0, 0, 16);
        h.check();
        assert_eq!(h.live_count(), 0);
        assert_eq!(
            free_sets(&h.model),
            before,
            "free lists back to the initial state"
        );
    }

    #[test]
    fn bad_slots_are_never_allocated_and_full_device_fails() {
        let bad = vec![3, 600, 601, 1000];
        let mut h = Harness::new(Buddy::new(), vec![dev(0, 1025, bad)]);
        while h.alloc(0, 0).is_some() {}
        let s = h.check();
        assert_eq!(s.used_slots, 1024 - 4);
        assert_eq!(s.used_slots, s.total_slots);
        assert_eq!(s.clusters.full, 3);
        assert_eq!(s.largest_free_run, 0);
        assert!(h.model.alloc(0, 0).is_none());
        h.free_all();
        assert_eq!(h.check().used_slots, 0);
    }

    #[test]
    fn devices_by_priority_and_swapoff() {
        let mut lo = dev(1, 513, vec![]);
        lo.prio = -2;
        let mut hi = dev(2, 513, vec![]);
        hi.prio = 5;
        let mut b = Buddy::new();
        b.swapon(&lo);
        b.swapon(&hi);
        let a = b.alloc(0, 9);
        assert!(
            a.is_none(),
            "no device has a whole free cluster (slot 0 is the header)"
        );
        let Some(a) = b.alloc(0, 8) else {
            panic!("order 8 fits")
        };
        assert_eq!(a.extents[0].swap_type, 2);
        b.swapoff(2);
        assert_eq!(b.snapshot().used_slots, 0);
        assert_eq!(b.snapshot().total_slots, 512);
    }

    #[test]
    fn fragmentation_by_order_counts_unusable_free_slots() {
        let mut b = Buddy::new();
        b.swapon(&dev(0, 65, vec![]));
        // Usable slots 1..=64; take them all, then free the odd ones: no free aligned pair left.
        for _ in 0..64 {
            assert!(b.alloc(0, 0).is_some());
        }
        for s in (1..64).step_by(2) {
            b.free(0, s, 1);
        }
        let s = b.snapshot();
        assert_eq!(s.used_slots, 32);
        assert_eq!(s.fragmentation_by_order[0], 0.0);
        assert!(s.fragmentation_by_order[1..].iter().all(|&f| f == 1.0));
        assert_eq!(s.largest_free_run, 1);
        b.free(0, 0, 65);
        let s = b.snapshot();
        assert_eq!(s.used_slots, 0);
        assert_eq!(
            s.largest_free_run, 32,
            "slots 32..=63 form the largest aligned block"
        );
    }

    fn models() -> Vec<Box<dyn AllocatorModel>> {
        vec![
            Box::new(Buddy::new()),
            Box::new(super::super::classified::Classified::new()),
            Box::new(super::super::classified::Classified::per_order()),
            Box::new(super::super::discontiguous::Discontiguous::new()),
        ]
    }

    #[test]
    fn every_model_replays_every_workload() {
        use swapscope_core::workload::{NAMES, WorkloadSpec, generate};
        for name in NAMES {
            let spec = WorkloadSpec {
                swap_size_bytes: 8 << 20,
                iterations: Some(3),
                small: true,
                ..WorkloadSpec::new(name)
            };
            let events = generate(&spec).unwrap_or_default();
            for mut m in models() {
                let r = crate::testkit::replay(m.as_mut(), &events, 97);
                assert_eq!(r.failures, 0, "{} on {name}: {r:?}", m.name());
                if m.name() == "discontiguous" {
                    assert_eq!(r.fallbacks, 0, "discontiguous never falls back: {r:?}");
                }
            }
        }
    }

    /// Throughput and fallback rates on the full kernel-test workload (run with
    /// `cargo test --release -- --ignored --nocapture model_throughput`).
    #[test]
    #[ignore = "benchmark; run in release"]
    fn model_throughput() {
        use swapscope_core::workload::{WorkloadSpec, generate};
        for small in [false, true] {
            let spec = WorkloadSpec {
                small,
                ..WorkloadSpec::new("thp-fragment")
            };
            let events = generate(&spec).unwrap_or_default();
            for mut m in models() {
                let t = std::time::Instant::now();
                let r = crate::testkit::replay(m.as_mut(), &events, 0);
                let secs = t.elapsed().as_secs_f64();
                println!(
                    "{:22} small={small:5} events={} {:.1} M events/s, large fallback {:.2}%, meta max {} B",
                    m.name(),
                    events.len(),
                    events.len() as f64 / secs / 1e6,
                    100.0 * r.fallbacks as f64 / r.large_requests.max(1) as f64,
                    r.max_metadata,
                );
            }
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(64))]
        #[test]
        fn random_ops_keep_invariants(ops in prop::collection::vec((0u8..7, any::<u16>(), any::<u16>(), any::<u16>()), 1..300),
                                      bad in prop::collection::vec(1u64..2100, 0..6)) {
            let mut h = Harness::new(Buddy::new(), vec![dev(0, 2100, bad)]);
            let before = free_sets(&h.model);
            for (k, a, b, c) in ops {
                step(&mut h, k, a, b, c);
                h.check();
            }
            h.free_all();
            h.check();
            prop_assert_eq!(free_sets(&h.model), before);
        }
    }
}
