//! `fork-partial-zap`: parent and child share swapped-out large folios; the child zaps parts of
//! them while the parent keeps them; both keep swapping. A slot is freed when its last owner
//! drops it (the swap count). See docs/workloads.md.

use std::collections::HashMap;

use super::rng::Rng;
use super::stream::{Emit, Stream};
use super::{SwapIn, WorkloadSpec};
use crate::event::virtual_slot;

const CHUNK: usize = 16;
const MTHP_ORDER: u8 = 4;
/// Mean events on one CPU before a task migrates (two tasks share the CPUs).
const BURST: u64 = 512;
/// The child exits and the parent forks a new one every this many iterations.
const REFORK_EVERY: u32 = 10;

/// One page of one process's mapping.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Pg {
    /// A swap PTE naming virtual slot `(id << 9) + page`.
    Out(u64),
    /// Resident, private order-0 folio.
    Small,
    /// Resident, in a private 64 KiB folio covering its aligned chunk.
    Large,
    /// Not mapped (zapped and not touched since).
    None,
}

/// Slot owners: swap PTEs referring to each virtual slot (the swap count).
struct Owners {
    refs: HashMap<u64, u8>,
}

impl Owners {
    fn get(&mut self, key: u64) {
        *self.refs.entry(key).or_insert(0) += 1;
    }

    fn put(&mut self, s: &mut Stream, key: u64) {
        if let Some(r) = self.refs.get_mut(&key) {
            *r -= 1;
            if *r == 0 {
                self.refs.remove(&key);
                s.free_page(virtual_slot::id(key), virtual_slot::page(key) as u32);
            }
        }
    }
}

pub(super) fn generate(spec: &WorkloadSpec, iterations: u32, emit: Emit<'_>) {
    let n = spec.slots();
    // Parent and child can each end up with a private copy of every page: 2 × 7/16 of the device.
    let region = ((n * 7 / 16) as usize / CHUNK * CHUNK).max(CHUNK);
    let chunks = region / CHUNK;
    let mut rng = Rng::derive(spec.seed, 2);
    let mut s = Stream::new(spec.seed, spec.cpus, BURST, emit);
    let mut owners = Owners {
        refs: HashMap::new(),
    };
    s.swapon(n);

    s.marker("warmup".to_string());
    let mut parent = vec![Pg::Large; region];
    pageout(&mut s, &mut owners, &mut parent);
    let mut child = fork(&mut owners, &parent);

    for i in 0..iterations {
        if s.stopped() {
            break;
        }
        s.marker(format!("iteration {i}"));
        // The child zaps part of some large folios (never a whole one); half of the zapped ranges
        // are touched again and become order-0 folios (the rest of the 64 KiB range is still
        // mapped, so no 64 KiB folio can be faulted in there).
        for _ in 0..(chunks / 8).max(1) {
            let c = rng.index(chunks);
            let start = rng.index(CHUNK);
            let len = 1 + rng.index((CHUNK - start).min(CHUNK - 1));
            let retouch = rng.chance(1, 2);
            for pg in &mut child[c * CHUNK + start..c * CHUNK + start + len] {
                if let Pg::Out(key) = *pg {
                    owners.put(&mut s, key);
                }
                *pg = if retouch { Pg::Small } else { Pg::None };
            }
        }
        // Both touch random pages: a swapped-out page comes back as a private copy and the
        // process drops its reference to the slot (write fault on a shared swap entry); a chunk
        // only this process still holds may come back whole (see `swap_in`).
        for _ in 0..region / 16 {
            let p = rng.index(region);
            swap_in(&mut s, &mut owners, &mut parent, p, spec.swapin);
        }
        for _ in 0..region / 32 {
            let p = rng.index(region);
            swap_in(&mut s, &mut owners, &mut child, p, spec.swapin);
        }
        // The parent recycles whole 64 KiB chunks (MADV_DONTNEED + touch → new 64 KiB folio).
        for _ in 0..(chunks / 16).max(1) {
            let c = rng.index(chunks);
            for pg in &mut parent[c * CHUNK..(c + 1) * CHUNK] {
                if let Pg::Out(key) = *pg {
                    owners.put(&mut s, key);
                }
                *pg = Pg::Large;
            }
        }
        pageout(&mut s, &mut owners, &mut parent);
        pageout(&mut s, &mut owners, &mut child);
        if (i + 1) % REFORK_EVERY == 0 {
            for pg in &mut child {
                if let Pg::Out(key) = *pg {
                    owners.put(&mut s, key);
                }
                *pg = Pg::None;
            }
            child = fork(&mut owners, &parent);
        }
    }
    s.finish();
}

/// A touch of page `p` of one process. With [`SwapIn::Large`] the whole 64 KiB chunk comes back
/// as one folio when its 16 PTEs name pages 0..16 of one 64 KiB swap-out and no other process
/// shares them (the kernel swaps in large folios only for entries with swap count 1);
/// otherwise the page comes back alone, as an order-0 copy.
fn swap_in(s: &mut Stream, owners: &mut Owners, mem: &mut [Pg], p: usize, mode: SwapIn) {
    match mem[p] {
        Pg::Out(key) => {
            let c = p / CHUNK * CHUNK;
            let id = virtual_slot::id(key);
            let whole = mode == SwapIn::Large
                && s.order_of(id) == Some(MTHP_ORDER)
                && mem.get(c..c + CHUNK).is_some_and(|chunk| {
                    chunk.iter().enumerate().all(|(i, pg)| {
                        *pg == Pg::Out(virtual_slot::offset(id, i as u64))
                            && owners.refs.get(&virtual_slot::offset(id, i as u64)) == Some(&1)
                    })
                });
            if whole {
                for pg in &mut mem[c..c + CHUNK] {
                    if let Pg::Out(k) = *pg {
                        owners.put(s, k);
                    }
                    *pg = Pg::Large;
                }
            } else {
                owners.put(s, key);
                mem[p] = Pg::Small;
            }
        }
        Pg::None => mem[p] = Pg::Small,
        Pg::Small | Pg::Large => {}
    }
}

/// The child's page table right after fork: the parent is fully swapped out (fork follows a
/// page-out), so the child shares every swap entry; resident pages would be COW-shared folios,
/// which this workload never has at fork time.
fn fork(owners: &mut Owners, parent: &[Pg]) -> Vec<Pg> {
    parent
        .iter()
        .map(|&pg| match pg {
            Pg::Out(key) => {
                owners.get(key);
                Pg::Out(key)
            }
            _ => Pg::None,
        })
        .collect()
}

/// Page-out of one process: every resident (private) folio gets swap, owned by this process.
fn pageout(s: &mut Stream, owners: &mut Owners, mem: &mut [Pg]) {
    let mut p = 0;
    while p < mem.len() {
        match mem[p] {
            Pg::Large
                if p % CHUNK == 0
                    && mem
                        .get(p..p + CHUNK)
                        .is_some_and(|c| c.iter().all(|&x| x == Pg::Large)) =>
            {
                let id = s.alloc(MTHP_ORDER);
                for (idx, pg) in mem[p..p + CHUNK].iter_mut().enumerate() {
                    let key = virtual_slot::offset(id, idx as u64);
                    owners.get(key);
                    *pg = Pg::Out(key);
                }
                p += CHUNK;
            }
            Pg::Large | Pg::Small => {
                let id = s.alloc(0);
                let key = virtual_slot::offset(id, 0);
                owners.get(key);
                mem[p] = Pg::Out(key);
                p += 1;
            }
            Pg::Out(_) | Pg::None => p += 1,
        }
    }
}
