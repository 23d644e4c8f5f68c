//! The analysis: the report builder (kernel counters, the engine and its models) plus what a
//! viewer needs over time — per-interval series, device maps, latencies, the newest events — in
//! one sink. [`Analysis::snapshot`] returns an immutable [`Snapshot`] at any moment;
//! [`Analysis::report`] the `report` document at the end.
//!
//! [`Threaded`] runs an analysis on its own thread and publishes a snapshot a few times a second
//! into a [`Shared`] slot that viewers read without ever blocking the event path.

use std::{
    collections::{BTreeMap, VecDeque},
    sync::{
        Arc, Mutex,
        atomic::{AtomicBool, AtomicU64, Ordering},
        mpsc,
    },
    thread::JoinHandle,
    time::{Duration, Instant},
};

use hdrhistogram::Histogram;

use super::{
    Sink, SinkError,
    snapshot::{
        DeviceMap, DeviceView, HeatCell, IntervalRow, KindCounts, LatencyRow, ModelsAt, Orders,
        PeakView, Snapshot, StreamInfo, TailEvent,
    },
};
use crate::{
    alloc::{AllocatorModel, CLUSTER_SLOTS, ClusterCell, NR_ORDERS},
    engine::OrderCounters,
    event::{AllocResult, CounterBase, CounterSample, Event, Ts},
    models,
    record::RecordingHeader,
    report::{Report, ReportBuilder},
    source::Summary,
};

/// Settings of an analysis.
#[derive(Clone, Debug)]
pub struct AnalysisConfig {
    /// Length of one interval of the time series, in ns of stream time.
    pub interval_ns: u64,
    /// Intervals kept (older ones are dropped from the series; totals keep counting).
    pub max_intervals: usize,
    /// Newest events kept per kind for the Events view.
    pub tail_per_kind: usize,
    /// What the viewer shows (`live`, `replay FILE`, ...).
    pub mode: String,
    /// Keep what only viewers need (device heat, latencies, the newest events); `report`
    /// turns it off.
    pub views: bool,
    /// What-if: the models' device size (`report --swap-size`, `--sweep`).
    pub device_size: Option<crate::engine::DeviceSize>,
    /// Divergences kept per model (`report --divergence`; see `engine::EngineConfig`).
    pub divergences: usize,
    /// The model of the recorded kernel runs free too: it does not take the kernel's answer
    /// after a divergence (`report --free-running`; see `engine::EngineConfig::kernel_model`).
    pub free_running: bool,
    /// Threads the models may run on when there are no views (`engine::Parallel`: the models
    /// split into groups, the same report); 1 runs them on the pipeline's thread. The caller
    /// says how many (the cores it may use).
    pub engine_threads: usize,
}

impl AnalysisConfig {
    /// What `serve` keeps: totals and the newest state, a few intervals of `interval_ns`, the
    /// per-event state the snapshot is made of, one newest event per kind.
    pub fn serve(interval_ns: u64) -> Self {
        AnalysisConfig {
            interval_ns,
            max_intervals: 16,
            tail_per_kind: 1,
            mode: "serve".into(),
            // views: false is the report's batch-only path, which keeps no per-event state.
            views: true,
            device_size: None,
            divergences: 0,
            free_running: false,
            engine_threads: 1,
        }
    }
}

/// What `report` (and `simulate`, `--sweep`) may ask of an analysis beyond the defaults.
#[derive(Clone, Copy, Debug, Default)]
pub struct ReportOptions {
    /// What-if: the models' device size.
    pub device_size: Option<crate::engine::DeviceSize>,
    /// Divergences kept per model.
    pub divergences: usize,
    /// The model of the recorded kernel runs free.
    pub free_running: bool,
    /// Threads for the models (see [`AnalysisConfig::engine_threads`]); 0 counts as 1.
    pub engine_threads: usize,
}

impl Default for AnalysisConfig {
    fn default() -> Self {
        AnalysisConfig {
            interval_ns: 1_000_000_000,
            max_intervals: 600,
            tail_per_kind: 200,
            mode: String::new(),
            views: true,
            device_size: None,
            divergences: 0,
            free_running: false,
            engine_threads: 1,
        }
    }
}

/// The interval length that suits a stream, in ms: 1000 for recordings of a kernel, 10 for a
/// synthetic stream (no probe plan), whose events are 1 µs apart.
pub fn default_interval_ms(header: &RecordingHeader) -> u64 {
    if header.probe_plan.is_empty() && !header.source.starts_with("live") {
        10
    } else {
        1000
    }
}

/// Kinds of the Events view's per-kind tails.
const TAIL_KINDS: usize = 9;

/// The kernel's swap events and markers (the first kinds of [`crate::event::KINDS`]) each have
/// a tail; the rest share the last.
fn tail_kind(ev: &Event) -> usize {
    ev.kind_index().min(TAIL_KINDS - 1)
}

/// Alloc → write-out pairs remembered at most (a bound on memory when write-outs are missing).
const MAX_PENDING_WRITEOUTS: usize = 1 << 20;
/// Markers kept for the viewer.
const MAX_MARKERS: usize = 1000;
/// Marker labels kept per interval row (the rest are counted in `kinds.markers` only).
const MAX_INTERVAL_MARKERS: usize = 16;

#[derive(Default)]
struct Latency {
    /// Per order: the kernel's answer time for requests (full tier).
    request: Vec<Option<Histogram<u64>>>,
    interarrival: Vec<Option<Histogram<u64>>>,
    last_writeout: [Option<Ts>; NR_ORDERS],
    to_writeout: Option<Histogram<u64>>,
    /// Successful requests not yet written out: (type, offset) → ts.
    pending: std::collections::HashMap<(u8, u64), Ts>,
}

fn record(h: &mut Option<Histogram<u64>>, v: u64) {
    if h.is_none() {
        *h = Histogram::new(3).ok();
    }
    if let Some(h) = h.as_mut() {
        let _ = h.record(v.max(1));
    }
}

fn latency_row(what: &str, order: Option<u8>, h: &Histogram<u64>) -> LatencyRow {
    let mut buckets = Vec::new();
    let mut upper = 1u64 << 10;
    let max = h.max();
    let mut lower = 0u64;
    while lower <= max && buckets.len() < 40 {
        let n = h.count_between(lower, upper.saturating_sub(1));
        buckets.push((upper, n));
        lower = upper;
        upper = upper.saturating_mul(2);
    }
    // Drop empty leading buckets.
    let first = buckets.iter().position(|b| b.1 > 0).unwrap_or(0);
    LatencyRow {
        what: what.to_string(),
        order,
        count: h.len(),
        p50_ns: h.value_at_quantile(0.5),
        p90_ns: h.value_at_quantile(0.9),
        p99_ns: h.value_at_quantile(0.99),
        max_ns: max,
        buckets: buckets.split_off(first),
    }
}

/// See the module documentation.
pub struct Analysis {
    cfg: AnalysisConfig,
    model_names: Vec<String>,
    info: Arc<StreamInfo>,
    builder: ReportBuilder,
    events: u64,
    kinds: KindCounts,
    first_ts: Option<Ts>,
    last_ts: Ts,
    writeouts: Orders,
    swapins: Orders,
    requests: Orders,
    failures: Orders,
    /// Counter values of the first sample.
    first_sample: Option<CounterBase>,
    last_sample: Option<Arc<CounterSample>>,
    swpout: Orders,
    swpout_fallback: Orders,
    pswpout: u64,
    rows: VecDeque<IntervalRow>,
    cur: IntervalRow,
    cur_end: Ts,
    prev_model: Vec<OrderCounters>,
    devices: BTreeMap<u8, DeviceView>,
    /// Each device's maps at its peak occupancy, with the slots in use then.
    peaks: BTreeMap<u8, (u64, DeviceMap)>,
    /// The models' reports when the slots in use over all devices were highest: slots, stream
    /// time, models, real.
    peak_models: Option<Arc<ModelsAt>>,
    /// The slots in use at `peak_models`.
    peak_models_used: u64,
    heat: BTreeMap<u8, Vec<HeatCell>>,
    lost: u64,
    missed: BTreeMap<String, u64>,
    lat: Latency,
    tails: [VecDeque<TailEvent>; TAIL_KINDS],
    markers: VecDeque<(Ts, String)>,
    published: u64,
    skipped: u64,
    ended: bool,
}

impl Analysis {
    /// The analysis `report`, `simulate` and what-if replays run: no viewer state, the models'
    /// devices resized to `device_size` when given.
    pub fn for_report(header: &RecordingHeader, model_names: &[String], o: ReportOptions) -> Self {
        Self::new(
            header,
            model_names,
            AnalysisConfig {
                views: false,
                device_size: o.device_size,
                divergences: o.divergences,
                free_running: o.free_running,
                engine_threads: o.engine_threads,
                ..AnalysisConfig::default()
            },
        )
    }

    /// An analysis of the stream `header` describes, replaying it through the named models
    /// (`models::by_name`; unknown names are left out).
    pub fn new(header: &RecordingHeader, model_names: &[String], cfg: AnalysisConfig) -> Self {
        let named = || -> Vec<Box<dyn AllocatorModel>> {
            model_names
                .iter()
                .filter_map(|n| models::by_name(n))
                .collect()
        };
        let models = named();
        let info = stream_info(header, &models, &cfg);
        let engine = crate::engine::EngineConfig {
            device_size: cfg.device_size,
            online_cpus: (header.nr_cpus > 0).then_some(header.nr_cpus),
            divergences: cfg.divergences,
            kernel_model: if cfg.free_running {
                None
            } else {
                crate::models::of_kernel(&header.kernel_release)
            },
            ..crate::engine::EngineConfig::default()
        };
        // Without views nothing looks at the engine before the end: the models may run on
        // threads of their own (a thread that cannot be started leaves them on this one).
        let builder = if !cfg.views && cfg.engine_threads > 1 && models.len() > 1 {
            ReportBuilder::with_models_parallel(models, engine, cfg.engine_threads)
                .unwrap_or_else(|_| ReportBuilder::with_models_config(named(), engine))
        } else {
            ReportBuilder::with_models_config(models, engine)
        };
        Analysis {
            builder,
            model_names: model_names.to_vec(),
            info: Arc::new(info),
            cfg,
            events: 0,
            kinds: KindCounts::default(),
            first_ts: None,
            last_ts: 0,
            writeouts: [0; NR_ORDERS],
            swapins: [0; NR_ORDERS],
            requests: [0; NR_ORDERS],
            failures: [0; NR_ORDERS],
            first_sample: None,
            last_sample: None,
            swpout: [0; NR_ORDERS],
            swpout_fallback: [0; NR_ORDERS],
            pswpout: 0,
            rows: VecDeque::new(),
            cur: IntervalRow::default(),
            cur_end: 0,
            prev_model: Vec::new(),
            devices: BTreeMap::new(),
            peaks: BTreeMap::new(),
            peak_models: None,
            peak_models_used: 0,
            heat: BTreeMap::new(),
            lost: 0,
            missed: BTreeMap::new(),
            lat: Latency::default(),
            tails: Default::default(),
            markers: VecDeque::new(),
            published: 0,
            skipped: 0,
            ended: false,
        }
    }

    /// Starts over with a new stream (same models and settings).
    pub fn reset(&mut self, header: &RecordingHeader) {
        let names = std::mem::take(&mut self.model_names);
        *self = Analysis::new(header, &names, self.cfg.clone());
    }

    /// What the stream is.
    pub fn info(&self) -> &Arc<StreamInfo> {
        &self.info
    }

    /// Notes events a lossy feeder dropped (see [`Threaded`]).
    pub fn note_skipped(&mut self, n: u64) {
        self.skipped += n;
    }

    /// Takes the intervals closed so far out of the series, oldest first (`export --intervals`
    /// streams them out as they close; the series keeps only those closed after the call).
    pub fn take_closed_intervals(&mut self) -> std::collections::vec_deque::Drain<'_, IntervalRow> {
        self.rows.drain(..)
    }

    /// Marks the stream as ended (shown by viewers).
    pub fn set_ended(&mut self) {
        self.ended = true;
    }

    /// Feeds one event.
    pub fn push_event(&mut self, ev: &Event) {
        self.events += 1;
        let ts = ev.ts();
        if ts != 0 {
            self.advance(ts);
        }
        if matches!(ev, Event::SwapOff(_)) {
            // The peak might be now: look before the device goes.
            self.note_peaks();
        }
        self.builder.push(ev);
        match ev {
            Event::Writeout(w) => {
                self.kinds.writeouts += 1;
                let o = usize::from(w.order).min(NR_ORDERS - 1);
                self.writeouts[o] += 1;
                self.cur.writeouts[o] += 1;
                if !self.cfg.views {
                    return;
                }
                if let Some(prev) = self.lat.last_writeout[o].replace(w.ts_ns) {
                    if self.lat.interarrival.len() < NR_ORDERS {
                        self.lat.interarrival.resize_with(NR_ORDERS, || None);
                    }
                    if let Some(h) = self.lat.interarrival.get_mut(o) {
                        record(h, w.ts_ns.saturating_sub(prev));
                    }
                }
                if !w.has_slot() {
                    return;
                }
                if let Some(t0) = self.lat.pending.remove(&(w.swap_type, w.offset)) {
                    record(&mut self.lat.to_writeout, w.ts_ns.saturating_sub(t0));
                }
                self.heat_at(w.swap_type, w.offset, w.order);
            }
            Event::Alloc(a) => {
                self.kinds.allocs += 1;
                let o = usize::from(a.order).min(NR_ORDERS - 1);
                self.requests[o] += 1;
                self.cur.requests[o] += 1;
                if let Some(ns) = a.latency_ns.filter(|_| self.cfg.views) {
                    if self.lat.request.len() < NR_ORDERS {
                        self.lat.request.resize_with(NR_ORDERS, || None);
                    }
                    if let Some(h) = self.lat.request.get_mut(o) {
                        record(h, u64::from(ns));
                    }
                }
                match a.result {
                    AllocResult::Failure => {
                        self.failures[o] += 1;
                        self.cur.failures[o] += 1;
                    }
                    AllocResult::Success { swap_type, offset } if self.cfg.views => {
                        if self.lat.pending.len() >= MAX_PENDING_WRITEOUTS {
                            self.lat.pending.clear();
                        }
                        self.lat.pending.insert((swap_type, offset), a.ts_ns);
                    }
                    AllocResult::Success { .. } | AllocResult::Unknown => {}
                }
            }
            Event::Free(f) => {
                self.kinds.frees += 1;
                self.cur.freed_slots += u64::from(f.nr);
            }
            Event::Split(_) => self.kinds.splits += 1,
            Event::Cluster(_) => self.kinds.clusters += 1,
            Event::Grant(_) => self.kinds.grants += 1,
            Event::SwapIn(si) => {
                self.kinds.swapins += 1;
                if let Some(o) = si.order {
                    self.swapins[usize::from(o).min(NR_ORDERS - 1)] += 1;
                }
            }
            Event::Marker(m) => {
                self.kinds.markers += 1;
                let label = m.kept_label();
                if self.cur.markers.len() < MAX_INTERVAL_MARKERS {
                    self.cur.markers.push(label.clone());
                }
                if self.markers.len() >= MAX_MARKERS {
                    self.markers.pop_front();
                }
                self.markers.push_back((m.ts_ns, label));
            }
            Event::Counters(c) => {
                self.kinds.samples += 1;
                self.sample(c);
            }
            Event::Devices(d) => {
                self.kinds.samples += 1;
                for dev in &d.devices {
                    let v = self.devices.entry(dev.index).or_default();
                    v.swap_type = dev.index;
                    v.path.clone_from(&dev.path);
                    v.kind = dev.kind.as_str().to_string();
                    v.used_kb = Some(dev.used_kb);
                    if v.slots == 0 {
                        v.slots = dev.size_kb / 4;
                    }
                }
                self.cur.proc_used_kb = Some(d.devices.iter().map(|d| d.used_kb).sum());
            }
            Event::SwapOn(on) => {
                self.kinds.other += 1;
                let v = self.devices.entry(on.swap_type).or_default();
                v.swap_type = on.swap_type;
                v.slots = on.max.saturating_sub(1 + on.bad.len() as u64);
                v.gone = false;
                self.peaks.remove(&on.swap_type);
                self.heat.remove(&on.swap_type);
            }
            Event::SwapOff(off) => {
                self.kinds.other += 1;
                if let Some(v) = self.devices.get_mut(&off.swap_type) {
                    v.gone = true;
                }
            }
            Event::Lost(l) => {
                self.kinds.other += 1;
                self.lost = self.lost.max(l.ringbuf.saturating_add(l.userspace));
            }
        }
    }

    fn heat_at(&mut self, ty: u8, offset: u64, order: u8) {
        // Only devices the stream described, and only as large as the engine takes any device:
        // a write-out naming another device or slot draws nothing (and costs no memory).
        let Some(dev) = self.devices.get(&ty) else {
            return;
        };
        let slots = (dev.slots + 1).min(crate::engine::MAX_DEVICE_SLOTS);
        let c = (offset / CLUSTER_SLOTS) as usize;
        let cells = self
            .heat
            .entry(ty)
            .or_insert_with(|| vec![HeatCell::default(); slots.div_ceil(CLUSTER_SLOTS) as usize]);
        if let Some(cell) = cells.get_mut(c) {
            cell.recent += 1.0;
            cell.total = cell.total.saturating_add(1);
            cell.last_order = Some(order);
        }
    }

    fn sample(&mut self, c: &CounterSample) {
        self.last_sample = Some(Arc::new(c.clone()));
        let first = self.first_sample.get_or_insert_with(|| CounterBase::of(c));
        let mut since_first = [[0u64; NR_ORDERS]; 2];
        let mut pswpout = 0;
        let mut other_feeds = 0u64;
        for (name, v) in &c.values {
            let v = *v;
            if let Some((order, stat)) = crate::mthp::parse_mthp_counter(name) {
                let o = usize::from(order).min(NR_ORDERS - 1);
                match stat {
                    "swpout" => since_first[0][o] = first.since(name, v),
                    "swpout_fallback" => since_first[1][o] = first.since(name, v),
                    _ => {}
                }
            } else if name == "vmstat/pswpout" {
                pswpout = first.since(name, v);
            } else if let Some(feed) = name
                .strip_prefix("probe/")
                .and_then(|r| r.strip_suffix("/recursion_misses"))
            {
                // Feeds are the probe's (a few dozen); a crafted recording may name any number:
                // past MAX_FEEDS they are summed under one name.
                let n = first.since(name, v);
                if self.missed.len() < MAX_FEEDS || self.missed.contains_key(feed) {
                    self.missed.insert(feed.to_string(), n);
                } else {
                    other_feeds += n;
                }
            }
        }
        if other_feeds > 0 {
            self.missed.insert(OTHER_FEEDS.to_string(), other_feeds);
        }
        let add = |cur: &mut Orders, now: &Orders, before: &Orders| {
            for ((c, n), b) in cur.iter_mut().zip(now).zip(before) {
                *c += n.saturating_sub(*b);
            }
        };
        add(&mut self.cur.swpout, &since_first[0], &self.swpout);
        add(
            &mut self.cur.swpout_fallback,
            &since_first[1],
            &self.swpout_fallback,
        );
        self.cur.pswpout += pswpout.saturating_sub(self.pswpout);
        self.swpout = since_first[0];
        self.swpout_fallback = since_first[1];
        self.pswpout = pswpout;
    }

    /// Closes the intervals that end at or before `ts`.
    fn advance(&mut self, ts: Ts) {
        let step = self.cfg.interval_ns.max(1);
        if self.first_ts.is_none() {
            self.first_ts = Some(ts);
            self.cur.start_ts = ts;
            self.cur_end = ts.saturating_add(step);
        }
        self.last_ts = self.last_ts.max(ts);
        // A long idle stretch: skip to the interval that holds `ts` after one empty interval.
        let limit = step.saturating_mul(self.cfg.max_intervals as u64);
        if ts > self.cur_end.saturating_add(limit) {
            self.close_interval(step);
            let aligned = ts - (ts - self.cur_end) % step;
            self.cur.start_ts = aligned;
            self.cur_end = aligned.saturating_add(step);
        }
        while ts >= self.cur_end {
            let end = self.cur_end;
            self.close_interval(step);
            if self.cur_end <= end {
                // Saturated at the end of stream time (u64): this interval holds the rest.
                break;
            }
        }
        self.cur.len_ns = ts.saturating_sub(self.cur.start_ts);
    }

    fn close_interval(&mut self, step: u64) {
        self.note_peaks();
        let mut row = std::mem::take(&mut self.cur);
        row.len_ns = step;
        self.fill_model_counts(&mut row, true);
        row.real_used = self.real_used();
        row.lost = self.lost;
        for cells in self.heat.values_mut() {
            for c in cells.iter_mut() {
                c.recent *= 0.5;
            }
        }
        let next_start = row.start_ts.saturating_add(step);
        let proc_used = row.proc_used_kb;
        if self.rows.len() >= self.cfg.max_intervals.max(1) {
            self.rows.pop_front();
        }
        self.rows.push_back(row);
        self.cur = IntervalRow {
            start_ts: next_start,
            proc_used_kb: proc_used,
            ..IntervalRow::default()
        };
        self.cur_end = next_start.saturating_add(step);
    }

    /// Per-model request/failure counts since the last closed interval (`commit`: move the
    /// baseline).
    fn fill_model_counts(&mut self, row: &mut IntervalRow, commit: bool) {
        let Some(engine) = self.builder.engine() else {
            return;
        };
        let n = engine.model_names().count();
        if self.prev_model.len() != n {
            self.prev_model = vec![OrderCounters::default(); n];
        }
        row.model_requests.clear();
        row.model_failures.clear();
        for (i, prev) in self.prev_model.iter_mut().enumerate() {
            let now = engine.counters(i).copied().unwrap_or_default();
            let d = now.since(prev);
            row.model_requests.push(d.requests);
            row.model_failures.push(d.failures);
            if commit {
                *prev = now;
            }
        }
    }

    fn real_used(&self) -> Option<u64> {
        let engine = self.builder.engine()?;
        if !engine.real_known() {
            return None;
        }
        let real = engine.real();
        Some(real.devices().filter_map(|t| real.inuse(t)).sum())
    }

    /// Keeps each device's maps when its occupancy is the highest seen.
    fn note_peaks(&mut self) {
        let types: Vec<u8> = self
            .devices
            .values()
            .filter(|d| !d.gone)
            .map(|d| d.swap_type)
            .collect();
        let mut total_used = 0;
        for ty in types {
            let Some(mut m) = self.device_map(ty) else {
                continue;
            };
            let cells = m.real.as_ref().or_else(|| m.models.first().map(|(_, c)| c));
            let Some(cells) = cells else { continue };
            let used: u64 = cells.iter().map(|c| u64::from(c.used)).sum();
            total_used += used;
            if self.peaks.get(&ty).is_none_or(|(p, _)| used > *p) {
                m.peak = Some((self.last_ts, self.events));
                self.peaks.insert(ty, (used, m));
            }
        }
        // The models' reports (fragmentation over every bitmap) are taken only at a new peak of
        // the slots in use over all devices, from the maps just read, not at every interval.
        if total_used > self.peak_models_used
            && let Some(e) = self.builder.engine()
        {
            let (models, real) = e.model_reports();
            self.peak_models_used = total_used;
            self.peak_models = Some(Arc::new(ModelsAt {
                ts: self.last_ts,
                models,
                real,
            }));
        }
    }

    fn device_map(&self, ty: u8) -> Option<DeviceMap> {
        let engine = self.builder.engine()?;
        let mut cells = Vec::new();
        let real = (engine.real_known() && engine.real().cluster_map(ty, &mut cells))
            .then(|| Arc::new(std::mem::take(&mut cells)));
        let mut models = Vec::new();
        for (i, name) in engine.model_names().enumerate() {
            cells.clear();
            if engine
                .model(i)
                .is_some_and(|m| m.cluster_map(ty, &mut cells))
            {
                models.push((name.to_string(), Arc::new(cells.clone())));
            }
        }
        Some(DeviceMap {
            swap_type: ty,
            real,
            models,
            heat: None,
            peak: None,
        })
    }

    /// The view now.
    pub fn snapshot(&mut self) -> Snapshot {
        self.published += 1;
        let mut intervals: Vec<IntervalRow> = self.rows.iter().cloned().collect();
        if self.first_ts.is_some() {
            let mut cur = self.cur.clone();
            self.fill_model_counts(&mut cur, false);
            cur.real_used = self.real_used();
            cur.lost = self.lost;
            intervals.push(cur);
        }
        let (models, real) = self
            .builder
            .engine()
            .map(|e| e.model_reports())
            .unwrap_or_default();
        let models_peak = (!self.devices.is_empty() && self.devices.values().all(|d| d.gone))
            .then(|| self.peak_models.clone())
            .flatten();
        let real_used_by_dev = |ty: u8| {
            self.builder
                .engine()
                .filter(|e| e.real_known())
                .and_then(|e| e.real().inuse(ty))
        };
        let devices: Vec<DeviceView> = self
            .devices
            .values()
            .map(|d| DeviceView {
                real_used: real_used_by_dev(d.swap_type),
                ..d.clone()
            })
            .collect();
        let mut maps = Vec::new();
        let mut devices = devices;
        for d in &mut devices {
            let mut m = match self.peaks.get(&d.swap_type) {
                Some((_, m)) if d.gone => m.clone(),
                _ => self.device_map(d.swap_type).unwrap_or_default(),
            };
            m.swap_type = d.swap_type;
            m.heat = self.heat.get(&d.swap_type).map(|h| Arc::new(h.clone()));
            if m.real.is_none()
                && self.info.tier == "simulated"
                && let Some((name, cells)) = m.models.first()
            {
                // The map counts the header slot as the kernel does; the device's use does not.
                let used = cells.iter().map(|c| u64::from(c.used)).sum::<u64>();
                let reserved = (cells.len() as u64 * CLUSTER_SLOTS).saturating_sub(d.slots);
                d.model_used = Some((name.clone(), used.saturating_sub(reserved)));
            }
            maps.push(m);
        }
        let mut latency = Vec::new();
        for (o, h) in self.lat.request.iter().enumerate() {
            if let Some(h) = h {
                latency.push(latency_row("request (kernel)", Some(o as u8), h));
            }
        }
        for (o, h) in self.lat.interarrival.iter().enumerate() {
            if let Some(h) = h {
                latency.push(latency_row("between write-outs", Some(o as u8), h));
            }
        }
        if let Some(h) = &self.lat.to_writeout {
            latency.push(latency_row("request → write-out", None, h));
        }
        let mut latency_limits = Vec::new();
        if !self.info.full_tier() {
            latency_limits.push(
                "request latency and request → write-out delay need the full probe tier \
                 (fentry/fexit); this stream has write-outs only"
                    .to_string(),
            );
        } else if self.info.tier == "simulated" {
            latency_limits.push(
                "a simulated stream has synthetic timestamps (1 µs per event): its delays \
                 measure nothing"
                    .to_string(),
            );
        }
        if self.info.tier == "full"
            && self.kinds.allocs > 0
            && self.lat.request.iter().all(Option::is_none)
        {
            latency_limits.push(
                "the requests carry no timing: recorded before format 1.1, or the entry of the \
                 allocation hook did not attach (see the probe plan)"
                    .to_string(),
            );
        }
        let first = self.first_ts.unwrap_or(0);
        let peaks = self
            .peaks
            .iter()
            .filter_map(|(ty, (used, m))| {
                let (map, cells) = match (&m.real, m.models.first()) {
                    (Some(r), _) => ("real".to_string(), r),
                    (None, Some((n, c))) => (n.clone(), c),
                    (None, None) => return None,
                };
                let (ts, event) = m.peak.unwrap_or_default();
                Some(PeakView {
                    swap_type: *ty,
                    at_s: ts.saturating_sub(first) as f64 / 1e9,
                    event,
                    used_slots: *used,
                    map,
                    cluster_used: cells.iter().map(|c| c.used).collect(),
                    cluster_lists: cells.iter().map(|c| list_letter(c.list)).collect(),
                })
            })
            .collect();
        let mut tail: Vec<TailEvent> = self.tails.iter().flatten().cloned().collect();
        tail.sort_by_key(|t| t.seq);
        Snapshot {
            info: self.info.clone(),
            seq: self.published,
            events: self.events,
            kinds: self.kinds,
            first_ts: self.first_ts.unwrap_or(0),
            last_ts: self.last_ts,
            writeouts_by_order: self.writeouts,
            swapins_by_order: self.swapins,
            swpout: self.swpout,
            swpout_fallback: self.swpout_fallback,
            pswpout: self.pswpout,
            requests: self.requests,
            failures: self.failures,
            intervals,
            devices,
            maps,
            models,
            real,
            models_peak,
            lost: self.lost,
            missed: self.missed.iter().map(|(k, v)| (k.clone(), *v)).collect(),
            analysis_skipped: self.skipped,
            latency,
            latency_limits,
            tail,
            markers: self.markers.iter().cloned().collect(),
            ended: self.ended,
            peaks,
            counters: self.last_sample.clone(),
        }
    }

    /// The `report` document of everything pushed so far.
    pub fn report(self, summary: &Summary) -> Report {
        self.builder
            .finish(summary.skipped_records, summary.warnings.clone())
    }

    /// Keeps the newest events of a batch for the Events view, a bounded number per kind.
    fn keep_tail(&mut self, batch: &[Event], first_seq: u64) {
        let cap = self.cfg.tail_per_kind;
        if cap == 0 || !self.cfg.views {
            return;
        }
        let mut budget = [cap; TAIL_KINDS];
        let mut left = TAIL_KINDS;
        let mut picked: Vec<(usize, u64, &Event)> = Vec::new();
        for (i, ev) in batch.iter().enumerate().rev() {
            let k = tail_kind(ev);
            if let Some(b) = budget.get_mut(k)
                && *b > 0
            {
                *b -= 1;
                if *b == 0 {
                    left -= 1;
                }
                picked.push((k, first_seq + i as u64, ev));
                if left == 0 {
                    break;
                }
            }
        }
        for (k, seq, ev) in picked.into_iter().rev() {
            if let Some(t) = self.tails.get_mut(k) {
                if t.len() >= cap {
                    t.pop_front();
                }
                t.push_back(TailEvent::of(seq, ev));
            }
        }
    }
}

impl Sink for Analysis {
    fn push_shared(&mut self, batch: &Arc<Vec<Event>>) -> Result<(), SinkError> {
        if self.cfg.views {
            return self.push(batch);
        }
        self.events += batch.len() as u64;
        self.builder.push_shared(batch);
        Ok(())
    }

    fn push(&mut self, batch: &[Event]) -> Result<(), SinkError> {
        if !self.cfg.views {
            // The report alone: the builder takes the batch as it is.
            self.events += batch.len() as u64;
            self.builder.push_batch(batch);
            return Ok(());
        }
        let first_seq = self.events + 1;
        for ev in batch {
            self.push_event(ev);
        }
        self.keep_tail(batch, first_seq);
        Ok(())
    }

    fn restart(&mut self, header: &RecordingHeader) -> Result<(), SinkError> {
        self.reset(header);
        Ok(())
    }

    fn finish(&mut self, _summary: &Summary) -> Result<(), SinkError> {
        self.ended = true;
        Ok(())
    }
}

fn stream_info(
    header: &RecordingHeader,
    models: &[Box<dyn AllocatorModel>],
    cfg: &AnalysisConfig,
) -> StreamInfo {
    // No probe plan: a synthetic stream (simulate, or one a model answered).
    let tier = if header.probe_plan.is_empty() {
        "simulated".to_string()
    } else {
        crate::record::tier(&header.probe_plan).to_string()
    };
    let (attached, missing): (Vec<_>, Vec<_>) =
        header.probe_plan.iter().cloned().partition(|p| p.attached);
    StreamInfo {
        source: header.source.clone(),
        mode: cfg.mode.clone(),
        kernel_release: header.kernel_release.clone(),
        nr_cpus: header.nr_cpus,
        tier,
        attached: attached
            .iter()
            .map(|p| format!("{}/{}", p.kind, p.name))
            .collect(),
        missing,
        models: models.iter().map(|m| m.name().to_string()).collect(),
        interval_ns: cfg.interval_ns,
    }
}

/// The latest snapshot of an analysis running on another thread.
#[derive(Debug, Default)]
pub struct Shared {
    latest: Mutex<Arc<Snapshot>>,
    /// Events dropped by a lossy [`Threaded`] feeder.
    skipped: AtomicU64,
    /// Heap bytes of the batches sent to the analysis thread and not yet analysed.
    heap_in_flight: std::sync::atomic::AtomicUsize,
    /// When the newest snapshot was published.
    published: Mutex<Option<Instant>>,
    /// The stream was stopped: batches still queued are dropped, not analysed (a replay at
    /// full speed queues seconds of work; q, Ctrl-C and SIGTERM waited for it).
    abandon: AtomicBool,
}

impl Shared {
    /// The newest snapshot (cheap: an `Arc` clone).
    pub fn latest(&self) -> Arc<Snapshot> {
        self.latest
            .lock()
            .map(|s| s.clone())
            .unwrap_or_else(|p| p.into_inner().clone())
    }

    /// The user quit a replay (q, Ctrl-C, SIGTERM): batches still queued for the analysis are
    /// dropped, not analysed, so the command ends at once (a replay at full speed queued
    /// seconds of work). A live session (its last counter sample is what its figures are
    /// checked against), a stream that ends by itself, or a headless run whose time is up is
    /// analysed to its end.
    pub fn abandon(&self) {
        self.abandon.store(true, Ordering::Relaxed);
    }

    /// Whether the newest snapshot has the kernel's counters (or the stream ended without
    /// any): what a scrape should wait for.
    pub fn has_counters(&self) -> bool {
        let s = self.latest();
        s.counters.is_some() || s.ended
    }

    /// How long ago the newest snapshot was published (`None` before the first).
    pub fn age(&self) -> Option<Duration> {
        let at = match self.published.lock() {
            Ok(p) => *p,
            Err(p) => *p.into_inner(),
        };
        at.map(|t| t.elapsed())
    }

    fn publish(&self, s: Snapshot) {
        match self.published.lock() {
            Ok(mut p) => *p = Some(Instant::now()),
            Err(p) => *p.into_inner() = Some(Instant::now()),
        }
        let s = Arc::new(s);
        match self.latest.lock() {
            Ok(mut l) => *l = s,
            Err(p) => *p.into_inner() = s,
        }
    }
}

enum Msg {
    /// Events and the heap bytes they hold ([`Event::heap_bytes`]).
    Batch(Vec<Event>, usize),
    Restart(Box<RecordingHeader>),
    Finish,
}

/// Feeds whose missed events are named one by one at most (the probe has a few dozen).
const MAX_FEEDS: usize = 64;
/// Where the missed events of further feeds are summed.
const OTHER_FEEDS: &str = "(other feeds)";

/// Batches waiting for the analysis thread at most.
const QUEUE: usize = 64;
/// Events gathered before a batch goes to the analysis thread (small live batches are merged,
/// so the queue bounds events, not polls: up to `QUEUE` × this many are in flight).
const MERGE: usize = 8192;
/// Heap bytes (labels, lists) gathered before a batch goes anyway.
const MERGE_HEAP: usize = 1 << 20;
/// Heap bytes in flight to the analysis thread at most (beyond one batch): events that carry
/// heap are rare, but a crafted recording can make every one carry 64 KiB.
const HEAP_IN_FLIGHT: usize = 32 << 20;
/// A partial batch goes after this long anyway (so views stay current at low rates).
const MERGE_WAIT: Duration = Duration::from_millis(50);

/// A sink that hands batches to an [`Analysis`] on its own thread, which publishes a snapshot
/// into [`Shared`] every `publish_every` while events flow (and at the end).
///
/// With `lossy` (live sessions) a batch that finds the queue full is dropped and counted
/// (`Snapshot::analysis_skipped`): the event path — and the recording — never wait for the
/// models. Without it (replays) the feeder waits.
pub struct Threaded {
    tx: Option<mpsc::SyncSender<Msg>>,
    handle: Option<JoinHandle<Analysis>>,
    shared: Arc<Shared>,
    lossy: bool,
    result: Option<Analysis>,
    pending: Vec<Event>,
    /// Heap bytes of `pending`.
    pending_heap: usize,
    pending_since: Option<Instant>,
}

impl Threaded {
    pub fn spawn(
        analysis: Analysis,
        publish_every: Duration,
        lossy: bool,
    ) -> Result<Self, SinkError> {
        let shared = Arc::new(Shared::default());
        let (tx, rx) = mpsc::sync_channel::<Msg>(QUEUE);
        let sh = shared.clone();
        let handle = std::thread::Builder::new()
            .name("swapscope-analysis".into())
            .spawn(move || analysis_thread(analysis, &rx, &sh, publish_every))
            .map_err(|e| SinkError::Other(format!("starting the analysis thread: {e}")))?;
        Ok(Threaded {
            tx: Some(tx),
            handle: Some(handle),
            shared,
            lossy,
            result: None,
            pending: Vec::with_capacity(MERGE),
            pending_heap: 0,
            pending_since: None,
        })
    }

    /// Where viewers read the latest snapshot.
    pub fn shared(&self) -> Arc<Shared> {
        self.shared.clone()
    }

    /// The analysis, once finished.
    pub fn into_analysis(mut self) -> Option<Analysis> {
        self.join();
        self.result.take()
    }

    fn join(&mut self) {
        if self.shared.abandon.load(Ordering::Relaxed) {
            self.pending.clear();
        }
        let _ = self.send_pending();
        if let Some(tx) = self.tx.take() {
            let _ = tx.send(Msg::Finish);
        }
        if let Some(h) = self.handle.take()
            && let Ok(a) = h.join()
        {
            self.result = Some(a);
        }
    }
}

fn analysis_thread(
    mut a: Analysis,
    rx: &mpsc::Receiver<Msg>,
    shared: &Shared,
    every: Duration,
) -> Analysis {
    shared.publish(a.snapshot());
    let mut last = Instant::now();
    let mut dirty = false;
    loop {
        let wait = every.saturating_sub(last.elapsed());
        match rx.recv_timeout(wait) {
            Ok(Msg::Batch(b, heap)) if shared.abandon.load(Ordering::Relaxed) => {
                drop(b);
                shared.heap_in_flight.fetch_sub(heap, Ordering::Relaxed);
            }
            Ok(Msg::Batch(b, heap)) => {
                let skipped = shared.skipped.swap(0, Ordering::Relaxed);
                a.note_skipped(skipped);
                let first_counters = a.last_sample.is_none();
                let _ = a.push(&b);
                drop(b);
                shared.heap_in_flight.fetch_sub(heap, Ordering::Relaxed);
                dirty = true;
                if first_counters && a.last_sample.is_some() {
                    // The first counter sample is published at once: the exporter waits for it
                    // before it answers (a scrape without the kernel's families, hostile #21).
                    shared.publish(a.snapshot());
                    dirty = false;
                    last = Instant::now();
                }
            }
            Ok(Msg::Restart(h)) => {
                a.reset(&h);
                dirty = true;
            }
            Ok(Msg::Finish) | Err(mpsc::RecvTimeoutError::Disconnected) => break,
            Err(mpsc::RecvTimeoutError::Timeout) => {}
        }
        if last.elapsed() >= every {
            if dirty {
                shared.publish(a.snapshot());
                dirty = false;
            }
            last = Instant::now();
        }
    }
    a.note_skipped(shared.skipped.swap(0, Ordering::Relaxed));
    a.set_ended();
    shared.publish(a.snapshot());
    a
}

impl Threaded {
    /// Hands the gathered events to the analysis thread (or, lossy and full, drops them).
    fn send_pending(&mut self) -> Result<(), SinkError> {
        self.pending_since = None;
        if self.pending.is_empty() {
            return Ok(());
        }
        let Some(tx) = &self.tx else {
            self.pending.clear();
            return Ok(());
        };
        let batch = std::mem::replace(&mut self.pending, Vec::with_capacity(MERGE));
        let heap = std::mem::take(&mut self.pending_heap);
        let n = batch.len() as u64;
        let in_flight = &self.shared.heap_in_flight;
        let over = || {
            let now = in_flight.load(Ordering::Relaxed);
            now > 0 && now + heap > HEAP_IN_FLIGHT
        };
        if self.lossy && over() {
            self.shared.skipped.fetch_add(n, Ordering::Relaxed);
            return Ok(());
        }
        while over() {
            // Only streams whose events carry unusual heap get here (never a plain stream).
            if self.handle.as_ref().is_none_or(JoinHandle::is_finished) {
                return Err(SinkError::Other("the analysis thread stopped".into()));
            }
            std::thread::sleep(Duration::from_millis(1));
        }
        in_flight.fetch_add(heap, Ordering::Relaxed);
        let msg = Msg::Batch(batch, heap);
        if self.lossy {
            match tx.try_send(msg) {
                Ok(()) => {}
                Err(mpsc::TrySendError::Full(_)) => {
                    in_flight.fetch_sub(heap, Ordering::Relaxed);
                    self.shared.skipped.fetch_add(n, Ordering::Relaxed);
                }
                Err(mpsc::TrySendError::Disconnected(_)) => {
                    return Err(SinkError::Other("the analysis thread stopped".into()));
                }
            }
        } else if tx.send(msg).is_err() {
            return Err(SinkError::Other("the analysis thread stopped".into()));
        }
        Ok(())
    }
}

impl Sink for Threaded {
    fn push(&mut self, batch: &[Event]) -> Result<(), SinkError> {
        // At most MERGE events a batch, so the queue bounds the events in flight (a replay at
        // full speed hands over whole chunks: 64 of them queued seconds of work and 400 MB).
        for part in batch.chunks(MERGE) {
            self.pending.extend_from_slice(part);
            self.pending_heap += part.iter().map(Event::heap_bytes).sum::<usize>();
            self.pending_since.get_or_insert_with(Instant::now);
            if self.pending.len() >= MERGE || self.pending_heap >= MERGE_HEAP {
                self.send_pending()?;
            }
        }
        Ok(())
    }

    fn tick(&mut self, now: Instant) -> Result<(), SinkError> {
        if self
            .pending_since
            .is_some_and(|t| now.saturating_duration_since(t) >= MERGE_WAIT)
        {
            self.send_pending()?;
        }
        Ok(())
    }

    fn restart(&mut self, header: &RecordingHeader) -> Result<(), SinkError> {
        self.pending.clear();
        self.pending_heap = 0;
        self.pending_since = None;
        if let Some(tx) = &self.tx {
            tx.send(Msg::Restart(Box::new(header.clone())))
                .map_err(|_| SinkError::Other("the analysis thread stopped".into()))?;
        }
        Ok(())
    }

    fn finish(&mut self, _summary: &Summary) -> Result<(), SinkError> {
        self.join();
        Ok(())
    }
}

impl Drop for Threaded {
    fn drop(&mut self) {
        self.join();
    }
}

fn list_letter(l: crate::alloc::ClusterList) -> char {
    use crate::alloc::ClusterList as L;
    match l {
        L::Free => 'f',
        L::Nonfull => 'n',
        L::Frag => 'r',
        L::Full => 'F',
        L::Discard => 'd',
        L::Partial => 'p',
        L::Other => 'o',
    }
}

/// The cells of a device map, grouped `per` clusters a cell (for big devices): the mean used
/// count, the most common list, and the largest order.
pub fn group_cells(cells: &[ClusterCell], per: usize) -> Vec<ClusterCell> {
    if per <= 1 {
        return cells.to_vec();
    }
    cells
        .chunks(per)
        .map(|ch| {
            let used = ch.iter().map(|c| u64::from(c.used)).sum::<u64>() / ch.len() as u64;
            let mut counts: Vec<(crate::alloc::ClusterList, usize)> = Vec::new();
            for c in ch {
                match counts.iter_mut().find(|(l, _)| *l == c.list) {
                    Some((_, n)) => *n += 1,
                    None => counts.push((c.list, 1)),
                }
            }
            let list = counts
                .iter()
                .max_by_key(|(_, n)| *n)
                .map(|(l, _)| *l)
                .unwrap_or_default();
            ClusterCell {
                used: used as u16,
                order: ch.iter().filter_map(|c| c.order).max(),
                list,
                last: None,
            }
        })
        .collect()
}
