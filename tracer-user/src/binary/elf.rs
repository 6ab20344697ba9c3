//! The parts of an ELF executable gotrace needs, extracted once: the section table (to turn
//! virtual addresses into file offsets for uprobes and to read static data) and whether the
//! symbol table and DWARF survived stripping.

use object::{Object, ObjectKind, ObjectSection, ObjectSegment};

use crate::error::{Error, Result};

#[derive(Clone, Debug)]
pub struct Section {
    pub name: String,
    /// Virtual address as linked (before any PIE load bias).
    pub addr: u64,
    pub size: u64,
    /// Offset of the section's bytes in the file; `None` for NOBITS (.bss).
    pub file_offset: Option<u64>,
}

#[derive(Clone, Debug)]
pub struct Segment {
    pub addr: u64,
    pub size: u64,
    pub file_offset: u64,
    pub file_size: u64,
}

#[derive(Debug)]
pub struct ElfInfo {
    pub sections: Vec<Section>,
    pub segments: Vec<Segment>,
    /// Position-independent executable: runtime addresses are link addresses plus a load bias.
    pub pie: bool,
    pub has_symtab: bool,
    pub has_dwarf: bool,
}

impl ElfInfo {
    pub fn parse(data: &[u8], path: &str) -> Result<Self> {
        if !data.starts_with(b"\x7fELF") {
            return Err(Error::NotGo {
                path: path.to_string(),
                reason: "not an ELF executable".into(),
            });
        }
        let file = object::File::parse(data).map_err(|e| Error::BadBinary {
            path: path.to_string(),
            reason: format!("truncated or corrupt ELF file ({e})"),
        })?;
        if file.architecture() != object::Architecture::X86_64 {
            return Err(Error::BadBinary {
                path: path.to_string(),
                reason: format!(
                    "{:?} binaries are not supported (gotrace traces x86_64 Go programs)",
                    file.architecture()
                ),
            });
        }
        let sections = file
            .sections()
            .map(|s| Section {
                name: s.name().unwrap_or_default().to_string(),
                addr: s.address(),
                size: s.size(),
                file_offset: match s.kind() {
                    object::SectionKind::UninitializedData
                    | object::SectionKind::UninitializedTls => None,
                    _ => s.file_range().map(|(o, _)| o),
                },
            })
            .collect::<Vec<_>>();
        let segments = file
            .segments()
            .map(|s| {
                let (file_offset, file_size) = s.file_range();
                Segment {
                    addr: s.address(),
                    size: s.size(),
                    file_offset,
                    file_size,
                }
            })
            .collect();
        let has_symtab = file.symbols().next().is_some();
        let has_dwarf = sections
            .iter()
            .any(|s| s.name == ".debug_info" || s.name == ".zdebug_info");
        Ok(ElfInfo {
            sections,
            segments,
            pie: file.kind() == ObjectKind::Dynamic,
            has_symtab,
            has_dwarf,
        })
    }

    pub fn section(&self, name: &str) -> Option<&Section> {
        self.sections.iter().find(|s| s.name == name)
    }

    /// File offset of the byte at link-time virtual address `addr`, as uprobes want it.
    pub fn file_offset(&self, addr: u64) -> Option<u64> {
        self.segments
            .iter()
            .find(|s| addr >= s.addr && addr - s.addr < s.file_size)
            .map(|s| s.file_offset + (addr - s.addr))
    }

    /// The file bytes backing `[addr, addr+len)`, if they are all in the file.
    pub fn bytes_at<'d>(&self, data: &'d [u8], addr: u64, len: u64) -> Option<&'d [u8]> {
        let off = self.file_offset(addr)?;
        let seg = self
            .segments
            .iter()
            .find(|s| addr >= s.addr && addr - s.addr < s.file_size)?;
        if addr + len > seg.addr + seg.file_size {
            return None;
        }
        data.get(off as usize..(off + len) as usize)
    }

    /// The bytes of a section (empty for NOBITS).
    pub fn section_data<'d>(&self, data: &'d [u8], section: &Section) -> Option<&'d [u8]> {
        let off = section.file_offset? as usize;
        data.get(off..off.checked_add(section.size as usize)?)
    }
}
