//! Device map: one cell per cluster (or per group of clusters on big devices). The kernel's own
//! occupancy rebuilt from the stream on the full tier, or recent write-outs and their order on
//! the tracepoint tier, beside any model's map; a cursor inspects one cluster.

use ratatui::{
    Frame,
    layout::{Constraint, Layout, Rect},
    style::{Color, Modifier, Style},
    text::{Line, Span},
    widgets::Paragraph,
};

use crate::{
    alloc::{CLUSTER_SLOTS, ClusterCell, ClusterList},
    event::folio_size,
    sink::{
        analysis::group_cells,
        snapshot::{DeviceMap, HeatCell, Snapshot},
    },
    tui::{
        app::Ui,
        draw::{DIM, TITLE, WARN, block, reason},
        fmt,
    },
};

use super::overview::order_color;

/// One map that can be shown.
enum Pane<'a> {
    Cells(String, &'a [ClusterCell]),
    Heat(&'a [HeatCell]),
}

impl Pane<'_> {
    fn title(&self) -> String {
        match self {
            Pane::Cells(n, _) => n.clone(),
            Pane::Heat(_) => "recent write-outs (tracepoint tier)".into(),
        }
    }

    fn len(&self) -> usize {
        match self {
            Pane::Cells(_, c) => c.len(),
            Pane::Heat(h) => h.len(),
        }
    }
}

fn list_color(l: ClusterList) -> Color {
    match l {
        ClusterList::Free => Color::DarkGray,
        ClusterList::Nonfull => Color::Yellow,
        ClusterList::Frag => Color::Red,
        ClusterList::Full => Color::Blue,
        ClusterList::Discard => Color::Magenta,
        ClusterList::Partial => Color::Cyan,
        ClusterList::Other => Color::Gray,
    }
}

fn fill_glyph(used: u16) -> char {
    let f = f64::from(used) / CLUSTER_SLOTS as f64;
    if used == 0 {
        '·'
    } else if f < 0.25 {
        '░'
    } else if f < 0.5 {
        '▒'
    } else if f < 0.999 {
        '▓'
    } else {
        '█'
    }
}

pub fn render(f: &mut Frame, area: Rect, snap: &Snapshot, ui: &Ui) {
    let Some(dev) = snap
        .devices
        .get(ui.device.min(snap.devices.len().saturating_sub(1)))
    else {
        reason(
            f,
            area,
            "device map",
            vec![
                "no swap device in the stream yet: the map appears once a device is seen \
                  (swapon, or the first /proc/swaps sample)"
                    .into(),
            ],
        );
        return;
    };
    let Some(map) = snap.maps.iter().find(|m| m.swap_type == dev.swap_type) else {
        reason(f, area, "device map", vec!["no map for this device".into()]);
        return;
    };
    let panes = panes(map, snap.requests.iter().sum::<u64>() > 0);
    if panes.is_empty() {
        let why = if snap.info.tier == "tracepoint" {
            "no write-outs to this device yet".to_string()
        } else {
            "no map for this device: the stream has no requests or write-outs on it".to_string()
        };
        reason(f, area, "device map", vec![why]);
        return;
    }
    let [top, maps, legend, info] = Layout::vertical([
        Constraint::Length(1),
        Constraint::Min(3),
        Constraint::Length(1),
        Constraint::Length(2),
    ])
    .areas(area);
    let left = &panes[0];
    let right = (panes.len() > 1).then(|| &panes[1 + ui.model % (panes.len() - 1)]);
    f.render_widget(
        Paragraph::new(Line::from(vec![
            Span::styled(
                format!("dev {} {} ", dev.swap_type, dev.path_or_type()),
                TITLE,
            ),
            Span::raw(format!(
                "{} clusters of {} slots, {} slots",
                fmt::count(left.len() as u64),
                CLUSTER_SLOTS,
                fmt::count(dev.slots)
            )),
            Span::styled(
                if snap.devices.len() > 1 {
                    "  d: next device"
                } else {
                    ""
                },
                DIM,
            ),
            Span::styled(
                match (dev.gone, map.peak) {
                    (true, Some((ts, _))) => format!(
                        "  swapped off: shown at its peak occupancy, {}",
                        fmt::clock(snap.rel_s(ts))
                    ),
                    (true, None) => "  swapped off".to_string(),
                    _ => String::new(),
                },
                WARN,
            ),
        ])),
        top,
    );
    let areas: Vec<Rect> = if right.is_some() && maps.width >= 40 {
        Layout::horizontal([Constraint::Percentage(50), Constraint::Percentage(50)])
            .split(maps)
            .to_vec()
    } else {
        vec![maps]
    };
    let cursor = ui.cursor.min(left.len().saturating_sub(1));
    let mut shown: Vec<&Pane> = vec![left];
    if let Some(r) = right
        && areas.len() > 1
    {
        shown.push(r);
    }
    for (pane, a) in shown.iter().zip(&areas) {
        draw_pane(f, *a, pane, cursor);
    }
    f.render_widget(Paragraph::new(legend_line(left)), legend);
    let mut lines = vec![inspect(left, cursor)];
    if let Some(r) = right {
        lines.push(inspect(r, cursor));
    }
    if right.is_some() && info.width >= 100 {
        lines[0].spans.push(Span::styled("   [ ] other model", DIM));
    }
    f.render_widget(Paragraph::new(lines), info);
}

/// The maps to show: the real one (or the heat map), then the models' — only when the stream
/// has requests for them to replay.
fn panes(m: &DeviceMap, models: bool) -> Vec<Pane<'_>> {
    let mut v = Vec::new();
    if let Some(r) = &m.real {
        v.push(Pane::Cells(
            "real (rebuilt from the stream)".into(),
            r.as_slice(),
        ));
    } else if let Some(h) = &m.heat
        && h.iter().any(|c| c.total > 0)
    {
        v.push(Pane::Heat(h.as_slice()));
    }
    if models {
        for (name, cells) in &m.models {
            v.push(Pane::Cells(name.clone(), cells.as_slice()));
        }
    }
    v
}

fn draw_pane(f: &mut Frame, area: Rect, pane: &Pane, cursor: usize) {
    let title = pane.title();
    let blk = block(&title);
    let inner = blk.inner(area);
    f.render_widget(blk, area);
    let cap = usize::from(inner.width) * usize::from(inner.height);
    if cap == 0 {
        return;
    }
    let n = pane.len();
    let per = n.div_ceil(cap).max(1);
    let (w, h) = (usize::from(inner.width), usize::from(inner.height));
    let (cw, ch) = if per == 1 { cell_size(n, w, h) } else { (1, 1) };
    let per_row = (w / cw).max(1);
    let cur = cursor / per;
    let cells: Vec<(char, Style)> = match pane {
        Pane::Cells(_, c) => group_cells(c, per)
            .iter()
            .map(|c| (fill_glyph(c.used), Style::new().fg(list_color(c.list))))
            .collect(),
        Pane::Heat(h) => {
            let grouped: Vec<HeatCell> = h
                .chunks(per)
                .map(|ch| HeatCell {
                    recent: ch.iter().map(|c| c.recent).sum(),
                    total: ch.iter().map(|c| c.total).sum(),
                    last_order: ch.iter().rev().find_map(|c| c.last_order),
                })
                .collect();
            let max = grouped.iter().map(|c| c.recent).fold(0.0f32, f32::max);
            grouped
                .iter()
                .map(|c| {
                    let color = c
                        .last_order
                        .map_or(Color::DarkGray, |o| order_color(usize::from(o)));
                    let g = if c.total == 0 {
                        '·'
                    } else if c.recent <= 0.01 || max <= 0.0 {
                        '░'
                    } else if c.recent / max < 0.33 {
                        '▒'
                    } else if c.recent / max < 0.66 {
                        '▓'
                    } else {
                        '█'
                    };
                    (g, Style::new().fg(color))
                })
                .collect()
        }
    };
    // A cell of `cw` × `ch` characters: its glyph, then a blank column and (from two rows on)
    // a blank row between cells.
    let glyph_rows = if ch >= 2 { ch - 1 } else { 1 };
    let lines: Vec<Line> = cells
        .chunks(per_row)
        .enumerate()
        .flat_map(|(row, chunk)| {
            (0..ch).map(move |line| {
                if line >= glyph_rows {
                    return Line::default();
                }
                Line::from(
                    chunk
                        .iter()
                        .enumerate()
                        .map(|(col, (g, st))| {
                            let st = if row * per_row + col == cur {
                                st.add_modifier(Modifier::REVERSED)
                            } else {
                                *st
                            };
                            let text: String = if cw >= 3 {
                                std::iter::repeat_n(*g, cw - 1).chain([' ']).collect()
                            } else {
                                std::iter::repeat_n(*g, cw).collect()
                            };
                            Span::styled(text, st)
                        })
                        .collect::<Vec<_>>(),
                )
            })
        })
        .collect();
    f.render_widget(Paragraph::new(lines), inner);
}

/// The size of one cluster's cell when every cluster gets its own: the largest that lets all
/// `n` fit in `w` × `h`, about twice as wide as tall (a terminal cell is about twice as tall as
/// wide), at most 17 × 8 (a 64 MiB device used 4 of 40 rows at 160×48 with one-row cells).
fn cell_size(n: usize, w: usize, h: usize) -> (usize, usize) {
    let fits = |cw: usize, ch: usize| {
        let cols = w / cw;
        cols > 0 && n.div_ceil(cols) * ch <= h
    };
    let mut best = (1, 1);
    for ch in 1..=8 {
        for cw in (1..=(2 * ch + 1).min(17)).rev() {
            if fits(cw, ch) {
                if cw * ch > best.0 * best.1 {
                    best = (cw, ch);
                }
                break;
            }
        }
    }
    best
}

fn legend_line(left: &Pane) -> Line<'static> {
    let mut spans = vec![Span::styled("fill ·░▒▓█  ", DIM)];
    match left {
        Pane::Heat(_) => {
            spans.push(Span::styled(
                "brightness: recent write-outs; color: order ",
                DIM,
            ));
            for (o, name) in [(0usize, "4K"), (4, "64K"), (5, "128K+"), (9, "2M")] {
                spans.push(Span::styled(
                    format!("■{name} "),
                    Style::new().fg(order_color(o)),
                ));
            }
        }
        Pane::Cells(..) => {
            for l in [
                ClusterList::Free,
                ClusterList::Nonfull,
                ClusterList::Frag,
                ClusterList::Full,
                ClusterList::Discard,
                ClusterList::Partial,
                ClusterList::Other,
            ] {
                spans.push(Span::styled(
                    format!("■{} ", l.as_str()),
                    Style::new().fg(list_color(l)),
                ));
            }
        }
    }
    Line::from(spans)
}

fn inspect(pane: &Pane, cursor: usize) -> Line<'static> {
    let start = cursor as u64 * CLUSTER_SLOTS;
    let head = Span::styled(
        format!(
            "cluster {} (slots {}–{}) ",
            cursor,
            fmt::count(start),
            fmt::count(start + CLUSTER_SLOTS - 1)
        ),
        TITLE,
    );
    let body = match pane {
        Pane::Cells(name, cells) => match cells.get(cursor) {
            Some(c) => {
                let short = name.split(' ').next().unwrap_or(name);
                let mut s = format!(
                    "{}: {}/{} used, {}",
                    fmt::fit(short, 16),
                    c.used,
                    CLUSTER_SLOTS,
                    c.list.as_str()
                );
                if let Some(o) = c.order {
                    s.push_str(&format!(", {}", folio_size(o)));
                }
                if let Some(l) = c.last {
                    s.push_str(&format!(", last alloc +{l}"));
                }
                s
            }
            None => format!("{name}: -"),
        },
        Pane::Heat(h) => match h.get(cursor) {
            Some(c) => format!(
                "write-outs: {} in all, {:.0} recent{}",
                c.total,
                c.recent,
                c.last_order
                    .map_or(String::new(), |o| format!(", last {}", folio_size(o)))
            ),
            None => "-".into(),
        },
    };
    Line::from(vec![head, Span::raw(body)])
}
