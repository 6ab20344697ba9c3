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
use gotrace_tests::{children, fixtures, go::MATRIX, Toolchain, Variant};

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

fn open(path: &std::path::Path) -> Result<std::sync::Arc<GoBinary>> {
    let data = std::fs::read(path)?;
    Ok(std::sync::Arc::new(GoBinary::from_bytes(
        SharedBytes::new(data),
        &path.display().to_string(),
    )?))
}

/// `runtime.firstmoduledata` as found by gotrace equals what the symbol table says. In the
/// unstripped builds the symbol and DWARF are checked, then the stripped path (scan for a
/// pointer to the pclntab, offsets from the generated table) is run on the same file and must
/// agree. Stripped builds (laid out slightly differently: their build info is longer) must find
/// it from the table alone, with `text` at the start of `.text` where Go's linker puts it;
/// `gofunc` is checked there by the inline-frame test, which needs it to read inline trees.
#[test]
fn moduledata_matches_symbol_table() -> Result<()> {
    let _children = gotrace_tests::children::guard();
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
    let out = children::output(&mut std::process::Command::new(exe))?;
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
    use gotrace::symbols::{pclntab::func_name_for_print, Source, Symbolizer};
    let exe = fixture("inline", tc, variant)?;
    let bin = open(&exe)?;
    let (bias, stacks) = inline_stacks(&exe, &bin)?;
    let sym = match source {
        Source::Pclntab => Symbolizer::new(bin.clone()),
        Source::Dwarf => Symbolizer::with_dwarf(bin.clone())?,
    };
    let pcln = bin.pclntab();
    let wrapper = gotrace::goruntime::Offsets::func_id_wrapper(bin.version());
    // `runtime.CallersFrames` prints names as tracebacks do (`pkg.F[...]`).
    let print = |name: &str| func_name_for_print(name, bin.version()).into_owned();
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
            let link_pc = pc.wrapping_sub(bias);
            let frames = sym.caller_frames(link_pc);
            let ours: Vec<(String, String, u32)> = frames
                .iter()
                .map(|f| (print(&f.function), f.file.clone(), f.line))
                .collect();
            let theirs = &stack.frames[n..(n + ours.len()).min(stack.frames.len())];
            assert_eq!(
                ours, theirs,
                "{ctx}: frames of PC #{n} {pc:#x} (link {link_pc:#x})"
            );
            // The walk must reach the physical function (the function table's, validated
            // against addr2line), unless the runtime hides it as a wrapper around inlined code.
            let physical = pcln
                .func_for_pc(link_pc - 1)
                .with_context(|| format!("{ctx}: no function at {link_pc:#x}"))?;
            let last = frames.last().context("no frames")?;
            if last.inlined {
                assert_eq!(
                    pcln.func_id(physical.index),
                    wrapper,
                    "{ctx}: PC #{n}: the walk stopped at inlined {} inside {}",
                    last.function,
                    physical.name
                );
            } else {
                // The symbol name, as Go's profiles have it.
                assert_eq!(last.function, physical.name, "{ctx}: PC #{n}");
            }
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
    let _children = gotrace_tests::children::guard();
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
    let _children = gotrace_tests::children::guard();
    for tc in MATRIX {
        for variant in [Variant::Default, Variant::Pie] {
            let n = check_inline_frames(*tc, variant, gotrace::symbols::Source::Dwarf)?;
            eprintln!("Go {} {} (DWARF): {n} PCs", tc.release, variant.name());
        }
    }
    Ok(())
}

/// PCs spread over every function of `bin`: its entry, its last byte and pseudo-random bytes
/// in between (splitmix64 of the function's index, so runs are reproducible).
fn sample_pcs(bin: &GoBinary, per_func: usize) -> Vec<u64> {
    let mut pcs = Vec::new();
    for f in bin.pclntab().funcs() {
        let len = f.end - f.entry;
        if len == 0 {
            continue;
        }
        pcs.push(f.entry);
        pcs.push(f.end - 1);
        let mut state = f.index as u64;
        for _ in 0..per_func {
            state = state.wrapping_add(0x9e37_79b9_7f4a_7c15);
            let mut z = state;
            z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
            z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
            pcs.push(f.entry + (z ^ (z >> 31)) % len);
        }
    }
    pcs.sort_unstable();
    pcs.dedup();
    pcs
}

/// `go tool addr2line` of the toolchain that built `exe`: (function, file, line) per PC. It
/// reports the physical function containing the PC (the pclntab's function table, or
/// `?`) and the line table's position there: for an inlined PC that is the innermost inlined
/// call's file:line.
fn go_addr2line(
    tc: Toolchain,
    exe: &std::path::Path,
    pcs: &[u64],
) -> Result<Vec<(String, String, u32)>> {
    use std::io::Write;
    let mut child = children::spawn(
        tc.command()
            .args(["tool", "addr2line"])
            .arg(exe)
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped()),
    )?;
    let mut stdin = child.stdin.take().unwrap();
    let input: String = pcs.iter().map(|pc| format!("{pc:#x}\n")).collect();
    let writer = std::thread::spawn(move || stdin.write_all(input.as_bytes()));
    let out = child.wait_with_output()?;
    writer.join().unwrap()?;
    anyhow::ensure!(out.status.success(), "go tool addr2line failed");
    let text = String::from_utf8(out.stdout)?;
    let lines: Vec<&str> = text.lines().collect();
    anyhow::ensure!(
        lines.len() == 2 * pcs.len(),
        "addr2line answered {} lines for {} PCs",
        lines.len(),
        pcs.len()
    );
    lines
        .chunks(2)
        .map(|c| {
            let (file, line) = c[1].rsplit_once(':').context("file:line")?;
            let line: i64 = line
                .parse()
                .with_context(|| format!("addr2line answered {:?}", c))?;
            // debug/gosym answers line -1 (and no file) where the line table does not cover
            // the PC, as in the padding after a function's last instruction; gotrace answers
            // no file and line 0 there.
            Ok((
                c[0].to_string(),
                file.to_string(),
                u32::try_from(line).unwrap_or(0),
            ))
        })
        .collect()
}

/// Compares gotrace with `go tool addr2line` at thousands of PCs of one binary. The function
/// table must give addr2line's function; both symbolizer sources' innermost frame must give
/// its file:line, and their outermost frame its function as Go prints it (unless the runtime
/// hides that frame: an autogenerated wrapper around inlined code); the two sources must give
/// the same frames. Returns (PCs compared, PCs inside inlined code).
fn check_against_addr2line(tc: Toolchain, variant: Variant) -> Result<(usize, usize)> {
    let exe = fixture("inline", tc, variant)?;
    // Go 1.19's objfile looks for `.gopclntab` only and answers `?` for its own PIEs (which
    // have `.data.rel.ro.gopclntab`); Go 1.21's reads the same pclntab format there.
    let oracle = match (tc.minor(), variant) {
        ("1.19", Variant::Pie | Variant::StrippedPie) => Toolchain::find("1.21")?,
        _ => tc,
    };
    let name = format!("Go {} {}", tc.release, variant.name());
    compare_with_addr2line(&name, &exe, oracle, &exe)
}

/// [`check_against_addr2line`] for gotrace reading `exe` and `go tool addr2line` of `oracle`
/// reading `oracle_exe`, a copy of `exe` with the same layout that it can read.
fn compare_with_addr2line(
    name: &str,
    exe: &std::path::Path,
    oracle: Toolchain,
    oracle_exe: &std::path::Path,
) -> Result<(usize, usize)> {
    use gotrace::symbols::{pclntab::func_name_for_print, Frame, Symbolizer};
    let bin = open(exe)?;
    let pcs = sample_pcs(&bin, 6);
    let expected = go_addr2line(oracle, oracle_exe, &pcs)?;
    let pclntab = Symbolizer::new(bin.clone());
    let dwarf = bin
        .elf
        .has_dwarf
        .then(|| Symbolizer::with_dwarf(bin.clone()))
        .transpose()?;
    let wrapper = gotrace::goruntime::Offsets::func_id_wrapper(bin.version());
    let pcln = bin.pclntab();
    let (mut inlined, mut dwarf_quirks) = (0, 0);
    let mut failures = Vec::new();
    for (pc, (func, file, line)) in pcs.iter().zip(&expected) {
        let ctx = format!("{name} pc {pc:#x}");
        let physical = pcln.func_for_pc(*pc);
        if physical.as_ref().map(|f| f.name.as_str()) != Some(func.as_str()) {
            failures.push(format!(
                "{ctx}: function table {:?}, addr2line {func}",
                physical.map(|f| f.name)
            ));
            continue;
        }
        let is_wrapper = physical
            .and_then(|f| pcln.func_id(f.index))
            .zip(wrapper)
            .is_some_and(|(a, b)| a == b);
        let check = |frames: &[Frame]| -> Option<String> {
            let (Some(first), Some(last)) = (frames.first(), frames.last()) else {
                return Some("no frames".into());
            };
            if (&first.file, first.line) != (file, *line) {
                return Some(format!(
                    "{}:{} vs addr2line {file}:{line}",
                    first.file, first.line
                ));
            }
            let outer_ok = (func_name_for_print(&last.function, bin.version())
                == func_name_for_print(func, bin.version())
                && !last.inlined)
                || (last.inlined && is_wrapper);
            (!outer_ok).then(|| format!("outermost {last:?} vs addr2line {func}"))
        };
        let ours = pclntab.frames(*pc);
        if let Some(e) = check(&ours) {
            failures.push(format!("{ctx} pclntab: {e}"));
        }
        if ours.len() > 1 {
            inlined += 1;
        }
        let Some(dwarf) = &dwarf else { continue };
        let theirs = dwarf.frames(*pc);
        let problem = match check(&theirs) {
            Some(e) => Some(e),
            None if theirs != ours => Some(format!("{theirs:?} vs pclntab {ours:?}")),
            None => None,
        };
        match problem {
            Some(_) if go119_dwarf_gap(&bin, *pc, is_wrapper) => dwarf_quirks += 1,
            Some(e) => failures.push(format!("{ctx} DWARF: {e}")),
            None => {}
        }
    }
    if let Some(dwarf) = &dwarf {
        eprintln!(
            "{name}: the pclntab filled in for DWARF at {} of {} PCs (padding, wrapper \
             entries); {dwarf_quirks} PCs where Go 1.19's DWARF lacks what its pclntab has",
            dwarf.dwarf_fallbacks(),
            pcs.len()
        );
    }
    anyhow::ensure!(
        failures.is_empty(),
        "{name}: {} of {} PCs differ from go tool addr2line:\n{}",
        failures.len(),
        pcs.len(),
        failures[..failures.len().min(20)].join("\n")
    );
    Ok((pcs.len(), inlined))
}

/// Where Go 1.19's DWARF is known to say less than its pclntab (which the runtime and
/// `go tool addr2line` follow): its assembler pads loop heads with multi-byte NOPs whose line
/// rows continue the previous statement while the pclntab gives them the next one (no PC a
/// program reports, a return address or call site, is in such padding), and it records no
/// inlined calls inside autogenerated wrappers. Go 1.21+ DWARF agrees with the pclntab there.
fn go119_dwarf_gap(bin: &GoBinary, pc: u64, in_wrapper: bool) -> bool {
    use iced_x86::{Decoder, DecoderOptions, Mnemonic};
    if bin.version().minor_release() >= (1, 21) {
        return false;
    }
    if in_wrapper {
        return true;
    }
    let Some(func) = bin.pclntab().func_for_pc(pc) else {
        return false;
    };
    let Some(code) = bin.code(&func) else {
        return false;
    };
    let mut decoder = Decoder::with_ip(64, code, func.entry, DecoderOptions::NONE);
    decoder
        .iter()
        .find(|i| i.ip() <= pc && pc < i.next_ip())
        .is_some_and(|i| i.mnemonic() == Mnemonic::Nop)
}

#[test]
fn pcs_match_go_addr2line() -> Result<()> {
    let _children = gotrace_tests::children::guard();
    let mut failures = Vec::new();
    for tc in MATRIX {
        for variant in Variant::ALL {
            match check_against_addr2line(*tc, variant) {
                Ok((n, inlined)) => {
                    eprintln!(
                        "Go {} {}: {n} PCs equal ({inlined} in inlined code)",
                        tc.release,
                        variant.name()
                    );
                    assert!(inlined * 20 > n, "too few inlined PCs sampled");
                }
                Err(e) => failures.push(format!("{e:#}")),
            }
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n\n"));
    Ok(())
}

/// Loads `data` and, if that works, symbolizes PCs spread over its functions with both
/// sources. Returns the load error, if any. Panics are what the caller looks for.
fn load_and_symbolize(data: Vec<u8>) -> Option<gotrace::Error> {
    use gotrace::symbols::Symbolizer;
    let bin = match GoBinary::from_bytes(SharedBytes::new(data), "corrupt") {
        Ok(b) => std::sync::Arc::new(b),
        Err(e) => return Some(e),
    };
    let pcs: Vec<u64> = bin
        .pclntab()
        .funcs()
        .step_by(7)
        .take(150)
        .flat_map(|f| [f.entry, f.entry + (f.end - f.entry) / 2])
        .collect();
    let sym = Symbolizer::new(bin.clone());
    for pc in &pcs {
        let _ = sym.frames(*pc);
        let _ = sym.caller_frame(*pc + 1);
    }
    if let Ok(dwarf) = Symbolizer::with_dwarf(bin.clone()) {
        for pc in pcs.iter().take(50) {
            let _ = dwarf.frames(*pc);
        }
    }
    None
}

/// Truncated and corrupted copies of real Go binaries either load (a cut that only loses DWARF
/// or the symbol table still leaves a usable binary) or fail with `Error::BadBinary`, never a
/// panic; whatever loads symbolizes without panicking. Cuts fall at 1/41ths of the file and
/// around every section boundary; corruption overwrites words of the pclntab (header,
/// function table, `_func` records, pc-value tables), the build info, the module data and the
/// inline trees, at positions from a fixed pseudo-random sequence.
#[test]
fn truncated_and_corrupt_binaries_fail_cleanly() -> Result<()> {
    let _children = gotrace_tests::children::guard();
    let cases = [
        ("1.19", Variant::Default),
        ("1.21", Variant::StrippedPie),
        ("1.26", Variant::Stripped),
        ("1.27", Variant::Pie),
    ];
    let mut rng = 0x2545_f491_4f6c_dd1d_u64;
    let mut next = move || {
        rng ^= rng << 13;
        rng ^= rng >> 7;
        rng ^= rng << 17;
        rng
    };
    for (release, variant) in cases {
        let exe = fixture("inline", Toolchain::find(release)?, variant)?;
        let data = std::fs::read(&exe)?;
        let bin = open(&exe)?;
        let ctx = format!("Go {release} {}", variant.name());
        let mut cuts: Vec<usize> = (1..41).map(|i| data.len() * i / 41).collect();
        cuts.extend([0, 3, 4, 16, 63, 64, 65, 200]);
        for s in &bin.elf.sections {
            if let Some(off) = s.file_offset {
                let (start, end) = (off as usize, (off + s.size) as usize);
                cuts.extend([start + 1, start + 40, end.saturating_sub(1)]);
            }
        }
        cuts.retain(|&c| c < data.len());
        let mut loaded = 0;
        for cut in &cuts {
            let copy = data[..*cut].to_vec();
            match std::panic::catch_unwind(|| load_and_symbolize(copy)) {
                Err(_) => panic!("{ctx}: panicked on a copy cut at {cut} bytes"),
                Ok(None) => loaded += 1,
                Ok(Some(gotrace::Error::BadBinary { reason, .. })) => assert!(
                    reason.contains("truncated or corrupt"),
                    "{ctx}: cut at {cut}: {reason}"
                ),
                // Fewer than 4 bytes do not even say ELF.
                Ok(Some(gotrace::Error::NotGo { .. })) if *cut < 4 => {}
                Ok(Some(e)) => panic!("{ctx}: cut at {cut}: {e} (want BadBinary)"),
            }
        }
        eprintln!("{ctx}: {} cuts, {loaded} still loadable", cuts.len());

        let section = |names: &[&str]| {
            names
                .iter()
                .find_map(|n| bin.elf.section(n))
                .and_then(|s| Some((s.file_offset? as usize, s.size as usize)))
        };
        let mut regions = vec![
            section(&[".gopclntab", ".data.rel.ro.gopclntab"]).context("pclntab")?,
            section(&[".go.buildinfo"]).context("buildinfo")?,
        ];
        let md = bin.moduledata().map_err(|e| anyhow::anyhow!("{e}"))?;
        regions.push((
            bin.elf.file_offset(md.addr).context("moduledata")? as usize,
            400,
        ));
        regions.push((
            bin.elf.file_offset(md.gofunc).context("gofunc")? as usize,
            4096,
        ));
        let mut corrupted = 0;
        for (start, len) in regions {
            for round in 0..80 {
                let mut copy = data.clone();
                // Early rounds hit the first bytes (headers), later ones anywhere.
                let span = if round < 30 { len.min(128) } else { len };
                for _ in 0..1 + round % 4 {
                    let at = start + (next() as usize) % span.max(1);
                    let word = next().to_le_bytes();
                    let end = (at + 4).min(copy.len());
                    copy[at..end].copy_from_slice(&word[..end - at]);
                }
                match std::panic::catch_unwind(|| load_and_symbolize(copy)) {
                    Err(_) => panic!(
                        "{ctx}: panicked on a corrupted copy (region {start:#x}, round {round})"
                    ),
                    Ok(None | Some(gotrace::Error::BadBinary { .. })) => corrupted += 1,
                    Ok(Some(e)) => panic!("{ctx}: corrupted copy: {e} (want BadBinary)"),
                }
            }
        }
        eprintln!("{ctx}: {corrupted} corrupted copies handled");
    }
    Ok(())
}

/// Cgo programs are linked by the system linker, which merges Go's pclntab into `.data.rel.ro`
/// (there is no `.gopclntab`), and distributions `strip` them (no `runtime.pclntab` symbol
/// either): Debian's dockerd is such a binary. gotrace must find the pclntab and the module
/// data there. `strip` only drops non-allocated sections, so `go tool addr2line` reading the
/// unstripped file (which it can, by the symbols) is the oracle for the stripped one.
#[test]
fn externally_linked_stripped_pie_matches_go_addr2line() -> Result<()> {
    let _children = gotrace_tests::children::guard();
    let gcc_missing = children::output(std::process::Command::new("gcc").arg("--version")).is_err();
    if gcc_missing {
        gotrace_tests::go::install_debian(&["gcc", "libc6-dev"])?;
    }
    let mut merged = 0;
    for tc in MATRIX {
        let dir = fixtures::workspace_root()
            .join("target/fixtures")
            .join(format!("go{}", tc.release))
            .join("external-pie");
        let exe = dir.join("inline");
        let stripped = dir.join("inline.stripped");
        // Rebuilt when a source of the program is newer than the stripped copy.
        let built = std::fs::metadata(&stripped).and_then(|m| m.modified()).ok();
        let fresh = ["inline/main.go", "internal/inl/inl.go"].iter().all(|src| {
            let modified = std::fs::metadata(fixtures::fixtures_dir().join(src))
                .and_then(|m| m.modified())
                .ok();
            matches!((modified, built), (Some(m), Some(b)) if m <= b)
        });
        if !fresh {
            tc.ensure()?;
            std::fs::create_dir_all(&dir)?;
            let out = children::output(
                tc.command()
                    .current_dir(fixtures::fixtures_dir())
                    .env("CGO_ENABLED", "1")
                    .args([
                        "build",
                        "-buildmode=pie",
                        "-ldflags=-linkmode=external",
                        "-o",
                    ])
                    .arg(&exe)
                    .arg("./inline"),
            )?;
            anyhow::ensure!(
                out.status.success(),
                "Go {}: external link failed: {}",
                tc.release,
                String::from_utf8_lossy(&out.stderr)
            );
            let status = children::status(
                std::process::Command::new("strip")
                    .arg("-o")
                    .arg(&stripped)
                    .arg(&exe),
            )?;
            anyhow::ensure!(status.success(), "strip failed");
        }
        let bin = open(&stripped)?;
        anyhow::ensure!(!bin.elf.has_symtab, "Go {}: strip left symbols", tc.release);
        // From Go 1.26 on the linker asks the external linker for a `.gopclntab` section.
        if bin.elf.section(".gopclntab").is_none() {
            merged += 1;
        }
        let md = bin
            .moduledata()
            .map_err(|e| anyhow::anyhow!("Go {}: {e}", tc.release))?;
        let full = open(&exe)?;
        assert_eq!(
            Some(md.addr),
            full.symbol("runtime.firstmoduledata"),
            "Go {}",
            tc.release
        );
        assert_eq!(
            Some(md.gofunc),
            full.symbol("go:func.*").or(full.symbol("go.func.*"))
        );
        // Go 1.19's objfile does not know its own PIE layout (see check_against_addr2line).
        let oracle = if tc.minor() == "1.19" {
            Toolchain::find("1.21")?
        } else {
            *tc
        };
        let name = format!("Go {} external-pie (strip)", tc.release);
        let (n, inlined) = compare_with_addr2line(&name, &stripped, oracle, &exe)?;
        eprintln!("{name}: {n} PCs equal ({inlined} in inlined code)");
    }
    assert!(
        merged > 0,
        "no release merged the pclntab into another section"
    );
    Ok(())
}

/// The cache is bounded and transparent: a symbolizer remembering 16 PCs answers thousands of
/// lookups (each PC asked twice, far apart) exactly as one that remembers them all.
#[test]
fn cache_is_bounded_and_transparent() -> Result<()> {
    let _children = gotrace_tests::children::guard();
    use gotrace::symbols::Symbolizer;
    let exe = fixture(
        "inline",
        Toolchain::find(gotrace_tests::go::NEWEST)?,
        Variant::Stripped,
    )?;
    let bin = open(&exe)?;
    let pcs = sample_pcs(&bin, 1);
    let small = Symbolizer::new(bin.clone()).with_cache_size(16);
    let large = Symbolizer::new(bin.clone()).with_cache_size(pcs.len());
    for round in 0..2 {
        for pc in &pcs {
            assert_eq!(
                small.frames(*pc),
                large.frames(*pc),
                "round {round} pc {pc:#x}"
            );
            assert!(small.cached_pcs() <= 16);
        }
    }
    assert_eq!(large.cached_pcs(), pcs.len());
    Ok(())
}
