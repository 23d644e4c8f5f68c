//! `swapscope serve`: live source (or a recording, paced) → analysis on its thread (+ recorder)
//! → `/metrics`. The tier is what the host allows: full, tracepoint, or counters (no BPF).

use std::{net::SocketAddr, path::PathBuf, process::ExitCode, time::Duration};

use swapscope::{
    host::{self, output::OutputFile},
    pipeline::{self, Replay, ReplayControl},
    probe,
    serve::{ServeConfig, Server},
    signal,
    sink::{
        Sink,
        analysis::{Analysis, AnalysisConfig, Threaded},
    },
    source::{
        Source,
        file::Recording,
        live::{LiveOptions, LiveSource},
    },
};

use super::report::model_names;

#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum TierArg {
    /// The most the host allows: full, else tracepoint, else counters.
    Auto,
    /// No BPF: sysfs and procfs counters only (any host, no root needed).
    Counters,
    /// The write-out tracepoint (fails when it cannot attach).
    Tracepoint,
    /// Every request, free and split, and the models (fails when fentry/fexit are refused).
    Full,
}

#[derive(clap::Args, Debug)]
pub struct ServeArgs {
    /// Address and port to serve /metrics and /healthz on. Loopback by default; give another
    /// address explicitly to be scraped from elsewhere (port 0: any free port).
    #[arg(long, default_value = "127.0.0.1:9866", value_name = "ADDR:PORT", value_parser = listen_addr)]
    pub listen: SocketAddr,
    /// Models to replay the stream through (full tier only): `default` (the default set),
    /// `all` (every model), or names, comma-separated.
    #[arg(long, value_delimiter = ',', default_value = "default")]
    pub models: Vec<String>,
    /// Also record everything to this file (created new, 0600; `<FILE>.<pid>.partial` until
    /// the exporter stops); an existing file is refused unless --force.
    #[arg(long, value_name = "FILE")]
    pub record: Option<PathBuf>,
    /// Replace an existing --record file.
    #[arg(long, requires = "record")]
    pub force: bool,
    /// Seconds between samples of the kernel's counters and /proc/swaps (and between analysis
    /// snapshots).
    #[arg(long, default_value = "1", value_name = "S", value_parser = super::args::duration, allow_hyphen_values = true)]
    pub interval: Duration,
    /// Which tier to run.
    #[arg(long, value_enum, default_value = "auto")]
    pub tier: TierArg,
    /// Serve a recording instead of this host, paced by its timestamps (dashboards without
    /// root; the tier is the recording's).
    #[arg(long, value_name = "FILE", conflicts_with_all = ["record", "tier", "demo"])]
    pub replay: Option<PathBuf>,
    /// With --replay: stream seconds per second (1 = real time).
    #[arg(long, default_value = "1", requires = "replay", value_parser = super::live::parse_speed, allow_hyphen_values = true)]
    pub speed: f64,
    /// Run the demo workload (`swapscope stress` on a temporary zram device) while serving;
    /// the exporter stops when it ends.
    #[arg(long)]
    pub demo: bool,
}

pub fn run(a: ServeArgs) -> anyhow::Result<ExitCode> {
    signal::install();
    let names = model_names(&a.models)?;
    let command = super::command_or_demo(a.demo, &[])?;
    let out = a
        .record
        .as_deref()
        .map(|p| OutputFile::create(p, a.force))
        .transpose()?;
    if let Some(o) = &out {
        super::binary_output(o, "a recording")?;
    }
    let mut source: Box<dyn Source + Send> = match &a.replay {
        Some(file) => {
            let recording = Recording::open(file)?;
            // The replay ends with the recording: the analysis then says so (/healthz "ok:
            // the stream ended"; it went stale), and the last figures are served until SIGTERM.
            let control = ReplayControl::new(a.speed);
            control.set_hold_at_end(false);
            Box::new(Replay::new(
                move || Ok(Box::new(recording.source()?) as Box<dyn Source + Send>),
                control,
            )?)
        }
        None => Box::new(live_source(&a, command)?),
    };
    let header = source.header().clone();
    let interval_ns = u64::try_from(a.interval.as_nanos()).unwrap_or(u64::MAX);
    let analysis = Analysis::new(&header, &names, AnalysisConfig::serve(interval_ns));
    let info = analysis.info().clone();
    let mut threaded = Threaded::spawn(analysis, a.interval, a.replay.is_none())?;
    let shared = threaded.shared();
    let replaying = a.replay.is_some();
    let mut server = Server::start(
        ServeConfig {
            listen: a.listen,
            page_size: u64::from(if header.page_size > 0 {
                header.page_size
            } else {
                host::page_size()
            }),
            stale_after: (a.interval * 3).max(Duration::from_secs(10)),
            ..ServeConfig::default()
        },
        threaded.shared(),
    )?;
    eprintln!(
        "swapscope serve: http://{}/metrics, tier {}{}",
        server.local_addr(),
        info.tier,
        tier_note(&header.probe_plan, &info.tier)
    );
    if !server.local_addr().ip().is_loopback() {
        eprintln!(
            "swapscope serve: warning: listening beyond loopback ({}): /metrics and /healthz have no authentication; let only the scraper reach the port (firewall, or a reverse proxy with TLS and auth)",
            server.local_addr()
        );
    }
    let mut record = match &out {
        Some(o) => Some(super::live::record_sink(o, source.header())?),
        None => None,
    };
    let result = {
        let mut sinks: Vec<&mut dyn Sink> = vec![&mut threaded];
        if let Some(r) = record.as_mut() {
            sinks.push(r);
        }
        pipeline::run(source.as_mut(), &mut sinks, &mut || {
            // SIGTERM during a replay: what the analysis has queued is dropped, so serve ends
            // at once (a live source's queue is short: it is analysed to its end).
            let stop = signal::stop_requested();
            if stop && replaying {
                shared.abandon();
            }
            stop
        })
    };
    source.wait();
    if a.replay.is_some() && result.is_ok() && !signal::stop_requested() {
        eprintln!(
            "swapscope serve: the recording ended; its last figures are served until SIGTERM"
        );
        signal::wait_for_stop();
    }
    server.stop();
    drop(threaded);
    if let Some(mut r) = record {
        r.close()?;
    }
    let committed = out.map(OutputFile::commit).transpose();
    let summary = result?;
    committed?;
    Ok(match summary.command_failed {
        Some(why) => {
            eprintln!("swapscope serve: {why}");
            ExitCode::FAILURE
        }
        None => ExitCode::SUCCESS,
    })
}

/// The live source for the tier asked: `auto` falls back to the counters tier when the probes
/// cannot load (not root, lockdown, no BTF), saying why.
fn live_source(a: &ServeArgs, command: Vec<String>) -> anyhow::Result<LiveSource> {
    let opts = LiveOptions {
        probe: probe::LiveOptions {
            full_tier: matches!(a.tier, TierArg::Auto | TierArg::Full),
            log: Some(super::stderr_log(false)),
            ..probe::LiveOptions::default()
        },
        command_line: super::command_line(true, "swapscope serve", &command),
        label: if a.demo {
            "serve:demo".into()
        } else {
            "serve".into()
        },
        sample_every: a.interval,
        command,
        ..LiveOptions::default()
    };
    Ok(match a.tier {
        TierArg::Counters => LiveSource::counters_only(opts, "--tier counters")?,
        TierArg::Auto => match LiveSource::start(opts.clone()) {
            Ok(s) => s,
            Err(e) => LiveSource::counters_only(opts, &e.to_string())?,
        },
        TierArg::Tracepoint => LiveSource::start(opts)?,
        TierArg::Full => {
            let s = LiveSource::start(opts)?;
            if probe::tier(s.plan()) != "full" {
                let why: Vec<String> = s
                    .plan()
                    .iter()
                    .filter(|p| !p.attached)
                    .map(|p| format!("{} {}: {}", p.kind, p.name, p.detail))
                    .collect();
                anyhow::bail!(
                    "the full tier is not available on this host ({}); use --tier auto",
                    why.join("; ")
                );
            }
            s
        }
    })
}

/// Why a tier is lower than full, for the start line.
fn tier_note(plan: &[swapscope::record::ProbeStatus], tier: &str) -> String {
    match tier {
        "counters" => plan
            .iter()
            .find(|p| !p.attached)
            .map(|p| format!(" ({})", p.detail))
            .unwrap_or_default(),
        "tracepoint" => " (fentry/fexit not attached: no requests, frees or models)".into(),
        _ => String::new(),
    }
}

/// `--listen`: `ADDR:PORT`, or `HOST:PORT` resolved (the first address; `localhost:9866` is
/// loopback).
fn listen_addr(s: &str) -> Result<SocketAddr, String> {
    if let Ok(a) = s.parse::<SocketAddr>() {
        return Ok(a);
    }
    use std::net::ToSocketAddrs as _;
    let mut addrs = s
        .to_socket_addrs()
        .map_err(|e| format!("{s:?} is no ADDR:PORT or HOST:PORT ({e}); e.g. 127.0.0.1:9866"))?;
    addrs
        .next()
        .ok_or_else(|| format!("{s:?} resolves to no address"))
}
