//! The recorder: appends the stream to a `.swsc` file (see `crate::record`).

use std::{
    io::Write,
    time::{Duration, Instant},
};

use super::{Sink, SinkError};
use crate::{
    event::Event,
    record::{FormatError, RecordingHeader, Writer, WriterOptions, WriterStats},
    source::Summary,
};

/// Writes every event it is given; with `flush_every`, closes a chunk that often (live
/// sessions: a crash loses at most that much).
pub struct RecordSink<W: Write> {
    writer: Option<Writer<W>>,
    path: String,
    flush_every: Option<Duration>,
    next_flush: Option<Instant>,
    /// Kernel events written (write-outs, requests, frees, splits).
    kernel_events: u64,
    stats: WriterStats,
    failed: bool,
}

impl<W: Write> RecordSink<W> {
    /// Writes the file header to `w` (named `path` in messages).
    pub fn create(
        w: W,
        path: &str,
        header: &RecordingHeader,
        options: WriterOptions,
        flush_every: Option<Duration>,
    ) -> Result<Self, SinkError> {
        let writer = Writer::create(w, header, options).map_err(|e| err(path, &e))?;
        Ok(RecordSink {
            writer: Some(writer),
            path: path.to_string(),
            flush_every,
            next_flush: None,
            kernel_events: 0,
            stats: WriterStats::default(),
            failed: false,
        })
    }

    /// What was written (complete after `finish`).
    pub fn stats(&self) -> WriterStats {
        self.writer.as_ref().map_or(self.stats, Writer::stats)
    }

    /// Kernel events written: write-outs, requests, frees and splits.
    pub fn kernel_events(&self) -> u64 {
        self.kernel_events
    }

    fn fail(&mut self, e: &FormatError) -> SinkError {
        self.failed = true;
        err(&self.path, e)
    }

    /// Closes the file: the END chunk, then a flush. Idempotent (`finish` and drop call it too).
    pub fn close(&mut self) -> Result<(), SinkError> {
        let Some(w) = self.writer.take() else {
            return Ok(());
        };
        if self.failed {
            // The writer refuses further use after an error; the file ends at the last whole
            // chunk, which readers take as the end of the recording.
            return Ok(());
        }
        let (mut inner, stats) = w.finish().map_err(|e| self.fail(&e))?;
        self.stats = stats;
        inner.flush().map_err(|e| self.fail(&FormatError::Io(e)))?;
        Ok(())
    }
}

fn err(path: &str, e: &FormatError) -> SinkError {
    let cause = match e {
        FormatError::Io(io) if io.kind() == std::io::ErrorKind::StorageFull => {
            "no space left on the device (ENOSPC); free space or record elsewhere".to_string()
        }
        other => other.to_string(),
    };
    SinkError::Record {
        path: path.to_string(),
        cause,
    }
}

impl<W: Write> Sink for RecordSink<W> {
    fn push(&mut self, batch: &[Event]) -> Result<(), SinkError> {
        let Some(w) = self.writer.as_mut() else {
            return Ok(());
        };
        if self.failed {
            return Ok(());
        }
        for ev in batch {
            if let Err(e) = w.push(ev) {
                return Err(self.fail(&e));
            }
            if ev.is_kernel_event() {
                self.kernel_events += 1;
            }
        }
        Ok(())
    }

    fn tick(&mut self, now: Instant) -> Result<(), SinkError> {
        let Some(every) = self.flush_every else {
            return Ok(());
        };
        let due = *self.next_flush.get_or_insert(now + every);
        if now < due || self.failed {
            return Ok(());
        }
        self.next_flush = Some(now + every);
        if let Some(w) = self.writer.as_mut()
            && let Err(e) = w.flush_chunk()
        {
            return Err(self.fail(&e));
        }
        Ok(())
    }

    fn finish(&mut self, _summary: &Summary) -> Result<(), SinkError> {
        self.close()
    }
}

impl<W: Write> Drop for RecordSink<W> {
    fn drop(&mut self) {
        // A sink dropped without `finish` (an error elsewhere) still closes its file properly,
        // so what it holds stays readable.
        let _ = self.close();
    }
}
