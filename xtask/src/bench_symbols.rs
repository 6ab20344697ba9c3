//! `cargo xtask bench symbols <binary>`: what it costs gotrace to symbolize a binary: the time
//! to open it (map, ELF, build info, pclntab header, module data), then the first lookups of
//! PCs spread over its functions (inline frames included), and the process's peak resident set
//! (`VmHWM`, which counts the mapped file pages read as well as the heap).

use std::{path::PathBuf, time::Instant};

use anyhow::{Context, Result};
use clap::Args;
use gotrace::{binary::GoBinary, symbols::Symbolizer};

use crate::bench::status_kib;

#[derive(Args)]
pub struct SymbolsArgs {
    /// A Go executable (e.g. a large one from a Debian package: /usr/sbin/dockerd).
    binary: PathBuf,
    /// PCs to resolve, spread evenly over the function table.
    #[arg(long, default_value_t = 10_000)]
    lookups: usize,
    /// Answer from DWARF instead of the pclntab (the binary must have DWARF).
    #[arg(long)]
    dwarf: bool,
}

pub fn run(args: SymbolsArgs) -> Result<()> {
    let size = std::fs::metadata(&args.binary)
        .with_context(|| format!("{}", args.binary.display()))?
        .len();
    let rss_before = status_kib("self", "VmHWM")?;
    let t0 = Instant::now();
    let bin = std::sync::Arc::new(GoBinary::open(
        &args.binary,
        &args.binary.display().to_string(),
    )?);
    let opened = t0.elapsed();
    let sym = if args.dwarf {
        Symbolizer::with_dwarf(bin.clone())?
    } else {
        Symbolizer::new(bin.clone())
    };
    let ready = t0.elapsed();
    let pcln = bin.pclntab();
    let n = pcln.func_count();
    let step = (n / args.lookups.max(1)).max(1);
    let pcs: Vec<u64> = (0..n)
        .step_by(step)
        .filter_map(|i| pcln.func(i))
        .map(|f| f.entry + (f.end - f.entry) / 2)
        .take(args.lookups)
        .collect();
    let t1 = Instant::now();
    let first = sym.frames(pcs[0]);
    let first_lookup = t1.elapsed();
    let mut frames = first.len();
    let mut inlined = usize::from(first.len() > 1);
    for pc in &pcs[1..] {
        let f = sym.frames(*pc);
        frames += f.len();
        inlined += usize::from(f.len() > 1);
    }
    let lookups = t1.elapsed();
    let total = t0.elapsed();
    let rss_peak = status_kib("self", "VmHWM")?;
    println!(
        "binary: {} ({:.1} MB, {}, {} functions, {}{}{})",
        args.binary.display(),
        size as f64 / 1e6,
        bin.buildinfo.version_string,
        n,
        if bin.elf.pie { "PIE" } else { "non-PIE" },
        if bin.elf.has_symtab { ", symtab" } else { "" },
        if bin.elf.has_dwarf { ", DWARF" } else { "" },
    );
    println!(
        "source: {:?}; moduledata: {}",
        sym.source(),
        match bin.moduledata() {
            Ok(m) => format!("{:#x} ({:?} offsets)", m.addr, m.offsets_source),
            Err(e) => e.to_string(),
        }
    );
    println!(
        "open (ELF, build info, pclntab, moduledata): {:>8.1} ms",
        ms(opened)
    );
    println!(
        "symbolizer ready:                             {:>8.1} ms",
        ms(ready)
    );
    println!(
        "first lookup:                                 {:>8.3} ms",
        ms(first_lookup)
    );
    println!(
        "{} lookups ({frames} frames, {inlined} PCs in inlined code): {:>8.1} ms ({:.1} us each)",
        pcs.len(),
        ms(lookups),
        ms(lookups) * 1000.0 / pcs.len() as f64
    );
    println!(
        "load + lookups:                               {:>8.1} ms",
        ms(total)
    );
    println!(
        "peak RSS: {:.1} MB (this process before opening the binary: {:.1} MB)",
        rss_peak as f64 / 1024.0,
        rss_before as f64 / 1024.0
    );
    Ok(())
}

fn ms(d: std::time::Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}
