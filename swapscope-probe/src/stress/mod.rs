//! `swapscope stress`: a workload that makes the kernel swap, for demos and tests.
//!
//! Creates a temporary memory cgroup, optionally a temporary zram swap device, temporarily sets
//! the chosen mTHP sizes to `always`, runs the toucher (`swapscope __touch`) inside the cgroup, and
//! undoes all of it on exit, error or signal (RAII guards in [`setup`]).

pub mod setup;
pub mod state;
pub mod toucher;

use std::{
    io::Write as _,
    path::{Path, PathBuf},
    process::{Command, Stdio},
    thread,
    time::{Duration, Instant},
};

use self::setup::{Cgroup, LoopSwap, MemoryHold, MthpSetting, SetupError, ZramSwap};
use self::state::{MthpSaved, StateFile};
pub use self::toucher::Pattern;
use crate::{host, signal};

/// `swapscope stress` arguments of the demo workload (`live --demo`, `record --demo`, `cargo
/// xtask run`): a 600 MiB sequential toucher in a 256 MiB cgroup, swapping to a temporary 1 GiB
/// zram device with 64 KiB mTHP, until stopped.
pub const DEMO_ARGS: &[&str] = &[
    "--pattern",
    "sequential",
    "--zram",
    "1024",
    "--mthp",
    "64K",
    "--limit",
    "256",
    "--size",
    "600",
    "--passes",
    "1000000",
];

/// The command line of the demo workload run by the swapscope binary `exe`.
pub fn demo_command(exe: &std::path::Path) -> Vec<String> {
    std::iter::once(exe.display().to_string())
        .chain(std::iter::once("stress".to_string()))
        .chain(DEMO_ARGS.iter().map(|s| s.to_string()))
        .collect()
}

#[derive(Clone, Debug)]
pub struct StressOptions {
    /// The touchers' patterns: job `i` runs `patterns[i % len]` (empty: sequential).
    pub patterns: Vec<Pattern>,
    /// Touchers run at once (each its own process, seed `seed + i`): several tasks reclaiming
    /// on several CPUs.
    pub jobs: u32,
    /// Each toucher in its own child cgroup with `limit_mib` (else all share one cgroup with
    /// `limit_mib`).
    pub cgroup_per_job: bool,
    /// Leave only this much memory available host-wide for the run (the rest is held and locked
    /// by `stress`): global reclaim, kswapd.
    pub global_limit_mib: Option<u64>,
    /// Memory each toucher maps and touches.
    pub size_mib: u64,
    pub limit_mib: u64,
    /// mTHP sizes (kB) to set to `always` for the run.
    pub mthp_kb: Vec<u64>,
    /// Create a zram swap device of this many MiB for the run.
    pub zram_mib: Option<u64>,
    /// Create a loop-device swap of this many MiB for the run (no large-folio swap-in).
    pub loop_mib: Option<u64>,
    /// thp-fragment: swap in 64 KiB chunks instead of 4 KiB pages.
    pub aligned_swapin: bool,
    pub duration: Option<Duration>,
    pub passes: u32,
    pub seed: u64,
    /// The swapscope binary to run the toucher with.
    pub exe: PathBuf,
}

#[derive(Debug, thiserror::Error)]
pub enum StressError {
    #[error(transparent)]
    Setup(#[from] SetupError),
    #[error("starting the toucher ({exe}): {source}")]
    Spawn { exe: String, source: std::io::Error },
    #[error("the toucher failed: {0}")]
    Toucher(String),
}

/// What the run did, for the summary line.
#[derive(Clone, Debug, Default)]
pub struct StressSummary {
    pub cgroup: String,
    pub zram: Option<String>,
    pub elapsed: Duration,
    pub interrupted: bool,
    /// Leftovers of killed runs undone first, per state file.
    pub undone: Vec<state::Undone>,
    /// What this run could not undo (its state file is kept for `doctor --cleanup`).
    pub left: Vec<String>,
    /// MiB held for `--global-limit`.
    pub held_mib: u64,
}

/// Runs the workload. Everything created is removed before this returns.
pub fn run(opts: &StressOptions) -> Result<StressSummary, StressError> {
    if !host::is_root() {
        return Err(SetupError::NotRoot.into());
    }
    let t0 = Instant::now();
    // Leftovers of killed runs first (their mTHP settings must be restored before this run
    // reads what to restore at its end).
    let undone = state::cleanup_dead();
    let mut st = StateFile::create()?;
    // Guards are dropped in reverse order: cgroup, device, then mTHP settings. Each item is in
    // the state file before it exists (or, for devices, as soon as it does).
    let mut mthp = Vec::new();
    for kb in &opts.mthp_kb {
        let mut m = MthpSetting::read(*kb)?;
        st.note_mthp(MthpSaved {
            path: m.path.clone(),
            previous: m.previous.clone(),
            set: "always".into(),
        })?;
        m.apply("always")?;
        mthp.push(m);
    }
    let uuid = setup::new_uuid();
    let zram = match opts.zram_mib {
        Some(mib) => Some(ZramSwap::create(mib << 20, 32_000, uuid, &mut |id| {
            st.note_device(Path::new(&format!("/dev/zram{id}")), Some(id), None, uuid)
        })?),
        None => None,
    };
    let loop_swap = match opts.loop_mib {
        Some(mib) => {
            let file = LoopSwap::file_for();
            Some(LoopSwap::create(mib << 20, 32_000, uuid, &mut |dev| {
                st.note_device(dev, None, Some(&file), uuid)
            })?)
        }
        None => None,
    };
    st.note_cgroup(&Cgroup::path_for("stress")?)?;
    let jobs = opts.jobs.max(1);
    let limit = opts.limit_mib << 20;
    let cg = Cgroup::create(
        "stress",
        if opts.cgroup_per_job {
            limit.saturating_mul(u64::from(jobs))
        } else {
            limit
        },
    )?;
    let mut job_cgs = Vec::new();
    if opts.cgroup_per_job {
        for i in 0..jobs {
            job_cgs.push(cg.create_child(&setup::job_cgroup::name(i), limit)?);
        }
    }
    let hold = match opts.global_limit_mib {
        Some(mib) => MemoryHold::leave_available(mib << 20)?,
        None => None,
    };
    let mut summary = StressSummary {
        cgroup: cg.path.display().to_string(),
        zram: zram
            .as_ref()
            .map(|z| z.dev.display().to_string())
            .or_else(|| loop_swap.as_ref().map(|l| l.dev.display().to_string())),
        undone,
        ..Default::default()
    };

    summary.held_mib = hold.as_ref().map_or(0, |h| h.bytes() >> 20);
    let mut children = Vec::new();
    let spawned = (0..jobs).try_for_each(|i| {
        let pattern = opts
            .patterns
            .get(i as usize % opts.patterns.len().max(1))
            .copied()
            .unwrap_or(Pattern::Sequential);
        let child = spawn_toucher(opts, pattern, opts.seed.wrapping_add(u64::from(i)))?;
        let id = child.id();
        children.push(child);
        job_cgs
            .get(i as usize)
            .unwrap_or(&cg)
            .add(id)
            .map_err(StressError::from)
    });
    if let Err(e) = spawned {
        for c in &mut children {
            let _ = c.kill();
            let _ = c.wait();
        }
        return Err(e);
    }
    // Each toucher waits for a line on stdin, so all are in their cgroups before any touches.
    for c in &mut children {
        if let Some(mut stdin) = c.stdin.take() {
            let _ = stdin.write_all(b"go\n");
        }
    }
    let mut statuses: Vec<Option<std::process::ExitStatus>> = vec![None; children.len()];
    let mut lost = false;
    loop {
        for (c, st) in children.iter_mut().zip(statuses.iter_mut()) {
            if st.is_none() {
                match c.try_wait() {
                    Ok(Some(status)) => *st = Some(status),
                    Ok(None) => {}
                    Err(_) => lost = true,
                }
            }
        }
        if lost || statuses.iter().all(Option::is_some) {
            break;
        }
        if signal::stop_requested() {
            summary.interrupted = true;
            for (c, st) in children.iter_mut().zip(statuses.iter_mut()) {
                if st.is_none() {
                    let _ = c.kill();
                    *st = c.wait().ok();
                }
            }
            break;
        }
        thread::sleep(Duration::from_millis(50));
    }
    if lost {
        for c in &mut children {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
    summary.elapsed = t0.elapsed();
    drop(hold);
    drop(job_cgs);
    drop(cg);
    drop(loop_swap);
    drop(zram);
    drop(mthp);
    summary.left = st.finish();
    if lost {
        return Err(StressError::Toucher(
            "lost track of a toucher process".into(),
        ));
    }
    match statuses.iter().flatten().find(|s| !s.success()) {
        Some(s) if !summary.interrupted => Err(StressError::Toucher(format!("exited with {s}"))),
        _ => Ok(summary),
    }
}

/// Starts one toucher (`swapscope __touch`), waiting for its go line; it dies with this process.
fn spawn_toucher(
    opts: &StressOptions,
    pattern: Pattern,
    seed: u64,
) -> Result<std::process::Child, StressError> {
    let mut cmd = Command::new(&opts.exe);
    cmd.arg("__touch")
        .arg("--pattern")
        .arg(match pattern {
            Pattern::Sequential => "sequential",
            Pattern::ThpFragment => "thp-fragment",
            Pattern::ForkPartialZap => "fork-partial-zap",
        })
        .arg("--size")
        .arg(opts.size_mib.to_string())
        .arg("--passes")
        .arg(opts.passes.to_string())
        .arg("--seed")
        .arg(seed.to_string());
    if opts.aligned_swapin {
        cmd.arg("--aligned-swapin");
    }
    if let Some(d) = opts.duration {
        cmd.arg("--duration").arg(d.as_secs_f64().to_string());
    }
    host::kill_with_parent(&mut cmd);
    cmd.stdin(Stdio::piped())
        .spawn()
        .map_err(|source| StressError::Spawn {
            exe: opts.exe.display().to_string(),
            source,
        })
}
