//! `swapscope export` as a user runs it: the repo's recordings and a fresh simulation, exported
//! to CSV and Parquet by the real binary and read back by DuckDB (the PyPI package, in the
//! virtualenv `cargo xtask test` makes at target/venv-duckdb), whose counts per kind and per
//! order must be `report --json`'s; the interval table must sum to the same totals; a
//! multi-million-event export must stay within 256 MiB (peak RSS from `wait4`).

#[path = "common/measured.rs"]
mod measured;

#[path = "common/run.rs"]
mod run;

use std::{
    collections::BTreeMap,
    path::{Path, PathBuf},
    process::{Command, Output},
};

use run::{swapscope, tmpdir};

use serde_json::{Value, json};
use swapscope::{
    event::{Event, Marker},
    export::columns::{EVENT_COLUMNS, INTERVAL_COLUMNS, duckdb_csv_columns},
    record::{RecordingHeader, Writer, WriterOptions},
};

/// The bound on the exporting process's peak RSS, as for hostile recordings.
const RSS_BOUND_KIB: u64 = 256 << 10;

fn data_files() -> Vec<PathBuf> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data");
    let mut v: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "swsc"))
        .collect();
    v.sort();
    assert!(v.len() >= 4, "the repo's recordings: {v:?}");
    v
}

fn ok(args: &[&str]) -> Output {
    let o = swapscope(args);
    assert!(
        o.status.success(),
        "swapscope {args:?}: {}",
        String::from_utf8_lossy(&o.stderr)
    );
    o
}

/// The interpreter of target/venv-duckdb, with `duckdb` importable. Missing: a failure under CI
/// (`cargo xtask test` makes it), a loud skip otherwise.
fn duckdb() -> Option<PathBuf> {
    let target = Path::new(env!("CARGO_TARGET_TMPDIR"))
        .parent()
        .unwrap_or_else(|| panic!("CARGO_TARGET_TMPDIR has no parent"));
    let python = target.join("venv-duckdb/bin/python");
    let works = Command::new(&python)
        .args(["-c", "import duckdb"])
        .output()
        .is_ok_and(|o| o.status.success());
    if works {
        return Some(python);
    }
    if std::env::var("CI").is_ok_and(|v| v == "true" || v == "1") {
        panic!(
            "{} cannot import duckdb; `cargo xtask test` creates it (xtask/src/duckdb.rs)",
            python.display()
        );
    }
    eprintln!(
        "\n!!!!!! SKIPPING the DuckDB export checks: no {} with duckdb. Run `cargo xtask test` \
         (it creates the virtualenv) !!!!!!\n",
        python.display()
    );
    None
}

/// Every DuckDB script starts here: the export (Parquet, or CSV read with the Parquet file's
/// types) as view `t`, and `q(sql)` for its rows.
const PRELUDE: &str = r#"
import duckdb, json, sys
path, fmt, cols = sys.argv[1], sys.argv[2], sys.argv[3]
p = path.replace("'", "''")
src = (f"read_parquet('{p}')" if fmt == "parquet"
       else f"read_csv('{p}', header = true, auto_detect = false, allow_quoted_nulls = false, "
            f"columns = {cols})")
con = duckdb.connect()
con.execute(f"create view t as select * from {src}")
q = lambda s: con.execute(s).fetchall()
"#;

/// What DuckDB counts in an events export (Parquet, or CSV read with the Parquet file's types).
const EVENTS_QUERY: &str = r#"
by_order = lambda where: {str(o): n for o, n in q(
    f'select "order", count(*) from t where {where} group by 1 order by 1')}
print(json.dumps({
    "rows": q("select count(*) from t")[0][0],
    "kinds": {k: n for k, n in q("select kind, count(*) from t group by 1 order by 1")},
    "writeouts_by_order": by_order("kind = 'writeout'"),
    "requests_by_order": by_order("kind = 'alloc'"),
    "failed_requests_by_order": by_order("kind = 'alloc' and result = 'failure'"),
    "freed_slots": q("select sum(nr) from t where kind = 'free'")[0][0],
    "lost": q("select coalesce(max(ringbuf_lost), 0) + coalesce(max(userspace_lost), 0) from t")[0][0],
    "labels": [r[0] for r in q("select label from t where kind = 'marker' order by seq")],
    "seq_in_order": q("select bool_and(seq = rn - 1) from (select seq, row_number() over () as rn from t)")[0][0],
}))
"#;

/// What DuckDB sums in an interval export.
const INTERVALS_QUERY: &str = r#"
def by_order(col, model):
    return {str(o): int(n) for o, n in q(
        f'select "order", sum({col}) from t where model = \'{model}\' and "order" is not null '
        f'group by 1 having sum({col}) > 0 order by 1')}
models = [m for (m,) in q("select distinct model from t where model <> 'kernel' order by 1")]
print(json.dumps({
    "intervals": q("select count(distinct interval) from t")[0][0],
    "writeouts_by_order": by_order("writeouts", "kernel"),
    "requests_by_order": by_order("requests", "kernel"),
    "failed_requests_by_order": by_order("failures", "kernel"),
    "swpout_by_order": by_order("swpout", "kernel"),
    "freed_slots": q("select coalesce(sum(freed_slots), 0) from t")[0][0],
    "models": {m: {"requests_by_order": by_order("requests", m),
                   "failures_by_order": by_order("failures", m)} for m in models},
}))
"#;

/// Runs a DuckDB script (after [`PRELUDE`]) on an export; its JSON output.
fn query(python: &Path, script: &str, file: &Path, format: &str, columns: &str) -> Value {
    let o = Command::new(python)
        .arg("-c")
        .arg(format!("{PRELUDE}{script}"))
        .arg(file)
        .arg(format)
        .arg(columns)
        .output()
        .unwrap_or_else(|e| panic!("{}: {e}", python.display()));
    assert!(
        o.status.success(),
        "DuckDB on {}: {}",
        file.display(),
        String::from_utf8_lossy(&o.stderr)
    );
    serde_json::from_slice(&o.stdout).unwrap_or_else(|e| {
        panic!(
            "DuckDB printed {:?}: {e}",
            String::from_utf8_lossy(&o.stdout)
        )
    })
}

/// A map of order → count without its zero entries.
fn nonzero(v: &Value) -> BTreeMap<String, u64> {
    v.as_object()
        .map(|m| {
            m.iter()
                .filter_map(|(k, n)| n.as_u64().filter(|n| *n > 0).map(|n| (k.clone(), n)))
                .collect()
        })
        .unwrap_or_default()
}

fn sum(v: &Value) -> u64 {
    nonzero(v).values().sum()
}

/// Events per kind as `dump` prints them (its second field is the kind).
/// The per-order counts an export's DuckDB summary `d` shares with `report --json`.
fn same_by_order(d: &Value, report: &Value, what: &str) {
    for key in [
        "writeouts_by_order",
        "requests_by_order",
        "failed_requests_by_order",
    ] {
        assert_eq!(nonzero(&d[key]), nonzero(&report[key]), "{what}: {key}");
    }
}

fn dump_kinds(file: &str) -> BTreeMap<String, u64> {
    let o = ok(&["dump", file]);
    let mut m = BTreeMap::new();
    for line in String::from_utf8_lossy(&o.stdout).lines() {
        if let Some(kind) = line.split_whitespace().nth(1) {
            *m.entry(kind.to_string()).or_default() += 1;
        }
    }
    m
}

/// Exports `file` both ways and as intervals, reads all four in DuckDB, and checks them against
/// `report --json` and `dump`.
fn check_against_report(python: &Path, file: &Path, dir: &Path) {
    let f = file.to_string_lossy().into_owned();
    let name = file
        .file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_default();
    let report: Value = serde_json::from_slice(&ok(&["report", "--json", &f]).stdout)
        .unwrap_or_else(|e| panic!("report of {f}: {e}"));
    let kinds = dump_kinds(&f);
    let mut seen = Vec::new();
    for format in ["csv", "parquet"] {
        let out = dir.join(format!("{name}.{format}"));
        let o = out.to_string_lossy();
        ok(&["export", &f, "--format", format, "-o", &o]);
        let d = query(
            python,
            EVENTS_QUERY,
            &out,
            format,
            &duckdb_csv_columns(EVENT_COLUMNS),
        );
        let what = format!("{name} {format}");
        // Every kind, as dump counts them.
        let got: BTreeMap<String, u64> = d["kinds"]
            .as_object()
            .map(|m| {
                m.iter()
                    .map(|(k, n)| (k.clone(), n.as_u64().unwrap_or(0)))
                    .collect()
            })
            .unwrap_or_default();
        assert_eq!(got, kinds, "{what}: rows per kind vs dump");
        assert_eq!(
            d["seq_in_order"],
            json!(true),
            "{what}: seq is the row order"
        );
        // The report's own figures.
        let stream = &report["stream"];
        assert_eq!(d["rows"], stream["events"], "{what}: rows vs stream.events");
        let k = |kind: &str| got.get(kind).copied().unwrap_or(0);
        assert_eq!(
            k("writeout"),
            report["writeout_events"].as_u64().unwrap_or(0),
            "{what}"
        );
        assert_eq!(Some(k("alloc")), stream["allocs"].as_u64(), "{what}");
        assert_eq!(Some(k("free")), stream["frees"].as_u64(), "{what}");
        assert_eq!(Some(k("marker")), stream["markers"].as_u64(), "{what}");
        assert_eq!(
            k("split"),
            sum(&report["fallback_splits_by_order"]) + report["other_splits"].as_u64().unwrap_or(0),
            "{what}: splits"
        );
        same_by_order(&d, &report, &what);
        assert_eq!(
            d["freed_slots"].as_u64(),
            report["freed_slots"].as_u64(),
            "{what}: freed slots"
        );
        assert_eq!(d["lost"], report["lost_events"], "{what}: lost events");
        eprintln!(
            "{what}: {} rows; writeouts {:?}, requests {:?}, refused {:?} = report",
            d["rows"],
            nonzero(&d["writeouts_by_order"]),
            nonzero(&d["requests_by_order"]),
            nonzero(&d["failed_requests_by_order"])
        );
        seen.push(d);
    }
    assert_eq!(seen[0], seen[1], "{name}: CSV and Parquet differ in DuckDB");

    // The interval table sums to the same totals, per model too.
    for format in ["csv", "parquet"] {
        let out = dir.join(format!("{name}.intervals.{format}"));
        let o = out.to_string_lossy();
        ok(&["export", &f, "--intervals", "--format", format, "-o", &o]);
        let d = query(
            python,
            INTERVALS_QUERY,
            &out,
            format,
            &duckdb_csv_columns(INTERVAL_COLUMNS),
        );
        let what = format!("{name} intervals {format}");
        assert!(
            d["intervals"].as_u64().unwrap_or(0) > 0,
            "{what}: no interval"
        );
        same_by_order(&d, &report, &what);
        assert_eq!(
            nonzero(&d["swpout_by_order"]),
            nonzero(&report["kernel"]["swpout_by_order"]),
            "{what}: swpout"
        );
        assert_eq!(
            d["freed_slots"].as_u64(),
            Some(report["freed_slots"].as_u64().unwrap_or(0)),
            "{what}: freed slots"
        );
        let models = report["models"].as_array().cloned().unwrap_or_default();
        assert_eq!(
            d["models"].as_object().map_or(0, |m| m.len()),
            models.len(),
            "{what}: models"
        );
        for m in &models {
            let name = m["name"].as_str().unwrap_or_default();
            for key in ["requests_by_order", "failures_by_order"] {
                assert_eq!(
                    nonzero(&d["models"][name][key]),
                    nonzero(&m[key]),
                    "{what}: model {name} {key}"
                );
            }
        }
        eprintln!(
            "{what}: {} intervals; writeouts {:?}, requests {:?} = report, {} models = report",
            d["intervals"],
            nonzero(&d["writeouts_by_order"]),
            nonzero(&d["requests_by_order"]),
            models.len()
        );
    }
}

#[test]
fn duckdb_reads_the_exports_of_the_repo_recordings_as_report_counts_them() {
    let Some(python) = duckdb() else { return };
    let dir = tmpdir("export", "recordings");
    for file in data_files() {
        check_against_report(&python, &file, &dir);
    }
}

#[test]
fn duckdb_reads_the_export_of_a_fresh_simulation_as_report_counts_it() {
    let Some(python) = duckdb() else { return };
    let dir = tmpdir("export", "simulation");
    let sim = dir.join("thp-fragment.swsc");
    ok(&[
        "simulate",
        "--workload",
        "thp-fragment",
        "-o",
        &sim.to_string_lossy(),
    ]);
    check_against_report(&python, &sim, &dir);
}

#[test]
fn marker_labels_with_commas_quotes_and_newlines_read_back_whole() {
    let dir = tmpdir("export", "labels");
    let path = dir.join("labels.swsc");
    let labels = [
        "plain",
        "a, b",
        "say \"hi\"",
        "two\nlines\r\nand more",
        "",
        "ünïcode, µs",
        "\"",
    ];
    let file = std::fs::File::create(&path).unwrap_or_else(|e| panic!("{e}"));
    let mut w = Writer::create(
        std::io::BufWriter::new(file),
        &RecordingHeader {
            source: "crafted".into(),
            ..RecordingHeader::default()
        },
        WriterOptions::default(),
    )
    .unwrap_or_else(|e| panic!("{e}"));
    for (i, l) in labels.iter().enumerate() {
        w.push(&Event::Marker(Marker {
            ts_ns: 1 + i as u64,
            label: (*l).to_string(),
        }))
        .unwrap_or_else(|e| panic!("{e}"));
    }
    w.finish().unwrap_or_else(|e| panic!("{e}"));
    let f = path.to_string_lossy();
    let Some(python) = duckdb() else { return };
    for format in ["csv", "parquet"] {
        let out = dir.join(format!("labels.{format}"));
        ok(&[
            "export",
            &f,
            "--format",
            format,
            "-o",
            &out.to_string_lossy(),
        ]);
        let d = query(
            &python,
            EVENTS_QUERY,
            &out,
            format,
            &duckdb_csv_columns(EVENT_COLUMNS),
        );
        let got: Vec<Option<&str>> = d["labels"]
            .as_array()
            .map(|a| a.iter().map(Value::as_str).collect())
            .unwrap_or_default();
        // The empty label too: `""` in the CSV, read with `allow_quoted_nulls = false`.
        let want: Vec<Option<&str>> = labels.iter().map(|l| Some(*l)).collect();
        assert_eq!(got, want, "{format}");
    }
}

#[test]
fn kinds_filter_and_output_files_behave() {
    let dir = tmpdir("export", "flags");
    let data = data_files();
    let f = data
        .iter()
        .find(|p| p.to_string_lossy().contains("full-frag"))
        .unwrap_or(&data[0])
        .to_string_lossy()
        .into_owned();
    let out = dir.join("w.csv");
    let o = out.to_string_lossy();
    // A bad kind: one line naming the known ones, exit 2, nothing created.
    let bad = swapscope(&[
        "export",
        &f,
        "--format",
        "csv",
        "-o",
        &o,
        "--kinds",
        "writeout,allocs",
    ]);
    let err = String::from_utf8_lossy(&bad.stderr);
    assert_eq!(bad.status.code(), Some(2), "{err}");
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(
        err.contains("\"allocs\"") && err.contains("known: writeout, alloc, free, split"),
        "{err}"
    );
    assert_eq!(std::fs::read_dir(&dir).map(|d| d.count()).unwrap_or(0), 0);
    // Only write-outs and requests, private, no partial file left.
    ok(&[
        "export",
        &f,
        "--format",
        "csv",
        "-o",
        &o,
        "--kinds",
        "writeout,alloc",
    ]);
    let text = std::fs::read_to_string(&out).unwrap_or_else(|e| panic!("{e}"));
    let kind_col = EVENT_COLUMNS
        .iter()
        .position(|c| c.name == "kind")
        .unwrap_or(2);
    let mut kinds: Vec<&str> = text
        .lines()
        .skip(1)
        .filter_map(|l| l.split(',').nth(kind_col))
        .collect();
    kinds.sort_unstable();
    kinds.dedup();
    assert_eq!(kinds, ["alloc", "writeout"]);
    use std::os::unix::fs::PermissionsExt as _;
    let mode = std::fs::metadata(&out)
        .map(|m| m.permissions().mode() & 0o777)
        .unwrap_or(0);
    assert_eq!(mode, 0o600);
    let names: Vec<String> = std::fs::read_dir(&dir)
        .map(|d| {
            d.filter_map(|e| e.ok())
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default();
    assert_eq!(names, ["w.csv"], "no partial file left");
    // An existing file: refused, then replaced with --force.
    let again = swapscope(&["export", &f, "--format", "parquet", "-o", &o]);
    assert_eq!(again.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&again.stderr).contains("--force"));
    ok(&["export", &f, "--format", "parquet", "-o", &o, "--force"]);
    let head = std::fs::read(&out).unwrap_or_default();
    assert_eq!(head.get(..4), Some(&b"PAR1"[..]));
}

#[test]
fn a_multi_million_event_export_streams_within_256_mib() {
    let dir = tmpdir("export", "large");
    let sim = dir.join("mixed.swsc");
    let s = sim.to_string_lossy();
    // 2.3 M events; `--models buddy` keeps the simulation's own analysis short in debug builds.
    let o = ok(&[
        "simulate",
        "--workload",
        "mixed-orders",
        "--swap-size",
        "16G",
        "--iterations",
        "2",
        "--models",
        "buddy",
        "-o",
        &s,
    ]);
    let said = String::from_utf8_lossy(&o.stderr);
    let events: u64 = said
        .split_whitespace()
        .skip_while(|w| *w != "wrote")
        .nth(1)
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("simulate said {said:?}"));
    assert!(events >= 2_000_000, "{events} events");
    for format in ["parquet", "csv"] {
        let out = dir.join(format!("mixed.{format}"));
        let r = measured::run(&[
            "export",
            &s,
            "--format",
            format,
            "-o",
            &out.to_string_lossy(),
        ]);
        assert!(r.status.success(), "export {format}: {}", r.stderr);
        assert!(r.stdout.is_empty(), "export {format} wrote to stdout");
        assert!(
            r.stderr.contains(&format!("wrote {events} rows")),
            "export {format}: {}",
            r.stderr
        );
        let size = std::fs::metadata(&out).map(|m| m.len()).unwrap_or(0);
        eprintln!(
            "export {format}: {events} rows in {:.1} s ({:.0} rows/s, this build), peak RSS {} MiB, {} bytes",
            r.secs,
            events as f64 / r.secs,
            r.max_rss_kib >> 10,
            size
        );
        assert!(
            r.max_rss_kib <= RSS_BOUND_KIB,
            "export {format} peaked at {} MiB (bound {} MiB)",
            r.max_rss_kib >> 10,
            RSS_BOUND_KIB >> 10
        );
        if let Some(python) = duckdb() {
            let d = query(
                &python,
                "print(json.dumps(q('select count(*) from t')[0][0]))",
                &out,
                format,
                &duckdb_csv_columns(EVENT_COLUMNS),
            );
            assert_eq!(
                d.as_u64(),
                Some(events),
                "DuckDB's row count of the {format} export"
            );
        }
        let _ = std::fs::remove_file(&out);
    }
    let _ = std::fs::remove_file(&sim);
}
