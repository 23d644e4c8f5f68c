// Whole reports through the built-in models: the driver, the analysis and the report types as
// the CLI uses them. These tests live beside the models, since the core does not depend on them.

use swapscope_core::{
    pipeline,
    sink::analysis::{Analysis, AnalysisConfig},
    source::{Source, file::FileSource, sim::SimSource},
    testkit::{self, file_source, recording},
    workload::{self, WorkloadSpec},
};
use swapscope_models as models;

fn names() -> Vec<String> {
    models::install();
    models::NAMES.iter().map(|n| n.to_string()).collect()
}

fn report_json(mut source: impl Source) -> String {
    let mut a = Analysis::new(source.header(), &names(), AnalysisConfig::default());
    let summary = match pipeline::run(&mut source, &mut [&mut a], &mut || false) {
        Ok(s) => s,
        Err(e) => panic!("{e}"),
    };
    match serde_json::to_string(&a.report(&summary)) {
        Ok(s) => s,
        Err(e) => panic!("{e}"),
    }
}

#[test]
fn reports_do_not_depend_on_batch_sizes_or_the_source() {
    for w in workload::NAMES {
        let mut spec = WorkloadSpec::new(w);
        spec.iterations = Some(2);
        spec.swap_size_bytes = 16 << 20;
        let small = report_json(file_source(recording(&spec, 700)));
        let big = report_json(file_source(recording(&spec, 1 << 20)));
        let sim = match SimSource::new(spec.clone()) {
            Ok(s) => report_json(s),
            Err(e) => panic!("{e}"),
        };
        assert_eq!(small, big, "{w}: 700-byte vs 1 MiB chunks");
        // The simulate source's header differs only in what the report does not show.
        assert_eq!(small, sim, "{w}: recording vs simulate source");
    }
}

/// The report and the viewers' summary read back into their own types, as the VM suite's
/// checks (xtask) and swapscope's tests/report_schema.rs read them: a field renamed or
/// retyped on one side only fails here. A full-tier recording, replayed through every model
/// with divergences kept, so that every part of the report is filled.
#[test]
fn a_report_and_a_summary_read_back_into_their_types() {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../swapscope/tests/data/vm-7.3-full-frag.swsc");
    let mut src = match FileSource::open(&path) {
        Ok(s) => s,
        Err(e) => panic!("{}: {e}", path.display()),
    };
    let names: Vec<String> = names();
    let mut a = Analysis::new(
        src.header(),
        &names,
        AnalysisConfig {
            divergences: 2,
            ..AnalysisConfig::default()
        },
    );
    let summary = match pipeline::run(&mut src, &mut [&mut a], &mut || false) {
        Ok(s) => s,
        Err(e) => panic!("{e}"),
    };
    let view = a.snapshot().summary();
    let r = a.report(&summary);
    assert!(r.models.iter().any(|m| !m.divergences.is_empty()));
    assert!(r.real.is_some() && r.peak.is_some() && r.stream.is_some());
    assert!(r.intervals.iter().any(|i| i.real.is_some()));
    assert!(!view.peaks.is_empty() && !view.devices.is_empty());
    testkit::read_back("the report", &r);
    testkit::read_back("the summary", &view);
}
