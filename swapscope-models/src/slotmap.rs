//! Slot-bitmap machinery shared by the alternative models (`buddy`, `classified`,
//! `discontiguous`): a per-device used-slot bitmap with reserved-slot handling, aligned-block
//! queries within a 512-slot cluster, cluster bucket lists, a hierarchical bitset, and the
//! [`ModelSnapshot`] of a set of devices (its free-space figures through `alloc::frag::FragStats`,
//! the calculation every model uses).

use swapscope_core::alloc::frag::UsedBitmap;
use swapscope_core::alloc::{
    CLUSTER_SLOTS, ClusterCell, ClusterCounts, ClusterList, MAX_ORDER, ModelSnapshot,
};
use swapscope_core::event::SwapOn;

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
    swapscope_core::alloc::frag::aligned_free_mask(!word, k as u32)
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
            if next & swapscope_core::alloc::frag::ALIGN_MASKS[k + 1] == 0 {
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

/// One device's slots for the alternative models: the one slot bitmap ([`UsedBitmap`], bit set =
/// allocated or reserved: header, bad, past `max`, to the end of the last cluster) with the
/// device's reserved slots and counts.
#[derive(Debug, Clone)]
pub struct SlotMap {
    swap_type: u8,
    prio: i32,
    max: u64,
    map: UsedBitmap,
    /// Bad slots inside `1..max`, sorted and unique.
    bad: Vec<u64>,
    usable: u64,
    used: u64,
}

/// Reserved bits of bitmap word `w` of a device of `max` slots with `bad` slots (sorted).
fn reserved_mask(max: u64, bad: &[u64], w: usize) -> u64 {
    let lo = (w as u64) * 64;
    let hi = lo + 64;
    let mut m = 0u64;
    if lo == 0 {
        m |= 1;
    }
    if max <= lo {
        return u64::MAX;
    }
    if hi > max {
        m |= bits(max - lo, 64);
    }
    let first = bad.partition_point(|&b| b < lo);
    for &b in bad[first..].iter().take_while(|&&b| b < hi) {
        m |= 1u64 << (b - lo);
    }
    m
}

impl SlotMap {
    pub fn new(dev: &SwapOn) -> Self {
        let (map, bad) = UsedBitmap::for_device(dev);
        let usable = dev.max.saturating_sub(1 + bad.len() as u64);
        SlotMap {
            swap_type: dev.swap_type,
            prio: dev.prio,
            max: dev.max,
            map,
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
        self.map.words().len() / WORDS
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
    /// The bitmap.
    pub fn bitmap(&self) -> &UsedBitmap {
        &self.map
    }
    pub fn words(&self) -> &[u64] {
        self.map.words()
    }
    /// The 8 bitmap words of cluster `c`.
    #[inline]
    pub fn cluster(&self, c: usize) -> &[u64] {
        &self.map.words()[c * WORDS..(c + 1) * WORDS]
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
        reserved_mask(self.max, &self.bad, w)
    }

    /// True when every slot of `[start, start+n)` is free (start+n within the bitmap).
    #[inline]
    pub fn all_free(&self, start: u64, n: u64) -> bool {
        self.map.all_free(start, n)
    }

    /// True when every slot of `[start, start+n)` is used or reserved.
    #[inline]
    pub fn all_used(&self, start: u64, n: u64) -> bool {
        start.saturating_add(n) <= self.map.len() && self.map.all_used(start, n)
    }

    /// Marks `[start, start+n)` allocated; the caller guarantees the range was free.
    #[inline]
    pub fn mark_used(&mut self, start: u64, n: u64) {
        self.map.set_used(start, n);
        self.used += n;
    }

    /// Frees the allocated (not reserved, not already free) slots of `[offset, offset+nr)`,
    /// calling `f(word_index, freed_bits)` for each bitmap word that changed. Returns the
    /// number of slots freed.
    pub fn release(&mut self, offset: u64, nr: u32, mut f: impl FnMut(usize, u64)) -> u64 {
        let end = offset.saturating_add(u64::from(nr)).min(self.max);
        let start = offset.max(1);
        let (max, bad) = (self.max, &self.bad);
        let freed = self
            .map
            .free_where(start, end.saturating_sub(start), |wi, used| {
                let m = used & !reserved_mask(max, bad, wi);
                if m != 0 {
                    f(wi, m);
                }
                m
            });
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

/// [`AllocatorModel::cluster_map`](swapscope_core::alloc::AllocatorModel::cluster_map) over devices
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
    let mut frag = swapscope_core::alloc::frag::FragStats::default();
    for map in maps {
        snap.total_slots += map.usable();
        snap.used_slots += map.used();
        counts(map, &mut snap.clusters);
        frag.add(map.bitmap());
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
