//! Test helpers shared by the front-end crates' tests (feature `testkit`, for dev-dependencies
//! only): the recordings under `swapscope/tests/data` and analysis snapshots taken part-way
//! through them.

use std::path::PathBuf;

use std::io::Cursor;

use crate::{
    event::Event,
    models, pipeline,
    record::{Reader, RecordingHeader, Writer, WriterOptions},
    sink::{
        Sink, SinkError,
        analysis::{Analysis, AnalysisConfig, default_interval_ms},
        snapshot::Snapshot,
    },
    source::{Poll, Source, Summary, file::FileSource},
    workload::{self, WorkloadSpec},
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
    match FileSource::open(&data(name)) {
        Ok(mut s) => count_polled(&mut s),
        Err(e) => panic!("{e}"),
    }
}

/// How many events `src` yields from here to its end (or its first error).
pub fn count_polled(src: &mut dyn Source) -> u64 {
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
///
/// The models come from the registry: call `swapscope_models::install()` first.
pub fn snapshot_of(name: &str, share: f64) -> Snapshot {
    assert!(
        models::builtins_installed(),
        "the built-in models are not installed: call swapscope_models::install() first"
    );
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

/// Checks that `v` serialises to JSON and reads back into its own type unchanged: the documents
/// swapscope writes and the types its readers (xtask's checks, tests) parse them into agree.
pub fn read_back<T: serde::Serialize + serde::de::DeserializeOwned>(what: &str, v: &T) {
    let json = match serde_json::to_string_pretty(v) {
        Ok(j) => j,
        Err(e) => panic!("{what}: {e}"),
    };
    let back: T = match serde_json::from_str(&json) {
        Ok(b) => b,
        Err(e) => panic!("{what} does not read back: {e}"),
    };
    let (written, read) = match (
        serde_json::from_str::<serde_json::Value>(&json),
        serde_json::to_value(&back),
    ) {
        (Ok(a), Ok(b)) => (a, b),
        (Err(e), _) | (_, Err(e)) => panic!("{what}: {e}"),
    };
    assert_eq!(written, read, "{what}: the read-back differs");
}

/// A recording of `spec` in memory, with chunks of `chunk_bytes`.
pub fn recording(spec: &WorkloadSpec, chunk_bytes: usize) -> Vec<u8> {
    let header = RecordingHeader {
        source: format!("simulate:{}", spec.name),
        ..RecordingHeader::default()
    };
    let mut w = match Writer::create(
        Vec::new(),
        &header,
        WriterOptions {
            chunk_bytes,
            ..WriterOptions::default()
        },
    ) {
        Ok(w) => w,
        Err(e) => panic!("{e}"),
    };
    let r = workload::stream(spec, &mut |batch| {
        for ev in batch.iter() {
            if let Err(e) = w.push(ev) {
                panic!("{e}");
            }
        }
        true
    });
    assert!(r.is_ok());
    match w.finish() {
        Ok((bytes, _)) => bytes,
        Err(e) => panic!("{e}"),
    }
}

/// A file source over an in-memory recording ([`recording`]).
pub fn file_source(bytes: Vec<u8>) -> FileSource {
    match Reader::open(Cursor::new(bytes)).map(FileSource::from_reader) {
        Ok(Ok(s)) => s,
        Ok(Err(e)) => panic!("{e}"),
        Err(e) => panic!("{e}"),
    }
}
