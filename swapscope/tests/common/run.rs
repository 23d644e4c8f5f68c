//! Running the swapscope binary from a test, and a scratch directory per test (for tests/cli.rs
//! and tests/export.rs).

use std::{
    path::{Path, PathBuf},
    process::{Command, Output, Stdio},
};

/// A fresh (emptied) directory `<crate>-<name>` under the target's temporary directory.
pub fn tmpdir(krate: &str, name: &str) -> PathBuf {
    let d = Path::new(env!("CARGO_TARGET_TMPDIR")).join(format!("{krate}-{name}"));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap_or_else(|e| panic!("creating {}: {e}", d.display()));
    d
}

/// Runs swapscope with `args` and no input; its status and output.
pub fn swapscope(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_swapscope"))
        .args(args)
        .stdin(Stdio::null())
        .output()
        .unwrap_or_else(|e| panic!("running swapscope {args:?}: {e}"))
}
