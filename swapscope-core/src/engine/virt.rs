//! Dense stream slots for virtual allocations (`AllocResult::Unknown`).
//!
//! A virtual allocation's own slots (`id << 9 | page`) are one 512-slot bucket per id, so the
//! model slot maps would need a bucket per live allocation. Instead the engine hands each
//! virtual allocation the next naturally aligned 2^order **dense** slots (a bump pointer, never
//! reused), shared by all models, and keys the model maps by those: consecutive allocations are
//! consecutive slots, and the maps keep long runs as for kernel slots.
//!
//! The translation is stored as runs of consecutive ids of one order with consecutive dense
//! slots (24 bytes each, in a sorted vector). A run is dropped once no model maps any of its dense slots ([`VirtualIds::sweep`]);
//! a free that finds no run then frees nothing, exactly as a free of unmapped slots would.

use super::streammap::STREAM_OFFSET_BITS;

/// Consecutive ids `first .. first + n` of order `order` own dense slots
/// `base + ((id - first) << order) ..` (2^order each).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct IdRun {
    first: u64,
    base: u64,
    n: u32,
    order: u8,
}

impl IdRun {
    fn end(&self) -> u64 {
        self.first + u64::from(self.n)
    }
}

#[derive(Clone, Debug, Default)]
pub struct VirtualIds {
    /// Sorted by first id, not overlapping. Workloads number allocations in order, so new runs
    /// are appended.
    runs: Vec<IdRun>,
    /// Next dense slot.
    next: u64,
    /// Run count after the last sweep.
    swept: usize,
}

/// Dense slots must stay below the stream offset limit.
const DENSE_LIMIT: u64 = 1 << STREAM_OFFSET_BITS;

impl VirtualIds {
    /// Index of the run holding `id`.
    fn find(&self, id: u64) -> Option<usize> {
        // New ids come after every run: no search.
        let last = self.runs.last()?;
        if id >= last.first {
            return (id < last.end()).then_some(self.runs.len() - 1);
        }
        let i = self
            .runs
            .partition_point(|r| r.first <= id)
            .checked_sub(1)?;
        self.runs.get(i).is_some_and(|r| id < r.end()).then_some(i)
    }

    /// The dense slots of `id`: `(first dense slot, 2^order)`.
    pub fn lookup(&self, id: u64) -> Option<(u64, u64)> {
        let r = self.runs.get(self.find(id)?)?;
        Some((r.base + ((id - r.first) << r.order), 1u64 << r.order))
    }

    /// Forgets `id` (it is being reused): splits its run around it.
    pub fn forget(&mut self, id: u64) {
        let Some(i) = self.find(id) else {
            return;
        };
        let Some(&r) = self.runs.get(i) else {
            return;
        };
        let k = id - r.first;
        let after = IdRun {
            first: id + 1,
            base: r.base + ((k + 1) << r.order),
            n: r.n - k as u32 - 1,
            order: r.order,
        };
        if k == 0 {
            self.runs.remove(i);
        } else if let Some(x) = self.runs.get_mut(i) {
            x.n = k as u32;
        }
        if after.n > 0 {
            let at = self.runs.partition_point(|x| x.first < after.first);
            self.runs.insert(at, after);
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
        let at = match self.runs.last() {
            Some(last) if last.first < id => self.runs.len(),
            _ => self.runs.partition_point(|x| x.first < id),
        };
        // Grow the run before `id` when this allocation continues it. `id` has no run (the
        // caller forgot it), so the grown run overlaps none.
        if let Some(r) = at.checked_sub(1).and_then(|i| self.runs.get_mut(i))
            && r.end() == id
            && r.order == order
            && r.base + (u64::from(r.n) << order) == base
            && r.n < u32::MAX
        {
            r.n += 1;
            return Some(base);
        }
        self.runs.insert(
            at,
            IdRun {
                first: id,
                base,
                n: 1,
                order,
            },
        );
        Some(base)
    }

    /// Whether a sweep is due (the run count doubled since the last one).
    pub fn sweep_due(&self) -> bool {
        self.runs.len() > 2 * self.swept + 4096
    }

    /// Drops every run none of whose dense slots `mapped(first slot, slots)` reports mapped.
    pub fn sweep(&mut self, mut mapped: impl FnMut(u64, u64) -> bool) {
        self.runs
            .retain(|r| mapped(r.base, u64::from(r.n) << r.order));
        self.swept = self.runs.len();
    }

    /// Translation runs held.
    #[cfg(test)]
    pub fn runs(&self) -> usize {
        self.runs.len()
    }

    /// Approximate heap bytes.
    pub fn approx_bytes(&self) -> u64 {
        (self.runs.capacity() * size_of::<IdRun>()) as u64
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
