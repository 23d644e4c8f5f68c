//! Frees another CPU made while an allocation was under way (7.x: streams with cluster events;
//! 6.12: slot-cache refills, [`ConcurrentFrees::unseen_by_batch`], and refusals, the frees by
//! another CPU after the request began that completed a block of its order,
//! [`ConcurrentFrees::unseen_by_refusal`]).
//!
//! A 7.x allocation is not one critical section. `cluster_alloc_swap_entry` scans the CPU's own
//! cluster, then the nonfull, free and frag lists, each cluster under its own lock, and relocates
//! each cluster it scanned (`relocate_cluster`: a `cluster` event, emitted under that lock); the
//! grant is emitted under the lock of the cluster that served it, a refusal after the whole
//! attempt. A free another CPU makes meanwhile reaches the stream before the decision although
//! the allocation may never have seen it. Replayed in stream order the model finds the freed slots
//! where the kernel could not. Both were seen on 7.3 with 2 and 4 vCPUs:
//!
//! * behind a scan: CPU 0 scanned and relocated its cluster while slot 7679 was in use, CPU 1
//!   freed 7679, CPU 0 was granted a slot in the next cluster; the model took 7664–7679;
//! * during a refusal: CPU 0's order-4 allocation found the nonfull list empty, CPU 3's free moved
//!   a cluster onto it 0.5 ms later, CPU 0 refused after reclaiming; the model served it.
//!
//! * from the free list: CPU 1's allocation walked the nonfull list, and 4.3 ms later took a
//!   cluster off the free list, while other CPUs' frees had put eight clusters back on nonfull;
//!   the model took one of those. A success from a cluster its allocation took off the free list
//!   found its own cluster and the nonfull list wanting first, so it is treated as a refusal is.
//!
//! So on streams with cluster events the engine remembers the last [`MAX_RECENT`] frees, each
//! with the CPUs whose allocation in flight had already scanned (isolated or relocated) its
//! cluster, and the last [`MAX_RECENT`] scans. At a decision of CPU A, a free by another CPU
//! that A had not scanned since, and that A's allocation had scanned before it or — for a
//! refusal — that came after A's request started (a refusal is no point in time: the lists it
//! found empty or full at its start are not looked at again), and whose slots the kernel's answer
//! does not take, could not have been seen: the model of the recorded kernel decides with those
//! slots hidden ([`crate::alloc::AllocatorModel::hide_free`]), and gets them back as frees right
//! after. The frees themselves stay where the stream has them, so the lists keep the kernel's
//! order; the other models, which are not corrected either, see the stream as it is. The same
//! CPU's own frees are never hidden (see `ReclaimHold` for a reclaim inside an allocation).

use std::collections::VecDeque;

use crate::alloc::{CLUSTER_SLOTS, NR_ORDERS};
use crate::event::{ClusterMove, Free, Ts, cluster_list};

/// Frees and scans remembered (a refusal's request can span a few milliseconds of other CPUs'
/// frees).
pub(super) const MAX_RECENT: usize = 1024;

/// Clusters remembered per CPU for the allocation in flight (an allocation scans a handful).
const MAX_SCANNED: usize = 16;

/// What one CPU's allocation in flight has scanned.
#[derive(Clone, Debug, Default)]
struct CpuScan {
    /// Between the CPU's grant and its request event: the relocation after a grant belongs to
    /// the allocation just decided, not to the next one.
    after_grant: bool,
    /// A full cluster isolated: a reclaim of full clusters, not a scan for free slots; nothing
    /// more is noted until the next decision.
    reclaiming: bool,
    /// (swap type, cluster), in scan order.
    clusters: Vec<(u8, u32)>,
    /// Allocations of this CPU begun so far: which one a free was behind.
    generation: u64,
    /// Per order, the cluster of this CPU's last grant: its per-CPU cluster, the one an
    /// allocation looks at first.
    pcp: [Option<(u8, u32)>; NR_ORDERS],
    /// Note number of the allocation in flight's first scan: by then it was past its per-CPU
    /// cluster.
    first_scan: Option<u64>,
    /// The cluster the allocation in flight took off the free list (isolated empty), if any.
    from_free: Option<(u8, u32)>,
}

/// A recent free, its place among the notes, and the CPUs whose allocation in flight had scanned
/// its cluster before it.
#[derive(Clone, Debug)]
struct Recent {
    free: Free,
    seq: u64,
    /// (CPU, its allocation's generation).
    scanned_before: Vec<(u32, u64)>,
}

/// A scan (a `cluster` event isolating or relocating a cluster): CPU, (type, cluster), place.
type Scan = (u32, (u8, u32), u64);

/// A decision about to be made, as the queue sees it.
#[derive(Clone, Copy, Debug)]
pub(super) struct Decision {
    pub cpu: u32,
    pub order: u8,
    /// When the request started (0: unknown): what a refusal, or a success from a cluster its
    /// allocation took off the free list, could not have seen after.
    pub start: Ts,
    /// A success: the kernel's slots (type, offset, count); `None`: a refusal.
    pub slots: Option<(u8, u64, u64)>,
}

/// The per-CPU scans and the recent frees.
#[derive(Debug, Default)]
pub(super) struct ConcurrentFrees {
    /// Set by the first `cluster` event: only such streams are looked at.
    enabled: bool,
    /// Set by the first grant: frees are remembered for 6.12's batches ([`Self::unseen_by_batch`])
    /// and refusals ([`Self::unseen_by_refusal`]).
    grants: bool,
    /// Frees and scans noted so far (their order).
    seq: u64,
    cpus: Vec<CpuScan>,
    recent: VecDeque<Recent>,
    /// Recent frees with a CPU in `scanned_before` (none: a success has nothing to hide).
    behind_scans: usize,
    /// The last [`MAX_RECENT`] scans, oldest first.
    scans: VecDeque<Scan>,
    /// Decisions that had frees hidden, and the frees hidden over all of them.
    decisions: u64,
    hidden: u64,
}

fn cluster_of(f: &Free) -> (u8, u32) {
    (f.swap_type, (f.offset / CLUSTER_SLOTS) as u32)
}

fn cpu_index(cpu: u32) -> usize {
    crate::models::cpu_index(cpu)
}

impl ConcurrentFrees {
    fn cpu_mut(&mut self, cpu: u32) -> &mut CpuScan {
        let i = cpu_index(cpu);
        if self.cpus.len() <= i {
            self.cpus.resize_with(i + 1, CpuScan::default);
        }
        let len = self.cpus.len();
        &mut self.cpus[i.min(len - 1)]
    }

    /// Decisions made with frees hidden, and frees hidden over all of them.
    pub(super) fn counts(&self) -> (u64, u64) {
        (self.decisions, self.hidden)
    }

    /// A `cluster` event: notes the scan, and the cluster for its CPU's allocation in flight.
    pub(super) fn cluster(&mut self, c: &ClusterMove) {
        self.enabled = true;
        let key = (c.swap_type, c.cluster);
        let scan = matches!(
            c.list,
            cluster_list::ISOLATED | cluster_list::FRAG | cluster_list::FULL
        );
        if !scan {
            return;
        }
        self.seq += 1;
        let seq = self.seq;
        if self.scans.len() >= MAX_RECENT {
            self.scans.pop_front();
        }
        self.scans.push_back((cpu_index(c.cpu) as u32, key, seq));
        let s = self.cpu_mut(c.cpu);
        if c.list == cluster_list::ISOLATED && u64::from(c.count) >= CLUSTER_SLOTS {
            s.reclaiming = true;
        }
        if c.list == cluster_list::ISOLATED && c.count == 0 && !s.after_grant {
            s.from_free = Some(key);
        }
        if !s.after_grant && s.first_scan.is_none() {
            s.first_scan = Some(seq);
        }
        if !s.after_grant && !s.reclaiming && !s.clusters.contains(&key) {
            if s.clusters.len() >= MAX_SCANNED {
                s.clusters.remove(0);
            }
            s.clusters.push(key);
        }
    }

    /// A free, as the stream has it: remembered on streams with cluster events.
    pub(super) fn free(&mut self, f: &Free) {
        if !self.enabled && !self.grants {
            return;
        }
        self.seq += 1;
        let key = cluster_of(f);
        let own = cpu_index(f.cpu);
        let scanned_before: Vec<(u32, u64)> = self
            .cpus
            .iter()
            .enumerate()
            .filter(|(i, s)| *i != own && s.clusters.contains(&key))
            .map(|(i, s)| (i as u32, s.generation))
            .collect();
        if self.recent.len() >= MAX_RECENT
            && let Some(old) = self.recent.pop_front()
            && !old.scanned_before.is_empty()
        {
            self.behind_scans -= 1;
        }
        if !scanned_before.is_empty() {
            self.behind_scans += 1;
        }
        self.recent.push_back(Recent {
            free: *f,
            seq: self.seq,
            scanned_before,
        });
    }

    /// Whether `cpu` scanned `key` after note `seq`.
    fn scanned_after(&self, cpu: u32, key: (u8, u32), seq: u64) -> bool {
        self.scans
            .iter()
            .rev()
            .take_while(|(_, _, s)| *s > seq)
            .any(|(c, k, _)| *c == cpu && *k == key)
    }

    /// The recent frees decision `d` could not have seen, into `out` (cleared first).
    pub(super) fn unseen(&mut self, d: Decision, out: &mut Vec<Free>) {
        out.clear();
        if !self.enabled {
            return;
        }
        let cpu = cpu_index(d.cpu) as u32;
        // A success from a cluster its allocation took off the free list found its per-CPU
        // cluster and the nonfull list wanting first (6.18 on devices without discard, the ones
        // recorded here): as for a refusal, frees made after its start were not seen there.
        let from_free = d.slots.is_some_and(|(ty, off, _)| {
            self.cpus
                .get(cpu as usize)
                .is_some_and(|s| s.from_free == Some((ty, (off / CLUSTER_SLOTS) as u32)))
        });
        let refusal_start = (d.slots.is_none() || from_free)
            .then_some(d.start)
            .filter(|s| *s != 0);
        let (generation, pcp, first_scan) =
            self.cpus.get(cpu as usize).map_or((0, None, None), |s| {
                (
                    s.generation,
                    s.pcp.get(usize::from(d.order)).copied().flatten(),
                    s.first_scan,
                )
            });
        let past_pcp = pcp.zip(first_scan);
        if self.recent.is_empty()
            || (refusal_start.is_none() && self.behind_scans == 0 && past_pcp.is_none())
        {
            return;
        }
        for r in &self.recent {
            let f = &r.free;
            let candidate = r.scanned_before.contains(&(cpu, generation))
                || refusal_start.is_some_and(|s| s < f.ts_ns)
                || past_pcp.is_some_and(|(key, q)| cluster_of(f) == key && r.seq > q);
            if !candidate || cpu_index(f.cpu) as u32 == cpu {
                continue;
            }
            let taken = d.slots.is_some_and(|(ty, off, n)| {
                f.swap_type == ty && off < f.offset + u64::from(f.nr) && f.offset < off + n
            });
            if !taken && !self.scanned_after(cpu, cluster_of(f), r.seq) {
                out.push(*f);
            }
        }
        if !out.is_empty() {
            self.decisions += 1;
            self.hidden += out.len() as u64;
        }
    }

    /// 6.12 (no cluster events): the recent frees a refusal begun at `d.start` could not have
    /// seen, appended to `out` (left alone on other streams and decisions): frees by another
    /// CPU after it began for which `completes` holds — those that completed a free block the
    /// refusal would have taken (the engine asks its real occupancy whether the free's aligned
    /// block of the request's order is free now). Its scan drops `si->lock` to reclaim swap cache as it goes
    /// (`cluster_reclaim_range`), so other CPUs free meanwhile, behind it or ahead; whatever of
    /// it the scan saw, it found no room, so hiding such frees cannot make the model refuse what
    /// the kernel served. Frees that completed no block are left alone: they could not have
    /// changed the answer, and hiding them moves their cluster to the full list and back, to
    /// another place in its list than the kernel's.
    pub(super) fn unseen_by_refusal(
        &mut self,
        d: Decision,
        completes: impl Fn(&Free) -> bool,
        out: &mut Vec<Free>,
    ) {
        if self.enabled || !self.grants || d.slots.is_some() || d.start == 0 {
            return;
        }
        let cpu = cpu_index(d.cpu);
        let before = out.len();
        for r in self.recent.iter().rev() {
            let f = &r.free;
            if f.ts_ns <= d.start {
                break;
            }
            if cpu_index(f.cpu) != cpu && completes(f) {
                out.push(*f);
            }
        }
        if let Some(added) = out.get_mut(before..)
            && !added.is_empty()
        {
            added.reverse();
            self.decisions += 1;
            self.hidden += added.len() as u64;
        }
    }

    /// The recent frees a 6.12 batch refill (begun at `start`, 0: unknown) could not have seen:
    /// frees by CPUs other than `cpus` (the deciding and the entry CPU) after the request began,
    /// whose slots the kernel's batch does not take. A batch takes every free slot its scan
    /// passes, and the scan drops `si->lock` to reclaim swap cache as it goes. A free in a
    /// cluster the batch took from, between its first and last slot there, or above its last
    /// there when the batch went on to another cluster, was behind the scan: into `out`. A free
    /// in another cluster goes to `elsewhere`: it matters only if it emptied its cluster (a scan
    /// takes a free cluster before any other, and the batch did not). Both are cleared first.
    pub(super) fn unseen_by_batch(
        &mut self,
        cpus: [u32; 2],
        start: Ts,
        swap_type: u8,
        batch: &[u64],
        out: &mut Vec<Free>,
        elsewhere: &mut Vec<Free>,
    ) {
        out.clear();
        elsewhere.clear();
        if start == 0 {
            return;
        }
        let mine = cpus.map(cpu_index);
        let last_cluster = batch.last().map(|&k| k / CLUSTER_SLOTS);
        for r in self.recent.iter().rev() {
            let f = &r.free;
            if f.ts_ns <= start {
                break;
            }
            if mine.contains(&cpu_index(f.cpu)) {
                continue;
            }
            let end = f.offset.saturating_add(u64::from(f.nr));
            let same = f.swap_type == swap_type;
            if same && batch.iter().any(|&k| f.offset <= k && k < end) {
                continue;
            }
            let c = f.offset / CLUSTER_SLOTS;
            let (lo, hi) = batch
                .iter()
                .filter(|&&k| k / CLUSTER_SLOTS == c)
                .fold((u64::MAX, 0), |(lo, hi), &k| (lo.min(k), hi.max(k)));
            if !same || lo == u64::MAX {
                elsewhere.push(*f);
            } else if (lo < f.offset && f.offset < hi) || (f.offset > hi && last_cluster != Some(c))
            {
                out.push(*f);
            }
        }
        if !out.is_empty() || !elsewhere.is_empty() {
            out.reverse();
            elsewhere.reverse();
            self.decisions += 1;
            self.hidden += (out.len() + elsewhere.len()) as u64;
        }
    }

    /// A grant on `cpu` was decided (`slot`: the kernel's first slot, when it served it): its
    /// allocation's scans are over, and a success sets the CPU's cluster for the order.
    pub(super) fn granted(&mut self, cpu: u32, order: u8, slot: Option<(u8, u64)>) {
        self.grants = true;
        let s = self.cpu_mut(cpu);
        s.after_grant = true;
        s.reclaiming = false;
        s.clusters.clear();
        s.first_scan = None;
        s.from_free = None;
        s.generation += 1;
        if let (Some((ty, off)), Some(p)) = (slot, s.pcp.get_mut(usize::from(order))) {
            *p = Some((ty, (off / CLUSTER_SLOTS) as u32));
        }
    }

    /// A request event on `cpu`: its allocation has returned; the next one starts afresh.
    pub(super) fn request_done(&mut self, cpu: u32) {
        let s = self.cpu_mut(cpu);
        if !s.after_grant {
            // Ended without a grant (the task moved CPUs): a new allocation all the same.
            s.generation += 1;
        }
        s.after_grant = false;
        s.reclaiming = false;
        s.clusters.clear();
        s.first_scan = None;
        s.from_free = None;
    }

    /// A device came or went: what was noted of it is void.
    pub(super) fn forget(&mut self) {
        for s in &mut self.cpus {
            s.clusters.clear();
        }
        self.recent.clear();
        self.scans.clear();
        self.behind_scans = 0;
    }
}

/// Requests remembered per CPU by [`RecentGrants`].
const RECENT_GRANTS: usize = 8;

/// One request decided on a CPU, as [`RecentGrants`] keeps it.
#[derive(Clone, Copy, Debug, Default)]
struct RecentGrant {
    ts_ns: Ts,
    pid: u32,
    order: u8,
    kept: bool,
}

/// Per CPU, the last requests decided there (their grants, refusals included), newest first: a
/// request that began before some of them was interleaved with them on its CPU — its task was
/// preempted inside the allocator (6.12's scan drops `si->lock` to reclaim swap cache) — and may
/// have read the CPU's per-CPU state before they moved it
/// ([`crate::alloc::AllocatorModel::interleaved`]).
#[derive(Debug, Default)]
pub(super) struct RecentGrants {
    cpus: Vec<[RecentGrant; RECENT_GRANTS]>,
}

impl RecentGrants {
    /// How many requests of `order` were decided on `cpu` by other tasks after the request of
    /// task `pid` began: after `start_ns`, or, when that is not known (0), after that task's own
    /// last request there (none when it is no longer kept).
    pub(super) fn earlier(&self, cpu: u32, order: u8, pid: u32, start_ns: Ts) -> u32 {
        let Some(recent) = self.cpus.get(cpu_index(cpu)) else {
            return 0;
        };
        let mut n = 0;
        for g in recent.iter().take_while(|g| g.kept) {
            if g.pid == pid || (start_ns != 0 && g.ts_ns <= start_ns) {
                return n;
            }
            if g.order == order {
                n += 1;
            }
        }
        if start_ns != 0 { n } else { 0 }
    }

    /// A request of task `pid` for `order` was decided on `cpu` at `ts_ns`.
    pub(super) fn push(&mut self, cpu: u32, ts_ns: Ts, pid: u32, order: u8) {
        let i = cpu_index(cpu);
        if self.cpus.len() <= i {
            self.cpus
                .resize(i + 1, [RecentGrant::default(); RECENT_GRANTS]);
        }
        if let Some(r) = self.cpus.get_mut(i) {
            r.rotate_right(1);
            r[0] = RecentGrant {
                ts_ns,
                pid,
                order,
                kept: true,
            };
        }
    }

    /// Forgets everything (a swapoff: the per-CPU state is gone).
    pub(super) fn forget(&mut self) {
        self.cpus.clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mv(cpu: u32, cluster: u32, list: u8, count: u16) -> ClusterMove {
        ClusterMove {
            ts_ns: 0,
            cpu,
            swap_type: 0,
            cluster,
            list,
            old_list: cluster_list::NONFULL,
            order: 4,
            count,
        }
    }

    fn free(cpu: u32, offset: u64, ts_ns: Ts) -> Free {
        Free {
            ts_ns,
            cpu,
            swap_type: 0,
            offset,
            nr: 1,
        }
    }

    fn success(cpu: u32, offset: u64) -> Decision {
        Decision {
            cpu,
            order: 4,
            start: 0,
            slots: Some((0, offset, 16)),
        }
    }

    fn refusal(cpu: u32, start: Ts) -> Decision {
        Decision {
            cpu,
            order: 4,
            start,
            slots: None,
        }
    }

    fn unseen(q: &mut ConcurrentFrees, d: Decision) -> Vec<u64> {
        let mut out = Vec::new();
        q.unseen(d, &mut out);
        out.iter().map(|f| f.offset).collect()
    }

    #[test]
    fn only_streams_with_cluster_events_are_looked_at() {
        let mut q = ConcurrentFrees::default();
        q.free(&free(1, 5, 10));
        assert!(unseen(&mut q, refusal(0, 1)).is_empty());
        q.cluster(&mv(1, 0, cluster_list::NONFULL, 3));
        q.free(&free(1, 5, 10));
        assert_eq!(unseen(&mut q, refusal(0, 1)), vec![5]);
        assert_eq!(q.counts(), (1, 1));
    }

    #[test]
    fn a_free_behind_an_allocations_scan_is_unseen_by_it() {
        let mut q = ConcurrentFrees::default();
        q.cluster(&mv(0, 14, cluster_list::FRAG, 497));
        q.free(&free(1, 14 * 512 + 15, 10));
        q.free(&free(1, 3 * 512, 11));
        assert_eq!(unseen(&mut q, success(0, 23 * 512)), vec![14 * 512 + 15]);
        // Not by the CPU that freed it, nor by a grant taking its slots.
        assert!(unseen(&mut q, success(1, 23 * 512)).is_empty());
        assert!(unseen(&mut q, success(0, 14 * 512)).is_empty());
        // Once the allocation is decided, its next one sees them.
        q.granted(0, 4, None);
        q.request_done(0);
        q.free(&free(1, 14 * 512 + 16, 12));
        assert!(unseen(&mut q, success(0, 30 * 512)).is_empty());
    }

    #[test]
    fn a_refusal_does_not_see_frees_after_its_start_unless_it_scanned_them() {
        let mut q = ConcurrentFrees::default();
        q.cluster(&mv(3, 71, cluster_list::NONFULL, 496));
        q.free(&free(3, 71 * 512, 100)); // during the request
        q.free(&free(3, 72 * 512, 40)); // before it started
        q.free(&free(0, 73 * 512, 100)); // its own CPU
        assert_eq!(unseen(&mut q, refusal(0, 50)), vec![71 * 512]);
        assert!(unseen(&mut q, refusal(0, 0)).is_empty(), "start unknown");
        // The refusing CPU scanned cluster 71 after the free: it saw it.
        q.cluster(&mv(0, 71, cluster_list::ISOLATED, 496));
        assert!(unseen(&mut q, refusal(0, 50)).is_empty());
    }

    #[test]
    fn the_relocation_after_a_grant_and_full_cluster_reclaims_are_no_scans() {
        let mut q = ConcurrentFrees::default();
        q.granted(0, 4, None);
        q.cluster(&mv(0, 14, cluster_list::FRAG, 506));
        q.free(&free(1, 14 * 512, 10));
        assert!(
            unseen(&mut q, success(0, 20 * 512)).is_empty(),
            "post-grant"
        );
        q.request_done(0);
        q.cluster(&mv(0, 20, cluster_list::ISOLATED, 512));
        q.cluster(&mv(0, 21, cluster_list::FRAG, 500));
        q.free(&free(1, 21 * 512, 10));
        assert!(unseen(&mut q, success(0, 22 * 512)).is_empty(), "a reclaim");
    }

    #[test]
    fn a_free_in_the_cpus_own_cluster_after_its_first_scan_is_unseen() {
        let mut q = ConcurrentFrees::default();
        q.cluster(&mv(3, 0, cluster_list::NONFULL, 1));
        // CPU 2's last order-4 grant was in cluster 21: its per-CPU cluster.
        q.granted(2, 4, Some((0, 21 * 512 + 16)));
        q.request_done(2);
        // Its next allocation takes cluster 7 off the free list; then CPU 3 frees in 21.
        q.cluster(&mv(2, 7, cluster_list::ISOLATED, 0));
        q.free(&free(3, 21 * 512 + 48, 10));
        assert_eq!(unseen(&mut q, success(2, 7 * 512)), vec![21 * 512 + 48]);
        // Before its first scan it would have seen it.
        let mut q = ConcurrentFrees::default();
        q.cluster(&mv(3, 0, cluster_list::NONFULL, 1));
        q.granted(2, 4, Some((0, 21 * 512 + 16)));
        q.request_done(2);
        q.free(&free(3, 21 * 512 + 48, 10));
        q.cluster(&mv(2, 7, cluster_list::ISOLATED, 0));
        assert!(unseen(&mut q, success(2, 7 * 512)).is_empty());
    }

    #[test]
    fn a_batch_does_not_see_frees_after_its_start_that_it_did_not_take() {
        let batch = |q: &mut ConcurrentFrees, cpus: [u32; 2], start: Ts| {
            let (mut out, mut elsewhere) = (Vec::new(), Vec::new());
            q.unseen_by_batch(
                cpus,
                start,
                0,
                &[100, 101, 105, 600],
                &mut out,
                &mut elsewhere,
            );
            let offsets = |v: &[Free]| v.iter().map(|f| f.offset).collect::<Vec<_>>();
            (offsets(&out), offsets(&elsewhere))
        };
        let mut q = ConcurrentFrees::default();
        q.free(&free(2, 103, 60));
        assert_eq!(
            batch(&mut q, [0, 0], 50),
            (vec![], vec![]),
            "before any grant"
        );
        q.granted(1, 4, Some((0, 512)));
        q.free(&free(2, 102, 40)); // before the refill began
        q.free(&free(2, 103, 60)); // behind its scan
        q.free(&free(2, 105, 61)); // taken by it
        q.free(&free(0, 106, 62)); // the deciding CPU's own
        q.free(&free(3, 107, 63)); // the entry CPU's own
        q.free(&free(1, 108, 64)); // above its last slot in a cluster it left
        q.free(&free(1, 99, 65)); // below its first there: maybe never scanned
        q.free(&free(1, 601, 66)); // above its last in the cluster it ended in
        q.free(&free(1, 2000, 67)); // in another cluster
        assert_eq!(batch(&mut q, [0, 3], 50), (vec![103, 108], vec![2000]));
        assert_eq!(batch(&mut q, [0, 3], 0), (vec![], vec![]), "start unknown");
        assert_eq!(q.counts(), (1, 3));
        // A single success on a stream without cluster events hides nothing.
        assert!(unseen(&mut q, success(0, 4 * 512)).is_empty());
    }

    #[test]
    fn a_612_refusal_does_not_see_frees_by_other_cpus_after_its_start() {
        let refused = |q: &mut ConcurrentFrees, d: Decision| {
            let mut out = Vec::new();
            q.unseen_by_refusal(d, |f| f.offset != 104, &mut out);
            out.iter().map(|f| f.offset).collect::<Vec<_>>()
        };
        let mut q = ConcurrentFrees::default();
        q.free(&free(1, 700, 60));
        assert!(
            refused(&mut q, refusal(0, 50)).is_empty(),
            "frees are remembered only once grants are seen"
        );
        q.granted(2, 4, Some((0, 512)));
        q.free(&free(1, 100, 40)); // before the request began
        q.free(&free(1, 101, 55)); // after it began, another CPU's
        q.free(&free(0, 102, 56)); // the refusing CPU's own (its own reclaim)
        q.free(&free(2, 103, 57));
        q.free(&free(2, 104, 58)); // completed no free block
        assert_eq!(refused(&mut q, refusal(0, 50)), vec![101, 103]);
        assert!(refused(&mut q, refusal(0, 0)).is_empty(), "start unknown");
        assert!(
            refused(&mut q, success(0, 4 * 512)).is_empty(),
            "a success hides nothing"
        );
        assert!(
            unseen(&mut q, refusal(0, 50)).is_empty(),
            "the 7.x rule needs cluster events"
        );
        assert_eq!(q.counts(), (1, 2));
        q.cluster(&mv(1, 9, cluster_list::FRAG, 3));
        assert!(
            refused(&mut q, refusal(0, 50)).is_empty(),
            "streams with cluster events keep the 7.x rule"
        );
    }

    #[test]
    fn a_success_from_the_free_list_is_like_a_refusal() {
        let mut q = ConcurrentFrees::default();
        q.cluster(&mv(1, 38, cluster_list::ISOLATED, 497)); // its nonfull walk
        q.free(&free(3, 8 * 512, 100)); // another CPU's, after it began
        q.free(&free(3, 9 * 512, 40)); // before it began
        let took_free = |q: &mut ConcurrentFrees| {
            let mut out = Vec::new();
            q.unseen(
                Decision {
                    cpu: 1,
                    order: 4,
                    start: 50,
                    slots: Some((0, 64 * 512, 16)),
                },
                &mut out,
            );
            out.iter().map(|f| f.offset).collect::<Vec<_>>()
        };
        assert!(took_free(&mut q).is_empty(), "not from the free list");
        q.cluster(&mv(1, 64, cluster_list::ISOLATED, 0));
        assert_eq!(took_free(&mut q), vec![8 * 512]);
    }

    #[test]
    fn requests_interleaved_on_a_cpu_are_those_decided_after_one_began() {
        let mut r = RecentGrants::default();
        r.push(0, 10, 1, 4);
        r.push(0, 20, 2, 4);
        r.push(0, 25, 2, 0);
        r.push(1, 30, 3, 4);
        // Untimed: after the task's own last request on that CPU, if kept.
        assert_eq!(r.earlier(0, 4, 1, 0), 1);
        assert_eq!(r.earlier(0, 0, 1, 0), 1);
        assert_eq!(r.earlier(0, 4, 7, 0), 0);
        // Timed: after its start.
        assert_eq!(r.earlier(0, 4, 7, 15), 1);
        assert_eq!(r.earlier(0, 4, 7, 5), 2);
        assert_eq!(r.earlier(0, 4, 7, 20), 0);
        assert_eq!(r.earlier(1, 4, 7, 5), 1);
        assert_eq!(r.earlier(2, 4, 7, 5), 0);
        for t in 0..100 {
            r.push(0, 100 + t, 9, 4);
        }
        assert_eq!(r.earlier(0, 4, 7, 5), RECENT_GRANTS as u32, "bounded");
        r.forget();
        assert_eq!(r.earlier(0, 4, 7, 5), 0);
    }

    #[test]
    fn recent_frees_are_bounded() {
        let mut q = ConcurrentFrees::default();
        q.cluster(&mv(1, 0, cluster_list::NONFULL, 3));
        for i in 0..2 * MAX_RECENT as u64 {
            q.free(&free(1, 512 + i, 100 + i));
        }
        assert_eq!(unseen(&mut q, refusal(0, 1)).len(), MAX_RECENT);
        q.forget();
        assert!(unseen(&mut q, refusal(0, 1)).is_empty());
    }
}
