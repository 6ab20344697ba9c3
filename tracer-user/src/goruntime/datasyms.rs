//! Addresses of the runtime's global variables (`runtime.allgs`, `runtime.MemProfileRate`, ...).
//!
//! The symbol table has them, but `-ldflags=-s` removes it, and production binaries are usually
//! stripped. The code that uses a variable still names it, as a RIP-relative operand: each
//! variable here has an *anchor*, a small runtime function whose n-th distinct RIP-relative
//! operand (in instruction order) is the variable itself, at offset 0. Anchors were chosen from
//! the disassembly of every supported release (1.19, 1.21–1.27) as the ones that give the same
//! answer in all of them; the `datasyms` integration test checks each against the symbol table
//! of unstripped builds of every release, PIE and not.

use iced_x86::{Decoder, DecoderOptions, Instruction};
use serde::Serialize;

use super::{Field, Offsets};
use crate::binary::GoBinary;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize)]
pub enum DataSymbol {
    /// `[]*g`: every g ever allocated.
    Allgs,
    /// `uintptr`: `len(allgs)`, updated atomically.
    Allglen,
    /// `int`: the heap sampler's average bytes between samples (0: off).
    MemProfileRate,
    /// `*bucket`: head of the list of heap-profile buckets.
    Mbuckets,
    /// `runtime.mstats`.
    Memstats,
    /// `[]*p`.
    Allp,
    /// `runtime.gcControllerState`.
    GcController,
    /// `*finblock`: queued finalizers not yet run.
    Finq,
    /// `mProfCycleHolder`: the heap profile's cycle counter (which `future` slot is current).
    MProfCycle,
    /// `runtime.mheap`: the heap (its `allspans` lists every span).
    Mheap,
    /// `runtime.schedt`: the scheduler (`goidgen` counts goroutine ids handed out).
    Sched,
    /// `[...]string`: what the runtime prints for each `waitReason`.
    WaitReasonStrings,
    /// `[]*sync.Pool`: the pools used since the last GC, and those used before it (the GC
    /// moves `allPools` to `oldPools`).
    AllPools,
    OldPools,
}

impl DataSymbol {
    pub const ALL: &'static [DataSymbol] = &[
        DataSymbol::Allgs,
        DataSymbol::Allglen,
        DataSymbol::MemProfileRate,
        DataSymbol::Mbuckets,
        DataSymbol::Memstats,
        DataSymbol::Allp,
        DataSymbol::GcController,
        DataSymbol::Finq,
        DataSymbol::MProfCycle,
        DataSymbol::Mheap,
        DataSymbol::Sched,
        DataSymbol::WaitReasonStrings,
        DataSymbol::AllPools,
        DataSymbol::OldPools,
    ];

    pub fn name(self) -> &'static str {
        match self {
            DataSymbol::Allgs => "runtime.allgs",
            DataSymbol::Allglen => "runtime.allglen",
            DataSymbol::MemProfileRate => "runtime.MemProfileRate",
            DataSymbol::Mbuckets => "runtime.mbuckets",
            DataSymbol::Memstats => "runtime.memstats",
            DataSymbol::Allp => "runtime.allp",
            DataSymbol::GcController => "runtime.gcController",
            DataSymbol::Finq => "runtime.finq",
            DataSymbol::MProfCycle => "runtime.mProfCycle",
            DataSymbol::Mheap => "runtime.mheap_",
            DataSymbol::Sched => "runtime.sched",
            DataSymbol::WaitReasonStrings => "runtime.waitReasonStrings",
            DataSymbol::AllPools => "sync.allPools",
            DataSymbol::OldPools => "sync.oldPools",
        }
    }

    /// The anchor function, which of its distinct RIP-relative operands names the variable, and
    /// the field of the variable that operand points at (`None`: the variable itself).
    fn anchor(self) -> (&'static str, usize, Option<Field>) {
        let (function, index) = match self {
            // lock(&allglock); for _, gp := range allgs {...}
            DataSymbol::Allgs => ("runtime.forEachG", 1),
            // n := atomic.Loaduintptr(&allglen) ...
            DataSymbol::Allglen => ("runtime.forEachGRace", 0),
            // if rate := MemProfileRate; ...  (after mp.p / mcache0)
            DataSymbol::MemProfileRate => ("runtime.profilealloc", 1),
            // b := mbuckets (first use)
            DataSymbol::Mbuckets => ("runtime.mProf_FlushLocked", 0),
            DataSymbol::Memstats => ("runtime.(*mcache).releaseAll", 2),
            // for _, p := range allp
            DataSymbol::Allp => ("runtime.gcMarkTinyAllocs", 0),
            DataSymbol::GcController => ("runtime.gcControllerCommit", 1),
            DataSymbol::Finq => ("runtime.queuefinalizer", 2),
            // cycle := mProfCycle.read()
            DataSymbol::MProfCycle => ("runtime.mProf_Flush", 0),
            // the systemstack closure: lock(&mheap_.lock)
            DataSymbol::Mheap => ("runtime.allocmcache.func1", 0),
            // "unknown wait reason", then waitReasonStrings[w]
            DataSymbol::WaitReasonStrings => ("runtime.waitReason.String", 1),
            // for _, p := range oldPools (its pointer, then its length, oldPools+8) {...
            // the write barrier flag ...}; for _, p := range allPools
            DataSymbol::AllPools => ("sync.poolCleanup", 3),
            DataSymbol::OldPools => ("sync.poolCleanup", 0),
            // lock(&sched.gFree.lock): the lock is gFree's first field
            DataSymbol::Sched => {
                return ("runtime.markrootFreeGStacks", 0, Some(Field::SchedGFree))
            }
        };
        (function, index, None)
    }
}

/// How an address was found.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case", tag = "from")]
pub enum Located {
    Symtab {
        address: u64,
    },
    Code {
        address: u64,
        function: &'static str,
    },
}

impl Located {
    pub fn address(&self) -> u64 {
        match self {
            Located::Symtab { address } | Located::Code { address, .. } => *address,
        }
    }
}

/// The link-time address of `sym`: from the symbol table if present, else from its anchor.
/// `offsets` are needed for the variables whose anchor points inside them.
pub fn locate(binary: &GoBinary, offsets: Option<&Offsets>, sym: DataSymbol) -> Option<Located> {
    if let Some(address) = binary.symbol(sym.name()) {
        return Some(Located::Symtab { address });
    }
    locate_in_code(binary, offsets, sym)
}

/// The address decoded from the anchor function's code (ignoring the symbol table).
pub fn locate_in_code(
    binary: &GoBinary,
    offsets: Option<&Offsets>,
    sym: DataSymbol,
) -> Option<Located> {
    let (function, index, field) = sym.anchor();
    let field_offset = match field {
        Some(f) => offsets?.get(f)?,
        None => 0,
    };
    let func = binary.pclntab().find(function)?;
    let code = binary.code(&func)?;
    let address = rip_relative_targets(code, func.entry)
        .into_iter()
        .nth(index)?
        .checked_sub(field_offset)?;
    // A variable lives in a data section, never in the code.
    let in_data = binary.elf.sections.iter().any(|s| {
        matches!(
            s.name.as_str(),
            ".data" | ".bss" | ".noptrdata" | ".noptrbss" | ".data.rel.ro"
        ) && (s.addr..s.addr + s.size).contains(&address)
    });
    in_data.then_some(Located::Code { address, function })
}

/// Distinct targets of RIP-relative memory operands, in instruction order.
fn rip_relative_targets(code: &[u8], entry: u64) -> Vec<u64> {
    let mut decoder = Decoder::with_ip(64, code, entry, DecoderOptions::NONE);
    let mut insn = Instruction::default();
    let mut targets = Vec::new();
    while decoder.can_decode() {
        decoder.decode_out(&mut insn);
        if insn.is_ip_rel_memory_operand() {
            let t = insn.ip_rel_memory_address();
            if !targets.contains(&t) {
                targets.push(t);
            }
        }
    }
    targets
}
