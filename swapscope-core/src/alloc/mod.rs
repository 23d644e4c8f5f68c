//! The allocator-model contract: every shadow allocator (the kernel's own per version, and the
//! alternatives discussed upstream) implements [`AllocatorModel`]. The engine drives models only
//! through this trait, so adding a model never touches the engine.
//!
//! Models are pure and deterministic: no syscalls, no clocks, no randomness they do not own.

use crate::event::SwapOn;

pub mod frag;

/// Slots per cluster (`SWAPFILE_CLUSTER` = `HPAGE_PMD_NR` on x86-64 with THP_SWAP).
pub const CLUSTER_SLOTS: u64 = 512;
/// Largest folio order a swap entry can hold (PMD order on x86-64, 4 KiB pages).
pub const MAX_ORDER: u8 = 9;
/// Number of orders, 0..=MAX_ORDER (`SWAP_NR_ORDERS`).
pub const NR_ORDERS: usize = MAX_ORDER as usize + 1;

/// A run of contiguous slots on one device, in the model's own slot space.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Extent {
    pub swap_type: u8,
    pub offset: u64,
    pub nr: u32,
}

/// What a model handed out for one request: one extent for contiguous allocators, several for
/// allocators that back a large folio with discontiguous slots. The extents together cover
/// exactly 2^order slots, in folio page order.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Allocation {
    pub extents: Vec<Extent>,
}

impl Allocation {
    pub fn contiguous(swap_type: u8, offset: u64, nr: u32) -> Self {
        Allocation {
            extents: vec![Extent {
                swap_type,
                offset,
                nr,
            }],
        }
    }

    /// Total slots covered.
    pub fn slots(&self) -> u64 {
        self.extents.iter().map(|e| u64::from(e.nr)).sum()
    }
}

/// Cluster counts by list/state, summed over a model's devices.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct ClusterCounts {
    pub free: u64,
    pub nonfull: u64,
    pub frag: u64,
    pub full: u64,
    /// Off-list or on the discard list (models that have such states).
    pub other: u64,
}

impl ClusterCounts {
    /// Counts one cluster in the state `l` (`discard` counts as `other`; `partial` as
    /// `nonfull`).
    pub fn add(&mut self, l: ClusterList) {
        match l {
            ClusterList::Free => self.free += 1,
            ClusterList::Nonfull | ClusterList::Partial => self.nonfull += 1,
            ClusterList::Frag => self.frag += 1,
            ClusterList::Full => self.full += 1,
            ClusterList::Discard | ClusterList::Other => self.other += 1,
        }
    }
}

/// The list a cluster is on, or the state it is in, for the device map.
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize,
)]
#[serde(rename_all = "lowercase")]
pub enum ClusterList {
    /// No slot in use.
    #[default]
    Free,
    /// Partly used and can still serve its order (the kernel's `nonfull_clusters[order]`).
    Nonfull,
    /// Partly used and refused a request of its order (`frag_clusters[order]`).
    Frag,
    /// Every slot in use.
    Full,
    /// Freed, waiting for its discard (`discard_clusters`).
    Discard,
    /// Partly used on a list the stream does not show (the real occupancy: the tracepoint and
    /// request hooks do not see cluster list moves).
    Partial,
    /// Off every list, or a model-specific state (e.g. a class reservation).
    Other,
}

impl ClusterList {
    pub fn as_str(self) -> &'static str {
        match self {
            ClusterList::Free => "free",
            ClusterList::Nonfull => "nonfull",
            ClusterList::Frag => "frag",
            ClusterList::Full => "full",
            ClusterList::Discard => "discard",
            ClusterList::Partial => "partial",
            ClusterList::Other => "other",
        }
    }
}

/// One cluster of a device map.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ClusterCell {
    /// Slots in use (the kernel's `ci->count`, header and bad slots included).
    pub used: u16,
    /// The order the cluster serves (kernel models), or of its last allocation (real), when
    /// there is one.
    pub order: Option<u8>,
    pub list: ClusterList,
    /// Slot (within the cluster) of the latest allocation in it, where known (real occupancy).
    pub last: Option<u16>,
}

/// A point-in-time summary of a model's occupancy.
#[derive(Clone, Debug, Default, PartialEq, serde::Serialize)]
pub struct ModelSnapshot {
    /// Usable slots (excluding header and bad slots) over all devices.
    pub total_slots: u64,
    pub used_slots: u64,
    pub clusters: ClusterCounts,
    /// Longest run of free slots starting at an offset aligned to its own power-of-two size.
    pub largest_free_run: u64,
    /// For each order k: share of free slots that are not inside a free, naturally aligned
    /// 2^k-slot block (0.0 = every free slot usable for order k, 1.0 = none).
    pub fragmentation_by_order: [f64; NR_ORDERS],
    /// Bookkeeping a real kernel would need beyond the swap_map byte per slot (e.g. indirection
    /// arrays of discontiguous large entries), in bytes.
    pub metadata_bytes: u64,
}

/// The CPUs of one request: the one its task entered the allocator on, whose per-CPU caches of
/// that moment it used (6.12's order-0 slot cache, chosen with `raw_cpu_ptr` before a mutex the
/// task may sleep on), and the one that decided it, whose per-CPU cluster it used (under a
/// lock that pins the CPU). The same CPU unless the task migrated in between.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Cpus {
    pub entry: u32,
    pub decided: u32,
}

impl Cpus {
    /// A request entered and decided on `cpu`.
    pub fn on(cpu: u32) -> Self {
        Cpus {
            entry: cpu,
            decided: cpu,
        }
    }
}

/// One swap-slot request made while serving a folio (see [`serve_folio`]).
#[derive(Clone, Copy, Debug)]
pub struct Request<'a> {
    /// Order of this request: the folio's own, or 0 for the pages of a split folio.
    pub order: u8,
    /// The folio page this request starts at (0 for the whole folio).
    pub page: u64,
    /// The model's slots, in page order, or `None` when it refused.
    pub extents: Option<&'a [Extent]>,
}

impl Request<'_> {
    pub fn ok(&self) -> bool {
        self.extents.is_some()
    }
}

/// The kernel's swap-out of one folio, against a model: ask for 2^`order` slots; when that is
/// refused and `order > 0`, split the folio (`swpout_fallback`, `split_folio` in
/// `shrink_folio_list`) and ask for one order-0 slot per page. `on` sees every request in that
/// order with the model's answer. Returns whether the whole folio was served at its order.
///
/// This is the one definition of the fallback step: the engine's shadows and the benchmark's
/// kernel-result streams both go through it.
pub fn serve_folio<M: AllocatorModel + ?Sized>(
    model: &mut M,
    cpus: Cpus,
    order: u8,
    scratch: &mut Vec<Extent>,
    mut on: impl FnMut(Request<'_>),
) -> bool {
    scratch.clear();
    let ok = model.alloc_from(cpus, order, scratch);
    on(Request {
        order,
        page: 0,
        extents: ok.then_some(scratch.as_slice()),
    });
    if ok || order == 0 {
        return ok;
    }
    for page in 0..1u64 << order.min(MAX_ORDER) {
        scratch.clear();
        let ok = model.alloc_from(cpus, 0, scratch);
        on(Request {
            order: 0,
            page,
            extents: ok.then_some(scratch.as_slice()),
        });
    }
    false
}

/// A shadow swap-slot allocator.
pub trait AllocatorModel: Send {
    /// Stable name used in reports and `--models` (e.g. `linux-6.18`, `buddy`).
    fn name(&self) -> &'static str;

    /// A device became usable (swapon). Slot 0 (the header) and `dev.bad` are never allocated;
    /// slots past `dev.max` in the last cluster count as used, as in the kernel.
    fn swapon(&mut self, dev: &SwapOn);

    /// A device went away; the model forgets it. Any slots still allocated on it are dropped.
    fn swapoff(&mut self, swap_type: u8);

    /// The number of online CPUs of the host the stream comes from (`num_online_cpus()`), when
    /// known, before any event: for models whose policy depends on it (6.12's slot-cache
    /// thresholds). Others ignore it.
    fn set_online_cpus(&mut self, _n: u32) {}

    /// Allocate 2^`order` slots for a folio on `cpu`. `None` means the model cannot serve this
    /// order now; the engine then counts a fallback and requests 2^order order-0 slots, as the
    /// kernel does after splitting the folio (`swpout_fallback`).
    fn alloc(&mut self, cpu: u32, order: u8) -> Option<Allocation>;

    /// [`alloc`](Self::alloc) without a heap allocation per call: appends the extents to `out`
    /// (which the caller has cleared) and returns whether the request was served. The engine
    /// calls this; models on a hot path override it, the default forwards to `alloc`.
    fn alloc_into(&mut self, cpu: u32, order: u8, out: &mut Vec<Extent>) -> bool {
        match self.alloc(cpu, order) {
            Some(a) => {
                out.extend_from_slice(&a.extents);
                true
            }
            None => false,
        }
    }

    /// [`alloc_into`](Self::alloc_into) for a request whose task entered the allocator on
    /// another CPU than the one that decided it (see [`Cpus`]); models without per-CPU caches of
    /// the entry moment serve it on the deciding CPU.
    fn alloc_from(&mut self, cpus: Cpus, order: u8, out: &mut Vec<Extent>) -> bool {
        self.alloc_into(cpus.decided, order, out)
    }

    /// Give back `nr` slots from `offset` on `swap_type` (model slot space). Frees may cover part
    /// of an earlier allocation (a large folio freed piecewise) and never span two allocations'
    /// clusters in a way the allocator did not hand out. Like the kernel's batched frees, one
    /// call may cover slots of several adjacent allocations, but it never crosses a
    /// [`CLUSTER_SLOTS`]-aligned boundary. Slots that are not allocated are ignored.
    fn free(&mut self, swap_type: u8, offset: u64, nr: u32);

    /// The kernel's allocator on `cpu` took `cluster` of device `swap_type` off its lists
    /// (`isolate_lock_cluster`, full tier 6.14+), as the stream shows it, before the grant or
    /// request that follows on that CPU. A model of that kernel may follow it where the kernel
    /// did what no rule predicts (a `trylock` that failed on a cluster another CPU held, so the
    /// next one was taken); the others ignore it.
    fn kernel_isolated(&mut self, _cpu: u32, _swap_type: u8, _cluster: u32) {}

    /// The kernel answered the request this model has just answered (`ours`: the model's first
    /// slot, `None` when it refused) with `kernel` (`None`: the kernel refused it), and the two
    /// differ: the model takes the kernel's answer as its own — its slots, and the per-CPU
    /// state the kernel's answer implies — so that one request decided otherwise (a race the
    /// stream could not order) does not send the rest of the run elsewhere. The engine asks this
    /// only of the model of the recorded kernel. Returns false when the model cannot (it does
    /// not share the kernel's slot space); it is then left as it is.
    fn follow_kernel(
        &mut self,
        _cpus: Cpus,
        _order: u8,
        _ours: Option<(u8, u64)>,
        _kernel: Option<(u8, u64)>,
    ) -> bool {
        false
    }

    /// The kernel refilled the slot cache of `cpus.entry` with `slots` of device `swap_type`, in
    /// hand-out order (6.12's batch, seen at its grant, just before the request it serves first
    /// is answered). A model with such caches fills its own by its rule — its answers, still
    /// compared one by one as the requests come — and then holds the kernel's slots instead, so
    /// that its state follows the kernel's. Asked only of the model of the recorded kernel, as
    /// [`follow_kernel`](Self::follow_kernel) is; the others ignore it. Returns whether the
    /// model's batch differed (a correction).
    fn kernel_batch(&mut self, _cpus: Cpus, _swap_type: u8, _slots: &[u64]) -> bool {
        false
    }

    /// The request about to be answered began before the last `earlier` requests of its order
    /// that were decided on its CPU (`cpus.decided`; a task preempted inside the allocator), and
    /// the kernel answered it with `kernel`. A model whose per-CPU state those requests moved
    /// may find, from the kernel's answer, that the request read that state before them, and
    /// put back what it read for this request: of the two orders the stream cannot tell apart,
    /// the one that explains the kernel's answer. Asked only of the model of the recorded
    /// kernel, as [`follow_kernel`](Self::follow_kernel) is, before it answers; the others are
    /// fed the stream's order. Returns whether it put anything back.
    fn interleaved(&mut self, _cpus: Cpus, _order: u8, _earlier: u32, _kernel: (u8, u64)) -> bool {
        false
    }

    /// Hides the free slots among `nr` from `offset` on `swap_type` (the kernel's slot space)
    /// from the decisions made until [`unhide`](Self::unhide): the kernel's allocator decided
    /// before another CPU freed them, although the stream has the free first (see
    /// `engine/concurrent.rs`). Slots of a cluster the free emptied are left alone. Asked only of
    /// the model of the recorded kernel, as [`follow_kernel`](Self::follow_kernel) is; the
    /// others ignore it.
    fn hide_free(&mut self, _swap_type: u8, _offset: u64, _nr: u32) {}

    /// As [`hide_free`](Self::hide_free), only where the free emptied its cluster (it is on the
    /// free list): a 6.12 refill that did not take a cluster another CPU emptied meanwhile, where
    /// its scan takes a free cluster before any other.
    fn hide_free_if_emptied(&mut self, _swap_type: u8, _offset: u64, _nr: u32) {}

    /// Gives back what [`hide_free`](Self::hide_free) hid. The frees already moved their
    /// clusters when the stream had them, so the slots come back without list moves; a cluster
    /// the decision moved goes to the list the kernel has it on now, `kernel_list(type, cluster)`
    /// (a `cluster_list` code and the order it serves, from the stream's cluster events).
    fn unhide(&mut self, _kernel_list: &dyn Fn(u8, u32) -> Option<(u8, u8)>) {}

    /// Isolations the model took from [`kernel_isolated`](Self::kernel_isolated) where its own
    /// rule would have taken another cluster (the kernel skipped a contended one); `None` for
    /// models that do not follow them.
    fn steered_isolations(&self) -> Option<u64> {
        None
    }

    /// Whether the model wants [`writeout`](Self::writeout) calls (the engine skips the slot
    /// lookup for models that do not).
    fn wants_writeouts(&self) -> bool {
        false
    }

    /// The folio holding `nr` slots from `offset` on `swap_type` (model slot space, as this
    /// model handed them out) was written out. Called once per mapped run of the write-out, only
    /// when [`wants_writeouts`](Self::wants_writeouts) says so; streams without write-out events
    /// (simulated ones) never call it.
    fn writeout(&mut self, _swap_type: u8, _offset: u64, _nr: u32) {}

    /// Whether the slots this model hands out are virtual (not places on the device), so that
    /// comparing them with the kernel's slot says nothing (no same-slot fidelity).
    fn virtual_slots(&self) -> bool {
        false
    }

    /// Share of large-folio write-outs whose physical slots are one contiguous run, for models
    /// that place physical slots apart from the request (`vswap`); `None` for the others and
    /// before the first.
    fn physical_contiguity(&self) -> Option<f64> {
        None
    }

    /// Current occupancy summary.
    fn snapshot(&self) -> ModelSnapshot;

    /// The device map of `swap_type`: one cell per cluster, in cluster order, appended to `out`
    /// (which the caller has cleared). Returns false when the model has no such device.
    fn cluster_map(&self, swap_type: u8, out: &mut Vec<ClusterCell>) -> bool;
}
