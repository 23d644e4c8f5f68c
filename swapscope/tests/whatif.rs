//! What-if replay and model selection from the command line: `report --sweep` on a real VM
//! recording, `report --swap-size`, `simulate --sweep`, `--models all|default|LIST`.

use std::{path::Path, process::Command};

use serde_json::Value;

const EXE: &str = env!("CARGO_BIN_EXE_swapscope");

fn data(name: &str) -> String {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/data")
        .join(name)
        .display()
        .to_string()
}

fn json(args: &[&str]) -> Value {
    let o = Command::new(EXE)
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("{args:?}: {e}"));
    assert!(
        o.status.success(),
        "{args:?}: {}",
        String::from_utf8_lossy(&o.stderr)
    );
    serde_json::from_slice(&o.stdout).unwrap_or_else(|e| panic!("{args:?}: {e}"))
}

fn rate(models: &Value, name: &str, order: &str) -> f64 {
    models
        .as_array()
        .into_iter()
        .flatten()
        .find(|m| m["name"] == name)
        .and_then(|m| m["fallback_rate_by_order"][order].as_f64())
        .unwrap_or_else(|| panic!("no {name} rate for order {order} in {models}"))
}

fn point(sweep: &Value, percent: u64) -> &Value {
    sweep["points"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|p| p["percent"] == percent)
        .unwrap_or_else(|| panic!("no {percent} % point"))
}

/// The kernel's own stream (Debian 7.3, thp-fragment pattern on 64 MiB zram, 13.6 % of 64 KiB
/// requests refused) replayed onto half, the same and twice the device.
#[test]
fn sweep_of_a_vm_recording_follows_the_device_size() {
    let f = data("vm-7.3-full-frag.swsc");
    let plain = json(&["report", &f, "--json"]);
    let sweep = json(&["report", &f, "--json", "--sweep", "50%..200%:50%"]);
    assert_eq!(sweep["schema"], 1);
    assert_eq!(sweep["recorded_device_bytes"]["0"], 64 << 20);
    let pcts: Vec<u64> = sweep["points"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|p| p["percent"].as_u64())
        .collect();
    assert_eq!(pcts, [50, 100, 150, 200]);
    // At 100 % the sweep is the plain report.
    let at100 = rate(&point(&sweep, 100)["models"], "linux-6.18", "4");
    assert_eq!(at100, rate(&plain["models"], "linux-6.18", "4"));
    assert!(
        at100 > 0.05,
        "the recorded device refused 64K requests: {at100}"
    );
    // Less space, more fallback; twice the space, none of it.
    let at50 = rate(&point(&sweep, 50)["models"], "linux-6.18", "4");
    let at200 = rate(&point(&sweep, 200)["models"], "linux-6.18", "4");
    assert!(at50 > at100 && at100 > at200, "{at50} {at100} {at200}");
    assert_eq!(at200, 0.0);
    assert_eq!(point(&sweep, 50)["device_bytes"]["0"], 32 << 20);
    // Half the device cannot hold what the kernel held: order-0 requests were refused.
    let full = point(&sweep, 50)["models"][0]["failures_by_order"]["0"]
        .as_u64()
        .unwrap_or(0);
    assert!(full > 0);
    // --swap-size is the same replay as the sweep's point of that size.
    let half = json(&["report", &f, "--json", "--swap-size", "32M"]);
    assert_eq!(half["model_device_bytes"]["0"], 32 << 20);
    assert_eq!(rate(&half["models"], "linux-6.18", "4"), at50);
    assert_eq!(plain["model_device_bytes"], serde_json::json!({}));
    // The text table names every model and size.
    let o = Command::new(EXE)
        .args(["report", &f, "--sweep", "50%..100%"])
        .output()
        .unwrap_or_else(|e| panic!("{e}"));
    let text = String::from_utf8_lossy(&o.stdout);
    assert!(text.contains("what-if") && text.contains("32M") && text.contains("linux-6.18"));
}

#[test]
fn simulate_sweeps_and_all_means_every_model() {
    let all = json(&[
        "simulate",
        "--workload",
        "thp-fragment",
        "--iterations",
        "2",
        "--models",
        "all",
        "--json",
    ]);
    let names: Vec<&str> = all["models"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|m| m["name"].as_str())
        .collect();
    for n in swapscope::models::all_names() {
        assert!(
            names.contains(&n),
            "{n} missing from --models all: {names:?}"
        );
    }
    for n in ["linux-6.14", "rr-scan"] {
        assert!(names.contains(&n), "{n}");
    }
    let sweep = json(&[
        "simulate",
        "--workload",
        "thp-fragment",
        "--swapin",
        "small",
        "--iterations",
        "2",
        "--models",
        "linux-6.10,rr-scan",
        "--sweep",
        "50%..100%:50%",
        "--json",
    ]);
    let at100 = &point(&sweep, 100)["models"];
    // Warm-up included: 6.10 refuses 85.7 % then 100 % of the iterations' requests.
    assert!(rate(at100, "linux-6.10", "4") > 0.2);
    assert!(rate(at100, "rr-scan", "4") < 0.01);
}

#[test]
fn bad_what_if_flags_are_one_line() {
    let f = data("vm-7.3-full-frag.swsc");
    for (args, says) in [
        (
            vec!["report", &f, "--sweep", "25..200"],
            "expected FROM%..TO%",
        ),
        (vec!["report", &f, "--sweep", "200%..25%"], "FROM ≤ TO"),
        (
            vec!["report", &f, "--sweep", "50%..100%", "--swap-size", "1G"],
            "cannot be used with",
        ),
        (vec!["report", &f, "--models", "nope"], "unknown model"),
    ] {
        let o = Command::new(EXE)
            .args(&args)
            .output()
            .unwrap_or_else(|e| panic!("{e}"));
        let err = String::from_utf8_lossy(&o.stderr);
        assert!(!o.status.success(), "{args:?}");
        assert_eq!(err.trim().lines().count(), 1, "{args:?}: {err}");
        assert!(err.contains(says), "{args:?}: {err}");
    }
}

/// A sweep on a terminal says which point it replays, from the first (hostile #21 class 6: a
/// 64-point sweep ran 507 s with nothing on stderr). Run under `script`, which gives it a
/// terminal; off a terminal it stays silent (the JSON tests above read clean stdout).
#[test]
fn a_sweep_on_a_terminal_names_each_point() {
    let f = data("vm-7.3-full-frag.swsc");
    let cmd = format!("{EXE} report {f} --sweep 50%..100%:25% > /dev/null");
    let o = Command::new("script")
        .args(["-qec", &cmd, "/dev/null"])
        .output()
        .unwrap_or_else(|e| panic!("script: {e}"));
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let out = String::from_utf8_lossy(&o.stdout);
    for p in ["50% (1 of 3)", "75% (2 of 3)", "100% (3 of 3)"] {
        assert!(
            out.contains(p),
            "no progress for {p} on the terminal: {out:?}"
        );
    }
}
