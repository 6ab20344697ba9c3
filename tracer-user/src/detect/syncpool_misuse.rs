//! `syncpool-misuse`: a `sync.Pool` that does not recycle, or that recycles objects too large.
//!
//! Not put back: `Get` calls the pool's `New` only when it has nothing to hand out, so in a
//! pool whose objects come back (`Put`) `New` runs a few times per GC cycle (the runtime empties
//! pools over two cycles). Objects taken and never put back make every `Get` allocate: the heap
//! profile shows a steady stream of allocations through `sync.(*Pool).Get`.
//!
//! Oversized: a pool hands out whatever was put back, so under steady traffic each pooled object
//! ends up as large as the largest use it ever served (a `bytes.Buffer` that once held a 10 MiB
//! response keeps its 10 MiB), and the pool pins that memory for good (golang/go#23199). Seen by
//! reading the pools' contents: objects above a size, look after look.

use std::collections::{HashMap, VecDeque};

use serde_json::json;

use super::{caller_of, config_defaults, heap_stack, site_of, Context, Detector, Finding};
use crate::{goruntime::pools::PoolContents, observe::Look, symbols::Frame};

pub const PATTERN: &str = "syncpool-misuse";

#[derive(Clone, Debug, clap::Args)]
#[group(skip)]
pub struct Config {
    /// syncpool-misuse: new objects per GC cycle through sync.Pool.Get that count.
    #[arg(
        id = "pool-new-per-cycle",
        long = "pool-new-per-cycle",
        value_name = "N",
        default_value_t = 256
    )]
    pub min_new_per_cycle: u64,
    /// GC cycles observed before a verdict.
    #[arg(skip = 3u32)]
    pub min_cycles: u32,
    /// syncpool-misuse: bytes a pooled object must hold (with what it points to) to be
    /// oversized, when a pool keeps one look after look.
    #[arg(id = "pool-oversized", long = "pool-oversized", value_name = "SIZE", default_value = "1MiB", value_parser = crate::units::parse_size)]
    pub oversized_bytes: u64,
    /// ... when the pool holds one at this many consecutive looks.
    #[arg(skip = 3usize)]
    pub oversized_looks: usize,
}

config_defaults!(Config);

/// One look at one pool.
#[derive(Clone, Copy, Debug)]
struct PoolLook {
    objects: usize,
    pooled_bytes: u64,
    largest: u64,
    oversized: usize,
}

fn is_pool_get(function: &str) -> bool {
    function.starts_with("sync.(*Pool).Get")
}

pub struct SyncPoolMisuse {
    config: Config,
    /// Recent looks per pool (by address), with its `New` function's address.
    pools: HashMap<u64, (u64, VecDeque<PoolLook>)>,
}

impl SyncPoolMisuse {
    pub fn new(config: Config) -> Self {
        SyncPoolMisuse {
            config,
            pools: HashMap::new(),
        }
    }

    /// One look at every pool's contents. A pool absent from the look holds nothing.
    fn update(&mut self, contents: &[PoolContents]) {
        let keep = self.config.oversized_looks.max(1);
        let limit = self.config.oversized_bytes;
        self.pools
            .retain(|addr, _| contents.iter().any(|c| c.pool == *addr));
        for c in contents {
            let (new_pc, looks) = self.pools.entry(c.pool).or_default();
            *new_pc = c.new_pc;
            looks.push_back(PoolLook {
                objects: c.objects.len(),
                pooled_bytes: c.objects.iter().sum(),
                largest: c.objects.iter().copied().max().unwrap_or(0),
                oversized: c.objects.iter().filter(|b| **b >= limit).count(),
            });
            if looks.len() > keep {
                looks.pop_front();
            }
        }
    }

    /// Pools that held an oversized object at each of the recent looks.
    fn oversized(&self, cx: &Context<'_>) -> Vec<Finding> {
        let c = &self.config;
        let mut out = Vec::new();
        for (addr, (new_pc, looks)) in &self.pools {
            if looks.len() < c.oversized_looks.max(1) || looks.iter().any(|l| l.oversized == 0) {
                continue;
            }
            let now = looks.back().copied().unwrap_or(PoolLook {
                objects: 0,
                pooled_bytes: 0,
                largest: 0,
                oversized: 0,
            });
            // The pool is named by the function that fills it; a pool without `New` by its
            // variable, when the symbol table is there.
            let variable = cx.binary.symbol_at(addr.wrapping_sub(cx.load_bias));
            let site = match *new_pc {
                0 => Frame::unknown(*addr),
                pc => cx.sym.frame(pc.wrapping_sub(cx.load_bias)),
            };
            out.push(Finding {
                pattern: PATTERN,
                stack: vec![site.clone()],
                site,
                evidence: json!({
                    "signal": "oversized",
                    "pool": variable.unwrap_or_else(|| format!("{addr:#x}")),
                    "objects_pooled": now.objects,
                    "oversized_objects": now.oversized,
                    "largest_object_bytes": now.largest,
                    "pooled_bytes": now.pooled_bytes,
                    "looks": looks.len(),
                }),
                hint: "this sync.Pool keeps objects as large as the largest use they ever served: before Put, drop objects above a cap (fmt drops buffers over 64 KiB), or keep one pool per size class".into(),
            });
        }
        out
    }

    /// Pools whose `New` runs for most `Get`s.
    fn not_put_back(&self, cx: &Context<'_>) -> Vec<Finding> {
        let (series, sym) = (&cx.model.heap_series, cx.sym);
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
                pattern: PATTERN,
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

impl Detector for SyncPoolMisuse {
    fn observe(&mut self, look: &Look, _cx: &Context<'_>) {
        if let Some(pools) = &look.pools {
            self.update(pools);
        }
    }

    fn findings(&self, cx: &Context<'_>) -> Vec<Finding> {
        let mut out = self.not_put_back(cx);
        out.extend(self.oversized(cx));
        out
    }
}
