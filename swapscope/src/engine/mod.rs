//! The engine: replays the event stream through N allocator models in shadow, rebuilds the real
//! occupancy when the stream carries the kernel's answers, and produces the comparison report.
//!
//! ```
//! use swapscope::engine::{Engine, EngineConfig};
//! let mut engine = Engine::new(swapscope::models::all(), EngineConfig::default());
//! # let events: Vec<swapscope::event::Event> = Vec::new();
//! for ev in &events {
//!     engine.feed(ev);
//! }
//! let report = engine.report();
//! let text = swapscope::engine::render_table(&report);
//! let json = report.to_json();
//! # let _ = (text, json);
//! ```
//!
//! # Slot spaces
//! Every model has its own slot space. For each model the engine keeps a map from stream slots
//! to model slots ([`SlotMap`], extents), so a stream free of `(type, offset, nr)` frees exactly
//! the model slots that back those stream slots, also when a large allocation is freed piece by
//! piece.
//!
//! * `AllocResult::Success { swap_type, offset }`: the stream slots are the kernel's slots
//!   `offset .. offset + 2^order` on `swap_type`; the engine also rebuilds the real occupancy
//!   from them (reported as `"real"`).
//! * `AllocResult::Unknown` (simulated workloads): the stream slots are **virtual**. See
//!   [`crate::event::virtual_slot`] for the contract with workload generators. The model maps are keyed by
//!   dense slots the engine hands each virtual allocation in arrival order (`virt.rs`), so that
//!   consecutive allocations form long runs.
//! * `AllocResult::Failure`: the kernel split the folio and will retry with order-0 requests
//!   that appear later in the stream. Each model's answer for that order is counted, and a
//!   successful model allocation is given back at once, so model occupancy stays in step with
//!   the real one.
//!
//! When a model cannot serve an order k > 0 request the engine counts a failure (a fallback
//! split) and requests 2^k order-0 slots from it, as the kernel does after `split_folio`
//! (those requests are counted at order 0). If even order 0 fails the page has no model slot
//! (counted as an order-0 failure and in `unbacked_slots`).

use crate::alloc::{self, AllocatorModel, Extent, MAX_ORDER, ModelSnapshot, NR_ORDERS};
use crate::event::virtual_slot;
use crate::event::{Alloc, AllocResult, Event, Free, Ts};

mod parallel;
mod real;
mod report;
mod slotmap;
mod virt;

pub use parallel::{Finished, Parallel};
pub use real::RealOccupancy;
pub use report::{
    IntervalReport, MarkerReport, ModelReport, Report, SeriesReport, StreamSummary, render_table,
};
pub use slotmap::{BucketHasher, SlotMap, stream_key};

/// A fast hasher for integer keys that are not attacker-chosen (slot buckets, folio ids).
pub type BuildBucketHasher = std::hash::BuildHasherDefault<BucketHasher>;

/// Errors of the engine's outputs.
#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    #[error("serialising the report: {0}")]
    Json(#[from] serde_json::Error),
}

/// Engine settings.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct EngineConfig {
    /// Take a time-series row of the per-order counters every this many events (0 = never).
    /// Rows are also taken at every `Marker` event.
    pub series_every: u64,
    /// Length of the report's time intervals, in ns of stream time (0 = none): each closes with
    /// every model's state, as marker intervals do.
    pub interval_ns: u64,
    /// What-if: the size of every swap device as the models see it (the real occupancy keeps
    /// the recorded size). Requests map onto model slots by allocation, never by offset, so a
    /// stream replays onto a device of any size.
    pub device_size: Option<DeviceSize>,
}

impl Default for EngineConfig {
    fn default() -> Self {
        EngineConfig {
            series_every: 1_000_000,
            interval_ns: DEFAULT_INTERVAL_NS,
            device_size: None,
        }
    }
}

/// A device size for the models other than the recorded one.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DeviceSize {
    /// Each device this many bytes (4 KiB slots, the header slot included).
    Bytes(u64),
    /// Each device this many percent of its recorded size.
    Percent(u32),
}

impl DeviceSize {
    /// The device `on` as the models see it: `max` resized (at least two slots: the header and
    /// one more), bad slots past the new end dropped.
    pub fn apply(self, on: &crate::event::SwapOn) -> crate::event::SwapOn {
        let max = match self {
            DeviceSize::Bytes(b) => b / 4096,
            DeviceSize::Percent(p) => {
                u64::try_from(u128::from(on.max) * u128::from(p) / 100).unwrap_or(u64::MAX)
            }
        }
        .max(2);
        crate::event::SwapOn {
            max,
            bad: on.bad.iter().copied().filter(|&b| b < max).collect(),
            ..on.clone()
        }
    }
}

/// Cumulative per-order request counters.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct OrderCounters {
    pub requests: [u64; NR_ORDERS],
    pub successes: [u64; NR_ORDERS],
    pub failures: [u64; NR_ORDERS],
}

impl OrderCounters {
    /// `self - earlier`, per order.
    pub fn since(&self, earlier: &OrderCounters) -> OrderCounters {
        let sub = |a: &[u64; NR_ORDERS], b: &[u64; NR_ORDERS]| {
            let mut out = [0; NR_ORDERS];
            for ((o, x), y) in out.iter_mut().zip(a).zip(b) {
                *o = x.saturating_sub(*y);
            }
            out
        };
        OrderCounters {
            requests: sub(&self.requests, &earlier.requests),
            successes: sub(&self.successes, &earlier.successes),
            failures: sub(&self.failures, &earlier.failures),
        }
    }

    fn request(&mut self, order: usize, ok: bool) {
        if let Some(r) = self.requests.get_mut(order) {
            *r += 1;
        }
        let c = if ok {
            &mut self.successes
        } else {
            &mut self.failures
        };
        if let Some(c) = c.get_mut(order) {
            *c += 1;
        }
    }
}

/// One model driven in shadow.
struct Shadow {
    model: Box<dyn AllocatorModel>,
    map: SlotMap,
    counters: OrderCounters,
    /// Stream slots with no model slot (even order 0 failed).
    unbacked_slots: u64,
    /// Stream slots freed that had no model slot.
    unmatched_free_slots: u64,
    /// Model slots dropped because their model device went away.
    dropped_slots: u64,
    /// Requests with a kernel result where the model also succeeded, and how many of those it
    /// placed at the kernel's own (type, offset): the fidelity of a model of the running kernel.
    compared: u64,
    same_offset: u64,
    /// The model's [`AllocatorModel::wants_writeouts`], asked once.
    writeouts: bool,
    /// The model's [`AllocatorModel::virtual_slots`], asked once.
    virtual_slots: bool,
}

/// Stream-level counters.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
struct StreamCounts {
    events: u64,
    allocs: u64,
    frees: u64,
    freed_slots: u64,
    markers: u64,
    ignored: u64,
    anomalies: u64,
}

/// A row of counters (cumulative) at one point of the stream.
#[derive(Clone, Debug)]
struct Row {
    event: u64,
    ts_ns: Ts,
    label: Option<String>,
    models: Vec<OrderCounters>,
    real: OrderCounters,
    /// Every model's (and the real) occupancy when the interval that starts here closed.
    end: Option<Box<States>>,
}

/// Occupancy of every model and of the real kernel at one moment.
#[derive(Clone, Debug)]
struct States {
    models: Vec<ModelSnapshot>,
    real: Option<ModelSnapshot>,
}

/// Time intervals of the report by default: 5 s of stream time.
pub const DEFAULT_INTERVAL_NS: u64 = 5_000_000_000;
/// Time-interval rows kept at most (beyond, the last one grows: see the report's limits).
pub const MAX_INTERVAL_ROWS: usize = 1_000;
/// Marker rows that also keep every model's occupancy at their end (the later ones keep counts
/// only): the state of every model is about a kilobyte a row in the report.
pub const MAX_MARKER_STATE_ROWS: usize = 1_000;

/// Replays events through the models.
pub struct Engine {
    shadows: Vec<Shadow>,
    real: RealOccupancy,
    real_counters: OrderCounters,
    real_known: bool,
    stream: StreamCounts,
    config: EngineConfig,
    scratch: Vec<Extent>,
    /// Dense slots of virtual allocations (used only with models).
    virt: virt::VirtualIds,
    series: Vec<Row>,
    markers: Vec<Row>,
    /// Time intervals (see [`EngineConfig::interval_ns`]) and where the next one starts.
    intervals: Vec<Row>,
    next_interval: Option<Ts>,
    /// Slots the stream holds (requests not refused, minus frees), its highest value, and the
    /// row taken at the highest value so far (with its state).
    live: u64,
    peak_live: u64,
    peak_pending: bool,
    peak: Option<(u64, Row)>,
    last_ts: Ts,
    /// Largest stream→model map seen, per model, and of the virtual-id translation (bytes,
    /// looked at every [`PEAK_EVERY`] events): the benchmark's memory figures.
    map_peaks: Vec<u64>,
    virtual_peak: u64,
    /// Devices taken (type, `max` slots) and those refused for their size.
    devices: Vec<(u8, u64)>,
    refused_devices: u64,
    /// What-if replays: each device's size as the models saw it, in bytes, by swap type.
    model_device_bytes: std::collections::BTreeMap<u8, u64>,
    /// Whether any model wants write-outs (else they are ignored without a look).
    writeouts_wanted: bool,
}

/// Marker rows kept (each holds every model's counters): later markers are counted, not broken
/// out, so a stream of millions of markers cannot take memory without bound.
pub const MAX_MARKER_ROWS: usize = 10_000;
/// Largest device the engine takes, and the most slots over all its devices at once (2^28
/// slots: 1 TiB of 4 KiB pages, what `simulate` accepts): the models' memory follows the
/// devices' size, so a stream claiming a larger one is refused rather than believed.
pub const MAX_DEVICE_SLOTS: u64 = 1 << 28;

/// Events between two looks at the map sizes (for [`Engine::mapping_peak`]).
const PEAK_EVERY: u64 = 1 << 20;

impl Engine {
    pub fn new(models: Vec<Box<dyn AllocatorModel>>, config: EngineConfig) -> Self {
        let shadows: Vec<Shadow> = models
            .into_iter()
            .map(|model| Shadow {
                writeouts: model.wants_writeouts(),
                virtual_slots: model.virtual_slots(),
                model,
                map: SlotMap::new(),
                counters: OrderCounters::default(),
                unbacked_slots: 0,
                compared: 0,
                same_offset: 0,
                unmatched_free_slots: 0,
                dropped_slots: 0,
            })
            .collect();
        let writeouts_wanted = shadows.iter().any(|s| s.writeouts);
        Engine {
            shadows,
            real: RealOccupancy::default(),
            real_counters: OrderCounters::default(),
            real_known: false,
            stream: StreamCounts::default(),
            config,
            scratch: Vec::with_capacity(64),
            virt: virt::VirtualIds::default(),
            series: Vec::new(),
            markers: Vec::new(),
            intervals: Vec::new(),
            next_interval: None,
            live: 0,
            peak_live: 0,
            peak_pending: false,
            peak: None,
            last_ts: 0,
            map_peaks: Vec::new(),
            virtual_peak: 0,
            devices: Vec::new(),
            refused_devices: 0,
            model_device_bytes: std::collections::BTreeMap::new(),
            writeouts_wanted,
        }
    }

    /// Devices refused because of their size (see [`MAX_DEVICE_SLOTS`]).
    pub fn refused_devices(&self) -> u64 {
        self.refused_devices
    }

    /// The largest size (bytes) the stream→model map of model `i` had, looked at every 2^20
    /// events and now.
    pub fn mapping_peak(&self, i: usize) -> u64 {
        let now = self.shadows.get(i).map_or(0, |s| s.map.approx_bytes());
        self.map_peaks.get(i).copied().unwrap_or(0).max(now)
    }

    /// The largest size (bytes) of the virtual-allocation translation, likewise.
    pub fn virtual_ids_peak(&self) -> u64 {
        self.virtual_peak.max(self.virt.approx_bytes())
    }

    fn note_peaks(&mut self) {
        if self.map_peaks.len() != self.shadows.len() {
            self.map_peaks.resize(self.shadows.len(), 0);
        }
        for (p, s) in self.map_peaks.iter_mut().zip(&self.shadows) {
            *p = (*p).max(s.map.approx_bytes());
        }
        self.virtual_peak = self.virtual_peak.max(self.virt.approx_bytes());
    }

    /// Names of the models, in report order.
    pub fn model_names(&self) -> impl Iterator<Item = &'static str> + '_ {
        self.shadows.iter().map(|s| s.model.name())
    }

    /// The model at `i`.
    pub fn model(&self, i: usize) -> Option<&dyn AllocatorModel> {
        self.shadows.get(i).map(|s| s.model.as_ref())
    }

    /// The stream→model slot map of model `i`.
    pub fn slot_map(&self, i: usize) -> Option<&SlotMap> {
        self.shadows.get(i).map(|s| &s.map)
    }

    /// Per-order counters of model `i`.
    pub fn counters(&self, i: usize) -> Option<&OrderCounters> {
        self.shadows.get(i).map(|s| &s.counters)
    }

    /// Approximate heap bytes of the virtual-allocation translation (shared by all models).
    pub fn virtual_ids_bytes(&self) -> u64 {
        self.virt.approx_bytes()
    }

    /// The real occupancy rebuilt from `Success` results.
    pub fn real(&self) -> &RealOccupancy {
        &self.real
    }

    /// The real kernel's per-order request counters (meaningful when [`Engine::real_known`]).
    pub fn real_counters(&self) -> &OrderCounters {
        &self.real_counters
    }

    /// Whether the stream carried kernel results (so `real` means something).
    pub fn real_known(&self) -> bool {
        self.real_known
    }

    /// Feeds every event of an iterator.
    pub fn feed_all<'a>(&mut self, events: impl IntoIterator<Item = &'a Event>) {
        for ev in events {
            self.feed(ev);
        }
    }

    /// Feeds one event.
    pub fn feed(&mut self, ev: &Event) {
        self.stream.events += 1;
        self.last_ts = ev.ts();
        if self.config.interval_ns > 0 && self.last_ts > 0 {
            self.advance_intervals(self.last_ts);
        }
        match ev {
            Event::SwapOn(recorded) => {
                let resized = self.config.device_size.map(|d| d.apply(recorded));
                let on = resized.as_ref().unwrap_or(recorded);
                // The bound holds for the real occupancy (recorded size) and the models (resized).
                let slots = on.max.max(recorded.max);
                let others: u64 = self
                    .devices
                    .iter()
                    .filter(|(t, _)| *t != on.swap_type)
                    .map(|(_, m)| m)
                    .sum();
                if slots > MAX_DEVICE_SLOTS || others + slots > MAX_DEVICE_SLOTS {
                    self.stream.anomalies += 1;
                    self.refused_devices += 1;
                } else {
                    self.devices.retain(|(t, _)| *t != on.swap_type);
                    self.devices.push((on.swap_type, slots));
                    if resized.is_some() {
                        self.model_device_bytes.insert(on.swap_type, on.max * 4096);
                    }
                    self.real.swapon(recorded);
                    for s in &mut self.shadows {
                        s.model.swapon(on);
                    }
                }
            }
            Event::SwapOff(off) => {
                self.devices.retain(|(t, _)| *t != off.swap_type);
                self.swapoff(off.swap_type);
            }
            Event::Alloc(a) => {
                self.alloc(a);
                if !matches!(a.result, AllocResult::Failure) && a.order <= MAX_ORDER {
                    self.live += 1u64 << a.order;
                    if self.live > self.peak_live {
                        self.peak_live = self.live;
                        self.peak_pending = true;
                    }
                }
            }
            Event::Free(f) => {
                self.note_peak();
                self.live = self.live.saturating_sub(u64::from(f.nr));
                self.free(f);
            }
            Event::Marker(m) => {
                self.stream.markers += 1;
                if self.markers.len() < MAX_MARKER_ROWS {
                    if self.markers.len() <= MAX_MARKER_STATE_ROWS {
                        let end = self.states();
                        if let Some(last) = self.markers.last_mut() {
                            last.end = Some(Box::new(end));
                        }
                    }
                    let row = self.row(Some(m.kept_label()));
                    self.markers.push(row);
                }
            }
            Event::Writeout(w) => self.writeout(w),
            Event::Counters(_)
            | Event::Devices(_)
            | Event::Lost(_)
            | Event::Split(_)
            | Event::SwapIn(_) => {
                self.stream.ignored += 1;
            }
            Event::Cluster(c) => {
                self.real.cluster(c);
            }
        }
        if self.config.series_every > 0
            && self.stream.events.is_multiple_of(self.config.series_every)
        {
            let row = self.row(None);
            self.series.push(row);
        }
        if self.stream.events.is_multiple_of(PEAK_EVERY) {
            self.note_peaks();
        }
    }

    fn row(&self, label: Option<String>) -> Row {
        Row {
            event: self.stream.events,
            ts_ns: self.last_ts,
            label,
            models: self.shadows.iter().map(|s| s.counters).collect(),
            real: self.real_counters,
            end: None,
        }
    }

    /// Every model's occupancy now (and the real kernel's, when the stream carries it).
    fn states(&self) -> States {
        States {
            models: self.shadows.iter().map(|s| s.model.snapshot()).collect(),
            real: self.real_known.then(|| self.real.snapshot()),
        }
    }

    /// Closes the time intervals that end at or before `ts` and opens the next.
    fn advance_intervals(&mut self, ts: Ts) {
        let step = self.config.interval_ns;
        let Some(next) = self.next_interval else {
            self.next_interval = Some(ts.saturating_add(step));
            let row = self.row(None);
            self.intervals.push(row);
            return;
        };
        if ts < next || self.intervals.len() >= MAX_INTERVAL_ROWS {
            return;
        }
        let end = self.states();
        if let Some(last) = self.intervals.last_mut() {
            last.end = Some(Box::new(end));
        }
        // A quiet gap of many intervals is one interval starting at the boundary before `ts`.
        let skipped = (ts - next) / step;
        let start = next + skipped * step;
        self.next_interval = Some(start.saturating_add(step));
        let mut row = self.row(None);
        row.ts_ns = start;
        self.intervals.push(row);
    }

    /// Before a free: if the stream's held slots reached a new high since the last look, and it
    /// is at least 1/200 of the devices above the one kept, keep this moment as the peak (so a
    /// stream takes at most a few hundred looks, however it fills).
    fn note_peak(&mut self) {
        if !self.peak_pending {
            return;
        }
        self.peak_pending = false;
        let total: u64 = self.devices.iter().map(|(_, m)| *m).sum();
        let step = (total / 200).max(1);
        let kept = self.peak.as_ref().map(|(n, _)| *n);
        if kept.is_none_or(|k| self.live >= k + step) {
            let mut row = self.row(Some("peak".into()));
            row.end = Some(Box::new(self.states()));
            self.peak = Some((self.live, row));
        }
    }

    fn alloc(&mut self, a: &Alloc) {
        self.stream.allocs += 1;
        if a.order > MAX_ORDER {
            self.stream.anomalies += 1;
            return;
        }
        let o = usize::from(a.order);
        let n = 1u64 << a.order;
        let key = match a.result {
            AllocResult::Failure => {
                self.real_known = true;
                self.real_counters.request(o, false);
                self.shadow_failure(a.cpu, a.order);
                return;
            }
            AllocResult::Success { swap_type, offset } => {
                self.real_known = true;
                self.real_counters.request(o, true);
                let before = self.real.double_allocs;
                self.real.alloc(swap_type, offset, n);
                let Some(key) = stream_key(swap_type, offset) else {
                    self.stream.anomalies += 1;
                    return;
                };
                if self.real.double_allocs != before {
                    // A free was missed: forget whatever the models hold for these slots.
                    self.stream.anomalies += 1;
                    self.unmap(key, n);
                }
                key
            }
            AllocResult::Unknown => {
                if a.id >= virtual_slot::ID_LIMIT {
                    self.stream.anomalies += 1;
                    return;
                }
                if self.shadows.is_empty() {
                    return;
                }
                // Before this allocation gets its dense slots (they are not mapped yet).
                if self.virt.sweep_due() {
                    let Engine { virt, shadows, .. } = &mut *self;
                    virt.sweep(|base, n| {
                        stream_key(virtual_slot::SWAP_TYPE, base)
                            .is_some_and(|k| shadows.iter().any(|s| s.map.overlaps(k, n)))
                    });
                }
                if let Some((old, old_n)) = self.virt.lookup(a.id) {
                    // The id is reused: pages of its previous use still mapped are an anomaly
                    // and are given back first.
                    let n_check = old_n.min(n);
                    if let Some(old_key) = stream_key(virtual_slot::SWAP_TYPE, old)
                        && self
                            .shadows
                            .first()
                            .is_some_and(|s| s.map.overlaps(old_key, n_check))
                    {
                        self.stream.anomalies += 1;
                        self.unmap(old_key, n_check);
                    }
                    self.virt.forget(a.id);
                }
                let Some(key) = self
                    .virt
                    .alloc(a.id, a.order)
                    .and_then(|dense| stream_key(virtual_slot::SWAP_TYPE, dense))
                else {
                    self.stream.anomalies += 1;
                    return;
                };
                key
            }
        };
        let Engine {
            shadows, scratch, ..
        } = self;
        let kernel_slot = match a.result {
            AllocResult::Success { swap_type, offset } => Some((swap_type, offset)),
            _ => None,
        };
        for s in shadows.iter_mut() {
            let Shadow {
                model,
                map,
                counters,
                unbacked_slots,
                compared,
                same_offset,
                virtual_slots,
                ..
            } = s;
            alloc::serve_folio(model.as_mut(), a.cpu, a.order, scratch, |r| {
                counters.request(usize::from(r.order), r.ok());
                match r.extents {
                    Some(ext) => {
                        if r.order == a.order
                            && !*virtual_slots
                            && let Some((ty, off)) = kernel_slot
                        {
                            *compared += 1;
                            if ext
                                .first()
                                .is_some_and(|e| e.swap_type == ty && e.offset == off)
                            {
                                *same_offset += 1;
                            }
                        }
                        let n = 1u64 << r.order;
                        *unbacked_slots += n.saturating_sub(map.insert(key + r.page, ext));
                    }
                    // Even an order-0 slot was refused: that page has no model slot.
                    None if r.order == 0 => *unbacked_slots += 1,
                    None => {}
                }
            });
        }
    }

    /// The kernel failed this order: count each model's answer and give a success back.
    fn shadow_failure(&mut self, cpu: u32, order: u8) {
        let Engine {
            shadows, scratch, ..
        } = self;
        for s in shadows.iter_mut() {
            scratch.clear();
            let ok = s.model.alloc_into(cpu, order, scratch);
            s.counters.request(usize::from(order), ok);
            if ok {
                for e in scratch.iter() {
                    s.model.free(e.swap_type, e.offset, e.nr);
                }
            }
        }
    }

    /// Frees whatever every model maps for stream slots `key .. key + n`.
    fn unmap(&mut self, key: u64, n: u64) {
        for s in &mut self.shadows {
            let Shadow { model, map, .. } = s;
            map.remove(key, n, |t, off, nr| model.free(t, off, nr));
        }
    }

    fn free(&mut self, f: &Free) {
        self.stream.frees += 1;
        let n = u64::from(f.nr);
        self.stream.freed_slots += n;
        if f.swap_type != virtual_slot::SWAP_TYPE {
            self.real.free(f.swap_type, f.offset, n);
        }
        let Some(key) = stream_key(f.swap_type, f.offset) else {
            self.stream.anomalies += 1;
            return;
        };
        if f.swap_type == virtual_slot::SWAP_TYPE {
            self.free_virtual(f.offset, n);
            return;
        }
        for s in &mut self.shadows {
            let Shadow {
                model,
                map,
                unmatched_free_slots,
                ..
            } = s;
            let removed = map.remove(key, n, |t, off, nr| model.free(t, off, nr));
            *unmatched_free_slots += n - removed;
        }
    }

    /// A write-out: handed, through each model's slot map, to the models that want it.
    fn writeout(&mut self, w: &crate::event::Writeout) {
        if !self.writeouts_wanted {
            self.stream.ignored += 1;
            return;
        }
        let Some(key) = stream_key(w.swap_type, w.offset) else {
            return;
        };
        for s in self.shadows.iter_mut().filter(|s| s.writeouts) {
            let Shadow { model, map, .. } = s;
            map.visit(key, 1u64 << w.order.min(MAX_ORDER), |t, off, nr| {
                model.writeout(t, off, nr);
            });
        }
    }

    /// Frees virtual slots `offset .. offset + n` through their dense slots, id by id. Pages
    /// past the allocation's size, or of ids with no dense slots, free nothing.
    fn free_virtual(&mut self, offset: u64, n: u64) {
        let end = offset.saturating_add(n);
        let mut off = offset;
        while off < end {
            let (id, page) = (virtual_slot::id(off), virtual_slot::page(off));
            let stop = virtual_slot::offset(id + 1, 0).min(end);
            let span = stop - off;
            let dense = self
                .virt
                .lookup(id)
                .filter(|&(_, pages)| page < pages)
                .and_then(|(d, pages)| {
                    Some((stream_key(virtual_slot::SWAP_TYPE, d + page)?, pages - page))
                });
            for s in &mut self.shadows {
                let Shadow {
                    model,
                    map,
                    unmatched_free_slots,
                    ..
                } = s;
                let removed = dense.map_or(0, |(k, left)| {
                    map.remove(k, span.min(left), |t, o, nr| model.free(t, o, nr))
                });
                *unmatched_free_slots += span - removed;
            }
            off = stop;
        }
    }

    fn swapoff(&mut self, ty: u8) {
        self.real.swapoff(ty);
        let lo = u64::from(ty) << slotmap::STREAM_OFFSET_BITS;
        let hi = lo + (1 << slotmap::STREAM_OFFSET_BITS);
        for s in &mut self.shadows {
            let Shadow {
                model,
                map,
                dropped_slots,
                ..
            } = s;
            map.remove_keys(lo, hi, |t, off, nr| model.free(t, off, nr));
            model.swapoff(ty);
            *dropped_slots += map.drop_model_device(ty);
        }
    }
}

#[cfg(test)]
mod tests;
