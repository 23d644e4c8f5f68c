//! Value parsers for durations, sizes and counts, checked while the command line is parsed: a
//! bad value fails with one line before anything is attached, created or started.

use swapscope::workload::{MAX_SWAP_BYTES, MIN_SWAP_BYTES};

/// Longest duration any command accepts: 30 days.
pub const MAX_SECONDS: f64 = 30.0 * 86_400.0;

/// A positive, finite number of seconds up to [`MAX_SECONDS`] (`--duration`).
pub fn seconds(s: &str) -> Result<f64, String> {
    match s.trim().parse::<f64>() {
        Ok(v) if v.is_finite() && v > 0.0 && v <= MAX_SECONDS => Ok(v),
        _ => Err(format!(
            "give a positive number of seconds up to {MAX_SECONDS} (30 days)"
        )),
    }
}

/// [`seconds`] as a `Duration`, at least a millisecond (`serve --interval`).
pub fn duration(s: &str) -> Result<std::time::Duration, String> {
    let v = seconds(s)?;
    if v < 1e-3 {
        return Err("give at least 0.001 seconds".into());
    }
    Ok(std::time::Duration::from_secs_f64(v))
}

fn in_range(s: &str, lo: u64, hi: u64) -> Result<u64, String> {
    match s.trim().parse::<u64>() {
        Ok(v) if (lo..=hi).contains(&v) => Ok(v),
        _ => Err(format!("give a whole number from {lo} to {hi}")),
    }
}

/// A whole number in `LO..=HI` (counts, MiB, milliseconds).
pub fn whole<const LO: u64, const HI: u64>(s: &str) -> Result<u64, String> {
    in_range(s, LO, HI)
}

/// [`whole`] for `u32` fields.
pub fn whole32<const LO: u32, const HI: u32>(s: &str) -> Result<u32, String> {
    in_range(s, LO.into(), HI.into()).map(|v| v as u32)
}

/// Parses `64M`, `1G`, `512K` or a byte count.
pub fn parse_bytes(s: &str) -> Option<u64> {
    let t = s.trim().to_ascii_uppercase();
    let t = t
        .strip_suffix("IB")
        .or_else(|| t.strip_suffix('B'))
        .unwrap_or(&t);
    let (num, mult) = match t.chars().last()? {
        'K' => (&t[..t.len() - 1], 1u64 << 10),
        'M' => (&t[..t.len() - 1], 1 << 20),
        'G' => (&t[..t.len() - 1], 1 << 30),
        'T' => (&t[..t.len() - 1], 1 << 40),
        _ => (t, 1),
    };
    num.parse::<u64>().ok()?.checked_mul(mult)
}

/// `simulate --swap-size`: a size the models can simulate here, with why when not.
pub fn swap_size(s: &str) -> Result<u64, String> {
    let Some(b) = parse_bytes(s) else {
        return Err("give a size such as 64M or 1G".into());
    };
    if b < MIN_SWAP_BYTES || !b.is_multiple_of(4096) {
        return Err("give at least 1M, a whole number of 4 KiB pages".into());
    }
    if b > MAX_SWAP_BYTES {
        return Err(format!(
            "at most {}G: every model keeps state for each 4 KiB slot and each pass walks the \
             device (64G takes about 400 MiB and 6 s a pass on 2 cores; 1T would take about \
             9 GiB and 12 minutes)",
            MAX_SWAP_BYTES >> 30
        ));
    }
    Ok(b)
}

/// A clap error as one line: its message, its tip if any, and where to read more.
pub fn one_line(e: &clap::Error) -> String {
    let text = e.render().to_string();
    let mut parts: Vec<String> = Vec::new();
    let mut usage = None;
    for line in text.lines().map(str::trim).filter(|l| !l.is_empty()) {
        if let Some(u) = line.strip_prefix("Usage: ") {
            usage = u.split(" [").next().map(|s| {
                s.split(" <")
                    .next()
                    .unwrap_or(s)
                    .split(" --")
                    .next()
                    .unwrap_or(s)
                    .to_owned()
            });
        } else if line.starts_with("For more information") {
        } else {
            let line = line.strip_prefix("error: ").unwrap_or(line);
            let line = line.strip_prefix("tip: ").unwrap_or(line);
            match parts.last_mut() {
                // A list after "...:" continues its sentence.
                Some(last) if last.ends_with(':') || last.ends_with(',') => {
                    last.push(' ');
                    last.push_str(line);
                }
                _ => parts.push(line.to_owned()),
            }
        }
    }
    let mut out = parts.join("; ");
    if let Some(u) = usage {
        out.push_str(&format!(" (see `{u} --help`)"));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_command_line_definition_is_consistent() {
        // clap's own checks: value parsers match the fields' types, names are unique, ...
        use clap::CommandFactory as _;
        super::super::Cli::command().debug_assert();
    }

    #[test]
    fn durations() {
        assert_eq!(duration("0.5"), Ok(std::time::Duration::from_millis(500)));
        assert!(duration("0.0001").is_err());
        assert_eq!(seconds("1.5"), Ok(1.5));
        for bad in ["nan", "inf", "-inf", "1e400", "0", "-5", "", "x", "2592001"] {
            assert!(seconds(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn sizes() {
        assert_eq!(parse_bytes("64M"), Some(64 << 20));
        assert_eq!(parse_bytes("1GiB"), Some(1 << 30));
        assert_eq!(parse_bytes("4096"), Some(4096));
        assert_eq!(parse_bytes("x"), None);
        assert_eq!(swap_size("64M"), Ok(64 << 20));
        assert!(swap_size("1T").is_err_and(|e| e.contains("12 minutes")));
        assert!(swap_size("1000").is_err());
        assert!(swap_size("99999999999999999999T").is_err());
    }

    #[test]
    fn clap_errors_are_one_line() {
        use clap::{Arg, Command};
        let cmd = || {
            Command::new("swapscope").subcommand(
                Command::new("record")
                    .arg(Arg::new("output").long("output").required(true))
                    .arg(Arg::new("duration").long("duration").value_parser(seconds)),
            )
        };
        for (argv, want) in [
            (
                &["swapscope", "record"][..],
                "the following required arguments were not provided: --output <output> (see \
                 `swapscope record --help`)",
            ),
            (
                &["swapscope", "record", "--output", "f", "--bogus"][..],
                "unexpected argument '--bogus' found (see `swapscope record --help`)",
            ),
            (
                &["swapscope", "record", "--output", "f", "--duration", "nan"][..],
                "invalid value 'nan' for '--duration <duration>': give a positive number of \
                 seconds up to 2592000 (30 days)",
            ),
        ] {
            let e = cmd()
                .try_get_matches_from(argv)
                .expect_err("a bad command line");
            assert_eq!(one_line(&e), want);
        }
    }

    #[test]
    fn counts() {
        assert_eq!(whole::<1, 10>("10"), Ok(10));
        assert!(whole::<1, 10>("0").is_err());
        assert!(whole::<1, 10>("-5").is_err());
        assert_eq!(whole32::<1, 4096>("4096"), Ok(4096));
    }
}
