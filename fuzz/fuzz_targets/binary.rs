//! A whole (corrupted) executable: ELF, build info, pclntab, moduledata, then symbolization
//! of PCs spread over its functions, from the pclntab and, when present, DWARF.
#![no_main]

use gotrace::{binary::GoBinary, symbols::Symbolizer, SharedBytes};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(bin) = GoBinary::from_bytes(SharedBytes::new(data.to_vec()), "fuzz") else {
        return;
    };
    let bin = std::sync::Arc::new(bin);
    let _ = bin.moduledata();
    let pcs: Vec<u64> = bin
        .pclntab()
        .funcs()
        .step_by(97)
        .take(64)
        .flat_map(|f| [f.entry, f.entry + (f.end - f.entry) / 2])
        .collect();
    let sym = Symbolizer::new(bin.clone());
    for pc in &pcs {
        let _ = sym.frames(*pc);
    }
    if let Ok(dwarf) = Symbolizer::with_dwarf(bin.clone()) {
        for pc in &pcs {
            let _ = dwarf.frames(*pc);
        }
    }
});
