//! The TUI of `swapscope live` and `swapscope replay`: one viewer over the pipeline.
//!
//! The driver ([`crate::pipeline::run`]) runs on its own thread with the source and the sinks;
//! the analysis runs on a third ([`Threaded`]) and publishes a [`Snapshot`] a few times a
//! second; this thread only draws the latest snapshot and turns keys into actions
//! (tokio-console's state/view split, bpftop's background producer). The terminal is restored
//! by a guard on every exit path and by ratatui's panic hook.
//!
//! * [`app`] — the viewer's own state and what each key does;
//! * [`draw`] and [`views`] — pure rendering of a snapshot (snapshot-tested with `TestBackend`);
//! * [`fmt`] — number and sparkline formatting.

// Core's and the probe side's modules under the paths this crate's modules name them by
// (`crate::event`, ...); `crate::tui` is this crate.
use crate as tui;
use swapscope_core::{alloc, engine, event, pipeline, sink};
use swapscope_probe::{host, signal, source};

pub mod app;
pub mod draw;
pub mod fmt;
pub mod views;

use std::{
    io::Write as _,
    path::PathBuf,
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
    time::{Duration, Instant},
};

use ratatui::{
    Terminal,
    backend::TestBackend,
    crossterm::event::{self as term, Event as TermEvent},
};

use self::{
    app::{Action, Mode, Ui},
    draw::Status,
};
use crate::{
    pipeline::{PipelineError, ReplayControl},
    sink::{
        Sink,
        analysis::{Analysis, Shared, Threaded},
        snapshot::Snapshot,
    },
    source::{Log, Source, Summary, markers::Inbox},
};

#[derive(Debug, thiserror::Error)]
pub enum TuiError {
    #[error("the terminal: {0}; run `swapscope live` or `replay` in a terminal, or use --headless")]
    Terminal(std::io::Error),
    #[error("writing {path}: {source}")]
    Write {
        path: String,
        source: std::io::Error,
    },
    #[error(transparent)]
    Sink(#[from] crate::sink::SinkError),
    #[error("the pipeline thread stopped unexpectedly")]
    Thread,
}

/// Where frames go.
#[derive(Clone, Debug)]
pub enum Display {
    /// The terminal on stdout (alternate screen, raw mode).
    Terminal,
    /// No terminal: draw `frames` frames, one every `every`, into an off-screen buffer of
    /// `width`×`height` and append each as text to `dump` (the VM tests, and scripts).
    Headless {
        frames: u32,
        every: Duration,
        width: u16,
        height: u16,
        dump: Option<PathBuf>,
    },
}

/// One viewing session: a source, extra sinks (a recorder), and the analysis to show.
pub struct Session<'a> {
    pub source: Box<dyn Source + Send + 'a>,
    pub sinks: Vec<Box<dyn Sink + Send + 'a>>,
    pub analysis: Analysis,
    /// A replay's clock (pause, speed, seek); `None` for a live session.
    pub replay: Option<Arc<ReplayControl>>,
    /// Where live markers from the `m` key go.
    pub markers: Option<Inbox>,
    /// Said in the status line (e.g. `recording → s.swsc`).
    pub note: String,
    pub log: Log,
    /// Snapshots per second the analysis publishes (and the frame rate).
    pub publish_every: Duration,
    /// Drop batches when the analysis falls behind (live) rather than wait (replay).
    pub lossy: bool,
}

/// How a session ended.
pub struct Outcome {
    /// The pipeline's result (sinks' errors included).
    pub result: Result<Summary, PipelineError>,
    /// The last snapshot the analysis published.
    pub last: Arc<Snapshot>,
    pub frames: FrameStats,
}

/// What drawing cost.
#[derive(Clone, Copy, Debug, Default, serde::Serialize)]
pub struct FrameStats {
    pub frames: u64,
    /// Mean and largest time to build and draw one frame, in ms.
    pub draw_ms_mean: f64,
    pub draw_ms_max: f64,
}

impl FrameStats {
    fn add(&mut self, d: Duration) {
        let ms = d.as_secs_f64() * 1e3;
        self.draw_ms_mean =
            (self.draw_ms_mean * self.frames as f64 + ms) / (self.frames + 1) as f64;
        self.draw_ms_max = self.draw_ms_max.max(ms);
        self.frames += 1;
    }
}

/// Runs a session until the viewer quits (or, headless, until its frames are drawn), then
/// stops the source, lets the sinks finish and returns.
pub fn run(s: Session<'_>, display: Display) -> Result<Outcome, TuiError> {
    let Session {
        mut source,
        mut sinks,
        analysis,
        replay,
        markers,
        note,
        log,
        publish_every,
        lossy,
    } = s;
    let mut threaded = Threaded::spawn(analysis, publish_every, lossy)?;
    let shared = threaded.shared();
    let quit = AtomicBool::new(false);
    let user_quit = AtomicBool::new(false);
    let replaying = replay.is_some();
    let done = AtomicBool::new(false);
    let started = Instant::now();
    let mode = if replay.is_some() {
        Mode::Replay
    } else {
        Mode::Live
    };
    let ctx = Ctx {
        shared: &shared,
        replay: replay.as_deref(),
        markers: markers.as_ref(),
        note: &note,
        log: &log,
        done: &done,
        started,
        mode,
        frame: publish_every,
    };
    std::thread::scope(|sc| {
        let driver = sc.spawn(|| {
            let mut all: Vec<&mut dyn Sink> = vec![&mut threaded];
            for s in &mut sinks {
                all.push(s.as_mut());
            }
            let r = pipeline::run(source.as_mut(), &mut all, &mut || {
                let (q, sig) = (quit.load(Ordering::Relaxed), signal::stop_requested());
                // A replay the user quit (q, Ctrl-C, SIGTERM): what the analysis has queued is
                // dropped, so the command ends at once. A live session is analysed to its end
                // (its last counter sample is what its figures are checked against, and its
                // queue is short: lossy), as is a headless run whose frames are drawn.
                if replaying && (sig || (q && user_quit.load(Ordering::Relaxed))) {
                    shared.abandon();
                }
                q || sig
            });
            source.wait();
            done.store(true, Ordering::Relaxed);
            r
        });
        let shown = match &display {
            Display::Terminal => terminal(&ctx),
            Display::Headless {
                frames,
                every,
                width,
                height,
                dump,
            } => headless(&ctx, *frames, *every, *width, *height, dump.as_ref()),
        };
        user_quit.store(matches!(display, Display::Terminal), Ordering::Relaxed);
        quit.store(true, Ordering::Relaxed);
        if matches!(display, Display::Terminal)
            && mode == Mode::Live
            && !done.load(Ordering::Relaxed)
        {
            eprintln!("swapscope: stopping (the probes detach; a demo workload cleans up)…");
        }
        let result = driver.join().map_err(|_| TuiError::Thread)?;
        let frames = shown?;
        Ok(Outcome {
            result,
            last: shared.latest(),
            frames,
        })
    })
}

struct Ctx<'a> {
    shared: &'a Shared,
    replay: Option<&'a ReplayControl>,
    markers: Option<&'a Inbox>,
    note: &'a str,
    log: &'a Log,
    done: &'a AtomicBool,
    started: Instant,
    mode: Mode,
    frame: Duration,
}

impl Ctx<'_> {
    fn status(&self, snap: &Snapshot) -> Status {
        let text = match self.replay {
            Some(r) => {
                let rel = |ts: u64| fmt::clock(snap.rel_s(ts.max(snap.first_ts)));
                if let Some(to) = r.seeking() {
                    // A seek backwards re-reads the recording from its start: say so while it
                    // runs (seconds on a large one).
                    return Status {
                        text: format!("⏩ seeking to {}: at {}", rel(to), rel(r.position())),
                        log: self.log.lines(),
                    };
                }
                let state = if r.ended() {
                    "■ end of recording".to_string()
                } else if r.paused() {
                    "⏸ paused".to_string()
                } else {
                    let sp = r.speed();
                    if sp.is_infinite() {
                        "▶ max speed".to_string()
                    } else {
                        format!("▶ {}×", fmt::speed(sp))
                    }
                };
                // Position / read so far (the whole recording once ended): the analysis'
                // snapshot lags the replay by up to a frame, so its span could read less than
                // the position ("1.9484s / 1.6397s").
                format!("{state} {} / {}", rel(r.position()), rel(r.read_to()))
            }
            None => {
                let state = if self.done.load(Ordering::Relaxed) {
                    "■ session ended"
                } else {
                    "● live"
                };
                format!(
                    "{state} {}{}{}",
                    fmt::clock(self.started.elapsed().as_secs_f64()),
                    if self.note.is_empty() { "" } else { "  " },
                    self.note
                )
            }
        };
        let mut log = self.log.lines();
        if let Some(r) = self.replay {
            log.extend(r.warnings().into_iter().map(|w| format!("warning: {w}")));
        }
        Status { text, log }
    }

    /// Carries out what a key asked for.
    fn act(&self, a: Action, snap: &Snapshot) -> bool {
        match a {
            Action::Quit => return true,
            Action::None => {}
            Action::TogglePause => {
                if let Some(r) = self.replay {
                    r.set_paused(!r.paused());
                }
            }
            Action::Speed(x) => {
                if let Some(r) = self.replay {
                    let s = r.speed();
                    let next = if s.is_infinite() {
                        if x < 1.0 { 64.0 } else { s }
                    } else {
                        s * x
                    };
                    r.set_speed(next.clamp(1e-6, 1e9));
                }
            }
            Action::Seek(n) => {
                if let Some(r) = self.replay {
                    let step = snap.info.interval_ns as i64;
                    let pos = r.position().max(snap.first_ts) as i64;
                    let target = (pos + n * step).max(snap.first_ts as i64).max(1);
                    r.seek(target as u64);
                }
            }
            Action::NextMarker => {
                if let Some(r) = self.replay {
                    r.seek_next_marker();
                }
            }
            Action::Marker(label) => {
                if let Some(m) = self.markers {
                    m.push(&label);
                }
            }
        }
        false
    }
}

/// Restores the terminal when dropped (also on error paths); ratatui's panic hook covers panics.
struct Guard;

impl Drop for Guard {
    fn drop(&mut self) {
        ratatui::restore();
    }
}

fn terminal(ctx: &Ctx) -> Result<FrameStats, TuiError> {
    let mut term = ratatui::try_init().map_err(TuiError::Terminal)?;
    let _guard = Guard;
    let mut ui = Ui::new(ctx.mode);
    let mut frozen: Option<Arc<Snapshot>> = None;
    let mut stats = FrameStats::default();
    loop {
        if signal::stop_requested() {
            return Ok(stats);
        }
        let snap = match (&frozen, ui.frozen) {
            (Some(s), true) => s.clone(),
            (_, true) => {
                let s = ctx.shared.latest();
                frozen = Some(s.clone());
                s
            }
            _ => {
                frozen = None;
                ctx.shared.latest()
            }
        };
        let t = Instant::now();
        let status = ctx.status(&snap);
        term.draw(|f| draw::draw(f, &snap, &ui, &status))
            .map_err(TuiError::Terminal)?;
        stats.add(t.elapsed());
        // Keys the terminal library already holds first; then wait on the terminal itself,
        // which also tells when it went away.
        let wait = ctx.frame.min(Duration::from_millis(250));
        if !term::poll(Duration::ZERO).map_err(TuiError::Terminal)? {
            match crate::host::wait_terminal_input(wait) {
                crate::host::TerminalInput::HungUp => return Ok(stats),
                crate::host::TerminalInput::Timeout => continue,
                crate::host::TerminalInput::Ready => {}
            }
            if !term::poll(wait).map_err(TuiError::Terminal)? {
                continue;
            }
        }
        match term::read().map_err(TuiError::Terminal)? {
            TermEvent::Key(k) => {
                let a = ui.key(k, &snap);
                if ctx.act(a, &snap) {
                    return Ok(stats);
                }
            }
            TermEvent::Resize(..) => {}
            _ => {}
        }
    }
}

fn headless(
    ctx: &Ctx,
    frames: u32,
    every: Duration,
    width: u16,
    height: u16,
    dump: Option<&PathBuf>,
) -> Result<FrameStats, TuiError> {
    let mut stats = FrameStats::default();
    let Ok(mut term) = Terminal::new(TestBackend::new(width, height));
    let ui = Ui::new(ctx.mode);
    let mut out = match dump {
        Some(p) => Some((
            std::fs::File::create(p).map_err(|source| TuiError::Write {
                path: p.display().to_string(),
                source,
            })?,
            p,
        )),
        None => None,
    };
    for i in 0..frames {
        if signal::stop_requested() {
            break;
        }
        std::thread::sleep(every);
        let snap = ctx.shared.latest();
        let status = ctx.status(&snap);
        let mut views = Vec::new();
        for tab in app::Tab::ALL {
            let mut u = ui.clone();
            u.tab = tab;
            let t = Instant::now();
            let Ok(_) = term.draw(|f| draw::draw(f, &snap, &u, &status));
            stats.add(t.elapsed());
            views.push(buffer_text(term.backend()));
        }
        if let Some((f, p)) = out.as_mut() {
            let mut text = format!("=== frame {} (snapshot {}) ===\n", i + 1, snap.seq);
            for v in &views {
                text.push_str(v);
                text.push('\n');
            }
            f.write_all(text.as_bytes())
                .map_err(|source| TuiError::Write {
                    path: p.display().to_string(),
                    source,
                })?;
        }
        if ctx.done.load(Ordering::Relaxed) || ctx.replay.is_some_and(|r| r.ended()) {
            break;
        }
    }
    Ok(stats)
}

/// The text of a test backend's buffer, one line per row, trailing spaces trimmed.
pub fn buffer_text(b: &TestBackend) -> String {
    let buf = b.buffer();
    let mut s = String::new();
    for y in 0..buf.area.height {
        let mut line = String::new();
        for x in 0..buf.area.width {
            line.push_str(buf[(x, y)].symbol());
        }
        s.push_str(line.trim_end());
        s.push('\n');
    }
    s
}

/// Renders one frame of `snap` into a `width`×`height` buffer and returns its text (snapshot
/// tests, `docs/tui.md`).
pub fn render_text(snap: &Snapshot, ui: &Ui, status: &Status, width: u16, height: u16) -> String {
    let Ok(mut term) = Terminal::new(TestBackend::new(width, height));
    let Ok(_) = term.draw(|f| draw::draw(f, snap, ui, status));
    buffer_text(term.backend())
}

#[cfg(test)]
pub(crate) mod tests;
