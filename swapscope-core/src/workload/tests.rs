//! Stream-level checks for every workload: the engine contract of `mod.rs`.

use std::collections::HashMap;

use proptest::prelude::*;

use super::*;
use crate::event::{AllocResult, Event, swap_flags, virtual_slot};

/// Summary of a checked stream.
#[derive(Debug, Default)]
struct Summary {
    allocs: u64,
    alloc_pages: u64,
    freed_pages: u64,
    live_pages: u64,
    max_live: u64,
    by_order: [u64; 10],
    iterations: u32,
}

/// Replays a stream against the contract; panics on any violation.
fn check(spec: &WorkloadSpec, events: &[Event]) -> Summary {
    let mut sum = Summary::default();
    let Some(Event::SwapOn(on)) = events.first() else {
        panic!("first event is not SwapOn")
    };
    assert_eq!(on.max, spec.slots() + 1);
    assert_eq!(
        on.flags,
        swap_flags::SOLIDSTATE | swap_flags::BLKDEV | swap_flags::SYNCHRONOUS_IO
    );
    let mut live: HashMap<u64, Vec<bool>> = HashMap::new();
    let mut last_ts = 0;
    let mut seen_warmup = false;
    let mut next_iter = 0u32;
    for ev in events {
        assert!(ev.ts() > last_ts, "timestamps strictly increase");
        last_ts = ev.ts();
        match ev {
            Event::SwapOn(_) => {}
            Event::Marker(m) => {
                if m.label == "warmup" {
                    assert!(!seen_warmup && next_iter == 0);
                    seen_warmup = true;
                } else {
                    assert!(seen_warmup, "warmup marker first");
                    assert_eq!(m.label, format!("iteration {next_iter}"));
                    next_iter += 1;
                }
            }
            Event::Alloc(a) => {
                assert!(a.cpu < spec.cpus);
                assert!(a.order <= 9);
                assert_eq!(a.result, AllocResult::Unknown);
                assert!(a.id < (1u64 << 54));
                let n = 1usize << a.order;
                assert!(
                    live.insert(a.id, vec![true; n]).is_none(),
                    "id {} reused",
                    a.id
                );
                sum.allocs += 1;
                sum.alloc_pages += n as u64;
                sum.live_pages += n as u64;
                sum.max_live = sum.max_live.max(sum.live_pages);
                sum.by_order[usize::from(a.order)] += 1;
            }
            Event::Free(f) => {
                assert!(f.cpu < spec.cpus);
                assert_eq!(f.swap_type, virtual_slot::SWAP_TYPE);
                assert!(f.nr > 0);
                let id = virtual_slot::id(f.offset);
                let p = virtual_slot::page(f.offset) as usize;
                let Some(pages) = live.get_mut(&id) else {
                    panic!("free of unknown id {id}")
                };
                assert!(
                    p + f.nr as usize <= pages.len(),
                    "free spans past the allocation"
                );
                for (q, page) in pages.iter_mut().enumerate().skip(p).take(f.nr as usize) {
                    assert!(*page, "page {q} of {id} freed twice");
                    *page = false;
                }
                sum.freed_pages += u64::from(f.nr);
                sum.live_pages -= u64::from(f.nr);
                if pages.iter().all(|&x| !x) {
                    live.remove(&id);
                }
            }
            other => panic!("unexpected event {other:?}"),
        }
    }
    assert!(seen_warmup);
    sum.iterations = next_iter;
    let still: u64 = live
        .values()
        .map(|v| v.iter().filter(|&&x| x).count() as u64)
        .sum();
    assert_eq!(still, sum.live_pages);
    assert_eq!(
        sum.freed_pages + sum.live_pages,
        sum.alloc_pages,
        "frees + live = allocs"
    );
    assert!(
        sum.max_live <= spec.slots(),
        "live pages {} exceed the device",
        sum.max_live
    );
    sum
}

fn spec(name: &str, mib: u64, iterations: u32) -> WorkloadSpec {
    WorkloadSpec {
        swap_size_bytes: mib << 20,
        iterations: Some(iterations),
        cpus: 3,
        ..WorkloadSpec::new(name)
    }
}

#[test]
fn every_workload_keeps_the_contract_and_is_deterministic() {
    for name in NAMES {
        let sp = spec(name, 16, 3);
        let a = generate(&sp).unwrap_or_default();
        let sum = check(&sp, &a);
        assert_eq!(sum.iterations, 3, "{name}");
        assert!(sum.allocs > 100, "{name}: {sum:?}");
        assert_eq!(
            generate(&sp).unwrap_or_default(),
            a,
            "{name}: same seed, same stream"
        );
        let other = generate(&WorkloadSpec {
            seed: 99,
            ..sp.clone()
        })
        .unwrap_or_default();
        assert_ne!(other, a, "{name}: another seed, another stream");
    }
}

#[test]
fn thp_fragment_follows_the_kernel_test_sizes() {
    let sp = spec("thp-fragment", 64, 2);
    let ev = generate(&sp).unwrap_or_default();
    let sum = check(&sp, &ev);
    // Warm-up: 60 MiB of 64 KiB folios = 960 order-4 requests.
    let warm: Vec<_> = ev
        .iter()
        .skip_while(|e| !matches!(e, Event::Marker(m) if m.label == "warmup"))
        .take_while(|e| !matches!(e, Event::Marker(m) if m.label == "iteration 0"))
        .filter_map(|e| {
            if let Event::Alloc(a) = e {
                Some(a.order)
            } else {
                None
            }
        })
        .collect();
    assert_eq!(warm.len(), 960);
    assert!(warm.iter().all(|&o| o == 4));
    // Each iteration zaps 256 chunks and touches 256 more: with large-folio swap-in (the
    // default) a swapped-out chunk comes back whole, so every request is 64 KiB (about 397 an
    // iteration, as the kernel's own runs); page by page (`SwapIn::Small`) the touched chunks
    // come back as order-0 pages.
    assert!(
        sum.by_order[4] > 960 + 2 * 350 && sum.by_order[4] <= 960 + 2 * 512,
        "{sum:?}"
    );
    assert_eq!(sum.by_order[0], 0, "{sum:?}");
    assert_eq!(sum.max_live, 15360);
    let small = WorkloadSpec {
        swapin: SwapIn::Small,
        ..sp.clone()
    };
    let sum = check(&small, &generate(&small).unwrap_or_default());
    assert!(
        sum.by_order[4] > 960 && sum.by_order[4] <= 960 + 2 * 256,
        "{sum:?}"
    );
    assert!(sum.by_order[0] > 2 * 2000, "{sum:?}");

    let sp = WorkloadSpec { small: true, ..sp };
    let sum = check(&sp, &generate(&sp).unwrap_or_default());
    assert_eq!(
        sum.max_live, 16384,
        "with -s the two areas fill the device exactly"
    );
}

#[test]
fn fork_partial_zap_frees_shared_slots_only_once() {
    let sp = spec("fork-partial-zap", 8, 25);
    let ev = generate(&sp).unwrap_or_default();
    let sum = check(&sp, &ev);
    assert!(sum.freed_pages > 0);
    // Partial frees of 64 KiB allocations happen (child zaps, parent keeps).
    let partial = ev
        .iter()
        .filter(|e| matches!(e, Event::Free(f) if f.nr < 16))
        .count();
    assert!(partial > 0);
}

#[test]
fn mixed_orders_stays_past_half_full() {
    let sp = spec("mixed-orders", 32, 4);
    let ev = generate(&sp).unwrap_or_default();
    let sum = check(&sp, &ev);
    for o in [0, 2, 3, 4, 5, 9] {
        assert!(sum.by_order[o] > 0, "order {o} missing: {sum:?}");
    }
    // Occupancy at each iteration marker is above half the device.
    let mut live = 0i64;
    let n = sp.slots() as i64;
    for e in &ev {
        match e {
            Event::Alloc(a) => live += 1 << a.order,
            Event::Free(f) => live -= i64::from(f.nr),
            Event::Marker(m) if m.label.starts_with("iteration") => {
                assert!(live * 2 > n, "{live}/{n}")
            }
            _ => {}
        }
    }
}

#[test]
fn fill_drain_cycles_between_half_and_95_percent() {
    let sp = spec("fill-drain", 16, 3);
    let ev = generate(&sp).unwrap_or_default();
    check(&sp, &ev);
    let n = sp.slots() as i64;
    let mut live = 0i64;
    for e in &ev {
        match e {
            Event::Alloc(a) => live += 1 << a.order,
            Event::Free(f) => live -= i64::from(f.nr),
            Event::Marker(m) if m.label.starts_with("iteration") => {
                assert!(live * 100 >= n * 94, "full before each drain: {live}/{n}")
            }
            _ => {}
        }
    }
}

#[test]
fn spec_errors() {
    assert_eq!(
        generate(&WorkloadSpec::new("nope")),
        Err(WorkloadError::Unknown("nope".into()))
    );
    let bad = WorkloadSpec {
        swap_size_bytes: 4097 * 1024,
        ..WorkloadSpec::new("fill-drain")
    };
    assert_eq!(generate(&bad), Err(WorkloadError::SwapSize(4097 * 1024)));
    let bad = WorkloadSpec {
        cpus: 0,
        ..WorkloadSpec::new("fill-drain")
    };
    assert_eq!(generate(&bad), Err(WorkloadError::Cpus(0)));
    assert_eq!(default_iterations("thp-fragment"), Some(100));
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(12))]
    #[test]
    fn any_seed_and_cpu_count_keeps_the_contract(seed in any::<u64>(), cpus in 1u32..9, w in 0usize..4, small in any::<bool>(), large in any::<bool>(), aligned in any::<bool>()) {
        let swapin = if large { SwapIn::Large } else { SwapIn::Small };
        let sp = WorkloadSpec { seed, cpus, small, swapin, aligned, ..spec(NAMES[w], 4, 2) };
        let ev = generate(&sp).unwrap_or_default();
        let sum = check(&sp, &ev);
        prop_assert_eq!(sum.iterations, 2);
    }
}
