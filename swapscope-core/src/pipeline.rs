//! The one driver: a [`Source`] feeds [`Sink`]s, batch by batch, in stream order. Every command
//! is a pairing (docs/ARCHITECTURE.md):
//!
//! | command | source | sinks |
//! |---|---|---|
//! | `record` | live | record, progress |
//! | `report` | file | analysis → text/JSON |
//! | `simulate` | sim | analysis (+ record with `-o`) |
//! | `live` | live | analysis on its thread → TUI (+ record with `--record`) |
//! | `replay` | file, paced by [`Replay`] | analysis on its thread → TUI |
//!
//! A sink that fails is dropped from the run, the source is asked to stop (it still delivers
//! what it holds to the other sinks), every sink is finished, and the first error is returned.

use std::{
    sync::{
        Arc, Mutex,
        atomic::{AtomicBool, AtomicU64, Ordering},
    },
    time::{Duration, Instant},
};

use crate::{
    event::{Event, Ts},
    record::RecordingHeader,
    sink::{Sink, SinkError},
    source::{Poll, Source, SourceError, Summary},
};

#[derive(Debug, thiserror::Error)]
pub enum PipelineError {
    #[error(transparent)]
    Source(#[from] SourceError),
    #[error(transparent)]
    Sink(#[from] SinkError),
}

/// Runs `source` into `sinks` until the source ends. `stop` is asked after every poll; once it
/// says yes the source is told to stop (and still delivers what it holds).
pub fn run(
    source: &mut dyn Source,
    sinks: &mut [&mut dyn Sink],
    stop: &mut dyn FnMut() -> bool,
) -> Result<Summary, PipelineError> {
    let header = source.header().clone();
    let mut failed = vec![false; sinks.len()];
    let mut first_error: Option<PipelineError> = None;
    let mut stopping = false;
    for (sink, f) in sinks.iter_mut().zip(failed.iter_mut()) {
        if let Err(e) = sink.start(&header) {
            *f = true;
            first_error.get_or_insert(e.into());
        }
    }
    if first_error.is_some() {
        source.stop();
        stopping = true;
    }
    loop {
        if !stopping && stop() {
            source.stop();
            stopping = true;
        }
        // A fresh vector per batch: sinks may keep the batch (shared, not copied) while the
        // next one is read.
        let mut batch: Vec<Event> = Vec::new();
        let poll = match source.poll(&mut batch) {
            Ok(p) => p,
            Err(e) => {
                first_error.get_or_insert(e.into());
                break;
            }
        };
        let batch = Arc::new(batch);
        let now = Instant::now();
        let mut fail = |i: usize, e: SinkError, failed: &mut [bool]| {
            if let Some(f) = failed.get_mut(i) {
                *f = true;
            }
            first_error.get_or_insert(e.into());
        };
        let mut any_failed = false;
        for (i, sink) in sinks.iter_mut().enumerate() {
            if failed.get(i).copied().unwrap_or(true) {
                continue;
            }
            let r = match poll {
                Poll::Restart => sink.restart(source.header()),
                Poll::Events | Poll::End => {
                    let pushed = if batch.is_empty() {
                        Ok(())
                    } else {
                        sink.push_shared(&batch)
                    };
                    pushed.and_then(|()| sink.tick(now))
                }
            };
            if let Err(e) = r {
                fail(i, e, &mut failed);
                any_failed = true;
            }
        }
        if any_failed && !stopping {
            source.stop();
            stopping = true;
        }
        // No sink kept the batch: its vector goes back to the source.
        if let Ok(v) = Arc::try_unwrap(batch) {
            source.recycle(v);
        }
        if poll == Poll::End {
            break;
        }
    }
    let summary = source.summary();
    for (sink, f) in sinks.iter_mut().zip(&failed) {
        if *f {
            continue;
        }
        if let Err(e) = sink.finish(&summary) {
            first_error.get_or_insert(e.into());
        }
    }
    match first_error {
        Some(e) => Err(e),
        None => Ok(summary),
    }
}

/// What a replay is told by its viewer: pause, speed, seek. Shared between the TUI thread and
/// the driver.
#[derive(Debug)]
pub struct ReplayControl {
    paused: AtomicBool,
    /// Speed × 1000 (`u64::MAX`: as fast as possible).
    speed_milli: AtomicU64,
    seek: Mutex<Option<Ts>>,
    /// Run unpaced until the next marker has been delivered.
    to_marker: AtomicBool,
    /// Stream time of the last event delivered.
    position: AtomicU64,
    /// The latest stream time read from the source so far (≥ `position`; the recording's end
    /// once `ended`).
    read: AtomicU64,
    /// Where a seek is running to, unpaced (0: none).
    seeking: AtomicU64,
    ended: AtomicBool,
    /// The source's warnings once it ended (damage that ended the stream early).
    warnings: Mutex<Vec<String>>,
    /// At the end of the recording, keep the stream open (a viewer can still seek back);
    /// otherwise the replay ends there.
    hold_at_end: AtomicBool,
}

impl ReplayControl {
    /// `speed`: stream seconds per wall second; infinite or ≤ 0 means as fast as possible.
    pub fn new(speed: f64) -> Arc<Self> {
        let c = ReplayControl {
            paused: AtomicBool::new(false),
            speed_milli: AtomicU64::new(0),
            seek: Mutex::new(None),
            to_marker: AtomicBool::new(false),
            position: AtomicU64::new(0),
            read: AtomicU64::new(0),
            seeking: AtomicU64::new(0),
            ended: AtomicBool::new(false),
            warnings: Mutex::new(Vec::new()),
            hold_at_end: AtomicBool::new(true),
        };
        c.set_speed(speed);
        Arc::new(c)
    }

    pub fn paused(&self) -> bool {
        self.paused.load(Ordering::Relaxed)
    }

    pub fn set_paused(&self, p: bool) {
        self.paused.store(p, Ordering::Relaxed);
    }

    /// Stream seconds per wall second (`f64::INFINITY`: as fast as possible).
    pub fn speed(&self) -> f64 {
        match self.speed_milli.load(Ordering::Relaxed) {
            u64::MAX => f64::INFINITY,
            m => m as f64 / 1000.0,
        }
    }

    pub fn set_speed(&self, speed: f64) {
        let m = if !speed.is_finite() || speed <= 0.0 || speed >= 1e9 {
            u64::MAX
        } else {
            ((speed * 1000.0).round() as u64).clamp(1, u64::MAX - 1)
        };
        self.speed_milli.store(m, Ordering::Relaxed);
    }

    /// Asks the replay to continue from stream time `ts` (backwards re-reads the recording from
    /// its start, as fast as possible, up to `ts`).
    pub fn seek(&self, ts: Ts) {
        if let Ok(mut s) = self.seek.lock() {
            *s = Some(ts);
        }
    }

    /// Asks the replay to run ahead, unpaced, to just after the next marker.
    pub fn seek_next_marker(&self) {
        self.to_marker.store(true, Ordering::Relaxed);
    }

    fn take_seek(&self) -> Option<Ts> {
        self.seek.lock().ok().and_then(|mut s| s.take())
    }

    /// Stream time of the last event handed to the sinks.
    pub fn position(&self) -> Ts {
        self.position.load(Ordering::Relaxed)
    }

    /// The latest stream time read from the recording so far: the recording's end once
    /// [`Self::ended`], never behind [`Self::position`].
    pub fn read_to(&self) -> Ts {
        self.read.load(Ordering::Relaxed).max(self.position())
    }

    /// The stream time a seek is running to, while it runs (a seek backwards re-reads the
    /// recording from its start: seconds on a large one).
    pub fn seeking(&self) -> Option<Ts> {
        match self.seeking.load(Ordering::Relaxed) {
            0 => None,
            t => Some(t),
        }
    }

    /// What the source warned of when it ended (a damaged recording ends early: the viewer
    /// says so while it shows the partial count, not only after quitting).
    pub fn warnings(&self) -> Vec<String> {
        self.warnings.lock().map(|w| w.clone()).unwrap_or_default()
    }

    /// Whether the replay stays open at the end of the recording (the default, for viewers
    /// that may seek back) or ends there (`serve --replay`, whose analysis then says the stream
    /// ended).
    pub fn set_hold_at_end(&self, hold: bool) {
        self.hold_at_end.store(hold, Ordering::Relaxed);
    }

    /// Whether the recording has been read to its end.
    pub fn ended(&self) -> bool {
        self.ended.load(Ordering::Relaxed)
    }
}

/// Longest wait for one gap between events at speed 1: idle stretches of a recording are
/// shortened to this much wall time.
const MAX_GAP: Duration = Duration::from_secs(1);
/// Longest a poll sleeps, so pause, seek and stop are seen promptly.
const POLL_SLEEP: Duration = Duration::from_millis(20);

/// A source replayed in stream time: events are handed on when the replay clock reaches their
/// timestamp, at the speed [`ReplayControl`] says; pause holds them; a seek backwards re-opens
/// the source ([`Poll::Restart`]) and runs it unpaced up to the target.
pub struct Replay<'a> {
    open: Box<dyn FnMut() -> Result<Box<dyn Source + Send>, SourceError> + Send + 'a>,
    src: Box<dyn Source + Send>,
    control: Arc<ReplayControl>,
    pending: Vec<Event>,
    next: usize,
    src_ended: bool,
    /// Deliver without pacing up to this stream time.
    fast_until: Option<Ts>,
    /// The replay clock: stream time `anchor_ts` was at wall time `anchor_wall`.
    anchor: Option<(Ts, Instant)>,
    anchor_speed: f64,
    stopped: bool,
}

impl<'a> Replay<'a> {
    /// `open` makes a fresh source over the same stream (called now, and again on each seek
    /// backwards).
    pub fn new(
        mut open: impl FnMut() -> Result<Box<dyn Source + Send>, SourceError> + Send + 'a,
        control: Arc<ReplayControl>,
    ) -> Result<Self, SourceError> {
        let src = open()?;
        Ok(Replay {
            open: Box::new(open),
            src,
            control,
            pending: Vec::new(),
            next: 0,
            src_ended: false,
            fast_until: None,
            anchor: None,
            anchor_speed: 1.0,
            stopped: false,
        })
    }

    /// Hands the next pending event on, moved (a delivered event is never read again: a
    /// placeholder takes its place, so a large counter sample is not copied).
    fn deliver(&mut self, out: &mut Vec<Event>) {
        if let Some(slot) = self.pending.get_mut(self.next) {
            out.push(std::mem::replace(
                slot,
                Event::Lost(crate::event::Lost::default()),
            ));
        }
        self.next += 1;
    }

    fn reanchor(&mut self, ts: Ts, now: Instant) {
        self.anchor = Some((ts, now));
        self.anchor_speed = self.control.speed();
    }

    /// Stream time the clock allows at `now`.
    fn allowed(&mut self, now: Instant) -> Ts {
        let speed = self.control.speed();
        let mut pos = self.control.position();
        if pos == 0 {
            // Nothing delivered yet: the clock starts at the first timestamp.
            pos = self.pending[self.next..]
                .iter()
                .map(Event::ts)
                .find(|&t| t != 0)
                .unwrap_or(0);
        }
        if speed != self.anchor_speed || self.anchor.is_none() {
            self.reanchor(pos, now);
        }
        let Some((ts, wall)) = self.anchor else {
            return pos;
        };
        if speed.is_infinite() {
            return Ts::MAX;
        }
        let dt = now.saturating_duration_since(wall).as_secs_f64() * speed * 1e9;
        ts.saturating_add(dt.min(u64::MAX as f64 / 2.0) as u64)
    }
}

impl Source for Replay<'_> {
    fn header(&self) -> &RecordingHeader {
        self.src.header()
    }

    fn poll(&mut self, out: &mut Vec<Event>) -> Result<Poll, SourceError> {
        if self.stopped {
            return Ok(Poll::End);
        }
        if let Some(target) = self.control.take_seek() {
            if target < self.control.position() {
                self.src = (self.open)()?;
                self.pending.clear();
                self.next = 0;
                self.src_ended = false;
                self.control.position.store(0, Ordering::Relaxed);
                self.control.ended.store(false, Ordering::Relaxed);
                self.control.seeking.store(target.max(1), Ordering::Relaxed);
                self.fast_until = Some(target);
                self.anchor = None;
                return Ok(Poll::Restart);
            }
            self.control.seeking.store(target.max(1), Ordering::Relaxed);
            self.fast_until = Some(target);
        }
        if self.next >= self.pending.len() {
            if self.src_ended {
                self.control.ended.store(true, Ordering::Relaxed);
                self.control.seeking.store(0, Ordering::Relaxed);
                if !self.control.hold_at_end.load(Ordering::Relaxed) {
                    return Ok(Poll::End);
                }
                // Keep the viewer alive at the end: seeking back is still possible.
                std::thread::sleep(POLL_SLEEP);
                return Ok(Poll::Events);
            }
            self.pending.clear();
            self.next = 0;
            if self.src.poll(&mut self.pending)? == Poll::End {
                self.src_ended = true;
                if let Ok(mut w) = self.control.warnings.lock() {
                    *w = self.src.summary().warnings;
                }
            }
            if let Some(ts) = self.pending.iter().map(Event::ts).max() {
                self.control.read.fetch_max(ts, Ordering::Relaxed);
            }
            return Ok(Poll::Events);
        }
        let now = Instant::now();
        if self.control.to_marker.load(Ordering::Relaxed) {
            while let Some(ev) = self.pending.get(self.next) {
                let (ts, marker) = (ev.ts(), matches!(ev, Event::Marker(_)));
                self.deliver(out);
                if ts != 0 {
                    self.control.position.fetch_max(ts, Ordering::Relaxed);
                }
                if marker {
                    self.control.to_marker.store(false, Ordering::Relaxed);
                    self.reanchor(ts, now);
                    break;
                }
            }
            return Ok(Poll::Events);
        }
        if let Some(target) = self.fast_until {
            while let Some(ev) = self.pending.get(self.next) {
                let ts = ev.ts();
                if ts >= target && ts != 0 {
                    self.fast_until = None;
                    self.control.seeking.store(0, Ordering::Relaxed);
                    self.reanchor(target, now);
                    break;
                }
                self.deliver(out);
                if ts != 0 {
                    self.control.position.fetch_max(ts, Ordering::Relaxed);
                }
            }
            return Ok(Poll::Events);
        }
        if self.control.paused() {
            self.anchor = None;
            std::thread::sleep(POLL_SLEEP);
            return Ok(Poll::Events);
        }
        let allowed = self.allowed(now);
        while let Some(ev) = self.pending.get(self.next) {
            let ts = ev.ts();
            if ts != 0 && ts > allowed {
                let pos = self.control.position();
                let speed = self.control.speed();
                // Idle stretches are shortened to MAX_GAP of wall time.
                let gap = Duration::from_secs_f64(ts.saturating_sub(pos) as f64 / 1e9 / speed);
                if out.is_empty() && gap > MAX_GAP && pos != 0 {
                    let skip_to = ts.saturating_sub((MAX_GAP.as_secs_f64() * speed * 1e9) as u64);
                    self.reanchor(skip_to, now);
                }
                if out.is_empty() {
                    let wait =
                        Duration::from_secs_f64(ts.saturating_sub(allowed) as f64 / 1e9 / speed);
                    std::thread::sleep(wait.min(POLL_SLEEP));
                }
                break;
            }
            self.deliver(out);
            if ts != 0 {
                self.control.position.fetch_max(ts, Ordering::Relaxed);
            }
        }
        Ok(Poll::Events)
    }

    fn stop(&mut self) {
        self.stopped = true;
        self.src.stop();
    }

    fn summary(&self) -> Summary {
        self.src.summary()
    }

    fn wait(&mut self) {
        self.src.wait();
    }

    fn recycle(&mut self, batch: Vec<Event>) {
        self.src.recycle(batch);
    }
}

#[cfg(test)]
mod tests;
