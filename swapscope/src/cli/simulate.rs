//! `swapscope simulate`: a synthetic workload, streamed through the analysis (and to a
//! recording with `-o`). No root needed.

use std::{io::BufWriter, path::PathBuf, process::ExitCode};

use swapscope::{
    host::output::OutputFile,
    pipeline,
    record::WriterOptions,
    sink::{Sink, record::RecordSink},
    source::{Source as _, sim::SimSource},
    workload::WorkloadSpec,
};

use super::report::{emit, model_names};

#[derive(clap::Args, Debug)]
pub struct SimulateArgs {
    /// One of: thp-fragment, fork-partial-zap, mixed-orders, fill-drain.
    #[arg(long)]
    pub workload: String,
    /// Swap device size, e.g. 64M, 1G, at most 64G (default: the workload's own, 64M).
    #[arg(long, value_name = "SIZE", value_parser = super::args::swap_size, allow_hyphen_values = true)]
    pub swap_size: Option<u64>,
    /// CPUs the requests are spread over (1 to 4096).
    #[arg(long, default_value_t = 1, value_parser = super::args::whole32::<1, 4096>, allow_hyphen_values = true)]
    pub cpus: u32,
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
    /// Iterations after the warm-up, up to 100000 (default: the workload's own).
    #[arg(long, value_parser = super::args::whole32::<0, 100_000>, allow_hyphen_values = true)]
    pub iterations: Option<u32>,
    /// thp-fragment: add the kernel test's 4 MiB small-folio area.
    #[arg(long)]
    pub small: bool,
    /// thp-fragment: swap in single 4 KiB pages (the kernel test's default) instead of whole
    /// 64 KiB chunks (its `-a`, the configuration the published results used; the default here).
    #[arg(long)]
    pub unaligned_swapin: bool,
    /// What a swap-in brings back (thp-fragment, fork-partial-zap): `large` — whole 64 KiB
    /// folios when their entries allow it, as zram does on kernels with large-folio swap-in
    /// (upstream since late 2024); `small` — page by page, the 2024 premise of the kernel test and its published
    /// figures, and what a device without synchronous I/O (a loop device) does.
    #[arg(long, value_enum, default_value = "large")]
    pub swapin: SwapInArg,
    /// Models to compare: `default` (the default set), `all` (every model, the proposals
    /// outside the default set too), or names, comma-separated.
    #[arg(long, value_delimiter = ',', default_value = "default")]
    pub models: Vec<String>,
    /// What-if: replay the generated stream once per device size, FROM%..TO% of --swap-size in
    /// steps of 25 % (or FROM%..TO%:STEP%), and print fallback per order against size for every
    /// model (the workload itself stays the same).
    #[arg(
        long,
        value_name = "FROM%..TO%",
        allow_hyphen_values = true,
        conflicts_with = "output"
    )]
    pub sweep: Option<swapscope::whatif::SweepSpec>,
    /// Print JSON instead of tables.
    #[arg(long)]
    pub json: bool,
    /// Also write the generated stream as a recording that `report` reads (created new, mode
    /// 0600; an existing file is refused unless --force).
    #[arg(short, long)]
    pub output: Option<PathBuf>,
    /// Replace an existing output file (with a new file).
    #[arg(long, requires = "output")]
    pub force: bool,
}

#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum SwapInArg {
    Large,
    Small,
}

pub fn run(a: SimulateArgs) -> anyhow::Result<ExitCode> {
    let names = model_names(&a.models)?;
    let mut spec = WorkloadSpec::new(&a.workload);
    if let Some(b) = a.swap_size {
        spec.swap_size_bytes = b;
    }
    spec.cpus = a.cpus;
    spec.seed = a.seed;
    spec.iterations = a.iterations;
    spec.small = a.small;
    spec.aligned = !a.unaligned_swapin;
    spec.swapin = match a.swapin {
        SwapInArg::Large => swapscope::workload::SwapIn::Large,
        SwapInArg::Small => swapscope::workload::SwapIn::Small,
    };
    if let Some(sweep) = &a.sweep {
        swapscope::whatif::check_sizes(sweep, spec.swap_size_bytes)?;
        let mut progress = swapscope::sink::progress::Progress::new(
            "simulate --sweep",
            std::io::IsTerminal::is_terminal(&std::io::stderr()),
        );
        let s = swapscope::whatif::sweep(
            || SimSource::new(spec.clone()),
            &names,
            sweep,
            &mut progress,
        )?;
        return super::report::emit_sweep(&s, a.json);
    }
    let mut source = SimSource::new(spec)?;
    source.set_command_line(std::env::args().collect::<Vec<_>>().join(" "));
    let mut analysis = swapscope::sink::analysis::Analysis::for_report(
        source.header(),
        &names,
        swapscope::sink::analysis::ReportOptions {
            engine_threads: super::report::engine_threads(),
            ..Default::default()
        },
    );
    super::no_stdout(
        a.output.as_deref(),
        "-o",
        "simulate prints its report on standard output",
    )?;
    let out = a
        .output
        .as_deref()
        .map(|p| OutputFile::create(p, a.force))
        .transpose()?;
    let mut record = match &out {
        Some(out) => Some(RecordSink::create(
            BufWriter::new(out.writer()?),
            &out.path().display().to_string(),
            source.header(),
            WriterOptions::default(),
            None,
        )?),
        None => None,
    };
    let recording = record.is_some();
    let mut sinks: Vec<&mut dyn Sink> = vec![&mut analysis];
    if let Some(r) = record.as_mut() {
        sinks.push(r);
    }
    // With -o, Ctrl-C, SIGTERM and SIGHUP stop the generator: what was written is closed and
    // takes its name (a signal killed it and left FILE.partial behind).
    if recording {
        swapscope::signal::install();
    }
    let result = pipeline::run(&mut source, &mut sinks, &mut || {
        recording && swapscope::signal::stop_requested()
    });
    drop(sinks);
    // What was written stays readable, whatever the result: it takes its name now.
    let closed = record.as_mut().map(RecordSink::close).transpose();
    let committed = out.map(OutputFile::commit).transpose();
    let summary = result?;
    closed?;
    committed?;
    if let (Some(r), Some(path)) = (&record, &a.output) {
        let stats = r.stats();
        eprintln!(
            "swapscope simulate: wrote {} events ({} bytes) to {}{}",
            stats.events,
            stats.bytes_written,
            path.display(),
            if swapscope::signal::stop_requested() {
                " (stopped by a signal: the stream up to there)"
            } else {
                ""
            }
        );
    }
    emit(analysis.report(&summary), a.json)
}
