//! `heap-growth`: an allocation site whose bytes in use keep rising from one GC cycle to the
//! next, with objects that survive cycle after cycle. Go's heap profile says how much a site
//! holds now; the series over cycles and the objects' ages say that it only grows.
//!
//! When the growing memory is allocated inside `sync.Map` the verdict is `syncmap-growth`
//! instead, pointing at the code that stores into the map (see [`super::syncmap_growth`]).

use std::collections::{HashMap, VecDeque};

use serde_json::json;

use super::{heap_stack, site_of, syncmap_growth, Finding};
use crate::{
    model::{
        heap::AgeHistogram,
        heap_series::{HeapSeries, Point},
    },
    symbols::Symbolizer,
};

#[derive(Clone, Debug)]
pub struct Config {
    /// GC cycles a site must be followed before a verdict.
    pub min_cycles: usize,
    /// It must have grown by at least this many bytes in use ...
    pub min_growth_bytes: u64,
    /// ... and by this fraction of where it started.
    pub min_growth_ratio: f64,
    /// Fraction of the steps between observations that may go down (noise of sampling).
    pub max_down_steps: f64,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            min_cycles: 4,
            min_growth_bytes: 1 << 20,
            min_growth_ratio: 0.5,
            max_down_steps: 0.25,
        }
    }
}

/// How a site grew, when it grows by [`Config`]'s measure.
#[derive(Clone, Copy, Debug)]
pub struct Growth {
    pub first: Point,
    pub last: Point,
    pub grew_bytes: u64,
    pub cycles: u32,
}

impl Growth {
    pub fn evidence(&self, points: usize, age: Option<&AgeHistogram>) -> serde_json::Value {
        json!({
            "inuse_bytes": self.last.inuse_bytes,
            "inuse_objects": self.last.inuse_objects,
            "inuse_bytes_first": self.first.inuse_bytes,
            "grew_by_bytes": self.grew_bytes,
            "gc_cycles": self.cycles,
            "growth_per_cycle_bytes": self.grew_bytes / u64::from(self.cycles),
            "growth_per_s_bytes": (self.grew_bytes as f64 / (self.last.t() - self.first.t()).max(1e-3)).round(),
            "observations": points,
            "age": age,
        })
    }
}

/// Whether the points of one site show growth, and how much.
pub fn grows(points: &VecDeque<Point>, c: &Config) -> Option<Growth> {
    if points.len() < c.min_cycles {
        return None;
    }
    let (first, last) = (points[0], points[points.len() - 1]);
    let grew_bytes = last.inuse_bytes.saturating_sub(first.inuse_bytes);
    let downs = points
        .iter()
        .zip(points.iter().skip(1))
        .filter(|(a, b)| b.inuse_bytes < a.inuse_bytes)
        .count();
    (grew_bytes >= c.min_growth_bytes
        && grew_bytes as f64 >= c.min_growth_ratio * first.inuse_bytes as f64
        && downs as f64 <= c.max_down_steps * (points.len() - 1) as f64)
        .then_some(Growth {
            first,
            last,
            grew_bytes,
            cycles: last.cycle.wrapping_sub(first.cycle).max(1),
        })
}

#[derive(Debug, Default)]
pub struct HeapGrowth {
    pub config: Config,
}

impl HeapGrowth {
    pub fn new(config: Config) -> Self {
        HeapGrowth { config }
    }

    pub fn findings(
        &self,
        series: &HeapSeries,
        sym: &Symbolizer,
        ages: &HashMap<u64, AgeHistogram>,
    ) -> Vec<Finding> {
        let mut out = Vec::new();
        for (bucket, points) in series.sites() {
            let Some(growth) = grows(points, &self.config) else {
                continue;
            };
            let age = ages.get(&bucket);
            // A leak keeps what it allocated: objects from the start of the window are still
            // there at its end. A site whose objects all die after a few cycles only looks like
            // it grows (warm-up, sampling noise) — its oldest object is young.
            if age.is_some_and(|a| a.oldest < 2 || a.oldest * 2 < growth.cycles) {
                continue;
            }
            let stack = heap_stack(series, bucket, sym);
            if syncmap_growth::in_sync_map(&stack) {
                out.push(syncmap_growth::finding(stack, &growth, points.len(), age));
                continue;
            }
            out.push(Finding {
                pattern: "heap-growth",
                site: site_of(&stack),
                evidence: growth.evidence(points.len(), age),
                stack,
                hint: "objects allocated here stay reachable cycle after cycle: look for a map, slice or cache that only grows (bound or evict it) or a reference held by a long-lived goroutine or closure".into(),
            });
        }
        out.sort_by_key(|f| std::cmp::Reverse(f.evidence["grew_by_bytes"].as_u64().unwrap_or(0)));
        out
    }
}
