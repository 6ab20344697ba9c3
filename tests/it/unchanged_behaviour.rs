//! Tracing must not change what the target does: same output, same exit code, with every probe
//! enabled while its goroutines grow their stacks deeply (the morestack path re-enters probed
//! functions at their entry).

use std::time::Duration;

use anyhow::Result;
use gotrace::{probes::ProbeSelection, AttachOptions, StopReason};
use gotrace_tests::{bpf, fixtures, go, trace, GoProcess, Toolchain, Variant};
use tracer_common::ProbeKind;

/// Goroutines the fixture starts: 24 workers, each starting one per recursion (4 rounds).
const STARTED: u64 = 24 + 24 * 4;

fn run_untraced(exe: &std::path::Path) -> Result<(Option<i32>, Vec<String>)> {
    let mut p = GoProcess::start(exe, &[])?;
    p.send("go")?;
    let (status, out) = p.wait(Duration::from_secs(120))?;
    Ok((status.code(), out))
}

fn unchanged(release: &str, variant: Variant) -> Result<()> {
    let exe = fixtures::build("morestack", Toolchain::find(release)?, variant)?;
    let (code, output) = run_untraced(&exe)?;
    assert_eq!(code, Some(3), "the fixture exits with 3: {output:?}");

    let lock = bpf::exclusive();
    let mut p = GoProcess::start(&exe, &[])?;
    let all = ProbeSelection::default_set()
        .with_goroutine_events()
        .with(ProbeKind::SetFinalizer)
        .with(ProbeKind::ChanSend)
        .with(ProbeKind::Malloc);
    let tracing = trace::start(
        p.pid(),
        AttachOptions {
            probes: all,
            ..AttachOptions::default()
        },
    )?;
    p.send("go")?;
    let (status, traced_output) = p.wait(Duration::from_secs(300))?;
    let (session, reason) = tracing.finish()?;
    assert_eq!(reason, StopReason::TargetExited);
    assert_eq!(status.code(), code, "exit code changed by tracing");
    assert_eq!(traced_output, output, "output changed by tracing");

    // Every probed call fired exactly once, also those that grew the stack in their prologue.
    let counts = output
        .iter()
        .find_map(|l| l.strip_prefix("finalizers "))
        .expect("the fixture prints its counts");
    let (finalizers, sends) = counts.split_once(" sends ").unwrap();
    assert_eq!(session.hits(ProbeKind::GoroutineCreate), STARTED);
    assert_eq!(
        session.hits(ProbeKind::SetFinalizer),
        finalizers.parse::<u64>()?
    );
    assert_eq!(session.hits(ProbeKind::ChanSend), sends.parse::<u64>()?);
    assert!(
        session.hits(ProbeKind::Malloc) >= 96 * 3,
        "every allocation is probed"
    );
    drop(session);
    lock.assert_nothing_loaded()
}

#[test]
fn unchanged_go_oldest() -> Result<()> {
    let _children = gotrace_tests::children::guard();
    unchanged(go::OLDEST, Variant::Default)
}

#[test]
fn unchanged_go_newest() -> Result<()> {
    let _children = gotrace_tests::children::guard();
    unchanged(go::NEWEST, Variant::Default)
}

#[test]
fn unchanged_go_newest_stripped() -> Result<()> {
    let _children = gotrace_tests::children::guard();
    unchanged(go::NEWEST, Variant::Stripped)
}

#[test]
fn unchanged_go_1_24_stripped_pie() -> Result<()> {
    let _children = gotrace_tests::children::guard();
    unchanged("1.24", Variant::StrippedPie)
}
