//! Sources: the core's ([`file`], [`sim`], the [`Source`] trait) and the probe side's
//! [`live::LiveSource`] with its [`markers`] FIFO.
pub use swapscope_core::source::*;

pub mod live;
pub mod markers;

impl From<crate::probe::ProbeError> for SourceError {
    fn from(e: crate::probe::ProbeError) -> Self {
        SourceError::Probe(Box::new(e))
    }
}
