//! Which heap object an address falls in, and how large that object is: the runtime's own
//! `spanOf` lookup (`mheap_.arenas` → `heapArena.spans` → `mspan`), done from outside.

use std::collections::HashMap;

use super::{datasyms::DataSymbol, Field, Runtime};
use crate::{target::Target, util::read_u64};

// linux/amd64 heap geometry (runtime/malloc.go, unchanged from Go 1.15 to 1.27): 64 MiB arenas
// in a single-level map of 2^22 entries (arenaL1Bits = 0), indexed from arenaBaseOffset, and
// 8 KiB pages.
const ARENA_BYTES: u64 = 64 << 20;
const ARENA_BASE_OFFSET: u64 = 0xffff_8000_0000_0000;
const ARENA_L2_ENTRIES: u64 = 1 << 22;
const PAGE_BYTES: u64 = 8 << 10;
const PAGES_PER_ARENA: u64 = ARENA_BYTES / PAGE_BYTES;
/// `mSpanInUse`: a span of allocated objects (not free, not manually managed stack memory).
const SPAN_IN_USE: u8 = 1;

pub struct SpanReader {
    /// `mheap_.arenas[0]`, the address of the `[2^22]*heapArena` map.
    arenas: u64,
    arena_spans: u64,
    start: usize,
    npages: usize,
    elemsize: usize,
    state: usize,
}

/// One heap object: its first byte and its size class's size.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct HeapObject {
    pub base: u64,
    pub size: u64,
}

#[derive(Clone, Copy)]
struct Span {
    start: u64,
    end: u64,
    elemsize: u64,
}

/// Lookups sharing what they read: arenas and spans are read once per lookup set.
pub struct SpanLookup<'r> {
    reader: &'r SpanReader,
    target: &'r Target,
    arenas: HashMap<u64, Option<u64>>,
    spans: HashMap<u64, Option<Span>>,
}

impl SpanReader {
    pub fn new(target: &Target, runtime: &Runtime) -> Option<Self> {
        let o = |f| runtime.offsets.get(f);
        let mheap = runtime.variable(target, DataSymbol::Mheap)?;
        let arenas = target
            .memory
            .read_u64(mheap + o(Field::MheapArenas)?)
            .ok()
            .filter(|a| *a != 0)?;
        Some(SpanReader {
            arenas,
            arena_spans: o(Field::HeapArenaSpans)?,
            start: o(Field::MspanStartAddr)? as usize,
            npages: o(Field::MspanNpages)? as usize,
            elemsize: o(Field::MspanElemsize)? as usize,
            state: o(Field::MspanState)? as usize,
        })
    }

    pub fn lookup<'r>(&'r self, target: &'r Target) -> SpanLookup<'r> {
        SpanLookup {
            reader: self,
            target,
            arenas: HashMap::new(),
            spans: HashMap::new(),
        }
    }
}

impl SpanLookup<'_> {
    /// The allocated object that contains `addr`; `None` outside the heap (or in a free span).
    pub fn object(&mut self, addr: u64) -> Option<HeapObject> {
        let index = addr.wrapping_sub(ARENA_BASE_OFFSET) / ARENA_BYTES;
        if index >= ARENA_L2_ENTRIES {
            return None;
        }
        let mem = &self.target.memory;
        let arena = *self.arenas.entry(index).or_insert_with(|| {
            mem.read_u64(self.reader.arenas + index * 8)
                .ok()
                .filter(|a| *a != 0)
        });
        let slot = arena? + self.reader.arena_spans + (addr / PAGE_BYTES % PAGES_PER_ARENA) * 8;
        let span_addr = mem.read_u64(slot).ok().filter(|s| *s != 0)?;
        let r = self.reader;
        let span = (*self.spans.entry(span_addr).or_insert_with(|| {
            let len = r.start.max(r.npages).max(r.elemsize).max(r.state) + 8;
            let b = mem.read_vec(span_addr, len).ok()?;
            let start = read_u64(&b, r.start)?;
            let elemsize = read_u64(&b, r.elemsize)?;
            let npages = read_u64(&b, r.npages)?;
            (b[r.state] == SPAN_IN_USE && elemsize > 0).then_some(Span {
                start,
                end: start + npages * PAGE_BYTES,
                elemsize,
            })
        }))?;
        (span.start..span.end).contains(&addr).then(|| HeapObject {
            base: span.start + (addr - span.start) / span.elemsize * span.elemsize,
            size: span.elemsize,
        })
    }
}
