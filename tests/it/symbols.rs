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
