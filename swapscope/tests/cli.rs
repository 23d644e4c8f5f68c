//! The command line as a careful user and an attacker meet it (no root needed): bad values fail
//! at parse time with one line and nothing created; closed pipes end quietly; output files are
//! created new, private, never through a symlink, replaced only with --force; a command that
//! cannot start is refused before anything exists.

#[path = "common/run.rs"]
mod run;

use std::{
    fs,
    io::Read as _,
    os::unix::{
        fs::{MetadataExt as _, PermissionsExt as _},
        process::ExitStatusExt as _,
    },
    path::Path,
    process::{Command, Output, Stdio},
};

use run::{swapscope, tmpdir};

const EXE: &str = env!("CARGO_BIN_EXE_swapscope");

fn data(name: &str) -> String {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/data")
        .join(name)
        .display()
        .to_string()
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// The command failed with exit status `code` and exactly one line on stderr, saying `says`.
fn fails_with_one_line(args: &[&str], code: i32, says: &str) -> String {
    let o = swapscope(args);
    let err = stderr(&o);
    assert_eq!(o.status.code(), Some(code), "{args:?}: {err}");
    assert_eq!(
        err.lines().count(),
        1,
        "{args:?} printed more than one line:\n{err}"
    );
    assert!(err.starts_with("swapscope: error: "), "{args:?}: {err}");
    assert!(
        err.contains(says),
        "{args:?}: {err:?} does not say {says:?}"
    );
    assert!(!err.contains("panicked"), "{args:?}: {err}");
    err
}

#[test]
fn bad_durations_sizes_and_counts_fail_at_parse_time_with_one_line() {
    let dir = tmpdir("cli", "values");
    let out = dir.join("r.swsc");
    let o = out.display().to_string();
    for bad in ["nan", "inf", "-inf", "1e400", "0", "-5", "soon"] {
        fails_with_one_line(
            &["record", "-o", &o, "--duration", bad, "--", "true"],
            2,
            "positive number of seconds",
        );
        fails_with_one_line(
            &["stress", "--duration", bad],
            2,
            "positive number of seconds",
        );
    }
    assert!(!out.exists(), "a refused record created its file");
    assert_eq!(fs::read_dir(&dir).map(|d| d.count()).unwrap_or(0), 0);
    for (args, says) in [
        (&["stress", "--size", "-5"][..], "from 1 to 1048576"),
        (&["stress", "--passes", "0"][..], "from 1 to 1000000"),
        (&["stress", "--zram", "x"][..], "from 1 to 1048576"),
        (
            &["record", "-o", &o, "--ringbuf-mib", "0"][..],
            "from 1 to 1024",
        ),
        (&["live", "--interval", "0"][..], "from 1 to 3600000"),
        (&["replay", "--speed", "-1", "x.swsc"][..], "is not a speed"),
        (
            &["simulate", "--workload", "fill-drain", "--cpus", "0"][..],
            "from 1 to 4096",
        ),
        (
            &["simulate", "--workload", "fill-drain", "--swap-size", "1T"][..],
            "at most 64G",
        ),
        (
            &["simulate", "--workload", "fill-drain", "--swap-size", "-1G"][..],
            "64M or 1G",
        ),
        (
            &["simulate", "--workload", "fill-drain", "--swap-size", "100"][..],
            "at least 1M",
        ),
        (&["stress", "--bogus"][..], "unexpected argument '--bogus'"),
        (&["record"][..], "--output"),
    ] {
        fails_with_one_line(args, 2, says);
    }
}

/// Runs `args` with stdout into a pipe whose reader takes `keep` bytes and closes it.
fn into_closed_pipe(args: &[&str], keep: usize) -> (std::process::ExitStatus, String) {
    let mut child = Command::new(EXE)
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("running swapscope {args:?}: {e}"));
    let mut buf = vec![0u8; keep];
    if let Some(mut out) = child.stdout.take() {
        let _ = out.read_exact(&mut buf);
    }
    let mut err = String::new();
    if let Some(mut e) = child.stderr.take() {
        let _ = e.read_to_string(&mut err);
    }
    let status = child.wait().unwrap_or_else(|e| panic!("waiting: {e}"));
    (status, err)
}

#[test]
fn a_closed_pipe_ends_quietly_with_the_conventional_status() {
    let rec = data("sim-thp-fragment.swsc");
    for args in [
        &["report", "--json", &rec][..],
        &["report", &rec][..],
        &["dump", &rec][..],
        &["simulate", "--workload", "thp-fragment", "--json"][..],
        &["doctor", "--json"][..],
        &["doctor"][..],
    ] {
        let (status, err) = into_closed_pipe(args, 10);
        // Output that fit in the pipe before it closed ends the command normally (doctor's
        // status 1 is its answer "this host cannot record", e.g. without root or BPF object).
        let answered = status.success() || (args[0] == "doctor" && status.code() == Some(1));
        assert!(
            status.signal() == Some(libc::SIGPIPE) || answered,
            "{args:?}: {status}, stderr {err:?}"
        );
        assert!(err.is_empty(), "{args:?} printed {err:?}");
    }
    // Output larger than a pipe holds meets the closed pipe for sure.
    let (status, err) = into_closed_pipe(&["dump", &rec], 10);
    assert_eq!(
        status.signal(),
        Some(libc::SIGPIPE),
        "dump: {status}, {err:?}"
    );
}

fn mode(p: &Path) -> u32 {
    fs::metadata(p)
        .map(|m| m.permissions().mode() & 0o777)
        .unwrap_or(0)
}

/// A short `simulate` writing to `out`.
fn simulate_to(out: &str) -> [&str; 7] {
    [
        "simulate",
        "--workload",
        "fill-drain",
        "--iterations",
        "1",
        "-o",
        out,
    ]
}

#[test]
fn simulate_output_is_created_new_private_and_replaced_only_with_force() {
    let dir = tmpdir("cli", "output");
    let out = dir.join("sim.swsc");
    let o = out.display().to_string();
    let sim = simulate_to(&o);
    let r = swapscope(&sim);
    assert!(r.status.success(), "{}", stderr(&r));
    assert_eq!(mode(&out), 0o600);
    let first = fs::metadata(&out).map(|m| m.ino()).unwrap_or(0);

    // An existing file is refused, and left as it was.
    fails_with_one_line(&sim, 1, "pass --force");
    assert_eq!(fs::metadata(&out).map(|m| m.ino()).unwrap_or(0), first);

    // --force replaces it with a new file (new inode, 0600), not rewritten in place.
    fs::set_permissions(&out, fs::Permissions::from_mode(0o666)).expect("chmod");
    let mut forced = sim.to_vec();
    forced.push("--force");
    let r = swapscope(&forced);
    assert!(r.status.success(), "{}", stderr(&r));
    assert_ne!(fs::metadata(&out).map(|m| m.ino()).unwrap_or(0), first);
    assert_eq!(mode(&out), 0o600);
    let report = swapscope(&["report", "--json", &o]);
    assert!(report.status.success(), "{}", stderr(&report));

    // A symlink planted at the name is never written through nor replaced, with or without
    // --force (`-o /dev/stdout --force` used to replace that link with a file).
    let target = dir.join("precious");
    fs::write(&target, b"keep me").expect("plant");
    let link = dir.join("link.swsc");
    std::os::unix::fs::symlink(&target, &link).expect("symlink");
    let l = link.display().to_string();
    let sim_l = simulate_to(&l);
    fails_with_one_line(&sim_l, 1, "symbolic link");
    let mut forced = sim_l.to_vec();
    forced.push("--force");
    fails_with_one_line(&forced, 1, "symbolic link");
    assert_eq!(fs::read(&target).expect("read"), b"keep me");
    assert!(fs::symlink_metadata(&link).is_ok_and(|m| m.file_type().is_symlink()));

    // Devices are never replaced; nothing is left behind by a refusal.
    fails_with_one_line(
        &[
            "simulate",
            "--workload",
            "fill-drain",
            "-o",
            "/dev/full",
            "--force",
        ],
        1,
        "not a regular file",
    );
    let partial = fs::read_dir(&dir)
        .map(|d| {
            d.flatten()
                .filter(|e| e.file_name().to_string_lossy().ends_with(".partial"))
                .count()
        })
        .unwrap_or(0);
    assert_eq!(partial, 0, "a temporary file was left behind");
}

#[test]
fn a_command_that_cannot_start_is_refused_before_anything_exists() {
    let dir = tmpdir("cli", "nocommand");
    let out = dir.join("r.swsc");
    let o = out.display().to_string();
    let not_a_program = dir.join("data.txt");
    fs::write(&not_a_program, "not a program").expect("write");
    let np = not_a_program.display().to_string();
    for cmd in ["/nonexistent", "no-such-command-anywhere", &np] {
        fails_with_one_line(&["record", "-o", &o, "--", cmd], 1, "no such command");
        fails_with_one_line(&["live", "--record", &o, "--", cmd], 1, "no such command");
    }
    assert_eq!(
        fs::read_dir(&dir).map(|d| d.count()).unwrap_or(0),
        1,
        "only data.txt"
    );
}

/// `--version` names what a bug report needs: the version, the commit built from, the BPF event
/// schema and the recording format this binary writes.
#[test]
fn version_names_the_commit_the_bpf_schema_and_the_format() {
    let o = Command::new(EXE)
        .arg("--version")
        .output()
        .unwrap_or_else(|e| panic!("{EXE}: {e}"));
    assert!(o.status.success());
    let text = String::from_utf8_lossy(&o.stdout);
    let want = format!("swapscope {} (commit ", env!("CARGO_PKG_VERSION"));
    assert!(text.starts_with(&want), "{text}");
    let tail = format!(
        ", BPF schema {}, format {}.{})\n",
        swapscope_common::SCHEMA_VERSION,
        swapscope::record::FORMAT_MAJOR,
        swapscope::record::FORMAT_MINOR
    );
    assert!(text.ends_with(&tail), "{text}");
    let commit = &text[want.len()..text.len() - tail.len()];
    assert!(
        commit == "unknown"
            || commit
                .trim_end_matches("-dirty")
                .chars()
                .all(|c| c.is_ascii_hexdigit()),
        "{commit:?}"
    );
}

/// An unknown model name is a usage error like clap's (exit status 2, one line), and an OS
/// error is said once, not once per link of the error chain.
#[test]
fn unknown_models_are_usage_errors_and_os_errors_are_said_once() {
    let rec = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/data/sim-thp-fragment.swsc"
    );
    fails_with_one_line(
        &["report", "--models", "linux-6.18,nope", rec],
        2,
        "unknown model \"nope\"",
    );
    let err = fails_with_one_line(
        &[
            "export",
            "--format",
            "csv",
            "-o",
            "/nonexistent-swapscope-dir/x.csv",
            rec,
        ],
        1,
        "No such file or directory",
    );
    assert_eq!(
        err.matches("No such file or directory").count(),
        1,
        "said twice: {err}"
    );
}

/// `doctor` gives every mTHP size a value: a size the kernel offers to shmem only (no
/// `enabled` file: 8K on 6.18) printed as `8K=` with nothing after it (hostile #21, small
/// things).
#[test]
fn doctor_gives_every_mthp_size_a_value() {
    let o = std::process::Command::new(EXE)
        .arg("doctor")
        .output()
        .unwrap_or_else(|e| panic!("doctor: {e}"));
    let out = String::from_utf8_lossy(&o.stdout);
    let line = out
        .lines()
        .find(|l| l.starts_with("mTHP"))
        .unwrap_or_else(|| panic!("no mTHP line: {out}"));
    for size in line.split_whitespace().skip(1) {
        let value = size.split_once('=').map_or(size, |(_, v)| v);
        assert!(!value.is_empty(), "{size} has no value: {line}");
    }
}
