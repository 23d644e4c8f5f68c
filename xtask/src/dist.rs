//! `cargo xtask dist`: what ships. Static (musl) release binaries of `swapscope` for x86_64 and
//! aarch64, the BPF object embedded, stripped, in `target/dist/` with a `SHA256SUMS` list; and
//! the checks of them that `cargo xtask test` runs (static, no interpreter, within the size goal,
//! `--version` and `doctor` run here, the aarch64 one under qemu-user).
//!
//! Cross-building from this x86_64 machine uses what the registries offer: rustup's
//! `*-unknown-linux-musl` standard libraries (with their own musl C library and start files),
//! Debian's `musl-tools` (`musl-gcc`, for zstd's C code in the x86_64 binary) and
//! `gcc-aarch64-linux-gnu` (a C compiler and linker driver for aarch64; the musl C library
//! itself comes with rustup's target, so no aarch64 musl toolchain is needed). The BPF object is
//! the same for both: `swapscope-probe/build.rs` builds it once for `bpfel-unknown-none`.

use std::{
    env, fs,
    path::{Path, PathBuf},
    process::Command,
    time::Instant,
};

use anyhow::{Context as _, Result, bail};

use crate::{HostPackage, cargo, output, root_dir, run, step, target_dir};

/// A target `dist` builds: the Rust target, its short name, and how to compile C for it and link.
pub(crate) struct DistTarget {
    pub triple: &'static str,
    pub arch: &'static str,
    cc: &'static str,
    /// A linker driver other than Rust's default (`cc`).
    linker: Option<&'static str>,
}

pub(crate) const TARGETS: [DistTarget; 2] = [
    DistTarget {
        triple: "x86_64-unknown-linux-musl",
        arch: "x86_64",
        cc: "musl-gcc",
        linker: None,
    },
    DistTarget {
        triple: "aarch64-unknown-linux-musl",
        arch: "aarch64",
        cc: "aarch64-linux-gnu-gcc",
        linker: Some("aarch64-linux-gnu-gcc"),
    },
];

/// The size goal of a shipped binary.
pub(crate) const MAX_BYTES: u64 = 15 << 20;

const MUSL_TOOLS: HostPackage = HostPackage {
    name: "musl-tools",
    file: "/usr/bin/musl-gcc",
    for_what: "cargo xtask dist (zstd's C code in the x86_64 static binary)",
};
const GCC_AARCH64: HostPackage = HostPackage {
    name: "gcc-aarch64-linux-gnu",
    file: "/usr/bin/aarch64-linux-gnu-gcc",
    for_what: "cargo xtask dist (C code and linking of the aarch64 static binary)",
};
const QEMU_USER: HostPackage = HostPackage {
    name: "qemu-user-static",
    file: "/usr/bin/qemu-aarch64-static",
    for_what: "running the aarch64 binary's checks on this host",
};
const FILE: HostPackage = HostPackage {
    name: "file",
    file: "/usr/bin/file",
    for_what: "checking that the shipped binaries are static",
};

/// What `dist` and its checks need from Debian.
pub(crate) const DIST_PACKAGES: &[HostPackage] = &[MUSL_TOOLS, GCC_AARCH64, QEMU_USER, FILE];

/// One built binary.
pub(crate) struct Built {
    pub arch: &'static str,
    pub path: PathBuf,
    pub bytes: u64,
    pub seconds: f64,
}

/// The rustup targets `dist` builds for, added when missing.
fn rust_targets() -> Result<()> {
    let have = output(Command::new("rustup").args(["target", "list", "--installed"]))?;
    let missing: Vec<&str> = TARGETS
        .iter()
        .map(|t| t.triple)
        .filter(|t| !have.lines().any(|l| l.trim() == *t))
        .collect();
    if !missing.is_empty() {
        step(&format!("rustup target add {}", missing.join(" ")));
        run(Command::new("rustup")
            .args(["target", "add"])
            .args(&missing))?;
    }
    Ok(())
}

/// Builds every target's binary with the `dist` profile and writes them, with `SHA256SUMS`, to
/// `target/dist/`.
pub(crate) fn dist() -> Result<Vec<Built>> {
    rust_targets()?;
    let out_dir = target_dir().join("dist");
    fs::create_dir_all(&out_dir).with_context(|| format!("creating {}", out_dir.display()))?;
    let version = env!("CARGO_PKG_VERSION");
    let mut built = Vec::new();
    for t in &TARGETS {
        step(&format!(
            "building swapscope for {} (profile dist)",
            t.triple
        ));
        let start = Instant::now();
        let mut cmd = Command::new(cargo());
        cmd.args([
            "build",
            "--locked",
            "--profile",
            "dist",
            "--target",
            t.triple,
            "--package",
            "swapscope",
        ])
        .env(format!("CC_{}", t.triple.replace('-', "_")), t.cc);
        if let Some(l) = t.linker {
            cmd.env(
                format!(
                    "CARGO_TARGET_{}_LINKER",
                    t.triple.replace('-', "_").to_uppercase()
                ),
                l,
            );
        }
        run(&mut cmd)?;
        let seconds = start.elapsed().as_secs_f64();
        let from = target_dir().join(t.triple).join("dist").join("swapscope");
        let path = out_dir.join(format!("swapscope-{version}-{}-linux-musl", t.arch));
        fs::copy(&from, &path)
            .with_context(|| format!("copying {} to {}", from.display(), path.display()))?;
        let bytes = fs::metadata(&path)?.len();
        built.push(Built {
            arch: t.arch,
            path,
            bytes,
            seconds,
        });
    }
    let names: Vec<String> = built
        .iter()
        .filter_map(|b| b.path.file_name().map(|n| n.to_string_lossy().into_owned()))
        .collect();
    let sums = output(Command::new("sha256sum").args(&names).current_dir(&out_dir))?;
    fs::write(out_dir.join("SHA256SUMS"), sums)?;
    for b in &built {
        step(&format!(
            "{}: {:.1} MiB, built in {:.0} s",
            b.path.display(),
            b.bytes as f64 / f64::from(1 << 20),
            b.seconds
        ));
    }
    Ok(built)
}

/// How to run a built binary on this host: directly, or under qemu-user for another arch.
fn runner(b: &Built) -> Command {
    if b.arch == env::consts::ARCH {
        Command::new(&b.path)
    } else {
        let mut c = Command::new(format!("/usr/bin/qemu-{}-static", b.arch));
        c.arg(&b.path);
        c
    }
}

/// The checks of what ships: each binary is static (no program interpreter, `file` says so),
/// within [`MAX_BYTES`], and runs here: `--version` names the version and the commit, and, for
/// this host's arch, `doctor --json` answers.
pub(crate) fn check(built: &[Built]) -> Result<()> {
    for b in built {
        let shown = b.path.display().to_string();
        let headers = output(Command::new("readelf").args(["-l", "-W"]).arg(&b.path))?;
        if headers.contains("INTERP") {
            bail!("{shown} has a program interpreter: it is not static");
        }
        let kind = output(Command::new("file").arg("-b").arg(&b.path))?;
        if !kind.contains("statically linked") && !kind.contains("static-pie linked") {
            bail!("{shown}: `file` says {}", kind.trim());
        }
        if b.bytes > MAX_BYTES {
            bail!(
                "{shown} is {:.1} MiB, over the {} MiB goal",
                b.bytes as f64 / f64::from(1 << 20),
                MAX_BYTES >> 20
            );
        }
        let version = output(runner(b).arg("--version"))?;
        let want = format!("swapscope {} (commit ", env!("CARGO_PKG_VERSION"));
        if !version.starts_with(&want) || !version.contains("BPF schema") {
            bail!("{shown} --version printed {:?}", version.trim());
        }
        step(&format!("{shown}: {}", kind.trim()));
        step(&format!("{shown} --version: {}", version.trim()));
        if b.arch == env::consts::ARCH {
            // doctor exits 0 or 1 (a host that cannot run the full tier is an answer, not an
            // error); what matters is that it answers in JSON.
            let o = runner(b)
                .args(["doctor", "--json"])
                .current_dir(root_dir())
                .output()
                .with_context(|| format!("starting {shown} doctor"))?;
            let text = String::from_utf8_lossy(&o.stdout);
            if serde_json::from_str::<serde_json::Value>(&text).is_err() {
                bail!(
                    "{shown} doctor --json printed no JSON (exit {}): {}",
                    o.status,
                    String::from_utf8_lossy(&o.stderr).trim()
                );
            }
            step(&format!("{shown} doctor --json: answered ({})", o.status));
        }
    }
    same_report_everywhere(built)
}

/// A recording the shipped binaries replay, each on its own arch.
const SAMPLE: &str = "swapscope/tests/data/vm-7.3-full-frag.swsc";

/// Every binary gives the same `report --json` of [`SAMPLE`] as this host's: a recording made on
/// one arch replays the same on another. Only `mapping_bytes` (the models' approximate heap, which
/// follows the hash tables' SIMD group width: 16 bytes on x86_64, 8 on aarch64) may differ.
fn same_report_everywhere(built: &[Built]) -> Result<()> {
    fn without_heap(v: &mut serde_json::Value) {
        match v {
            serde_json::Value::Object(m) => {
                m.remove("mapping_bytes");
                m.values_mut().for_each(without_heap);
            }
            serde_json::Value::Array(a) => a.iter_mut().for_each(without_heap),
            _ => {}
        }
    }
    let sample = root_dir().join(SAMPLE);
    let mut reports = Vec::new();
    for b in built {
        let text = output(runner(b).arg("report").arg(&sample).arg("--json"))?;
        let mut v: serde_json::Value = serde_json::from_str(&text)
            .with_context(|| format!("{} report --json", b.path.display()))?;
        without_heap(&mut v);
        reports.push((b.arch, v));
    }
    if let Some(((first_arch, first), rest)) = reports.split_first() {
        for (arch, v) in rest {
            if v != first {
                bail!("the {arch} binary's report of {SAMPLE} differs from the {first_arch} one's");
            }
            step(&format!(
                "{arch} and {first_arch} binaries: the same report of {SAMPLE}"
            ));
        }
    }
    Ok(())
}

/// One line naming the built binaries, their sizes and build times.
pub(crate) fn describe(built: &[Built]) -> String {
    built
        .iter()
        .map(|b| {
            format!(
                "{} ({:.1} MiB, {:.0} s)",
                Path::new(&b.path)
                    .file_name()
                    .map(|n| n.to_string_lossy().into_owned())
                    .unwrap_or_default(),
                b.bytes as f64 / f64::from(1 << 20),
                b.seconds
            )
        })
        .collect::<Vec<_>>()
        .join(", ")
}
