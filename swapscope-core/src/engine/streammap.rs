//! Stream slot → model slot mapping for one model, stored as extents.
//!
//! Stream slots are grouped in buckets of 512 (a kernel cluster for real slots, one allocation
//! id for virtual ones), found by number through an index per stream swap type (a hash table
//! for numbers far beyond what the type holds: memory follows what is mapped, not the keys).
//! Each bucket holds sorted runs: stream slots
//! `start .. start + len` of the bucket map to model slots `model_offset .. + len` on one model
//! device. A model allocation that comes back as several extents becomes several runs; a
//! partial free splits a run. Runs never cross a [`CLUSTER_SLOTS`]-aligned boundary on either
//! side, and a run is merged into its predecessor when both sides continue it (consecutive
//! order-0 allocations usually do), so memory follows the number of live runs, not the number
//! of slots. A bucket with one run (the common case for virtual slots) needs no heap block.
//!
//! A run is packed in 8 bytes, bucket-relative start in the top bits so that packed runs sort by
//! start: `start (9 bits) | len - 1 (9 bits) | model type (8 bits) | model offset (38 bits)`.
//!
//! A bucket with more than [`DENSE_RUNS`] runs (order-0 requests a model placed away from the
//! stream's slot: hundreds per bucket on mixed orders, where every insert and remove shifted the
//! run vector) is held [`Dense`]: each stream slot's model slot, direct-indexed, with the runs
//! kept as start flags. It holds exactly the runs the vector would — same boundaries, same order —
//! so every caller sees the same calls (a model may count frees per call); below half as many
//! runs it goes back to the vector.

use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hasher};

use crate::alloc::{CLUSTER_SLOTS, Extent};

/// Stream slot offsets must be below 2^56 (the swap type sits above them in the key).
pub const STREAM_OFFSET_BITS: u32 = 56;
/// Model slot offsets must be below 2^38 (1 PiB of 4 KiB slots); larger ones are not mapped.
pub const MODEL_OFFSET_BITS: u32 = 38;
const MODEL_OFFSET_MASK: u64 = (1 << MODEL_OFFSET_BITS) - 1;
const BUCKET_BITS: u32 = 9;
const BUCKET: u64 = 1 << BUCKET_BITS;

/// Stream slots `key .. key + n` cut at bucket boundaries: `(bucket, start, end)` with start and
/// end relative to the bucket.
fn bucket_spans(key: u64, n: u64) -> impl Iterator<Item = (u64, u16, u16)> {
    let end = key.saturating_add(n);
    let mut k = key;
    std::iter::from_fn(move || {
        if k >= end {
            return None;
        }
        let b = k >> BUCKET_BITS;
        let stop = ((b + 1) << BUCKET_BITS).min(end);
        let span = (b, (k % BUCKET) as u16, (stop - (b << BUCKET_BITS)) as u16);
        k = stop;
        Some(span)
    })
}

/// The map key of a stream slot, or `None` if the offset does not fit.
#[inline]
pub fn stream_key(swap_type: u8, offset: u64) -> Option<u64> {
    (offset >> STREAM_OFFSET_BITS == 0)
        .then_some(u64::from(swap_type) << STREAM_OFFSET_BITS | offset)
}

/// A multiplicative hasher for bucket numbers (keys are not attacker-chosen).
#[derive(Default, Clone, Copy)]
pub struct BucketHasher(u64);

impl Hasher for BucketHasher {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.0 = (self.0.rotate_left(5) ^ u64::from(b)).wrapping_mul(0x51_7c_c1_b7_27_22_0a_95);
        }
    }

    fn write_u64(&mut self, i: u64) {
        self.0 = (self.0.rotate_left(5) ^ i).wrapping_mul(0x51_7c_c1_b7_27_22_0a_95);
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Run {
    start: u16,
    len: u16,
    /// Model type << 38 | model offset.
    model: u64,
}

/// Bits of the packed model field (type and offset).
const MODEL_BITS: u32 = MODEL_OFFSET_BITS + 8;
const MODEL_MASK: u64 = (1 << MODEL_BITS) - 1;
const LEN_SHIFT: u32 = MODEL_BITS;
const START_SHIFT: u32 = MODEL_BITS + BUCKET_BITS;

impl Run {
    #[inline]
    fn end(&self) -> u16 {
        self.start + self.len
    }

    #[inline]
    fn ty(&self) -> u8 {
        (self.model >> MODEL_OFFSET_BITS) as u8
    }

    #[inline]
    fn off(&self) -> u64 {
        self.model & MODEL_OFFSET_MASK
    }

    /// The part `s .. e` (bucket-relative) of this run.
    #[inline]
    fn part(&self, s: u16, e: u16) -> Run {
        Run {
            start: s,
            len: e - s,
            model: self.model + u64::from(s - self.start),
        }
    }

    /// 8 bytes; packed runs order by start.
    #[inline]
    fn pack(&self) -> u64 {
        u64::from(self.start) << START_SHIFT
            | u64::from(self.len.wrapping_sub(1) & (BUCKET as u16 - 1)) << LEN_SHIFT
            | self.model & MODEL_MASK
    }

    #[inline]
    fn unpack(p: u64) -> Run {
        Run {
            start: (p >> START_SHIFT) as u16,
            len: ((p >> LEN_SHIFT) as u16 & (BUCKET as u16 - 1)) + 1,
            model: p & MODEL_MASK,
        }
    }
}

/// The packed form of the first run that could start at `start`.
#[inline]
fn packed_start(start: u16) -> u64 {
    u64::from(start) << START_SHIFT
}

/// The runs of a bucket that has several, sorted by start, after a header: a bitmap of the
/// bucket slots where a run starts (so a run is found by a rank, not a binary search) and a flag
/// word. The flag is set when a run was inserted over another (only a stream that allocates the
/// same slots twice on a device it never announced does that); such a bucket is searched by
/// binary search instead.
#[derive(Clone, Debug)]
struct Many(Vec<u64>);

const START_WORDS: usize = (BUCKET / 64) as usize;
const IRREGULAR: usize = START_WORDS;
const HEADER: usize = START_WORDS + 1;

impl Many {
    fn new(runs: &[u64]) -> Many {
        let mut m = Many(Vec::with_capacity(HEADER + runs.len().max(4)));
        m.0.resize(HEADER, 0);
        for (i, &p) in runs.iter().enumerate() {
            m.insert(i, p);
        }
        m
    }

    #[inline]
    fn runs(&self) -> &[u64] {
        self.0.get(HEADER..).unwrap_or(&[])
    }

    #[inline]
    fn len(&self) -> usize {
        self.0.len().saturating_sub(HEADER)
    }

    #[inline]
    fn get(&self, i: usize) -> Option<u64> {
        self.0.get(HEADER + i).copied()
    }

    #[inline]
    fn irregular(&self) -> bool {
        self.0.get(IRREGULAR).is_some_and(|&f| f != 0)
    }

    #[inline]
    fn flip_start(&mut self, start: u16) {
        if let Some(w) = self.0.get_mut(usize::from(start) / 64) {
            *w ^= 1 << (start % 64);
        }
    }

    #[inline]
    fn has_start(&self, start: u16) -> bool {
        self.0
            .get(usize::from(start) / 64)
            .is_some_and(|w| w >> (start % 64) & 1 != 0)
    }

    /// Runs whose start is below `start`: the position a run starting there goes to.
    #[inline]
    fn position(&self, start: u16) -> usize {
        if self.irregular() {
            let first = packed_start(start);
            return self.runs().partition_point(|&p| p < first);
        }
        let (w, b) = (usize::from(start) / 64, start % 64);
        let mut n = 0;
        for (i, &word) in self.0.iter().take(START_WORDS).enumerate() {
            if i < w {
                n += word.count_ones();
            } else {
                n += (word & ((1u64 << b) - 1)).count_ones();
                break;
            }
        }
        n as usize
    }

    fn insert(&mut self, i: usize, p: u64) {
        let r = Run::unpack(p);
        let clash = self.has_start(r.start)
            || i.checked_sub(1)
                .and_then(|j| self.get(j))
                .is_some_and(|q| Run::unpack(q).end() > r.start)
            || self.get(i).is_some_and(|q| Run::unpack(q).start < r.end());
        if clash && let Some(f) = self.0.get_mut(IRREGULAR) {
            *f = 1;
        }
        if !self.irregular() {
            self.flip_start(r.start);
        }
        self.0.insert(HEADER + i, p);
    }

    fn remove(&mut self, i: usize) {
        if HEADER + i < self.0.len() {
            let p = self.0.remove(HEADER + i);
            if !self.irregular() {
                self.flip_start(Run::unpack(p).start);
            }
        }
    }

    fn set(&mut self, i: usize, p: u64) {
        let Some(old) = self.get(i) else {
            return;
        };
        let (a, b) = (Run::unpack(old).start, Run::unpack(p).start);
        if a != b && !self.irregular() {
            self.flip_start(a);
            self.flip_start(b);
        }
        if let Some(x) = self.0.get_mut(HEADER + i) {
            *x = p;
        }
    }

    fn retain(&mut self, mut keep: impl FnMut(u64) -> bool) {
        let runs: Vec<u64> = self.runs().iter().copied().filter(|&p| keep(p)).collect();
        let irregular = self.irregular();
        self.0.truncate(HEADER);
        self.0.iter_mut().for_each(|w| *w = 0);
        if irregular && let Some(f) = self.0.get_mut(IRREGULAR) {
            *f = 1;
        }
        for (i, p) in runs.into_iter().enumerate() {
            self.insert(i, p);
        }
    }

    fn capacity_bytes(&self) -> u64 {
        self.0.capacity() as u64 * 8
    }
}

/// Runs above which a regular bucket becomes [`Dense`] (its run vector is then as large as the
/// direct index); below half as many a dense one goes back to runs.
const DENSE_RUNS: usize = 256;
/// The model slot bits a [`Dense`] bucket keeps per stream slot.
const LOW_MASK: u64 = 0xffff_ffff;
const SLOTS: u16 = BUCKET as u16;

#[inline]
fn bit(w: &[u64; START_WORDS], i: u16) -> bool {
    w.get(usize::from(i) / 64)
        .is_some_and(|x| x >> (i % 64) & 1 != 0)
}

#[inline]
fn set_bit(w: &mut [u64; START_WORDS], i: u16, on: bool) {
    if let Some(x) = w.get_mut(usize::from(i) / 64) {
        if on {
            *x |= 1 << (i % 64);
        } else {
            *x &= !(1 << (i % 64));
        }
    }
}

/// Calls `f(word index, mask)` for the bits `s .. e` of a bucket bitmap, word by word.
#[inline]
fn word_masks(s: u16, e: u16, mut f: impl FnMut(usize, u64)) {
    let (s, e) = (u32::from(s), u32::from(e.min(SLOTS)));
    let mut i = s;
    while i < e {
        let w = i / 64;
        let hi = (e - w * 64).min(64);
        let lo = i - w * 64;
        let mask = if hi - lo == 64 {
            u64::MAX
        } else {
            ((1u64 << (hi - lo)) - 1) << lo
        };
        f(w as usize, mask);
        i = w * 64 + hi;
    }
}

#[inline]
fn set_range(w: &mut [u64; START_WORDS], s: u16, e: u16, on: bool) {
    word_masks(s, e, |i, m| {
        if let Some(x) = w.get_mut(i) {
            if on {
                *x |= m;
            } else {
                *x &= !m;
            }
        }
    });
}

/// A bucket's runs, direct-indexed (see the module doc): the low 32 bits of each mapped stream
/// slot's model slot, the bits above them (type and offset) shared by the whole bucket, and a
/// flag on the first slot of every run.
#[derive(Clone, Debug)]
struct Dense {
    hi: u64,
    low: Box<[u32; BUCKET as usize]>,
    mapped: [u64; START_WORDS],
    starts: [u64; START_WORDS],
    runs: u32,
}

impl Dense {
    /// The dense form of regular runs that share their high model bits, if they do.
    fn from_runs(runs: &[u64]) -> Option<Dense> {
        let hi = Run::unpack(*runs.first()?).model & !LOW_MASK;
        let mut d = Dense {
            hi,
            low: Box::new([0; BUCKET as usize]),
            mapped: [0; START_WORDS],
            starts: [0; START_WORDS],
            runs: 0,
        };
        for &p in runs {
            let r = Run::unpack(p);
            if !d.fits(&r) {
                return None;
            }
            d.fill(r.start, r.len, r.model, true);
        }
        Some(d)
    }

    /// Whether `r` can be held: same high bits, and its slots free here.
    #[inline]
    fn fits(&self, r: &Run) -> bool {
        r.model & !LOW_MASK == self.hi
            && (r.model & LOW_MASK) + u64::from(r.len) <= LOW_MASK + 1
            && !self.any_mapped(r.start, r.end())
    }

    /// Maps slots `s .. s + n` to model slots from `model`; `start`: they begin a run (else they
    /// continue the run before them).
    #[inline]
    fn fill(&mut self, s: u16, n: u16, model: u64, start: bool) {
        let low = (model & LOW_MASK) as u32;
        let e = (s + n).min(SLOTS);
        if let Some(slots) = self.low.get_mut(usize::from(s)..usize::from(e)) {
            for (k, x) in slots.iter_mut().enumerate() {
                *x = low.wrapping_add(k as u32);
            }
        }
        set_range(&mut self.mapped, s, e, true);
        set_range(&mut self.starts, s, e, false);
        if start {
            set_bit(&mut self.starts, s, true);
            self.runs += 1;
        }
    }

    #[inline]
    fn model(&self, i: u16) -> u64 {
        self.hi | u64::from(self.low.get(usize::from(i)).copied().unwrap_or(0))
    }

    #[inline]
    fn is_mapped(&self, i: u16) -> bool {
        bit(&self.mapped, i)
    }

    #[inline]
    fn any_mapped(&self, s: u16, e: u16) -> bool {
        let mut any = false;
        word_masks(s, e, |i, m| {
            any |= self.mapped.get(i).is_some_and(|x| x & m != 0);
        });
        any
    }

    /// The first slot in `s .. e` whose bit is set in `word(i)` (word `i` of a bitmap), or `e`.
    #[inline]
    fn first_in(&self, s: u16, e: u16, word: impl Fn(usize) -> u64) -> u16 {
        let e = e.min(SLOTS);
        let mut z = e;
        word_masks(s, e, |i, m| {
            let on = word(i) & m;
            if z == e && on != 0 {
                z = (i as u16) * 64 + on.trailing_zeros() as u16;
            }
        });
        z
    }

    /// The first mapped slot in `s .. e`, or `e`.
    #[inline]
    fn next_mapped(&self, s: u16, e: u16) -> u16 {
        self.first_in(s, e, |i| self.mapped.get(i).copied().unwrap_or(0))
    }

    /// The end of the run part that starts at mapped slot `a`, at most `e`: the first slot
    /// after `a` that is unmapped or starts a run.
    #[inline]
    fn part_end(&self, a: u16, e: u16) -> u16 {
        self.first_in(a + 1, e, |i| {
            !self.mapped.get(i).copied().unwrap_or(0) | self.starts.get(i).copied().unwrap_or(0)
        })
    }

    /// The run parts within `s .. e`, in order.
    fn parts(&self, s: u16, e: u16, mut f: impl FnMut(Run)) {
        let e = e.min(SLOTS);
        let mut i = self.next_mapped(s, e);
        while i < e {
            let z = self.part_end(i, e);
            f(Run {
                start: i,
                len: z - i,
                model: self.model(i),
            });
            i = self.next_mapped(z, e);
        }
    }

    fn packed_runs(&self) -> Vec<u64> {
        let mut v = Vec::with_capacity(self.runs as usize);
        self.parts(0, SLOTS, |r| v.push(r.pack()));
        v
    }
}

#[derive(Clone, Debug)]
enum Bucket {
    One(u64),
    Many(Many),
    Dense(Box<Dense>),
}

impl Bucket {
    /// Calls `f` for every run, in order.
    fn each_run(&self, mut f: impl FnMut(Run)) {
        match self {
            Bucket::One(r) => f(Run::unpack(*r)),
            Bucket::Many(m) => m.runs().iter().for_each(|&p| f(Run::unpack(p))),
            Bucket::Dense(d) => d.parts(0, SLOTS, f),
        }
    }

    /// The runs as a vector form holds them: `One` for one, `Many` for more.
    fn from_runs(runs: &[u64]) -> Bucket {
        match runs {
            [one] => Bucket::One(*one),
            _ => Bucket::Many(Many::new(runs)),
        }
    }

    fn many(&mut self) -> &mut Many {
        if let Bucket::One(r) = *self {
            *self = Bucket::Many(Many::new(&[r]));
        }
        if let Bucket::Dense(d) = self {
            *self = Bucket::Many(Many::new(&d.packed_runs()));
        }
        let Bucket::Many(m) = self else {
            // Not reached (converted just above); stay total without panicking.
            *self = Bucket::Many(Many::new(&[]));
            return self.many();
        };
        m
    }
}

/// Bytes per hash-table slot: key, bucket, control byte (`capacity()` is 7/8 of the slots).
const BYTES_PER_BUCKET: u64 = (size_of::<(u64, Bucket)>() as u64 + 1) * 8 / 7;

/// A swap type's index covers bucket numbers up to this many, or [`DIRECT_PER_HELD`] times the
/// buckets it holds, whichever is more: memory follows what is mapped, whatever the keys (at most
/// 64 bytes of index per bucket held).
const DIRECT_FREE: usize = 4096;
const DIRECT_PER_HELD: usize = 16;

/// Bits of a bucket number below the swap type.
const BUCKET_NUMBER_BITS: u32 = STREAM_OFFSET_BITS - BUCKET_BITS;

/// The buckets by number (`key >> BUCKET_BITS`): per stream swap type, an index of 32-bit
/// positions by number into one vector of buckets — a lookup is two loads from compact arrays,
/// where a hash table's was a control group and an entry, each a cache miss on a large map —
/// and a hash table for numbers beyond the index.
#[derive(Clone, Debug, Default)]
struct Buckets {
    /// Per swap type.
    index: Vec<TypeIndex>,
    /// The buckets the indexes point at, with their numbers.
    slab: Vec<(u64, Bucket)>,
    far: HashMap<u64, Bucket, BuildHasherDefault<BucketHasher>>,
}

/// One stream swap type's buckets in [`Buckets`].
#[derive(Clone, Debug, Default)]
struct TypeIndex {
    /// Bucket number → position in `Buckets::slab` + 1 (0: none).
    at: Vec<u32>,
    /// Buckets the type holds, indexed or hashed (32 bits each: a type holds at most 2^47
    /// buckets in theory, but memory runs out long before 2^32).
    held: u32,
    /// Of those, the hashed ones.
    far: u32,
}

/// Bucket `b` as `(swap type, number)`.
#[inline]
fn split_bucket(b: u64) -> (usize, usize) {
    (
        (b >> BUCKET_NUMBER_BITS) as usize,
        (b & ((1 << BUCKET_NUMBER_BITS) - 1)) as usize,
    )
}

impl Buckets {
    /// Where bucket `b` is: `Some(position + 1 or 0)` when its number is indexed, `None` when
    /// it would be hashed.
    #[inline]
    fn indexed(&self, b: u64) -> Option<u32> {
        let (t, n) = split_bucket(b);
        self.index.get(t)?.at.get(n).copied()
    }

    #[inline]
    fn get(&self, b: u64) -> Option<&Bucket> {
        match self.indexed(b) {
            Some(0) => None,
            Some(p) => self.slab.get(p as usize - 1).map(|(_, bk)| bk),
            None => self.far.get(&b),
        }
    }

    #[inline]
    fn get_mut(&mut self, b: u64) -> Option<&mut Bucket> {
        match self.indexed(b) {
            Some(0) => None,
            Some(p) => self.slab.get_mut(p as usize - 1).map(|(_, bk)| bk),
            None => self.far.get_mut(&b),
        }
    }

    /// Holds `bucket` as bucket `b` (which was empty).
    fn insert(&mut self, b: u64, bucket: Bucket) {
        let (t, n) = split_bucket(b);
        if self.index.len() <= t {
            self.index.resize_with(t + 1, Default::default);
        }
        let Some(ti) = self.index.get_mut(t) else {
            return;
        };
        ti.held = ti.held.saturating_add(1);
        if n >= ti.at.len() {
            let limit = DIRECT_FREE.max((ti.held as usize).saturating_mul(DIRECT_PER_HELD));
            if n >= limit || u32::try_from(self.slab.len() + 1).is_err() {
                ti.far = ti.far.saturating_add(1);
                self.far.insert(b, bucket);
                return;
            }
            let from = ti.at.len();
            if ti.far == 0 {
                ti.at.resize(n + 1, 0);
            } else {
                // Grown over numbers that may be hashed: they move in. Doubling (within the
                // limit) bounds how often the hashed buckets are looked through.
                ti.at.resize((n + 1).max(from * 2).min(limit), 0);
                let to = ti.at.len();
                let moved: Vec<u64> = self
                    .far
                    .keys()
                    .copied()
                    .filter(|&k| {
                        let (kt, kn) = split_bucket(k);
                        kt == t && (from..to).contains(&kn)
                    })
                    .collect();
                for k in moved {
                    if let Some(bk) = self.far.remove(&k) {
                        ti.far = ti.far.saturating_sub(1);
                        Self::push(&mut self.slab, &mut ti.at, k, bk);
                    }
                }
            }
        }
        Self::push(&mut self.slab, &mut ti.at, b, bucket);
    }

    /// Puts bucket `b` at the end of `slab`, its number's entry of `at` pointing there.
    fn push(slab: &mut Vec<(u64, Bucket)>, at: &mut [u32], b: u64, bucket: Bucket) {
        slab.push((b, bucket));
        if let Some(slot) = at.get_mut(split_bucket(b).1) {
            *slot = slab.len() as u32;
        }
    }

    fn remove(&mut self, b: u64) -> Option<Bucket> {
        let (t, n) = split_bucket(b);
        let (gone, far) = match self.indexed(b) {
            None => (self.far.remove(&b), true),
            Some(0) => (None, false),
            Some(p) => {
                let at = p as usize - 1;
                if let Some(s) = self.index.get_mut(t).and_then(|ti| ti.at.get_mut(n)) {
                    *s = 0;
                }
                let (_, bk) = self.slab.swap_remove(at);
                // The last bucket moved into the hole: its index entry follows it.
                if let Some(&(moved, _)) = self.slab.get(at) {
                    let (mt, mn) = split_bucket(moved);
                    if let Some(s) = self.index.get_mut(mt).and_then(|ti| ti.at.get_mut(mn)) {
                        *s = at as u32 + 1;
                    }
                }
                (Some(bk), false)
            }
        };
        if gone.is_some()
            && let Some(ti) = self.index.get_mut(t)
        {
            ti.held = ti.held.saturating_sub(1);
            if far {
                ti.far = ti.far.saturating_sub(1);
            }
        }
        gone
    }

    /// Every bucket with its number, in no particular order.
    fn iter(&self) -> impl Iterator<Item = (u64, &Bucket)> + '_ {
        self.slab
            .iter()
            .map(|(b, bk)| (*b, bk))
            .chain(self.far.iter().map(|(&b, bk)| (b, bk)))
    }

    /// Keeps the buckets for which `keep` is true.
    fn retain(&mut self, mut keep: impl FnMut(&mut Bucket) -> bool) {
        let mut gone = Vec::new();
        for (b, bk) in &mut self.slab {
            if !keep(bk) {
                gone.push(*b);
            }
        }
        for (&b, bk) in &mut self.far {
            if !keep(bk) {
                gone.push(b);
            }
        }
        for b in gone {
            self.remove(b);
        }
    }

    /// Heap bytes of the index itself (not of the buckets' runs).
    fn bytes(&self) -> u64 {
        let index: u64 = self
            .index
            .iter()
            .map(|ti| (ti.at.capacity() * size_of::<u32>()) as u64)
            .sum();
        index
            + (self.index.capacity() * size_of::<TypeIndex>()) as u64
            + (self.slab.capacity() * size_of::<(u64, Bucket)>()) as u64
            + self.far.capacity() as u64 * BYTES_PER_BUCKET
    }
}

#[derive(Clone, Debug)]
pub struct StreamMap {
    buckets: Buckets,
    runs: u64,
    /// Stream slots currently mapped.
    mapped: u64,
    /// [`DENSE_RUNS`], lower in tests.
    dense_at: usize,
}

impl Default for StreamMap {
    fn default() -> Self {
        Self {
            buckets: Buckets::default(),
            runs: 0,
            mapped: 0,
            dense_at: DENSE_RUNS,
        }
    }
}

impl StreamMap {
    pub fn new() -> Self {
        Self::default()
    }

    /// A map whose buckets go dense above `runs` runs (and back below half as many).
    #[cfg(test)]
    fn dense_above(runs: usize) -> Self {
        Self {
            dense_at: runs.max(2),
            ..Self::default()
        }
    }

    /// Number of runs stored.
    pub fn entries(&self) -> usize {
        self.runs as usize
    }

    /// Stream slots currently mapped to model slots.
    pub fn mapped_slots(&self) -> u64 {
        self.mapped
    }

    /// Approximate heap bytes held.
    pub fn approx_bytes(&self) -> u64 {
        let many: u64 = self
            .buckets
            .iter()
            .map(|(_, b)| match b {
                Bucket::One(_) => 0,
                Bucket::Many(m) => m.capacity_bytes(),
                Bucket::Dense(_) => size_of::<Dense>() as u64 + BUCKET * 4,
            })
            .sum();
        self.buckets.bytes() + many
    }

    /// Whether any stream slot of `key .. key + n` is mapped.
    pub fn overlaps(&self, key: u64, n: u64) -> bool {
        bucket_spans(key, n).any(|(b, s, e)| {
            self.buckets.get(b).is_some_and(|bucket| match bucket {
                Bucket::Dense(d) => d.any_mapped(s, e),
                _ => {
                    let mut any = false;
                    bucket.each_run(|r| any |= r.start < e && r.end() > s);
                    any
                }
            })
        })
    }

    /// Maps stream slots from `key` on, in order, to `extents` (which cover them in folio page
    /// order). Returns the stream slots mapped.
    pub fn insert(&mut self, key: u64, extents: &[Extent]) -> u64 {
        let mut k = key;
        for e in extents {
            if e.offset >> MODEL_OFFSET_BITS != 0 {
                k += u64::from(e.nr);
                continue;
            }
            let mut off = e.offset;
            let end = e.offset + u64::from(e.nr);
            while off < end {
                let n = (end - off)
                    .min(CLUSTER_SLOTS - off % CLUSTER_SLOTS)
                    .min(BUCKET - k % BUCKET);
                self.insert_run(k, n, u64::from(e.swap_type) << MODEL_OFFSET_BITS | off);
                k += n;
                off += n;
            }
        }
        k - key
    }

    fn insert_run(&mut self, key: u64, n: u64, model: u64) {
        self.mapped += n;
        let run = Run {
            start: (key % BUCKET) as u16,
            len: n as u16,
            model,
        };
        let Some(bucket) = self.buckets.get_mut(key >> BUCKET_BITS) else {
            self.buckets
                .insert(key >> BUCKET_BITS, Bucket::One(run.pack()));
            self.runs += 1;
            return;
        };
        if let Bucket::Dense(d) = bucket {
            if d.fits(&run) {
                // Merged into the run before it exactly where the vector form would merge.
                let merge = run.start > 0 && d.is_mapped(run.start - 1) && {
                    let p = d.model(run.start - 1);
                    p + 1 == run.model
                        && (p & MODEL_OFFSET_MASK) / CLUSTER_SLOTS
                            == (run.off() + n - 1) / CLUSTER_SLOTS
                };
                d.fill(run.start, run.len, run.model, !merge);
                if !merge {
                    self.runs += 1;
                }
                return;
            }
            // Over mapped slots, or other high bits: back to the vector form.
            *bucket = Bucket::Many(Many::new(&d.packed_runs()));
        }
        let (pos, prev) = match bucket {
            Bucket::One(p) => {
                let r = Run::unpack(*p);
                if r.start < run.start {
                    (1, Some(r))
                } else {
                    (0, None)
                }
            }
            Bucket::Many(m) => {
                let pos = m.position(run.start);
                (
                    pos,
                    pos.checked_sub(1).and_then(|i| m.get(i)).map(Run::unpack),
                )
            }
            // Made `Many` just above.
            Bucket::Dense(_) => (0, None),
        };
        if let Some(p) = prev
            && p.end() == run.start
            && p.model + u64::from(p.len) == run.model
            && p.off() / CLUSTER_SLOTS == (run.off() + n - 1) / CLUSTER_SLOTS
        {
            let merged = Run {
                len: p.len + run.len,
                ..p
            }
            .pack();
            match bucket {
                Bucket::One(r) => *r = merged,
                Bucket::Many(m) => m.set(pos - 1, merged),
                Bucket::Dense(_) => {}
            }
            return;
        }
        let m = bucket.many();
        m.insert(pos, run.pack());
        self.runs += 1;
        if m.len() > self.dense_at
            && !m.irregular()
            && let Some(d) = Dense::from_runs(m.runs())
        {
            *bucket = Bucket::Dense(Box::new(d));
        }
    }

    /// Calls `f(model_type, model_offset, nr)` for every model run that stream slots
    /// `key .. key + n` map to, in stream order, without changing the map.
    pub fn visit(&self, key: u64, n: u64, mut f: impl FnMut(u8, u64, u32)) {
        for (b, s, e) in bucket_spans(key, n) {
            let Some(bucket) = self.buckets.get(b) else {
                continue;
            };
            if let Bucket::Dense(d) = bucket {
                d.parts(s, e, |r| f(r.ty(), r.off(), u32::from(r.len)));
                continue;
            }
            bucket.each_run(|r| {
                if r.start < e && r.end() > s {
                    let (a, z) = (r.start.max(s), r.end().min(e));
                    f(r.ty(), r.part(a, z).off(), u32::from(z - a));
                }
            });
        }
    }

    /// Unmaps stream slots `key .. key + n`, calling `free(model_type, model_offset, nr)` for
    /// every mapped model run. Returns the stream slots that were mapped.
    pub fn remove(&mut self, key: u64, n: u64, mut free: impl FnMut(u8, u64, u32)) -> u64 {
        let mut removed = 0;
        for (b, s, e) in bucket_spans(key, n) {
            removed += self.remove_in_bucket(b, s, e, &mut free);
        }
        self.mapped -= removed;
        removed
    }

    fn remove_in_bucket(
        &mut self,
        b: u64,
        s: u16,
        e: u16,
        free: &mut impl FnMut(u8, u64, u32),
    ) -> u64 {
        let Some(bucket) = self.buckets.get_mut(b) else {
            return 0;
        };
        let mut removed = 0u64;
        if let Bucket::One(p) = *bucket {
            let r = Run::unpack(p);
            if r.start >= e || r.end() <= s {
                return 0;
            }
            let (a, z) = (r.start.max(s), r.end().min(e));
            free(r.ty(), r.part(a, z).off(), u32::from(z - a));
            removed += u64::from(z - a);
            match (r.start < a, z < r.end()) {
                (false, false) => {
                    self.buckets.remove(b);
                    self.runs -= 1;
                }
                (true, false) => *bucket = Bucket::One(r.part(r.start, a).pack()),
                (false, true) => *bucket = Bucket::One(r.part(z, r.end()).pack()),
                (true, true) => {
                    *bucket = Bucket::Many(Many::new(&[
                        r.part(r.start, a).pack(),
                        r.part(z, r.end()).pack(),
                    ]));
                    self.runs += 1;
                }
            }
            return removed;
        }
        if let Bucket::Dense(d) = bucket {
            let mut i = d.next_mapped(s, e);
            while i < e {
                let z = d.part_end(i, e);
                let m = d.model(i);
                free(
                    (m >> MODEL_OFFSET_BITS) as u8,
                    m & MODEL_OFFSET_MASK,
                    u32::from(z - i),
                );
                removed += u64::from(z - i);
                // As the vector form splits its run: what is left before `i` stays one run,
                // what is left from `z` on becomes one.
                let before = !bit(&d.starts, i);
                let after = d.is_mapped(z) && !bit(&d.starts, z);
                match (before, after) {
                    (false, false) => {
                        d.runs -= 1;
                        self.runs -= 1;
                    }
                    (true, true) => {
                        d.runs += 1;
                        self.runs += 1;
                    }
                    _ => {}
                }
                if after {
                    set_bit(&mut d.starts, z, true);
                }
                set_range(&mut d.mapped, i, z, false);
                set_range(&mut d.starts, i, z, false);
                i = d.next_mapped(z, e);
            }
            if d.runs == 0 {
                self.buckets.remove(b);
            } else if (d.runs as usize) < self.dense_at / 2 {
                *bucket = Bucket::from_runs(&d.packed_runs());
            }
            return removed;
        }
        let runs = bucket.many();
        // Runs do not overlap, so the one that can hold `s` is the last starting at or before it.
        let mut i = runs.position(s + 1).saturating_sub(1);
        while let Some(r) = runs.get(i).map(Run::unpack) {
            if r.end() <= s {
                i += 1;
                continue;
            }
            if r.start >= e {
                break;
            }
            let (a, z) = (r.start.max(s), r.end().min(e));
            free(r.ty(), r.part(a, z).off(), u32::from(z - a));
            removed += u64::from(z - a);
            match (r.start < a, z < r.end()) {
                (false, false) => {
                    runs.remove(i);
                    self.runs -= 1;
                }
                (true, false) => {
                    runs.set(i, r.part(r.start, a).pack());
                    i += 1;
                }
                (false, true) => {
                    runs.set(i, r.part(z, r.end()).pack());
                    i += 1;
                }
                (true, true) => {
                    runs.set(i, r.part(r.start, a).pack());
                    runs.insert(i + 1, r.part(z, r.end()).pack());
                    self.runs += 1;
                    i += 2;
                }
            }
        }
        if runs.len() == 0 {
            self.buckets.remove(b);
        } else if runs.len() == 1
            && let Some(p) = runs.get(0)
        {
            *bucket = Bucket::One(p);
        }
        removed
    }

    /// Unmaps every stream slot whose key lies in `lo .. hi` (bucket-aligned), calling `free`
    /// for each run.
    pub fn remove_keys(&mut self, lo: u64, hi: u64, mut free: impl FnMut(u8, u64, u32)) -> u64 {
        let mut keys: Vec<u64> = self
            .buckets
            .iter()
            .map(|(b, _)| b)
            .filter(|b| (lo >> BUCKET_BITS..hi >> BUCKET_BITS).contains(b))
            .collect();
        // In bucket order, whatever order the buckets are held in.
        keys.sort_unstable();
        let mut removed = 0;
        for b in keys {
            if let Some(bucket) = self.buckets.remove(b) {
                bucket.each_run(|r| {
                    free(r.ty(), r.off(), u32::from(r.len));
                    removed += u64::from(r.len);
                    self.runs -= 1;
                });
            }
        }
        self.mapped -= removed;
        removed
    }

    /// Drops every run that points to model device `ty` (it went away). Returns the slots.
    pub fn drop_model_device(&mut self, ty: u8) -> u64 {
        let mut dropped = 0;
        let mut runs_dropped = 0;
        self.buckets.retain(|bucket| {
            let m = bucket.many();
            m.retain(|p| {
                let r = Run::unpack(p);
                let keep = r.ty() != ty;
                if !keep {
                    dropped += u64::from(r.len);
                    runs_dropped += 1;
                }
                keep
            });
            m.len() > 0
        });
        self.runs -= runs_dropped;
        self.mapped -= dropped;
        dropped
    }

    /// Every mapping as `(stream key, len, model type, model offset)`, in no particular order.
    pub fn iter(&self) -> impl Iterator<Item = (u64, u64, u8, u64)> + '_ {
        self.buckets.iter().flat_map(|(b, bucket)| {
            let mut runs = Vec::new();
            bucket.each_run(|r| runs.push(r));
            runs.into_iter().map(move |r| {
                (
                    (b << BUCKET_BITS) + u64::from(r.start),
                    u64::from(r.len),
                    r.ty(),
                    r.off(),
                )
            })
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ext(ty: u8, offset: u64, nr: u32) -> Extent {
        Extent {
            swap_type: ty,
            offset,
            nr,
        }
    }

    #[test]
    fn piecewise_free_of_large_allocation() {
        let mut m = StreamMap::new();
        let k = stream_key(0, 1024).unwrap_or(0);
        assert_eq!(m.insert(k, &[ext(1, 4096, 16)]), 16);
        let mut freed = Vec::new();
        assert_eq!(m.remove(k + 3, 2, |t, o, n| freed.push((t, o, n))), 2);
        assert_eq!(freed, vec![(1, 4099, 2)]);
        assert_eq!(m.entries(), 2);
        freed.clear();
        assert_eq!(m.remove(k, 16, |t, o, n| freed.push((t, o, n))), 14);
        freed.sort_unstable();
        assert_eq!(freed, vec![(1, 4096, 3), (1, 4101, 11)]);
        assert_eq!(m.entries(), 0);
        assert_eq!(m.mapped_slots(), 0);
    }

    #[test]
    fn consecutive_runs_merge_within_a_model_cluster() {
        let mut m = StreamMap::new();
        for i in 0..600 {
            m.insert(stream_key(0, 10 + i).unwrap_or(0), &[ext(0, 100 + i, 1)]);
        }
        // Model slots 100..612 cross the model cluster boundary at 512, stream slots 10..610
        // the stream bucket boundary at 512: three runs.
        assert_eq!(m.entries(), 3);
        let mut freed = Vec::new();
        m.remove(stream_key(0, 10).unwrap_or(0), 600, |t, o, n| {
            freed.push((t, o, n))
        });
        freed.sort_unstable();
        assert_eq!(freed, vec![(0, 100, 412), (0, 512, 90), (0, 602, 98)]);
        assert_eq!(m.entries(), 0);
    }

    #[test]
    fn discontiguous_extents_map_in_page_order() {
        let mut m = StreamMap::new();
        let k = stream_key(0xff, 5 << 9).unwrap_or(0);
        m.insert(k, &[ext(0, 7, 1), ext(0, 3, 2), ext(1, 510, 4)]);
        let mut freed = Vec::new();
        m.remove(k + 1, 4, |t, o, n| freed.push((t, o, n)));
        freed.sort_unstable();
        assert_eq!(freed, vec![(0, 3, 2), (1, 510, 2)]);
        assert!(m.overlaps(k, 1));
        assert!(!m.overlaps(k + 1, 2));
        assert_eq!(m.drop_model_device(1), 2);
        assert_eq!(m.mapped_slots(), 1);
        assert_eq!(m.entries(), 1);
    }

    #[test]
    fn middle_free_splits_single_run() {
        let mut m = StreamMap::new();
        m.insert(0, &[ext(2, 64, 16)]);
        let mut freed = Vec::new();
        m.remove(4, 2, |t, o, n| freed.push((t, o, n)));
        assert_eq!(freed, vec![(2, 68, 2)]);
        assert_eq!(m.entries(), 2);
        let mut all: Vec<_> = m.iter().collect();
        all.sort_unstable();
        assert_eq!(all, vec![(0, 4, 2, 64), (6, 10, 2, 70)]);
        m.remove(0, 512, |_, _, _| {});
        assert_eq!((m.entries(), m.mapped_slots()), (0, 0));
    }

    #[test]
    fn overlapping_insert_marks_bucket_irregular_and_stays_consistent() {
        let mut m = StreamMap::new();
        m.insert(0, &[ext(0, 0, 8)]);
        m.insert(16, &[ext(0, 100, 4)]);
        // Over the first run (a double allocation on an unannounced device).
        m.insert(2, &[ext(1, 600, 2)]);
        assert_eq!(m.mapped_slots(), 14);
        let mut freed = Vec::new();
        assert_eq!(m.remove(0, 512, |t, o, n| freed.push((t, o, n))), 14);
        freed.sort_unstable();
        assert_eq!(freed, vec![(0, 0, 8), (0, 100, 4), (1, 600, 2)]);
        assert_eq!((m.entries(), m.mapped_slots()), (0, 0));
    }

    /// Every call `remove`, `visit` and `remove_keys` make, the runs stored and the map's
    /// counts: what a model and the report see of the map.
    #[derive(Debug, PartialEq)]
    struct Seen {
        calls: Vec<(u8, u64, u32)>,
        returned: Vec<u64>,
        entries: usize,
        mapped: u64,
        runs: Vec<(u64, u64, u8, u64)>,
    }

    /// Runs `ops` (insert with `model`, model device `ty`; remove; visit; remove a whole
    /// bucket range) on `m`.
    fn replay(mut m: StreamMap, ops: &[(u8, u64, u64, u64, u8)]) -> (Seen, bool) {
        let mut calls = Vec::new();
        let mut returned = Vec::new();
        let mut dense = false;
        for &(op, key, n, model, ty) in ops {
            match op % 4 {
                0 | 1 => returned.push(m.insert(key, &[ext(ty, model, n as u32)])),
                2 => returned.push(m.remove(key, n, |t, o, nr| calls.push((t, o, nr)))),
                _ if n % 7 == 0 => {
                    returned.push(m.remove_keys(key & !511, (key & !511) + 512, |t, o, nr| {
                        calls.push((t, o, nr))
                    }))
                }
                _ => m.visit(key, n, |t, o, nr| calls.push((t, o, nr))),
            }
            dense |= m.buckets.iter().any(|(_, b)| matches!(b, Bucket::Dense(_)));
        }
        let mut runs: Vec<_> = m.iter().collect();
        runs.sort_unstable();
        let seen = Seen {
            calls,
            returned,
            entries: m.entries(),
            mapped: m.mapped_slots(),
            runs,
        };
        (seen, dense)
    }

    #[test]
    fn the_bucket_index_grows_with_what_it_holds_not_with_the_keys() {
        let b = |t: u64, n: u64| t << BUCKET_NUMBER_BITS | n;
        let mut x = Buckets::default();
        // Far keys on every swap type: hashed, no index grows for them.
        for t in 0..256 {
            x.insert(b(t, 1 << 18), Bucket::One(t));
        }
        assert!(x.index.iter().all(|ti| ti.at.is_empty()));
        assert_eq!(x.far.len(), 256);
        assert!(x.bytes() < 1 << 16, "{}", x.bytes());
        // Scattered numbers: the index stays within 16 entries per bucket held.
        for k in 0..1000 {
            x.insert(b(5, k * 500 + 7), Bucket::One(k));
        }
        assert!(x.index[5].at.len() <= DIRECT_FREE.max(16 * 1000));
        // Dense numbers are indexed; the index grows over a far one, which moves in.
        x.insert(b(3, 100_000), Bucket::One(7));
        for n in 0..=100_001 {
            if n != 100_000 && x.get(b(3, n)).is_none() {
                x.insert(b(3, n), Bucket::One(n));
            }
        }
        assert!(x.index[3].at.len() > 100_001);
        assert!(!x.far.contains_key(&b(3, 100_000)));
        assert!(matches!(x.get(b(3, 100_000)), Some(Bucket::One(7))));
        assert!(matches!(x.get_mut(b(3, 1 << 18)), Some(Bucket::One(3))));
        assert_eq!(x.iter().count(), 256 + 1000 + 100_002);
        assert!(matches!(x.remove(b(3, 5)), Some(Bucket::One(5))));
        assert!(x.remove(b(3, 5)).is_none());
        assert!(matches!(x.remove(b(9, 1 << 18)), Some(Bucket::One(9))));
        // Every bucket still found by its number after the moves removal makes.
        for n in (0..=100_001).filter(|&n| n != 5 && n != 100_000) {
            assert!(
                matches!(x.get(b(3, n)), Some(Bucket::One(v)) if *v == n),
                "{n}"
            );
        }
        x.retain(|bk| matches!(bk, Bucket::One(v) if *v % 2 == 0));
        assert!(
            x.iter()
                .all(|(_, bk)| matches!(bk, Bucket::One(v) if v % 2 == 0))
        );
        for (k, bk) in x.iter() {
            assert!(std::ptr::eq(x.get(k).unwrap_or(&Bucket::One(u64::MAX)), bk));
        }
        assert_eq!(
            x.index[3].held as usize,
            x.iter().filter(|(k, _)| split_bucket(*k).0 == 3).count()
        );
        for t in [3, 5, 9] {
            assert_eq!(
                x.index[t].far as usize,
                x.far.keys().filter(|k| split_bucket(**k).0 == t).count(),
                "type {t}"
            );
        }
    }

    #[test]
    fn a_dense_bucket_holds_the_runs_the_vector_would() {
        // Order-0 slots placed one by one at every other model slot: 300 runs in bucket 0.
        let mut ops: Vec<(u8, u64, u64, u64, u8)> = (0..300).map(|i| (0, i, 1, 2 * i, 1)).collect();
        // Contiguous ones merge, across what the dense form holds too; then frees in the middle
        // of runs, over gaps, and of whole buckets; a visit; one over mapped slots.
        ops.extend((300..340).map(|i| (0, i, 1, 1000 + i, 1)));
        ops.extend([
            (2, 310, 5, 0, 0),
            (3, 0, 30, 0, 0),
            (2, 100, 150, 0, 0),
            (0, 120, 4, 5000, 1),
            (0, 124, 4, 5004, 1),
            // A run split by a free, its right part freed from its start, the gap filled by a
            // run that the next insert continues: the right part stays a run of its own.
            (0, 400, 20, 7000, 1),
            (2, 405, 5, 0, 0),
            (2, 410, 2, 0, 0),
            (0, 405, 5, 8000, 1),
            (0, 410, 2, 8005, 1),
            (3, 400, 20, 0, 0),
            // Another model device: back to the vector form.
            (0, 125, 2, 9000, 2),
            (2, 0, 512, 0, 0),
        ]);
        let (vector, _) = replay(StreamMap::dense_above(usize::MAX), &ops);
        let (dense, went_dense) = replay(StreamMap::new(), &ops);
        assert!(went_dense, "300 runs in one bucket go dense");
        assert_eq!(dense, vector);
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(64))]

        /// The dense form (here from 2 runs on) against the vector form only: the same calls,
        /// runs and counts, including inserts over mapped slots and on another model device.
        #[test]
        fn dense_buckets_match_the_vector_form(
            ops in proptest::collection::vec(
                (0u8..4, 0u64..1100, 1u64..24, 0u64..2000, 0u8..3),
                1..300,
            ),
        ) {
            let (vector, _) = replay(StreamMap::dense_above(usize::MAX), &ops);
            let (dense, _) = replay(StreamMap::dense_above(2), &ops);
            proptest::prop_assert_eq!(dense, vector);
        }

        /// Against a slot-by-slot reference: inserts of unmapped ranges, removes of any range.
        #[test]
        fn matches_slot_by_slot_reference(
            ops in proptest::collection::vec((proptest::bool::ANY, 0u64..1500, 1u64..40, 0u64..3000), 1..200),
        ) {
            let mut m = StreamMap::new();
            let mut reference = std::collections::BTreeMap::new();
            for (is_insert, key, n, model) in ops {
                if is_insert {
                    if (key..key + n).any(|k| reference.contains_key(&k)) {
                        continue;
                    }
                    proptest::prop_assert_eq!(m.insert(key, &[ext(1, model, n as u32)]), n);
                    for i in 0..n {
                        reference.insert(key + i, model + i);
                    }
                } else {
                    let mut freed = Vec::new();
                    let removed = m.remove(key, n, |_, o, nr| freed.extend(o..o + u64::from(nr)));
                    let mut want = Vec::new();
                    for k in key..key + n {
                        if let Some(o) = reference.remove(&k) {
                            want.push(o);
                        }
                    }
                    freed.sort_unstable();
                    want.sort_unstable();
                    proptest::prop_assert_eq!(removed, want.len() as u64);
                    proptest::prop_assert_eq!(freed, want);
                }
                proptest::prop_assert_eq!(m.mapped_slots(), reference.len() as u64);
            }
            let mut all: Vec<(u64, u64)> = m
                .iter()
                .flat_map(|(k, len, _, o)| (0..len).map(move |i| (k + i, o + i)))
                .collect();
            all.sort_unstable();
            proptest::prop_assert_eq!(all, reference.into_iter().collect::<Vec<_>>());
        }
    }
}
