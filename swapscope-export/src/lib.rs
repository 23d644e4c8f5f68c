//! Events and per-interval metrics of a stream as CSV or Parquet rows (docs/export.md).
//!
//! [`EventExport`] is a sink writing one row per event ([`columns::EVENT_COLUMNS`]);
//! [`IntervalExport`] runs the analysis and writes its per-interval series
//! ([`columns::INTERVAL_COLUMNS`]) as intervals close. Both stream: memory stays at one batch of
//! rows and one Parquet row group ([`table`]), whatever the length of the recording. Pure: they
//! write only to the `Write` they are handed.

// Core's modules under the paths this crate's modules name them by (`crate::event`, ...).
use swapscope_core::{alloc, event, record, sink, source};

pub mod columns;
mod events;
mod intervals;
pub mod table;

pub use events::{EventExport, KINDS, KindFilter};
pub use intervals::IntervalExport;
pub use table::Format;

use crate::sink::SinkError;

#[derive(Debug, thiserror::Error)]
pub enum ExportError {
    #[error(transparent)]
    Io(#[from] std::io::Error),
    #[error("Parquet: {0}")]
    Parquet(#[from] parquet::errors::ParquetError),
    #[error("Arrow: {0}")]
    Arrow(#[from] arrow_schema::ArrowError),
    #[error("JSON: {0}")]
    Json(#[from] serde_json::Error),
    #[error("unknown format {0:?}: give csv or parquet")]
    Format(String),
    #[error("unknown event kind {given:?}; known: {}", KINDS.join(", "))]
    Kind { given: String },
    #[error("no event kinds given; known: {}", KINDS.join(", "))]
    NoKinds,
    /// A cell that does not fit its column (a bug in the row builders, never the input).
    #[error("column {column}: {value} does not fit its type")]
    Value { column: &'static str, value: String },
    #[error("{0}")]
    Internal(String),
}

impl ExportError {
    /// As a sink's error, naming the file being written.
    fn sink(self, name: &str) -> SinkError {
        SinkError::Other(format!("writing {name}: {self}"))
    }
}

#[cfg(test)]
mod tests;
