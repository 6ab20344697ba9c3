//! The cgo-malloc-leak verdict (with --cgo-malloc): C memory from C.malloc that the Go side
//! never frees is flagged with a stack that crosses from C into Go; the twin that frees is not.

use std::time::Duration;

use anyhow::{Context, Result};
use gotrace::{export::Report, probes::ProbeSelection, AttachOptions};
use gotrace_tests::{bpf, fixtures, trace, GoProcess, Toolchain, Variant};
use tracer_common::ProbeKind;

fn traced(mode: &str, release: &str, variant: Variant) -> Result<Report> {
    let exe = fixtures::build("cgoleak", Toolchain::find(release)?, variant)?;
    let proc = GoProcess::start(&exe, &["-mode", mode])?;
    let tracing = trace::start(
        proc.pid(),
        AttachOptions {
            probes: ProbeSelection::none()
                .with(ProbeKind::CMalloc)
                .with(ProbeKind::CFree),
            tick: Duration::from_millis(500),
            ..AttachOptions::default()
        },
    )?;
    std::thread::sleep(Duration::from_secs(5));
    let (session, reason) = tracing.finish()?;
    assert!(session.hits(ProbeKind::CMalloc) > 1000, "malloc seen");
    Ok(Report::build(&session, reason))
}

fn leak_flagged(release: &str, variant: Variant) -> Result<()> {
    let lock = bpf::exclusive();
    let report = traced("leak", release, variant)?;
    let f = report
        .findings
        .iter()
        .find(|f| f.pattern == "cgo-malloc-leak")
        .with_context(|| format!("no cgo-malloc-leak finding: {:#?}", report.findings))?;
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
    let bad: Vec<_> = report
        .findings
        .iter()
        .filter(|f| f.pattern == "cgo-malloc-leak")
        .collect();
    assert!(bad.is_empty(), "{bad:#?}");
    lock.assert_nothing_loaded()
}

#[test]
fn leak_flagged_go_oldest() -> Result<()> {
    leak_flagged("1.19", Variant::Default)
}

#[test]
fn leak_flagged_go_newest_stripped() -> Result<()> {
    leak_flagged("1.27", Variant::Stripped)
}

#[test]
fn healthy_not_flagged_go_newest() -> Result<()> {
    healthy_not_flagged("1.27", Variant::Default)
}

#[test]
fn healthy_not_flagged_go_oldest_stripped() -> Result<()> {
    healthy_not_flagged("1.19", Variant::Stripped)
}
