//! Where events come from. Every command is a pairing of one [`Source`] with sinks, driven by
//! [`crate::pipeline::run`]:
//!
//! * `LiveSource` (in the `swapscope` crate, the probe side) — the BPF probes and the host
//!   samplers (root);
//! * [`file::FileSource`] — a recording, decoded on a second thread;
//! * [`sim::SimSource`] — a simulated workload, generated on a second thread and streamed, never
//!   collected.
//!
//! A source yields batches of [`Event`]s in stream order plus the header that describes them.

mod background;
pub mod file;
pub mod markers;
pub mod sim;

use crate::{
    event::Event,
    record::{FormatError, RecordingHeader},
    workload::WorkloadError,
};

/// Lines for the viewer's log pane (BPF-side diagnostics, a command's output): a bounded
/// queue, clones share it.
#[derive(Clone, Debug, Default)]
pub struct Log(std::sync::Arc<std::sync::Mutex<std::collections::VecDeque<String>>>);

impl Log {
    const KEEP: usize = 200;

    pub fn push(&self, line: String) {
        if let Ok(mut q) = self.0.lock() {
            if q.len() >= Self::KEEP {
                q.pop_front();
            }
            q.push_back(line);
        }
    }

    /// The kept lines, oldest first.
    pub fn lines(&self) -> Vec<String> {
        self.0
            .lock()
            .map(|q| q.iter().cloned().collect())
            .unwrap_or_default()
    }
}

/// Moves `batch` to the end of `out` (without copying when `out` is empty).
pub fn append(out: &mut Vec<Event>, mut batch: Vec<Event>) {
    if out.is_empty() {
        *out = batch;
    } else {
        out.append(&mut batch);
    }
}

/// What [`Source::poll`] found.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Poll {
    /// Events were appended to the batch (possibly none, for a live source whose wait ended).
    Events,
    /// The stream starts over from its beginning (a replay seeking backwards): sinks drop what
    /// they built and take the events that follow as a new stream.
    Restart,
    /// No more events will come.
    End,
}

#[derive(Debug, thiserror::Error)]
pub enum SourceError {
    #[error(transparent)]
    Format(#[from] FormatError),
    #[error(transparent)]
    Workload(#[from] WorkloadError),
    /// The probe side's error (the BPF loader's), kept whole for its message and hints.
    #[error(transparent)]
    Probe(Box<dyn std::error::Error + Send + Sync>),
    #[error("{0}")]
    Host(String),
    /// The command to run while recording could not start.
    #[error("{0}; nothing was recorded")]
    CommandStart(String),
    #[error("the {0} thread stopped unexpectedly")]
    Thread(&'static str),
}

/// What a source says about the stream once it has ended.
#[derive(Clone, Debug, Default)]
pub struct Summary {
    /// Problems met while reading (truncation, corruption), one line each.
    pub warnings: Vec<String>,
    /// Records of kinds this build does not know (skipped).
    pub skipped_records: u64,
    /// `record -- CMD`: how the command ended, as text (`None` when there was no command or it
    /// succeeded).
    pub command_failed: Option<String>,
}

/// A stream of events.
pub trait Source {
    /// What the stream is: machine, session, probe plan.
    fn header(&self) -> &RecordingHeader;

    /// Appends the next events to `out` (which the caller has cleared). A live source waits a
    /// short while for data and may return [`Poll::Events`] with nothing appended.
    fn poll(&mut self, out: &mut Vec<Event>) -> Result<Poll, SourceError>;

    /// Asks the source to end: it still delivers what it holds (a live source takes its last
    /// counter sample and drains the ring buffer), then [`Poll::End`].
    fn stop(&mut self) {}

    /// The summary; complete once `poll` has returned [`Poll::End`].
    fn summary(&self) -> Summary;

    /// After the stream ended: waits for what the source started to finish (a command's own
    /// clean-up, e.g. a demo workload removing its swap device).
    fn wait(&mut self) {}

    /// Takes back a batch vector no sink kept, so its memory is used again rather than
    /// allocated (and faulted in) afresh for the next batch.
    fn recycle(&mut self, _batch: Vec<Event>) {}
}
