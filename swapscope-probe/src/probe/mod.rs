//! Everything that touches the kernel's BPF interfaces: BTF layout, the probe plan, loading and
//! attaching the programs, and draining the ring buffer. The rest of swapscope sees only byte
//! records and [`ProbeStatus`] values.

pub mod btf;
pub mod wire;

use std::{
    os::fd::{AsFd as _, AsRawFd as _},
    time::Duration,
};

use aya::{
    Ebpf, EbpfLoader,
    maps::{MapData, PerCpuArray, RingBuf},
    programs::BtfTracePoint,
};
pub use swapscope_common::Feed;
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
    #[error("{0}")]
    Btf(#[from] BtfError),
    #[error(
        "loading BPF programs failed: {0}; run as root (CAP_BPF + CAP_PERFMON) and see `swapscope doctor`"
    )]
    Load(String),
    #[error("attaching {probe} failed: {reason}; see `swapscope doctor`")]
    Attach { probe: String, reason: String },
    #[error("BPF map {0} missing from the object (build mismatch)")]
    Map(&'static str),
    #[error(
        "this kernel uses {page_kib} KiB pages (swap clusters of {cluster_slots} slots); swapscope's slot maps and models assume 4 KiB pages and 512-slot clusters: run it on a 4 KiB-page kernel (arm64: CONFIG_ARM64_4K_PAGES), or replay a recording made on one"
    )]
    PageSize { page_kib: u32, cluster_slots: u32 },
}

/// The kernel's page size fits swapscope's slot maps and models (4 KiB pages, whose PMD makes
/// `SWAPFILE_CLUSTER` 512): a 16 KiB- or 64 KiB-page kernel (arm64 builds some; clusters of
/// 2,048 or 8,192 slots there) is refused in one line rather than replayed through clusters of
/// the wrong size.
pub fn check_page_size(page_size: u32, cluster_slots: u32) -> Result<(), ProbeError> {
    if page_size == 4096 {
        return Ok(());
    }
    Err(ProbeError::PageSize {
        page_kib: page_size / 1024,
        cluster_slots,
    })
}

/// Why one program (a full-tier candidate, a rescue twin) did not load or attach: one line for
/// its entry in the probe plan.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum AttachError {
    #[error("program {0} missing from the object")]
    NoProgram(String),
    #[error("map CHAIN missing from the object")]
    NoChainMap,
    #[error("the CHAIN map: {0}")]
    ChainMap(#[from] aya::maps::MapError),
    #[error("BPF_PROG_LOAD returned EPERM (lockdown, or an LSM policy)")]
    Refused,
    /// The program error's gist (see [`verifier_summary`]).
    #[error("{0}")]
    Program(String),
    #[error("left out (SWAPSCOPE_RESCUE=0)")]
    LeftOut,
}

/// Why a full-tier candidate's kernel function does not fit it.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SignatureError {
    #[error("no kernel BTF")]
    NoBtf,
    #[error("{0} is not in this kernel's BTF")]
    Missing(&'static str),
    #[error("signature differs: {func} {sig}")]
    Differs { func: &'static str, sig: String },
}

/// The tracepoint-tier write-out probe.
pub const WRITEOUT_TP: &str = "mm_vmscan_write_folio";
/// How long the consumer sleeps between drains while events flow: the ring must hold what
/// arrives meanwhile (8 MiB, ~150 k records: 7 M events/s for 20 ms).
pub const BUSY_WAIT: Duration = Duration::from_millis(20);

/// The fentry program timing requests, attached to whichever allocation hook the plan chose.
const REQ_START: &str = "req_start";

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Hook {
    FEntry,
    FExit,
}

impl Hook {
    pub fn as_str(self) -> &'static str {
        match self {
            Hook::FEntry => "fentry",
            Hook::FExit => "fexit",
        }
    }
}

/// One way to feed an event kind on some kernels: a BPF program of the object, the kernel
/// function it attaches to, and the signature it was written for. The planner takes, per feed,
/// the first candidate whose function exists with that signature and that loads and attaches.
#[derive(Clone, Copy, Debug)]
pub struct Candidate {
    /// What it feeds.
    pub feeds: Feed,
    /// Program name in the BPF object.
    pub program: &'static str,
    pub hook: Hook,
    pub func: &'static str,
    /// Parameter types as `KernelBtf::signature` spells them; `*` matches any one type and a
    /// final `..` any further parameters.
    pub params: &'static [&'static str],
    pub ret: Option<&'static str>,
}

const SI: &str = "struct swap_info_struct *";
const CI: &str = "struct swap_cluster_info *";

/// Full-tier candidates, newest kernels first within each feed (see docs/kernel-support.md).
pub const CANDIDATES: &[Candidate] = &[
    Candidate {
        feeds: Feed::Alloc,
        program: "req_folio_alloc_swap",
        hook: Hook::FExit,
        func: "folio_alloc_swap",
        params: &["struct folio *", "gfp_t"],
        ret: Some("int"),
    },
    Candidate {
        feeds: Feed::Alloc,
        program: "req_folio_alloc_swap_1",
        hook: Hook::FExit,
        func: "folio_alloc_swap",
        params: &["struct folio *"],
        ret: Some("int"),
    },
    Candidate {
        feeds: Feed::Alloc,
        program: "req_add_to_swap",
        hook: Hook::FExit,
        func: "add_to_swap",
        params: &["struct folio *"],
        ret: Some("bool"),
    },
    Candidate {
        feeds: Feed::AllocShmem,
        program: "req_shmem_cache_add",
        hook: Hook::FEntry,
        func: "add_to_swap_cache",
        params: &["struct folio *", "swp_entry_t", "gfp_t", "void * *"],
        ret: Some("int"),
    },
    Candidate {
        feeds: Feed::Grant,
        program: "grant_cache_add",
        hook: Hook::FEntry,
        func: "__swap_cache_add_folio",
        params: &[CI, "struct folio *", "swp_entry_t"],
        ret: None,
    },
    Candidate {
        feeds: Feed::Grant,
        program: "grant_scan_slots_batch",
        hook: Hook::FExit,
        func: "scan_swap_map_slots",
        params: &[SI, "unsigned char", "int", "swp_entry_t *", "int"],
        ret: Some("int"),
    },
    Candidate {
        feeds: Feed::Grant,
        program: "grant_scan_slots",
        hook: Hook::FExit,
        func: "scan_swap_map_slots",
        params: &[SI, "unsigned char", "int", "swp_entry_t *", "int"],
        ret: Some("int"),
    },
    Candidate {
        feeds: Feed::GrantRefusal,
        program: "grant_charge_refused",
        hook: Hook::FEntry,
        func: "__mem_cgroup_try_charge_swap",
        params: &["struct folio *"],
        ret: Some("int"),
    },
    Candidate {
        feeds: Feed::GrantRefusalLocked,
        program: "grant_slow_refused",
        hook: Hook::FExit,
        func: "cluster_alloc_swap_entry",
        params: &[SI, "struct folio *"],
        ret: Some("long unsigned int"),
    },
    Candidate {
        feeds: Feed::Free,
        program: "free_si_ci_start_nr",
        hook: Hook::FExit,
        func: "__swap_cluster_free_entries",
        params: &[SI, CI, "*", "*"],
        ret: None,
    },
    Candidate {
        feeds: Feed::Free,
        program: "free_si_ci_entry_nr",
        hook: Hook::FExit,
        func: "swap_entries_free",
        params: &[SI, CI, "swp_entry_t", "*"],
        ret: None,
    },
    Candidate {
        feeds: Feed::Free,
        program: "free_si_ci_entry_nr",
        hook: Hook::FExit,
        func: "swap_entry_range_free",
        params: &[SI, CI, "swp_entry_t", "*"],
        ret: None,
    },
    Candidate {
        feeds: Feed::Free,
        program: "free_si_entry_nr",
        hook: Hook::FEntry,
        func: "swap_entry_range_free",
        params: &[SI, "swp_entry_t", "*"],
        ret: None,
    },
    Candidate {
        feeds: Feed::Free,
        program: "free_si_entry",
        hook: Hook::FEntry,
        func: "swap_entry_free",
        params: &[SI, "swp_entry_t"],
        ret: None,
    },
    Candidate {
        feeds: Feed::Free,
        program: "free_si_offset_nr",
        hook: Hook::FEntry,
        func: "swap_range_free",
        params: &[SI, "long unsigned int", "unsigned int"],
        ret: None,
    },
    Candidate {
        feeds: Feed::FreeThp,
        program: "free_si_cluster",
        hook: Hook::FEntry,
        func: "swap_free_cluster",
        params: &[SI, "long unsigned int"],
        ret: None,
    },
    Candidate {
        feeds: Feed::Swapin,
        program: "swapin_ctx_folio",
        hook: Hook::FEntry,
        func: "swap_read_folio",
        params: &["struct swap_io_ctx *", "struct folio *"],
        ret: None,
    },
    Candidate {
        feeds: Feed::Swapin,
        program: "swapin_folio",
        hook: Hook::FEntry,
        func: "swap_read_folio",
        params: &["struct folio *", "struct swap_iocb * *"],
        ret: None,
    },
    Candidate {
        feeds: Feed::Swapin,
        program: "swapin_folio",
        hook: Hook::FEntry,
        func: "swap_read_folio",
        params: &["struct folio *", "bool", "struct swap_iocb * *"],
        ret: None,
    },
    Candidate {
        feeds: Feed::Swapin,
        program: "swapin_page",
        hook: Hook::FEntry,
        func: "swap_readpage",
        params: &["struct page *", "bool", "struct swap_iocb * *"],
        ret: None,
    },
    Candidate {
        feeds: Feed::Cluster,
        program: "cluster_move",
        hook: Hook::FEntry,
        func: "move_cluster",
        params: &[SI, CI, "struct list_head *", "enum swap_cluster_flags"],
        ret: None,
    },
    Candidate {
        feeds: Feed::ClusterIsolate,
        program: "cluster_isolate_order",
        hook: Hook::FExit,
        func: "isolate_lock_cluster",
        params: &[SI, "struct list_head *", "int"],
        ret: Some(CI),
    },
    Candidate {
        feeds: Feed::ClusterIsolate,
        program: "cluster_isolate",
        hook: Hook::FExit,
        func: "isolate_lock_cluster",
        params: &[SI, "struct list_head *"],
        ret: Some(CI),
    },
    Candidate {
        feeds: Feed::Split,
        program: "split_folio",
        hook: Hook::FEntry,
        func: "__folio_split",
        params: &["struct folio *", "unsigned int", ".."],
        ret: None,
    },
    Candidate {
        feeds: Feed::Split,
        program: "split_page_to_order",
        hook: Hook::FEntry,
        func: "split_huge_page_to_list_to_order",
        params: &["struct page *", "struct list_head *", "unsigned int"],
        ret: None,
    },
    Candidate {
        feeds: Feed::WriteIo,
        program: "write_io_ctx",
        hook: Hook::FEntry,
        func: "__swap_writepage",
        params: &["struct swap_io_ctx *", "struct folio *"],
        ret: None,
    },
    // The first argument is the folio (6.1: its head page, at the same address).
    Candidate {
        feeds: Feed::WriteIo,
        program: "write_io",
        hook: Hook::FEntry,
        func: "__swap_writepage",
        params: &["struct folio *", "struct swap_iocb * *"],
        ret: None,
    },
    Candidate {
        feeds: Feed::WriteIo,
        program: "write_io",
        hook: Hook::FEntry,
        func: "__swap_writepage",
        params: &["struct folio *", "struct writeback_control *"],
        ret: None,
    },
    Candidate {
        feeds: Feed::WriteIo,
        program: "write_io",
        hook: Hook::FEntry,
        func: "__swap_writepage",
        params: &["struct page *", "struct writeback_control *"],
        ret: None,
    },
];

impl Candidate {
    /// Checks the function against BTF: `Ok(signature)` or why not.
    pub fn check(&self, btf: &KernelBtf) -> Result<String, SignatureError> {
        let sig = btf
            .signature(self.func)
            .ok_or(SignatureError::Missing(self.func))?;
        let (fixed, rest) = match self.params.split_last() {
            Some((&"..", fixed)) => (fixed, true),
            _ => (self.params, false),
        };
        let ok = if rest {
            sig.params.len() >= fixed.len()
                && sig
                    .params
                    .iter()
                    .zip(fixed)
                    .all(|(p, w)| *w == "*" || p == w)
                && self.ret.is_none_or(|r| ret_matches(r, &sig.ret))
        } else {
            sig.matches(fixed, None) && self.ret.is_none_or(|r| ret_matches(r, &sig.ret))
        };
        if ok {
            Ok(sig.to_string())
        } else {
            Err(SignatureError::Differs {
                func: self.func,
                sig: sig.to_string(),
            })
        }
    }
}

/// Why candidate `c` is not wanted given the feeds and programs already attached, if it is not:
/// a feed is useless without another (isolations alone would make every cluster look isolated
/// twice over), or an attached program already sees its events (`swap_range_free` sees the
/// whole-cluster frees `swap_free_cluster` would report), or its feed is already fed.
fn not_needed(c: &Candidate, fed: &[Feed], programs: &[&str]) -> Option<String> {
    if c.feeds == Feed::ClusterIsolate && !fed.contains(&Feed::Cluster) {
        return Some("it only makes sense with the cluster feed, which did not attach".into());
    }
    if c.feeds == Feed::Grant && !fed.contains(&Feed::Alloc) {
        return Some("grants order requests, and no request feed attached".into());
    }
    if c.feeds == Feed::GrantRefusal && !programs.contains(&"grant_cache_add") {
        return Some("refusals are ordered this way only beside 7.x's grants".into());
    }
    if c.feeds == Feed::GrantRefusalLocked && !programs.contains(&"grant_charge_refused") {
        return Some(
            "it hands its refusals over to the charge hook's program, not attached".into(),
        );
    }
    if c.feeds == Feed::AllocShmem && !programs.contains(&"req_add_to_swap") {
        return Some("the request feed attached sees shmem's requests too".into());
    }
    if c.feeds == Feed::FreeThp && programs.contains(&"free_si_offset_nr") {
        return Some("swap_range_free sees whole-cluster frees too".into());
    }
    fed.contains(&c.feeds)
        .then(|| format!("another {} probe is attached", c.feeds))
}

/// Return types compare by spelling, except that `bool` may be spelled `_Bool`.
fn ret_matches(want: &str, have: &str) -> bool {
    want == have || (want == "bool" && have == "_Bool")
}

/// The tracepoint entry of the plan from BTF alone.
fn tracepoint_status(btf: Option<&KernelBtf>) -> ProbeStatus {
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
            "loadable under every lockdown mode; direct loads only".to_string(),
        ),
    };
    ProbeStatus {
        name: WRITEOUT_TP.into(),
        kind: "tp_btf".into(),
        attached: available,
        detail: format!("writeout: {detail}"),
    }
}

/// Tries one candidate for real: load and attach.
pub type AttachFn<'a> = dyn FnMut(&'static Candidate) -> Result<(), AttachError> + 'a;

/// Computes the probe plan. `attach` tries one candidate for real (load + attach); without it
/// the plan is a dry run from BTF and the lockdown mode.
pub fn plan(
    btf: Option<&KernelBtf>,
    lockdown: Option<&str>,
    mut attach: Option<&mut AttachFn<'_>>,
) -> Vec<ProbeStatus> {
    let mut out = vec![tracepoint_status(btf)];
    let mut fed: Vec<Feed> = Vec::new();
    let mut programs: Vec<&str> = Vec::new();
    let mut refused: Option<String> = None;
    for c in CANDIDATES {
        let status = |attached: bool, detail: String| ProbeStatus {
            name: c.func.into(),
            kind: c.hook.as_str().into(),
            attached,
            detail: format!("{}: {detail}", c.feeds),
        };
        let checked = match btf {
            Some(b) => c.check(b),
            None => Err(SignatureError::NoBtf),
        };
        let sig = match checked {
            Ok(sig) => sig,
            Err(why) => {
                out.push(status(false, why.to_string()));
                continue;
            }
        };
        if let Some(why) = not_needed(c, &fed, &programs) {
            out.push(status(false, format!("not needed: {why}")));
            continue;
        }
        let st = match (attach.as_mut(), &refused) {
            (Some(_), Some(why)) => status(false, format!("not tried: {why}")),
            (Some(f), None) => match f(c) {
                Ok(()) => {
                    fed.push(c.feeds);
                    programs.push(c.program);
                    status(true, format!("attached to {sig}"))
                }
                Err(why) => {
                    if matches!(why, AttachError::Refused) {
                        refused = Some("fentry/fexit refused on this host".into());
                    }
                    status(false, why.to_string())
                }
            },
            (None, _) if lockdown == Some("confidentiality") => status(
                false,
                format!("{sig}; lockdown=confidentiality is expected to refuse fentry/fexit"),
            ),
            (None, _) => status(false, format!("{sig}; not tried (dry run)")),
        };
        out.push(st);
    }
    out
}

pub use crate::record::tier;

/// Where the BPF programs' own diagnostics (aya-log records) go: each line with its level.
pub type LogFn = std::sync::Arc<dyn Fn(log::Level, String) + Send + Sync>;

/// Options for [`LiveProbe::start`].
#[derive(Clone)]
pub struct LiveOptions {
    /// Ring buffer size in bytes (rounded up to a power of two, at least one page).
    pub ringbuf_bytes: u32,
    /// Try the full-tier (fentry/fexit) probes too.
    pub full_tier: bool,
    /// Receives the programs' diagnostics (attach-time facts, rare error paths); `None` drops
    /// them.
    pub log: Option<LogFn>,
}

impl std::fmt::Debug for LiveOptions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LiveOptions")
            .field("ringbuf_bytes", &self.ringbuf_bytes)
            .field("full_tier", &self.full_tier)
            .field("log", &self.log.is_some())
            .finish()
    }
}

impl Default for LiveOptions {
    fn default() -> Self {
        LiveOptions {
            ringbuf_bytes: 8 << 20,
            full_tier: true,
            log: None,
        }
    }
}

/// Hands aya-log records to a [`LogFn`].
struct LogBridge(LogFn);

impl log::Log for LogBridge {
    fn enabled(&self, _: &log::Metadata<'_>) -> bool {
        true
    }

    fn log(&self, record: &log::Record<'_>) {
        (self.0)(record.level(), record.args().to_string());
    }

    fn flush(&self) {}
}

/// Loaded and attached programs. Dropping it detaches every link.
pub struct LiveProbe {
    // Owns the programs and their links; maps were taken out below.
    ebpf: Ebpf,
    /// Reads the programs' aya-log records (when a `log` was given).
    logger: Option<aya_log::EbpfLogger<LogBridge>>,
    ring: RingBuf<MapData>,
    counters: PerCpuArray<MapData, u64>,
    pub plan: Vec<ProbeStatus>,
    /// The full-tier candidates that attached, as the planner chose them.
    attached: Vec<&'static Candidate>,
    /// Whether `req_start` (request timing) attached.
    timing: bool,
    /// Per rescued feed: the program of its chain the kernel runs first (see
    /// [`first_of_chain`]), whose `recursion_misses` are the invocations the rescues start from.
    first: Vec<(Feed, &'static str)>,
}

impl LiveProbe {
    pub fn start(opts: &LiveOptions) -> Result<Self, ProbeError> {
        if BPF_OBJECT.is_empty() {
            return Err(ProbeError::NoObject);
        }
        check_page_size(crate::host::page_size(), crate::host::swap_cluster_slots())?;
        let kbtf = KernelBtf::from_sys()?;
        let layout = kbtf.kernel_layout()?;
        let btf = aya::Btf::from_sys_fs().map_err(|e| ProbeError::Load(e.to_string()))?;
        let (mut ebpf, logger, wo_rescue) = load_object(BPF_OBJECT, &layout, &btf, opts)?;
        let mut attached = Vec::new();
        let mut rescues: Vec<ProbeStatus> = Vec::new();
        // A tracepoint runs its programs in attach order: the write-out primary first.
        let mut first = vec![(Feed::Writeout, WRITEOUT_TP)];
        rescues.push(rescue_status(
            WRITEOUT_TP,
            "tp_btf",
            Feed::Writeout,
            wo_rescue,
        ));
        let mut try_attach = |c: &'static Candidate| {
            attach_chain(&mut ebpf, &btf, c, &mut rescues, &mut first)?;
            attached.push(c);
            Ok(())
        };
        let mut plan = plan(
            Some(&kbtf),
            host::lockdown().as_deref(),
            if opts.full_tier {
                Some(&mut try_attach as &mut AttachFn<'_>)
            } else {
                None
            },
        );
        if let Some(p) = plan.first_mut() {
            p.detail = "writeout: attached".into();
        }
        plan.extend(rescues);
        // The entry of the chosen allocation hook, for each request's latency.
        let mut timing_attached = false;
        if let Some(c) = attached.iter().find(|c| c.feeds == Feed::Alloc) {
            let timing = Candidate {
                feeds: Feed::AllocTiming,
                program: REQ_START,
                hook: Hook::FEntry,
                ..**c
            };
            let r = attach_chain(&mut ebpf, &btf, &timing, &mut plan, &mut first);
            timing_attached = r.is_ok();
            plan.push(ProbeStatus {
                name: c.func.into(),
                kind: "fentry".into(),
                attached: r.is_ok(),
                detail: match r {
                    Ok(()) => "alloc-timing: attached (request latency)".into(),
                    Err(why) => format!("alloc-timing: {why} (requests are not timed)"),
                },
            });
        }
        let ring = RingBuf::try_from(ebpf.take_map("EVENTS").ok_or(ProbeError::Map("EVENTS"))?)
            .map_err(|e| ProbeError::Load(e.to_string()))?;
        let counters = PerCpuArray::try_from(
            ebpf.take_map("COUNTERS")
                .ok_or(ProbeError::Map("COUNTERS"))?,
        )
        .map_err(|e| ProbeError::Load(e.to_string()))?;
        Ok(LiveProbe {
            ebpf,
            logger,
            timing: timing_attached,
            attached,
            ring,
            counters,
            plan,
            first,
        })
    }

    /// Hands every queued record to `f`, waits, and hands on what arrived meanwhile. Returns
    /// how many. The programs submit without waking the consumer (see `submit` in the BPF
    /// crate), so this is the consumer's clock: while events flow it sleeps [`BUSY_WAIT`]
    /// between drains (polling the ring would return at once while it holds data); when the
    /// ring is empty it polls for up to `timeout`, woken early only when the programs force a
    /// wake-up (the ring a quarter full). A few dozen wake-ups a second whatever the event
    /// rate, instead of one per record.
    pub fn drain(&mut self, timeout: Duration, mut f: impl FnMut(&[u8])) -> usize {
        if let Some(l) = self.logger.as_mut() {
            l.flush();
        }
        let mut n = 0;
        while let Some(item) = self.ring.next() {
            f(&item);
            n += 1;
        }
        if timeout.is_zero() {
            return n;
        }
        if n > 0 {
            std::thread::sleep(timeout.min(BUSY_WAIT));
        } else {
            let mut pfd = libc::pollfd {
                fd: self.ring.as_fd().as_raw_fd(),
                events: libc::POLLIN,
                revents: 0,
            };
            let ms = i32::try_from(timeout.as_millis()).unwrap_or(i32::MAX);
            // SAFETY: `pfd` is one valid pollfd for an fd the ring buffer owns for our lifetime.
            unsafe { libc::poll(&mut pfd, 1, ms) };
        }
        while let Some(item) = self.ring.next() {
            f(&item);
            n += 1;
        }
        n
    }

    /// Per attached program, by feed (`writeout`, `alloc`, `free`, ...): hook invocations
    /// neither it nor its rescue twins delivered — the kernel's `recursion_misses` of the chain's
    /// first program minus the rescues — and the rescues.
    pub fn missed_events(&self) -> Vec<(Feed, u64, u64)> {
        let c = self.counters();
        self.program_info()
            .into_iter()
            .map(|(feed, i)| {
                let rescued = feed
                    .rescue_slot()
                    .and_then(|s| c.get((counter::RESCUED + s) as usize).copied())
                    .unwrap_or(0);
                (feed, i.recursion_misses.saturating_sub(rescued), rescued)
            })
            .collect()
    }

    /// Per attached program, by feed: `(runs, ns spent in it)` — kept by the kernel only while
    /// `kernel.bpf_stats_enabled` is 1 (the live benchmark turns it on for one run), so
    /// programs that never counted are left out.
    pub fn program_time(&self) -> Vec<(Feed, u64, u64)> {
        self.program_info()
            .into_iter()
            .filter(|(_, i)| i.run_cnt > 0)
            .map(|(feed, i)| (feed, i.run_cnt, i.run_time_ns))
            .collect()
    }

    fn program_info(&self) -> Vec<(Feed, aya_obj::generated::bpf_prog_info)> {
        let first = |feed: Feed, program: &'static str| {
            self.first
                .iter()
                .find(|(f, _)| *f == feed)
                .map_or(program, |(_, p)| *p)
        };
        let programs = std::iter::once((Feed::Writeout, first(Feed::Writeout, WRITEOUT_TP)))
            .chain(
                self.attached
                    .iter()
                    .map(|c| (c.feeds, first(c.feeds, c.program))),
            )
            .chain(
                self.timing
                    .then(|| (Feed::AllocTiming, first(Feed::AllocTiming, REQ_START))),
            );
        programs
            .filter_map(|(feed, program)| {
                let prog = self.ebpf.program(program)?;
                let fd = prog.fd().ok()?;
                prog_info(fd.as_fd()).map(|n| (feed, n))
            })
            .collect()
    }

    /// Whether a program of `feed` attached.
    pub fn has_feed(&self, feed: Feed) -> bool {
        self.attached.iter().any(|c| c.feeds == feed)
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

/// The rescue twins of program `program`, in the order they are attached (the BPF object names
/// them `<program>_rescue` and `<program>_rescue2`).
fn rescue_programs(program: &'static str) -> &'static [&'static str] {
    RESCUE_PROGRAMS
        .iter()
        .find(|(p, _)| *p == program)
        .map_or(&[], |(_, r)| r)
}

/// Every program with rescue twins, and the twins' names in the BPF object.
const RESCUE_PROGRAMS: &[(&str, &[&str])] = &[
    (
        WRITEOUT_TP,
        &[
            "mm_vmscan_write_folio_rescue",
            "mm_vmscan_write_folio_rescue2",
        ],
    ),
    (
        "req_folio_alloc_swap",
        &[
            "req_folio_alloc_swap_rescue",
            "req_folio_alloc_swap_rescue2",
        ],
    ),
    (
        "req_folio_alloc_swap_1",
        &[
            "req_folio_alloc_swap_1_rescue",
            "req_folio_alloc_swap_1_rescue2",
        ],
    ),
    (
        "req_add_to_swap",
        &["req_add_to_swap_rescue", "req_add_to_swap_rescue2"],
    ),
    (
        "req_shmem_cache_add",
        &["req_shmem_cache_add_rescue", "req_shmem_cache_add_rescue2"],
    ),
    (
        "split_folio",
        &["split_folio_rescue", "split_folio_rescue2"],
    ),
    (
        "split_page_to_order",
        &["split_page_to_order_rescue", "split_page_to_order_rescue2"],
    ),
    (
        "swapin_folio",
        &["swapin_folio_rescue", "swapin_folio_rescue2"],
    ),
    (
        "swapin_ctx_folio",
        &["swapin_ctx_folio_rescue", "swapin_ctx_folio_rescue2"],
    ),
    (
        "swapin_page",
        &["swapin_page_rescue", "swapin_page_rescue2"],
    ),
    (REQ_START, &["req_start_rescue", "req_start_rescue2"]),
    ("write_io", &["write_io_rescue", "write_io_rescue2"]),
    (
        "write_io_ctx",
        &["write_io_ctx_rescue", "write_io_ctx_rescue2"],
    ),
    (
        "grant_charge_refused",
        &[
            "grant_charge_refused_rescue",
            "grant_charge_refused_rescue2",
        ],
    ),
];

/// Attaches full-tier candidate `c` and, when its feed runs preemptible (it has a rescue slot),
/// its rescue twins on the same hook after it, in order, up to the first that fails; each twin's
/// line goes to `rescues`, and the chain's first-run program to `first`.
fn attach_chain(
    ebpf: &mut Ebpf,
    btf: &aya::Btf,
    c: &Candidate,
    rescues: &mut Vec<ProbeStatus>,
    first: &mut Vec<(Feed, &'static str)>,
) -> Result<(), AttachError> {
    let Some(slot) = c.feeds.rescue_slot() else {
        return attach_candidate(ebpf, btf, c);
    };
    set_chain(ebpf, slot, 1)?;
    attach_candidate(ebpf, btf, c)?;
    let mut twins = 0;
    if rescue_wanted() {
        for program in rescue_programs(c.program) {
            let twin = Candidate { program, ..*c };
            let r = attach_candidate(ebpf, btf, &twin);
            let ok = r.is_ok();
            rescues.push(rescue_status(c.func, c.hook.as_str(), c.feeds, r));
            if !ok {
                break;
            }
            twins += 1;
            set_chain(ebpf, slot, 1 + twins)?;
        }
    }
    first.push((c.feeds, first_of_chain(c.program, twins)));
    Ok(())
}

/// The program of a trampoline (fentry/fexit) chain — `program` and its first `twins` rescue
/// twins — that the kernel runs first: the last attached (`bpf_trampoline_link_prog` adds at the
/// head of its list; a BTF tracepoint runs its programs in attach order).
fn first_of_chain(program: &'static str, twins: u32) -> &'static str {
    match twins {
        0 => program,
        n => rescue_programs(program)
            .get(n as usize - 1)
            .copied()
            .unwrap_or(program),
    }
}

/// Tells a rescued feed's programs how many of its chain are attached (`CHAIN`; see the BPF
/// crate's `level`).
fn set_chain(ebpf: &mut Ebpf, slot: u32, n: u32) -> Result<(), AttachError> {
    let map = ebpf.map_mut("CHAIN").ok_or(AttachError::NoChainMap)?;
    let mut chain: aya::maps::Array<&mut MapData, u32> = aya::maps::Array::try_from(map)?;
    Ok(chain.set(slot, n, 0)?)
}

/// Whether rescue twins are attached (`SWAPSCOPE_RESCUE=0` leaves them out, to measure what
/// they deliver).
fn rescue_wanted() -> bool {
    std::env::var("SWAPSCOPE_RESCUE").map_or(true, |v| v != "0")
}

/// The probe plan's line for a rescue twin.
fn rescue_status(func: &str, kind: &str, feed: Feed, r: Result<(), AttachError>) -> ProbeStatus {
    let (attached, detail) = match r {
        Ok(()) => (
            true,
            format!(
                "rescue: another program on the hook delivers the {feed} events the programs attached before it skip while other tasks are preempted inside them (recursion_misses)"
            ),
        ),
        Err(why) => (
            false,
            format!("rescue: {why} ({feed} misses are not rescued)"),
        ),
    };
    ProbeStatus {
        name: func.into(),
        kind: kind.into(),
        attached,
        detail,
    }
}

/// Loads the object `obj` (with the kernel's layout and the ring size of `opts`) and attaches
/// the tracepoint-tier program; returns the loaded object and its log reader.
#[expect(
    clippy::type_complexity,
    reason = "one private call site; the tuple is (object, its log reader, the rescue twin's attach result)"
)]
fn load_object(
    obj: &[u8],
    layout: &swapscope_common::KernelLayout,
    btf: &aya::Btf,
    opts: &LiveOptions,
) -> Result<
    (
        Ebpf,
        Option<aya_log::EbpfLogger<LogBridge>>,
        Result<(), AttachError>,
    ),
    ProbeError,
> {
    let bytes = opts.ringbuf_bytes.max(4096).next_power_of_two();
    let mut ebpf = EbpfLoader::new()
        .btf(Some(btf))
        .override_global("LAYOUT", layout, true)
        .map_max_entries("EVENTS", bytes)
        .map_max_entries("REQ_START", layout.nr_cpus.max(1))
        .load(obj)
        .map_err(|e| ProbeError::Load(format!("{e:#}")))?;
    // Before the programs load: they refer to the log map.
    let logger = match &opts.log {
        Some(f) => aya_log::EbpfLogger::init_with_logger(&mut ebpf, LogBridge(f.clone()))
            .map_err(|e| ProbeError::Load(format!("the BPF log map: {e}")))
            .ok(),
        None => None,
    };
    set_chain(&mut ebpf, swapscope_common::rescue::WRITEOUT, 1)
        .map_err(|e| ProbeError::Load(e.to_string()))?;
    let prog: &mut BtfTracePoint = ebpf
        .program_mut(WRITEOUT_TP)
        .ok_or(ProbeError::Map("program mm_vmscan_write_folio"))?
        .try_into()
        .map_err(|e: aya::programs::ProgramError| ProbeError::Load(e.to_string()))?;
    prog.load(WRITEOUT_TP, btf)
        .map_err(|e| ProbeError::Attach {
            probe: format!("tp_btf/{WRITEOUT_TP}"),
            reason: verifier_summary(&e),
        })?;
    prog.attach().map_err(|e| ProbeError::Attach {
        probe: format!("tp_btf/{WRITEOUT_TP}"),
        reason: e.to_string(),
    })?;
    let rescue = if rescue_wanted() {
        rescue_programs(WRITEOUT_TP)
            .iter()
            .zip(2..)
            .try_for_each(|(p, n)| {
                attach_tracepoint(&mut ebpf, btf, p)?;
                set_chain(&mut ebpf, swapscope_common::rescue::WRITEOUT, n)
            })
    } else {
        Err(AttachError::LeftOut)
    };
    Ok((ebpf, logger, rescue))
}

/// Loads and attaches a program of the tracepoint the write-out program is on.
fn attach_tracepoint(ebpf: &mut Ebpf, btf: &aya::Btf, program: &str) -> Result<(), AttachError> {
    let prog: &mut BtfTracePoint = ebpf
        .program_mut(program)
        .ok_or_else(|| AttachError::NoProgram(program.into()))?
        .try_into()
        .map_err(|e: aya::programs::ProgramError| AttachError::Program(e.to_string()))?;
    prog.load(WRITEOUT_TP, btf)
        .map_err(|e| AttachError::Program(verifier_summary(&e)))?;
    prog.attach()
        .map(|_| ())
        .map_err(|e| AttachError::Program(e.to_string()))
}

/// `bpf_prog_info` of a loaded program (`BPF_OBJ_GET_INFO_BY_FD`; aya 0.14 does not expose its
/// `recursion_misses`). A fentry/fexit program is skipped, and counted
/// here, when it is entered again on a CPU where it is already running — on a preemptible kernel,
/// when a task was preempted inside it.
fn prog_info(fd: std::os::fd::BorrowedFd<'_>) -> Option<aya_obj::generated::bpf_prog_info> {
    use aya_obj::generated::{bpf_attr, bpf_cmd, bpf_prog_info};
    // SAFETY: both are plain C structs/unions of integers, for which all-zero is valid.
    let mut info: bpf_prog_info = unsafe { std::mem::zeroed() };
    // SAFETY: as above.
    let mut attr: bpf_attr = unsafe { std::mem::zeroed() };
    attr.info.bpf_fd = u32::try_from(fd.as_raw_fd()).ok()?;
    attr.info.info_len = u32::try_from(std::mem::size_of::<bpf_prog_info>()).ok()?;
    attr.info.info = std::ptr::addr_of_mut!(info) as u64;
    // SAFETY: `attr` is a valid bpf_attr for BPF_OBJ_GET_INFO_BY_FD whose `info` points at
    // `info`, which outlives the call and is `info_len` bytes long.
    let rc = unsafe {
        libc::syscall(
            libc::SYS_bpf,
            bpf_cmd::BPF_OBJ_GET_INFO_BY_FD as libc::c_long,
            std::ptr::addr_of_mut!(attr),
            std::mem::size_of::<bpf_attr>(),
        )
    };
    (rc == 0).then_some(info)
}

/// Loads and attaches one full-tier candidate.
fn attach_candidate(ebpf: &mut Ebpf, btf: &aya::Btf, c: &Candidate) -> Result<(), AttachError> {
    let prog = ebpf
        .program_mut(c.program)
        .ok_or_else(|| AttachError::NoProgram(c.program.into()))?;
    let gist = |e: aya::programs::ProgramError| {
        if e.to_string().contains("Operation not permitted") {
            AttachError::Refused
        } else {
            AttachError::Program(verifier_summary(&e))
        }
    };
    match c.hook {
        Hook::FEntry => {
            let p: &mut aya::programs::FEntry = prog.try_into().map_err(gist)?;
            p.load(c.func, btf).map_err(gist)?;
            p.attach().map(|_| ()).map_err(gist)
        }
        Hook::FExit => {
            let p: &mut aya::programs::FExit = prog.try_into().map_err(gist)?;
            p.load(c.func, btf).map_err(gist)?;
            p.attach().map(|_| ()).map_err(gist)
        }
    }
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

#[cfg(test)]
mod tests {
    use super::*;

    /// The planner names BPF programs by string (the candidate table, the rescue chains, the
    /// write-out and timing programs); every name must be a program of the object this build
    /// embeds, or a feed would fail to attach at run time with "program missing".
    /// The BPF programs index `CHAIN`, `DELIVERED` and the rescued counters by the `rescue`
    /// constants; the planner finds a feed's slot through `rescue::FEEDS`. They must agree, and
    /// every feed must have its own name (the plan's and the counters' key).
    #[test]
    fn feeds_have_distinct_names_and_the_rescue_slots_their_constants() {
        use swapscope_common::rescue;
        for (slot, feed) in [
            (rescue::WRITEOUT, Feed::Writeout),
            (rescue::ALLOC, Feed::Alloc),
            (rescue::ALLOC_SHMEM, Feed::AllocShmem),
            (rescue::SWAPIN, Feed::Swapin),
            (rescue::SPLIT, Feed::Split),
            (rescue::ALLOC_TIMING, Feed::AllocTiming),
            (rescue::GRANT_REFUSAL, Feed::GrantRefusal),
            (rescue::WRITE_IO, Feed::WriteIo),
        ] {
            assert_eq!(feed.rescue_slot(), Some(slot), "{feed}");
        }
        let names: std::collections::BTreeSet<&str> =
            Feed::ALL.iter().map(|f| f.as_str()).collect();
        assert_eq!(names.len(), Feed::ALL.len());
        let rescued = Feed::ALL
            .iter()
            .filter(|f| f.rescue_slot().is_some())
            .count();
        assert_eq!(rescued, rescue::NR as usize);
    }

    /// The in-lock refusal program hands its refusals over to the charge hook's program, which
    /// takes its marks back: alone it would report them with nothing to stop a second report
    /// missing, so the planner wants it only beside that program.
    #[test]
    fn refusals_in_the_lock_are_wanted_only_beside_the_charge_hook() {
        let Some(c) = CANDIDATES
            .iter()
            .find(|c| c.feeds == Feed::GrantRefusalLocked)
        else {
            panic!("no candidate feeds {}", Feed::GrantRefusalLocked);
        };
        let fed = [Feed::Alloc, Feed::Grant];
        let alone = ["req_folio_alloc_swap", "grant_cache_add"];
        assert!(not_needed(c, &fed, &alone).is_some());
        let fed = [Feed::Alloc, Feed::Grant, Feed::GrantRefusal];
        let beside = [
            "req_folio_alloc_swap",
            "grant_cache_add",
            "grant_charge_refused",
        ];
        assert_eq!(not_needed(c, &fed, &beside), None);
        let fed = [
            Feed::Alloc,
            Feed::Grant,
            Feed::GrantRefusal,
            Feed::GrantRefusalLocked,
        ];
        assert!(not_needed(c, &fed, &beside).is_some());
    }

    #[test]
    fn only_4k_page_kernels_are_probed() {
        assert!(check_page_size(4096, 512).is_ok());
        for (page, slots) in [(16384, 2048), (65536, 8192)] {
            let e = check_page_size(page, slots)
                .err()
                .map(|e| e.to_string())
                .unwrap_or_default();
            assert!(
                e.contains(&format!("{} KiB pages", page / 1024))
                    && e.contains(&format!("clusters of {slots} slots")),
                "{page}/{slots}: {e}"
            );
        }
    }

    #[test]
    fn every_program_the_planner_names_is_in_the_bpf_object() {
        if BPF_OBJECT.is_empty() {
            assert!(
                std::env::var_os("AYA_BUILD_SKIP").is_some(),
                "the BPF object is empty though AYA_BUILD_SKIP is not set"
            );
            return;
        }
        let obj = match aya_obj::Object::parse(BPF_OBJECT) {
            Ok(o) => o,
            Err(e) => panic!("parsing the BPF object: {e}"),
        };
        let mut names: Vec<&str> = vec![WRITEOUT_TP, REQ_START];
        names.extend(CANDIDATES.iter().map(|c| c.program));
        names.extend(
            RESCUE_PROGRAMS
                .iter()
                .flat_map(|(p, twins)| std::iter::once(*p).chain(twins.iter().copied())),
        );
        let missing: Vec<&str> = names
            .into_iter()
            .filter(|n| !obj.programs.contains_key(*n))
            .collect();
        assert!(missing.is_empty(), "not in the BPF object: {missing:?}");
        // Every program with rescue twins has exactly the chain `level` expects.
        for (p, twins) in RESCUE_PROGRAMS {
            assert_eq!(twins.len(), 2, "{p}");
        }
    }
}
