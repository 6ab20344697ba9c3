//! The chan-backlog verdict: producers outpacing the consumer of a buffered channel are
//! flagged at their send statement; the same pipeline with a consumer that keeps up is not.

use std::time::Duration;

use anyhow::Result;
use gotrace::{export::Report, probes::ProbeSelection, AttachOptions};
use gotrace_tests::{
    bpf,
    trace::{assert_no_finding, finding, Run},
    Variant,
};

fn traced(mode: &str, release: &str, variant: Variant) -> Result<Report> {
    Run {
        fixture: "chanbacklog",
        args: &["-mode", mode],
        release,
        variant,
        options: AttachOptions {
            probes: ProbeSelection::none(),
            tick: Duration::from_millis(500),
            ..AttachOptions::default()
        },
        send_go: false,
        run_for: Duration::from_secs(5),
    }
    .report()
}

fn backlog_flagged(release: &str, variant: Variant) -> Result<()> {
    let lock = bpf::exclusive();
    let report = traced("backlog", release, variant)?;
    let f = finding(&report, "chan-backlog")?;
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
    assert_no_finding(&report, &["chan-backlog", "goroutine-leak"]);
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
