//! Counters of an attach session equal what the traced program provably did after attach.

use std::{collections::HashMap, time::Duration};

use anyhow::{Context, Result};
use gotrace::{probes::ProbeSelection, AttachOptions, StopReason};
use gotrace_tests::{bpf, fixtures, go, trace, GoProcess, Toolchain, Variant};
use tracer_common::ProbeKind;

const GOROUTINES: u64 = 50;
const FINALIZERS: u64 = 30;
const SENDS: u64 = 20;
const CAPACITY: u64 = 64;

fn exact_counts(release: &str, variant: Variant) -> Result<()> {
    let lock = bpf::exclusive();
    let exe = fixtures::build("events", Toolchain::find(release)?, variant)?;
    let mut proc = GoProcess::start(
        &exe,
        &[
            "-goroutines",
            &GOROUTINES.to_string(),
            "-finalizers",
            &FINALIZERS.to_string(),
            "-sends",
            &SENDS.to_string(),
            "-cap",
            &CAPACITY.to_string(),
        ],
    )?;
    let main_goid: u64 = proc
        .output
        .iter()
        .find_map(|l| l.strip_prefix("goid "))
        .context("the fixture prints its goid")?
        .parse()?;

    let num_goroutine: u64 = proc
        .output
        .iter()
        .find_map(|l| l.strip_prefix("numgoroutine "))
        .context("the fixture prints runtime.NumGoroutine()")?
        .parse()?;

    let options = AttachOptions {
        probes: ProbeSelection::default_set()
            .with_goroutine_events()
            .with(ProbeKind::SetFinalizer)
            .with(ProbeKind::ChanSend),
        ..AttachOptions::default()
    };
    let tracing = trace::start(proc.pid(), options)?;
    proc.send("go")?;
    proc.expect_line("done", Duration::from_secs(60))?;
    proc.send("exit")?;
    let (status, _) = proc.wait(Duration::from_secs(30))?;
    assert!(status.success(), "fixture failed: {status}");
    let (session, reason) = tracing.finish()?;
    assert_eq!(
        reason,
        StopReason::TargetExited,
        "the session ends with the target"
    );

    // The census read from the runtime's memory agrees with runtime.NumGoroutine, also in
    // stripped binaries, where allgs is found by decoding code.
    let census = session.model().census_at_start.context("allgs located")?;
    assert_eq!(census.user, num_goroutine, "{census:?}");
    assert!(
        census.all > census.user,
        "the runtime's own goroutines: {census:?}"
    );

    let report = session.snapshot(Some(reason))?.report;
    let c = &report.counters;
    assert_eq!(c.goroutines_created, GOROUTINES, "{report:#?}");
    assert_eq!(c.goroutines_exited, GOROUTINES, "{report:#?}");
    assert_eq!(c.finalizers_set, Some(FINALIZERS), "{report:#?}");
    assert_eq!(c.chan_sends, Some(SENDS), "{report:#?}");
    assert_eq!(c.events_lost, 0);
    assert_eq!(
        session
            .model()
            .goroutines
            .by_parent
            .iter()
            .map(|(k, v)| (*k, *v))
            .collect::<HashMap<u64, u64>>(),
        HashMap::from([(main_goid, GOROUTINES)]),
        "every goroutine was started by main (goid {main_goid})"
    );
    let site = &report.goroutines.created_by_site[0];
    assert_eq!(site.site.function, "main.main");
    assert!(
        site.site.file.ends_with("events/main.go"),
        "{:?}",
        site.site
    );
    assert!(
        site.function.starts_with("main.main.func"),
        "{}",
        site.function
    );
    // The full creation stack (recorded on the system stack, unwound into the goroutine's).
    assert_eq!(
        site.creation_stack.first().map(|f| f.function.as_str()),
        Some("main.main"),
        "{:?}",
        site.creation_stack
    );

    assert_eq!(report.channels.len(), 1, "{:#?}", report.channels);
    let ch = &report.channels[0];
    assert_eq!(
        (ch.sends, ch.capacity, ch.last_len),
        (SENDS, CAPACITY, SENDS - 1)
    );
    assert_eq!(report.finalizers[0].site.function, "main.main");
    assert_eq!(report.finalizers[0].calls, FINALIZERS);
    // What `fmt.Sprintf("%T", o)` prints in the fixture, read from the type section.
    assert_eq!(
        report.finalizers[0].object_type.as_deref(),
        Some("*main.object")
    );

    assert_eq!(
        report.target.module.as_deref(),
        Some("gotrace.dev/fixtures/events")
    );
    let minor = Toolchain::find(release)?.minor();
    assert!(
        report.target.go_version.starts_with(&format!("go{minor}")),
        "{:?}",
        report.target
    );
    assert_eq!(
        report.target.stripped,
        matches!(variant, Variant::Stripped | Variant::StrippedPie)
    );
    drop(session);
    lock.assert_nothing_loaded()
}

#[test]
fn exact_counts_go_oldest() -> Result<()> {
    let _children = gotrace_tests::children::guard();
    exact_counts(go::OLDEST, Variant::Default)
}

#[test]
fn exact_counts_go_oldest_stripped() -> Result<()> {
    let _children = gotrace_tests::children::guard();
    exact_counts(go::OLDEST, Variant::Stripped)
}

#[test]
fn exact_counts_go_newest() -> Result<()> {
    let _children = gotrace_tests::children::guard();
    exact_counts(go::NEWEST, Variant::Default)
}

#[test]
fn exact_counts_go_newest_stripped_pie() -> Result<()> {
    let _children = gotrace_tests::children::guard();
    exact_counts(go::NEWEST, Variant::StrippedPie)
}

#[test]
fn exact_counts_go_1_26_pie() -> Result<()> {
    let _children = gotrace_tests::children::guard();
    exact_counts("1.26", Variant::Pie)
}

/// The process keeps running a binary that was deleted, or replaced by another file, after it
/// started: gotrace reads and probes the running one through /proc/PID/exe.
fn gone_from_disk(replace_with: Option<&str>) -> Result<()> {
    let lock = bpf::exclusive();
    let original = fixtures::build("events", Toolchain::find(go::NEWEST)?, Variant::Stripped)?;
    let dir = std::env::temp_dir().join(format!("gotrace-gone-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    let exe = dir.join("events");
    std::fs::copy(&original, &exe)?;
    let mut proc = GoProcess::start(&exe, &["-goroutines", "7"])?;
    std::fs::remove_file(&exe)?;
    if let Some(other) = replace_with {
        // Another Go program (other release) now sits at the path the process was started from.
        let other = fixtures::build("events", Toolchain::find(other)?, Variant::Default)?;
        std::fs::copy(other, &exe)?;
    }
    let tracing = trace::start(proc.pid(), AttachOptions::default())?;
    proc.send("go")?;
    proc.expect_line("done", Duration::from_secs(30))?;
    let (session, reason) = tracing.finish()?;
    proc.send("exit")?;
    proc.wait(Duration::from_secs(30))?;
    let report = session.snapshot(Some(reason))?.report;
    assert_eq!(report.counters.goroutines_created, 7);
    assert!(
        report.target.exe.ends_with(" (deleted)"),
        "{}",
        report.target.exe
    );
    assert!(
        report.target.go_version.starts_with("go1.27"),
        "the running binary, not the file now at its path"
    );
    drop(session);
    let _ = std::fs::remove_dir_all(&dir);
    lock.assert_nothing_loaded()
}

#[test]
fn binary_deleted_after_start() -> Result<()> {
    let _children = gotrace_tests::children::guard();
    gone_from_disk(None)
}

#[test]
fn binary_replaced_after_start() -> Result<()> {
    let _children = gotrace_tests::children::guard();
    gone_from_disk(Some(go::OLDEST))
}

/// Without any goroutine probe (the default), the counts come from the runtime's goroutine-id
/// generator and the census of `allgs`: still exact.
fn counts_without_probes(release: &str, variant: Variant) -> Result<()> {
    let lock = bpf::exclusive();
    let exe = fixtures::build("events", Toolchain::find(release)?, variant)?;
    let mut proc = GoProcess::start(&exe, &["-goroutines", "40"])?;
    let tracing = trace::start(proc.pid(), AttachOptions::default())?;
    proc.send("go")?;
    proc.expect_line("done", Duration::from_secs(30))?;
    // Every started goroutine has returned (wg.Wait) and exits right after: give the runtime
    // a moment to mark them dead before the final look.
    std::thread::sleep(Duration::from_millis(200));
    let (session, reason) = tracing.finish()?;
    assert_eq!(reason, StopReason::Stopped);
    let report = session.snapshot(Some(reason))?.report;
    assert_eq!(
        report.counters.goroutines_created, 40,
        "{:?}",
        report.counters
    );
    assert_eq!(
        report.counters.goroutines_exited, 40,
        "{:?}",
        report.counters
    );
    assert!(report
        .session
        .probes
        .iter()
        .all(|p| p.name != "goroutine-create"));
    proc.send("exit")?;
    proc.wait(Duration::from_secs(30))?;
    drop(session);
    lock.assert_nothing_loaded()
}

#[test]
fn counts_without_probes_go_oldest_stripped() -> Result<()> {
    let _children = gotrace_tests::children::guard();
    counts_without_probes(go::OLDEST, Variant::Stripped)
}

#[test]
fn counts_without_probes_go_newest_pie() -> Result<()> {
    let _children = gotrace_tests::children::guard();
    counts_without_probes(go::NEWEST, Variant::Pie)
}
