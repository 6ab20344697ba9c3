//! The heap's "specials": per-object records the runtime hangs off each span. Every object
//! Go's heap sampler picked carries a profile special (with its bucket: the allocation stack)
//! until it is freed, and every object with a finalizer carries a finalizer special. Walking
//! them from outside gives the set of live sampled objects — their addresses, hence how many GC
//! cycles each has survived — and the number of objects waiting on finalizers, at no cost to
//! the target.

use super::{datasyms::DataSymbol, Field, Runtime};
use crate::{binary::GoVersion, error::Result, target::Target, util::read_u64};

/// Spans in a real heap stay well below this; guards against misreading `allspans`.
const MAX_SPANS: u64 = 64 << 20;
/// Specials on one span: bounded by its objects; guards against a list changing under us.
const MAX_LIST: usize = 1 << 20;

pub struct SpecialsReader {
    mheap: u64,
    allspans: u64,
    span_start: usize,
    span_specials: usize,
    next: usize,
    offset: usize,
    /// `special.offset` is a uint16 up to Go 1.26, a uintptr from 1.27.
    offset_width: usize,
    kind: usize,
    profile_bucket: usize,
    kind_profile: u8,
    kind_finalizer: u8,
}

/// What one walk found.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct SpecialsScan {
    /// Live sampled objects: (object address, profile bucket address).
    pub profiled: Vec<(u64, u64)>,
    /// Objects with a finalizer set and not yet queued to run it.
    pub finalizers: u64,
}

impl SpecialsReader {
    pub fn new(target: &Target, runtime: &Runtime) -> Option<Self> {
        let o = |f| runtime.offsets.get(f).map(|v| v as usize);
        let v = runtime.version;
        // _KindSpecialProfile and _KindSpecialFinalizer (runtime/mheap.go): weak handles took
        // kind 2 in 1.23, and 1.25 moved every kind up by one.
        let (kind_finalizer, kind_profile) = if v >= GoVersion::new(1, 25, 0) {
            (2, 4)
        } else if v >= GoVersion::new(1, 23, 0) {
            (1, 3)
        } else {
            (1, 2)
        };
        let offset = o(Field::SpecialOffset)?;
        let kind = o(Field::SpecialKind)?;
        Some(SpecialsReader {
            mheap: runtime.variable(target, DataSymbol::Mheap)?,
            allspans: o(Field::MheapAllspans)? as u64,
            span_start: o(Field::MspanStartAddr)?,
            span_specials: o(Field::MspanSpecials)?,
            next: o(Field::SpecialNext)?,
            offset,
            offset_width: if kind - offset >= 8 { 8 } else { 2 },
            kind,
            profile_bucket: o(Field::SpecialprofileB)?,
            kind_profile,
            kind_finalizer,
        })
    }

    pub fn scan(&self, target: &Target) -> Result<SpecialsScan> {
        let mem = &target.memory;
        let ptr = mem.read_u64(self.mheap + self.allspans)?;
        let len = mem.read_u64(self.mheap + self.allspans + 8)?.min(MAX_SPANS) as usize;
        let spans: Vec<u64> = mem
            .read_vec(ptr, len * 8)?
            .chunks_exact(8)
            .map(|c| u64::from_le_bytes(c.try_into().unwrap()))
            .collect();
        let span_len = self.span_start.max(self.span_specials) + 8;
        // (span start, special) pairs still to visit, walked one list level per batch.
        let mut frontier: Vec<(u64, u64)> = mem
            .read_many(&spans, span_len)?
            .iter()
            .filter_map(|s| {
                let specials = read_u64(s, self.span_specials)?;
                (specials != 0).then(|| (read_u64(s, self.span_start).unwrap_or(0), specials))
            })
            .collect();
        let special_len = self.profile_bucket + 8;
        let mut scan = SpecialsScan::default();
        for _ in 0..MAX_LIST {
            if frontier.is_empty() {
                break;
            }
            let addrs: Vec<u64> = frontier.iter().map(|(_, s)| *s).collect();
            let records = mem.read_many(&addrs, special_len)?;
            let mut next = Vec::with_capacity(frontier.len());
            for ((start, _), rec) in frontier.iter().zip(records) {
                let kind = rec[self.kind];
                if kind == self.kind_profile {
                    let offset = match self.offset_width {
                        2 => {
                            u64::from(u16::from_le_bytes([rec[self.offset], rec[self.offset + 1]]))
                        }
                        _ => read_u64(&rec, self.offset).unwrap_or(0),
                    };
                    scan.profiled.push((
                        start + offset,
                        read_u64(&rec, self.profile_bucket).unwrap_or(0),
                    ));
                } else if kind == self.kind_finalizer {
                    scan.finalizers += 1;
                }
                if let Some(n) = read_u64(&rec, self.next).filter(|n| *n != 0) {
                    next.push((*start, n));
                }
            }
            frontier = next;
        }
        Ok(scan)
    }
}
