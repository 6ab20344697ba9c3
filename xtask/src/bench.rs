//! `cargo xtask bench overhead`: the target's throughput with gotrace attached, relative to
//! untraced, measured on one running process whose windows alternate between untraced and
//! traced. Absolute speeds on shared machines are noise; the ratio of neighbouring windows of
//! the same process is not.

use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use clap::{Args, ValueEnum};
use gotrace::{probes::ProbeSelection, AttachOptions};
use gotrace_tests::{fixtures, go::Toolchain, trace, GoProcess, Variant};
use tracer_common::ProbeKind;

#[derive(Args)]
pub struct BenchArgs {
    #[command(subcommand)]
    which: Which,
}

#[derive(clap::Subcommand)]
enum Which {
    /// Throughput traced/untraced for each workload and probe mode.
    Overhead(OverheadArgs),
    /// Symbol load and first lookups on one binary: time and peak RSS.
    Symbols(SymbolsArgs),
    /// gotrace's own RSS over a long attach: bounded, or not.
    ///
    /// `gotrace attach` stays on a fixture whose goroutines, heap objects and profile buckets
    /// keep changing at steady levels, and its resident set is sampled from /proc.
    #[command(after_help = crate::bench_soak::EXAMPLES)]
    Soak(SoakArgs),
    /// gotrace on a million goroutines: dump and attach, wall time and peak RSS.
    #[command(after_help = crate::bench_million::EXAMPLES)]
    Million(crate::bench_million::MillionArgs),
    /// `gotrace agent` over many processes: their throughput, its CPU and RSS, discovery.
    #[command(after_help = crate::bench_agent::EXAMPLES)]
    Agent(crate::bench_agent::AgentArgs),
}

pub use crate::bench_soak::SoakArgs;
pub use crate::bench_symbols::SymbolsArgs;

#[derive(Args)]
struct OverheadArgs {
    /// Workloads to run.
    #[arg(long, value_enum, value_delimiter = ',', default_values_t = [Workload::Alloc, Workload::Json, Workload::Reply, Workload::Churn, Workload::Chan, Workload::Finalizer, Workload::Syncmap, Workload::Pool])]
    workloads: Vec<Workload>,
    /// Probe modes to compare with untraced.
    #[arg(long, value_enum, value_delimiter = ',', default_values_t = [Mode::Default, Mode::ExactAlloc])]
    modes: Vec<Mode>,
    /// Go release of the workload binary.
    #[arg(long, default_value = gotrace_tests::go::NEWEST)]
    go: String,
    /// Alternations (each: one untraced window and one window per mode).
    #[arg(long, default_value_t = 5)]
    rounds: usize,
    /// Length of each measured window.
    #[arg(long, default_value = "2s", value_parser = humantime::parse_duration)]
    window: Duration,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
enum Workload {
    /// Allocation-heavy, Go's heap sampler off (as in binaries without pprof).
    Alloc,
    /// The same with the sampler on at Go's default rate (one sample per 512 KiB).
    AllocSampled,
    Json,
    /// The JSON loop answering each request through a channel made for it.
    Reply,
    Churn,
    Chan,
    Finalizer,
    Syncmap,
    Pool,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
enum Mode {
    /// `gotrace attach` defaults.
    Default,
    /// `--exact-alloc`.
    ExactAlloc,
    /// `--chan-sends`.
    ChanSends,
    /// `--chan-make`.
    ChanMake,
    /// `--goroutine-events`.
    GoroutineEvents,
    /// `--finalizer-sites`.
    FinalizerSites,
    /// `gotrace attach --web` (the release binary), the page's data asked for every second as
    /// an open page asks, the goroutine groups included (the costliest tab).
    Web,
}

impl Workload {
    fn args(self) -> Vec<&'static str> {
        match self {
            Workload::Alloc => vec!["-mode", "alloc"],
            Workload::AllocSampled => vec!["-mode", "alloc", "-memprofilerate", "524288"],
            Workload::Json => vec!["-mode", "json"],
            Workload::Reply => vec!["-mode", "reply"],
            Workload::Churn => vec!["-mode", "churn"],
            Workload::Chan => vec!["-mode", "chan"],
            Workload::Finalizer => vec!["-mode", "finalizer"],
            Workload::Syncmap => vec!["-mode", "syncmap"],
            Workload::Pool => vec!["-mode", "pool"],
        }
    }

    /// The detectors whose path this workload hammers.
    fn detectors(self) -> &'static str {
        match self {
            Workload::Alloc | Workload::AllocSampled => "heap-growth closure-retention",
            Workload::Json => "(realistic)",
            Workload::Reply => "chan-backlog (--chan-make)",
            Workload::Churn => "goroutine-leak",
            Workload::Chan => "chan-backlog",
            Workload::Finalizer => "finalizer-abuse",
            Workload::Syncmap => "syncmap-growth",
            Workload::Pool => "syncpool-misuse",
        }
    }
}

impl Mode {
    fn probes(self) -> ProbeSelection {
        match self {
            Mode::Default => ProbeSelection::default_set(),
            Mode::ExactAlloc => ProbeSelection::default_set().with(ProbeKind::Malloc),
            Mode::ChanSends => ProbeSelection::default_set().with(ProbeKind::ChanSend),
            Mode::ChanMake => ProbeSelection::default_set().with(ProbeKind::ChanMake),
            Mode::GoroutineEvents => ProbeSelection::default_set().with_goroutine_events(),
            Mode::FinalizerSites => ProbeSelection::default_set().with(ProbeKind::SetFinalizer),
            Mode::Web => ProbeSelection::default_set(),
        }
    }
}

pub fn run(args: BenchArgs) -> Result<()> {
    match args.which {
        Which::Overhead(a) => overhead(a),
        Which::Symbols(a) => crate::bench_symbols::run(a),
        Which::Soak(a) => crate::bench_soak::run(a),
        Which::Million(a) => crate::bench_million::run(a),
        Which::Agent(a) => crate::bench_agent::run(a),
    }
}

/// The benchmarks attach gotrace (ptrace access, eBPF programs).
pub fn require_root() -> Result<()> {
    if unsafe { libc::geteuid() } != 0 {
        bail!("the benchmark attaches gotrace to processes: run as root (sudo -E cargo xtask bench ...)");
    }
    Ok(())
}

/// A `kB` line of /proc/<pid>/status ("self": this process), e.g. VmRSS or VmHWM.
pub fn status_kib(pid: &str, key: &str) -> Result<u64> {
    let path = format!("/proc/{pid}/status");
    let status = std::fs::read_to_string(&path).with_context(|| format!("reading {path}"))?;
    status
        .lines()
        .find_map(|l| l.strip_prefix(key)?.strip_prefix(':'))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .with_context(|| format!("no {key} in {path}"))
}

/// One measured window.
struct Window {
    ops_per_sec: f64,
    /// Probe hits per second and events lost, when traced.
    events_per_sec: f64,
    lost: u64,
}

fn overhead(args: OverheadArgs) -> Result<()> {
    require_root()?;
    let toolchain = Toolchain::find(&args.go)?;
    let exe = fixtures::build("workload", toolchain, Variant::Default)?;
    let web_bin = if args.modes.contains(&Mode::Web) {
        Some(crate::test::build_release_gotrace()?)
    } else {
        None
    };
    println!(
        "workload binary: Go {}, {} rounds of {:?} windows, alternated in one process",
        toolchain.release, args.rounds, args.window
    );
    println!(
        "{:<13} {:<16} {:>14} {:>14} {:>8} {:>15} {:>10} {:>8}  detectors on this path",
        "workload",
        "mode",
        "untraced ops/s",
        "traced ops/s",
        "ratio",
        "ratio min..max",
        "events/s",
        "lost",
    );
    for workload in &args.workloads {
        let name = workload.to_possible_value().unwrap().get_name().to_string();
        let mut proc = GoProcess::start(&exe, &workload.args())?;
        // Warm up: let the heap and the scheduler reach their steady state.
        measure(&mut proc, Duration::from_secs(1))?;
        let mut untraced = Vec::new();
        let mut traced: Vec<Vec<Window>> = args.modes.iter().map(|_| Vec::new()).collect();
        for _ in 0..args.rounds {
            untraced.push(measure(&mut proc, args.window)?.ops_per_sec);
            for (i, mode) in args.modes.iter().enumerate() {
                traced[i].push(match (mode, &web_bin) {
                    (Mode::Web, Some(bin)) => web_window(&mut proc, bin, args.window)?,
                    _ => traced_window(&mut proc, *mode, args.window)?,
                });
            }
        }
        untraced.push(measure(&mut proc, args.window)?.ops_per_sec);
        for (mode, windows) in args.modes.iter().zip(&traced) {
            // Each traced window against the mean of the untraced windows around it.
            let ratios: Vec<f64> = windows
                .iter()
                .enumerate()
                .map(|(r, w)| w.ops_per_sec / ((untraced[r] + untraced[r + 1]) / 2.0))
                .collect();
            let traced_rates: Vec<f64> = windows.iter().map(|w| w.ops_per_sec).collect();
            println!(
                "{:<13} {:<16} {:>14} {:>14} {:>8.3} {:>15} {:>10.0} {:>8}  {}",
                name,
                mode.to_possible_value().unwrap().get_name(),
                human(median(&untraced)),
                human(median(&traced_rates)),
                median(&ratios),
                format!("{:.3}..{:.3}", min(&ratios), max(&ratios)),
                median(&windows.iter().map(|w| w.events_per_sec).collect::<Vec<_>>()),
                windows.iter().map(|w| w.lost).sum::<u64>(),
                workload.detectors(),
            );
        }
    }
    Ok(())
}

fn traced_window(proc: &mut GoProcess, mode: Mode, window: Duration) -> Result<Window> {
    let options = AttachOptions {
        probes: mode.probes(),
        ..AttachOptions::default()
    };
    let tracing = trace::start(proc.pid(), options)?;
    let started = Instant::now();
    let w = measure(proc, window)?;
    let (session, _) = tracing.finish()?;
    let hits: u64 = ProbeKind::ALL.iter().map(|k| session.hits(*k)).sum();
    Ok(Window {
        events_per_sec: hits as f64 / started.elapsed().as_secs_f64(),
        lost: session.events_lost(),
        ..w
    })
}

/// A window with `gotrace attach --web` attached and its page's data asked for every second
/// (the heap tab and the goroutine groups in turn), as a browser with the page open does.
fn web_window(proc: &mut GoProcess, bin: &std::path::Path, window: Duration) -> Result<Window> {
    let web = gotrace_tests::agent::Agent::attach_web(
        bin,
        proc.pid(),
        &["-q", "-o", "/tmp/gotrace-bench-web"],
    )?;
    let stop = std::sync::atomic::AtomicBool::new(false);
    let w = std::thread::scope(|s| {
        let poller = s.spawn(|| -> Result<u64> {
            // Its curl processes are accounted for on this thread.
            let _children = gotrace_tests::children::guard();
            let mut asked = 0;
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                let path = if asked % 2 == 0 {
                    "/api/page"
                } else {
                    "/api/page?goroutines=1"
                };
                web.ok(path)?;
                asked += 1;
                std::thread::sleep(Duration::from_secs(1));
            }
            Ok(asked)
        });
        let w = measure(proc, window);
        stop.store(true, std::sync::atomic::Ordering::Relaxed);
        let asked = poller.join().expect("the poller panicked")?;
        anyhow::ensure!(asked > 0, "the page was never asked for");
        w
    })?;
    web.stop()?;
    let _ = std::fs::remove_dir_all("/tmp/gotrace-bench-web");
    Ok(w)
}

/// Throughput over the next `window`, from the workload's own counters and clock.
fn measure(proc: &mut GoProcess, window: Duration) -> Result<Window> {
    let (n0, t0) = next_ops(proc)?;
    std::thread::sleep(window);
    let (n1, t1) = next_ops(proc)?;
    Ok(Window {
        ops_per_sec: (n1 - n0) as f64 / ((t1 - t0) as f64 / 1e9),
        events_per_sec: 0.0,
        lost: 0,
    })
}

pub fn next_ops(proc: &mut GoProcess) -> Result<(u64, u64)> {
    proc.skip_queued();
    let line = proc.expect_line("ops ", Duration::from_secs(10))?;
    let mut f = line.split_whitespace().skip(1).map(str::parse::<u64>);
    match (f.next(), f.next()) {
        (Some(Ok(n)), Some(Ok(t))) => Ok((n, t)),
        _ => Err(anyhow::anyhow!("bad progress line {line:?}")).context("workload output"),
    }
}

pub fn median(v: &[f64]) -> f64 {
    let mut s = v.to_vec();
    s.sort_by(f64::total_cmp);
    match s.len() {
        0 => f64::NAN,
        n if n % 2 == 1 => s[n / 2],
        n => (s[n / 2 - 1] + s[n / 2]) / 2.0,
    }
}

pub fn min(v: &[f64]) -> f64 {
    v.iter().copied().fold(f64::INFINITY, f64::min)
}

pub fn max(v: &[f64]) -> f64 {
    v.iter().copied().fold(f64::NEG_INFINITY, f64::max)
}

fn human(r: f64) -> String {
    if r >= 1e6 {
        format!("{:.2}M", r / 1e6)
    } else if r >= 1e3 {
        format!("{:.1}k", r / 1e3)
    } else {
        format!("{r:.0}")
    }
}
