//! `syncmap-growth`: a `sync.Map` that only gains keys. Its entries are allocated inside the
//! map's own methods (`sync.(*Map).Store` up to Go 1.23, `internal/sync.HashTrieMap` from
//! 1.24), so the heap profile's growing site sits in package sync; the verdict points at the
//! code that stores into the map, and counts the entries it holds. Found by [`super::heap_growth`].

use super::{caller_of, heap_growth::Growth, site_of, Finding};
use crate::{model::heap::AgeHistogram, symbols::Frame};

/// Frames of sync.Map's implementation, in every supported release.
fn is_sync_map(function: &str) -> bool {
    function.starts_with("sync.(*Map).")
        || function.starts_with("internal/sync.(*HashTrieMap")
        || function.starts_with("internal/sync.newEntryNode")
        || function.starts_with("sync.newEntry")
}

pub fn in_sync_map(stack: &[Frame]) -> bool {
    stack.iter().any(|f| is_sync_map(&f.function))
}

pub fn finding(
    stack: Vec<Frame>,
    growth: &Growth,
    points: usize,
    age: Option<&AgeHistogram>,
) -> Finding {
    let site = caller_of(&stack, is_sync_map).unwrap_or_else(|| site_of(&stack));
    let mut evidence = growth.evidence(points, age);
    // Each stored key costs the map one entry allocated at this site: live entries ~ keys.
    evidence["entries_estimate"] = growth.last.inuse_objects.into();
    evidence["entries_added_per_s"] = ((growth
        .last
        .inuse_objects
        .saturating_sub(growth.first.inuse_objects)) as f64
        / (growth.last.t() - growth.first.t()).max(1e-3))
    .round()
    .into();
    Finding {
        pattern: "syncmap-growth",
        site,
        stack,
        evidence,
        hint: "keys are stored in this sync.Map and never deleted: delete entries when done, or use a bounded cache with eviction".into(),
    }
}
