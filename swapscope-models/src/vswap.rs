//! `vswap`: Nhat Pham's virtual swap space, where the swap entry a folio gets is a virtual slot
//! and a physical slot is taken only when the page is written out.
//!
//! # Sources
//! * "[PATCH v3 00/20] Virtual Swap Space" (linux-mm, 8 February 2026; changelog quoted in
//!   David Hildenbrand's reply, lore.kerneltesting.org/linux-mm/13e3cada-…@kernel.org): "a
//!   cluster-based allocation algorithm for virtual swap slots, inspired by Kairui Song and Chris
//!   Li's implementation", "Re-use swap table for the reverse mapping", "Reducing the size of the
//!   swap descriptor from 48 bytes to 24 bytes" (Johannes Weiner's breakdown of what the 24 bytes
//!   replace: lkml.iu.edu 2602.1/02140). The series' `mm/vswap.c`: virtual slots live in
//!   PMD-sized (512-slot) clusters allocated on demand from an xarray (up to `U32_MAX` clusters,
//!   no free list); each cluster serves aligned ranges of one order; a per-CPU cached cluster per
//!   order, then the partial clusters of that order, then a new cluster; the first cluster never
//!   serves PMD order and slot 0 is not handed out. `swap_writeout` → `zswap_store`, and only if
//!   that fails ("fall back to physical swap device") `vswap_alloc_swap_slot(folio)`, which asks
//!   the physical allocator for `folio_order(folio)` contiguous slots and, when it gets none,
//!   leaves the folio in memory (`AOP_WRITEPAGE_ACTIVATE`). Zero-filled folios take no slot
//!   (`swap_zeromap_folio_set`). `vswap_can_swapin_thp`: a large folio is swapped back in whole
//!   only when its range is zero-filled or backed by one contiguous physical run.
//! * "[RFC PATCH 0/5] mm, swap: Virtual Swap Space (Swap Table Edition)" (June 2026,
//!   lkml.iu.edu 2606.0/06965; v2 2606.1/11896, patch 3/7 "support physical swap as a vswap
//!   backend" 2606.1/11906): entries on a ghost device, backed by zswap, the zero page or
//!   "(lazily) physical swap slots … allocated only when needed — on zswap writeback or reclaim
//!   writeout"; "a tag-encoded virtual_table (atomic_long_t, 8 bytes per slot)", and physical
//!   clusters keep "Pointer-tagged rmap entries in the swap_table for reverse lookup".
//!
//! # Rules
//! * **Virtual space.** One space (swap type [`VIRTUAL_TYPE`]) of 512-slot clusters, as in
//!   `mm/vswap.c`: a cluster serves one order while it holds slots; an order-k request takes the
//!   order's current cluster, then the lowest partial cluster of that order, then the lowest empty
//!   one. Slot 0 is never handed out. CPUs are ignored (one current cluster per order instead of
//!   one per CPU). As the posted xarray of clusters, the space grows on demand (it starts at the
//!   physical devices' size, rounded up to clusters, and doubles when no cluster can serve), up
//!   to [`MAX_VIRTUAL_SLOTS`] (the engine's model-offset limit): it is never what runs out first.
//!   (A fixed multiple of the devices would not do: a cluster serves one order, so in the worst
//!   case every live slot pins a cluster of its own.)
//! * **Physical slots.** Taken from an inner [`Discontiguous`] allocator over the real devices:
//!   2^k contiguous, naturally aligned slots when a free aligned run exists (best-fit cluster),
//!   otherwise 2^k single slots gathered from the most fragmented clusters. The posted code would
//!   not write such a folio out at all (it stays in memory); the model backs it page by page, as
//!   the per-slot virtual table allows, and counts it: that share is the interesting figure
//!   ([`Vswap::physical_contiguity`]).
//! * **When.** At write-out ([`AllocatorModel::writeout`]): the live, not yet backed slots of the
//!   written run get physical slots; slots already backed are never backed again. swapscope's
//!   write-out event does not say whether the folio went to zswap or was zero-filled (the
//!   `mm_vmscan_write_folio` tracepoint fires before `swap_writeout` decides), so every write-out
//!   is treated as one that reaches the device: an upper bound of the physical slots taken.
//!   Streams without write-out events (every simulated workload) would never take one, so until
//!   the first write-out the model takes the physical slots at request time (one write-out per
//!   request); from the first write-out on, lazily.
//! * **Refusal** (a fallback): when the physical devices have fewer than 2^k free slots (eagerly:
//!   when no one device can back the folio), or the virtual space is at its limit.
//! * **Frees** release the virtual slots and the physical slots behind them.
//!
//! # Metadata
//! [`VTABLE_BYTES`] (8) per virtual slot in use, the Swap Table Edition's `virtual_table` entry,
//! plus [`RMAP_BYTES`] (8) per physical slot in use, its rmap entry in the physical swap table
//! (v3's descriptor would be 24 bytes per virtual slot instead, with the reverse map in the swap
//! table). Counted as `ModelSnapshot::metadata_bytes`.
//!
//! # Snapshot
//! The physical devices' occupancy and fragmentation (as `discontiguous` reports them), so the
//! model is comparable with the others; `cluster_map` shows the physical devices too.
//!
//! # Physical contiguity
//! [`Vswap::physical_contiguity`] and [`Vswap::writeout_stats`] are read by tests (and the
//! figures in docs/models.md). The engine's report has no place for them: showing them in
//! `simulate`/`report` would need a `ModelReport` field (e.g. `physical_contiguity:
//! Option<f64>`, with the counts behind it) filled through a new defaulted trait method.

use super::Discontiguous;
use swapscope_core::alloc::frag::UsedBitmap;
use swapscope_core::alloc::{
    Allocation, AllocatorModel, CLUSTER_SLOTS, ClusterCell, Extent, MAX_ORDER, ModelSnapshot,
    NR_ORDERS,
};
use swapscope_core::event::SwapOn;

/// The swap type of the virtual slots the model hands out.
pub const VIRTUAL_TYPE: u8 = 0xfe;
/// The virtual space's limit (model slot offsets must stay below 2^38).
pub const MAX_VIRTUAL_SLOTS: u64 = 1 << 38;
/// Bytes of `virtual_table` per virtual slot in use.
pub const VTABLE_BYTES: u64 = 8;
/// Bytes of reverse map per physical slot in use.
pub const RMAP_BYTES: u64 = 8;

const CL: u64 = CLUSTER_SLOTS;
/// A forward-table entry with no physical slot.
const NONE: u64 = u64::MAX;
const TYPE_SHIFT: u32 = 48;

fn pack(swap_type: u8, offset: u64) -> u64 {
    u64::from(swap_type) << TYPE_SHIFT | offset
}

fn unpack(p: u64) -> (u8, u64) {
    ((p >> TYPE_SHIFT) as u8, p & ((1 << TYPE_SHIFT) - 1))
}

/// Counts of the write-outs that took physical slots.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct WriteoutStats {
    /// Large-folio write-outs (or eager large requests) that took physical slots for every page.
    pub large: u64,
    /// Of those, the ones whose physical slots are one contiguous run.
    pub contiguous: u64,
    /// Pages that got a physical slot.
    pub pages_backed: u64,
    /// Pages a write-out could not back (no free physical slot).
    pub unbacked_pages: u64,
    /// Write-outs whose live slots were all backed already (not backed again).
    pub rewrites: u64,
}

/// One virtual cluster.
#[derive(Clone, Debug, Default)]
struct VCluster {
    /// The order it serves while it holds slots.
    order: Option<u8>,
    /// Slots in use (cluster 0 counts its reserved slot 0).
    count: u64,
    /// Physical slot of each virtual slot (empty while the cluster is unused).
    fwd: Vec<u64>,
}

/// The virtual swap space model. See the module documentation.
#[derive(Debug, Default)]
pub struct Vswap {
    phys: Discontiguous,
    phys_total: u64,
    virt: UsedBitmap,
    vcl: Vec<VCluster>,
    cur: [Option<usize>; NR_ORDERS],
    lazy: bool,
    /// Virtual slots in use (slot 0 excluded).
    live: u64,
    /// Virtual slots with a physical slot (= physical slots in use).
    backed: u64,
    stats: WriteoutStats,
}

impl Vswap {
    pub const NAME: &'static str = "vswap";

    pub fn new() -> Self {
        Vswap::default()
    }

    /// Whether physical slots are taken at write-out (a write-out was seen) rather than at
    /// request time.
    pub fn is_lazy(&self) -> bool {
        self.lazy
    }

    /// Virtual slots in use.
    pub fn live_virtual(&self) -> u64 {
        self.live
    }

    /// Virtual slots the space can hold.
    pub fn virtual_capacity(&self) -> u64 {
        self.virt.len().saturating_sub(1)
    }

    /// Physical slots in use (each backs one virtual slot).
    pub fn backed(&self) -> u64 {
        self.backed
    }

    /// The write-out counters.
    pub fn writeout_stats(&self) -> WriteoutStats {
        self.stats
    }

    /// Share of large-folio write-outs whose physical slots are one contiguous run (`None`
    /// before the first).
    pub fn physical_contiguity(&self) -> Option<f64> {
        (self.stats.large > 0).then(|| self.stats.contiguous as f64 / self.stats.large as f64)
    }

    /// The physical slot `(swap type, offset)` behind virtual slot `v`, if it has one.
    pub fn physical_of(&self, v: u64) -> Option<(u8, u64)> {
        let p = *self
            .vcl
            .get((v / CL) as usize)?
            .fwd
            .get((v % CL) as usize)?;
        (p != NONE).then(|| unpack(p))
    }

    fn live_slot(&self, v: u64) -> bool {
        v != 0 && v < self.virt.len() && self.virt.is_used(v)
    }

    fn base(c: usize) -> u64 {
        u64::from(c == 0)
    }

    /// Grows the virtual space to at least `want` slots (whole clusters, at most
    /// [`MAX_VIRTUAL_SLOTS`]). Returns whether it grew.
    fn grow(&mut self, want: u64) -> bool {
        let want = want
            .div_ceil(CL)
            .max(1)
            .saturating_mul(CL)
            .min(MAX_VIRTUAL_SLOTS);
        let old_len = self.virt.len();
        if want <= old_len {
            return false;
        }
        let mut new = UsedBitmap::new_free(want);
        for (wi, &w) in self.virt.words().iter().enumerate() {
            let mut bits = w;
            while bits != 0 {
                let s = wi as u64 * 64 + u64::from(bits.trailing_zeros());
                bits &= bits - 1;
                if s < old_len {
                    new.set_used(s, 1);
                }
            }
        }
        if old_len == 0 {
            new.set_used(0, 1);
        }
        self.virt = new;
        self.vcl.resize((want / CL) as usize, VCluster::default());
        if old_len == 0
            && let Some(c) = self.vcl.first_mut()
        {
            c.count = 1;
        }
        true
    }

    fn vfind(&self, c: usize, k: u8) -> Option<u64> {
        let start = c as u64 * CL;
        self.virt
            .find_free_block(start, start + CL - (1 << k), u32::from(k))
    }

    /// Allocates 2^k virtual slots.
    fn valloc(&mut self, k: u8) -> Option<u64> {
        let n = 1u64 << k;
        let ki = usize::from(k);
        let mut got = None;
        if let Some(c) = self.cur.get(ki).copied().flatten() {
            got = self.vfind(c, k).map(|o| (c, o));
        }
        if got.is_none() {
            got = self.vcl.iter().enumerate().find_map(|(c, v)| {
                if v.order == Some(k) && v.count + n <= CL {
                    self.vfind(c, k).map(|o| (c, o))
                } else {
                    None
                }
            });
        }
        if got.is_none() {
            got = self.vcl.iter().enumerate().find_map(|(c, v)| {
                if v.order.is_none() {
                    self.vfind(c, k).map(|o| (c, o))
                } else {
                    None
                }
            });
        }
        if got.is_none() {
            // No cluster can serve: a new one, as `xa_alloc` gives the posted code.
            let first_new = self.vcl.len();
            if self.grow(self.virt.len().saturating_mul(2)) {
                got = self.vfind(first_new, k).map(|o| (first_new, o));
            }
        }
        let (c, off) = got?;
        self.virt.set_used(off, n);
        let v = self.vcl.get_mut(c)?;
        v.order = Some(k);
        v.count += n;
        if v.fwd.is_empty() {
            v.fwd = vec![NONE; CL as usize];
        }
        self.live += n;
        if let Some(cur) = self.cur.get_mut(ki) {
            *cur = Some(c);
        }
        Some(off)
    }

    /// Records that virtual slots from `v` (in page order) are backed by `extents`.
    fn back(&mut self, v: u64, extents: &[Extent]) {
        let mut page = v;
        for e in extents {
            for j in 0..u64::from(e.nr) {
                self.set_fwd(page, pack(e.swap_type, e.offset + j));
                page += 1;
            }
        }
        let n = page - v;
        self.backed += n;
        self.stats.pages_backed += n;
        if n > 1 {
            self.stats.large += 1;
            if extents.len() == 1 {
                self.stats.contiguous += 1;
            }
        }
    }

    fn set_fwd(&mut self, v: u64, p: u64) {
        if let Some(slot) = self
            .vcl
            .get_mut((v / CL) as usize)
            .and_then(|c| c.fwd.get_mut((v % CL) as usize))
        {
            *slot = p;
        }
    }

    /// Frees virtual slots `v .. v + n` and the physical slots behind them.
    fn vfree(&mut self, v: u64, n: u64) {
        let end = v.saturating_add(n).min(self.virt.len());
        // A run of physical slots to free: (type, start, len).
        let mut run: Option<(u8, u64, u32)> = None;
        for s in v..end {
            if !self.live_slot(s) {
                continue;
            }
            let c = (s / CL) as usize;
            if let Some(p) = self.physical_of(s) {
                self.set_fwd(s, NONE);
                self.backed -= 1;
                run = match run {
                    Some((t, start, len))
                        if t == p.0
                            && start + u64::from(len) == p.1
                            && !(start + u64::from(len)).is_multiple_of(CL) =>
                    {
                        Some((t, start, len + 1))
                    }
                    other => {
                        if let Some((t, start, len)) = other {
                            self.phys.free(t, start, len);
                        }
                        Some((p.0, p.1, 1))
                    }
                };
            }
            self.virt.set_free(s, 1);
            self.live -= 1;
            let Some(vc) = self.vcl.get_mut(c) else {
                continue;
            };
            vc.count -= 1;
            if vc.count == Self::base(c) {
                if let Some(k) = vc.order.take()
                    && let Some(cur) = self.cur.get_mut(usize::from(k))
                    && *cur == Some(c)
                {
                    *cur = None;
                }
                vc.fwd = Vec::new();
            }
        }
        if let Some((t, start, len)) = run {
            self.phys.free(t, start, len);
        }
    }

    fn phys_free(&self) -> u64 {
        self.phys_total.saturating_sub(self.backed)
    }
}

impl AllocatorModel for Vswap {
    fn name(&self) -> &'static str {
        Self::NAME
    }

    fn swapon(&mut self, dev: &SwapOn) {
        self.phys.swapon(dev);
        self.phys_total = self.phys.snapshot().total_slots;
        self.grow(self.phys_total + CL);
    }

    fn swapoff(&mut self, swap_type: u8) {
        self.phys.swapoff(swap_type);
        self.phys_total = self.phys.snapshot().total_slots;
        let mut dropped = 0;
        for c in &mut self.vcl {
            for p in &mut c.fwd {
                if *p != NONE && unpack(*p).0 == swap_type {
                    *p = NONE;
                    dropped += 1;
                }
            }
        }
        self.backed -= dropped;
    }

    fn alloc(&mut self, _cpu: u32, order: u8) -> Option<Allocation> {
        if order > MAX_ORDER {
            return None;
        }
        let n = 1u64 << order;
        if self.phys_free() < n {
            return None;
        }
        let v = self.valloc(order)?;
        if !self.lazy {
            match self.phys.alloc(0, order) {
                Some(a) => self.back(v, &a.extents),
                None => {
                    self.vfree(v, n);
                    return None;
                }
            }
        }
        Some(Allocation::contiguous(VIRTUAL_TYPE, v, n as u32))
    }

    fn free(&mut self, swap_type: u8, offset: u64, nr: u32) {
        if swap_type == VIRTUAL_TYPE {
            self.vfree(offset, u64::from(nr));
        }
    }

    fn virtual_slots(&self) -> bool {
        true
    }

    fn physical_contiguity(&self) -> Option<f64> {
        Vswap::physical_contiguity(self)
    }

    fn wants_writeouts(&self) -> bool {
        true
    }

    fn writeout(&mut self, swap_type: u8, offset: u64, nr: u32) {
        if swap_type != VIRTUAL_TYPE || nr == 0 {
            return;
        }
        self.lazy = true;
        let n = u64::from(nr);
        let end = offset.saturating_add(n);
        let todo = (offset..end)
            .filter(|&s| self.live_slot(s) && self.physical_of(s).is_none())
            .count() as u64;
        if todo == 0 {
            self.stats.rewrites += 1;
            return;
        }
        if todo == n && n.is_power_of_two() && offset.is_multiple_of(n) && n <= CL {
            let k = n.trailing_zeros() as u8;
            if let Some(a) = self.phys.alloc(0, k) {
                self.back(offset, &a.extents);
                return;
            }
        }
        // Page by page: a partly backed run, or fewer free slots than the folio has pages.
        let mut got = 0u64;
        for s in offset..end {
            if !self.live_slot(s) || self.physical_of(s).is_some() {
                continue;
            }
            match self.phys.alloc(0, 0) {
                Some(a) => {
                    for e in &a.extents {
                        self.set_fwd(s, pack(e.swap_type, e.offset));
                    }
                    self.backed += 1;
                    self.stats.pages_backed += 1;
                    got += 1;
                }
                None => self.stats.unbacked_pages += 1,
            }
        }
        if todo == n && n > 1 && got == n {
            self.stats.large += 1;
        }
    }

    fn snapshot(&self) -> ModelSnapshot {
        let mut s = self.phys.snapshot();
        s.metadata_bytes = VTABLE_BYTES * self.live + RMAP_BYTES * self.backed;
        s
    }

    fn cluster_map(&self, swap_type: u8, out: &mut Vec<ClusterCell>) -> bool {
        self.phys.cluster_map(swap_type, out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testkit::dev;

    fn one(m: &mut Vswap, order: u8) -> Option<u64> {
        let a = m.alloc(0, order)?;
        assert_eq!(a.extents.len(), 1);
        let e = a.extents.first().copied()?;
        assert_eq!(e.swap_type, VIRTUAL_TYPE);
        assert_eq!(u64::from(e.nr), 1 << order);
        assert_eq!(e.offset % (1 << order), 0, "aligned virtual slots");
        Some(e.offset)
    }

    fn with_dev(max: u64) -> Vswap {
        let mut m = Vswap::new();
        m.swapon(&dev(0, max, vec![]));
        m
    }

    #[test]
    fn eager_until_the_first_writeout_then_lazy() {
        let mut m = with_dev(4 * CL);
        let Some(a) = one(&mut m, 4) else {
            panic!("order 4 on an empty device")
        };
        assert!(!m.is_lazy());
        assert_eq!(m.snapshot().used_slots, 16, "eager: backed at request time");
        assert!((0..16).all(|i| m.physical_of(a + i).is_some()));
        // The first write-out switches to lazy, and does not back the folio again.
        m.writeout(VIRTUAL_TYPE, a, 16);
        assert!(m.is_lazy());
        assert_eq!(m.snapshot().used_slots, 16);
        assert_eq!(m.writeout_stats().rewrites, 1);
        let Some(b) = one(&mut m, 4) else {
            panic!("order 4")
        };
        assert_eq!(
            m.snapshot().used_slots,
            16,
            "lazy: nothing taken at request time"
        );
        assert_eq!(m.physical_of(b), None);
        assert_eq!(
            m.snapshot().metadata_bytes,
            32 * VTABLE_BYTES + 16 * RMAP_BYTES
        );
        m.writeout(VIRTUAL_TYPE, b, 16);
        assert_eq!(m.snapshot().used_slots, 32);
        assert_eq!(
            m.snapshot().metadata_bytes,
            32 * (VTABLE_BYTES + RMAP_BYTES)
        );
        assert_eq!(m.physical_contiguity(), Some(1.0));
    }

    #[test]
    fn no_virtual_slot_is_backed_twice() {
        let mut m = with_dev(4 * CL);
        m.writeout(VIRTUAL_TYPE, 1, 1); // nothing live there: only switches to lazy
        assert_eq!(m.writeout_stats().rewrites, 1);
        let Some(a) = one(&mut m, 4) else {
            panic!("order 4")
        };
        m.writeout(VIRTUAL_TYPE, a + 4, 4); // part of the folio first (page by page)
        m.writeout(VIRTUAL_TYPE, a, 16); // then the whole: only the other 12 pages
        m.writeout(VIRTUAL_TYPE, a, 16);
        assert_eq!(m.snapshot().used_slots, 16);
        let mut phys: Vec<_> = (0..16).filter_map(|i| m.physical_of(a + i)).collect();
        phys.sort_unstable();
        phys.dedup();
        assert_eq!(phys.len(), 16, "16 distinct physical slots");
        assert_eq!(m.writeout_stats().pages_backed, 16);
        // The 4-page run counts as one large write-out; the partly backed folio does not.
        assert_eq!(m.writeout_stats().large, 1);
    }

    #[test]
    fn frees_release_virtual_and_physical() {
        let mut m = with_dev(4 * CL);
        let (Some(a), Some(b)) = (one(&mut m, 4), one(&mut m, 0)) else {
            panic!("two requests")
        };
        m.writeout(VIRTUAL_TYPE, b, 1);
        let Some(c) = one(&mut m, 2) else {
            panic!("order 2")
        };
        assert_eq!(m.snapshot().used_slots, 17);
        assert_eq!(m.live_virtual(), 21);
        // Part of the large folio, then the unbacked one, then the rest.
        m.free(VIRTUAL_TYPE, a + 3, 5);
        assert_eq!(m.snapshot().used_slots, 12);
        m.free(VIRTUAL_TYPE, c, 4);
        assert_eq!(m.live_virtual(), 12);
        m.free(VIRTUAL_TYPE, a, 16);
        m.free(VIRTUAL_TYPE, b, 1);
        m.free(VIRTUAL_TYPE, b, 1); // twice: ignored
        let s = m.snapshot();
        assert_eq!(
            (s.used_slots, s.metadata_bytes, m.live_virtual()),
            (0, 0, 0)
        );
        // The virtual clusters are empty again: order 9 fits in one.
        assert!(one(&mut m, 9).is_some());
    }

    #[test]
    fn discontiguous_physical_on_a_fragmented_device() {
        // Two clusters (1023 usable slots). Fill with order 0, free every other slot.
        let mut m = with_dev(2 * CL);
        let mut v = Vec::new();
        while let Some(s) = one(&mut m, 0) {
            v.push(s);
        }
        assert_eq!(v.len(), 1023);
        for s in v.iter().step_by(2) {
            m.free(VIRTUAL_TYPE, *s, 1);
        }
        let s = m.snapshot();
        assert!(s.fragmentation_by_order[1] > 0.99, "no free aligned pair");
        m.writeout(VIRTUAL_TYPE, 0, 1); // switch to lazy
        let Some(a) = one(&mut m, 4) else {
            panic!("512 free physical slots, order 4 must be served")
        };
        m.writeout(VIRTUAL_TYPE, a, 16);
        let pages: Vec<_> = (0..16).filter_map(|i| m.physical_of(a + i)).collect();
        assert_eq!(pages.len(), 16);
        assert!(
            pages.windows(2).any(|w| w[0].1 + 1 != w[1].1),
            "discontiguous: {pages:?}"
        );
        assert_eq!(m.writeout_stats().large, 1);
        assert_eq!(m.writeout_stats().contiguous, 0);
        assert_eq!(m.physical_contiguity(), Some(0.0));
        // A linux-6.10-style allocator would have refused this folio: the request itself was
        // served (virtual slots), only its physical backing is scattered.
        assert_eq!(
            m.snapshot().metadata_bytes,
            m.live_virtual() * VTABLE_BYTES + m.backed() * RMAP_BYTES
        );
    }

    #[test]
    fn refuses_only_when_the_device_is_exhausted() {
        let mut m = with_dev(CL + 1); // 512 usable
        assert_eq!(m.virtual_capacity(), 2 * CL - 1);
        for _ in 0..32 {
            assert!(one(&mut m, 4).is_some());
        }
        assert_eq!(one(&mut m, 0), None, "eager: the device is full");
        m.writeout(VIRTUAL_TYPE, 1, 1);
        assert_eq!(one(&mut m, 0), None, "lazy: no free physical slot either");
        m.free(VIRTUAL_TYPE, 0, 16 * 32 + 512);
        assert_eq!(m.live_virtual(), 0);
        // Lazy and empty: requests beyond what is written out are virtual only, and the virtual
        // space grows past the device's size.
        for _ in 0..400 {
            assert!(one(&mut m, 4).is_some());
        }
        assert_eq!(m.snapshot().used_slots, 0);
        assert_eq!(m.snapshot().metadata_bytes, 6400 * VTABLE_BYTES);
        assert!(m.virtual_capacity() >= 6400);
    }

    #[test]
    fn metadata_counts_both_tables() {
        let mut m = with_dev(8 * CL);
        for order in [0u8, 2, 4, 9] {
            assert!(one(&mut m, order).is_some(), "order {order}");
        }
        let n = 1 + 4 + 16 + 512;
        assert_eq!(m.snapshot().metadata_bytes, n * (VTABLE_BYTES + RMAP_BYTES));
        assert_eq!(m.physical_contiguity(), Some(1.0));
        assert_eq!(m.writeout_stats().large, 3);
    }
}
