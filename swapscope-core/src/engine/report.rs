//! The comparison document (serde) and its plain-text rendering.
//!
//! JSON shape (keys of `*_by_order` maps are orders as strings; request/failure maps list the
//! orders that had requests, fragmentation lists all orders):
//!
//! ```text
//! { "events": n, "stream": {...},
//!   "models": [{ "name", "requests_by_order": {"0": n, "4": n}, "successes_by_order",
//!                "failures_by_order", "fallback_rate_by_order", "fragmentation_by_order",
//!                "clusters": {"free","nonfull","frag","full","other"}, "largest_free_run",
//!                "metadata_bytes", "total_slots", "used_slots", ... }],
//!   "real": { same shape } | null,
//!   "markers": [{ "label", "event", "ts_ns", "models": [{ "name", "requests_by_order",
//!                 "failures_by_order", "fallback_rate_by_order" }], "real": ... }],
//!   "series": [{ "event", "ts_ns", "models": [...], "real": ... }] }
//! ```
//!
//! Marker rows hold the counts from that marker to the next one (or to the end of the
//! stream): with a marker at each workload iteration, they form the per-iteration fallback
//! table. Series rows hold cumulative counts.

use crate::event::printable;
use std::collections::BTreeMap;
use std::fmt::Write as _;

use serde::{Deserialize, Serialize};

use super::{Engine, EngineError, OrderCounters, Row, States};
use crate::alloc::{ClusterCounts, ModelSnapshot, NR_ORDERS};

/// Per-order values keyed by the folio order. serde_json writes integer map keys as strings, so
/// the documents keep the `"0"`, `"4"`, `"9"` keys docs/report-schema.md describes (byte for byte:
/// orders are below 10, so numeric and string order agree).
pub type ByOrder<T> = BTreeMap<u8, T>;

/// Counts and summary of one model (or of the real kernel).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ModelReport {
    pub name: String,
    pub requests_by_order: ByOrder<u64>,
    pub successes_by_order: ByOrder<u64>,
    pub failures_by_order: ByOrder<u64>,
    /// failures / requests.
    pub fallback_rate_by_order: ByOrder<f64>,
    pub fragmentation_by_order: ByOrder<f64>,
    pub clusters: ClusterCounts,
    pub largest_free_run: u64,
    pub metadata_bytes: u64,
    pub total_slots: u64,
    pub used_slots: u64,
    /// Stream slots with no model slot (the model ran out of space).
    pub unbacked_slots: Option<u64>,
    /// Stream slots freed that had no model slot.
    pub unmatched_free_slots: Option<u64>,
    /// Model slots lost when a model device went away under them.
    pub dropped_slots: Option<u64>,
    /// Extents in the stream→model slot map, and their approximate heap bytes.
    pub mapping_extents: Option<u64>,
    pub mapping_bytes: Option<u64>,
    /// For streams with the kernel's results: share of the requests both served for which the
    /// model chose the kernel's own slot (1.0 = the model reproduces the kernel exactly).
    pub same_offset_rate: Option<f64>,
    /// Share of large-folio write-outs whose physical slots are one contiguous run, for models
    /// that place physical slots apart from the request (`vswap`); null for the others.
    pub physical_contiguity: Option<f64>,
    pub compared_requests: Option<u64>,
    /// Isolations the model took from the kernel's own (the kernel skipped a cluster another
    /// CPU held: `AllocatorModel::kernel_isolated`); null for models that do not follow them.
    pub steered_isolations: Option<u64>,
    /// The model of the recorded kernel: requests after which it took the kernel's answer as
    /// its own (it had answered otherwise: `AllocatorModel::follow_kernel`); null for the models
    /// that run free.
    pub kernel_corrections: Option<u64>,
    /// The first requests the model answered otherwise than the kernel (`report --divergence`;
    /// empty unless asked for).
    pub divergences: Vec<super::Divergence>,
}

/// Per-order request counts over an interval (or cumulative, for series rows and the peak),
/// and the occupancy when the interval closed.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct IntervalReport {
    pub name: String,
    pub requests_by_order: ByOrder<u64>,
    pub failures_by_order: ByOrder<u64>,
    pub fallback_rate_by_order: ByOrder<f64>,
    /// Occupancy at the end of the interval (null for series rows).
    pub state: Option<StateReport>,
}

/// A model's (or the real kernel's) occupancy at one moment.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct StateReport {
    pub used_slots: u64,
    pub total_slots: u64,
    pub fragmentation_by_order: ByOrder<f64>,
    pub clusters: ClusterCounts,
    pub largest_free_run: u64,
}

impl StateReport {
    fn of(s: &ModelSnapshot) -> Self {
        StateReport {
            used_slots: s.used_slots,
            total_slots: s.total_slots,
            fragmentation_by_order: s
                .fragmentation_by_order
                .iter()
                .enumerate()
                .map(|(o, f)| (o as u8, *f))
                .collect(),
            clusters: s.clusters,
            largest_free_run: s.largest_free_run,
        }
    }
}

/// Counts from one marker to the next.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct MarkerReport {
    pub label: String,
    /// Index (1-based) of the marker event in the stream.
    pub event: u64,
    pub ts_ns: u64,
    pub models: Vec<IntervalReport>,
    pub real: Option<IntervalReport>,
}

/// Cumulative counts at a point of the stream.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct SeriesReport {
    pub event: u64,
    pub ts_ns: u64,
    pub models: Vec<IntervalReport>,
    pub real: Option<IntervalReport>,
}

/// What the stream held.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct StreamSummary {
    pub events: u64,
    pub allocs: u64,
    pub frees: u64,
    pub freed_slots: u64,
    pub markers: u64,
    /// Events of kinds the engine does not use.
    pub ignored: u64,
    /// Inconsistencies: orders above 9, offsets or ids out of range, re-allocated slots.
    pub anomalies: u64,
    /// Real slots allocated twice (a free was missed), freed while free, or on unknown devices.
    pub real_double_alloc_slots: u64,
    pub real_unmatched_free_slots: u64,
    /// Devices refused for their size (`engine::MAX_DEVICE_SLOTS`).
    pub refused_devices: u64,
    /// Full tier, 6.14+: cluster list moves seen; how many could be checked against the list
    /// the stream last put the cluster on, and how many disagreed (a move not seen).
    pub cluster_events: u64,
    pub real_cluster_checks: u64,
    pub real_cluster_mismatches: u64,
    /// Full tier, 6.12 and 7.x: grants (slots handed out, or on 6.12 a single allocation
    /// refused, seen inside the allocator's lock); requests the models answered at their grant,
    /// in the kernel's order, and successful ones answered at the request event for want of a
    /// grant; grants whose request event never came.
    pub grant_events: u64,
    pub requests_at_grant: u64,
    pub requests_at_exit: u64,
    pub orphan_grants: u64,
    /// 6.12: batch grants applied before a refusal they overlapped (their request started
    /// first; the batch's scan can drop `si->lock` midway), so that the models do not offer the
    /// refused request slots the batch had already taken.
    pub hoisted_batches: u64,
    /// Kernel refusals no allocator would have made (more clusters empty than the CPUs could
    /// hold: a swapoff under way, or a memcg swap charge); every model refused them too. Not in
    /// the JSON document (its schema is fixed); the report's limits say it when it happens.
    #[serde(skip)]
    pub refused_unavailable: u64,
    /// 7.x, and 6.12's slot-cache refills: decisions the model of the recorded kernel made with
    /// frees hidden that another CPU made while the allocation was under way and that it could
    /// not have seen (its cluster already scanned, a refusal that started before them, or a
    /// refill that did not take them; see `engine/concurrent.rs`), and the frees hidden over all
    /// of them.
    pub decisions_with_hidden_frees: u64,
    pub hidden_frees: u64,
    /// 6.12: requests the model of the recorded kernel answered with its CPU's cluster cursor
    /// as it was when they began, before another task's request of their order decided on the
    /// same CPU moved it: the kernel's answer showed they had read it first (their scan dropped
    /// `si->lock` to reclaim swap cache and the CPU ran the other task meanwhile).
    pub interleaved_cursor_reads: u64,
}

/// The comparison document.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Comparison {
    pub events: u64,
    pub stream: StreamSummary,
    pub models: Vec<ModelReport>,
    pub real: Option<ModelReport>,
    pub markers: Vec<MarkerReport>,
    /// Fixed intervals of stream time (`EngineConfig::interval_ns`), labelled by their start.
    pub intervals: Vec<MarkerReport>,
    /// The moment the stream held the most slots: counts since the start, occupancy then.
    pub peak: Option<MarkerReport>,
    pub series: Vec<SeriesReport>,
    /// What-if replays (`EngineConfig::device_size`): each device's size as the models saw it,
    /// in bytes, by swap type; empty when they saw the recorded devices.
    pub model_device_bytes: BTreeMap<u8, u64>,
}

impl Comparison {
    pub fn to_json(&self) -> Result<String, EngineError> {
        Ok(serde_json::to_string(self)?)
    }

    pub fn to_json_pretty(&self) -> Result<String, EngineError> {
        Ok(serde_json::to_string_pretty(self)?)
    }

    pub fn to_value(&self) -> Result<serde_json::Value, EngineError> {
        Ok(serde_json::to_value(self)?)
    }
}

fn by_order_nonzero(requests: &[u64; NR_ORDERS], values: &[u64; NR_ORDERS]) -> ByOrder<u64> {
    (0..NR_ORDERS)
        .filter(|&o| requests.get(o).is_some_and(|&r| r > 0))
        .map(|o| (o as u8, values.get(o).copied().unwrap_or(0)))
        .collect()
}

fn rates(c: &OrderCounters) -> ByOrder<f64> {
    (0..NR_ORDERS)
        .filter_map(|o| {
            let r = *c.requests.get(o)?;
            let f = *c.failures.get(o)?;
            (r > 0).then(|| (o as u8, f as f64 / r as f64))
        })
        .collect()
}

fn interval(name: &str, c: &OrderCounters) -> IntervalReport {
    IntervalReport {
        name: name.to_string(),
        requests_by_order: by_order_nonzero(&c.requests, &c.requests),
        failures_by_order: by_order_nonzero(&c.requests, &c.failures),
        fallback_rate_by_order: rates(c),
        state: None,
    }
}

impl ModelReport {
    /// Takes `other`'s occupancy figures (fragmentation, clusters, largest free run, metadata,
    /// slots), keeping its own counts: a view of the state at another moment.
    pub fn take_state_of(&mut self, other: &ModelReport) {
        self.fragmentation_by_order = other.fragmentation_by_order.clone();
        self.clusters = other.clusters;
        self.largest_free_run = other.largest_free_run;
        self.metadata_bytes = other.metadata_bytes;
        self.total_slots = other.total_slots;
        self.used_slots = other.used_slots;
    }
}

fn model_report(name: &str, c: &OrderCounters, snap: &ModelSnapshot) -> ModelReport {
    ModelReport {
        name: name.to_string(),
        requests_by_order: by_order_nonzero(&c.requests, &c.requests),
        successes_by_order: by_order_nonzero(&c.requests, &c.successes),
        failures_by_order: by_order_nonzero(&c.requests, &c.failures),
        fallback_rate_by_order: rates(c),
        fragmentation_by_order: snap
            .fragmentation_by_order
            .iter()
            .enumerate()
            .map(|(o, f)| (o as u8, *f))
            .collect(),
        clusters: snap.clusters,
        largest_free_run: snap.largest_free_run,
        metadata_bytes: snap.metadata_bytes,
        total_slots: snap.total_slots,
        used_slots: snap.used_slots,
        unbacked_slots: None,
        unmatched_free_slots: None,
        dropped_slots: None,
        mapping_extents: None,
        mapping_bytes: None,
        same_offset_rate: None,
        compared_requests: None,
        physical_contiguity: None,
        steered_isolations: None,
        kernel_corrections: None,
        divergences: Vec::new(),
    }
}

const REAL: &str = "real";

impl Engine {
    /// Each model's counts and occupancy, and the real kernel's when the stream carries its
    /// results: the comparison table without markers or series (cheap enough to take often).
    pub fn model_reports(&self) -> (Vec<ModelReport>, Option<ModelReport>) {
        let models = self
            .shadows
            .iter()
            .enumerate()
            .map(|(i, s)| {
                let mut r = model_report(s.model.name(), &s.counters, &s.model.snapshot());
                r.unbacked_slots = Some(s.unbacked_slots);
                r.unmatched_free_slots = Some(s.unmatched_free_slots);
                r.dropped_slots = Some(s.dropped_slots);
                r.mapping_extents = Some(s.map.entries() as u64);
                r.mapping_bytes = Some(s.map.approx_bytes());
                r.physical_contiguity = s.model.physical_contiguity();
                r.divergences = self.divergences(i).to_vec();
                r.steered_isolations = s.model.steered_isolations();
                r.kernel_corrections = s.follows.then_some(s.corrections);
                if s.compared > 0 {
                    r.compared_requests = Some(s.compared);
                    r.same_offset_rate = Some(s.same_offset as f64 / s.compared as f64);
                }
                r
            })
            .collect();
        let real = self
            .real_known
            .then(|| model_report(REAL, &self.real_counters, &self.real.snapshot()));
        (models, real)
    }

    /// The comparison document at this point of the stream.
    pub fn report(&self) -> Comparison {
        let names: Vec<&str> = self.shadows.iter().map(|s| s.model.name()).collect();
        let (models, real) = self.model_reports();
        let mut end = self.row(None);
        end.end = Some(Box::new(self.states()));
        let rows = |rows: &[Row]| -> Vec<MarkerReport> {
            rows.iter()
                .enumerate()
                .map(|(i, m)| {
                    let next = rows.get(i + 1).unwrap_or(&end);
                    // The last row closes now; rows past the state limit have none.
                    let state = match rows.get(i + 1) {
                        Some(_) => m.end.as_deref(),
                        None => m.end.as_deref().or(end.end.as_deref()),
                    };
                    self.marker_report(&names, m, next, state)
                })
                .collect()
        };
        let markers = rows(&self.markers);
        let intervals = rows(&self.intervals);
        let first_ts = self.intervals.first().map_or(0, |r| r.ts_ns);
        let intervals = intervals
            .into_iter()
            .map(|mut r| {
                r.label = format!("{:.0} s", r.ts_ns.saturating_sub(first_ts) as f64 / 1e9);
                r
            })
            .collect();
        let zero = Row {
            models: vec![OrderCounters::default(); names.len()],
            real: OrderCounters::default(),
            ..self.row(None)
        };
        // A high the engine has not looked at yet is now.
        let peak = if self.peak_pending && self.peak.as_ref().is_none_or(|(n, _)| self.live > *n) {
            Some(&end)
        } else {
            self.peak.as_ref().map(|(_, r)| r)
        };
        let peak = peak.map(|p| {
            let mut r = self.marker_report(&names, &zero, p, p.end.as_deref());
            r.label = format!("{} slots held", self.peak_live);
            r.event = p.event;
            r.ts_ns = p.ts_ns;
            r
        });
        let series = self
            .series
            .iter()
            .map(|r| SeriesReport {
                event: r.event,
                ts_ns: r.ts_ns,
                models: names
                    .iter()
                    .zip(&r.models)
                    .map(|(n, c)| interval(n, c))
                    .collect(),
                real: self.real_known.then(|| interval(REAL, &r.real)),
            })
            .collect();
        Comparison {
            events: self.stream.events,
            stream: StreamSummary {
                events: self.stream.events,
                allocs: self.stream.allocs,
                frees: self.stream.frees,
                freed_slots: self.stream.freed_slots,
                markers: self.stream.markers,
                ignored: self.stream.ignored,
                anomalies: self.stream.anomalies,
                real_double_alloc_slots: self.real.double_allocs,
                real_unmatched_free_slots: if self.real_known {
                    self.real.unmatched_frees
                } else {
                    0
                },
                refused_devices: self.refused_devices,
                cluster_events: self.real.cluster_events,
                real_cluster_checks: self.real.cluster_checks,
                real_cluster_mismatches: self.real.cluster_mismatches,
                grant_events: self.stream.grants,
                requests_at_grant: self.stream.requests_at_grant,
                requests_at_exit: self.stream.requests_at_exit,
                orphan_grants: self.stream.orphan_grants,
                hoisted_batches: self.stream.hoisted_batches,
                refused_unavailable: self.stream.refused_unavailable,
                decisions_with_hidden_frees: self.concurrent.counts().0,
                hidden_frees: self.concurrent.counts().1,
                interleaved_cursor_reads: self.shadows.iter().map(|s| s.interleaved_reads).sum(),
            },
            models,
            real,
            markers,
            intervals,
            peak,
            series,
            model_device_bytes: self
                .model_device_bytes
                .iter()
                .map(|(t, b)| (*t, *b))
                .collect(),
        }
    }

    /// Counts from row `m` to row `next`, with the occupancy `state` at the end.
    fn marker_report(
        &self,
        names: &[&str],
        m: &Row,
        next: &Row,
        state: Option<&States>,
    ) -> MarkerReport {
        MarkerReport {
            label: m.label.clone().unwrap_or_default(),
            event: m.event,
            ts_ns: m.ts_ns,
            models: names
                .iter()
                .zip(next.models.iter().zip(&m.models))
                .enumerate()
                .map(|(i, (n, (b, a)))| {
                    let mut r = interval(n, &b.since(a));
                    r.state = state.and_then(|s| s.models.get(i)).map(StateReport::of);
                    r
                })
                .collect(),
            real: self.real_known.then(|| {
                let mut r = interval(REAL, &next.real.since(&m.real));
                r.state = state.and_then(|s| s.real.as_ref()).map(StateReport::of);
                r
            }),
        }
    }
}

fn pct(x: f64) -> String {
    format!("{:.2}%", x * 100.0)
}

/// Renders the report as plain-text tables: per-order requests/failures per model, occupancy
/// per model, and (when the stream had markers) the fallback rate per marker interval.
pub fn render_table(r: &Comparison) -> String {
    let mut rows: Vec<&ModelReport> = r.models.iter().collect();
    if let Some(real) = &r.real {
        rows.push(real);
    }
    let w = rows.iter().map(|m| m.name.len()).max().unwrap_or(5).max(5);
    let mut s = String::new();
    for (t, b) in &r.model_device_bytes {
        let _ = writeln!(
            s,
            "what-if: the models replayed the stream onto device {t} resized to {} MiB ({b} bytes); `real` is the recorded device",
            b >> 20
        );
    }
    let _ = writeln!(
        s,
        "events {}  allocs {}  frees {} ({} slots)  markers {}  anomalies {}",
        r.stream.events,
        r.stream.allocs,
        r.stream.frees,
        r.stream.freed_slots,
        r.stream.markers,
        r.stream.anomalies
    );
    let _ = writeln!(
        s,
        "\n{:<w$}  {:>5}  {:>12}  {:>12}  {:>9}",
        "model", "order", "requests", "failures", "fallback"
    );
    for m in &rows {
        for (o, req) in &m.requests_by_order {
            let fail = m.failures_by_order.get(o).copied().unwrap_or(0);
            let rate = m.fallback_rate_by_order.get(o).copied().unwrap_or(0.0);
            // An order-0 request fails only when no slot is free at all: the device is full,
            // not fragmented.
            let note = if *o == 0 && fail > 0 {
                "  swap full"
            } else {
                ""
            };
            let _ = writeln!(
                s,
                "{:<w$}  {:>5}  {:>12}  {:>12}  {:>9}{note}",
                m.name,
                o,
                req,
                fail,
                pct(rate)
            );
        }
    }
    let fidelity: Vec<String> = rows
        .iter()
        .filter_map(|m| {
            Some(format!(
                "{} {} of {}",
                m.name,
                pct(m.same_offset_rate?),
                m.compared_requests.unwrap_or(0)
            ))
        })
        .collect();
    if !fidelity.is_empty() {
        let _ = writeln!(
            s,
            "\nsame slot as the kernel (requests both served): {}",
            fidelity.join(", ")
        );
    }
    for m in rows.iter().filter(|m| !m.divergences.is_empty()) {
        let _ = writeln!(
            s,
            "\n{}: the first {} requests it answered otherwise than the kernel (--divergence)",
            m.name,
            m.divergences.len()
        );
        for d in &m.divergences {
            s.push_str(&d.text());
        }
    }
    for m in rows.iter().filter(|m| m.physical_contiguity.is_some()) {
        let _ = writeln!(
            s,
            "{}: physical slots contiguous for {} of large-folio write-outs (virtual slots: no same-slot comparison)",
            m.name,
            pct(m.physical_contiguity.unwrap_or(0.0))
        );
    }
    s.push('\n');
    let end: Vec<(&str, StateReport, Option<u64>)> = rows
        .iter()
        .map(|m| {
            let st = StateReport {
                used_slots: m.used_slots,
                total_slots: m.total_slots,
                fragmentation_by_order: m.fragmentation_by_order.clone(),
                clusters: m.clusters,
                largest_free_run: m.largest_free_run,
            };
            (m.name.as_str(), st, Some(m.metadata_bytes))
        })
        .collect();
    occupancy_table(&mut s, w, &end);
    if !r.markers.is_empty() {
        // Columns: (model, order) pairs with large-order requests anywhere in the table.
        let mut cols: Vec<(usize, u8)> = Vec::new();
        for mk in &r.markers {
            for (i, m) in mk.models.iter().chain(mk.real.iter()).enumerate() {
                for &o in m.requests_by_order.keys() {
                    if o != 0 && !cols.contains(&(i, o)) {
                        cols.push((i, o));
                    }
                }
            }
        }
        cols.sort();
        let lw = r
            .markers
            .iter()
            .map(|m| printable(&m.label).len())
            .max()
            .unwrap_or(6)
            .max(6);
        let _ = write!(s, "\nfallback per marker interval\n{:<lw$}", "marker");
        let names: Vec<String> = r
            .models
            .iter()
            .map(|m| m.name.clone())
            .chain(r.real.iter().map(|m| m.name.clone()))
            .collect();
        for (i, o) in &cols {
            let _ = write!(
                s,
                "  {:>16}",
                format!("{}:{}", names.get(*i).map_or("?", String::as_str), o)
            );
        }
        s.push('\n');
        for mk in &r.markers {
            let _ = write!(s, "{:<lw$}", printable(&mk.label));
            let all: Vec<&IntervalReport> = mk.models.iter().chain(mk.real.iter()).collect();
            for (i, o) in &cols {
                let cell = all
                    .get(*i)
                    .and_then(|m| m.fallback_rate_by_order.get(o))
                    .map_or_else(|| "-".to_string(), |r| pct(*r));
                let _ = write!(s, "  {cell:>16}");
            }
            s.push('\n');
        }
    }
    // The run, not only its end: each interval's fallback, fragmentation and fill at the
    // largest order requested, and every model's occupancy at the peak.
    // The most-requested large order (as the TUI's Models view), else order 0.
    let mut by_order: BTreeMap<u8, u64> = BTreeMap::new();
    for m in &rows {
        for (&o, n) in &m.requests_by_order {
            *by_order.entry(o).or_default() += n;
        }
    }
    let big = by_order
        .iter()
        .filter(|(o, n)| **o > 0 && **n > 0)
        .max_by_key(|(o, n)| (**n, std::cmp::Reverse(**o)))
        .map_or(0, |(o, _)| *o);
    let (title, run) = if r.markers.is_empty() {
        ("interval", &r.intervals)
    } else {
        ("marker interval", &r.markers)
    };
    if run.len() > 1 {
        let _ = writeln!(
            s,
            "\nper {title}: order-{big} fallback / order-{big} fragmentation / slots used, at the end of each"
        );
        let lw = run
            .iter()
            .map(|m| printable(&m.label).len())
            .max()
            .unwrap_or(6)
            .max(8);
        let _ = write!(s, "{:<lw$}", title.split(' ').next().unwrap_or(title));
        let first = &run[0];
        for m in first.models.iter().chain(first.real.iter()) {
            let _ = write!(s, "  {:>22}", m.name);
        }
        s.push('\n');
        // At most 40 rows in text (evenly spread); the JSON has them all.
        let every = run.len().div_ceil(40);
        for (i, row) in run.iter().enumerate() {
            if i % every != 0 && i + 1 != run.len() {
                continue;
            }
            let _ = write!(s, "{:<lw$}", printable(&row.label));
            for m in row.models.iter().chain(row.real.iter()) {
                let cell = match &m.state {
                    Some(st) => format!(
                        "{} {} {}",
                        m.fallback_rate_by_order
                            .get(&big)
                            .map_or("-".into(), |f| pct(*f)),
                        st.fragmentation_by_order
                            .get(&big)
                            .map_or("-".into(), |f| pct(*f)),
                        pct(st.used_slots as f64 / st.total_slots.max(1) as f64)
                    ),
                    None => "-".into(),
                };
                let _ = write!(s, "  {cell:>22}");
            }
            s.push('\n');
        }
        if every > 1 {
            let _ = writeln!(s, "(every {every}th of {} rows; all in --json)", run.len());
        }
    }
    if let Some(p) = &r.peak {
        let _ = writeln!(
            s,
            "\nat the peak ({}, event {}): occupancy",
            printable(&p.label),
            p.event
        );
        let at_peak: Vec<(&str, StateReport, Option<u64>)> = p
            .models
            .iter()
            .chain(p.real.iter())
            .filter_map(|m| Some((m.name.as_str(), m.state.clone()?, None)))
            .collect();
        occupancy_table(&mut s, w, &at_peak);
    }
    s
}

/// Occupancy rows: used and total slots, clusters by list, the largest free aligned run,
/// fragmentation at orders 0, 4 and 9, and (when given) the model's metadata bytes.
fn occupancy_table(s: &mut String, w: usize, rows: &[(&str, StateReport, Option<u64>)]) {
    let meta = rows.iter().any(|(_, _, m)| m.is_some());
    let _ = write!(
        s,
        "{:<w$}  {:>12}  {:>12}  {:>6} {:>6} {:>6} {:>6} {:>6}  {:>8}  {:>7} {:>7} {:>7}",
        "model",
        "used",
        "total",
        "free",
        "nonfl",
        "frag",
        "full",
        "other",
        "maxrun",
        "frag0",
        "frag4",
        "frag9"
    );
    if meta {
        let _ = write!(s, "  {:>10}", "metadata");
    }
    s.push('\n');
    for (name, st, m) in rows {
        let f = |o: u8| st.fragmentation_by_order.get(&o).copied().unwrap_or(0.0);
        let c = &st.clusters;
        let _ = write!(
            s,
            "{:<w$}  {:>12}  {:>12}  {:>6} {:>6} {:>6} {:>6} {:>6}  {:>8}  {:>7} {:>7} {:>7}",
            name,
            st.used_slots,
            st.total_slots,
            c.free,
            c.nonfull,
            c.frag,
            c.full,
            c.other,
            st.largest_free_run,
            pct(f(0)),
            pct(f(4)),
            pct(f(9))
        );
        if let Some(m) = m {
            let _ = write!(s, "  {m:>10}");
        }
        s.push('\n');
    }
}
