//! `swapscope export FILE --format csv|parquet -o OUT [--kinds LIST | --intervals]`: file →
//! export sink (+ the status line on a terminal). docs/export.md.

use std::{
    fs::File,
    io::{BufWriter, IsTerminal as _},
    path::PathBuf,
    process::ExitCode,
};

use swapscope::{
    export::{EventExport, Format, IntervalExport, KindFilter},
    host::output::OutputFile,
    pipeline,
    sink::{
        Sink,
        analysis::{Analysis, AnalysisConfig, default_interval_ms},
        progress::Progress,
    },
    source::{Source as _, file::FileSource},
};

use super::report::model_names;

#[derive(clap::Args, Debug)]
pub struct ExportArgs {
    /// The recording.
    pub file: PathBuf,
    /// csv or parquet (zstd-compressed).
    #[arg(long, value_parser = parse_format)]
    pub format: Format,
    /// The file to write: created new with mode 0600 (as `<OUT>.<pid>.partial` until complete);
    /// an existing file is refused unless --force.
    #[arg(short, long, value_name = "OUT")]
    pub output: PathBuf,
    /// Replace an existing output file (with a new file).
    #[arg(long)]
    pub force: bool,
    /// Only these event kinds, comma-separated: writeout, alloc, free, split, swapin, cluster,
    /// grant, marker, counters, devices, lost, swapon, swapoff (default: all).
    #[arg(long, value_name = "LIST", value_parser = parse_kinds, conflicts_with = "intervals")]
    pub kinds: Option<KindFilter>,
    /// Write the analysis's per-interval metrics (kernel and each model, per order) instead
    /// of the events.
    #[arg(long)]
    pub intervals: bool,
    /// With --intervals: the models, comma-separated (default: the default set).
    #[arg(long, value_delimiter = ',', requires = "intervals")]
    pub models: Vec<String>,
    /// With --intervals: length of one interval in milliseconds of stream time (default: 1000;
    /// 10 for a simulated stream, whose events are 1 µs apart).
    #[arg(long, value_name = "MS", requires = "intervals", value_parser = super::args::whole::<1, 3_600_000>, allow_hyphen_values = true)]
    pub interval: Option<u64>,
}

fn parse_format(s: &str) -> Result<Format, String> {
    Format::parse(s).map_err(|e| e.to_string())
}

fn parse_kinds(s: &str) -> Result<KindFilter, String> {
    KindFilter::parse(s).map_err(|e| e.to_string())
}

/// The two exports, as one sink.
enum Export {
    Events(EventExport<BufWriter<File>>),
    Intervals(Box<IntervalExport<BufWriter<File>>>),
}

impl Export {
    fn sink(&mut self) -> &mut dyn Sink {
        match self {
            Export::Events(e) => e,
            Export::Intervals(e) => e.as_mut(),
        }
    }

    fn rows(&self) -> u64 {
        match self {
            Export::Events(e) => e.rows(),
            Export::Intervals(e) => e.rows(),
        }
    }
}

pub fn run(a: ExportArgs) -> anyhow::Result<ExitCode> {
    let names = if a.intervals {
        model_names(&a.models)?
    } else {
        Vec::new()
    };
    let mut source = FileSource::open(&a.file)?;
    let out = OutputFile::create(&a.output, a.force)?;
    if a.format == Format::Parquet {
        super::binary_output(&out, "Parquet")?;
    }
    let writer = BufWriter::with_capacity(1 << 20, out.writer()?);
    let shown = out.shown();
    let header = source.header().clone();
    let mut export = if a.intervals {
        let ms = a.interval.unwrap_or_else(|| default_interval_ms(&header));
        let analysis = Analysis::new(
            &header,
            &names,
            AnalysisConfig {
                interval_ns: ms * 1_000_000,
                views: false,
                ..AnalysisConfig::default()
            },
        );
        Export::Intervals(Box::new(IntervalExport::new(
            a.format, writer, &shown, &header, analysis,
        )?))
    } else {
        Export::Events(EventExport::new(
            a.format,
            writer,
            &shown,
            &header,
            a.kinds.unwrap_or_default(),
        )?)
    };
    let mut progress = Progress::new("export", std::io::stderr().is_terminal());
    // Ctrl-C, SIGTERM, SIGHUP: stop reading, and leave nothing behind (the temporary file is
    // removed when `out` is dropped uncommitted).
    swapscope::signal::install();
    let summary = pipeline::run(
        &mut source,
        &mut [export.sink(), &mut progress],
        &mut swapscope::signal::stop_requested,
    )?;
    if swapscope::signal::stop_requested() {
        anyhow::bail!("interrupted by a signal: {shown} was not written");
    }
    // Complete (footer written, flushed by the sink's finish): it takes its name now.
    out.commit()?;
    for w in &summary.warnings {
        eprintln!("swapscope: warning: {}: {w}", a.file.display());
    }
    eprintln!(
        "swapscope export: wrote {} rows to {shown}{}",
        export.rows(),
        match &export {
            Export::Intervals(e) => format!(" ({} intervals)", e.intervals()),
            Export::Events(_) => String::new(),
        }
    );
    Ok(ExitCode::SUCCESS)
}
