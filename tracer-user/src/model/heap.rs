//! What the heap profile says over time: how old each site's live sampled objects are, and
//! Go's scaling of sampled counts.

use std::collections::HashMap;

use crate::goruntime::heapprof::{HeapProfile, HeapRecord};

use serde::Serialize;

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
    /// The histograms per bucket, made once per walk (every detector and the report read
    /// them, every tick).
    by_bucket: HashMap<u64, AgeHistogram>,
}

impl AgeTracker {
    /// Updates with the objects live after GC cycle `cycle`.
    pub fn update(&mut self, cycle: u32, live: &[(u64, u64)]) {
        let initial = !self.first_scan;
        self.first_scan = true;
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
        self.by_bucket.clear();
        for &(bucket, first, before) in self.objects.values() {
            self.by_bucket
                .entry(bucket)
                .or_default()
                .add(cycle.wrapping_sub(first), before);
        }
    }

    /// Age histograms per bucket address, as of the latest walk.
    pub fn by_bucket(&self) -> &HashMap<u64, AgeHistogram> {
        &self.by_bucket
    }

    pub fn tracked(&self) -> usize {
        self.objects.len()
    }
}

/// One record of a heap profile with its counts scaled as `go tool pprof` shows them: the one
/// place the report, the pprof file, the flamegraphs and the heap series take values from.
#[derive(Clone, Copy, Debug)]
pub struct Scaled<'p> {
    pub record: &'p HeapRecord,
    pub inuse_objects: u64,
    pub inuse_bytes: u64,
    pub alloc_objects: u64,
    pub alloc_bytes: u64,
}

/// Every record of `profile`, scaled by its sample rate.
pub fn scaled(profile: &HeapProfile) -> impl Iterator<Item = Scaled<'_>> {
    profile.records.iter().map(move |r| {
        let (inuse_objects, inuse_bytes) =
            scale(r.inuse_objects(), r.object_size, profile.sample_rate);
        let (alloc_objects, alloc_bytes) = scale(r.allocs, r.object_size, profile.sample_rate);
        Scaled {
            record: r,
            inuse_objects,
            inuse_bytes,
            alloc_objects,
            alloc_bytes,
        }
    })
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

/// The sampled allocations each heap-profile bucket had at the previous delta profile: what
/// godeltaprof subtracts so that each profile holds only the allocations since the last one.
/// Holds the buckets of the latest profile only (Go never frees a bucket, so a bucket's address
/// names one stack and size for the program's life).
#[derive(Debug, Default)]
pub struct AllocBaseline {
    seen: HashMap<u64, u64>,
}

impl AllocBaseline {
    /// Sampled allocations of `profile`'s records since the previous call, by bucket; the
    /// baseline becomes `profile`.
    pub fn advance(&mut self, profile: &HeapProfile) -> HashMap<u64, u64> {
        let now: HashMap<u64, u64> = profile
            .records
            .iter()
            .map(|r| (r.bucket, r.allocs))
            .collect();
        let delta = now
            .iter()
            .map(|(b, n)| (*b, n.saturating_sub(self.seen.get(b).copied().unwrap_or(0))))
            .collect();
        self.seen = now;
        delta
    }
}
