//! `cargo xtask test`: the whole suite, as CI runs it.

use std::process::Command;

use anyhow::{bail, Result};
use clap::Args;

#[derive(Args)]
pub struct TestArgs {
    /// Skip rustfmt and clippy.
    #[arg(long)]
    no_lint: bool,
    /// Extra arguments for `cargo test` (e.g. a test name filter).
    #[arg(last = true)]
    cargo_args: Vec<String>,
}

pub fn run(args: TestArgs) -> Result<()> {
    if unsafe { libc::geteuid() } != 0 {
        bail!(
            "the integration tests load real eBPF programs: run as root (sudo -E cargo xtask test)"
        );
    }
    crate::setup::run()?;
    if !args.no_lint {
        lint()?;
    }
    cargo(&["build", "-p", "gotrace", "--bins"])?;
    let mut test = vec!["test", "--workspace", "--no-fail-fast"];
    if !args.cargo_args.is_empty() {
        test.push("--");
        test.extend(args.cargo_args.iter().map(String::as_str));
    }
    cargo(&test)
}

/// rustfmt, the module graph's layering, and clippy (warnings are errors) on the host
/// workspace and on the eBPF crate.
fn lint() -> Result<()> {
    cargo(&["fmt", "--all", "--", "--check"])?;
    crate::layers::check(&gotrace_tests::fixtures::workspace_root().join("tracer-user/src"))?;
    cargo(&[
        "clippy",
        "--workspace",
        "--all-targets",
        "--",
        "-D",
        "warnings",
    ])?;
    let ebpf = gotrace_tests::fixtures::workspace_root().join("tracer-ebpf");
    cargo_in(&ebpf, &["fmt", "--", "--check"])?;
    cargo_in(
        &ebpf,
        &[
            "clippy",
            "--release",
            "--target-dir",
            "../target/bpf",
            "--",
            "-D",
            "warnings",
        ],
    )
}

/// Builds the release `gotrace` (what users install) and returns its path.
pub fn build_release_gotrace() -> Result<std::path::PathBuf> {
    cargo(&["build", "--release", "-p", "gotrace", "--bin", "gotrace"])?;
    Ok(gotrace_tests::fixtures::workspace_root().join("target/release/gotrace"))
}

pub fn cargo(args: &[&str]) -> Result<()> {
    cargo_in(&gotrace_tests::fixtures::workspace_root(), args)
}

fn cargo_in(dir: &std::path::Path, args: &[&str]) -> Result<()> {
    eprintln!("+ cargo {}", args.join(" "));
    let status = Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()))
        .args(args)
        .current_dir(dir)
        // Stable Rust builds `core` for the BPF target only with this (see tracer-user/build.rs).
        .env("RUSTC_BOOTSTRAP", "1")
        .status()?;
    if !status.success() {
        bail!("cargo {} failed ({status})", args.join(" "));
    }
    Ok(())
}
