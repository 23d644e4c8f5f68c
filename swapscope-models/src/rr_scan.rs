//! `rr-scan`: Ryan Roberts' RFC "Alternative mTHP swap allocator improvements" (v1, June 2024,
//! on v6.10-rc4; not merged), over the 6.10 allocator ([`super::linux_6_10`]).
//!
//! Mirrors patches 3–5 of the series: "Track allocation order for clusters" (`alloc_cluster(si,
//! idx, order)` records the order a cluster serves; it is 0 again once the cluster is free),
//! "Scan for free swap entries in allocated clusters" (`next_cluster_for_scan`, a per-device
//! per-order pointer `si->next_order_scan[order]`, called from `scan_swap_map_try_ssd_cluster`)
//! and "Optimize per-order cluster scanning" (`CLUSTER_FLAG_SKIP_SCAN`, `CLUSTER_FLAG_DECREMENT`,
//! `cluster_inc_scanners` / `cluster_dec_scanners`, set and cleared in `add_cluster_info_page` /
//! `dec_cluster_info_page`):
//!
//! * a CPU whose cluster for the order is exhausted takes the head of the free list, as in 6.10;
//!   only when there is none (and no discard is pending) and 2^order < 512 does it scan: from
//!   `next_order_scan[order]`, circularly over the device's whole clusters, for the first
//!   allocated cluster of that order without SKIP_SCAN; the pointer moves past it. That
//!   cluster becomes the CPU's cluster and is scanned from its start for a free aligned range;
//!   if it has none, the scan goes on with the next candidate until it comes back round (the
//!   cluster just before the starting pointer is the stop mark and is not itself examined);
//! * this runs for order 0 too, before 6.10's linear order-0 scan of the whole device;
//! * SKIP_SCAN is set when an allocation leaves fewer free slots than it took, and when the
//!   last CPU using the cluster leaves it (its cursor ran off the end) with no slot freed in it
//!   since that CPU took it; any free that leaves at least 2^order free slots clears it;
//! * everything else is 6.10: per-device per-CPU `next[order]`, conflict check, discard.
//!
//! Simplifications: those of `linux-6.10`. A cluster on the discard list is never a scan
//! candidate (in the RFC its swap map is `SWAP_MAP_BAD`, so scanning it finds nothing anyway).
//! The scanner count is not decremented when a conflict resets a CPU's cursor (neither is it in
//! the RFC).

use super::kernel::{CL, Dev, List};
use super::linux_6_10::{Alloc610, Variant};
use swapscope_core::alloc::NR_ORDERS;

/// The RFC's additions switched on.
#[derive(Clone, Copy, Debug, Default)]
pub struct Rr;

impl Variant for Rr {
    const NAME: &'static str = "rr-scan";
    const ORDER_SCAN: bool = true;
}

/// The 6.10 allocator with Ryan Roberts' per-order cluster scan.
pub type RrScan = Alloc610<Rr>;

/// `CLUSTER_FLAG_SKIP_SCAN`.
const SKIP_SCAN: u8 = 1;
/// `CLUSTER_FLAG_DECREMENT`: a slot was freed since the last scanner took the cluster.
const DECREMENT: u8 = 2;

/// The scanner's state for one device: per-cluster flags and scanner counts (the RFC's 4
/// bytes per cluster) and the per-order scan pointers.
#[derive(Clone, Debug)]
pub(crate) struct OrderScan {
    flags: Vec<u8>,
    scanners: Vec<u32>,
    next: [u32; NR_ORDERS],
    /// Clusters the circular scan covers: the whole ones (`si->max / 512`); a partial last
    /// cluster is never returned.
    whole: u32,
}

impl OrderScan {
    pub fn new(d: &Dev) -> Self {
        let n = d.nr_clusters() as usize;
        OrderScan {
            flags: vec![0; n],
            scanners: vec![0; n],
            next: [0; NR_ORDERS],
            whole: (d.max / CL) as u32,
        }
    }

    fn flags(&self, c: u32) -> u8 {
        self.flags.get(c as usize).copied().unwrap_or(SKIP_SCAN)
    }

    fn set(&mut self, c: u32, f: impl FnOnce(u8) -> u8) {
        if let Some(x) = self.flags.get_mut(c as usize) {
            *x = f(*x);
        }
    }

    fn succ(&self, c: u32) -> u32 {
        if c + 1 >= self.whole { 0 } else { c + 1 }
    }

    fn pred(&self, c: u32) -> u32 {
        if c == 0 { self.whole - 1 } else { c - 1 }
    }

    /// `next_cluster_for_scan`: the next allocated cluster of `order` without SKIP_SCAN, from
    /// the order's pointer round to `stop` (set on the first call of one request).
    pub fn next_cluster_for_scan(
        &mut self,
        d: &Dev,
        order: u8,
        stop: &mut Option<u32>,
    ) -> Option<u32> {
        if self.whole == 0 {
            return None;
        }
        let o = usize::from(order).min(NR_ORDERS - 1);
        let mut c = self.next.get(o).copied().unwrap_or(0).min(self.whole - 1);
        let end = *stop.get_or_insert(self.pred(c));
        while c != end {
            let listed = matches!(d.list_of(c), Some(List::Free | List::Discard));
            if self.flags(c) & SKIP_SCAN == 0 && !listed && d.order(c) == order {
                break;
            }
            c = self.succ(c);
        }
        let r = (c != end).then_some(c);
        let next = if c == end { c } else { self.succ(c) };
        if let Some(p) = self.next.get_mut(o) {
            *p = next;
        }
        r
    }

    /// `cluster_inc_scanners`: a CPU takes the cluster as its current one.
    pub fn inc_scanners(&mut self, c: u32) {
        if let Some(n) = self.scanners.get_mut(c as usize) {
            *n += 1;
        }
        self.set(c, |f| f & !DECREMENT);
    }

    /// `cluster_dec_scanners`: a CPU's cursor leaves the cluster.
    pub fn dec_scanners(&mut self, c: u32) {
        let Some(n) = self.scanners.get_mut(c as usize) else {
            return;
        };
        *n = n.saturating_sub(1);
        if *n == 0 {
            self.set(c, |f| if f & DECREMENT == 0 { f | SKIP_SCAN } else { f });
        }
    }

    /// `alloc_cluster`: a free cluster is taken (its flags start over).
    pub fn cluster_taken(&mut self, c: u32) {
        self.set(c, |_| 0);
    }

    /// `add_cluster_info_page`: `n` slots were allocated, leaving `count` in use.
    pub fn added(&mut self, c: u32, count: u16, n: u64) {
        if CL - u64::from(count) < n {
            self.set(c, |f| f | SKIP_SCAN);
        }
    }

    /// `dec_cluster_info_page`: slots were freed, leaving `count` in use in a cluster of
    /// `order`.
    pub fn removed(&mut self, c: u32, count: u16, order: u8) {
        let room = CL - u64::from(count) >= 1u64 << order;
        self.set(c, |f| {
            if room {
                (f | DECREMENT) & !SKIP_SCAN
            } else {
                f | DECREMENT
            }
        });
    }

    #[cfg(test)]
    pub fn skipped(&self, c: u32) -> bool {
        self.flags(c) & SKIP_SCAN != 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Linux610;
    use crate::kernel::testutil::{on, one};
    use swapscope_core::alloc::AllocatorModel;
    use swapscope_core::event::swap_flags::{BLKDEV, SOLIDSTATE};

    const SSD: u32 = SOLIDSTATE | BLKDEV;

    /// Cluster 1 filled with order 4 by CPU 0, cluster 2 a PMD by CPU 1, then a 16-slot hole
    /// freed at 576: no free cluster is left.
    fn hole<V: Variant>(mut m: Alloc610<V>) -> Alloc610<V> {
        m.swapon(&on(0, 3, SSD));
        for i in 0..32 {
            assert_eq!(one(&mut m, 0, 4), Some(512 + 16 * i));
        }
        assert_eq!(one(&mut m, 1, 9), Some(1024));
        m.free(0, 576, 16);
        m
    }

    #[test]
    fn fills_a_hole_in_an_allocated_cluster_where_6_10_falls_back() {
        assert_eq!(one(&mut hole(Linux610::new()), 2, 4), None);
        let mut m = hole(RrScan::new());
        assert_eq!(one(&mut m, 2, 4), Some(576));
        // Order 9 never scans (a free 512-slot range would be a free cluster).
        assert_eq!(one(&mut m, 3, 9), None);
    }

    #[test]
    fn a_cluster_scanned_in_vain_is_skipped_until_a_free() {
        let mut m = hole(RrScan::new());
        let scan = |m: &RrScan| m.scan_state(0).map(|s| s.skipped(1));
        // Full, and left by CPU 0 with no free since: skipped; the free cleared it.
        assert_eq!(scan(&m), Some(false));
        assert_eq!(one(&mut m, 2, 4), Some(576));
        // CPU 2's cursor (592) finds nothing more: it leaves the cluster, which is skipped.
        assert_eq!(one(&mut m, 2, 4), None);
        assert_eq!(scan(&m), Some(true));
        // A free of one slot leaves too little room for order 4: still skipped...
        m.free(0, 700, 1);
        assert_eq!(scan(&m), Some(true));
        // ...a whole block clears it, and the block is found again.
        m.free(0, 512, 16);
        assert_eq!(scan(&m), Some(false));
        assert_eq!(one(&mut m, 3, 4), Some(512));
    }

    #[test]
    fn order0_scans_order0_clusters_before_the_linear_scan() {
        let mut m = RrScan::new();
        m.swapon(&on(0, 3, SSD));
        // CPU 0 takes cluster 1 for order 0, CPU 1 cluster 2 for order 4.
        assert_eq!(one(&mut m, 0, 0), Some(512));
        assert_eq!(one(&mut m, 1, 4), Some(1024));
        // CPU 2, no free cluster: the order-0 scan finds cluster 0 (header, order 0) first.
        assert_eq!(one(&mut m, 2, 0), Some(1));
        // Stock 6.10 gets there through the linear scan from slot 1 as well.
        let mut s = Linux610::new();
        s.swapon(&on(0, 3, SSD));
        let _ = (one(&mut s, 0, 0), one(&mut s, 1, 4));
        assert_eq!(one(&mut s, 2, 0), Some(1));
    }
}
