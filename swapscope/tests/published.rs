//! The published behaviour the models must reproduce (issue: shadow allocator engine).
//!
//! Upstream (Chris Li, "mm: swap: mTHP swap allocator base on swap cluster order", v5 cover
//! letter) ran `tools/mm/thp_swap_allocator_test -a` on a 64 MiB zram device: before the series
//! (6.10's allocator) 85.71 % of 64 KiB swap-outs fell back in iteration 1 and 100 % from
//! iteration 2 on; with it, 0 %. `simulate --workload thp-fragment --swapin small` follows that
//! test with one CPU as the kernels of 2024 ran it (no large-folio swap-in); the default
//! (`--swapin large`) follows today's kernels, whose own runs of the test are the reference.

use swapscope::{
    engine::{Engine, EngineConfig, MarkerReport},
    models,
    workload::{self, WorkloadSpec},
};

fn rate(m: &MarkerReport, model: &str) -> f64 {
    m.models
        .iter()
        .find(|r| r.name == model)
        .and_then(|r| r.fallback_rate_by_order.get("4").copied())
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

fn requests(m: &MarkerReport, model: &str, order: &str) -> u64 {
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
            let large = requests(m, "linux-6.18", "4") as f64;
            let small = requests(m, "linux-6.18", "0");
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

fn failures(spec: &WorkloadSpec, names: &[&str], order: &str) -> Vec<u64> {
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
        let f = failures(&spec, &["linux-6.14", "linux-6.18"], "4");
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
            let n = requests(m, "rr-scan", "4") as f64;
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
