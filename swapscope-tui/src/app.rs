//! The viewer's own state (which tab, cursor, filters, prompt) and what each key does to it.
//! The data shown is a [`Snapshot`]; this state never holds any of it (tokio-console's split).

use ratatui::crossterm::event::{KeyCode, KeyEvent, KeyEventKind, KeyModifiers};

use crate::sink::snapshot::Snapshot;

/// The views, in tab order.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Tab {
    Overview,
    DeviceMap,
    Models,
    Latency,
    Events,
}

impl Tab {
    pub const ALL: [Tab; 5] = [
        Tab::Overview,
        Tab::DeviceMap,
        Tab::Models,
        Tab::Latency,
        Tab::Events,
    ];

    pub fn title(self) -> &'static str {
        match self {
            Tab::Overview => "Overview",
            Tab::DeviceMap => "Device map",
            Tab::Models => "Models",
            Tab::Latency => "Latency",
            Tab::Events => "Events",
        }
    }

    fn index(self) -> usize {
        Tab::ALL.iter().position(|t| *t == self).unwrap_or(0)
    }
}

/// Live session or replay: which keys mean what.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mode {
    Live,
    Replay,
}

/// Events view filter by kind.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum KindFilter {
    All,
    Writeout,
    Alloc,
    Free,
    Split,
    Marker,
    Other,
}

impl KindFilter {
    const CYCLE: [KindFilter; 7] = [
        KindFilter::All,
        KindFilter::Writeout,
        KindFilter::Alloc,
        KindFilter::Free,
        KindFilter::Split,
        KindFilter::Marker,
        KindFilter::Other,
    ];

    pub fn name(self) -> &'static str {
        match self {
            KindFilter::All => "all",
            KindFilter::Writeout => "writeout",
            KindFilter::Alloc => "alloc",
            KindFilter::Free => "free",
            KindFilter::Split => "split",
            KindFilter::Marker => "marker",
            KindFilter::Other => "other",
        }
    }

    /// Whether an event of kind `kind` (its `Event::kind_name`) passes.
    pub fn passes(self, kind: &str) -> bool {
        match self {
            KindFilter::All => true,
            KindFilter::Other => {
                !matches!(kind, "writeout" | "alloc" | "free" | "split" | "marker")
            }
            k => k.name() == kind,
        }
    }

    fn next(self) -> Self {
        let i = Self::CYCLE.iter().position(|k| *k == self).unwrap_or(0);
        Self::CYCLE[(i + 1) % Self::CYCLE.len()]
    }
}

/// A line being typed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Prompt {
    /// A marker label (live).
    Marker(String),
    /// A pid for the Events filter.
    Pid(String),
}

/// What a key asks of the session (beyond the view state, which it changes itself).
#[derive(Clone, Debug, PartialEq)]
pub enum Action {
    None,
    Quit,
    /// Replay: pause or resume. Live: freeze or unfreeze the view.
    TogglePause,
    /// Replay: multiply the speed.
    Speed(f64),
    /// Replay: move by this many intervals.
    Seek(i64),
    /// Replay: jump to the next marker after the current position.
    NextMarker,
    /// Live: put a marker with this label into the stream.
    Marker(String),
}

/// The viewer's state.
#[derive(Clone, Debug)]
pub struct Ui {
    pub mode: Mode,
    pub tab: Tab,
    pub help: bool,
    /// Live: the view is frozen on one snapshot.
    pub frozen: bool,
    /// Device map: which device (index into `Snapshot::devices`).
    pub device: usize,
    /// Device map: which map is shown beside the real one (index into the device's models).
    pub model: usize,
    /// Device map: the cluster under the cursor.
    pub cursor: usize,
    /// Models: the highlighted row.
    pub model_row: usize,
    /// Latency: the highlighted row.
    pub latency_row: usize,
    /// Events: filters, and how many lines up from the newest (0 = follow).
    pub kind: KindFilter,
    pub order: Option<u8>,
    pub pid: Option<u32>,
    pub scroll: usize,
    pub prompt: Option<Prompt>,
    /// A message for the status line.
    pub note: Option<String>,
    marks: u64,
}

impl Ui {
    pub fn new(mode: Mode) -> Self {
        Ui {
            mode,
            tab: Tab::Overview,
            help: false,
            frozen: false,
            device: 0,
            model: 0,
            cursor: 0,
            model_row: 0,
            latency_row: 0,
            kind: KindFilter::All,
            order: None,
            pid: None,
            scroll: 0,
            prompt: None,
            note: None,
            marks: 0,
        }
    }

    /// Applies one key; returns what the session must do.
    pub fn key(&mut self, k: KeyEvent, snap: &Snapshot) -> Action {
        if k.kind == KeyEventKind::Release {
            return Action::None;
        }
        if k.modifiers.contains(KeyModifiers::CONTROL) && k.code == KeyCode::Char('c') {
            return Action::Quit;
        }
        if let Some(p) = self.prompt.take() {
            return self.prompt_key(p, k);
        }
        if self.help {
            // Any key closes the help; q still quits.
            self.help = false;
            return if k.code == KeyCode::Char('q') {
                Action::Quit
            } else {
                Action::None
            };
        }
        self.note = None;
        match k.code {
            KeyCode::Char('q') => return Action::Quit,
            KeyCode::Char('?') => self.help = true,
            KeyCode::Tab => self.tab = Tab::ALL[(self.tab.index() + 1) % Tab::ALL.len()],
            KeyCode::BackTab => {
                self.tab = Tab::ALL[(self.tab.index() + Tab::ALL.len() - 1) % Tab::ALL.len()];
            }
            KeyCode::Char(c @ '1'..='5') => {
                let i = usize::from(c as u8 - b'1');
                self.tab = Tab::ALL[i.min(Tab::ALL.len() - 1)];
            }
            KeyCode::Char('p') | KeyCode::Char(' ') => {
                if self.mode == Mode::Live {
                    self.frozen = !self.frozen;
                }
                return Action::TogglePause;
            }
            KeyCode::Char('+') | KeyCode::Char('=') if self.mode == Mode::Replay => {
                return Action::Speed(2.0);
            }
            KeyCode::Char('-') if self.mode == Mode::Replay => return Action::Speed(0.5),
            KeyCode::Left if self.mode == Mode::Replay => return Action::Seek(-1),
            KeyCode::Right if self.mode == Mode::Replay => return Action::Seek(1),
            KeyCode::Char('m') => match self.mode {
                Mode::Live => {
                    self.prompt = Some(Prompt::Marker(String::new()));
                }
                Mode::Replay => return Action::NextMarker,
            },
            _ => self.view_key(k, snap),
        }
        Action::None
    }

    fn prompt_key(&mut self, p: Prompt, k: KeyEvent) -> Action {
        let (mut text, is_marker) = match p {
            Prompt::Marker(t) => (t, true),
            Prompt::Pid(t) => (t, false),
        };
        match k.code {
            KeyCode::Esc => return Action::None,
            KeyCode::Enter => {
                if is_marker {
                    self.marks += 1;
                    let label = if text.trim().is_empty() {
                        format!("mark {}", self.marks)
                    } else {
                        text.trim().to_string()
                    };
                    self.note = Some(format!("marker {label:?} added"));
                    return Action::Marker(label);
                }
                self.pid = text.trim().parse().ok();
                self.scroll = 0;
                return Action::None;
            }
            KeyCode::Backspace => {
                text.pop();
            }
            KeyCode::Char(c) if text.len() < 80 && (is_marker || c.is_ascii_digit()) => {
                text.push(c);
            }
            _ => {}
        }
        self.prompt = Some(if is_marker {
            Prompt::Marker(text)
        } else {
            Prompt::Pid(text)
        });
        Action::None
    }

    /// Keys that belong to the current view.
    fn view_key(&mut self, k: KeyEvent, snap: &Snapshot) {
        match self.tab {
            Tab::DeviceMap => {
                let n = snap.maps.get(self.device).map_or(0, |m| {
                    m.real
                        .as_ref()
                        .map_or(0, |r| r.len())
                        .max(m.models.first().map_or(0, |(_, c)| c.len()))
                        .max(m.heat.as_ref().map_or(0, |h| h.len()))
                });
                let step_row = 16;
                match k.code {
                    KeyCode::Char('h') => self.cursor = self.cursor.saturating_sub(1),
                    KeyCode::Char('l') => self.cursor = (self.cursor + 1).min(n.saturating_sub(1)),
                    KeyCode::Char('k') | KeyCode::Up => {
                        self.cursor = self.cursor.saturating_sub(step_row);
                    }
                    KeyCode::Char('j') | KeyCode::Down => {
                        self.cursor = (self.cursor + step_row).min(n.saturating_sub(1));
                    }
                    KeyCode::Home => self.cursor = 0,
                    KeyCode::End => self.cursor = n.saturating_sub(1),
                    KeyCode::Char(']') => self.model += 1,
                    KeyCode::Char('[') => self.model = self.model.saturating_sub(1),
                    KeyCode::Char('d') => {
                        self.device = (self.device + 1) % snap.devices.len().max(1);
                        self.cursor = 0;
                    }
                    _ => {}
                }
            }
            Tab::Models => match k.code {
                KeyCode::Up | KeyCode::Char('k') => {
                    self.model_row = self.model_row.saturating_sub(1);
                }
                KeyCode::Down | KeyCode::Char('j') => self.model_row += 1,
                _ => {}
            },
            Tab::Latency => match k.code {
                KeyCode::Up | KeyCode::Char('k') => {
                    self.latency_row = self.latency_row.saturating_sub(1);
                }
                KeyCode::Down | KeyCode::Char('j') => self.latency_row += 1,
                _ => {}
            },
            Tab::Events => match k.code {
                KeyCode::Up | KeyCode::Char('k') => self.scroll += 1,
                KeyCode::Down | KeyCode::Char('j') => self.scroll = self.scroll.saturating_sub(1),
                KeyCode::PageUp => self.scroll += 10,
                KeyCode::PageDown => self.scroll = self.scroll.saturating_sub(10),
                KeyCode::End => self.scroll = 0,
                KeyCode::Char('f') => {
                    self.kind = self.kind.next();
                    self.scroll = 0;
                }
                KeyCode::Char('o') => {
                    self.order = match self.order {
                        None => Some(0),
                        Some(o) if o >= 9 => None,
                        Some(o) => Some(o + 1),
                    };
                    self.scroll = 0;
                }
                KeyCode::Char('/') => self.prompt = Some(Prompt::Pid(String::new())),
                KeyCode::Char('c') => {
                    self.kind = KindFilter::All;
                    self.order = None;
                    self.pid = None;
                    self.scroll = 0;
                }
                _ => {}
            },
            Tab::Overview => {}
        }
    }
}

/// The help text, one line per key.
pub fn help_lines(mode: Mode) -> Vec<(&'static str, &'static str)> {
    let mut v = vec![
        (
            "Tab / 1-5",
            "switch views (Overview, Device map, Models, Latency, Events)",
        ),
        (
            "q  Ctrl-C",
            "quit (a live session stops its probes and any demo workload)",
        ),
        ("?", "this help (any key closes it)"),
    ];
    match mode {
        Mode::Replay => v.extend([
            ("p  Space", "pause / resume the replay"),
            ("+  -", "replay twice as fast / half as fast"),
            ("←  →", "seek one interval back / forward"),
            ("m", "jump to the next marker"),
        ]),
        Mode::Live => v.extend([
            (
                "p  Space",
                "freeze / unfreeze the view (collection goes on)",
            ),
            (
                "m",
                "put a labelled marker into the stream (Enter adds, Esc cancels)",
            ),
        ]),
    }
    v.extend([
        (
            "Device map: h j k l",
            "move the cluster cursor (Home / End: first / last)",
        ),
        (
            "Device map: [ ]  d",
            "previous / next model beside the real map; next device",
        ),
        ("Models, Latency: ↑ ↓", "highlight a row"),
        (
            "Events: ↑ ↓ PgUp PgDn End",
            "scroll; End follows the newest",
        ),
        (
            "Events: f  o  /  c",
            "filter by kind, by order, by pid; clear the filters",
        ),
    ]);
    v
}
