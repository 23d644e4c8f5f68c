//! The exporter's text on recordings of each tier, its format conversion and negotiation, and
//! the contract of [`METRICS`] (names, label bounds).

use super::metrics::{
    Format, METRICS, ServeStats, families_of_tier, render, size_label, to_classic,
};
use crate::host::ProcessStats;
/// An analysis snapshot of a recording part-way through, with the built-in models installed.
fn snapshot_of(name: &str, share: f64) -> swapscope_core::sink::snapshot::Snapshot {
    swapscope_models::install();
    swapscope_core::testkit::snapshot_of(name, share)
}

fn stats() -> ServeStats {
    ServeStats {
        version: "test".into(),
        scrapes: 7,
        snapshot_age_s: 0.25,
        process: ProcessStats {
            cpu_seconds: 1.5,
            resident_bytes: 64 << 20,
        },
        page_size: 4096,
    }
}

/// The classic-format name a family's `# TYPE` line carries.
fn type_line(name: &str) -> String {
    format!("# TYPE {name} ")
}

/// Families whose counters or events the test recordings predate (swpin was sampled from 0.1.0
/// on, swap-in events are recorded from format 1.3 on; the VM suite scrapes both live).
fn not_recorded_then(name: &str) -> bool {
    name.starts_with("swapscope_mthp_swpin") || name == "swapscope_swapins_total"
}

#[test]
fn a_full_tier_recording_gives_every_family_of_the_full_tier() {
    let snap = snapshot_of("vm-7.3-full-timed.swsc", 0.6);
    assert_eq!(snap.info.tier, "full");
    let text = render(&snap, &stats(), Format::Text).expect("renders");
    for d in families_of_tier("full").filter(|d| !not_recorded_then(d.name)) {
        assert!(
            text.contains(&type_line(d.name)),
            "{} missing from a full-tier scrape:\n{text}",
            d.name
        );
    }
    // The models' numbers are the analysis' own.
    let m = &snap.models[0];
    let req: u64 = m.requests_by_order.values().sum();
    let scraped: f64 = text
        .lines()
        .filter(|l| {
            l.starts_with(&format!(
                "swapscope_model_requests_total{{model=\"{}\"",
                m.name
            ))
        })
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum();
    assert_eq!(scraped as u64, req, "{text}");
    insta::assert_snapshot!("full_tier_text", text);
}

#[test]
fn a_tracepoint_recording_has_no_request_or_model_families() {
    let snap = snapshot_of("host-6.18-tracepoint.swsc", 0.6);
    assert_eq!(snap.info.tier, "tracepoint");
    let text = render(&snap, &stats(), Format::Text).expect("renders");
    for d in METRICS {
        let present = text.contains(&type_line(d.name));
        match d.tier {
            "full" => assert!(!present, "{} on the tracepoint tier", d.name),
            // Per-device lines need an active device; missed events a program that counts them.
            _ if d.name.starts_with("swapscope_swap_device") || not_recorded_then(d.name) => {}
            _ => assert!(present, "{} missing:\n{text}", d.name),
        }
    }
    assert!(
        text.contains("swapscope_writeouts_total{size=\"64kB\"}"),
        "{text}"
    );
}

#[test]
fn the_same_snapshot_renders_the_same_text_in_both_formats() {
    let snap = snapshot_of("vm-7.3-full-timed.swsc", 0.3);
    let a = render(&snap, &stats(), Format::OpenMetrics).expect("renders");
    let b = render(&snap, &stats(), Format::OpenMetrics).expect("renders");
    assert_eq!(a, b, "sample order must not depend on hashing");
    assert!(a.ends_with("# EOF\n"));
    assert!(a.contains("# TYPE swapscope_requests counter\n"));
    assert!(a.contains("# TYPE swapscope info\n"));
    let text = render(&snap, &stats(), Format::Text).expect("renders");
    assert_eq!(text, to_classic(&a));
    assert!(!text.contains("# EOF"));
    assert!(text.contains("# TYPE swapscope_requests_total counter\n"));
    assert!(text.contains("# TYPE swapscope_info gauge\n"));
    // Same samples, only the metadata differs.
    let samples = |t: &str| t.lines().filter(|l| !l.starts_with('#')).count();
    assert_eq!(samples(&a), samples(&text));
}

#[test]
fn openmetrics_only_when_asked() {
    assert_eq!(Format::from_accept(None), Format::Text);
    assert_eq!(Format::from_accept(Some("*/*")), Format::Text);
    // What Prometheus 2.42 sends.
    let prom = "application/openmetrics-text;version=1.0.0,application/openmetrics-text;version=0.0.1;q=0.75,text/plain;version=0.0.4;q=0.5,*/*;q=0.1";
    assert_eq!(Format::from_accept(Some(prom)), Format::OpenMetrics);
    // q=0 is a refusal (RFC 9110), in any spelling.
    for no in [
        "application/openmetrics-text;q=0",
        "application/openmetrics-text; version=1.0.0; q=0.0, text/plain",
        "text/plain, application/openmetrics-text ;q=0",
        "application/openmetrics-text; Q=0",
        "application/openmetrics-text;q = 0",
    ] {
        assert_eq!(Format::from_accept(Some(no)), Format::Text, "{no}");
    }
    assert_eq!(
        Format::from_accept(Some("APPLICATION/OpenMetrics-Text; q=0.2")),
        Format::OpenMetrics
    );
}

#[test]
fn classic_conversion_renames_counters_and_info() {
    let om = "# HELP a_b Things.\n# TYPE a_b counter\na_b_total{x=\"1\"} 2\n# HELP s Who.\n# TYPE s info\ns_info{t=\"f\"} 1\n# HELP g Level.\n# TYPE g gauge\n# UNIT g bytes\ng 3.5\n# EOF\n";
    assert_eq!(
        to_classic(om),
        "# HELP a_b_total Things.\n# TYPE a_b_total counter\na_b_total{x=\"1\"} 2\n# HELP s_info Who.\n# TYPE s_info gauge\ns_info{t=\"f\"} 1\n# HELP g Level.\n# TYPE g gauge\ng 3.5\n"
    );
}

#[test]
fn every_family_follows_the_naming_rules_and_has_bounded_labels() {
    // Label names whose values come from small sets (sizes, devices, models, lists, kinds,
    // programs) or the exporter itself: never a pid, an offset or a free-form string.
    let bounded = [
        "size", "device", "kind", "model", "list", "program", "tier", "kernel", "version",
        "source", "models",
    ];
    let mut seen = std::collections::HashSet::new();
    for d in METRICS {
        assert!(seen.insert(d.name), "{} defined twice", d.name);
        assert!(
            d.name.starts_with("swapscope_") || d.name.starts_with("process_"),
            "{}",
            d.name
        );
        match d.kind {
            super::metrics::Kind::Counter => assert!(d.name.ends_with("_total"), "{}", d.name),
            super::metrics::Kind::Info => assert!(d.name.ends_with("_info"), "{}", d.name),
            super::metrics::Kind::Gauge => assert!(!d.name.ends_with("_total"), "{}", d.name),
        }
        for l in d.labels {
            assert!(bounded.contains(l), "{}: unbounded label {l}", d.name);
        }
        assert!(
            !d.help.contains('"') && !d.help.contains('\\') && !d.help.ends_with('.'),
            "{}: help must need no escaping and no final period (the encoder adds one)",
            d.name
        );
        assert!(
            ["counters", "tracepoint", "full"].contains(&d.tier),
            "{}",
            d.name
        );
    }
}

#[test]
fn sizes_are_labelled_as_sysfs_spells_them() {
    assert_eq!(size_label(0, 4096), "4kB");
    assert_eq!(size_label(4, 4096), "64kB");
    assert_eq!(size_label(9, 4096), "2048kB");
}

#[test]
fn the_docs_list_every_family_with_its_help() {
    let doc = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../docs/fleet.md"))
        .expect("docs/fleet.md");
    for d in METRICS {
        assert!(
            doc.contains(&format!("`{}`", d.name)),
            "docs/fleet.md lacks {}",
            d.name
        );
        assert!(
            doc.contains(d.help),
            "docs/fleet.md lacks the help of {}",
            d.name
        );
    }
}

/// The request path the fuzz target drives (`answer_raw`): what a client gets for a request,
/// for garbage and for a request cut short.
#[test]
fn raw_requests_get_the_servers_answers() {
    let shared = std::sync::Arc::new(crate::sink::analysis::Shared::default());
    let text =
        |b: &[u8]| String::from_utf8_lossy(&super::answer_raw(b, shared.clone())).into_owned();
    let ok = text(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n");
    assert!(ok.starts_with("HTTP/1.1 200"), "{ok:?}");
    let post = text(b"POST /metrics HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\n\r\n");
    assert!(
        post.starts_with("HTTP/1.1 405") && post.contains("allow: GET, HEAD"),
        "{post:?}"
    );
    let metrics = text(b"GET /metrics HTTP/1.0\r\n\r\n");
    assert!(
        metrics.starts_with("HTTP/1.0 200") || metrics.starts_with("HTTP/1.1 200"),
        "{metrics:?}"
    );
    let garbage = text(b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03");
    assert!(
        garbage.is_empty() || garbage.starts_with("HTTP/1.1 400"),
        "{garbage:?}"
    );
    let cut = text(b"GET /metr");
    assert!(!cut.contains("200 OK"), "{cut:?}");
}
