//! `swapscope dump FILE`: every event of a recording, one per line, in the human format the
//! TUI's Events view uses (`Event::describe`), for scripts and debugging.

use std::{io::BufWriter, path::Path, process::ExitCode};

use swapscope::{
    event::Event,
    pipeline,
    sink::{Sink, SinkError},
    source::file::FileSource,
};

/// Writes each event as `seconds kind description`.
struct Lines<W: std::io::Write> {
    out: W,
    /// The reader went away (`| head`): stop quietly.
    closed: bool,
}

impl<W: std::io::Write> Sink for Lines<W> {
    fn push(&mut self, batch: &[Event]) -> Result<(), SinkError> {
        for ev in batch {
            let ts = ev.ts();
            if writeln!(
                self.out,
                "{:>6}.{:09} {:<8} {}",
                ts / 1_000_000_000,
                ts % 1_000_000_000,
                ev.kind_name(),
                ev.describe()
            )
            .is_err()
            {
                self.closed = true;
                return Err(SinkError::Other("output closed".into()));
            }
        }
        Ok(())
    }

    fn finish(&mut self, _: &swapscope::source::Summary) -> Result<(), SinkError> {
        let _ = self.out.flush();
        Ok(())
    }
}

pub fn run(file: &Path) -> anyhow::Result<ExitCode> {
    let mut source = FileSource::open(file)?;
    let stdout = std::io::stdout();
    let mut lines = Lines {
        out: BufWriter::new(stdout.lock()),
        closed: false,
    };
    let r = pipeline::run(&mut source, &mut [&mut lines], &mut || false);
    if lines.closed {
        // A closed pipe (`| head`) ends the dump quietly.
        return Ok(ExitCode::SUCCESS);
    }
    let summary = r?;
    for w in &summary.warnings {
        eprintln!("swapscope: warning: {}: {w}", file.display());
    }
    Ok(ExitCode::SUCCESS)
}
