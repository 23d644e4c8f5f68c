//! `swapscope record`: live → recording (+ status line).

use std::{
    fs::OpenOptions,
    io::{BufWriter, IsTerminal as _},
    os::unix::fs::OpenOptionsExt as _,
    path::PathBuf,
    process::ExitCode,
    time::{Duration, Instant},
};

use anyhow::Context as _;
use swapscope::{
    pipeline, probe,
    record::WriterOptions,
    signal,
    sink::{progress::Progress, record::RecordSink},
    source::{
        Source as _,
        live::{LiveOptions, LiveSource},
    },
};

#[derive(clap::Args, Debug)]
pub struct RecordArgs {
    /// Output file (created with mode 0600; an existing file is replaced).
    #[arg(short, long)]
    pub output: PathBuf,
    /// Stop after this many seconds (default: until Ctrl-C, SIGTERM or the command exits).
    #[arg(long)]
    pub duration: Option<f64>,
    /// Ring buffer size in MiB.
    #[arg(long, default_value_t = 8)]
    pub ringbuf_mib: u32,
    /// Attach only the tracepoint tier, even where fentry/fexit are allowed.
    #[arg(long)]
    pub tracepoint_only: bool,
    /// Lines written to this FIFO become markers in the recording (created when missing).
    /// SIGUSR1 adds a marker too.
    #[arg(long, value_name = "PATH")]
    pub marker_fifo: Option<PathBuf>,
    /// Print the BPF programs' diagnostics (attach-time facts) to stderr; warnings (e.g. a full
    /// ring buffer) are printed anyway.
    #[arg(short, long)]
    pub verbose: bool,
    /// Run the demo workload (`swapscope stress` on a temporary 1 GiB zram device, 64K mTHP)
    /// while recording; it is stopped and cleaned up at the end.
    #[arg(long)]
    pub demo: bool,
    /// A command to run while recording; recording stops when it exits.
    #[arg(last = true)]
    pub command: Vec<String>,
}

pub fn run(a: RecordArgs) -> anyhow::Result<ExitCode> {
    let (inbox, _fifo) = super::live_inputs(a.marker_fifo.as_deref())?;
    let mut source = LiveSource::start(LiveOptions {
        probe: probe::LiveOptions {
            ringbuf_bytes: a.ringbuf_mib.saturating_mul(1 << 20),
            full_tier: !a.tracepoint_only,
            log: Some(super::stderr_log(a.verbose)),
        },
        command: super::command_or_demo(a.demo, &a.command)?,
        markers: Some(inbox),
        command_line: std::env::args().collect::<Vec<_>>().join(" "),
        ..LiveOptions::default()
    })?;
    let file = OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(&a.output)
        .with_context(|| format!("creating {}", a.output.display()))?;
    let name = a.output.display().to_string();
    let mut record = RecordSink::create(
        BufWriter::new(file),
        &name,
        source.header(),
        WriterOptions::default(),
        Some(Duration::from_secs(1)),
    )?;
    let mut progress = Progress::new("swapscope record", std::io::stderr().is_terminal());
    let t0 = Instant::now();
    let end = a.duration.map(|d| t0 + Duration::from_secs_f64(d));
    let result = pipeline::run(&mut source, &mut [&mut record, &mut progress], &mut || {
        signal::stop_requested() || end.is_some_and(|e| Instant::now() >= e)
    });
    // The command may still be cleaning up after the stop was forwarded to it.
    source.wait_command();
    let summary = source_summary(&source, result)?;
    let stats = record.stats();
    let events = record.kernel_events();
    let secs = t0.elapsed().as_secs_f64();
    eprintln!(
        "swapscope record: {} events in {:.1} s ({:.0}/s), {} dropped, {} bytes ({:.2} bytes/event) -> {}",
        events,
        secs,
        events as f64 / secs.max(1e-9),
        progress.dropped,
        stats.bytes_written,
        stats.bytes_written as f64 / (events.max(1)) as f64,
        name
    );
    Ok(match summary.command_failed {
        Some(why) => {
            eprintln!("swapscope record: {why}");
            ExitCode::FAILURE
        }
        None => ExitCode::SUCCESS,
    })
}

fn source_summary(
    source: &LiveSource,
    result: Result<swapscope::source::Summary, pipeline::PipelineError>,
) -> anyhow::Result<swapscope::source::Summary> {
    let mut s = result?;
    // `wait_command` may have learnt how the command ended after the pipeline did.
    if s.command_failed.is_none() {
        s.command_failed = source.summary().command_failed;
    }
    Ok(s)
}
