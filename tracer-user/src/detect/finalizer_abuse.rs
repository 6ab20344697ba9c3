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

use super::{config_defaults, goroutine_stack, Context, Detector, Finding};
use crate::{
    goruntime::{
        finalizers::is_finalizer_goroutine,
        traceback::{G_RUNNING, G_WAITING},
    },
    observe::Look,
    symbols::Frame,
};

pub const PATTERN: &str = "finalizer-abuse";

#[derive(Clone, Debug, clap::Args)]
#[group(skip)]
pub struct Config {
    /// finalizer-abuse: time the finalizer goroutine may spend in one finalizer.
    #[arg(id = "finalizer-stuck", long = "finalizer-stuck", value_name = "DUR", default_value = "5s", value_parser = crate::units::parse_duration)]
    pub stuck: std::time::Duration,
    /// The queue must hold at least this many finalizers ...
    #[arg(skip = 1000u64)]
    pub min_queue: u64,
    /// ... and have grown over this many consecutive looks.
    #[arg(skip = 4usize)]
    pub growing_looks: usize,
}

config_defaults!(Config);

/// The runtime's wait reason of an idle finalizer goroutine.
const FINALIZER_WAIT: &str = "finalizer wait";

pub struct FinalizerAbuse {
    config: Config,
    queue: VecDeque<(f64, u64)>,
    /// Since when the finalizer goroutine has been busy (not idle), where it is, and its state.
    busy_since: Option<f64>,
    stack: Vec<Frame>,
    fing_state: String,
}

impl FinalizerAbuse {
    pub fn new(config: Config) -> Self {
        FinalizerAbuse {
            config,
            queue: VecDeque::new(),
            busy_since: None,
            stack: Vec::new(),
            fing_state: String::new(),
        }
    }
}

impl Detector for FinalizerAbuse {
    /// One look: the queue length and the finalizer goroutine's state.
    fn observe(&mut self, look: &Look, cx: &Context<'_>) {
        let Some(gs) = &look.goroutines else {
            return;
        };
        let t = look.t;
        if let Some(q) = look.finalizer_queue {
            self.queue.push_back((t, q));
            if self.queue.len() > 64 {
                self.queue.pop_front();
            }
        }
        let fing = gs
            .gs
            .iter()
            .find(|g| g.g.is_live() && is_finalizer_goroutine(&g.start_function));
        let Some(g) = fing.map(|g| &g.g) else {
            self.busy_since = None;
            return;
        };
        let state = match g.status {
            G_WAITING => gs.wait_reason(g.waitreason).to_string(),
            G_RUNNING => "running".into(),
            _ => "runnable".into(),
        };
        let idle = g.status == G_WAITING && state == FINALIZER_WAIT;
        if idle {
            self.busy_since = None;
        } else if self.busy_since.is_none() {
            self.busy_since = Some(t);
        }
        // The blocked finalizer's own frames (the runtime's loop around it hidden).
        self.stack = match (g.status, gs.stack(g.addr)) {
            (G_RUNNING, _) | (_, None) => Vec::new(),
            (_, Some(pcs)) => goroutine_stack(pcs, cx.sym),
        };
        self.fing_state = state;
    }

    /// With `--finalizer-sites`, the SetFinalizer call sites since attach, busiest first.
    fn findings(&self, cx: &Context<'_>) -> Vec<Finding> {
        let c = &self.config;
        let t = cx.t;
        let stuck = self
            .busy_since
            .map(|s| t - s)
            .filter(|s| *s >= c.stuck.as_secs_f64());
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
        let stack = self.stack.clone();
        let set_sites = cx
            .model
            .finalizer_sites
            .named(cx.binary, cx.offsets, cx.load_bias, cx.sym);
        let top_sites: Vec<_> = set_sites
            .iter()
            .take(5)
            .map(|s| {
                json!({
                    "site": s.site,
                    "calls": s.calls,
                    "per_s": (s.calls as f64 / t.max(1e-3)).round(),
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
            pattern: PATTERN,
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
