//! The heap profile: what Go's own sampler recorded per allocation stack, read out of the
//! target's memory (the runtime's profile buckets), as `runtime.MemProfile` would return it.

use std::{
    collections::HashMap,
    time::{Duration, SystemTime},
};

use serde::Serialize;

/// One allocation site: a stack and an object size (Go keeps one bucket per stack and size).
/// Counts are sampled and unscaled, exactly as the runtime holds them.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HeapRecord {
    /// Address of the runtime's bucket: the key that joins object ages to this record.
    pub bucket: u64,
    /// Return addresses, innermost first, as link-time addresses (load bias removed).
    pub stack: Vec<u64>,
    /// Size in bytes of each object allocated here.
    pub object_size: u64,
    /// Sampled allocations and frees as of the last completed GC cycle.
    pub allocs: u64,
    pub frees: u64,
}

impl HeapRecord {
    pub fn inuse_objects(&self) -> u64 {
        self.allocs.saturating_sub(self.frees)
    }

    // Counts come from another process's memory: saturate rather than overflow on garbage.
    pub fn alloc_bytes(&self) -> u64 {
        self.allocs.saturating_mul(self.object_size)
    }

    pub fn inuse_bytes(&self) -> u64 {
        self.inuse_objects().saturating_mul(self.object_size)
    }
}

/// A snapshot of the heap profile.
#[derive(Clone, Debug, PartialEq)]
pub struct HeapProfile {
    pub records: Vec<HeapRecord>,
    /// `runtime.MemProfileRate` the samples were taken at (bytes); 1 means every allocation.
    pub sample_rate: u64,
    /// When the snapshot was taken, and over how long the tracing session had run by then.
    pub time: SystemTime,
    pub duration: Duration,
}

/// How many GC cycles the live sampled objects of one site have survived.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct AgeHistogram {
    /// Objects by cycles survived: `[0, 1, 2-3, 4-7, 8-15, 16+]`.
    pub cycles: [u64; 6],
    /// Objects already live when gotrace attached (their age is at least what is counted).
    pub before_attach: u64,
    /// The most cycles any of them has survived.
    pub oldest: u32,
}

impl AgeHistogram {
    pub const LABELS: [&'static str; 6] = ["0", "1", "2-3", "4-7", "8-15", "16+"];

    fn add(&mut self, age: u32, before_attach: bool) {
        let slot = match age {
            0 => 0,
            1 => 1,
            2..=3 => 2,
            4..=7 => 3,
            8..=15 => 4,
            _ => 5,
        };
        self.cycles[slot] += 1;
        self.before_attach += u64::from(before_attach);
        self.oldest = self.oldest.max(age);
    }

    pub fn objects(&self) -> u64 {
        self.cycles.iter().sum()
    }
}

/// Follows each live sampled object across GC cycles. Go cannot tell how long an object has
/// lived; the set of objects carrying a profile special, looked at after every cycle, can:
/// an address seen at cycle N that is still there at cycle M has survived M-N cycles.
#[derive(Debug, Default)]
pub struct AgeTracker {
    /// object address -> (bucket, GC cycle when first seen, seen in the first scan)
    objects: HashMap<u64, (u64, u32, bool)>,
    first_scan: bool,
    cycle: u32,
}

impl AgeTracker {
    /// Updates with the objects live after GC cycle `cycle`.
    pub fn update(&mut self, cycle: u32, live: &[(u64, u64)]) {
        let initial = !self.first_scan;
        self.first_scan = true;
        self.cycle = cycle;
        let mut next = HashMap::with_capacity(live.len());
        for &(addr, bucket) in live {
            let entry = match self.objects.get(&addr) {
                // The same address under another bucket is a new object.
                Some(&(b, first, before)) if b == bucket => (b, first, before),
                _ => (bucket, cycle, initial),
            };
            next.insert(addr, entry);
        }
        self.objects = next;
    }

    /// Age histograms per bucket address.
    pub fn by_bucket(&self) -> HashMap<u64, AgeHistogram> {
        let mut out: HashMap<u64, AgeHistogram> = HashMap::new();
        for &(bucket, first, before) in self.objects.values() {
            out.entry(bucket)
                .or_default()
                .add(self.cycle.wrapping_sub(first), before);
        }
        out
    }

    pub fn tracked(&self) -> usize {
        self.objects.len()
    }
}

/// Go's `scaleHeapSample` (runtime/pprof): an estimate of the true count and bytes from a
/// sampled count of objects of `avg_size` bytes taken every `rate` bytes on average. An
/// object of size s is sampled with probability 1-exp(-s/rate).
pub fn scale(count: u64, avg_size: u64, rate: u64) -> (u64, u64) {
    if count == 0 || avg_size == 0 {
        return (0, 0);
    }
    let bytes = count.saturating_mul(avg_size);
    if rate <= 1 {
        return (count, bytes);
    }
    let scale = 1.0 / (1.0 - (-(avg_size as f64) / rate as f64).exp());
    ((count as f64 * scale) as u64, (bytes as f64 * scale) as u64)
}

#[cfg(test)]
mod tests {
    use super::{scale, AgeTracker};

    #[test]
    fn ages_grow_for_survivors_only() {
        let mut t = AgeTracker::default();
        t.update(10, &[(0x100, 1), (0x200, 2)]);
        t.update(11, &[(0x100, 1), (0x300, 2)]);
        t.update(13, &[(0x100, 1), (0x300, 2), (0x200, 2)]);
        let h = t.by_bucket();
        assert_eq!(h[&1].oldest, 3);
        assert_eq!(h[&1].before_attach, 1);
        // 0x200 vanished and came back: a new object.
        assert_eq!(h[&2].cycles, [1, 0, 1, 0, 0, 0]);
        assert_eq!(h[&2].before_attach, 0);
    }

    #[test]
    fn scaling_matches_go() {
        // Small objects are rarely sampled: each sample stands for many.
        assert_eq!(scale(10, 64, 512 * 1024), (81925, 5243200));
        // Objects much larger than the rate are always sampled.
        assert_eq!(scale(3, 10 << 20, 512 * 1024), (3, 3 * (10 << 20)));
        assert_eq!(scale(5, 100, 1), (5, 500));
        assert_eq!(scale(0, 100, 512), (0, 0));
    }
}
