//! How many goroutines the program has started, without a probe: goroutine ids come from
//! `sched.goidgen`, handed to each P in batches of 16 (`p.goidcache`..`p.goidcacheend`), and are
//! never reused. Ids handed out so far = `goidgen` minus what the Ps still hold in their caches:
//! exactly the goroutines created (plus the rare g of an extra M for cgo callbacks).

use super::{datasyms::DataSymbol, Field, Runtime};
use crate::{error::Result, target::Target, util::read_u64};

pub struct GoidCounter {
    goidgen: u64,
    allp: u64,
    cache: usize,
    cache_end: usize,
}

impl GoidCounter {
    pub fn new(target: &Target, runtime: &Runtime) -> Option<Self> {
        let o = |f| runtime.offsets.get(f);
        Some(GoidCounter {
            goidgen: runtime.variable(target, DataSymbol::Sched)? + o(Field::SchedGoidgen)?,
            allp: runtime.variable(target, DataSymbol::Allp)?,
            cache: o(Field::PGoidcache)? as usize,
            cache_end: o(Field::PGoidcacheend)? as usize,
        })
    }

    /// Goroutine ids handed out since the program started.
    pub fn created(&self, target: &Target) -> Result<u64> {
        let mem = &target.memory;
        let generated = mem.read_u64(self.goidgen)?;
        let ptr = mem.read_u64(self.allp)?;
        let len = mem.read_u64(self.allp + 8)?.min(1 << 16) as usize;
        let ps: Vec<u64> = mem
            .read_vec(ptr, len * 8)?
            .chunks_exact(8)
            .map(|c| u64::from_le_bytes(c.try_into().unwrap()))
            .filter(|p| *p != 0)
            .collect();
        let span = self.cache.max(self.cache_end) + 8;
        let unused: u64 = mem
            .read_many(&ps, span)?
            .iter()
            .map(|p| {
                let next = read_u64(p, self.cache).unwrap_or(0);
                let end = read_u64(p, self.cache_end).unwrap_or(0);
                end.saturating_sub(next)
            })
            .sum();
        Ok(generated.saturating_sub(unused))
    }
}
