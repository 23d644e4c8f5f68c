//! `mixed-orders`: folios of many sizes with random lifetimes, holding the device past half full.
//! See docs/workloads.md.

use std::cmp::Reverse;
use std::collections::BinaryHeap;

use super::WorkloadSpec;
use super::rng::Rng;
use super::stream::{Emit, Stream};

/// Request mix by count (order, per mille): 4 KiB, 16, 32, 64, 128 KiB and 2 MiB folios.
/// By volume: order 0 ≈ 4 %, 2 ≈ 4 %, 3 ≈ 7 %, 4 ≈ 27 %, 5 ≈ 16 %, 9 ≈ 43 %.
pub(super) const MIX: [(u8, u32); 6] = [(0, 510), (2, 120), (3, 100), (4, 200), (5, 60), (9, 10)];
/// Target mean occupancy (percent of the device) and hard cap.
const TARGET_PCT: u64 = 70;
const CAP_PCT: u64 = 92;

/// Mean slots per request of a mix, ×1000.
pub(super) fn mean_slots_milli(mix: &[(u8, u32)]) -> u64 {
    let w: u64 = mix.iter().map(|&(_, w)| u64::from(w)).sum();
    let v: u64 = mix.iter().map(|&(o, w)| u64::from(w) << o).sum();
    v * 1000 / w.max(1)
}

/// A scheduled free: at `tick`, pages [start, start+n) of allocation `id`.
type Death = Reverse<(u64, u64, u64, u32, u32)>;

struct Sim<'e> {
    s: Stream<'e>,
    rng: Rng,
    deaths: BinaryHeap<Death>,
    now: u64,
    seq: u64,
    life: u64,
    cap: u64,
}

impl Sim<'_> {
    fn apply(&mut self, d: Death) {
        let Reverse((_, _, id, start, n)) = d;
        self.s.free_pages(id, start, n);
    }

    fn schedule(&mut self, tick: u64, id: u64, start: u32, n: u32) {
        self.seq += 1;
        self.deaths.push(Reverse((tick, self.seq, id, start, n)));
    }

    /// One tick: due frees, then one request (making room under the cap by bringing the
    /// earliest deaths forward).
    fn step(&mut self) {
        self.now += 1;
        while self.deaths.peek().is_some_and(|Reverse(d)| d.0 <= self.now) {
            if let Some(d) = self.deaths.pop() {
                self.apply(d);
            }
        }
        let order = self.rng.weighted(&MIX).unwrap_or(0);
        let size = 1u64 << order;
        while self.s.live_slots() + size > self.cap {
            let Some(d) = self.deaths.pop() else { break };
            self.apply(d);
        }
        if self.s.live_slots() + size > self.cap {
            return;
        }
        let id = self.s.alloc(order);
        let death = self.now + 1 + self.rng.below(2 * self.life);
        self.schedule(death, id, 0, size as u32);
        // A quarter of large folios lose part of their pages early (partial swap-in or zap).
        if order > 0 && self.rng.chance(1, 4) {
            let start = self.rng.below(size) as u32;
            let len = 1 + self.rng.below(size - u64::from(start)) as u32;
            let early = self.now + 1 + self.rng.below(death - self.now);
            self.schedule(early, id, start, len);
        }
    }
}

pub(super) fn generate(spec: &WorkloadSpec, iterations: u32, emit: Emit<'_>) {
    let n = spec.slots();
    let mean_milli = mean_slots_milli(&MIX).max(1);
    // Little's law: occupancy = arrivals per tick × mean lifetime × mean size.
    let life = (n * TARGET_PCT / 100 * 1000 / mean_milli).max(1);
    let per_iteration = (n * 1000 / mean_milli).max(1);
    let mut s = Stream::new(spec.seed, spec.cpus, 1, emit);
    s.swapon(n);
    let mut sim = Sim {
        s,
        rng: Rng::derive(spec.seed, 3),
        deaths: BinaryHeap::new(),
        now: 0,
        seq: 0,
        life,
        cap: n * CAP_PCT / 100,
    };
    sim.s.marker("warmup".to_string());
    for _ in 0..2 * life {
        sim.step();
    }
    for i in 0..iterations {
        if sim.s.stopped() {
            break;
        }
        sim.s.marker(format!("iteration {i}"));
        for _ in 0..per_iteration {
            sim.step();
        }
    }
    sim.s.finish();
}
