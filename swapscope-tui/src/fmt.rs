//! Number, time and sparkline formatting for the views.

/// `1234567` → `1,234,567`.
pub fn count(n: u64) -> String {
    let s = n.to_string();
    let mut out = String::with_capacity(s.len() + s.len() / 3);
    for (i, c) in s.chars().enumerate() {
        if i > 0 && (s.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

/// A rate per second, short: `950`, `12.3k`, `4.56M`.
pub fn rate(per_s: f64) -> String {
    if !per_s.is_finite() || per_s <= 0.0 {
        "0".into()
    } else if per_s < 1000.0 {
        format!("{per_s:.0}")
    } else if per_s < 1e6 {
        format!("{:.1}k", per_s / 1e3)
    } else {
        format!("{:.2}M", per_s / 1e6)
    }
}

/// A share as a percentage with two decimals, or `-` when undefined.
pub fn pct(x: Option<f64>) -> String {
    match x {
        Some(v) if v.is_finite() => format!("{:.2}%", v * 100.0),
        _ => "-".into(),
    }
}

/// `num / den` as a share, `None` when `den` is 0.
pub fn share(num: u64, den: u64) -> Option<f64> {
    (den > 0).then(|| num as f64 / den as f64)
}

/// A duration in ns, short: `850ns`, `12.3µs`, `4.56ms`, `1.23s`.
pub fn ns(v: u64) -> String {
    let f = v as f64;
    if v < 1_000 {
        format!("{v}ns")
    } else if v < 1_000_000 {
        format!("{:.1}µs", f / 1e3)
    } else if v < 1_000_000_000 {
        format!("{:.2}ms", f / 1e6)
    } else {
        format!("{:.2}s", f / 1e9)
    }
}

/// Stream time: `0.0275s` below 10 s (simulated streams tick in microseconds), `42.1s` below
/// a minute, `m:ss` above.
pub fn clock(secs: f64) -> String {
    let s = secs.max(0.0);
    if s < 10.0 {
        format!("{s:.4}s")
    } else if s < 60.0 {
        format!("{s:.1}s")
    } else {
        let m = (s / 60.0).floor();
        format!("{}:{:02}", m as u64, (s - m * 60.0).floor() as u64)
    }
}

/// A replay speed: `1`, `0.25`, `0.005`, `64`.
pub fn speed(x: f64) -> String {
    let s = format!("{x:.6}");
    let s = s.trim_end_matches('0').trim_end_matches('.');
    s.to_string()
}

/// KiB as `123M`/`4.5G` (binary).
pub fn kib(k: u64) -> String {
    let f = k as f64;
    if k < 1024 {
        format!("{k}K")
    } else if k < 1024 * 1024 {
        format!("{:.0}M", f / 1024.0)
    } else {
        format!("{:.1}G", f / (1024.0 * 1024.0))
    }
}

const BARS: [char; 8] = ['▁', '▂', '▃', '▄', '▅', '▆', '▇', '█'];

/// The last `width` values as a sparkline scaled to their maximum (spaces for zero).
pub fn spark(values: &[f64], width: usize) -> String {
    let start = values.len().saturating_sub(width);
    let shown = values.get(start..).unwrap_or_default();
    let max = shown.iter().copied().fold(0.0f64, f64::max);
    spark_to(values, width, max)
}

/// The last `width` values as a sparkline on a fixed scale `0..=max` (shares: `max` = 1).
pub fn spark_to(values: &[f64], width: usize, max: f64) -> String {
    let start = values.len().saturating_sub(width);
    let shown = values.get(start..).unwrap_or_default();
    let mut s: String = std::iter::repeat_n(' ', width.saturating_sub(shown.len())).collect();
    for &v in shown {
        if max <= 0.0 || v <= 0.0 || !v.is_finite() {
            s.push(' ');
        } else {
            let i = ((v.min(max) / max) * (BARS.len() - 1) as f64).round() as usize;
            s.push(BARS[i.min(BARS.len() - 1)]);
        }
    }
    s
}

/// Cuts `s` to at most `w` characters, ending with `…` when cut.
pub fn fit(s: &str, w: usize) -> String {
    if s.chars().count() <= w {
        return s.to_string();
    }
    if w == 0 {
        return String::new();
    }
    let mut out: String = s.chars().take(w - 1).collect();
    out.push('…');
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats() {
        assert_eq!(count(1_234_567), "1,234,567");
        assert_eq!(count(12), "12");
        assert_eq!(rate(12_345.0), "12.3k");
        assert_eq!(pct(Some(0.8571)), "85.71%");
        assert_eq!(pct(None), "-");
        assert_eq!(ns(12_300), "12.3µs");
        assert_eq!(clock(75.25), "1:15");
        assert_eq!(clock(0.0275), "0.0275s");
        assert_eq!(clock(42.12), "42.1s");
        assert_eq!(kib(1024 * 1024), "1.0G");
        assert_eq!(spark(&[0.0, 1.0, 2.0], 4), "  ▅█");
        assert_eq!(spark_to(&[0.5, 1.0], 2, 1.0), "▅█");
        assert_eq!(fit("abcdef", 4), "abc…");
        assert_eq!(speed(0.01), "0.01");
        assert_eq!(speed(2.0), "2");
    }
}
