//! Each allocation site's heap profile values, one point per GC cycle (the runtime publishes
//! the profile at the end of each cycle): what the heap detectors read trends from.

use std::collections::{HashMap, VecDeque};

use super::{capped::Capped, heap::scaled};
use crate::goruntime::heapprof::HeapProfile;

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
/// Sites followed at once. The runtime never frees a profile bucket, so a program's sites only
/// accumulate; those whose values stopped changing longest ago go first.
const MAX_SITES: usize = 16_384;

/// One site's points and its allocation stack.
#[derive(Debug, Default)]
struct Series {
    points: VecDeque<Point>,
    stack: Vec<u64>,
}

#[derive(Debug)]
pub struct HeapSeries {
    series: Capped<u64, Series>,
}

impl Default for HeapSeries {
    fn default() -> Self {
        HeapSeries {
            series: Capped::new(MAX_SITES),
        }
    }
}

impl HeapSeries {
    /// Adds the profile published by GC cycle `cycle`, `t` seconds after attach.
    pub fn update(&mut self, t: f64, cycle: u32, profile: &HeapProfile) {
        let mut now: HashMap<u64, Point> = HashMap::new();
        for s in scaled(profile) {
            let p = now.entry(s.record.bucket).or_insert(Point {
                t_ms: (t * 1000.0) as u64,
                cycle,
                ..Point::default()
            });
            p.inuse_bytes += s.inuse_bytes;
            p.inuse_objects += s.inuse_objects;
            p.alloc_bytes += s.alloc_bytes;
            p.alloc_objects += s.alloc_objects;
        }
        for r in &profile.records {
            let Some(point) = now.remove(&r.bucket) else {
                continue;
            };
            // A site whose values did not change is not "seen": unchanged sites are evicted
            // first when the table is full.
            let changed = self.series.get(&r.bucket).is_none_or(|s| {
                s.points.back().is_none_or(|p| {
                    (p.inuse_bytes, p.alloc_objects) != (point.inuse_bytes, point.alloc_objects)
                })
            });
            let s = if changed {
                self.series.entry(r.bucket, || Series {
                    points: VecDeque::with_capacity(WINDOW),
                    stack: r.stack.clone(),
                })
            } else {
                match self.series.get_mut(&r.bucket) {
                    Some(s) => s,
                    None => continue,
                }
            };
            if s.points.back().is_some_and(|p| p.cycle == cycle) {
                s.points.pop_back();
            }
            // Room first: a full window pushed into would double its allocation.
            if s.points.len() == WINDOW {
                s.points.pop_front();
            }
            s.points.push_back(point);
        }
    }

    /// Every site (bucket) with its points, oldest first.
    pub fn sites(&self) -> impl Iterator<Item = (u64, &VecDeque<Point>)> {
        self.series.iter().map(|(b, s)| (*b, &s.points))
    }

    /// The allocation stack of a site (link-time return addresses, innermost first).
    pub fn stack(&self, bucket: u64) -> &[u64] {
        self.series.get(&bucket).map_or(&[], |s| s.stack.as_slice())
    }

    /// Sites followed now, and evicted so far.
    pub fn followed(&self) -> usize {
        self.series.len()
    }

    pub fn evicted(&self) -> u64 {
        self.series.evicted()
    }
}
