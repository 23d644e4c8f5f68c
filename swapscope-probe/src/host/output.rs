//! Files swapscope writes (recordings, JSON summaries): created new under a temporary name
//! beside the target, with O_EXCL|O_NOFOLLOW at mode 0600, and renamed onto the target when
//! complete. A file or symlink planted at either name is never written through; an existing
//! target is replaced (a new inode, new owner and mode) only when the caller says so (`--force`).

use std::{
    ffi::CString,
    fs,
    os::unix::{ffi::OsStrExt as _, fs::OpenOptionsExt as _},
    path::{Path, PathBuf},
};

use super::HostError;

/// A file being written; it takes its name only at [`OutputFile::commit`]. Dropped without a
/// commit, the temporary file is removed.
#[derive(Debug)]
pub struct OutputFile {
    file: fs::File,
    tmp: PathBuf,
    path: PathBuf,
    replace: bool,
    committed: bool,
    /// `-`: standard output (a duplicate of fd 1), written in order and never renamed.
    stdout: bool,
}

fn io(what: String, source: std::io::Error) -> HostError {
    HostError::Io { what, source }
}

/// Where process `pid` writes `path` until it is complete: `<path>.<pid>.partial` (what a
/// watcher of a running recorder waits on).
pub fn partial_path_for(path: &Path, pid: u32) -> PathBuf {
    let mut name = path.file_name().unwrap_or_default().to_os_string();
    name.push(format!(".{pid}.partial"));
    path.with_file_name(name)
}

impl OutputFile {
    /// Creates `<path>.<pid>.partial`. Refuses when `path` exists (a symlink included) unless
    /// `replace`, and always when it is a directory, a device, a FIFO or a socket.
    ///
    /// `-` is standard output, as for every Unix tool: written in order, never renamed, nothing
    /// to remove.
    pub fn create(path: &Path, replace: bool) -> Result<Self, HostError> {
        let shown = path.display();
        if path == Path::new("-") {
            use std::os::fd::AsFd as _;
            let fd = std::io::stdout()
                .as_fd()
                .try_clone_to_owned()
                .map_err(|e| io("duplicating standard output".into(), e))?;
            return Ok(OutputFile {
                file: fs::File::from(fd),
                tmp: PathBuf::from("-"),
                path: PathBuf::from("-"),
                replace,
                committed: false,
                stdout: true,
            });
        }
        if path.file_name().is_none() {
            return Err(HostError::Invalid(format!("{shown}: not a file name")));
        }
        match fs::symlink_metadata(path) {
            Ok(m) if m.is_dir() => {
                return Err(HostError::Invalid(format!(
                    "{shown} is a directory: give a file name"
                )));
            }
            Ok(m) if m.file_type().is_symlink() => {
                return Err(HostError::Invalid(format!(
                    "{shown} is a symbolic link: swapscope neither writes through nor replaces links; give the file's own path, another name, or - for standard output"
                )));
            }
            Ok(m) if !m.is_file() => {
                return Err(HostError::Invalid(format!(
                    "{shown} is not a regular file (a device, FIFO or socket): give a file name, or - for standard output"
                )));
            }
            Ok(_) if !replace => {
                return Err(HostError::Invalid(format!(
                    "{shown} exists: pass --force to replace it, or give another name"
                )));
            }
            _ => {}
        }
        let tmp = partial_path_for(path, std::process::id());
        let file = fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC)
            .open(&tmp)
            .map_err(|e| io(format!("creating {}", tmp.display()), e))?;
        Ok(OutputFile {
            file,
            tmp,
            path: path.to_path_buf(),
            replace,
            committed: false,
            stdout: false,
        })
    }

    /// Whether this is standard output (`-`).
    pub fn is_stdout(&self) -> bool {
        self.stdout
    }

    /// How messages name it: its path, or "standard output".
    pub fn shown(&self) -> String {
        if self.stdout {
            "standard output".into()
        } else {
            self.path.display().to_string()
        }
    }

    /// A handle to write through (the same open file).
    pub fn writer(&self) -> Result<fs::File, HostError> {
        self.file
            .try_clone()
            .map_err(|e| io(format!("opening {}", self.tmp.display()), e))
    }

    /// Where the data is until the commit (what a killed run leaves).
    pub fn partial_path(&self) -> &Path {
        &self.tmp
    }

    /// The name the file takes at the commit.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Syncs the file and gives it its name. Without `replace`, a file that appeared at the
    /// name meanwhile is left alone and the data stays under the temporary name (the error
    /// says where).
    pub fn commit(mut self) -> Result<(), HostError> {
        if self.stdout {
            // A pipe or a terminal: nothing to sync or rename (the writer flushed).
            self.committed = true;
            return Ok(());
        }
        self.file
            .sync_all()
            .map_err(|e| io(format!("writing {}", self.tmp.display()), e))?;
        let r = if self.replace {
            fs::rename(&self.tmp, &self.path)
        } else {
            rename_noreplace(&self.tmp, &self.path)
        };
        match r {
            Ok(()) => {
                self.committed = true;
                Ok(())
            }
            Err(e) => {
                // Keep the data: it is complete, only its name is missing.
                self.committed = true;
                let what = if e.kind() == std::io::ErrorKind::AlreadyExists {
                    format!(
                        "{} appeared while writing; the data is kept in {}",
                        self.path.display(),
                        self.tmp.display()
                    )
                } else {
                    format!(
                        "renaming {} to {} (the data is kept there)",
                        self.tmp.display(),
                        self.path.display()
                    )
                };
                Err(io(what, e))
            }
        }
    }
}

impl Drop for OutputFile {
    fn drop(&mut self) {
        if !self.committed && !self.stdout {
            let _ = fs::remove_file(&self.tmp);
        }
    }
}

/// rename(2) that fails with `AlreadyExists` instead of replacing `to`: renameat2
/// RENAME_NOREPLACE, or link + unlink where the filesystem lacks it.
fn rename_noreplace(from: &Path, to: &Path) -> std::io::Result<()> {
    let c = |p: &Path| {
        CString::new(p.as_os_str().as_bytes())
            .map_err(|_| std::io::Error::other("a path with a NUL byte"))
    };
    let (f, t) = (c(from)?, c(to)?);
    // The system call itself rather than the C library's wrapper: the musl that static builds
    // link (`cargo xtask dist`) has no `renameat2`.
    // SAFETY: two valid NUL-terminated paths, relative to the working directory (AT_FDCWD); the
    // arguments are renameat2(2)'s, in its order and types.
    let r = unsafe {
        libc::syscall(
            libc::SYS_renameat2,
            libc::AT_FDCWD,
            f.as_ptr(),
            libc::AT_FDCWD,
            t.as_ptr(),
            libc::RENAME_NOREPLACE,
        )
    };
    if r == 0 {
        return Ok(());
    }
    let e = std::io::Error::last_os_error();
    match e.raw_os_error() {
        Some(libc::EINVAL | libc::ENOSYS) => {
            fs::hard_link(from, to)?;
            fs::remove_file(from)
        }
        _ => Err(e),
    }
}

#[cfg(test)]
mod tests {
    use std::{io::Write as _, os::unix::fs::PermissionsExt as _};

    use super::*;

    fn put(out: &OutputFile, data: &[u8]) {
        out.writer()
            .and_then(|mut w| w.write_all(data).map_err(|e| io("w".into(), e)))
            .expect("write");
    }

    fn dir(name: &str) -> PathBuf {
        let d = std::env::temp_dir().join(format!("swapscope-out-{}-{name}", std::process::id()));
        let _ = fs::remove_dir_all(&d);
        fs::create_dir_all(&d).expect("temp dir");
        d
    }

    #[test]
    fn a_new_file_is_private_and_named_at_the_commit() {
        let d = dir("new");
        let p = d.join("r.swsc");
        let out = OutputFile::create(&p, false).expect("create");
        put(&out, b"data");
        assert!(!p.exists());
        let partial = out.partial_path().to_path_buf();
        out.commit().expect("commit");
        assert!(!partial.exists());
        assert_eq!(fs::read(&p).expect("read"), b"data");
        let mode = fs::metadata(&p).expect("meta").permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        let _ = fs::remove_dir_all(d);
    }

    #[test]
    fn an_existing_file_is_refused_unless_replaced_and_then_replaced_not_rewritten() {
        let d = dir("existing");
        let p = d.join("r.swsc");
        fs::write(&p, b"old").expect("plant");
        fs::set_permissions(&p, fs::Permissions::from_mode(0o666)).expect("chmod");
        let e = OutputFile::create(&p, false).expect_err("refused");
        assert!(e.to_string().contains("pass --force"), "{e}");
        let out = OutputFile::create(&p, true).expect("create");
        put(&out, b"new");
        out.commit().expect("commit");
        assert_eq!(fs::read(&p).expect("read"), b"new");
        let mode = fs::metadata(&p).expect("meta").permissions().mode() & 0o777;
        assert_eq!(mode, 0o600, "the planted file's mode is not kept");
        let _ = fs::remove_dir_all(d);
    }

    #[test]
    fn a_symlink_is_never_written_through() {
        let d = dir("symlink");
        let target = d.join("target");
        fs::write(&target, b"precious").expect("plant");
        let p = d.join("r.swsc");
        std::os::unix::fs::symlink(&target, &p).expect("symlink");
        assert!(OutputFile::create(&p, false).is_err());
        // Nor replaced, even with --force (`-o /dev/stdout --force` replaced that link).
        let e = OutputFile::create(&p, true).expect_err("a link is refused");
        assert!(e.to_string().contains("symbolic link"), "{e}");
        assert_eq!(fs::read(&target).expect("read"), b"precious");
        assert!(
            fs::symlink_metadata(&p)
                .expect("meta")
                .file_type()
                .is_symlink()
        );
        // A symlink planted at the temporary name is refused too (O_EXCL|O_NOFOLLOW).
        let p2 = d.join("s.swsc");
        let tmp = d.join(format!("s.swsc.{}.partial", std::process::id()));
        std::os::unix::fs::symlink(&target, &tmp).expect("symlink");
        assert!(OutputFile::create(&p2, false).is_err());
        assert_eq!(fs::read(&target).expect("read"), b"precious");
        let _ = fs::remove_dir_all(d);
    }

    #[test]
    fn a_file_that_appears_meanwhile_is_kept_and_so_is_the_data() {
        let d = dir("race");
        let p = d.join("r.swsc");
        let out = OutputFile::create(&p, false).expect("create");
        let partial = out.partial_path().to_path_buf();
        fs::write(&p, b"theirs").expect("plant");
        let e = out.commit().expect_err("not replaced");
        assert!(e.to_string().contains("the data is kept in"), "{e}");
        assert_eq!(fs::read(&p).expect("read"), b"theirs");
        assert!(partial.exists());
        let _ = fs::remove_dir_all(d);
    }

    #[test]
    fn devices_and_directories_are_never_replaced() {
        for p in ["/dev/null", "/dev/full", "/tmp"] {
            let e = OutputFile::create(Path::new(p), true).expect_err("refused");
            assert!(e.to_string().contains("give a file name"), "{p}: {e}");
        }
    }

    #[test]
    fn dropped_without_commit_leaves_nothing() {
        let d = dir("drop");
        let p = d.join("r.swsc");
        let out = OutputFile::create(&p, false).expect("create");
        let partial = out.partial_path().to_path_buf();
        drop(out);
        assert!(!partial.exists() && !p.exists());
        let _ = fs::remove_dir_all(d);
    }
}
