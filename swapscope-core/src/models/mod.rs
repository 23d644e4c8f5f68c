//! The model registry: which allocator models a report replays, by name. The models themselves
//! live in the `swapscope-models` crate, which installs the built-in ones here
//! ([`install_builtins`]); a model from any other crate comes in with [`register`] (docs/models.md,
//! "Writing your own model"; `examples/custom-model`). This core only names them.

use crate::alloc::AllocatorModel;

/// Per-CPU state is kept for CPU ids modulo this many.
pub const MAX_CPUS: usize = 4096;

/// The slot of a CPU id in per-CPU state ([`MAX_CPUS`] of them).
pub fn cpu_index(cpu: u32) -> usize {
    cpu as usize % MAX_CPUS
}

/// Names of the built-in models, in report order: the default set.
pub const NAMES: &[&str] = &[
    "linux-6.10",
    "linux-6.12",
    "linux-6.18",
    "buddy",
    "classified",
    "discontiguous",
];

/// Built-in models that `all()` leaves out (variants of a listed model) or adds to the default
/// set.
pub const EXTRA_NAMES: &[&str] = &[
    "classified-per-order",
    "linux-7",
    "linux-6.14",
    "rr-scan",
    "vswap",
];

/// Makes a fresh instance of a built-in model by its name ([`NAMES`], [`EXTRA_NAMES`]).
pub type Builtins = fn(&str) -> Option<Box<dyn AllocatorModel>>;

/// The built-in models' constructor, installed once by the crate that holds them
/// (`swapscope_models::install`).
static BUILTINS: std::sync::OnceLock<Builtins> = std::sync::OnceLock::new();

/// Installs the built-in models ([`NAMES`], [`EXTRA_NAMES`]): the models live in their own crate
/// (`swapscope-models`) so that touching one recompiles that crate and the CLI only, not this
/// core and every front end over it. The first call wins; later calls change nothing.
pub fn install_builtins(builtins: Builtins) {
    let _ = BUILTINS.set(builtins);
}

/// Whether the built-in models are installed ([`install_builtins`]).
pub fn builtins_installed() -> bool {
    BUILTINS.get().is_some()
}

/// A model by its report name (`linux-6.18`, …; `linux-7` is an alias of `linux-6.18`): a
/// built-in one once installed ([`install_builtins`]), or one [`register`] added.
pub fn by_name(name: &str) -> Option<Box<dyn AllocatorModel>> {
    if select::known().contains(&name) {
        return BUILTINS.get().and_then(|b| b(name));
    }
    registered(name)
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
        (6, 10..=11) => "linux-6.10",
        (6, 12..=13) => "linux-6.12",
        (6, 14..=17) => "linux-6.14",
        (6, 18..) => "linux-6.18",
        (7.., _) => "linux-6.18",
        _ => return None,
    })
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
