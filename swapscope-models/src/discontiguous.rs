//! `discontiguous`: a large folio's swap entry may be an indirection array of order-0 slots.
//!
//! # Idea and sources
//! If a swap entry names a descriptor instead of a physical slot, a large folio no longer needs
//! 2^k contiguous, aligned slots: its pages can sit wherever single slots are free, at the cost of
//! per-page metadata. The idea appears in the swap-abstraction discussions: Yosry Ahmed, "[LSF/MM/BPF
//! TOPIC] Swap Abstraction / Native Zswap" (linux-mm, March 2023; spinics linux-mm msg333124: a
//! `swap_desc` per swapped page, found through an xarray, decouples the entry in the page table
//! from its backing slot), and Nhat Pham's "Virtual Swap Space" series (v3, February 2026, and the
//! "Swap Table Edition" RFC, June 2026, lkml.iu.edu 2606.0/06930 and 2606.0/06965: virtual entries
//! on a ghost device backed lazily by physical slots, with "a tag-encoded virtual_table
//! (atomic_long_t, 8 bytes per slot)"). Neither posting describes exactly "large entry =
//! indirection array only when contiguous space is missing"; that hybrid is this model's own
//! choice, so the metadata is paid only when it buys a large-folio success.
//!
//! # Policy
//! Per device (devices by priority, then swap type):
//! 1. Contiguous first, on every device: the cluster whose largest free aligned block is the
//!    smallest one ≥ 2^k (best fit, so partly used clusters are filled before empty ones), then the
//!    first free aligned 2^k block in it.
//! 2. Only if no device has such a block and k > 0: on the first device with 2^k free slots, gather
//!    single slots from the most fragmented clusters first (smallest largest-free-block), in
//!    ascending offset order inside each cluster. The returned extents list them in folio page
//!    order, adjacent slots merged.
//!
//! A request fails only when no device has 2^k free slots. CPUs are ignored.
//!
//! # Metadata assumption
//! A discontiguous large entry stores one 8-byte slot descriptor per page (a `swp_entry_t`-sized
//! word, as in the virtual-swap `virtual_table`). `metadata_bytes` = 8 × the number of live slots
//! that belong to discontiguous allocations: when part of such a folio is freed its descriptors
//! are assumed released with it (the array shrinks or is repacked), which is the lower bound.
//! Contiguous allocations cost nothing beyond the kernel's own per-slot map. Tracked with one more
//! bit per slot, so no per-allocation table is needed.
//!
//! # Indirection figures (the hard case)
//! Each gathered allocation is an *entry* of 2^k pages. When its pages are freed piecemeal (a
//! forked child zaps part of a shared large folio, the parent keeps the rest), the model gives
//! each page's slot back at once, so it never pins a slot. [`Discontiguous::indirection`] counts
//! what other designs would pay for the same stream: the partly freed entries, the pages already
//! freed in them (slots pinned if an entry's slots were released only with its last page), and
//! the bytes of descriptor arrays kept whole until the last page goes (an upper bound of the
//! metadata, against `metadata_bytes`' lower bound).
//!
//! # Snapshot meaning
//! Clusters as in `buddy`: `free` = no slot used, `full` = none free, `nonfull` = partly used with
//! a free aligned 64 KiB (order-4) block, `frag` = partly used without one; `other` = 0.

use std::collections::HashMap;

use swapscope_core::alloc::{
    Allocation, AllocatorModel, ClusterCell, Extent, MAX_ORDER, ModelSnapshot,
};
use swapscope_core::event::SwapOn;

use super::slotmap::{
    self, CLUSTER, ClusterLists, NO_LIST, SlotMap, WORDS, generic_cluster_counts, snapshot_of,
};

/// Bytes of indirection metadata per page of a discontiguous large entry.
pub const DESCRIPTOR_BYTES: u64 = 8;
const BUCKETS: usize = MAX_ORDER as usize + 1;

/// What the discontiguous (gathered) large entries cost, summed over devices. See the module
/// documentation, "Indirection figures".
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct IndirectionStats {
    /// Live gathered entries (at least one page not freed).
    pub entries: u64,
    /// Of those, entries some of whose pages were freed.
    pub partial_entries: u64,
    /// Live pages of gathered entries (`metadata_bytes` = [`DESCRIPTOR_BYTES`] × this).
    pub live_pages: u64,
    /// Pages already freed in partial entries: the slots a design that releases an entry's slots
    /// only with its last page would still pin (this model pins none).
    pub pinned_if_whole: u64,
    /// Descriptor bytes if every live entry kept its whole array until its last page is freed.
    pub array_bytes: u64,
    /// Gathered entries ever made.
    pub made: u64,
}

/// One gathered entry.
#[derive(Clone, Copy, Debug)]
struct Entry {
    pages: u32,
    live: u32,
}

/// The discontiguous model. See the module documentation.
#[derive(Debug, Default)]
pub struct Discontiguous {
    devs: Vec<Dev>,
}

#[derive(Debug)]
struct Dev {
    map: SlotMap,
    /// Clusters by largest free aligned order (bucket b = list b); full clusters in no list.
    lists: ClusterLists,
    /// Bit set = the slot belongs to a live discontiguous allocation.
    disc: Vec<u64>,
    disc_live: u64,
    /// The entry of each live gathered slot.
    entry_of: HashMap<u64, u32>,
    entries: HashMap<u32, Entry>,
    next_entry: u32,
    /// Sums over `entries`: partial ones, freed pages in them, pages of live arrays.
    partial: u64,
    freed_in_partial: u64,
    array_pages: u64,
    made: u64,
}

impl Discontiguous {
    pub fn new() -> Self {
        Discontiguous::default()
    }

    /// The indirection figures, summed over devices.
    pub fn indirection(&self) -> IndirectionStats {
        let mut s = IndirectionStats::default();
        for d in &self.devs {
            s.entries += d.entries.len() as u64;
            s.partial_entries += d.partial;
            s.live_pages += d.disc_live;
            s.pinned_if_whole += d.freed_in_partial;
            s.array_bytes += d.array_pages * DESCRIPTOR_BYTES;
            s.made += d.made;
        }
        s
    }
}

impl Dev {
    fn new(dev: &SwapOn) -> Self {
        let map = SlotMap::new(dev);
        let n = map.nclusters();
        let mut d = Dev {
            lists: ClusterLists::new(BUCKETS, n),
            disc: vec![0; n * WORDS],
            disc_live: 0,
            entry_of: HashMap::new(),
            entries: HashMap::new(),
            next_entry: 0,
            partial: 0,
            freed_in_partial: 0,
            array_pages: 0,
            made: 0,
            map,
        };
        for c in 0..n {
            d.update(c);
        }
        d
    }

    fn update(&mut self, c: usize) {
        let list = self
            .map
            .cluster_max_free_order(c)
            .map_or(NO_LIST, u16::from);
        self.lists.set(c, list);
    }

    fn alloc_contiguous(&mut self, k: usize) -> Option<u64> {
        let c = (k..BUCKETS).find_map(|b| self.lists.last(b))?;
        let off = self.map.find_in_cluster(c, k)?;
        self.map.mark_used(off, 1 << k);
        self.update(c);
        Some(off)
    }

    /// Gathers `n` free slots (the caller checked there are enough) into `out`.
    fn gather(&mut self, n: u64, out: &mut Vec<Extent>) {
        let ty = self.map.swap_type();
        let id = self.next_entry;
        self.next_entry = self.next_entry.wrapping_add(1);
        let mut need = n;
        while need > 0 {
            let Some(c) = (0..BUCKETS).find_map(|b| self.lists.last(b)) else {
                break;
            };
            for wi in c * WORDS..(c + 1) * WORDS {
                let Some(&w) = self.map.words().get(wi) else {
                    break;
                };
                let mut free = !w;
                while free != 0 && need > 0 {
                    let bit = free.trailing_zeros() as u64;
                    let run = ((free >> bit).trailing_ones() as u64).min(need);
                    let off = wi as u64 * 64 + bit;
                    self.map.mark_used(off, run);
                    let m = if run >= 64 {
                        u64::MAX
                    } else {
                        ((1u64 << run) - 1) << bit
                    };
                    self.disc[wi] |= m;
                    for s in off..off + run {
                        self.entry_of.insert(s, id);
                    }
                    free &= !m;
                    need -= run;
                    match out.last_mut() {
                        Some(e) if e.offset + u64::from(e.nr) == off => e.nr += run as u32,
                        _ => out.push(Extent {
                            swap_type: ty,
                            offset: off,
                            nr: run as u32,
                        }),
                    }
                }
                if need == 0 {
                    break;
                }
            }
            self.update(c);
        }
        let got = n - need;
        self.disc_live += got;
        if got > 0 {
            self.entries.insert(
                id,
                Entry {
                    pages: got as u32,
                    live: got as u32,
                },
            );
            self.array_pages += got;
            self.made += 1;
        }
    }

    /// A page of a gathered entry was freed.
    fn page_freed(&mut self, slot: u64) {
        let Some(id) = self.entry_of.remove(&slot) else {
            return;
        };
        let Some(e) = self.entries.get_mut(&id) else {
            return;
        };
        if e.live == e.pages {
            self.partial += 1;
        }
        e.live -= 1;
        self.freed_in_partial += 1;
        if e.live == 0 {
            let pages = u64::from(e.pages);
            self.entries.remove(&id);
            self.partial -= 1;
            self.freed_in_partial -= pages;
            self.array_pages -= pages;
        }
    }

    fn free(&mut self, offset: u64, nr: u32) {
        let disc = &mut self.disc;
        let mut dropped = 0u64;
        let mut pages: Vec<u64> = Vec::new();
        self.map.release(offset, nr, |wi, mask| {
            if let Some(d) = disc.get_mut(wi) {
                let mut bits = *d & mask;
                dropped += u64::from(bits.count_ones());
                *d &= !mask;
                while bits != 0 {
                    pages.push(wi as u64 * 64 + u64::from(bits.trailing_zeros()));
                    bits &= bits - 1;
                }
            }
        });
        self.disc_live -= dropped;
        for p in pages {
            self.page_freed(p);
        }
        let first = (offset / CLUSTER as u64) as usize;
        let last = (offset.saturating_add(u64::from(nr) - 1) / CLUSTER as u64) as usize;
        for c in first..=last.min(self.map.nclusters().saturating_sub(1)) {
            self.update(c);
        }
    }
}

impl slotmap::HasSlotMap for Dev {
    fn slot_map(&self) -> &SlotMap {
        &self.map
    }
}

impl AllocatorModel for Discontiguous {
    fn name(&self) -> &'static str {
        "discontiguous"
    }

    fn swapon(&mut self, dev: &SwapOn) {
        let d = Dev::new(dev);
        slotmap::add_device(&mut self.devs, d);
    }

    fn swapoff(&mut self, swap_type: u8) {
        slotmap::remove_device(&mut self.devs, swap_type);
    }

    fn alloc(&mut self, _cpu: u32, order: u8) -> Option<Allocation> {
        if order > MAX_ORDER {
            return None;
        }
        let k = usize::from(order);
        let n = 1u64 << k;
        if let Some(a) = self.devs.iter_mut().find_map(|d| {
            let off = d.alloc_contiguous(k)?;
            Some(Allocation::contiguous(d.map.swap_type(), off, n as u32))
        }) {
            return Some(a);
        }
        if k == 0 {
            return None;
        }
        let d = self.devs.iter_mut().find(|d| d.map.free_slots() >= n)?;
        let mut extents = Vec::with_capacity(4);
        d.gather(n, &mut extents);
        Some(Allocation { extents })
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
        let meta = self.devs.iter().map(|d| d.disc_live).sum::<u64>() * DESCRIPTOR_BYTES;
        snapshot_of(
            self.devs.iter().map(|d| &d.map),
            meta,
            generic_cluster_counts,
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
    use proptest::prelude::*;

    use super::*;
    use crate::testkit::{Harness, dev, step};
    use swapscope_core::alloc::AllocatorModel;

    #[test]
    fn contiguous_when_possible_indirect_when_fragmented() {
        let mut h = Harness::new(Discontiguous::new(), vec![dev(0, 513, vec![])]);
        assert_eq!(h.alloc(0, 4), Some(1));
        assert_eq!(h.check().metadata_bytes, 0);
        // Fill the rest with order 0, then free every other order-0 slot: 248 free, no pair.
        while h.alloc(0, 0).is_some() {}
        let live = h.live_count();
        for i in (1..live).rev().step_by(2) {
            h.free_pages(i, 0, 1);
        }
        let s = h.check();
        assert!(
            s.fragmentation_by_order[4] > 0.99,
            "{:?}",
            s.fragmentation_by_order
        );
        let Some(n) = h.alloc(0, 4) else {
            panic!("16 free slots exist")
        };
        assert!(n > 1, "served discontiguously with {n} extents");
        assert_eq!(h.check().metadata_bytes, 16 * DESCRIPTOR_BYTES);
        h.free_all();
        let s = h.check();
        assert_eq!(s.metadata_bytes, 0);
        assert_eq!(s.used_slots, 0);
    }

    #[test]
    fn partial_free_of_indirect_entry_releases_its_descriptors() {
        let mut h = Harness::new(Discontiguous::new(), vec![dev(0, 65, vec![])]);
        for _ in 0..64 {
            assert!(h.alloc(0, 0).is_some());
        }
        for i in (0..64).rev().step_by(2) {
            h.free_pages(i, 0, 1);
        }
        assert_eq!(h.check().used_slots, 32);
        let Some(n) = h.alloc(0, 5) else {
            panic!("32 free slots")
        };
        assert_eq!(n, 32);
        assert_eq!(h.check().metadata_bytes, 32 * 8);
        assert!(h.alloc(0, 0).is_none(), "device full");
        let idx = h.live_count() - 1;
        h.free_pages(idx, 3, 10);
        assert_eq!(h.check().metadata_bytes, 22 * 8);
    }

    #[test]
    fn indirection_figures_of_a_partly_freed_entry() {
        let mut m = Discontiguous::new();
        m.swapon(&dev(0, 65, vec![]));
        for s in 1..65 {
            assert!(m.alloc(0, 0).is_some(), "slot {s}");
        }
        for s in (1..65).step_by(2) {
            m.free(0, s, 1);
        }
        let Some(a) = m.alloc(0, 4) else {
            panic!("32 free slots")
        };
        let pages: Vec<u64> = a
            .extents
            .iter()
            .flat_map(|e| e.offset..e.offset + u64::from(e.nr))
            .collect();
        assert_eq!(pages.len(), 16);
        let i = m.indirection();
        assert_eq!((i.entries, i.partial_entries, i.live_pages), (1, 0, 16));
        assert_eq!((i.pinned_if_whole, i.array_bytes, i.made), (0, 128, 1));
        // The child zaps pages 3..8, then the parent page 0.
        for p in pages.iter().skip(3).take(5).chain(pages.first()) {
            m.free(0, *p, 1);
        }
        let i = m.indirection();
        assert_eq!((i.entries, i.partial_entries, i.live_pages), (1, 1, 10));
        assert_eq!((i.pinned_if_whole, i.array_bytes), (6, 128));
        assert_eq!(m.snapshot().metadata_bytes, 10 * DESCRIPTOR_BYTES);
        assert_eq!(
            m.snapshot().used_slots,
            32 + 10,
            "freed pages give their slots back"
        );
        for p in &pages {
            m.free(0, *p, 1);
        }
        let i = m.indirection();
        assert_eq!(
            (
                i.entries,
                i.partial_entries,
                i.live_pages,
                i.pinned_if_whole,
                i.array_bytes
            ),
            (0, 0, 0, 0, 0)
        );
        assert_eq!(m.snapshot().used_slots, 32);
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(48))]
        #[test]
        fn random_ops_keep_invariants(ops in prop::collection::vec((0u8..7, any::<u16>(), any::<u16>(), any::<u16>()), 1..300),
                                      bad in prop::collection::vec(1u64..1500, 0..6)) {
            let mut h = Harness::new(Discontiguous::new(), vec![dev(0, 1500, bad)]);
            // A gathered entry may form one unaligned run, so alignment is not checked here.
            h.aligned = false;
            for (k, a, b, c) in ops {
                let free_before = { let s = h.check(); s.total_slots - s.used_slots };
                if k < 3 {
                    let order = [0u8, 0, 0, 2, 3, 4, 5, 9][usize::from(a) % 8];
                    let ok = h.alloc(u32::from(b % 4), order).is_some();
                    prop_assert_eq!(ok, free_before >= 1u64 << order, "fails only when short of slots");
                } else {
                    step(&mut h, k, a, b, c);
                }
                h.check();
            }
            h.free_all();
            let s = h.check();
            prop_assert_eq!(s.metadata_bytes, 0);
            prop_assert_eq!(s.used_slots, 0);
        }

        /// The fork case: gathered large entries whose pages are freed in arbitrary order and
        /// pieces, interleaved across entries (and "processes": a page freed again by the other
        /// owner's late free is a no-op), stay exact.
        #[test]
        fn piecemeal_frees_of_gathered_entries_stay_exact(
            orders in prop::collection::vec(1u8..6, 1..6),
            extra_holes in prop::collection::vec(1u64..1025, 0..40),
            keys in prop::collection::vec(any::<u32>(), 256),
            cuts in prop::collection::vec(1usize..8, 64),
            again in prop::collection::vec(any::<bool>(), 256),
        ) {
            let mut m = Discontiguous::new();
            m.swapon(&dev(0, 1025, vec![]));
            while m.alloc(0, 0).is_some() {}
            let mut holes: std::collections::BTreeSet<u64> = (1..1025).step_by(2).collect();
            holes.extend(extra_holes);
            for &h in &holes {
                m.free(0, h, 1);
            }
            // Entries: page -> slot, and live flags.
            let mut entries: Vec<(Vec<u64>, Vec<bool>)> = Vec::new();
            let mut background = m.snapshot().used_slots;
            for k in orders {
                let made = m.indirection().made;
                let Some(a) = m.alloc(0, k) else { continue };
                let pages: Vec<u64> = a.extents.iter().flat_map(|e| e.offset..e.offset + u64::from(e.nr)).collect();
                prop_assert_eq!(pages.len() as u64, 1u64 << k);
                if m.indirection().made == made {
                    background += 1u64 << k; // served contiguously: not an entry
                } else {
                    let n = pages.len();
                    entries.push((pages, vec![true; n]));
                }
            }
            // Pieces: each entry's pages in page order, cut into runs.
            let mut pieces: Vec<(usize, usize, usize)> = Vec::new();
            let mut ci = 0;
            for (e, (pages, _)) in entries.iter().enumerate() {
                let mut p = 0;
                while p < pages.len() {
                    let len = cuts.get(ci % cuts.len()).copied().unwrap_or(1);
                    ci += 1;
                    let end = (p + len).min(pages.len());
                    pieces.push((e, p, end));
                    p = end;
                }
            }
            let mut order: Vec<usize> = (0..pieces.len()).collect();
            order.sort_by_key(|&i| keys.get(i % keys.len()).copied().unwrap_or(0).rotate_left(i as u32));
            for (n, &pi) in order.iter().enumerate() {
                let Some(&(e, a, b)) = pieces.get(pi) else { continue };
                let Some((pages, live)) = entries.get_mut(e) else { continue };
                // One free call per run of adjacent slots, as the engine splits a stream free.
                let mut p = a;
                while p < b {
                    let mut q = p + 1;
                    while q < b && pages[q] == pages[q - 1] + 1 && pages[q] % 512 != 0 {
                        q += 1;
                    }
                    let before = m.snapshot().used_slots;
                    m.free(0, pages[p], (q - p) as u32);
                    prop_assert_eq!(before - m.snapshot().used_slots, (q - p) as u64, "each page returns its slot once");
                    for l in &mut live[p..q] {
                        *l = false;
                    }
                    p = q;
                }
                if again.get(n).copied().unwrap_or(false) {
                    let before = m.snapshot().used_slots;
                    m.free(0, pages[a], 1);
                    prop_assert_eq!(m.snapshot().used_slots, before, "a second free of a page is a no-op");
                }
                let live_pages: u64 = entries.iter().map(|(_, l)| l.iter().filter(|x| **x).count() as u64).sum();
                let partial = entries.iter().filter(|(_, l)| l.iter().any(|x| *x) && !l.iter().all(|x| *x)).count() as u64;
                let pinned: u64 = entries.iter().filter(|(_, l)| l.iter().any(|x| *x)).map(|(_, l)| l.iter().filter(|x| !**x).count() as u64).sum();
                let alive = entries.iter().filter(|(_, l)| l.iter().any(|x| *x)).count() as u64;
                let i = m.indirection();
                prop_assert_eq!(m.snapshot().used_slots, background + live_pages);
                prop_assert_eq!(i.live_pages, live_pages);
                prop_assert_eq!(i.partial_entries, partial);
                prop_assert_eq!(i.pinned_if_whole, pinned);
                prop_assert_eq!(i.entries, alive);
                prop_assert_eq!(m.snapshot().metadata_bytes, live_pages * DESCRIPTOR_BYTES);
            }
            let i = m.indirection();
            prop_assert_eq!((i.entries, i.partial_entries, i.live_pages, i.pinned_if_whole, i.array_bytes), (0, 0, 0, 0, 0));
            prop_assert_eq!(m.snapshot().used_slots, background, "no slot pinned after every page is freed");
        }
    }
}
