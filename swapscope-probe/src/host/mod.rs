//! Facts and counters read from the running host: kernel identity, lockdown, clocks, `/proc/swaps`,
//! per-size mTHP stats and `/proc/vmstat`.
//!
//! Parsing is pure (`parse_*`, tested without root); the thin `read_*` wrappers do the file I/O.

pub mod output;

use std::{fs, path::Path};

use crate::event::{CounterSample, DeviceKind, DeviceList, SwapDevice, Ts};

pub const MTHP_DIR: &str = "/sys/kernel/mm/transparent_hugepage";
/// Per-size mTHP stats swapscope samples (file names under `hugepages-<N>kB/stats/`).
pub const MTHP_STATS: &[&str] = &[
    "swpout",
    "swpout_fallback",
    "swpin",
    "swpin_fallback",
    "swpin_fallback_charge",
    "split",
    "split_failed",
];
/// `/proc/vmstat` fields swapscope samples.
pub const VMSTAT_FIELDS: &[&str] = &[
    "pswpout",
    "pswpin",
    "thp_swpout",
    "thp_swpout_fallback",
    "swpout_zero",
    "zswpout",
];

#[derive(Debug, thiserror::Error)]
pub enum HostError {
    #[error("cannot read {path}: {source}")]
    Read {
        path: String,
        source: std::io::Error,
    },
    #[error("{what}: {source}")]
    Io {
        what: String,
        source: std::io::Error,
    },
    #[error("{0}")]
    Invalid(String),
}

/// Opens the marker FIFO at `path` read-write (so it never reports end-of-file when a writer
/// closes), creating it with mode 0600 when nothing is there. Returns whether it was created.
/// Anything at `path` that is not a FIFO is refused.
pub fn open_marker_fifo(path: &Path) -> Result<(fs::File, bool), HostError> {
    use std::os::unix::fs::{FileTypeExt as _, OpenOptionsExt as _};
    let mut created = false;
    match fs::symlink_metadata(path) {
        Ok(m) if m.file_type().is_fifo() => {
            use std::os::unix::fs::MetadataExt as _;
            // Whoever can write it puts markers into the recording.
            // SAFETY: geteuid has no preconditions.
            let me = unsafe { libc::geteuid() };
            if m.mode() & 0o022 != 0 || m.uid() != me {
                return Err(HostError::Invalid(format!(
                    "--marker-fifo {}: the FIFO is writable by other users or not yours (mode {:o}, owner {}); anyone could put markers into the recording: chmod go-w it, or name a new path and swapscope creates it 0600",
                    path.display(),
                    m.mode() & 0o777,
                    m.uid()
                )));
            }
        }
        Ok(_) => {
            return Err(HostError::Invalid(format!(
                "--marker-fifo {}: exists and is not a FIFO; name a new path or an existing FIFO",
                path.display()
            )));
        }
        Err(_) => {
            let c = std::ffi::CString::new(path.as_os_str().as_encoded_bytes()).map_err(|_| {
                HostError::Invalid(format!("--marker-fifo {}: NUL in path", path.display()))
            })?;
            // SAFETY: `c` is a valid NUL-terminated path for the duration of the call.
            if unsafe { libc::mkfifo(c.as_ptr(), 0o600) } != 0 {
                return Err(HostError::Io {
                    what: format!("creating the FIFO {}", path.display()),
                    source: std::io::Error::last_os_error(),
                });
            }
            created = true;
        }
    }
    let f = fs::OpenOptions::new()
        .read(true)
        .write(true)
        .custom_flags(libc::O_NOFOLLOW)
        .open(path)
        .map_err(|source| HostError::Io {
            what: format!("opening the FIFO {}", path.display()),
            source,
        })?;
    Ok((f, created))
}

/// What [`wait_terminal_input`] saw on the terminal.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TerminalInput {
    /// Input is waiting (or stdin is not a terminal: let the terminal library look).
    Ready,
    Timeout,
    /// The terminal went away (its emulator or tmux server closed): nobody is watching.
    HungUp,
}

/// Waits up to `timeout` for input on stdin when it is a terminal, and tells a hung-up
/// terminal apart (a terminal library reading a closed terminal may spin without returning).
pub fn wait_terminal_input(timeout: std::time::Duration) -> TerminalInput {
    // SAFETY: isatty only inspects the descriptor.
    if unsafe { libc::isatty(0) } != 1 {
        return TerminalInput::Ready;
    }
    let ms = i32::try_from(timeout.as_millis()).unwrap_or(i32::MAX);
    match poll_in(0, ms) {
        Ok(Some(revents)) if revents & (libc::POLLHUP | libc::POLLERR | libc::POLLNVAL) != 0 => {
            TerminalInput::HungUp
        }
        Ok(Some(_)) => TerminalInput::Ready,
        Ok(None) | Err(_) => TerminalInput::Timeout,
    }
}

/// Waits up to `ms` milliseconds for input on descriptor `fd` (which the caller keeps open):
/// its `revents` when something happened, `None` on timeout, the poll's error (an interrupting
/// signal included) otherwise.
fn poll_in(fd: std::os::fd::RawFd, ms: i32) -> std::io::Result<Option<libc::c_short>> {
    let mut pfd = libc::pollfd {
        fd,
        events: libc::POLLIN,
        revents: 0,
    };
    // SAFETY: one valid pollfd for a descriptor the caller keeps open for the call.
    let n = unsafe { libc::poll(&mut pfd, 1, ms) };
    if n < 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok((n > 0).then_some(pfd.revents))
}

/// Waits up to `ms` milliseconds for `file` to have something to read: `Ok(false)` on timeout
/// (or an interrupting signal), `Err` when the descriptor is in error.
pub fn wait_readable(file: &fs::File, ms: i32) -> std::io::Result<bool> {
    use std::os::fd::AsRawFd as _;
    match poll_in(file.as_raw_fd(), ms) {
        Ok(Some(revents)) if revents & (libc::POLLERR | libc::POLLNVAL) != 0 => {
            Err(std::io::Error::other("poll: descriptor in error"))
        }
        Ok(Some(_)) => Ok(true),
        Ok(None) => Ok(false),
        Err(e) if e.kind() == std::io::ErrorKind::Interrupted => Ok(false),
        Err(e) => Err(e),
    }
}

/// Asks a child process to stop (SIGTERM); a child that already exited is left alone.
pub fn terminate(child: &std::process::Child) {
    if let Ok(pid) = libc::pid_t::try_from(child.id()) {
        // SAFETY: kill(2) with a pid this process spawned and has not reaped yet (a `Child`
        // that was waited for is consumed or reports its status, so the pid is not reused).
        unsafe { libc::kill(pid, libc::SIGTERM) };
    }
}

/// Where `prog` would be run from: itself when it holds a `/`, else the first executable of
/// that name on `$PATH`. `None` when there is no such executable (so a command that cannot
/// start is refused before anything is attached or created).
pub fn resolve_command(prog: &str) -> Option<std::path::PathBuf> {
    use std::os::unix::fs::PermissionsExt as _;
    let runnable = |p: &Path| {
        fs::metadata(p).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
    };
    if prog.contains('/') {
        let p = Path::new(prog);
        return runnable(p).then(|| p.to_path_buf());
    }
    if prog.is_empty() {
        return None;
    }
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|d| d.join(prog))
        .find(|p| runnable(p))
}

/// When process `pid` started (clock ticks after boot, field 22 of `/proc/<pid>/stat`); `None`
/// when there is no such process. With the pid it names one process for good (pids are
/// reused, start times are not).
pub fn process_start_ticks(pid: u32) -> Option<u64> {
    parse_start_ticks(&fs::read_to_string(format!("/proc/{pid}/stat")).ok()?)
}

/// The start time in a `/proc/<pid>/stat` line (after the parenthesised command name, which
/// may hold spaces and parentheses itself).
pub fn parse_start_ticks(stat: &str) -> Option<u64> {
    let (_, rest) = stat.rsplit_once(')')?;
    rest.split_whitespace().nth(19)?.parse().ok()
}

/// This process's CPU time and resident memory (for `process_*` metrics).
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct ProcessStats {
    pub cpu_seconds: f64,
    pub resident_bytes: u64,
}

/// Reads [`ProcessStats`] of this process from `/proc/self/stat`.
pub fn process_stats() -> ProcessStats {
    // SAFETY: sysconf has no preconditions.
    let ticks = unsafe { libc::sysconf(libc::_SC_CLK_TCK) }.max(1) as f64;
    fs::read_to_string("/proc/self/stat")
        .ok()
        .and_then(|s| parse_process_stats(&s, ticks, u64::from(page_size())))
        .unwrap_or_default()
}

/// [`ProcessStats`] from a `/proc/<pid>/stat` line: utime + stime (fields 14, 15) in
/// `ticks_per_s`, rss (field 24) in pages of `page` bytes.
pub fn parse_process_stats(stat: &str, ticks_per_s: f64, page: u64) -> Option<ProcessStats> {
    let (_, rest) = stat.rsplit_once(')')?;
    let f: Vec<&str> = rest.split_whitespace().collect();
    let num = |i: usize| f.get(i).and_then(|v| v.parse::<u64>().ok());
    Some(ProcessStats {
        cpu_seconds: (num(11)? + num(12)?) as f64 / ticks_per_s,
        resident_bytes: num(21)?.saturating_mul(page),
    })
}

/// Makes `cmd`'s process get SIGKILL when this process dies (PR_SET_PDEATHSIG), however it
/// dies: a workload never outlives the tool that started it.
pub fn kill_with_parent(cmd: &mut std::process::Command) {
    use std::os::unix::process::CommandExt as _;
    // SAFETY: getpid is async-signal-safe and has no preconditions.
    let parent = unsafe { libc::getpid() };
    // SAFETY: the closure runs in the child between fork and exec and calls only
    // async-signal-safe functions (prctl, getppid); it allocates nothing.
    unsafe {
        cmd.pre_exec(move || {
            if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL, 0, 0, 0) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            // The parent may have died before the prctl: then the signal never comes.
            if libc::getppid() != parent {
                return Err(std::io::Error::other("the parent exited"));
            }
            Ok(())
        });
    }
}

/// Starts `argv` as a child process: stdin, stdout and stderr inherited, or with `capture`
/// stdin from /dev/null and stdout and stderr piped (a terminal UI owns the screen).
pub fn spawn_command(argv: &[String], capture: bool) -> Result<std::process::Child, HostError> {
    use std::process::Stdio;
    let (prog, args) = argv
        .split_first()
        .ok_or_else(|| HostError::Invalid("an empty command".into()))?;
    let mut cmd = std::process::Command::new(prog);
    cmd.args(args);
    if capture {
        cmd.stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
    }
    cmd.spawn().map_err(|source| HostError::Io {
        what: format!("starting {prog}"),
        source,
    })
}

fn read(path: &str) -> Result<String, HostError> {
    fs::read_to_string(path).map_err(|source| HostError::Read {
        path: path.to_string(),
        source,
    })
}

/// `CLOCK_BOOTTIME` now, in ns: the clock of `bpf_ktime_get_boot_ns`.
pub fn boottime_ns() -> Ts {
    clock_ns(libc::CLOCK_BOOTTIME)
}

/// `CLOCK_REALTIME` now, in ns since the epoch.
pub fn realtime_ns() -> i64 {
    clock_ns(libc::CLOCK_REALTIME) as i64
}

fn clock_ns(clock: libc::clockid_t) -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `ts` is a valid, writable timespec; clock_gettime only writes it.
    let rc = unsafe { libc::clock_gettime(clock, &mut ts) };
    if rc != 0 {
        return 0;
    }
    (ts.tv_sec as u64)
        .saturating_mul(1_000_000_000)
        .saturating_add(ts.tv_nsec as u64)
}

pub fn kernel_release() -> String {
    read("/proc/sys/kernel/osrelease")
        .map(|s| s.trim().to_string())
        .unwrap_or_default()
}

pub fn boot_id() -> String {
    read("/proc/sys/kernel/random/boot_id")
        .map(|s| s.trim().to_string())
        .unwrap_or_default()
}

pub fn page_size() -> u32 {
    // SAFETY: sysconf has no preconditions.
    let v = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
    u32::try_from(v).unwrap_or(4096)
}

/// `SWAPFILE_CLUSTER`, slots per swap cluster: `HPAGE_PMD_NR` (the PMD size in pages, from
/// `transparent_hugepage/hpage_pmd_size`) where the kernel swaps THPs whole, else 256 (kernels
/// without THP have no such file).
pub fn swap_cluster_slots() -> u32 {
    read("/sys/kernel/mm/transparent_hugepage/hpage_pmd_size")
        .ok()
        .and_then(|s| s.trim().parse::<u64>().ok())
        .and_then(|pmd| u32::try_from(pmd / u64::from(page_size().max(1))).ok())
        .filter(|n| n.is_power_of_two())
        .unwrap_or(256)
}

pub fn online_cpus() -> u32 {
    std::thread::available_parallelism()
        .map(|n| n.get() as u32)
        .unwrap_or(1)
}

/// CPU numbers the kernel may ever use: one more than the highest in
/// `/sys/devices/system/cpu/possible` (e.g. `0-3` → 4), at least the online count.
pub fn possible_cpus() -> u32 {
    std::fs::read_to_string("/sys/devices/system/cpu/possible")
        .ok()
        .and_then(|t| parse_cpu_list_end(&t))
        .unwrap_or(0)
        .max(online_cpus())
}

/// One more than the highest CPU number of a kernel CPU list (`0-3,8-11` → 12).
pub fn parse_cpu_list_end(text: &str) -> Option<u32> {
    text.trim()
        .split(',')
        .filter_map(|part| part.rsplit('-').next()?.trim().parse::<u32>().ok())
        .max()
        .map(|m| m.saturating_add(1))
}

pub fn is_root() -> bool {
    // SAFETY: geteuid has no preconditions and cannot fail.
    unsafe { libc::geteuid() == 0 }
}

/// The lockdown mode (`none`, `integrity`, `confidentiality`), from the bracketed word of
/// securityfs' `lockdown` file.
pub fn parse_lockdown(text: &str) -> Option<String> {
    let start = text.find('[')?;
    let end = text[start..].find(']')? + start;
    Some(text[start + 1..end].to_string())
}

pub const LOCKDOWN_FILE: &str = "/sys/kernel/security/lockdown";

/// Reads the lockdown mode. `None` when securityfs is not mounted or the kernel has no lockdown
/// LSM (then nothing is locked down).
pub fn lockdown() -> Option<String> {
    read(LOCKDOWN_FILE).ok().and_then(|t| parse_lockdown(&t))
}

/// Parses `/proc/swaps`.
pub fn parse_proc_swaps(text: &str, ts_ns: Ts) -> DeviceList {
    let mut devices = Vec::new();
    for (index, line) in text.lines().skip(1).enumerate() {
        let f: Vec<&str> = line.split_whitespace().collect();
        if f.len() < 5 {
            continue;
        }
        // Paths with spaces are escaped by the kernel as \040, so whitespace splitting is safe.
        let path = f[0].replace("\\040", " ");
        let kind = match f[1] {
            "file" => DeviceKind::File,
            "partition" if path.contains("/zram") => DeviceKind::Zram,
            "partition" => DeviceKind::Partition,
            _ => DeviceKind::Other,
        };
        devices.push(SwapDevice {
            index: u8::try_from(index).unwrap_or(u8::MAX),
            path,
            kind,
            size_kb: f[2].parse().unwrap_or(0),
            used_kb: f[3].parse().unwrap_or(0),
            prio: f[4].parse().unwrap_or(0),
        });
    }
    DeviceList { ts_ns, devices }
}

pub fn read_proc_swaps() -> Result<DeviceList, HostError> {
    Ok(parse_proc_swaps(&read("/proc/swaps")?, boottime_ns()))
}

pub use swapscope_core::mthp::{mthp_size_kb, order_of_size_kb, parse_mthp_counter};

/// mTHP sizes the kernel offers, ascending, in kB.
pub fn mthp_sizes_kb(root: &Path) -> Vec<u64> {
    let mut sizes: Vec<u64> = fs::read_dir(root)
        .map(|rd| {
            rd.filter_map(|e| e.ok())
                .filter_map(|e| mthp_size_kb(&e.file_name().to_string_lossy()))
                .collect()
        })
        .unwrap_or_default();
    sizes.sort_unstable();
    sizes
}

/// The selected word of a sysfs choice file such as `always inherit madvise [never]`.
pub fn parse_choice(text: &str) -> Option<String> {
    parse_lockdown(text)
}

/// Adds the `/proc/vmstat` fields swapscope samples, as `vmstat/<name>`.
pub fn parse_vmstat(text: &str, out: &mut Vec<(String, u64)>) {
    for line in text.lines() {
        let mut it = line.split_whitespace();
        if let (Some(k), Some(v)) = (it.next(), it.next())
            && VMSTAT_FIELDS.contains(&k)
            && let Ok(v) = v.parse()
        {
            out.push((format!("vmstat/{k}"), v));
        }
    }
}

/// Samples every per-size mTHP swap stat and the vmstat fields.
pub fn sample_counters(mthp_root: &Path) -> CounterSample {
    let ts_ns = boottime_ns();
    let mut values = Vec::new();
    for kb in mthp_sizes_kb(mthp_root) {
        for stat in MTHP_STATS {
            let p = mthp_root.join(format!("hugepages-{kb}kB/stats/{stat}"));
            if let Ok(Ok(v)) = fs::read_to_string(&p).map(|s| s.trim().parse::<u64>()) {
                values.push((format!("hugepages-{kb}kB/{stat}"), v));
            }
        }
    }
    if let Ok(text) = read("/proc/vmstat") {
        parse_vmstat(&text, &mut values);
    }
    CounterSample { ts_ns, values }
}

/// The allocator-relevant flags of a device (`event::swap_flags`), from its kind and whether its
/// queue is rotational.
pub fn swap_flags_for(kind: crate::event::DeviceKind, rotational: Option<bool>) -> u32 {
    use crate::event::{DeviceKind, swap_flags};
    let ssd = if rotational == Some(true) {
        0
    } else {
        swap_flags::SOLIDSTATE
    };
    match kind {
        DeviceKind::Zram => {
            swap_flags::SOLIDSTATE | swap_flags::BLKDEV | swap_flags::SYNCHRONOUS_IO
        }
        DeviceKind::Partition => swap_flags::BLKDEV | ssd,
        DeviceKind::File | DeviceKind::Other => ssd,
    }
}

/// A `SwapOn` for a device listed in `/proc/swaps`: `max` = Size in pages + the header slot (no
/// bad slots: `/proc/swaps` does not list them), swap type = its position in the list.
pub fn swap_on_for(dev: &crate::event::SwapDevice, ts_ns: Ts) -> crate::event::SwapOn {
    let name = dev.path.rsplit('/').next().unwrap_or_default();
    let rotational = fs::read_to_string(format!("/sys/block/{name}/queue/rotational"))
        .ok()
        .map(|s| s.trim() == "1");
    let page_kb = u64::from(page_size() / 1024).max(1);
    crate::event::SwapOn {
        ts_ns,
        swap_type: dev.index,
        max: dev.size_kb / page_kb + 1,
        bad: Vec::new(),
        flags: swap_flags_for(dev.kind, rotational),
        prio: dev.prio,
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn cpu_lists() {
        assert_eq!(super::parse_cpu_list_end("0-3\n"), Some(4));
        assert_eq!(super::parse_cpu_list_end("0"), Some(1));
        assert_eq!(super::parse_cpu_list_end("0-3,8-11"), Some(12));
        assert_eq!(super::parse_cpu_list_end(""), None);
    }

    #[test]
    fn process_stats_from_a_stat_line_with_a_hostile_name() {
        let line = "42 (a) b (c) R 1 42 42 0 -1 4194304 100 0 0 0 250 50 0 0 20 0 3 0 12345 \
                    100000000 2560 18446744073709551615";
        let p = parse_process_stats(line, 100.0, 4096).expect("parses");
        assert!((p.cpu_seconds - 3.0).abs() < 1e-9, "{p:?}");
        assert_eq!(p.resident_bytes, 2560 * 4096);
        assert_eq!(parse_process_stats("42 (x) R 1", 100.0, 4096), None);
    }

    use super::*;

    #[test]
    fn start_ticks() {
        let line =
            "1234 (a (b) c) S 1 1234 1234 0 -1 4194560 100 0 0 0 1 2 0 0 20 0 1 0 987654 1 2";
        assert_eq!(parse_start_ticks(line), Some(987_654));
        assert!(process_start_ticks(std::process::id()).is_some());
        assert_eq!(parse_start_ticks("garbage"), None);
    }

    #[test]
    fn proc_swaps() {
        let t = "Filename\t\t\t\tType\t\tSize\t\tUsed\t\tPriority\n\
                 /dev/zram0                              partition\t1048572\t\t12\t\t-2\n\
                 /swap\\040file                           file\t\t524284\t\t0\t\t-3\n";
        let d = parse_proc_swaps(t, 7);
        assert_eq!(d.devices.len(), 2);
        assert_eq!(d.devices[0].kind, DeviceKind::Zram);
        assert_eq!(d.devices[0].size_kb, 1_048_572);
        assert_eq!(d.devices[0].used_kb, 12);
        assert_eq!(d.devices[0].prio, -2);
        assert_eq!(d.devices[1].path, "/swap file");
        assert_eq!(d.devices[1].kind, DeviceKind::File);
        assert_eq!(d.devices[1].index, 1);
    }

    #[test]
    fn lockdown_and_choice() {
        assert_eq!(
            parse_lockdown("none integrity [confidentiality]\n").as_deref(),
            Some("confidentiality")
        );
        assert_eq!(
            parse_choice("always inherit madvise [never]").as_deref(),
            Some("never")
        );
        assert_eq!(parse_lockdown("garbage"), None);
    }

    #[test]
    fn sizes_and_orders() {
        assert_eq!(mthp_size_kb("hugepages-64kB"), Some(64));
        assert_eq!(order_of_size_kb(64), Some(4));
        assert_eq!(order_of_size_kb(2048), Some(9));
        assert_eq!(order_of_size_kb(48), None);
        assert_eq!(
            parse_mthp_counter("hugepages-64kB/swpout"),
            Some((4, "swpout"))
        );
        assert_eq!(parse_mthp_counter("vmstat/pswpout"), None);
    }

    #[test]
    fn vmstat() {
        let mut v = Vec::new();
        parse_vmstat("nr_free_pages 5\npswpout 791321\nthp_swpout 3\n", &mut v);
        assert_eq!(
            v,
            vec![
                ("vmstat/pswpout".into(), 791_321),
                ("vmstat/thp_swpout".into(), 3)
            ]
        );
    }
}
