//! Dense stream slots for virtual allocations (`AllocResult::Unknown`).
//!
//! A virtual allocation's own slots (`id << 9 | page`) are one 512-slot bucket per id, so the
//! model slot maps would need a bucket per live allocation. Instead the engine hands each
//! virtual allocation the next naturally aligned 2^order **dense** slots (a bump pointer, never
//! reused), shared by all models, and keys the model maps by those: consecutive allocations are
//! consecutive slots, and the maps keep long runs as for kernel slots.
//!
//! The translation is stored as runs of consecutive ids of one order with consecutive dense
//! slots. A run is dropped once no model maps any of its dense slots ([`VirtualIds::sweep`]);
//! a free that finds no run then frees nothing, exactly as a free of unmapped slots would.

use std::collections::BTreeMap;

use super::slotmap::STREAM_OFFSET_BITS;

/// Consecutive ids `first .. first + n` of order `order` own dense slots
/// `base + ((id - first) << order) ..` (2^order each).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct IdRun {
    n: u64,
    order: u8,
    base: u64,
}

#[derive(Clone, Debug, Default)]
pub struct VirtualIds {
    /// By first id.
    runs: BTreeMap<u64, IdRun>,
    /// Next dense slot.
    next: u64,
    /// First id of the run the last allocation went to (the one that may grow).
    last: Option<u64>,
    /// Run count after the last sweep.
    swept: usize,
}

/// Dense slots must stay below the stream offset limit.
const DENSE_LIMIT: u64 = 1 << STREAM_OFFSET_BITS;

impl VirtualIds {
    /// The dense slots of `id`: `(first dense slot, 2^order)`.
    pub fn lookup(&self, id: u64) -> Option<(u64, u64)> {
        let (&first, r) = self.runs.range(..=id).next_back()?;
        (id - first < r.n).then(|| (r.base + ((id - first) << r.order), 1u64 << r.order))
    }

    /// Forgets `id` (it is being reused): splits its run around it.
    pub fn forget(&mut self, id: u64) {
        let Some((&first, &r)) = self.runs.range(..=id).next_back() else {
            return;
        };
        if id - first >= r.n {
            return;
        }
        let k = id - first;
        if k == 0 {
            self.runs.remove(&first);
        } else if let Some(x) = self.runs.get_mut(&first) {
            x.n = k;
        }
        if k + 1 < r.n {
            self.runs.insert(
                id + 1,
                IdRun {
                    n: r.n - k - 1,
                    order: r.order,
                    base: r.base + ((k + 1) << r.order),
                },
            );
        }
        if self.last == Some(first) {
            self.last = None;
        }
    }

    /// Dense slots for a new allocation of `id` (which must not have any: see
    /// [`forget`](Self::forget)), or `None` when the dense space is exhausted.
    pub fn alloc(&mut self, id: u64, order: u8) -> Option<u64> {
        let n = 1u64 << order;
        // Naturally aligned, so that an allocation never crosses a 512-slot bucket: the model
        // then sees the same free calls as with one bucket per id.
        let base = self.next.next_multiple_of(n);
        if base + n > DENSE_LIMIT {
            return None;
        }
        self.next = base + n;
        // Grow the run of the previous allocation when this one continues it. `id` has no run
        // (the caller forgot it), so the grown run overlaps none.
        if let Some(r) = self.last.and_then(|first| {
            self.runs.get_mut(&first).filter(|r| {
                first + r.n == id && r.order == order && r.base + (r.n << order) == base
            })
        }) {
            r.n += 1;
            return Some(base);
        }
        self.runs.insert(id, IdRun { n: 1, order, base });
        self.last = Some(id);
        Some(base)
    }

    /// Whether a sweep is due (the run count doubled since the last one).
    pub fn sweep_due(&self) -> bool {
        self.runs.len() > 2 * self.swept + 4096
    }

    /// Drops every run none of whose dense slots `mapped(first slot, slots)` reports mapped.
    pub fn sweep(&mut self, mut mapped: impl FnMut(u64, u64) -> bool) {
        self.runs.retain(|_, r| mapped(r.base, r.n << r.order));
        if self.last.is_some_and(|f| !self.runs.contains_key(&f)) {
            self.last = None;
        }
        self.swept = self.runs.len();
    }

    /// Translation runs held.
    #[cfg(test)]
    pub fn runs(&self) -> usize {
        self.runs.len()
    }

    /// Approximate heap bytes (B-tree nodes hold 11 entries of 8 + 24 bytes).
    pub fn approx_bytes(&self) -> u64 {
        self.runs.len() as u64 * 40
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn consecutive_ids_share_a_run_and_reuse_splits() {
        let mut v = VirtualIds::default();
        for id in 10..20 {
            assert_eq!(v.alloc(id, 0), Some(id - 10));
        }
        assert_eq!(v.runs(), 1);
        assert_eq!(v.alloc(20, 4), Some(16));
        assert_eq!(v.alloc(21, 4), Some(32));
        assert_eq!(v.runs(), 2);
        assert_eq!(v.lookup(15), Some((5, 1)));
        assert_eq!(v.lookup(21), Some((32, 16)));
        assert_eq!(v.lookup(22), None);
        assert_eq!(v.lookup(9), None);
        v.forget(15);
        assert_eq!(v.lookup(15), None);
        assert_eq!(v.lookup(16), Some((6, 1)));
        assert_eq!(v.lookup(14), Some((4, 1)));
        assert_eq!(v.alloc(15, 2), Some(48));
        assert_eq!(v.lookup(15), Some((48, 4)));
        v.sweep(|base, _| base == 48);
        assert_eq!(v.runs(), 1);
        assert_eq!(v.lookup(15), Some((48, 4)));
        assert_eq!(v.lookup(16), None);
    }
}
