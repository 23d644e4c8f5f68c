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

use crate::alloc::{Allocation, AllocatorModel, ClusterCell, MAX_ORDER, ModelSnapshot, NR_ORDERS};
use crate::event::SwapOn;

use self::slotmap::{HierSet, SlotMap, snapshot_of};

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

/// Slot-bitmap machinery shared by the alternative models (`buddy`, `classified`,
/// `discontiguous`): a per-device used-slot bitmap with reserved-slot handling, aligned-block
/// queries within a 512-slot cluster, cluster bucket lists, a hierarchical bitset, and the
/// [`ModelSnapshot`] free-space statistics. Kept here so the three model files stay self-contained
/// as a group; it can move to its own file under `models/` without changes.
pub mod slotmap {
    use crate::alloc::{
        CLUSTER_SLOTS, ClusterCell, ClusterCounts, ClusterList, MAX_ORDER, ModelSnapshot,
    };
    use crate::event::SwapOn;

    /// Slots per cluster as a `usize`.
    pub const CLUSTER: usize = CLUSTER_SLOTS as usize;
    /// 64-bit words per cluster in a slot bitmap.
    pub const WORDS: usize = CLUSTER / 64;
    /// The order used to call a partly used cluster "nonfull" (it holds a free aligned block of
    /// this order, i.e. can serve a 64 KiB folio) rather than "frag".
    pub const FRAG_ORDER: u8 = 4;

    /// Bits that start a free (all-zero) naturally aligned 2^k block of the used-slot `word`,
    /// for k ≤ 6: the one definition, `alloc::frag::aligned_free_mask`, on the free bits.
    #[inline]
    pub fn free_block_starts(word: u64, k: usize) -> u64 {
        crate::alloc::frag::aligned_free_mask(!word, k as u32)
    }

    /// Largest order of a free naturally aligned block among a cluster's 8 words.
    #[inline]
    pub fn max_free_order(w: &[u64]) -> Option<u8> {
        for k in (6..=usize::from(MAX_ORDER)).rev() {
            let g = 1usize << (k - 6);
            if w.chunks(g).any(|c| c.iter().all(|&x| x == 0)) {
                return Some(k as u8);
            }
        }
        // Below a whole word: one pass, folding each word's free bits until no aligned block of
        // the next order is left (2^k free bits start at bit j iff the folded bit j is set).
        let mut best = None;
        for &x in w {
            let mut m = !x;
            if m == 0 {
                continue;
            }
            let mut k = 0;
            while k < 5 {
                let next = m & (m >> (1u32 << k));
                if next & crate::alloc::frag::ALIGN_MASKS[k + 1] == 0 {
                    break;
                }
                m = next;
                k += 1;
            }
            best = best.max(Some(k as u8));
            if k == 5 {
                break;
            }
        }
        best
    }

    /// Offset inside the cluster of the first free aligned 2^k block.
    #[inline]
    pub fn find_free_block(w: &[u64], k: usize) -> Option<usize> {
        if k >= 6 {
            let g = 1usize << (k - 6);
            return w
                .chunks(g)
                .position(|c| c.iter().all(|&x| x == 0))
                .map(|i| i * g * 64);
        }
        w.iter().enumerate().find_map(|(i, &x)| {
            let m = free_block_starts(x, k);
            (m != 0).then(|| i * 64 + m.trailing_zeros() as usize)
        })
    }

    /// Mask of bits `lo..hi` (0 ≤ lo < hi ≤ 64).
    #[inline]
    fn bits(lo: u64, hi: u64) -> u64 {
        let upper = if hi >= 64 { u64::MAX } else { (1u64 << hi) - 1 };
        upper & !((1u64 << lo) - 1)
    }

    /// A model's per-device state that owns a [`SlotMap`].
    pub trait HasSlotMap {
        fn slot_map(&self) -> &SlotMap;
    }

    /// swapon for the alternative models: replace a device of the same type and keep the list
    /// in `swap_avail_heads` order (best priority first, then swap type).
    pub fn add_device<D: HasSlotMap>(devs: &mut Vec<D>, dev: D) {
        let ty = dev.slot_map().swap_type();
        remove_device(devs, ty);
        devs.push(dev);
        devs.sort_by_key(|d| {
            (
                std::cmp::Reverse(d.slot_map().prio()),
                d.slot_map().swap_type(),
            )
        });
    }

    /// swapoff for the alternative models.
    pub fn remove_device<D: HasSlotMap>(devs: &mut Vec<D>, swap_type: u8) {
        devs.retain(|d| d.slot_map().swap_type() != swap_type);
    }

    /// One device's slots: bit set = allocated or reserved (header, bad, past `max`).
    #[derive(Debug, Clone)]
    pub struct SlotMap {
        swap_type: u8,
        prio: i32,
        max: u64,
        words: Vec<u64>,
        /// Bad slots inside `1..max`, sorted and unique.
        bad: Vec<u64>,
        usable: u64,
        used: u64,
    }

    impl SlotMap {
        pub fn new(dev: &SwapOn) -> Self {
            let nclusters = (dev.max.div_ceil(CLUSTER_SLOTS)).max(1) as usize;
            let mut words = vec![0u64; nclusters * WORDS];
            let mut bad: Vec<u64> = dev
                .bad
                .iter()
                .copied()
                .filter(|&b| b >= 1 && b < dev.max)
                .collect();
            bad.sort_unstable();
            bad.dedup();
            let total = (nclusters * CLUSTER) as u64;
            let set = |words: &mut Vec<u64>, s: u64| {
                if let Some(w) = words.get_mut((s / 64) as usize) {
                    *w |= 1u64 << (s % 64);
                }
            };
            set(&mut words, 0);
            for &b in &bad {
                set(&mut words, b);
            }
            for s in dev.max.max(1)..total {
                set(&mut words, s);
            }
            let usable = dev.max.saturating_sub(1 + bad.len() as u64);
            SlotMap {
                swap_type: dev.swap_type,
                prio: dev.prio,
                max: dev.max,
                words,
                bad,
                usable,
                used: 0,
            }
        }

        pub fn swap_type(&self) -> u8 {
            self.swap_type
        }
        pub fn prio(&self) -> i32 {
            self.prio
        }
        pub fn nclusters(&self) -> usize {
            self.words.len() / WORDS
        }
        /// Usable slots (neither header, bad nor past `max`).
        pub fn usable(&self) -> u64 {
            self.usable
        }
        /// Allocated usable slots.
        pub fn used(&self) -> u64 {
            self.used
        }
        pub fn free_slots(&self) -> u64 {
            self.usable - self.used
        }
        pub fn words(&self) -> &[u64] {
            &self.words
        }
        /// The 8 bitmap words of cluster `c`.
        #[inline]
        pub fn cluster(&self, c: usize) -> &[u64] {
            &self.words[c * WORDS..(c + 1) * WORDS]
        }
        /// Used or reserved slots of cluster `c`.
        #[inline]
        pub fn cluster_busy(&self, c: usize) -> u32 {
            self.cluster(c).iter().map(|w| w.count_ones()).sum()
        }
        /// Reserved slots of cluster `c` (header, bad, past `max`).
        pub fn cluster_reserved(&self, c: usize) -> u32 {
            (c * WORDS..(c + 1) * WORDS)
                .map(|w| self.reserved_mask(w).count_ones())
                .sum()
        }

        /// Reserved bits of bitmap word `w`.
        pub fn reserved_mask(&self, w: usize) -> u64 {
            let lo = (w as u64) * 64;
            let hi = lo + 64;
            let mut m = 0u64;
            if lo == 0 {
                m |= 1;
            }
            if self.max <= lo {
                return u64::MAX;
            }
            if hi > self.max {
                m |= bits(self.max - lo, 64);
            }
            let first = self.bad.partition_point(|&b| b < lo);
            for &b in self.bad[first..].iter().take_while(|&&b| b < hi) {
                m |= 1u64 << (b - lo);
            }
            m
        }

        /// True when every slot of `[start, start+n)` is free (start+n within the bitmap).
        pub fn all_free(&self, start: u64, n: u64) -> bool {
            self.range_all(start, n, |w, m| w & m == 0)
        }

        /// True when every slot of `[start, start+n)` is used or reserved.
        pub fn all_used(&self, start: u64, n: u64) -> bool {
            self.range_all(start, n, |w, m| w & m == m)
        }

        fn range_all(&self, start: u64, n: u64, f: impl Fn(u64, u64) -> bool) -> bool {
            let end = start + n;
            let mut s = start;
            while s < end {
                let wi = (s / 64) as usize;
                let lo = s % 64;
                let hi = (end - (s - lo)).min(64);
                let Some(&w) = self.words.get(wi) else {
                    return false;
                };
                if !f(w, bits(lo, hi)) {
                    return false;
                }
                s = s - lo + 64;
            }
            true
        }

        /// Marks `[start, start+n)` allocated; the caller guarantees the range was free.
        pub fn mark_used(&mut self, start: u64, n: u64) {
            let end = start + n;
            let mut s = start;
            while s < end {
                let wi = (s / 64) as usize;
                let lo = s % 64;
                let hi = (end - (s - lo)).min(64);
                if let Some(w) = self.words.get_mut(wi) {
                    *w |= bits(lo, hi);
                }
                s = s - lo + 64;
            }
            self.used += n;
        }

        /// Frees the allocated (not reserved, not already free) slots of `[offset, offset+nr)`,
        /// calling `f(word_index, freed_bits)` for each bitmap word that changed. Returns the
        /// number of slots freed.
        pub fn release(&mut self, offset: u64, nr: u32, mut f: impl FnMut(usize, u64)) -> u64 {
            let end = offset.saturating_add(u64::from(nr)).min(self.max);
            let mut s = offset.max(1);
            let mut freed = 0u64;
            while s < end {
                let wi = (s / 64) as usize;
                let lo = s % 64;
                let hi = (end - (s - lo)).min(64);
                let resv = self.reserved_mask(wi);
                if let Some(w) = self.words.get_mut(wi) {
                    let m = *w & bits(lo, hi) & !resv;
                    if m != 0 {
                        *w &= !m;
                        freed += u64::from(m.count_ones());
                        f(wi, m);
                    }
                }
                s = s - lo + 64;
            }
            self.used -= freed;
            freed
        }

        /// First free aligned 2^k block in cluster `c`, as a device offset.
        #[inline]
        pub fn find_in_cluster(&self, c: usize, k: usize) -> Option<u64> {
            find_free_block(self.cluster(c), k).map(|o| (c * CLUSTER + o) as u64)
        }

        #[inline]
        pub fn cluster_max_free_order(&self, c: usize) -> Option<u8> {
            max_free_order(self.cluster(c))
        }
    }

    /// Cluster state from the bitmap alone (used by `buddy` and `discontiguous`): `free` = no slot
    /// used or reserved, `full` = none free, `nonfull` = partly used with a free aligned
    /// 2^[`FRAG_ORDER`] block, `frag` = partly used without one.
    pub fn generic_cluster_counts(map: &SlotMap, counts: &mut ClusterCounts) {
        for c in 0..map.nclusters() {
            counts.add(generic_cluster_list(map, c));
        }
    }

    /// The state of cluster `c` by the rule of [`generic_cluster_counts`].
    pub fn generic_cluster_list(map: &SlotMap, c: usize) -> ClusterList {
        let busy = map.cluster_busy(c);
        if busy == 0 {
            ClusterList::Free
        } else if busy as usize == CLUSTER {
            ClusterList::Full
        } else if map
            .cluster_max_free_order(c)
            .is_some_and(|o| o >= FRAG_ORDER)
        {
            ClusterList::Nonfull
        } else {
            ClusterList::Frag
        }
    }

    /// The device map of a model whose clusters are classified by the bitmap alone.
    pub fn generic_cluster_cells(map: &SlotMap, out: &mut Vec<ClusterCell>) {
        out.extend((0..map.nclusters()).map(|c| ClusterCell {
            used: map.cluster_busy(c) as u16,
            order: None,
            list: generic_cluster_list(map, c),
            last: None,
        }));
    }

    /// [`AllocatorModel::cluster_map`](crate::alloc::AllocatorModel::cluster_map) over devices
    /// with slot maps: `cells` of the device whose type is `swap_type`.
    pub fn cluster_map_of<D: HasSlotMap>(
        devs: &[D],
        swap_type: u8,
        out: &mut Vec<ClusterCell>,
        cells: impl Fn(&D, &mut Vec<ClusterCell>),
    ) -> bool {
        match devs.iter().find(|d| d.slot_map().swap_type() == swap_type) {
            Some(d) => {
                cells(d, out);
                true
            }
            None => false,
        }
    }

    /// Builds a [`ModelSnapshot`] from device slot maps: totals, fragmentation by order, largest
    /// free naturally aligned block, and cluster counts from `counts`.
    pub fn snapshot_of<'a>(
        maps: impl Iterator<Item = &'a SlotMap>,
        metadata_bytes: u64,
        counts: impl Fn(&SlotMap, &mut ClusterCounts),
    ) -> ModelSnapshot {
        let mut snap = ModelSnapshot {
            metadata_bytes,
            ..ModelSnapshot::default()
        };
        // The one fragmentation calculation every model and the real occupancy use.
        let mut frag = crate::alloc::frag::FragStats::default();
        for map in maps {
            snap.total_slots += map.usable();
            snap.used_slots += map.used();
            counts(map, &mut snap.clusters);
            frag.add_words(map.words());
        }
        snap.largest_free_run = frag.largest_free_run;
        snap.fragmentation_by_order = frag.fragmentation_by_order();
        snap
    }

    /// A set of `n` indices with O(log64 n) insert/remove/lowest-member, as a 64-ary tree of
    /// bitmaps (level 0 = members; a bit of level l+1 says "word of level l is non-zero").
    #[derive(Debug, Clone)]
    pub struct HierSet {
        levels: Vec<Vec<u64>>,
        len: usize,
    }

    impl HierSet {
        pub fn new(n: usize) -> Self {
            let mut levels = Vec::new();
            let mut words = n.div_ceil(64).max(1);
            loop {
                levels.push(vec![0u64; words]);
                if words == 1 {
                    break;
                }
                words = words.div_ceil(64);
            }
            HierSet { levels, len: 0 }
        }

        pub fn is_empty(&self) -> bool {
            self.len == 0
        }

        pub fn contains(&self, i: usize) -> bool {
            self.levels[0]
                .get(i / 64)
                .is_some_and(|w| w & (1u64 << (i % 64)) != 0)
        }

        pub fn insert(&mut self, i: usize) {
            let mut idx = i;
            let mut first = true;
            for level in &mut self.levels {
                let Some(w) = level.get_mut(idx / 64) else {
                    return;
                };
                let was = *w;
                *w |= 1u64 << (idx % 64);
                if first {
                    if was == *w {
                        return;
                    }
                    self.len += 1;
                    first = false;
                }
                if was != 0 {
                    return;
                }
                idx /= 64;
            }
        }

        pub fn remove(&mut self, i: usize) {
            let mut idx = i;
            let mut first = true;
            for level in &mut self.levels {
                let Some(w) = level.get_mut(idx / 64) else {
                    return;
                };
                let was = *w;
                *w &= !(1u64 << (idx % 64));
                if first {
                    if was == *w {
                        return;
                    }
                    self.len -= 1;
                    first = false;
                }
                if *w != 0 {
                    return;
                }
                idx /= 64;
            }
        }

        /// Lowest member.
        pub fn first(&self) -> Option<usize> {
            let mut i = 0usize;
            for level in self.levels.iter().rev() {
                let w = *level.get(i)?;
                if w == 0 {
                    return None;
                }
                i = i * 64 + w.trailing_zeros() as usize;
            }
            Some(i)
        }
    }

    /// Clusters grouped into numbered lists with O(1) moves (each cluster in at most one list).
    #[derive(Debug, Clone)]
    pub struct ClusterLists {
        lists: Vec<Vec<u32>>,
        which: Vec<u16>,
        pos: Vec<u32>,
    }

    /// "In no list".
    pub const NO_LIST: u16 = u16::MAX;

    impl ClusterLists {
        pub fn new(nlists: usize, nclusters: usize) -> Self {
            ClusterLists {
                lists: vec![Vec::new(); nlists],
                which: vec![NO_LIST; nclusters],
                pos: vec![0; nclusters],
            }
        }

        pub fn list_of(&self, c: usize) -> u16 {
            self.which.get(c).copied().unwrap_or(NO_LIST)
        }

        /// Moves cluster `c` to `list` (or out of all lists with [`NO_LIST`]).
        pub fn set(&mut self, c: usize, list: u16) {
            let old = self.list_of(c);
            if old == list {
                return;
            }
            if old != NO_LIST {
                let p = self.pos[c] as usize;
                let l = &mut self.lists[usize::from(old)];
                l.swap_remove(p);
                if let Some(&moved) = l.get(p) {
                    self.pos[moved as usize] = p as u32;
                }
            }
            if list != NO_LIST {
                let l = &mut self.lists[usize::from(list)];
                self.pos[c] = l.len() as u32;
                l.push(c as u32);
            }
            self.which[c] = list;
        }

        /// Most recently added member of `list`.
        pub fn last(&self, list: usize) -> Option<usize> {
            self.lists.get(list)?.last().map(|&c| c as usize)
        }

        pub fn members(&self, list: usize) -> &[u32] {
            self.lists.get(list).map_or(&[], |l| l.as_slice())
        }
    }
}

/// Test support shared by the alternative models' tests: a harness that drives a model and checks
/// every answer against an independent record of live slots.
#[cfg(test)]
pub mod testkit {
    use std::collections::BTreeSet;

    use crate::alloc::{AllocatorModel, ModelSnapshot};
    use crate::event::{SwapOn, swap_flags};

    pub fn dev(swap_type: u8, max: u64, bad: Vec<u64>) -> SwapOn {
        SwapOn {
            ts_ns: 0,
            swap_type,
            max,
            bad,
            flags: swap_flags::SOLIDSTATE | swap_flags::BLKDEV | swap_flags::SYNCHRONOUS_IO,
            prio: 0,
        }
    }

    /// One live allocation: its slots in folio page order and which pages were freed.
    struct Live {
        slots: Vec<(u8, u64)>,
        freed: Vec<bool>,
    }

    pub struct Harness<M> {
        pub model: M,
        devs: Vec<SwapOn>,
        live: Vec<Live>,
        used: BTreeSet<(u8, u64)>,
        /// Check that single-extent allocations are naturally aligned (contiguous allocators).
        pub aligned: bool,
    }

    impl<M: AllocatorModel> Harness<M> {
        pub fn new(mut model: M, devs: Vec<SwapOn>) -> Self {
            for d in &devs {
                model.swapon(d);
            }
            Harness {
                model,
                devs,
                live: Vec::new(),
                used: BTreeSet::new(),
                aligned: true,
            }
        }

        pub fn live_count(&self) -> usize {
            self.live.len()
        }

        pub fn used_slots(&self) -> u64 {
            self.used.len() as u64
        }

        /// Allocates and checks the answer; returns the extents count on success.
        pub fn alloc(&mut self, cpu: u32, order: u8) -> Option<usize> {
            let a = self.model.alloc(cpu, order)?;
            assert_eq!(a.slots(), 1u64 << order, "allocation covers 2^order slots");
            let mut slots = Vec::with_capacity(1 << order);
            for e in &a.extents {
                assert!(e.nr > 0, "empty extent");
                let d = self.devs.iter().find(|d| d.swap_type == e.swap_type);
                let Some(d) = d else {
                    panic!("extent on unknown device {}", e.swap_type)
                };
                for s in e.offset..e.offset + u64::from(e.nr) {
                    assert!(s >= 1 && s < d.max, "slot {s} outside 1..{}", d.max);
                    assert!(!d.bad.contains(&s), "bad slot {s} handed out");
                    assert!(
                        self.used.insert((e.swap_type, s)),
                        "slot {s} handed out twice"
                    );
                    slots.push((e.swap_type, s));
                }
            }
            if self.aligned && a.extents.len() == 1 {
                let off = a.extents[0].offset;
                assert_eq!(
                    off % (1u64 << order),
                    0,
                    "contiguous allocation is naturally aligned"
                );
            }
            self.live.push(Live {
                freed: vec![false; slots.len()],
                slots,
            });
            Some(a.extents.len())
        }

        /// Frees pages [p, p+n) (clamped) of live allocation `idx % live`, skipping pages freed
        /// before; consecutive slots go to the model as one free.
        pub fn free_pages(&mut self, idx: usize, p: usize, n: usize) {
            if self.live.is_empty() {
                return;
            }
            let i = idx % self.live.len();
            let len = self.live[i].slots.len();
            let p = p % len;
            let end = (p + n.max(1)).min(len);
            let mut run: Option<(u8, u64, u32)> = None;
            for page in p..end {
                let l = &mut self.live[i];
                if l.freed[page] {
                    flush(&mut self.model, &mut run);
                    continue;
                }
                l.freed[page] = true;
                let (t, s) = l.slots[page];
                assert!(self.used.remove(&(t, s)));
                run = match run {
                    Some((rt, ro, rn)) if rt == t && ro + u64::from(rn) == s => {
                        Some((rt, ro, rn + 1))
                    }
                    mut other => {
                        flush(&mut self.model, &mut other);
                        Some((t, s, 1))
                    }
                };
            }
            flush(&mut self.model, &mut run);
            if self.live[i].freed.iter().all(|&f| f) {
                self.live.swap_remove(i);
            }
        }

        pub fn free_all(&mut self) {
            while !self.live.is_empty() {
                let n = self.live[0].slots.len();
                self.free_pages(0, 0, n);
            }
        }

        pub fn check(&self) -> ModelSnapshot {
            let snap = self.model.snapshot();
            assert_eq!(
                snap.used_slots,
                self.used_slots(),
                "used_slots = live slots"
            );
            assert!(snap.used_slots <= snap.total_slots);
            for f in snap.fragmentation_by_order {
                assert!((0.0..=1.0).contains(&f), "fragmentation {f} out of range");
            }
            snap
        }
    }

    /// Outcome of [`replay`].
    #[derive(Debug, Default)]
    pub struct Replay {
        pub requests: u64,
        pub large_requests: u64,
        /// Large requests the model refused (the engine would split and retry at order 0).
        pub fallbacks: u64,
        /// Order-0 requests (or split pages) the model could not serve at all.
        pub failures: u64,
        pub frees: u64,
        pub max_metadata: u64,
    }

    /// A minimal stand-in for the engine: drives `model` with a simulated stream, mapping each
    /// virtual page to the model slot it got (falling back to order 0 like the kernel's split),
    /// and checks `used_slots` against the live mapping every `check_every` events.
    pub fn replay<M: AllocatorModel + ?Sized>(
        model: &mut M,
        events: &[crate::event::Event],
        check_every: usize,
    ) -> Replay {
        use crate::event::Event;
        use crate::event::virtual_slot;
        use std::collections::HashMap;
        let mut map: HashMap<u64, (u8, u64)> = HashMap::new();
        let mut r = Replay::default();
        for (i, ev) in events.iter().enumerate() {
            match ev {
                Event::SwapOn(on) => model.swapon(on),
                Event::Alloc(a) => {
                    r.requests += 1;
                    let base = virtual_slot::offset(a.id, 0);
                    if a.order > 0 {
                        r.large_requests += 1;
                    }
                    if let Some(al) = model.alloc(a.cpu, a.order) {
                        let mut page = 0;
                        for e in &al.extents {
                            for s in e.offset..e.offset + u64::from(e.nr) {
                                map.insert(base + page, (e.swap_type, s));
                                page += 1;
                            }
                        }
                    } else {
                        if a.order > 0 {
                            r.fallbacks += 1;
                        }
                        for page in 0..1u64 << a.order {
                            match model.alloc(a.cpu, 0) {
                                Some(al) => {
                                    let e = al.extents[0];
                                    map.insert(base + page, (e.swap_type, e.offset));
                                }
                                None => r.failures += 1,
                            }
                        }
                    }
                }
                Event::Free(f) => {
                    r.frees += 1;
                    for v in f.offset..f.offset + u64::from(f.nr) {
                        if let Some((t, s)) = map.remove(&v) {
                            model.free(t, s, 1);
                        }
                    }
                }
                _ => {}
            }
            if check_every > 0 && i % check_every == 0 {
                let snap = model.snapshot();
                assert_eq!(
                    snap.used_slots,
                    map.len() as u64,
                    "event {i}: used = mapped"
                );
                r.max_metadata = r.max_metadata.max(snap.metadata_bytes);
            }
        }
        let snap = model.snapshot();
        assert_eq!(snap.used_slots, map.len() as u64, "end: used = mapped");
        r
    }

    fn flush<M: AllocatorModel>(model: &mut M, run: &mut Option<(u8, u64, u32)>) {
        if let Some((t, o, n)) = run.take() {
            model.free(t, o, n);
        }
    }

    /// One step of a random op sequence: `kind` < 3 allocates (order from `a`), else frees a
    /// random piece (`a`, `b`, `c` pick allocation, start and length).
    pub fn step<M: AllocatorModel>(h: &mut Harness<M>, kind: u8, a: u16, b: u16, c: u16) {
        const ORDERS: [u8; 8] = [0, 0, 0, 2, 3, 4, 5, 9];
        if kind < 3 {
            h.alloc(u32::from(b % 4), ORDERS[usize::from(a) % ORDERS.len()]);
        } else if kind < 5 {
            h.free_pages(usize::from(a), usize::from(b), usize::from(c % 600));
        } else {
            h.free_pages(usize::from(a), usize::from(b), 1 + usize::from(c % 3));
        }
    }
}

#[cfg(test)]
mod tests {

    /// The one-pass `max_free_order` against the definition (largest k with a free aligned
    /// 2^k block), on random and structured clusters.
    #[test]
    fn max_free_order_matches_definition() {
        use super::slotmap::{free_block_starts, max_free_order};
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

    use super::testkit::{Harness, dev, step};
    use super::*;

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
        use crate::workload::{NAMES, WorkloadSpec, generate};
        for name in NAMES {
            let spec = WorkloadSpec {
                swap_size_bytes: 8 << 20,
                iterations: Some(3),
                small: true,
                ..WorkloadSpec::new(name)
            };
            let events = generate(&spec).unwrap_or_default();
            for mut m in models() {
                let r = testkit::replay(m.as_mut(), &events, 97);
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
        use crate::workload::{WorkloadSpec, generate};
        for small in [false, true] {
            let spec = WorkloadSpec {
                small,
                ..WorkloadSpec::new("thp-fragment")
            };
            let events = generate(&spec).unwrap_or_default();
            for mut m in models() {
                let t = std::time::Instant::now();
                let r = testkit::replay(m.as_mut(), &events, 0);
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
