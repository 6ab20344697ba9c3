//! The runtime's list of every goroutine (`runtime.allgs`), read from the target's memory
//! without stopping it: a census (how many, how much stack) and per-goroutine snapshots.

use std::time::Instant;

use serde::Serialize;

use super::{datasyms::DataSymbol, Field, Runtime};
use crate::{error::Result, target::Target, util::read_u64};

/// `_Gidle`: just allocated, not yet initialised.
const G_IDLE: u32 = 0;
/// `_Gdead`: a g on a free list, not a goroutine.
const G_DEAD: u32 = 6;
/// `_Gdeadextra` (Go 1.26+): the g of an idle extra M, kept for C threads calling into Go;
/// before 1.26 such a g was `_Gdead`. Not a goroutine until a C thread calls back.
const G_DEAD_EXTRA: u32 = 11;
/// Set in the status while the GC scans the stack; not a state of its own.
const G_SCAN: u32 = 0x1000;
/// More than any real program has; guards against misreading the slice header.
const MAX_GS: u64 = 50_000_000;

/// Goroutines alive at one moment.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
pub struct Census {
    /// Every goroutine that is not dead, runtime ones included.
    pub all: u64,
    /// What `runtime.NumGoroutine` counts: without the runtime's own goroutines.
    pub user: u64,
    /// Bytes of stack held by those goroutines (their `stack.hi - stack.lo`): what leaked
    /// goroutines cost while the heap looks calm.
    pub stack_bytes: u64,
}

impl Census {
    /// The runtime's own goroutines.
    pub fn system(&self) -> u64 {
        self.all - self.user
    }
}

/// One goroutine as read from its `g`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct GSnapshot {
    pub addr: u64,
    pub goid: u64,
    /// `atomicstatus` without the scan bit.
    pub status: u32,
    pub waitreason: u8,
    /// When it started waiting (nanotime), 0 when not tracked.
    pub waitsince: i64,
    /// Link-time PCs (load bias removed).
    pub startpc: u64,
    pub gopc: u64,
    /// The goroutine that started it (Go 1.21+; `None` before).
    pub parent_goid: Option<u64>,
    pub stack_lo: u64,
    pub stack_hi: u64,
    /// Where it was descheduled (`g.sched`): runtime addresses, for unwinding its stack.
    pub sched_pc: u64,
    pub sched_sp: u64,
    pub sched_bp: u64,
}

impl GSnapshot {
    pub fn is_live(&self) -> bool {
        !matches!(self.status, G_DEAD | G_IDLE | G_DEAD_EXTRA)
    }
}

/// Reads goroutines out of `allgs`.
pub struct AllGs {
    allgs: u64,
    load_bias: u64,
    /// (field, offset) pairs, and the bytes of each g to read.
    offsets: GOffsets,
}

#[derive(Clone, Copy)]
struct GOffsets {
    goid: usize,
    status: usize,
    waitreason: usize,
    waitsince: usize,
    startpc: usize,
    gopc: usize,
    stack: usize,
    stack_hi: usize,
    sched: usize,
    sched_pc: usize,
    sched_sp: usize,
    sched_bp: usize,
    parent_goid: Option<usize>,
    span: usize,
}

impl AllGs {
    /// `None` when `allgs` cannot be located or the offsets are incomplete.
    pub fn new(target: &Target, runtime: &Runtime) -> Option<Self> {
        let allgs = runtime.variable(target, DataSymbol::Allgs)?;
        let o = |f| runtime.offsets.get(f).map(|v| v as usize);
        let mut offsets = GOffsets {
            goid: o(Field::GGoid)?,
            status: o(Field::GAtomicstatus)?,
            waitreason: o(Field::GWaitreason)?,
            waitsince: o(Field::GWaitsince)?,
            startpc: o(Field::GStartpc)?,
            gopc: o(Field::GGopc)?,
            stack: o(Field::GStack)?,
            stack_hi: o(Field::StackHi)?,
            sched: o(Field::GSched)?,
            sched_pc: o(Field::GobufPc)?,
            sched_sp: o(Field::GobufSp)?,
            sched_bp: o(Field::GobufBp)?,
            parent_goid: o(Field::GParentGoid),
            span: 0,
        };
        offsets.span = [
            offsets.goid + 8,
            offsets.status + 4,
            offsets.waitreason + 1,
            offsets.waitsince + 8,
            offsets.startpc + 8,
            offsets.gopc + 8,
            offsets.stack + offsets.stack_hi + 8,
            offsets.sched + offsets.sched_pc + 8,
            offsets.sched + offsets.sched_sp + 8,
            offsets.sched + offsets.sched_bp + 8,
            offsets.parent_goid.map_or(0, |p| p + 8),
        ]
        .into_iter()
        .max()
        .unwrap();
        Some(AllGs {
            allgs,
            load_bias: target.load_bias,
            offsets,
        })
    }

    /// Every g in `allgs` (dead ones included: callers filter with [`GSnapshot::is_live`]).
    pub fn snapshot(&self, target: &Target) -> Result<Vec<GSnapshot>> {
        Ok(self.snapshot_until(target, None)?.0)
    }

    /// The gs of `allgs` read before `until` (all of them when it is `None`), and whether that
    /// was all of them. Read a chunk at a time and decoded at once, so that a million
    /// goroutines cost their decoded snapshots (~100 bytes each), not their raw bytes too.
    pub fn snapshot_until(
        &self,
        target: &Target,
        until: Option<Instant>,
    ) -> Result<(Vec<GSnapshot>, bool)> {
        const CHUNK: usize = 4096;
        let mem = &target.memory;
        let ptr = mem.read_u64(self.allgs)?;
        let len = mem.read_u64(self.allgs + 8)?.min(MAX_GS) as usize;
        let list = mem.read_vec(ptr, len * 8)?;
        let addrs: Vec<u64> = list
            .chunks_exact(8)
            .map(|c| u64::from_le_bytes(c.try_into().unwrap()))
            .collect();
        let o = self.offsets;
        // A zero pc is no pc (the g of a C thread calling into Go has neither), also in a
        // PIE, where subtracting the load bias would make it an address.
        let link_time = |pc: u64| {
            if pc == 0 {
                0
            } else {
                pc.wrapping_sub(self.load_bias)
            }
        };
        let mut out = Vec::with_capacity(addrs.len());
        for chunk in addrs.chunks(CHUNK) {
            if until.is_some_and(|t| Instant::now() >= t) {
                return Ok((out, false));
            }
            let gs = mem.read_many(chunk, o.span)?;
            out.extend(chunk.iter().zip(gs).map(|(&addr, g)| {
                let w = |off: usize| read_u64(&g, off).unwrap_or(0);
                GSnapshot {
                    addr,
                    goid: w(o.goid),
                    status: u32::from_le_bytes(g[o.status..o.status + 4].try_into().unwrap())
                        & !G_SCAN,
                    waitreason: g[o.waitreason],
                    waitsince: w(o.waitsince) as i64,
                    startpc: link_time(w(o.startpc)),
                    gopc: link_time(w(o.gopc)),
                    parent_goid: o.parent_goid.map(w),
                    stack_lo: w(o.stack),
                    stack_hi: w(o.stack + o.stack_hi),
                    sched_pc: w(o.sched + o.sched_pc),
                    sched_sp: w(o.sched + o.sched_sp),
                    sched_bp: w(o.sched + o.sched_bp),
                }
            }));
        }
        Ok((out, true))
    }
}

/// The runtime's `isSystemGoroutine` as `newproc1` evaluates it when a goroutine starts, which
/// decides whether `runtime.NumGoroutine` counts it (`sched.ngsys`): goroutines started in
/// package runtime, except the main goroutine (and `corostart`, `handleAsyncEvent`). The
/// finalizer goroutine and the cleanup goroutines (1.25+) are system by this rule, and
/// `NumGoroutine` never counts them; Go's goroutine profile counts one of them while it runs
/// user code (a finalizer, a cleanup), which gotrace does not tell apart: its profile lacks
/// that goroutine then. Holds for Go 1.19 to 1.27 (runtime/traceback.go, proc.go).
pub fn is_system_goroutine(start_function: &str) -> bool {
    start_function.starts_with("runtime.")
        && !matches!(
            start_function,
            "runtime.main" | "runtime.corostart" | "runtime.handleAsyncEvent"
        )
}
