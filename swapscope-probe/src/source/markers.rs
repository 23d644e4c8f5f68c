//! Labelled markers for live streams: from the TUI's `m` key, from SIGUSR1, or from lines written
//! to a FIFO (`--marker-fifo PATH`), so a benchmark can line its iterations up with the report.
//! The live source takes what arrived at each poll and puts a [`Marker`](crate::event::Marker)
//! into the stream at that moment.

use std::{
    io::Read as _,
    path::{Path, PathBuf},
    sync::{
        Arc, Mutex,
        atomic::{AtomicU64, Ordering},
    },
};

/// Longest label kept (longer lines are cut).
pub const MAX_LABEL: usize = 200;
/// Labels waiting at most (further ones are dropped, and counted, until the source takes them).
pub const MAX_WAITING: usize = 10_000;
/// Bytes of one FIFO line kept while it is read (its label is cut to [`MAX_LABEL`] after
/// trimming); the rest of a longer line is skipped, never kept.
const MAX_LINE_BYTES: usize = 4 * MAX_LABEL;
/// A line still open after this long without more input is taken as it is (a last line
/// written without its newline).
const PAUSE_MS: i32 = 1000;

/// Marker labels waiting for the live source, and those dropped because too many were waiting.
/// Clones share one queue.
#[derive(Clone, Debug, Default)]
pub struct Inbox {
    queue: Arc<Mutex<Vec<String>>>,
    dropped: Arc<AtomicU64>,
}

impl Inbox {
    /// Queues a label (trimmed, cut to [`MAX_LABEL`] bytes at a character boundary); counted
    /// as dropped when [`MAX_WAITING`] are waiting.
    pub fn push(&self, label: &str) {
        let mut l = label.trim();
        if l.len() > MAX_LABEL {
            let mut end = MAX_LABEL;
            while !l.is_char_boundary(end) {
                end -= 1;
            }
            l = &l[..end];
        }
        match self.queue.lock() {
            Ok(mut q) if q.len() < MAX_WAITING => q.push(l.to_string()),
            _ => {
                self.dropped.fetch_add(1, Ordering::Relaxed);
            }
        }
    }

    /// Takes every waiting label, oldest first.
    pub fn take(&self) -> Vec<String> {
        self.queue
            .lock()
            .map(|mut q| std::mem::take(&mut *q))
            .unwrap_or_default()
    }

    /// Labels dropped so far because [`MAX_WAITING`] were waiting.
    pub fn dropped(&self) -> u64 {
        self.dropped.load(Ordering::Relaxed)
    }
}

/// Splits what a FIFO delivers into labels: one per line, read as bytes (invalid UTF-8
/// replaced, never the end of intake), at most [`MAX_LINE_BYTES`] of a line kept (the rest
/// skipped up to its newline), and a line still open at a pause taken as it is.
#[derive(Debug, Default)]
struct Lines {
    line: Vec<u8>,
    skipping: bool,
}

impl Lines {
    fn feed(&mut self, bytes: &[u8], inbox: &Inbox) {
        for &b in bytes {
            if b == b'\n' {
                self.end(inbox);
            } else if !self.skipping {
                if self.line.len() < MAX_LINE_BYTES {
                    self.line.push(b);
                } else {
                    self.skipping = true;
                }
            }
        }
    }

    /// The end of a line (or a pause): its label, unless it is blank.
    fn end(&mut self, inbox: &Inbox) {
        let text = String::from_utf8_lossy(&self.line);
        if !text.trim().is_empty() {
            inbox.push(&text);
        }
        self.line.clear();
        self.skipping = false;
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
        let (mut file, created) = crate::host::open_marker_fifo(path)?;
        std::thread::Builder::new()
            .name("swapscope-markers".into())
            .spawn(move || {
                // Opened read-write, so the reader never sees end-of-file when a writer closes.
                let mut lines = Lines::default();
                let mut buf = [0u8; 4096];
                loop {
                    match crate::host::wait_readable(&file, PAUSE_MS) {
                        Ok(true) => match file.read(&mut buf) {
                            Ok(0) => break,
                            Ok(n) => lines.feed(&buf[..n], &inbox),
                            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                            Err(_) => break,
                        },
                        Ok(false) if !lines.line.is_empty() => lines.end(&inbox),
                        Ok(false) => {}
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

    /// The second hostile pass: one line of invalid UTF-8 ended intake for the session, an
    /// unterminated line grew without bound, and drops beyond the waiting limit went unsaid.
    #[test]
    fn lines_are_bytes_bounded_and_never_end_intake() {
        let inbox = Inbox::default();
        let mut lines = Lines::default();
        lines.feed(b"bad \xff\xfe utf-8\nnext\n", &inbox);
        // A 10 MB line without a newline keeps at most MAX_LINE_BYTES.
        let big = vec![b'x'; 10 << 20];
        lines.feed(&big, &inbox);
        assert!(lines.line.len() <= MAX_LINE_BYTES);
        lines.feed(b"\nafter\n", &inbox);
        // A last line without its newline is taken at the pause.
        lines.feed(b"no newline", &inbox);
        lines.end(&inbox);
        let got = inbox.take();
        assert_eq!(got.len(), 5, "{got:?}");
        assert_eq!(got[0], "bad \u{fffd}\u{fffd} utf-8");
        assert_eq!(got[1], "next");
        assert_eq!(got[2].len(), MAX_LABEL);
        assert_eq!(got[3], "after");
        assert_eq!(got[4], "no newline");
        for _ in 0..MAX_WAITING + 5 {
            inbox.push("m");
        }
        assert_eq!(inbox.dropped(), 5);
        assert_eq!(inbox.take().len(), MAX_WAITING);
    }

    #[test]
    fn a_fifo_others_can_write_is_refused() {
        use std::os::unix::fs::PermissionsExt as _;
        let dir = std::env::temp_dir().join(format!("swapscope-fifo-perm-{}", std::process::id()));
        let _ = std::fs::create_dir_all(&dir);
        let path = dir.join("open");
        let c = std::ffi::CString::new(path.as_os_str().as_encoded_bytes())
            .unwrap_or_else(|e| panic!("{e}"));
        // SAFETY: mkfifo(3) with a valid NUL-terminated path.
        assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o600) }, 0);
        let _ = std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o622));
        let e = Fifo::start(&path, Inbox::default())
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default();
        assert!(e.contains("writable by other users"), "{e}");
        assert!(path.exists(), "an existing FIFO is left in place");
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
