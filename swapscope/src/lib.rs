//! swapscope: watch the Linux swap allocator from eBPF, record it, and replay it through
//! allocator models. The binary (`main.rs`) is a thin CLI over these modules; see
//! docs/ARCHITECTURE.md for the codemap.
pub use swapscope_core::{
    alloc, engine, event, mthp, pipeline, record, repair, report, sink, whatif, workload,
};
pub use swapscope_export as export;
pub use swapscope_models as models;
pub use swapscope_probe::{host, probe, signal, source, stress};
pub use swapscope_serve as serve;
pub use swapscope_tui as tui;
