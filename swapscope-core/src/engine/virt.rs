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
//!
//! Under mixed orders nearly every allocation is a run of its own, and a binary search over
//! millions of runs is a chain of cache misses at every free. A directory of where each block of
//! 16 ids starts in the runs makes the lookup one load and a search among at most 16
//! neighbouring runs. It is kept while ids only grow (how workloads number them), dropped
//! by a reuse or an out-of-order id (the binary search serves until the next sweep rebuilds it)
//! and never kept when the ids are so sparse that it would outgrow the runs.

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

#[derive(Clone, Debug)]
pub struct VirtualIds {
    /// Sorted by first id, not overlapping. Workloads number allocations in order, so new runs
    /// are appended.
    runs: Vec<IdRun>,
    /// Next dense slot.
    next: u64,
    /// Run count after the last sweep.
    swept: usize,
    /// `dir[b]`: the runs whose first id is below block `dir_base + b`'s first id, for every
    /// block up to the last run's; the runs of block `b` are `dir[b] .. dir[b + 1]`. Valid only
    /// while `dir_ok`.
    dir: Vec<u32>,
    /// Block of `dir[0]`.
    dir_base: u64,
    dir_ok: bool,
}

impl Default for VirtualIds {
    fn default() -> Self {
        VirtualIds {
            runs: Vec::new(),
            next: 0,
            swept: 0,
            dir: Vec::new(),
            dir_base: 0,
            dir_ok: true,
        }
    }
}

/// Ids per directory block: 2^`BLOCK_BITS`.
const BLOCK_BITS: u32 = 4;

/// Dense slots must stay below the stream offset limit.
const DENSE_LIMIT: u64 = 1 << STREAM_OFFSET_BITS;

impl VirtualIds {
    /// Index of the run holding `id`.
    #[inline]
    fn find(&self, id: u64) -> Option<usize> {
        // New ids come after every run: no search.
        let last = self.runs.last()?;
        if id >= last.first {
            return (id < last.end()).then_some(self.runs.len() - 1);
        }
        let (lo, hi) = self.block_runs(id).unwrap_or((0, self.runs.len()));
        let i = (lo + self.runs.get(lo..hi)?.partition_point(|r| r.first <= id)).checked_sub(1)?;
        self.runs.get(i).is_some_and(|r| id < r.end()).then_some(i)
    }

    /// From the directory: the runs whose first id is in `id`'s block, `lo .. hi` (the run
    /// holding `id` is the last of them at or below it, or else run `lo - 1`). `None` when the
    /// directory is not kept or does not reach `id`.
    #[inline]
    fn block_runs(&self, id: u64) -> Option<(usize, usize)> {
        if !self.dir_ok {
            return None;
        }
        let b = usize::try_from((id >> BLOCK_BITS).checked_sub(self.dir_base)?).ok()?;
        let lo = *self.dir.get(b)? as usize;
        let hi = self.dir.get(b + 1).map_or(self.runs.len(), |&h| h as usize);
        Some((lo, hi))
    }

    /// Extends the directory for a run appended at `index` with first id `first` (every run
    /// before it has a smaller one); drops the directory when it would outgrow the runs.
    fn dir_append(&mut self, first: u64, index: usize) {
        if !self.dir_ok {
            return;
        }
        let block = first >> BLOCK_BITS;
        if self.dir.is_empty() {
            self.dir_base = block;
        }
        let rel = block - self.dir_base;
        let (Ok(index), Ok(rel)) = (u32::try_from(index), usize::try_from(rel)) else {
            self.drop_dir();
            return;
        };
        if rel >= 4 * self.runs.len() + 65_536 {
            self.drop_dir();
            return;
        }
        if self.dir.len() <= rel {
            self.dir.resize(rel + 1, index);
        }
    }

    fn drop_dir(&mut self) {
        self.dir_ok = false;
        self.dir = Vec::new();
    }

    /// Rebuilds the directory from the runs (after a sweep).
    fn rebuild_dir(&mut self) {
        self.dir.clear();
        self.dir_ok = true;
        for i in 0..self.runs.len() {
            let Some(first) = self.runs.get(i).map(|r| r.first) else {
                break;
            };
            self.dir_append(first, i);
        }
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
        self.drop_dir();
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
        if at + 1 == self.runs.len() {
            self.dir_append(id, at);
        } else {
            self.drop_dir();
        }
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
        self.rebuild_dir();
    }

    /// Translation runs held.
    #[cfg(test)]
    pub fn runs(&self) -> usize {
        self.runs.len()
    }

    /// Approximate heap bytes.
    pub fn approx_bytes(&self) -> u64 {
        (self.runs.capacity() * size_of::<IdRun>() + self.dir.capacity() * size_of::<u32>()) as u64
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    #[derive(Clone, Debug)]
    enum Op {
        /// The next id (how workloads number allocations), `skip` ids on.
        Next {
            skip: u8,
            order: u8,
        },
        /// An id at or below the last one (a reuse, or out of order).
        Back {
            back: u16,
            order: u8,
        },
        Forget(u16),
        /// Drops the runs whose dense base hashes to 0 modulo `m`.
        Sweep(u8),
    }

    fn op() -> impl Strategy<Value = Op> {
        prop_oneof![
            20 => (0u8..40, 0u8..10).prop_map(|(skip, order)| Op::Next { skip, order }),
            1 => (0u16..300, 0u8..10).prop_map(|(back, order)| Op::Back { back, order }),
            1 => (0u16..300).prop_map(Op::Forget),
            1 => (2u8..5).prop_map(Op::Sweep),
        ]
    }

    proptest! {
        /// With its directory, every lookup gives what the plain binary search gives.
        #[test]
        fn the_directory_finds_what_the_search_finds(ops in prop::collection::vec(op(), 1..400)) {
            let mut fast = VirtualIds::default();
            let mut plain = VirtualIds::default();
            plain.drop_dir();
            let mut last = 1000u64;
            for op in ops {
                for (v, keep_dir) in [(&mut fast, true), (&mut plain, false)] {
                    match op {
                        Op::Next { skip, order } => {
                            let id = last + 1 + u64::from(skip);
                            v.forget(id);
                            v.alloc(id, order);
                        }
                        Op::Back { back, order } => {
                            let id = last.saturating_sub(u64::from(back));
                            v.forget(id);
                            v.alloc(id, order);
                        }
                        Op::Forget(back) => v.forget(last.saturating_sub(u64::from(back))),
                        Op::Sweep(m) => v.sweep(|base, _| base % u64::from(m) != 0),
                    }
                    if !keep_dir {
                        v.drop_dir();
                    }
                }
                if let Op::Next { skip, .. } = op {
                    last += 1 + u64::from(skip);
                }
                for id in last.saturating_sub(400)..=last + 2 {
                    prop_assert_eq!(fast.lookup(id), plain.lookup(id), "id {}", id);
                }
            }
        }
    }

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
