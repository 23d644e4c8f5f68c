//! The report's JSON against docs/report-schema.md: every documented key is present in every
//! report — of each test recording (tracepoint host, full-tier VMs, a simulate recording) and of
//! `simulate --json` for every workload — and no report has a key the document does not list.
//! A key under a null object or an empty list is not required (the document says when they are).
//! Each report also reads back into `report::Report`, the type that wrote it and that the VM
//! suite's checks (xtask) read it through, with nothing lost or changed.

use std::{collections::BTreeSet, path::PathBuf, process::Command};

use serde_json::Value;
use swapscope::report::Report;

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// The key paths the document lists, with their type column.
/// The heading that starts the sweep document's table in docs/report-schema.md.
const SWEEP_HEADING: &str = "## `report --sweep`";

/// The keys documented for the report (`sweep` false) or for the sweep document.
fn documented_in(sweep: bool) -> Vec<(String, String)> {
    let doc = std::fs::read_to_string(root().join("../docs/report-schema.md"))
        .unwrap_or_else(|e| panic!("docs/report-schema.md: {e}"));
    let (report, rest) = doc
        .split_once(SWEEP_HEADING)
        .unwrap_or_else(|| panic!("docs/report-schema.md has no {SWEEP_HEADING:?} section"));
    if sweep { rest } else { report }
        .lines()
        .filter_map(|l| {
            let rest = l.strip_prefix("| `")?;
            let (key, rest) = rest.split_once('`')?;
            let ty = rest.trim_start_matches(" |").split('|').next()?.trim();
            Some((key.to_string(), ty.to_string()))
        })
        .collect()
}

/// The documented keys of type `map` (whose contents are not listed), and every documented key.
fn maps_and_keys(doc: &[(String, String)]) -> (BTreeSet<String>, BTreeSet<String>) {
    let maps = doc
        .iter()
        .filter(|(_, t)| t == "map")
        .map(|(k, _)| k.clone())
        .collect();
    let keys = doc.iter().map(|(k, _)| k.clone()).collect();
    (maps, keys)
}

fn documented() -> Vec<(String, String)> {
    documented_in(false)
}

/// `real` has the keys of a `models[]` item (as the document says), `markers[].real` those of a
/// `markers[].models[]` item.
fn canonical(p: &str) -> String {
    // `intervals[]` and `peak` rows have the keys of a `markers[]` row.
    if let Some(rest) = p
        .strip_prefix("intervals[]")
        .or_else(|| p.strip_prefix("peak"))
        && !rest.is_empty()
    {
        return canonical(&format!("markers[]{rest}"));
    }
    if let Some(rest) = p.strip_prefix("markers[].real.") {
        return format!("markers[].models[].{rest}");
    }
    if let Some(rest) = p.strip_prefix("real.") {
        return format!("models[].{rest}");
    }
    p.to_string()
}

/// Paths of `v`: objects recurse (`a.b`), list items as `a[]`, maps (documented as `map`) stop.
fn paths(v: &Value, at: &str, maps: &BTreeSet<String>, out: &mut BTreeSet<String>) {
    if !at.is_empty() {
        out.insert(canonical(at));
    }
    if maps.contains(&canonical(at)) {
        return;
    }
    match v {
        Value::Object(o) => {
            for (k, x) in o {
                let p = if at.is_empty() {
                    k.clone()
                } else {
                    format!("{at}.{k}")
                };
                paths(x, &p, maps, out);
            }
        }
        Value::Array(a) => {
            for x in a {
                paths(x, &format!("{at}[]"), maps, out);
            }
        }
        _ => {}
    }
}

/// Whether `path` may be absent in `doc`: some parent of it is null or an empty list (an absent
/// parent excuses nothing).
fn excused(doc: &Value, path: &str) -> bool {
    let parts: Vec<&str> = path.split('.').collect();
    let mut cur = vec![doc.clone()];
    for part in &parts[..parts.len() - 1] {
        let (name, items) = match part.strip_suffix("[]") {
            Some(n) => (n, true),
            None => (*part, false),
        };
        let mut next = Vec::new();
        for c in &cur {
            let Some(v) = c.get(name) else {
                return false;
            };
            if v.is_null() {
                return true;
            }
            if items {
                match v.as_array() {
                    Some(a) if a.is_empty() => return true,
                    Some(a) => next.extend(a.iter().cloned()),
                    None => return false,
                }
            } else {
                next.push(v.clone());
            }
        }
        cur = next;
    }
    // The last part: a list that is documented with item keys is excused when empty.
    let last = parts[parts.len() - 1];
    if let Some(name) = last.strip_suffix("[]") {
        return cur.iter().all(|c| {
            c.get(name)
                .and_then(Value::as_array)
                .is_some_and(Vec::is_empty)
        });
    }
    false
}

/// `r` read as a [`Report`] and written again is `r`: every key is a field of the type, of the
/// type it is written as (so the checks that read reports through it see every figure).
fn reads_back_as_a_report(what: &str, r: &Value) {
    let typed: Report = serde_json::from_value(r.clone())
        .unwrap_or_else(|e| panic!("{what}: not a report::Report: {e}"));
    let again = serde_json::to_value(&typed).unwrap_or_else(|e| panic!("{what}: {e}"));
    assert!(
        again == *r,
        "{what}: the report read as report::Report writes back differently"
    );
}

fn json_of(args: &[&str]) -> Value {
    let out = Command::new(env!("CARGO_BIN_EXE_swapscope"))
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("swapscope {args:?}: {e}"));
    assert!(
        out.status.success(),
        "swapscope {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap_or_else(|e| panic!("{args:?}: {e}"))
}

#[test]
fn every_report_has_exactly_the_documented_keys() {
    let doc = documented();
    assert!(doc.len() > 60, "{} keys documented", doc.len());
    let (maps, keys) = maps_and_keys(&doc);
    let mut reports = Vec::new();
    for f in [
        "host-6.18-tracepoint.swsc",
        "vm-7.3-full-frag.swsc",
        "vm-7.3-full-timed.swsc",
        "vm-7.3-full-swapin.swsc",
        "sim-thp-fragment.swsc",
    ] {
        let p = root().join("tests/data").join(f).display().to_string();
        reports.push((f.to_string(), json_of(&["report", "--json", &p])));
    }
    for w in swapscope::workload::NAMES {
        reports.push((
            format!("simulate {w}"),
            json_of(&["simulate", "--workload", w, "--iterations", "2", "--json"]),
        ));
    }
    for (what, r) in &reports {
        assert_eq!(r["schema"], swapscope::report::REPORT_SCHEMA, "{what}");
        reads_back_as_a_report(what, r);
        let mut seen = BTreeSet::new();
        paths(r, "", &maps, &mut seen);
        // Containers are documented through their members: `kernel` by `kernel.*`, list items
        // (`limits[]`) by their list.
        let covered = |p: &String| {
            keys.contains(p)
                || p.strip_suffix("[]").is_some_and(|l| keys.contains(l))
                || keys.iter().any(|k| k.starts_with(&format!("{p}.")))
        };
        let undocumented: Vec<&String> = seen.iter().filter(|p| !covered(p)).collect();
        assert!(
            undocumented.is_empty(),
            "{what}: undocumented keys {undocumented:?}"
        );
        let missing: Vec<&String> = keys.difference(&seen).filter(|k| !excused(r, k)).collect();
        assert!(
            missing.is_empty(),
            "{what}: documented keys missing {missing:?}"
        );
        for (k, ty) in &doc {
            if ty == "map" && !excused(r, k) && !k.contains("[]") {
                let v = k.split('.').fold(r, |v, p| &v[p]);
                assert!(v.is_object(), "{what}: {k} is not a map: {v}");
            }
        }
    }
    // `events` counts every event, `writeout_events` the write-outs.
    let (_, sim) = &reports[4];
    assert_eq!(sim["writeout_events"], 0);
    assert_eq!(sim["events"], sim["stream"]["events"]);
}

/// A format 1.3 recording (Debian 7.3 in QEMU, `seq` scenario): its swap-in events account for
/// every page the kernel read back and every 64 KiB folio it swapped in whole, and its cluster
/// events agree with themselves move by move.
#[test]
fn a_full_tier_recording_carries_swap_ins_and_cluster_lists() {
    let p = root()
        .join("tests/data/vm-7.3-full-swapin.swsc")
        .display()
        .to_string();
    let r = json_of(&["report", "--json", &p]);
    reads_back_as_a_report("vm-7.3-full-swapin.swsc", &r);
    let n = |v: &Value| v.as_u64().unwrap_or_else(|| panic!("not a number: {v}"));
    assert!(n(&r["swapin_pages"]) > 10_000, "{}", r["swapin_pages"]);
    assert_eq!(r["swapin_pages"], r["kernel"]["pswpin_pages"]);
    assert!(n(&r["swapins_by_order"]["4"]) > 1000);
    assert_eq!(
        r["swapins_by_order"]["4"],
        r["kernel"]["swpin_by_order"]["4"]
    );
    let st = &r["stream"];
    assert!(n(&st["cluster_events"]) > 1000, "{st}");
    assert!(n(&st["real_cluster_checks"]) > 1000, "{st}");
    assert_eq!(n(&st["real_cluster_mismatches"]), 0, "{st}");
    // The kernel's own lists: with cluster events the real occupancy has frag clusters, which
    // counts alone never give (partly used clusters are all `nonfull` then).
    let peak = &r["peak"]["real"]["state"]["clusters"];
    assert!(n(&peak["frag"]) > 0, "{peak}");
}

/// `report --sweep --json` has exactly the keys the sweep table documents.
#[test]
fn a_sweep_has_exactly_the_documented_keys() {
    let doc = documented_in(true);
    assert!(doc.len() >= 8, "{doc:?}");
    let (maps, keys) = maps_and_keys(&doc);
    let p = root()
        .join("tests/data/vm-7.3-full-frag.swsc")
        .display()
        .to_string();
    let sweep = json_of(&["report", "--json", &p, "--sweep", "50%..100%"]);
    assert_eq!(sweep["schema"], 1);
    let mut seen = BTreeSet::new();
    paths(&sweep, "", &maps, &mut seen);
    // List items themselves (`a[]`) are not rows of the table; their keys are.
    seen.retain(|k| !k.ends_with("[]"));
    assert_eq!(seen, keys, "sweep keys vs docs/report-schema.md");
}
