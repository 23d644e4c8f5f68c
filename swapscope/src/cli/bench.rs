//! `swapscope __bench` (hidden; `cargo xtask bench` runs it): throughput and memory of `report`
//! on large simulated recordings. Results go to stdout as a table and, with `--doc`, into the
//! generated block of docs/performance.md.
//!
//! Two recordings are made from one simulated workload (thp-fragment at 16 GiB by default):
//! * `kernel`: the stream as a 6.18 kernel with the full probe tier would record it: every
//!   request carries linux-6.18's answer (`Success`/`Failure` then order-0 retries), frees name
//!   real slots. This exercises the real-occupancy path as well as the models.
//! * `sim`: the stream as `simulate -o` writes it (virtual slots, no kernel answers).
//!
//! Every measurement runs in a fresh child process (`__bench --one FILE --models LIST`), so the
//! process peak RSS (`VmHWM`) belongs to that measurement alone.

use std::{
    fmt::Write as _,
    fs::{self, File},
    io::{BufReader, BufWriter},
    path::{Path, PathBuf},
    process::{Command, ExitCode},
    time::Instant,
};

use anyhow::{Context as _, bail};
use serde::{Deserialize, Serialize};
use swapscope::{
    alloc::{self, AllocatorModel, Extent},
    engine::{SlotMap, stream_key},
    event::{Alloc, AllocResult, Event, Free, virtual_slot},
    models::{self, Linux618},
    record::{Reader, RecordingHeader, Writer, WriterOptions},
    report::ReportBuilder,
    workload::{self, WorkloadSpec},
};

#[derive(clap::Args, Debug)]
pub struct BenchArgs {
    /// Directory for the recordings (created).
    #[arg(long, default_value = "target/bench")]
    pub dir: PathBuf,
    /// Minimum events per recording.
    #[arg(long, default_value_t = 10_000_000)]
    pub events: u64,
    /// Simulated workload.
    #[arg(long, default_value = "thp-fragment")]
    pub workload: String,
    /// Swap device size in GiB.
    #[arg(long, default_value_t = 16)]
    pub swap_gib: u64,
    /// Runs per measurement; the fastest is reported.
    #[arg(long, default_value_t = 1)]
    pub repeat: u32,
    /// Keep recordings already in `dir` (same workload and size) instead of regenerating them.
    #[arg(long)]
    pub reuse: bool,
    /// Only the `kernel` recording (skip `sim`).
    #[arg(long)]
    pub kernel_only: bool,
    /// Replace the generated block of this markdown file with the results.
    #[arg(long)]
    pub doc: Option<PathBuf>,
    /// The command line to quote in the document (default: this process's).
    #[arg(long)]
    pub command: Option<String>,
    /// Internal: measure one run of this recording and print it as JSON.
    #[arg(long)]
    pub one: Option<PathBuf>,
    /// Internal, with `--one`: comma-separated models, or `none` (occupancy only).
    #[arg(long, default_value = "none")]
    pub models: String,
}

/// One measurement, as the child prints it.
#[derive(Clone, Debug, Serialize, Deserialize)]
struct RunResult {
    events: u64,
    /// Wall time of decoding + engine + final report, sampling excluded.
    secs: f64,
    /// Usable slots of the devices in the stream.
    slots: u64,
    /// `VmRSS` after opening the recording, and `VmHWM` at the end (KiB).
    rss_start_kb: u64,
    hwm_kb: u64,
    /// Per model: the engine's own estimate of its slot-map heap bytes, peak over samples.
    mapping_peak: Vec<(String, u64)>,
    /// The engine's translation of virtual allocations to dense slots (shared by the models),
    /// peak bytes.
    #[serde(default)]
    virtual_peak: u64,
}

/// A row of the results table.
struct Row {
    recording: &'static str,
    label: String,
    r: RunResult,
}

pub fn run(a: BenchArgs) -> anyhow::Result<ExitCode> {
    if let Some(file) = &a.one {
        let r = measure(file, &a.models)?;
        println!("{}", serde_json::to_string(&r)?);
        return Ok(ExitCode::SUCCESS);
    }
    fs::create_dir_all(&a.dir).with_context(|| format!("creating {}", a.dir.display()))?;
    let stem = format!("{}-{}g", a.workload, a.swap_gib);
    let kernel_path = a.dir.join(format!("{stem}-kernel.swsc"));
    let sim_path = a.dir.join(format!("{stem}-sim.swsc"));
    let load_before = loadavg();
    if !(a.reuse && kernel_path.exists() && (a.kernel_only || sim_path.exists())) {
        make_recordings(&a, &kernel_path, (!a.kernel_only).then_some(&sim_path))?;
    }
    let exe = std::env::current_exe().context("finding this executable")?;
    let mut configs: Vec<(String, String)> = vec![
        ("occupancy only".into(), "none".into()),
        ("all six models".into(), models::NAMES.join(",")),
    ];
    for n in models::NAMES {
        configs.push(((*n).into(), (*n).into()));
    }
    let mut recordings = vec![("kernel", &kernel_path)];
    if !a.kernel_only {
        recordings.push(("sim", &sim_path));
    }
    let mut rows = Vec::new();
    for (rec, path) in recordings {
        for (label, list) in &configs {
            let mut best: Option<RunResult> = None;
            for _ in 0..a.repeat.max(1) {
                let out = Command::new(&exe)
                    .arg("__bench")
                    .arg("--one")
                    .arg(path)
                    .arg("--models")
                    .arg(list)
                    .output()
                    .context("starting the measurement child")?;
                if !out.status.success() {
                    bail!(
                        "measuring {label} on {}: {}",
                        path.display(),
                        String::from_utf8_lossy(&out.stderr).trim()
                    );
                }
                let r: RunResult = serde_json::from_slice(&out.stdout)
                    .context("reading the measurement child's result")?;
                if best.as_ref().is_none_or(|b| r.secs < b.secs) {
                    best = Some(r);
                }
            }
            if let Some(r) = best {
                eprintln!(
                    "swapscope bench: {rec:6} {label:16} {:6.2} M events/s",
                    r.events as f64 / r.secs / 1e6
                );
                rows.push(Row {
                    recording: rec,
                    label: label.clone(),
                    r,
                });
            }
        }
    }
    let load_after = loadavg();
    let table = table(&rows);
    print!("{table}");
    if let Some(doc) = &a.doc {
        let command = a
            .command
            .clone()
            .unwrap_or_else(|| std::env::args().collect::<Vec<_>>().join(" "));
        let block = doc_block(&a, &table, &command, &load_before, &load_after);
        write_doc(doc, &block)?;
        eprintln!("swapscope bench: wrote {}", doc.display());
    }
    Ok(ExitCode::SUCCESS)
}

/// Generates the workload with enough iterations for `a.events` events and writes the
/// recordings.
fn make_recordings(a: &BenchArgs, kernel: &Path, sim: Option<&PathBuf>) -> anyhow::Result<()> {
    let mut spec = WorkloadSpec::new(&a.workload);
    spec.swap_size_bytes = a.swap_gib << 30;
    let mut iterations = 4u32;
    let events = loop {
        spec.iterations = Some(iterations);
        let t = Instant::now();
        let events = workload::generate(&spec)?;
        eprintln!(
            "swapscope bench: generated {} events ({} iterations) in {:.1} s",
            events.len(),
            iterations,
            t.elapsed().as_secs_f64()
        );
        let n = events.len() as u64;
        if n >= a.events {
            break events;
        }
        // Iterations dominate the count; aim 5 % over.
        let want = (u64::from(iterations) * a.events * 21 / 20).div_ceil(n.max(1));
        iterations = u32::try_from(want.max(u64::from(iterations) + 1))
            .unwrap_or(workload::MAX_ITERATIONS)
            .min(workload::MAX_ITERATIONS);
        if spec.iterations == Some(iterations) {
            bail!("cannot reach {} events with {}", a.events, a.workload);
        }
    };
    let header = |source: String| RecordingHeader {
        source,
        command_line: std::env::args().collect::<Vec<_>>().join(" "),
        nr_cpus: spec.cpus,
        ..RecordingHeader::default()
    };
    if let Some(path) = sim {
        let mut w = create(path, &header(format!("simulate:{}", a.workload)))?;
        for ev in &events {
            w.push(ev)?;
        }
        finish(w, path)?;
    }
    let mut w = create(
        kernel,
        &header(format!("bench:{} answered by linux-6.18", a.workload)),
    )?;
    with_kernel_results(&events, |ev| w.push(ev))?;
    finish(w, kernel)
}

fn create(path: &Path, header: &RecordingHeader) -> anyhow::Result<Writer<BufWriter<File>>> {
    let file = File::create(path).with_context(|| format!("creating {}", path.display()))?;
    Ok(Writer::create(
        BufWriter::new(file),
        header,
        WriterOptions::default(),
    )?)
}

fn finish(w: Writer<BufWriter<File>>, path: &Path) -> anyhow::Result<()> {
    let (_, stats) = w.finish()?;
    eprintln!(
        "swapscope bench: wrote {} events ({} bytes) to {}",
        stats.events,
        stats.bytes_written,
        path.display()
    );
    Ok(())
}

/// The simulated stream as a 6.18 kernel would record it: linux-6.18 answers every request
/// (a failed large request is followed by 2^order order-0 requests, as after `split_folio`),
/// and every virtual free becomes frees of the real slots behind it.
fn with_kernel_results<E>(
    events: &[Event],
    mut push: impl FnMut(&Event) -> Result<(), E>,
) -> Result<(), E> {
    let mut k = Linux618::new();
    let mut map = SlotMap::new();
    let mut scratch: Vec<Extent> = Vec::new();
    let mut out: Vec<Event> = Vec::new();
    for ev in events {
        out.clear();
        match ev {
            Event::SwapOn(on) => {
                k.swapon(on);
                out.push(ev.clone());
            }
            Event::Alloc(a) if a.result == AllocResult::Unknown => {
                let Some(key) = stream_key(virtual_slot::SWAP_TYPE, virtual_slot::offset(a.id, 0))
                else {
                    continue;
                };
                alloc::serve_folio(&mut k, a.cpu, a.order, &mut scratch, |r| {
                    let result = match r.extents.and_then(|e| e.first()) {
                        Some(e) => AllocResult::Success {
                            swap_type: e.swap_type,
                            offset: e.offset,
                        },
                        None => AllocResult::Failure,
                    };
                    out.push(Event::Alloc(Alloc {
                        order: r.order,
                        result,
                        ..*a
                    }));
                    if let Some(ext) = r.extents {
                        map.insert(key + r.page, ext);
                    }
                });
            }
            Event::Free(f) if f.swap_type == virtual_slot::SWAP_TYPE => {
                let Some(key) = stream_key(f.swap_type, f.offset) else {
                    continue;
                };
                map.remove(key, u64::from(f.nr), |t, off, nr| {
                    k.free(t, off, nr);
                    out.push(Event::Free(Free {
                        swap_type: t,
                        offset: off,
                        nr,
                        ..*f
                    }));
                });
            }
            _ => out.push(ev.clone()),
        }
        for e in &out {
            push(e)?;
        }
    }
    Ok(())
}

/// The child: `report`'s work (decode, engine, final report) on one recording.
fn measure(file: &Path, list: &str) -> anyhow::Result<RunResult> {
    let models: Vec<Box<dyn AllocatorModel>> = if list == "none" {
        Vec::new()
    } else {
        super::report::models_from(&list.split(',').map(String::from).collect::<Vec<_>>())?
    };
    let names: Vec<String> = models.iter().map(|m| m.name().to_string()).collect();
    let f = File::open(file).with_context(|| format!("opening {}", file.display()))?;
    let reader = Reader::open_named(BufReader::new(f), &file.display().to_string())?;
    reset_peak_rss();
    let rss_start_kb = proc_status_kb("VmRSS").unwrap_or(0);
    let mut b = ReportBuilder::with_engine(models);
    let mut peak = vec![0u64; names.len()];
    let mut virtual_peak = 0u64;
    let mut sampling = 0.0;
    let mut sample = |b: &ReportBuilder, peak: &mut [u64]| {
        let t = Instant::now();
        if let Some(e) = b.engine() {
            for (i, p) in peak.iter_mut().enumerate() {
                *p = (*p).max(e.slot_map(i).map_or(0, SlotMap::approx_bytes));
            }
            virtual_peak = virtual_peak.max(e.virtual_ids_bytes());
        }
        sampling += t.elapsed().as_secs_f64();
    };
    let mut slots = 0;
    let mut n = 0u64;
    let t = Instant::now();
    // As `report` does it: decoding on a second thread.
    let reader = super::report::replay(reader, |ev| {
        n += 1;
        if let Event::SwapOn(on) = ev {
            slots += on.max.saturating_sub(1 + on.bad.len() as u64);
        }
        b.push(ev);
        if n.is_multiple_of(1 << 20) {
            sample(&b, &mut peak);
        }
    })?;
    sample(&b, &mut peak);
    let report = b.finish(reader.stats().skipped_records, Vec::new());
    let secs = t.elapsed().as_secs_f64() - sampling;
    std::hint::black_box(&report);
    Ok(RunResult {
        events: n,
        secs,
        slots,
        rss_start_kb,
        hwm_kb: proc_status_kb("VmHWM").unwrap_or(0),
        mapping_peak: names.into_iter().zip(peak).collect(),
        virtual_peak,
    })
}

/// Resets `VmHWM` to the current RSS (`/proc/self/clear_refs` = 5, Linux 4.0+).
fn reset_peak_rss() {
    let _ = fs::write("/proc/self/clear_refs", "5");
}

fn proc_status_kb(field: &str) -> Option<u64> {
    let s = fs::read_to_string("/proc/self/status").ok()?;
    s.lines()
        .find_map(|l| l.strip_prefix(field)?.strip_prefix(':'))?
        .split_whitespace()
        .next()?
        .parse()
        .ok()
}

fn loadavg() -> String {
    fs::read_to_string("/proc/loadavg")
        .map(|s| s.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_else(|_| "unknown".into())
}

fn per_slot(bytes: u64, slots: u64) -> f64 {
    bytes as f64 / slots.max(1) as f64
}

fn table(rows: &[Row]) -> String {
    let mut s = String::new();
    let _ = writeln!(
        s,
        "| recording | models | events | wall s | M events/s | slot map B/slot (engine, peak) | RSS B/slot (process, VmHWM − start) |"
    );
    let _ = writeln!(s, "|---|---|---:|---:|---:|---|---:|");
    for row in rows {
        let r = &row.r;
        let sum: u64 = r.mapping_peak.iter().map(|(_, b)| b).sum();
        let mut map = match r.mapping_peak.len() {
            0 => "–".to_string(),
            1 => format!("{:.2}", per_slot(sum, r.slots)),
            n => format!("{:.2} (sum of {n})", per_slot(sum, r.slots)),
        };
        if r.virtual_peak > 0 {
            let _ = write!(map, " + {:.2} shared", per_slot(r.virtual_peak, r.slots));
        }
        let _ = writeln!(
            s,
            "| {} | {} | {} | {:.2} | {:.2} | {} | {:.2} |",
            row.recording,
            row.label,
            r.events,
            r.secs,
            r.events as f64 / r.secs / 1e6,
            map,
            per_slot(r.hwm_kb.saturating_sub(r.rss_start_kb) * 1024, r.slots),
        );
    }
    s
}

const BEGIN: &str = "<!-- bench:begin (generated by `cargo xtask bench`; edit outside) -->";
const END: &str = "<!-- bench:end -->";

fn doc_block(
    a: &BenchArgs,
    table: &str,
    command: &str,
    load_before: &str,
    load_after: &str,
) -> String {
    let cpus = std::thread::available_parallelism().map_or(0, usize::from);
    let cpu_model = fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("model name")?.split_once(':'))
                .map(|(_, m)| m.trim().to_string())
        })
        .unwrap_or_else(|| "unknown".into());
    let kernel = fs::read_to_string("/proc/sys/kernel/osrelease")
        .map(|s| s.trim().to_string())
        .unwrap_or_default();
    let mem_gib = fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("MemTotal:"))?
                .split_whitespace()
                .next()?
                .parse::<u64>()
                .ok()
        })
        .map_or(0, |kb| kb >> 20);
    format!(
        "{BEGIN}\n\
         Command: `{command}` ({workload}, {gib} GiB swap, ≥ {events} events per recording, \
         fastest of {repeat}).\n\n\
         Machine: {cpus} CPUs ({cpu_model}), {mem_gib} GiB RAM, Linux {kernel}. Load average \
         (1, 5, 15 min) before: {load_before}; after: {load_after}.\n\n\
         {table}\n{END}\n",
        workload = a.workload,
        gib = a.swap_gib,
        events = a.events,
        repeat = a.repeat.max(1),
    )
}

/// Replaces the generated block of `path` (or appends one).
fn write_doc(path: &Path, block: &str) -> anyhow::Result<()> {
    let old = fs::read_to_string(path).unwrap_or_default();
    let new = match (old.find(BEGIN), old.find(END)) {
        (Some(b), Some(e)) if e > b => {
            let tail = old.get(e + END.len()..).unwrap_or("");
            let tail = tail.strip_prefix('\n').unwrap_or(tail);
            format!("{}{block}{tail}", old.get(..b).unwrap_or(""))
        }
        _ if old.is_empty() => format!("# Performance\n\n{block}"),
        _ => format!("{old}\n{block}"),
    };
    fs::write(path, new).with_context(|| format!("writing {}", path.display()))
}
