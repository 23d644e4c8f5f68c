//! The event emitter shared by the workloads: synthetic clock, CPU choice, allocation ids, live
//! page tracking, and coalescing of frees into runs.

use std::collections::HashMap;

use crate::alloc::MAX_ORDER;
use crate::event::{Alloc, AllocResult, Event, Free, Marker, SwapOn, swap_flags, virtual_slot};

use super::rng::Rng;

/// Nanoseconds between consecutive events.
const TICK_NS: u64 = 1_000;
/// Events handed to the consumer at a time.
pub const BATCH: usize = 8192;

/// Where a workload's events go, a batch at a time: the consumer takes the events out of the
/// vector (or copies them) and answers whether it wants more. Once it says no, the generator
/// stops at its next iteration boundary and emits nothing further.
pub type Emit<'a> = &'a mut dyn FnMut(&mut Vec<Event>) -> bool;

/// The pages of one allocation that are still allocated (bit p = page p).
#[derive(Clone, Debug)]
struct LiveAlloc {
    order: u8,
    live: [u64; 8],
    nlive: u32,
}

/// Builds one workload's event stream and hands it on in batches of [`BATCH`] events, so a
/// stream of any length is never held whole.
pub struct Stream<'e> {
    events: Vec<Event>,
    emit: Emit<'e>,
    stopped: bool,
    ts: u64,
    cpu_rng: Rng,
    cpus: u32,
    cpu: u32,
    /// Events left before the task migrates; `burst` = mean run length on one CPU.
    burst_left: u64,
    burst: u64,
    next_id: u64,
    live: HashMap<u64, LiveAlloc>,
    live_ids: Vec<u64>,
    live_pos: HashMap<u64, usize>,
    live_slots: u64,
    pending: Option<(u64, u32, u32)>,
}

impl<'e> Stream<'e> {
    /// `burst` = mean number of consecutive events on one CPU before migrating (1 = every event
    /// on a random CPU, i.e. many concurrent tasks).
    pub fn new(seed: u64, cpus: u32, burst: u64, emit: Emit<'e>) -> Self {
        Stream {
            events: Vec::with_capacity(BATCH),
            emit,
            stopped: false,
            ts: 0,
            cpu_rng: Rng::derive(seed, 0xC9),
            cpus: cpus.max(1),
            cpu: 0,
            burst_left: 0,
            burst: burst.max(1),
            next_id: 1,
            live: HashMap::new(),
            live_ids: Vec::new(),
            live_pos: HashMap::new(),
            live_slots: 0,
            pending: None,
        }
    }

    /// Appends one event, handing the batch on when it is full.
    fn push(&mut self, ev: Event) {
        if self.stopped {
            return;
        }
        self.events.push(ev);
        if self.events.len() >= BATCH {
            self.hand_on();
        }
    }

    fn hand_on(&mut self) {
        if !self.events.is_empty() && !self.stopped {
            self.stopped = !(self.emit)(&mut self.events);
        }
        self.events.clear();
    }

    /// Whether the consumer wants no more events.
    pub fn stopped(&self) -> bool {
        self.stopped
    }

    fn tick(&mut self) -> u64 {
        self.ts += TICK_NS;
        self.ts
    }

    fn next_cpu(&mut self) -> u32 {
        if self.burst_left == 0 {
            self.cpu = self.cpu_rng.below(u64::from(self.cpus)) as u32;
            self.burst_left = 1 + self.cpu_rng.below(2 * self.burst - 1);
        }
        self.burst_left -= 1;
        self.cpu
    }

    /// The simulated device: `slots` usable 4 KiB slots plus the header, zram-like flags.
    pub fn swapon(&mut self, slots: u64) {
        let ts_ns = self.tick();
        self.push(Event::SwapOn(SwapOn {
            ts_ns,
            swap_type: 0,
            max: slots + 1,
            bad: Vec::new(),
            flags: swap_flags::SOLIDSTATE | swap_flags::BLKDEV | swap_flags::SYNCHRONOUS_IO,
            prio: 0,
        }));
    }

    pub fn marker(&mut self, label: String) {
        self.flush();
        let ts_ns = self.tick();
        self.push(Event::Marker(Marker { ts_ns, label }));
    }

    /// Requests swap for a folio of 2^order pages; returns its allocation id.
    pub fn alloc(&mut self, order: u8) -> u64 {
        self.flush();
        let order = order.min(MAX_ORDER);
        let id = self.next_id;
        self.next_id += 1;
        let ts_ns = self.tick();
        let cpu = self.next_cpu();
        self.push(Event::Alloc(Alloc {
            ts_ns,
            cpu,
            order,
            id,
            result: AllocResult::Unknown,
            latency_ns: None,
            inferred: false,
        }));
        let n = 1u32 << order;
        let mut live = [0u64; 8];
        for p in 0..n {
            live[(p / 64) as usize] |= 1u64 << (p % 64);
        }
        self.live.insert(
            id,
            LiveAlloc {
                order,
                live,
                nlive: n,
            },
        );
        self.live_pos.insert(id, self.live_ids.len());
        self.live_ids.push(id);
        self.live_slots += u64::from(n);
        id
    }

    /// Frees page `p` of allocation `id` if it is still allocated (returns whether it was).
    /// Consecutive pages of one allocation are emitted as one `Free`.
    pub fn free_page(&mut self, id: u64, p: u32) -> bool {
        let Some(a) = self.live.get_mut(&id) else {
            return false;
        };
        let (w, b) = ((p / 64) as usize, p % 64);
        if p >= 1u32 << a.order || a.live[w] & (1u64 << b) == 0 {
            return false;
        }
        a.live[w] &= !(1u64 << b);
        a.nlive -= 1;
        let dead = a.nlive == 0;
        self.live_slots -= 1;
        match &mut self.pending {
            Some((pid, start, n)) if *pid == id && *start + *n == p => *n += 1,
            _ => {
                self.flush();
                self.pending = Some((id, p, 1));
            }
        }
        if dead {
            self.live.remove(&id);
            if let Some(pos) = self.live_pos.remove(&id) {
                self.live_ids.swap_remove(pos);
                if let Some(&moved) = self.live_ids.get(pos) {
                    self.live_pos.insert(moved, pos);
                }
            }
        }
        true
    }

    /// Frees pages `[p, p+n)` of `id` that are still allocated.
    pub fn free_pages(&mut self, id: u64, p: u32, n: u32) {
        for q in p..p.saturating_add(n) {
            if !self.free_page(id, q) {
                self.flush();
            }
        }
    }

    /// Frees every remaining page of `id`.
    pub fn free_all(&mut self, id: u64) {
        if let Some(order) = self.order_of(id) {
            self.free_pages(id, 0, 1u32 << order);
        }
    }

    /// Emits the pending coalesced free, if any.
    pub fn flush(&mut self) {
        if let Some((id, start, nr)) = self.pending.take() {
            let ts_ns = self.tick();
            let cpu = self.next_cpu();
            self.push(Event::Free(Free {
                ts_ns,
                cpu,
                swap_type: virtual_slot::SWAP_TYPE,
                offset: virtual_slot::offset(id, u64::from(start)),
                nr,
            }));
        }
    }

    pub fn order_of(&self, id: u64) -> Option<u8> {
        self.live.get(&id).map(|a| a.order)
    }

    /// Slots held by live allocations.
    pub fn live_slots(&self) -> u64 {
        self.live_slots
    }

    /// Number of allocations with at least one live page.
    pub fn live_count(&self) -> usize {
        self.live_ids.len()
    }

    /// The `i`-th live allocation id (order changes as allocations die).
    pub fn live_id(&self, i: usize) -> Option<u64> {
        self.live_ids.get(i).copied()
    }

    /// Emits what is pending and hands the last batch on.
    pub fn finish(mut self) {
        self.flush();
        self.hand_on();
    }
}
