//! gotrace's symbolizer against the Go toolchain's own answers, for every release of the matrix
//! and every link mode: `runtime.firstmoduledata`, PC -> function and file:line as
//! `go tool addr2line` reports them, and inline frames as `runtime.CallersFrames` reports them.
//! These tests read files only (no eBPF), so they run in parallel without the BPF lock.

use std::{
    collections::HashMap,
    path::PathBuf,
    sync::{Arc, Mutex, OnceLock},
};

use anyhow::{Context, Result};
use gotrace::{binary::GoBinary, SharedBytes};
use gotrace_tests::{fixtures, go::MATRIX, Toolchain, Variant};

/// Builds (once per test binary) fixture `name` with `toolchain` in `variant`. The lock keeps
/// parallel tests from building the same binary twice on a 2-core machine.
fn fixture(name: &str, toolchain: Toolchain, variant: Variant) -> Result<PathBuf> {
    type Cache = Mutex<HashMap<(String, &'static str, Variant), Arc<Mutex<Option<PathBuf>>>>>;
    static CACHE: OnceLock<Cache> = OnceLock::new();
    let slot = CACHE
        .get_or_init(Default::default)
        .lock()
        .unwrap()
        .entry((name.to_string(), toolchain.release, variant))
        .or_default()
        .clone();
    let mut slot = slot.lock().unwrap();
    if let Some(p) = &*slot {
        return Ok(p.clone());
    }
    let p = fixtures::build(name, toolchain, variant)?;
    *slot = Some(p.clone());
    Ok(p)
}

fn open(path: &std::path::Path) -> Result<GoBinary> {
    let data = std::fs::read(path)?;
    Ok(GoBinary::from_bytes(
        SharedBytes::new(data),
        &path.display().to_string(),
    )?)
}

/// `runtime.firstmoduledata` as found by gotrace equals what the symbol table says. In the
/// unstripped builds the symbol and DWARF are checked, then the stripped path (scan for a
/// pointer to the pclntab, offsets from the generated table) is run on the same file and must
/// agree. Stripped builds (laid out slightly differently: their build info is longer) must find
/// it from the table alone, with `text` at the start of `.text` where Go's linker puts it;
/// `gofunc` is checked there by the inline-frame test, which needs it to read inline trees.
#[test]
fn moduledata_matches_symbol_table() -> Result<()> {
    use gotrace::{
        binary::Moduledata,
        goruntime::{Offsets, OffsetsSource},
        symbols::pclntab::PcHeader,
    };
    for tc in MATRIX {
        for (full, stripped) in [
            (Variant::Default, Variant::Stripped),
            (Variant::Pie, Variant::StrippedPie),
        ] {
            let exe = fixture("inline", *tc, full)?;
            let bin = open(&exe)?;
            let ctx = format!("Go {} {}", tc.release, full.name());
            let md = bin
                .moduledata()
                .map_err(|e| anyhow::anyhow!("{ctx}: {e}"))?
                .clone();
            let sym = |names: &[&str]| {
                names
                    .iter()
                    .find_map(|n| bin.symbol(n))
                    .with_context(|| format!("{ctx}: no symbol {names:?}"))
            };
            assert_eq!(md.addr, sym(&["runtime.firstmoduledata"])?, "{ctx}");
            assert_eq!(md.text, sym(&["runtime.text"])?, "{ctx}");
            assert_eq!(md.etext, sym(&["runtime.etext"])?, "{ctx}");
            assert_eq!(md.types, sym(&["runtime.types"])?, "{ctx}");
            assert_eq!(md.etypes, sym(&["runtime.etypes"])?, "{ctx}");
            // The FUNCDATA base symbol was renamed with the other linker symbols in Go 1.21.
            assert_eq!(md.gofunc, sym(&["go:func.*", "go.func.*"])?, "{ctx}");
            assert_eq!(md.offsets_source, OffsetsSource::Dwarf, "{ctx}");

            let pcln = [".gopclntab", ".data.rel.ro.gopclntab"]
                .iter()
                .find_map(|n| bin.elf.section(n))
                .context("no pclntab section")?;
            let header = PcHeader::parse(bin.elf.section_data(bin.data(), pcln).unwrap())?;
            let table = Offsets::from_table(bin.version()).context("no table row")?;
            let scanned = Moduledata::scan(bin.data(), &bin.elf, &table, pcln.addr, &header)?;
            assert_eq!(
                Moduledata {
                    offsets_source: OffsetsSource::Dwarf,
                    ..scanned
                },
                md,
                "{ctx}: scan with table offsets"
            );

            let sexe = fixture("inline", *tc, stripped)?;
            let sbin = open(&sexe)?;
            let ctx = format!("Go {} {}", tc.release, stripped.name());
            assert!(sbin.symbol("runtime.firstmoduledata").is_none(), "{ctx}");
            let smd = sbin
                .moduledata()
                .map_err(|e| anyhow::anyhow!("{ctx}: {e}"))?;
            assert!(
                matches!(smd.offsets_source, OffsetsSource::Table { .. }),
                "{ctx}"
            );
            let text = sbin.elf.section(".text").context("no .text")?;
            assert_eq!(smd.text, text.addr, "{ctx}");
            assert!(
                smd.etext > smd.text && smd.etext <= text.addr + text.size,
                "{ctx}"
            );
            assert!(smd.etypes > smd.types, "{ctx}");
        }
    }
    Ok(())
}

/// One stack printed by the `inline` fixture.
struct Stack {
    name: String,
    /// `runtime.Callers` entries (return PCs, runtime addresses).
    pcs: Vec<u64>,
    /// `runtime.CallersFrames` over `pcs`: (function, file, line).
    frames: Vec<(String, String, u32)>,
}

/// Runs the `inline` fixture: its load bias (runtime address of `main.main` minus its
/// link-time address) and its stacks.
fn inline_stacks(exe: &std::path::Path, bin: &GoBinary) -> Result<(u64, Vec<Stack>)> {
    let out = std::process::Command::new(exe).output()?;
    anyhow::ensure!(out.status.success(), "{} failed", exe.display());
    let text = String::from_utf8(out.stdout)?;
    let hex = |s: &str| u64::from_str_radix(s.trim_start_matches("0x"), 16);
    let mut bias = None;
    let mut stacks: Vec<Stack> = Vec::new();
    for line in text.lines() {
        let (kind, rest) = line.split_once(' ').unwrap_or((line, ""));
        match kind {
            "anchor" => {
                let (name, addr) = rest.split_once(' ').context("anchor line")?;
                let link = bin
                    .pclntab()
                    .find(name)
                    .with_context(|| format!("no {name} in the pclntab"))?
                    .entry;
                bias = Some(hex(addr)?.wrapping_sub(link));
            }
            "stack" => stacks.push(Stack {
                name: rest.to_string(),
                pcs: Vec::new(),
                frames: Vec::new(),
            }),
            "pc" => stacks
                .last_mut()
                .context("pc before stack")?
                .pcs
                .push(hex(rest)?),
            "frame" => {
                let mut f = rest.split('\t');
                let (Some(func), Some(file), Some(line)) = (f.next(), f.next(), f.next()) else {
                    anyhow::bail!("bad frame line {line:?}");
                };
                stacks
                    .last_mut()
                    .context("frame before stack")?
                    .frames
                    .push((func.to_string(), file.to_string(), line.parse()?));
            }
            _ => {}
        }
    }
    Ok((bias.context("no anchor line")?, stacks))
}

/// For every PC of every stack the fixture captured, gotrace's frames equal the runtime's.
/// `runtime.Callers` gives one entry per logical frame (a physical return PC, then one
/// "virtual" PC per inlined caller) and `CallersFrames` one frame per entry, so the frames of
/// entry n through its outermost physical caller are `CallersFrames` frames n, n+1, ...
fn check_inline_frames(
    tc: Toolchain,
    variant: Variant,
    source: gotrace::symbols::Source,
) -> Result<usize> {
    use gotrace::symbols::{Source, Symbolizer};
    let exe = fixture("inline", tc, variant)?;
    let bin = open(&exe)?;
    let (bias, stacks) = inline_stacks(&exe, &bin)?;
    let sym = match source {
        Source::Pclntab => Symbolizer::new(&bin),
        Source::Dwarf => Symbolizer::with_dwarf(&bin)?,
    };
    let mut checked = 0;
    let mut inlined = 0;
    for stack in &stacks {
        let ctx = format!(
            "Go {} {} {source:?}, stack {}",
            tc.release,
            variant.name(),
            stack.name
        );
        anyhow::ensure!(
            stack.pcs.len() == stack.frames.len(),
            "{ctx}: {} PCs but {} frames: the one-frame-per-entry premise does not hold",
            stack.pcs.len(),
            stack.frames.len()
        );
        for (n, pc) in stack.pcs.iter().enumerate() {
            let ours: Vec<(String, String, u32)> = sym
                .caller_frames(pc.wrapping_sub(bias))
                .into_iter()
                .map(|f| (f.function, f.file, f.line))
                .collect();
            let theirs = &stack.frames[n..(n + ours.len()).min(stack.frames.len())];
            assert_eq!(
                ours,
                theirs,
                "{ctx}: frames of PC #{n} {pc:#x} (link {:#x})",
                pc.wrapping_sub(bias)
            );
            inlined += ours.len() - 1;
            checked += 1;
        }
    }
    assert!(
        inlined > 0,
        "Go {} {}: no inlined frame at all",
        tc.release,
        variant.name()
    );
    Ok(checked)
}

#[test]
fn inline_frames_pclntab() -> Result<()> {
    for tc in MATRIX {
        for variant in Variant::ALL {
            let n = check_inline_frames(*tc, variant, gotrace::symbols::Source::Pclntab)?;
            eprintln!("Go {} {}: {n} PCs", tc.release, variant.name());
        }
    }
    Ok(())
}

#[test]
fn inline_frames_dwarf() -> Result<()> {
    for tc in MATRIX {
        for variant in [Variant::Default, Variant::Pie] {
            let n = check_inline_frames(*tc, variant, gotrace::symbols::Source::Dwarf)?;
            eprintln!("Go {} {} (DWARF): {n} PCs", tc.release, variant.name());
        }
    }
    Ok(())
}
