//! Verdicts read from Go's heap profile over GC cycles, each with a healthy twin:
//! `syncmap-growth` (keys never deleted), `syncpool-misuse` (objects never put back, or
//! oversized objects put back),
//! `closure-retention` (a long-lived goroutine's closure keeps a large object alive).

use std::time::Duration;

use anyhow::Result;
use gotrace::{probes::ProbeSelection, snapshot::Report, AttachOptions};
use gotrace_tests::{
    bpf,
    trace::{assert_no_finding, finding, Run},
    Variant,
};

/// Traces `fixture -mode <mode>` for `secs` (telling it "go" once attached).
fn traced(fixture: &str, mode: &str, release: &str, variant: Variant, secs: u64) -> Result<Report> {
    Run {
        fixture,
        args: &["-mode", mode],
        release,
        variant,
        options: AttachOptions {
            probes: ProbeSelection::none(),
            tick: Duration::from_millis(250),
            sample_rate: Some(64 * 1024),
            ..AttachOptions::default()
        },
        send_go: true,
        run_for: Duration::from_secs(secs),
    }
    .report()
}

fn syncmap(release: &str, variant: Variant) -> Result<()> {
    let lock = bpf::exclusive();
    let leak = traced("syncmap", "leak", release, variant, 8)?;
    let f = finding(&leak, "syncmap-growth")?;
    assert_eq!(f.site.function, "main.remember", "{f:#?}");
    assert!(
        f.evidence["entries_added_per_s"].as_f64().unwrap() > 100.0,
        "{}",
        f.evidence
    );
    let healthy = traced("syncmap", "healthy", release, variant, 8)?;
    assert_no_finding(&healthy, &["syncmap-growth", "heap-growth"]);
    lock.assert_nothing_loaded()
}

fn syncpool(release: &str, variant: Variant) -> Result<()> {
    let lock = bpf::exclusive();
    let leak = traced("syncpool", "leak", release, variant, 6)?;
    let f = finding(&leak, "syncpool-misuse")?;
    assert_eq!(f.site.function, "main.handle", "{f:#?}");
    assert_eq!(
        f.evidence["new_function"], "main.newBuffer",
        "{}",
        f.evidence
    );
    let healthy = traced("syncpool", "healthy", release, variant, 6)?;
    assert_no_finding(&healthy, &["syncpool-misuse"]);
    lock.assert_nothing_loaded()
}

/// A pool of bytes.Buffers that keeps 4 MiB ones is named by its `New` (and its variable when
/// the symbol table is there); the twin that drops buffers over 64 KiB before Put is not.
fn syncpool_oversized(release: &str, variant: Variant) -> Result<()> {
    let lock = bpf::exclusive();
    let report = traced("syncpool", "oversized", release, variant, 5)?;
    let f = report
        .findings
        .iter()
        .find(|f| f.pattern == "syncpool-misuse" && f.evidence["signal"] == "oversized")
        .ok_or_else(|| anyhow::anyhow!("no oversized pool: {:#?}", report.findings))?;
    assert_eq!(f.site.function, "main.newResponse", "{f:#?}");
    let e = &f.evidence;
    assert!(
        e["largest_object_bytes"].as_u64().unwrap() >= 4 << 20,
        "{e}"
    );
    assert!(e["oversized_objects"].as_u64().unwrap() >= 1, "{e}");
    if matches!(variant, Variant::Default | Variant::Pie) {
        assert_eq!(e["pool"], "main.responses", "{e}");
    }
    // The other pool of the program (`buffers`, idle in this mode) is not flagged.
    assert_eq!(report.findings.len(), 1, "{:#?}", report.findings);
    let capped = traced("syncpool", "capped", release, variant, 5)?;
    assert_no_finding(&capped, &["syncpool-misuse"]);
    lock.assert_nothing_loaded()
}

fn closure(release: &str, variant: Variant) -> Result<()> {
    let lock = bpf::exclusive();
    let leak = traced("closure", "leak", release, variant, 8)?;
    let f = finding(&leak, "closure-retention")?;
    assert_eq!(f.site.function, "main.start", "the go statement: {f:#?}");
    assert!(
        f.evidence["retained_bytes"].as_u64().unwrap() >= 16 << 20,
        "{}",
        f.evidence
    );
    assert!(
        f.evidence["goroutine_function"]
            .as_str()
            .unwrap()
            .starts_with("main.start.func"),
        "{}",
        f.evidence
    );
    let healthy = traced("closure", "healthy", release, variant, 8)?;
    assert_no_finding(&healthy, &["closure-retention"]);
    lock.assert_nothing_loaded()
}

#[test]
fn syncmap_go_oldest() -> Result<()> {
    let _children = gotrace_tests::children::guard();
    syncmap("1.19", Variant::Default)
}

#[test]
fn syncmap_go_newest_stripped() -> Result<()> {
    let _children = gotrace_tests::children::guard();
    syncmap("1.27", Variant::Stripped)
}

#[test]
fn syncpool_go_oldest_stripped() -> Result<()> {
    let _children = gotrace_tests::children::guard();
    syncpool("1.19", Variant::Stripped)
}

#[test]
fn syncpool_go_newest() -> Result<()> {
    let _children = gotrace_tests::children::guard();
    syncpool("1.27", Variant::Default)
}

#[test]
fn syncpool_oversized_go_oldest_pie() -> Result<()> {
    let _children = gotrace_tests::children::guard();
    syncpool_oversized("1.19", Variant::Pie)
}

#[test]
fn syncpool_oversized_go_newest_stripped() -> Result<()> {
    let _children = gotrace_tests::children::guard();
    syncpool_oversized("1.27", Variant::Stripped)
}

#[test]
fn closure_go_oldest() -> Result<()> {
    let _children = gotrace_tests::children::guard();
    closure("1.19", Variant::Default)
}

#[test]
fn closure_go_newest_stripped() -> Result<()> {
    let _children = gotrace_tests::children::guard();
    closure("1.27", Variant::Stripped)
}
