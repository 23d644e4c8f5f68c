//! What-if replay: the same request stream onto swap devices of other sizes.
//!
//! The engine maps each request to a model's slots by allocation, never by offset, so a stream
//! replays onto a device of any size ([`crate::engine::DeviceSize`]). A sweep replays it once per
//! size and tabulates every model's fallback per order: "at what swap size does 64K fallback
//! exceed 1 % on this stream?". Pure: the caller hands in a way to open the stream again.

use std::{collections::BTreeMap, fmt::Write as _, str::FromStr};

use serde::Serialize;

use crate::engine::ByOrder;

use crate::{
    engine::DeviceSize,
    event::{Event, folio_size},
    pipeline::{self, PipelineError},
    sink::{Sink, SinkError, analysis::Analysis},
    source::Source,
};

/// JSON schema version of [`Sweep`].
pub const SWEEP_SCHEMA: u32 = 1;
/// Most sizes one sweep replays.
pub const MAX_POINTS: usize = 64;

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum SweepSpecError {
    #[error("expected FROM%..TO% or FROM%..TO%:STEP% (e.g. 25%..200% or 50%..150%:10%), got {0:?}")]
    Syntax(String),
    #[error("sizes must be 1 % to 10000 % and FROM ≤ TO, got {0:?}")]
    Range(String),
    #[error("the step must be at least 1 %, got {0:?}")]
    Step(String),
    #[error("{0:?} gives {1} sizes; at most {MAX_POINTS} (use a larger step)")]
    TooMany(String, usize),
}

/// The device sizes of a sweep, in percent of the recorded size.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SweepSpec {
    pub percents: Vec<u32>,
}

impl FromStr for SweepSpec {
    type Err = SweepSpecError;

    /// `FROM%..TO%` (steps of 25 %) or `FROM%..TO%:STEP%`; TO is included when a step lands on
    /// it, and always as the last size.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let syntax = || SweepSpecError::Syntax(s.to_string());
        let pct = |p: &str| -> Result<u32, SweepSpecError> {
            p.trim()
                .strip_suffix('%')
                .ok_or_else(syntax)?
                .trim()
                .parse::<u32>()
                .map_err(|_| syntax())
        };
        let (range, step) = match s.split_once(':') {
            Some((r, st)) => (r, pct(st)?),
            None => (s, 25),
        };
        let (from, to) = range.split_once("..").ok_or_else(syntax)?;
        let (from, to) = (pct(from)?, pct(to)?);
        if step == 0 {
            return Err(SweepSpecError::Step(s.to_string()));
        }
        if from == 0 || to > 10_000 || from > to {
            return Err(SweepSpecError::Range(s.to_string()));
        }
        let n = ((to - from) / step) as usize + 1 + usize::from((to - from) % step != 0);
        if n > MAX_POINTS {
            return Err(SweepSpecError::TooMany(s.to_string(), n));
        }
        let mut percents: Vec<u32> = (from..=to).step_by(step as usize).collect();
        if percents.last() != Some(&to) {
            percents.push(to);
        }
        Ok(SweepSpec { percents })
    }
}

#[derive(Debug, thiserror::Error)]
pub enum SweepError {
    #[error("{0}")]
    Pipeline(#[from] PipelineError),
    #[error("opening the stream again: {0}")]
    Open(Box<dyn std::error::Error + Send + Sync>),
    #[error(
        "at {percent} % a swap device would be {} MiB: a what-if size is at most {} MiB (as --swap-size) or the recorded size; lower TO%",
        bytes >> 20,
        crate::workload::MAX_SWAP_BYTES >> 20
    )]
    TooLarge { percent: u32, bytes: u64 },
}

/// The bytes of the largest device `recorded` (bytes by swap type) makes at `percent`, and
/// whether any of them is beyond what a what-if replays ([`DeviceSize::too_large`]).
fn largest_at(recorded: &BTreeMap<u8, u64>, percent: u32) -> (u64, bool) {
    let size = DeviceSize::Percent(percent);
    recorded.values().fold((0, false), |(bytes, over), &b| {
        let slots = b / 4096;
        (
            bytes.max(size.slots(slots).saturating_mul(4096)),
            over || size.too_large(slots),
        )
    })
}

/// Refuses a sweep whose largest point would make a device of `recorded_bytes` too large, before
/// anything is replayed (`simulate --sweep` knows its device's size up front: it generated the
/// whole stream first and refused only then, after 30 s and 232 MB at 1 TiB).
pub fn check_sizes(spec: &SweepSpec, recorded_bytes: u64) -> Result<(), SweepError> {
    let recorded = BTreeMap::from([(0u8, recorded_bytes)]);
    for &percent in &spec.percents {
        if let (bytes, true) = largest_at(&recorded, percent) {
            return Err(SweepError::TooLarge { percent, bytes });
        }
    }
    Ok(())
}

/// One model at one size.
#[derive(Clone, Debug, Serialize, PartialEq)]
pub struct SweepModel {
    pub name: String,
    pub requests_by_order: ByOrder<u64>,
    pub failures_by_order: ByOrder<u64>,
    pub fallback_rate_by_order: ByOrder<f64>,
}

/// Every model at one size.
#[derive(Clone, Debug, Serialize, PartialEq)]
pub struct SweepPoint {
    pub percent: u32,
    /// Each device's size as the models saw it, in bytes (header slot included), by swap type.
    pub device_bytes: BTreeMap<u8, u64>,
    pub models: Vec<SweepModel>,
}

/// `report --sweep` / `simulate --sweep`.
#[derive(Clone, Debug, Serialize, PartialEq)]
pub struct Sweep {
    pub schema: u32,
    /// Each device's recorded size in bytes, by swap type.
    pub recorded_device_bytes: BTreeMap<u8, u64>,
    pub points: Vec<SweepPoint>,
}

/// Notes each device's size as a stream announces it (`SwapOn`).
#[derive(Default)]
struct DeviceSizes(BTreeMap<u8, u64>);

impl Sink for DeviceSizes {
    fn push(&mut self, batch: &[Event]) -> Result<(), SinkError> {
        for ev in batch {
            if let Event::SwapOn(on) = ev {
                self.0.insert(on.swap_type, on.max * 4096);
            }
        }
        Ok(())
    }
}

/// Replays the stream `open` gives once per size of `spec` through the models `names`, with a
/// progress line beside each replay naming its point.
///
/// One replay per size, one after the other: a single read of the stream feeding every size's
/// analysis at once was measured slower on two cores (the analyses' working sets then compete for
/// the caches; docs/performance.md), and would hold every size's models in memory together.
pub fn sweep<S: Source, E: std::error::Error + Send + Sync + 'static>(
    mut open: impl FnMut() -> Result<S, E>,
    names: &[String],
    spec: &SweepSpec,
    progress: &mut crate::sink::progress::Progress,
) -> Result<Sweep, SweepError> {
    let mut out = Sweep {
        schema: SWEEP_SCHEMA,
        recorded_device_bytes: BTreeMap::new(),
        points: Vec::new(),
    };
    let n = spec.percents.len();
    for (i, &percent) in spec.percents.iter().enumerate() {
        // Sizes grow with the percent: once the recorded sizes are known (after the first
        // replay), a point beyond the bound is refused before it is replayed.
        if let (bytes, true) = largest_at(&out.recorded_device_bytes, percent) {
            return Err(SweepError::TooLarge { percent, bytes });
        }
        progress.stage(format!("{percent}% ({} of {n})", i + 1));
        let mut source = open().map_err(|e| SweepError::Open(Box::new(e)))?;
        let mut analysis = Analysis::for_report(
            source.header(),
            names,
            crate::sink::analysis::ReportOptions {
                device_size: Some(DeviceSize::Percent(percent)),
                ..Default::default()
            },
        );
        let mut sizes = DeviceSizes::default();
        let summary = {
            let mut sinks: Vec<&mut dyn Sink> = vec![&mut analysis, &mut sizes, &mut *progress];
            pipeline::run(&mut source, &mut sinks, &mut || false)?
        };
        let report = analysis.report(&summary);
        out.recorded_device_bytes = sizes.0;
        // The engine left a device out for its size: this point's columns would mean nothing.
        if report
            .stream
            .as_ref()
            .is_some_and(|s| s.refused_devices > 0)
        {
            let (bytes, _) = largest_at(&out.recorded_device_bytes, percent);
            return Err(SweepError::TooLarge { percent, bytes });
        }
        out.points.push(SweepPoint {
            percent,
            // The engine's own record of the sizes it gave the models.
            device_bytes: report.model_device_bytes,
            models: report
                .models
                .iter()
                .map(|m| SweepModel {
                    name: m.name.clone(),
                    requests_by_order: m.requests_by_order.clone(),
                    failures_by_order: m.failures_by_order.clone(),
                    fallback_rate_by_order: m.fallback_rate_by_order.clone(),
                })
                .collect(),
        });
    }
    Ok(out)
}

impl Sweep {
    /// Fallback per model and large order against device size; order 0 shows refusals ("swap
    /// full": no slot at all).
    pub fn render_text(&self) -> String {
        let mut s = String::new();
        let recorded: u64 = self.recorded_device_bytes.values().sum();
        let _ = writeln!(
            s,
            "what-if: fallback by swap device size ({} recorded = 100 %; requests map onto each size by allocation)",
            mib(recorded)
        );
        let _ = write!(s, "{:<22} {:>6}", "model", "size");
        for p in &self.points {
            let _ = write!(s, " {:>9}", format!("{}%", p.percent));
        }
        let _ = writeln!(s);
        let _ = write!(s, "{:<22} {:>6}", "", "");
        for p in &self.points {
            let _ = write!(s, " {:>9}", mib(p.device_bytes.values().sum()));
        }
        let _ = writeln!(s);
        let Some(first) = self.points.first() else {
            return s;
        };
        for (i, m) in first.models.iter().enumerate() {
            let mut orders: Vec<u8> = self
                .points
                .iter()
                .filter_map(|p| p.models.get(i))
                .flat_map(|m| m.requests_by_order.keys().copied())
                .collect();
            orders.sort_unstable();
            orders.dedup();
            for o in orders {
                let key = o;
                let _ = write!(
                    s,
                    "{:<22} {:>6}",
                    m.name,
                    if o == 0 {
                        "4K ref".to_string()
                    } else {
                        folio_size(o)
                    }
                );
                for p in &self.points {
                    let cell = p.models.get(i).map_or("-".to_string(), |pm| {
                        if o == 0 {
                            pm.failures_by_order
                                .get(&key)
                                .map_or("-".to_string(), u64::to_string)
                        } else {
                            pm.fallback_rate_by_order
                                .get(&key)
                                .map_or("-".to_string(), |r| format!("{:.2}%", r * 100.0))
                        }
                    });
                    let _ = write!(s, " {cell:>9}");
                }
                let _ = writeln!(s);
            }
        }
        let _ = writeln!(
            s,
            "(large orders: share of requests the model could not place whole; 4K ref: order-0 requests refused — the device was full)"
        );
        s
    }
}

fn mib(bytes: u64) -> String {
    if bytes >= 1 << 30 && bytes.is_multiple_of(1 << 30) {
        format!("{}G", bytes >> 30)
    } else {
        format!("{}M", (bytes + (1 << 19)) >> 20)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sweep_specs_parse_and_refuse() {
        let p = |s: &str| s.parse::<SweepSpec>().map(|s| s.percents);
        assert_eq!(
            p("25%..200%"),
            Ok(vec![25, 50, 75, 100, 125, 150, 175, 200])
        );
        assert_eq!(p("50%..120%:30%"), Ok(vec![50, 80, 110, 120]));
        assert_eq!(p("100%..100%"), Ok(vec![100]));
        assert!(matches!(p("25..200"), Err(SweepSpecError::Syntax(_))));
        assert!(matches!(p("200%..25%"), Err(SweepSpecError::Range(_))));
        assert!(matches!(p("0%..25%"), Err(SweepSpecError::Range(_))));
        assert!(matches!(
            p("1%..10000%:1%"),
            Err(SweepSpecError::TooMany(..))
        ));
    }
}
