//! The finalizer queue (`runtime.finq`): finalizers the GC found due, waiting for the single
//! finalizer goroutine to run them. A queue that grows means finalizers come faster than that
//! goroutine runs them, or one of them blocks it.

use super::{datasyms::DataSymbol, Field, Runtime};
use crate::{error::Result, target::Target};

/// A queue longer than any real program's; guards against a list changing under us.
const MAX_BLOCKS: usize = 1 << 20;

pub struct FinalizerQueue {
    finq: u64,
    next: u64,
    cnt: u64,
}

impl FinalizerQueue {
    pub fn new(target: &Target, runtime: &Runtime) -> Option<Self> {
        Some(FinalizerQueue {
            finq: runtime.variable(target, DataSymbol::Finq)?,
            next: runtime.offsets.get(Field::FinblockNext)?,
            cnt: runtime.offsets.get(Field::FinblockCnt)?,
        })
    }

    /// Finalizers queued and not yet run.
    pub fn len(&self, target: &Target) -> Result<u64> {
        let mem = &target.memory;
        let mut block = mem.read_u64(self.finq)?;
        let mut total = 0u64;
        for _ in 0..MAX_BLOCKS {
            if block == 0 {
                break;
            }
            total += u64::from(mem.read_u32(block + self.cnt)?);
            block = mem.read_u64(block + self.next)?;
        }
        Ok(total)
    }
}

/// The function the runtime's finalizer goroutine starts in (renamed in Go 1.25).
pub fn is_finalizer_goroutine(start_function: &str) -> bool {
    matches!(start_function, "runtime.runfinq" | "runtime.runFinalizers")
}
