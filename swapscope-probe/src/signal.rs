//! Ctrl-C / SIGTERM handling: handlers only set a flag; long-running loops poll
//! [`stop_requested`] and return normally, so every RAII guard runs its clean-up.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

static STOP: AtomicBool = AtomicBool::new(false);
static STOPS: AtomicU64 = AtomicU64::new(0);
static MARKERS: AtomicU64 = AtomicU64::new(0);

extern "C" fn on_signal(_sig: libc::c_int) {
    STOP.store(true, Ordering::SeqCst);
    STOPS.fetch_add(1, Ordering::SeqCst);
}

/// Installs the handlers for SIGINT, SIGTERM and SIGHUP.
pub fn install() {
    for sig in [libc::SIGINT, libc::SIGTERM, libc::SIGHUP] {
        // SAFETY: `on_signal` is async-signal-safe (a single atomic store) and has the signature
        // a plain handler needs; the zeroed sigaction is a valid "no flags, empty mask" value.
        unsafe {
            let mut sa: libc::sigaction = std::mem::zeroed();
            sa.sa_sigaction = on_signal as *const () as usize;
            libc::sigemptyset(&mut sa.sa_mask);
            libc::sigaction(sig, &sa, std::ptr::null_mut());
        }
    }
}

extern "C" fn on_marker(_sig: libc::c_int) {
    MARKERS.fetch_add(1, Ordering::SeqCst);
}

/// Installs a SIGUSR1 handler that counts marker requests (see [`take_marker_requests`]).
pub fn install_marker() {
    // SAFETY: as in `install`: the handler is one atomic add.
    unsafe {
        let mut sa: libc::sigaction = std::mem::zeroed();
        sa.sa_sigaction = on_marker as *const () as usize;
        sa.sa_flags = libc::SA_RESTART;
        libc::sigemptyset(&mut sa.sa_mask);
        libc::sigaction(libc::SIGUSR1, &sa, std::ptr::null_mut());
    }
}

/// SIGUSR1s received since the last call.
pub fn take_marker_requests() -> u64 {
    MARKERS.swap(0, Ordering::SeqCst)
}

/// Whether a stop signal arrived.
pub fn stop_requested() -> bool {
    STOP.load(Ordering::SeqCst)
}

/// Waits until a stop signal arrives (after [`install`]), looking every 50 ms.
pub fn wait_for_stop() {
    while !stop_requested() {
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
}

/// Stop signals received so far (a second one can mean "now").
pub fn stop_signals() -> u64 {
    STOPS.load(Ordering::SeqCst)
}

/// Requests a stop from inside the program (e.g. a child command exited).
pub fn request_stop() {
    STOP.store(true, Ordering::SeqCst);
}

/// Restores SIGPIPE's default action (Rust starts with it ignored), so a command whose output
/// goes to a closed pipe (`report | head`) ends quietly with the conventional status (141 in a
/// shell) instead of failing a write. Only for commands that have nothing to clean up when
/// killed.
pub fn default_sigpipe() {
    // SAFETY: signal(2) with a valid signal number and SIG_DFL; nothing else in the process
    // relies on SIGPIPE being ignored for the commands that call this.
    unsafe { libc::signal(libc::SIGPIPE, libc::SIG_DFL) };
}
