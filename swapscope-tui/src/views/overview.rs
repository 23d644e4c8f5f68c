//! Overview: write-outs per second by folio size (and, on the full tier, the folios read back),
//! the kernel's per-size swap-out and fallback
//! counters, each device's use, the health of the stream (lost and missed events, events by
//! kind, the tier and its hooks), and in the rows left the large-folio fallback share over time.

use ratatui::{
    Frame,
    layout::{Constraint, Layout, Rect},
    style::{Color, Style},
    text::{Line, Span},
    widgets::{Paragraph, Sparkline},
};

use crate::{
    alloc::NR_ORDERS,
    event::folio_size,
    sink::snapshot::{IntervalRow, Snapshot},
    tui::{
        app::Ui,
        draw::{BAD, DIM, TITLE, WARN, block},
        fmt,
    },
};

pub fn render(f: &mut Frame, area: Rect, snap: &Snapshot, _ui: &Ui) {
    let inner_w = area.width.saturating_sub(2) as usize;
    let writeouts = writeout_lines(snap, inner_w);
    let kernel = kernel_lines(snap);
    let devices = device_lines(snap, inner_w);
    let health = health_lines(snap, inner_w);
    let h = |n: usize| Constraint::Length(n as u16 + 2);
    let used: usize = [&writeouts, &kernel, &devices, &health]
        .iter()
        .map(|l| l.len() + 2)
        .sum();
    let shares = share_series(snap);
    // The rows left (a tall terminal) show the fallback share over time; else stream health
    // takes them as before.
    let spare = usize::from(area.height).saturating_sub(used);
    let chart = !shares.is_empty() && spare >= 2 + 2 * shares.len();
    let [a, b, c, d, e] = Layout::vertical([
        h(writeouts.len()),
        h(kernel.len()),
        h(devices.len()),
        if chart {
            h(health.len())
        } else {
            Constraint::Min(3)
        },
        if chart {
            Constraint::Min(3)
        } else {
            Constraint::Length(0)
        },
    ])
    .areas(area);
    f.render_widget(
        Paragraph::new(writeouts).block(block("write-outs per second, by folio size")),
        a,
    );
    f.render_widget(
        Paragraph::new(kernel).block(block("kernel swap-out by size (mTHP stats)")),
        b,
    );
    f.render_widget(Paragraph::new(devices).block(block("swap devices")), c);
    f.render_widget(Paragraph::new(health).block(block("stream health")), d);
    if chart {
        share_chart(f, e, &shares);
    }
}

/// Per large order, the share of its swap-outs that fell back (were split) in each interval:
/// from the kernel's mTHP counters when the stream has them, else from the requests the
/// allocator refused (a simulated stream). `None` where the interval had none of that size.
fn share_series(snap: &Snapshot) -> Vec<(usize, Vec<Option<f64>>, &'static str)> {
    let counters = snap
        .intervals
        .iter()
        .any(|r| r.swpout.iter().chain(&r.swpout_fallback).any(|&v| v > 0));
    (1..NR_ORDERS)
        .filter_map(|o| {
            let series: Vec<Option<f64>> = snap
                .intervals
                .iter()
                .map(|r| {
                    let (fb, all) = if counters {
                        (r.swpout_fallback[o], r.swpout[o] + r.swpout_fallback[o])
                    } else {
                        (r.failures[o], r.requests[o])
                    };
                    (all > 0).then(|| fb as f64 / all as f64)
                })
                .collect();
            series.iter().any(Option::is_some).then_some((
                o,
                series,
                if counters {
                    "swpout_fallback / (swpout + swpout_fallback)"
                } else {
                    "refused / requested"
                },
            ))
        })
        .collect()
}

fn share_chart(f: &mut Frame, area: Rect, shares: &[(usize, Vec<Option<f64>>, &'static str)]) {
    let what = shares.first().map_or("", |s| s.2);
    let title = format!("large-folio fallback share per interval, 0–100 % ({what})");
    let blk = block(&title);
    let inner = blk.inner(area);
    f.render_widget(blk, area);
    let rows = Layout::vertical(shares.iter().map(|_| Constraint::Fill(1))).split(inner);
    for ((o, series, _), row) in shares.iter().zip(rows.iter()) {
        let [label, chart] =
            Layout::horizontal([Constraint::Length(14), Constraint::Min(4)]).areas(*row);
        let last = series.iter().rev().find_map(|v| *v);
        f.render_widget(
            Paragraph::new(vec![
                Line::from(Span::styled(folio_size(*o as u8).to_string(), TITLE)),
                Line::from(Span::styled(format!("last {}", fmt::pct(last)), DIM)),
            ]),
            label,
        );
        let w = usize::from(chart.width);
        let shown = &series[series.len().saturating_sub(w)..];
        // Per mille, so the bars are fine-grained; an interval without that size is a gap.
        // Right-aligned, the newest interval at the right edge (as the write-out sparklines).
        let data: Vec<Option<u64>> = std::iter::repeat_n(None, w - shown.len())
            .chain(
                shown
                    .iter()
                    .map(|v| v.map(|x| (x.clamp(0.0, 1.0) * 1000.0).round() as u64)),
            )
            .collect();
        f.render_widget(
            Sparkline::default()
                .data(data)
                .max(1000)
                .style(Style::new().fg(order_color(*o))),
            chart,
        );
    }
}

fn orders_with(snap: &Snapshot, pick: impl Fn(&IntervalRow) -> &[u64; NR_ORDERS]) -> Vec<usize> {
    (0..NR_ORDERS)
        .filter(|&o| snap.intervals.iter().any(|r| pick(r)[o] > 0))
        .collect()
}

/// Write-outs per second by order; for a stream without write-outs but with requests (a
/// simulated one), requests per interval instead.
fn writeout_lines(snap: &Snapshot, w: usize) -> Vec<Line<'static>> {
    let requests_only = snap.kinds.writeouts == 0 && snap.kinds.allocs > 0;
    if requests_only {
        return request_lines(snap, w);
    }
    let mut lines = rate_lines(snap, w);
    if snap.kinds.swapins > 0 {
        // Full tier: folios read back (swap_read_folio), beside what was written.
        let mut spans = vec![Span::styled("read back (swap-in events):", DIM)];
        for o in (0..NR_ORDERS).filter(|&o| snap.swapins_by_order[o] > 0) {
            spans.push(Span::styled(
                format!(" {} ", folio_size(o as u8)),
                Style::new().fg(order_color(o)),
            ));
            spans.push(Span::raw(fmt::count(snap.swapins_by_order[o])));
        }
        lines.push(Line::from(spans));
    }
    lines
}

/// Write-outs per second by order.
fn rate_lines(snap: &Snapshot, w: usize) -> Vec<Line<'static>> {
    let orders: Vec<usize> = (0..NR_ORDERS)
        .filter(|&o| snap.writeouts_by_order[o] > 0)
        .collect();
    if orders.is_empty() {
        return vec![Line::from(Span::styled(
            "no write-outs yet: nothing has been swapped out since the start",
            WARN,
        ))];
    }
    let spark_w = w.saturating_sub(6 + 11 + 18).max(4);
    orders
        .iter()
        .map(|&o| {
            let rates: Vec<f64> = snap
                .intervals
                .iter()
                .map(|r| r.writeouts[o] as f64 / r.secs())
                .collect();
            let now = snap
                .last_complete()
                .map_or(0.0, |r| r.writeouts[o] as f64 / r.secs());
            Line::from(vec![
                Span::styled(format!("{:<6}", folio_size(o as u8)), TITLE),
                Span::styled(fmt::spark(&rates, spark_w), Style::new().fg(order_color(o))),
                Span::raw(format!(" {:>8}/s", fmt::rate(now))),
                Span::styled(
                    format!("  total {}", fmt::count(snap.writeouts_by_order[o])),
                    DIM,
                ),
            ])
        })
        .collect()
}

fn request_lines(snap: &Snapshot, w: usize) -> Vec<Line<'static>> {
    let spark_w = w.saturating_sub(6 + 11 + 18).max(4);
    let mut lines = vec![Line::from(Span::styled(
        "no write-outs in a simulated stream: swap requests per interval instead",
        DIM,
    ))];
    for o in (0..NR_ORDERS).filter(|&o| snap.requests[o] > 0) {
        let per: Vec<f64> = snap
            .intervals
            .iter()
            .map(|r| r.requests[o] as f64)
            .collect();
        let now = snap.last_complete().map_or(0, |r| r.requests[o]);
        lines.push(Line::from(vec![
            Span::styled(format!("{:<6}", folio_size(o as u8)), TITLE),
            Span::styled(fmt::spark(&per, spark_w), Style::new().fg(order_color(o))),
            Span::raw(format!(" {:>8}/iv", fmt::count(now))),
            Span::styled(format!("  total {}", fmt::count(snap.requests[o])), DIM),
        ]));
    }
    lines
}

/// A color per folio order (the same in every view).
pub fn order_color(order: usize) -> Color {
    match order {
        0 => Color::Cyan,
        1..=3 => Color::Green,
        4 => Color::Magenta,
        5..=8 => Color::Blue,
        _ => Color::Red,
    }
}

fn kernel_lines(snap: &Snapshot) -> Vec<Line<'static>> {
    let mut orders = orders_with(snap, |r| &r.swpout);
    for o in orders_with(snap, |r| &r.swpout_fallback) {
        if !orders.contains(&o) {
            orders.push(o);
        }
    }
    for o in 1..NR_ORDERS {
        if (snap.swpout[o] > 0 || snap.swpout_fallback[o] > 0) && !orders.contains(&o) {
            orders.push(o);
        }
    }
    orders.sort_unstable();
    if orders.is_empty() {
        let why = if snap.info.tier == "simulated" {
            "a simulated stream has no kernel counters; the models' fallback is under Models"
        } else if snap.intervals.iter().all(|r| r.pswpout == 0) && snap.kinds.samples == 0 {
            "no counter samples yet (they come once a second)"
        } else {
            "no large-folio swap-out yet (the per-size swpout/swpout_fallback counters are all 0)"
        };
        return vec![Line::from(Span::styled(why, WARN))];
    }
    let last = snap.last_complete();
    let mut lines = vec![Line::from(Span::styled(
        format!(
            "{:<6} {:^32}   {:^33}",
            "", "── last interval ──", "── since the start ──"
        ),
        DIM,
    ))];
    lines.push(Line::from(Span::styled(
        format!(
            "{:<6} {:>10} {:>11} {:>9}   {:>12} {:>10} {:>9}",
            "size", "swpout/s", "fallback/s", "share", "swpout", "fallback", "share"
        ),
        DIM,
    )));
    for o in orders {
        let (ok, fb, secs) = last.map_or((0, 0, 1.0), |r| {
            (r.swpout[o], r.swpout_fallback[o], r.secs())
        });
        let share = |ok: u64, fb: u64| fmt::pct(fmt::share(fb, ok + fb));
        let total_fb = snap.swpout_fallback[o];
        lines.push(Line::from(vec![
            Span::styled(format!("{:<6}", folio_size(o as u8)), TITLE),
            Span::raw(format!(
                " {:>10} {:>11} {:>9}   {:>12} ",
                fmt::rate(ok as f64 / secs),
                fmt::rate(fb as f64 / secs),
                share(ok, fb),
                fmt::count(snap.swpout[o]),
            )),
            Span::styled(
                format!(
                    "{:>10} {:>9}",
                    fmt::count(total_fb),
                    share(snap.swpout[o], total_fb)
                ),
                if total_fb > 0 { BAD } else { Style::new() },
            ),
        ]));
    }
    lines
}

fn device_lines(snap: &Snapshot, w: usize) -> Vec<Line<'static>> {
    if snap.devices.is_empty() {
        return vec![Line::from(Span::styled(
            "no swap device in the stream yet",
            WARN,
        ))];
    }
    let bar_w = w.saturating_sub(48).clamp(4, 40);
    snap.devices
        .iter()
        .map(|d| {
            let total_kb = d.slots * 4;
            let used_kb = d
                .used_kb
                .or(d.real_used.map(|u| u * 4))
                .or(d.model_used.as_ref().map(|(_, u)| u * 4))
                .unwrap_or(0);
            let frac = if total_kb == 0 {
                0.0
            } else {
                used_kb as f64 / total_kb as f64
            };
            let filled = ((frac * bar_w as f64).round() as usize).min(bar_w);
            let mut spans = vec![
                Span::styled(format!("{:<14}", fmt::fit(&d.path_or_type(), 14)), TITLE),
                Span::raw(format!("{:<5} ", fmt::fit(&d.kind, 5))),
                Span::styled("█".repeat(filled), Style::new().fg(Color::Blue)),
                Span::styled("░".repeat(bar_w - filled), DIM),
                Span::raw(format!(
                    " {:>6} / {:<6}",
                    fmt::kib(used_kb),
                    fmt::kib(total_kb)
                )),
            ];
            if let Some(r) = d.real_used {
                spans.push(Span::styled(format!(" real {} slots", fmt::count(r)), DIM));
            }
            if let Some((m, _)) = &d.model_used {
                spans.push(Span::styled(format!(" as {m} has it"), DIM));
            }
            if d.gone {
                spans.push(Span::styled(" (swapped off)", WARN));
            }
            Line::from(spans)
        })
        .collect()
}

fn health_lines(snap: &Snapshot, w: usize) -> Vec<Line<'static>> {
    let mut lines = Vec::new();
    let mut spans = vec![Span::raw("lost ")];
    spans.push(Span::styled(
        fmt::count(snap.lost),
        if snap.lost > 0 { BAD } else { Style::new() },
    ));
    let missed: u64 = snap.missed.iter().map(|(_, n)| n).sum();
    spans.push(Span::raw("  missed "));
    spans.push(Span::styled(
        if snap.missed.is_empty() {
            "-".to_string()
        } else {
            snap.missed
                .iter()
                .map(|(k, n)| format!("{k} {n}"))
                .collect::<Vec<_>>()
                .join(", ")
        },
        if missed > 0 { BAD } else { Style::new() },
    ));
    if snap.analysis_skipped > 0 {
        spans.push(Span::styled(
            format!(
                "  analysis skipped {} events (figures approximate)",
                fmt::count(snap.analysis_skipped)
            ),
            BAD,
        ));
    }
    lines.push(Line::from(spans));
    let k = &snap.kinds;
    let kinds: Vec<String> = [
        (k.writeouts, "write-outs"),
        (k.allocs, "requests"),
        (k.grants, "grants"),
        (k.frees, "frees"),
        (k.splits, "splits"),
        (k.swapins, "swap-ins"),
        (k.clusters, "cluster moves"),
        (k.markers, "markers"),
        (k.samples, "counter samples"),
    ]
    .iter()
    .filter(|(n, _)| *n > 0)
    .map(|(n, what)| format!("{} {what}", fmt::count(*n)))
    .collect();
    if !kinds.is_empty() {
        lines.push(Line::from(Span::styled(
            fmt::fit(&format!("events: {}", kinds.join(", ")), w),
            DIM,
        )));
    }
    let i = &snap.info;
    let hooks = if i.attached.is_empty() {
        "none (a recording without probes)".to_string()
    } else {
        i.attached.join(" ")
    };
    lines.push(Line::from(vec![
        Span::raw(format!("tier {}: ", i.tier)),
        Span::styled(fmt::fit(&hooks, w.saturating_sub(8 + i.tier.len())), DIM),
    ]));
    if i.tier == "tracepoint" {
        let why = i
            .missing
            .iter()
            .find(|p| !p.detail.is_empty())
            .map_or("not attached".to_string(), |p| p.detail.clone());
        lines.push(Line::from(Span::styled(
            fmt::fit(
                &format!("full tier (requests, frees, splits) unavailable: {why}"),
                w,
            ),
            WARN,
        )));
    }
    if let Some((ts, label)) = snap.markers.last() {
        lines.push(Line::from(Span::styled(
            format!(
                "last marker {:?} at {}  ({} markers)",
                label,
                fmt::clock(snap.rel_s(*ts)),
                snap.kinds.markers
            ),
            DIM,
        )));
    }
    lines
}
