//! `swapscope simulate`: a synthetic workload, streamed through the analysis (and to a
//! recording with `-o`). No root needed.

use std::{fs::File, io::BufWriter, path::PathBuf, process::ExitCode};

use anyhow::{Context as _, bail};
use swapscope::{
    pipeline,
    record::WriterOptions,
    sink::{Sink, record::RecordSink},
    source::{Source as _, sim::SimSource},
    workload::WorkloadSpec,
};

use super::report::{emit, model_names, report_analysis};

#[derive(clap::Args, Debug)]
pub struct SimulateArgs {
    /// One of: thp-fragment, fork-partial-zap, mixed-orders, fill-drain.
    #[arg(long)]
    pub workload: String,
    /// Swap device size, e.g. 64M, 1G (default: the workload's own, 64M).
    #[arg(long)]
    pub swap_size: Option<String>,
    /// CPUs the requests are spread over.
    #[arg(long, default_value_t = 1)]
    pub cpus: u32,
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
    /// Iterations after the warm-up (default: the workload's own).
    #[arg(long)]
    pub iterations: Option<u32>,
    /// thp-fragment: add the kernel test's 4 MiB small-folio area.
    #[arg(long)]
    pub small: bool,
    /// thp-fragment: swap in single 4 KiB pages (the kernel test's default) instead of whole
    /// 64 KiB chunks (its `-a`, the configuration the published results used; the default here).
    #[arg(long)]
    pub unaligned_swapin: bool,
    /// Models to compare, comma-separated (default: the default set, `models::NAMES`).
    #[arg(long, value_delimiter = ',')]
    pub models: Vec<String>,
    /// Print JSON instead of tables.
    #[arg(long)]
    pub json: bool,
    /// Also write the generated stream as a recording that `report` reads.
    #[arg(short, long)]
    pub output: Option<PathBuf>,
}

/// Parses `64M`, `1G`, `512K` or a byte count.
pub fn parse_bytes(s: &str) -> Option<u64> {
    let t = s.trim().to_ascii_uppercase();
    let t = t
        .strip_suffix("IB")
        .or_else(|| t.strip_suffix('B'))
        .unwrap_or(&t);
    let (num, mult) = match t.chars().last()? {
        'K' => (&t[..t.len() - 1], 1u64 << 10),
        'M' => (&t[..t.len() - 1], 1 << 20),
        'G' => (&t[..t.len() - 1], 1 << 30),
        'T' => (&t[..t.len() - 1], 1 << 40),
        _ => (t, 1),
    };
    num.parse::<u64>().ok()?.checked_mul(mult)
}

pub fn run(a: SimulateArgs) -> anyhow::Result<ExitCode> {
    let names = model_names(&a.models)?;
    let mut spec = WorkloadSpec::new(&a.workload);
    if let Some(s) = &a.swap_size {
        match parse_bytes(s) {
            Some(b) => spec.swap_size_bytes = b,
            None => bail!("--swap-size: cannot parse {s:?} (use e.g. 64M or 1G)"),
        }
    }
    spec.cpus = a.cpus;
    spec.seed = a.seed;
    spec.iterations = a.iterations;
    spec.small = a.small;
    spec.aligned = !a.unaligned_swapin;
    let mut source = SimSource::new(spec)?;
    source.set_command_line(std::env::args().collect::<Vec<_>>().join(" "));
    let mut analysis = report_analysis(source.header(), &names);
    let mut record = match &a.output {
        Some(path) => {
            let file =
                File::create(path).with_context(|| format!("creating {}", path.display()))?;
            Some(RecordSink::create(
                BufWriter::new(file),
                &path.display().to_string(),
                source.header(),
                WriterOptions::default(),
                None,
            )?)
        }
        None => None,
    };
    let mut sinks: Vec<&mut dyn Sink> = vec![&mut analysis];
    if let Some(r) = record.as_mut() {
        sinks.push(r);
    }
    let summary = pipeline::run(&mut source, &mut sinks, &mut || false)?;
    if let (Some(r), Some(path)) = (&record, &a.output) {
        let stats = r.stats();
        eprintln!(
            "swapscope simulate: wrote {} events ({} bytes) to {}",
            stats.events,
            stats.bytes_written,
            path.display()
        );
    }
    emit(analysis.report(&summary), a.json)
}

#[cfg(test)]
mod tests {
    use super::parse_bytes;

    #[test]
    fn sizes() {
        assert_eq!(parse_bytes("64M"), Some(64 << 20));
        assert_eq!(parse_bytes("1GiB"), Some(1 << 30));
        assert_eq!(parse_bytes("4096"), Some(4096));
        assert_eq!(parse_bytes("x"), None);
    }
}
