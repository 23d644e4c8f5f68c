//! The engine: replays the event stream through N allocator models in shadow, rebuilds the real
//! occupancy when the stream carries the kernel's answers, and produces the comparison report.
//!
//! ```
//! use swapscope_core::engine::{Engine, EngineConfig};
//! // The models: `swapscope_models::all()` (the built-in ones), or any `Box<dyn AllocatorModel>`.
//! let models = Vec::new();
//! let mut engine = Engine::new(models, EngineConfig::default());
//! # let events: Vec<swapscope_core::event::Event> = Vec::new();
//! for ev in &events {
//!     engine.feed(ev);
//! }
//! let report = engine.report();
//! let text = swapscope_core::engine::render_table(&report);
//! let json = report.to_json();
//! # let _ = (text, json);
//! ```
//!
//! # Slot spaces
//! Every model has its own slot space. For each model the engine keeps a map from stream slots
//! to model slots ([`StreamMap`], extents), so a stream free of `(type, offset, nr)` frees exactly
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

use crate::alloc::{self, AllocatorModel, Cpus, Extent, MAX_ORDER, ModelSnapshot, NR_ORDERS};
use crate::event::virtual_slot;
use crate::event::{Alloc, AllocResult, Event, Free, Ts};

mod concurrent;
mod divergence;
mod parallel;
mod real;
mod report;
mod streammap;
mod virt;

pub use divergence::{ClusterView, DecidedAt, Divergence, Nearby, SlotRef};
pub use parallel::{Finished, Parallel};
pub use real::RealOccupancy;
pub use report::{
    ByOrder, Comparison, IntervalReport, MarkerReport, ModelReport, SeriesReport, StreamSummary,
    render_table,
};
pub use streammap::{BucketHasher, StreamMap, stream_key};

/// A (type, offset) pair as a divergence names it.
fn slot_ref(s: Option<(u8, u64)>) -> Option<divergence::SlotRef> {
    s.map(|(swap_type, offset)| divergence::SlotRef { swap_type, offset })
}

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
    /// The recorded host's online CPUs (the header's), handed to every model
    /// ([`AllocatorModel::set_online_cpus`]).
    pub online_cpus: Option<u32>,
    /// Divergences kept per model: the first requests a model answered otherwise than the
    /// kernel (0 = none looked for; `report --divergence`).
    pub divergences: usize,
    /// The model of the recorded kernel (`models::of_kernel`): after a request it answered
    /// otherwise than the kernel, it takes the kernel's answer as its own
    /// ([`AllocatorModel::follow_kernel`]), so one race does not decide the rest of the run.
    /// `None`: every model runs free.
    pub kernel_model: Option<&'static str>,
}

impl Default for EngineConfig {
    fn default() -> Self {
        EngineConfig {
            series_every: 1_000_000,
            interval_ns: DEFAULT_INTERVAL_NS,
            device_size: None,
            online_cpus: None,
            divergences: 0,
            kernel_model: None,
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
        let max = self.slots(on.max);
        crate::event::SwapOn {
            max,
            bad: on.bad.iter().copied().filter(|&b| b < max).collect(),
            ..on.clone()
        }
    }

    /// Slots of a device recorded with `max` slots, at this size (at least two).
    pub fn slots(self, max: u64) -> u64 {
        match self {
            DeviceSize::Bytes(b) => b / 4096,
            DeviceSize::Percent(p) => {
                u64::try_from(u128::from(max) * u128::from(p) / 100).unwrap_or(u64::MAX)
            }
        }
        .max(2)
    }

    /// Whether a device recorded with `max` slots is too large to replay at this size: a
    /// what-if size is bounded as `--swap-size` is ([`crate::workload::MAX_SWAP_BYTES`]), or by
    /// the recorded size when that is larger (the models' memory and time follow it).
    pub fn too_large(self, max: u64) -> bool {
        self.slots(max) > max.max(crate::workload::MAX_SWAP_BYTES / 4096)
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
    map: StreamMap,
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
    /// This is the model of the recorded kernel, which follows the kernel's answers.
    follows: bool,
    /// Requests after which it took the kernel's answer as its own.
    corrections: u64,
    /// Requests it answered with per-CPU state read before requests interleaved with them on
    /// their CPU ([`AllocatorModel::interleaved`]).
    interleaved_reads: u64,
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
    grants: u64,
    /// Successful requests the models answered at their grant (the kernel's order), and those
    /// answered at the request event (no grant seen for them).
    requests_at_grant: u64,
    requests_at_exit: u64,
    /// Grants whose request event never came: freed before it (a memcg charge refused after
    /// the allocation), or given up waiting.
    orphan_grants: u64,
    /// Batch grants applied ahead of a refusal they overlapped (see [`Deferred`]).
    hoisted_batches: u64,
    /// Kernel refusals no allocator would have made (see [`Engine::refused_while_unavailable`]).
    refused_unavailable: u64,
}

/// Where a request with the kernel's answer is decided.
#[derive(Clone, Copy, Debug)]
enum Decided {
    /// At its grant, in the kernel's order; `earlier`: requests of its order other tasks had
    /// decided on its CPU since it began ([`concurrent::RecentGrants::earlier`]).
    AtGrant { earlier: u32 },
    /// At its request event (no grant seen).
    AtRequest,
}

/// A request the models answered at its grant, waiting for its request event.
#[derive(Clone, Copy, Debug)]
struct Granted {
    order: u8,
    /// `StreamCounts::grants` when it was granted (the oldest are given up first).
    seq: u64,
}

/// Grants waiting for their request event, at most (a bound when request events are missed):
/// past it, those older than half of it are given up.
const MAX_GRANTED: usize = 1 << 16;

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
    /// Requests answered at their grant, by the stream key of their first slot, until their
    /// request event comes (see [`Event::Grant`]).
    granted: std::collections::HashMap<u64, Granted, BuildBucketHasher>,
    /// The first requests each model answered otherwise than the kernel.
    divergences: divergence::Divergences,
    /// Per order: refusals decided at a grant (6.12: `nr` 0) whose request event is still to
    /// come.
    refusals: [u32; NR_ORDERS],
    /// Frees of a full-cluster reclaim held back (see [`ReclaimHold`]).
    reclaim: Option<ReclaimHold>,
    /// A refusal grant whose answer waits for concurrent batches (see [`Deferred`]).
    deferred: Option<Deferred>,
    /// Recent frees other CPUs made while an allocation was under way (see [`concurrent`]).
    concurrent: concurrent::ConcurrentFrees,
    /// The last requests decided per CPU (see [`concurrent::RecentGrants`]).
    recent: concurrent::RecentGrants,
    /// Those the grant being decided could not have seen: hidden from the model of the
    /// recorded kernel for that decision.
    hidden: Vec<Free>,
    /// Frees a 6.12 refill could not have seen outside the clusters it took from: hidden only
    /// where they emptied their cluster ([`AllocatorModel::hide_free_if_emptied`]).
    hidden_elsewhere: Vec<Free>,
}

/// The frees a decision could not have seen (hidden from the model of the recorded kernel for
/// it), and the kernel's cluster lists they come back on ([`concurrent`]).
#[derive(Clone, Copy)]
struct Unseen<'a> {
    hidden: &'a [Free],
    real: &'a RealOccupancy,
}

/// A refusal (6.12 grant with `nr` 0) held back until the next event that could change the
/// allocator's state. 6.12's batch refill drops `si->lock` inside its scan to reclaim swap cache
/// (`swap_reclaim_full_clusters`, `cluster_reclaim_range`) once swap is half full, so slots a
/// batch took *before* another CPU's refusal can be granted after it: the models would answer
/// the refusal with slots the kernel had already given away. A batch grant that arrives meanwhile
/// from another CPU, whose request started before the refusal, is applied first. Only
/// allocations are moved ahead, never frees, so a model can only find less room than the kernel
/// had, and only the room that batch took.
#[derive(Clone, Debug)]
struct Deferred {
    cpus: Cpus,
    order: u8,
    ts_ns: Ts,
    /// The grant's position in the stream.
    event: u64,
    /// Events passed while held.
    held: u32,
    /// Frees the refusal could not have seen (see [`concurrent`]).
    hidden: Vec<Free>,
}

/// The frees of a reclaim of full clusters (7.x: `swap_reclaim_full_clusters`, which starts by
/// isolating a full cluster), held back until it is clear whose they are. A 7.x allocation that
/// found nothing on the free and nonfull lists reclaims swap-cache slots of full clusters and
/// then scans only one frag cluster: the room it made is not used by that request, and the
/// request's grant (or refusal) comes after the frees in the stream. When the next grant on the
/// reclaim's CPU started (`start_ns`) before the frees, they were made inside that allocation,
/// under its local lock: a refusal is decided first, then the frees are applied (a success
/// may have used them, from the one frag cluster the allocator scans after the reclaim: they
/// are applied first). Other CPUs' grants that do not take the reclaimed slots pass while the
/// frees are held; anything else that decides (a device change, a grant that takes them, this
/// CPU's next request) applies them first, as the stream has them.
struct ReclaimHold {
    cpu: u32,
    /// Timestamp of the first held free.
    first_ts: Ts,
    frees: Vec<Free>,
    held: u32,
}

/// Most events a reclaim's frees are held back for.
const MAX_RECLAIM_EVENTS: u32 = MAX_DEFERRED_EVENTS * 4;

/// Most events a refusal is held back for.
const MAX_DEFERRED_EVENTS: u32 = 256;

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
            .map(|mut model| {
                if let Some(n) = config.online_cpus {
                    model.set_online_cpus(n);
                }
                model
            })
            .map(|model| Shadow {
                writeouts: model.wants_writeouts(),
                virtual_slots: model.virtual_slots(),
                follows: config.kernel_model == Some(model.name()),
                corrections: 0,
                interleaved_reads: 0,
                model,
                map: StreamMap::new(),
                counters: OrderCounters::default(),
                unbacked_slots: 0,
                compared: 0,
                same_offset: 0,
                unmatched_free_slots: 0,
                dropped_slots: 0,
            })
            .collect();
        let writeouts_wanted = shadows.iter().any(|s| s.writeouts);
        let nr_models = shadows.len();
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
            granted: std::collections::HashMap::default(),
            divergences: divergence::Divergences::new(config.divergences, nr_models),
            refusals: [0; NR_ORDERS],
            reclaim: None,
            deferred: None,
            concurrent: concurrent::ConcurrentFrees::default(),
            recent: concurrent::RecentGrants::default(),
            hidden: Vec::new(),
            hidden_elsewhere: Vec::new(),
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
    pub fn slot_map(&self, i: usize) -> Option<&StreamMap> {
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
        if let Some(d) = self.deferred.as_mut() {
            d.held += 1;
            let keep = d.held < MAX_DEFERRED_EVENTS
                && match ev {
                    // The stream's own bookkeeping, and request events (decided at their grant,
                    // or order-0 hand-outs from a slot cache): no cluster changes hands.
                    Event::Writeout(_)
                    | Event::Split(_)
                    | Event::SwapIn(_)
                    | Event::Counters(_)
                    | Event::Devices(_)
                    | Event::Lost(_)
                    | Event::Marker(_)
                    | Event::Alloc(_) => true,
                    Event::Grant(g) => {
                        let hoist = !g.batch.is_empty()
                            && g.cpu != d.cpus.decided
                            && g.start_ns != 0
                            && g.start_ns < d.ts_ns;
                        if hoist {
                            self.stream.hoisted_batches += 1;
                        }
                        hoist
                    }
                    _ => false,
                };
            if !keep {
                self.end_deferral();
            }
        }
        self.stream.events += 1;
        self.last_ts = ev.ts();
        if self.config.interval_ns > 0 && self.last_ts > 0 {
            self.advance_intervals(self.last_ts);
        }
        self.hidden.clear();
        self.note_concurrent(ev);
        if self.reclaim.is_some() && self.hold_for_reclaim(ev) {
            return;
        }
        match ev {
            Event::SwapOn(recorded) => {
                let resized = self.config.device_size.map(|d| d.apply(recorded));
                let on = resized.as_ref().unwrap_or(recorded);
                // The bound holds for the real occupancy (recorded size) and the models (resized).
                let slots = on.max.max(recorded.max);
                let too_large = self
                    .config
                    .device_size
                    .is_some_and(|d| d.too_large(recorded.max));
                let others: u64 = self
                    .devices
                    .iter()
                    .filter(|(t, _)| *t != on.swap_type)
                    .map(|(_, m)| m)
                    .sum();
                if too_large || slots > MAX_DEVICE_SLOTS || others + slots > MAX_DEVICE_SLOTS {
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
            Event::Alloc(a) => self.alloc(a),
            Event::Grant(g) => self.grant(g),
            Event::Free(f) => self.apply_free(f),
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
                if c.list == crate::event::cluster_list::ISOLATED
                    && u64::from(c.count) >= alloc::CLUSTER_SLOTS
                    && self.reclaim.is_none()
                {
                    // A full cluster taken off its list: a reclaim begins on this CPU.
                    self.reclaim = Some(ReclaimHold {
                        cpu: c.cpu,
                        first_ts: 0,
                        frees: Vec::new(),
                        held: 0,
                    });
                }
                self.real.cluster(c);
                if c.list == crate::event::cluster_list::ISOLATED {
                    for s in &mut self.shadows {
                        s.model.kernel_isolated(c.cpu, c.swap_type, c.cluster);
                    }
                }
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

    /// The stream now holds 2^`order` more slots.
    fn hold(&mut self, order: u8) {
        self.live += 1u64 << order;
        if self.live > self.peak_live {
            self.peak_live = self.live;
            self.peak_pending = true;
        }
    }

    /// The kernel's slots `offset .. + 2^order` on `swap_type` are taken: the real occupancy
    /// takes them and the stream holds them. Returns their stream key.
    fn place_real(&mut self, swap_type: u8, offset: u64, order: u8) -> Option<u64> {
        self.real_known = true;
        let n = 1u64 << order;
        let before = self.real.double_allocs;
        self.real.alloc(swap_type, offset, n);
        let Some(key) = stream_key(swap_type, offset) else {
            self.stream.anomalies += 1;
            return None;
        };
        if self.real.double_allocs != before {
            // A free was missed: forget whatever the models hold for these slots.
            self.stream.anomalies += 1;
            self.unmap(key, n);
        }
        self.hold(order);
        Some(key)
    }

    /// Slots the allocator handed out, in the order it decided: the request they serve is
    /// answered by the models now, on the CPU that decided it, and its request event (which
    /// comes later, from the hook's exit) only confirms it.
    fn grant(&mut self, g: &crate::event::Grant) {
        self.stream.grants += 1;
        if g.order > MAX_ORDER {
            self.stream.anomalies += 1;
            return;
        }
        // Requests of other tasks decided on this CPU since this one began.
        let earlier = if g.order > 0 {
            self.recent.earlier(g.cpu, g.order, g.pid, g.start_ns)
        } else {
            0
        };
        self.recent.push(g.cpu, g.ts_ns, g.pid, g.order);
        if g.nr == 0 {
            // A refusal, decided here; the request event confirms it later.
            if let Some(p) = self.refusals.get_mut(usize::from(g.order)) {
                *p = p.saturating_add(1).min(MAX_GRANTED as u32);
            }
            self.real_known = true;
            self.end_deferral();
            self.deferred = Some(Deferred {
                cpus: Cpus {
                    entry: g.req_cpu,
                    decided: g.cpu,
                },
                order: g.order,
                ts_ns: g.ts_ns,
                event: self.stream.events,
                held: 0,
                hidden: std::mem::take(&mut self.hidden),
            });
            return;
        }
        let Some(key) = self.place_real(g.swap_type, g.offset, g.order) else {
            return;
        };
        if self.granted.len() >= MAX_GRANTED {
            let cut = self.stream.grants.saturating_sub(MAX_GRANTED as u64 / 2);
            let before = self.granted.len();
            self.granted.retain(|_, w| w.seq >= cut);
            self.stream.orphan_grants += (before - self.granted.len()) as u64;
        }
        let seq = self.stream.grants;
        if let Some(old) = self.granted.insert(
            key,
            Granted {
                order: g.order,
                seq,
            },
        ) {
            // The same slots granted again before their request event: that one never came.
            let _ = old;
            self.stream.orphan_grants += 1;
        }
        let cpus = Cpus {
            entry: g.req_cpu,
            decided: g.cpu,
        };
        if !g.batch.is_empty() {
            // The model refills as the kernel did, without the frees the kernel's scan could
            // not have seen ([`concurrent::ConcurrentFrees::unseen_by_batch`]); the request the
            // batch serves first is a cache hand-out, with nothing hidden.
            let real = &self.real;
            for s in self.shadows.iter_mut().filter(|s| s.follows) {
                for f in &self.hidden {
                    s.model.hide_free(f.swap_type, f.offset, f.nr);
                }
                for f in &self.hidden_elsewhere {
                    s.model.hide_free_if_emptied(f.swap_type, f.offset, f.nr);
                }
                if s.model.kernel_batch(cpus, g.swap_type, &g.batch) {
                    s.corrections += 1;
                }
                if !self.hidden.is_empty() || !self.hidden_elsewhere.is_empty() {
                    s.model.unhide(&|ty, c| real.kernel_list(ty, c));
                }
            }
            self.hidden.clear();
            self.hidden_elsewhere.clear();
        }
        self.shadow_alloc(
            cpus,
            g.order,
            key,
            Some((g.swap_type, g.offset)),
            Decided::AtGrant { earlier },
        );
    }

    fn alloc(&mut self, a: &Alloc) {
        self.stream.allocs += 1;
        if a.order > MAX_ORDER {
            self.stream.anomalies += 1;
            return;
        }
        let o = usize::from(a.order);
        let (key, kernel_slot) = match a.result {
            AllocResult::Failure => {
                self.real_known = true;
                self.real_counters.request(o, false);
                if let Some(p) = self.refusals.get_mut(o).filter(|p| **p > 0) {
                    // Decided at its refusal grant.
                    *p -= 1;
                    self.stream.requests_at_grant += 1;
                    return;
                }
                self.shadow_failure(Cpus::on(a.cpu), a.order);
                return;
            }
            AllocResult::Success { swap_type, offset } => {
                self.real_known = true;
                self.real_counters.request(o, true);
                if let Some(k) = stream_key(swap_type, offset)
                    && let Some(g) = self.granted.remove(&k)
                {
                    // Answered at its grant.
                    if g.order != a.order {
                        self.stream.anomalies += 1;
                    }
                    self.stream.requests_at_grant += 1;
                    return;
                }
                self.stream.requests_at_exit += 1;
                let Some(key) = self.place_real(swap_type, offset, a.order) else {
                    return;
                };
                (key, Some((swap_type, offset)))
            }
            AllocResult::Unknown => {
                if a.id >= virtual_slot::ID_LIMIT {
                    self.stream.anomalies += 1;
                    return;
                }
                self.hold(a.order);
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
                let n = 1u64 << a.order;
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
                (key, None)
            }
        };
        self.shadow_alloc(
            Cpus::on(a.cpu),
            a.order,
            key,
            kernel_slot,
            Decided::AtRequest,
        );
    }

    /// Every model serves one folio of 2^`order` slots for stream slots `key ..` on `cpu`
    /// (splitting it when refused, as the kernel does), compared with the kernel's slot when
    /// there is one (decided at its grant, or at the request event).
    fn shadow_alloc(
        &mut self,
        cpus: Cpus,
        order: u8,
        key: u64,
        kernel_slot: Option<(u8, u64)>,
        decided: Decided,
    ) {
        let (at_grant, earlier) = match decided {
            Decided::AtGrant { earlier } => (true, earlier),
            Decided::AtRequest => (false, 0),
        };
        let Engine {
            shadows,
            scratch,
            divergences,
            real,
            stream,
            last_ts,
            hidden,
            ..
        } = self;
        let decision = kernel_slot
            .filter(|_| divergences.enabled())
            .map(|(swap_type, offset)| divergence::Decision {
                event: stream.events,
                ts_ns: *last_ts,
                cpu: cpus.decided,
                order,
                at_grant,
                kernel: Some(divergence::SlotRef { swap_type, offset }),
            });
        for (i, s) in shadows.iter_mut().enumerate() {
            if s.follows
                && let Some(kernel) = kernel_slot
            {
                if earlier > 0 && s.model.interleaved(cpus, order, earlier, kernel) {
                    s.interleaved_reads += 1;
                }
                let ours = Self::followed_answer(
                    s,
                    cpus,
                    order,
                    key,
                    Some(kernel),
                    scratch,
                    Unseen { hidden, real },
                );
                if let Some(d) = &decision {
                    divergences.answered(i, s.model.as_ref(), real, d, slot_ref(ours));
                }
                continue;
            }
            let mut answer: Option<divergence::SlotRef> = None;
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
            alloc::serve_folio(model.as_mut(), cpus, order, scratch, |r| {
                counters.request(usize::from(r.order), r.ok());
                match r.extents {
                    Some(ext) => {
                        if r.order == order
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
                            answer = ext.first().map(|e| divergence::SlotRef {
                                swap_type: e.swap_type,
                                offset: e.offset,
                            });
                        }
                        let n = 1u64 << r.order;
                        *unbacked_slots += n.saturating_sub(map.insert(key + r.page, ext));
                    }
                    // Even an order-0 slot was refused: that page has no model slot.
                    None if r.order == 0 => *unbacked_slots += 1,
                    None => {}
                }
            });
            if let Some(d) = &decision
                && !s.virtual_slots
            {
                divergences.answered(i, s.model.as_ref(), real, d, answer);
            }
        }
        if let Some(d) = &decision {
            divergences.decided(d);
        }
    }

    /// Model `i`'s divergences (see [`EngineConfig::divergences`]).
    pub fn divergences(&self, i: usize) -> &[Divergence] {
        self.divergences.of(i)
    }

    /// The model of the kernel answers a request the kernel answered with `kernel` (`None`:
    /// refused): its answer is counted and compared; when it differs, the model takes the
    /// kernel's answer as its own, and the stream slots `key ..` (when the kernel served them)
    /// map to the kernel's slots. Returns the model's own first slot.
    fn followed_answer(
        s: &mut Shadow,
        cpus: Cpus,
        order: u8,
        key: u64,
        kernel: Option<(u8, u64)>,
        scratch: &mut Vec<Extent>,
        unseen: Unseen<'_>,
    ) -> Option<(u8, u64)> {
        let Unseen { hidden, real } = unseen;
        scratch.clear();
        for f in hidden {
            s.model.hide_free(f.swap_type, f.offset, f.nr);
        }
        let ok = s.model.alloc_from(cpus, order, scratch);
        if !hidden.is_empty() {
            s.model.unhide(&|ty, c| real.kernel_list(ty, c));
        }
        s.counters.request(usize::from(order), ok);
        let ours = scratch
            .first()
            .filter(|_| ok)
            .map(|e| (e.swap_type, e.offset));
        if let (Some(o), Some(k)) = (ours, kernel) {
            s.compared += 1;
            if o == k {
                s.same_offset += 1;
            }
        }
        let n = 1u64 << order;
        if ours != kernel && s.model.follow_kernel(cpus, order, ours, kernel) {
            s.corrections += 1;
            if let Some((ty, off)) = kernel {
                let ext = [Extent {
                    swap_type: ty,
                    offset: off,
                    nr: 1u32 << order,
                }];
                s.unbacked_slots += n.saturating_sub(s.map.insert(key, &ext));
            }
        } else if kernel.is_some() {
            if ok {
                s.unbacked_slots += n.saturating_sub(s.map.insert(key, scratch));
            } else {
                s.unbacked_slots += n;
            }
        } else if ok {
            // The kernel refused: give the model's slots back.
            for e in scratch.iter() {
                s.model.free(e.swap_type, e.offset, e.nr);
            }
        }
        ours
    }

    /// The kernel failed this order: count each model's answer and give a success back.
    fn apply_free(&mut self, f: &Free) {
        self.note_peak();
        self.live = self.live.saturating_sub(u64::from(f.nr));
        self.free(f);
    }

    /// With a reclaim held ([`ReclaimHold`]): keeps `ev` back when it is one of the reclaim's
    /// frees (returns true), or lets it through — after applying the held frees, unless it is
    /// the grant of the allocation that made them, which is decided first.
    fn hold_for_reclaim(&mut self, ev: &Event) -> bool {
        let Some(h) = self.reclaim.as_mut() else {
            return false;
        };
        h.held += 1;
        match ev {
            Event::Free(f) if f.cpu == h.cpu && h.held < MAX_RECLAIM_EVENTS => {
                if h.frees.is_empty() {
                    h.first_ts = f.ts_ns;
                }
                h.frees.push(*f);
                true
            }
            // The reclaim's own list moves, and what does not decide.
            Event::Cluster(c) if c.cpu == h.cpu => false,
            Event::Writeout(_)
            | Event::Split(_)
            | Event::SwapIn(_)
            | Event::Counters(_)
            | Event::Lost(_)
            | Event::Marker(_)
            | Event::Free(_)
                if h.held < MAX_RECLAIM_EVENTS =>
            {
                false
            }
            // Request events confirm what their grants decided.
            Event::Alloc(_) if self.stream.grants > 0 && h.held < MAX_RECLAIM_EVENTS => false,
            Event::Grant(g)
                if g.cpu == h.cpu
                    && g.nr == 0
                    && !h.frees.is_empty()
                    && g.start_ns != 0
                    && g.start_ns < h.first_ts =>
            {
                // The allocation that reclaimed and still refused: decided before its own frees
                // (a success may have used them: it falls through and they are applied first).
                self.grant(g);
                self.end_deferral();
                self.end_reclaim();
                true
            }
            // Another CPU's decision that does not take the reclaimed slots.
            Event::Grant(g)
                if g.cpu != h.cpu
                    && h.held < MAX_RECLAIM_EVENTS
                    && !h.frees.iter().any(|f| {
                        let n = 1u64 << g.order.min(MAX_ORDER);
                        f.swap_type == g.swap_type
                            && g.offset < f.offset + u64::from(f.nr)
                            && f.offset < g.offset + n
                    }) =>
            {
                false
            }
            _ => {
                self.end_reclaim();
                false
            }
        }
    }

    /// Notes what [`concurrent`] needs of an event, and which recent frees a grant's decision
    /// could not have seen (into `self.hidden`, for the model of the recorded kernel).
    fn note_concurrent(&mut self, ev: &Event) {
        match ev {
            Event::Cluster(c) => self.concurrent.cluster(c),
            Event::Free(f) => self.concurrent.free(f),
            Event::Grant(g) if !g.batch.is_empty() => {
                self.concurrent.unseen_by_batch(
                    [g.cpu, g.req_cpu],
                    g.start_ns,
                    g.swap_type,
                    &g.batch,
                    &mut self.hidden,
                    &mut self.hidden_elsewhere,
                );
                self.concurrent
                    .granted(g.cpu, g.order, Some((g.swap_type, g.offset)));
            }
            Event::Grant(g) => {
                let n = 1u64 << g.order.min(MAX_ORDER);
                let d = concurrent::Decision {
                    cpu: g.cpu,
                    order: g.order,
                    start: g.start_ns,
                    slots: (g.nr > 0).then_some((g.swap_type, g.offset, n)),
                };
                self.concurrent.unseen(d, &mut self.hidden);
                if g.nr == 0 {
                    // 6.12: the frees that completed a free block of the refused order (7.x
                    // streams, with cluster events, have theirs from `unseen`).
                    let real = &self.real;
                    self.concurrent.unseen_by_refusal(
                        d,
                        |f| {
                            let lo = f.offset / n * n;
                            let hi = f.offset.saturating_add(u64::from(f.nr.max(1)) - 1) / n * n;
                            real.is_free(f.swap_type, lo, hi + n - lo)
                        },
                        &mut self.hidden,
                    );
                }
                self.concurrent.granted(
                    g.cpu,
                    g.order,
                    (g.nr > 0).then_some((g.swap_type, g.offset)),
                );
            }
            Event::Alloc(a) => self.concurrent.request_done(a.cpu),
            Event::SwapOn(_) | Event::SwapOff(_) => {
                self.concurrent.forget();
                self.recent.forget();
            }
            _ => {}
        }
    }

    /// Applies the frees of a held reclaim, if any.
    fn end_reclaim(&mut self) {
        if let Some(h) = self.reclaim.take() {
            if !h.frees.is_empty() {
                self.end_deferral();
            }
            for f in &h.frees {
                self.apply_free(f);
            }
        }
    }

    /// At the end of a stream: answers the refusal held back and applies held frees.
    pub fn end_holds(&mut self) {
        self.end_deferral();
        self.end_reclaim();
    }

    /// Answers the refusal held back (see [`Deferred`]), if any. Called before any event that
    /// could change the allocator's state, and when the stream ends.
    pub fn end_deferral(&mut self) {
        if let Some(d) = self.deferred.take() {
            let now = std::mem::replace(&mut self.hidden, d.hidden);
            self.shadow_failure_at(d.cpus, d.order, d.event, d.ts_ns, true);
            self.hidden = now;
        }
    }

    fn shadow_failure(&mut self, cpus: Cpus, order: u8) {
        self.shadow_failure_at(cpus, order, self.stream.events, self.last_ts, false);
    }

    /// Whether a refusal the kernel just made is one no allocator would have made: more clusters
    /// were empty than the CPUs could have held between them (each CPU isolates at most one at a
    /// time, and a per-CPU cluster may be empty), so a cluster allocator (6.10+) with the device
    /// taking allocations would have served any order. What refused it was outside the
    /// allocator: a swapoff under way (`SWP_WRITEOK` cleared: the kernel's scan gives up on every
    /// cluster, then `try_to_unuse` reclaims under memory pressure and every allocation fails
    /// until the device is gone), or a memcg swap charge. Every model refuses it too: no
    /// allocator could have placed it. Counted apart (`refused_unavailable`, a line in the
    /// report's limits), never a divergence.
    fn refused_while_unavailable(&self) -> bool {
        let cpus = u64::from(self.config.online_cpus.unwrap_or(256));
        self.real_known && self.real.empty_clusters() > 2 * cpus + 1
    }

    /// Every model answers a request the kernel refused (event `event` at `ts_ns`; `at_grant`:
    /// decided at its refusal grant rather than its request event).
    fn shadow_failure_at(&mut self, cpus: Cpus, order: u8, event: u64, ts_ns: Ts, at_grant: bool) {
        if self.refused_while_unavailable() {
            self.stream.refused_unavailable += 1;
            for s in &mut self.shadows {
                s.counters.request(usize::from(order), false);
            }
            return;
        }
        let Engine {
            shadows,
            scratch,
            divergences,
            real,
            hidden,
            ..
        } = self;
        let decision = divergences.enabled().then_some(divergence::Decision {
            event,
            ts_ns,
            cpu: cpus.decided,
            order,
            at_grant,
            kernel: None,
        });
        for (i, s) in shadows.iter_mut().enumerate() {
            if s.follows {
                let ours = Self::followed_answer(
                    s,
                    cpus,
                    order,
                    0,
                    None,
                    scratch,
                    Unseen { hidden, real },
                );
                if let Some(d) = &decision {
                    divergences.answered(i, s.model.as_ref(), real, d, slot_ref(ours));
                }
                continue;
            }
            scratch.clear();
            let ok = s.model.alloc_from(cpus, order, scratch);
            s.counters.request(usize::from(order), ok);
            if let Some(d) = &decision
                && !s.virtual_slots
            {
                let ours = scratch.first().filter(|_| ok);
                let ours = slot_ref(ours.map(|e| (e.swap_type, e.offset)));
                divergences.answered(i, s.model.as_ref(), real, d, ours);
            }
            if ok {
                for e in scratch.iter() {
                    s.model.free(e.swap_type, e.offset, e.nr);
                }
            }
        }
        if let Some(d) = &decision {
            divergences.decided(d);
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
        if !self.granted.is_empty()
            && let Some(k) = stream_key(f.swap_type, f.offset)
            && self.granted.remove(&k).is_some()
        {
            // Granted, then freed before the request returned (a memcg charge refused).
            self.stream.orphan_grants += 1;
        }
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
        if !self.writeouts_wanted || !w.has_slot() {
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
        let lo = u64::from(ty) << streammap::STREAM_OFFSET_BITS;
        let hi = lo + (1 << streammap::STREAM_OFFSET_BITS);
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
