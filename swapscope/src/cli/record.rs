//! `swapscope record`: attach, stream events and counter samples into a recording file.

use std::{
    fs::OpenOptions,
    io::{BufWriter, IsTerminal as _, Write as _},
    os::unix::fs::OpenOptionsExt as _,
    path::{Path, PathBuf},
    process::{Child, Command, ExitCode},
    time::{Duration, Instant},
};

use anyhow::Context as _;
use swapscope::{
    event::{Event, Lost},
    host,
    probe::{LiveOptions, LiveProbe, ProbeStatus},
    record::{self, RecordingHeader, Writer, WriterOptions},
    signal,
};
use swapscope_common::{counter, kind};

#[derive(clap::Args, Debug)]
pub struct RecordArgs {
    /// Output file (created with mode 0600; an existing file is replaced).
    #[arg(short, long)]
    pub output: PathBuf,
    /// Stop after this many seconds (default: until Ctrl-C, SIGTERM or the command exits).
    #[arg(long)]
    pub duration: Option<f64>,
    /// Ring buffer size in MiB.
    #[arg(long, default_value_t = 8)]
    pub ringbuf_mib: u32,
    /// Attach only the tracepoint tier, even where fentry/fexit are allowed.
    #[arg(long)]
    pub tracepoint_only: bool,
    /// A command to run while recording; recording stops when it exits.
    #[arg(last = true)]
    pub command: Vec<String>,
}

fn header(plan: &[ProbeStatus], devices: &[swapscope::event::SwapDevice]) -> RecordingHeader {
    let mut extra = Vec::new();
    for kb in host::mthp_sizes_kb(Path::new(host::MTHP_DIR)) {
        if let Ok(t) =
            std::fs::read_to_string(format!("{}/hugepages-{kb}kB/enabled", host::MTHP_DIR))
        {
            extra.push((
                format!("mthp/{kb}kB/enabled"),
                host::parse_choice(&t).unwrap_or_default(),
            ));
        }
    }
    if let Some(l) = host::lockdown() {
        extra.push(("lockdown".into(), l));
    }
    RecordingHeader {
        kernel_release: host::kernel_release(),
        boot_id: host::boot_id(),
        realtime_minus_boottime_ns: host::realtime_ns() - host::boottime_ns() as i64,
        page_size: host::page_size(),
        nr_cpus: host::online_cpus(),
        source: "live".into(),
        command_line: std::env::args().collect::<Vec<_>>().join(" "),
        devices: devices.to_vec(),
        probe_plan: plan.to_vec(),
        extra,
        ..RecordingHeader::default()
    }
}

/// One ring-buffer item: write-out bytes to store verbatim, or a decoded full-tier event with
/// the `inuse_pages` value a free event carries.
type Drained = Result<Vec<u8>, (Event, Option<u64>)>;

struct Session<W: std::io::Write> {
    writer: Writer<W>,
    /// The last device list written; a new one is written when /proc/swaps changes.
    devices: Vec<swapscope::event::SwapDevice>,
    events: u64,
    last_lost: Lost,
    write_error: Option<anyhow::Error>,
    pending: Vec<Event>,
    /// The `inuse_pages` completeness check over full-tier events.
    inuse: swapscope::event::InuseCheck,
}

impl<W: std::io::Write> Session<W> {
    fn push(&mut self, ev: &Event) {
        if self.write_error.is_none()
            && let Err(e) = self.writer.push(ev)
        {
            self.write_error = Some(e.into());
        }
    }

    fn sample(&mut self, probe: &LiveProbe) {
        let mut counters = host::sample_counters(Path::new(host::MTHP_DIR));
        let c = probe.counters();
        // The write-out program's own counts: tracepoint hits, and those it filtered out (not a
        // swap-cache folio with an entry when the tracepoint fired).
        counters
            .values
            .push(("probe/writeout_hits".into(), c[counter::HITS as usize]));
        counters.values.push((
            "probe/writeout_filtered".into(),
            c[counter::FILTERED as usize],
        ));
        counters
            .values
            .push(("probe/inuse_checks".into(), self.inuse.checks));
        counters
            .values
            .push(("probe/inuse_mismatches".into(), self.inuse.mismatches));
        // Per program: hook invocations the kernel did not deliver.
        for (feed, misses) in probe.missed_events() {
            counters
                .values
                .push((format!("probe/{feed}/recursion_misses"), misses));
        }
        self.push(&Event::Counters(counters));
        self.refresh_devices();
        let lost = Lost {
            ts_ns: host::boottime_ns(),
            ringbuf: c[counter::RINGBUF_DROPS as usize],
            userspace: 0,
        };
        if lost.ringbuf != self.last_lost.ringbuf || self.last_lost.ts_ns == 0 {
            self.push(&Event::Lost(lost));
            self.last_lost = lost;
        }
    }

    /// Re-reads /proc/swaps; writes a device list when it changed, and `SwapOn`/`SwapOff` for
    /// devices that appeared or went away (the allocator models' geometry).
    fn refresh_devices(&mut self) {
        let Ok(list) = host::read_proc_swaps() else {
            return;
        };
        let same = list.devices.len() == self.devices.len()
            && list
                .devices
                .iter()
                .zip(&self.devices)
                .all(|(a, b)| a.path == b.path && a.used_kb == b.used_kb);
        if same {
            return;
        }
        for gone in self
            .devices
            .iter()
            .filter(|d| !list.devices.iter().any(|n| n.path == d.path))
        {
            self.inuse.forget(gone.index);
            let ev = Event::SwapOff(swapscope::event::SwapOff {
                ts_ns: list.ts_ns,
                swap_type: gone.index,
            });
            self.pending.push(ev);
        }
        for new in list
            .devices
            .iter()
            .filter(|d| !self.devices.iter().any(|o| o.path == d.path))
        {
            self.pending
                .push(Event::SwapOn(host::swap_on_for(new, list.ts_ns)));
        }
        self.devices = list.devices.clone();
        let pending = std::mem::take(&mut self.pending);
        for ev in &pending {
            self.push(ev);
        }
        self.push(&Event::Devices(list));
    }

    fn drain(&mut self, probe: &mut LiveProbe, timeout: Duration) {
        // Copy what the ring buffer holds, in its (kernel) order; write it out afterwards, so a
        // full-tier event for a device that appeared since the last sample can be preceded by
        // that device's SwapOn.
        let mut items: Vec<Drained> = Vec::new();
        probe.drain(timeout, |bytes| {
            if bytes.len() < 2 {
                return;
            }
            if u16::from_le_bytes([bytes[0], bytes[1]]) == kind::WRITEOUT {
                items.push(Ok(bytes.to_vec()));
            } else if let Some(ev) = record::codec::from_bpf(bytes, record::DEFAULT_SWP_TYPE_SHIFT)
            {
                items.push(Err((ev, record::codec::free_event_inuse(bytes))));
            }
        });
        let mut pushed = 0u64;
        for item in items {
            match item {
                Ok(raw) => {
                    if self.write_error.is_none() {
                        match self.writer.push_raw_writeout(&raw) {
                            Ok(()) => pushed += 1,
                            Err(e) => self.write_error = Some(e.into()),
                        }
                    }
                }
                Err((ev, inuse)) => {
                    match (&ev, inuse) {
                        (Event::Free(f), Some(inuse)) => self.inuse.free(f.swap_type, f.nr, inuse),
                        (
                            Event::Alloc(swapscope::event::Alloc {
                                result: swapscope::event::AllocResult::Success { swap_type, .. },
                                order,
                                ..
                            }),
                            _,
                        ) => self.inuse.alloc(*swap_type, *order),
                        _ => {}
                    }
                    let ty = match &ev {
                        Event::Alloc(swapscope::event::Alloc {
                            result: swapscope::event::AllocResult::Success { swap_type, .. },
                            ..
                        }) => Some(*swap_type),
                        Event::Free(f) => Some(f.swap_type),
                        _ => None,
                    };
                    if ty.is_some_and(|t| !self.devices.iter().any(|d| d.index == t)) {
                        self.refresh_devices();
                    }
                    self.push(&ev);
                    pushed += 1;
                }
            }
        }
        self.events += pushed;
    }
}

pub fn run(a: RecordArgs) -> anyhow::Result<ExitCode> {
    signal::install();
    let mut probe = LiveProbe::start(&LiveOptions {
        ringbuf_bytes: a.ringbuf_mib.saturating_mul(1 << 20),
        full_tier: !a.tracepoint_only,
    })?;
    let devices = host::read_proc_swaps().context("reading /proc/swaps")?;
    let file = OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(&a.output)
        .with_context(|| format!("creating {}", a.output.display()))?;
    let writer = Writer::create(
        BufWriter::new(file),
        &header(&probe.plan, &devices.devices),
        WriterOptions::default(),
    )
    .with_context(|| format!("writing the header of {}", a.output.display()))?;
    let mut s = Session {
        writer,
        devices: Vec::new(),
        events: 0,
        last_lost: Lost::default(),
        write_error: None,
        pending: Vec::new(),
        inuse: Default::default(),
    };
    s.sample(&probe);
    if let Err(e) = s.writer.flush_chunk() {
        s.write_error = Some(e.into());
    }

    let mut child: Option<Child> = match a.command.split_first() {
        Some((prog, args)) => Some(
            Command::new(prog)
                .args(args)
                .spawn()
                .with_context(|| format!("starting {prog}"))?,
        ),
        None => None,
    };
    let tty = std::io::stderr().is_terminal();
    let t0 = Instant::now();
    let end = a.duration.map(|d| t0 + Duration::from_secs_f64(d));
    let mut next_tick = t0 + Duration::from_secs(1);
    let mut child_status = None;
    while !signal::stop_requested()
        && end.is_none_or(|e| Instant::now() < e)
        && s.write_error.is_none()
    {
        s.drain(&mut probe, Duration::from_millis(100));
        if let Some(c) = child.as_mut()
            && let Ok(Some(st)) = c.try_wait()
        {
            child_status = Some(st);
            break;
        }
        if Instant::now() >= next_tick {
            next_tick += Duration::from_secs(1);
            s.sample(&probe);
            if let Err(e) = s.writer.flush_chunk() {
                s.write_error = Some(e.into());
            }
            if tty {
                let secs = t0.elapsed().as_secs_f64().max(1e-9);
                eprint!(
                    "\rswapscope record: {:>10} events  {:>9.0}/s  {} dropped   ",
                    s.events,
                    s.events as f64 / secs,
                    s.last_lost.ringbuf
                );
            }
        }
    }
    // A signal while a command runs: let it finish its own clean-up (it got the signal too).
    if let Some(c) = child.as_mut()
        && child_status.is_none()
    {
        child_status = c.wait().ok();
    }
    // Final sample, then drain what fired before it.
    s.sample(&probe);
    s.drain(&mut probe, Duration::from_millis(0));
    drop(probe);
    if tty {
        eprintln!();
    }
    let events = s.events;
    let lost = s.last_lost.ringbuf;
    let write_error = s.write_error.take();
    let (mut w, stats) = s
        .writer
        .finish()
        .with_context(|| format!("closing {}", a.output.display()))?;
    w.flush()
        .with_context(|| format!("flushing {}", a.output.display()))?;
    if let Some(e) = write_error {
        return Err(e.context(format!(
            "writing {} (everything before the error is kept)",
            a.output.display()
        )));
    }
    let secs = t0.elapsed().as_secs_f64();
    eprintln!(
        "swapscope record: {} events in {:.1} s ({:.0}/s), {} dropped, {} bytes ({:.2} bytes/event) -> {}",
        events,
        secs,
        events as f64 / secs.max(1e-9),
        lost,
        stats.bytes_written,
        stats.bytes_written as f64 / (events.max(1)) as f64,
        a.output.display()
    );
    Ok(match child_status {
        Some(st) if !st.success() => {
            eprintln!("swapscope record: the command exited with {st}");
            ExitCode::FAILURE
        }
        _ => ExitCode::SUCCESS,
    })
}
