//! `cargo xtask bench million`: the release gotrace on a program with a million parked
//! goroutines — `dump` (text and JSON) and `attach --duration`, each with its wall time and
//! peak RSS. Fails when a dump peaks above 300 MiB or attach overruns its duration by more than
//! two ticks.

use std::{
    os::unix::process::ExitStatusExt,
    process::{Command, ExitStatus, Stdio},
    time::{Duration, Instant},
};

use anyhow::{bail, Context, Result};
use clap::Args;
use gotrace_tests::{fixtures, go::Toolchain, GoProcess, Variant};

pub const EXAMPLES: &str = "Examples:
  sudo -E cargo xtask bench million
  sudo -E cargo xtask bench million --goroutines 200000 --duration 6s";

#[derive(Args)]
pub struct MillionArgs {
    /// Goroutines the fixture parks.
    #[arg(long, default_value_t = 1_000_000)]
    goroutines: u64,
    /// `attach --duration`.
    #[arg(long, default_value = "12s", value_parser = humantime::parse_duration)]
    duration: Duration,
    /// Go release of the fixture binary.
    #[arg(long, default_value = gotrace_tests::go::NEWEST)]
    go: String,
}

/// What one run of gotrace cost.
struct Cost {
    wall: Duration,
    peak_rss_kib: u64,
}

const DUMP_LIMIT_KIB: u64 = 300 * 1024;

pub fn run(args: MillionArgs) -> Result<()> {
    crate::bench::require_root()?;
    let gotrace = crate::test::build_release_gotrace()?;
    let exe = fixtures::build("million", Toolchain::find(&args.go)?, Variant::Default)?;
    let n = args.goroutines.to_string();
    let target = GoProcess::start(&exe, &["-n", &n])?;
    let pid = target.pid().to_string();
    println!(
        "target: {} goroutines parked, RSS {} MiB",
        n,
        crate::bench::status_kib(&pid, "VmRSS")? / 1024
    );
    let out = std::env::temp_dir().join(format!("gotrace-bench-million-{}", std::process::id()));
    let duration = humantime::format_duration(args.duration).to_string();
    let runs = [
        ("dump", vec!["dump", &pid]),
        ("dump --json", vec!["dump", &pid, "--json"]),
        (
            "attach --duration",
            vec!["attach", &pid, "--duration", &duration, "--quiet", "--out"],
        ),
    ];
    let mut costs = Vec::new();
    for (name, argv) in &runs {
        let mut cmd = Command::new(&gotrace);
        cmd.args(argv);
        if name.starts_with("attach") {
            cmd.arg(&out);
        }
        let cost = measure(&mut cmd).with_context(|| format!("gotrace {name}"))?;
        println!(
            "{name:<20} {:>7.1} s {:>8} MiB peak RSS",
            cost.wall.as_secs_f64(),
            cost.peak_rss_kib / 1024
        );
        costs.push(cost);
    }
    drop(target);
    let _ = std::fs::remove_dir_all(&out);
    let mut failed = Vec::new();
    for (cost, (name, _)) in costs.iter().zip(&runs).take(2) {
        if cost.peak_rss_kib > DUMP_LIMIT_KIB {
            failed.push(format!(
                "{name} peaked at {} MiB (limit {} MiB)",
                cost.peak_rss_kib / 1024,
                DUMP_LIMIT_KIB / 1024
            ));
        }
    }
    // One tick for the last look, one for writing the outputs.
    let allowed = args.duration + Duration::from_secs(2);
    if costs[2].wall > allowed {
        failed.push(format!(
            "attach --duration {duration} took {:.1} s (allowed {:.0} s)",
            costs[2].wall.as_secs_f64(),
            allowed.as_secs_f64()
        ));
    }
    if !failed.is_empty() {
        bail!("{}", failed.join("; "));
    }
    Ok(())
}

/// Runs `cmd` (stdout discarded) and reads its peak RSS from the kernel's rusage of the child.
fn measure(cmd: &mut Command) -> Result<Cost> {
    let begin = Instant::now();
    let child = cmd.stdout(Stdio::null()).stderr(Stdio::piped()).spawn()?;
    let pid = child.id() as i32;
    let mut status = 0;
    // SAFETY: plain out-parameters for wait4 on our own child.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    if unsafe { libc::wait4(pid, &mut status, 0, &mut usage) } != pid {
        bail!("wait4: {}", std::io::Error::last_os_error());
    }
    let wall = begin.elapsed();
    let status = ExitStatus::from_raw(status);
    if !status.success() {
        let mut err = String::new();
        if let Some(mut e) = child.stderr {
            use std::io::Read;
            let _ = e.read_to_string(&mut err);
        }
        bail!("{status}: {err}");
    }
    Ok(Cost {
        wall,
        // ru_maxrss is in KiB on Linux.
        peak_rss_kib: usage.ru_maxrss as u64,
    })
}
