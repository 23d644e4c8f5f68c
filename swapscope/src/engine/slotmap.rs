//! Stream slot → model slot mapping for one model, stored as extents.
//!
//! Each entry maps a run of stream slots `key .. key + len` (key = [`stream_key`]) to the model
//! slots `model_offset .. model_offset + len` on one model device. A model allocation that
//! comes back as several extents becomes several entries; a partial free splits an entry.
//! Entries never cross a [`CLUSTER_SLOTS`]-aligned boundary on the model side, and an entry is
//! merged into its predecessor when both sides continue it (consecutive order-0 allocations
//! usually do), so memory follows the number of live runs, not the number of slots.

use std::collections::BTreeMap;

use crate::alloc::{CLUSTER_SLOTS, Extent};

/// Stream slot offsets must be below 2^56 (the swap type sits above them in the key).
pub const STREAM_OFFSET_BITS: u32 = 56;
/// Model slot offsets must be below 2^40.
pub const MODEL_OFFSET_BITS: u32 = 40;
const MODEL_OFFSET_MASK: u64 = (1 << MODEL_OFFSET_BITS) - 1;

/// The map key of a stream slot, or `None` if the offset does not fit.
#[inline]
pub fn stream_key(swap_type: u8, offset: u64) -> Option<u64> {
    (offset >> STREAM_OFFSET_BITS == 0)
        .then_some(u64::from(swap_type) << STREAM_OFFSET_BITS | offset)
}

#[inline]
fn pack(len: u64, ty: u8, off: u64) -> u64 {
    len << 48 | u64::from(ty) << MODEL_OFFSET_BITS | off
}

#[inline]
fn unpack(v: u64) -> (u64, u8, u64) {
    (
        v >> 48,
        (v >> MODEL_OFFSET_BITS) as u8,
        v & MODEL_OFFSET_MASK,
    )
}

/// Bytes per entry, estimated for [`SlotMap::approx_bytes`]: 16 bytes of key and value plus
/// B-tree node overhead at typical occupancy.
const BYTES_PER_ENTRY: u64 = 24;

#[derive(Clone, Debug, Default)]
pub struct SlotMap {
    map: BTreeMap<u64, u64>,
    scratch: Vec<(u64, u64)>,
    /// Stream slots currently mapped.
    mapped: u64,
}

impl SlotMap {
    pub fn new() -> Self {
        Self::default()
    }

    /// Number of extents stored.
    pub fn entries(&self) -> usize {
        self.map.len()
    }

    /// Stream slots currently mapped to model slots.
    pub fn mapped_slots(&self) -> u64 {
        self.mapped
    }

    /// Approximate heap bytes held.
    pub fn approx_bytes(&self) -> u64 {
        self.map.len() as u64 * BYTES_PER_ENTRY
    }

    /// Whether any stream slot of `key .. key + n` is mapped.
    pub fn overlaps(&self, key: u64, n: u64) -> bool {
        self.map
            .range(..key.saturating_add(n))
            .next_back()
            .is_some_and(|(&k, &v)| k + unpack(v).0 > key)
    }

    /// Maps stream slots from `key` on, in order, to `extents` (which cover them in folio page
    /// order). Extents are split at model cluster boundaries. Returns the stream slots mapped.
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
                let stop = ((off / CLUSTER_SLOTS) + 1) * CLUSTER_SLOTS;
                let n = stop.min(end) - off;
                self.insert_run(k, n, e.swap_type, off);
                k += n;
                off += n;
            }
        }
        k - key
    }

    fn insert_run(&mut self, key: u64, n: u64, ty: u8, off: u64) {
        self.mapped += n;
        if let Some((&pk, pv)) = self.map.range_mut(..key).next_back() {
            let (plen, pty, poff) = unpack(*pv);
            if pk + plen == key
                && pty == ty
                && poff + plen == off
                && poff / CLUSTER_SLOTS == (off + n - 1) / CLUSTER_SLOTS
            {
                *pv = pack(plen + n, ty, poff);
                return;
            }
        }
        self.map.insert(key, pack(n, ty, off));
    }

    /// Unmaps stream slots `key .. key + n`, calling `free(model_type, model_offset, nr)` for
    /// every mapped model run. Returns the stream slots that were mapped.
    pub fn remove(&mut self, key: u64, n: u64, mut free: impl FnMut(u8, u64, u32)) -> u64 {
        let end = key.saturating_add(n);
        let mut scratch = std::mem::take(&mut self.scratch);
        scratch.clear();
        for (&k, &v) in self.map.range(..end).rev() {
            if k + unpack(v).0 <= key {
                break;
            }
            scratch.push((k, v));
        }
        let mut removed = 0;
        for &(k, v) in &scratch {
            let (len, ty, off) = unpack(v);
            let s = k.max(key);
            let e = (k + len).min(end);
            free(ty, off + (s - k), (e - s) as u32);
            removed += e - s;
            self.map.remove(&k);
            if k < s {
                self.map.insert(k, pack(s - k, ty, off));
            }
            if e < k + len {
                self.map.insert(e, pack(k + len - e, ty, off + (e - k)));
            }
        }
        self.scratch = scratch;
        self.mapped -= removed;
        removed
    }

    /// Unmaps every entry whose stream key lies in `lo .. hi`, calling `free` for each run.
    pub fn remove_keys(&mut self, lo: u64, hi: u64, mut free: impl FnMut(u8, u64, u32)) -> u64 {
        let keys: Vec<(u64, u64)> = self.map.range(lo..hi).map(|(&k, &v)| (k, v)).collect();
        let mut removed = 0;
        for (k, v) in keys {
            let (len, ty, off) = unpack(v);
            free(ty, off, len as u32);
            self.map.remove(&k);
            removed += len;
        }
        self.mapped -= removed;
        removed
    }

    /// Drops every entry that points to model device `ty` (it went away). Returns the slots.
    pub fn drop_model_device(&mut self, ty: u8) -> u64 {
        let mut dropped = 0;
        self.map.retain(|_, v| {
            let (len, t, _) = unpack(*v);
            if t == ty {
                dropped += len;
                false
            } else {
                true
            }
        });
        self.mapped -= dropped;
        dropped
    }

    /// Every mapping as `(stream key, len, model type, model offset)`, in key order.
    pub fn iter(&self) -> impl Iterator<Item = (u64, u64, u8, u64)> + '_ {
        self.map.iter().map(|(&k, &v)| {
            let (len, ty, off) = unpack(v);
            (k, len, ty, off)
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
        let mut m = SlotMap::new();
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
        let mut m = SlotMap::new();
        for i in 0..600 {
            m.insert(stream_key(0, 10 + i).unwrap_or(0), &[ext(0, 100 + i, 1)]);
        }
        // Model slots 100..612 cross the cluster boundary at 512: two entries.
        assert_eq!(m.entries(), 2);
        let mut freed = Vec::new();
        m.remove(stream_key(0, 10).unwrap_or(0), 600, |t, o, n| {
            freed.push((t, o, n))
        });
        freed.sort_unstable();
        assert_eq!(freed, vec![(0, 100, 412), (0, 512, 188)]);
    }

    #[test]
    fn discontiguous_extents_map_in_page_order() {
        let mut m = SlotMap::new();
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
    }
}
