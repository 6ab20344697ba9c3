//! `cgo-malloc-leak`: memory allocated by C (`C.malloc` in cgo code, or a linked C library)
//! and never freed. Go's heap profile cannot see it. With `--cgo-malloc`, the kernel side keeps
//! every live C block and the outstanding bytes per allocation stack; a stack whose bytes keep
//! rising is the leak.

use std::collections::{HashMap, VecDeque};

use serde_json::json;

use super::Finding;
use crate::symbols::Frame;

#[derive(Clone, Debug)]
pub struct Config {
    /// Looks (ticks) a stack must be followed before a verdict.
    pub min_looks: usize,
    /// Growth of outstanding bytes over them.
    pub min_growth_bytes: u64,
    /// Fraction of steps allowed to go down.
    pub max_down_steps: f64,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            min_looks: 5,
            min_growth_bytes: 1 << 20,
            max_down_steps: 0.25,
        }
    }
}

const WINDOW: usize = 64;

#[derive(Debug, Default)]
pub struct CgoMallocLeak {
    pub config: Config,
    /// stack id -> (t, outstanding bytes, outstanding blocks)
    series: HashMap<i64, VecDeque<(f64, i64, i64)>>,
}

impl CgoMallocLeak {
    pub fn new(config: Config) -> Self {
        CgoMallocLeak {
            config,
            ..Default::default()
        }
    }

    /// One look at the outstanding totals per stack.
    pub fn update(&mut self, t: f64, totals: &[(i64, i64, i64)]) {
        let now: HashMap<i64, (i64, i64)> = totals.iter().map(|&(s, b, n)| (s, (b, n))).collect();
        for (&stack, &(bytes, blocks)) in &now {
            self.series
                .entry(stack)
                .or_default()
                .push_back((t, bytes, blocks));
        }
        for (stack, s) in self.series.iter_mut() {
            if !now.contains_key(stack) {
                s.push_back((t, 0, 0));
            }
            while s.len() > WINDOW {
                s.pop_front();
            }
        }
        self.series.retain(|_, s| s.iter().any(|p| p.1 > 0));
    }

    /// Stacks whose outstanding bytes grow, with what to name them by.
    pub fn growing(&self) -> Vec<(i64, serde_json::Value)> {
        let c = &self.config;
        let mut out = Vec::new();
        for (&stack, s) in &self.series {
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
            out.push((
                stack,
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

/// The finding for a growing stack, once its frames are named (innermost first).
pub fn finding(stack: Vec<Frame>, evidence: serde_json::Value) -> Finding {
    // The code that called the allocator: the first frame outside the C library.
    let site = stack
        .iter()
        .find(|f| !f.file.starts_with("libc"))
        .or(stack.first())
        .cloned()
        .unwrap_or_else(|| Frame::unknown(0));
    Finding {
        pattern: "cgo-malloc-leak",
        site,
        stack,
        evidence,
        hint: "memory from C.malloc (or a C library) is never freed, and Go's GC cannot free it: pair every C allocation with C.free (defer C.free(unsafe.Pointer(p))), or call the library's release function".into(),
    }
}
