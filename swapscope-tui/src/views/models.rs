//! Models: the shadow allocators side by side — fallback per order, free-space fragmentation,
//! largest free aligned run, cluster lists, metadata — with a sparkline of each model's fallback
//! over the intervals, and the same-slot fidelity against the kernel when the stream carries its
//! answers.

use ratatui::{
    Frame,
    layout::{Constraint, Layout, Rect},
    style::{Color, Modifier, Style},
    text::{Line, Span},
    widgets::{Cell, Paragraph, Row, Table},
};

use crate::{
    engine::ModelReport,
    event::folio_size,
    sink::snapshot::Snapshot,
    tui::{
        app::Ui,
        draw::{BAD, DIM, TITLE, block, reason},
        fmt,
    },
};

/// The large order with the most requests (the one the comparison is about).
fn main_order(snap: &Snapshot) -> Option<usize> {
    let mut best: Option<(usize, u64)> = None;
    for m in snap.models.iter().chain(snap.real.iter()) {
        for (&o, n) in &m.requests_by_order {
            let o = usize::from(o);
            if o > 0 && best.is_none_or(|(_, b)| *n > b) {
                best = Some((o, *n));
            }
        }
    }
    best.map(|(o, _)| o)
}

fn rate(m: &ModelReport, order: usize) -> Option<f64> {
    u8::try_from(order)
        .ok()
        .and_then(|o| m.fallback_rate_by_order.get(&o).copied())
}

pub fn render(f: &mut Frame, area: Rect, snap: &Snapshot, ui: &Ui) {
    if snap.models.is_empty() {
        reason(
            f,
            area,
            "models",
            vec!["no models selected (--models)".into()],
        );
        return;
    }
    let requests: u64 = snap.requests.iter().sum();
    if requests == 0 {
        let mut why = vec![if snap.info.tier == "tracepoint" {
            "no allocation requests in this stream: the tracepoint tier sees write-outs only, \
             not the requests and frees the models replay. Use a host (or VM) that allows \
             fentry/fexit, replay a full-tier recording, or `swapscope simulate`."
                .to_string()
        } else {
            "no allocation requests yet".to_string()
        }];
        let fb: u64 = snap.swpout_fallback.iter().sum();
        let ok: u64 = snap.swpout.iter().skip(1).sum();
        if ok + fb > 0 {
            why.push(format!(
                "The kernel's own large-folio fallback so far: {} of {} swap-outs ({}), from its \
                 counters (Overview).",
                fmt::count(fb),
                fmt::count(ok + fb),
                fmt::pct(fmt::share(fb, ok + fb))
            ));
        }
        reason(f, area, "models", why);
        return;
    }
    let main = main_order(snap);
    // Every device swapped off: the occupancy columns of the peak (now's would all read 0),
    // the counts of the whole stream.
    let at_peak = |m: &ModelReport| {
        let mut m = m.clone();
        if let Some(p) = &snap.models_peak
            && let Some(at) = p.models.iter().chain(&p.real).find(|x| x.name == m.name)
        {
            m.take_state_of(at);
        }
        m
    };
    let owned: Vec<ModelReport> = snap.models.iter().chain(&snap.real).map(at_peak).collect();
    let rows: Vec<&ModelReport> = owned.iter().collect();
    let sel = ui.model_row.min(rows.len().saturating_sub(1));
    let table_h = rows.len() as u16 + 3;
    let [top, bottom] =
        Layout::vertical([Constraint::Length(table_h), Constraint::Min(0)]).areas(area);
    let main_name = main.map_or("-".to_string(), |o| folio_size(o as u8));
    let wide = area.width >= 100;
    let mut head = vec![
        Cell::from("model"),
        Cell::from(format!("{main_name} fb")),
        Cell::from("4K fb"),
        Cell::from(format!("frag{main_name}")),
        Cell::from("max run"),
        Cell::from("free/nf/frag/full"),
    ];
    if wide {
        head.push(Cell::from("metadata"));
    }
    head.push(Cell::from("same slot"));
    let header = Row::new(head).style(Style::new().add_modifier(Modifier::BOLD));
    let body: Vec<Row> = rows
        .iter()
        .enumerate()
        .map(|(i, m)| {
            let fb = main.and_then(|o| rate(m, o));
            let frag = main
                .and_then(|o| u8::try_from(o).ok())
                .and_then(|o| m.fragmentation_by_order.get(&o).copied());
            let c = &m.clusters;
            let st = if i == sel {
                Style::new().add_modifier(Modifier::REVERSED)
            } else if m.name == "real" {
                Style::new().fg(Color::Cyan)
            } else {
                Style::new()
            };
            let mut cells = vec![
                Cell::from(m.name.clone()),
                Cell::from(Span::styled(
                    fmt::pct(fb),
                    if fb.is_some_and(|r| r > 0.01) {
                        BAD
                    } else {
                        Style::new()
                    },
                )),
                Cell::from(fmt::pct(rate(m, 0))),
                Cell::from(fmt::pct(frag)),
                Cell::from(fmt::count(m.largest_free_run)),
                Cell::from(format!("{}/{}/{}/{}", c.free, c.nonfull, c.frag, c.full)),
            ];
            if wide {
                cells.push(Cell::from(fmt::count(m.metadata_bytes)));
            }
            cells.push(Cell::from(
                m.same_offset_rate
                    .map_or("-".to_string(), |r| fmt::pct(Some(r))),
            ));
            Row::new(cells).style(st)
        })
        .collect();
    let mut widths = vec![
        Constraint::Length(13),
        Constraint::Length(8),
        Constraint::Length(7),
        Constraint::Length(8),
        Constraint::Length(8),
        Constraint::Length(17),
    ];
    if wide {
        widths.push(Constraint::Length(10));
    }
    widths.push(Constraint::Min(9));
    f.render_widget(
        Table::new(body, widths).header(header).block(block(&match (
            snap.models_peak.as_ref().map(|p| p.ts),
            wide,
        ) {
            (None, true) => {
                "models: fallback share, free-space fragmentation, clusters by list, now"
                    .to_string()
            }
            (None, false) => "models now".to_string(),
            (Some(ts), true) => format!(
                "models: fallback share; fragmentation and clusters at peak occupancy, {} \
                     (every device swapped off since)",
                fmt::clock(snap.rel_s(ts))
            ),
            (Some(ts), false) => format!("models at peak, {}", fmt::clock(snap.rel_s(ts))),
        })),
        top,
    );
    trends(f, bottom, snap, &rows, main, sel);
}

fn trends(
    f: &mut Frame,
    area: Rect,
    snap: &Snapshot,
    rows: &[&ModelReport],
    main: Option<usize>,
    sel: usize,
) {
    let Some(o) = main else {
        reason(
            f,
            area,
            "fallback per interval",
            vec!["only order-0 requests so far: there is no large-folio fallback to follow".into()],
        );
        return;
    };
    let w = area.width.saturating_sub(2) as usize;
    let spark_w = w.saturating_sub(14 + 9 + 2).max(4);
    let mut lines = vec![Line::from(Span::styled(
        format!(
            "{} fallback share per interval ({} s each; full bar = 100 %), newest on the right",
            folio_size(o as u8),
            snap.info.interval_ns as f64 / 1e9
        ),
        DIM,
    ))];
    for (i, m) in rows.iter().enumerate() {
        let series: Vec<f64> = snap
            .intervals
            .iter()
            .map(|r| {
                let (req, fail) = if m.name == "real" {
                    (r.requests[o], r.failures[o])
                } else {
                    let idx = snap.models.iter().position(|x| x.name == m.name);
                    idx.and_then(|k| {
                        Some((r.model_requests.get(k)?[o], r.model_failures.get(k)?[o]))
                    })
                    .unwrap_or((0, 0))
                };
                if req == 0 {
                    0.0
                } else {
                    fail as f64 / req as f64
                }
            })
            .collect();
        let last = series
            .iter()
            .rev()
            .copied()
            .find(|v| *v > 0.0)
            .unwrap_or(0.0);
        let st = if i == sel { TITLE } else { Style::new() };
        lines.push(Line::from(vec![
            Span::styled(format!("{:<14}", fmt::fit(&m.name, 14)), st),
            Span::styled(
                fmt::spark_to(&series, spark_w, 1.0),
                Style::new().fg(Color::Red),
            ),
            Span::raw(format!(" {:>8}", fmt::pct(Some(last)))),
        ]));
    }
    f.render_widget(
        Paragraph::new(lines).block(block("fallback per interval")),
        area,
    );
}
