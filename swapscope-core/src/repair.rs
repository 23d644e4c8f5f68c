//! Repair of a live stream: events the kernel did not deliver — a program it skipped because
//! another task was preempted inside it (`recursion_misses`) and that its rescue twin could not
//! deliver either — inferred from the events it did deliver, and marked `inferred`.
//!
//! Two inferences, each from evidence that cannot mean anything else:
//!
//! * **A request from its grant and its write-out.** A grant (emitted inside the allocator's
//!   lock, where programs are never skipped) names the slots, order, CPU and folio of a request;
//!   the request event follows from the allocation hook's exit in the same task, before that
//!   task writes the folio out. A write-out of granted slots whose request event has not come
//!   means it was skipped: it is inferred, just before the write-out.
//! * **A fallback split from the retry.** After the kernel refuses an order-k folio, reclaim
//!   splits it and asks again for its head page at order 0 (`shrink_folio_list`); the head keeps
//!   the folio's id. An order-0 request for a folio whose order-k request was refused, with no
//!   split of it in between, means the split event was skipped: it is inferred, just before.
//!
//! A refused request whose event was skipped leaves nothing to infer it from; a skipped
//! write-out or swap-in neither. Those stay counted as missed. Pure: no clocks, no syscalls.

use std::collections::HashMap;

use crate::engine::{BuildBucketHasher, stream_key};
use crate::event::{Alloc, AllocResult, Event, Grant, Split};

/// Grants (and refusals) remembered at most while their request event is awaited: past it,
/// those remembered first are forgotten (a bound when request events are missing).
const MAX_PENDING: usize = 1 << 16;

/// Events inferred so far, by kind.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Inferred {
    pub allocs: u64,
    pub splits: u64,
}

/// The repair state of one live stream.
#[derive(Debug, Default)]
pub struct Repair {
    /// Grants whose request event has not come, by the stream key of their first slot.
    granted: HashMap<u64, (u64, Grant), BuildBucketHasher>,
    /// Folios refused at an order above 0 whose split has not come: folio id → order.
    refused: HashMap<u64, (u64, u8), BuildBucketHasher>,
    seq: u64,
    pub inferred: Inferred,
}

impl Repair {
    /// Hands `ev` on to `out`, preceded by whatever it shows was skipped.
    pub fn push(&mut self, ev: Event, out: &mut Vec<Event>) {
        self.seq += 1;
        match &ev {
            Event::Grant(g) if g.nr > 0 => {
                if let Some(k) = stream_key(g.swap_type, g.offset) {
                    bound(&mut self.granted, self.seq);
                    self.granted.insert(k, (self.seq, g.clone()));
                }
            }
            Event::Alloc(a) => self.alloc(a, out),
            Event::Split(s) => {
                self.refused.remove(&s.id);
            }
            Event::Writeout(w) if w.has_slot() => {
                if let Some(k) = stream_key(w.swap_type, w.offset)
                    && let Some((_, g)) = self.granted.remove(&k)
                {
                    self.inferred.allocs += 1;
                    out.push(Event::Alloc(Alloc {
                        ts_ns: g.ts_ns,
                        cpu: g.cpu,
                        order: g.order,
                        id: g.id,
                        result: AllocResult::Success {
                            swap_type: g.swap_type,
                            offset: g.offset,
                        },
                        latency_ns: None,
                        inferred: true,
                    }));
                }
            }
            Event::Free(f) => {
                // Granted, then freed before the request returned (a refused memcg charge).
                if let Some(k) = stream_key(f.swap_type, f.offset) {
                    self.granted.remove(&k);
                }
            }
            _ => {}
        }
        out.push(ev);
    }

    fn alloc(&mut self, a: &Alloc, out: &mut Vec<Event>) {
        if let AllocResult::Success { swap_type, offset } = a.result
            && let Some(k) = stream_key(swap_type, offset)
        {
            self.granted.remove(&k);
        }
        if a.order > 0 {
            self.refused.remove(&a.id);
            if a.result == AllocResult::Failure {
                bound(&mut self.refused, self.seq);
                self.refused.insert(a.id, (self.seq, a.order));
            }
            return;
        }
        if let Some((_, order)) = self.refused.remove(&a.id) {
            self.inferred.splits += 1;
            out.push(Event::Split(Split {
                ts_ns: a.ts_ns,
                cpu: a.cpu,
                pid: 0,
                id: a.id,
                old_order: Some(order),
                new_order: 0,
                inferred: true,
            }));
        }
    }
}

/// Keeps `map` under [`MAX_PENDING`]: when full, forgets the older half.
fn bound<V>(map: &mut HashMap<u64, (u64, V), BuildBucketHasher>, seq: u64) {
    if map.len() >= MAX_PENDING {
        let cut = seq.saturating_sub(MAX_PENDING as u64 / 2);
        map.retain(|_, (s, _)| *s >= cut);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event::{Free, Writeout};

    fn grant(offset: u64, order: u8, id: u64) -> Event {
        Event::Grant(Grant {
            ts_ns: 10,
            cpu: 1,
            req_cpu: 1,
            pid: 5,
            tgid: 5,
            id,
            swap_type: 0,
            offset,
            order,
            nr: 1,
            batch: Vec::new(),
            start_ns: 0,
        })
    }

    fn alloc(order: u8, id: u64, result: AllocResult) -> Event {
        Event::Alloc(Alloc {
            ts_ns: 20,
            cpu: 1,
            order,
            id,
            result,
            latency_ns: None,
            inferred: false,
        })
    }

    fn writeout(offset: u64, order: u8) -> Event {
        Event::Writeout(Writeout {
            ts_ns: 30,
            cpu: 1,
            pid: 5,
            tgid: 5,
            swap_type: 0,
            offset,
            order,
            pfn: None,
            flags: 0,
        })
    }

    fn run(events: Vec<Event>) -> (Vec<Event>, Inferred) {
        let mut r = Repair::default();
        let mut out = Vec::new();
        for e in events {
            r.push(e, &mut out);
        }
        (out, r.inferred)
    }

    #[test]
    fn a_request_skipped_between_its_grant_and_its_write_out_is_inferred() {
        let ok = AllocResult::Success {
            swap_type: 0,
            offset: 512,
        };
        // Delivered: nothing inferred.
        let (out, n) = run(vec![grant(512, 4, 9), alloc(4, 9, ok), writeout(512, 4)]);
        assert_eq!((out.len(), n), (3, Inferred::default()));
        // Skipped: inferred before the write-out, from the grant.
        let (out, n) = run(vec![grant(512, 4, 9), writeout(512, 4)]);
        assert_eq!(n.allocs, 1);
        assert_eq!(
            out[1],
            Event::Alloc(Alloc {
                ts_ns: 10,
                cpu: 1,
                order: 4,
                id: 9,
                result: ok,
                latency_ns: None,
                inferred: true,
            })
        );
        assert!(matches!(out[2], Event::Writeout(_)));
        // Freed before the request returned (a refused charge): nothing to infer.
        let free = Event::Free(Free {
            ts_ns: 11,
            cpu: 1,
            swap_type: 0,
            offset: 512,
            nr: 16,
        });
        let (_, n) = run(vec![grant(512, 4, 9), free, writeout(512, 4)]);
        assert_eq!(n.allocs, 0);
    }

    #[test]
    fn a_fallback_split_skipped_before_the_retry_is_inferred() {
        let ok = AllocResult::Success {
            swap_type: 0,
            offset: 3,
        };
        let (out, n) = run(vec![alloc(4, 9, AllocResult::Failure), alloc(0, 9, ok)]);
        assert_eq!(n.splits, 1);
        assert!(
            matches!(&out[1], Event::Split(s) if s.inferred && s.old_order == Some(4) && s.id == 9)
        );
        // The split delivered: nothing inferred.
        let split = Event::Split(Split {
            ts_ns: 15,
            cpu: 1,
            pid: 5,
            id: 9,
            old_order: Some(4),
            new_order: 0,
            inferred: false,
        });
        let (_, n) = run(vec![
            alloc(4, 9, AllocResult::Failure),
            split,
            alloc(0, 9, ok),
        ]);
        assert_eq!(n.splits, 0);
        // Another folio's order-0 request: nothing inferred.
        let (_, n) = run(vec![alloc(4, 9, AllocResult::Failure), alloc(0, 8, ok)]);
        assert_eq!(n.splits, 0);
    }
}
