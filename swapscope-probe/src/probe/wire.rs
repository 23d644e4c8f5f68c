//! The BPF ring buffer's wire format: the full-tier events of `swapscope_common` decoded into
//! core's [`Event`]s (write-outs, whose layout is also the recording's write-out record, are
//! decoded by core's `record::codec::parse_writeout`). Every read goes through core's one
//! bounds-checked reader, `record::codec::Dec`.

use swapscope_common::GRANT_BATCH_MAX;

use crate::event::{Alloc, AllocResult, ClusterMove, Event, Free, Grant, Split, SwapIn};
use crate::record::codec::{Dec, bpf_header};

/// Decodes a full-tier BPF event (`swapscope_common::{AllocEvent, FreeEvent, SplitEvent, SwapInEvent,
/// ClusterEvent}`, by
/// their `#[repr(C)]` layouts) into an [`Event`]. `None` for other kinds or short buffers.
/// Write-outs are not decoded here: the recorder stores their bytes verbatim.
pub fn from_bpf(bytes: &[u8], swp_type_shift: u8) -> Option<Event> {
    use swapscope_common::kind;
    let mut d = Dec::new(bytes);
    let h = bpf_header(&mut d).ok()?;
    let (ts_ns, cpu) = (h.ts_ns, h.cpu);
    let shift = u32::from(swp_type_shift.clamp(1, 63));
    let ev = match h.kind {
        kind::ALLOC => {
            let id = d.u64().ok()?;
            let swap_val = d.u64().ok()?;
            let _pid_tgid = d.u64().ok()?;
            let success = d.u8().ok()? != 0;
            let order = d.u8().ok()?;
            let _pad = d.bytes(2).ok()?;
            let latency = d.u32().ok()?;
            Event::Alloc(Alloc {
                ts_ns,
                cpu,
                order,
                id,
                latency_ns: (latency != 0).then_some(latency),
                result: if success {
                    AllocResult::Success {
                        swap_type: (swap_val >> shift) as u8,
                        offset: swap_val & ((1u64 << shift) - 1),
                    }
                } else {
                    AllocResult::Failure
                },
                inferred: false,
            })
        }
        kind::FREE => {
            let offset = d.u64().ok()?;
            let _inuse = d.u64().ok()?;
            let nr = d.u32().ok()?;
            let swap_type = d.u8().ok()?;
            Event::Free(Free {
                ts_ns,
                cpu,
                swap_type,
                offset,
                nr,
            })
        }
        kind::SPLIT => {
            let id = d.u64().ok()?;
            let pid = d.u64().ok()? as u32;
            let old_order = d.order().ok()?;
            let new_order = d.u8().ok()?;
            Event::Split(Split {
                ts_ns,
                cpu,
                pid,
                id,
                old_order,
                new_order,
                inferred: false,
            })
        }
        kind::SWAPIN => {
            let swap_val = d.u64().ok()?;
            let pid_tgid = d.u64().ok()?;
            let id = d.u64().ok()?;
            let flags = d.u32().ok()?;
            let order = d.order().ok()?;
            Event::SwapIn(SwapIn {
                ts_ns,
                cpu,
                pid: pid_tgid as u32,
                tgid: (pid_tgid >> 32) as u32,
                id,
                swap_type: (swap_val >> shift) as u8,
                offset: swap_val & ((1u64 << shift) - 1),
                order,
                flags,
            })
        }
        kind::CLUSTER => {
            let cluster = d.u32().ok()?;
            let count = d.u16().ok()?;
            let swap_type = d.u8().ok()?;
            let list = d.u8().ok()?;
            let old_list = d.u8().ok()?;
            let order = d.u8().ok()?;
            Event::Cluster(ClusterMove {
                ts_ns,
                cpu,
                swap_type,
                cluster,
                list,
                old_list,
                order,
                count,
            })
        }
        kind::GRANT => {
            let id = d.u64().ok()?;
            let swap_val = d.u64().ok()?;
            let pid_tgid = d.u64().ok()?;
            let nr = u32::from(d.u16().ok()?);
            let order = d.u8().ok()?;
            let _pad = d.u8().ok()?;
            let req_cpu = d.u32().ok()?;
            let start_ns = d.u64().ok()?;
            let mask = (1u64 << shift) - 1;
            // A batch grant carries its slots after the fixed part (`GrantBatchEvent`).
            let batch = if usize::from(h.size)
                == std::mem::size_of::<swapscope_common::GrantBatchEvent>()
                && nr >= 2
                && nr as usize <= GRANT_BATCH_MAX
            {
                let mut b = Vec::with_capacity(nr as usize);
                for _ in 0..nr {
                    b.push(d.u64().ok()? & mask);
                }
                b
            } else {
                Vec::new()
            };
            Event::Grant(Grant {
                ts_ns,
                cpu,
                req_cpu: if req_cpu == swapscope_common::CPU_UNKNOWN {
                    cpu
                } else {
                    req_cpu
                },
                pid: pid_tgid as u32,
                tgid: (pid_tgid >> 32) as u32,
                id,
                swap_type: (swap_val >> shift) as u8,
                offset: swap_val & mask,
                order,
                nr,
                batch,
                start_ns,
            })
        }
        _ => return None,
    };
    Some(ev)
}

/// `si->inuse_pages` as a full-tier free event saw it (before that free), with the 6.14+
/// `SWAP_USAGE_OFFLIST_BIT` (bit 30) masked off; `None` for other events.
pub fn free_event_inuse(bytes: &[u8]) -> Option<u64> {
    let mut d = Dec::new(bytes);
    let h = bpf_header(&mut d).ok()?;
    if h.kind != swapscope_common::kind::FREE {
        return None;
    }
    let _offset = d.u64().ok()?;
    d.u64().ok().map(|v| v & !(1u64 << 30))
}

#[cfg(test)]
mod tests {
    use swapscope_common::EventHeader;

    use super::*;

    fn bpf_bytes<T: Copy>(v: &T) -> Vec<u8> {
        // SAFETY: `T` is one of the `#[repr(C)]` plain-old-data event structs with explicit
        // padding, so every byte of it is initialised; the slice lives only as long as `v`.
        unsafe { std::slice::from_raw_parts((v as *const T).cast::<u8>(), size_of::<T>()) }.to_vec()
    }

    #[test]
    fn decodes_full_tier_events() {
        use swapscope_common::{
            AllocEvent, ClusterEvent, FreeEvent, SplitEvent, SwapInEvent, cluster_list, kind,
        };
        let hdr = |k: u16, size: usize| EventHeader {
            kind: k,
            size: size as u16,
            cpu: 3,
            ts_ns: 99,
        };
        let a = AllocEvent {
            header: hdr(kind::ALLOC, size_of::<AllocEvent>()),
            folio_id: 7,
            swap_val: (1u64 << 58) | 4096,
            pid_tgid: 5,
            success: 1,
            order: 4,
            _pad: [0; 2],
            latency_ns: 1234,
        };
        assert_eq!(
            from_bpf(&bpf_bytes(&a), 58),
            Some(Event::Alloc(Alloc {
                ts_ns: 99,
                cpu: 3,
                order: 4,
                id: 7,
                result: AllocResult::Success {
                    swap_type: 1,
                    offset: 4096
                },
                latency_ns: Some(1234),
                inferred: false,
            }))
        );
        let f = FreeEvent {
            header: hdr(kind::FREE, size_of::<FreeEvent>()),
            offset: 512,
            inuse: 10 | (1 << 30),
            nr: 16,
            swap_type: 2,
            _pad: [0; 3],
        };
        assert_eq!(
            from_bpf(&bpf_bytes(&f), 58),
            Some(Event::Free(Free {
                ts_ns: 99,
                cpu: 3,
                swap_type: 2,
                offset: 512,
                nr: 16
            }))
        );
        let sp = SplitEvent {
            header: hdr(kind::SPLIT, size_of::<SplitEvent>()),
            folio_id: 7,
            pid_tgid: (9 << 32) | 8,
            old_order: 0xff,
            new_order: 0,
            _pad: [0; 6],
        };
        assert_eq!(
            from_bpf(&bpf_bytes(&sp), 58),
            Some(Event::Split(Split {
                ts_ns: 99,
                cpu: 3,
                pid: 8,
                id: 7,
                old_order: None,
                new_order: 0,
                inferred: false,
            }))
        );
        assert_eq!(from_bpf(&bpf_bytes(&sp)[..20], 58), None);
        let si = SwapInEvent {
            header: hdr(kind::SWAPIN, size_of::<SwapInEvent>()),
            swap_val: (1 << 58) | 4096,
            pid_tgid: (9 << 32) | 8,
            folio_id: 7,
            flags: swapscope_common::folio_flags::SWAPCACHE,
            order: 4,
            _pad: [0; 3],
        };
        assert_eq!(
            from_bpf(&bpf_bytes(&si), 58),
            Some(Event::SwapIn(SwapIn {
                ts_ns: 99,
                cpu: 3,
                pid: 8,
                tgid: 9,
                id: 7,
                swap_type: 1,
                offset: 4096,
                order: Some(4),
                flags: swapscope_common::folio_flags::SWAPCACHE,
            }))
        );
        let cl = ClusterEvent {
            header: hdr(kind::CLUSTER, size_of::<ClusterEvent>()),
            cluster: 33,
            count: 17,
            swap_type: 1,
            list: cluster_list::FRAG,
            old_list: cluster_list::ISOLATED,
            order: 4,
            _pad: [0; 6],
        };
        assert_eq!(
            from_bpf(&bpf_bytes(&cl), 58),
            Some(Event::Cluster(ClusterMove {
                ts_ns: 99,
                cpu: 3,
                swap_type: 1,
                cluster: 33,
                list: cluster_list::FRAG,
                old_list: cluster_list::ISOLATED,
                order: 4,
                count: 17,
            }))
        );
        assert_eq!(free_event_inuse(&bpf_bytes(&f)), Some(10));
        assert_eq!(free_event_inuse(&bpf_bytes(&a)), None);
    }
}
