//! The published behaviour the models must reproduce (issue: shadow allocator engine).
//!
//! Upstream (Chris Li, "mm: swap: mTHP swap allocator base on swap cluster order", v5 cover
//! letter) ran `tools/mm/thp_swap_allocator_test -a` on a 64 MiB zram device: before the series
//! (6.10's allocator) 85.71 % of 64 KiB swap-outs fell back in iteration 1 and 100 % from
//! iteration 2 on; with it, 0 %. `simulate --workload thp-fragment` follows that test with one
//! CPU, 64 KiB-aligned swap-in being its default.

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

#[test]
fn thp_fragment_reproduces_the_published_fallback_rates() {
    let mut spec = WorkloadSpec::new("thp-fragment");
    spec.cpus = 1;
    spec.iterations = Some(30);
    let events = match workload::generate(&spec) {
        Ok(e) => e,
        Err(e) => panic!("{e}"),
    };
    let chosen = ["linux-6.10", "linux-6.18"]
        .iter()
        .filter_map(|n| models::by_name(n))
        .collect();
    let mut engine = Engine::new(chosen, EngineConfig::default());
    engine.feed_all(&events);
    let report = engine.report();
    let iterations: Vec<&MarkerReport> = report
        .markers
        .iter()
        .filter(|m| m.label.starts_with("iteration "))
        .collect();
    assert_eq!(iterations.len(), 30);
    for (i, m) in iterations.iter().enumerate() {
        let old = rate(m, "linux-6.10");
        let new = rate(m, "linux-6.18");
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
