//! Naming native (C) code addresses of a process: C functions linked into the Go executable by
//! cgo (not in the pclntab: from the ELF symbol table) and functions of shared libraries such
//! as libc (from their dynamic symbols). Used for stacks that cross from Go into C.

use std::collections::HashMap;

use object::{Object, ObjectSymbol, SymbolKind};

use super::{Frame, Symbolizer};
use crate::target::{self, Target};

/// One executable mapping of the process.
struct Mapping {
    start: u64,
    end: u64,
    offset: u64,
    path: String,
}

/// Function symbols of one file: (start, size, name), sorted by start.
type Functions = Vec<(u64, u64, String)>;

pub struct NativeSymbols {
    mappings: Vec<Mapping>,
    /// Per file: its functions and the address of its first loaded byte at file offset 0.
    files: HashMap<String, Option<Functions>>,
    pid: u32,
}

impl NativeSymbols {
    pub fn new(target: &Target) -> Self {
        let mappings = target::mappings(target.pid)
            .unwrap_or_default()
            .into_iter()
            .filter(|m| m.executable)
            .filter_map(|m| {
                Some(Mapping {
                    start: m.start,
                    end: m.end,
                    offset: m.offset,
                    path: m.path?,
                })
            })
            .collect();
        NativeSymbols {
            mappings,
            files: HashMap::new(),
            pid: target.pid,
        }
    }

    /// Frames for a runtime return address `pc`: Go frames from `go` (inlined calls expanded),
    /// else the C function around it, else `file+0xoffset`.
    pub fn frames(&mut self, target: &Target, go: &Symbolizer, pc: u64) -> Vec<Frame> {
        let link = pc.wrapping_sub(target.load_bias);
        let in_go = target
            .binary
            .pclntab()
            .func_index_for_pc(link.saturating_sub(1))
            .is_some();
        if in_go {
            return go.caller_frames(link);
        }
        let Some(m) = self
            .mappings
            .iter()
            .find(|m| (m.start..m.end).contains(&pc))
        else {
            return vec![Frame::unknown(pc)];
        };
        let file_offset = pc - m.start + m.offset;
        let (path, start, map_offset) = (m.path.clone(), m.start, m.offset);
        let pid = self.pid;
        let functions = self
            .files
            .entry(path.clone())
            .or_insert_with(|| load_functions(pid, &path, start, map_offset));
        let short = path.rsplit('/').next().unwrap_or(&path).to_string();
        let name = functions.as_ref().and_then(|fs| {
            let lookup = pc;
            let i = fs.partition_point(|f| f.0 <= lookup);
            let f = fs.get(i.checked_sub(1)?)?;
            (lookup < f.0 + f.1.max(1)).then(|| f.2.clone())
        });
        vec![Frame {
            function: name.unwrap_or_else(|| format!("{short}+{file_offset:#x}")),
            file: short,
            line: 0,
            inlined: false,
        }]
    }
}

/// The functions of a mapped file, at their runtime addresses.
fn load_functions(pid: u32, path: &str, map_start: u64, map_offset: u64) -> Option<Functions> {
    let data = std::fs::read(format!("/proc/{pid}/root{path}")).ok()?;
    let file = object::File::parse(&*data).ok()?;
    // Runtime address of a link address: via the segment that holds the mapped file offset.
    let bias = file.segments().find_map(|s| {
        use object::ObjectSegment;
        let (off, size) = s.file_range();
        (map_offset >= off && map_offset < off + size)
            .then(|| map_start.wrapping_sub(s.address() + (map_offset - off)))
    })?;
    let mut fs: Functions = file
        .symbols()
        .chain(file.dynamic_symbols())
        .filter(|s| s.kind() == SymbolKind::Text && s.address() != 0)
        .filter_map(|s| {
            Some((
                s.address().wrapping_add(bias),
                s.size(),
                s.name().ok()?.to_string(),
            ))
        })
        .collect();
    // Several symbols can start at one address (labels of size 0 beside the function): keep
    // the one that spans the most.
    fs.sort_by(|a, b| a.0.cmp(&b.0).then(b.1.cmp(&a.1)));
    fs.dedup_by_key(|f| f.0);
    Some(fs)
}
