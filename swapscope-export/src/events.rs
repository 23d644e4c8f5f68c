//! One row per event ([`EVENT_COLUMNS`]): every kind in one table, the columns that do not apply
//! to a kind left empty; lists (counter samples, device lists, bad slots) as JSON in `detail`.

use std::{fmt::Write as _, io::Write};

use super::{
    ExportError,
    columns::{EVENT_COLUMNS, EventCol},
    table::{Format, Table, Value},
};
use crate::{
    event::{AllocResult, Event, cluster_list, cluster_list_name},
    record::RecordingHeader,
    sink::{Sink, SinkError},
    source::Summary,
};

pub use crate::event::KINDS;

/// Which kinds to export (`--kinds`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct KindFilter(u16);

impl Default for KindFilter {
    fn default() -> Self {
        KindFilter::ALL
    }
}

impl KindFilter {
    pub const ALL: KindFilter = KindFilter((1 << KINDS.len()) - 1);

    /// A comma-separated list of kind names ([`KINDS`]).
    pub fn parse(list: &str) -> Result<Self, ExportError> {
        let mut bits = 0u16;
        for name in list.split(',').map(str::trim).filter(|s| !s.is_empty()) {
            let Some(i) = KINDS.iter().position(|k| k.eq_ignore_ascii_case(name)) else {
                return Err(ExportError::Kind {
                    given: name.to_string(),
                });
            };
            bits |= 1 << i;
        }
        if bits == 0 {
            return Err(ExportError::NoKinds);
        }
        Ok(KindFilter(bits))
    }

    pub fn accepts(&self, ev: &Event) -> bool {
        self.0 & (1 << ev.kind_index()) != 0
    }

    /// The kinds, comma-separated.
    pub fn names(&self) -> String {
        KINDS
            .iter()
            .enumerate()
            .filter(|(i, _)| self.0 & (1 << i) != 0)
            .map(|(_, k)| *k)
            .collect::<Vec<_>>()
            .join(",")
    }
}

/// Header facts kept in a Parquet file's key/value metadata.
pub(super) fn header_metadata(header: &RecordingHeader, table: &str) -> Vec<(String, String)> {
    vec![
        ("swapscope.table".into(), table.into()),
        (
            "swapscope.version".into(),
            env!("CARGO_PKG_VERSION").to_string(),
        ),
        ("swapscope.source".into(), header.source.clone()),
        (
            "swapscope.kernel_release".into(),
            header.kernel_release.clone(),
        ),
        ("swapscope.boot_id".into(), header.boot_id.clone()),
        (
            "swapscope.realtime_minus_boottime_ns".into(),
            header.realtime_minus_boottime_ns.to_string(),
        ),
        ("swapscope.page_size".into(), header.page_size.to_string()),
    ]
}

/// Writes `ev`'s lists as JSON into `out` (cleared first); false when the kind has none.
pub(super) fn detail(ev: &Event, out: &mut String) -> Result<bool, ExportError> {
    out.clear();
    match ev {
        Event::Counters(c) => {
            out.push('{');
            for (i, (name, v)) in c.values.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                out.push_str(&serde_json::to_string(name)?);
                let _ = write!(out, ":{v}");
            }
            out.push('}');
        }
        Event::Devices(d) => {
            out.push('[');
            for (i, dev) in d.devices.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                let _ = write!(
                    out,
                    "{{\"index\":{},\"path\":{},\"kind\":\"{}\",\"size_kb\":{},\"used_kb\":{},\"prio\":{}}}",
                    dev.index,
                    serde_json::to_string(&dev.path)?,
                    dev.kind.as_str(),
                    dev.size_kb,
                    dev.used_kb,
                    dev.prio
                );
            }
            out.push(']');
        }
        Event::SwapOn(on) => {
            out.push('[');
            for (i, b) in on.bad.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                let _ = write!(out, "{b}");
            }
            out.push(']');
        }
        Event::Grant(g) => {
            let _ = write!(
                out,
                "{{\"req_cpu\":{},\"start_ns\":{},\"batch\":[",
                g.req_cpu, g.start_ns
            );
            for (i, b) in g.batch.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                let _ = write!(out, "{b}");
            }
            out.push_str("]}");
        }
        _ => return Ok(false),
    }
    Ok(true)
}

/// The row of event number `seq`; `detail` is its JSON, when its kind has lists.
pub fn event_row<'a>(
    seq: u64,
    ev: &'a Event,
    detail: Option<&'a str>,
) -> [Value<'a>; EventCol::COUNT] {
    use EventCol as C;
    let mut r = [Value::Null; EventCol::COUNT];
    let mut set = |c: EventCol, v: Value<'a>| r[c as usize] = v;
    let u = |n: u32| Value::U(u64::from(n));
    set(C::Seq, Value::U(seq));
    set(C::TsNs, Value::U(ev.ts()));
    set(C::Kind, Value::Str(ev.kind_name()));
    if let Some(d) = detail {
        set(C::Detail, Value::Str(d));
    }
    match ev {
        Event::Writeout(w) => {
            set(C::Cpu, u(w.cpu));
            set(C::Pid, u(w.pid));
            set(C::Tgid, u(w.tgid));
            set(C::SwapType, Value::U(w.swap_type.into()));
            set(C::Offset, Value::U(w.offset));
            set(C::Order, Value::U(w.order.into()));
            if let Some(pfn) = w.pfn {
                set(C::Pfn, Value::U(pfn));
            }
            set(C::Flags, u(w.flags));
        }
        Event::Alloc(a) => {
            set(C::Cpu, u(a.cpu));
            set(C::Order, Value::U(a.order.into()));
            set(C::Id, Value::U(a.id));
            let result = match a.result {
                AllocResult::Success { swap_type, offset } => {
                    set(C::SwapType, Value::U(swap_type.into()));
                    set(C::Offset, Value::U(offset));
                    "success"
                }
                AllocResult::Failure => "failure",
                AllocResult::Unknown => "unknown",
            };
            set(C::Result, Value::Str(result));
            if let Some(ns) = a.latency_ns {
                set(C::LatencyNs, u(ns));
            }
        }
        Event::Free(f) => {
            set(C::Cpu, u(f.cpu));
            set(C::SwapType, Value::U(f.swap_type.into()));
            set(C::Offset, Value::U(f.offset));
            set(C::Nr, u(f.nr));
        }
        Event::Split(s) => {
            set(C::Cpu, u(s.cpu));
            set(C::Pid, u(s.pid));
            set(C::Id, Value::U(s.id));
            if let Some(o) = s.old_order {
                set(C::Order, Value::U(o.into()));
            }
            set(C::NewOrder, Value::U(s.new_order.into()));
        }
        Event::SwapIn(si) => {
            set(C::Cpu, u(si.cpu));
            set(C::Pid, u(si.pid));
            set(C::Tgid, u(si.tgid));
            set(C::Id, Value::U(si.id));
            set(C::SwapType, Value::U(si.swap_type.into()));
            set(C::Offset, Value::U(si.offset));
            if let Some(o) = si.order {
                set(C::Order, Value::U(o.into()));
            }
            set(C::Flags, u(si.flags));
        }
        Event::Cluster(c) => {
            set(C::Cpu, u(c.cpu));
            set(C::SwapType, Value::U(c.swap_type.into()));
            set(C::Offset, Value::U(u64::from(c.cluster) * 512));
            if let Some(o) = ev.order() {
                set(C::Order, Value::U(o.into()));
            }
            set(C::ClusterList, Value::Str(cluster_list_name(c.list)));
            if c.old_list != cluster_list::UNKNOWN {
                set(C::OldClusterList, Value::Str(cluster_list_name(c.old_list)));
            }
            set(C::Count, u(u32::from(c.count)));
        }
        Event::Grant(g) => {
            set(C::Cpu, u(g.cpu));
            set(C::Pid, u(g.pid));
            set(C::Tgid, u(g.tgid));
            set(C::Id, Value::U(g.id));
            set(C::SwapType, Value::U(g.swap_type.into()));
            set(C::Offset, Value::U(g.offset));
            set(C::Order, Value::U(g.order.into()));
            set(C::Nr, u(g.nr));
        }
        Event::Marker(m) => set(C::Label, Value::Str(&m.label)),
        Event::Lost(l) => {
            set(C::RingbufLost, Value::U(l.ringbuf));
            set(C::UserspaceLost, Value::U(l.userspace));
        }
        Event::SwapOn(on) => {
            set(C::SwapType, Value::U(on.swap_type.into()));
            set(C::MaxSlots, Value::U(on.max));
            set(C::BadSlots, Value::U(on.bad.len() as u64));
            set(C::Flags, u(on.flags));
            set(C::Prio, Value::I(on.prio.into()));
        }
        Event::SwapOff(off) => set(C::SwapType, Value::U(off.swap_type.into())),
        Event::Counters(_) | Event::Devices(_) => {}
    }
    r
}

/// The export sink: every event the filter accepts becomes a row, as it passes.
pub struct EventExport<W: Write + Send> {
    name: String,
    table: Option<Table<W>>,
    filter: KindFilter,
    seq: u64,
    rows: u64,
    detail: String,
    out: Option<W>,
}

impl<W: Write + Send> EventExport<W> {
    /// Starts the table on `out`; `name` names it in errors.
    pub fn new(
        format: Format,
        out: W,
        name: &str,
        header: &RecordingHeader,
        filter: KindFilter,
    ) -> Result<Self, ExportError> {
        let mut meta = header_metadata(header, "events");
        meta.push(("swapscope.kinds".into(), filter.names()));
        Ok(EventExport {
            name: name.to_string(),
            table: Some(Table::new(format, EVENT_COLUMNS, out, meta)?),
            filter,
            seq: 0,
            rows: 0,
            detail: String::new(),
            out: None,
        })
    }

    /// Rows written.
    pub fn rows(&self) -> u64 {
        self.rows
    }

    /// Events seen (all kinds).
    pub fn events(&self) -> u64 {
        self.seq
    }

    /// The writer, once the table is finished.
    pub fn into_writer(self) -> Option<W> {
        self.out
    }

    fn write(&mut self, batch: &[Event]) -> Result<(), ExportError> {
        let Some(table) = self.table.as_mut() else {
            return Err(ExportError::Internal("events after the end".into()));
        };
        for ev in batch {
            let seq = self.seq;
            self.seq += 1;
            if !self.filter.accepts(ev) {
                continue;
            }
            let has_detail = detail(ev, &mut self.detail)?;
            let row = event_row(seq, ev, has_detail.then_some(self.detail.as_str()));
            table.write_row(&row)?;
            self.rows += 1;
        }
        Ok(())
    }
}

impl<W: Write + Send> Sink for EventExport<W> {
    fn push(&mut self, batch: &[Event]) -> Result<(), SinkError> {
        self.write(batch).map_err(|e| e.sink(&self.name))
    }

    fn restart(&mut self, _header: &RecordingHeader) -> Result<(), SinkError> {
        Err(SinkError::Other(format!(
            "writing {}: the stream started over (an export reads a recording once)",
            self.name
        )))
    }

    fn finish(&mut self, _summary: &Summary) -> Result<(), SinkError> {
        if let Some(t) = self.table.take() {
            self.out = Some(t.finish().map_err(|e| e.sink(&self.name))?);
        }
        Ok(())
    }
}
