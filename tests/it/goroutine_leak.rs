//! The goroutine-leak verdict: a handler that leaves a worker blocked on every slow request is
//! flagged at its `go` statement within 30 s; a healthy pool with as many goroutines is not.

use std::time::Duration;

use anyhow::{Context, Result};
use gotrace::{probes::ProbeSelection, snapshot::Report, AttachOptions};
use gotrace_tests::{bpf, fixtures, trace, GoProcess, Toolchain, Variant};

/// Traces `goleak -mode <mode>` for `secs` and returns the report.
fn traced(mode: &str, release: &str, variant: Variant, secs: u64) -> Result<Report> {
    let exe = fixtures::build("goleak", Toolchain::find(release)?, variant)?;
    let proc = GoProcess::start(&exe, &["-mode", mode])?;
    let tracing = trace::start(
        proc.pid(),
        AttachOptions {
            probes: ProbeSelection::none(),
            ..AttachOptions::default()
        },
    )?;
    std::thread::sleep(Duration::from_secs(secs));
    let (session, reason) = tracing.finish()?;
    Ok(session.snapshot(Some(reason))?.report)
}

fn leak_flagged(release: &str, variant: Variant) -> Result<()> {
    let lock = bpf::exclusive();
    let report = traced("leak", release, variant, 15)?;
    let f = report
        .findings
        .iter()
        .find(|f| f.pattern == "goroutine-leak")
        .with_context(|| format!("no goroutine-leak finding: {:#?}", report.findings))?;
    assert_eq!(f.site.function, "main.handle", "{f:#?}");
    // The `go` statement inside handle(), wherever it sits in the source.
    let src = std::fs::read_to_string(fixtures::fixtures_dir().join("goleak/main.go"))?;
    let handle = src.find("func handle(").context("handle")?;
    let go_line = src[..handle + src[handle..].find("go func()").context("go func")?]
        .lines()
        .count() as u32;
    assert!(
        f.site.file.ends_with("goleak/main.go") && f.site.line == go_line,
        "{:?} vs line {go_line}",
        f.site
    );
    let e = &f.evidence;
    assert!(e["live"].as_u64().unwrap() >= 100, "{e}");
    assert!(e["growth_per_s"].as_f64().unwrap() >= 10.0, "{e}");
    assert_eq!(e["wait_reason"], "chan send", "{e}");
    assert!(
        f.stack
            .first()
            .is_some_and(|fr| fr.function.starts_with("main.handle.func")),
        "blocked in the worker closure: {:?}",
        f.stack
    );
    assert!(f.hint.contains("buffer"));
    assert_eq!(report.findings.len(), 1, "{:#?}", report.findings);
    lock.assert_nothing_loaded()
}

fn pool_not_flagged(release: &str, variant: Variant) -> Result<()> {
    let lock = bpf::exclusive();
    let report = traced("pool", release, variant, 15)?;
    assert!(report.findings.is_empty(), "{:#?}", report.findings);
    assert!(
        report.goroutines.live_at_end.unwrap() >= 400,
        "as many goroutines as the leak"
    );
    lock.assert_nothing_loaded()
}

#[test]
fn leak_flagged_go_oldest_stripped() -> Result<()> {
    let _children = gotrace_tests::children::guard();
    leak_flagged("1.19", Variant::Stripped)
}

#[test]
fn leak_flagged_go_newest() -> Result<()> {
    let _children = gotrace_tests::children::guard();
    leak_flagged("1.27", Variant::Default)
}

#[test]
fn healthy_pool_not_flagged_go_newest_stripped() -> Result<()> {
    let _children = gotrace_tests::children::guard();
    pool_not_flagged("1.27", Variant::Stripped)
}

#[test]
fn healthy_pool_not_flagged_go_oldest() -> Result<()> {
    let _children = gotrace_tests::children::guard();
    pool_not_flagged("1.19", Variant::Default)
}

/// Go 1.27's own leak detector (run when the program asks for its goroutine leak profile)
/// marks goroutines it proved leaked: gotrace reports them as such, and so does its dump.
#[test]
fn goroutines_the_runtime_marked_leaked() -> Result<()> {
    let _children = gotrace_tests::children::guard();
    let lock = bpf::exclusive();
    let exe = fixtures::build("goleakrt", Toolchain::find("1.27")?, Variant::Stripped)?;
    let mut proc = GoProcess::start(&exe, &[])?;
    let tracing = trace::start(
        proc.pid(),
        AttachOptions {
            probes: ProbeSelection::none(),
            tick: Duration::from_millis(200),
            ..AttachOptions::default()
        },
    )?;
    proc.send("go")?;
    assert_eq!(
        proc.expect_line("marked", Duration::from_secs(30))?,
        "marked 20"
    );
    std::thread::sleep(Duration::from_millis(600));
    let dump = gotrace::dump::take(proc.pid(), false)?;
    let leaked = dump
        .goroutines
        .iter()
        .filter(|g| &*g.state == "chan send (leaked)")
        .count();
    assert_eq!(leaked, 20, "{:#?}", dump.groups);
    let (session, reason) = tracing.finish()?;
    let report = session.snapshot(Some(reason))?.report;
    let f = report
        .findings
        .iter()
        .find(|f| f.evidence["signal"] == "runtime-detected")
        .with_context(|| format!("{:#?}", report.findings))?;
    assert_eq!(f.site.function, "main.leak", "{f:#?}");
    assert_eq!(f.evidence["leaked_by_runtime"], 20, "{}", f.evidence);
    proc.send("exit")?;
    drop(session);
    lock.assert_nothing_loaded()
}

/// The goroutine tree (parent → child, folded by creation site) and per-site ages, read from
/// memory: 3 servers started by main, each starting 5 handlers.
#[test]
fn goroutine_tree_and_ages() -> Result<()> {
    let _children = gotrace_tests::children::guard();
    let lock = bpf::exclusive();
    let exe = fixtures::build("gotree", Toolchain::find("1.27")?, Variant::Stripped)?;
    let mut proc = GoProcess::start(&exe, &[])?;
    let tracing = trace::start(
        proc.pid(),
        AttachOptions {
            probes: ProbeSelection::none(),
            tick: Duration::from_millis(200),
            ..AttachOptions::default()
        },
    )?;
    proc.send("go")?;
    proc.expect_line("started", Duration::from_secs(30))?;
    std::thread::sleep(Duration::from_millis(1500));
    let (session, reason) = tracing.finish()?;
    let report = session.snapshot(Some(reason))?.report;
    let g = &report.goroutines;
    let edge = |parent: &str, child: &str| {
        g.tree.iter().find(|e| {
            e.site.function == child
                && e.parent_site.as_ref().map(|p| p.function.as_str()) == Some(parent)
        })
    };
    // Handlers: started at `go handle()` in serve, by goroutines started at `go serve` in main.
    assert_eq!(
        edge("main.main", "main.serve").map(|e| e.live),
        Some(15),
        "{:#?}",
        g.tree
    );
    let servers = g
        .tree
        .iter()
        .filter(|e| e.site.function == "main.main")
        .map(|e| e.live)
        .sum::<u64>();
    assert_eq!(servers, 3, "{:#?}", g.tree);
    let handlers = g
        .live_by_site
        .iter()
        .find(|s| s.function == "main.handle")
        .context("handler site")?;
    assert_eq!(handlers.live, 15);
    // Started after attach, a second or two ago.
    assert_eq!(handlers.ages.before_attach, 0);
    assert_eq!(
        handlers.ages.seconds[0] + handlers.ages.seconds[1],
        15,
        "{:?}",
        handlers.ages
    );
    proc.send("exit")?;
    drop(session);
    lock.assert_nothing_loaded()
}
