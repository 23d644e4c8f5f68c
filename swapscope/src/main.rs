//! The `swapscope` binary: argument parsing and the edges (files, terminal, exit codes) over the
//! library modules. See docs/ARCHITECTURE.md.

mod cli;

use std::process::ExitCode;

use clap::Parser as _;

fn main() -> ExitCode {
    let args = cli::Cli::parse();
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
