//! `swapscope report FILE [--json]`.

use std::{fs::File, io::BufReader, path::Path, process::ExitCode};

use anyhow::Context as _;
use swapscope::{record::Reader, report::ReportBuilder};

pub fn run(file: &Path, json: bool) -> anyhow::Result<ExitCode> {
    let f = File::open(file).with_context(|| format!("opening {}", file.display()))?;
    let mut reader = Reader::open_named(BufReader::new(f), &file.display().to_string())?;
    let mut b = ReportBuilder::default();
    while let Some(ev) = reader
        .next_event()
        .with_context(|| format!("reading {}", file.display()))?
    {
        b.push(&ev);
    }
    let warnings: Vec<String> = reader.warnings().iter().map(|w| w.to_string()).collect();
    for w in &warnings {
        eprintln!("swapscope: warning: {}: {w}", file.display());
    }
    let report = b.finish(reader.stats().skipped_records, warnings);
    if json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        print!("{}", report.render_text());
    }
    Ok(ExitCode::SUCCESS)
}
