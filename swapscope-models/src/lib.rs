//! The allocator models: one file per model, each mirroring (or proposing) a swap-slot allocator
//! behind [`AllocatorModel`](swapscope_core::alloc::AllocatorModel). Add a built-in model by
//! adding its file, a `pub mod` line, its name in `swapscope_core::models::NAMES` (or
//! `EXTRA_NAMES`) and a match arm in [`builtin`]; a model from another crate comes in with
//! [`register`] instead (docs/models.md, "Writing your own model"; `examples/custom-model`).
//!
//! The models are their own crate so that the core (engine, analysis, reports) and the front ends
//! over it do not recompile when a model changes: the CLI calls [`install`] once and the core finds
//! the models by name.

pub mod buddy;
pub mod classified;
pub mod discontiguous;
mod kernel;
pub mod linux_6_10;
pub mod linux_6_12;
pub mod linux_6_14;
pub mod linux_6_18;
pub mod rr_scan;
pub mod slotmap;
#[cfg(test)]
pub(crate) mod testkit;
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

pub use swapscope_core::models::{
    EXTRA_NAMES, MAX_CPUS, ModelFactory, NAMES, RegisterError, SelectError, all_names, cpu_index,
    of_kernel, register, registered_names,
};

use swapscope_core::alloc::AllocatorModel;

/// A built-in model by its report name; `linux-7` is an alias of `linux-6.18`.
pub fn builtin(name: &str) -> Option<Box<dyn AllocatorModel>> {
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

/// Installs the built-in models in the core's registry, so that `--models` lists, reports, the
/// live analysis and the what-if sweep find them by name. Call it once at start-up (the CLI does);
/// later calls change nothing.
pub fn install() {
    swapscope_core::models::install_builtins(builtin);
}

/// A model by its report name, built-in or registered ([`install`]s the built-in ones first).
pub fn by_name(name: &str) -> Option<Box<dyn AllocatorModel>> {
    install();
    swapscope_core::models::by_name(name)
}

/// Resolves a `--models` list (`default`, `all`, names; [`install`]s the built-in ones first).
pub fn select(given: &[String]) -> Result<Vec<String>, SelectError> {
    install();
    swapscope_core::models::select(given)
}

/// One instance of every model in the default set ([`NAMES`] order).
pub fn all() -> Vec<Box<dyn AllocatorModel>> {
    NAMES.iter().filter_map(|n| by_name(n)).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_name_the_core_knows_is_built_in() {
        for n in NAMES.iter().chain(EXTRA_NAMES) {
            let m = builtin(n).unwrap_or_else(|| panic!("{n} has no built-in model"));
            if *n != "linux-7" {
                assert_eq!(m.name(), *n);
            }
        }
        assert!(builtin("first-fit").is_none());
    }

    #[test]
    fn install_makes_them_known_by_name() {
        install();
        assert!(swapscope_core::models::builtins_installed());
        for n in NAMES {
            assert!(swapscope_core::models::by_name(n).is_some(), "{n}");
        }
    }
}

#[cfg(test)]
mod proptests;
