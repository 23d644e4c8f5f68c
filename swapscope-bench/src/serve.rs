//! `cargo xtask bench --serve` (root): `swapscope serve --demo` on a loopback port, scraped at a
//! fixed rate by a bounded loop for a fixed time while the demo swaps. Reports failed scrapes,
//! scrape latency percentiles (hdrhistogram) and the exporter's resident memory at the start,
//! its peak and at the end (from its own `process_resident_memory_bytes`).

use std::{
    fmt::Write as _,
    io::{BufRead as _, BufReader, Read as _, Write as _},
    net::{SocketAddr, TcpStream},
    path::{Path, PathBuf},
    process::{Command, ExitCode, Stdio},
    time::{Duration, Instant},
};

use anyhow::{Context as _, bail};
use hdrhistogram::Histogram;

use crate::replay::{loadavg, machine_line, write_doc_block};

const BEGIN: &str = "<!-- bench-serve:begin -->";
const END: &str = "<!-- bench-serve:end -->";

/// One scrape over HTTP/1.0 (the benchmark's own client): status and body.
fn scrape(addr: SocketAddr) -> std::io::Result<(u16, String)> {
    let mut s = TcpStream::connect_timeout(&addr, Duration::from_secs(2))?;
    s.set_read_timeout(Some(Duration::from_secs(5)))?;
    write!(s, "GET /metrics HTTP/1.0\r\nHost: {addr}\r\n\r\n")?;
    let mut raw = String::new();
    s.read_to_string(&mut raw)?;
    let status = raw
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    Ok((status, raw))
}

fn rss_of(body: &str) -> Option<f64> {
    body.lines()
        .find_map(|l| l.strip_prefix("process_resident_memory_bytes "))
        .and_then(|v| v.trim().parse().ok())
}

pub fn run(
    exe: &Path,
    rate: u32,
    seconds: u64,
    doc: Option<&PathBuf>,
    command: &str,
) -> anyhow::Result<ExitCode> {
    if !swapscope_probe::host::is_root() {
        bail!("the exporter benchmark runs the demo workload: run it as root");
    }
    let mut serve = Command::new(exe)
        .args(["serve", "--demo", "--listen", "127.0.0.1:0"])
        .stderr(Stdio::piped())
        .stdout(Stdio::null())
        .spawn()
        .context("starting swapscope serve --demo")?;
    let err = serve.stderr.take().context("serve's stderr")?;
    let mut lines = BufReader::new(err).lines();
    let addr: SocketAddr = loop {
        let Some(Ok(line)) = lines.next() else {
            let _ = serve.kill();
            let _ = serve.wait();
            bail!("swapscope serve --demo ended before listening");
        };
        if let Some(rest) = line.strip_prefix("swapscope serve: http://") {
            let a = rest.split('/').next().unwrap_or_default();
            break a.parse().with_context(|| format!("address in {line:?}"))?;
        }
    };
    // Keep draining its stderr so it never blocks on a full pipe.
    std::thread::spawn(move || for _ in lines {});
    std::thread::sleep(Duration::from_secs(3));
    let load_before = loadavg();
    let mut hist = Histogram::<u64>::new_with_bounds(1, 60_000_000, 3)?;
    let (mut ok, mut failed, mut bytes) = (0u64, 0u64, 0usize);
    let (mut rss_first, mut rss_last, mut rss_max) = (None, 0.0f64, 0.0f64);
    let every = Duration::from_secs(1) / rate.max(1);
    let start = Instant::now();
    let mut next = start;
    while start.elapsed() < Duration::from_secs(seconds) {
        let t = Instant::now();
        match scrape(addr) {
            Ok((200, body)) => {
                ok += 1;
                let _ = hist.record(t.elapsed().as_micros().max(1) as u64);
                bytes = body.len();
                if let Some(r) = rss_of(&body) {
                    rss_first.get_or_insert(r);
                    rss_last = r;
                    rss_max = rss_max.max(r);
                }
            }
            _ => failed += 1,
        }
        next += every;
        if let Some(wait) = next.checked_duration_since(Instant::now()) {
            std::thread::sleep(wait);
        }
    }
    let load_after = loadavg();
    // SAFETY: kill(2) on our own child, not yet waited for.
    unsafe { libc::kill(serve.id() as libc::pid_t, libc::SIGTERM) };
    let st = serve.wait()?;
    let mib = |b: f64| b / f64::from(1u32 << 20);
    let mut block = String::new();
    let _ = writeln!(block, "{BEGIN}");
    let _ = writeln!(
        block,
        "`{command}` — {} `swapscope serve --demo` scraped at {rate}/s for {seconds} s from one loopback client:\n",
        machine_line(&load_before, &load_after)
    );
    let _ = writeln!(
        block,
        "| scrapes | failed | p50 ms | p90 ms | p99 ms | max ms | body KiB | exporter RSS MiB: first / peak / last |"
    );
    let _ = writeln!(block, "|---|---|---|---|---|---|---|---|");
    let ms = |q: f64| hist.value_at_quantile(q) as f64 / 1000.0;
    let _ = writeln!(
        block,
        "| {ok} | {failed} | {:.2} | {:.2} | {:.2} | {:.2} | {:.1} | {:.1} / {:.1} / {:.1} |",
        ms(0.5),
        ms(0.9),
        ms(0.99),
        hist.max() as f64 / 1000.0,
        bytes as f64 / 1024.0,
        mib(rss_first.unwrap_or(0.0)),
        mib(rss_max),
        mib(rss_last)
    );
    let _ = writeln!(block, "{END}");
    print!("{block}");
    if let Some(p) = doc {
        write_doc_block(Path::new(p), BEGIN, END, &block)?;
    }
    if !st.success() {
        bail!("swapscope serve --demo exited with {st} after SIGTERM");
    }
    Ok(if failed == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}
