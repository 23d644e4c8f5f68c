//! `swapscope report FILE [--json] [--models a,b]`.

use std::{fs::File, io::BufReader, path::Path, process::ExitCode};

use anyhow::bail;
use swapscope::{
    alloc::AllocatorModel,
    models,
    record::Reader,
    report::{Report, ReportBuilder},
};

/// The models named on the command line, or all of them.
pub fn models_from(names: &[String]) -> anyhow::Result<Vec<Box<dyn AllocatorModel>>> {
    if names.is_empty() {
        return Ok(models::all());
    }
    let mut out = Vec::new();
    for n in names {
        match models::by_name(n) {
            Some(m) => out.push(m),
            None => bail!(
                "unknown model {n:?}; known: {}",
                models::NAMES
                    .iter()
                    .chain(models::EXTRA_NAMES)
                    .copied()
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
        }
    }
    Ok(out)
}

pub fn emit(report: Report, json: bool) -> anyhow::Result<ExitCode> {
    if json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        print!("{}", report.render_text());
    }
    Ok(ExitCode::SUCCESS)
}

pub fn run(file: &Path, json: bool, model_names: &[String]) -> anyhow::Result<ExitCode> {
    let f = File::open(file).map_err(|e| anyhow::anyhow!("opening {}: {e}", file.display()))?;
    let mut reader = Reader::open_named(BufReader::new(f), &file.display().to_string())?;
    let mut b = ReportBuilder::with_models(models_from(model_names)?);
    while let Some(ev) = reader.next_event()? {
        b.push(&ev);
    }
    let warnings: Vec<String> = reader.warnings().iter().map(|w| w.to_string()).collect();
    for w in &warnings {
        eprintln!("swapscope: warning: {}: {w}", file.display());
    }
    emit(b.finish(reader.stats().skipped_records, warnings), json)
}
