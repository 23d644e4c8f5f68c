//! What a marker FIFO delivers, framed into labels (`source::markers::Lines` into an `Inbox`):
//! the first byte sets the read size (as `read(2)` may split input anywhere), a 0x00 byte in the
//! rest stands for a pause (the reader's 1 s of quiet, which takes an open line as it is).
//! Findings: a panic, a label over MAX_LABEL bytes or holding a line end, an open line over
//! MAX_LINE_BYTES, more than MAX_WAITING labels waiting, or labels that do not account for every
//! line (each line is a label, blank, or dropped and counted).
#![no_main]

use libfuzzer_sys::fuzz_target;
use swapscope_core::source::markers::{Inbox, Lines, MAX_LABEL, MAX_LINE_BYTES, MAX_WAITING};

fuzz_target!(|data: &[u8]| {
    let [step, rest @ ..] = data else {
        return;
    };
    let step = usize::from(*step).max(1);
    let inbox = Inbox::default();
    let mut lines = Lines::default();
    for piece in rest.split(|&b| b == 0) {
        for chunk in piece.chunks(step) {
            lines.feed(chunk, &inbox);
            assert!(lines.open_bytes() <= MAX_LINE_BYTES);
        }
        lines.end(&inbox);
    }
    let got = inbox.take();
    assert!(got.len() <= MAX_WAITING);
    for l in &got {
        assert!(l.len() <= MAX_LABEL, "{} bytes", l.len());
        assert!(!l.contains('\n'), "{l:?}");
        assert!(!l.trim().is_empty() || l.is_empty(), "{l:?}");
    }
    // Every line whose kept bytes are not blank became a label or was counted as dropped.
    let non_blank = rest
        .split(|&b| b == 0 || b == b'\n')
        .filter(|l| {
            let kept = &l[..l.len().min(MAX_LINE_BYTES)];
            !String::from_utf8_lossy(kept).trim().is_empty()
        })
        .count() as u64;
    assert_eq!(
        got.len() as u64 + inbox.dropped(),
        non_blank,
        "labels and drops against lines"
    );
});
