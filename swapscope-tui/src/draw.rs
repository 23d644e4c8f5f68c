//! The frame: a header line (what is shown), the tabs, the current view, and a status line
//! (replay position and speed, or the live session's state, and the keys). Pure: it renders a
//! [`Snapshot`] and the viewer's [`Ui`] state, nothing else.

use ratatui::{
    Frame,
    layout::{Constraint, Layout, Rect},
    style::{Color, Modifier, Style},
    text::{Line, Span},
    widgets::{Block, Clear, Paragraph, Tabs, Wrap},
};

use super::{
    app::{Prompt, Tab, Ui, help_lines},
    fmt, views,
};
use crate::sink::snapshot::Snapshot;

/// What the session says about itself in the status line.
#[derive(Clone, Debug, Default)]
pub struct Status {
    /// e.g. `▶ 2.0× 0:12.3 / 0:20.5`, `● live 0:42  recording → s.swsc`.
    pub text: String,
    /// The log pane's lines (BPF-side diagnostics, a demo workload's output), oldest first.
    pub log: Vec<String>,
}

pub const TITLE: Style = Style::new().add_modifier(Modifier::BOLD);
pub const DIM: Style = Style::new().fg(Color::DarkGray);
pub const WARN: Style = Style::new().fg(Color::Yellow);
pub const BAD: Style = Style::new().fg(Color::Red);

/// A bordered block with a bold title.
pub fn block(title: &str) -> Block<'_> {
    Block::bordered().title(Span::styled(format!(" {title} "), TITLE))
}

/// Draws everything.
pub fn draw(f: &mut Frame, snap: &Snapshot, ui: &Ui, status: &Status) {
    let [head, tabs, body, foot] = Layout::vertical([
        Constraint::Length(1),
        Constraint::Length(1),
        Constraint::Min(0),
        Constraint::Length(1),
    ])
    .areas(f.area());
    header(f, head, snap);
    let titles: Vec<Line> = Tab::ALL
        .iter()
        .enumerate()
        .map(|(i, t)| Line::from(format!("{} {}", i + 1, t.title())))
        .collect();
    let sel = Tab::ALL.iter().position(|t| *t == ui.tab).unwrap_or(0);
    f.render_widget(
        Tabs::new(titles)
            .select(sel)
            .highlight_style(Style::new().reversed().bold())
            .divider("│"),
        tabs,
    );
    match ui.tab {
        Tab::Overview => views::overview::render(f, body, snap, ui),
        Tab::DeviceMap => views::devmap::render(f, body, snap, ui),
        Tab::Models => views::models::render(f, body, snap, ui),
        Tab::Latency => views::latency::render(f, body, snap, ui),
        Tab::Events => views::events::render(f, body, snap, ui, status),
    }
    footer(f, foot, ui, status);
    if ui.help {
        help(f, body, ui);
    }
}

fn header(f: &mut Frame, area: Rect, snap: &Snapshot) {
    let i = &snap.info;
    let tail = format!(
        "  {} events  {}",
        fmt::count(snap.events),
        fmt::clock(snap.duration_s())
    );
    let mut kernel = if i.kernel_release.is_empty() {
        String::new()
    } else {
        format!("  {}  {} cpus", i.kernel_release, i.nr_cpus)
    };
    let fixed = "swapscope ".len() + i.tier.len() + 6 + tail.chars().count();
    let w = usize::from(area.width);
    if fixed + i.mode.chars().count() + 1 + kernel.chars().count() > w {
        kernel.clear();
    }
    let mode = fmt::fit(
        &i.mode,
        w.saturating_sub(fixed + kernel.chars().count() + 1),
    );
    let mut spans = vec![
        Span::styled("swapscope ", TITLE),
        Span::raw(format!("{mode} ")),
        Span::styled(format!("tier {}", i.tier), Style::new().fg(Color::Cyan)),
        Span::raw(kernel),
        Span::raw(tail),
    ];
    if snap.lost > 0 {
        spans.push(Span::styled(
            format!("  lost {}", fmt::count(snap.lost)),
            BAD,
        ));
    }
    f.render_widget(Paragraph::new(Line::from(spans)), area);
}

fn footer(f: &mut Frame, area: Rect, ui: &Ui, status: &Status) {
    let line = match &ui.prompt {
        Some(Prompt::Marker(t)) => Line::from(vec![
            Span::styled("marker label: ", TITLE),
            Span::raw(format!("{t}▏")),
            Span::styled("  Enter adds, Esc cancels", DIM),
        ]),
        Some(Prompt::Pid(t)) => Line::from(vec![
            Span::styled("show pid: ", TITLE),
            Span::raw(format!("{t}▏")),
            Span::styled("  Enter filters (empty: all), Esc cancels", DIM),
        ]),
        None => {
            let mut spans = vec![Span::styled(status.text.clone(), Style::new().bold())];
            if let Some(n) = &ui.note {
                spans.push(Span::styled(format!("  {n}"), WARN));
            }
            if ui.frozen {
                spans.push(Span::styled("  FROZEN (p)", WARN));
            }
            spans.push(Span::styled("  q quit  ? help  Tab views", DIM));
            Line::from(spans)
        }
    };
    f.render_widget(Paragraph::new(line), area);
}

fn help(f: &mut Frame, body: Rect, ui: &Ui) {
    let lines: Vec<Line> = help_lines(ui.mode)
        .into_iter()
        .map(|(k, v)| {
            Line::from(vec![
                Span::styled(format!("{k:>24}  "), TITLE),
                Span::raw(v),
            ])
        })
        .collect();
    let h = (lines.len() as u16 + 2).min(body.height);
    let w = body.width.min(110);
    let area = Rect {
        x: body.x + (body.width - w) / 2,
        y: body.y + (body.height - h) / 2,
        width: w,
        height: h,
    };
    f.render_widget(Clear, area);
    f.render_widget(
        Paragraph::new(lines)
            .block(block("keys"))
            .wrap(Wrap { trim: false }),
        area,
    );
}

/// A paragraph saying why a view has nothing to show.
pub fn reason(f: &mut Frame, area: Rect, title: &str, lines: Vec<String>) {
    let text: Vec<Line> = lines
        .into_iter()
        .map(|l| Line::from(Span::styled(l, WARN)))
        .collect();
    f.render_widget(
        Paragraph::new(text)
            .block(block(title))
            .wrap(Wrap { trim: true }),
        area,
    );
}
