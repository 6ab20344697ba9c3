//! Go's heap sampler is left as it was found: by sessions that overlap, by a session killed
//! with SIGKILL, when the target exec's another program, and gotrace follows a program that
//! sets its own rate (its profile then agrees with Go's own).

use std::{
    process::{Command, Stdio},
    time::{Duration, Instant},
};

use anyhow::{bail, Context, Result};
use gotrace::{attach::SamplerState, probes::ProbeSelection, AttachOptions, Session, StopReason};
use gotrace_tests::{children, fixtures, go, gotrace_bin, trace, GoProcess, Toolchain, Variant};

const DEFAULT: u64 = 512 * 1024;

fn sampler_fixture(args: &[&str]) -> Result<GoProcess> {
    let exe = fixtures::build("sampler", Toolchain::find(go::NEWEST)?, Variant::Default)?;
    GoProcess::start(&exe, args)
}

/// The rate as the program itself sees it.
fn rate(proc: &mut GoProcess) -> Result<u64> {
    proc.send("rate")?;
    let line = proc.expect_line("rate ", Duration::from_secs(10))?;
    Ok(line.trim_start_matches("rate ").trim().parse()?)
}

fn options(rate: Option<u64>, read_only: bool) -> AttachOptions {
    AttachOptions {
        probes: ProbeSelection::none(),
        sample_rate: rate,
        read_only,
        ..AttachOptions::default()
    }
}

fn state(session: &Session) -> SamplerState {
    session.sampler().cloned().expect("the sampler located")
}

#[test]
fn overlapping_sessions_leave_the_programs_own_rate() -> Result<()> {
    let _children = children::guard();
    let mut proc = sampler_fixture(&["-rate", "0"])?;
    let pid = proc.pid();
    let a = Session::attach(pid, options(None, false))?;
    assert_eq!(
        state(&a),
        SamplerState {
            rate_at_attach: 0,
            rate: DEFAULT,
            set_by_gotrace: true,
            other_sessions: 0
        }
    );
    // The second session knows the 512 KiB is gotrace's, not the program's.
    let b = Session::attach(pid, options(Some(64 * 1024), false))?;
    assert_eq!(
        state(&b),
        SamplerState {
            rate_at_attach: 0,
            rate: 64 * 1024,
            set_by_gotrace: true,
            other_sessions: 1
        }
    );
    assert_eq!(rate(&mut proc)?, 64 * 1024);
    drop(b);
    assert_eq!(
        rate(&mut proc)?,
        DEFAULT,
        "the rate the remaining session asked for"
    );
    let c = Session::attach(pid, options(None, false))?;
    assert_eq!((state(&c).rate_at_attach, state(&c).other_sessions), (0, 1));
    // The first session leaving does not turn sampling off under the third.
    drop(a);
    assert_eq!(rate(&mut proc)?, DEFAULT);
    assert!(
        c.heap_snapshot().is_ok() && c.attachment().sampler().unavailable().is_none(),
        "the third session still has a heap profile"
    );
    drop(c);
    assert_eq!(
        rate(&mut proc)?,
        0,
        "the last one out restores the program's own"
    );
    Ok(())
}

#[test]
fn a_session_killed_with_sigkill_is_known_to_the_next() -> Result<()> {
    let _children = children::guard();
    let mut proc = sampler_fixture(&["-rate", "0"])?;
    let pid = proc.pid();
    let mut gotrace = children::spawn(
        Command::new(gotrace_bin())
            .args(["attach", &pid.to_string(), "--quiet", "--out"])
            .arg(std::env::temp_dir().join(format!("gotrace-sigkill-{pid}")))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null()),
    )?;
    let begin = Instant::now();
    while rate(&mut proc)? != DEFAULT {
        if begin.elapsed() > Duration::from_secs(30) {
            let _ = gotrace.kill();
            bail!("gotrace never turned the sampler on");
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    gotrace.kill().context("SIGKILL")?;
    gotrace.wait()?;
    assert_eq!(rate(&mut proc)?, DEFAULT, "nobody could restore it");
    let look = Session::attach(pid, options(None, true))?;
    assert_eq!(
        state(&look),
        SamplerState {
            rate_at_attach: 0,
            rate: DEFAULT,
            set_by_gotrace: true,
            other_sessions: 0
        },
        "the 512 KiB is known to be gotrace's"
    );
    drop(look);
    drop(Session::attach(pid, options(None, false))?);
    assert_eq!(
        rate(&mut proc)?,
        0,
        "the next session out restores the program's own"
    );
    Ok(())
}

#[test]
fn an_exec_ends_the_session_and_nothing_is_written_into_the_new_program() -> Result<()> {
    let _children = children::guard();
    let mut proc = sampler_fixture(&["-rate", "0"])?;
    let tracing = trace::start(proc.pid(), options(None, false))?;
    assert_eq!(rate(&mut proc)?, DEFAULT);
    // The same binary again: the same addresses, a new program with a sampler of its own.
    proc.send(&format!("exec -rate {DEFAULT}"))?;
    proc.expect_line("ready", Duration::from_secs(30))?;
    std::thread::sleep(Duration::from_secs(3));
    let (_session, reason) = tracing.finish()?;
    assert_eq!(reason, StopReason::TargetExeced);
    assert_eq!(
        rate(&mut proc)?,
        DEFAULT,
        "the old program's original rate was not written into the new one"
    );
    Ok(())
}

#[test]
fn a_rate_the_program_sets_is_followed_as_go_does() -> Result<()> {
    let _children = children::guard();
    // Go's own sampler at 512 KiB (the fixture links runtime/pprof), then the program samples
    // every allocation.
    let mut proc = sampler_fixture(&[])?;
    let tracing = trace::start(proc.pid(), options(None, false))?;
    proc.send("setrate 1")?;
    proc.expect_line("set", Duration::from_secs(10))?;
    proc.send("retain 256")?;
    proc.expect_line("retained", Duration::from_secs(10))?;
    let own = std::env::temp_dir().join(format!("gotrace-own-rate-{}.pb.gz", proc.pid()));
    proc.send(&format!("profile {}", own.display()))?;
    proc.expect_line("profiled", Duration::from_secs(30))?;
    let (session, _) = tracing.finish()?;
    let report = session.snapshot(None)?.report;
    let ours: u64 = report
        .heap
        .top
        .iter()
        .filter(|s| s.site.function == "main.retainKiB")
        .map(|s| s.inuse_bytes)
        .sum();
    let go = go_inuse_bytes(&own, "main.retainKiB")?;
    std::fs::remove_file(&own)?;
    eprintln!("in use at main.retainKiB: gotrace {ours} B, Go's own profile {go} B");
    assert!(go >= 256 * 1024, "Go's profile has the retained KiB: {go}");
    assert_eq!(ours, go, "gotrace scales by the rate in effect, as Go does");
    Ok(())
}

/// Flat in-use bytes of `function` in a heap profile, as `go tool pprof` reads it.
fn go_inuse_bytes(profile: &std::path::Path, function: &str) -> Result<u64> {
    let out = children::output(
        Toolchain::find(go::NEWEST)?
            .command()
            .args(["tool", "pprof", "-top", "-nodefraction=0", "-unit=byte"])
            .arg("-sample_index=inuse_space")
            .arg(profile),
    )?;
    let text = String::from_utf8(out.stdout)?;
    text.lines()
        .find(|l| l.split_whitespace().last() == Some(function))
        .and_then(|l| l.split_whitespace().next())
        .and_then(|v| v.trim_end_matches('B').parse().ok())
        .with_context(|| format!("{function} not in go tool pprof's output:\n{text}"))
}
