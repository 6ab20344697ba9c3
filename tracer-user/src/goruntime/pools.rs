//! What the program's `sync.Pool`s hold, read from outside.
//!
//! `sync.allPools` lists the pools used since the last GC and `sync.oldPools` those used before
//! it (the GC moves each pool's per-P caches to its victim cache, then drops the victims). A
//! pool's per-P cache (`[P]poolLocal`) holds one private object and a chain of ring buffers of
//! shared ones; both the current caches and the victims are read. Each object is measured with
//! what it points to directly, so that a pooled `*bytes.Buffer` counts its buffer.

use std::collections::HashSet;

use super::{
    datasyms::DataSymbol,
    spans::{SpanLookup, SpanReader},
    Field, Runtime,
};
use crate::{error::Result, target::Target, util::read_u64};

/// Guards against misreading: pools in a program, per-P caches, ring buffers in a chain, slots
/// read per ring, objects measured per pool.
const MAX_POOLS: u64 = 4096;
const MAX_LOCALS: u64 = 1024;
const MAX_CHAIN: usize = 64;
const MAX_RING: u64 = 1 << 16;
const MAX_OBJECTS: usize = 4096;
/// How much of an object is scanned for pointers to what it holds.
const MAX_SCAN: u64 = 4096;
/// `any`: (type, data) words.
const EFACE: usize = 16;

pub struct PoolReader {
    all_pools: u64,
    old_pools: Option<u64>,
    spans: SpanReader,
    local: u64,
    local_size: u64,
    victim: u64,
    victim_size: u64,
    new: u64,
    stride: u64,
    private: usize,
    chain_head: usize,
    elt_prev: usize,
    head_tail: usize,
    vals: usize,
}

/// One pool's contents.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct PoolContents {
    /// The `sync.Pool`'s address.
    pub pool: u64,
    /// Its `New` function's code address (0: no `New`).
    pub new_pc: u64,
    /// Bytes held by each pooled object (the object and what it points to directly).
    pub objects: Vec<u64>,
}

impl PoolReader {
    pub fn new(target: &Target, runtime: &Runtime) -> Option<Self> {
        let o = |f| runtime.offsets.get(f);
        let internal = o(Field::PoolLocalInternal)?;
        let dequeue = o(Field::PoolChainEltDequeue)?;
        Some(PoolReader {
            all_pools: runtime.variable(target, DataSymbol::AllPools)?,
            old_pools: runtime.variable(target, DataSymbol::OldPools),
            spans: SpanReader::new(target, runtime)?,
            local: o(Field::PoolLocal)?,
            local_size: o(Field::PoolLocalSize)?,
            victim: o(Field::PoolVictim)?,
            victim_size: o(Field::PoolVictimSize)?,
            new: o(Field::PoolNew)?,
            stride: o(Field::PoolLocalSizeof)?,
            private: (internal + o(Field::PoolLocalPrivate)?) as usize,
            // `poolChain.head` is a plain pointer; `poolChainElt.prev` an atomic.Pointer from Go
            // 1.21 (whose only word, `v`, is at offset 0) and a plain pointer before.
            chain_head: (internal + o(Field::PoolLocalShared)? + o(Field::PoolChainHead)?) as usize,
            elt_prev: o(Field::PoolChainEltPrev)? as usize,
            head_tail: (dequeue + o(Field::PoolDequeueHeadTail)?) as usize,
            vals: (dequeue + o(Field::PoolDequeueVals)?) as usize,
        })
    }

    /// Every pool's contents.
    pub fn read(&self, target: &Target) -> Result<Vec<PoolContents>> {
        let mem = &target.memory;
        let mut pools = Vec::new();
        for list in std::iter::once(self.all_pools).chain(self.old_pools) {
            let ptr = mem.read_u64(list)?;
            let len = mem.read_u64(list + 8)?.min(MAX_POOLS) as usize;
            if len == 0 {
                continue;
            }
            for p in mem.read_vec(ptr, len * 8)?.chunks_exact(8) {
                let p = u64::from_le_bytes(p.try_into().unwrap());
                if p != 0 && !pools.contains(&p) {
                    pools.push(p);
                }
            }
        }
        let mut lookup = self.spans.lookup(target);
        Ok(pools
            .into_iter()
            .filter_map(|p| self.pool(target, &mut lookup, p).ok())
            .collect())
    }

    fn pool(&self, target: &Target, lookup: &mut SpanLookup, pool: u64) -> Result<PoolContents> {
        let mem = &target.memory;
        let header = mem.read_vec(pool, (self.new + 8) as usize)?;
        let word = |o: u64| read_u64(&header, o as usize).unwrap_or(0);
        let new_fn = word(self.new);
        let new_pc = if new_fn == 0 {
            0
        } else {
            mem.read_u64(new_fn)?
        };
        let mut values = Vec::new();
        for (locals, n) in [
            (word(self.local), word(self.local_size)),
            (word(self.victim), word(self.victim_size)),
        ] {
            if locals == 0 || n == 0 {
                continue;
            }
            let n = n.min(MAX_LOCALS);
            let all = mem.read_vec(locals, (n * self.stride) as usize)?;
            for local in all.chunks_exact(self.stride as usize) {
                self.local_values(target, local, &mut values);
            }
        }
        values.truncate(MAX_OBJECTS);
        Ok(PoolContents {
            pool,
            new_pc,
            objects: values
                .into_iter()
                .filter_map(|v| retained(target, lookup, v))
                .collect(),
        })
    }

    /// The data words of the objects in one per-P cache: its private slot and every slot in
    /// use in its chain of rings (from `tail` up to `head`, the ring's live range).
    fn local_values(&self, target: &Target, local: &[u8], out: &mut Vec<u64>) {
        let mem = &target.memory;
        if read_u64(local, self.private).is_some_and(|t| t != 0) {
            out.extend(read_u64(local, self.private + 8));
        }
        let mut elt = read_u64(local, self.chain_head).unwrap_or(0);
        for _ in 0..MAX_CHAIN {
            if elt == 0 || out.len() >= MAX_OBJECTS {
                return;
            }
            let Ok(e) = mem.read_vec(elt, self.elt_prev.max(self.vals + 8) + 8) else {
                return;
            };
            let word = |o: usize| read_u64(&e, o).unwrap_or(0);
            let head_tail = word(self.head_tail);
            let (head, tail) = ((head_tail >> 32) as u32, head_tail as u32);
            let (ring, size) = (word(self.vals), word(self.vals + 8));
            let live = u64::from(head.wrapping_sub(tail)).min(size);
            if ring != 0 && size.is_power_of_two() && size <= MAX_RING && live > 0 {
                if let Ok(slots) = mem.read_vec(ring, size as usize * EFACE) {
                    for i in 0..live {
                        let slot = (u64::from(tail) + i) % size * EFACE as u64;
                        let typ = read_u64(&slots, slot as usize).unwrap_or(0);
                        if typ != 0 {
                            out.extend(read_u64(&slots, slot as usize + 8));
                        }
                    }
                }
            }
            elt = word(self.elt_prev);
        }
    }
}

/// Bytes an object holds: its own size plus each distinct heap object one of its words points
/// at. One level deep: a pooled `*bytes.Buffer` or `*[]byte` counts its backing array, a map
/// inside a pooled struct counts only its header.
fn retained(target: &Target, lookup: &mut SpanLookup, addr: u64) -> Option<u64> {
    let object = lookup.object(addr)?;
    let body = target
        .memory
        .read_vec(object.base, object.size.min(MAX_SCAN) as usize)
        .ok()?;
    let mut seen = HashSet::from([object.base]);
    let mut bytes = object.size;
    for w in body.chunks_exact(8) {
        let w = u64::from_le_bytes(w.try_into().unwrap());
        if w < 4096 {
            continue;
        }
        if let Some(o) = lookup.object(w) {
            if seen.insert(o.base) {
                bytes += o.size;
            }
        }
    }
    Some(bytes)
}
