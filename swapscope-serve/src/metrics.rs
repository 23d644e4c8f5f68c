//! What `/metrics` says: a [`Snapshot`] rendered as Prometheus metric families. Pure: the same
//! snapshot gives the same text. Every family is defined once, in [`METRICS`] (name, type,
//! help, the tier that first has it); docs/fleet.md lists them from there.
//!
//! Naming follows Prometheus: `swapscope_` prefix, `_total` on counters, base units (`_bytes`,
//! `_seconds`, `_ratio`), sizes labelled as sysfs spells them (`size="64kB"`). No label takes
//! a pid, an offset or any other value without a small bound: `size` (one per mTHP size),
//! `device` (one per swap device), `model` (the chosen models), `list`, `kind`, `program`.

use std::{collections::BTreeMap, fmt::Write as _, sync::atomic::AtomicU64};

use prometheus_client::{
    encoding::text::encode,
    metrics::{counter::Counter, family::Family, gauge::Gauge, info::Info},
    registry::Registry,
};

use crate::{
    engine::ModelReport,
    host::{self, ProcessStats},
    sink::snapshot::Snapshot,
};

/// A metric's type.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    Counter,
    Gauge,
    /// An info metric: labels only, value 1 (`swapscope_info`).
    Info,
}

/// One metric family: its exposed name (with `_total` for counters and `_info` for info),
/// type, help and the lowest tier that has it (`counters` < `tracepoint` < `full`).
#[derive(Clone, Copy, Debug)]
pub struct MetricDef {
    pub name: &'static str,
    pub kind: Kind,
    pub help: &'static str,
    pub tier: &'static str,
    /// Label names, in order.
    pub labels: &'static [&'static str],
}

const fn def(
    name: &'static str,
    kind: Kind,
    tier: &'static str,
    labels: &'static [&'static str],
    help: &'static str,
) -> MetricDef {
    MetricDef {
        name,
        kind,
        help,
        tier,
        labels,
    }
}

use Kind::{Counter as C, Gauge as G};

/// Every family `/metrics` can have, in the order it is written.
pub const METRICS: &[MetricDef] = &[
    def(
        "swapscope_info",
        Kind::Info,
        "counters",
        &["tier", "kernel", "version", "source", "models"],
        "What this exporter watches: the tier (counters: sysfs and procfs only; tracepoint: every swap write-out; full: every request, free and split, and the models), the kernel release, swapscope's version",
    ),
    def(
        "swapscope_mthp_swpout_total",
        C,
        "counters",
        &["size"],
        "Folios of this size the kernel swapped out whole (hugepages-<size>/stats/swpout; since boot)",
    ),
    def(
        "swapscope_mthp_swpout_fallback_total",
        C,
        "counters",
        &["size"],
        "Folios of this size the kernel split before swap-out because no swap space of that size was found (stats/swpout_fallback; since boot)",
    ),
    def(
        "swapscope_mthp_swpin_total",
        C,
        "counters",
        &["size"],
        "Folios of this size swapped in whole (stats/swpin; since boot)",
    ),
    def(
        "swapscope_mthp_swpin_fallback_total",
        C,
        "counters",
        &["size"],
        "Swap-ins of this size that fell back to smaller folios (stats/swpin_fallback; since boot)",
    ),
    def(
        "swapscope_mthp_split_total",
        C,
        "counters",
        &["size"],
        "Folios of this size split, for any reason (stats/split; since boot)",
    ),
    def(
        "swapscope_pswpout_pages_total",
        C,
        "counters",
        &[],
        "Pages written to swap (/proc/vmstat pswpout; since boot)",
    ),
    def(
        "swapscope_pswpin_pages_total",
        C,
        "counters",
        &[],
        "Pages read from swap (/proc/vmstat pswpin; since boot)",
    ),
    def(
        "swapscope_swap_device_size_bytes",
        G,
        "counters",
        &["device", "kind"],
        "Size of each active swap device (/proc/swaps)",
    ),
    def(
        "swapscope_swap_device_used_bytes",
        G,
        "counters",
        &["device", "kind"],
        "Swap space in use on each active device (/proc/swaps)",
    ),
    def(
        "swapscope_writeouts_total",
        C,
        "tracepoint",
        &["size"],
        "Swap write-outs seen by the probes, by folio size (since the exporter started)",
    ),
    def(
        "swapscope_events_total",
        C,
        "tracepoint",
        &["kind"],
        "Events the exporter analysed, by kind (writeout, alloc, free, split, swapin, cluster, marker, sample)",
    ),
    def(
        "swapscope_lost_events_total",
        C,
        "tracepoint",
        &[],
        "Events the kernel could not hand over (ring buffer full)",
    ),
    def(
        "swapscope_missed_events_total",
        C,
        "tracepoint",
        &["program"],
        "Hook invocations a BPF program missed (the kernel's recursion_misses), by program",
    ),
    def(
        "swapscope_analysis_skipped_events_total",
        C,
        "tracepoint",
        &[],
        "Events the analysis skipped because it fell behind (the kernel counters are unaffected)",
    ),
    def(
        "swapscope_requests_total",
        C,
        "full",
        &["size"],
        "Swap-space requests the kernel's allocator answered, by folio size",
    ),
    def(
        "swapscope_request_failures_total",
        C,
        "full",
        &["size"],
        "Requests the kernel's allocator refused (no contiguous free slots of that size)",
    ),
    def(
        "swapscope_swapins_total",
        C,
        "full",
        &["size"],
        "Folios read back from swap (swap_read_folio), by folio size",
    ),
    def(
        "swapscope_model_requests_total",
        C,
        "full",
        &["model", "size"],
        "Requests replayed through each allocator model (model real: the kernel's own answers, rebuilt from the stream)",
    ),
    def(
        "swapscope_model_failures_total",
        C,
        "full",
        &["model", "size"],
        "Requests each model could not serve at that size (the folio would be split)",
    ),
    def(
        "swapscope_model_fragmentation_ratio",
        G,
        "full",
        &["model", "size"],
        "Share of each model's free slots that cannot hold an aligned folio of that size (0: none, 1: all)",
    ),
    def(
        "swapscope_model_clusters",
        G,
        "full",
        &["model", "list"],
        "Each model's swap clusters by list (free, nonfull, frag, full, other)",
    ),
    def(
        "swapscope_model_largest_free_run_bytes",
        G,
        "full",
        &["model"],
        "Each model's largest aligned run of free swap space",
    ),
    def(
        "swapscope_model_used_bytes",
        G,
        "full",
        &["model"],
        "Swap space each model has allocated",
    ),
    def(
        "swapscope_model_same_slot_ratio",
        G,
        "full",
        &["model"],
        "Share of the requests both served for which the model picked the kernel's own slot (1: the model reproduces the kernel)",
    ),
    def(
        "swapscope_snapshot_age_seconds",
        G,
        "counters",
        &[],
        "Seconds since the analysis published the snapshot this scrape shows (a stuck pipeline grows it)",
    ),
    def(
        "swapscope_scrapes_total",
        C,
        "counters",
        &[],
        "Scrapes of /metrics served (this one included)",
    ),
    def(
        "process_cpu_seconds_total",
        C,
        "counters",
        &[],
        "CPU time of the swapscope process (user + system)",
    ),
    def(
        "process_resident_memory_bytes",
        G,
        "counters",
        &[],
        "Resident memory of the swapscope process",
    ),
];

/// What the exporter itself adds to a scrape.
#[derive(Clone, Debug, Default)]
pub struct ServeStats {
    pub version: String,
    pub scrapes: u64,
    /// Seconds since the snapshot was published.
    pub snapshot_age_s: f64,
    pub process: ProcessStats,
    /// Page size of the host, in bytes (slot → bytes, order → size label).
    pub page_size: u64,
}

type Labels = Vec<(String, String)>;

/// The samples of one scrape, family by family, before encoding.
#[derive(Default)]
struct Samples {
    families: BTreeMap<&'static str, Vec<(Labels, f64)>>,
}

impl Samples {
    fn add(&mut self, name: &'static str, labels: &[(&str, &str)], v: f64) {
        let labels = labels
            .iter()
            .map(|(k, v)| ((*k).to_string(), (*v).to_string()))
            .collect();
        self.families.entry(name).or_default().push((labels, v));
    }
}

/// The size label of a folio order: `4kB`, `64kB`, `2048kB` (as sysfs spells the sizes).
pub fn size_label(order: u8, page_size: u64) -> String {
    format!("{}kB", (page_size / 1024).max(1) << order)
}

fn by_order(m: &BTreeMap<u8, u64>) -> impl Iterator<Item = (u8, u64)> + '_ {
    m.iter().map(|(k, v)| (*k, *v))
}

/// Collects every sample of a scrape from the snapshot.
fn collect(snap: &Snapshot, stats: &ServeStats) -> Samples {
    let mut s = Samples::default();
    let page = stats.page_size.max(1);
    let tier = snap.info.tier.as_str();
    let models = snap.info.models.join(",");
    s.add(
        "swapscope_info",
        &[
            ("tier", tier),
            ("kernel", &snap.info.kernel_release),
            ("version", &stats.version),
            ("source", &snap.info.source),
            ("models", &models),
        ],
        1.0,
    );
    // The kernel's own counters, as it counts them.
    if let Some(c) = &snap.counters {
        for (name, v) in &c.values {
            let v = *v as f64;
            if let Some((dir, stat)) = name.split_once('/')
                && let Some(kb) = host::mthp_size_kb(dir)
            {
                let family = match stat {
                    "swpout" => "swapscope_mthp_swpout_total",
                    "swpout_fallback" => "swapscope_mthp_swpout_fallback_total",
                    "swpin" => "swapscope_mthp_swpin_total",
                    "swpin_fallback" => "swapscope_mthp_swpin_fallback_total",
                    "split" => "swapscope_mthp_split_total",
                    _ => continue,
                };
                s.add(family, &[("size", &format!("{kb}kB"))], v);
            } else if name == "vmstat/pswpout" {
                s.add("swapscope_pswpout_pages_total", &[], v);
            } else if name == "vmstat/pswpin" {
                s.add("swapscope_pswpin_pages_total", &[], v);
            }
        }
    }
    for d in snap.devices.iter().filter(|d| !d.gone) {
        let labels = [("device", d.path.as_str()), ("kind", d.kind.as_str())];
        s.add(
            "swapscope_swap_device_size_bytes",
            &labels,
            d.slots.saturating_sub(1).saturating_mul(page) as f64,
        );
        if let Some(kb) = d.used_kb {
            s.add(
                "swapscope_swap_device_used_bytes",
                &labels,
                kb.saturating_mul(1024) as f64,
            );
        }
    }
    if tier == "tracepoint" || tier == "full" {
        for (order, n) in snap.writeouts_by_order.iter().enumerate() {
            if *n > 0 {
                let size = size_label(order as u8, page);
                s.add("swapscope_writeouts_total", &[("size", &size)], *n as f64);
            }
        }
        let k = &snap.kinds;
        for (kind, n) in [
            ("writeout", k.writeouts),
            ("alloc", k.allocs),
            ("free", k.frees),
            ("split", k.splits),
            ("swapin", k.swapins),
            ("cluster", k.clusters),
            ("grant", k.grants),
            ("marker", k.markers),
            ("sample", k.samples),
            ("other", k.other),
        ] {
            s.add("swapscope_events_total", &[("kind", kind)], n as f64);
        }
        s.add("swapscope_lost_events_total", &[], snap.lost as f64);
        for (program, n) in &snap.missed {
            s.add(
                "swapscope_missed_events_total",
                &[("program", program)],
                *n as f64,
            );
        }
        s.add(
            "swapscope_analysis_skipped_events_total",
            &[],
            snap.analysis_skipped as f64,
        );
    }
    if tier == "full" {
        for (order, n) in snap.swapins_by_order.iter().enumerate() {
            if *n > 0 {
                let size = size_label(order as u8, page);
                s.add("swapscope_swapins_total", &[("size", &size)], *n as f64);
            }
        }
        for (order, (req, fail)) in snap.requests.iter().zip(&snap.failures).enumerate() {
            if *req > 0 {
                let size = size_label(order as u8, page);
                s.add("swapscope_requests_total", &[("size", &size)], *req as f64);
                s.add(
                    "swapscope_request_failures_total",
                    &[("size", &size)],
                    *fail as f64,
                );
            }
        }
        let real = snap.real.iter().map(|r| ("real", r));
        let models = snap.models.iter().map(|m| (m.name.as_str(), m));
        for (name, m) in real.chain(models) {
            model_samples(&mut s, name, m, page);
        }
    }
    s.add(
        "swapscope_snapshot_age_seconds",
        &[],
        stats.snapshot_age_s.max(0.0),
    );
    s.add("swapscope_scrapes_total", &[], stats.scrapes as f64);
    s.add("process_cpu_seconds_total", &[], stats.process.cpu_seconds);
    s.add(
        "process_resident_memory_bytes",
        &[],
        stats.process.resident_bytes as f64,
    );
    s
}

fn model_samples(s: &mut Samples, name: &str, m: &ModelReport, page: u64) {
    for (order, req) in by_order(&m.requests_by_order) {
        let size = size_label(order, page);
        let fail = m.failures_by_order.get(&order).copied();
        s.add(
            "swapscope_model_requests_total",
            &[("model", name), ("size", &size)],
            req as f64,
        );
        s.add(
            "swapscope_model_failures_total",
            &[("model", name), ("size", &size)],
            fail.unwrap_or(0) as f64,
        );
    }
    for (&order, f) in &m.fragmentation_by_order {
        if f.is_finite() {
            s.add(
                "swapscope_model_fragmentation_ratio",
                &[("model", name), ("size", &size_label(order, page))],
                *f,
            );
        }
    }
    let c = &m.clusters;
    for (list, n) in [
        ("free", c.free),
        ("nonfull", c.nonfull),
        ("frag", c.frag),
        ("full", c.full),
        ("other", c.other),
    ] {
        s.add(
            "swapscope_model_clusters",
            &[("model", name), ("list", list)],
            n as f64,
        );
    }
    s.add(
        "swapscope_model_largest_free_run_bytes",
        &[("model", name)],
        m.largest_free_run.saturating_mul(page) as f64,
    );
    s.add(
        "swapscope_model_used_bytes",
        &[("model", name)],
        m.used_slots.saturating_mul(page) as f64,
    );
    if let Some(r) = m.same_offset_rate.filter(|r| r.is_finite()) {
        s.add("swapscope_model_same_slot_ratio", &[("model", name)], r);
    }
}

/// The exposition format a client asked for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Format {
    /// `text/plain; version=0.0.4`, the classic Prometheus text format.
    Text,
    /// `application/openmetrics-text; version=1.0.0`.
    OpenMetrics,
}

impl Format {
    /// Picks by the `Accept` header: OpenMetrics when the client lists it with a non-zero
    /// quality (as Prometheus does when it prefers it; `q=0` means "not this"), else the
    /// classic text format.
    pub fn from_accept(accept: Option<&str>) -> Self {
        let wants_openmetrics = accept.is_some_and(|a| {
            a.split(',').any(|range| {
                let mut parts = range.split(';');
                let mime = parts.next().unwrap_or("").trim();
                // Parameter names are case-insensitive (RFC 9110): `Q=0` refuses as `q=0` does.
                let q = parts
                    .filter_map(|p| {
                        let (name, value) = p.split_once('=')?;
                        name.trim().eq_ignore_ascii_case("q").then_some(value)
                    })
                    .find_map(|q| q.trim().parse::<f32>().ok())
                    .unwrap_or(1.0);
                mime.eq_ignore_ascii_case("application/openmetrics-text") && q > 0.0
            })
        });
        if wants_openmetrics {
            Format::OpenMetrics
        } else {
            Format::Text
        }
    }

    pub fn content_type(self) -> &'static str {
        match self {
            Format::Text => "text/plain; version=0.0.4; charset=utf-8",
            Format::OpenMetrics => "application/openmetrics-text; version=1.0.0; charset=utf-8",
        }
    }
}

/// Renders one scrape. Families are registered with prometheus-client and encoded as
/// OpenMetrics; [`Format::Text`] converts that to the classic format (see [`to_classic`]).
pub fn render(
    snap: &Snapshot,
    stats: &ServeStats,
    format: Format,
) -> Result<String, std::fmt::Error> {
    let samples = collect(snap, stats);
    let mut reg = Registry::default();
    for d in METRICS {
        let Some(rows) = samples.families.get(d.name) else {
            continue;
        };
        match d.kind {
            Kind::Info => {
                if let Some((labels, _)) = rows.first() {
                    let base = d.name.strip_suffix("_info").unwrap_or(d.name);
                    reg.register(base, d.help, Info::new(labels.clone()));
                }
            }
            Kind::Counter => {
                let fam = Family::<Labels, Counter<f64, AtomicU64>>::default();
                for (labels, v) in rows {
                    fam.get_or_create(labels).inc_by(*v);
                }
                let base = d.name.strip_suffix("_total").unwrap_or(d.name);
                reg.register(base, d.help, fam);
            }
            Kind::Gauge => {
                let fam = Family::<Labels, Gauge<f64, AtomicU64>>::default();
                for (labels, v) in rows {
                    fam.get_or_create(labels).set(*v);
                }
                reg.register(d.name, d.help, fam);
            }
        }
    }
    let mut out = String::new();
    encode(&mut out, &reg)?;
    let out = sorted_samples(&out);
    Ok(match format {
        Format::OpenMetrics => out,
        Format::Text => to_classic(&out),
    })
}

/// The same exposition with each family's samples in label order (prometheus-client writes
/// them in hash order): the same snapshot always gives the same text.
fn sorted_samples(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut run: Vec<&str> = Vec::new();
    let flush = |run: &mut Vec<&str>, out: &mut String| {
        run.sort_unstable();
        for l in run.drain(..) {
            out.push_str(l);
            out.push('\n');
        }
    };
    for line in text.lines() {
        if line.starts_with('#') {
            flush(&mut run, &mut out);
            out.push_str(line);
            out.push('\n');
        } else {
            run.push(line);
        }
    }
    flush(&mut run, &mut out);
    out
}

/// OpenMetrics text → the classic Prometheus text format (0.0.4): a counter's `# TYPE` and
/// `# HELP` name the `_total` series, an info family becomes a gauge named `<name>_info`,
/// `# UNIT` and `# EOF` lines go. Sample lines are the same in both.
pub fn to_classic(om: &str) -> String {
    let mut out = String::with_capacity(om.len());
    // Family name → the name its samples carry in the classic format.
    let mut renamed: BTreeMap<String, (String, &str)> = BTreeMap::new();
    for line in om.lines() {
        if let Some(rest) = line.strip_prefix("# TYPE ") {
            let mut it = rest.split_whitespace();
            if let (Some(name), Some(ty)) = (it.next(), it.next()) {
                let (classic, cty) = match ty {
                    "counter" => (format!("{name}_total"), "counter"),
                    "info" => (format!("{name}_info"), "gauge"),
                    "gauge" => (name.to_string(), "gauge"),
                    _ => (name.to_string(), "untyped"),
                };
                renamed.insert(name.to_string(), (classic, cty));
            }
        }
    }
    for line in om.lines() {
        if line == "# EOF" || line.starts_with("# UNIT ") {
            continue;
        }
        if let Some(rest) = line.strip_prefix("# HELP ") {
            let (name, help) = rest.split_once(' ').unwrap_or((rest, ""));
            let classic = renamed.get(name).map_or(name, |(c, _)| c.as_str());
            let _ = writeln!(out, "# HELP {classic} {help}");
        } else if let Some(rest) = line.strip_prefix("# TYPE ") {
            let name = rest.split_whitespace().next().unwrap_or(rest);
            let (classic, ty) = renamed
                .get(name)
                .map_or((name, "untyped"), |(c, t)| (c.as_str(), *t));
            let _ = writeln!(out, "# TYPE {classic} {ty}");
        } else {
            out.push_str(line);
            out.push('\n');
        }
    }
    out
}

/// The families a tier has (for docs and tests).
pub fn families_of_tier(tier: &str) -> impl Iterator<Item = &'static MetricDef> + '_ {
    let rank = |t: &str| match t {
        "counters" => 0,
        "tracepoint" => 1,
        _ => 2,
    };
    METRICS.iter().filter(move |d| rank(d.tier) <= rank(tier))
}
