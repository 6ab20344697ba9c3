//! The heap-growth verdict: a cache that is never evicted is flagged at its allocation site;
//! the same allocations with a bounded cache are not.

use std::time::Duration;

use anyhow::{Context, Result};
use gotrace::{export::Report, probes::ProbeSelection, AttachOptions};
use gotrace_tests::{bpf, fixtures, trace, GoProcess, Toolchain, Variant};

fn traced(mode: &str, release: &str, variant: Variant) -> Result<Report> {
    let exe = fixtures::build("heapgrow", Toolchain::find(release)?, variant)?;
    let proc = GoProcess::start(&exe, &["-mode", mode])?;
    let tracing = trace::start(
        proc.pid(),
        AttachOptions {
            probes: ProbeSelection::none(),
            tick: Duration::from_millis(250),
            ..AttachOptions::default()
        },
    )?;
    std::thread::sleep(Duration::from_secs(8));
    let (session, reason) = tracing.finish()?;
    Ok(Report::build(&session, reason))
}

fn growth_flagged(release: &str, variant: Variant) -> Result<()> {
    let lock = bpf::exclusive();
    let report = traced("leak", release, variant)?;
    let f = report
        .findings
        .iter()
        .find(|f| f.pattern == "heap-growth")
        .with_context(|| format!("no heap-growth finding: {:#?}", report.findings))?;
    assert_eq!(f.site.function, "main.handle", "{f:#?}");
    let e = &f.evidence;
    assert!(e["grew_by_bytes"].as_u64().unwrap() >= 8 << 20, "{e}");
    assert!(e["age"]["oldest"].as_u64().unwrap() >= 4, "{e}");
    assert!(f.hint.contains("cache"));
    lock.assert_nothing_loaded()
}

fn steady_not_flagged(release: &str, variant: Variant) -> Result<()> {
    let lock = bpf::exclusive();
    let report = traced("steady", release, variant)?;
    let growth: Vec<_> = report
        .findings
        .iter()
        .filter(|f| f.pattern == "heap-growth")
        .collect();
    assert!(growth.is_empty(), "{growth:#?}");
    assert!(
        report.heap.alloc_bytes >= 16 << 20,
        "it did allocate: {:?}",
        report.heap.alloc_bytes
    );
    lock.assert_nothing_loaded()
}

#[test]
fn growth_flagged_go_oldest_stripped() -> Result<()> {
    growth_flagged("1.19", Variant::Stripped)
}

#[test]
fn growth_flagged_go_newest() -> Result<()> {
    growth_flagged("1.27", Variant::Default)
}

#[test]
fn steady_not_flagged_go_newest_stripped() -> Result<()> {
    steady_not_flagged("1.27", Variant::Stripped)
}

#[test]
fn steady_not_flagged_go_oldest() -> Result<()> {
    steady_not_flagged("1.19", Variant::Default)
}
