//! The cgo-malloc-leak verdict (with --cgo-malloc): C memory from C.malloc that the Go side
//! never frees is flagged with a stack that crosses from C into Go; the twin that frees is not.

use std::time::Duration;

use anyhow::Result;
use gotrace::{probes::ProbeSelection, snapshot::Report, AttachOptions};
use gotrace_tests::{
    bpf,
    trace::{assert_no_finding, finding, Run},
    Variant,
};
use tracer_common::ProbeKind;

fn traced(mode: &str, release: &str, variant: Variant) -> Result<Report> {
    Run {
        fixture: "cgoleak",
        args: &["-mode", mode],
        release,
        variant,
        options: AttachOptions {
            probes: ProbeSelection::none()
                .with(ProbeKind::CMalloc)
                .with(ProbeKind::CFree),
            tick: Duration::from_millis(500),
            ..AttachOptions::default()
        },
        send_go: false,
        run_for: Duration::from_secs(5),
    }
    .report()
}

fn leak_flagged(release: &str, variant: Variant) -> Result<()> {
    let lock = bpf::exclusive();
    let report = traced("leak", release, variant)?;
    let mallocs = report.session.probes.iter().find(|p| p.name == "c-malloc");
    assert!(
        mallocs.is_some_and(|p| p.hits > 1000),
        "{:?}",
        report.session.probes
    );
    let f = finding(&report, "cgo-malloc-leak")?;
    let functions: Vec<&str> = f.stack.iter().map(|fr| fr.function.as_str()).collect();
    // C frames (named from the symbol table when the binary has one), then the Go caller.
    if variant == Variant::Default {
        assert_eq!(f.site.function, "make_message", "{functions:?}");
    }
    assert!(
        functions.contains(&"main.handle"),
        "the Go side of the stack: {functions:?}"
    );
    assert!(
        f.evidence["grew_by_bytes"].as_i64().unwrap() >= 16 << 20,
        "{}",
        f.evidence
    );
    assert!(
        f.evidence["outstanding_blocks"].as_i64().unwrap() >= 4096,
        "{}",
        f.evidence
    );
    lock.assert_nothing_loaded()
}

fn healthy_not_flagged(release: &str, variant: Variant) -> Result<()> {
    let lock = bpf::exclusive();
    let report = traced("healthy", release, variant)?;
    assert_no_finding(&report, &["cgo-malloc-leak"]);
    lock.assert_nothing_loaded()
}

#[test]
fn leak_flagged_go_oldest() -> Result<()> {
    let _children = gotrace_tests::children::guard();
    leak_flagged("1.19", Variant::Default)
}

#[test]
fn leak_flagged_go_newest_stripped() -> Result<()> {
    let _children = gotrace_tests::children::guard();
    leak_flagged("1.27", Variant::Stripped)
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
