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
pub mod timeline;

use tracer_common::ProbeKind;

use crate::{
    events::Event,
    goruntime::{allgs::Census, heapprof::HeapProfile},
    observe::Look,
};

pub use channels::Channels;
pub use goroutines::Goroutines;

/// Entries of the model's bounded tables (see [`Model::footprint`]).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Footprint {
    pub heap_sites: usize,
    pub goroutine_sites: usize,
    pub aged_objects: usize,
    pub gc_observations: usize,
    pub probed_goroutines: usize,
    pub probed_channels: usize,
    pub finalizer_sites: usize,
    /// Entries dropped (least recently seen first) to stay within bounds, since attach.
    pub evicted: u64,
}

#[derive(Debug, Default)]
pub struct Model {
    /// Looks whose walk of every goroutine the session's deadline cut short.
    pub looks_cut_short: u64,
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
    /// The latest heap profile read (refreshed after every GC cycle and at the end), and the
    /// first one: what the heap looked like when gotrace attached, to compare with.
    pub heap: Option<HeapProfile>,
    pub heap_at_attach: Option<HeapProfile>,
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
    /// Heap, goal, goroutines and GC cycles at every look (thinned as it fills).
    pub timeline: timeline::Timeline,
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
            Event::Malloc(_) => {}
        }
    }

    pub fn received(&self, kind: ProbeKind) -> u64 {
        self.received[kind as usize]
    }

    /// Takes in one look.
    pub(crate) fn observe(&mut self, look: &Look) {
        self.looks_cut_short += u64::from(look.cut_short);
        if let Some(g) = &look.goroutines {
            self.peak_goroutines = self.peak_goroutines.max(Some(g.census.user));
            self.census = Some(g.census);
            self.goroutine_sites.update(look.t, g);
        }
        if let Some(n) = look.goids_created {
            self.goids = Some(n);
        }
        self.timeline.observe(look.t, look.gc, self.census);
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
            if self.heap_at_attach.is_none() {
                self.heap_at_attach = Some(h.clone());
            }
            self.heap = Some(h.clone());
        }
    }

    /// How many entries each bounded table holds, and how many were evicted to stay within
    /// bounds: what report.json says of gotrace's own memory.
    pub fn footprint(&self) -> Footprint {
        Footprint {
            heap_sites: self.heap_series.followed(),
            goroutine_sites: self.goroutine_sites.followed(),
            aged_objects: self.ages.tracked(),
            gc_observations: self.gc.observations.len(),
            probed_goroutines: self.goroutines.followed(),
            probed_channels: self.channels.by_address.len() + self.channels.made.len(),
            finalizer_sites: self.finalizer_sites.followed(),
            evicted: self.heap_series.evicted()
                + self.goroutine_sites.evicted()
                + self.gc.dropped
                + self.goroutines.evicted()
                + self.channels.by_address.evicted()
                + self.channels.made.evicted()
                + self.finalizer_sites.evicted(),
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

#[cfg(test)]
mod tests {
    use super::*;

    impl Footprint {
        fn entries(&self) -> usize {
            self.heap_sites
                + self.goroutine_sites
                + self.aged_objects
                + self.gc_observations
                + self.probed_goroutines
                + self.probed_channels
                + self.finalizer_sites
        }
    }

    use crate::{
        goruntime::{
            allgs::GSnapshot, gcstats::GcSnapshot, heapprof::HeapRecord, specials::SpecialsScan,
            traceback::G_WAITING,
        },
        observe::{GoroutineLook, LookedG},
    };

    /// A week at one look a second would be 600 K looks; drive a million through the model,
    /// each bringing things never seen before (goroutine sites, heap buckets, channels,
    /// goroutines that never exit), and check that what it holds stops growing.
    #[test]
    fn a_million_looks_hold_no_more_than_half_a_million() {
        let mut model = Model::new(None, None);
        let mut at_500k = None;
        let mut goid = 0u64;
        for i in 0..1_000_000u64 {
            let t = i as f64;
            let gs = (0..4)
                .map(|k| {
                    goid += 1;
                    LookedG {
                        g: GSnapshot {
                            addr: 0xc000_0000 + goid * 0x100,
                            goid,
                            status: G_WAITING,
                            waitreason: 7,
                            waitsince: 0,
                            startpc: 0x40_0000 + k,
                            // A new `go` statement every look beside three steady ones.
                            gopc: 0x50_0000 + if k == 0 { 16 + i } else { k },
                            parent_goid: Some(1),
                            stack_lo: 0,
                            stack_hi: 8192,
                            sched_pc: 0,
                            sched_sp: 0,
                            sched_bp: 0,
                        },
                        system: false,
                        start_function: "main.worker".into(),
                    }
                })
                .collect();
            let cycle = (i / 10) as u32;
            let new_cycle = i % 10 == 0;
            let look = Look {
                t,
                goroutines: Some(GoroutineLook {
                    census: Default::default(),
                    gs,
                    wait_reasons: [(7, "chan receive".to_string())].into(),
                    stacks: Default::default(),
                }),
                goids_created: Some(goid),
                gc: Some(GcSnapshot {
                    cycles: cycle,
                    heap_in_use: i,
                    ..Default::default()
                }),
                // Every GC cycle brings new buckets (a program with ever new stacks).
                heap: new_cycle.then(|| HeapProfile {
                    records: (0..8)
                        .map(|k| HeapRecord {
                            bucket: 0x90_0000 + i * 8 + k,
                            stack: vec![0x40_1000 + k; 16],
                            object_size: 64,
                            allocs: i + k,
                            frees: k,
                        })
                        .collect(),
                    sample_rate: 512 * 1024,
                    time: std::time::SystemTime::UNIX_EPOCH,
                    duration: Default::default(),
                }),
                specials: new_cycle.then(|| {
                    (
                        cycle,
                        SpecialsScan {
                            profiled: (0..32)
                                .map(|k| (0xd000_0000 + i * 32 + k, 0x90_0000 + i * 8))
                                .collect(),
                            finalizers: 3,
                        },
                    )
                }),
                ..Look::default()
            };
            model.observe(&look);
            // Probe events about ever new channels and goroutines that never exit.
            model.channels.send(&tracer_common::ChanSend {
                header: Default::default(),
                chan: 0xe000_0000 + i * 96,
                qcount: 1,
                dataqsiz: 4,
                caller_pc: 0x40_2000,
            });
            model.goroutines.created(&tracer_common::GoroutineCreated {
                header: tracer_common::EventHeader {
                    goid: 1_000_000_000 + i,
                    ..Default::default()
                },
                parent_goid: i,
                gopc: 0x60_0000 + i,
                startpc: 0x40_0000,
                stack_id: -1,
            });
            model.finalizer_sites.set(0x70_0000 + i, 0);
            if i == 500_000 {
                at_500k = Some(model.footprint());
            }
        }
        let (half, all) = (at_500k.unwrap(), model.footprint());
        assert!(all.entries() <= half.entries(), "{half:?} then {all:?}");
        assert!(all.evicted > half.evicted, "{all:?}");
        assert!(
            all.heap_sites <= 16_384 && all.goroutine_sites <= 4096,
            "{all:?}"
        );
    }
}
