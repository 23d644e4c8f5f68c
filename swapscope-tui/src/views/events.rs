//! Events: the newest decoded events in the human format `dump` prints, filtered by kind,
//! order and pid.

use ratatui::{
    Frame,
    layout::{Constraint, Layout, Rect},
    style::Style,
    text::{Line, Span},
    widgets::Paragraph,
};

use crate::{
    sink::snapshot::{Snapshot, TailEvent},
    tui::{
        app::Ui,
        draw::{DIM, Status, WARN, block},
        fmt,
    },
};

use super::overview::order_color;

fn passes(t: &TailEvent, ui: &Ui) -> bool {
    ui.kind.passes(t.event.kind_name())
        && ui.order.is_none_or(|o| t.event.order() == Some(o))
        && ui.pid.is_none_or(|p| t.event.pid() == Some(p))
}

pub fn render(f: &mut Frame, area: Rect, snap: &Snapshot, ui: &Ui, status: &Status) {
    let log_h = if status.log.is_empty() {
        0
    } else {
        (status.log.len() as u16 + 2).min(area.height / 4).max(3)
    };
    let [area, log_area] =
        Layout::vertical([Constraint::Min(3), Constraint::Length(log_h)]).areas(area);
    if log_h > 0 {
        let inner = log_h.saturating_sub(2) as usize;
        let w = log_area.width.saturating_sub(2) as usize;
        let lines: Vec<Line> = status.log[status.log.len().saturating_sub(inner)..]
            .iter()
            .map(|l| Line::from(Span::styled(fmt::fit(l, w), DIM)))
            .collect();
        f.render_widget(Paragraph::new(lines).block(block("log")), log_area);
    }
    let shown: Vec<&TailEvent> = snap.tail.iter().filter(|t| passes(t, ui)).collect();
    let h = area.height.saturating_sub(2) as usize;
    let w = area.width.saturating_sub(2) as usize;
    let end = shown
        .len()
        .saturating_sub(ui.scroll.min(shown.len().saturating_sub(h)));
    let start = end.saturating_sub(h);
    let mut lines: Vec<Line> = shown[start..end]
        .iter()
        .map(|t| {
            let color = t.event.order().map_or(Style::new(), |o| {
                Style::new().fg(order_color(usize::from(o)))
            });
            let ts = t.event.ts();
            let when = if ts == 0 {
                "        -".to_string()
            } else {
                format!("{:>9}", fmt::clock(snap.rel_s(ts)))
            };
            let mut text = t.event.describe();
            if t.omitted > 0 {
                text.push_str(&format!(" … and {} more", t.omitted));
            }
            let room = w.saturating_sub(9 + 1 + 9 + 1);
            Line::from(vec![
                Span::styled(when, DIM),
                Span::raw(" "),
                Span::styled(format!("{:<9}", t.event.kind_name()), color),
                Span::raw(fmt::fit(&text, room)),
            ])
        })
        .collect();
    if lines.is_empty() {
        lines.push(Line::from(Span::styled(
            if snap.tail.is_empty() {
                "no events yet"
            } else {
                "no event passes the filters (c clears them)"
            },
            WARN,
        )));
    }
    let filt = format!(
        "events: {} · order {} · pid {}{} (f o / c)",
        ui.kind.name(),
        ui.order.map_or("any".into(), |o| o.to_string()),
        ui.pid.map_or("any".into(), |p| p.to_string()),
        if ui.scroll > 0 {
            format!(" · {} up (End follows)", ui.scroll)
        } else {
            String::new()
        }
    );
    f.render_widget(Paragraph::new(lines).block(block(&filt)), area);
}
