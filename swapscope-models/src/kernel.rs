//! State shared by the kernel allocator models (`linux-6.10`, `rr-scan`, `linux-6.12`,
//! `linux-6.14`, `linux-6.18`): the per-device slot map (`swap_map`, one bit per slot here), the
//! cluster table (`struct swap_cluster_info`: count, order, list) with intrusive FIFO lists, and
//! the priority list of available devices (`swap_avail_heads`, one NUMA node).
//!
//! Every slot a model hands out stays "in use" until the stream frees it: the stream does not
//! say which slots are cache-only (`swap_map == SWAP_HAS_CACHE`), so allocation-time reclaim
//! (`cluster_reclaim_range`, `swap_reclaim_full_clusters`) never frees anything here.

use swapscope_core::alloc::frag::{FragStats, UsedBitmap};
use swapscope_core::alloc::{
    CLUSTER_SLOTS, ClusterCell, ClusterCounts, ClusterList, Cpus, Extent, ModelSnapshot, NR_ORDERS,
};
use swapscope_core::event::{SwapOn, swap_flags};

pub(crate) const CL: u64 = CLUSTER_SLOTS;
const NIL: u32 = u32::MAX;
const OFF_LIST: u8 = u8::MAX;
const NR_LISTS: usize = 3 + 2 * NR_ORDERS;

/// When a cluster freed on a `SWP_PAGE_DISCARD` device comes back from the discard list.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum DiscardTiming {
    /// The discard worker (`swap_discard_work`) runs before the next allocation request: the
    /// cluster is on the discard list only between a free and the next request.
    #[default]
    BeforeNextAlloc,
    /// The worker never runs on its own; only the allocator's synchronous discard (when it has
    /// no other way to serve a request) returns clusters. Useful to study the discard list.
    OnDemand,
}

/// A cluster list (`struct list_head` in `swap_info_struct`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum List {
    Free,
    Full,
    Discard,
    Nonfull(u8),
    Frag(u8),
}

impl List {
    fn id(self) -> usize {
        match self {
            List::Free => 0,
            List::Full => 1,
            List::Discard => 2,
            List::Nonfull(o) => 3 + usize::from(o).min(NR_ORDERS - 1),
            List::Frag(o) => 3 + NR_ORDERS + usize::from(o).min(NR_ORDERS - 1),
        }
    }

    fn from_id(id: u8) -> Option<List> {
        let id = usize::from(id);
        Some(match id {
            0 => List::Free,
            1 => List::Full,
            2 => List::Discard,
            _ if id < 3 + NR_ORDERS => List::Nonfull((id - 3) as u8),
            _ if id < NR_LISTS => List::Frag((id - 3 - NR_ORDERS) as u8),
            _ => return None,
        })
    }
}

/// `struct swap_cluster_info` without the lock: 12 bytes per 512 slots.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Cluster {
    /// Slots in use, including header, bad and past-the-end slots (as in the kernel).
    pub count: u16,
    /// Order the cluster is dedicated to (set when allocated from empty).
    pub order: u8,
    list: u8,
    prev: u32,
    next: u32,
}

impl Cluster {
    const fn new() -> Self {
        Cluster {
            count: 0,
            order: 0,
            list: OFF_LIST,
            prev: NIL,
            next: NIL,
        }
    }
}

/// One swap device (`struct swap_info_struct`, allocator fields only).
#[derive(Clone, Debug)]
pub(crate) struct Dev {
    pub ty: u8,
    pub prio: i32,
    pub flags: u32,
    /// `si->max`: slots including the header.
    pub max: u64,
    /// Usable slots (`si->pages`).
    pub pages: u64,
    /// `si->inuse_pages`.
    pub inuse: u64,
    /// Used/unusable bit per slot, `nr_clusters * 512` bits.
    pub map: UsedBitmap,
    pub cl: Vec<Cluster>,
    /// One bit per cluster, set when its count is 512 (for fast slot scans).
    full_bits: Vec<u64>,
    bad: Vec<u64>,
    heads: [u32; NR_LISTS],
    tails: [u32; NR_LISTS],
    lens: [u32; NR_LISTS],
    /// On the avail list (not full).
    pub on_avail: bool,
    /// 6.14+ HDD cursor, `si->global_cluster->next[order]` (0 = none).
    pub global_next: [u64; NR_ORDERS],
    /// ≤6.13 per-device per-CPU cursor, `si->percpu_cluster->next[order]` (0 = none).
    pub pcp_next: Vec<[u64; NR_ORDERS]>,
    /// ≤6.12 per-CPU scan base for the linear order-0 scan (`si->cluster_next_cpu`).
    pub scan_next: Vec<u64>,
    /// ≤6.12 rotational-device cursor (`si->cluster_next`).
    pub legacy_next: u64,
}

impl Dev {
    /// Geometry as `setup_swap_map` / `setup_clusters` build it; no cluster is on a list yet.
    pub fn new(on: &SwapOn) -> Dev {
        let max = on.max.max(1);
        let nr_clusters = max.div_ceil(CL);
        let (map, bad) = UsedBitmap::for_device(on);
        let mut cl = vec![Cluster::new(); nr_clusters as usize];
        for (i, c) in cl.iter_mut().enumerate() {
            c.count = map.count_used(i as u64 * CL, CL) as u16;
        }
        let pages = max - 1 - bad.len() as u64;
        let mut full_bits = vec![0u64; cl.len().div_ceil(64)];
        for (i, c) in cl.iter().enumerate() {
            if u64::from(c.count) >= CL
                && let Some(w) = full_bits.get_mut(i / 64)
            {
                *w |= 1 << (i % 64);
            }
        }
        Dev {
            ty: on.swap_type,
            prio: on.prio,
            flags: on.flags,
            max,
            pages,
            inuse: 0,
            map,
            cl,
            full_bits,
            bad,
            heads: [NIL; NR_LISTS],
            tails: [NIL; NR_LISTS],
            lens: [0; NR_LISTS],
            on_avail: true,
            global_next: [0; NR_ORDERS],
            pcp_next: Vec::new(),
            scan_next: Vec::new(),
            legacy_next: 1,
        }
    }

    pub fn nr_clusters(&self) -> u32 {
        self.cl.len() as u32
    }

    pub fn solidstate(&self) -> bool {
        self.flags & swap_flags::SOLIDSTATE != 0
    }

    pub fn blkdev(&self) -> bool {
        self.flags & swap_flags::BLKDEV != 0
    }

    pub fn page_discard(&self) -> bool {
        self.flags & swap_flags::PAGE_DISCARD != 0
    }

    pub fn count(&self, c: u32) -> u16 {
        self.cl.get(c as usize).map_or(CL as u16, |c| c.count)
    }

    pub fn order(&self, c: u32) -> u8 {
        self.cl.get(c as usize).map_or(0, |c| c.order)
    }

    pub fn set_order(&mut self, c: u32, order: u8) {
        if let Some(c) = self.cl.get_mut(c as usize) {
            c.order = order;
        }
    }

    /// The list a cluster is on.
    pub fn list_of(&self, c: u32) -> Option<List> {
        self.cl.get(c as usize).and_then(|c| List::from_id(c.list))
    }

    pub fn head(&self, l: List) -> Option<u32> {
        let h = *self.heads.get(l.id())?;
        (h != NIL).then_some(h)
    }

    /// How many clusters are ahead of `c` on its list `l` (`None` when `c` is not on `l`), looking
    /// no further than `limit` clusters from the head.
    pub fn position(&self, l: List, c: u32, limit: u32) -> Option<u32> {
        let mut cur = self.head(l)?;
        for i in 0..=limit {
            if cur == c {
                return Some(i);
            }
            cur = self.cl.get(cur as usize).map_or(NIL, |ci| ci.next);
            if cur == NIL {
                return None;
            }
        }
        None
    }

    pub fn len(&self, l: List) -> u32 {
        self.lens.get(l.id()).copied().unwrap_or(0)
    }

    /// `list_del`: takes the cluster off its list (no-op when off-list).
    pub fn unlink(&mut self, c: u32) {
        let Some(&Cluster {
            list, prev, next, ..
        }) = self.cl.get(c as usize)
        else {
            return;
        };
        if list == OFF_LIST {
            return;
        }
        let l = usize::from(list);
        if prev == NIL {
            if let Some(h) = self.heads.get_mut(l) {
                *h = next;
            }
        } else if let Some(p) = self.cl.get_mut(prev as usize) {
            p.next = next;
        }
        if next == NIL {
            if let Some(t) = self.tails.get_mut(l) {
                *t = prev;
            }
        } else if let Some(n) = self.cl.get_mut(next as usize) {
            n.prev = prev;
        }
        if let Some(n) = self.lens.get_mut(l) {
            *n = n.saturating_sub(1);
        }
        if let Some(ci) = self.cl.get_mut(c as usize) {
            ci.list = OFF_LIST;
            ci.prev = NIL;
            ci.next = NIL;
        }
    }

    /// `move_cluster`: append to the tail of `l` (taking it off its current list first).
    pub fn move_tail(&mut self, c: u32, l: List) {
        if c as usize >= self.cl.len() {
            return;
        }
        self.unlink(c);
        let id = l.id();
        let tail = self.tails.get(id).copied().unwrap_or(NIL);
        if tail == NIL {
            if let Some(h) = self.heads.get_mut(id) {
                *h = c;
            }
        } else if let Some(t) = self.cl.get_mut(tail as usize) {
            t.next = c;
        }
        if let Some(t) = self.tails.get_mut(id) {
            *t = c;
        }
        if let Some(n) = self.lens.get_mut(id) {
            *n += 1;
        }
        if let Some(ci) = self.cl.get_mut(c as usize) {
            ci.list = id as u8;
            ci.prev = tail;
            ci.next = NIL;
        }
    }

    /// `isolate_lock_cluster` with a trylock that always succeeds: pops the head.
    pub fn isolate(&mut self, l: List) -> Option<u32> {
        let h = self.head(l)?;
        self.unlink(h);
        Some(h)
    }

    /// `isolate_lock_cluster` where the trylock failed on every cluster ahead of `c` (other CPUs
    /// held them): takes `c` off `l`, if it is on `l`.
    pub fn isolate_at(&mut self, l: List, c: u32) -> Option<u32> {
        if self.list_of(c) != Some(l) {
            return None;
        }
        self.unlink(c);
        Some(c)
    }

    /// Index order, as 6.18's `setup_clusters` fills the lists: clusters with slots in use
    /// (header, bad, tail) go to `nonfull[0]`, the others to `free`.
    pub fn setup_lists_sequential(&mut self) {
        for c in 0..self.nr_clusters() {
            self.setup_one(c, List::Nonfull(0));
        }
    }

    /// 6.10–6.17 order: column-interleaved with `SWAP_CLUSTER_COLS` = 32 on x86-64, starting at
    /// column `cluster_next / 512 % 32` = 0. `partial` is where clusters with slots in use go
    /// (`nonfull[0]` in 6.12; no list in 6.10).
    pub fn setup_lists_interleaved(&mut self, partial: Option<List>) {
        const COLS: u32 = 32;
        let n = self.nr_clusters();
        for j in 0..COLS {
            for i in 0..n.div_ceil(COLS) {
                let idx = i * COLS + j;
                if idx >= n {
                    continue;
                }
                match partial {
                    Some(l) => self.setup_one(idx, l),
                    None if self.count(idx) == 0 => self.move_tail(idx, List::Free),
                    None => {}
                }
            }
        }
    }

    fn setup_one(&mut self, c: u32, partial: List) {
        if self.count(c) > 0 {
            self.move_tail(c, partial);
        } else {
            self.move_tail(c, List::Free);
        }
    }

    /// Marks `off .. off + n` (inside one cluster) allocated: `swap_map` bytes, `ci->count`,
    /// `inuse_pages`. Returns true when the device just became full.
    pub fn alloc_range(&mut self, off: u64, n: u64) -> bool {
        self.map.set_used(off, n);
        let ci = (off / CL) as usize;
        if let Some(c) = self.cl.get_mut(ci) {
            c.count = c.count.saturating_add(n as u16);
            if u64::from(c.count) >= CL
                && let Some(w) = self.full_bits.get_mut(ci / 64)
            {
                *w |= 1 << (ci % 64);
            }
        }
        self.inuse += n;
        self.inuse == self.pages
    }

    /// Frees the allocated slots of `off .. off + n` that lie in the cluster of `off` (header
    /// and bad slots are never freed). Returns the number of slots freed.
    pub fn free_in_cluster(&mut self, off: u64, n: u64) -> u64 {
        let c = off / CL;
        let end = off.saturating_add(n).min((c + 1) * CL).min(self.max);
        let mut off = off.max(1);
        let mut freed = 0u64;
        while off < end {
            // Split around bad slots (rare: only devices with a bad-block list).
            let stop = match self.bad.binary_search(&off) {
                Ok(_) => {
                    off += 1;
                    continue;
                }
                Err(i) => self.bad.get(i).copied().unwrap_or(end).min(end),
            };
            let used = self.map.take_used(off, stop - off);
            freed += used;
            off = stop;
        }
        if let Some(ci) = self.cl.get_mut(c as usize) {
            ci.count = ci.count.saturating_sub(freed as u16);
        }
        if freed > 0
            && let Some(w) = self.full_bits.get_mut(c as usize / 64)
        {
            *w &= !(1 << (c % 64));
        }
        self.inuse = self.inuse.saturating_sub(freed);
        freed
    }

    /// First free slot in `from .. end`, skipping full clusters.
    pub fn find_free_slot(&self, from: u64, end: u64) -> Option<u64> {
        let end = end.min(self.max);
        let mut p = from;
        while p < end {
            let c = (p / CL) as usize;
            // Next cluster at or after `c` that is not full.
            let mut wi = c / 64;
            let mut bits = !self.full_bits.get(wi)? & (!0u64 << (c % 64));
            while bits == 0 {
                wi += 1;
                bits = !*self.full_bits.get(wi)?;
            }
            let nc = (wi * 64) as u64 + u64::from(bits.trailing_zeros());
            p = p.max(nc * CL);
            if p >= end {
                return None;
            }
            let stop = ((nc + 1) * CL).min(end);
            if let Some(s) = self.map.find_free_slot(p, stop) {
                return Some(s);
            }
            p = stop;
        }
        None
    }

    /// `cpu`'s `next[order]` on this device (0: none).
    pub fn cursor(&self, cpu: usize, order: u8) -> u64 {
        self.pcp_next
            .get(cpu)
            .and_then(|p| p.get(usize::from(order)))
            .copied()
            .unwrap_or(0)
    }

    /// Sets `cpu`'s `next[order]` on this device.
    pub fn set_cursor(&mut self, cpu: usize, order: u8, next: u64) {
        self.ensure_cpu(cpu);
        if let Some(p) = self
            .pcp_next
            .get_mut(cpu)
            .and_then(|p| p.get_mut(usize::from(order)))
        {
            *p = next;
        }
    }

    /// Grows the per-device per-CPU arrays to hold `cpu`.
    pub fn ensure_cpu(&mut self, cpu: usize) {
        if self.pcp_next.len() <= cpu {
            self.pcp_next.resize(cpu + 1, [0; NR_ORDERS]);
            self.scan_next.resize(cpu + 1, 1);
        }
    }

    /// Cluster counts by list; `classify` overrides the bucket of off-list clusters.
    /// The state of cluster `c` for reports and maps; `off_list_by_count` classifies an
    /// off-list cluster (one being allocated from) by its count instead of as `other`.
    fn cluster_list(c: &Cluster, off_list_by_count: bool) -> ClusterList {
        match List::from_id(c.list) {
            Some(List::Free) => ClusterList::Free,
            Some(List::Nonfull(_)) => ClusterList::Nonfull,
            Some(List::Frag(_)) => ClusterList::Frag,
            Some(List::Full) => ClusterList::Full,
            Some(List::Discard) => ClusterList::Discard,
            None if off_list_by_count => {
                if u64::from(c.count) >= CL {
                    ClusterList::Full
                } else if c.count == 0 {
                    ClusterList::Free
                } else {
                    ClusterList::Nonfull
                }
            }
            None => ClusterList::Other,
        }
    }

    pub fn add_cluster_counts(&self, counts: &mut ClusterCounts, off_list_by_count: bool) {
        for c in &self.cl {
            counts.add(Self::cluster_list(c, off_list_by_count));
        }
    }

    /// The device map: count, order and list of every cluster.
    pub fn cluster_cells(&self, out: &mut Vec<ClusterCell>) {
        out.extend(self.cl.iter().map(|c| {
            let list = Self::cluster_list(c, true);
            ClusterCell {
                used: c.count,
                order: (list != ClusterList::Free).then_some(c.order),
                list,
                last: None,
            }
        }));
    }
}

/// The devices of one model and the avail priority list (`swap_avail_heads[node]`, one node;
/// priorities are used as given, without the NUMA-local boost of negative priorities).
#[derive(Clone, Debug, Default)]
pub(crate) struct Devs {
    devs: Vec<Option<Dev>>,
    /// Types on the avail list, best priority first; equal priorities in requeue order.
    avail: Vec<u8>,
    /// Scratch copy of `avail` for iteration.
    scratch: Vec<u8>,
    /// `total_swap_pages`.
    pub total_pages: u64,
    /// `total_swap_pages - nr_swap_pages`.
    pub inuse: u64,
}

/// A slot hidden from one decision ([`AllocatorModel::hide_free`]): (type, slot, its cluster's
/// list when it was hidden).
pub(crate) type HiddenSlot = (u8, u64, Option<List>);

impl Devs {
    /// Marks the free slots of `off .. off + n` (one cluster) used, without moving the cluster:
    /// it stays where the free put it, as the kernel's lists had it by the time of the decision.
    /// A cluster on the free or discard list is left alone, and an empty one unless `empty` (a
    /// model that took it off the free list first). Each slot hidden goes to `hidden`, for the
    /// model's `unhide_all`.
    pub fn hide_slots(
        &mut self,
        ty: u8,
        off: u64,
        n: u64,
        empty: bool,
        hidden: &mut Vec<HiddenSlot>,
    ) {
        let Some(d) = self.get_mut(ty) else {
            return;
        };
        let c = (off / CL) as u32;
        if (d.count(c) == 0 && !empty) || matches!(d.list_of(c), Some(List::Free | List::Discard)) {
            return;
        }
        let end = off
            .saturating_add(n)
            .min((u64::from(c) + 1) * CL)
            .min(d.max);
        let mut hid = 0;
        let mut became_full = false;
        for s in off.max(1)..end {
            if !d.map.is_used(s) {
                became_full |= d.alloc_range(s, 1);
                hidden.push((ty, s, d.list_of(c)));
                hid += 1;
            }
        }
        if hid > 0 {
            self.note_alloc(ty, hid, became_full);
        }
    }
}

impl Devs {
    pub fn get(&self, ty: u8) -> Option<&Dev> {
        self.devs.get(usize::from(ty)).and_then(Option::as_ref)
    }

    pub fn get_mut(&mut self, ty: u8) -> Option<&mut Dev> {
        self.devs.get_mut(usize::from(ty)).and_then(Option::as_mut)
    }

    pub fn iter(&self) -> impl Iterator<Item = &Dev> {
        self.devs.iter().flatten()
    }

    /// Adds a device (replacing one of the same type) and puts it on the avail list.
    pub fn add(&mut self, dev: Dev) {
        let ty = dev.ty;
        self.remove(ty);
        let idx = usize::from(ty);
        if self.devs.len() <= idx {
            self.devs.resize_with(idx + 1, || None);
        }
        self.total_pages += dev.pages;
        if let Some(slot) = self.devs.get_mut(idx) {
            *slot = Some(dev);
        }
        self.add_avail(ty);
    }

    /// Removes a device; its slots stop counting.
    pub fn remove(&mut self, ty: u8) -> Option<Dev> {
        let dev = self.devs.get_mut(usize::from(ty))?.take()?;
        self.avail.retain(|&t| t != ty);
        self.total_pages = self.total_pages.saturating_sub(dev.pages);
        self.inuse = self.inuse.saturating_sub(dev.inuse);
        Some(dev)
    }

    /// `vm_swap_full()`: more than half of all swap in use.
    pub fn vm_swap_full(&self) -> bool {
        (self.total_pages - self.inuse.min(self.total_pages)) * 2 < self.total_pages
    }

    /// `plist_add`: after every device of the same or better priority.
    pub fn add_avail(&mut self, ty: u8) {
        let Some(prio) = self.get(ty).map(|d| d.prio) else {
            return;
        };
        if self.avail.contains(&ty) {
            return;
        }
        let pos = self
            .avail
            .iter()
            .position(|&t| self.get(t).is_some_and(|d| d.prio < prio))
            .unwrap_or(self.avail.len());
        self.avail.insert(pos, ty);
        if let Some(d) = self.get_mut(ty) {
            d.on_avail = true;
        }
    }

    /// `del_from_avail_list`.
    pub fn del_avail(&mut self, ty: u8) {
        self.avail.retain(|&t| t != ty);
        if let Some(d) = self.get_mut(ty) {
            d.on_avail = false;
        }
    }

    /// `plist_requeue`: behind its same-priority siblings.
    pub fn requeue(&mut self, ty: u8) {
        if self.avail.contains(&ty) {
            self.avail.retain(|&t| t != ty);
            self.on_avail_reinsert(ty);
        }
    }

    fn on_avail_reinsert(&mut self, ty: u8) {
        let Some(prio) = self.get(ty).map(|d| d.prio) else {
            return;
        };
        let pos = self
            .avail
            .iter()
            .position(|&t| self.get(t).is_some_and(|d| d.prio < prio))
            .unwrap_or(self.avail.len());
        self.avail.insert(pos, ty);
    }

    /// A copy of the avail list to iterate over while devices are requeued (no allocation once
    /// warmed up: the caller hands it back with [`Devs::put_avail_snapshot`]).
    pub fn avail_snapshot(&mut self) -> Vec<u8> {
        let mut s = std::mem::take(&mut self.scratch);
        s.clear();
        s.extend_from_slice(&self.avail);
        s
    }

    pub fn put_avail_snapshot(&mut self, s: Vec<u8>) {
        self.scratch = s;
    }

    /// Bookkeeping after `alloc_range` (`swap_range_alloc`): global usage, full devices leave
    /// the avail list.
    pub fn note_alloc(&mut self, ty: u8, n: u64, became_full: bool) {
        self.inuse += n;
        if became_full {
            self.del_avail(ty);
        }
    }

    /// Bookkeeping after a free (`swap_range_free`): a device that was full comes back.
    pub fn note_free(&mut self, ty: u8, n: u64) {
        self.inuse = self.inuse.saturating_sub(n);
        if n > 0 && self.get(ty).is_some_and(|d| !d.on_avail) {
            self.add_avail(ty);
        }
    }

    /// Occupancy summary shared by the kernel models.
    pub fn snapshot(&self, off_list_by_count: bool) -> ModelSnapshot {
        let mut frag = FragStats::default();
        let mut clusters = ClusterCounts::default();
        let mut total = 0;
        let mut used = 0;
        for d in self.iter() {
            frag.add(&d.map);
            d.add_cluster_counts(&mut clusters, off_list_by_count);
            total += d.pages;
            used += d.inuse;
        }
        ModelSnapshot {
            total_slots: total,
            used_slots: used,
            clusters,
            largest_free_run: frag.largest_free_run,
            fragmentation_by_order: frag.fragmentation_by_order(),
            metadata_bytes: 0,
        }
    }
}

#[cfg(test)]
impl Devs {
    /// Checks the bookkeeping of every device: per-cluster counts equal the slot bits, list
    /// links and lengths agree, usage sums agree, and `cluster_ok(dev, cluster, list)` holds.
    pub fn check(
        &self,
        cluster_ok: impl Fn(&Dev, u32, Option<List>) -> bool,
    ) -> Result<(), String> {
        let mut inuse = 0;
        let mut total = 0;
        for d in self.iter() {
            let mut used = 0;
            for c in 0..d.nr_clusters() {
                let bits = d.map.count_used(u64::from(c) * CL, CL);
                if bits != u64::from(d.count(c)) {
                    return Err(format!(
                        "dev {} cluster {c}: count {} bits {bits}",
                        d.ty,
                        d.count(c)
                    ));
                }
                used += bits;
                if !cluster_ok(d, c, d.list_of(c)) {
                    return Err(format!(
                        "dev {} cluster {c}: count {} order {} on {:?}",
                        d.ty,
                        d.count(c),
                        d.order(c),
                        d.list_of(c)
                    ));
                }
            }
            let reserved = d.nr_clusters() as u64 * CL - d.pages;
            if used != d.inuse + reserved {
                return Err(format!(
                    "dev {}: inuse {} + reserved {reserved} != used {used}",
                    d.ty, d.inuse
                ));
            }
            for id in 0..NR_LISTS {
                let mut n = 0;
                let mut prev = NIL;
                let mut cur = d.heads[id];
                while cur != NIL {
                    let ci = d.cl.get(cur as usize).ok_or("bad link")?;
                    if usize::from(ci.list) != id || ci.prev != prev {
                        return Err(format!("dev {} list {id}: bad links at {cur}", d.ty));
                    }
                    prev = cur;
                    cur = ci.next;
                    n += 1;
                }
                if n != d.lens[id] || d.tails[id] != prev {
                    return Err(format!(
                        "dev {} list {id}: len {} walked {n}",
                        d.ty, d.lens[id]
                    ));
                }
            }
            if d.on_avail == (d.inuse >= d.pages) && d.pages > 0 {
                return Err(format!(
                    "dev {}: on_avail {} inuse {} pages {}",
                    d.ty, d.on_avail, d.inuse, d.pages
                ));
            }
            inuse += d.inuse;
            total += d.pages;
        }
        if inuse != self.inuse || total != self.total_pages {
            return Err(format!(
                "global inuse {} vs {inuse}, total {} vs {total}",
                self.inuse, self.total_pages
            ));
        }
        Ok(())
    }
}

/// Splits a free of `off .. off + n` at cluster boundaries.
pub(crate) fn for_each_cluster_piece(off: u64, n: u32, mut f: impl FnMut(u64, u64)) {
    let end = off.saturating_add(u64::from(n));
    let mut o = off;
    while o < end {
        let stop = ((o / CL) + 1) * CL;
        let stop = stop.min(end);
        f(o, stop - o);
        o = stop;
    }
}

/// Pushes one contiguous extent.
#[inline]
pub(crate) fn push_extent(out: &mut Vec<Extent>, ty: u8, off: u64, order: u8) {
    out.push(Extent {
        swap_type: ty,
        offset: off,
        nr: 1u32 << order,
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    fn on(max: u64, bad: Vec<u64>) -> SwapOn {
        SwapOn {
            ts_ns: 0,
            swap_type: 0,
            max,
            bad,
            flags: 0,
            prio: 0,
        }
    }

    #[test]
    fn geometry_counts_header_bad_and_tail() {
        let d = Dev::new(&on(1000, vec![5, 700, 5, 0, 2000]));
        assert_eq!(d.nr_clusters(), 2);
        assert_eq!(d.pages, 1000 - 1 - 2);
        assert_eq!(d.count(0), 2); // header + 5
        assert_eq!(d.count(1), 1 + 24); // 700 + tail 1000..1024
    }

    #[test]
    fn lists_are_fifo() {
        let mut d = Dev::new(&on(4096, vec![]));
        d.setup_lists_sequential();
        assert_eq!(d.head(List::Nonfull(0)), Some(0));
        assert_eq!(d.len(List::Free), 7);
        assert_eq!(d.isolate(List::Free), Some(1));
        d.move_tail(1, List::Frag(4));
        d.move_tail(2, List::Frag(4));
        d.move_tail(1, List::Frag(4));
        assert_eq!(d.head(List::Frag(4)), Some(2));
        assert_eq!(d.len(List::Frag(4)), 2);
        assert_eq!(d.list_of(1), Some(List::Frag(4)));
        d.unlink(1);
        d.unlink(2);
        assert_eq!(d.head(List::Frag(4)), None);
        assert_eq!(d.len(List::Free), 5);
    }

    #[test]
    fn interleaved_setup_order() {
        let mut d = Dev::new(&on(64 * 512, vec![]));
        d.setup_lists_interleaved(Some(List::Nonfull(0)));
        assert_eq!(d.head(List::Nonfull(0)), Some(0));
        assert_eq!(d.isolate(List::Free), Some(32));
        assert_eq!(d.isolate(List::Free), Some(1));
        assert_eq!(d.isolate(List::Free), Some(33));
    }

    #[test]
    fn avail_priority_and_requeue() {
        let mut devs = Devs::default();
        for (t, p) in [(0u8, 5), (1, 10), (2, 5)] {
            let mut o = on(1024, vec![]);
            o.swap_type = t;
            o.prio = p;
            devs.add(Dev::new(&o));
        }
        assert_eq!(devs.avail, vec![1, 0, 2]);
        devs.requeue(0);
        assert_eq!(devs.avail, vec![1, 2, 0]);
        devs.del_avail(1);
        devs.add_avail(1);
        assert_eq!(devs.avail, vec![1, 2, 0]);
    }
}

/// What differs between the kernel models. `AllocatorModel` is implemented once for all of them
/// below; each model supplies its request path, its free path and its per-device set-up.
pub(crate) trait KernelAllocator: Send {
    /// The model's report name.
    const MODEL_NAME: &'static str;
    fn devs(&self) -> &Devs;
    /// swapon: set the device's lists up the way this kernel does, and add it.
    fn add_device(&mut self, dev: &SwapOn);
    /// swapoff: drop per-CPU state that points at the device, and remove it.
    fn remove_device(&mut self, swap_type: u8);
    /// `num_online_cpus()` of the recorded host (see [`AllocatorModel::set_online_cpus`]).
    fn online_cpus(&mut self, _n: u32) {}
    /// See [`AllocatorModel::kernel_isolated`].
    fn isolated_by_kernel(&mut self, _cpu: u32, _swap_type: u8, _cluster: u32) {}
    /// See [`AllocatorModel::steered_isolations`].
    fn steered(&self) -> Option<u64> {
        None
    }
    /// See [`AllocatorModel::follow_kernel`].
    fn follow(
        &mut self,
        _cpus: Cpus,
        _order: u8,
        _ours: Option<(u8, u64)>,
        _kernel: Option<(u8, u64)>,
    ) -> bool {
        false
    }
    /// One request for 2^order slots: `(type, offset)` or `None`.
    fn request(&mut self, order: u8, cpu: u32) -> Option<(u8, u64)>;
    /// [`request`](Self::request) entered on one CPU and decided on another (see [`Cpus`]).
    fn request_from(&mut self, order: u8, cpus: Cpus) -> Option<(u8, u64)> {
        self.request(order, cpus.decided)
    }
    /// See [`AllocatorModel::kernel_batch`].
    fn kernel_batch(&mut self, _cpus: Cpus, _swap_type: u8, _slots: &[u64]) -> bool {
        false
    }
    /// See [`AllocatorModel::interleaved`].
    fn interleaved(&mut self, _cpus: Cpus, _order: u8, _earlier: u32, _kernel: (u8, u64)) -> bool {
        false
    }
    /// Frees `n` slots from `off`, all within one cluster.
    fn free_piece(&mut self, ty: u8, off: u64, n: u64);
    /// See [`AllocatorModel::hide_free`].
    fn hide(&mut self, _ty: u8, _off: u64, _n: u64) {}
    /// See [`AllocatorModel::hide_free_if_emptied`].
    fn hide_if_emptied(&mut self, _ty: u8, _off: u64, _n: u64) {}
    /// See [`AllocatorModel::unhide`].
    fn unhide_all(&mut self, _kernel_list: &dyn Fn(u8, u32) -> Option<(u8, u8)>) {}
}

/// `AllocatorModel` for a [`KernelAllocator`]: one impl per model type (the trait is the core's,
/// so a blanket impl over every `KernelAllocator` would break the orphan rule).
macro_rules! kernel_model {
    ($t:ty) => { $crate::kernel::kernel_model!(@ [] $t); };
    (@ $g:ident: $b:path; $t:ty) => { $crate::kernel::kernel_model!(@ [$g: $b] $t); };
    (@ [$($g:ident: $b:path)?] $t:ty) => {
        const _: () = {
        use swapscope_core::alloc::{Allocation, AllocatorModel, ClusterCell, Cpus, Extent, ModelSnapshot};
        use swapscope_core::event::SwapOn;
        use $crate::kernel::{KernelAllocator, for_each_cluster_piece, push_extent};
        impl$(<$g: $b>)? AllocatorModel for $t {
            fn name(&self) -> &'static str {
                <Self as $crate::kernel::KernelAllocator>::MODEL_NAME
            }

            fn swapon(&mut self, dev: &SwapOn) {
                KernelAllocator::add_device(self, dev);
            }

            fn swapoff(&mut self, swap_type: u8) {
                KernelAllocator::remove_device(self, swap_type);
            }

            fn set_online_cpus(&mut self, n: u32) {
                KernelAllocator::online_cpus(self, n);
            }

            fn kernel_isolated(&mut self, cpu: u32, swap_type: u8, cluster: u32) {
                KernelAllocator::isolated_by_kernel(self, cpu, swap_type, cluster);
            }

            fn steered_isolations(&self) -> Option<u64> {
                KernelAllocator::steered(self)
            }

            fn follow_kernel(
                &mut self,
                cpus: Cpus,
                order: u8,
                ours: Option<(u8, u64)>,
                kernel: Option<(u8, u64)>,
            ) -> bool {
                KernelAllocator::follow(self, cpus, order, ours, kernel)
            }

            fn kernel_batch(&mut self, cpus: Cpus, swap_type: u8, slots: &[u64]) -> bool {
                KernelAllocator::kernel_batch(self, cpus, swap_type, slots)
            }

            fn interleaved(
                &mut self,
                cpus: Cpus,
                order: u8,
                earlier: u32,
                kernel: (u8, u64),
            ) -> bool {
                KernelAllocator::interleaved(self, cpus, order, earlier, kernel)
            }

            fn hide_free(&mut self, swap_type: u8, offset: u64, nr: u32) {
                KernelAllocator::hide(self, swap_type, offset, u64::from(nr));
            }

            fn hide_free_if_emptied(&mut self, swap_type: u8, offset: u64, nr: u32) {
                KernelAllocator::hide_if_emptied(self, swap_type, offset, u64::from(nr));
            }

            fn unhide(&mut self, kernel_list: &dyn Fn(u8, u32) -> Option<(u8, u8)>) {
                KernelAllocator::unhide_all(self, kernel_list);
            }

            fn alloc_from(&mut self, cpus: Cpus, order: u8, out: &mut Vec<Extent>) -> bool {
                match KernelAllocator::request_from(self, order, cpus) {
                    Some((ty, off)) => {
                        push_extent(out, ty, off, order);
                        true
                    }
                    None => false,
                }
            }

            fn alloc(&mut self, cpu: u32, order: u8) -> Option<Allocation> {
                let mut v = Vec::with_capacity(1);
                AllocatorModel::alloc_into(self, cpu, order, &mut v)
                    .then_some(Allocation { extents: v })
            }

            fn alloc_into(&mut self, cpu: u32, order: u8, out: &mut Vec<Extent>) -> bool {
                match KernelAllocator::request(self, order, cpu) {
                    Some((ty, off)) => {
                        push_extent(out, ty, off, order);
                        true
                    }
                    None => false,
                }
            }

            fn free(&mut self, swap_type: u8, offset: u64, nr: u32) {
                for_each_cluster_piece(offset, nr, |o, n| KernelAllocator::free_piece(self, swap_type, o, n));
            }

            fn snapshot(&self) -> ModelSnapshot {
                KernelAllocator::devs(self).snapshot(true)
            }

            fn cluster_map(&self, swap_type: u8, out: &mut Vec<ClusterCell>) -> bool {
                match KernelAllocator::devs(self).get(swap_type) {
                    Some(d) => {
                        d.cluster_cells(out);
                        true
                    }
                    None => false,
                }
            }
        }
        };
    };
}
pub(crate) use kernel_model;

/// Test helpers shared by the kernel models' unit tests.
#[cfg(test)]
pub(crate) mod testutil {
    use super::CL;
    use swapscope_core::{alloc::AllocatorModel, event::SwapOn};

    /// A device of `clusters` 512-slot clusters.
    pub fn on(ty: u8, clusters: u64, flags: u32) -> SwapOn {
        SwapOn {
            ts_ns: 0,
            swap_type: ty,
            max: clusters * CL,
            bad: vec![],
            flags,
            prio: 0,
        }
    }

    /// The first slot of one request, if served.
    pub fn one(m: &mut impl AllocatorModel, cpu: u32, order: u8) -> Option<u64> {
        m.alloc(cpu, order)
            .and_then(|a| a.extents.first().map(|e| e.offset))
    }
}
