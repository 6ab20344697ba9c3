//! A Go executable on disk (or behind `/proc/PID/exe`): its ELF layout, build information and
//! function table — everything gotrace learns from the file before touching the process.

pub mod buildinfo;
pub mod elf;
pub mod moduledata;
pub mod offsets;
mod offsets_table;
pub mod pclntab;

use std::{
    os::unix::fs::{FileTypeExt, OpenOptionsExt},
    path::Path,
};

use object::{Object, ObjectSymbol};

pub use buildinfo::{BuildInfo, GoVersion};
pub use elf::ElfInfo;
pub use moduledata::{Moduledata, ModuledataError};

use pclntab::{Func, PcHeader, Pclntab, PclntabError};

use crate::{
    error::{Error, Result},
    util::SharedBytes,
};

pub struct GoBinary {
    /// How to name the binary in messages (the process's exe path, or the file given).
    pub path: String,
    data: SharedBytes,
    pub elf: ElfInfo,
    pub buildinfo: BuildInfo,
    pclntab: Pclntab,
    moduledata: Result<Moduledata, ModuledataError>,
}

impl GoBinary {
    /// Maps and parses the binary at `open_path`; `display` names it in messages.
    pub fn open(open_path: &Path, display: &str) -> Result<Self> {
        let open_err = |source| Error::Open {
            path: open_path.to_path_buf(),
            source,
        };
        // Non-blocking, so that opening a FIFO does not wait for a writer; anything but a
        // regular file is refused before it is mapped.
        let file = std::fs::OpenOptions::new()
            .read(true)
            .custom_flags(rustix::fs::OFlags::NONBLOCK.bits() as i32)
            .open(open_path)
            .map_err(open_err)?;
        let kind = file.metadata().map_err(open_err)?.file_type();
        let not_regular = if kind.is_dir() {
            Some("a directory")
        } else if kind.is_fifo() {
            Some("a FIFO")
        } else if kind.is_char_device() || kind.is_block_device() {
            Some("a device")
        } else if kind.is_socket() {
            Some("a socket")
        } else {
            None
        };
        if let Some(kind) = not_regular {
            return Err(Error::NotAFile {
                path: open_path.to_path_buf(),
                kind,
            });
        }
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
        // Loadable segments come from the program headers at the start of the file: a file
        // shorter than they say was cut (section headers, at the end, may be gone already).
        if let Some(end) = elf
            .segments
            .iter()
            .map(|s| s.file_offset + s.file_size)
            .max()
        {
            if end > data.len() as u64 {
                return Err(Error::BadBinary {
                    path: display.to_string(),
                    reason: format!(
                        "truncated or corrupt file: {} bytes, but its program headers map {end} (a partial copy?)",
                        data.len()
                    ),
                });
            }
        }
        let header = elf.section(".go.buildinfo");
        let section = header.and_then(|s| elf.section_data(&data, s));
        let corrupt = |reason: String| Error::BadBinary {
            path: display.to_string(),
            reason,
        };
        if header.is_some() && section.is_none() {
            return Err(corrupt(
                "truncated or corrupt file: its .go.buildinfo section lies past its end".into(),
            ));
        }
        let buildinfo = BuildInfo::find(&data, section).map_err(|e| match e {
            // The section is there but its magic is not: damage, not a non-Go program.
            buildinfo::BuildInfoError::Missing if section.is_some() => corrupt(format!(
                "{e} in its .go.buildinfo section (corrupt binary?)"
            )),
            buildinfo::BuildInfoError::Missing => Error::NotGo {
                path: display.to_string(),
                reason: "it has no Go build information".into(),
            },
            // Pre-1.18 build info comes with a pre-1.18 pclntab; a 1.18+ pclntab means the
            // build info's flags byte is damaged.
            buildinfo::BuildInfoError::PointerFormat if Self::has_modern_pclntab(&data, &elf) => {
                corrupt(format!(
                    "{e}, but its pclntab is Go 1.18+ (corrupt binary?)"
                ))
            }
            buildinfo::BuildInfoError::PointerFormat => Error::UnsupportedGoVersion {
                path: display.to_string(),
                version: "Go older than 1.18".into(),
                reason: "gotrace supports Go 1.19 and 1.21 to 1.27".into(),
            },
            e => corrupt(e.to_string()),
        })?;
        let (pclntab, moduledata) =
            Self::load_pclntab(&data, &elf, buildinfo.version).map_err(|e| Error::BadBinary {
                path: display.to_string(),
                reason: format!("{e} (truncated or corrupt binary?)"),
            })?;
        Ok(GoBinary {
            path: display.to_string(),
            data,
            elf,
            buildinfo,
            pclntab,
            moduledata,
        })
    }

    fn has_modern_pclntab(data: &[u8], elf: &ElfInfo) -> bool {
        [".gopclntab", ".data.rel.ro.gopclntab"]
            .iter()
            .find_map(|n| elf.section(n))
            .and_then(|s| elf.section_data(data, s))
            .is_some_and(|b| PcHeader::parse(b).is_ok())
    }

    fn load_pclntab(
        data: &SharedBytes,
        elf: &ElfInfo,
        version: GoVersion,
    ) -> Result<(Pclntab, Result<Moduledata, ModuledataError>), PclntabError> {
        let (addr, bytes) = Self::find_pclntab(data, elf, version)?;
        let base = bytes.as_ptr() as usize - data.as_ptr() as usize;
        let header = PcHeader::parse(bytes)?;
        let moduledata = Moduledata::locate(data, elf, version, addr, &header);
        // Go 1.26+ no longer stores the text start in the pclntab header: take
        // `moduledata.text`, else `runtime.text`, else the start of `.text` (where Go's own
        // linker puts `runtime.text`).
        let text_start = match header.text_start {
            0 => moduledata
                .as_ref()
                .ok()
                .map(|m| m.text)
                .or_else(|| elf_symbol(data, "runtime.text"))
                .or_else(|| elf.section(".text").map(|s| s.addr)),
            t => Some(t),
        };
        let pclntab = Pclntab::parse(data.clone(), base, bytes.len(), text_start)?;
        Ok((pclntab, moduledata))
    }

    /// The pclntab's link-time address and bytes. Go's linker gives it a section of its own
    /// (`.gopclntab`, `.data.rel.ro.gopclntab` in its PIEs); an external linker (cgo builds
    /// linked by `ld`) merges it into `.data.rel.ro` or `.rodata`, and `strip` then removes the
    /// `runtime.pclntab` symbol that marked it. There the header is found by its magic and
    /// layout, and kept if a module data describes it (or, with no module data layout for this
    /// release, if it is the only one). The bytes run to the end of the section holding it.
    fn find_pclntab<'d>(
        data: &'d [u8],
        elf: &ElfInfo,
        version: GoVersion,
    ) -> Result<(u64, &'d [u8]), PclntabError> {
        if let Some(section) = [".gopclntab", ".data.rel.ro.gopclntab"]
            .iter()
            .find_map(|n| elf.section(n))
        {
            let bytes = elf
                .section_data(data, section)
                .ok_or(PclntabError::Corrupt(
                    "section extends past the end of the file",
                ))?;
            return Ok((section.addr, bytes));
        }
        let mut candidates = Vec::new();
        for name in [".data.rel.ro", ".rodata", ".noptrdata"] {
            let Some(section) = elf.section(name) else {
                continue;
            };
            let Some(bytes) = elf.section_data(data, section) else {
                continue;
            };
            // magic, two zero bytes, instruction quantum 1 (amd64), pointer size 8.
            for o in (0..bytes.len().saturating_sub(8)).step_by(8) {
                let head = &bytes[o..o + 8];
                let magic = u32::from_le_bytes([head[0], head[1], head[2], head[3]]);
                if head[4..] == [0, 0, 1, 8]
                    && PcHeader::is_magic(magic)
                    && PcHeader::parse(&bytes[o..]).is_ok()
                {
                    candidates.push((section.addr + o as u64, &bytes[o..]));
                }
            }
        }
        let described = candidates.iter().find(|(addr, bytes)| {
            PcHeader::parse(bytes)
                .is_ok_and(|h| Moduledata::locate(data, elf, version, *addr, &h).is_ok())
        });
        match (described, &candidates[..]) {
            (Some(c), _) => Ok(*c),
            (None, [only]) => Ok(*only),
            _ => Err(PclntabError::Missing),
        }
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

    /// `runtime.firstmoduledata`, or why it could not be read.
    pub fn moduledata(&self) -> Result<&Moduledata, &ModuledataError> {
        self.moduledata.as_ref()
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

    /// The `.symtab` data symbol (a global variable) that holds a link-time address.
    pub fn symbol_at(&self, addr: u64) -> Option<String> {
        let file = object::File::parse(&*self.data).ok()?;
        file.symbols()
            .filter(|s| s.kind() == object::SymbolKind::Data)
            .find(|s| (s.address()..s.address() + s.size().max(1)).contains(&addr))
            .and_then(|s| s.name().ok().map(str::to_string))
    }
}

fn elf_symbol(data: &[u8], name: &str) -> Option<u64> {
    let file = object::File::parse(data).ok()?;
    file.symbols()
        .find(|s| s.name() == Ok(name))
        .map(|s| s.address())
}
