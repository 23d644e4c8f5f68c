//! one kernel

use super::*;

/// Removes the work directory on drop unless kept.
pub(super) struct WorkDir {
    pub(super) path: PathBuf,
    pub(super) keep: bool,
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
pub(super) struct Vm(Child);

impl Drop for Vm {
    fn drop(&mut self) {
        if let Ok(None) = self.0.try_wait() {
            let _ = self.0.kill();
        }
        let _ = self.0.wait();
    }
}

pub(super) struct Timing {
    pub(super) boot: Option<f64>,
    pub(super) total: f64,
}

#[expect(
    clippy::too_many_arguments,
    reason = "one call site; a struct would only rename them"
)]
pub(super) fn boot(
    arch: Arch,
    vmlinuz: &Path,
    initrd: &Path,
    disk: &Path,
    serial_log: &Path,
    name: &str,
    smp: u32,
    keep: bool,
    timeout: u64,
) -> Result<Timing> {
    let (qemu, machine, console) = arch.qemu();
    let mut cmd = Command::new(qemu);
    cmd.args([
        "-machine", machine, "-accel", "tcg", "-cpu", "max", "-m", "2G",
    ])
    .arg("-smp")
    .arg(smp.to_string())
    .args(["-nographic", "-no-reboot", "-nic", "none"])
    .arg("-kernel")
    .arg(vmlinuz)
    .arg("-initrd")
    .arg(initrd)
    .arg("-append")
    .arg(format!(
        "console={console} panic=-1 mitigations=off loglevel=5"
    ))
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
        .with_context(|| format!("starting {qemu}"))?;
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
pub(super) struct Prepared {
    pub(super) spec: &'static Spec,
    pub(super) release: String,
    pub(super) vmlinuz: PathBuf,
    pub(super) mods: Vec<(String, Vec<u8>)>,
}

/// Resolves, downloads and extracts a kernel (cached) and reads the modules the guest needs.
pub(super) fn prepare(spec: &'static Spec, apt: &Apt, cache: &Path) -> Result<Prepared> {
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

/// What goes into a guest: the swapscope binary it runs and the static busybox of its
/// architecture; on an architecture other than the host's, the host's own binary, which replays
/// the guest's recordings to the same reports.
pub(super) struct Guest<'a> {
    pub(super) exe: &'a Path,
    pub(super) busybox: &'a Path,
    pub(super) host_exe: Option<&'a Path>,
}

/// Boots one kernel with `smp` vCPUs, brings its results back and checks them.
pub(super) fn run_vm(
    p: &Prepared,
    cache: &Path,
    guest: &Guest<'_>,
    smp: u32,
    keep: bool,
    timeout: u64,
    opts: &RunOpts,
) -> Result<String> {
    let spec = p.spec;
    let arch = opts.arch;
    let name = format!("{}{}-smp{smp}", spec.label, arch.suffix());
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
    build_initramfs(guest, &p.mods, &initrd, &scenarios, tui, bench)?;
    let disk = work.path.join("results.img");
    fs::File::create(&disk)?.set_len(256 << 20)?;
    let serial = run_dir.join("serial.log");
    step(&format!(
        "vm {name}: booting (TCG, -smp {smp}; serial log {})",
        serial.display()
    ));
    let timing = boot(
        arch, &p.vmlinuz, &initrd, &disk, &serial, &name, smp, keep, timeout,
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
    if let Some(host) = guest.host_exe {
        summary.push_str(
            &same_report_on_host(host, &results, &scenarios, arch)
                .with_context(|| format!("results in {}", results.display()))?,
        );
    }
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
