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

/// One built binary, and its Debian package.
pub(crate) struct Built {
    pub arch: &'static str,
    pub path: PathBuf,
    pub bytes: u64,
    pub seconds: f64,
    pub deb: PathBuf,
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

/// Builds target `t`'s static binary with the `dist` profile: its path under `target/` and the
/// seconds it took.
fn build(t: &DistTarget) -> Result<(PathBuf, f64)> {
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
    let path = target_dir().join(t.triple).join("dist").join("swapscope");
    Ok((path, start.elapsed().as_secs_f64()))
}

/// The static binary for Debian architecture `deb_arch` (`arm64`), built as `dist` builds it
/// (the VM tests of another architecture boot it): its path and build seconds.
pub(crate) fn build_for(deb_arch: &str) -> Result<(PathBuf, f64)> {
    rust_targets()?;
    let t = TARGETS
        .iter()
        .find(|t| self::deb_arch(t.arch) == deb_arch)
        .with_context(|| format!("no dist target for Debian architecture {deb_arch}"))?;
    build(t)
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
        let (from, seconds) = build(t)?;
        let path = out_dir.join(format!("swapscope-{version}-{}-linux-musl", t.arch));
        fs::copy(&from, &path)
            .with_context(|| format!("copying {} to {}", from.display(), path.display()))?;
        let bytes = fs::metadata(&path)?.len();
        built.push(Built {
            arch: t.arch,
            path,
            bytes,
            seconds,
            deb: PathBuf::new(),
        });
    }
    // Man pages and completions from the binary for this host's arch (the same definitions are
    // in both), then one package per binary.
    let files = out_dir.join("package-files");
    if let Some(host) = built.iter().find(|b| b.arch == env::consts::ARCH) {
        run(runner(host).arg("__package-files").arg(&files))?;
    } else {
        bail!(
            "no binary for this host's arch ({}) to write the man pages",
            env::consts::ARCH
        );
    }
    for b in &mut built {
        b.deb = deb(b, &files)?;
    }
    let names: Vec<String> = built
        .iter()
        .flat_map(|b| [&b.path, &b.deb])
        .filter_map(|p| p.file_name().map(|n| n.to_string_lossy().into_owned()))
        .collect();
    let sums = output(Command::new("sha256sum").args(&names).current_dir(&out_dir))?;
    fs::write(out_dir.join("SHA256SUMS"), sums)?;
    for b in &built {
        step(&format!(
            "{}: {:.1} MiB, built in {:.0} s; {}",
            b.path.display(),
            b.bytes as f64 / f64::from(1 << 20),
            b.seconds,
            b.deb.display()
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
    same_report_everywhere(built)?;
    least_privilege(built)?;
    for b in built {
        check_deb(&b.deb)?;
    }
    Ok(())
}

/// The tier `serve` starts with as user `nobody` holding `caps` (setpriv; `[]`: none), read
/// from its first line.
fn tier_as_nobody(bin: &Path, caps: &[&str]) -> Result<String> {
    let mut c = Command::new("timeout");
    c.args([
        "8",
        "setpriv",
        "--reuid=65534",
        "--regid=65534",
        "--clear-groups",
    ]);
    if caps.is_empty() {
        c.arg("--inh-caps=-all");
    } else {
        let list: Vec<String> = caps.iter().map(|c| format!("+{c}")).collect();
        c.arg(format!("--inh-caps=-all,{}", list.join(",")))
            .arg(format!("--ambient-caps=-all,{}", list.join(",")));
    }
    let o = c
        .arg(bin)
        .args(["serve", "--listen", "127.0.0.1:0"])
        .output()
        .context("starting setpriv")?;
    let err = String::from_utf8_lossy(&o.stderr);
    err.lines()
        .find_map(|l| l.split(", tier ").nth(1))
        .and_then(|t| t.split_whitespace().next())
        .map(str::to_string)
        .with_context(|| format!("serve as nobody printed no tier: {}", err.trim()))
}

/// The service's capabilities are the least that work: as `nobody` with CAP_BPF and
/// CAP_PERFMON only (swapscope-serve.service's), `serve` gets the BPF tiers (tracepoint or
/// full), and without them only the counters tier. Root on a BTF kernel only (setpriv).
fn least_privilege(built: &[Built]) -> Result<()> {
    let Some(b) = built.iter().find(|b| b.arch == env::consts::ARCH) else {
        return Ok(());
    };
    if !crate::is_root() || !Path::new("/sys/kernel/btf/vmlinux").exists() {
        step("least privilege: not checked (needs root and BTF)");
        return Ok(());
    }
    // A copy outside the build tree, readable and executable by nobody.
    let copy = env::temp_dir().join(format!("swapscope-dist-check-{}", std::process::id()));
    fs::copy(&b.path, &copy)?;
    {
        use std::os::unix::fs::PermissionsExt as _;
        fs::set_permissions(&copy, fs::Permissions::from_mode(0o755))?;
    }
    let with = tier_as_nobody(&copy, &["bpf", "perfmon"]);
    let without = tier_as_nobody(&copy, &[]);
    let _ = fs::remove_file(&copy);
    let (with, without) = (with?, without?);
    if with == "counters" || without != "counters" {
        bail!(
            "as nobody, serve got tier {with} with CAP_BPF + CAP_PERFMON and {without} without: \
             the unit's capabilities are not what the probes need"
        );
    }
    step(&format!(
        "least privilege: as nobody, tier {with} with CAP_BPF + CAP_PERFMON, {without} without"
    ));
    Ok(())
}

/// `report --json` output `text` (from `what`) with the models' approximate heap
/// (`mapping_bytes`) taken out: the one figure that follows the architecture (the hash tables'
/// SIMD group width: 16 bytes on x86_64, 8 on aarch64), so the rest of two architectures'
/// reports of one recording must be equal.
pub(crate) fn arch_neutral_report(text: &str, what: &str) -> Result<serde_json::Value> {
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
    let mut v: serde_json::Value =
        serde_json::from_str(text).with_context(|| format!("parsing {what}"))?;
    without_heap(&mut v);
    Ok(v)
}

/// A recording the shipped binaries replay, each on its own arch.
const SAMPLE: &str = "swapscope/tests/data/vm-7.3-full-frag.swsc";

/// Every binary gives the same `report --json` of [`SAMPLE`] as this host's: a recording made on
/// one arch replays the same on another. Only `mapping_bytes` (the models' approximate heap, which
/// follows the hash tables' SIMD group width: 16 bytes on x86_64, 8 on aarch64) may differ.
fn same_report_everywhere(built: &[Built]) -> Result<()> {
    let sample = root_dir().join(SAMPLE);
    let mut reports = Vec::new();
    for b in built {
        let text = output(runner(b).arg("report").arg(&sample).arg("--json"))?;
        let what = format!("{} report --json", b.path.display());
        reports.push((b.arch, arch_neutral_report(&text, &what)?));
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

/// The Debian architecture of a built binary.
fn deb_arch(arch: &str) -> &'static str {
    match arch {
        "aarch64" => "arm64",
        _ => "amd64",
    }
}

const UNIT: &str = "[Unit]
Description=swapscope exporter: the swap allocator's large-folio fallback for Prometheus
Documentation=man:swapscope-serve(1) file:///usr/share/swapscope/dashboards/README.md
After=network.target

[Service]
Type=exec
EnvironmentFile=-/etc/default/swapscope
ExecStart=/usr/bin/swapscope serve --listen ${SWAPSCOPE_LISTEN} $SWAPSCOPE_OPTS
# No root: a user of its own, with only what loading BPF programs and reading their ring buffer
# needs (BPF memory is charged to the cgroup since 5.11: no CAP_SYS_RESOURCE for RLIMIT_MEMLOCK).
DynamicUser=yes
AmbientCapabilities=CAP_BPF CAP_PERFMON
CapabilityBoundingSet=CAP_BPF CAP_PERFMON
NoNewPrivileges=yes
ProtectSystem=strict
ProtectHome=yes
PrivateTmp=yes
PrivateDevices=yes
ProtectClock=yes
ProtectHostname=yes
ProtectKernelModules=yes
ProtectControlGroups=yes
RestrictNamespaces=yes
RestrictRealtime=yes
LockPersonality=yes
RestrictAddressFamilies=AF_INET AF_INET6 AF_UNIX
SystemCallArchitectures=native
Restart=on-failure
RestartSec=5s

[Install]
WantedBy=multi-user.target
";

const DEFAULTS: &str = "# swapscope-serve.service reads this file.
# Where /metrics and /healthz listen. Loopback by default: give another address to be scraped
# from elsewhere (e.g. 0.0.0.0:9866), and keep the port behind your firewall.
SWAPSCOPE_LISTEN=127.0.0.1:9866
# Other `swapscope serve` options, e.g. --models all or --tier counters.
SWAPSCOPE_OPTS=
";

const COPYRIGHT: &str = "Format: https://www.debian.org/doc/packaging-manuals/copyright-format/1.0/
Upstream-Name: swapscope
Source: https://example.invalid/swapscope

Files: *
Copyright: 2024-2026 the swapscope authors
License: MIT or Apache-2.0
 On Debian systems the full text of the Apache License 2.0 is in
 /usr/share/common-licenses/Apache-2.0. The MIT license: Permission is hereby granted, free of
 charge, to any person obtaining a copy of this software and associated documentation files,
 to deal in the Software without restriction, subject to including the copyright notice and
 this permission notice in all copies or substantial portions of the Software. THE SOFTWARE IS
 PROVIDED \"AS IS\", WITHOUT WARRANTY OF ANY KIND.
";

const POSTINST: &str = "#!/bin/sh
set -e
# The unit is installed disabled: enabling an exporter is the administrator's decision. An
# upgrade restarts it if it runs (as dh_installsystemd's snippets do).
if [ \"$1\" = configure ] && [ -z \"${DPKG_ROOT:-}\" ] && [ -d /run/systemd/system ]; then
\tsystemctl --system daemon-reload >/dev/null || true
\tdeb-systemd-invoke try-restart swapscope-serve.service >/dev/null || true
fi
";

const PRERM: &str = "#!/bin/sh
set -e
if [ \"$1\" = remove ] && [ -z \"${DPKG_ROOT:-}\" ] && [ -d /run/systemd/system ]; then
\tdeb-systemd-invoke stop swapscope-serve.service >/dev/null || true
fi
";

const POSTRM: &str = "#!/bin/sh
set -e
if [ -z \"${DPKG_ROOT:-}\" ] && [ -d /run/systemd/system ]; then
\tsystemctl --system daemon-reload >/dev/null || true
fi
";

/// The lintian tags a static binary draws, per Debian architecture. Static on purpose: one file
/// that runs on any host of its arch whatever its C library (the same binary `cargo xtask dist`
/// ships alone). On amd64 it is static-pie (ELF type DYN without a program interpreter), which
/// lintian reads as a shared library; on arm64 it is a plain static executable.
fn lintian_overrides(arch: &str) -> &'static str {
    match arch {
        "amd64" => "swapscope: shared-library-lacks-prerequisites [usr/bin/swapscope]\n",
        _ => "swapscope: statically-linked-binary [usr/bin/swapscope]\n",
    }
}

fn write_mode(path: &Path, text: &[u8], mode: u32) -> Result<()> {
    use std::os::unix::fs::PermissionsExt as _;
    if let Some(d) = path.parent() {
        fs::create_dir_all(d).with_context(|| format!("creating {}", d.display()))?;
    }
    fs::write(path, text).with_context(|| format!("writing {}", path.display()))?;
    fs::set_permissions(path, fs::Permissions::from_mode(mode))?;
    Ok(())
}

fn copy_tree(from: &Path, to: &Path) -> Result<()> {
    for e in fs::read_dir(from).with_context(|| format!("reading {}", from.display()))? {
        let e = e?;
        let (src, dst) = (e.path(), to.join(e.file_name()));
        if e.file_type()?.is_dir() {
            copy_tree(&src, &dst)?;
        } else {
            write_mode(&dst, &fs::read(&src)?, 0o644)?;
        }
    }
    Ok(())
}

/// A Debian package of one built binary: the binary, man pages and completions generated from
/// its clap definitions, the dashboards, `swapscope-serve.service` (installed disabled) and
/// `/etc/default/swapscope`. Built with `dpkg-deb`, owned by root.
pub(crate) fn deb(b: &Built, files: &Path) -> Result<PathBuf> {
    let version = env!("CARGO_PKG_VERSION");
    let arch = deb_arch(b.arch);
    let root = target_dir().join("dist").join(format!("deb-{arch}"));
    if root.exists() {
        fs::remove_dir_all(&root)?;
    }
    write_mode(&root.join("usr/bin/swapscope"), &fs::read(&b.path)?, 0o755)?;
    for e in fs::read_dir(files.join("man"))? {
        let e = e?;
        let name = format!("{}.gz", e.file_name().to_string_lossy());
        let dst = root.join("usr/share/man/man1").join(&name);
        write_mode(&dst, &gzip(&e.path())?, 0o644)?;
    }
    let c = files.join("completions");
    for (from, to) in [
        (
            "swapscope",
            "usr/share/bash-completion/completions/swapscope",
        ),
        ("_swapscope", "usr/share/zsh/vendor-completions/_swapscope"),
        (
            "swapscope.fish",
            "usr/share/fish/vendor_completions.d/swapscope.fish",
        ),
    ] {
        write_mode(&root.join(to), &fs::read(c.join(from))?, 0o644)?;
    }
    copy_tree(
        &root_dir().join("dashboards"),
        &root.join("usr/share/swapscope/dashboards"),
    )?;
    write_mode(
        &root.join("usr/lib/systemd/system/swapscope-serve.service"),
        UNIT.as_bytes(),
        0o644,
    )?;
    write_mode(
        &root.join("etc/default/swapscope"),
        DEFAULTS.as_bytes(),
        0o644,
    )?;
    write_mode(
        &root.join("usr/share/doc/swapscope/copyright"),
        COPYRIGHT.as_bytes(),
        0o644,
    )?;
    let changelog = format!(
        "swapscope ({version}) unstable; urgency=medium\n\n  * Built by cargo xtask dist.\n\n -- swapscope authors <swapscope@example.invalid>  Sun, 06 Dec 2026 00:00:00 +0000\n"
    );
    let gz = {
        let tmp = root.join("changelog.tmp");
        fs::write(&tmp, changelog)?;
        let gz = gzip(&tmp);
        fs::remove_file(&tmp)?;
        gz?
    };
    write_mode(
        &root.join("usr/share/doc/swapscope/changelog.gz"),
        &gz,
        0o644,
    )?;
    write_mode(
        &root.join("usr/share/lintian/overrides/swapscope"),
        lintian_overrides(arch).as_bytes(),
        0o644,
    )?;
    let installed_kb = du_kb(&root)?;
    let control = format!(
        "Package: swapscope
Version: {version}
Architecture: {arch}
Maintainer: swapscope authors <swapscope@example.invalid>
Installed-Size: {installed_kb}
Section: admin
Priority: optional
Homepage: https://example.invalid/swapscope
Description: watch the Linux swap allocator's large folios from eBPF
 swapscope records every swap request, free, split and write-out with its folio
 order and slot, samples the kernel's own counters beside them, and replays the
 request stream through allocator models (the kernel's own per version and the
 alternatives discussed upstream) to compare fragmentation and large-folio
 success. It ships a terminal UI, recordings, reports and a Prometheus exporter
 (swapscope-serve.service, installed disabled) with Grafana dashboards.
"
    );
    let debian = root.join("DEBIAN");
    write_mode(&debian.join("control"), control.as_bytes(), 0o644)?;
    write_mode(
        &debian.join("conffiles"),
        b"/etc/default/swapscope\n",
        0o644,
    )?;
    write_mode(&debian.join("postinst"), POSTINST.as_bytes(), 0o755)?;
    write_mode(&debian.join("prerm"), PRERM.as_bytes(), 0o755)?;
    write_mode(&debian.join("postrm"), POSTRM.as_bytes(), 0o755)?;
    let sums = output(
        Command::new("sh")
            .args(["-c", "find usr -type f -print0 | sort -z | xargs -0 md5sum"])
            .current_dir(&root),
    )?;
    write_mode(&debian.join("md5sums"), sums.as_bytes(), 0o644)?;
    let deb = target_dir()
        .join("dist")
        .join(format!("swapscope_{version}_{arch}.deb"));
    run(Command::new("dpkg-deb")
        .args(["--root-owner-group", "-Zxz", "--build"])
        .arg(&root)
        .arg(&deb))?;
    Ok(deb)
}

/// `gzip -9n` of a file (no name or time stamp inside: the same bytes every build).
fn gzip(path: &Path) -> Result<Vec<u8>> {
    let out = Command::new("gzip")
        .args(["-9n", "-c"])
        .arg(path)
        .output()
        .context("starting gzip")?;
    if !out.status.success() {
        bail!("gzip {} failed", path.display());
    }
    Ok(out.stdout)
}

fn du_kb(dir: &Path) -> Result<u64> {
    let out = output(
        Command::new("du")
            .args(["-sk", "--exclude=DEBIAN"])
            .arg(dir),
    )?;
    out.split_whitespace()
        .next()
        .and_then(|n| n.parse().ok())
        .context("du printed no size")
}

const LINTIAN: HostPackage = HostPackage {
    name: "lintian",
    file: "/usr/bin/lintian",
    for_what: "checking the Debian package",
};

/// What the package checks need beyond [`DIST_PACKAGES`].
pub(crate) const DEB_PACKAGES: &[HostPackage] = &[LINTIAN];

/// Files under `root` outside dpkg's own database.
fn files_outside_dpkg(root: &Path) -> Result<Vec<String>> {
    let out = output(Command::new("find").arg(root).args([
        "-path",
        "*/var/lib/dpkg",
        "-prune",
        "-o",
        "-type",
        "f",
        "-print",
    ]))?;
    Ok(out.lines().map(str::to_string).collect())
}

/// The checks of a package: lintian (errors fail; the rest is printed), the unit verifies
/// (`systemd-analyze verify` against the package's own tree), and it installs, reinstalls over
/// itself (the upgrade path: prerm upgrade, postinst configure) and purges cleanly in a fresh
/// dpkg root, leaving nothing behind.
pub(crate) fn check_deb(deb: &Path) -> Result<()> {
    let shown = deb.display().to_string();
    let lint = Command::new("lintian")
        .args([
            "--no-tag-display-limit",
            "--suppress-tags",
            "no-manual-page",
        ])
        .arg(deb)
        .output()
        .context("starting lintian")?;
    let text = String::from_utf8_lossy(&lint.stdout);
    for l in text.lines() {
        step(&format!("lintian: {l}"));
    }
    if text.lines().any(|l| l.starts_with("E: ")) {
        bail!("lintian found errors in {shown}");
    }
    let dpkg_root = target_dir().join("dist").join("dpkg-root");
    if dpkg_root.exists() {
        fs::remove_dir_all(&dpkg_root)?;
    }
    for d in [
        "var/lib/dpkg/info",
        "var/lib/dpkg/updates",
        "var/lib/dpkg/triggers",
    ] {
        fs::create_dir_all(dpkg_root.join(d))?;
    }
    for f in ["var/lib/dpkg/status", "var/lib/dpkg/available"] {
        fs::write(dpkg_root.join(f), "")?;
    }
    let dpkg = |args: &[&str]| -> Result<()> {
        run(Command::new("dpkg")
            .arg(format!("--root={}", dpkg_root.display()))
            .args([
                "--force-script-chrootless",
                "--force-not-root",
                "--force-unsafe-io",
                "--log=/dev/null",
            ])
            .args(args))
    };
    let deb_arg = deb.to_string_lossy().into_owned();
    let arch = output(Command::new("dpkg-deb").args(["-f", &deb_arg, "Architecture"]))?;
    let host = output(Command::new("dpkg").arg("--print-architecture"))?;
    let mut extra = Vec::new();
    if arch.trim() != host.trim() {
        extra.push("--force-architecture");
    }
    let install: Vec<&str> = extra.iter().copied().chain(["-i", &deb_arg]).collect();
    dpkg(&install)?;
    let unit = dpkg_root.join("usr/lib/systemd/system/swapscope-serve.service");
    for f in [
        "usr/bin/swapscope",
        "etc/default/swapscope",
        "usr/share/man/man1/swapscope.1.gz",
        "usr/share/man/man1/swapscope-serve.1.gz",
        "usr/share/bash-completion/completions/swapscope",
        "usr/share/swapscope/dashboards/overview.json",
    ] {
        if !dpkg_root.join(f).exists() {
            bail!("{shown} installed no /{f}");
        }
    }
    if !unit.exists() {
        bail!("{shown} installed no swapscope-serve.service");
    }
    // The unit as installed, but for the binary's path: verify checks that `ExecStart` names an
    // executable, and /usr/bin/swapscope is in the dpkg root, not on this host.
    let verify_dir = target_dir().join("dist").join("unit-verify");
    fs::create_dir_all(&verify_dir)?;
    let copy = verify_dir.join("swapscope-serve.service");
    let installed_bin = dpkg_root.join("usr/bin/swapscope");
    fs::write(
        &copy,
        fs::read_to_string(&unit)?.replace(
            "ExecStart=/usr/bin/swapscope",
            &format!("ExecStart={}", installed_bin.display()),
        ),
    )?;
    let verify = Command::new("systemd-analyze")
        .args(["verify", "--man=no"])
        .arg(&copy)
        .output()
        .context("starting systemd-analyze")?;
    let complaints = String::from_utf8_lossy(&verify.stderr);
    if !verify.status.success() || !complaints.trim().is_empty() {
        bail!("systemd-analyze verify of the unit: {}", complaints.trim());
    }
    step(&format!("{shown}: installed; the unit verifies"));
    dpkg(&install)?;
    step(&format!("{shown}: reinstalled over itself"));
    // A purge leaves nothing outside dpkg's own database, /etc/default/swapscope included.
    let purge = |after: &str| -> Result<()> {
        dpkg(&["--purge", "swapscope"])?;
        let left = files_outside_dpkg(&dpkg_root)?;
        if !left.is_empty() {
            bail!("purging {shown}{after} left {}", left.join(", "));
        }
        Ok(())
    };
    purge("")?;
    step(&format!("{shown}: purged, nothing left behind"));
    // An upgrade: the same package as an older version with another default listen address
    // (its conffile), installed first, then this one over it. The conffile the user never
    // edited takes the new contents; a purge after leaves nothing.
    let (older, ours) = older_version_of(deb)?;
    let older_arg = older.to_string_lossy().into_owned();
    let install_older: Vec<&str> = extra.iter().copied().chain(["-i", &older_arg]).collect();
    dpkg(&install_older)?;
    dpkg(&install)?;
    let conf = fs::read_to_string(dpkg_root.join("etc/default/swapscope"))?;
    if conf != ours {
        bail!("upgrading to {shown} kept the older package's /etc/default/swapscope");
    }
    let version = output(Command::new("dpkg-deb").args(["-f", &deb_arg, "Version"]))?;
    let status = fs::read_to_string(dpkg_root.join("var/lib/dpkg/status"))?;
    if !status.contains(&format!("Version: {}", version.trim())) {
        bail!(
            "after the upgrade dpkg does not list {shown}'s version {}",
            version.trim()
        );
    }
    purge(" after the upgrade")?;
    step(&format!(
        "{shown}: upgraded from an older version (its conffile replaced), purged, nothing left"
    ));
    fs::remove_dir_all(&dpkg_root)?;
    let _ = fs::remove_file(&older);
    Ok(())
}

/// The listen address the older package of the upgrade check ships in its conffile.
const OLDER_LISTEN: &str = "127.0.0.1:9865";

/// `deb` rebuilt as version `0.0.0~older-1` with [`OLDER_LISTEN`] in `/etc/default/swapscope`:
/// what an installed older release looks like to dpkg, for the upgrade check. Also returns
/// `deb`'s own `/etc/default/swapscope`.
fn older_version_of(deb: &Path) -> Result<(PathBuf, String)> {
    let work = target_dir().join("dist").join("older-deb");
    if work.exists() {
        fs::remove_dir_all(&work)?;
    }
    run(Command::new("dpkg-deb").arg("-R").arg(deb).arg(&work))?;
    let control = work.join("DEBIAN/control");
    let text = fs::read_to_string(&control)?;
    let text: String = text
        .lines()
        .map(|l| {
            if l.starts_with("Version: ") {
                "Version: 0.0.0~older-1".to_string()
            } else {
                l.to_string()
            }
        })
        .collect::<Vec<_>>()
        .join("\n")
        + "\n";
    fs::write(&control, text)?;
    let conf = work.join("etc/default/swapscope");
    let now = fs::read_to_string(&conf)?;
    let older = now
        .lines()
        .map(|l| {
            if l.starts_with("SWAPSCOPE_LISTEN=") {
                format!("SWAPSCOPE_LISTEN={OLDER_LISTEN}")
            } else {
                l.to_string()
            }
        })
        .collect::<Vec<_>>()
        .join("\n")
        + "\n";
    if !older.contains(OLDER_LISTEN) {
        bail!("{} sets no SWAPSCOPE_LISTEN to change", conf.display());
    }
    fs::write(&conf, older)?;
    // md5sums must match the changed conffile: dpkg checks conffiles by their hash.
    let sums = output(
        Command::new("sh")
            .arg("-c")
            .arg("find . -type f ! -path './DEBIAN/*' -printf '%P\\0' | LC_ALL=C sort -z | xargs -0 md5sum")
            .current_dir(&work),
    )?;
    fs::write(work.join("DEBIAN/md5sums"), sums)?;
    let out = target_dir().join("dist").join("swapscope-older.deb");
    run(Command::new("dpkg-deb")
        .args(["--root-owner-group", "-Zxz", "--build"])
        .arg(&work)
        .arg(&out))?;
    fs::remove_dir_all(&work)?;
    Ok((out, now))
}
