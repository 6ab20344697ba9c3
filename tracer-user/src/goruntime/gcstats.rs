//! GC telemetry read from outside: cycles (automatic and forced) from `runtime.memstats`, heap
//! goal and heap sizes from the GC pacer (`runtime.gcController`). Fields and their meaning are
//! the same from Go 1.19 to 1.27; their offsets come from DWARF or the generated table.

use serde::{Deserialize, Serialize};

use super::{datasyms::DataSymbol, Field, Runtime};
use crate::{error::Result, target::Target};

/// The GC state at one moment.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct GcSnapshot {
    /// Completed GC cycles since the program started (`memstats.numgc`).
    pub cycles: u32,
    /// Of which forced by `runtime.GC()` or `debug.FreeOSMemory()` (`numforcedgc`).
    pub forced: u32,
    /// Heap size at which the next cycle starts (`gcPercentHeapGoal`; GOGC-based).
    pub heap_goal: u64,
    /// Heap bytes in use by spans (`heapInUse`: what `MemStats.HeapInuse` reports).
    pub heap_in_use: u64,
    /// Bytes marked live by the last cycle.
    pub heap_marked: u64,
    /// Live heap as the pacer sees it now (marked plus allocated since).
    pub heap_live: u64,
    /// Cumulative bytes allocated / freed.
    pub total_alloc: u64,
    pub total_free: u64,
    /// End of the last cycle, Unix nanoseconds (0: none yet).
    pub last_gc_unix_ns: u64,
    /// Cumulative stop-the-world pause time.
    pub pause_total_ns: u64,
}

pub struct GcReader {
    memstats: u64,
    controller: u64,
    f: [u64; 10],
}

impl GcReader {
    pub fn new(target: &Target, runtime: &Runtime) -> Option<Self> {
        let addr = |s| runtime.variable(target, s);
        let o = |f| runtime.offsets.get(f);
        Some(GcReader {
            memstats: addr(DataSymbol::Memstats)?,
            controller: addr(DataSymbol::GcController)?,
            f: [
                o(Field::MstatsNumgc)?,
                o(Field::MstatsNumforcedgc)?,
                o(Field::MstatsLastGcUnix)?,
                o(Field::MstatsPauseTotalNs)?,
                o(Field::GcHeapGoal)?,
                o(Field::GcHeapInUse)?,
                o(Field::GcHeapMarked)?,
                o(Field::GcHeapLive)?,
                o(Field::GcTotalAlloc)?,
                o(Field::GcTotalFree)?,
            ],
        })
    }

    pub fn read(&self, target: &Target) -> Result<GcSnapshot> {
        let m = &target.memory;
        let [numgc, forced, last_gc, pause, goal, in_use, marked, live, alloc, free] = self.f;
        Ok(GcSnapshot {
            cycles: m.read_u32(self.memstats + numgc)?,
            forced: m.read_u32(self.memstats + forced)?,
            last_gc_unix_ns: m.read_u64(self.memstats + last_gc)?,
            pause_total_ns: m.read_u64(self.memstats + pause)?,
            heap_goal: m.read_u64(self.controller + goal)?,
            heap_in_use: m.read_u64(self.controller + in_use)?,
            heap_marked: m.read_u64(self.controller + marked)?,
            heap_live: m.read_u64(self.controller + live)?,
            total_alloc: m.read_u64(self.controller + alloc)?,
            total_free: m.read_u64(self.controller + free)?,
        })
    }
}
