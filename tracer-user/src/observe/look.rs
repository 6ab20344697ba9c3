//! A `Look`: what one tick read of the target's runtime, as plain owned data. The model and the
//! detectors work from looks only; none of them reads process memory.

use std::{cell::RefCell, collections::HashMap, sync::Arc};

use crate::{
    binary::pclntab::Pclntab,
    goruntime::{
        allgs::{is_system_goroutine, Census, GSnapshot},
        channels::ChanState,
        gcstats::GcSnapshot,
        heapprof::HeapProfile,
        pools::PoolContents,
        specials::SpecialsScan,
    },
    symbols::Frame,
    util::FastMap,
};

/// One tick's reading. Parts are `None` when this tick did not read them: the heavier reads
/// (every goroutine, the heap's specials) are spaced to stay within the read budget, and the
/// heap profile changes only when a GC cycle publishes a new one.
#[derive(Clone, Debug, Default)]
pub struct Look {
    /// Seconds since attach.
    pub t: f64,
    pub goroutines: Option<GoroutineLook>,
    /// Goroutine ids the runtime has handed out (`sched.goidgen`): goroutines ever started.
    pub goids_created: Option<u64>,
    pub gc: Option<GcSnapshot>,
    /// A heap profile newer than the previous look's (after a GC cycle, and at the first look).
    pub heap: Option<HeapProfile>,
    /// Live sampled objects and pending finalizers, with the GC cycle they were read after.
    pub specials: Option<(u32, SpecialsScan)>,
    /// Finalizers queued to run (`runtime.finq`), read with the goroutines.
    pub finalizer_queue: Option<u64>,
    /// Buffered channels followed (those goroutines wait on, and those probes named), read with
    /// the goroutines.
    pub channels: Option<Vec<ChannelLook>>,
    /// Every `sync.Pool`'s contents, read with the goroutines.
    pub pools: Option<Vec<PoolContents>>,
    /// Outstanding C allocations per stack (`--cgo-malloc`).
    pub c_stacks: Option<Vec<CStackLook>>,
    /// The walk of every goroutine was cut short by the session's deadline (then `goroutines`
    /// is `None`: a part of them would read as the rest having exited).
    pub cut_short: bool,
}

/// Every goroutine at one instant.
#[derive(Clone, Debug, Default)]
pub struct GoroutineLook {
    pub census: Census,
    pub gs: Vec<LookedG>,
    /// The runtime's names of the wait reasons that occur (`waitReasonStrings`).
    pub wait_reasons: HashMap<u8, String>,
    /// Stacks (link-time return PCs, innermost first) of the goroutines findings point at:
    /// one blocked goroutine per `go` statement, the finalizer goroutine, and the goroutines
    /// queued on followed channels. By the g's address.
    pub stacks: HashMap<u64, Vec<u64>>,
}

impl GoroutineLook {
    pub fn wait_reason(&self, code: u8) -> &str {
        self.wait_reasons.get(&code).map_or("", String::as_str)
    }

    pub fn stack(&self, g_addr: u64) -> Option<&[u64]> {
        self.stacks.get(&g_addr).map(Vec::as_slice)
    }

    /// Live goroutines of the program, the runtime's own left out (what
    /// `runtime.NumGoroutine` counts).
    pub fn user(&self) -> impl Iterator<Item = &GSnapshot> {
        self.gs.iter().filter(|g| g.is_user()).map(|g| &g.g)
    }
}

/// One goroutine, and whether it is one of the runtime's own.
#[derive(Clone, Debug)]
pub struct LookedG {
    pub g: GSnapshot,
    pub system: bool,
    /// Its start function, as the pclntab names it.
    pub start_function: Arc<str>,
}

impl LookedG {
    /// A live goroutine of the program: what `runtime.NumGoroutine` counts.
    pub fn is_user(&self) -> bool {
        !self.system && self.g.is_live()
    }
}

/// The one place that tells the runtime's own goroutines from the program's (every count,
/// profile and dump goes through it, so that they agree with `runtime.NumGoroutine`).
#[derive(Debug, Default)]
pub struct Classifier {
    /// Start function names by entry PC: a program has a few `go` statements and a million
    /// goroutines.
    names: RefCell<FastMap<u64, Arc<str>>>,
}

impl Classifier {
    pub fn classify(&self, pcln: &Pclntab, gs: Vec<GSnapshot>) -> Vec<LookedG> {
        let mut names = self.names.borrow_mut();
        gs.into_iter()
            .map(|g| {
                let start_function = names
                    .entry(g.startpc)
                    .or_insert_with(|| {
                        pcln.func_for_pc(g.startpc)
                            .map(|f| f.name)
                            .unwrap_or_default()
                            .into()
                    })
                    .clone();
                LookedG {
                    system: is_system_goroutine(&start_function),
                    start_function,
                    g,
                }
            })
            .collect()
    }
}

/// Counts the live goroutines.
pub fn census(gs: &[LookedG]) -> Census {
    let mut census = Census::default();
    for g in gs.iter().filter(|g| g.g.is_live()) {
        census.all += 1;
        census.stack_bytes += g.g.stack_hi.saturating_sub(g.g.stack_lo);
        census.user += u64::from(g.is_user());
    }
    census
}

#[derive(Clone, Copy, Debug)]
pub struct ChannelLook {
    pub addr: u64,
    pub state: ChanState,
}

/// One C allocation stack's outstanding memory.
#[derive(Clone, Debug)]
pub struct CStackLook {
    pub stack_id: i64,
    pub bytes: i64,
    pub blocks: i64,
    /// Its frames, innermost first (C and Go).
    pub frames: Arc<[Frame]>,
}
