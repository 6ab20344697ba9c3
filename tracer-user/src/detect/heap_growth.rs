//! `heap-growth`: an allocation site whose bytes in use keep rising from one GC cycle to the
//! next, with objects that survive cycle after cycle. Go's heap profile says how much a site
//! holds now; the series over cycles and the objects' ages say that it only grows.

use std::collections::{HashMap, VecDeque};

use serde_json::json;

use super::Finding;
use crate::{
    model::heap::{scale, AgeHistogram, HeapProfile},
    symbols::{Frame, Symbolizer},
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

/// Observations kept per site.
const WINDOW: usize = 64;

#[derive(Debug, Default)]
pub struct HeapGrowth {
    pub config: Config,
    /// bucket -> (seconds since attach, GC cycle, scaled bytes in use)
    series: HashMap<u64, VecDeque<(f64, u32, u64)>>,
    stacks: HashMap<u64, Vec<u64>>,
}

impl HeapGrowth {
    pub fn new(config: Config) -> Self {
        HeapGrowth {
            config,
            ..Default::default()
        }
    }

    /// Adds the heap profile published by GC cycle `cycle`.
    pub fn update(&mut self, t: f64, cycle: u32, profile: &HeapProfile) {
        let mut seen = HashMap::new();
        for r in &profile.records {
            let (_, bytes) = scale(r.inuse_objects(), r.object_size, profile.sample_rate);
            *seen.entry(r.bucket).or_insert(0) += bytes;
            self.stacks
                .entry(r.bucket)
                .or_insert_with(|| r.stack.clone());
        }
        for (bucket, bytes) in seen {
            let s = self.series.entry(bucket).or_default();
            if s.back().is_some_and(|&(_, c, _)| c == cycle) {
                s.pop_back();
            }
            s.push_back((t, cycle, bytes));
            if s.len() > WINDOW {
                s.pop_front();
            }
        }
    }

    pub fn findings(&self, sym: &Symbolizer, ages: &HashMap<u64, AgeHistogram>) -> Vec<Finding> {
        let c = &self.config;
        let mut out = Vec::new();
        for (bucket, s) in &self.series {
            if s.len() < c.min_cycles {
                continue;
            }
            let (t0, c0, first) = s[0];
            let (t1, c1, last) = s[s.len() - 1];
            let grew = last.saturating_sub(first);
            let downs = s
                .iter()
                .zip(s.iter().skip(1))
                .filter(|(a, b)| b.2 < a.2)
                .count();
            if grew < c.min_growth_bytes
                || (grew as f64) < c.min_growth_ratio * first as f64
                || downs as f64 > c.max_down_steps * (s.len() - 1) as f64
            {
                continue;
            }
            let age = ages.get(bucket);
            // Growth made of fresh objects that die young is churn, not a leak.
            if age.is_some_and(|a| a.oldest < 2) {
                continue;
            }
            let stack: Vec<Frame> = self
                .stacks
                .get(bucket)
                .map(|pcs| pcs.iter().flat_map(|pc| sym.caller_frames(*pc)).collect())
                .unwrap_or_default();
            let site = stack
                .iter()
                .find(|f| {
                    !f.function.starts_with("runtime.")
                        && !f.function.starts_with("internal/runtime/")
                })
                .cloned()
                .unwrap_or_else(|| Frame::unknown(0));
            let cycles = c1.wrapping_sub(c0).max(1);
            out.push(Finding {
                pattern: "heap-growth",
                site,
                stack,
                evidence: json!({
                    "inuse_bytes": last,
                    "inuse_bytes_first": first,
                    "grew_by_bytes": grew,
                    "gc_cycles": cycles,
                    "growth_per_cycle_bytes": grew / u64::from(cycles),
                    "growth_per_s_bytes": (grew as f64 / (t1 - t0).max(1e-3)).round(),
                    "observations": s.len(),
                    "age": age,
                }),
                hint: "objects allocated here stay reachable cycle after cycle: look for a map, slice or cache that only grows (bound or evict it) or a reference held by a long-lived goroutine or closure".into(),
            });
        }
        out.sort_by_key(|f| std::cmp::Reverse(f.evidence["grew_by_bytes"].as_u64().unwrap_or(0)));
        out
    }
}
