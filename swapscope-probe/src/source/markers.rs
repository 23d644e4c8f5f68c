//! Labelled markers for live streams: from the TUI's `m` key, from SIGUSR1, or from lines written
//! to a FIFO (`--marker-fifo PATH`), so a benchmark can line its iterations up with the report.
//! The live source takes what arrived at each poll and puts a [`Marker`](crate::event::Marker)
//! into the stream at that moment. The queue and the framing of FIFO bytes into labels are the
//! core's ([`swapscope_core::source::markers`]); the FIFO, its thread and syscalls are here.

use std::{
    io::Read as _,
    path::{Path, PathBuf},
};

pub use swapscope_core::source::markers::{Inbox, Lines, MAX_LABEL, MAX_LINE_BYTES, MAX_WAITING};

/// A line still open after this long without more input is taken as it is (a last line
/// written without its newline).
const PAUSE_MS: i32 = 1000;

/// A FIFO whose lines become markers. Created (mode 0600) when `path` does not exist, and then
/// removed again when this is dropped; an existing FIFO is used and left in place.
pub struct Fifo {
    created: Option<PathBuf>,
}

impl Fifo {
    /// Opens (or creates) the FIFO and starts a thread that queues each line it reads.
    pub fn start(path: &Path, inbox: Inbox) -> Result<Self, crate::host::HostError> {
        let (mut file, created) = crate::host::open_marker_fifo(path)?;
        std::thread::Builder::new()
            .name("swapscope-markers".into())
            .spawn(move || {
                // Opened read-write, so the reader never sees end-of-file when a writer closes.
                let mut lines = Lines::default();
                let mut buf = [0u8; 4096];
                loop {
                    match crate::host::wait_readable(&file, PAUSE_MS) {
                        Ok(true) => match file.read(&mut buf) {
                            Ok(0) => break,
                            Ok(n) => lines.feed(&buf[..n], &inbox),
                            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                            Err(_) => break,
                        },
                        Ok(false) if lines.open_bytes() > 0 => lines.end(&inbox),
                        Ok(false) => {}
                        Err(_) => break,
                    }
                }
            })
            .map_err(|e| crate::host::HostError::Io {
                what: "starting the marker FIFO thread".into(),
                source: e,
            })?;
        Ok(Fifo {
            created: created.then(|| path.to_path_buf()),
        })
    }
}

impl Drop for Fifo {
    fn drop(&mut self) {
        if let Some(p) = &self.created {
            let _ = std::fs::remove_file(p);
        }
    }
}

#[cfg(test)]
mod tests {
    use std::io::Write as _;

    use super::*;

    #[test]
    fn fifo_lines_become_labels_and_a_created_fifo_is_removed() {
        let dir = std::env::temp_dir().join(format!("swapscope-fifo-{}", std::process::id()));
        let _ = std::fs::create_dir_all(&dir);
        let path = dir.join("markers");
        let _ = std::fs::remove_file(&path);
        let inbox = Inbox::default();
        let fifo = match Fifo::start(&path, inbox.clone()) {
            Ok(f) => f,
            Err(e) => panic!("{e}"),
        };
        // Two writers, one after the other: the reader survives the first one closing.
        for line in ["iteration 1\n", "\n", "iteration 2\n"] {
            match std::fs::OpenOptions::new().write(true).open(&path) {
                Ok(mut w) => {
                    let _ = w.write_all(line.as_bytes());
                }
                Err(e) => panic!("{e}"),
            }
        }
        let mut got = Vec::new();
        for _ in 0..200 {
            got.extend(inbox.take());
            if got.len() >= 2 {
                break;
            }
            std::thread::sleep(std::time::Duration::from_millis(10));
        }
        assert_eq!(got, ["iteration 1", "iteration 2"]);
        drop(fifo);
        assert!(!path.exists(), "the FIFO it created is removed");
        // A path that is not a FIFO is refused, and left alone.
        let file = dir.join("plain");
        let _ = std::fs::write(&file, "x");
        assert!(Fifo::start(&file, Inbox::default()).is_err());
        assert!(file.exists());
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn a_fifo_others_can_write_is_refused() {
        use std::os::unix::fs::PermissionsExt as _;
        let dir = std::env::temp_dir().join(format!("swapscope-fifo-perm-{}", std::process::id()));
        let _ = std::fs::create_dir_all(&dir);
        let path = dir.join("open");
        let c = std::ffi::CString::new(path.as_os_str().as_encoded_bytes())
            .unwrap_or_else(|e| panic!("{e}"));
        // SAFETY: mkfifo(3) with a valid NUL-terminated path.
        assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o600) }, 0);
        let _ = std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o622));
        let e = Fifo::start(&path, Inbox::default())
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default();
        assert!(e.contains("writable by other users"), "{e}");
        assert!(path.exists(), "an existing FIFO is left in place");
        let _ = std::fs::remove_dir_all(&dir);
    }
}
