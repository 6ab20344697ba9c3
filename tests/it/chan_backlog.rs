//! The chan-backlog verdict: producers outpacing the consumer of a buffered channel are
//! flagged at their send statement; the same pipeline with a consumer that keeps up is not.
//! A nearly full buffer nobody receives from is flagged with no sender blocked; the same
//! buffer as full but drained all along is not.

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

/// With `--chan-make` attached before the pipeline exists, the finding names the `make` of the
/// channel and where its consumer waits, besides the producers.
fn make_and_consumer_named(release: &str, variant: Variant) -> Result<()> {
    let lock = bpf::exclusive();
    let report = Run {
        fixture: "chanbacklog",
        args: &["-mode", "backlog", "-wait"],
        release,
        variant,
        options: AttachOptions {
            probes: ProbeSelection::none().with(ProbeKind::ChanMake),
            tick: Duration::from_millis(500),
            ..AttachOptions::default()
        },
        send_go: true,
        run_for: Duration::from_secs(6),
    }
    .report()?;
    let f = finding(&report, "chan-backlog")?;
    assert_eq!(f.site.function, "main.produce", "{f:#?}");
    let e = &f.evidence;
    assert_eq!(e["make_site"]["function"], "main.pipeline", "{e}");
    assert_eq!(
        e["make_site"]["file"]
            .as_str()
            .map(|f| f.ends_with("chanbacklog/main.go")),
        Some(true),
        "{e}"
    );
    assert_eq!(e["consumer_site"]["function"], "main.consume", "{e}");
    // The fixture makes this one channel after attach (the runtime makes none of its own).
    assert!(
        report.counters.chans_made.is_some_and(|n| n >= 1),
        "{:#?}",
        report.counters
    );
    lock.assert_nothing_loaded()
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

/// The fixture's nearly full channel (`-mode stalled` or `draining`, made after attach), seen
/// through `--chan-sends` only: nobody ever waits on it.
fn nearly_full(mode: &str, release: &str, variant: Variant) -> Result<Report> {
    let mut options = AttachOptions {
        probes: ProbeSelection::none().with(ProbeKind::ChanSend),
        tick: Duration::from_millis(500),
        ..AttachOptions::default()
    };
    options.detect.chan_backlog.stall = Duration::from_secs(2);
    Run {
        fixture: "chanbacklog",
        args: &["-mode", mode, "-wait"],
        release,
        variant,
        options,
        send_go: true,
        run_for: Duration::from_secs(5),
    }
    .report()
}

fn stalled_flagged(release: &str, variant: Variant) -> Result<()> {
    let lock = bpf::exclusive();
    let report = nearly_full("stalled", release, variant)?;
    let f = finding(&report, "chan-backlog")?;
    let e = &f.evidence;
    assert_eq!(e["signal"], "stalled", "{e}");
    assert_eq!(
        (e["capacity"].as_u64(), e["len"].as_u64()),
        (Some(100), Some(95)),
        "{e}"
    );
    assert_eq!(e["senders_blocked"], 0, "{e}");
    assert!(e["stalled_s"].as_f64().unwrap() >= 2.0, "{e}");
    // No producer waits: the finding is at the latest send, the user's send statement (not
    // runtime.chansend1), as the report's channel is.
    assert_eq!(f.site.function, "main.fill", "{f:#?}");
    let ch = &report.channels[0];
    assert_eq!((ch.sends, ch.last_len), (95, 94), "{ch:#?}");
    assert_eq!(ch.last_sender.function, "main.fill", "{ch:#?}");
    assert!(
        ch.last_sender.file.ends_with("chanbacklog/main.go"),
        "{ch:#?}"
    );
    lock.assert_nothing_loaded()
}

fn draining_not_flagged(release: &str, variant: Variant) -> Result<()> {
    let lock = bpf::exclusive();
    let report = nearly_full("draining", release, variant)?;
    assert_no_finding(&report, &["chan-backlog"]);
    // It was followed, nearly full, all along.
    let ch = &report.channels[0];
    assert!(ch.sends > 95 && ch.last_len >= 90, "{ch:#?}");
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
    let _children = gotrace_tests::children::guard();
    backlog_flagged("1.19", Variant::Stripped)
}

#[test]
fn backlog_flagged_go_newest() -> Result<()> {
    let _children = gotrace_tests::children::guard();
    backlog_flagged("1.27", Variant::Default)
}

#[test]
fn make_and_consumer_named_go_oldest() -> Result<()> {
    let _children = gotrace_tests::children::guard();
    make_and_consumer_named("1.19", Variant::Default)
}

#[test]
fn make_and_consumer_named_go_newest_stripped() -> Result<()> {
    let _children = gotrace_tests::children::guard();
    make_and_consumer_named("1.27", Variant::Stripped)
}

#[test]
fn healthy_not_flagged_go_newest_stripped() -> Result<()> {
    let _children = gotrace_tests::children::guard();
    healthy_not_flagged("1.27", Variant::Stripped)
}

#[test]
fn healthy_not_flagged_go_oldest() -> Result<()> {
    let _children = gotrace_tests::children::guard();
    healthy_not_flagged("1.19", Variant::Default)
}

#[test]
fn stalled_flagged_go_newest() -> Result<()> {
    let _children = gotrace_tests::children::guard();
    stalled_flagged("1.27", Variant::Default)
}

#[test]
fn stalled_flagged_go_oldest_stripped() -> Result<()> {
    let _children = gotrace_tests::children::guard();
    stalled_flagged("1.19", Variant::Stripped)
}

#[test]
fn draining_not_flagged_go_newest_stripped() -> Result<()> {
    let _children = gotrace_tests::children::guard();
    draining_not_flagged("1.27", Variant::Stripped)
}

#[test]
fn draining_not_flagged_go_oldest() -> Result<()> {
    let _children = gotrace_tests::children::guard();
    draining_not_flagged("1.19", Variant::Default)
}
