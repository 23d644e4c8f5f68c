//! DuckDB for the export tests (`swapscope/tests/export.rs`): a virtualenv at
//! `<target>/venv-duckdb` holding PyPI's `duckdb`, made once and reused. Only the virtualenv is
//! written: the system's Python and its packages are never touched.

use std::{
    path::{Path, PathBuf},
    process::Command,
};

use anyhow::{Context as _, Result, bail};

use super::{run, step};

/// The DuckDB release the tests are written against (a new pin reinstalls it).
const DUCKDB_VERSION: &str = "2.0.1";

/// Whether `python` imports duckdb at [`DUCKDB_VERSION`].
fn has_duckdb(python: &Path) -> bool {
    Command::new(python)
        .args(["-c", "import duckdb, sys; print(duckdb.__version__)"])
        .output()
        .is_ok_and(|o| {
            o.status.success() && String::from_utf8_lossy(&o.stdout).trim() == DUCKDB_VERSION
        })
}

/// Makes `<target_dir>/venv-duckdb` with DuckDB in it unless it is already there (then quietly),
/// and returns its interpreter.
pub fn ensure_venv(target_dir: &Path) -> Result<PathBuf> {
    let venv = target_dir.join("venv-duckdb");
    let python = venv.join("bin/python");
    if has_duckdb(&python) {
        return Ok(python);
    }
    if !python.exists() {
        step(&format!(
            "creating a Python virtualenv in {}",
            venv.display()
        ));
        let made = Command::new("python3")
            .args(["-m", "venv"])
            .arg(&venv)
            .status()
            .context("starting python3 (install Python 3: apt-get install python3 python3-venv)")?;
        if !made.success() {
            bail!(
                "python3 -m venv {} failed ({made}); on Debian install python3-venv",
                venv.display()
            );
        }
    }
    step(&format!(
        "installing duckdb=={DUCKDB_VERSION} into {}",
        venv.display()
    ));
    run(Command::new(&python)
        .args([
            "-m",
            "pip",
            "install",
            "--quiet",
            "--disable-pip-version-check",
        ])
        .arg(format!("duckdb=={DUCKDB_VERSION}"))
        // Into the virtualenv whatever the caller's pip settings say.
        .env_remove("PIP_USER")
        .env_remove("PIP_TARGET")
        .env_remove("PIP_PREFIX"))?;
    if !has_duckdb(&python) {
        bail!(
            "{} still cannot import duckdb {DUCKDB_VERSION} after pip install",
            python.display()
        );
    }
    Ok(python)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Downloads DuckDB from PyPI: run by hand (`cargo test -p xtask duckdb -- --ignored`).
    #[test]
    #[ignore = "installs duckdb from PyPI into a temporary virtualenv"]
    fn makes_the_virtualenv_once_then_reuses_it() {
        let dir = std::env::temp_dir().join(format!("xtask-duckdb-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let python = ensure_venv(&dir).unwrap_or_else(|e| panic!("{e:#}"));
        assert!(has_duckdb(&python));
        let t = std::time::Instant::now();
        let again = ensure_venv(&dir).unwrap_or_else(|e| panic!("{e:#}"));
        assert_eq!(again, python);
        assert!(t.elapsed().as_secs() < 10, "the second call reinstalled");
        let _ = std::fs::remove_dir_all(&dir);
    }
}
