//! swapscope's probe side, the only crate that talks to the kernel: the BPF loader and planner
//! (`probe`), host facts and child processes (`host`), signals (`signal`), the stress workload
//! (`stress`) and the live source (`source::live`). Everything it produces is core's
//! (`swapscope_core`) events and headers. See docs/ARCHITECTURE.md.
pub mod host;
pub mod probe;
pub mod signal;
pub mod source;
pub mod stress;

// Core's modules under the paths this crate's modules name them by (`crate::event`, ...).
use swapscope_core::{event, record, repair, workload};
