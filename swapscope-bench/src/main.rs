//! `swapscope-bench`: the benchmarks behind `cargo xtask bench` (docs/performance.md), kept out
//! of the shipped binary. `replay` measures report throughput and memory on large simulated
//! recordings (each measurement in a child process of this program); `live` what the recorder
//! costs a swap storm (paired runs of `swapscope stress`, alone and under `swapscope record`);
//! `serve` the exporter under scrapes; `live_analysis` the highest event rate the live analysis
//! keeps up with.
mod live;
mod live_analysis;
mod replay;
mod serve;

use std::process::ExitCode;

use clap::Parser as _;

fn main() -> ExitCode {
    let args = replay::BenchArgs::parse();
    swapscope_models::install();
    match replay::run(args) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("swapscope-bench: {e:#}");
            ExitCode::FAILURE
        }
    }
}
