//! `swapscope report FILE [--json] [--models L] [--swap-size SIZE | --sweep A%..B%]`: file →
//! analysis → text or JSON; with `--sweep`, one replay per device size → the what-if table.

use std::{io::IsTerminal as _, path::Path, process::ExitCode};

use swapscope::{
    engine::DeviceSize,
    models, pipeline,
    report::Report,
    sink::{
        analysis::{Analysis, ReportOptions},
        progress::Progress,
    },
    source::{Source as _, file::FileSource},
    whatif,
};

/// The model names asked for (`--models all|default|LIST`), checked; none means the default
/// set.
pub fn model_names(names: &[String]) -> anyhow::Result<Vec<String>> {
    Ok(models::select(names)?)
}

pub fn emit(report: Report, json: bool) -> anyhow::Result<ExitCode> {
    if json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        print!("{}", report.render_text());
    }
    Ok(ExitCode::SUCCESS)
}

/// `report --sweep`/`simulate --sweep`: the what-if table, or its JSON.
pub fn emit_sweep(sweep: &whatif::Sweep, json: bool) -> anyhow::Result<ExitCode> {
    if json {
        println!("{}", serde_json::to_string_pretty(sweep)?);
    } else {
        print!("{}", sweep.render_text());
    }
    Ok(ExitCode::SUCCESS)
}

/// Threads the models of a report may run on: the cores this process may use (the decoder has
/// a thread of its own, mostly waiting on the engines).
pub(crate) fn engine_threads() -> usize {
    std::thread::available_parallelism().map_or(1, usize::from)
}

pub fn run(
    file: &Path,
    json: bool,
    model_names_arg: &[String],
    swap_size: Option<u64>,
    sweep: Option<&whatif::SweepSpec>,
    divergences: usize,
    free_running: bool,
) -> anyhow::Result<ExitCode> {
    let names = model_names(model_names_arg)?;
    if let Some(spec) = sweep {
        let mut progress = Progress::new("report --sweep", std::io::stderr().is_terminal());
        let s = whatif::sweep(|| FileSource::open(file), &names, spec, &mut progress)?;
        return emit_sweep(&s, json);
    }
    let mut source = FileSource::open(file)?;
    let mut analysis = Analysis::for_report(
        source.header(),
        &names,
        ReportOptions {
            device_size: swap_size.map(DeviceSize::Bytes),
            divergences,
            free_running,
            engine_threads: engine_threads(),
        },
    );
    let summary = pipeline::run(&mut source, &mut [&mut analysis], &mut || false)?;
    // The text report lists the warnings itself: on a terminal they are not repeated on stderr.
    if json || !std::io::stdout().is_terminal() {
        for w in &summary.warnings {
            eprintln!("swapscope: warning: {}: {w}", file.display());
        }
    }
    emit(analysis.report(&summary), json)
}
