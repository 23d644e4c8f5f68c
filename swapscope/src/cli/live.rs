//! `swapscope live` (live → analysis → TUI, + recording) and `swapscope replay` (recording,
//! paced → analysis → TUI).

use std::{
    io::{BufWriter, Write as _},
    path::PathBuf,
    process::ExitCode,
    time::Duration,
};

use anyhow::Context as _;
use swapscope::{
    host::output::OutputFile,
    pipeline::{PipelineError, Replay, ReplayControl},
    probe,
    record::WriterOptions,
    signal,
    sink::{
        Sink,
        analysis::{Analysis, AnalysisConfig, default_interval_ms},
        record::RecordSink,
    },
    source::{
        Log, Source, SourceError,
        file::Recording,
        live::{LiveOptions, LiveSource},
    },
    tui::{self, Display, Session},
};

use super::report::model_names;

/// Options shared by `live` and `replay`: the models, the series interval, and headless output.
#[derive(clap::Args, Debug)]
pub struct ViewArgs {
    /// Models to replay the stream through: `default` (the default set), `all` (every model),
    /// or names, comma-separated.
    #[arg(long, value_delimiter = ',', default_value = "default")]
    pub models: Vec<String>,
    /// Length of one interval of the time series, in milliseconds of stream time (default:
    /// 1000; 10 for a simulated stream, whose events are 1 µs apart).
    #[arg(long, value_name = "MS", value_parser = super::args::whole::<1, 3_600_000>, allow_hyphen_values = true)]
    pub interval: Option<u64>,
    /// No terminal: draw this many frames (every view, a second apart) and stop.
    #[arg(long, value_name = "FRAMES", value_parser = super::args::whole32::<1, 1_000_000>, allow_hyphen_values = true)]
    pub headless: Option<u32>,
    /// With --headless: append every frame, as text, to this file.
    #[arg(long, value_name = "FILE", requires = "headless")]
    pub frame_dump: Option<PathBuf>,
    /// At exit, write what the session saw (counts, kernel counters, devices, models) as JSON.
    #[arg(long, value_name = "FILE")]
    pub summary_json: Option<PathBuf>,
}

#[derive(clap::Args, Debug)]
pub struct LiveArgs {
    /// Also record the session to this file: created new with mode 0600 (as
    /// `<FILE>.<pid>.partial` until the session ends); an existing file is refused unless
    /// --force.
    #[arg(long, value_name = "FILE")]
    pub record: Option<PathBuf>,
    /// Replace an existing --record file (with a new file).
    #[arg(long, requires = "record")]
    pub force: bool,
    /// Keep the command line out of the recording's header (see `record --no-cmdline`).
    #[arg(long, requires = "record")]
    pub no_cmdline: bool,
    /// Run a demo workload (`swapscope stress` on a temporary 1 GiB zram device, 64K mTHP) so
    /// there is swapping to watch; stopped and cleaned up on exit.
    #[arg(long)]
    pub demo: bool,
    /// Lines written to this FIFO become markers (created when missing). SIGUSR1 and the `m`
    /// key add markers too.
    #[arg(long, value_name = "PATH")]
    pub marker_fifo: Option<PathBuf>,
    /// Ring buffer size in MiB (1 to 1024; rounded up to a power of two).
    #[arg(long, default_value_t = 8, value_parser = super::args::whole32::<1, 1024>, allow_hyphen_values = true)]
    pub ringbuf_mib: u32,
    /// Attach only the tracepoint tier, even where fentry/fexit are allowed.
    #[arg(long)]
    pub tracepoint_only: bool,
    /// Also print the BPF programs' diagnostics to stderr when the session ends (they are in
    /// the Events view's log pane either way).
    #[arg(short, long)]
    pub verbose: bool,
    #[command(flatten)]
    pub view: ViewArgs,
    /// A command to run while watching; the session ends when it exits.
    #[arg(last = true)]
    pub command: Vec<String>,
}

#[derive(clap::Args, Debug)]
pub struct ReplayArgs {
    /// The recording.
    pub file: PathBuf,
    /// Stream seconds per second: 1 is real time, `max` as fast as the analysis goes.
    #[arg(long, default_value = "1", value_parser = parse_speed, allow_hyphen_values = true)]
    pub speed: f64,
    #[command(flatten)]
    pub view: ViewArgs,
}

pub(super) fn parse_speed(s: &str) -> Result<f64, String> {
    if s == "max" {
        return Ok(f64::INFINITY);
    }
    match s.parse::<f64>() {
        Ok(v) if v.is_finite() && v > 0.0 && v <= 1e9 => Ok(v),
        _ => Err(format!(
            "{s:?} is not a speed: give a positive number (1 = real time) or `max`"
        )),
    }
}

fn analysis(
    header: &swapscope::record::RecordingHeader,
    v: &ViewArgs,
    mode: String,
) -> anyhow::Result<Analysis> {
    let ms = v.interval.unwrap_or_else(|| default_interval_ms(header));
    Ok(Analysis::new(
        header,
        &model_names(&v.models)?,
        AnalysisConfig {
            interval_ns: ms * 1_000_000,
            mode,
            ..AnalysisConfig::default()
        },
    ))
}

fn display(v: &ViewArgs) -> Display {
    match v.headless {
        Some(frames) => Display::Headless {
            frames,
            every: Duration::from_secs(1),
            width: 160,
            height: 48,
            dump: v.frame_dump.clone(),
        },
        None => Display::Terminal,
    }
}

fn finish(v: &ViewArgs, outcome: tui::Outcome) -> anyhow::Result<ExitCode> {
    if let Some(p) = &v.summary_json {
        let mut value = serde_json::to_value(outcome.last.summary())?;
        if let Some(o) = value.as_object_mut() {
            o.insert("ui".into(), serde_json::to_value(outcome.frames)?);
        }
        let json = serde_json::to_string_pretty(&value)?;
        let out = OutputFile::create(p, true)?;
        let mut w = out.writer()?;
        w.write_all((json + "\n").as_bytes())
            .with_context(|| format!("writing {}", out.partial_path().display()))?;
        out.commit()?;
    }
    let summary = outcome.result?;
    for w in &summary.warnings {
        eprintln!("swapscope: warning: {w}");
    }
    Ok(match summary.command_failed {
        Some(why) => {
            eprintln!("swapscope live: {why}");
            ExitCode::FAILURE
        }
        None => ExitCode::SUCCESS,
    })
}

pub fn live(a: LiveArgs) -> anyhow::Result<ExitCode> {
    let command = super::command_or_demo(a.demo, &a.command)?;
    super::check_command(&command)?;
    super::no_stdout(
        a.record.as_deref(),
        "--record",
        "live draws on standard output",
    )?;
    let out = a
        .record
        .as_deref()
        .map(|p| OutputFile::create(p, a.force))
        .transpose()?;
    let (inbox, _fifo) = super::live_inputs(a.marker_fifo.as_deref())?;
    let log = Log::default();
    let headless = a.view.headless.is_some();
    let source = LiveSource::start(LiveOptions {
        probe: probe::LiveOptions {
            ringbuf_bytes: a.ringbuf_mib.saturating_mul(1 << 20),
            full_tier: !a.tracepoint_only,
            log: Some(pane_log(log.clone(), headless)),
        },
        command_line: super::command_line(a.no_cmdline, "swapscope live", &command),
        command,
        markers: Some(inbox.clone()),
        label: if a.demo {
            "live:demo".into()
        } else {
            "live".into()
        },
        command_output: (!headless).then(|| log.clone()),
        ..LiveOptions::default()
    })?;
    let mut sinks: Vec<Box<dyn Sink + Send>> = Vec::new();
    let mut note = String::new();
    if let Some(out) = &out {
        sinks.push(Box::new(record_sink(out, source.header())?));
        note = format!("recording → {}", out.path().display());
    }
    if a.demo {
        note = format!(
            "demo workload (swapscope stress){}{note}",
            if note.is_empty() { "" } else { "  " }
        );
    }
    let analysis = analysis(source.header(), &a.view, "live".into())?;
    let verbose_log = a.verbose.then(|| log.clone());
    let outcome = tui::run(
        Session {
            source: Box::new(source),
            sinks,
            analysis,
            replay: None,
            markers: Some(inbox),
            note,
            log,
            publish_every: Duration::from_millis(250),
            lossy: true,
        },
        display(&a.view),
    );
    // The session's sinks are closed: the recording (whatever ended the session) takes its
    // name, unless the command never started (then there is nothing to keep).
    let never_started = outcome.as_ref().is_ok_and(|o| {
        matches!(
            o.result,
            Err(PipelineError::Source(SourceError::CommandStart(_)))
        )
    });
    let committed = if never_started {
        drop(out);
        Ok(None)
    } else {
        out.map(OutputFile::commit).transpose()
    };
    let outcome = outcome?;
    committed?;
    if let Some(l) = verbose_log {
        for line in l.lines().iter().filter(|l| l.starts_with("bpf ")) {
            eprintln!("swapscope: {line}");
        }
    }
    finish(&a.view, outcome)
}

/// BPF diagnostics into the log pane (and, headless, to stderr as well).
fn pane_log(log: Log, headless: bool) -> probe::LogFn {
    std::sync::Arc::new(move |level, line| {
        let line = format!("bpf {}: {line}", level.as_str().to_lowercase());
        if headless {
            eprintln!("swapscope: {line}");
        }
        log.push(line);
    })
}

/// The recorder of a live session (`live --record`, `serve --record`): a chunk a second.
pub(super) fn record_sink(
    out: &OutputFile,
    header: &swapscope::record::RecordingHeader,
) -> anyhow::Result<RecordSink<BufWriter<std::fs::File>>> {
    Ok(RecordSink::create(
        BufWriter::new(out.writer()?),
        &out.path().display().to_string(),
        header,
        WriterOptions::default(),
        Some(Duration::from_secs(1)),
    )?)
}

pub fn replay(a: ReplayArgs) -> anyhow::Result<ExitCode> {
    signal::install();
    let control = ReplayControl::new(a.speed);
    let recording = Recording::open(&a.file)?;
    let replay = Replay::new(
        move || Ok(Box::new(recording.source()?) as Box<dyn Source + Send>),
        control.clone(),
    )?;
    let name = a.file.file_name().map_or_else(
        || a.file.display().to_string(),
        |n| n.to_string_lossy().into_owned(),
    );
    let analysis = analysis(replay.header(), &a.view, format!("replay {name}"))?;
    let outcome = tui::run(
        Session {
            source: Box::new(replay),
            sinks: Vec::new(),
            analysis,
            replay: Some(control),
            markers: None,
            note: String::new(),
            log: Log::default(),
            publish_every: Duration::from_millis(250),
            lossy: false,
        },
        display(&a.view),
    )?;
    finish(&a.view, outcome)
}
