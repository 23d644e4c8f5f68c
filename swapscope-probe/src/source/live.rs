//! The running kernel as a source: the BPF probes' ring buffer, decoded, plus what the host
//! samplers see — per-size mTHP and vmstat counters and the probes' own counts every second,
//! `/proc/swaps` (a change becomes `SwapOn`/`SwapOff` events, the geometry the models need),
//! ring-buffer drops, each program's `recursion_misses`, and the `inuse_pages` completeness
//! check over full-tier events. Optionally runs a command and ends when it exits, and puts
//! markers into the stream (see [`super::markers`]).
//!
//! Syscalls stay behind `probe` and `host`; this module only orders what they give.

use std::{
    path::Path,
    process::Child,
    time::{Duration, Instant},
};

use swapscope_common::{Feed, counter, kind};

use super::{Log, Poll, Source, SourceError, Summary, markers::Inbox};
use crate::{
    event::{Alloc, AllocResult, Event, InuseCheck, Lost, Marker, SwapDevice, SwapOff},
    host,
    probe::{self, LiveProbe, ProbeStatus},
    record::{self, RecordingHeader},
    repair::Repair,
    signal,
};

/// How long [`LiveSource::poll`] waits for the ring buffer.
const POLL_WAIT: Duration = Duration::from_millis(100);
/// How long a command gets to exit after the stop was forwarded to it, while the ring buffer is
/// still drained, before the stream ends without it.
const COMMAND_GRACE: Duration = Duration::from_millis(750);
/// How long [`LiveSource::wait_command`] lets a command that outlived the stream finish its own
/// clean-up before it is killed (a second stop signal kills it at once).
const COMMAND_KILL_AFTER: Duration = Duration::from_secs(10);

/// What to attach and run.
#[derive(Clone, Debug)]
pub struct LiveOptions {
    pub probe: probe::LiveOptions,
    /// A command to run; the stream ends when it exits.
    pub command: Vec<String>,
    /// Labels to put into the stream as markers (the TUI's `m` key, a FIFO); SIGUSR1 adds
    /// markers too once [`signal::install_marker`] ran.
    pub markers: Option<Inbox>,
    /// Counter samples and device checks this often.
    pub sample_every: Duration,
    /// `source` field of the header (`live`, `live:demo`, ...).
    pub label: String,
    /// The command line to keep in the header.
    pub command_line: String,
    /// Where the command's output goes, line by line (a TUI owns the terminal); `None` lets it
    /// write to the terminal.
    pub command_output: Option<Log>,
}

impl Default for LiveOptions {
    fn default() -> Self {
        LiveOptions {
            probe: probe::LiveOptions::default(),
            command: Vec::new(),
            markers: None,
            sample_every: Duration::from_secs(1),
            label: "live".into(),
            command_line: String::new(),
            command_output: None,
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum State {
    /// Before the first poll: the first sample is taken and the command started.
    Starting,
    Running,
    /// A stop was asked: the command (if any) was told to stop; draining until it exits or the
    /// grace period ends.
    Stopping {
        until: Instant,
    },
    /// The last sample and drain are done.
    Ended,
}

/// A live session.
pub struct LiveSource {
    /// `None` on the counters tier (no BPF: samples only).
    probe: Option<LiveProbe>,
    header: RecordingHeader,
    opts: LiveOptions,
    /// The devices of the last `/proc/swaps` read.
    devices: Vec<SwapDevice>,
    last_lost: Lost,
    inuse: InuseCheck,
    repair: Repair,
    next_sample: Instant,
    child: Option<Child>,
    summary: Summary,
    state: State,
    markers_sent: u64,
    /// Stop signals received when the stop came (see [`LiveSource::wait_command`]).
    signals_at_stop: Option<u64>,
}

impl LiveSource {
    /// Loads and attaches the probes (see `probe::LiveProbe::start`) and describes the session.
    pub fn start(opts: LiveOptions) -> Result<Self, SourceError> {
        let probe = LiveProbe::start(&opts.probe)?;
        Self::with(Some(probe), Vec::new(), opts)
    }

    /// A session without BPF (the counters tier): the kernel's per-size mTHP and vmstat
    /// counters and `/proc/swaps`, sampled; `why` says why there are no probes (kept in the
    /// header's probe plan, so every view can say it).
    pub fn counters_only(opts: LiveOptions, why: &str) -> Result<Self, SourceError> {
        let plan = vec![ProbeStatus {
            name: probe::WRITEOUT_TP.to_string(),
            kind: "tp_btf".into(),
            attached: false,
            detail: format!("counters tier: {why}"),
        }];
        Self::with(None, plan, opts)
    }

    fn with(
        probe: Option<LiveProbe>,
        plan: Vec<ProbeStatus>,
        opts: LiveOptions,
    ) -> Result<Self, SourceError> {
        let devices = host::read_proc_swaps()
            .map_err(|e| SourceError::Host(format!("reading /proc/swaps: {e}")))?;
        let plan = probe.as_ref().map_or(&plan, |p| &p.plan);
        let header = header(plan, &devices.devices, &opts);
        Ok(LiveSource {
            probe,
            header,
            opts,
            devices: Vec::new(),
            last_lost: Lost::default(),
            inuse: InuseCheck::default(),
            repair: Repair::default(),
            next_sample: Instant::now(),
            child: None,
            summary: Summary::default(),
            state: State::Starting,
            markers_sent: 0,
            signals_at_stop: None,
        })
    }

    /// The probe plan (what attached, and why the rest did not).
    pub fn plan(&self) -> &[ProbeStatus] {
        &self.header.probe_plan
    }

    /// The pid of the command, while it runs.
    pub fn command_pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    fn sample(&mut self, out: &mut Vec<Event>) {
        let mut counters = host::sample_counters(Path::new(host::MTHP_DIR));
        // The probes' own counts (none on the counters tier), and their ring-buffer drops.
        let ringbuf_drops = self
            .probe
            .as_ref()
            .map(|probe| probe_counts(probe, &self.inuse, &mut counters.values));
        out.push(Event::Counters(counters));
        let mut devices = Vec::new();
        self.refresh_devices(&mut devices);
        if !devices.is_empty() {
            // A device went away (or came) before /proc/swaps was read: what its programs
            // emitted until then (swapoff's own frees, say) is in the ring and goes first.
            self.drain(Duration::ZERO, out);
        }
        for ev in &devices {
            if let Event::SwapOff(off) = ev {
                self.inuse.forget(off.swap_type);
            }
        }
        out.append(&mut devices);
        if let Some(ringbuf) = ringbuf_drops {
            let lost = Lost {
                ts_ns: host::boottime_ns(),
                ringbuf,
                userspace: 0,
            };
            if lost.ringbuf != self.last_lost.ringbuf || self.last_lost.ts_ns == 0 {
                out.push(Event::Lost(lost));
                self.last_lost = lost;
            }
        }
        self.next_sample = Instant::now() + self.opts.sample_every;
    }

    /// Re-reads /proc/swaps; emits a device list when it changed, and `SwapOn`/`SwapOff` for
    /// devices that appeared or went away (the caller drains the ring first and then forgets
    /// the inuse counts of the devices gone).
    fn refresh_devices(&mut self, out: &mut Vec<Event>) {
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
            out.push(Event::SwapOff(SwapOff {
                ts_ns: list.ts_ns,
                swap_type: gone.index,
            }));
        }
        for new in list
            .devices
            .iter()
            .filter(|d| !self.devices.iter().any(|o| o.path == d.path))
        {
            out.push(Event::SwapOn(host::swap_on_for(new, list.ts_ns)));
        }
        self.devices = list.devices.clone();
        out.push(Event::Devices(list));
    }

    /// Decodes what the ring buffer holds, in its (kernel) order.
    fn drain(&mut self, wait: Duration, out: &mut Vec<Event>) {
        let shift = self.header.swp_type_shift;
        let mut decoded: Vec<(Event, Option<u64>)> = Vec::new();
        let Some(probe) = self.probe.as_mut() else {
            // Nothing to drain: wait as long as a drain would, so polling does not spin.
            std::thread::sleep(
                wait.min(self.next_sample.saturating_duration_since(Instant::now())),
            );
            return;
        };
        probe.drain(wait, |bytes| {
            if bytes.len() < 2 {
                return;
            }
            if u16::from_le_bytes([bytes[0], bytes[1]]) == kind::WRITEOUT {
                if let Ok(w) = record::codec::parse_writeout(bytes) {
                    decoded.push((
                        Event::Writeout(crate::event::Writeout::from_bpf(&w, shift)),
                        None,
                    ));
                }
            } else if let Some(ev) = probe::wire::from_bpf(bytes, shift) {
                decoded.push((ev, probe::wire::free_event_inuse(bytes)));
            }
        });
        for (ev, inuse) in decoded {
            let ty = match (&ev, inuse) {
                (Event::Free(f), Some(inuse)) => {
                    self.inuse.free(f.swap_type, f.nr, inuse);
                    Some(f.swap_type)
                }
                (Event::Free(f), None) => Some(f.swap_type),
                (
                    Event::Alloc(Alloc {
                        result: AllocResult::Success { swap_type, .. },
                        order,
                        ..
                    }),
                    _,
                ) => {
                    self.inuse.alloc(*swap_type, *order);
                    Some(*swap_type)
                }
                (Event::Grant(g), _) => {
                    self.inuse.grant(g.swap_type, g.order, g.nr);
                    Some(g.swap_type)
                }
                _ => None,
            };
            // A full-tier event on a device that appeared since the last sample: its SwapOn
            // goes first, so the models know the device.
            if ty.is_some_and(|t| !self.devices.iter().any(|d| d.index == t)) {
                self.refresh_devices(out);
            }
            // Events the kernel skipped, where those it delivered show them (crate::repair).
            self.repair.push(ev, out);
        }
    }

    fn take_markers(&mut self, out: &mut Vec<Event>) {
        let mut labels = self
            .opts
            .markers
            .as_ref()
            .map(Inbox::take)
            .unwrap_or_default();
        for _ in 0..signal::take_marker_requests() {
            labels.push(format!(
                "SIGUSR1 {}",
                self.markers_sent + labels.len() as u64 + 1
            ));
        }
        for label in labels {
            self.markers_sent += 1;
            out.push(Event::Marker(Marker {
                ts_ns: host::boottime_ns(),
                label,
            }));
        }
    }

    /// Whether the command has exited (recording how, when it failed).
    fn command_exited(&mut self) -> bool {
        let Some(c) = self.child.as_mut() else {
            return false;
        };
        match c.try_wait() {
            Ok(Some(st)) => {
                if !self.expected_end(st) {
                    self.summary.command_failed = Some(format!("the command exited with {st}"));
                }
                true
            }
            Ok(None) => false,
            Err(_) => true,
        }
    }

    /// Whether the command ended well: it succeeded, or it died of the SIGTERM the stop
    /// forwarded to it.
    fn expected_end(&self, st: std::process::ExitStatus) -> bool {
        use std::os::unix::process::ExitStatusExt as _;
        st.success() || (self.signals_at_stop.is_some() && st.signal() == Some(libc::SIGTERM))
    }

    /// Waits for the command to exit after the stream ended (e.g. its own clean-up), at most
    /// [`COMMAND_KILL_AFTER`] or until another stop signal: then it is killed (SIGKILL).
    pub fn wait_command(&mut self) {
        let Some(mut c) = self.child.take() else {
            return;
        };
        let start = Instant::now();
        let signals = self.signals_at_stop.unwrap_or_else(signal::stop_signals);
        loop {
            match c.try_wait() {
                Ok(Some(st)) => {
                    if !self.expected_end(st) && self.summary.command_failed.is_none() {
                        self.summary.command_failed = Some(format!("the command exited with {st}"));
                    }
                    return;
                }
                Ok(None) => {}
                Err(_) => return,
            }
            let second = signal::stop_signals() > signals;
            if second || start.elapsed() >= COMMAND_KILL_AFTER {
                let _ = c.kill();
                let _ = c.wait();
                self.summary.command_failed = Some(if second {
                    "the command was killed (SIGKILL) at the second stop signal".to_string()
                } else {
                    format!(
                        "the command was killed (SIGKILL): still running {} s after the stop",
                        (COMMAND_GRACE + COMMAND_KILL_AFTER).as_secs()
                    )
                });
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Source for LiveSource {
    fn header(&self) -> &RecordingHeader {
        &self.header
    }

    fn poll(&mut self, out: &mut Vec<Event>) -> Result<Poll, SourceError> {
        match self.state {
            State::Ended => return Ok(Poll::End),
            State::Starting => {
                self.sample(out);
                if !self.opts.command.is_empty() {
                    let capture = self.opts.command_output.clone();
                    let mut child = host::spawn_command(&self.opts.command, capture.is_some())
                        .map_err(|e| SourceError::CommandStart(e.to_string()))?;
                    if let Some(log) = capture {
                        forward_lines(child.stdout.take(), log.clone());
                        forward_lines(child.stderr.take(), log);
                    }
                    self.child = Some(child);
                }
                self.state = State::Running;
                return Ok(Poll::Events);
            }
            State::Running | State::Stopping { .. } => {}
        }
        self.drain(POLL_WAIT, out);
        self.take_markers(out);
        let exited = self.command_exited();
        let done = match self.state {
            State::Running => exited,
            State::Stopping { until } => exited || self.child.is_none() || Instant::now() >= until,
            _ => true,
        };
        if done {
            // The last sample, then whatever fired before it.
            self.sample(out);
            self.drain(Duration::ZERO, out);
            if exited {
                self.child = None;
            }
            self.state = State::Ended;
        } else if Instant::now() >= self.next_sample {
            self.sample(out);
        }
        Ok(Poll::Events)
    }

    fn stop(&mut self) {
        self.signals_at_stop
            .get_or_insert_with(signal::stop_signals);
        if matches!(self.state, State::Running | State::Starting) {
            if let Some(c) = &self.child {
                host::terminate(c);
            }
            self.state = State::Stopping {
                until: Instant::now() + COMMAND_GRACE,
            };
        }
    }

    fn summary(&self) -> Summary {
        let mut s = self.summary.clone();
        let dropped = self.opts.markers.as_ref().map_or(0, Inbox::dropped);
        if dropped > 0 {
            s.warnings.push(format!(
                "{dropped} marker{} dropped: more than {} were waiting at once",
                if dropped == 1 { "" } else { "s" },
                super::markers::MAX_WAITING
            ));
        }
        s
    }

    fn wait(&mut self) {
        self.wait_command();
    }
}

/// Adds the probes' own counts to a counter sample: the write-out program's tracepoint hits,
/// those it filtered out (not a swap-cache folio with an entry) and, on the full tier, those it
/// kept because the task had written the folio though it was gone by then; the `inuse_pages`
/// check; each program's missed invocations and, when the kernel keeps it
/// (`kernel.bpf_stats_enabled`), its run time. Returns the ring buffer's drops.
fn probe_counts(probe: &LiveProbe, inuse: &InuseCheck, v: &mut Vec<(String, u64)>) -> u64 {
    let c = probe.counters();
    v.push(("probe/writeout_hits".into(), c[counter::HITS as usize]));
    v.push((
        "probe/writeout_filtered".into(),
        c[counter::FILTERED as usize],
    ));
    if probe.has_feed(Feed::WriteIo) {
        v.push((
            "probe/writeout_written_gone".into(),
            c[counter::WRITTEN_GONE as usize],
        ));
    }
    if probe.has_feed(Feed::GrantRefusalLocked) {
        v.push((
            "probe/refusals_in_lock".into(),
            c[counter::REFUSED_IN_LOCK as usize],
        ));
    }
    v.push(("probe/inuse_checks".into(), inuse.checks));
    v.push(("probe/inuse_mismatches".into(), inuse.mismatches));
    for (feed, misses, rescued) in probe.missed_events() {
        v.push((format!("probe/{feed}/recursion_misses"), misses));
        if feed.rescue_slot().is_some() {
            v.push((format!("probe/{feed}/rescued"), rescued));
        }
    }
    for (feed, runs, ns) in probe.program_time() {
        v.push((format!("probe/{feed}/run_cnt"), runs));
        v.push((format!("probe/{feed}/run_time_ns"), ns));
    }
    c[counter::RINGBUF_DROPS as usize]
}

/// Copies a child's output into `log`, line by line, on a thread that ends with the pipe.
fn forward_lines(pipe: Option<impl std::io::Read + Send + 'static>, log: Log) {
    use std::io::BufRead as _;
    if let Some(p) = pipe {
        let _ = std::thread::Builder::new()
            .name("swapscope-cmd-output".into())
            .spawn(move || {
                for line in std::io::BufReader::new(p).lines() {
                    match line {
                        Ok(l) => log.push(l),
                        Err(_) => break,
                    }
                }
            });
    }
}

fn header(plan: &[ProbeStatus], devices: &[SwapDevice], opts: &LiveOptions) -> RecordingHeader {
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
        source: opts.label.clone(),
        command_line: opts.command_line.clone(),
        devices: devices.to_vec(),
        probe_plan: plan.to_vec(),
        extra,
        ..RecordingHeader::default()
    }
}
