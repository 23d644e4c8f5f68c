//! `thp-fragment`: the access pattern of the kernel's `tools/mm/thp_swap_allocator_test.c`
//! (Barry Song), scaled to the swap size. See docs/workloads.md.

use super::rng::Rng;
use super::stream::{Emit, Stream};
use super::{SwapIn, WorkloadSpec};

/// Pages per 64 KiB mTHP, and its order.
const CHUNK: usize = 16;
const MTHP_ORDER: u8 = 4;
/// Mean events on one CPU before the (single-threaded) test task migrates.
const BURST: u64 = 4096;

/// State of one 4 KiB page of the test's memory.
#[derive(Clone, Copy, Debug)]
enum Page {
    /// Swapped out: page `idx` of allocation `id`.
    Out { id: u64, idx: u32 },
    /// Resident in an order-0 folio.
    Small,
    /// Resident in the 64 KiB folio of its aligned chunk.
    Large,
}

pub(super) fn generate(spec: &WorkloadSpec, iterations: u32, emit: Emit<'_>) {
    let n = spec.slots();
    // 60 MiB mTHP area, 4 MiB small-folio area, 16 MiB swapped in / zapped, 1 MiB small swap-in
    // per iteration: the test's sizes relative to its 64 MiB zram device.
    let region = (n * 15 / 16) as usize / CHUNK * CHUNK;
    let small_pages = if spec.small { (n / 16) as usize } else { 0 };
    let swapins = (n / 4) as usize;
    let zaps = (n / 4) as usize / CHUNK;
    let small_swapins = (n / 64) as usize;

    let mut rng = Rng::derive(spec.seed, 1);
    let mut s = Stream::new(spec.seed, spec.cpus, BURST, emit);
    s.swapon(n);
    // The first touch (memset) faults the whole area in as 64 KiB folios (64K THP "always");
    // the small area (MADV_NOHUGEPAGE) as order-0 folios.
    let mut mem = vec![Page::Large; region];
    let mut small = vec![Page::Small; small_pages];

    s.marker("warmup".to_string());
    pageout(&mut s, &mut mem);
    pageout(&mut s, &mut small);

    for i in 0..iterations {
        if s.stopped() {
            break;
        }
        s.marker(format!("iteration {i}"));
        // random_swapin(): touch 4 KiB pages, or with `aligned` (the test's `-a`) whole 64 KiB
        // chunks. A swapped-out page's slot is freed at swap-in (zram, SYNCHRONOUS_IO: swap-in
        // bypasses the swap cache); it comes back in a 64 KiB folio with its whole chunk, or as
        // an order-0 folio (see `SwapIn`).
        if spec.aligned {
            for _ in 0..zaps {
                let c = rng.index(region / CHUNK);
                for p in c * CHUNK..(c + 1) * CHUNK {
                    swap_in(&mut s, &mut mem, p, spec.swapin);
                }
            }
        } else {
            for _ in 0..swapins {
                let p = rng.index(region);
                swap_in(&mut s, &mut mem, p, spec.swapin);
            }
        }
        // random_madvise_dontneed(): zap 64 KiB chunks (freeing their remaining slots) and touch
        // them again, which faults in a new 64 KiB folio.
        for _ in 0..zaps {
            let c = rng.index(region / CHUNK);
            for page in &mut mem[c * CHUNK..(c + 1) * CHUNK] {
                if let Page::Out { id, idx } = *page {
                    s.free_page(id, idx);
                }
                *page = Page::Large;
            }
        }
        if !small.is_empty() {
            // MADV_NOHUGEPAGE: no large folio here, swap-in is page by page either way.
            for _ in 0..small_swapins {
                let p = rng.index(small.len());
                swap_in(&mut s, &mut small, p, SwapIn::Small);
            }
        }
        pageout(&mut s, &mut mem);
        pageout(&mut s, &mut small);
    }
    s.finish();
}

/// A touch of page `p`. With [`SwapIn::Large`], a page of a 64 KiB swap-out (all 16 pages of
/// its aligned chunk still out, as pages 0..16 of one allocation: contiguous, aligned entries)
/// brings the whole chunk back as a 64 KiB folio; any other swapped-out page comes back alone.
fn swap_in(s: &mut Stream, mem: &mut [Page], p: usize, mode: SwapIn) {
    let Page::Out { id, idx } = mem[p] else {
        return;
    };
    let c = p / CHUNK * CHUNK;
    let whole = mode == SwapIn::Large
        && mem.get(c..c + CHUNK).is_some_and(|chunk| {
            chunk.iter().enumerate().all(|(i, pg)| {
                matches!(*pg, Page::Out { id: other, idx: j } if other == id && j as usize == i)
            })
        });
    if whole {
        s.free_pages(id, 0, CHUNK as u32);
        mem[c..c + CHUNK].fill(Page::Large);
    } else {
        s.free_page(id, idx);
        mem[p] = Page::Small;
    }
}

/// MADV_PAGEOUT of an area, in address order: every resident folio asks for swap.
fn pageout(s: &mut Stream, mem: &mut [Page]) {
    let mut p = 0;
    while p < mem.len() {
        match mem[p] {
            Page::Out { .. } => p += 1,
            Page::Large
                if p % CHUNK == 0
                    && mem
                        .get(p..p + CHUNK)
                        .is_some_and(|c| c.iter().all(|x| matches!(x, Page::Large))) =>
            {
                let id = s.alloc(MTHP_ORDER);
                for (idx, page) in mem[p..p + CHUNK].iter_mut().enumerate() {
                    *page = Page::Out {
                        id,
                        idx: idx as u32,
                    };
                }
                p += CHUNK;
            }
            Page::Large | Page::Small => {
                let id = s.alloc(0);
                mem[p] = Page::Out { id, idx: 0 };
                p += 1;
            }
        }
    }
}
