//! GC and goroutine-stack telemetry over the session, one observation per GC cycle seen.

use serde::{Deserialize, Serialize};

use crate::goruntime::{allgs::Census, gcstats::GcSnapshot};

/// The state after one or more GC cycles (gotrace looks once per tick, so several quick cycles
/// can share one observation).
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct GcObservation {
    /// Seconds since attach.
    pub at_s: f64,
    #[serde(flatten)]
    pub gc: GcSnapshot,
    /// Live goroutines (what `runtime.NumGoroutine` counts) and the stack bytes every
    /// goroutine holds, the runtime's own included, when `allgs` is readable.
    pub goroutines: Option<u64>,
    pub stack_in_use: Option<u64>,
}

/// Observations kept: the latest ones, hours at one GC every few seconds; older ones are
/// dropped (and counted).
const MAX_OBSERVATIONS: usize = 4096;

#[derive(Clone, Debug, Default)]
pub struct GcTimeline {
    pub at_attach: Option<GcSnapshot>,
    pub latest: Option<GcSnapshot>,
    pub observations: std::collections::VecDeque<GcObservation>,
    /// Observations dropped to stay within [`MAX_OBSERVATIONS`].
    pub dropped: u64,
}

impl GcTimeline {
    /// Records `gc` if a cycle completed since the last observation.
    pub fn observe(&mut self, at_s: f64, gc: GcSnapshot, census: Option<Census>) {
        if self.at_attach.is_none() {
            self.at_attach = Some(gc);
        }
        let new_cycle = self.latest.is_none_or(|l| l.cycles != gc.cycles);
        self.latest = Some(gc);
        if new_cycle {
            if self.observations.len() == MAX_OBSERVATIONS {
                self.observations.pop_front();
                self.dropped += 1;
            }
            self.observations.push_back(GcObservation {
                at_s,
                gc,
                goroutines: census.map(|c| c.user),
                stack_in_use: census.map(|c| c.stack_bytes),
            });
        }
    }

    /// Cycles completed while attached: (all, forced).
    pub fn cycles_since_attach(&self) -> (u32, u32) {
        match (self.at_attach, self.latest) {
            (Some(a), Some(l)) => (
                l.cycles.wrapping_sub(a.cycles),
                l.forced.wrapping_sub(a.forced),
            ),
            _ => (0, 0),
        }
    }
}
