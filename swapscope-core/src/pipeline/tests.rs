//! The driver is deterministic whatever the batch sizes, streams every source without holding
//! it whole, and the replay clock pauses, seeks and restarts.

use std::io::Cursor;

use super::*;
use crate::{
    record::{Reader, Writer, WriterOptions},
    sink::analysis::{Analysis, AnalysisConfig},
    source::{file::FileSource, sim::SimSource},
    workload::{self, WorkloadSpec},
};

fn names() -> Vec<String> {
    crate::models::NAMES.iter().map(|n| n.to_string()).collect()
}

/// A recording of `spec` in memory, with chunks of `chunk_bytes`.
fn recording(spec: &WorkloadSpec, chunk_bytes: usize) -> Vec<u8> {
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

fn report_json(mut source: impl Source) -> String {
    let mut a = Analysis::new(source.header(), &names(), AnalysisConfig::default());
    let summary = match run(&mut source, &mut [&mut a], &mut || false) {
        Ok(s) => s,
        Err(e) => panic!("{e}"),
    };
    match serde_json::to_string(&a.report(&summary)) {
        Ok(s) => s,
        Err(e) => panic!("{e}"),
    }
}

fn file_source(bytes: Vec<u8>) -> FileSource {
    match Reader::open(Cursor::new(bytes)).map(FileSource::from_reader) {
        Ok(Ok(s)) => s,
        Ok(Err(e)) => panic!("{e}"),
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

/// A sink that counts what reaches it and asks to stop after `stop_after` events.
#[derive(Default)]
struct Count {
    events: u64,
    restarts: u64,
    finished: bool,
}

impl Sink for Count {
    fn push(&mut self, batch: &[Event]) -> Result<(), SinkError> {
        self.events += batch.len() as u64;
        Ok(())
    }
    fn restart(&mut self, _: &RecordingHeader) -> Result<(), SinkError> {
        self.restarts += 1;
        self.events = 0;
        Ok(())
    }
    fn finish(&mut self, _: &Summary) -> Result<(), SinkError> {
        self.finished = true;
        Ok(())
    }
}

struct Failing;

impl Sink for Failing {
    fn push(&mut self, _: &[Event]) -> Result<(), SinkError> {
        Err(SinkError::Other("disk full".into()))
    }
}

#[test]
fn a_failing_sink_stops_the_source_and_the_others_still_finish() {
    let mut spec = WorkloadSpec::new("mixed-orders");
    spec.iterations = Some(50);
    let mut src = match SimSource::new(spec) {
        Ok(s) => s,
        Err(e) => panic!("{e}"),
    };
    let mut c = Count::default();
    let r = run(&mut src, &mut [&mut Failing, &mut c], &mut || false);
    assert!(matches!(r, Err(PipelineError::Sink(_))));
    assert!(c.finished);
    // The simulate source stops early: far fewer than the whole stream's events arrived.
    assert!(c.events > 0 && c.events < 500_000, "{} events", c.events);
}

#[test]
fn replay_at_full_speed_delivers_everything_and_a_seek_back_restarts() {
    let mut spec = WorkloadSpec::new("thp-fragment");
    spec.iterations = Some(2);
    spec.swap_size_bytes = 8 << 20;
    let bytes = recording(&spec, 4096);
    let total = match workload::generate(&spec) {
        Ok(v) => v.len() as u64,
        Err(e) => panic!("{e}"),
    };
    let control = ReplayControl::new(f64::INFINITY);
    let mut opened = 0;
    let mut replay = match Replay::new(
        || {
            opened += 1;
            Ok(Box::new(file_source(bytes.clone())) as Box<dyn Source + Send>)
        },
        control.clone(),
    ) {
        Ok(r) => r,
        Err(e) => panic!("{e}"),
    };
    let mut c = Count::default();
    let mut seeked = false;
    let ctl = control.clone();
    let r = run(&mut replay, &mut [&mut c], &mut || {
        if ctl.ended() && !seeked {
            seeked = true;
            ctl.seek(1);
            return false;
        }
        seeked && ctl.ended()
    });
    assert!(r.is_ok());
    drop(replay);
    assert_eq!(opened, 2, "a seek backwards re-opens the source");
    assert_eq!(c.restarts, 1);
    assert_eq!(
        c.events, total,
        "the second pass delivered the whole stream"
    );
}

#[test]
fn replay_paced_by_timestamps_waits_and_pauses() {
    let mut spec = WorkloadSpec::new("fill-drain");
    spec.iterations = Some(1);
    spec.swap_size_bytes = 1 << 20;
    let bytes = recording(&spec, 4096);
    // Synthetic timestamps are 1 µs apart; at speed 0.001 one event takes 1 ms of wall time,
    // so 30 ms of polling cannot deliver more than a few dozen events.
    let control = ReplayControl::new(0.001);
    let mut replay = match Replay::new(
        || Ok(Box::new(file_source(bytes.clone())) as Box<dyn Source + Send>),
        control.clone(),
    ) {
        Ok(r) => r,
        Err(e) => panic!("{e}"),
    };
    let mut c = Count::default();
    let t0 = Instant::now();
    let r = run(&mut replay, &mut [&mut c], &mut || {
        t0.elapsed() > Duration::from_millis(30)
    });
    assert!(r.is_ok());
    assert!(c.events > 0, "the first events are delivered at once");
    assert!(c.events < 200, "{} events in 30 ms at 1 ms each", c.events);
    // Paused: nothing moves.
    control.set_paused(true);
    let before = control.position();
    let mut c2 = Count::default();
    let t1 = Instant::now();
    let mut replay2 = match Replay::new(
        || Ok(Box::new(file_source(bytes.clone())) as Box<dyn Source + Send>),
        control.clone(),
    ) {
        Ok(r) => r,
        Err(e) => panic!("{e}"),
    };
    let r = run(&mut replay2, &mut [&mut c2], &mut || {
        t1.elapsed() > Duration::from_millis(30)
    });
    assert!(r.is_ok());
    assert_eq!(c2.events, 0, "a paused replay delivers nothing");
    assert_eq!(control.position(), before);
}
