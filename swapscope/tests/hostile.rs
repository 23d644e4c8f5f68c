//! Hostile recordings: files crafted to cost `report` and `replay` time or memory out of all
//! proportion to their size. Each is written with the library's own writer (valid framing, so
//! the reader accepts it) and read by the real binary, whose peak RSS is taken from `wait4`.

#[path = "common/measured.rs"]
mod measured;

use std::path::{Path, PathBuf};

use measured::{Run, run};

use swapscope::{
    event::{Alloc, AllocResult, Event, Free, Marker, SwapOn},
    record::{RecordingHeader, Writer, WriterOptions},
};

/// The bound the issue sets for any crafted input (peak RSS of the reading process).
const RSS_BOUND_KIB: u64 = 256 << 10;

fn craft(name: &str, events: impl IntoIterator<Item = Event>) -> (tempdir::Dir, PathBuf) {
    let dir = tempdir::Dir::new(name);
    let path = dir.path().join(format!("{name}.swsc"));
    let file = std::fs::File::create(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let header = RecordingHeader {
        kernel_release: "6.18.0-crafted".to_owned(),
        source: "crafted".to_owned(),
        nr_cpus: 1,
        ..RecordingHeader::default()
    };
    let mut w = Writer::create(
        std::io::BufWriter::new(file),
        &header,
        WriterOptions::default(),
    )
    .unwrap_or_else(|e| panic!("writer: {e}"));
    for ev in events {
        w.push(&ev).unwrap_or_else(|e| panic!("push: {e}"));
    }
    w.finish().unwrap_or_else(|e| panic!("finish: {e}"));
    (dir, path)
}

/// Small temporary directories removed on drop (the crate has no tempfile dependency).
mod tempdir {
    use std::path::{Path, PathBuf};

    pub struct Dir(PathBuf);
    impl Dir {
        pub fn new(name: &str) -> Self {
            let p = std::env::temp_dir()
                .join(format!("swapscope-hostile-{}-{name}", std::process::id()));
            std::fs::create_dir_all(&p).unwrap_or_else(|e| panic!("{}: {e}", p.display()));
            Dir(p)
        }
        pub fn path(&self) -> &Path {
            &self.0
        }
    }
    impl Drop for Dir {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }
}

fn swapon(ty: u8, max: u64) -> Event {
    Event::SwapOn(SwapOn {
        ts_ns: 1,
        swap_type: ty,
        max,
        bad: Vec::new(),
        flags: 0,
        prio: -2,
    })
}

fn check_bounded(path: &Path, what: &str) -> Run {
    let p = path.to_string_lossy();
    let r = run(&["report", "--json", &p]);
    assert!(r.status.success(), "{what}: report failed: {}", r.stderr);
    assert!(
        r.max_rss_kib <= RSS_BOUND_KIB,
        "{what}: report peaked at {} MiB (bound {} MiB)",
        r.max_rss_kib >> 10,
        RSS_BOUND_KIB >> 10
    );
    eprintln!(
        "{what}: {} MiB peak, {} bytes of JSON, {:.1} s",
        r.max_rss_kib >> 10,
        r.stdout.len(),
        r.secs
    );
    // The replay view at full speed, through to the end.
    let v = run(&["replay", "--speed", "max", "--headless", "3", &p]);
    assert!(v.status.success(), "{what}: replay failed: {}", v.stderr);
    assert!(
        v.max_rss_kib <= RSS_BOUND_KIB,
        "{what}: replay peaked at {} MiB (bound {} MiB)",
        v.max_rss_kib >> 10,
        RSS_BOUND_KIB >> 10
    );
    eprintln!("{what}: replay {} MiB peak", v.max_rss_kib >> 10);
    r
}

#[test]
fn millions_of_empty_markers_keep_memory_bounded() {
    // 4 M markers: each used to keep a row of every model's counters (~2.7 KB), 10 GB in all.
    let n = 4_000_000u64;
    let markers = (0..n).map(|i| {
        Event::Marker(Marker {
            ts_ns: 2 + i / 1_000_000,
            label: String::new(),
        })
    });
    let (_dir, path) = craft(
        "markers",
        std::iter::once(swapon(0, 64 << 8)).chain(markers),
    );
    let size = std::fs::metadata(&path).map(|m| m.len()).unwrap_or(0);
    assert!(size < 1 << 20, "the crafted file is small ({size} bytes)");
    let r = check_bounded(&path, "4 M markers");
    let json = String::from_utf8_lossy(&r.stdout);
    assert!(
        json.contains("4000000 markers: the first 10000 are broken out"),
        "the report says markers were only counted"
    );
    assert!(
        r.stdout.len() < 64 << 20,
        "{} bytes of JSON",
        r.stdout.len()
    );
}

#[test]
fn a_device_too_large_to_model_is_refused_and_said() {
    // 2^40 slots (4 PiB) on one device, and 200 devices of the largest size taken: the models
    // would need their memory in proportion.
    let huge = std::iter::once(swapon(0, 1 << 40));
    let many = (1..=200u8).map(|ty| swapon(ty, swapscope::engine::MAX_DEVICE_SLOTS));
    let allocs = (0..1000u64).flat_map(|i| {
        let ty = (i % 200) as u8 + 1;
        [
            Event::Alloc(Alloc {
                ts_ns: 10 + 2 * i,
                cpu: 0,
                order: 0,
                id: i,
                result: AllocResult::Success {
                    swap_type: ty,
                    offset: 1 + i,
                },
                latency_ns: None,
                inferred: false,
            }),
            Event::Free(Free {
                ts_ns: 11 + 2 * i,
                cpu: 0,
                swap_type: ty,
                offset: 1 + i,
                nr: 1,
            }),
        ]
    });
    let (_dir, path) = craft("devices", huge.chain(many).chain(allocs));
    let r = check_bounded(&path, "huge devices");
    let json = String::from_utf8_lossy(&r.stdout);
    assert!(json.contains("swap device(s) were left out"), "{json}");
}

/// `n` order-0 allocations at offsets scattered over a device of `dev` slots (a permutation):
/// no model's slot can follow the stream's, so each costs its mapping entry in every model.
fn scattered(n: u64, dev: u64) -> impl Iterator<Item = Event> {
    std::iter::once(swapon(0, dev)).chain((1..=n).map(move |i| {
        Event::Alloc(Alloc {
            ts_ns: 10 + i,
            cpu: 0,
            order: 0,
            id: i,
            result: AllocResult::Success {
                swap_type: 0,
                offset: 1 + (i * 2_654_435_761) % (dev - 1),
            },
            latency_ns: None,
            inferred: false,
        })
    }))
}

#[test]
fn a_stream_scattered_over_the_largest_device_costs_memory_by_its_events() {
    // The device's own structures are paid for only where touched; what grows is the mapping
    // of live scattered allocations (~300 bytes each over six models, docs/format.md).
    let (_dir, path) = craft(
        "scattered",
        scattered(100_000, swapscope::engine::MAX_DEVICE_SLOTS),
    );
    check_bounded(&path, "100 k scattered allocations on a 1 TiB device");
}

#[test]
#[ignore = "measurement: SWAPSCOPE_SCATTER=<allocations>,<device slots>; prints peak RSS"]
fn measure_scattered() {
    let spec = std::env::var("SWAPSCOPE_SCATTER").unwrap_or_else(|_| "1000000,268435456".into());
    let mut it = spec.split(',').filter_map(|s| s.parse::<u64>().ok());
    let (n, dev) = (it.next().unwrap_or(1_000_000), it.next().unwrap_or(1 << 28));
    let (_dir, path) = craft("measure", scattered(n, dev));
    let size = std::fs::metadata(&path).map(|m| m.len()).unwrap_or(0);
    let p = path.to_string_lossy();
    let t = std::time::Instant::now();
    let r = run(&["report", "--json", &p]);
    eprintln!(
        "{n} scattered allocations on {dev} slots: file {size} bytes, report {} MiB peak, {:?}, \
         success {}",
        r.max_rss_kib >> 10,
        t.elapsed(),
        r.status.success()
    );
}

#[test]
fn long_marker_labels_are_kept_short() {
    // 64 KiB labels compress to nothing; 10 000 report rows of them would be 640 MB.
    let label = "x".repeat(65_000);
    let markers = (0..20_000u64).map(|i| {
        Event::Marker(Marker {
            ts_ns: 2 + i,
            label: label.clone(),
        })
    });
    let (_dir, path) = craft("labels", std::iter::once(swapon(0, 64 << 8)).chain(markers));
    let r = check_bounded(&path, "20 k markers of 64 KiB labels");
    assert!(
        r.stdout.len() < 32 << 20,
        "{} bytes of JSON",
        r.stdout.len()
    );
}

/// Runs the binary with `args` and kills it after `secs`: whether it exited by itself in time,
/// with its status and stderr.
fn run_within(args: &[&str], secs: u64) -> (bool, std::process::ExitStatus, String) {
    let (in_time, status, _, err) = run_within_env(args, &[], secs);
    (in_time, status, err)
}

/// [`run_within`] with `env` added to the environment: also its stdout.
fn run_within_env(
    args: &[&str],
    env: &[(&str, &Path)],
    secs: u64,
) -> (bool, std::process::ExitStatus, String, String) {
    use std::io::Read as _;
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_swapscope"))
        .args(args)
        .envs(env.iter().copied())
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("swapscope {args:?}: {e}"));
    let drain = |r: Option<Box<dyn std::io::Read + Send>>| {
        std::thread::spawn(move || {
            let mut buf = Vec::new();
            if let Some(mut r) = r {
                let _ = r.read_to_end(&mut buf);
            }
            String::from_utf8_lossy(&buf).into_owned()
        })
    };
    let out = drain(child.stdout.take().map(|r| Box::new(r) as _));
    let err = drain(child.stderr.take().map(|r| Box::new(r) as _));
    let end = std::time::Instant::now() + std::time::Duration::from_secs(secs);
    let (in_time, status) = loop {
        if let Ok(Some(st)) = child.try_wait() {
            break (true, st);
        }
        if std::time::Instant::now() > end {
            let _ = child.kill();
            let st = child.wait().unwrap_or_else(|e| panic!("wait: {e}"));
            break (false, st);
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    };
    (
        in_time,
        status,
        out.join().unwrap_or_default(),
        err.join().unwrap_or_default(),
    )
}

/// What reads a whole recording: `report --json`, `export --intervals` to `out`, and a headless
/// replay at full speed.
fn reader_commands<'a>(p: &'a str, out: &'a str) -> [Vec<&'a str>; 3] {
    [
        vec!["report", "--json", p],
        vec![
            "export",
            "--intervals",
            "--format",
            "csv",
            "-o",
            out,
            "--force",
            p,
        ],
        vec!["replay", "--speed", "max", "--headless", "2", p],
    ]
}

/// Sends `sig` to our child and waits up to `secs` for it to end (killed after that): how long
/// it took and how it ended, or `None` if it had to be killed.
fn signal_and_wait(
    child: &mut std::process::Child,
    sig: libc::c_int,
    secs: u64,
) -> Option<(std::time::Duration, std::process::ExitStatus)> {
    let t0 = std::time::Instant::now();
    // SAFETY: kill(2) on our own child, not yet waited for.
    unsafe { libc::kill(child.id() as libc::pid_t, sig) };
    let end = t0 + std::time::Duration::from_secs(secs);
    loop {
        if let Ok(Some(st)) = child.try_wait() {
            return Some((t0.elapsed(), st));
        }
        if std::time::Instant::now() > end {
            let _ = child.kill();
            let _ = child.wait();
            return None;
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
}

/// Class 1 of the second hostile pass: stream time at the edge of `u64`. A marker, a request
/// and a free at the largest timestamps (and one event at 0 before them) must neither hang nor
/// overflow `report`, `export --intervals` or the replay view: each ends by itself, in seconds.
#[test]
fn timestamps_at_the_edge_of_u64_end_every_command() {
    let max = u64::MAX;
    let events = vec![
        swapon(0, 64 << 8),
        Event::Alloc(Alloc {
            ts_ns: 0,
            cpu: 0,
            order: 0,
            id: 1,
            result: AllocResult::Success {
                swap_type: 0,
                offset: 1,
            },
            latency_ns: None,
            inferred: false,
        }),
        Event::Marker(Marker {
            ts_ns: max - 1,
            label: "edge".to_owned(),
        }),
        Event::Free(Free {
            ts_ns: max,
            cpu: 0,
            swap_type: 0,
            offset: 1,
            nr: 1,
        }),
        Event::Marker(Marker {
            ts_ns: max,
            label: "end".to_owned(),
        }),
    ];
    let (dir, path) = craft("edge-ts", events);
    let p = path.to_string_lossy().into_owned();
    let out = dir
        .path()
        .join("intervals.csv")
        .to_string_lossy()
        .into_owned();
    let mut commands = reader_commands(&p, &out).to_vec();
    commands.extend([
        vec!["report", p.as_str()],
        vec!["replay", "--headless", "3", p.as_str()],
    ]);
    for args in commands {
        let (in_time, status, err) = run_within(&args, 30);
        assert!(in_time, "swapscope {args:?} did not end within 30 s: {err}");
        assert!(
            !err.contains("panicked"),
            "swapscope {args:?} panicked: {err}"
        );
        eprintln!("{args:?}: {status}, {}", err.lines().next().unwrap_or(""));
    }
    // The exporter replaying it stops at SIGTERM.
    let mut serve = std::process::Command::new(env!("CARGO_BIN_EXE_swapscope"))
        .args(["serve", "--listen", "127.0.0.1:0", "--replay", p.as_str()])
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap_or_else(|e| panic!("serve --replay: {e}"));
    std::thread::sleep(std::time::Duration::from_secs(2));
    let stopped = signal_and_wait(&mut serve, libc::SIGTERM, 10).is_some();
    assert!(
        stopped,
        "serve --replay did not stop within 10 s of SIGTERM"
    );
}

/// Class 5 of the second hostile pass: text a recording carries reaches a terminal. Marker
/// labels, a device path and a counter name holding escape sequences (set the title, clear the
/// screen, a bell, a line break) come out of `report` and `dump` with every control character
/// escaped: no byte of the output is a control character other than the line ends.
#[test]
fn text_from_a_recording_reaches_the_terminal_escaped() {
    use swapscope::event::{CounterSample, DeviceKind, DeviceList, SwapDevice};
    // Escape sequences, C1, a line break, and the bidirectional override and isolate that
    // reorder what is shown (found raw by the fresh pass of 2026-12-06).
    let evil = "\u{1b}]0;pwned\u{7}\u{1b}[2J\u{9b}31m\r\nfake line\u{202e}desrever\u{2066}";
    let mut events = vec![
        swapon(0, 64 << 8),
        Event::Devices(DeviceList {
            ts_ns: 1,
            devices: vec![SwapDevice {
                index: 0,
                path: format!("/dev/zram0{evil}"),
                kind: DeviceKind::Zram,
                size_kb: 64 << 10,
                used_kb: 0,
                prio: 100,
            }],
        }),
        Event::Counters(CounterSample {
            ts_ns: 1,
            values: vec![(format!("vmstat/pswpout{evil}"), 1)],
        }),
    ];
    for i in 0..4u64 {
        events.push(Event::Marker(Marker {
            ts_ns: 10 + i * 100,
            label: format!("iteration {i}{evil}"),
        }));
        for j in 0..8u64 {
            events.push(Event::Alloc(Alloc {
                ts_ns: 11 + i * 100 + j,
                cpu: 0,
                order: 4,
                id: i * 8 + j + 1,
                result: AllocResult::Unknown,
                latency_ns: None,
                inferred: false,
            }));
        }
    }
    let (_dir, path) = craft("escapes", events);
    let p = path.to_string_lossy().into_owned();
    for args in [
        vec!["report", p.as_str()],
        vec!["dump", p.as_str()],
        vec!["export", "--format", "csv", "-o", "-", p.as_str()],
    ] {
        let r = run(&args);
        assert!(r.status.success(), "{args:?}: {}", r.stderr);
        let text = String::from_utf8_lossy(&r.stdout);
        assert!(
            text.contains("pwned"),
            "{args:?} does not show the crafted text at all:\n{text}"
        );
        let bad: Vec<char> = text
            .chars()
            .filter(|c| {
                // CSV keeps line ends and tabs (quoted); report and dump escape all but LF.
                let kept = *c == '\n' || (args[0] == "export" && matches!(c, '\r' | '\t'));
                (c.is_control() && !kept)
                    || matches!(c, '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}')
            })
            .collect();
        assert!(
            bad.is_empty(),
            "{args:?} printed control characters {bad:?}:\n{}",
            text.escape_debug()
        );
    }
}

/// Class 5 of the second hostile pass: output names. `-o -` is standard output (CSV and, to a
/// pipe, Parquet), never a file named `-`; a symbolic link at the output name (`/dev/stdout`
/// is one) is refused even with `--force` and left as it was; where standard output already
/// carries the report, `-o -` is refused in one line.
#[test]
fn dash_is_standard_output_and_links_are_never_replaced() {
    let rec = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/data/sim-thp-fragment.swsc");
    let rec = rec.to_string_lossy().into_owned();
    let dir = tempdir::Dir::new("dash");
    let exe = env!("CARGO_BIN_EXE_swapscope");
    let in_dir = |args: &[&str]| {
        std::process::Command::new(exe)
            .args(args)
            .current_dir(dir.path())
            .stdin(std::process::Stdio::null())
            .output()
            .unwrap_or_else(|e| panic!("swapscope {args:?}: {e}"))
    };
    let csv = in_dir(&[
        "export", "--format", "csv", "--kinds", "alloc", "-o", "-", &rec,
    ]);
    assert!(
        csv.status.success(),
        "{}",
        String::from_utf8_lossy(&csv.stderr)
    );
    let text = String::from_utf8_lossy(&csv.stdout);
    assert!(
        text.starts_with("seq,ts_ns,") && text.lines().count() > 100,
        "CSV on standard output: {}",
        text.lines().next().unwrap_or("")
    );
    let pq = in_dir(&["export", "--format", "parquet", "-o", "-", &rec]);
    assert!(
        pq.status.success(),
        "{}",
        String::from_utf8_lossy(&pq.stderr)
    );
    assert!(pq.stdout.starts_with(b"PAR1") && pq.stdout.ends_with(b"PAR1"));
    assert!(!dir.path().join("-").exists(), "a file named - was created");
    // A link at the output name, with and without --force.
    let target = dir.path().join("precious");
    std::fs::write(&target, b"keep").unwrap_or_else(|e| panic!("{e}"));
    let link = dir.path().join("out.csv");
    std::os::unix::fs::symlink(&target, &link).unwrap_or_else(|e| panic!("{e}"));
    let l = link.to_string_lossy().into_owned();
    for force in [false, true] {
        let mut args = vec!["export", "--format", "csv", "-o", l.as_str(), rec.as_str()];
        if force {
            args.push("--force");
        }
        let r = in_dir(&args);
        let err = String::from_utf8_lossy(&r.stderr);
        assert!(!r.status.success(), "{args:?} wrote through a link");
        assert_eq!(err.trim().lines().count(), 1, "one line: {err}");
        assert!(
            std::fs::symlink_metadata(&link)
                .map(|m| m.file_type().is_symlink())
                .unwrap_or(false),
            "the link was replaced"
        );
        assert_eq!(std::fs::read(&target).unwrap_or_default(), b"keep");
    }
    // simulate prints its report on standard output: `-o -` is refused, in one line.
    let r = in_dir(&[
        "simulate",
        "--workload",
        "thp-fragment",
        "--iterations",
        "1",
        "-o",
        "-",
    ]);
    let err = String::from_utf8_lossy(&r.stderr);
    assert!(
        !r.status.success() && err.contains("-o - is refused"),
        "{err}"
    );
    assert_eq!(err.trim().lines().count(), 1, "one line: {err}");
}

/// Class 5 of the second hostile pass: a signal during `export` left its temporary file (up to
/// 248 MB). Now Ctrl-C (SIGINT) and SIGTERM stop it within seconds, with one line, leaving
/// neither the output nor its `.partial`.
#[test]
fn a_signal_during_export_leaves_nothing_behind() {
    let markers = (0..3_000_000u64).map(|i| {
        Event::Marker(Marker {
            ts_ns: 2 + i,
            label: "m".to_owned(),
        })
    });
    let (dir, path) = craft(
        "export-signal",
        std::iter::once(swapon(0, 64 << 8)).chain(markers),
    );
    let p = path.to_string_lossy().into_owned();
    for sig in [libc::SIGINT, libc::SIGTERM] {
        let out = dir.path().join(format!("out-{sig}.csv"));
        let o = out.to_string_lossy().into_owned();
        let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_swapscope"))
            .args(["export", "--format", "csv", "-o", o.as_str(), p.as_str()])
            .stdin(std::process::Stdio::null())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("export: {e}"));
        // Until its temporary file has data: the export is under way.
        let partial = dir
            .path()
            .join(format!("out-{sig}.csv.{}.partial", child.id()));
        let t0 = std::time::Instant::now();
        while std::fs::metadata(&partial).map_or(0, |m| m.len()) == 0 {
            assert!(
                t0.elapsed() < std::time::Duration::from_secs(30),
                "no data in {}",
                partial.display()
            );
            if let Ok(Some(st)) = child.try_wait() {
                panic!("export ended ({st}) before it could be interrupted");
            }
            std::thread::sleep(std::time::Duration::from_millis(5));
        }
        let (_, status) = signal_and_wait(&mut child, sig, 5)
            .unwrap_or_else(|| panic!("export still running 5 s after signal {sig}"));
        let mut err = String::new();
        if let Some(mut e) = child.stderr.take() {
            use std::io::Read as _;
            let _ = e.read_to_string(&mut err);
        }
        assert!(!status.success(), "signal {sig}: {status}");
        assert!(err.contains("interrupted"), "signal {sig}: {err}");
        assert!(!partial.exists(), "signal {sig} left {}", partial.display());
        assert!(!out.exists(), "signal {sig} left {}", out.display());
    }
}

/// Class 6 of the second hostile pass: what-if sizes. A sweep point beyond what `--swap-size`
/// allows (64G, or the recorded size when larger) is refused in one line — before it is
/// replayed once the recorded size is known, and after the first replay otherwise — instead of
/// columns computed over a device the engine left out ("0M", 100 % fallback) or minutes of
/// replay; a zero step is said to be the step.
#[test]
fn what_if_sizes_are_bounded_like_swap_size() {
    let slots = (20u64 << 30) / 4096;
    let allocs = (0..10u64).map(|i| {
        Event::Alloc(Alloc {
            ts_ns: 10 + i,
            cpu: 0,
            order: 0,
            id: i + 1,
            result: AllocResult::Unknown,
            latency_ns: None,
            inferred: false,
        })
    });
    let (_dir, path) = craft("sweep-20g", std::iter::once(swapon(0, slots)).chain(allocs));
    let p = path.to_string_lossy().into_owned();
    for (sweep, says) in [
        (
            "100%..400%:300%",
            "at 400 % a swap device would be 81920 MiB",
        ),
        ("400%..500%", "at 400 % a swap device would be 81920 MiB"),
        ("50%..100%:0%", "the step must be at least 1 %"),
    ] {
        let (in_time, status, err) = run_within(&["report", &p, "--sweep", sweep], 60);
        assert!(in_time, "--sweep {sweep} ran over 60 s");
        assert!(!status.success(), "--sweep {sweep} succeeded");
        assert_eq!(err.trim().lines().count(), 1, "--sweep {sweep}: {err}");
        assert!(err.contains(says), "--sweep {sweep}: {err}");
    }
    // Within the bound: every point has the device.
    let (in_time, status, err) = run_within(&["report", &p, "--sweep", "100%..300%:100%"], 120);
    assert!(in_time && status.success(), "{err}");
    // simulate knows its device's size: a point beyond the bound is a usage error before
    // anything is generated (it generated the whole stream first: 30 s and 232 MB at 1 TiB).
    for (size, sweep) in [("64G", "100%..200%"), ("16G", "6400%..6400%")] {
        let (in_time, status, err) = run_within(
            &[
                "simulate",
                "--workload",
                "thp-fragment",
                "--swap-size",
                size,
                "--sweep",
                sweep,
            ],
            5,
        );
        assert!(
            in_time,
            "simulate --swap-size {size} --sweep {sweep} ran over 5 s"
        );
        assert_eq!(status.code(), Some(2), "{err}");
        assert!(err.contains("a swap device would be"), "{err}");
    }
}

/// Class 7 of the second hostile pass: special files. A FIFO without a writer blocked `replay`
/// and `serve --replay` in `open()` beyond q, Ctrl-C and SIGTERM; a FIFO, a device or a
/// directory given as a recording is now refused at once, in one line, by every command that
/// reads one.
#[test]
fn special_files_are_refused_not_blocked_on() {
    let dir = tempdir::Dir::new("special");
    let fifo = dir.path().join("rec.swsc");
    let c =
        std::ffi::CString::new(fifo.to_string_lossy().as_bytes()).unwrap_or_else(|e| panic!("{e}"));
    // SAFETY: mkfifo(3) with a valid NUL-terminated path.
    assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o600) }, 0, "mkfifo");
    let f = fifo.to_string_lossy().into_owned();
    let out = dir.path().join("x.csv").to_string_lossy().into_owned();
    let d = dir.path().to_string_lossy().into_owned();
    for (args, says) in [
        (vec!["report", f.as_str()], "is a FIFO"),
        (vec!["replay", "--headless", "3", f.as_str()], "is a FIFO"),
        (vec!["dump", f.as_str()], "is a FIFO"),
        (
            vec!["export", "--format", "csv", "-o", out.as_str(), f.as_str()],
            "is a FIFO",
        ),
        (
            vec!["serve", "--listen", "127.0.0.1:0", "--replay", f.as_str()],
            "is a FIFO",
        ),
        (vec!["report", "/dev/null"], "is a device"),
        (vec!["report", d.as_str()], "is a directory"),
    ] {
        let (in_time, status, err) = run_within(&args, 10);
        assert!(in_time, "{args:?} blocked");
        assert!(!status.success(), "{args:?} succeeded");
        assert_eq!(err.trim().lines().count(), 1, "{args:?}: {err}");
        assert!(err.contains(says), "{args:?}: {err}");
    }
}

/// Class 8 of the second hostile pass: cost that grows faster than the input. A recording whose
/// counter samples carry 200,000 distinct names (each name's delta was a linear search of the
/// first sample: 100,000 names took `report` 22 s, `export --intervals` 60 s in release builds)
/// must cost time in proportion to its size: every command ends well within the bound, where
/// the quadratic lookups took minutes.
#[test]
fn hundreds_of_thousands_of_counter_names_cost_linear_time() {
    use swapscope::event::CounterSample;
    const NAMES: u64 = 200_000;
    let sample = |i: u64| {
        Event::Counters(CounterSample {
            ts_ns: 1 + i * 1_000_000_000,
            values: (0..NAMES)
                .map(|n| (format!("probe/f{n}/recursion_misses"), n + i))
                .chain([("vmstat/pswpout".to_owned(), i * 10)])
                .collect(),
        })
    };
    let events = std::iter::once(swapon(0, 64 << 8)).chain((0..16).map(sample));
    let (dir, path) = craft("many-names", events);
    let p = path.to_string_lossy().into_owned();
    let out = dir
        .path()
        .join("intervals.csv")
        .to_string_lossy()
        .into_owned();
    for args in reader_commands(&p, &out) {
        let t0 = std::time::Instant::now();
        let (in_time, status, err) = run_within(&args, 60);
        assert!(
            in_time,
            "swapscope {args:?} on {NAMES} counter names did not end within 60 s: {err}"
        );
        assert!(status.success(), "swapscope {args:?}: {status}: {err}");
        eprintln!("{args:?}: {:.1} s", t0.elapsed().as_secs_f64());
    }
    // The replay's memory stays bounded: its Events view kept 200 whole samples per kind (44 MB
    // each at 200,000 names: 784 MB for 16 samples).
    let r = run(&["replay", "--speed", "max", "--headless", "2", p.as_str()]);
    assert!(r.status.success(), "replay: {}", r.stderr);
    assert!(
        r.max_rss_kib <= RSS_BOUND_KIB,
        "replay of 16 samples of {NAMES} names peaked at {} MiB",
        r.max_rss_kib >> 10
    );
    eprintln!("replay peak RSS {} MiB", r.max_rss_kib >> 10);
}
/// A child process killed and reaped on drop.
struct Sleeper(std::process::Child);
impl Sleeper {
    fn alive(&mut self) -> bool {
        matches!(self.0.try_wait(), Ok(None))
    }
}
impl Drop for Sleeper {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Class 2 of the second hostile pass: `doctor --cleanup` undid whatever a stale or forged
/// `stress-<dead pid>.json` named. A forged file names an mTHP "setting" that is a regular
/// file and a "cgroup" that is a plain directory whose text file `cgroup.procs` lists a live
/// process; a FIFO and a link to /dev/zero sit beside it as state files. `doctor --cleanup`
/// (on a state directory of the test's own, `SWAPSCOPE_STATE_DIR`) ends by itself, touches
/// none of it, says why in one line each, and sets the files aside: a second run replays none.
#[test]
fn doctor_cleanup_undoes_only_what_it_can_prove_it_made() {
    use std::os::unix::fs::{DirBuilderExt as _, OpenOptionsExt as _};
    // SAFETY: geteuid has no preconditions and cannot fail.
    if unsafe { libc::geteuid() } != 0 {
        eprintln!("skipped: state files are read only when root's, so this needs root");
        return;
    }
    let dir = tempdir::Dir::new("cleanup");
    let run = dir.path().join("run");
    std::fs::DirBuilder::new()
        .mode(0o700)
        .create(&run)
        .unwrap_or_else(|e| panic!("{}: {e}", run.display()));
    // A pid that is dead: a reaped child's.
    let dead = {
        let mut c = std::process::Command::new("true")
            .spawn()
            .unwrap_or_else(|e| panic!("true: {e}"));
        let _ = c.wait();
        c.id()
    };
    let mut victim = Sleeper(
        std::process::Command::new("sleep")
            .arg("120")
            .spawn()
            .unwrap_or_else(|e| panic!("sleep: {e}")),
    );
    let mthp = dir.path().join("enabled");
    let mthp_text = "[always] inherit madvise never\n";
    std::fs::write(&mthp, mthp_text).unwrap_or_else(|e| panic!("{e}"));
    let cgroup = dir.path().join(format!("swapscope-{dead}-stress"));
    std::fs::create_dir(&cgroup).unwrap_or_else(|e| panic!("{e}"));
    let procs = format!("{}\n", victim.0.id());
    std::fs::write(cgroup.join("cgroup.procs"), &procs).unwrap_or_else(|e| panic!("{e}"));
    let forged = serde_json::json!({
        "pid": dead,
        "start_ticks": 1,
        "mthp": [{ "path": mthp, "previous": "never", "set": "always" }],
        "device": null,
        "cgroup": cgroup,
    });
    let state = run.join(format!("stress-{dead}.json"));
    std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&state)
        .and_then(|mut f| std::io::Write::write_all(&mut f, forged.to_string().as_bytes()))
        .unwrap_or_else(|e| panic!("{}: {e}", state.display()));
    let fifo = run.join(format!("stress-{}.json", dead + 1));
    let c =
        std::ffi::CString::new(fifo.to_string_lossy().as_bytes()).unwrap_or_else(|e| panic!("{e}"));
    // SAFETY: mkfifo(3) with a valid NUL-terminated path.
    assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o600) }, 0, "mkfifo");
    let zero = run.join(format!("stress-{}.json", dead + 2));
    std::os::unix::fs::symlink("/dev/zero", &zero).unwrap_or_else(|e| panic!("{e}"));

    let env = [("SWAPSCOPE_STATE_DIR", run.as_path())];
    let (in_time, status, out, err) = run_within_env(&["doctor", "--cleanup"], &env, 120);
    assert!(in_time, "doctor --cleanup ran over 120 s: {out}{err}");
    assert!(!status.success(), "a refused clean-up is a failure: {out}");
    // Nothing touched.
    assert_eq!(
        std::fs::read_to_string(&mthp).unwrap_or_default(),
        mthp_text
    );
    assert!(
        victim.alive(),
        "the process listed in a plain cgroup.procs was killed"
    );
    assert_eq!(
        std::fs::read_to_string(cgroup.join("cgroup.procs")).unwrap_or_default(),
        procs
    );
    // One line each, saying why.
    let failed: Vec<&str> = out
        .lines()
        .filter(|l| l.starts_with("cleanup       FAILED: "))
        .collect();
    let says = |what: &str, why: &str| {
        assert_eq!(
            failed
                .iter()
                .filter(|l| l.contains(what) && l.contains(why))
                .count(),
            1,
            "one line on {what} saying {why:?}: {out}"
        );
    };
    says(
        &mthp.display().to_string(),
        "is not an mTHP size's enabled file",
    );
    says(&cgroup.display().to_string(), "left alone");
    says(&fifo.display().to_string(), "is a FIFO");
    says(&zero.display().to_string(), "is a symbolic link");
    assert_eq!(failed.len(), 4, "{out}");
    // Set aside, never replayed.
    for f in [&state, &fifo, &zero] {
        assert!(
            std::fs::symlink_metadata(f).is_err()
                && std::fs::symlink_metadata(f.with_extension("json.failed")).is_ok(),
            "{} not set aside: {out}",
            f.display()
        );
    }
    let (in_time, _, out, _) = run_within_env(&["doctor", "--cleanup"], &env, 120);
    assert!(in_time, "the second doctor --cleanup ran over 120 s");
    assert!(
        out.contains("cleanup       nothing left by killed stress runs") && !out.contains("FAILED"),
        "{out}"
    );
    assert_eq!(
        out.lines()
            .filter(|l| l.contains("set aside by a clean-up"))
            .count(),
        3,
        "{out}"
    );
    assert_eq!(
        std::fs::read_to_string(&mthp).unwrap_or_default(),
        mthp_text
    );
    assert!(victim.alive());
}

/// Class 1 of the second hostile pass, `simulate -o`: a signal killed it and left FILE.partial
/// behind. Now SIGTERM stops the generator within a second and what was written takes its name,
/// a recording `report` reads.
#[test]
fn a_signal_stops_simulate_and_keeps_what_it_wrote() {
    let dir = tempdir::Dir::new("sim-signal");
    let out = dir.path().join("sim.swsc");
    let o = out.to_string_lossy().into_owned();
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_swapscope"))
        .args([
            "simulate",
            "--workload",
            "mixed-orders",
            "--swap-size",
            "4G",
            "--models",
            "linux-6.18",
            "-o",
            o.as_str(),
        ])
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("simulate: {e}"));
    std::thread::sleep(std::time::Duration::from_secs(1));
    let status = signal_and_wait(&mut child, libc::SIGTERM, 10);
    let mut err = String::new();
    if let Some(mut e) = child.stderr.take() {
        use std::io::Read as _;
        let _ = e.read_to_string(&mut err);
    }
    assert!(
        status.is_some(),
        "simulate did not stop within 10 s of SIGTERM"
    );
    let partial = dir.path().join("sim.swsc.partial");
    assert!(!partial.exists(), "a .partial was left behind: {err}");
    assert!(out.exists(), "nothing was kept: {err}");
    assert!(err.contains("stopped by a signal"), "{err}");
    let r = run(&["report", "--json", "--models", "linux-6.18", o.as_str()]);
    assert!(
        r.status.success(),
        "the kept stream does not read: {}",
        r.stderr
    );
}

/// The fresh pass of 2026-12-06: a replay at full speed outruns its analysis, which queued
/// whole chunks (64 of them: seconds of work and 765 MB on a 25 M-event file), and q, Ctrl-C
/// or SIGTERM waited for all of it (4.4–5.4 s). Now the queue holds at most 64 × 8,192 events,
/// and a stop drops what is queued: SIGTERM ends the replay within a second or two, its memory
/// bounded.
#[test]
fn quitting_a_replay_that_outruns_its_analysis_is_prompt() {
    let dir = tempdir::Dir::new("outrun");
    let f = dir.path().join("big.swsc");
    let fs = f.to_string_lossy().into_owned();
    let sim = run(&[
        "simulate",
        "--workload",
        "thp-fragment",
        "--swap-size",
        "1G",
        "--iterations",
        "150",
        "--models",
        "linux-6.18",
        "-o",
        fs.as_str(),
    ]);
    assert!(sim.status.success(), "simulate: {}", sim.stderr);
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_swapscope"))
        .args(["replay", "--speed", "max", "--headless", "100", fs.as_str()])
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap_or_else(|e| panic!("replay: {e}"));
    std::thread::sleep(std::time::Duration::from_secs(3));
    let hwm_kib: u64 = std::fs::read_to_string(format!("/proc/{}/status", child.id()))
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .unwrap_or(0);
    let (took, _) = signal_and_wait(&mut child, libc::SIGTERM, 10)
        .unwrap_or_else(|| panic!("replay did not end within 10 s of SIGTERM"));
    eprintln!(
        "replay ended {took:?} after SIGTERM, peak RSS {} MiB",
        hwm_kib >> 10
    );
    assert!(
        took < std::time::Duration::from_secs(2),
        "replay took {took:?} to end after SIGTERM"
    );
    assert!(
        hwm_kib <= RSS_BOUND_KIB,
        "the replay's peak RSS was {} MiB",
        hwm_kib >> 10
    );
}
