//! The real occupancy, rebuilt from the stream's `Success` results and frees: a slot bitmap and
//! per-cluster counts per device. Where the stream carries cluster events (full tier, 6.14+:
//! `move_cluster`, `isolate_lock_cluster`) each cluster's list is the one the kernel put it on;
//! otherwise it is derived from the count (`free`, `full`, or `partial` when partly used).

use crate::alloc::frag::{FragStats, UsedBitmap};
use crate::alloc::{CLUSTER_SLOTS, ClusterCell, ClusterCounts, ClusterList, ModelSnapshot};
use crate::event::{ClusterMove, cluster_list};

/// No allocation seen in a cluster yet.
const NONE: u8 = u8::MAX;
use crate::event::SwapOn;

#[derive(Clone, Debug)]
struct RealDev {
    pages: u64,
    inuse: u64,
    map: UsedBitmap,
    counts: Vec<u16>,
    /// Per cluster: order of the latest allocation in it (`NONE` if none yet), and its slot
    /// within the cluster.
    orders: Vec<u8>,
    last: Vec<u16>,
    /// Header and bad slots (never freed by the stream).
    reserved: UsedBitmap,
    /// Whether any slot besides the header is reserved (a bad-block list).
    has_bad: bool,
    /// Per cluster: the list the kernel last put it on (a `cluster_list` code;
    /// `cluster_list::UNKNOWN` until a cluster event names it), and the order it serves.
    lists: Vec<u8>,
    list_orders: Vec<u8>,
    /// Clusters with no slot in use (kept as counts change).
    empty: u64,
}

/// Per-device real slot maps.
#[derive(Clone, Debug, Default)]
pub struct RealOccupancy {
    devs: Vec<Option<RealDev>>,
    /// Slots the stream allocated that were already in use (a free was missed).
    pub double_allocs: u64,
    /// Slots the stream freed that were not in use (allocated before the stream began).
    pub unmatched_frees: u64,
    /// Allocations on devices the stream never announced.
    pub unknown_device_allocs: u64,
    /// Cluster events seen, and those whose previous list (the kernel's `ci->flags`, or for an
    /// isolation "on some list") could be checked against the list the stream last put the
    /// cluster on; a mismatch means a list move was not seen (a hook inlined at some call site).
    pub cluster_events: u64,
    pub cluster_checks: u64,
    pub cluster_mismatches: u64,
}

impl RealOccupancy {
    pub fn swapon(&mut self, on: &SwapOn) {
        let max = on.max.max(1);
        let nr = max.div_ceil(CLUSTER_SLOTS);
        let (map, bad) = UsedBitmap::for_device(on);
        let mut reserved = UsedBitmap::new_free(max);
        reserved.set_used(0, 1);
        for &b in &bad {
            reserved.set_used(b, 1);
        }
        let counts: Vec<u16> = (0..nr)
            .map(|c| map.count_used(c * CLUSTER_SLOTS, CLUSTER_SLOTS) as u16)
            .collect();
        let bad = bad.len() as u64;
        let empty = counts.iter().filter(|&&c| c == 0).count() as u64;
        let dev = RealDev {
            empty,
            pages: max - 1 - bad,
            inuse: 0,
            map,
            orders: vec![NONE; counts.len()],
            last: vec![0; counts.len()],
            lists: vec![cluster_list::UNKNOWN; counts.len()],
            list_orders: vec![0; counts.len()],
            counts,
            reserved,
            has_bad: on.bad.iter().any(|&b| b != 0 && b < max),
        };
        let i = usize::from(on.swap_type);
        if self.devs.len() <= i {
            self.devs.resize_with(i + 1, || None);
        }
        if let Some(d) = self.devs.get_mut(i) {
            *d = Some(dev);
        }
    }

    pub fn swapoff(&mut self, swap_type: u8) {
        if let Some(d) = self.devs.get_mut(usize::from(swap_type)) {
            *d = None;
        }
    }

    /// Slots in use on a device (`inuse_pages`), if the device is known.
    pub fn inuse(&self, swap_type: u8) -> Option<u64> {
        self.dev(swap_type).map(|d| d.inuse)
    }

    fn dev(&self, t: u8) -> Option<&RealDev> {
        self.devs.get(usize::from(t)).and_then(Option::as_ref)
    }

    /// Whether slots `offset .. offset + n` of a known device are all free.
    pub fn is_free(&self, swap_type: u8, offset: u64, n: u64) -> bool {
        self.dev(swap_type).is_some_and(|d| {
            offset.saturating_add(n) <= d.map.len() && d.map.count_used(offset, n) == 0
        })
    }

    /// The kernel allocated `n` slots from `offset`.
    pub fn alloc(&mut self, swap_type: u8, offset: u64, n: u64) {
        let Some(d) = self
            .devs
            .get_mut(usize::from(swap_type))
            .and_then(Option::as_mut)
        else {
            self.unknown_device_allocs += 1;
            return;
        };
        let end = offset.saturating_add(n).min(d.map.len());
        let c = (offset / CLUSTER_SLOTS) as usize;
        if let (Some(ord), Some(last)) = (d.orders.get_mut(c), d.last.get_mut(c)) {
            *ord = n.max(1).ilog2().min(u32::from(NONE - 1)) as u8;
            *last = (offset % CLUSTER_SLOTS) as u16;
        }
        let mut o = offset;
        while o < end {
            let stop = ((o / CLUSTER_SLOTS + 1) * CLUSTER_SLOTS).min(end);
            let already = d.map.put_used(o, stop - o);
            self.double_allocs += already;
            let added = stop - o - already;
            if let Some(c) = d.counts.get_mut((o / CLUSTER_SLOTS) as usize) {
                if *c == 0 && added > 0 {
                    d.empty = d.empty.saturating_sub(1);
                }
                *c = c.saturating_add(added as u16);
            }
            d.inuse += added;
            o = stop;
        }
    }

    /// Clusters with no slot in use, over every device.
    pub fn empty_clusters(&self) -> u64 {
        self.devs.iter().flatten().map(|d| d.empty).sum()
    }

    /// The kernel moved a cluster between its lists.
    pub fn cluster(&mut self, c: &ClusterMove) {
        self.cluster_events += 1;
        let Some(d) = self
            .devs
            .get_mut(usize::from(c.swap_type))
            .and_then(Option::as_mut)
        else {
            return;
        };
        let i = c.cluster as usize;
        let (Some(list), Some(order)) = (d.lists.get_mut(i), d.list_orders.get_mut(i)) else {
            return;
        };
        if *list != cluster_list::UNKNOWN {
            let expected = if c.old_list == cluster_list::UNKNOWN {
                // An isolation takes a cluster off a list: it must have been on one.
                *list != cluster_list::ISOLATED
            } else {
                *list == c.old_list
            };
            self.cluster_checks += 1;
            if !expected {
                self.cluster_mismatches += 1;
            }
        }
        *list = c.list;
        *order = c.order;
    }

    /// The list the kernel's cluster events last put `cluster` of device `swap_type` on, and
    /// the order it serves; `None` before any names it or while it is off the lists.
    pub fn kernel_list(&self, swap_type: u8, cluster: u32) -> Option<(u8, u8)> {
        let d = self.devs.get(usize::from(swap_type))?.as_ref()?;
        let i = cluster as usize;
        let (&list, &order) = (d.lists.get(i)?, d.list_orders.get(i)?);
        (list != cluster_list::UNKNOWN && list != cluster_list::ISOLATED).then_some((list, order))
    }

    /// The kernel freed `n` slots from `offset`.
    pub fn free(&mut self, swap_type: u8, offset: u64, n: u64) {
        let Some(d) = self
            .devs
            .get_mut(usize::from(swap_type))
            .and_then(Option::as_mut)
        else {
            self.unmatched_frees += n;
            return;
        };
        let end = offset.saturating_add(n);
        let mut o = offset;
        while o < end {
            let stop = ((o / CLUSTER_SLOTS + 1) * CLUSTER_SLOTS).min(end);
            let span = stop - o;
            // Header and bad slots are never freed.
            let reserved = if d.has_bad || o == 0 {
                d.reserved.count_used(o, span)
            } else {
                0
            };
            let used = if reserved == 0 {
                d.map.take_used(o, span)
            } else {
                d.map.count_used(o, span).saturating_sub(reserved)
            };
            self.unmatched_frees += span - used;
            if reserved != 0 {
                for s in o..stop {
                    if !d.reserved.is_used(s) {
                        d.map.set_free(s, 1);
                    }
                }
            }
            if let Some(c) = d.counts.get_mut((o / CLUSTER_SLOTS) as usize) {
                if *c > 0 && *c <= used as u16 {
                    d.empty += 1;
                }
                *c = c.saturating_sub(used as u16);
            }
            d.inuse = d.inuse.saturating_sub(used);
            o = stop;
        }
    }

    /// Occupancy summary in the models' shape.
    pub fn snapshot(&self) -> ModelSnapshot {
        let mut frag = FragStats::default();
        let mut clusters = ClusterCounts::default();
        let mut total = 0;
        let mut used = 0;
        for d in self.devs.iter().flatten() {
            frag.add(&d.map);
            total += d.pages;
            used += d.inuse;
            for (&c, &l) in d.counts.iter().zip(&d.lists) {
                clusters.add(observed(l).unwrap_or_else(|| list_of(c)));
            }
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

    /// The device map of `swap_type`: each cluster's count, the order and slot of its latest
    /// allocation, and its list: the kernel's where cluster events named it, else
    /// `free`/`full`/`partial` from the count.
    pub fn cluster_map(&self, swap_type: u8, out: &mut Vec<ClusterCell>) -> bool {
        let Some(d) = self.dev(swap_type) else {
            return false;
        };
        out.extend(
            d.counts
                .iter()
                .zip(&d.orders)
                .zip(&d.last)
                .zip(d.lists.iter().zip(&d.list_orders))
                .map(|(((&used, &order), &last), (&l, &lo))| ClusterCell {
                    used,
                    order: match observed(l) {
                        Some(ClusterList::Nonfull | ClusterList::Frag) => Some(lo),
                        _ => (order != NONE).then_some(order),
                    },
                    list: observed(l).unwrap_or_else(|| list_of(used)),
                    last: (order != NONE).then_some(last),
                }),
        );
        true
    }

    /// Devices the reconstruction knows, by swap type.
    pub fn devices(&self) -> impl Iterator<Item = u8> + '_ {
        self.devs
            .iter()
            .enumerate()
            .filter(|(_, d)| d.is_some())
            .map(|(i, _)| i as u8)
    }
}

/// The list a `cluster_list` code names, `None` while unknown.
fn observed(code: u8) -> Option<ClusterList> {
    Some(match code {
        cluster_list::FREE => ClusterList::Free,
        cluster_list::NONFULL => ClusterList::Nonfull,
        cluster_list::FRAG => ClusterList::Frag,
        cluster_list::FULL => ClusterList::Full,
        cluster_list::DISCARD => ClusterList::Discard,
        cluster_list::ISOLATED => ClusterList::Other,
        _ => return None,
    })
}

fn list_of(count: u16) -> ClusterList {
    match u64::from(count) {
        0 => ClusterList::Free,
        CLUSTER_SLOTS.. => ClusterList::Full,
        _ => ClusterList::Partial,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn alloc_free_and_anomalies() {
        let mut r = RealOccupancy::default();
        r.swapon(&SwapOn {
            ts_ns: 0,
            swap_type: 1,
            max: 1000,
            bad: vec![3],
            flags: 0,
            prio: 0,
        });
        assert_eq!(r.snapshot().total_slots, 998);
        r.alloc(1, 16, 16);
        r.alloc(1, 16, 1);
        assert_eq!(r.double_allocs, 1);
        assert_eq!(r.inuse(1), Some(16));
        r.free(1, 0, 32);
        assert_eq!(r.inuse(1), Some(0));
        assert_eq!(r.unmatched_frees, 32 - 16);
        let s = r.snapshot();
        assert_eq!(s.used_slots, 0);
        assert_eq!(s.clusters.nonfull, 2);
        r.alloc(7, 0, 1);
        assert_eq!(r.unknown_device_allocs, 1);
    }

    #[test]
    fn cluster_events_set_lists_and_catch_a_missed_move() {
        let mut r = RealOccupancy::default();
        r.swapon(&SwapOn {
            ts_ns: 0,
            swap_type: 0,
            max: 4 * 512,
            bad: vec![],
            flags: 0,
            prio: 0,
        });
        let mv = |cluster, list, old_list, order| ClusterMove {
            ts_ns: 1,
            cpu: 0,
            swap_type: 0,
            cluster,
            list,
            old_list,
            order,
            count: 0,
        };
        use cluster_list::*;
        // Cluster 1: taken off the free list (first sight: not checked), used for 64K, left on
        // frag[4]; the next move names frag as its previous list: consistent.
        r.cluster(&mv(1, ISOLATED, UNKNOWN, 0));
        r.alloc(0, 512, 16);
        r.cluster(&mv(1, FRAG, ISOLATED, 4));
        r.cluster(&mv(1, ISOLATED, UNKNOWN, 4));
        assert_eq!((r.cluster_checks, r.cluster_mismatches), (2, 0));
        let mut map = Vec::new();
        assert!(r.cluster_map(0, &mut map));
        assert_eq!(map[1].list, ClusterList::Other, "isolated: off the lists");
        // A move the stream did not see: the kernel says the cluster was full, the stream had
        // it isolated.
        r.cluster(&mv(1, FRAG, FULL, 4));
        assert_eq!((r.cluster_checks, r.cluster_mismatches), (3, 1));
        // Isolating a cluster the stream already has isolated is a mismatch too.
        r.cluster(&mv(2, ISOLATED, UNKNOWN, 0));
        r.cluster(&mv(2, ISOLATED, UNKNOWN, 0));
        assert_eq!((r.cluster_checks, r.cluster_mismatches), (4, 2));
        map.clear();
        assert!(r.cluster_map(0, &mut map));
        assert_eq!(
            (map[1].list, map[1].order),
            (ClusterList::Frag, Some(4)),
            "the kernel's list and the order it serves"
        );
        // Clusters no event named keep the derived list.
        assert_eq!(map[3].list, ClusterList::Free);
        let s = r.snapshot();
        assert_eq!((s.clusters.frag, s.clusters.other), (1, 1));
        assert_eq!(r.cluster_events, 6);
    }
}
