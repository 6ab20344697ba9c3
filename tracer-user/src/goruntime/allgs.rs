//! The runtime's list of every goroutine (`runtime.allgs`), read from the target's memory.

use super::{
    datasyms::{self, DataSymbol},
    Field, Runtime,
};
use crate::{error::Result, target::Target};

/// `_Gdead`: a g on a free list, not a goroutine.
const G_DEAD: u32 = 6;
/// `_Gidle`: just allocated, not yet initialised.
const G_IDLE: u32 = 0;
/// Set in the status while the GC scans the stack; not a state of its own.
const G_SCAN: u32 = 0x1000;

/// Goroutines alive at one moment.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Census {
    /// Every goroutine that is not dead, runtime ones included.
    pub all: u64,
    /// What `runtime.NumGoroutine` counts: without the runtime's own goroutines.
    pub user: u64,
}

/// Address of the `allgs` slice header in the running process, if gotrace can find it.
pub fn allgs_address(target: &Target) -> Option<u64> {
    datasyms::locate(&target.binary, DataSymbol::Allgs).map(|l| l.address() + target.load_bias)
}

/// Counts live goroutines by walking `allgs`. `None` when the slice cannot be located.
pub fn census(target: &Target, runtime: &Runtime) -> Option<Result<Census>> {
    let addr = allgs_address(target)?;
    let (Some(status_off), Some(startpc_off)) = (
        runtime.offsets.get(Field::GAtomicstatus),
        runtime.offsets.get(Field::GStartpc),
    ) else {
        return None;
    };
    Some(read_census(target, addr, status_off, startpc_off))
}

fn read_census(target: &Target, allgs: u64, status_off: u64, startpc_off: u64) -> Result<Census> {
    let mem = &target.memory;
    let ptr = mem.read_u64(allgs)?;
    let len = mem.read_u64(allgs + 8)?.min(10_000_000) as usize;
    let gs = mem.read_vec(ptr, len * 8)?;
    let mut census = Census::default();
    let pcln = target.binary.pclntab();
    for g in gs
        .chunks_exact(8)
        .map(|c| u64::from_le_bytes(c.try_into().unwrap()))
    {
        let status = mem.read_u32(g + status_off)? & !G_SCAN;
        if status == G_DEAD || status == G_IDLE {
            continue;
        }
        census.all += 1;
        let startpc = mem.read_u64(g + startpc_off)?;
        let name = pcln
            .func_for_pc(startpc.wrapping_sub(target.load_bias))
            .map(|f| f.name)
            .unwrap_or_default();
        if !is_system_goroutine(&name) {
            census.user += 1;
        }
    }
    Ok(census)
}

/// The runtime's `isSystemGoroutine`: goroutines started in package runtime, except the main
/// goroutine (and the finalizer goroutine while it runs a user finalizer, not modelled here).
pub fn is_system_goroutine(start_function: &str) -> bool {
    start_function.starts_with("runtime.")
        && !matches!(
            start_function,
            "runtime.main" | "runtime.corostart" | "runtime.handleAsyncEvent"
        )
}
