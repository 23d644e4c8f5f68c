//! The published behaviour the models must reproduce (issue: shadow allocator engine).
//!
//! Upstream (Chris Li, "mm: swap: mTHP swap allocator base on swap cluster order", v5 cover
//! letter) ran `tools/mm/thp_swap_allocator_test -a` on a 64 MiB zram device: before the series
//! (6.10's allocator) 85.71 % of 64 KiB swap-outs fell back in iteration 1 and 100 % from
//! iteration 2 on; with it, 0 %. `simulate --workload thp-fragment --swapin small` follows that
//! test with one CPU as the kernels of 2024 ran it (no large-folio swap-in); the default
//! (`--swapin large`) follows today's kernels, whose own runs of the test are the reference.

use swapscope::models::Vswap;
use swapscope::{
    engine::{Engine, EngineConfig, MarkerReport},
    models,
    workload::{self, WorkloadSpec},
};

fn rate(m: &MarkerReport, model: &str) -> f64 {
    m.models
        .iter()
        .find(|r| r.name == model)
        .and_then(|r| r.fallback_rate_by_order.get(&4).copied())
        .unwrap_or(f64::NAN)
}

/// The per-iteration reports of `spec` replayed through linux-6.10 and linux-6.18.
fn iterations_of(spec: &WorkloadSpec) -> Vec<MarkerReport> {
    iterations_with(spec, &["linux-6.10", "linux-6.18"])
}

/// The per-iteration reports of `spec` replayed through the models `names`.
fn iterations_with(spec: &WorkloadSpec, names: &[&str]) -> Vec<MarkerReport> {
    let events = match workload::generate(spec) {
        Ok(e) => e,
        Err(e) => panic!("{e}"),
    };
    let chosen = names.iter().filter_map(|n| models::by_name(n)).collect();
    let mut engine = Engine::new(chosen, EngineConfig::default());
    engine.feed_all(&events);
    engine
        .report()
        .markers
        .into_iter()
        .filter(|m| m.label.starts_with("iteration "))
        .collect()
}

fn requests(m: &MarkerReport, model: &str, order: &u8) -> u64 {
    m.models
        .iter()
        .find(|r| r.name == model)
        .and_then(|r| r.requests_by_order.get(order).copied())
        .unwrap_or(0)
}

/// Today's kernels swap whole 64 KiB folios back in from zram. The kernel's own test run on
/// Linux 6.18 (this project's host, 100 iterations, docs/results.md) wrote per iteration a mean
/// of 397.4 64 KiB folios with `-a` (384–413; 6.12 and 7.2 VMs agree) and 949.8 without it
/// (943–957), no order-0 folio, and fell back 0 % both ways. The default workload must give
/// each iteration's 64 KiB requests within 10 % of those means, no order-0 requests (the
/// real runs had none), and linux-6.18 must fall back ≤ 1 %.
#[test]
fn thp_fragment_matches_todays_kernels_with_large_folio_swap_in() {
    for (aligned, real_mean) in [(true, 397.4), (false, 949.8)] {
        let mut spec = WorkloadSpec::new("thp-fragment");
        spec.cpus = 1;
        spec.iterations = Some(30);
        spec.aligned = aligned;
        let its = iterations_of(&spec);
        assert_eq!(its.len(), 30);
        for (i, m) in its.iter().enumerate() {
            let large = requests(m, "linux-6.18", &4) as f64;
            let small = requests(m, "linux-6.18", &0);
            assert!(
                (large - real_mean).abs() <= 0.10 * real_mean,
                "aligned {aligned}, iteration {i}: {large} 64 KiB requests, the kernel's mean {real_mean}"
            );
            assert_eq!(
                small, 0,
                "aligned {aligned}, iteration {i}: order-0 requests"
            );
            let new = rate(m, "linux-6.18");
            assert!(
                new <= 0.01,
                "aligned {aligned}, iteration {i}: linux-6.18 fell back {new}"
            );
        }
    }
}

#[test]
fn thp_fragment_reproduces_the_published_fallback_rates() {
    // The cover letter's configuration: no large-folio swap-in (2024 kernels), the test's `-a`.
    let mut spec = WorkloadSpec::new("thp-fragment");
    spec.cpus = 1;
    spec.iterations = Some(30);
    spec.swapin = workload::SwapIn::Small;
    let iterations = iterations_of(&spec);
    assert_eq!(iterations.len(), 30);
    for (i, m) in iterations.iter().enumerate() {
        let old = rate(m, "linux-6.10");
        let new = rate(m, "linux-6.18");
        if i == 0 {
            // Published: 85.71 % in the first iteration.
            assert!(
                (old - 0.8571).abs() <= 0.03,
                "linux-6.10 iteration 0: fallback {old}, published 85.71 %"
            );
        }
        if i >= 10 {
            assert!(
                old >= 0.90,
                "linux-6.10 iteration {i}: fallback {old} < 90 %"
            );
        }
        assert!(
            new <= 0.01,
            "linux-6.18 iteration {i}: fallback {new} > 1 %"
        );
    }
}

fn failures(spec: &WorkloadSpec, names: &[&str], order: &u8) -> Vec<u64> {
    let events = match workload::generate(spec) {
        Ok(e) => e,
        Err(e) => panic!("{e}"),
    };
    let chosen = names.iter().filter_map(|n| models::by_name(n)).collect();
    let mut engine = Engine::new(chosen, EngineConfig::default());
    engine.feed_all(&events);
    let report = engine.report();
    names
        .iter()
        .map(|n| {
            report
                .models
                .iter()
                .find(|m| m.name == *n)
                .and_then(|m| m.failures_by_order.get(order).copied())
                .unwrap_or(u64::MAX)
        })
        .collect()
}

/// Kairui Song's 9a42aed48421 ("mm, swap: prefer nonfull over free clusters", 6.18) cut the
/// 64 KiB `swpout_fallback` of `make -j96` on an 8G zram from 139,503 to 56,147 (÷2.5; 17,676 →
/// 0 on 10G). `fill-drain` (a device filled to 95 % with mixed sizes, drained at random to half
/// and refilled with large folios) on 256 MiB with 4 CPUs shows the same direction and size:
/// seeds 1–5 give linux-6.14 538, 480, 392, 507, 600 order-4 fallbacks and linux-6.18 212, 185,
/// 158, 209, 309 (2,517 vs 1,073, ÷2.3). Each seed must show 6.14 ≥ 1.5 × 6.18, and the total
/// ≥ 2 ×.
#[test]
fn fill_drain_prefer_nonfull_over_free_cuts_64k_fallback() {
    let (mut old, mut new) = (0, 0);
    for seed in 1..=5 {
        let mut spec = WorkloadSpec::new("fill-drain");
        spec.swap_size_bytes = 256 << 20;
        spec.cpus = 4;
        spec.seed = seed;
        let f = failures(&spec, &["linux-6.14", "linux-6.18"], &4);
        let (o, n) = (f[0], f[1]);
        assert!(
            o * 2 >= n * 3,
            "seed {seed}: linux-6.14 fell back {o} times at 64 KiB, linux-6.18 {n}"
        );
        old += o;
        new += n;
    }
    assert!(
        old >= 2 * new,
        "64 KiB fallbacks: linux-6.14 {old}, linux-6.18 {new}"
    );
}

/// Ryan Roberts' RFC "Alternative mTHP swap allocator improvements" (June 2024, patch 4/5):
/// with it, `thp_swap_allocator_test`'s fallback "which was previously 100% after a few
/// iterations, falls to 0% and stays there for all 100 iterations. This is also the case when
/// sprinkling in some non-mTHP allocations ("-s") too." On `thp-fragment --swapin small` (one
/// CPU, `-a`) rr-scan falls back 0 times in 100 iterations (0 of 23,393 order-4 requests;
/// linux-6.10: 22,401, 100 % from iteration 1). With `-s` it is not quite 0: 651 of 23,423
/// (2.8 %), single iterations up to 17 % (linux-6.10: 100 % from iteration 0). Asserted here on
/// 30 iterations: linux-6.10 ≥ 90 % from iteration 1; rr-scan ≤ 1 % in every iteration
/// without `-s`, ≤ 5 % over the run and ≤ 25 % in any iteration with it.
#[test]
fn rr_scan_reproduces_the_rfc_fallback_rates() {
    for small in [false, true] {
        let mut spec = WorkloadSpec::new("thp-fragment");
        spec.cpus = 1;
        spec.iterations = Some(30);
        spec.swapin = workload::SwapIn::Small;
        spec.small = small;
        let its = iterations_with(&spec, &["linux-6.10", "rr-scan"]);
        assert_eq!(its.len(), 30);
        let (mut req, mut fail) = (0.0, 0.0);
        for (i, m) in its.iter().enumerate() {
            let old = rate(m, "linux-6.10");
            let new = rate(m, "rr-scan");
            if i >= 1 {
                assert!(
                    old >= 0.90,
                    "-s {small}, iteration {i}: linux-6.10 fell back {old}"
                );
            }
            let limit = if small { 0.25 } else { 0.01 };
            assert!(
                new <= limit,
                "-s {small}, iteration {i}: rr-scan fell back {new}"
            );
            let n = requests(m, "rr-scan", &4) as f64;
            req += n;
            fail += new * n;
        }
        let limit = if small { 0.05 } else { 0.01 };
        assert!(
            fail / req <= limit,
            "-s {small}: rr-scan fell back {fail} of {req} order-4 requests"
        );
    }
}

/// A simulated stream replayed straight into `m` (no engine, so the model's own counters stay
/// readable): each folio's pages are mapped to the model's slots as the engine maps them, and
/// freed page by page. `observe` sees the model before every free. Returns the model and its
/// order-4 requests and fallbacks.
fn replay<M: swapscope::alloc::AllocatorModel>(
    mut m: M,
    spec: &WorkloadSpec,
    mut observe: impl FnMut(&M),
) -> (M, u64, u64) {
    use std::collections::HashMap;
    use swapscope::alloc::serve_folio;
    use swapscope::event::{AllocResult, Event, virtual_slot};

    let events = match workload::generate(spec) {
        Ok(e) => e,
        Err(e) => panic!("{e}"),
    };
    let mut pages: HashMap<u64, Vec<Option<(u8, u64)>>> = HashMap::new();
    let (mut req, mut fail) = (0u64, 0u64);
    let mut scratch = Vec::new();
    for ev in &events {
        match ev {
            Event::SwapOn(on) => m.swapon(on),
            Event::Alloc(a) if a.result == AllocResult::Unknown => {
                let mut slots = vec![None; 1 << a.order];
                let ok = serve_folio(
                    &mut m,
                    swapscope::alloc::Cpus::on(a.cpu),
                    a.order,
                    &mut scratch,
                    |r| {
                        let Some(ext) = r.extents else { return };
                        let mut p = r.page as usize;
                        for e in ext {
                            for j in 0..u64::from(e.nr) {
                                if let Some(s) = slots.get_mut(p) {
                                    *s = Some((e.swap_type, e.offset + j));
                                }
                                p += 1;
                            }
                        }
                    },
                );
                if a.order == 4 {
                    req += 1;
                    fail += u64::from(!ok);
                }
                pages.insert(a.id, slots);
            }
            Event::Free(f) if f.swap_type == virtual_slot::SWAP_TYPE => {
                observe(&m);
                for off in f.offset..f.offset + u64::from(f.nr) {
                    let (id, page) = (virtual_slot::id(off), virtual_slot::page(off));
                    let slot = pages
                        .get_mut(&id)
                        .and_then(|v| v.get_mut(page as usize))
                        .and_then(Option::take);
                    if let Some((t, o)) = slot {
                        m.free(t, o, 1);
                    }
                }
            }
            _ => {}
        }
    }
    (m, req, fail)
}

/// [`replay`] into a [`Vswap`]; also returns the peak of `metadata_bytes` with the physical
/// slots in use at that moment.
fn replay_vswap(spec: &WorkloadSpec) -> (Vswap, u64, u64, (u64, u64)) {
    use swapscope::alloc::AllocatorModel;
    let mut peak = (0u64, 0u64);
    let (m, req, fail) = replay(Vswap::new(), spec, |m| {
        let s = m.snapshot();
        if s.metadata_bytes > peak.0 {
            peak = (s.metadata_bytes, s.used_slots);
        }
    });
    (m, req, fail, peak)
}

/// Nhat Pham's virtual swap space (v3, February 2026; Swap Table Edition RFC, June 2026)
/// published no fragmentation figures; this is swapscope's. A request gets virtual slots, so on
/// `thp-fragment --swapin small` (the cover letter's `-a` configuration, where linux-6.10 falls
/// back 100 %) vswap never falls back. Simulated streams have no write-out events, so the model
/// backs each request at once (contiguous when a free aligned run exists, page by page
/// otherwise). What it pays: 16 bytes per slot in use (8 B `virtual_table` + 8 B rmap), i.e. a
/// peak of 245,760 B at 15,360 slots here; and on a fragmented device (`fill-drain`, 256 MiB,
/// 4 CPUs, where linux-6.18 falls back 212 times at 64 KiB) it still never falls back, but only
/// 96.8 % of its large folios (6,771 of 6,994) get one contiguous physical run: the rest could
/// not be swapped back in as a whole (`vswap_can_swapin_thp`), and the posted code would have
/// kept them in memory instead.
#[test]
fn vswap_never_falls_back_and_pays_in_metadata_and_contiguity() {
    use swapscope::alloc::AllocatorModel;
    use swapscope::models::vswap::{RMAP_BYTES, VTABLE_BYTES};

    let mut spec = WorkloadSpec::new("thp-fragment");
    spec.cpus = 1;
    spec.iterations = Some(30);
    spec.swapin = workload::SwapIn::Small;
    let its = iterations_with(&spec, &["linux-6.10", "vswap"]);
    assert_eq!(its.len(), 30);
    for (i, m) in its.iter().enumerate() {
        let (old, new) = (rate(m, "linux-6.10"), rate(m, "vswap"));
        if i >= 1 {
            assert!(old >= 0.90, "iteration {i}: linux-6.10 fell back {old}");
        }
        assert_eq!(new, 0.0, "iteration {i}: vswap fell back");
    }
    let (m, req, fail, (peak, peak_used)) = replay_vswap(&spec);
    assert!(req > 5_000, "{req} order-4 requests");
    assert_eq!(fail, 0);
    assert!(!m.is_lazy(), "no write-out events in a simulated stream");
    assert!(peak_used > 10_000, "peak {peak_used} slots in use");
    assert_eq!(peak, peak_used * (VTABLE_BYTES + RMAP_BYTES));
    let s = m.snapshot();
    assert_eq!(s.metadata_bytes, s.used_slots * (VTABLE_BYTES + RMAP_BYTES));

    let mut spec = WorkloadSpec::new("fill-drain");
    spec.swap_size_bytes = 256 << 20;
    spec.cpus = 4;
    let f = failures(&spec, &["linux-6.18", "vswap"], &4);
    assert!(f[0] > 100, "linux-6.18 fell back {} times", f[0]);
    assert_eq!(f[1], 0, "vswap fell back");
    let (m, _, fail, (peak, _)) = replay_vswap(&spec);
    assert_eq!(fail, 0);
    let c = m.physical_contiguity().unwrap_or(f64::NAN);
    assert!(
        (0.90..1.0).contains(&c),
        "physical contiguity {c}: {:?}",
        m.writeout_stats()
    );
    assert!(peak > 900_000, "peak metadata {peak} B");
}

/// The hard case for an indirection design (docs/models.md, discontiguous): parent and child
/// share swapped-out 64 KiB folios and the child zaps parts of them (`fork-partial-zap`,
/// 64 MiB, 50 iterations). On this stream `discontiguous` never falls back (linux-6.10: 4,176
/// of 5,008) and gathers a few hundred 64 KiB entries; at the worst moment some of them are
/// partly freed. Because the model gives each freed page's slot back at once it pins no slot
/// (used slots = live pages, proptest `piecemeal_frees_of_gathered_entries_stay_exact`); a
/// design that releases an entry's slots only with its last page would pin the freed pages, and
/// descriptor arrays kept whole cost more than the repacked lower bound `metadata_bytes`.
#[test]
fn discontiguous_pays_for_partly_freed_entries_on_fork_partial_zap() {
    use swapscope::alloc::AllocatorModel;
    use swapscope::models::discontiguous::{DESCRIPTOR_BYTES, IndirectionStats};

    let spec = WorkloadSpec::new("fork-partial-zap");
    let mut worst = IndirectionStats::default();
    let mut peak_meta = 0u64;
    let (m, req, fail) = replay(models::Discontiguous::new(), &spec, |m| {
        let i = m.indirection();
        if i.partial_entries > worst.partial_entries {
            worst = i;
        }
        peak_meta = peak_meta.max(m.snapshot().metadata_bytes);
    });
    let end = m.indirection();
    eprintln!(
        "fork-partial-zap: {req} order-4 requests, {fail} fallbacks; worst {worst:?}; peak metadata {peak_meta} B; end {end:?}"
    );
    assert!(req > 4_000);
    assert_eq!(fail, 0);
    assert!(end.made > 0, "some 64 KiB entries were gathered");
    assert!(worst.partial_entries > 0, "{worst:?}");
    assert!(worst.pinned_if_whole > 0);
    assert!(worst.array_bytes > worst.live_pages * DESCRIPTOR_BYTES);
    assert!(peak_meta >= worst.live_pages * DESCRIPTOR_BYTES);
}

/// A real recording replayed straight into a [`Vswap`], with its write-out events: stream slots
/// map to the model's (virtual) slots page by page, write-outs go through that map as the
/// engine hands them. Returns the model, its order-4 fallbacks, and at the moment the model held
/// the most virtual slots: (virtual slots, physical slots, metadata bytes).
fn replay_recording_vswap(name: &str) -> (Vswap, u64, (u64, u64, u64)) {
    use std::collections::HashMap;
    use swapscope::alloc::{AllocatorModel, serve_folio};
    use swapscope::event::{AllocResult, Event};
    use swapscope::record::Reader;

    let path = format!("{}/tests/data/{name}.swsc", env!("CARGO_MANIFEST_DIR"));
    let file = match std::fs::File::open(&path) {
        Ok(f) => f,
        Err(e) => panic!("{path}: {e}"),
    };
    let mut reader = match Reader::open_named(std::io::BufReader::new(file), &path) {
        Ok(r) => r,
        Err(e) => panic!("{path}: {e}"),
    };
    let mut m = Vswap::new();
    let mut map: HashMap<(u8, u64), (u8, u64)> = HashMap::new();
    let mut scratch = Vec::new();
    let (mut fail, mut peak) = (0u64, (0u64, 0u64, 0u64));
    while let Ok(Some(ev)) = reader.next_event() {
        match ev {
            Event::SwapOn(on) => m.swapon(&on),
            Event::SwapOff(off) => m.swapoff(off.swap_type),
            Event::Alloc(a) => match a.result {
                AllocResult::Success { swap_type, offset } => {
                    let ok = serve_folio(
                        &mut m,
                        swapscope::alloc::Cpus::on(a.cpu),
                        a.order,
                        &mut scratch,
                        |r| {
                            let Some(ext) = r.extents else { return };
                            let mut p = offset + r.page;
                            for e in ext {
                                for j in 0..u64::from(e.nr) {
                                    map.insert((swap_type, p), (e.swap_type, e.offset + j));
                                    p += 1;
                                }
                            }
                        },
                    );
                    fail += u64::from(!ok && a.order == 4);
                    let live = m.live_virtual();
                    if live > peak.0 {
                        peak = (live, m.backed(), m.snapshot().metadata_bytes);
                    }
                }
                AllocResult::Failure => {
                    scratch.clear();
                    if m.alloc_into(a.cpu, a.order, &mut scratch) {
                        for e in &scratch {
                            m.free(e.swap_type, e.offset, e.nr);
                        }
                    } else if a.order == 4 {
                        fail += 1;
                    }
                }
                AllocResult::Unknown => {}
            },
            Event::Free(f) => {
                for p in f.offset..f.offset + u64::from(f.nr) {
                    if let Some((t, o)) = map.remove(&(f.swap_type, p)) {
                        m.free(t, o, 1);
                    }
                }
            }
            Event::Writeout(w) => {
                // One call per run of consecutive model slots, as the engine's slot map visits.
                let mut run: Option<(u8, u64, u32)> = None;
                for p in w.offset..w.offset + (1u64 << w.order.min(9)) {
                    let Some(&(t, o)) = map.get(&(w.swap_type, p)) else {
                        continue;
                    };
                    run = match run {
                        Some((rt, ro, n)) if rt == t && ro + u64::from(n) == o => {
                            Some((rt, ro, n + 1))
                        }
                        other => {
                            if let Some((rt, ro, n)) = other {
                                m.writeout(rt, ro, n);
                            }
                            Some((t, o, 1))
                        }
                    };
                }
                if let Some((rt, ro, n)) = run {
                    m.writeout(rt, ro, n);
                }
            }
            _ => {}
        }
    }
    (m, fail, peak)
}

/// vswap on the kernel's own streams (Debian 7.3 VMs, full probe tier, with write-out events):
/// the model becomes lazy at the first write-out and from then on takes physical slots only for
/// written-out folios. On `vm-7.3-full-frag` the kernel split 1,878 of 13,841 64 KiB folios;
/// vswap refuses none and backs every write-out, most of them contiguously.
#[test]
fn vswap_on_real_recordings() {
    for name in [
        "vm-7.3-full-frag",
        "vm-7.3-full-swapin",
        "vm-7.3-full-timed",
    ] {
        let (m, fail, (virt, phys, meta)) = replay_recording_vswap(name);
        let st = m.writeout_stats();
        eprintln!(
            "{name}: fallbacks {fail}; at the virtual peak {virt} virtual, {phys} physical, {meta} B; {st:?}; contiguity {:?}",
            m.physical_contiguity()
        );
        assert!(m.is_lazy(), "{name}: write-outs seen");
        assert_eq!(fail, 0, "{name}");
        assert_eq!(st.unbacked_pages, 0, "{name}");
        assert!(phys <= virt, "{name}");
    }
}
