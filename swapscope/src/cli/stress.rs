//! `swapscope stress` and the internal `__touch`.

use std::{io::BufRead as _, process::ExitCode, time::Duration};

use anyhow::{Context as _, bail};
use swapscope::{
    signal,
    stress::{self, Pattern, StressOptions, setup::parse_size_kb, toucher},
};

/// Sizes in MiB: 1 MiB to 1 TiB.
const MIB: fn(&str) -> Result<u64, String> = super::args::whole::<1, { 1 << 20 }>;
/// Passes or rounds.
const PASSES: fn(&str) -> Result<u32, String> = super::args::whole32::<1, 1_000_000>;
/// Touchers at once.
const JOBS: fn(&str) -> Result<u32, String> = super::args::whole32::<1, 256>;

#[derive(clap::Args, Debug)]
pub struct StressArgs {
    /// The touchers' memory pattern; a list (`thp-fragment,sequential`) gives the jobs each
    /// pattern in turn.
    #[arg(long, value_enum, value_delimiter = ',', default_value = "sequential")]
    pub pattern: Vec<Pattern>,
    /// Touchers run at once (1 to 256), each its own process with seed `--seed` + its number:
    /// several tasks reclaiming on several CPUs.
    #[arg(long, default_value_t = 1, value_parser = JOBS, allow_hyphen_values = true)]
    pub jobs: u32,
    /// Put each toucher in its own memory cgroup (a child of the run's) with `--limit` each;
    /// without it they share one cgroup limited to `--limit`.
    #[arg(long)]
    pub cgroup_per_job: bool,
    /// Leave only this many MiB of memory available to the whole host during the run: stress
    /// holds and locks the rest, so reclaim is also global (kswapd). For test machines and VMs.
    #[arg(long, value_parser = MIB, allow_hyphen_values = true)]
    pub global_limit: Option<u64>,
    /// Memory each toucher maps and touches, in MiB (1 to 1048576).
    #[arg(long, default_value_t = 600, value_parser = MIB, allow_hyphen_values = true)]
    pub size: u64,
    /// Memory limit of the temporary cgroup (of each job's with --cgroup-per-job), in MiB (1 to
    /// 1048576).
    #[arg(long, default_value_t = 256, value_parser = MIB, allow_hyphen_values = true)]
    pub limit: u64,
    /// mTHP sizes to set to `always` for the run, e.g. `64K,2M`.
    #[arg(long, value_delimiter = ',', default_value = "64K")]
    pub mthp: Vec<String>,
    /// Create a temporary zram swap device of this many MiB (and remove it afterwards).
    #[arg(long, value_parser = MIB, allow_hyphen_values = true)]
    pub zram: Option<u64>,
    /// Create a temporary loop-device swap of this many MiB instead: a block device without
    /// synchronous I/O, so swap-in is page by page (no large-folio swap-in).
    #[arg(long, conflicts_with = "zram", value_parser = MIB, allow_hyphen_values = true)]
    pub loop_swap: Option<u64>,
    /// thp-fragment: swap in whole 64 KiB chunks (the kernel test's `-a`).
    #[arg(long)]
    pub aligned_swapin: bool,
    /// Stop after this many seconds.
    #[arg(long, value_name = "SECONDS", value_parser = super::args::seconds, allow_hyphen_values = true)]
    pub duration: Option<f64>,
    /// Passes over the area (sequential) or fragmentation rounds (thp-fragment).
    #[arg(long, default_value_t = 2, value_parser = PASSES, allow_hyphen_values = true)]
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
        patterns: a.pattern.clone(),
        jobs: a.jobs,
        cgroup_per_job: a.cgroup_per_job,
        global_limit_mib: a.global_limit,
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
    for u in &s.undone {
        for line in u.done.iter().chain(&u.failed).chain(&u.set_aside) {
            eprintln!(
                "swapscope stress: leftover of a killed run ({}): {line}",
                u.file.display()
            );
        }
    }
    let patterns: Vec<String> = a.pattern.iter().map(|p| format!("{p:?}")).collect();
    eprintln!(
        "swapscope stress: {}{} over {} MiB{} in cgroup {} (limit {} MiB{}){}{} for {:.1} s{}; {}",
        if a.jobs > 1 {
            format!("{} jobs of ", a.jobs)
        } else {
            String::new()
        },
        patterns.join("+"),
        a.size,
        if a.jobs > 1 { " each" } else { "" },
        s.cgroup,
        a.limit,
        if a.cgroup_per_job { " per job" } else { "" },
        if s.held_mib > 0 {
            format!(", {} MiB held host-wide", s.held_mib)
        } else {
            String::new()
        },
        s.zram.map(|z| format!(", swap on {z}")).unwrap_or_default(),
        s.elapsed.as_secs_f64(),
        if s.interrupted { " (interrupted)" } else { "" },
        if s.left.is_empty() {
            "cleaned up".to_string()
        } else {
            format!(
                "could not undo: {} (`swapscope doctor --cleanup` retries once, then sets the state file aside)",
                s.left.join(", ")
            )
        }
    );
    Ok(if s.left.is_empty() {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

#[derive(clap::Args, Debug)]
pub struct TouchArgs {
    #[arg(long, value_enum)]
    pub pattern: Pattern,
    #[arg(long, value_parser = MIB)]
    pub size: u64,
    #[arg(long, value_parser = PASSES)]
    pub passes: u32,
    #[arg(long, value_parser = super::args::seconds)]
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
