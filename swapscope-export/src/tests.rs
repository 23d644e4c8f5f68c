use std::{collections::BTreeMap, io::Write as _};

use arrow_array::{
    Array, RecordBatch, StringArray, UInt8Array, UInt64Array, cast::AsArray as _, types::UInt64Type,
};
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;

use super::{
    columns::{EVENT_COLUMNS, EventCol, INTERVAL_COLUMNS, IntervalCol, markdown, schema},
    events::event_row,
    table::{CsvTable, Value, write_csv_string},
    *,
};
use crate::{
    event::{
        Alloc, AllocResult, ClusterMove, CounterSample, DeviceKind, DeviceList, Event, Free, Lost,
        Marker, Split, SwapDevice, SwapIn, SwapOff, SwapOn, Writeout, virtual_slot,
    },
    record::RecordingHeader,
    sink::{
        Sink,
        analysis::{Analysis, AnalysisConfig},
    },
    source::Summary,
};

/// One event of every kind, with the awkward values: a label with a comma, quotes and a
/// newline, an empty label, a split of unknown order, an unknown pfn.
fn every_kind() -> Vec<Event> {
    vec![
        Event::Counters(CounterSample {
            ts_ns: 5,
            values: vec![
                ("hugepages-64kB/swpout".into(), 7),
                ("weird \"name\"".into(), 1),
            ],
        }),
        Event::Devices(DeviceList {
            ts_ns: 6,
            devices: vec![SwapDevice {
                index: 0,
                path: "/dev/zram0".into(),
                kind: DeviceKind::Zram,
                size_kb: 1024,
                used_kb: 8,
                prio: 100,
            }],
        }),
        Event::SwapOn(SwapOn {
            ts_ns: 7,
            swap_type: 0,
            max: 256,
            bad: vec![3, 9],
            flags: 1,
            prio: -2,
        }),
        Event::Writeout(Writeout {
            ts_ns: 10,
            cpu: 1,
            pid: 42,
            tgid: 40,
            swap_type: 0,
            offset: 16,
            order: 4,
            pfn: None,
            flags: 0x21,
        }),
        Event::Alloc(Alloc {
            ts_ns: 11,
            cpu: 2,
            order: 4,
            id: u64::MAX,
            result: AllocResult::Failure,
            latency_ns: Some(1500),
            inferred: false,
        }),
        Event::Alloc(Alloc {
            ts_ns: 12,
            cpu: 2,
            order: 0,
            id: 77,
            result: AllocResult::Success {
                swap_type: 0,
                offset: 32,
            },
            latency_ns: None,
            inferred: false,
        }),
        Event::Split(Split {
            ts_ns: 13,
            cpu: 2,
            pid: 42,
            id: u64::MAX,
            old_order: None,
            new_order: 0,
            inferred: false,
        }),
        Event::Cluster(ClusterMove {
            ts_ns: 14,
            cpu: 3,
            swap_type: 0,
            cluster: 2,
            list: crate::event::cluster_list::FRAG,
            old_list: crate::event::cluster_list::ISOLATED,
            order: 4,
            count: 100,
        }),
        Event::Grant(crate::event::Grant {
            ts_ns: 14,
            cpu: 1,
            req_cpu: 0,
            pid: 42,
            tgid: 40,
            id: 0,
            swap_type: 0,
            offset: 48,
            order: 0,
            nr: 3,
            batch: vec![48, 50, 49],
            start_ns: 9,
        }),
        Event::SwapIn(SwapIn {
            ts_ns: 14,
            cpu: 3,
            pid: 42,
            tgid: 40,
            id: 9,
            swap_type: 0,
            offset: 16,
            order: Some(4),
            flags: 0x6,
        }),
        Event::Free(Free {
            ts_ns: 14,
            cpu: 3,
            swap_type: 0,
            offset: 16,
            nr: 16,
        }),
        Event::Marker(Marker {
            ts_ns: 15,
            label: "a, \"quoted\"\nlabel".into(),
        }),
        Event::Marker(Marker {
            ts_ns: 16,
            label: String::new(),
        }),
        Event::Lost(Lost {
            ts_ns: 17,
            ringbuf: 3,
            userspace: 4,
        }),
        Event::SwapOff(SwapOff {
            ts_ns: 18,
            swap_type: 0,
        }),
    ]
}

/// The `detail` JSON of `ev` into `out`; false when its kind has none.
fn det(ev: &Event, out: &mut String) -> bool {
    super::events::detail(ev, out).unwrap_or_else(|e| panic!("{e}"))
}

fn header() -> RecordingHeader {
    RecordingHeader {
        source: "test".into(),
        kernel_release: "6.18.0-test".into(),
        ..RecordingHeader::default()
    }
}

/// Runs `events` through an export sink in batches of `batch`, returning the bytes written.
fn export_events(format: Format, events: &[Event], filter: KindFilter, batch: usize) -> Vec<u8> {
    let mut sink = EventExport::new(format, Vec::new(), "test", &header(), filter)
        .unwrap_or_else(|e| panic!("{e}"));
    for b in events.chunks(batch.max(1)) {
        sink.push(b).unwrap_or_else(|e| panic!("{e}"));
    }
    sink.finish(&Summary::default())
        .unwrap_or_else(|e| panic!("{e}"));
    sink.into_writer().unwrap_or_else(|| panic!("no writer"))
}

/// Reads Parquet bytes back with the parquet crate's reader (through a temporary file: the
/// crate reads from a `File` or `bytes::Bytes`, which this crate does not depend on).
fn read_parquet(bytes: &[u8], name: &str) -> (Vec<RecordBatch>, BTreeMap<String, String>) {
    let path = std::env::temp_dir().join(format!(
        "swapscope-export-test-{}-{name}.parquet",
        std::process::id()
    ));
    let mut f = std::fs::File::create(&path).unwrap_or_else(|e| panic!("{e}"));
    f.write_all(bytes).unwrap_or_else(|e| panic!("{e}"));
    drop(f);
    let f = std::fs::File::open(&path).unwrap_or_else(|e| panic!("{e}"));
    let _ = std::fs::remove_file(&path);
    let builder = ParquetRecordBatchReaderBuilder::try_new(f).unwrap_or_else(|e| panic!("{e}"));
    let meta: BTreeMap<String, String> = builder
        .metadata()
        .file_metadata()
        .key_value_metadata()
        .into_iter()
        .flatten()
        .map(|kv| (kv.key.clone(), kv.value.clone().unwrap_or_default()))
        .collect();
    let batches = builder
        .build()
        .unwrap_or_else(|e| panic!("{e}"))
        .collect::<Result<Vec<_>, _>>()
        .unwrap_or_else(|e| panic!("{e}"));
    (batches, meta)
}

/// A cell of a read-back batch, as the `Value` it was written from.
fn cell(batch: &RecordBatch, col: usize, row: usize) -> String {
    let a = batch.column(col);
    if a.is_null(row) {
        return "NULL".into();
    }
    match a.data_type() {
        arrow_schema::DataType::Utf8 => format!("{:?}", a.as_string::<i32>().value(row)),
        arrow_schema::DataType::Int32 => {
            format!(
                "{}",
                a.as_primitive::<arrow_array::types::Int32Type>().value(row)
            )
        }
        arrow_schema::DataType::UInt8 => {
            format!(
                "{}",
                a.as_primitive::<arrow_array::types::UInt8Type>().value(row)
            )
        }
        arrow_schema::DataType::UInt32 => {
            format!(
                "{}",
                a.as_primitive::<arrow_array::types::UInt32Type>()
                    .value(row)
            )
        }
        arrow_schema::DataType::UInt64 => format!("{}", a.as_primitive::<UInt64Type>().value(row)),
        t => panic!("unexpected type {t}"),
    }
}

fn value_text(v: &Value<'_>) -> String {
    match v {
        Value::Null => "NULL".into(),
        Value::U(n) => n.to_string(),
        Value::I(n) => n.to_string(),
        Value::Str(s) => format!("{s:?}"),
    }
}

/// A minimal RFC 4180 reader: records of fields, `None` for an empty unquoted field.
fn parse_csv(text: &str) -> Vec<Vec<Option<String>>> {
    let mut records = Vec::new();
    let mut record = Vec::new();
    let mut field = String::new();
    let mut quoted = false;
    let mut was_quoted = false;
    let mut chars = text.chars().peekable();
    while let Some(c) = chars.next() {
        if quoted {
            match c {
                '"' if chars.peek() == Some(&'"') => {
                    chars.next();
                    field.push('"');
                }
                '"' => quoted = false,
                c => field.push(c),
            }
            continue;
        }
        match c {
            '"' => {
                quoted = true;
                was_quoted = true;
            }
            ',' | '\n' => {
                let f = std::mem::take(&mut field);
                record.push((was_quoted || !f.is_empty()).then_some(f));
                was_quoted = false;
                if c == '\n' {
                    records.push(std::mem::take(&mut record));
                }
            }
            c => field.push(c),
        }
    }
    assert!(
        !quoted && field.is_empty() && record.is_empty(),
        "unterminated CSV"
    );
    records
}

#[test]
fn csv_strings_are_quoted_as_rfc_4180_says() {
    let q = |s: &str| {
        let mut v = Vec::new();
        write_csv_string(&mut v, s).unwrap_or_else(|e| panic!("{e}"));
        String::from_utf8(v).unwrap_or_else(|e| panic!("{e}"))
    };
    assert_eq!(q("plain"), "plain");
    assert_eq!(q("a,b"), "\"a,b\"");
    assert_eq!(q("say \"hi\""), "\"say \"\"hi\"\"\"");
    assert_eq!(q("two\nlines"), "\"two\nlines\"");
    assert_eq!(q("cr\r"), "\"cr\r\"");
    // What starts an escape sequence or reorders text is escaped.
    assert_eq!(q("\u{1b}[2Jx\u{202e}"), "\\u{1b}[2Jx\\u{202e}");
    assert_eq!(q("\""), "\"\"\"\"");
    assert_eq!(
        q(""),
        "\"\"",
        "an empty string is not an empty (NULL) field"
    );
    assert_eq!(q("ünïcode µs"), "ünïcode µs");
    // Formula injection (OWASP): neutralised with a leading quote, and quoted.
    assert_eq!(q("=HYPERLINK(\"x\")"), "\"'=HYPERLINK(\"\"x\"\")\"");
    assert_eq!(q("+1"), "\"'+1\"");
    assert_eq!(q("-2+3"), "\"'-2+3\"");
    assert_eq!(q("@SUM(A1)"), "\"'@SUM(A1)\"");
    assert_eq!(q("\tcmd"), "\"'\tcmd\"");
    assert_eq!(q("\rcmd"), "\"'\rcmd\"");
    assert_eq!(q("a=b"), "a=b", "only the first character counts");
}

#[test]
fn csv_rows_read_back_cell_for_cell() {
    let events = every_kind();
    let bytes = export_events(Format::Csv, &events, KindFilter::ALL, 5);
    let text = String::from_utf8(bytes).unwrap_or_else(|e| panic!("{e}"));
    let records = parse_csv(&text);
    let names: Vec<Option<String>> = EVENT_COLUMNS
        .iter()
        .map(|c| Some(c.name.to_string()))
        .collect();
    assert_eq!(
        records.first(),
        Some(&names),
        "the header is the column table"
    );
    assert_eq!(records.len(), events.len() + 1);
    let mut detail = String::new();
    for (seq, (ev, rec)) in events.iter().zip(&records[1..]).enumerate() {
        let has = det(ev, &mut detail);
        let row = event_row(seq as u64, ev, has.then_some(detail.as_str()));
        let want: Vec<Option<String>> = row
            .iter()
            .map(|v| match v {
                Value::Null => None,
                Value::U(n) => Some(n.to_string()),
                Value::I(n) => Some(n.to_string()),
                Value::Str(s) => Some(s.to_string()),
            })
            .collect();
        assert_eq!(rec, &want, "event {seq}: {ev:?}");
    }
    // The label with a comma, quotes and a newline survives whole; the empty one stays a string.
    let label = EventCol::Label as usize;
    assert_eq!(
        records[12][label].as_deref(),
        Some("a, \"quoted\"\nlabel"),
        "{text}"
    );
    assert_eq!(records[13][label].as_deref(), Some(""));
}

#[test]
fn the_column_tables_are_the_schemas_and_the_docs() {
    for (cols, count) in [
        (EVENT_COLUMNS, EventCol::COUNT),
        (INTERVAL_COLUMNS, IntervalCol::COUNT),
    ] {
        assert_eq!(cols.len(), count);
        let s = schema(cols);
        assert_eq!(s.fields().len(), cols.len());
        for (f, c) in s.fields().iter().zip(cols) {
            assert_eq!(f.name(), c.name);
            assert_eq!(f.data_type(), &c.ty.arrow());
            assert_eq!(f.is_nullable(), c.nullable);
        }
        let mut names: Vec<&str> = cols.iter().map(|c| c.name).collect();
        names.sort_unstable();
        names.dedup();
        assert_eq!(names.len(), cols.len(), "duplicate column names");
    }
    // The enums index the tables by name.
    assert_eq!(EVENT_COLUMNS[EventCol::Order as usize].name, "order");
    assert_eq!(EVENT_COLUMNS[EventCol::Detail as usize].name, "detail");
    assert_eq!(INTERVAL_COLUMNS[IntervalCol::Model as usize].name, "model");
    assert_eq!(
        INTERVAL_COLUMNS[IntervalCol::Markers as usize].name,
        "markers"
    );
    // The CSV header is the table.
    let t = CsvTable::new(INTERVAL_COLUMNS, Vec::new()).unwrap_or_else(|e| panic!("{e}"));
    let out = t.finish().unwrap_or_else(|e| panic!("{e}"));
    let names: Vec<&str> = INTERVAL_COLUMNS.iter().map(|c| c.name).collect();
    assert_eq!(
        String::from_utf8_lossy(&out),
        format!("{}\n", names.join(","))
    );
    // docs/export.md shows both tables as the code defines them.
    let doc = include_str!("../../docs/export.md");
    for cols in [EVENT_COLUMNS, INTERVAL_COLUMNS] {
        let table = markdown(cols);
        assert!(
            doc.contains(&table),
            "docs/export.md does not hold this table (paste it in):\n{table}"
        );
    }
}

#[test]
fn kinds_are_the_events_own_names() {
    let events = every_kind();
    for ev in &events {
        assert!(KINDS.contains(&ev.kind_name()), "{}", ev.kind_name());
        let only = KindFilter::parse(ev.kind_name()).unwrap_or_else(|e| panic!("{e}"));
        assert!(only.accepts(ev));
        assert_eq!(only.names(), ev.kind_name());
    }
    let seen: std::collections::BTreeSet<&str> = events.iter().map(Event::kind_name).collect();
    assert_eq!(seen.len(), KINDS.len(), "every kind is in the test stream");
    let f = KindFilter::parse("writeout, Alloc").unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(f.names(), "writeout,alloc");
    let Err(e) = KindFilter::parse("writeout,allocs") else {
        panic!("an unknown kind was accepted");
    };
    let msg = e.to_string();
    assert!(
        msg.contains("\"allocs\"") && msg.contains("known: writeout, alloc, free"),
        "{msg}"
    );
    assert_eq!(msg.lines().count(), 1);
    assert!(matches!(
        KindFilter::parse(" , "),
        Err(ExportError::NoKinds)
    ));
}

#[test]
fn parquet_round_trips_every_kind_through_the_parquet_reader() {
    let events = every_kind();
    let bytes = export_events(Format::Parquet, &events, KindFilter::ALL, 4);
    assert_eq!(bytes.get(..4), Some(&b"PAR1"[..]));
    let (batches, meta) = read_parquet(&bytes, "every-kind");
    assert_eq!(
        meta.get("swapscope.table").map(String::as_str),
        Some("events")
    );
    assert_eq!(
        meta.get("swapscope.kernel_release").map(String::as_str),
        Some("6.18.0-test")
    );
    let rows: usize = batches.iter().map(RecordBatch::num_rows).sum();
    assert_eq!(rows, events.len());
    let mut detail = String::new();
    let mut seq = 0;
    for b in &batches {
        assert_eq!(b.schema().fields().len(), EVENT_COLUMNS.len());
        for r in 0..b.num_rows() {
            let ev = &events[seq];
            let has = det(ev, &mut detail);
            let want = event_row(seq as u64, ev, has.then_some(detail.as_str()));
            for (c, v) in want.iter().enumerate() {
                assert_eq!(
                    cell(b, c, r),
                    value_text(v),
                    "event {seq} column {}",
                    EVENT_COLUMNS[c].name
                );
            }
            seq += 1;
        }
    }
    // The detail JSON parses.
    let mut detail = String::new();
    for ev in &events {
        if det(ev, &mut detail) {
            serde_json::from_str::<serde_json::Value>(&detail)
                .unwrap_or_else(|e| panic!("{detail}: {e}"));
        }
    }
}

#[test]
fn kinds_filter_rows_and_keeps_stream_positions() {
    let events = every_kind();
    let f = KindFilter::parse("marker,free").unwrap_or_else(|e| panic!("{e}"));
    let bytes = export_events(Format::Parquet, &events, f, 3);
    let (batches, meta) = read_parquet(&bytes, "filtered");
    assert_eq!(
        meta.get("swapscope.kinds").map(String::as_str),
        Some("free,marker")
    );
    let mut kinds = Vec::new();
    let mut seqs = Vec::new();
    for b in &batches {
        let k: &StringArray = b.column(EventCol::Kind as usize).as_string::<i32>();
        let s: &UInt64Array = b
            .column(EventCol::Seq as usize)
            .as_primitive::<UInt64Type>();
        kinds.extend(k.iter().map(|x| x.unwrap_or_default().to_string()));
        seqs.extend(s.values().iter().copied());
    }
    assert_eq!(kinds, ["free", "marker", "marker"]);
    assert_eq!(seqs, [10, 11, 12], "positions in the whole stream");
}

#[test]
fn large_streams_make_several_batches_and_row_groups_of_bounded_size() {
    // More rows than one batch: the writer sees several batches, and the file reads back whole.
    let n = table::BATCH_ROWS * 2 + 17;
    let events: Vec<Event> = (0..n as u64)
        .map(|i| {
            Event::Free(Free {
                ts_ns: i,
                cpu: 0,
                swap_type: 1,
                offset: i,
                nr: 1,
            })
        })
        .collect();
    let bytes = export_events(Format::Parquet, &events, KindFilter::ALL, 10_000);
    let (batches, _) = read_parquet(&bytes, "large");
    let mut total = 0u64;
    let mut rows = 0usize;
    for b in &batches {
        let off = b
            .column(EventCol::Offset as usize)
            .as_primitive::<UInt64Type>();
        total += off.values().iter().sum::<u64>();
        rows += b.num_rows();
    }
    assert_eq!(rows, n);
    assert_eq!(total, (n as u64 - 1) * n as u64 / 2);
}

#[test]
fn interval_rows_sum_to_the_stream_per_model_and_order() {
    // Requests on the virtual device over 5 ms of stream time, 1 ms intervals, one model.
    let mut events = vec![Event::Marker(Marker {
        ts_ns: 1_000,
        label: "start, here".into(),
    })];
    let mut ts = 1_000;
    for id in 0..400u64 {
        ts += 12_345;
        let order = if id % 3 == 0 { 4 } else { 0 };
        events.push(Event::Alloc(Alloc {
            ts_ns: ts,
            cpu: 0,
            order,
            id,
            result: AllocResult::Unknown,
            latency_ns: None,
            inferred: false,
        }));
        if id % 2 == 0 {
            events.push(Event::Writeout(Writeout {
                ts_ns: ts,
                cpu: 0,
                pid: 1,
                tgid: 1,
                swap_type: 0,
                offset: id,
                order,
                pfn: None,
                flags: 0,
            }));
            events.push(Event::Free(Free {
                ts_ns: ts,
                cpu: 0,
                swap_type: virtual_slot::SWAP_TYPE,
                offset: virtual_slot::offset(id, 0),
                nr: 1 << order,
            }));
        }
    }
    let models = vec!["buddy".to_string()];
    let h = header();
    swapscope_models::install();
    let analysis = Analysis::new(
        &h,
        &models,
        AnalysisConfig {
            interval_ns: 1_000_000,
            views: false,
            ..AnalysisConfig::default()
        },
    );
    let mut sink = IntervalExport::new(Format::Parquet, Vec::new(), "test", &h, analysis)
        .unwrap_or_else(|e| panic!("{e}"));
    for b in events.chunks(37) {
        sink.push(b).unwrap_or_else(|e| panic!("{e}"));
    }
    sink.finish(&Summary::default())
        .unwrap_or_else(|e| panic!("{e}"));
    let intervals = sink.intervals();
    let rows = sink.rows();
    let bytes = sink.into_writer().unwrap_or_else(|| panic!("no writer"));
    let (batches, meta) = read_parquet(&bytes, "intervals");
    assert_eq!(
        meta.get("swapscope.interval_ns").map(String::as_str),
        Some("1000000")
    );
    assert_eq!(
        meta.get("swapscope.models").map(String::as_str),
        Some("buddy")
    );
    // ts runs to 1000 + 400 × 12345 ns: intervals 0..=4.
    assert_eq!(intervals, 5);
    let per_interval = 1 + 2 * crate::alloc::NR_ORDERS as u64;
    assert_eq!(rows, intervals * per_interval);
    // (model, order) → (requests, failures, writeouts); freed slots; markers.
    let mut sums: BTreeMap<(String, Option<u8>), [u64; 3]> = BTreeMap::new();
    let mut freed = 0;
    let mut markers = Vec::new();
    let mut read = 0;
    for b in &batches {
        read += b.num_rows();
        let model = b.column(IntervalCol::Model as usize).as_string::<i32>();
        let order: &UInt8Array = b
            .column(IntervalCol::Order as usize)
            .as_primitive::<arrow_array::types::UInt8Type>();
        let u = |c: IntervalCol| b.column(c as usize).as_primitive::<UInt64Type>();
        let (req, fail, wo, fr) = (
            u(IntervalCol::Requests),
            u(IntervalCol::Failures),
            u(IntervalCol::Writeouts),
            u(IntervalCol::FreedSlots),
        );
        let mk = b.column(IntervalCol::Markers as usize).as_string::<i32>();
        for r in 0..b.num_rows() {
            let o = (!order.is_null(r)).then(|| order.value(r));
            let key = (model.value(r).to_string(), o);
            let s = sums.entry(key).or_default();
            let get = |a: &UInt64Array| if a.is_null(r) { 0 } else { a.value(r) };
            s[0] += get(req);
            s[1] += get(fail);
            s[2] += get(wo);
            freed += get(fr);
            if !mk.is_null(r) {
                markers.push(mk.value(r).to_string());
            }
            if o.is_none() {
                assert!(
                    req.is_null(r) && wo.is_null(r),
                    "the interval row has no order counts"
                );
            } else {
                assert!(fr.is_null(r), "order rows leave the interval figures empty");
            }
        }
    }
    assert_eq!(read as u64, rows);
    let get = |m: &str, o: u8| {
        sums.get(&(m.to_string(), Some(o)))
            .copied()
            .unwrap_or_default()
    };
    assert_eq!(get("kernel", 0)[0], 266);
    assert_eq!(get("kernel", 4)[0], 134);
    assert_eq!(get("kernel", 0)[2], 133);
    assert_eq!(get("kernel", 4)[2], 67);
    assert_eq!(get("buddy", 4)[0], 134, "the model was fed every request");
    assert_eq!(freed, 133 + 67 * 16);
    assert_eq!(markers, ["start, here"]);
}
