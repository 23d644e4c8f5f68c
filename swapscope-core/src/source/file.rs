//! A recording as a source: decoding (decompression included) runs on a second thread, a chunk
//! ahead, so it overlaps whatever consumes the events.

use std::{
    fs::File,
    io::{BufReader, Read},
    os::unix::fs::FileExt as _,
    path::Path,
    sync::Arc,
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

/// A recording opened once, from which a source is made as often as asked (a seek backwards
/// starts a new one). Each reads the file that was opened, by position, so a `.partial` the
/// recorder has since completed and renamed (or a file removed meanwhile) is still read: reopening
/// by name exited 1 there (hostile #21 class 7).
pub struct Recording {
    file: Arc<File>,
    name: String,
}

impl Recording {
    /// Opens `path`; only a regular file is opened (a FIFO without a writer would block the
    /// open beyond any signal, and a device or a directory is no recording).
    pub fn open(path: &Path) -> Result<Self, SourceError> {
        let name = path.display().to_string();
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
        Ok(Recording {
            file: Arc::new(f),
            name,
        })
    }

    /// A source over the recording from its start.
    pub fn source(&self) -> Result<FileSource, SourceError> {
        let at = ReadAt {
            file: self.file.clone(),
            pos: 0,
        };
        FileSource::from_reader(Reader::open_named(BufReader::new(at), &self.name)?)
    }
}

/// Reads a shared file from a position of its own (`pread`), so sources over one open file
/// never move each other's offset.
struct ReadAt {
    file: Arc<File>,
    pos: u64,
}

impl Read for ReadAt {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.file.read_at(buf, self.pos)?;
        self.pos += n as u64;
        Ok(n)
    }
}

impl FileSource {
    /// Opens `path` ([`Recording::open`]); a file that is not a recording, or whose header is
    /// damaged, is an error here (damage after the header ends the stream with a warning
    /// instead).
    pub fn open(path: &Path) -> Result<Self, SourceError> {
        Recording::open(path)?.source()
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testkit::{count_events, count_polled as events_of, data};

    /// A seek backwards makes a new source: it still reads the recording after the file was
    /// renamed (a `.partial` the recorder completed) and after it was removed.
    #[test]
    fn a_recording_renamed_or_removed_after_opening_is_read_again_whole() {
        let name = "sim-thp-fragment.swsc";
        let want = count_events(name);
        let dir = std::env::temp_dir().join(format!("swapscope-reopen-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("temp dir");
        let partial = dir.join("r.swsc.partial");
        std::fs::copy(data(name), &partial).expect("copy");
        let rec = Recording::open(&partial).expect("opens");
        let first = events_of(&mut rec.source().expect("source"));
        std::fs::rename(&partial, dir.join("r.swsc")).expect("rename");
        let after_rename = events_of(&mut rec.source().expect("source after the rename"));
        std::fs::remove_dir_all(&dir).expect("remove");
        let after_removal = events_of(&mut rec.source().expect("source after the removal"));
        assert_eq!((first, after_rename, after_removal), (want, want, want));
    }
}
