//! The status line of `record`: kernel events so far, their rate, and ring-buffer drops, once a
//! second on a terminal.

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
            "\r{}: {:>10} events  {:>9.0}/s  {} dropped   ",
            self.label,
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
        }
        Ok(())
    }
}
