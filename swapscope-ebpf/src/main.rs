//! swapscope's BPF programs.
//!
//! Tracepoint tier (any BTF kernel, lockdown=confidentiality included): `tp_btf` on
//! `mm_vmscan_write_folio`. Only direct loads from BTF-typed pointers are used, never
//! `bpf_probe_read_kernel` (refused under lockdown), except in one full-tier program that has a
//! plain fallback (`grant_scan_slots_batch`). Struct offsets and page-flag bits come from the
//! running kernel's BTF through the `LAYOUT` global, which the loader writes before load.
#![no_std]
#![no_main]

use aya_ebpf::{
    EbpfContext,
    helpers::{
        bpf_get_current_pid_tgid, bpf_get_smp_processor_id, bpf_ktime_get_boot_ns,
        bpf_probe_read_kernel_buf,
    },
    macros::{btf_tracepoint, fentry, fexit, map},
    maps::{Array, PerCpuArray, RingBuf},
    programs::{BtfTracePointContext, FEntryContext, FExitContext},
};
use aya_log_ebpf::{info, warn};
use swapscope_common::{
    AllocEvent, ClusterEvent, EventHeader, FreeEvent, GRANT_BATCH_MAX, GrantBatchEvent, GrantEvent,
    KernelLayout, ORDER_UNKNOWN, PFN_UNKNOWN, SplitEvent, SwapInEvent, WriteoutEvent, counter,
    folio_flags, kind, rescue,
};

/// Three programs per hook that runs with preemption enabled (see [`level`]): `$primary`,
/// `$rescue` and `$rescue2`, attached to the same hook in that order; whichever the kernel runs
/// first delivers the events, the others those it had to skip ([`swapscope_common::rescue`]).
/// All run `$body`. `$first` says in which order the kernel runs a hook's programs ([`Twin`]);
/// argument `$key` of the hook (the folio or page pointer, different for each invocation of a
/// task) names the invocation.
macro_rules! twin {
    ($attr:meta, $first:expr, $key:literal, $primary:ident, $rescue:ident, $rescue2:ident, $ctx:ty, $ret:ty, $slot:expr, $body:ident) => {
        #[$attr]
        pub fn $primary(ctx: $ctx) -> $ret {
            let key: u64 = ctx.arg($key);
            level($slot, 0, $first, key, || $body(&ctx)) as $ret
        }

        #[$attr]
        pub fn $rescue(ctx: $ctx) -> $ret {
            let key: u64 = ctx.arg($key);
            level($slot, 1, $first, key, || $body(&ctx)) as $ret
        }

        #[$attr]
        pub fn $rescue2(ctx: $ctx) -> $ret {
            let key: u64 = ctx.arg($key);
            level($slot, 2, $first, key, || $body(&ctx)) as $ret
        }
    };
}

mod alloc;
mod cluster;
mod emit;
mod free;
mod grant;
mod maps;
mod split;
mod swapin;
mod twins;
mod writeout;

use cluster::*;
use emit::*;
use maps::*;
use twins::*;

#[cfg(not(test))]
#[panic_handler]
fn panic(_info: &core::panic::PanicInfo) -> ! {
    loop {}
}

#[unsafe(link_section = "license")]
#[unsafe(no_mangle)]
static LICENSE: [u8; 4] = *b"GPL\0";
