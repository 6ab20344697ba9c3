//! `runtime.firstmoduledata`: the linker-built table that tells the runtime where its code,
//! types and function metadata are. gotrace reads it from the file to learn the text start
//! (which the pclntab header stopped recording in Go 1.26), the type section bounds and
//! `gofunc`, the base of every function's FUNCDATA (the inline trees among them).
//!
//! The structure is found by its name in `.symtab` or, in stripped binaries, as the place
//! whose first field (`pcHeader`) points at the pclntab and whose `ftab` slice describes the
//! pclntab's function table. In a position-independent executable built by Go's own linker the
//! pointer fields are zero in the file: `R_X86_64_RELATIVE` relocations fill them at load time,
//! and their addends are the link-time values. Field offsets change between releases (Go 1.21
//! added `covctrs`, 1.26 `epclntab`, 1.27 `typedesclen` and `itab*`): they come from the
//! binary's DWARF when it has some, otherwise from the generated per-release table.

use object::{
    read::elf::{ElfFile64, SectionHeader},
    LittleEndian, Object, ObjectSection, ObjectSymbol,
};

use super::{elf::ElfInfo, GoVersion};
use crate::{
    binary::{
        offsets::{Field, Offsets, OffsetsSource},
        pclntab::PcHeader,
    },
    util::read_u64,
};

/// The fields gotrace reads, all of which must be known to use the structure.
const FIELDS: &[Field] = &[
    Field::ModuledataPcHeader,
    Field::ModuledataFtab,
    Field::ModuledataText,
    Field::ModuledataEtext,
    Field::ModuledataTypes,
    Field::ModuledataEtypes,
    Field::ModuledataGofunc,
];

/// Sections the linker puts `runtime.firstmoduledata` in: `.go.module` from Go 1.26 on,
/// `.noptrdata` before (`.data.rel.ro` and `.data` are there for external linkers).
const SECTIONS: &[&str] = &[".go.module", ".noptrdata", ".data.rel.ro", ".data"];

#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ModuledataError {
    #[error(
        "no runtime.moduledata layout for Go {0}.{1} (the binary has no DWARF and the offsets table does not know this release)"
    )]
    NoOffsets(u32, u32),
    #[error("runtime.firstmoduledata not found (no pointer to the pclntab in the data sections)")]
    NotFound,
}

/// The link-time values of `runtime.firstmoduledata` that gotrace uses.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Moduledata {
    /// Link-time address of the structure itself.
    pub addr: u64,
    /// `[text, etext)`: the Go code.
    pub text: u64,
    pub etext: u64,
    /// `[types, etypes)`: the type descriptors (`_type`), what `typeOff`s are relative to.
    pub types: u64,
    pub etypes: u64,
    /// `go:func.*`: FUNCDATA offsets of `_func` records are relative to it.
    pub gofunc: u64,
    /// Where the field offsets came from.
    pub offsets_source: OffsetsSource,
}

/// Reads pointers as the loaded program would see them (before its load bias): the addend of
/// an `R_X86_64_RELATIVE` relocation at that address if there is one, else the file's bytes.
pub struct PointerReader<'d> {
    data: &'d [u8],
    elf: &'d ElfInfo,
    /// `(r_offset, addend)` of every RELATIVE relocation, sorted by offset.
    relative: Vec<(u64, u64)>,
}

impl<'d> PointerReader<'d> {
    pub fn new(data: &'d [u8], elf: &'d ElfInfo) -> Self {
        let mut relative = Vec::new();
        if elf.pie {
            if let Ok(file) = ElfFile64::<LittleEndian>::parse(data) {
                for section in file.sections() {
                    if section.elf_section_header().sh_type(file.endian()) == object::elf::SHT_RELA
                    {
                        if let Ok(bytes) = section.data() {
                            Self::read_rela(bytes, &mut relative);
                        }
                    }
                }
            }
        }
        relative.sort_unstable();
        PointerReader {
            data,
            elf,
            relative,
        }
    }

    /// Reads the `Elf64_Rela` entries of one relocation section.
    fn read_rela(bytes: &[u8], out: &mut Vec<(u64, u64)>) {
        for entry in bytes.chunks_exact(24) {
            let (Some(offset), Some(info), Some(addend)) =
                (read_u64(entry, 0), read_u64(entry, 8), read_u64(entry, 16))
            else {
                continue;
            };
            // ELF64_R_TYPE is the low 32 bits of r_info.
            if info & 0xffff_ffff == u64::from(object::elf::R_X86_64_RELATIVE) {
                out.push((offset, addend));
            }
        }
    }

    /// The pointer-sized word at link-time address `addr`.
    pub fn read(&self, addr: u64) -> Option<u64> {
        if let Ok(i) = self.relative.binary_search_by_key(&addr, |r| r.0) {
            return Some(self.relative[i].1);
        }
        read_u64(self.elf.bytes_at(self.data, addr, 8)?, 0)
    }

    /// Addresses of words that point at `target` (file words in `sections`, and relocations).
    fn pointers_to(&self, target: u64, sections: &[&str]) -> Vec<u64> {
        let mut found: Vec<u64> = self
            .relative
            .iter()
            .filter(|r| r.1 == target)
            .map(|r| r.0)
            .collect();
        for name in sections {
            let Some(section) = self.elf.section(name) else {
                continue;
            };
            let Some(bytes) = self.elf.section_data(self.data, section) else {
                continue;
            };
            // The structure is pointer-aligned; section starts are aligned further.
            found.extend(
                bytes
                    .chunks_exact(8)
                    .enumerate()
                    .filter(|(_, w)| read_u64(w, 0) == Some(target))
                    .map(|(i, _)| section.addr + 8 * i as u64),
            );
        }
        found.sort_unstable();
        found.dedup();
        found
    }
}

impl Moduledata {
    /// Finds and reads `runtime.firstmoduledata`. `pclntab_addr` is the link-time address of
    /// the pclntab whose header is `header`.
    pub fn locate(
        data: &[u8],
        elf: &ElfInfo,
        version: GoVersion,
        pclntab_addr: u64,
        header: &PcHeader,
    ) -> Result<Self, ModuledataError> {
        let offsets = layout(data, elf, version)?;
        let ptrs = PointerReader::new(data, elf);
        let by_symbol = symbol(data, "runtime.firstmoduledata");
        Self::read_at(&ptrs, &offsets, pclntab_addr, header, by_symbol)
            .or_else(|_| Self::scan_with(&ptrs, &offsets, pclntab_addr, header))
    }

    /// Finds the structure without the symbol table, with the given field offsets: what
    /// [`Moduledata::locate`] does for stripped binaries.
    pub fn scan(
        data: &[u8],
        elf: &ElfInfo,
        offsets: &Offsets,
        pclntab_addr: u64,
        header: &PcHeader,
    ) -> Result<Self, ModuledataError> {
        let ptrs = PointerReader::new(data, elf);
        Self::scan_with(&ptrs, offsets, pclntab_addr, header)
    }

    fn scan_with(
        ptrs: &PointerReader<'_>,
        offsets: &Offsets,
        pclntab_addr: u64,
        header: &PcHeader,
    ) -> Result<Self, ModuledataError> {
        let pc_header_off = offsets.get(Field::ModuledataPcHeader).unwrap_or_default();
        ptrs.pointers_to(pclntab_addr, SECTIONS)
            .into_iter()
            .filter_map(|p| p.checked_sub(pc_header_off))
            .find_map(|md| Self::read_at(ptrs, offsets, pclntab_addr, header, Some(md)).ok())
            .ok_or(ModuledataError::NotFound)
    }

    /// Reads the structure at `addr` if it is the one describing this pclntab: its `pcHeader`
    /// points at it and its `ftab` slice is the pclntab's function table.
    fn read_at(
        ptrs: &PointerReader<'_>,
        offsets: &Offsets,
        pclntab_addr: u64,
        header: &PcHeader,
        addr: Option<u64>,
    ) -> Result<Self, ModuledataError> {
        let addr = addr.ok_or(ModuledataError::NotFound)?;
        let field = |f: Field| {
            offsets
                .get(f)
                .and_then(|o| addr.checked_add(o))
                .and_then(|a| ptrs.read(a))
                .ok_or(ModuledataError::NotFound)
        };
        let ftab_len = offsets
            .get(Field::ModuledataFtab)
            .and_then(|o| addr.checked_add(o + 8))
            .and_then(|a| ptrs.read(a));
        if field(Field::ModuledataPcHeader)? != pclntab_addr
            || field(Field::ModuledataFtab)? != pclntab_addr + header.pcln as u64
            || ftab_len != Some(header.nfunc as u64 + 1)
        {
            return Err(ModuledataError::NotFound);
        }
        Ok(Moduledata {
            addr,
            text: field(Field::ModuledataText)?,
            etext: field(Field::ModuledataEtext)?,
            types: field(Field::ModuledataTypes)?,
            etypes: field(Field::ModuledataEtypes)?,
            gofunc: field(Field::ModuledataGofunc)?,
            offsets_source: offsets.source.clone(),
        })
    }
}

/// The field offsets: DWARF first, the generated table otherwise.
pub fn layout(data: &[u8], elf: &ElfInfo, version: GoVersion) -> Result<Offsets, ModuledataError> {
    let complete = |o: &Offsets| FIELDS.iter().all(|f| o.get(*f).is_some());
    elf.has_dwarf
        .then(|| Offsets::from_dwarf_fields(data, FIELDS))
        .flatten()
        .filter(complete)
        .or_else(|| Offsets::from_table(version).filter(complete))
        .ok_or(ModuledataError::NoOffsets(version.major, version.minor))
}

fn symbol(data: &[u8], name: &str) -> Option<u64> {
    let file = object::File::parse(data).ok()?;
    file.symbols()
        .find(|s| s.name() == Ok(name))
        .map(|s| s.address())
}
