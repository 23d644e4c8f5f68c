//! The `swapscope` binary: argument parsing and the edges (files, terminal, exit codes) over the
//! library modules. See docs/ARCHITECTURE.md.

mod cli;

use std::process::ExitCode;

use clap::{Parser as _, error::ErrorKind};

fn main() -> ExitCode {
    let args = match cli::Cli::try_parse() {
        Ok(a) => a,
        Err(e)
            if !e.use_stderr()
                || e.kind() == ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand =>
        {
            // --help, --version, or no subcommand: clap's own text.
            let _ = e.print();
            return ExitCode::from(u8::try_from(e.exit_code()).unwrap_or(2));
        }
        Err(e) => {
            eprintln!("swapscope: error: {}", cli::one_line_error(&e));
            return ExitCode::from(2);
        }
    };
    // The models live in their own crate; the core finds them by name once installed.
    swapscope_models::install();
    if args.command.only_prints() {
        swapscope::signal::default_sigpipe();
    }
    match cli::run(args) {
        Ok(code) => code,
        Err(e) => {
            // One line: the chain of causes, outermost first.
            let msg = format!("{e:#}").replace('\n', " ");
            eprintln!("swapscope: error: {msg}");
            ExitCode::FAILURE
        }
    }
}
