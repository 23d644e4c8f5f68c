//! The first-fit model replayed over every recording under swapscope/tests/data beside the
//! built-in models: it sees the same requests, answers them by its own rule, and shows up in the
//! report and in the what-if sweep like a built-in model.
use std::path::PathBuf;

use custom_model::{FirstFit, NAME, register};
use swapscope_core::{
    alloc::AllocatorModel,
    event::SwapOn,
    models, pipeline,
    sink::analysis::{Analysis, ReportOptions},
    source::{Source, file::FileSource},
    whatif::{self, SweepSpec},
};

fn recordings() -> Vec<PathBuf> {
    let data = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../swapscope/tests/data");
    let mut v: Vec<PathBuf> = std::fs::read_dir(&data)
        .map(|rd| rd.filter_map(|e| e.ok()).map(|e| e.path()).collect())
        .unwrap_or_default();
    v.retain(|p| p.extension().is_some_and(|e| e == "swsc"));
    v.sort();
    v
}

fn names() -> Vec<String> {
    // Registering twice is refused; the tests of this file share one process.
    let _ = register();
    vec!["linux-6.18".to_string(), NAME.to_string()]
}

#[test]
fn registering_makes_it_a_model_like_the_built_in_ones() {
    let _ = register();
    assert!(models::by_name(NAME).is_some());
    assert!(models::all_names().contains(&NAME));
    assert_eq!(
        models::select(&["default".into(), NAME.into()]).map(|v| v.len()),
        Ok(models::NAMES.len() + 1)
    );
    // A second registration under the same name, or a built-in name, is refused.
    assert!(register().is_err());
    assert!(models::register("buddy", || Box::new(FirstFit::new())).is_err());
}

#[test]
fn first_fit_takes_the_lowest_aligned_block_and_reuses_freed_slots() {
    let mut m = FirstFit::new();
    m.swapon(&SwapOn {
        ts_ns: 0,
        swap_type: 0,
        max: 1024,
        bad: vec![16],
        flags: 0,
        prio: -2,
    });
    // Slot 0 is the header: the first order-0 slot is 1; order 4 skips the bad slot's block.
    let a = m.alloc(0, 0).map(|a| a.extents[0].offset);
    assert_eq!(a, Some(1));
    let b = m.alloc(0, 4).map(|a| a.extents[0].offset);
    assert_eq!(b, Some(32));
    m.free(0, 32, 16);
    assert_eq!(m.alloc(0, 4).map(|a| a.extents[0].offset), Some(32));
    let s = m.snapshot();
    assert_eq!(s.total_slots, 1022);
    assert_eq!(s.used_slots, 17);
    // Order 9 needs a whole aligned 512-slot block: only 512..1024 is free.
    assert_eq!(m.alloc(0, 9).map(|a| a.extents[0].offset), Some(512));
    assert!(m.alloc(0, 9).is_none());
}

#[test]
fn every_recording_reports_it_beside_the_kernel_model() {
    let files = recordings();
    assert!(files.len() >= 3, "recordings under tests/data: {files:?}");
    for file in files {
        let mut src = FileSource::open(&file).expect("open");
        let mut a = Analysis::for_report(src.header(), &names(), ReportOptions::default());
        let summary = pipeline::run(&mut src, &mut [&mut a], &mut || false).expect("replay");
        let report = a.report(&summary);
        let by = |n: &str| report.models.iter().find(|m| m.name == n);
        let (Some(kernel), Some(ff)) = (by("linux-6.18"), by(NAME)) else {
            panic!("{}: models {:?}", file.display(), report.models);
        };
        // The same requests reach both (the engine feeds every model one order); a
        // tracepoint-tier stream has none.
        let total =
            |m: &swapscope_core::engine::ModelReport| -> u64 { m.requests_by_order.values().sum() };
        assert_eq!(total(kernel) == 0, total(ff) == 0, "{}", file.display());
        for (order, n) in &kernel.requests_by_order {
            // Order 0 differs by the fallbacks: a refused large folio comes back as order-0
            // requests, and each model refuses its own.
            if *order != 0 {
                assert_eq!(
                    ff.requests_by_order.get(order),
                    Some(n),
                    "{} order {order}",
                    file.display()
                );
            }
        }
        if total(kernel) > 0 {
            assert!(report.render_text().contains(NAME), "{}", file.display());
        }
    }
}

#[test]
fn the_what_if_sweep_includes_it() {
    let file = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../../swapscope/tests/data/vm-7.3-full-frag.swsc");
    let spec: SweepSpec = "50%..100%:50%".parse().expect("spec");
    let mut quiet = swapscope_core::sink::progress::Progress::new("sweep", false);
    let sweep =
        whatif::sweep(|| FileSource::open(&file), &names(), &spec, &mut quiet).expect("sweep");
    assert_eq!(sweep.points.len(), 2);
    for p in &sweep.points {
        let ff = p
            .models
            .iter()
            .find(|m| m.name == NAME)
            .expect("first-fit in the sweep");
        assert!(ff.requests_by_order.values().sum::<u64>() > 0);
    }
    // Half the device refuses more large folios than the whole one.
    let fails = |i: usize| -> u64 {
        sweep.points[i]
            .models
            .iter()
            .find(|m| m.name == NAME)
            .map_or(0, |m| m.failures_by_order.values().sum())
    };
    assert!(
        fails(0) >= fails(1),
        "50 %: {} vs 100 %: {}",
        fails(0),
        fails(1)
    );
}
