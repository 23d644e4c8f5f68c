//! The column tables: the one definition of every exported column (name, type, meaning). The
//! CSV header, the Arrow/Parquet schema, the DuckDB types the tests read CSV with and the tables
//! in docs/export.md all come from here.

use std::sync::Arc;

use arrow_schema::{DataType, Field, Schema};

/// What a column holds. Unsigned types are the event fields' own widths, so Parquet keeps them
/// exact (DuckDB reads them as `UTINYINT` … `UBIGINT`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ColumnType {
    U8,
    U32,
    U64,
    I32,
    Str,
}

impl ColumnType {
    /// The Arrow type of the Parquet column.
    pub fn arrow(self) -> DataType {
        match self {
            ColumnType::U8 => DataType::UInt8,
            ColumnType::U32 => DataType::UInt32,
            ColumnType::U64 => DataType::UInt64,
            ColumnType::I32 => DataType::Int32,
            ColumnType::Str => DataType::Utf8,
        }
    }

    /// The DuckDB type of the column (to read the CSV with exactly the Parquet file's types).
    pub fn duckdb(self) -> &'static str {
        match self {
            ColumnType::U8 => "UTINYINT",
            ColumnType::U32 => "UINTEGER",
            ColumnType::U64 => "UBIGINT",
            ColumnType::I32 => "INTEGER",
            ColumnType::Str => "VARCHAR",
        }
    }

    /// The type as docs/export.md names it.
    pub fn doc_name(self) -> &'static str {
        match self {
            ColumnType::U8 => "u8",
            ColumnType::U32 => "u32",
            ColumnType::U64 => "u64",
            ColumnType::I32 => "i32",
            ColumnType::Str => "string",
        }
    }
}

/// One exported column.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Column {
    pub name: &'static str,
    pub ty: ColumnType,
    /// Whether rows may leave it empty (NULL in Parquet, an empty field in CSV).
    pub nullable: bool,
    /// What it means, and for which rows.
    pub doc: &'static str,
}

/// Declares a column table and an enum of its positions, from one list: the enum indexes the
/// rows the writers fill, the table describes them.
macro_rules! columns {
    (
        $(#[$meta:meta])* $table:ident, $idx:ident {
            $($var:ident: $name:literal, $ty:ident, $null:literal, $doc:literal;)*
        }
    ) => {
        $(#[$meta])*
        pub const $table: &[Column] = &[
            $(Column { name: $name, ty: ColumnType::$ty, nullable: $null, doc: $doc },)*
        ];

        /// Positions in the table of the same name.
        #[derive(Clone, Copy, Debug, PartialEq, Eq)]
        pub enum $idx {
            $($var,)*
        }

        impl $idx {
            /// Columns in the table.
            pub const COUNT: usize = [$($idx::$var),*].len();
        }
    };
}

columns! {
    /// `swapscope export`: one row per event, every kind in one table. A column that does not
    /// apply to a row's kind is empty.
    EVENT_COLUMNS, EventCol {
        Seq: "seq", U64, false,
            "Position of the event in the recording, from 0, over all kinds (also those left out by `--kinds`): the stream's order, which timestamps from different CPUs need not follow.";
        TsNs: "ts_ns", U64, false,
            "Event time, `CLOCK_BOOTTIME` nanoseconds (add the Parquet metadata's `swapscope.realtime_minus_boottime_ns` for wall-clock time).";
        Kind: "kind", Str, false,
            "`writeout`, `alloc`, `free`, `split`, `swapin`, `cluster`, `grant`, `marker`, `counters`, `devices`, `lost`, `swapon` or `swapoff` (the names `dump` shows).";
        Cpu: "cpu", U32, true,
            "CPU that reported it: writeout, alloc, free, split, swapin, cluster; grant: the CPU that decided (its entry CPU is in `detail`).";
        Pid: "pid", U32, true,
            "Task (thread) id: writeout, split, swapin, grant.";
        Tgid: "tgid", U32, true,
            "Process id: writeout, swapin, grant.";
        SwapType: "swap_type", U8, true,
            "Swap device (the kernel's swap type; 255 = the virtual device of simulated streams): writeout, alloc when it succeeded, free, swapin, cluster, grant, swapon, swapoff.";
        Offset: "offset", U64, true,
            "Swap slot (the first one of a folio, of a freed range, of a cluster or of a grant): writeout, alloc when it succeeded, free, swapin, cluster, grant.";
        Order: "order", U8, true,
            "Folio order (0 = 4 KiB, 4 = 64 KiB, 9 = 2 MiB): writeout, alloc; split: the order before the split, swapin: the folio read back, each empty when the hook could not tell; cluster: the order a nonfull or frag cluster serves.";
        NewOrder: "new_order", U8, true,
            "split: the order after the split.";
        Nr: "nr", U32, true,
            "free: slots given back; grant: allocations of 2^order slots made in one lock hold (6.12's batch: up to 64; 0: a refusal).";
        Id: "id", U64, true,
            "Folio or request id, the same for a request and the split that follows its refusal: alloc, split, swapin, grant (0 when the hook sees no folio).";
        Result: "result", Str, true,
            "alloc: `success`, `failure` (the kernel refused, the folio will be split) or `unknown` (simulated requests).";
        LatencyNs: "latency_ns", U32, true,
            "alloc, full tier with timing: nanoseconds from entry to exit of the allocation hook.";
        Pfn: "pfn", U64, true,
            "writeout: the head page frame number, empty when unknown.";
        Flags: "flags", U32, true,
            "writeout, swapin: folio flag bits (1 head, 2 swapbacked, 4 swapcache, 8 dirty, 16 writeback, 32 anonymous; a swap-in without 4 bypassed the swap cache); swapon: device bits (1 solidstate, 2 blkdev, 4 discard, 8 synchronous I/O).";
        MaxSlots: "max_slots", U64, true,
            "swapon: the device's slots, header slot 0 included (`si->max`).";
        BadSlots: "bad_slots", U64, true,
            "swapon: how many slots are bad (their offsets are in `detail`).";
        Prio: "prio", I32, true,
            "swapon: the device's priority.";
        Label: "label", Str, true,
            "marker: its label, whole.";
        RingbufLost: "ringbuf_lost", U64, true,
            "lost: events the BPF ring buffer had no room for, cumulative.";
        UserspaceLost: "userspace_lost", U64, true,
            "lost: events the recorder dropped, cumulative.";
        ClusterList: "cluster_list", Str, true,
            "cluster: the list it went to (`free`, `nonfull`, `frag`, `full`, `discard`, or `isolated`: taken off the lists by an allocator).";
        OldClusterList: "old_cluster_list", Str, true,
            "cluster: the list the kernel had it on before (`ci->flags`); empty for an isolation.";
        Count: "count", U32, true,
            "cluster: slots in use in it when the kernel moved it (`ci->count`).";
        Detail: "detail", Str, true,
            "JSON for the kinds that carry lists: counters `{\"name\": value, …}` (`hugepages-64kB/swpout`, `vmstat/pswpout`, …, as the kernel counts them, since boot); devices `[{\"index\", \"path\", \"kind\", \"size_kb\", \"used_kb\", \"prio\"}, …]`; swapon `[bad slot, …]`; grant `{\"req_cpu\", \"start_ns\", \"batch\": [slot, …]}` (the CPU and time the request entered the allocator, `start_ns` 0 when unknown; a 6.12 batch's slots in hand-out order, empty otherwise).";
    }
}

columns! {
    /// `swapscope export --intervals`: the analysis's per-interval series in long form, one row
    /// per (interval, model, order), plus one row per interval (`model` = `kernel`, `order`
    /// empty) for what has no order.
    INTERVAL_COLUMNS, IntervalCol {
        Interval: "interval", U64, false,
            "Interval number, from 0.";
        StartNs: "start_ns", U64, false,
            "Start of the interval, in the stream's time (`CLOCK_BOOTTIME` ns for recordings).";
        LenNs: "len_ns", U64, false,
            "Length covered: the interval length, less for the last one.";
        Model: "model", Str, false,
            "`kernel`: what the stream shows the kernel did; otherwise an allocator model replaying the same requests in shadow (`linux-6.18`, `buddy`, …).";
        Order: "order", U8, true,
            "Folio order of the row's counts; empty on the interval's own row.";
        Requests: "requests", U64, true,
            "Swap-slot requests of this order (kernel: the stream's requests, full tier or simulated; a model: the requests it was fed, including the order-0 ones it made of a refused folio).";
        Failures: "failures", U64, true,
            "Requests refused (kernel: the kernel's own refusals, full tier; 0 when the stream carries no answers; a model: its refusals).";
        Writeouts: "writeouts", U64, true,
            "kernel: folios of this order written out (write-out events).";
        Swpout: "swpout", U64, true,
            "kernel: the per-size counter `swpout` over the interval (from the counter samples in it).";
        SwpoutFallback: "swpout_fallback", U64, true,
            "kernel: the per-size counter `swpout_fallback` over the interval.";
        Pswpout: "pswpout", U64, true,
            "Interval row: pages swapped out (`/proc/vmstat` `pswpout`) over the interval.";
        FreedSlots: "freed_slots", U64, true,
            "Interval row: slots given back (free events).";
        RealUsedSlots: "real_used_slots", U64, true,
            "Interval row: slots in use at its end in the kernel's occupancy rebuilt from the stream (full tier).";
        ProcUsedKb: "proc_used_kb", U64, true,
            "Interval row: `/proc/swaps` Used, KiB, summed over devices, as last sampled.";
        LostTotal: "lost_total", U64, true,
            "Interval row: events lost so far (ring buffer and recorder), cumulative.";
        Markers: "markers", Str, true,
            "Interval row: labels of the markers in the interval (at most 16, each cut to 200 bytes), one per line.";
    }
}

/// The Arrow schema of a table.
pub fn schema(columns: &[Column]) -> Arc<Schema> {
    Arc::new(Schema::new(
        columns
            .iter()
            .map(|c| Field::new(c.name, c.ty.arrow(), c.nullable))
            .collect::<Vec<_>>(),
    ))
}

/// A table as docs/export.md shows it (Markdown).
pub fn markdown(columns: &[Column]) -> String {
    let mut s = String::from("| column | type | empty | meaning |\n|---|---|---|---|\n");
    for c in columns {
        s.push_str(&format!(
            "| `{}` | {} | {} | {} |\n",
            c.name,
            c.ty.doc_name(),
            if c.nullable { "yes" } else { "never" },
            c.doc.replace('|', "\\|")
        ));
    }
    s
}

/// The DuckDB `columns = {...}` argument of `read_csv` that reads a CSV export with the types
/// of the Parquet one.
pub fn duckdb_csv_columns(columns: &[Column]) -> String {
    let cols: Vec<String> = columns
        .iter()
        .map(|c| format!("'{}': '{}'", c.name, c.ty.duckdb()))
        .collect();
    format!("{{{}}}", cols.join(", "))
}
