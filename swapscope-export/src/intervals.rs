//! The analysis's per-interval series ([`INTERVAL_COLUMNS`]), written as each interval closes.
//!
//! Long form: per interval, one row per (model, order) — `kernel` first, then each model in
//! report order — and one row with the interval's own figures (`model` = `kernel`, `order`
//! empty). The column set stays the same whatever models were asked for, so exports of
//! different runs concatenate, and `GROUP BY model, "order"` is the whole comparison.

use std::io::Write;

use super::{
    ExportError,
    columns::{INTERVAL_COLUMNS, IntervalCol},
    events::header_metadata,
    table::{Format, Table, Value},
};
use crate::{
    alloc::NR_ORDERS,
    event::Event,
    record::RecordingHeader,
    sink::{Sink, SinkError, analysis::Analysis, snapshot::IntervalRow},
    source::Summary,
};

/// The `model` of the rows that show what the stream says the kernel did.
pub const KERNEL: &str = "kernel";

/// The export sink of `--intervals`: an [`Analysis`] fed event by event, its closed intervals
/// written and dropped after every batch, the open one at the end.
pub struct IntervalExport<W: Write + Send> {
    name: String,
    analysis: Analysis,
    models: Vec<String>,
    table: Option<Table<W>>,
    next: u64,
    rows: u64,
    out: Option<W>,
}

impl<W: Write + Send> IntervalExport<W> {
    /// Starts the table on `out`; `analysis` is fresh (its interval length and models are the
    /// table's).
    pub fn new(
        format: Format,
        out: W,
        name: &str,
        header: &RecordingHeader,
        analysis: Analysis,
    ) -> Result<Self, ExportError> {
        let models = analysis.info().models.clone();
        let mut meta = header_metadata(header, "intervals");
        meta.push((
            "swapscope.interval_ns".into(),
            analysis.info().interval_ns.to_string(),
        ));
        meta.push(("swapscope.models".into(), models.join(",")));
        Ok(IntervalExport {
            name: name.to_string(),
            analysis,
            models,
            table: Some(Table::new(format, INTERVAL_COLUMNS, out, meta)?),
            next: 0,
            rows: 0,
            out: None,
        })
    }

    /// Rows written.
    pub fn rows(&self) -> u64 {
        self.table.as_ref().map_or(self.rows, Table::rows)
    }

    /// Intervals written.
    pub fn intervals(&self) -> u64 {
        self.next
    }

    /// The writer, once the table is finished.
    pub fn into_writer(self) -> Option<W> {
        self.out
    }

    fn write_closed(&mut self) -> Result<(), ExportError> {
        let Some(table) = self.table.as_mut() else {
            return Err(ExportError::Internal("events after the end".into()));
        };
        for row in self.analysis.take_closed_intervals() {
            write_interval(table, self.next, &row, &self.models)?;
            self.next += 1;
        }
        Ok(())
    }

    fn finish_table(&mut self) -> Result<(), ExportError> {
        self.write_closed()?;
        let Some(mut table) = self.table.take() else {
            return Ok(());
        };
        // The open interval: the snapshot's series now holds only it (or nothing, for an empty
        // stream).
        if let Some(last) = self.analysis.snapshot().intervals.last() {
            write_interval(&mut table, self.next, last, &self.models)?;
            self.next += 1;
        }
        self.rows = table.rows();
        self.out = Some(table.finish()?);
        Ok(())
    }
}

/// Writes one interval's rows.
pub fn write_interval<W: Write + Send>(
    table: &mut Table<W>,
    n: u64,
    r: &IntervalRow,
    models: &[String],
) -> Result<(), ExportError> {
    use IntervalCol as C;
    fn base<'a>(n: u64, r: &IntervalRow, model: &'a str) -> [Value<'a>; IntervalCol::COUNT] {
        let mut row = [Value::Null; IntervalCol::COUNT];
        row[C::Interval as usize] = Value::U(n);
        row[C::StartNs as usize] = Value::U(r.start_ts);
        row[C::LenNs as usize] = Value::U(r.len_ns);
        row[C::Model as usize] = Value::Str(model);
        row
    }
    let opt = |v: Option<u64>| v.map_or(Value::Null, Value::U);
    // The interval's own row.
    let markers = r.markers.join("\n");
    let mut row = base(n, r, KERNEL);
    row[C::Pswpout as usize] = Value::U(r.pswpout);
    row[C::FreedSlots as usize] = Value::U(r.freed_slots);
    row[C::RealUsedSlots as usize] = opt(r.real_used);
    row[C::ProcUsedKb as usize] = opt(r.proc_used_kb);
    row[C::LostTotal as usize] = Value::U(r.lost);
    if !r.markers.is_empty() {
        row[C::Markers as usize] = Value::Str(&markers);
    }
    table.write_row(&row)?;
    for o in 0..NR_ORDERS {
        let at = |a: &[u64; NR_ORDERS]| Value::U(a.get(o).copied().unwrap_or(0));
        let mut row = base(n, r, KERNEL);
        row[C::Order as usize] = Value::U(o as u64);
        row[C::Requests as usize] = at(&r.requests);
        row[C::Failures as usize] = at(&r.failures);
        row[C::Writeouts as usize] = at(&r.writeouts);
        row[C::Swpout as usize] = at(&r.swpout);
        row[C::SwpoutFallback as usize] = at(&r.swpout_fallback);
        table.write_row(&row)?;
    }
    for ((name, req), fail) in models.iter().zip(&r.model_requests).zip(&r.model_failures) {
        for o in 0..NR_ORDERS {
            let mut row = base(n, r, name);
            row[C::Order as usize] = Value::U(o as u64);
            row[C::Requests as usize] = Value::U(req.get(o).copied().unwrap_or(0));
            row[C::Failures as usize] = Value::U(fail.get(o).copied().unwrap_or(0));
            table.write_row(&row)?;
        }
    }
    Ok(())
}

impl<W: Write + Send> Sink for IntervalExport<W> {
    fn push(&mut self, batch: &[Event]) -> Result<(), SinkError> {
        for ev in batch {
            self.analysis.push_event(ev);
        }
        self.write_closed().map_err(|e| e.sink(&self.name))
    }

    fn restart(&mut self, _header: &RecordingHeader) -> Result<(), SinkError> {
        Err(SinkError::Other(format!(
            "writing {}: the stream started over (an export reads a recording once)",
            self.name
        )))
    }

    fn finish(&mut self, _summary: &Summary) -> Result<(), SinkError> {
        self.finish_table().map_err(|e| e.sink(&self.name))
    }
}
