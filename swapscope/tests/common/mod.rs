//! Helpers shared by the integration tests.

use std::{
    path::Path,
    process::Command,
    sync::atomic::{AtomicU32, Ordering},
    time::{Duration, Instant},
};

static N: AtomicU32 = AtomicU32::new(0);

/// A tmux server of the test's own (its own socket), killed when dropped: a real terminal for
/// the TUI, never the user's tmux.
pub struct Tmux {
    socket: String,
}

impl Tmux {
    /// Whether tmux is installed; under CI it must be (`cargo xtask test` installs it).
    pub fn available() -> bool {
        let ok = Command::new("tmux")
            .arg("-V")
            .output()
            .is_ok_and(|o| o.status.success());
        if !ok && std::env::var("CI").is_ok_and(|v| v == "true" || v == "1") {
            panic!("tmux is not installed; `cargo xtask test` installs it (apt-get install tmux)");
        }
        ok
    }

    /// Starts `sh -c command` in a detached session of `w`×`h`.
    pub fn start(command: &str, w: u16, h: u16) -> Tmux {
        let socket = format!(
            "swapscope-test-{}-{}",
            std::process::id(),
            N.fetch_add(1, Ordering::SeqCst)
        );
        let t = Tmux { socket };
        let st = t
            .cmd()
            .args([
                "new-session",
                "-d",
                "-s",
                "t",
                "-x",
                &w.to_string(),
                "-y",
                &h.to_string(),
            ])
            .arg(command)
            .status()
            .unwrap_or_else(|e| panic!("tmux new-session: {e}"));
        assert!(st.success(), "tmux new-session failed");
        t
    }

    fn cmd(&self) -> Command {
        let mut c = Command::new("tmux");
        c.args(["-L", &self.socket, "-f", "/dev/null"]);
        c
    }

    /// Types keys (tmux key names: `Tab`, `Left`, `q`, ...).
    pub fn keys(&self, keys: &[&str]) {
        let st = self
            .cmd()
            .args(["send-keys", "-t", "t"])
            .args(keys)
            .status()
            .unwrap_or_else(|e| panic!("tmux send-keys: {e}"));
        assert!(st.success(), "tmux send-keys {keys:?} failed");
    }

    /// The screen, as text.
    pub fn capture(&self) -> String {
        let out = self
            .cmd()
            .args(["capture-pane", "-p", "-t", "t"])
            .output()
            .unwrap_or_else(|e| panic!("tmux capture-pane: {e}"));
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// Waits until the screen shows `text` (panics with the screen after `secs`).
    pub fn wait_for(&self, text: &str, secs: u64) -> String {
        self.wait_for_all(&[text], secs)
    }

    /// Waits until the screen shows every one of `texts` at once (a frame may be captured while
    /// it is being drawn, so one string alone can show before the rest).
    pub fn wait_for_all(&self, texts: &[&str], secs: u64) -> String {
        let end = Instant::now() + Duration::from_secs(secs);
        loop {
            let s = self.capture();
            if texts.iter().all(|t| s.contains(t)) {
                return s;
            }
            if Instant::now() > end {
                panic!("waited {secs} s for {texts:?}; the screen:\n{s}");
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

impl Drop for Tmux {
    fn drop(&mut self) {
        let _ = self.cmd().arg("kill-server").status();
    }
}

/// Waits for a file to exist (a command's exit status written by the tmux shell).
pub fn wait_file(p: &Path, secs: u64) -> String {
    let end = Instant::now() + Duration::from_secs(secs);
    loop {
        if let Ok(s) = std::fs::read_to_string(p)
            && !s.is_empty()
        {
            return s;
        }
        if Instant::now() > end {
            panic!("waited {secs} s for {}", p.display());
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}
