//! The third stage: what gotrace knows of the target, accumulated from looks and probe events.
//! Everything here is bounded: time series in fixed-size windows, tables capped with the least
//! recently seen entry evicted (see [`capped`]), so a session attached for a week holds no more
//! than one attached for an hour.

pub mod capped;
pub mod channels;
pub mod finalizers;
pub mod gc;
pub mod goroutine_sites;
pub mod goroutines;
pub mod heap;
pub mod heap_series;

use tracer_common::ProbeKind;

use crate::{
    events::Event,
    goruntime::{allgs::Census, heapprof::HeapProfile},
    observe::Look,
};

pub use channels::Channels;
pub use goroutines::Goroutines;

#[derive(Debug, Default)]
pub struct Model {
    // From probe events.
    pub goroutines: Goroutines,
    pub channels: Channels,
    pub finalizer_sites: finalizers::FinalizerSites,
    /// Events received from the ring buffer, per probe.
    pub received: [u64; tracer_common::PROBE_KINDS],

    // From looks.
    /// Goroutines at attach, and at the latest look that counted them.
    pub census_at_start: Option<Census>,
    pub census: Option<Census>,
    /// Goroutine ids handed out by the runtime: at attach, and at the latest look.
    pub goids_at_attach: Option<u64>,
    pub goids: Option<u64>,
    pub gc: gc::GcTimeline,
    /// The latest heap profile read (refreshed after every GC cycle and at the end).
    pub heap: Option<HeapProfile>,
    /// Cycles survived by each live sampled object, updated after every GC cycle.
    pub ages: heap::AgeTracker,
    /// Each allocation site's heap values per GC cycle.
    pub heap_series: heap_series::HeapSeries,
    /// Objects with a finalizer set, at the latest walk of the heap's specials.
    pub finalizers_pending: Option<u64>,
    pub goroutine_sites: goroutine_sites::GoroutineSites,
    /// The most heap in use (runtime's count) and user goroutines seen at any look.
    pub peak_heap_in_use: Option<u64>,
    pub peak_goroutines: Option<u64>,
}

impl Model {
    /// A model that starts from what was read at attach.
    pub fn new(census_at_start: Option<Census>, goids_at_attach: Option<u64>) -> Self {
        Model {
            census_at_start,
            census: census_at_start,
            goids_at_attach,
            goids: goids_at_attach,
            ..Model::default()
        }
    }

    pub fn apply(&mut self, event: &Event) {
        self.received[event.header().kind as usize % tracer_common::PROBE_KINDS] += 1;
        match event {
            Event::GoroutineCreated(e) => self.goroutines.created(e),
            Event::GoroutineExited(e) => self.goroutines.exited(e.header.goid),
            Event::ChanSend(e) => self.channels.send(e),
            Event::ChanMade(e) => self.channels.made(e),
            Event::FinalizerSet(e) => self.finalizer_sites.set(e.caller_pc, e.obj_type),
            // Counted by the kernel side (hits); the events carry nothing the model keeps.
            Event::AllocSample(_) | Event::Malloc(_) => {}
        }
    }

    pub fn received(&self, kind: ProbeKind) -> u64 {
        self.received[kind as usize]
    }

    /// Takes in one look.
    pub(crate) fn observe(&mut self, look: &Look) {
        if let Some(g) = &look.goroutines {
            self.peak_goroutines = self.peak_goroutines.max(Some(g.census.user));
            self.census = Some(g.census);
            self.goroutine_sites.update(look.t, g);
        }
        if let Some(n) = look.goids_created {
            self.goids = Some(n);
        }
        let Some(gc) = look.gc else {
            return;
        };
        self.peak_heap_in_use = self.peak_heap_in_use.max(Some(gc.heap_in_use));
        self.gc.observe(look.t, gc, self.census);
        if let Some((cycle, scan)) = &look.specials {
            self.ages.update(*cycle, &scan.profiled);
            self.finalizers_pending = Some(scan.finalizers);
        }
        if let Some(h) = &look.heap {
            self.heap_series.update(look.t, gc.cycles, h);
            self.heap = Some(h.clone());
        }
    }

    /// Channels the probes told of, for the observer to follow.
    pub fn known_channels(&self) -> Vec<u64> {
        self.channels
            .by_address
            .keys()
            .chain(self.channels.made.keys())
            .copied()
            .collect()
    }
}
