//! `cargo xtask bench soak`: whether gotrace's own memory stays bounded over a long attach.
//! The release `gotrace attach` runs for `--duration` on the `soak` fixture, whose goroutines,
//! heap objects and profile buckets keep changing while their totals stay level, and the
//! resident set of the gotrace process is sampled from /proc. Bounded means: once warmed up
//! (minute 5), it never grows more than 10 % above that value.

use std::{
    fmt::Write as _,
    path::{Path, PathBuf},
    process::{Child, Command, ExitStatus},
    time::{Duration, Instant},
};

use anyhow::{bail, Context, Result};
use clap::Args;
use gotrace_tests::{fixtures, go::Toolchain, GoProcess, Variant};

use crate::bench::status_kib;

pub const EXAMPLES: &str = "\
Examples:
  sudo -E cargo xtask bench soak                          30 minutes, RSS every 10 s
  sudo -E cargo xtask bench soak --duration 4m --csv soak.csv
  sudo -E cargo xtask bench soak -- --goroutine-events    extra `gotrace attach` flags

Fails if gotrace's RSS after minute 5 (after 1/6 of the run when it is shorter than 10
minutes) exceeds its value at that point by more than 10 %.";

#[derive(Args)]
pub struct SoakArgs {
    /// How long gotrace stays attached.
    #[arg(long, default_value = "30m", value_parser = humantime::parse_duration)]
    duration: Duration,
    /// Time between two RSS samples.
    #[arg(long, default_value = "10s", value_parser = humantime::parse_duration)]
    sample_every: Duration,
    /// Go release of the fixture binary.
    #[arg(long, default_value = gotrace_tests::go::NEWEST)]
    go: String,
    /// Also write the samples to this CSV file (elapsed_s, gotrace_rss_kib, target_rss_kib).
    #[arg(long, value_name = "FILE")]
    csv: Option<PathBuf>,
    /// Extra `gotrace attach` flags, after `--`.
    #[arg(last = true)]
    attach_args: Vec<String>,
}

/// Growth over the reference sample beyond which gotrace's memory counts as unbounded.
const MAX_GROWTH: f64 = 0.10;
/// How long gotrace may take to write its report after `--duration`, and to exit after SIGTERM.
const EXIT_GRACE: Duration = Duration::from_secs(60);

struct Sample {
    elapsed: Duration,
    gotrace_kib: u64,
    target_kib: u64,
}

pub fn run(args: SoakArgs) -> Result<()> {
    crate::bench::require_root()?;
    let reference = reference_time(args.duration);
    if reference + 2 * args.sample_every >= args.duration {
        bail!(
            "--duration {} leaves no samples after the reference one at {}: run longer or sample more often",
            humantime::format_duration(args.duration),
            mmss(reference)
        );
    }
    let toolchain = Toolchain::find(&args.go)?;
    let fixture = fixtures::build("soak", toolchain, Variant::Default)?;
    let gotrace = crate::test::build_release_gotrace()?;

    let target = GoProcess::start(&fixture, &[])?;
    // Let its goroutine population and live heap reach their levels before attaching.
    std::thread::sleep(Duration::from_secs(5));
    println!(
        "soak: fixture built with Go {} (pid {}); gotrace attached for {}, RSS every {}",
        toolchain.release,
        target.pid(),
        humantime::format_duration(args.duration),
        humantime::format_duration(args.sample_every)
    );
    let out = std::env::temp_dir().join(format!("gotrace-soak-{}", std::process::id()));
    // Declared after `target`, so dropped (stopped) before the fixture is killed.
    let mut attached = Attached::start(&gotrace, target.pid(), &args, &out)?;
    let samples = sample(&mut attached, &target, &args)?;
    let status = attached.finish(EXIT_GRACE)?;
    drop(target);
    let _ = std::fs::remove_dir_all(&out);
    if !status.success() {
        bail!("gotrace attach failed ({status})");
    }

    if let Some(path) = &args.csv {
        write_csv(path, &samples)?;
    }
    print_table(&samples);
    verdict(&samples, reference, args.duration)
}

/// Minute 5: when gotrace's per-site histories (64 GC cycles) and the fixture's profile
/// buckets have filled up. A short run uses 1/6 of its length instead.
fn reference_time(duration: Duration) -> Duration {
    if duration >= Duration::from_secs(600) {
        Duration::from_secs(300)
    } else {
        duration / 6
    }
}

/// The `gotrace attach` child. Dropping it stops gotrace the way a user would (SIGTERM) and
/// waits, so that it removes its probes and restores the target even when the bench fails
/// half way. (Ctrl-C reaches gotrace directly: it is in the terminal's process group.)
struct Attached {
    child: Child,
}

impl Attached {
    fn start(gotrace: &Path, pid: u32, args: &SoakArgs, out: &Path) -> Result<Self> {
        let child = Command::new(gotrace)
            .arg("attach")
            .arg(pid.to_string())
            .args(["--interval", "1s", "--quiet", "--duration"])
            .arg(humantime::format_duration(args.duration).to_string())
            .arg("--out")
            .arg(out)
            .args(&args.attach_args)
            .spawn()
            .with_context(|| format!("starting {}", gotrace.display()))?;
        Ok(Attached { child })
    }

    fn pid(&self) -> String {
        self.child.id().to_string()
    }

    /// Waits up to `patience` for gotrace to exit on its own, then sends SIGTERM and waits
    /// again. SIGKILL only as a last resort: it leaves the target as gotrace changed it.
    fn finish(&mut self, patience: Duration) -> Result<ExitStatus> {
        if let Some(status) = self.wait_for(patience)? {
            return Ok(status);
        }
        // SAFETY: kill(2) on our own child, which has not been reaped (try_wait saw it running).
        unsafe { libc::kill(self.child.id() as i32, libc::SIGTERM) };
        if let Some(status) = self.wait_for(EXIT_GRACE)? {
            return Ok(status);
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
        bail!("gotrace ignored SIGTERM for {EXIT_GRACE:?}: killed it, so it could not restore the target")
    }

    fn wait_for(&mut self, timeout: Duration) -> Result<Option<ExitStatus>> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(status) = self.child.try_wait()? {
                return Ok(Some(status));
            }
            if Instant::now() >= deadline {
                return Ok(None);
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

impl Drop for Attached {
    fn drop(&mut self) {
        if let Err(e) = self.finish(Duration::ZERO) {
            eprintln!("soak: {e:#}");
        }
    }
}

/// Both processes' RSS every `sample_every` while the attach lasts; gotrace's shutdown (writing
/// its report) is not part of it.
fn sample(gotrace: &mut Attached, target: &GoProcess, args: &SoakArgs) -> Result<Vec<Sample>> {
    let start = Instant::now();
    let target_pid = target.pid().to_string();
    let mut samples: Vec<Sample> = Vec::new();
    let mut at = args.sample_every;
    while at < args.duration {
        std::thread::sleep(at.saturating_sub(start.elapsed()));
        if let Some(status) = gotrace.child.try_wait()? {
            bail!(
                "gotrace exited after {}, before --duration: {status}",
                mmss(at)
            );
        }
        let s = Sample {
            elapsed: at,
            gotrace_kib: status_kib(&gotrace.pid(), "VmRSS")?,
            target_kib: status_kib(&target_pid, "VmRSS")?,
        };
        // A line a minute, to show it is alive without repeating the final table.
        if samples
            .last()
            .is_none_or(|p| p.elapsed.as_secs() / 60 < at.as_secs() / 60)
        {
            eprintln!(
                "soak: {} of {}: gotrace RSS {}, target RSS {}",
                mmss(at),
                mmss(args.duration),
                mib(s.gotrace_kib),
                mib(s.target_kib)
            );
        }
        samples.push(s);
        at += args.sample_every;
    }
    Ok(samples)
}

fn write_csv(path: &Path, samples: &[Sample]) -> Result<()> {
    let mut csv = String::from("elapsed_s,gotrace_rss_kib,target_rss_kib\n");
    for s in samples {
        writeln!(
            csv,
            "{},{},{}",
            s.elapsed.as_secs_f64(),
            s.gotrace_kib,
            s.target_kib
        )?;
    }
    std::fs::write(path, csv).with_context(|| format!("writing {}", path.display()))
}

/// Every sample of gotrace's RSS, six to a line, each line headed by its first sample's time.
fn print_table(samples: &[Sample]) {
    println!("gotrace RSS in MiB, 6 samples a line:");
    for row in samples.chunks(6) {
        let values: String = row
            .iter()
            .map(|s| format!("{:>8.1}", s.gotrace_kib as f64 / 1024.0))
            .collect();
        println!("  {:>7} {values}", mmss(row[0].elapsed));
    }
}

/// The summary line, and an error if gotrace grew by more than MAX_GROWTH after the
/// reference sample.
fn verdict(samples: &[Sample], reference: Duration, duration: Duration) -> Result<()> {
    let at = |t: Duration| {
        samples
            .iter()
            .position(|s| s.elapsed >= t)
            .context("no sample that late")
    };
    let r = at(reference)?;
    let (reference, middle, end) = (
        &samples[r],
        &samples[at(duration / 2)?],
        samples.last().unwrap(),
    );
    let max = samples[r + 1..]
        .iter()
        .max_by_key(|s| s.gotrace_kib)
        .context("no sample after the reference one")?;
    let growth = max.gotrace_kib as f64 / reference.gotrace_kib as f64 - 1.0;
    let label = if duration >= Duration::from_secs(600) {
        "minute 5"
    } else {
        "1/6 of the run"
    };
    println!(
        "target RSS: {} at {}, {} at the end",
        mib(reference.target_kib),
        mmss(reference.elapsed),
        mib(end.target_kib)
    );
    println!(
        "gotrace RSS: {} at {} ({label}), {} at {} (middle), {} at {} (end); max after {}: {} at {} ({:+.1} %, limit +{:.0} %)",
        mib(reference.gotrace_kib),
        mmss(reference.elapsed),
        mib(middle.gotrace_kib),
        mmss(middle.elapsed),
        mib(end.gotrace_kib),
        mmss(end.elapsed),
        mmss(reference.elapsed),
        mib(max.gotrace_kib),
        mmss(max.elapsed),
        growth * 100.0,
        MAX_GROWTH * 100.0
    );
    if growth > MAX_GROWTH {
        bail!(
            "gotrace's memory is not bounded: its RSS grew {:.1} % after {}",
            growth * 100.0,
            mmss(reference.elapsed)
        );
    }
    println!(
        "bounded: gotrace's RSS stayed within {:.0} % of its value at {}",
        MAX_GROWTH * 100.0,
        mmss(reference.elapsed)
    );
    Ok(())
}

fn mib(kib: u64) -> String {
    format!("{:.1} MiB", kib as f64 / 1024.0)
}

/// "4m05s": compact and aligned, unlike humantime's "4m 5s".
fn mmss(d: Duration) -> String {
    let s = d.as_secs();
    format!("{}m{:02}s", s / 60, s % 60)
}
