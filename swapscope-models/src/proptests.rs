//! Property tests shared by the kernel models: random alloc/free sequences on hand-built
//! devices, checking that no slot is handed out twice, every free matches an allocation, and the
//! models' counts equal their slot states.

use std::collections::BTreeSet;

use proptest::prelude::*;

use super::kernel::{CL, Dev, Devs, List};
use super::linux_6_10::{Alloc610, Variant};
use super::linux_6_18::{ClusterListAlloc, Policy};
use super::vswap::{RMAP_BYTES, VIRTUAL_TYPE, VTABLE_BYTES, Vswap};
use super::{DiscardTiming, Linux610, Linux612, Linux614, Linux618, RrScan};
use swapscope_core::alloc::AllocatorModel;
use swapscope_core::event::SwapOn;
use swapscope_core::event::swap_flags::{BLKDEV, PAGE_DISCARD, SOLIDSTATE};

#[derive(Clone, Debug)]
enum Op {
    Alloc {
        cpu: u32,
        order: u8,
    },
    /// Free part of a live allocation: index, start and length as fractions of it.
    Free {
        pick: usize,
        start: u16,
        len: u16,
    },
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        3 => (0u32..4, prop::sample::select(vec![0u8, 0, 0, 2, 4, 4, 9]))
            .prop_map(|(cpu, order)| Op::Alloc { cpu, order }),
        2 => (any::<usize>(), any::<u16>(), any::<u16>())
            .prop_map(|(pick, start, len)| Op::Free { pick, start, len }),
    ]
}

fn devices() -> impl Strategy<Value = Vec<SwapOn>> {
    let flags = prop::sample::select(vec![
        SOLIDSTATE | BLKDEV,
        SOLIDSTATE | BLKDEV,
        SOLIDSTATE | BLKDEV | PAGE_DISCARD,
        BLKDEV,
        SOLIDSTATE,
    ]);
    let dev = (
        1u64..6,
        0u64..CL,
        flags,
        -2i32..3,
        prop::collection::vec(1u64..3000, 0..3),
    );
    prop::collection::vec(dev, 1..3).prop_map(|v| {
        v.into_iter()
            .enumerate()
            .map(|(i, (clusters, tail, flags, prio, bad))| SwapOn {
                ts_ns: 0,
                swap_type: i as u8,
                max: clusters * CL + tail,
                bad,
                flags,
                prio,
            })
            .collect()
    })
}

type Check<M> = fn(&M) -> Result<(), String>;

/// Runs `ops` on `m`, checking the model against an independent record of live slots.
fn run<M: AllocatorModel>(
    mut m: M,
    devs: &[SwapOn],
    ops: &[Op],
    check: Check<M>,
    held: fn(&M) -> u64,
) -> Result<(), TestCaseError> {
    for d in devs {
        m.swapon(d);
    }
    let mut used: BTreeSet<(u8, u64)> = BTreeSet::new();
    // Live allocations as runs of (type, offset, nr).
    let mut live: Vec<(u8, u64, u64)> = Vec::new();
    for op in ops {
        match *op {
            Op::Alloc { cpu, order } => {
                if let Some(a) = m.alloc(cpu, order) {
                    prop_assert_eq!(a.slots(), 1u64 << order);
                    for e in &a.extents {
                        let dev = devs.iter().find(|d| d.swap_type == e.swap_type);
                        let Some(dev) = dev else {
                            return Err(TestCaseError::fail("unknown device"));
                        };
                        if order > 0 {
                            prop_assert_eq!(e.offset % (1u64 << order), 0, "unaligned");
                        }
                        for s in e.offset..e.offset + u64::from(e.nr) {
                            prop_assert!(s > 0 && s < dev.max, "slot {} out of range", s);
                            prop_assert!(!dev.bad.contains(&s), "bad slot {} handed out", s);
                            prop_assert!(
                                used.insert((e.swap_type, s)),
                                "slot {:?} handed out twice",
                                (e.swap_type, s)
                            );
                        }
                        live.push((e.swap_type, e.offset, u64::from(e.nr)));
                    }
                }
            }
            Op::Free { pick, start, len } => {
                if live.is_empty() {
                    continue;
                }
                let i = pick % live.len();
                let (t, off, n) = live.swap_remove(i);
                let a = u64::from(start) % n;
                let b = a + 1 + u64::from(len) % (n - a);
                m.free(t, off + a, (b - a) as u32);
                for s in off + a..off + b {
                    prop_assert!(
                        used.remove(&(t, s)),
                        "freed slot {:?} not allocated",
                        (t, s)
                    );
                }
                if a > 0 {
                    live.push((t, off, a));
                }
                if b < n {
                    live.push((t, off + b, n - b));
                }
            }
        }
        let snap = m.snapshot();
        prop_assert_eq!(snap.used_slots, used.len() as u64 + held(&m));
        let nr_clusters: u64 = devs.iter().map(|d| d.max.max(1).div_ceil(CL)).sum();
        let c = snap.clusters;
        prop_assert_eq!(c.free + c.nonfull + c.frag + c.full + c.other, nr_clusters);
        check(&m).map_err(TestCaseError::fail)?;
    }
    Ok(())
}

fn count(d: &Dev, c: u32) -> u64 {
    u64::from(d.count(c))
}

fn check_618<P: Policy>(m: &ClusterListAlloc<P>) -> Result<(), String> {
    check_lists(m.devs(), |d, c, l| match l {
        Some(List::Free) => count(d, c) == 0 && d.order(c) == 0,
        Some(List::Discard) => count(d, c) == 0 && d.page_discard(),
        Some(List::Full) => count(d, c) == CL,
        Some(List::Nonfull(o) | List::Frag(o)) => {
            count(d, c) > 0 && count(d, c) < CL && o == d.order(c)
        }
        None => false,
    })
}

fn check_612(m: &Linux612) -> Result<(), String> {
    check_lists(m.devs(), |d, c, l| match l {
        _ if !d.solidstate() => l.is_none(),
        Some(List::Free) => count(d, c) == 0 && d.order(c) == 0,
        Some(List::Discard) => count(d, c) == 0 && d.page_discard(),
        Some(List::Full) => count(d, c) == CL,
        Some(List::Nonfull(o) | List::Frag(o)) => {
            count(d, c) > 0 && count(d, c) < CL && o == d.order(c)
        }
        None => false,
    })
}

fn check_610<V: Variant>(m: &Alloc610<V>) -> Result<(), String> {
    check_lists(m.devs(), |d, c, l| match l {
        _ if !d.solidstate() => l.is_none(),
        Some(List::Free) => count(d, c) == 0,
        Some(List::Discard) => count(d, c) == 0 && d.page_discard(),
        Some(_) => false,
        None => count(d, c) > 0,
    })
}

fn check_lists(devs: &Devs, ok: impl Fn(&Dev, u32, Option<List>) -> bool) -> Result<(), String> {
    devs.check(ok)
}

/// Runs `ops` on a [`Vswap`]; after op `i`, `writeouts[i]` (if any) picks a live allocation
/// and writes it out. Checks the virtual slots against an independent record, that no physical
/// slot backs two virtual slots, that every live slot is backed while no write-out was seen,
/// that the snapshot's used slots are the backed ones and its metadata both tables.
fn run_vswap(
    devs: &[SwapOn],
    ops: &[Op],
    writeouts: &[Option<usize>],
) -> Result<(), TestCaseError> {
    let mut m = Vswap::new();
    for d in devs {
        m.swapon(d);
    }
    let mut used: BTreeSet<u64> = BTreeSet::new();
    let mut live: Vec<(u64, u64)> = Vec::new();
    for (i, op) in ops.iter().enumerate() {
        match *op {
            Op::Alloc { cpu, order } => {
                let s = m.snapshot();
                let free = s.total_slots - s.used_slots;
                let n = 1u64 << order;
                match m.alloc(cpu, order) {
                    Some(a) => {
                        prop_assert_eq!(a.extents.len(), 1);
                        let Some(e) = a.extents.first().copied() else {
                            return Err(TestCaseError::fail("no extent"));
                        };
                        prop_assert_eq!(e.swap_type, VIRTUAL_TYPE);
                        prop_assert_eq!(u64::from(e.nr), n);
                        prop_assert_eq!(e.offset % n, 0, "unaligned virtual slots");
                        for v in e.offset..e.offset + n {
                            prop_assert!(v > 0, "virtual slot 0 handed out");
                            prop_assert!(used.insert(v), "virtual slot {} handed out twice", v);
                        }
                        live.push((e.offset, n));
                    }
                    None => {
                        // Refused only when the devices are short of slots (eagerly, with one
                        // device: when it has fewer than 2^k free).
                        prop_assert!(
                            free < n || (devs.len() > 1 && !m.is_lazy()),
                            "refused order {} with {} free",
                            order,
                            free
                        );
                    }
                }
            }
            Op::Free { pick, start, len } => {
                if live.is_empty() {
                    continue;
                }
                let (off, n) = live.swap_remove(pick % live.len());
                let a = u64::from(start) % n;
                let b = a + 1 + u64::from(len) % (n - a);
                m.free(VIRTUAL_TYPE, off + a, (b - a) as u32);
                for v in off + a..off + b {
                    prop_assert!(used.remove(&v), "freed slot {} not allocated", v);
                }
                if a > 0 {
                    live.push((off, a));
                }
                if b < n {
                    live.push((off + b, n - b));
                }
            }
        }
        if let Some(Some(p)) = writeouts.get(i)
            && !live.is_empty()
            && let Some(&(off, n)) = live.get(p % live.len())
        {
            m.writeout(VIRTUAL_TYPE, off, n as u32);
        }
        let snap = m.snapshot();
        let mut phys = BTreeSet::new();
        for &v in &used {
            match m.physical_of(v) {
                Some((t, off)) => {
                    let Some(d) = devs.iter().find(|d| d.swap_type == t) else {
                        return Err(TestCaseError::fail("backed on an unknown device"));
                    };
                    prop_assert!(off > 0 && off < d.max && !d.bad.contains(&off));
                    prop_assert!(
                        phys.insert((t, off)),
                        "physical slot {:?} backs two virtual slots",
                        (t, off)
                    );
                }
                None => prop_assert!(
                    m.is_lazy(),
                    "virtual slot {} unbacked before any write-out",
                    v
                ),
            }
        }
        prop_assert_eq!(m.live_virtual(), used.len() as u64);
        prop_assert_eq!(snap.used_slots, phys.len() as u64);
        prop_assert_eq!(
            snap.metadata_bytes,
            VTABLE_BYTES * used.len() as u64 + RMAP_BYTES * phys.len() as u64
        );
        let nr_clusters: u64 = devs.iter().map(|d| d.max.max(1).div_ceil(CL)).sum();
        let c = snap.clusters;
        prop_assert_eq!(c.free + c.nonfull + c.frag + c.full + c.other, nr_clusters);
    }
    for (off, n) in live {
        m.free(VIRTUAL_TYPE, off, n as u32);
    }
    let s = m.snapshot();
    prop_assert_eq!(
        (s.used_slots, s.metadata_bytes, m.live_virtual()),
        (0, 0, 0)
    );
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    #[test]
    fn linux_6_18_keeps_slot_accounting(devs in devices(), ops in prop::collection::vec(op(), 1..400)) {
        run(Linux618::new(), &devs, &ops, check_618, |_| 0)?;
        run(Linux618::with_discard_timing(DiscardTiming::OnDemand), &devs, &ops, check_618, |_| 0)?;
    }

    #[test]
    fn linux_6_14_keeps_slot_accounting(devs in devices(), ops in prop::collection::vec(op(), 1..400)) {
        run(Linux614::new(), &devs, &ops, check_618, |_| 0)?;
        run(Linux614::with_discard_timing(DiscardTiming::OnDemand), &devs, &ops, check_618, |_| 0)?;
    }

    #[test]
    fn linux_6_12_keeps_slot_accounting(devs in devices(), ops in prop::collection::vec(op(), 1..400)) {
        // Slots the CPUs' swap slot caches hold are allocated but not handed out.
        run(Linux612::new(), &devs, &ops, check_612, Linux612::cached_slots)?;
        run(Linux612::new().without_slot_cache(), &devs, &ops, check_612, |_| 0)?;
        run(
            Linux612::with_discard_timing(DiscardTiming::OnDemand),
            &devs,
            &ops,
            check_612,
            Linux612::cached_slots,
        )?;
    }

    #[test]
    fn linux_6_10_keeps_slot_accounting(devs in devices(), ops in prop::collection::vec(op(), 1..400)) {
        run(Linux610::new(), &devs, &ops, check_610, |_| 0)?;
        run(Linux610::with_discard_timing(DiscardTiming::OnDemand), &devs, &ops, check_610, |_| 0)?;
    }

    #[test]
    fn rr_scan_keeps_slot_accounting(devs in devices(), ops in prop::collection::vec(op(), 1..400)) {
        run(RrScan::new(), &devs, &ops, check_610, |_| 0)?;
        run(RrScan::with_discard_timing(DiscardTiming::OnDemand), &devs, &ops, check_610, |_| 0)?;
    }

    #[test]
    fn vswap_keeps_slot_accounting(
        devs in devices(),
        ops in prop::collection::vec(op(), 1..400),
        writeouts in prop::collection::vec(prop::option::weighted(0.3, any::<usize>()), 0..400),
        eager_prefix in 0usize..400,
    ) {
        // Eager for the first `eager_prefix` ops (no write-out), then write-outs at random.
        let w: Vec<Option<usize>> = (0..ops.len())
            .map(|i| if i < eager_prefix { None } else { writeouts.get(i).copied().flatten() })
            .collect();
        run_vswap(&devs, &ops, &w)?;
        run_vswap(&devs, &ops, &[])?;
    }
}

#[test]
fn every_model_fills_a_device_exactly() {
    for name in super::NAMES.iter().chain(super::EXTRA_NAMES) {
        let Some(mut m) = super::by_name(name) else {
            unreachable!("{name}")
        };
        m.swapon(&SwapOn {
            ts_ns: 0,
            swap_type: 0,
            max: 3 * CL + 100,
            bad: vec![7],
            flags: SOLIDSTATE | BLKDEV,
            prio: 0,
        });
        let mut n = 0;
        while m.alloc(n % 3, 0).is_some() {
            n += 1;
        }
        assert_eq!(u64::from(n), 3 * CL + 100 - 2, "{name}");
        assert_eq!(m.snapshot().used_slots, u64::from(n));
        assert_eq!(
            m.snapshot().fragmentation_by_order,
            [0.0; swapscope_core::alloc::NR_ORDERS]
        );
    }
}

/// Every model family keeps its slots in the one bitmap, `alloc::frag::UsedBitmap` (the kernel
/// models and the real occupancy directly; buddy, classified and discontiguous inside
/// `models::slotmap::SlotMap`, with the device's reserved slots) and reports free space through
/// `FragStats`, the one calculation: for the same occupancy the alternatives' snapshot must say
/// what a plain bitmap of the device says, or the report's `fragmentation_by_order` would differ
/// between model families by construction rather than by policy.
mod one_fragmentation {
    use proptest::prelude::*;

    use crate::slotmap::{SlotMap, generic_cluster_counts, snapshot_of};
    use swapscope_core::alloc::CLUSTER_SLOTS;
    use swapscope_core::alloc::frag::{FragStats, UsedBitmap};
    use swapscope_core::event::SwapOn;

    /// A device and runs `(start, len)` to mark used, inside `1..max`.
    fn case() -> impl Strategy<Value = (SwapOn, Vec<(u64, u64)>)> {
        (
            1u64..5,
            0u64..CLUSTER_SLOTS,
            prop::collection::vec(1u64..2500, 0..4),
        )
            .prop_flat_map(|(clusters, tail, bad)| {
                let max = clusters * CLUSTER_SLOTS + tail;
                let runs = prop::collection::vec((1..max, 1u64..600), 0..40);
                (
                    Just(SwapOn {
                        ts_ns: 0,
                        swap_type: 0,
                        max,
                        bad,
                        flags: 0,
                        prio: 0,
                    }),
                    runs,
                )
            })
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(256))]

        #[test]
        fn both_bitmaps_report_the_same_fragmentation((dev, runs) in case()) {
            let mut sm = SlotMap::new(&dev);
            // The same reserved slots: header, bad slots inside the device, the tail past `max`.
            let len = (sm.nclusters() as u64) * CLUSTER_SLOTS;
            let mut ub = UsedBitmap::new_free(len);
            ub.set_used(0, 1);
            ub.set_used(dev.max, len - dev.max);
            for &b in &dev.bad {
                if b >= 1 && b < dev.max {
                    ub.set_used(b, 1);
                }
            }
            for (start, n) in runs {
                let end = (start + n).min(dev.max);
                for s in start..end {
                    if !ub.is_used(s) {
                        ub.set_used(s, 1);
                        sm.mark_used(s, 1);
                    }
                }
            }
            let a = FragStats::of(&ub);
            let b = snapshot_of(std::iter::once(&sm), 0, generic_cluster_counts);
            let fa = a.fragmentation_by_order();
            for (k, (x, y)) in fa.iter().zip(b.fragmentation_by_order.iter()).enumerate() {
                prop_assert!((x - y).abs() < 1e-12, "order {}: FragStats {} vs slotmap {}", k, x, y);
            }
            prop_assert_eq!(a.largest_free_run, b.largest_free_run);
        }
    }
}
