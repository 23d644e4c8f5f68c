//! A recording as a source: decoding (decompression included) runs on a second thread, a chunk
//! ahead, so it overlaps whatever consumes the events.

use std::{
    fs::File,
    io::{BufReader, Read},
    path::Path,
    sync::mpsc,
    thread::JoinHandle,
};

use super::{Poll, Source, SourceError, Summary};
use crate::{
    event::Event,
    record::{FormatError, Reader, RecordingHeader},
};

type Batch = Result<Vec<Event>, FormatError>;

/// Events of a recording, in file order.
pub struct FileSource {
    header: RecordingHeader,
    rx: Option<mpsc::Receiver<Batch>>,
    decoder: Option<JoinHandle<Summary>>,
    summary: Summary,
}

impl FileSource {
    /// Opens `path`; a file that is not a recording, or whose header is damaged, is an error
    /// here (damage after the header ends the stream with a warning instead).
    pub fn open(path: &Path) -> Result<Self, SourceError> {
        let name = path.display().to_string();
        let f = File::open(path).map_err(|e| {
            SourceError::Host(format!(
                "opening {name}: {e}{}",
                if e.kind() == std::io::ErrorKind::NotFound {
                    " (record one with `swapscope record -o FILE`)"
                } else {
                    ""
                }
            ))
        })?;
        Ok(Self::from_reader(Reader::open_named(
            BufReader::new(f),
            &name,
        )?))
    }

    /// A source over any reader (tests use in-memory recordings).
    pub fn from_reader<R: Read + Send + 'static>(mut reader: Reader<R>) -> Self {
        let header = reader.header().clone();
        // One batch in flight: the decoder stays a chunk ahead and memory stays at two chunks.
        let (tx, rx) = mpsc::sync_channel::<Batch>(1);
        let decoder = std::thread::Builder::new()
            .name("swapscope-decode".into())
            .spawn(move || {
                loop {
                    let mut batch = Vec::new();
                    match reader.next_batch(&mut batch) {
                        Ok(true) => {
                            if tx.send(Ok(batch)).is_err() {
                                break;
                            }
                        }
                        Ok(false) => break,
                        Err(e) => {
                            let _ = tx.send(Err(e));
                            break;
                        }
                    }
                }
                Summary {
                    warnings: reader.warnings().iter().map(|w| w.to_string()).collect(),
                    skipped_records: reader.stats().skipped_records,
                    command_failed: None,
                }
            });
        match decoder {
            Ok(handle) => FileSource {
                header,
                rx: Some(rx),
                decoder: Some(handle),
                summary: Summary::default(),
            },
            Err(e) => FileSource {
                header,
                rx: None,
                decoder: None,
                summary: Summary {
                    warnings: vec![format!("could not start the decoding thread: {e}")],
                    ..Summary::default()
                },
            },
        }
    }

    fn join(&mut self) -> Result<(), SourceError> {
        self.rx = None;
        if let Some(h) = self.decoder.take() {
            self.summary = h.join().map_err(|_| SourceError::Thread("decoding"))?;
        }
        Ok(())
    }
}

impl Source for FileSource {
    fn header(&self) -> &RecordingHeader {
        &self.header
    }

    fn poll(&mut self, out: &mut Vec<Event>) -> Result<Poll, SourceError> {
        let next = self.rx.as_ref().and_then(|rx| rx.recv().ok());
        match next {
            Some(Ok(mut batch)) => {
                if out.is_empty() {
                    std::mem::swap(out, &mut batch);
                } else {
                    out.append(&mut batch);
                }
                Ok(Poll::Events)
            }
            Some(Err(e)) => {
                self.join()?;
                Err(e.into())
            }
            None => {
                self.join()?;
                Ok(Poll::End)
            }
        }
    }

    fn stop(&mut self) {
        // Dropping the receiver ends the decoder at its next send.
        self.rx = None;
    }

    fn summary(&self) -> Summary {
        self.summary.clone()
    }
}

impl Drop for FileSource {
    fn drop(&mut self) {
        let _ = self.join();
    }
}
