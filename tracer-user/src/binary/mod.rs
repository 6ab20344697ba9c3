//! A Go executable on disk (or behind `/proc/PID/exe`): its ELF layout, build information and
//! function table — everything gotrace learns from the file before touching the process.

pub mod buildinfo;
pub mod elf;

use std::path::Path;

use object::{Object, ObjectSymbol};

pub use buildinfo::{BuildInfo, GoVersion};
pub use elf::ElfInfo;

use crate::{
    error::{Error, Result},
    symbols::pclntab::{Func, Pclntab},
    util::{read_u64, SharedBytes},
};

/// Offset of `text` in `runtime.moduledata`: pcHeader (8), six slices (6×24), findfunctab,
/// minpc, maxpc (3×8). Unchanged from Go 1.18 to 1.27.
const MODULEDATA_TEXT: usize = 8 + 6 * 24 + 3 * 8;

pub struct GoBinary {
    /// How to name the binary in messages (the process's exe path, or the file given).
    pub path: String,
    data: SharedBytes,
    pub elf: ElfInfo,
    pub buildinfo: BuildInfo,
    pclntab: Pclntab,
}

impl GoBinary {
    /// Maps and parses the binary at `open_path`; `display` names it in messages.
    pub fn open(open_path: &Path, display: &str) -> Result<Self> {
        let file = std::fs::File::open(open_path).map_err(|source| Error::Open {
            path: open_path.to_path_buf(),
            source,
        })?;
        // SAFETY: the map is read-only and private; a binary being replaced on disk keeps its
        // old inode alive for us (and for the process), so the bytes do not change under us.
        let map = unsafe { memmap2::Mmap::map(&file) }.map_err(|source| Error::Open {
            path: open_path.to_path_buf(),
            source,
        })?;
        Self::from_bytes(SharedBytes::new(map), display)
    }

    pub fn from_bytes(data: SharedBytes, display: &str) -> Result<Self> {
        let elf = ElfInfo::parse(&data, display).map_err(|e| match e {
            Error::BadBinary { reason, .. } if reason.starts_with("not a readable ELF") => {
                Error::NotGo {
                    path: display.to_string(),
                    reason,
                }
            }
            e => e,
        })?;
        let section = elf
            .section(".go.buildinfo")
            .and_then(|s| elf.section_data(&data, s));
        let buildinfo = BuildInfo::find(&data, section).map_err(|e| match e {
            buildinfo::BuildInfoError::Missing => Error::NotGo {
                path: display.to_string(),
                reason: "it has no Go build information".into(),
            },
            buildinfo::BuildInfoError::PointerFormat => Error::UnsupportedGoVersion {
                path: display.to_string(),
                version: "Go older than 1.18".into(),
                reason: "gotrace supports Go 1.19 and 1.21 to 1.27".into(),
            },
            e => Error::BadBinary {
                path: display.to_string(),
                reason: e.to_string(),
            },
        })?;
        let pclntab = Self::load_pclntab(&data, &elf).map_err(|e| Error::BadBinary {
            path: display.to_string(),
            reason: format!("{e} (truncated or corrupt binary?)"),
        })?;
        Ok(GoBinary {
            path: display.to_string(),
            data,
            elf,
            buildinfo,
            pclntab,
        })
    }

    fn load_pclntab(
        data: &SharedBytes,
        elf: &ElfInfo,
    ) -> Result<Pclntab, crate::symbols::pclntab::PclntabError> {
        use crate::symbols::pclntab::PclntabError;
        let section = [".gopclntab", ".data.rel.ro.gopclntab"]
            .iter()
            .find_map(|n| elf.section(n))
            .ok_or(PclntabError::Missing)?;
        let base = section.file_offset.ok_or(PclntabError::Missing)? as usize;
        let text_start = Self::text_start(data, elf, section.addr);
        Pclntab::parse(data.clone(), base, section.size as usize, text_start)
    }

    /// Go 1.26+ no longer stores the text start in the pclntab header: take `runtime.text` from
    /// the symbol table, else `moduledata.text` (found as the word after a pointer to the
    /// pclntab), else the start of `.text`.
    fn text_start(data: &[u8], elf: &ElfInfo, pclntab_addr: u64) -> Option<u64> {
        if let Some(a) = elf_symbol(data, "runtime.text") {
            return Some(a);
        }
        for name in [".noptrdata", ".data.rel.ro", ".data"] {
            let Some(bytes) = elf.section(name).and_then(|s| elf.section_data(data, s)) else {
                continue;
            };
            let found = (0..bytes.len().saturating_sub(MODULEDATA_TEXT + 8))
                .step_by(8)
                .find(|&o| read_u64(bytes, o) == Some(pclntab_addr));
            if let Some(o) = found {
                return read_u64(bytes, o + MODULEDATA_TEXT);
            }
        }
        elf.section(".text").map(|s| s.addr)
    }

    pub fn data(&self) -> &[u8] {
        &self.data
    }

    pub fn version(&self) -> GoVersion {
        self.buildinfo.version
    }

    pub fn pclntab(&self) -> &Pclntab {
        &self.pclntab
    }

    /// Built with `-s` and/or `-w`: no symbol table or no DWARF.
    pub fn stripped(&self) -> bool {
        !self.elf.has_symtab || !self.elf.has_dwarf
    }

    /// The machine code of a function, from the file.
    pub fn code(&self, func: &Func) -> Option<&[u8]> {
        self.elf
            .bytes_at(&self.data, func.entry, func.end.checked_sub(func.entry)?)
    }

    /// Link-time address of a symbol in `.symtab` (absent from stripped binaries).
    pub fn symbol(&self, name: &str) -> Option<u64> {
        elf_symbol(&self.data, name)
    }
}

fn elf_symbol(data: &[u8], name: &str) -> Option<u64> {
    let file = object::File::parse(data).ok()?;
    file.symbols()
        .find(|s| s.name() == Ok(name))
        .map(|s| s.address())
}
