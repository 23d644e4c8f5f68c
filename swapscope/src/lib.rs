//! swapscope: watch the Linux swap allocator from eBPF, record it, and replay it through
//! allocator models. The binary (`main.rs`) is a thin CLI over these modules; see
//! docs/ARCHITECTURE.md for the codemap.
pub mod alloc;
pub mod engine;
pub mod event;
pub mod export;
pub mod host;
pub mod models;
pub mod pipeline;
pub mod probe;
pub mod record;
pub mod repair;
pub mod report;
pub mod serve;
pub mod signal;
pub mod sink;
pub mod source;
pub mod stress;
pub mod tui;
pub mod whatif;
pub mod workload;
