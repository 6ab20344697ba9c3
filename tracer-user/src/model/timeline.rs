//! The session's timeline: heap in use against the GC's goal, goroutines, stack bytes and GC
//! cycles at every look — what the live page and the report chart. Bounded: when it is full,
//! every other point is dropped and points are then kept at half the rate, so a session of a
//! week holds as many points as one of an hour, spread over all of it.

use serde::{Deserialize, Serialize};

use crate::goruntime::{allgs::Census, gcstats::GcSnapshot};

/// One moment of the session.
#[derive(Clone, Copy, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct TimePoint {
    /// Seconds since attach.
    pub t_s: f64,
    /// Heap bytes in spans in use (`MemStats.HeapInuse`), the goal the next cycle starts at,
    /// and the live heap as the pacer counts it.
    pub heap_inuse: Option<u64>,
    pub heap_goal: Option<u64>,
    pub heap_live: Option<u64>,
    /// The program's goroutines (`runtime.NumGoroutine`) and the stack bytes of them all.
    pub goroutines: Option<u64>,
    pub stack_bytes: Option<u64>,
    /// GC cycles completed since attach, and how many of them were forced.
    pub gc_cycles: Option<u32>,
    pub gc_forced: Option<u32>,
}

/// Points kept at most.
const MAX_POINTS: usize = 1024;

#[derive(Clone, Debug)]
pub struct Timeline {
    points: Vec<TimePoint>,
    /// A point is kept every `stride` looks (doubled each time the timeline is thinned).
    stride: u64,
    looks: u64,
    gc_at_attach: Option<GcSnapshot>,
}

impl Default for Timeline {
    fn default() -> Self {
        Timeline {
            points: Vec::new(),
            stride: 1,
            looks: 0,
            gc_at_attach: None,
        }
    }
}

impl Timeline {
    pub fn observe(&mut self, t_s: f64, gc: Option<GcSnapshot>, census: Option<Census>) {
        if self.gc_at_attach.is_none() {
            self.gc_at_attach = gc;
        }
        self.looks += 1;
        if !(self.looks - 1).is_multiple_of(self.stride) {
            return;
        }
        if self.points.len() == MAX_POINTS {
            let mut i = 0;
            self.points.retain(|_| {
                i += 1;
                i % 2 == 1
            });
            self.stride *= 2;
        }
        let since = |f: fn(&GcSnapshot) -> u32| Some(f(&gc?).wrapping_sub(f(&self.gc_at_attach?)));
        self.points.push(TimePoint {
            t_s,
            heap_inuse: gc.map(|g| g.heap_in_use),
            heap_goal: gc.map(|g| g.heap_goal),
            heap_live: gc.map(|g| g.heap_live),
            goroutines: census.map(|c| c.user),
            stack_bytes: census.map(|c| c.stack_bytes),
            gc_cycles: since(|g| g.cycles),
            gc_forced: since(|g| g.forced),
        });
    }

    pub fn points(&self) -> &[TimePoint] {
        &self.points
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_week_of_looks_keeps_the_whole_span_in_bounded_points() {
        let mut tl = Timeline::default();
        let week = 7 * 24 * 3600;
        for s in 0..week {
            let gc = GcSnapshot {
                cycles: 10 + (s / 60) as u32,
                heap_in_use: s,
                ..GcSnapshot::default()
            };
            tl.observe(s as f64, Some(gc), None);
        }
        let p = tl.points();
        assert!(
            p.len() <= MAX_POINTS && p.len() > MAX_POINTS / 2,
            "{}",
            p.len()
        );
        assert_eq!(p[0].t_s, 0.0);
        // Points are a stride apart (looks / MAX_POINTS at most), the latest one included.
        let last = p.last().unwrap();
        assert!(
            last.t_s > (week - 2 * week / MAX_POINTS as u64) as f64,
            "{}",
            last.t_s
        );
        assert!(p.windows(2).all(|w| w[0].t_s < w[1].t_s));
        assert_eq!(p[0].gc_cycles, Some(0));
        assert_eq!(last.gc_cycles, Some((last.t_s as u32) / 60));
    }
}
