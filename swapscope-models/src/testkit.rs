//! Test support shared by the alternative models' tests: a harness that drives a model and checks
//! every answer against an independent record of live slots.

use std::collections::BTreeSet;

use swapscope_core::alloc::{AllocatorModel, ModelSnapshot};
use swapscope_core::event::{SwapOn, swap_flags};

pub fn dev(swap_type: u8, max: u64, bad: Vec<u64>) -> SwapOn {
    SwapOn {
        ts_ns: 0,
        swap_type,
        max,
        bad,
        flags: swap_flags::SOLIDSTATE | swap_flags::BLKDEV | swap_flags::SYNCHRONOUS_IO,
        prio: 0,
    }
}

/// One live allocation: its slots in folio page order and which pages were freed.
struct Live {
    slots: Vec<(u8, u64)>,
    freed: Vec<bool>,
}

pub struct Harness<M> {
    pub model: M,
    devs: Vec<SwapOn>,
    live: Vec<Live>,
    used: BTreeSet<(u8, u64)>,
    /// Check that single-extent allocations are naturally aligned (contiguous allocators).
    pub aligned: bool,
}

impl<M: AllocatorModel> Harness<M> {
    pub fn new(mut model: M, devs: Vec<SwapOn>) -> Self {
        for d in &devs {
            model.swapon(d);
        }
        Harness {
            model,
            devs,
            live: Vec::new(),
            used: BTreeSet::new(),
            aligned: true,
        }
    }

    pub fn live_count(&self) -> usize {
        self.live.len()
    }

    pub fn used_slots(&self) -> u64 {
        self.used.len() as u64
    }

    /// Allocates and checks the answer; returns the extents count on success.
    pub fn alloc(&mut self, cpu: u32, order: u8) -> Option<usize> {
        let a = self.model.alloc(cpu, order)?;
        assert_eq!(a.slots(), 1u64 << order, "allocation covers 2^order slots");
        let mut slots = Vec::with_capacity(1 << order);
        for e in &a.extents {
            assert!(e.nr > 0, "empty extent");
            let d = self.devs.iter().find(|d| d.swap_type == e.swap_type);
            let Some(d) = d else {
                panic!("extent on unknown device {}", e.swap_type)
            };
            for s in e.offset..e.offset + u64::from(e.nr) {
                assert!(s >= 1 && s < d.max, "slot {s} outside 1..{}", d.max);
                assert!(!d.bad.contains(&s), "bad slot {s} handed out");
                assert!(
                    self.used.insert((e.swap_type, s)),
                    "slot {s} handed out twice"
                );
                slots.push((e.swap_type, s));
            }
        }
        if self.aligned && a.extents.len() == 1 {
            let off = a.extents[0].offset;
            assert_eq!(
                off % (1u64 << order),
                0,
                "contiguous allocation is naturally aligned"
            );
        }
        self.live.push(Live {
            freed: vec![false; slots.len()],
            slots,
        });
        Some(a.extents.len())
    }

    /// Frees pages [p, p+n) (clamped) of live allocation `idx % live`, skipping pages freed
    /// before; consecutive slots go to the model as one free.
    pub fn free_pages(&mut self, idx: usize, p: usize, n: usize) {
        if self.live.is_empty() {
            return;
        }
        let i = idx % self.live.len();
        let len = self.live[i].slots.len();
        let p = p % len;
        let end = (p + n.max(1)).min(len);
        let mut run: Option<(u8, u64, u32)> = None;
        for page in p..end {
            let l = &mut self.live[i];
            if l.freed[page] {
                flush(&mut self.model, &mut run);
                continue;
            }
            l.freed[page] = true;
            let (t, s) = l.slots[page];
            assert!(self.used.remove(&(t, s)));
            run = match run {
                Some((rt, ro, rn)) if rt == t && ro + u64::from(rn) == s => Some((rt, ro, rn + 1)),
                mut other => {
                    flush(&mut self.model, &mut other);
                    Some((t, s, 1))
                }
            };
        }
        flush(&mut self.model, &mut run);
        if self.live[i].freed.iter().all(|&f| f) {
            self.live.swap_remove(i);
        }
    }

    pub fn free_all(&mut self) {
        while !self.live.is_empty() {
            let n = self.live[0].slots.len();
            self.free_pages(0, 0, n);
        }
    }

    pub fn check(&self) -> ModelSnapshot {
        let snap = self.model.snapshot();
        assert_eq!(
            snap.used_slots,
            self.used_slots(),
            "used_slots = live slots"
        );
        assert!(snap.used_slots <= snap.total_slots);
        for f in snap.fragmentation_by_order {
            assert!((0.0..=1.0).contains(&f), "fragmentation {f} out of range");
        }
        snap
    }
}

/// Outcome of [`replay`].
#[derive(Debug, Default)]
pub struct Replay {
    pub requests: u64,
    pub large_requests: u64,
    /// Large requests the model refused (the engine would split and retry at order 0).
    pub fallbacks: u64,
    /// Order-0 requests (or split pages) the model could not serve at all.
    pub failures: u64,
    pub frees: u64,
    pub max_metadata: u64,
}

/// A minimal stand-in for the engine: drives `model` with a simulated stream, mapping each
/// virtual page to the model slot it got (falling back to order 0 like the kernel's split),
/// and checks `used_slots` against the live mapping every `check_every` events.
pub fn replay<M: AllocatorModel + ?Sized>(
    model: &mut M,
    events: &[swapscope_core::event::Event],
    check_every: usize,
) -> Replay {
    use std::collections::HashMap;
    use swapscope_core::event::Event;
    use swapscope_core::event::virtual_slot;
    let mut map: HashMap<u64, (u8, u64)> = HashMap::new();
    let mut r = Replay::default();
    for (i, ev) in events.iter().enumerate() {
        match ev {
            Event::SwapOn(on) => model.swapon(on),
            Event::Alloc(a) => {
                r.requests += 1;
                let base = virtual_slot::offset(a.id, 0);
                if a.order > 0 {
                    r.large_requests += 1;
                }
                if let Some(al) = model.alloc(a.cpu, a.order) {
                    let mut page = 0;
                    for e in &al.extents {
                        for s in e.offset..e.offset + u64::from(e.nr) {
                            map.insert(base + page, (e.swap_type, s));
                            page += 1;
                        }
                    }
                } else {
                    if a.order > 0 {
                        r.fallbacks += 1;
                    }
                    for page in 0..1u64 << a.order {
                        match model.alloc(a.cpu, 0) {
                            Some(al) => {
                                let e = al.extents[0];
                                map.insert(base + page, (e.swap_type, e.offset));
                            }
                            None => r.failures += 1,
                        }
                    }
                }
            }
            Event::Free(f) => {
                r.frees += 1;
                for v in f.offset..f.offset + u64::from(f.nr) {
                    if let Some((t, s)) = map.remove(&v) {
                        model.free(t, s, 1);
                    }
                }
            }
            _ => {}
        }
        if check_every > 0 && i % check_every == 0 {
            let snap = model.snapshot();
            assert_eq!(
                snap.used_slots,
                map.len() as u64,
                "event {i}: used = mapped"
            );
            r.max_metadata = r.max_metadata.max(snap.metadata_bytes);
        }
    }
    let snap = model.snapshot();
    assert_eq!(snap.used_slots, map.len() as u64, "end: used = mapped");
    r
}

fn flush<M: AllocatorModel>(model: &mut M, run: &mut Option<(u8, u64, u32)>) {
    if let Some((t, o, n)) = run.take() {
        model.free(t, o, n);
    }
}

/// One step of a random op sequence: `kind` < 3 allocates (order from `a`), else frees a
/// random piece (`a`, `b`, `c` pick allocation, start and length).
pub fn step<M: AllocatorModel>(h: &mut Harness<M>, kind: u8, a: u16, b: u16, c: u16) {
    const ORDERS: [u8; 8] = [0, 0, 0, 2, 3, 4, 5, 9];
    if kind < 3 {
        h.alloc(u32::from(b % 4), ORDERS[usize::from(a) % ORDERS.len()]);
    } else if kind < 5 {
        h.free_pages(usize::from(a), usize::from(b), usize::from(c % 600));
    } else {
        h.free_pages(usize::from(a), usize::from(b), 1 + usize::from(c % 3));
    }
}
