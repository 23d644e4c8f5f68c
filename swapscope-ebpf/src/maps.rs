//! The maps and globals the programs share with the loader: `LAYOUT` (kernel facts from BTF),
//! the event ring, the counters, scratch space and the per-CPU request start.

use crate::*;

/// Filled in by the loader from BTF (see `swapscope_probe::probe::btf::KernelBtf::kernel_layout`).
#[unsafe(no_mangle)]
pub(crate) static LAYOUT: KernelLayout = KernelLayout {
    folio_flags_off: 0,
    folio_flags1_off: 0,
    folio_swap_off: 0,
    folio_mapping_off: 0,
    pg_head: 0,
    pg_swapbacked: 0,
    pg_swapcache: 0,
    pg_dirty: 0,
    pg_writeback: 0,
    valid: 0,
    si_type_off: 0,
    si_inuse_off: 0,
    si_cluster_info_off: 0,
    ci_size: 0,
    order_mode: 0,
    ci_count_off: 0,
    id_key: 0,
    ci_flags_off: 0,
    ci_order_off: 0,
    cluster_codes: [0xff; 8],
    nr_cpus: 0,
    swp_type_shift: 0,
    cluster_slots: 0,
    folio_mapcount_off: 0,
    folio_large_mapcount_off: 0,
    _pad: 0,
};

/// Ring buffer of events; the loader sets its size (`record --ringbuf-mib`, `LiveOptions::ringbuf_bytes`).
#[map]
pub(crate) static EVENTS: RingBuf = RingBuf::with_byte_size(1 << 22, 0);

/// Per-CPU counters, indexed by `swapscope_common::counter`.
#[map]
pub(crate) static COUNTERS: PerCpuArray<u64> = PerCpuArray::with_max_entries(counter::NR, 0);

/// Per-CPU scratch words. Members such as `folio->swap` share a union with `void *private`, so the
/// verifier types a direct load of them as a pointer and refuses arithmetic on it; a round trip
/// through map memory turns the value into a plain scalar.
#[map]
pub(crate) static SCRATCH: PerCpuArray<[u64; 2]> = PerCpuArray::with_max_entries(1, 0);

/// Per CPU (indexed by CPU number; the loader sizes it to the possible CPUs): which task entered
/// the allocation hook last there, and when (`req_start`). It gives a request its latency and
/// the CPU it entered on — whose per-CPU caches of that moment it used (6.12's slot cache) —
/// also when its task has migrated since: the exit looks for its task's entry on the other
/// CPUs. Written by each CPU in its own entry only. Not a hash map: hash map updates take a
/// bucket lock whose release is a preemption point inside the program (see [`rescue`]). A
/// request interleaved with another on the same CPU finds another task's entry and is reported
/// untimed, at its exit CPU.
#[map]
pub(crate) static REQ_START: Array<[u64; 2]> = Array::with_max_entries(MAX_CPUS, 0);

/// The most CPUs [`REQ_START`] is searched over (the verifier needs a bound).
pub(crate) const MAX_CPUS: u32 = 512;

/// The CPU whose [`REQ_START`] entry holds `task` (this one first), with a pointer to it.
#[inline(always)]
pub(crate) fn entry_of(task: u64) -> Option<(u32, *mut [u64; 2])> {
    // SAFETY: plain helper call.
    let here = unsafe { bpf_get_smp_processor_id() };
    let holds = |cpu: u32| -> Option<*mut [u64; 2]> {
        let p = REQ_START.get_ptr_mut(cpu)?;
        // SAFETY: an entry of an array map; another CPU may write it concurrently (its own
        // entry only), which at worst makes this request untimed.
        (unsafe { core::ptr::read_volatile(p) }[0] == task).then_some(p)
    };
    if let Some(p) = holds(here) {
        return Some((here, p));
    }
    let n = layout().nr_cpus.min(MAX_CPUS);
    for cpu in 0..MAX_CPUS {
        if cpu >= n {
            break;
        }
        if cpu != here
            && let Some(p) = holds(cpu)
        {
            return Some((cpu, p));
        }
    }
    None
}

/// The CPU the current task entered the allocator on and when, from its [`REQ_START`] entry:
/// `(CPU_UNKNOWN, 0)` when it has none.
#[inline(always)]
pub(crate) fn entry_start() -> (u32, u64) {
    match entry_of(bpf_get_current_pid_tgid()) {
        // SAFETY: an entry of an array map (see `entry_of`).
        Some((cpu, p)) => (cpu, unsafe { core::ptr::read_volatile(p) }[1]),
        None => (swapscope_common::CPU_UNKNOWN, 0),
    }
}

/// For a decision made under the per-CPU cluster's local lock (7.x, preemption off): the CPU
/// this runs on — whose per-CPU clusters the allocator used — and when the task's request
/// started (0 when its [`REQ_START`] entry is gone).
#[inline(always)]
pub(crate) fn in_lock_start() -> (u32, u64) {
    // SAFETY: plain helper call.
    let cpu = unsafe { bpf_get_smp_processor_id() };
    (cpu, entry_start().1)
}

/// Per task (thread id modulo [`TASK_SLOTS`]): the task and the folio it last submitted to the
/// device (`__swap_writepage`, [`crate::writeout::write_io`]), taken by the write-out tracepoint
/// the same task fires after the write. The folio is unlocked between the two: a folio that lost
/// its swap-cache entry and its last mapping meanwhile looks, at the tracepoint, exactly like
/// one `swap_writeout` freed without I/O; this entry tells them apart. An array, not a hash map,
/// for the reason [`DELIVERED`] gives.
#[map]
pub(crate) static WRITTEN: Array<[u64; 2]> = Array::with_max_entries(TASK_SLOTS, 0);
