//! Slot bitmaps and free-space fragmentation, shared by the allocator models and the engine's
//! reconstruction of the real occupancy.
//!
//! A [`UsedBitmap`] holds one bit per slot of one device (1 = in use or unusable: header, bad,
//! past the end of the device). [`FragStats`] sums any number of device bitmaps into the
//! per-order fragmentation and the largest aligned free run reported in
//! [`ModelSnapshot`](super::ModelSnapshot).

use super::{CLUSTER_SLOTS, NR_ORDERS};
use crate::event::SwapOn;

const WORD: u64 = 64;

/// Bits at offsets that are multiples of `1 << order` inside a 64-bit word (order ≤ 6).
const fn align_mask(order: u32) -> u64 {
    let step = 1u32 << order;
    let mut m = 0u64;
    let mut i = 0u32;
    while i < 64 {
        m |= 1u64 << i;
        i += step;
    }
    m
}

/// For k ≤ 6: the bit positions of a word that start a naturally aligned 2^k block.
pub const ALIGN_MASKS: [u64; 7] = [
    align_mask(0),
    align_mask(1),
    align_mask(2),
    align_mask(3),
    align_mask(4),
    align_mask(5),
    align_mask(6),
];

/// Bit `i` of the result is set when `i` is a multiple of `1 << order` and bits
/// `i .. i + (1 << order)` of `free` are all set. `order` must be ≤ 6; larger orders return 0.
#[inline]
pub fn aligned_free_mask(free: u64, order: u32) -> u64 {
    let Some(&align) = ALIGN_MASKS.get(order as usize) else {
        return 0;
    };
    let mut m = free;
    let mut j = 0;
    while j < order {
        m &= m >> (1u32 << j);
        j += 1;
    }
    m & align
}

/// One bit per slot of a device: 1 = used or unusable, 0 = free. Bits past `len` (up to the end
/// of the last word) are kept set, so they never look free.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct UsedBitmap {
    words: Vec<u64>,
    len: u64,
}

impl UsedBitmap {
    /// `len` free slots.
    pub fn new_free(len: u64) -> Self {
        let nwords = len.div_ceil(WORD) as usize;
        let mut words = vec![0u64; nwords];
        let tail = len % WORD;
        if tail != 0
            && let Some(last) = words.last_mut()
        {
            *last = !0u64 << tail;
        }
        UsedBitmap { words, len }
    }

    /// A device's slots as swapon leaves them (`setup_swap_map`): the header slot 0, the bad
    /// slots and the slots past `max` up to the end of the last cluster used, every other slot
    /// free; the map covers whole clusters. Also the bad slots that count (not 0, below `max`),
    /// sorted and distinct. Every model and the real occupancy start a device here.
    pub fn for_device(on: &SwapOn) -> (UsedBitmap, Vec<u64>) {
        let max = on.max.max(1);
        let total = max.div_ceil(CLUSTER_SLOTS) * CLUSTER_SLOTS;
        let mut map = UsedBitmap::new_free(total);
        let mut bad: Vec<u64> = on
            .bad
            .iter()
            .copied()
            .filter(|&b| b != 0 && b < max)
            .collect();
        bad.sort_unstable();
        bad.dedup();
        map.set_used(0, 1);
        for &b in &bad {
            map.set_used(b, 1);
        }
        map.set_used(max, total - max);
        (map, bad)
    }

    pub fn len(&self) -> u64 {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The raw words (bit `i % 64` of word `i / 64` is slot `i`).
    pub fn words(&self) -> &[u64] {
        &self.words
    }

    /// Heap bytes held.
    pub fn heap_bytes(&self) -> u64 {
        self.words.capacity() as u64 * 8
    }

    /// Whether slot `i` is used; slots out of range count as used.
    #[inline]
    pub fn is_used(&self, i: u64) -> bool {
        self.words
            .get((i / WORD) as usize)
            .is_none_or(|w| w >> (i % WORD) & 1 == 1)
    }

    /// The words `off .. off + n` touches (clipped to `len`): (word index, the range's bits in it).
    #[inline]
    fn spans(len: u64, off: u64, n: u64) -> impl Iterator<Item = (usize, u64)> {
        let end = off.saturating_add(n).min(len);
        let mut i = off;
        std::iter::from_fn(move || {
            if i >= end {
                return None;
            }
            let bit = i % WORD;
            let take = (WORD - bit).min(end - i);
            let mask = if take == WORD {
                !0
            } else {
                ((1u64 << take) - 1) << bit
            };
            let wi = (i / WORD) as usize;
            i += take;
            Some((wi, mask))
        })
    }

    /// Applies `f(word index, word, mask)` to every word touched by `off .. off + n`.
    #[inline]
    fn for_range(&mut self, off: u64, n: u64, mut f: impl FnMut(usize, &mut u64, u64)) {
        for (wi, mask) in Self::spans(self.len, off, n) {
            if let Some(w) = self.words.get_mut(wi) {
                f(wi, w, mask);
            }
        }
    }

    /// Frees, in each word touched by `off .. off + n`, the bits `keep(word index, used bits in
    /// range)` returns (a subset of them); returns how many slots were freed.
    #[inline]
    pub fn free_where(&mut self, off: u64, n: u64, mut keep: impl FnMut(usize, u64) -> u64) -> u64 {
        let mut freed = 0u64;
        self.for_range(off, n, |wi, w, mask| {
            let used = *w & mask;
            if used != 0 {
                let m = keep(wi, used) & used;
                *w &= !m;
                freed += u64::from(m.count_ones());
            }
        });
        freed
    }

    /// Marks `off .. off + n` used.
    #[inline]
    pub fn set_used(&mut self, off: u64, n: u64) {
        self.for_range(off, n, |_, w, m| *w |= m);
    }

    /// Marks `off .. off + n` free.
    #[inline]
    pub fn set_free(&mut self, off: u64, n: u64) {
        self.for_range(off, n, |_, w, m| *w &= !m);
    }

    /// Marks `off .. off + n` free and returns how many of those slots were used: `count_used`
    /// then `set_free` in one pass.
    #[inline]
    pub fn take_used(&mut self, off: u64, n: u64) -> u64 {
        let mut c = 0u64;
        self.for_range(off, n, |_, w, m| {
            c += u64::from((*w & m).count_ones());
            *w &= !m;
        });
        c
    }

    /// Marks `off .. off + n` used and returns how many of those slots already were:
    /// `count_used` then `set_used` in one pass.
    #[inline]
    pub fn put_used(&mut self, off: u64, n: u64) -> u64 {
        let mut c = 0u64;
        self.for_range(off, n, |_, w, m| {
            c += u64::from((*w & m).count_ones());
            *w |= m;
        });
        c
    }

    /// Number of used slots in `off .. off + n` (slots past `len` are not counted).
    pub fn count_used(&self, off: u64, n: u64) -> u64 {
        Self::spans(self.len, off, n)
            .filter_map(|(wi, mask)| {
                self.words
                    .get(wi)
                    .map(|w| u64::from((w & mask).count_ones()))
            })
            .sum()
    }

    /// Whether every slot of `off .. off + n` is free (false if any is out of range).
    #[inline]
    pub fn all_free(&self, off: u64, n: u64) -> bool {
        if off.saturating_add(n) > self.len {
            return false;
        }
        self.count_used(off, n) == 0
    }

    /// Whether every slot of `off .. off + n` is used.
    pub fn all_used(&self, off: u64, n: u64) -> bool {
        let end = off.saturating_add(n).min(self.len);
        self.count_used(off, n) == end.saturating_sub(off)
    }

    /// First offset `p` in `from, from + 2^order, from + 2 * 2^order, …` with `p <= last` whose
    /// `2^order` slots are all free. `from` should be aligned to `2^order` (the kernel's scans
    /// always are); an unaligned `from` is rounded up.
    #[inline]
    pub fn find_free_block(&self, from: u64, last: u64, order: u32) -> Option<u64> {
        let n = 1u64 << order;
        let mut p = from.next_multiple_of(n);
        if order <= 6 {
            while p <= last {
                let wi = (p / WORD) as usize;
                let w = *self.words.get(wi)?;
                let m = aligned_free_mask(!w, order) & (!0u64 << (p % WORD));
                if m != 0 {
                    let q = wi as u64 * WORD + u64::from(m.trailing_zeros());
                    return (q <= last && q + n <= self.len).then_some(q);
                }
                p = (wi as u64 + 1) * WORD;
            }
            None
        } else {
            let wn = (n / WORD) as usize;
            while p <= last {
                let wi = (p / WORD) as usize;
                let block = self.words.get(wi..wi + wn)?;
                if block.iter().all(|&w| w == 0) {
                    return Some(p);
                }
                p += n;
            }
            None
        }
    }

    /// First free slot at or after `from` and before `end`.
    pub fn find_free_slot(&self, from: u64, end: u64) -> Option<u64> {
        let end = end.min(self.len);
        let mut p = from;
        while p < end {
            let wi = (p / WORD) as usize;
            let w = *self.words.get(wi)?;
            let free = !w & (!0u64 << (p % WORD));
            if free != 0 {
                let q = wi as u64 * WORD + u64::from(free.trailing_zeros());
                return (q < end).then_some(q);
            }
            p = (wi as u64 + 1) * WORD;
        }
        None
    }
}

/// Free-space statistics summed over devices.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct FragStats {
    /// Free slots.
    pub free_slots: u64,
    /// For each order k: free slots that lie inside a free, naturally aligned 2^k block.
    pub usable_by_order: [u64; NR_ORDERS],
    /// Largest naturally aligned, entirely free power-of-two block, in slots.
    pub largest_free_run: u64,
}

impl FragStats {
    /// Statistics of one device.
    pub fn of(bitmap: &UsedBitmap) -> Self {
        let mut s = FragStats::default();
        s.add(bitmap);
        s
    }

    /// Adds one device (offsets are relative to the device's slot 0, so alignment is too).
    pub fn add(&mut self, bitmap: &UsedBitmap) {
        self.add_words(bitmap.words());
    }

    /// Adds one device given as its used-slot words (bit `i` of word `w` is slot `64 w + i`,
    /// 1 = used or unusable), as every model's slot bitmap keeps them.
    pub fn add_words(&mut self, words: &[u64]) {
        let mut run_start = 0usize;
        let mut in_run = false;
        for (wi, &w) in words.iter().enumerate() {
            let free = !w;
            if free == !0 {
                if !in_run {
                    run_start = wi;
                    in_run = true;
                }
                continue;
            }
            if in_run {
                self.add_word_run(run_start as u64, wi as u64);
                in_run = false;
            }
            if free == 0 {
                continue;
            }
            self.free_slots += u64::from(free.count_ones());
            let mut largest = 0u64;
            for k in 0..NR_ORDERS.min(6) {
                let m = aligned_free_mask(free, k as u32);
                if m == 0 {
                    break;
                }
                if let Some(u) = self.usable_by_order.get_mut(k) {
                    *u += u64::from(m.count_ones()) << k;
                }
                largest = 1u64 << k;
            }
            self.largest_free_run = self.largest_free_run.max(largest);
        }
        if in_run {
            self.add_word_run(run_start as u64, words.len() as u64);
        }
    }

    /// Words `a .. b` are entirely free.
    fn add_word_run(&mut self, a: u64, b: u64) {
        let slots = (b - a) * WORD;
        self.free_slots += slots;
        for (k, u) in self.usable_by_order.iter_mut().enumerate() {
            if k <= 6 {
                *u += slots;
            } else {
                *u += aligned_blocks(a, b, 1u64 << (k - 6)) << k;
            }
        }
        let mut m = 0u32;
        while m < 58 && aligned_blocks(a, b, 1u64 << (m + 1)) > 0 {
            m += 1;
        }
        self.largest_free_run = self.largest_free_run.max(WORD << m);
    }

    /// Merges another set of statistics (e.g. another device).
    pub fn merge(&mut self, other: &FragStats) {
        self.free_slots += other.free_slots;
        for (a, b) in self
            .usable_by_order
            .iter_mut()
            .zip(other.usable_by_order.iter())
        {
            *a += b;
        }
        self.largest_free_run = self.largest_free_run.max(other.largest_free_run);
    }

    /// Share of free slots not inside a free aligned 2^k block, per order (0.0 when no slot is
    /// free).
    pub fn fragmentation_by_order(&self) -> [f64; NR_ORDERS] {
        let mut out = [0.0; NR_ORDERS];
        if self.free_slots == 0 {
            return out;
        }
        for (o, u) in out.iter_mut().zip(self.usable_by_order.iter()) {
            *o = 1.0 - *u as f64 / self.free_slots as f64;
        }
        out
    }
}

/// Number of blocks of `s` units aligned to `s` inside `a .. b`.
fn aligned_blocks(a: u64, b: u64, s: u64) -> u64 {
    let first = a.next_multiple_of(s);
    if first + s > b { 0 } else { (b - first) / s }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mask_orders() {
        assert_eq!(
            aligned_free_mask(0b1111_0110, 1),
            0b0101_0000 & ALIGN_MASKS[1]
        );
        assert_eq!(aligned_free_mask(0b1111_0110, 2), 0b0001_0000);
        assert_eq!(aligned_free_mask(!0, 6), 1);
        assert_eq!(aligned_free_mask(!0 >> 1, 6), 0);
    }

    #[test]
    fn a_device_starts_with_header_bad_slots_and_tail_used() {
        let on = SwapOn {
            ts_ns: 0,
            swap_type: 0,
            max: 1000,
            bad: vec![999, 5, 0, 5, 2000],
            flags: 0,
            prio: 0,
        };
        let (map, bad) = UsedBitmap::for_device(&on);
        assert_eq!(bad, vec![5, 999]);
        assert_eq!(map.len(), 1024);
        let used: Vec<u64> = (0..1024).filter(|&s| map.is_used(s)).collect();
        let want: Vec<u64> = [0, 5, 999].into_iter().chain(1000..1024).collect();
        assert_eq!(used, want);
        let empty = SwapOn {
            max: 0,
            bad: Vec::new(),
            ..on
        };
        let (map, bad) = UsedBitmap::for_device(&empty);
        assert_eq!(
            (map.len(), map.count_used(0, 512), bad.len()),
            (512, 512, 0)
        );
    }

    #[test]
    fn bitmap_ranges_and_search() {
        let mut b = UsedBitmap::new_free(1000);
        assert!(b.is_used(1000));
        assert!(b.is_used(1023));
        b.set_used(0, 1);
        assert_eq!(b.find_free_block(0, 999, 0), Some(1));
        assert_eq!(b.find_free_block(0, 999, 4), Some(16));
        b.set_used(16, 3);
        assert_eq!(b.find_free_block(0, 999, 4), Some(32));
        assert_eq!(b.count_used(0, 64), 4);
        b.set_used(512, 100);
        assert_eq!(b.find_free_block(0, 1000 - 512, 9), None);
        assert_eq!(b.find_free_block(64, 1000 - 128, 7), Some(128));
        b.set_free(16, 3);
        assert!(b.all_free(16, 16));
        assert!(!b.all_free(990, 16));
        assert_eq!(b.find_free_slot(512, 1000), Some(612));
    }

    #[test]
    fn frag_of_half_used_clusters() {
        // Two clusters; the first has every other slot used, the second is empty.
        let mut b = UsedBitmap::new_free(1024);
        for i in (0..512).step_by(2) {
            b.set_used(i, 1);
        }
        let s = FragStats::of(&b);
        assert_eq!(s.free_slots, 256 + 512);
        assert_eq!(s.usable_by_order[0], 768);
        assert_eq!(s.usable_by_order[1], 512);
        assert_eq!(s.usable_by_order[9], 512);
        assert_eq!(s.largest_free_run, 512);
        let f = s.fragmentation_by_order();
        assert!((f[4] - 256.0 / 768.0).abs() < 1e-9);
    }

    #[test]
    fn largest_run_crosses_words() {
        let mut b = UsedBitmap::new_free(8192);
        b.set_used(0, 1);
        b.set_used(100, 1);
        let s = FragStats::of(&b);
        assert_eq!(s.largest_free_run, 4096);
        assert_eq!(s.usable_by_order[9], 8192 - 512);
        b.set_used(6000, 1);
        assert_eq!(FragStats::of(&b).largest_free_run, 2048);
    }

    #[test]
    fn take_and_put_count_what_they_change() {
        let mut b = UsedBitmap::new_free(200);
        b.set_used(10, 20);
        assert_eq!(b.put_used(0, 64), 20);
        assert_eq!(b.count_used(0, 200), 64);
        assert_eq!(b.put_used(60, 200), 4);
        assert_eq!(b.count_used(0, 200), 200);
        assert_eq!(b.take_used(5, 70), 70);
        assert_eq!(b.take_used(0, 80), 10);
        assert_eq!(b.count_used(0, 200), 120);
    }
}
