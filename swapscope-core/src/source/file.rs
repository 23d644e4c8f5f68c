//! A recording as a source: decoding (decompression included) runs on a second thread, a chunk
//! ahead, so it overlaps whatever consumes the events.

use std::{
    fs::File,
    io::{BufReader, Read},
    path::Path,
};

use super::{
    Poll, Source, SourceError, Summary,
    background::{Background, Sender},
};
use crate::{
    event::Event,
    record::{Reader, RecordingHeader},
};

/// Events of a recording, in file order.
pub struct FileSource {
    header: RecordingHeader,
    decoder: Background,
}

impl FileSource {
    /// Opens `path`; a file that is not a recording, or whose header is damaged, is an error
    /// here (damage after the header ends the stream with a warning instead).
    pub fn open(path: &Path) -> Result<Self, SourceError> {
        let name = path.display().to_string();
        // A FIFO without a writer would block the open beyond any signal, and a device or a
        // directory is no recording: only regular files are read.
        if let Ok(m) = std::fs::metadata(path)
            && !m.is_file()
        {
            use std::os::unix::fs::FileTypeExt as _;
            let t = m.file_type();
            let what = if t.is_fifo() {
                "a FIFO"
            } else if t.is_dir() {
                "a directory"
            } else if t.is_socket() {
                "a socket"
            } else {
                "a device"
            };
            let hint = if t.is_dir() {
                "give a recording file in it".to_string()
            } else {
                format!("copy it to one first: cat {name} > FILE")
            };
            return Err(SourceError::Host(format!(
                "{name} is {what}: recordings are read from regular files ({hint})"
            )));
        }
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
        Self::from_reader(Reader::open_named(BufReader::new(f), &name)?)
    }

    /// A source over any reader (tests use in-memory recordings).
    pub fn from_reader<R: Read + Send + 'static>(
        mut reader: Reader<R>,
    ) -> Result<Self, SourceError> {
        let header = reader.header().clone();
        // One batch in flight: the decoder stays a chunk ahead and memory stays at two chunks.
        let decoder = Background::spawn("decode", 1, move |tx: Sender| {
            loop {
                let mut batch = tx.vec();
                match reader.next_batch(&mut batch) {
                    Ok(true) => {
                        if !tx.send(Ok(batch)) {
                            break;
                        }
                    }
                    Ok(false) => break,
                    Err(e) => {
                        tx.send(Err(e.into()));
                        break;
                    }
                }
            }
            Summary {
                warnings: reader.warnings().iter().map(|w| w.to_string()).collect(),
                skipped_records: reader.stats().skipped_records,
                command_failed: None,
            }
        })?;
        Ok(FileSource { header, decoder })
    }
}

impl Source for FileSource {
    fn header(&self) -> &RecordingHeader {
        &self.header
    }

    fn poll(&mut self, out: &mut Vec<Event>) -> Result<Poll, SourceError> {
        self.decoder.poll(out)
    }

    fn stop(&mut self) {
        self.decoder.stop();
    }

    fn summary(&self) -> Summary {
        self.decoder.summary()
    }

    fn recycle(&mut self, batch: Vec<Event>) {
        self.decoder.recycle(batch);
    }
}
