//! The allocator models: one file per model, each mirroring (or proposing) a swap-slot allocator
//! behind [`AllocatorModel`]. Add a model by adding its file, a `pub mod` line, an entry in
//! [`NAMES`] and a match arm in [`by_name`] — or, from another crate, with [`register`]
//! (docs/models.md, "Writing your own model"; `examples/custom-model`).

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
        _ => return registered(name),
    })
}

/// Makes a fresh instance of a model defined outside this crate.
pub type ModelFactory = fn() -> Box<dyn AllocatorModel>;

/// Models registered from outside this crate ([`register`]), in registration order.
static REGISTERED: std::sync::RwLock<Vec<(&'static str, ModelFactory)>> =
    std::sync::RwLock::new(Vec::new());

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum RegisterError {
    #[error("a model named {0:?} already exists; choose another name")]
    Taken(&'static str),
}

/// Adds a model defined in another crate under `name`, so that [`by_name`], `--models` lists
/// ([`select`]; `all` includes it), reports and the what-if sweep know it like a built-in one.
/// Call it before building a report; the registry lives as long as the process.
pub fn register(name: &'static str, factory: ModelFactory) -> Result<(), RegisterError> {
    if select::known().contains(&name) {
        return Err(RegisterError::Taken(name));
    }
    let mut r = REGISTERED.write().unwrap_or_else(|e| e.into_inner());
    if r.iter().any(|(n, _)| *n == name) {
        return Err(RegisterError::Taken(name));
    }
    r.push((name, factory));
    Ok(())
}

/// The names of the models [`register`] added, in registration order.
pub fn registered_names() -> Vec<&'static str> {
    let r = REGISTERED.read().unwrap_or_else(|e| e.into_inner());
    r.iter().map(|(n, _)| *n).collect()
}

fn registered(name: &str) -> Option<Box<dyn AllocatorModel>> {
    let r = REGISTERED.read().unwrap_or_else(|e| e.into_inner());
    r.iter().find(|(n, _)| *n == name).map(|(_, f)| f())
}

/// The model of the kernel a recording comes from (`uname -r` as its header keeps it): the
/// allocator that kernel runs, when swapscope has a model of it. 6.10–6.11 → `linux-6.10`,
/// 6.12–6.13 → `linux-6.12`, 6.14–6.17 → `linux-6.14`, 6.18 and later → `linux-6.18`.
pub fn of_kernel(release: &str) -> Option<&'static str> {
    let mut parts = release.split(|c: char| !c.is_ascii_digit());
    let major: u32 = parts.next()?.parse().ok()?;
    let minor: u32 = parts.next()?.parse().ok()?;
    Some(match (major, minor) {
        (6, 10..=11) => Linux610::NAME,
        (6, 12..=13) => Linux612::NAME,
        (6, 14..=17) => Linux614::NAME,
        (6, 18..) => Linux618::NAME,
        (7.., _) => Linux618::NAME,
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
mod tests {
    #[test]
    fn the_model_of_each_kernel() {
        for (release, model) in [
            ("6.12.117+deb13-amd64", Some("linux-6.12")),
            ("6.13.7", Some("linux-6.12")),
            ("6.14.0-rc1", Some("linux-6.14")),
            ("6.18.44", Some("linux-6.18")),
            ("7.3.4+deb13-amd64", Some("linux-6.18")),
            ("6.10.2", Some("linux-6.10")),
            ("6.1.0-50-amd64", None),
            ("", None),
            ("x", None),
        ] {
            assert_eq!(super::of_kernel(release), model, "{release}");
        }
    }
}

#[cfg(test)]
mod proptests;
