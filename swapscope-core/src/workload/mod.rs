//! Deterministic, seeded workload generators for `simulate`: each produces the swap request
//! stream a real workload would cause, as [`Event`]s (a `SwapOn`, then `Alloc`/`Free` with
//! `Marker`s at phase boundaries). docs/workloads.md describes each workload.
//!
//! # Contract with the engine (simulated streams)
//! * The first event is a [`SwapOn`](crate::event::SwapOn) for device 0: `max` = swap size in
//!   4 KiB slots + 1 header slot, flags SOLIDSTATE | BLKDEV | SYNCHRONOUS_IO (zram-like).
//! * `Alloc { id, order, result: Unknown }` asks for 2^order slots; allocation `id` owns the
//!   virtual slots of [`crate::event::virtual_slot`], page in 0..2^order.
//! * `Free { swap_type: virtual_slot::SWAP_TYPE, offset: virtual_slot::offset(id, p), nr: n }`
//!   frees pages [p, p+n) of allocation `id`. A page is freed at most once; a free always lies
//!   inside one allocation.
//! * `Marker { label: "warmup" }` precedes the warm-up, `"iteration N"` (N from 0) each iteration.
//! * Timestamps increase strictly (synthetic, 1 µs apart). CPUs are in `0..cpus`.

mod fill_drain;
mod fork_zap;
mod mixed_orders;
mod rng;
mod stream;
mod thp_fragment;

#[cfg(test)]
mod tests;

use crate::event::Event;

pub use rng::Rng;
pub use stream::{BATCH, Emit};

/// Workload names, as `--workload` accepts them.
pub const NAMES: &[&str] = &[
    "thp-fragment",
    "fork-partial-zap",
    "mixed-orders",
    "fill-drain",
];

/// Smallest and largest swap sizes accepted (1 MiB … 64 GiB: every model keeps state per slot
/// and each pass walks the device, ~400 MiB and seconds a pass at 64 GiB).
pub const MIN_SWAP_BYTES: u64 = 1 << 20;
pub const MAX_SWAP_BYTES: u64 = 64 << 30;
/// Upper bound on `cpus` and `iterations`, to keep streams finite and ids in range.
pub const MAX_CPUS: u32 = 4096;
pub const MAX_ITERATIONS: u32 = 100_000;

/// What to generate.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct WorkloadSpec {
    /// One of [`NAMES`].
    pub name: String,
    /// Swap device size in bytes (a multiple of 4 KiB, header slot not included).
    pub swap_size_bytes: u64,
    /// CPUs the requests are spread over.
    pub cpus: u32,
    pub seed: u64,
    /// Iterations after the warm-up; `None` = the workload's default ([`default_iterations`]).
    pub iterations: Option<u32>,
    /// `thp-fragment` only: add the test's small-folio area (`-s`).
    pub small: bool,
    /// `thp-fragment` only: touch whole 64 KiB chunks (the test's `-a`; the configuration the
    /// upstream allocator series published its numbers for, and the default) rather than single
    /// 4 KiB pages.
    pub aligned: bool,
    /// What a touch of a swapped-out page brings back (`thp-fragment`, `fork-partial-zap`).
    pub swapin: SwapIn,
}

/// How the kernel swaps a page back in.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum SwapIn {
    /// Large-folio swap-in on a synchronous device (zram; upstream since late 2024, seen on 6.18 and 7.x; `do_swap_page` →
    /// `alloc_swap_folio` / `can_swapin_thp`): the whole folio comes back when the entries of
    /// its aligned range are contiguous, from one swap-out of that size, not shared (swap count
    /// 1) and the size is enabled; its slots are freed together. Otherwise page by page.
    #[default]
    Large,
    /// Page by page: every touched page comes back as an order-0 folio (the kernels before
    /// large-folio swap-in — the premise of the 2024 allocator series and its published
    /// figures — and devices without SWP_SYNCHRONOUS_IO, such as a loop device).
    Small,
}

impl SwapIn {
    pub fn as_str(self) -> &'static str {
        match self {
            SwapIn::Large => "large",
            SwapIn::Small => "small",
        }
    }
}

impl WorkloadSpec {
    /// Defaults: 64 MiB swap (the kernel test's zram size), 1 CPU (the kernel test is one task),
    /// seed 1, default iterations, 64 KiB-aligned touches, large-folio swap-in.
    pub fn new(name: &str) -> Self {
        WorkloadSpec {
            name: name.to_string(),
            swap_size_bytes: 64 << 20,
            cpus: 1,
            seed: 1,
            iterations: None,
            small: false,
            aligned: true,
            swapin: SwapIn::Large,
        }
    }

    /// 4 KiB slots of the device (header excluded).
    pub fn slots(&self) -> u64 {
        self.swap_size_bytes / 4096
    }

    fn iterations_or_default(&self) -> u32 {
        self.iterations
            .or_else(|| default_iterations(&self.name))
            .unwrap_or(1)
    }
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum WorkloadError {
    #[error("unknown workload {0:?} (known: {known})", known = NAMES.join(", "))]
    Unknown(String),
    #[error("swap size {0} bytes: must be a multiple of 4096 between 1 MiB and 64 GiB")]
    SwapSize(u64),
    #[error("cpus = {0}: must be between 1 and {MAX_CPUS}")]
    Cpus(u32),
    #[error("iterations = {0}: must be at most {MAX_ITERATIONS}")]
    Iterations(u32),
}

/// Default iteration count of a workload (`None` for unknown names).
pub fn default_iterations(name: &str) -> Option<u32> {
    match name {
        // tools/mm/thp_swap_allocator_test.c runs 100 iterations.
        "thp-fragment" => Some(100),
        "fork-partial-zap" => Some(50),
        "mixed-orders" => Some(20),
        "fill-drain" => Some(10),
        _ => None,
    }
}

/// Checks a spec without generating anything.
pub fn validate(spec: &WorkloadSpec) -> Result<(), WorkloadError> {
    if !NAMES.contains(&spec.name.as_str()) {
        return Err(WorkloadError::Unknown(spec.name.clone()));
    }
    let b = spec.swap_size_bytes;
    if !b.is_multiple_of(4096) || !(MIN_SWAP_BYTES..=MAX_SWAP_BYTES).contains(&b) {
        return Err(WorkloadError::SwapSize(b));
    }
    if spec.cpus == 0 || spec.cpus > MAX_CPUS {
        return Err(WorkloadError::Cpus(spec.cpus));
    }
    if let Some(n) = spec.iterations.filter(|&n| n > MAX_ITERATIONS) {
        return Err(WorkloadError::Iterations(n));
    }
    Ok(())
}

/// Generates a workload's event stream and hands it to `emit` in batches (see [`Emit`]); the
/// stream is never held whole, so memory does not grow with its length. `emit` returning
/// `false` stops the generator early.
pub fn stream(spec: &WorkloadSpec, emit: Emit<'_>) -> Result<(), WorkloadError> {
    validate(spec)?;
    let iterations = spec.iterations_or_default();
    match spec.name.as_str() {
        "thp-fragment" => thp_fragment::generate(spec, iterations, emit),
        "fork-partial-zap" => fork_zap::generate(spec, iterations, emit),
        "mixed-orders" => mixed_orders::generate(spec, iterations, emit),
        "fill-drain" => fill_drain::generate(spec, iterations, emit),
        other => return Err(WorkloadError::Unknown(other.to_string())),
    }
    Ok(())
}

/// The whole event stream of a workload, collected (tests and small streams; `simulate` streams
/// through [`stream`]).
pub fn generate(spec: &WorkloadSpec) -> Result<Vec<Event>, WorkloadError> {
    let mut all = Vec::new();
    stream(spec, &mut |batch| {
        all.append(batch);
        true
    })?;
    Ok(all)
}
