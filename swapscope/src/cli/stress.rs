//! `swapscope stress` and the internal `__touch`.

use std::{io::BufRead as _, process::ExitCode, time::Duration};

use anyhow::{Context as _, bail};
use swapscope::{
    signal,
    stress::{self, Pattern, StressOptions, setup::parse_size_kb, toucher},
};

#[derive(clap::Args, Debug)]
pub struct StressArgs {
    #[arg(long, value_enum, default_value = "sequential")]
    pub pattern: Pattern,
    /// Memory the toucher maps and touches, in MiB.
    #[arg(long, default_value_t = 600)]
    pub size: u64,
    /// Memory limit of the temporary cgroup, in MiB.
    #[arg(long, default_value_t = 256)]
    pub limit: u64,
    /// mTHP sizes to set to `always` for the run, e.g. `64K,2M`.
    #[arg(long, value_delimiter = ',', default_value = "64K")]
    pub mthp: Vec<String>,
    /// Create a temporary zram swap device of this many MiB (and remove it afterwards).
    #[arg(long)]
    pub zram: Option<u64>,
    /// Create a temporary loop-device swap of this many MiB instead: a block device without
    /// synchronous I/O, so swap-in is page by page (no large-folio swap-in).
    #[arg(long, conflicts_with = "zram")]
    pub loop_swap: Option<u64>,
    /// thp-fragment: swap in whole 64 KiB chunks (the kernel test's `-a`).
    #[arg(long)]
    pub aligned_swapin: bool,
    /// Stop after this many seconds.
    #[arg(long)]
    pub duration: Option<f64>,
    /// Passes over the area (sequential) or fragmentation rounds (thp-fragment).
    #[arg(long, default_value_t = 2)]
    pub passes: u32,
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
}

pub fn run(a: StressArgs) -> anyhow::Result<ExitCode> {
    signal::install();
    let mut mthp_kb = Vec::new();
    for s in &a.mthp {
        if s.is_empty() || s.eq_ignore_ascii_case("none") {
            continue;
        }
        match parse_size_kb(s) {
            Some(kb) => mthp_kb.push(kb),
            None => bail!("--mthp: cannot parse size {s:?} (use e.g. 64K or 2M)"),
        }
    }
    let opts = StressOptions {
        pattern: a.pattern,
        size_mib: a.size,
        limit_mib: a.limit,
        mthp_kb,
        zram_mib: a.zram,
        loop_mib: a.loop_swap,
        aligned_swapin: a.aligned_swapin,
        duration: a.duration.map(Duration::from_secs_f64),
        passes: a.passes,
        seed: a.seed,
        exe: std::env::current_exe().context("finding the swapscope binary")?,
    };
    let s = stress::run(&opts)?;
    eprintln!(
        "swapscope stress: {:?} over {} MiB in cgroup {} (limit {} MiB){} for {:.1} s{}; cleaned up",
        a.pattern,
        a.size,
        s.cgroup,
        a.limit,
        s.zram.map(|z| format!(", swap on {z}")).unwrap_or_default(),
        s.elapsed.as_secs_f64(),
        if s.interrupted { " (interrupted)" } else { "" }
    );
    Ok(ExitCode::SUCCESS)
}

#[derive(clap::Args, Debug)]
pub struct TouchArgs {
    #[arg(long, value_enum)]
    pub pattern: Pattern,
    #[arg(long)]
    pub size: u64,
    #[arg(long)]
    pub passes: u32,
    #[arg(long)]
    pub duration: Option<f64>,
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
    #[arg(long)]
    pub aligned_swapin: bool,
}

pub fn touch(a: TouchArgs) -> anyhow::Result<ExitCode> {
    signal::install();
    // Wait until the parent has moved us into the cgroup.
    let mut line = String::new();
    std::io::stdin()
        .lock()
        .read_line(&mut line)
        .context("waiting for the go line")?;
    toucher::run(
        a.pattern,
        a.size,
        a.passes,
        a.duration.map(Duration::from_secs_f64),
        a.seed,
        a.aligned_swapin,
        &signal::stop_requested,
    )?;
    Ok(ExitCode::SUCCESS)
}
