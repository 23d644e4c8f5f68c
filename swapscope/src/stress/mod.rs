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

use self::setup::{Cgroup, LoopSwap, MthpSetting, SetupError, ZramSwap};
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
    pub pattern: Pattern,
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
    /// Leftovers of killed runs undone first: (state file, what was done, what could not be).
    pub undone: Vec<(PathBuf, Vec<String>, Vec<String>)>,
    /// What this run could not undo (its state file is kept for `doctor --cleanup`).
    pub left: Vec<String>,
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
    let cg = Cgroup::create("stress", opts.limit_mib << 20)?;
    let mut summary = StressSummary {
        cgroup: cg.path.display().to_string(),
        zram: zram
            .as_ref()
            .map(|z| z.dev.display().to_string())
            .or_else(|| loop_swap.as_ref().map(|l| l.dev.display().to_string())),
        undone,
        ..Default::default()
    };

    let mut cmd = Command::new(&opts.exe);
    cmd.arg("__touch")
        .arg("--pattern")
        .arg(match opts.pattern {
            Pattern::Sequential => "sequential",
            Pattern::ThpFragment => "thp-fragment",
            Pattern::ForkPartialZap => "fork-partial-zap",
        })
        .arg("--size")
        .arg(opts.size_mib.to_string())
        .arg("--passes")
        .arg(opts.passes.to_string())
        .arg("--seed")
        .arg(opts.seed.to_string());
    if opts.aligned_swapin {
        cmd.arg("--aligned-swapin");
    }
    if let Some(d) = opts.duration {
        cmd.arg("--duration").arg(d.as_secs_f64().to_string());
    }
    // The toucher dies with this process, however it dies.
    host::kill_with_parent(&mut cmd);
    let mut child = cmd
        .stdin(Stdio::piped())
        .spawn()
        .map_err(|source| StressError::Spawn {
            exe: opts.exe.display().to_string(),
            source,
        })?;
    // The toucher waits for a line on stdin, so it is in the cgroup before it touches anything.
    let moved = cg.add(child.id());
    if let Err(e) = moved {
        let _ = child.kill();
        let _ = child.wait();
        return Err(e.into());
    }
    if let Some(mut stdin) = child.stdin.take() {
        let _ = stdin.write_all(b"go\n");
    }
    let status = loop {
        match child.try_wait() {
            Ok(Some(status)) => break Some(status),
            Ok(None) => {}
            Err(_) => break None,
        }
        if signal::stop_requested() {
            summary.interrupted = true;
            let _ = child.kill();
            break child.wait().ok();
        }
        thread::sleep(Duration::from_millis(50));
    };
    summary.elapsed = t0.elapsed();
    drop(cg);
    drop(loop_swap);
    drop(zram);
    drop(mthp);
    summary.left = st.finish();
    match status {
        Some(s) if s.success() || summary.interrupted => Ok(summary),
        Some(s) => Err(StressError::Toucher(format!("exited with {s}"))),
        None => Err(StressError::Toucher(
            "lost track of the toucher process".into(),
        )),
    }
}
