//! Latency (hdrhistogram): p50/p90/p99/max of what the tier can time, and the histogram of the
//! highlighted row. Any tier: the time between write-outs of one folio size (inter-arrival).
//! Full tier: request → write-out delay (a successful request to the write-out of that slot).

use ratatui::{
    Frame,
    layout::{Constraint, Layout, Rect},
    style::{Color, Modifier, Style},
    text::{Line, Span},
    widgets::{Cell, Paragraph, Row, Table, Wrap},
};

use crate::{
    event::folio_size,
    sink::snapshot::Snapshot,
    tui::{
        app::Ui,
        draw::{DIM, WARN, block, reason},
        fmt,
    },
};

pub fn render(f: &mut Frame, area: Rect, snap: &Snapshot, ui: &Ui) {
    let limits: Vec<Line> = snap
        .latency_limits
        .iter()
        .map(|l| Line::from(Span::styled(format!("· {l}"), WARN)))
        .collect();
    if snap.latency.is_empty() {
        let mut why = vec!["nothing timed yet: latencies appear with the first write-outs".into()];
        why.extend(snap.latency_limits.iter().cloned());
        reason(f, area, "latency", why);
        return;
    }
    let sel = ui.latency_row.min(snap.latency.len() - 1);
    let table_h = snap.latency.len() as u16 + 3;
    let text_w = usize::from(area.width.saturating_sub(2)).max(1);
    let limits_h = if snap.latency_limits.is_empty() {
        0
    } else {
        snap.latency_limits
            .iter()
            .map(|l| (l.chars().count() + 2).div_ceil(text_w) as u16)
            .sum::<u16>()
            + 2
    };
    let [top, mid, bottom] = Layout::vertical([
        Constraint::Length(table_h),
        Constraint::Min(3),
        Constraint::Length(limits_h),
    ])
    .areas(area);
    let rows: Vec<Row> = snap
        .latency
        .iter()
        .enumerate()
        .map(|(i, r)| {
            let st = if i == sel {
                Style::new().add_modifier(Modifier::REVERSED)
            } else {
                Style::new()
            };
            Row::new(vec![
                Cell::from(r.what.clone()),
                Cell::from(r.order.map_or("all".into(), folio_size)),
                Cell::from(fmt::count(r.count)),
                Cell::from(fmt::ns(r.p50_ns)),
                Cell::from(fmt::ns(r.p90_ns)),
                Cell::from(fmt::ns(r.p99_ns)),
                Cell::from(fmt::ns(r.max_ns)),
            ])
            .style(st)
        })
        .collect();
    let header = Row::new(["what", "size", "count", "p50", "p90", "p99", "max"])
        .style(Style::new().add_modifier(Modifier::BOLD));
    f.render_widget(
        Table::new(
            rows,
            [
                Constraint::Length(19),
                Constraint::Length(5),
                Constraint::Length(11),
                Constraint::Length(9),
                Constraint::Length(9),
                Constraint::Length(9),
                Constraint::Min(9),
            ],
        )
        .header(header)
        .block(block("delays (hdrhistogram; ↑↓ choose the histogram)")),
        top,
    );
    if let Some(r) = snap.latency.get(sel) {
        let w = mid.width.saturating_sub(2 + 10 + 12) as usize;
        let max = r.buckets.iter().map(|b| b.1).max().unwrap_or(0).max(1);
        let h = mid.height.saturating_sub(2) as usize;
        let lines: Vec<Line> = r
            .buckets
            .iter()
            .take(h)
            .map(|(upper, n)| {
                let len = ((*n as f64 / max as f64) * w as f64).round() as usize;
                Line::from(vec![
                    Span::styled(format!("≤{:>8} ", fmt::ns(*upper)), DIM),
                    Span::styled("█".repeat(len), Style::new().fg(Color::Cyan)),
                    Span::raw(format!(" {}", fmt::count(*n))),
                ])
            })
            .collect();
        let title = format!("{} {}", r.what, r.order.map_or(String::new(), folio_size));
        f.render_widget(Paragraph::new(lines).block(block(&title)), mid);
    }
    if limits_h > 0 {
        f.render_widget(
            Paragraph::new(limits)
                .block(block("not shown"))
                .wrap(Wrap { trim: true }),
            bottom,
        );
    }
}
