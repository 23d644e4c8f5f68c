//! Marker labels waiting for a live source, and the framing of what a marker FIFO delivers
//! into labels (pure: the FIFO itself, its thread and its syscalls are the probe side's,
//! `swapscope_probe::source::markers::Fifo`). Fuzzed (`fuzz/fuzz_targets/marker_lines.rs`).

use std::sync::{
    Arc, Mutex,
    atomic::{AtomicU64, Ordering},
};

/// Longest label kept (longer lines are cut).
pub const MAX_LABEL: usize = 200;
/// Labels waiting at most (further ones are dropped, and counted, until the source takes them).
pub const MAX_WAITING: usize = 10_000;
/// Bytes of one FIFO line kept while it is read (its label is cut to [`MAX_LABEL`] after
/// trimming); the rest of a longer line is skipped, never kept.
pub const MAX_LINE_BYTES: usize = 4 * MAX_LABEL;

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
pub struct Lines {
    line: Vec<u8>,
    skipping: bool,
}

impl Lines {
    /// Takes the bytes read, queuing a label at each line end.
    pub fn feed(&mut self, bytes: &[u8], inbox: &Inbox) {
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

    /// Bytes of the line still open (at most [`MAX_LINE_BYTES`]).
    pub fn open_bytes(&self) -> usize {
        self.line.len()
    }

    /// The end of a line (or a pause): its label, unless it is blank.
    pub fn end(&mut self, inbox: &Inbox) {
        let text = String::from_utf8_lossy(&self.line);
        if !text.trim().is_empty() {
            inbox.push(&text);
        }
        self.line.clear();
        self.skipping = false;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
        assert!(lines.open_bytes() <= MAX_LINE_BYTES);
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
