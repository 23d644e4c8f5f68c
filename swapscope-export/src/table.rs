//! Row writers: the same rows as CSV (RFC 4180 quoting) or Parquet (Arrow arrays, zstd,
//! row groups flushed at a bounded size). Pure: only the `Write` they are handed.

use std::{io::Write, sync::Arc};

use arrow_array::{
    ArrayRef, RecordBatch,
    builder::{Int32Builder, StringBuilder, UInt8Builder, UInt32Builder, UInt64Builder},
};
use arrow_schema::Schema;
use parquet::{
    arrow::ArrowWriter,
    basic::{Compression, ZstdLevel},
    file::{metadata::KeyValue, properties::WriterProperties},
};

use super::{
    ExportError,
    columns::{Column, ColumnType, schema},
};

/// One cell of a row. Numbers are range-checked against their column's type when written.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum Value<'a> {
    #[default]
    Null,
    U(u64),
    I(i64),
    Str(&'a str),
}

/// Output formats.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Format {
    Csv,
    Parquet,
}

impl Format {
    /// `csv` or `parquet`.
    pub fn parse(s: &str) -> Result<Format, ExportError> {
        match s.trim().to_ascii_lowercase().as_str() {
            "csv" => Ok(Format::Csv),
            "parquet" => Ok(Format::Parquet),
            _ => Err(ExportError::Format(s.to_string())),
        }
    }
}

/// Rows buffered into one Arrow batch at most.
pub const BATCH_ROWS: usize = 64 * 1024;
/// String bytes buffered into one Arrow batch at most (labels can be 64 KiB each).
pub const BATCH_STRING_BYTES: usize = 16 << 20;
/// Rows of one Parquet row group at most.
pub const ROW_GROUP_ROWS: usize = 1 << 20;
/// Encoded bytes of one Parquet row group at most (the writer holds a row group in memory).
pub const ROW_GROUP_BYTES: usize = 64 << 20;
/// zstd level of the Parquet pages.
pub const ZSTD_LEVEL: i32 = 3;

/// A table being written, in either format.
pub enum Table<W: Write + Send> {
    Csv(CsvTable<W>),
    Parquet(Box<ParquetTable<W>>),
}

impl<W: Write + Send> Table<W> {
    /// Starts a table of `columns` on `out`. `metadata`: Parquet key/value pairs (CSV has no
    /// place for them).
    pub fn new(
        format: Format,
        columns: &'static [Column],
        out: W,
        metadata: Vec<(String, String)>,
    ) -> Result<Self, ExportError> {
        Ok(match format {
            Format::Csv => Table::Csv(CsvTable::new(columns, out)?),
            Format::Parquet => Table::Parquet(Box::new(ParquetTable::new(columns, out, metadata)?)),
        })
    }

    /// Appends one row (`row.len()` = the number of columns).
    pub fn write_row(&mut self, row: &[Value<'_>]) -> Result<(), ExportError> {
        match self {
            Table::Csv(t) => t.write_row(row),
            Table::Parquet(t) => t.write_row(row),
        }
    }

    /// Rows written so far.
    pub fn rows(&self) -> u64 {
        match self {
            Table::Csv(t) => t.rows,
            Table::Parquet(t) => t.rows,
        }
    }

    /// Writes what is buffered (Parquet: the last row group and the footer), flushes, and
    /// hands the writer back.
    pub fn finish(self) -> Result<W, ExportError> {
        match self {
            Table::Csv(t) => t.finish(),
            Table::Parquet(t) => t.finish(),
        }
    }
}

fn check(columns: &[Column], row: &[Value<'_>]) -> Result<(), ExportError> {
    if row.len() != columns.len() {
        return Err(ExportError::Internal(format!(
            "a row of {} cells for {} columns",
            row.len(),
            columns.len()
        )));
    }
    Ok(())
}

fn mismatch(c: &Column, v: &Value<'_>) -> ExportError {
    ExportError::Value {
        column: c.name,
        value: format!("{v:?}"),
    }
}

/// CSV: a header line of the column names, then one line per row; LF line ends; strings
/// quoted when they hold a comma, a quote, CR or LF (quotes doubled), and an empty string
/// written `""` so it differs from an empty (NULL) field.
pub struct CsvTable<W: Write> {
    out: W,
    columns: &'static [Column],
    rows: u64,
}

impl<W: Write> CsvTable<W> {
    pub fn new(columns: &'static [Column], mut out: W) -> Result<Self, ExportError> {
        let names: Vec<&str> = columns.iter().map(|c| c.name).collect();
        out.write_all(names.join(",").as_bytes())?;
        out.write_all(b"\n")?;
        Ok(CsvTable {
            out,
            columns,
            rows: 0,
        })
    }

    pub fn write_row(&mut self, row: &[Value<'_>]) -> Result<(), ExportError> {
        check(self.columns, row)?;
        for (i, (c, v)) in self.columns.iter().zip(row).enumerate() {
            if i > 0 {
                self.out.write_all(b",")?;
            }
            match (c.ty, v) {
                (_, Value::Null) if c.nullable => {}
                (ColumnType::Str, Value::Str(s)) => write_csv_string(&mut self.out, s)?,
                (ColumnType::I32, Value::I(n)) if i32::try_from(*n).is_ok() => {
                    write!(self.out, "{n}")?;
                }
                (ColumnType::U8, Value::U(n)) if *n <= u64::from(u8::MAX) => {
                    write!(self.out, "{n}")?;
                }
                (ColumnType::U32, Value::U(n)) if *n <= u64::from(u32::MAX) => {
                    write!(self.out, "{n}")?;
                }
                (ColumnType::U64, Value::U(n)) => write!(self.out, "{n}")?,
                _ => return Err(mismatch(c, v)),
            }
        }
        self.out.write_all(b"\n")?;
        self.rows += 1;
        Ok(())
    }

    pub fn finish(mut self) -> Result<W, ExportError> {
        self.out.flush()?;
        Ok(self.out)
    }
}

/// What a spreadsheet takes for the start of a formula in a cell (OWASP, "CSV Injection").
const FORMULA_START: [char; 6] = ['=', '+', '-', '@', '\t', '\r'];

/// Writes `s` as one CSV field (RFC 4180). Characters that act on a terminal or hide text
/// (escape sequences, bidirectional overrides: `event::printable_cell`; line ends and tabs
/// stay, quoted) are written as their escapes (`export -o -` on a terminal ran them); a string a spreadsheet would run as a formula (it
/// starts with `=`, `+`, `-`, `@`, a tab or CR: a marker label or a device path from a hostile
/// recording) gets a leading `'` and is quoted, as OWASP advises; Parquet keeps it exact.
pub fn write_csv_string(out: &mut impl Write, s: &str) -> std::io::Result<()> {
    let s = &*swapscope_core::event::printable_cell(s);
    let formula = s.starts_with(FORMULA_START);
    if !formula && !s.is_empty() && !s.contains([',', '"', '\r', '\n']) {
        return out.write_all(s.as_bytes());
    }
    out.write_all(b"\"")?;
    if formula {
        out.write_all(b"'")?;
    }
    let mut rest = s;
    while let Some(i) = rest.find('"') {
        out.write_all(&rest.as_bytes()[..=i])?;
        out.write_all(b"\"")?;
        rest = &rest[i + 1..];
    }
    out.write_all(rest.as_bytes())?;
    out.write_all(b"\"")
}

/// One Arrow array under construction.
enum Builder {
    U8(UInt8Builder),
    U32(UInt32Builder),
    U64(UInt64Builder),
    I32(Int32Builder),
    Str(StringBuilder),
}

impl Builder {
    fn new(ty: ColumnType) -> Self {
        match ty {
            ColumnType::U8 => Builder::U8(UInt8Builder::with_capacity(BATCH_ROWS)),
            ColumnType::U32 => Builder::U32(UInt32Builder::with_capacity(BATCH_ROWS)),
            ColumnType::U64 => Builder::U64(UInt64Builder::with_capacity(BATCH_ROWS)),
            ColumnType::I32 => Builder::I32(Int32Builder::with_capacity(BATCH_ROWS)),
            ColumnType::Str => Builder::Str(StringBuilder::new()),
        }
    }

    /// Appends `v`; false when it does not fit the column's type.
    fn append(&mut self, v: &Value<'_>) -> bool {
        match (self, v) {
            (Builder::U8(b), Value::Null) => b.append_null(),
            (Builder::U32(b), Value::Null) => b.append_null(),
            (Builder::U64(b), Value::Null) => b.append_null(),
            (Builder::I32(b), Value::Null) => b.append_null(),
            (Builder::Str(b), Value::Null) => b.append_null(),
            (Builder::U8(b), Value::U(n)) => match u8::try_from(*n) {
                Ok(n) => b.append_value(n),
                Err(_) => return false,
            },
            (Builder::U32(b), Value::U(n)) => match u32::try_from(*n) {
                Ok(n) => b.append_value(n),
                Err(_) => return false,
            },
            (Builder::U64(b), Value::U(n)) => b.append_value(*n),
            (Builder::I32(b), Value::I(n)) => match i32::try_from(*n) {
                Ok(n) => b.append_value(n),
                Err(_) => return false,
            },
            (Builder::Str(b), Value::Str(s)) => b.append_value(s),
            _ => return false,
        }
        true
    }

    fn finish(&mut self) -> ArrayRef {
        match self {
            Builder::U8(b) => Arc::new(b.finish()),
            Builder::U32(b) => Arc::new(b.finish()),
            Builder::U64(b) => Arc::new(b.finish()),
            Builder::I32(b) => Arc::new(b.finish()),
            Builder::Str(b) => Arc::new(b.finish()),
        }
    }
}

/// Parquet through Arrow: rows gather in builders up to [`BATCH_ROWS`] rows or
/// [`BATCH_STRING_BYTES`] of strings, then go to the writer as one batch; the writer closes a
/// row group at [`ROW_GROUP_ROWS`] rows or [`ROW_GROUP_BYTES`] encoded bytes. Memory stays
/// at one batch and one row group, whatever the length of the stream.
pub struct ParquetTable<W: Write + Send> {
    writer: ArrowWriter<W>,
    schema: Arc<Schema>,
    columns: &'static [Column],
    builders: Vec<Builder>,
    buffered: usize,
    string_bytes: usize,
    rows: u64,
}

impl<W: Write + Send> ParquetTable<W> {
    pub fn new(
        columns: &'static [Column],
        out: W,
        metadata: Vec<(String, String)>,
    ) -> Result<Self, ExportError> {
        let schema = schema(columns);
        let props = WriterProperties::builder()
            .set_compression(Compression::ZSTD(ZstdLevel::try_new(ZSTD_LEVEL)?))
            .set_max_row_group_row_count(Some(ROW_GROUP_ROWS))
            .set_max_row_group_bytes(Some(ROW_GROUP_BYTES))
            .set_created_by(format!("swapscope {}", env!("CARGO_PKG_VERSION")))
            .set_key_value_metadata(Some(
                metadata
                    .into_iter()
                    .map(|(k, v)| KeyValue::new(k, v))
                    .collect(),
            ))
            .build();
        let writer = ArrowWriter::try_new(out, Arc::clone(&schema), Some(props))?;
        Ok(ParquetTable {
            writer,
            schema,
            columns,
            builders: columns.iter().map(|c| Builder::new(c.ty)).collect(),
            buffered: 0,
            string_bytes: 0,
            rows: 0,
        })
    }

    pub fn write_row(&mut self, row: &[Value<'_>]) -> Result<(), ExportError> {
        check(self.columns, row)?;
        for ((c, b), v) in self.columns.iter().zip(&mut self.builders).zip(row) {
            if (*v == Value::Null && !c.nullable) || !b.append(v) {
                // The row is half appended: the table cannot go on (a bug, never the input).
                return Err(mismatch(c, v));
            }
            if let Value::Str(s) = v {
                self.string_bytes += s.len();
            }
        }
        self.buffered += 1;
        self.rows += 1;
        if self.buffered >= BATCH_ROWS || self.string_bytes >= BATCH_STRING_BYTES {
            self.write_batch()?;
        }
        Ok(())
    }

    fn write_batch(&mut self) -> Result<(), ExportError> {
        if self.buffered == 0 {
            return Ok(());
        }
        let arrays: Vec<ArrayRef> = self.builders.iter_mut().map(Builder::finish).collect();
        let batch = RecordBatch::try_new(Arc::clone(&self.schema), arrays)?;
        self.writer.write(&batch)?;
        self.buffered = 0;
        self.string_bytes = 0;
        Ok(())
    }

    pub fn finish(mut self) -> Result<W, ExportError> {
        self.write_batch()?;
        let mut out = self.writer.into_inner()?;
        out.flush()?;
        Ok(out)
    }
}
