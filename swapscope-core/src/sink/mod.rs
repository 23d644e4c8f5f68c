//! Where events go: the recorder ([`record::RecordSink`]), the analysis behind reports, the TUI
//! and the exporter ([`analysis::Analysis`], on its own thread with [`analysis::Threaded`]), and
//! the status line ([`progress::Progress`]). [`crate::pipeline::run`] feeds them batches in
//! stream order.

pub mod analysis;
pub mod progress;
pub mod record;
pub mod snapshot;

use std::{sync::Arc, time::Instant};

use crate::{event::Event, record::RecordingHeader, source::Summary};

#[derive(Debug, thiserror::Error)]
pub enum SinkError {
    /// Writing a recording failed; `path` keeps everything written before.
    #[error("writing {path}: {cause} (everything recorded before the error is kept and readable)")]
    Record { path: String, cause: String },
    #[error("{0}")]
    Other(String),
}

/// A consumer of the event stream.
pub trait Sink {
    /// Called once with the source's header, before any events.
    fn start(&mut self, _header: &RecordingHeader) -> Result<(), SinkError> {
        Ok(())
    }

    /// The next events, in stream order.
    fn push(&mut self, batch: &[Event]) -> Result<(), SinkError>;

    /// The same, for a sink that keeps the batch beyond the call (handing it to another thread
    /// without a copy). The driver calls this one; it defaults to [`Sink::push`].
    fn push_shared(&mut self, batch: &Arc<Vec<Event>>) -> Result<(), SinkError> {
        self.push(batch)
    }

    /// Called after every poll of the source with the wall-clock time (flushes, status lines).
    fn tick(&mut self, _now: Instant) -> Result<(), SinkError> {
        Ok(())
    }

    /// The stream starts over (a replay seeking backwards): forget what was built from it.
    fn restart(&mut self, _header: &RecordingHeader) -> Result<(), SinkError> {
        Ok(())
    }

    /// The stream ended.
    fn finish(&mut self, _summary: &Summary) -> Result<(), SinkError> {
        Ok(())
    }
}
