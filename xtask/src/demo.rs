//! `cargo xtask demo`: the README's first command. Builds gotrace and the leaky demo service,
//! starts the service, attaches gotrace for a while and shows what it found.

use std::{
    io::{BufRead, BufReader},
    path::PathBuf,
    process::{Command, Stdio},
    time::Duration,
};

use anyhow::{bail, Context, Result};
use clap::Args;
use gotrace_tests::{fixtures::workspace_root, go::Toolchain};

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
    let _ = svc.kill();
    let _ = svc.wait();
    if !status.success() {
        bail!("gotrace attach failed ({status})");
    }
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
