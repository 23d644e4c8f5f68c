//! Command-line interface: one module per subcommand. anyhow lives here and nowhere deeper.

mod args;
mod doctor;
mod dump;
mod export;
mod live;
mod package;
mod record;
mod report;
mod serve;
mod simulate;
mod stress;

use std::{path::PathBuf, process::ExitCode};

use clap::{Parser, Subcommand};

/// `swapscope --version`: the version, the commit built from, the BPF event schema and the
/// recording format it writes (what a bug report needs to name).
pub static VERSION: std::sync::LazyLock<String> = std::sync::LazyLock::new(|| {
    format!(
        "{} (commit {}, BPF schema {}, format {}.{})",
        env!("CARGO_PKG_VERSION"),
        env!("SWAPSCOPE_COMMIT"),
        swapscope_common::SCHEMA_VERSION,
        swapscope_core::record::FORMAT_MAJOR,
        swapscope_core::record::FORMAT_MINOR,
    )
});

#[derive(Parser, Debug)]
#[command(name = "swapscope", version = VERSION.as_str(), about = "Watch the Linux swap allocator from eBPF", long_about = None)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Check this host: kernel, lockdown, BTF, privileges, swap devices, mTHP sizes, probe plan.
    Doctor {
        /// Print JSON instead of text.
        #[arg(long)]
        json: bool,
        /// Undo what a `swapscope stress` that was killed left behind (its cgroup, zram or loop
        /// device and mTHP settings, as its state file under /run/swapscope lists them), each
        /// only once proven the run's own on the object acted on; nothing else is touched. A
        /// state file refused, or not undone fully, is renamed `.failed` and not retried.
        #[arg(long)]
        cleanup: bool,
    },
    /// Attach the probes and record events and kernel counters to a file.
    Record(record::RecordArgs),
    /// Watch the swap allocator live in a terminal UI (root): write-outs, kernel counters,
    /// device maps, the models, latencies, events. `--demo` makes the kernel swap meanwhile.
    Live(live::LiveArgs),
    /// Replay a recording in the same terminal UI: pause, speed, seek.
    Replay(live::ReplayArgs),
    /// Summarise a recording.
    Report {
        /// The recording.
        file: PathBuf,
        /// Print JSON instead of a table.
        #[arg(long)]
        json: bool,
        /// Models to replay the stream through: `default` (the default set), `all` (every
        /// model, the proposals outside the default set too), or names, comma-separated.
        #[arg(long, value_delimiter = ',', default_value = "default")]
        models: Vec<String>,
        /// What-if: replay the requests onto swap devices of this size (e.g. 32M, 2G) for the
        /// models; the real occupancy stays the recorded one.
        #[arg(long, value_name = "SIZE", value_parser = args::swap_size, allow_hyphen_values = true, conflicts_with = "sweep")]
        swap_size: Option<u64>,
        /// What-if: replay once per device size, FROM%..TO% of the recorded size in steps of
        /// 25 % (or FROM%..TO%:STEP%), and print fallback per order against size for every model.
        #[arg(long, value_name = "FROM%..TO%", allow_hyphen_values = true)]
        sweep: Option<swapscope::whatif::SweepSpec>,
        /// Where a model chose another slot than the kernel: the first N such requests per
        /// model (10 when N is left out), each with its CPU, the requests other CPUs decided
        /// around it, the clusters involved and the kernel's answer.
        #[arg(long, value_name = "N", num_args = 0..=1, default_missing_value = "10", value_parser = args::whole::<1, 100_000>, conflicts_with = "sweep")]
        divergence: Option<u64>,
        /// Let the model of the recorded kernel run on its own answers: by default, after a
        /// request it answered otherwise than the kernel, it takes the kernel's answer (one race
        /// the stream could not order does not decide the rest of the run).
        #[arg(long)]
        free_running: bool,
    },
    /// Print every event of a recording, one per line.
    Dump {
        /// The recording.
        file: PathBuf,
    },
    /// Write a recording's events (or its per-interval metrics) as CSV or Parquet.
    Export(export::ExportArgs),
    /// Serve Prometheus metrics: kernel mTHP swap counters, swap devices, and with BPF the
    /// write-outs, requests and the allocator models (tier picked by what the host allows).
    Serve(serve::ServeArgs),
    /// Replay a synthetic workload through the allocator models (no root needed).
    Simulate(simulate::SimulateArgs),
    /// Make the kernel swap: a temporary cgroup, optionally a temporary zram device, mTHP sizes
    /// set to `always`, and a memory toucher. Everything is undone on exit.
    Stress(stress::StressArgs),
    /// The toucher `stress` runs inside its cgroup (internal).
    #[command(name = "__touch", hide = true)]
    Touch(stress::TouchArgs),
    /// The files a package ships beside the binary, generated from these very definitions:
    /// man pages (`swapscope(1)` and one per subcommand) and bash, zsh and fish completions,
    /// written under DIR (`cargo xtask dist` packs them).
    #[command(name = "__package-files", hide = true)]
    PackageFiles {
        /// Where to write `man/` and `completions/`.
        dir: PathBuf,
    },
}

/// Signal handlers (stop, SIGUSR1 markers) and the marker inputs of a live session: the inbox
/// the `m` key and the FIFO write to, and the FIFO (removed on drop when it was created).
pub fn live_inputs(
    fifo: Option<&std::path::Path>,
) -> anyhow::Result<(
    swapscope::source::markers::Inbox,
    Option<swapscope::source::markers::Fifo>,
)> {
    swapscope::signal::install();
    swapscope::signal::install_marker();
    let inbox = swapscope::source::markers::Inbox::default();
    let fifo = match fifo {
        Some(p) => Some(swapscope::source::markers::Fifo::start(p, inbox.clone())?),
        None => None,
    };
    Ok((inbox, fifo))
}

/// The command a live session runs: the demo workload with `demo`, else `command` (maybe none).
pub fn command_or_demo(demo: bool, command: &[String]) -> anyhow::Result<Vec<String>> {
    if !demo {
        return Ok(command.to_vec());
    }
    if !command.is_empty() {
        anyhow::bail!("--demo runs its own workload: give either --demo or a command, not both");
    }
    let exe = std::env::current_exe()
        .map_err(|e| anyhow::anyhow!("finding this swapscope binary: {e}"))?;
    Ok(swapscope::stress::demo_command(&exe))
}

/// Refuses a command that cannot start (no such file, not executable, not on `$PATH`), before
/// anything is attached or created.
/// `-o -` (standard output) for a binary file (a recording, Parquet): refused when standard
/// output is a terminal, where it would only garble the screen.
pub fn binary_output(out: &swapscope::host::output::OutputFile, what: &str) -> anyhow::Result<()> {
    use std::io::IsTerminal as _;
    if out.is_stdout() && std::io::stdout().is_terminal() {
        anyhow::bail!(
            "standard output is a terminal: redirect it (> FILE, | ssh HOST 'cat > FILE') to write {what} there, or give a file name"
        );
    }
    Ok(())
}

/// `-` (standard output) where standard output already carries something else.
pub fn no_stdout(path: Option<&std::path::Path>, flag: &str, why: &str) -> anyhow::Result<()> {
    if path == Some(std::path::Path::new("-")) {
        anyhow::bail!("{flag} - is refused here: {why}; give a file name");
    }
    Ok(())
}

pub fn check_command(command: &[String]) -> anyhow::Result<()> {
    if let Some(prog) = command.first()
        && swapscope::host::resolve_command(prog).is_none()
    {
        anyhow::bail!(
            "{prog}: no such command (not an executable file, nor on $PATH); nothing was started \
             or created"
        );
    }
    Ok(())
}

/// The command line a recording's header keeps: the whole of it, or with `hide` only
/// `what` and the command's name (its arguments may hold secrets).
pub fn command_line(hide: bool, what: &str, command: &[String]) -> String {
    if !hide {
        return std::env::args().collect::<Vec<_>>().join(" ");
    }
    match command.first() {
        Some(prog) => {
            let name = std::path::Path::new(prog)
                .file_name()
                .map_or_else(|| prog.clone(), |n| n.to_string_lossy().into_owned());
            format!("{what} -- {name} (arguments left out: --no-cmdline)")
        }
        None => format!("{what} (command line left out: --no-cmdline)"),
    }
}

/// BPF diagnostics to stderr: warnings always, the rest with `verbose`.
pub fn stderr_log(verbose: bool) -> swapscope::probe::LogFn {
    std::sync::Arc::new(move |level, line| {
        if verbose || level <= log::Level::Warn {
            eprintln!("swapscope: bpf {}: {line}", level.as_str().to_lowercase());
        }
    })
}

impl Command {
    /// Commands that print a result and hold nothing to clean up: a closed stdout ends them
    /// quietly (SIGPIPE), as it does `cat`.
    pub fn only_prints(&self) -> bool {
        match self {
            Command::Report { .. } | Command::Dump { .. } | Command::Simulate(_) => true,
            Command::Doctor { cleanup, .. } => !cleanup,
            Command::Record(_)
            | Command::Live(_)
            | Command::Replay(_)
            | Command::Stress(_)
            | Command::Touch(_)
            | Command::PackageFiles { .. }
            | Command::Export(_)
            | Command::Serve(_) => false,
        }
    }
}

/// A command-line error as one line (see [`args::one_line`]).
pub fn one_line_error(e: &clap::Error) -> String {
    args::one_line(e)
}

pub fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    match cli.command {
        Command::Doctor { json, cleanup } => doctor::run(json, cleanup),
        Command::Record(args) => record::run(args),
        Command::Live(args) => live::live(args),
        Command::Replay(args) => live::replay(args),
        Command::Report {
            file,
            json,
            models,
            swap_size,
            sweep,
            divergence,
            free_running,
        } => report::run(
            &file,
            json,
            &models,
            swap_size,
            sweep.as_ref(),
            divergence.map_or(0, |n| n as usize),
            free_running,
        ),
        Command::Simulate(args) => simulate::run(args),
        Command::Dump { file } => dump::run(&file),
        Command::Export(args) => export::run(args),
        Command::Serve(args) => serve::run(args),
        Command::Stress(args) => stress::run(args),
        Command::Touch(args) => stress::touch(args),
        Command::PackageFiles { dir } => package::write(&dir),
    }
}
