//! `fill-drain`: fill to 95 % with mixed sizes, free randomly down to 50 %, refill with large
//! folios; repeat. See docs/workloads.md.

use super::WorkloadSpec;
use super::mixed_orders::MIX;
use super::rng::Rng;
use super::stream::{Emit, Stream};

/// Refill mix (order, per mille): 64 KiB, 128 KiB and 2 MiB folios.
const LARGE_MIX: [(u8, u32); 3] = [(4, 700), (5, 200), (9, 100)];
const FULL_PCT: u64 = 95;
const DRAIN_PCT: u64 = 50;
/// Mean events on one CPU before switching (a handful of tasks).
const BURST: u64 = 64;

pub(super) fn generate(spec: &WorkloadSpec, iterations: u32, emit: Emit<'_>) {
    let n = spec.slots();
    let full = n * FULL_PCT / 100;
    let low = n * DRAIN_PCT / 100;
    let mut rng = Rng::derive(spec.seed, 4);
    let mut s = Stream::new(spec.seed, spec.cpus, BURST, emit);
    s.swapon(n);

    s.marker("warmup".to_string());
    fill(&mut s, &mut rng, &MIX, full);
    for i in 0..iterations {
        if s.stopped() {
            break;
        }
        s.marker(format!("iteration {i}"));
        // Drain: random allocations die whole (70 %) or lose a random piece (30 %).
        while s.live_slots() > low && s.live_count() > 0 {
            let Some(id) = s.live_id(rng.index(s.live_count())) else {
                break;
            };
            let size = s.order_of(id).map_or(1, |o| 1u32 << o);
            if size == 1 || rng.chance(7, 10) {
                s.free_all(id);
            } else {
                let start = rng.below(u64::from(size)) as u32;
                let len = 1 + rng.below(u64::from(size - start)) as u32;
                s.free_pages(id, start, len);
            }
        }
        s.flush();
        fill(&mut s, &mut rng, &LARGE_MIX, full);
    }
    s.finish();
}

/// Requests folios from `mix` until `full` slots are live. A request that would overshoot is
/// replaced by the largest smaller order of the mix that fits; filling stops when none fits.
fn fill(s: &mut Stream, rng: &mut Rng, mix: &[(u8, u32)], full: u64) {
    while s.live_slots() < full {
        let want = rng.weighted(mix).unwrap_or(0);
        let room = full - s.live_slots();
        let fit = mix
            .iter()
            .map(|&(o, _)| o)
            .filter(|&o| o <= want && (1u64 << o) <= room)
            .max();
        let Some(order) = fit else { break };
        s.alloc(order);
    }
}
