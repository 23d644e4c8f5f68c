//! `linux-6.14`: the swap-slot allocator of Linux 6.14–6.17 (`mm/swapfile.c` as read in 6.17.0,
//! after Kairui Song's "mm, swap: rework of swap allocator locks" (6.14) and "mm, swap: use
//! percpu cluster as allocation fast path" / slot-cache removal (6.15)), before the 6.18
//! "improve cluster scan strategy" series.
//!
//! The same functions as [`super::linux_6_18`] (`folio_alloc_swap` → `swap_alloc_fast` /
//! `swap_alloc_slow` → `cluster_alloc_swap_entry` → `alloc_swap_scan_cluster`,
//! `relocate_cluster`, `partial_free_cluster`, `free_cluster`, `swap_do_scheduled_discard`,
//! `swap_reclaim_full_clusters`), one definition ([`ClusterListAlloc`]) under these rules:
//!
//! * search order: per-CPU cluster (global `percpu_swap_cluster`) → HDD cursor → **one free
//!   cluster** → (if `vm_swap_full`) rotate one full cluster → all of `nonfull[order]` (each
//!   failure moves to `frag[order]`) → every cluster that was already on `frag[order]`
//!   (`frag_cluster_nr[order]`), each rotated to the tail → (page-discard devices) discard
//!   synchronously and start over, for any order → order 0 only: steal from `frag[o]` then
//!   `nonfull[o]`, o = 1..9. 6.18's 9a42aed48421 moved nonfull ahead of free, and scans one
//!   frag cluster only;
//! * a free cluster is usable by the fast path (there is no swap table yet);
//! * the free list is filled column-interleaved at swapon (`SWAP_CLUSTER_COLS` = 32);
//! * the rest as in 6.18: every scanned cluster is relocated (frag/full/free), a free moves a
//!   partial cluster to `nonfull[ci->order]`, PMD order needs a free cluster, no order > 0 on
//!   swap files, large orders try one device only.
//!
//! Simplifications: as `linux-6.18`. Besides, 6.14.0 itself still had the allocation side of
//! the per-CPU slot cache (`mm/swap_slots.c`) and per-device per-CPU cursors; this model is the
//! 6.15–6.17 form without them (a global per-CPU cluster, one request at a time), which is the
//! form the 6.18 comparison (9a42aed48421) was measured against.

use super::linux_6_18::{ClusterListAlloc, Policy, Rules};

/// The rules of 6.14–6.17.
#[derive(Clone, Copy, Debug, Default)]
pub struct V614;

impl Policy for V614 {
    const RULES: Rules = Rules {
        name: "linux-6.14",
        nonfull_before_free: false,
        free_is_unusable: false,
        one_frag_cluster: false,
        discard_in_alloc: true,
        sequential_setup: false,
    };
}

/// The Linux 6.14–6.17 allocator.
pub type Linux614 = ClusterListAlloc<V614>;

#[cfg(test)]
mod tests {
    use super::*;
    use crate::DiscardTiming;
    use crate::Linux618;
    use crate::kernel::testutil::{on, one};
    use crate::kernel::{Dev, List};
    use swapscope_core::alloc::AllocatorModel;
    use swapscope_core::event::swap_flags::{BLKDEV, PAGE_DISCARD, SOLIDSTATE};

    const SSD: u32 = SOLIDSTATE | BLKDEV;

    fn dev<P: Policy>(m: &ClusterListAlloc<P>) -> &Dev {
        m.devs().get(0).unwrap_or_else(|| unreachable!())
    }

    /// Two order-4 folios from CPU 0 in cluster 1, the first freed: cluster 1 is on
    /// `nonfull[4]` with a 16-slot hole. CPU 1 (no per-CPU cluster yet) then asks for order 4.
    fn hole_then_request<P: Policy>(mut m: ClusterListAlloc<P>) -> (ClusterListAlloc<P>, u64) {
        m.swapon(&on(0, 8, SSD));
        assert_eq!(one(&mut m, 0, 4), Some(512));
        assert_eq!(one(&mut m, 0, 4), Some(528));
        m.free(0, 512, 16);
        assert_eq!(dev(&m).list_of(1), Some(List::Nonfull(4)));
        let got = one(&mut m, 1, 4).unwrap_or(0);
        (m, got)
    }

    #[test]
    fn free_cluster_before_nonfull_unlike_6_18() {
        let (m14, got14) = hole_then_request(Linux614::new());
        let (m18, got18) = hole_then_request(Linux618::new());
        // 6.18 fills the hole in the nonfull cluster.
        assert_eq!(got18, 512);
        assert_eq!(dev(&m18).list_of(1), Some(List::Frag(4)));
        // 6.14 takes a fresh free cluster (the next on the free list) and leaves the hole.
        assert_eq!(got14, 1024);
        assert_eq!(dev(&m14).count(2), 16);
        assert_eq!(dev(&m14).list_of(1), Some(List::Nonfull(4)));
    }

    #[test]
    fn setup_is_column_interleaved() {
        let mut m = Linux614::new();
        m.swapon(&on(0, 64, SSD));
        assert_eq!(dev(&m).list_of(0), Some(List::Nonfull(0)));
        assert_eq!(dev(&m).head(List::Free), Some(32));
        // The first order-4 request takes the head of the free list.
        assert_eq!(one(&mut m, 0, 4), Some(32 * 512));
    }

    #[test]
    fn nonfull_is_used_once_free_clusters_are_gone() {
        let mut m = Linux614::new();
        m.swapon(&on(0, 3, SSD));
        // Clusters 1 and 2 are free (0 holds the header): CPU 0 takes one for order 4, CPU 2
        // takes the other for PMD.
        let a = one(&mut m, 0, 4).unwrap_or(0);
        let _ = one(&mut m, 0, 4);
        let p = one(&mut m, 2, 9).unwrap_or(0);
        assert_ne!(a / 512, p / 512);
        m.free(0, a, 16);
        // No free cluster left: CPU 1 walks nonfull[4] and fills the hole.
        assert_eq!(one(&mut m, 1, 4), Some(a));
    }

    /// Cluster 1 filled with order 4 by CPU 0 and then one slot freed (a hole no order-4
    /// folio fits), cluster 2 in use by CPU 1, cluster 3 a PMD; CPU 3 then CPU 4 ask for
    /// order 4. Returns their answers.
    fn two_frag_clusters<P: Policy>(mut m: ClusterListAlloc<P>) -> (Option<u64>, Option<u64>) {
        m.swapon(&on(0, 4, SSD));
        assert_eq!(one(&mut m, 0, 4), Some(512));
        assert_eq!(one(&mut m, 1, 4), Some(1024));
        assert_eq!(one(&mut m, 2, 9), Some(1536));
        while dev(&m).count(1) < 512 {
            assert!(one(&mut m, 0, 4).is_some());
        }
        m.free(0, 512 + 3, 1);
        assert_eq!(dev(&m).list_of(1), Some(List::Nonfull(4)));
        // CPU 3: cluster 1 fails on nonfull and goes to frag behind cluster 2, which serves.
        let r3 = one(&mut m, 3, 4);
        assert_eq!(dev(&m).head(List::Frag(4)), Some(1));
        // CPU 4: frag[4] is [1, 2]; the head cannot serve order 4.
        let r4 = one(&mut m, 4, 4);
        (r3, r4)
    }

    #[test]
    fn every_old_frag_cluster_is_tried_not_just_one() {
        // 6.14–6.17 rotate through frag[4] until cluster 2 serves; 6.18 tries the head only.
        assert_eq!(two_frag_clusters(Linux614::new()), (Some(1040), Some(1056)));
        assert_eq!(two_frag_clusters(Linux618::new()), (Some(1040), None));
    }

    #[test]
    fn discard_happens_inside_the_allocation_for_large_orders_too() {
        let mut m = Linux614::with_discard_timing(DiscardTiming::OnDemand);
        m.swapon(&on(0, 2, SSD | PAGE_DISCARD));
        let mut n = 0;
        while one(&mut m, 0, 0).is_some() {
            n += 1;
        }
        assert_eq!(n, 1023);
        m.free(0, 512, 512);
        assert_eq!(dev(&m).list_of(1), Some(List::Discard));
        // 6.18 refuses order 4 here (synchronous discard only for order 0); 6.14 discards
        // the cluster inside `cluster_alloc_swap_entry` and serves it.
        assert_eq!(one(&mut m, 1, 4), Some(512));
        let mut m18 = Linux618::with_discard_timing(DiscardTiming::OnDemand);
        m18.swapon(&on(0, 2, SSD | PAGE_DISCARD));
        while one(&mut m18, 0, 0).is_some() {}
        m18.free(0, 512, 512);
        assert_eq!(one(&mut m18, 1, 4), None);
    }

    #[test]
    fn fast_path_may_reuse_its_cluster_after_it_went_free() {
        let mut m = Linux614::new();
        m.swapon(&on(0, 4, SSD));
        let a = one(&mut m, 0, 4).unwrap_or(0);
        m.free(0, a, 16);
        assert_eq!(dev(&m).list_of((a / 512) as u32), Some(List::Free));
        // The CPU's cached offset points into the now-free cluster; 6.14 has no swap table
        // to lose, so the fast path uses it again from its start.
        assert_eq!(one(&mut m, 0, 4), Some(a));
    }
}
