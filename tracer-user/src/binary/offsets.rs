//! Struct offsets of the Go runtime that the probes and memory readers depend on.
//!
//! They come from the target's own DWARF when it has some. Stripped binaries use the table in
//! `offsets_table.rs`, which `cargo xtask gen-offsets` generates by building a program with each
//! supported toolchain and running [`Offsets::from_dwarf`] on it: never typed by hand.

use std::collections::HashMap;

use gimli::{AttributeValue, EndianSlice, LittleEndian};
use object::{Object, ObjectSection};
use serde::{Deserialize, Serialize};

use super::offsets_table;
use crate::binary::GoVersion;

macro_rules! fields {
    ($($variant:ident => [$(($ty:literal, $field:literal)),+ $(,)?]),+ $(,)?) => {
        /// A runtime struct field gotrace reads. Each lists the DWARF (type, member) names it
        /// has had across Go versions.
        #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
        pub enum Field { $($variant),+ }

        impl Field {
            pub const ALL: &'static [Field] = &[$(Field::$variant),+];

            pub fn dwarf_names(self) -> &'static [(&'static str, &'static str)] {
                match self { $(Field::$variant => &[$(($ty, $field)),+]),+ }
            }
        }
    };
}

fields! {
    GGoid => [("runtime.g", "goid")],
    GM => [("runtime.g", "m")],
    GAtomicstatus => [("runtime.g", "atomicstatus")],
    GWaitsince => [("runtime.g", "waitsince")],
    GWaitreason => [("runtime.g", "waitreason")],
    GGopc => [("runtime.g", "gopc")],
    GStartpc => [("runtime.g", "startpc")],
    GParentGoid => [("runtime.g", "parentGoid")],
    GSched => [("runtime.g", "sched")],
    GobufSp => [("runtime.gobuf", "sp")],
    GobufPc => [("runtime.gobuf", "pc")],
    GobufBp => [("runtime.gobuf", "bp")],
    MCurg => [("runtime.m", "curg")],
    HchanQcount => [("runtime.hchan", "qcount")],
    HchanDataqsiz => [("runtime.hchan", "dataqsiz")],
    HchanElemsize => [("runtime.hchan", "elemsize")],
    HchanClosed => [("runtime.hchan", "closed")],
    HchanRecvx => [("runtime.hchan", "recvx")],
    HchanRecvq => [("runtime.hchan", "recvq")],
    HchanSendq => [("runtime.hchan", "sendq")],
    WaitqFirst => [("runtime.waitq", "first")],
    GWaiting => [("runtime.g", "waiting")],
    SudogG => [("runtime.sudog", "g")],
    SudogNext => [("runtime.sudog", "next")],
    SudogWaitlink => [("runtime.sudog", "waitlink")],
    SudogC => [("runtime.sudog", "c")],
    TypeSize => [("internal/abi.Type", "Size_"), ("runtime._type", "size")],
    TypeStr => [("internal/abi.Type", "Str"), ("runtime._type", "str")],
    TypeKind => [("internal/abi.Type", "Kind_"), ("runtime._type", "kind")],
    TypeTflag => [("internal/abi.Type", "TFlag"), ("runtime._type", "tflag")],
    GStack => [("runtime.g", "stack")],
    SchedGoidgen => [("runtime.schedt", "goidgen")],
    FinblockNext => [("runtime.finblock", "next"), ("runtime.finBlock", "next")],
    FinblockCnt => [("runtime.finblock", "cnt"), ("runtime.finBlock", "cnt")],
    SchedGFree => [("runtime.schedt", "gFree")],
    PGoidcache => [("runtime.p", "goidcache")],
    PGoidcacheend => [("runtime.p", "goidcacheend")],
    StackHi => [("runtime.stack", "hi")],
    MstatsNumgc => [("runtime.mstats", "numgc")],
    MstatsNumforcedgc => [("runtime.mstats", "numforcedgc")],
    MstatsLastGcUnix => [("runtime.mstats", "last_gc_unix")],
    MstatsPauseTotalNs => [("runtime.mstats", "pause_total_ns")],
    GcHeapGoal => [("runtime.gcControllerState", "gcPercentHeapGoal")],
    GcHeapLive => [("runtime.gcControllerState", "heapLive")],
    GcHeapMarked => [("runtime.gcControllerState", "heapMarked")],
    GcHeapInUse => [("runtime.gcControllerState", "heapInUse")],
    GcTotalAlloc => [("runtime.gcControllerState", "totalAlloc")],
    GcTotalFree => [("runtime.gcControllerState", "totalFree")],
    MheapAllspans => [("runtime.mheap", "allspans")],
    MspanStartAddr => [("runtime.mspan", "startAddr")],
    MspanSpecials => [("runtime.mspan", "specials")],
    SpecialNext => [("runtime.special", "next")],
    SpecialOffset => [("runtime.special", "offset")],
    SpecialKind => [("runtime.special", "kind")],
    SpecialprofileB => [("runtime.specialprofile", "b")],
    ModuledataTypes => [("runtime.moduledata", "types")],
    ModuledataText => [("runtime.moduledata", "text")],
    ModuledataEtext => [("runtime.moduledata", "etext")],
    ModuledataPcHeader => [("runtime.moduledata", "pcHeader")],
    ModuledataFtab => [("runtime.moduledata", "ftab")],
    ModuledataEtypes => [("runtime.moduledata", "etypes")],
    ModuledataGofunc => [("runtime.moduledata", "gofunc")],
    MheapArenas => [("runtime.mheap", "arenas")],
    HeapArenaSpans => [("runtime.heapArena", "spans")],
    MspanNpages => [("runtime.mspan", "npages")],
    MspanElemsize => [("runtime.mspan", "elemsize")],
    MspanState => [("runtime.mspan", "state")],
    PoolLocal => [("sync.Pool", "local")],
    PoolLocalSize => [("sync.Pool", "localSize")],
    PoolVictim => [("sync.Pool", "victim")],
    PoolVictimSize => [("sync.Pool", "victimSize")],
    PoolNew => [("sync.Pool", "New")],
    PoolLocalSizeof => [("sync.poolLocal", "<sizeof>")],
    PoolLocalInternal => [("sync.poolLocal", "poolLocalInternal")],
    PoolLocalPrivate => [("sync.poolLocalInternal", "private")],
    PoolLocalShared => [("sync.poolLocalInternal", "shared")],
    PoolChainHead => [("sync.poolChain", "head")],
    PoolChainEltDequeue => [("sync.poolChainElt", "poolDequeue")],
    PoolChainEltPrev => [("sync.poolChainElt", "prev")],
    PoolDequeueHeadTail => [("sync.poolDequeue", "headTail")],
    PoolDequeueVals => [("sync.poolDequeue", "vals")],
}

/// In a field's DWARF names, stands for the struct's size (`DW_AT_byte_size`) instead of a
/// member: for arrays of the struct (`[P]poolLocal`).
const SIZEOF: &str = "<sizeof>";

/// One row of the generated table: Go major, minor, and the offsets of that release.
pub type ReleaseOffsets = (u32, u32, &'static [(Field, u64)]);

/// Where a set of offsets came from, as shown by `gotrace inspect` and report.json.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "kind")]
pub enum OffsetsSource {
    /// Read from the binary's own DWARF.
    Dwarf,
    /// The generated table for this Go release.
    Table { release: String },
    /// A release gotrace has no table for: the table of the nearest older release, used only
    /// for the fields checked against the running process (see `goruntime::verify`).
    Nearest {
        release: String,
        for_release: String,
        verified: Vec<Field>,
    },
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Offsets {
    values: HashMap<Field, u64>,
    pub source: OffsetsSource,
}

impl Offsets {
    /// The offset of `field`, if known (for a nearest-release table: only once verified).
    pub fn get(&self, field: Field) -> Option<u64> {
        match &self.source {
            OffsetsSource::Nearest { verified, .. } if !verified.contains(&field) => None,
            _ => self.values.get(&field).copied(),
        }
    }

    /// The offset of `field` whether verified or not: for the verification itself.
    pub fn candidate(&self, field: Field) -> Option<u64> {
        self.values.get(&field).copied()
    }

    /// For a release newer than any in the table (and without DWARF): the newest older
    /// release's offsets, every field unverified.
    pub fn nearest_below(version: GoVersion) -> Option<Self> {
        let (major, minor) = version.minor_release();
        let (ma, mi, entries) = offsets_table::TABLE
            .iter()
            .filter(|(ma, mi, _)| (*ma, *mi) < (major, minor))
            .max_by_key(|(ma, mi, _)| (*ma, *mi))?;
        Some(Offsets {
            values: entries.iter().map(|(f, v)| (*f, *v)).collect(),
            source: OffsetsSource::Nearest {
                release: format!("{ma}.{mi}"),
                for_release: format!("{major}.{minor}"),
                verified: Vec::new(),
            },
        })
    }

    /// Marks fields as checked against the running process (nearest-release tables only).
    pub fn mark_verified(&mut self, fields: &[Field]) {
        if let OffsetsSource::Nearest { verified, .. } = &mut self.source {
            verified.extend_from_slice(fields);
        }
    }

    pub fn iter(&self) -> impl Iterator<Item = (Field, u64)> + '_ {
        Field::ALL
            .iter()
            .filter_map(|f| self.get(*f).map(|v| (*f, v)))
    }

    /// From the generated table: exact Go minor release only (layouts change between minors).
    pub fn from_table(version: GoVersion) -> Option<Self> {
        let (major, minor) = version.minor_release();
        let (_, _, entries) = offsets_table::TABLE
            .iter()
            .find(|(ma, mi, _)| (*ma, *mi) == (major, minor))?;
        Some(Offsets {
            values: entries.iter().map(|(f, v)| (*f, *v)).collect(),
            source: OffsetsSource::Table {
                release: format!("{major}.{minor}"),
            },
        })
    }

    /// The `funcID` the runtime gives autogenerated wrappers in this Go minor release, from the
    /// generated table. The runtime hides inlined wrapper frames from stacks by this value.
    pub fn func_id_wrapper(version: GoVersion) -> Option<u8> {
        let (major, minor) = version.minor_release();
        offsets_table::FUNC_ID_WRAPPER
            .iter()
            .find(|(ma, mi, _)| (*ma, *mi) == (major, minor))
            .map(|(_, _, id)| *id)
    }

    /// Go releases of the generated table, e.g. "1.19, 1.21, ..., 1.27".
    pub fn known_releases() -> String {
        let v: Vec<String> = offsets_table::TABLE
            .iter()
            .map(|(ma, mi, _)| format!("{ma}.{mi}"))
            .collect();
        if v.is_empty() {
            "none".into()
        } else {
            v.join(", ")
        }
    }

    /// Reads every [`Field`] the binary's DWARF describes. `None` when it has no DWARF.
    pub fn from_dwarf(data: &[u8]) -> Option<Self> {
        Self::from_dwarf_fields(data, Field::ALL)
    }

    /// Reads `fields` from the binary's DWARF, stopping as soon as all of them are found.
    /// `None` when it has no DWARF or describes none of them.
    pub fn from_dwarf_fields(data: &[u8], fields: &[Field]) -> Option<Self> {
        let file = object::File::parse(data).ok()?;
        let sections = load_dwarf_sections(&file)?;
        let dwarf = gimli::Dwarf::load(|id| -> Result<_, gimli::Error> {
            Ok(EndianSlice::new(
                sections.get(id.name()).map(Vec::as_slice).unwrap_or(&[]),
                LittleEndian,
            ))
        })
        .ok()?;

        let mut wanted: HashMap<&str, Vec<(&str, Field)>> = HashMap::new();
        for f in fields {
            for (ty, member) in f.dwarf_names() {
                wanted.entry(ty).or_default().push((member, *f));
            }
        }
        let mut values = HashMap::new();
        let mut units = dwarf.units();
        while let Ok(Some(header)) = units.next() {
            if values.len() == fields.len() {
                break;
            }
            let Ok(unit) = dwarf.unit(header) else {
                continue;
            };
            let mut entries = unit.entries();
            // Members of the struct currently being walked, if it is one we want.
            let mut current: Option<(isize, &Vec<(&str, Field)>)> = None;
            while let Ok(Some(entry)) = entries.next_dfs() {
                let depth = entry.depth();
                if let Some((d, _)) = current {
                    if depth <= d {
                        current = None;
                    }
                }
                match entry.tag() {
                    gimli::DW_TAG_structure_type => {
                        let name = attr_string(&dwarf, &unit, entry, gimli::DW_AT_name);
                        current = name
                            .and_then(|n| wanted.get(n.as_str()))
                            .map(|members| (depth, members));
                        let size = entry
                            .attr_value(gimli::DW_AT_byte_size)
                            .and_then(|v| v.udata_value());
                        if let (Some((_, members)), Some(size)) = (current, size) {
                            for (_, field) in members.iter().filter(|(m, _)| *m == SIZEOF) {
                                values.entry(*field).or_insert(size);
                            }
                        }
                    }
                    gimli::DW_TAG_member => {
                        let Some((_, members)) = current else {
                            continue;
                        };
                        let Some(name) = attr_string(&dwarf, &unit, entry, gimli::DW_AT_name)
                        else {
                            continue;
                        };
                        let Some((_, field)) = members.iter().find(|(m, _)| *m == name) else {
                            continue;
                        };
                        if let Some(off) = entry
                            .attr_value(gimli::DW_AT_data_member_location)
                            .and_then(|v| member_offset(&v))
                        {
                            values.entry(*field).or_insert(off);
                        }
                    }
                    _ => {}
                }
            }
        }
        (!values.is_empty()).then_some(Offsets {
            values,
            source: OffsetsSource::Dwarf,
        })
    }
}

/// The DWARF sections, decompressed (Go compresses them: `.zdebug_*` before 1.18? and
/// SHF_COMPRESSED after). Every `.debug_*` section is loaded: parsing a unit also reads its
/// line program header, address and range tables.
pub(crate) fn load_dwarf_sections(file: &object::File<'_>) -> Option<HashMap<String, Vec<u8>>> {
    let mut out = HashMap::new();
    for s in file.sections() {
        let Ok(name) = s.name() else { continue };
        let canonical = match name.strip_prefix(".zdebug_") {
            Some(rest) => format!(".debug_{rest}"),
            None if name.starts_with(".debug_") => name.to_string(),
            None => continue,
        };
        // The uncompressed size is the file's claim, allocated before decompressing: zlib
        // (what Go writes) cannot expand data more than ~1032 times, so a larger claim is
        // corruption; other formats (zstd from external linkers) are held to 4 GiB.
        let Ok(compressed) = s.compressed_data() else {
            continue;
        };
        let plausible = match compressed.format {
            object::CompressionFormat::None => u64::MAX,
            object::CompressionFormat::Zlib => (compressed.data.len() as u64)
                .saturating_mul(1032)
                .saturating_add(4096),
            _ => 1 << 32,
        };
        if compressed.uncompressed_size > plausible {
            continue;
        }
        if let Ok(data) = compressed.decompress() {
            out.insert(canonical, data.into_owned());
        }
    }
    out.contains_key(".debug_info").then_some(out)
}

fn attr_string(
    dwarf: &gimli::Dwarf<EndianSlice<'_, LittleEndian>>,
    unit: &gimli::Unit<EndianSlice<'_, LittleEndian>>,
    entry: &gimli::DebuggingInformationEntry<EndianSlice<'_, LittleEndian>>,
    at: gimli::DwAt,
) -> Option<String> {
    let value = entry.attr_value(at)?;
    let s = dwarf.attr_string(unit, value).ok()?;
    Some(s.to_string_lossy().into_owned())
}

/// `DW_AT_data_member_location`: a constant (Go 1.x emits udata), or a `DW_OP_plus_uconst`
/// expression in older producers.
fn member_offset(value: &AttributeValue<EndianSlice<'_, LittleEndian>>) -> Option<u64> {
    if let Some(v) = value.udata_value() {
        return Some(v);
    }
    let AttributeValue::Exprloc(expr) = value else {
        return None;
    };
    let mut bytes = expr.0;
    (gimli::Reader::read_u8(&mut bytes).ok()? == gimli::DW_OP_plus_uconst.0)
        .then(|| gimli::Reader::read_uleb128(&mut bytes).ok())
        .flatten()
}
