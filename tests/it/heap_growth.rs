//! The heap-growth verdict: a cache that is never evicted is flagged at its allocation site;
//! the same allocations with a bounded cache are not.

use std::time::Duration;

use anyhow::Result;
use gotrace::{probes::ProbeSelection, snapshot::Report, AttachOptions};
use gotrace_tests::{
    bpf,
    trace::{assert_no_finding, finding, Run},
    Variant,
};

fn traced(mode: &str, release: &str, variant: Variant) -> Result<Report> {
    Run {
        fixture: "heapgrow",
        args: &["-mode", mode],
        release,
        variant,
        options: AttachOptions {
            probes: ProbeSelection::none(),
            tick: Duration::from_millis(250),
            ..AttachOptions::default()
        },
        send_go: false,
        run_for: Duration::from_secs(8),
    }
    .report()
}

fn growth_flagged(release: &str, variant: Variant) -> Result<()> {
    let lock = bpf::exclusive();
    let report = traced("leak", release, variant)?;
    let f = finding(&report, "heap-growth")?;
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
    assert_no_finding(&report, &["heap-growth"]);
    assert!(
        report.heap.alloc_bytes >= 16 << 20,
        "it did allocate: {:?}",
        report.heap.alloc_bytes
    );
    lock.assert_nothing_loaded()
}

#[test]
fn growth_flagged_go_oldest_stripped() -> Result<()> {
    let _children = gotrace_tests::children::guard();
    growth_flagged("1.19", Variant::Stripped)
}

#[test]
fn growth_flagged_go_newest() -> Result<()> {
    let _children = gotrace_tests::children::guard();
    growth_flagged("1.27", Variant::Default)
}

#[test]
fn steady_not_flagged_go_newest_stripped() -> Result<()> {
    let _children = gotrace_tests::children::guard();
    steady_not_flagged("1.27", Variant::Stripped)
}

#[test]
fn steady_not_flagged_go_oldest() -> Result<()> {
    let _children = gotrace_tests::children::guard();
    steady_not_flagged("1.19", Variant::Default)
}
