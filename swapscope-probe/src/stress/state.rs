//! What a `stress` run created, written down as it goes in `/run/swapscope/stress-<pid>.json`,
//! so that a run that was killed (SIGKILL, the OOM killer, a crash) can be found and undone:
//! by the next `stress`, or by `swapscope doctor --cleanup`; `swapscope doctor` lists them.
//!
//! Each item is named in the file *before* it is created (or, for devices whose number the
//! kernel picks, as soon as it exists), and undone only while it is still the one created: a
//! zram or loop device must carry the swap header with the run's UUID, a cgroup must be the
//! run's own `swapscope-<pid>-*`, an mTHP size must still have the policy the run set. Nothing
//! a state file does not name is ever touched. The file goes when the run cleaned up fully.

use std::{
    fs,
    io::Write as _,
    os::unix::fs::{DirBuilderExt as _, OpenOptionsExt as _},
    path::{Path, PathBuf},
};

use serde::{Deserialize, Serialize};

use super::setup::{self, SetupError};
use crate::host;

/// Where state files live (tmpfs: a reboot clears them, as it clears what they name).
pub const STATE_DIR: &str = "/run/swapscope";

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

impl RunState {
    /// Whether the process that wrote this still runs.
    pub fn alive(&self) -> bool {
        host::process_start_ticks(self.pid) == Some(self.start_ticks)
    }

    /// What is still there of what the run created, one line each.
    pub fn remaining(&self) -> Vec<String> {
        let mut out = Vec::new();
        if let Some(c) = self.cgroup.as_ref().filter(|c| c.exists()) {
            out.push(format!("cgroup {}", c.display()));
        }
        if let Some(d) = &self.device
            && self.device_is_ours(d)
        {
            out.push(format!(
                "swap device {}{}",
                d.dev.display(),
                if setup::is_swapped_on(&d.dev) {
                    " (swapped on)"
                } else {
                    ""
                }
            ));
        }
        for m in &self.mthp {
            let now = fs::read_to_string(&m.path)
                .ok()
                .and_then(|t| host::parse_choice(&t));
            if now.as_deref() == Some(m.set.as_str()) && m.set != m.previous {
                out.push(format!(
                    "{} = {} (was {})",
                    m.path.display(),
                    m.set,
                    m.previous
                ));
            }
        }
        out
    }

    /// Whether `d` is still the device the run created: its swap header has the run's UUID
    /// (zram devices the run died before labelling count while they are not swapped on).
    fn device_is_ours(&self, d: &DeviceSaved) -> bool {
        match (d.zram_id, &d.file) {
            (Some(id), _) => {
                Path::new(&format!("/sys/block/zram{id}")).exists()
                    && match setup::swap_header_uuid(&d.dev) {
                        Some(u) => hex(u) == d.uuid,
                        None => !setup::is_swapped_on(&d.dev),
                    }
            }
            (None, Some(file)) => setup::swap_header_uuid(file).is_some_and(|u| hex(u) == d.uuid),
            (None, None) => false,
        }
    }

    /// Undoes what is left, newest first (cgroup and its processes, the device, the mTHP
    /// policies). Returns what was done and what could not be.
    pub fn undo(&self) -> (Vec<String>, Vec<String>) {
        let (mut done, mut failed) = (Vec::new(), Vec::new());
        let note = |done: &mut Vec<String>,
                    failed: &mut Vec<String>,
                    what: String,
                    r: Result<(), setup::CleanupError>| match r {
            Ok(()) => done.push(what),
            Err(e) => failed.push(e.to_string()),
        };
        if let Some(c) = self.cgroup.as_ref().filter(|c| c.exists()) {
            let own = c.file_name().is_some_and(|n| {
                n.to_string_lossy()
                    .starts_with(&format!("swapscope-{}-", self.pid))
            });
            if own {
                note(
                    &mut done,
                    &mut failed,
                    format!("removed cgroup {}", c.display()),
                    setup::remove_cgroup(c),
                );
            } else {
                failed.push(format!(
                    "{} is not a swapscope cgroup: left alone",
                    c.display()
                ));
            }
        }
        if let Some(d) = &self.device {
            if self.device_is_ours(d) {
                let r = match (d.zram_id, &d.file) {
                    (Some(id), _) => setup::remove_zram(id),
                    (None, Some(file)) => setup::remove_loop(&d.dev, file),
                    (None, None) => Ok(()),
                };
                note(
                    &mut done,
                    &mut failed,
                    format!("removed swap device {}", d.dev.display()),
                    r,
                );
            } else if let Some(file) = d.file.as_ref().filter(|f| f.exists()) {
                failed.push(format!(
                    "{} does not carry the run's swap header: left alone",
                    file.display()
                ));
            }
        }
        for m in &self.mthp {
            let now = fs::read_to_string(&m.path)
                .ok()
                .and_then(|t| host::parse_choice(&t));
            if now.as_deref() == Some(m.previous.as_str()) {
                continue;
            }
            note(
                &mut done,
                &mut failed,
                format!("restored {} to {}", m.path.display(), m.previous),
                setup::restore_mthp(&m.path, &m.set, &m.previous),
            );
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
    /// Starts this process's state file (nothing created yet).
    pub fn create() -> Result<Self, SetupError> {
        let dir = Path::new(STATE_DIR);
        fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(dir)
            .map_err(|source| SetupError::Io {
                what: "creating the state directory",
                path: dir.display().to_string(),
                source,
            })?;
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

/// Why a state file could not be taken in.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StateFileError {
    #[error("{0}")]
    Read(#[from] std::io::Error),
    #[error("{0}")]
    Parse(#[from] serde_json::Error),
}

/// A state file found under [`STATE_DIR`].
#[derive(Debug)]
pub struct Found {
    pub file: PathBuf,
    /// `Err` when the file could not be read or parsed.
    pub state: Result<RunState, StateFileError>,
}

impl Found {
    /// A run that is dead (or whose file is unreadable).
    pub fn dead(&self) -> bool {
        self.state.as_ref().is_ok_and(|s| !s.alive())
    }
}

/// Every state file, sorted by name.
pub fn scan() -> Vec<Found> {
    let mut files: Vec<PathBuf> = fs::read_dir(STATE_DIR)
        .map(|d| d.flatten().map(|e| e.path()).collect())
        .unwrap_or_default();
    files.retain(|p| {
        p.file_name().is_some_and(|n| {
            n.to_string_lossy().starts_with("stress-") && n.to_string_lossy().ends_with(".json")
        })
    });
    files.sort();
    files
        .into_iter()
        .map(|file| {
            let state = fs::read(&file)
                .map_err(StateFileError::from)
                .and_then(|b| Ok(serde_json::from_slice::<RunState>(&b)?));
            Found { file, state }
        })
        .collect()
}

/// Undoes the leftovers of every dead run; a run cleaned up fully loses its state file.
/// Returns, per run, its file, what was done and what could not be.
pub fn cleanup_dead() -> Vec<(PathBuf, Vec<String>, Vec<String>)> {
    let mut out = Vec::new();
    for f in scan() {
        let Ok(state) = f.state.as_ref() else {
            continue;
        };
        if state.alive() {
            continue;
        }
        let (done, failed) = state.undo();
        if failed.is_empty() {
            let _ = fs::remove_file(&f.file);
        }
        out.push((f.file, done, failed));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn state_roundtrips_and_a_dead_pid_is_dead() {
        let s = RunState {
            pid: u32::MAX - 1,
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
}
