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
use serde_json::Value;

use crate::{cargo, output, run, step, target_dir};

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

#[derive(Clone, Debug, clap::Args)]
pub struct VmArgs {
    /// Which kernel(s) to boot.
    #[arg(long, value_enum, default_value = "all")]
    pub kernel: KernelSel,
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
struct Spec {
    label: &'static str,
    suites: &'static [&'static str],
    prefix: &'static str,
    /// Whether the kernel has per-size mTHP (`hugepages-<N>kB`, 6.8+).
    mthp: bool,
    /// Whether it has the per-size swap-in counters (`stats/swpin`; not in 6.12).
    mthp_swpin: bool,
    /// Whether its cluster list moves are hooked (`move_cluster`, 6.14+).
    cluster_hooks: bool,
    /// The allocator model of this kernel, when swapscope has one.
    model: Option<&'static str>,
    /// Whether the full tier must attach (requests and frees).
    full_tier: bool,
    /// Whether frees go through the per-CPU slot cache (before 6.14): order-0 slots are taken in
    /// batches, so cached slots that are never used are freed without ever being seen allocated.
    slot_cache: bool,
}

impl Spec {
    /// Whether the TUI and exporter scenarios run: they drive the frag workload (64 KiB mTHP)
    /// and compare with the kernel's model, on the full tier.
    fn viewer_scenarios(&self) -> bool {
        self.full_tier && self.mthp && self.model.is_some()
    }
}

const SPECS: &[Spec] = &[
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
struct Scenario {
    name: &'static str,
    /// `swapscope stress` arguments.
    stress: String,
    /// Tasks reclaiming at once (touchers, kswapd aside).
    tasks: u32,
    /// Whether the 64 KiB relation (write-outs = Δswpout[64K]) is checked.
    mthp: bool,
    /// Whether write-outs must equal the kernel's I/O counters exactly. Not with two tasks
    /// reclaiming on one CPU (`fork`): on a preemptible kernel a task preempted inside a BPF
    /// program makes the kernel skip that program for the other task (`recursion_misses`, which
    /// swapscope records), so write-outs ≤ I/O is asserted, any shortfall must come with reported
    /// misses, and successful requests ≥ Δswpout is not asserted (a swap-cache folio the other
    /// process keeps mapped is also written again when re-dirtied, without a new request).
    exact_writeouts: bool,
}

/// The scenarios of a kernel at `smp` vCPUs (also documented in docs/vm-tests.md).
fn scenarios(spec: &Spec, smp: u32) -> Vec<Scenario> {
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
const WANTED_MODULES: &[&str] = &[
    "virtio_pci",
    "virtio_blk",
    "lz4_compress",
    "lz4hc_compress",
    "zram",
];

/// The kernels `sel` names.
fn selected(sel: KernelSel) -> Vec<&'static Spec> {
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
    run_matrix(&runs, args.keep, args.timeout)
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
    fn from_env() -> Result<Option<Self>> {
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
}

/// Boots each (kernels, vCPUs) pair of `runs`, as many at once as the host's cores hold (a VM
/// takes as many cores as it has vCPUs, at most all of them), and checks each.
/// `SWAPSCOPE_VM_BENCH=<pairs>` adds the live benchmark ([`VmBench::from_env`]).
pub fn run_matrix(runs: &[(KernelSel, u32)], keep: bool, timeout: u64) -> Result<()> {
    let opts = RunOpts {
        bench: VmBench::from_env()?,
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
    for tool in [
        "qemu-system-x86_64",
        "dpkg-deb",
        "apt-get",
        "xz",
        "gzip",
        "tar",
    ] {
        ensure!(
            which(tool).is_some(),
            "{tool} not found: run `cargo xtask setup` (as root) first"
        );
    }
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
    // SWAPSCOPE_VM_BINARY=path boots a swapscope built earlier (paired measurements while the
    // tree changes); otherwise the tree's release build.
    let exe = match opts
        .exe
        .clone()
        .or_else(|| env::var_os("SWAPSCOPE_VM_BINARY").map(PathBuf::from))
    {
        Some(p) => p,
        None => {
            step("building swapscope (release)");
            run(Command::new(cargo()).args(["build", "--release", "--package", "swapscope"]))?;
            target_dir().join("release/swapscope")
        }
    };
    let cache = cache_dir();
    fs::create_dir_all(&cache).with_context(|| format!("creating {}", cache.display()))?;
    let apt = Apt::new(&cache.join("apt"))?;
    apt.update_if_stale()?;
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
                let exe = &exe;
                let cache = &cache;
                scope.spawn(move || {
                    let label = format!("{} -smp {smp}", p.spec.label);
                    let t0 = Instant::now();
                    let r = run_vm(p, cache, exe, smp, keep, timeout, opts);
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

const BUSYBOX: &str = "/bin/busybox";

fn which(tool: &str) -> Option<PathBuf> {
    env::var_os("PATH").and_then(|p| {
        env::split_paths(&p)
            .chain([PathBuf::from("/usr/sbin"), PathBuf::from("/sbin")])
            .map(|d| d.join(tool))
            .find(|c| c.is_file())
    })
}

/// `$SWAPSCOPE_VM_CACHE`, else `$XDG_CACHE_HOME/swapscope-vm`, else `<target>/vm-cache`.
fn cache_dir() -> PathBuf {
    if let Some(d) = env::var_os("SWAPSCOPE_VM_CACHE") {
        return PathBuf::from(d);
    }
    if let Some(d) = env::var_os("XDG_CACHE_HOME").filter(|d| !d.is_empty()) {
        return PathBuf::from(d).join("swapscope-vm");
    }
    target_dir().join("vm-cache")
}

// ---------------------------------------------------------------------------------------------
// apt: a private sources list and state, URIs copied from the host's own configuration

pub struct Apt {
    dir: PathBuf,
    codename: String,
}

const HOST_SOURCES: &str = "/etc/apt/sources.list.d/debian.sources";

impl Apt {
    fn new(dir: &Path) -> Result<Self> {
        for d in ["lists/partial", "cache/archives/partial"] {
            fs::create_dir_all(dir.join(d))?;
        }
        let text = fs::read_to_string(HOST_SOURCES)
            .with_context(|| format!("reading {HOST_SOURCES} (its URIs are reused)"))?;
        let (uri, signed_by) = main_archive(&text).with_context(|| {
            format!(
                "{HOST_SOURCES} names no main Debian archive (a stanza with non-security suites)"
            )
        })?;
        let opt = signed_by.map_or(String::new(), |k| format!("[signed-by={k}] "));
        let mut list = String::from("# written by cargo xtask vm; URIs copied from ");
        list.push_str(HOST_SOURCES);
        list.push('\n');
        let mut suites: Vec<&str> = SPECS
            .iter()
            .flat_map(|s| s.suites.iter().copied())
            .collect();
        suites.dedup();
        for s in suites {
            list.push_str(&format!("deb {opt}{uri} {s} main\n"));
        }
        write_sources(dir, &list)?;
        Ok(Apt {
            dir: dir.to_path_buf(),
            codename: String::new(),
        })
    }

    /// A private apt state that sees everything the host's own sources list (every deb822
    /// stanza of it) and also `<codename>-backports` of the host's main archive: for installing
    /// host packages without replacing backported ones the host already has.
    pub fn host_with_backports(dir: &Path) -> Result<Self> {
        for d in ["lists/partial", "cache/archives/partial"] {
            fs::create_dir_all(dir.join(d))?;
        }
        let text = fs::read_to_string(HOST_SOURCES)
            .with_context(|| format!("reading {HOST_SOURCES} (its URIs are reused)"))?;
        let os = fs::read_to_string("/etc/os-release").unwrap_or_default();
        let codename = os
            .lines()
            .find_map(|l| l.strip_prefix("VERSION_CODENAME="))
            .map(|c| c.trim_matches('"').to_string())
            .filter(|c| !c.is_empty())
            .context("/etc/os-release names no VERSION_CODENAME")?;
        let (uri, signed_by) = main_archive(&text).with_context(|| {
            format!(
                "{HOST_SOURCES} names no main Debian archive (a stanza with non-security suites)"
            )
        })?;
        let mut list =
            String::from("# written by cargo xtask; the host's sources plus backports\n");
        for st in deb_stanzas(&text) {
            let comps = st.field("Components").unwrap_or_else(|| "main".into());
            let opt = st
                .field("Signed-By")
                .map_or(String::new(), |k| format!("[signed-by={k}] "));
            for u in st.uris.split_whitespace() {
                for su in st.suites.split_whitespace() {
                    list.push_str(&format!("deb {opt}{u} {su} {comps}\n"));
                }
            }
        }
        let opt = signed_by.map_or(String::new(), |k| format!("[signed-by={k}] "));
        list.push_str(&format!("deb {opt}{uri} {codename}-backports main\n"));
        write_sources(dir, &list)?;
        Ok(Apt {
            dir: dir.to_path_buf(),
            codename,
        })
    }

    /// The host's release codename (`bookworm`), for [`Apt::host_with_backports`].
    pub fn codename(&self) -> &str {
        &self.codename
    }

    pub fn opts(&self) -> Vec<String> {
        let d = self.dir.display();
        vec![
            format!("-oDir::Etc::SourceList={d}/sources.list"),
            "-oDir::Etc::SourceParts=/dev/null".into(),
            format!("-oDir::State::Lists={d}/lists"),
            format!("-oDir::Cache={d}/cache"),
            "-oAPT::Sandbox::User=root".into(),
            "-oAcquire::Languages=none".into(),
            "-oAcquire::IndexTargets::deb::DEP-11::DefaultEnabled=false".into(),
            "-oAcquire::IndexTargets::deb::DEP-11-icons::DefaultEnabled=false".into(),
            "-oAcquire::IndexTargets::deb::DEP-11-icons-small::DefaultEnabled=false".into(),
            "-oAcquire::IndexTargets::deb::Contents-deb::DefaultEnabled=false".into(),
        ]
    }

    /// `apt-get update` when the private lists are missing or older than a day.
    pub fn update_if_stale(&self) -> Result<()> {
        let stamp = self.dir.join("updated");
        let fresh = fs::metadata(&stamp)
            .and_then(|m| m.modified())
            .ok()
            .and_then(|t| SystemTime::now().duration_since(t).ok())
            .is_some_and(|age| age < Duration::from_secs(24 * 3600));
        if fresh {
            return Ok(());
        }
        step("apt-get update (private state under the VM cache)");
        let r = output(
            Command::new("apt-get")
                .args(self.opts())
                .args(["-q", "update"]),
        );
        match r {
            Ok(_) => fs::write(&stamp, "")?,
            Err(e) if stamp.exists() || self.has_lists() => {
                eprintln!("xtask: apt-get update failed, using the cached lists: {e:#}");
            }
            Err(e) => return Err(e),
        }
        Ok(())
    }

    fn has_lists(&self) -> bool {
        fs::read_dir(self.dir.join("lists")).is_ok_and(|rd| {
            rd.flatten()
                .any(|e| e.file_name().to_string_lossy().ends_with("_Packages"))
        })
    }

    fn cache(&self, args: &[&str]) -> Result<String> {
        output(Command::new("apt-cache").args(self.opts()).args(args))
    }
}

/// Writes the private sources list; a changed list makes the next update run.
fn write_sources(dir: &Path, list: &str) -> Result<()> {
    let path = dir.join("sources.list");
    if fs::read_to_string(&path).ok().as_deref() != Some(list) {
        fs::write(&path, list)?;
        let _ = fs::remove_file(dir.join("updated"));
    }
    Ok(())
}

/// One `Types: deb` stanza of a deb822 sources file.
struct Stanza<'a> {
    text: &'a str,
    uris: String,
    suites: String,
}

impl Stanza<'_> {
    fn field(&self, name: &str) -> Option<String> {
        self.text.lines().find_map(|l| {
            l.strip_prefix(name)
                .and_then(|r| r.strip_prefix(':'))
                .map(|v| v.trim().to_string())
        })
    }
}

/// The `deb` stanzas (with URIs and suites) of a deb822 sources file.
fn deb_stanzas(deb822: &str) -> impl Iterator<Item = Stanza<'_>> {
    deb822.split("\n\n").filter_map(|text| {
        let mut st = Stanza {
            text,
            uris: String::new(),
            suites: String::new(),
        };
        st.uris = st.field("URIs")?;
        st.suites = st.field("Suites")?;
        if st
            .field("Types")
            .is_some_and(|t| !t.split_whitespace().any(|w| w == "deb"))
        {
            return None;
        }
        Some(st)
    })
}

/// The first URI and its keyring from the deb822 stanza that serves the main (non-security)
/// suites.
fn main_archive(deb822: &str) -> Option<(String, Option<String>)> {
    deb_stanzas(deb822).find_map(|st| {
        let uri = st.uris.split_whitespace().next()?;
        st.suites
            .split_whitespace()
            .any(|s| !s.contains("security"))
            .then(|| (uri.trim_end_matches('/').to_string(), st.field("Signed-By")))
    })
}

/// A resolved kernel: its release (`uname -r`) and the packages (`name=version`) to fetch.
struct Resolved {
    release: String,
    version: String,
    packages: Vec<String>,
}

fn dpkg_newer(a: &str, b: &str) -> bool {
    Command::new("dpkg")
        .args(["--compare-versions", a, "gt", b])
        .status()
        .is_ok_and(|s| s.success())
}

/// The package named `prefix…` in a `Depends:` field, with the version it pins.
fn depends_on(show: &str, prefix: &str) -> Option<(String, Option<String>)> {
    let deps = show.lines().find_map(|l| l.strip_prefix("Depends:"))?;
    deps.split(',').map(str::trim).find_map(|d| {
        let d = d.split('|').next()?.trim();
        let (name, rest) = d.split_once(' ').unwrap_or((d, ""));
        name.starts_with(prefix).then(|| {
            let ver = rest
                .trim()
                .strip_prefix("(=")
                .and_then(|v| v.strip_suffix(')'))
                .map(|v| v.trim().to_string());
            (name.to_string(), ver)
        })
    })
}

fn resolve(spec: &Spec, apt: &Apt) -> Result<Resolved> {
    let madison = apt.cache(&["madison", "linux-image-amd64"])?;
    let mut best: Option<String> = None;
    for line in madison.lines() {
        let f: Vec<&str> = line.split('|').map(str::trim).collect();
        let (Some(ver), Some(src)) = (f.get(1), f.get(2)) else {
            continue;
        };
        let suite = src
            .split_whitespace()
            .nth(1)
            .and_then(|s| s.split('/').next())
            .unwrap_or_default();
        if spec.suites.contains(&suite)
            && ver.starts_with(spec.prefix)
            && best.as_deref().is_none_or(|b| dpkg_newer(ver, b))
        {
            best = Some((*ver).to_string());
        }
    }
    let meta_ver = best.with_context(|| {
        format!(
            "no linux-image-amd64 {}* in {} (apt-cache madison)",
            spec.prefix,
            spec.suites.join("/")
        )
    })?;
    let show = apt.cache(&["show", &format!("linux-image-amd64={meta_ver}")])?;
    let (image, image_ver) = depends_on(&show, "linux-image-")
        .context("linux-image-amd64 depends on no linux-image-<release>")?;
    let image_ver = image_ver.unwrap_or_else(|| meta_ver.clone());
    let release = image
        .strip_prefix("linux-image-")
        .unwrap_or(&image)
        .to_string();
    let show = apt.cache(&["show", &format!("{image}={image_ver}")])?;
    // Debian 7.x splits the kernel: linux-image-<rel> is a meta package over linux-binary-<rel>
    // (vmlinuz) and linux-modules-<rel>.
    let packages = if depends_on(&show, "linux-binary-").is_some() {
        vec![
            format!("linux-binary-{release}={image_ver}"),
            format!("linux-modules-{release}={image_ver}"),
        ]
    } else {
        vec![format!("{image}={image_ver}")]
    };
    Ok(Resolved {
        release,
        version: image_ver,
        packages,
    })
}

/// Downloads (once) and extracts (once) the packages; returns the extracted tree.
fn fetch_tree(r: &Resolved, apt: &Apt, cache: &Path) -> Result<PathBuf> {
    let debs = cache.join("debs").join(&r.release);
    let done = debs.join(".complete");
    if fs::read_to_string(&done).ok().as_deref() != Some(r.packages.join("\n").as_str()) {
        step(&format!("downloading {}", r.packages.join(" ")));
        let _ = fs::remove_dir_all(&debs);
        fs::create_dir_all(&debs)?;
        // Not `run`: apt-get download writes into its working directory.
        let mut cmd = Command::new("apt-get");
        cmd.args(apt.opts())
            .args(["-q", "download"])
            .args(&r.packages)
            .current_dir(&debs);
        let status = cmd.status().context("starting apt-get download")?;
        ensure!(status.success(), "{cmd:?} failed with {status}");
        fs::write(&done, r.packages.join("\n"))?;
    }
    let tree = cache.join("trees").join(&r.release);
    // The marker names the packages: a new Debian revision of the same release re-extracts.
    let marker = tree.join(".extracted");
    if fs::read_to_string(&marker).ok().as_deref() != Some(r.packages.join("\n").as_str()) {
        step(&format!("extracting {}", r.release));
        let _ = fs::remove_dir_all(&tree);
        fs::create_dir_all(&tree)?;
        for e in fs::read_dir(&debs)?.flatten() {
            let p = e.path();
            if p.extension().is_some_and(|x| x == "deb") {
                run(Command::new("dpkg-deb").arg("-x").arg(&p).arg(&tree))?;
            }
        }
        fs::write(&marker, r.packages.join("\n"))?;
    }
    Ok(tree)
}

fn first_existing(cands: impl IntoIterator<Item = PathBuf>) -> Option<PathBuf> {
    cands.into_iter().find(|p| p.exists())
}

// ---------------------------------------------------------------------------------------------
// modules

/// Every module file under `moddir/kernel`, by module name (`-` folded to `_`).
fn module_index(moddir: &Path) -> BTreeMap<String, PathBuf> {
    let mut out = BTreeMap::new();
    let mut stack = vec![moddir.join("kernel")];
    while let Some(d) = stack.pop() {
        let Ok(rd) = fs::read_dir(&d) else { continue };
        for e in rd.flatten() {
            let p = e.path();
            if p.is_dir() {
                stack.push(p);
            } else if let Some(stem) = p
                .file_name()
                .and_then(|n| n.to_str())
                .and_then(|n| n.split_once(".ko"))
                .map(|(s, _)| s.replace('-', "_"))
            {
                out.insert(stem, p);
            }
        }
    }
    out
}

/// A module's bytes, decompressed.
fn module_bytes(path: &Path) -> Result<Vec<u8>> {
    let name = path.to_string_lossy();
    let tool = if name.ends_with(".xz") {
        Some("xz")
    } else if name.ends_with(".zst") {
        Some("zstd")
    } else if name.ends_with(".gz") {
        Some("gzip")
    } else {
        None
    };
    match tool {
        None => fs::read(path).with_context(|| format!("reading {}", path.display())),
        Some(t) => {
            let out = Command::new(t)
                .arg("-dc")
                .arg(path)
                .output()
                .with_context(|| format!("running {t} -dc {}", path.display()))?;
            ensure!(
                out.status.success(),
                "{t} -dc {} failed: {}",
                path.display(),
                String::from_utf8_lossy(&out.stderr).trim()
            );
            Ok(out.stdout)
        }
    }
}

/// The `depends=` field of a module's `.modinfo` section (what `modinfo -F depends` prints).
fn module_depends(ko: &[u8]) -> Vec<String> {
    let key = b"depends=";
    let mut i = 0;
    while let Some(pos) = ko[i..].windows(key.len()).position(|w| w == key) {
        let at = i + pos;
        if at == 0 || ko[at - 1] == 0 {
            let start = at + key.len();
            let end = ko[start..]
                .iter()
                .position(|&b| b == 0)
                .map_or(ko.len(), |e| start + e);
            return String::from_utf8_lossy(&ko[start..end])
                .split(',')
                .filter(|s| !s.is_empty())
                .map(|s| s.replace('-', "_"))
                .collect();
        }
        i = at + 1;
    }
    Vec::new()
}

/// The wanted modules that exist as files, with their dependencies, dependencies first.
fn resolve_modules(moddir: &Path) -> Result<Vec<(String, Vec<u8>)>> {
    let index = module_index(moddir);
    let mut order = Vec::new();
    let mut seen = BTreeSet::new();
    fn visit(
        name: &str,
        index: &BTreeMap<String, PathBuf>,
        seen: &mut BTreeSet<String>,
        order: &mut Vec<(String, Vec<u8>)>,
    ) -> Result<()> {
        if !seen.insert(name.to_string()) {
            return Ok(());
        }
        // Not a file: built in (or absent, which the guest reports).
        let Some(path) = index.get(name) else {
            return Ok(());
        };
        let bytes = module_bytes(path)?;
        for dep in module_depends(&bytes) {
            visit(&dep, index, seen, order)?;
        }
        order.push((name.to_string(), bytes));
        Ok(())
    }
    for m in WANTED_MODULES {
        visit(m, &index, &mut seen, &mut order)?;
    }
    Ok(order)
}

// ---------------------------------------------------------------------------------------------
// initramfs (cpio newc)

#[derive(Default)]
struct Cpio {
    buf: Vec<u8>,
    ino: u32,
    dirs: BTreeSet<String>,
}

impl Cpio {
    fn entry(&mut self, name: &str, mode: u32, data: &[u8], rdev: (u32, u32)) {
        self.ino += 1;
        let name = name.trim_start_matches('/');
        let fields = [
            self.ino,
            mode,
            0,
            0,
            1,
            0,
            u32::try_from(data.len()).unwrap_or(u32::MAX),
            0,
            0,
            rdev.0,
            rdev.1,
            u32::try_from(name.len() + 1).unwrap_or(u32::MAX),
            0,
        ];
        self.buf.extend_from_slice(b"070701");
        for f in fields {
            self.buf.extend_from_slice(format!("{f:08X}").as_bytes());
        }
        self.buf.extend_from_slice(name.as_bytes());
        self.buf.push(0);
        self.pad();
        self.buf.extend_from_slice(data);
        self.pad();
    }

    fn pad(&mut self) {
        while !self.buf.len().is_multiple_of(4) {
            self.buf.push(0);
        }
    }

    fn parents(&mut self, path: &str) {
        let path = path.trim_start_matches('/');
        let mut acc = String::new();
        let parts: Vec<&str> = path.split('/').collect();
        for p in &parts[..parts.len().saturating_sub(1)] {
            if !acc.is_empty() {
                acc.push('/');
            }
            acc.push_str(p);
            if self.dirs.insert(acc.clone()) {
                self.entry(&acc.clone(), 0o040_755, &[], (0, 0));
            }
        }
    }

    fn dir(&mut self, path: &str) {
        self.parents(path);
        let p = path.trim_start_matches('/').to_string();
        if self.dirs.insert(p.clone()) {
            self.entry(&p, 0o040_755, &[], (0, 0));
        }
    }

    fn file(&mut self, path: &str, data: &[u8], perm: u32) -> Result<()> {
        ensure!(
            u32::try_from(data.len()).is_ok(),
            "{path} is too large for cpio"
        );
        self.parents(path);
        self.entry(path, 0o100_000 | perm, data, (0, 0));
        Ok(())
    }

    fn chardev(&mut self, path: &str, major: u32, minor: u32) {
        self.parents(path);
        self.entry(path, 0o020_600, &[], (major, minor));
    }

    fn finish(mut self) -> Vec<u8> {
        self.entry("TRAILER!!!", 0, &[], (0, 0));
        self.buf
    }
}

/// Shared libraries `ldd` lists for `exe` (the dynamic loader included), by the path the binary
/// asks for.
fn shared_libs(exe: &Path) -> Result<Vec<PathBuf>> {
    let out = output(Command::new("ldd").arg(exe))?;
    Ok(out
        .lines()
        .filter_map(|l| {
            let l = l.trim();
            let path = match l.split_once("=>") {
                Some((_, r)) => r.split_whitespace().next(),
                None => l.split_whitespace().next(),
            }?;
            path.starts_with('/').then(|| PathBuf::from(path))
        })
        .collect())
}

/// `stress` arguments of the TUI check: the frag pattern, shorter.
const TUI_STRESS: &str =
    "--pattern thp-fragment --zram 64 --mthp 64K --limit 1024 --size 60 --passes 6";

/// The TUI check (full-tier kernels): `live` headless with a recording, then `replay` of that
/// recording headless; their device maps at peak occupancy must agree (docs/vm-tests.md).
fn tui_script() -> String {
    format!(
        r#"echo "swapscope-vm: tui: live --headless --record -- stress {a}"
$S live --headless 4000 --frame-dump /out/tui.frames --summary-json /out/tui.live.json --record /out/tui.swsc -- $S stress {a} > /out/tui.live.out 2> /out/tui.live.err
echo $? > /out/tui.live.rc
echo "swapscope-vm: tui: live exited $(cat /out/tui.live.rc); replay --headless"
$S replay /out/tui.swsc --speed max --headless 100000 --summary-json /out/tui.replay.json > /out/tui.replay.out 2> /out/tui.replay.err
echo $? > /out/tui.replay.rc
"#,
        a = TUI_STRESS
    )
}

/// The exporter check (full-tier kernels): `serve --tier full` on loopback while the frag
/// workload runs, scraped with busybox wget, then SIGTERM (docs/vm-tests.md).
fn serve_script() -> String {
    format!(
        r#"echo "swapscope-vm: serve: serve --tier full, stress {a}"
ip link set lo up
$S serve --tier full --listen 127.0.0.1:9866 --interval 0.5 > /out/serve.out 2> /out/serve.err &
SP=$!
i=0
until wget -qO /out/serve.health http://127.0.0.1:9866/healthz 2>/dev/null || [ $i -ge 120 ]; do
  sleep 0.5; i=$((i+1))
done
$S stress {a} > /out/serve.stress.out 2> /out/serve.stress.err
sleep 2
wget -qO /out/serve.metrics http://127.0.0.1:9866/metrics
wget -qO /out/serve.health http://127.0.0.1:9866/healthz
kill -TERM $SP
wait $SP
echo $? > /out/serve.rc
echo "swapscope-vm: serve exited $(cat /out/serve.rc)"
"#,
        a = TUI_STRESS
    )
}

/// Variables of the host's environment handed to swapscope in the guest (diagnostics:
/// `SWAPSCOPE_RESCUE=0`, `SWAPSCOPE_VERIFIER_LOG=1`), as `export` lines.
fn guest_env() -> String {
    ["SWAPSCOPE_RESCUE", "SWAPSCOPE_VERIFIER_LOG"]
        .iter()
        .filter_map(|k| {
            let v = env::var(k).ok()?;
            v.bytes()
                .all(|b| b.is_ascii_alphanumeric())
                .then(|| format!("export {k}={v}\n"))
        })
        .collect()
}

/// The live benchmark in the guest, once per recorder (`before`: `/bin/swapscope-before`;
/// `after`: this build): `swapscope-bench --live` with its JSON summary, stdout and stderr kept in /out;
/// its progress lines are echoed to the console.
fn bench_script(b: &VmBench) -> String {
    let mut out = String::from("uname -v > /out/uname-v\nnproc > /out/nproc\nmkdir -p /tmp/b\n");
    for w in b.recorders() {
        let rec = if w == "before" {
            " --recorder /bin/swapscope-before"
        } else {
            ""
        };
        out.push_str(&format!(
            r#"echo "swapscope-vm: bench {w}: swapscope-bench --live --pairs {p} --storm-mib {m} --storm-passes {n}{rec}"
{{ /bin/swapscope-bench --swapscope $S --live --pairs {p} --dir /tmp/b --storm-mib {m} --storm-passes {n}{rec} --summary-json /out/bench.{w}.json 2>&1 > /out/bench.{w}.out; echo $? > /out/bench.{w}.rc; }} | tee /out/bench.{w}.err | sed 's/^/swapscope-vm: bench {w}: /'
grep -h -e '^Median' -e '^BPF program' /out/bench.{w}.out | sed 's/^/swapscope-vm: bench {w}: /'
echo "swapscope-vm: bench {w}: exited $(cat /out/bench.{w}.rc)"
"#,
            p = b.pairs,
            m = b.storm_mib,
            n = b.storm_passes,
        ));
    }
    out
}

fn init_script(
    mods: &[String],
    scenarios: &[Scenario],
    tui: bool,
    bench: Option<&VmBench>,
) -> String {
    let runs: String = scenarios
        .iter()
        .map(|sc| {
            format!(
                r#"echo "swapscope-vm: {n}: record -- stress {a}"
T0=$(cut -d' ' -f1 /proc/uptime)
$S record -o /out/{n}.swsc -- $S stress {a} > /out/{n}.record.out 2> /out/{n}.record.err
echo $? > /out/{n}.record.rc
T1=$(cut -d' ' -f1 /proc/uptime)
echo "$T0 $T1" > /out/{n}.record.uptime
tail -n 3 /out/{n}.record.err
echo "swapscope-vm: {n}: record exited $(cat /out/{n}.record.rc) after $T0 .. $T1 s uptime"
if [ -s /out/{n}.swsc ]; then
  $S report --json /out/{n}.swsc > /out/{n}.report.json 2> /out/{n}.report.err
  echo $? > /out/{n}.report.rc
fi
cat /proc/swaps > /out/{n}.swaps.after
ls /sys/fs/cgroup > /out/{n}.cgroups.after
"#,
                n = sc.name,
                a = sc.stress
            )
        })
        .collect();
    format!(
        r#"#!/bin/busybox sh
/bin/busybox --install -s /bin
export PATH=/bin:/sbin
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev 2>/dev/null
mount -t tmpfs tmpfs /tmp
mount -t tracefs nodev /sys/kernel/tracing
mount -t securityfs none /sys/kernel/security
mount -t cgroup2 none /sys/fs/cgroup
echo "swapscope-vm: init started, release $(uname -r), uptime $(cut -d' ' -f1 /proc/uptime) s"
for m in {mods}; do
  insmod /lib/vm-modules/$m.ko || echo "swapscope-vm: insmod $m failed"
done
mkdir -p /out
{env}uname -r > /out/release
cat /proc/cmdline > /out/cmdline
S=/bin/swapscope
echo "swapscope-vm: doctor"
$S doctor --json > /out/doctor.json 2> /out/doctor.err
echo $? > /out/doctor.rc
$S doctor 2>&1
{runs}{tui}{bench}cat /proc/swaps > /out/swaps.after
cat /proc/vmstat > /out/vmstat.after
ls /sys/fs/cgroup > /out/cgroups.after
dmesg > /out/dmesg
echo done > /out/done
tar -cf /dev/vda -C /out . && echo "swapscope-vm: results written"
sync
echo "swapscope-vm: powering off"
poweroff -f
"#,
        mods = mods.join(" "),
        env = guest_env(),
        runs = runs,
        tui = if tui {
            tui_script() + &serve_script()
        } else {
            String::new()
        },
        bench = bench.map(bench_script).unwrap_or_default(),
    )
}

fn build_initramfs(
    exe: &Path,
    mods: &[(String, Vec<u8>)],
    out: &Path,
    scenarios: &[Scenario],
    tui: bool,
    bench: Option<&VmBench>,
) -> Result<()> {
    let mut c = Cpio::default();
    for d in [
        "/bin", "/sbin", "/dev", "/proc", "/sys", "/tmp", "/out", "/etc", "/run", "/root",
    ] {
        c.dir(d);
    }
    c.chardev("/dev/console", 5, 1);
    c.chardev("/dev/null", 1, 3);
    c.file("/bin/busybox", &fs::read(BUSYBOX)?, 0o755)?;
    c.file(
        "/bin/swapscope",
        &fs::read(exe).with_context(|| format!("reading {}", exe.display()))?,
        0o755,
    )?;
    let mut libs = shared_libs(exe)?;
    if let Some(b) = bench {
        c.file(
            "/bin/swapscope-bench",
            &fs::read(&b.program).with_context(|| format!("reading {}", b.program.display()))?,
            0o755,
        )?;
        for lib in shared_libs(&b.program)? {
            if !libs.contains(&lib) {
                libs.push(lib);
            }
        }
    }
    if let Some(before) = bench.and_then(|b| b.before.as_deref()) {
        c.file(
            "/bin/swapscope-before",
            &fs::read(before).with_context(|| format!("reading {}", before.display()))?,
            0o755,
        )?;
        for lib in shared_libs(before)? {
            if !libs.contains(&lib) {
                libs.push(lib);
            }
        }
    }
    for lib in libs {
        let bytes = fs::read(&lib).with_context(|| format!("reading {}", lib.display()))?;
        c.file(&lib.to_string_lossy(), &bytes, 0o755)?;
    }
    for (name, bytes) in mods {
        c.file(&format!("/lib/vm-modules/{name}.ko"), bytes, 0o644)?;
    }
    let names: Vec<String> = mods.iter().map(|(n, _)| n.clone()).collect();
    c.file(
        "/init",
        init_script(&names, scenarios, tui, bench).as_bytes(),
        0o755,
    )?;
    let cpio = out.with_extension("");
    fs::write(&cpio, c.finish())?;
    let _ = fs::remove_file(out);
    run(Command::new("gzip").args(["-1", "-n", "-f"]).arg(&cpio))?;
    ensure!(out.exists(), "gzip did not write {}", out.display());
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// one kernel

/// Removes the work directory on drop unless kept.
struct WorkDir {
    path: PathBuf,
    keep: bool,
}

impl Drop for WorkDir {
    fn drop(&mut self) {
        if self.keep {
            eprintln!("xtask: kept {}", self.path.display());
        } else {
            let _ = fs::remove_dir_all(&self.path);
        }
    }
}

/// Kills the VM if the harness leaves early.
struct Vm(Child);

impl Drop for Vm {
    fn drop(&mut self) {
        if let Ok(None) = self.0.try_wait() {
            let _ = self.0.kill();
        }
        let _ = self.0.wait();
    }
}

struct Timing {
    boot: Option<f64>,
    total: f64,
}

#[expect(
    clippy::too_many_arguments,
    reason = "one call site; a struct would only rename them"
)]
fn boot(
    vmlinuz: &Path,
    initrd: &Path,
    disk: &Path,
    serial_log: &Path,
    name: &str,
    smp: u32,
    keep: bool,
    timeout: u64,
) -> Result<Timing> {
    let mut cmd = Command::new("qemu-system-x86_64");
    cmd.args([
        "-machine", "q35", "-accel", "tcg", "-cpu", "max", "-m", "2G",
    ])
    .arg("-smp")
    .arg(smp.to_string())
    .args(["-nographic", "-no-reboot", "-nic", "none"])
    .arg("-kernel")
    .arg(vmlinuz)
    .arg("-initrd")
    .arg(initrd)
    .arg("-append")
    .arg("console=ttyS0 panic=-1 mitigations=off loglevel=5")
    .arg("-drive")
    .arg(format!("file={},format=raw,if=virtio", disk.display()));
    if keep {
        eprintln!("xtask: {cmd:?}");
    }
    let t0 = Instant::now();
    let child = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .context("starting qemu-system-x86_64")?;
    let mut vm = Vm(child);
    let stdout = vm.0.stdout.take().context("qemu stdout")?;
    let stderr = vm.0.stderr.take().context("qemu stderr")?;
    let (tx, rx) = mpsc::channel();
    let mut log = fs::File::create(serial_log)
        .with_context(|| format!("creating {}", serial_log.display()))?;
    let tag = name.to_string();
    let reader = thread::spawn(move || {
        let mut r = BufReader::new(stdout);
        let mut line = Vec::new();
        while r.read_until(b'\n', &mut line).is_ok_and(|n| n > 0) {
            let _ = log.write_all(&line);
            let text = String::from_utf8_lossy(&line);
            // The marker may follow terminal escapes on the same line.
            if let Some(msg) = text.split_once("swapscope-vm: ").map(|(_, m)| m.trim()) {
                eprintln!("  guest {tag}: {msg}");
                if msg.starts_with("init started") {
                    let _ = tx.send(t0.elapsed().as_secs_f64());
                }
            }
            line.clear();
        }
    });
    let err_reader = thread::spawn(move || {
        let mut s = String::new();
        let _ = std::io::Read::read_to_string(&mut BufReader::new(stderr), &mut s);
        s
    });
    let deadline = Duration::from_secs(timeout);
    let status = loop {
        if let Some(st) = vm.0.try_wait()? {
            break st;
        }
        if t0.elapsed() > deadline {
            let _ = vm.0.kill();
            let _ = vm.0.wait();
            let _ = reader.join();
            bail!(
                "the VM did not power off within {} s; serial log: {}",
                timeout,
                serial_log.display()
            );
        }
        thread::sleep(Duration::from_millis(200));
    };
    let total = t0.elapsed().as_secs_f64();
    let _ = reader.join();
    let qemu_err = err_reader.join().unwrap_or_default();
    ensure!(
        status.success(),
        "qemu exited with {status}: {}; serial log: {}",
        qemu_err.trim(),
        serial_log.display()
    );
    Ok(Timing {
        boot: rx.try_recv().ok(),
        total,
    })
}

/// A kernel ready to boot.
struct Prepared {
    spec: &'static Spec,
    release: String,
    vmlinuz: PathBuf,
    mods: Vec<(String, Vec<u8>)>,
}

/// Resolves, downloads and extracts a kernel (cached) and reads the modules the guest needs.
fn prepare(spec: &'static Spec, apt: &Apt, cache: &Path) -> Result<Prepared> {
    let r = resolve(spec, apt)?;
    step(&format!(
        "vm {}: linux {} ({}) from {}",
        spec.label,
        r.release,
        r.version,
        spec.suites.join("/")
    ));
    let tree = fetch_tree(&r, apt, cache)?;
    let rel = &r.release;
    let moddir = first_existing([
        tree.join("usr/lib/modules").join(rel),
        tree.join("lib/modules").join(rel),
    ])
    .with_context(|| format!("no modules directory for {rel} in {}", tree.display()))?;
    let vmlinuz = first_existing([
        tree.join("boot").join(format!("vmlinuz-{rel}")),
        moddir.join("vmlinuz"),
    ])
    .with_context(|| format!("no vmlinuz for {rel} in {}", tree.display()))?;
    let mods = resolve_modules(&moddir)?;
    step(&format!(
        "vm {}: modules {}",
        spec.label,
        mods.iter()
            .map(|(n, _)| n.as_str())
            .collect::<Vec<_>>()
            .join(" ")
    ));
    Ok(Prepared {
        spec,
        release: r.release,
        vmlinuz,
        mods,
    })
}

/// Boots one kernel with `smp` vCPUs, brings its results back and checks them.
fn run_vm(
    p: &Prepared,
    cache: &Path,
    exe: &Path,
    smp: u32,
    keep: bool,
    timeout: u64,
    opts: &RunOpts,
) -> Result<String> {
    let spec = p.spec;
    let name = format!("{}-smp{smp}", spec.label);
    let run_dir = cache.join("runs").join(&name);
    let _ = fs::remove_dir_all(&run_dir);
    fs::create_dir_all(&run_dir)?;
    let work = WorkDir {
        path: run_dir.join("work"),
        keep,
    };
    fs::create_dir_all(&work.path)?;
    let initrd = work.path.join("initrd.cpio.gz");
    let mut scenarios = scenarios(spec, smp);
    // SWAPSCOPE_VM_SCENARIOS=a,b runs only those (debugging; the TUI and exporter ones then
    // only when named `tui`; `none` runs none).
    let only = if opts.no_scenarios {
        Some("none".to_string())
    } else {
        env::var("SWAPSCOPE_VM_SCENARIOS").ok()
    };
    if let Some(only) = &only {
        scenarios.retain(|sc| only.split(',').any(|n| n == sc.name));
    }
    // The TUI scenario checks the viewer, not SMP behaviour: once, with one vCPU.
    let tui = spec.viewer_scenarios()
        && smp == 1
        && only
            .as_ref()
            .is_none_or(|o| o.split(',').any(|n| n == "tui"));
    // The benchmark's storm sets 64 KiB mTHP: only on kernels that have it.
    let bench = opts.bench.as_ref().filter(|_| spec.mthp);
    build_initramfs(exe, &p.mods, &initrd, &scenarios, tui, bench)?;
    let disk = work.path.join("results.img");
    fs::File::create(&disk)?.set_len(256 << 20)?;
    let serial = run_dir.join("serial.log");
    step(&format!(
        "vm {name}: booting (TCG, -smp {smp}; serial log {})",
        serial.display()
    ));
    let timing = boot(
        &p.vmlinuz, &initrd, &disk, &serial, &name, smp, keep, timeout,
    )?;

    let results = target_dir().join("vm-results").join(&name);
    let _ = fs::remove_dir_all(&results);
    fs::create_dir_all(&results)?;
    fs::copy(&serial, results.join("serial.log"))?;
    let untar = Command::new("tar")
        .arg("-xf")
        .arg(&disk)
        .arg("-C")
        .arg(&results)
        .output()?;
    ensure!(
        untar.status.success() && results.join("done").exists(),
        "the guest wrote no complete results ({}); see {}",
        String::from_utf8_lossy(&untar.stderr).trim(),
        results.join("serial.log").display()
    );
    let mut summary = check(spec, &p.release, &results, &timing, &scenarios, smp, tui)
        .with_context(|| format!("results in {}", results.display()))?;
    if let Some(b) = &opts.bench {
        if bench.is_none() {
            summary.push_str("  bench: skipped (the storm needs 64 KiB mTHP)\n");
        }
        for w in bench.map(VmBench::recorders).unwrap_or_default() {
            summary.push_str(
                &check_bench(&results, w, b)
                    .with_context(|| format!("bench {w}; results in {}", results.display()))?,
            );
        }
    }
    fs::write(results.join("summary.txt"), &summary)?;
    Ok(summary)
}

// ---------------------------------------------------------------------------------------------
// checks

fn read(dir: &Path, name: &str) -> String {
    fs::read_to_string(dir.join(name)).unwrap_or_default()
}

fn rc(dir: &Path, name: &str) -> Option<i32> {
    read(dir, name).trim().parse().ok()
}

fn num(v: &Value, path: &[&str]) -> u64 {
    let mut cur = v;
    for p in path {
        cur = &cur[*p];
    }
    cur.as_u64().unwrap_or(0)
}

fn no_panic(dir: &Path, files: &[&str]) -> Result<()> {
    for f in files {
        let t = read(dir, f);
        ensure!(
            !t.contains("panicked") && !t.contains("RUST_BACKTRACE"),
            "swapscope panicked ({f}): {}",
            t.trim()
        );
    }
    Ok(())
}

fn check(
    spec: &Spec,
    release: &str,
    dir: &Path,
    t: &Timing,
    scenarios: &[Scenario],
    smp: u32,
    tui: bool,
) -> Result<String> {
    no_panic(dir, &["doctor.err"])?;
    let doctor: Value = serde_json::from_str(&read(dir, "doctor.json")).with_context(|| {
        format!(
            "doctor printed no JSON (exit {:?}): {}",
            rc(dir, "doctor.rc"),
            read(dir, "doctor.err").trim()
        )
    })?;
    ensure!(
        doctor["kernel_release"] == release,
        "doctor names kernel {} but the VM booted {release}",
        doctor["kernel_release"]
    );
    ensure!(
        doctor["can_record"] == true,
        "doctor says swapscope cannot record on {release}"
    );
    let tier = doctor["tier"].as_str().unwrap_or("?").to_string();
    let attached: Vec<String> = doctor["probes"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|p| p["attached"] == true)
        .map(|p| {
            format!(
                "{}/{}",
                p["kind"].as_str().unwrap_or(""),
                p["name"].as_str().unwrap_or("")
            )
        })
        .collect();
    let mut s = format!(
        "vm {} — linux {release}: boot {} s, whole VM run {:.1} s, -smp {smp}\n  doctor: tier {tier}; attached: {}\n",
        spec.label,
        t.boot.map_or("?".into(), |b| format!("{b:.1}")),
        t.total,
        attached.join(" "),
    );
    ensure!(
        !spec.full_tier || tier == "full",
        "the full tier should attach on {release}, doctor says tier {tier}"
    );
    for sc in scenarios {
        s.push_str(
            &check_scenario(spec, dir, sc, smp).with_context(|| format!("scenario {}", sc.name))?,
        );
    }
    if tui {
        s.push_str(&check_tui(dir).context("scenario tui")?);
        s.push_str(&check_serve(dir, spec).context("scenario serve")?);
    }
    Ok(s)
}

/// The live benchmark of one recorder: it exited 0 and wrote its JSON summary, with every pair.
fn check_bench(dir: &Path, which: &str, b: &VmBench) -> Result<String> {
    let f = |suffix: &str| format!("bench.{which}.{suffix}");
    no_panic(dir, &[&f("err"), &f("out")])?;
    ensure!(
        rc(dir, &f("rc")) == Some(0),
        "swapscope-bench --live exited {:?}: {}",
        rc(dir, &f("rc")),
        read(dir, &f("err")).trim()
    );
    let v: Value = serde_json::from_str(&read(dir, &f("json")))
        .context("swapscope-bench --live wrote no JSON summary")?;
    let pairs = v["pairs"].as_array().map_or(0, Vec::len);
    ensure!(
        pairs == b.pairs as usize,
        "{pairs} pairs measured, {} asked",
        b.pairs
    );
    let f64_of = |k: &str| v[k].as_f64().unwrap_or(f64::NAN);
    Ok(format!(
        "  bench {which}: {pairs} pairs, median wall ratio {:.3} (pairs {}), extra sys {:.0} ns/event, recorder {:.0} ns/event, lost {}\n",
        f64_of("median_ratio"),
        v["pair_ratios"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|r| format!("{:.3}", r.as_f64().unwrap_or(f64::NAN)))
            .collect::<Vec<_>>()
            .join(" "),
        f64_of("median_extra_sys_ns_per_event"),
        f64_of("median_recorder_ns_per_event"),
        num(&v, &["lost"]),
    ))
}

/// `serve --tier full` around the frag workload: it exits 0 at SIGTERM, `/healthz` said ok, and
/// the scrape has the full tier's families: the kernel's requests and refusals, and for the
/// model of this kernel its requests, failures and same-slot fidelity.
fn check_serve(dir: &Path, spec: &Spec) -> Result<String> {
    no_panic(dir, &["serve.err"])?;
    ensure!(
        rc(dir, "serve.rc") == Some(0),
        "serve exited {:?} at SIGTERM: {}",
        rc(dir, "serve.rc"),
        read(dir, "serve.err").trim()
    );
    ensure!(
        read(dir, "serve.health").starts_with("ok"),
        "/healthz said {:?}",
        read(dir, "serve.health")
    );
    let m = read(dir, "serve.metrics");
    let value = |prefix: &str| -> Option<f64> {
        m.lines()
            .find(|l| l.starts_with(prefix))
            .and_then(|l| l.rsplit(' ').next()?.parse().ok())
    };
    ensure!(
        m.contains("swapscope_info{tier=\"full\""),
        "the scrape is not the full tier: {}",
        m.lines()
            .find(|l| l.starts_with("swapscope_info"))
            .unwrap_or("no swapscope_info")
    );
    let Some(model) = spec.model else {
        bail!("no model for {}", spec.label);
    };
    let req = value("swapscope_requests_total{size=\"64kB\"}").unwrap_or(0.0);
    let model_req = value(&format!(
        "swapscope_model_requests_total{{model=\"{model}\",size=\"64kB\"}}"
    ))
    .unwrap_or(0.0);
    let same = value(&format!(
        "swapscope_model_same_slot_ratio{{model=\"{model}\"}}"
    ));
    ensure!(req > 0.0, "no 64 KiB requests in the scrape");
    ensure!(
        model_req == req,
        "{model} replayed {model_req} 64 KiB requests, the kernel answered {req}"
    );
    ensure!(same.is_some(), "no same-slot fidelity for {model}");
    for family in [
        "swapscope_request_failures_total",
        "swapscope_model_fragmentation_ratio",
        "swapscope_model_clusters",
        "swapscope_mthp_swpout_fallback_total",
        "swapscope_writeouts_total",
    ] {
        ensure!(
            m.contains(&format!("# TYPE {family} ")),
            "{family} missing from the scrape"
        );
    }
    Ok(format!(
        "  serve: full tier, 64K requests {req} (= {model}'s), same-slot {:.4}, {} lines scraped, exit 0 at SIGTERM\n",
        same.unwrap_or(0.0),
        m.lines().count()
    ))
}

/// `live --headless --record` around the frag workload, then `replay --headless` of that
/// recording: both exit 0, neither analysis skipped events, the live device map at its peak
/// occupancy equals the one rebuilt from the recording (the engine `report` uses), the frames
/// show the full-tier device map, and the live 64 KiB write-outs equal the kernel's Δswpout.
fn check_tui(dir: &Path) -> Result<String> {
    no_panic(dir, &["tui.live.err", "tui.replay.err"])?;
    ensure!(
        rc(dir, "tui.live.rc") == Some(0),
        "live exited {:?}: {}",
        rc(dir, "tui.live.rc"),
        read(dir, "tui.live.err").trim()
    );
    ensure!(
        rc(dir, "tui.replay.rc") == Some(0),
        "replay exited {:?}: {}",
        rc(dir, "tui.replay.rc"),
        read(dir, "tui.replay.err").trim()
    );
    let live: Value = serde_json::from_str(&read(dir, "tui.live.json"))
        .context("live --summary-json wrote no JSON")?;
    let replay: Value = serde_json::from_str(&read(dir, "tui.replay.json"))
        .context("replay --summary-json wrote no JSON")?;
    for (name, v) in [("live", &live), ("replay", &replay)] {
        ensure!(
            num(v, &["analysis_skipped"]) == 0,
            "the {name} analysis skipped {} events",
            num(v, &["analysis_skipped"])
        );
    }
    let frames = num(&live, &["ui", "frames"]);
    ensure!(
        frames >= 5,
        "live drew {frames} frames (one per view at least)"
    );
    let text = read(dir, "tui.frames");
    ensure!(
        text.contains("real (rebuilt from the stream)"),
        "no frame shows the full-tier device map"
    );
    let peaks = |v: &Value| v["peaks"].as_array().cloned().unwrap_or_default();
    let (lp, rp) = (peaks(&live), peaks(&replay));
    ensure!(!lp.is_empty(), "the live session saw no device at its peak");
    ensure!(
        lp == rp,
        "the live device map at peak differs from the recording's: live {} slots at event {}, replay {} at event {}",
        num(&lp[0], &["used_slots"]),
        num(&lp[0], &["event"]),
        rp.first().map_or(0, |p| num(p, &["used_slots"])),
        rp.first().map_or(0, |p| num(p, &["event"]))
    );
    let w4 = num(&live, &["writeouts_by_order", "4"]);
    let k4 = num(&live, &["kernel_swpout_by_order", "4"]);
    ensure!(w4 == k4, "live 64K write-outs {w4} vs Δswpout {k4}");
    Ok(format!(
        "  tui: live {} frames (draw {:.2} ms mean, {:.2} max); device map at peak = replay's: {} slots in {} clusters at event {}; 64K write-outs {w4} = Δswpout\n",
        frames,
        live["ui"]["draw_ms_mean"].as_f64().unwrap_or(0.0),
        live["ui"]["draw_ms_max"].as_f64().unwrap_or(0.0),
        num(&lp[0], &["used_slots"]),
        lp[0]["cluster_used"].as_array().map_or(0, Vec::len),
        num(&lp[0], &["event"]),
    ))
}

fn check_scenario(spec: &Spec, dir: &Path, sc: &Scenario, smp: u32) -> Result<String> {
    let f = |suffix: &str| format!("{}.{suffix}", sc.name);
    no_panic(dir, &[&f("record.err"), &f("record.out"), &f("report.err")])?;
    ensure!(
        rc(dir, &f("record.rc")) == Some(0),
        "record -- stress failed (exit {:?}): {}",
        rc(dir, &f("record.rc")),
        read(dir, &f("record.err")).trim()
    );
    ensure!(
        rc(dir, &f("report.rc")) == Some(0),
        "report failed: {}",
        read(dir, &f("report.err")).trim()
    );
    let r: Value = serde_json::from_str(&read(dir, &f("report.json"))).context("report JSON")?;
    let events = num(&r, &["writeout_events"]);
    let w4 = num(&r, &["writeouts_by_order", "4"]);
    let k4 = num(&r, &["kernel", "swpout_by_order", "4"]);
    let fb4 = num(&r, &["kernel", "swpout_fallback_by_order", "4"]);
    let pages = num(&r, &["writeout_pages"]);
    let pswpout = num(&r, &["kernel", "pswpout_pages"]);
    let zero = num(&r, &["kernel", "swpout_zero_pages"]);
    let lost = num(&r, &["lost_events"]);
    let mut s = format!(
        "  {} ({} tasks reclaiming): write-outs {events}; 64K: {w4} vs Δswpout {k4}, Δswpout_fallback {fb4}; pages {pages} vs Δpswpout {pswpout}; zero {zero}; lost {lost}; 64K swap-ins {}, pswpin {}; {} intervals, peak {}\n",
        sc.name,
        sc.tasks,
        num(&r, &["kernel", "swpin_by_order", "4"]),
        num(&r, &["kernel", "pswpin_pages"]),
        r["intervals"].as_array().map_or(0, Vec::len),
        r["peak"]["label"].as_str().unwrap_or("no peak")
    );
    ensure!(
        events > 1000,
        "expected a swap storm, saw {events} write-outs"
    );
    ensure!(lost == 0, "{lost} events were lost");
    // Zero-filled folios (6.12+: `swpout_zero`) are written out without I/O: the kernel counts
    // their pages apart from `pswpout` and their folios not in the per-size `swpout`, and reads
    // them back without counting `pswpin`; the write-out and swap-in events see them all. So
    // the relations below hold with `zero` added: exactly for pages written, as bounds for the
    // 64 KiB folios and the pages read back (at most every zero-filled page comes back).
    let pswpout = pswpout + zero;
    // The report of the run: intervals with the occupancy at their end, the peak, and the
    // kernel's swap-in counters beside the swap-outs (schema 2, docs/report-schema.md).
    let intervals = r["intervals"].as_array().map_or(0, Vec::len);
    ensure!(intervals >= 1, "the report has no intervals");
    ensure!(
        !r["intervals"][0]["models"][0]["state"].is_null(),
        "the first interval has no occupancy"
    );
    ensure!(!r["peak"].is_null(), "the report has no peak");
    if spec.mthp_swpin {
        ensure!(
            r["kernel"]["swpin_by_order"].get("4").is_some(),
            "64 KiB swap-ins were not sampled: {}",
            r["kernel"]["swpin_by_order"]
        );
    }
    // Hook invocations the kernel did not deliver (recursion_misses), by feed: a program is
    // skipped when entered again on a CPU where it is already running (a task preempted inside
    // it on a preemptible kernel). Its rescue twin delivers most of them; of the rest, requests
    // and splits are inferred where the stream shows them (docs/kernel-support.md).
    let missed = nonzero_counts(&r["kernel"]["missed_events"]);
    let rescued = nonzero_counts(&r["kernel"]["rescued_events"]);
    let inferred = nonzero_counts(&r["inferred_events"]);
    let missed_alloc =
        missed.get("alloc").copied().unwrap_or(0) + missed.get("alloc-shmem").copied().unwrap_or(0);
    let missed_writeout = missed.get("writeout").copied().unwrap_or(0);
    let missed_split = missed.get("split").copied().unwrap_or(0);
    let inferred_alloc = inferred.get("alloc").copied().unwrap_or(0);
    let inferred_split = inferred.get("split").copied().unwrap_or(0);
    // Every request event the kernel skipped was inferred: none was a refusal.
    let requests_complete = missed_alloc <= inferred_alloc;
    // Grants are emitted inside the allocator's locks, where no program is skipped: with them
    // the placements are complete even when request events were skipped.
    let grants = num(&r["stream"], &["grant_events"]) > 0;
    s.push_str(&format!(
        "    events the kernel skipped (recursion_misses): rescued by the twin programs {rescued:?}; not delivered {missed:?}; inferred {inferred:?}\n"
    ));
    // The relations are exact when every write-out was delivered. A missed one (a task
    // preempted inside the program on a preemptible kernel; `fork` always has some, `seq` now
    // and then under TCG) makes them bounds: the shortfall must be covered by the reported
    // misses, each at most one PMD folio.
    let exact = sc.exact_writeouts && missed_writeout == 0;
    if exact {
        ensure!(
            pages == pswpout,
            "Σ 2^order × write-outs {pages} != Δpswpout {pswpout}"
        );
    } else {
        ensure!(
            pages <= pswpout,
            "Σ 2^order × write-outs {pages} > Δpswpout {pswpout}"
        );
        ensure!(
            pages == pswpout || missed_writeout > 0,
            "write-outs short of the I/O ({pages} < {pswpout} pages) with no missed write-out event reported"
        );
        ensure!(
            pswpout - pages <= missed_writeout * 512,
            "write-outs short of the I/O by {} pages, more than {missed_writeout} missed folios can hold",
            pswpout - pages
        );
    }
    if sc.mthp {
        ensure!(w4 > 0, "no 64 KiB folio was written out");
        if exact {
            ensure!(
                w4 >= k4 && (w4 - k4) * 16 <= zero,
                "64 KiB write-outs {w4} != Δswpout[64K] {k4} (+ at most {} zero-filled)",
                zero / 16
            );
        } else {
            ensure!(w4 <= k4, "64 KiB write-outs {w4} > Δswpout[64K] {k4}");
            ensure!(
                w4 + missed_writeout >= k4,
                "64 KiB write-outs {w4} short of Δswpout[64K] {k4} by more than the {missed_writeout} missed"
            );
        }
    }
    // Swap-in events (format 1.3; every kernel here has the feed, 6.1 through `swap_readpage`):
    // every folio read back passes `swap_read_folio`, so the pages they cover are the kernel's
    // `pswpin`, and on 7.x the 64 KiB ones its per-size `swpin` — exactly, when no swap-in event
    // was reported missed.
    let sin_pages = num(&r, &["swapin_pages"]);
    let pswpin = num(&r, &["kernel", "pswpin_pages"]);
    let sin4 = num(&r, &["swapins_by_order", "4"]);
    let swpin4 = num(&r, &["kernel", "swpin_by_order", "4"]);
    let missed_swapin = missed.get("swapin").copied().unwrap_or(0);
    s.push_str(&format!(
        "    swap-ins: {sin_pages} pages by events vs Δpswpin {pswpin}; 64K events {sin4} vs Δswpin[64K] {swpin4}\n"
    ));
    ensure!(
        !r["swapin_pages"].is_null(),
        "no swap-in feed attached (every supported kernel has one)"
    );
    if missed_swapin == 0 {
        ensure!(
            sin_pages >= pswpin && sin_pages - pswpin <= zero,
            "Σ 2^order × swap-in events {sin_pages} != Δpswpin {pswpin} (+ at most {zero} zero-filled)"
        );
        if spec.mthp_swpin {
            ensure!(
                sin4 >= swpin4 && (sin4 - swpin4) * 16 <= zero,
                "64 KiB swap-in events {sin4} != Δswpin[64K] {swpin4} (+ at most {} zero-filled)",
                zero / 16
            );
        }
    } else {
        ensure!(
            sin_pages <= pswpin + zero,
            "swap-in events cover {sin_pages} pages, more than Δpswpin {pswpin}"
        );
    }
    if spec.full_tier {
        // Relation 1 (kernel-swap-allocator.md §4.3): every successful order-4 request from
        // reclaim is written out or kept off the device; splits after a refused order-4 request
        // are the fallbacks.
        let req4 = num(&r, &["requests_by_order", "4"]);
        let fail4 = num(&r, &["failed_requests_by_order", "4"]);
        let split4 = num(&r, &["fallback_splits_by_order", "4"]);
        s.push_str(&format!(
            "    full tier: order-4 requests {req4} ({fail4} refused), fallback splits {split4} vs Δswpout_fallback {fb4}\n"
        ));
        // A folio written once per slot it was given, unless a second process keeps a swap-cache
        // folio mapped: re-dirtied, it is written again without a new request.
        if sc.exact_writeouts && requests_complete && missed_writeout == 0 {
            ensure!(
                req4 - fail4 >= k4,
                "successful order-4 requests {} < Δswpout[64K] {k4}",
                req4 - fail4
            );
        }
        // Exact when every refusal and split arrived or was inferred; a refusal the kernel
        // skipped leaves its split unattributed.
        if requests_complete && missed_split <= inferred_split {
            ensure!(
                split4 == fb4,
                "attributed fallback splits {split4} != Δswpout_fallback[64K] {fb4}"
            );
        } else {
            ensure!(
                split4 <= fb4,
                "attributed fallback splits {split4} > Δswpout_fallback[64K] {fb4}"
            );
        }
        // Cluster list moves (6.14+): every move names the list the kernel had the cluster on,
        // which must be the one the stream last put it on (a move not seen would show), and the
        // kernel's model keeps the same lists as the kernel at the end of each interval.
        if spec.cluster_hooks {
            let st = &r["stream"];
            let moves = num(st, &["cluster_events"]);
            let checks = num(st, &["real_cluster_checks"]);
            let bad = num(st, &["real_cluster_mismatches"]);
            let missed_cluster = missed.get("cluster").copied().unwrap_or(0)
                + missed.get("cluster-isolate").copied().unwrap_or(0);
            let lists = |v: &Value| v["state"]["clusters"].clone();
            // Clusters on a different list: the sum of the per-list differences, halved.
            let apart = |a: &Value, b: &Value| {
                ["free", "nonfull", "frag", "full", "other"]
                    .iter()
                    .map(|k| num(a, &[k]).abs_diff(num(b, &[k])))
                    .sum::<u64>()
                    / 2
            };
            let (mut same, mut rows, mut worst) = (0, 0, 0);
            if let Some(model) = spec.model {
                for iv in r["intervals"].as_array().into_iter().flatten() {
                    let m = iv["models"]
                        .as_array()
                        .into_iter()
                        .flatten()
                        .find(|m| m["name"] == model);
                    // An interval that ended before the first kernel result has no real state.
                    if let Some(m) = m.filter(|_| !iv["real"]["state"].is_null()) {
                        rows += 1;
                        if lists(m) == lists(&iv["real"]) {
                            same += 1;
                        }
                        worst = worst.max(apart(&lists(m), &lists(&iv["real"])));
                    }
                }
            }
            s.push_str(&format!(
                "    cluster lists: {moves} moves, {bad} mismatches in {checks} checks; the model's lists = the kernel's at {same} of {rows} interval ends (at most {worst} cluster apart)\n"
            ));
            ensure!(moves > 0, "no cluster list move was seen");
            if missed_cluster == 0 {
                ensure!(checks > 0, "the cluster list check never ran");
                ensure!(
                    bad == 0,
                    "{bad} cluster list moves were not seen (the previous list disagreed)"
                );
                // The stream orders a request after the list moves it caused (its event comes at
                // the hook's exit) and a free before them, while a model moves its clusters as it
                // serves the event: an interval may end with one cluster between lists.
                // With several CPUs each may have one cluster in flight.
                if grants || missed_alloc == 0 {
                    ensure!(rows > 0, "no interval to compare cluster lists at");
                    ensure!(
                        worst <= u64::from(smp),
                        "the model's cluster lists differ from the kernel's by {worst} clusters at an interval end ({smp} vCPUs)"
                    );
                }
            }
        }
        // Relation 2: the reconstruction matches the kernel. stress swaps its device off at the
        // end, which frees every slot, so every slot seen allocated must have been freed, with
        // no slot allocated twice. Before 6.14 the per-CPU slot cache takes order-0 slots in
        // batches and frees unused ones at swapoff without their allocation being seen.
        ensure!(
            r["real"].is_object(),
            "the full tier recorded no kernel results"
        );
        let st = &r["stream"];
        let double = num(st, &["real_double_alloc_slots"]);
        let unmatched = num(st, &["real_unmatched_free_slots"]);
        let used = num(&r, &["real", "used_slots"]);
        s.push_str(&format!(
            "    reconstruction: {} requests, {} slots freed; at swapoff used {used}, double-allocated {double}, freed-unseen {unmatched}\n",
            num(st, &["allocs"]),
            num(st, &["freed_slots"])
        ));
        ensure!(
            double == 0,
            "{double} slots were allocated twice (a missed free)"
        );
        ensure!(
            used == 0,
            "{used} slots still allocated after swapoff (missed frees)"
        );
        // The inuse_pages check: on one CPU the kernel's in-use count moves by exactly what the
        // stream says — at the grants (6.12's slot-cache batches included), else, from 6.14 on
        // (no slot cache) with every request delivered, at the requests. With several CPUs the
        // count is one atomic that allocations and frees on different clusters move under
        // different locks, so events of two CPUs can reach the stream in the other order than
        // their updates (docs/kernel-support.md): counted, not asserted.
        let checks = num(&r, &["kernel", "inuse_checks"]);
        let mismatches = num(&r, &["kernel", "inuse_mismatches"]);
        s.push_str(&format!(
            "    inuse_pages check: {mismatches} mismatches in {checks} checks\n"
        ));
        // 6.12 with several reclaimers is the exception on one CPU too: a slot-cache batch can
        // drop `si->lock` midway and let another task free and publish before the batch's grant
        // (docs/kernel-support.md), so there the mismatches are counted, not asserted.
        let batch_races = spec.slot_cache && sc.tasks > 1;
        if smp == 1 && !batch_races && (grants || !spec.slot_cache && missed_alloc == 0) {
            ensure!(checks > 0, "the inuse_pages check never ran");
            ensure!(
                mismatches == 0,
                "{mismatches} inuse_pages mismatches: events are missing"
            );
        }
        if !spec.slot_cache {
            // Every freed slot was seen allocated, unless the kernel itself reports request
            // events it did not deliver (a second task entering the hook on the same CPU while
            // the first was preempted inside the program).
            ensure!(
                unmatched == 0 || missed_alloc > 0,
                "{unmatched} freed slots were never seen allocated and no request event was reported missed: a request path is not hooked"
            );
        }
        // Relation 3: the model of this kernel places requests where the kernel did, with any
        // number of CPUs: the engine replays the requests in the order the kernel decided them
        // (grants), and the model follows the kernel's answer after a request it got wrong (a
        // race the stream could not order; counted as corrections), so each request is judged
        // on the kernel's own state. Its refusals per order are the kernel's.
        if let Some(model) = spec.model {
            let m = r["models"]
                .as_array()
                .into_iter()
                .flatten()
                .find(|m| m["name"] == model)
                .context("the kernel's model is missing from the report")?;
            let rate = m["same_offset_rate"].as_f64().unwrap_or(0.0);
            let compared = num(m, &["compared_requests"]);
            let kfail = nonzero_counts(&r["failed_requests_by_order"]);
            let mfail = nonzero_counts(&m["failures_by_order"]);
            let st = &r["stream"];
            let corrections = num(m, &["kernel_corrections"]);
            let steered = num(m, &["steered_isolations"]);
            s.push_str(&format!(
                "    model {model}: same slot as the kernel for {:.3} % of {compared} requests ({corrections} corrections, {steered} isolations steered); refusals {mfail:?} vs kernel {kfail:?}; {} of {} requests decided at their grant\n",
                rate * 100.0,
                num(st, &["requests_at_grant"]),
                num(st, &["requests_at_grant"]) + num(st, &["requests_at_exit"]),
            ));
            if grants || missed_alloc == 0 {
                ensure!(
                    rate >= 0.99,
                    "{model} picks the kernel's slot for only {:.2} % of requests",
                    rate * 100.0
                );
            }
            if requests_complete {
                // 7.x: a refusal (or a grant) decided before another CPU's free the stream
                // shows first is replayed with that free hidden (docs/kernel-support.md, "Frees
                // made while an allocation was under way"); printed.
                let hidden = num(st, &["decisions_with_hidden_frees"]);
                if hidden > 0 {
                    s.push_str(&format!(
                        "    {hidden} decisions made with {} frees of other CPUs hidden\n",
                        num(st, &["hidden_frees"])
                    ));
                }
                ensure!(
                    mfail == kfail,
                    "{model} refuses {mfail:?} by order, the kernel {kfail:?}"
                );
            } else {
                s.push_str(&format!(
                    "    (refusals not compared: {} request events were neither delivered nor inferred)\n",
                    missed_alloc - inferred_alloc
                ));
            }
        }
    }
    let swaps = read(dir, &f("swaps.after"));
    ensure!(
        swaps.lines().count() <= 1,
        "stress left a swap device behind: {swaps}"
    );
    ensure!(
        !read(dir, &f("cgroups.after")).contains("swapscope-"),
        "stress left a cgroup behind"
    );
    if let Some((a, b)) = read(dir, &f("record.uptime")).trim().split_once(' ')
        && let (Ok(a), Ok(b)) = (a.parse::<f64>(), b.parse::<f64>())
    {
        s.push_str(&format!(
            "    record -- stress took {:.1} s (guest clock)\n",
            b - a
        ));
    }
    Ok(s)
}

/// A report's map of counts (by feed, by order) without its zero entries.
fn nonzero_counts(v: &Value) -> BTreeMap<String, u64> {
    v.as_object()
        .into_iter()
        .flatten()
        .map(|(k, v)| (k.clone(), v.as_u64().unwrap_or(0)))
        .filter(|(_, v)| *v > 0)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

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
