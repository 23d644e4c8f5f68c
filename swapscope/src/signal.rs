//! Ctrl-C / SIGTERM handling: handlers only set a flag; long-running loops poll
//! [`stop_requested`] and return normally, so every RAII guard runs its clean-up.

use std::sync::atomic::{AtomicBool, Ordering};

static STOP: AtomicBool = AtomicBool::new(false);

extern "C" fn on_signal(_sig: libc::c_int) {
    STOP.store(true, Ordering::SeqCst);
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

/// Whether a stop signal arrived.
pub fn stop_requested() -> bool {
    STOP.load(Ordering::SeqCst)
}

/// Requests a stop from inside the program (e.g. a child command exited).
pub fn request_stop() {
    STOP.store(true, Ordering::SeqCst);
}
