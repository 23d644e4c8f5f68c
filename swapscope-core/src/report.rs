//! `swapscope report`: the summary of an event stream (pure; no I/O).
//!
//! Kernel counter values are deltas between the first and the last counter sample of the stream.
//! Orders are folio orders, as strings in JSON ("0", "4", ...).

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::engine::ByOrder;

use crate::{
    alloc::AllocatorModel,
    engine::{self, Engine, EngineConfig, MarkerReport, ModelReport, Parallel, StreamSummary},
    event::{CounterSample, Event, Lost},
};

/// JSON schema version of [`Report`].
pub const REPORT_SCHEMA: u32 = 4;

#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq)]
pub struct KernelDeltas {
    pub swpout_by_order: ByOrder<u64>,
    pub swpout_fallback_by_order: ByOrder<u64>,
    pub split_by_order: ByOrder<u64>,
    pub pswpout_pages: u64,
    /// Large folios swapped in whole, by order (`hugepages-<size>/stats/swpin`).
    pub swpin_by_order: ByOrder<u64>,
    /// Swap-ins of that size that fell back to smaller folios (`swpin_fallback`), and those
    /// that fell back because the memory cgroup charge failed (`swpin_fallback_charge`).
    pub swpin_fallback_by_order: ByOrder<u64>,
    pub swpin_fallback_charge_by_order: ByOrder<u64>,
    /// Pages read from swap (`pswpin`).
    pub pswpin_pages: u64,
    /// PMD-size (2 MiB) fallbacks only (vmstat `thp_swpout_fallback`): 0 beside fallbacks of
    /// smaller mTHP sizes, which `swpout_fallback_by_order` counts.
    pub thp_swpout_fallback: u64,
    /// Zero-filled pages that never reached the device (`swpout_zero`, 6.12+); such folios are
    /// write-out events but not `swpout`.
    pub swpout_zero_pages: u64,
    /// Full tier: hook invocations the kernel did not deliver to swapscope's programs
    /// (`recursion_misses`: the program was already running on that CPU, e.g. a task preempted
    /// inside it) and their rescue twins did not deliver either, by feed. Non-zero means
    /// requests, frees or splits are missing from the stream.
    pub missed_events: BTreeMap<String, u64>,
    /// Invocations a feed's first program skipped that its rescue twins delivered, by feed (in
    /// the stream like any other).
    pub rescued_events: BTreeMap<String, u64>,
    /// Full tier: the `inuse_pages` completeness check (checks made, mismatches found).
    pub inuse_checks: Option<u64>,
    pub inuse_mismatches: Option<u64>,
    /// The write-out program's tracepoint hits and those it filtered out.
    pub writeout_hits: Option<u64>,
    pub writeout_filtered: Option<u64>,
    /// 7.x: large folios' refusals the probe reported inside the allocator's lock, at the
    /// kernel's moment of decision (the others come from the charge hook after it).
    #[serde(default)]
    pub refusals_in_lock: Option<u64>,
    /// Full tier (`write-io` attached): write-outs of folios out of the swap cache and unmapped
    /// by the tracepoint, kept because `__swap_writepage` saw them go to the device (without a
    /// slot, like every folio gone from the swap cache by then). None where that hook is not.
    #[serde(default)]
    pub writeouts_written_gone: Option<u64>,
}

#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq)]
pub struct DeviceReport {
    pub path: String,
    pub kind: String,
    pub size_kb: u64,
    /// Used at the start of the stream (None when the device appeared later).
    pub used_kb_start: Option<u64>,
    /// Used in the last device list that showed it.
    pub used_kb_last: u64,
    /// Write-out events whose swap type is this device's position in /proc/swaps.
    pub writeouts: u64,
}

#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq)]
pub struct Report {
    pub schema: u32,
    pub duration_s: f64,
    /// Every event of the stream, of any kind.
    pub events: u64,
    /// Write-out events (one per folio).
    pub writeout_events: u64,
    pub lost_events: u64,
    pub writeouts_by_order: ByOrder<u64>,
    /// Σ 2^order × write-outs: pages written.
    pub writeout_pages: u64,
    /// Write-outs of anonymous folios (the rest are shmem).
    pub anon_writeouts: u64,
    /// Write-outs whose folio another CPU took out of the swap cache before the tracepoint ran:
    /// written (counted above), slot unknown.
    pub writeouts_without_slot: u64,
    /// Full tier: swap-slot requests per folio order, and how many the kernel refused.
    pub requests_by_order: ByOrder<u64>,
    pub failed_requests_by_order: ByOrder<u64>,
    /// Full tier: events the kernel did not deliver that the stream shows anyway (`alloc`,
    /// `split`; see `crate::repair`), counted in the totals above too.
    pub inferred_events: BTreeMap<String, u64>,
    /// Full tier: splits that follow a refused request for the same folio (swap-allocation
    /// fallbacks, the kernel's `swpout_fallback` when they succeed), by the folio's order.
    pub fallback_splits_by_order: ByOrder<u64>,
    /// Full tier: splits with no refused request before them (deferred split, migration, ...).
    pub other_splits: Option<u64>,
    /// Full tier: slots given back.
    pub freed_slots: Option<u64>,
    /// Full tier: folios read back from swap, by order (a read of 2^order slots each).
    pub swapins_by_order: ByOrder<u64>,
    /// Full tier: Σ 2^order × swap-ins: pages read back (null without a swap-in feed).
    pub swapin_pages: Option<u64>,
    pub kernel: KernelDeltas,
    pub devices: Vec<DeviceReport>,
    /// Records of kinds this build does not know (skipped).
    pub unknown_records: u64,
    /// Problems found while reading the stream (truncation, corruption).
    pub warnings: Vec<String>,
    /// The shadow allocators, each fed the stream's allocation requests and frees.
    pub models: Vec<ModelReport>,
    /// The kernel's own occupancy and results, where the stream carries them.
    pub real: Option<ModelReport>,
    /// What-if replays (`report --swap-size`): each device's size as the models saw it, in
    /// bytes, by swap type; `{}` when they saw the recorded devices.
    pub model_device_bytes: BTreeMap<u8, u64>,
    /// Per-interval counts between markers (e.g. one row per workload iteration).
    pub markers: Vec<MarkerReport>,
    /// Fixed intervals of stream time (5 s), each with its counts and the occupancy at its end.
    pub intervals: Vec<MarkerReport>,
    /// The moment the stream held the most slots: counts since the start, occupancy then.
    pub peak: Option<MarkerReport>,
    /// What the engine saw of the stream.
    pub stream: Option<StreamSummary>,
    /// Figures this stream cannot support, said plainly.
    pub limits: Vec<String>,
}

/// Where the builder's engine runs.
enum Shadows {
    /// On the caller's thread: its state can be looked at any time (viewers).
    Inline(Box<Engine>),
    /// Split over threads (`report`): looked at only at the end.
    Parallel(Parallel),
}

/// Refused requests remembered at most while their split is awaited.
const MAX_REFUSED_WAITING: usize = 1 << 20;

/// Builds a [`Report`] incrementally from events in stream order.
#[derive(Default)]
pub struct ReportBuilder {
    /// Shadow allocators to replay the stream through (none: no model comparison).
    engine: Option<Shadows>,
    first_counters: Option<CounterSample>,
    last_counters: Option<CounterSample>,
    /// Every device seen in any `Devices` record, in order of first appearance, with its Used
    /// value when it was already in the first list.
    devices: Vec<(crate::event::SwapDevice, Option<u64>)>,
    saw_devices: bool,
    first_ts: Option<u64>,
    last_ts: u64,
    events: u64,
    writeouts: BTreeMap<u8, u64>,
    anon: u64,
    per_type: BTreeMap<u8, u64>,
    without_slot: u64,
    lost: Lost,
    requests: BTreeMap<u8, u64>,
    failed: BTreeMap<u8, u64>,
    /// Folios whose last request failed, with their order (awaiting a split).
    refused: std::collections::HashMap<u64, u8, engine::BuildBucketHasher>,
    fallback_splits: BTreeMap<u8, u64>,
    /// Refused folios were forgotten before their split came (see [`MAX_REFUSED_WAITING`]).
    refused_forgotten: bool,
    other_splits: u64,
    /// Inferred events by kind (`crate::repair`).
    inferred: BTreeMap<&'static str, u64>,
    saw_splits: bool,
    freed: Option<u64>,
    swapins: BTreeMap<u8, u64>,
    /// Swap-ins whose order the hook could not tell (6.1 sees a `struct page`).
    swapins_unknown: u64,
    saw_swapins: bool,
}

impl ReportBuilder {
    /// A builder that also replays the stream through `models`.
    pub fn with_models(models: Vec<Box<dyn AllocatorModel>>) -> Self {
        Self::with_models_config(models, EngineConfig::default())
    }

    /// [`with_models`](Self::with_models) with an engine configuration (e.g. a what-if device
    /// size).
    pub fn with_models_config(models: Vec<Box<dyn AllocatorModel>>, config: EngineConfig) -> Self {
        ReportBuilder {
            engine: (!models.is_empty())
                .then(|| Shadows::Inline(Box::new(Engine::new(models, config)))),
            ..Default::default()
        }
    }

    /// A builder whose engine runs even with no models (it then rebuilds only the real
    /// occupancy).
    pub fn with_engine(models: Vec<Box<dyn AllocatorModel>>) -> Self {
        ReportBuilder {
            engine: Some(Shadows::Inline(Box::new(Engine::new(
                models,
                EngineConfig::default(),
            )))),
            ..Default::default()
        }
    }

    /// A builder whose models run on up to `threads` threads (see [`Parallel`]); the report is
    /// the same as with one. Its engine cannot be looked at before [`ReportBuilder::finish`].
    pub fn with_models_parallel(
        models: Vec<Box<dyn AllocatorModel>>,
        config: EngineConfig,
        threads: usize,
    ) -> std::io::Result<Self> {
        Ok(ReportBuilder {
            engine: if models.is_empty() {
                None
            } else {
                Some(Shadows::Parallel(Parallel::new(models, config, threads)?))
            },
            ..Default::default()
        })
    }

    /// The engine, when the builder has one on this thread.
    pub fn engine(&self) -> Option<&Engine> {
        match &self.engine {
            Some(Shadows::Inline(e)) => Some(e),
            _ => None,
        }
    }

    /// Feeds a batch of events (the engine, when parallel, gets the batch at once).
    pub fn push_batch(&mut self, batch: &[Event]) {
        if let Some(Shadows::Parallel(p)) = self.engine.as_mut() {
            p.feed_batch(batch);
        }
        for ev in batch {
            self.push(ev);
        }
    }

    /// [`ReportBuilder::push_batch`] for a shared batch (a parallel engine keeps it, uncopied).
    pub fn push_shared(&mut self, batch: &std::sync::Arc<Vec<Event>>) {
        if let Some(Shadows::Parallel(p)) = self.engine.as_mut() {
            p.feed_shared(batch);
        }
        for ev in batch.iter() {
            self.push(ev);
        }
    }

    /// Feeds one event (a parallel engine is fed by [`ReportBuilder::push_batch`] only).
    pub fn push(&mut self, ev: &Event) {
        if let Some(Shadows::Inline(e)) = self.engine.as_mut() {
            e.feed(ev);
        }
        self.events += 1;
        let ts = ev.ts();
        if ts != 0 {
            self.first_ts.get_or_insert(ts);
            self.last_ts = self.last_ts.max(ts);
        }
        match ev {
            Event::Writeout(w) => {
                *self.writeouts.entry(w.order).or_default() += 1;
                if w.has_slot() {
                    *self.per_type.entry(w.swap_type).or_default() += 1;
                } else {
                    self.without_slot += 1;
                }
                if w.is_anon() {
                    self.anon += 1;
                }
            }
            Event::Counters(c) => {
                if self.first_counters.is_none() {
                    self.first_counters = Some(c.clone());
                }
                self.last_counters = Some(c.clone());
            }
            Event::Devices(d) => {
                let first_list = !self.saw_devices;
                self.saw_devices = true;
                for dev in &d.devices {
                    match self.devices.iter_mut().find(|(x, _)| x.path == dev.path) {
                        Some((x, _)) => *x = dev.clone(),
                        None => self
                            .devices
                            .push((dev.clone(), first_list.then_some(dev.used_kb))),
                    }
                }
            }
            Event::Alloc(a) => {
                if a.inferred {
                    *self.inferred.entry("alloc").or_default() += 1;
                }
                *self.requests.entry(a.order).or_default() += 1;
                if a.result == crate::event::AllocResult::Failure {
                    *self.failed.entry(a.order).or_default() += 1;
                    if a.order > 0 {
                        // Refused folios wait for their split: bounded (a stream of refusals
                        // that are never split cannot take memory without end).
                        if self.refused.len() >= MAX_REFUSED_WAITING {
                            self.refused.clear();
                            self.refused_forgotten = true;
                        }
                        self.refused.insert(a.id, a.order);
                    }
                } else {
                    self.refused.remove(&a.id);
                }
            }
            Event::Split(sp) => {
                if sp.inferred {
                    *self.inferred.entry("split").or_default() += 1;
                }
                self.saw_splits = true;
                match self.refused.remove(&sp.id) {
                    Some(order) => *self.fallback_splits.entry(order).or_default() += 1,
                    None => self.other_splits += 1,
                }
            }
            Event::Free(f) => *self.freed.get_or_insert(0) += u64::from(f.nr),
            Event::SwapIn(si) => {
                self.saw_swapins = true;
                match si.order {
                    Some(o) => *self.swapins.entry(o).or_default() += 1,
                    None => self.swapins_unknown += 1,
                }
            }
            Event::Lost(l) => {
                // Cumulative counts: keep the largest seen.
                self.lost.ringbuf = self.lost.ringbuf.max(l.ringbuf);
                self.lost.userspace = self.lost.userspace.max(l.userspace);
            }
            _ => {}
        }
    }

    pub fn finish(self, unknown_records: u64, warnings: Vec<String>) -> Report {
        let mut r = Report {
            schema: REPORT_SCHEMA,
            unknown_records,
            warnings,
            ..Default::default()
        };
        // Duration: between the first and last counter samples when present (the window the
        // kernel deltas cover), else between the first and last events.
        let (a, b) = match (&self.first_counters, &self.last_counters) {
            (Some(a), Some(b)) => (a.ts_ns, b.ts_ns),
            _ => (self.first_ts.unwrap_or(0), self.last_ts),
        };
        r.duration_s = b.saturating_sub(a) as f64 / 1e9;
        r.events = self.events;
        r.writeout_events = self.writeouts.values().sum();
        r.lost_events = self.lost.ringbuf + self.lost.userspace;
        r.anon_writeouts = self.anon;
        r.writeouts_without_slot = self.without_slot;
        let key = |m: &BTreeMap<u8, u64>| m.clone();
        r.requests_by_order = key(&self.requests);
        r.failed_requests_by_order = key(&self.failed);
        r.fallback_splits_by_order = key(&self.fallback_splits);
        r.inferred_events = self
            .inferred
            .iter()
            .map(|(k, v)| ((*k).to_string(), *v))
            .collect();
        r.other_splits = self.saw_splits.then_some(self.other_splits);
        if self.refused_forgotten {
            r.limits.push(format!(
                "more than {MAX_REFUSED_WAITING} refused requests waited for their split at once: \
                 the oldest were forgotten, so some fallback splits count as other splits"
            ));
        }
        r.freed_slots = self.freed;
        r.swapins_by_order = key(&self.swapins);
        r.swapin_pages = self
            .saw_swapins
            .then(|| self.swapins.iter().map(|(o, n)| n << o.min(&63)).sum());
        if self.swapins_unknown > 0 {
            r.limits.push(format!(
                "{} swap-ins of large folios were seen only as a page (6.1's swap_readpage): \
                 their order is unknown and they are left out of swapins_by_order",
                self.swapins_unknown
            ));
        }
        for (order, n) in &self.writeouts {
            r.writeouts_by_order.insert(*order, *n);
            r.writeout_pages += n << order;
        }
        if let (Some(first), Some(last)) = (&self.first_counters, &self.last_counters) {
            r.kernel = kernel_deltas(first, last);
        }
        let er = match self.engine {
            Some(Shadows::Inline(mut e)) => {
                e.end_holds();
                Some(e.report())
            }
            Some(Shadows::Parallel(p)) => {
                let f = p.finish();
                if f.is_none() {
                    r.warnings
                        .push("an engine thread stopped unexpectedly: no model figures".into());
                }
                f.map(|f| f.report)
            }
            None => None,
        };
        if let Some(er) = er {
            if er.stream.allocs == 0 {
                r.limits.push(
                    "no allocation requests in this stream (tracepoint tier: write-outs only, no \
                     requests and no frees), so the allocator models had nothing to replay; use the \
                     full probe tier or `swapscope simulate`"
                        .into(),
                );
            } else if er.stream.frees == 0 {
                r.limits.push(
                    "no frees in this stream: model occupancy only grows, so fragmentation and \
                     fallback figures are upper bounds"
                        .into(),
                );
            }
            if er.stream.refused_devices > 0 {
                r.limits.push(format!(
                    "{} swap device(s) were left out: larger than {} GiB in all (the models' \
                     memory follows the devices' size)",
                    er.stream.refused_devices,
                    (engine::MAX_DEVICE_SLOTS * 4) >> 20
                ));
            }
            if er.stream.refused_unavailable > 0 {
                r.limits.push(format!(
                    "{} requests the kernel refused while more clusters were empty than its CPUs \
                     could hold (a swapoff under way, or a memcg swap charge): no allocator could \
                     have placed them, so every model refused them too",
                    er.stream.refused_unavailable
                ));
            }
            if er.stream.markers > er.markers.len() as u64 {
                r.limits.push(format!(
                    "{} markers: the first {} are broken out per interval, the rest only counted",
                    er.stream.markers,
                    er.markers.len()
                ));
            }
            if er.real.is_none() && er.stream.allocs > 0 {
                r.limits.push(
                    "the stream carries no kernel results (simulated requests): there is no \"real\" \
                     column, only the models"
                        .into(),
                );
            }
            r.models = er.models;
            r.real = er.real;
            r.model_device_bytes = er.model_device_bytes;
            if er.markers.len() > engine::MAX_MARKER_STATE_ROWS {
                r.limits.push(format!(
                    "{} marker intervals: the first {} show every model's occupancy at their end, \
                     the rest only counts",
                    er.markers.len(),
                    engine::MAX_MARKER_STATE_ROWS
                ));
            }
            if er.intervals.len() >= engine::MAX_INTERVAL_ROWS {
                r.limits.push(format!(
                    "the run is longer than {} intervals of {} s: the last interval runs to its end",
                    engine::MAX_INTERVAL_ROWS,
                    engine::DEFAULT_INTERVAL_NS / 1_000_000_000
                ));
            }
            r.markers = er.markers;
            r.intervals = er.intervals;
            r.peak = er.peak;
            r.stream = Some(er.stream);
        }
        for (d, start) in &self.devices {
            r.devices.push(DeviceReport {
                path: d.path.clone(),
                kind: d.kind.as_str().to_string(),
                size_kb: d.size_kb,
                used_kb_start: *start,
                used_kb_last: d.used_kb,
                writeouts: self.per_type.get(&d.index).copied().unwrap_or(0),
            });
        }
        r
    }
}

fn kernel_deltas(first: &CounterSample, last: &CounterSample) -> KernelDeltas {
    let mut k = KernelDeltas::default();
    let first = crate::event::CounterBase::of(first);
    for (name, end) in &last.values {
        let delta = first.since(name, *end);
        if let Some((order, stat)) = crate::mthp::parse_mthp_counter(name) {
            let map = match stat {
                "swpout" => &mut k.swpout_by_order,
                "swpout_fallback" => &mut k.swpout_fallback_by_order,
                "split" => &mut k.split_by_order,
                "swpin" => &mut k.swpin_by_order,
                "swpin_fallback" => &mut k.swpin_fallback_by_order,
                "swpin_fallback_charge" => &mut k.swpin_fallback_charge_by_order,
                _ => continue,
            };
            map.insert(order, delta);
        } else {
            if let Some(feed) = name
                .strip_prefix("probe/")
                .and_then(|r| r.strip_suffix("/recursion_misses"))
            {
                k.missed_events.insert(feed.to_string(), delta);
                continue;
            }
            if let Some(feed) = name
                .strip_prefix("probe/")
                .and_then(|r| r.strip_suffix("/rescued"))
            {
                k.rescued_events.insert(feed.to_string(), delta);
                continue;
            }
            match name.as_str() {
                "probe/writeout_hits" => k.writeout_hits = Some(delta),
                "probe/inuse_checks" => k.inuse_checks = Some(delta),
                "probe/inuse_mismatches" => k.inuse_mismatches = Some(delta),
                "probe/writeout_filtered" => k.writeout_filtered = Some(delta),
                "probe/refusals_in_lock" => k.refusals_in_lock = Some(delta),
                "probe/writeout_written_gone" => k.writeouts_written_gone = Some(delta),
                "vmstat/pswpout" => k.pswpout_pages = delta,
                "vmstat/pswpin" => k.pswpin_pages = delta,
                "vmstat/thp_swpout_fallback" => k.thp_swpout_fallback = delta,
                "vmstat/swpout_zero" => k.swpout_zero_pages = delta,
                _ => {}
            }
        }
    }
    k
}

impl Report {
    /// Requests of large folios (order > 0) the kernel refused.
    pub fn large_refusals(&self) -> u64 {
        self.failed_requests_by_order
            .iter()
            .filter(|(o, _)| **o > 0)
            .map(|(_, n)| *n)
            .sum()
    }

    /// The text form: a readable table of the same figures.
    pub fn render_text(&self) -> String {
        use std::fmt::Write as _;
        let mut s = String::new();
        let _ = writeln!(
            s,
            "swapscope report: {:.1} s, {} events, {} write-outs ({} lost), {} pages",
            self.duration_s,
            self.events,
            self.writeout_events,
            self.lost_events,
            self.writeout_pages
        );
        let mut orders: Vec<u8> = self
            .writeouts_by_order
            .keys()
            .chain(self.kernel.swpout_by_order.keys())
            .chain(self.kernel.swpout_fallback_by_order.keys())
            .copied()
            .collect();
        orders.sort_unstable();
        orders.dedup();
        let nonzero = |o: &u8| {
            [
                &self.writeouts_by_order,
                &self.kernel.swpout_by_order,
                &self.kernel.swpout_fallback_by_order,
                &self.kernel.split_by_order,
            ]
            .iter()
            .any(|m| m.get(o).is_some_and(|v| *v > 0))
        };
        orders.retain(|o| nonzero(o));
        let _ = writeln!(s);
        let _ = writeln!(
            s,
            "{:>6} {:>9} {:>12} {:>14} {:>16} {:>10}",
            "order", "size", "write-outs", "kernel swpout", "swpout_fallback", "split"
        );
        for order in orders {
            let o = order;
            let size = crate::event::folio_size(order);
            let get = |m: &BTreeMap<u8, u64>| m.get(&o).map_or("-".to_string(), u64::to_string);
            let _ = writeln!(
                s,
                "{:>6} {:>9} {:>12} {:>14} {:>16} {:>10}",
                o,
                size,
                get(&self.writeouts_by_order),
                if order == 0 {
                    "n/a".to_string()
                } else {
                    get(&self.kernel.swpout_by_order)
                },
                if order == 0 {
                    "n/a".to_string()
                } else {
                    get(&self.kernel.swpout_fallback_by_order)
                },
                if order == 0 {
                    "n/a".to_string()
                } else {
                    get(&self.kernel.split_by_order)
                },
            );
        }
        let _ = writeln!(s);
        let _ = writeln!(
            s,
            "pages written: {} by write-out events, {} by the kernel's pswpout",
            self.writeout_pages, self.kernel.pswpout_pages
        );
        if self.writeouts_without_slot > 0 {
            let _ = writeln!(
                s,
                "  {} write-outs without a slot: another CPU took the folio out of the swap cache before the tracepoint ran",
                self.writeouts_without_slot
            );
        }
        if let Some(n) = self.kernel.writeouts_written_gone.filter(|n| *n > 0) {
            let _ = writeln!(
                s,
                "  {n} of them also unmapped by then: known written from __swap_writepage"
            );
        }
        let k = &self.kernel;
        if let Some(pages) = self.swapin_pages {
            let _ = writeln!(
                s,
                "pages read: {pages} by swap-in events, {} by the kernel's pswpin",
                k.pswpin_pages
            );
            for (&order, n) in &self.swapins_by_order {
                let _ = writeln!(
                    s,
                    "  {:>5} swap-in events: {n}",
                    crate::event::folio_size(order)
                );
            }
        } else if k.pswpin_pages > 0 || k.swpin_by_order.values().any(|n| *n > 0) {
            let _ = writeln!(s, "pages read: {} by the kernel's pswpin", k.pswpin_pages);
        }
        if k.pswpin_pages > 0 || k.swpin_by_order.values().any(|n| *n > 0) {
            for (o, n) in &k.swpin_by_order {
                let fb = k.swpin_fallback_by_order.get(o).copied().unwrap_or(0);
                let charge = k
                    .swpin_fallback_charge_by_order
                    .get(o)
                    .copied()
                    .unwrap_or(0);
                if *n + fb > 0 {
                    let order = *o;
                    let _ = writeln!(
                        s,
                        "  {:>5} swap-ins: {n} whole, {fb} fell back to smaller folios ({charge} for the cgroup charge)",
                        crate::event::folio_size(order)
                    );
                }
            }
        }
        if !self.requests_by_order.is_empty() {
            let _ = writeln!(
                s,
                "\nfull tier: requests / refused / fallback splits per order"
            );
            for (o, n) in &self.requests_by_order {
                let _ = writeln!(
                    s,
                    "  order {o:>2}: {n:>10} requests  {:>8} refused  {:>8} fallback splits",
                    self.failed_requests_by_order.get(o).copied().unwrap_or(0),
                    self.fallback_splits_by_order.get(o).copied().unwrap_or(0)
                );
            }
            if let Some(o) = self.other_splits {
                let _ = writeln!(s, "  other splits: {o}");
            }
            if let Some(f) = self.freed_slots {
                let _ = writeln!(s, "  slots freed: {f}");
            }
            if let (Some(c), Some(m)) = (self.kernel.inuse_checks, self.kernel.inuse_mismatches) {
                let _ = writeln!(
                    s,
                    "  inuse_pages completeness check: {m} mismatches in {c} checks"
                );
            }
            if let Some(st) = self.stream.as_ref().filter(|st| st.cluster_events > 0) {
                let _ = writeln!(
                    s,
                    "  cluster list moves: {} seen; list completeness check: {} mismatches in {} checks",
                    st.cluster_events, st.real_cluster_mismatches, st.real_cluster_checks
                );
            }
            if let Some(n) = self.kernel.refusals_in_lock {
                let _ = writeln!(
                    s,
                    "  large-folio refusals reported inside the allocator's lock: {n} of {}",
                    self.large_refusals()
                );
            }
            for (feed, n) in self.kernel.missed_events.iter().filter(|(_, n)| **n > 0) {
                let _ = writeln!(
                    s,
                    "  MISSED: {n} {feed} events were not delivered (recursion_misses)"
                );
            }
        }
        if !self.inferred_events.is_empty() {
            let _ = writeln!(
                s,
                "inferred: {} (not delivered by the kernel; shown by the grants, write-outs and retries that were)",
                self.inferred_events
                    .iter()
                    .map(|(k, v)| format!("{v} {k}"))
                    .collect::<Vec<_>>()
                    .join(", ")
            );
        }
        let rescued: Vec<String> = self
            .kernel
            .rescued_events
            .iter()
            .filter(|(_, n)| **n > 0)
            .map(|(feed, n)| format!("{n} {feed}"))
            .collect();
        if !rescued.is_empty() {
            let _ = writeln!(
                s,
                "rescued: {} events the first program skipped (another task preempted inside it) were delivered by its twin",
                rescued.join(", ")
            );
        }
        if self.kernel.swpout_zero_pages > 0 {
            let _ = writeln!(
                s,
                "zero-filled pages kept off the device: {}",
                self.kernel.swpout_zero_pages
            );
        }
        for d in &self.devices {
            let _ = writeln!(
                s,
                "device {} ({}): {} KiB, used {} -> {} KiB, {} write-outs",
                crate::event::printable(&d.path),
                crate::event::printable(&d.kind),
                d.size_kb,
                d.used_kb_start.map_or("-".into(), |u| u.to_string()),
                d.used_kb_last,
                d.writeouts
            );
        }
        if self.unknown_records > 0 {
            let _ = writeln!(
                s,
                "skipped {} records of kinds this build does not know",
                self.unknown_records
            );
        }
        for w in &self.warnings {
            let _ = writeln!(s, "warning: {w}");
        }
        if !self.models.is_empty() && self.stream.is_some_and(|st| st.allocs > 0) {
            let _ = writeln!(s);
            s.push_str(&engine::render_table(&engine::Comparison {
                events: self.stream.as_ref().map_or(0, |st| st.events),
                stream: self.stream.unwrap_or_default(),
                models: self.models.clone(),
                real: self.real.clone(),
                markers: self.markers.clone(),
                intervals: self.intervals.clone(),
                peak: self.peak.clone(),
                series: Vec::new(),
                model_device_bytes: self.model_device_bytes.clone(),
            }));
        }
        for l in &self.limits {
            let _ = writeln!(s, "limit: {l}");
        }
        s
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event::{DeviceKind, DeviceList, SwapDevice, Writeout};

    fn wo(ts: u64, order: u8) -> Event {
        Event::Writeout(Writeout {
            ts_ns: ts,
            cpu: 0,
            pid: 1,
            tgid: 1,
            swap_type: 0,
            offset: ts,
            order,
            pfn: None,
            flags: swapscope_common::folio_flags::ANON,
        })
    }

    fn counters(ts: u64, swpout64: u64, pswpout: u64) -> Event {
        Event::Counters(CounterSample {
            ts_ns: ts,
            values: vec![
                ("hugepages-64kB/swpout".into(), swpout64),
                ("hugepages-64kB/swpout_fallback".into(), 5),
                ("vmstat/pswpout".into(), pswpout),
            ],
        })
    }

    #[test]
    fn a_write_out_without_a_slot_counts_in_the_totals_only() {
        let mut b = ReportBuilder::default();
        b.push(&wo(1, 4));
        if let Event::Writeout(mut w) = wo(2, 4) {
            w.offset = 0;
            w.flags |= swapscope_common::folio_flags::NO_SLOT;
            b.push(&Event::Writeout(w));
        }
        let r = b.finish(0, vec![]);
        assert_eq!(r.writeouts_by_order.get(&4), Some(&2));
        assert_eq!(r.writeout_pages, 32);
        assert_eq!(r.writeouts_without_slot, 1);
        assert!(r.render_text().contains("1 write-outs without a slot"));
    }

    #[test]
    fn deltas_and_orders() {
        let mut b = ReportBuilder::default();
        b.push(&counters(1_000_000_000, 100, 1000));
        b.push(&Event::Devices(DeviceList {
            ts_ns: 1,
            devices: vec![SwapDevice {
                index: 0,
                path: "/dev/zram1".into(),
                kind: DeviceKind::Zram,
                size_kb: 4,
                used_kb: 0,
                prio: 1,
            }],
        }));
        b.push(&wo(1_100_000_000, 0));
        b.push(&wo(1_200_000_000, 4));
        b.push(&wo(1_300_000_000, 4));
        b.push(&Event::Lost(Lost {
            ts_ns: 2,
            ringbuf: 3,
            userspace: 0,
        }));
        b.push(&counters(3_000_000_000, 102, 1033));
        let r = b.finish(0, vec![]);
        assert_eq!(r.duration_s, 2.0);
        // Two counter samples, a device list, three write-outs, one loss record.
        assert_eq!(r.events, 7);
        assert_eq!(r.writeout_events, 3);
        assert_eq!(r.lost_events, 3);
        assert_eq!(r.writeouts_by_order.get(&4), Some(&2));
        assert_eq!(r.writeouts_by_order.get(&0), Some(&1));
        assert_eq!(r.writeout_pages, 33);
        assert_eq!(r.kernel.swpout_by_order.get(&4), Some(&2));
        assert_eq!(r.kernel.swpout_fallback_by_order.get(&4), Some(&0));
        assert_eq!(r.kernel.pswpout_pages, 33);
        assert_eq!(r.devices[0].writeouts, 3);
        let json = match serde_json::to_value(&r) {
            Ok(v) => v,
            Err(e) => panic!("{e}"),
        };
        assert_eq!(json["schema"], REPORT_SCHEMA);
        assert_eq!(json["kernel"]["swpout_by_order"]["4"], 2);
        assert!(r.render_text().contains("write-outs"));
    }

    #[test]
    fn splits_after_refused_requests_are_fallbacks() {
        use crate::event::{Alloc, AllocResult, Split};
        let alloc = |id, order, result| {
            Event::Alloc(Alloc {
                ts_ns: 1,
                cpu: 0,
                order,
                id,
                result,
                latency_ns: None,
                inferred: false,
            })
        };
        let split = |id| {
            Event::Split(Split {
                ts_ns: 2,
                cpu: 0,
                pid: 1,
                id,
                old_order: None,
                new_order: 0,
                inferred: false,
            })
        };
        let mut b = ReportBuilder::default();
        b.push(&alloc(1, 4, AllocResult::Failure));
        b.push(&split(1));
        b.push(&alloc(
            1,
            0,
            AllocResult::Success {
                swap_type: 0,
                offset: 9,
            },
        ));
        b.push(&alloc(
            2,
            4,
            AllocResult::Success {
                swap_type: 0,
                offset: 16,
            },
        ));
        b.push(&split(2));
        b.push(&split(3));
        let r = b.finish(0, vec![]);
        assert_eq!(r.requests_by_order.get(&4), Some(&2));
        assert_eq!(r.failed_requests_by_order.get(&4), Some(&1));
        assert_eq!(r.fallback_splits_by_order.get(&4), Some(&1));
        assert_eq!(r.other_splits, Some(2));
    }
    /// `v` as JSON text, read back as `T`: the same document (every key it has is a field of
    /// `T`, of the type it is written as).
    /// The checked-in documents of `report --json` and `simulate --json`
    /// (swapscope/tests/data/golden) read back as [`Report`]s.
    #[test]
    fn the_golden_reports_read_back() {
        let dir =
            std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../swapscope/tests/data/golden");
        let mut n = 0;
        for e in std::fs::read_dir(&dir).into_iter().flatten().flatten() {
            let Ok(text) = std::fs::read_to_string(e.path()) else {
                continue;
            };
            let r: Report = match serde_json::from_str(&text) {
                Ok(r) => r,
                Err(err) => panic!("{}: {err}", e.path().display()),
            };
            crate::testkit::read_back(&e.path().display().to_string(), &r);
            n += 1;
        }
        assert!(n >= 5, "{n} golden documents in {}", dir.display());
    }
}
