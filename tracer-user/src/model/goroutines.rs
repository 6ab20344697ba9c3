//! Goroutines created and exited while attached, seen by the (opt-in) goroutine probes.

use tracer_common::GoroutineCreated;

use super::capped::Capped;

/// Goroutines followed from creation to exit (an exit event lost must not leak an entry), `go`
/// statements, and parents counted.
const MAX_LIVE: usize = 1 << 18;
const MAX_SITES: usize = 4096;
const MAX_PARENTS: usize = 1 << 16;

/// Per `go` statement (by its PC).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SiteStats {
    pub created: u64,
    pub exited: u64,
    /// Entry PC of the goroutines' function (of the last one seen).
    pub startpc: u64,
    /// The creation stack of one of them (stack-trace map id; negative: none).
    pub stack_id: i64,
}

#[derive(Debug)]
pub struct Goroutines {
    /// Goroutines created while attached and still running: goid → creation site PC.
    live: Capped<u64, u64>,
    pub by_site: Capped<u64, SiteStats>,
    /// Goroutines created per parent goid.
    pub by_parent: Capped<u64, u64>,
    pub created: u64,
    pub exited: u64,
}

impl Default for Goroutines {
    fn default() -> Self {
        Goroutines {
            live: Capped::new(MAX_LIVE),
            by_site: Capped::new(MAX_SITES),
            by_parent: Capped::new(MAX_PARENTS),
            created: 0,
            exited: 0,
        }
    }
}

impl Goroutines {
    pub fn created(&mut self, e: &GoroutineCreated) {
        self.created += 1;
        self.live.insert(e.header.goid, e.gopc);
        let site = self.by_site.entry(e.gopc, SiteStats::default);
        site.created += 1;
        site.startpc = e.startpc;
        if site.stack_id < 0 || site.created == 1 {
            site.stack_id = e.stack_id;
        }
        *self.by_parent.entry(e.parent_goid, || 0) += 1;
    }

    /// Entries of its tables, and entries evicted from them.
    pub fn followed(&self) -> usize {
        self.live.len() + self.by_site.len() + self.by_parent.len()
    }

    pub fn evicted(&self) -> u64 {
        self.live.evicted() + self.by_site.evicted() + self.by_parent.evicted()
    }

    pub fn exited(&mut self, goid: u64) {
        self.exited += 1;
        if let Some(site) = self.live.remove(&goid) {
            if let Some(s) = self.by_site.get_mut(&site) {
                s.exited += 1;
            }
        }
    }
}
