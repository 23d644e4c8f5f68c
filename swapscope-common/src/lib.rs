//! Event types shared by the BPF programs (`swapscope-ebpf`) and userspace (`swapscope`).
//!
//! Every type here is `#[repr(C)]` with explicit padding and a compile-time size check, so the
//! bytes a BPF program writes into the ring buffer are the bytes userspace reads and records.
//! Changing a layout is a schema change: bump [`SCHEMA_VERSION`] and add a record kind rather than
//! reinterpret an old one.
#![no_std]

/// Version of the BPF event layouts below.
pub const SCHEMA_VERSION: u16 = 4;

/// Kinds of BPF events. The first field of every BPF event is an [`EventHeader`] naming its kind.
pub mod kind {
    /// [`crate::WriteoutEvent`]: a swap-backed folio written out by reclaim.
    pub const WRITEOUT: u16 = 1;
    /// [`crate::AllocEvent`]: the result of one swap-slot request for a folio (full tier).
    pub const ALLOC: u16 = 2;
    /// [`crate::FreeEvent`]: slots returned to the allocator (full tier).
    pub const FREE: u16 = 3;
    /// [`crate::SplitEvent`]: a large folio about to be split (full tier).
    pub const SPLIT: u16 = 4;
    /// [`crate::SwapInEvent`]: a folio about to be read back from swap (full tier).
    pub const SWAPIN: u16 = 5;
    /// [`crate::ClusterEvent`]: a swap cluster moved between the allocator's lists (full tier).
    pub const CLUSTER: u16 = 6;
    /// [`crate::GrantEvent`]: slots handed out, seen inside the lock that orders the
    /// allocator's decisions (full tier, schema 4).
    pub const GRANT: u16 = 7;
}

/// Cluster lists as swapscope numbers them (the kernel's `enum swap_cluster_flags` values are
/// read from BTF and translated by the programs through [`KernelLayout::cluster_codes`]).
pub mod cluster_list {
    /// Off every list: taken by an allocator (`isolate_lock_cluster`) or being discarded.
    pub const ISOLATED: u8 = 0;
    pub const FREE: u8 = 1;
    pub const NONFULL: u8 = 2;
    pub const FRAG: u8 = 3;
    pub const FULL: u8 = 4;
    pub const DISCARD: u8 = 5;
    /// A flag value the loader could not name.
    pub const UNKNOWN: u8 = 0xff;
}

/// Common prefix of every event a BPF program emits.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct EventHeader {
    /// One of [`kind`].
    pub kind: u16,
    /// Size of the whole event in bytes, header included.
    pub size: u16,
    /// CPU the program ran on.
    pub cpu: u32,
    /// `bpf_ktime_get_boot_ns()` at the event.
    pub ts_ns: u64,
}
const _: () = assert!(core::mem::size_of::<EventHeader>() == 16);

/// Folio flags of interest, as swapscope's own bits (not the kernel's `pageflags` numbers, which
/// differ between kernels and are read from BTF at start).
pub mod folio_flags {
    /// PG_head: a large folio.
    pub const HEAD: u32 = 1 << 0;
    /// PG_swapbacked: anonymous or shmem.
    pub const SWAPBACKED: u32 = 1 << 1;
    /// PG_swapcache: in the swap cache, `folio->swap` is valid.
    pub const SWAPCACHE: u32 = 1 << 2;
    /// PG_dirty.
    pub const DIRTY: u32 = 1 << 3;
    /// PG_writeback.
    pub const WRITEBACK: u32 = 1 << 4;
    /// `folio->mapping` has PAGE_MAPPING_ANON set (anonymous rather than shmem).
    pub const ANON: u32 = 1 << 5;
    /// A write-out whose folio another CPU faulted back in and took out of the swap cache before
    /// the tracepoint ran (PG_swapcache clear, `folio->swap` gone, the folio mapped again):
    /// written, its slot unknown (entry 0).
    pub const NO_SLOT: u32 = 1 << 6;
}

/// A swap-backed folio that reclaim wrote out (`vmscan:mm_vmscan_write_folio`), with the swap
/// entry it holds.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct WriteoutEvent {
    pub header: EventHeader,
    /// Raw `folio->swap.val`: swap type and offset, decoded in userspace with the architecture's
    /// `SWP_TYPE_SHIFT` (recorded in the file header).
    pub swap_val: u64,
    /// `bpf_get_current_pid_tgid()`: the reclaiming task (kswapd or a direct reclaimer).
    pub pid_tgid: u64,
    /// Page frame number of the folio's head page, or [`PFN_UNKNOWN`].
    pub pfn: u64,
    /// [`folio_flags`] bits.
    pub flags: u32,
    /// Folio order (0 for a small folio).
    pub order: u8,
    pub _pad: [u8; 3],
}
const _: () = assert!(core::mem::size_of::<WriteoutEvent>() == 48);

/// A swap-slot request for a folio and the kernel's answer (fexit of `folio_alloc_swap` on 6.17+,
/// `add_to_swap` before). The header's CPU is the one the request's task entered the allocation
/// hook on (schema 4), or the one at its exit when the entry was not seen.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct AllocEvent {
    pub header: EventHeader,
    /// The folio, as an opaque per-session id (its address mixed with a random key), to match a
    /// request with the split that follows a failure.
    pub folio_id: u64,
    /// Raw `folio->swap.val` after the call (0 on failure).
    pub swap_val: u64,
    pub pid_tgid: u64,
    /// 1 if the kernel allocated slots, 0 if not.
    pub success: u8,
    /// Folio order (0 for a small folio).
    pub order: u8,
    pub _pad: [u8; 2],
    /// Time from the entry of the allocation hook to its exit in this task, in ns (saturated),
    /// or 0 when the entry was not seen (recorded as `alloc-timed` records, format 1.1).
    pub latency_ns: u32,
}
const _: () = assert!(core::mem::size_of::<AllocEvent>() == 48);

/// Slots returned to the allocator: `nr` slots from `offset` on device `swap_type`.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct FreeEvent {
    pub header: EventHeader,
    pub offset: u64,
    /// `si->inuse_pages` when the hook ran (before the free), for the completeness check.
    pub inuse: u64,
    pub nr: u32,
    pub swap_type: u8,
    pub _pad: [u8; 3],
}
const _: () = assert!(core::mem::size_of::<FreeEvent>() == 40);

/// A large folio about to be split.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SplitEvent {
    pub header: EventHeader,
    /// Same id space as [`AllocEvent::folio_id`].
    pub folio_id: u64,
    pub pid_tgid: u64,
    /// Order before the split, or [`ORDER_UNKNOWN`] when the hook sees only a `struct page`.
    pub old_order: u8,
    pub new_order: u8,
    pub _pad: [u8; 6],
}
const _: () = assert!(core::mem::size_of::<SplitEvent>() == 40);

/// A folio about to be read back from swap (`swap_read_folio`; 6.1: `swap_readpage`): which
/// slots come back, as what folio order, for which task. Fires for every read, whatever serves
/// it (the device, zswap, the zero map), and not for swap-cache hits, which read nothing.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SwapInEvent {
    pub header: EventHeader,
    /// Raw `folio->swap.val`: the first slot (the folio covers 2^order slots from it).
    pub swap_val: u64,
    /// `bpf_get_current_pid_tgid()`: the faulting task, or the one reading ahead.
    pub pid_tgid: u64,
    /// Same id space as [`AllocEvent::folio_id`].
    pub folio_id: u64,
    /// [`folio_flags`] bits (`SWAPCACHE` clear: a read that bypasses the swap cache).
    pub flags: u32,
    /// Folio order, or [`ORDER_UNKNOWN`] when the hook sees only a `struct page` of a large one.
    pub order: u8,
    pub _pad: [u8; 3],
}
const _: () = assert!(core::mem::size_of::<SwapInEvent>() == 48);

/// A swap cluster put on one of the allocator's lists (`move_cluster`, 6.14+) or taken off them
/// by an allocator (`isolate_lock_cluster`).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ClusterEvent {
    pub header: EventHeader,
    /// Cluster index on the device (its first slot is `cluster * 512`).
    pub cluster: u32,
    /// `ci->count`: slots in use in the cluster when the hook ran.
    pub count: u16,
    pub swap_type: u8,
    /// The list it goes to, as a [`cluster_list`] code.
    pub list: u8,
    /// The list it was on before (`ci->flags` at the hook), as a [`cluster_list`] code; for an
    /// isolation, the list it was taken from is not read ([`cluster_list::UNKNOWN`]).
    pub old_list: u8,
    /// `ci->order`: the order a nonfull/frag cluster serves (its list index).
    pub order: u8,
    pub _pad: [u8; 6],
}
const _: () = assert!(core::mem::size_of::<ClusterEvent>() == 32);

/// Slots handed out by the allocator, emitted *inside* the critical section that orders its
/// decisions, so that the ring buffer (whose reservations are totally ordered) receives grants in
/// the order the kernel made them: 7.x `__swap_cache_add_folio` under the cluster lock (one
/// folio), 6.12 `scan_swap_map_slots` under `si->lock` (one batch: a large folio, or up to 64
/// order-0 slots refilling a CPU's slot cache). The request event at the hook's exit says whether
/// the request as a whole succeeded; this one says when and where the allocator decided.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct GrantEvent {
    pub header: EventHeader,
    /// Same id space as [`AllocEvent::folio_id`]; 0 when the hook sees no folio (6.12).
    pub folio_id: u64,
    /// Raw swap entry of the first slot granted.
    pub swap_val: u64,
    /// `bpf_get_current_pid_tgid()`: the task whose request this is.
    pub pid_tgid: u64,
    /// Allocations of 2^order slots made in this critical section (1 for a folio; 6.12's batch
    /// refill of the slot cache: up to 64); 0: the allocator refused a single allocation of
    /// that order here (`swap_val` 0).
    pub nr: u16,
    pub order: u8,
    pub _pad: u8,
    /// The CPU the request's task entered the allocator on (6.12: whose slot cache a batch
    /// refills), or [`CPU_UNKNOWN`]; the header's CPU is the one that decided (whose per-CPU
    /// cluster was used).
    pub req_cpu: u32,
    /// `bpf_ktime_get_boot_ns()` when the request's task entered the allocator, 0 when not
    /// known: a batch (6.12) may take its slots anywhere between then and this event, since
    /// the scan drops `si->lock` to reclaim swap cache.
    pub start_ns: u64,
}
const _: () = assert!(core::mem::size_of::<GrantEvent>() == 56);

/// The most slots one grant lists: 6.12's `SWAP_SLOTS_CACHE_SIZE`, the batch a CPU's slot cache
/// is refilled with.
pub const GRANT_BATCH_MAX: usize = 64;

/// A [`GrantEvent`] of 6.12's batch refill (`nr` ≥ 2) with the batch itself: the raw swap
/// entries in the order the allocator took them, which is the order the CPU's slot cache hands
/// them out. Kind [`kind::GRANT`]; `grant.header.size` is this struct's size. Emitted by the
/// batch variant of the 6.12 grant program, which reads the kernel's array with
/// `bpf_probe_read_kernel` (refused under lockdown=confidentiality, where the plain variant
/// attaches and grants carry the first slot only).
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct GrantBatchEvent {
    pub grant: GrantEvent,
    /// `slots[..grant.nr]` are valid.
    pub slots: [u64; GRANT_BATCH_MAX],
}
const _: () = assert!(core::mem::size_of::<GrantBatchEvent>() == 56 + 8 * GRANT_BATCH_MAX);

/// Feeds whose programs sit on hooks that run with preemption enabled, and so have rescue
/// twins: a task preempted inside a program makes the kernel skip that program for every other
/// task entering it on that CPU (`recursion_misses`); the twins, more programs on the same hook,
/// deliver those invocations. Each index names a feed's entries in the `CHAIN` map (how many of
/// its programs are attached) and `DELIVERED` map (per task, the invocation last delivered), and
/// its counter from [`counter::RESCUED`].
pub mod rescue {
    pub const WRITEOUT: u32 = 0;
    pub const ALLOC: u32 = 1;
    pub const ALLOC_SHMEM: u32 = 2;
    pub const SWAPIN: u32 = 3;
    pub const SPLIT: u32 = 4;
    pub const ALLOC_TIMING: u32 = 5;
    pub const GRANT_REFUSAL: u32 = 6;
    pub const WRITE_IO: u32 = 7;
    /// Number of rescued feeds.
    pub const NR: u32 = 8;
    /// The feed each slot serves.
    pub const FEEDS: [super::Feed; NR as usize] = [
        super::Feed::Writeout,
        super::Feed::Alloc,
        super::Feed::AllocShmem,
        super::Feed::Swapin,
        super::Feed::Split,
        super::Feed::AllocTiming,
        super::Feed::GrantRefusal,
        super::Feed::WriteIo,
    ];
}

/// What a BPF program feeds the stream: the probe planner's unit (one attached program, or a
/// chain of it and its rescue twins, per feed) and the name the probe plan, `doctor` and the
/// `probe/<feed>/...` counters spell.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Feed {
    /// Write-outs (`mm_vmscan_write_folio`; the tracepoint tier).
    Writeout,
    /// The device write itself (`__swap_writepage`; full tier): emits nothing, tells the
    /// write-out program that a folio gone from the swap cache by its tracepoint was written.
    WriteIo,
    /// Swap-slot requests and their answers.
    Alloc,
    /// shmem's requests where the request hook does not see them (`add_to_swap` kernels).
    AllocShmem,
    /// The entry of the request hook, for each request's latency.
    AllocTiming,
    /// Slots granted inside the allocator's lock (the kernel's order of decisions).
    Grant,
    /// Requests refused beside 7.x's grants.
    GrantRefusal,
    /// 7.x: large folios' refusals inside the allocator's lock, ahead of [`Feed::GrantRefusal`].
    GrantRefusalLocked,
    /// Slots given back.
    Free,
    /// Whole-cluster frees of a THP where the free hook does not see them.
    FreeThp,
    /// Large folios about to be split.
    Split,
    /// Folios read back from swap.
    Swapin,
    /// Cluster list moves.
    Cluster,
    /// Clusters isolated from their list (6.14+).
    ClusterIsolate,
}

impl Feed {
    /// Every feed.
    pub const ALL: [Feed; 14] = [
        Feed::Writeout,
        Feed::WriteIo,
        Feed::Alloc,
        Feed::AllocShmem,
        Feed::AllocTiming,
        Feed::Grant,
        Feed::GrantRefusal,
        Feed::GrantRefusalLocked,
        Feed::Free,
        Feed::FreeThp,
        Feed::Split,
        Feed::Swapin,
        Feed::Cluster,
        Feed::ClusterIsolate,
    ];

    /// The name the plan and the counters spell.
    pub const fn as_str(self) -> &'static str {
        match self {
            Feed::Writeout => "writeout",
            Feed::WriteIo => "write-io",
            Feed::Alloc => "alloc",
            Feed::AllocShmem => "alloc-shmem",
            Feed::AllocTiming => "alloc-timing",
            Feed::Grant => "grant",
            Feed::GrantRefusal => "grant-refusal",
            Feed::GrantRefusalLocked => "grant-refusal-lock",
            Feed::Free => "free",
            Feed::FreeThp => "free-thp",
            Feed::Split => "split",
            Feed::Swapin => "swapin",
            Feed::Cluster => "cluster",
            Feed::ClusterIsolate => "cluster-isolate",
        }
    }

    /// The feed's rescue slot (see [`rescue`]), if its programs have rescue twins.
    pub fn rescue_slot(self) -> Option<u32> {
        rescue::FEEDS
            .iter()
            .position(|f| *f == self)
            .and_then(|i| u32::try_from(i).ok())
    }
}

impl core::fmt::Display for Feed {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A CPU number the program could not tell.
pub const CPU_UNKNOWN: u32 = u32::MAX;

/// `SplitEvent::old_order` when the hook cannot tell.
pub const ORDER_UNKNOWN: u8 = 0xff;

/// `pfn` value when the program could not compute it.
pub const PFN_UNKNOWN: u64 = u64::MAX;

/// Index of the per-CPU counters in the `COUNTERS` map.
pub mod counter {
    /// Events the ring buffer had no room for.
    pub const RINGBUF_DROPS: u32 = 0;
    /// Tracepoint hits, before filtering.
    pub const HITS: u32 = 1;
    /// Hits filtered out (not a swap-backed folio, or in the swap cache without an entry).
    pub const FILTERED: u32 = 2;
    /// Records submitted to the ring buffer (the programs look at its fill level every 16th).
    pub const SUBMITTED: u32 = 3;
    /// First of [`crate::rescue::NR`] counters: invocations each feed's rescue twins delivered
    /// (the program of its chain that runs first was skipped because another task was inside
    /// it on that CPU).
    pub const RESCUED: u32 = 4;
    /// 7.x: large folios' refusals reported inside the allocator's lock (the rest of the
    /// refusals come from the charge hook, after it).
    pub const REFUSED_IN_LOCK: u32 = RESCUED + crate::rescue::NR;
    /// Full tier: write-outs of folios that were out of the swap cache and unmapped by the
    /// tracepoint, known written from `__swap_writepage` ([`crate::Feed::WriteIo`]).
    pub const WRITTEN_GONE: u32 = REFUSED_IN_LOCK + 1;
    /// Number of counters.
    pub const NR: u32 = WRITTEN_GONE + 1;
}

/// Kernel layout facts the loader reads from the running kernel's BTF and writes into the BPF
/// object's `.rodata` before load (Rust eBPF has no CO-RE). Offsets are in bytes from the start of
/// `struct folio`; bits are `enum pageflags` values.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct KernelLayout {
    pub folio_flags_off: u32,
    pub folio_flags1_off: u32,
    pub folio_swap_off: u32,
    pub folio_mapping_off: u32,
    pub pg_head: u32,
    pub pg_swapbacked: u32,
    pub pg_swapcache: u32,
    pub pg_dirty: u32,
    pub pg_writeback: u32,
    /// 1 once the loader filled this in; the programs emit nothing while it is 0.
    pub valid: u32,
    /// `struct swap_info_struct`: offsets of `type`, `inuse_pages`, `cluster_info`.
    pub si_type_off: u32,
    pub si_inuse_off: u32,
    pub si_cluster_info_off: u32,
    /// `sizeof(struct swap_cluster_info)` (0 when the kernel has no clusters in BTF).
    pub ci_size: u32,
    /// How to read a large folio's order: 0 = `_flags_1 & 0xff` (6.2+), 1 = the byte at
    /// `folio_flags1_off` (`_folio_order`, 6.1).
    pub order_mode: u32,
    /// `struct swap_cluster_info`: offset of the `u16 count` member (0 when not byte-aligned).
    pub ci_count_off: u32,
    /// Random per-session key mixed into folio ids.
    pub id_key: u64,
    /// `struct swap_cluster_info`: offsets of the `u8 flags` and `u8 order` members.
    pub ci_flags_off: u32,
    pub ci_order_off: u32,
    /// `enum swap_cluster_flags` value (0..8) → [`cluster_list`] code; all
    /// [`cluster_list::UNKNOWN`] when the kernel has no such enum (then the cluster hooks are not
    /// planned).
    pub cluster_codes: [u8; 8],
    /// Possible CPUs (the `REQ_START` map has one entry each).
    pub nr_cpus: u32,
    /// `SWP_TYPE_SHIFT`: the bits of a swap entry's value below its type, which hold the offset
    /// (`BITS_PER_XA_VALUE - MAX_SWAPFILES_SHIFT`: 58 on every 64-bit kernel).
    pub swp_type_shift: u32,
    /// `SWAPFILE_CLUSTER`: slots per swap cluster, a power of two (`HPAGE_PMD_NR` with
    /// `CONFIG_THP_SWAP`: 512 with 4 KiB pages; else 256).
    pub cluster_slots: u32,
    /// Offsets in `struct folio` of `_mapcount` (the first page's) and `_large_mapcount` (6.10+;
    /// 0 when absent): whether a written folio is mapped again (see the write-out program).
    pub folio_mapcount_off: u32,
    pub folio_large_mapcount_off: u32,
    pub _pad: u32,
}
const _: () = assert!(core::mem::size_of::<KernelLayout>() == 112);

#[cfg(feature = "user")]
mod user {
    // SAFETY: plain-old-data: repr(C), only integer fields, explicit padding, no invalid bit patterns.
    unsafe impl aya::Pod for super::KernelLayout {}
    // SAFETY: as above.
    unsafe impl aya::Pod for super::WriteoutEvent {}
    // SAFETY: as above.
    unsafe impl aya::Pod for super::AllocEvent {}
    // SAFETY: as above.
    unsafe impl aya::Pod for super::FreeEvent {}
    // SAFETY: as above.
    unsafe impl aya::Pod for super::SplitEvent {}
    // SAFETY: as above.
    unsafe impl aya::Pod for super::SwapInEvent {}
    // SAFETY: as above.
    unsafe impl aya::Pod for super::ClusterEvent {}
    // SAFETY: as above.
    unsafe impl aya::Pod for super::GrantEvent {}
}
