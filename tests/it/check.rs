//! `gotrace check`, the CI gate, both ways: a leaking command fails with the reason, a healthy
//! one passes; thresholds fail a running process; a failing command fails the check.

use std::{
    process::{Command, Output, Stdio},
    time::Duration,
};

use anyhow::Result;
use gotrace_tests::{bpf, children, fixtures, go, gotrace_bin, GoProcess, Toolchain, Variant};

fn check(args: &[&str]) -> Result<Output> {
    let out = std::env::temp_dir().join(format!(
        "gotrace-check-{}-{}",
        std::process::id(),
        args.len()
    ));
    // stdout not even piped: a command `check` leaves behind must not hold the test up.
    let mut cmd = Command::new(gotrace_bin());
    cmd.arg("check")
        .arg("--out")
        .arg(&out)
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    Ok(children::spawn(&mut cmd)?.wait_with_output()?)
}

fn goleak() -> Result<String> {
    Ok(
        fixtures::build("goleak", Toolchain::find(go::NEWEST)?, Variant::Stripped)?
            .display()
            .to_string(),
    )
}

#[test]
fn leaking_command_fails_with_the_reason() -> Result<()> {
    let _children = gotrace_tests::children::guard();
    let lock = bpf::exclusive();
    let exe = goleak()?;
    let o = check(&[
        "--duration",
        "14s",
        "--fail-on",
        "goroutine-leak",
        "--",
        &exe,
        "-mode",
        "leak",
    ])?;
    let stderr = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(3), "{stderr}");
    assert!(stderr.contains("gotrace check: FAIL"), "{stderr}");
    assert!(
        stderr.contains("- goroutine-leak at main.handle"),
        "{stderr}"
    );
    lock.assert_nothing_loaded()
}

#[test]
fn healthy_command_passes() -> Result<()> {
    let _children = gotrace_tests::children::guard();
    let lock = bpf::exclusive();
    let exe = goleak()?;
    let o = check(&["--duration", "12s", "--", &exe, "-mode", "pool"])?;
    let stderr = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(0), "{stderr}");
    assert!(stderr.contains("gotrace check: PASS"), "{stderr}");
    lock.assert_nothing_loaded()
}

#[test]
fn thresholds_fail_a_running_process() -> Result<()> {
    let _children = gotrace_tests::children::guard();
    let lock = bpf::exclusive();
    let exe = fixtures::build("heapsites", Toolchain::find(go::OLDEST)?, Variant::Default)?;
    let mut proc = GoProcess::start(&exe, &[])?;
    proc.send("go")?;
    proc.expect_line("done", Duration::from_secs(60))?;
    // 112 MiB retained: over a 64 MiB limit, under a 1 GiB one.
    let pid = proc.pid().to_string();
    let over = check(&["--pid", &pid, "--duration", "2s", "--max-inuse", "64MiB"])?;
    let stderr = String::from_utf8_lossy(&over.stderr);
    assert_eq!(over.status.code(), Some(3), "{stderr}");
    assert!(stderr.contains("heap in use reached"), "{stderr}");
    let under = check(&[
        "--pid",
        &pid,
        "--duration",
        "2s",
        "--max-inuse",
        "1GiB",
        "--max-goroutines",
        "100",
    ])?;
    assert_eq!(
        under.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&under.stderr)
    );
    let goroutines = check(&["--pid", &pid, "--duration", "2s", "--max-goroutines", "0"])?;
    let stderr = String::from_utf8_lossy(&goroutines.stderr);
    assert_eq!(goroutines.status.code(), Some(3), "{stderr}");
    assert!(
        stderr.contains("goroutines at the peak (limit 0)"),
        "{stderr}"
    );
    drop(proc);
    lock.assert_nothing_loaded()
}

#[test]
fn failing_command_fails_the_check() -> Result<()> {
    let _children = gotrace_tests::children::guard();
    let lock = bpf::exclusive();
    let exe = goleak()?;
    // Traced for 3 s, then exits with status 4.
    let traced = check(&["--", &exe, "-mode", "pool", "-for", "3s", "-exit", "4"])?;
    let stderr = String::from_utf8_lossy(&traced.stderr);
    assert_eq!(traced.status.code(), Some(3), "{stderr}");
    assert!(
        stderr.contains("gotrace check: tracing") && stderr.contains("the command failed"),
        "{stderr}"
    );
    // Gone before gotrace could attach: its own status decides.
    let quick = check(&["--", &exe, "-mode", "pool", "-for", "1ms", "-exit", "0"])?;
    assert_eq!(
        quick.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&quick.stderr)
    );
    let quick_bad = check(&["--", &exe, "-mode", "pool", "-for", "1ms", "-exit", "5"])?;
    let stderr = String::from_utf8_lossy(&quick_bad.stderr);
    assert_eq!(quick_bad.status.code(), Some(3), "{stderr}");
    assert!(stderr.contains("the command failed"), "{stderr}");
    lock.assert_nothing_loaded()
}

/// Each detector can be switched off and its thresholds moved: the same leaking command then
/// passes. An unknown pattern is a usage error.
#[test]
fn detectors_can_be_switched_off_and_tuned() -> Result<()> {
    let _children = gotrace_tests::children::guard();
    let lock = bpf::exclusive();
    let exe = goleak()?;
    let off = check(&[
        "--duration",
        "13s",
        "--disable",
        "goroutine-leak",
        "--",
        &exe,
        "-mode",
        "leak",
    ])?;
    assert_eq!(
        off.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&off.stderr)
    );
    let high = check(&[
        "--duration",
        "13s",
        "--goroutine-growth",
        "1000000",
        "--",
        &exe,
        "-mode",
        "leak",
    ])?;
    assert_eq!(
        high.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&high.stderr)
    );
    let bad = check(&["--disable", "no-such-pattern", "--", &exe])?;
    let stderr = String::from_utf8_lossy(&bad.stderr);
    assert_eq!(bad.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("unknown pattern"), "{stderr}");
    lock.assert_nothing_loaded()
}
