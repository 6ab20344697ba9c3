//! Go's own heap profile, read out of the target's memory: the profile buckets
//! (`runtime.mbuckets`, linked through `allnext`) that `runtime.MemProfile` reads, and the
//! sampler setting `runtime.MemProfileRate`, which gotrace may turn on.
//!
//! Reading costs the target nothing: no probe fires. The samples themselves are taken by the
//! runtime (about one per `MemProfileRate` bytes allocated), as with `net/http/pprof`.

use std::time::{Duration, SystemTime};

use super::{datasyms::DataSymbol, Runtime};
use crate::{
    binary::GoVersion,
    error::{Error, Result},
    target::{ProcessMemory, Target},
};

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

/// `runtime.bucket`: next, allnext, typ, hash, size, nstk; the stack follows, then the
/// `memRecord`. The same 48 bytes from Go 1.19 to 1.27.
const BUCKET_HEADER: u64 = 48;
const BUCKET_ALLNEXT: usize = 8;
const BUCKET_TYPE: usize = 16;
const BUCKET_SIZE: usize = 32;
const BUCKET_NSTK: usize = 40;
/// `bucketType` of heap-profile buckets.
const MEM_PROFILE: u64 = 1;
/// `maxProfStackDepth` (1.23+; 32 before): anything larger is not a bucket.
const MAX_STACK: u64 = 1024;
/// Guard against a list that changes (or is misread) while walking it.
const MAX_BUCKETS: usize = 4 << 20;
/// Go's default sampling rate (`runtime.MemProfileRate`'s initial value): 512 KiB.
pub const DEFAULT_RATE: u64 = 512 * 1024;

pub struct HeapReader {
    mbuckets: u64,
    mprof_cycle: Option<u64>,
    rate: u64,
    /// Bytes of one `memRecordCycle`: {allocs, frees, alloc_bytes, free_bytes} up to Go 1.26;
    /// Go 1.27 dropped the byte counts (every bucket has one object size).
    cycle_size: u64,
    load_bias: u64,
}

impl HeapReader {
    /// `None` when the runtime variables cannot be located in this binary.
    pub fn new(target: &Target, runtime: &Runtime) -> Option<Self> {
        let addr = |s| runtime.variable(target, s);
        Some(HeapReader {
            mbuckets: addr(DataSymbol::Mbuckets)?,
            mprof_cycle: addr(DataSymbol::MProfCycle),
            rate: addr(DataSymbol::MemProfileRate)?,
            cycle_size: if runtime.version >= GoVersion::new(1, 27, 0) {
                16
            } else {
                32
            },
            load_bias: target.load_bias,
        })
    }

    /// The current `runtime.MemProfileRate`.
    pub fn rate(&self, memory: &ProcessMemory) -> Result<u64> {
        memory.read_u64(self.rate)
    }

    /// Sets `runtime.MemProfileRate`. The runtime reads it on every sampled allocation (and
    /// from Go 1.24 each mcache notices a change through `mcache.memProfRate`), so the new
    /// rate takes effect within an allocation or two per thread; nothing else changes.
    pub fn set_rate(&self, memory: &ProcessMemory, rate: u64) -> Result<()> {
        memory.write(self.rate, &rate.to_le_bytes())
    }

    /// Reads the profile as `runtime.MemProfile` would return it now: each bucket's published
    /// cycle plus the one the runtime would flush first; if no GC has published anything yet,
    /// every pending cycle (as the runtime does when "clear").
    pub fn read(&self, target: &Target, rate: u64, since: SystemTime) -> Result<HeapProfile> {
        let mem = &target.memory;
        let index = match self.mprof_cycle {
            Some(a) => Some((mem.read_u32(a)? >> 1) % 3),
            None => None,
        };
        let mut buckets = Vec::new();
        let mut b = mem.read_u64(self.mbuckets)?;
        while b != 0 {
            if buckets.len() >= MAX_BUCKETS {
                return Err(Error::Other(format!(
                    "process {}: heap profile bucket list longer than {MAX_BUCKETS}",
                    target.pid
                )));
            }
            let header = mem.read_vec(b, BUCKET_HEADER as usize)?;
            let word = |o: usize| u64::from_le_bytes(header[o..o + 8].try_into().unwrap());
            let nstk = word(BUCKET_NSTK);
            if word(BUCKET_TYPE) != MEM_PROFILE || nstk > MAX_STACK {
                return Err(Error::Other(format!(
                    "process {}: {b:#x} does not look like a heap profile bucket",
                    target.pid
                )));
            }
            let body =
                mem.read_vec(b + BUCKET_HEADER, (nstk * 8 + 4 * self.cycle_size) as usize)?;
            let (stk, record) = body.split_at(nstk as usize * 8);
            let cycle = |i: u64| -> (u64, u64) {
                let o = (i * self.cycle_size) as usize;
                let w = |k: usize| u64::from_le_bytes(record[o + k..o + k + 8].try_into().unwrap());
                (w(0), w(8))
            };
            let active = cycle(0);
            let futures = [cycle(1), cycle(2), cycle(3)];
            buckets.push((
                b,
                stk.chunks_exact(8)
                    .map(|c| u64::from_le_bytes(c.try_into().unwrap()).wrapping_sub(self.load_bias))
                    .collect::<Vec<_>>(),
                word(BUCKET_SIZE),
                active,
                futures,
            ));
            b = word(BUCKET_ALLNEXT);
        }
        let nothing_published = buckets.iter().all(|(_, _, _, a, _)| *a == (0, 0));
        let records = buckets
            .into_iter()
            .map(|(bucket, stack, object_size, active, futures)| {
                let (mut allocs, mut frees) = active;
                let pending: Vec<(u64, u64)> = match (nothing_published, index) {
                    (true, _) => futures.to_vec(),
                    (false, Some(i)) => vec![futures[i as usize]],
                    (false, None) => vec![],
                };
                for (a, f) in pending {
                    allocs += a;
                    frees += f;
                }
                HeapRecord {
                    bucket,
                    stack,
                    object_size,
                    allocs,
                    frees,
                }
            })
            .filter(|r| r.allocs > 0)
            .collect();
        Ok(HeapProfile {
            records,
            sample_rate: rate,
            time: SystemTime::now(),
            duration: SystemTime::now()
                .duration_since(since)
                .unwrap_or(Duration::ZERO),
        })
    }
}
