//! `gotrace check`, the CI gate, both ways: a leaking command fails with the reason, a healthy
//! one passes; thresholds fail a running process; a failing command fails the check.

use std::{
    process::{Command, Output, Stdio},
    time::Duration,
};

use anyhow::{Context, Result};
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

/// `check --fail-on goroutine-leak -- CMD...` exits 3 naming goroutine-leak-at main.handle;
/// returns its stderr.
fn fails_with_the_leak(cmd: &[&str]) -> Result<String> {
    let mut args = vec!["--duration", "14s", "--fail-on", "goroutine-leak", "--"];
    args.extend_from_slice(cmd);
    let o = check(&args)?;
    let stderr = String::from_utf8_lossy(&o.stderr).into_owned();
    assert_eq!(o.status.code(), Some(3), "{stderr}");
    assert!(
        stderr.contains("- goroutine-leak at main.handle"),
        "{stderr}"
    );
    Ok(stderr)
}

#[test]
fn leaking_command_fails_with_the_reason() -> Result<()> {
    let _children = gotrace_tests::children::guard();
    let lock = bpf::exclusive();
    let exe = goleak()?;
    let stderr = fails_with_the_leak(&[&exe, "-mode", "leak"])?;
    assert!(stderr.contains("gotrace check: FAIL"), "{stderr}");
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
    lock.assert_nothing_loaded()
}

/// A gate that traced nothing is an error, not a pass: a command that exits at once, one that
/// runs no Go program within --duration.
#[test]
fn nothing_traced_is_an_error() -> Result<()> {
    let _children = gotrace_tests::children::guard();
    let lock = bpf::exclusive();
    for (cmd, needle) in [
        ("exit 0", "the command exited (exit status: 0)"),
        ("exit 5", "the command exited (exit status: 5)"),
        ("sleep 30", "ran no Go program within --duration"),
    ] {
        let o = check(&["--max-goroutines", "1", "-d", "2s", "--", "sh", "-c", cmd])?;
        let stderr = String::from_utf8_lossy(&o.stderr);
        assert_eq!(o.status.code(), Some(1), "{cmd}: {stderr}");
        assert!(
            stderr.contains("nothing was traced") && stderr.contains(needle),
            "{cmd}: {stderr}"
        );
        assert!(!stderr.contains("PASS"), "{stderr}");
    }
    lock.assert_nothing_loaded()
}

/// `check -- sh -c '...'`: the Go program the wrapper starts is traced, its leak found.
#[test]
fn wrapper_script_is_followed_into_its_go_program() -> Result<()> {
    let _children = gotrace_tests::children::guard();
    let lock = bpf::exclusive();
    let exe = goleak()?;
    let stderr = fails_with_the_leak(&[
        "sh",
        "-c",
        "echo wrapper starting; \"$0\" -mode leak; echo wrapper done",
        &exe,
    ])?;
    assert!(stderr.contains("started by the command"), "{stderr}");
    lock.assert_nothing_loaded()
}

/// The uid, gid and supplementary groups of a process, from /proc.
fn credentials(pid: u32) -> Result<(String, String, String)> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
    let field = |name: &str| {
        status
            .lines()
            .find_map(|l| l.strip_prefix(name))
            .map(|v| v.split_whitespace().collect::<Vec<_>>().join(" "))
            .unwrap_or_default()
    };
    Ok((field("Uid:"), field("Gid:"), field("Groups:")))
}

/// Started through sudo (`SUDO_UID`/`SUDO_GID` set, gotrace root), `check -- CMD` runs CMD as
/// that user with no supplementary groups; `--as-root` keeps it root.
#[test]
fn command_runs_as_the_sudo_user() -> Result<()> {
    let _children = gotrace_tests::children::guard();
    use std::io::BufRead;
    let lock = bpf::exclusive();
    let exe = goleak()?;
    for (extra, expected) in [
        (
            None,
            ("65534 65534 65534 65534", "65534 65534 65534 65534", ""),
        ),
        (Some("--as-root"), ("0 0 0 0", "0 0 0 0", "")),
    ] {
        let out = std::env::temp_dir().join(format!("gotrace-check-sudo-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&out);
        let mut gotrace = children::spawn(
            Command::new(gotrace_bin())
                .env("SUDO_UID", "65534")
                .env("SUDO_GID", "65534")
                .arg("check")
                .args(extra)
                .arg("--out")
                .arg(&out)
                .args(["--", &exe, "-mode", "pool", "-for", "4s"])
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::piped()),
        )?;
        let mut lines = std::io::BufReader::new(gotrace.stderr.take().unwrap()).lines();
        let tracing = lines
            .next()
            .context("no output")??
            .strip_prefix("gotrace check: tracing ")
            .map(str::to_string);
        let pid: u32 = tracing
            .as_deref()
            .and_then(|t| t.split(' ').next())
            .context("no `tracing PID` line")?
            .parse()?;
        let (uid, gid, groups) = credentials(pid)?;
        let rest: Vec<String> = lines.map_while(|l| l.ok()).collect();
        let status = gotrace.wait()?;
        assert!(status.success(), "{status}: {rest:?}");
        if extra.is_none() {
            assert_eq!((uid.as_str(), gid.as_str(), groups.as_str()), expected);
        } else {
            // Root keeps whatever groups the test runs with.
            assert_eq!((uid.as_str(), gid.as_str()), (expected.0, expected.1));
        }
        let _ = std::fs::remove_dir_all(&out);
    }
    lock.assert_nothing_loaded()
}

/// README's exit codes, as written there: 0 success, 1 an error (its console example verbatim),
/// 2 a usage error, 3 a failed check (the tests above).
#[test]
fn exit_codes_as_the_readme_says() -> Result<()> {
    let _children = gotrace_tests::children::guard();
    let readme = std::fs::read_to_string(fixtures::workspace_root().join("README.md"))?;
    assert!(
        readme.contains("Exit codes: 0 success, 1 error, 2 usage error, 3 a failed check."),
        "README's rule changed: update this test"
    );
    let help = children::output(Command::new(gotrace_bin()).arg("--help"))?;
    assert!(String::from_utf8_lossy(&help.stdout).contains(
        "Exit codes: 0 success, 1 error (one line naming the problem and the fix), 2 usage error"
    ));
    // The README's example, run as written: its line, exit 1.
    let example = readme
        .lines()
        .skip_while(|l| *l != "$ gotrace attach 999999")
        .nth(1)
        .context("README's `gotrace attach 999999` example")?;
    let o = children::output(Command::new(gotrace_bin()).args(["attach", "999999"]))?;
    assert_eq!(o.status.code(), Some(1));
    assert_eq!(String::from_utf8_lossy(&o.stderr).trim_end(), example);
    // Usage errors: clap's 2, with the README's example message.
    for args in [
        &["attach", "4242", "--duraton", "30s"][..],
        &["check", "--pid", "4242"],
        &["check"],
        &["attach", "4242", "--duration", "0s"],
    ] {
        let o = children::output(Command::new(gotrace_bin()).args(args))?;
        let stderr = String::from_utf8_lossy(&o.stderr);
        assert_eq!(o.status.code(), Some(2), "{args:?}: {stderr}");
        assert!(stderr.starts_with("error: "), "{args:?}: {stderr}");
    }
    let o =
        children::output(Command::new(gotrace_bin()).args(["attach", "4242", "--duraton", "30s"]))?;
    let first = String::from_utf8_lossy(&o.stderr)
        .lines()
        .next()
        .unwrap_or_default()
        .to_string();
    assert!(readme.contains(&first), "README's usage example: {first}");
    Ok(())
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
