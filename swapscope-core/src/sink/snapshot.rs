//! What the analysis shows at one moment: an immutable value the TUI (and the exporter) render
//! while the analysis goes on. Built by [`super::analysis::Analysis::snapshot`].

use std::sync::Arc;

use serde::{Deserialize, Serialize};

use crate::{
    alloc::{ClusterCell, NR_ORDERS},
    engine::ModelReport,
    event::{CounterSample, Event, Ts},
    record::ProbeStatus,
};

/// Per-order counts, index = folio order.
pub type Orders = [u64; NR_ORDERS];

/// What the stream is, fixed for its whole length.
#[derive(Clone, Debug, Default, Serialize)]
pub struct StreamInfo {
    /// `live`, `live:demo`, `simulate:<workload>`, or a recording's own label.
    pub source: String,
    /// `replay <file>`, `live`, ...: what the viewer is looking at.
    pub mode: String,
    pub kernel_release: String,
    pub nr_cpus: u32,
    /// `full`, `tracepoint`, `simulated`, or `none`.
    pub tier: String,
    /// Probes that attached, as `kind/name` (e.g. `fexit/folio_alloc_swap`).
    pub attached: Vec<String>,
    /// Probes that did not, with why.
    pub missing: Vec<ProbeStatus>,
    /// The models, in report order.
    pub models: Vec<String>,
    /// Length of one interval of the time series, in ns of stream time.
    pub interval_ns: u64,
}

impl StreamInfo {
    pub fn full_tier(&self) -> bool {
        self.tier == "full" || self.tier == "simulated"
    }

    /// Whether the stream carries requests the models can replay.
    pub fn has_requests(&self) -> bool {
        self.full_tier()
    }
}

/// One interval of stream time.
#[derive(Clone, Debug, Default, Serialize)]
pub struct IntervalRow {
    /// Start, in stream time.
    pub start_ts: Ts,
    /// Length actually covered (the last row is still growing).
    pub len_ns: u64,
    pub writeouts: Orders,
    /// The kernel's per-size counters over the interval (deltas of the samples that fell in
    /// it), index = order.
    pub swpout: Orders,
    pub swpout_fallback: Orders,
    pub pswpout: u64,
    /// Full tier: requests and refusals per order.
    pub requests: Orders,
    pub failures: Orders,
    pub freed_slots: u64,
    /// Per model (report order): requests and failures per order in the interval.
    pub model_requests: Vec<Orders>,
    pub model_failures: Vec<Orders>,
    /// Slots in use at the end of the interval: the real reconstruction (full tier) and what
    /// `/proc/swaps` said last (KiB).
    pub real_used: Option<u64>,
    pub proc_used_kb: Option<u64>,
    pub lost: u64,
    /// Markers that fell in the interval (the first 16; all are counted in `kinds.markers`).
    pub markers: Vec<String>,
}

impl IntervalRow {
    /// Seconds covered (at least a nanosecond).
    pub fn secs(&self) -> f64 {
        self.len_ns.max(1) as f64 / 1e9
    }
}

/// A swap device as the stream last showed it.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct DeviceView {
    pub swap_type: u8,
    pub path: String,
    pub kind: String,
    /// Usable slots (from the geometry, `SwapOn`), or size / page size.
    pub slots: u64,
    /// `/proc/swaps` Used (KiB), when the stream has device lists.
    pub used_kb: Option<u64>,
    /// Slots in use in the real reconstruction (full tier).
    pub real_used: Option<u64>,
    /// A simulated stream: slots in use in the first model's map, and its name.
    pub model_used: Option<(String, u64)>,
    /// Swapped off since (the maps keep its last state).
    pub gone: bool,
}

impl DeviceView {
    /// The device's path, or what it is when the stream never named it (a simulated device).
    pub fn path_or_type(&self) -> String {
        if !self.path.is_empty() {
            self.path.clone()
        } else if self.model_used.is_some() {
            "simulated".to_string()
        } else {
            format!("type {}", self.swap_type)
        }
    }
}

/// A device map: one cell per cluster.
#[derive(Clone, Debug, Default)]
pub struct DeviceMap {
    pub swap_type: u8,
    /// The kernel's own occupancy, rebuilt from the stream (full tier).
    pub real: Option<Arc<Vec<ClusterCell>>>,
    /// Each model's map, in report order.
    pub models: Vec<(String, Arc<Vec<ClusterCell>>)>,
    /// Tracepoint tier: write-outs per cluster (decaying, newest weigh most) and the order of
    /// the latest one.
    pub heat: Option<Arc<Vec<HeatCell>>>,
    /// Set when these maps are the device's state at its peak occupancy (stream time, event
    /// number), not its current state: a device that was swapped off is shown at its peak.
    pub peak: Option<(Ts, u64)>,
}

/// A device at its peak occupancy (the interval end with the most slots in use: the real
/// reconstruction, or the first model's map for a simulated stream).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct PeakView {
    pub swap_type: u8,
    /// Stream time (s from the first event) and event number of the interval end.
    pub at_s: f64,
    pub event: u64,
    pub used_slots: u64,
    /// Whose map: `real` or a model's name.
    pub map: String,
    /// Per cluster: slots in use.
    pub cluster_used: Vec<u16>,
    /// Per cluster: its list, one letter (`f`ree, `n`onfull, `r` frag, `F`ull, `d`iscard,
    /// `p`artial, `o`ther).
    pub cluster_lists: String,
}

/// Recent write-outs into one cluster.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct HeatCell {
    /// Write-outs, halved every interval.
    pub recent: f32,
    /// Write-outs ever.
    pub total: u32,
    pub last_order: Option<u8>,
}

/// Quantiles and a coarse histogram of one measured delay.
#[derive(Clone, Debug, Default, Serialize)]
pub struct LatencyRow {
    /// What is timed, e.g. `write-out inter-arrival`.
    pub what: String,
    pub order: Option<u8>,
    pub count: u64,
    pub p50_ns: u64,
    pub p90_ns: u64,
    pub p99_ns: u64,
    pub max_ns: u64,
    /// Counts per power-of-two bucket: `(upper bound ns, count)`.
    pub buckets: Vec<(u64, u64)>,
}

/// An event kept for the Events view with its position in the stream.
#[derive(Clone, Debug)]
pub struct TailEvent {
    /// 1-based index of the event in the stream.
    pub seq: u64,
    /// The event, its lists cut to [`TailEvent::KEPT`] entries.
    pub event: Event,
    /// Entries of its list left out (counter values, devices, bad slots).
    pub omitted: usize,
}

impl TailEvent {
    /// List entries a kept event holds at most: the Events view shows one line per event, and
    /// a counter sample of a crafted recording can hold 200,000 names (the tail kept 200 whole
    /// samples per kind: 44 MB each, hostile #21).
    pub const KEPT: usize = 32;

    pub fn of(seq: u64, ev: &Event) -> Self {
        let cut = |n: usize| n.saturating_sub(Self::KEPT);
        let (event, omitted) = match ev {
            Event::Counters(c) if c.values.len() > Self::KEPT => (
                Event::Counters(crate::event::CounterSample {
                    ts_ns: c.ts_ns,
                    values: c.values[..Self::KEPT].to_vec(),
                }),
                cut(c.values.len()),
            ),
            Event::Devices(d) if d.devices.len() > Self::KEPT => (
                Event::Devices(crate::event::DeviceList {
                    ts_ns: d.ts_ns,
                    devices: d.devices[..Self::KEPT].to_vec(),
                }),
                cut(d.devices.len()),
            ),
            Event::SwapOn(on) if on.bad.len() > Self::KEPT => (
                Event::SwapOn(crate::event::SwapOn {
                    bad: on.bad[..Self::KEPT].to_vec(),
                    ..on.clone()
                }),
                cut(on.bad.len()),
            ),
            _ => (ev.clone(), 0),
        };
        TailEvent {
            seq,
            event,
            omitted,
        }
    }
}

/// Counts of events by kind.
#[derive(Clone, Copy, Debug, Default, Serialize)]
pub struct KindCounts {
    pub writeouts: u64,
    pub allocs: u64,
    pub frees: u64,
    pub splits: u64,
    pub swapins: u64,
    pub clusters: u64,
    pub grants: u64,
    pub markers: u64,
    pub samples: u64,
    pub other: u64,
}

/// The models' reports at one moment of the stream.
#[derive(Clone, Debug)]
pub struct ModelsAt {
    pub ts: Ts,
    pub models: Vec<ModelReport>,
    pub real: Option<ModelReport>,
}

/// The whole view at one moment.
#[derive(Clone, Debug, Default)]
pub struct Snapshot {
    pub info: Arc<StreamInfo>,
    /// Number of snapshots published before this one.
    pub seq: u64,
    pub events: u64,
    pub kinds: KindCounts,
    pub first_ts: Ts,
    pub last_ts: Ts,
    pub writeouts_by_order: Orders,
    /// Full tier: folios read back from swap, index = order (unknown orders not counted).
    pub swapins_by_order: Orders,
    /// The kernel's counters since the stream's first sample, index = order.
    pub swpout: Orders,
    pub swpout_fallback: Orders,
    pub pswpout: u64,
    /// Full tier: requests and refusals per order.
    pub requests: Orders,
    pub failures: Orders,
    /// Completed intervals, oldest first, then the current one (bounded: the oldest are
    /// dropped).
    pub intervals: Vec<IntervalRow>,
    pub devices: Vec<DeviceView>,
    pub maps: Vec<DeviceMap>,
    pub models: Vec<ModelReport>,
    pub real: Option<ModelReport>,
    /// Once every device has been swapped off (when `models` and `real` hold no occupancy: no
    /// device, no slots), their reports when the slots in use were highest, and when: for a
    /// viewer to show the last state worth seeing, said as such. Exporters keep `models`.
    pub models_peak: Option<Arc<ModelsAt>>,
    /// Ring-buffer drops (cumulative).
    pub lost: u64,
    /// Per feed: hook invocations the kernel did not deliver (`recursion_misses`).
    pub missed: Vec<(String, u64)>,
    /// Events the analysis skipped because it fell behind the live stream (its figures are then
    /// approximate; the recording, if any, is complete).
    pub analysis_skipped: u64,
    pub latency: Vec<LatencyRow>,
    /// Why a latency is not shown.
    pub latency_limits: Vec<String>,
    /// The newest events, oldest first, a bounded number per kind.
    pub tail: Vec<TailEvent>,
    /// The newest markers: `(ts, label)`.
    pub markers: Vec<(Ts, String)>,
    /// Whether the stream has ended (a recording read to its end).
    pub ended: bool,
    /// Each device at its peak occupancy so far.
    pub peaks: Vec<PeakView>,
    /// The newest sample of the kernel's counters, as the kernel counts them (since boot).
    pub counters: Option<Arc<CounterSample>>,
}

impl Snapshot {
    /// The newest complete interval (the current one while it is the only one).
    pub fn last_complete(&self) -> Option<&IntervalRow> {
        let n = self.intervals.len();
        if n >= 2 {
            self.intervals.get(n - 2)
        } else {
            self.intervals.last()
        }
    }

    /// Seconds of stream time covered.
    pub fn duration_s(&self) -> f64 {
        self.last_ts.saturating_sub(self.first_ts) as f64 / 1e9
    }

    /// Stream time relative to the first event, in seconds.
    pub fn rel_s(&self, ts: Ts) -> f64 {
        ts.saturating_sub(self.first_ts) as f64 / 1e9
    }

    /// The figures a run is checked by, for `--summary-json`.
    pub fn summary(&self) -> SnapshotSummary {
        let by = |o: &Orders| {
            o.iter()
                .enumerate()
                .filter(|(_, v)| **v > 0)
                .map(|(i, v)| (i as u8, *v))
                .collect()
        };
        SnapshotSummary {
            source: self.info.source.clone(),
            tier: self.info.tier.clone(),
            events: self.events,
            duration_s: self.duration_s(),
            writeouts_by_order: by(&self.writeouts_by_order),
            swapins_by_order: by(&self.swapins_by_order),
            kernel_swpout_by_order: by(&self.swpout),
            kernel_swpout_fallback_by_order: by(&self.swpout_fallback),
            pswpout: self.pswpout,
            lost_events: self.lost,
            analysis_skipped: self.analysis_skipped,
            intervals: self.intervals.len() as u64,
            devices: self.devices.clone(),
            peaks: self.peaks.clone(),
            models: self
                .models
                .iter()
                .map(|m| (m.name.clone(), m.fallback_rate_by_order.clone()))
                .collect(),
        }
    }
}

/// `--summary-json`: what a live session or a replay saw, in a stable shape for scripts and
/// tests. Orders are strings, as in `report --json`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct SnapshotSummary {
    pub source: String,
    pub tier: String,
    pub events: u64,
    pub duration_s: f64,
    pub writeouts_by_order: crate::engine::ByOrder<u64>,
    pub swapins_by_order: crate::engine::ByOrder<u64>,
    pub kernel_swpout_by_order: crate::engine::ByOrder<u64>,
    pub kernel_swpout_fallback_by_order: crate::engine::ByOrder<u64>,
    pub pswpout: u64,
    pub lost_events: u64,
    pub analysis_skipped: u64,
    pub intervals: u64,
    pub devices: Vec<DeviceView>,
    pub peaks: Vec<PeakView>,
    pub models: std::collections::BTreeMap<String, crate::engine::ByOrder<f64>>,
}
