//! `syncmap-growth`: a `sync.Map` that only gains keys. Its entries are allocated inside the
//! map's own methods (`sync.(*Map).Store` up to Go 1.23, `internal/sync.HashTrieMap` from
//! 1.24), so the heap profile's growing site sits in package sync; the verdict points at the
//! code that stores into the map, and counts the entries it holds.

use super::{
    caller_of, config_defaults, site_of, trend::growing_heap_sites, Context, Detector, Finding,
};
use crate::symbols::Frame;

pub const PATTERN: &str = "syncmap-growth";

#[derive(Clone, Debug, clap::Args)]
#[group(skip)]
pub struct Config {
    /// syncmap-growth: growth of the bytes a sync.Map's entries hold that counts.
    #[arg(id = "syncmap-growth", long = "syncmap-growth", value_name = "SIZE", default_value = "1MiB", value_parser = crate::units::parse_size)]
    pub min_growth_bytes: u64,
}

config_defaults!(Config);

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

pub struct SyncMapGrowth {
    config: Config,
}

impl SyncMapGrowth {
    pub fn new(config: Config) -> Self {
        SyncMapGrowth { config }
    }
}

impl Detector for SyncMapGrowth {
    fn findings(&self, cx: &Context<'_>) -> Vec<Finding> {
        // The same trend as heap-growth, with this pattern's threshold.
        let rule = super::heap_growth::Config {
            min_growth_bytes: self.config.min_growth_bytes,
        }
        .rule();
        let mut out = Vec::new();
        for (growth, points, age, stack) in growing_heap_sites(cx, &rule) {
            if !in_sync_map(&stack) {
                continue;
            }
            let site = caller_of(&stack, is_sync_map).unwrap_or_else(|| site_of(&stack));
            let mut evidence = growth.evidence(points, age.as_ref());
            // Each stored key costs the map one entry allocated at this site: live entries ~ keys.
            evidence["entries_estimate"] = growth.last.inuse_objects.into();
            evidence["entries_added_per_s"] = ((growth
                .last
                .inuse_objects
                .saturating_sub(growth.first.inuse_objects))
                as f64
                / (growth.last.t() - growth.first.t()).max(1e-3))
            .round()
            .into();
            out.push(Finding {
                pattern: PATTERN,
                site,
                stack,
                evidence,
                hint: "keys are stored in this sync.Map and never deleted: delete entries when done, or use a bounded cache with eviction".into(),
            });
        }
        out.sort_by_key(|f| std::cmp::Reverse(f.evidence["grew_by_bytes"].as_u64().unwrap_or(0)));
        out
    }
}
