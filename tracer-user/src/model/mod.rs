//! What the events say, aggregated while attached.

pub mod channels;
pub mod gc;
pub mod goroutines;
pub mod heap;
pub mod heap_series;

use tracer_common::ProbeKind;

use crate::events::Event;

pub use channels::Channels;
pub use goroutines::Goroutines;

/// One `SetFinalizer` call site.
#[derive(Clone, Copy, Debug, Default)]
pub struct FinalizerSite {
    pub calls: u64,
    /// Type descriptor of the objects it set finalizers on (the latest call's).
    pub obj_type: u64,
}

#[derive(Debug, Default)]
pub struct Model {
    pub goroutines: Goroutines,
    pub channels: Channels,
    /// SetFinalizer calls per call site (return address into the caller).
    pub finalizer_sites: std::collections::HashMap<u64, FinalizerSite>,
    pub alloc_sample_bytes: u64,
    pub malloc_bytes: u64,
    /// Events received from the ring buffer, per probe.
    pub received: [u64; tracer_common::PROBE_KINDS],
}

impl Model {
    pub fn apply(&mut self, event: &Event) {
        self.received[event.header().kind as usize % tracer_common::PROBE_KINDS] += 1;
        match event {
            Event::GoroutineCreated(e) => self.goroutines.created(e),
            Event::GoroutineExited(e) => self.goroutines.exited(e.header.goid),
            Event::ChanSend(e) => self.channels.send(e),
            Event::ChanMade(e) => self.channels.made(e),
            Event::FinalizerSet(e) => {
                let site = self.finalizer_sites.entry(e.caller_pc).or_default();
                site.calls += 1;
                site.obj_type = e.obj_type;
            }
            Event::AllocSample(e) => self.alloc_sample_bytes += e.size,
            Event::Malloc(e) => self.malloc_bytes += e.size,
        }
    }

    pub fn received(&self, kind: ProbeKind) -> u64 {
        self.received[kind as usize]
    }
}
