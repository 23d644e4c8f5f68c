//! `swapscope-bench` (`cargo xtask bench` runs it): throughput and memory of `report`
//! on large simulated recordings. Results go to stdout as a table and, with `--doc`, into the
//! generated block of docs/performance.md.
//!
//! Two recordings are made from one simulated workload (thp-fragment at 16 GiB by default):
//! * `kernel`: the stream as a 6.18 kernel with the full probe tier would record it: every
//!   request carries linux-6.18's answer (`Success`/`Failure` then order-0 retries), frees name
//!   real slots. This exercises the real-occupancy path as well as the models.
//! * `sim`: the stream as `simulate -o` writes it (virtual slots, no kernel answers).
//!
//! Every measurement runs in a fresh child process (`swapscope-bench --one FILE --models LIST`), so the
//! process peak RSS (`VmHWM`) belongs to that measurement alone.

use std::{
    fmt::Write as _,
    fs::{self, File},
    io::BufWriter,
    path::{Path, PathBuf},
    process::{Command, ExitCode},
    time::Instant,
};

use anyhow::{Context as _, bail};
use serde::{Deserialize, Serialize};
use swapscope_core::{
    alloc::AllocatorModel,
    engine::{Engine, EngineConfig, Parallel},
    event::Event,
    pipeline,
    record::WriterOptions,
    report::ReportBuilder,
    sink::{Sink, SinkError, record::RecordSink},
    source::{
        Source,
        file::FileSource,
        sim::{Answered, SimSource},
    },
    workload::{self, WorkloadSpec},
};
use swapscope_models::{self as models, Linux618};

/// swapscope's benchmarks (`cargo xtask bench`; docs/performance.md): replay throughput and
/// memory on large simulated recordings, or, with `--live`, what the recorder costs a swap
/// storm, or, with `--serve`, the exporter under scrapes. Not installed.
#[derive(clap::Parser, Debug)]
#[command(name = "swapscope-bench")]
pub struct BenchArgs {
    /// The swapscope binary the live and serve benchmarks run (default: `swapscope` beside this
    /// program).
    #[arg(long)]
    pub swapscope: Option<PathBuf>,
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
    /// Measure what the recorder costs a swap storm instead (root): paired runs.
    #[arg(long)]
    pub live: bool,
    /// With `--live`: pairs of runs.
    #[arg(long, default_value_t = 5)]
    pub pairs: u32,
    /// With `--live`: the swapscope binary whose recorder is measured (to compare builds).
    #[arg(long)]
    pub recorder: Option<PathBuf>,
    /// With `--live`: the storm's size in MiB (default: the 600 MiB storm); its cgroup
    /// limit and zram device scale with it (256 and 1024 MiB at 600). 200 with
    /// `--storm-passes 2` suits a TCG guest.
    #[arg(long, default_value_t = 600, value_parser = clap::value_parser!(u32).range(16..=1_048_576))]
    pub storm_mib: u32,
    /// With `--live`: passes over the storm's memory.
    #[arg(long, default_value_t = 3, value_parser = clap::value_parser!(u32).range(1..=100))]
    pub storm_passes: u32,
    /// With `--live`: also write the results as JSON to this file (`cargo xtask bench --live
    /// --vm` reads it).
    #[arg(long)]
    pub summary_json: Option<PathBuf>,
    /// Measure the exporter instead: `serve --demo` scraped at `--rate` per second for
    /// `--seconds` (root).
    #[arg(long)]
    pub serve: bool,
    #[arg(long, default_value_t = 50)]
    pub rate: u32,
    #[arg(long, default_value_t = 60)]
    pub seconds: u64,
    /// Find the highest event rate the live analysis (behind `live` and `serve`) sustains
    /// without skipping, with the default models and with all, on a stream of `--events`
    /// events generated into memory.
    #[arg(long)]
    pub live_analysis: bool,
}

/// The swapscope binary to run: `--swapscope`, else the one beside this program (both are built
/// into the same target directory).
fn swapscope_binary(a: &BenchArgs) -> anyhow::Result<PathBuf> {
    if let Some(p) = &a.swapscope {
        return Ok(p.clone());
    }
    let me = std::env::current_exe().context("finding this executable")?;
    let p = me.with_file_name("swapscope");
    if !p.exists() {
        bail!(
            "no swapscope binary beside {}: build it (cargo build --release -p swapscope) or pass --swapscope PATH",
            me.display()
        );
    }
    Ok(p)
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
    /// The best wall time of whole `swapscope report FILE --json --models LIST` processes, as
    /// a user runs them (the default models only; `None` where not measured).
    whole: Option<f64>,
}

/// The best wall time of `repeat` whole `report --json` processes of `swapscope` on `path`.
fn whole_report(swapscope: &Path, path: &Path, list: &str, repeat: u32) -> anyhow::Result<f64> {
    let mut best = f64::INFINITY;
    for _ in 0..repeat.max(1) {
        let t = Instant::now();
        let out = Command::new(swapscope)
            .arg("report")
            .arg(path)
            .args(["--json", "--models", list])
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::piped())
            .output()
            .with_context(|| format!("starting {}", swapscope.display()))?;
        let secs = t.elapsed().as_secs_f64();
        if !out.status.success() {
            bail!(
                "swapscope report {}: {}",
                path.display(),
                String::from_utf8_lossy(&out.stderr).trim()
            );
        }
        best = best.min(secs);
    }
    Ok(best)
}

pub fn run(a: BenchArgs) -> anyhow::Result<ExitCode> {
    let command = a
        .command
        .clone()
        .unwrap_or_else(|| std::env::args().collect::<Vec<_>>().join(" "));
    if a.live_analysis {
        let (table, before, after) = crate::live_analysis::run(&a)?;
        print!("{table}");
        if let Some(doc) = &a.doc {
            let block = format!(
                "{LIVE_ANALYSIS_BEGIN}\n{}\n\n{table}{LIVE_ANALYSIS_END}\n",
                machine_line(&before, &after)
            );
            write_doc_block(doc, LIVE_ANALYSIS_BEGIN, LIVE_ANALYSIS_END, &block)?;
            eprintln!("swapscope bench: wrote {}", doc.display());
        }
        return Ok(ExitCode::SUCCESS);
    }
    if a.serve {
        let swapscope = swapscope_binary(&a)?;
        return crate::serve::run(&swapscope, a.rate, a.seconds, a.doc.as_ref(), &command);
    }
    if a.live {
        let swapscope = swapscope_binary(&a)?;
        return crate::live::run(&crate::live::LiveOptions {
            swapscope: &swapscope,
            pairs: a.pairs,
            dir: &a.dir,
            doc: a.doc.as_ref(),
            command: &command,
            recorder: a.recorder.as_deref(),
            storm_mib: a.storm_mib,
            storm_passes: a.storm_passes,
            summary_json: a.summary_json.as_deref(),
        });
    }
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
        (
            format!("the {} default models", models::NAMES.len()),
            models::NAMES.join(","),
        ),
    ];
    for n in models::NAMES {
        configs.push(((*n).into(), (*n).into()));
    }
    // Whole processes as users run them, where the swapscope binary is at hand.
    let swapscope = swapscope_binary(&a).ok();
    if swapscope.is_none() {
        eprintln!(
            "swapscope bench: no swapscope binary beside this one: whole `report` processes not timed"
        );
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
                let whole = match &swapscope {
                    Some(exe) if *list == models::NAMES.join(",") => {
                        let secs = whole_report(exe, path, list, a.repeat)?;
                        eprintln!(
                            "swapscope bench: {rec:6} {label:16} {:6.2} M events/s (whole `report` process)",
                            r.events as f64 / secs / 1e6
                        );
                        Some(secs)
                    }
                    _ => None,
                };
                rows.push(Row {
                    recording: rec,
                    label: label.clone(),
                    r,
                    whole,
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
        write_doc(doc, &a.workload, &block)?;
        eprintln!("swapscope bench: wrote {}", doc.display());
    }
    Ok(ExitCode::SUCCESS)
}

/// Counts the events of the workload at its iteration count (streamed, nothing kept).
fn count_events(spec: &WorkloadSpec) -> anyhow::Result<u64> {
    let mut n = 0u64;
    workload::stream(spec, &mut |b| {
        n += b.len() as u64;
        true
    })?;
    Ok(n)
}

/// Finds an iteration count that gives at least `a.events` events, then writes the recordings,
/// each streamed straight from the generator into its file.
fn make_recordings(a: &BenchArgs, kernel: &Path, sim: Option<&PathBuf>) -> anyhow::Result<()> {
    let mut spec = WorkloadSpec::new(&a.workload);
    spec.swap_size_bytes = a.swap_gib << 30;
    // The stream docs/performance.md's figures were measured on (before large-folio swap-in
    // became the default): two CPUs, page-by-page swap-in.
    spec.cpus = 2;
    spec.swapin = swapscope_core::workload::SwapIn::Small;
    let mut iterations = 4u32;
    loop {
        spec.iterations = Some(iterations);
        let t = Instant::now();
        let n = count_events(&spec)?;
        eprintln!(
            "swapscope bench: {} events at {} iterations ({:.1} s to generate)",
            n,
            iterations,
            t.elapsed().as_secs_f64()
        );
        if n >= a.events {
            break;
        }
        // Iterations dominate the count; aim 5 % over.
        let want = (u64::from(iterations) * a.events * 21 / 20).div_ceil(n.max(1));
        iterations = u32::try_from(want.max(u64::from(iterations) + 1))
            .unwrap_or(workload::MAX_ITERATIONS)
            .min(workload::MAX_ITERATIONS);
        if spec.iterations == Some(iterations) {
            bail!("cannot reach {} events with {}", a.events, a.workload);
        }
    }
    let command_line = std::env::args().collect::<Vec<_>>().join(" ");
    if let Some(path) = sim {
        let mut source = SimSource::new(spec.clone())?;
        source.set_command_line(command_line.clone());
        write_recording(&mut source, path)?;
    }
    let mut source = Answered::new(SimSource::new(spec)?, Box::new(Linux618::new()));
    source.set_command_line(command_line);
    write_recording(&mut source, kernel)
}

fn write_recording(source: &mut dyn Source, path: &Path) -> anyhow::Result<()> {
    let file = File::create(path).with_context(|| format!("creating {}", path.display()))?;
    let mut w = RecordSink::create(
        BufWriter::new(file),
        &path.display().to_string(),
        source.header(),
        WriterOptions::default(),
        None,
    )?;
    pipeline::run(source, &mut [&mut w], &mut || false)?;
    let stats = w.stats();
    eprintln!(
        "swapscope bench: wrote {} events ({} bytes) to {}",
        stats.events,
        stats.bytes_written,
        path.display()
    );
    Ok(())
}

/// The child's engine: inline for occupancy only, else split over the cores as `report` runs
/// it.
enum Run {
    Inline(Box<Engine>),
    Parallel(Parallel),
}

/// The child's sink: `report`'s work on every event.
struct Measure {
    /// The report's own accounting (no engine in it).
    b: ReportBuilder,
    engine: Option<Run>,
    slots: u64,
    n: u64,
}

impl Sink for Measure {
    fn push(&mut self, batch: &[Event]) -> Result<(), SinkError> {
        self.push_shared(&std::sync::Arc::new(batch.to_vec()))
    }

    fn push_shared(&mut self, batch: &std::sync::Arc<Vec<Event>>) -> Result<(), SinkError> {
        self.n += batch.len() as u64;
        for ev in batch.iter() {
            if let Event::SwapOn(on) = ev {
                self.slots += on.max.saturating_sub(1 + on.bad.len() as u64);
            }
        }
        match self.engine.as_mut() {
            Some(Run::Inline(e)) => e.feed_all(batch.iter()),
            Some(Run::Parallel(p)) => p.feed_shared(batch),
            None => {}
        }
        self.b.push_batch(batch);
        Ok(())
    }
}

/// The child: `report`'s work (decode, engine, final report) on one recording.
fn measure(file: &Path, list: &str) -> anyhow::Result<RunResult> {
    let models: Vec<Box<dyn AllocatorModel>> = if list == "none" {
        Vec::new()
    } else {
        models::select(&list.split(',').map(String::from).collect::<Vec<_>>())?
            .iter()
            .filter_map(|n| models::by_name(n))
            .collect()
    };
    let names: Vec<String> = models.iter().map(|m| m.name().to_string()).collect();
    let threads = std::thread::available_parallelism().map_or(1, usize::from);
    let mut source = FileSource::open(file)?;
    reset_peak_rss();
    let rss_start_kb = proc_status_kb("VmRSS").unwrap_or(0);
    let engine = if models.is_empty() {
        Run::Inline(Box::new(Engine::new(Vec::new(), EngineConfig::default())))
    } else {
        Run::Parallel(Parallel::new(models, EngineConfig::default(), threads)?)
    };
    let mut m = Measure {
        b: ReportBuilder::default(),
        engine: Some(engine),
        slots: 0,
        n: 0,
    };
    let t = Instant::now();
    // As `report` does it: decoding on a second thread, the models on every core.
    pipeline::run(&mut source, &mut [&mut m], &mut || false)?;
    let (report, peaks, virtual_peak) = match m.engine.take() {
        Some(Run::Inline(e)) => (Some(e.report()), Vec::new(), e.virtual_ids_peak()),
        Some(Run::Parallel(p)) => {
            let f = p
                .finish()
                .ok_or_else(|| anyhow::anyhow!("an engine thread stopped"))?;
            let peaks = f
                .placement
                .iter()
                .map(|&(w, k)| f.engines.get(w).map_or(0, |e| e.mapping_peak(k)))
                .collect();
            let vp = f
                .engines
                .iter()
                .map(Engine::virtual_ids_peak)
                .max()
                .unwrap_or(0);
            (Some(f.report), peaks, vp)
        }
        None => (None, Vec::new(), 0),
    };
    let summary = m.b.finish(0, Vec::new());
    let secs = t.elapsed().as_secs_f64();
    std::hint::black_box((&report, &summary));
    Ok(RunResult {
        events: m.n,
        secs,
        slots: m.slots,
        rss_start_kb,
        hwm_kb: proc_status_kb("VmHWM").unwrap_or(0),
        mapping_peak: names.into_iter().zip(peaks).collect(),
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

pub(super) fn loadavg() -> String {
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
        "| recording | models | events | wall s | M events/s | whole `report --json` process: s (M events/s) | slot map B/slot (engine, peak) | RSS B/slot (process, VmHWM − start) |"
    );
    let _ = writeln!(s, "|---|---|---:|---:|---:|---:|---|---:|");
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
        let whole = row.whole.map_or("–".to_string(), |w| {
            format!("{w:.2} ({:.2})", r.events as f64 / w / 1e6)
        });
        let _ = writeln!(
            s,
            "| {} | {} | {} | {:.2} | {:.2} | {} | {} | {:.2} |",
            row.recording,
            row.label,
            r.events,
            r.secs,
            r.events as f64 / r.secs / 1e6,
            whole,
            map,
            per_slot(r.hwm_kb.saturating_sub(r.rss_start_kb) * 1024, r.slots),
        );
    }
    s
}

/// The markers of a workload's results block in docs/performance.md (thp-fragment's are the
/// original `bench:` ones).
fn markers(workload: &str) -> (String, String) {
    let tag = if workload == "thp-fragment" {
        "bench".to_string()
    } else {
        format!("bench-{workload}")
    };
    (
        format!("<!-- {tag}:begin (generated by `cargo xtask bench`; edit outside) -->"),
        format!("<!-- {tag}:end -->"),
    )
}

/// The machine and load line of a results block.
pub(super) fn machine_line(load_before: &str, load_after: &str) -> String {
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
    let date = std::process::Command::new("date")
        .arg("-u")
        .arg("+%Y-%m-%d %H:%M UTC")
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
        .unwrap_or_default();
    format!(
        "Run {date}. Machine: {cpus} CPUs ({cpu_model}), {mem_gib} GiB RAM, Linux {kernel}. Load \
         average (1, 5, 15 min) before: {load_before}; after: {load_after}."
    )
}

fn doc_block(
    a: &BenchArgs,
    table: &str,
    command: &str,
    load_before: &str,
    load_after: &str,
) -> String {
    let (begin, end) = markers(&a.workload);
    format!(
        "{begin}\n\
         Command: `{command}` ({workload}, {gib} GiB swap, ≥ {events} events per recording, \
         fastest of {repeat}).\n\n\
         {machine}\n\n\
         {table}\n{end}\n",
        workload = a.workload,
        gib = a.swap_gib,
        events = a.events,
        repeat = a.repeat.max(1),
        machine = machine_line(load_before, load_after),
    )
}

/// The markers of the live-analysis block in docs/performance.md.
const LIVE_ANALYSIS_BEGIN: &str = "<!-- bench-live-analysis:begin -->";
const LIVE_ANALYSIS_END: &str = "<!-- bench-live-analysis:end -->";

fn write_doc(path: &Path, workload: &str, block: &str) -> anyhow::Result<()> {
    let (begin, end) = markers(workload);
    write_doc_block(path, &begin, &end, block)
}

/// Replaces the block between `begin` and `end` in a markdown file (or appends it).
pub(super) fn write_doc_block(
    path: &Path,
    begin: &str,
    end: &str,
    block: &str,
) -> anyhow::Result<()> {
    let old = fs::read_to_string(path).unwrap_or_default();
    let new = match (old.find(begin), old.find(end)) {
        (Some(b), Some(e)) if e > b => {
            let tail = old.get(e + end.len()..).unwrap_or("");
            let tail = tail.strip_prefix('\n').unwrap_or(tail);
            format!("{}{block}{tail}", old.get(..b).unwrap_or(""))
        }
        _ if old.is_empty() => format!("# Performance\n\n{block}"),
        _ => format!("{old}\n{block}"),
    };
    fs::write(path, new).with_context(|| format!("writing {}", path.display()))
}
