use proptest::prelude::*;

// The engine fed through the built-in models: these tests live beside the models, since the core
// that holds the engine does not depend on them.

use swapscope_core::alloc::AllocatorModel;
use swapscope_core::alloc::CLUSTER_SLOTS as CL;
use swapscope_core::engine::*;
use swapscope_core::event::swap_flags::{BLKDEV, SOLIDSTATE};
use swapscope_core::event::*;
use swapscope_models::{self as models, Linux618};

const SSD: u32 = SOLIDSTATE | BLKDEV;

fn swapon(ty: u8, clusters: u64, flags: u32) -> Event {
    Event::SwapOn(SwapOn {
        ts_ns: 0,
        swap_type: ty,
        max: clusters * CL,
        bad: vec![],
        flags,
        prio: 0,
    })
}

fn alloc(cpu: u32, order: u8, id: u64, result: AllocResult) -> Event {
    Event::Alloc(Alloc {
        ts_ns: 0,
        cpu,
        order,
        id,
        result,
        latency_ns: None,
        inferred: false,
    })
}

fn ok(swap_type: u8, offset: u64) -> AllocResult {
    AllocResult::Success { swap_type, offset }
}

fn free(swap_type: u8, offset: u64, nr: u32) -> Event {
    Event::Free(Free {
        ts_ns: 0,
        cpu: 0,
        swap_type,
        offset,
        nr,
    })
}

fn marker(label: &str) -> Event {
    Event::Marker(Marker {
        ts_ns: 0,
        label: label.to_string(),
    })
}

/// Every model, with linux-6.12's order-0 slot cache off: a cache holds slots it has not handed
/// out yet, so its occupancy would run ahead of the stream's (that cache has its own tests).
fn all_models() -> Vec<Box<dyn swapscope_core::alloc::AllocatorModel>> {
    models::NAMES
        .iter()
        .filter_map(|n| match *n {
            models::Linux612::NAME => Some(Box::new(models::Linux612::new().without_slot_cache())
                as Box<dyn swapscope_core::alloc::AllocatorModel>),
            _ => models::by_name(n),
        })
        .collect()
}

fn engine() -> Engine {
    Engine::new(
        all_models(),
        EngineConfig {
            series_every: 0,
            ..EngineConfig::default()
        },
    )
}

fn used(e: &Engine, i: usize) -> u64 {
    e.model(i).map_or(u64::MAX, |m| m.snapshot().used_slots)
}

fn counters(e: &Engine, i: usize) -> OrderCounters {
    e.counters(i).copied().unwrap_or_default()
}

#[test]
fn real_stream_piecewise_frees_reach_every_model() {
    let mut e = engine();
    e.feed(&swapon(0, 8, SSD));
    e.feed(&alloc(0, 4, 1, ok(0, 512)));
    e.feed(&alloc(0, 0, 2, ok(0, 1)));
    for i in 0..3 {
        assert_eq!(used(&e, i), 17);
    }
    // Free the order-4 folio in three pieces, one spanning into the order-0 slot's neighbour.
    e.feed(&free(0, 512 + 3, 2));
    e.feed(&free(0, 512, 3));
    for i in 0..3 {
        assert_eq!(used(&e, i), 12);
    }
    e.feed(&free(0, 512 + 5, 11));
    e.feed(&free(0, 1, 1));
    for i in 0..3 {
        assert_eq!(used(&e, i), 0);
        assert_eq!(e.slot_map(i).map(StreamMap::entries), Some(0));
    }
    assert_eq!(e.real().inuse(0), Some(0));
    let r = e.report();
    assert_eq!(r.real.as_ref().map(|r| r.used_slots), Some(0));
    assert_eq!(
        r.models.first().and_then(|m| m.unmatched_free_slots),
        Some(0)
    );
}

#[test]
fn kernel_failure_counts_model_answer_and_undoes_it() {
    let mut e = engine();
    e.feed(&swapon(0, 8, SSD));
    e.feed(&alloc(0, 4, 1, AllocResult::Failure));
    let r = e.report();
    let real = r
        .real
        .as_ref()
        .map(|m| m.failures_by_order.clone())
        .unwrap_or_default();
    assert_eq!(real.get(&4), Some(&1));
    for (i, m) in r.models.iter().enumerate() {
        assert_eq!(m.requests_by_order.get(&4), Some(&1), "{}", m.name);
        assert_eq!(m.successes_by_order.get(&4), Some(&1), "{}", m.name);
        assert_eq!(used(&e, i), 0);
    }
}

#[test]
fn model_failure_falls_back_to_order0_pages() {
    let mut e = engine();
    // A swap file: no model serves order 4 there.
    e.feed(&swapon(0, 8, SOLIDSTATE));
    e.feed(&alloc(0, 4, 9, AllocResult::Unknown));
    for i in 0..3 {
        let c = counters(&e, i);
        assert_eq!((c.requests[4], c.failures[4]), (1, 1));
        assert_eq!((c.requests[0], c.successes[0]), (16, 16));
        assert_eq!(used(&e, i), 16);
    }
    // The workload frees its virtual pages piecewise.
    e.feed(&free(
        virtual_slot::SWAP_TYPE,
        virtual_slot::offset(9, 0),
        4,
    ));
    e.feed(&free(
        virtual_slot::SWAP_TYPE,
        virtual_slot::offset(9, 4),
        12,
    ));
    for i in 0..3 {
        assert_eq!(used(&e, i), 0);
    }
    assert!(e.report().real.is_none());
}

#[test]
fn swap_full_leaves_pages_unbacked() {
    let mut e = engine();
    e.feed(&swapon(0, 1, SSD));
    for id in 0..600 {
        e.feed(&alloc(0, 0, id, AllocResult::Unknown));
    }
    let r = e.report();
    for m in &r.models {
        assert_eq!(
            m.failures_by_order.get(&0),
            Some(&(600 - 511)),
            "{}",
            m.name
        );
        assert_eq!(m.unbacked_slots, Some(600 - 511));
        assert_eq!(m.used_slots, 511);
    }
    // Freeing an unbacked page is counted, not an error.
    e.feed(&free(
        virtual_slot::SWAP_TYPE,
        virtual_slot::offset(599, 0),
        1,
    ));
    e.feed(&free(
        virtual_slot::SWAP_TYPE,
        virtual_slot::offset(0, 0),
        1,
    ));
    let r = e.report();
    assert!(
        r.models
            .iter()
            .all(|m| m.unmatched_free_slots == Some(1) && m.used_slots == 510)
    );
}

#[test]
fn swapoff_releases_and_drops() {
    let mut e = engine();
    e.feed(&swapon(0, 4, SSD));
    e.feed(&swapon(1, 4, SSD));
    e.feed(&alloc(0, 0, 1, ok(1, 1)));
    e.feed(&alloc(0, 0, 2, AllocResult::Unknown));
    e.feed(&Event::SwapOff(SwapOff {
        ts_ns: 0,
        swap_type: 1,
    }));
    for i in 0..3 {
        // The real slot on device 1 was released; the virtual page stays wherever it is.
        let m = e.slot_map(i).map_or(0, StreamMap::mapped_slots);
        assert!(m <= 1);
        assert_eq!(used(&e, i), m);
    }
}

#[test]
fn markers_give_per_iteration_rows_and_json_shape() {
    let mut e = Engine::new(
        all_models(),
        EngineConfig {
            series_every: 4,
            ..EngineConfig::default()
        },
    );
    e.feed(&swapon(0, 2, SSD));
    e.feed(&marker("iteration 1"));
    for id in 0..3 {
        e.feed(&alloc(0, 9, id, AllocResult::Unknown));
    }
    e.feed(&marker("iteration 2"));
    e.feed(&free(
        virtual_slot::SWAP_TYPE,
        virtual_slot::offset(0, 0),
        512,
    ));
    e.feed(&alloc(1, 9, 10, AllocResult::Unknown));
    let r = e.report();
    assert_eq!(r.markers.len(), 2);
    // Iteration 1: one PMD fits (cluster 1; cluster 0 has the header), two fall back.
    let m0 = r.markers.first().and_then(|m| m.models.first());
    assert_eq!(m0.and_then(|m| m.failures_by_order.get(&9)), Some(&2));
    assert_eq!(m0.and_then(|m| m.requests_by_order.get(&0)), Some(&1024));
    // Iteration 2 holds only its own requests.
    let m1 = r.markers.get(1).and_then(|m| m.models.first());
    assert_eq!(m1.and_then(|m| m.requests_by_order.get(&9)), Some(&1));
    assert_eq!(r.series.len(), 2);

    let v = r.to_value().unwrap_or_default();
    let model = &v["models"][0];
    assert_eq!(model["name"], "linux-6.10");
    assert!(model["requests_by_order"]["9"].is_u64());
    assert!(model["fallback_rate_by_order"]["9"].is_f64());
    assert!(model["fragmentation_by_order"]["4"].is_f64());
    for k in ["free", "nonfull", "frag", "full"] {
        assert!(model["clusters"][k].is_u64(), "{k}");
    }
    assert!(model["largest_free_run"].is_u64());
    assert!(model["metadata_bytes"].is_u64());
    assert!(v["real"].is_null());
    assert_eq!(v["markers"][1]["label"], "iteration 2");
    assert!(
        r.to_json()
            .is_ok_and(|s| s.contains("\"requests_by_order\":{\"0\":"))
    );

    let text = render_table(&r);
    for needle in [
        "linux-6.10",
        "linux-6.12",
        "linux-6.18",
        "iteration 2",
        "linux-6.18:9",
    ] {
        assert!(text.contains(needle), "{needle} missing in\n{text}");
    }
}

/// A stream as a 6.18 kernel would produce it: the reference model answers every request, and
/// random pieces of live allocations are freed.
fn kernel_stream(ops: &[(u32, u8, bool, u16, u16)], clusters: u64) -> Vec<Event> {
    let mut k = Linux618::new();
    let on = SwapOn {
        ts_ns: 0,
        swap_type: 0,
        max: clusters * CL,
        bad: vec![],
        flags: SSD,
        prio: 0,
    };
    k.swapon(&on);
    let mut ev = vec![Event::SwapOn(on)];
    let mut live: Vec<(u64, u64)> = Vec::new();
    let mut id = 0;
    for &(cpu, order, is_free, a, b) in ops {
        if is_free && !live.is_empty() {
            let i = usize::from(a) % live.len();
            let (off, n) = live.swap_remove(i);
            let s = u64::from(b) % n;
            let len = 1 + u64::from(a.rotate_left(7)) % (n - s);
            k.free(0, off + s, len as u32);
            ev.push(free(0, off + s, len as u32));
            if s > 0 {
                live.push((off, s));
            }
            if s + len < n {
                live.push((off + s + len, n - s - len));
            }
            continue;
        }
        id += 1;
        match k.alloc(cpu, order).and_then(|a| a.extents.first().copied()) {
            Some(x) => {
                ev.push(alloc(cpu, order, id, ok(0, x.offset)));
                live.push((x.offset, u64::from(x.nr)));
            }
            None if order > 0 => {
                ev.push(alloc(cpu, order, id, AllocResult::Failure));
                for _ in 0..1u32 << order {
                    if let Some(x) = k.alloc(cpu, 0).and_then(|a| a.extents.first().copied()) {
                        ev.push(alloc(cpu, 0, id, ok(0, x.offset)));
                        live.push((x.offset, 1));
                    }
                }
            }
            None => {}
        }
    }
    ev
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(48))]

    #[test]
    fn engine_keeps_every_model_in_step_with_real_occupancy(
        ops in prop::collection::vec(
            (0u32..4, prop::sample::select(vec![0u8, 0, 2, 4, 4, 9]), any::<bool>(), any::<u16>(), any::<u16>()),
            1..300,
        ),
    ) {
        // Plenty of room: models never run out, so their occupancy must equal the real one.
        let events = kernel_stream(&ops, 64);
        let mut e = engine();
        for ev in &events {
            e.feed(ev);
            let real = e.real().inuse(0).unwrap_or(u64::MAX);
            for i in 0..3 {
                prop_assert_eq!(used(&e, i), real);
                prop_assert_eq!(e.slot_map(i).map(StreamMap::mapped_slots), Some(real));
            }
        }
        let r = e.report();
        prop_assert_eq!(r.stream.anomalies, 0);
        prop_assert_eq!(r.stream.real_unmatched_free_slots, 0);
        // The 6.18 model replays a 6.18 stream exactly: identity mapping, same answers.
        let i618 = r.models.iter().position(|m| m.name == Linux618::NAME).unwrap_or(usize::MAX);
        if let Some(map) = e.slot_map(i618) {
            for (key, _len, ty, off) in map.iter() {
                prop_assert_eq!((ty, off), (0, key));
            }
        }
        let real = r.real.clone().map(|m| m.failures_by_order).unwrap_or_default();
        prop_assert_eq!(r.models.get(i618).map(|m| m.failures_by_order.clone()), Some(real));
    }
}

/// Quick engine-only throughput check, not asserted: `cargo test --release -p swapscope
/// engine::tests::throughput -- --ignored --nocapture`. The benchmark of record is `cargo xtask
/// bench` (docs/performance.md).
#[test]
#[ignore = "benchmark"]
fn throughput() {
    let mut ops = Vec::new();
    let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
    for _ in 0..1_000_000 {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        let order = [0u8, 0, 0, 0, 4, 4, 2, 9][(x % 8) as usize];
        let is_free = (x >> 8) % 100 < 47;
        ops.push((
            (x >> 20) as u32 % 2,
            order,
            is_free,
            (x >> 24) as u16,
            (x >> 40) as u16,
        ));
    }
    // 4 GiB device.
    let events = kernel_stream(&ops, 2048);
    let n = events.len() as f64;
    let mut runs: Vec<(String, Vec<Box<dyn swapscope_core::alloc::AllocatorModel>>)> = vec![
        ("occupancy only".into(), Vec::new()),
        ("three kernel models".into(), models::all()),
    ];
    for name in models::NAMES {
        runs.push(((*name).into(), models::by_name(name).into_iter().collect()));
    }
    for (label, models) in runs {
        let mut e = Engine::new(models, EngineConfig::default());
        let t = std::time::Instant::now();
        e.feed_all(&events);
        let dt = t.elapsed().as_secs_f64();
        let r = e.report();
        let bytes: u64 = r.models.iter().filter_map(|m| m.mapping_bytes).sum();
        eprintln!(
            "{label}: {:.1} M events/s ({} events), mapping {} bytes",
            n / dt / 1e6,
            events.len(),
            bytes
        );
    }
}

#[test]
fn reused_virtual_id_gives_back_old_pages() {
    let mut e = engine();
    e.feed(&swapon(0, 8, SSD));
    e.feed(&alloc(0, 4, 5, AllocResult::Unknown));
    e.feed(&alloc(0, 0, 6, AllocResult::Unknown));
    // Id 5 again while its pages are mapped: its first 4 pages are given back first.
    e.feed(&alloc(0, 2, 5, AllocResult::Unknown));
    assert_eq!(e.report().stream.anomalies, 1);
    for i in 0..6 {
        assert_eq!(used(&e, i), 16 - 4 + 4 + 1);
    }
    e.feed(&free(
        virtual_slot::SWAP_TYPE,
        virtual_slot::offset(5, 0),
        4,
    ));
    e.feed(&free(
        virtual_slot::SWAP_TYPE,
        virtual_slot::offset(6, 0),
        1,
    ));
    for i in 0..6 {
        assert_eq!(used(&e, i), 12);
    }
    // A page past the allocation frees nothing.
    e.feed(&free(
        virtual_slot::SWAP_TYPE,
        virtual_slot::offset(6, 1),
        1,
    ));
    let r = e.report();
    assert!(r.models.iter().all(|m| m.unmatched_free_slots == Some(1)));
}

/// The models split over threads give the report one engine gives, in the same model order,
/// markers and series included.
#[test]
fn parallel_engines_report_what_one_engine_reports() {
    for w in ["thp-fragment", "fork-partial-zap", "mixed-orders"] {
        let mut spec = swapscope_core::workload::WorkloadSpec::new(w);
        spec.iterations = Some(2);
        spec.swap_size_bytes = 8 << 20;
        let events = match swapscope_core::workload::generate(&spec) {
            Ok(e) => e,
            Err(e) => panic!("{e}"),
        };
        let config = EngineConfig {
            series_every: 5000,
            ..EngineConfig::default()
        };
        let mut one = Engine::new(models::all(), config);
        one.feed_all(&events);
        let want = one.report();
        for threads in [1, 2, 3, 6] {
            let mut p = match Parallel::new(models::all(), config, threads) {
                Ok(p) => p,
                Err(e) => panic!("{e}"),
            };
            for chunk in events.chunks(777) {
                p.feed_batch(chunk);
            }
            let got = p.finish().map(|f| f.report);
            assert_eq!(got.as_ref(), Some(&want), "{w} on {threads} threads");
        }
    }
}

/// A model that records the write-outs the engine hands it (in its own slot space).
struct WriteoutLog {
    inner: Linux618,
    seen: std::sync::Arc<std::sync::Mutex<Vec<(u8, u64, u32)>>>,
}

impl swapscope_core::alloc::AllocatorModel for WriteoutLog {
    fn name(&self) -> &'static str {
        "writeout-log"
    }
    fn swapon(&mut self, dev: &SwapOn) {
        self.inner.swapon(dev);
    }
    fn swapoff(&mut self, swap_type: u8) {
        self.inner.swapoff(swap_type);
    }
    fn alloc(&mut self, cpu: u32, order: u8) -> Option<swapscope_core::alloc::Allocation> {
        self.inner.alloc(cpu, order)
    }
    fn free(&mut self, swap_type: u8, offset: u64, nr: u32) {
        self.inner.free(swap_type, offset, nr);
    }
    fn wants_writeouts(&self) -> bool {
        true
    }
    fn writeout(&mut self, swap_type: u8, offset: u64, nr: u32) {
        if let Ok(mut v) = self.seen.lock() {
            v.push((swap_type, offset, nr));
        }
    }
    fn snapshot(&self) -> swapscope_core::alloc::ModelSnapshot {
        self.inner.snapshot()
    }
    fn cluster_map(
        &self,
        swap_type: u8,
        out: &mut Vec<swapscope_core::alloc::ClusterCell>,
    ) -> bool {
        self.inner.cluster_map(swap_type, out)
    }
}

#[test]
fn writeouts_reach_models_that_want_them_in_their_own_slots() {
    let seen = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let log = WriteoutLog {
        inner: Linux618::new(),
        seen: seen.clone(),
    };
    let mut e = Engine::new(
        vec![Box::new(log), Box::new(Linux618::new())],
        EngineConfig::default(),
    );
    e.feed(&swapon(0, 8, SSD));
    // The kernel put a 64K folio at slot 1040; the model puts it wherever it likes.
    e.feed(&alloc(0, 4, 1, ok(0, 1040)));
    let wo = |offset: u64, order: u8| {
        Event::Writeout(swapscope_core::event::Writeout {
            ts_ns: 1,
            cpu: 0,
            pid: 1,
            tgid: 1,
            swap_type: 0,
            offset,
            order,
            pfn: None,
            flags: 0,
        })
    };
    e.feed(&wo(1040, 4));
    // A write-out of slots no request mapped reaches no model.
    e.feed(&wo(4000, 0));
    let got = seen.lock().map(|v| v.clone()).unwrap_or_default();
    assert_eq!(got.len(), 1, "{got:?}");
    let (t, off, nr) = got[0];
    assert_eq!((t, nr), (0, 16));
    assert_eq!(off % 16, 0, "the model's own aligned slots: {off}");
    // Write-outs count as used, not ignored, when a model takes them.
    assert_eq!(e.report().stream.ignored, 0);
}

fn grant(cpu: u32, order: u8, id: u64, swap_type: u8, offset: u64) -> Event {
    Event::Grant(swapscope_core::event::Grant {
        ts_ns: 0,
        cpu,
        req_cpu: cpu,
        pid: 7,
        tgid: 7,
        id,
        swap_type,
        offset,
        order,
        nr: 1,
        batch: Vec::new(),
        start_ns: 0,
    })
}

/// The model `kernel`, following the kernel, and `free` running on its own answers.
fn followed(kernel: &'static str, free: &str, divergences: usize) -> Engine {
    Engine::new(
        vec![
            models::by_name(kernel).unwrap_or_else(|| unreachable!()),
            models::by_name(free).unwrap_or_else(|| unreachable!()),
        ],
        EngineConfig {
            series_every: 0,
            kernel_model: Some(
                models::by_name(kernel)
                    .map(|m| m.name())
                    .unwrap_or_default(),
            ),
            divergences,
            ..EngineConfig::default()
        },
    )
}

/// Two CPUs take clusters from the free list; their request events reach the stream in the
/// other order than the grants the kernel emitted inside its locks. Replayed at the grants, the
/// kernel's model picks the kernel's clusters; the request events only confirm.
#[test]
fn grants_order_requests_as_the_kernel_decided() {
    let mut e = Engine::new(vec![Box::new(Linux618::new())], EngineConfig::default());
    e.feed(&swapon(0, 8, SSD));
    // The header cluster is on nonfull[0]; order-4 requests take free clusters 1 and 2.
    e.feed(&grant(0, 4, 10, 0, 512));
    e.feed(&grant(1, 4, 11, 0, 1024));
    e.feed(&alloc(1, 4, 11, ok(0, 1024)));
    e.feed(&alloc(0, 4, 10, ok(0, 512)));
    let r = e.report();
    let m = &r.models[0];
    assert_eq!(
        (m.compared_requests, m.same_offset_rate),
        (Some(2), Some(1.0))
    );
    assert_eq!(
        (
            r.stream.grant_events,
            r.stream.requests_at_grant,
            r.stream.requests_at_exit
        ),
        (2, 2, 0)
    );
    assert_eq!(r.real.as_ref().map(|x| x.used_slots), Some(32));
    // Without the grants, the request events alone swap the clusters.
    let mut e = Engine::new(vec![Box::new(Linux618::new())], EngineConfig::default());
    e.feed(&swapon(0, 8, SSD));
    e.feed(&alloc(1, 4, 11, ok(0, 1024)));
    e.feed(&alloc(0, 4, 10, ok(0, 512)));
    let r = e.report();
    assert_eq!(r.models[0].same_offset_rate, Some(0.0));
    assert_eq!(r.stream.requests_at_exit, 2);
}

/// The model of the kernel takes the kernel's answer after a divergence, so the next request
/// on that CPU continues where the kernel's does; a free-running copy keeps its own and keeps
/// diverging. Divergences are kept with both answers.
#[test]
fn the_kernels_model_follows_the_kernel_after_a_divergence() {
    let mut e = followed("linux-6.18", "linux-6.14", 4);
    e.feed(&swapon(0, 8, SSD));
    // The kernel took cluster 2 (cluster 1 was locked by another CPU, say), then went on in it.
    e.feed(&grant(0, 4, 10, 0, 1024));
    e.feed(&grant(0, 4, 12, 0, 1040));
    e.feed(&grant(0, 4, 13, 0, 1056));
    let r = e.report();
    let (f, free) = (&r.models[0], &r.models[1]);
    assert_eq!(f.kernel_corrections, Some(1));
    assert_eq!(f.same_offset_rate.map(|x| (x * 3.0).round()), Some(2.0));
    assert_eq!(free.kernel_corrections, None);
    assert_eq!(free.same_offset_rate, Some(0.0));
    assert_eq!(f.divergences.len(), 1);
    let d = &f.divergences[0];
    assert_eq!(d.kernel.map(|k| k.offset), Some(1024));
    assert_eq!(d.model.map(|m| m.offset), Some(512));
    assert_eq!(d.decided_at, DecidedAt::Grant);
    assert_eq!(free.divergences.len(), 3);
    // The followed model's occupancy is the kernel's.
    assert_eq!(f.used_slots, 48);
    assert_eq!(r.real.as_ref().map(|x| x.used_slots), Some(48));
}

/// 6.12's refusals come as grants with no slots (inside `si->lock`): the model decides there,
/// and the request event that follows only counts.
#[test]
fn refusal_grants_are_decided_where_the_kernel_refused() {
    let mut e = Engine::new(vec![Box::new(Linux618::new())], EngineConfig::default());
    e.feed(&swapon(0, 2, SSD));
    let mut refusal = grant(0, 9, 0, 0, 0);
    if let Event::Grant(g) = &mut refusal {
        g.nr = 0;
    }
    // Cluster 1 is free: the model could serve a 2 MiB folio; the kernel refused it.
    e.feed(&refusal);
    e.feed(&alloc(0, 9, 5, AllocResult::Failure));
    // The refusal waits for the stream's next allocation-changing event (none here).
    assert_eq!(e.report().models[0].requests_by_order.get(&9), None);
    e.end_deferral();
    let r = e.report();
    assert_eq!(r.stream.requests_at_grant, 1);
    assert_eq!(r.models[0].requests_by_order.get(&9), Some(&1));
    assert_eq!(r.models[0].successes_by_order.get(&9), Some(&1));
    assert_eq!(
        r.real
            .as_ref()
            .and_then(|x| x.failures_by_order.get(&9).copied()),
        Some(1)
    );
}

/// 6.12's batch refill can drop `si->lock` midway (reclaiming swap cache), so a refusal on
/// another CPU can come between slots the batch took and the batch's grant. A batch grant whose
/// request started before the refusal is applied first: the refused request finds the slots the
/// batch took gone, as the kernel did.
#[test]
fn a_batch_that_started_before_a_refusal_is_applied_before_it() {
    let run = |start_ns: u64| {
        let mut e = followed("linux-6.12", "buddy", 4);
        e.feed(&swapon(0, 2, SSD));
        // CPU 1 fills cluster 1 with 64K folios up to its last 16 slots.
        for k in 0..31u64 {
            e.feed(&grant(1, 4, 100 + k, 0, 512 + 16 * k));
        }
        let mut refusal = grant(1, 4, 0, 0, 0);
        if let Event::Grant(g) = &mut refusal {
            g.nr = 0;
            g.ts_ns = 100;
        }
        e.feed(&refusal);
        e.feed(&alloc(1, 4, 7, AllocResult::Failure));
        // CPU 0's batch took those last 16 slots (and 48 of cluster 0).
        let mut batch = grant(0, 0, 0, 0, 1008);
        if let Event::Grant(g) = &mut batch {
            g.ts_ns = 110;
            g.start_ns = start_ns;
            g.batch = (1008..1024).chain(1..49).collect();
            g.nr = 64;
        }
        e.feed(&batch);
        e.end_deferral();
        e.report()
    };
    // Started before the refusal: applied first, and the model refuses too.
    let r = run(50);
    assert_eq!(r.stream.hoisted_batches, 1);
    assert_eq!(r.models[0].failures_by_order.get(&4), Some(&1));
    let refusals = |r: &swapscope_core::engine::Comparison| {
        r.models[0]
            .divergences
            .iter()
            .filter(|d| d.order == 4)
            .count()
    };
    assert_eq!(refusals(&r), 0);
    // Started after it: the refusal is answered first, where the slots were still free.
    let r = run(105);
    assert_eq!(r.stream.hoisted_batches, 0);
    assert_eq!(r.models[0].failures_by_order.get(&4), Some(&0));
    assert_eq!(refusals(&r), 1);
}

/// 6.12's batch refill is known slot by slot (the batch variant of the grant probe): the
/// model's cache takes the kernel's batch, while its own batch stays as the answers it is
/// scored on, one by one as the requests come.
#[test]
fn a_batch_the_model_filled_otherwise_is_scored_slot_by_slot_and_then_followed() {
    let mut e = followed("linux-6.12", "buddy", 8);
    e.feed(&swapon(0, 4, SSD));
    // The model would refill from its own cluster; the kernel's batch is elsewhere but for
    // its last two slots.
    let mut batch = grant(0, 0, 0, 0, 1536);
    let kernel: Vec<u64> = (1536..1598).chain([1598, 1599]).collect();
    if let Event::Grant(g) = &mut batch {
        g.batch = kernel.clone();
        g.nr = 64;
    }
    e.feed(&batch);
    e.feed(&alloc(0, 0, 1, ok(0, 1536)));
    for (i, &k) in kernel.iter().enumerate().skip(1) {
        e.feed(&alloc(0, 0, 2 + i as u64, ok(0, k)));
    }
    let r = e.report();
    let m = &r.models[0];
    assert_eq!(m.compared_requests, Some(64));
    // The model's own batch disagreed at every position: scored as such, and followed once.
    assert_eq!(m.same_offset_rate, Some(0.0));
    assert_eq!(m.kernel_corrections, Some(1 + 64));
    // Its occupancy is the kernel's: the 64 slots of the kernel's batch.
    assert_eq!(m.used_slots, 64);
}

#[test]
fn a_grant_freed_before_its_request_returned_is_an_orphan() {
    let mut e = Engine::new(vec![Box::new(Linux618::new())], EngineConfig::default());
    e.feed(&swapon(0, 8, SSD));
    e.feed(&grant(0, 0, 3, 0, 1));
    e.feed(&free(0, 1, 1));
    e.feed(&alloc(0, 0, 3, AllocResult::Failure));
    let r = e.report();
    assert_eq!(r.stream.orphan_grants, 1);
    assert_eq!(r.real.as_ref().map(|x| x.used_slots), Some(0));
    assert_eq!(r.models[0].used_slots, 0);
}

/// linux-6.18 following the kernel (and buddy) on a two-cluster device filled with 64K folios
/// on CPU 0 (cluster 0 past its header, then cluster 1), after a reclaim on CPU 0: cluster 1,
/// full, taken off its list (at 200 ns) and 16 of its slots freed (at 210 ns).
fn full_device_after_a_reclaim() -> Engine {
    let mut e = followed("linux-6.18", "buddy", 4);
    e.feed(&swapon(0, 2, SSD));
    for k in 1..64u64 {
        e.feed(&grant(0, 4, k, 0, 16 * k));
    }
    e.feed(&Event::Cluster(swapscope_core::event::ClusterMove {
        ts_ns: 200,
        cpu: 0,
        swap_type: 0,
        cluster: 1,
        list: swapscope_core::event::cluster_list::ISOLATED,
        old_list: swapscope_core::event::cluster_list::UNKNOWN,
        order: 4,
        count: 512,
    }));
    e.feed(&Event::Free(Free {
        ts_ns: 210,
        cpu: 0,
        swap_type: 0,
        offset: 512,
        nr: 16,
    }));
    e
}

/// 7.x: an allocation that found nothing on its lists reclaims swap-cache slots of a full
/// cluster and then refuses anyway (the reclaimed cluster goes to a list it no longer scans);
/// the stream has the reclaim's frees before the refusal. Frees made after the request started,
/// on its CPU, are applied after its decision; frees from before it, first.
#[test]
fn a_reclaim_inside_a_refused_allocation_does_not_serve_it() {
    let run = |start_ns: u64| {
        let mut e = full_device_after_a_reclaim();
        let mut refusal = grant(0, 4, 99, 0, 0);
        if let Event::Grant(g) = &mut refusal {
            g.nr = 0;
            g.ts_ns = 220;
            g.start_ns = start_ns;
        }
        e.feed(&refusal);
        e.feed(&alloc(0, 4, 99, AllocResult::Failure));
        e.end_holds();
        e.report()
    };
    let failures = |r: &Comparison| {
        r.models
            .iter()
            .map(|m| m.failures_by_order.get(&4).copied().unwrap_or(0))
            .collect::<Vec<_>>()
    };
    // Started before the frees: they were its own reclaim; both models refuse, as the kernel.
    let r = run(150);
    assert_eq!(failures(&r), [1, 1]);
    // Started after them: the room was there when it decided; both models serve it.
    let r = run(215);
    assert_eq!(failures(&r), [0, 0]);
}

/// The same reclaim inside an allocation that succeeds, from the frag cluster the allocator
/// scans after it: the frees come first.
#[test]
fn a_reclaim_that_served_its_allocation_is_applied_first() {
    let mut e = full_device_after_a_reclaim();
    // The kernel served it with the slots the reclaim freed.
    let mut served = grant(0, 4, 99, 0, 512);
    if let Event::Grant(g) = &mut served {
        g.ts_ns = 220;
        g.start_ns = 150;
    }
    e.feed(&served);
    e.end_holds();
    let r = e.report();
    // Decided after the frees, the model finds the room the kernel used (the device is
    // otherwise full): no refusal.
    assert_eq!(
        r.models[0].failures_by_order.get(&4).copied().unwrap_or(0),
        0
    );
}
