//! Runtime variables found by decoding code (what stripped binaries need) are exactly where the
//! symbol table says they are, for every release, PIE or not.
//!
//! The exact comparison strips a copy of each unstripped build with `objcopy --strip-all`, which
//! removes the symbol table and DWARF without moving anything, then decodes the copy. (Builds
//! with `-ldflags=-s -w` record those flags in their build info, which shifts data by a few
//! bytes, so their addresses cannot be compared with another build's symbol table; they are
//! checked for an answer here, and at run time by the attach tests.)

use std::process::Command;

use anyhow::{ensure, Result};
use gotrace::{
    binary::GoBinary,
    goruntime::{
        datasyms::{self, DataSymbol},
        Offsets,
    },
};
use gotrace_tests::{children, fixtures, go::MATRIX, Toolchain, Variant};

fn open(path: &std::path::Path) -> Result<GoBinary> {
    Ok(GoBinary::open(path, &path.display().to_string())?)
}

fn strip_copy(exe: &std::path::Path) -> Result<std::path::PathBuf> {
    let out = exe.with_extension("objcopy-stripped");
    let status = children::status(
        Command::new("objcopy")
            .arg("--strip-all")
            .arg(exe)
            .arg(&out),
    )?;
    ensure!(status.success(), "objcopy --strip-all {}", exe.display());
    Ok(out)
}

fn check(tc: &Toolchain, variant: Variant) -> Result<usize> {
    let exe = fixtures::build("offsets", *tc, variant)?;
    let full = open(&exe)?;
    let bare = open(&strip_copy(&exe)?)?;
    ensure!(bare.symbol("runtime.allgs").is_none() && !bare.elf.has_dwarf);
    let mut checked = 0;
    for sym in DataSymbol::ALL {
        let expected = full.symbol(sym.name());
        ensure!(
            expected.is_some(),
            "{} missing from Go {} {variant:?}",
            sym.name(),
            tc.release
        );
        for (label, binary) in [("unstripped", &full), ("objcopy-stripped", &bare)] {
            let offsets = Offsets::from_table(binary.version());
            let found =
                datasyms::locate_in_code(binary, offsets.as_ref(), *sym).map(|l| l.address());
            assert_eq!(
                found,
                expected,
                "{} in Go {} {variant:?} {label}",
                sym.name(),
                tc.release
            );
            checked += 1;
        }
    }
    Ok(checked)
}

#[test]
fn decoded_addresses_match_the_symbol_table() -> Result<()> {
    let _children = gotrace_tests::children::guard();
    let mut checked = 0;
    for tc in MATRIX {
        for variant in [Variant::Default, Variant::Pie] {
            checked += check(tc, variant)?;
        }
    }
    assert_eq!(checked, MATRIX.len() * 2 * 2 * DataSymbol::ALL.len());
    Ok(())
}

#[test]
fn linker_stripped_builds_have_every_variable() -> Result<()> {
    let _children = gotrace_tests::children::guard();
    for tc in MATRIX {
        for variant in [Variant::Stripped, Variant::StrippedPie] {
            let exe = fixtures::build("offsets", *tc, variant)?;
            let binary = open(&exe)?;
            for sym in DataSymbol::ALL {
                assert!(
                    datasyms::locate(
                        &binary,
                        Offsets::from_table(binary.version()).as_ref(),
                        *sym
                    )
                    .is_some(),
                    "{} not found in Go {} {variant:?}",
                    sym.name(),
                    tc.release
                );
            }
        }
    }
    Ok(())
}
