//! A swap-slot allocator model defined outside swapscope: **first fit, no clusters**. Every
//! request takes the lowest free block of 2^order slots aligned to its size, on the device with
//! the lowest swap type that has one; nothing is reserved per size or per CPU. It is the
//! simplest allocator that keeps large folios whole while any aligned block is free, and a
//! baseline for the kernel's cluster allocators: it never refuses a request the device could
//! serve, but it mixes folio sizes freely, so order-0 slots end up scattered.
//!
//! What a model needs: the [`AllocatorModel`] trait (swapon, swapoff, alloc, free, snapshot,
//! cluster_map); core's slot bitmap ([`UsedBitmap`]) and fragmentation ([`FragStats`]), the same
//! the kernel models and the real occupancy use, so its figures compare with theirs; and one
//! call to [`register`] before building a report. The built-in models it is compared with come
//! from `swapscope-models`, which [`register`] installs too.

use swapscope_core::{
    alloc::{
        Allocation, AllocatorModel, CLUSTER_SLOTS, ClusterCell, ClusterList, ModelSnapshot,
        frag::{FragStats, UsedBitmap},
    },
    event::SwapOn,
    models::{self, RegisterError},
};

/// The name reports and `--models` lists use.
pub const NAME: &str = "first-fit";

/// One device: its used-slot bitmap (header, bad slots and the tail past `max` count as used,
/// as in the kernel) and how many usable slots it has.
struct Device {
    swap_type: u8,
    used: UsedBitmap,
    /// `si->max` and the bad slots: never handed out, never freed.
    max: u64,
    bad: Vec<u64>,
    usable: u64,
    in_use: u64,
}

/// First fit over aligned blocks, devices by swap type.
#[derive(Default)]
pub struct FirstFit {
    devices: Vec<Device>,
}

impl FirstFit {
    pub fn new() -> Self {
        Self::default()
    }
}

/// Registers [`FirstFit`] as `first-fit`, and installs the built-in models (the
/// `swapscope-models` crate) so that it runs beside them, as the CLI does.
pub fn register() -> Result<(), RegisterError> {
    swapscope_models::install();
    models::register(NAME, || Box::new(FirstFit::new()))
}

impl AllocatorModel for FirstFit {
    fn name(&self) -> &'static str {
        NAME
    }

    fn swapon(&mut self, dev: &SwapOn) {
        self.swapoff(dev.swap_type);
        // Whole clusters, like the kernel's cluster_info; the tail past `max` is never free.
        let len = dev.max.next_multiple_of(CLUSTER_SLOTS);
        let mut used = UsedBitmap::new_free(len);
        used.set_used(0, 1);
        used.set_used(dev.max, len - dev.max);
        let mut bad = Vec::new();
        for &b in &dev.bad {
            if b > 0 && b < dev.max && !used.is_used(b) {
                used.set_used(b, 1);
                bad.push(b);
            }
        }
        self.devices.push(Device {
            swap_type: dev.swap_type,
            used,
            max: dev.max,
            usable: dev.max - 1 - bad.len() as u64,
            bad,
            in_use: 0,
        });
        self.devices.sort_by_key(|d| d.swap_type);
    }

    fn swapoff(&mut self, swap_type: u8) {
        self.devices.retain(|d| d.swap_type != swap_type);
    }

    fn alloc(&mut self, _cpu: u32, order: u8) -> Option<Allocation> {
        let n = 1u64 << order;
        self.devices.iter_mut().find_map(|d| {
            let last = d.used.len().checked_sub(n)?;
            let at = d.used.find_free_block(0, last, u32::from(order))?;
            d.used.set_used(at, n);
            d.in_use += n;
            Some(Allocation::contiguous(d.swap_type, at, n as u32))
        })
    }

    fn free(&mut self, swap_type: u8, offset: u64, nr: u32) {
        if let Some(d) = self.devices.iter_mut().find(|d| d.swap_type == swap_type) {
            // Slots that are not in use (never allocated here) are ignored, as the trait asks;
            // the header, bad slots and the tail past `max` are outside every allocation.
            let end = (offset + u64::from(nr)).min(d.max);
            for s in offset.max(1)..end {
                if d.used.is_used(s) && !d.bad.contains(&s) {
                    d.used.set_free(s, 1);
                    d.in_use -= 1;
                }
            }
        }
    }

    fn snapshot(&self) -> ModelSnapshot {
        let mut frag = FragStats::default();
        let mut snap = ModelSnapshot::default();
        for d in &self.devices {
            frag.add(&d.used);
            snap.total_slots += d.usable;
            snap.used_slots += d.in_use;
            let mut cells = Vec::new();
            cells_of(d, &mut cells);
            for c in cells {
                snap.clusters.add(c.list);
            }
        }
        snap.largest_free_run = frag.largest_free_run;
        snap.fragmentation_by_order = frag.fragmentation_by_order();
        snap
    }

    fn cluster_map(&self, swap_type: u8, out: &mut Vec<ClusterCell>) -> bool {
        match self.devices.iter().find(|d| d.swap_type == swap_type) {
            Some(d) => {
                cells_of(d, out);
                true
            }
            None => false,
        }
    }
}

/// The device map: 512-slot stretches, though this allocator has no clusters (partly used ones
/// show as `other`).
fn cells_of(d: &Device, out: &mut Vec<ClusterCell>) {
    let mut off = 0;
    while off < d.used.len() {
        let used = d.used.count_used(off, CLUSTER_SLOTS);
        let list = match used {
            0 => ClusterList::Free,
            CLUSTER_SLOTS => ClusterList::Full,
            _ => ClusterList::Other,
        };
        out.push(ClusterCell {
            used: used as u16,
            order: None,
            list,
            last: None,
        });
        off += CLUSTER_SLOTS;
    }
}
