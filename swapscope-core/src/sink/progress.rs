//! The status line of `record` and of sweeps: kernel events so far, their rate, and ring-buffer
//! drops, once a second on a terminal; a sweep's line also says which point it replays.

use std::{
    io::Write as _,
    time::{Duration, Instant},
};

use super::{Sink, SinkError};
use crate::{event::Event, source::Summary};

/// Counts what passes; prints a status line on stderr once a second when `show` is set.
pub struct Progress {
    label: &'static str,
    show: bool,
    started: Option<Instant>,
    next: Option<Instant>,
    /// Kernel events (write-outs, requests, frees, splits).
    pub events: u64,
    /// Ring-buffer drops (the latest cumulative count).
    pub dropped: u64,
    printed: bool,
    /// What this pass is (a sweep's point: `40% (2 of 5)`), printed before the counts.
    stage: String,
}

impl Progress {
    pub fn new(label: &'static str, show: bool) -> Self {
        Progress {
            label,
            show,
            started: None,
            next: None,
            events: 0,
            dropped: 0,
            printed: false,
            stage: String::new(),
        }
    }

    /// Starts a new pass (a sweep's next point): counts from zero, the line names it, and it is
    /// printed at once.
    pub fn stage(&mut self, stage: String) {
        self.stage = stage;
        self.events = 0;
        self.started = None;
        self.next = None;
        if self.show {
            eprint!("\r{}: {} …   ", self.label, self.stage);
            let _ = std::io::stderr().flush();
            self.printed = true;
        }
    }

    /// Seconds since the first tick.
    pub fn elapsed_s(&self) -> f64 {
        self.started.map_or(0.0, |t| t.elapsed().as_secs_f64())
    }
}

impl Sink for Progress {
    fn push(&mut self, batch: &[Event]) -> Result<(), SinkError> {
        for ev in batch {
            match ev {
                Event::Lost(l) => self.dropped = self.dropped.max(l.ringbuf),
                e if e.is_kernel_event() => self.events += 1,
                _ => {}
            }
        }
        Ok(())
    }

    fn tick(&mut self, now: Instant) -> Result<(), SinkError> {
        let t0 = *self.started.get_or_insert(now);
        let next = *self.next.get_or_insert(now + Duration::from_secs(1));
        if !self.show || now < next {
            return Ok(());
        }
        self.next = Some(now + Duration::from_secs(1));
        let secs = now.duration_since(t0).as_secs_f64().max(1e-9);
        eprint!(
            "\r{}: {}{}{:>10} events  {:>9.0}/s  {} dropped   ",
            self.label,
            self.stage,
            if self.stage.is_empty() { "" } else { "  " },
            self.events,
            self.events as f64 / secs,
            self.dropped
        );
        let _ = std::io::stderr().flush();
        self.printed = true;
        Ok(())
    }

    fn finish(&mut self, _summary: &Summary) -> Result<(), SinkError> {
        if self.printed {
            eprintln!();
            self.printed = false;
        }
        Ok(())
    }
}
