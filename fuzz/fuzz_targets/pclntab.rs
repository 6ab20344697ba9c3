//! The pclntab reader on arbitrary bytes: header, function table, names, pc-value tables and
//! inline trees (the input doubles as the inline-tree area), for PCs taken from the input.
#![no_main]

use gotrace::{binary::GoVersion, symbols::pclntab::Pclntab, SharedBytes};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let shared = SharedBytes::new(data.to_vec());
    let Ok(tab) = Pclntab::parse(shared, 0, data.len(), Some(0x401000)) else {
        return;
    };
    let text = tab.text_start();
    for f in tab.funcs().take(64) {
        let _ = tab.line(f.index, f.entry);
        let _ = tab.start_line(f.index);
        for pc in [
            f.entry,
            f.entry + (f.end - f.entry) / 2,
            f.end.saturating_sub(1),
        ] {
            for frame in tab.logical_frames(pc, |off| data.get(off as usize..)) {
                let _ = gotrace::symbols::pclntab::func_name_for_print(
                    &frame.name,
                    GoVersion::new(1, 27, 0),
                );
            }
        }
    }
    for chunk in data.chunks(8).take(64) {
        let mut w = [0u8; 8];
        w[..chunk.len()].copy_from_slice(chunk);
        let pc = text.wrapping_add(u64::from_le_bytes(w) % 0x10_0000);
        let _ = tab.func_for_pc(pc);
        let _ = tab.logical_frames(pc, |off| data.get(off as usize..));
    }
    let _ = tab.find("main.main");
});
