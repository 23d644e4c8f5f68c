//! One record body of every kind: the first two bytes pick the kind, the third the swap-type
//! shift, the rest is the body. A decoded event must encode again.
#![no_main]

use libfuzzer_sys::fuzz_target;
use swapscope_core::record::codec;

fuzz_target!(|data: &[u8]| {
    let [k0, k1, shift, body @ ..] = data else {
        return;
    };
    let kind = u16::from_le_bytes([*k0, *k1]);
    if let Ok(Some(ev)) = codec::decode_record(kind, body, *shift) {
        let _ = ev.describe();
        let mut out = Vec::new();
        let _ = codec::encode_event(&ev, *shift, &mut out);
    }
    let _ = codec::decode_alloc_free(kind, body);
    // The BPF ring buffer's decoder (`swapscope_probe::probe::wire::from_bpf`) reads what the
    // kernel's programs wrote, not files, and lives in the probe crate: not fuzzed here.
});
