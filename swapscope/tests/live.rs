//! Live host test (root, tracepoint tier): a temporary zram swap device and memory cgroup, a
//! 600 MiB toucher under a 256 MiB limit with 64 KiB mTHP `always`, `swapscope record` around it,
//! and the recording's counts checked against the kernel's own counters.
//!
//! Run by `cargo xtask test` (which checks for root and BTF first):
//! `cargo test -p swapscope --test live -- --ignored --nocapture`.

use std::{
    fs,
    path::{Path, PathBuf},
    process::Command,
    time::{SystemTime, UNIX_EPOCH},
};

use serde_json::Value;

mod common;

use common::{Tmux, wait_file};

const EXE: &str = env!("CARGO_BIN_EXE_swapscope");

fn tmpdir(name: &str) -> PathBuf {
    let d = Path::new(env!("CARGO_TARGET_TMPDIR")).join(name);
    let _ = fs::remove_dir_all(&d);
    fs::create_dir_all(&d).unwrap_or_else(|e| panic!("creating {}: {e}", d.display()));
    d
}

fn report_json(file: &Path) -> Value {
    let out = Command::new(EXE)
        .args(["report", "--json"])
        .arg(file)
        .output()
        .unwrap_or_else(|e| panic!("running report: {e}"));
    assert!(
        out.status.success(),
        "report failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap_or_else(|e| panic!("report JSON: {e}"))
}

fn num(v: &Value, path: &[&str]) -> u64 {
    let mut cur = v;
    for p in path {
        cur = &cur[*p];
    }
    cur.as_u64().unwrap_or(0)
}

fn swaps() -> String {
    fs::read_to_string("/proc/swaps").unwrap_or_default()
}

/// No `swapscope-*` cgroup is left in either hierarchy.
fn assert_no_cgroups_left() {
    for root in ["/sys/fs/cgroup/memory", "/sys/fs/cgroup"] {
        if let Ok(rd) = fs::read_dir(root) {
            for e in rd.flatten() {
                let name = e.file_name().to_string_lossy().into_owned();
                assert!(
                    !name.starts_with("swapscope-"),
                    "stress left cgroup {root}/{name} behind"
                );
            }
        }
    }
}

#[test]
#[ignore = "live: needs root, BTF, zram and tmux; run by `cargo xtask test`"]
fn live_tui_with_the_demo_counts_what_the_kernel_counts() {
    assert!(Tmux::available(), "tmux is needed for the live TUI test");
    let dir = tmpdir("live-tui");
    let summary = dir.join("summary.json");
    let rc = dir.join("rc");
    let pid = dir.join("pid");
    let rec = dir.join("live.swsc");
    let fifo = dir.join("markers");
    let swaps_before = swaps();
    let t = Tmux::start(
        &format!(
            "sh -c 'echo $$ > {pid}; exec {EXE} live --demo --record {rec} --marker-fifo {fifo} --summary-json {summary}'; echo $? > {rc}; sleep 120",
            pid = pid.display(),
            rec = rec.display(),
            fifo = fifo.display(),
            summary = summary.display(),
            rc = rc.display(),
        ),
        160,
        48,
    );
    t.wait_for("● live", 30);
    // 64 KiB write-outs show up in the Overview once the demo swaps.
    t.wait_for("64K", 60);
    // Markers from the three inputs: the m key, SIGUSR1, the FIFO.
    t.keys(&["m", "k", "e", "y", "Enter"]);
    let live_pid = wait_file(&pid, 5).trim().to_string();
    let st = Command::new("kill")
        .args(["-USR1", &live_pid])
        .status()
        .unwrap_or_else(|e| panic!("kill: {e}"));
    assert!(st.success(), "kill -USR1 {live_pid}");
    fs::write(&fifo, "from the fifo\n").unwrap_or_else(|e| panic!("writing the FIFO: {e}"));
    // About 20 s of watching, through every view.
    for key in ["2", "3", "4", "5", "1", "2", "5", "1"] {
        t.keys(&[key]);
        std::thread::sleep(std::time::Duration::from_millis(2500));
    }
    let screen = t.capture();
    assert!(
        screen.contains("tier tracepoint") || screen.contains("tier full"),
        "{screen}"
    );
    t.keys(&["q"]);
    assert_eq!(
        wait_file(&rc, 120).trim(),
        "0",
        "swapscope live exit status"
    );
    drop(t);
    assert_eq!(swaps(), swaps_before, "the demo left a swap device behind");
    assert_no_cgroups_left();
    let s: Value = serde_json::from_str(&fs::read_to_string(&summary).unwrap_or_default())
        .unwrap_or_else(|e| panic!("summary JSON: {e}"));
    eprintln!("{}", serde_json::to_string_pretty(&s).unwrap_or_default());
    let w4 = num(&s, &["writeouts_by_order", "4"]);
    let k4 = num(&s, &["kernel_swpout_by_order", "4"]);
    assert!(num(&s, &["events"]) > 50_000, "expected a real swap storm");
    assert!(w4 > 0, "no 64 KiB write-out seen");
    assert_eq!(num(&s, &["lost_events"]), 0, "ring-buffer drops");
    assert_eq!(
        num(&s, &["analysis_skipped"]),
        0,
        "the analysis fell behind"
    );
    assert_eq!(w4, k4, "64 KiB write-outs vs the kernel's swpout delta");
    // The recording kept the markers, and the FIFO swapscope created is gone.
    let out = Command::new(EXE)
        .arg("dump")
        .arg(&rec)
        .output()
        .unwrap_or_else(|e| panic!("dump: {e}"));
    let dump = String::from_utf8_lossy(&out.stdout);
    let markers: Vec<&str> = dump.lines().filter(|l| l.contains(" marker ")).collect();
    for want in ["\"key\"", "\"SIGUSR1 ", "\"from the fifo\""] {
        assert!(
            markers.iter().any(|l| l.contains(want)),
            "no marker {want} in {markers:?}"
        );
    }
    assert!(!fifo.exists(), "the marker FIFO was left behind");
}

#[test]
#[ignore = "live: needs root, BTF and zram; run by `cargo xtask test`"]
fn doctor_says_tracepoint_tier() {
    let out = Command::new(EXE)
        .args(["doctor", "--json"])
        .output()
        .unwrap_or_else(|e| panic!("doctor: {e}"));
    assert!(
        out.status.success(),
        "doctor exit {:?}: {}",
        out.status,
        String::from_utf8_lossy(&out.stdout)
    );
    let v: Value =
        serde_json::from_slice(&out.stdout).unwrap_or_else(|e| panic!("doctor JSON: {e}"));
    assert_eq!(v["tier"], "tracepoint");
    assert_eq!(v["can_record"], true);
}

#[test]
#[ignore = "live: needs root, BTF and zram; run by `cargo xtask test`"]
fn recording_matches_kernel_counters() {
    let dir = tmpdir("live");
    let file = dir.join("live.swsc");
    let swaps_before = swaps();
    let status = Command::new(EXE)
        .arg("record")
        .arg("-o")
        .arg(&file)
        .arg("--")
        .arg(EXE)
        .args([
            "stress",
            "--pattern",
            "sequential",
            "--zram",
            "1024",
            "--mthp",
            "64K",
            "--limit",
            "256",
        ])
        .args(["--size", "600", "--passes", "2"])
        .status()
        .unwrap_or_else(|e| panic!("running record: {e}"));
    assert!(status.success(), "record -- stress failed: {status}");
    // Everything stress created is gone again.
    assert_eq!(swaps(), swaps_before, "stress left a swap device behind");
    assert_no_cgroups_left();

    let r = report_json(&file);
    eprintln!("{}", serde_json::to_string_pretty(&r).unwrap_or_default());
    let events = num(&r, &["events"]);
    let w4 = num(&r, &["writeouts_by_order", "4"]);
    let k4 = num(&r, &["kernel", "swpout_by_order", "4"]);
    let pages = num(&r, &["writeout_pages"]);
    let pswpout = num(&r, &["kernel", "pswpout_pages"]);
    let zero = num(&r, &["kernel", "swpout_zero_pages"]);
    assert!(
        events > 50_000,
        "expected a real swap storm, saw {events} write-outs"
    );
    assert!(
        w4 > 0,
        "no 64 KiB folio was written out; is mTHP swap-out working?"
    );
    assert_eq!(num(&r, &["lost_events"]), 0, "events were lost");
    // The documented relations (docs/kernel-support.md): every write-out event of a folio that
    // reached the device is one swpout of its size and 2^order pages of pswpout. The toucher
    // writes non-zero bytes, so no folio is kept off the device as zero-filled.
    assert_eq!(
        zero, 0,
        "zero-filled folios would make the relations inexact"
    );
    assert_eq!(
        w4, k4,
        "64 KiB write-outs vs the kernel's hugepages-64kB/stats/swpout delta"
    );
    assert_eq!(
        pages, pswpout,
        "Σ 2^order × write-outs vs the pswpout delta"
    );

    // A copy cut at a random byte still reads, up to its last whole chunk.
    let bytes = fs::read(&file).unwrap_or_else(|e| panic!("reading {}: {e}", file.display()));
    let seed = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos() as usize)
        .unwrap_or(7);
    // Past the file header (its length is the u32 at byte 12), anywhere in the chunks.
    let header_len = u32::from_le_bytes([bytes[12], bytes[13], bytes[14], bytes[15]]) as usize;
    let cut_at = header_len + seed % (bytes.len() - header_len);
    eprintln!("cutting {} bytes at {cut_at}", bytes.len());
    let cut = dir.join("cut.swsc");
    fs::write(&cut, &bytes[..cut_at]).unwrap_or_else(|e| panic!("writing the cut copy: {e}"));
    let rc = report_json(&cut);
    assert!(num(&rc, &["events"]) <= events);
    assert!(
        !rc["warnings"].as_array().is_none_or(Vec::is_empty),
        "a cut file must carry a warning"
    );
    // And the whole file reads with no warning at all.
    assert!(
        r["warnings"].as_array().is_some_and(Vec::is_empty),
        "the intact file has warnings"
    );
}
