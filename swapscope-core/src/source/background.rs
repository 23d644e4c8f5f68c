//! A producer thread handing batches of events over a bounded channel: what the file and the
//! simulate sources are made of.

use std::{sync::mpsc, thread::JoinHandle};

use super::{Poll, SourceError, Summary};
use crate::event::Event;

/// What the producer sends: a batch, or the error that ended it.
pub(crate) type Batch = Result<Vec<Event>, SourceError>;

/// Where a producer sends its batches; `send` is false once the consumer has gone.
pub(crate) struct Sender {
    tx: mpsc::SyncSender<Batch>,
    recycled: mpsc::Receiver<Vec<Event>>,
}

impl Sender {
    pub(crate) fn send(&self, b: Batch) -> bool {
        self.tx.send(b).is_ok()
    }

    /// An empty vector for the next batch: one the consumer gave back when there is one.
    pub(crate) fn vec(&self) -> Vec<Event> {
        match self.recycled.try_recv() {
            Ok(mut v) => {
                v.clear();
                v
            }
            Err(_) => Vec::new(),
        }
    }
}

/// Vectors waiting to be used again, at most.
const RECYCLED: usize = 2;

/// The consumer's end: a producer thread and its channel.
pub(crate) struct Background {
    rx: Option<mpsc::Receiver<Batch>>,
    recycle: Option<mpsc::SyncSender<Vec<Event>>>,
    handle: Option<JoinHandle<Summary>>,
    what: &'static str,
    summary: Summary,
}

impl Background {
    /// Starts `produce` on a thread named `swapscope-<what>`, with `in_flight` batches of room.
    pub(crate) fn spawn(
        what: &'static str,
        in_flight: usize,
        produce: impl FnOnce(Sender) -> Summary + Send + 'static,
    ) -> Result<Self, SourceError> {
        let (tx, rx) = mpsc::sync_channel::<Batch>(in_flight);
        let (recycle, recycled) = mpsc::sync_channel::<Vec<Event>>(RECYCLED);
        let handle = std::thread::Builder::new()
            .name(format!("swapscope-{what}"))
            .spawn(move || produce(Sender { tx, recycled }))
            .map_err(|e| SourceError::Host(format!("starting the {what} thread: {e}")))?;
        Ok(Background {
            rx: Some(rx),
            recycle: Some(recycle),
            handle: Some(handle),
            what,
            summary: Summary::default(),
        })
    }

    /// The next batch appended to `out`, or the end (the producer's summary is then kept).
    pub(crate) fn poll(&mut self, out: &mut Vec<Event>) -> Result<Poll, SourceError> {
        match self.rx.as_ref().and_then(|rx| rx.recv().ok()) {
            Some(Ok(batch)) => {
                super::append(out, batch);
                Ok(Poll::Events)
            }
            Some(Err(e)) => {
                self.join()?;
                Err(e)
            }
            None => {
                self.join()?;
                Ok(Poll::End)
            }
        }
    }

    /// Drops the channel: the producer ends at its next send.
    pub(crate) fn stop(&mut self) {
        self.rx = None;
    }

    /// Gives a batch vector back to the producer (dropped when it has enough).
    pub(crate) fn recycle(&mut self, v: Vec<Event>) {
        if let Some(r) = &self.recycle {
            let _ = r.try_send(v);
        }
    }

    pub(crate) fn summary(&self) -> Summary {
        self.summary.clone()
    }

    fn join(&mut self) -> Result<(), SourceError> {
        self.rx = None;
        self.recycle = None;
        if let Some(h) = self.handle.take() {
            self.summary = h.join().map_err(|_| SourceError::Thread(self.what))?;
        }
        Ok(())
    }
}

impl Drop for Background {
    fn drop(&mut self) {
        let _ = self.join();
    }
}
