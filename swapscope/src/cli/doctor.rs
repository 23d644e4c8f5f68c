//! `swapscope doctor`: what this host allows, and the probe plan.

use std::{fs, path::Path, process::ExitCode};

use serde::Serialize;
use swapscope::{
    host,
    probe::{self, LiveOptions, LiveProbe, ProbeStatus, btf::KernelBtf},
    stress::{
        setup::{Cgroup, CgroupVersion},
        state,
    },
};

#[derive(Serialize)]
struct Mthp {
    size_kb: u64,
    enabled: String,
}

#[derive(Serialize)]
struct Doctor {
    kernel_release: String,
    arch: &'static str,
    root: bool,
    btf: bool,
    lockdown: String,
    zswap_enabled: Option<bool>,
    memcg: Option<String>,
    swap_devices: Vec<String>,
    mthp: Vec<Mthp>,
    /// `full` (requests and frees), `tracepoint` (write-outs only) or `none`.
    tier: String,
    /// Whether `record` can run here.
    can_record: bool,
    /// The result of actually loading and attaching the tracepoint-tier programs.
    trial_attach: String,
    probes: Vec<ProbeStatus>,
    /// `stress` runs with a state file under /run/swapscope: killed ones (leftovers to undo
    /// with `--cleanup`), running ones, refused or unreadable files (never acted on) and files
    /// set aside by an earlier `--cleanup`.
    stress_runs: Vec<StressRun>,
    /// With `--cleanup`: what was undone, and what could not be.
    #[serde(skip_serializing_if = "Option::is_none")]
    cleanup: Option<Cleanup>,
}

#[derive(Serialize)]
struct StressRun {
    state_file: String,
    pid: Option<u32>,
    /// `killed` (leftovers), `running`, `unreadable`, `refused` (not read: a link, a FIFO,
    /// not root's, writable by others, too large), or `set aside` (`.failed`: an earlier
    /// `--cleanup` could not undo all of it, or refused it; never read again).
    status: &'static str,
    left: Vec<String>,
    /// What the state file names that is not proven the run's own: never touched.
    refused: Vec<String>,
}

#[derive(Serialize)]
struct Cleanup {
    done: Vec<String>,
    failed: Vec<String>,
    /// State files renamed `.failed` after a failure or refusal: not retried by later runs.
    set_aside: Vec<String>,
}

fn stress_runs() -> Vec<StressRun> {
    let scan = state::scan();
    let refused_dir = scan.dir_refused.map(|why| StressRun {
        state_file: state::state_dir().display().to_string(),
        pid: None,
        status: "refused",
        left: vec![why],
        refused: Vec::new(),
    });
    let found = scan.found.into_iter().map(|f| {
        let state_file = f.file.display().to_string();
        match &f.state {
            Ok(s) => {
                let (left, refused) = s.leftovers();
                StressRun {
                    state_file,
                    pid: Some(s.pid),
                    status: if s.alive() { "running" } else { "killed" },
                    left,
                    refused,
                }
            }
            Err(e) => StressRun {
                state_file,
                pid: None,
                status: if matches!(e, state::StateFileError::Refused(_)) {
                    "refused"
                } else {
                    "unreadable"
                },
                left: vec![e.to_string()],
                refused: Vec::new(),
            },
        }
    });
    let aside = scan.set_aside.into_iter().map(|f| StressRun {
        state_file: f.display().to_string(),
        pid: None,
        status: "set aside",
        left: Vec::new(),
        refused: Vec::new(),
    });
    refused_dir.into_iter().chain(found).chain(aside).collect()
}

/// Reads the lockdown mode, mounting securityfs first when it is missing (as systemd does).
fn lockdown() -> String {
    if !Path::new(host::LOCKDOWN_FILE).exists() && host::is_root() {
        let _ = std::process::Command::new("mount")
            .args(["-t", "securityfs", "none", "/sys/kernel/security"])
            .stderr(std::process::Stdio::null())
            .status();
    }
    host::lockdown().unwrap_or_else(|| "unknown (no securityfs lockdown file)".into())
}

pub fn run(json: bool, cleanup: bool) -> anyhow::Result<ExitCode> {
    // Clean-up first, printed after (a closed stdout must not stop it half-way).
    let cleanup = cleanup.then(|| {
        let mut c = Cleanup {
            done: Vec::new(),
            failed: Vec::new(),
            set_aside: Vec::new(),
        };
        for u in state::cleanup_dead() {
            let file = u.file.display();
            c.done
                .extend(u.done.into_iter().map(|d| format!("{d} ({file})")));
            c.failed
                .extend(u.failed.into_iter().map(|d| format!("{d} ({file})")));
            c.set_aside.extend(u.set_aside);
        }
        c
    });
    let btf = KernelBtf::from_sys().ok();
    let lock = lockdown();
    let mut probes = probe::plan(btf.as_ref(), Some(lock.as_str()), None);
    let (can_record, trial) = if !host::is_root() {
        (
            false,
            "not tried: needs root (CAP_BPF and CAP_PERFMON)".to_string(),
        )
    } else {
        match LiveProbe::start(&LiveOptions {
            ringbuf_bytes: 4096,
            full_tier: true,
            log: None,
        }) {
            Ok(p) => {
                probes = p.plan.clone();
                (
                    true,
                    "ok: every probe marked [x] below loaded and attached, then detached".into(),
                )
            }
            Err(e) => (false, format!("failed: {e}")),
        }
    };
    let mthp = host::mthp_sizes_kb(Path::new(host::MTHP_DIR))
        .into_iter()
        .map(|kb| Mthp {
            size_kb: kb,
            // A size without `enabled` exists for shmem only (8K on 6.18: anonymous memory
            // cannot use it, so swap never sees it); it printed as `8K=`.
            enabled: fs::read_to_string(format!("{}/hugepages-{kb}kB/enabled", host::MTHP_DIR))
                .ok()
                .and_then(|t| host::parse_choice(&t))
                .unwrap_or_else(|| "shmem-only".to_owned()),
        })
        .collect();
    let d = Doctor {
        kernel_release: host::kernel_release(),
        arch: std::env::consts::ARCH,
        root: host::is_root(),
        btf: btf.is_some(),
        lockdown: lock,
        zswap_enabled: fs::read_to_string("/sys/module/zswap/parameters/enabled")
            .ok()
            .map(|s| s.trim() == "Y"),
        memcg: Cgroup::locate().ok().map(|(p, v)| {
            format!(
                "{} at {}",
                if v == CgroupVersion::V1 { "v1" } else { "v2" },
                p.display()
            )
        }),
        swap_devices: host::read_proc_swaps()
            .map(|l| {
                l.devices
                    .iter()
                    .map(|d| {
                        format!(
                            "{} ({}, {} KiB, used {} KiB, prio {})",
                            d.path,
                            d.kind.as_str(),
                            d.size_kb,
                            d.used_kb,
                            d.prio
                        )
                    })
                    .collect()
            })
            .unwrap_or_default(),
        mthp,
        tier: if can_record {
            probe::tier(&probes).into()
        } else {
            "counters".into()
        },
        can_record,
        trial_attach: trial,
        probes,
        stress_runs: stress_runs(),
        cleanup,
    };
    if json {
        println!("{}", serde_json::to_string_pretty(&d)?);
    } else {
        print_text(&d);
    }
    let cleanup_failed = d.cleanup.as_ref().is_some_and(|c| !c.failed.is_empty());
    Ok(if d.can_record && !cleanup_failed {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

fn print_text(d: &Doctor) {
    let yn = |b: bool| if b { "yes" } else { "no" };
    println!("kernel        {} ({})", d.kernel_release, d.arch);
    println!("root          {}", yn(d.root));
    println!(
        "BTF           {}",
        if d.btf {
            probe::btf::VMLINUX_BTF
        } else {
            "missing: CONFIG_DEBUG_INFO_BTF=y needed"
        }
    );
    println!("lockdown      {}", d.lockdown);
    println!(
        "zswap         {}",
        d.zswap_enabled.map_or("not built", |z| if z {
            "enabled (write-outs stored in zswap are not swpout)"
        } else {
            "disabled"
        })
    );
    println!(
        "memcg         {}",
        d.memcg.as_deref().unwrap_or("not found")
    );
    if d.swap_devices.is_empty() {
        println!("swap          none active");
    }
    for s in &d.swap_devices {
        println!("swap          {s}");
    }
    let sizes: Vec<String> = d
        .mthp
        .iter()
        .map(|m| format!("{}K={}", m.size_kb, m.enabled))
        .collect();
    println!(
        "mTHP          {}",
        if sizes.is_empty() {
            "none".into()
        } else {
            sizes.join(" ")
        }
    );
    for r in &d.stress_runs {
        match r.status {
            "running" => println!(
                "stress        running (pid {}): {}",
                r.pid.unwrap_or(0),
                if r.left.is_empty() {
                    "nothing created yet".into()
                } else {
                    r.left.join(", ")
                }
            ),
            "killed" if r.left.is_empty() && !r.refused.is_empty() => {}
            "killed" if r.left.is_empty() => println!(
                "stress        a killed run (pid {}) left only its state file {}: `swapscope doctor --cleanup` removes it",
                r.pid.unwrap_or(0),
                r.state_file
            ),
            "killed" => println!(
                "stress        LEFTOVERS of a killed run (pid {}): {}; `swapscope doctor --cleanup` undoes them",
                r.pid.unwrap_or(0),
                r.left.join(", ")
            ),
            "set aside" => println!(
                "stress        {}: set aside by a clean-up (this one or an earlier one) that could not undo all of it or refused it; never read again: look at what it names, then delete it",
                r.state_file
            ),
            "refused" => println!(
                "stress        state file {}: {}",
                r.state_file,
                r.left.join(", ")
            ),
            _ => println!(
                "stress        unreadable state file {}: {}",
                r.state_file,
                r.left.join(", ")
            ),
        }
        for x in &r.refused {
            println!(
                "stress        NOT undone, not proven the run's own (pid {}, {}): {x}",
                r.pid.unwrap_or(0),
                r.state_file
            );
        }
    }
    if let Some(c) = &d.cleanup {
        if c.done.is_empty() && c.failed.is_empty() {
            println!("cleanup       nothing left by killed stress runs");
        }
        for x in &c.done {
            println!("cleanup       {x}");
        }
        for x in &c.failed {
            println!("cleanup       FAILED: {x}");
        }
        for x in &c.set_aside {
            println!("cleanup       {x}");
        }
    }
    println!("tier          {}", d.tier);
    println!("trial attach  {}", d.trial_attach);
    println!();
    println!("probe plan:");
    for p in &d.probes {
        println!(
            "  [{}] {:<44} {}",
            if p.attached { "x" } else { " " },
            format!("{}/{}", p.kind, p.name),
            p.detail
        );
    }
    println!();
    println!(
        "{}",
        if d.can_record {
            "OK: `swapscope record` can run here."
        } else {
            "NOT READY: `swapscope record` cannot run here (see above)."
        }
    );
}
