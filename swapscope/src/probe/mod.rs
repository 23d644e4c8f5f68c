//! Everything that touches the kernel's BPF interfaces: BTF layout, the probe plan, loading and
//! attaching the programs, and draining the ring buffer. The rest of swapscope sees only byte
//! records and [`ProbeStatus`] values.

pub mod btf;

use std::{
    os::fd::{AsFd as _, AsRawFd as _},
    time::Duration,
};

use aya::{
    Ebpf, EbpfLoader,
    maps::{MapData, PerCpuArray, RingBuf},
    programs::BtfTracePoint,
};
use swapscope_common::counter;

use self::btf::{BtfError, KernelBtf};
use crate::host;

/// The BPF object built by `build.rs` (empty when built with `AYA_BUILD_SKIP=1`).
static BPF_OBJECT: &[u8] = aya::include_bytes_aligned!(concat!(env!("OUT_DIR"), "/swapscope"));

pub use crate::record::ProbeStatus;

#[derive(Debug, thiserror::Error)]
pub enum ProbeError {
    #[error(
        "this swapscope binary was built without its BPF object (AYA_BUILD_SKIP); rebuild with `cargo xtask setup && cargo build --release`"
    )]
    NoObject,
    #[error(transparent)]
    Btf(#[from] BtfError),
    #[error(
        "loading BPF programs failed: {0}; run as root (CAP_BPF + CAP_PERFMON) and see `swapscope doctor`"
    )]
    Load(String),
    #[error("attaching {probe} failed: {reason}; see `swapscope doctor`")]
    Attach { probe: String, reason: String },
    #[error("BPF map {0} missing from the object (build mismatch)")]
    Map(&'static str),
}

/// The tracepoint-tier write-out probe.
pub const WRITEOUT_TP: &str = "mm_vmscan_write_folio";

/// Full-tier candidates (fentry/fexit), in the order a loader would try them. They are listed by
/// `doctor` so operators see what this kernel would offer; this build attaches only the
/// tracepoint tier.
pub const FULL_TIER_CANDIDATES: &[(&str, &str)] = &[
    ("alloc", "fexit/folio_alloc_swap"),
    ("alloc", "fexit/add_to_swap"),
    ("alloc", "fexit/alloc_swap_scan_cluster"),
    ("free", "fentry/swap_entries_free"),
    ("free", "fentry/swap_entry_range_free"),
    ("free", "fentry/__swap_cluster_free_entries"),
    ("split", "fentry/__folio_split"),
    ("split", "fentry/split_huge_page_to_list_to_order"),
    ("cluster", "fentry/move_cluster"),
    ("writeout", "fentry/swap_writeout"),
];

/// Outcome of loading (not attaching) the `trial_fexit` program: `None` when not tried.
pub type TracingTrial = Option<Result<String, String>>;

/// Computes the probe plan from BTF, the lockdown state and the fentry/fexit trial load.
pub fn plan(
    btf: Option<&KernelBtf>,
    lockdown: Option<&str>,
    trial: &TracingTrial,
) -> Vec<ProbeStatus> {
    let mut out = Vec::new();
    let tp_ok = btf.is_some_and(|b| b.has_type(&format!("btf_trace_{WRITEOUT_TP}")));
    let layout = btf.map(KernelBtf::kernel_layout);
    let (available, detail) = match (btf, tp_ok, &layout) {
        (None, _, _) => (false, "no kernel BTF".to_string()),
        (Some(_), false, _) => (
            false,
            format!("tracepoint {WRITEOUT_TP} not in this kernel's BTF"),
        ),
        (Some(_), true, Some(Err(e))) => (false, e.to_string()),
        _ => (
            true,
            "tp_btf: allowed under every lockdown mode; direct loads only".to_string(),
        ),
    };
    out.push(ProbeStatus {
        name: WRITEOUT_TP.into(),
        kind: "tp_btf".into(),
        attached: available,
        detail: format!("writeout: {detail}"),
    });
    for (feeds, name) in FULL_TIER_CANDIDATES {
        let func = name.split_once('/').map_or(*name, |(_, f)| f);
        let present = btf.is_some_and(|b| b.has_func(func));
        let detail = match (present, trial) {
            (false, _) => format!("{func} is not in this kernel's BTF"),
            (true, Some(Err(why))) => format!("fentry/fexit refused here: {why}"),
            (true, Some(Ok(what))) => format!(
                "in BTF and fentry/fexit load here (trial: {what}); not attached: this build has the tracepoint tier only"
            ),
            (true, None) if lockdown == Some("confidentiality") => {
                "lockdown=confidentiality: fentry/fexit are expected to be refused (not tried)"
                    .to_string()
            }
            (true, None) => "in BTF; fentry/fexit not tried (needs root)".to_string(),
        };
        let (kind, func) = name.split_once('/').unwrap_or(("", name));
        out.push(ProbeStatus {
            name: func.into(),
            kind: kind.into(),
            attached: false,
            detail: format!("{feeds}: {detail}"),
        });
    }
    out
}

/// Options for [`LiveProbe::start`].
#[derive(Clone, Debug)]
pub struct LiveOptions {
    /// Ring buffer size in bytes (rounded up to a power of two, at least one page).
    pub ringbuf_bytes: u32,
}

impl Default for LiveOptions {
    fn default() -> Self {
        LiveOptions {
            ringbuf_bytes: 8 << 20,
        }
    }
}

/// Loaded and attached programs. Dropping it detaches every link.
pub struct LiveProbe {
    // Kept alive for its programs and links; maps were taken out below.
    _ebpf: Ebpf,
    ring: RingBuf<MapData>,
    counters: PerCpuArray<MapData, u64>,
    pub plan: Vec<ProbeStatus>,
}

impl LiveProbe {
    pub fn start(opts: &LiveOptions) -> Result<Self, ProbeError> {
        if BPF_OBJECT.is_empty() {
            return Err(ProbeError::NoObject);
        }
        let kbtf = KernelBtf::from_sys()?;
        let layout = kbtf.kernel_layout()?;
        let btf = aya::Btf::from_sys_fs().map_err(|e| ProbeError::Load(e.to_string()))?;
        let bytes = opts.ringbuf_bytes.max(4096).next_power_of_two();
        let mut ebpf = EbpfLoader::new()
            .btf(Some(&btf))
            .override_global("LAYOUT", &layout, true)
            .map_max_entries("EVENTS", bytes)
            .load(BPF_OBJECT)
            .map_err(|e| ProbeError::Load(format!("{e:#}")))?;
        let prog: &mut BtfTracePoint = ebpf
            .program_mut(WRITEOUT_TP)
            .ok_or(ProbeError::Map("program mm_vmscan_write_folio"))?
            .try_into()
            .map_err(|e: aya::programs::ProgramError| ProbeError::Load(e.to_string()))?;
        prog.load(WRITEOUT_TP, &btf)
            .map_err(|e| ProbeError::Attach {
                probe: format!("tp_btf/{WRITEOUT_TP}"),
                reason: verifier_summary(&e),
            })?;
        prog.attach().map_err(|e| ProbeError::Attach {
            probe: format!("tp_btf/{WRITEOUT_TP}"),
            reason: e.to_string(),
        })?;
        let trial = Some(trial_tracing(&mut ebpf, &kbtf, &btf));
        let mut plan = plan(Some(&kbtf), host::lockdown().as_deref(), &trial);
        if let Some(p) = plan.first_mut() {
            p.detail = "writeout: attached".into();
        }
        let ring = RingBuf::try_from(ebpf.take_map("EVENTS").ok_or(ProbeError::Map("EVENTS"))?)
            .map_err(|e| ProbeError::Load(e.to_string()))?;
        let counters = PerCpuArray::try_from(
            ebpf.take_map("COUNTERS")
                .ok_or(ProbeError::Map("COUNTERS"))?,
        )
        .map_err(|e| ProbeError::Load(e.to_string()))?;
        Ok(LiveProbe {
            _ebpf: ebpf,
            ring,
            counters,
            plan,
        })
    }

    /// Waits up to `timeout` for data, then hands every queued record to `f`. Returns how many.
    pub fn drain(&mut self, timeout: Duration, mut f: impl FnMut(&[u8])) -> usize {
        let mut n = 0;
        while let Some(item) = self.ring.next() {
            f(&item);
            n += 1;
        }
        if n > 0 {
            return n;
        }
        let mut pfd = libc::pollfd {
            fd: self.ring.as_fd().as_raw_fd(),
            events: libc::POLLIN,
            revents: 0,
        };
        let ms = i32::try_from(timeout.as_millis()).unwrap_or(i32::MAX);
        // SAFETY: `pfd` is one valid pollfd for an fd the ring buffer owns for our lifetime.
        unsafe { libc::poll(&mut pfd, 1, ms) };
        while let Some(item) = self.ring.next() {
            f(&item);
            n += 1;
        }
        n
    }

    /// Per-CPU counters summed over CPUs, indexed by `swapscope_common::counter`.
    pub fn counters(&self) -> [u64; counter::NR as usize] {
        let mut out = [0u64; counter::NR as usize];
        for (i, slot) in out.iter_mut().enumerate() {
            if let Ok(values) = self.counters.get(&(i as u32), 0) {
                *slot = values.iter().sum();
            }
        }
        out
    }
}

/// Functions `trial_fexit` may be pointed at (scalar return types, so fexit is allowed), newest
/// kernels first.
const TRIAL_TARGETS: &[&str] = &[
    "folio_alloc_swap",
    "add_to_swap",
    "swap_writeout",
    "swap_writepage",
];

/// Loads (never attaches) `trial_fexit` to learn whether this kernel allows fentry/fexit. Tries
/// each target in BTF in turn (a kernel may refuse one for its return type, e.g. 6.12's
/// `folio_alloc_swap` returning a struct) and stops at the first load or at EPERM.
fn trial_tracing(ebpf: &mut Ebpf, kbtf: &KernelBtf, btf: &aya::Btf) -> Result<String, String> {
    let prog: &mut aya::programs::FExit = ebpf
        .program_mut("trial_fexit")
        .ok_or_else(|| "trial program missing from the object".to_string())?
        .try_into()
        .map_err(|e: aya::programs::ProgramError| e.to_string())?;
    let mut refused = Vec::new();
    for target in TRIAL_TARGETS.iter().filter(|f| kbtf.has_func(f)) {
        match prog.load(target, btf) {
            Ok(()) => {
                let mut ok = format!("fexit/{target} loaded");
                if !refused.is_empty() {
                    ok.push_str(&format!(" (refused first: {})", refused.join("; ")));
                }
                return Ok(ok);
            }
            Err(e) if e.to_string().contains("Operation not permitted") => {
                return Err("BPF_PROG_LOAD returned EPERM (lockdown, or an LSM policy)".into());
            }
            Err(e) => {
                let first = e.to_string().lines().next().unwrap_or_default().to_string();
                refused.push(format!("fexit/{target}: {first}"));
            }
        }
    }
    if refused.is_empty() {
        Err("no trial target function in BTF".into())
    } else {
        Err(refused.join("; "))
    }
}

/// The fentry/fexit trial on its own, for kernels where the tracepoint tier cannot start (so
/// `doctor` still says whether the full tier would load). Needs root.
pub fn trial_only() -> TracingTrial {
    if BPF_OBJECT.is_empty() {
        return None;
    }
    let kbtf = KernelBtf::from_sys().ok()?;
    let btf = aya::Btf::from_sys_fs().ok()?;
    // Nothing reads the layout: only `trial_fexit` is loaded, and never attached.
    let layout = swapscope_common::KernelLayout::default();
    let mut ebpf = match EbpfLoader::new()
        .btf(Some(&btf))
        .override_global("LAYOUT", &layout, true)
        .map_max_entries("EVENTS", 4096)
        .load(BPF_OBJECT)
    {
        Ok(e) => e,
        Err(e) => return Some(Err(format!("loading the BPF object: {e:#}"))),
    };
    Some(trial_tracing(&mut ebpf, &kbtf, &btf))
}

/// The gist of a program load error: its first line plus the verifier's last lines, which say
/// why it refused.
fn verifier_summary(e: &aya::programs::ProgramError) -> String {
    let s = format!("{e}");
    if std::env::var_os("SWAPSCOPE_VERIFIER_LOG").is_some() {
        eprintln!("{s}");
    }
    let lines: Vec<&str> = s.lines().map(str::trim).filter(|l| !l.is_empty()).collect();
    let mut out = lines.first().copied().unwrap_or_default().to_string();
    if lines.len() > 1 {
        let tail = &lines[lines.len().saturating_sub(3).max(1)..];
        out.push_str(" | verifier: ");
        out.push_str(&tail.join(" / "));
    }
    if s.contains("Operation not permitted") {
        out.push_str(" (EPERM: lockdown or missing CAP_BPF/CAP_PERFMON?)");
    }
    out
}
