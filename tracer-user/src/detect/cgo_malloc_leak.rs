//! `cgo-malloc-leak`: memory allocated by C (`C.malloc` in cgo code, or a linked C library)
//! and never freed. Go's heap profile cannot see it. With `--cgo-malloc`, the kernel side keeps
//! every live C block and the outstanding bytes per allocation stack; a stack whose bytes keep
//! rising is the leak.

use std::{
    collections::{HashMap, VecDeque},
    sync::Arc,
};

use serde_json::json;

use super::{config_defaults, Context, Detector, Finding};
use crate::{model::capped::Capped, observe::Look, symbols::Frame};

pub const PATTERN: &str = "cgo-malloc-leak";

#[derive(Clone, Debug, clap::Args)]
#[group(skip)]
pub struct Config {
    /// Looks (ticks) a stack must be followed before a verdict.
    #[arg(skip = 5usize)]
    pub min_looks: usize,
    /// cgo-malloc-leak: growth of a stack's outstanding C bytes that counts.
    #[arg(id = "cgo-growth", long = "cgo-growth", value_name = "SIZE", default_value = "1MiB", value_parser = crate::units::parse_size)]
    pub min_growth_bytes: u64,
    /// Fraction of steps allowed to go down.
    #[arg(skip = 0.25)]
    pub max_down_steps: f64,
}

config_defaults!(Config);

const WINDOW: usize = 64;
/// C allocation stacks followed at once.
const MAX_STACKS: usize = 4096;

/// One stack's outstanding memory over the recent looks: (t, bytes, blocks).
struct Series {
    points: VecDeque<(f64, i64, i64)>,
    frames: Arc<[Frame]>,
}

pub struct CgoMallocLeak {
    config: Config,
    series: Capped<i64, Series>,
}

impl CgoMallocLeak {
    pub fn new(config: Config) -> Self {
        CgoMallocLeak {
            config,
            series: Capped::new(MAX_STACKS),
        }
    }
}

impl Detector for CgoMallocLeak {
    /// One look at the outstanding totals per stack.
    fn observe(&mut self, look: &Look, _cx: &Context<'_>) {
        let Some(stacks) = &look.c_stacks else {
            return;
        };
        let t = look.t;
        let now: HashMap<i64, (i64, i64)> = stacks
            .iter()
            .map(|s| (s.stack_id, (s.bytes, s.blocks)))
            .collect();
        for s in stacks {
            self.series
                .entry(s.stack_id, || Series {
                    points: VecDeque::new(),
                    frames: s.frames.clone(),
                })
                .points
                .push_back((t, s.bytes, s.blocks));
        }
        for (stack, s) in self.series.iter_mut() {
            if !now.contains_key(stack) {
                s.points.push_back((t, 0, 0));
            }
            while s.points.len() > WINDOW {
                s.points.pop_front();
            }
        }
        self.series.retain(|_, s| s.points.iter().any(|p| p.1 > 0));
    }

    /// Stacks whose outstanding bytes grow.
    fn findings(&self, _cx: &Context<'_>) -> Vec<Finding> {
        let c = &self.config;
        let mut out = Vec::new();
        for (_, series) in self.series.iter() {
            let s = &series.points;
            if s.len() < c.min_looks {
                continue;
            }
            let (t0, first, _) = s[0];
            let (t1, last, blocks) = s[s.len() - 1];
            let grew = last - first;
            let downs = s
                .iter()
                .zip(s.iter().skip(1))
                .filter(|(a, b)| b.1 < a.1)
                .count();
            if grew < c.min_growth_bytes as i64
                || downs as f64 > c.max_down_steps * (s.len() - 1) as f64
            {
                continue;
            }
            out.push(finding(
                series.frames.to_vec(),
                json!({
                    "outstanding_bytes": last,
                    "outstanding_blocks": blocks,
                    "grew_by_bytes": grew,
                    "growth_per_s_bytes": (grew as f64 / (t1 - t0).max(1e-3)).round(),
                    "looks": s.len(),
                }),
            ));
        }
        out
    }
}

/// The finding for a growing stack (frames innermost first).
fn finding(stack: Vec<Frame>, evidence: serde_json::Value) -> Finding {
    // The code that called the allocator: the first frame outside the C library.
    let site = stack
        .iter()
        .find(|f| !f.file.starts_with("libc"))
        .or(stack.first())
        .cloned()
        .unwrap_or_else(|| Frame::unknown(0));
    Finding {
        pattern: PATTERN,
        site,
        stack,
        evidence,
        hint: "memory from C.malloc (or a C library) is never freed, and Go's GC cannot free it: pair every C allocation with C.free (defer C.free(unsafe.Pointer(p))), or call the library's release function".into(),
    }
}
