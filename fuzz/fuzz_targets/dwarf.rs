//! The DWARF symbolizer on arbitrary sections. Input: a sequence of `[u32 length][bytes]`
//! records, one per section in the order of `SECTIONS`; then PC lookups at addresses taken
//! from the input and from the sections' own address ranges.
#![no_main]

use std::collections::HashMap;

use gotrace::symbols::dwarf::DwarfSymbolizer;
use libfuzzer_sys::fuzz_target;

const SECTIONS: &[&str] = &[
    ".debug_abbrev",
    ".debug_info",
    ".debug_line",
    ".debug_str",
    ".debug_ranges",
    ".debug_rnglists",
    ".debug_aranges",
    ".debug_line_str",
    ".debug_addr",
    ".debug_str_offsets",
    ".debug_loc",
    ".debug_loclists",
];

fuzz_target!(|data: &[u8]| {
    let mut rest = data;
    let mut sections = HashMap::new();
    for name in SECTIONS {
        let Some(len) = rest.get(..4) else { break };
        let len = u32::from_le_bytes(len.try_into().unwrap()) as usize;
        rest = &rest[4..];
        let take = len.min(rest.len());
        sections.insert(name.to_string(), rest[..take].to_vec());
        rest = &rest[take..];
    }
    let Ok(sym) = DwarfSymbolizer::from_sections(sections) else {
        return;
    };
    let mut pcs: Vec<u64> = vec![0x401000, 0x401100, 0x1000, 0];
    pcs.extend(
        rest.chunks_exact(8)
            .take(32)
            .map(|c| u64::from_le_bytes(c.try_into().unwrap())),
    );
    for pc in pcs {
        let _ = sym.frames(pc);
    }
});
