//! What a `stress` run created, written down as it goes in `/run/swapscope/stress-<pid>.json`,
//! so that a run that was killed (SIGKILL, the OOM killer, a crash) can be found and undone:
//! by the next `stress`, or by `swapscope doctor --cleanup`; `swapscope doctor` lists them.
//!
//! Each item is named in the file *before* it is created (or, for devices whose number the
//! kernel picks, as soon as it exists). A clean-up undoes only what it can prove the run made,
//! checked on the very object it then acts on; a stale or forged file gets nothing else:
//!
//! - a state file is read only when it is a regular file (never through a link, never a FIFO
//!   or device), root's, not writable by group or others, at most [`MAX_STATE_BYTES`], in a
//!   directory that is root's and not writable by others, and names the pid of its file name;
//! - a zram device is derived from its number alone (`/dev/zram<N>`, `/sys/block/zram<N>`), and
//!   removed only while it is a zram disk whose node is that device, swapped on, with the run's
//!   UUID in the swap header read through that node (no header, or none readable, is not ours);
//! - a loop device is swapped off and detached only while the run's file
//!   (`swapscope-<pid>.swap`, carrying the run's header) backs it;
//! - a cgroup is removed (and its processes killed) only at exactly `<memory cgroup
//!   root>/swapscope-<pid>-<tag>`, with no link in the path, when statfs says it is a cgroup,
//!   and the pids come from that cgroup's own `cgroup.procs`;
//! - an mTHP policy is written only into `/sys/kernel/mm/transparent_hugepage/hugepages-<N>kB/
//!   enabled` on sysfs, only when it still has the policy the run set, and only a policy
//!   (`always`, `inherit`, `madvise`, `never`).
//!
//! A state file that is refused, or whose run could not be undone fully, is renamed
//! `stress-<pid>.json.failed` after its one-line report: it is never read or retried again
//! (`doctor` lists it; what is left is for a person to look at). The file goes when the run
//! cleaned up fully.

use std::{
    fs,
    io::{Read as _, Write as _},
    os::unix::fs::{DirBuilderExt as _, FileTypeExt as _, MetadataExt as _, OpenOptionsExt as _},
    path::{Component, Path, PathBuf},
};

use serde::{Deserialize, Serialize};

use super::setup::{self, Cgroup, SetupError, ZramSeen};
use crate::host;

/// Where state files live (tmpfs: a reboot clears them, as it clears what they name).
pub const STATE_DIR: &str = "/run/swapscope";

/// For tests only: a directory to use instead of [`STATE_DIR`] (the hostile tests drive
/// `doctor --cleanup` over forged state files without touching the host's). Everything read
/// there is checked as in [`STATE_DIR`].
pub const STATE_DIR_ENV: &str = "SWAPSCOPE_STATE_DIR";

/// The largest state file read. A run's file names a cgroup, a device and a few mTHP sizes:
/// about 1 KiB.
pub const MAX_STATE_BYTES: u64 = 64 << 10;

/// The directory state files are in: [`STATE_DIR`], or [`STATE_DIR_ENV`] when set (tests).
pub fn state_dir() -> PathBuf {
    std::env::var_os(STATE_DIR_ENV)
        .filter(|v| !v.is_empty())
        .map_or_else(|| PathBuf::from(STATE_DIR), PathBuf::from)
}

/// The owner state files must have: root, as `stress` runs as root.
const STATE_OWNER: u32 = 0;

/// An mTHP size the run switched.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct MthpSaved {
    /// The size's `enabled` file.
    pub path: PathBuf,
    /// The policy before the run.
    pub previous: String,
    /// The policy the run set.
    pub set: String,
}

/// A swap device the run created.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeviceSaved {
    /// `/dev/zram<N>` or `/dev/loop<N>`.
    pub dev: PathBuf,
    /// zram: the device number `hot_add` gave.
    pub zram_id: Option<u32>,
    /// loop: the backing file.
    pub file: Option<PathBuf>,
    /// The UUID written into its swap header (hex).
    pub uuid: String,
}

/// Everything one run created.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct RunState {
    pub pid: u32,
    /// The process's start time (clock ticks after boot, `/proc/<pid>/stat`): tells the run
    /// from a later process that reuses its pid.
    pub start_ticks: u64,
    pub mthp: Vec<MthpSaved>,
    pub device: Option<DeviceSaved>,
    pub cgroup: Option<PathBuf>,
}

fn hex(b: [u8; 8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

/// The 8 bytes of a UUID written by [`hex`].
fn parse_hex8(s: &str) -> Option<[u8; 8]> {
    if s.len() != 16 || !s.is_ascii() {
        return None;
    }
    let mut out = [0u8; 8];
    for (i, o) in out.iter_mut().enumerate() {
        *o = u8::from_str_radix(s.get(2 * i..2 * i + 2)?, 16).ok()?;
    }
    Some(out)
}

/// What may be done about one item a state file names.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Verdict {
    /// Not there any more: nothing to do.
    Gone,
    /// Still there, and proven the run's own: undo it.
    Undo,
    /// Not proven the run's own (or not something swapscope makes): left alone, for this
    /// one-line reason.
    Refuse(String),
}

/// Why cgroup `path` of run `pid` is not one swapscope makes: it must be exactly
/// `<root>/swapscope-<pid>-<tag>` (`tag` lowercase letters and digits), byte for byte (no
/// `..`, `.`, doubled or trailing slash).
pub fn cgroup_path_check(path: &Path, root: &Path, pid: u32) -> Result<(), String> {
    let name = path
        .file_name()
        .and_then(|n| n.to_str())
        .ok_or("has no name")?;
    if !root.is_absolute() || path.as_os_str() != root.join(name).as_os_str() {
        return Err(format!(
            "is not directly under the memory cgroup root {}",
            root.display()
        ));
    }
    let tag = name
        .strip_prefix(&format!("swapscope-{pid}-"))
        .ok_or_else(|| format!("is not named swapscope-{pid}-<tag> (the run's own)"))?;
    if tag.is_empty()
        || tag.len() > 32
        || !tag
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit())
    {
        return Err(format!(
            "is not named swapscope-{pid}-<tag> (the run's own)"
        ));
    }
    Ok(())
}

/// What may be done about zram device `id` that `d` names, given what is there now
/// ([`setup::zram_seen`]): undone only while it is the swap device the run made.
pub fn zram_verdict(d: &DeviceSaved, id: u32, seen: &ZramSeen) -> Verdict {
    let dev = format!("/dev/zram{id}");
    let refuse = |why: &str| Verdict::Refuse(format!("zram{id}: {why}: left alone"));
    if d.dev.as_os_str() != dev.as_str() {
        return refuse(&format!(
            "the state file names device {} with zram number {id}",
            d.dev.display()
        ));
    }
    let Some(uuid) = parse_hex8(&d.uuid) else {
        return refuse("the state file's swap UUID is not 16 hex digits");
    };
    if !seen.present {
        return Verdict::Gone;
    }
    if let Err(why) = &seen.node {
        return refuse(why);
    }
    match seen.header_uuid {
        None => refuse("no swapscope swap header could be read from it"),
        Some(u) if u != uuid => refuse("its swap header carries another run's UUID"),
        Some(_) if !seen.swapped_on => refuse(
            "it carries the run's swap header but is not swapped on (remove it by hand if it is unused)",
        ),
        Some(_) => Verdict::Undo,
    }
}

/// Why loop device `dev` and file `file` of run `pid` are not what `stress --loop-swap` makes
/// (`/dev/loop<N>`, and an absolute `.../swapscope-<pid>.swap` with no `..`).
pub fn loop_paths_check(dev: &Path, file: &Path, pid: u32) -> Result<(), String> {
    let loop_ok = dev
        .to_str()
        .and_then(|s| s.strip_prefix("/dev/loop"))
        .is_some_and(|n| (1..=7).contains(&n.len()) && n.bytes().all(|b| b.is_ascii_digit()));
    if !loop_ok {
        return Err(format!("{} is not /dev/loop<N>", dev.display()));
    }
    let file_ok = file.is_absolute()
        && file
            .components()
            .all(|c| matches!(c, Component::RootDir | Component::Normal(_)))
        && file
            .file_name()
            .is_some_and(|n| n.to_str() == Some(format!("swapscope-{pid}.swap").as_str()));
    if !file_ok {
        return Err(format!(
            "{} is not the run's swap file (swapscope-{pid}.swap)",
            file.display()
        ));
    }
    Ok(())
}

/// What may be done about mTHP item `m`, whose file now selects `now` (read only once
/// [`setup::mthp_refusal`] passed).
pub fn mthp_verdict(m: &MthpSaved, now: Option<&str>) -> Verdict {
    if let Some(why) = setup::mthp_refusal(&m.path, &m.set, &m.previous) {
        return Verdict::Refuse(why);
    }
    match now {
        _ if m.set == m.previous => Verdict::Gone,
        Some(p) if p == m.previous => Verdict::Gone,
        Some(p) if p == m.set => Verdict::Undo,
        Some(p) => Verdict::Refuse(format!(
            "{} is {p} now, not the {} swapscope set: left alone (it was {})",
            m.path.display(),
            m.set,
            m.previous
        )),
        None => Verdict::Refuse(format!("could not read {}", m.path.display())),
    }
}

/// One item a state file names.
enum Item<'a> {
    Cgroup(&'a Path),
    Device(&'a DeviceSaved),
    Mthp(&'a MthpSaved),
}

impl RunState {
    /// Whether the process that wrote this still runs.
    pub fn alive(&self) -> bool {
        host::process_start_ticks(self.pid) == Some(self.start_ticks)
    }

    fn cgroup_verdict(&self, c: &Path) -> Verdict {
        let refuse =
            |why: String| Verdict::Refuse(format!("cgroup {}: {why}: left alone", c.display()));
        let Ok((root, _)) = Cgroup::locate() else {
            return refuse("this host has no memory cgroup hierarchy".into());
        };
        if let Err(why) = cgroup_path_check(c, &root, self.pid) {
            return refuse(why);
        }
        match fs::symlink_metadata(c) {
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Verdict::Gone,
            Err(e) => return refuse(e.to_string()),
            Ok(m) if !m.is_dir() => return refuse("is not a directory".into()),
            Ok(_) => {}
        }
        // No symbolic link anywhere on the way: it resolves to itself under the root.
        let here = fs::canonicalize(c).ok();
        let want = fs::canonicalize(&root)
            .ok()
            .zip(c.file_name())
            .map(|(r, n)| r.join(n));
        if here.is_none() || here != want {
            return refuse("resolves elsewhere (a symbolic link on the way)".into());
        }
        match setup::is_cgroup_dir(c) {
            Ok(true) => Verdict::Undo,
            Ok(false) => refuse("is not a cgroup (statfs)".into()),
            Err(e) => refuse(e.to_string()),
        }
    }

    fn device_verdict(&self, d: &DeviceSaved) -> Verdict {
        match (d.zram_id, &d.file) {
            (Some(id), None) => zram_verdict(d, id, &setup::zram_seen(id)),
            (None, Some(file)) => {
                if let Err(why) = loop_paths_check(&d.dev, file, self.pid) {
                    return Verdict::Refuse(format!("{why}: left alone"));
                }
                let attached = setup::loop_backing(&d.dev).is_some_and(|b| &b == file);
                if !attached && fs::symlink_metadata(file).is_err() {
                    return Verdict::Gone;
                }
                match (setup::swap_header_uuid(file), parse_hex8(&d.uuid)) {
                    (Some(u), Some(want)) if u == want => Verdict::Undo,
                    _ => Verdict::Refuse(format!(
                        "{} does not carry the run's swap header: left alone",
                        file.display()
                    )),
                }
            }
            _ => Verdict::Refuse(format!(
                "device {}: the state file names neither a zram number nor a loop file alone: left alone",
                d.dev.display()
            )),
        }
    }

    /// Each item the run noted, newest first (cgroup, device, mTHP policies), with what may be
    /// done about it.
    fn items(&self) -> Vec<(Item<'_>, Verdict)> {
        let mut out = Vec::new();
        if let Some(c) = &self.cgroup {
            out.push((Item::Cgroup(c), self.cgroup_verdict(c)));
        }
        if let Some(d) = &self.device {
            out.push((Item::Device(d), self.device_verdict(d)));
        }
        for m in &self.mthp {
            // Read only once the path is an mTHP size's `enabled` file.
            let now = setup::mthp_refusal(&m.path, &m.set, &m.previous)
                .is_none()
                .then(|| setup::read_mthp(&m.path))
                .flatten();
            out.push((Item::Mthp(m), mthp_verdict(m, now.as_deref())));
        }
        out
    }

    /// What is still there of what the run created, one line each; and what is there but
    /// refused, with the reason.
    pub fn remaining(&self) -> Vec<String> {
        let (mut left, refused) = self.leftovers();
        left.extend(refused);
        left
    }

    /// What is still there and proven the run's own (what [`RunState::undo`] undoes), and
    /// what is refused (left alone), one line each.
    pub fn leftovers(&self) -> (Vec<String>, Vec<String>) {
        let (mut left, mut refused) = (Vec::new(), Vec::new());
        for (item, v) in self.items() {
            match v {
                Verdict::Gone => {}
                Verdict::Refuse(why) => refused.push(why),
                Verdict::Undo => left.push(match item {
                    Item::Cgroup(c) => format!("cgroup {}", c.display()),
                    Item::Device(d) => format!(
                        "swap device {}{}",
                        d.dev.display(),
                        if setup::is_swapped_on(&d.dev) {
                            " (swapped on)"
                        } else {
                            ""
                        }
                    ),
                    Item::Mthp(m) => {
                        format!("{} = {} (was {})", m.path.display(), m.set, m.previous)
                    }
                }),
            }
        }
        (left, refused)
    }

    /// Undoes what is left and proven the run's own, newest first (cgroup and its processes,
    /// the device, the mTHP policies). Returns what was done and what could not be or was
    /// refused.
    pub fn undo(&self) -> (Vec<String>, Vec<String>) {
        let (mut done, mut failed) = (Vec::new(), Vec::new());
        for (item, v) in self.items() {
            match v {
                Verdict::Gone => {}
                Verdict::Refuse(why) => failed.push(why),
                Verdict::Undo => {
                    let (what, r) = match item {
                        Item::Cgroup(c) => (
                            format!("removed cgroup {}", c.display()),
                            setup::remove_cgroup(c),
                        ),
                        Item::Device(d) => (
                            format!("removed swap device {}", d.dev.display()),
                            match (d.zram_id, &d.file) {
                                (Some(id), _) => setup::remove_zram(id),
                                (None, Some(file)) => setup::remove_loop(&d.dev, file),
                                (None, None) => Ok(()),
                            },
                        ),
                        Item::Mthp(m) => (
                            format!("restored {} to {}", m.path.display(), m.previous),
                            setup::restore_mthp(&m.path, &m.set, &m.previous),
                        ),
                    };
                    match r {
                        Ok(()) => done.push(what),
                        Err(e) => failed.push(e.to_string()),
                    }
                }
            }
        }
        (done, failed)
    }
}

/// The state file of the running `stress`, rewritten (atomically) as it creates things.
pub struct StateFile {
    path: PathBuf,
    pub state: RunState,
}

impl StateFile {
    /// Starts this process's state file (nothing created yet), in a directory a later
    /// clean-up will read ([`check_dir`]).
    pub fn create() -> Result<Self, SetupError> {
        let dir = state_dir();
        let err = |source| SetupError::Io {
            what: "creating the state directory",
            path: dir.display().to_string(),
            source,
        };
        fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(&dir)
            .map_err(err)?;
        // SAFETY: geteuid has no preconditions and cannot fail.
        check_dir(&dir, unsafe { libc::geteuid() })
            .map_err(|why| err(std::io::Error::other(why)))?;
        let pid = std::process::id();
        let f = StateFile {
            path: dir.join(format!("stress-{pid}.json")),
            state: RunState {
                pid,
                start_ticks: host::process_start_ticks(pid).unwrap_or(0),
                ..RunState::default()
            },
        };
        f.save()?;
        Ok(f)
    }

    /// Writes the state (a new file renamed over the old one: never half-written).
    pub fn save(&self) -> Result<(), SetupError> {
        let err = |source| SetupError::Io {
            what: "writing the state file",
            path: self.path.display().to_string(),
            source,
        };
        let json = serde_json::to_vec_pretty(&self.state)
            .map_err(std::io::Error::other)
            .map_err(err)?;
        let tmp = self.path.with_extension("json.new");
        let _ = fs::remove_file(&tmp);
        let mut f = fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .custom_flags(libc::O_NOFOLLOW)
            .open(&tmp)
            .map_err(err)?;
        f.write_all(&json).map_err(err)?;
        f.sync_all().map_err(err)?;
        fs::rename(&tmp, &self.path).map_err(err)
    }

    pub fn note_mthp(&mut self, m: MthpSaved) -> Result<(), SetupError> {
        self.state.mthp.push(m);
        self.save()
    }

    pub fn note_device(
        &mut self,
        dev: &Path,
        zram_id: Option<u32>,
        file: Option<&Path>,
        uuid: [u8; 8],
    ) -> Result<(), SetupError> {
        self.state.device = Some(DeviceSaved {
            dev: dev.to_path_buf(),
            zram_id,
            file: file.map(Path::to_path_buf),
            uuid: hex(uuid),
        });
        self.save()
    }

    pub fn note_cgroup(&mut self, path: &Path) -> Result<(), SetupError> {
        self.state.cgroup = Some(path.to_path_buf());
        self.save()
    }

    /// After the run's own clean-up: removes the file if nothing is left, else keeps it (for
    /// `doctor --cleanup`) and returns what is left.
    pub fn finish(self) -> Vec<String> {
        let left = self.state.remaining();
        if left.is_empty() {
            let _ = fs::remove_file(&self.path);
        }
        left
    }
}

/// Why a state file is not read: nothing it names is acted on.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum Refusal {
    #[error("is a {0}, not a regular file")]
    NotRegular(&'static str),
    #[error("is {0} bytes, more than a state file's {max}", max = MAX_STATE_BYTES)]
    TooLarge(u64),
    #[error("is writable by group or others (mode {0:o})")]
    Writable(u32),
    #[error("is owned by uid {0}, not {1} (stress runs as root)")]
    Owner(u32, u32),
    #[error("was replaced while it was opened")]
    Replaced,
    #[error("names pid {0}, not the {1} of its file name")]
    PidMismatch(u32, u32),
}

/// Why a state file could not be taken in.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StateFileError {
    #[error("cannot read it: {0}")]
    Read(#[from] std::io::Error),
    #[error("not a state file: {0}")]
    Parse(#[from] serde_json::Error),
    #[error("refused, never acted on: {0}")]
    Refused(#[from] Refusal),
}

/// What kind of file a file type is, in words.
fn kind_of(t: fs::FileType) -> &'static str {
    if t.is_file() {
        "regular file"
    } else if t.is_dir() {
        "directory"
    } else if t.is_symlink() {
        "symbolic link"
    } else if t.is_fifo() {
        "FIFO"
    } else if t.is_socket() {
        "socket"
    } else if t.is_block_device() {
        "block device"
    } else if t.is_char_device() {
        "character device"
    } else {
        "special file"
    }
}

/// Whether a file of `kind` ([`kind_of`]), `mode`, owner `uid` and `size` bytes may be read as
/// a state file of `owner`'s.
pub fn check_state_meta(
    kind: &'static str,
    mode: u32,
    uid: u32,
    size: u64,
    owner: u32,
) -> Result<(), Refusal> {
    if kind != "regular file" {
        return Err(Refusal::NotRegular(kind));
    }
    if size > MAX_STATE_BYTES {
        return Err(Refusal::TooLarge(size));
    }
    if mode & 0o022 != 0 {
        return Err(Refusal::Writable(mode & 0o7777));
    }
    if uid != owner {
        return Err(Refusal::Owner(uid, owner));
    }
    Ok(())
}

/// Reads state file `path` (named for pid `name_pid`) if it may be read ([`check_state_meta`],
/// on the name and again on the descriptor opened, which must be the same file): never through
/// a link, never blocking, at most [`MAX_STATE_BYTES`].
fn read_state(path: &Path, name_pid: u32, owner: u32) -> Result<RunState, StateFileError> {
    let m = fs::symlink_metadata(path)?;
    check_state_meta(kind_of(m.file_type()), m.mode(), m.uid(), m.len(), owner)?;
    let f = setup::open_checked(path, false).map_err(|e| {
        if e.raw_os_error() == Some(libc::ELOOP) {
            StateFileError::from(Refusal::Replaced)
        } else {
            e.into()
        }
    })?;
    let o = f.metadata()?;
    if (o.dev(), o.ino()) != (m.dev(), m.ino()) {
        return Err(Refusal::Replaced.into());
    }
    check_state_meta(kind_of(o.file_type()), o.mode(), o.uid(), o.len(), owner)?;
    let mut b = Vec::new();
    (&f).take(MAX_STATE_BYTES + 1).read_to_end(&mut b)?;
    if b.len() as u64 > MAX_STATE_BYTES {
        return Err(Refusal::TooLarge(b.len() as u64).into());
    }
    let s: RunState = serde_json::from_slice(&b)?;
    if s.pid != name_pid {
        return Err(Refusal::PidMismatch(s.pid, name_pid).into());
    }
    Ok(s)
}

/// Why state directory `dir` is not read (a link, not a directory, not `owner`'s, writable by
/// group or others): whoever could write there could forge what a clean-up undoes.
pub fn check_dir(dir: &Path, owner: u32) -> Result<(), String> {
    let m =
        fs::symlink_metadata(dir).map_err(|e| format!("state directory {}: {e}", dir.display()))?;
    let why = if !m.is_dir() {
        format!("is a {}, not a directory", kind_of(m.file_type()))
    } else if m.mode() & 0o022 != 0 {
        format!(
            "is writable by group or others (mode {:o})",
            m.mode() & 0o7777
        )
    } else if m.uid() != owner {
        format!("is owned by uid {}, not {owner}", m.uid())
    } else {
        return Ok(());
    };
    Err(format!(
        "state directory {} {why}: no state file in it is read",
        dir.display()
    ))
}

/// The pid in a state file's name, `stress-<pid>.json`.
pub fn state_name_pid(name: &str) -> Option<u32> {
    let n = name.strip_prefix("stress-")?.strip_suffix(".json")?;
    if n.is_empty() || n.len() > 10 || !n.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    n.parse().ok()
}

/// A state file found in the state directory.
#[derive(Debug)]
pub struct Found {
    pub file: PathBuf,
    /// `Err` when the file could not be read or parsed, or was refused.
    pub state: Result<RunState, StateFileError>,
}

impl Found {
    /// A run that is dead (a file that could not be taken in is not).
    pub fn dead(&self) -> bool {
        self.state.as_ref().is_ok_and(|s| !s.alive())
    }
}

/// What is in the state directory.
#[derive(Debug, Default)]
pub struct Scan {
    /// Why the directory itself is not read ([`check_dir`]): then nothing in it is.
    pub dir_refused: Option<String>,
    /// `stress-<pid>.json`, sorted by name.
    pub found: Vec<Found>,
    /// `stress-<pid>.json.failed`: set aside by an earlier clean-up, never read again.
    pub set_aside: Vec<PathBuf>,
}

/// Every state file in [`state_dir`].
pub fn scan() -> Scan {
    scan_in(&state_dir(), STATE_OWNER)
}

/// Every state file in `dir`, read only when `owner`'s ([`check_dir`], [`check_state_meta`]).
pub fn scan_in(dir: &Path, owner: u32) -> Scan {
    let mut out = Scan::default();
    match fs::symlink_metadata(dir) {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return out,
        _ => {}
    }
    if let Err(why) = check_dir(dir, owner) {
        out.dir_refused = Some(why);
        return out;
    }
    let mut names: Vec<String> = fs::read_dir(dir)
        .map(|d| {
            d.flatten()
                .filter_map(|e| e.file_name().into_string().ok())
                .collect()
        })
        .unwrap_or_default();
    names.sort();
    for name in names {
        if let Some(pid) = state_name_pid(&name) {
            let file = dir.join(&name);
            match read_state(&file, pid, owner) {
                // Gone since the listing: a run that finished.
                Err(StateFileError::Read(e)) if e.kind() == std::io::ErrorKind::NotFound => {}
                state => out.found.push(Found { file, state }),
            }
        } else if name
            .strip_suffix(".failed")
            .and_then(state_name_pid)
            .is_some()
        {
            out.set_aside.push(dir.join(&name));
        }
    }
    out
}

/// What [`cleanup_dead`] did about one state file.
#[derive(Clone, Debug)]
pub struct Undone {
    pub file: PathBuf,
    pub done: Vec<String>,
    /// What could not be undone or was refused, one line each.
    pub failed: Vec<String>,
    /// When something failed: that the file was set aside (renamed `.failed`, never read
    /// again), or why it could not be.
    pub set_aside: Option<String>,
}

/// Renames state file `file` to `<file>.failed`, out of every later clean-up's way.
fn set_aside(file: &Path) -> String {
    let to = file.with_extension("json.failed");
    match fs::rename(file, &to) {
        Ok(()) => format!(
            "{} renamed to {}: not read or retried again; undo what is left by hand, then delete it",
            file.display(),
            to.display()
        ),
        Err(e) => format!(
            "could not rename {} to {}: {e}",
            file.display(),
            to.display()
        ),
    }
}

/// Undoes the leftovers of every dead run; a run cleaned up fully loses its state file, one
/// that could not be (or a file refused) is set aside as `.failed` and never replayed.
pub fn cleanup_dead() -> Vec<Undone> {
    cleanup_dead_in(&state_dir(), STATE_OWNER)
}

/// [`cleanup_dead`] over the state files in `dir` that are `owner`'s.
pub fn cleanup_dead_in(dir: &Path, owner: u32) -> Vec<Undone> {
    let scan = scan_in(dir, owner);
    if let Some(why) = scan.dir_refused {
        return vec![Undone {
            file: dir.to_path_buf(),
            done: Vec::new(),
            failed: vec![why],
            set_aside: None,
        }];
    }
    let mut out = Vec::new();
    for f in scan.found {
        let (done, failed) = match &f.state {
            Err(e) => (Vec::new(), vec![format!("state file {e}")]),
            Ok(state) if state.alive() => continue,
            Ok(state) => state.undo(),
        };
        let set_aside = if failed.is_empty() {
            let _ = fs::remove_file(&f.file);
            None
        } else {
            Some(set_aside(&f.file))
        };
        out.push(Undone {
            file: f.file,
            done,
            failed,
            set_aside,
        });
    }
    out
}

#[cfg(test)]
mod tests {
    use std::{
        process::{Child, Command},
        sync::mpsc,
        time::Duration,
    };

    use super::*;

    /// A temporary directory removed on drop (the crate has no tempfile dependency).
    struct TempDir(PathBuf);
    impl TempDir {
        fn new(name: &str) -> Self {
            let p = std::env::temp_dir().join(format!(
                "swapscope-state-test-{}-{name}",
                std::process::id()
            ));
            let _ = fs::remove_dir_all(&p);
            fs::DirBuilder::new()
                .mode(0o700)
                .create(&p)
                .unwrap_or_else(|e| panic!("{}: {e}", p.display()));
            TempDir(p)
        }
    }
    impl Drop for TempDir {
        fn drop(&mut self) {
            let _ = fs::remove_dir_all(&self.0);
        }
    }

    /// A child process killed and reaped on drop.
    struct Sleeper(Child);
    impl Sleeper {
        fn start() -> Self {
            Sleeper(
                Command::new("sleep")
                    .arg("30")
                    .spawn()
                    .unwrap_or_else(|e| panic!("sleep: {e}")),
            )
        }
        fn alive(&mut self) -> bool {
            matches!(self.0.try_wait(), Ok(None))
        }
    }
    impl Drop for Sleeper {
        fn drop(&mut self) {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }

    fn euid() -> u32 {
        // SAFETY: geteuid has no preconditions and cannot fail.
        unsafe { libc::geteuid() }
    }

    fn write_mode(path: &Path, bytes: &[u8], mode: u32) {
        let mut f = fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(mode)
            .open(path)
            .unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        f.write_all(bytes)
            .unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    }

    /// A pid no process has.
    const DEAD: u32 = u32::MAX - 1;

    #[test]
    fn state_roundtrips_and_a_dead_pid_is_dead() {
        let s = RunState {
            pid: DEAD,
            start_ticks: 5,
            mthp: vec![MthpSaved {
                path: "/x/hugepages-64kB/enabled".into(),
                previous: "never".into(),
                set: "always".into(),
            }],
            device: Some(DeviceSaved {
                dev: "/dev/zram9".into(),
                zram_id: Some(9),
                file: None,
                uuid: hex([1, 2, 3, 4, 5, 6, 7, 8]),
            }),
            cgroup: Some("/sys/fs/cgroup/memory/swapscope-1-stress".into()),
        };
        let json = serde_json::to_string(&s).expect("serialises");
        assert_eq!(serde_json::from_str::<RunState>(&json).expect("parses"), s);
        assert!(!s.alive());
        let me = RunState {
            pid: std::process::id(),
            start_ticks: host::process_start_ticks(std::process::id()).unwrap_or(0),
            ..RunState::default()
        };
        assert!(me.alive());
        assert!(
            !RunState {
                start_ticks: me.start_ticks + 1,
                ..me
            }
            .alive()
        );
        assert_eq!(
            parse_hex8(&hex([1, 2, 3, 4, 5, 6, 7, 0xff])),
            Some([1, 2, 3, 4, 5, 6, 7, 0xff])
        );
        assert_eq!(parse_hex8("0102"), None);
        assert_eq!(parse_hex8("01020304050607zz"), None);
    }

    #[test]
    fn a_foreign_cgroup_is_left_alone() {
        let s = RunState {
            pid: 42,
            cgroup: Some(std::env::temp_dir()),
            ..RunState::default()
        };
        let (done, failed) = s.undo();
        assert!(done.is_empty());
        assert!(failed[0].contains("left alone"), "{failed:?}");
        assert!(std::env::temp_dir().exists());
    }

    #[test]
    fn a_cgroup_path_is_exactly_the_runs_own_under_the_root() {
        let root = Path::new("/sys/fs/cgroup");
        let ok = |p: &str| cgroup_path_check(Path::new(p), root, 42);
        assert_eq!(ok("/sys/fs/cgroup/swapscope-42-stress"), Ok(()));
        for bad in [
            "/sys/fs/cgroup/swapscope-43-stress",
            "/sys/fs/cgroup/swapscope-42-",
            "/sys/fs/cgroup/swapscope-42-Stress",
            "/sys/fs/cgroup/swapscope-42-stress/",
            "/sys/fs/cgroup/./swapscope-42-stress",
            "/sys/fs/cgroup//swapscope-42-stress",
            "/sys/fs/cgroup/x/../swapscope-42-stress",
            "/sys/fs/cgroup/system.slice/swapscope-42-stress",
            "/tmp/swapscope-42-stress",
            "sys/fs/cgroup/swapscope-42-stress",
            "/sys/fs/cgroup/..",
            "/sys/fs/cgroup",
        ] {
            assert!(ok(bad).is_err(), "{bad} accepted");
        }
        // v1: the memory controller's own hierarchy.
        assert_eq!(
            cgroup_path_check(
                Path::new("/sys/fs/cgroup/memory/swapscope-7-stress"),
                Path::new("/sys/fs/cgroup/memory"),
                7
            ),
            Ok(())
        );
    }

    /// A plain directory named like the run's cgroup, with a text file `cgroup.procs` listing a
    /// live process: neither the state file's undo nor `remove_cgroup` itself kills it or
    /// removes anything.
    #[test]
    fn a_plain_directory_with_a_cgroup_procs_file_is_not_acted_on() {
        let dir = TempDir::new("cgroup");
        let mut victim = Sleeper::start();
        let pid = 4242;
        let cg = dir.0.join(format!("swapscope-{pid}-stress"));
        fs::create_dir(&cg).unwrap_or_else(|e| panic!("{e}"));
        fs::write(
            cg.join("cgroup.procs"),
            format!("{}\n-1\n0\n", victim.0.id()),
        )
        .unwrap_or_else(|e| panic!("{e}"));
        assert!(!setup::is_cgroup_dir(&cg).unwrap_or(true));
        let s = RunState {
            pid,
            cgroup: Some(cg.clone()),
            ..RunState::default()
        };
        let (done, failed) = s.undo();
        assert!(done.is_empty(), "{done:?}");
        assert!(
            failed.len() == 1 && failed[0].contains("left alone"),
            "{failed:?}"
        );
        assert!(s.remaining()[0].contains("left alone"));
        let r = setup::remove_cgroup(&cg);
        assert!(matches!(r, Err(setup::CleanupError::NotCgroup(_))), "{r:?}");
        // Also through a symbolic link to it.
        let link = dir.0.join(format!("swapscope-{pid}-link"));
        std::os::unix::fs::symlink(&cg, &link).unwrap_or_else(|e| panic!("{e}"));
        assert!(setup::remove_cgroup(&link).is_err());
        assert!(victim.alive(), "the listed process was killed");
        assert!(cg.join("cgroup.procs").exists());
        // The real hierarchy is a cgroup (read-only look).
        if let Ok((root, _)) = Cgroup::locate() {
            assert!(setup::is_cgroup_dir(&root).unwrap_or(false));
        }
    }

    /// An mTHP "setting" that is a regular file (and the global THP switch, and a policy that
    /// is not one) is never written.
    #[test]
    fn a_forged_mthp_path_or_value_is_not_written() {
        let dir = TempDir::new("mthp");
        let fake = dir.0.join("hugepages-64kB").join("enabled");
        fs::create_dir(dir.0.join("hugepages-64kB")).unwrap_or_else(|e| panic!("{e}"));
        let before = "[always] inherit madvise never\n";
        fs::write(&fake, before).unwrap_or_else(|e| panic!("{e}"));
        let item = |path: &Path, previous: &str| MthpSaved {
            path: path.to_path_buf(),
            previous: previous.into(),
            set: "always".into(),
        };
        let s = RunState {
            pid: DEAD,
            mthp: vec![item(&fake, "never")],
            ..RunState::default()
        };
        let (done, failed) = s.undo();
        assert!(done.is_empty(), "{done:?}");
        assert!(
            failed[0].contains("is not an mTHP size's enabled file"),
            "{failed:?}"
        );
        assert_eq!(fs::read_to_string(&fake).unwrap_or_default(), before);
        assert!(setup::restore_mthp(&fake, "always", "never").is_err());
        assert_eq!(fs::read_to_string(&fake).unwrap_or_default(), before);

        let ok = |p: &str| setup::is_mthp_enabled_path(Path::new(p));
        assert!(ok(
            "/sys/kernel/mm/transparent_hugepage/hugepages-64kB/enabled"
        ));
        assert!(ok(
            "/sys/kernel/mm/transparent_hugepage/hugepages-2048kB/enabled"
        ));
        for bad in [
            "/sys/kernel/mm/transparent_hugepage/enabled",
            "/sys/kernel/mm/transparent_hugepage/hugepages-kB/enabled",
            "/sys/kernel/mm/transparent_hugepage/hugepages-064kB/enabled",
            "/sys/kernel/mm/transparent_hugepage/hugepages-64kB/../enabled",
            "/sys/kernel/mm/transparent_hugepage/hugepages-64kB/../../../../block/sda/queue/scheduler",
            "/sys/kernel/mm/transparent_hugepage/hugepages-64kB/shmem_enabled",
            "/sys/kernel/mm/transparent_hugepage/hugepages-64kB/enabled/",
            "/sys/kernel/mm/transparent_hugepage//hugepages-64kB/enabled",
            "/sys/block/sda/queue/scheduler",
        ] {
            assert!(!ok(bad), "{bad} accepted");
        }
        // A real path, a value that is not a policy: refused before anything is read.
        let real = Path::new("/sys/kernel/mm/transparent_hugepage/hugepages-64kB/enabled");
        for (set, previous) in [
            ("always", "mq-deadline"),
            ("always", ""),
            ("[always]", "never"),
        ] {
            assert!(matches!(
                mthp_verdict(
                    &MthpSaved {
                        path: real.into(),
                        previous: previous.into(),
                        set: set.into()
                    },
                    Some("always")
                ),
                Verdict::Refuse(_)
            ));
        }
        let m = item(real, "never");
        assert_eq!(mthp_verdict(&m, Some("always")), Verdict::Undo);
        assert_eq!(mthp_verdict(&m, Some("never")), Verdict::Gone);
        assert!(matches!(
            mthp_verdict(&m, Some("madvise")),
            Verdict::Refuse(_)
        ));
        assert!(matches!(mthp_verdict(&m, None), Verdict::Refuse(_)));
    }

    /// Only the device the state names, seen to be swapped on with the run's UUID, is removed.
    #[test]
    fn a_zram_device_without_the_recorded_uuid_is_refused() {
        let uuid = [1, 2, 3, 4, 5, 6, 7, 8];
        let d = DeviceSaved {
            dev: "/dev/zram3".into(),
            zram_id: Some(3),
            file: None,
            uuid: hex(uuid),
        };
        let ours = ZramSeen {
            present: true,
            node: Ok(()),
            header_uuid: Some(uuid),
            swapped_on: true,
        };
        assert_eq!(zram_verdict(&d, 3, &ours), Verdict::Undo);
        let refused = |seen: ZramSeen| matches!(zram_verdict(&d, 3, &seen), Verdict::Refuse(_));
        // Another run's header, no header (a foreign zram holding data), an unreadable one.
        assert!(refused(ZramSeen {
            header_uuid: Some([9; 8]),
            ..ours.clone()
        }));
        assert!(refused(ZramSeen {
            header_uuid: None,
            swapped_on: false,
            ..ours.clone()
        }));
        assert!(refused(ZramSeen {
            header_uuid: None,
            ..ours.clone()
        }));
        // The header, but not swapped on: not proven in use as the run's swap.
        assert!(refused(ZramSeen {
            swapped_on: false,
            ..ours.clone()
        }));
        // The node is not that device.
        assert!(refused(ZramSeen {
            node: Err("not zram3".into()),
            ..ours.clone()
        }));
        // The check and the action on different devices: `dev` one, `zram_id` another.
        let split = DeviceSaved {
            dev: "/dev/zram1".into(),
            ..d.clone()
        };
        assert!(matches!(zram_verdict(&split, 3, &ours), Verdict::Refuse(_)));
        let bad_uuid = DeviceSaved {
            uuid: "zz".into(),
            ..d.clone()
        };
        assert!(matches!(
            zram_verdict(&bad_uuid, 3, &ours),
            Verdict::Refuse(_)
        ));
        assert_eq!(
            zram_verdict(
                &d,
                3,
                &ZramSeen {
                    present: false,
                    ..ZramSeen::default()
                }
            ),
            Verdict::Gone
        );
        // A device number the host does not have, seen for real: gone, nothing done.
        let far = DeviceSaved {
            dev: "/dev/zram4000".into(),
            zram_id: Some(4000),
            ..d.clone()
        };
        let s = RunState {
            pid: DEAD,
            device: Some(far),
            ..RunState::default()
        };
        assert_eq!(s.undo(), (Vec::new(), Vec::new()));
        // Loop: the device and file the run makes, nothing else.
        assert!(
            loop_paths_check(
                Path::new("/dev/loop7"),
                Path::new("/tmp/swapscope-5.swap"),
                5
            )
            .is_ok()
        );
        assert!(
            loop_paths_check(Path::new("/dev/sda"), Path::new("/tmp/swapscope-5.swap"), 5).is_err()
        );
        assert!(loop_paths_check(Path::new("/dev/loop7"), Path::new("/etc/passwd"), 5).is_err());
        assert!(
            loop_paths_check(
                Path::new("/dev/loop7"),
                Path::new("/tmp/../swapscope-5.swap"),
                5
            )
            .is_err()
        );
        assert!(
            loop_paths_check(
                Path::new("/dev/loop7"),
                Path::new("/tmp/swapscope-6.swap"),
                5
            )
            .is_err()
        );
    }

    #[test]
    fn state_file_metadata_checks() {
        let ok = |kind, mode, uid, size| check_state_meta(kind, mode, uid, size, 0);
        assert_eq!(ok("regular file", 0o100600, 0, 900), Ok(()));
        assert_eq!(ok("regular file", 0o100644, 0, 900), Ok(()));
        assert_eq!(ok("FIFO", 0o10600, 0, 0), Err(Refusal::NotRegular("FIFO")));
        assert_eq!(
            ok("symbolic link", 0o120777, 0, 9),
            Err(Refusal::NotRegular("symbolic link"))
        );
        assert_eq!(
            ok("regular file", 0o100600, 0, MAX_STATE_BYTES + 1),
            Err(Refusal::TooLarge(MAX_STATE_BYTES + 1))
        );
        assert_eq!(
            ok("regular file", 0o100620, 0, 9),
            Err(Refusal::Writable(0o620))
        );
        assert_eq!(
            ok("regular file", 0o100602, 0, 9),
            Err(Refusal::Writable(0o602))
        );
        assert_eq!(
            ok("regular file", 0o100600, 1000, 9),
            Err(Refusal::Owner(1000, 0))
        );
        assert_eq!(state_name_pid("stress-123.json"), Some(123));
        for bad in [
            "stress-.json",
            "stress-1a.json",
            "stress-1.json.failed",
            "stress-99999999999.json",
            "x-1.json",
        ] {
            assert_eq!(state_name_pid(bad), None, "{bad}");
        }
    }

    /// A FIFO, a link to /dev/zero, a file too big and a group-writable one are skipped with a
    /// reason, at once (a FIFO hung `doctor`, the link made it read 2 GB).
    #[test]
    fn special_big_or_writable_state_files_are_skipped_without_hanging() {
        let dir = TempDir::new("scan");
        let me = euid();
        let path = |pid: u32| dir.0.join(format!("stress-{pid}.json"));
        let fifo = std::ffi::CString::new(path(1).as_os_str().as_encoded_bytes())
            .unwrap_or_else(|e| panic!("{e}"));
        // SAFETY: mkfifo(3) with a valid NUL-terminated path.
        assert_eq!(unsafe { libc::mkfifo(fifo.as_ptr(), 0o600) }, 0, "mkfifo");
        std::os::unix::fs::symlink("/dev/zero", path(2)).unwrap_or_else(|e| panic!("{e}"));
        let valid = |pid: u32| {
            serde_json::to_vec(&RunState {
                pid,
                start_ticks: 1,
                ..RunState::default()
            })
            .unwrap_or_else(|e| panic!("{e}"))
        };
        let mut big = valid(3);
        big.resize(MAX_STATE_BYTES as usize + 10, b' ');
        write_mode(&path(3), &big, 0o600);
        write_mode(&path(4), &valid(4), 0o620);
        fs::set_permissions(path(4), std::os::unix::fs::PermissionsExt::from_mode(0o620))
            .unwrap_or_else(|e| panic!("{e}"));
        write_mode(&path(5), &valid(5), 0o600);
        write_mode(&path(6), &valid(7), 0o600);
        write_mode(&path(8), b"{\"pid\": ", 0o600);

        let (tx, rx) = mpsc::channel();
        let d = dir.0.clone();
        std::thread::spawn(move || {
            let _ = tx.send(scan_in(&d, me));
        });
        let scan = rx
            .recv_timeout(Duration::from_secs(10))
            .unwrap_or_else(|_| panic!("scanning the state files hung"));
        assert_eq!(scan.dir_refused, None);
        let by_pid = |pid: u32| {
            scan.found
                .iter()
                .find(|f| f.file == path(pid))
                .unwrap_or_else(|| panic!("stress-{pid}.json not listed"))
        };
        let refusal = |pid: u32| match &by_pid(pid).state {
            Err(StateFileError::Refused(r)) => r.clone(),
            other => panic!("stress-{pid}.json: {other:?}"),
        };
        assert_eq!(refusal(1), Refusal::NotRegular("FIFO"));
        assert_eq!(refusal(2), Refusal::NotRegular("symbolic link"));
        assert!(matches!(refusal(3), Refusal::TooLarge(_)));
        assert_eq!(refusal(4), Refusal::Writable(0o620));
        assert!(by_pid(5).state.is_ok(), "{:?}", by_pid(5).state);
        assert_eq!(refusal(6), Refusal::PidMismatch(7, 6));
        assert!(matches!(by_pid(8).state, Err(StateFileError::Parse(_))));
        // None counts as a dead run to undo.
        assert!(scan.found.iter().filter(|f| f.dead()).count() == 1);
        // Root's files only, in production.
        if me != 0 {
            assert!(matches!(
                read_state(&path(5), 5, 0),
                Err(StateFileError::Refused(Refusal::Owner(..)))
            ));
        }
        // A directory others can write is not read at all.
        fs::set_permissions(&dir.0, std::os::unix::fs::PermissionsExt::from_mode(0o777))
            .unwrap_or_else(|e| panic!("{e}"));
        let scan = scan_in(&dir.0, me);
        assert!(
            scan.found.is_empty() && scan.dir_refused.is_some(),
            "{scan:?}"
        );
    }

    /// A dead run whose undo is refused, and a refused file, are reported once and set aside as
    /// `.failed`: the next clean-up does not replay them.
    #[test]
    fn a_failed_or_refused_state_file_is_set_aside_not_replayed() {
        let dir = TempDir::new("aside");
        let me = euid();
        let fake = dir.0.join("enabled");
        let before = "[always] never\n";
        fs::write(&fake, before).unwrap_or_else(|e| panic!("{e}"));
        let forged = RunState {
            pid: DEAD,
            start_ticks: 1,
            mthp: vec![MthpSaved {
                path: fake.clone(),
                previous: "never".into(),
                set: "always".into(),
            }],
            ..RunState::default()
        };
        let file = dir.0.join(format!("stress-{DEAD}.json"));
        write_mode(
            &file,
            &serde_json::to_vec(&forged).unwrap_or_default(),
            0o600,
        );
        let other = dir.0.join("stress-77.json");
        write_mode(&other, b"{}", 0o660);
        let clean = dir.0.join(format!("stress-{}.json", DEAD - 1));
        let nothing = RunState {
            pid: DEAD - 1,
            start_ticks: 1,
            ..RunState::default()
        };
        write_mode(
            &clean,
            &serde_json::to_vec(&nothing).unwrap_or_default(),
            0o600,
        );

        let out = cleanup_dead_in(&dir.0, me);
        assert_eq!(out.len(), 3, "{out:?}");
        for u in &out {
            if u.file == clean {
                assert!(u.failed.is_empty() && u.set_aside.is_none(), "{u:?}");
            } else {
                assert_eq!(u.failed.len(), 1, "{u:?}");
                assert!(u.done.is_empty(), "{u:?}");
                let said = u.set_aside.as_deref().unwrap_or_default();
                assert!(
                    said.contains("renamed to") && !said.contains('\n'),
                    "{said}"
                );
            }
        }
        assert_eq!(fs::read_to_string(&fake).unwrap_or_default(), before);
        assert!(!file.exists() && !other.exists() && !clean.exists());
        assert!(file.with_extension("json.failed").exists());
        let again = cleanup_dead_in(&dir.0, me);
        assert!(again.is_empty(), "{again:?}");
        assert_eq!(scan_in(&dir.0, me).set_aside.len(), 2);
    }
}
