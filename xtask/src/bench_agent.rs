//! `cargo xtask bench agent`: the release `gotrace agent` with its defaults over many Go
//! processes. Four figures: each target's throughput with the agent running relative to without
//! (alternating windows, as the overhead bench does), the agent's own CPU and RSS in steady
//! state (over more than one `--interval`, so the snapshots count), how soon a new process is
//! discovered, and with 200 small processes that it stays within its budget and keeps serving.

use std::{
    path::Path,
    time::{Duration, Instant},
};

use anyhow::{bail, Context, Result};
use clap::Args;
use gotrace_tests::{agent::Agent, fixtures, go::Toolchain, GoProcess, Variant};

pub const EXAMPLES: &str = "Examples:
  sudo -E cargo xtask bench agent
  sudo -E cargo xtask bench agent --targets 10 --small 50 --steady 90s";

#[derive(Args)]
pub struct AgentArgs {
    /// Workload processes (allocation-heavy, goroutine churn, JSON, in turn).
    #[arg(long, default_value_t = 20)]
    targets: usize,
    /// Small idle processes for the second part (0: skip it).
    #[arg(long, default_value_t = 200)]
    small: usize,
    /// Alternations of the throughput part (each: a window without the agent, one with).
    #[arg(long, default_value_t = 5)]
    rounds: usize,
    /// Length of each throughput window.
    #[arg(long, default_value = "10s", value_parser = humantime::parse_duration)]
    window: Duration,
    /// How long the agent's CPU and RSS are watched in steady state (more than its 60 s
    /// interval, so that the snapshots are in it).
    #[arg(long, default_value = "130s", value_parser = humantime::parse_duration)]
    steady: Duration,
    /// Go release of the fixture binaries.
    #[arg(long, default_value = gotrace_tests::go::NEWEST)]
    go: String,
}

const CPU_LIMIT_PERCENT: f64 = 1.0;
const RSS_LIMIT_MIB: u64 = 64;
const RATIO_LIMIT: f64 = 0.99;
const DISCOVERY_LIMIT: Duration = Duration::from_secs(5);

pub fn run(args: AgentArgs) -> Result<()> {
    crate::bench::require_root()?;
    let _children = gotrace_tests::children::guard();
    let gotrace = crate::test::build_release_gotrace()?;
    let tc = Toolchain::find(&args.go)?;
    let dir = fixtures::scratch_dir("bench-agent")?;
    let workload = copy(&fixtures::build("workload", tc, Variant::Default)?, &dir)?;
    let include = format!("{}/*", dir.display());
    let state = dir.join("state");
    let agent_args = |extra: &[&str]| -> Vec<String> {
        let mut v: Vec<String> = ["--include", &include, "--state-dir"]
            .iter()
            .map(|s| s.to_string())
            .collect();
        v.push(state.display().to_string());
        v.extend(extra.iter().map(|s| s.to_string()));
        v
    };
    let modes = ["alloc", "churn", "json"];
    let mut procs: Vec<GoProcess> = (0..args.targets)
        .map(|i| GoProcess::start(&workload, &["-mode", modes[i % modes.len()]]))
        .collect::<Result<_>>()?;
    println!(
        "{} workload processes ({}), Go {}, on {} CPUs",
        procs.len(),
        modes.join(", "),
        tc.release,
        std::thread::available_parallelism().map_or(0, |n| n.get())
    );
    let mut failed = Vec::new();

    // 1. Throughput: windows without and with the agent, alternated.
    let mut without = vec![rates(&mut procs, args.window)?];
    let mut with = Vec::new();
    for _ in 0..args.rounds {
        let agent = start(&gotrace, &agent_args(&[]))?;
        wait_for_all(&agent, &procs, Duration::from_secs(120))?;
        with.push(rates(&mut procs, args.window)?);
        agent.stop()?;
        without.push(rates(&mut procs, args.window)?);
    }
    let mut per_target = Vec::new();
    for p in 0..procs.len() {
        let ratios: Vec<f64> = (0..args.rounds)
            .map(|r| with[r][p] / ((without[r][p] + without[r + 1][p]) / 2.0))
            .collect();
        per_target.push(crate::bench::median(&ratios));
    }
    let total = |w: &[Vec<f64>]| -> Vec<f64> { w.iter().map(|r| r.iter().sum()).collect() };
    let (tw, two) = (total(&with), total(&without));
    let total_ratios: Vec<f64> = (0..args.rounds)
        .map(|r| tw[r] / ((two[r] + two[r + 1]) / 2.0))
        .collect();
    let total_ratio = crate::bench::median(&total_ratios);
    println!(
        "throughput with the agent / without: all targets {total_ratio:.3} (rounds {}), per target median {:.3}, min {:.3}, max {:.3}",
        total_ratios.iter().map(|r| format!("{r:.3}")).collect::<Vec<_>>().join(" "),
        crate::bench::median(&per_target),
        crate::bench::min(&per_target),
        crate::bench::max(&per_target),
    );
    if total_ratio < RATIO_LIMIT {
        failed.push(format!("throughput ratio {total_ratio:.3} < {RATIO_LIMIT}"));
    }

    // 2. Steady state: the agent's CPU and memory over more than an interval; a new process.
    let agent = start(&gotrace, &agent_args(&[]))?;
    wait_for_all(&agent, &procs, Duration::from_secs(120))?;
    let (cpu, rss, hwm) = steady(&agent, args.steady)?;
    println!(
        "agent with {} targets over {:.0} s: CPU {cpu:.2} % of one core, RSS {} MiB (peak {} MiB)",
        procs.len(),
        args.steady.as_secs_f64(),
        rss / 1024,
        hwm / 1024
    );
    if cpu > CPU_LIMIT_PERCENT {
        failed.push(format!("agent CPU {cpu:.2} % > {CPU_LIMIT_PERCENT} %"));
    }
    if hwm / 1024 > RSS_LIMIT_MIB {
        failed.push(format!(
            "agent peak RSS {} MiB > {RSS_LIMIT_MIB} MiB",
            hwm / 1024
        ));
    }
    let begin = Instant::now();
    let newcomer = GoProcess::start(&workload, &["-mode", "json"])?;
    agent.wait_for(newcomer.pid(), Duration::from_secs(60))?;
    let found = begin.elapsed();
    println!("a new process discovered in {:.1} s", found.as_secs_f64());
    if found > DISCOVERY_LIMIT {
        failed.push(format!(
            "discovery took {:.1} s > {DISCOVERY_LIMIT:?}",
            found.as_secs_f64()
        ));
    }
    agent.stop()?;
    drop(newcomer);
    drop(procs);

    // 3. Many small processes: the budget holds and the server answers.
    if args.small > 0 {
        let idle = copy(&fixtures::build("sampler", tc, Variant::Default)?, &dir)?;
        let small: Vec<GoProcess> = (0..args.small)
            .map(|_| GoProcess::start(&idle, &["-rate", "0"]))
            .collect::<Result<_>>()?;
        let agent = start(
            &gotrace,
            &agent_args(&["--max-targets", &(args.small + 10).to_string()]),
        )?;
        let begin = Instant::now();
        wait_for_all(&agent, &small, Duration::from_secs(600))?;
        println!(
            "{} small processes all attached in {:.1} s",
            small.len(),
            begin.elapsed().as_secs_f64()
        );
        let (cpu, rss, hwm) = steady(&agent, args.steady)?;
        let begin = Instant::now();
        agent.ok("/metrics")?;
        let metrics = begin.elapsed();
        let begin = Instant::now();
        agent.ok("/targets")?;
        let targets = begin.elapsed();
        println!(
            "agent with {} small targets over {:.0} s: CPU {cpu:.2} % of one core, RSS {} MiB (peak {} MiB); /metrics in {:.0} ms, /targets in {:.0} ms",
            small.len(),
            args.steady.as_secs_f64(),
            rss / 1024,
            hwm / 1024,
            metrics.as_secs_f64() * 1e3,
            targets.as_secs_f64() * 1e3,
        );
        if cpu > CPU_LIMIT_PERCENT {
            failed.push(format!(
                "agent CPU with {} small targets {cpu:.2} % > {CPU_LIMIT_PERCENT} %",
                small.len()
            ));
        }
        if metrics > Duration::from_secs(1) || targets > Duration::from_secs(1) {
            failed.push("the agent answered slower than 1 s with many targets".into());
        }
        agent.stop()?;
    }
    let _ = std::fs::remove_dir_all(&dir);
    if !failed.is_empty() {
        bail!("{}", failed.join("; "));
    }
    Ok(())
}

fn copy(exe: &Path, dir: &Path) -> Result<std::path::PathBuf> {
    let to = dir.join(exe.file_name().context("fixture name")?);
    std::fs::copy(exe, &to)?;
    Ok(to)
}

fn start(gotrace: &Path, args: &[String]) -> Result<Agent> {
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    Agent::launch(gotrace, &args, false)
}

fn wait_for_all(agent: &Agent, procs: &[GoProcess], within: Duration) -> Result<()> {
    let begin = Instant::now();
    for p in procs {
        agent.wait_for(p.pid(), within.saturating_sub(begin.elapsed()))?;
    }
    Ok(())
}

/// Ops per second of every process over the same window.
fn rates(procs: &mut [GoProcess], window: Duration) -> Result<Vec<f64>> {
    let start: Vec<(u64, u64)> = procs
        .iter_mut()
        .map(crate::bench::next_ops)
        .collect::<Result<_>>()?;
    std::thread::sleep(window);
    procs
        .iter_mut()
        .zip(start)
        .map(|(p, (n0, t0))| {
            let (n1, t1) = crate::bench::next_ops(p)?;
            Ok((n1 - n0) as f64 / ((t1 - t0) as f64 / 1e9))
        })
        .collect()
}

/// The agent's CPU (percent of one core) over `span`, then its RSS and peak RSS (KiB).
fn steady(agent: &Agent, span: Duration) -> Result<(f64, u64, u64)> {
    let pid = agent.pid().to_string();
    let ticks = || -> Result<u64> {
        let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"))?;
        let fields: Vec<&str> = stat
            .rsplit_once(')')
            .context("stat")?
            .1
            .split_whitespace()
            .collect();
        Ok(fields[11].parse::<u64>()? + fields[12].parse::<u64>()?)
    };
    // Settle: the first looks and attaches are behind.
    std::thread::sleep(Duration::from_secs(5));
    let (c0, t0) = (ticks()?, Instant::now());
    std::thread::sleep(span);
    let (c1, t1) = (ticks()?, Instant::now());
    // SAFETY: sysconf has no preconditions.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) } as f64;
    let cpu = (c1 - c0) as f64 / hz / (t1 - t0).as_secs_f64() * 100.0;
    Ok((
        cpu,
        crate::bench::status_kib(&pid, "VmRSS")?,
        crate::bench::status_kib(&pid, "VmHWM")?,
    ))
}
