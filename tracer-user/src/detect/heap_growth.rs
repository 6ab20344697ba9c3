//! `heap-growth`: an allocation site whose bytes in use keep rising from one GC cycle to the
//! next, with objects that survive cycle after cycle. Go's heap profile says how much a site
//! holds now; the series over cycles and the objects' ages say that it only grows.
//!
//! Memory allocated inside `sync.Map` is `syncmap-growth`'s (see [`super::syncmap_growth`]).

use super::{
    config_defaults, site_of,
    syncmap_growth::in_sync_map,
    trend::{growing_heap_sites, GrowthRule},
    Context, Detector, Finding,
};

pub const PATTERN: &str = "heap-growth";

#[derive(Clone, Debug, clap::Args)]
#[group(skip)]
pub struct Config {
    /// heap-growth: growth of a site's bytes in use that counts.
    #[arg(id = "heap-growth", long = "heap-growth", value_name = "SIZE", default_value = "1MiB", value_parser = crate::units::parse_size)]
    pub min_growth_bytes: u64,
}

config_defaults!(Config);

impl Config {
    /// Followed at least 4 GC cycles, grown by the threshold and by half of where it started,
    /// at most a quarter of the steps down.
    pub fn rule(&self) -> GrowthRule {
        GrowthRule {
            min_cycles: 4,
            min_growth_bytes: self.min_growth_bytes,
            min_growth_ratio: 0.5,
            max_down_steps: 0.25,
        }
    }
}

pub struct HeapGrowth {
    config: Config,
}

impl HeapGrowth {
    pub fn new(config: Config) -> Self {
        HeapGrowth { config }
    }
}

impl Detector for HeapGrowth {
    fn findings(&self, cx: &Context<'_>) -> Vec<Finding> {
        let mut out = Vec::new();
        for (growth, points, age, stack) in growing_heap_sites(cx, &self.config.rule()) {
            if in_sync_map(&stack) {
                continue;
            }
            out.push(Finding {
                pattern: PATTERN,
                site: site_of(&stack),
                evidence: growth.evidence(points, age.as_ref()),
                stack,
                hint: "objects allocated here stay reachable cycle after cycle: look for a map, slice or cache that only grows (bound or evict it) or a reference held by a long-lived goroutine or closure".into(),
            });
        }
        out.sort_by_key(|f| std::cmp::Reverse(f.evidence["grew_by_bytes"].as_u64().unwrap_or(0)));
        out
    }
}
