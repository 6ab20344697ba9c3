//! Goroutines created and exited while attached.

use std::collections::HashMap;

use tracer_common::GoroutineCreated;

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

#[derive(Debug, Default)]
pub struct Goroutines {
    /// Goroutines created while attached and still running: goid → creation site PC.
    live: HashMap<u64, u64>,
    pub by_site: HashMap<u64, SiteStats>,
    /// Goroutines created per parent goid.
    pub by_parent: HashMap<u64, u64>,
    pub created: u64,
    pub exited: u64,
}

impl Goroutines {
    pub fn created(&mut self, e: &GoroutineCreated) {
        self.created += 1;
        self.live.insert(e.header.goid, e.gopc);
        let site = self.by_site.entry(e.gopc).or_default();
        site.created += 1;
        site.startpc = e.startpc;
        if site.stack_id < 0 || site.created == 1 {
            site.stack_id = e.stack_id;
        }
        *self.by_parent.entry(e.parent_goid).or_default() += 1;
    }

    pub fn exited(&mut self, goid: u64) {
        self.exited += 1;
        if let Some(site) = self.live.remove(&goid) {
            if let Some(s) = self.by_site.get_mut(&site) {
                s.exited += 1;
            }
        }
    }

    /// Goroutines created since attach that have not exited.
    pub fn live_since_attach(&self) -> usize {
        self.live.len()
    }
}
