//! Running the swapscope binary and taking its peak RSS (`wait4`'s rusage, which std's `wait`
//! does not give), for tests/hostile.rs and tests/export.rs.

use std::{
    os::unix::process::ExitStatusExt as _,
    process::{Command, ExitStatus, Stdio},
    time::Instant,
};

pub struct Run {
    pub status: ExitStatus,
    pub stdout: Vec<u8>,
    pub stderr: String,
    pub max_rss_kib: u64,
    pub secs: f64,
}

/// Runs swapscope with `args`, reading its output on threads, and takes its peak RSS and wall
/// time.
#[expect(
    clippy::zombie_processes,
    reason = "reaped with wait4 (std's wait gives no rusage)"
)]
pub fn run(args: &[&str]) -> Run {
    let t0 = Instant::now();
    let mut child = Command::new(env!("CARGO_BIN_EXE_swapscope"))
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("running swapscope {args:?}: {e}"));
    let drain = |r: Option<Box<dyn std::io::Read + Send>>| {
        std::thread::spawn(move || {
            let mut buf = Vec::new();
            if let Some(mut r) = r {
                let _ = r.read_to_end(&mut buf);
            }
            buf
        })
    };
    let out = drain(child.stdout.take().map(|r| Box::new(r) as _));
    let err = drain(child.stderr.take().map(|r| Box::new(r) as _));
    let pid = child.id() as libc::pid_t;
    let mut status = 0;
    // SAFETY: an all-zero rusage is a valid value of that plain C struct.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: `pid` is our own child, not yet waited for (std's `Child` is not used to wait);
    // both out-pointers point at live locals of the right types.
    let r = unsafe { libc::wait4(pid, &mut status, 0, &mut usage) };
    assert_eq!(r, pid, "wait4: {}", std::io::Error::last_os_error());
    Run {
        status: ExitStatus::from_raw(status),
        stdout: out.join().unwrap_or_default(),
        stderr: String::from_utf8_lossy(&err.join().unwrap_or_default()).into_owned(),
        max_rss_kib: usage.ru_maxrss as u64,
        secs: t0.elapsed().as_secs_f64(),
    }
}
