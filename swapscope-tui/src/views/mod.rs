//! One module per view; each renders a [`crate::sink::snapshot::Snapshot`] into its area and
//! says, in the view itself, why something is not shown.

pub mod devmap;
pub mod events;
pub mod latency;
pub mod models;
pub mod overview;
