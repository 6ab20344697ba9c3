//! Each allocation site's heap profile values, one point per GC cycle (the runtime publishes
//! the profile at the end of each cycle): what the heap detectors read trends from.

use std::collections::{HashMap, VecDeque};

use super::heap::{scale, HeapProfile};

/// A site's values after one GC cycle, scaled like `go tool pprof` shows them.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Point {
    /// Seconds since attach, and the GC cycle that published these values.
    pub t_ms: u64,
    pub cycle: u32,
    pub inuse_bytes: u64,
    pub inuse_objects: u64,
    pub alloc_bytes: u64,
    pub alloc_objects: u64,
}

impl Point {
    pub fn t(&self) -> f64 {
        self.t_ms as f64 / 1000.0
    }
}

/// Points kept per site.
const WINDOW: usize = 64;

#[derive(Debug, Default)]
pub struct HeapSeries {
    series: HashMap<u64, VecDeque<Point>>,
    stacks: HashMap<u64, Vec<u64>>,
}

impl HeapSeries {
    /// Adds the profile published by GC cycle `cycle`, `t` seconds after attach.
    pub fn update(&mut self, t: f64, cycle: u32, profile: &HeapProfile) {
        let mut now: HashMap<u64, Point> = HashMap::new();
        for r in &profile.records {
            let (inuse_objects, inuse_bytes) =
                scale(r.inuse_objects(), r.object_size, profile.sample_rate);
            let (alloc_objects, alloc_bytes) = scale(r.allocs, r.object_size, profile.sample_rate);
            let p = now.entry(r.bucket).or_insert(Point {
                t_ms: (t * 1000.0) as u64,
                cycle,
                ..Point::default()
            });
            p.inuse_bytes += inuse_bytes;
            p.inuse_objects += inuse_objects;
            p.alloc_bytes += alloc_bytes;
            p.alloc_objects += alloc_objects;
            self.stacks
                .entry(r.bucket)
                .or_insert_with(|| r.stack.clone());
        }
        for (bucket, point) in now {
            let s = self.series.entry(bucket).or_default();
            if s.back().is_some_and(|p| p.cycle == cycle) {
                s.pop_back();
            }
            s.push_back(point);
            if s.len() > WINDOW {
                s.pop_front();
            }
        }
    }

    /// Every site (bucket) with its points, oldest first.
    pub fn sites(&self) -> impl Iterator<Item = (u64, &VecDeque<Point>)> {
        self.series.iter().map(|(b, s)| (*b, s))
    }

    /// The allocation stack of a site (link-time return addresses, innermost first).
    pub fn stack(&self, bucket: u64) -> &[u64] {
        self.stacks.get(&bucket).map_or(&[], Vec::as_slice)
    }
}
