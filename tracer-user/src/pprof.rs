//! pprof profiles: `profile.proto` messages, gzipped, as `go tool pprof` and every
//! pprof-compatible tool read them.
//!
//! [`ProfileBuilder`] is generic: sample types, stacks of code addresses, values and numeric
//! labels in, a [`proto::Profile`] out. Symbolization is injected (a function from a link-time
//! code address to its frames), while the profile itself carries *runtime* addresses and a
//! mapping of the main executable, so that `go tool pprof` can also symbolize it against the
//! binary. [`heap_profile`] turns gotrace's heap model into the profile `runtime/pprof` writes
//! for `WriteHeapProfile`; other profiles of Go stacks are adapters of the same shape over
//! [`ProfileBuilder::add_go_stack`]. (Go's goroutine profile, for one, has the single sample
//! type `goroutine/count`, the same period type with period 1, no hidden frames, and samples
//! sorted by count, most first.)

use std::{
    collections::HashMap,
    io::{Read, Write},
    time::{Duration, SystemTime},
};

use prost::Message;

use crate::{
    binary::GoBinary,
    error::{Error, Result},
    goruntime::heapprof::{HeapProfile, HeapRecord},
    model::heap,
    symbols::Frame,
};

/// The types prost generates from `proto/profile.proto` (package `perftools.profiles`).
#[allow(clippy::all, missing_docs, rustdoc::all)]
pub mod proto {
    include!(concat!(env!("OUT_DIR"), "/perftools.profiles.rs"));
}

/// Frames of a link-time code address, innermost first (inlined calls are frames of their
/// own); empty when the address is unknown.
pub type Symbolize<'a> = dyn Fn(u64) -> Vec<Frame> + 'a;

/// The sample types of Go's heap profile (`runtime/pprof.writeHeapProto`), in its order.
pub const HEAP_SAMPLE_TYPES: [ValueType<'static>; 4] = [
    ValueType::new("alloc_objects", "count"),
    ValueType::new("alloc_space", "bytes"),
    ValueType::new("inuse_objects", "count"),
    ValueType::new("inuse_space", "bytes"),
];

/// The kind and unit of a value, e.g. `inuse_space`/`bytes`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ValueType<'s> {
    pub kind: &'s str,
    pub unit: &'s str,
}

impl<'s> ValueType<'s> {
    pub const fn new(kind: &'s str, unit: &'s str) -> Self {
        ValueType { kind, unit }
    }
}

/// A numeric label of a sample, e.g. `bytes` = object size.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct NumLabel<'s> {
    pub key: &'s str,
    pub value: i64,
    /// `None` lets pprof infer the unit from the key, as Go's own profiles do.
    pub unit: Option<&'s str>,
}

/// The address range of the main executable in the traced process.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Mapping {
    /// Runtime addresses: `[start, limit)`.
    pub start: u64,
    pub limit: u64,
    /// The file offset mapped at `start`.
    pub offset: u64,
    pub file: String,
    pub build_id: String,
}

const PAGE: u64 = 4096;

impl Mapping {
    /// The executable segment of `binary` (the `PT_LOAD` holding `.text`) as the kernel maps
    /// it: page-aligned, shifted by `load_bias`. pprof recovers the link-time address of a
    /// runtime address from exactly this (start, offset) pair and the file's program headers,
    /// so the range must be what `/proc/PID/maps` shows, not the section.
    pub fn main_executable(binary: &GoBinary, load_bias: u64) -> Option<Mapping> {
        let text = binary.elf.section(".text")?;
        let seg = binary
            .elf
            .segments
            .iter()
            .find(|s| text.addr >= s.addr && text.addr - s.addr < s.size)?;
        let start = seg.addr.checked_add(load_bias)?;
        let end = start.checked_add(seg.size)?;
        let aligned_start = start & !(PAGE - 1);
        Some(Mapping {
            start: aligned_start,
            limit: end.checked_add(PAGE - 1)? & !(PAGE - 1),
            offset: seg.file_offset.checked_sub(start - aligned_start)?,
            file: binary.path.clone(),
            build_id: build_id(binary).unwrap_or_default(),
        })
    }
}

/// The build ID to put in a mapping: the GNU build ID (hex) when the binary has one, as Go's
/// runtime/pprof does and as pprof compares it with the file's; otherwise the Go build ID
/// (`.note.go.buildid`, which every Go binary carries; pprof does not read it from the file,
/// so it never causes a mismatch, and it tells which build the profile belongs to).
pub fn build_id(binary: &GoBinary) -> Option<String> {
    let note = |section: &str, name: &[u8], kind: u32| {
        let s = binary.elf.section(section)?;
        elf_note(binary.elf.section_data(binary.data(), s)?, name, kind)
    };
    if let Some(desc) = note(".note.gnu.build-id", b"GNU", 3) {
        return Some(desc.iter().map(|b| format!("{b:02x}")).collect());
    }
    let desc = note(".note.go.buildid", b"Go", 4)?;
    String::from_utf8(desc.to_vec())
        .ok()
        .filter(|s| !s.is_empty())
}

/// The descriptor of the first ELF note named `name` with type `kind` in a note section
/// (little-endian, 4-byte aligned as Go and the GNU tools write them); `None` when there is no
/// such note before the first malformed one.
fn elf_note<'d>(data: &'d [u8], name: &[u8], kind: u32) -> Option<&'d [u8]> {
    use object::{elf::FileHeader64, read::elf::NoteIterator, LittleEndian as LE};
    // The name is NUL-terminated, and Go pads its "Go" to namesz 4 with NULs: `name()` drops
    // the trailing NULs.
    NoteIterator::<FileHeader64<LE>>::new(LE, 4, data)
        .ok()?
        .map_while(|note| note.ok())
        .find(|note| note.name() == name && note.n_type(LE) == kind)
        .map(|note| note.desc())
}

/// Where code addresses come from and how to name them: shared by every profile of one
/// traced process.
pub struct Executable<'a> {
    pub symbolize: &'a Symbolize<'a>,
    /// Runtime address minus link-time address (0 unless PIE).
    pub load_bias: u64,
    /// The main executable's mapping; `None` leaves locations without a mapping (pprof then
    /// cannot symbolize them itself).
    pub mapping: Option<Mapping>,
}

/// One address of a stack, resolved once.
struct Resolved {
    frames: Vec<Frame>,
    /// The location id, once a sample used this address.
    location: Option<u64>,
}

/// Builds one profile. Locations are de-duplicated by address, functions by (name, file);
/// inlined frames become several `Line`s of one location, innermost first, as the format
/// wants.
pub struct ProfileBuilder<'a> {
    exe: &'a Executable<'a>,
    profile: proto::Profile,
    strings: HashMap<String, i64>,
    resolved: HashMap<u64, Resolved>,
    functions: HashMap<(String, String), u64>,
    /// Every location so far had a function, file and line for every frame.
    fully_symbolized: bool,
    any_inlined: bool,
}

impl<'a> ProfileBuilder<'a> {
    pub fn new(exe: &'a Executable<'a>, sample_types: &[ValueType<'_>]) -> Self {
        let mut b = ProfileBuilder {
            exe,
            profile: proto::Profile::default(),
            strings: HashMap::new(),
            resolved: HashMap::new(),
            functions: HashMap::new(),
            fully_symbolized: true,
            any_inlined: false,
        };
        // The format requires string_table[0] == "".
        b.intern("");
        b.profile.sample_type = sample_types.iter().map(|t| b.value_type(*t)).collect();
        b
    }

    fn intern(&mut self, s: &str) -> i64 {
        if let Some(&i) = self.strings.get(s) {
            return i;
        }
        let i = self.profile.string_table.len() as i64;
        self.profile.string_table.push(s.to_string());
        self.strings.insert(s.to_string(), i);
        i
    }

    fn value_type(&mut self, t: ValueType<'_>) -> proto::ValueType {
        proto::ValueType {
            r#type: self.intern(t.kind),
            unit: self.intern(t.unit),
        }
    }

    /// What one sampling event stands for and how many of them lie between two samples.
    pub fn period(&mut self, period_type: ValueType<'_>, period: i64) -> &mut Self {
        self.profile.period_type = Some(self.value_type(period_type));
        self.profile.period = period;
        self
    }

    /// The sample type tools show first; it must be one of the profile's sample types.
    pub fn default_sample_type(&mut self, kind: &str) -> Result<&mut Self> {
        let index = self.strings.get(kind).copied();
        if !self
            .profile
            .sample_type
            .iter()
            .any(|t| Some(t.r#type) == index)
        {
            return Err(Error::Export(format!(
                "default sample type {kind:?} is not a sample type of the profile"
            )));
        }
        self.profile.default_sample_type = index.unwrap_or(0);
        Ok(self)
    }

    /// When collection started and how long it lasted.
    pub fn time(&mut self, start: SystemTime, duration: Duration) -> &mut Self {
        self.profile.time_nanos = start
            .duration_since(SystemTime::UNIX_EPOCH)
            .map(|d| i64::try_from(d.as_nanos()).unwrap_or(i64::MAX))
            .unwrap_or(0);
        self.profile.duration_nanos = i64::try_from(duration.as_nanos()).unwrap_or(i64::MAX);
        self
    }

    fn resolve(&mut self, pc: u64) -> &mut Resolved {
        let symbolize = self.exe.symbolize;
        self.resolved.entry(pc).or_insert_with(|| Resolved {
            frames: symbolize(pc),
            location: None,
        })
    }

    /// Adds a sample whose stack is a Go stack as the runtime records it (`runtime.Callers`,
    /// profile buckets; link-time addresses, leaf first): return addresses, so the call is at
    /// `pc-1`, which is what gets symbolized and what the location's address is, as in Go's
    /// own profiles. Inlined calls appear as extra "fake" return addresses in such stacks
    /// (Go 1.12+); they are folded back into the location of the physical call, as
    /// runtime/pprof does. A frame-pointer stack (one address per physical frame) works too.
    ///
    /// With `hide_runtime_leaf` the leading frames of package runtime (the allocator, for a
    /// heap profile) are left out as runtime/pprof leaves them out of heap profiles, unless
    /// nothing else remains. `runtime.goexit`, the bottom of every goroutine, is always left
    /// out, as Go does.
    pub fn add_go_stack(
        &mut self,
        return_pcs: &[u64],
        hide_runtime_leaf: bool,
        values: &[i64],
        labels: &[NumLabel<'_>],
    ) -> Result<()> {
        let pcs: Vec<u64> = return_pcs.iter().map(|r| r.saturating_sub(1)).collect();
        let mut start = 0;
        if hide_runtime_leaf {
            // runtime/pprof asks FuncForPC, which names the innermost (inlined) function at
            // the address; an unknown address ends the hidden run. If every frame is the
            // runtime's, nothing is hidden.
            if let Some(first) = pcs.iter().position(|&pc| {
                !self
                    .resolve(pc)
                    .frames
                    .first()
                    .is_some_and(|f| is_runtime(&f.function))
            }) {
                start = first;
            }
        }
        let groups = self.inline_groups(&pcs[start..]);
        self.push_sample(&groups, values, labels)
    }

    /// Splits a stack of call addresses into physical frames: an address whose frames are
    /// exactly the outer frames of the current group's first address is a fake return
    /// address that the runtime's traceback emits for an inlined call, and joins the group.
    /// (Go's pcDeck asks the same of runtime.Frame entries; a frame list that repeats the
    /// outer part of an inline expansion can only be such an inline mark.)
    fn inline_groups<'p>(&mut self, pcs: &'p [u64]) -> Vec<&'p [u64]> {
        let mut groups = Vec::new();
        let mut i = 0;
        while i < pcs.len() {
            let head = self.resolve(pcs[i]).frames.clone();
            let mut j = i + 1;
            let mut depth = 1;
            while j < pcs.len() && depth < head.len() {
                let next = &self.resolve(pcs[j]).frames;
                if next.is_empty() || next.as_slice() != &head[depth..] {
                    break;
                }
                j += 1;
                depth += 1;
            }
            groups.push(&pcs[i..j]);
            i = j;
        }
        groups
    }

    fn push_sample(
        &mut self,
        groups: &[&[u64]],
        values: &[i64],
        labels: &[NumLabel<'_>],
    ) -> Result<()> {
        if values.len() != self.profile.sample_type.len() {
            return Err(Error::Export(format!(
                "a sample has {} values for {} sample types",
                values.len(),
                self.profile.sample_type.len()
            )));
        }
        let location_id = groups.iter().filter_map(|g| self.location(g[0])).collect();
        let label = labels
            .iter()
            .map(|l| proto::Label {
                key: self.intern(l.key),
                num: l.value,
                num_unit: l.unit.map(|u| self.intern(u)).unwrap_or(0),
                ..Default::default()
            })
            .collect();
        self.profile.sample.push(proto::Sample {
            location_id,
            value: values.to_vec(),
            label,
        });
        Ok(())
    }

    /// The location of call address `pc`, created on first use; `None` for `runtime.goexit`.
    fn location(&mut self, pc: u64) -> Option<u64> {
        let resolved = self.resolve(pc);
        if let Some(id) = resolved.location {
            return Some(id);
        }
        let frames = resolved.frames.clone();
        if frames
            .first()
            .is_some_and(|f| f.function == "runtime.goexit")
        {
            return None;
        }
        let id = self.profile.location.len() as u64 + 1;
        self.fully_symbolized &= !frames.is_empty()
            && frames
                .iter()
                .all(|f| !f.function.is_empty() && !f.file.is_empty() && f.line > 0);
        self.any_inlined |= frames.len() > 1;
        let line = frames
            .iter()
            .map(|f| proto::Line {
                function_id: self.function(f),
                line: i64::from(f.line),
                column: 0,
            })
            .collect();
        let address = pc.wrapping_add(self.exe.load_bias);
        let mapping_id = match &self.exe.mapping {
            Some(m) if (m.start..m.limit).contains(&address) => 1,
            _ => 0,
        };
        self.profile.location.push(proto::Location {
            id,
            mapping_id,
            address,
            line,
            is_folded: false,
        });
        self.resolve(pc).location = Some(id);
        Some(id)
    }

    fn function(&mut self, frame: &Frame) -> u64 {
        let key = (frame.function.clone(), frame.file.clone());
        if let Some(&id) = self.functions.get(&key) {
            return id;
        }
        let id = self.profile.function.len() as u64 + 1;
        let name = self.intern(&frame.function);
        let filename = self.intern(&frame.file);
        self.profile.function.push(proto::Function {
            id,
            name,
            system_name: name,
            filename,
            start_line: 0,
        });
        self.functions.insert(key, id);
        id
    }

    /// The finished profile.
    pub fn finish(mut self) -> proto::Profile {
        if let Some(m) = &self.exe.mapping {
            // pprof symbolizes a mapping from the binary only when none of these is set, so
            // they are set only when every location already carries its frames (what Go's
            // builder does for HasFunctions).
            let symbolized = self.fully_symbolized && !self.profile.location.is_empty();
            let mapping = proto::Mapping {
                id: 1,
                memory_start: m.start,
                memory_limit: m.limit,
                file_offset: m.offset,
                filename: self.intern(&m.file),
                build_id: self.intern(&m.build_id),
                has_functions: symbolized,
                has_filenames: symbolized,
                has_line_numbers: symbolized,
                // Only a symbolizer that expands inlined calls produces several lines per
                // location; without one the profile cannot claim to have them.
                has_inline_frames: symbolized && self.any_inlined,
            };
            self.profile.mapping = vec![mapping];
        }
        self.profile
    }
}

fn is_runtime(function: &str) -> bool {
    function.starts_with("runtime.") || function.starts_with("internal/runtime/")
}

fn saturating_i64(v: u64) -> i64 {
    i64::try_from(v).unwrap_or(i64::MAX)
}

/// Go's heap profile (`runtime/pprof.writeHeapProto`) of a heap snapshot: four sample types
/// (`alloc_objects`, `alloc_space`, `inuse_objects`, `inuse_space`) scaled up from the
/// samples with Go's `scaleHeapSample`, period `space/bytes` = the sample rate, the object
/// size as a `bytes` label, allocator frames hidden. `inuse_space` is the default, which is
/// also what pprof picks for Go's own heap profiles (the last sample type).
pub fn heap_profile(heap: &HeapProfile, exe: &Executable<'_>) -> Result<proto::Profile> {
    heap_profile_with(heap, exe, |r| r.allocs)
}

/// The heap profile with each record's sampled allocations given by `allocs` (the in-use
/// values stay absolute): godeltaprof's delta profile when that is the allocations since the
/// last one.
pub fn heap_profile_with(
    heap: &HeapProfile,
    exe: &Executable<'_>,
    mut allocs: impl FnMut(&HeapRecord) -> u64,
) -> Result<proto::Profile> {
    let mut b = ProfileBuilder::new(exe, &HEAP_SAMPLE_TYPES);
    b.period(
        ValueType::new("space", "bytes"),
        saturating_i64(heap.sample_rate),
    )
    .time(heap.time, heap.duration)
    .default_sample_type("inuse_space")?;
    for s in heap::scaled(heap) {
        let (alloc_objects, alloc_bytes) = match allocs(s.record) {
            n if n == s.record.allocs => (s.alloc_objects, s.alloc_bytes),
            // A site with nothing new and nothing in use adds nothing to a delta.
            0 if s.inuse_objects == 0 => continue,
            n => heap::scale(n, s.record.object_size, heap.sample_rate),
        };
        let values =
            [alloc_objects, alloc_bytes, s.inuse_objects, s.inuse_bytes].map(saturating_i64);
        let label = NumLabel {
            key: "bytes",
            value: saturating_i64(s.record.object_size),
            unit: None,
        };
        b.add_go_stack(&s.record.stack, true, &values, &[label])?;
    }
    Ok(b.finish())
}

/// The serialized, gzipped profile: the on-disk form of the format.
pub fn gzip(profile: &proto::Profile) -> Result<Vec<u8>> {
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    gz.write_all(&profile.encode_to_vec())
        .and_then(|()| gz.finish())
        .map_err(|e| Error::Export(format!("compressing the profile: {e}")))
}

/// Reads a profile from its on-disk form (gzipped, or plain as some tools write it).
pub fn decode(bytes: &[u8]) -> Result<proto::Profile> {
    let raw = if bytes.starts_with(&[0x1f, 0x8b]) {
        let mut out = Vec::new();
        flate2::read::MultiGzDecoder::new(bytes)
            .read_to_end(&mut out)
            .map_err(|e| Error::Export(format!("decompressing the profile: {e}")))?;
        out
    } else {
        bytes.to_vec()
    };
    proto::Profile::decode(raw.as_slice())
        .map_err(|e| Error::Export(format!("not a pprof profile: {e}")))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::goruntime::heapprof::HeapRecord;

    fn frame(function: &str, file: &str, line: u32) -> Frame {
        let mut f = Frame::unknown(0);
        f.function = function.into();
        f.file = file.into();
        f.line = line;
        f
    }

    /// A tiny program: 0x1000.. runtime.mallocgc, 0x2000.. main.alloc with main.helper
    /// inlined at 0x2010 (and its inline mark at 0x2004), 0x3000.. main.main,
    /// 0x4000.. runtime.goexit.
    fn symbolize(pc: u64) -> Vec<Frame> {
        match pc {
            0x1000..0x2000 => vec![frame("runtime.mallocgc", "malloc.go", 10)],
            0x2010..0x2020 => vec![
                frame("main.helper", "/src/main.go", 5),
                frame("main.alloc", "/src/main.go", 20),
            ],
            0x2000..0x2010 => vec![frame("main.alloc", "/src/main.go", 20)],
            0x2020..0x3000 => vec![frame("main.alloc", "/src/main.go", 22)],
            0x3000..0x4000 => vec![frame("main.main", "/src/main.go", 30)],
            0x4000..0x5000 => vec![frame("runtime.goexit", "asm.s", 1)],
            _ => vec![],
        }
    }

    fn exe<'a>(sym: &'a Symbolize<'a>, bias: u64) -> Executable<'a> {
        Executable {
            symbolize: sym,
            load_bias: bias,
            mapping: Some(Mapping {
                start: 0x1000 + bias,
                limit: 0x5000 + bias,
                offset: 0,
                file: "/bin/prog".into(),
                build_id: "abc".into(),
            }),
        }
    }

    fn string(p: &proto::Profile, i: i64) -> &str {
        &p.string_table[i as usize]
    }

    /// Function names of a sample, leaf first, inlined frames expanded.
    fn names(p: &proto::Profile, s: &proto::Sample) -> Vec<String> {
        s.location_id
            .iter()
            .flat_map(|id| &p.location[*id as usize - 1].line)
            .map(|l| string(p, p.function[l.function_id as usize - 1].name).to_string())
            .collect()
    }

    #[test]
    fn fake_inline_return_addresses_fold_into_one_location() {
        let sym = symbolize;
        let exe = exe(&sym, 0x10_0000);
        let mut b = ProfileBuilder::new(&exe, &[ValueType::new("n", "count")]);
        // Logical stack as runtime.Callers gives it: the call inside the inlined helper,
        // then the inline mark in main.alloc, then main.main, then goexit.
        b.add_go_stack(&[0x1001, 0x2011, 0x2005, 0x3001, 0x4001], true, &[3], &[])
            .unwrap();
        // Frame-pointer stack of the same call: no inline mark.
        b.add_go_stack(&[0x1001, 0x2011, 0x3001, 0x4001], true, &[4], &[])
            .unwrap();
        let p = b.finish();
        assert_eq!(p.sample[0].location_id, p.sample[1].location_id);
        assert_eq!(
            names(&p, &p.sample[0]),
            ["main.helper", "main.alloc", "main.main"]
        );
        let loc = &p.location[p.sample[0].location_id[0] as usize - 1];
        assert_eq!(
            loc.address,
            0x2010 + 0x10_0000,
            "runtime address of the call"
        );
        assert_eq!(loc.mapping_id, 1);
        assert!(p.mapping[0].has_functions && p.mapping[0].has_inline_frames);
        assert_eq!(string(&p, 0), "");
    }

    #[test]
    fn runtime_leaf_hidden_unless_all_runtime() {
        let sym = symbolize;
        let exe = exe(&sym, 0);
        let mut b = ProfileBuilder::new(&exe, &[ValueType::new("n", "count")]);
        b.add_go_stack(&[0x1001, 0x2021, 0x3001], true, &[1], &[])
            .unwrap();
        b.add_go_stack(&[0x1001, 0x1101, 0x4001], true, &[1], &[])
            .unwrap();
        b.add_go_stack(&[0x1001, 0x2021], false, &[1], &[]).unwrap();
        let p = b.finish();
        assert_eq!(names(&p, &p.sample[0]), ["main.alloc", "main.main"]);
        assert_eq!(
            names(&p, &p.sample[1]),
            ["runtime.mallocgc", "runtime.mallocgc"]
        );
        assert_eq!(names(&p, &p.sample[2]), ["runtime.mallocgc", "main.alloc"]);
        // Same address, same location; same (name, file), same function.
        assert_eq!(p.location.len(), 4);
        assert_eq!(p.function.len(), 3);
    }

    #[test]
    fn unknown_addresses_leave_symbolization_to_pprof() {
        let sym = |_pc: u64| Vec::new();
        let exe = exe(&sym, 0);
        let mut b = ProfileBuilder::new(&exe, &[ValueType::new("n", "count")]);
        b.add_go_stack(&[0x2021, 0x3001], true, &[1], &[]).unwrap();
        let p = b.finish();
        assert_eq!(p.location.len(), 2);
        assert!(p.location.iter().all(|l| l.line.is_empty()));
        let m = &p.mapping[0];
        assert!(!m.has_functions && !m.has_filenames && !m.has_line_numbers);
    }

    #[test]
    fn bad_input_is_an_error() {
        let sym = symbolize;
        let exe = exe(&sym, 0);
        let mut b = ProfileBuilder::new(&exe, &HEAP_SAMPLE_TYPES);
        assert!(b.add_go_stack(&[0x2001], false, &[1, 2], &[]).is_err());
        assert!(b.default_sample_type("cpu").is_err());
        assert!(b.default_sample_type("inuse_space").is_ok());
        assert!(decode(b"\x1f\x8b\x08garbage").is_err());
        assert!(decode(&[0xff; 16]).is_err());
        // Aligned as a note section of a mapped file is, so that the note is refused for its
        // size alone.
        let corrupt = Aligned([4, 0, 0, 0, 0xff, 0xff, 0xff, 0xff, 4, 0, 0, 0]);
        assert!(elf_note(&corrupt.0, b"Go", 4).is_none());
    }

    #[repr(align(8))]
    struct Aligned<const N: usize>([u8; N]);

    #[test]
    fn elf_note_finds_the_descriptor() {
        // namesz 4, descsz 3, type 4, "Go" padded with NULs, "abc" padded to 4.
        let note = Aligned([
            4, 0, 0, 0, 3, 0, 0, 0, 4, 0, 0, 0, b'G', b'o', 0, 0, b'a', b'b', b'c', 0,
        ]);
        assert_eq!(elf_note(&note.0, b"Go", 4), Some(&b"abc"[..]));
        assert!(elf_note(&note.0, b"Go", 3).is_none());
        assert!(elf_note(&note.0, b"GNU", 4).is_none());
    }

    #[test]
    fn heap_profile_is_scaled_and_round_trips() {
        let sym = symbolize;
        let exe = exe(&sym, 0);
        let rate = 512 * 1024;
        let heap = HeapProfile {
            records: vec![HeapRecord {
                bucket: 0,
                stack: vec![0x1001, 0x2021, 0x3001, 0x4001],
                object_size: 64,
                allocs: 10,
                frees: 4,
            }],
            sample_rate: rate,
            time: SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_000),
            duration: Duration::from_secs(8),
        };
        let p = heap_profile(&heap, &exe).unwrap();
        let back = decode(&gzip(&p).unwrap()).unwrap();
        assert_eq!(back, p);
        let types: Vec<_> = p
            .sample_type
            .iter()
            .map(|t| format!("{}/{}", string(&p, t.r#type), string(&p, t.unit)))
            .collect();
        assert_eq!(
            types,
            [
                "alloc_objects/count",
                "alloc_space/bytes",
                "inuse_objects/count",
                "inuse_space/bytes"
            ]
        );
        assert_eq!(string(&p, p.default_sample_type), "inuse_space");
        assert_eq!(p.period, rate as i64);
        let (ao, ab) = heap::scale(10, 64, rate);
        let (io, ib) = heap::scale(6, 64, rate);
        assert_eq!(
            p.sample[0].value,
            [ao as i64, ab as i64, io as i64, ib as i64]
        );
        let label = &p.sample[0].label[0];
        assert_eq!((string(&p, label.key), label.num), ("bytes", 64));
        assert_eq!(p.time_nanos, 1_700_000_000_000_000_000);
        assert_eq!(names(&p, &p.sample[0]), ["main.alloc", "main.main"]);
    }
}
