//! `swapscope dump FILE`: every event of a recording, one per line, for scripts and debugging.

use std::{
    fs::File,
    io::{BufReader, BufWriter, Write as _},
    path::Path,
    process::ExitCode,
};

use anyhow::Context as _;
use swapscope::record::Reader;

pub fn run(file: &Path) -> anyhow::Result<ExitCode> {
    let f = File::open(file).with_context(|| format!("opening {}", file.display()))?;
    let mut reader = Reader::open_named(BufReader::new(f), &file.display().to_string())?;
    let stdout = std::io::stdout();
    let mut out = BufWriter::new(stdout.lock());
    while let Some(ev) = reader.next_event()? {
        if writeln!(out, "{ev:?}").is_err() {
            // A closed pipe (`| head`) ends the dump quietly.
            return Ok(ExitCode::SUCCESS);
        }
    }
    let _ = out.flush();
    for w in reader.warnings() {
        eprintln!("swapscope: warning: {}: {w}", file.display());
    }
    Ok(ExitCode::SUCCESS)
}
