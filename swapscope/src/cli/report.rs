//! `swapscope report FILE [--json] [--models a,b]`: file → analysis → text or JSON.

use std::{io::IsTerminal as _, path::Path, process::ExitCode};

use anyhow::bail;
use swapscope::{
    models, pipeline,
    report::Report,
    sink::analysis::{Analysis, AnalysisConfig},
    source::{Source as _, file::FileSource},
};

/// The model names asked for, checked; none means the default set (`models::NAMES`).
pub fn model_names(names: &[String]) -> anyhow::Result<Vec<String>> {
    if names.is_empty() {
        return Ok(models::NAMES.iter().map(|n| n.to_string()).collect());
    }
    for n in names {
        if models::by_name(n).is_none() {
            bail!(
                "unknown model {n:?}; known: {}",
                models::NAMES
                    .iter()
                    .chain(models::EXTRA_NAMES)
                    .copied()
                    .collect::<Vec<_>>()
                    .join(", ")
            );
        }
    }
    Ok(names.to_vec())
}

/// The analysis `report` and `simulate` use: no viewer state.
pub fn report_analysis(header: &swapscope::record::RecordingHeader, names: &[String]) -> Analysis {
    Analysis::new(
        header,
        names,
        AnalysisConfig {
            views: false,
            ..AnalysisConfig::default()
        },
    )
}

pub fn emit(report: Report, json: bool) -> anyhow::Result<ExitCode> {
    if json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        print!("{}", report.render_text());
    }
    Ok(ExitCode::SUCCESS)
}

pub fn run(file: &Path, json: bool, model_names_arg: &[String]) -> anyhow::Result<ExitCode> {
    let names = model_names(model_names_arg)?;
    let mut source = FileSource::open(file)?;
    let mut analysis = report_analysis(source.header(), &names);
    let summary = pipeline::run(&mut source, &mut [&mut analysis], &mut || false)?;
    // The text report lists the warnings itself: on a terminal they are not repeated on stderr.
    if json || !std::io::stdout().is_terminal() {
        for w in &summary.warnings {
            eprintln!("swapscope: warning: {}: {w}", file.display());
        }
    }
    emit(analysis.report(&summary), json)
}
