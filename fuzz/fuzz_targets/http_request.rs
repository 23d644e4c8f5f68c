//! The exporter's HTTP request path (`swapscope_serve::answer_raw`): the bytes a client sends
//! on one connection, parsed by the server's HTTP/1 settings (16 KiB of headers) and answered by
//! its handler (paths, methods, Accept negotiation, the metrics text). Findings: a panic, a hang
//! (over 1 s is cut and counted as a finding), or an answer that is not HTTP.
#![no_main]

use std::sync::{Arc, OnceLock};

use libfuzzer_sys::fuzz_target;
use swapscope_core::sink::analysis::Shared;

fuzz_target!(|data: &[u8]| {
    static SHARED: OnceLock<Arc<Shared>> = OnceLock::new();
    let shared = SHARED.get_or_init(|| Arc::new(Shared::default())).clone();
    let t0 = std::time::Instant::now();
    let out = swapscope_serve::answer_raw(data, shared);
    assert!(
        t0.elapsed() < std::time::Duration::from_millis(900),
        "answered in {:?}",
        t0.elapsed()
    );
    assert!(
        out.is_empty() || out.starts_with(b"HTTP/1."),
        "not HTTP: {:?}",
        String::from_utf8_lossy(&out[..out.len().min(64)])
    );
});
