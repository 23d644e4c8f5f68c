//! The driver is deterministic whatever the batch sizes, streams every source without holding
//! it whole, and the replay clock pauses, seeks and restarts.

use super::*;
use crate::source::sim::SimSource;
use crate::testkit::{file_source, recording};
use crate::workload::{self, WorkloadSpec};

/// Counts what reaches it into a counter a stop condition can read.
struct Seen(std::sync::Arc<std::sync::atomic::AtomicU64>);

impl Sink for Seen {
    fn push(&mut self, batch: &[Event]) -> Result<(), SinkError> {
        self.0
            .fetch_add(batch.len() as u64, std::sync::atomic::Ordering::Relaxed);
        Ok(())
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

/// A replay of a recording held in memory, re-read from its start at each seek backwards.
fn replay_of<'a>(bytes: &'a [u8], control: &std::sync::Arc<ReplayControl>) -> Replay<'a> {
    match Replay::new(
        || Ok(Box::new(file_source(bytes.to_vec())) as Box<dyn Source + Send>),
        control.clone(),
    ) {
        Ok(r) => r,
        Err(e) => panic!("{e}"),
    }
}

/// What the replay's status line shows (hostile #21 class 7): the position never beyond what
/// was read (it read "1.9484s / 1.6397s" from the analysis' lagging span), the whole recording
/// once ended, and a seek backwards visible while it re-reads from the start.
#[test]
fn a_replay_says_what_it_read_and_that_it_is_seeking() {
    let mut spec = WorkloadSpec::new("thp-fragment");
    spec.iterations = Some(2);
    spec.swap_size_bytes = 8 << 20;
    let bytes = recording(&spec, 4096);
    let last = match workload::generate(&spec) {
        Ok(v) => v.iter().map(crate::event::Event::ts).max().unwrap_or(0),
        Err(e) => panic!("{e}"),
    };
    let control = ReplayControl::new(f64::INFINITY);
    let mut replay = replay_of(&bytes, &control);
    let ctl = control.clone();
    let (mut seeked, mut seen_seeking, mut behind) = (false, false, 0u32);
    let r = run(&mut replay, &mut [&mut Count::default()], &mut || {
        if ctl.read_to() < ctl.position() {
            behind += 1;
        }
        seen_seeking |= ctl.seeking().is_some();
        if ctl.ended() && !seeked {
            assert_eq!(
                ctl.read_to(),
                last,
                "the end read is the recording's last time"
            );
            seeked = true;
            ctl.seek(last / 2);
            return false;
        }
        seeked && ctl.ended()
    });
    assert!(r.is_ok());
    assert_eq!(behind, 0, "the position went beyond what was read");
    assert!(seen_seeking, "a seek backwards never showed as seeking");
    assert_eq!(control.seeking(), None, "the seek ended");
    assert_eq!(control.read_to(), last);
}

/// A damaged recording ends early: the replay's control holds the source's warning once it
/// ended, for the viewer to show beside the partial count (it came only after quitting).
#[test]
fn a_damaged_recording_says_so_when_the_replay_reaches_its_end() {
    let mut spec = WorkloadSpec::new("thp-fragment");
    spec.iterations = Some(2);
    spec.swap_size_bytes = 8 << 20;
    let mut bytes = recording(&spec, 4096);
    bytes.truncate(bytes.len() * 2 / 3);
    let control = ReplayControl::new(f64::INFINITY);
    let mut replay = replay_of(&bytes, &control);
    let ctl = control.clone();
    let r = run(&mut replay, &mut [&mut Count::default()], &mut || {
        ctl.ended()
    });
    assert!(r.is_ok());
    let w = control.warnings();
    assert!(
        !w.is_empty(),
        "no warning for a recording cut at two thirds"
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
    // 30 ms from the first event delivered (not from the start: on a loaded machine opening the
    // file can take longer than that), or 10 s without one (then the assertion below fails).
    let seen = std::sync::Arc::new(std::sync::atomic::AtomicU64::new(0));
    let mut s = Seen(seen.clone());
    let mut first: Option<Instant> = None;
    let r = run(&mut replay, &mut [&mut c, &mut s], &mut || {
        if first.is_none() && seen.load(std::sync::atomic::Ordering::Relaxed) > 0 {
            first = Some(Instant::now());
        }
        first.is_some_and(|f| f.elapsed() > Duration::from_millis(30))
            || t0.elapsed() > Duration::from_secs(10)
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
