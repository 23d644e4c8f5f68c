//! initramfs (cpio newc)

use super::*;

#[derive(Default)]
pub(super) struct Cpio {
    pub(super) buf: Vec<u8>,
    pub(super) ino: u32,
    pub(super) dirs: BTreeSet<String>,
}

impl Cpio {
    pub(super) fn entry(&mut self, name: &str, mode: u32, data: &[u8], rdev: (u32, u32)) {
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

    pub(super) fn pad(&mut self) {
        while !self.buf.len().is_multiple_of(4) {
            self.buf.push(0);
        }
    }

    pub(super) fn parents(&mut self, path: &str) {
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

    pub(super) fn dir(&mut self, path: &str) {
        self.parents(path);
        let p = path.trim_start_matches('/').to_string();
        if self.dirs.insert(p.clone()) {
            self.entry(&p, 0o040_755, &[], (0, 0));
        }
    }

    pub(super) fn file(&mut self, path: &str, data: &[u8], perm: u32) -> Result<()> {
        ensure!(
            u32::try_from(data.len()).is_ok(),
            "{path} is too large for cpio"
        );
        self.parents(path);
        self.entry(path, 0o100_000 | perm, data, (0, 0));
        Ok(())
    }

    pub(super) fn chardev(&mut self, path: &str, major: u32, minor: u32) {
        self.parents(path);
        self.entry(path, 0o020_600, &[], (major, minor));
    }

    pub(super) fn finish(mut self) -> Vec<u8> {
        self.entry("TRAILER!!!", 0, &[], (0, 0));
        self.buf
    }
}

/// Shared libraries `ldd` lists for `exe` (the dynamic loader included), by the path the binary
/// asks for.
pub(super) fn shared_libs(exe: &Path) -> Result<Vec<PathBuf>> {
    // A static binary (the dist builds) has none; ldd says so and exits 1.
    let o = Command::new("ldd")
        .arg(exe)
        .output()
        .with_context(|| format!("starting ldd {}", exe.display()))?;
    let said = format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    );
    if said.contains("not a dynamic executable") {
        return Ok(Vec::new());
    }
    ensure!(
        o.status.success(),
        "ldd {} failed: {}",
        exe.display(),
        said.trim()
    );
    let out = said;
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
pub(super) const TUI_STRESS: &str =
    "--pattern thp-fragment --zram 64 --mthp 64K --limit 1024 --size 60 --passes 6";

/// The guest's `/init`: a shell script of its own (`guest/init.sh`), driven by the two files
/// [`guest_config`] and [`guest_scenarios`] write.
const INIT_SH: &str = include_str!("guest/init.sh");

/// `/etc/swapscope-vm/config`: what `init.sh` runs besides the scenarios, as shell variables,
/// and the host's swapscope diagnostics variables (`SWAPSCOPE_RESCUE=0`,
/// `SWAPSCOPE_VERIFIER_LOG=1`) as `export` lines.
pub(super) fn guest_config(mods: &[String], tui: bool, bench: Option<&VmBench>) -> String {
    let mut out = format!(
        "MODULES=\"{}\"\nTUI={}\nTUI_STRESS=\"{TUI_STRESS}\"\n",
        mods.join(" "),
        u8::from(tui)
    );
    if let Some(b) = bench {
        out.push_str(&format!(
            "BENCH_RECORDERS=\"{}\"\nBENCH_PAIRS={}\nBENCH_STORM_MIB={}\nBENCH_STORM_PASSES={}\n",
            b.recorders().join(" "),
            b.pairs,
            b.storm_mib,
            b.storm_passes
        ));
    }
    for k in ["SWAPSCOPE_RESCUE", "SWAPSCOPE_VERIFIER_LOG"] {
        if let Ok(v) = env::var(k)
            && v.bytes().all(|b| b.is_ascii_alphanumeric())
        {
            out.push_str(&format!("export {k}={v}\n"));
        }
    }
    out
}

/// `/etc/swapscope-vm/scenarios`: one line per scenario, its name, a tab, its `stress` arguments.
pub(super) fn guest_scenarios(scenarios: &[Scenario]) -> String {
    scenarios
        .iter()
        .map(|sc| format!("{}\t{}\n", sc.name, sc.stress))
        .collect()
}

pub(super) fn build_initramfs(
    guest: &Guest<'_>,
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
    let exe = guest.exe;
    c.file(
        "/bin/busybox",
        &fs::read(guest.busybox).with_context(|| format!("reading {}", guest.busybox.display()))?,
        0o755,
    )?;
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
    c.dir("/etc/swapscope-vm");
    c.file(
        "/etc/swapscope-vm/config",
        guest_config(&names, tui, bench).as_bytes(),
        0o644,
    )?;
    c.file(
        "/etc/swapscope-vm/scenarios",
        guest_scenarios(scenarios).as_bytes(),
        0o644,
    )?;
    c.file("/init", INIT_SH.as_bytes(), 0o755)?;
    let cpio = out.with_extension("");
    fs::write(&cpio, c.finish())?;
    let _ = fs::remove_file(out);
    run(Command::new("gzip").args(["-1", "-n", "-f"]).arg(&cpio))?;
    ensure!(out.exists(), "gzip did not write {}", out.display());
    Ok(())
}
