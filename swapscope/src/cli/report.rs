//! `swapscope report FILE [--json] [--models a,b]`.

use std::{fs::File, io::BufReader, io::Read, path::Path, process::ExitCode, sync::mpsc};

use anyhow::{anyhow, bail};
use swapscope::{
    alloc::AllocatorModel,
    event::Event,
    models,
    record::Reader,
    report::{Report, ReportBuilder},
};

/// Reads every event of `reader` and hands it to `f`, in file order. Decoding (decompression
/// included) runs on a second thread, a chunk or two ahead, so it overlaps the replay.
pub fn replay<R: Read + Send>(
    mut reader: Reader<R>,
    mut f: impl FnMut(&Event),
) -> anyhow::Result<Reader<R>> {
    std::thread::scope(|scope| {
        let (tx, rx) = mpsc::sync_channel::<Vec<Event>>(0);
        let decoder = scope.spawn(move || -> anyhow::Result<Reader<R>> {
            loop {
                let mut batch = Vec::new();
                if !reader.next_batch(&mut batch)? || tx.send(batch).is_err() {
                    break;
                }
            }
            Ok(reader)
        });
        for batch in rx {
            for ev in &batch {
                f(ev);
            }
        }
        decoder
            .join()
            .map_err(|_| anyhow!("the decoding thread panicked"))?
    })
}

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
    let reader = Reader::open_named(BufReader::new(f), &file.display().to_string())?;
    let mut b = ReportBuilder::with_models(models_from(model_names)?);
    let reader = replay(reader, |ev| b.push(ev))?;
    let warnings: Vec<String> = reader.warnings().iter().map(|w| w.to_string()).collect();
    for w in &warnings {
        eprintln!("swapscope: warning: {}: {w}", file.display());
    }
    emit(b.finish(reader.stats().skipped_records, warnings), json)
}
