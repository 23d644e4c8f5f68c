//! Temporary home of the alternative allocator models while the `models` module (engine branch)
//! is written elsewhere; the integrator moves these `mod` lines into `models/mod.rs`.
#[path = "models/buddy.rs"]
pub mod buddy;
#[path = "models/classified.rs"]
pub mod classified;
#[path = "models/discontiguous.rs"]
pub mod discontiguous;
