//! The chan-backlog verdict: producers outpacing the consumer of a buffered channel are
//! flagged at their send statement; the same pipeline with a consumer that keeps up is not.

use std::time::Duration;

use anyhow::{Context, Result};
use gotrace::{export::Report, probes::ProbeSelection, AttachOptions};
use gotrace_tests::{bpf, fixtures, trace, GoProcess, Toolchain, Variant};

fn traced(mode: &str, release: &str, variant: Variant) -> Result<Report> {
    let exe = fixtures::build("chanbacklog", Toolchain::find(release)?, variant)?;
    let proc = GoProcess::start(&exe, &["-mode", mode])?;
    let tracing = trace::start(
        proc.pid(),
        AttachOptions {
            probes: ProbeSelection::none(),
            tick: Duration::from_millis(500),
            ..AttachOptions::default()
        },
    )?;
    std::thread::sleep(Duration::from_secs(5));
    let (session, reason) = tracing.finish()?;
    Ok(Report::build(&session, reason))
}

fn backlog_flagged(release: &str, variant: Variant) -> Result<()> {
    let lock = bpf::exclusive();
    let report = traced("backlog", release, variant)?;
    let f = report
        .findings
        .iter()
        .find(|f| f.pattern == "chan-backlog")
        .with_context(|| format!("no chan-backlog finding: {:#?}", report.findings))?;
    assert_eq!(f.site.function, "main.produce", "{f:#?}");
    let e = &f.evidence;
    assert_eq!(e["capacity"], 256, "{e}");
    assert_eq!(e["len"], 256, "{e}");
    assert!(e["senders_blocked"].as_u64().unwrap() >= 1, "{e}");
    assert_eq!(report.findings.len(), 1, "{:#?}", report.findings);
    lock.assert_nothing_loaded()
}

fn healthy_not_flagged(release: &str, variant: Variant) -> Result<()> {
    let lock = bpf::exclusive();
    let report = traced("healthy", release, variant)?;
    assert!(report.findings.is_empty(), "{:#?}", report.findings);
    lock.assert_nothing_loaded()
}

#[test]
fn backlog_flagged_go_oldest_stripped() -> Result<()> {
    backlog_flagged("1.19", Variant::Stripped)
}

#[test]
fn backlog_flagged_go_newest() -> Result<()> {
    backlog_flagged("1.27", Variant::Default)
}

#[test]
fn healthy_not_flagged_go_newest_stripped() -> Result<()> {
    healthy_not_flagged("1.27", Variant::Stripped)
}

#[test]
fn healthy_not_flagged_go_oldest() -> Result<()> {
    healthy_not_flagged("1.19", Variant::Default)
}
