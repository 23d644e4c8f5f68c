//! `cargo xtask`: set-up, the test suite, the demo and the VM tests. Every command installs what
//! it needs first (idempotently, quietly when everything is present).

mod dist;
mod duckdb;
mod vm;

use std::{
    env,
    ffi::OsStr,
    fs,
    io::IsTerminal as _,
    path::{Path, PathBuf},
    process::{Command, ExitCode},
};

use anyhow::{Context as _, Result, bail};
use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(name = "xtask")]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Install the toolchain pieces: nightly rust-src, bpf-linker against the nightly's LLVM.
    Setup,
    /// Every test: rustfmt, clippy (all crates, eBPF included), unit tests, the live host test.
    Test,
    /// The demo: the live TUI while the kernel swaps (on a terminal), else 20 s recorded and
    /// reported.
    Run {
        /// Where to keep the recording.
        #[arg(long, default_value = "target/swapscope-demo.swsc")]
        output: PathBuf,
        /// Seconds of workload when there is no terminal.
        #[arg(long, default_value_t = 20)]
        seconds: u32,
    },
    /// What ships: static (musl) binaries for x86_64 and aarch64 and a Debian package of each
    /// in target/dist/ with SHA256SUMS, checked (static, size, --version and doctor, aarch64
    /// under qemu-user; lintian, the unit verifies, install/reinstall/purge in a dpkg root).
    Dist,
    /// swapscope on Debian kernels (6.1, 6.12, newest 7.x) in QEMU (TCG); see docs/vm-tests.md.
    Vm(vm::VmArgs),
    /// Benchmarks: `report` throughput and memory per swap slot on simulated recordings of
    /// 10 M+ events (release build); results in docs/performance.md.
    Bench {
        /// Runs per measurement; the fastest is reported.
        #[arg(long, default_value_t = 3)]
        repeat: u32,
        /// Reuse the recordings from an earlier run.
        #[arg(long)]
        reuse: bool,
        /// Print the table only; leave docs/performance.md alone.
        #[arg(long)]
        no_doc: bool,
        /// Measure what the recorder costs a swap storm instead (root; builds the BPF object):
        /// paired runs alone / recorded.
        #[arg(long)]
        live: bool,
        /// With --live: pairs of runs (default 5; 3 with --vm).
        #[arg(long, value_parser = clap::value_parser!(u32).range(1..))]
        pairs: Option<u32>,
        /// With --live: in QEMU guests (TCG) on Debian 6.12 and 7.x, where the full tier
        /// attaches, one VM at a time; rewrites the "Full tier in the VMs" block of
        /// docs/performance.md.
        #[arg(long, requires = "live")]
        vm: bool,
        /// With --vm: vCPU counts, one VM per kernel and count.
        #[arg(long, value_delimiter = ',', default_value = "1,2,4", value_parser = clap::value_parser!(u32).range(1..=64))]
        smp: Vec<u32>,
        /// With --vm: an older swapscope binary whose recorder is measured too, before this
        /// build's, in the same guest.
        #[arg(long, requires = "vm")]
        before: Option<PathBuf>,
        /// With --vm: seconds before a VM is killed.
        #[arg(long, default_value_t = 3600)]
        timeout: u64,
        /// Measure the exporter instead (root): `swapscope serve --demo` scraped 50 times a
        /// second for 60 s; failed scrapes, latency percentiles, its memory.
        #[arg(long, conflicts_with = "live")]
        serve: bool,
        /// Find the highest event rate the live analysis (behind `live` and `serve`) keeps up
        /// with, without skipping, with the default models and with all.
        #[arg(long, conflicts_with_all = ["live", "serve"])]
        live_analysis: bool,
    },
    /// Fuzz untrusted input (cargo-fuzz, nightly, AddressSanitizer): the whole-file reader and
    /// the record decoder (corpus seeded from tests/data), the marker FIFO's framing and the
    /// exporter's HTTP request path; see docs/fuzzing.md.
    /// Not part of `test`.
    Fuzz {
        /// Executions per target.
        #[arg(long, default_value_t = 10_000_000)]
        runs: u64,
        /// Targets (default: all of them).
        #[arg(long, value_delimiter = ',', default_values_t = FUZZ_TARGETS.iter().map(|s| s.to_string()))]
        target: Vec<String>,
        /// cargo-fuzz sanitizer: `address`, or `none` to measure the reader's own memory.
        #[arg(long, default_value = "address")]
        sanitizer: String,
    },
}

/// The fuzz targets under fuzz/fuzz_targets.
const FUZZ_TARGETS: &[&str] = &["read_file", "decode_record", "marker_lines", "http_request"];

fn main() -> ExitCode {
    let cli = Cli::parse();
    let r = match cli.cmd {
        Cmd::Setup => setup().and_then(|()| host_packages(TEST_PACKAGES)),
        Cmd::Test => setup()
            .and_then(|()| host_packages(TEST_PACKAGES))
            .and_then(|()| host_packages(dist::DIST_PACKAGES))
            .and_then(|()| host_packages(dist::DEB_PACKAGES))
            .and_then(|()| test()),
        Cmd::Dist => setup()
            .and_then(|()| host_packages(dist::DIST_PACKAGES))
            .and_then(|()| host_packages(dist::DEB_PACKAGES))
            .and_then(|()| dist::dist())
            .and_then(|b| dist::check(&b)),
        Cmd::Run { output, seconds } => setup().and_then(|()| run_demo(&output, seconds)),
        Cmd::Vm(args) => setup()
            .and_then(|()| host_packages(VM_PACKAGES))
            .and_then(|()| {
                if args.arch == vm::Arch::Arm64 {
                    host_packages(&[QEMU_ARM]).and_then(|()| host_packages(dist::DIST_PACKAGES))
                } else {
                    Ok(())
                }
            })
            .and_then(|()| vm::vm(&args)),
        Cmd::Bench {
            no_doc,
            serve: true,
            ..
        } => setup().and_then(|()| bench_serve(no_doc)),
        Cmd::Bench {
            no_doc,
            live_analysis: true,
            ..
        } => setup().and_then(|()| bench_live_analysis(no_doc)),
        Cmd::Bench {
            no_doc,
            live: true,
            vm: true,
            pairs,
            smp,
            before,
            timeout,
            ..
        } => setup()
            .and_then(|()| host_packages(VM_PACKAGES))
            .and_then(|()| {
                bench_live_vm(&BenchVm {
                    pairs: pairs.unwrap_or(3),
                    smp,
                    before,
                    timeout,
                    no_doc,
                })
            }),
        Cmd::Bench {
            no_doc,
            live: true,
            pairs,
            ..
        } => setup().and_then(|()| bench_live(pairs.unwrap_or(5), no_doc)),
        Cmd::Bench {
            repeat,
            reuse,
            no_doc,
            live: false,
            ..
        } => bench(repeat, reuse, no_doc),
        Cmd::Fuzz {
            runs,
            target,
            sanitizer,
        } => setup().and_then(|()| fuzz(runs, &target, &sanitizer)),
    };
    match r {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("xtask: error: {}", format!("{e:#}").replace('\n', " "));
            ExitCode::FAILURE
        }
    }
}

fn root_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .map(Path::to_path_buf)
        .unwrap_or_default()
}

/// Cargo's target directory (`$CARGO_TARGET_DIR`, else `<repo>/target`).
fn target_dir() -> PathBuf {
    env::var_os("CARGO_TARGET_DIR")
        .filter(|d| !d.is_empty())
        .map(|d| root_dir().join(d))
        .unwrap_or_else(|| root_dir().join("target"))
}

fn cargo() -> String {
    env::var("CARGO").unwrap_or_else(|_| "cargo".into())
}

/// Runs a command in the repo root, failing on a non-zero exit.
fn run(cmd: &mut Command) -> Result<()> {
    cmd.current_dir(root_dir());
    let shown = format!("{cmd:?}");
    let status = cmd.status().with_context(|| format!("starting {shown}"))?;
    if !status.success() {
        bail!("{shown} failed with {status}");
    }
    Ok(())
}

fn output(cmd: &mut Command) -> Result<String> {
    let shown = format!("{cmd:?}");
    let out = cmd.output().with_context(|| format!("starting {shown}"))?;
    if !out.status.success() {
        bail!(
            "{shown} failed: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

fn step(msg: &str) {
    eprintln!("xtask: {msg}");
}

// ---------------------------------------------------------------------------------------------
// setup

const BPF_LINKER_VERSION: &str = "0.13.0";

fn cargo_home() -> PathBuf {
    env::var_os("CARGO_HOME")
        .map(PathBuf::from)
        .or_else(|| env::var_os("HOME").map(|h| PathBuf::from(h).join(".cargo")))
        .unwrap_or_else(|| PathBuf::from("/root/.cargo"))
}

/// A Debian package a command needs, with the file that shows it is installed.
#[derive(Clone, Copy)]
struct HostPackage {
    name: &'static str,
    file: &'static str,
    /// Which command needs it (for the message when it cannot be installed).
    for_what: &'static str,
}

const TMUX: HostPackage = HostPackage {
    name: "tmux",
    file: "/usr/bin/tmux",
    for_what: "the TUI tests",
};
const QEMU: HostPackage = HostPackage {
    name: "qemu-system-x86",
    file: "/usr/bin/qemu-system-x86_64",
    for_what: "the VM tests",
};
const QEMU_ARM: HostPackage = HostPackage {
    name: "qemu-system-arm",
    file: "/usr/bin/qemu-system-aarch64",
    for_what: "the arm64 VM tests",
};
const BUSYBOX: HostPackage = HostPackage {
    name: "busybox-static",
    file: "/bin/busybox",
    for_what: "the VM tests",
};

const PROMETHEUS: HostPackage = HostPackage {
    name: "prometheus",
    file: "/usr/bin/prometheus",
    for_what: "the exporter tests (a real Prometheus scrapes `swapscope serve`)",
};

/// What `cargo xtask test` needs beyond the toolchain: tmux for the TUI tests, Prometheus (and
/// its promtool) for the exporter tests, QEMU and busybox for the VM tests. `cargo xtask run`
/// needs none of them. (Debian's prometheus package does not start its service where
/// policy-rc.d or the lack of systemd forbids it; the tests run their own on a free port.)
const TEST_PACKAGES: &[HostPackage] = &[TMUX, PROMETHEUS, QEMU, QEMU_ARM, BUSYBOX];
/// What `cargo xtask vm` needs (`--arch arm64`: also [`QEMU_ARM`] and what `dist` builds the
/// aarch64 binary with; the guest's busybox comes from Debian's arm64 archive).
const VM_PACKAGES: &[HostPackage] = &[QEMU, BUSYBOX];

fn installed(p: &HostPackage) -> bool {
    Path::new(p.file).exists()
        && output(Command::new("dpkg-query").args(["-W", "-f=${Status}", p.name]))
            .is_ok_and(|s| s.contains("install ok installed"))
}

/// Installs the missing packages with apt-get (root only; quiet when all are present). Never
/// removes a package: the plan is simulated first, and when the default suite would replace an
/// installed package (e.g. bookworm's QEMU 7.2 would remove a backported qemu-utils 10), the
/// same install is tried from `<codename>-backports`; if that also removes something, it stops
/// and says so.
fn host_packages(wanted: &[HostPackage]) -> Result<()> {
    let missing: Vec<&str> = wanted
        .iter()
        .filter(|p| !installed(p))
        .map(|p| p.name)
        .collect();
    if missing.is_empty() {
        return Ok(());
    }
    if !is_root() {
        let why: Vec<String> = wanted
            .iter()
            .filter(|p| missing.contains(&p.name))
            .map(|p| format!("{} ({})", p.name, p.for_what))
            .collect();
        eprintln!(
            "xtask: not root: skipping apt-get install of {}",
            why.join(", ")
        );
        return Ok(());
    }
    let apt = vm::Apt::host_with_backports(&target_dir().join("apt-host"))?;
    apt.update_if_stale()?;
    let removes = |extra: &[&str]| -> Result<Vec<String>> {
        let sim = output(
            Command::new("apt-get")
                .args(apt.opts())
                .args(["install", "-s", "-q", "--no-install-recommends"])
                .args(extra)
                .args(&missing)
                .env("DEBIAN_FRONTEND", "noninteractive"),
        )?;
        Ok(sim
            .lines()
            .filter_map(|l| l.strip_prefix("Remv "))
            .map(|l| l.split_whitespace().next().unwrap_or(l).to_string())
            .collect())
    };
    let backports = format!("{}-backports", apt.codename());
    // A plan that removes nothing, from the default suites or else from backports.
    let plan = |extra: &[&str]| match removes(extra) {
        Ok(r) if r.is_empty() => Ok(()),
        Ok(r) => Err(format!("it would remove {}", r.join(" "))),
        Err(e) => Err(format!("{e:#}")),
    };
    let mut extra: Vec<&str> = Vec::new();
    let mut why_backports = String::new();
    if let Err(default_err) = plan(&extra) {
        if let Err(bp_err) = plan(&["-t", &backports]) {
            bail!(
                "cannot install {} without removing packages: from the default suites {default_err}; \
                 from {backports} {bp_err}. Install them by hand, then run again",
                missing.join(" ")
            );
        }
        extra = vec!["-t", &backports];
        why_backports = format!(" from {backports} (from the default suites {default_err})");
    }
    step(&format!(
        "apt-get install {}{why_backports}",
        missing.join(" ")
    ));
    run(Command::new("apt-get")
        .args(apt.opts())
        .args([
            "install",
            "-y",
            "-q",
            "--no-remove",
            "--no-install-recommends",
        ])
        .args(&extra)
        .args(&missing)
        .env("DEBIAN_FRONTEND", "noninteractive"))
}

/// The toolchain pieces every command needs (nightly rust-src, bpf-linker).
fn setup() -> Result<()> {
    // 1. A nightly toolchain with rust-src (the BPF target builds core from source).
    let toolchains = output(Command::new("rustup").args(["toolchain", "list"]))?;
    if !toolchains.lines().any(|l| l.starts_with("nightly")) {
        step("installing the nightly toolchain");
        run(Command::new("rustup").args([
            "toolchain",
            "install",
            "nightly",
            "--profile",
            "minimal",
        ]))?;
    }
    let sysroot = PathBuf::from(
        output(Command::new("rustup").args(["run", "nightly", "rustc", "--print", "sysroot"]))?
            .trim(),
    );
    if !sysroot.join("lib/rustlib/src/rust/library/core").exists() {
        step("adding rust-src to the nightly toolchain");
        run(Command::new("rustup").args([
            "component",
            "add",
            "rust-src",
            "--toolchain",
            "nightly",
        ]))?;
    }
    // 2. bpf-linker built against the nightly's own libLLVM.
    let have = Command::new("bpf-linker")
        .arg("--version")
        .output()
        .ok()
        .filter(|o| o.status.success());
    let ok = have
        .as_ref()
        .is_some_and(|o| String::from_utf8_lossy(&o.stdout).contains(BPF_LINKER_VERSION));
    if !ok {
        install_bpf_linker(&sysroot)?;
    }
    Ok(())
}

fn install_bpf_linker(sysroot: &Path) -> Result<()> {
    let lib_dir = sysroot.join("lib");
    let llvm = fs::read_dir(&lib_dir)
        .with_context(|| format!("reading {}", lib_dir.display()))?
        .filter_map(|e| e.ok())
        .map(|e| e.path())
        .find(|p| {
            p.file_name()
                .and_then(OsStr::to_str)
                .is_some_and(|n| n.starts_with("libLLVM.so.") && n.contains("-rust-"))
        })
        .with_context(|| {
            format!(
                "no libLLVM.so.*-rust-* in {}: is the nightly toolchain complete?",
                lib_dir.display()
            )
        })?;
    let verbose = output(Command::new("rustup").args(["run", "nightly", "rustc", "-vV"]))?;
    let major = verbose
        .lines()
        .find_map(|l| l.strip_prefix("LLVM version: "))
        .and_then(|v| v.split('.').next())
        .context("nightly rustc -vV names no LLVM version")?
        .to_string();
    step(&format!(
        "building bpf-linker {BPF_LINKER_VERSION} against the nightly's LLVM {major} (about a minute)"
    ));
    let prefix = cargo_home().join("swapscope-llvm");
    let (bin, lib) = (prefix.join("bin"), prefix.join("lib"));
    fs::create_dir_all(&bin)?;
    fs::create_dir_all(&lib)?;
    let soname = llvm.file_name().context("LLVM library has no file name")?;
    for name in [OsStr::new("libLLVM.so"), soname] {
        let link = lib.join(name);
        let _ = fs::remove_file(&link);
        std::os::unix::fs::symlink(&llvm, &link)
            .with_context(|| format!("linking {}", link.display()))?;
    }
    // llvm-sys asks llvm-config for a version; bpf-linker itself only needs LLVM_PREFIX/lib.
    let stub = format!(
        "#!/bin/sh\n# written by cargo xtask setup: stands in for llvm-config of the rust nightly's LLVM\n\
         prefix=\"{}\"\nfor a in \"$@\"; do case \"$a\" in\n  --version) echo {major}.1.0;;\n  --prefix) echo \"$prefix\";;\n  \
         --libdir) echo \"$prefix/lib\";;\n  --includedir) echo \"$prefix/include\";;\n  --bindir) echo \"$prefix/bin\";;\n  \
         --shared-mode) echo shared;;\n  *) ;;\nesac; done\n",
        prefix.display()
    );
    let cfg = bin.join("llvm-config");
    fs::write(&cfg, stub)?;
    fs::set_permissions(&cfg, std::os::unix::fs::PermissionsExt::from_mode(0o755))?;
    let path = format!("{}:{}", bin.display(), env::var("PATH").unwrap_or_default());
    run(Command::new(cargo())
        .args([
            "install",
            "--quiet",
            "bpf-linker",
            "--version",
            BPF_LINKER_VERSION,
            "--no-default-features",
            "--features",
        ])
        .arg(format!("llvm-{major}"))
        .env("LLVM_PREFIX", &prefix)
        .env("PATH", path))
}

// ---------------------------------------------------------------------------------------------
// test

fn is_root() -> bool {
    output(Command::new("id").arg("-u")).is_ok_and(|s| s.trim() == "0")
}

fn test() -> Result<()> {
    let ci = env::var("CI").is_ok_and(|v| v == "true" || v == "1");
    step("rustfmt");
    run(Command::new(cargo()).args(["fmt", "--all", "--check"]))?;
    step("clippy (host crates)");
    run(Command::new(cargo()).args([
        "clippy",
        "--workspace",
        "--exclude",
        "swapscope-ebpf",
        "--all-targets",
        "--",
        "-D",
        "warnings",
    ]))?;
    step("clippy (eBPF crate, nightly)");
    run(Command::new("rustup").args([
        "run",
        "nightly",
        "cargo",
        "clippy",
        "--package",
        "swapscope-ebpf",
        "--all-targets",
        "--",
        "-D",
        "warnings",
        "-C",
        "panic=abort",
        "-Zpanic_abort_tests",
    ]))?;
    step("DuckDB for the export tests");
    duckdb::ensure_venv(&target_dir())?;
    step("unit, property and snapshot tests");
    run(Command::new(cargo()).args(["test", "--workspace", "--exclude", "swapscope-ebpf"]))?;
    // A model defined outside swapscope, replayed over real recordings beside the built-in
    // ones (its tests ran above; this is the run a kernel developer would do).
    step("a model from outside: cargo run -p custom-model (examples/custom-model)");
    run(Command::new(cargo()).args(["run", "--quiet", "--package", "custom-model"]))?;
    // What ships: the static binaries, built as `cargo xtask dist` builds them, and checked.
    step("what ships: static binaries for x86_64 and aarch64 (cargo xtask dist)");
    let built = dist::dist()?;
    dist::check(&built)?;
    step(&format!("shipped: {}", dist::describe(&built)));
    // The live host test needs root and BTF.
    let btf = Path::new("/sys/kernel/btf/vmlinux").exists();
    if !is_root() || !btf {
        let why = if btf {
            "not root"
        } else {
            "no /sys/kernel/btf/vmlinux"
        };
        if ci {
            bail!("the live host test cannot run ({why}); CI must run as root on a BTF kernel");
        }
        eprintln!(
            "\n!!!!!! SKIPPING the live host test: {why}. Run `sudo -E cargo xtask test` for the full suite. !!!!!!\n"
        );
        return Ok(());
    }
    step("live host test (zram + memory cgroup + write-out probe, ~1 min)");
    run(Command::new(cargo()).args([
        "test",
        "--package",
        "swapscope",
        "--test",
        "live",
        "--",
        "--ignored",
        "--nocapture",
        "--test-threads",
        "1",
    ]))?;
    // The VM tests: Debian 6.1, 6.12 and the newest 7.x in QEMU (TCG), full probe tier; the
    // kernels with an allocator model with one, two and four vCPUs (placement fidelity with
    // several reclaimers at once). SWAPSCOPE_VM_TESTS=0 skips them outside CI.
    if env::var("SWAPSCOPE_VM_TESTS").is_ok_and(|v| v == "0") && !ci {
        eprintln!(
            "\n!!!!!! SKIPPING the VM tests (SWAPSCOPE_VM_TESTS=0). Unset it for the full suite. !!!!!!\n"
        );
        return Ok(());
    }
    step("VM tests: cargo xtask vm: 6.1 with 1 vCPU, 6.12 and 7.x with 1, 2 and 4");
    use vm::KernelSel::{V6_1, V6_12, V7};
    vm::run_matrix(
        &[
            (V6_12, 4),
            (V7, 4),
            (V6_12, 2),
            (V7, 2),
            (V6_1, 1),
            (V6_12, 1),
            (V7, 1),
        ],
        vm::Arch::Amd64,
        false,
        900,
    )?;
    // arm64: Debian's arm64 kernels under qemu-system-aarch64 with the static aarch64 binary,
    // the same scenario checks, and each recording replayed here to the guest's own report.
    step("VM tests: cargo xtask vm --arch arm64: 6.12 and 7.x with 1 vCPU");
    vm::run_matrix(&[(V6_12, 1), (V7, 1)], vm::Arch::Arm64, false, 900)
}

// ---------------------------------------------------------------------------------------------
// run

/// The demo. On a terminal: the live TUI with the demo workload (`swapscope live --demo`),
/// recorded to `out` for a later `swapscope replay`. Without one (CI, a pipe): `seconds` of the
/// same workload under `swapscope record`, then `swapscope report`.
fn run_demo(out: &Path, seconds: u32) -> Result<()> {
    if !is_root() {
        bail!(
            "the demo attaches BPF programs and creates a zram device and a cgroup: run it as root (sudo -E cargo xtask run)"
        );
    }
    step("building swapscope (release)");
    run(Command::new(cargo()).args(["build", "--release", "--package", "swapscope"]))?;
    let exe = target_dir().join("release/swapscope");
    if let Some(dir) = out.parent() {
        fs::create_dir_all(root_dir().join(dir))?;
    }
    let out = root_dir().join(out);
    let tty = std::io::stdout().is_terminal() && std::io::stdin().is_terminal();
    if tty {
        step("starting the live TUI with the demo workload (q quits; ? lists the keys)");
        run(Command::new(&exe)
            .args(["live", "--demo", "--force", "--record"])
            .arg(&out))?;
        eprintln!(
            "xtask: the session is in {0}; watch it again with `{1} replay {0}`",
            out.display(),
            exe.display()
        );
        return Ok(());
    }
    step(&format!(
        "no terminal: recording {seconds} s of the demo workload (`swapscope stress`: 1 GiB zram, 64K mTHP, 600 MiB toucher in a 256 MiB cgroup) to {}",
        out.display()
    ));
    run(Command::new(&exe)
        .args(["record", "--force", "-o"])
        .arg(&out)
        .args(["--demo", "--duration"])
        .arg(seconds.to_string()))?;
    run(Command::new(&exe).arg("report").arg(&out))?;
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// bench

/// Builds swapscope-bench (release, without the BPF object, which these benchmarks do not
/// load) and returns its path.
fn build_bench_no_bpf() -> Result<PathBuf> {
    step("building swapscope-bench and swapscope (release; these benchmarks need no BPF object)");
    let mut build = Command::new(cargo());
    // swapscope too: the replay benchmark times whole `report` processes beside its own path.
    build.args([
        "build",
        "--release",
        "--package",
        "swapscope-bench",
        "--package",
        "swapscope",
    ]);
    if env::var_os("AYA_BUILD_SKIP").is_none() {
        build.env("AYA_BUILD_SKIP", "1");
    }
    run(&mut build)?;
    Ok(target_dir().join("release/swapscope-bench"))
}

fn bench(repeat: u32, reuse: bool, no_doc: bool) -> Result<()> {
    let exe = build_bench_no_bpf()?;
    let target = target_dir();
    let mut shown = format!("cargo xtask bench --repeat {repeat}");
    if reuse {
        shown.push_str(" --reuse");
    }
    // Both workloads: thp-fragment (where large folios fragment the device) and mixed-orders
    // (every order, varied lifetimes: the slot maps' worst case), each with its own block.
    for workload in BENCH_WORKLOADS {
        let mut cmd = Command::new(&exe);
        cmd.arg("--dir").arg(target.join("bench")).args([
            "--workload",
            workload,
            "--repeat",
            &repeat.to_string(),
            "--command",
            &shown,
        ]);
        if reuse {
            cmd.arg("--reuse");
        }
        if !no_doc {
            cmd.arg("--doc").arg(root_dir().join("docs/performance.md"));
        }
        step(&format!(
            "{workload}: generating the recordings and measuring (a few minutes)"
        ));
        run(&mut cmd)?;
    }
    Ok(())
}

/// The workloads `cargo xtask bench` measures replay on.
const BENCH_WORKLOADS: [&str; 2] = ["thp-fragment", "mixed-orders"];

fn bench_live_analysis(no_doc: bool) -> Result<()> {
    let exe = build_bench_no_bpf()?;
    let mut cmd = Command::new(&exe);
    // 6 M events: eleven times what the analysis queue holds, so a rate it cannot keep up with
    // shows as skips rather than hiding in the queue.
    cmd.args(["--live-analysis", "--events", "6000000"]);
    if !no_doc {
        cmd.arg("--doc").arg(root_dir().join("docs/performance.md"));
    }
    step("generating the stream and feeding it at rising rates (a few minutes)");
    run(&mut cmd)
}

fn bench_serve(no_doc: bool) -> Result<()> {
    if !is_root() {
        bail!(
            "the exporter benchmark runs the demo workload: run it as root (sudo -E cargo xtask bench --serve)"
        );
    }
    let exe = build_bench()?;
    let mut cmd = Command::new(&exe);
    cmd.args(["--serve", "--rate", "50", "--seconds", "60"])
        .args(["--command", "cargo xtask bench --serve"]);
    if !no_doc {
        cmd.arg("--doc").arg(root_dir().join("docs/performance.md"));
    }
    step("serve --demo scraped 50 times a second for 60 s");
    run(&mut cmd)
}

fn bench_live(pairs: u32, no_doc: bool) -> Result<()> {
    if !is_root() {
        bail!(
            "the live benchmark attaches BPF programs and makes the kernel swap: run it as root (sudo -E cargo xtask bench --live)"
        );
    }
    let exe = build_bench()?;
    let target = target_dir();
    let mut cmd = Command::new(&exe);
    cmd.args(["--live", "--pairs", &pairs.to_string(), "--dir"])
        .arg(target.join("bench"))
        .args([
            "--command",
            &format!("cargo xtask bench --live --pairs {pairs}"),
        ]);
    if !no_doc {
        cmd.arg("--doc").arg(root_dir().join("docs/performance.md"));
    }
    step(&format!(
        "{pairs} pairs of swap storms, alone and recorded (about {} s)",
        pairs * 12 + 10
    ));
    run(&mut cmd)
}

/// Builds swapscope (with the BPF object) and swapscope-bench in release mode; returns the
/// benchmark program, which finds `swapscope` beside it.
fn build_bench() -> Result<PathBuf> {
    step("building swapscope (release, with the BPF object) and swapscope-bench");
    run(Command::new(cargo()).args([
        "build",
        "--release",
        "--package",
        "swapscope",
        "--package",
        "swapscope-bench",
    ]))?;
    Ok(target_dir().join("release/swapscope-bench"))
}

/// `cargo xtask bench --live --vm`.
struct BenchVm {
    pairs: u32,
    smp: Vec<u32>,
    before: Option<PathBuf>,
    timeout: u64,
    no_doc: bool,
}

const VM_BEGIN: &str =
    "<!-- bench-live-vm:begin (generated by `cargo xtask bench --live --vm`; edit outside) -->";
const VM_END: &str = "<!-- bench-live-vm:end -->";

fn loadavg() -> String {
    fs::read_to_string("/proc/loadavg")
        .map(|s| s.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_else(|_| "?".into())
}

/// The host's 1-minute load average.
fn loadavg1() -> String {
    loadavg().split(' ').next().unwrap_or("?").to_string()
}

/// The live benchmark in QEMU guests: this build's recorder (and `--before`'s) on 6.12 and
/// 7.x at each vCPU count, one VM at a time; a table of the medians into docs/performance.md.
fn bench_live_vm(o: &BenchVm) -> Result<()> {
    use vm::KernelSel::{V6_12, V7};
    // A copy of the binary, so that a rebuild of the tree during the runs changes nothing.
    let program = build_bench()?;
    let dir = target_dir().join("vm-bench");
    fs::create_dir_all(&dir)?;
    let program_copy = dir.join("swapscope-bench");
    fs::copy(&program, &program_copy).with_context(|| {
        format!(
            "copying {} to {}",
            program.display(),
            program_copy.display()
        )
    })?;
    let exe = match env::var_os("SWAPSCOPE_VM_BINARY") {
        Some(p) => PathBuf::from(p),
        None => {
            let copy = dir.join("swapscope-after");
            fs::copy(target_dir().join("release/swapscope"), &copy)
                .with_context(|| format!("copying the release binary to {}", copy.display()))?;
            copy
        }
    };
    let (storm_mib, storm_passes) = vm::VM_BENCH_STORM;
    let bench = vm::VmBench {
        pairs: o.pairs,
        storm_mib,
        storm_passes,
        before: o.before.clone(),
        program: program_copy,
    };
    let opts = vm::RunOpts {
        exe: Some(exe),
        bench: Some(bench.clone()),
        no_scenarios: true,
        arch: vm::Arch::Amd64,
    };
    let mut shown = env::var("SWAPSCOPE_VM_BINARY")
        .map(|b| format!("SWAPSCOPE_VM_BINARY={b} "))
        .unwrap_or_default();
    shown.push_str(&format!(
        "cargo xtask bench --live --vm --pairs {}",
        o.pairs
    ));
    if o.smp != [1, 2, 4] {
        let smp: Vec<String> = o.smp.iter().map(u32::to_string).collect();
        shown.push_str(&format!(" --smp {}", smp.join(",")));
    }
    if let Some(b) = &o.before {
        shown.push_str(&format!(" --before {}", b.display()));
    }
    let started = std::time::SystemTime::now();
    let host_before = loadavg();
    let mut rows = Vec::new();
    let mut failed = Vec::new();
    for (sel, label) in [(V6_12, "6.12"), (V7, "7.x")] {
        for &smp in &o.smp {
            step(&format!(
                "bench --live --vm: {label} with {smp} vCPUs, {} pairs per recorder (several minutes under TCG)",
                o.pairs
            ));
            let load0 = loadavg1();
            let t0 = std::time::Instant::now();
            let r = vm::run_matrix_with(&[(sel, smp)], false, o.timeout, &opts);
            step(&format!(
                "bench --live --vm: {label} with {smp} vCPUs took {:.0} s",
                t0.elapsed().as_secs_f64()
            ));
            let load1 = loadavg1();
            if let Err(e) = &r {
                eprintln!("xtask: bench --live --vm {label} -smp {smp}: {e:#}");
                failed.push(format!("{label} -smp {smp}"));
            }
            let dir = target_dir()
                .join("vm-results")
                .join(format!("{label}-smp{smp}"));
            let release = fs::read_to_string(dir.join("release")).unwrap_or_default();
            for w in bench.recorders() {
                let file = dir.join(format!("bench.{w}.json"));
                // Only what this run wrote.
                let fresh = fs::metadata(&file)
                    .and_then(|m| m.modified())
                    .is_ok_and(|t| t >= started);
                let v: Option<serde_json::Value> = fresh
                    .then(|| fs::read_to_string(&file).ok())
                    .flatten()
                    .and_then(|t| serde_json::from_str(&t).ok());
                rows.push(VmRow {
                    kernel: if release.trim().is_empty() {
                        label.to_string()
                    } else {
                        release.trim().to_string()
                    },
                    smp,
                    recorder: w,
                    v,
                    load: format!("{load0} → {load1}"),
                });
            }
        }
    }
    let table = vm_table(&rows);
    eprintln!("\n{table}");
    if !o.no_doc {
        let (mib, passes) = vm::VM_BENCH_STORM;
        let storm = rows
            .iter()
            .find_map(|r| r.v.as_ref()?["storm"].as_str().map(String::from))
            .unwrap_or_default();
        let before = if o.before.is_some() {
            " with the recorder of `--before` (**before**), then"
        } else {
            ""
        };
        let date = output(Command::new("date").args(["-u", "+%Y-%m-%d %H:%M UTC"]))
            .unwrap_or_default()
            .trim()
            .to_string();
        let cpu = fs::read_to_string("/proc/cpuinfo")
            .ok()
            .and_then(|s| {
                s.lines()
                    .find_map(|l| l.strip_prefix("model name")?.split_once(':'))
                    .map(|(_, m)| m.trim().to_string())
            })
            .unwrap_or_default();
        let cores = std::thread::available_parallelism().map_or(0, usize::from);
        let host_kernel = fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default();
        let block = format!(
            "{VM_BEGIN}\nCommand: `{shown}`: in each guest (QEMU TCG, 2 GiB, one VM at a time) \
             `swapscope-bench --live --pairs {pairs} --storm-mib {mib} --storm-passes {passes}` \
             — the storm `swapscope {storm}`, alone and recorded in alternating pairs after one \
             warm-up storm —{before} with this build's (**after**).\n\n\
             Run {date}. Host: {cores} CPUs ({cpu}), Linux {hk}; load average (1, 5, 15 min) \
             before: {host_before}; after: {host_after}.\n\n{table}{END}\n",
            pairs = o.pairs,
            hk = host_kernel.trim(),
            host_after = loadavg(),
            END = VM_END,
        );
        let doc = root_dir().join("docs/performance.md");
        write_block(&doc, VM_BEGIN, VM_END, &block)?;
        step(&format!("wrote {}", doc.display()));
    }
    if !failed.is_empty() {
        bail!("the VM benchmark failed for {}", failed.join(", "));
    }
    Ok(())
}

/// One kernel × vCPUs × recorder of [`bench_live_vm`]; `v` is `swapscope-bench --live`'s JSON summary.
struct VmRow {
    kernel: String,
    smp: u32,
    recorder: &'static str,
    v: Option<serde_json::Value>,
    load: String,
}

fn vm_table(rows: &[VmRow]) -> String {
    let mut t = String::from(
        "| kernel | vCPUs | recorder | wall ratio (median) | pair ratios | alone: wall s | extra sys per storm | extra sys per event | recorder CPU per event | events per storm | BPF time per storm (per event) | lost | host load, 1 min (before → after the VM) |\n\
         |---|---:|---|---:|---|---:|---:|---:|---:|---:|---:|---:|---|\n",
    );
    let med = |mut v: Vec<f64>| -> f64 {
        v.sort_by(f64::total_cmp);
        match v.len() {
            0 => f64::NAN,
            n if n % 2 == 1 => v[n / 2],
            n => (v[n / 2 - 1] + v[n / 2]) / 2.0,
        }
    };
    for r in rows {
        let lead = format!("| {} | {} | {} |", r.kernel, r.smp, r.recorder);
        let Some(v) = &r.v else {
            t.push_str(&format!(
                "{lead} failed (see target/vm-results) | | | | | | | | | | {} |\n",
                r.load
            ));
            continue;
        };
        let f = |k: &str| v[k].as_f64().unwrap_or(f64::NAN);
        let pairs = v["pairs"].as_array().cloned().unwrap_or_default();
        let col = |k: &str| -> Vec<f64> { pairs.iter().filter_map(|p| p[k].as_f64()).collect() };
        let extra_sys: Vec<f64> = pairs
            .iter()
            .filter_map(|p| Some(p["recorded_sys_s"].as_f64()? - p["alone_sys_s"].as_f64()?))
            .collect();
        let ratios: Vec<String> = v["pair_ratios"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(serde_json::Value::as_f64)
            .map(|x| format!("{x:.3}"))
            .collect();
        let st = &v["bpf_stats"];
        let bpf_ns: f64 = st["programs"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|p| p["run_time_ns"].as_f64())
            .sum();
        let bpf_events = st["events"].as_f64().unwrap_or(0.0);
        let bpf = if bpf_ns > 0.0 && bpf_events > 0.0 {
            format!("{:.0} ms ({:.0} ns)", bpf_ns / 1e6, bpf_ns / bpf_events)
        } else {
            "–".into()
        };
        t.push_str(&format!(
            "{lead} **{:.3}** | {} | {:.2} | {:.0} ms | {:.0} ns | {:.0} ns | {:.0} | {bpf} | {} | {} |\n",
            f("median_ratio"),
            ratios.join(", "),
            med(col("alone_wall_s")),
            med(extra_sys) * 1e3,
            f("median_extra_sys_ns_per_event"),
            f("median_recorder_ns_per_event"),
            med(col("events")),
            v["lost"].as_u64().unwrap_or(0),
            r.load,
        ));
    }
    t
}

/// Replaces the block between `begin` and `end` in `path` (appends it when absent).
fn write_block(path: &Path, begin: &str, end: &str, block: &str) -> Result<()> {
    let old = fs::read_to_string(path).unwrap_or_default();
    let new = match (old.find(begin), old.find(end)) {
        (Some(b), Some(e)) if e > b => {
            let tail = &old[e + end.len()..];
            let tail = tail.strip_prefix('\n').unwrap_or(tail);
            format!("{}{block}{tail}", &old[..b])
        }
        _ => format!("{old}\n{block}"),
    };
    fs::write(path, new).with_context(|| format!("writing {}", path.display()))
}

// ---------------------------------------------------------------------------------------------
// fuzz

fn fuzz(runs: u64, targets: &[String], sanitizer: &str) -> Result<()> {
    for t in targets {
        if !FUZZ_TARGETS.contains(&t.as_str()) {
            bail!(
                "unknown fuzz target {t:?}; known: {}",
                FUZZ_TARGETS.join(", ")
            );
        }
    }
    let have = Command::new("rustup")
        .args(["run", "nightly", "cargo", "fuzz", "--version"])
        .output()
        .is_ok_and(|o| o.status.success());
    if !have {
        step("installing cargo-fuzz");
        run(Command::new(cargo()).args(["install", "cargo-fuzz", "--locked"]))?;
    }
    let dir = target_dir().join("fuzz");
    let seeds = dir.join("seeds");
    step("writing the seed corpus from tests/data");
    run(Command::new(cargo())
        .args([
            "test",
            "--package",
            "swapscope-core",
            "--lib",
            "fuzz_seeds",
            "--",
            "--ignored",
        ])
        .env("SWAPSCOPE_FUZZ_SEEDS", &seeds))?;
    // The marker FIFO's and the exporter's seeds: what their users send.
    type Seeds = &'static [(&'static str, &'static [u8])];
    let literal_seeds: [(&str, Seeds); 2] = [
        (
            "marker_lines",
            &[
                ("lines", b"\x10iteration 1\niteration 2\n\n  spaced  \n"),
                ("pause", b"\x03no newline\x00after a pause\n"),
                ("utf8", b"\x07caf\xc3\xa9 \xff\xfe\n\xe2\x96\xb6 run\n"),
            ],
        ),
        (
            "http_request",
            &[
                ("metrics", b"GET /metrics HTTP/1.1\r\nHost: localhost:9866\r\nAccept: application/openmetrics-text;version=1.0.0;q=0.5,text/plain;q=0.4\r\n\r\n"),
                ("healthz", b"GET /healthz HTTP/1.0\r\n\r\n"),
                ("head", b"HEAD / HTTP/1.1\r\nHost: x\r\n\r\nGET /nope HTTP/1.1\r\nHost: x\r\n\r\n"),
                ("post", b"POST /metrics HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\n\r\nabc"),
            ],
        ),
    ];
    for (t, files) in literal_seeds {
        let d = seeds.join(t);
        fs::create_dir_all(&d)?;
        for (name, bytes) in files {
            fs::write(d.join(name), bytes)?;
        }
    }
    let mut summary = Vec::new();
    for t in targets {
        let corpus = dir.join("corpus").join(t);
        let artifacts = dir.join("artifacts").join(t);
        fs::create_dir_all(&corpus)?;
        fs::create_dir_all(&artifacts)?;
        step(&format!(
            "fuzzing {t}: {runs} executions ({sanitizer} sanitizer)"
        ));
        let log = dir.join(format!("{t}.log"));
        let out = Command::new("rustup")
            .current_dir(root_dir())
            .args([
                "run",
                "nightly",
                "cargo",
                "fuzz",
                "run",
                "-O",
                "--sanitizer",
                sanitizer,
            ])
            .args(["--fuzz-dir", "fuzz", t])
            .arg(&corpus)
            .arg(seeds.join(t))
            .arg("--")
            .arg(format!("-runs={runs}"))
            .args([
                "-max_len=16384",
                "-malloc_limit_mb=48",
                "-rss_limit_mb=2048",
            ])
            .arg("-print_final_stats=1")
            .arg(format!("-artifact_prefix={}/", artifacts.display()))
            .env("AYA_BUILD_SKIP", "1")
            .output()
            .context("running cargo fuzz")?;
        let text = String::from_utf8_lossy(&out.stderr).into_owned();
        fs::write(&log, &text)?;
        let stat = |key: &str| {
            text.lines()
                .find_map(|l| l.strip_prefix(key))
                .map(|v| v.trim().to_string())
                .unwrap_or_else(|| "?".into())
        };
        let secs = text
            .lines()
            .find_map(|l| l.strip_prefix("Done ").and_then(|r| r.split(" in ").nth(1)))
            .and_then(|r| r.split_whitespace().next())
            .unwrap_or("?")
            .to_string();
        let crashes = fs::read_dir(&artifacts).map(|d| d.count()).unwrap_or(0);
        let line = format!(
            "{t}: {} executions in {secs} s, {crashes} crash(es), peak RSS {} MB ({sanitizer}), corpus {} inputs; log {}",
            stat("stat::number_of_executed_units:"),
            stat("stat::peak_rss_mb:"),
            fs::read_dir(&corpus).map(|d| d.count()).unwrap_or(0),
            log.display()
        );
        step(&line);
        summary.push(line);
        if !text.contains("INFO: Seed:") {
            bail!(
                "{t}: cargo fuzz did not start libFuzzer ({}); see {}",
                out.status,
                log.display()
            );
        }
        if !out.status.success() || crashes > 0 {
            bail!(
                "{t}: libFuzzer found a problem ({}); the input is under {}",
                out.status,
                artifacts.display()
            );
        }
    }
    for l in summary {
        println!("{l}");
    }
    Ok(())
}
