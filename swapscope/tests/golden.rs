//! `report --json` and `simulate --json` give, byte for byte, the documents checked in under
//! tests/data/golden/. They were written by the swapscope of before the event pipeline (commit
//! 69fca86) from the recordings beside them, so this holds the pipeline refactor (and any later
//! change) to the same figures. A deliberate change of the report regenerates them with
//! `SWAPSCOPE_BLESS=1 cargo test --test golden` and says so in its commit.

use std::{path::PathBuf, process::Command};

fn data(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/data")
        .join(name)
}

fn check(golden: &str, args: &[&str]) {
    let out = Command::new(env!("CARGO_BIN_EXE_swapscope"))
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("running swapscope {args:?}: {e}"));
    assert!(
        out.status.success(),
        "swapscope {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let path = data("golden").join(golden);
    if std::env::var_os("SWAPSCOPE_BLESS").is_some() {
        std::fs::write(&path, &out.stdout).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        return;
    }
    let want = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let got = String::from_utf8_lossy(&out.stdout);
    if got != want {
        let line = got
            .lines()
            .zip(want.lines())
            .position(|(a, b)| a != b)
            .unwrap_or_else(|| got.lines().count().min(want.lines().count()));
        panic!(
            "swapscope {args:?} differs from {} from line {}:\n  got:  {}\n  want: {}",
            path.display(),
            line + 1,
            got.lines().nth(line).unwrap_or("<end>"),
            want.lines().nth(line).unwrap_or("<end>")
        );
    }
}

fn report(recording: &str) {
    let file = data(&format!("{recording}.swsc"));
    let file = file.to_string_lossy();
    check(
        &format!("report-{recording}.json"),
        &["report", "--json", &file],
    );
}

#[test]
fn report_of_a_tracepoint_tier_host_recording() {
    report("host-6.18-tracepoint");
}

#[test]
fn report_of_a_full_tier_vm_recording() {
    report("vm-7.3-full-frag");
}

#[test]
fn report_of_a_simulate_recording() {
    report("sim-thp-fragment");
}

#[test]
fn simulate_of_every_workload() {
    for w in [
        "thp-fragment",
        "fork-partial-zap",
        "mixed-orders",
        "fill-drain",
    ] {
        // `--swapin small` is the swap-in these documents were written with (before
        // large-folio swap-in became the default): the same stream, the same document.
        check(
            &format!("simulate-{w}.json"),
            &[
                "simulate",
                "--workload",
                w,
                "--iterations",
                "3",
                "--swapin",
                "small",
                "--json",
            ],
        );
    }
    check(
        "simulate-mixed-orders-cpus2-32M.json",
        &[
            "simulate",
            "--workload",
            "mixed-orders",
            "--iterations",
            "2",
            "--cpus",
            "2",
            "--swap-size",
            "32M",
            "--json",
        ],
    );
}
