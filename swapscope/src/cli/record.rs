//! `swapscope record`: live → recording (+ status line).

use std::{
    io::{BufWriter, IsTerminal as _},
    path::PathBuf,
    process::ExitCode,
    time::{Duration, Instant},
};

use swapscope::{
    host::output::OutputFile,
    pipeline, probe,
    record::WriterOptions,
    signal,
    sink::{progress::Progress, record::RecordSink},
    source::{
        Source as _, SourceError,
        live::{LiveOptions, LiveSource},
    },
};

#[derive(clap::Args, Debug)]
pub struct RecordArgs {
    /// Output file: created new with mode 0600 (written as `<FILE>.<pid>.partial` and renamed
    /// when the recording ends). An existing file is refused unless --force.
    #[arg(short, long)]
    pub output: PathBuf,
    /// Replace an existing output file (with a new file; the old one is not written into).
    #[arg(long)]
    pub force: bool,
    /// Keep the command line out of the recording's header (the arguments of a recorded
    /// command may hold secrets); only `swapscope record` and the command's name are kept.
    #[arg(long)]
    pub no_cmdline: bool,
    /// Stop after this many seconds (default: until Ctrl-C, SIGTERM or the command exits).
    #[arg(long, value_name = "SECONDS", value_parser = super::args::seconds, allow_hyphen_values = true)]
    pub duration: Option<f64>,
    /// Ring buffer size in MiB (1 to 1024; rounded up to a power of two).
    #[arg(long, default_value_t = 8, value_parser = super::args::whole32::<1, 1024>, allow_hyphen_values = true)]
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
    // Everything that can be refused is checked before anything is attached, started or
    // created: the command, then the output file.
    let command = super::command_or_demo(a.demo, &a.command)?;
    super::check_command(&command)?;
    let out = OutputFile::create(&a.output, a.force)?;
    super::binary_output(&out, "a recording")?;
    let (inbox, _fifo) = super::live_inputs(a.marker_fifo.as_deref())?;
    let mut source = LiveSource::start(LiveOptions {
        probe: probe::LiveOptions {
            ringbuf_bytes: a.ringbuf_mib.saturating_mul(1 << 20),
            full_tier: !a.tracepoint_only,
            log: Some(super::stderr_log(a.verbose)),
        },
        command_line: super::command_line(a.no_cmdline, "swapscope record", &command),
        command,
        markers: Some(inbox),
        ..LiveOptions::default()
    })?;
    let name = a.output.display().to_string();
    let mut record = RecordSink::create(
        BufWriter::new(out.writer()?),
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
    // The recording is complete (END written) whatever the result: it takes its name now,
    // while the command may still be cleaning up after the stop was forwarded to it. Only a
    // command that never started leaves nothing (the temporary file goes with `out`).
    let closed = record.close();
    if let Err(e @ pipeline::PipelineError::Source(SourceError::CommandStart(_))) = result {
        drop(out);
        return Err(e.into());
    }
    let committed = out.commit();
    source.wait_command();
    let summary = source_summary(&source, result)?;
    closed?;
    committed?;
    let stats = record.stats();
    let events = record.kernel_events();
    let secs = t0.elapsed().as_secs_f64();
    let per_event = if events > 0 {
        format!(
            " ({:.2} bytes/event)",
            stats.bytes_written as f64 / events as f64
        )
    } else {
        String::new()
    };
    eprintln!(
        "swapscope record: {} events in {:.1} s ({:.0}/s), {} dropped, {} bytes{per_event} -> {}",
        events,
        secs,
        events as f64 / secs.max(1e-9),
        progress.dropped,
        stats.bytes_written,
        name
    );
    // What the source warns of (markers dropped beyond the waiting limit, ...): said, not lost.
    for w in &summary.warnings {
        eprintln!(
            "swapscope record: warning: {}",
            swapscope::event::printable(w)
        );
    }
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
