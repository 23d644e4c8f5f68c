//! swapscope's pure core: the event stream, the recording format, the slot bitmap, the allocator
//! models, the engine that replays a stream through them, the simulated workloads, the analysis
//! and reports, and the pipeline that pairs a source with sinks. No syscalls of its own (files
//! and threads through `std` only), no aya, libc, tokio or front-end crates in its dependency
//! tree: the probe side (`swapscope` today: BPF, host facts, the live source) and the front ends
//! build on it. See docs/ARCHITECTURE.md.
pub mod alloc;
pub mod engine;
pub mod event;
pub mod models;
pub mod mthp;
pub mod pipeline;
pub mod record;
pub mod repair;
pub mod report;
pub mod sink;
pub mod source;
#[cfg(any(test, feature = "testkit"))]
pub mod testkit;
pub mod whatif;
pub mod workload;
