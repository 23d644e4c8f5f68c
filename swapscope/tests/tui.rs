//! End to end in a real terminal (tmux): `swapscope replay` on a simulate recording; every
//! view, pause, speed, seek, help and quit by key, checked on the captured screen.

mod common;

use std::path::PathBuf;

use common::{Tmux, wait_file};

const EXE: &str = env!("CARGO_BIN_EXE_swapscope");

#[test]
fn replay_in_a_terminal_through_every_view() {
    if !Tmux::available() {
        eprintln!("SKIPPING: tmux is not installed (cargo xtask test installs it)");
        return;
    }
    let data = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/data/sim-thp-fragment.swsc");
    let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("tui-replay");
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap_or_else(|e| panic!("{e}"));
    let rc = dir.join("rc");
    // 55,012 events 1 µs apart: at 0.005× the replay takes 11 s, time enough to look around.
    let t = Tmux::start(
        &format!(
            "{EXE} replay {} --speed 0.005; echo $? > {}; sleep 30",
            data.display(),
            rc.display()
        ),
        120,
        36,
    );
    let s = t.wait_for("swap requests per interval", 20);
    assert!(
        s.contains("tier simulated") && s.contains("1 Overview"),
        "{s}"
    );
    // Pause, and the status line says so.
    t.keys(&["p"]);
    t.wait_for("⏸ paused", 5);
    // Every view by number and by Tab.
    t.keys(&["2"]);
    t.wait_for_all(&["clusters of 512 slots", "linux-6.10", "fill ·░▒▓█"], 5);
    t.keys(&["Tab"]);
    t.wait_for_all(&["64K fb", "linux-6.18", "same slot"], 5);
    t.keys(&["Tab"]);
    t.wait_for("synthetic timestamps", 5);
    t.keys(&["5"]);
    t.wait_for("events: all", 5);
    // Kind filter: all → writeout → alloc.
    t.keys(&["f", "f"]);
    t.wait_for_all(&["events: alloc", "(simulated)"], 5);
    t.keys(&["c"]);
    t.keys(&["1"]);
    t.wait_for("write-outs per second", 5);
    // Speed: resume, twice as fast.
    t.keys(&["p", "+"]);
    t.wait_for("▶ 0.01×", 5);
    // Seek forward one interval (10 ms of stream time = 10,000 events), then back.
    t.keys(&["Right"]);
    std::thread::sleep(std::time::Duration::from_millis(800));
    t.keys(&["p"]);
    let before = t.wait_for("⏸ paused", 5);
    t.keys(&["Left", "Left", "Left"]);
    std::thread::sleep(std::time::Duration::from_millis(1500));
    let after = t.capture();
    let pos = |s: &str| {
        s.lines()
            .find(|l| l.contains("⏸ paused"))
            .and_then(|l| l.split_whitespace().nth(2).map(str::to_string))
    };
    assert_ne!(pos(&before), pos(&after), "seeking back moved the position");
    // Help, then any key closes it.
    t.keys(&["?"]);
    t.wait_for("seek one interval back / forward", 5);
    t.keys(&["x"]);
    t.keys(&["q"]);
    assert_eq!(
        wait_file(&rc, 20).trim(),
        "0",
        "swapscope replay exit status"
    );
}

#[test]
fn replay_exits_when_its_terminal_goes_away() {
    if !Tmux::available() {
        eprintln!("SKIPPING: tmux is not installed (cargo xtask test installs it)");
        return;
    }
    let data = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/data/sim-thp-fragment.swsc");
    let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("tui-hangup");
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap_or_else(|e| panic!("{e}"));
    let pid = dir.join("pid");
    let t = Tmux::start(
        &format!(
            "sh -c 'echo $$ > {}; exec {EXE} replay {} --speed 0.001'",
            pid.display(),
            data.display()
        ),
        100,
        30,
    );
    t.wait_for("1 Overview", 20);
    let pid = wait_file(&pid, 5).trim().to_string();
    // The terminal goes away (the tmux server is killed): the replay must end, not spin.
    drop(t);
    let gone = (0..100).any(|_| {
        std::thread::sleep(std::time::Duration::from_millis(100));
        std::fs::read_to_string(format!("/proc/{pid}/stat"))
            .map_or(true, |s| s.split_whitespace().nth(2) == Some("Z"))
    });
    if !gone {
        let _ = std::process::Command::new("kill")
            .args(["-9", &pid])
            .status();
    }
    assert!(
        gone,
        "swapscope replay (pid {pid}) kept running after its terminal closed"
    );
}
