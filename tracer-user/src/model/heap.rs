//! The heap profile: what Go's own sampler recorded per allocation stack, read out of the
//! target's memory (the runtime's profile buckets), as `runtime.MemProfile` would return it.

use std::time::{Duration, SystemTime};

/// One allocation site: a stack and an object size (Go keeps one bucket per stack and size).
/// Counts are sampled and unscaled, exactly as the runtime holds them.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HeapRecord {
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

    pub fn alloc_bytes(&self) -> u64 {
        self.allocs * self.object_size
    }

    pub fn inuse_bytes(&self) -> u64 {
        self.inuse_objects() * self.object_size
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

/// Go's `scaleHeapSample` (runtime/pprof): an estimate of the true count and bytes from a
/// sampled count of objects of `avg_size` bytes taken every `rate` bytes on average. An
/// object of size s is sampled with probability 1-exp(-s/rate).
pub fn scale(count: u64, avg_size: u64, rate: u64) -> (u64, u64) {
    if count == 0 || avg_size == 0 {
        return (0, 0);
    }
    if rate <= 1 {
        return (count, count * avg_size);
    }
    let scale = 1.0 / (1.0 - (-(avg_size as f64) / rate as f64).exp());
    (
        (count as f64 * scale) as u64,
        ((count * avg_size) as f64 * scale) as u64,
    )
}

#[cfg(test)]
mod tests {
    use super::scale;

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
