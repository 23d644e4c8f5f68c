//! The allocator models: one file per model, each mirroring (or proposing) a swap-slot allocator
//! behind [`AllocatorModel`]. Add a model by adding its file, a `pub mod` line, an entry in
//! [`NAMES`] and a match arm in [`by_name`].

use crate::alloc::AllocatorModel;

pub mod buddy;
pub mod classified;
pub mod discontiguous;
mod kernel;
pub mod linux_6_10;
pub mod linux_6_12;
pub mod linux_6_14;
pub mod linux_6_18;
pub mod rr_scan;
pub mod vswap;

pub use buddy::Buddy;
pub use classified::Classified;
pub use discontiguous::Discontiguous;
pub use kernel::DiscardTiming;
pub use linux_6_10::Linux610;
pub use linux_6_12::Linux612;
pub use linux_6_14::Linux614;
pub use linux_6_18::Linux618;
pub use rr_scan::RrScan;
pub use vswap::Vswap;

/// Per-CPU state is kept for CPU ids modulo this many.
pub const MAX_CPUS: usize = 4096;

pub(crate) fn cpu_index(cpu: u32) -> usize {
    cpu as usize % MAX_CPUS
}

/// Names of every model [`by_name`] knows, in report order.
pub const NAMES: &[&str] = &[
    Linux610::NAME,
    Linux612::NAME,
    Linux618::NAME,
    "buddy",
    "classified",
    "discontiguous",
];

/// Models [`by_name`] knows that `all()` leaves out (variants of a listed model).
pub const EXTRA_NAMES: &[&str] = &[
    "classified-per-order",
    "linux-7",
    Linux614::NAME,
    RrScan::NAME,
    Vswap::NAME,
];

/// A model by its report name (`linux-6.18`, …); `linux-7` is an alias of `linux-6.18`.
pub fn by_name(name: &str) -> Option<Box<dyn AllocatorModel>> {
    Some(match name {
        Linux610::NAME => Box::new(Linux610::new()),
        Linux612::NAME => Box::new(Linux612::new()),
        Linux614::NAME => Box::new(Linux614::new()),
        Linux618::NAME | "linux-7" => Box::new(Linux618::new()),
        RrScan::NAME => Box::new(RrScan::new()),
        "buddy" => Box::new(Buddy::new()),
        "classified" => Box::new(Classified::new()),
        "classified-per-order" => Box::new(Classified::per_order()),
        "discontiguous" => Box::new(Discontiguous::new()),
        Vswap::NAME => Box::new(Vswap::new()),
        _ => return None,
    })
}

/// One instance of every model, in [`NAMES`] order.
pub fn all() -> Vec<Box<dyn AllocatorModel>> {
    NAMES.iter().filter_map(|n| by_name(n)).collect()
}

mod select;
pub use select::{SelectError, all_names, select};

#[cfg(test)]
mod proptests;
