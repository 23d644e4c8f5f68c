//! `custom-model [RECORDING...]`: registers the first-fit model and replays each recording
//! (default: a full-tier VM recording and a simulated one under swapscope/tests/data) through it beside the built-in
//! models — the report, then the what-if sweep from 50 % to 150 % of the recorded device size.
use std::{path::PathBuf, process::ExitCode};

use custom_model::{NAME, register};
use swapscope_core::{
    models, pipeline,
    sink::analysis::{Analysis, ReportOptions},
    source::{Source, file::FileSource},
    whatif::{self, SweepSpec},
};

fn main() -> ExitCode {
    match run() {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("custom-model: {e}");
            ExitCode::FAILURE
        }
    }
}

fn run() -> Result<(), Box<dyn std::error::Error>> {
    register()?;
    let mut names: Vec<String> = models::NAMES.iter().map(|n| n.to_string()).collect();
    names.push(NAME.to_string());
    let mut files: Vec<PathBuf> = std::env::args_os().skip(1).map(PathBuf::from).collect();
    if files.is_empty() {
        let data = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../swapscope/tests/data");
        files = ["vm-7.3-full-frag.swsc", "sim-thp-fragment.swsc"]
            .iter()
            .map(|f| data.join(f))
            .filter(|p| p.exists())
            .collect();
    }
    for file in &files {
        let mut src = FileSource::open(file)?;
        let mut analysis = Analysis::for_report(src.header(), &names, ReportOptions::default());
        let summary = pipeline::run(&mut src, &mut [&mut analysis], &mut || false)?;
        let report = analysis.report(&summary);
        println!("== {}\n{}", file.display(), report.render_text());
        let spec: SweepSpec = "50%..150%:50%".parse()?;
        let mut quiet = swapscope_core::sink::progress::Progress::new("sweep", false);
        let sweep = whatif::sweep(|| FileSource::open(file), &names, &spec, &mut quiet)?;
        println!("{}", sweep.render_text());
    }
    Ok(())
}
