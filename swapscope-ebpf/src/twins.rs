//! Preemption: three programs per preemptible hook, and which of them delivers an invocation
//! (see [`level`]).

use crate::*;

/// In which order the kernel runs a hook's programs. A BTF tracepoint calls them in attach order
/// (`tracepoint_probe_register` appends); a trampoline (fentry/fexit) in the reverse
/// (`bpf_trampoline_link_prog` adds at the head of its list), so there the last twin attached
/// runs first and plays the first program's part (see [`level`]).
#[derive(Clone, Copy, PartialEq, Eq)]
pub(crate) enum Twin {
    PrimaryFirst,
    RescueFirst,
}

/// Programs per hook that runs preemptible: the primary and its rescue twins (see [`level`]).
pub(crate) const LEVELS: u32 = 3;

/// Per rescued feed ([`swapscope_common::rescue`]): how many programs of its chain are attached
/// (written by the loader: 1 once the primary is, more as twins attach). A program runs a chain
/// position from it and its own attach index (see [`level`]); one whose index is not attached
/// yet does nothing.
#[map]
pub(crate) static CHAIN: Array<u32> = Array::with_max_entries(rescue::NR, 0);

/// Task slots per feed in [`DELIVERED`] (a power of two).
pub(crate) const TASK_SLOTS: u32 = 4096;

/// Task `task`'s slot among [`TASK_SLOTS`] (its thread id modulo their number).
#[inline(always)]
pub(crate) fn task_slot(task: u64) -> u32 {
    (task as u32) & (TASK_SLOTS - 1)
}

/// Per rescued feed and task (thread id modulo [`TASK_SLOTS`]): the invocation (task, the hook's
/// `key` argument) a program of the chain last delivered, so the programs running after it on
/// the same hook skip it. Per task, not per CPU: a task may migrate between two programs of a
/// trampoline, and a task is inside at most one invocation of a hook at a time. An array, not a
/// hash map: hash map updates take a bucket lock whose release is a preemption point.
#[map]
pub(crate) static DELIVERED: Array<[u64; 2]> = Array::with_max_entries(rescue::NR * TASK_SLOTS, 0);

/// One program of a hook's chain. The kernel skips a program entered on a CPU where another
/// task is inside it (preempted there, `recursion_misses`), from the trampoline's entry to its
/// exit; so the chain's first program to run delivers every invocation it runs for, and each
/// later one delivers what no program before it did — the invocations the kernel made the
/// earlier ones skip — counting them (`counter::RESCUED`). Which one runs first depends on the
/// hook ([`Twin`]) and on how many are attached ([`CHAIN`]). Deciding by what was delivered, not
/// by which tasks are inside the earlier programs, also covers a task preempted in the
/// trampoline before or after a program's body, where the kernel already (or still) counts it
/// as inside.
#[inline(always)]
pub(crate) fn level(
    slot: u32,
    attach: u32,
    first: Twin,
    key: u64,
    body: impl FnOnce() -> u32,
) -> u32 {
    let n = CHAIN.get(slot).copied().unwrap_or(0).min(LEVELS);
    if attach >= n {
        return 0;
    }
    let pos = match first {
        Twin::PrimaryFirst => attach,
        Twin::RescueFirst => n - 1 - attach,
    };
    let me = bpf_get_current_pid_tgid();
    let entry = DELIVERED.get_ptr_mut(slot * TASK_SLOTS + task_slot(me));
    let last = pos + 1 == n;
    if pos > 0 {
        if let Some(p) = entry {
            // SAFETY: an entry of an array map; only this task (or one whose id collides
            // modulo TASK_SLOTS, which at worst delivers an invocation twice) writes it.
            let seen = unsafe { core::ptr::read_volatile(p) };
            if seen[0] == me && seen[1] == key {
                if last {
                    // SAFETY: as above.
                    unsafe { core::ptr::write_volatile(p, [0, 0]) };
                }
                return 0;
            }
        }
        bump(counter::RESCUED + slot);
    }
    let r = body();
    if !last && let Some(p) = entry {
        // SAFETY: as above.
        unsafe { core::ptr::write_volatile(p, [me, key]) };
    }
    r
}
