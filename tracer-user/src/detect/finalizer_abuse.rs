//! `finalizer-abuse`: `runtime.SetFinalizer` used as a destructor. Every finalized object
//! survives one more GC cycle, and all finalizers run one at a time on a single goroutine: a
//! finalizer that blocks, or finalizers set faster than that goroutine runs them, make the
//! queue (`runtime.finq`) and the heap grow. Signals:
//! * the finalizer goroutine stuck in a user finalizer (blocked on something else than waiting
//!   for work) for longer than a threshold — with the finalizer's stack;
//! * the queue of due finalizers growing over successive looks.
//!
//! With `--finalizer-sites`, the `SetFinalizer` call sites and their rates say where.

use std::collections::VecDeque;

use serde_json::json;

use super::{goroutine_stack, Finding};
use crate::{
    goruntime::{
        allgs::GSnapshot,
        finalizers::is_finalizer_goroutine,
        traceback::{Tracebacks, G_RUNNING, G_WAITING},
    },
    session::SetFinalizerSite,
    symbols::{Frame, Symbolizer},
    target::Target,
};

#[derive(Clone, Debug)]
pub struct Config {
    /// The finalizer goroutine inside one user finalizer this long: reported.
    pub stuck_s: f64,
    /// The queue must hold at least this many finalizers ...
    pub min_queue: u64,
    /// ... and have grown over this many consecutive looks.
    pub growing_looks: usize,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            stuck_s: 5.0,
            min_queue: 1000,
            growing_looks: 4,
        }
    }
}

/// The runtime's wait reason of an idle finalizer goroutine.
const FINALIZER_WAIT: &str = "finalizer wait";

#[derive(Debug, Default)]
pub struct FinalizerAbuse {
    pub config: Config,
    queue: VecDeque<(f64, u64)>,
    /// Since when the finalizer goroutine has been busy (not idle), and a snapshot of it.
    busy_since: Option<f64>,
    fing: Option<GSnapshot>,
    fing_state: String,
}

impl FinalizerAbuse {
    pub fn new(config: Config) -> Self {
        FinalizerAbuse {
            config,
            ..Default::default()
        }
    }

    /// One look: the queue length and the finalizer goroutine's state.
    pub fn update(
        &mut self,
        t: f64,
        queue: Option<u64>,
        snapshot: &[GSnapshot],
        target: &Target,
        tb: &Tracebacks,
    ) {
        if let Some(q) = queue {
            self.queue.push_back((t, q));
            if self.queue.len() > 64 {
                self.queue.pop_front();
            }
        }
        let pcln = target.binary.pclntab();
        let fing = snapshot.iter().find(|g| {
            g.is_live()
                && pcln
                    .func_for_pc(g.startpc)
                    .is_some_and(|f| is_finalizer_goroutine(&f.name))
        });
        let Some(g) = fing else {
            self.busy_since = None;
            return;
        };
        let state = match g.status {
            G_WAITING => tb.wait_reason(target, g.waitreason).unwrap_or_default(),
            G_RUNNING => "running".into(),
            _ => "runnable".into(),
        };
        let idle = g.status == G_WAITING && state == FINALIZER_WAIT;
        if idle {
            self.busy_since = None;
        } else if self.busy_since.is_none() {
            self.busy_since = Some(t);
        }
        self.fing = Some(g.clone());
        self.fing_state = state;
    }

    /// `set_sites`: SetFinalizer call sites since attach, busiest first.
    pub fn findings(
        &self,
        t: f64,
        elapsed_s: f64,
        set_sites: &[SetFinalizerSite],
        target: &Target,
        tb: &Tracebacks,
        sym: &Symbolizer,
    ) -> Vec<Finding> {
        let c = &self.config;
        let stuck = self.busy_since.map(|s| t - s).filter(|s| *s >= c.stuck_s);
        let queue_now = self.queue.back().map_or(0, |q| q.1);
        let tail: Vec<u64> = self
            .queue
            .iter()
            .rev()
            .take(c.growing_looks)
            .map(|q| q.1)
            .collect();
        let growing = tail.len() == c.growing_looks
            && queue_now >= c.min_queue
            && tail.windows(2).all(|w| w[0] > w[1]);
        if stuck.is_none() && !growing {
            return Vec::new();
        }
        // The blocked finalizer's own frames (the runtime's loop around it hidden).
        let stack: Vec<Frame> = self
            .fing
            .as_ref()
            .filter(|g| g.status != G_RUNNING)
            .map(|g| goroutine_stack(target, tb, sym, g))
            .unwrap_or_default();
        let top_sites: Vec<_> = set_sites
            .iter()
            .take(5)
            .map(|s| {
                json!({
                    "site": s.site,
                    "calls": s.calls,
                    "per_s": (s.calls as f64 / elapsed_s.max(1e-3)).round(),
                    "object_type": s.object_type,
                })
            })
            .collect();
        // The finding points at the busiest SetFinalizer call, else at the stuck finalizer.
        let site = set_sites
            .first()
            .map(|s| s.site.clone())
            // The finalizer itself: the outermost frame above the runtime's finalizer loop.
            .or_else(|| stack.last().cloned())
            .unwrap_or_else(|| Frame::unknown(0));
        let first_queue = self.queue.front().map_or(0, |q| q.1);
        vec![Finding {
            pattern: "finalizer-abuse",
            site,
            stack,
            evidence: json!({
                "signal": if stuck.is_some() { "finalizer-blocked" } else { "queue-growing" },
                "finalizer_goroutine_state": self.fing_state,
                "busy_s": stuck.map(f64::round),
                "queue": queue_now,
                "queue_growth": queue_now.saturating_sub(first_queue),
                "set_finalizer_sites": top_sites,
            }),
            hint: "finalizers run one at a time on one goroutine and keep their objects alive an extra GC cycle: close resources explicitly (defer Close) instead of SetFinalizer, and never block inside a finalizer".into(),
        }]
    }
}
