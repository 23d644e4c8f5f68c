//! `cargo xtask vm`: swapscope on real Debian kernels in QEMU (TCG, no KVM).
//!
//! Per kernel: resolve the newest package of its suite(s) through a private apt state, download
//! and extract it (cached), build a busybox initramfs holding the release swapscope binary, its
//! shared libraries and the modules the scenario needs, boot it, bring the results back from a
//! second virtio disk (a raw tar archive), and check them. See docs/vm-tests.md.

use std::{
    collections::{BTreeMap, BTreeSet},
    env, fs,
    io::{BufRead as _, BufReader, Write as _},
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    sync::mpsc,
    thread,
    time::{Duration, Instant, SystemTime},
};

use anyhow::{Context as _, Result, bail, ensure};

use crate::{cargo, output, run, step, target_dir};

mod apt;
mod checks;
mod initramfs;
mod modules;
mod qemu;

pub use apt::Apt;
use apt::*;
use checks::*;
use initramfs::*;
use modules::*;
use qemu::*;

#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum KernelSel {
    #[value(name = "6.1")]
    V6_1,
    #[value(name = "6.12")]
    V6_12,
    #[value(name = "7.x")]
    V7,
    All,
}

/// The guest's architecture: Debian's kernels of that architecture, its static busybox, and a
/// swapscope built for it, under the QEMU system emulator for it (TCG).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, clap::ValueEnum)]
pub enum Arch {
    #[default]
    Amd64,
    Arm64,
}

impl Arch {
    /// The architecture xtask runs on.
    pub(super) fn host() -> Arch {
        if cfg!(target_arch = "aarch64") {
            Arch::Arm64
        } else {
            Arch::Amd64
        }
    }

    /// Debian's name for it.
    pub(super) fn deb(self) -> &'static str {
        match self {
            Arch::Amd64 => "amd64",
            Arch::Arm64 => "arm64",
        }
    }

    /// The QEMU system emulator, its machine and the kernel's serial console.
    pub(super) fn qemu(self) -> (&'static str, &'static str, &'static str) {
        match self {
            Arch::Amd64 => ("qemu-system-x86_64", "q35", "ttyS0"),
            Arch::Arm64 => ("qemu-system-aarch64", "virt", "ttyAMA0"),
        }
    }

    /// What run names carry after the kernel's label (`7.x-arm64-smp1`): nothing for amd64,
    /// whose names predate the other architectures.
    pub(super) fn suffix(self) -> &'static str {
        match self {
            Arch::Amd64 => "",
            Arch::Arm64 => "-arm64",
        }
    }
}

#[derive(Clone, Debug, clap::Args)]
pub struct VmArgs {
    /// Which kernel(s) to boot.
    #[arg(long, value_enum, default_value = "all")]
    pub kernel: KernelSel,
    /// The guest's architecture (arm64: Debian's arm64 kernels under qemu-system-aarch64, with
    /// the static aarch64 binary `cargo xtask dist` builds).
    #[arg(long, value_enum, default_value = "amd64")]
    pub arch: Arch,
    /// Keep the per-run work directory (initramfs, result disk, init script) for debugging.
    #[arg(long)]
    pub keep: bool,
    /// Virtual CPUs per VM; a list (`1,2,4`) boots each kernel once per count.
    #[arg(long, value_delimiter = ',', default_value = "1", value_parser = clap::value_parser!(u32).range(1..=64))]
    pub smp: Vec<u32>,
    /// Seconds before a VM is killed.
    #[arg(long, default_value_t = 900)]
    pub timeout: u64,
}

/// One kernel line: the suites searched (newest version wins) and the version prefix it must have.
pub(super) struct Spec {
    pub(super) label: &'static str,
    pub(super) suites: &'static [&'static str],
    pub(super) prefix: &'static str,
    /// Whether the kernel has per-size mTHP (`hugepages-<N>kB`, 6.8+).
    pub(super) mthp: bool,
    /// Whether it has the per-size swap-in counters (`stats/swpin`; not in 6.12).
    pub(super) mthp_swpin: bool,
    /// Whether its cluster list moves are hooked (`move_cluster`, 6.14+).
    pub(super) cluster_hooks: bool,
    /// The allocator model of this kernel, when swapscope has one.
    pub(super) model: Option<&'static str>,
    /// Whether the full tier must attach (requests and frees).
    pub(super) full_tier: bool,
    /// Whether frees go through the per-CPU slot cache (before 6.14): order-0 slots are taken in
    /// batches, so cached slots that are never used are freed without ever being seen allocated.
    pub(super) slot_cache: bool,
}

impl Spec {
    /// Whether the TUI and exporter scenarios run: they drive the frag workload (64 KiB mTHP)
    /// and compare with the kernel's model, on the full tier.
    pub(super) fn viewer_scenarios(&self) -> bool {
        self.full_tier && self.mthp && self.model.is_some()
    }
}

pub(super) const SPECS: &[Spec] = &[
    Spec {
        label: "6.1",
        suites: &["bookworm"],
        prefix: "6.1.",
        mthp: false,
        mthp_swpin: false,
        cluster_hooks: false,
        model: None,
        full_tier: true,
        slot_cache: true,
    },
    Spec {
        label: "6.12",
        suites: &["trixie"],
        prefix: "6.12.",
        mthp: true,
        mthp_swpin: false,
        cluster_hooks: false,
        model: Some("linux-6.12"),
        full_tier: true,
        slot_cache: true,
    },
    Spec {
        label: "7.x",
        suites: &["sid", "trixie-backports"],
        prefix: "7.",
        mthp: true,
        mthp_swpin: true,
        cluster_hooks: true,
        model: Some("linux-6.18"),
        full_tier: true,
        slot_cache: false,
    },
];

/// One workload run under `swapscope record` in the guest.
pub(super) struct Scenario {
    pub(super) name: &'static str,
    /// `swapscope stress` arguments.
    pub(super) stress: String,
    /// Tasks reclaiming at once (touchers, kswapd aside).
    pub(super) tasks: u32,
    /// Whether the 64 KiB relation (write-outs = Δswpout[64K]) is checked.
    pub(super) mthp: bool,
    /// Whether write-outs must equal the kernel's I/O counters exactly. Not with two tasks
    /// reclaiming on one CPU (`fork`): on a preemptible kernel a task preempted inside a BPF
    /// program makes the kernel skip that program for the other task (`recursion_misses`, which
    /// swapscope records), so write-outs ≤ I/O is asserted, any shortfall must come with reported
    /// misses, and successful requests ≥ Δswpout is not asserted (a swap-cache folio the other
    /// process keeps mapped is also written again when re-dirtied, without a new request).
    pub(super) exact_writeouts: bool,
}

/// The scenarios of a kernel at `smp` vCPUs (also documented in docs/vm-tests.md).
pub(super) fn scenarios(spec: &Spec, smp: u32) -> Vec<Scenario> {
    if !spec.mthp {
        return vec![Scenario {
            name: "seq",
            stress: "--zram 256 --mthp none --limit 100 --size 200 --passes 2".into(),
            tasks: 1,
            mthp: false,
            exact_writeouts: true,
        }];
    }
    // Several reclaimers at once: one toucher per vCPU (two on one vCPU, which then preempt
    // each other), thp-fragment and sequential in turn, on a device small enough to fragment.
    let jobs = smp.max(2);
    let zram = 36 * jobs;
    vec![
        Scenario {
            name: "seq",
            stress: "--zram 256 --mthp 64K --limit 100 --size 200 --passes 2".into(),
            tasks: 1,
            mthp: true,
            exact_writeouts: true,
        },
        // Parent and child share swapped large folios; the child zaps parts of them. The
        // reconstruction must end with no leaked and no double-freed slot.
        Scenario {
            name: "fork",
            stress:
                "--pattern fork-partial-zap --zram 256 --mthp 64K --limit 48 --size 100 --passes 5"
                    .into(),
            tasks: 2,
            mthp: true,
            exact_writeouts: false,
        },
        // The kernel's thp_swap_allocator_test pattern on a 64 MiB device: fragments swap space,
        // so large requests fail and folios are split (swpout_fallback).
        Scenario {
            name: "frag",
            stress:
                "--pattern thp-fragment --zram 64 --mthp 64K --limit 1024 --size 60 --passes 20"
                    .into(),
            tasks: 1,
            mthp: true,
            exact_writeouts: true,
        },
        // All touchers in one memory cgroup.
        Scenario {
            name: "conc",
            stress: format!(
                "--pattern thp-fragment,sequential --jobs {jobs} --zram {zram} --mthp 64K --limit {} --size 40 --passes 8",
                24 * jobs
            ),
            tasks: jobs,
            mthp: true,
            exact_writeouts: true,
        },
        // Each toucher in its own memory cgroup, and the whole guest short of memory, so kswapd
        // reclaims beside them.
        Scenario {
            name: "conc-sep",
            stress: format!(
                "--pattern thp-fragment,sequential --jobs {jobs} --cgroup-per-job --global-limit {} --zram {zram} --mthp 64K --limit 32 --size 40 --passes 8",
                16 * jobs + 48
            ),
            tasks: jobs + 1,
            mthp: true,
            exact_writeouts: true,
        },
    ]
}

/// Modules the guest needs when they are not built in; their dependencies are added from each
/// module's own `depends=` field.
pub(super) const WANTED_MODULES: &[&str] = &[
    "virtio_pci",
    "virtio_blk",
    "lz4_compress",
    "lz4hc_compress",
    "zram",
];

/// The kernels `sel` names.
pub(super) fn selected(sel: KernelSel) -> Vec<&'static Spec> {
    SPECS
        .iter()
        .filter(|s| match sel {
            KernelSel::All => true,
            KernelSel::V6_1 => s.label == "6.1",
            KernelSel::V6_12 => s.label == "6.12",
            KernelSel::V7 => s.label == "7.x",
        })
        .collect()
}

/// `cargo xtask vm`: every selected kernel at every `--smp` count.
pub fn vm(args: &VmArgs) -> Result<()> {
    let runs: Vec<(KernelSel, u32)> = args.smp.iter().map(|&n| (args.kernel, n)).collect();
    run_matrix(&runs, args.arch, args.keep, args.timeout)
}

/// The live benchmark in the guest (`swapscope-bench --live`, docs/performance.md): paired
/// swap storms alone and recorded, with this build's recorder and, when given, an older one.
#[derive(Clone, Debug)]
pub struct VmBench {
    /// Pairs per recorder.
    pub pairs: u32,
    /// The storm's MiB (`--storm-mib`) and passes (`--storm-passes`).
    pub storm_mib: u32,
    pub storm_passes: u32,
    /// Another swapscope binary whose recorder is measured first (`/bin/swapscope-before` in
    /// the guest), to compare builds.
    pub before: Option<PathBuf>,
    /// The benchmark program (`swapscope-bench`, `/bin/swapscope-bench` in the guest).
    pub program: PathBuf,
}

/// The storm of the VM benchmark: 200 MiB, 2 passes (≈ 8 s of guest time under TCG).
pub const VM_BENCH_STORM: (u32, u32) = (200, 2);

impl VmBench {
    /// `SWAPSCOPE_VM_BENCH=<pairs>` (with `SWAPSCOPE_VM_BENCH_BEFORE=<path>`, and
    /// `SWAPSCOPE_VM_BENCH_STORM=<MiB>x<passes>`, default 200x2), or none.
    pub(super) fn from_env() -> Result<Option<Self>> {
        let Some(pairs) = env::var("SWAPSCOPE_VM_BENCH")
            .ok()
            .filter(|v| !v.is_empty())
        else {
            return Ok(None);
        };
        let pairs: u32 = pairs
            .parse()
            .ok()
            .filter(|&n| n >= 1)
            .context("SWAPSCOPE_VM_BENCH must be a number of pairs (1 or more)")?;
        let (storm_mib, storm_passes) = match env::var("SWAPSCOPE_VM_BENCH_STORM") {
            Ok(v) => v
                .split_once('x')
                .and_then(|(m, p)| Some((m.parse().ok()?, p.parse().ok()?)))
                .filter(|&(m, p)| m >= 16 && p >= 1)
                .context("SWAPSCOPE_VM_BENCH_STORM must be <MiB>x<passes>, e.g. 200x2")?,
            Err(_) => VM_BENCH_STORM,
        };
        let before = env::var_os("SWAPSCOPE_VM_BENCH_BEFORE")
            .filter(|v| !v.is_empty())
            .map(PathBuf::from);
        step("building swapscope-bench (release)");
        run(Command::new(cargo()).args(["build", "--release", "--package", "swapscope-bench"]))?;
        Ok(Some(VmBench {
            pairs,
            storm_mib,
            storm_passes,
            before,
            program: target_dir().join("release/swapscope-bench"),
        }))
    }

    /// The recorders measured, in the order the guest runs them: `before` (when given), `after`.
    pub fn recorders(&self) -> Vec<&'static str> {
        let mut v = Vec::new();
        if self.before.is_some() {
            v.push("before");
        }
        v.push("after");
        v
    }
}

/// How [`run_matrix_with`] runs the VMs.
#[derive(Clone, Debug, Default)]
pub struct RunOpts {
    /// The swapscope binary to boot (default: `SWAPSCOPE_VM_BINARY`, else the tree's release
    /// build).
    pub exe: Option<PathBuf>,
    /// Run the live benchmark in each guest with mTHP (after the scenarios). VMs then run one at
    /// a time.
    pub bench: Option<VmBench>,
    /// Skip the scenarios and the TUI and exporter checks (doctor still runs).
    pub no_scenarios: bool,
    /// The guests' architecture.
    pub arch: Arch,
}

/// Boots each (kernels, vCPUs) pair of `runs`, as many at once as the host's cores hold (a VM
/// takes as many cores as it has vCPUs, at most all of them), and checks each.
/// `SWAPSCOPE_VM_BENCH=<pairs>` adds the live benchmark ([`VmBench::from_env`]).
pub fn run_matrix(runs: &[(KernelSel, u32)], arch: Arch, keep: bool, timeout: u64) -> Result<()> {
    let opts = RunOpts {
        bench: VmBench::from_env()?,
        arch,
        ..RunOpts::default()
    };
    run_matrix_with(runs, keep, timeout, &opts)
}

/// [`run_matrix`] with explicit options.
pub fn run_matrix_with(
    runs: &[(KernelSel, u32)],
    keep: bool,
    timeout: u64,
    opts: &RunOpts,
) -> Result<()> {
    let arch = opts.arch;
    for tool in [arch.qemu().0, "dpkg-deb", "apt-get", "xz", "gzip", "tar"] {
        ensure!(
            which(tool).is_some(),
            "{tool} not found: run `cargo xtask setup` (as root) first"
        );
    }
    let foreign = arch != Arch::host();
    if !foreign {
        ensure!(
            Path::new(BUSYBOX).exists(),
            "{BUSYBOX} missing: run `cargo xtask setup` (installs busybox-static)"
        );
        // The guest has no libc of its own for busybox: it must be the static build.
        let bb = Command::new("ldd").arg(BUSYBOX).output();
        ensure!(
            bb.is_ok_and(|o| !o.status.success()
                || String::from_utf8_lossy(&o.stdout).contains("not a dynamic executable")),
            "{BUSYBOX} is dynamically linked: install busybox-static"
        );
    }
    // The tree's release build for this host: the guest's binary on the host's architecture,
    // and on another one what replays the guest's recordings here (the same report).
    step("building swapscope (release)");
    run(Command::new(cargo()).args(["build", "--release", "--package", "swapscope"]))?;
    let host_exe = target_dir().join("release/swapscope");
    // SWAPSCOPE_VM_BINARY=path boots a swapscope built earlier (paired measurements while the
    // tree changes); otherwise the tree's release build, or on another architecture the static
    // binary `cargo xtask dist` builds for it.
    let exe = match opts
        .exe
        .clone()
        .or_else(|| env::var_os("SWAPSCOPE_VM_BINARY").map(PathBuf::from))
    {
        Some(p) => p,
        None if foreign => crate::dist::build_for(arch.deb())?.0,
        None => host_exe.clone(),
    };
    let cache = cache_dir();
    fs::create_dir_all(&cache).with_context(|| format!("creating {}", cache.display()))?;
    let apt_dir = if foreign {
        format!("apt-{}", arch.deb())
    } else {
        "apt".to_string()
    };
    let apt = Apt::new(&cache.join(apt_dir), arch)?;
    apt.update_if_stale()?;
    let busybox = if foreign {
        foreign_busybox(&apt, &cache)?
    } else {
        PathBuf::from(BUSYBOX)
    };
    let guest = Guest {
        exe: &exe,
        busybox: &busybox,
        host_exe: foreign.then_some(host_exe.as_path()),
    };
    // Downloads and extractions first, one kernel at a time.
    let mut prepared: Vec<Prepared> = Vec::new();
    let mut failed = Vec::new();
    let mut jobs: Vec<(usize, u32)> = Vec::new();
    for &(sel, smp) in runs {
        for spec in selected(sel) {
            let i = match prepared.iter().position(|p| p.spec.label == spec.label) {
                Some(i) => i,
                None => match prepare(spec, &apt, &cache) {
                    Ok(p) => {
                        prepared.push(p);
                        prepared.len() - 1
                    }
                    Err(e) => {
                        eprintln!("xtask: vm {}: FAILED: {e:#}", spec.label);
                        failed.push(format!("{}: {e:#}", spec.label));
                        continue;
                    }
                },
            };
            if !jobs.contains(&(i, smp)) {
                jobs.push((i, smp));
            }
        }
    }
    if let Some(b) = opts.bench.as_ref().and_then(|b| b.before.as_ref()) {
        ensure!(
            b.is_file(),
            "the recorder to compare ({}) is not a file",
            b.display()
        );
    }
    let cores = thread::available_parallelism().map_or(1, |n| n.get() as u32);
    let results: Vec<(String, Result<String>)> = thread::scope(|scope| {
        let (done_tx, done_rx) = mpsc::channel::<(String, u32, Result<String>)>();
        let mut free = cores;
        let mut out = Vec::new();
        let mut queue = jobs
            .iter()
            .copied()
            .collect::<std::collections::VecDeque<_>>();
        let mut running = 0;
        while !queue.is_empty() || running > 0 {
            while let Some(&(i, smp)) = queue.front() {
                // A benchmark has the host to itself: one VM at a time.
                let cost = if opts.bench.is_some() {
                    cores
                } else {
                    smp.min(cores)
                };
                if cost > free {
                    break;
                }
                queue.pop_front();
                free -= cost;
                running += 1;
                let tx = done_tx.clone();
                let p = &prepared[i];
                let guest = &guest;
                let cache = &cache;
                scope.spawn(move || {
                    let label = format!("{}{} -smp {smp}", p.spec.label, arch.suffix());
                    let t0 = Instant::now();
                    let r = run_vm(p, cache, guest, smp, keep, timeout, opts);
                    step(&format!(
                        "vm {label}: {:.0} s including the initramfs",
                        t0.elapsed().as_secs_f64()
                    ));
                    let _ = tx.send((label, cost, r));
                });
            }
            match done_rx.recv() {
                Ok((label, cost, r)) => {
                    free += cost;
                    running -= 1;
                    out.push((label, r));
                }
                Err(_) => break,
            }
        }
        out
    });
    eprintln!();
    for (label, r) in results {
        match r {
            Ok(s) => eprintln!("{s}"),
            Err(e) => {
                eprintln!("xtask: vm {label}: FAILED: {e:#}");
                failed.push(format!("{label}: {e:#}"));
            }
        }
    }
    if !failed.is_empty() {
        bail!("VM checks failed: {}", failed.join("; "));
    }
    Ok(())
}

pub(super) const BUSYBOX: &str = "/bin/busybox";

pub(super) fn which(tool: &str) -> Option<PathBuf> {
    env::var_os("PATH").and_then(|p| {
        env::split_paths(&p)
            .chain([PathBuf::from("/usr/sbin"), PathBuf::from("/sbin")])
            .map(|d| d.join(tool))
            .find(|c| c.is_file())
    })
}

/// `$SWAPSCOPE_VM_CACHE`, else `$XDG_CACHE_HOME/swapscope-vm`, else `<target>/vm-cache`.
pub(super) fn cache_dir() -> PathBuf {
    if let Some(d) = env::var_os("SWAPSCOPE_VM_CACHE") {
        return PathBuf::from(d);
    }
    if let Some(d) = env::var_os("XDG_CACHE_HOME").filter(|d| !d.is_empty()) {
        return PathBuf::from(d).join("swapscope-vm");
    }
    target_dir().join("vm-cache")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_guest_init_is_a_shell_script_reading_what_the_runner_writes() {
        let sh = include_str!("guest/init.sh");
        assert!(sh.starts_with("#!/bin/busybox sh\n"));
        assert!(sh.contains(". /etc/swapscope-vm/config"));
        assert!(sh.contains("done < /etc/swapscope-vm/scenarios"));
        let spec = SPECS.iter().find(|s| s.label == "7.x").unwrap_or(&SPECS[0]);
        let scs = scenarios(spec, 2);
        let lines = guest_scenarios(&scs);
        assert_eq!(lines.lines().count(), scs.len());
        assert!(lines.lines().all(|l| l.split('\t').count() == 2));
        let conf = guest_config(&["zram".into()], true, None);
        assert!(conf.contains("MODULES=\"zram\"\nTUI=1\n"));
        // The host's sh parses it (busybox sh runs it in the guest).
        let dir = std::env::temp_dir().join(format!("swapscope-init-{}", std::process::id()));
        std::fs::create_dir_all(&dir).ok();
        let f = dir.join("init.sh");
        std::fs::write(&f, sh).ok();
        let ok = std::process::Command::new("sh").arg("-n").arg(&f).status();
        std::fs::remove_dir_all(&dir).ok();
        assert!(ok.is_ok_and(|s| s.success()), "sh -n guest/init.sh");
    }

    #[test]
    fn picks_the_main_archive() {
        let t = "Types: deb\nURIs: http://mirror.example/debian\nSuites: bookworm bookworm-updates\nComponents: main\nSigned-By: /k.gpg\n\nTypes: deb\nURIs: http://mirror.example/debian-security\nSuites: bookworm-security\n";
        assert_eq!(
            main_archive(t),
            Some(("http://mirror.example/debian".into(), Some("/k.gpg".into())))
        );
    }

    #[test]
    fn reads_depends() {
        let show = "Package: linux-image-7.3.4+deb13-amd64\nDepends: dracut | initramfs-tools (>= 0.120+deb8u2), linux-binary-7.3.4+deb13-amd64 (= 7.3.4-1~bpo13+1), linux-modules-7.3.4+deb13-amd64 (= 7.3.4-1~bpo13+1)\n";
        assert_eq!(
            depends_on(show, "linux-binary-"),
            Some((
                "linux-binary-7.3.4+deb13-amd64".into(),
                Some("7.3.4-1~bpo13+1".into())
            ))
        );
        let ko = b"\0license=GPL\0depends=virtio,virtio_ring\0intree=Y\0";
        assert_eq!(module_depends(ko), vec!["virtio", "virtio_ring"]);
        assert!(module_depends(b"\0xdepends=a\0").is_empty());
    }

    #[test]
    fn cpio_is_aligned() {
        let mut c = Cpio::default();
        c.dir("/a/b");
        assert!(c.file("/a/b/c", b"xyz", 0o644).is_ok());
        let out = c.finish();
        assert_eq!(out.len() % 4, 0);
        assert!(out.starts_with(b"070701"));
    }
}
