//! Temporary host set-up for `stress`: a memory cgroup, a zram swap device and mTHP settings.
//!
//! Every item is an RAII guard that undoes exactly what it did when dropped (on success, error or
//! a handled signal). Nothing here ever touches a cgroup or swap device it did not create.

use std::{
    ffi::CString,
    fs,
    io::{Read as _, Write as _},
    os::unix::fs::{FileTypeExt as _, MetadataExt as _, OpenOptionsExt as _},
    path::{Path, PathBuf},
    thread,
    time::Duration,
};

use crate::host;

#[derive(Debug, thiserror::Error)]
pub enum SetupError {
    #[error("{what}: {path}: {source}")]
    Io {
        what: &'static str,
        path: String,
        source: std::io::Error,
    },
    #[error(
        "no memory cgroup controller found (looked for cgroup v2 at /sys/fs/cgroup and v1 at /sys/fs/cgroup/memory)"
    )]
    NoMemcg,
    #[error(
        "zram is not available (/sys/class/zram-control missing); load it with `modprobe zram` or run without --zram"
    )]
    NoZram,
    #[error("mTHP size {0} kB is not offered by this kernel (see {dir})", dir = host::MTHP_DIR)]
    NoMthpSize(u64),
    #[error("swapon {path} failed: {source}")]
    Swapon {
        path: String,
        source: std::io::Error,
    },
    #[error("stress needs root: it creates a cgroup and a swap device; run it with sudo")]
    NotRoot,
    #[error(
        "holding {0} MiB for --global-limit failed: {1}; raise --global-limit or run without it"
    )]
    Hold(u64, std::io::Error),
}

/// Why something a run created could not be removed or put back: one line for `doctor`, the
/// cleanup and the run's own teardown.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum CleanupError {
    #[error("could not remove cgroup {0}; remove it with rmdir")]
    Cgroup(String),
    #[error("swapoff {path} failed: {source}")]
    Swapoff {
        path: String,
        source: std::io::Error,
    },
    #[error("could not hot_remove zram{id}: {source}")]
    HotRemove { id: u32, source: std::io::Error },
    #[error("could not delete {path}: {source}")]
    Delete {
        path: String,
        source: std::io::Error,
    },
    #[error("could not restore {path} to {previous}: {source}")]
    Restore {
        path: String,
        previous: String,
        source: std::io::Error,
    },
    #[error("{path} is {now} now, not the {set} swapscope set: left alone (it was {previous})")]
    Changed {
        path: String,
        now: String,
        set: String,
        previous: String,
    },
    #[error("could not read {0}")]
    Unreadable(String),
    #[error("{0} is not a cgroup (statfs): left alone")]
    NotCgroup(String),
    /// What a state file names is not something swapscope makes, or not a value it saves.
    #[error("{0}")]
    Refused(String),
}

/// statfs(2) magic numbers of the filesystems a clean-up checks that it acts on.
pub const CGROUP_SUPER_MAGIC: u64 = 0x0027_e0eb;
pub const CGROUP2_SUPER_MAGIC: u64 = 0x6367_7270;
pub const SYSFS_MAGIC: u64 = 0x6265_6572;

/// The filesystem type (statfs `f_type`) of what `f` is open on.
fn fs_magic(f: &fs::File) -> std::io::Result<u64> {
    use std::os::fd::AsRawFd as _;
    // SAFETY: an all-zero statfs is a valid value of that plain C struct.
    let mut s: libc::statfs = unsafe { std::mem::zeroed() };
    // SAFETY: the descriptor stays open for the call; `s` is a live local of the right type.
    if unsafe { libc::fstatfs(f.as_raw_fd(), &mut s) } != 0 {
        return Err(std::io::Error::last_os_error());
    }
    // `f_type` is signed on glibc and unsigned on musl; every magic checked here is positive.
    Ok(u64::try_from(s.f_type).unwrap_or(0))
}

/// Opens `path` without following a symbolic link at its last component, without blocking on
/// a FIFO and without taking a terminal: what a clean-up opens is checked through the
/// descriptor before anything is read or written.
pub fn open_checked(path: &Path, write: bool) -> std::io::Result<fs::File> {
    fs::OpenOptions::new()
        .read(!write)
        .write(write)
        .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK | libc::O_NOCTTY)
        .open(path)
}

/// Reads at most `max` bytes of `f` (`Err` when there are more).
fn read_bounded(f: &fs::File, max: u64) -> std::io::Result<Vec<u8>> {
    let mut b = Vec::new();
    f.take(max + 1).read_to_end(&mut b)?;
    if b.len() as u64 > max {
        return Err(std::io::Error::other(format!("more than {max} bytes")));
    }
    Ok(b)
}

fn io<'a>(what: &'static str, path: &'a Path) -> impl FnOnce(std::io::Error) -> SetupError + 'a {
    move |source| SetupError::Io {
        what,
        path: path.display().to_string(),
        source,
    }
}

fn write_file(path: &Path, value: &str, what: &'static str) -> Result<(), SetupError> {
    fs::write(path, value).map_err(io(what, path))
}

/// Which cgroup version the memory controller is on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CgroupVersion {
    V1,
    V2,
}

/// A memory cgroup swapscope created; removed on drop.
pub struct Cgroup {
    pub path: PathBuf,
    pub version: CgroupVersion,
}

impl Cgroup {
    /// Finds the memory controller: cgroup v2 (unified at /sys/fs/cgroup) or v1.
    pub fn locate() -> Result<(PathBuf, CgroupVersion), SetupError> {
        let v2 = Path::new("/sys/fs/cgroup");
        if fs::read_to_string(v2.join("cgroup.controllers"))
            .is_ok_and(|c| c.split_whitespace().any(|w| w == "memory"))
        {
            return Ok((v2.to_path_buf(), CgroupVersion::V2));
        }
        let v1 = Path::new("/sys/fs/cgroup/memory");
        if v1.join("memory.limit_in_bytes").exists() {
            return Ok((v1.to_path_buf(), CgroupVersion::V1));
        }
        Err(SetupError::NoMemcg)
    }

    /// Where [`Cgroup::create`] puts `swapscope-<pid>-<tag>` (known before it exists, so a
    /// state file can name it first).
    pub fn path_for(tag: &str) -> Result<PathBuf, SetupError> {
        let (root, _) = Self::locate()?;
        Ok(root.join(format!("swapscope-{}-{tag}", std::process::id())))
    }

    /// Creates `swapscope-<pid>-<tag>` with a memory limit of `limit_bytes`.
    pub fn create(tag: &str, limit_bytes: u64) -> Result<Self, SetupError> {
        let (root, version) = Self::locate()?;
        if version == CgroupVersion::V2 {
            // Children of the root only get the memory files if the root delegates the controller.
            let ctl = root.join("cgroup.subtree_control");
            let _ = fs::write(&ctl, "+memory");
        }
        let path = Self::path_for(tag)?;
        fs::create_dir(&path).map_err(io("creating cgroup", &path))?;
        let cg = Cgroup { path, version };
        let (file, value) = match version {
            CgroupVersion::V1 => ("memory.limit_in_bytes", limit_bytes.to_string()),
            CgroupVersion::V2 => ("memory.max", limit_bytes.to_string()),
        };
        write_file(&cg.path.join(file), &value, "setting cgroup memory limit")?;
        if version == CgroupVersion::V2 {
            // Keep the workload on real swap: zswap would hide write-outs from swpout.
            let _ = fs::write(cg.path.join("memory.zswap.max"), "0");
        }
        Ok(cg)
    }

    /// A child cgroup `name` of this one with its own memory limit (removed with this one).
    /// `name` must be a [`job_cgroup`] name (`job<N>`): removal descends into those only.
    pub fn create_child(&self, name: &str, limit_bytes: u64) -> Result<Self, SetupError> {
        if self.version == CgroupVersion::V2 {
            let ctl = self.path.join("cgroup.subtree_control");
            write_file(
                &ctl,
                "+memory",
                "delegating the memory controller to job cgroups",
            )?;
        }
        let path = self.path.join(name);
        fs::create_dir(&path).map_err(io("creating cgroup", &path))?;
        let cg = Cgroup {
            path,
            version: self.version,
        };
        let file = match self.version {
            CgroupVersion::V1 => "memory.limit_in_bytes",
            CgroupVersion::V2 => "memory.max",
        };
        write_file(
            &cg.path.join(file),
            &limit_bytes.to_string(),
            "setting cgroup memory limit",
        )?;
        if self.version == CgroupVersion::V2 {
            let _ = fs::write(cg.path.join("memory.zswap.max"), "0");
        }
        Ok(cg)
    }

    /// Moves process `pid` into the cgroup.
    pub fn add(&self, pid: u32) -> Result<(), SetupError> {
        write_file(
            &self.path.join("cgroup.procs"),
            &pid.to_string(),
            "moving the workload into its cgroup",
        )
    }
}

impl Drop for Cgroup {
    fn drop(&mut self) {
        if let Err(e) = remove_cgroup(&self.path) {
            eprintln!("swapscope: {e}");
        }
    }
}

/// Names of the per-job child cgroups `stress --cgroup-per-job` creates (`job0`, `job1`, ...):
/// [`remove_cgroup`] removes children of these names first, and nothing else below a cgroup.
pub mod job_cgroup {
    /// The name of job `i`'s cgroup.
    pub fn name(i: u32) -> String {
        format!("job{i}")
    }

    /// Whether `name` is one of them.
    pub fn is(name: &str) -> bool {
        name.strip_prefix("job")
            .is_some_and(|n| !n.is_empty() && n.len() <= 4 && n.bytes().all(|b| b.is_ascii_digit()))
    }
}

/// Whether `path` itself is a cgroup directory: not a symbolic link, and on a cgroup v1 or v2
/// filesystem (statfs on the directory opened).
pub fn is_cgroup_dir(path: &Path) -> std::io::Result<bool> {
    let f = fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NOFOLLOW | libc::O_DIRECTORY | libc::O_NONBLOCK)
        .open(path)?;
    Ok(matches!(
        fs_magic(&f)?,
        CGROUP_SUPER_MAGIC | CGROUP2_SUPER_MAGIC
    ))
}

/// The processes in cgroup `dir`, from its `cgroup.procs` only when that file is on a cgroup
/// filesystem: a plain file of that name lists nothing to kill.
fn cgroup_procs(dir: &Path) -> Result<Vec<libc::pid_t>, CleanupError> {
    let path = dir.join("cgroup.procs");
    let not_cgroup = || CleanupError::NotCgroup(dir.display().to_string());
    let f = open_checked(&path, false).map_err(|_| not_cgroup())?;
    if !matches!(
        fs_magic(&f).map_err(|_| not_cgroup())?,
        CGROUP_SUPER_MAGIC | CGROUP2_SUPER_MAGIC
    ) {
        return Err(not_cgroup());
    }
    let text = read_bounded(&f, 4 << 20)
        .map_err(|_| CleanupError::Unreadable(path.display().to_string()))?;
    // A pid of 0 or below would signal a process group or every process.
    Ok(String::from_utf8_lossy(&text)
        .lines()
        .filter_map(|l| l.trim().parse::<libc::pid_t>().ok())
        .filter(|&p| p > 0)
        .collect())
}

/// Kills whatever still runs in cgroup `path` (only swapscope's own workload is ever put there)
/// and removes it, with its per-job children ([`job_cgroup`]). `Ok` when it is gone. Anything
/// at `path` that is not a cgroup directory ([`is_cgroup_dir`]) is left alone (`Err`).
pub fn remove_cgroup(path: &Path) -> Result<(), CleanupError> {
    let gone =
        || fs::symlink_metadata(path).is_err_and(|e| e.kind() == std::io::ErrorKind::NotFound);
    if gone() {
        return Ok(());
    }
    if !is_cgroup_dir(path).unwrap_or(false) {
        return Err(CleanupError::NotCgroup(path.display().to_string()));
    }
    if let Ok(rd) = fs::read_dir(path) {
        for e in rd.flatten() {
            let name = e.file_name();
            // The entry's own type (a symbolic link is not a directory here).
            if e.file_type().is_ok_and(|t| t.is_dir()) && name.to_str().is_some_and(job_cgroup::is)
            {
                remove_cgroup(&e.path())?;
            }
        }
    }
    for _ in 0..50 {
        if gone() || fs::remove_dir(path).is_ok() {
            return Ok(());
        }
        // Still populated (a workload of a killed run) or still uncharging.
        for pid in cgroup_procs(path)? {
            // SAFETY: kill(2) has no memory effects; the pids are members of a cgroup
            // swapscope created for its workload (read from that cgroup's own cgroup.procs).
            unsafe { libc::kill(pid, libc::SIGKILL) };
        }
        thread::sleep(Duration::from_millis(100));
    }
    Err(CleanupError::Cgroup(path.display().to_string()))
}

/// Memory `stress --global-limit` holds for the run: anonymous, populated and locked by the
/// `stress` process itself (outside the workload's cgroups), so the whole host is left with about
/// the limit available and reclaims globally (kswapd and direct reclaim). Unmapped on drop, and by
/// the kernel when the process dies however it dies, so it needs no state-file entry.
pub struct MemoryHold {
    base: *mut libc::c_void,
    len: usize,
}

impl MemoryHold {
    /// Holds `MemAvailable - limit_bytes` (nothing when that is not positive).
    pub fn leave_available(limit_bytes: u64) -> Result<Option<Self>, SetupError> {
        let meminfo = Path::new("/proc/meminfo");
        let text = fs::read_to_string(meminfo).map_err(io("reading", meminfo))?;
        let avail_kb = text
            .lines()
            .find_map(|l| l.strip_prefix("MemAvailable:"))
            .and_then(|v| v.split_whitespace().next()?.parse::<u64>().ok())
            .unwrap_or(0);
        let hold = (avail_kb << 10).saturating_sub(limit_bytes);
        let Ok(len) = usize::try_from(hold) else {
            return Ok(None);
        };
        if len < 1 << 20 {
            return Ok(None);
        }
        // SAFETY: an anonymous private mapping with no address hint; the result is checked.
        let base = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                len,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_PRIVATE | libc::MAP_ANONYMOUS,
                -1,
                0,
            )
        };
        if base == libc::MAP_FAILED {
            return Err(SetupError::Hold(
                len as u64 >> 20,
                std::io::Error::last_os_error(),
            ));
        }
        let hold = MemoryHold { base, len };
        // mlock faults the pages in locked, so reclaim never sees them (populating first would
        // let it swap zero-filled pages out before the lock).
        // SAFETY: locks exactly the mapping created above.
        if unsafe { libc::mlock(base, len) } != 0 {
            return Err(SetupError::Hold(
                len as u64 >> 20,
                std::io::Error::last_os_error(),
            ));
        }
        Ok(Some(hold))
    }

    /// Bytes held.
    pub fn bytes(&self) -> u64 {
        self.len as u64
    }
}

impl Drop for MemoryHold {
    fn drop(&mut self) {
        // SAFETY: unmaps exactly the mapping created in `leave_available` (which unlocks it).
        unsafe { libc::munmap(self.base, self.len) };
    }
}

/// `SWAP_FLAG_PREFER` from <sys/swap.h>.
const SWAP_FLAG_PREFER: i32 = 0x8000;
const SWAP_FLAG_PRIO_MASK: i32 = 0x7fff;

/// A zram swap device swapscope created with `hot_add`; swapped off, reset and removed on drop.
pub struct ZramSwap {
    pub id: u32,
    pub dev: PathBuf,
}

impl ZramSwap {
    /// Creates a zram device of `bytes`, writes a swap header with `uuid` and swaps it on at
    /// `prio`. `noted` learns the device number as soon as it exists (before it is set up), so
    /// a state file names it if this process dies half-way.
    pub fn create(
        bytes: u64,
        prio: i32,
        uuid: [u8; 8],
        noted: &mut dyn FnMut(u32) -> Result<(), SetupError>,
    ) -> Result<Self, SetupError> {
        let ctl = Path::new("/sys/class/zram-control/hot_add");
        if !ctl.exists() {
            return Err(SetupError::NoZram);
        }
        let id: u32 = fs::read_to_string(ctl)
            .map_err(io("adding a zram device", ctl))?
            .trim()
            .parse()
            .map_err(|_| SetupError::Io {
                what: "adding a zram device",
                path: ctl.display().to_string(),
                source: std::io::Error::other("hot_add returned no device number"),
            })?;
        let z = ZramSwap {
            id,
            dev: PathBuf::from(format!("/dev/zram{id}")),
        };
        noted(id)?;
        let sys = PathBuf::from(format!("/sys/block/zram{id}"));
        write_file(
            &sys.join("disksize"),
            &bytes.to_string(),
            "sizing the zram device",
        )?;
        // udev may create the node a moment after hot_add.
        for _ in 0..50 {
            if z.dev.exists() {
                break;
            }
            thread::sleep(Duration::from_millis(20));
        }
        write_swap_header(&z.dev, bytes, host::page_size(), uuid)?;
        swapon(&z.dev, prio)?;
        Ok(z)
    }
}

impl Drop for ZramSwap {
    fn drop(&mut self) {
        if let Err(e) = remove_zram(self.id) {
            eprintln!("swapscope: {e}");
        }
    }
}

/// Whether `dev` is swapped on (listed in /proc/swaps).
pub fn is_swapped_on(dev: &Path) -> bool {
    host::read_proc_swaps().is_ok_and(|l| l.devices.iter().any(|d| Path::new(&d.path) == dev))
}

/// Swaps off (if on), resets and removes zram device `id`. `Ok` when it is gone. Callers that
/// did not create the device in this process check it first ([`zram_seen`]).
pub fn remove_zram(id: u32) -> Result<(), CleanupError> {
    let dev = PathBuf::from(format!("/dev/zram{id}"));
    let sys = PathBuf::from(format!("/sys/block/zram{id}"));
    if !sys.exists() {
        return Ok(());
    }
    if is_swapped_on(&dev) {
        swapoff(&dev)?;
    }
    for _ in 0..50 {
        if fs::write(sys.join("reset"), "1").is_ok() {
            break;
        }
        thread::sleep(Duration::from_millis(100));
    }
    fs::write("/sys/class/zram-control/hot_remove", id.to_string())
        .map_err(|source| CleanupError::HotRemove { id, source })
}

/// What zram device `id` is now, every fact read from that one device: `/sys/block/zram<id>`
/// and the node `/dev/zram<id>`, checked to be that block device before its header is read.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ZramSeen {
    /// `/sys/block/zram<id>` exists.
    pub present: bool,
    /// `Ok` when `/sys/block/zram<id>` is a zram disk and `/dev/zram<id>` is its block device
    /// (not a link, the same major:minor); else why not.
    pub node: Result<(), String>,
    /// The UUID of swapscope's swap header read through that node (`None`: no such header, or
    /// it could not be read).
    pub header_uuid: Option<[u8; 8]>,
    /// `/dev/zram<id>` is an active swap device (`/proc/swaps`).
    pub swapped_on: bool,
}

impl Default for ZramSeen {
    /// Nothing seen.
    fn default() -> Self {
        ZramSeen {
            present: false,
            node: Err("not looked at".into()),
            header_uuid: None,
            swapped_on: false,
        }
    }
}

/// Looks at zram device `id` (reads only).
pub fn zram_seen(id: u32) -> ZramSeen {
    let sys = PathBuf::from(format!("/sys/block/zram{id}"));
    let dev = PathBuf::from(format!("/dev/zram{id}"));
    let mut seen = ZramSeen {
        present: sys.exists(),
        ..ZramSeen::default()
    };
    if !seen.present {
        return seen;
    }
    let node = (|| {
        // An attribute only the zram driver's disks have.
        if !sys.join("comp_algorithm").exists() {
            return Err(format!("{} is not a zram disk", sys.display()));
        }
        let want = fs::read_to_string(sys.join("dev"))
            .ok()
            .and_then(|t| {
                let (ma, mi) = t.trim().split_once(':')?;
                Some(libc::makedev(ma.parse().ok()?, mi.parse().ok()?))
            })
            .ok_or_else(|| format!("{}/dev unreadable", sys.display()))?;
        let f = open_checked(&dev, false).map_err(|e| format!("{}: {e}", dev.display()))?;
        let m = f
            .metadata()
            .map_err(|e| format!("{}: {e}", dev.display()))?;
        if !m.file_type().is_block_device() || m.rdev() != want {
            return Err(format!(
                "{} is not the block device of zram{id}",
                dev.display()
            ));
        }
        Ok(f)
    })();
    match node {
        Ok(mut f) => {
            seen.node = Ok(());
            seen.header_uuid = header_uuid_of(&mut f);
        }
        Err(e) => seen.node = Err(e),
    }
    seen.swapped_on = is_swapped_on(&dev);
    seen
}

/// The UUID of swapscope's swap header at the start of `f`.
fn header_uuid_of(f: &mut fs::File) -> Option<[u8; 8]> {
    let mut b = [0u8; 1061];
    f.read_exact(&mut b).ok()?;
    (&b[1052..1061] == b"swapscope").then(|| {
        let mut u = [0u8; 8];
        u.copy_from_slice(&b[1036..1044]);
        u
    })
}

/// The UUID in the swap header of `path`, if it is a regular file or block device (not a
/// link, not a FIFO) carrying swapscope's label: how a later run recognises a loop swap file
/// as the one a state file names.
pub fn swap_header_uuid(path: &Path) -> Option<[u8; 8]> {
    let mut f = open_checked(path, false).ok()?;
    let t = f.metadata().ok()?.file_type();
    if !(t.is_file() || t.is_block_device()) {
        return None;
    }
    header_uuid_of(&mut f)
}

/// A UUID for a swap header: this process and the time.
pub fn new_uuid() -> [u8; 8] {
    (host::boottime_ns() ^ u64::from(std::process::id()).rotate_left(32)).to_le_bytes()
}

fn cpath(path: &Path) -> Result<CString, SetupError> {
    CString::new(path.as_os_str().as_encoded_bytes()).map_err(|_| SetupError::Swapon {
        path: path.display().to_string(),
        source: std::io::Error::other("path has a NUL byte"),
    })
}

/// swapon(2) with a preferred priority.
fn swapon(path: &Path, prio: i32) -> Result<(), SetupError> {
    let c = cpath(path)?;
    let flags = SWAP_FLAG_PREFER | (prio.clamp(0, SWAP_FLAG_PRIO_MASK) & SWAP_FLAG_PRIO_MASK);
    // SAFETY: `c` is a valid NUL-terminated path that outlives the call.
    if unsafe { libc::swapon(c.as_ptr(), flags) } != 0 {
        return Err(SetupError::Swapon {
            path: path.display().to_string(),
            source: std::io::Error::last_os_error(),
        });
    }
    Ok(())
}

/// swapoff(2).
fn swapoff(path: &Path) -> Result<(), CleanupError> {
    let failed = |source| CleanupError::Swapoff {
        path: path.display().to_string(),
        source,
    };
    let c = CString::new(path.as_os_str().as_encoded_bytes())
        .map_err(|_| failed(std::io::Error::other("path has a NUL byte")))?;
    // SAFETY: `c` is a valid NUL-terminated path that outlives the call.
    if unsafe { libc::swapoff(c.as_ptr()) } != 0 {
        return Err(failed(std::io::Error::last_os_error()));
    }
    Ok(())
}

/// A loop device over a temporary file, swapped on: a block device that is not
/// `SWP_SYNCHRONOUS_IO`, so swap-in goes through the swap cache one page at a time (no
/// large-folio swap-in), as on disks. Swapped off, detached and deleted on drop.
pub struct LoopSwap {
    pub file: PathBuf,
    pub dev: PathBuf,
}

impl LoopSwap {
    /// Where [`LoopSwap::create`] puts its backing file.
    pub fn file_for() -> PathBuf {
        std::env::temp_dir().join(format!("swapscope-{}.swap", std::process::id()))
    }

    /// Creates the backing file (header with `uuid`), attaches a loop device and swaps it on at
    /// `prio`; `noted` learns the device as soon as it is attached.
    pub fn create(
        bytes: u64,
        prio: i32,
        uuid: [u8; 8],
        noted: &mut dyn FnMut(&Path) -> Result<(), SetupError>,
    ) -> Result<Self, SetupError> {
        let file = Self::file_for();
        {
            let f = fs::File::create(&file).map_err(io("creating the loop swap file", &file))?;
            f.set_len(bytes)
                .map_err(io("sizing the loop swap file", &file))?;
        }
        write_swap_header(&file, bytes, host::page_size(), uuid)?;
        let out = std::process::Command::new("losetup")
            .args(["--find", "--show"])
            .arg(&file)
            .output()
            .map_err(io("running losetup", &file));
        let out = match out {
            Ok(o) if o.status.success() => o,
            Ok(o) => {
                let _ = fs::remove_file(&file);
                return Err(SetupError::Io {
                    what: "attaching a loop device",
                    path: file.display().to_string(),
                    source: std::io::Error::other(
                        String::from_utf8_lossy(&o.stderr).trim().to_string(),
                    ),
                });
            }
            Err(e) => {
                let _ = fs::remove_file(&file);
                return Err(e);
            }
        };
        let dev = PathBuf::from(String::from_utf8_lossy(&out.stdout).trim());
        let l = LoopSwap { file, dev };
        noted(&l.dev)?;
        swapon(&l.dev, prio)?;
        Ok(l)
    }
}

impl Drop for LoopSwap {
    fn drop(&mut self) {
        if let Err(e) = remove_loop(&self.dev, &self.file) {
            eprintln!("swapscope: {e}");
        }
    }
}

/// The file backing loop device `dev` (`/sys/block/loop<N>/loop/backing_file`).
pub fn loop_backing(dev: &Path) -> Option<PathBuf> {
    let name = dev.file_name()?;
    let text =
        fs::read_to_string(Path::new("/sys/block").join(name).join("loop/backing_file")).ok()?;
    Some(PathBuf::from(text.trim_end_matches('\n')))
}

/// Swaps off and detaches loop device `dev` if `file` still backs it (another loop device is
/// never touched), and deletes `file`. `Ok` when both are gone.
pub fn remove_loop(dev: &Path, file: &Path) -> Result<(), CleanupError> {
    if loop_backing(dev).is_some_and(|b| b == file) {
        if is_swapped_on(dev) {
            swapoff(dev)?;
        }
        let _ = std::process::Command::new("losetup")
            .arg("-d")
            .arg(dev)
            .status();
    }
    match fs::remove_file(file) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(source) => Err(CleanupError::Delete {
            path: file.display().to_string(),
            source,
        }),
    }
}

/// Writes a version-1 swap header (what mkswap writes) for a device of `bytes`, labelled
/// `swapscope`, with `uuid` in the first half of the UUID field.
pub fn swap_header(bytes: u64, page_size: u32, uuid: [u8; 8]) -> Vec<u8> {
    let ps = page_size as usize;
    let mut h = vec![0u8; ps];
    let last_page = (bytes / u64::from(page_size))
        .saturating_sub(1)
        .min(u64::from(u32::MAX)) as u32;
    // struct swap_header.info at offset 1024: version, last_page, nr_badpages, uuid[16], label[16].
    h[1024..1028].copy_from_slice(&1u32.to_le_bytes());
    h[1028..1032].copy_from_slice(&last_page.to_le_bytes());
    h[1032..1036].copy_from_slice(&0u32.to_le_bytes());
    h[1036..1044].copy_from_slice(&uuid);
    h[1052..1061].copy_from_slice(b"swapscope");
    h[ps - 10..].copy_from_slice(b"SWAPSPACE2");
    h
}

fn write_swap_header(
    dev: &Path,
    bytes: u64,
    page_size: u32,
    uuid: [u8; 8],
) -> Result<(), SetupError> {
    let mut f = fs::OpenOptions::new()
        .write(true)
        .open(dev)
        .map_err(io("opening the zram device", dev))?;
    f.write_all(&swap_header(bytes, page_size, uuid))
        .map_err(io("writing the swap header", dev))?;
    f.sync_all().map_err(io("syncing the swap header", dev))
}

/// An mTHP size's policy, read; once [`MthpSetting::apply`]d, restored on drop.
pub struct MthpSetting {
    pub path: PathBuf,
    pub previous: String,
    applied: Option<String>,
}

impl MthpSetting {
    /// Reads the current policy of `size_kb` (nothing is changed yet).
    pub fn read(size_kb: u64) -> Result<Self, SetupError> {
        let path = Path::new(host::MTHP_DIR).join(format!("hugepages-{size_kb}kB/enabled"));
        let text = fs::read_to_string(&path).map_err(|_| SetupError::NoMthpSize(size_kb))?;
        let previous = host::parse_choice(&text).unwrap_or_else(|| "never".into());
        Ok(MthpSetting {
            path,
            previous,
            applied: None,
        })
    }

    /// Switches the size to `policy`.
    pub fn apply(&mut self, policy: &str) -> Result<(), SetupError> {
        self.applied = Some(policy.to_owned());
        write_file(&self.path, policy, "setting the mTHP policy")
    }
}

impl Drop for MthpSetting {
    fn drop(&mut self) {
        if let Some(policy) = &self.applied
            && let Err(e) = restore_mthp(&self.path, policy, &self.previous)
        {
            eprintln!("swapscope: {e}");
        }
    }
}

/// The policies an mTHP size's `enabled` file takes (what [`MthpSetting`] saves and sets).
pub const MTHP_POLICIES: [&str; 4] = ["always", "inherit", "madvise", "never"];

/// Whether `path` is exactly `/sys/kernel/mm/transparent_hugepage/hugepages-<N>kB/enabled`
/// (`N` decimal digits): the only files a clean-up writes an mTHP policy into.
pub fn is_mthp_enabled_path(path: &Path) -> bool {
    path.to_str()
        .and_then(|s| s.strip_prefix(host::MTHP_DIR))
        .and_then(|s| s.strip_prefix("/hugepages-"))
        .and_then(|s| s.strip_suffix("kB/enabled"))
        .is_some_and(|n| {
            (1..=10).contains(&n.len())
                && !n.starts_with('0')
                && n.bytes().all(|b| b.is_ascii_digit())
        })
}

/// Why an mTHP item of a state file is refused (`path` not an mTHP size's `enabled` file, or
/// `set`/`previous` not a policy), or `None` when it may be restored.
pub fn mthp_refusal(path: &Path, set: &str, previous: &str) -> Option<String> {
    if !is_mthp_enabled_path(path) {
        return Some(format!(
            "{} is not an mTHP size's enabled file ({}/hugepages-<N>kB/enabled): left alone",
            path.display(),
            host::MTHP_DIR
        ));
    }
    [previous, set]
        .into_iter()
        .find(|v| !MTHP_POLICIES.contains(v))
        .map(|v| {
            format!(
                "{}: {v:?} is not an mTHP policy ({}): left alone",
                path.display(),
                MTHP_POLICIES.join(", ")
            )
        })
}

/// Opens an mTHP `enabled` file, checked to be that sysfs file (a valid path, no link, on
/// sysfs).
fn open_mthp(path: &Path, write: bool) -> std::io::Result<fs::File> {
    if !is_mthp_enabled_path(path) {
        return Err(std::io::Error::other("not an mTHP enabled file"));
    }
    let f = open_checked(path, write)?;
    if fs_magic(&f)? != SYSFS_MAGIC {
        return Err(std::io::Error::other("not on sysfs"));
    }
    Ok(f)
}

/// The policy an mTHP `enabled` file selects now (`None` for any other path, or unreadable).
pub fn read_mthp(path: &Path) -> Option<String> {
    let f = open_mthp(path, false).ok()?;
    let b = read_bounded(&f, 4096).ok()?;
    host::parse_choice(&String::from_utf8_lossy(&b))
}

/// Puts `path` (an mTHP `enabled` file) back to `previous` if it still says `set` (what
/// swapscope wrote); a policy changed since is someone else's and left alone (`Err` says so),
/// and so is any path that is not an mTHP size's `enabled` file, or a value not a policy
/// ([`mthp_refusal`]).
pub fn restore_mthp(path: &Path, set: &str, previous: &str) -> Result<(), CleanupError> {
    if let Some(why) = mthp_refusal(path, set, previous) {
        return Err(CleanupError::Refused(why));
    }
    let failed = |source| CleanupError::Restore {
        path: path.display().to_string(),
        previous: previous.into(),
        source,
    };
    match read_mthp(path).as_deref() {
        Some(p) if p == previous => Ok(()),
        Some(p) if p == set => open_mthp(path, true)
            .map_err(failed)?
            .write_all(previous.as_bytes())
            .map_err(failed),
        Some(p) => Err(CleanupError::Changed {
            path: path.display().to_string(),
            now: p.into(),
            set: set.into(),
            previous: previous.into(),
        }),
        None => Err(CleanupError::Unreadable(path.display().to_string())),
    }
}

/// Parses an mTHP size such as `64K`, `64kB`, `2M`, `2048` (kB) into kB.
pub fn parse_size_kb(s: &str) -> Option<u64> {
    let t = s.trim().to_ascii_lowercase();
    let t = t.strip_suffix('b').unwrap_or(&t);
    if let Some(n) = t.strip_suffix('k') {
        n.parse().ok()
    } else if let Some(n) = t.strip_suffix('m') {
        n.parse::<u64>().ok().map(|m| m * 1024)
    } else {
        t.parse().ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn header_layout() {
        let h = swap_header(1 << 30, 4096, [1, 2, 3, 4, 5, 6, 7, 8]);
        assert_eq!(&h[4086..], b"SWAPSPACE2");
        // The label and UUID a later run recognises the device by.
        assert_eq!(&h[1052..1061], b"swapscope");
        assert_eq!(&h[1036..1044], &[1, 2, 3, 4, 5, 6, 7, 8]);
        assert_eq!(u32::from_le_bytes([h[1024], h[1025], h[1026], h[1027]]), 1);
        assert_eq!(
            u32::from_le_bytes([h[1028], h[1029], h[1030], h[1031]]),
            262_143
        );
    }

    #[test]
    fn sizes() {
        assert_eq!(parse_size_kb("64K"), Some(64));
        assert_eq!(parse_size_kb("64kB"), Some(64));
        assert_eq!(parse_size_kb("2M"), Some(2048));
        assert_eq!(parse_size_kb("16"), Some(16));
        assert_eq!(parse_size_kb("x"), None);
    }
}
