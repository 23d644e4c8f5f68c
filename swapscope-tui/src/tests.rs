//! Snapshot tests of every view at 80×24 and 160×48, on three recordings under tests/data: a
//! tracepoint-tier host recording, a full-tier VM recording with request timing (Debian 7.3, the
//! thp-fragment scenario, format 1.1) and a simulate recording. Each is read up to a fixed share of its
//! events, so the maps are mid-run, not after the swapoff.

use super::{
    app::{Mode, Tab, Ui},
    draw::Status,
    fmt, render_text,
};
use crate::sink::snapshot::Snapshot;
/// An analysis snapshot of a recording part-way through, with the built-in models installed.
pub(crate) fn snapshot_of(name: &str, share: f64) -> swapscope_core::sink::snapshot::Snapshot {
    swapscope_models::install();
    swapscope_core::testkit::snapshot_of(name, share)
}

fn status(s: &Snapshot) -> Status {
    Status {
        text: format!(
            "⏸ paused {} / {}",
            fmt::clock(s.duration_s()),
            fmt::clock(s.duration_s())
        ),
        log: Vec::new(),
    }
}

fn all_views(recording: &str, share: f64, tag: &str) {
    let snap = snapshot_of(recording, share);
    let st = status(&snap);
    for (w, h) in [(80u16, 24u16), (160, 48)] {
        for tab in Tab::ALL {
            let mut ui = Ui::new(Mode::Replay);
            ui.tab = tab;
            let text = render_text(&snap, &ui, &st, w, h);
            let name = format!(
                "{tag}-{}-{w}x{h}",
                tab.title().to_lowercase().replace(' ', "-")
            );
            insta::assert_snapshot!(name, text);
        }
    }
}

#[test]
fn views_of_a_tracepoint_tier_host_recording() {
    all_views("host-6.18-tracepoint.swsc", 0.6, "tracepoint");
}

#[test]
fn views_of_a_full_tier_vm_recording() {
    all_views("vm-7.3-full-timed.swsc", 0.55, "full");
}

#[test]
fn views_of_a_simulate_recording() {
    all_views("sim-thp-fragment.swsc", 0.5, "simulate");
}

/// A format 1.3 recording: the Overview shows the folios read back beside those written, and
/// the device map's real clusters are on the kernel's own lists (not `partial`).
#[test]
fn views_of_a_recording_with_swap_ins_and_cluster_moves() {
    let snap = snapshot_of("vm-7.3-full-swapin.swsc", 0.5);
    assert!(snap.kinds.swapins > 0 && snap.kinds.clusters > 0);
    let st = status(&snap);
    for tab in [Tab::Overview, Tab::DeviceMap] {
        let mut ui = Ui::new(Mode::Replay);
        ui.tab = tab;
        let text = render_text(&snap, &ui, &st, 160, 48);
        if tab == Tab::Overview {
            assert!(text.contains("read back (swap-in events):"), "{text}");
        } else {
            assert!(
                text.contains("real: ") && !text.contains(", partial,"),
                "{text}"
            );
        }
        insta::assert_snapshot!(
            format!(
                "swapin-{}-160x48",
                tab.title().to_lowercase().replace(' ', "-")
            ),
            text
        );
    }
}

#[test]
fn the_cursor_inspects_a_cluster_and_the_help_lists_the_keys() {
    use ratatui::crossterm::event::{KeyCode, KeyEvent, KeyModifiers};
    let snap = snapshot_of("vm-7.3-full-timed.swsc", 0.55);
    let st = status(&snap);
    let mut ui = Ui::new(Mode::Replay);
    let key = |c| KeyEvent::new(c, KeyModifiers::NONE);
    ui.key(key(KeyCode::Char('2')), &snap);
    for _ in 0..5 {
        ui.key(key(KeyCode::Char('l')), &snap);
    }
    ui.key(key(KeyCode::Char(']')), &snap);
    let text = render_text(&snap, &ui, &st, 160, 48);
    assert!(text.contains("cluster 5 (slots 2,560–3,071)"), "{text}");
    assert!(
        text.contains("linux-6.12"),
        "the next model is beside the real map:\n{text}"
    );
    ui.key(key(KeyCode::Char('?')), &snap);
    let help = render_text(&snap, &ui, &st, 160, 48);
    assert!(help.contains("seek one interval back / forward"), "{help}");
    ui.key(key(KeyCode::Esc), &snap);
    assert!(!ui.help);
}

#[test]
fn events_filters_by_kind_order_and_pid() {
    use ratatui::crossterm::event::{KeyCode, KeyEvent, KeyModifiers};
    let snap = snapshot_of("host-6.18-tracepoint.swsc", 0.6);
    let st = status(&snap);
    let mut ui = Ui::new(Mode::Replay);
    let key = |c| KeyEvent::new(c, KeyModifiers::NONE);
    ui.key(key(KeyCode::Char('5')), &snap);
    // Order filter: 0, 1, 2, 3, 4 → 64K write-outs only.
    for _ in 0..5 {
        ui.key(key(KeyCode::Char('o')), &snap);
    }
    let text = render_text(&snap, &ui, &st, 120, 30);
    let rows: Vec<&str> = text.lines().filter(|l| l.contains("writeout")).collect();
    assert!(!rows.is_empty(), "{text}");
    assert!(rows.iter().all(|l| l.contains("64K")), "{text}");
    // A pid nobody has.
    ui.key(key(KeyCode::Char('/')), &snap);
    for c in "999999".chars() {
        ui.key(key(KeyCode::Char(c)), &snap);
    }
    ui.key(key(KeyCode::Enter), &snap);
    let text = render_text(&snap, &ui, &st, 120, 30);
    assert!(text.contains("no event passes the filters"), "{text}");
    ui.key(key(KeyCode::Char('c')), &snap);
    let text = render_text(&snap, &ui, &st, 120, 30);
    assert!(text.contains("writeout"), "{text}");
}

/// Prints every view of the full-tier VM recording at 100×32 (for docs/tui.md):
/// `cargo test -p swapscope --lib tui::tests::print_views_for_the_docs -- --ignored --nocapture`.
#[test]
#[ignore = "prints the captures docs/tui.md shows"]
fn print_views_for_the_docs() {
    for (rec, share) in [
        ("vm-7.3-full-timed.swsc", 0.55),
        ("host-6.18-tracepoint.swsc", 0.6),
    ] {
        let snap = snapshot_of(rec, share);
        let st = status(&snap);
        for tab in Tab::ALL {
            let mut ui = Ui::new(Mode::Replay);
            ui.tab = tab;
            println!("### {rec} — {}\n```", tab.title());
            print!("{}", render_text(&snap, &ui, &st, 100, 32));
            println!("```\n");
        }
    }
}

/// At the end of a recording whose device was swapped off, the Models view's occupancy columns
/// are those of the peak, said as such; they read all zeros (hostile #21 small things).
#[test]
fn models_at_the_end_of_a_swapped_off_recording_show_the_peak() {
    let snap = snapshot_of("vm-7.3-full-timed.swsc", 1.0);
    assert!(
        snap.devices.iter().all(|d| d.gone),
        "the recording ends with its device swapped off"
    );
    let peak = snap
        .models_peak
        .as_ref()
        .expect("the peak's models are kept");
    for m in peak.models.iter().chain(&peak.real) {
        let c = &m.clusters;
        assert!(
            m.used_slots > 0 && c.free + c.nonfull + c.frag + c.full > 0,
            "{}: {} used, clusters {c:?}",
            m.name,
            m.used_slots
        );
    }
    let mut ui = Ui::new(Mode::Replay);
    ui.tab = Tab::Models;
    let text = render_text(&snap, &ui, &status(&snap), 160, 48);
    assert!(text.contains("at peak occupancy"), "{text}");
}
