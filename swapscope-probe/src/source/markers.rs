//! Labelled markers for live streams: from the TUI's `m` key, from SIGUSR1, or from lines written
//! to a FIFO (`--marker-fifo PATH`), so a benchmark can line its iterations up with the report.
//! The live source takes what arrived at each poll and puts a [`Marker`](crate::event::Marker)
//! into the stream at that moment.

use std::{
    io::{BufRead as _, BufReader},
    path::{Path, PathBuf},
    sync::{Arc, Mutex},
};

/// Longest label kept (longer lines are cut).
pub const MAX_LABEL: usize = 200;
/// Labels waiting at most (further ones are dropped until the source takes them).
const MAX_WAITING: usize = 10_000;

/// Marker labels waiting for the live source. Clones share one queue.
#[derive(Clone, Debug, Default)]
pub struct Inbox(Arc<Mutex<Vec<String>>>);

impl Inbox {
    /// Queues a label (trimmed, cut to [`MAX_LABEL`] bytes at a character boundary).
    pub fn push(&self, label: &str) {
        let mut l = label.trim();
        if l.len() > MAX_LABEL {
            let mut end = MAX_LABEL;
            while !l.is_char_boundary(end) {
                end -= 1;
            }
            l = &l[..end];
        }
        if let Ok(mut q) = self.0.lock()
            && q.len() < MAX_WAITING
        {
            q.push(l.to_string());
        }
    }

    /// Takes every waiting label, oldest first.
    pub fn take(&self) -> Vec<String> {
        self.0
            .lock()
            .map(|mut q| std::mem::take(&mut *q))
            .unwrap_or_default()
    }
}

/// A FIFO whose lines become markers. Created (mode 0600) when `path` does not exist, and then
/// removed again when this is dropped; an existing FIFO is used and left in place.
pub struct Fifo {
    created: Option<PathBuf>,
}

impl Fifo {
    /// Opens (or creates) the FIFO and starts a thread that queues each line it reads.
    pub fn start(path: &Path, inbox: Inbox) -> Result<Self, crate::host::HostError> {
        let (file, created) = crate::host::open_marker_fifo(path)?;
        std::thread::Builder::new()
            .name("swapscope-markers".into())
            .spawn(move || {
                // Opened read-write, so the reader never sees end-of-file when a writer closes.
                for line in BufReader::new(file).lines() {
                    match line {
                        Ok(l) if !l.trim().is_empty() => inbox.push(&l),
                        Ok(_) => {}
                        Err(_) => break,
                    }
                }
            })
            .map_err(|e| crate::host::HostError::Io {
                what: "starting the marker FIFO thread".into(),
                source: e,
            })?;
        Ok(Fifo {
            created: created.then(|| path.to_path_buf()),
        })
    }
}

impl Drop for Fifo {
    fn drop(&mut self) {
        if let Some(p) = &self.created {
            let _ = std::fs::remove_file(p);
        }
    }
}

#[cfg(test)]
mod tests {
    use std::io::Write as _;

    use super::*;

    #[test]
    fn fifo_lines_become_labels_and_a_created_fifo_is_removed() {
        let dir = std::env::temp_dir().join(format!("swapscope-fifo-{}", std::process::id()));
        let _ = std::fs::create_dir_all(&dir);
        let path = dir.join("markers");
        let _ = std::fs::remove_file(&path);
        let inbox = Inbox::default();
        let fifo = match Fifo::start(&path, inbox.clone()) {
            Ok(f) => f,
            Err(e) => panic!("{e}"),
        };
        // Two writers, one after the other: the reader survives the first one closing.
        for line in ["iteration 1\n", "\n", "iteration 2\n"] {
            match std::fs::OpenOptions::new().write(true).open(&path) {
                Ok(mut w) => {
                    let _ = w.write_all(line.as_bytes());
                }
                Err(e) => panic!("{e}"),
            }
        }
        let mut got = Vec::new();
        for _ in 0..200 {
            got.extend(inbox.take());
            if got.len() >= 2 {
                break;
            }
            std::thread::sleep(std::time::Duration::from_millis(10));
        }
        assert_eq!(got, ["iteration 1", "iteration 2"]);
        drop(fifo);
        assert!(!path.exists(), "the FIFO it created is removed");
        // A path that is not a FIFO is refused, and left alone.
        let file = dir.join("plain");
        let _ = std::fs::write(&file, "x");
        assert!(Fifo::start(&file, Inbox::default()).is_err());
        assert!(file.exists());
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn inbox_trims_cuts_and_drains() {
        let i = Inbox::default();
        i.push("  iteration 1 \n");
        i.push(&"é".repeat(150));
        let got = i.take();
        assert_eq!(got[0], "iteration 1");
        assert!(got[1].len() <= MAX_LABEL && got[1].chars().all(|c| c == 'é'));
        assert!(i.take().is_empty());
    }
}
