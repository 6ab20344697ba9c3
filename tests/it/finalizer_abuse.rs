//! The finalizer-abuse verdict: slow finalizers used as destructors are flagged, with the
//! SetFinalizer call site and the finalizer the runtime's goroutine is stuck in; the same work
//! with explicit closes is not.

use std::time::Duration;

use anyhow::Result;
use gotrace::{probes::ProbeSelection, snapshot::Report, AttachOptions};
use gotrace_tests::{
    bpf,
    trace::{assert_no_finding, finding, Run},
    Variant,
};
use tracer_common::ProbeKind;

fn traced(mode: &str, release: &str, variant: Variant, probes: ProbeSelection) -> Result<Report> {
    Run {
        fixture: "finalizers",
        args: &["-mode", mode],
        release,
        variant,
        options: AttachOptions {
            probes,
            tick: Duration::from_millis(500),
            ..AttachOptions::default()
        },
        send_go: false,
        run_for: Duration::from_secs(10),
    }
    .report()
}

/// With `--finalizer-sites` the finding names the SetFinalizer call site and its rate.
fn abuse_flagged(release: &str, variant: Variant) -> Result<()> {
    let lock = bpf::exclusive();
    let sites = ProbeSelection::none().with(ProbeKind::SetFinalizer);
    let report = traced("abuse", release, variant, sites)?;
    let f = finding(&report, "finalizer-abuse")?;
    assert_eq!(f.site.function, "main.open", "{f:#?}");
    let e = &f.evidence;
    assert_eq!(
        e["set_finalizer_sites"][0]["site"]["function"], "main.open",
        "{e}"
    );
    assert!(
        e["set_finalizer_sites"][0]["per_s"].as_f64().unwrap() >= 500.0,
        "{e}"
    );
    assert_eq!(
        e["set_finalizer_sites"][0]["object_type"], "*main.resource",
        "{e}"
    );
    assert!(
        f.stack
            .iter()
            .any(|fr| fr.function == "main.(*resource).close"),
        "stuck in the slow finalizer: {:?}",
        f.stack
    );
    assert!(e["queue"].as_u64().unwrap() >= 1000, "{e}");
    lock.assert_nothing_loaded()
}

fn healthy_not_flagged(release: &str, variant: Variant) -> Result<()> {
    let lock = bpf::exclusive();
    let report = traced("healthy", release, variant, ProbeSelection::none())?;
    assert_no_finding(&report, &["finalizer-abuse"]);
    lock.assert_nothing_loaded()
}

/// Without any probe (the default) the finding points at the finalizer that blocks.
fn abuse_flagged_without_probes(release: &str, variant: Variant) -> Result<()> {
    let lock = bpf::exclusive();
    let report = traced("abuse", release, variant, ProbeSelection::none())?;
    let f = finding(&report, "finalizer-abuse")?;
    assert_eq!(f.site.function, "main.(*resource).close", "{f:#?}");
    assert!(
        f.evidence["queue"].as_u64().unwrap() >= 1000,
        "{}",
        f.evidence
    );
    lock.assert_nothing_loaded()
}

#[test]
fn abuse_flagged_without_probes_go_newest() -> Result<()> {
    let _children = gotrace_tests::children::guard();
    abuse_flagged_without_probes("1.27", Variant::Default)
}

#[test]
fn abuse_flagged_go_oldest() -> Result<()> {
    let _children = gotrace_tests::children::guard();
    abuse_flagged("1.19", Variant::Default)
}

#[test]
fn abuse_flagged_go_newest_stripped() -> Result<()> {
    let _children = gotrace_tests::children::guard();
    abuse_flagged("1.27", Variant::Stripped)
}

#[test]
fn healthy_not_flagged_go_newest() -> Result<()> {
    let _children = gotrace_tests::children::guard();
    healthy_not_flagged("1.27", Variant::Default)
}

#[test]
fn healthy_not_flagged_go_oldest_stripped() -> Result<()> {
    let _children = gotrace_tests::children::guard();
    healthy_not_flagged("1.19", Variant::Stripped)
}
