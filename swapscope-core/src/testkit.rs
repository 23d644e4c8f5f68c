//! Test helpers shared by the front-end crates' tests (feature `testkit`, for dev-dependencies
//! only): the recordings under `swapscope/tests/data` and analysis snapshots taken part-way
//! through them.

use std::path::PathBuf;

use crate::{
    event::Event,
    models, pipeline,
    sink::{
        Sink, SinkError,
        analysis::{Analysis, AnalysisConfig, default_interval_ms},
        snapshot::Snapshot,
    },
    source::{Poll, Source, Summary, file::FileSource},
};

/// Feeds an analysis the first `left` events.
struct Until<'a> {
    a: &'a mut Analysis,
    left: u64,
}

impl Sink for Until<'_> {
    fn push(&mut self, batch: &[Event]) -> Result<(), SinkError> {
        let n = (self.left as usize).min(batch.len());
        self.left -= n as u64;
        self.a.push(&batch[..n])
    }
    fn finish(&mut self, s: &Summary) -> Result<(), SinkError> {
        self.a.finish(s)
    }
}

/// A recording under `swapscope/tests/data`.
pub fn data(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../swapscope/tests/data")
        .join(name)
}

/// How many events a recording under tests/data holds.
pub fn count_events(name: &str) -> u64 {
    let mut src = match FileSource::open(&data(name)) {
        Ok(s) => s,
        Err(e) => panic!("{e}"),
    };
    let mut n = 0;
    let mut batch = Vec::new();
    while let Ok(p) = src.poll(&mut batch) {
        n += batch.len() as u64;
        batch.clear();
        if p == Poll::End {
            break;
        }
    }
    n
}

/// An analysis snapshot (the default models) of a recording under tests/data read up to `share`
/// of its events.
pub fn snapshot_of(name: &str, share: f64) -> Snapshot {
    let total = count_events(name);
    let mut src = match FileSource::open(&data(name)) {
        Ok(s) => s,
        Err(e) => panic!("{e}"),
    };
    let names: Vec<String> = models::NAMES.iter().map(|n| n.to_string()).collect();
    let mut a = Analysis::new(
        src.header(),
        &names,
        AnalysisConfig {
            mode: format!("replay {name}"),
            interval_ns: default_interval_ms(src.header()) * 1_000_000,
            ..AnalysisConfig::default()
        },
    );
    let mut until = Until {
        a: &mut a,
        left: (total as f64 * share) as u64,
    };
    if let Err(e) = pipeline::run(&mut src, &mut [&mut until], &mut || false) {
        panic!("{e}");
    }
    a.snapshot()
}
