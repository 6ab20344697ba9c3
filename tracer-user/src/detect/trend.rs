//! Whether a series only grows: the trend tests the detectors share.

use std::collections::VecDeque;

use serde_json::json;

use crate::model::{heap::AgeHistogram, heap_series::Point};

/// Least-squares slope of `(t, value)` points, value per second.
pub fn slope(points: &VecDeque<(f64, u64)>) -> f64 {
    let n = points.len() as f64;
    if n < 2.0 {
        return 0.0;
    }
    let mx = points.iter().map(|p| p.0).sum::<f64>() / n;
    let my = points.iter().map(|p| p.1 as f64).sum::<f64>() / n;
    let (mut num, mut den) = (0.0, 0.0);
    for &(x, y) in points {
        num += (x - mx) * (y as f64 - my);
        den += (x - mx) * (x - mx);
    }
    if den == 0.0 {
        0.0
    } else {
        num / den
    }
}

/// What counts as growth of a site's bytes in use over GC cycles.
#[derive(Clone, Copy, Debug)]
pub struct GrowthRule {
    /// GC cycles a site must be followed before a verdict.
    pub min_cycles: usize,
    /// It must have grown by at least this many bytes in use ...
    pub min_growth_bytes: u64,
    /// ... and by this fraction of where it started.
    pub min_growth_ratio: f64,
    /// Fraction of the steps between observations that may go down (noise of sampling).
    pub max_down_steps: f64,
}

/// How a site grew, when it grows by a [`GrowthRule`].
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

    /// A leak keeps what it allocated: objects from the start of the window are still there
    /// at its end. A site whose objects all die after a few cycles only looks like it grows
    /// (warm-up, sampling noise) — its oldest object is young.
    pub fn kept(&self, age: Option<&AgeHistogram>) -> bool {
        !age.is_some_and(|a| a.oldest < 2 || a.oldest * 2 < self.cycles)
    }
}

/// The heap sites that grow by `rule` and keep their old objects, with their allocation
/// stacks (named): what heap-growth and syncmap-growth judge further.
pub(crate) fn growing_heap_sites(
    cx: &super::Context<'_>,
    rule: &GrowthRule,
) -> Vec<(
    Growth,
    usize,
    Option<AgeHistogram>,
    Vec<crate::symbols::Frame>,
)> {
    let series = &cx.model.heap_series;
    let ages = cx.model.ages.by_bucket();
    series
        .sites()
        .filter_map(|(bucket, points)| {
            let growth = grows(points, rule)?;
            let age = ages.get(&bucket).cloned();
            growth.kept(age.as_ref()).then(|| {
                let stack = super::heap_stack(series, bucket, cx.sym);
                (growth, points.len(), age, stack)
            })
        })
        .collect()
}

/// Whether the points of one site show growth, and how much.
pub fn grows(points: &VecDeque<Point>, c: &GrowthRule) -> Option<Growth> {
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slope_of_a_line() {
        let pts: VecDeque<(f64, u64)> = (0..10).map(|i| (i as f64, 5 + 2 * i as u64)).collect();
        assert!((slope(&pts) - 2.0).abs() < 1e-9);
        let flat: VecDeque<(f64, u64)> = (0..10).map(|i| (i as f64, 20)).collect();
        assert_eq!(slope(&flat), 0.0);
    }
}
