//! `swapscope-bench --live-analysis`: the highest event rate the live analysis (the `Analysis`
//! behind `live` and `serve`, on its own thread, lossy as on a live host) keeps up with, without
//! skipping a batch. A kernel-like stream (the workload answered by the 7.x model, as a full-tier
//! host delivers it: requests with their slots, write-outs, frees) is generated into memory
//! first; then, per rate, it is fed in 8192-event batches at that pace, with the sink's ticks, and
//! the analysis's `analysis_skipped` read at the end. Rates double from 250 k events/s until one
//! skips, then a bisection narrows the highest that does not.

use std::{
    fmt::Write as _,
    time::{Duration, Instant},
};

use anyhow::{Context as _, bail};
use swapscope_core::{
    event::Event,
    record::RecordingHeader,
    sink::{
        Sink as _,
        analysis::{Analysis, AnalysisConfig, Threaded},
    },
    source::{
        Poll, Source as _, Summary,
        sim::{Answered, SimSource},
    },
    workload::WorkloadSpec,
};
use swapscope_models::{self as models, Linux618};

use super::replay::{BenchArgs, loadavg};

/// Events per batch handed to the sink (the live source's merged batch size).
const BATCH: usize = 8192;
/// Bisection steps after the first rate that skips.
const STEPS: u32 = 4;

/// One model list's result.
struct Found {
    label: String,
    /// Events/s when the feeder waits for the analysis instead of skipping (a replay's pace).
    capacity: f64,
    /// Highest rate with 0 skipped (events/s), and the lowest that skipped (`None`: none did up
    /// to the stream's end).
    sustained: f64,
    failed: Option<f64>,
}

/// The results as a markdown table (with the stream it was measured on), and the load average
/// before and after.
pub fn run(a: &BenchArgs) -> anyhow::Result<(String, String, String)> {
    let load_before = loadavg();
    let (header, batches, n) = generate(a)?;
    eprintln!("swapscope bench: {n} events generated ({})", a.workload);
    let mut lists: Vec<(String, Vec<String>)> = vec![(
        format!("the {} default models", models::NAMES.len()),
        models::NAMES.iter().map(|s| (*s).to_string()).collect(),
    )];
    lists.push(("--models all".into(), models::select(&["all".to_string()])?));
    let mut found = Vec::new();
    for (label, names) in lists {
        let capacity = unpaced(&header, &names, &batches)?;
        eprintln!(
            "swapscope bench: {label}: {:.2} M events/s unpaced (the feeder waits)",
            capacity / 1e6
        );
        // Whether the analysis keeps up with `rate` (fed at that pace, 0 skipped).
        let keeps_up = |rate: f64| -> anyhow::Result<bool> {
            let (skipped, achieved) = feed(&header, &names, &batches, rate)?;
            eprintln!(
                "swapscope bench: {label}: {:.2} M events/s asked, {:.2} fed, {skipped} skipped",
                rate / 1e6,
                achieved / 1e6
            );
            Ok(skipped == 0 && achieved >= 0.97 * rate)
        };
        let mut ok = 0.0f64;
        let mut bad: Option<f64> = None;
        let mut rate = 250_000.0f64;
        // Doubling until a rate skips (or the feeder itself cannot go faster).
        while bad.is_none() && rate <= 64e6 {
            if keeps_up(rate)? {
                ok = rate;
                rate *= 2.0;
            } else {
                bad = Some(rate);
            }
        }
        if let Some(mut hi) = bad {
            let mut lo = ok;
            for _ in 0..STEPS {
                let mid = (lo + hi) / 2.0;
                if keeps_up(mid)? {
                    lo = mid;
                } else {
                    hi = mid;
                }
            }
            ok = lo;
            bad = Some(hi);
        }
        found.push(Found {
            label,
            capacity,
            sustained: ok,
            failed: bad,
        });
    }
    let load_after = loadavg();
    let mut s = String::new();
    let _ = writeln!(
        s,
        "Command: `cargo xtask bench --live-analysis` ({} answered by linux-6.18, {} GiB swap, {n} events in memory, fed in batches of {BATCH} to the analysis `serve` runs, lossy).\n",
        a.workload, a.swap_gib
    );
    let _ = writeln!(
        s,
        "| models | highest rate with 0 skipped | lowest rate that skipped | unpaced (the feeder waits) |"
    );
    let _ = writeln!(s, "|---|---:|---:|---:|");
    for f in &found {
        let _ = writeln!(
            s,
            "| {} | {:.2} M events/s | {} | {:.2} M events/s |",
            f.label,
            f.sustained / 1e6,
            f.failed.map_or("none up to 64 M/s".into(), |r| format!(
                "{:.2} M events/s",
                r / 1e6
            )),
            f.capacity / 1e6
        );
    }
    Ok((s, load_before, load_after))
}

/// The workload answered by the 7.x model, in memory: its header, the batches and their events.
fn generate(a: &BenchArgs) -> anyhow::Result<(RecordingHeader, Vec<Vec<Event>>, u64)> {
    let mut spec = WorkloadSpec::new(&a.workload);
    spec.swap_size_bytes = a.swap_gib << 30;
    spec.cpus = 2;
    let mut source = Answered::new(SimSource::new(spec)?, Box::new(Linux618::new()));
    let header = source.header().clone();
    let mut batches = Vec::new();
    let mut pending: Vec<Event> = Vec::with_capacity(BATCH);
    let mut n = 0u64;
    while n < a.events {
        let mut b = Vec::new();
        match source.poll(&mut b).context("generating the stream")? {
            Poll::End => break,
            Poll::Events | Poll::Restart => {}
        }
        for ev in b {
            pending.push(ev);
            n += 1;
            if pending.len() == BATCH {
                batches.push(std::mem::replace(&mut pending, Vec::with_capacity(BATCH)));
            }
        }
    }
    if !pending.is_empty() {
        batches.push(pending);
    }
    if n == 0 {
        bail!("the {} workload gave no events", a.workload);
    }
    Ok((header, batches, n))
}

/// Every batch into a fresh live analysis of `names` as fast as it takes them (not lossy):
/// events/s.
fn unpaced(
    header: &RecordingHeader,
    names: &[String],
    batches: &[Vec<Event>],
) -> anyhow::Result<f64> {
    let mut sink = Threaded::spawn(live_analysis(header, names), Duration::from_secs(1), false)?;
    sink.start(header)?;
    let start = Instant::now();
    let mut sent = 0u64;
    for b in batches {
        sink.push(b)?;
        sink.tick(Instant::now())?;
        sent += b.len() as u64;
    }
    sink.finish(&Summary::default())?;
    if sink.into_analysis().is_none() {
        bail!("the analysis thread stopped");
    }
    Ok(sent as f64 / start.elapsed().as_secs_f64().max(1e-9))
}

/// The analysis `serve` runs on a live host.
fn live_analysis(header: &RecordingHeader, names: &[String]) -> Analysis {
    Analysis::new(header, names, AnalysisConfig::serve(1_000_000_000))
}

/// Feeds every batch at `rate` events/s into a fresh live analysis of `names`; returns the
/// events it skipped and the rate the feeder achieved.
fn feed(
    header: &RecordingHeader,
    names: &[String],
    batches: &[Vec<Event>],
    rate: f64,
) -> anyhow::Result<(u64, f64)> {
    let mut sink = Threaded::spawn(live_analysis(header, names), Duration::from_secs(1), true)?;
    sink.start(header)?;
    let start = Instant::now();
    let mut sent = 0u64;
    for b in batches {
        let due = start + Duration::from_secs_f64(sent as f64 / rate);
        let now = Instant::now();
        if due > now {
            std::thread::sleep(due - now);
        }
        sink.push(b)?;
        sink.tick(Instant::now())?;
        sent += b.len() as u64;
    }
    let achieved = sent as f64 / start.elapsed().as_secs_f64().max(1e-9);
    sink.finish(&Summary::default())?;
    let Some(mut a) = sink.into_analysis() else {
        bail!("the analysis thread stopped");
    };
    Ok((a.snapshot().analysis_skipped, achieved))
}
