//! `cargo xtask demo`: the README's first command. Builds gotrace and the leaky demo service,
//! starts the service, attaches gotrace for a while and shows what it found, then runs
//! `gotrace agent` on it and shows what that serves.

use std::{
    io::{BufRead, BufReader},
    path::{Path, PathBuf},
    process::{Command, Stdio},
    time::Duration,
};

use anyhow::{bail, Context, Result};
use clap::Args;
use gotrace_tests::{agent::Agent, fixtures::workspace_root, go::Toolchain};

#[derive(Args)]
pub struct DemoArgs {
    /// How long to trace the demo service.
    #[arg(long, default_value = "15s", value_parser = humantime::parse_duration)]
    duration: Duration,
    /// Go release to build the demo service with.
    #[arg(long, default_value = gotrace_tests::go::NEWEST)]
    go: String,
    /// Build the service with `-ldflags="-s -w"`, like a production binary.
    #[arg(long)]
    stripped: bool,
}

pub fn run(args: DemoArgs) -> Result<()> {
    if unsafe { libc::geteuid() } != 0 {
        bail!("gotrace loads eBPF programs: run the demo as root (sudo -E cargo xtask demo)");
    }
    let root = workspace_root();
    // Building gotrace needs npm (its web page): on a fresh machine it comes from here.
    crate::setup::debian_packages()?;
    let gotrace = crate::test::build_release_gotrace()?;

    let toolchain = Toolchain::find(&args.go)?;
    toolchain.ensure()?;
    let service = root.join("target/demo/leakysvc");
    std::fs::create_dir_all(service.parent().unwrap())?;
    eprintln!("+ building demo/leakysvc with Go {}", toolchain.release);
    let mut build = toolchain.command();
    build
        .current_dir(root.join("demo/leakysvc"))
        .args(["build", "-o"])
        .arg(&service);
    if args.stripped {
        build.arg("-ldflags=-s -w");
    }
    if !build.status()?.success() {
        bail!("building the demo service failed");
    }

    let mut svc = Command::new(&service)
        .stdout(Stdio::piped())
        .spawn()
        .context("starting the demo service")?;
    let mut banner = String::new();
    BufReader::new(svc.stdout.take().unwrap()).read_line(&mut banner)?;
    eprint!("+ {banner}");
    // Let it build up some leaked state before attaching.
    std::thread::sleep(Duration::from_secs(2));

    let out = root.join("target/demo/report");
    let _ = std::fs::remove_dir_all(&out);
    let status = Command::new(&gotrace)
        .arg("attach")
        .arg(svc.id().to_string())
        .arg("--duration")
        .arg(humantime::format_duration(args.duration).to_string())
        .arg("--out")
        .arg(&out)
        .status()?;
    if !status.success() {
        let _ = svc.kill();
        bail!("gotrace attach failed ({status})");
    }
    let agent = agent(&gotrace, &service, svc.id(), &toolchain);
    let _ = svc.kill();
    let _ = svc.wait();
    agent?;
    let report: PathBuf = out.join("report.json");
    let json: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(&report)?)?;
    println!("\nFindings in {} (`findings`):", report.display());
    for f in json["findings"].as_array().into_iter().flatten() {
        println!(
            "  {:<18} at {} ({}:{})\n  {:<18} {}",
            f["pattern"].as_str().unwrap_or(""),
            f["site"]["function"].as_str().unwrap_or(""),
            f["site"]["file"].as_str().unwrap_or(""),
            f["site"]["line"],
            "",
            f["hint"].as_str().unwrap_or("")
        );
    }
    println!(
        "\nAlso there: heap.pb.gz (go tool pprof -http=: {0}/heap.pb.gz), heap-inuse.svg, goroutine.pb.gz",
        out.display()
    );
    Ok(())
}

/// The same service under `gotrace agent`, as a host would run it: what it lists, what a
/// Prometheus scrape and `go tool pprof` get from it.
fn agent(gotrace: &Path, service: &Path, pid: u32, go: &Toolchain) -> Result<()> {
    let include = service.display().to_string();
    eprintln!(
        "\n+ gotrace agent --include {include} --no-history (every Go process on a real host)"
    );
    let agent = Agent::launch(
        gotrace,
        &["--include", &include, "--no-history", "--min-age", "1s"],
        true,
    )?;
    let target = agent.wait_for(pid, Duration::from_secs(20))?;
    let id = target["id"].as_str().unwrap_or_default().to_string();
    println!("\n$ curl -s {}/targets", agent.url);
    println!("{}", serde_json::to_string_pretty(&target)?);
    // Let the agent take a few looks, so that its detectors have something to judge.
    std::thread::sleep(Duration::from_secs(12));
    println!(
        "\n$ curl -s {}/metrics | grep '^gotrace_[a-z_]*{{' | head",
        agent.url
    );
    let metrics = String::from_utf8(agent.ok("/metrics")?)?;
    for line in metrics
        .lines()
        .filter(|l| l.starts_with("gotrace_") && l.contains('{'))
        .take(6)
    {
        println!("{line}");
    }
    let url = format!("{}/targets/{id}/debug/pprof/heap", agent.url);
    println!("\n$ go tool pprof -top {url}");
    let top = go
        .command()
        .args(["tool", "pprof", "-top", "-nodecount=8", &url])
        .output()?;
    print!("{}", String::from_utf8_lossy(&top.stdout));
    let findings = agent.targets()?.into_iter().find(|t| t["pid"] == pid);
    if let Some(f) = findings.as_ref().and_then(|t| t["findings"].as_array()) {
        println!(
            "\nThe agent's findings for it: {}",
            f.iter()
                .map(|f| f["pattern"].as_str().unwrap_or(""))
                .collect::<Vec<_>>()
                .join(", ")
        );
    }
    if !agent.stop()?.success() {
        bail!("gotrace agent did not stop cleanly");
    }
    Ok(())
}
