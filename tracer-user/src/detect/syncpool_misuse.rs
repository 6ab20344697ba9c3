//! `syncpool-misuse`: a `sync.Pool` that does not recycle. `Get` calls the pool's `New` only
//! when it has nothing to hand out, so in a pool whose objects come back (`Put`) `New` runs a
//! few times per GC cycle (the runtime empties pools over two cycles). Objects taken and never
//! put back make every `Get` allocate: the heap profile shows a steady stream of allocations
//! through `sync.(*Pool).Get`.

use serde_json::json;

use super::{caller_of, heap_stack, site_of, Finding};
use crate::{model::heap_series::HeapSeries, symbols::Symbolizer};

#[derive(Clone, Debug)]
pub struct Config {
    /// `New` calls (sampled, scaled) per GC cycle above which the pool is not recycling.
    pub min_new_per_cycle: u64,
    /// GC cycles observed before a verdict.
    pub min_cycles: u32,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            min_new_per_cycle: 256,
            min_cycles: 3,
        }
    }
}

fn is_pool_get(function: &str) -> bool {
    function.starts_with("sync.(*Pool).Get")
}

#[derive(Debug, Default)]
pub struct SyncPoolMisuse {
    pub config: Config,
}

impl SyncPoolMisuse {
    pub fn findings(&self, series: &HeapSeries, sym: &Symbolizer) -> Vec<Finding> {
        let mut out = Vec::new();
        for (bucket, points) in series.sites() {
            let (Some(first), Some(last)) = (points.front(), points.back()) else {
                continue;
            };
            let cycles = last.cycle.wrapping_sub(first.cycle);
            if cycles < self.config.min_cycles {
                continue;
            }
            let new_objects = last.alloc_objects.saturating_sub(first.alloc_objects);
            let per_cycle = new_objects / u64::from(cycles);
            if per_cycle < self.config.min_new_per_cycle {
                continue;
            }
            let stack = heap_stack(series, bucket, sym);
            if !stack.iter().any(|f| is_pool_get(&f.function)) {
                continue;
            }
            let site = caller_of(&stack, is_pool_get).unwrap_or_else(|| site_of(&stack));
            out.push(Finding {
                pattern: "syncpool-misuse",
                site,
                evidence: json!({
                    "signal": "not-put-back",
                    "new_objects_per_cycle": per_cycle,
                    "new_objects_per_s": (new_objects as f64 / (last.t() - first.t()).max(1e-3)).round(),
                    "new_bytes": last.alloc_bytes.saturating_sub(first.alloc_bytes),
                    "gc_cycles": cycles,
                    "new_function": site_of(&stack).function,
                }),
                stack,
                hint: "objects taken from this sync.Pool are not put back, so every Get allocates: Put each object back when done (defer pool.Put(x)), and reset it first".into(),
            });
        }
        out
    }
}
